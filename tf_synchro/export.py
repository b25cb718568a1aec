r"""Exports a fine-tuned pose model (or its encoder) as a SavedModel for TF Serving.

    python -m tf_synchro.export --model_dir=/tmp/pose_ssl --export_dir=/tmp/serving/pose

writes ``/tmp/serving/pose/<version>/`` (the layout TF Serving watches; the version is the
next free integer unless ``--version`` is given) through ``keras.export.ExportArchive``
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
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional, Sequence

import keras
import tensorflow as tf

from tf_synchro import finetune
from tf_synchro.data import frames
from tf_synchro.models import pose
from tfrecords_tools import run_lock

WHAT = ("pose", "encoder")
SIGNATURE_JPEG = "serving_jpeg"
METADATA_FILE = "assets.extra/tf_synchro.json"


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
           what: str = "pose") -> str:
    """Exports the finished run in ``model_dir``; returns ``export_dir/<version>``.

    The SavedModel is written to a temporary, non-numeric sibling and renamed, so TF
    Serving (which loads integer-named directories only) never sees a partial version.

    Raises:
      finetune.UnfinishedModelDirError: ``model_dir`` holds no finished run.
      ExportError: bad ``what`` or ``version``, or the version exists already.
    """
    if what not in WHAT:
        raise ExportError(f"--what={what!r}: expected one of {WHAT}")
    model, config = finetune.load_finished(model_dir)
    version = next_version(export_dir) if version is None else int(version)
    if version < 1:
        raise ExportError(f"--version={version} must be a positive integer (TF Serving)")
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target):
        raise ExportError(f"{target} exists; TF Serving versions are immutable, pass another "
                          f"--version or omit it (next free: {next_version(export_dir)})")
    model_cfg = config["model"]
    if what == "encoder":
        model, output_name = pose.pose_encoder(model), "features"
    else:
        output_name = "joints3d"
    archive = build_archive(model, int(model_cfg["input_size"]),
                            float(model_cfg["preprocess"]["crop_scale"]),
                            model_cfg["preprocess"]["dct_method"], output_name)
    lock = run_lock.acquire(export_dir, "--export_dir")  # One writer; creates export_dir.
    tmp = os.path.join(export_dir, f".tmp-{os.getpid()}-{version}")  # run_lock's temp naming.
    try:
        run_lock.clean_stale_temps(export_dir)
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, os.path.dirname(METADATA_FILE)), exist_ok=True)
        with open(os.path.join(tmp, METADATA_FILE), "w") as f:
            json.dump({"what": what, "output": output_name, "model_dir": model_dir,
                       "model": model_cfg}, f, indent=1, sort_keys=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        lock.release()
    return target


# ----------------------------------------------------------------------------- binary

def _define_flags():
    from absl import flags
    flags.DEFINE_string("model_dir", None, "Finished fine-tuning run directory.")
    flags.DEFINE_string("export_dir", None, "Base directory; the model goes to <version>/.")
    flags.DEFINE_integer("version", None, "Version number (default: next free integer).")
    flags.DEFINE_enum("what", "pose", list(WHAT), "Export the pose model or the encoder.")
    flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    path = export(f.model_dir, f.export_dir, f.version, f.what)
    print(f"exported {f.what} model to {path} (signatures: serving_default, {SIGNATURE_JPEG})")


if __name__ == "__main__":
    from tfrecords_tools import cli
    _define_flags()
    cli.run(main)
