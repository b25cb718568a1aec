r"""Fine-tunes an encoder (pretrained or from scratch) into a monocular 3D pose estimator.

    python -m tf_synchro.finetune --flagfile=flags/finetune_synthetic.flags \
        --data_dir=/tmp/synth --model_dir=/tmp/pose_ssl --init_from=/tmp/pretrain

The model regresses the 17 joints, root-relative, in the camera frame (mm) from one crop
(:mod:`tf_synchro.models.pose`). As in the paper: the stem and the first ``--freeze_blocks``
residual stages stay frozen, AdamW (weight decay 1e-4) with a cosine schedule 1e-4 -> 1e-7.
Training goes through :mod:`tf_synchro.train_lib` (strategies, resumable checkpoints,
TensorBoard, progress); re-running the same command resumes. When training ends,
``model_dir/pose_model.keras`` is written (atomically) and ``config.json`` marks the run
finished; :mod:`tf_synchro.evaluate` and :mod:`tf_synchro.export` read both.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_synchro import metrics, train_lib
from tf_synchro.data import augment, frames
from tf_synchro.models import pose, resnet
from tfrecords_tools import dataset_io

POSE_MODEL_FILE = "pose_model.keras"
TASK = "pose3d"  # config.json model.task of a fine-tuning run.
SCRATCH = "scratch"


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on (the binary's flags, minus FLAGS).

    Attributes:
      data_dir: dataset written by tfrecords_tools (with 3D labels for the label subjects).
      model_dir: run directory (checkpoints, TensorBoard, ``pose_model.keras``).
      init_from: a pre-training model_dir holding ``encoder.keras``, or ``"scratch"``.
      arch, width, image_size: encoder settings (must match a pretrained encoder).
      label_subjects: subjects whose 3D labels are used (paper: S1; "All": S1,S5,S6,S7,S8).
      label_fraction: fraction of their labelled timesteps used (fixed subset).
      freeze_blocks: stem + this many residual stages frozen (paper: 3; 0 = train all).
      head_units: hidden widths of the pose head (empty: linear head).
      dropout: dropout before the head's output layer.
      batch_size: global batch (split over replicas).
      train_steps: optimiser steps; a multiple of ``steps_per_checkpoint``.
      steps_per_checkpoint: steps between checkpoints (resume granularity).
      learning_rate, final_learning_rate, weight_decay, warmup_steps: AdamW + cosine.
      flip_prob: horizontal flip probability (with left/right joint swap).
      min_scale, max_scale: random crop side range (fraction of the stored crop).
      brightness, contrast, saturation: colour jitter.
      strategy: ``default`` | ``mirrored`` | ``multi_worker``.
      mixed_precision: ``float32`` | ``mixed_bfloat16`` | ``mixed_float16``.
      seed: random seed of weights and pipeline.
      log_every: TensorBoard period (steps).
      progress_every: progress-bar period (steps).
      max_stat_frames: frames read to compute the target mean/std.
      verify_data: integrity check of the shards at start (``dataset_io.VERIFY_MODES``).
      skip_corrupt_records: skip damaged records instead of stopping.
    """

    data_dir: str
    model_dir: str
    init_from: str = SCRATCH
    arch: str = "resnet18"
    width: float = 1.0
    image_size: int = 128
    label_subjects: tuple = ("S1",)
    label_fraction: float = 1.0
    freeze_blocks: int = 3
    head_units: tuple = ()
    dropout: float = 0.0
    batch_size: int = 16
    train_steps: int = 200_000
    steps_per_checkpoint: int = 1000
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-7
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    flip_prob: float = 0.5
    min_scale: float = 0.8
    max_scale: float = 1.0
    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.2
    strategy: str = "default"
    mixed_precision: str = "float32"
    seed: int = 0
    log_every: int = 50
    progress_every: int = 10
    max_stat_frames: int = 20000
    verify_data: str = "auto"
    skip_corrupt_records: bool = False

    def frame_config(self, input_size: int) -> frames.FrameConfig:
        """The training pipeline settings for a model of ``input_size`` pixels."""
        aug = augment.AugmentConfig(
            output_size=input_size, min_scale=self.min_scale, max_scale=self.max_scale,
            brightness=self.brightness, contrast=self.contrast, saturation=self.saturation)
        return frames.FrameConfig(subjects=tuple(self.label_subjects),
                                  label_fraction=self.label_fraction, flip_prob=self.flip_prob,
                                  augment=aug, seed=self.seed,
                                  skip_corrupt_records=self.skip_corrupt_records)


# ----------------------------------------------------------------------------- model_dir files

class UnfinishedModelDirError(ValueError):
    """A model_dir has no finished fine-tuning run (no pose_model.keras / config.json)."""


def load_finished(model_dir: str) -> tuple[keras.Model, dict]:
    """Loads ``pose_model.keras`` and ``config.json`` of a finished run.

    Raises:
      UnfinishedModelDirError: naming the missing file and what writes it.
    """
    config_path = os.path.join(model_dir, train_lib.CONFIG_FILE)
    model_path = os.path.join(model_dir, POSE_MODEL_FILE)
    if not os.path.isdir(model_dir):
        raise UnfinishedModelDirError(f"--model_dir={model_dir} does not exist")
    if not os.path.exists(config_path):
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} has no {train_lib.CONFIG_FILE}: not a tf_synchro.finetune "
            f"run directory")
    with open(config_path) as f:
        config = json.load(f)
    if config.get("model", {}).get("task") != TASK:
        raise UnfinishedModelDirError(
            f"{config_path} is not from a fine-tuning run (model.task is not {TASK!r}); "
            f"pre-training directories hold encoder.keras only (use it as --init_from)")
    if not (config.get("finished") and os.path.exists(model_path)):
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} holds no finished fine-tuning run ({POSE_MODEL_FILE} is "
            f"written when training completes); finish it by re-running tf_synchro.finetune "
            f"with the same flags (it resumes from {train_lib.BACKUP_DIR}/)")
    model = keras.saving.load_model(model_path, compile=False)
    return model, config


def check_held_out(model_dir: str, subjects: Sequence[str], allow: bool = False) -> None:
    """Refuses test ``subjects`` that the run in ``model_dir`` trained on (labels, or the
    pre-training it started from), unless ``allow`` (then a warning)."""
    train = []
    for directory in (model_dir, _init_dir(model_dir)):
        path = os.path.join(directory or "", train_lib.CONFIG_FILE)
        if directory and os.path.exists(path):
            with open(path) as f:
                cfg = json.load(f)
            train += cfg.get("model", {}).get("label_subjects", [])
            train += cfg.get("train_subjects", [])
    train_lib.check_subject_overlap(list(dict.fromkeys(train)), subjects,
                                    "its labels and pre-training", "--subjects", allow)


def _init_dir(model_dir: str) -> Optional[str]:
    path = os.path.join(model_dir, train_lib.CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        init = json.load(f).get("model", {}).get("init_from")
    return None if init in (None, SCRATCH) else init


# ----------------------------------------------------------------------------- building

def build_encoder(config: FinetuneConfig) -> keras.Model:
    """The encoder to fine-tune: loaded from ``init_from`` or freshly initialised."""
    if config.init_from == SCRATCH:
        return resnet.build_encoder(config.arch, config.width, config.image_size)
    return pose.load_pretrained_encoder(
        config.init_from,
        expect={"arch": config.arch, "width": float(config.width),
                "input_size": int(config.image_size)})


def model_settings(config: FinetuneConfig, mean, std) -> dict:
    """The ``model`` section of config.json: what a checkpoint depends on.

    Flat, so that a refused resume names just the differing settings.
    """
    fc = config.frame_config(config.image_size)
    return {
        "task": TASK,
        "arch": config.arch, "width": float(config.width), "input_size": int(config.image_size),
        "head_units": list(config.head_units), "dropout": config.dropout,
        "freeze_blocks": config.freeze_blocks, "init_from": config.init_from,
        # The target statistics come from these labels, so they define the model too.
        "label_subjects": list(config.label_subjects), "label_fraction": config.label_fraction,
        "target_mean": np.asarray(mean, np.float32).tolist(),
        "target_std": np.asarray(std, np.float32).tolist(),
        "units": "mm, root-relative, camera frame",
        # How raw crops become model inputs: evaluation and the serving graph use this.
        "preprocess": {"crop_scale": fc.eval_crop_scale, "dct_method": fc.augment.dct_method},
    }


def _stored_statistics(model_dir: str) -> Optional[tuple]:
    """Target statistics of an existing run (resume uses them instead of recomputing)."""
    path = os.path.join(model_dir, train_lib.CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        model_cfg = json.load(f).get("model", {})
    if "target_mean" in model_cfg and "target_std" in model_cfg:
        return model_cfg["target_mean"], model_cfg["target_std"]
    return None


def _check_config(config: FinetuneConfig) -> None:
    if config.image_size < resnet.MIN_INPUT_SIZE:
        raise ValueError(f"--image_size={config.image_size}: expected >= "
                         f"{resnet.MIN_INPUT_SIZE} pixels (the encoder downsamples by 32)")
    if not config.width > 0:
        raise ValueError(f"--width={config.width}: expected a positive channel multiplier")
    train_lib.check_steps(config.train_steps, config.steps_per_checkpoint)
    if not 0 <= config.freeze_blocks <= 4:
        raise ValueError(f"--freeze_blocks={config.freeze_blocks} must lie in 0..4 "
                         f"(stem + that many residual stages)")
    if config.init_from != SCRATCH and not config.init_from:
        raise ValueError("--init_from must be a pre-training model_dir or 'scratch'")
    if config.init_from != SCRATCH and not os.path.isdir(config.init_from):
        # Checked here too (pose.load_pretrained_encoder does) so that a typo fails
        # before the target statistics are read.
        raise pose.IncompatibleEncoderError(
            f"--init_from={config.init_from}: no such directory (expected a pre-training "
            f"model_dir or 'scratch')")
    if not config.label_subjects:
        raise ValueError("--label_subjects must name at least one subject")


# ----------------------------------------------------------------------------- the run

def run(config: FinetuneConfig, strategy: Optional[tf.distribute.Strategy] = None,
        verbose: bool = True) -> dict:
    """Fine-tunes (or resumes), saves ``pose_model.keras`` and returns a summary.

    Args:
      config: run settings.
      strategy: distribution strategy (created first thing in ``main``); default: none.
      verbose: print progress.

    Returns:
      ``{"initial_step", "final_step", "seconds", "frozen_layers", "trainable_params",
      "pose_model"}``.

    Raises:
      ValueError subclasses naming the bad flag, file or value: unlabelled or missing
      subjects, an incompatible ``--init_from``, a model_dir holding another run.
    """
    _check_config(config)
    strategy = strategy or tf.distribute.get_strategy()
    chief = train_lib.is_chief(strategy)
    start = time.time()
    train_lib.replica_batch_size(config.batch_size, strategy)  # Raises on a bad --batch_size.

    # --- data: fail before building anything if the labels are not there.
    files = frames.labelled_files(config.data_dir, config.label_subjects)
    dataset_io.verify_shards(config.data_dir, config.verify_data, config.label_subjects,
                             config.skip_corrupt_records,
                             log=print if verbose and chief else lambda _: None)
    with train_lib.hold_model_dir(config.model_dir, chief):
        return _run(config, strategy, chief, files, verbose, start)


def _run(config: FinetuneConfig, strategy: tf.distribute.Strategy, chief: bool, files: list,
         verbose: bool, start: float) -> dict:
    """The part of :func:`run` that writes to model_dir (its lock held)."""
    frame_config = config.frame_config(config.image_size)
    stats = _stored_statistics(config.model_dir)
    if stats is None:
        with dataset_io.naming_damaged_shard(files):
            stats = frames.joint_statistics(files, frame_config, config.max_stat_frames)
    mean, std = stats

    # --- model: built under the strategy so its variables are mirrored; a bad --init_from
    # fails here, before anything is written to model_dir.
    train_lib.set_mixed_precision(config.mixed_precision)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        encoder = build_encoder(config)
        frozen = resnet.freeze_blocks(encoder, config.freeze_blocks)
        model = pose.build_pose_model(encoder, mean, std, config.head_units, config.dropout)
        model.compile(
            optimizer=train_lib.make_optimizer(config.train_steps, config.learning_rate,
                                               config.final_learning_rate, config.weight_decay,
                                               config.warmup_steps),
            loss=pose.StandardizedPoseLoss(std), metrics=metrics.pose_metrics())
    extra = {"data_dir": config.data_dir,
             "train": {k: v for k, v in dataclasses.asdict(config).items()
                       if k not in ("data_dir", "model_dir")}}
    stored = train_lib.prepare_model_dir(config.model_dir, model_settings(config, mean, std),
                                         extra, chief=chief)
    trainable = int(sum(keras.ops.size(w) for w in model.trainable_weights))
    if verbose and chief:
        print(f"fine-tuning {config.arch} x{config.width} at {config.image_size}px from "
              f"{config.init_from}: {len(frozen)} layers frozen (stem + {config.freeze_blocks} "
              f"stages), {trainable:,} trainable parameters")

    # --- train (resumes from model_dir/backup).
    # A resumed run continues the random stream elsewhere instead of replaying the frames
    # and augmentations of its first steps.
    state = train_lib.Checkpoint(os.path.join(config.model_dir, train_lib.BACKUP_DIR)).read_state()
    resumed_step = int(state["step"]) if state else 0
    frame_config = dataclasses.replace(frame_config, seed=config.seed + resumed_step)
    dataset = train_lib.distributed_dataset(
        strategy, frames.dataset_fn(files, frame_config, config.batch_size))
    result = train_lib.fit(model, dataset, model_dir=config.model_dir,
                           total_steps=config.train_steps,
                           steps_per_epoch=config.steps_per_checkpoint, strategy=strategy,
                           log_every=config.log_every, progress_every=config.progress_every,
                           verbose=verbose, data_files=files)

    # --- save the finished model, then mark the run finished (in that order: a crash
    # between the two leaves an unfinished run, which re-running completes).
    path = os.path.join(config.model_dir, POSE_MODEL_FILE)
    if chief:
        train_lib.save_model_atomic(model, path)
        stored = dict(stored, finished={"step": config.train_steps,
                                        "pose_model": POSE_MODEL_FILE})
        dataset_io.write_json_atomic(os.path.join(config.model_dir, train_lib.CONFIG_FILE),
                                     stored)
    summary = {"initial_step": result["initial_step"], "final_step": result["final_step"],
               "seconds": time.time() - start, "frozen_layers": frozen,
               "trainable_params": trainable, "pose_model": path}
    if verbose and chief:
        print(f"saved {path} after {summary['seconds']:.0f}s")
    return summary


# ----------------------------------------------------------------------------- binary

def _define_flags():
    from absl import flags
    d = FinetuneConfig
    flags.DEFINE_string("data_dir", None, "Dataset directory (tfrecords_tools output).")
    flags.DEFINE_string("model_dir", None, "Run directory (checkpoints, logs, pose_model.keras).")
    flags.DEFINE_string("init_from", SCRATCH, "Pre-training model_dir with encoder.keras, "
                        "or 'scratch' for a random initialisation.")
    flags.DEFINE_enum("arch", d.arch, sorted(resnet.ARCHS), "Encoder architecture.")
    flags.DEFINE_float("width", d.width, "Encoder channel multiplier.")
    flags.DEFINE_integer("image_size", d.image_size, "Model input side (pixels).")
    flags.DEFINE_list("label_subjects", list(d.label_subjects),
                      "Subjects whose 3D labels are used (paper: S1; All: S1,S5,S6,S7,S8).")
    flags.DEFINE_float("label_fraction", d.label_fraction,
                       "Fraction of the labelled timesteps used (fixed subset).")
    flags.DEFINE_integer("freeze_blocks", d.freeze_blocks,
                         "Freeze the stem and this many residual stages (0 = train all).")
    flags.DEFINE_list("head_units", [], "Hidden widths of the pose head (empty: linear).")
    flags.DEFINE_float("dropout", d.dropout, "Dropout before the head's output layer.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size.")
    flags.DEFINE_integer("train_steps", d.train_steps, "Optimiser steps.")
    flags.DEFINE_integer("steps_per_checkpoint", d.steps_per_checkpoint,
                         "Steps between checkpoints; must divide --train_steps.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Initial learning rate.")
    flags.DEFINE_float("final_learning_rate", d.final_learning_rate, "Cosine floor.")
    flags.DEFINE_float("weight_decay", d.weight_decay, "AdamW weight decay.")
    flags.DEFINE_integer("warmup_steps", d.warmup_steps, "Linear warm-up steps.")
    flags.DEFINE_float("flip_prob", d.flip_prob, "Horizontal flip probability (joints swapped).")
    flags.DEFINE_float("min_scale", d.min_scale, "Smallest random crop side (fraction).")
    flags.DEFINE_float("max_scale", d.max_scale, "Largest random crop side (fraction).")
    flags.DEFINE_float("brightness", d.brightness, "Brightness jitter (fraction of 255).")
    flags.DEFINE_float("contrast", d.contrast, "Contrast jitter.")
    flags.DEFINE_float("saturation", d.saturation, "Saturation jitter.")
    flags.DEFINE_enum("strategy", d.strategy, list(train_lib.STRATEGIES), "Distribution.")
    flags.DEFINE_enum("mixed_precision", d.mixed_precision, list(train_lib.PRECISIONS),
                      "Keras dtype policy.")
    flags.DEFINE_integer("seed", d.seed, "Random seed.")
    flags.DEFINE_integer("log_every", d.log_every, "TensorBoard period (steps).")
    flags.DEFINE_integer("progress_every", d.progress_every, "Progress period (steps).")
    flags.DEFINE_enum("verify_data", d.verify_data, list(dataset_io.VERIFY_MODES),
                      "Integrity check of the shards at start: full (sizes + sha256), size, "
                      "none; auto: full up to 2 GiB of shards, else size.")
    flags.DEFINE_bool("skip_corrupt_records", d.skip_corrupt_records,
                      "Skip damaged records (counted and logged) instead of stopping.")
    flags.mark_flags_as_required(["data_dir", "model_dir"])


def config_from_flags(flag_values) -> FinetuneConfig:
    """Builds the run config from parsed absl flags."""
    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    values = {n: flag_values[n].value for n in names if n in flag_values}
    values["label_subjects"] = tuple(values["label_subjects"])
    try:
        values["head_units"] = tuple(int(u) for u in values["head_units"])
    except ValueError as e:
        raise ValueError(f"--head_units={values['head_units']}: expected integers") from e
    return FinetuneConfig(**values)


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    flag_values = flags.FLAGS
    # The strategy first: MultiWorkerMirroredStrategy must exist before other TF ops run.
    strategy = train_lib.make_strategy(flag_values.strategy)
    run(config_from_flags(flag_values), strategy)


if __name__ == "__main__":
    from tfrecords_tools import cli
    _define_flags()
    cli.run(main)
