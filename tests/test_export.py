"""SavedModel export for TF Serving: layout, signatures, and a fresh-process reload."""
import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from tf_synchro import run_dir
from tf_synchro.data import frames
from tf_synchro.deploy import artefacts, serving
from tf_synchro.models import pose

pytestmark = pytest.mark.large  # End to end: exports the tiny fine-tuned run.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _crops(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 crops with some structure (smooth blobs), so JPEG keeps them close."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    return np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small])


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _keras_reference(model, config, images=None, jpegs=None):
    """What the Keras model answers for raw crops, preprocessed as in evaluation."""
    size = config.input_size
    scale = config.preprocess.crop_scale
    dct = config.preprocess.dct_method
    if jpegs is not None:
        x = np.concatenate([frames.preprocess_images(frames.decode_jpeg(j, dct)[None], size,
                                                     scale).numpy() for j in jpegs])
    else:
        x = frames.preprocess_images(images, size, scale).numpy()
    return model(x, training=False).numpy()


def _saved_model_cli(path: str) -> str:
    cmd = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
           path, "--all"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_exported_pose_model_serves_the_same_joints_in_a_fresh_process(finished_run, tmp_path):
    model_dir, _ = finished_run
    export_dir = str(tmp_path / "serving")
    path = serving.export(model_dir, export_dir)
    assert path == os.path.join(export_dir, "1")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert json.load(open(os.path.join(path, artefacts.METADATA_FILE)))["what"] == "pose"

    model, config = run_dir.load_pose_run(model_dir)
    # Crops of another size than the model input (resized inside the graph) and JPEGs of
    # two different sizes in one request.
    images = _crops(3, 45, 40)
    jpegs = [_jpeg(_crops(1, 32, 32, seed=1)[0]), _jpeg(_crops(1, 64, 64, seed=2)[0])]
    ref_images = _keras_reference(model, config, images=images)
    ref_jpegs = _keras_reference(model, config, jpegs=jpegs)
    np.savez(tmp_path / "in.npz", images=images, jpegs=np.array(jpegs, dtype=object))

    code = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        d = np.load({str(tmp_path / 'in.npz')!r}, allow_pickle=True)
        m = tf.saved_model.load({path!r})
        a = m.signatures["serving_default"](images=tf.constant(d["images"]))["joints3d"]
        b = m.signatures["serving_jpeg"](image_bytes=tf.constant(list(d["jpegs"])))["joints3d"]
        errors = []
        try:  # A float image must be refused by the uint8 signature.
            m.signatures["serving_default"](images=tf.zeros([1, 8, 8, 3], tf.float32))
        except Exception as e:
            errors.append(type(e).__name__ + ": " + str(e).splitlines()[0])
        try:  # So must a 4-channel image.
            m.signatures["serving_default"](images=tf.zeros([1, 8, 8, 4], tf.uint8))
        except Exception as e:
            errors.append(type(e).__name__ + ": " + str(e)[:400])
        try:  # And bytes that are not a JPEG.
            m.signatures["serving_jpeg"](image_bytes=tf.constant([b"not a jpeg"]))
        except Exception as e:
            errors.append(type(e).__name__ + ": " + str(e)[:400])
        try:  # And an empty one, by the assertion in the graph.
            m.signatures["serving_default"](images=tf.zeros([1, 0, 8, 3], tf.uint8))
        except Exception as e:
            errors.append(type(e).__name__ + ": " + str(e)[:300])
        np.savez({str(tmp_path / 'out.npz')!r}, a=a.numpy(), b=b.numpy(),
                 errors=np.array(errors))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    assert served["a"].shape == (3, 17, 3) and served["b"].shape == (2, 17, 3)
    np.testing.assert_allclose(served["a"], ref_images, atol=1e-2)
    np.testing.assert_allclose(served["b"], ref_jpegs, atol=1e-2)
    assert np.abs(ref_images).max() > 10  # mm, not standardised units.
    errors = list(served["errors"])
    assert len(errors) == 4, errors
    assert "uint8" in errors[0], errors[0]
    assert "channels) is not 3" in errors[1], errors[1]
    assert "not a JPEG" in errors[2], errors[2]
    assert "height and width >= 1" in errors[3], errors[3]

    # saved_model_cli lists both signatures with named inputs and outputs.
    shown = _saved_model_cli(path)
    for text in ("signature_def['serving_default']", "signature_def['serving_jpeg']",
                 "inputs['images']", "inputs['image_bytes']", "outputs['joints3d']",
                 "dtype: DT_UINT8", "dtype: DT_STRING", "shape: (-1, 17, 3)"):
        assert text in shown, text

    # The next export becomes version 2; an existing version is never overwritten.
    with pytest.raises(serving.ExportError, match="exists"):
        serving.export(model_dir, export_dir, version=1)


def test_exported_encoder_gives_features(finished_run, tmp_path):
    import tensorflow as tf
    model_dir, _ = finished_run
    path = serving.export(model_dir, str(tmp_path / "enc"), version=7, what="encoder")
    assert path.endswith(os.path.join("enc", "7"))
    model, config = run_dir.load_pose_run(model_dir)
    encoder = pose.pose_encoder(model)
    images = _crops(2, 32, 32)
    x = frames.preprocess_images(images, config.input_size, config.preprocess.crop_scale)
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](images=tf.constant(images))["features"].numpy()
    np.testing.assert_allclose(got, encoder(x, training=False).numpy(), atol=1e-4)
    assert got.shape == (2, encoder.output_shape[-1])


def test_export_refuses_unfinished_runs_and_bad_arguments(finished_run, tmp_path):
    with pytest.raises(run_dir.UnfinishedModelDirError, match="does not exist"):
        serving.export(str(tmp_path / "none"), str(tmp_path / "out"))
    model_dir, _ = finished_run
    with pytest.raises(serving.ExportError, match="--what"):
        serving.export(model_dir, str(tmp_path / "out"), what="siamese")
    with pytest.raises(serving.ExportError, match="positive integer"):
        serving.export(model_dir, str(tmp_path / "out"), version=0)
    assert not os.path.exists(tmp_path / "out" / "0")
