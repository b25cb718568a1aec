"""Paper experiments as cached stages of the project's own binaries.

An *experiment row* (one line of the paper's Table 1 or 2) is described by a flagfile in
``flags/table1/`` or ``flags/table2/`` (see :func:`define_row_flags`). Running a row means
running, as subprocesses, exactly the binaries a user would run:

    tfrecords_tools.synthesize -> tf_synchro.pretrain (unless random init)
        -> tf_synchro.finetune -> tf_synchro.evaluate

with the base settings of a *scale* (``cpu`` or ``paper``: a flagfile per binary) plus the
row's own flags. Each stage runs in ``<workdir>/stages/<stage>-<key>`` where ``key`` hashes
everything the stage depends on: the flagfile's flag lines (not its comments), the row's
overrides and the keys of the stages it reads. So

* rows that share a stage share its directory (Table 1's rows d, g, k and m are the same
  pre-training at the paper scale, and d, g, j and m at the cpu scale, whose flagfile
  uses difference fusion; each runs once);
* changed settings get a new directory: results of different settings never mix;
* an interrupted stage is resumed by its own binary (each one resumes), and a finished one
  (``stage_done.json``) is reused.
"""
from __future__ import annotations

import dataclasses
import errno
import glob
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

from absl import flags

from tf_synchro import configs, run_dir
from tf_synchro.tasks.metrics import METRICS
from tfrecords_tools.runtime import figures, fileio

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS_DIR = os.path.join(REPO, "flags")
STAGE_DONE = "stage_done.json"
FLAGS_SNAPSHOT = "base.flags"  # the scale's flagfile as it was when the stage was planned
# TensorFlow/absl C++ log lines (I1128 12:00:00.1 ...), and absl's pre-init notice.
_NOISE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl)")

# Base flagfiles of each scale: one per binary (paths relative to the repository).
SCALES = {
    "cpu": {"synthesize": "flags/synthesize_cpu.flags",
            "pretrain": "flags/pretrain_synthetic.flags",
            "finetune": "flags/finetune_synthetic.flags",
            "evaluate": "flags/evaluate_cpu.flags"},
    "paper": {"synthesize": "flags/synthesize_paper.flags",
              "pretrain": "flags/pretrain_paper_r18.flags",
              "finetune": "flags/finetune_paper_r18.flags",
              "evaluate": "flags/evaluate_paper.flags"},
    # Smoke tests: every stage in seconds (numbers mean nothing).
    "tiny": {"synthesize": "flags/synthesize_tiny.flags",
             "pretrain": "flags/pretrain_tiny.flags",
             "finetune": "flags/finetune_tiny.flags",
             "evaluate": "flags/evaluate_tiny.flags"},
}

EVAL_JSON, EVAL_PNG = run_dir.EVAL_FILE, "examples.png"
PRETEXT_KEYS = ("sync_accuracy", "flip_accuracy", "sync_auc", "flip_auc")


class StageError(RuntimeError):
    """A stage's binary failed; the message names the stage, its command and its log."""


# ----------------------------------------------------------------------------- rows

def define_row_flags(fv: flags.FlagValues) -> None:
    """Defines the flags a row flagfile may set, on a private ``FlagValues``."""
    flags.DEFINE_string("row", None, "Row id in the paper's table (a, b, ...).", flag_values=fv)
    flags.DEFINE_string("title", "", "Row title as in the paper.", flag_values=fv)
    flags.DEFINE_list("paper", [], "Paper's MPJPE,N-MPJPE,PA-MPJPE (mm) for this row.",
                      flag_values=fv)
    flags.DEFINE_bool("background", False, "Dataset rendered with a static background.",
                      flag_values=fv)
    flags.DEFINE_enum("init", "pretrained", ["pretrained", "scratch"],
                      "Fine-tune from the self-supervised encoder or random init.",
                      flag_values=fv)
    flags.DEFINE_list("label_subjects", ["S1"], "Subjects with 3D labels for fine-tuning.",
                      flag_values=fv)
    flags.DEFINE_string("arch", None, "Encoder of both the pre-training and the fine-tuning "
                        "(checked by them); None keeps the scale's flagfile value.",
                        flag_values=fv)
    # Config overrides: any flag of a stage's binary, one per occurrence, appended after the
    # scale's flagfile (so they win), e.g. --pretrain_args=--fusion=concat. The binaries
    # check them (tf_synchro.configs holds each setting and its choices); nothing is
    # repeated here.
    for binary in ("synthesize", "pretrain", "finetune", "evaluate"):
        flags.DEFINE_multi_string(f"{binary}_args", [],
                                  f"A flag for the {binary} stage, e.g. --{binary}_args=--x=1 "
                                  f"(repeat for several).", flag_values=fv)
    flags.DEFINE_string("baseline", None, "Row id of the random-init row this row's ratios "
                        "(pre-trained / random init) are taken against.", flag_values=fv)
    flags.DEFINE_string("series", None, "Line of the suite's plot this row belongs to.",
                        flag_values=fv)
    flags.DEFINE_float("x", None, "This row's position on the plot's x axis (default with "
                       "--pretrain_steps_factor: the pre-training steps).", flag_values=fv)
    flags.DEFINE_float("pretrain_steps_factor", None, "Pre-train for this multiple of the "
                       "scale's --train_steps (so one row file serves every scale).",
                       flag_values=fv)


@dataclasses.dataclass(frozen=True)
class Row:
    """One experiment row (parsed from its flagfile)."""

    row: str
    title: str
    paper: tuple
    background: bool
    init: str
    label_subjects: tuple
    arch: Optional[str]
    path: str = ""
    synthesize_args: tuple = ()
    pretrain_args: tuple = ()
    finetune_args: tuple = ()
    evaluate_args: tuple = ()
    baseline: Optional[str] = None
    series: Optional[str] = None
    x: Optional[float] = None
    pretrain_steps_factor: Optional[float] = None


def load_row(path: str) -> Row:
    """Parses a row flagfile.

    Raises:
      ValueError: naming the file and the flag that is unknown or malformed.
    """
    fv = flags.FlagValues()
    define_row_flags(fv)
    try:
        fv(["row", f"--flagfile={path}"])
    except (flags.Error, OSError) as e:
        raise ValueError(f"row flagfile {path}: {e}") from e
    if not fv.row:
        raise ValueError(f"row flagfile {path}: --row is required")
    if fv.paper and len(fv.paper) != 3:
        raise ValueError(f"row flagfile {path}: --paper needs 3 numbers, got {fv.paper}")
    for binary in ("synthesize", "pretrain", "finetune", "evaluate"):
        bad = [a for a in getattr(fv, f"{binary}_args") if not a.startswith("--")]
        if bad:
            raise ValueError(f"row flagfile {path}: --{binary}_args values must be flags "
                             f"(--name=value), got {bad}")
    return Row(fv.row, fv.title, tuple(float(x) for x in fv.paper), fv.background, fv.init,
               tuple(fv.label_subjects), fv.arch, path,
               synthesize_args=tuple(fv.synthesize_args), pretrain_args=tuple(fv.pretrain_args),
               finetune_args=tuple(fv.finetune_args), evaluate_args=tuple(fv.evaluate_args),
               baseline=fv.baseline, series=fv.series, x=fv.x,
               pretrain_steps_factor=fv.pretrain_steps_factor)


def suite_rows(suite: str) -> list[Row]:
    """Rows of ``flags/<suite>/*.flags`` (or of a directory path), sorted by file name."""
    folder = suite if os.path.isdir(suite) else os.path.join(FLAGS_DIR, suite)
    paths = sorted(glob.glob(os.path.join(folder, "*.flags")))
    if not paths:
        known = sorted(d for d in os.listdir(FLAGS_DIR)
                       if os.path.isdir(os.path.join(FLAGS_DIR, d)))
        raise ValueError(f"--suite={suite}: no row flagfiles in {folder}; known suites: {known}")
    return [load_row(p) for p in paths]


# ----------------------------------------------------------------------------- stages

def _read(path: str) -> str:
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def stage_key(settings: dict) -> str:
    """Short stable hash of a stage's settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


@dataclasses.dataclass
class Stage:
    """One invocation of a binary, cached in ``<workdir>/stages/<name>-<key>``."""

    name: str
    module: str
    flagfile: Optional[str]
    args: list            # row-specific flags (no paths)
    upstream: dict         # {"--flag": Stage}: earlier stages' directories passed on
    out_flag: Optional[str]  # the flag given this stage's directory (None: only out_files)
    out_files: dict = dataclasses.field(default_factory=dict)  # {"--flag": file in the dir}

    def __post_init__(self):
        # The flagfile's text is read once: the key and the binary's flags must not change
        # if the file is edited while a suite runs (the binary reads a snapshot of it).
        self.flag_text = _read(self.flagfile) if self.flagfile else None

    def settings(self) -> dict:
        # The flagfile's flag lines, in order: editing its comments keeps the finished stage.
        flags = None if self.flag_text is None else [
            line.strip() for line in self.flag_text.splitlines()
            if line.strip() and not line.strip().startswith("#")]
        return {"module": self.module,
                "flags": flags,
                "args": list(self.args),
                "upstream": {k: s.key for k, s in self.upstream.items()}}

    @property
    def key(self) -> str:
        return stage_key(self.settings())

    def directory(self, workdir: str) -> str:
        return os.path.join(workdir, "stages", f"{self.name}-{self.key}")

    def path(self, workdir: str, name: str = "") -> str:
        """The stage directory, or the file ``name`` inside it."""
        return os.path.join(self.directory(workdir), name) if name else self.directory(workdir)

    def command(self, workdir: str) -> list[str]:
        cmd = [sys.executable, "-m", self.module]
        if self.flagfile:
            cmd.append(f"--flagfile={self.path(workdir, FLAGS_SNAPSHOT)}")
        cmd += [f"{flag}={stage.path(workdir)}" for flag, stage in self.upstream.items()]
        cmd += list(self.args)
        if self.out_flag:
            cmd.append(f"{self.out_flag}={self.path(workdir)}")
        cmd += [f"{flag}={self.path(workdir, name)}" for flag, name in self.out_files.items()]
        return cmd

    def done(self, workdir: str) -> bool:
        return os.path.exists(os.path.join(self.directory(workdir), STAGE_DONE))


def run_stage(stage: Stage, workdir: str, log: Callable[[str], None] = print,
              label: str = "", quiet: bool = False) -> str:
    """Runs ``stage`` unless it already finished; returns its directory.

    The binary's output is streamed (its progress bar included; not with ``quiet``) and
    kept in ``<stage dir>/log.txt``.

    Raises:
      StageError: the binary exited non-zero (or ran out of disk).
    """
    directory = stage.directory(workdir)
    if stage.done(workdir):
        log(f"{label}{stage.name}: reusing finished {os.path.relpath(directory, workdir)}")
        return directory
    os.makedirs(directory, exist_ok=True)
    fileio.write_json_atomic(os.path.join(directory, "settings.json"), stage.settings())
    if stage.flag_text is not None:
        with open(os.path.join(directory, FLAGS_SNAPSHOT), "w") as f:
            f.write(f"# snapshot of {stage.flagfile}\n{stage.flag_text}")
    cmd = stage.command(workdir)
    log(f"{label}{stage.name}: {' '.join(cmd[1:])}")
    start = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    log_path = os.path.join(directory, "log.txt")
    with open(log_path, "a") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO, text=True, bufsize=1)
        tail = []
        for line in proc.stdout:
            log_file.write(line)
            tail = (tail + [line])[-20:]
            if quiet or _NOISE.match(line):
                continue  # Kept in log.txt; TensorFlow's C++ start-up chatter is not progress.
            sys.stdout.write("    " + line if not line.startswith("\r") else line)
            sys.stdout.flush()
        rc = proc.wait()
    if rc != 0:
        text = "".join(tail)
        hint = ""
        if "No space left on device" in text or "ENOSPC" in text:
            hint = " (the disk is full: free space and re-run; finished stages are kept)"
        # The binaries end with one "<binary>: error: ..." line (tfrecords_tools.runtime.cli).
        errors = [line.strip() for line in tail if ": error: " in line]
        last = errors[-1] if errors else " | ".join(line.strip() for line in tail[-3:])
        raise StageError(f"stage {stage.name} failed with exit code {rc}{hint}: {last} (full "
                         f"log: {log_path}; command: {' '.join(cmd)})")
    fileio.write_json_atomic(os.path.join(directory, STAGE_DONE),
                                 {"seconds": round(time.time() - start, 1),
                                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return directory


# ----------------------------------------------------------------------------- row plans

@dataclasses.dataclass
class RowPlan:
    """The stages of one row at one scale."""

    row: Row
    data: Stage
    pretrain: Optional[Stage]
    finetune: Stage
    evaluate: Stage

    def stages(self) -> list[Stage]:
        return [s for s in (self.data, self.pretrain, self.finetune, self.evaluate) if s]


def flag_value(stage: "Stage", name: str) -> Optional[str]:
    """The value a stage's binary gets for ``--name``: its last occurrence in the stage's
    flagfile text, then its arguments (later wins, as absl parses them)."""
    lines = (stage.flag_text or "").splitlines() + list(stage.args)
    given = [a.strip() for a in lines if a.strip().startswith(f"--{name}=")]
    return given[-1].split("=", 1)[1] if given else None


def _flag_text(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _drop_restated(args: Sequence[str], flagfile: str, config) -> list:
    """``args`` without the ones that restate the effective value (the flagfile's, else the
    config's default), so a row that names the default shares its stage with one that
    does not (Table 1's rows d, g, k and m are one pre-training at the paper scale)."""
    probe = Stage("probe", "", flagfile, [], {}, None)
    defaults = {name: _flag_text(default)
                for name, _, default, _ in configs.flag_fields(config)}
    kept = []
    for arg in args:
        name, _, value = arg[2:].partition("=")
        current = flag_value(probe, name)
        if (current if current is not None else defaults.get(name)) != value:
            kept.append(arg)
    return kept


def _scaled_steps(row: Row, flagfile: str) -> list:
    """``--train_steps`` (and a checkpoint period that divides it) for a row's
    ``pretrain_steps_factor`` of the scale's pre-training flagfile."""
    probe = Stage("pretrain", "tf_synchro.pretrain", flagfile, [], {}, None)
    base, period = flag_value(probe, "train_steps"), flag_value(probe, "steps_per_checkpoint")
    if base is None or period is None:
        raise ValueError(f"row flagfile {row.path}: --pretrain_steps_factor needs "
                         f"--train_steps and --steps_per_checkpoint in {flagfile}")
    steps = int(round(int(base) * row.pretrain_steps_factor))
    if steps < 1:
        raise ValueError(f"row flagfile {row.path}: --pretrain_steps_factor="
                         f"{row.pretrain_steps_factor:g} gives {steps} steps of {flagfile}")
    if steps % int(period):  # e.g. 0.25 x 7000 = 1750 with checkpoints every 500: every 250
        return [f"--train_steps={steps}", f"--steps_per_checkpoint={math.gcd(steps, int(period))}"]
    return [f"--train_steps={steps}"]


def plan_row(row: Row, scale: str, seed: int = 0, deterministic: bool = False) -> RowPlan:
    """Stages of ``row`` at ``scale`` (``cpu`` or ``paper``). ``deterministic`` fixes the
    tf.data order of pre-training and fine-tuning (``--deterministic``): a seed then fixes
    every batch (not the CPU kernels' rounding); those stages get new keys."""
    if scale not in SCALES:
        raise ValueError(f"--scale={scale}: expected one of {sorted(SCALES)}")
    files = SCALES[scale]
    arch = [f"--arch={row.arch}"] if row.arch else []
    runtime = [f"--seed={seed}"] + (["--deterministic=true"] if deterministic else [])
    data = Stage("data", "tfrecords_tools.synthesize", files["synthesize"],
                 [f"--background={str(row.background).lower()}", *row.synthesize_args], {},
                 "--output_dir")
    pretrain = None
    if row.init == "pretrained":
        pretrain = Stage("pretrain", "tf_synchro.pretrain", files["pretrain"],
                         arch + [*runtime,
                                 *_drop_restated(row.pretrain_args, files["pretrain"],
                                                 configs.PretrainConfig)]
                         + (_scaled_steps(row, files["pretrain"])
                            if row.pretrain_steps_factor not in (None, 1.0) else []),
                         {"--data_dir": data}, "--model_dir")
    finetune = Stage("finetune", "tf_synchro.finetune", files["finetune"],
                     arch + [f"--label_subjects={','.join(row.label_subjects)}",
                             *runtime] + ([] if pretrain else ["--init_from=scratch"])
                     + list(row.finetune_args),
                     {"--data_dir": data, **({"--init_from": pretrain} if pretrain else {})},
                     "--model_dir")
    evaluate = Stage("evaluate", "tf_synchro.evaluate", files["evaluate"], list(row.evaluate_args),
                     {"--data_dir": data, "--model_dir": finetune}, None,
                     {"--output_json": EVAL_JSON, "--output_png": EVAL_PNG})
    return RowPlan(row, data, pretrain, finetune, evaluate)


def run_row(plan: RowPlan, workdir: str, log: Callable[[str], None] = print) -> dict:
    """Runs (or reuses) every stage of a row; returns its result record."""
    n = len(plan.stages())
    for i, stage in enumerate(plan.stages(), 1):
        run_stage(stage, workdir, log, label=f"[row {plan.row.row} {i}/{n}] ")
    with open(plan.evaluate.path(workdir, EVAL_JSON)) as f:
        report = json.load(f)
    unseen = report.get("unseen_motion")
    real = report.get("real_motion")
    pretext = {}
    pretext_path = plan.pretrain.path(workdir, run_dir.PRETEXT_EVAL_FILE) if plan.pretrain else ""
    if pretext_path and os.path.exists(pretext_path):
        with open(pretext_path) as f:
            pretext = {k: v for k, v in json.load(f).items() if k in PRETEXT_KEYS}
    # Tables quote the protocol's mean over actions (the per-action means averaged).
    return {"row": plan.row.row, "title": plan.row.title, "paper": list(plan.row.paper),
            "measured": [report["mean_over_actions"][m] for m in METRICS],
            "measured_frame_mean": [report["mean"][m] for m in METRICS],
            "num_frames": report["num_frames"],
            "unseen": [unseen["mean_over_actions"][m] for m in METRICS] if unseen else None,
            "unseen_num_frames": unseen["num_frames"] if unseen else 0,
            "real": [real["mean_over_actions"][m] for m in METRICS] if real else None,
            "real_num_frames": real["num_frames"] if real else 0,
            "pretext": pretext, "baseline": plan.row.baseline, "series": plan.row.series,
            "x": plan.row.x if plan.row.x is not None else (
                float(flag_value(plan.pretrain, "train_steps")) if plan.pretrain else None),
            "stages": {s.name: os.path.relpath(s.directory(workdir), workdir)
                       for s in plan.stages()}}


def add_ratios(results: Sequence[dict]) -> list[dict]:
    """Adds ``ratios`` (pre-trained / random init, MPJPE and PA-MPJPE, standard, unseen- and
    real-motion test) to every result whose ``baseline`` row is among ``results``."""
    by_row = {r["row"]: r for r in results}
    out = []
    for r in results:
        r = dict(r)
        base = by_row.get(r.get("baseline") or "")
        if base is not None:
            ratios = {"mpjpe": r["measured"][0] / base["measured"][0],
                      "pa_mpjpe": r["measured"][2] / base["measured"][2]}
            if r.get("unseen") and base.get("unseen"):
                ratios["unseen_mpjpe"] = r["unseen"][0] / base["unseen"][0]
                ratios["unseen_pa_mpjpe"] = r["unseen"][2] / base["unseen"][2]
            if r.get("real") and base.get("real"):
                ratios["real_mpjpe"] = r["real"][0] / base["real"][0]
                ratios["real_pa_mpjpe"] = r["real"][2] / base["real"][2]
            r["ratios"] = ratios
        out.append(r)
    return out


# ----------------------------------------------------------------------------- tables

def format_table(results: Sequence[dict], title: str) -> str:
    """Markdown table: measured MPJPE / N-MPJPE / PA-MPJPE (mean over actions) beside the
    paper's numbers; with the unseen-motion and real-motion tests, held-out pretext ROC
    areas and ratios against a baseline row when any row has them."""
    unseen = any(r.get("unseen") for r in results)
    real = any(r.get("real") for r in results)
    pretext = any(r.get("pretext") for r in results)
    ratios = any(r.get("ratios") for r in results)
    head = ["row", "setting", "MPJPE", "N-MPJPE", "PA-MPJPE", "paper MPJPE", "paper N-MPJPE",
            "paper PA-MPJPE"]
    head += ["unseen MPJPE", "unseen PA-MPJPE"] if unseen else []
    head += ["real-motion MPJPE", "real-motion PA-MPJPE"] if real else []
    head += ["held-out sync / flip AUC"] if pretext else []
    head += ["ratio MPJPE / PA-MPJPE", "unseen ratio MPJPE / PA-MPJPE"] if ratios else []
    head += ["real-motion ratio MPJPE / PA-MPJPE"] if ratios and real else []

    def num(values, idx=(0, 1, 2)):
        return [f"{values[i]:.1f}" for i in idx] if values else ["—"] * len(idx)

    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in results:
        cells = [r["row"], r["title"]] + num(r.get("measured")) + num(r.get("paper"))
        if unseen:
            cells += num(r.get("unseen"), (0, 2))
        if real:
            cells += num(r.get("real"), (0, 2))
        if pretext:
            p = r.get("pretext") or {}
            cells.append(" / ".join(f"{p[k]:.2f}" if k in p else "–"
                                    for k in ("sync_auc", "flip_auc")) if p else "–")
        if ratios:
            q = r.get("ratios") or {}
            cells.append(f"{q['mpjpe']:.2f} / {q['pa_mpjpe']:.2f}" if q else "–")
            cells.append(f"{q['unseen_mpjpe']:.2f} / {q['unseen_pa_mpjpe']:.2f}"
                         if "unseen_mpjpe" in q else "–")
            if real:
                cells.append(f"{q['real_mpjpe']:.2f} / {q['real_pa_mpjpe']:.2f}"
                             if "real_mpjpe" in q else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def natural_key(text: str) -> list:
    """Sort key that orders numbers in text by value: "5 people" < "25 people" < "105 people"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def plot_series(results: Sequence[dict], path: str) -> bool:
    """Plots each row's ratios and held-out pretext AUCs against its ``x``, one line per
    ``series`` (e.g. ratio vs pre-training steps, a line per people count). Rows may carry
    a ``seed`` (results merged from several runs): then each series keeps one colour and
    each seed gets its own marker and line style. Returns False (and draws nothing) when no
    row has both."""
    points = [r for r in results if r.get("series") and r.get("x") is not None]
    if not points:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = (("mpjpe", "MPJPE ratio (S9/S11)"), ("pa_mpjpe", "PA-MPJPE ratio (S9/S11)"),
              ("unseen_mpjpe", "MPJPE ratio (unseen motion)"),
              ("unseen_pa_mpjpe", "PA-MPJPE ratio (unseen motion)"),
              ("sync_auc", "held-out sync AUC"), ("flip_auc", "held-out flip AUC"))
    series_names = sorted({r["series"] for r in points}, key=natural_key)
    seeds = sorted({r.get("seed") for r in points}, key=lambda s: (s is None, s))
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, label) in zip(axes.ravel(), panels):
        for i, series in enumerate(series_names):
            for j, seed in enumerate(seeds):
                pts = sorted((r["x"], (r.get("ratios") or {}).get(
                    key, (r.get("pretext") or {}).get(key)))
                    for r in points if r["series"] == series and r.get("seed") == seed)
                pts = [(x, y) for x, y in pts if y is not None]
                if pts:
                    marker, line = styles[j % len(styles)]
                    ax.plot(*zip(*pts), marker=marker, linestyle=line, color=f"C{i}",
                            label=series if len(seeds) == 1 else f"{series}, seed {seed}")
        ax.set_xscale("log", base=2)
        ax.set_title(label)
        ax.set_xlabel("pre-training steps")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    figures.save_figure(fig, path, dpi=90)
    return True


def run_or_exit(what: str, fn: Callable[[], object], refusals: tuple = ()) -> None:
    """Runs a binary's job; a failed stage, a refusal or a full disk exits with one clear line.

    Args:
      what: the binary's name, for the message.
      fn: the job.
      refusals: exception types meaning "refused before doing anything".
    """
    try:
        fn()
    except StageError as e:
        sys.exit(f"{what} stopped: {e}; re-run the same command to resume")
    except refusals as e:
        sys.exit(f"{what} refused: {e}")
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        sys.exit(f"{what} stopped: the disk is full; free space and re-run the same command: "
                 f"finished stages are kept and unfinished ones resume from their last "
                 f"checkpoint")
