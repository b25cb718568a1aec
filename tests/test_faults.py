"""Faults and bad input (issue 15): kills, damaged data, the run-directory lock, bad flags.

Binaries run in this process through :func:`tfrecords_tools.runtime.cli.invoke` (fresh flags, the
same error handling and exit codes as ``python -m``), which avoids a Python + TensorFlow
start-up per invocation. Only the SIGKILL cases start subprocesses: a hook makes the
binary kill itself at a chosen write (before the Nth ``os.replace`` of a given temporary),
so the kill points are exact, not timed.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from tfrecords_tools import inspect as inspect_lib
from tfrecords_tools import dataset_io, synthesize
from tfrecords_tools.runtime import cli, fileio, locks

pytestmark = pytest.mark.large  # End to end: kills, re-runs and misuses the real binaries.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTH = dict(subjects=("S1", "S9"), actions=("Walking", "Boxing"), takes=1, num_frames=40,
             image_size=32, clip_length=16, seed=0)
SYNTH_FLAGS = ["--subjects=S1,S9", "--actions=Walking,Boxing", "--takes=1", "--num_frames=40",
               "--image_size=32", "--clip_length=16", "--seed=0"]
PRETRAIN_FLAGS = ["--train_subjects=S1", "--eval_subjects=", "--width=0.125",
                  "--input_size=32", "--head_units=8", "--batch_size=4", "--d_min=4",
                  "--d_max=30", "--pairs_per_clip=6", "--shuffle_buffer=32", "--seed=1",
                  "--steps_per_checkpoint=1", "--log_every=1"]
FINETUNE_FLAGS = ["--init_from=scratch", "--width=0.125", "--input_size=32",
                  "--label_subjects=S1", "--batch_size=4", "--train_steps=2",
                  "--steps_per_checkpoint=1", "--log_every=1"]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _files(root):
    out = set()
    for d, dirs, names in os.walk(root):
        out |= {os.path.relpath(os.path.join(d, n), root) for n in names + dirs}
    return out


def _temps(root):
    return sorted(p for p in _files(root) if locks.temp_owner(os.path.basename(p)))


def _shard_hashes(data_dir):
    return {n: hashlib.sha256(open(os.path.join(data_dir, n), "rb").read()).hexdigest()
            for n in os.listdir(data_dir) if n.endswith(".tfrecord")}


_KILL = """
import importlib, os, signal, sys
_real, _seen = os.replace, [0]
def _count(src):
    if {pattern!r} in str(src):
        _seen[0] += 1
        if _seen[0] == {nth}:
            os.kill(os.getpid(), signal.SIGKILL)
def _replace(src, dst, *a, **k):
    _count(src)
    return _real(src, dst, *a, **k)
os.replace = _replace
sys.argv = [{module!r}] + {argv!r}
from tfrecords_tools.runtime import cli
import tensorflow as tf  # Shards are renamed through tf.io.gfile (any filesystem).
_grename = tf.io.gfile.rename
def _gfile_rename(src, dst, overwrite=False):
    _count(src)
    return _grename(src, dst, overwrite)
tf.io.gfile.rename = _gfile_rename
m = importlib.import_module({module!r})
m.define_flags()
cli.run(m.main)
"""


class _Killed:
    """A binary started in the background that SIGKILLs itself before the nth rename of a
    ``pattern`` temporary (started early, so other tests run meanwhile)."""

    started: list = []

    def __init__(self, module, argv, pattern, nth=1):
        _Killed.started.append(self)
        code = _KILL.format(pattern=pattern, nth=nth, module=module, argv=list(argv))
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def wait(self):
        _, err = self.proc.communicate(timeout=300)
        assert self.proc.returncode == -signal.SIGKILL, (self.proc.returncode, err[-3000:])


def _invoke(module, argv):
    code, out, err = cli.invoke(module, argv)
    return code, out, err


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A clean tiny dataset (S1 and S9, two actions, 32 px)."""
    out = str(tmp_path_factory.mktemp("faults") / "data")
    synthesize.generate(out, synthesize.SynthConfig(**SYNTH), log=lambda s: None)
    return out


SYNTH_KILLS = {"shard": (".tfrecord.tmp-", 2), "manifest": ("manifest.json.tmp-", 1)}


@pytest.fixture(scope="module", autouse=True)
def kills(data, tmp_path_factory):
    """The SIGKILLed runs, started at once in the background: synthesize at two points,
    pre-training between the second checkpoint's weights and its state.json."""
    root = tmp_path_factory.mktemp("killed")
    out = {}
    for name, (pattern, nth) in SYNTH_KILLS.items():
        path = str(root / f"synth-{name}")
        out[name] = (path, _Killed("tfrecords_tools.synthesize",
                                   [f"--output_dir={path}", *SYNTH_FLAGS], pattern, nth))
    path = str(root / "pretrain")
    argv = [f"--data_dir={data}", f"--model_dir={path}", "--train_steps=3", *PRETRAIN_FLAGS]
    out["pretrain"] = (path, _Killed("tf_synchro.pretrain", argv, "state.json.tmp-", 2), argv)
    yield out
    for killed in _Killed.started:  # Not waited for when only some tests ran.
        if killed.proc.poll() is None:
            killed.proc.kill()
            killed.proc.communicate()


@pytest.fixture(scope="module")
def pretrained(kills):
    """The killed pre-training run, resumed to the end in this process."""
    model_dir, killed, argv = kills["pretrain"]
    killed.wait()
    with open(os.path.join(model_dir, "backup", "state.json")) as f:
        assert json.load(f)["step"] == 1
    stale = os.path.join(model_dir, "backup", f"latest.weights.h5.tmp-{_dead_pid()}.weights.h5")
    open(stale, "w").close()
    code, out, err = _invoke("tf_synchro.pretrain", argv)
    assert code == 0, err[-3000:]
    return {"dir": model_dir, "out": out, "err": err}


@pytest.fixture(scope="module")
def finetuned(data, kills, tmp_path_factory):
    """A finished fine-tuning run; an export of it killed mid-write starts in the background."""
    root = tmp_path_factory.mktemp("finetuned")
    model_dir = str(root / "finetune")
    code, _, err = _invoke("tf_synchro.finetune", [f"--data_dir={data}",
                                                   f"--model_dir={model_dir}",
                                                   *FINETUNE_FLAGS])
    assert code == 0, err[-3000:]
    export_argv = [f"--model_dir={model_dir}", f"--export_dir={root / 'serving'}"]
    killed_export = _Killed("tf_synchro.export", export_argv, "/.tmp-", 1)
    return {"dir": model_dir, "export": (str(root / "serving"), killed_export, export_argv)}


# ----------------------------------------------------------------------------- temporaries

def test_stale_temporaries_are_named_by_inspect_and_removed_by_the_writer(data, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(data, copy)
    dead, alive = _dead_pid(), os.getpid()
    for name in (f"S9-Boxing.tfrecord.tmp-{dead}", f"manifest.json.tmp-{dead}",
                 f"S1-Walking.tfrecord.tmp-{alive}"):
        open(os.path.join(copy, name), "w").close()
    report = inspect_lib.inspect_dataset(copy, log=lambda s: None)
    assert report.stray == sorted([f"S9-Boxing.tfrecord.tmp-{dead}",
                                   f"manifest.json.tmp-{dead}",
                                   f"S1-Walking.tfrecord.tmp-{alive}"])
    code, out, err = _invoke("tfrecords_tools.inspect", [copy, "--contact_sheet="])
    assert code == 0 and "3 stray file(s)" in out, (out, err)
    removed = locks.clean_stale_temps(copy, log=lambda s: None)
    # Only the dead writer's files go; a live process's temporary is left alone.
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [f"S9-Boxing.tfrecord.tmp-{dead}", f"manifest.json.tmp-{dead}"])
    assert os.path.exists(os.path.join(copy, f"S1-Walking.tfrecord.tmp-{alive}"))


# ----------------------------------------------------------------------------- the lock

def _fake_lock(directory, pid, host=None):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, locks.LOCK_FILE), "w") as f:
        json.dump({"host": host or socket.gethostname(), "pid": pid, "started": "earlier",
                   "command": "pretrain --model_dir=..."}, f)


def test_lock_refuses_a_live_holder_takes_over_a_dead_one(tmp_path):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        run_dir = str(tmp_path / "run")
        _fake_lock(run_dir, holder.pid)
        with pytest.raises(locks.LockError, match=(
                rf"--model_dir={run_dir} is in use by pid {holder.pid} on host "
                rf"{socket.gethostname()}")):
            locks.acquire(run_dir, "--model_dir")
        # Another host's process cannot be checked from here: refused too.
        _fake_lock(run_dir, 1, host="elsewhere.example")
        with pytest.raises(locks.LockError, match="pid 1 on host elsewhere.example"):
            locks.acquire(run_dir, "--model_dir")
    finally:
        holder.kill()
        holder.wait()
    _fake_lock(run_dir, _dead_pid())
    warnings = []
    with locks.hold(run_dir, "--model_dir", log=warnings.append):
        with open(os.path.join(run_dir, locks.LOCK_FILE)) as f:
            assert json.load(f)["pid"] == os.getpid()
        with pytest.raises(locks.LockError, match=f"pid {os.getpid()}"):
            locks.acquire(run_dir, "--model_dir")  # Held: even this process waits.
    assert len(warnings) == 1 and "taking over the stale lock" in warnings[0]
    assert not os.path.exists(os.path.join(run_dir, locks.LOCK_FILE))
    # A lock that made its directory removes it again if nothing else was written.
    fresh = str(tmp_path / "fresh")
    with locks.hold(fresh):
        assert os.path.isdir(fresh)
    assert not os.path.exists(fresh)


def test_binaries_refuse_a_locked_directory_and_nested_stage_locks_work(data, tmp_path):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        for module, argv, flag in [
                ("tf_synchro.pretrain", [f"--data_dir={data}", "--train_steps=2",
                                         *PRETRAIN_FLAGS], "--model_dir"),
                ("tfrecords_tools.synthesize", SYNTH_FLAGS, "--output_dir"),
                ("tf_synchro.demo", [], "--workdir")]:
            target = str(tmp_path / module)
            _fake_lock(target, holder.pid)
            code, _, err = _invoke(module, argv + [f"{flag}={target}"])
            assert code == 1 and err.count("\n") == 1, err
            assert f"{flag}={target} is in use by pid {holder.pid}" in err
            assert os.listdir(target) == [locks.LOCK_FILE]  # Nothing written.
    finally:
        holder.kill()
        holder.wait()
    # The demo holds its workdir while the stage binaries it runs hold their own stage
    # directories inside it: different locks, so nesting cannot deadlock.
    workdir = str(tmp_path / "workdir")
    with locks.hold(workdir, "--workdir"):
        code, _, err = _invoke("tfrecords_tools.synthesize", [
            f"--output_dir={os.path.join(workdir, 'stages', 'data-x')}", *SYNTH_FLAGS,
            "--actions=Walking", "--subjects=S1"])
        assert code == 0, err


# ----------------------------------------------------------------------------- damaged data

def _damaged_copy(data, tmp_path, how, shard="S1-Walking.tfrecord"):
    copy = str(tmp_path / f"damaged-{how}")
    shutil.copytree(data, copy)
    path = os.path.join(copy, shard)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if how == "flip":  # 64 flipped bytes inside the first record: same size.
            f.seek(100)
            chunk = f.read(64)
            f.seek(100)
            f.write(bytes(b ^ 0xFF for b in chunk))
        elif how == "flip_last":  # Inside the last record only.
            f.seek(size - 200)
            chunk = f.read(64)
            f.seek(size - 200)
            f.write(bytes(b ^ 0xFF for b in chunk))
        else:
            f.truncate(size // 2)
    return copy, path


@pytest.mark.parametrize("how,expect", [("flip", "sha256 differs"),
                                        ("truncate", "bytes, the manifest says")])
def test_damaged_shard_is_named_before_anything_is_written(data, tmp_path, how, expect):
    copy, shard = _damaged_copy(data, tmp_path, how)
    for module, argv in [
            ("tf_synchro.pretrain", ["--train_steps=2", *PRETRAIN_FLAGS]),
            ("tf_synchro.finetune", FINETUNE_FLAGS)]:
        model_dir = str(tmp_path / f"{module}-{how}")
        code, _, err = _invoke(module, [f"--data_dir={copy}", f"--model_dir={model_dir}",
                                        *argv])
        assert code == 1 and err.count("\n") == 1, err
        assert f"{shard}: " in err and expect in err
        assert not os.path.exists(model_dir)


def test_skip_corrupt_records_counts_and_carries_on(data, finetuned, tmp_path):
    copy, shard = _damaged_copy(data, tmp_path, "flip_last", "S9-Walking.tfrecord")
    argv = [f"--data_dir={copy}", f"--model_dir={finetuned['dir']}", "--subjects=S9",
            "--frame_step=1", f"--output_json={tmp_path / 'eval.json'}", "--num_examples=0"]
    code, _, err = _invoke("tf_synchro.evaluate", argv)
    assert code == 1 and err.count("\n") == 1 and shard in err, err
    assert not os.path.exists(tmp_path / "eval.json")
    code, out, err = _invoke("tf_synchro.evaluate", argv + ["--skip_corrupt_records"])
    assert code == 0, err[-3000:]
    records = {s["file"]: s["num_records"] for s in dataset_io.load_manifest(copy)["shards"]}
    n = records["S9-Walking.tfrecord"]
    assert (f"{shard}: sha256 differs from the manifest (damaged or changed); {n - 1} of {n} "
            f"records readable") in out
    assert "1 damaged or unreadable record(s) in 1 shard(s) will be skipped" in out
    assert json.load(open(tmp_path / "eval.json"))["num_frames"] > 0


def test_allow_subject_overlap_turns_the_error_into_a_warning(data, finetuned, tmp_path):
    argv = [f"--data_dir={data}", f"--model_dir={finetuned['dir']}", "--subjects=S1",
            "--frame_step=1", f"--output_json={tmp_path / 'eval.json'}", "--num_examples=0"]
    code, out, err = _invoke("tf_synchro.evaluate", argv + ["--allow_subject_overlap"])
    assert code == 0, err[-3000:]
    assert ("warning: --subjects=S1 includes S1, which the model trained on (its labels and "
            "pre-training: S1): those are not held-out results" in out)
    assert json.load(open(tmp_path / "eval.json"))["subjects"] == ["S1"]


def test_manifest_paths_must_stay_inside_the_dataset(data, tmp_path):
    copy = str(tmp_path / "escaping")
    shutil.copytree(data, copy)
    path = os.path.join(copy, dataset_io.MANIFEST)
    manifest = json.load(open(path))
    manifest["shards"][0]["file"] = "../other/S1-Walking.tfrecord"
    json.dump(manifest, open(path, "w"))
    with pytest.raises(dataset_io.DatasetError, match=r"'\.\./other/S1-Walking\.tfrecord' is "
                                                      r"not a plain file name"):
        dataset_io.load_manifest(copy)


# ----------------------------------------------------------------------------- bad invocations

def _rig_input(root, kind):
    """A rig input folder with a known defect."""
    os.makedirs(root)
    if kind == "zero_byte":
        os.makedirs(os.path.join(root, "seq"))
        for cam in ("a", "b"):
            open(os.path.join(root, "seq", f"{cam}.mp4"), "wb").close()
    elif kind == "bad_subject":
        os.makedirs(os.path.join(root, "seq"))
        for cam in ("a", "b"):
            open(os.path.join(root, "seq", f"{cam}.mp4"), "wb").close()
        json.dump({"subject": 123}, open(os.path.join(root, "seq", "sequence.json"), "w"))
    elif kind == "clash":
        for name in ("a-b", "a_b"):
            os.makedirs(os.path.join(root, name))
            for cam in ("x", "y"):
                open(os.path.join(root, name, f"{cam}.mp4"), "wb").close()
    return root


# (id, module, argv with {D} data, {P} pretrain run, {F} finetune run, {O} a fresh output
#  path, {I} a prepared input; exit code, text the one error line must contain, input kind)
BAD = [
    ("pt-steps0", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--train_steps=0"], 2, "--train_steps=0", None),
    ("pt-steps-neg", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                             "--train_steps=-4"], 2, "--train_steps=-4", None),
    ("pt-period", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--train_steps=4", "--steps_per_checkpoint=3"],
     2, "--steps_per_checkpoint=3", None),
    ("pt-width", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}", "--width=-1"],
     2, "--width=-1", None),
    ("pt-input0", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--input_size=0"], 2, "--input_size=0", None),
    ("pt-overlap", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                           "--train_subjects=S1,S9", "--eval_subjects=S9"],
     2, "--allow_subject_overlap", None),
    ("pt-int", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                       "--train_steps=abc"], 2, "--train_steps=abc", None),
    ("pt-required", "tf_synchro.pretrain", ["--data_dir={D}"], 2, "--model_dir", None),
    ("pt-no-data", "tf_synchro.pretrain", ["--data_dir={O}/none", "--model_dir={O}"],
     1, "{O}/none", None),
    ("pt-tasks", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                         "--tasks=flip,sync"], 2, "--tasks=flip,sync", None),
    ("pt-gaps", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}", "--d_min=60",
                                        "--d_max=30"], 2, "--d_min=60", None),
    ("pt-batch", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                         "--batch_size=0"], 2, "--batch_size=0", None),
    ("pt-verify", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--verify_data=some"], 2, "--verify_data", None),
    ("pt-unknown", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}", "--lr=1"],
     2, "'lr'", None),
    ("pt-positional", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}", "extra"],
     2, "'extra'", None),
    ("pt-subject", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                           "--train_subjects=S4", "--eval_subjects="],
     2, "--train_subjects=S4: subject 'S4' is not in", None),
    ("pt-eval-subject", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                                "--train_subjects=S1", "--eval_subjects=S11"],
     2, "--eval_subjects=S11: subject 'S11' is not in {D} (it has S1,S9)", None),
    ("pt-pattern", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                           "--train_subjects=U*", "--eval_subjects="],
     2, "--train_subjects=U*: pattern 'U*' matches no subject", None),
    ("ft-input0", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                          "--input_size=0"], 2, "--input_size=0", None),
    ("ft-freeze", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                          "--freeze_blocks=9"], 2, "--freeze_blocks=9", None),
    ("ft-steps0", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                          "--train_steps=0"], 2, "--train_steps=0", None),
    ("ft-subject", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                           "--label_subjects=S4"], 2,
     "--label_subjects=S4: subject 'S4' is not in", None),
    ("ft-head", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                        "--pose_head_units=a"], 2, "--pose_head_units=a",
     None),
    ("ft-init", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                        "--init_from={O}/nothing", *FINETUNE_FLAGS[1:]],
     2, "--init_from={O}/nothing", None),
    ("ev-missing", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={O}", "--subjects=S9"],
     2, "--model_dir={O}", None),
    ("ev-overlap", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                           "--subjects=S1"], 2, "--subjects=S1", None),
    ("ev-step", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                        "--subjects=S9", "--frame_step=0",
                                        "--output_json={O}/e.json"], 2, "--frame_step=0", None),
    ("ev-pretrain-dir", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={P}",
                                                "--subjects=S9",
                                                "--output_json={O}/e.json"],
     1, "not from a fine-tuning run", None),
    ("ep-missing", "tf_synchro.evaluate_pretext", ["--model_dir={O}"], 1, "{O}/config.json",
     None),
    ("ep-overlap", "tf_synchro.evaluate_pretext", ["--model_dir={P}", "--data_dir={D}",
                                                   "--subjects=S1", "--output_dir={O}"],
     2, "--subjects=S1", None),
    ("ep-gaps", "tf_synchro.evaluate_pretext", ["--model_dir={P}", "--d_min=60",
                                                "--d_max=30", "--output_dir={O}"],
     2, "--d_min=60", None),
    ("ex-missing", "tf_synchro.export", ["--model_dir={O}/m", "--export_dir={O}"],
     2, "--model_dir={O}/m", None),
    ("ex-version", "tf_synchro.export", ["--model_dir={F}", "--export_dir={O}",
                                         "--version=0"], 2, "--version=0", None),
    ("ex-what", "tf_synchro.export", ["--model_dir={F}", "--export_dir={O}", "--what=all"],
     2, "--what", None),
    ("ex-required", "tf_synchro.export", ["--model_dir={F}"], 2, "--export_dir", None),
    ("sy-clip1", "tfrecords_tools.synthesize", ["--output_dir={O}", "--clip_length=1"],
     2, "--clip_length=1", None),
    ("sy-image0", "tfrecords_tools.synthesize", ["--output_dir={O}", "--image_size=0"],
     2, "--image_size=0", None),
    ("sy-npz", "tfrecords_tools.synthesize", ["--output_dir={O}", "--motion_file={I}"],
     1, "motion file {I}: is not a readable .npz", "not_npz"),
    ("sy-motion-missing", "tfrecords_tools.synthesize", ["--output_dir={O}",
                                                         "--motion_file={O}.npz"],
     2, "--motion_file {O}.npz", None),
    ("sy-subject", "tfrecords_tools.synthesize", ["--output_dir={O}", "--subjects=S99"],
     2, "--subjects", None),
    ("sy-extra", "tfrecords_tools.synthesize", ["--output_dir={O}", "--extra_subjects=1000"],
     2, "--extra_subjects=1000", None),
    ("sy-workers", "tfrecords_tools.synthesize", ["--output_dir={O}", "--num_workers=0"],
     2, "--num_workers=0", None),
    ("sy-takes", "tfrecords_tools.synthesize", ["--output_dir={O}", "--takes=0"],
     2, "--takes=0", None),
    ("rig-zero-byte", "tfrecords_tools.rig", ["--input_dir={I}", "--output_dir={O}"],
     1, "no records were written", "zero_byte"),
    ("rig-subject", "tfrecords_tools.rig", ["--input_dir={I}", "--output_dir={O}"],
     1, "sequence.json: 'subject' must be a non-empty string, got 123", "bad_subject"),
    ("rig-clash", "tfrecords_tools.rig", ["--input_dir={I}", "--output_dir={O}"],
     1, "['a-b', 'a_b'] would share the shard name", "clash"),
    ("rig-image0", "tfrecords_tools.rig", ["--input_dir={I}", "--output_dir={O}",
                                           "--image_size=0"], 2, "--image_size=0", "clash"),
    ("rig-clip1", "tfrecords_tools.rig", ["--input_dir={I}", "--output_dir={O}",
                                          "--clip_length=1"], 2, "--clip_length=1", "clash"),
    ("rig-input", "tfrecords_tools.rig", ["--input_dir={O}/in", "--output_dir={O}"],
     2, "--input_dir {O}/in", None),
    ("h36m-root", "tfrecords_tools.h36m", ["--h36m_root={O}/in", "--output_dir={O}"],
     2, "--h36m_root {O}/in", None),
    ("h36m-cameras", "tfrecords_tools.h36m", ["--h36m_root={I}", "--output_dir={O}",
                                              "--cameras=123"], 2, "--cameras", "empty"),
    ("h36m-empty", "tfrecords_tools.h36m", ["--h36m_root={I}", "--output_dir={O}"],
     1, "holds no subject folders", "empty"),
    ("in-usage", "tfrecords_tools.inspect", [], 2, "DATA_DIR", None),
    ("in-missing", "tfrecords_tools.inspect", ["{O}", "--contact_sheet="], 1, "{O}", None),
    ("demo-required", "tf_synchro.demo", [], 2, "--workdir", None),
    ("demo-scale", "tf_synchro.demo", ["--workdir={O}", "--scale=huge"], 2, "--scale", None),
    ("xp-rows", "tf_synchro.experiments", ["--workdir={O}", "--rows=zz"], 2, "--rows", None),
    # Issue 30: settings that used to reach TensorFlow/Keras (or train nothing).
    ("pt-warmup", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--train_steps=4", "--steps_per_checkpoint=2",
                                          "--warmup_steps=5"], 2, "--warmup_steps=5", None),
    ("pt-log0", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}", "--log_every=0"],
     2, "--log_every=0", None),
    ("pt-weights0", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                            "--sync_loss_weight=0", "--flip_loss_weight=0"],
     2, "nothing would train", None),
    ("pt-decay", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                         "--weight_decay=-1"], 2, "--weight_decay=-1", None),
    ("pt-lr-nan", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--learning_rate=nan"], 2, "--learning_rate=nan",
     None),
    ("pt-lr-inf", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                          "--learning_rate=inf"], 2, "--learning_rate=inf",
     None),
    ("pt-shuffle", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={O}",
                                           "--shuffle_buffer=-1"], 2, "--shuffle_buffer=-1",
     None),
    ("pt-model-file", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={I}",
                                              "--train_steps=2", *PRETRAIN_FLAGS],
     2, "--model_dir={I} exists and is a file, expected a directory", "file"),
    ("ft-dropout", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                           "--dropout=1.5"], 2, "--dropout=1.5", None),
    ("ft-stat0", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                         "--max_stat_frames=0"], 2, "--max_stat_frames=0",
     None),
    ("ft-data-file", "tf_synchro.finetune", ["--data_dir={I}", "--model_dir={O}"],
     1, "dataset directory {I} is a file, expected a directory", "file"),
    ("ev-subject", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                           "--subjects=S11", "--output_json={O}/e.json"],
     2, "--subjects=S11: subject 'S11' is not in", None),
    ("ev-examples", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                            "--subjects=S9", "--num_examples=-1"],
     2, "--num_examples=-1", None),
    ("ev-batch0", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                          "--subjects=S9", "--batch_size=0"],
     2, "--batch_size=0", None),
    ("ev-subjects-empty", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                                  "--subjects="], 2, "--subjects=", None),
    ("ep-batch0", "tf_synchro.evaluate_pretext", ["--model_dir={P}", "--batch_size=0",
                                                  "--output_dir={O}"], 2, "--batch_size=0",
     None),
    ("ep-subject", "tf_synchro.evaluate_pretext", ["--model_dir={P}", "--data_dir={D}",
                                                   "--subjects=S11", "--output_dir={O}"],
     2, "--subjects=S11: subject 'S11' is not in", None),
    ("ep-output-empty", "tf_synchro.evaluate_pretext", ["--model_dir={P}", "--output_dir="],
     2, "--output_dir is empty", None),
    ("sy-frames5", "tfrecords_tools.synthesize", ["--output_dir={O}", "--num_frames=5"],
     2, "--num_frames=5", None),
    ("sy-output-empty", "tfrecords_tools.synthesize", ["--output_dir=", *SYNTH_FLAGS],
     2, "--output_dir is empty", None),
    ("sy-output-file", "tfrecords_tools.synthesize", ["--output_dir={I}", *SYNTH_FLAGS],
     2, "--output_dir={I} exists and is a file, expected a directory", "file"),
    # Found by the independent probe (README, "Failure behaviour"): blank paths, outputs
    # that are another tool's directory, absl's flagfile errors.
    ("pt-data-blank", "tf_synchro.pretrain", ["--data_dir=  ", "--model_dir={O}"], 2,
     "--data_dir='  ' is blank; expected a path", None),
    ("pr-images-empty", "tf_synchro.predict", ["--model={F}", "--images=", "--output={O}.json"],
     2, "--images is empty; expected a path", None),
    ("in-blank", "tfrecords_tools.inspect", [" ", "--contact_sheet="], 2, "DATA_DIR is empty",
     None),
    ("cal-output-empty", "tfrecords_tools.calibration", ["--input={I}", "--output="], 2,
     "--output is empty; expected a path", "file"),
    ("cal-output-dir", "tfrecords_tools.calibration", ["--input={I}", "--output={D}"], 2,
     "--output={D} is a directory", "file"),
    ("pt-model-is-data", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={D}",
                                                 "--train_steps=2", *PRETRAIN_FLAGS], 2,
     "--model_dir={D} holds a dataset (manifest.json); expected a run directory", None),
    ("sy-output-is-run", "tfrecords_tools.synthesize", ["--output_dir={F}", *SYNTH_FLAGS], 2,
     "--output_dir={F} holds folders (backup, tensorboard) and no dataset", None),
    ("rig-output-in-input", "tfrecords_tools.rig", ["--input_dir={I}", "--output_dir={I}/a-b/o"],
     2, "--output_dir={I}/a-b/o is inside --input_dir={I}", "clash"),
    ("ex-export-is-run", "tf_synchro.export", ["--model_dir={F}", "--export_dir={F}"], 2,
     "--export_dir={F} holds a training run or a dataset (config.json)", None),
    ("ft-init-ftrun", "tf_synchro.finetune", ["--data_dir={D}", "--model_dir={O}",
                                              "--init_from={F}", *FINETUNE_FLAGS[1:]], 2,
     "--init_from={F} holds a fine-tuning run; expected a pre-training model_dir", None),
    ("pt-model-is-ftrun", "tf_synchro.pretrain", ["--data_dir={D}", "--model_dir={F}",
                                                  "--train_steps=2", *PRETRAIN_FLAGS], 2,
     "--model_dir={F} holds a fine-tuning run; expected a pre-training run directory", None),
    ("pr-output-dir", "tf_synchro.predict", ["--model={F}", "--video={O}.mp4",
                                             "--output={I}.json"],
     2, "--output={I}.json is a directory; expected a .json or .npz file name", "dirjson"),
    ("pr-video-dir", "tf_synchro.predict", ["--model={F}", "--video={D}", "--output={O}.json"],
     1, "video {D} is a directory, expected a video file", None),
    ("sy-motion-dir", "tfrecords_tools.synthesize", ["--output_dir={O}", "--motion_file={I}"],
     1, "motion file {I}: is a directory, expected a motion file", "empty"),
    ("ev-png-below-file", "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={F}",
                                                  "--subjects=S9", "--output_json={O}/e.json",
                                                  "--output_png={I}/e.png"], 2,
     "--output_png={I}/e.png: {I} is a file, expected a directory there", "file"),
    ("ff-missing", "tf_synchro.pretrain", ["--flagfile={O}.flags", "--data_dir={D}",
                                           "--model_dir={O}"], 2,
     "pretrain: error: Unable to open flagfile", None),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    with open(root / "motion.npz", "wb") as f:
        f.write(b"these bytes are not an npz archive\n" * 4)
    return root


def _needs_pretrained(case):
    return any("{P}" in a for a in case[2])


@pytest.mark.parametrize("case", [c for c in BAD if not _needs_pretrained(c)],
                         ids=[c[0] for c in BAD if not _needs_pretrained(c)])
def test_bad_invocation_is_one_line_right_code_nothing_written(case, data, finetuned,
                                                               bad_inputs, tmp_path):
    _check_bad_invocation(case, data, {"dir": "/unused"}, finetuned, bad_inputs, tmp_path)


def _check_bad_invocation(case, data, pretrained, finetuned, bad_inputs, tmp_path):
    """Exit code, one stderr line naming the flag or file, no file added or removed."""
    name, module, argv, code, expect, kind = case
    out_path = str(tmp_path / "out")
    inp = str(bad_inputs / "motion.npz") if kind == "not_npz" else str(tmp_path / "input")
    if kind in ("zero_byte", "bad_subject", "clash"):
        _rig_input(inp, kind)
    elif kind == "empty":
        os.makedirs(inp)
    elif kind == "dirjson":
        os.makedirs(inp + ".json")
    elif kind == "file":
        open(inp, "w").close()
    subs = {"{D}": data, "{P}": pretrained["dir"], "{F}": finetuned["dir"], "{O}": out_path,
            "{I}": inp}

    def fill(text):
        for k, v in subs.items():
            text = text.replace(k, v)
        return text

    watched = [data, finetuned["dir"], str(tmp_path), str(bad_inputs)] + (
        [pretrained["dir"]] if os.path.isdir(pretrained["dir"]) else [])
    before = [_files(d) for d in watched]
    got, _, err = _invoke(module, [fill(a) for a in argv])
    assert got == code, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{module.rsplit('.', 1)[-1]}: error: ") and fill(expect) in \
        lines[0], lines[0]
    assert "Traceback" not in err
    assert [_files(d) for d in watched] == before  # Nothing written, nothing left.


def test_verbose_shows_the_traceback_and_subprocess_gives_one_error_line(tmp_path):
    with pytest.raises(ValueError, match="--clip_length=1"):
        cli.invoke("tfrecords_tools.synthesize", [f"--output_dir={tmp_path}/o",
                                                  "--clip_length=1", "--verbose"])
    proc = subprocess.run([sys.executable, "-m", "tfrecords_tools.synthesize",
                           f"--output_dir={tmp_path}/o", "--clip_length=1"], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert proc.returncode == 2 and errors == [
        "synthesize: error: --clip_length=1: expected an integer >= 6 (room for an unsynchronized "
        "pair)"], proc.stderr
    assert "Traceback" not in proc.stderr and not os.path.exists(f"{tmp_path}/o")


# ----------------------------------------------------------------------------- issue 30
# Non-finite training, JPEGs that do not decode inside valid records, SIGTERM, quiet stderr,
# former tracebacks and reworded messages.

def _rewrite_shard(copy, shard_name, change):
    """Re-writes shard ``shard_name`` of dataset ``copy`` with ``change(i, clip)`` applied
    to each record, then its manifest entry and sidecar: valid CRCs, sizes and sha256."""
    import tensorflow as tf
    from tfrecords_tools import schema
    path = os.path.join(copy, shard_name)
    clips = [schema.decode_clip(data) for _, data in dataset_io.iter_records(path)]
    with tf.io.TFRecordWriter(path) as w:
        for i, clip in enumerate(clips):
            w.write(schema.encode_clip(change(i, clip)))
    manifest_path = os.path.join(copy, dataset_io.MANIFEST)
    manifest = json.load(open(manifest_path))
    for entry in manifest["shards"]:
        if entry["file"] == shard_name:
            entry.update(sha256=fileio.sha256_file(path), bytes=os.path.getsize(path))
            fileio.write_json_atomic(path + ".json", entry)
    fileio.write_json_atomic(manifest_path, manifest)
    return path, clips


def _broken_jpeg(jpeg: bytes) -> bytes:
    # Header kept, scan zeroed: libjpeg fails ("jpeg::Uncompress failed"), markers intact.
    return jpeg[:20] + b"\x00" * (len(jpeg) - 22) + jpeg[-2:]


def _undecodable_copy(data, tmp_path, shard_name, records="first"):
    """A copy of ``data`` where image t=0 of view 0 of the first record (``records="all"``:
    every image of every record) of ``shard_name`` does not decode."""
    import dataclasses
    copy = str(tmp_path / f"undecodable-{records}")
    shutil.copytree(data, copy)

    def change(i, clip):
        if records == "all":
            images = [[_broken_jpeg(j) for j in row] for row in clip.images]
        elif i == 0:
            images = [list(row) for row in clip.images]
            images[0][0] = _broken_jpeg(images[0][0])
        else:
            return clip
        return dataclasses.replace(clip, images=images)

    path, clips = _rewrite_shard(copy, shard_name, change)
    return copy, path, clips[0].camera_ids[0]


def test_inspect_and_the_locator_name_an_undecodable_jpeg(data, tmp_path):
    copy, path, cam = _undecodable_copy(data, tmp_path, "S9-Walking.tfrecord")
    where = f"{path}: record 0: image t=0 view {cam}: JPEG does not decode"
    assert dataset_io.first_undecodable_image(dataset_io.shard_paths(copy)) == where
    assert dataset_io.first_undecodable_image(dataset_io.shard_paths(data)) is None
    dataset_io.verify_shards(copy, "full", log=lambda s: None)  # Checksums are valid.


@pytest.mark.parametrize("module,skip", [("tf_synchro.evaluate", False),
                                         ("tf_synchro.evaluate", True),
                                         ("tf_synchro.pretrain", False),
                                         ("tf_synchro.pretrain", True)])
def test_undecodable_jpeg_is_named_or_skipped_and_counted(data, finetuned, tmp_path, module,
                                                          skip):
    if module == "tf_synchro.evaluate":
        copy, path, cam = _undecodable_copy(data, tmp_path, "S9-Walking.tfrecord")
        out_json = tmp_path / "eval.json"
        argv = [f"--data_dir={copy}", f"--model_dir={finetuned['dir']}", "--subjects=S9",
                "--frame_step=1", f"--output_json={out_json}", "--num_examples=0"]
        written, what = out_json, "evaluation frame(s)"
    else:
        copy, path, cam = _undecodable_copy(data, tmp_path, "S1-Walking.tfrecord", "all")
        written = tmp_path / "pretrain"
        argv = [f"--data_dir={copy}", f"--model_dir={written}", "--train_steps=2",
                "--deterministic", *PRETRAIN_FLAGS]
        what = "clip(s)"
    code, out, err = _invoke(module, argv + (["--skip_corrupt_records"] if skip else []))
    where = f"{path}: record 0: image t=0 view {cam}: JPEG does not decode"
    if not skip:
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"{module.rsplit('.', 1)[1]}: error: {where}; ") and \
            "--skip_corrupt_records" in err, err
        if module == "tf_synchro.evaluate":
            assert not os.path.exists(written)
        else:  # Stopped at the first batch: no checkpoint, no model.
            assert not os.path.exists(written / "encoder.keras")
        return
    assert code == 0, err[-3000:]
    assert f"warning: --skip_corrupt_records: skipped " in out and \
        f"{what} holding a JPEG that does not decode (first in the data: {where})" in out, out
    if module == "tf_synchro.evaluate":
        report = json.load(open(written))
        assert report["skipped_undecodable_frames"] == 1
        assert report["num_frames"] > 0
    else:
        assert os.path.exists(written / "encoder.keras")


def test_fit_stops_at_the_first_non_finite_loss_and_keeps_the_last_checkpoint(tmp_path):
    import keras
    import numpy as np
    import tensorflow as tf
    from tf_synchro import run_dir, train_lib

    def model_and_fit(value, steps):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        ds = tf.data.Dataset.from_tensors((tf.constant([value]), tf.zeros([1]))).batch(1)
        return model, train_lib.fit(model, ds.repeat(), model_dir=str(tmp_path / "fit"),
                                    total_steps=steps, steps_per_epoch=2, verbose=False)

    model_and_fit(1.0, 2)  # A good checkpoint at step 2.
    backup = tmp_path / "fit" / run_dir.BACKUP_DIR
    weights = open(backup / run_dir.WEIGHTS_FILE, "rb").read()
    with pytest.raises(train_lib.NonFiniteError, match=(
            rf"^training stopped at step 3: loss is (nan|inf) \(not finite\); the checkpoint "
            rf"of step 2 in {backup} is kept and no model was saved; lower --learning_rate")):
        model_and_fit(float("inf"), 6)
    assert open(backup / run_dir.WEIGHTS_FILE, "rb").read() == weights
    assert json.load(open(backup / run_dir.STATE_FILE))["step"] == 2
    model, _ = model_and_fit(1.0, 2)  # Resumes nothing: step 2 is the end; weights finite.
    assert all(np.isfinite(w).all() for w in model.get_weights())
    model.layers[0].kernel.assign([[float("nan")]])
    with pytest.raises(train_lib.NonFiniteError, match="refusing to save a model whose "
                                                       "weights are not finite"):
        train_lib.save_model_atomic(model, str(tmp_path / "m.keras"))
    assert not os.path.exists(tmp_path / "m.keras")


def test_diverging_finetune_stops_with_one_line_and_saves_nothing(data, tmp_path):
    model_dir = tmp_path / "diverged"
    argv = [f"--data_dir={data}", f"--model_dir={model_dir}", *FINETUNE_FLAGS,
            "--learning_rate=1e30"]
    code, _, err = _invoke("tf_synchro.finetune", argv)
    assert code == 1 and err.count("\n") == 1, err
    assert re.match(r"finetune: error: training stopped at step \d+: (loss is (nan|inf)|the "
                    r"weights are not finite).*no model was saved; lower --learning_rate",
                    err), err
    assert not os.path.exists(model_dir / "pose_model.keras")
    assert not os.path.exists(model_dir / locks.LOCK_FILE)
    weights = model_dir / "backup" / "latest.weights.h5"
    if weights.exists():  # The checkpoint kept (if one was written) holds finite weights.
        import h5py
        import numpy as np
        arrays = []
        with h5py.File(weights, "r") as f:
            f.visititems(lambda _, o: arrays.append(o[()]) if isinstance(o, h5py.Dataset)
                         else None)
        assert arrays and all(np.isfinite(a).all() for a in arrays
                              if np.asarray(a).dtype.kind == "f")


@pytest.fixture(scope="module")
def nan_run(finetuned, tmp_path_factory):
    """A copy of the finished fine-tuning run whose pose_model.keras holds NaN weights (as a
    diverged run saved them before this check existed)."""
    import keras
    import numpy as np
    from tf_synchro import run_dir
    copy = str(tmp_path_factory.mktemp("nan") / "run")
    shutil.copytree(finetuned["dir"], copy, ignore=shutil.ignore_patterns("*.lock"))
    model, _ = run_dir.load_pose_run(copy)
    model.set_weights([np.full_like(w, np.nan) if w.dtype.kind == "f" else w
                       for w in model.get_weights()])
    model.save(os.path.join(copy, run_dir.POSE_MODEL_FILE))
    return copy


@pytest.mark.parametrize("module,expect", [
    ("tf_synchro.evaluate", "the model predicts NaN or inf for"),
    ("tf_synchro.export", "refusing to save a model whose weights are not finite")])
def test_nan_model_is_refused_by_evaluate_and_export(data, nan_run, tmp_path, module, expect):
    argv = ([f"--data_dir={data}", f"--model_dir={nan_run}", "--subjects=S9",
             f"--output_json={tmp_path / 'e.json'}", "--frame_step=1"]
            if module == "tf_synchro.evaluate" else
            [f"--model_dir={nan_run}", f"--export_dir={tmp_path / 'serving'}"])
    code, _, err = _invoke(module, argv)
    assert code == 1 and err.count("\n") == 1 and expect in err, err
    assert os.listdir(tmp_path) == []


def _manifest_edit(data, tmp_path, change):
    copy = str(tmp_path / "edited")
    shutil.copytree(data, copy)
    path = os.path.join(copy, dataset_io.MANIFEST)
    manifest = json.load(open(path))
    change(manifest)
    json.dump(manifest, open(path, "w"))
    return copy


def _empty_model_run(finetuned, tmp_path):
    copy = str(tmp_path / "run")
    shutil.copytree(finetuned["dir"], copy, ignore=shutil.ignore_patterns("*.lock"))
    open(os.path.join(copy, "pose_model.keras"), "w").close()
    return copy


def _truncated_model_run(finetuned, tmp_path):
    copy = _empty_model_run(finetuned, tmp_path)
    with open(os.path.join(finetuned["dir"], "pose_model.keras"), "rb") as f:
        data = f.read()
    with open(os.path.join(copy, "pose_model.keras"), "wb") as f:
        f.write(data[: len(data) // 2])
    return copy


def _tiny_images(tmp_path, side):
    import cv2
    import numpy as np
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((side, side, 3), np.uint8))
    return str(folder)


def _manifest_text(data, tmp_path, text):
    copy = _manifest_edit(data, tmp_path, lambda m: None)
    with open(os.path.join(copy, dataset_io.MANIFEST), "w") as f:
        f.write(text)
    return copy


def _entries(change):
    return lambda d, f, t: {"D": _manifest_edit(d, t, lambda m: [change(e) for e in m["shards"]])}


_PT_ARGV = ["--data_dir={D}", "--model_dir={T}/m", "--train_steps=2", *PRETRAIN_FLAGS]

# (id, prepare(data, finetuned, tmp_path) -> {name: value}, module, argv with {names},
#  exit code, text of the one error line)
ONE_LINE = [
    ("manifest-no-shards", lambda d, f, t: {"D": _manifest_edit(d, t, lambda m: m.pop(
        "shards"))}, "tf_synchro.pretrain",
     ["--data_dir={D}", "--model_dir={T}/m", "--train_steps=2", *PRETRAIN_FLAGS], 1,
     "manifest.json: no 'shards' list"),
    ("manifest-no-sha256", lambda d, f, t: {"D": _manifest_edit(d, t, lambda m: [
        s.pop("sha256") for s in m["shards"]])}, "tf_synchro.pretrain",
     ["--data_dir={D}", "--model_dir={T}/m", "--train_steps=2", *PRETRAIN_FLAGS], 1,
     "has no sha256 in the manifest"),
    ("empty-pose-model", lambda d, f, t: {"R": _empty_model_run(f, t), "D": d},
     "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={R}", "--subjects=S9",
                             "--output_json={T}/e.json"], 1,
     "pose_model.keras is empty (0 bytes"),
    ("predict-1x1", lambda d, f, t: {"I": _tiny_images(t, 1), "F": f["dir"]},
     "tf_synchro.predict", ["--model={F}", "--images={I}", "--output={T}/p.json"], 1,
     "a.png: the image is 1x1 pixels; expected at least 8x8"),
    ("predict-box-outside", lambda d, f, t: {"I": _tiny_images(t, 64), "F": f["dir"],
                                             "B": _boxes(t, [[100, 100, 150, 150]])},
     "tf_synchro.predict", ["--model={F}", "--images={I}", "--boxes={B}",
                            "--output={T}/p.json"], 1,
     "box 0 [100.0, 100.0, 150.0, 150.0] lies entirely outside its 64x64 frame"),
    ("predict-broken-jpeg", lambda d, f, t: {"I": _images_with_a_broken_jpeg(t), "F": f["dir"]},
     "tf_synchro.predict", ["--model={F}", "--images={I}", "--output={T}/p.json"], 1,
     "b.jpg: not a readable image"),
    # The independent probe: manifests of the wrong shape or types (were tracebacks, or
    # a shard listed twice was read twice).
    ("truncated-pose-model", lambda d, f, t: {"R": _truncated_model_run(f, t), "D": d},
     "tf_synchro.evaluate", ["--data_dir={D}", "--model_dir={R}", "--subjects=S9",
                             "--output_json={T}/e.json"], 1,
     "pose_model.keras is not a complete .keras archive ("),
    ("manifest-a-list", lambda d, f, t: {"D": _manifest_text(d, t, "[1, 2]")},
     "tf_synchro.pretrain", _PT_ARGV, 1, "manifest.json: expected a JSON object, found a list"),
    ("manifest-shard-twice", lambda d, f, t: {"D": _manifest_edit(d, t, lambda m: m[
        "shards"].append(dict(m["shards"][0])))}, "tf_synchro.pretrain", _PT_ARGV, 1,
     "shard 'S1-Walking.tfrecord' is listed twice"),
    ("manifest-negative-count", _entries(lambda e: e.update(num_records=-3)),
     "tf_synchro.pretrain", _PT_ARGV, 1, "num_records=-3, expected an integer >= 0"),
    ("manifest-bytes-text", _entries(lambda e: e.update(bytes="many")), "tfrecords_tools.inspect",
     ["{D}", "--contact_sheet="], 1, "bytes='many', expected an integer >= 0"),
    ("manifest-tallies", _entries(lambda e: e.update(images_per=[1])), "tf_synchro.finetune",
     ["--data_dir={D}", "--model_dir={T}/m", *FINETUNE_FLAGS], 1,
     "images_per is not a table of counts per name"),
]


def _images_with_a_broken_jpeg(tmp_path):
    """A folder with a good image and a .jpg whose data after the JPEG marker is garbage."""
    folder = _tiny_images(tmp_path, 64)
    with open(os.path.join(folder, "b.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    return folder


def _boxes(tmp_path, boxes):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    return str(path)


@pytest.mark.parametrize("case", ONE_LINE, ids=[c[0] for c in ONE_LINE])
def test_former_tracebacks_and_reworded_messages_are_one_line(case, data, finetuned, tmp_path):
    name, prepare, module, argv, code, expect = case
    subs = dict(prepare(data, finetuned, tmp_path), T=str(tmp_path))

    def fill(text):
        for k, v in subs.items():
            text = text.replace("{" + k + "}", v)
        return text

    before = _files(tmp_path)
    got, _, err = _invoke(module, [fill(a) for a in argv])
    assert got == code and err.count("\n") == 1 and "Traceback" not in err, err
    assert fill(expect) in err, err
    assert _files(tmp_path) == before  # Nothing written.


def _env_without_tf_quieting():
    env = _env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


def test_an_error_after_tensorflow_loads_is_one_line_on_stderr(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    argv = [sys.executable, "-m", "tf_synchro.pretrain", f"--data_dir={afile}",
            f"--model_dir={tmp_path / 'm'}"]
    proc = subprocess.run(argv, cwd=REPO, env=_env_without_tf_quieting(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr == (
        f"pretrain: error: dataset directory {afile} is a file, expected a directory\n"), \
        proc.stderr
    # --verbose re-raises it (Python then prints the traceback): checked in this process.
    with pytest.raises(dataset_io.DatasetError, match=f"{afile} is a file, expected"):
        cli.invoke("tf_synchro.pretrain", argv[3:] + ["--verbose"])


def test_a_sigterm_whose_exception_python_ignored_still_exits_143(capsys):
    """Found by the probe: SIGTERM landing in a destructor or callback ("Exception ignored
    in ...") let synthesize finish with exit 0."""
    def main(argv):
        cli._SIGTERM["received"] = True  # The handler ran; its exception was lost.

    cli.reset_flags()
    try:
        with pytest.raises(SystemExit) as e:
            cli.run(main, ["prog"])
    finally:
        cli.reset_flags()
    assert e.value.code == cli.TERMINATE_EXIT
    assert capsys.readouterr().err.startswith("test_faults: error: terminated (SIGTERM)")
    cli.check_terminated()  # Reset for what runs next in this process.


def test_a_server_stopped_by_sigterm_gives_its_own_note_not_a_resume_hint(capsys):
    """The tf.data service servers write nothing to resume: their stop line says so."""
    def main(argv):
        cli._SIGTERM["received"] = True

    cli.reset_flags()
    try:
        with pytest.raises(SystemExit) as e:
            cli.run(main, ["prog"], stop_note="server stopped")
    finally:
        cli.reset_flags()
    assert e.value.code == cli.TERMINATE_EXIT
    assert capsys.readouterr().err.strip() == \
        "test_faults: error: terminated (SIGTERM); server stopped"
    cli.check_terminated()


def test_sigterm_stops_training_releases_the_lock_and_says_how_to_resume(data, tmp_path):
    import time
    model_dir = tmp_path / "run"
    state = model_dir / "backup" / "state.json"
    with open(tmp_path / "stderr", "w") as stderr:  # A file: a full pipe cannot block it.
        proc = subprocess.Popen(
            [sys.executable, "-m", "tf_synchro.finetune", f"--data_dir={data}",
             f"--model_dir={model_dir}", *FINETUNE_FLAGS, "--train_steps=100000"],
            cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # Polls for a file; the assertions below do not depend on time.
        assert state.exists(), (tmp_path / "stderr").read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 143, err[-3000:]
    assert err.splitlines()[-1] == (
        "finetune: error: terminated (SIGTERM); files written so far are kept (a training "
        "run: its last checkpoint); re-run the same command to resume"), err[-3000:]
    assert not os.path.exists(model_dir / locks.LOCK_FILE)
    assert json.load(open(state))["step"] >= 1 and _temps(str(model_dir)) == []


# ----------------------------------------------------------------------------- SIGKILL + re-run
# (last in the file: the killed runs started in the background meanwhile)

@pytest.mark.parametrize("name", sorted(SYNTH_KILLS))
def test_killed_synthesize_reruns_to_equal_shards(data, kills, name):
    out, killed = kills[name]
    killed.wait()
    assert _temps(out), "the kill should leave a temporary behind"
    assert os.path.exists(os.path.join(out, locks.LOCK_FILE))
    code, stdout, err = _invoke("tfrecords_tools.synthesize", [f"--output_dir={out}",
                                                               *SYNTH_FLAGS])
    assert code == 0, err
    assert "taking over the stale lock" in err and "no longer running" in err
    assert "removed 1 temporary file(s)" in stdout
    assert _temps(out) == [] and not os.path.exists(os.path.join(out, locks.LOCK_FILE))
    assert _shard_hashes(out) == _shard_hashes(data)


def test_killed_export_leaves_no_visible_version_and_rerun_cleans(finetuned):
    export_dir, killed, argv = finetuned["export"]
    killed.wait()
    left = os.listdir(export_dir)
    assert not any(n.isdigit() for n in left) and any(n.startswith(".tmp-") for n in left)
    assert os.path.isdir(os.path.join(export_dir, next(n for n in left if
                                                       n.startswith(".tmp-")), "variables"))
    code, _, err = _invoke("tf_synchro.export", argv)
    assert code == 0, err
    assert sorted(os.listdir(export_dir)) == ["1"]


def test_killed_pretrain_resumes_from_the_weights_step(pretrained):
    model_dir = pretrained["dir"]
    # Weights of step 2 were in place when it was killed: resume there, not at state's 1.
    assert "Resuming from checkpoint at step 2" in pretrained["out"]
    assert json.loads(pretrained["out"].strip().splitlines()[-1])["initial_step"] == 2
    assert "taking over the stale lock" in pretrained["err"]
    assert "removed 2 temporary file(s)" in pretrained["err"]  # weights + state.json
    # The optimizer step was restored too: it ends at exactly --train_steps.
    with open(os.path.join(model_dir, "backup", "state.json")) as f:
        assert json.load(f) == {"epoch": 3, "step": 3}
    assert _temps(model_dir) == []
    assert not os.path.exists(os.path.join(model_dir, locks.LOCK_FILE))
    assert os.path.exists(os.path.join(model_dir, "encoder.keras"))


@pytest.mark.parametrize("case", [c for c in BAD if _needs_pretrained(c)],
                         ids=[c[0] for c in BAD if _needs_pretrained(c)])
def test_bad_invocation_on_a_pretraining_run(case, data, pretrained, finetuned, bad_inputs,
                                             tmp_path):
    _check_bad_invocation(case, data, pretrained, finetuned, bad_inputs, tmp_path)


def test_read_error_during_a_run_names_shard_and_record_and_keeps_checkpoint(
        data, pretrained, tmp_path):
    copy, shard = _damaged_copy(data, tmp_path, "flip")
    model_dir = str(tmp_path / "resumed")
    shutil.copytree(pretrained["dir"], model_dir)
    state = open(os.path.join(model_dir, "backup", "state.json")).read()
    code, _, err = _invoke("tf_synchro.pretrain", [
        f"--data_dir={copy}", f"--model_dir={model_dir}", "--train_steps=5",
        "--verify_data=none", *PRETRAIN_FLAGS])
    assert code == 1 and err.count("\n") == 1, err
    assert f"{shard}: record 0: damaged or truncated" in err
    assert "function_node" not in err and "[Op:" not in err  # TF's graph-node text dropped.
    assert open(os.path.join(model_dir, "backup", "state.json")).read() == state


def test_fit_stops_naming_the_damaged_shard_and_keeps_the_checkpoint(data, tmp_path):
    """A record that breaks mid-run (here: after the start checks) stops training with an
    error naming shard and record; the checkpoint of the last finished period stays."""
    import keras
    import tensorflow as tf
    from tf_synchro import train_lib

    copy, shard = _damaged_copy(data, tmp_path, "flip_last")

    def run(path, steps):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        ds = tf.data.TFRecordDataset(path).map(
            lambda s: (tf.ones([1]) * tf.cast(tf.strings.length(s) > 0, tf.float32),
                       tf.zeros([1]))).batch(1).repeat()
        return train_lib.fit(model, ds, model_dir=str(tmp_path / "fit"), total_steps=steps,
                             steps_per_epoch=1, verbose=False, data_files=[path])

    run(os.path.join(data, "S1-Walking.tfrecord"), 2)
    with pytest.raises(dataset_io.DataReadError,
                       match=rf"^{shard}: record \d+: damaged or truncated .*training "
                             rf"stopped, the last checkpoint is kept"):
        run(shard, 50)
    with open(tmp_path / "fit" / "backup" / "state.json") as f:
        step = json.load(f)["step"]
    assert 2 <= step < 50 and _temps(str(tmp_path / "fit")) == []
