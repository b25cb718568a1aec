"""The one record schema of tf_synchro (version 1). Writers and readers import it.

One record (a ``tf.train.Example``) is a *clip*: T consecutive kept timesteps of one
sequence (one subject, one action, one take), all V views. Frames are stored as
person-centred square JPEG crops, time-major (index ``t * V + v``), so a reader
can pick two frames up to ``d_max`` apart in two different views and decode only
those two. ``frame_index`` holds the original frame numbers of the recording
(frames dropped for lack of motion leave gaps), so time offsets are measured in
real frames of the stored frame rate.

Geometry follows :mod:`tfrecords_tools.cameras` (world mm, X_cam = R X + t) and
:mod:`tfrecords_tools.crops` (crop boxes in original-image pixels).

Feature keys (V views, T frames, J = 17 joints):

=========================== ======= =========== =============================================
key                         dtype   length      meaning
=========================== ======= =========== =============================================
schema_version              int64   1           :data:`SCHEMA_VERSION`
sequence/subject            bytes   1           e.g. ``S1``
sequence/action             bytes   1           e.g. ``Walking``
sequence/id                 bytes   1           unique per take, e.g. ``S1/Walking 1``
sequence/fps                float   1           frame rate of ``frame_index``
clip/index                  int64   1           position of this clip in its sequence
clip/num_frames             int64   1           T
clip/num_views              int64   1           V
clip/frame_index            int64   T           original frame number of each timestep
camera/id                   bytes   V           camera names
camera/intrinsics           float   V*4         fx, fy, cx, cy (original image pixels)
camera/distortion           float   V*5         k1, k2, p1, p2, k3 (OpenCV)
camera/rotation             float   V*9         world->camera rotation, row-major
camera/translation          float   V*3         world->camera translation (mm)
camera/image_size           int64   V*2         original image width, height
image/size                  int64   1           crop side S in pixels
image/has_background        int64   1           1 if the scene background is kept
image/encoded               bytes   T*V         JPEG crops, time-major
image/crop_box              float   T*V*4       x0, y0, x1, y1 per crop (original pixels)
pose/has_3d                 int64   1           1 if 3D joints are known
pose/joints3d_world         float   T*J*3 or 0  world joints in mm, 17-joint order
=========================== ======= =========== =============================================
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from tfrecords_tools import skeleton

SCHEMA_VERSION = 1
NUM_JOINTS = skeleton.NUM_JOINTS

# Smallest and largest crop sides a writer accepts.
MIN_IMAGE_SIZE = 32
# Fewest timesteps a writer may put in a record (--clip_length). Pre-training draws
# unsynchronized pairs more than --d_min frames apart (paper and default: 4) from one
# record, so with every frame kept a record needs 6 timesteps to give that pair type;
# fewer would write records that pre-training can never use.
MIN_CLIP_LENGTH = 6
# Why, for the refusal of a shorter clip (a setting's ``reason``).
MIN_CLIP_REASON = "room for an unsynchronized pair"
MAX_IMAGE_SIZE = 512

_INT, _FLOAT, _BYTES = "int64", "float32", "string"

# key -> dtype. The single description of the record layout; readers build their
# parsing spec from it and writers check their output against it.
FEATURES = {
    "schema_version": _INT,
    "sequence/subject": _BYTES,
    "sequence/action": _BYTES,
    "sequence/id": _BYTES,
    "sequence/fps": _FLOAT,
    "clip/index": _INT,
    "clip/num_frames": _INT,
    "clip/num_views": _INT,
    "clip/frame_index": _INT,
    "camera/id": _BYTES,
    "camera/intrinsics": _FLOAT,
    "camera/distortion": _FLOAT,
    "camera/rotation": _FLOAT,
    "camera/translation": _FLOAT,
    "camera/image_size": _INT,
    "image/size": _INT,
    "image/has_background": _INT,
    "image/encoded": _BYTES,
    "image/crop_box": _FLOAT,
    "pose/has_3d": _INT,
    "pose/joints3d_world": _FLOAT,
}

SCALAR_KEYS = ("schema_version", "sequence/subject", "sequence/action", "sequence/id",
               "sequence/fps", "clip/index", "clip/num_frames", "clip/num_views", "image/size",
               "image/has_background", "pose/has_3d")


class SchemaError(ValueError):
    """A record does not follow the schema."""


@dataclasses.dataclass
class Clip:
    """One record in numpy form. Shapes use T frames and V views."""

    subject: str
    action: str
    sequence_id: str
    fps: float
    clip_index: int
    frame_index: np.ndarray            # [T] int64
    camera_ids: Sequence[str]          # [V]
    intrinsics: np.ndarray             # [V, 4] fx, fy, cx, cy
    distortion: np.ndarray             # [V, 5]
    rotation: np.ndarray               # [V, 3, 3] world -> camera
    translation: np.ndarray            # [V, 3] mm
    image_wh: np.ndarray               # [V, 2] original width, height
    image_size: int                    # crop side S
    has_background: bool
    images: Sequence[Sequence[bytes]]  # [T][V] JPEG bytes
    crop_boxes: np.ndarray             # [T, V, 4]
    joints3d_world: Optional[np.ndarray] = None  # [T, 17, 3] mm, or None

    @property
    def num_frames(self) -> int:
        return len(self.frame_index)

    @property
    def num_views(self) -> int:
        return len(self.camera_ids)

    def validate(self) -> None:
        """Raises :class:`SchemaError` naming the first field whose shape or value is wrong."""
        t, v = self.num_frames, self.num_views
        where = f"clip {self.sequence_id!r} #{self.clip_index}"
        expect = {
            "intrinsics": (self.intrinsics, (v, 4)),
            "distortion": (self.distortion, (v, 5)),
            "rotation": (self.rotation, (v, 3, 3)),
            "translation": (self.translation, (v, 3)),
            "image_wh": (self.image_wh, (v, 2)),
            "crop_boxes": (self.crop_boxes, (t, v, 4)),
        }
        if self.joints3d_world is not None:
            expect["joints3d_world"] = (self.joints3d_world, (t, NUM_JOINTS, 3))
        for name, (value, shape) in expect.items():
            if np.shape(value) != shape:
                raise SchemaError(f"{where}: {name} has shape {np.shape(value)}, expected {shape}")
        if t < 1 or v < 1:
            raise SchemaError(f"{where}: needs at least one frame and one view, got T={t}, V={v}")
        if len(self.images) != t or any(len(row) != v for row in self.images):
            raise SchemaError(f"{where}: images must be a [T={t}][V={v}] nested list of JPEG bytes")
        if np.any(np.diff(self.frame_index) <= 0):
            raise SchemaError(f"{where}: frame_index must be strictly increasing")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise SchemaError(f"{where}: image_size {self.image_size} outside "
                              f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]")
        if self.joints3d_world is not None and not np.all(np.isfinite(self.joints3d_world)):
            raise SchemaError(f"{where}: joints3d_world contains NaN or inf")


def _feature(dtype: str, values):
    import tensorflow as tf  # Imported lazily: numpy-only users of Clip do not pay for TF.
    if dtype == _INT:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(values).tolist()))
    if dtype == _FLOAT:
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def encode_clip(clip: Clip) -> bytes:
    """Serialises a :class:`Clip` into a ``tf.train.Example`` (after validating it)."""
    import tensorflow as tf
    clip.validate()
    has_3d = clip.joints3d_world is not None
    values = {
        "schema_version": [SCHEMA_VERSION],
        "sequence/subject": [clip.subject.encode()],
        "sequence/action": [clip.action.encode()],
        "sequence/id": [clip.sequence_id.encode()],
        "sequence/fps": [clip.fps],
        "clip/index": [clip.clip_index],
        "clip/num_frames": [clip.num_frames],
        "clip/num_views": [clip.num_views],
        "clip/frame_index": clip.frame_index,
        "camera/id": [str(c).encode() for c in clip.camera_ids],
        "camera/intrinsics": clip.intrinsics,
        "camera/distortion": clip.distortion,
        "camera/rotation": clip.rotation,
        "camera/translation": clip.translation,
        "camera/image_size": clip.image_wh,
        "image/size": [clip.image_size],
        "image/has_background": [int(clip.has_background)],
        "image/encoded": [bytes(b) for row in clip.images for b in row],
        "image/crop_box": clip.crop_boxes,
        "pose/has_3d": [int(has_3d)],
        "pose/joints3d_world": clip.joints3d_world if has_3d else [],
    }
    example = tf.train.Example(features=tf.train.Features(
        feature={k: _feature(FEATURES[k], v) for k, v in values.items()}))
    # deterministic=True: protobuf map order otherwise differs between processes, and shard
    # checksums must not depend on which worker wrote a shard.
    return example.SerializeToString(deterministic=True)


def _values(feature, dtype: str):
    if dtype == _INT:
        return np.asarray(feature.int64_list.value, np.int64)
    if dtype == _FLOAT:
        return np.asarray(feature.float_list.value, np.float32)
    return list(feature.bytes_list.value)


def decode_clip(serialized: bytes, where: str = "record") -> Clip:
    """Parses a serialised record into a :class:`Clip` (numpy; for tools and tests).

    Raises:
      SchemaError: naming ``where`` and the missing or malformed feature.
    """
    import tensorflow as tf
    try:
        example = tf.train.Example.FromString(serialized)
    except Exception as e:  # protobuf raises DecodeError, not a ValueError subclass.
        raise SchemaError(f"{where}: not a tf.train.Example ({e})") from e
    feats = example.features.feature
    missing = [k for k in FEATURES if k not in feats]
    if missing:
        raise SchemaError(f"{where}: missing features {missing}")
    f = {k: _values(feats[k], dtype) for k, dtype in FEATURES.items()}
    version = int(f["schema_version"][0])
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{where}: schema_version {version}, this code reads {SCHEMA_VERSION}")
    t, v = int(f["clip/num_frames"][0]), int(f["clip/num_views"][0])
    enc = f["image/encoded"]
    if len(enc) != t * v:
        raise SchemaError(f"{where}: image/encoded has {len(enc)} entries, expected T*V={t * v}")
    try:
        clip = Clip(
            subject=f["sequence/subject"][0].decode(),
            action=f["sequence/action"][0].decode(),
            sequence_id=f["sequence/id"][0].decode(),
            fps=float(f["sequence/fps"][0]),
            clip_index=int(f["clip/index"][0]),
            frame_index=f["clip/frame_index"],
            camera_ids=[c.decode() for c in f["camera/id"]],
            intrinsics=f["camera/intrinsics"].reshape(v, 4),
            distortion=f["camera/distortion"].reshape(v, 5),
            rotation=f["camera/rotation"].reshape(v, 3, 3),
            translation=f["camera/translation"].reshape(v, 3),
            image_wh=f["camera/image_size"].reshape(v, 2),
            image_size=int(f["image/size"][0]),
            has_background=bool(f["image/has_background"][0]),
            images=[enc[i * v:(i + 1) * v] for i in range(t)],
            crop_boxes=f["image/crop_box"].reshape(t, v, 4),
            joints3d_world=(f["pose/joints3d_world"].reshape(t, NUM_JOINTS, 3)
                            if f["pose/has_3d"][0] else None),
        )
    except ValueError as e:
        raise SchemaError(f"{where}: malformed feature ({e})") from e
    clip.validate()
    return clip


def tf_feature_spec() -> dict:
    """``tf.io.parse_*`` spec for a record: scalars as fixed-length, lists as flat ragged.

    Ragged (no partitions) parsing gives dense 1-D tensors without the sparse round
    trip of ``VarLenFeature``.
    """
    import tensorflow as tf
    dtypes = {_INT: tf.int64, _FLOAT: tf.float32, _BYTES: tf.string}
    spec = {}
    for key, dtype in FEATURES.items():
        if key in SCALAR_KEYS:
            spec[key] = tf.io.FixedLenFeature([], dtypes[dtype])
        else:
            spec[key] = tf.io.RaggedFeature(dtypes[dtype], row_splits_dtype=tf.int64)
    return spec


def parse_clip_tf(serialized, spec: Optional[dict] = None) -> dict:
    """Parses one serialised record inside a tf.data pipeline.

    Returns a dict of tensors with the flat layout reshaped:
    ``camera/intrinsics`` [V, 4], ``camera/rotation`` [V, 3, 3],
    ``camera/translation`` [V, 3], ``camera/distortion`` [V, 5],
    ``camera/image_size`` [V, 2], ``image/encoded`` [T, V], ``image/crop_box`` [T, V, 4],
    ``pose/joints3d_world`` [T, 17, 3] (or [0, 17, 3] without labels), plus the scalars.
    """
    import tensorflow as tf
    p = tf.io.parse_single_example(serialized, spec or tf_feature_spec())
    v = tf.cast(p["clip/num_views"], tf.int32)
    t = tf.cast(p["clip/num_frames"], tf.int32)
    out = dict(p)
    out["camera/intrinsics"] = tf.reshape(p["camera/intrinsics"], [v, 4])
    out["camera/distortion"] = tf.reshape(p["camera/distortion"], [v, 5])
    out["camera/rotation"] = tf.reshape(p["camera/rotation"], [v, 3, 3])
    out["camera/translation"] = tf.reshape(p["camera/translation"], [v, 3])
    out["camera/image_size"] = tf.reshape(p["camera/image_size"], [v, 2])
    out["image/encoded"] = tf.reshape(p["image/encoded"], [t, v])
    out["image/crop_box"] = tf.reshape(p["image/crop_box"], [t, v, 4])
    out["pose/joints3d_world"] = tf.reshape(p["pose/joints3d_world"], [-1, NUM_JOINTS, 3])
    return out


def camera_frame_joints(joints_world: np.ndarray, rotation: np.ndarray,
                        translation: np.ndarray) -> np.ndarray:
    """World joints [..., J, 3] to one camera's frame: X_cam = R X + t (numpy)."""
    return np.einsum("ij,...kj->...ki", rotation, joints_world) + translation
