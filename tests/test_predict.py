"""tf_synchro.predict on rendered footage: same joints as evaluate, boxes, bad inputs."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests import h36m_fixtures as hf
from tests import testutil as tf_fixtures
from tf_synchro import configs, run_dir
from tf_synchro.data import augment, frames
from tf_synchro.deploy import artefacts, inference, overlay, serving
from tf_synchro.tasks import pose3d
from tfrecords_tools import crops, h36m, skeleton

pytestmark = pytest.mark.large  # End to end: predicts with the tiny fine-tuned run.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERA = "55011271"
VIDEO = 96          # rendered video side (pixels)
NUM_FRAMES = 10
CROP = tf_fixtures.POSE_SIZE  # stored crop side of the tiny model's data (32)


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """A Human3.6M-style take of S9 (one camera, known poses, textured static background),
    and its conversion by the Human3.6M converter into a labelled dataset."""
    root = str(tmp_path_factory.mktemp("h36m_predict"))
    person = hf.fixture_subject(0)
    joints = hf.make_motion(person, 7, NUM_FRAMES, "Walking", speedup=6)
    cam = hf.fixture_camera("S9", CAMERA, VIDEO, VIDEO)
    background = hf.background_image(3, VIDEO, VIDEO)
    drawn = np.stack([hf.render_frame(j, cam, person, background) for j in joints])
    os.makedirs(os.path.join(root, "S9", "Videos"))
    os.makedirs(os.path.join(root, "S9", "MyPoseFeatures", "D3_Positions"))
    path = os.path.join(root, "S9", "Videos", f"Walking 1.{CAMERA}.mp4")
    hf.write_video(path, drawn)
    hf.write_pose_cdf(os.path.join(root, "S9", "MyPoseFeatures", "D3_Positions",
                                   "Walking 1.cdf"), joints)
    data = str(tmp_path_factory.mktemp("h36m_predict_data"))
    h36m.convert(h36m.H36MConfig(root, subjects=("S9",), actions=("Walking",),
                                 cameras=(CAMERA,), min_views=1, image_size=CROP,
                                 motion_threshold_mm=0), data, log_fn=lambda s: None)
    clips = hf.read_clips(data)
    assert len(clips) == 1 and len(clips[0].frame_index) == NUM_FRAMES
    cam_joints = np.stack([skeleton.root_relative(j @ cam.rotation.T + cam.translation)
                           for j in joints])
    return {"video": path, "data": data, "clip": clips[0], "joints_cam": cam_joints,
            "camera": cam, "world": joints, "drawn": drawn}


@pytest.fixture(scope="module")
def crossing():
    """The person walking across the static scene (a median background needs each pixel
    uncovered in most frames), then two frames of the empty scene."""
    person = hf.fixture_subject(1)
    cam = hf.fixture_camera("S9", CAMERA, VIDEO, VIDEO)
    walk = hf.make_motion(person, 8, 12, "Walking")
    # Along the camera's x axis (row 0 of world->camera): from left to right of the view.
    world = walk + np.linspace(-1500, 1500, len(walk))[:, None, None] * cam.rotation[0]
    background = hf.background_image(4, VIDEO, VIDEO)
    drawn = [hf.render_frame(j, cam, person, background) for j in world]
    return {"drawn": np.stack(drawn + [background, background]), "world": world,
            "camera": cam}


@pytest.fixture(scope="module")
def model_dir(finished_run):
    return finished_run[0]


def _config(tmp_path, model, **kw):
    base = dict(model=model, output=str(tmp_path / "poses.json"))
    base.update(kw)
    return configs.make(configs.PredictConfig, base)


def _write_boxes_json(path, boxes):
    with open(path, "w") as f:
        json.dump(np.asarray(boxes).tolist(), f)
    return str(path)


def test_video_joints_equal_evaluate_and_give_its_mpjpe(footage, model_dir, tmp_path):
    """Same crops (the converter's boxes), same model: predict == evaluate, frame by frame."""
    clip = footage["clip"]
    boxes = _write_boxes_json(tmp_path / "boxes.json", clip.crop_boxes[:, 0])
    result = inference.run(_config(tmp_path, model_dir, video=footage["video"], boxes=boxes,
                                 crop_size=CROP, batch_size=4), progress=False)
    assert result["joints3d"].shape == (NUM_FRAMES, 17, 3)
    assert result["box_source"] == "file" and result["person_found"].all()

    # evaluate's own pipeline and predictions on the converted dataset, every frame.
    model, config = run_dir.load_pose_run(model_dir)
    aug = augment.AugmentConfig(output_size=config.input_size,
                                eval_scale=config.preprocess.crop_scale,
                                dct_method=config.preprocess.dct_method)
    ds = frames.eval_dataset(frames.labelled_files(footage["data"], ["S9"]),
                             frames.FrameConfig(subjects=("S9",), frame_step=1, augment=aug), 4)
    evaluated = pose3d.predict(model, ds)
    order = np.argsort(evaluated["frame_index"])
    np.testing.assert_array_equal(evaluated["frame_index"][order], np.arange(NUM_FRAMES))
    np.testing.assert_allclose(result["joints3d"], evaluated["pred"][order], atol=1e-3)
    np.testing.assert_allclose(evaluated["gt"][order], footage["joints_cam"], atol=0.5)

    # MPJPE from predict's joints and the known poses is evaluate's MPJPE.
    report = tf_fixtures.evaluate_pose(model_dir, footage["data"], subjects=("S9",),
                                       frame_step=1)
    mpjpe = np.linalg.norm(result["joints3d"] - footage["joints_cam"], axis=-1).mean()
    assert mpjpe == pytest.approx(report["mean"]["mpjpe"], abs=0.05)

    doc = json.load(open(tmp_path / "poses.json"))
    assert doc["joint_names"] == list(skeleton.JOINT_NAMES) and doc["units"] == "mm"
    assert len(doc["frames"]) == NUM_FRAMES
    np.testing.assert_allclose(doc["frames"][3]["joints3d"], result["joints3d"][3], atol=0.01)
    np.testing.assert_allclose(doc["frames"][3]["box"], clip.crop_boxes[3, 0], atol=0.01)


def test_exported_model_and_run_dir_agree(footage, model_dir, tmp_path):
    path = serving.export(model_dir, str(tmp_path / "serving"))
    assert json.load(open(os.path.join(path, artefacts.METADATA_FILE)))["crop_size"] == CROP
    boxes = _write_boxes_json(tmp_path / "b.json", footage["clip"].crop_boxes[:, 0])
    a = inference.run(_config(tmp_path, path, video=footage["video"], boxes=boxes,
                            output=str(tmp_path / "a.npz")), progress=False)
    b = inference.run(_config(tmp_path, model_dir, video=footage["video"], boxes=boxes),
                    progress=False)
    assert a["crop_size"] == CROP  # Read from the export's metadata.
    np.testing.assert_allclose(a["joints3d"], b["joints3d"], atol=1e-2)
    saved = np.load(tmp_path / "a.npz")
    np.testing.assert_allclose(saved["joints3d"], a["joints3d"])
    assert list(saved["joint_names"]) == list(skeleton.JOINT_NAMES)
    encoder = serving.export(model_dir, str(tmp_path / "encoder"), what="encoder")
    with pytest.raises(inference.PredictError, match="not the pose model"):
        inference.run(_config(tmp_path, encoder, video=footage["video"]), progress=False)


def test_smoothing_intrinsics_and_overlay_on_the_person(footage, model_dir, tmp_path):
    """--smooth writes the One-Euro filtered joints (and the raw ones); --intrinsics places
    the drawn skeleton through the camera; the overlay's skeleton lies inside the box."""
    boxes = _write_boxes_json(tmp_path / "boxes.json", footage["clip"].crop_boxes[:, 0])
    plain = inference.run(_config(tmp_path, model_dir, video=footage["video"], boxes=boxes,
                                  crop_size=CROP), progress=False)
    cam = footage["camera"]
    k = f"{cam.fx},{cam.fy},{cam.cx},{cam.cy}"
    got = inference.run(_config(tmp_path, model_dir, video=footage["video"], boxes=boxes,
                                crop_size=CROP, smooth=True, intrinsics=k,
                                overlay=str(tmp_path / "ov"), output=str(tmp_path / "p.npz")),
                        progress=False)
    np.testing.assert_allclose(got["joints3d_raw"], plain["joints3d"], atol=1e-4)
    cfg = configs.PredictConfig
    expected = overlay.smooth(plain["joints3d"], got["fps"], cfg.smooth_min_cutoff,
                              cfg.smooth_beta, cfg.smooth_d_cutoff)
    np.testing.assert_allclose(got["joints3d"], expected, atol=1e-2)
    assert got["smoothing"]["filter"] == "one_euro" and got["fps"] == pytest.approx(hf.FPS)
    saved = np.load(tmp_path / "p.npz")
    np.testing.assert_allclose(saved["joints3d"], got["joints3d"])
    assert json.loads(str(saved["info"]))["intrinsics"] == pytest.approx(
        [cam.fx, cam.fy, cam.cx, cam.cy])
    names = sorted(os.listdir(tmp_path / "ov"))
    assert len(names) == NUM_FRAMES
    for i in (0, NUM_FRAMES - 1):
        image = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / names[i])), cv2.COLOR_BGR2RGB)
        # The skeleton's exact line colours (left blue, right red, centre white).
        lines = ((image == (0, 0, 255)) | (image == (255, 0, 0)) | (image == (255, 255, 255))
                 ).all(-1)
        ys, xs = np.nonzero(lines)
        box = got["boxes"][i]
        assert len(xs) > 20
        assert box[0] < xs.mean() < box[2] and box[1] < ys.mean() < box[3], (i, box)
    for kw, message in ((dict(images=str(tmp_path / "ov"), smooth=True), "--smooth needs"),
                        (dict(video=footage["video"], intrinsics="1,2"), "--intrinsics=1,2")):
        with pytest.raises(inference.UsageError, match=message):
            inference.run(_config(tmp_path, model_dir, **kw), progress=False)


def _iou(a, b):
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(hi - lo, 0, None))
    area = lambda x: np.prod(x[2:] - x[:2])
    return inter / (area(a) + area(b) - inter)


def _assert_boxes_follow(result, crossing, count):
    for k in range(count):
        truth = crops.square_box(crossing["camera"].project(crossing["world"][k]), margin=0.2)
        assert _iou(result["boxes"][k], truth) > 0.5, (k, result["boxes"][k], truth)


def test_background_boxes_follow_the_person_and_overlay(crossing, model_dir, tmp_path):
    """No --boxes: the rig converter's median background finds the person in each frame;
    frames showing only the background are flagged."""
    path = str(tmp_path / "crossing.mp4")
    hf.write_video(path, crossing["drawn"])
    overlay = str(tmp_path / "overlay.mp4")
    result = inference.run(_config(tmp_path, model_dir, video=path, overlay=overlay,
                                 box_smoothing=1, batch_size=4), progress=False)
    assert result["box_source"] == "background"
    n = len(crossing["world"])
    np.testing.assert_array_equal(result["person_found"], [True] * n + [False] * 2)
    _assert_boxes_follow(result, crossing, n)
    # Frames without a person keep the nearest found box.
    np.testing.assert_allclose(result["boxes"][-1], result["boxes"][n - 1])
    cap = cv2.VideoCapture(overlay)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n + 2
    cap.release()
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_image_folder_with_and_without_boxes(crossing, model_dir, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    n = len(crossing["world"])
    for k, frame in enumerate(crossing["drawn"][:n]):
        cv2.imwrite(str(folder / f"img_{k:02d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    # Given boxes (CSV with a header; a non-square box is squared about its centre).
    csv_path = tmp_path / "boxes.csv"
    rows = [[10 + k, 20, 50 + k, 70] for k in range(n)]
    csv_path.write_text("x0,y0,x1,y1\n" + "\n".join(",".join(map(str, r)) for r in rows))
    given = inference.run(_config(tmp_path, model_dir, images=str(folder), boxes=str(csv_path),
                                overlay=str(tmp_path / "ov")), progress=False)
    assert given["names"] == [f"img_{k:02d}.png" for k in range(n)]
    np.testing.assert_allclose(given["boxes"][3], [3 + 10 - 5, 20, 3 + 50 + 5, 70])
    assert sorted(os.listdir(tmp_path / "ov")) == [f"{k:06d}_img_{k:02d}.png" for k in range(n)]
    # The crop of a given box is the converters' crop: JPEG of crop_image, decoded.
    crop = inference.make_crop(crossing["drawn"][3], given["boxes"][3], CROP, 90, "INTEGER_FAST")
    model, config = run_dir.load_pose_run(model_dir)
    x = frames.preprocess_images(crop[None], config.input_size, config.preprocess.crop_scale)
    np.testing.assert_allclose(given["joints3d"][3], model(x).numpy()[0], atol=1e-2)
    # Background boxes on the folder, through a glob pattern.
    found = inference.run(_config(tmp_path, model_dir, images=str(folder / "img_*.png")),
                        progress=False)
    assert found["box_source"] == "background" and found["person_found"].all()
    _assert_boxes_follow(found, crossing, n)
    # One image: no background to subtract, so the whole frame with a warning.
    single = inference.run(_config(tmp_path, model_dir, images=str(folder / "img_00.png")),
                         progress=False)
    assert single["box_source"] == "whole_frame" and not single["person_found"].any()
    np.testing.assert_allclose(single["boxes"][0], [0, 0, VIDEO - 1, VIDEO - 1])


def test_bad_inputs_are_named(footage, model_dir, tmp_path):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(hf.GARBAGE_VIDEO)
    (tmp_path / "empty").mkdir()
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[[1, 2, 3]")
    short = _write_boxes_json(tmp_path / "short.json", [[0, 0, 10, 10]] * 3)
    flipped = _write_boxes_json(tmp_path / "flip.json", [[10, 0, 0, 10]] * NUM_FRAMES)
    words = tmp_path / "words.csv"
    words.write_text("x0,y0,x1,y1\na,b,c,d\n")
    video = footage["video"]
    cases = [
        (dict(video=str(garbage)), inference.PredictError, "cannot be opened"),
        (dict(video=str(tmp_path / "missing.mp4")), inference.PredictError, "does not exist"),
        (dict(images=str(tmp_path / "empty")), inference.PredictError, "holds no image file"),
        (dict(images=str(tmp_path / "*.png")), inference.PredictError, "holds no image file"),
        (dict(video=video, boxes=str(bad_json)), inference.PredictError, "not valid JSON"),
        (dict(video=video, boxes=short), inference.PredictError, "3 boxes for 10 frames"),
        (dict(video=video, boxes=flipped), inference.PredictError, "x1 > x0"),
        (dict(video=video, boxes=str(words)), inference.PredictError, "four numbers"),
        (dict(video=video, boxes=str(tmp_path / "none.csv")), inference.PredictError,
         "cannot be read"),
        (dict(video=video, model=str(tmp_path)), inference.PredictError,
         "expected an export version directory"),
        (dict(video=video, images=str(tmp_path)), inference.UsageError, "exactly one of"),
        (dict(), inference.UsageError, "exactly one of"),
        (dict(video=video, output=str(tmp_path / "p.txt")), inference.UsageError, ".json or .npz"),
        (dict(video=video, batch_size=0), inference.UsageError, "--batch_size=0"),
    ]
    for kw, error, message in cases:
        with pytest.raises(error, match=message):
            inference.run(_config(tmp_path, kw.pop("model", model_dir), **kw), progress=False)
    assert not os.path.exists(tmp_path / "poses.json")


def _run_binary(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "tf_synchro.predict", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_binary_progress_exit_codes_and_one_line_errors(footage, model_dir, tmp_path):
    out = tmp_path / "p.json"
    ok = _run_binary(f"--model={model_dir}", f"--video={footage['video']}", f"--output={out}",
                     "--batch_size=3")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"wrote {NUM_FRAMES} frames" in ok.stdout
    assert "frame 10/10" in ok.stderr  # Progress: more frames than one batch.
    assert len(json.load(open(out))["frames"]) == NUM_FRAMES

    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(hf.GARBAGE_VIDEO)
    for args, code, message in [
            ((f"--model={model_dir}", f"--video={garbage}"), 1, "cannot be opened"),
            ((f"--model={model_dir}", f"--video={garbage}", f"--images={tmp_path}"), 2,
             "exactly one of --video and --images"),
            ((f"--video={garbage}",), 2, "--model")]:
        res = _run_binary(*args, f"--output={out}")
        lines = [l for l in res.stderr.splitlines() if l.startswith("predict: error")]
        assert res.returncode == code, (args, res.returncode, res.stderr[-1500:])
        assert len(lines) == 1 and message in lines[0], (args, res.stderr[-1500:])
        assert "Traceback" not in res.stderr, args
