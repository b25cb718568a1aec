"""Atomic, resumable, parallel shard writing and the dataset manifest.

Every writer (synthetic generator, Human3.6M and rig converters) describes its work
as a list of :class:`ShardTask` and a *producer*: a picklable top-level function
that turns one task's payload into :class:`~tfrecords_tools.schema.Clip` objects
(or :class:`Skipped` notes). :func:`write_dataset` then guarantees:

* settings are checked against an existing dataset *before* anything is written
  (``dataset.json`` records schema version, writer and settings at the start);
* each shard is written to a temporary name and renamed when complete, then a
  sidecar ``<shard>.json`` (counts, sha256) is written the same way; a shard
  counts as done only when both exist and the checksum matches, so re-running
  the same command skips finished shards and redoes interrupted ones;
* ``manifest.json`` (schema version, settings, per-shard and per
  subject/action/view counts, checksums, skipped items) is written last.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import fnmatch
import hashlib
import json
import multiprocessing
import os
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from tfrecords_tools import schema

MANIFEST = "manifest.json"
DATASET_INFO = "dataset.json"
SHARD_SUFFIX = ".tfrecord"


class DatasetError(ValueError):
    """A dataset directory is missing, corrupt, or does not match the requested settings."""


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to write: file ``<name>.tfrecord``, made by ``producer(payload)``."""

    name: str
    payload: Any


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input item a producer could not use; listed in the manifest."""

    item: str
    reason: str


def write_json_atomic(path: str, obj) -> None:
    """Writes JSON to ``path`` through a temporary file, fsync and a rename.

    The one JSON writer of the project: a crash leaves the old file or the new one, never
    a torn one.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(obj):
    """``obj`` as it would read back from JSON (tuples become lists, etc.)."""
    return json.loads(json.dumps(obj, sort_keys=True))


def _check_or_start(output_dir: str, writer: str, settings: dict) -> None:
    info_path = os.path.join(output_dir, DATASET_INFO)
    info = {"schema_version": schema.SCHEMA_VERSION, "writer": writer,
            "settings": jsonable(settings)}
    if os.path.exists(info_path):
        with open(info_path) as f:
            old = json.load(f)
        if old.get("schema_version") != schema.SCHEMA_VERSION:
            raise DatasetError(
                f"{output_dir} holds a dataset of schema version {old.get('schema_version')}, "
                f"this code writes version {schema.SCHEMA_VERSION}; use another --output_dir")
        if old.get("writer") != writer or old.get("settings") != info["settings"]:
            diff = sorted(k for k in set(old.get("settings", {})) | set(info["settings"])
                          if old.get("settings", {}).get(k) != info["settings"].get(k))
            raise DatasetError(
                f"{output_dir} holds a dataset written by {old.get('writer')!r} with different "
                f"settings (differing: {diff or 'writer'}); use another --output_dir or the "
                f"same settings to resume")
        return
    if os.path.isdir(output_dir) and any(
            n.endswith(SHARD_SUFFIX) or n == MANIFEST for n in os.listdir(output_dir)):
        raise DatasetError(f"{output_dir} holds shards but no {DATASET_INFO}; refusing to mix")
    os.makedirs(output_dir, exist_ok=True)
    write_json_atomic(info_path, info)


def _sidecar(path: str) -> str:
    return path + ".json"


def _shard_done(path: str) -> Optional[dict]:
    """The shard's sidecar stats if the shard is complete and intact, else None."""
    side = _sidecar(path)
    if not (os.path.exists(path) and os.path.exists(side)):
        return None
    with open(side) as f:
        stats = json.load(f)
    return stats if stats.get("sha256") == sha256_file(path) else None


def _write_shard(output_dir: str, task: ShardTask,
                 producer: Callable[[Any], Iterable[Union[schema.Clip, Skipped]]]) -> dict:
    """Writes one shard atomically and returns its stats (also stored as sidecar)."""
    import tensorflow as tf
    path = os.path.join(output_dir, task.name + SHARD_SUFFIX)
    tmp = f"{path}.tmp-{os.getpid()}"
    counts = {"subject": collections.Counter(), "action": collections.Counter(),
              "view": collections.Counter()}
    stats = {"file": os.path.basename(path), "num_records": 0, "num_frames": 0,
             "num_images": 0, "num_labelled_frames": 0, "skipped": []}
    try:
        with tf.io.TFRecordWriter(tmp) as w:
            for item in producer(task.payload):
                if isinstance(item, Skipped):
                    stats["skipped"].append(dataclasses.asdict(item))
                    continue
                w.write(schema.encode_clip(item))
                n = item.num_frames
                stats["num_records"] += 1
                stats["num_frames"] += n
                stats["num_images"] += n * item.num_views
                stats["num_labelled_frames"] += n if item.joints3d_world is not None else 0
                counts["subject"][item.subject] += n * item.num_views
                counts["action"][item.action] += n * item.num_views
                for cam in item.camera_ids:
                    counts["view"][cam] += n
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    stats["sha256"] = sha256_file(path)
    stats["images_per"] = {k: dict(sorted(c.items())) for k, c in counts.items()}
    write_json_atomic(_sidecar(path), stats)
    return stats


def write_dataset(output_dir: str, *, writer: str, settings: dict, tasks: Sequence[ShardTask],
                  producer: Callable[[Any], Iterable[Union[schema.Clip, Skipped]]],
                  num_workers: int = 1, log: Callable[[str], None] = print,
                  extra_skipped: Sequence[Skipped] = ()) -> dict:
    """Writes (or finishes writing) a sharded dataset and returns its manifest.

    Args:
      output_dir: dataset directory; created if needed.
      writer: name of the tool writing it (stored; a different writer refuses to mix).
      settings: JSON-able settings; must equal those of an existing dataset there.
      tasks: shards to write; names must be unique.
      producer: picklable top-level function, payload -> iterable of Clip/Skipped.
      num_workers: processes writing shards in parallel (1 = in this process).
      log: progress printer.
      extra_skipped: items the caller skipped before making tasks (listed in the manifest).
    """
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError("shard task names must be unique")
    _check_or_start(output_dir, writer, settings)
    results, todo = {}, []
    for task in tasks:
        stats = _shard_done(os.path.join(output_dir, task.name + SHARD_SUFFIX))
        if stats is None:
            todo.append(task)
        else:
            results[task.name] = stats
    if results:
        log(f"resuming: {len(results)} of {len(tasks)} shards already complete")
    if num_workers > 1 and len(todo) > 1:
        # spawn, not fork: the parent may have imported TensorFlow, which is not fork-safe.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx) as pool:
            futures = {pool.submit(_write_shard, output_dir, t, producer): t for t in todo}
            for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                results[futures[fut].name] = fut.result()
                log(f"shard {futures[fut].name} done ({i}/{len(todo)})")
    else:
        for i, task in enumerate(todo, 1):
            results[task.name] = _write_shard(output_dir, task, producer)
            log(f"shard {task.name} done ({i}/{len(todo)})")
    manifest = _manifest(writer, settings, [results[n] for n in names], extra_skipped)
    write_json_atomic(os.path.join(output_dir, MANIFEST), manifest)
    return manifest


def write_sequences(output_dir: str, *, writer: str, config, specs: Sequence, skipped: Sequence,
                    producer: Callable, num_workers: int = 1,
                    log: Callable[[str], None] = print) -> dict:
    """Converter driver: one shard per discovered sequence ``spec`` (``spec.shard_name``),
    produced from ``(config, spec)``; items skipped during discovery are logged and listed."""
    for item in skipped:
        log(f"skipping {item.item}: {item.reason}")
    tasks = [ShardTask(spec.shard_name, (config, spec)) for spec in specs]
    return write_dataset(output_dir, writer=writer, settings=config.settings(), tasks=tasks,
                         producer=producer, num_workers=num_workers, log=log,
                         extra_skipped=skipped)


def _manifest(writer: str, settings: dict, shards: list, extra_skipped) -> dict:
    totals = collections.Counter()
    per = {"subject": collections.Counter(), "action": collections.Counter(),
           "view": collections.Counter()}
    skipped = [dataclasses.asdict(s) for s in extra_skipped]
    for s in shards:
        for k in ("num_records", "num_frames", "num_images", "num_labelled_frames"):
            totals[k] += s[k]
        for k, c in s["images_per"].items():
            per[k].update(c)
        skipped.extend(s["skipped"])
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "writer": writer,
        "settings": jsonable(settings),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "totals": dict(totals),
        "images_per": {k: dict(sorted(c.items())) for k, c in per.items()},
        "shards": shards,
        "skipped": skipped,
    }


def load_manifest(data_dir: str) -> dict:
    """Reads and checks ``manifest.json`` of a finished dataset.

    Raises:
      DatasetError: the directory, manifest or a listed shard is missing, or the
        schema version differs from this code's.
    """
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isdir(data_dir):
        raise DatasetError(f"dataset directory {data_dir} does not exist")
    if not os.path.exists(path):
        raise DatasetError(f"{path} not found: {data_dir} is not a finished tf_synchro dataset "
                           f"(write one with `python -m tfrecords_tools.synthesize`)")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e})") from e
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema version {manifest.get('schema_version')}, this code "
                           f"reads {schema.SCHEMA_VERSION}")
    for shard in manifest.get("shards", []):
        if not os.path.exists(os.path.join(data_dir, shard["file"])):
            raise DatasetError(f"{data_dir}: shard {shard['file']} listed in {MANIFEST} is missing")
    return manifest


def expand_subjects(data_dir: str, names: Sequence[str]) -> tuple:
    """Subject names with shell-style patterns (``U*``) expanded against a dataset's subjects.

    Plain names pass unchanged (and in order); a pattern becomes the dataset's matching
    subjects, sorted. Lets a flag say "every extra person" without listing hundreds.

    Raises:
      DatasetError: a pattern matches no subject of the dataset.
    """
    if not any(ch in name for name in names for ch in "*?["):
        return tuple(names)
    have = sorted(load_manifest(data_dir)["images_per"]["subject"])
    out: list = []
    for name in names:
        matched = fnmatch.filter(have, name) if any(ch in name for ch in "*?[") else [name]
        if not matched:
            raise DatasetError(f"{data_dir}: subject pattern {name!r} matches none of the "
                               f"dataset's subjects {have}")
        out += [m for m in matched if m not in out]
    return tuple(out)


def shard_paths(data_dir: str, manifest: Optional[dict] = None,
                subjects: Optional[Sequence[str]] = None) -> list[str]:
    """Shard files of a dataset, optionally only those holding the given subjects."""
    manifest = manifest or load_manifest(data_dir)
    out = []
    for shard in manifest["shards"]:
        if subjects is not None and not set(shard["images_per"]["subject"]) & set(subjects):
            continue
        out.append(os.path.join(data_dir, shard["file"]))
    return out
