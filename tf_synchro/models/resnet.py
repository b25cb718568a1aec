"""ResNet encoders (torchvision layout) in Keras 3, ``keras.layers`` / ``keras.ops`` only.

The encoder maps raw RGB pixels ``[B, S, S, 3]`` in ``[0, 255]`` to globally average-pooled
features ``[B, C]``. ImageNet mean/std normalisation is the first layer, so a saved or
exported encoder takes raw pixels and no caller has to remember the constants.

The layer graph follows torchvision's ``resnet18/34/50`` exactly (same convolutions, same
symmetric padding, BatchNorm eps 1e-5 and momentum 0.1, ResNet v1.5 bottleneck with the
stride on the 3x3 convolution), so at ``width=1`` the trainable parameter counts equal
torchvision's without the ``fc`` layer and torchvision weights could be ported layer by layer.

Layer names: ``normalize``; the stem ``stem_*``; residual stage ``k`` (torchvision
``layer{k}``, k = 1..4) ``stage{k}_block{j}_*``; ``avg_pool``.

The encoder is a functional model subclass (the keras-hub "Backbone" pattern): its config is
just ``arch``, ``width`` and ``input_size``, so a loaded ``encoder.keras`` tells what it is::

    encoder = keras.models.load_model("encoder.keras")
    encoder_config(encoder)  # {"arch": "resnet18", "width": 0.25, "input_size": 64, ...}
"""
from __future__ import annotations

from typing import Any, Optional

import keras

from tf_synchro import configs

# arch -> (block type, blocks per stage); torchvision's definitions, plus ResNet-10 (one
# basic block per stage, as in the CPU-sized literature variants): about 0.7x ResNet-18's
# training step on a 2-core CPU at width 0.25 (BENCHMARKS.md).
ARCHS = {
    "resnet10": ("basic", (1, 1, 1, 1)),
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
assert tuple(ARCHS) == configs.ARCHS
_STAGE_CHANNELS = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}
# Channels never drop below this: 8 keeps the tiny CPU variants meaningful and vector friendly.
MIN_CHANNELS = 8
# Five stride-2 steps (stem conv, max pool, stages 2-4) need at least 32 px of input.
MIN_INPUT_SIZE = configs.MIN_INPUT_SIZE
# ImageNet statistics on the [0, 255] scale, as torchvision uses them (on [0, 1]) x 255.
_MEAN = (0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0)
_VARIANCE = tuple((s * 255.0) ** 2 for s in (0.229, 0.224, 0.225))
# torchvision BatchNorm2d defaults: eps 1e-5, momentum 0.1 (Keras counts momentum the other way).
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def scaled_channels(channels: int, width: float) -> int:
    """Channels of a layer with ``channels`` at width 1, scaled by ``width`` (at least 8)."""
    return max(MIN_CHANNELS, int(round(channels * width)))


def _conv(x, filters: int, kernel: int, stride: int, name: str, dtype):
    """Bias-free convolution with torchvision's symmetric zero padding ``kernel // 2``."""
    pad = kernel // 2
    if pad and stride > 1:
        # Keras "same" pads stride-2 convolutions asymmetrically (bottom/right only);
        # explicit symmetric padding keeps the torchvision geometry (and portable weights).
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad", dtype=dtype)(x)
        padding = "valid"
    else:
        padding = "same"  # Stride 1: "same" is the symmetric padding.
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=False,
        kernel_initializer="he_normal", name=name, dtype=dtype)(x)


def _bn(x, name: str, dtype):
    return keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name, dtype=dtype)(x)


def _relu(x, name: str, dtype):
    return keras.layers.ReLU(name=name, dtype=dtype)(x)


def _basic_block(x, planes: int, stride: int, name: str, dtype):
    shortcut = x
    y = _conv(x, planes, 3, stride, f"{name}_conv1", dtype)
    y = _relu(_bn(y, f"{name}_bn1", dtype), f"{name}_relu1", dtype)
    y = _conv(y, planes, 3, 1, f"{name}_conv2", dtype)
    y = _bn(y, f"{name}_bn2", dtype)
    if stride != 1 or x.shape[-1] != planes:
        shortcut = _conv(x, planes, 1, stride, f"{name}_down_conv", dtype)
        shortcut = _bn(shortcut, f"{name}_down_bn", dtype)
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])
    return _relu(y, f"{name}_out", dtype)


def _bottleneck_block(x, planes: int, stride: int, name: str, dtype):
    out_channels = planes * _EXPANSION["bottleneck"]
    shortcut = x
    y = _conv(x, planes, 1, 1, f"{name}_conv1", dtype)
    y = _relu(_bn(y, f"{name}_bn1", dtype), f"{name}_relu1", dtype)
    # ResNet v1.5 (torchvision): the stride sits on the 3x3 convolution, not the first 1x1.
    y = _conv(y, planes, 3, stride, f"{name}_conv2", dtype)
    y = _relu(_bn(y, f"{name}_bn2", dtype), f"{name}_relu2", dtype)
    y = _conv(y, out_channels, 1, 1, f"{name}_conv3", dtype)
    y = _bn(y, f"{name}_bn3", dtype)
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = _conv(x, out_channels, 1, stride, f"{name}_down_conv", dtype)
        shortcut = _bn(shortcut, f"{name}_down_bn", dtype)
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])
    return _relu(y, f"{name}_out", dtype)


def _check_args(arch: str, width: float, input_size: int) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown ResNet arch {arch!r}; expected one of {sorted(ARCHS)}")
    if not width > 0:
        raise ValueError(f"ResNet width must be > 0, got {width!r}")
    if int(input_size) != input_size or input_size < MIN_INPUT_SIZE:
        raise ValueError(
            f"ResNet input_size must be an integer >= {MIN_INPUT_SIZE} (five stride-2 steps), "
            f"got {input_size!r}")


@keras.saving.register_keras_serializable(package="tf_synchro")
class ResNetEncoder(keras.Model):
    """Random-init ResNet encoder: raw pixels ``[B, S, S, 3]`` -> pooled features ``[B, C]``.

    Args:
      arch: ``"resnet10"``, ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
      width: channel multiplier (64 * width stem channels, ...; never below 8 channels).
      input_size: square input side S in pixels (>= 32).
      name: model name.
      dtype: dtype policy for the layers; ``None`` uses the global policy (for example
        ``mixed_bfloat16``). The input normalisation always runs in float32.
    """

    def __init__(self, arch: str = "resnet18", width: float = 1.0, input_size: int = 128,
                 name: str = "encoder", dtype: Any = None, **kwargs):
        _check_args(arch, width, input_size)
        input_size = int(input_size)
        width = float(width)
        block_type, blocks = ARCHS[arch]
        block_fn = _basic_block if block_type == "basic" else _bottleneck_block

        pixels = keras.Input((input_size, input_size, 3), name="pixels", dtype="float32")
        # float32 whatever the policy: pixel statistics are cheap and bf16 would round them.
        x = keras.layers.Normalization(
            mean=_MEAN, variance=_VARIANCE, name="normalize", dtype="float32")(pixels)
        x = _conv(x, scaled_channels(64, width), 7, 2, "stem_conv", dtype)
        x = _relu(_bn(x, "stem_bn", dtype), "stem_relu", dtype)
        # Zero padding is -inf padding here: inputs are post-ReLU, hence >= 0.
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad", dtype=dtype)(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool", dtype=dtype)(x)
        for k, (n_blocks, channels) in enumerate(zip(blocks, _STAGE_CHANNELS), start=1):
            planes = scaled_channels(channels, width)
            for j in range(1, n_blocks + 1):
                stride = 2 if (k > 1 and j == 1) else 1
                x = block_fn(x, planes, stride, f"stage{k}_block{j}", dtype)
        features = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
        super().__init__(inputs=pixels, outputs=features, name=name, **kwargs)
        self.arch = arch
        self.width = width
        self.input_size = input_size
        self.feature_dim = int(features.shape[-1])
        self._layer_dtype = None if dtype is None else keras.dtype_policies.serialize(
            keras.dtype_policies.get(dtype))

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "arch": self.arch,
            "width": self.width,
            "input_size": self.input_size,
            "dtype": self._layer_dtype,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: Optional[dict] = None) -> "ResNetEncoder":
        return cls(**config)


def build_encoder(arch: str = "resnet18", width: float = 1.0, input_size: int = 128,
                  name: str = "encoder") -> keras.Model:
    """Builds a random-init ResNet encoder (see :class:`ResNetEncoder`).

    Args:
      arch: ``"resnet10"``, ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
      width: channel multiplier; e.g. 0.25 for a CPU-sized model.
      input_size: square input side in pixels (>= 32).
      name: model name.

    Returns:
      A model from float32 RGB pixels ``[B, input_size, input_size, 3]`` in ``[0, 255]``
      to features ``[B, C]`` (C = 512 * width for ResNet-18/34, 2048 * width for ResNet-50).
    """
    return ResNetEncoder(arch=arch, width=width, input_size=input_size, name=name)


def encoder_config(encoder: Any) -> dict:
    """Returns ``{"arch", "width", "input_size", "feature_dim"}`` of an encoder.

    Raises:
      ValueError: ``encoder`` is not a :class:`ResNetEncoder` (for example a wrong file was
        given as pretrained encoder).
    """
    if not isinstance(encoder, ResNetEncoder):
        raise ValueError(
            f"expected a tf_synchro ResNetEncoder (made by build_encoder), got "
            f"{type(encoder).__name__} named {getattr(encoder, 'name', '?')!r}")
    return {"arch": encoder.arch, "width": encoder.width, "input_size": encoder.input_size,
            "feature_dim": encoder.feature_dim}


def freeze_blocks(encoder: keras.Model, n: int) -> list[str]:
    """Freezes the stem and residual stages 1..n of ``encoder`` (in place).

    Frozen BatchNorm layers also switch to inference mode (moving statistics, no updates):
    Keras 3 BatchNormalization uses batch statistics only when ``training and trainable``.
    Recompile any model containing ``encoder`` after calling this. The frozen state is not
    part of a saved ``.keras`` encoder (its config is arch/width/input_size only): call this
    again after loading.

    Args:
      encoder: a model made by :func:`build_encoder`.
      n: number of stages to freeze, 0 (nothing) to 4 (every weighted layer). The paper
        fine-tunes with n = 3.

    Returns:
      Names of the layers set to ``trainable=False``, in graph order.

    Raises:
      ValueError: ``n`` is not in 0..4.
    """
    if int(n) != n or not 0 <= n <= 4:
        raise ValueError(f"freeze_blocks: n must be an integer in 0..4, got {n!r}")
    if n == 0:
        return []
    prefixes = ("stem_",) + tuple(f"stage{k}_" for k in range(1, int(n) + 1))
    frozen = []
    for layer in encoder.layers:
        if layer.name.startswith(prefixes):
            layer.trainable = False
            frozen.append(layer.name)
    if not frozen:
        raise ValueError(
            f"freeze_blocks: no layer of {encoder.name!r} is named stem_* or stage<k>_*; "
            "expected an encoder made by build_encoder")
    return frozen
