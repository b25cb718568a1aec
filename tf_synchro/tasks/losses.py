"""Masked losses and metrics of the sync/flip pretext task (``keras.ops`` only).

Each pair has a label and a mask per head: the sync head never sees flipped pairs and the
flip head never sees unsynchronized pairs (mask 0). The paper's masked loss is the MEAN over
the pairs a head sees, so a head's gradient does not shrink when few of its pairs are in the
batch.

With ``model.fit`` pass the masks as per-output sample weights::

    model.compile(optimizer, loss=sync_flip_losses(tasks),
                  weighted_metrics=sync_flip_metrics(tasks))
    model.fit(dataset)  # dataset yields (views, labels, masks), all dicts keyed by task

The losses use Keras' ``reduction="mean_with_sample_weight"``: sum(mask * bce) / sum(mask),
with 0 (not NaN) when a batch has no pair for a head. Keras' default
``"sum_over_batch_size"`` would divide by the batch size instead, i.e. scale each head's loss
by the fraction of its pairs in the batch. Under a ``tf.distribute`` strategy each replica
averages over its own unmasked pairs and the gradients are averaged over replicas (exact when
replicas see equal numbers of unmasked pairs, close otherwise).

The metrics are ``BinaryAccuracy(threshold=0)`` on logits (logit > 0 <=> p > 0.5) given as
``weighted_metrics``, so Keras weights them by the mask: accuracy over unmasked pairs.
Custom loops (the benchmark) use the functions :func:`masked_bce` (the same Keras loss as
``model.fit``, called with the mask) and :func:`masked_accuracy`.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tf_synchro.models.siamese import check_tasks


def _flat_float32(x):
    # [B] or [B, 1] -> [B] float32: labels and masks may come as ints, logits as bf16.
    x = ops.convert_to_tensor(x)
    return ops.reshape(ops.cast(x, "float32"), (-1,))


def masked_bce_loss(name: str = "masked_bce") -> keras.losses.Loss:
    """The one pretext loss: binary cross-entropy from logits, mean over unmasked pairs.

    Keras' ``BinaryCrossentropy`` (numerically stable for any logit) with the reduction
    ``sum(mask * bce) / sum(mask)``; pass the mask as ``sample_weight``.
    """
    return keras.losses.BinaryCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight", name=name)


def masked_mean(values, mask):
    """Mean of ``values`` over entries with ``mask`` 1; 0 when the mask is all zeros."""
    values, mask = _flat_float32(values), _flat_float32(mask)
    return ops.divide_no_nan(ops.sum(values * mask), ops.sum(mask))


def masked_bce(labels, logits, mask):
    """Mean binary cross-entropy from logits over the unmasked pairs (scalar, float32).

    Args:
      labels: ``[B]`` or ``[B, 1]`` 0/1 targets.
      logits: ``[B]`` or ``[B, 1]`` head outputs (logits, any float dtype).
      mask: ``[B]`` or ``[B, 1]``; 1 where the pair counts for this head, 0 where it is
        ignored (masked pairs have no influence on the loss or its gradient).
    """
    labels, logits, mask = _flat_float32(labels), _flat_float32(logits), _flat_float32(mask)
    return masked_bce_loss()(labels[:, None], logits[:, None], sample_weight=mask)


def masked_accuracy(labels, logits, mask):
    """Fraction of unmasked pairs with ``(logit > 0) == label`` (scalar, float32)."""
    predicted = ops.cast(_flat_float32(logits) > 0.0, "float32")
    correct = ops.cast(ops.equal(predicted, _flat_float32(labels)), "float32")
    return masked_mean(correct, mask)


def sync_flip_losses(tasks: Sequence[str] = ("sync", "flip")) -> dict:
    """Per-output losses for ``model.compile``: masked mean BCE from logits per task.

    The mask must be passed as the output's sample weight (see the module docstring).
    """
    return {task: masked_bce_loss(f"{task}_bce") for task in check_tasks(tasks)}


def sync_flip_metrics(tasks: Sequence[str] = ("sync", "flip")) -> dict:
    """Per-output accuracy metrics for ``model.compile(weighted_metrics=...)``.

    Logged as ``<task>_accuracy`` (Keras prefixes the output name); as weighted metrics they
    count only the unmasked pairs.
    """
    return {task: [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")]
            for task in check_tasks(tasks)}


def total_masked_bce(labels: dict, logits: dict, masks: dict):
    """Sum over the heads in ``logits`` of :func:`masked_bce` (the pretext training loss)."""
    return sum(masked_bce(labels[t], logits[t], masks[t]) for t in check_tasks(tuple(logits)))
