#!/usr/bin/env bash
# bench.sh: `make bench`. Builds nothing; runs the benchmark programs that exist and prints
# their tables: the kernel benchmark ($BUILD/tests/bench_kernels) when built, then
# `optstudio bench-engine` on the demo model with F32 and with BF16 weights (and BF16 without
# AMX tiles where the CPU has them). Benchmarks
# print figures; they never pass or fail on them (a non-zero exit means a program broke).
# The studio's key-to-screen latency ($BUILD/tests/bench_tui, with and without a job).
# Then the formats: the demo model quantized to INT8 and INT4 (in a scratch data home), its
# decode speed per format beside the roofline, and one concurrency sweep per format,
# compared side by side.
#   BENCH_ENGINE_ARGS   extra options for bench-engine (e.g. "--threads 2 --reps 5")
#   BENCH_SWEEP_ARGS    options for the sweeps (default: levels 1,4,16, 64 in, 32 out)
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
# the studio's key-to-screen latency, with no job and while a job keeps the worker busy
if [ -x "$BUILD/tests/bench_tui" ]; then
	echo "== studio key-to-screen latency ($BUILD/tests/bench_tui)"
	tui_model=()
	[ -f "$model" ] && tui_model=(--model "$model")
	"$BUILD/tests/bench_tui" --bin "$BIN" "${tui_model[@]}" || status=1
	echo
else
	echo "== studio latency: $BUILD/tests/bench_tui not built; skipped"
fi

if [ -f "$model" ]; then
	for fmt in f32 bf16; do
		echo "== engine, $fmt weights: optstudio bench-engine $model ${BENCH_ENGINE_ARGS:-}$([ $fmt = bf16 ] && echo ' --bf16')"
		# shellcheck disable=SC2086
		"$BIN" bench-engine "$model" ${BENCH_ENGINE_ARGS:-} $([ $fmt = bf16 ] && echo --bf16) || status=1
		echo
	done
	# where BF16 runs on AMX tiles, the same without them, for the comparison
	if "$BIN" doctor --json 2>/dev/null | grep -Eq '"kernels":[[:space:]]*"amx"'; then
		echo "== engine, bf16 weights without AMX tiles: OPTSTUDIO_CPU=avx512 optstudio bench-engine $model ${BENCH_ENGINE_ARGS:-} --bf16"
		# shellcheck disable=SC2086
		OPTSTUDIO_CPU=avx512 "$BIN" bench-engine "$model" ${BENCH_ENGINE_ARGS:-} --bf16 || status=1
		echo
	fi
else
	echo "== engine: no demo model at $model (run 'make models' or set OPTSTUDIO_DEMO_MODEL); skipped"
	exit $status
fi

# formats side by side, in a scratch home so the user's hub keeps only what they made
scratch=$(mktemp -d /tmp/optstudio-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export OPTSTUDIO_HOME=$scratch/home
mkdir -p "$OPTSTUDIO_HOME/text"
[ -f "$data_home/text/heldout.txt" ] && cp "$data_home/text/heldout.txt" "$OPTSTUDIO_HOME/text/"
sweep_args=${BENCH_SWEEP_ARGS:---concurrency 1,4,16 --input-tokens 64 --output-tokens 32 --requests 16}
"$BIN" hub import "$model" --name base >/dev/null || status=1
for m in int8 int4-rtn; do
	"$BIN" quantize base --method "$m" -o "$scratch/base-$m.gguf" >/dev/null || status=1
done
for name in base base-int8 base-int4-rtn; do
	echo "== decode speed, $name: optstudio bench-engine $name --prefill 1 ${BENCH_ENGINE_ARGS:-}"
	# shellcheck disable=SC2086
	"$BIN" bench-engine "$name" --prefill 1 ${BENCH_ENGINE_ARGS:-} | grep -E 'weights|machine|^phase|^decode' || status=1
	echo
done
for name in base base-int8 base-int4-rtn; do
	echo "== sweep, $name: optstudio bench $name $sweep_args"
	# shellcheck disable=SC2086
	"$BIN" bench "$name" $sweep_args --label "$name" | sed -n '/^ *C  reqs/,/^total throughput/p' || status=1
	echo
done
echo "== compare: optstudio compare 1 2 3"
"$BIN" compare 1 2 3 || status=1
# How far batching can carry total throughput depends on the workload: on a CPU, prefill is
# compute-bound and shares the cores with decode, so prompt-heavy requests scale less than
# chat-like ones (short prompt, long answer). Both are shown for the baseline.
chat_args=${BENCH_CHAT_ARGS:---concurrency 1,16 --input-tokens 16 --output-tokens 128 --requests 16}
echo
echo "== sweep, base, short prompts and long answers: optstudio bench base $chat_args"
# shellcheck disable=SC2086
"$BIN" bench base $chat_args --label base-chat | sed -n '/^ *C  reqs/,/^total throughput/p' || status=1
exit $status
