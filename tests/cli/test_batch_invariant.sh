#!/usr/bin/env bash
# --batch-invariant on the engine commands: listed by --help; with it, greedy speculative
# output is byte for byte the plain greedy output (an INT8 W8A8 file with a BF16 KV cache
# and n-gram drafts, the F32 fixture on a BF16 cache with its INT4 self-draft, several k);
# bench and bench-engine report it in their JSON; perplexity with it is within rounding of
# the default kernels'.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 31 >/dev/null || { fail "make_fixture" "cannot build the fixture"; test_summary; exit; }
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null; }

for c in run perplexity bench bench-engine; do
	expect_rc "$c --help" 0 "$BIN" $c --help
	expect_out "$c help lists --batch-invariant" "--batch-invariant"
done
expect_rc "quantize int8 with a bf16 KV cache" 0 "$BIN" quantize "$TMP/fx.gguf" --method int8 --kv bf16 -o "$TMP/q.gguf"
# an INT8 W8A8 target (BF16 head) on a BF16 cache with n-gram drafts; the F32 fixture on a
# BF16 cache with its own INT4 copy as the draft
for p in "the meadow and the brook" "seven" "a b c d e f g h i j k l m n o p"; do
	for t in "q.gguf|ngram --spec-k 7" "q.gguf|ngram --spec-k 16" "fx.gguf --kv bf16|self:int4 --spec-k 3"; do
		target=${t%%|*} d=${t#*|}
		plain=$("$BIN" run $TMP/$target -p "$p" -n 40 --batch-invariant 2>/dev/null | od -c)
		spec=$("$BIN" run $TMP/$target -p "$p" -n 40 --batch-invariant --draft $d --no-baseline 2>/dev/null | od -c)
		[ -n "$plain" ] && [ "$spec" = "$plain" ] && ok "greedy $target --draft $d = plain ('$p')" ||
			fail "greedy $target --draft $d = plain ('$p')" "plain: $plain / spec: $spec"
	done
done
j=$("$BIN" bench-engine "$TMP/q.gguf" --batch-invariant --prefill 16 --decode 2 --reps 1 --json 2>/dev/null)
[ "$(printf '%s' "$j" | jget batch_invariant)" = True ] && ok "bench-engine JSON: batch_invariant" ||
	fail "bench-engine JSON: batch_invariant" "$j"
j=$("$BIN" bench "$TMP/q.gguf" --batch-invariant --concurrency 1 --requests 2 --input-tokens 8 --output-tokens 4 --no-store --json 2>/dev/null)
[ "$(printf '%s' "$j" | jget batch_invariant)" = True ] && ok "bench JSON: batch_invariant" ||
	fail "bench JSON: batch_invariant" "$j"
for i in $(seq 1 120); do printf 'line %d of the text, with meadow%d and brook.\n' $i $((i * 7 % 13)); done >"$TMP/text.txt"
ppl() { python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])' 2>/dev/null; }
pi=$("$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --json --batch-invariant 2>/dev/null | ppl)
pd=$("$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --json 2>/dev/null | ppl)
if [ -n "$pi" ] && [ -n "$pd" ] && awk -v a="$pi" -v b="$pd" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-4 * b) }'; then
	ok "perplexity with batch-invariant kernels within 1e-4 of the default ($pi vs $pd)"
else
	fail "perplexity with batch-invariant kernels near the default" "'$pi' vs '$pd'"
fi
test_summary
