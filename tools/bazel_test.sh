#!/usr/bin/env bash
# Runs the test suite with Bazel, offline, on a Debian/Ubuntu machine.
#
#   tools/bazel_test.sh [--install] [--check] [--build] [-- BAZEL_ARGS...]
#
# Uses Debian's bazel-bootstrap (Bazel 4.2.3) and the rule repositories Debian packages
# under /usr/share/bazel: every repository Bazel would download is overridden by a
# local copy (a patched rules_cc and a stub remote_coverage_tools are generated into
# $TF_SYNCHRO_BAZEL_CACHE, default ~/.cache/tf_synchro_bazel), and the flags go into
# tools/bazel/offline.bazelrc (git-ignored), which .bazelrc imports, so a plain
# `bazel test //...` / `bazel run //:pretrain -- ...` works afterwards as well.
#
# Options:
#   --install   apt-get install the missing Debian packages (needs root and apt access)
#   --check     only check the prerequisites and write the config; do not run Bazel
#   --build     `bazel build` the targets instead of `bazel test` (every target's rule is
#               checked, no test runs)
#   --help      show this help
# Arguments after `--` replace the default target pattern `//...`
# (e.g. tools/bazel_test.sh -- //:test_motion_filter). CI runs only --build (every
# target's rule; pytest runs each test once).
#
# Environment:
#   PYTHON               interpreter with requirements.txt installed (default: python3)
#   BAZEL                the bazel command (default: bazel)
#   BAZEL_TEST_JOBS      tests run in parallel (default: 2)
#   TF_SYNCHRO_BAZEL_CACHE  where the generated repositories go
#   BAZEL_SHARE          Debian's Bazel data dir (default: /usr/share/bazel)
set -euo pipefail

APT_PACKAGES=(bazel-bootstrap bazel-rules-cc bazel-platforms bazel-rules-java bazel-rules-proto)
APT_LINE="apt-get update && apt-get install -y ${APT_PACKAGES[*]}"
BAZEL_SHARE="${BAZEL_SHARE:-/usr/share/bazel}"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

install=0
check_only=0
command=test
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --install) install=1 ;;
    --check) check_only=1 ;;
    --build) command=build ;;
    -h|--help) usage; exit 0 ;;
    --) shift; targets=("$@"); break ;;
    *) echo "tools/bazel_test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ ${#targets[@]} -gt 0 ]] || targets=(//...)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
BAZEL="${BAZEL:-bazel}"
PYTHON="${PYTHON:-python3}"
cache="${TF_SYNCHRO_BAZEL_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set: set TF_SYNCHRO_BAZEL_CACHE}/.cache}/tf_synchro_bazel}"

die() { echo "tools/bazel_test.sh: $*" >&2; exit 1; }

# --- 1. Bazel and the Debian rule repositories -------------------------------------
missing=()
command -v "$BAZEL" >/dev/null 2>&1 || missing+=(bazel-bootstrap)
[[ -d $BAZEL_SHARE/rules/cc/cc ]] || missing+=(bazel-rules-cc)
[[ -f $BAZEL_SHARE/tools/platforms/WORKSPACE ]] || missing+=(bazel-platforms)
[[ -d $BAZEL_SHARE/rules/java ]] || missing+=(bazel-rules-java)
[[ -d $BAZEL_SHARE/rules/proto ]] || missing+=(bazel-rules-proto)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $install -eq 1 ]]; then
    command -v apt-get >/dev/null 2>&1 || die "--install needs apt-get (Debian/Ubuntu); install Bazel 4 and the rule repositories ${APT_PACKAGES[*]} by other means."
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null 2>&1 || die "--install needs root (or sudo) to run: $APT_LINE"
      sudo=(sudo)
    fi
    echo "tools/bazel_test.sh: installing ${APT_PACKAGES[*]}" >&2
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${APT_PACKAGES[@]}"
  else
    cat >&2 <<MSG
tools/bazel_test.sh: missing: ${missing[*]}
Bazel runs offline here with Debian's Bazel 4.2.3 and its packaged rule repositories.
Install them with (as root):

  $APT_LINE

or run: tools/bazel_test.sh --install
MSG
    exit 1
  fi
fi
command -v "$BAZEL" >/dev/null 2>&1 || die "'$BAZEL' not found on PATH even after installing bazel-bootstrap."

# --- 2. The Python interpreter with requirements.txt installed ----------------------
py="$(command -v "$PYTHON" 2>/dev/null)" || die "PYTHON=$PYTHON not found. Set PYTHON to the interpreter that has requirements.txt installed (python3 -m pip install -r requirements.txt)."
# Bazel needs the real interpreter (not a pyenv shim or a venv wrapper's PATH lookup).
py="$("$py" -c 'import sys; print(sys.executable)')" || die "cannot run $PYTHON"
# Looked up, not imported: importing TensorFlow costs ~5 CPU seconds, a third of what
# `--build` costs in CI, where it runs beside pytest.
if ! "$py" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("tensorflow", "keras", "pytest")))' \
    >/dev/null 2>&1; then
  cat >&2 <<MSG
tools/bazel_test.sh: $py cannot import tensorflow, keras and pytest.
Install the requirements into it:

  $py -m pip install -r requirements.txt

or point PYTHON at the interpreter that has them: PYTHON=/path/to/python3 tools/bazel_test.sh
MSG
  exit 1
fi

# --- 3. Local copies of the repositories Bazel would download -----------------------
mkdir -p "$cache"
rules_cc="$cache/rules_cc"
if [[ ! -f $rules_cc/.tf_synchro_patched ]] || [[ $BAZEL_SHARE/rules/cc -nt $rules_cc/.tf_synchro_patched ]]; then
  rm -rf "$rules_cc.tmp"
  cp -rL "$BAZEL_SHARE/rules/cc" "$rules_cc.tmp"
  chmod -R u+w "$rules_cc.tmp"
  # Debian's rules_cc is newer than Bazel 4.2.3: it loads use_cpp_toolchain, which
  # Bazel 4's @bazel_tools does not define. Drop the symbol from the load() and use
  # the toolchain type directly.
  # (grep finds nothing in a rules_cc without the symbol: not an error under pipefail.)
  { grep -rl --include='*.bzl' 'use_cpp_toolchain' "$rules_cc.tmp" || true; } | while read -r f; do
    sed -i -e '/^load(/s/, *"use_cpp_toolchain"//; /^load(/s/"use_cpp_toolchain", *//' \
           -e 's/use_cpp_toolchain()/["@bazel_tools\/\/tools\/cpp:toolchain_type"]/g' "$f"
  done
  if grep -rq --include='*.bzl' 'use_cpp_toolchain' "$rules_cc.tmp"; then
    die "could not patch use_cpp_toolchain out of $rules_cc.tmp (unexpected bazel-rules-cc version?)"
  fi
  touch "$rules_cc.tmp/.tf_synchro_patched"
  rm -rf "$rules_cc"
  mv "$rules_cc.tmp" "$rules_cc"
fi

coverage="$cache/remote_coverage_tools"
mkdir -p "$coverage"
: > "$coverage/WORKSPACE"
cat > "$coverage/BUILD" <<'STUB'
# Offline stub: coverage is not collected.
package(default_visibility = ["//visibility:public"])

filegroup(name = "coverage_report_generator")

filegroup(name = "lcov_merger")
STUB

# The Python toolchain: Bazel 4 ignores --python_path when Python toolchains are on (the
# default) and its autodetecting toolchain runs whatever `python3` is first on PATH, so
# register a py_runtime for the chosen interpreter instead (it is also the stub's
# shebang, so no `python` command is needed on PATH).
local_python="$cache/local_python"
mkdir -p "$local_python"
: > "$local_python/WORKSPACE"
cat > "$local_python/BUILD" <<PYBUILD
# Generated by tools/bazel_test.sh: the interpreter that has requirements.txt installed.
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3_runtime",
    interpreter_path = "$py",
    python_version = "PY3",
    stub_shebang = "#!$py",
)

py_runtime_pair(
    name = "py_runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":py_runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
PYBUILD

jobs="${BAZEL_TEST_JOBS:-2}"
cat > tools/bazel/offline.bazelrc <<RC
# Generated by tools/bazel_test.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); do not commit.
build --override_repository=rules_cc=$rules_cc
build --override_repository=platforms=$BAZEL_SHARE/tools/platforms
build --override_repository=rules_java=$BAZEL_SHARE/rules/java
build --override_repository=rules_proto=$BAZEL_SHARE/rules/proto
build --override_repository=remote_coverage_tools=$coverage
query --override_repository=rules_cc=$rules_cc
query --override_repository=platforms=$BAZEL_SHARE/tools/platforms
query --override_repository=rules_java=$BAZEL_SHARE/rules/java
query --override_repository=rules_proto=$BAZEL_SHARE/rules/proto
query --override_repository=remote_coverage_tools=$coverage
fetch --override_repository=rules_cc=$rules_cc
fetch --override_repository=platforms=$BAZEL_SHARE/tools/platforms
fetch --override_repository=rules_java=$BAZEL_SHARE/rules/java
fetch --override_repository=rules_proto=$BAZEL_SHARE/rules/proto
fetch --override_repository=remote_coverage_tools=$coverage
build --override_repository=local_python=$local_python
query --override_repository=local_python=$local_python
fetch --override_repository=local_python=$local_python
build --extra_toolchains=@local_python//:toolchain
build --python_path=$py
# Tests that run \`python3 ...\` get the same interpreter.
test --test_env=PATH=$(dirname "$py"):/usr/local/bin:/usr/bin:/bin
test --local_test_jobs=$jobs
RC

version="$("$BAZEL" --version 2>/dev/null || true)"
echo "tools/bazel_test.sh: ${version:-bazel (unknown version)}, python $py" >&2
# Debian's build reports "bazel no_version"; anything else numbered but not 4.x is a
# Bazel this setup was not made for (newer ones resolve rules through bzlmod).
if [[ $version =~ ^bazel\ [0-9] && ! $version =~ ^bazel\ 4\. ]]; then
  echo "tools/bazel_test.sh: warning: this setup is made for Bazel 4.2.3 (Debian's bazel-bootstrap), not $version" >&2
fi
if [[ $check_only -eq 1 ]]; then
  echo "tools/bazel_test.sh: prerequisites OK; wrote tools/bazel/offline.bazelrc" >&2
  exit 0
fi

# --- 4. Build or run the tests -----------------------------------------------------
exec "$BAZEL" "$command" "${targets[@]}"
