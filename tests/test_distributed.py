"""Pre-training under MirroredStrategy (two logical CPUs) and MultiWorkerMirroredStrategy
(two local worker processes, TF_CONFIG on free localhost ports).

Each case runs ``pretrain.train`` in fresh processes (device and cluster setup must happen
before TensorFlow initialises) via this module's ``__main__``, which writes the final
weights and the run summary so the test can compare them.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import testutil

pytestmark = pytest.mark.large  # End to end: trains under distribution strategies in subprocesses.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4


def _free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": REPO, **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _worker_cmd(mode, data_dir, model_dir, out, batch=4):
    return [sys.executable, "-m", "tests.test_distributed", mode, data_dir, model_dir, out,
            str(batch)]


@pytest.fixture(scope="module")
def coded_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("coded_dist")
    testutil.write_coded_dataset(path, subjects=("S1", "S5"), seqs=2)
    return str(path)


def test_mirrored_two_logical_cpus(coded_dir, tmp_path):
    out = str(tmp_path / "mirrored.npz")
    run = subprocess.run(_worker_cmd("mirrored", coded_dir, str(tmp_path / "run"), out),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2 and summary["final_step"] == STEPS
    assert summary["optimizer_step"] == STEPS and np.isfinite(summary["loss"])
    assert "--batch_size=5 must be a positive multiple of the number of replicas in sync (2)" \
        in summary["odd_batch_error"]


def test_multi_worker_two_processes_train_in_sync(coded_dir, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    model_dir = str(tmp_path / "run")
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            _worker_cmd("multi_worker", coded_dir, model_dir, str(tmp_path / f"w{i}.npz")),
            cwd=REPO, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stdout[-2000:] + stderr[-4000:]
    summaries = [json.loads(o.strip().splitlines()[-1]) for o, _ in outputs]
    assert [s["replicas"] for s in summaries] == [2, 2]
    assert [s["chief"] for s in summaries] == [True, False]
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    init = np.load(tmp_path / "w0.npz.init.npz")
    # Same final weights on both workers (gradients all-reduced every step), and training
    # moved them away from the initial values.
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    assert any(not np.array_equal(w0[k], init[k]) for k in w0.files)
    # Only the chief writes the checkpoint and exports.
    state = json.load(open(os.path.join(model_dir, "backup", "state.json")))
    assert state["step"] == STEPS
    assert os.path.exists(os.path.join(model_dir, "encoder.keras"))


# ----------------------------------------------------------------------------- worker

def _worker(mode: str, data_dir: str, model_dir: str, out: str, batch: int) -> None:
    if mode == "mirrored":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_synchro import configs, train_lib
    from tf_synchro.tasks import pretext
    # The strategy first: MultiWorkerMirroredStrategy must exist before other TF ops.
    strategy = train_lib.make_strategy(mode)

    def config(batch_size):
        return configs.make(
            configs.PretrainConfig,
            data_dir=data_dir, model_dir=model_dir, train_subjects=("S1", "S5"),
            eval_subjects=(), width=0.125, head_units=8, batch_size=batch_size,
            train_steps=STEPS, steps_per_checkpoint=2, seed=1, verbose=False, d_min=4,
            d_max=30, pairs_per_clip=6, shuffle_buffer=16, augment_on="device", input_size=32)

    summary = {"replicas": strategy.num_replicas_in_sync, "chief": train_lib.is_chief(strategy)}
    if mode == "mirrored":
        try:
            pretext.train(config(5), strategy)
        except ValueError as e:
            summary["odd_batch_error"] = str(e)
    with strategy.scope():
        init = pretext.build_model(config(batch))
    # Positional: names differ between the two builds (sync_flip vs sync_flip_1).
    np.savez(out + ".init.npz", *[np.asarray(v) for v in init.weights])
    trained = pretext.train(config(batch), strategy)
    model, result = trained.model, trained.summary
    np.savez(out, *[np.asarray(v) for v in model.weights])
    summary.update(final_step=result["final_step"],
                   optimizer_step=int(np.asarray(model.optimizer.iterations)),
                   loss=result["final_metrics"]["loss"])
    print(json.dumps(summary))


if __name__ == "__main__":
    _worker(*sys.argv[1:5], int(sys.argv[5]))
