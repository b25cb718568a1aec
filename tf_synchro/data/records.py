"""Streams parsed clips (records) of a dataset; shared by the pair and frame pipelines."""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from tfrecords_tools import dataset_io, schema


def dataset_files(data_dir: str, subjects: Optional[Sequence[str]] = None) -> list[str]:
    """Shard files of a finished dataset holding any of ``subjects`` (all if None).

    Raises:
      dataset_io.DatasetError: the dataset is missing/unfinished, or no shard holds the subjects.
    """
    manifest = dataset_io.load_manifest(data_dir)
    files = dataset_io.shard_paths(data_dir, manifest, subjects)
    if not files:
        have = sorted(manifest["images_per"]["subject"])
        raise dataset_io.DatasetError(
            f"{data_dir}: no shard holds subjects {list(subjects or [])}; the dataset has {have}")
    return files


def clip_dataset(files: Sequence[str], *, subjects: Optional[Sequence[str]] = None,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 shuffle: bool = True, repeat: bool = True, seed: Optional[int] = None,
                 deterministic: bool = False, cycle_length: int = 4,
                 keys: Optional[Sequence[str]] = None,
                 skip_corrupt: bool = False) -> tf.data.Dataset:
    """Dataset of parsed clips (see :func:`tfrecords_tools.schema.parse_clip_tf`).

    Args:
      files: shard paths.
      subjects: keep only clips of these subjects (None: all).
      input_context: from ``distribute_datasets_from_function``; each input pipeline
        reads a disjoint part of the data.
      shuffle: shuffle file order (each epoch).
      repeat: repeat forever (training).
      seed: shuffle seed.
      deterministic: keep element order fixed for a seed (tests, evaluation).
      cycle_length: shards read concurrently.
      keys: parse only these features (None: all, reshaped by ``parse_clip_tf``). Parsing
        a subset skips the 3D joints and camera arrays, ~3x faster per record; only
        ``image/encoded`` is reshaped (to [T, V]).
      skip_corrupt: skip records that cannot be read or parsed, with a warning each,
        instead of failing (``--skip_corrupt_records``). A damaged record ends the read of
        its shard: TFRecordDataset moves to the next file after a data-loss error.
    """
    files = list(files)
    ds = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            # Shard by file before shuffling: disjoint file sets per pipeline whatever the seed.
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            shard_records = True  # Too few files: every pipeline reads all, keeps every k-th record.
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        # Repeat the file list, not the records: the interleave below then never drains.
        ds = ds.repeat()
    read = tf.data.TFRecordDataset
    if skip_corrupt:
        read = lambda f: tf.data.TFRecordDataset(f).ignore_errors(log_warning=True)  # noqa: E731
    ds = ds.interleave(read, cycle_length=cycle_length,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard_records:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    spec = schema.tf_feature_spec()
    if keys is None:
        parse = lambda s: schema.parse_clip_tf(s, spec)  # noqa: E731
    else:
        unknown = sorted(set(keys) - set(spec))
        if unknown:
            raise ValueError(f"clip_dataset: unknown feature keys {unknown}")
        wanted = set(keys) | ({"sequence/subject"} if subjects is not None else set())
        if "image/encoded" in wanted:
            wanted |= {"clip/num_frames", "clip/num_views"}
        sub_spec = {k: spec[k] for k in wanted}
        parse = lambda s: _parse_subset(s, sub_spec)  # noqa: E731
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)  # Records whose bytes do not parse.
    if subjects is not None:
        wanted = tf.constant(list(subjects))
        ds = ds.filter(lambda c: tf.reduce_any(tf.equal(c["sequence/subject"], wanted)))
    return ds


def _parse_subset(serialized, spec: dict) -> dict:
    p = tf.io.parse_single_example(serialized, spec)
    if "image/encoded" in p:
        p["image/encoded"] = tf.reshape(
            p["image/encoded"], [tf.cast(p["clip/num_frames"], tf.int32),
                                 tf.cast(p["clip/num_views"], tf.int32)])
    return p

