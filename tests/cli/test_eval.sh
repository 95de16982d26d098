#!/usr/bin/env bash
# `optstudio eval`: the real binary on fixture models: a model against itself (no
# divergence, identical perplexity to `optstudio perplexity`), against a different model
# (divergence, JSON fields), usage and file errors.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/a.gguf" --seed 21 >/dev/null && "$FIX" "$TMP/b.gguf" --seed 22 >/dev/null ||
	{ fail "make_fixture" "cannot build the fixtures"; test_summary; exit; }

jget() { echo "$J" | python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
# near A B TOL: |A - B| <= TOL
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

for i in $(seq 1 200); do printf 'line %d of the text, with words like river%d and stone.\n' $i $((i * 7 % 13)); done >"$TMP/text.txt"
printf 'too short\n' >"$TMP/short.txt"

expect_rc "eval --help exits 0" 0 "$BIN" eval --help
expect_out "help names KL" "KL\(baseline \|\| model\)"
expect_rc "eval without MODEL" 2 "$BIN" eval
expect_rc "eval without --baseline" 2 "$BIN" eval "$TMP/a.gguf" --text "$TMP/text.txt"
expect_out "missing baseline message" "missing --baseline"
expect_rc "eval without --text" 2 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/b.gguf"
expect_out "missing text message" "missing --text"
expect_rc "eval --ctx 2" 2 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/b.gguf" --text "$TMP/text.txt" --ctx 2
expect_rc "eval --bogus" 2 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/b.gguf" --text "$TMP/text.txt" --bogus
expect_rc "eval on a missing text" 1 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/b.gguf" --text "$TMP/nosuch.txt"
expect_out "missing text file message" "cannot read text '.*nosuch.txt'"
expect_rc "eval on a missing baseline" 1 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/nosuch.gguf" --text "$TMP/text.txt"
expect_out "missing baseline model message" "cannot open model"
expect_rc "eval on a too short text" 1 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/b.gguf" --text "$TMP/short.txt" --ctx 64
expect_out "short text message" "too short: [0-9]+ tokens, and one chunk needs --ctx 64"

expect_rc "eval against itself" 0 "$BIN" eval "$TMP/a.gguf" --baseline "$TMP/a.gguf" --text "$TMP/text.txt" --ctx 64 --chunks 3
expect_out "table: perplexity row" "^perplexity +[0-9.]+ +[0-9.]+ \(\+0\.00%\)"
expect_out "table: top-1 row" "^top-1 agreement +- +100\.00%"
expect_out "table: size row" "^size +[0-9.]+ KiB"

J=$("$BIN" eval "$TMP/a.gguf" --baseline "$TMP/a.gguf" --text "$TMP/text.txt" --ctx 64 --chunks 3 --json 2>/dev/null)
if [ "$(jget kl_mean)" = 0 ] && [ "$(jget max_logit_error)" = 0 ] && [ "$(jget top1_agreement_pct)" = 100 ] &&
	[ "$(jget tokens_scored)" = 93 ]; then ok "--json against itself: KL 0, 100% agreement, 93 scored"
else fail "--json against itself: KL 0, 100% agreement, 93 scored" "$J"; fi
pa=$(jget ppl_model)
P=$("$BIN" perplexity "$TMP/a.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --json 2>/dev/null |
	python3 -c "import json,sys; print(json.load(sys.stdin)['perplexity'])")
near "$pa" "$P" 1e-6 && ok "same perplexity as optstudio perplexity" || fail "same perplexity as optstudio perplexity" "$pa vs $P"

J=$("$BIN" eval "$TMP/b.gguf" --baseline "$TMP/a.gguf" --text "$TMP/text.txt" --ctx 64 --chunks 3 --json 2>/dev/null)
pb=$(jget ppl_model)
if gt "$(jget kl_mean)" 0.01 && gt "$(jget kl_p99)" "$(jget kl_mean)" && gt "$(jget max_logit_error)" 0 &&
	near "$(jget ppl_baseline)" "$pa" 1e-6 && gt "$(jget model_bytes)" 1000 &&
	[ "$(jget model_bytes)" = "$(stat -c %s "$TMP/b.gguf")" ]; then ok "--json against another model: divergence, sizes"
else fail "--json against another model: divergence, sizes" "$J"; fi
P=$("$BIN" perplexity "$TMP/b.gguf" "$TMP/text.txt" --ctx 64 --chunks 3 --json 2>/dev/null |
	python3 -c "import json,sys; print(json.load(sys.stdin)['perplexity'])")
near "$pb" "$P" 1e-6 && ok "model's perplexity as optstudio perplexity" || fail "model's perplexity as optstudio perplexity" "$pb vs $P"

# the per-token scores run over the threads, summed in token order: the same figures
scores() { python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["ppl_model"], j["kl_mean"], j["kl_p99"], j["top1_agreement_pct"], j["max_logit_error"])' 2>/dev/null; }
s1=$("$BIN" eval "$TMP/b.gguf" --baseline "$TMP/a.gguf" --text "$TMP/text.txt" --ctx 64 --chunks 3 --json --threads 1 2>/dev/null | scores)
s2=$("$BIN" eval "$TMP/b.gguf" --baseline "$TMP/a.gguf" --text "$TMP/text.txt" --ctx 64 --chunks 3 --json --threads 2 2>/dev/null | scores)
[ -n "$s1" ] && [ "$s1" = "$s2" ] && ok "1 and 2 threads: the same scores ($s1)" || fail "1 and 2 threads: the same scores" "'$s1' vs '$s2'"

test_summary
