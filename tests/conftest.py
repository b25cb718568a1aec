"""Shared pytest setup: quiet TensorFlow, CPU only, fixed seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


# ---------------------------------------------------------------- synthetic data fixtures
import pytest  # noqa: E402

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
