"""Label-safe image augmentation for tf.data (pair pre-training and fine-tuning).

Every random draw is *stateless* and takes an explicit ``[2]`` int64 key, so a pipeline
built with a fixed seed gives the same images whatever the parallelism.

Safe for the pretext labels by construction:

* no horizontal flip (that is the flip head's label) and no rotation;
* the crop window's position is uniform over the valid range, a distribution that is
  symmetric under mirroring, so a crop never tells a flipped frame from an unflipped one;
  its random, non-multiple-of-8 offsets and the resize also scramble the JPEG 8x8 block
  grid, which a mirror would otherwise shift for sides not divisible by 8;
* colour jitter (brightness, contrast, saturation) is mirror-invariant and drawn
  independently per frame, the same way for every pair type.

Fine-tuning can reuse :func:`random_crop_window` with :func:`decode_crop_resize` (one image)
or :func:`window_to_box` + :func:`crop_resize_batch` (vectorised after ``batch``); the
functions' docstrings say how crop pixels map back to stored pixels (for 2D labels).
"""
from __future__ import annotations

import tensorflow as tf

from tf_synchro.configs import AugmentConfig  # noqa: F401  (its home)

def random_crop_window(key: tf.Tensor, image_size: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Random square window ``[y0, x0, side, side]`` (int32) inside an ``image_size`` square.

    The side is ``scale * image_size`` with scale uniform in [min_scale, max_scale]; the
    position is uniform over all windows of that side (mirror-symmetric, see module doc).
    """
    k_scale, k_y, k_x = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    size = tf.cast(image_size, tf.int32)
    scale = tf.random.stateless_uniform([], k_scale, config.min_scale, config.max_scale)
    side = tf.clip_by_value(tf.cast(tf.round(scale * tf.cast(size, tf.float32)), tf.int32),
                            1, size)
    # maxval is exclusive: +1 so the window may touch the far border.
    y0 = tf.random.stateless_uniform([], k_y, 0, size - side + 1, dtype=tf.int32)
    x0 = tf.random.stateless_uniform([], k_x, 0, size - side + 1, dtype=tf.int32)
    return tf.stack([y0, x0, side, side])


def central_crop_window(image_size: tf.Tensor, scale: float) -> tf.Tensor:
    """Centred square window ``[y0, x0, side, side]`` (int32) of ``scale * image_size``."""
    size = tf.cast(image_size, tf.int32)
    side = tf.clip_by_value(tf.cast(tf.round(scale * tf.cast(size, tf.float32)), tf.int32),
                            1, size)
    offset = (size - side) // 2
    return tf.stack([offset, offset, side, side])


def decode_crop_resize(jpeg: tf.Tensor, window: tf.Tensor, output_size: int,
                       dct_method: str = "INTEGER_FAST") -> tf.Tensor:
    """Decodes only ``window`` of a JPEG and resizes it: float32 [S, S, 3] in [0, 255].

    ``decode_and_crop_jpeg`` skips the IDCT of blocks outside the window. Crop pixel ``p``
    samples window pixel ``(p + 0.5) * side / output_size - 0.5`` (half-pixel centres).
    """
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3, dct_method=dct_method)
    image = tf.image.resize(image, [output_size, output_size], method="bilinear")
    image = tf.clip_by_value(image, 0.0, 255.0)  # Bilinear on uint8 input cannot overshoot; cheap guard.
    return tf.ensure_shape(image, [output_size, output_size, 3])


def random_crop_windows(key: tf.Tensor, n: int, image_size: tf.Tensor, config: AugmentConfig,
                        shared_side: bool = False) -> tf.Tensor:
    """``n`` :func:`random_crop_window` draws at once: int32 [n, 4] ``[y0, x0, side, side]``.

    Args:
      key: stateless seed [2].
      n: number of windows.
      image_size: side of the stored square image.
      config: scale range.
      shared_side: one random side for all n windows (so their crops can be resized as one
        batch); positions stay independent and uniform.
    """
    k_scale, k_y, k_x = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    size = tf.cast(image_size, tf.int32)
    scale = tf.random.stateless_uniform([1 if shared_side else n], k_scale, config.min_scale,
                                        config.max_scale)
    side = tf.clip_by_value(tf.cast(tf.round(scale * tf.cast(size, tf.float32)), tf.int32),
                            1, size) + tf.zeros([n], tf.int32)
    free = tf.cast(size - side + 1, tf.float32)  # Window positions per axis.
    y0 = tf.minimum(tf.cast(tf.random.stateless_uniform([n], k_y) * free, tf.int32), size - side)
    x0 = tf.minimum(tf.cast(tf.random.stateless_uniform([n], k_x) * free, tf.int32), size - side)
    return tf.stack([y0, x0, side, side], axis=1)


def decode_window(jpeg: tf.Tensor, window: tf.Tensor, flip: tf.Tensor,
                  dct_method: str = "INTEGER_FAST") -> tf.Tensor:
    """Decodes a JPEG and returns ``window`` (``[y0, x0, h, w]``), mirrored if ``flip``: uint8.

    A full decode and a slice beat ``decode_and_crop_jpeg`` at these sizes (measured: the
    cropping decoder is ~1.5x slower for a 144 px window of a 160 px image).
    """
    image = tf.io.decode_jpeg(jpeg, channels=3, dct_method=dct_method)
    crop = image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]
    return tf.cond(flip, lambda: tf.reverse(crop, axis=[1]), lambda: crop)


def jitter_factors(key: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Per-image colour-jitter draws ``[brightness_delta, contrast, saturation]`` (float32)."""
    b, c, s = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    return tf.stack([
        tf.random.stateless_uniform([], b, -config.brightness, config.brightness) * 255.0,
        tf.random.stateless_uniform([], c, 1 - config.contrast, 1 + config.contrast),
        tf.random.stateless_uniform([], s, 1 - config.saturation, 1 + config.saturation),
    ])


def jitter_factors_batch(key: tf.Tensor, n: int, config: AugmentConfig) -> tf.Tensor:
    """``n`` independent :func:`jitter_factors` draws at once: float32 [n, 3]."""
    b, c, s = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    return tf.stack([
        tf.random.stateless_uniform([n], b, -config.brightness, config.brightness) * 255.0,
        tf.random.stateless_uniform([n], c, 1 - config.contrast, 1 + config.contrast),
        tf.random.stateless_uniform([n], s, 1 - config.saturation, 1 + config.saturation),
    ], axis=1)


def apply_colour_jitter(images: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """Applies :func:`jitter_factors` to a batch: images [B, H, W, 3], factors [B, 3].

    Brightness ``x + d``, contrast ``(x - mean) * c + mean`` and saturation
    ``(x - grey) * s + grey`` are all affine in the pixel, so they are applied as one
    per-image 3x3 colour matrix and offset (one pass over the pixels instead of six).
    Vectorised over the batch: run it after ``batch``. Result clipped to [0, 255].
    """
    delta, contrast, saturation = factors[:, 0], factors[:, 1], factors[:, 2]
    mean = tf.reduce_mean(images, axis=[1, 2, 3])
    grey = tf.constant([0.299, 0.587, 0.114], images.dtype)
    # Saturation as a right-multiplied matrix on RGB rows: s * I + (1 - s) * grey 1^T.
    eye = tf.eye(3, dtype=images.dtype)[None]
    sat = saturation[:, None, None] * eye + (1 - saturation)[:, None, None] * (
        grey[None, :, None] * tf.ones([1, 1, 3], images.dtype))
    matrix = contrast[:, None, None] * sat
    # Columns of `sat` sum to 1 (grey weights sum to 1): the offset passes unchanged.
    offset = (1 - contrast) * mean + delta
    shape = tf.shape(images)
    flat = tf.reshape(images, [shape[0], -1, 3])
    out = tf.linalg.matmul(flat, matrix) + offset[:, None, None]
    return tf.clip_by_value(tf.reshape(out, shape), 0.0, 255.0)
