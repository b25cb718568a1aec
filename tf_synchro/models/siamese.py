"""Siamese sync/flip model (Jenni & Favaro, ACCV 2020), ``keras.layers`` / ``keras.ops`` only.

Two views ``view_a`` and ``view_b`` go through ONE encoder (shared weights). They are stacked
along the batch axis and encoded in a single call, then split again:

* one convolution call on a 2B batch is faster than two calls on B (better accelerator use);
* BatchNorm sees both views in one set of batch statistics and updates its moving
  statistics once per step (two calls would update them twice, from half batches each).

The two feature vectors are fused (``multiply``, the paper's best; ``concat``, ``add`` or
``difference`` = a - b, the ablations) and fed to one head per task. Each head is a small MLP
(``Dense(head_units) -> ReLU -> Dense(1)``) emitting a float32 LOGIT. The hidden layer matters
for a fair fusion ablation: a linear head on ``concat`` or ``add`` fusion scores
``f(a) + g(b)``, which cannot relate the two views at all, so it would measure the head rather
than the fusion. ``head_units=0`` gives a linear head.

Outputs are a dict keyed by task (``"sync"``, ``"flip"``), each ``[B, 1]``; the output layers
are named after the tasks, so losses and metrics can be given as dicts with those keys.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tf_synchro import configs

TASKS = configs.TASK_SETS[0]  # Every head, in canonical order.
FUSIONS = configs.FUSIONS
VIEW_KEYS = ("view_a", "view_b")


@keras.saving.register_keras_serializable(package="tf_synchro")
class StackViews(keras.layers.Layer):
    """Concatenates two equally shaped batches along the batch axis: ``[2B, ...]``."""

    def call(self, view_a, view_b):
        return ops.concatenate([view_a, view_b], axis=0)

    def compute_output_shape(self, view_a_shape, view_b_shape):
        batch = (None if view_a_shape[0] is None or view_b_shape[0] is None
                 else view_a_shape[0] + view_b_shape[0])
        return (batch,) + tuple(view_a_shape[1:])


@keras.saving.register_keras_serializable(package="tf_synchro")
class SplitViews(keras.layers.Layer):
    """Inverse of :class:`StackViews`: splits ``[2B, ...]`` into two ``[B, ...]`` halves."""

    def call(self, stacked):
        half = ops.shape(stacked)[0] // 2
        return stacked[:half], stacked[half:]

    def compute_output_shape(self, shape):
        half = None if shape[0] is None else shape[0] // 2
        out = (half,) + tuple(shape[1:])
        return out, out


def _fuse(a, b, fusion: str):
    if fusion == "multiply":
        return keras.layers.Multiply(name="fuse_multiply")([a, b])
    if fusion == "concat":
        return keras.layers.Concatenate(name="fuse_concat")([a, b])
    if fusion == "add":
        return keras.layers.Add(name="fuse_add")([a, b])
    # "difference": signed a - b. Sync and flip labels do not depend on the view order and
    # the pipeline draws the order at random, so the head learns any needed symmetry.
    return keras.layers.Subtract(name="fuse_difference")([a, b])


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """Validates ``tasks`` and returns them in canonical order (a subset of ``TASKS``).

    Raises:
      ValueError: empty, unknown or repeated task names.
    """
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown or len(set(tasks)) != len(tasks):
        raise ValueError(
            f"tasks must be a non-empty subset of {TASKS} without repeats, got {tasks!r}")
    return tuple(t for t in TASKS if t in tasks)


def build_sync_flip_model(encoder: keras.Model, fusion: str = "multiply",
                          tasks: Sequence[str] = TASKS, head_units: int = 256,
                          name: str = "sync_flip") -> keras.Model:
    """Builds the Siamese sync/flip model around one shared ``encoder``.

    Args:
      encoder: a model from pixels ``[B, S, S, 3]`` to features ``[B, C]``, for example
        :func:`tf_synchro.models.resnet.build_encoder`. It appears in the result as the
        layer ``encoder.name``, so ``model.get_layer(encoder.name)`` gives it back.
      fusion: ``"multiply"`` (default, the paper's best), ``"concat"``, ``"add"`` or
        ``"difference"``.
      tasks: heads to build, a non-empty subset of ``("sync", "flip")``.
      head_units: hidden units of each head's MLP; 0 for a linear head.
      name: model name.

    Returns:
      A functional model: inputs ``{"view_a", "view_b"}`` float32 ``[B, S, S, 3]`` raw
      pixels, outputs ``{task: [B, 1] float32 logits}`` for the requested tasks.

    Raises:
      ValueError: unknown fusion, bad tasks, negative head_units or an encoder without a
        known square input shape.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
    tasks = check_tasks(tasks)
    if int(head_units) != head_units or head_units < 0:
        raise ValueError(f"head_units must be an integer >= 0, got {head_units!r}")
    in_shape = tuple(encoder.inputs[0].shape[1:]) if getattr(encoder, "inputs", None) else ()
    if len(in_shape) != 3 or None in in_shape:
        raise ValueError(
            f"encoder {encoder.name!r} must have a fixed input shape [S, S, 3], got {in_shape}")

    views = {k: keras.Input(in_shape, name=k, dtype="float32") for k in VIEW_KEYS}
    stacked = StackViews(name="stack_views")(views["view_a"], views["view_b"])
    feats_a, feats_b = SplitViews(name="split_views")(encoder(stacked))
    fused = _fuse(feats_a, feats_b, fusion)
    outputs = {}
    for task in tasks:
        x = fused
        if head_units:
            x = keras.layers.Dense(head_units, activation="relu", name=f"{task}_hidden")(x)
        # float32 logits under mixed precision: the losses and sigmoids stay accurate.
        outputs[task] = keras.layers.Dense(1, name=task, dtype="float32")(x)
    return keras.Model(inputs=views, outputs=outputs, name=name)
