# lib.sh: helpers for CLI integration tests (sourced). Each test runs the real binary in a
# fresh data home and ends with test_summary, which prints "N passed, N failed".
set -u
BIN=${OPTSTUDIO_BIN:?set by tests/run.sh}
BUILD_DIR=${OPTSTUDIO_BUILD:?set by tests/run.sh}
n_passed=0 n_failed=0
TMP=$(mktemp -d /tmp/optstudio-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OPTSTUDIO_HOME=$TMP/home

# The demo model and text fetched by `make models` (tests/run.sh exports their paths when
# present); tests that need them skip with a SKIP line otherwise.
demo_model() { [ -n "${OPTSTUDIO_DEMO_MODEL:-}" ] && [ -f "$OPTSTUDIO_DEMO_MODEL" ] && echo "$OPTSTUDIO_DEMO_MODEL"; }
demo_text() { [ -n "${OPTSTUDIO_DEMO_TEXT:-}" ] && [ -f "$OPTSTUDIO_DEMO_TEXT" ] && echo "$OPTSTUDIO_DEMO_TEXT"; }

ok() { n_passed=$((n_passed + 1)); echo "ok   $1"; }
fail() { n_failed=$((n_failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; }
skip() { n_passed=$((n_passed + 1)); echo "SKIP $1"; }

# expect_rc NAME RC CMD...: runs CMD, checks its exit code; output in $OUT
expect_rc() {
	local name=$1 want=$2; shift 2
	OUT=$("$@" 2>&1); local rc=$?
	if [ "$rc" -eq "$want" ]; then ok "$name"; else fail "$name" "exit $rc, expected $want" "$(echo "$OUT" | head -n 5)"; fi
}

# expect_out NAME PATTERN: the last command's output matches the extended regex
expect_out() {
	if echo "$OUT" | grep -qE -- "$2"; then ok "$1"; else fail "$1" "output lacks /$2/" "$(echo "$OUT" | head -n 8)"; fi
}

test_summary() { echo "$n_passed passed, $n_failed failed"; [ "$n_failed" -eq 0 ]; }
