"""tools/bazel_test.sh fails early, with the command to run, when its prerequisites are missing;
BUILD has a target for every library module, binary and test file (read without Bazel: CI
only builds with Bazel, pytest runs every test once)."""
import ast
import glob
import os
import re
import stat
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "bazel_test.sh")
APT_LINE = ("apt-get update && apt-get install -y bazel-bootstrap bazel-rules-cc bazel-platforms "
            "bazel-rules-java bazel-rules-proto")


def _run(tmp_path, *args, **env):
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "TF_SYNCHRO_BAZEL_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(["bash", SCRIPT, *args], env=full, capture_output=True, text=True,
                          timeout=120)


def _fake_bazel_share(tmp_path):
    share = tmp_path / "share"
    for d in ("rules/cc/cc", "rules/java", "rules/proto", "tools/platforms"):
        (share / d).mkdir(parents=True)
    (share / "tools/platforms/WORKSPACE").write_text("")
    bazel = tmp_path / "bazel"
    bazel.write_text("#!/bin/sh\necho 'fake bazel must not run' >&2\nexit 99\n")
    bazel.chmod(bazel.stat().st_mode | stat.S_IEXEC)
    return str(share), str(bazel)


def test_missing_bazel_prints_apt_line_and_fails(tmp_path):
    out = _run(tmp_path, BAZEL=str(tmp_path / "no-such-bazel"), BAZEL_SHARE=str(tmp_path / "none"))
    assert out.returncode == 1
    assert APT_LINE in out.stderr
    assert "--install" in out.stderr
    assert "bazel-bootstrap" in out.stderr.splitlines()[0]  # says what is missing first


def test_missing_rule_repositories_are_named(tmp_path):
    share, bazel = _fake_bazel_share(tmp_path)
    (tmp_path / "share/rules/java").rmdir()
    out = _run(tmp_path, BAZEL=bazel, BAZEL_SHARE=share)
    assert out.returncode == 1
    assert "missing: bazel-rules-java" in out.stderr and APT_LINE in out.stderr


def test_python_without_requirements_is_reported(tmp_path):
    share, bazel = _fake_bazel_share(tmp_path)
    out = _run(tmp_path, BAZEL=bazel, BAZEL_SHARE=share, PYTHON=str(tmp_path / "no-python"))
    assert out.returncode == 1 and "PYTHON=" in out.stderr and "requirements.txt" in out.stderr
    fake_py = tmp_path / "python3"
    fake_py.write_text("#!/bin/sh\nif [ \"$1\" = -c ] && [ \"$2\" = 'import sys; print(sys.executable)' ]; "
                       "then echo \"$0\"; exit 0; fi\nexit 1\n")
    fake_py.chmod(fake_py.stat().st_mode | stat.S_IEXEC)
    out = _run(tmp_path, BAZEL=bazel, BAZEL_SHARE=share, PYTHON=str(fake_py))
    assert out.returncode == 1
    assert "cannot import tensorflow, keras and pytest" in out.stderr
    assert f"{fake_py} -m pip install -r requirements.txt" in out.stderr
    assert "fake bazel must not run" not in out.stderr


@pytest.mark.parametrize("arg", ["--frobnicate", "//..."])
def test_unknown_arguments_are_rejected(tmp_path, arg):
    out = _run(tmp_path, arg)
    assert out.returncode == 2 and "unknown argument" in out.stderr


@pytest.mark.parametrize("args, expected", [([], "test //..."),
                                            (["--build"], "build //..."),
                                            (["--build", "--", "//:a", "//:b"], "build //:a //:b"),
                                            (["--", "//:test_pairs"], "test //:test_pairs")])
def test_runs_bazel_test_or_build_on_the_targets(tmp_path, args, expected):
    # A copy of the script in a scratch repository: it writes tools/bazel/offline.bazelrc
    # beside itself, which must not replace the real checkout's.
    repo = tmp_path / "repo"
    (repo / "tools" / "bazel").mkdir(parents=True)
    script = repo / "tools" / "bazel_test.sh"
    script.write_text(open(SCRIPT).read())
    share, bazel = _fake_bazel_share(tmp_path)
    with open(bazel, "w") as f:
        f.write("#!/bin/sh\necho \"fake bazel: $*\"\n")
    fake_py = tmp_path / "python3"  # Has "everything": answers sys.executable, imports pass.
    fake_py.write_text("#!/bin/sh\nif [ \"$2\" = 'import sys; print(sys.executable)' ]; "
                       "then echo \"$0\"; fi\nexit 0\n")
    fake_py.chmod(fake_py.stat().st_mode | stat.S_IEXEC)
    out = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                         timeout=120, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                           "HOME": str(tmp_path), "BAZEL": bazel,
                                           "BAZEL_SHARE": share, "PYTHON": str(fake_py),
                                           "TF_SYNCHRO_BAZEL_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"fake bazel: {expected}"
    rc = (repo / "tools" / "bazel" / "offline.bazelrc").read_text()
    assert f"--python_path={fake_py}" in rc


# ----------------------------------------------------------------------------- BUILD's targets

def _build_value(text: str, name: str):
    """The literal assigned to ``name`` at the top level of BUILD (Starlark lists and dicts
    of strings are Python literals)."""
    match = re.search(rf"^{name} = (.*?^[\]}}])", text, re.S | re.M)
    assert match, f"BUILD has no {name}"
    return ast.literal_eval(match.group(1))


def _glob_regex(pattern: str) -> re.Pattern:
    """Bazel's glob() pattern as a regex over repository-relative paths."""
    out = ""
    for part in re.split(r"(\*\*/|/\*\*$|\*)", pattern):
        out += {"**/": "(?:.*/)?", "/**": "(?:/.*)?", "*": "[^/]*"}.get(part, re.escape(part))
    return re.compile(out + "$")


def _sources(*patterns: str) -> list:
    return sorted(os.path.relpath(p, REPO) for pattern in patterns
                  for p in glob.glob(os.path.join(REPO, pattern), recursive=True))


def test_build_has_a_target_for_every_module_binary_and_test_file():
    with open(os.path.join(REPO, "BUILD")) as f:
        text = f.read()
    not_inputs = [_glob_regex(p) for p in _build_value(text, "_NOT_INPUTS")]
    assert _glob_regex("**/__pycache__/**").match("tf_synchro/__pycache__/x.pyc")

    def excluded(path):
        return [p.pattern for p in not_inputs if p.match(path)]

    # Both libraries glob every module of their package, and nothing excludes one.
    for package in ("tf_synchro", "tfrecords_tools"):
        assert f'srcs = glob(["{package}/**/*.py"])' in text, package
        modules = _sources(f"{package}/**/*.py")
        assert len(modules) > 10 and not [(m, excluded(m)) for m in modules if excluded(m)]
    # A py_binary for every module that runs as `python -m` (it has a __main__ block),
    # named after it; and every binary the README runs has one.
    mains = {}
    for path in _sources("tf_synchro/**/*.py", "tfrecords_tools/**/*.py"):
        with open(os.path.join(REPO, path)) as f:
            if re.search(r"^if __name__ == .__main__.:", f.read(), re.M):
                mains[os.path.basename(path)[:-len(".py")]] = path
    binaries = _build_value(text, "_BINARIES")
    assert binaries == mains
    with open(os.path.join(REPO, "README.md")) as f:
        run = set(re.findall(r"python3? -m ((?:tf_synchro|tfrecords_tools)\.\w+)", f.read()))
    assert run and {m.replace(".", "/") + ".py" for m in run} <= set(binaries.values())
    # A py_test for every file `python3 -m pytest -q tests` collects (pytest's default
    # python_files; pytest.ini must not change it).
    tests = ast.literal_eval(re.search(r"^_TEST_FILES = glob\((\[.*?\])", text, re.M).group(1))
    with open(os.path.join(REPO, "pytest.ini")) as f:
        assert "python_files" not in f.read()
    collected = _sources("tests/**/test_*.py", "tests/**/*_test.py")
    assert len(collected) > 30
    for path in collected:
        assert any(_glob_regex(p).match(path) for p in tests) and not excluded(path), path
