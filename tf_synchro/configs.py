"""Every setting of the project, once: the config dataclasses and the flags made from them.

A setting is one dataclass field here plus its use. Its flag, help text, choices, range and
default come from the field (:func:`setting`), so a binary defines its flags with
:func:`define_flags` and reads them back with :func:`from_flags`; nothing repeats a choice
list or maps flags to fields by hand. Nested configs are flattened into flags by field name
(``ModelConfig.input_size`` is ``--input_size``), so a name means one thing in every binary.
The engine behind these names is :mod:`tfrecords_tools.runtime.flags` (re-exported here);
this module hands it its flag aliases.

==================== ==========================================================================
config               holds
==================== ==========================================================================
:class:`ModelConfig` encoder and pretext heads (``arch``, ``width``, ``input_size``, ``fusion``,
                     ``tasks``, ``head_units``): shared by pre-training and fine-tuning
:class:`OptimizerConfig` batch, steps, checkpoint period, AdamW and its cosine schedule
:class:`AugmentConfig` crop/scale and colour jitter (the tf.data and on-device augmentation)
:class:`PairConfig`  the pretext pair pipeline (:mod:`tf_synchro.data.pairs`)
:class:`FrameConfig` the labelled-frame pipelines (:mod:`tf_synchro.data.frames`)
:class:`DataCheckConfig` integrity checks of the shards, damaged records, subject overlap
:class:`RuntimeConfig` strategy, precision, seed, logging
:class:`PretrainConfig` one pre-training run (nests the above)
:class:`FinetuneConfig` one fine-tuning run (nests the above)
:class:`DemoConfig`, :class:`ExperimentsConfig` the suite drivers (``demo``, ``experiments``)
:class:`RowConfig`   an experiment row flagfile (:mod:`tf_synchro.suite.experiment_lib`)
==================== ==========================================================================

Settings a config derives from another (the pair pipeline's tasks, input size, subjects and
seed come from the run's model, subjects and seed) are not flags; the run's methods
(:meth:`PretrainConfig.pair_config`, :meth:`FinetuneConfig.frame_config`) build the
pipeline configs, so the trained and the checked values cannot differ.

Renamed flags keep their old spelling for one release (:data:`DEPRECATED_ALIASES`): a run
that uses one gets a warning naming the new flag. This module imports neither TensorFlow
nor Keras.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from tf_synchro.data import groups
from tfrecords_tools import dataset_io
# The flag engine (fields -> flags -> checked configs); its names are re-exported here, so a
# binary reads every setting through this module.
from tfrecords_tools.runtime.flags import (BOUND_KEYS, check_ranges, define_flags,  # noqa: F401
                                           flag_fields, from_flags, make, numeric_type,
                                           register_aliases, setting, warn_deprecated)

# ----------------------------------------------------------------------------- choices
# The one list of each kind (the model, data and training modules import these).
ARCHS = ("resnet10", "resnet18", "resnet34", "resnet50")
FUSIONS = ("multiply", "concat", "add", "difference")
TASK_SETS = (("sync", "flip"), ("sync",), ("flip",))  # Pretext heads, in canonical order.
VIEW_MODES = ("multi", "single")
GAP_SAMPLING = ("clip", "uniform")
AUGMENT_ON = ("device", "host")
DCT_METHODS = ("INTEGER_FAST", "INTEGER_ACCURATE", "")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
VERIFY_MODES = dataset_io.VERIFY_MODES
SCRATCH = "scratch"  # --init_from value: random initialisation.
MIN_INPUT_SIZE = 32  # The encoder downsamples by 32.
EXPORT_WHAT = ("pose", "encoder")
EXPORT_FORMATS = ("saved_model", "onnx", "tflite")
# Scales of the experiment suites (tf_synchro.suite.experiment_lib.SCALES: a flagfile per binary).
SUITE_SCALES = ("cpu", "paper", "tiny")

# Old flag spellings accepted for one release: {binary: {old: new}}.
DEPRECATED_ALIASES = {
    "tf_synchro.finetune": {"image_size": "input_size", "head_units": "pose_head_units"},
}
# Second spellings that stay ({binary: {alias: flag}}): evaluate's --model is predict's name
# for the same thing (a run directory or a deployed artefact).
FLAG_ALIASES = {
    "tf_synchro.evaluate": {"model": "model_dir"},
}
register_aliases(lasting=FLAG_ALIASES, deprecated=DEPRECATED_ALIASES)


def check_steps(train_steps: int, steps_per_checkpoint: int) -> None:
    """Raises ValueError unless ``--train_steps`` is a positive multiple of the period."""
    if (steps_per_checkpoint <= 0 or train_steps <= 0
            or train_steps % steps_per_checkpoint):
        raise ValueError(f"--train_steps={train_steps} must be a positive multiple of "
                         f"--steps_per_checkpoint={steps_per_checkpoint}")


def check_subjects(name: str, subjects: Sequence[str]) -> None:
    """Raises ValueError naming ``--name`` when a subject list is empty or has an empty name."""
    if not subjects or not all(subjects):
        raise ValueError(f"--{name}={','.join(subjects)}: expected a comma-separated list of "
                         f"one or more subject names")


# ----------------------------------------------------------------------------- configs

@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The encoder and the pretext heads; a checkpoint depends on every field."""

    arch: str = setting("resnet18", "Encoder: ResNet depth.", choices=ARCHS)
    width: float = setting(1.0, "Encoder channel multiplier.", above=0)
    input_size: int = setting(128, "Square model input side in pixels (a multiple of 32 is "
                              "exact; at least 32).", minimum=MIN_INPUT_SIZE)
    fusion: str = setting("multiply", "Fusion of the two branch features (pretext model).",
                          choices=FUSIONS)
    tasks: tuple = setting(("sync", "flip"), "Pretext heads: sync, flip or both (in that "
                           "order).", choices=("sync", "flip"))
    head_units: int = setting(256, "Hidden units of each pretext head MLP (0: linear).", minimum=0)

    def check_encoder(self) -> None:
        """Raises ValueError naming the encoder flag at fault (declared ranges)."""
        check_ranges(self)

    def encoder_settings(self) -> dict:
        """What an encoder file records of itself (``resnet.encoder_config``)."""
        return {"arch": self.arch, "width": float(self.width), "input_size": int(self.input_size)}


# Fine-tuning builds only the encoder: the pretext fields are not its flags.
ENCODER_FIELDS = ("arch", "width", "input_size")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with a cosine schedule, and the run length."""

    batch_size: int = setting(16, "Global batch size, split over replicas.", minimum=1)
    train_steps: int = setting(200_000, "Optimiser steps.", minimum=1)
    steps_per_checkpoint: int = setting(1000, "Steps between checkpoints (resume granularity); "
                                        "must divide --train_steps.", minimum=1)
    learning_rate: float = setting(1e-4, "Initial learning rate.", above=0)
    final_learning_rate: float = setting(1e-7, "Learning rate at the end (cosine decay).",
                                         minimum=0)
    weight_decay: float = setting(1e-4, "AdamW weight decay.", minimum=0)
    warmup_steps: int = setting(0, "Linear warm-up steps.", minimum=0)

    def check(self) -> None:
        """Raises ValueError naming the first bad setting: the declared ranges, then the
        relations (period divides steps, final rate <= initial rate, warm-up <= steps)."""
        check_ranges(self)
        check_steps(self.train_steps, self.steps_per_checkpoint)
        if self.final_learning_rate > self.learning_rate:
            raise ValueError(f"--final_learning_rate={self.final_learning_rate}: expected a "
                             f"number in [0, --learning_rate={self.learning_rate}]")
        if self.warmup_steps > self.train_steps:
            raise ValueError(f"--warmup_steps={self.warmup_steps}: expected 0.."
                             f"--train_steps={self.train_steps}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Crop/scale and colour-jitter settings.

    Attributes:
      output_size: side of the images fed to the model, pixels (the model's input size).
      min_scale, max_scale: crop side range, as fractions of the stored crop side.
      eval_scale: central crop side for evaluation (None: the middle of the training range,
        so objects have the same mean size in training and evaluation).
      brightness: largest brightness shift, as a fraction of 255.
      contrast, saturation: factors drawn from [1 - x, 1 + x].
      dct_method: JPEG IDCT; ``INTEGER_FAST`` decodes faster at no visible cost at these sizes.
    """

    output_size: int = setting(128, flag=False, minimum=8)
    min_scale: float = setting(0.8, "Smallest random crop side (fraction of the stored side).",
                               above=0, maximum=1)
    max_scale: float = setting(1.0, "Largest random crop side (fraction of the stored side).",
                               above=0, maximum=1)
    eval_scale: Optional[float] = setting(None, flag=False, above=0, maximum=1)
    brightness: float = setting(0.15, "Brightness jitter (fraction of 255).", minimum=0, below=1)
    contrast: float = setting(0.2, "Contrast jitter.", minimum=0, below=1)
    saturation: float = setting(0.2, "Saturation jitter.", minimum=0, below=1)
    dct_method: str = setting("INTEGER_FAST", flag=False, choices=DCT_METHODS)

    def validate(self) -> None:
        """Raises ValueError naming the first bad field: declared ranges, then
        min_scale <= max_scale."""
        check_ranges(self)
        if self.min_scale > self.max_scale:
            raise ValueError(f"--min_scale={self.min_scale}, --max_scale={self.max_scale}: "
                             f"expected 0 < min_scale <= max_scale <= 1")

    @property
    def central_scale(self) -> float:
        return self.eval_scale if self.eval_scale is not None else (
            (self.min_scale + self.max_scale) / 2)


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """Settings of the pair pipeline (:mod:`tf_synchro.data.pairs`).

    Attributes:
      d_min, d_max: unsynchronized pairs satisfy d_min < |dt| < d_max (frames).
      tasks: heads trained, ``("sync", "flip")`` or one of them; decides the pair types.
      views: ``multi`` (two different cameras) or ``single`` (both frames from one camera,
        the paper's ablation (l); the 2D augmentation then makes the two frames differ).
      pairs_per_clip: pairs drawn per parsed record (amortises parsing; a multiple of the
        number of pair types keeps types exactly balanced).
      shuffle_buffer: pairs mixed across clips before batching (0: no shuffle).
      training: random crop/scale and colour jitter (else a fixed central crop).
      augment: crop and jitter settings.
      device_augment: hand the model whole decoded frames (uint8, stored size) and the
        crop/flip/jitter draws (``aug_a``/``aug_b``, see
        :mod:`tf_synchro.models.view_augment`) instead of finished crops; the model applies
        them on the accelerator. Same draws as the host path.
      subjects: keep only these subjects (None: all).
      seed: random seed (None: a fresh one per pipeline).
      deterministic: fixed element order for a seed (tests, evaluation).
      passes: passes over the records (None: forever, for training).
      cycle_length: shards read concurrently.
      gap_sampling: how unsynchronized pairs pick ``|dt|``. ``clip``: ``t1`` uniform over
        the timesteps that have a partner in range, then the partner (weighted by the frames
        it stands for); near clip ends only one side has partners, so over a clip ``|dt|``
        leans towards small gaps (measured on the CPU dataset's 256-timestep clips: about 4x
        more gaps in 5-20 than in 97-128). ``uniform``: ``|dt|`` first, uniform over
        ``(d_min, min(d_max, clip span)]``, then ``t1`` uniform over the timesteps with a
        frame ``|dt|`` away inside the clip, and ``t2`` the kept frame nearest to it.
      skip_corrupt_records: skip damaged records instead of stopping (see
        :func:`tf_synchro.data.records.clip_dataset`).
      pair_grouping: ``pairs``: each element is one pair of frames (the paper).
        ``quads`` / ``hexes`` / ``octets`` (octets: the CPU default of
        ``flags/pretrain_synthetic.flags``): each element is C = 2 / 3 / 4 different cameras
        at two unsynchronized instants ``t1, t2`` (2C frames), scored as the pairs of
        :func:`tf_synchro.data.groups.pairs`: same-instant pairs synchronized, cross-instant
        pairs of two cameras unsynchronized. With a flip head one ``t2`` frame is mirrored: its
        same-instant pairs are the flipped pairs, its cross-instant pairs are masked for
        both heads. Per encoded frame that gives 1.5x / 3.5x / 5.6x the head labels of
        plain pairs, and the sync head sees one frame both in and out of sync. With the flip
        head alone only the same-instant pairs are scored. Evaluation always draws plain
        pairs. ``pairs_per_clip`` and the batch size count elements (groups).
    """

    d_min: int = setting(4, "Unsynchronized pairs: |dt| > d_min frames.", minimum=0)
    d_max: int = setting(128, "Unsynchronized pairs: |dt| < d_max frames.", minimum=2)
    tasks: tuple = setting(("sync", "flip"), flag=False)
    views: str = setting("multi", "multi: two cameras; single: one camera + 2D augmentation "
                         "(ablation l).", choices=VIEW_MODES)
    pairs_per_clip: int = setting(24, "Pairs drawn per parsed record.", minimum=1)
    shuffle_buffer: int = setting(512, "Pair shuffle buffer (0: none).", minimum=0)
    training: bool = setting(True, flag=False)
    augment: AugmentConfig = setting(factory=AugmentConfig)
    device_augment: bool = setting(False, flag=False)
    subjects: Optional[tuple] = setting(None, flag=False)
    seed: Optional[int] = setting(None, flag=False, minimum=0)
    deterministic: bool = setting(False, flag=False)
    passes: Optional[int] = setting(None, flag=False, minimum=1)
    cycle_length: int = setting(4, flag=False, minimum=1)
    gap_sampling: str = setting("clip", "Unsynchronized |dt|: clip (t1 first; leans to small "
                                "gaps near clip ends) or uniform (gap first, flat over "
                                "(d_min, d_max)); see configs.PairConfig.",
                                choices=GAP_SAMPLING)
    skip_corrupt_records: bool = setting(False, flag=False)
    pair_grouping: str = setting(groups.PAIRS, "pairs: one pair per element (the paper); "
                                 "quads / hexes / octets: 2 / 3 / 4 cameras at two times, "
                                 "scored as all their pairs (octets: the CPU default of "
                                 "flags/pretrain_synthetic.flags); see "
                                 "tf_synchro.data.groups.", choices=groups.GROUPINGS)

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting: declared ranges, then the
        relations (d_min < d_max with a gap between them, a known set of heads); that
        d_max fits the clips is checked against the records (:mod:`tf_synchro.data.pairs`)."""
        check_ranges(self)
        if self.d_min >= self.d_max:
            raise ValueError(f"--d_min={self.d_min}, --d_max={self.d_max}: expected "
                             f"0 <= d_min < d_max")
        if self.d_max - self.d_min < 2:
            raise ValueError(f"--d_min={self.d_min}, --d_max={self.d_max}: no integer gap "
                             f"lies strictly between them")
        if tuple(self.tasks) not in TASK_SETS:
            raise ValueError(f"--tasks={','.join(self.tasks)}: expected one of "
                             f"{[list(t) for t in TASK_SETS]}")
        self.augment.validate()



@dataclasses.dataclass(frozen=True)
class FrameConfig:
    """Settings of the labelled-frame pipelines (:mod:`tf_synchro.data.frames`).

    Attributes:
      subjects: subjects whose frames are used (label subjects for training, test subjects
        for evaluation).
      label_fraction: fraction of labelled timesteps kept (training); the choice is a fixed
        hash of (sequence id, frame number), so it is the same subset in every run and all
        views of a kept timestep are kept.
      frame_step: evaluation keeps frames whose original frame number is a multiple of it.
      flip_prob: probability of a horizontal flip (with joint swap) in training.
      augment: crop/scale and colour-jitter settings; ``output_size`` is the model input.
      shuffle_buffer: frames mixed across clips before decoding (training).
      seed: random seed (None: a fresh one per pipeline).
      deterministic: fixed element order for a seed (tests).
      cycle_length: shards read concurrently.
      skip_corrupt_records: skip damaged records instead of stopping.
    """

    subjects: tuple = setting(("S1",), flag=False)
    label_fraction: float = setting(1.0, "Fraction of the labelled timesteps used (a fixed "
                                    "subset).", above=0, maximum=1)
    frame_step: int = setting(64, flag=False, minimum=1)
    flip_prob: float = setting(0.5, "Horizontal flip probability (joints swapped).", minimum=0,
                               maximum=1)
    augment: AugmentConfig = setting(factory=AugmentConfig)
    shuffle_buffer: int = setting(4096, flag=False, minimum=0)
    seed: Optional[int] = setting(None, flag=False, minimum=0)
    deterministic: bool = setting(False, flag=False)
    cycle_length: int = setting(4, flag=False, minimum=1)
    skip_corrupt_records: bool = setting(False, flag=False)

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting (declared ranges, subjects)."""
        check_ranges(self)
        if not self.subjects:
            raise ValueError("subjects must name at least one subject")
        self.augment.validate()

    @property
    def eval_crop_scale(self) -> float:
        """Central crop used in evaluation and serving (mid training range; see augment)."""
        return self.augment.central_scale


@dataclasses.dataclass(frozen=True)
class DataCheckConfig:
    """The data-safety settings of every binary that reads a dataset."""

    verify_data: str = setting("auto", "Integrity check of the shards at start: full (sizes "
                               "+ sha256), size, none; auto: full up to 2 GiB of shards, "
                               "else size.", choices=VERIFY_MODES)
    skip_corrupt_records: bool = setting(False, "Skip damaged records (counted and logged) "
                                         "instead of stopping.")
    allow_subject_overlap: bool = setting(False, "Allow test subjects the model trained on "
                                          "(a warning instead of an error).")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How a training run executes (none of it changes the model)."""

    strategy: str = setting("default", "default | mirrored (local devices) | multi_worker "
                            "(TF_CONFIG).", choices=STRATEGIES)
    mixed_precision: str = setting("float32", "Keras dtype policy.", choices=PRECISIONS)
    seed: Optional[int] = setting(None, "Seed of weights, data order and augmentation "
                                  "(None: random).", minimum=0)
    deterministic: bool = setting(False, "Fixed tf.data order (slower; tests).")
    log_every: int = setting(50, "TensorBoard scalar period (steps).", minimum=1)
    progress_every: int = setting(10, "Progress-bar period (steps).", minimum=1)
    data_service: str = setting("", "tf.data service dispatcher grpc://HOST:PORT whose workers "
                                "run the training input pipeline (python -m "
                                "tf_synchro.data_service); empty: in-process.")

    def check(self) -> None:
        """Raises ValueError naming a setting outside its declared range."""
        check_ranges(self)
        if self.data_service:
            from tf_synchro.data import service
            service.check_address("data_service", self.data_service)


@dataclasses.dataclass(frozen=True)
class DataServiceConfig:
    """One tf.data service server: the dispatcher or a worker."""

    dispatcher: bool = setting(False, "Run the dispatcher (one per cluster).")
    worker: bool = setting(False, "Run a worker (one or more per cluster).")
    port: int = setting(5050, "Port to listen on (0: any free port, printed at start).",
                        minimum=0, maximum=65535)
    dispatcher_address: str = setting("", "Worker: the dispatcher, HOST:PORT or "
                                      "grpc://HOST:PORT.")
    worker_host: str = setting("localhost", "Worker: the host name trainers reach this "
                               "worker at (this machine's name on a cluster).")
    work_dir: Optional[str] = setting(None, "Dispatcher: directory of its journal (fault "
                                      "tolerance: a restarted dispatcher resumes its jobs).",
                                      path=True)

    def check(self) -> None:
        """Raises ValueError naming the flag at fault (exit status 2)."""
        check_ranges(self)
        if self.dispatcher == self.worker:
            raise ValueError("--dispatcher, --worker: give exactly one of them")
        if self.worker:
            if not self.dispatcher_address:
                raise ValueError("--worker needs --dispatcher_address=HOST:PORT")
            from tf_synchro.data import service
            service.check_address("dispatcher_address", self.dispatcher_address)
            if not self.worker_host or ":" in self.worker_host:
                raise ValueError(f"--worker_host={self.worker_host}: expected a host name "
                                 f"without port")
        elif self.dispatcher_address:
            raise ValueError("--dispatcher_address is a --worker flag")


@dataclasses.dataclass(frozen=True)
class PretextEvalConfig:
    """The held-out pretext evaluation (:func:`tf_synchro.tasks.pretext.evaluate`).

    Attributes:
      subjects: held-out subjects.
      passes: passes over their records (each draws new random pairs).
      pairs_per_clip: pairs drawn per record per pass.
      batch_size: evaluation batch.
      seed: fixes the evaluated pairs (same pairs for every model).
      num_gap_bins: bins of the unsynchronized gap range (d_min, d_max).
    """

    subjects: tuple = setting(("S9", "S11"), "Held-out subjects.")
    passes: int = setting(2, "Passes over the held-out records.", minimum=1)
    pairs_per_clip: int = setting(12, flag=False, minimum=1)
    batch_size: int = setting(64, "Evaluation batch size.", minimum=1)
    seed: int = setting(0, "Fixes the evaluated pairs.", minimum=0)
    num_gap_bins: int = setting(8, flag=False, minimum=1)

    def check(self) -> None:
        """Raises ValueError naming the first bad setting."""
        check_ranges(self)
        check_subjects("subjects", self.subjects)


@dataclasses.dataclass(frozen=True)
class EvaluatePretextConfig:
    """Re-evaluating a finished pre-training run (``python -m tf_synchro.evaluate_pretext``).

    The pairs are drawn as the run drew its training pairs unless ``gap_sampling``,
    ``d_min`` or ``d_max`` override them (to score runs trained with different pair
    settings on one common set of pairs).
    """

    model_dir: str = setting(None, "Pre-training run directory (sync_flip.keras, "
                             "config.json).", required=True, path=True)
    data_dir: Optional[str] = setting(None, "Dataset; default: the run's --data_dir.", path=True)
    output_dir: Optional[str] = setting(None, "Where to write JSON/PNG; default --model_dir.",
                                        path=True)
    eval: PretextEvalConfig = setting(factory=PretextEvalConfig)
    gap_sampling: Optional[str] = setting(None, "Unsynchronized gap sampling of the evaluated "
                                          "pairs; default: the run's.", choices=GAP_SAMPLING)
    d_min: Optional[int] = setting(None, "Unsynchronized pairs: |dt| > d_min; default: the "
                                   "run's (e.g. --d_min=4 scores a run trained with a larger "
                                   "d_min on the paper's pairs).", minimum=0)
    d_max: Optional[int] = setting(None, "Unsynchronized pairs: |dt| < d_max; default: the "
                                   "run's.", minimum=2)
    data_check: DataCheckConfig = setting(factory=DataCheckConfig)

    def check(self) -> None:
        """Raises ValueError naming the first bad setting (before anything is read)."""
        check_ranges(self)
        self.eval.check()
        if self.output_dir is not None and not self.output_dir:
            raise ValueError("--output_dir is empty; give a directory, or omit it to write "
                             "into --model_dir")

    def pair_overrides(self) -> dict:
        return {k: getattr(self, k) for k in ("gap_sampling", "d_min", "d_max")
                if getattr(self, k) is not None}


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """One pre-training run (``python -m tf_synchro.pretrain``)."""

    data_dir: str = setting(None, "Dataset directory (tfrecords_tools output).", required=True,
                            path=True)
    model_dir: str = setting(None, "Run directory: checkpoints, TensorBoard, encoder.keras.",
                             required=True, path=True)
    train_subjects: tuple = setting(("S1", "S5", "S6", "S7", "S8"), "Pre-training subjects; "
                                    "shell patterns (U*) expand to the dataset's matching "
                                    "subjects.")
    eval_subjects: tuple = setting(("S9", "S11"), "Held-out subjects of the final pretext "
                                   "evaluation (empty: none).")
    model: ModelConfig = setting(factory=ModelConfig)
    pairs: PairConfig = setting(factory=lambda: PairConfig(pairs_per_clip=12,
                                                           shuffle_buffer=2048))
    augment_on: str = setting("device", "Where crops are resized, mirrored and colour-jittered: "
                              "device (a Keras layer in the train step; tf.data only "
                              "decodes) or host (tf.data).", choices=AUGMENT_ON)
    optimizer: OptimizerConfig = setting(factory=OptimizerConfig)
    sync_loss_weight: float = setting(1.0, "Weight of the sync head's loss.", minimum=0)
    flip_loss_weight: float = setting(1.0, "Weight of the flip head's loss.", minimum=0)
    eval_passes: int = setting(2, "Passes over the held-out records in the final evaluation.",
                               minimum=1)
    runtime: RuntimeConfig = setting(factory=RuntimeConfig)
    data_check: DataCheckConfig = setting(factory=DataCheckConfig)
    verbose: bool = setting(True, flag=False)

    def pair_config(self) -> PairConfig:
        """The training pair pipeline: the run's tasks, input size, subjects and seed."""
        return dataclasses.replace(
            self.pairs, tasks=tuple(self.model.tasks), subjects=tuple(self.train_subjects),
            seed=self.runtime.seed, deterministic=self.runtime.deterministic,
            augment=dataclasses.replace(self.pairs.augment, output_size=self.model.input_size),
            device_augment=self.augment_on == "device",
            skip_corrupt_records=self.data_check.skip_corrupt_records)

    def loss_weights(self) -> dict:
        weights = {"sync": self.sync_loss_weight, "flip": self.flip_loss_weight}
        return {t: weights[t] for t in self.model.tasks}

    def check(self) -> None:
        """Declared ranges of every field (nested configs included), then the run's own
        relation: at least one trained head has a loss weight > 0."""
        check_ranges(self)
        self.runtime.check()  # --data_service's address.
        if not any(self.loss_weights().values()):
            raise ValueError(f"--sync_loss_weight={self.sync_loss_weight}, --flip_loss_weight="
                             f"{self.flip_loss_weight}: every trained head "
                             f"({','.join(self.model.tasks)}) has weight 0, nothing would "
                             f"train")



@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run (``python -m tf_synchro.finetune``).

    Attributes beyond the nested configs:
      init_from: a pre-training model_dir holding ``encoder.keras``, or ``"scratch"``.
      label_subjects: subjects whose 3D labels are used (paper: S1; "All": S1,S5,S6,S7,S8).
      freeze_blocks: stem + this many residual stages frozen (paper: 3; 0 = train all).
      pose_head_units: hidden widths of the pose head (empty: linear head).
      dropout: dropout before the head's output layer.
      max_stat_frames: frames read to compute the target mean/std.
    """

    data_dir: str = setting(None, "Dataset directory (tfrecords_tools output).", required=True,
                            path=True)
    model_dir: str = setting(None, "Run directory (checkpoints, logs, pose_model.keras).",
                             required=True, path=True)
    init_from: str = setting(SCRATCH, "Pre-training model_dir with encoder.keras, or "
                             "'scratch' for a random initialisation.", path=True)
    model: ModelConfig = setting(factory=ModelConfig)
    label_subjects: tuple = setting(("S1",), "Subjects whose 3D labels are used (paper: S1; "
                                    "All: S1,S5,S6,S7,S8).")
    frames: FrameConfig = setting(factory=FrameConfig)
    freeze_blocks: int = setting(3, "Freeze the stem and this many residual stages "
                                 "(0: train all).", minimum=0, maximum=4)
    pose_head_units: tuple = setting((), "Hidden widths of the pose head (empty: linear).",
                                     item=int, minimum=1)
    dropout: float = setting(0.0, "Dropout before the pose head's output layer.", minimum=0,
                             below=1)
    optimizer: OptimizerConfig = setting(factory=OptimizerConfig)
    runtime: RuntimeConfig = setting(factory=lambda: RuntimeConfig(seed=0))
    data_check: DataCheckConfig = setting(factory=DataCheckConfig)
    max_stat_frames: int = setting(20000, "Frames read to compute the target mean/std.", minimum=1)

    def check(self) -> None:
        """Declared ranges of every field (nested configs included; the subjects and
        --init_from are checked by ``pose3d.check_settings``)."""
        check_ranges(self)
        self.runtime.check()  # --data_service's address.

    def frame_config(self) -> FrameConfig:
        """The training frame pipeline: the run's label subjects, input size and seed."""
        return dataclasses.replace(
            self.frames, subjects=tuple(self.label_subjects), seed=self.runtime.seed,
            deterministic=self.runtime.deterministic,
            augment=dataclasses.replace(self.frames.augment, output_size=self.model.input_size),
            skip_corrupt_records=self.data_check.skip_corrupt_records)


@dataclasses.dataclass(frozen=True)
class PoseEvalConfig:
    """The pose evaluation protocol's settings (:func:`tf_synchro.tasks.pose3d.evaluate`).

    Attributes:
      subjects: test subjects.
      frame_step: keep frames whose original frame number is a multiple of it.
      batch_size: evaluation batch.
      output_json: where the report is written (None: not written).
      output_png: where the example figure is drawn (None: not drawn).
      num_examples: rows of the figure.
    """

    subjects: tuple = setting(("S9", "S11"), "Test subjects.")
    frame_step: int = setting(64, "Evaluate frames whose number is a multiple of it.", minimum=1)
    batch_size: int = setting(64, "Evaluation batch size.", minimum=1)
    output_json: Optional[str] = setting(None, "Report path (default: model_dir/eval.json; "
                                         "for an artefact, <artefact>.eval.json beside it).",
                                         path=True)
    output_png: Optional[str] = setting(None, "Figure path (default: output_json with .png).",
                                        path=True)
    num_examples: int = setting(4, "Examples in the figure (0: no figure).", minimum=0)

    def check(self) -> None:
        """Raises ValueError naming the first bad setting (before anything is read)."""
        check_ranges(self)
        check_subjects("subjects", self.subjects)
        for name in ("output_json", "output_png"):
            if getattr(self, name) is not None and not getattr(self, name):
                raise ValueError(f"--{name} is empty; give a file path or omit it")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Evaluating a finished fine-tuning run (``python -m tf_synchro.evaluate``)."""

    model_dir: str = setting(None, "Finished fine-tuning run directory, or a deployed "
                             "artefact of one: export version directory, <version>.onnx, "
                             "<version>[.int8].tflite.", required=True, path=True)
    data_dir: str = setting(None, "Dataset with 3D labels for --subjects.", required=True,
                            path=True)
    eval: PoseEvalConfig = setting(factory=PoseEvalConfig)
    data_check: DataCheckConfig = setting(factory=DataCheckConfig)

    def check(self) -> None:
        """Raises ValueError naming the first bad setting (before anything is read)."""
        check_ranges(self)
        self.eval.check()


@dataclasses.dataclass(frozen=True)
class FormatOptions:
    """Which formats an export writes and how they are checked.

    Attributes:
      formats: among :data:`EXPORT_FORMATS`; the SavedModel is always written (it is the
        source of the conversions and the reference of the checks).
      onnx_opset: ONNX opset of the tf2onnx conversion.
      tflite_quantize: also write a dynamic-range int8 LiteRT model.
      data_dir: dataset whose crops check the conversions (None: the run's ``data_dir``).
      check_crops: number of crops compared.
      max_diff_mm: largest allowed joint difference (mm) of the float32 formats.
      int8_max_mpjpe_increase: largest relative rise of the int8 model's MPJPE (mean over
        actions, the evaluation protocol) over the SavedModel's on ``int8_subjects`` of the
        dataset (0.02: 2%).
      int8_subjects: labelled test subjects of the dataset that judge the int8 model.
      int8_frame_step: the protocol's frame step on them.
    """

    formats: tuple = setting(("saved_model",), "Formats; onnx and tflite are written next "
                             "to <version>/ as <version>.onnx / .tflite.",
                             choices=EXPORT_FORMATS)
    onnx_opset: int = setting(17, "ONNX opset of the tf2onnx conversion.", minimum=7)
    tflite_quantize: bool = setting(False, "Also write <version>.int8.tflite (dynamic-range "
                                    "int8 weights).")
    data_dir: Optional[str] = setting(None, "Dataset whose crops check the converted formats "
                                      "(default: the run's data_dir).", path=True)
    check_crops: int = setting(32, "Crops compared between the SavedModel and each "
                               "converted format.", minimum=1)
    max_diff_mm: float = setting(1.0, "Largest joint difference (mm) allowed for the float32 "
                                 "formats.", minimum=0)
    int8_max_mpjpe_increase: float = setting(0.02, "Largest relative MPJPE rise of the int8 "
                                             "LiteRT model over the SavedModel on "
                                             "--int8_subjects (0.02: 2%).", minimum=0)
    int8_subjects: tuple = setting(("S9", "S11"), "Labelled test subjects of the dataset on "
                                   "which the int8 model's MPJPE is measured.")
    int8_frame_step: int = setting(64, "Frame step of that measurement (the evaluation "
                                   "protocol's).", minimum=1)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export (``python -m tf_synchro.export``)."""

    model_dir: str = setting(None, "Finished fine-tuning run directory.", required=True, path=True)
    export_dir: str = setting(None, "Base directory; the model goes to <version>/.",
                              required=True, path=True)
    version: Optional[int] = setting(None, "Version number (default: next free integer).",
                                     minimum=1)
    what: str = setting("pose", "Export the pose model or the encoder.", choices=EXPORT_WHAT)
    format_options: FormatOptions = setting(factory=FormatOptions)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """Running a pose model on a video or images (``python -m tf_synchro.predict``)."""

    model: str = setting(None, "Export version directory or finished fine-tuning run.",
                         required=True, path=True)
    output: str = setting(None, "poses.json or poses.npz to write.", required=True, path=True)
    video: Optional[str] = setting(None, "Video file to run on (or --images).", path=True)
    images: Optional[str] = setting(None, "Folder of images, or a glob pattern (sorted by "
                                    "name).", path=True)
    overlay: Optional[str] = setting(None, "Optional .mp4 file, or folder of PNGs, showing the "
                                     "box and the predicted skeleton on each frame.", path=True)
    boxes: Optional[str] = setting(None, "JSON or CSV file: one box x0,y0,x1,y1 (pixels) per "
                                   "frame. Default: found against the median background.",
                                   path=True)
    batch_size: int = setting(32, "Crops per model call.", minimum=1)
    crop_size: Optional[int] = setting(None, "Stored crop side the model was trained on "
                                       "(default: read from the model's training data).", minimum=8)
    jpeg_quality: int = setting(90, "JPEG round trip of each crop, as the dataset converters "
                                "store crops; 0: none.", minimum=0, maximum=100)
    static_camera: bool = setting(True, "Find the person against the median background (else "
                                  "the whole frame is the box).")
    margin: float = setting(0.2, "Box margin around the foreground (fraction of its side, as "
                            "the rig converter).", minimum=0)
    mask_threshold: float = setting(30.0, "Grey-level difference to the background that "
                                    "counts as person.", minimum=0, maximum=255)
    box_smoothing: int = setting(5, "Frames in the moving average of found boxes (video; "
                                 "1: none).", minimum=1)
    intrinsics: Optional[str] = setting(None, "Camera intrinsics for the overlay: fx,fy,cx,cy "
                                        "(pixels) or a calibration.json (camera = the video's "
                                        "file name, or its only one). Default: the skeleton "
                                        "is fitted to the box (weak perspective).")
    smooth: bool = setting(False, "One-Euro filter over the 3D joints (video; written as "
                           "joints3d, the per-frame predictions as joints3d_raw; the "
                           "overlay shows the filtered joints).")
    smooth_min_cutoff: float = setting(1.0, "One-Euro cutoff at rest (Hz); lower: smoother.",
                                       above=0)
    smooth_beta: float = setting(0.004, "One-Euro cutoff rise per mm/s of joint speed; higher: "
                                 "less lag.", minimum=0)
    smooth_d_cutoff: float = setting(1.0, "One-Euro cutoff of the speed estimate (Hz).", above=0)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The main job (``python -m tf_synchro.demo``): rows of the experiment suites run as
    stages (:mod:`tf_synchro.suite.experiment_lib`)."""

    workdir: str = setting(None, "Directory for the dataset, runs and REPORT.md.",
                           required=True, path=True)
    scale: str = setting("cpu", "Settings: cpu (minutes) or paper.", choices=SUITE_SCALES)
    seed: int = setting(0, "Seed of pre-training and fine-tuning.", minimum=0)
    scratch_row: str = setting("flags/table1/b_random_init_no_background.flags",
                               "Row flagfile of the random-initialisation baseline.")
    scratch_trainable_row: str = setting(
        "flags/baselines/b0_random_init_all_trainable.flags",
        "Row flagfile of the second baseline: random init, every block trainable.")
    pretrained_row: str = setting("flags/table1/d_ssl_no_background.flags",
                                  "Row flagfile of the self-supervised run.")
    real_motion_test: bool = setting(
        False, "Add the real-motion test: S9/S11 also perform held-out real motion-capture "
        "clips of a capture subject no training data holds (tfrecords_tools/synth/real_motion/"
        "cmu_heldout: CMU subject 02 walking, running, jumping, punching, picking up, washing), "
        "reported beside the standard and unseen-motion tests.")
    real_motion_pool: bool = setting(
        False, "The extra unlabelled people also perform real motion-capture clips "
        "(tfrecords_tools/synth/real_motion/cmu_pool: 12 CMU takes of five other subjects) beside "
        "the procedural actions.")
    real_motion_labelled: int = setting(
        0, "The labelled subjects (S1, S5-S8) also perform this many real clips of the pool "
        "(tfrecords_tools/synth/real_motion/cmu_pool) each, drawn per subject (0: none); without "
        "--real_motion_pool only they do, the extra people stay procedural.", minimum=0)
    real_motion_mirror: bool = setting(
        False, "With --real_motion_pool or --real_motion_labelled: every pool clip is also "
        "performed as its mirror image (left and right swapped), twice the real clips.")
    finetune_steps: int = setting(
        0, "Fine-tuning steps of all three rows (0: the row flagfiles', 1,000 at "
        "--scale=cpu).", minimum=0)


@dataclasses.dataclass(frozen=True)
class ExperimentsConfig:
    """One suite of the paper's experiments (``python -m tf_synchro.experiments``)."""

    suite: str = setting("table1", "flags/<suite>/ folder of row flagfiles, a suite defined "
                         "in code (scaling), or a path.")
    workdir: str = setting(None, "Directory for datasets, runs and the result table.",
                           required=True, path=True)
    scale: str = setting("cpu", "cpu (minutes per row) or paper.", choices=SUITE_SCALES)
    rows: tuple = setting((), "Run only these row ids (default: all rows of the suite).")
    seed: int = setting(0, "Seed of every pre-training and fine-tuning.", minimum=0)
    deterministic: bool = setting(
        False, "Fixed tf.data order in every pre-training and fine-tuning (new stage keys): a "
        "seed then fixes every batch. Off, tf.data emits in thread-completion order. Either "
        "way the CPU kernels' rounding varies from run to run.")


# The stage binaries of an experiment row, in run order (tf_synchro.suite.experiment_lib).
ROW_STAGES = ("synthesize", "pretrain", "finetune", "evaluate")


@dataclasses.dataclass(frozen=True)
class RowConfig:
    """The flags of an experiment row flagfile (``flags/table1/*.flags``;
    :func:`tf_synchro.suite.experiment_lib.load_row`): the row's name and paper numbers, the
    settings the paper's tables vary, and config overrides of each stage's binary."""

    row: Optional[str] = setting(None, "Row id in the paper's table (a, b, ...).")
    title: str = setting("", "Row title as in the paper.")
    paper: tuple = setting((), "Paper's MPJPE,N-MPJPE,PA-MPJPE (mm) for this row.", item=float,
                           minimum=0)
    background: bool = setting(False, "Dataset rendered with a static background.")
    init: str = setting("pretrained", "Fine-tune from the self-supervised encoder or random "
                        "init.", choices=("pretrained", "scratch"))
    label_subjects: tuple = setting(("S1",), "Subjects with 3D labels for fine-tuning.")
    arch: Optional[str] = setting(None, "Encoder of both the pre-training and the fine-tuning "
                                  "(checked by them); None keeps the scale's flagfile value.")
    # Config overrides: any flag of a stage's binary, one per occurrence, applied over the
    # scale's flagfile (so they win), e.g. --pretrain_args=--fusion=concat; parsed and checked
    # against the binary's config when the row is read.
    synthesize_args: tuple = setting((), "A flag for the synthesize stage, e.g. "
                                     "--synthesize_args=--x=1 (repeat for several).",
                                     repeated=True)
    pretrain_args: tuple = setting((), "A flag for the pretrain stage, e.g. "
                                   "--pretrain_args=--x=1 (repeat for several).", repeated=True)
    finetune_args: tuple = setting((), "A flag for the finetune stage, e.g. "
                                   "--finetune_args=--x=1 (repeat for several).", repeated=True)
    evaluate_args: tuple = setting((), "A flag for the evaluate stage, e.g. "
                                   "--evaluate_args=--x=1 (repeat for several).", repeated=True)
    baseline: Optional[str] = setting(None, "Row id of the random-init row this row's ratios "
                                      "(pre-trained / random init) are taken against.")
    series: Optional[str] = setting(None, "Line of the suite's plot this row belongs to.")
    x: Optional[float] = setting(None, "This row's position on the plot's x axis (default with "
                                 "--pretrain_steps_factor: the pre-training steps).", above=0)
    pretrain_steps_factor: Optional[float] = setting(
        None, "Pre-train for this multiple of the scale's --train_steps (so one row file "
        "serves every scale).", above=0)


# The flags each training binary takes from its config (fine-tuning: the encoder part of
# the model config only).
FINETUNE_EXCLUDE = tuple(f.name for f in dataclasses.fields(ModelConfig)
                         if f.name not in ENCODER_FIELDS) + ("allow_subject_overlap",)
