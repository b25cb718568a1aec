"""Bazel py_test entry point: runs pytest on one test file.

Each py_test generated in //:BUILD uses this file as `main` and passes the test file
as its only argument. Bazel runs tests with the runfiles copy of the repository as the
working directory, so `tests/conftest.py`, `flags/` etc. resolve exactly as they do
for `python3 -m pytest -q tests` from the repository root.
"""
import os
import sys


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: pytest_main.py tests/test_x.py\n")
        return 2
    test_file = argv[1]
    tmp = os.environ.get("TEST_TMPDIR")
    if tmp:
        # Keep caches and config writes inside the test's scratch space (the sandbox
        # may not allow writes to $HOME).
        os.environ.setdefault("KERAS_HOME", os.path.join(tmp, "keras_home"))
        os.environ.setdefault("MPLCONFIGDIR", os.path.join(tmp, "mplconfig"))
        if not os.environ.get("HOME") or not os.access(os.environ["HOME"], os.W_OK):
            os.environ["HOME"] = os.path.join(tmp, "home")
            os.makedirs(os.environ["HOME"], exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Subprocesses started by tests (`python -m tf_synchro.pretrain ...`) must find
    # the repository packages too: put the runfiles repository root first.
    root = os.getcwd()
    path = os.environ.get("PYTHONPATH", "")
    if root not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = root + (os.pathsep + path if path else "")

    import pytest  # from the interpreter's site-packages (requirements.txt)

    args = [test_file, "-q", "-p", "no:cacheprovider", "--rootdir", root]
    if tmp:
        args.append("--basetemp=" + os.path.join(tmp, "pytest"))
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append("--junitxml=" + xml)
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
