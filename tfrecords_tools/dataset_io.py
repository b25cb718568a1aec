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
  subject/action/view counts, sizes, checksums, skipped items) is written last;
* one writer at a time: the output directory is locked (:mod:`tfrecords_tools.runtime.locks`)
  and the temporaries of killed writers are removed when the next one starts;
* a run that ends with no record at all is an error listing why (the skipped items),
  and a fresh dataset whose run fails before any shard is complete leaves nothing behind.

Readers check a dataset with :func:`load_manifest` (shard paths must stay inside the
dataset) and :func:`verify_shards` (sizes and checksums against the manifest, before
training or evaluation writes anything).
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import fnmatch
import json
import multiprocessing
import os
import re
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from tfrecords_tools import beam_io, schema
from tfrecords_tools.runtime import cli, fileio, locks
from tfrecords_tools.runtime import flags as flag_engine
from tfrecords_tools.runtime.flags import setting

MANIFEST = "manifest.json"
DATASET_INFO = "dataset.json"
SHARD_SUFFIX = ".tfrecord"
VERIFY_MODES = ("auto", "full", "size", "none")
# --verify_data=auto hashes (full) datasets up to this size, about a second of sha256 per
# GiB; beyond it only sizes are checked at start (damage is then caught while reading).
AUTO_FULL_VERIFY_BYTES = 2 << 30


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


def _check_or_start(output_dir: str, writer: str, settings: dict) -> bool:
    """Checks an existing dataset's settings or starts a new one; True when new."""
    info_path = os.path.join(output_dir, DATASET_INFO)
    info = {"schema_version": schema.SCHEMA_VERSION, "writer": writer,
            "settings": fileio.jsonable(settings)}
    if os.path.exists(info_path):
        with open(info_path) as f:
            old = json.load(f)
        if old.get("schema_version") != schema.SCHEMA_VERSION:
            raise DatasetError(
                f"{output_dir} holds a dataset of schema version {old.get('schema_version')}, "
                f"this code writes version {schema.SCHEMA_VERSION}; use another --output_dir")
        locks.refuse_other_settings(
            {"writer": old.get("writer"), **old.get("settings", {})},
            {"writer": writer, **info["settings"]}, DatasetError, output_dir,
            "use another --output_dir or the same settings to resume")
        return False
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    if any(n.endswith(SHARD_SUFFIX) or n == MANIFEST for n in names):
        raise DatasetError(f"{output_dir} holds shards but no {DATASET_INFO}; refusing to mix")
    # Folders mean a run directory (backup/, tensorboard/) or an input folder: shards
    # written there would mix with files no reader expects. (A driver's own files, such as
    # the experiments' settings.json and log.txt, may be there.)
    folders = sorted(n for n in names if os.path.isdir(os.path.join(output_dir, n))
                     and locks.temp_owner(n) is None)
    if folders:
        raise DatasetError(f"--output_dir={output_dir} holds folders ({', '.join(folders[:3])}"
                           f"{', ...' if len(folders) > 3 else ''}) and no dataset "
                           f"({DATASET_INFO}): not a dataset directory; expected a new or "
                           f"empty directory, or a dataset to resume")
    os.makedirs(output_dir, exist_ok=True)
    fileio.write_json_atomic(info_path, info)
    return True


def _sidecar(path: str) -> str:
    return path + ".json"


def _shard_done(path: str) -> Optional[dict]:
    """The shard's sidecar stats if the shard is complete and intact, else None.

    Through ``tf.io.gfile``: a Beam worker checks shards on any filesystem it supports.
    """
    import tensorflow as tf
    side = _sidecar(path)
    if not (tf.io.gfile.exists(path) and tf.io.gfile.exists(side)):
        return None
    try:
        with tf.io.gfile.GFile(side) as f:
            stats = json.load(f)
    except json.JSONDecodeError:  # A torn sidecar (no fsync on every filesystem): redo.
        return None
    return stats if stats.get("sha256") == fileio.sha256_file(path) else None


def _write_shard(output_dir: str, task: ShardTask,
                 producer: Callable[[Any], Iterable[Union[schema.Clip, Skipped]]]) -> dict:
    """Writes one shard atomically and returns its stats (also stored as sidecar).

    The one shard producer of every runner (local processes, Beam workers), so the bytes
    do not depend on the runner. File operations go through ``tf.io.gfile`` (any
    filesystem TensorFlow reads); where a rename is a copy (object stores) the sidecar,
    written last with the shard's sha256, is what marks the shard complete.
    """
    import tensorflow as tf
    path = os.path.join(output_dir, task.name + SHARD_SUFFIX)
    tmp = locks.temp_path(path)
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
                cli.check_terminated()  # A safe point, should SIGTERM's exception be lost.
                n = item.num_frames
                stats["num_records"] += 1
                stats["num_frames"] += n
                stats["num_images"] += n * item.num_views
                stats["num_labelled_frames"] += n if item.joints3d_world is not None else 0
                counts["subject"][item.subject] += n * item.num_views
                counts["action"][item.action] += n * item.num_views
                for cam in item.camera_ids:
                    counts["view"][cam] += n
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
    stats["sha256"] = fileio.sha256_file(path)
    stats["bytes"] = tf.io.gfile.stat(path).length
    stats["images_per"] = {k: dict(sorted(c.items())) for k, c in counts.items()}
    fileio.write_json_atomic(_sidecar(path), stats)
    return stats


def _write_unless_done(task: ShardTask, output_dir: str, producer: Callable) -> str:
    """A Beam worker's element (:func:`tfrecords_tools.beam_io.write_shards`): writes the
    shard of ``task`` unless a complete one is there; returns its name."""
    if _shard_done(os.path.join(output_dir, task.name + SHARD_SUFFIX)) is None:
        _write_shard(output_dir, task, producer)
    return task.name


def write_dataset(output_dir: str, *, writer: str, settings: dict, tasks: Sequence[ShardTask],
                  producer: Callable[[Any], Iterable[Union[schema.Clip, Skipped]]],
                  num_workers: int = 1, log: Callable[[str], None] = print,
                  extra_skipped: Sequence[Skipped] = (), runner: str = "local",
                  beam_options: Union[str, Sequence[str]] = ()) -> dict:
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
      runner: ``local`` (``num_workers`` processes here) or an Apache Beam runner
        (:mod:`tfrecords_tools.beam_io`), with Beam's own flags in ``beam_options``.
    """
    beam_io.check_runner(runner, beam_options)
    if fileio.is_url(output_dir):  # The lock and manifest are local file operations.
        raise DatasetError(f"--output_dir={output_dir}: expected a filesystem path (for a "
                           f"bucket, a FUSE mount of it); URLs are not supported")
    names = [t.name for t in tasks]
    dupes = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if dupes:
        raise DatasetError(f"shard names must be unique, but {dupes} are each made from more "
                           f"than one input (names keep letters and digits only); rename those "
                           f"inputs")
    with locks.hold(output_dir, "--output_dir"):
        locks.clean_stale_temps(output_dir, log=log)
        fresh = _check_or_start(output_dir, writer, settings)
        try:
            manifest = _write_shards(output_dir, writer, settings, tasks, producer,
                                     num_workers, log, extra_skipped, runner, beam_options)
        except BaseException:
            if fresh and not any((_shard_done(os.path.join(output_dir, n + SHARD_SUFFIX))
                                  or {}).get("num_records") for n in names):
                _remove_written(output_dir, names)  # Nothing usable: leave nothing behind.
            raise
    return manifest


def _remove_written(output_dir: str, names: Sequence[str]) -> None:
    for name in names:
        for path in (name + SHARD_SUFFIX, _sidecar(name + SHARD_SUFFIX)):
            if os.path.exists(os.path.join(output_dir, path)):
                os.remove(os.path.join(output_dir, path))
    for name in (DATASET_INFO, MANIFEST):
        if os.path.exists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))


def _write_shards(output_dir, writer, settings, tasks, producer, num_workers, log,
                  extra_skipped, runner="local", beam_options=()) -> dict:
    names = [t.name for t in tasks]
    results, todo = {}, []
    for task in tasks:
        stats = _shard_done(os.path.join(output_dir, task.name + SHARD_SUFFIX))
        if stats is None:
            todo.append(task)
        else:
            results[task.name] = stats
    if results:
        log(f"resuming: {len(results)} of {len(tasks)} shards already complete")
    if runner != beam_io.LOCAL and todo:
        beam_io.write_shards(output_dir, todo, producer, _write_unless_done, runner,
                             beam_options, log)
        for task in todo:
            stats = _shard_done(os.path.join(output_dir, task.name + SHARD_SUFFIX))
            if stats is None:  # A runner that reports success must have written them all.
                raise DatasetError(f"{output_dir}: the Beam {runner} runner finished without "
                                   f"shard {task.name}{SHARD_SUFFIX}; run the command again")
            results[task.name] = stats
        log(f"{len(todo)} shard(s) done by the Beam {runner} runner")
    elif num_workers > 1 and len(todo) > 1:
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
    if not manifest["totals"].get("num_records"):
        reasons = "; ".join(f"{s['item']}: {s['reason']}" for s in manifest["skipped"][:10])
        raise DatasetError(f"{output_dir}: no records were written, nothing kept "
                           f"({len(manifest['skipped'])} item(s) skipped: "
                           f"{reasons or 'the inputs yielded no frames'})")
    fileio.write_json_atomic(os.path.join(output_dir, MANIFEST), manifest)
    return manifest


def write_sequences(output_dir: str, writer: str, config, discover: Callable,
                    producer: Callable, *, log_fn: Callable[[str], None] = print,
                    **options) -> dict:
    """Converter driver: ``discover(config)`` gives the sequence specs and the items skipped
    during discovery; one shard per spec (``spec.shard_name``), produced from
    ``(config, spec)``; skipped items are logged and listed. ``options``: ``num_workers``,
    ``runner``, ``beam_options`` of :func:`write_dataset`."""
    specs, skipped = discover(config)
    for item in skipped:
        log_fn(f"skipping {item.item}: {item.reason}")
    tasks = [ShardTask(spec.shard_name, (config, spec)) for spec in specs]
    return write_dataset(output_dir, writer=writer, settings=config.settings(), tasks=tasks,
                         producer=producer, log=log_fn, extra_skipped=skipped, **options)


@dataclasses.dataclass(frozen=True)
class ConversionRun(beam_io.WriterRunner):
    """What a converter binary (``rig``, ``h36m``) takes beside the settings it stores in
    the manifest: a subclass nests its converter's config and says how :meth:`config`
    reads it.

    Attributes:
      output_dir: dataset directory to write (or resume).
      num_workers: sequences converted in parallel (processes).
      runner, beam_options: local processes or an Apache Beam runner
        (:class:`tfrecords_tools.beam_io.WriterRunner`).
    """

    output_dir: str = setting(None, "Dataset directory to write (or resume).", required=True,
                              path=True)
    num_workers: int = setting(1, "Sequences converted in parallel (processes).", minimum=1)

    # A subclass names its nested converter config and that config's selection list, in
    # which an empty value means "all" (the converter takes None for that).
    NESTED = ""
    ALL_IF_EMPTY = ""

    def config(self):
        """The converter's config, as its ``convert`` takes it (an empty selection: all)."""
        nested = getattr(self, self.NESTED)
        selection = getattr(nested, self.ALL_IF_EMPTY) or None
        return dataclasses.replace(nested, **{self.ALL_IF_EMPTY: selection})


def convert_from_flags(run_type: type, convert: Callable, binary: str) -> None:
    """A converter binary's work: its :class:`ConversionRun` from the parsed flags (ranges
    checked), ``convert(config, output_dir, num_workers=...)``, then one summary line."""
    flag_engine.warn_deprecated(binary)
    run = flag_engine.from_flags(run_type)
    manifest = convert(run.config(), run.output_dir, num_workers=run.num_workers,
                       runner=run.runner, beam_options=run.beam_options)
    t = manifest["totals"]
    print(f"wrote {t.get('num_records', 0)} records, {t.get('num_frames', 0)} timesteps, "
          f"{t.get('num_images', 0)} crops to {run.output_dir}; "
          f"{len(manifest['skipped'])} skipped items listed in manifest.json")


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
        "settings": fileio.jsonable(settings),
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
        raise DatasetError(f"dataset directory {data_dir} {locks.not_a_directory(data_dir)}")
    if not os.path.exists(path):
        raise DatasetError(f"{path} not found: {data_dir} is not a finished tf_synchro dataset "
                           f"(write one with `python -m tfrecords_tools.synthesize`)")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: expected a JSON object, found a {type(manifest).__name__}; "
                           f"re-create the dataset")
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema version {manifest.get('schema_version')}, this code "
                           f"reads {schema.SCHEMA_VERSION}")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        raise DatasetError(f"{path}: no 'shards' list of entries (written by another tool, or "
                           f"edited); re-create the dataset")
    for key in ("images_per", "totals"):
        if not isinstance(manifest.get(key), dict):
            raise DatasetError(f"{path}: no {key!r} table (written by another tool, or edited); "
                               f"re-create the dataset")
    seen = set()
    for shard in shards:
        _check_inside(data_dir, shard.get("file"))
        if shard["file"] in seen:
            raise DatasetError(f"{path}: shard {shard['file']!r} is listed twice; re-create "
                               f"the dataset")
        seen.add(shard["file"])
        missing = [k for k in ("num_records", "images_per") if k not in shard]
        if missing:
            raise DatasetError(f"{path}: shard entry {shard['file']!r} has no {missing}; "
                               f"re-create the dataset")
        _check_entry_types(path, shard)
        if not os.path.exists(os.path.join(data_dir, shard["file"])):
            raise DatasetError(f"{data_dir}: shard {shard['file']} listed in {MANIFEST} is missing")
    return manifest


def _check_entry_types(path: str, shard: dict) -> None:
    """A shard entry's counts are integers >= 0, its tallies tables of counts."""
    for key in ("num_records", "bytes"):
        value = shard.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DatasetError(f"{path}: shard {shard['file']!r}: {key}={value!r}, expected an "
                               f"integer >= 0; re-create the dataset")
    tables = shard["images_per"]
    if not isinstance(tables, dict) or not all(
            isinstance(t, dict) and all(isinstance(k, str) and isinstance(n, int)
                                        for k, n in t.items()) for t in tables.values()):
        raise DatasetError(f"{path}: shard {shard['file']!r}: images_per is not a table of "
                           f"counts per name; re-create the dataset")
    if not isinstance(shard.get("sha256", ""), str):
        raise DatasetError(f"{path}: shard {shard['file']!r}: sha256 is not a string; "
                           f"re-create the dataset")


def _is_pattern(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def check_subjects_present(data_dir: str, flag: str, names: Sequence[str]) -> None:
    """Checks, from the manifest, that every subject a flag names is in the dataset.

    A shell-style pattern (``U*``, as :func:`expand_subjects` takes) must match at least one
    of the dataset's subjects. Binaries call this before anything is read or written, so a
    misspelt evaluation subject stops the run at once rather than after training.

    Raises:
      DatasetError: ``--<flag>=<names>: subject 'X' is not in <data_dir> (it has ...)``
        (starts with the flag: exit status 2); the manifest's own errors.
    """
    have = sorted(load_manifest(data_dir)["images_per"]["subject"])
    for name in names:
        found = fnmatch.filter(have, name) if _is_pattern(name) else name in have
        if not found:
            what = (f"pattern {name!r} matches no subject of" if _is_pattern(name)
                    else f"subject {name!r} is not in")
            raise DatasetError(f"--{flag}={','.join(names)}: {what} {data_dir} (it has "
                               f"{','.join(have)})")


def expand_subjects(data_dir: str, names: Sequence[str], flag: Optional[str] = None) -> tuple:
    """Subject names with shell-style patterns (``U*``) expanded against a dataset's subjects.

    Plain names pass unchanged (and in order); a pattern becomes the dataset's matching
    subjects, sorted. Lets a flag say "every extra person" without listing hundreds.

    Raises:
      DatasetError: a pattern matches no subject of the dataset (naming ``--flag`` first
        when given, as :func:`check_subjects_present` does: exit status 2).
    """
    if not any(ch in name for name in names for ch in "*?["):
        return tuple(names)
    have = sorted(load_manifest(data_dir)["images_per"]["subject"])
    out: list = []
    for name in names:
        matched = fnmatch.filter(have, name) if any(ch in name for ch in "*?[") else [name]
        if not matched and flag:
            check_subjects_present(data_dir, flag, names)
        if not matched:
            raise DatasetError(f"{data_dir}: subject pattern {name!r} matches none of the "
                               f"dataset's subjects {have}")
        out += [m for m in matched if m not in out]
    return tuple(out)


def _check_inside(data_dir: str, name) -> None:
    # Writers store plain file names; anything else could make a reader follow a manifest
    # to files outside the dataset.
    if (not isinstance(name, str) or not name or name in (".", "..")
            or os.path.basename(name) != name or "\\" in name):
        raise DatasetError(f"{os.path.join(data_dir, MANIFEST)}: shard file {name!r} is not a "
                           f"plain file name inside the dataset folder")


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


# ----------------------------------------------------------------------------- reading checks

def verify_shards(data_dir: str, mode: str = "auto", subjects: Optional[Sequence[str]] = None,
                  skip_corrupt: bool = False, log: Callable[[str], None] = print) -> None:
    """The integrity check at the start of a run, before it writes anything.

    Compares shard sizes (and sha256) with the manifest.

    Args:
      data_dir: a finished dataset.
      mode: ``full`` (size and sha256), ``size``, ``none``, or ``auto``: ``full`` up to
        :data:`AUTO_FULL_VERIFY_BYTES` of shards (a few seconds), else ``size``.
      subjects: check only the shards holding these subjects (the ones the run reads).
      skip_corrupt: instead of failing, read each mismatching shard to count the records
        a run with ``--skip_corrupt_records`` will skip, and log them.
      log: where the one-line results go.

    Raises:
      DatasetError: naming the first shard whose size or checksum differs.
    """
    if mode not in VERIFY_MODES:
        raise ValueError(f"--verify_data={mode}: expected one of {VERIFY_MODES}")
    if mode == "none":
        return
    manifest = load_manifest(data_dir)
    shards = [s for s in manifest["shards"] if subjects is None
              or set(s["images_per"]["subject"]) & set(subjects)]
    paths = [os.path.join(data_dir, s["file"]) for s in shards]
    total = sum(os.path.getsize(p) for p in paths)
    if mode == "auto":
        mode = "full" if total <= AUTO_FULL_VERIFY_BYTES else "size"
    bad = []
    for shard, path in zip(shards, paths):
        size = os.path.getsize(path)
        if "bytes" in shard and size != shard["bytes"]:
            bad.append((shard, path, f"{size} bytes, the manifest says {shard['bytes']} "
                                     f"(truncated or replaced)"))
        elif mode == "full" and not shard.get("sha256"):
            bad.append((shard, path, "has no sha256 in the manifest (cannot be verified; "
                                     "--verify_data=size skips the checksum)"))
        elif mode == "full" and fileio.sha256_file(path) != shard["sha256"]:
            bad.append((shard, path, "sha256 differs from the manifest (damaged or changed)"))
    if bad and not skip_corrupt:
        shard, path, reason = bad[0]
        raise DatasetError(f"{path}: {reason}; `python -m tfrecords_tools.inspect {data_dir}` "
                           f"names the record; re-create the shard, or pass "
                           f"--skip_corrupt_records to skip what cannot be read"
                           + (f" ({len(bad) - 1} more shard(s) differ)" if len(bad) > 1 else ""))
    skipped = 0
    for shard, path, reason in bad:
        readable = sum(1 for _ in _readable_records(path))
        skipped += shard["num_records"] - readable
        log(f"warning: --skip_corrupt_records: {path}: {reason}; {readable} of "
            f"{shard['num_records']} records readable, the rest is skipped")
    if bad:
        log(f"warning: --skip_corrupt_records: {skipped} damaged or unreadable record(s) in "
            f"{len(bad)} shard(s) will be skipped")
    log(f"verified {len(paths)} shard(s) of {data_dir} ({mode}: "
        f"{'sizes and sha256' if mode == 'full' else 'sizes'}, {total / 2**20:.1f} MiB"
        f"{f', {len(bad)} damaged' if bad else ''})")


def _readable_records(path: str):
    try:
        yield from iter_records(path)
    except ValueError:
        return


def tf_reason(error) -> str:
    """The first line of a TensorFlow error without the graph-node prefix and op suffix
    (``{{function_node __wrapped__IteratorGetNext_...}} ... [Op:IteratorGetNext]``)."""
    line = (getattr(error, "message", None) or str(error)).splitlines()[0]
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:\w+\]", "", line).strip()


def iter_records(path: str):
    """Yields (index, serialized) of a TFRecord file.

    Raises:
      ValueError: ``record <i>: damaged or truncated (...)`` at the first bad record.
    """
    import tensorflow as tf
    it = iter(tf.data.TFRecordDataset(path))
    i = 0
    while True:
        try:
            data = next(it)
        except StopIteration:
            return
        except tf.errors.DataLossError as e:
            raise ValueError(f"record {i}: damaged or truncated ({tf_reason(e)})") from e
        yield i, data.numpy()
        i += 1


def first_damaged_record(paths: Sequence[str]) -> Optional[str]:
    """``"<shard>: record <i>: ..."`` for the first unreadable record in ``paths``, or None."""
    for path in paths:
        try:
            for _ in iter_records(path):
                pass
        except ValueError as e:
            return f"{path}: {e}"
    return None


def decode_jpeg_checked(data: bytes, size: int) -> np.ndarray:
    """Decodes JPEG bytes to an RGB array, strictly.

    libjpeg "recovers" truncated data by filling grey, so the SOI/EOI markers are checked
    too; ``tf.io.decode_jpeg`` (the training pipeline) rejects such data.

    Raises:
      ValueError: what is wrong with the bytes.
    """
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no start-of-image marker)")
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ValueError("truncated JPEG (no end-of-image marker)")
    import cv2  # Only the locating pass and the inspector decode JPEGs here.
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("JPEG does not decode")
    if img.shape != (size, size, 3):
        raise ValueError(f"JPEG decodes to shape {img.shape}, expected ({size}, {size}, 3)")
    return img[..., ::-1]


def image_errors(clip: schema.Clip):
    """Yields ``"image t=<t> view <camera>: <why>"`` for each JPEG of ``clip`` that does not
    decode (strictly: :func:`decode_jpeg_checked`)."""
    for t, row in enumerate(clip.images):
        for v, jpeg in enumerate(row):
            try:
                decode_jpeg_checked(jpeg, clip.image_size)
            except ValueError as e:
                yield f"image t={t} view {clip.camera_ids[v]}: {e}"


def first_undecodable_image(paths: Sequence[str]) -> Optional[str]:
    """``"<shard>: record <i>: image t=<t> view <camera>: <why>"`` for the first JPEG in
    ``paths`` that does not decode, or None.

    The locating pass behind a training or evaluation stop: ``tf.data`` names neither
    file nor record when ``decode_jpeg`` fails. Records that cannot be read or parsed
    are passed over (other errors name those).
    """
    for path in paths:
        try:
            for i, data in iter_records(path):
                try:
                    clip = schema.decode_clip(data, where=f"{path}: record {i}")
                except schema.SchemaError:
                    continue
                for error in image_errors(clip):
                    return f"{path}: record {i}: {error}"
        except ValueError:
            continue
    return None


class DataReadError(DatasetError):
    """A record could not be read during a run (damaged shard)."""


def _jpeg_error_line(error) -> Optional[str]:
    """The line of a TensorFlow error that says a JPEG did not decode, or None."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
    return next((line for line in lines if "jpeg" in line.lower() and line), None)


@contextlib.contextmanager
def naming_damaged_shard(paths: Sequence[str], what: str = "reading stopped"):
    """Turns TensorFlow's file-less data errors into ones naming shard and record.

    ``tf.data`` reports ``corrupted record at <offset>`` without the file, and a JPEG that
    does not decode (inside a record whose checksums are fine) as ``jpeg::Uncompress
    failed`` at a graph node; on such an error the shards in ``paths`` are read once more
    to find the record (and, for a JPEG, its timestep and view:
    :func:`first_undecodable_image`).
    """
    import tensorflow as tf
    try:
        yield
    except tf.errors.DataLossError as e:
        where = first_damaged_record(paths) or f"one of {len(paths)} shard(s)"
        raise DataReadError(f"{where}; {what} ({tf_reason(e)}); re-create the "
                            f"shard, or pass --skip_corrupt_records") from e
    except tf.errors.InvalidArgumentError as e:
        line = _jpeg_error_line(e)
        if line is None:
            raise
        where = (first_undecodable_image(paths)
                 or f"a JPEG in one of {len(paths)} shard(s) does not decode")
        raise DataReadError(f"{where}; {what} ({line}); re-create the shard, or pass "
                            f"--skip_corrupt_records to skip what cannot be decoded") from e
