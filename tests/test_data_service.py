"""tf.data service: flag checks, per-worker random streams, and a pre-training fed by a
dispatcher and two worker processes (tf_synchro.data_service, tf_synchro.data.service)."""
import math
import os
import re
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from tests import testutil
from tf_synchro import configs
from tf_synchro.data import service
from tfrecords_tools.runtime import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_address_is_normalised_or_refused_in_one_line():
    assert service.check_address("data_service", "grpc://h:5050") == "grpc://h:5050"
    assert service.check_address("data_service", "h:5050") == "grpc://h:5050"
    assert service.check_address("dispatcher_address", "grpc://h:1", protocol=False) == "h:1"
    for bad in ("h", "h:0", "h:70000", "http://h:5050", "grpc://:5050", "h:50:50"):
        with pytest.raises(ValueError, match=r"^--data_service=.*: expected a dispatcher"):
            service.check_address("data_service", bad)
    with pytest.raises(ValueError, match=r"^--data_service=nohost: expected"):
        configs.make(configs.PretrainConfig, data_dir="d", model_dir="m",
                     data_service="nohost").check()


@pytest.mark.parametrize("argv, message", [
    ([], "give exactly one of --dispatcher or --worker"),
    (["--dispatcher", "--worker"], "give exactly one of --dispatcher or --worker"),
    (["--worker"], "--worker needs --dispatcher_address=HOST:PORT"),
    (["--worker", "--dispatcher_address=h"], "--dispatcher_address=h: expected"),
    (["--dispatcher", "--dispatcher_address=h:1"], "--dispatcher_address is a --worker flag"),
    (["--dispatcher", "--port=70000"], "--port=70000: expected an integer in [0, 65535]"),
])
def test_binary_usage_errors_are_one_line_exit_2(argv, message):
    code, out, err = cli.invoke("tf_synchro.data_service", argv)
    assert code == 2, (out, err)
    assert err.strip().count("\n") == 0 and message in err, err


def test_service_keys_differ_between_runs_of_one_graph_plain_keys_do_not():
    """The i-th element of two workers (two runs of one serialized graph) gets different
    draws on the service, the same ones in-process (where pipeline ids separate streams)."""
    base = tf.constant([1, 0], tf.int64)

    def keys(ctx):
        ds = tf.data.Dataset.range(3).map(lambda i: service.element_key(base, i, ctx))
        return [k.numpy().tolist() for k in ds]

    plain = tf.distribute.InputContext()
    assert keys(plain) == keys(plain)
    ctx = service.ServiceInputContext()
    a, b = keys(ctx), keys(ctx)
    assert len({tuple(k) for k in a + b}) == 6


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "tf_synchro.data_service", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_line(proc):
    """The server's start line (or its error output when it exited)."""
    line = proc.stdout.readline()
    assert line, proc.stderr.read()[-3000:]
    return line


@pytest.mark.large
def test_dispatcher_and_two_worker_processes_feed_twenty_pretraining_steps(tmp_path):
    """Dispatcher and two workers are separate processes (the binary); the trainer is this
    process. 20 steps finish with a finite loss, and SIGTERM stops a server in one line."""
    from tf_synchro.tasks import pretext
    data_dir = tmp_path / "coded"
    testutil.write_coded_dataset(data_dir, subjects=("S1", "S5"), seqs=2)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": REPO}
    procs = [_start(["--dispatcher", "--port=0"], env)]
    try:
        target = re.search(r"grpc://localhost:\d+", _first_line(procs[0])).group(0)
        procs += [_start(["--worker", f"--dispatcher_address={target}", "--port=0"], env)
                  for _ in range(2)]
        for p in procs[1:]:
            assert "tf.data service worker on port" in _first_line(p)
        config = configs.make(
            configs.PretrainConfig, data_dir=str(data_dir), model_dir=str(tmp_path / "run"),
            train_subjects=("S1", "S5"), eval_subjects=(), width=0.125, input_size=32,
            head_units=8, batch_size=4, d_min=4, d_max=30, pairs_per_clip=6,
            shuffle_buffer=32, seed=1, train_steps=20, steps_per_checkpoint=20,
            verbose=False, data_service=target)
        summary = pretext.train(config).summary
        assert summary["final_step"] == 20
        assert all(math.isfinite(v) for v in summary["final_metrics"].values()), summary
        assert "loss" in summary["final_metrics"]
        worker = procs.pop()
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == cli.TERMINATE_EXIT, err
        assert err.strip().count("\n") == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
