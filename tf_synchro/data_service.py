r"""tf.data service servers: a dispatcher, or a worker that runs training input pipelines.

    python -m tf_synchro.data_service --dispatcher --port=5050 [--work_dir=DIR]
    python -m tf_synchro.data_service --worker --dispatcher_address=HOST:5050 \
        --port=5051 [--worker_host=THIS_HOST]

Then ``python -m tf_synchro.pretrain ... --data_service=grpc://HOST:5050`` (or
``tf_synchro.finetune``) registers its input pipeline with the dispatcher and reads
batches from the workers (:mod:`tf_synchro.data.service`, docs/DESIGN.md §3). Workers
read the dataset's shards themselves, so ``--data_dir`` must be a path every worker can
open (a shared filesystem, or ``gs://``). Start the dispatcher first; workers and trainers
may come and go. The server runs until Ctrl-C or SIGTERM (exit 130 / 143, servers
stopped). With ``--work_dir`` the dispatcher journals its state there (held under a lock)
and a restarted dispatcher resumes its jobs.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from tf_synchro.configs import DataServiceConfig
from tfrecords_tools.runtime import cli, locks
from tfrecords_tools.runtime import flags as flag_engine

BINARY = "tf_synchro.data_service"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`DataServiceConfig`."""
    flag_engine.define_flags(DataServiceConfig, flag_values, binary=BINARY)


def serve(config: DataServiceConfig, log: Callable[[str], None] = print,
          stop: Callable[[], bool] = lambda: False, poll_s: float = 0.5) -> None:
    """Runs the server of ``config`` until ``stop()`` is true or the process is interrupted
    (Ctrl-C, SIGTERM: :func:`tfrecords_tools.runtime.cli.run` raises in this thread); the
    server is stopped on the way out either way."""
    config.check()
    from tf_synchro.data import service
    if config.worker:
        server = service.start_worker(config.dispatcher_address, config.port,
                                      config.worker_host)
        log(f"tf.data service worker on port {server._address.rsplit(':', 1)[-1]}, "
            f"dispatcher {config.dispatcher_address}")
    else:
        server = service.start_dispatcher(config.port, config.work_dir)
        log(f"tf.data service dispatcher at {server.target} (trainers: "
            f"--data_service={server.target.replace('localhost', '<this host>')})")
    try:
        while not stop():
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
    cli.run(main)
