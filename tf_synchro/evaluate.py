r"""Evaluates a fine-tuned pose model with the standard protocol and writes a report.

    python -m tf_synchro.evaluate --model_dir=/tmp/pose_ssl --data_dir=/tmp/synth \
        --subjects=S9,S11 --frame_step=64 --output_json=/tmp/pose_ssl/eval.json

Protocol (docs/DESIGN.md §2): test subjects S9 and S11, every frame whose original frame
number is a multiple of 64, all cameras; root-relative joints in the camera frame; MPJPE,
N-MPJPE and PA-MPJPE (:mod:`tf_synchro.metrics`) in mm. The JSON report holds the mean over
frames, the mean over actions (the usual Table layout), and breakdowns per action, joint,
camera and subject, with frame counts. A PNG next to it shows a few test crops with the
ground-truth and predicted 3D skeletons side by side.

A dataset may hold held-out motion families only the test subjects perform (the synthetic
generator's ``--unseen_actions``, listed in its manifest). Their frames are kept out of the
standard protocol's figures and reported on their own under ``unseen_motion`` (same
layout), so the standard test stays comparable across datasets.
"""
from __future__ import annotations

import collections
import json
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_synchro import finetune, metrics
from tf_synchro.data import augment, frames
from tfrecords_tools import cli, dataset_io, run_lock, skeleton


# ----------------------------------------------------------------------------- predictions

def predict(model: keras.Model, dataset: tf.data.Dataset, num_examples: int = 0,
            seed: int = 0) -> dict:
    """Runs ``model`` over an :func:`frames.eval_dataset`; returns numpy arrays.

    Returns:
      ``{"pred", "gt": [N, 17, 3] mm, "subject", "action", "camera", "sequence_id": [N] str,
      "frame_index": [N] int, "example_index": [K] int, "images": [K, S, S, 3] uint8}``
      where the K <= ``num_examples`` examples are a uniform random (seeded) sample of
      all N frames, in order (reservoir sampling: only K images are ever kept).
    """
    predict_fn = tf.function(lambda x: model(x, training=False))
    out = collections.defaultdict(list)
    rng = np.random.default_rng(seed)
    reservoir: dict = {}  # frame position -> image
    seen = 0
    for images, joints, meta in dataset:
        out["pred"].append(np.asarray(predict_fn(images), np.float32))
        out["gt"].append(joints.numpy())
        for k, v in meta.items():
            v = v.numpy()
            out[k].append(v.astype(str) if v.dtype == object else v)
        if num_examples:
            for i, image in enumerate(images.numpy()):
                pos = seen + i
                if len(reservoir) < num_examples:
                    reservoir[pos] = image
                elif (j := rng.integers(0, pos + 1)) < num_examples:
                    del reservoir[sorted(reservoir)[j]]
                    reservoir[pos] = image
        seen += len(images)
    if not out["pred"]:
        return {}
    result = {k: np.concatenate(v) for k, v in out.items()}
    order = sorted(reservoir)
    result["example_index"] = np.asarray(order, np.int64)
    result["images"] = np.clip(np.stack([reservoir[i] for i in order]) if order else
                               np.zeros((0, 1, 1, 3)), 0, 255).astype(np.uint8)
    return result


# ----------------------------------------------------------------------------- report

def per_joint_errors(pred: np.ndarray, gt: np.ndarray, batch: int = 4096) -> dict:
    """``{metric: [N, 17]}`` per-frame, per-joint errors (mm), computed with keras.ops."""
    fns = {"mpjpe": metrics.mpjpe, "n_mpjpe": metrics.n_mpjpe, "pa_mpjpe": metrics.pa_mpjpe}
    return {name: np.concatenate([keras.ops.convert_to_numpy(fn(pred[i:i + batch],
                                                                gt[i:i + batch]))
                                  for i in range(0, len(pred), batch)])
            for name, fn in fns.items()}


def _summary(errors: dict, mask: Optional[np.ndarray] = None) -> dict:
    out = {}
    for name, e in errors.items():
        e = e if mask is None else e[mask]
        out[name] = float(e.mean())
    out["num_frames"] = int(len(next(iter(errors.values()))) if mask is None else mask.sum())
    return out


def build_report(pred: np.ndarray, gt: np.ndarray, meta: dict) -> dict:
    """Protocol report: means, per action / joint / camera / subject, frame counts (mm).

    Args:
      pred, gt: ``[N, 17, 3]`` root-relative camera-frame joints (mm).
      meta: ``{"subject", "action", "camera": [N] str}``.
    """
    errors = per_joint_errors(pred, gt)
    per_frame = {k: v.mean(-1) for k, v in errors.items()}
    report = {"units": "mm", "root_joint": skeleton.JOINT_NAMES[skeleton.ROOT],
              "num_frames": int(len(pred)), "mean": _summary(per_frame)}
    for key, field in (("per_action", "action"), ("per_camera", "camera"),
                       ("per_subject", "subject")):
        values = np.asarray(meta[field])
        report[key] = {str(v): _summary(per_frame, values == v) for v in sorted(set(values))}
    # Table convention on Human3.6M: the average of the per-action means.
    report["mean_over_actions"] = {
        name: float(np.mean([a[name] for a in report["per_action"].values()]))
        for name in metrics.METRICS}
    report["per_joint"] = {
        joint: {name: float(errors[name][:, j].mean()) for name in metrics.METRICS}
        for j, joint in enumerate(skeleton.JOINT_NAMES)}
    return report


# ----------------------------------------------------------------------------- figure

def _draw_skeleton(ax, joints: np.ndarray, title: str, limits: float) -> None:
    # Camera frame is x right, y down, z forward: plot (x, z, -y) so "up" is up.
    x, y, z = joints[:, 0], joints[:, 2], -joints[:, 1]
    for parent, child in skeleton.BONES:
        side = (child in skeleton.LEFT_JOINTS, child in skeleton.RIGHT_JOINTS)
        colour = "tab:blue" if side[0] else "tab:red" if side[1] else "0.3"
        ax.plot([x[parent], x[child]], [y[parent], y[child]], [z[parent], z[child]],
                color=colour, lw=2)
    ax.scatter(x, y, z, s=6, c="k")
    ax.set_xlim(-limits, limits)
    ax.set_ylim(-limits, limits)
    ax.set_zlim(-limits, limits)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=5)
    ax.set_xlabel("x", fontsize=6)
    ax.set_ylabel("z (depth)", fontsize=6)
    ax.set_zlabel("-y (up)", fontsize=6)
    ax.view_init(elev=10, azim=-80)  # Roughly the camera's own viewpoint.


def save_figure(path: str, images: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                captions: Sequence[str]) -> None:
    """PNG: one row per example, crop | ground truth 3D | prediction 3D (left blue, right red)."""
    import matplotlib
    matplotlib.use("Agg")  # Headless: no display on the training machines.
    import matplotlib.pyplot as plt

    n = len(images)
    fig = plt.figure(figsize=(9, 3 * n))
    limits = float(max(np.abs(gt).max(), np.abs(pred).max(), 1.0))
    for i in range(n):
        ax = fig.add_subplot(n, 3, 3 * i + 1)
        ax.imshow(images[i])
        ax.set_title(captions[i], fontsize=8)
        ax.axis("off")
        err = float(np.linalg.norm(pred[i] - gt[i], axis=-1).mean())
        _draw_skeleton(fig.add_subplot(n, 3, 3 * i + 2, projection="3d"), gt[i],
                       "ground truth", limits)
        _draw_skeleton(fig.add_subplot(n, 3, 3 * i + 3, projection="3d"), pred[i],
                       f"prediction (MPJPE {err:.0f} mm)", limits)
    fig.tight_layout()
    run_lock.save_figure(fig, path, dpi=80)


# ----------------------------------------------------------------------------- the run

def unseen_actions(data_dir: str) -> tuple:
    """The held-out motion families of a dataset (its manifest's ``unseen_actions``)."""
    manifest = dataset_io.load_manifest(data_dir)
    return tuple(manifest.get("settings", {}).get("unseen_actions", ()))


def _subset(out: dict, mask: np.ndarray) -> dict:
    return {k: out[k][mask] for k in ("pred", "gt", "subject", "action", "camera")}


def evaluate(model_dir: str, data_dir: str, subjects: Sequence[str] = ("S9", "S11"),
             frame_step: int = 64, batch_size: int = 64, output_json: Optional[str] = None,
             output_png: Optional[str] = None, num_examples: int = 4,
             model: Optional[keras.Model] = None, skip_corrupt_records: bool = False) -> dict:
    """Evaluates the finished run in ``model_dir`` (or ``model``) on ``subjects``.

    Args:
      model_dir: finished fine-tuning run (``pose_model.keras`` + ``config.json``).
      data_dir: dataset with 3D labels for ``subjects``.
      subjects: test subjects.
      frame_step: keep frames whose original frame number is a multiple of this.
      batch_size: evaluation batch.
      output_json: where to write the report (None: not written).
      output_png: where to write the example figure (None: not drawn).
      num_examples: rows of the figure.
      model: evaluate this model instead of loading ``pose_model.keras`` (the config.json
        of ``model_dir`` still gives the preprocessing).
      skip_corrupt_records: skip damaged records instead of stopping.

    Raises:
      finetune.UnfinishedModelDirError: ``model_dir`` holds no finished run.
      dataset_io.DatasetError: a subject is missing or has no 3D labels.
    """
    start = time.time()
    if model is None:
        model, config = finetune.load_finished(model_dir)
    else:
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
    files = frames.labelled_files(data_dir, subjects)
    model_cfg = config["model"]
    aug = augment.AugmentConfig(output_size=int(model_cfg["input_size"]),
                                eval_scale=float(model_cfg["preprocess"]["crop_scale"]),
                                dct_method=model_cfg["preprocess"]["dct_method"])
    frame_config = frames.FrameConfig(subjects=tuple(subjects), frame_step=frame_step,
                                      augment=aug, skip_corrupt_records=skip_corrupt_records)
    ds = frames.eval_dataset(files, frame_config, batch_size)
    with dataset_io.naming_damaged_shard(files, "evaluation stopped"):
        out = predict(model, ds, num_examples=num_examples if output_png else 0)
    if not out:
        raise dataset_io.DatasetError(
            f"{data_dir}: no labelled frame of subjects {list(subjects)} has a frame number "
            f"that is a multiple of --frame_step={frame_step}")
    empty = [s for s in subjects if s not in set(out["subject"])]
    if empty:
        raise dataset_io.DatasetError(
            f"{data_dir}: subjects {empty} have no labelled frames at --frame_step={frame_step}")
    unseen = np.isin(out["action"], unseen_actions(data_dir))
    if unseen.all():
        raise dataset_io.DatasetError(
            f"{data_dir}: subjects {list(subjects)} have only held-out motion families "
            f"({sorted(set(out['action']))}); the standard test needs standard actions")
    standard = _subset(out, ~unseen)
    report = build_report(standard["pred"], standard["gt"], standard)
    if unseen.any():
        held_out = _subset(out, unseen)
        report["unseen_motion"] = build_report(held_out["pred"], held_out["gt"], held_out)
    report.update({"model_dir": model_dir, "data_dir": data_dir, "subjects": list(subjects),
                   "frame_step": frame_step, "seconds": round(time.time() - start, 1)})
    if output_json:
        os.makedirs(os.path.dirname(os.path.abspath(output_json)), exist_ok=True)
        dataset_io.write_json_atomic(output_json, report)
    if output_png and num_examples > 0:
        idx = out["example_index"]
        captions = [f"{out['subject'][i]} {out['action'][i]} cam {out['camera'][i]} "
                    f"frame {out['frame_index'][i]}" for i in idx]
        save_figure(output_png, out["images"], out["gt"][idx], out["pred"][idx], captions)
    return report


def format_report(report: dict) -> str:
    """Short human-readable table of a report."""
    lines = [f"{report['num_frames']} frames of {','.join(report['subjects'])} "
             f"(frame_step {report['frame_step']}), mm:",
             f"{'':24s}{'MPJPE':>9s}{'N-MPJPE':>9s}{'PA-MPJPE':>9s}{'frames':>8s}"]
    rows = [("mean (frames)", report["mean"]), ("mean (actions)", report["mean_over_actions"])]
    rows += [(f"action {k}", v) for k, v in report["per_action"].items()]
    rows += [(f"camera {k}", v) for k, v in report["per_camera"].items()]
    if "unseen_motion" in report:
        unseen = report["unseen_motion"]
        rows += [("unseen motion (actions)", unseen["mean_over_actions"])]
        rows += [(f"unseen {k}", v) for k, v in unseen["per_action"].items()]
    for name, r in rows:
        frames_col = f"{r['num_frames']:8d}" if "num_frames" in r else ""
        lines.append(f"{name[:24]:24s}{r['mpjpe']:9.1f}{r['n_mpjpe']:9.1f}"
                     f"{r['pa_mpjpe']:9.1f}{frames_col}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- binary

def _define_flags():
    from absl import flags
    flags.DEFINE_string("model_dir", None, "Finished fine-tuning run directory.")
    flags.DEFINE_string("data_dir", None, "Dataset with 3D labels for --subjects.")
    flags.DEFINE_list("subjects", ["S9", "S11"], "Test subjects.")
    flags.DEFINE_integer("frame_step", 64, "Evaluate frames whose number is a multiple of it.")
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
    flags.DEFINE_string("output_json", None, "Report path (default: model_dir/eval.json).")
    flags.DEFINE_string("output_png", None, "Figure path (default: output_json with .png).")
    flags.DEFINE_integer("num_examples", 4, "Examples in the figure (0: no figure).")
    cli.define_data_check_flags("--subjects the model was trained on")
    flags.mark_flags_as_required(["model_dir", "data_dir"])


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    finetune.check_held_out(f.model_dir, f.subjects, f.allow_subject_overlap)
    dataset_io.verify_shards(f.data_dir, f.verify_data, f.subjects, f.skip_corrupt_records)
    output_json = f.output_json or os.path.join(f.model_dir, "eval.json")
    output_png = f.output_png or os.path.splitext(output_json)[0] + ".png"
    run_lock.clean_stale_temps(os.path.dirname(os.path.abspath(output_json)))
    report = evaluate(f.model_dir, f.data_dir, tuple(f.subjects), f.frame_step, f.batch_size,
                      output_json, output_png, f.num_examples,
                      skip_corrupt_records=f.skip_corrupt_records)
    print(format_report(report))
    print(f"wrote {output_json} and {output_png}")


if __name__ == "__main__":
    from tfrecords_tools import cli
    _define_flags()
    cli.run(main)
