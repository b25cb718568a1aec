"""Serving: archive a fine-tuned pose model (or its encoder) for TF Serving and other runtimes.

:func:`export` (the work of ``python -m tf_synchro.export``) writes
``<export_dir>/<version>/`` (the layout TF Serving watches; the version is the next free
integer unless ``--version`` is given) through ``keras.export.ExportArchive``
with explicit input signatures. Preprocessing lives inside the graph, so clients send raw
crops (person-centred, as stored in the dataset), never normalised floats:

``serving_default``
    ``images``: uint8 ``[N, H, W, 3]`` RGB, any H and W -> ``joints3d``: float32
    ``[N, 17, 3]`` root-relative joints in the camera frame, mm (``--what=pose``), or
    ``features``: float32 ``[N, C]`` (``--what=encoder``).
``serving_jpeg``
    ``image_bytes``: string ``[N]`` of encoded JPEGs (TF Serving's REST API decodes
    ``{"b64": ...}`` values for inputs whose name ends in ``_bytes``) -> same output.

Both take the central square of ``crop_scale`` of the shorter side and resize it to the
model input, exactly as :mod:`tf_synchro.evaluate` does (:func:`frames.preprocess_images`).
A wrong dtype or channel count is rejected by the signature; empty images by an assertion.

Other runtimes (``--formats=saved_model,onnx,tflite``; :func:`write_extra_formats`): the
``serving_default`` signature is converted to ONNX (``<export_dir>/<version>.onnx``, tf2onnx)
and to LiteRT (``<version>.tflite`` float32, plus ``<version>.int8.tflite`` with
``--tflite_quantize``). Files, not integer-named directories, so TF Serving ignores them.
Each is loaded in its own runtime (onnxruntime, ``ai_edge_litert``) and compared with the
SavedModel on real crops of the dataset before anything is published (float32: largest
joint difference; int8: the evaluation protocol's MPJPE on labelled test subjects, which
may rise by ``int8_max_mpjpe_increase``, :func:`int8_mpjpe_check`); the measured
differences go into ``assets.extra/tf_synchro.json`` under ``formats``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_synchro import configs, run_dir, train_lib
from tf_synchro.data import frames
from tf_synchro.deploy import artefacts
from tf_synchro.models import pose
from tf_synchro.tasks import pose3d
from tfrecords_tools import dataset_io, schema
from tfrecords_tools.runtime import locks

WHAT = configs.EXPORT_WHAT
SIGNATURE_JPEG = "serving_jpeg"
FORMATS = configs.EXPORT_FORMATS
# File next to <export_dir>/<version>/ of each converted model (key in the metadata too).
EXTRA_FILES = {"onnx": "{version}.onnx", "tflite": "{version}.tflite",
               "tflite_int8": "{version}.int8.tflite"}


class ExportError(ValueError):
    """The export directory or version is not usable."""


def next_version(export_dir: str) -> int:
    """1 + the largest integer-named subdirectory of ``export_dir`` (1 if none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if n.isdigit()]
    return max(versions, default=0) + 1


def _preprocess_uint8(images: tf.Tensor, input_size: int, crop_scale: float) -> tf.Tensor:
    # The signature fixes dtype uint8 and rank 4, but a serving runtime may pass any
    # shape; check it here so a client reads what was wrong, not an op's internals.
    shape = tf.shape(images)
    checks = [
        tf.debugging.assert_equal(shape[3], 3, message=(
            "serving_default: images must be RGB uint8 [N, H, W, 3]; the last dimension "
            "(channels) is not 3")),
        tf.debugging.assert_positive(shape[1:3], message=(
            "serving_default: images must have height and width >= 1")),
    ]
    with tf.control_dependencies(checks):
        return frames.preprocess_images(tf.identity(images), input_size, crop_scale)


def _decode_one(jpeg: tf.Tensor, input_size: int, crop_scale: float,
                dct_method: str) -> tf.Tensor:
    check = tf.debugging.Assert(tf.io.is_jpeg(jpeg), [
        f"{SIGNATURE_JPEG}: image_bytes holds a value that is not a JPEG (with TF Serving "
        f"REST, send {{\"b64\": <base64 of the .jpg file>}})"])
    with tf.control_dependencies([check]):
        image = frames.decode_jpeg(tf.identity(jpeg), dct_method)
    return frames.preprocess_images(image[None], input_size, crop_scale)[0]


def build_archive(model: keras.Model, input_size: int, crop_scale: float,
                  dct_method: str = "INTEGER_FAST", output_name: str = "joints3d"
                  ) -> keras.export.ExportArchive:
    """ExportArchive with the uint8 and JPEG serving signatures around ``model``.

    Args:
      model: float32 ``[B, S, S, 3]`` pixels in [0, 255] -> one output tensor.
      input_size: S.
      crop_scale: central crop (fraction of the shorter side) before resizing.
      dct_method: JPEG IDCT, as in the evaluation pipeline.
      output_name: key of the output in both signatures.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve_images(images):
        x = _preprocess_uint8(images, input_size, crop_scale)
        return {output_name: model(x, training=False)}

    def serve_jpeg(image_bytes):
        x = tf.map_fn(lambda b: _decode_one(b, input_size, crop_scale, dct_method),
                      image_bytes, fn_output_signature=tf.TensorSpec(
                          [input_size, input_size, 3], tf.float32))
        return {output_name: model(x, training=False)}

    archive.add_endpoint("serving_default", serve_images, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint(SIGNATURE_JPEG, serve_jpeg, input_signature=[
        tf.TensorSpec([None], tf.string, name="image_bytes")])
    return archive


def export(model_dir: str, export_dir: str, version: Optional[int] = None,
           what: str = "pose", formats: Optional[configs.FormatOptions] = None) -> str:
    """Exports the finished run in ``model_dir``; returns ``export_dir/<version>``.

    The SavedModel is written to a temporary, non-numeric sibling and renamed, so TF
    Serving (which loads integer-named directories only) never sees a partial version.
    ``formats`` adds checked ONNX / LiteRT files (:func:`write_extra_formats`); they are
    published just before the version directory, and only if every check passed.

    Raises:
      run_dir.UnfinishedModelDirError: ``model_dir`` holds no finished run.
      ExportError: bad ``what`` or ``version``, or the version exists already.
      FormatCheckError: a converted model differs from the SavedModel (nothing published).
    """
    if what not in WHAT:
        raise ExportError(f"--what={what!r}: expected one of {WHAT}")
    formats = formats or configs.FormatOptions()
    check_formats(formats, what)
    for name in (run_dir.CONFIG_FILE, dataset_io.MANIFEST):  # Versions beside a run's files.
        if os.path.exists(os.path.join(export_dir, name)):
            raise ExportError(f"--export_dir={export_dir} holds a training run or a dataset "
                              f"({name}); expected a directory of export versions")
    model, record = run_dir.load_pose_run(model_dir)
    version = next_version(export_dir) if version is None else int(version)
    if version < 1:
        raise ExportError(f"--version={version} must be a positive integer (TF Serving)")
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target):
        raise ExportError(f"{target} exists; TF Serving versions are immutable, pass another "
                          f"--version or omit it (next free: {next_version(export_dir)})")
    extra_targets = extra_paths(export_dir, version, formats)
    taken = [p for p in extra_targets.values() if os.path.exists(p)]
    if taken:
        raise ExportError(f"{taken[0]} exists; pass another --version")
    train_lib.check_finite_weights(model, target)  # A diverged run is not served.
    if what == "encoder":
        model, output_name = pose.pose_encoder(model), "features"
    else:
        output_name = "joints3d"
    archive = build_archive(model, record.input_size, record.preprocess.crop_scale,
                            record.preprocess.dct_method, output_name)
    lock = locks.acquire(export_dir, "--export_dir")  # One writer; creates export_dir.
    # Temporary named like locks.temp_path's, so clean_stale_temps finds a killed one.
    tmp = os.path.join(export_dir, f".tmp-{os.getpid()}-{version}")
    extra_tmp = {k: f"{tmp}.{os.path.basename(p)}" for k, p in extra_targets.items()}
    try:
        locks.clean_stale_temps(export_dir)
        archive.write_out(tmp, verbose=False)
        metadata = {"what": what, "output": output_name, "model_dir": model_dir,
                    "model": record.model_json(),
                    "crop_size": artefacts.training_crop_size(record)}
        if extra_targets:
            metadata.update(write_extra_formats(tmp, extra_tmp, record, formats))
            for key, path in extra_targets.items():
                metadata["formats"][key]["file"] = os.path.basename(path)  # In export_dir.
        os.makedirs(os.path.join(tmp, os.path.dirname(artefacts.METADATA_FILE)), exist_ok=True)
        with open(os.path.join(tmp, artefacts.METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=1, sort_keys=True)
        for key, path in extra_tmp.items():
            os.replace(path, extra_targets[key])
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        for path in extra_tmp.values():
            if os.path.exists(path):
                os.remove(path)
        lock.release()
    return target


# ----------------------------------------------------------------------------- other runtimes

class FormatCheckError(ExportError):
    """A converted model does not reproduce the SavedModel, or cannot be checked."""


def check_formats(options: configs.FormatOptions, what: str) -> None:
    """Raises ExportError naming the flag at fault."""
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown or "saved_model" not in options.formats:
        raise ExportError(f"--formats={','.join(options.formats)}: expected a list among "
                          f"{FORMATS} that includes saved_model (the source and the "
                          f"reference of the other formats)")
    if options.tflite_quantize and "tflite" not in options.formats:
        raise ExportError("--tflite_quantize needs tflite in --formats")
    if len(options.formats) > 1 and what != "pose":
        raise ExportError(f"--formats={','.join(options.formats)} needs --what=pose (the "
                          f"runtime check compares joints in mm)")
    if options.check_crops < 1:
        raise ExportError(f"--check_crops={options.check_crops} must be >= 1")
    if options.tflite_quantize:
        if not options.int8_max_mpjpe_increase >= 0:
            raise ExportError(f"--int8_max_mpjpe_increase={options.int8_max_mpjpe_increase} "
                              f"must be >= 0 (a fraction: 0.02 = 2%)")
        if options.int8_frame_step < 1 or not options.int8_subjects:
            raise ExportError(f"--int8_subjects={','.join(options.int8_subjects)} "
                              f"--int8_frame_step={options.int8_frame_step}: expected labelled "
                              f"test subjects and a step >= 1")
    if "onnx" in options.formats:
        from tf2onnx import constants  # Opsets this tf2onnx can write.
        top = max(constants.OPSET_TO_IR_VERSION)
        if not 7 <= options.onnx_opset <= top:
            raise ExportError(f"--onnx_opset={options.onnx_opset}: expected 7..{top} (the "
                              f"opsets tf2onnx {_version('tf2onnx')} writes)")


def extra_paths(export_dir: str, version: int, options: configs.FormatOptions) -> dict:
    """``{key: path}`` of the converted files of ``version`` (see :data:`EXTRA_FILES`)."""
    keys = [f for f in options.formats if f != "saved_model"]
    if options.tflite_quantize:
        keys.append("tflite_int8")
    return {k: os.path.join(export_dir, EXTRA_FILES[k].format(version=version)) for k in keys}


def read_crops(data_dir: str, count: int, exclude_subjects: Sequence[str] = (),
               dct_method: str = "INTEGER_FAST") -> tuple[np.ndarray, list]:
    """``count`` stored crops (uint8 ``[N, S, S, 3]``) spread over a dataset, and subjects.

    Subjects outside ``exclude_subjects`` (the label subjects: held-out crops) are used when
    the dataset has any. Crops come from every shard in turn, a few timesteps per clip.

    Raises:
      dataset_io.DatasetError: no dataset at ``data_dir``, or it holds no crop.
    """
    manifest = dataset_io.load_manifest(data_dir)
    subjects = sorted(manifest["images_per"]["subject"])
    held_out = [s for s in subjects if s not in set(exclude_subjects)]
    use = held_out or subjects
    per_shard = []
    for path in dataset_io.shard_paths(data_dir, manifest, use):
        jpegs = []
        for record in tf.data.TFRecordDataset(path).take(4).as_numpy_iterator():
            clip = schema.decode_clip(record, where=path)
            if clip.subject in use:
                step = max(1, len(clip.images) // 4)  # A few instants per clip, all views.
                jpegs += [j for row in clip.images[::step] for j in row]
        per_shard.append(jpegs)
    jpegs = list(_round_robin(per_shard))[:count]
    if not jpegs:
        raise dataset_io.DatasetError(f"{data_dir}: no crops of subjects {use} to check the "
                                      f"exported formats with")
    images = [frames.decode_jpeg(j, dct_method).numpy() for j in jpegs]
    return np.stack(images), use


def _round_robin(groups: Sequence[list]):
    """Yields the items of ``groups`` taking one of each group in turn."""
    for i in range(max((len(g) for g in groups), default=0)):
        yield from (g[i] for g in groups if i < len(g))


def convert_onnx(saved_model: str, path: str, opset: int) -> None:
    """``serving_default`` of ``saved_model`` -> ONNX file ``path`` (tf2onnx command line).

    The command line is tf2onnx's documented SavedModel entry point; its Python API only
    takes functions, which would turn the graph's captured constants into inputs.
    """
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model,
           "--signature_def", "serving_default", "--opset", str(opset), "--output", path]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if out.returncode != 0 or not os.path.exists(path):
        lines = [l for l in out.stderr.splitlines() if l.strip()]
        raise FormatCheckError(f"tf2onnx could not convert {saved_model} at --onnx_opset="
                               f"{opset}: {lines[-1] if lines else 'no message'}")


def convert_tflite(saved_model: str, path: str, quantize: bool) -> None:
    """``serving_default`` -> LiteRT flatbuffer; ``quantize``: dynamic-range int8 weights."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model,
                                                         signature_keys=["serving_default"])
    if quantize:
        # No representative dataset: weights int8, activations float (dynamic range).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with open(path, "wb") as f:
        f.write(converter.convert())


def run_onnx(path: str, images: np.ndarray) -> np.ndarray:
    """Joints from onnxruntime (CPU) for uint8 ``images``."""
    return artefacts.onnx_runner(path)(images)


def run_tflite(path: str, images: np.ndarray) -> np.ndarray:
    """Joints from the LiteRT interpreter (``ai_edge_litert``) for uint8 ``images``."""
    return artefacts.tflite_runner(path)(images)


def _version(package: str) -> str:
    import importlib.metadata
    return importlib.metadata.version(package)


def _runtime_version(key: str) -> str:
    name = "onnxruntime" if key == "onnx" else "ai-edge-litert"
    return f"{name} {_version(name)}"


def write_extra_formats(saved_model: str, paths: dict, record: run_dir.PoseRecord,
                        options: configs.FormatOptions) -> dict:
    """Converts ``saved_model`` into ``paths`` and checks each in its own runtime.

    Every converted model and the SavedModel answer the same crops of the dataset
    (:func:`read_crops`); the largest joint difference of a float32 format must stay within
    ``max_diff_mm``. The int8 model is judged by its MPJPE instead
    (:func:`int8_mpjpe_check`).

    Args:
      saved_model: the written SavedModel (reference).
      paths: ``{key: file}`` to write, keys of :data:`EXTRA_FILES`.
      record: the run's record (data_dir, label subjects, preprocessing).
      options: tolerances and conversion settings.

    Returns:
      Metadata ``{"formats": {key: {...}}, "format_check": {...}}`` to store.

    Raises:
      FormatCheckError: a conversion failed or a format differs too much.
      dataset_io.DatasetError: no crops to check with.
    """
    data_dir = options.data_dir or record.data_dir
    if not data_dir or not os.path.isdir(data_dir):
        raise FormatCheckError(f"checking --formats needs real crops: dataset {data_dir!r} "
                               f"does not exist (--data_dir; default: the run's data_dir)")
    images, subjects = read_crops(data_dir, options.check_crops, record.label_subjects,
                                  record.preprocess.dct_method)
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    reference = serve(images=tf.constant(images))["joints3d"].numpy()
    out = {"formats": {"saved_model": {"path": "."}},
           "format_check": {"data_dir": data_dir, "subjects": subjects,
                            "num_crops": int(len(images)), "crop_size": int(images.shape[1])}}
    for key, path in paths.items():
        if key == "onnx":
            convert_onnx(saved_model, path, options.onnx_opset)
            got = run_onnx(path, images)
        else:
            convert_tflite(saved_model, path, quantize=key == "tflite_int8")
            got = run_tflite(path, images)
        diff = np.abs(np.asarray(got, np.float64) - reference)
        entry = {"runtime": _runtime_version(key), "max_abs_diff_mm": float(diff.max()),
                 "mean_abs_diff_mm": float(diff.mean()), "bytes": os.path.getsize(path)}
        if key == "onnx":
            entry["opset"] = options.onnx_opset
        if key == "tflite_int8":
            # Quantised weights move every joint a little (tens of mm on single crops of a
            # tiny model): judge them by what users measure, the protocol's MPJPE.
            entry.update(int8_mpjpe_check(saved_model, path, data_dir, record, options))
            out["formats"][key] = entry
            continue
        tolerance = options.max_diff_mm
        entry["tolerance_mm"] = tolerance
        if not diff.max() <= tolerance:
            raise FormatCheckError(
                f"{key}: {entry['runtime']} differs from the SavedModel by up to "
                f"{diff.max():.3g} mm on {len(images)} crops of {data_dir} (allowed "
                f"{tolerance} mm); nothing was exported")
        out["formats"][key] = entry
    return out


def mpjpe_increase(reference_mm: float, mpjpe_mm: float) -> float:
    """Relative MPJPE rise of a model over its reference (0.02: 2% worse; < 0: better)."""
    return float(mpjpe_mm / max(reference_mm, 1e-9) - 1.0)


def int8_mpjpe_check(saved_model: str, int8_path: str, data_dir: str,
                     record: run_dir.PoseRecord, options: configs.FormatOptions) -> dict:
    """Evaluates the SavedModel and the int8 LiteRT model with the protocol; refuses the
    int8 model if its MPJPE (mean over actions) rises by more than the allowed fraction.

    Both get the same stored uint8 crops of ``options.int8_subjects`` of ``data_dir``
    (every ``int8_frame_step``-th frame, all cameras), as :mod:`tf_synchro.evaluate` gives
    an artefact.

    Returns:
      The metadata entry's MPJPE fields.

    Raises:
      FormatCheckError: the MPJPE rose too much, or the subjects have no labelled frames.
    """
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    models = {
        "saved_model": artefacts.PoseModel(
            saved_model, "saved_model", None, record,
            lambda x: serve(images=tf.constant(x))["joints3d"].numpy()),
        "tflite_int8": artefacts.PoseModel(int8_path, "tflite", None, record,
                                           artefacts.tflite_runner(int8_path)),
    }
    subjects = tuple(options.int8_subjects)
    reports = {}
    for key, model in models.items():
        try:
            reports[key] = pose3d.evaluate(
                run_dir.LoadedModel(model, record, saved_model, model.kind), data_dir,
                configs.PoseEvalConfig(subjects=subjects, frame_step=options.int8_frame_step,
                                       num_examples=0))
        except dataset_io.DatasetError as e:
            raise FormatCheckError(f"--int8_subjects={','.join(subjects)}: the int8 model is "
                                   f"judged by its MPJPE on labelled test frames, but {e}"
                                   ) from None
    reference = reports["saved_model"]["mean_over_actions"]["mpjpe"]
    mpjpe = reports["tflite_int8"]["mean_over_actions"]["mpjpe"]
    rise = mpjpe_increase(reference, mpjpe)
    allowed = options.int8_max_mpjpe_increase
    where = (f"{reports['saved_model']['num_frames']} frames of {','.join(subjects)} "
             f"(frame_step {options.int8_frame_step}) of {data_dir}")
    if not rise <= allowed:
        raise FormatCheckError(
            f"tflite_int8: MPJPE rises from {reference:.1f} mm (SavedModel) to {mpjpe:.1f} mm "
            f"({100 * rise:+.1f}%) on {where} (allowed {100 * allowed:+.1f}%, "
            f"--int8_max_mpjpe_increase); nothing was exported")
    return {"mpjpe_mm": mpjpe, "reference_mpjpe_mm": reference, "mpjpe_increase": rise,
            "max_mpjpe_increase": allowed,
            "pa_mpjpe_mm": reports["tflite_int8"]["mean_over_actions"]["pa_mpjpe"],
            "reference_pa_mpjpe_mm": reports["saved_model"]["mean_over_actions"]["pa_mpjpe"],
            "mpjpe_data": {"data_dir": data_dir, "subjects": list(subjects),
                           "frame_step": options.int8_frame_step,
                           "num_frames": reports["saved_model"]["num_frames"],
                           "metric": "MPJPE mean over actions (evaluation protocol)"}}
