"""Any deployable pose model as one callable: uint8 crops ``[N, S, S, 3]`` -> joints mm.

:func:`load` opens, by its path,

* a finished fine-tuning run directory (``config.json`` + ``pose_model.keras``): the Keras
  model behind :func:`tf_synchro.data.frames.preprocess_images`, as evaluation runs it;
* an export version directory (``saved_model.pb``; :mod:`tf_synchro.deploy.serving`): its
  ``serving_default`` signature;
* a converted file beside a version directory, ``<version>.onnx`` (onnxruntime, CPU) or
  ``<version>.tflite`` / ``<version>.int8.tflite`` (the LiteRT interpreter,
  ``ai_edge_litert``): its ``serving_default`` signature.

Every kind takes the raw stored crops (uint8 RGB, person-centred, as the dataset holds
them) and preprocesses them itself (central ``crop_scale`` square, resize), so a deployed
artefact is measured exactly as a client calls it. The JPEG decoding settings, the stored
crop side and the training config of an export or a converted file are read from the
version directory's ``assets.extra/tf_synchro.json`` (a converted file's version directory
is its name without ``.onnx`` / ``.tflite`` / ``.int8.tflite``). The predict binary
(:mod:`tf_synchro.deploy.inference`) and the evaluate binary
(:func:`load_for_evaluation`, then :func:`tf_synchro.tasks.pose3d.evaluate`) both load
models here; the tasks themselves know no artefact.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tf_synchro import run_dir
from tf_synchro.data import frames
from tfrecords_tools import dataset_io, schema
from tfrecords_tools.runtime import cli

log = logging.getLogger(__name__)

KINDS = ("run", "saved_model", "onnx", "tflite")
# Written by the export into a version directory (serving.export), read here.
METADATA_FILE = "assets.extra/tf_synchro.json"
# Suffixes of the converted files (serving.EXTRA_FILES), longest first.
_FILE_SUFFIXES = ((".int8.tflite", "tflite"), (".tflite", "tflite"), (".onnx", "onnx"))


class ArtefactError(cli.DataError):
    """The path is not a usable pose model (exit status 1)."""


@dataclasses.dataclass
class PoseModel:
    """Raw uint8 crops ``[N, S, S, 3]`` -> joints ``[N, 17, 3]`` mm, from any source.

    Attributes:
      path: what was loaded.
      kind: one of :data:`KINDS`.
      crop_size: stored crop side of its training data, if known.
      record: the training run's record (an export keeps its ``model`` section: input
        size, preprocessing, labels, ``init_from``).
      fn: the model call.
    """

    path: str
    kind: str
    crop_size: Optional[int]
    record: run_dir.PoseRecord
    fn: Callable[[np.ndarray], np.ndarray]

    @property
    def dct_method(self) -> str:
        """JPEG IDCT of its training and evaluation pipelines."""
        return self.record.preprocess.dct_method

    def __call__(self, crops_uint8: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(np.ascontiguousarray(crops_uint8, np.uint8)), np.float32)


def kind_of(path: str) -> Optional[str]:
    """Which kind of model ``path`` holds (None: none)."""
    if os.path.isfile(path):
        return next((k for s, k in _FILE_SUFFIXES if path.lower().endswith(s)), None)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    if os.path.exists(run_dir.config_path(path)):
        return "run"
    return None


def version_dir(path: str) -> str:
    """The export version directory of a converted file (``1.int8.tflite`` -> ``1``)."""
    for suffix, _ in _FILE_SUFFIXES:
        if path.lower().endswith(suffix):
            return path[:-len(suffix)]
    return path


def read_metadata(saved_model: str, what: str = "--model") -> dict:
    """``assets.extra/tf_synchro.json`` of a version directory.

    Raises:
      ArtefactError: missing, not JSON, or an encoder export.
    """
    meta_path = os.path.join(saved_model, METADATA_FILE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ArtefactError(f"{what}={saved_model}: {meta_path} is missing or not JSON ({e}); "
                            f"expected a directory written by tf_synchro.export") from None
    if meta.get("what") != "pose":
        raise ArtefactError(f"{what}={saved_model} is an export of the {meta.get('what')!r}, "
                            f"not the pose model (export with --what=pose)")
    return meta


def record_of(meta: dict, where: str) -> run_dir.PoseRecord:
    """The training run's record kept in an export's metadata (its ``model`` section:
    enough for the preprocessing and the held-out check).

    Raises:
      ArtefactError: the metadata holds no fine-tuning run's model section.
    """
    try:
        return run_dir.PoseRecord.from_json({"model": meta.get("model", {})}, where)
    except run_dir.ModelDirError as e:
        raise ArtefactError(str(e)) from None


def load(path: str, what: str = "--model") -> PoseModel:
    """Loads a run directory, an export version directory, a .onnx or a .tflite.

    Args:
      path: the model.
      what: the flag naming it, for error messages.

    Raises:
      ArtefactError: not a model of :data:`KINDS`, an encoder export, an unfinished run,
        or a converted file whose version directory (its metadata) is missing.
    """
    kind = kind_of(path)
    if kind == "run":
        try:
            model, record = run_dir.load_pose_run(path)
        except run_dir.UnfinishedModelDirError as e:
            raise ArtefactError(str(e)) from None
        size, scale = record.input_size, record.preprocess.crop_scale
        call = tf.function(lambda x: model(frames.preprocess_images(x, size, scale),
                                           training=False))
        return PoseModel(path, kind, training_crop_size(record), record,
                         lambda x: call(x).numpy())
    if kind is None:
        raise ArtefactError(f"{what}={path}: expected an export version directory (with "
                            f"saved_model.pb), a <version>.onnx or <version>[.int8].tflite "
                            f"beside one, or a finished fine-tuning run (with config.json)")
    meta_dir = path if kind == "saved_model" else version_dir(path)
    if kind != "saved_model" and not os.path.isdir(meta_dir):
        raise ArtefactError(f"{what}={path}: its version directory {meta_dir} (the export's "
                            f"metadata: preprocessing, training run) is missing; keep the "
                            f"converted file beside the version directory it was written with")
    meta = read_metadata(meta_dir, what)
    record = record_of(meta, os.path.join(meta_dir, METADATA_FILE))
    fn = {"saved_model": _saved_model_fn, "onnx": onnx_runner,
          "tflite": tflite_runner}[kind](path)
    return PoseModel(path, kind, meta.get("crop_size"), record, fn)


def load_for_evaluation(path: str, what: str = "--model_dir") -> run_dir.LoadedModel:
    """The model at ``path`` as :func:`tf_synchro.tasks.pose3d.evaluate` takes it, the
    loader picked by its kind: a finished run's Keras model (preprocessed by the
    evaluation pipeline, as it always was), or a deployed artefact (:func:`load`) given the
    stored uint8 crops, as its clients give them.

    Raises:
      run_dir.UnfinishedModelDirError: ``path`` is no finished fine-tuning run.
      ArtefactError: ``path`` is a file but no model of :data:`KINDS`, or a broken
        artefact.
    """
    kind = kind_of(path)
    if kind in (None, "run"):
        if os.path.isfile(path):  # Not a file format we know: say which ones we do.
            load(path, what)
        model, record = run_dir.load_pose_run(path)
        return run_dir.LoadedModel(model, record, path)
    artefact = load(path, what)
    return run_dir.LoadedModel(artefact, artefact.record, path, artefact.kind)


def _saved_model_fn(path: str) -> Callable:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda x: serve(images=tf.constant(x))["joints3d"].numpy()


def trained_subjects(path: str) -> list:
    """Subjects the model at ``path`` saw in training (labels, and its pre-training when
    that run directory is still readable): what a held-out evaluation must avoid."""
    if kind_of(path) in (None, "run"):
        return run_dir.trained_subjects(path)
    meta_dir = path if kind_of(path) == "saved_model" else version_dir(path)
    try:
        record = record_of(read_metadata(meta_dir), meta_dir)
    except ArtefactError:
        return []
    return run_dir.trained_subjects(meta_dir, record)


def default_report_path(path: str) -> str:
    """Where evaluate writes the report of ``path`` by default: a run's ``eval.json``; for
    an artefact, a file beside it (``1.eval.json``, ``1.int8.tflite.eval.json``), since a
    TF Serving version directory is immutable."""
    if kind_of(path) in (None, "run"):
        return os.path.join(path, run_dir.EVAL_FILE)
    return os.path.normpath(path) + ".eval.json"


def training_crop_size(record: run_dir.PoseRecord) -> Optional[int]:
    """Side of the stored crops the model was trained on (None if the data is gone)."""
    try:
        path = dataset_io.shard_paths(record.data_dir)[0]
        first = next(tf.data.TFRecordDataset(path).take(1).as_numpy_iterator())
    except (dataset_io.DatasetError, TypeError, IndexError, StopIteration, OSError):
        return None
    return schema.decode_clip(first, where=path).image_size


def onnx_runner(path: str):
    """``images uint8 -> joints`` of an ONNX file in onnxruntime (CPU), loaded once."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda images: session.run(["joints3d"], {"images": images})[0]


def tflite_runner(path: str):
    """``images uint8 -> joints`` of a LiteRT file (``ai_edge_litert``), loaded once."""
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return lambda images: runner(images=images)["joints3d"]
