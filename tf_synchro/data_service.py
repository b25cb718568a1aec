r"""tf.data service servers: a dispatcher, or a worker that runs training input pipelines.

    python -m tf_synchro.data_service --dispatcher --port=5050 [--work_dir=DIR]
    python -m tf_synchro.data_service --worker --dispatcher_address=HOST:5050 \
        --port=5051 [--worker_host=THIS_HOST]

Then ``python -m tf_synchro.pretrain ... --data_service=grpc://HOST:5050`` (or
``tf_synchro.finetune``) registers its input pipeline with the dispatcher and reads
batches from the workers (:mod:`tf_synchro.data.service`, docs/DESIGN.md §3). Workers
read the dataset's shards themselves, so ``--data_dir`` must be a path every worker can
open (a shared filesystem, or ``gs://``). Start the dispatcher first (a worker started
before it waits for it); workers and trainers may come and go. The server runs until
Ctrl-C or SIGTERM (exit 130 / 143, servers stopped). With ``--work_dir`` the dispatcher
journals its state there (held under a lock) and a restarted dispatcher resumes its jobs.

Stdout, one flushed line each, for people and supervisors: the start line once the server
is up (``tf.data service dispatcher at grpc://localhost:PORT ...``, the bound port for
``--port=0``; a worker's once it registered), then a line whenever the number of
registered workers (dispatcher) or of running tasks (worker: one per trainer job it
serves) changes.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from tf_synchro.configs import DataServiceConfig
from tfrecords_tools.runtime import cli, locks
from tfrecords_tools.runtime import flags as flag_engine

BINARY = "tf_synchro.data_service"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`DataServiceConfig`."""
    flag_engine.define_flags(DataServiceConfig, flag_values, binary=BINARY)


def serve(config: DataServiceConfig, log: Optional[Callable[[str], None]] = None,
          stop: Callable[[], bool] = lambda: False, poll_s: float = 0.2) -> None:
    """Runs the server of ``config`` until ``stop()`` is true or the process is interrupted
    (Ctrl-C, SIGTERM: :func:`tfrecords_tools.runtime.cli.run` raises in this thread); the
    server is stopped on the way out either way. ``log`` (default: flushed stdout, which a
    supervisor may be reading through a pipe) gets the start line and the count changes."""
    config.check()
    log = log or (lambda line: print(line, flush=True))
    from tf_synchro.data import service
    if config.worker:
        if not service.dispatcher_listening(config.dispatcher_address):
            log(f"waiting for the dispatcher at {config.dispatcher_address}")
            while not service.dispatcher_listening(config.dispatcher_address):
                if stop():
                    return
                time.sleep(poll_s)
        server = service.start_worker(config.dispatcher_address, config.port,
                                      config.worker_host)
        log(f"tf.data service worker on port {server._address.rsplit(':', 1)[-1]}, "
            f"dispatcher {config.dispatcher_address}")
        count, what = service.num_tasks, "task(s) running"
    else:
        server = service.start_dispatcher(config.port, config.work_dir)
        log(f"tf.data service dispatcher at {server.target} (trainers: "
            f"--data_service={server.target.replace('localhost', '<this host>')})")
        count, what = service.num_workers, "worker(s) registered"
    try:
        last = 0
        while not stop():
            now = count(server)
            if now != last:
                log(f"{now} {what}")
                last = now
            time.sleep(poll_s)
    finally:
        server.stop()  # Frees the port now (the workers of a stopped dispatcher retry).


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    config = flag_engine.from_flags(DataServiceConfig)
    config.check()  # Before the lock: a usage error takes nothing.
    if config.dispatcher and config.work_dir:
        with locks.hold(config.work_dir, "--work_dir"):
            serve(config)
    else:
        serve(config)


if __name__ == "__main__":
    define_flags()
    cli.run(main, stop_note="server stopped")
