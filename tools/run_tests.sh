#!/usr/bin/env bash
# Every test once, as two lanes of pytest side by side. Same tests as
# `python3 -m pytest -q tests`; on 2 cores it fills the core that a single pytest leaves
# idle while TensorFlow waits.
#   lane 1 (background): the unit tier (-m "not large"), then the large tests of the files
#           in SIDE_FILES (none of them uses the trained-run or demo session fixtures);
#   lane 2 (foreground): every other large test (the trained runs, the tiny demo).
# The lanes share no session fixture, so none is built twice. SIDE_FILES balances the two
# lanes' wall times (BENCHMARKS.md, Test suite). Extra arguments go to every pytest call.
# Exit status: non-zero if any pytest call failed.
set -uo pipefail
cd "$(dirname "$0")/.."
SIDE_FILES=(tests/test_pretrain.py tests/test_distributed.py tests/test_models.py
            tests/test_view_augment.py)
tmp="$(mktemp -d)"
side_pid=""
cleanup() {
    if [[ -n "$side_pid" ]] && kill -0 "$side_pid" 2>/dev/null; then kill "$side_pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
ignores=()
for f in "${SIDE_FILES[@]}"; do ignores+=("--ignore=$f"); done
# Own --basetemp per pytest call: pytest prunes its numbered temp dirs in each session.
(
    status=0
    python3 -m pytest -q -p no:cacheprovider -m "not large" --basetemp="$tmp/unit" \
        tests "$@" || status=$?
    python3 -m pytest -q -p no:cacheprovider -m large --basetemp="$tmp/side" \
        "${SIDE_FILES[@]}" "$@" || status=$?
    exit "$status"
) > "$tmp/lane1.log" 2>&1 &
side_pid=$!
main_status=0
python3 -m pytest -q -m large --basetemp="$tmp/large" "${ignores[@]}" tests "$@" \
    || main_status=$?
side_status=0
wait "$side_pid" || side_status=$?
side_pid=""
echo "---- lane 1 (unit tier, then the large tests of ${SIDE_FILES[*]}), exit $side_status"
cat "$tmp/lane1.log"
if (( main_status != 0 || side_status != 0 )); then
    echo "tests failed: lane 1 exit $side_status, lane 2 exit $main_status" >&2
    exit 1
fi
