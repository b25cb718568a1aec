"""Shared pytest setup: quiet TensorFlow, CPU only, fixed seeds, and the session fixtures.

The heavy shared inputs (the tiny synthetic dataset, the pose dataset and the tiny
fine-tuned run) are session fixtures: built once per pytest session, whichever test files
run. Tests must not change them (copy first).

Tests marked ``large`` (registered in pytest.ini) run real training, the demo, exports or
binaries in subprocesses; ``python3 -m pytest -q tests -m "not large"`` is the fast unit
tier.
"""
import os

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
    from tf_synchro import pose3d
    model_dir = str(tmp_path_factory.mktemp("run"))
    summary = pose3d.train(testutil.finetune_config(pose_data, model_dir), verbose=False)
    return model_dir, summary
