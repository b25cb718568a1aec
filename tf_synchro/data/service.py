"""tf.data service: the training input pipeline on other machines' CPUs (docs/DESIGN.md §3).

``--data_service=grpc://HOST:PORT`` (:class:`tf_synchro.configs.RuntimeConfig`) makes
:func:`tf_synchro.train_lib.distributed_dataset` build the input pipeline once as a graph,
register it with the dispatcher at that address, and read its batches from the workers
(``python -m tf_synchro.data_service --worker``) instead of running it in-process.

* :func:`check_address` — the one-line check of the flag's value.
* :func:`distribute` — applies ``tf.data.experimental.service.distribute`` with dynamic
  sharding (``ShardingPolicy.DYNAMIC``, the "distributed_epoch" mode): the dispatcher hands
  each shard-file split of each epoch to exactly one worker, so every clip is read once
  per epoch however many workers run and however fast each is.
* :class:`ServiceInputContext` / :func:`element_key` — every worker runs the same
  serialized graph (same seed, same pipeline id), so the per-element keys of the pair and
  frame draws are folded with a per-element draw of a nondeterministically seeded op:
  workers do not repeat each other's draws.
* :func:`start_dispatcher` / :func:`start_worker` — the servers the binary
  :mod:`tf_synchro.data_service` runs; :func:`num_workers` / :func:`num_tasks` — what
  it reports of them.
"""
from __future__ import annotations

import re
import socket
from typing import Callable, Optional

import tensorflow as tf

PROTOCOL = "grpc"
_ADDRESS = re.compile(r"^(?:(?P<protocol>[a-z0-9+]+)://)?(?P<host>[^:/\s]+):(?P<port>\d{1,5})$")


def check_address(flag: str, value: str, protocol: bool = True) -> str:
    """Returns ``value`` normalised to ``grpc://HOST:PORT`` (``HOST:PORT`` with
    ``protocol=False``).

    Raises:
      ValueError: ``--flag=value: expected ...`` when it is not such an address.
    """
    m = _ADDRESS.match(value or "")
    port = int(m.group("port")) if m else -1
    if not m or not 0 < port < 65536 or (m.group("protocol") or PROTOCOL) != PROTOCOL:
        raise ValueError(f"--{flag}={value}: expected a dispatcher address "
                         f"{PROTOCOL}://HOST:PORT (port 1-65535)")
    host_port = f"{m.group('host')}:{port}"
    return f"{PROTOCOL}://{host_port}" if protocol else host_port


class ServiceInputContext(tf.distribute.InputContext):
    """The input context of a pipeline that runs on tf.data service workers.

    One pipeline (no file sharding: the dispatcher splits the files), the trainer's
    per-replica batch, and :func:`element_key` draws per-worker random streams.
    """

    def __init__(self, num_replicas_in_sync: int = 1):
        super().__init__(num_input_pipelines=1, input_pipeline_id=0,
                         num_replicas_in_sync=num_replicas_in_sync)


def element_key(base_key: tf.Tensor, index: tf.Tensor,
                input_context: Optional[tf.distribute.InputContext] = None) -> tf.Tensor:
    """The stateless key of stream element ``index``: ``fold_in(base_key, index)``.

    On service workers (:class:`ServiceInputContext`) the key is also folded with a draw of
    an op seeded ``(0, 0)``, which TensorFlow seeds at random in each process: otherwise
    the i-th clip of every worker would get the same crops, views and time offsets.
    """
    key = tf.random.experimental.stateless_fold_in(base_key, index)
    if isinstance(input_context, ServiceInputContext):
        nonce = tf.raw_ops.RandomUniformInt(shape=tf.constant([], tf.int32),
                                            minval=tf.constant(0, tf.int64),
                                            maxval=tf.constant(2**62, tf.int64),
                                            seed=0, seed2=0)
        key = tf.random.experimental.stateless_fold_in(key, nonce)
    return key


def distribute(dataset: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """``dataset`` read from the tf.data service at ``address`` (dynamic sharding).

    Each consumer (trainer pipeline) gets its own anonymous job: a resumed run changes its
    data seed, hence its graph, which a named job would refuse.
    """
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=check_address("data_service", address)))


def dataset_fn(fn: Callable[[tf.distribute.InputContext], tf.data.Dataset], address: str
               ) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """Wraps an ``input_context -> dataset`` function so the pipeline runs on the service."""
    def wrapped(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = fn(ServiceInputContext(input_context.num_replicas_in_sync))
        return distribute(ds, address).prefetch(tf.data.AUTOTUNE)

    return wrapped


# ----------------------------------------------------------------------------- servers

def start_dispatcher(port: int, work_dir: Optional[str] = None
                     ) -> tf.data.experimental.service.DispatchServer:
    """Starts a dispatcher on ``port`` (fault tolerant, journaled in ``work_dir`` if given)."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, protocol=PROTOCOL, work_dir=work_dir or None,
        fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def dispatcher_listening(address: str, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to the dispatcher at ``address`` opens now.

    A worker's start (:func:`start_worker`) blocks in TensorFlow, where no signal handler
    runs, until it registered, retrying with growing waits: the binary polls this first,
    so a worker started before its dispatcher stays stoppable and registers at once."""
    host, port = check_address("dispatcher_address", address, False).rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def start_worker(dispatcher_address: str, port: int, worker_host: str = "localhost"
                 ) -> tf.data.experimental.service.WorkerServer:
    """Starts a worker on ``port`` that registers with the dispatcher at ``dispatcher_address``
    as ``worker_host:port`` (the address trainers connect to)."""
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=check_address("dispatcher_address", dispatcher_address, False),
        worker_address=f"{worker_host}:%port%", port=port, protocol=PROTOCOL)
    return tf.data.experimental.service.WorkerServer(config)


def num_workers(dispatcher: tf.data.experimental.service.DispatchServer) -> int:
    """Workers registered with ``dispatcher`` (TensorFlow's only accessor is private)."""
    return dispatcher._num_workers()


def num_tasks(worker: tf.data.experimental.service.WorkerServer) -> int:
    """Tasks (one per trainer job served) running on ``worker`` (a private accessor too)."""
    return worker._num_tasks()
