"""Pretext evaluation: sync and flip accuracy on held-out subjects, sync accuracy vs time gap.

Library: :func:`evaluate` (a model + pair settings -> results dict) and :func:`write_report`
(``pretext_eval.json`` + ``sync_vs_gap.png``, the paper's Fig. 4). The pre-training binary
calls both at the end; the binary here re-evaluates a finished run::

    python -m tf_synchro.evaluate_pretext --model_dir DIR [--data_dir DIR] [--subjects S9,S11]
        [--gap_sampling=clip|uniform] [--d_min=4] [--d_max=128]

By default the pairs are drawn as the run drew its training pairs (``config.json``); the
``--gap_sampling``, ``--d_min`` and ``--d_max`` overrides score runs trained with different
pair settings on one common set of pairs.

Accuracies count only the pairs a head sees (its mask): sync accuracy over synchronized and
unsynchronized pairs, flip accuracy over synchronized and flipped pairs. In the gap curve,
gap 0 is the synchronized pairs (correct = "sync") and each gap bin holds the unsynchronized
pairs of that gap (correct = "not sync"), so the curve shows how hard small offsets are.
``sync_auc`` and ``flip_auc`` (ROC area: synchronized vs unsynchronized logits, flipped vs
synchronized logits) do not depend on the decision threshold.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from absl import app, flags
import numpy as np

from tf_synchro import train_lib
from tf_synchro.data import augment, pairs, records
from tfrecords_tools import cli, dataset_io, run_lock

RESULTS_FILE = "pretext_eval.json"
PLOT_FILE = "sync_vs_gap.png"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Pretext evaluation settings.

    Attributes:
      subjects: held-out subjects.
      passes: passes over their records (each draws new random pairs).
      pairs_per_clip: pairs drawn per record per pass.
      batch_size: evaluation batch.
      seed: fixes the evaluated pairs (same pairs for every model).
      num_gap_bins: bins of the unsynchronized gap range (d_min, d_max).
    """

    subjects: tuple = ("S9", "S11")
    passes: int = 2
    pairs_per_clip: int = 12
    batch_size: int = 64
    seed: int = 0
    num_gap_bins: int = 8


def eval_pair_config(train_config: pairs.PairConfig, config: EvalConfig) -> pairs.PairConfig:
    """The training pair settings turned into a fixed, finite, un-augmented evaluation set."""
    return dataclasses.replace(
        train_config, subjects=tuple(config.subjects), training=False, seed=config.seed,
        deterministic=True, passes=config.passes, pairs_per_clip=config.pairs_per_clip,
        shuffle_buffer=0, device_augment=False)  # Central crops made on the host.


def _gap_edges(d_min: int, d_max: int, num_bins: int) -> np.ndarray:
    # Integer gaps d_min+1 .. d_max-1 split into num_bins roughly equal ranges [lo, hi).
    edges = np.unique(np.round(np.linspace(d_min + 1, d_max, num_bins + 1)).astype(int))
    return edges


def roc_auc(positive_scores, negative_scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2.

    Threshold-free, so it separates "the features tell the classes apart" from "the logit
    threshold moved on unseen subjects", which plain accuracy at 0 mixes up. Computed from
    average ranks (Mann-Whitney U) in O(n log n).

    Raises:
      ValueError: either class is empty.
    """
    pos = np.asarray(positive_scores, np.float64).reshape(-1)
    neg = np.asarray(negative_scores, np.float64).reshape(-1)
    if not len(pos) or not len(neg):
        raise ValueError(f"roc_auc needs both classes, got {len(pos)} positive and "
                         f"{len(neg)} negative scores")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average 1-based rank of each run of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def evaluate(model, data_dir: str, pair_config: pairs.PairConfig,
             config: EvalConfig = EvalConfig()) -> dict:
    """Runs ``model`` on held-out pairs and returns accuracies (JSON-able dict).

    Args:
      model: sync/flip model (dict inputs ``view_a``/``view_b``, dict logit outputs).
      data_dir: dataset holding ``config.subjects``.
      pair_config: the training pair settings (d_min, d_max, tasks, views, image size).
      config: evaluation settings.

    Raises:
      tfrecords_tools.dataset_io.DatasetError: no shard holds the held-out subjects.
    """
    cfg = eval_pair_config(pair_config, config)
    files = records.dataset_files(data_dir, cfg.subjects)
    ds = pairs.pair_dataset(files, cfg, config.batch_size, with_metadata=True)
    with dataset_io.naming_damaged_shard(files, "evaluation stopped"):
        logits, types, gaps = _run_pairs(model, ds, cfg.tasks)
    if not types:
        raise ValueError(f"{data_dir}: no evaluation pairs for subjects {cfg.subjects}")
    results = {"subjects": list(cfg.subjects)}
    results.update(score_pairs(np.concatenate(types), np.concatenate(gaps),
                               {t: np.concatenate(v) for t, v in logits.items()},
                               cfg.d_min, cfg.d_max, config.num_gap_bins))
    return results


def score_pairs(types, gaps, logits: dict, d_min: int, d_max: int,
                num_gap_bins: int = 8) -> dict:
    """Pretext results of scored pairs: masked accuracies, ROC areas, the gap curve.

    Args:
      types: ``[N]`` pair types (``pairs.SYNC``, ``pairs.UNSYNC``, ``pairs.FLIP``).
      gaps: ``[N]`` time gaps in frames (0 for synchronized and flipped pairs).
      logits: ``{"sync": [N], "flip": [N]}`` head logits (either head may be absent); a
        head's logits of the pairs it does not see are ignored.
      d_min, d_max: the unsynchronized gap range (d_min, d_max) the pairs were drawn from.
      num_gap_bins: bins of that range in the gap curve (empty bins are left out).

    Returns:
      ``num_pairs``, ``pairs_per_type``, ``d_min``, ``d_max``; with a sync head
      ``sync_accuracy`` (over synchronized and unsynchronized pairs),
      ``sync_accuracy_synchronized``, ``sync_accuracy_unsynchronized``, ``sync_auc`` and
      ``sync_accuracy_by_gap`` (gap 0: the synchronized pairs; then one entry per
      non-empty bin ``[gap_lo, gap_hi)`` of unsynchronized pairs); with a flip head
      ``flip_accuracy`` (over synchronized and flipped pairs) and ``flip_auc``.
    """
    types, gaps = np.asarray(types).reshape(-1), np.asarray(gaps).reshape(-1)
    results = {"num_pairs": int(len(types)),
               "pairs_per_type": {name: int((types == i).sum())
                                  for i, name in enumerate(pairs.PAIR_TYPE_NAMES)},
               "d_min": d_min, "d_max": d_max}
    if "sync" in logits:
        sync_logits = np.asarray(logits["sync"], np.float32).reshape(-1)
        pred_sync = sync_logits > 0
        seen = types != pairs.FLIP
        correct = pred_sync == (types == pairs.SYNC)
        results["sync_accuracy"] = float(correct[seen].mean())
        results["sync_accuracy_synchronized"] = float(correct[types == pairs.SYNC].mean())
        unsync = types == pairs.UNSYNC
        results["sync_accuracy_unsynchronized"] = float(correct[unsync].mean())
        results["sync_auc"] = roc_auc(sync_logits[types == pairs.SYNC], sync_logits[unsync])
        curve = [{"gap_lo": 0, "gap_hi": 1, "count": int((types == pairs.SYNC).sum()),
                  "accuracy": results["sync_accuracy_synchronized"]}]
        edges = _gap_edges(d_min, d_max, num_gap_bins)
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = unsync & (gaps >= lo) & (gaps < hi)
            if sel.any():
                curve.append({"gap_lo": int(lo), "gap_hi": int(hi), "count": int(sel.sum()),
                              "accuracy": float(correct[sel].mean())})
        results["sync_accuracy_by_gap"] = curve
    if "flip" in logits:
        flip_logits = np.asarray(logits["flip"], np.float32).reshape(-1)
        pred_flip = flip_logits > 0
        seen = types != pairs.UNSYNC
        results["flip_accuracy"] = float((pred_flip == (types == pairs.FLIP))[seen].mean())
        results["flip_auc"] = roc_auc(flip_logits[types == pairs.FLIP],
                                      flip_logits[types == pairs.SYNC])
    return results


def _run_pairs(model, ds, tasks) -> tuple[dict, list, list]:
    """Logits per task, pair types and gaps of every evaluated pair."""
    logits = {t: [] for t in tasks}
    types, gaps = [], []
    for x, _, _, meta in ds:
        out = model(x, training=False)
        for t in tasks:
            logits[t].append(np.asarray(out[t], np.float32).reshape(-1))
        types.append(meta["pair_type"].numpy())
        gaps.append(meta["gap"].numpy())
    return logits, types, gaps


def write_report(results: dict, output_dir: str, title: str = "") -> list[str]:
    """Writes ``pretext_eval.json`` and, with a sync head, ``sync_vs_gap.png``; returns paths."""
    import matplotlib
    matplotlib.use("Agg")  # Files only; no display on servers.
    import matplotlib.pyplot as plt

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RESULTS_FILE)
    dataset_io.write_json_atomic(path, results)
    written = [path]
    curve = results.get("sync_accuracy_by_gap")
    if curve:
        centres = [(c["gap_lo"] + c["gap_hi"] - 1) / 2 for c in curve]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        ax.plot(centres[1:], [c["accuracy"] for c in curve[1:]], "o-",
                label="unsynchronized pairs")
        ax.plot([0], [curve[0]["accuracy"]], "s", color="C1", label="synchronized (gap 0)")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel("time gap |Δt| (frames)")
        ax.set_ylabel("sync accuracy")
        ax.set_ylim(0, 1.02)
        ax.set_title(title or f"Sync accuracy vs time gap ({', '.join(results['subjects'])})")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        png = os.path.join(output_dir, PLOT_FILE)
        run_lock.save_figure(fig, png)
        written.append(png)
    return written


# ----------------------------------------------------------------------------- binary

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Pre-training run directory (sync_flip.keras, "
                        "config.json).")
    flags.DEFINE_string("data_dir", None, "Dataset; default: the run's --data_dir.")
    flags.DEFINE_list("subjects", ["S9", "S11"], "Held-out subjects.")
    flags.DEFINE_integer("passes", 2, "Passes over the held-out records.")
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
    flags.DEFINE_integer("seed", 0, "Fixes the evaluated pairs.")
    flags.DEFINE_string("output_dir", None, "Where to write JSON/PNG; default --model_dir.")
    flags.DEFINE_enum("gap_sampling", None, list(pairs.GAP_SAMPLING),
                      "Unsynchronized gap sampling of the evaluated pairs; default: the run's "
                      "(so runs trained with different samplers can be compared on one).")
    flags.DEFINE_integer("d_min", None, "Unsynchronized pairs: |dt| > d_min; default: the "
                         "run's (e.g. --d_min=4 scores a run trained with a larger d_min on "
                         "the paper's pairs).")
    flags.DEFINE_integer("d_max", None, "Unsynchronized pairs: |dt| < d_max; default: the run's.")
    cli.define_data_check_flags("--subjects the run pre-trained on")
    flags.mark_flag_as_required("model_dir")


def load_run(model_dir: str):
    """Loads ``sync_flip.keras`` and the pair settings stored in ``config.json`` of a run."""
    import keras
    import tf_synchro.models.resnet  # noqa: F401  Registers the custom layers.
    import tf_synchro.models.siamese  # noqa: F401

    cfg_path = os.path.join(model_dir, "config.json")
    model_path = os.path.join(model_dir, "sync_flip.keras")
    for p in (cfg_path, model_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} not found: --model_dir must be a finished "
                                    f"`python -m tf_synchro.pretrain` run")
    with open(cfg_path) as f:
        config = json.load(f)
    p = config["pairs"]
    pair_config = pairs.PairConfig(
        d_min=p["d_min"], d_max=p["d_max"], tasks=tuple(config["model"]["tasks"]),
        views=p["views"], gap_sampling=p.get("gap_sampling", "clip"),
        augment=augment.AugmentConfig(
            output_size=config["model"]["input_size"], min_scale=p["min_scale"],
            max_scale=p["max_scale"]))
    return keras.models.load_model(model_path), pair_config, config


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    model, pair_config, run_config = load_run(FLAGS.model_dir)
    overrides = {k: getattr(FLAGS, k) for k in ("gap_sampling", "d_min", "d_max")
                 if getattr(FLAGS, k) is not None}
    pair_config = dataclasses.replace(pair_config, **overrides,
                                      skip_corrupt_records=FLAGS.skip_corrupt_records)
    try:
        pair_config.validate()
    except ValueError as e:
        raise app.UsageError(f"{FLAGS.model_dir}: {e}")
    train_lib.check_subject_overlap(run_config.get("train_subjects", []), FLAGS.subjects,
                                    "the run's --train_subjects", "--subjects",
                                    FLAGS.allow_subject_overlap)
    data_dir = FLAGS.data_dir or run_config.get("data_dir")
    dataset_io.verify_shards(data_dir, FLAGS.verify_data, FLAGS.subjects,
                             FLAGS.skip_corrupt_records)
    results = evaluate(model, data_dir, pair_config, EvalConfig(
        subjects=tuple(FLAGS.subjects), passes=FLAGS.passes, batch_size=FLAGS.batch_size,
        seed=FLAGS.seed))
    run_lock.clean_stale_temps(FLAGS.output_dir or FLAGS.model_dir)
    for path in write_report(results, FLAGS.output_dir or FLAGS.model_dir):
        print(f"wrote {path}")
    print(json.dumps({k: v for k, v in results.items() if k != "sync_accuracy_by_gap"}))


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
