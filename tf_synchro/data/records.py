"""Streams parsed clips (records) of a dataset; shared by the pair and frame pipelines.

Also the one place where a JPEG that does not decode inside a valid record is handled
(:func:`map_decoding`): without ``--skip_corrupt_records`` the run stops and
:func:`tfrecords_tools.dataset_io.naming_damaged_shard` names shard, record, timestep and
view; with it the element holding the image is dropped and counted
(:func:`undecodable_count`).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

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



# ----------------------------------------------------------------------------- undecodable images

class _DecodeCounter:
    """Two int64 variables: decode calls started and finished. An element whose JPEG does
    not decode starts and never finishes, so ``started - finished`` counts the dropped
    ones (plus calls still running: read it with the pipeline at rest)."""

    def __init__(self):
        with tf.init_scope(), tf.device("/cpu:0"):
            self.started = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.finished = tf.Variable(0, dtype=tf.int64, trainable=False)

    def guard(self, fn: Callable) -> Callable:
        def counted(*args):
            with tf.control_dependencies([self.started.assign_add(1)]):
                # The decode's inputs wait for the count, so a failing call is counted.
                args = tf.nest.map_structure(_identity, args)
            out = fn(*args)
            with tf.control_dependencies(tf.nest.flatten(out, expand_composites=True)):
                done = self.finished.assign_add(1)
            with tf.control_dependencies([done]):
                return tf.nest.map_structure(_identity, out)
        return counted

    def dropped(self) -> int:
        return int(self.started.numpy()) - int(self.finished.numpy())


def _identity(x):
    return tf.identity(x) if isinstance(x, tf.Tensor) else x


_COUNTER: Optional[_DecodeCounter] = None


def prepare_decode_counter() -> None:
    """Creates the process's counter of dropped elements now (call it outside any
    distribution-strategy scope, before building a pipeline that skips)."""
    global _COUNTER
    if _COUNTER is None:
        _COUNTER = _DecodeCounter()


def undecodable_count() -> int:
    """Elements dropped so far in this process because a JPEG did not decode
    (``--skip_corrupt_records``); differences of two reads count one run's."""
    return _COUNTER.dropped() if _COUNTER is not None else 0


def map_decoding(ds: tf.data.Dataset, fn: Callable, skip: bool, **map_kwargs
                 ) -> tf.data.Dataset:
    """``ds.map(fn, **map_kwargs)`` for an ``fn`` that decodes JPEGs.

    With ``skip`` (``--skip_corrupt_records``) an element whose JPEG does not decode is
    dropped (``ignore_errors``) and counted (:func:`undecodable_count`): two variable
    increments per element, nothing on the hot path without it.
    """
    if not skip:
        return ds.map(fn, **map_kwargs)
    prepare_decode_counter()
    return ds.map(_COUNTER.guard(fn), **map_kwargs).ignore_errors()


def report_undecodable(before: int, files: Sequence[str], what: str,
                       log: Callable[[str], None] = print) -> int:
    """Logs one line about the elements dropped since ``undecodable_count()`` was
    ``before`` (none: nothing logged), naming the first bad image of ``files``; returns
    their number."""
    n = undecodable_count() - before
    if n > 0:
        first = dataset_io.first_undecodable_image(files)
        log(f"warning: --skip_corrupt_records: skipped {n} {what} holding a JPEG that does "
            f"not decode" + (f" (first in the data: {first})" if first else ""))
    return max(n, 0)
