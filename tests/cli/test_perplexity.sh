#!/usr/bin/env bash
# `optstudio perplexity`: the real binary on the fixture model (JSON fields, --chunks,
# thread-count independence, bad and short files) and, when present, on SmolLM2 over a
# held-out passage, below the bound derived in tests/unit/test_perplexity.c.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 12 >/dev/null || { fail "make_fixture" "cannot build the fixture"; test_summary; exit; }

jfield() { echo "$J" | python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

# a text of a few thousand bytes, different words so the tokens vary
for i in $(seq 1 300); do printf 'line %d of the test text, with words like river%d and stone.\n' $i $((i * 7 % 13)); done >"$TMP/text.txt"
printf 'too short\n' >"$TMP/short.txt"
: >"$TMP/empty.txt"

expect_rc "perplexity --help exits 0" 0 "$BIN" perplexity --help
expect_out "help says second half" "second half"
expect_rc "perplexity without FILE" 2 "$BIN" perplexity "$TMP/fx.gguf"
expect_rc "perplexity --ctx 1" 2 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 1
expect_rc "perplexity --chunks 0" 2 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --chunks 0
expect_rc "perplexity on a missing file" 1 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/nosuch.txt"
expect_out "missing file message" "^optstudio: cannot read text '.*nosuch.txt': No such file"
expect_rc "perplexity on a too short text" 1 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/short.txt" --ctx 64
expect_out "short text message" "too short: [0-9]+ tokens, and one chunk needs --ctx 64"
expect_rc "perplexity on an empty text" 1 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/empty.txt"
expect_out "empty text message" "is empty"
expect_rc "perplexity on a missing model" 1 "$BIN" perplexity "$TMP/nosuch.gguf" "$TMP/text.txt"
expect_out "missing model message" "cannot open model"
expect_rc "perplexity --ctx above the model's context" 2 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 100000

expect_rc "perplexity prints a figure" 0 "$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 64 --chunks 2
expect_out "figure with its error" "^perplexity: [0-9.]+ \+/- [0-9.]+ .* over 62 tokens scored"

J=$("$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --threads 1 --json 2>/dev/null)
p1=$(jfield perplexity)
if [ -n "$p1" ] && lt 1 "$p1" && [ "$(jfield chunks)" = 3 ] && [ "$(jfield tokens_scored)" = 93 ] &&
	[ "$(jfield scoring)" = second_half ]; then ok "--json: perplexity, 3 chunks, 3 x 31 scored"
else fail "--json: perplexity, 3 chunks, 3 x 31 scored" "$J"; fi
J=$("$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --threads 2 --json 2>/dev/null)
p2=$(jfield perplexity)
[ -n "$p2" ] && awk -v a="$p1" -v b="$p2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * a) }' &&
	ok "same perplexity with 1 and 2 threads" || fail "same perplexity with 1 and 2 threads" "$p1 vs $p2"
J=$("$BIN" perplexity "$TMP/fx.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --score-all --json 2>/dev/null)
[ "$(jfield tokens_scored)" = 189 ] && [ "$(jfield scoring)" = all ] && ok "--score-all scores 3 x 63" || fail "--score-all scores 3 x 63" "$J"

# SmolLM2 over a held-out passage: John and Acts (make models), else the bible program
if m=$(demo_model); then
	if t=$(demo_text); then
		cp "$t" "$TMP/heldout.txt"
	elif command -v bible >/dev/null 2>&1; then
		bible -f John1:1-Acts28:31 </dev/null | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' >"$TMP/heldout.txt"
	fi
	if [ -s "$TMP/heldout.txt" ]; then
		# a passage from a third of the way in (Acts), away from John's famous opening
		size=$(wc -c <"$TMP/heldout.txt")
		tail -c +$((size / 3)) "$TMP/heldout.txt" | head -c 8000 >"$TMP/passage.txt"
		J=$("$BIN" perplexity "$m" "$TMP/passage.txt" --ctx 256 --chunks 3 --json 2>/dev/null)
		p=$(jfield perplexity 2>/dev/null)
		# the bound, 40, is derived in tests/unit/test_perplexity.c (SMOLLM2_PPL_BOUND)
		if [ -n "$p" ] && lt 1 "$p" && lt "$p" 40; then ok "SmolLM2 held-out perplexity $p < 40"
		else fail "SmolLM2 held-out perplexity < 40" "got '$p'" "$J"; fi
	else
		skip "SmolLM2 perplexity: no held-out text (make models) and no bible program"
	fi
else
	skip "SmolLM2 perplexity: no demo model (make models, or set OPTSTUDIO_DEMO_MODEL)"
fi
test_summary
