"""Atomic JSON files, checksums and JSON round trips."""
from __future__ import annotations

import hashlib
import json
import os

from tfrecords_tools.runtime import locks


def write_json_atomic(path: str, obj) -> None:
    """Writes JSON to ``path`` through a temporary file, fsync and a rename.

    The one JSON writer of the project: a crash leaves the old file or the new one, never
    a torn one.
    """
    if is_url(path):
        _write_json_gfile(path, obj)
        return
    tmp = locks.temp_path(path)
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # Interrupted (Ctrl-C, SIGTERM) or failed: no temporary left behind.
        if os.path.exists(tmp):
            os.remove(tmp)


def is_url(path: str) -> bool:
    """A path of a filesystem only ``tf.io.gfile`` reaches (``gs://``, ``s3://``, ...)."""
    return "://" in path


def _write_json_gfile(path: str, obj) -> None:
    """:func:`write_json_atomic` on a ``tf.io.gfile`` filesystem (temporary name, rename)."""
    import tensorflow as tf
    tmp = locks.temp_path(path)
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def sha256_file(path: str) -> str:
    """The sha256 hex digest of the file ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    if is_url(path):
        import tensorflow as tf
        opener = tf.io.gfile.GFile
    else:
        opener = open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(obj):
    """``obj`` as it would read back from JSON (tuples become lists, etc.)."""
    return json.loads(json.dumps(obj, sort_keys=True))
