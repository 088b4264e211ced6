"""On-the-fly augmentation of uint8-valued face batches, fully deterministic.

Every random draw is a stateless op seeded by ``(seed, epoch, batch)``, so a run resumed
from a checkpoint sees exactly the augmentations an uninterrupted run would have seen.

The pixel arithmetic is written in ``keras.ops``, so one implementation serves both Keras
backends training runs on: TensorFlow (this project's CPU runs, inside ``tf.data``) and JAX
(a GPU machine that has no TensorFlow). Only the random draws are backend-specific (``_rng``).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from train.config import JPEG_QUALITIES, LOWRES_SIZES, TrainConfig


class _TfRng:
    """Stateless draws from a TensorFlow int64 (2,) seed."""

    def __init__(self, seed):
        import tensorflow as tf
        self.tf, self.seed = tf, seed

    def split(self, num: int) -> list[_TfRng]:
        seeds = self.tf.random.experimental.stateless_split(self.seed, num=num)
        return [_TfRng(seeds[i]) for i in range(num)]

    def fold_in(self, data: int) -> _TfRng:
        return _TfRng(self.tf.random.experimental.stateless_fold_in(self.seed, data))

    def uniform(self, shape, low, high, dtype="float32"):
        return self.tf.random.stateless_uniform(shape, self.seed, low, high, dtype=dtype)

    def normal(self, shape):
        return self.tf.random.stateless_normal(shape, self.seed)

    def gamma(self, shape, alpha: float):
        return self.tf.random.stateless_gamma(shape, self.seed, alpha)


class _JaxRng:
    """Stateless draws from a JAX key (Keras' JAX backend, as on a GPU machine)."""

    def __init__(self, key):
        import jax
        self.random, self.key = jax.random, key

    def split(self, num: int) -> list[_JaxRng]:
        return [_JaxRng(key) for key in self.random.split(self.key, num)]

    def fold_in(self, data: int) -> _JaxRng:
        return _JaxRng(self.random.fold_in(self.key, data))

    def uniform(self, shape, low, high, dtype="float32"):
        if dtype == "int32":
            return self.random.randint(self.key, shape, low, high)
        return self.random.uniform(self.key, shape, minval=low, maxval=high)

    def normal(self, shape):
        return self.random.normal(self.key, shape)

    def gamma(self, shape, alpha: float):
        return self.random.gamma(self.key, alpha, shape)


def _rng(seed) -> _TfRng | _JaxRng:
    return _JaxRng(seed) if keras.backend.backend() == "jax" else _TfRng(seed)


def augment_batch(images, seed, config: TrainConfig):
    """images: float32 (B, 48, 48, 1) in 0..255; seed: a TensorFlow int64 (2,) stateless seed,
    or a JAX key under Keras' JAX backend."""
    rng = _rng(seed)
    batch, side = images.shape[0], images.shape[1]
    seeds = rng.split(8)

    def uniform(index, low, high):
        return seeds[index].uniform([batch], low, high)

    # Random similarity transform about the centre (rotation, zoom, shift), plus flip.
    angle = uniform(0, -1.0, 1.0) * config.rotate_deg * math.pi / 180
    zoom = 1.0 + uniform(1, -config.scale, config.scale)
    dx = uniform(2, -config.shift, config.shift) * side
    dy = uniform(3, -config.shift, config.shift) * side
    flip = ops.where(uniform(4, 0.0, 1.0) < (0.5 if config.flip else 0.0), -1.0, 1.0)
    # Output pixel p maps to input pixel A p + b (ImageProjectiveTransform convention).
    cos, sin = ops.cos(angle) / zoom, ops.sin(angle) / zoom
    a00, a01, a10, a11 = cos * flip, -sin, sin * flip, cos
    centre = (side - 1) / 2
    b0 = centre - a00 * centre - a01 * centre + dx
    b1 = centre - a10 * centre - a11 * centre + dy
    zeros = ops.zeros_like(angle)
    transforms = ops.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
    images = ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                        fill_mode="reflect", fill_value=0.0)

    # Brightness and contrast jitter.
    gain = 1.0 + uniform(5, -config.brightness, config.brightness)
    offset = uniform(6, -config.brightness, config.brightness) * 64.0
    images = ops.clip(images * gain[:, None, None, None] + offset[:, None, None, None], 0.0, 255.0)

    if config.erase_prob > 0:
        images = _random_erase(images, seeds[7], config.erase_prob)
    if config.webcam > 0:
        # Seeded apart from the draws above, so runs without it keep their exact augmentations.
        images = _webcam(images, rng.fold_in(1), config.webcam)
    if config.jpeg > 0:
        # Before _lowres: the codec acts on the video stream, the meeting app then scales it into a tile.
        images = _jpeg(images, rng.fold_in(3), config.jpeg)
    if config.lowres > 0:
        images = _lowres(images, rng.fold_in(2), config.lowres)
    return images


def area_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of area-averaging resampling to fewer pixels: each output pixel is
    the mean of the input pixels it covers, fractions counted (``tf.image.resize``'s "area")."""
    scale = source / target
    weights = np.zeros((target, source), np.float32)
    for out in range(target):
        low, high = out * scale, (out + 1) * scale
        for pixel in range(int(low), min(math.ceil(high), source)):
            weights[out, pixel] = min(high, pixel + 1) - max(low, pixel)
    return weights / scale


def bilinear_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of bilinear resampling with half-pixel centres and clamped edges
    (``tf.image.resize``'s "bilinear", ``cv2.INTER_LINEAR``)."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, source - 1)
    weights = np.zeros((target, source), np.float32)
    np.add.at(weights, (np.arange(target), low), 1 - (position - low))
    np.add.at(weights, (np.arange(target), high), position - low)
    return weights


def _lowres(images, rng, prob: float):
    """A small face in a big gallery, on a share ``prob`` of the batch: the face shrunk to one of
    ``LOWRES_SIZES`` by area averaging (the meeting app's scaler) and enlarged back bilinearly
    (what ``preprocess.align_crop`` does to a face under 48 px). Both resamplings are separable, so
    each is one matrix per axis, which runs alike on either backend (JAX's resize has no "area")."""
    batch, side = images.shape[0], images.shape[1]
    seeds = rng.split(2)
    # Down then up composed into one (side, side) matrix per size.
    resample = np.stack([bilinear_matrix(s, side) @ area_matrix(side, s) for s in LOWRES_SIZES])
    pick = seeds[0].uniform([batch], 0, len(LOWRES_SIZES), dtype="int32")
    per_face = ops.take(ops.convert_to_tensor(resample), pick, axis=0)            # (B, side, side)
    small = ops.einsum("bij,bjkc,blk->bilc", per_face, images, per_face)
    on = seeds[1].uniform([batch], 0.0, 1.0) < prob
    return ops.where(on[:, None, None, None], small, images)


# JPEG's luminance quantisation table (ITU-T T.81, Annex K.1), at quality 50.
_LUMA_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)


def dct_matrix(size: int = 8) -> np.ndarray:
    """Orthonormal DCT-II: ``D @ block @ D.T`` gives the coefficients JPEG's forward DCT defines."""
    k, n = np.mgrid[:size, :size]
    matrix = np.sqrt(2 / size) * np.cos((2 * n + 1) * k * np.pi / (2 * size))
    matrix[0] /= np.sqrt(2)
    return matrix.astype(np.float32)


def quantisation_table(quality):
    """libjpeg's luminance table scaled to ``quality`` (1-100), as ``cv2.imencode`` writes it."""
    scale = ops.where(quality < 50, ops.floor(5000.0 / quality), 200.0 - 2.0 * quality)
    table = ops.floor((_LUMA_TABLE * scale[..., None, None] + 50.0) / 100.0)
    return ops.clip(table, 1.0, 255.0)


def _grid_matrices(side: int, padded: int) -> tuple[np.ndarray, np.ndarray]:
    """(8, padded, side) each: ``place[o]`` puts a face at offset ``o`` of JPEG's 8-px block grid,
    mirrored at the edges to fill whole blocks (a camera frame's blocks do not line up with the
    face); ``crop[o]`` takes it back out."""
    offsets = np.arange(8)[:, None]
    rows = np.abs(np.arange(padded)[None, :] - offsets)
    rows = np.where(rows > side - 1, 2 * (side - 1) - rows, rows)
    place = np.eye(side, dtype=np.float32)[rows]
    crop = np.stack([np.eye(padded, side, -o, dtype=np.float32) for o in range(8)])
    return place, crop


def jpeg(images, quality, row_offset, column_offset):
    """Greyscale baseline JPEG (8x8 DCT, the standard table scaled to ``quality``) of float (B, side,
    side, 1) faces, on a block grid where each face starts ``row_offset``/``column_offset`` (int (B,),
    0-7) pixels in. Written as matrices, so it runs alike on either backend; ``cv2.imencode`` is the
    reference the tests hold it to."""
    batch, side = images.shape[0], images.shape[1]
    blocks = side // 8 + 1
    padded = blocks * 8
    place, crop = (ops.convert_to_tensor(m) for m in _grid_matrices(side, padded))
    down, across = ops.take(place, row_offset, axis=0), ops.take(place, column_offset, axis=0)
    tiled = ops.einsum("bij,bjkc,blk->bil", down, images, across) - 128.0          # (B, padded, padded)
    tiled = ops.reshape(tiled, (batch, blocks, 8, blocks, 8))
    dct = ops.convert_to_tensor(dct_matrix())
    coefficients = ops.einsum("ui,bxiyj,vj->bxuyv", dct, tiled, dct)
    table = quantisation_table(quality)[:, None, :, None, :]                        # (B, 1, 8, 1, 8)
    coefficients = ops.round(coefficients / table) * table
    decoded = ops.einsum("ui,bxuyv,vj->bxiyj", dct, coefficients, dct)
    decoded = ops.clip(ops.round(ops.reshape(decoded, (batch, padded, padded)) + 128.0), 0.0, 255.0)
    up, left = ops.take(crop, row_offset, axis=0), ops.take(crop, column_offset, axis=0)
    return ops.einsum("bij,bik,bkl->bjl", up, decoded, left)[..., None]


def _jpeg(images, rng, prob: float):
    """A video codec's blocks on a share ``prob`` of the batch: each face JPEG-compressed at a
    quality drawn from ``JPEG_QUALITIES``, on a block grid at a random offset."""
    batch = images.shape[0]
    seeds = rng.split(4)
    quality = ops.floor(seeds[0].uniform([batch], float(JPEG_QUALITIES[0]), JPEG_QUALITIES[1] + 1.0))
    offsets = [seeds[i].uniform([batch], 0, 8, dtype="int32") for i in (1, 2)]
    on = seeds[3].uniform([batch], 0.0, 1.0) < prob
    return ops.where(on[:, None, None, None], jpeg(images, quality, *offsets), images)


def _webcam(images, rng, prob: float):
    """What a meeting's webcam does to a face, on a share ``prob`` of the batch: defocus or
    compression blur (Gaussian, sigma 0.5-1.5 px at 48 px), exposure (gamma 0.7-1.4) and sensor
    noise (sigma up to 8 grey levels). FER2013's web photos are sharper and better lit."""
    batch, height, width = images.shape[0], images.shape[1], images.shape[2]
    seeds = rng.split(5)
    draw = lambda i, lo, hi: seeds[i].uniform([batch], lo, hi)  # noqa: E731
    sigma = draw(0, 0.5, 1.5)
    taps = ops.arange(-3.0, 4.0)
    kernels = ops.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernels /= ops.sum(kernels, axis=1, keepdims=True)                          # (B, 7): one per face
    padded = ops.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="reflect")
    rows = ops.stack([padded[:, i:i + height, :, :] for i in range(7)], axis=-1)
    blurred = ops.sum(rows * kernels[:, None, None, None, :], axis=-1)          # vertical pass
    cols = ops.stack([blurred[:, :, i:i + width, :] for i in range(7)], axis=-1)
    blurred = ops.sum(cols * kernels[:, None, None, None, :], axis=-1)          # horizontal pass
    gamma = ops.exp(draw(1, math.log(0.7), math.log(1.4)))
    lit = 255.0 * (blurred / 255.0) ** gamma[:, None, None, None]
    noise = seeds[2].normal(images.shape) * draw(3, 0.0, 8.0)[:, None, None, None]
    degraded = ops.clip(lit + noise, 0.0, 255.0)
    on = draw(4, 0.0, 1.0) < prob
    return ops.where(on[:, None, None, None], degraded, images)


def mixup(images, labels, seed, alpha: float):
    """Each face blended with another of the batch, and its label target alike, by a weight drawn
    from Beta(alpha, alpha) (as X / (X + Y) of two Gamma(alpha) draws: TensorFlow has no stateless Beta)."""
    batch = images.shape[0]
    seeds = _rng(seed).split(3)
    x = seeds[0].gamma([batch], alpha)
    y = seeds[1].gamma([batch], alpha)
    weight = x / (x + y)
    partner = ops.argsort(seeds[2].uniform([batch], 0.0, 1.0))
    mixed = weight[:, None, None, None] * images + (1 - weight[:, None, None, None]) * ops.take(images, partner, axis=0)
    targets = weight[:, None] * labels + (1 - weight[:, None]) * ops.take(labels, partner, axis=0)
    return mixed, targets


def _random_erase(images, rng, prob: float):
    """Blank one random rectangle (2-25% of the area) per image with noise, with probability ``prob``."""
    batch, height, width = images.shape[0], images.shape[1], images.shape[2]
    seeds = rng.split(6)
    draw = lambda i, lo, hi: seeds[i].uniform([batch], lo, hi)  # noqa: E731
    area = draw(0, 0.02, 0.25)
    log_ratio = draw(1, math.log(0.3), math.log(3.3))
    h = ops.sqrt(area * ops.exp(log_ratio)) * height
    w = ops.sqrt(area / ops.exp(log_ratio)) * width
    y0 = draw(2, 0.0, 1.0) * (height - h)
    x0 = draw(3, 0.0, 1.0) * (width - w)
    on = draw(4, 0.0, 1.0) < prob
    ys = ops.arange(height, dtype="float32")[None, :, None]
    xs = ops.arange(width, dtype="float32")[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + h)[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < (x0 + w)[:, None, None]) & on[:, None, None])
    noise = seeds[5].uniform(images.shape, 0.0, 255.0)
    return ops.where(inside[..., None], noise, images)
