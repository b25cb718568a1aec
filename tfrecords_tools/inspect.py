r"""Verifies a tf_synchro dataset and draws a contact sheet with the 2D skeleton overlaid.

  python -m tfrecords_tools.inspect DATA_DIR [--contact_sheet=PATH] [--num_sequences=4]

Checks (any dataset in the record schema, labelled or not):
  * ``manifest.json`` exists, has this code's schema version, and lists existing shards;
  * every shard's sha256 matches the manifest (and its sidecar);
  * every record parses and validates against :mod:`tfrecords_tools.schema`;
  * every JPEG decodes to a crop of the record's ``image/size``;
  * counts (records, timesteps, images, labelled timesteps, images per subject/action/view)
    match the manifest, per shard and in total.
Prints a summary table, writes a PNG contact sheet of synchronized views at a few
timesteps (projected 3D joints drawn over each crop when the record has them), and exits
non-zero naming the shard and record at fault when something is corrupt or missing.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Callable, Optional

import cv2
import numpy as np

from tfrecords_tools import cameras as cameras_lib
from tfrecords_tools import crops, dataset_io, schema, skeleton
from tfrecords_tools.runtime import fileio, locks
from tfrecords_tools.runtime import flags as flag_engine
from tfrecords_tools.runtime.flags import setting

BINARY = "tfrecords_tools.inspect"
MAX_ERRORS = 20


class InspectError(dataset_io.DatasetError):
    """The dataset is corrupt, incomplete or inconsistent with its manifest."""


@dataclasses.dataclass
class Report:
    """What the inspector found."""

    data_dir: str
    num_shards: int = 0
    num_records: int = 0
    num_frames: int = 0
    num_images: int = 0
    num_labelled_frames: int = 0
    image_sizes: set = dataclasses.field(default_factory=set)
    camera_ids: set = dataclasses.field(default_factory=set)
    has_background: set = dataclasses.field(default_factory=set)
    table: dict = dataclasses.field(default_factory=dict)   # (subject, action) -> counts
    errors: list = dataclasses.field(default_factory=list)
    sheet_samples: list = dataclasses.field(default_factory=list)
    contact_sheet: Optional[str] = None
    stray: list = dataclasses.field(default_factory=list)  # files that are not the dataset's


def camera_of(clip: schema.Clip, v: int) -> cameras_lib.Camera:
    """The :class:`~tfrecords_tools.cameras.Camera` of view ``v`` stored in a record."""
    fx, fy, cx, cy = (float(x) for x in clip.intrinsics[v])
    w, h = (int(x) for x in clip.image_wh[v])
    return cameras_lib.Camera(clip.camera_ids[v], fx, fy, cx, cy, w, h,
                              np.asarray(clip.rotation[v], np.float64),
                              np.asarray(clip.translation[v], np.float64),
                              np.asarray(clip.distortion[v], np.float64))


def _check_shard(data_dir: str, shard: dict, report: Report, want_samples: bool) -> list:
    """Checks one shard; returns up to a few sample clips for the contact sheet."""
    name = shard["file"]
    path = os.path.join(data_dir, name)
    errors = report.errors
    if not os.path.exists(path):
        errors.append(f"shard {name}: listed in {dataset_io.MANIFEST} but missing")
        return []
    digest = fileio.sha256_file(path)
    if digest != shard.get("sha256"):
        errors.append(f"shard {name}: sha256 {digest[:12]}... does not match the manifest's "
                      f"{str(shard.get('sha256'))[:12]}... (file changed or damaged)")
    counts = collections.Counter()
    per = {"subject": collections.Counter(), "action": collections.Counter(),
           "view": collections.Counter()}
    samples = []
    try:
        for i, data in dataset_io.iter_records(path):
            where = f"shard {name} record {i}"
            try:
                clip = schema.decode_clip(data, where=where)
            except schema.SchemaError as e:
                errors.append(str(e))
                continue
            errors.extend(f"{where}: {error}" for error in dataset_io.image_errors(clip))
            n, nv = clip.num_frames, clip.num_views
            counts.update(num_records=1, num_frames=n, num_images=n * nv,
                          num_labelled_frames=n if clip.joints3d_world is not None else 0)
            per["subject"][clip.subject] += n * nv
            per["action"][clip.action] += n * nv
            for cam in clip.camera_ids:
                per["view"][cam] += n
            row = report.table.setdefault((clip.subject, clip.action), collections.Counter())
            row.update(records=1, frames=n, images=n * nv,
                       labelled=n if clip.joints3d_world is not None else 0)
            report.image_sizes.add(clip.image_size)
            report.camera_ids.update(clip.camera_ids)
            report.has_background.add(clip.has_background)
            if want_samples and not samples:
                samples.append(clip)
            if len(errors) >= MAX_ERRORS:
                return samples
    except ValueError as e:
        errors.append(f"shard {name} {e}")
        return samples
    for key in ("num_records", "num_frames", "num_images", "num_labelled_frames"):
        if counts[key] != shard.get(key):
            errors.append(f"shard {name}: {counts[key]} {key[4:]} read, manifest says "
                          f"{shard.get(key)}")
    for kind, c in per.items():
        if dict(c) != shard.get("images_per", {}).get(kind):
            errors.append(f"shard {name}: images per {kind} {dict(c)} differ from the manifest's "
                          f"{shard.get('images_per', {}).get(kind)}")
    for key in counts:
        setattr(report, key, getattr(report, key) + counts[key])
    return samples


def stray_files(data_dir: str, manifest: dict) -> list[str]:
    """Files in ``data_dir`` that the manifest does not account for.

    Temporaries of killed writers (``*.tmp-<pid>``), shards missing from the manifest and
    anything else; the lock of a writer still running is not stray.
    """
    known = {dataset_io.MANIFEST, dataset_io.DATASET_INFO, "contact_sheet.png"}
    for shard in manifest.get("shards", []):
        known |= {shard["file"], shard["file"] + ".json"}
    lock = os.path.join(data_dir, locks.LOCK_FILE)
    if os.path.exists(lock) and not locks.stale_lock(lock):
        known.add(locks.LOCK_FILE)
    return sorted(n for n in os.listdir(data_dir) if n not in known)


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    return [items[int(round(i * (len(items) - 1) / (k - 1)))] for i in range(k)] if k > 1 else items[:1]


def inspect_dataset(data_dir: str, contact_sheet: Optional[str] = None, num_sequences: int = 4,
                    num_timesteps: int = 3, log: Callable[[str], None] = print) -> Report:
    """Verifies ``data_dir`` and optionally writes a contact sheet PNG.

    Raises:
      InspectError: naming the shard/record at fault (also when the manifest is missing).
    """
    try:
        manifest = dataset_io.load_manifest(data_dir)
    except dataset_io.DatasetError as e:
        # Missing shards are reported per shard below; other manifest problems stop here.
        if "is missing" not in str(e):
            raise InspectError(str(e)) from e
        import json
        with open(os.path.join(data_dir, dataset_io.MANIFEST)) as f:
            manifest = json.load(f)
    report = Report(data_dir=data_dir, num_shards=len(manifest.get("shards", [])))
    shards = manifest.get("shards", [])
    sample_shards = {s["file"] for s in _spread(shards, num_sequences)}
    samples = []
    for k, shard in enumerate(shards, 1):
        samples += _check_shard(data_dir, shard, report, shard["file"] in sample_shards)
        log(f"checked {shard['file']} ({k}/{len(shards)})")
        if len(report.errors) >= MAX_ERRORS:
            break
    if not report.errors:
        totals = manifest.get("totals", {})
        for key in ("num_records", "num_frames", "num_images", "num_labelled_frames"):
            if totals.get(key) != getattr(report, key):
                report.errors.append(f"{dataset_io.MANIFEST}: totals[{key}]={totals.get(key)}, "
                                     f"shards hold {getattr(report, key)}")
    report.stray = stray_files(data_dir, manifest)
    if report.stray:
        log(f"note: {len(report.stray)} stray file(s), not part of the dataset (ignored by "
            f"readers; re-running the writer removes temporaries of killed runs): "
            f"{report.stray[:5]}")
    log(summary_table(report))
    if contact_sheet and samples:
        report.sheet_samples = [f"{c.sequence_id} #{c.clip_index}" for c in samples]
        try:
            write_contact_sheet(contact_sheet, samples, num_timesteps)
            report.contact_sheet = contact_sheet
            log(f"contact sheet: {contact_sheet}")
        except (OSError, ValueError) as e:  # e.g. a read-only dataset directory
            log(f"warning: could not write the contact sheet {contact_sheet} ({e}); "
                f"pass --contact_sheet=PATH elsewhere")
    if report.errors:
        for problem in report.errors[:MAX_ERRORS]:
            log(f"problem: {problem}")
        # One line (the binary's error line); the problems are also logged one per line.
        raise InspectError(f"{data_dir}: {len(report.errors)} problem(s): "
                           + "; ".join(report.errors[:MAX_ERRORS]))
    return report


def summary_table(report: Report) -> str:
    """A fixed-width table of records/timesteps/images per subject and action."""
    lines = [f"{'subject':8} {'action':14} {'records':>8} {'timesteps':>10} {'images':>9} "
             f"{'labelled':>9}"]
    tot = collections.Counter()
    for (subj, act), c in sorted(report.table.items(), key=lambda kv: (_subject_key(kv[0][0]), kv[0][1])):
        lines.append(f"{subj:8} {act:14} {c['records']:8d} {c['frames']:10d} {c['images']:9d} "
                     f"{c['labelled']:9d}")
        tot.update(c)
    lines.append(f"{'total':8} {'':14} {tot['records']:8d} {tot['frames']:10d} {tot['images']:9d} "
                 f"{tot['labelled']:9d}")
    lines.append(f"shards {report.num_shards}; crop sizes {sorted(report.image_sizes)}; views "
                 f"{sorted(report.camera_ids)}; background {sorted(report.has_background)}")
    return "\n".join(lines)


def _subject_key(name: str):
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 1 << 30, name)


# ----------------------------------------------------------------------------- contact sheet

_CENTRE_BGR, _LEFT_BGR, _RIGHT_BGR = (80, 220, 80), (255, 160, 40), (40, 60, 255)


def joints_in_crop(clip: schema.Clip, t: int, v: int) -> np.ndarray:
    """Projected 3D joints of timestep ``t`` in view ``v``, in crop pixels [17, 2]."""
    uv = camera_of(clip, v).project(clip.joints3d_world[t])
    return crops.image_to_crop(uv, clip.crop_boxes[t, v], clip.image_size)


def draw_skeleton(img_bgr: np.ndarray, uv: np.ndarray, scale: float = 1.0) -> None:
    """Draws bones (left orange-blue, right red, centre green) and joints in place."""
    shift = 4
    p = np.round(np.asarray(uv) * scale * (1 << shift)).astype(np.int64).tolist()
    for a, b in skeleton.BONES:
        col = (_LEFT_BGR if b in skeleton.LEFT_JOINTS else
               _RIGHT_BGR if b in skeleton.RIGHT_JOINTS else _CENTRE_BGR)
        cv2.line(img_bgr, p[a], p[b], col, 1, cv2.LINE_AA, shift)
    for j in range(len(p)):  # thin lines and small dots: the body under them stays visible
        cv2.circle(img_bgr, p[j], 3 << (shift - 1), (255, 255, 255), -1, cv2.LINE_AA, shift)


def contact_sheet_image(clips: list, num_timesteps: int = 3, cell: int = 160) -> np.ndarray:
    """Rows: (clip, timestep); columns: views. Returns a BGR image."""
    rows = []
    for clip in clips:
        ts = _spread(list(range(clip.num_frames)), num_timesteps)
        for t in ts:
            cells = []
            for v in range(clip.num_views):
                img = dataset_io.decode_jpeg_checked(clip.images[t][v], clip.image_size)[..., ::-1]
                img = cv2.resize(img, (cell, cell), interpolation=cv2.INTER_LINEAR).copy()
                if clip.joints3d_world is not None:
                    draw_skeleton(img, joints_in_crop(clip, t, v), cell / clip.image_size)
                cv2.putText(img, clip.camera_ids[v], (3, cell - 5), cv2.FONT_HERSHEY_SIMPLEX,
                            0.35, (255, 255, 255), 1, cv2.LINE_AA)
                cv2.rectangle(img, (0, 0), (cell - 1, cell - 1), (90, 90, 90), 1)
                cells.append(img)
            label = np.full((18, cell * clip.num_views, 3), 40, np.uint8)
            cv2.putText(label, f"{clip.sequence_id}  clip {clip.clip_index}  frame "
                        f"{int(clip.frame_index[t])}" + ("" if clip.joints3d_world is not None
                                                        else "  (no 3D labels)"),
                        (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
            rows.append(np.concatenate([label, np.concatenate(cells, 1)], 0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, 0)


def write_contact_sheet(path: str, clips: list, num_timesteps: int = 3) -> None:
    """Writes the contact sheet PNG atomically (temp file, then rename)."""
    img = contact_sheet_image(clips, num_timesteps)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"could not encode the contact sheet for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- binary

@dataclasses.dataclass(frozen=True)
class InspectConfig:
    """The binary's settings (the dataset directory is its one positional argument).

    Attributes:
      contact_sheet: PNG path of the contact sheet (None: ``DATA_DIR/contact_sheet.png``;
        ``''``: none).
      num_sequences: records (spread over shards) on the contact sheet.
      num_timesteps: timesteps per record on the contact sheet.
    """

    contact_sheet: Optional[str] = setting(None, "PNG path of the contact sheet (default "
                                           "DATA_DIR/contact_sheet.png; '' for none).")
    num_sequences: int = setting(4, "Records (spread over shards) on the contact sheet.",
                                 minimum=1)
    num_timesteps: int = setting(3, "Timesteps per record on the contact sheet.", minimum=1)


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`InspectConfig`."""
    flag_engine.define_flags(InspectConfig, flag_values, binary=BINARY)


def main(argv) -> None:
    """The one binary with a positional argument: the dataset directory."""
    from absl import app
    if len(argv) != 2 or not argv[1].strip():
        raise app.UsageError("usage: python -m tfrecords_tools.inspect DATA_DIR [flags]"
                             + (" (DATA_DIR is empty)" if len(argv) == 2 else ""))
    flag_engine.warn_deprecated(BINARY)
    config = flag_engine.from_flags(InspectConfig)
    data_dir = argv[1]
    sheet = (os.path.join(data_dir, "contact_sheet.png") if config.contact_sheet is None
             else config.contact_sheet or None)
    report = inspect_dataset(data_dir, contact_sheet=sheet, num_sequences=config.num_sequences,
                             num_timesteps=config.num_timesteps)
    stray = f"; {len(report.stray)} stray file(s) listed above" if report.stray else ""
    print(f"OK: {report.num_shards} shards, {report.num_records} records, "
          f"{report.num_images} images verified{stray}")


if __name__ == "__main__":
    from tfrecords_tools.runtime import cli
    define_flags()
    cli.run(main)
