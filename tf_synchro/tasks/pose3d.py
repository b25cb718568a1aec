"""Monocular 3D pose: build the pose model on the shared encoder, train it, predict, report.

* :func:`build_encoder`, :func:`build_model` — the encoder to fine-tune (pretrained or
  fresh) and the compiled pose model on it; what a fine-tuning checkpoint depends on is
  its run record (:class:`run_dir.PoseRecord`).
* :func:`train` — one fine-tuning run (docs/DESIGN.md §1): the stem and the first
  ``--freeze_blocks`` residual stages frozen, AdamW with a cosine schedule, resumable
  through :mod:`tf_synchro.train_lib`; at the end ``pose_model.keras`` is written
  (atomically) and ``config.json`` marks the run finished.
* :func:`predict`, :func:`build_report`, :func:`evaluate`, :func:`format_report` — the
  evaluation protocol (docs/DESIGN.md §2): test subjects S9 and S11, every frame whose
  original frame number is a multiple of 64, all cameras; root-relative joints in the
  camera frame; MPJPE, N-MPJPE and PA-MPJPE (:mod:`tf_synchro.tasks.metrics`) in mm. The report
  holds the mean over frames, the mean over actions (the usual table layout), and
  breakdowns per action, joint, camera and subject, with frame counts; a PNG shows a few
  test crops with the ground-truth and predicted skeletons.

A dataset may hold held-out motion families only the test subjects perform (the synthetic
generator's ``--unseen_actions``, listed in its manifest). Their frames are kept out of the
standard protocol's figures and reported on their own under ``unseen_motion`` (same
layout), so the standard test stays comparable across datasets. Imported motion-capture
clips only the test subjects perform (``--test_motion_dir``, the manifest's
``test_motion_actions``) are likewise reported under ``real_motion``.

The binaries ``tf_synchro.finetune`` and ``tf_synchro.evaluate`` are thin shells over these
functions.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_synchro import configs, run_dir, train_lib
from tf_synchro.configs import FinetuneConfig
from tf_synchro.data import frames, records
from tf_synchro.models import pose, resnet
from tf_synchro.tasks import metrics
from tfrecords_tools import dataset_io, skeleton
from tfrecords_tools.runtime import figures, fileio, locks


# ----------------------------------------------------------------------------- building

def build_encoder(config: FinetuneConfig) -> keras.Model:
    """The encoder to fine-tune: loaded from ``init_from`` or freshly initialised."""
    m = config.model
    if config.init_from == configs.SCRATCH:
        return resnet.build_encoder(m.arch, m.width, m.input_size)
    return run_dir.load_encoder(config.init_from, expect=m.encoder_settings())


def build_model(config: FinetuneConfig, stats: tuple) -> keras.Model:
    """Builds and compiles the pose model (call under ``strategy.scope()``): the encoder of
    :func:`build_encoder` with its first ``--freeze_blocks`` stages frozen, the head, and
    ``stats`` (target mean and std, mm) for the loss and the output in mm."""
    opt = config.optimizer
    mean, std = stats
    train_lib.seed_weights(config.runtime.seed)
    encoder = build_encoder(config)
    resnet.freeze_blocks(encoder, config.freeze_blocks)
    model = pose.build_pose_model(encoder, mean, std, config.pose_head_units, config.dropout)
    model.compile(
        optimizer=train_lib.make_optimizer(opt.train_steps, opt.learning_rate,
                                           opt.final_learning_rate, opt.weight_decay,
                                           opt.warmup_steps),
        loss=pose.StandardizedPoseLoss(std), metrics=metrics.pose_metrics())
    return model


def check_settings(config: FinetuneConfig) -> None:
    """Checks that need no data (run before anything is read or written).

    Raises:
      ValueError: naming the flag at fault.
    """
    config.model.check_encoder()
    config.optimizer.check()
    config.check()
    if config.init_from != configs.SCRATCH and not config.init_from:
        raise ValueError(f"--init_from must be a pre-training model_dir or '{configs.SCRATCH}'")
    if config.init_from != configs.SCRATCH and not os.path.isdir(config.init_from):
        # Checked here too (run_dir.load_encoder does) so that a typo fails before the
        # target statistics are read.
        raise run_dir.IncompatibleEncoderError(
            f"--init_from={config.init_from} {locks.not_a_directory(config.init_from, 'no such directory')} "
            f"(expected a pre-training model_dir or '{configs.SCRATCH}')")
    if not config.label_subjects:
        raise ValueError("--label_subjects must name at least one subject")


# ----------------------------------------------------------------------------- training

def train(config: FinetuneConfig, strategy: Optional[tf.distribute.Strategy] = None,
          verbose: bool = True) -> train_lib.TrainResult:
    """Fine-tunes (or resumes) and saves ``pose_model.keras``.

    Args:
      config: run settings.
      strategy: distribution strategy (created first thing in ``main``); default: none.
      verbose: print progress.

    Returns:
      the trained model and the summary ``{"initial_step", "final_step", "seconds",
      "frozen_layers", "trainable_params", "pose_model", "skipped_undecodable_frames"}``.

    Raises:
      ValueError subclasses naming the bad flag, file or value: unlabelled or missing
      subjects, an incompatible ``--init_from``, a model_dir holding another run.
    """
    check_settings(config)
    strategy = strategy or tf.distribute.get_strategy()
    chief = train_lib.is_chief(strategy)
    start = time.time()
    train_lib.replica_batch_size(config.optimizer.batch_size, strategy)  # Raises if bad.
    # --- data: fail before building anything if the labels are not there.
    train_lib.check_data(config.data_dir, {"label_subjects": config.label_subjects},
                         config.data_check, log=print if verbose and chief else lambda _: None)
    files = frames.labelled_files(config.data_dir, config.label_subjects)
    with run_dir.hold(config.model_dir, chief):
        return _train(config, strategy, chief, files, verbose, start)


def _train(config: FinetuneConfig, strategy: tf.distribute.Strategy, chief: bool, files: list,
           verbose: bool, start: float) -> dict:
    """The part of :func:`train` that writes to model_dir (its lock held)."""
    frame_config = config.frame_config()
    opt, m = config.optimizer, config.model
    stats = run_dir.stored_statistics(config.model_dir)
    if stats is None:
        with dataset_io.naming_damaged_shard(files):
            stats = frames.joint_statistics(files, frame_config, config.max_stat_frames)

    # --- model: built under the strategy so its variables are mirrored; a bad --init_from
    # fails here, before anything is written to model_dir.
    train_lib.set_mixed_precision(config.runtime.mixed_precision)
    with strategy.scope():
        model = build_model(config, stats)
    frozen = [layer.name for layer in pose.pose_encoder(model).layers  # resnet.freeze_blocks'
              if not layer.trainable]
    stored = run_dir.prepare(config.model_dir,
                             run_dir.PoseRecord.from_config(config, *stats), chief=chief)
    trainable = int(sum(keras.ops.size(w) for w in model.trainable_weights))
    if verbose and chief:
        print(f"fine-tuning {m.arch} x{m.width} at {m.input_size}px from "
              f"{config.init_from}: {len(frozen)} layers frozen (stem + {config.freeze_blocks} "
              f"stages), {trainable:,} trainable parameters")

    # --- train (resumes from model_dir/backup; the data seed moves with the resumed step).
    frame_config = dataclasses.replace(
        frame_config, seed=train_lib.data_seed(config.runtime.seed, config.model_dir))
    if config.data_check.skip_corrupt_records:
        records.prepare_decode_counter()  # Outside the strategy scope: a plain variable.
    undecodable = records.undecodable_count()
    dataset = train_lib.distributed_dataset(
        strategy, frames.dataset_fn(files, frame_config, opt.batch_size),
        config.runtime.data_service)
    result = train_lib.fit(model, dataset, model_dir=config.model_dir,
                           total_steps=opt.train_steps, steps_per_epoch=opt.steps_per_checkpoint,
                           strategy=strategy, log_every=config.runtime.log_every,
                           progress_every=config.runtime.progress_every, verbose=verbose,
                           data_files=files)
    del dataset  # Its input pipeline stops, so the count below is at rest.
    skipped = records.report_undecodable(undecodable, files, "training frame(s)",
                                         log=print if verbose and chief else lambda _: None)

    # --- save the finished model, then mark the run finished (in that order: a crash
    # between the two leaves an unfinished run, which re-running completes).
    path = os.path.join(config.model_dir, run_dir.POSE_MODEL_FILE)
    if chief:
        train_lib.save_model_atomic(model, path)
        run_dir.mark_finished(config.model_dir, stored, opt.train_steps)
    summary = {"initial_step": result["initial_step"], "final_step": result["final_step"],
               "seconds": time.time() - start, "frozen_layers": frozen,
               "trainable_params": trainable, "pose_model": path,
               "skipped_undecodable_frames": skipped}
    if verbose and chief:
        print(f"saved {path} after {summary['seconds']:.0f}s")
    return train_lib.TrainResult(model, summary)


# ----------------------------------------------------------------------------- predictions

def predict(model, dataset: tf.data.Dataset, num_examples: int = 0,
            seed: int = 0) -> dict:
    """Runs ``model`` over an :func:`frames.eval_dataset`; returns numpy arrays.

    ``model``: a Keras model on preprocessed inputs, or a callable on the raw crops of an
    ``eval_dataset(..., raw=True)`` (a deployed artefact,
    :class:`tf_synchro.deploy.artefacts.PoseModel`).

    Raises:
      train_lib.NonFiniteError: a prediction is NaN or inf.

    Returns:
      ``{"pred", "gt": [N, 17, 3] mm, "subject", "action", "camera", "sequence_id": [N] str,
      "frame_index": [N] int, "example_index": [K] int, "images": [K, S, S, 3] uint8}``
      where the K <= ``num_examples`` examples are a uniform random (seeded) sample of
      all N frames, in order (reservoir sampling: only K images are ever kept).
    """
    if isinstance(model, keras.Model):
        predict_fn = tf.function(lambda x: model(x, training=False))
    else:  # A deployed artefact: numpy uint8 crops in.
        predict_fn = lambda x: model(x.numpy())
    out = collections.defaultdict(list)
    rng = np.random.default_rng(seed)
    reservoir: dict = {}  # frame position -> image
    seen = 0
    for images, joints, meta in dataset:
        pred = np.asarray(predict_fn(images), np.float32)
        if not np.isfinite(pred).all():
            bad = int((~np.isfinite(pred)).any(axis=(1, 2)).sum())
            raise train_lib.NonFiniteError(
                f"the model predicts NaN or inf for {bad} of the {len(pred)} frames of batch "
                f"{len(out['pred'])} (from frame {seen}); its weights are broken (a diverged "
                f"run?); no report written")
        out["pred"].append(pred)
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
    plt = figures.pyplot()

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
    figures.save_figure(fig, path, dpi=80)


# ----------------------------------------------------------------------------- the run

def unseen_actions(data_dir: str) -> tuple:
    """The held-out motion families of a dataset (its manifest's ``unseen_actions``)."""
    manifest = dataset_io.load_manifest(data_dir)
    return tuple(manifest.get("settings", {}).get("unseen_actions", ()))


def real_motion_actions(data_dir: str) -> tuple:
    """The real-motion test actions of a dataset (its manifest's ``test_motion_actions``:
    imported motion-capture clips only the test subjects perform)."""
    manifest = dataset_io.load_manifest(data_dir)
    return tuple(manifest.get("settings", {}).get("test_motion_actions", ()))


def _subset(out: dict, mask: np.ndarray) -> dict:
    return {k: out[k][mask] for k in ("pred", "gt", "subject", "action", "camera")}


def evaluate(trained: run_dir.LoadedModel, data_dir: str,
             config: configs.PoseEvalConfig = configs.PoseEvalConfig(),
             data_check: Optional[configs.DataCheckConfig] = None) -> dict:
    """Evaluates a loaded pose model on ``config.subjects`` with the protocol.

    Args:
      trained: the model and its run's record (which gives the preprocessing): a finished
        run's Keras model (:func:`run_dir.load_pose_run`), or a deployed artefact called
        on the stored uint8 crops as its clients call it
        (:func:`tf_synchro.deploy.artefacts.load_for_evaluation` loads either by path).
      data_dir: dataset with 3D labels for the subjects.
      config: the protocol's settings; the report is written to ``config.output_json`` and
        the example figure to ``config.output_png`` when they are given.
      data_check: run the data checks first (:func:`train_lib.check_data`: held-out
        subjects, subjects present, shard integrity) with these settings, and skip damaged
        records if it says so (None: no checks, damaged records stop the evaluation).

    Returns:
      the JSON-able report.

    Raises:
      dataset_io.DatasetError: a subject is missing or has no 3D labels.
      ValueError: a test subject the model trained on (without --allow_subject_overlap).
    """
    start = time.time()
    subjects, frame_step = tuple(config.subjects), config.frame_step
    output_json, output_png, num_examples = (config.output_json, config.output_png,
                                             config.num_examples)
    if data_check is not None:
        train_lib.check_data(data_dir, {"subjects": subjects}, data_check,
                             trained=(trained.trained_subjects,
                                      "its labels and pre-training"))
    model, record, model_dir = trained.model, trained.record, trained.path
    raw = not isinstance(model, keras.Model)  # A deployed artefact: uint8 crops in.
    files = frames.labelled_files(data_dir, subjects)
    aug = configs.AugmentConfig(output_size=record.input_size,
                                eval_scale=record.preprocess.crop_scale,
                                dct_method=record.preprocess.dct_method)
    frame_config = configs.FrameConfig(subjects=tuple(subjects), frame_step=frame_step,
                                      augment=aug, skip_corrupt_records=bool(
                                          data_check and data_check.skip_corrupt_records))
    undecodable = records.undecodable_count()
    ds = frames.eval_dataset(files, frame_config, config.batch_size, raw=raw)
    with dataset_io.naming_damaged_shard(files, "evaluation stopped"):
        try:
            out = predict(model, ds, num_examples=num_examples if output_png else 0)
        except train_lib.NonFiniteError as e:
            raise train_lib.NonFiniteError(f"--model_dir={model_dir}: {e}") from None
    skipped = records.report_undecodable(undecodable, files, "evaluation frame(s)")
    if not out:
        raise dataset_io.DatasetError(
            f"{data_dir}: no labelled frame of subjects {list(subjects)} has a frame number "
            f"that is a multiple of --frame_step={frame_step}")
    empty = [s for s in subjects if s not in set(out["subject"])]
    if empty:
        raise dataset_io.DatasetError(
            f"{data_dir}: subjects {empty} have no labelled frames at --frame_step={frame_step}")
    real = np.isin(out["action"], real_motion_actions(data_dir))
    unseen = np.isin(out["action"], unseen_actions(data_dir)) & ~real
    if (unseen | real).all():
        raise dataset_io.DatasetError(
            f"{data_dir}: subjects {list(subjects)} have only held-out motion "
            f"({sorted(set(out['action']))}); the standard test needs standard actions")
    standard = _subset(out, ~(unseen | real))
    report = build_report(standard["pred"], standard["gt"], standard)
    if unseen.any():
        held_out = _subset(out, unseen)
        report["unseen_motion"] = build_report(held_out["pred"], held_out["gt"], held_out)
    if real.any():
        held_out = _subset(out, real)
        report["real_motion"] = build_report(held_out["pred"], held_out["gt"], held_out)
    report.update({"model_dir": model_dir, "model_kind": trained.kind,
                   "data_dir": data_dir, "subjects": list(subjects),
                   "frame_step": frame_step, "seconds": round(time.time() - start, 1)})
    if skipped:
        report["skipped_undecodable_frames"] = skipped
    if output_json:
        os.makedirs(os.path.dirname(os.path.abspath(output_json)), exist_ok=True)
        fileio.write_json_atomic(output_json, report)
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
    if "real_motion" in report:
        real = report["real_motion"]
        rows += [("real motion (actions)", real["mean_over_actions"])]
        rows += [(f"real {k}", v) for k, v in real["per_action"].items()]
    if report.get("skipped_undecodable_frames"):
        lines.append(f"({report['skipped_undecodable_frames']} frame(s) skipped: a JPEG that "
                     f"does not decode)")
    for name, r in rows:
        frames_col = f"{r['num_frames']:8d}" if "num_frames" in r else ""
        lines.append(f"{name[:24]:24s}{r['mpjpe']:9.1f}{r['n_mpjpe']:9.1f}"
                     f"{r['pa_mpjpe']:9.1f}{frames_col}")
    return "\n".join(lines)
