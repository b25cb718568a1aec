"""Inspector: passes a good dataset, draws the contact sheet, and names corrupt shards/records."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tfrecords_tools import inspect as inspect_lib
from tfrecords_tools import dataset_io, schema, synthesize
from tfrecords_tools.runtime import fileio


def _copy(src, tmp_path):
    dst = str(tmp_path / "data")
    shutil.copytree(src, dst)
    return dst


def _rewrite_shard(data_dir, shard_file, mutate):
    """Rewrites one shard with ``mutate(index, clip)`` applied and makes the manifest and the
    sidecar agree with the new bytes, so only a content check can find the problem."""
    import tensorflow as tf
    path = os.path.join(data_dir, shard_file)
    clips = [schema.decode_clip(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    with tf.io.TFRecordWriter(path) as w:
        for i, clip in enumerate(clips):
            mutate(i, clip)
            w.write(schema.encode_clip(clip))
    digest = fileio.sha256_file(path)
    man_path = os.path.join(data_dir, dataset_io.MANIFEST)
    with open(man_path) as f:
        manifest = json.load(f)
    for s in manifest["shards"]:
        if s["file"] == shard_file:
            s["sha256"] = digest
    with open(man_path, "w") as f:
        json.dump(manifest, f)


def test_good_dataset_passes_and_contact_sheet_is_written(tiny_dataset, tmp_path):
    sheet = str(tmp_path / "sheet.png")
    logs = []
    report = inspect_lib.inspect_dataset(tiny_dataset, sheet, num_sequences=3, num_timesteps=2,
                                         log=logs.append)
    manifest = dataset_io.load_manifest(tiny_dataset)
    assert report.num_images == manifest["totals"]["num_images"] > 0
    assert report.num_records == manifest["totals"]["num_records"]
    table = "\n".join(logs)
    assert "S11" in table and "Walking" in table and "total" in table
    img = cv2.imread(sheet)
    assert img is not None
    # 3 records x 2 timesteps rows, 4 views per row (160 px cells + an 18 px label).
    assert img.shape == (3 * 2 * (160 + 18), 4 * 160, 3)


def test_skeleton_is_drawn_on_labelled_clips_only(tiny_dataset):
    import tensorflow as tf
    path = dataset_io.shard_paths(tiny_dataset)[0]
    clip = schema.decode_clip(next(iter(tf.data.TFRecordDataset(path))).numpy())
    with_labels = inspect_lib.contact_sheet_image([clip], 1)
    uv = inspect_lib.joints_in_crop(clip, 0, 0) * (160 / clip.image_size)
    clip.joints3d_world = None
    without = inspect_lib.contact_sheet_image([clip], 1)
    diff = np.abs(with_labels.astype(int) - without.astype(int)).max(-1) > 30
    ys, xs = np.nonzero(diff[18:, :160])  # first view, below the label strip
    assert len(xs) > 50
    # The drawn pixels are near the projected joints of that view.
    d = np.min(np.hypot(xs[:, None] - uv[None, :, 0], ys[:, None] - uv[None, :, 1]), axis=1)
    assert np.median(d) < 10


def test_truncated_shard_is_named(tiny_dataset, tmp_path):
    data = _copy(tiny_dataset, tmp_path)
    shard = dataset_io.load_manifest(data)["shards"][2]["file"]
    path = os.path.join(data, shard)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * 0.6))
    with pytest.raises(inspect_lib.InspectError) as e:
        inspect_lib.inspect_dataset(data, log=lambda s: None)
    msg = str(e.value)
    assert f"shard {shard}" in msg and "sha256" in msg
    assert f"shard {shard} record" in msg and "truncated" in msg


def test_corrupted_jpeg_is_named_with_its_record(tiny_dataset, tmp_path):
    data = _copy(tiny_dataset, tmp_path)
    shard = dataset_io.load_manifest(data)["shards"][1]["file"]

    def break_one(i, clip):
        if i == 1:
            row = list(clip.images[3])
            row[2] = row[2][: len(row[2]) // 2]  # a JPEG cut short
            clip.images[3] = row

    _rewrite_shard(data, shard, break_one)
    with pytest.raises(inspect_lib.InspectError, match=(
            rf"shard {shard} record 1: image t=3 view \S+: truncated JPEG")):
        inspect_lib.inspect_dataset(data, log=lambda s: None)


def test_garbage_jpeg_and_missing_shard_and_manifest(tiny_dataset, tmp_path):
    data = _copy(tiny_dataset, tmp_path)
    shards = dataset_io.load_manifest(data)["shards"]

    def garbage(i, clip):
        if i == 0:
            row = list(clip.images[0])
            row[0] = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"
            clip.images[0] = row

    _rewrite_shard(data, shards[0]["file"], garbage)
    os.remove(os.path.join(data, shards[-1]["file"]))
    with pytest.raises(inspect_lib.InspectError) as e:
        inspect_lib.inspect_dataset(data, log=lambda s: None)
    msg = str(e.value)
    assert f"shard {shards[0]['file']} record 0: image t=0" in msg and "does not decode" in msg
    assert f"shard {shards[-1]['file']}: listed in manifest.json but missing" in msg
    os.remove(os.path.join(data, dataset_io.MANIFEST))
    with pytest.raises(inspect_lib.InspectError, match="manifest.json not found"):
        inspect_lib.inspect_dataset(data, log=lambda s: None)


def test_count_mismatch_with_manifest_is_reported(tiny_dataset, tmp_path):
    data = _copy(tiny_dataset, tmp_path)
    man_path = os.path.join(data, dataset_io.MANIFEST)
    with open(man_path) as f:
        manifest = json.load(f)
    manifest["shards"][0]["num_images"] += 4
    with open(man_path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(inspect_lib.InspectError, match="images read, manifest says"):
        inspect_lib.inspect_dataset(data, log=lambda s: None)


@pytest.mark.large
def test_unlabelled_dataset_and_cli_exit_codes(tmp_path):
    data = str(tmp_path / "unlabelled")
    synthesize.generate(data, synthesize.SynthConfig(
        subjects=("S1",), actions=("Waving",), takes=1, num_frames=30, image_size=32,
        clip_length=16, labels=False), log=lambda s: None)
    sheet = str(tmp_path / "u.png")
    report = inspect_lib.inspect_dataset(data, sheet, log=lambda s: None)
    assert report.num_labelled_frames == 0 and os.path.exists(sheet)
    shard = os.path.join(data, "S1-Waving.tfrecord")
    with open(shard, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    bad = subprocess.run([sys.executable, "-m", "tfrecords_tools.inspect", data,
                          "--contact_sheet="], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("inspect: error:")]
    assert len(errors) == 1 and "shard S1-Waving.tfrecord" in errors[0], bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr
