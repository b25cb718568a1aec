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

This module owns those names, the typed reads and writes of ``config.json``, the one
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
from typing import Any, Callable, Mapping, Optional, Sequence

from tf_synchro import configs
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


# ----------------------------------------------------------------------------- config.json

def config_path(model_dir: str) -> str:
    return os.path.join(model_dir, CONFIG_FILE)


def read_config(model_dir: str) -> Optional[dict]:
    """The stored ``config.json`` of ``model_dir``, or None when there is none.

    Raises:
      ModelDirError: the file is not valid JSON.
    """
    path = config_path(model_dir)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{path} is not valid JSON ({e}); use another --model_dir")


def write_config(model_dir: str, config: Mapping[str, Any]) -> None:
    """Writes ``config.json`` atomically (temporary name, fsync, rename)."""
    os.makedirs(model_dir, exist_ok=True)
    fileio.write_json_atomic(config_path(model_dir), fileio.jsonable(dict(config)))


def model_settings(model_dir: str) -> dict:
    """The ``model`` section of a run's ``config.json`` (empty when there is none)."""
    return (read_config(model_dir) or {}).get("model", {})


@contextlib.contextmanager
def hold(model_dir: str, chief: bool = True):
    """One run per model_dir: holds its lock and removes temporaries of killed runs.

    Only the chief writes (and locks); the lock is released at the end of the block.
    """
    with locks.hold(model_dir, "--model_dir", enabled=chief):
        if chief:
            locks.clean_stale_temps(model_dir, os.path.join(model_dir, BACKUP_DIR))
        yield


def prepare(model_dir: str, settings: Mapping[str, Any],
            extra: Optional[Mapping[str, Any]] = None, *, chief: bool = True) -> dict:
    """Creates ``model_dir`` or checks it holds a run with the same model settings.

    ``config.json`` stores ``{"model": settings, **extra}``. The ``model`` section is what a
    checkpoint depends on (architecture, width, input size, fusion, tasks...); ``extra``
    (batch size, data dir...) is recorded but may change on resume.

    Returns:
      the config that is (now) stored.

    Raises:
      ModelDirError: ``config.json`` exists with other model settings (each difference
        named), or a checkpoint exists without ``config.json``.
    """
    config = {"model": fileio.jsonable(dict(settings)),
              **fileio.jsonable(dict(extra or {}))}
    old = read_config(model_dir)
    if old is not None:
        locks.refuse_other_settings(
            old.get("model", {}), config["model"], ModelDirError, f"--model_dir={model_dir}",
            "use another --model_dir or the same model settings to resume")
    elif os.path.exists(os.path.join(model_dir, BACKUP_DIR, WEIGHTS_FILE)):
        raise ModelDirError(f"--model_dir={model_dir} holds a checkpoint but no {CONFIG_FILE}; "
                            f"cannot tell whether it is compatible, use another --model_dir")
    if chief:
        write_config(model_dir, config)
    return config


def mark_finished(model_dir: str, stored: Mapping[str, Any], step: int) -> dict:
    """Records in ``config.json`` that the fine-tuning run finished (after its model file)."""
    config = dict(stored, finished={"step": step, "pose_model": POSE_MODEL_FILE})
    write_config(model_dir, config)
    return config


def stored_statistics(model_dir: str) -> Optional[tuple]:
    """Target mean and std of an existing fine-tuning run (resume reuses them)."""
    model = model_settings(model_dir)
    if "target_mean" in model and "target_std" in model:
        return model["target_mean"], model["target_std"]
    return None


def init_dir(model_dir: str) -> Optional[str]:
    """The pre-training directory a fine-tuning run started from (None: scratch)."""
    init = model_settings(model_dir).get("init_from")
    return None if init in (None, SCRATCH) else init


def trained_subjects(model_dir: str) -> list:
    """Every subject a run saw in training: its labels and the pre-training it started from."""
    subjects = []
    for directory in (model_dir, init_dir(model_dir)):
        config = read_config(directory) if directory else None
        if config:
            subjects += config.get("model", {}).get("label_subjects", [])
            subjects += config.get("train_subjects", [])
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
    """Raises ModelDirError for a ``.keras`` file of 0 bytes (an interrupted copy: Keras
    would call it "not found")."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ModelDirError(f"{path} is empty (0 bytes; an interrupted copy?); re-create it "
                            f"by re-running the run that writes it, or copy it again")


def load_pose_run(model_dir: str):
    """``(pose model, config)`` of a finished fine-tuning run.

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
    config = read_config(model_dir)
    if config is None:
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} has no {CONFIG_FILE}: not a tf_synchro.finetune run "
            f"directory")
    if config.get("model", {}).get("task") != POSE_TASK:
        raise UnfinishedModelDirError(
            f"{path} is not from a fine-tuning run (model.task is not {POSE_TASK!r}); "
            f"pre-training directories hold {ENCODER_FILE} only (use it as --init_from)")
    if not (config.get("finished") and os.path.exists(model_path)):
        raise UnfinishedModelDirError(
            f"--model_dir={model_dir} holds no finished fine-tuning run ({POSE_MODEL_FILE} is "
            f"written when training completes); finish it by re-running tf_synchro.finetune "
            f"with the same flags (it resumes from {BACKUP_DIR}/)")
    check_model_file(model_path)
    return keras.saving.load_model(model_path, compile=False), config


def load_pretrain_run(model_dir: str):
    """``(sync/flip model, pair settings, config)`` of a finished pre-training run.

    Raises:
      FileNotFoundError: ``config.json`` or ``sync_flip.keras`` is missing.
    """
    import keras
    from tf_synchro.models import resnet, siamese  # noqa: F401  Register the custom layers.

    model_path = os.path.join(model_dir, SYNC_FLIP_FILE)
    for p in (config_path(model_dir), model_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} not found: --model_dir must be a finished "
                                    f"`python -m tf_synchro.pretrain` run")
    config = read_config(model_dir)
    check_model_file(model_path)
    return (keras.models.load_model(model_path), configs.PairConfig.from_run(config), config)


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
        raise IncompatibleEncoderError(
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
        stored = model_settings(pretrain_dir)
    except ModelDirError as e:
        raise IncompatibleEncoderError(f"--init_from: {e}") from e
    for key in ("arch", "width", "input_size"):
        if key in stored and stored[key] != cfg[key]:
            raise IncompatibleEncoderError(
                f"--init_from: {config_path(pretrain_dir)} says {key}={stored[key]!r} but "
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
