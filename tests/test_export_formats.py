"""ONNX and LiteRT exports: written next to the version, checked by their own runtimes."""
import json
import os

import numpy as np
import pytest

from tf_synchro import configs, serving

pytestmark = pytest.mark.large  # End to end: exports the tiny fine-tuned run to every format.


@pytest.fixture(scope="module")
def all_formats(finished_run, tmp_path_factory):
    model_dir, _ = finished_run
    export_dir = str(tmp_path_factory.mktemp("formats"))
    options = configs.FormatOptions(formats=("saved_model", "onnx", "tflite"),
                                   tflite_quantize=True, check_crops=8)
    return export_dir, serving.export(model_dir, export_dir, formats=options)


def test_every_format_is_written_beside_the_version_and_checked(all_formats, finished_run):
    export_dir, path = all_formats
    assert path == os.path.join(export_dir, "1")
    # TF Serving watches integer-named directories: the other formats are files beside it.
    assert sorted(os.listdir(export_dir)) == ["1", "1.int8.tflite", "1.onnx", "1.tflite"]
    meta = json.load(open(os.path.join(path, serving.METADATA_FILE)))
    formats = meta["formats"]
    assert sorted(formats) == ["onnx", "saved_model", "tflite", "tflite_int8"]
    assert formats["onnx"]["opset"] == 17 and formats["onnx"]["runtime"].startswith("onnxruntime")
    assert formats["tflite"]["runtime"].startswith("ai-edge-litert")
    for key in ("onnx", "tflite"):
        assert 0 <= formats[key]["max_abs_diff_mm"] <= 1.0, formats[key]
        assert formats[key]["file"] == os.path.basename(formats[key]["file"])
    assert formats["tflite_int8"]["bytes"] < formats["tflite"]["bytes"] / 2
    check = meta["format_check"]
    # Held-out crops of the run's dataset (label subject S1 excluded).
    assert check["num_crops"] == 8 and "S1" not in check["subjects"]
    assert check["data_dir"] == json.load(open(os.path.join(finished_run[0],
                                                            "config.json")))["data_dir"]


def test_each_runtime_reproduces_the_saved_model_on_other_crops(all_formats, finished_run):
    """Reload each file in its own runtime (onnxruntime; ai_edge_litert, not tf.lite) and
    compare with the SavedModel on crops of another size than the stored ones."""
    import tensorflow as tf
    export_dir, path = all_formats
    images, _ = serving.read_crops(json.load(open(os.path.join(
        finished_run[0], "config.json")))["data_dir"], 5)
    images = np.stack([np.pad(im, ((3, 3), (0, 0), (0, 0))) for im in images])  # 38 x 32
    reference = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(images))["joints3d"].numpy()
    assert np.abs(reference).max() > 10  # mm
    onnx = serving.run_onnx(os.path.join(export_dir, "1.onnx"), images)
    lite = serving.run_tflite(os.path.join(export_dir, "1.tflite"), images)
    int8 = serving.run_tflite(os.path.join(export_dir, "1.int8.tflite"), images)
    assert onnx.shape == lite.shape == (5, 17, 3)
    np.testing.assert_allclose(onnx, reference, atol=1.0)
    np.testing.assert_allclose(lite, reference, atol=1.0)
    # Quantised weights move the joints, but not to another pose.
    assert np.abs(int8 - reference).mean() < 10 and np.abs(int8 - reference).max() > 1e-3


def test_a_format_off_by_more_than_the_tolerance_fails_the_export(finished_run, tmp_path,
                                                                   monkeypatch):
    model_dir, _ = finished_run
    # How far the real int8 model lands from the SavedModel depends on the tiny run's
    # weights (within 1e-6 mm once in a full pytest process), so the gate is tested with a
    # known error: the int8 file answers as the float file (written just before it, within
    # 1e-3 mm of the SavedModel) moved by 2 mm on one joint.
    real_run_tflite = serving.run_tflite

    def off_by_2mm(path, images):
        if not path.endswith(".int8.tflite"):
            return real_run_tflite(path, images)
        joints = np.array(real_run_tflite(path.replace(".int8.tflite", ".tflite"), images))
        joints[:, 0, 0] += 2.0
        return joints

    monkeypatch.setattr(serving, "run_tflite", off_by_2mm)
    options = configs.FormatOptions(formats=("saved_model", "tflite"), tflite_quantize=True,
                                   check_crops=4, int8_max_diff_mm=1.0)
    with pytest.raises(serving.FormatCheckError,
                       match=r"tflite_int8: .* differs .* by up to 2(\.\d+)? mm .*\(allowed 1\.0 mm\)"):
        serving.export(model_dir, str(tmp_path / "out"), formats=options)
    # No version, no files, no temporaries (the export_dir it created is removed too).
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


def test_format_options_are_checked(finished_run, tmp_path):
    model_dir, _ = finished_run
    bad = [(dict(formats=("onnx",)), "includes saved_model"),
           (dict(formats=("saved_model", "pb")), "expected a list"),
           (dict(tflite_quantize=True), "needs tflite"),
           (dict(formats=("saved_model", "onnx"), onnx_opset=3), "--onnx_opset=3"),
           (dict(formats=("saved_model", "onnx"), onnx_opset=99), r"expected 7\.\.1\d"),
           (dict(formats=("saved_model", "onnx"), data_dir=str(tmp_path / "no")),
            "does not exist")]
    for kw, message in bad:
        with pytest.raises(Exception, match=message):
            serving.export(model_dir, str(tmp_path / "out"), formats=configs.FormatOptions(**kw))
    with pytest.raises(serving.ExportError, match="needs --what=pose"):
        serving.export(model_dir, str(tmp_path / "out"), what="encoder",
                      formats=configs.FormatOptions(formats=("saved_model", "onnx")))
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


def test_binary_flags_write_and_report_the_formats(finished_run, tmp_path):
    import subprocess
    import sys
    model_dir, _ = finished_run
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-m", "tf_synchro.export", f"--model_dir={model_dir}",
                          f"--export_dir={tmp_path / 'm'}", "--version=3",
                          "--formats=saved_model,onnx", "--onnx_opset=15", "--check_crops=4"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"onnx: {tmp_path / 'm' / '3.onnx'}, max difference" in out.stdout
    meta = json.load(open(tmp_path / "m" / "3" / serving.METADATA_FILE))
    assert meta["formats"]["onnx"]["opset"] == 15
    assert meta["format_check"]["num_crops"] == 4
    assert sorted(os.listdir(tmp_path / "m")) == ["3", "3.onnx"]
