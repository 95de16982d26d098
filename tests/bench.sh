#!/usr/bin/env bash
# bench.sh: `make bench`. Builds nothing; runs the benchmark programs that exist and prints
# their tables: the kernel benchmark ($BUILD/tests/bench_kernels) when built, then
# `optstudio bench-engine` on the demo model with F32 and with BF16 weights. Benchmarks
# print figures; they never pass or fail on them (a non-zero exit means a program broke).
#   BENCH_ENGINE_ARGS   extra options for bench-engine (e.g. "--threads 2 --reps 5")
set -u
BUILD=${BUILD:-build}
BIN=${OPTSTUDIO_BIN:-$BUILD/optstudio}
data_home=${OPTSTUDIO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/optstudio}
model=${OPTSTUDIO_DEMO_MODEL:-$data_home/models/SmolLM2-135M-Instruct.Q4_1.gguf}
status=0

if [ -x "$BUILD/tests/bench_kernels" ]; then
	echo "== kernels ($BUILD/tests/bench_kernels)"
	"$BUILD/tests/bench_kernels" || status=1
	echo
else
	echo "== kernels: $BUILD/tests/bench_kernels not built; skipped"
fi

if [ ! -x "$BIN" ]; then
	echo "bench: $BIN is missing; run 'make' first" >&2
	exit 1
fi
if [ -f "$model" ]; then
	for fmt in f32 bf16; do
		echo "== engine, $fmt weights: optstudio bench-engine $model ${BENCH_ENGINE_ARGS:-}$([ $fmt = bf16 ] && echo ' --bf16')"
		# shellcheck disable=SC2086
		"$BIN" bench-engine "$model" ${BENCH_ENGINE_ARGS:-} $([ $fmt = bf16 ] && echo --bf16) || status=1
		echo
	done
else
	echo "== engine: no demo model at $model (run 'make models' or set OPTSTUDIO_DEMO_MODEL); skipped"
fi
exit $status
