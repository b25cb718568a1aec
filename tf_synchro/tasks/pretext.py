"""The pretext task: build the Siamese sync/flip model, train it, evaluate it.

* :func:`build_model` — the encoder, the two-branch fusion and the heads, compiled with the
  run's losses, loss weights and optimiser (behind the on-device augmentation layer with
  ``--augment_on=device``).
* :func:`train` — one pre-training run: every check before the first step, the run
  directory (:mod:`tf_synchro.run_dir`), resumable training (:func:`train_lib.fit`), then
  ``encoder.keras``, ``sync_flip.keras`` and the held-out evaluation.
* :func:`evaluate` / :func:`score_model` / :func:`score_pairs` / :func:`write_report` — sync
  and flip accuracy on held-out subjects, ROC areas, and sync accuracy against the time
  gap (the paper's Fig. 4).

Accuracies count only the pairs a head sees (its mask): sync accuracy over synchronized and
unsynchronized pairs, flip accuracy over synchronized and flipped pairs. In the gap curve,
gap 0 is the synchronized pairs (correct = "sync") and each gap bin holds the unsynchronized
pairs of that gap (correct = "not sync"), so the curve shows how hard small offsets are.
``sync_auc`` and ``flip_auc`` (ROC area: synchronized vs unsynchronized logits, flipped vs
synchronized logits) do not depend on the decision threshold.

The binaries ``tf_synchro.pretrain`` and ``tf_synchro.evaluate_pretext`` are thin shells over
these functions (docs/DESIGN.md §1, §3).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

import numpy as np

from tf_synchro import configs, run_dir, train_lib
from tf_synchro.configs import PretrainConfig
from tf_synchro.data import groups, pairs, records
from tfrecords_tools import dataset_io
from tfrecords_tools.runtime import figures, fileio


# ----------------------------------------------------------------------------- training

def check_settings(config: PretrainConfig) -> None:
    """Checks that need no data (run before anything is read or written).

    Raises:
      ValueError: naming the flag at fault.
    """
    from tf_synchro.models import siamese
    tasks = tuple(config.model.tasks)
    if siamese.check_tasks(tasks) != tasks:
        raise ValueError(f"--tasks={','.join(tasks)}: list them in the order sync,flip")
    config.model.check_encoder()
    config.optimizer.check()
    config.check()
    configs.check_subjects("train_subjects", config.train_subjects)
    run_dir.check_subject_overlap(config.train_subjects, config.eval_subjects,
                                    "--train_subjects", "--eval_subjects",
                                    config.data_check.allow_subject_overlap)
    config.pair_config().validate()


def build_model(config: PretrainConfig, stored_size: Optional[int] = None):
    """Builds and compiles the sync/flip model (call under ``strategy.scope()``).

    With ``--augment_on=device`` the compiled model is the sync/flip model behind a
    :class:`tf_synchro.models.view_augment.ViewAugment` layer (inputs: uint8 frames of
    ``stored_size`` (default: read from the dataset) and their draws);
    :func:`sync_flip_model` returns the bare model.
    """
    from tf_synchro.tasks import losses
    from tf_synchro.models import resnet, siamese, view_augment

    m, opt, pair_config = config.model, config.optimizer, config.pair_config()
    train_lib.seed_weights(config.runtime.seed)
    encoder = resnet.build_encoder(m.arch, m.width, m.input_size)
    model = siamese.build_sync_flip_model(encoder, m.fusion, m.tasks, m.head_units)
    view_keys = siamese.VIEW_KEYS
    if groups.is_group(pair_config.pair_grouping):  # Same encoder and heads, 2C frames in.
        view_keys = groups.view_keys(pair_config.pair_grouping)
        model = siamese.build_group_model(model, pair_config.pair_grouping)
    if pair_config.device_augment:
        if stored_size is None:
            stored_size = pairs.check_records(
                records.dataset_files(config.data_dir, config.train_subjects),
                pair_config)["image_size"]
        model = view_augment.wrap_with_augment(model, stored_size, m.input_size, view_keys)
    model.compile(
        optimizer=train_lib.make_optimizer(opt.train_steps, opt.learning_rate,
                                           opt.final_learning_rate, opt.weight_decay,
                                           opt.warmup_steps),
        loss=losses.sync_flip_losses(m.tasks),
        loss_weights=config.loss_weights(),
        weighted_metrics=losses.sync_flip_metrics(m.tasks))
    return model


def sync_flip_model(model):
    """The bare two-view sync/flip model (float crops in) of a model from
    :func:`build_model`; for ``--pair_grouping=quads|hexes|octets`` a two-view model sharing the
    group model's encoder and heads."""
    from tf_synchro.models import siamese
    names = {layer.name for layer in model.layers}
    if model.name == "sync_flip":
        return model
    if "sync_flip" in names:
        return model.get_layer("sync_flip")
    group = model if model.name == siamese.GROUP_NAME else model.get_layer(siamese.GROUP_NAME)
    return siamese.pair_model_of(group)


def train(config: PretrainConfig, strategy=None) -> train_lib.TrainResult:
    """Runs (or resumes) pre-training and the final exports.

    Every check that can fail (settings, dataset, batch split, model_dir) runs before the
    first training step.

    Args:
      config: the run settings.
      strategy: a strategy made earlier (MultiWorkerMirroredStrategy must be created before
        any other TensorFlow op); default: ``train_lib.make_strategy(--strategy)``.

    Returns:
      the trained model and the summary printed at the end (``initial_step``,
      ``final_step``, ``train_seconds``, ``final_metrics``, the held-out ``eval``).
    """
    # ---------------------------------------------------------------- checks, strategy
    strategy = strategy or train_lib.make_strategy(config.runtime.strategy)
    chief = train_lib.is_chief(strategy)
    check_settings(config)
    train_lib.replica_batch_size(config.optimizer.batch_size, strategy)
    train_lib.check_data(config.data_dir, {"train_subjects": config.train_subjects,
                                           "eval_subjects": config.eval_subjects},
                         config.data_check,
                         log=print if config.verbose and chief else lambda _: None)
    files = records.dataset_files(config.data_dir, config.train_subjects)
    with dataset_io.naming_damaged_shard(files):
        data_info = pairs.check_records(files, config.pair_config())
    with run_dir.hold(config.model_dir, chief):
        return _train(config, strategy, chief, files, data_info)


def _train(config: PretrainConfig, strategy, chief: bool, files: list, data_info: dict):
    """The part of :func:`train` that writes to model_dir (its lock held)."""
    stored = run_dir.prepare(config.model_dir, run_dir.PretrainRecord.from_config(config),
                             chief=chief)
    train_lib.set_mixed_precision(config.runtime.mixed_precision)
    opt = config.optimizer

    # ---------------------------------------------------------------- model, data
    with strategy.scope():
        model = build_model(config, data_info["image_size"])
    if config.data_check.skip_corrupt_records:
        records.prepare_decode_counter()  # Outside the strategy scope: a plain variable.
    undecodable = records.undecodable_count()
    pair_config = dataclasses.replace(
        config.pair_config(), seed=train_lib.data_seed(config.runtime.seed, config.model_dir))
    dataset = train_lib.distributed_dataset(
        strategy, pairs.dataset_fn(config.data_dir, pair_config, opt.batch_size),
        config.runtime.data_service)
    if config.verbose and chief:
        print(f"{len(files)} shards, records checked: {data_info}; "
              f"{strategy.num_replicas_in_sync} replica(s); model "
              f"{json.dumps(stored.model_json(), sort_keys=True)}; "
              f"{model.count_params():,} parameters")

    # ---------------------------------------------------------------- train (resumes)
    start = time.time()
    result = train_lib.fit(model, dataset, model_dir=config.model_dir,
                           total_steps=opt.train_steps, steps_per_epoch=opt.steps_per_checkpoint,
                           strategy=strategy, log_every=config.runtime.log_every,
                           progress_every=config.runtime.progress_every,
                           verbose=config.verbose, data_files=files)
    summary = {"initial_step": result["initial_step"], "final_step": result["final_step"],
               "train_seconds": round(time.time() - start, 1),
               "final_metrics": {k: round(float(v[-1]), 4)
                                 for k, v in result["history"].items()}}
    del dataset  # Its input pipeline stops, so the count below is at rest.
    skipped = records.report_undecodable(
        undecodable, files, "clip(s)", log=print if config.verbose and chief else lambda _: None)
    if skipped:
        summary["skipped_undecodable_clips"] = skipped

    # ---------------------------------------------------------------- export, evaluate
    if chief:
        bare = sync_flip_model(model)
        encoder = bare.get_layer("encoder")
        for model_, name in ((encoder, run_dir.ENCODER_FILE), (bare, run_dir.SYNC_FLIP_FILE)):
            train_lib.save_model_atomic(model_, os.path.join(config.model_dir, name))
        if config.eval_subjects:
            # Its data was checked at the start; the pairs are drawn as it drew them for
            # training (--skip_corrupt_records included).
            results = score_model(bare, config.data_dir, config.pair_config(),
                                  configs.PretextEvalConfig(
                                      subjects=tuple(config.eval_subjects),
                                      passes=config.eval_passes))
            write_report(results, config.model_dir)
            summary["eval"] = {k: v for k, v in results.items() if k != "sync_accuracy_by_gap"}
        if config.verbose:
            print(json.dumps(summary))
    return train_lib.TrainResult(model, summary)


# ----------------------------------------------------------------------------- evaluation

def eval_pair_config(train_config: configs.PairConfig,
                     config: configs.PretextEvalConfig) -> configs.PairConfig:
    """The training pair settings turned into a fixed, finite, un-augmented evaluation set."""
    return dataclasses.replace(
        train_config, subjects=tuple(config.subjects), training=False, seed=config.seed,
        deterministic=True, passes=config.passes, pairs_per_clip=config.pairs_per_clip,
        shuffle_buffer=0, device_augment=False,  # Central crops made on the host.
        pair_grouping=groups.PAIRS)


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


def evaluate(trained: run_dir.LoadedModel, data_dir: str,
             config: configs.PretextEvalConfig = configs.PretextEvalConfig(),
             data_check: Optional[configs.DataCheckConfig] = None) -> dict:
    """Runs a loaded sync/flip model on held-out pairs; returns accuracies (JSON-able dict).

    Args:
      trained: the sync/flip model (dict inputs ``view_a``/``view_b``, dict logit outputs)
        and its run's record (:func:`run_dir.load_pretrain_run`), whose pair settings
        (d_min, d_max, gap sampling, tasks, views, image size) the pairs are drawn with.
      data_dir: dataset holding ``config.subjects``.
      config: evaluation settings.
      data_check: run the data checks first (:func:`train_lib.check_data`: held-out
        subjects against the run's ``--train_subjects``, subjects present, shard integrity)
        with these settings, and skip damaged records if it says so (None: no checks,
        damaged records stop the evaluation).

    Raises:
      tfrecords_tools.dataset_io.DatasetError: no shard holds the held-out subjects.
      run_dir.ModelDirError: the record holds no pair settings.
      ValueError: a held-out subject the model trained on (without
        --allow_subject_overlap).
    """
    pair_config = trained.record.pair_config()
    if data_check is not None:
        train_lib.check_data(data_dir, {"subjects": tuple(config.subjects)}, data_check,
                             trained=(trained.trained_subjects, "the run's --train_subjects"))
        pair_config = dataclasses.replace(
            pair_config, skip_corrupt_records=data_check.skip_corrupt_records)
    return score_model(trained.model, data_dir, pair_config, config)


def score_model(model, data_dir: str, pair_config: configs.PairConfig,
                config: configs.PretextEvalConfig) -> dict:
    """The work of :func:`evaluate`, without the data checks: ``model`` on the held-out
    pairs drawn with ``pair_config`` (the training pair settings) and ``config``."""
    cfg = eval_pair_config(pair_config, config)
    files = records.dataset_files(data_dir, cfg.subjects)
    undecodable = records.undecodable_count()
    ds = pairs.pair_dataset(files, cfg, config.batch_size, with_metadata=True)
    with dataset_io.naming_damaged_shard(files, "evaluation stopped"):
        logits, types, gaps = _run_pairs(model, ds, cfg.tasks)
    skipped = records.report_undecodable(undecodable, files, "evaluation clip(s)")
    if not types:
        raise ValueError(f"{data_dir}: no evaluation pairs for subjects {cfg.subjects}")
    results = {"subjects": list(cfg.subjects)}
    if skipped:
        results["skipped_undecodable_clips"] = skipped
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
            values = np.asarray(out[t], np.float32).reshape(-1)
            if not np.isfinite(values).all():
                raise train_lib.NonFiniteError(
                    f"the {t} head outputs NaN or inf for {int((~np.isfinite(values)).sum())} "
                    f"of {len(values)} pairs of batch {len(types)}; the model's weights are "
                    f"broken (a diverged run?); no report written")
            logits[t].append(values)
        types.append(meta["pair_type"].numpy())
        gaps.append(meta["gap"].numpy())
    return logits, types, gaps


def write_report(results: dict, output_dir: str, title: str = "") -> list[str]:
    """Writes ``pretext_eval.json`` and, with a sync head, ``sync_vs_gap.png``; returns paths."""
    plt = figures.pyplot()

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, run_dir.PRETEXT_EVAL_FILE)
    fileio.write_json_atomic(path, results)
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
        png = os.path.join(output_dir, run_dir.SYNC_VS_GAP_FILE)
        figures.save_figure(fig, png)
        written.append(png)
    return written
