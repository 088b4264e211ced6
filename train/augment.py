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
    return images


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
