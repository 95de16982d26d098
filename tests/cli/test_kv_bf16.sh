#!/usr/bin/env bash
# The BF16 KV cache end to end: `quantize --kv bf16` records it (recipe JSON), `run` and
# `perplexity` work on the file, and its perplexity is near but not equal to the same
# method's file with the F32 cache (so the recorded type is what the engine used). The
# engine commands' --kv overrides the file's type both ways, and bench-engine reports it
# and counts its bytes.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 23 >/dev/null || { fail "make_fixture" "cannot build the fixture"; test_summary; exit; }

jrecipe() { python3 -c 'import json,sys; print(json.load(sys.stdin)["recipe"].get(sys.argv[1]))' "$1" 2>/dev/null; }
ppl() { python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])' 2>/dev/null; }

for i in $(seq 1 300); do printf 'line %d of the kv text, with words like meadow%d and brook.\n' $i $((i * 5 % 11)); done >"$TMP/text.txt"

expect_rc "quantize --help exits 0" 0 "$BIN" quantize --help
expect_out "help lists the bf16 KV cache" "--kv T .*bf16"
expect_rc "quantize --kv bf17" 2 "$BIN" quantize "$TMP/fx.gguf" --method int8 --kv bf17 -o "$TMP/x.gguf"
expect_out "bad kv message lists bf16" "unknown KV cache type 'bf17' \(expected bf16, fp8, int8 or f32\)"

expect_rc "quantize --kv bf16" 0 "$BIN" quantize "$TMP/fx.gguf" --method int8 --kv bf16 -o "$TMP/b.gguf" --json
got=$(printf '%s\n' "$OUT" | sed -n '/^{/,$p' | jrecipe kv)
[ "$got" = bf16 ] && ok "recipe kv bf16" || fail "recipe kv bf16" "$OUT"
expect_rc "quantize without --kv" 0 "$BIN" quantize "$TMP/fx.gguf" --method int8 -o "$TMP/f.gguf" --json
got=$(printf '%s\n' "$OUT" | sed -n '/^{/,$p' | jrecipe kv)
[ "$got" = f32 ] && ok "recipe kv f32 by default" || fail "recipe kv f32 by default" "$OUT"

expect_rc "run with a bf16 KV cache" 0 "$BIN" run "$TMP/b.gguf" -p "hello" -n 12
pb=$("$BIN" perplexity "$TMP/b.gguf" "$TMP/text.txt" --ctx 96 --chunks 3 --json 2>/dev/null | ppl)
pf=$("$BIN" perplexity "$TMP/f.gguf" "$TMP/text.txt" --ctx 96 --chunks 3 --json 2>/dev/null | ppl)
# BF16 keeps 8 significant bits of each K and V value (relative error <= 2^-9): the logits
# move by well under 1% of their scale, the perplexity by well under 1%, yet it moves
if [ -n "$pb" ] && [ -n "$pf" ] &&
	awk -v a="$pb" -v b="$pf" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d > 0 && d < 0.01 * b) }'; then
	ok "perplexity with bf16 KV near f32 KV and not equal ($pb vs $pf)"
else
	fail "perplexity with bf16 KV near f32 KV and not equal" "bf16 '$pb' f32 '$pf'"
fi

# --kv on the engine commands: the same numbers as the file's recorded type, either way
po=$("$BIN" perplexity "$TMP/f.gguf" "$TMP/text.txt" --ctx 96 --chunks 3 --json --kv bf16 2>/dev/null | ppl)
[ -n "$po" ] && [ "$po" = "$pb" ] && ok "perplexity --kv bf16 = the bf16 file ($po)" ||
	fail "perplexity --kv bf16 = the bf16 file" "override '$po' file '$pb'"
po=$("$BIN" perplexity "$TMP/b.gguf" "$TMP/text.txt" --ctx 96 --chunks 3 --json --kv f32 2>/dev/null | ppl)
[ -n "$po" ] && [ "$po" = "$pf" ] && ok "perplexity --kv f32 = the f32 file ($po)" ||
	fail "perplexity --kv f32 = the f32 file" "override '$po' file '$pf'"
for c in run perplexity bench bench-engine; do
	expect_rc "$c --help" 0 "$BIN" $c --help
	expect_out "$c help lists --kv" "--kv T .*f32\|bf16\|fp8\|int8"
done
expect_rc "bench-engine --kv bf17" 2 "$BIN" bench-engine "$TMP/f.gguf" --kv bf17
expect_out "bad --kv names the choices" "--kv wants f32, bf16, fp8 or int8, got 'bf17'"
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null; }
for t in f32 bf16 fp8; do
	j=$("$BIN" bench-engine "$TMP/f.gguf" --kv $t --prefill 16 --decode 2 --reps 1 --json 2>/dev/null)
	got=$(printf '%s' "$j" | jget kv_cache)
	[ "$got" = "$t" ] && ok "bench-engine --kv $t reports it" || fail "bench-engine --kv $t reports it" "$j"
done
expect_rc "optimize --help lists bf16" 0 "$BIN" optimize --help
expect_out "optimize help: bf16 kv cache" "--kv-cache T .*bf16"
test_summary
