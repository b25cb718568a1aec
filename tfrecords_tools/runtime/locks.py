"""Run directories: one writer at a time, and no temporaries of dead writers left behind.

Every writer of the project (dataset shards and manifests, checkpoints, training state,
models, exports, reports) writes to a temporary name that carries its process id
(:func:`temp_path`: ``<file>.tmp-<pid>[suffix]``, or ``.tmp-<pid>-...`` for export
folders) and renames it when complete. A writer killed mid-file leaves that temporary
behind; :func:`clean_stale_temps`, run when the next writer starts, removes those whose
process is gone.

:func:`hold` takes the lock of a run directory (a model_dir, a dataset output_dir, an
export_dir, a demo/experiments workdir): a file ``.lock`` naming host, pid and command,
created atomically (``O_CREAT | O_EXCL``). A second writer is refused with one line
naming the holder; a lock whose process is gone (same host, dead pid) is taken over with
a warning; the lock is removed when the holder finishes (a SIGKILLed holder leaves a
stale lock, which the next run takes over).

Locks are per directory, not per tree: the demo holds its workdir while the binaries it
runs as subprocesses hold their own stage directories inside it, so nesting never
deadlocks. Temporaries are cleaned only while the directory's lock is held: then no
other live writer can own a temporary there, except this host's processes, whose pids
are alive.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import sys
from typing import Any, Callable, Iterator, Mapping, Optional

LOCK_FILE = ".lock"
# "<name>.tmp-<pid>", "<name>.tmp-<pid>.<ext>", ".tmp-<pid>-<version>", "tmp-<pid>.weights.h5".
_TEMP = re.compile(r"(?:^|\.)tmp-(\d+)(?=$|[.-])")
# A lock file is written right after it is created; one still empty after this long was
# left by a writer killed in between.
_EMPTY_LOCK_GRACE_S = 30.0


class LockError(RuntimeError):
    """The run directory is in use by another live process."""


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- temporaries

def temp_path(path: str, suffix: str = "") -> str:
    """The temporary name to write ``path`` under: ``<path>.tmp-<pid><suffix>``.

    ``suffix`` keeps an extension a library insists on (``.keras``, ``.weights.h5``).
    """
    return f"{path}.tmp-{os.getpid()}{suffix}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Exists, owned by someone else.
        return True
    return True


def temp_owner(name: str) -> Optional[int]:
    """The pid in a temporary's file name, or None when ``name`` is not a temporary."""
    m = _TEMP.search(name)
    return int(m.group(1)) if m else None


def stale_temps(directory: str) -> list[str]:
    """Names in ``directory`` (not recursive) of temporaries whose writer is gone."""
    if not os.path.isdir(directory):
        return []
    out = []
    for name in sorted(os.listdir(directory)):
        pid = temp_owner(name)
        if pid is not None and not pid_alive(pid):
            out.append(name)
    return out


def refuse_other_settings(stored: Mapping[str, Any], requested: Mapping[str, Any],
                          error: type, where: str, hint: str) -> None:
    """The one "this directory was made with other settings" check of the project.

    Raises ``error`` naming ``where``, each differing setting as ``(stored, requested)``
    and ``hint`` (what to do), when the two mappings differ.
    """
    diff = {k: (stored.get(k), requested.get(k)) for k in sorted(set(stored) | set(requested))
            if stored.get(k) != requested.get(k)}
    if diff:
        raise error(f"{where} holds a run with different settings (setting: (stored, "
                    f"requested)) {diff}; {hint}")


def clean_stale_temps(*directories: str, log: Callable[[str], None] = _warn) -> list[str]:
    """Removes the temporaries of dead writers in ``directories``; returns their paths.

    Call with the directory's lock held (see the module docstring).
    """
    removed = []
    for directory in directories:
        for name in stale_temps(directory):
            path = os.path.join(directory, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except FileNotFoundError:
                continue  # Another cleaner was faster.
            removed.append(path)
    if removed:
        log(f"removed {len(removed)} temporary file(s) left by interrupted runs: "
            f"{', '.join(removed[:5])}{' ...' if len(removed) > 5 else ''}")
    return removed


# ----------------------------------------------------------------------------- the lock

_HELD: set = set()  # Lock files held by this process.


def _read_lock(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            info = json.load(f)
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def _holder_text(info: Optional[dict]) -> str:
    if not info:
        return "a process that is starting (empty lock file)"
    return (f"pid {info.get('pid')} on host {info.get('host')} (since {info.get('started')}: "
            f"{info.get('command', '?')})")


def _is_stale(path: str, info: Optional[dict]) -> bool:
    if info is None:
        try:
            age = datetime.datetime.now().timestamp() - os.path.getmtime(path)
        except FileNotFoundError:
            return True
        return age > _EMPTY_LOCK_GRACE_S
    if info.get("host") != socket.gethostname():
        return False  # Cannot see processes of another host: assume alive.
    pid = int(info.get("pid", -1))
    if pid == os.getpid():
        return path not in _HELD  # Left by an earlier, unreleased use in this process.
    return not pid_alive(pid)


def stale_lock(path: str) -> bool:
    """Whether the lock file ``path`` was left by a process that is gone."""
    return _is_stale(path, _read_lock(path))


class RunLock:
    """A held run-directory lock; :meth:`release` (or leaving :func:`hold`) removes it."""

    def __init__(self, path: str, created_dir: Optional[str]):
        self.path = path
        self._created_dir = created_dir

    def release(self) -> None:
        """Removes the lock file if it is still ours (and the directory if we made it empty)."""
        if self.path not in _HELD:
            return
        _HELD.discard(self.path)
        info = _read_lock(self.path)
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        if self._created_dir:
            # A run refused after taking the lock leaves nothing behind.
            with contextlib.suppress(OSError):
                os.rmdir(self._created_dir)


def not_a_directory(path: str, missing: str = "does not exist") -> str:
    """Why ``path`` is no usable directory, for messages: ``"is a file, expected a
    directory"``, or ``missing``."""
    if os.path.lexists(path) and not os.path.isdir(path):
        return "is a file, expected a directory"
    return missing


def check_output_dir(directory: str, what: str = "directory") -> None:
    """Raises ValueError (naming ``what``) unless ``directory`` can be a directory to write:
    not empty, and not an existing file."""
    if not directory:
        raise ValueError(f"{what} is empty; expected a directory path")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{what}={directory} exists and is a file, expected a directory")


def acquire(directory: str, what: str = "directory",
            log: Callable[[str], None] = _warn) -> RunLock:
    """Takes the lock of ``directory`` (created if needed).

    Args:
      directory: the run directory.
      what: how the user named it, for messages (e.g. ``--model_dir``).
      log: where the stale-lock warning goes.

    Raises:
      LockError: another live process holds it (the message names host and pid).
      ValueError: ``directory`` is empty or a file.
    """
    check_output_dir(directory, what)
    created = None if os.path.isdir(directory) else os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.abspath(os.path.join(directory, LOCK_FILE))
    info = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:300]}
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if not _is_stale(path, holder):
                raise LockError(
                    f"{what}={directory} is in use by {_holder_text(holder)}; wait for it to "
                    f"finish or use another {what} (lock file {path})") from None
            log(f"warning: {what}={directory}: taking over the stale lock of "
                f"{_holder_text(holder)}, which is no longer running")
            _break_stale(path, holder)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        _HELD.add(path)
        return RunLock(path, created)
    raise LockError(f"{what}={directory}: could not take the lock {path} (other processes "
                    f"keep taking it)")


def _break_stale(path: str, seen: Optional[dict]) -> None:
    """Removes a stale lock unless another process replaced it meanwhile."""
    aside = temp_path(path, ".stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read_lock(aside) != seen:
        # A live process took the lock between our read and the rename: put it back.
        with contextlib.suppress(OSError):
            os.link(aside, path)
    os.remove(aside)


@contextlib.contextmanager
def hold(directory: str, what: str = "directory", log: Callable[[str], None] = _warn,
         enabled: bool = True) -> Iterator[Optional[RunLock]]:
    """Holds the lock of ``directory`` for the ``with`` block (see :func:`acquire`).

    ``enabled=False`` holds nothing (e.g. a non-chief worker, which writes no files).
    """
    if not enabled:
        yield None
        return
    lock = acquire(directory, what, log)
    try:
        yield lock
    finally:
        lock.release()
