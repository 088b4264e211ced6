"""On-the-fly augmentation of uint8-valued face batches, fully deterministic.

Every random draw is a stateless op seeded by ``(seed, epoch, batch)``, so a run resumed
from a checkpoint sees exactly the augmentations an uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import tensorflow as tf

from train.config import TrainConfig


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
    """images: float32 (B, 48, 48, 1) in 0..255; seed: int64 (2,) stateless seed."""
    batch = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=8)

    def uniform(index, low, high):
        return tf.random.stateless_uniform([batch], seeds[index], low, high)

    # Random similarity transform about the centre (rotation, zoom, shift), plus flip.
    angle = uniform(0, -1.0, 1.0) * config.rotate_deg * math.pi / 180
    zoom = 1.0 + uniform(1, -config.scale, config.scale)
    dx = uniform(2, -config.shift, config.shift) * size
    dy = uniform(3, -config.shift, config.shift) * size
    flip = tf.where(uniform(4, 0.0, 1.0) < (0.5 if config.flip else 0.0), -1.0, 1.0)
    # Output pixel p maps to input pixel A p + b (ImageProjectiveTransform convention).
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a00, a01, a10, a11 = cos * flip, -sin, sin * flip, cos
    centre = (size - 1) / 2
    b0 = centre - a00 * centre - a01 * centre + dx
    b1 = centre - a10 * centre - a11 * centre + dy
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")

    # Brightness and contrast jitter.
    gain = 1.0 + uniform(5, -config.brightness, config.brightness)
    offset = uniform(6, -config.brightness, config.brightness) * 64.0
    images = tf.clip_by_value(images * gain[:, None, None, None] + offset[:, None, None, None], 0.0, 255.0)

    if config.erase_prob > 0:
        images = _random_erase(images, seeds[7], config.erase_prob)
    if config.webcam > 0:
        # Seeded apart from the draws above, so runs without it keep their exact augmentations.
        images = _webcam(images, tf.random.experimental.stateless_fold_in(seed, 1), config.webcam)
    if config.lowres > 0:
        images = _lowres(images, tf.random.experimental.stateless_fold_in(seed, 2), config.lowres)
    return images


LOWRES_SIZES = (12, 16, 20, 24, 28, 32, 40)
"""Side in pixels a face is shrunk to by ``_lowres``. On the nine real meeting captures the face
crops YuNet's eyes give span 13-250 px (median 44; 38% under 32), and FER2013's faces are all 48."""


def _lowres(images: tf.Tensor, seed: tf.Tensor, prob: float) -> tf.Tensor:
    """A small face in a big gallery, on a share ``prob`` of the batch: the face shrunk to one of
    ``LOWRES_SIZES`` by area averaging (the meeting app's scaler) and enlarged back bilinearly
    (what ``preprocess.align_crop`` does to a face under 48 px)."""
    batch, side = tf.shape(images)[0], tf.shape(images)[1:3]
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    versions = tf.stack([tf.image.resize(tf.image.resize(images, (s, s), method="area"), side, method="bilinear")
                         for s in LOWRES_SIZES])                                   # (sizes, B, 48, 48, 1)
    pick = tf.random.stateless_uniform([batch], seeds[0], 0, len(LOWRES_SIZES), dtype=tf.int32)
    small = tf.gather_nd(versions, tf.stack([pick, tf.range(batch)], axis=1))
    on = tf.random.stateless_uniform([batch], seeds[1], 0.0, 1.0) < prob
    return tf.where(on[:, None, None, None], small, images)


def _webcam(images: tf.Tensor, seed: tf.Tensor, prob: float) -> tf.Tensor:
    """What a meeting's webcam does to a face, on a share ``prob`` of the batch: defocus or
    compression blur (Gaussian, sigma 0.5-1.5 px at 48 px), exposure (gamma 0.7-1.4) and sensor
    noise (sigma up to 8 grey levels). FER2013's web photos are sharper and better lit."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    draw = lambda i, lo, hi: tf.random.stateless_uniform([batch], seeds[i], lo, hi)  # noqa: E731
    sigma = draw(0, 0.5, 1.5)
    taps = tf.range(-3.0, 4.0)
    kernels = tf.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernels /= tf.reduce_sum(kernels, axis=1, keepdims=True)                     # (B, 7): one per face
    padded = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    rows = tf.stack([padded[:, i:i + tf.shape(images)[1], :, :] for i in range(7)], axis=-1)
    blurred = tf.reduce_sum(rows * kernels[:, None, None, None, :], axis=-1)     # vertical pass
    cols = tf.stack([blurred[:, :, i:i + tf.shape(images)[2], :] for i in range(7)], axis=-1)
    blurred = tf.reduce_sum(cols * kernels[:, None, None, None, :], axis=-1)     # horizontal pass
    gamma = tf.exp(draw(1, math.log(0.7), math.log(1.4)))
    lit = 255.0 * (blurred / 255.0) ** gamma[:, None, None, None]
    noise = tf.random.stateless_normal(tf.shape(images), seeds[2]) * draw(3, 0.0, 8.0)[:, None, None, None]
    degraded = tf.clip_by_value(lit + noise, 0.0, 255.0)
    on = draw(4, 0.0, 1.0) < prob
    return tf.where(on[:, None, None, None], degraded, images)


def mixup(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Each face blended with another of the batch, and its label target alike, by a weight drawn
    from Beta(alpha, alpha) (as X / (X + Y) of two Gamma(alpha) draws: TensorFlow has no stateless Beta)."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    x = tf.random.stateless_gamma([batch], seeds[0], alpha)
    y = tf.random.stateless_gamma([batch], seeds[1], alpha)
    weight = x / (x + y)
    partner = tf.argsort(tf.random.stateless_uniform([batch], seeds[2]))
    mixed = weight[:, None, None, None] * images + (1 - weight[:, None, None, None]) * tf.gather(images, partner)
    targets = weight[:, None] * labels + (1 - weight[:, None]) * tf.gather(labels, partner)
    return mixed, targets


def _random_erase(images: tf.Tensor, seed: tf.Tensor, prob: float) -> tf.Tensor:
    """Blank one random rectangle (2-25% of the area) per image with noise, with probability ``prob``."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    draw = lambda i, lo, hi: tf.random.stateless_uniform([batch], seeds[i], lo, hi)  # noqa: E731
    area = draw(0, 0.02, 0.25)
    log_ratio = draw(1, math.log(0.3), math.log(3.3))
    h = tf.sqrt(area * tf.exp(log_ratio)) * tf.cast(height, tf.float32)
    w = tf.sqrt(area / tf.exp(log_ratio)) * tf.cast(width, tf.float32)
    y0 = draw(2, 0.0, 1.0) * (tf.cast(height, tf.float32) - h)
    x0 = draw(3, 0.0, 1.0) * (tf.cast(width, tf.float32) - w)
    on = draw(4, 0.0, 1.0) < prob
    ys = tf.cast(tf.range(height), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(width), tf.float32)[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + h)[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < (x0 + w)[:, None, None]) & on[:, None, None])
    noise = tf.random.stateless_uniform(tf.shape(images), seeds[5], 0.0, 255.0)
    return tf.where(inside[..., None], noise, images)
