#!/usr/bin/env bash
# Every test once, as two pytest processes side by side: the unit tier (-m "not large") in
# the background and the large tier (end-to-end runs, the tiny demo) in the foreground.
# Same tests as `python3 -m pytest -q tests`; on 2 cores it fills the core a single pytest
# leaves idle while TensorFlow waits (the tiers share no session fixture: the unit tier uses
# the tiny dataset, the large tier the trained runs and the demo). Extra arguments go to
# both pytest calls. Exit status: non-zero if either tier failed.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
unit_pid=""
cleanup() {
    if [[ -n "$unit_pid" ]] && kill -0 "$unit_pid" 2>/dev/null; then kill "$unit_pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
# Own --basetemp per tier: pytest's numbered temp dirs are pruned by each session.
python3 -m pytest -q -p no:cacheprovider -m "not large" --basetemp="$tmp/unit" tests "$@" \
    > "$tmp/unit.log" 2>&1 &
unit_pid=$!
large_status=0
python3 -m pytest -q -m large --basetemp="$tmp/large" tests "$@" || large_status=$?
unit_status=0
wait "$unit_pid" || unit_status=$?
unit_pid=""
echo "---- unit tier (-m \"not large\", run beside the large tier above), exit $unit_status"
cat "$tmp/unit.log"
if (( large_status != 0 || unit_status != 0 )); then
    echo "tests failed: large tier exit $large_status, unit tier exit $unit_status" >&2
    exit 1
fi
