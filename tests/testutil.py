"""Helpers shared by several test modules (test modules import this, never each other).

* Colour-coded pair clips (:func:`write_coded_dataset`): every frame encodes its timestep
  and view in its colour and carries a left/right asymmetric stripe, so each pair the pair
  pipeline makes can be checked against its labels from the pixels alone
  (:func:`decode_code`). Used by test_pairs, test_pretrain, test_distributed.
* Labelled stick-figure clips (:func:`write_pose_dataset`): colour-coded limbs (left blue,
  right red) projected through the Human3.6M rig, so a tiny pose model learns something in
  a few dozen steps. ``conftest.pose_data`` writes it and ``conftest.finished_run``
  fine-tunes on it (:func:`finetune_config`), once per session, for every test file.
* :data:`TINY_ACTIONS` of the session's tiny synthetic dataset (``conftest.tiny_dataset``).

Datasets go through the real shard writer (:func:`tfrecords_tools.dataset_io.write_dataset`),
so their manifests are what the pipelines read in production.
"""
from __future__ import annotations

import cv2
import numpy as np

from tfrecords_tools import cameras, crops, dataset_io, schema, skeleton

TINY_ACTIONS = ("Walking", "Boxing")


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB uint8 image (OpenCV encodes BGR; ``tf.io.decode_jpeg`` gives RGB)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


# ----------------------------------------------------------------------------- coded pair clips

CODED_SIZE = 32
CODED_T, CODED_V = 40, 3
CODED_FRAME_STEP = 3  # frame_index = 100 + 3 t: gaps are multiples of 3


def code_image(t: int, v: int, r_step: int = 5) -> np.ndarray:
    """RGB crop: R encodes t, G encodes v, B is dark on the left and bright on the right."""
    img = np.zeros((CODED_SIZE, CODED_SIZE, 3), np.uint8)
    img[..., 0] = (20 + r_step * t) % 256  # Exact code only for t < 47 (all but one test).
    img[..., 1] = 40 + 50 * v
    img[:, : CODED_SIZE // 2, 2] = 30
    img[:, CODED_SIZE // 2:, 2] = 220
    return img


def decode_code(image: np.ndarray) -> tuple:
    """(t, v, mirrored) from a decoded coded frame (interior means; JPEG is lossy)."""
    q = CODED_SIZE // 4
    t = int(round((image[q:-q, q:-q, 0].mean() - 20) / 5))
    v = int(round((image[q:-q, q:-q, 1].mean() - 40) / 50))
    mirrored = image[:, :q, 2].mean() > image[:, -q:, 2].mean()
    return t, v, bool(mirrored)


def coded_clip(subject: str, seq: int, views: int = CODED_V, frames: int = CODED_T,
               step: int = CODED_FRAME_STEP, frame_index=None, r_step: int = 5) -> schema.Clip:
    """One unlabelled clip of coded frames; ``frame_index`` overrides ``frames`` and ``step``."""
    if frame_index is None:
        frame_index = 100 + step * np.arange(frames)
    frames = len(frame_index)
    return schema.Clip(
        subject=subject, action="Walk", sequence_id=f"{subject}/Walk {seq}", fps=50.0,
        clip_index=0, frame_index=np.asarray(frame_index),
        camera_ids=[f"cam{v}" for v in range(views)], intrinsics=np.ones((views, 4)),
        distortion=np.zeros((views, 5)), rotation=np.tile(np.eye(3), (views, 1, 1)),
        translation=np.zeros((views, 3)), image_wh=np.full((views, 2), 1000),
        image_size=CODED_SIZE, has_background=False,
        images=[[encode_jpeg(code_image(t, v, r_step), quality=98) for v in range(views)]
                for t in range(frames)],
        crop_boxes=np.tile([0.0, 0.0, 100.0, 100.0], (frames, views, 1)))


def _produce_coded(payload):
    subject, seqs, views, frames, step, frame_index, r_step = payload
    for seq in range(seqs):
        yield coded_clip(subject, seq, views, frames, step, frame_index, r_step)


def write_coded_dataset(path, subjects=("S1", "S5"), seqs: int = 2, views: int = CODED_V,
                        frames: int = CODED_T, step: int = CODED_FRAME_STEP, frame_index=None,
                        r_step: int = 5) -> list:
    """Writes one shard per subject of ``seqs`` coded clips; returns the shard paths."""
    from tf_synchro.data import records
    tasks = [dataset_io.ShardTask(s, (s, seqs, views, frames, step, frame_index, r_step))
             for s in subjects]
    dataset_io.write_dataset(str(path), writer="test_pairs", settings={}, tasks=tasks,
                             producer=_produce_coded, log=lambda _: None)
    return records.dataset_files(str(path))


# ----------------------------------------------------------------------------- labelled pose clips

POSE_SIZE = 32  # Stored crop side = model input: the smallest ResNet input.
POSE_T_PER_CLIP = 16

# A standing template (world mm, z up); x = +-100 hips, +-170 shoulders.
_TEMPLATE = np.array([
    [0, 0, 900], [-100, 0, 900], [-100, 0, 500], [-100, 0, 100], [100, 0, 900], [100, 0, 500],
    [100, 0, 100], [0, 0, 1150], [0, 0, 1400], [0, 0, 1500], [0, 0, 1650], [170, 0, 1400],
    [170, 0, 1150], [170, 0, 900], [-170, 0, 1400], [-170, 0, 1150], [-170, 0, 900]], float)


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _pose(t: int, seed: int) -> np.ndarray:
    """World joints [17, 3] of frame t: swinging limbs, turning body (deterministic)."""
    rng = np.random.default_rng(seed)
    phase, speed = rng.uniform(0, 2 * np.pi, 4), rng.uniform(0.15, 0.35, 4)
    j = _TEMPLATE.copy()
    # Limb chains swing about their shoulder / hip: (first joint, [moving joints]).
    for k, (pivot, chain) in enumerate(((11, [12, 13]), (14, [15, 16]), (1, [2, 3]),
                                        (4, [5, 6]))):
        r = _rot_x(1.1 * np.sin(speed[k] * t + phase[k]))
        j[chain] = (j[chain] - j[pivot]) @ r.T + j[pivot]
    yaw = _rot_z(0.5 * np.sin(0.05 * t + seed))
    return (j - j[0]) @ yaw.T + j[0] + np.array([50.0 * np.sin(0.1 * t), 0, 0])


def _render(points_2d: np.ndarray, box) -> bytes:
    img = np.zeros((POSE_SIZE, POSE_SIZE, 3), np.uint8)
    p = crops.image_to_crop(points_2d, box, POSE_SIZE)
    for parent, child in skeleton.BONES:
        colour = ((0, 0, 255) if child in skeleton.LEFT_JOINTS else
                  (255, 0, 0) if child in skeleton.RIGHT_JOINTS else (0, 255, 0))
        a, b = tuple(int(round(v)) for v in p[parent]), tuple(int(round(v)) for v in p[child])
        cv2.line(img, a, b, colour, 1)
    return encode_jpeg(img, quality=95)


def make_pose_clip(subject: str, action: str, clip_index: int, labelled: bool = True,
                   seed: int = 0) -> schema.Clip:
    """One clip of POSE_T_PER_CLIP frames, all four H36M cameras (frame numbers continue)."""
    rig = cameras.h36m_rig()
    fi = np.arange(POSE_T_PER_CLIP) + clip_index * POSE_T_PER_CLIP
    world = np.stack([_pose(t, seed) for t in fi])
    images, boxes = [], np.zeros((len(fi), len(rig), 4))
    for ti in range(len(fi)):
        row = []
        for vi, cam in enumerate(rig):
            pts = cam.project(world[ti])
            boxes[ti, vi] = crops.square_box(pts, margin=0.2)
            row.append(_render(pts, boxes[ti, vi]))
        images.append(row)
    return schema.Clip(
        subject=subject, action=action, sequence_id=f"{subject}/{action}", fps=50.0,
        clip_index=clip_index, frame_index=fi, camera_ids=[c.camera_id for c in rig],
        intrinsics=np.stack([c.intrinsics for c in rig]), distortion=np.zeros((4, 5)),
        rotation=np.stack([c.rotation for c in rig]),
        translation=np.stack([c.translation for c in rig]),
        image_wh=np.array([[c.width, c.height] for c in rig]), image_size=POSE_SIZE,
        has_background=False, images=images, crop_boxes=boxes,
        joints3d_world=world if labelled else None)


# Subjects of the pose dataset: label subject S1, test subject S9, unlabelled U1.
_POSE_SPEC = {"S1": (True, ("Walking", "Posing"), 2), "S9": (True, ("Walking", "Posing"), 1),
              "U1": (False, ("Walking",), 1)}


def _produce_pose(payload):
    subject, labelled, action, clip_index, seed = payload
    yield make_pose_clip(subject, action, clip_index, labelled, seed)


def write_pose_dataset(path: str) -> str:
    """Writes the pose dataset (S1: 2 actions x 2 clips; S9: 2 x 1; U1 unlabelled)."""
    tasks = []
    for si, (subject, (labelled, actions, n_clips)) in enumerate(sorted(_POSE_SPEC.items())):
        for ai, action in enumerate(actions):
            for c in range(n_clips):
                tasks.append(dataset_io.ShardTask(f"{subject}-{action}-{c}",
                                                  (subject, labelled, action, c, 10 * si + ai)))
    dataset_io.write_dataset(path, writer="test_finetune", settings={"size": POSE_SIZE},
                             tasks=tasks, producer=_produce_pose, log=lambda _: None)
    return path


def finetune_config(data_dir: str, model_dir: str, **overrides):
    """A tiny fine-tuning config on the pose dataset (60 steps of a width-0.125 ResNet-18)."""
    from tf_synchro import configs
    base = dict(data_dir=data_dir, model_dir=model_dir, arch="resnet18", width=0.125,
                input_size=POSE_SIZE, pose_head_units=(32,), batch_size=16, train_steps=60,
                steps_per_checkpoint=30, learning_rate=3e-3, final_learning_rate=3e-4,
                freeze_blocks=0, min_scale=0.9, seed=0, log_every=10, progress_every=30)
    base.update(overrides)
    return configs.make(configs.FinetuneConfig, base)


def evaluate_pose(path: str, data_dir: str, **settings) -> dict:
    """``pose3d.evaluate`` of the model at ``path`` (a run directory or a deployed artefact,
    loaded as the evaluate binary loads it) with ``settings`` (PoseEvalConfig fields)."""
    from tf_synchro import configs
    from tf_synchro.deploy import artefacts
    from tf_synchro.tasks import pose3d
    return pose3d.evaluate(artefacts.load_for_evaluation(path), data_dir,
                           configs.PoseEvalConfig(**settings))
