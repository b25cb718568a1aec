"""Pre-training: train_lib pieces (checkpoints, SIGTERM and resume), bad input caught before
training, determinism, learning on coded frames.

The SIGKILLed binary's resume is tested in tests/test_faults.py (killed at an exact write).
"""
import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import testutil
from tf_synchro import configs, run_dir, train_lib
from tf_synchro.data import pairs
from tf_synchro.tasks import pretext
from tfrecords_tools.runtime import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def coded_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("coded_pretrain")
    testutil.write_coded_dataset(path, subjects=("S1", "S5", "S9"), seqs=2)
    return str(path)


# ----------------------------------------------------------------------------- train_lib

def test_optimizer_is_adamw_with_cosine_decay_to_floor():
    opt = train_lib.make_optimizer(1000, 1e-4, 1e-7, 1e-4)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(1e-4)
    opt.build([keras.Variable(1.0)])
    lr = []
    for step in (0, 500, 1000, 2000):
        opt.iterations.assign(step)
        lr.append(float(opt.learning_rate))
    np.testing.assert_allclose(lr, [1e-4, (1e-4 + 1e-7) / 2, 1e-7, 1e-7], rtol=1e-4)
    with pytest.raises(ValueError, match="final_learning_rate"):
        train_lib.make_optimizer(10, 1e-4, 1e-3)


def test_strategy_and_batch_errors():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        train_lib.make_strategy("tpu")
    strategy = train_lib.make_strategy("default")
    assert train_lib.replica_batch_size(16, strategy) == 16 and train_lib.is_chief(strategy)
    with pytest.raises(ValueError, match="--batch_size=0"):
        train_lib.replica_batch_size(0, strategy)


def test_fit_logs_scalars_checkpoints_and_skips_finished_epochs(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(train_lib.make_optimizer(6, 1e-2, 1e-4), loss="mse")
    ds = tf.data.Dataset.from_tensors((tf.ones((2, 3)), tf.ones((2, 1)))).repeat()
    out = train_lib.fit(model, ds, model_dir=str(tmp_path), total_steps=6, steps_per_epoch=3,
                        log_every=1, verbose=False)
    assert out["initial_step"] == 0 and len(out["history"]["loss"]) == 2
    state = json.load(open(tmp_path / "backup" / "state.json"))
    assert state == {"epoch": 2, "step": 6}
    tags = {}
    for f in glob.glob(str(tmp_path / "tensorboard" / "train" / "events*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            for v in e.summary.value:
                tags.setdefault(v.tag, []).append(
                    (e.step, float(tf.make_ndarray(v.tensor))))
    assert [s for s, _ in tags["train/learning_rate"]] == [1, 2, 3, 4, 5, 6]
    assert tags["train/learning_rate"][-1][1] == pytest.approx(1e-4, rel=1e-3)
    assert "train/loss" in tags
    # A second call restores the optimizer (step 6) and has nothing left to do.
    model2 = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model2.compile(train_lib.make_optimizer(6, 1e-2, 1e-4), loss="mse")
    out2 = train_lib.fit(model2, ds, model_dir=str(tmp_path), total_steps=6, steps_per_epoch=3,
                         verbose=False)
    assert out2["initial_step"] == 6 and int(model2.optimizer.iterations) == 6
    np.testing.assert_array_equal(model2.get_weights()[0], model.get_weights()[0])
    with pytest.raises(ValueError, match="multiple of --steps_per_checkpoint=4"):
        train_lib.fit(model2, ds, model_dir=str(tmp_path), total_steps=6, steps_per_epoch=4)


def test_sigterm_checkpoints_the_step_it_stops_at_and_the_rerun_ends_on_schedule(tmp_path,
                                                                                 capsys):
    """SIGTERM inside fit (as in tests/test_faults.py, where the binary exits 143 and
    releases its lock): the step then running ends, its checkpoint is written (not just
    the last periodic one; no temporary left) and Terminated is raised. The re-run trains
    the rest of that period, then whole periods, ends at total_steps, and gives the weights
    of an uninterrupted run (constant data, plain SGD)."""
    class SigtermAt(keras.callbacks.Callback):  # A scheduler's SIGTERM after step 6.
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 6:
                os.kill(os.getpid(), signal.SIGTERM)

    def model_and_fit(name, callbacks=(), verbose=False):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        ds = tf.data.Dataset.from_tensors((tf.constant([1.0]), tf.constant([3.0]))).batch(1)
        with cli._sigterm_raises():  # What cli.run installs in every binary.
            return model, train_lib.fit(model, ds.repeat(), model_dir=str(tmp_path / name),
                                        total_steps=12, steps_per_epoch=4, verbose=verbose,
                                        progress_every=1, callbacks=callbacks)

    backup = tmp_path / "a" / run_dir.BACKUP_DIR
    with pytest.raises(cli.Terminated):
        model_and_fit("a", [SigtermAt()])
    assert json.load(open(backup / run_dir.STATE_FILE)) == {"epoch": 1, "step": 7}
    assert sorted(os.listdir(backup)) == sorted([run_dir.STATE_FILE, run_dir.WEIGHTS_FILE])
    capsys.readouterr()
    model, out = model_and_fit("a", verbose=True)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"Resuming from checkpoint at step 7 in {backup}"
    assert [line.split()[1] for line in printed[1:]] == [f"{i}/12" for i in range(8, 13)]
    assert out["initial_step"] == 7 and len(out["history"]["loss"]) == 2  # Steps 8; 9-12.
    assert json.load(open(backup / run_dir.STATE_FILE)) == {"epoch": 3, "step": 12}
    assert int(model.optimizer.iterations.numpy()) == 12
    straight, _ = model_and_fit("b")
    for a, b in zip(model.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ----------------------------------------------------------------------------- bad input

def _config(data_dir, model_dir, **kw) -> configs.PretrainConfig:
    settings = dict(d_min=4, d_max=30, input_size=32, augment_on="host",
                    train_subjects=("S1", "S5"), eval_subjects=("S9",), width=0.125,
                    batch_size=4, train_steps=4, steps_per_checkpoint=2, verbose=False)
    return configs.make(configs.PretrainConfig, settings, data_dir=data_dir,
                        model_dir=model_dir, **kw)


def test_bad_input_fails_before_training(coded_dir, tmp_path):
    with pytest.raises(ValueError, match="--d_min=30, --d_max=30: expected 0 <= d_min < d_max"):
        pretext.train(_config(coded_dir, str(tmp_path / "a"), d_min=30, d_max=30))
    with pytest.raises(ValueError, match="spans 117 frames"):
        pretext.train(_config(coded_dir, str(tmp_path / "b"), d_min=200, d_max=300))
    one_view = testutil.write_coded_dataset(tmp_path / "one_view", views=1)
    with pytest.raises(ValueError, match="1 view"):
        pretext.train(_config(os.path.dirname(one_view[0]), str(tmp_path / "c"),
                              eval_subjects=()))
    model_dir = str(tmp_path / "d")
    run_dir.prepare(model_dir, dataclasses.replace(
        run_dir.PretrainRecord.from_config(_config(coded_dir, model_dir)), width=1.0))
    with pytest.raises(run_dir.ModelDirError, match=r"different settings .*'width': \(1.0, 0.125\)"):
        pretext.train(_config(coded_dir, model_dir))
    assert not os.path.exists(os.path.join(model_dir, "backup"))


def test_resumed_pretraining_moves_its_data_seed_as_finetuning_does(coded_dir, tmp_path,
                                                                    monkeypatch):
    """The two tasks' rule (train_lib.data_seed): a fresh run draws its pairs from --seed,
    a resumed one from --seed plus the step it resumes from (instead of replaying the pairs
    of its first steps). Training itself is cut off: only the pipeline's seed is looked at."""
    seeds = []
    dataset_fn = pairs.dataset_fn

    def recording(data_dir, config, batch):
        seeds.append(config.seed)
        return dataset_fn(data_dir, config, batch)

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop()

    monkeypatch.setattr(pairs, "dataset_fn", recording)
    monkeypatch.setattr(train_lib, "fit", stop)
    model_dir = str(tmp_path / "run")
    config = _config(coded_dir, model_dir, seed=5, eval_subjects=())
    with pytest.raises(Stop):
        pretext.train(config)
    backup = os.path.join(model_dir, run_dir.BACKUP_DIR)  # A checkpoint of step 6.
    os.makedirs(backup)
    open(os.path.join(backup, run_dir.WEIGHTS_FILE), "w").close()
    run_dir.write_state(backup, run_dir.TrainState(epoch=3, step=6))
    with pytest.raises(Stop):
        pretext.train(config)
    assert seeds == [5, 11]
    assert train_lib.data_seed(None, model_dir) is None


# ----------------------------------------------------------------------------- determinism

@pytest.mark.large
def test_deterministic_runs_of_one_seed_give_the_same_weights(coded_dir, tmp_path):
    """--deterministic=true: the pair pipeline's draws are stateless per element and its
    order is fixed, so two runs of one seed in one process train the same encoder bit for
    bit (the default emits batches in thread-completion order). Across processes the CPU
    kernels' rounding may differ (BENCHMARKS.md, "Same seed, same batches")."""
    weights = []
    for name in ("a", "b"):
        config = _config(coded_dir, str(tmp_path / name), train_steps=6, steps_per_checkpoint=6,
                         seed=1, deterministic=True, eval_subjects=())
        pretext.train(config)
        encoder = keras.saving.load_model(str(tmp_path / name / "encoder.keras"), compile=False)
        weights.append(encoder.get_weights())
    assert len(weights[0]) > 10
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- learning

@pytest.mark.large
@pytest.mark.parametrize("grouping", ["pairs", "octets"])  # The paper's; the CPU default.
def test_tiny_run_learns_sync_and_flip_on_coded_frames(tmp_path, grouping):
    """End to end (pipeline, masks, losses, fit, eval): a learnable signal is learned.

    The coded frames carry the time in their red level (30 levels a timestep) and a
    left/right stripe, so both tasks are learnable from a few thousand pairs; colour jitter
    is off because it would blur the red code. Evaluated on the held-out subject S9 by the
    binary's evaluation (this is a plumbing test; the synthetic-human run is in README).
    Octets (8 a batch: as many frames as 32 pairs, four cameras) train the same encoder and
    heads, and the saved two-view model is what is evaluated; quads and hexes share their
    code (tests/test_pairs.py, tests/test_models.py).
    """
    groups = grouping != "pairs"
    data_dir = tmp_path / "coded"
    testutil.write_coded_dataset(data_dir, subjects=("S1", "S5", "S9"), seqs=2, frames=8,
                                 step=10, r_step=30, views=4)
    config = configs.make(
        configs.PretrainConfig,
        data_dir=str(data_dir), model_dir=str(tmp_path / "run"), train_subjects=("S1", "S5"),
        eval_subjects=("S9",), width=0.125, head_units=16, train_steps=150,
        batch_size={"pairs": 32, "octets": 8}[grouping], pair_grouping=grouping,
        steps_per_checkpoint=150, learning_rate=3e-3, final_learning_rate=1e-5, seed=0,
        eval_passes=4, verbose=False, d_min=4, d_max=128, pairs_per_clip=12,
        shuffle_buffer=256, augment_on="device", input_size=32, brightness=0, contrast=0,
        saturation=0)
    summary = pretext.train(config).summary
    result = summary["eval"]
    assert result["flip_accuracy"] > 0.8, result
    assert result["sync_accuracy"] > 0.7, result
    assert result["flip_auc"] > 0.8 and result["sync_auc"] > 0.7, result
    saved = json.load(open(tmp_path / "run" / "pretext_eval.json"))
    assert saved["sync_accuracy"] == result["sync_accuracy"]
    assert os.path.getsize(tmp_path / "run" / "sync_vs_gap.png") > 1000
    if groups:  # The saved two-view model holds the trained weights, not the initial ones.
        initial = pretext.sync_flip_model(pretext.build_model(config, 32))
        saved_model = keras.saving.load_model(tmp_path / "run" / run_dir.SYNC_FLIP_FILE)
        assert saved_model.name == "sync_flip" and set(saved_model.input) == {"view_a", "view_b"}
        assert not np.allclose(saved_model.get_layer("sync").kernel.numpy(),
                               initial.get_layer("sync").kernel.numpy())
        return

    # Re-scoring the finished run with the binary (in this process, through cli.invoke: the
    # binary's flags, errors and exit code) on other pair settings: every evaluated gap
    # respects the override. (A bad override is refused before anything is written:
    # tests/test_faults.py, case ep-gaps.)
    out = tmp_path / "rescored"
    code, _, err = cli.invoke("tf_synchro.evaluate_pretext", [
        f"--model_dir={tmp_path / 'run'}", "--subjects=S9", "--passes=1", "--d_min=30",
        "--d_max=60", "--gap_sampling=uniform", f"--output_dir={out}"])
    assert code == 0, err[-3000:]
    rescored = json.load(open(out / "pretext_eval.json"))
    assert (rescored["d_min"], rescored["d_max"]) == (30, 60)
    bins = rescored["sync_accuracy_by_gap"][1:]
    assert bins and all(b["gap_lo"] >= 31 and b["gap_hi"] <= 60 for b in bins), bins


def test_subject_patterns_expand_against_the_dataset(tmp_path):
    """``--train_subjects=S1,U*`` (the CPU flagfile's form) becomes the dataset's extra
    people, sorted after the plain names; a pattern matching nothing is refused by name."""
    from tfrecords_tools import dataset_io, synthesize
    from tfrecords_tools.synth import body
    data = str(tmp_path / "data")
    synthesize.generate(data, synthesize.SynthConfig(
        subjects=("S1", "S9") + body.extra_subjects(11), actions=("Boxing",), takes=1,
        num_frames=20, image_size=32, clip_length=16), log=lambda s: None)
    assert dataset_io.expand_subjects(data, ["S1", "U*"]) == ("S1",) + tuple(
        sorted(body.extra_subjects(11)))
    assert dataset_io.expand_subjects(data, ["U0?", "S1"]) == body.extra_subjects(9) + ("S1",)
    assert dataset_io.expand_subjects(data, ["S1", "S9"]) == ("S1", "S9")  # no pattern: as is
    with pytest.raises(dataset_io.DatasetError, match="pattern 'X\\*' matches none"):
        dataset_io.expand_subjects(data, ["S1", "X*"])


@pytest.mark.large
def test_bench_pretrain_step_times_the_pretrain_model():
    """benchmarks/bench_pretrain_step.py builds pretrain's model from a flagfile (here the
    tiny one, as ResNet-10 on octets) and prints one JSON line with every timed chunk."""
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_pretrain_step.py"),
         "--flagfile=" + os.path.join(REPO, "flags", "pretrain_tiny.flags"),
         "--arch=resnet10", "--pair_grouping=octets", "--stored_size=40", "--steps=4",
         "--chunks=2", "--warmup=1"],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["arch"], result["batch_size"], result["input_size"]) == ("resnet10", 8, 32)
    assert (result["pair_grouping"], result["frames_per_step"]) == ("octets", 64)
    assert len(result["chunks_ms_per_step"]) == 2
    assert result["ms_per_step"] == min(result["chunks_ms_per_step"]) > 0
