#!/usr/bin/env bash
# `optstudio quantize`: usage errors, every round-to-nearest method on the fixture (the file
# loads and `run` generates, JSON fields, recipe and hub import with parent), the scale
# search's defaults and fallback, GPTQ on the calibrating methods (in layer ranges under
# OPTSTUDIO_HESSIAN_BUDGET_MIB), and, when present, SmolLM2 in fp8 and int4-rtn.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 21 >/dev/null || { fail "make_fixture" "cannot build the fixture"; test_summary; exit; }

jfield() { echo "$J" | python3 -c "import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(json.dumps(v) if isinstance(v,(dict,list)) else v)" "$1"; }

expect_rc "quantize --help exits 0" 0 "$BIN" quantize --help
expect_out "help lists int4-awq" "int4-awq"
expect_rc "quantize without --method" 2 "$BIN" quantize "$TMP/fx.gguf" -o "$TMP/x.gguf"
expect_out "missing method message" "missing --method"
expect_rc "quantize --method int3" 2 "$BIN" quantize "$TMP/fx.gguf" --method int3 -o "$TMP/x.gguf"
expect_out "bad method message" "unknown quantization method 'int3'"
expect_rc "quantize --group 48" 2 "$BIN" quantize "$TMP/fx.gguf" --method int4-rtn --group 48 -o "$TMP/x.gguf"
expect_rc "quantize --kv int4" 2 "$BIN" quantize "$TMP/fx.gguf" --method fp8 --kv int4 -o "$TMP/x.gguf"
expect_rc "quantize --head fp8" 2 "$BIN" quantize "$TMP/fx.gguf" --method fp8 --head fp8 -o "$TMP/x.gguf"
expect_out "bad head message" "unknown head policy 'fp8'"
for h in bf16 f32 method; do
	expect_rc "quantize --head $h" 0 "$BIN" quantize "$TMP/fx.gguf" --method int8 --head $h -o "$TMP/h-$h.gguf" --json
	J=$OUT
	if [ "$(jfield recipe 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["head"])' 2>/dev/null)" = "$h" ]; then
		ok "recipe head $h"
	else
		fail "recipe head $h" "$J"
	fi
	expect_rc "run --head $h" 0 "$BIN" run "$TMP/h-$h.gguf" -p "hello" -n 4
done
expect_rc "quantize a missing model" 1 "$BIN" quantize "$TMP/nosuch.gguf" --method fp8 -o "$TMP/x.gguf"
expect_out "missing model message" "cannot open model"
expect_rc "quantize into a missing folder" 1 "$BIN" quantize "$TMP/fx.gguf" --method fp8 -o "$TMP/no/such/x.gguf"
expect_out "unwritable output message" "cannot write"

for m in fp8 fp8-w8a8 int8 int4-rtn; do
	out="$TMP/fx-$m.gguf"
	expect_rc "quantize $m" 0 "$BIN" quantize "$TMP/fx.gguf" --method $m --kv fp8 -o "$out" --json
	J=$(printf '%s\n' "$OUT" | sed -n '/^{/,$p') # after fp8's note (no calibration text here)
	if [ "$(jfield method 2>/dev/null)" = "$m" ] && [ "$(jfield output 2>/dev/null)" = "$out" ]; then
		ok "$m json"
	else
		fail "$m json" "$J"
	fi
	expect_rc "run $m" 0 "$BIN" run "$out" -p "hello" -n 8
	expect_rc "quantize a quantized model ($m)" 1 "$BIN" quantize "$out" --method fp8 -o "$TMP/y.gguf"
	expect_out "already quantized message" "already quantized"
done

# the calibrating methods, on a small generated text
for i in $(seq 1 400); do printf 'line %d of the calibration text, with words like river%d and stone.\n' $i $((i * 7 % 13)); done >"$TMP/cal.txt"
for m in int8-smoothquant int4-awq; do
	expect_rc "quantize $m" 0 "$BIN" quantize "$TMP/fx.gguf" --method $m --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-$m.gguf"
	expect_rc "run $m" 0 "$BIN" run "$TMP/fx-$m.gguf" -p "hello" -n 8
done
# the scale search: fp8 searches by default when there is calibration text, else falls back
# to plain scales with a note; --scale-search insists; the INT8 methods refuse it
rfield() { python3 -c 'import json,sys; print(json.load(sys.stdin)["recipe"].get(sys.argv[1]))' "$1" 2>/dev/null; }
expect_rc "fp8 without calibration text" 0 "$BIN" quantize "$TMP/fx.gguf" --method fp8 -o "$TMP/fx-fp8-plain.gguf" --json
expect_out "fp8 notes the fallback" "no calibration text.*plain"
[ "$(printf '%s' "$OUT" | sed -n '/^{/,$p' | rfield scale_search)" = None ] && ok "fp8 fallback recipe has no search" || fail "fp8 fallback recipe has no search" "$OUT"
expect_rc "fp8 with calibration text" 0 "$BIN" quantize "$TMP/fx.gguf" --method fp8 --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-fp8-search.gguf" --json
J=$(printf '%s' "$OUT" | sed -n '/^{/,$p')
[ "$(printf '%s' "$J" | rfield scale_search)" = True ] && [ "$(printf '%s' "$J" | rfield samples)" = 4 ] && ok "fp8 searches by default" || fail "fp8 searches by default" "$J"
[ "$(printf '%s' "$J" | rfield gptq)" = None ] && ok "fp8 takes no gptq by default" || fail "fp8 takes no gptq by default" "$J"
if printf '%s' "$J" | python3 -c 'import json,sys; p=json.load(sys.stdin)["phase_seconds"]; sys.exit(not (p["calibrate"] > 0 and p["transform"] > 0))'; then ok "json has phase times"; else fail "json has phase times" "$J"; fi
expect_rc "run fp8 searched" 0 "$BIN" run "$TMP/fx-fp8-search.gguf" -p "hello" -n 8
expect_rc "fp8 --no-scale-search" 0 "$BIN" quantize "$TMP/fx.gguf" --method fp8 --no-scale-search --calib "$TMP/cal.txt" -o "$TMP/fx-fp8-ns.gguf" --json
[ "$(printf '%s' "$OUT" | sed -n '/^{/,$p' | rfield scale_search)" = None ] && ok "--no-scale-search records none" || fail "--no-scale-search records none" "$OUT"
expect_rc "fp8 --scale-search without calibration text" 1 "$BIN" quantize "$TMP/fx.gguf" --method fp8 --scale-search -o "$TMP/z.gguf"
expect_out "missing calibration message" "no calibration text"
expect_rc "int8 --scale-search" 2 "$BIN" quantize "$TMP/fx.gguf" --method int8 --scale-search -o "$TMP/z.gguf"
expect_out "int8 search message" "not int8"
expect_rc "int4-rtn --scale-search" 0 "$BIN" quantize "$TMP/fx.gguf" --method int4-rtn --scale-search --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-rtn-search.gguf" --json
[ "$(printf '%s' "$OUT" | sed -n '/^{/,$p' | rfield scale_search)" = True ] && ok "int4-rtn search recorded" || fail "int4-rtn search recorded" "$OUT"
expect_rc "quantize int4-awq without calibration text" 1 "$BIN" quantize "$TMP/fx.gguf" --method int4-awq --calib "$TMP/nosuch.txt" -o "$TMP/z.gguf"

# GPTQ: int4-awq (a second calibration on the scaled model), int4-rtn and fp8 take it, the
# recipe records it, the result loads and generates; the INT8 methods refuse it; it needs
# calibration text; on by default for int4-awq only; --no-gptq (also after --gptq) turns it off
expect_rc "quantize --help" 0 "$BIN" quantize --help
expect_out "help lists --gptq" "--gptq"
for m in int4-awq int4-rtn fp8; do
	expect_rc "$m --gptq" 0 "$BIN" quantize "$TMP/fx.gguf" --method $m --gptq --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-$m-gptq.gguf" --json
	J=$(printf '%s' "$OUT" | sed -n '/^{/,$p')
	[ "$(printf '%s' "$J" | rfield gptq)" = True ] && ok "$m gptq recorded" || fail "$m gptq recorded" "$J"
	if printf '%s' "$J" | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(not (0 <= j["gptq_rel_err"] <= j["gptq_rel_err_rtn"] * 1.0001 and j["phase_seconds"]["gptq"] > 0))'; then
		ok "$m gptq error reported, not above rounding's"
	else
		fail "$m gptq error reported, not above rounding's" "$J"
	fi
	grep -aq '"gptq":true' "$TMP/fx-$m-gptq.gguf" && ok "$m file recipe says gptq" || fail "$m file recipe says gptq" "$TMP/fx-$m-gptq.gguf"
	expect_rc "run $m gptq" 0 "$BIN" run "$TMP/fx-$m-gptq.gguf" -p "hello" -n 8
done
expect_rc "int4-awq --gptq text output" 0 "$BIN" quantize "$TMP/fx.gguf" --method int4-awq --gptq --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-awq-gptq2.gguf"
expect_out "gptq line in the report" "gptq: relative proxy error"
expect_out "awq line in the report" "awq: relative output error"
# int4-awq without a flag: GPTQ (with the scale search), the same file as --gptq
expect_rc "int4-awq default" 0 "$BIN" quantize "$TMP/fx.gguf" --method int4-awq --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-awq-default.gguf" --json
J=$(printf '%s' "$OUT" | sed -n '/^{/,$p')
[ "$(printf '%s' "$J" | rfield gptq)" = True ] && [ "$(printf '%s' "$J" | rfield scale_search)" = True ] && ok "int4-awq takes gptq by default" || fail "int4-awq takes gptq by default" "$J"
if printf '%s' "$J" | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(not (j["phase_seconds"]["gptq"] > 0 and "gptq_rel_err" in j))'; then ok "the default int4-awq ran GPTQ"; else fail "the default int4-awq ran GPTQ" "$J"; fi
grep -aq '"gptq":true' "$TMP/fx-awq-default.gguf" && ok "default int4-awq file recipe says gptq" || fail "default int4-awq file recipe says gptq" "$TMP/fx-awq-default.gguf"
cmp -s "$TMP/fx-awq-default.gguf" "$TMP/fx-int4-awq-gptq.gguf" && ok "default int4-awq is --gptq" || fail "default int4-awq is --gptq" "the files differ"
expect_rc "int4-awq --no-gptq" 0 "$BIN" quantize "$TMP/fx.gguf" --method int4-awq --no-gptq --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-awq-nogptq.gguf" --json
J=$(printf '%s' "$OUT" | sed -n '/^{/,$p')
[ "$(printf '%s' "$J" | rfield gptq)" = None ] && [ "$(printf '%s' "$J" | rfield scale_search)" = True ] && ok "--no-gptq records none, keeps the search" || fail "--no-gptq records none, keeps the search" "$J"
if printf '%s' "$J" | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit("gptq" in j["phase_seconds"] or "gptq_rel_err" in j)'; then ok "--no-gptq runs no GPTQ"; else fail "--no-gptq runs no GPTQ" "$J"; fi
grep -aq '"gptq"' "$TMP/fx-awq-nogptq.gguf" && fail "--no-gptq file recipe has no gptq" "$TMP/fx-awq-nogptq.gguf" || ok "--no-gptq file recipe has no gptq"
cmp -s "$TMP/fx-awq-nogptq.gguf" "$TMP/fx-awq-default.gguf" && fail "gptq changes the codes" "same file" || ok "gptq changes the codes"
expect_rc "int4-awq --gptq --no-gptq" 0 "$BIN" quantize "$TMP/fx.gguf" --method int4-awq --gptq --no-gptq --calib "$TMP/cal.txt" --samples 4 --seq-len 64 -o "$TMP/fx-awq-nogptq2.gguf" --json
[ "$(printf '%s' "$OUT" | sed -n '/^{/,$p' | rfield gptq)" = None ] && ok "--gptq --no-gptq records none" || fail "--gptq --no-gptq records none" "$OUT"
expect_rc "int4-rtn default with calibration text" 0 "$BIN" quantize "$TMP/fx.gguf" --method int4-rtn --calib "$TMP/cal.txt" -o "$TMP/fx-rtn-default.gguf" --json
[ "$(printf '%s' "$OUT" | sed -n '/^{/,$p' | rfield gptq)" = None ] && ok "int4-rtn takes no gptq by default" || fail "int4-rtn takes no gptq by default" "$OUT"
expect_rc "int8 --no-gptq" 0 "$BIN" quantize "$TMP/fx.gguf" --method int8 --no-gptq -o "$TMP/fx-int8-nogptq.gguf"
expect_rc "int8 --gptq" 2 "$BIN" quantize "$TMP/fx.gguf" --method int8 --gptq -o "$TMP/z.gguf"
expect_out "int8 gptq message" "gptq is for int4-awq, int4-rtn and fp8, not int8"
expect_rc "fp8-w8a8 --gptq" 2 "$BIN" quantize "$TMP/fx.gguf" --method fp8-w8a8 --gptq -o "$TMP/z.gguf"
expect_rc "int4-rtn --gptq without calibration text" 1 "$BIN" quantize "$TMP/fx.gguf" --method int4-rtn --gptq -o "$TMP/z.gguf"
expect_out "gptq missing calibration message" "no calibration text"

# GPTQ's Hessians over OPTSTUDIO_HESSIAN_BUDGET_MIB: layer ranges (here 1.75 MiB a layer, 3
# layers), each range calibrated after the ones before it are quantized; one layer over it
# is refused naming --no-gptq; a malformed value is a usage error
"$FIX" "$TMP/wide.gguf" --seed 22 --layers 3 --dim 256 --heads 4 --kv-heads 2 --ffn 512 >/dev/null || fail "make_fixture wide" "cannot build the fixture"
gq() { "$BIN" quantize "$TMP/wide.gguf" --method int4-rtn --gptq --group 32 --calib "$TMP/cal.txt" --samples 3 --seq-len 48 "$@"; }
expect_rc "gptq in one pass" 0 gq -o "$TMP/wide-1.gguf" --json
J=$(printf '%s' "$OUT" | sed -n '/^{/,$p')
[ "$(jfield gptq_passes)" = 1 ] && ok "everything fits: one pass" || fail "everything fits: one pass" "$J"
for b in 4:2 2:3; do
	export OPTSTUDIO_HESSIAN_BUDGET_MIB=${b%:*}
	expect_rc "gptq under ${b%:*} MiB" 0 gq -o "$TMP/wide-${b#*:}.gguf" --json
	J=$(printf '%s' "$OUT" | sed -n '/^{/,$p')
	[ "$(jfield gptq_passes)" = "${b#*:}" ] && ok "${b%:*} MiB: ${b#*:} passes" || fail "${b%:*} MiB: ${b#*:} passes" "$J"
	expect_rc "run the ${b#*:}-pass result" 0 "$BIN" run "$TMP/wide-${b#*:}.gguf" -p "hello" -n 4
done
cmp -s "$TMP/wide-1.gguf" "$TMP/wide-3.gguf" && fail "later ranges see quantized layers" "same file as one pass" || ok "later ranges see quantized layers"
expect_rc "gptq text report names the ranges" 0 gq -o "$TMP/wide-3b.gguf"
expect_out "ranges in the report" "in 3 layer ranges"
export OPTSTUDIO_HESSIAN_BUDGET_MIB=1
expect_rc "one layer over the budget" 1 gq -o "$TMP/z.gguf"
expect_out "over-budget message" "MiB.*budget.*--no-gptq"
[ -e "$TMP/z.gguf" ] && fail "nothing written when refused" "$TMP/z.gguf" || ok "nothing written when refused"
expect_rc "over the budget without gptq" 0 "$BIN" quantize "$TMP/wide.gguf" --method int4-rtn --group 32 -o "$TMP/wide-nog.gguf"
export OPTSTUDIO_HESSIAN_BUDGET_MIB=lots
expect_rc "malformed budget" 2 gq -o "$TMP/z.gguf"
expect_out "malformed budget message" "OPTSTUDIO_HESSIAN_BUDGET_MIB.*'lots'"
unset OPTSTUDIO_HESSIAN_BUDGET_MIB

# a hub model: the result is imported as <parent>-<method>, with its parent and recipe
expect_rc "hub import fixture" 0 "$BIN" hub import "$TMP/fx.gguf" --name fx
expect_rc "quantize hub model" 0 "$BIN" quantize fx --method int4-rtn --group 32
expect_out "imported message" "imported into the hub as 'fx-int4-rtn'"
if [ -f "$OPTSTUDIO_HOME/models/fx-int4-rtn.gguf" ]; then ok "default output in models/"; else fail "default output in models/" "$(ls "$OPTSTUDIO_HOME/models" 2>&1)"; fi
expect_rc "hub show quantized" 0 "$BIN" hub show fx-int4-rtn --json
expect_out "hub row has a parent" "\"parent_model_id\":[[:space:]]*[1-9]"
expect_out "hub row precision is INT4" "\"precision\":[[:space:]]*\"OS_U4\""
if command -v sqlite3 >/dev/null; then
	R=$(sqlite3 "$OPTSTUDIO_HOME/hub.db" "select recipe from models where name = 'fx-int4-rtn'")
	case $R in *'"method":"int4-rtn"'*'"group":32'*) ok "hub row has the recipe" ;; *) fail "hub row has the recipe" "$R" ;; esac
fi
expect_rc "run hub quantized" 0 "$BIN" run fx-int4-rtn -p "hi" -n 4

if M=$(demo_model); then
	for m in fp8 int4-rtn; do
		out="$TMP/smol-$m.gguf"
		expect_rc "SmolLM2 quantize $m" 0 "$BIN" quantize "$M" --method $m -o "$out"
		expect_rc "SmolLM2 run $m" 0 "$BIN" run "$out" -p "The capital of France is" -n 12
		if [ "$(printf '%s' "$OUT" | head -c 400 | tr -d '[:space:]' | wc -c)" -gt 5 ]; then
			ok "SmolLM2 $m generates text"
		else
			fail "SmolLM2 $m generates text" "$OUT"
		fi
	done
else
	skip "SmolLM2 quantize (OPTSTUDIO_DEMO_MODEL not set)"
fi
test_summary
