"""Paper experiments as cached stages of the project's own binaries.

An *experiment row* (one line of the paper's Table 1 or 2) is described by a flagfile in
``flags/table1/`` or ``flags/table2/`` (the flags of :class:`tf_synchro.configs.RowConfig`),
or in code (the ``scaling`` suite, :func:`scaling_rows`): a few row settings plus config
overrides ``{field: value}`` per stage binary (:class:`Row`). Running a row means running,
as subprocesses, exactly the binaries a user would run:

    tfrecords_tools.synthesize -> tf_synchro.pretrain (unless random init)
        -> tf_synchro.finetune -> tf_synchro.evaluate

with the base settings of a *scale* (``cpu`` or ``paper``: a flagfile per binary) plus the
row's overrides, given as the binary's flags (``--name=value``). Each stage runs in ``<workdir>/stages/<stage>-<key>`` where ``key`` hashes
everything the stage depends on: the flagfile's flag lines (not its comments), the row's
overrides, the contents of files and folders those flags name, and the keys of the stages
it reads. So

* rows that share a stage share its directory (Table 1's rows d, g, k and m are the same
  pre-training at the paper scale, and d, g, j and m at the cpu scale, whose flagfile
  uses difference fusion; each runs once);
* changed settings get a new directory: results of different settings never mix;
* an interrupted stage is resumed by its own binary (each one resumes), and a finished one
  (``stage_done.json``) is reused.
"""
from __future__ import annotations

import contextlib
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
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import flags

from tf_synchro import configs, run_dir
from tf_synchro.tasks.metrics import METRICS
from tfrecords_tools.runtime import cli, figures, fileio, locks
from tfrecords_tools.runtime import flags as flag_engine

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


class StageError(cli.DataError):
    """A stage's binary failed; the message names the stage, its command and its log (exit
    status 1 through :func:`tfrecords_tools.runtime.cli.run`)."""


# ----------------------------------------------------------------------------- rows

@dataclasses.dataclass(frozen=True)
class Row(configs.RowConfig):
    """One experiment row: its settings (:class:`tf_synchro.configs.RowConfig`) and, per
    stage binary, config overrides ``{field: value}`` applied over the scale's flagfile
    (a row flagfile's ``--<binary>_args`` flags, parsed by :func:`load_row`)."""

    path: str = ""
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def with_overrides(self, binary: str, values: Mapping[str, Any]) -> "Row":
        """The row with ``values`` added to the overrides of stage binary ``binary``."""
        merged = {**self.overrides, binary: {**self.overrides.get(binary, {}), **values}}
        return dataclasses.replace(self, overrides=merged)


def stage_config(binary: str) -> tuple:
    """``(config class, excluded fields, module)`` of a stage binary's flags."""
    if binary == "synthesize":
        from tfrecords_tools.synth import config as synth_config
        return synth_config.SynthesizeRun, (), "tfrecords_tools.synthesize"
    cls = {"pretrain": configs.PretrainConfig, "finetune": configs.FinetuneConfig,
           "evaluate": configs.EvaluateConfig}[binary]
    return (cls, configs.FINETUNE_EXCLUDE if binary == "finetune" else (),
            f"tf_synchro.{binary}")


def parse_overrides(binary: str, args: Sequence[str]) -> dict:
    """``{field: value}`` of flags ``args`` of stage binary ``binary``, parsed and checked as
    the binary does (:func:`tfrecords_tools.runtime.flags.parse_given`).

    Raises:
      ValueError: an unknown flag or a bad value, naming it.
    """
    cls, exclude, module = stage_config(binary)
    return flag_engine.parse_given(cls, args, exclude, binary=module)


def load_row(path: str) -> Row:
    """Parses a row flagfile (the flags of :class:`tf_synchro.configs.RowConfig`).

    Raises:
      ValueError: naming the file and the flag that is unknown or malformed.
    """
    fv = flags.FlagValues()
    configs.define_flags(configs.RowConfig, fv)
    try:
        fv(["row", f"--flagfile={path}"])
        settings = configs.from_flags(configs.RowConfig, fv)
    except (flags.Error, OSError, ValueError) as e:
        raise ValueError(f"row flagfile {path}: {e}") from e
    if not settings.row:
        raise ValueError(f"row flagfile {path}: --row is required")
    if settings.paper and len(settings.paper) != 3:
        raise ValueError(f"row flagfile {path}: --paper needs 3 numbers, got "
                         f"{list(settings.paper)}")
    overrides = {}
    for binary in configs.ROW_STAGES:
        args = getattr(settings, f"{binary}_args")
        bad = [a for a in args if not a.startswith("--")]
        if bad:
            raise ValueError(f"row flagfile {path}: --{binary}_args values must be flags "
                             f"(--name=value), got {bad}")
        try:
            given = parse_overrides(binary, args)
        except ValueError as e:
            raise ValueError(f"row flagfile {path}: --{binary}_args: {e}") from None
        if given:
            overrides[binary] = given
    kept = {f.name: getattr(settings, f.name) for f in dataclasses.fields(configs.RowConfig)
            if not f.name.endswith("_args")}
    return Row(**kept, path=path, overrides=overrides)


# The scaling suite: pre-training budgets (multiples of the scale's --train_steps) at three
# counts of unlabelled people, each point against the random-init row b; b0 (random init,
# every block trainable) beside it. The labelled-subject rows are those of table1/baselines.
SCALING_PEOPLE = ((5, ("S1", "S5", "S6", "S7", "S8")),
                  (25, ("S1", "S5", "S6", "S7", "S8", "U0?", "U1?", "U20")),
                  (105, None))  # None: the scale's own --train_subjects (every person).
SCALING_BUDGETS = (0.25, 0.5, 1, 2, 4)


def scaling_rows() -> list[Row]:
    """The rows of the scaling suite, in table order."""
    rows = [load_row(os.path.join(FLAGS_DIR, "baselines", "b0_random_init_all_trainable.flags")),
            load_row(os.path.join(FLAGS_DIR, "table1", "b_random_init_no_background.flags"))]
    for people, subjects in SCALING_PEOPLE:
        for factor in SCALING_BUDGETS:
            rows.append(Row(
                row=f"p{people:03d}_x{factor:g}".replace(".", "_"),
                title=f"{people} people, {factor:g} x the demo's pre-training steps",
                baseline="b", series=f"{people} people",
                pretrain_steps_factor=None if factor == 1 else float(factor),
                overrides={"pretrain": {"train_subjects": subjects}} if subjects else {}))
    return rows


# Suites defined in code (the others are folders of row flagfiles under flags/).
SUITES = {"scaling": scaling_rows}


def suite_rows(suite: str) -> list[Row]:
    """Rows of a suite defined in code (:data:`SUITES`), else of ``flags/<suite>/*.flags`` (or
    of a directory path), sorted by file name."""
    if suite in SUITES:
        return SUITES[suite]()
    folder = suite if os.path.isdir(suite) else os.path.join(FLAGS_DIR, suite)
    paths = sorted(glob.glob(os.path.join(folder, "*.flags")))
    if not paths:
        known = sorted([d for d in os.listdir(FLAGS_DIR)
                        if os.path.isdir(os.path.join(FLAGS_DIR, d))] + list(SUITES))
        raise ValueError(f"--suite={suite}: no row flagfiles in {folder}; known suites: {known}")
    return [load_row(p) for p in paths]


# ----------------------------------------------------------------------------- stages

def _read(path: str) -> str:
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def stage_key(settings: dict) -> str:
    """Short stable hash of a stage's settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def input_digest(path: str) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted;
    hidden names skipped), so a stage that reads them gets a new key when they change."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        files = [("", path)]
    else:
        files = sorted(
            (os.path.relpath(os.path.join(root, name), path), os.path.join(root, name))
            for root, dirs, names in os.walk(path)
            if not any(part.startswith(".") for part in os.path.relpath(root, path).split(os.sep)
                       if part != ".")
            for name in names if not name.startswith("."))
    for rel, full in files:
        digest.update(f"{rel}\0{fileio.sha256_file(full)}\n".encode())
    return digest.hexdigest()


def _path_inputs(flag_lines: Sequence[str]) -> dict:
    """``{"--flag=value": digest}`` for the flags whose value names an existing file or
    folder (relative to the repository, the stages' working directory, or absolute)."""
    inputs = {}
    for line in flag_lines:
        name, sep, value = line.partition("=")
        if not (sep and name.startswith("--") and value):
            continue
        path = value if os.path.isabs(value) else os.path.join(REPO, value)
        if os.path.exists(path):
            inputs[line] = input_digest(path)
    return inputs


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
        settings = {"module": self.module,
                    "flags": flags,
                    "args": list(self.args),
                    "upstream": {k: s.key for k, s in self.upstream.items()}}
        # Files a flag names (motion clips, a calibration) enter the key by content: editing
        # or replacing them gives a new stage, never a finished one made from the old files.
        # Only where there are any, so the keys of other stages stay as they were.
        inputs = _path_inputs((flags or []) + list(self.args))
        if inputs:
            settings["inputs"] = inputs
        return settings

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
    pretrain_steps: Optional[int] = None  # the pre-training's effective --train_steps

    def stages(self) -> list[Stage]:
        return [s for s in (self.data, self.pretrain, self.finetune, self.evaluate) if s]


def scale_settings(binary: str, flagfile: str) -> dict:
    """``{field: value}`` that the scale's flagfile of stage binary ``binary`` sets."""
    return parse_overrides(binary, [f"--flagfile={os.path.join(REPO, flagfile)}"])


def _drop_restated(overrides: Mapping[str, Any], binary: str, flagfile: str) -> dict:
    """``overrides`` without the ones that restate the effective value (the flagfile's, else
    the config's default), so a row that names the default shares its stage with one that
    does not (Table 1's rows d, g, k and m are one pre-training at the paper scale)."""
    cls, exclude, _ = stage_config(binary)
    base = flag_engine.flat_values(configs.make(cls, scale_settings(binary, flagfile)), exclude)
    return {k: v for k, v in overrides.items() if base.get(k) != v}


def _scaled_steps(row: Row, flagfile: str) -> dict:
    """``train_steps`` (and a checkpoint period that divides it) for a row's
    ``pretrain_steps_factor`` of the scale's pre-training flagfile."""
    base = configs.make(configs.PretrainConfig, scale_settings("pretrain", flagfile)).optimizer
    steps = int(round(base.train_steps * row.pretrain_steps_factor))
    if steps < 1:
        raise ValueError(f"row {row.row}: --pretrain_steps_factor="
                         f"{row.pretrain_steps_factor:g} gives {steps} steps of {flagfile}")
    if steps % base.steps_per_checkpoint:  # e.g. 0.25 x 7000 = 1750, checkpoints every 500
        return {"train_steps": steps,
                "steps_per_checkpoint": math.gcd(steps, base.steps_per_checkpoint)}
    return {"train_steps": steps}


def plan_row(row: Row, scale: str, seed: int = 0, deterministic: bool = False) -> RowPlan:
    """Stages of ``row`` at ``scale`` (``cpu`` or ``paper``). ``deterministic`` fixes the
    tf.data order of pre-training and fine-tuning (``--deterministic``): a seed then fixes
    every batch (not the CPU kernels' rounding); those stages get new keys."""
    if scale not in SCALES:
        raise ValueError(f"--scale={scale}: expected one of {sorted(SCALES)}")
    files = SCALES[scale]
    arch = [f"--arch={row.arch}"] if row.arch else []
    runtime = [f"--seed={seed}"] + (["--deterministic=true"] if deterministic else [])
    given = {b: row.overrides.get(b, {}) for b in configs.ROW_STAGES}
    data = Stage("data", "tfrecords_tools.synthesize", files["synthesize"],
                 [f"--background={str(row.background).lower()}",
                  *flag_engine.flag_args(given["synthesize"])], {}, "--output_dir")
    pretrain, pretrain_steps = None, None
    if row.init == "pretrained":
        own = _drop_restated(given["pretrain"], "pretrain", files["pretrain"])
        scaled = (_scaled_steps(row, files["pretrain"])
                  if row.pretrain_steps_factor not in (None, 1.0) else {})
        pretrain = Stage("pretrain", "tf_synchro.pretrain", files["pretrain"],
                         arch + runtime + flag_engine.flag_args(own)
                         + flag_engine.flag_args(scaled),
                         {"--data_dir": data}, "--model_dir")
        pretrain_steps = configs.make(configs.PretrainConfig, {
            **scale_settings("pretrain", files["pretrain"]), **own,
            **scaled}).optimizer.train_steps
    finetune = Stage("finetune", "tf_synchro.finetune", files["finetune"],
                     arch + [f"--label_subjects={','.join(row.label_subjects)}",
                             *runtime] + ([] if pretrain else ["--init_from=scratch"])
                     + flag_engine.flag_args(given["finetune"]),
                     {"--data_dir": data, **({"--init_from": pretrain} if pretrain else {})},
                     "--model_dir")
    evaluate = Stage("evaluate", "tf_synchro.evaluate", files["evaluate"],
                     flag_engine.flag_args(given["evaluate"]),
                     {"--data_dir": data, "--model_dir": finetune}, None,
                     {"--output_json": EVAL_JSON, "--output_png": EVAL_PNG})
    return RowPlan(row, data, pretrain, finetune, evaluate, pretrain_steps)


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
                float(plan.pretrain_steps) if plan.pretrain else None),
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
    panels = (("mpjpe", "MPJPE ratio (S9/S11)"), ("pa_mpjpe", "PA-MPJPE ratio (S9/S11)"),
              ("unseen_mpjpe", "MPJPE ratio (unseen motion)"),
              ("unseen_pa_mpjpe", "PA-MPJPE ratio (unseen motion)"),
              ("sync_auc", "held-out sync AUC"), ("flip_auc", "held-out flip AUC"))
    series_names = sorted({r["series"] for r in points}, key=natural_key)
    seeds = sorted({r.get("seed") for r in points}, key=lambda s: (s is None, s))
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    fig, axes = figures.pyplot().subplots(2, 3, figsize=(14, 7))
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
        figures.finish_axes(ax, "pre-training steps")
    fig.tight_layout()
    figures.save_figure(fig, path, dpi=90)
    return True


@contextlib.contextmanager
def suite_workdir(workdir: str):
    """A suite driver's workdir for the ``with`` block: locked (each stage binary locks its
    own stage directory inside it), stale temporaries removed, and :func:`resumable`."""
    with locks.hold(workdir, "--workdir"):
        locks.clean_stale_temps(workdir)
        with resumable():
            yield


@contextlib.contextmanager
def resumable():
    """A suite driver's job: a failed stage or a full disk ends it through the binaries' one
    exit path (:func:`tfrecords_tools.runtime.cli.run`: one line, exit 1) saying how to resume."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise StageError("the disk is full; free space and re-run the same command: finished "
                         "stages are kept and unfinished ones resume from their last "
                         "checkpoint") from None
    except StageError as e:
        raise StageError(f"{e}; re-run the same command to resume") from None
