r"""The main job: does multi-view synchronization pre-training help? One command, end to end.

    python -m tf_synchro.demo --workdir /tmp/tf_synchro_demo

1. generates (or reuses) the embedded synthetic multi-view dataset;
2. pre-trains the Siamese sync/flip model on the unlabelled train subjects (S1, S5-S8);
3. fine-tunes on S1's 3D labels only, (a) from random initialisation with the same frozen
   blocks, (b) from random initialisation with every block trainable, and (c) from the
   pre-trained encoder, with the same budget;
4. evaluates all three on S9/S11 (MPJPE, N-MPJPE, PA-MPJPE; means over actions), on the
   standard actions and on the held-out motion families (the unseen-motion test); with
   ``--real_motion_test`` also on held-out real motion-capture clips (the real-motion
   test, ``tfrecords_tools/synth/real_motion/cmu_heldout``: CMU subject 02's takes), and with
   ``--real_motion_pool`` the extra people also perform other subjects' real takes
   (``.../real_motion/cmu_pool``);
5. exports the better one as a SavedModel for TF Serving;
6. prints the comparison in the layout of the paper's Table 1 and writes ``REPORT.md``
   (table, training curves, sync accuracy vs time gap, example predictions).

Every stage is one of the project's binaries run as a subprocess (their progress bars and
ETAs are shown) and cached under ``<workdir>/stages/`` (see
:mod:`tf_synchro.suite.experiment_lib`): re-running reuses finished stages and resumes an
interrupted one. ``--scale=cpu`` (default) fits a 2-core CPU; ``--scale=paper`` uses the
paper's settings (GPU hours).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Optional, Sequence

from absl import app

from tf_synchro import configs
from tf_synchro import run_dir
from tf_synchro.suite import experiment_lib as xl
from tfrecords_tools.runtime import cli, figures, fileio, locks

BINARY = "tf_synchro.demo"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.DemoConfig` (defined only when
    it runs, so the library imports cleanly)."""
    configs.define_flags(configs.DemoConfig, flag_values, binary=BINARY)


DEMO_FILE = "demo.json"


class WorkdirError(ValueError):
    """The workdir holds a demo run of other settings."""

REPORT = "REPORT.md"


# ----------------------------------------------------------------------------- helpers

# The committed CMU takes (tfrecords_tools/synth/real_motion/SOURCE.md), relative
# to the repository root (the stages' working directory, so stage keys do not depend on
# where the checkout lives). Stage keys hash these paths, not the files: a new clip set
# gets new folder names, so no finished stage of an older set is reused.
REAL_MOTION_TEST_DIR = "tfrecords_tools/synth/real_motion/cmu_heldout"
REAL_MOTION_POOL_DIR = "tfrecords_tools/synth/real_motion/cmu_pool"


def real_motion_overrides(test: bool, pool: bool, labelled: int = 0,
                          mirror: bool = False) -> dict:
    """Synthesize settings of the real-motion options (the clips are short: looped on a
    treadmill so cyclic walks and runs stay in the capture volume). ``labelled``: pool
    clips each labelled subject also performs; without ``pool`` only they perform them
    (the extra people stay procedural). ``mirror``: the pool's clips also mirrored."""
    if mirror and not (pool or labelled):
        raise app.UsageError("--real_motion_mirror mirrors the pool's clips: give "
                             "--real_motion_pool or --real_motion_labelled too")
    values = ({"test_motion_dir": REAL_MOTION_TEST_DIR} if test else {}) | \
        ({"extra_motion_dir": REAL_MOTION_POOL_DIR} if pool or labelled else {})
    for folder in values.values():
        if not os.path.isdir(os.path.join(xl.REPO, folder)):
            raise app.UsageError(f"--real_motion_test/--real_motion_pool/--real_motion_labelled "
                                 f"need the clips in {folder} (see "
                                 f"tfrecords_tools/synth/real_motion/SOURCE.md)")
    if labelled:
        values["labelled_extra_motions"] = labelled
        if not pool:
            values["labelled_motion_only"] = True
    if mirror:
        values["extra_motion_mirror"] = True
    return {**values, "treadmill": True} if values else {}


def finetune_overrides(rows: dict, steps: int) -> dict:
    """``rows`` with ``steps`` fine-tuning steps for every row (0: the row flagfiles')."""
    if not steps:
        return rows
    return {k: r.with_overrides("finetune", {"train_steps": steps}) for k, r in rows.items()}


def read_scalars(logdir: str) -> dict:
    """``{tag: [(step, value), ...]}`` from every TensorBoard event file under ``logdir``."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2
    out: dict = {}
    for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        split = os.path.basename(os.path.dirname(path))
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                out.setdefault(f"{split}/{value.tag}", []).append((int(event.step), number))
    return {k: sorted(dict(v).items()) for k, v in out.items()}


def plot_curves(runs: dict, path: str) -> None:
    """A column per run: training losses on top, accuracies / errors (mm) below, vs step."""
    fig, axes = figures.pyplot().subplots(2, len(runs), figsize=(5 * len(runs), 6),
                                          squeeze=False)
    for col, (title, scalars) in enumerate(runs.items()):
        for tag, points in sorted(scalars.items()):
            name = tag.rsplit("/", 1)[-1]
            if not tag.startswith("train/") or name.startswith("epoch_") or name == "learning_rate":
                continue
            steps, values = zip(*points)
            axes[0 if "loss" in name else 1, col].plot(steps, values, label=name)
        axes[0, col].set_title(title)
        axes[0, col].set_ylabel("loss")
        axes[1, col].set_ylabel("accuracy" if "pre-training" in title else "error (mm)")
        for ax in axes[:, col]:
            figures.finish_axes(ax, "step")
    fig.tight_layout()
    figures.save_figure(fig, path, dpi=100)


def _check_workdir(workdir: str, settings: dict) -> None:
    """Refuses a workdir that holds a demo of other settings (results never mix)."""
    path = os.path.join(workdir, DEMO_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        locks.refuse_other_settings(old, settings, WorkdirError, f"--workdir={workdir}",
                                       "use another --workdir, or delete it to start over")
    os.makedirs(workdir, exist_ok=True)
    fileio.write_json_atomic(path, settings)


def _fmt_time(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# ----------------------------------------------------------------------------- report

def _copy(src: str, workdir: str, name: str) -> str:
    if os.path.exists(src):
        shutil.copyfile(src, os.path.join(workdir, name))
    return name


def demo_ratios(results: dict) -> dict:
    """The demo's headline figures: pre-trained / random init, each baseline, both tests."""
    pre = results["pretrained"]
    out = {}
    for name in ("scratch", "scratch_trainable"):
        base = results.get(name)
        if base is None:
            continue
        out[f"mpjpe_vs_{name}"] = pre["measured"][0] / base["measured"][0]
        out[f"pa_mpjpe_vs_{name}"] = pre["measured"][2] / base["measured"][2]
        if pre.get("unseen") and base.get("unseen"):
            out[f"unseen_mpjpe_vs_{name}"] = pre["unseen"][0] / base["unseen"][0]
            out[f"unseen_pa_mpjpe_vs_{name}"] = pre["unseen"][2] / base["unseen"][2]
        if pre.get("real") and base.get("real"):
            out[f"real_mpjpe_vs_{name}"] = pre["real"][0] / base["real"][0]
            out[f"real_pa_mpjpe_vs_{name}"] = pre["real"][2] / base["real"][2]
    return out


def _ratio_lines(ratios: dict, paper_ratio) -> str:
    names = {"scratch": "random init (same frozen blocks)",
             "scratch_trainable": "random init (all blocks trainable)"}
    metrics = ["mpjpe", "pa_mpjpe", "unseen_mpjpe", "unseen_pa_mpjpe"]
    head = "| pre-trained / | MPJPE | PA-MPJPE | unseen-motion MPJPE | unseen-motion PA-MPJPE |"
    if any(k.startswith("real_") for k in ratios):
        metrics += ["real_mpjpe", "real_pa_mpjpe"]
        head += " real-motion MPJPE | real-motion PA-MPJPE |"
    lines = [head, "|---" * (len(metrics) + 1) + "|"]
    for key, title in names.items():
        if f"mpjpe_vs_{key}" not in ratios:
            continue
        cells = [ratios.get(f"{m}_vs_{key}") for m in metrics]
        lines.append(f"| {title} | " + " | ".join(f"**{c:.2f}**" if c is not None else "–"
                                                 for c in cells) + " |")
    paper = f" (paper, rows d / b: MPJPE {paper_ratio:.2f})" if paper_ratio else ""
    return "Ratios, means over actions" + paper + ":\n\n" + "\n".join(lines)


def real_clip_lines(workdir: str, plans: dict) -> str:
    """Per real-motion test clip: pre-trained / random-init MPJPE and PA-MPJPE ratios and
    both errors (mm), from the two rows' evaluation reports ('' without the test)."""
    per = {}
    for k in ("scratch", "pretrained"):
        path = plans[k].evaluate.path(workdir, xl.EVAL_JSON)
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            per[k] = (json.load(f).get("real_motion") or {}).get("per_action", {})
    clips = sorted(set(per["scratch"]) & set(per["pretrained"]))
    return "; ".join(
        f"{c} {p['mpjpe'] / b['mpjpe']:.2f} / {p['pa_mpjpe'] / b['pa_mpjpe']:.2f} "
        f"({p['mpjpe']:.0f} vs {b['mpjpe']:.0f} mm)"
        for c in clips for p, b in [(per["pretrained"][c], per["scratch"][c])])


def write_report(workdir: str, scale: str, results: dict, plans: dict, export_path: str,
                 stage_seconds: dict) -> str:
    """Writes ``REPORT.md`` (and copies its figures next to it); returns its text."""
    scratch, pre = results["scratch"], results["pretrained"]
    ratios = demo_ratios(results)
    paper_ratio = pre["paper"][0] / scratch["paper"][0] if pre["paper"] and scratch["paper"] \
        else None
    rows = [results[k] for k in ("scratch", "scratch_trainable", "pretrained") if k in results]
    table = xl.format_table(rows, f"Table 1 layout, scale={scale}: S1 labels only, test "
                                  f"S9/S11, mean over actions (mm)")
    pretrain_dir = plans["pretrained"].pretrain.path(workdir)
    pretext = {}
    if os.path.exists(os.path.join(pretrain_dir, run_dir.PRETEXT_EVAL_FILE)):
        with open(os.path.join(pretrain_dir, run_dir.PRETEXT_EVAL_FILE)) as f:
            pretext = json.load(f)
    gap_png = _copy(os.path.join(pretrain_dir, "sync_vs_gap.png"), workdir, "sync_vs_gap.png")
    ex_scratch = _copy(plans["scratch"].evaluate.path(workdir, xl.EVAL_PNG), workdir,
                       "examples_scratch.png")
    ex_pre = _copy(plans["pretrained"].evaluate.path(workdir, xl.EVAL_PNG), workdir,
                   "examples_pretrained.png")
    curves = {"pre-training (sync/flip)": read_scalars(pretrain_dir),
              "fine-tune, random init": read_scalars(plans["scratch"].finetune.path(workdir))}
    if "scratch_trainable" in plans:
        curves["fine-tune, random init, all trainable"] = read_scalars(
            plans["scratch_trainable"].finetune.path(workdir))
    curves["fine-tune, pre-trained"] = read_scalars(plans["pretrained"].finetune.path(workdir))
    plot_curves(curves, os.path.join(workdir, "curves.png"))
    pretext_lines = [f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}"
                     for k, v in sorted(pretext.items()) if not isinstance(v, (dict, list))]
    times = "\n".join(f"| {k} | {_fmt_time(v)} |" for k, v in stage_seconds.items())
    frame_means = "; ".join(f"{r['title']} {r['measured_frame_mean'][0]:.1f}" for r in rows
                            if r.get("measured_frame_mean"))
    unseen_note = ""
    if pre.get("unseen"):
        unseen_note = (f"\nThe unseen-motion columns are S9/S11 performing held-out motion "
                       f"families that no pre-training or fine-tuning data contains "
                       f"({pre['unseen_num_frames']} frames).\n")
    if pre.get("real"):
        unseen_note += (f"\nThe real-motion columns are S9/S11 performing held-out real "
                        f"motion-capture clips (CMU subject 02: walk, run, jump, punch, pick "
                        f"up, wash self; a capture subject and clips that no pre-training or "
                        f"fine-tuning data contains) "
                        f"({pre['real_num_frames']} frames). Per clip, pre-trained / random "
                        f"init MPJPE / PA-MPJPE ratios: {real_clip_lines(workdir, plans)}.\n")
    better = min(rows, key=lambda r: r["measured"][0])
    text = f"""# tf_synchro demo report

Scale: `{scale}`. Same dataset, same fine-tuning budget for every row; only the encoder's
initialisation (and, for the second baseline, which blocks train) differs.

{table}{unseen_note}
{_ratio_lines(ratios, paper_ratio)}

MPJPE as a mean over frames instead of over actions: {frame_means}.

## Pretext task on held-out subjects
{chr(10).join(pretext_lines) or '(no pretext evaluation found)'}

![sync accuracy vs time gap]({gap_png})

## Training curves
![curves](curves.png)

## Example predictions (S9/S11): ground truth vs prediction
Random init:

![scratch]({ex_scratch})

Pre-trained:

![pretrained]({ex_pre})

## Serving
The best model on the standard test ({better['title']}) is exported for TF Serving at
`{export_path}`.

## Stage times (this run; reused stages count 0)
| stage | time |
|---|---|
{times}
"""
    path = os.path.join(workdir, REPORT)
    tmp = locks.temp_path(path)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return text


# ----------------------------------------------------------------------------- main

def _load(path: str) -> xl.Row:
    return xl.load_row(os.path.join(xl.REPO, path) if not os.path.isabs(path) else path)


def run(workdir: str, scale: str, seed: int, scratch_row: str, pretrained_row: str,
        log=print, scratch_trainable_row: Optional[str] = None, real_motion_test: bool = False,
        real_motion_pool: bool = False, real_motion_labelled: int = 0,
        real_motion_mirror: bool = False, finetune_steps: int = 0) -> dict:
    """Runs the demo; returns ``{"results", "ratio", "ratios", "export", "report"}``.

    ``ratio`` is the pre-trained / random-init MPJPE (means over actions); ``ratios`` has
    every headline ratio (:func:`demo_ratios`). ``real_motion_test`` / ``real_motion_pool`` /
    ``real_motion_labelled`` / ``real_motion_mirror`` add the committed real motion-capture
    clips to the dataset (:func:`real_motion_overrides`); ``finetune_steps`` (0: the rows') sets every row's
    fine-tuning budget.
    """
    rows = {"scratch": _load(scratch_row), "pretrained": _load(pretrained_row)}
    if scratch_trainable_row:
        rows["scratch_trainable"] = _load(scratch_trainable_row)
    extra = real_motion_overrides(real_motion_test, real_motion_pool, real_motion_labelled,
                                  real_motion_mirror)
    if extra:
        rows = {k: r.with_overrides("synthesize", extra) for k, r in rows.items()}
    rows = finetune_overrides(rows, finetune_steps)
    if any(rows[k].init != "scratch" for k in rows if k != "pretrained") or \
            rows["pretrained"].init != "pretrained":
        raise app.UsageError("--scratch_row and --scratch_trainable_row must be random-init "
                             "rows and --pretrained_row a pre-trained one")
    plans = {k: xl.plan_row(r, scale, seed) for k, r in rows.items()}
    _check_workdir(workdir, {"scale": scale, "seed": seed,
                             "stages": {k: [s.key for s in p.stages()] for k, p in plans.items()}})

    # The stage order of the job: data, pre-training, the fine-tunes, the evaluations.
    order = [("dataset", plans["pretrained"].data),
             ("pre-training", plans["pretrained"].pretrain)]
    titles = {"scratch": "random init", "scratch_trainable": "random init, all trainable",
              "pretrained": "pre-trained"}
    for k in plans:
        if plans[k].data.key != plans["pretrained"].data.key:
            order.insert(1, (f"dataset ({titles[k]} row)", plans[k].data))
    order += [(f"fine-tune ({titles[k]})", plans[k].finetune) for k in titles if k in plans]
    order += [(f"evaluate ({titles[k]})", plans[k].evaluate) for k in titles if k in plans]
    total = len(order) + 2
    start = time.time()
    stage_seconds = {}
    for i, (title, stage) in enumerate(order, 1):
        t0 = time.time()
        log(f"\n=== [{i}/{total}] {title} — elapsed {_fmt_time(time.time() - start)}")
        xl.run_stage(stage, workdir, log)
        stage_seconds[title] = time.time() - t0
    results = {}
    for k, plan in plans.items():
        results[k] = xl.run_row(plan, workdir, log=lambda _: None)  # all cached: collects
    better = min(results, key=lambda k: results[k]["measured"][0])
    export = xl.Stage("export", "tf_synchro.export", None, ["--version=1"],
                      {"--model_dir": plans[better].finetune}, "--export_dir")
    log(f"\n=== [{total - 1}/{total}] export ({titles[better]}) — elapsed "
        f"{_fmt_time(time.time() - start)}")
    t0 = time.time()
    export_dir = xl.run_stage(export, workdir, log)
    stage_seconds[f"export ({titles[better]})"] = time.time() - t0
    log(f"\n=== [{total}/{total}] report — elapsed {_fmt_time(time.time() - start)}")
    text = write_report(workdir, scale, results, plans, os.path.join(export_dir, "1"),
                        stage_seconds)
    log(text.split("## Pretext")[0])
    log(f"total {_fmt_time(time.time() - start)}; report: {os.path.join(workdir, REPORT)}")
    return {"results": results, "export": os.path.join(export_dir, "1"),
            "ratio": results["pretrained"]["measured"][0] / results["scratch"]["measured"][0],
            "ratios": demo_ratios(results), "report": os.path.join(workdir, REPORT)}


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    configs.warn_deprecated(BINARY)
    config = configs.from_flags(configs.DemoConfig)
    with xl.suite_workdir(config.workdir):
        run(config.workdir, config.scale, config.seed, config.scratch_row,
            config.pretrained_row, scratch_trainable_row=config.scratch_trainable_row,
            real_motion_test=config.real_motion_test, real_motion_pool=config.real_motion_pool,
            real_motion_labelled=config.real_motion_labelled,
            real_motion_mirror=config.real_motion_mirror, finetune_steps=config.finetune_steps)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
