"""Labelled-frame pipeline, pose model, fine-tuning and evaluation.

The dataset here is written by :func:`tests.testutil.write_pose_dataset`: stick figures
whose limbs are colour-coded (left blue, right red), projected through the Human3.6M rig, so
a tiny model can learn something in a few dozen steps and labels can be checked pixel by
pixel.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import testutil
from tf_synchro import configs, run_dir
from tf_synchro.data import augment, frames, records
from tf_synchro.models import pose, resnet
from tf_synchro.tasks import pose3d
from tfrecords_tools import dataset_io, schema, skeleton

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = testutil.POSE_SIZE


def _aug(**kw):
    return augment.AugmentConfig(output_size=SIZE, **kw)


def _numpy_targets(data_dir, subject):
    """{(sequence, camera, frame): root-relative camera-frame joints}, numpy, from records."""
    out = {}
    for f in dataset_io.shard_paths(data_dir, subjects=[subject]):
        for rec in tf.data.TFRecordDataset(f).as_numpy_iterator():
            clip = schema.decode_clip(rec)
            if clip.subject != subject or clip.joints3d_world is None:
                continue
            for v, cam in enumerate(clip.camera_ids):
                cam_j = schema.camera_frame_joints(clip.joints3d_world, clip.rotation[v],
                                                   clip.translation[v])
                for t, fi in enumerate(clip.frame_index):
                    out[(clip.sequence_id, cam, int(fi))] = skeleton.root_relative(cam_j[t])
    return out


# ----------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("in_dataset", [False, True])
def test_flip_mirrors_image_and_swaps_joints(in_dataset):
    # A camera whose principal point is the image centre: mirroring the image is then
    # exactly x -> -x. A dot is drawn where the *right* wrist projects; after the flip
    # it must lie where the flipped label's *left* wrist projects.
    f, c = 40.0, (SIZE - 1) / 2
    joints = np.random.default_rng(0).normal(0, 300, (17, 3)) + [0, 0, 3000]
    joints[13] = [-400, 100, 3000]  # LWrist left of centre ...
    joints[16] = [250, -150, 3000]  # ... RWrist right of centre: they do not mirror.
    joints = joints.astype(np.float32)
    project = lambda p: (f * p[0] / p[2] + c, f * p[1] / p[2] + c)
    u, v = project(joints[16])
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    image[int(round(v)), int(round(u))] = 255.0

    if in_dataset:
        ds = tf.data.Dataset.from_tensors((image, joints)).map(
            lambda i, j: frames.flip_pose(i, j, tf.constant(True)))
        out_image, out_joints = next(iter(ds))
    else:
        out_image, out_joints = frames.flip_pose(tf.constant(image), tf.constant(joints),
                                                 tf.constant(True))
    out_image, out_joints = out_image.numpy(), out_joints.numpy()
    np.testing.assert_allclose(out_joints, skeleton.flip_joints_camera(joints), atol=1e-4)
    dot = np.unravel_index(np.argmax(out_image[..., 0]), out_image.shape[:2])
    u2, v2 = project(out_joints[13])  # The flipped LWrist label ...
    assert abs(dot[1] - u2) <= 0.5 and abs(dot[0] - v2) <= 0.5  # ... is where the dot went.
    # No flip: unchanged.
    same_i, same_j = frames.flip_pose(tf.constant(image), tf.constant(joints), tf.constant(False))
    np.testing.assert_array_equal(same_i.numpy(), image)
    np.testing.assert_array_equal(same_j.numpy(), joints)


def test_train_dataset_labels_are_camera_frame_root_relative(pose_data):
    cfg = frames.FrameConfig(subjects=("S1",), flip_prob=0.0, seed=1, deterministic=True,
                             augment=_aug(min_scale=1.0, brightness=0, contrast=0,
                                          saturation=0))
    files = frames.labelled_files(pose_data, ["S1"])
    images, joints = next(iter(frames.train_dataset(files, cfg, batch_size=8)))
    assert images.shape == (8, SIZE, SIZE, 3) and images.dtype == tf.float32
    assert joints.shape == (8, 17, 3)
    expected = list(_numpy_targets(pose_data, "S1").values())
    for j in joints.numpy():
        np.testing.assert_array_equal(j[0], 0.0)
        assert min(np.abs(j - e).max() for e in expected) < 1e-2  # Some S1 frame's label.


def test_train_dataset_is_seeded_and_flips_half(pose_data):
    cfg = frames.FrameConfig(subjects=("S1",), seed=3, deterministic=True, augment=_aug())
    files = frames.labelled_files(pose_data, ["S1"])
    take = lambda: [j.numpy() for _, j in frames.train_dataset(files, cfg, 16).take(4)]
    a, b = take(), take()
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    # Flipped labels are the mirrors of stored ones; about half the frames are flipped.
    stored = list(_numpy_targets(pose_data, "S1").values())
    flipped = [min(np.abs(j - e).max() for e in stored) > 1e-2 for j in np.concatenate(a)]
    mirrored = [min(np.abs(skeleton.flip_joints_camera(j) - e).max() for e in stored) < 1e-2
                for j in np.concatenate(a)]
    assert 0.2 < np.mean(flipped) < 0.8
    assert np.all(np.array(flipped) <= np.array(mirrored))


def test_eval_dataset_frame_step_cameras_and_metadata(pose_data):
    cfg = frames.FrameConfig(subjects=("S9",), frame_step=4, augment=_aug())
    files = frames.labelled_files(pose_data, ["S9"])
    batches = list(frames.eval_dataset(files, cfg, batch_size=10))
    meta = {k: np.concatenate([b[2][k].numpy() for b in batches]) for k in batches[0][2]}
    joints = np.concatenate([b[1].numpy() for b in batches])
    # 2 actions x 16 frames / 4 x 4 cameras.
    assert len(joints) == 2 * 4 * 4
    assert set(meta["frame_index"] % 4) == {0}
    assert set(meta["subject"]) == {b"S9"} and set(meta["action"]) == {b"Walking", b"Posing"}
    assert len(set(meta["camera"])) == 4
    ref = _numpy_targets(pose_data, "S9")
    for seq, cam, fi, j in zip(meta["sequence_id"], meta["camera"], meta["frame_index"], joints):
        np.testing.assert_allclose(j, ref[(seq.decode(), cam.decode(), int(fi))], atol=1e-2)
    again = np.concatenate([b[1].numpy() for b in frames.eval_dataset(files, cfg, 7)])
    np.testing.assert_array_equal(again, joints)  # Deterministic, batch-size independent.


def test_label_fraction_is_a_fixed_subset_of_timesteps(pose_data):
    files = frames.labelled_files(pose_data, ["S1"])
    cfg = frames.FrameConfig(subjects=("S1",), label_fraction=0.3, augment=_aug())
    clips = records.clip_dataset(files, shuffle=False, repeat=False, deterministic=True)
    kept = [frames._clip_frames(c, cfg, training=True) for c in clips]
    n_kept = sum(len(k["frame_index"]) for k in kept)
    n_all = 4 * testutil.POSE_T_PER_CLIP * 4  # 4 clips x 16 timesteps x 4 views
    assert 0.1 * n_all < n_kept < 0.5 * n_all
    for k in kept:  # All four views of a kept timestep are kept.
        assert set(np.unique(k["frame_index"].numpy(), return_counts=True)[1]) <= {4}
    again = [frames._clip_frames(c, cfg, training=True)["frame_index"].numpy() for c in clips]
    for a, k in zip(again, kept):
        np.testing.assert_array_equal(a, k["frame_index"].numpy())


def test_joint_statistics_are_flip_symmetric(pose_data):
    files = frames.labelled_files(pose_data, ["S1"])
    mean, std = frames.joint_statistics(files, frames.FrameConfig(subjects=("S1",),
                                                                  augment=_aug()))
    np.testing.assert_allclose(mean, skeleton.flip_joints_camera(mean), atol=1e-3)
    np.testing.assert_allclose(std, std[list(skeleton.FLIP_PERMUTATION)], rtol=1e-4)
    assert np.all(mean[0] == 0) and np.all(std[0] == 1) and np.all(std[1:] > 1.0)


def test_unlabelled_or_missing_subjects_are_refused(pose_data):
    with pytest.raises(dataset_io.DatasetError, match=r"\['U1'\] have no 3D labels"):
        frames.labelled_files(pose_data, ["S9", "U1"])
    with pytest.raises(dataset_io.DatasetError, match=r"no frames of subjects \['S11'\]"):
        frames.labelled_files(pose_data, ["S11"])


# ----------------------------------------------------------------------------- model


def _tiny_model(freeze: int = 0, seed: int = 0):
    keras.utils.set_random_seed(seed)
    encoder = resnet.build_encoder("resnet18", 0.125, SIZE)
    frozen = resnet.freeze_blocks(encoder, freeze)
    mean = np.zeros((17, 3), np.float32)
    std = np.full((17, 3), 100.0, np.float32)
    return pose.build_pose_model(encoder, mean, std, head_units=(16,)), frozen, std


def test_pose_model_outputs_mm_with_zero_root_and_round_trips(tmp_path):
    model, _, _ = _tiny_model()
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    y = model(x).numpy()
    assert y.shape == (2, 17, 3)
    np.testing.assert_array_equal(y[:, 0], 0.0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x).numpy(), y, atol=1e-4)


def test_freezing_freezes_exactly_stem_and_first_three_stages():
    model, frozen, std = _tiny_model(freeze=3)
    encoder = pose.pose_encoder(model)
    assert frozen and all(n.startswith(("stem_", "stage1_", "stage2_", "stage3_"))
                          for n in frozen)
    weighted = {l.name for l in encoder.layers if l.weights}
    expected_frozen = {n for n in weighted
                       if n.startswith(("stem_", "stage1_", "stage2_", "stage3_"))}
    assert expected_frozen <= set(frozen)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2),
                  loss=pose.StandardizedPoseLoss(std))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    y = rng.normal(0, 100, (4, 17, 3)).astype(np.float32)
    before = {l.name: [w.numpy().copy() for w in l.weights] for l in encoder.layers if l.weights}
    head_before = model.get_layer("pose_head_out").kernel.numpy().copy()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for layer in encoder.layers:
        if not layer.weights:
            continue
        # Every weight, incl. BatchNorm moving statistics: frozen BN runs in inference mode.
        same = all(np.array_equal(a, w.numpy()) for a, w in zip(before[layer.name],
                                                                   layer.weights))
        assert same == (layer.name in expected_frozen), layer.name
    assert not np.array_equal(head_before, model.get_layer("pose_head_out").kernel.numpy())


def test_standardized_loss_is_mse_of_standardized_coordinates():
    std = np.random.default_rng(1).uniform(50, 200, (17, 3)).astype(np.float32)
    loss = pose.StandardizedPoseLoss(std)
    gt = np.random.default_rng(2).normal(0, 300, (3, 17, 3)).astype(np.float32)
    pred = gt + np.random.default_rng(3).normal(0, 50, gt.shape).astype(np.float32)
    gt, pred = skeleton.root_relative(gt), skeleton.root_relative(pred)
    expected = np.mean(((pred - gt)[:, 1:] / std[1:]) ** 2)
    np.testing.assert_allclose(float(loss(gt, pred)), expected, rtol=1e-5)
    assert pose.StandardizedPoseLoss.from_config(loss.get_config()).std == loss.std


# ----------------------------------------------------------------------------- fine-tuning


@pytest.mark.large
def test_tiny_finetune_lowers_the_error_and_evaluates(pose_data, finished_run, tmp_path):
    model_dir, summary = finished_run
    assert summary["initial_step"] == 0 and summary["final_step"] == 60
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    assert config["finished"]["step"] == 60
    assert os.listdir(os.path.join(model_dir, run_dir.TENSORBOARD_DIR, "train"))
    # The same initial weights (same seed, same statistics), untrained:
    keras.utils.set_random_seed(0)
    pose_cfg = config["model"]
    untrained = pose.build_pose_model(resnet.build_encoder("resnet18", 0.125, SIZE),
                                      pose_cfg["target_mean"], pose_cfg["target_std"], (32,))
    kw = dict(subjects=("S9",), frame_step=4)
    before = pose3d.evaluate(run_dir.LoadedModel(untrained, run_dir.read_record(model_dir),
                                                 model_dir), pose_data,
                             configs.PoseEvalConfig(**kw))
    out_json, out_png = str(tmp_path / "eval.json"), str(tmp_path / "eval.png")
    after = testutil.evaluate_pose(model_dir, pose_data, output_json=out_json,
                                   output_png=out_png, num_examples=2, **kw)
    assert after["mean"]["mpjpe"] < 0.8 * before["mean"]["mpjpe"], (before["mean"],
                                                                     after["mean"])
    with open(out_json) as f:
        report = json.load(f)
    assert report["num_frames"] == 32
    assert set(report["per_action"]) == {"Walking", "Posing"}
    assert len(report["per_camera"]) == 4 and len(report["per_joint"]) == 17
    assert report["per_joint"]["Hip"]["mpjpe"] == 0.0
    for name in ("mpjpe", "n_mpjpe", "pa_mpjpe"):
        assert report["mean"][name] > 0
    assert report["mean"]["pa_mpjpe"] <= report["mean"]["mpjpe"]
    assert os.path.getsize(out_png) > 1000
    # Re-running the finished command resumes at the end: nothing is retrained.
    again = pose3d.train(testutil.finetune_config(pose_data, model_dir), verbose=False)
    assert again.initial_step == 60


@pytest.mark.large
def test_init_from_pretrained_keeps_frozen_weights(pose_data, tmp_path):
    keras.utils.set_random_seed(7)
    encoder = resnet.build_encoder("resnet18", 0.125, SIZE)
    pre = tmp_path / "pre"
    pre.mkdir()
    encoder.save(str(pre / "encoder.keras"))
    (pre / "config.json").write_text(json.dumps(
        {"model": {"arch": "resnet18", "width": 0.125, "input_size": SIZE}}))
    model_dir = str(tmp_path / "ft")
    pose3d.train(testutil.finetune_config(pose_data, model_dir, init_from=str(pre),
                                          freeze_blocks=3, train_steps=4,
                                          steps_per_checkpoint=4), verbose=False)
    tuned = pose.pose_encoder(run_dir.load_pose_run(model_dir)[0])
    for name in ("stem_conv", "stage3_block2_conv2", "stage4_block2_conv2"):
        same = np.array_equal(tuned.get_layer(name).kernel.numpy(),
                              encoder.get_layer(name).kernel.numpy())
        assert same == (not name.startswith("stage4")), name


def test_init_from_must_be_a_compatible_encoder(pose_data, tmp_path):
    run = lambda init, **kw: pose3d.train(
        testutil.finetune_config(pose_data, str(tmp_path / "m"), init_from=init,
                                 train_steps=1, steps_per_checkpoint=1, **kw), verbose=False)
    with pytest.raises(run_dir.IncompatibleEncoderError, match="no such directory"):
        run(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(run_dir.IncompatibleEncoderError, match="encoder.keras not found"):
        run(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(str(bad / "encoder.keras"))
    with pytest.raises(run_dir.IncompatibleEncoderError, match="expected a tf_synchro ResNetEncoder"):
        run(str(bad))
    other = tmp_path / "other"
    other.mkdir()
    resnet.build_encoder("resnet18", 0.25, SIZE).save(str(other / "encoder.keras"))
    with pytest.raises(run_dir.IncompatibleEncoderError, match=r"'width': \(0.25, 0.125\)"):
        run(str(other))


@pytest.mark.large
def test_evaluate_refuses_unfinished_runs_and_unlabelled_subjects(pose_data, finished_run,
                                                                   tmp_path):
    with pytest.raises(run_dir.UnfinishedModelDirError, match="does not exist"):
        testutil.evaluate_pose(str(tmp_path / "none"), pose_data)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    model_dir, _ = finished_run
    cfg = json.loads(open(os.path.join(model_dir, "config.json")).read())
    cfg.pop("finished")
    (unfinished / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(run_dir.UnfinishedModelDirError, match="no finished fine-tuning run"):
        testutil.evaluate_pose(str(unfinished), pose_data)
    with pytest.raises(dataset_io.DatasetError, match="have no 3D labels"):
        testutil.evaluate_pose(model_dir, pose_data, subjects=("U1",))


@pytest.mark.large
def test_finetune_under_mirrored_strategy_with_two_logical_cpus(pose_data, tmp_path):
    # STYLE.md: one smoke run under MirroredStrategy with two logical CPU devices. Logical
    # devices must be configured before TensorFlow starts, hence a fresh process.
    code = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tf_synchro import configs, train_lib
        from tf_synchro.tasks import pose3d
        strategy = train_lib.make_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        kw = dict(data_dir={pose_data!r}, model_dir={str(tmp_path / 'm')!r}, width=0.125,
                  input_size=32, pose_head_units=(8,), train_steps=2, steps_per_checkpoint=2)
        try:
            pose3d.train(configs.make(configs.FinetuneConfig, batch_size=7, **kw), strategy,
                         verbose=False)
        except ValueError as e:
            print("refused:", e)
        s = pose3d.train(configs.make(configs.FinetuneConfig, batch_size=8, **kw), strategy,
                         verbose=False)
        print("final_step", s.final_step)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "refused: --batch_size=7 must be a positive multiple" in out.stdout, out.stdout
    assert "final_step 2" in out.stdout
    assert os.path.exists(tmp_path / "m" / run_dir.POSE_MODEL_FILE)


def _marked(pose_data: str, tmp_path, key: str) -> str:
    """A copy of ``pose_data`` whose manifest lists Posing under settings ``key``."""
    marked = str(tmp_path / "marked")
    shutil.copytree(pose_data, marked)
    path = os.path.join(marked, dataset_io.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest["settings"][key] = ["Posing"]
    with open(path, "w") as f:
        json.dump(manifest, f)
    return marked


@pytest.mark.large
def test_unseen_motion_families_are_reported_apart(pose_data, finished_run, tmp_path):
    """Actions a dataset's manifest lists as ``unseen_actions`` leave the standard figures
    and are reported under ``unseen_motion``, with the same per-action numbers."""
    model_dir, _ = finished_run
    kw = dict(subjects=("S9",), frame_step=4)
    full = testutil.evaluate_pose(model_dir, pose_data, **kw)
    split = testutil.evaluate_pose(model_dir, _marked(pose_data, tmp_path, "unseen_actions"),
                                   **kw)
    assert set(split["per_action"]) == {"Walking"}
    assert set(split["unseen_motion"]["per_action"]) == {"Posing"}
    for name in ("mpjpe", "pa_mpjpe"):
        assert split["mean"][name] == pytest.approx(full["per_action"]["Walking"][name])
        assert split["unseen_motion"]["mean_over_actions"][name] == pytest.approx(
            full["per_action"]["Posing"][name])
    assert split["num_frames"] + split["unseen_motion"]["num_frames"] == full["num_frames"]
    assert "unseen motion (actions)" in pose3d.format_report(split)
    assert "unseen_motion" not in full


@pytest.mark.large
def test_real_motion_clips_are_reported_apart(pose_data, finished_run, tmp_path):
    """Actions a manifest lists as ``test_motion_actions`` (imported real clips only the test
    subjects perform) leave the standard figures and are reported under ``real_motion``."""
    model_dir, _ = finished_run
    kw = dict(subjects=("S9",), frame_step=4)
    full = testutil.evaluate_pose(model_dir, pose_data, **kw)
    split = testutil.evaluate_pose(model_dir, _marked(pose_data, tmp_path,
                                                      "test_motion_actions"), **kw)
    assert set(split["per_action"]) == {"Walking"} and "unseen_motion" not in split
    assert split["real_motion"]["mean_over_actions"]["mpjpe"] == pytest.approx(
        full["per_action"]["Posing"]["mpjpe"])
    assert "real motion (actions)" in pose3d.format_report(split)
