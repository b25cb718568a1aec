"""Shared training infrastructure: strategies, optimiser, resumable ``model.fit``, logging.

Used by the pre-training (:mod:`tf_synchro.pretrain`) and fine-tuning binaries, so both
train the same way:

* :func:`make_strategy` — ``default`` | ``mirrored`` | ``multi_worker`` (reads ``TF_CONFIG``).
  Create it first thing in ``main``: MultiWorkerMirroredStrategy must exist before other
  TensorFlow ops run.
* :func:`replica_batch_size` / :func:`distributed_dataset` — the global batch is split over
  replicas; every input pipeline builds its own sharded dataset with the per-replica batch.
* :func:`set_mixed_precision` and :func:`make_optimizer` (AdamW, cosine decay to a floor).
* the run directory itself (its files, the settings check, the lock, held-out subjects):
  :mod:`tf_synchro.run_dir`.
* :func:`fit` — one training loop (Keras ``model.fit`` under the strategy) with periodic
  atomic checkpoints in ``model_dir/backup`` and automatic resume: re-running the same
  command continues from the last checkpoint, TensorBoard scalars in
  ``model_dir/tensorboard`` (losses, metrics, learning rate, keyed by optimizer step) and a
  progress bar with ETA over the whole run.
* non-finite numbers stop a run (:class:`NonFiniteError`): the first step whose loss is NaN
  or inf, or weights that became non-finite at a checkpoint; nothing non-finite is ever
  saved (checkpoint, final model, export: :func:`check_finite_weights`), so the last good
  checkpoint stays.

A "checkpoint period" is a Keras epoch: ``fit`` runs ``total_steps // steps_per_epoch``
epochs of ``steps_per_epoch`` steps over an infinite dataset and checkpoints at each epoch
end, so resume granularity is one epoch and needs no Keras private state. SIGTERM (what
schedulers and ``timeout`` send) adds a checkpoint at the step then running; the re-run
finishes that period with a shorter ``model.fit`` call first (:func:`fit`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_synchro import configs, run_dir
from tfrecords_tools import dataset_io
from tfrecords_tools.runtime import cli, locks
from tfrecords_tools.runtime import progress as progress_lib

STRATEGIES = configs.STRATEGIES
PRECISIONS = configs.PRECISIONS


# ----------------------------------------------------------------------------- the tasks' skeleton
# Both tasks (tf_synchro.tasks.pretext, .pose3d) have one shape: ``check_settings(config)``
# (no data), ``build_model(config, <what the data says>)`` -> a compiled model,
# ``train(config, strategy)`` -> :class:`TrainResult`, ``evaluate(..., data_check=...)`` -> a
# JSON-able report. They share the rules below (docs/DESIGN.md §3, "The two tasks").

@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a task's ``train`` returns.

    Attributes:
      model: the trained model, as compiled for training.
      summary: JSON-able; ``initial_step`` (0 for a fresh run), ``final_step`` and the
        task's own entries (times, held-out results, skipped records...).
    """

    model: keras.Model
    summary: dict

    @property
    def initial_step(self) -> int:
        return self.summary["initial_step"]

    @property
    def final_step(self) -> int:
        return self.summary["final_step"]


def seed_weights(seed: Optional[int]) -> None:
    """Seeds the initial weights (Python, NumPy, TF and Keras); None leaves them random."""
    if seed is not None:
        keras.utils.set_random_seed(seed)


def resumed_step(model_dir: str) -> int:
    """The step of the checkpoint a run in ``model_dir`` resumes from (0: a fresh run)."""
    state = run_dir.read_state(os.path.join(model_dir, run_dir.BACKUP_DIR))
    return state.step if state else 0


def data_seed(seed: Optional[int], model_dir: str) -> Optional[int]:
    """The seed of a run's training input pipeline: ``seed`` plus the step it resumes from.

    A resumed run so continues the random stream elsewhere instead of replaying the data
    and augmentation of its first steps; a fresh run of one seed draws the same stream.
    None (a fresh random seed per pipeline) stays None.
    """
    return None if seed is None else seed + resumed_step(model_dir)


def check_data(data_dir: str, subjects: Mapping[str, Sequence[str]],
               check: configs.DataCheckConfig, *, trained: Optional[tuple] = None,
               log: Callable[[str], None] = print) -> None:
    """The data checks of both tasks, for training and evaluation alike, before any work.

    In order: held-out subjects (with ``trained``), every subject of each flag present in
    the dataset, then the shards' integrity (``--verify_data``).

    Args:
      data_dir: the dataset.
      subjects: ``{flag: subjects}`` the run reads (e.g. ``{"label_subjects": ...}``).
      check: ``--verify_data``, ``--skip_corrupt_records``, ``--allow_subject_overlap``.
      trained: ``(subjects the model trained on, where they come from)``: an evaluation
        refuses to test on them (the first flag of ``subjects``) unless
        ``--allow_subject_overlap``.
      log: where the integrity check and the overlap warning report.

    Raises:
      ValueError: naming the flag or file at fault.
    """
    if trained is not None:
        flag, test = next(iter(subjects.items()))
        run_dir.check_subject_overlap(trained[0], test, trained[1], f"--{flag}",
                                      check.allow_subject_overlap, log=log)
    for flag, names in subjects.items():
        dataset_io.check_subjects_present(data_dir, flag, names)
    every = tuple(dict.fromkeys(s for names in subjects.values() for s in names))
    dataset_io.verify_shards(data_dir, check.verify_data, every, check.skip_corrupt_records,
                             log=log)


# ----------------------------------------------------------------------------- strategies

def make_strategy(name: str) -> tf.distribute.Strategy:
    """Returns the distribution strategy called ``name``.

    Args:
      name: ``default`` (no distribution, one device), ``mirrored`` (all local GPUs or
        logical CPU devices, synchronous) or ``multi_worker`` (synchronous across the
        workers listed in the ``TF_CONFIG`` environment variable).

    Raises:
      ValueError: unknown name, or ``TF_CONFIG`` is not valid JSON.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        raw = os.environ.get("TF_CONFIG")
        if raw:
            try:
                json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"--strategy=multi_worker: TF_CONFIG is not valid JSON ({e})")
        # Without TF_CONFIG this is a valid single-worker run (handy for debugging).
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    # Worker 0 is chief when the cluster has no explicit "chief" task (TF convention).
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def replica_batch_size(global_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Per-replica batch for a global batch.

    Raises:
      ValueError: ``global_batch`` is not a positive multiple of the replica count.
    """
    n = strategy.num_replicas_in_sync
    if global_batch <= 0 or global_batch % n:
        raise ValueError(f"--batch_size={global_batch} must be a positive multiple of the "
                         f"number of replicas in sync ({n})")
    return global_batch // n


def distributed_dataset(strategy: tf.distribute.Strategy,
                        dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset],
                        data_service: str = ""):
    """Builds one input pipeline per worker via ``distribute_datasets_from_function``.

    ``dataset_fn(input_context)`` must shard by ``input_context`` and batch with
    ``input_context.get_per_replica_batch_size(global_batch)``. The default strategy
    returns the plain dataset (one pipeline, one replica). With ``data_service``
    (``grpc://HOST:PORT``) the pipeline runs on that tf.data service's workers
    (:mod:`tf_synchro.data.service`).
    """
    if data_service:
        from tf_synchro.data import service
        dataset_fn = service.dataset_fn(dataset_fn, data_service)
    return strategy.distribute_datasets_from_function(dataset_fn)


# ----------------------------------------------------------------------------- precision, optimiser

def set_mixed_precision(policy: str) -> None:
    """Sets the global Keras dtype policy (``float32``, ``mixed_bfloat16``, ``mixed_float16``).

    ``mixed_float16`` makes ``model.compile`` wrap the optimiser in a LossScaleOptimizer.
    Call before building the model.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"--mixed_precision={policy!r}: expected one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(policy)


def make_optimizer(total_steps: int, learning_rate: float = 1e-4,
                   final_learning_rate: float = 1e-7, weight_decay: float = 1e-4,
                   warmup_steps: int = 0) -> keras.optimizers.AdamW:
    """AdamW (default betas) with cosine decay from ``learning_rate`` to ``final_learning_rate``.

    The learning rate reaches ``final_learning_rate`` at ``total_steps`` (the paper's
    schedule: 1e-4 -> 1e-7). Create it under ``strategy.scope()``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive")
    if not 0 <= final_learning_rate <= learning_rate:
        raise ValueError(f"final_learning_rate={final_learning_rate} must lie in "
                         f"[0, learning_rate={learning_rate}]")
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=final_learning_rate / learning_rate if learning_rate else 0.0,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)


# ----------------------------------------------------------------------------- non-finite values

class NonFiniteError(cli.DataError):
    """A loss, weight or prediction is NaN or infinite (exit status 1: the run, not a flag,
    is at fault; the message suggests the flags that usually cause it)."""


def first_non_finite_weight(model: keras.Model) -> Optional[str]:
    """The path of the first model variable holding NaN or inf, or None (one pass over
    the weights, reading them to the host: for checkpoints and saves, not every step)."""
    for v in model.weights:
        if "float" in str(v.dtype) and not np.isfinite(np.asarray(_host_value(v))).all():
            return getattr(v, "path", None) or v.name
    return None


def check_finite_weights(model: keras.Model, path: str) -> None:
    """Raises NonFiniteError instead of letting ``path`` be written from NaN/inf weights."""
    bad = first_non_finite_weight(model)
    if bad:
        raise NonFiniteError(f"{path}: refusing to save a model whose weights are not finite "
                             f"(NaN or inf, first in {bad}); the run diverged (lower "
                             f"--learning_rate?)")


def _host_value(v):
    return v.numpy() if hasattr(v, "numpy") else keras.ops.convert_to_numpy(v)


# ----------------------------------------------------------------------------- model_dir

def save_model_atomic(model: keras.Model, path: str) -> None:
    """Saves a ``.keras`` file through a temporary name and a rename (no torn files).

    Raises:
      NonFiniteError: a weight is NaN or inf (nothing is written).
    """
    check_finite_weights(model, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = locks.temp_path(path, ".keras")  # Keras insists on the extension.
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- callbacks

class SyncNonTrainable(keras.callbacks.Callback):
    """Averages non-trainable float variables (BatchNorm moving statistics) over replicas.

    Keras 3 creates them with aggregation "none", so under a strategy each replica (and each
    worker) keeps the statistics of its own data; trainable weights stay identical because
    their gradients are all-reduced. Averaging at every epoch end (before the checkpoint)
    makes the saved model and all workers agree. A collective: every worker runs it.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self.strategy = strategy
        self._fn = None

    def _build(self):
        variables = [v for v in self.model.non_trainable_variables
                     if "float" in str(v.dtype)]

        def replica_fn():
            ctx = tf.distribute.get_replica_context()
            for v in variables:
                v.assign(ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(v.value)))

        @tf.function
        def sync():
            self.strategy.run(replica_fn)

        return sync

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.strategy.num_replicas_in_sync > 1:
            self._fn = self._fn or self._build()
            self._fn()


class Checkpoint(keras.callbacks.Callback):
    """Atomic checkpoint of weights + optimizer state at each epoch end; restores on demand.

    Files: ``<backup_dir>/latest.weights.h5`` (model and optimizer variables, incl. the step
    counter that drives the learning-rate schedule) and ``state.json`` (epochs done, step).
    Both are written to temporary names and renamed, weights first, so a crash leaves the
    previous consistent pair. Only the chief writes; reading mirrored variables is local, so
    other workers need not take part.
    """

    def __init__(self, backup_dir: str, chief: bool = True):
        super().__init__()
        self.backup_dir = backup_dir
        self.chief = chief
        self.weights_path = os.path.join(backup_dir, run_dir.WEIGHTS_FILE)

    def read_state(self) -> Optional[run_dir.TrainState]:
        """The stored state, or None when there is no checkpoint."""
        return run_dir.read_state(self.backup_dir)

    def restore(self, model: keras.Model) -> int:
        """Loads the last checkpoint into ``model`` (built and compiled); returns its step.

        The step is the optimiser's own counter, read back from the weights file (renamed
        into place before ``state.json``): a run killed between the two renames resumes
        from the weights, not from the older ``state.json``.
        """
        state = self.read_state()
        if state is None:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # Slots must exist to be loaded.
        try:
            model.load_weights(self.weights_path)
        except (ValueError, KeyError) as e:
            raise run_dir.ModelDirError(f"{self.weights_path} does not fit this model ({e}); "
                                        f"use another --model_dir") from e
        return _step(model) if model.optimizer is not None else state.step

    def kept(self) -> str:
        """Which checkpoint a stopped run keeps, for messages."""
        state = self.read_state()
        if state is None:
            return "no checkpoint was written"
        return f"the checkpoint of step {state.step} in {self.backup_dir} is kept"

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        # Every worker checks (the weights are the same everywhere), so all stop together.
        bad = first_non_finite_weight(self.model)
        if bad:
            loss = (logs or {}).get("loss")
            raise NonFiniteError(
                f"training stopped at step {_step(self.model)}: the weights are not finite "
                f"(NaN or inf, first in {bad}; mean loss of the period "
                f"{'n/a' if loss is None else f'{float(loss):.6g}'}); {self.kept()} and no "
                f"model was saved; lower --learning_rate (or check the data), then re-run")
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        """Writes the checkpoint of the current step (chief only): the weights under a
        temporary name, renamed, then ``state.json``."""
        if not self.chief:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp = locks.temp_path(self.weights_path, ".weights.h5")
        try:
            self.model.save_weights(tmp, overwrite=True)
            os.replace(tmp, self.weights_path)
        finally:  # Interrupted (Ctrl-C, a second SIGTERM): no temporary left behind.
            if os.path.exists(tmp):
                os.remove(tmp)
        run_dir.write_state(self.backup_dir, run_dir.TrainState(epochs_done, _step(self.model)))


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2
    # What tensorboard's scalar summary writes; built here because ``tf.summary.scalar``
    # needs the tensorboard package, which is not a dependency of this project.
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def write_scalar(name: str, value: float, step: int) -> None:
    """Writes a TensorBoard scalar to the default summary writer (no tensorboard import)."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                     metadata=_scalar_metadata())


def _scalar(value) -> float:
    # .numpy() on variables/eager tensors; keras.ops.convert_to_numpy warns under numpy 2.
    return float(value.numpy() if hasattr(value, "numpy") else value)


def _step(model: keras.Model) -> int:
    return int(_scalar(model.optimizer.iterations))


def _learning_rate(optimizer) -> float:
    return _scalar(optimizer.learning_rate)


class ScalarLogger(keras.callbacks.Callback):
    """TensorBoard scalars (every logged metric + ``learning_rate``) every ``every`` steps.

    Steps are the optimiser's step counter, so curves continue where they stopped after a
    resume (Keras' TensorBoard callback restarts its batch counter at 0).
    """

    def __init__(self, log_dir: str, every: int = 50, chief: bool = True):
        super().__init__()
        self.every = max(int(every), 1)
        self.writer = tf.summary.create_file_writer(log_dir) if chief else None

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.writer is None:
            return
        step = _step(self.model)
        if step % self.every:
            return
        with self.writer.as_default(step=step):
            for name, value in (logs or {}).items():
                write_scalar(f"train/{name}", float(value), step)
            write_scalar("train/learning_rate", _learning_rate(self.model.optimizer), step)

    def on_train_end(self, logs=None) -> None:
        if self.writer is not None:
            self.writer.flush()


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or inf.

    Keras hands callbacks the step's logs as Python floats (one host transfer per step
    that ``fit`` makes anyway), so the check itself costs a ``math.isfinite``. The logged
    loss is the running mean of the period, which turns non-finite exactly at the first
    non-finite step.
    """

    def __init__(self, checkpoint: "Checkpoint", steps_per_epoch: int):
        super().__init__()
        self.checkpoint, self.steps_per_epoch = checkpoint, steps_per_epoch
        self.offset = 0  # Steps of the epoch done before this fit call (see fit).
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = self._epoch * self.steps_per_epoch + self.offset + batch + 1
        raise NonFiniteError(f"training stopped at step {step}: loss is {float(loss)} (not "
                             f"finite); {self.checkpoint.kept()} and no model was saved; "
                             f"lower --learning_rate (or check the data), then re-run")


class StopOnSignal(keras.callbacks.Callback):
    """Ends training after the step during which SIGTERM arrived (``fit`` defers it to
    here, see :func:`tfrecords_tools.runtime.cli.deferred_sigterm`), with a checkpoint of that step.

    The checkpoint is written as the periodic ones are (weights renamed into place, then
    ``state.json``), so a second SIGTERM during the write leaves the previous checkpoint
    whole; weights that are not finite are not saved (the last good checkpoint stays).
    Under a strategy the BatchNorm statistics are the chief's own (averaging them is a
    collective the other workers would not join); the next period end averages them.
    """

    def __init__(self, checkpoint: "Checkpoint", steps_per_epoch: int):
        super().__init__()
        self.checkpoint, self.steps_per_epoch = checkpoint, steps_per_epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        try:
            cli.check_terminated()
        except cli.Terminated:
            if first_non_finite_weight(self.model) is None:
                self.checkpoint.save(_step(self.model) // self.steps_per_epoch)
            raise


class Progress(keras.callbacks.Callback):
    """One progress bar over all ``total_steps`` (not per epoch), with ETA, losses and lr."""

    def __init__(self, total_steps: int, steps_per_epoch: int, chief: bool = True,
                 every: int = 10, initial_step: int = 0, stream=None):
        super().__init__()
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.chief, self.every = chief, max(int(every), 1)
        self.initial_step = initial_step  # A resumed run measures its ETA from here.
        self.stream = stream or sys.stdout
        self.offset = 0  # Steps of the epoch done before this fit call (see fit).
        self._epoch = 0
        self._start, self._begun = time.time(), False

    def on_train_begin(self, logs=None) -> None:
        if not self._begun:  # fit may call model.fit twice (see fit); time the run once.
            self._start, self._begun = time.time(), True

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        step = self._epoch * self.steps_per_epoch + self.offset + batch + 1
        if not self.chief or (step % self.every and step != self.total_steps):
            return
        done = step - self.initial_step
        elapsed = time.time() - self._start
        eta = elapsed / max(done, 1) * (self.total_steps - step)
        items = " ".join(f"{k}={float(v):.4f}" for k, v in sorted((logs or {}).items()))
        lr = _learning_rate(self.model.optimizer)
        progress_lib.draw(self.stream, "step", step, self.total_steps, f"{elapsed:.0f}s", eta,
                          f" lr={lr:.2e} {items}")


# ----------------------------------------------------------------------------- the loop

def _first_local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return tf.distribute.get_strategy().experimental_local_results(value)[0]
    return value


def _patch_multi_worker_fit(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Lets Keras 3 ``model.fit`` run under MultiWorkerMirroredStrategy with several workers.

    Keras 3.15 ``fit`` breaks there in two places (keras-team/keras#20585, #20329):

    * before training, ``Trainer._maybe_symbolic_build`` reduces one whole nested batch with
      ``strategy.reduce``, which CollectiveAllReduce cannot do for a nest ("Attempt to
      convert a value ({... PerReplica ...}) ... to a Tensor"). The build only needs shapes,
      so this model instance takes the first local replica's batch instead;
    * after each step it reduces the scalar logs with ``strategy.reduce("MEAN", v, axis=0)``
      ("Invalid reduction dimension 0 for input with 0 dimensions"). The train function set
      here runs the same ``model.train_step`` under ``strategy.run`` and reduces the logs
      with ``axis=None``.

    Everything else (callbacks, history, optimizer, loss scaling by the replica count in
    ``train_step``) is Keras' own. Applied only with more than one worker.
    """
    extended = getattr(strategy, "extended", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or getattr(
            extended, "_num_workers", 1) <= 1:
        return
    if not (hasattr(model, "_maybe_symbolic_build") and hasattr(model, "_symbolic_build")
            and hasattr(model, "train_function")):
        raise RuntimeError(f"keras {keras.__version__}: the multi-worker fit workaround in "
                           f"{__name__} no longer matches Keras internals; revisit it")

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                with strategy.scope():
                    data_batch = tf.nest.map_structure(_first_local_value, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    @tf.function(reduce_retracing=True)
    def one_step(iterator):
        outputs = strategy.run(model.train_step, args=(next(iterator),))
        return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), outputs)

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_function = one_step


def fit(model: keras.Model, dataset, *, model_dir: str, total_steps: int, steps_per_epoch: int,
        strategy: Optional[tf.distribute.Strategy] = None, log_every: int = 50,
        progress_every: int = 10, callbacks: Iterable[keras.callbacks.Callback] = (),
        verbose: bool = True, data_files: Sequence[str] = ()) -> dict:
    """Trains a compiled model for ``total_steps``, resuming from ``model_dir`` if possible.

    Args:
      model: compiled (under ``strategy.scope()``) and built model.
      dataset: infinite ``tf.data.Dataset`` or distributed dataset of (x, y[, sample_weight]).
      model_dir: run directory (``backup/``, ``tensorboard/`` are created under it).
      total_steps: optimiser steps of the whole run.
      steps_per_epoch: steps between checkpoints; must divide ``total_steps``.
      strategy: the strategy the model was built under (chief-only writes).
      log_every: TensorBoard scalar period in steps.
      progress_every: progress-bar update period in steps.
      callbacks: extra Keras callbacks.
      verbose: print the progress bar.
      data_files: the shards ``dataset`` reads; a damaged record stops training with an
        error naming its shard (the last checkpoint stays as it was).

    Raises:
      NonFiniteError: a step's loss, or the weights at a checkpoint, became NaN or inf
        (the last good checkpoint stays).

    Returns:
      ``{"initial_step": step resumed from (0 for a fresh run), "final_step": ...,
      "history": Keras history dict of this call}``.

    On SIGTERM the step then running ends, a checkpoint of that step is written
    (:class:`StopOnSignal`) and :class:`tfrecords_tools.runtime.cli.Terminated` is raised; the
    re-run first trains the rest of that checkpoint period (a second ``model.fit`` call,
    whose input pipeline starts afresh), then whole periods.
    """
    configs.check_steps(total_steps, steps_per_epoch)
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    ckpt = Checkpoint(os.path.join(model_dir, run_dir.BACKUP_DIR), chief=chief)
    epochs = total_steps // steps_per_epoch
    initial_step = ckpt.restore(model)
    # A checkpoint written on SIGTERM lies inside a period: finish that period first.
    initial_epoch, partial = divmod(initial_step, steps_per_epoch)
    if initial_step and chief and verbose:
        print(f"Resuming from checkpoint at step {initial_step} in {ckpt.backup_dir}")
    # Order matters: a non-finite loss stops the step before anything logs or saves it;
    # statistics are averaged before the checkpoint checks and saves them.
    offset_cbs = [StopOnNonFinite(ckpt, steps_per_epoch)]
    cbs = [StopOnSignal(ckpt, steps_per_epoch), offset_cbs[0], SyncNonTrainable(strategy),
           ckpt,
           ScalarLogger(os.path.join(model_dir, run_dir.TENSORBOARD_DIR, "train"), log_every,
                        chief)]
    if verbose:
        offset_cbs.append(Progress(total_steps, steps_per_epoch, chief, progress_every,
                                   initial_step))
        cbs.append(offset_cbs[-1])
    cbs.extend(callbacks)
    history = {}
    _patch_multi_worker_fit(model, strategy)
    # One fit call per run of equal periods, (first epoch, end epoch, steps, offset): the
    # rest of a started period, then the whole ones.
    calls = [(initial_epoch, initial_epoch + 1, steps_per_epoch - partial, partial)] \
        if partial and initial_step < total_steps else []
    if initial_epoch + bool(partial) < epochs:
        calls.append((initial_epoch + bool(partial), epochs, steps_per_epoch, 0))
    if calls:
        with dataset_io.naming_damaged_shard(
                data_files, "training stopped, the last checkpoint is kept"), \
                cli.deferred_sigterm():
            for first, end, steps, offset in calls:
                for cb in offset_cbs:
                    cb.offset = offset
                done = model.fit(dataset, epochs=end, initial_epoch=first,
                                 steps_per_epoch=steps, callbacks=cbs, verbose=0,
                                 shuffle=False).history  # The pipeline shuffles.
                history = {k: list(history.get(k, [])) + list(v) for k, v in done.items()}
    return {"initial_step": initial_step, "final_step": total_steps, "history": history}
