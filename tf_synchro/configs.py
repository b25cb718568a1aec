"""Every setting of the project, once: the config dataclasses and the flags made from them.

A setting is one dataclass field here plus its use. Its flag, help text, choices and default
come from the field (:func:`setting`), so a binary defines its flags with
:func:`define_flags` and reads them back with :func:`from_flags`; nothing repeats a choice
list or maps flags to fields by hand. Nested configs are flattened into flags by field name
(``ModelConfig.input_size`` is ``--input_size``), so a name means one thing in every binary.

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
import math
import sys
import typing
from typing import Any, Iterable, Mapping, Optional, Sequence

from tf_synchro.data import groups
from tfrecords_tools import dataset_io

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

# Old flag spellings accepted for one release: {binary: {old: new}}.
DEPRECATED_ALIASES = {
    "tf_synchro.finetune": {"image_size": "input_size", "head_units": "pose_head_units"},
}
# Second spellings that stay ({binary: {alias: flag}}): evaluate's --model is predict's name
# for the same thing (a run directory or a deployed artefact).
FLAG_ALIASES = {
    "tf_synchro.evaluate": {"model": "model_dir"},
}


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


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence = (),
            flag: bool = True, required: bool = False, item: type = str,
            factory: Any = None, minimum: Optional[float] = None,
            maximum: Optional[float] = None, above: Optional[float] = None,
            below: Optional[float] = None, unbounded: bool = False) -> Any:
    """A config field and its flag.

    A numeric field declares its range here (``minimum``/``maximum``: inclusive bounds,
    ``above``/``below``: exclusive ones; a float must also be finite), or says
    ``unbounded=True``; :func:`check_ranges` checks every declaration before a binary does
    any work, so a new field gets its check by declaring it.

    Args:
      default: the default (or ``factory`` for a nested config).
      help: the flag's help text.
      choices: allowed values (an enum flag; for a list: allowed items).
      flag: False for a field derived from other settings (no flag).
      required: the flag must be given.
      item: type of a list flag's items (``int`` for layer widths).
      minimum, maximum: inclusive bounds (of each item, for a list).
      above, below: exclusive bounds.
      unbounded: a numeric field that takes any (finite) value.
    """
    metadata = {"help": help, "choices": tuple(choices), "flag": flag, "required": required,
                "item": item, "minimum": minimum, "maximum": maximum, "above": above,
                "below": below, "unbounded": unbounded}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


BOUND_KEYS = ("minimum", "maximum", "above", "below")


def _range_text(meta: Mapping[str, Any], numeric_type: type) -> str:
    """``"an integer >= 1"``, ``"a finite number in (0, 1]"``, ... from a field's bounds."""
    what = "an integer" if numeric_type is int else "a finite number"
    lo, hi = meta.get("minimum"), meta.get("maximum")
    lo_x, hi_x = meta.get("above"), meta.get("below")
    low = (f"[{lo}" if lo is not None else f"({lo_x}" if lo_x is not None else None)
    high = (f"{hi}]" if hi is not None else f"{hi_x})" if hi_x is not None else None)
    if low and high:
        return f"{what} in {low}, {high}"
    if low:
        return f"{what} {'>=' if lo is not None else '>'} {low[1:]}"
    if high:
        return f"{what} {'<=' if hi is not None else '<'} {high[:-1]}"
    return what


def _in_range(value, meta: Mapping[str, Any], numeric_type: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if numeric_type is int and not float(value).is_integer():
        return False
    if not math.isfinite(value):
        return False
    lo, hi, lo_x, hi_x = (meta.get(k) for k in BOUND_KEYS)
    return ((lo is None or value >= lo) and (hi is None or value <= hi)
            and (lo_x is None or value > lo_x) and (hi_x is None or value < hi_x))


def numeric_type(cls, field: dataclasses.Field) -> Optional[type]:
    """``int`` or ``float`` for a numeric field (or a list of numbers), else None."""
    tp = _base(_hints(cls)[field.name])
    if tp is tuple:
        tp = field.metadata.get("item", str)
    return tp if tp in (int, float) else None


def check_ranges(config) -> None:
    """Checks every field of ``config`` (nested configs too) against its declaration.

    Declared choices, numeric bounds (:func:`setting`) and finiteness of floats; None
    (an optional setting left unset) passes. Needs no data, so binaries call it before
    anything is read or written.

    Raises:
      ValueError: ``--name=value: expected ...`` for the first bad field (a derived field,
        which has no flag, is named without the dashes).
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value)
            continue
        if value is None:
            continue
        meta = f.metadata
        name = f"--{f.name}" if meta.get("flag", True) else f.name
        items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        shown = ",".join(map(str, items)) if isinstance(value, (tuple, list)) else value
        choices = meta.get("choices") or ()
        if choices and any(v not in choices for v in items):
            many = isinstance(value, (tuple, list))
            raise ValueError(f"{name}={shown}: expected {'items from' if many else 'one of'} "
                             f"{','.join(map(str, choices))}")
        tp = numeric_type(type(config), f)
        if tp is not None and not all(_in_range(v, meta, tp) for v in items):
            many = isinstance(value, (tuple, list))
            raise ValueError(f"{name}={shown}: expected "
                             f"{'items each ' if many else ''}{_range_text(meta, tp)}")


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
                             "config.json).", required=True)
    data_dir: Optional[str] = setting(None, "Dataset; default: the run's --data_dir.")
    output_dir: Optional[str] = setting(None, "Where to write JSON/PNG; default --model_dir.")
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

    data_dir: str = setting(None, "Dataset directory (tfrecords_tools output).", required=True)
    model_dir: str = setting(None, "Run directory: checkpoints, TensorBoard, encoder.keras.",
                             required=True)
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

    data_dir: str = setting(None, "Dataset directory (tfrecords_tools output).", required=True)
    model_dir: str = setting(None, "Run directory (checkpoints, logs, pose_model.keras).",
                             required=True)
    init_from: str = setting(SCRATCH, "Pre-training model_dir with encoder.keras, or "
                             "'scratch' for a random initialisation.")
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
class EvaluateConfig:
    """Evaluating a finished fine-tuning run (``python -m tf_synchro.evaluate``)."""

    model_dir: str = setting(None, "Finished fine-tuning run directory, or a deployed "
                             "artefact of one: export version directory, <version>.onnx, "
                             "<version>[.int8].tflite.", required=True)
    data_dir: str = setting(None, "Dataset with 3D labels for --subjects.", required=True)
    subjects: tuple = setting(("S9", "S11"), "Test subjects.")
    frame_step: int = setting(64, "Evaluate frames whose number is a multiple of it.", minimum=1)
    batch_size: int = setting(64, "Evaluation batch size.", minimum=1)
    output_json: Optional[str] = setting(None, "Report path (default: model_dir/eval.json; "
                                         "for an artefact, <artefact>.eval.json beside it).")
    output_png: Optional[str] = setting(None, "Figure path (default: output_json with .png).")
    num_examples: int = setting(4, "Examples in the figure (0: no figure).", minimum=0)
    data_check: DataCheckConfig = setting(factory=DataCheckConfig)

    def check(self) -> None:
        """Raises ValueError naming the first bad setting (before anything is read)."""
        check_ranges(self)
        check_subjects("subjects", self.subjects)
        for name in ("output_json", "output_png"):
            if getattr(self, name) is not None and not getattr(self, name):
                raise ValueError(f"--{name} is empty; give a file path or omit it")


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
                                      "(default: the run's data_dir).")
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

    model_dir: str = setting(None, "Finished fine-tuning run directory.", required=True)
    export_dir: str = setting(None, "Base directory; the model goes to <version>/.",
                              required=True)
    version: Optional[int] = setting(None, "Version number (default: next free integer).",
                                     minimum=1)
    what: str = setting("pose", "Export the pose model or the encoder.", choices=EXPORT_WHAT)
    format_options: FormatOptions = setting(factory=FormatOptions)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """Running a pose model on a video or images (``python -m tf_synchro.predict``)."""

    model: str = setting(None, "Export version directory or finished fine-tuning run.",
                         required=True)
    output: str = setting(None, "poses.json or poses.npz to write.", required=True)
    video: Optional[str] = setting(None, "Video file to run on (or --images).")
    images: Optional[str] = setting(None, "Folder of images, or a glob pattern (sorted by "
                                    "name).")
    overlay: Optional[str] = setting(None, "Optional .mp4 file, or folder of PNGs, showing the "
                                     "box and the predicted skeleton on each frame.")
    boxes: Optional[str] = setting(None, "JSON or CSV file: one box x0,y0,x1,y1 (pixels) per "
                                   "frame. Default: found against the median background.")
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


# The flags each training binary takes from its config (fine-tuning: the encoder part of
# the model config only).
FINETUNE_EXCLUDE = tuple(f.name for f in dataclasses.fields(ModelConfig)
                         if f.name not in ENCODER_FIELDS) + ("allow_subject_overlap",)


# ----------------------------------------------------------------------------- flags

def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_config(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _base(tp):
    """``Optional[X]`` -> ``X``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def flag_fields(cls, default=None, exclude: Iterable[str] = ()) -> list:
    """``[(name, type, default, metadata)]`` of the flags of config ``cls``, nested configs
    flattened, in field order; ``default`` is the instance whose values are the defaults."""
    exclude = set(exclude)
    default = default if default is not None else _default_instance(cls)
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base(hints[f.name])
        if _is_config(tp):
            out += flag_fields(tp, getattr(default, f.name), exclude)
        elif f.metadata.get("flag", True) and f.name not in exclude:
            out.append((f.name, tp, getattr(default, f.name), f.metadata))
    names = [o[0] for o in out]
    dup = sorted({n for n in names if names.count(n) > 1} | (set(names) & _nested_names(cls)))
    if dup:
        raise TypeError(f"{cls.__name__}: names used twice (flags or nested configs): {dup}")
    return out


def _nested_names(cls) -> set:
    """Field names of ``cls`` and its nested configs that hold a nested config."""
    names = set()
    for f in dataclasses.fields(cls):
        tp = _base(_hints(cls)[f.name])
        if _is_config(tp):
            names |= {f.name} | _nested_names(tp)
    return names


def _default_instance(cls):
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            values[f.name] = None
    return cls(**values)


def define_flags(cls, flag_values=None, exclude: Iterable[str] = (),
                 binary: Optional[str] = None) -> None:
    """Defines one absl flag per setting of config ``cls`` (see :func:`setting`).

    Args:
      cls: a config dataclass.
      flag_values: where to define them (default ``absl.flags.FLAGS``).
      exclude: field names that are not flags of this binary.
      binary: the binary's module name: its :data:`FLAG_ALIASES` and
        :data:`DEPRECATED_ALIASES` are defined too.
    """
    from absl import flags
    # The flags belong to the binary that calls this (so its --help lists them), not here.
    flags.disclaim_key_flags()
    fv = flag_values if flag_values is not None else flags.FLAGS
    required = []
    for name, tp, default, meta in flag_fields(cls, exclude=exclude):
        help_text = meta.get("help") or name
        choices = list(meta.get("choices") or ())
        kw = {"flag_values": fv}
        if tp is bool:
            flags.DEFINE_bool(name, default, help_text, **kw)
        elif tp is int:
            flags.DEFINE_integer(name, default, help_text, **kw)
        elif tp is float:
            flags.DEFINE_float(name, default, help_text, **kw)
        elif tp is tuple:
            flags.DEFINE_list(name, None if default is None else [str(v) for v in default],
                              help_text + (f" One or more of {','.join(choices)}."
                                           if choices else ""), **kw)
        elif choices:
            flags.DEFINE_enum(name, default, choices, help_text, **kw)
        else:
            flags.DEFINE_string(name, default, help_text, **kw)
        if meta.get("required"):
            required.append(name)
    aliases = {**FLAG_ALIASES.get(binary or "", {}), **DEPRECATED_ALIASES.get(binary or "", {})}
    for old, new in aliases.items():
        if new in fv and old not in fv:
            flags.DEFINE_alias(old, new, flag_values=fv)
    for name in required:
        flags.mark_flag_as_required(name, flag_values=fv)


def warn_deprecated(binary: str, flag_values=None, out=None) -> list:
    """Warns (stderr) about each deprecated spelling given on the command line; returns them."""
    from absl import flags
    fv = flag_values if flag_values is not None else flags.FLAGS
    used = [(old, new) for old, new in DEPRECATED_ALIASES.get(binary, {}).items()
            if old in fv and fv[old].present]
    for old, new in used:
        print(f"warning: --{old} is deprecated and will be removed in the next release; "
              f"use --{new}", file=out or sys.stderr)
    return used


def _convert(name: str, tp, value, meta):
    if tp is tuple and value is not None:
        item = meta.get("item", str)
        try:
            value = tuple(item(v) for v in value)
        except ValueError as e:
            raise ValueError(f"--{name}={','.join(map(str, value))}: expected a list of "
                             f"{item.__name__}") from e
        choices = meta.get("choices") or ()
        bad = [v for v in value if choices and v not in choices]
        if bad:
            raise ValueError(f"--{name}={','.join(map(str, value))}: expected items from "
                             f"{','.join(choices)}")
    return value


def make(cls, values: Mapping[str, Any] = None, default=None, **kwargs):
    """Builds config ``cls`` from flat setting names (those of its flags), nested configs
    included; names not given keep their defaults.

    ``make(PretrainConfig, data_dir=d, model_dir=m, width=0.25, d_min=16)``

    Raises:
      TypeError: a name that is no setting of ``cls``.
    """
    flat = dict(values or {}, **kwargs)
    default = default if default is not None else _default_instance(cls)
    config, used = _build(cls, flat, default, top=True)
    unknown = sorted(set(flat) - used)
    if unknown:
        raise TypeError(f"{cls.__name__} has no settings {unknown}")
    return config


def _build(cls, flat: Mapping[str, Any], default, top: bool = False) -> tuple:
    """Nested configs take their flag settings from ``flat``; derived (non-flag) fields are
    set only at the top level (a run's ``seed`` is not its pair pipeline's)."""
    hints = _hints(cls)
    values, used = {}, set()
    for f in dataclasses.fields(cls):
        tp = _base(hints[f.name])
        settable = top or f.metadata.get("flag", True)
        if _is_config(tp) and f.name not in flat:
            values[f.name], inner = _build(tp, flat, getattr(default, f.name))
            used |= inner
        elif f.name in flat and settable:
            values[f.name] = _convert(f.name, tp, flat[f.name], f.metadata)
            used.add(f.name)
        else:
            values[f.name] = getattr(default, f.name)
    return cls(**values), used


def from_flags(cls, flag_values=None, exclude: Iterable[str] = ()):
    """Config ``cls`` from parsed flags defined by :func:`define_flags`, its declared ranges
    checked (:func:`check_ranges`): every binary builds its config here, first thing, so a
    value out of range stops it before anything is read or written.

    Raises:
      ValueError: ``--name=value: expected ...`` (exit status 2).
    """
    from absl import flags
    fv = flag_values if flag_values is not None else flags.FLAGS
    names = [n for n, *_ in flag_fields(cls, exclude=exclude)]
    config = make(cls, {n: fv[n].value for n in names if n in fv})
    check_ranges(config)
    return config
