"""tf.data service: flag checks, per-worker random streams, and a pre-training fed by a
dispatcher and two worker processes (tf_synchro.data_service, tf_synchro.data.service)."""
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

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


def test_worker_waits_for_its_dispatcher_and_stays_stoppable():
    """A worker whose dispatcher is not up yet says so and polls (in Python, where SIGTERM
    and Ctrl-C are handled) instead of blocking in TensorFlow's registration."""
    from tf_synchro import data_service
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]  # Closed again: nothing listens there.
    assert not service.dispatcher_listening(f"localhost:{port}", timeout_s=0.5)
    lines, polls = [], []
    config = configs.make(configs.DataServiceConfig, worker=True,
                          dispatcher_address=f"localhost:{port}", port=0)
    data_service.serve(config, log=lines.append,
                       stop=lambda: (polls.append(1), len(polls) > 2)[1], poll_s=0.01)
    assert lines == [f"waiting for the dispatcher at localhost:{port}"] and len(polls) == 3


class _Server:
    """A ``python -m tf_synchro.data_service`` process in its own session; its stdout and
    stderr go to files (a pipe nobody reads could fill and stall it)."""

    def __init__(self, tmp_path, name: str, argv):
        self.name, self.out, self.err = name, tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tf_synchro.data_service",
                                          *argv], cwd=REPO, env=env, stdout=out, stderr=err,
                                         start_new_session=True)

    def wait_for(self, pattern: str, timeout_s: float = 300) -> re.Match:
        """The first match of ``pattern`` in the server's stdout, polled until it appears;
        fails at once if the server exits first (with its stderr's tail)."""
        deadline = time.monotonic() + timeout_s  # A hang guard only.
        while True:
            match = re.search(pattern, self.out.read_text(), re.M)
            if match:
                return match
            assert self.proc.poll() is None, (f"{self.name} exited {self.proc.returncode}: "
                                              f"{self.err.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"{self.name}: no {pattern!r} in time"
            time.sleep(0.05)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def exit(self) -> tuple:
        """(exit status, stderr's last line) once it ended."""
        code = self.proc.wait(timeout=60)
        return code, (self.err.read_text().strip().splitlines() or [""])[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def servers(tmp_path):
    """Starts ``_Server``s; SIGKILLs whichever still runs when the test ends, passed or not."""
    started = []

    def start(name, *argv):
        started.append(_Server(tmp_path, name, argv))
        return started[-1]

    yield start
    for server in started:
        server.kill()


@pytest.mark.large
def test_dispatcher_and_two_worker_processes_feed_twenty_pretraining_steps(tmp_path, servers):
    """The binary's dispatcher and two workers, each its own process, feed a 20-step
    pre-training (this process) that ends with a finite loss; each worker ran a task of
    the job; SIGTERM then stops every server (exit 143, its error line last)."""
    from tf_synchro.tasks import pretext
    # All three start at once (each start is mostly importing TensorFlow); the workers
    # wait for the dispatcher's port. The port is free now; the dispatcher's start line
    # says it got it.
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    dispatcher = servers("dispatcher", "--dispatcher", f"--port={port}")
    workers = [servers(f"worker{i}", "--worker", f"--dispatcher_address=localhost:{port}",
                       "--port=0") for i in range(2)]
    data_dir = tmp_path / "coded"  # Written while they start.
    testutil.write_coded_dataset(data_dir, subjects=("S1", "S5"), seqs=2)
    address = dispatcher.wait_for(r"dispatcher at (grpc://localhost:\d+) ").group(1)
    assert address == f"grpc://localhost:{port}"
    # Both registered before the job exists: each gets a task of it (a worker that came
    # after the trainer released its job would get none).
    dispatcher.wait_for(r"^2 worker\(s\) registered$")
    config = configs.make(
        configs.PretrainConfig, data_dir=str(data_dir), model_dir=str(tmp_path / "run"),
        train_subjects=("S1", "S5"), eval_subjects=(), width=0.125, input_size=32,
        head_units=8, batch_size=4, d_min=4, d_max=30, pairs_per_clip=6,
        shuffle_buffer=32, seed=1, train_steps=20, steps_per_checkpoint=20,
        verbose=False, data_service=address)
    summary = pretext.train(config).summary
    assert summary["final_step"] == 20
    assert "loss" in summary["final_metrics"]
    assert all(math.isfinite(v) for v in summary["final_metrics"].values()), summary
    # Dynamic sharding gave each worker a task of the job (splits of its file list).
    for worker in workers:
        worker.wait_for(r"^[1-9]\d* task\(s\) running$", timeout_s=60)
    for server in (*workers, dispatcher):  # All at once: each stops in seconds.
        server.terminate()
    for server in (*workers, dispatcher):
        code, last = server.exit()
        assert code == cli.TERMINATE_EXIT and last.endswith(
            "error: terminated (SIGTERM); server stopped"), \
            (server.name, code, server.err.read_text()[-3000:])
