"""tf.data service: flag checks, per-worker random streams, and a pre-training fed by a
dispatcher and two worker processes (tf_synchro.data_service, tf_synchro.data.service)."""
import math
import os
import signal
import sys
import threading
import time

import pytest
import tensorflow as tf

from tests import testutil
from tf_synchro import configs
from tf_synchro.data import service
from tfrecords_tools.runtime import cli

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
    ([], "--dispatcher, --worker: give exactly one of them"),
    (["--dispatcher", "--worker"], "--dispatcher, --worker: give exactly one of them"),
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


def _terminate_when_serving(out_text) -> threading.Thread:
    """SIGTERMs this process once the server printed its start line (cli.run's handler
    turns it into the binary's exit path, as for a separate process)."""
    def watch():
        while "tf.data service" not in out_text():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_binary_serves_until_sigterm_then_exits_143_in_one_line():
    """The dispatcher, then a worker registered with it, each run by the binary until
    SIGTERM: the server is stopped, stderr holds one line, exit status 143."""
    dispatcher = service.start_dispatcher(0)
    try:
        for argv in (["--dispatcher", "--port=0"],
                     ["--worker", f"--dispatcher_address={dispatcher.target}", "--port=0"]):
            _terminate_when_serving(lambda: sys.stdout.getvalue()
                                    if hasattr(sys.stdout, "getvalue") else "")
            code, out, err = cli.invoke("tf_synchro.data_service", argv)
            assert code == cli.TERMINATE_EXIT, (out, err)
            assert "tf.data service" in out and err.strip().count("\n") == 0, (out, err)
    finally:
        dispatcher.stop()


@pytest.mark.large
def test_dispatcher_and_two_workers_feed_twenty_pretraining_steps(tmp_path):
    """A dispatcher and two workers (in-process servers, the ones the binary starts: three
    more Python + TensorFlow start-ups would triple the test's time on CI's 2 cores) feed
    a 20-step pre-training that ends with a finite loss."""
    from tf_synchro.tasks import pretext
    data_dir = tmp_path / "coded"
    testutil.write_coded_dataset(data_dir, subjects=("S1", "S5"), seqs=2)
    dispatcher = service.start_dispatcher(0)
    workers = [service.start_worker(dispatcher.target, 0) for _ in range(2)]
    try:
        config = configs.make(
            configs.PretrainConfig, data_dir=str(data_dir), model_dir=str(tmp_path / "run"),
            train_subjects=("S1", "S5"), eval_subjects=(), width=0.125, input_size=32,
            head_units=8, batch_size=4, d_min=4, d_max=30, pairs_per_clip=6,
            shuffle_buffer=32, seed=1, train_steps=20, steps_per_checkpoint=20,
            verbose=False, data_service=dispatcher.target)
        summary = pretext.train(config).summary
        assert summary["final_step"] == 20
        assert "loss" in summary["final_metrics"]
        assert all(math.isfinite(v) for v in summary["final_metrics"].values()), summary
        # Both workers ran the pipeline (dynamic sharding handed each of them splits).
        assert all(w._num_tasks() >= 1 for w in workers)
    finally:
        for server in (*workers, dispatcher):
            server.stop()
