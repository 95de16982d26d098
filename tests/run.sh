#!/usr/bin/env bash
# Runs every unit test binary and every CLI test script, then prints one summary line.
# Each program ends with its own "N passed, N failed" line; this adds them up.
set -u
BUILD=${BUILD:-build}
export OPTSTUDIO_BIN=${OPTSTUDIO_BIN:-$PWD/$BUILD/optstudio}
export OPTSTUDIO_BUILD=$PWD/$BUILD
# where `make models` put the demo model and texts (the user's data home, not the tests')
data_home=${OPTSTUDIO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/optstudio}
[ -f "$data_home/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] &&
	export OPTSTUDIO_DEMO_MODEL=$data_home/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$data_home/text/heldout.txt" ] && export OPTSTUDIO_DEMO_TEXT=$data_home/text/heldout.txt
[ -f "$data_home/text/calibration.txt" ] && export OPTSTUDIO_CALIB_TEXT=$data_home/text/calibration.txt
passed=0 failed=0
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

run_one() { # name command...
	local name=$1; shift
	local log=$log_dir/$name.log
	"$@" >"$log" 2>&1
	local rc=$?
	local summary
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$summary" ]; then
		echo "FAIL $name: exited $rc without a summary line (log: $log)"
		tail -n 20 "$log" | sed 's/^/    /'
		failed=$((failed + 1))
		return
	fi
	local p f
	p=$(echo "$summary" | awk '{print $1}')
	f=$(echo "$summary" | awk '{print $3}')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p)); failed=$((failed + f))
	printf '%-28s %s\n' "$name" "$summary"
	grep -E '^(FAIL|SKIP)|^  ' "$log" | head -n 40 | sed 's/^/    /'
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "$(basename "$t")" "$t"
done
for s in tests/cli/test_*.sh; do
	[ -f "$s" ] || continue
	run_one "$(basename "$s" .sh)" bash "$s"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
