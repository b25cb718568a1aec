"""How every binary of the project ends: one line per expected error, and a fixed exit code.

Each binary's ``__main__`` calls :func:`run` instead of ``absl.app.run``. An expected
error (a bad flag, a bad file, a damaged record, a locked directory) is printed as one
line on stderr, ``<binary>: error: <message>``, and the process exits with

* ``2`` (usage error): a flag that does not parse or is missing, ``app.UsageError``,
  :class:`UsageError`, or another ``ValueError`` whose message starts with the flag at
  fault (``--name...``);
* ``1`` (data error): :class:`DataError` and any other ``ValueError`` (bad file, record or
  directory: the message starts with its path), ``OSError``, TensorFlow ``OpError`` (e.g.
  a damaged shard) and a held lock (:class:`tfrecords_tools.runtime.locks.LockError`);
* ``130`` on Ctrl-C (SIGINT) and ``143`` on SIGTERM (``kill``, ``timeout``, a scheduler's
  pre-emption): both unwind like an error, so locks are released, temporaries removed and
  a training run keeps its last checkpoint, and the line says how to resume. Inside
  :func:`deferred_sigterm` (``model.fit``) SIGTERM only sets a flag that the loop checks
  after each step; a second SIGTERM ends the process at once.

``--verbose`` (added to every binary) shows the traceback instead, and TensorFlow's
start-up logging, which is otherwise kept off stderr (:mod:`tfrecords_tools.runtime.quiet_tf`).
Other exceptions are bugs and keep their traceback.

:func:`invoke` runs a binary in this process (fresh flags, same code path and exit codes
as ``python -m <module>``), which lets tests try many invocations without a Python and
TensorFlow start-up each.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import sys
from typing import Callable, Optional, Sequence

from absl import app, flags

from tfrecords_tools.runtime import locks, quiet_tf

USAGE_EXIT = 2
DATA_EXIT = 1
INTERRUPT_EXIT = 130
TERMINATE_EXIT = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERMed process.
_OWN_PACKAGES = ("tf_synchro", "tfrecords_tools", "__main__")


class UsageError(ValueError):
    """Inconsistent flags, whatever the message's first word (exit status 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt (exit status 143),
    so every ``finally`` and lock release on the way out runs."""


class DataError(ValueError):
    """An unusable input file or directory, even when the message names its flag first
    (exit status 1)."""


def check_no_arguments(argv: Sequence[str]) -> None:
    """Every binary takes flags only: a stray argument is a usage error."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {list(argv[1:])} (every setting is a "
                             f"--flag; see --help)")


def exit_code(error: BaseException) -> Optional[int]:
    """The exit code of an expected error, or None for a bug (keeps its traceback)."""
    if isinstance(error, (flags.Error, app.UsageError)):
        return USAGE_EXIT
    if isinstance(error, Terminated):
        return TERMINATE_EXIT
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPT_EXIT
    if isinstance(error, UsageError):
        return USAGE_EXIT
    if isinstance(error, DataError):
        return DATA_EXIT
    if isinstance(error, ValueError):
        return USAGE_EXIT if str(error).lstrip().startswith("--") else DATA_EXIT
    if isinstance(error, (OSError, locks.LockError)):
        return DATA_EXIT
    if any(c.__name__ == "OpError" and c.__module__.startswith("tensorflow")
           for c in type(error).__mro__):
        return DATA_EXIT
    return None


def error_message(error: BaseException) -> str:
    """One line describing ``error`` (naming the file for OS errors)."""
    if isinstance(error, Terminated):
        return ("terminated (SIGTERM); files written so far are kept (a training run: its "
                "last checkpoint); re-run the same command to resume")
    if isinstance(error, KeyboardInterrupt):
        return "interrupted; re-run the same command to resume"
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = getattr(error, "message", None) or str(error) or type(error).__name__
    text = " ".join(line.strip() for line in str(text).splitlines() if line.strip())
    # absl's flagfile errors start "ERROR:: "; the line already says "error:".
    return text[len("ERROR::"):].lstrip() if text.startswith("ERROR::") else text


def _prog(main: Callable) -> str:
    module = main.__module__
    if module == "__main__":  # `python -m pkg.name` runs the module as __main__.
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec else os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return module.rsplit(".", 1)[-1]


def _fail(prog: str, code: int, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _parse_flags(prog: str) -> Callable[[Sequence[str]], list]:
    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            _fail(prog, USAGE_EXIT, error_message(e))
    return parse


_SIGTERM = {"received": False, "deferred": 0}


def _raise_terminated(signum, frame):
    if _SIGTERM["received"]:  # A second SIGTERM: stop at once, as without a handler.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _SIGTERM["received"] = True
    if not _SIGTERM["deferred"]:
        raise Terminated()


def check_terminated() -> None:
    """Raises :class:`Terminated` if SIGTERM arrived; the safe point of a loop that runs
    inside :func:`deferred_sigterm`."""
    if _SIGTERM["received"]:
        raise Terminated()


@contextlib.contextmanager
def deferred_sigterm():
    """Within the block SIGTERM only sets a flag that :func:`check_terminated` turns into
    :class:`Terminated`. For loops inside libraries (``model.fit``): an exception raised by
    the signal handler could land in library code that holds a lock or is a destructor,
    where it is lost or leaves a deadlock on the way out."""
    _SIGTERM["deferred"] += 1
    try:
        yield
    finally:
        _SIGTERM["deferred"] -= 1
    check_terminated()


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises :class:`Terminated` for the ``with`` block (main thread only)."""
    _SIGTERM.update(received=False, deferred=0)
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # Not the main thread: signals stay as they are.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        # An in-process run (invoke) ended by SIGTERM must not stop the next fit loop.
        _SIGTERM.update(received=False, deferred=0)


def run(main: Callable[[Sequence[str]], object], argv: Optional[Sequence[str]] = None, *,
        stop_note: Optional[str] = None) -> None:
    """``absl.app.run(main)`` with the project's error policy (see the module docstring).

    ``stop_note`` replaces the resume hint after Ctrl-C / SIGTERM for binaries that write
    nothing to resume (the tf.data service servers: "server stopped").
    """
    prog = _prog(main)
    quiet_tf.install(list(argv) if argv is not None else None)
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, "Show the full traceback of an error instead of "
                                            "one line.")

    def guarded(args):
        try:
            result = main(args)
            # A SIGTERM whose exception landed where Python ignores exceptions (a
            # destructor, a callback: "Exception ignored in ...") still ends as one.
            check_terminated()
            return result
        except Exception as e:  # noqa: BLE001 - classified below; bugs are re-raised.
            code = exit_code(e)
            if code is None or flags.FLAGS.verbose:
                raise
            _fail(prog, code, error_message(e))
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated).
            if flags.FLAGS["verbose"].value:
                raise
            message = error_message(e)
            if stop_note:
                message = message.split(";", 1)[0] + "; " + stop_note
            _fail(prog, exit_code(e), message)

    with _sigterm_raises():
        app.run(guarded, argv=list(argv) if argv is not None else None,
                flags_parser=_parse_flags(prog))


# ----------------------------------------------------------------------------- in-process runs

def reset_flags() -> None:
    """Forgets the flags the project's binaries defined (absl's own stay), unparsed."""
    fv = flags.FLAGS
    fv.unparse_flags()
    for name in list(fv):
        module = fv.find_module_defining_flag(name) or ""
        if name in fv and (module.split(".")[0] in _OWN_PACKAGES or name == "verbose"):
            delattr(fv, name)


def invoke(module_name: str, argv: Sequence[str]) -> tuple[int, str, str]:
    """Runs binary ``module_name`` with ``argv`` in this process; returns (code, out, err).

    Every binary has the same shape: ``define_flags()`` and ``main(argv)``, run through
    :func:`run`.
    """
    module = importlib.import_module(module_name)
    reset_flags()
    prog = [module_name.rsplit(".", 1)[-1]]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved_argv = sys.argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            sys.argv = prog + list(argv)
            try:
                module.define_flags()
                run(module.main, sys.argv)
            except SystemExit as e:
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                    code = 1
                else:
                    code = int(e.code or 0)
    finally:
        sys.argv = saved_argv
        reset_flags()
    return code, out.getvalue(), err.getvalue()

