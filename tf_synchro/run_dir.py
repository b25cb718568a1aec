"""The run directory (``--model_dir``): its files, its config.json, and loading what it holds.

The contract (docs/DESIGN.md §5):

=========================== =====================================================================
file                        written by
=========================== =====================================================================
``config.json``             every training run: ``{"model": settings a checkpoint depends on,
                            ...recorded settings}``; fine-tuning adds ``"finished"`` at the end
``backup/``                 the resumable checkpoint (``latest.weights.h5`` + ``state.json``)
``tensorboard/``            scalars
``encoder.keras``           pre-training, when it finishes (what fine-tuning starts from)
``sync_flip.keras``         pre-training, when it finishes (the pretext model)
``pretext_eval.json``       the held-out pretext evaluation (pre-training, evaluate_pretext)
``pose_model.keras``        fine-tuning, when it finishes (before ``finished`` is set)
``eval.json``               ``tf_synchro.evaluate`` (default path)
=========================== =====================================================================

This module owns those names, the typed run records that are ``config.json``
(:class:`PretrainRecord`, :class:`PoseRecord` with its :class:`Preprocess`; their
``from_json``/``to_json`` are the one place that knows the file's layout, and read runs
written by earlier versions), the one
"refuse a directory made with other settings" check (:func:`prepare`), the directory lock
(:func:`hold`), the loaders (:func:`load_pretrain_run`, :func:`load_pose_run`,
:func:`load_encoder`) and their errors. No binary module is imported here, and nothing
else in the package reads or writes these files by name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import typing
from typing import Any, Callable, Mapping, Optional, Sequence

from tf_synchro import configs
from tfrecords_tools import dataset_io
from tfrecords_tools.runtime import fileio, locks

CONFIG_FILE = "config.json"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
WEIGHTS_FILE = "latest.weights.h5"  # In BACKUP_DIR.
STATE_FILE = "state.json"  # In BACKUP_DIR.
ENCODER_FILE = "encoder.keras"
SYNC_FLIP_FILE = "sync_flip.keras"
PRETEXT_EVAL_FILE = "pretext_eval.json"
SYNC_VS_GAP_FILE = "sync_vs_gap.png"
POSE_MODEL_FILE = "pose_model.keras"
EVAL_FILE = "eval.json"
POSE_TASK = "pose3d"  # config.json model.task of a fine-tuning run.
SCRATCH = configs.SCRATCH


class ModelDirError(ValueError):
    """A model_dir holds a run whose settings or checkpoint do not match this one."""


class UnfinishedModelDirError(ModelDirError):
    """A model_dir has no finished fine-tuning run (no pose_model.keras / config.json)."""


class IncompatibleEncoderError(ValueError):
    """A --init_from directory does not hold a usable pretrained encoder."""


# ----------------------------------------------------------------------------- training state

@dataclasses.dataclass(frozen=True)
class TrainState:
    """``backup/state.json``: checkpoint periods done and the optimiser step."""

    epoch: int
    step: int


def read_state(backup_dir: str) -> Optional[TrainState]:
    """The state of the checkpoint in ``backup_dir`` (None without a complete checkpoint).

    Raises:
      ModelDirError: ``state.json`` is not a training state.
    """
    path = os.path.join(backup_dir, STATE_FILE)
    if not (os.path.exists(path) and os.path.exists(os.path.join(backup_dir, WEIGHTS_FILE))):
        return None
    try:
        with open(path) as f:
            raw = json.load(f)
        return TrainState(epoch=int(raw["epoch"]), step=int(raw["step"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelDirError(f"{path} is not a training state ({e}); use another --model_dir")


def write_state(backup_dir: str, state: TrainState) -> None:
    """Writes ``state.json`` atomically (after the weights it describes)."""
    fileio.write_json_atomic(os.path.join(backup_dir, STATE_FILE),
                                 dataclasses.asdict(state))


# ----------------------------------------------------------------------------- run records
# The one place that knows config.json's layout: {"model": what a checkpoint depends on
# (compared on resume), ...recorded settings}. Everything else reads the typed records.

POSE_UNITS = "mm, root-relative, camera frame"


def _fields(cls, raw: Mapping[str, Any], where: str, section: str = "") -> dict:
    """The values of ``cls``'s fields found in ``raw`` (missing ones keep their defaults:
    runs written by earlier versions lack the settings added since).

    Raises:
      ModelDirError: ``raw`` lacks a field without a default.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in raw.items() if k in names}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ModelDirError(f"{where}: {section or 'config'} lacks {', '.join(missing)}; not a "
                            f"tf_synchro run record")
    return values


def _flat(raw: Mapping[str, Any]) -> dict:
    """A record's settings in one namespace: its ``model`` section and the rest."""
    return {**{k: v for k, v in raw.items() if k != "model"}, **raw.get("model", {})}


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How stored crops become model inputs (``model.preprocess`` of a fine-tuning run):
    the central crop side (fraction of the stored side) and the JPEG IDCT. Evaluation, the
    serving graph and predict use it."""

    crop_scale: float
    dct_method: str

    @classmethod
    def from_config(cls, frame_config: configs.FrameConfig) -> "Preprocess":
        return cls(float(frame_config.eval_crop_scale), frame_config.augment.dct_method)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str = CONFIG_FILE) -> "Preprocess":
        p = cls(**_fields(cls, raw, where, "model.preprocess"))
        return cls(float(p.crop_scale), str(p.dct_method))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PairSettings:
    """How a pre-training run drew its pairs (``config.json["pairs"]``); settings added
    later default to what runs did before them."""

    d_min: int
    d_max: int
    views: str = "multi"
    augment_on: str = "host"
    gap_sampling: str = "clip"
    pairs_per_clip: Optional[int] = None
    pair_grouping: str = "pairs"
    min_scale: float = configs.AugmentConfig.min_scale
    max_scale: float = configs.AugmentConfig.max_scale

    @classmethod
    def from_config(cls, pair_config: configs.PairConfig) -> "PairSettings":
        return cls(d_min=pair_config.d_min, d_max=pair_config.d_max, views=pair_config.views,
                   augment_on="device" if pair_config.device_augment else "host",
                   gap_sampling=pair_config.gap_sampling,
                   pairs_per_clip=pair_config.pairs_per_clip,
                   pair_grouping=pair_config.pair_grouping,
                   min_scale=pair_config.augment.min_scale,
                   max_scale=pair_config.augment.max_scale)


@dataclasses.dataclass(frozen=True)
class PretrainRecord:
    """``config.json`` of a pre-training run.

    The ``model`` section (``arch``, ``width``, ``input_size``, ``fusion``, ``tasks``,
    ``head_units``) is what a checkpoint depends on; the rest is recorded and may change
    on resume. ``training`` (batch, steps, rates, loss weights, strategy) is kept for
    reference only.
    """

    arch: str
    width: float
    input_size: int
    fusion: Optional[str] = None
    tasks: tuple = ()
    head_units: Optional[int] = None
    data_dir: Optional[str] = None
    train_subjects: tuple = ()
    eval_subjects: tuple = ()
    pairs: Optional[PairSettings] = None
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    MODEL = ("arch", "width", "input_size", "fusion", "tasks", "head_units")

    @classmethod
    def from_config(cls, config: configs.PretrainConfig) -> "PretrainRecord":
        m, o = config.model, config.optimizer
        return cls(arch=m.arch, width=m.width, input_size=m.input_size, fusion=m.fusion,
                   tasks=tuple(m.tasks), head_units=m.head_units,
                   data_dir=os.path.abspath(config.data_dir),
                   train_subjects=tuple(config.train_subjects),
                   eval_subjects=tuple(config.eval_subjects),
                   pairs=PairSettings.from_config(config.pair_config()),
                   training=fileio.jsonable({
                       "batch_size": o.batch_size, "train_steps": o.train_steps,
                       "learning_rate": o.learning_rate,
                       "final_learning_rate": o.final_learning_rate,
                       "weight_decay": o.weight_decay, "loss_weights": config.loss_weights(),
                       "strategy": config.runtime.strategy,
                       "mixed_precision": config.runtime.mixed_precision}))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str = CONFIG_FILE) -> "PretrainRecord":
        values = _fields(cls, _flat(raw), where)
        if values.get("pairs") is not None:
            values["pairs"] = PairSettings(**_fields(PairSettings, values["pairs"], where,
                                                     "pairs"))
        for name in ("tasks", "train_subjects", "eval_subjects"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)

    def model_json(self) -> dict:
        """The ``model`` section: what a checkpoint depends on."""
        return fileio.jsonable({k: getattr(self, k) for k in self.MODEL
                                    if getattr(self, k) is not None})

    def to_json(self) -> dict:
        out = {"model": self.model_json(), "data_dir": self.data_dir,
               "train_subjects": self.train_subjects, "eval_subjects": self.eval_subjects,
               "training": dict(self.training)}
        if self.pairs is not None:
            out["pairs"] = dataclasses.asdict(self.pairs)
        return fileio.jsonable(out)

    def pair_config(self) -> configs.PairConfig:
        """The pairs the run drew (what its pretext evaluation draws again).

        Raises:
          ModelDirError: the record holds no pair settings.
        """
        if self.pairs is None or not self.tasks:
            raise ModelDirError(f"the run's {CONFIG_FILE} records no pair settings or tasks; "
                                f"not a finished tf_synchro.pretrain run")
        p = self.pairs
        return configs.PairConfig(
            d_min=p.d_min, d_max=p.d_max, tasks=tuple(self.tasks), views=p.views,
            gap_sampling=p.gap_sampling,
            augment=configs.AugmentConfig(output_size=self.input_size, min_scale=p.min_scale,
                                          max_scale=p.max_scale))


@dataclasses.dataclass(frozen=True)
class Finished:
    """``config.json["finished"]`` of a fine-tuning run: written after its model file."""

    step: int
    pose_model: str = POSE_MODEL_FILE


@dataclasses.dataclass(frozen=True)
class PoseRecord:
    """``config.json`` of a fine-tuning run (and the ``model`` section an export keeps).

    The ``model`` section is flat, so that a refused resume names just the differing
    settings: ``task`` (:data:`POSE_TASK`), the encoder, the head, ``init_from``, the
    labels and the target statistics drawn from them, and :class:`Preprocess`.
    """

    arch: str
    width: float
    input_size: int
    target_mean: list
    target_std: list
    preprocess: Preprocess
    head_units: tuple = ()
    dropout: float = 0.0
    freeze_blocks: int = 0
    init_from: str = SCRATCH
    label_subjects: tuple = ()
    label_fraction: float = 1.0
    units: str = POSE_UNITS
    data_dir: Optional[str] = None
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    finished: Optional[Finished] = None

    MODEL = ("arch", "width", "input_size", "target_mean", "target_std", "preprocess",
             "head_units", "dropout", "freeze_blocks", "init_from", "label_subjects",
             "label_fraction", "units")

    @classmethod
    def from_config(cls, config: configs.FinetuneConfig, mean, std) -> "PoseRecord":
        """The record of a fine-tuning run whose targets have ``mean`` and ``std``."""
        import numpy as np
        m = config.model
        return cls(
            arch=m.arch, width=float(m.width), input_size=int(m.input_size),
            target_mean=np.asarray(mean, np.float32).tolist(),
            target_std=np.asarray(std, np.float32).tolist(),
            # How raw crops become model inputs: evaluation and the serving graph use this.
            preprocess=Preprocess.from_config(config.frame_config()),
            head_units=tuple(config.pose_head_units), dropout=config.dropout,
            freeze_blocks=config.freeze_blocks, init_from=config.init_from,
            # The target statistics come from these labels, so they define the model too.
            label_subjects=tuple(config.label_subjects),
            label_fraction=config.frames.label_fraction, data_dir=config.data_dir,
            train=fileio.jsonable({k: v for k, v in dataclasses.asdict(config).items()
                                       if k not in ("data_dir", "model_dir")}))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str = CONFIG_FILE) -> "PoseRecord":
        """Reads a fine-tuning ``config.json`` (or ``{"model": ...}`` of an export).

        Raises:
          ModelDirError: not a fine-tuning record, or a field is missing.
        """
        model = raw.get("model", {})
        if model.get("task") != POSE_TASK:
            raise ModelDirError(f"{where} is not from a fine-tuning run (model.task is not "
                                f"{POSE_TASK!r})")
        values = _fields(cls, _flat(raw), where)
        values["preprocess"] = Preprocess.from_json(values["preprocess"], where)
        values["head_units"] = tuple(values.get("head_units", ()))
        values["label_subjects"] = tuple(values.get("label_subjects", ()))
        if values.get("finished"):
            values["finished"] = Finished(**_fields(Finished, values["finished"], where,
                                                    "finished"))
        else:
            values["finished"] = None
        return cls(**values)

    def model_json(self) -> dict:
        """The ``model`` section: what a checkpoint depends on (an export stores it)."""
        out = {"task": POSE_TASK, **{k: getattr(self, k) for k in self.MODEL}}
        out["preprocess"] = self.preprocess.to_json()
        return fileio.jsonable(out)

    def to_json(self) -> dict:
        out = {"model": self.model_json(), "data_dir": self.data_dir, "train": dict(self.train)}
        if self.finished is not None:
            out["finished"] = dataclasses.asdict(self.finished)
        return fileio.jsonable(out)


Record = typing.Union[PretrainRecord, PoseRecord]


def config_path(model_dir: str) -> str:
    return os.path.join(model_dir, CONFIG_FILE)


def _read_json(model_dir: str) -> Optional[dict]:
    """The stored ``config.json`` of ``model_dir`` as JSON, or None when there is none.

    Raises:
      ModelDirError: the file is not valid JSON.
    """
    path = config_path(model_dir)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{path} is not valid JSON ({e}); use another --model_dir")
    if not isinstance(raw, dict):
        raise ModelDirError(f"{path} is not a run record (a JSON object); use another "
                            f"--model_dir")
    return raw


def read_record(model_dir: str) -> Optional[Record]:
    """The typed ``config.json`` of ``model_dir`` (a :class:`PoseRecord` for a fine-tuning
    run, else a :class:`PretrainRecord`), or None when there is none.

    Raises:
      ModelDirError: the file is not valid JSON or not a run record.
    """
    raw = _read_json(model_dir)
    if raw is None:
        return None
    where = config_path(model_dir)
    if raw.get("model", {}).get("task") == POSE_TASK:
        return PoseRecord.from_json(raw, where)
    return PretrainRecord.from_json(raw, where)


def write_record(model_dir: str, record: Record) -> None:
    """Writes ``config.json`` atomically (temporary name, fsync, rename)."""
    os.makedirs(model_dir, exist_ok=True)
    fileio.write_json_atomic(config_path(model_dir), record.to_json())


@contextlib.contextmanager
def hold(model_dir: str, chief: bool = True):
    """One run per model_dir: holds its lock and removes temporaries of killed runs.

    Only the chief writes (and locks); the lock is released at the end of the block.

    Raises:
      ModelDirError: ``model_dir`` holds a dataset (checked before the lock is taken).
    """
    for name in (dataset_io.MANIFEST, dataset_io.DATASET_INFO):
        if os.path.exists(os.path.join(model_dir, name)):
            raise ModelDirError(f"--model_dir={model_dir} holds a dataset ({name}); expected a "
                                f"run directory, use another --model_dir")
    with locks.hold(model_dir, "--model_dir", enabled=chief):
        if chief:
            locks.clean_stale_temps(model_dir, os.path.join(model_dir, BACKUP_DIR))
        yield


def prepare(model_dir: str, record: Record, *, chief: bool = True) -> Record:
    """Creates ``model_dir`` or checks it holds a run with the same model settings, then
    stores ``record`` (the recorded settings, such as the batch size or the data dir, may
    change on resume; the ``model`` section, what a checkpoint depends on, may not).

    Returns:
      the record that is (now) stored.

    Raises:
      ModelDirError: ``config.json`` exists with other model settings (each difference
        named), or a checkpoint exists without ``config.json``.
    """
    old = _read_json(model_dir)
    kinds = {True: "fine-tuning", False: "pre-training"}
    was_pose = old is not None and old.get("model", {}).get("task") == POSE_TASK
    if old is not None and was_pose != (record.model_json().get("task") == POSE_TASK):
        raise ModelDirError(f"--model_dir={model_dir} holds a {kinds[was_pose]} run; expected "
                            f"a {kinds[not was_pose]} run directory, use another --model_dir")
    if old is not None:
        locks.refuse_other_settings(
            old.get("model", {}), record.model_json(), ModelDirError,
            f"--model_dir={model_dir}",
            "use another --model_dir or the same model settings to resume")
    elif os.path.exists(os.path.join(model_dir, BACKUP_DIR, WEIGHTS_FILE)):
        raise ModelDirError(f"--model_dir={model_dir} holds a checkpoint but no {CONFIG_FILE}; "
                            f"cannot tell whether it is compatible, use another --model_dir")
    if chief:
        write_record(model_dir, record)
    return record


def mark_finished(model_dir: str, record: PoseRecord, step: int) -> PoseRecord:
    """Records in ``config.json`` that the fine-tuning run finished (after its model file)."""
    record = dataclasses.replace(record, finished=Finished(step=step))
    write_record(model_dir, record)
    return record


def stored_statistics(model_dir: str) -> Optional[tuple]:
    """Target mean and std of an existing fine-tuning run (resume reuses them)."""
    record = read_record(model_dir)
    if isinstance(record, PoseRecord):
        return record.target_mean, record.target_std
    return None


def init_dir(model_dir: str) -> Optional[str]:
    """The pre-training directory a fine-tuning run started from (None: scratch)."""
    record = read_record(model_dir)
    init = record.init_from if isinstance(record, PoseRecord) else None
    return None if init in (None, SCRATCH) else init


def trained_subjects(model_dir: str, record: Optional[Record] = None) -> list:
    """Every subject a run saw in training: its labels and the pre-training it started from
    (``record``: the run's record when it is not in ``model_dir``, e.g. an export's)."""
    record = record if record is not None else read_record(model_dir)
    subjects = []
    if isinstance(record, PoseRecord):
        subjects += record.label_subjects
        init = record.init_from
        record = read_record(init) if init not in (None, SCRATCH) else None
    if isinstance(record, PoseRecord):
        subjects += record.label_subjects
    elif record is not None:
        subjects += record.train_subjects
    return list(dict.fromkeys(subjects))


def check_held_out(model_dir: str, subjects: Sequence[str], allow: bool = False) -> None:
    """Refuses test ``subjects`` that the run in ``model_dir`` trained on (labels, or the
    pre-training it started from), unless ``allow`` (then a warning)."""
    check_subject_overlap(trained_subjects(model_dir), subjects, "its labels and pre-training",
                          "--subjects", allow)


def check_subject_overlap(train: Sequence[str], test: Sequence[str], train_what: str,
                          test_flag: str, allow: bool, log: Callable[[str], None] = print
                          ) -> None:
    """Refuses to evaluate on subjects the model trained on, unless ``allow`` (then warns).

    Args:
      train: subjects the model saw in training.
      test: subjects it is (or will be) evaluated on.
      train_what: where ``train`` comes from, for the message (e.g. ``--train_subjects``).
      test_flag: the flag naming ``test``.
      allow: ``--allow_subject_overlap``.
      log: where the warning goes.
    """
    both = sorted(set(train) & set(test))
    if not both:
        return
    text = (f"{test_flag}={','.join(test)} includes {','.join(both)}, which the model trained "
            f"on ({train_what}: {','.join(train)}): those are not held-out results")
    if not allow:
        raise ValueError(f"{text}; pass --allow_subject_overlap to run anyway")
    log(f"warning: {text} (--allow_subject_overlap)")


# ----------------------------------------------------------------------------- loading

def check_model_file(path: str) -> None:
    """Raises ModelDirError for a ``.keras`` file of 0 bytes, or one that is no complete
    zip archive (an interrupted copy: Keras would call either "not found")."""
    import zipfile
    if not os.path.isfile(path):
        return
    again = "re-create it by re-running the run that writes it, or copy it again"
    if os.path.getsize(path) == 0:
        raise ModelDirError(f"{path} is empty (0 bytes; an interrupted copy?); {again}")
    if not zipfile.is_zipfile(path):
        raise ModelDirError(f"{path} is not a complete .keras archive ({os.path.getsize(path)} "
                            f"bytes; truncated by an interrupted copy?); {again}")


def load_pose_run(model_dir: str):
    """``(pose model, PoseRecord)`` of a finished fine-tuning run.

    Raises:
      UnfinishedModelDirError: naming the missing file and what writes it.
    """
    import keras
    from tf_synchro.models import pose  # noqa: F401  Registers the custom layers.

    path = config_path(model_dir)
    model_path = os.path.join(model_dir, POSE_MODEL_FILE)
    if not os.path.isdir(model_dir):
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} {locks.not_a_directory(model_dir)}")
    record = read_record(model_dir)
    if record is None:
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} has no {CONFIG_FILE}: not a tf_synchro.finetune run "
            f"directory")
    if not isinstance(record, PoseRecord):
        raise UnfinishedModelDirError(
            f"{path} is not from a fine-tuning run (model.task is not {POSE_TASK!r}); "
            f"pre-training directories hold {ENCODER_FILE} only (use it as --init_from)")
    if not (record.finished and os.path.exists(model_path)):
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} holds no finished fine-tuning run ({POSE_MODEL_FILE} is "
            f"written when training completes); finish it by re-running tf_synchro.finetune "
            f"with the same flags (it resumes from {BACKUP_DIR}/)")
    check_model_file(model_path)
    return keras.saving.load_model(model_path, compile=False), record


def load_pretrain_run(model_dir: str):
    """``(sync/flip model, PretrainRecord)`` of a finished pre-training run.

    Raises:
      FileNotFoundError: ``config.json`` or ``sync_flip.keras`` is missing.
      ModelDirError: ``config.json`` is not a pre-training record.
    """
    import keras
    from tf_synchro.models import resnet, siamese  # noqa: F401  Register the custom layers.

    model_path = os.path.join(model_dir, SYNC_FLIP_FILE)
    for p in (config_path(model_dir), model_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} not found: --model_dir must be a finished "
                                    f"`python -m tf_synchro.pretrain` run")
    record = read_record(model_dir)
    if not isinstance(record, PretrainRecord):
        raise ModelDirError(f"{config_path(model_dir)} is from a fine-tuning run: --model_dir "
                            f"must be a finished `python -m tf_synchro.pretrain` run")
    check_model_file(model_path)
    return keras.models.load_model(model_path), record


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A trained model and the record of the run that made it: what both tasks'
    ``evaluate`` take, loaded by the caller (:func:`load_pretrain_run`,
    :func:`load_pose_run`, or a deployed artefact through
    :func:`tf_synchro.deploy.artefacts.load_for_evaluation`).

    Attributes:
      model: a Keras model on preprocessed inputs, or (a deployed pose model) a callable on
        the raw uint8 crops.
      record: the run's record (an export's metadata keeps it): preprocessing, pairs,
        training subjects.
      path: where it was loaded from (reports and error messages name it).
      kind: ``run``, or the artefact kind (``saved_model``, ``onnx``, ``tflite``).
    """

    model: Any
    record: Record
    path: str
    kind: str = "run"

    @property
    def trained_subjects(self) -> list:
        """Every subject it saw in training (:func:`trained_subjects`)."""
        return trained_subjects(self.path, self.record)


def load_encoder(pretrain_dir: str, expect: Optional[Mapping[str, Any]] = None):
    """Loads ``pretrain_dir/encoder.keras`` written by pre-training and checks it.

    Args:
      pretrain_dir: a finished pre-training model_dir.
      expect: optional ``{"arch", "width", "input_size"}`` the encoder must match.

    Raises:
      IncompatibleEncoderError: naming the path and what is missing or different.
    """
    import keras
    from tf_synchro.models import resnet

    path = os.path.join(pretrain_dir, ENCODER_FILE)
    if not os.path.isdir(pretrain_dir):
        raise IncompatibleEncoderError(f"--init_from={pretrain_dir} "
                                       f"{locks.not_a_directory(pretrain_dir, 'no such directory')} "
                                       f"(expected a "
                                       f"pre-training model_dir or '{SCRATCH}')")
    if not os.path.exists(path):
        other = next((f"holds a {kind}" for name, kind in (
            (dataset_io.MANIFEST, "dataset"), (POSE_MODEL_FILE, "fine-tuning run"))
            if os.path.exists(os.path.join(pretrain_dir, name))), None)
        raise IncompatibleEncoderError(
            f"--init_from={pretrain_dir} {other}; expected a pre-training model_dir or "
            f"'{SCRATCH}'" if other else
            f"--init_from={pretrain_dir}: {ENCODER_FILE} not found; pre-training writes it "
            f"when it finishes (is the run complete?)")
    try:
        check_model_file(path)
    except ModelDirError as e:
        raise IncompatibleEncoderError(f"--init_from: {e}") from None
    try:
        encoder = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises several types for a foreign or corrupt file.
        raise IncompatibleEncoderError(f"--init_from: {path} is not a loadable Keras model "
                                       f"({type(e).__name__}: {e})") from e
    try:
        cfg = resnet.encoder_config(encoder)
    except ValueError as e:
        raise IncompatibleEncoderError(f"--init_from: {path}: {e}") from e
    try:
        stored = read_record(pretrain_dir)
    except ModelDirError as e:
        raise IncompatibleEncoderError(f"--init_from: {e}") from e
    for key in ("arch", "width", "input_size"):
        if stored is not None and getattr(stored, key) != cfg[key]:
            raise IncompatibleEncoderError(
                f"--init_from: {config_path(pretrain_dir)} says {key}={getattr(stored, key)!r} but "
                f"{path} has {key}={cfg[key]!r}; the directory is inconsistent")
    if expect:
        diff = {k: (cfg[k], v) for k, v in expect.items() if v is not None and cfg[k] != v}
        if diff:
            raise IncompatibleEncoderError(
                f"--init_from={pretrain_dir}: the pretrained encoder differs from the "
                f"requested model (setting: (pretrained, requested)) {diff}; pass the "
                f"pre-training settings (--arch/--width/--input_size) or use "
                f"--init_from={SCRATCH}")
    return encoder
