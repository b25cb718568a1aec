"""Pair augmentation on the accelerator: crop/scale, mirror and colour jitter as a Keras layer.

With ``PairConfig(device_augment=True)`` the tf.data pipeline only parses, samples and
decodes: it hands over each chosen frame whole, at its stored size, as uint8, together with
seven numbers per frame drawn on the host with the same stateless keys as the host path::

    params = [y0, x0, side, flip, brightness_delta, contrast, saturation]   # float32 [B, 7]

:class:`ViewAugment` then does, batched, in ``keras.ops`` (TensorFlow, JAX and PyTorch):

* the square crop window ``[y0, x0, side, side]`` resized to ``output_size`` with bilinear
  sampling and half-pixel centres (output pixel ``p`` samples window pixel
  ``(p + 0.5) * side / output_size - 0.5``, as ``tf.image.resize`` does), mirrored about the
  window's vertical centre line where ``flip`` is 1 — separable, as two small matrix
  products per image (:func:`interpolation_matrices`);
* colour jitter, the same affine colour map as
  :func:`tf_synchro.data.augment.apply_colour_jitter`: saturation about the per-pixel grey,
  then contrast about the crop's mean and a brightness offset, clipped to [0, 255].

Why: on the host the bilinear resize and the jitter cost more per frame than the JPEG decode
itself (BENCHMARKS.md); on a GPU they are a few microseconds per batch. Labels are safe for the
same reasons as on the host (:mod:`tf_synchro.data.augment`): the crop position is uniform, so
its distribution is mirror-symmetric, and the colour map is mirror-invariant.

The layer has no weights, so a model wrapped with it saves, loads and checkpoints the same
weights as the bare model.
"""
from __future__ import annotations

import keras
from keras import ops

NUM_PARAMS = 7
Y0, X0, SIDE, FLIP, BRIGHTNESS, CONTRAST, SATURATION = range(NUM_PARAMS)
_GREY = (0.299, 0.587, 0.114)


def crop_transforms(params, output_size: int):
    """``affine_transform`` rows ``[B, 8]`` mapping output pixels into each (mirrored) window.

    ``x_in = a0 * x_out + a2`` with ``a0 = +-side / S``: pixel centres sit at integer
    coordinates in ``affine_transform``, so the half-pixel mapping
    ``x_in = x0 + (x_out + 0.5) * side / S - 0.5`` becomes ``a2 = x0 + 0.5 * side / S - 0.5``;
    mirrored, ``x_in = x0 + side - 0.5 - (x_out + 0.5) * side / S``.
    """
    params = ops.cast(params, "float32")
    y0, x0, side, flip = (params[:, i] for i in (Y0, X0, SIDE, FLIP))
    scale = side / float(output_size)
    half = 0.5 * scale - 0.5
    sign = 1.0 - 2.0 * flip
    a0 = sign * scale
    a2 = flip * (x0 + side - 0.5 - 0.5 * scale) + (1.0 - flip) * (x0 + half)
    b2 = y0 + half
    zero = ops.zeros_like(scale)
    return ops.stack([a0, zero, a2, zero, scale, b2, zero, zero], axis=1)


def _axis_weights(coords, size):
    """``[B, S]`` sample coordinates -> ``[B, S, size]`` bilinear weights along one axis.

    Pixel centres sit at integer coordinates; neighbours outside ``[0, size - 1]`` are
    clamped to the edge pixel (``fill_mode="nearest"``), as ``tf.image.resize`` clamps.
    ``size`` may be a symbolic (traced) dimension.
    """
    low = ops.floor(coords)
    frac = (coords - low)[..., None]
    last = ops.cast(size - 1, "float32")
    pixels = ops.cast(ops.arange(size), "float32")  # [size]
    low_px = ops.minimum(ops.maximum(low, 0.0), last)[..., None]
    high_px = ops.minimum(ops.maximum(low + 1.0, 0.0), last)[..., None]
    return (ops.cast(ops.equal(pixels, low_px), "float32") * (1.0 - frac)
            + ops.cast(ops.equal(pixels, high_px), "float32") * frac)


def interpolation_matrices(params, output_size: int, height: int, width: int):
    """Row and column sampling matrices ``[B, S, height]``, ``[B, S, width]`` of the windows.

    ``crop[b] = rows[b] @ image[b] @ cols[b]^T`` (per channel) is the bilinear sampling of
    :func:`crop_transforms`' affine map: output pixel ``p`` samples ``a * p + c`` along each
    axis, with ``a < 0`` along x for a mirrored window. Two small matrix products per image
    replace a general projective warp; on a 2-core CPU the warp cost about as much as a
    sixth of the whole training step (BENCHMARKS.md).
    """
    t = crop_transforms(params, output_size)
    p = ops.cast(ops.arange(output_size), "float32")[None, :]
    xs = t[:, 0:1] * p + t[:, 2:3]
    ys = t[:, 4:5] * p + t[:, 5:6]
    return _axis_weights(ys, height), _axis_weights(xs, width)


def colour_jitter(images, params):
    """Brightness/contrast/saturation of :func:`tf_synchro.data.augment.apply_colour_jitter`."""
    delta = params[:, BRIGHTNESS][:, None, None, None]
    contrast = params[:, CONTRAST][:, None, None, None]
    saturation = params[:, SATURATION][:, None, None, None]
    mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
    grey = ops.sum(images * ops.convert_to_tensor(_GREY, images.dtype), axis=-1, keepdims=True)
    saturated = saturation * images + (1.0 - saturation) * grey
    return ops.clip(contrast * saturated + (1.0 - contrast) * mean + delta, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="tf_synchro")
class ViewAugment(keras.layers.Layer):
    """uint8 stored frames ``[B, H, W, 3]`` + params ``[B, 7]`` -> float32 ``[B, S, S, 3]``.

    Needs ``H, W >= S`` (the pipeline's crops never upscale past the stored frame).

    Args:
      output_size: side ``S`` of the model input.
      jitter: apply the colour jitter (False: geometry only, e.g. for evaluation).
    """

    def __init__(self, output_size: int, jitter: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")  # Pixel maths in float32 under mixed precision.
        super().__init__(**kwargs)
        self.output_size = int(output_size)
        self.jitter = bool(jitter)

    def call(self, images, params):
        s = self.output_size
        params = ops.cast(params, "float32")
        images = ops.cast(images, "float32")
        # Dynamic sides: tf.data hands over frames whose stored size is not in the shape.
        shape = ops.shape(images)
        rows, cols = interpolation_matrices(params, s, shape[1], shape[2])
        # Bilinear sampling is separable: rows then columns, two batched matrix products.
        out = ops.einsum("bih,bhwc->biwc", rows, images)
        out = ops.einsum("bjw,biwc->bijc", cols, out)
        if self.jitter:
            out = colour_jitter(out, params)
        return out

    def compute_output_shape(self, images_shape, params_shape):
        return (images_shape[0], self.output_size, self.output_size, images_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "jitter": self.jitter}


def wrap_with_augment(model: keras.Model, stored_size: int, output_size: int,
                      view_keys=("view_a", "view_b"), name: str = "sync_flip_augmented"
                      ) -> keras.Model:
    """Puts one :class:`ViewAugment` in front of each view input of ``model``.

    Returns a model with inputs ``{view_a, view_b}`` uint8 ``[B, stored, stored, 3]`` and
    ``{aug_a, aug_b}`` float32 ``[B, 7]`` and the same outputs as ``model`` (which stays a
    nested layer: ``wrapped.get_layer(model.name)``).
    """
    augment = ViewAugment(output_size, name="view_augment")
    inputs, views = {}, {}
    for key in view_keys:
        suffix = key.split("_")[-1]
        inputs[key] = keras.Input((stored_size, stored_size, 3), dtype="uint8", name=key)
        inputs[f"aug_{suffix}"] = keras.Input((NUM_PARAMS,), dtype="float32",
                                              name=f"aug_{suffix}")
        views[key] = augment(inputs[key], inputs[f"aug_{suffix}"])
    return keras.Model(inputs=inputs, outputs=model(views), name=name)
