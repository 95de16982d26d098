#!/usr/bin/env bash
# `optstudio run`: the real binary on the fixture model (reproducibility with a seed,
# thread-count independence, -n, usage errors) and, when present, on SmolLM2 (a real-model
# sanity check: greedy chat output knows the capital of France, whatever the thread count).
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 11 >/dev/null || { fail "make_fixture" "cannot build the fixture"; test_summary; exit; }

# jfield KEY: a field of the JSON document in $J (python3 as the other CLI tests use)
jfield() { echo "$J" | python3 -c "import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(json.dumps(v) if isinstance(v, list) else v)" "$1"; }

expect_rc "run --help exits 0" 0 "$BIN" run --help
expect_out "run --help says greedy by default" "default 0 = greedy"
expect_rc "run without -p is a usage error" 2 "$BIN" run "$TMP/fx.gguf"
expect_out "missing -p is named" "missing -p"
expect_rc "run without MODEL is a usage error" 2 "$BIN" run -p hi
expect_rc "run with an unknown option" 2 "$BIN" run "$TMP/fx.gguf" -p hi --frobnicate
expect_rc "run -n not a number" 2 "$BIN" run "$TMP/fx.gguf" -p hi -n lots
expect_rc "run --temp negative" 2 "$BIN" run "$TMP/fx.gguf" -p hi --temp -1
expect_rc "run --system without --chat" 2 "$BIN" run "$TMP/fx.gguf" -p hi --system "be brief"
expect_rc "run on a missing model exits 1" 1 "$BIN" run "$TMP/nosuch.gguf" -p hi
expect_out "missing model message" "^optstudio: cannot open model '.*nosuch.gguf'"
printf 'not a gguf file at all, just text\n' >"$TMP/bad.gguf"
expect_rc "run on a non-GGUF file exits 1" 1 "$BIN" run "$TMP/bad.gguf" -p hi
expect_out "non-GGUF message names the file" "cannot open model '.*bad.gguf'"

# sampling with a fixed seed: the same text twice
a=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time" -n 20 --temp 0.9 --top-p 0.95 --seed 42 2>/dev/null); rc1=$?
b=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time" -n 20 --temp 0.9 --top-p 0.95 --seed 42 2>/dev/null); rc2=$?
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then ok "same seed, same output"
else fail "same seed, same output" "rc $rc1 $rc2" "first:  $a" "second: $b"; fi
# ... and the same token ids, and a different seed gives different ids (20 draws over a
# 409-token vocabulary at T = 0.9 coinciding would be astronomically unlikely)
J=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time" -n 20 --temp 0.9 --seed 42 --json 2>/dev/null); t1=$(jfield tokens)
J=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time" -n 20 --temp 0.9 --seed 42 --json 2>/dev/null); t2=$(jfield tokens)
J=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time" -n 20 --temp 0.9 --seed 43 --json 2>/dev/null); t3=$(jfield tokens)
[ -n "$t1" ] && [ "$t1" = "$t2" ] && ok "same seed, same tokens" || fail "same seed, same tokens" "$t1" "$t2"
[ "$t1" != "$t3" ] && ok "another seed, other tokens" || fail "another seed, other tokens" "$t1"

# greedy does not depend on the thread count
J=$("$BIN" run "$TMP/fx.gguf" -p "The quick brown fox" -n 24 --threads 1 --json 2>/dev/null); g1=$(jfield tokens)
J=$("$BIN" run "$TMP/fx.gguf" -p "The quick brown fox" -n 24 --threads 2 --json 2>/dev/null); g2=$(jfield tokens)
[ -n "$g1" ] && [ "$g1" = "$g2" ] && ok "greedy: --threads 1 == --threads 2" || fail "greedy: --threads 1 == --threads 2" "$g1" "$g2"
J=$("$BIN" run "$TMP/fx.gguf" -p "The quick brown fox" -n 24 --threads 2 --bf16 --json 2>/dev/null)
[ "$(jfield stop)" = length ] || [ "$(jfield stop)" = eog ] && ok "--bf16 runs" || fail "--bf16 runs" "$J"

# -n is respected: generated_tokens == N unless an end-of-generation token came first
for n in 1 5 17; do
	J=$("$BIN" run "$TMP/fx.gguf" -p "abc" -n $n --temp 1 --seed 5 --json 2>/dev/null)
	got=$(jfield generated_tokens); stop=$(jfield stop); nt=$(jfield tokens | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
	if { [ "$stop" = length ] && [ "$got" = $n ]; } || { [ "$stop" = eog ] && [ "$got" -lt $n ]; }; then
		[ "$nt" = "$got" ] && ok "-n $n respected ($got tokens, stop $stop)" || fail "-n $n: tokens array has $nt, generated_tokens $got"
	else fail "-n $n respected" "generated $got, stop $stop"; fi
done
J=$("$BIN" run "$TMP/fx.gguf" -p "abc" -n 3 --json 2>/dev/null)
for k in text tokens prompt_tokens generated_tokens prompt_tok_s gen_tok_s ms_per_token; do
	jfield $k >/dev/null 2>&1 || { fail "--json has $k" "$J"; continue; }
done
[ "$(jfield prompt_tokens)" -ge 1 ] && ok "--json fields present" || fail "--json fields present" "$J"

# the stats line on stderr
expect_rc "run prints a stats line" 0 "$BIN" run "$TMP/fx.gguf" -p "hello" -n 4
expect_out "stats line" "prompt [0-9]+ tokens, [0-9.]+ tok/s \| generated [0-9]+ tokens, [0-9.]+ tok/s, [0-9.]+ ms/token"
expect_rc "run --chat on the fixture's ChatML template" 0 "$BIN" run "$TMP/fx.gguf" --chat --system "terse" -p "hello" -n 4
expect_out "chat stats line" "generated [0-9]+ tokens"

# bench-engine: a smoke test of the command and its JSON shape (never of the figures)
expect_rc "bench-engine --help exits 0" 0 "$BIN" bench-engine --help
expect_rc "bench-engine without MODEL" 2 "$BIN" bench-engine
expect_rc "bench-engine --reps 0" 2 "$BIN" bench-engine "$TMP/fx.gguf" --reps 0
J=$("$BIN" bench-engine "$TMP/fx.gguf" --prefill 40 --decode 3 --reps 2 --context 8 --json 2>/dev/null)
shape=$(echo "$J" | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["results"]; print(" ".join("%s:%d" % (x["phase"], x["batch"]) for x in r), all(x["tok_s"] > 0 and x["roofline_tok_s"] > 0 for x in r), d["bandwidth_gb_s"] > 0, d["decode_b16_over_b1"] > 0)' 2>&1)
[ "$shape" = "prefill:40 decode:1 decode:4 decode:16 True True True" ] && ok "bench-engine --json: prefill, decode 1/4/16, rooflines" || fail "bench-engine --json: prefill, decode 1/4/16, rooflines" "$shape"
# each phase is judged by the higher of the probes taken just before and after it
ceil=$(echo "$J" | python3 -c '
import json, sys
d = json.load(sys.stdin)
def ok(x):
    c = max(x["ceiling_before"], x["ceiling_after"])
    if x["phase"] == "prefill":
        return c > 0
    return c > 0 and abs(x["roofline_tok_s"] - x["batch"] * c * 1e9 / x["bytes_per_step"]) <= 1e-6 * x["roofline_tok_s"]
print(all(ok(x) for x in d["results"]))' 2>&1)
[ "$ceil" = "True" ] && ok "bench-engine --json: per-phase ceilings, the higher one judging" || fail "bench-engine --json: per-phase ceilings" "$ceil"
# the prefill roofline is that of the instruction the matmuls use: f32 FMA for F32; for BF16
# the AMX tiles where the kernel set is amx (and only there), else bf16 dot products
kset=$("$BIN" doctor --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu"]["kernels"])' 2>&1)
echo "$J" >"$TMP/be_f32.json"
"$BIN" bench-engine "$TMP/fx.gguf" --bf16 --prefill 40 --decode 2 --reps 1 --context 8 --json >"$TMP/be_bf16.json" 2>/dev/null
peaks=$(python3 -c '
import json, sys
f32, bf16 = (json.load(open(p)) for p in sys.argv[2:4])
amx = sys.argv[1] == "amx"
want = "bf16 AMX tiles" if amx else ("bf16 dot product" if bf16["peak_bf16_dp_gflop_s"] > 0 else "f32 FMA")
print(f32["prefill_peak"] == "f32 FMA", bf16["prefill_peak"] == want, (bf16["peak_bf16_amx_gflop_s"] > 0) == amx,
      bf16["prefill_peak_gflop_s"] == max(bf16["peak_bf16_amx_gflop_s"], bf16["peak_bf16_dp_gflop_s"]) or not amx)' "$kset" "$TMP/be_f32.json" "$TMP/be_bf16.json" 2>&1)
[ "$peaks" = "True True True True" ] && ok "bench-engine --json: prefill peak by weight format and kernel set ($kset)" || fail "bench-engine --json: prefill peak by weight format and kernel set ($kset)" "$peaks"

# INT4 and FP8 on the amx set run prompts on AMX-BF16 tiles at three exact products an
# operation, so their roofline is a third of the tile rate; the batch-invariant twin keeps
# f32 FMAs
for q in int4-rtn fp8; do
if "$BIN" quantize "$TMP/fx.gguf" --method $q -o "$TMP/fx_q.gguf" >/dev/null 2>&1; then
	"$BIN" bench-engine "$TMP/fx_q.gguf" --prefill 40 --decode 2 --reps 1 --context 8 --json >"$TMP/be_i4.json" 2>/dev/null
	"$BIN" bench-engine "$TMP/fx_q.gguf" --batch-invariant --prefill 40 --decode 2 --reps 1 --context 8 --json >"$TMP/be_i4bi.json" 2>/dev/null
	i4peak=$(python3 -c '
import json, sys
d, bi = (json.load(open(p)) for p in sys.argv[2:4])
if sys.argv[1] == "amx":
    good = d["prefill_peak"] == "bf16 AMX tiles / 3" and abs(d["prefill_peak_gflop_s"] * 3 - d["peak_bf16_amx_gflop_s"]) <= 1e-6 * d["peak_bf16_amx_gflop_s"]
else:
    good = d["prefill_peak"] == "f32 FMA"
print(good, bi["prefill_peak"] == "f32 FMA")' "$kset" "$TMP/be_i4.json" "$TMP/be_i4bi.json" 2>&1)
	[ "$i4peak" = "True True" ] && ok "bench-engine --json: $q prefill peak ($kset), f32 FMA for the batch-invariant twin" || fail "bench-engine --json: $q prefill peak ($kset)" "$i4peak"
else
	fail "quantize the fixture to $q" "quantize failed"
fi
done

# SmolLM2: a real model knows the capital of France, at any thread count
if m=$(demo_model); then
	p1=$("$BIN" run "$m" --chat -p "What is the capital of France?" -n 24 --threads 1 2>/dev/null)
	p2=$("$BIN" run "$m" --chat -p "What is the capital of France?" -n 24 --threads 2 2>/dev/null)
	echo "$p1" | grep -q Paris && ok "SmolLM2 answers Paris" || fail "SmolLM2 answers Paris" "got: $p1"
	[ "$p1" = "$p2" ] && ok "SmolLM2 greedy: --threads 1 == --threads 2" || fail "SmolLM2 greedy: --threads 1 == --threads 2" "$p1" "$p2"
else
	skip "SmolLM2 run checks: no demo model (make models, or set OPTSTUDIO_DEMO_MODEL)"
fi
test_summary
