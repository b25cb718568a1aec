"""Keeps TensorFlow's start-up logging off a binary's stderr (``--verbose`` keeps it).

Importing TensorFlow prints a handful of C++ log lines (oneDNN, CUDA drivers, cuInit) on
file descriptor 2, before and outside Python's logging; ``TF_CPP_MIN_LOG_LEVEL`` does not
reach the ones logged before absl's logging is initialised. A binary's one-line error would
drown in them. :func:`install` therefore

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the environment already sets it), which silences
  the later device-initialisation lines (and ``OPENCV_FFMPEG_LOGLEVEL=-8``: FFmpeg's lines
  about a video it cannot open), and
* wraps the loader of the ``tensorflow`` package so that, while it is imported (and only
  then), file descriptor 2 points to ``/dev/null``. Python's own ``sys.stderr`` writes
  during that import go there too; errors raised by the import still propagate.

Binaries call it before TensorFlow is imported: each package's ``__init__`` does when the
process runs as ``python -m <package>.<binary>``, and :func:`tfrecords_tools.runtime.cli.run` does
for other entry points. This module imports neither TensorFlow nor absl.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Optional, Sequence

_VERBOSE = ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")


@contextlib.contextmanager
def _stderr_fd_silenced():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # No usable fd 2: nothing to silence.
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    """The real loader of ``tensorflow``, executed with fd 2 silenced."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader  # TensorFlow sees its own loader.
        with _stderr_fd_silenced():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...
        if name == "_loader":  # Not set yet (e.g. a copy): no recursion.
            raise AttributeError(name)
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # Once: the package is imported a single time.
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def wants_verbose(argv: Optional[Sequence[str]] = None) -> bool:
    """Whether the command line asks for ``--verbose`` (TensorFlow's logging kept)."""
    return any(a in _VERBOSE for a in (sys.argv if argv is None else argv)[1:])


def install(argv: Optional[Sequence[str]] = None) -> bool:
    """Silences TensorFlow's start-up logging unless ``--verbose`` is in ``argv``
    (default ``sys.argv``) or TensorFlow is already imported; True when installed."""
    if wants_verbose(argv):
        return False
    # FFmpeg's own lines ("moov atom not found") for a video OpenCV cannot open: the reader
    # says so in the one error line, naming the file. Read when a video is first opened.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "tensorflow" in sys.modules:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    return True


def install_for_binary() -> None:
    """:func:`install` when this process runs a module with ``python -m`` (called from the
    packages' ``__init__``, which Python runs before the binary's own imports)."""
    if sys.argv and sys.argv[0] == "-m":
        install()
