r"""Self-supervised pre-training: Siamese sync/flip pretext task (Jenni & Favaro, ACCV 2020).

    python -m tf_synchro.pretrain --data_dir DIR --model_dir DIR \
        [--flagfile flags/pretrain_synthetic.flags] [--strategy mirrored]

Re-running the same command after a crash resumes from the last checkpoint in
``model_dir/backup``. At the end it writes ``model_dir/encoder.keras`` (for fine-tuning),
``model_dir/sync_flip.keras`` and the held-out pretext evaluation
(``pretext_eval.json``, ``sync_vs_gap.png``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional, Sequence

from absl import app, flags

from tf_synchro import evaluate_pretext, train_lib
from tf_synchro.data import augment, pairs, records
from tfrecords_tools import cli, dataset_io

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- flags

def _define_flags() -> None:
    """Flags of the binary (defined only when it runs, so the library imports cleanly)."""
    flags.DEFINE_string("data_dir", None, "Dataset directory (tfrecords_tools output).")
    flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, TensorBoard, exports.")
    flags.DEFINE_list("train_subjects", ["S1", "S5", "S6", "S7", "S8"],
                      "Pre-training subjects; shell patterns (U*) expand to the dataset's "
                      "matching subjects.")
    flags.DEFINE_list("eval_subjects", ["S9", "S11"], "Held-out subjects for the pretext eval "
                      "(empty: no evaluation).")
    # Model (a checkpoint depends on these: changing them needs a new --model_dir).
    flags.DEFINE_enum("arch", "resnet18", ["resnet18", "resnet34", "resnet50"], "Encoder.")
    flags.DEFINE_float("width", 1.0, "Encoder channel multiplier.")
    flags.DEFINE_integer("input_size", 128, "Square input side in pixels.")
    flags.DEFINE_enum("fusion", "multiply", ["multiply", "concat", "add", "difference"],
                      "Fusion of the two branch features.")
    flags.DEFINE_list("tasks", ["sync", "flip"], "Pretext heads: sync, flip or both.")
    flags.DEFINE_integer("head_units", 256, "Hidden units of each head MLP (0: linear).")
    # Pairs.
    flags.DEFINE_enum("views", "multi", list(pairs.VIEW_MODES),
                      "multi: two cameras; single: one camera + 2D augmentation (ablation l).")
    flags.DEFINE_integer("d_min", 4, "Unsynchronized pairs: |dt| > d_min frames.")
    flags.DEFINE_integer("d_max", 128, "Unsynchronized pairs: |dt| < d_max frames.")
    flags.DEFINE_enum("gap_sampling", "clip", list(pairs.GAP_SAMPLING),
                      "Unsynchronized |dt|: clip (t1 first; leans to small gaps near clip ends) or "
                      "uniform (gap first, flat over (d_min, d_max)); see pairs.PairConfig.")
    flags.DEFINE_integer("pairs_per_clip", 12, "Pairs drawn per parsed record.")
    flags.DEFINE_integer("shuffle_buffer", 2048, "Pair shuffle buffer.")
    flags.DEFINE_float("min_scale", 0.8, "Smallest random crop side (fraction of stored side).")
    flags.DEFINE_float("max_scale", 1.0, "Largest random crop side.")
    flags.DEFINE_enum("augment_on", "device", ["device", "host"],
                      "Where crops are resized, mirrored and colour-jittered: device (a Keras layer "
                      "in the train step; tf.data only decodes) or host (tf.data).")
    # Optimisation.
    flags.DEFINE_integer("batch_size", 16, "Global batch size (pairs), split over replicas.")
    flags.DEFINE_integer("train_steps", 200_000, "Optimiser steps.")
    flags.DEFINE_integer("steps_per_checkpoint", 1000, "Checkpoint period (divides train_steps).")
    flags.DEFINE_float("learning_rate", 1e-4, "Initial learning rate.")
    flags.DEFINE_float("final_learning_rate", 1e-7, "Learning rate at the end (cosine decay).")
    flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay.")
    flags.DEFINE_float("sync_loss_weight", 1.0, "Weight of the sync head's loss.")
    flags.DEFINE_float("flip_loss_weight", 1.0, "Weight of the flip head's loss.")
    flags.DEFINE_enum("strategy", "default", list(train_lib.STRATEGIES),
                      "default | mirrored (local devices) | multi_worker (TF_CONFIG).")
    flags.DEFINE_enum("mixed_precision", "float32", list(train_lib.PRECISIONS), "Dtype policy.")
    flags.DEFINE_integer("log_every", 50, "TensorBoard scalar period (steps).")
    flags.DEFINE_integer("seed", None, "Seed of weights and pairs (None: random).")
    flags.DEFINE_bool("deterministic", False, "Fixed tf.data order (slower; tests).")
    flags.DEFINE_integer("eval_passes", 2, "Passes over the held-out records in the final eval.")
    cli.define_data_check_flags("--eval_subjects that are also --train_subjects")
    flags.mark_flags_as_required(["data_dir", "model_dir"])


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything one pre-training run needs (built from flags by :func:`config_from_flags`)."""

    data_dir: str
    model_dir: str
    pairs: pairs.PairConfig
    train_subjects: tuple = ("S1", "S5", "S6", "S7", "S8")
    eval_subjects: tuple = ("S9", "S11")
    arch: str = "resnet18"
    width: float = 1.0
    fusion: str = "multiply"
    head_units: int = 256
    batch_size: int = 16
    train_steps: int = 200_000
    steps_per_checkpoint: int = 1000
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-7
    weight_decay: float = 1e-4
    loss_weights: tuple = (("sync", 1.0), ("flip", 1.0))
    strategy: str = "default"
    mixed_precision: str = "float32"
    log_every: int = 50
    seed: Optional[int] = None
    eval_passes: int = 2
    verbose: bool = True
    verify_data: str = "auto"
    allow_subject_overlap: bool = False

    def model_settings(self) -> dict:
        """Settings a checkpoint depends on (stored as ``config.json["model"]``)."""
        return {"arch": self.arch, "width": self.width,
                "input_size": self.pairs.augment.output_size, "fusion": self.fusion,
                "tasks": list(self.pairs.tasks), "head_units": self.head_units}

    def extra_settings(self) -> dict:
        """Recorded for reference and for the pretext evaluation (may change on resume)."""
        p = self.pairs
        return {"data_dir": os.path.abspath(self.data_dir),
                "train_subjects": list(self.train_subjects),
                "eval_subjects": list(self.eval_subjects),
                "pairs": {"d_min": p.d_min, "d_max": p.d_max, "views": p.views,
                          "augment_on": "device" if p.device_augment else "host",
                          "gap_sampling": p.gap_sampling,
                          "pairs_per_clip": p.pairs_per_clip, "min_scale": p.augment.min_scale,
                          "max_scale": p.augment.max_scale},
                "training": {"batch_size": self.batch_size, "train_steps": self.train_steps,
                             "learning_rate": self.learning_rate,
                             "final_learning_rate": self.final_learning_rate,
                             "weight_decay": self.weight_decay,
                             "loss_weights": dict(self.loss_weights), "strategy": self.strategy,
                             "mixed_precision": self.mixed_precision}}


def config_from_flags() -> PretrainConfig:
    """Reads the absl flags into a :class:`PretrainConfig`.

    Raises:
      dataset_io.DatasetError: a ``--train_subjects`` pattern (``U*``) matches no subject.
    """
    from tfrecords_tools import dataset_io
    train_subjects = dataset_io.expand_subjects(FLAGS.data_dir, FLAGS.train_subjects)
    pair_config = pairs.PairConfig(
        d_min=FLAGS.d_min, d_max=FLAGS.d_max, tasks=tuple(FLAGS.tasks), views=FLAGS.views,
        gap_sampling=FLAGS.gap_sampling,
        pairs_per_clip=FLAGS.pairs_per_clip, shuffle_buffer=FLAGS.shuffle_buffer,
        subjects=train_subjects, seed=FLAGS.seed, deterministic=FLAGS.deterministic,
        augment=augment.AugmentConfig(output_size=FLAGS.input_size, min_scale=FLAGS.min_scale,
                                      max_scale=FLAGS.max_scale),
        device_augment=FLAGS.augment_on == "device",
        skip_corrupt_records=FLAGS.skip_corrupt_records)
    return PretrainConfig(
        data_dir=FLAGS.data_dir, model_dir=FLAGS.model_dir, pairs=pair_config,
        train_subjects=train_subjects, eval_subjects=tuple(FLAGS.eval_subjects),
        arch=FLAGS.arch, width=FLAGS.width, fusion=FLAGS.fusion, head_units=FLAGS.head_units,
        batch_size=FLAGS.batch_size, train_steps=FLAGS.train_steps,
        steps_per_checkpoint=FLAGS.steps_per_checkpoint, learning_rate=FLAGS.learning_rate,
        final_learning_rate=FLAGS.final_learning_rate, weight_decay=FLAGS.weight_decay,
        loss_weights=(("sync", FLAGS.sync_loss_weight), ("flip", FLAGS.flip_loss_weight)),
        strategy=FLAGS.strategy, mixed_precision=FLAGS.mixed_precision,
        log_every=FLAGS.log_every, seed=FLAGS.seed, eval_passes=FLAGS.eval_passes,
        verify_data=FLAGS.verify_data, allow_subject_overlap=FLAGS.allow_subject_overlap)


# ----------------------------------------------------------------------------- the run

def _check_settings(config: PretrainConfig) -> None:
    """Flag checks that need no data (run before anything is read or written)."""
    from tf_synchro.models import resnet, siamese
    tasks = tuple(config.pairs.tasks)
    if siamese.check_tasks(tasks) != tasks:
        raise ValueError(f"--tasks={','.join(tasks)}: list them in the order sync,flip")
    size = config.pairs.augment.output_size
    if size < resnet.MIN_INPUT_SIZE:
        raise ValueError(f"--input_size={size}: expected >= {resnet.MIN_INPUT_SIZE} pixels "
                         f"(the encoder downsamples by 32)")
    if not config.width > 0:
        raise ValueError(f"--width={config.width}: expected a positive channel multiplier")
    train_lib.check_steps(config.train_steps, config.steps_per_checkpoint)
    if not config.train_subjects:
        raise ValueError("--train_subjects must name at least one subject")
    train_lib.check_subject_overlap(config.train_subjects, config.eval_subjects,
                                    "--train_subjects", "--eval_subjects",
                                    config.allow_subject_overlap)


def build_model(config: PretrainConfig, stored_size: Optional[int] = None):
    """Builds and compiles the sync/flip model (call under ``strategy.scope()``).

    With ``config.pairs.device_augment`` the compiled model is the sync/flip model behind a
    :class:`tf_synchro.models.view_augment.ViewAugment` layer (inputs: uint8 frames of
    ``stored_size`` (default: read from the dataset) and their draws);
    :func:`sync_flip_model` returns the bare model.
    """
    import keras
    from tf_synchro import losses
    from tf_synchro.models import resnet, siamese, view_augment

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    encoder = resnet.build_encoder(config.arch, config.width, config.pairs.augment.output_size)
    model = siamese.build_sync_flip_model(encoder, config.fusion, config.pairs.tasks,
                                          config.head_units)
    if config.pairs.device_augment:
        if stored_size is None:
            stored_size = pairs.check_records(
                records.dataset_files(config.data_dir, config.train_subjects),
                config.pairs)["image_size"]
        model = view_augment.wrap_with_augment(model, stored_size,
                                               config.pairs.augment.output_size)
    model.compile(
        optimizer=train_lib.make_optimizer(config.train_steps, config.learning_rate,
                                           config.final_learning_rate, config.weight_decay),
        loss=losses.sync_flip_losses(config.pairs.tasks),
        loss_weights={t: w for t, w in config.loss_weights if t in config.pairs.tasks},
        weighted_metrics=losses.sync_flip_metrics(config.pairs.tasks))
    return model


def sync_flip_model(model):
    """The bare sync/flip model (float crops in) of a model from :func:`build_model`."""
    return model.get_layer("sync_flip") if model.name != "sync_flip" else model


def train(config: PretrainConfig, strategy=None):
    """Runs (or resumes) pre-training and the final exports; returns ``(model, summary)``.

    Every check that can fail (settings, dataset, batch split, model_dir) runs before the
    first training step.

    Args:
      config: the run settings.
      strategy: a strategy made earlier (MultiWorkerMirroredStrategy must be created before
        any other TensorFlow op); default: ``train_lib.make_strategy(config.strategy)``.
    """
    # ---------------------------------------------------------------- checks, strategy
    strategy = strategy or train_lib.make_strategy(config.strategy)
    chief = train_lib.is_chief(strategy)
    _check_settings(config)
    config.pairs.validate()
    train_lib.replica_batch_size(config.batch_size, strategy)
    files = records.dataset_files(config.data_dir, config.train_subjects)
    dataset_io.verify_shards(config.data_dir, config.verify_data,
                             tuple(config.train_subjects) + tuple(config.eval_subjects),
                             config.pairs.skip_corrupt_records,
                             log=print if config.verbose and chief else lambda _: None)
    with dataset_io.naming_damaged_shard(files):
        data_info = pairs.check_records(files, config.pairs)
    with train_lib.hold_model_dir(config.model_dir, chief):
        return _train(config, strategy, chief, files, data_info)


def _train(config: PretrainConfig, strategy, chief: bool, files: list, data_info: dict):
    """The part of :func:`train` that writes to model_dir (its lock held)."""
    run_config = train_lib.prepare_model_dir(config.model_dir, config.model_settings(),
                                             config.extra_settings(), chief=chief)
    train_lib.set_mixed_precision(config.mixed_precision)

    # ---------------------------------------------------------------- model, data
    with strategy.scope():
        model = build_model(config, data_info["image_size"])
    dataset = train_lib.distributed_dataset(
        strategy, pairs.dataset_fn(config.data_dir, config.pairs, config.batch_size))
    if config.verbose and chief:
        print(f"{len(files)} shards, records checked: {data_info}; "
              f"{strategy.num_replicas_in_sync} replica(s); model "
              f"{json.dumps(run_config['model'])}; {model.count_params():,} parameters")

    # ---------------------------------------------------------------- train (resumes)
    start = time.time()
    result = train_lib.fit(model, dataset, model_dir=config.model_dir,
                           total_steps=config.train_steps,
                           steps_per_epoch=config.steps_per_checkpoint, strategy=strategy,
                           log_every=config.log_every, verbose=config.verbose,
                           data_files=files)
    summary = {"initial_step": result["initial_step"], "final_step": result["final_step"],
               "train_seconds": round(time.time() - start, 1),
               "final_metrics": {k: round(float(v[-1]), 4)
                                 for k, v in result["history"].items()}}

    # ---------------------------------------------------------------- export, evaluate
    if chief:
        bare = sync_flip_model(model)
        encoder = bare.get_layer("encoder")
        train_lib.save_model_atomic(encoder, os.path.join(config.model_dir, "encoder.keras"))
        train_lib.save_model_atomic(bare, os.path.join(config.model_dir, "sync_flip.keras"))
        if config.eval_subjects:
            results = evaluate_pretext.evaluate(
                bare, config.data_dir, config.pairs,
                evaluate_pretext.EvalConfig(subjects=tuple(config.eval_subjects),
                                            passes=config.eval_passes))
            evaluate_pretext.write_report(results, config.model_dir)
            summary["eval"] = {k: v for k, v in results.items() if k != "sync_accuracy_by_gap"}
        if config.verbose:
            print(json.dumps(summary))
    return model, summary


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    # The strategy first: MultiWorkerMirroredStrategy must exist before any TF op runs.
    strategy = train_lib.make_strategy(FLAGS.strategy)
    train(config_from_flags(), strategy)


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
