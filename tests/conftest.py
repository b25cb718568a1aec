"""Shared pytest setup: quiet TensorFlow, CPU only, fixed seeds, and the session fixtures.

The heavy shared inputs (the tiny synthetic dataset, the pose dataset and the tiny
fine-tuned run) are session fixtures: built once per pytest session, whichever test files
run. Tests must not change them (copy first).

Tests marked ``large`` (registered in pytest.ini) run real training, the demo, exports or
binaries in subprocesses; ``python3 -m pytest -q tests -m "not large"`` is the fast unit
tier.
"""
import os
import shlex
import signal
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


# ---------------------------------------------------------------- synthetic data fixtures
import pytest  # noqa: E402

from tests import testutil  # noqa: E402
from tests.testutil import TINY_ACTIONS  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Path of a small synthetic dataset generated once per session: all 7 default subjects,
    2 actions (Walking, Boxing), 1 take of 100 frames each, 64 px crops, clips of up to 64
    timesteps, no background, 3D labels."""
    from tfrecords_tools import synthesize
    out = str(tmp_path_factory.mktemp("tiny_synth"))
    config = synthesize.SynthConfig(actions=TINY_ACTIONS, takes=1, num_frames=100,
                                    image_size=64, clip_length=64, background=False, seed=0)
    synthesize.generate(out, config, num_workers=1, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def pose_data(tmp_path_factory):
    """Path of the labelled stick-figure dataset (:func:`tests.testutil.write_pose_dataset`)."""
    return testutil.write_pose_dataset(str(tmp_path_factory.mktemp("pose_data")))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, pose_data):
    """The tiny fine-tune from scratch on ``pose_data`` (:func:`tests.testutil.finetune_config`):
    (model_dir, summary). Used by the fine-tuning, evaluation, export and predict tests."""
    from tf_synchro.tasks import pose3d
    model_dir = str(tmp_path_factory.mktemp("run"))
    result = pose3d.train(testutil.finetune_config(pose_data, model_dir), verbose=False)
    return model_dir, result.summary


# ---------------------------------------------------------------- the demo, started early
# The tiny demo and the tiny experiment runs on its workdir are the suite's longest pieces
# and run mostly in their stage subprocesses, so when a selected test needs them, the real
# binaries (python -m tf_synchro.demo, then python -m tf_synchro.experiments on the demo's
# workdir: the scaling rows, then a suite the demo half finished) start in the background
# as soon as collection ends and run beside the other tests (2 cores), and the tests that
# need them run last; ``demo_run`` waits for them.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_ARGS = dict(scale="tiny", seed=0,
                 scratch_row="flags/table1/b_random_init_no_background.flags",
                 pretrained_row="flags/table1/d_ssl_no_background.flags",
                 scratch_trainable_row="flags/baselines/b0_random_init_all_trainable.flags")
# The scaling-suite rows run after the demo, in its workdir (reusing its dataset and b).
DEMO_SCALING_ROWS = ("p005_x0_5", "p025_x0_5")
# A suite the demo half finished: its rows b and d, and a row x it did not run (random init
# with two labelled subjects), which reuses the dataset and runs its own stages.
DEMO_SUITE_ROWS = {"b_random_init_no_background.flags": None,
                   "d_ssl_no_background.flags": None,
                   "x_scratch_two_subjects.flags": "--row=x\n--title=random init, S1+S5 labels\n"
                                                   "--init=scratch\n--label_subjects=S1,S5\n"}
_DEMO: dict = {}
_SECTION = "#### background job: "  # Starts each command's part of the log.


def _suite_folder(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("demo_suite"))
    for name, text in DEMO_SUITE_ROWS.items():
        if text is None:
            with open(os.path.join(REPO, "flags", "table1", name)) as f:
                text = f.read()
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    return folder


def _start_demo(tmp_path_factory, scaling: bool, suite: bool) -> None:
    workdir = str(tmp_path_factory.mktemp("demo"))
    log_path = str(tmp_path_factory.mktemp("demo_log") / "log.txt")
    experiments = [sys.executable, "-m", "tf_synchro.experiments", "--scale=tiny",
                   f"--seed={DEMO_ARGS['seed']}", f"--workdir={workdir}"]
    commands = {"demo": [sys.executable, "-m", "tf_synchro.demo", f"--workdir={workdir}",
                         *[f"--{k}={v}" for k, v in DEMO_ARGS.items()]]}
    if scaling:
        commands["scaling"] = experiments + ["--suite=scaling",
                                             f"--rows={','.join(DEMO_SCALING_ROWS)}"]
    folder = None
    if suite:
        folder = _suite_folder(tmp_path_factory)
        commands["suite"] = experiments + [f"--suite={folder}"]
    script = " && ".join(f"echo {shlex.quote(_SECTION + name)} && {shlex.join(command)}"
                         for name, command in commands.items())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    with open(log_path, "w") as log:
        # Its own process group, so that an unfinished job is stopped with its stages.
        proc = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _DEMO.update(proc=proc, workdir=workdir, log=log_path, script=script, suite=folder)


_DEMO_FIXTURES = ("demo_run", "demo_scaling_log", "demo_suite_log")


def _needs_demo(item) -> bool:
    return any(f in getattr(item, "fixturenames", ()) for f in _DEMO_FIXTURES)


def pytest_collection_modifyitems(session, config, items):
    # The tests on the demo go last (in their order), so the others run while it works.
    items[:] = [i for i in items if not _needs_demo(i)] + [i for i in items if _needs_demo(i)]


def _uses(session, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in session.items)


def pytest_collection_finish(session):
    option = session.config.option
    if getattr(option, "collectonly", False) or getattr(option, "setupplan", False):
        return
    if any(_needs_demo(item) for item in session.items):
        _start_demo(session.config._tmp_path_factory, _uses(session, "demo_scaling_log"),
                    _uses(session, "demo_suite_log"))


def pytest_sessionfinish(session):
    proc = _DEMO.get("proc")
    if proc is not None and proc.poll() is None:  # Only some tests ran, or one failed early.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _demo_log(section: str) -> list:
    """The lines the background job's command ``section`` printed, once the job finished."""
    if "proc" not in _DEMO:
        raise RuntimeError("the background demo was not started (tests/conftest.py)")
    # A hang guard only: the demo takes minutes, much longer on a busy machine.
    code = _DEMO["proc"].wait(timeout=3600)
    with open(_DEMO["log"]) as f:
        log = f.read()
    assert code == 0, f"{_DEMO['script']} exited {code}:\n{log[-3000:]}"
    parts = log.split(_SECTION)
    return next(p for p in parts if p.startswith(section + "\n")).splitlines()[1:]


@pytest.fixture(scope="session")
def demo_run():
    """The tiny demo, finished: (workdir, the dict ``demo.run`` returns). The binary ran every
    stage; ``demo.run`` here, on the finished workdir, reuses them and gives its results."""
    from tf_synchro import demo
    _demo_log("demo")
    workdir = _DEMO["workdir"]
    out = demo.run(workdir, DEMO_ARGS["scale"], DEMO_ARGS["seed"], DEMO_ARGS["scratch_row"],
                   DEMO_ARGS["pretrained_row"], log=lambda s: None,
                   scratch_trainable_row=DEMO_ARGS["scratch_trainable_row"])
    return workdir, out


@pytest.fixture(scope="session")
def demo_scaling_log(demo_run) -> list:
    """The output lines of the experiments binary's run of ``DEMO_SCALING_ROWS`` of the
    scaling suite in the demo's workdir (the background job's second command)."""
    return _demo_log("scaling")


@pytest.fixture(scope="session")
def demo_suite_log(demo_run) -> tuple:
    """(the suite folder of ``DEMO_SUITE_ROWS``, the output lines of the experiments
    binary's run of it in the demo's workdir: the background job's last command)."""
    return _DEMO["suite"], _demo_log("suite")
