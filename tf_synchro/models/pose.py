"""Monocular 3D pose model: the shared encoder plus a regression head (``keras.layers`` only).

``images float32 [B, S, S, 3] in [0, 255] -> joints3d float32 [B, 17, 3]``: root-relative
joints in the camera frame, in millimetres. The head regresses *standardised* coordinates
``z = (y - mean) / std`` of the 16 non-root joints (per joint and axis, statistics of the
training targets); :class:`PoseDenormalization` turns them back into mm and puts the root
at exactly 0, so the saved model and the exported SavedModel output mm directly while the
optimisation sees well-scaled targets. :class:`StandardizedPoseLoss` is the matching loss:
the squared error in units of ``std``, i.e. the MSE of ``z``.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from tf_synchro.models import resnet

NUM_JOINTS = 17
ROOT = 0


def _as_list(stats, name: str) -> list:
    arr = np.asarray(stats, np.float32)
    if arr.shape != (NUM_JOINTS, 3):
        raise ValueError(f"{name} must have shape ({NUM_JOINTS}, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr.tolist()


@keras.saving.register_keras_serializable(package="tf_synchro")
class PoseDenormalization(keras.layers.Layer):
    """Standardised non-root coordinates ``[B, 16 * 3]`` -> root-relative joints ``[B, 17, 3]`` (mm).

    Args:
      mean: ``[17, 3]`` per-joint mean of the targets (mm); the root entry is ignored.
      std: ``[17, 3]`` per-joint standard deviation (mm, > 0); the root entry is ignored.
    """

    def __init__(self, mean: Sequence, std: Sequence, **kwargs):
        super().__init__(**kwargs)
        self.mean = _as_list(mean, "mean")
        self.std = _as_list(std, "std")
        if np.any(np.asarray(self.std) <= 0):
            raise ValueError("std must be positive")
        # Constants (not weights): they are part of the config, so the saved model is
        # self-describing and no checkpoint can carry stale statistics.
        self._mean = np.delete(np.asarray(self.mean, np.float32), ROOT, axis=0)
        self._std = np.delete(np.asarray(self.std, np.float32), ROOT, axis=0)

    def call(self, z):
        z = ops.reshape(ops.cast(z, "float32"), (-1, NUM_JOINTS - 1, 3))
        joints = z * self._std + self._mean
        root = ops.zeros_like(joints[:, :1, :])
        return ops.concatenate([root, joints], axis=1)  # Root is joint 0 (skeleton order).

    def compute_output_shape(self, input_shape):
        return (input_shape[0], NUM_JOINTS, 3)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="tf_synchro")
class StandardizedPoseLoss(keras.losses.Loss):
    """Mean squared error of root-relative joints in units of the per-joint target std.

    With :class:`PoseDenormalization` in the model this is exactly the MSE of the
    standardised coordinates the head regresses. The root (always 0) is left out.

    Args:
      std: ``[17, 3]`` per-joint standard deviation (mm), as given to the model.
    """

    def __init__(self, std: Sequence, name: str = "standardized_pose_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.std = _as_list(std, "std")
        self._inv_std = 1.0 / np.maximum(np.delete(np.asarray(self.std, np.float32), ROOT, 0),
                                         1e-3)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        # Targets are root-relative already; subtracting the root again keeps the loss
        # right for absolute targets too.
        y_true = y_true - y_true[:, ROOT:ROOT + 1, :]
        y_pred = y_pred - y_pred[:, ROOT:ROOT + 1, :]
        err = (y_pred[:, 1:, :] - y_true[:, 1:, :]) * self._inv_std
        return ops.mean(ops.square(err), axis=(1, 2))

    def get_config(self) -> dict:
        return {**super().get_config(), "std": self.std}


def build_pose_model(encoder: keras.Model, mean: Sequence, std: Sequence,
                     head_units: Sequence[int] = (), dropout: float = 0.0,
                     name: str = "pose_model") -> keras.Model:
    """Encoder + pose head: raw pixels ``[B, S, S, 3]`` -> ``joints3d [B, 17, 3]`` (mm).

    Args:
      encoder: a :func:`tf_synchro.models.resnet.build_encoder` model (random or pretrained).
      mean: ``[17, 3]`` target mean (mm), e.g. from ``frames.joint_statistics``.
      std: ``[17, 3]`` target std (mm).
      head_units: hidden layer widths of the head (ReLU); empty: a linear head.
      dropout: dropout rate before the output layer.
      name: model name.
    """
    cfg = resnet.encoder_config(encoder)
    images = keras.Input((cfg["input_size"], cfg["input_size"], 3), name="images",
                         dtype="float32")
    x = encoder(images)
    for i, units in enumerate(head_units):
        x = keras.layers.Dense(units, activation="relu", name=f"pose_head_dense{i + 1}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="pose_head_dropout")(x)
    # float32 output layers whatever the policy: mm-scale outputs need the precision.
    z = keras.layers.Dense((NUM_JOINTS - 1) * 3, name="pose_head_out", dtype="float32")(x)
    joints = PoseDenormalization(mean, std, name="joints3d", dtype="float32")(z)
    return keras.Model(images, joints, name=name)


def pose_encoder(model: keras.Model) -> keras.Model:
    """The encoder inside a :func:`build_pose_model` model."""
    for layer in model.layers:
        if isinstance(layer, resnet.ResNetEncoder):
            return layer
    raise ValueError(f"model {model.name!r} contains no ResNetEncoder")
