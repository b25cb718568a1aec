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
from tf_synchro.data import groups

TASKS = configs.TASK_SETS[0]  # Every head, in canonical order.
FUSIONS = configs.FUSIONS
VIEW_KEYS = groups.view_keys(groups.PAIRS)  # ("view_a", "view_b")
GROUP_NAME = "sync_flip_groups"  # The training model of --pair_grouping=quads|hexes|octets.


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
    """Inverse of :class:`StackViews`: splits ``[P*B, ...]`` into ``parts`` (default two)
    ``[B, ...]`` blocks."""

    def __init__(self, parts: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.parts = int(parts)

    def call(self, stacked):
        n = ops.shape(stacked)[0] // self.parts
        return tuple(stacked[i * n:(i + 1) * n] for i in range(self.parts))

    def compute_output_shape(self, shape):
        block = None if shape[0] is None else shape[0] // self.parts
        return tuple((block,) + tuple(shape[1:]) for _ in range(self.parts))

    def get_config(self):
        return {**super().get_config(), "parts": self.parts}


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

    heads = {}
    for task in tasks:
        layers = [keras.layers.Dense(head_units, activation="relu", name=f"{task}_hidden")
                  ] if head_units else []
        # float32 logits under mixed precision: the losses and sigmoids stay accurate.
        heads[task] = layers + [keras.layers.Dense(1, name=task, dtype="float32")]
    return _pair_model(encoder, _fusion_layer(fusion), heads, name)


def _fusion_layer(fusion: str) -> keras.layers.Layer:
    # "difference" is signed a - b. Sync and flip labels do not depend on the view order and
    # the pipeline draws the order at random, so the head learns any needed symmetry.
    return {"multiply": keras.layers.Multiply, "concat": keras.layers.Concatenate,
            "add": keras.layers.Add, "difference": keras.layers.Subtract}[fusion](
        name=f"fuse_{fusion}")


def _score(fuse, heads: dict, feats_a, feats_b) -> dict:
    """``{task: logits}`` of feature pairs (``fuse``, then each head's layers)."""
    fused = fuse([feats_a, feats_b])
    outputs = {}
    for task, layers in heads.items():
        x = fused
        for layer in layers:
            x = layer(x)
        outputs[task] = x
    return outputs


def _pair_model(encoder, fuse, heads: dict, name: str) -> keras.Model:
    in_shape = tuple(encoder.inputs[0].shape[1:])
    views = {k: keras.Input(in_shape, name=k, dtype="float32") for k in VIEW_KEYS}
    stacked = StackViews(name="stack_views")(views["view_a"], views["view_b"])
    feats_a, feats_b = SplitViews(name="split_views")(encoder(stacked))
    return keras.Model(inputs=views, outputs=_score(fuse, heads, feats_a, feats_b), name=name)


def _parts(model: keras.Model):
    """The encoder, fusion layer and ``{task: head layers}`` of a model from this module."""
    layers = {layer.name: layer for layer in model.layers}
    encoder = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    fuse = next(layer for name, layer in layers.items() if name.startswith("fuse_"))
    heads = {task: [layers[n] for n in (f"{task}_hidden", task) if n in layers]
             for task in TASKS if task in layers}
    return encoder, fuse, heads


def build_group_model(model: keras.Model, grouping: str, name: str = GROUP_NAME
                      ) -> keras.Model:
    """The training model of ``--pair_grouping=quads|hexes|octets`` around a sync/flip ``model``.

    It shares ``model``'s encoder and heads (the same layers and weights). Inputs are the
    2C frames of a group, :func:`tf_synchro.data.groups.view_keys` (float32
    ``[B, S, S, 3]``), encoded in one ``[2C*B]`` call; outputs are ``{task: [P*B, 1]
    logits}`` of the P pairs of :func:`tf_synchro.data.groups.pairs`, one block of ``B`` per pair, in that order (the
    labels of :mod:`tf_synchro.data.pairs` follow it). Scoring P pairs from 2C encoded
    frames costs little more than scoring C pairs: the heads are small.
    """
    encoder, fuse, heads = _parts(model)
    in_shape = tuple(encoder.inputs[0].shape[1:])
    keys = groups.view_keys(grouping)
    views = {k: keras.Input(in_shape, name=k, dtype="float32") for k in keys}
    stacked = keras.layers.Concatenate(axis=0, name="stack_group")([views[k] for k in keys])
    feats = SplitViews(parts=len(keys), name="split_group")(encoder(stacked))
    first, second = (keras.layers.Concatenate(axis=0, name=f"pair_{side}")(
        [feats[pair[i]] for pair in groups.pairs(grouping)])
        for i, side in enumerate(("a", "b")))
    return keras.Model(inputs=views, outputs=_score(fuse, heads, first, second), name=name)


def pair_model_of(model: keras.Model, name: str = "sync_flip") -> keras.Model:
    """The two-view sync/flip model sharing the encoder and heads of ``model`` (e.g. the
    model of :func:`build_group_model`): what is saved and evaluated."""
    return _pair_model(*_parts(model), name)
