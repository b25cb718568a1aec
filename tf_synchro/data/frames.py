"""tf.data pipelines of labelled single frames for 3D pose fine-tuning and evaluation.

Targets are the 17 joints in the **camera** frame of the frame's view (``X_cam = R X + t``),
root-relative (joint 0 subtracted), in mm.

* Training (:func:`train_dataset`): random frames (any view) of the label subjects, with
  label-safe augmentation:

  - random square crop window + resize (:func:`tf_synchro.data.augment.random_crop_window`):
    an axis-aligned crop and isotropic scale of the image is a change of the intrinsics
    (principal point, focal length) only, so the camera-frame 3D joints are unchanged —
    the label transform is exactly the identity;
  - horizontal flip: mirroring the image about a vertical line is again an intrinsics
    change composed with ``x -> -x`` in the camera frame, so the exact label transform is
    "negate x, then swap left and right joints" (:data:`tfrecords_tools.skeleton.FLIP_PERMUTATION`;
    without the swap the mirrored person's left wrist would be labelled right);
  - colour jitter (brightness, contrast, saturation): labels unchanged.

  No in-plane rotation: it is exact only about the principal point, which a crop does not know.
* Evaluation (:func:`eval_dataset`): every frame whose original frame number is a multiple
  of ``frame_step`` (the protocol's "one frame in 64"), all cameras, fixed order, no
  augmentation, with metadata (subject, action, camera, frame number, sequence id).

Evaluation and the exported serving graph share :func:`preprocess_images` (central crop of
``eval_crop_scale`` of the shorter side, bilinear resize), so served crops are seen exactly
as in evaluation.
"""
from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_synchro.configs import FrameConfig  # noqa: F401  (its home)
from tf_synchro.data import augment, records, service
from tfrecords_tools import dataset_io, skeleton

NUM_JOINTS = skeleton.NUM_JOINTS
# Resolution of --label_fraction: frames are kept by a fingerprint bucket out of this many.
_FRACTION_BUCKETS = 100_000


# ----------------------------------------------------------------------------- label checks

def labelled_files(data_dir: str, subjects: Sequence[str]) -> list[str]:
    """Shards holding 3D-labelled frames of ``subjects``.

    Raises:
      dataset_io.DatasetError: the dataset is missing, lacks a subject, or a subject's
        shards hold no 3D labels (e.g. unlabelled capture data).
    """
    manifest = dataset_io.load_manifest(data_dir)
    have = set(manifest["images_per"]["subject"])
    missing = [s for s in subjects if s not in have]
    if missing:
        raise dataset_io.DatasetError(
            f"{data_dir}: no frames of subjects {missing}; the dataset has {sorted(have)}")
    unlabelled = [s for s in subjects if not any(
        s in shard["images_per"]["subject"] and shard["num_labelled_frames"] > 0
        for shard in manifest["shards"])]
    if unlabelled:
        raise dataset_io.DatasetError(
            f"{data_dir}: subjects {unlabelled} have no 3D labels (pose/has_3d = 0 in every "
            f"shard holding them); 3D pose training and evaluation need labelled subjects")
    return records.dataset_files(data_dir, subjects)


# ----------------------------------------------------------------------------- per-clip frames

def _keep_fraction(sequence_id, frame_index, fraction: float):
    """Deterministic subset of timesteps: fingerprint of 'sequence_id#frame' below a bucket."""
    keys = tf.strings.join([sequence_id, "#", tf.strings.as_string(frame_index)])
    bucket = tf.strings.to_hash_bucket_fast(keys, _FRACTION_BUCKETS)
    return bucket < int(round(fraction * _FRACTION_BUCKETS))


def _clip_frames(clip: dict, config: FrameConfig, training: bool) -> dict:
    """All labelled (t, v) frames of one clip that the pipeline keeps, as tensors [N, ...]."""
    fi = clip["clip/frame_index"]
    t_n = tf.shape(fi)[0]
    v_n = tf.cast(clip["clip/num_views"], tf.int32)
    # Camera-frame joints of every (t, v) at once: [T, V, J, 3] = R_v X_t + t_v.
    world = clip["pose/joints3d_world"]
    cam = tf.einsum("vik,tjk->tvji", clip["camera/rotation"], world)
    cam = cam + clip["camera/translation"][None, :, None, :]
    cam = cam - cam[:, :, skeleton.ROOT:skeleton.ROOT + 1, :]
    if training:
        keep_t = _keep_fraction(clip["sequence/id"], fi, config.label_fraction)
    else:
        keep_t = tf.equal(fi % config.frame_step, 0)
    flat = lambda x: tf.reshape(x, tf.concat([[t_n * v_n], tf.shape(x)[2:]], 0))
    grid = lambda x: flat(tf.broadcast_to(x, tf.stack([t_n, v_n])))
    keep = grid(keep_t[:, None])
    frames = {
        "jpeg": flat(clip["image/encoded"]),
        "joints": flat(cam),
        "camera": grid(clip["camera/id"][None, :]),
        "frame_index": grid(fi[:, None]),
        "subject": grid(clip["sequence/subject"]),
        "action": grid(clip["sequence/action"]),
        "sequence_id": grid(clip["sequence/id"]),
        "image_size": grid(tf.cast(clip["image/size"], tf.int32)),
    }
    return {k: tf.boolean_mask(v, keep) for k, v in frames.items()}


def _labelled(clip: dict) -> tf.Tensor:
    return tf.equal(clip["pose/has_3d"], 1)


# ----------------------------------------------------------------------------- image ops

def flip_pose(image: tf.Tensor, joints: tf.Tensor, flip: tf.Tensor):
    """Mirrors ``image`` [H, W, C] and its camera-frame ``joints`` [17, 3] where ``flip``.

    The label transform: negate x, then swap left/right joints (see module doc).
    """
    def do_flip():
        mirrored = tf.gather(joints, skeleton.FLIP_PERMUTATION) * tf.constant([-1.0, 1.0, 1.0])
        return tf.reverse(image, axis=[1]), mirrored
    return tf.cond(flip, do_flip, lambda: (image, joints))


def preprocess_images(images: tf.Tensor, output_size: int, crop_scale: float) -> tf.Tensor:
    """Central square crop and resize of raw crops, as in evaluation and serving.

    Args:
      images: ``[N, H, W, 3]`` of any real or uint8 dtype, values in [0, 255].
      output_size: side of the model input.
      crop_scale: side of the central square as a fraction of ``min(H, W)``.

    Returns:
      float32 ``[N, output_size, output_size, 3]`` in [0, 255].
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    side = tf.cast(tf.round(crop_scale * tf.cast(tf.minimum(h, w), tf.float32)), tf.int32)
    side = tf.clip_by_value(side, 1, tf.minimum(h, w))
    y0, x0 = (h - side) // 2, (w - side) // 2
    images = images[:, y0:y0 + side, x0:x0 + side, :]
    images = tf.image.resize(images, [output_size, output_size], method="bilinear")
    return tf.clip_by_value(images, 0.0, 255.0)


def decode_jpeg(jpeg: tf.Tensor, dct_method: str = "INTEGER_FAST") -> tf.Tensor:
    """Decodes one JPEG crop to uint8 ``[H, W, 3]`` (shared by evaluation and serving)."""
    return tf.io.decode_jpeg(jpeg, channels=3, dct_method=dct_method)


def _train_frame(f: dict, key: tf.Tensor, config: FrameConfig) -> dict:
    aug = config.augment
    k_crop, k_flip, k_jit = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    window = augment.random_crop_window(k_crop, f["image_size"], aug)
    image = augment.decode_crop_resize(f["jpeg"], window, aug.output_size, aug.dct_method)
    flip = tf.random.stateless_uniform([], k_flip) < config.flip_prob
    image, joints = flip_pose(image, f["joints"], flip)
    return {"image": image, "joints": tf.ensure_shape(joints, [NUM_JOINTS, 3]),
            "jitter": augment.jitter_factors(k_jit, aug)}


def _eval_frame(f: dict, config: FrameConfig, raw: bool = False) -> tuple:
    image = decode_jpeg(f["jpeg"], config.augment.dct_method)
    if not raw:
        image = preprocess_images(image[None], config.augment.output_size,
                                  config.eval_crop_scale)[0]
    meta = {k: f[k] for k in ("subject", "action", "camera", "frame_index", "sequence_id")}
    return image, tf.ensure_shape(f["joints"], [NUM_JOINTS, 3]), meta


# ----------------------------------------------------------------------------- pipelines

def train_dataset(files: Sequence[str], config: FrameConfig, batch_size: int,
                  input_context: Optional[tf.distribute.InputContext] = None
                  ) -> tf.data.Dataset:
    """Infinite batches ``(images float32 [B, S, S, 3] in [0, 255], joints [B, 17, 3] mm)``.

    Args:
      files: shard paths (:func:`labelled_files`).
      config: pipeline settings.
      batch_size: batch of this input pipeline (per replica under distribution).
      input_context: from ``distribute_datasets_from_function``; shards the records and
        gives each pipeline its own random stream.
    """
    config.validate()
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    # Disjoint random streams per input pipeline: same seed, different pipeline id.
    base_key = tf.constant([seed, pipeline_id], tf.int64)
    # Files -> shuffle files -> shard -> interleave -> parse (records.clip_dataset); it
    # repeats the file list, so the stream is infinite and the interleave never drains.
    ds = records.clip_dataset(files, subjects=config.subjects, input_context=input_context,
                              shuffle=True, repeat=True, seed=seed,
                              deterministic=config.deterministic,
                              cycle_length=config.cycle_length,
                              skip_corrupt=config.skip_corrupt_records)
    ds = ds.filter(_labelled)  # Unlabelled clips of a label subject carry no target.
    ds = ds.map(lambda c: _clip_frames(c, config, training=True),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    # Frames hold a JPEG string and 51 floats until decoded, so a large shuffle buffer
    # (which separates frames of one clip: consecutive timesteps look alike) is cheap.
    ds = ds.unbatch()
    ds = ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # One stateless key per frame from its stream position: augmentation is then
    # independent of map parallelism, so a seed fixes it.
    # A frame whose JPEG does not decode is skipped with --skip_corrupt_records.
    ds = records.map_decoding(
        ds.enumerate(),
        lambda i, f: _train_frame(f, service.element_key(base_key, i, input_context),
                                  config),
        config.skip_corrupt_records,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    ds = ds.batch(batch_size, drop_remainder=True)  # Static batch shape for the replicas.
    # Colour jitter after batching: one vectorised op per batch instead of per image.
    ds = ds.map(lambda b: (augment.apply_colour_jitter(b["image"], b["jitter"]), b["joints"]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(files: Sequence[str], config: FrameConfig, batch_size: int,
                 raw: bool = False) -> tf.data.Dataset:
    """One deterministic pass: ``(images, joints [B, 17, 3] mm, metadata)`` batches.

    ``metadata`` holds string/int tensors ``subject``, ``action``, ``camera``,
    ``frame_index`` and ``sequence_id`` [B]. The last batch may be smaller. ``raw``: the
    images are the decoded stored crops (uint8, as a served model takes them), not the
    preprocessed model inputs (all crops of a dataset have one side, so they batch).
    """
    config.validate()
    # No file shuffle, no repeat, deterministic interleave: the same frames in the same
    # order every time, so reports of two models are comparable frame by frame.
    ds = records.clip_dataset(files, subjects=config.subjects, shuffle=False, repeat=False,
                              deterministic=True, cycle_length=1,
                              skip_corrupt=config.skip_corrupt_records)
    ds = ds.filter(_labelled)
    ds = ds.map(lambda c: _clip_frames(c, config, training=False),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    ds = records.map_decoding(ds, lambda f: _eval_frame(f, config, raw),
                              config.skip_corrupt_records,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def dataset_fn(files: Sequence[str], config: FrameConfig, global_batch_size: int
               ) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """``input_context -> dataset`` for ``train_lib.distributed_dataset`` (per-replica batch)."""
    def fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        return train_dataset(files, config, batch, input_context)
    return fn


# ----------------------------------------------------------------------------- target statistics

def joint_statistics(files: Sequence[str], config: FrameConfig, max_frames: int = 20000
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint mean and std ``[17, 3]`` (mm) of training targets, flip-symmetrised.

    Reads labels only (no image decoding) of the frames :func:`train_dataset` draws from
    (same subjects and ``label_fraction``), up to ``max_frames``. The statistics are those
    of the 50:50 mixture of the frames and their mirror images, which is what training
    with ``flip_prob=0.5`` sees; the root's std is set to 1 (it is always 0).

    Raises:
      ValueError: no labelled frame was found.
    """
    config.validate()
    # Manifest file order and a wide deterministic interleave: when max_frames cuts the
    # pass short, the frames read still come from many sequences, the same in every run.
    ds = records.clip_dataset(files, subjects=config.subjects, shuffle=False, repeat=False,
                              deterministic=True, cycle_length=min(len(files), 16),
                              skip_corrupt=config.skip_corrupt_records)
    ds = ds.filter(_labelled).map(lambda c: _clip_frames(c, config, training=True)["joints"])
    chunks, count = [], 0
    for joints in ds.as_numpy_iterator():
        chunks.append(joints)
        count += len(joints)
        if count >= max_frames:
            break
    if not count:
        raise ValueError(f"no labelled frames of subjects {list(config.subjects)} in "
                         f"{len(files)} shard(s) (label_fraction={config.label_fraction})")
    joints = np.concatenate(chunks)[:max_frames].astype(np.float64)
    both = np.concatenate([joints, skeleton.flip_joints_camera(joints)])
    mean, std = both.mean(0), both.std(0)
    std[skeleton.ROOT] = 1.0
    return mean.astype(np.float32), np.maximum(std, 1.0).astype(np.float32)
