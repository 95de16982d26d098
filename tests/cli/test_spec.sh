#!/usr/bin/env bash
# `optstudio run --draft` and `hub recommend-draft`: the real binary on fixture models (greedy
# output with a draft identical to the plain run, stats line, usage errors, missing draft, the
# quantized self-draft built once into <home>/artifacts, reused, and rebuilt when corrupt) and,
# when present, SmolLM2 (a draft with another tokenizer is refused naming both vocabularies).
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 11 >/dev/null && "$FIX" "$TMP/small.gguf" --seed 12 --layers 1 >/dev/null ||
	{ fail "make_fixture" "cannot build the fixtures"; test_summary; exit; }

jfield() { echo "$J" | python3 -c "import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split('.'): v=v[k]
print(json.dumps(v) if isinstance(v, (list, bool)) else v)" "$1"; }

expect_rc "run --help mentions --draft" 0 "$BIN" run --help
expect_out "help lists the draft kinds" "recommended.*self:bf16|ngram"
expect_rc "--spec-k without --draft" 2 "$BIN" run "$TMP/fx.gguf" -p hi --spec-k 3
expect_rc "--spec-k out of range" 2 "$BIN" run "$TMP/fx.gguf" -p hi --draft ngram --spec-k 17
expect_rc "missing draft file exits 1" 1 "$BIN" run "$TMP/fx.gguf" -p hi --draft "$TMP/nosuch.gguf"
expect_out "missing draft is named" "draft '.*nosuch.gguf'"
expect_rc "unknown draft name exits 1" 1 "$BIN" run "$TMP/fx.gguf" -p hi --draft nosuchmodel
expect_out "unknown draft name explained" "no hub model and no file"
expect_rc "self:int8 builds the quantized copy" 0 "$BIN" run "$TMP/fx.gguf" -p hi -n 4 --draft self:int8
expect_out "self:int8 says it was built" "draft: self:int8 \(built in [0-9.]+ s, cached at .*/artifacts/draft-[0-9a-f]{16}-int8.gguf\)"
expect_rc "self:int8 second run" 0 "$BIN" run "$TMP/fx.gguf" -p hi -n 4 --draft self:int8
expect_out "self:int8 reuses the cached copy" "draft: self:int8 \(cached at .*/artifacts/draft-[0-9a-f]{16}-int8.gguf\)"
cached=$(ls "$OPTSTUDIO_HOME"/artifacts/draft-*-int8.gguf 2>/dev/null | head -n 1)
[ -n "$cached" ] && [ "$(ls "$OPTSTUDIO_HOME"/artifacts | wc -l)" = 1 ] && ok "one cached file, no leftovers" ||
	fail "one cached file, no leftovers" "$(ls -la "$OPTSTUDIO_HOME"/artifacts)"
[ -n "$cached" ] && truncate -s 2000 "$cached"
expect_rc "a corrupt cached copy is rebuilt" 0 "$BIN" run "$TMP/fx.gguf" -p hi -n 4 --draft self:int8
expect_out "the corrupt copy is not trusted" "cached copy was rejected and rebuilt"
expect_out "and built again" "draft: self:int8 \(built in"
expect_rc "unknown self kind" 1 "$BIN" run "$TMP/fx.gguf" -p hi --draft self:int3

J=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time there was" -n 24 --json 2>/dev/null); plain=$(jfield tokens)
for d in ngram self:bf16 self:int4 self:fp8 "$TMP/small.gguf" recommended; do
	for k in 1 3 auto; do
		J=$("$BIN" run "$TMP/fx.gguf" -p "Once upon a time there was" -n 24 --draft "$d" --spec-k $k --json 2>/dev/null)
		got=$(jfield tokens 2>/dev/null)
		[ -n "$plain" ] && [ "$got" = "$plain" ] && ok "greedy identical with --draft $(basename "$d") k $k" ||
			fail "greedy identical with --draft $(basename "$d") k $k" "plain $plain" "spec  $got"
	done
	ident=$(jfield speculative.identical_to_baseline 2>/dev/null)
	[ "$ident" = "true" ] && ok "json says identical ($(basename "$d"))" || fail "json says identical ($(basename "$d"))" "$J"
done
expect_rc "stats line" 0 "$BIN" run "$TMP/fx.gguf" -p "Once upon a time" -n 16 --draft ngram
expect_out "stats line has acceptance and speed-up" "acceptance [0-9.]+%, mean accepted length [0-9.]+, speed-up [0-9.]+x vs no draft"
# sampling with a draft: reproducible with a seed
a=$("$BIN" run "$TMP/fx.gguf" -p "Once" -n 16 --temp 0.8 --seed 5 --draft "$TMP/small.gguf" --no-baseline 2>/dev/null)
b=$("$BIN" run "$TMP/fx.gguf" -p "Once" -n 16 --temp 0.8 --seed 5 --draft "$TMP/small.gguf" --no-baseline 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "sampling with a draft: same seed, same text" || fail "sampling with a draft: same seed, same text" "$a" "$b"

# the hub: recommend-draft picks the smaller model with the same tokenizer
"$BIN" hub import "$TMP/fx.gguf" --name fx >/dev/null 2>&1
expect_rc "recommend-draft with no smaller model" 0 "$BIN" hub recommend-draft fx
expect_out "falls back to a quantized self-copy" "self:int8"
expect_out "says the self-copy is built and where" "built: .*/artifacts/draft-[0-9a-f]{16}-int8.gguf"
J=$("$BIN" run fx -p "Once upon a time there was" -n 8 --draft recommended --json 2>/dev/null)
[ "$(jfield speculative.draft)" = "self:int8" ] && [ "$(jfield speculative.draft_cached)" = "true" ] &&
	ok "recommended on the hub model reuses the cached self-copy" ||
	fail "recommended on the hub model reuses the cached self-copy" "$J"
"$BIN" hub import "$TMP/small.gguf" --name fx-small >/dev/null 2>&1
expect_rc "recommend-draft --json" 0 "$BIN" hub recommend-draft fx --json
J=$OUT
[ "$(jfield recommended)" = "fx-small" ] && ok "recommends the smaller hub model" || fail "recommends the smaller hub model" "$J"

if m=$(demo_model); then
	expect_rc "draft with another tokenizer exits 1" 1 "$BIN" run "$TMP/fx.gguf" -p hi --draft "$m"
	expect_out "tokenizer refusal names both vocabularies" "different tokenizer \(vocab 49152, hash [0-9a-f]{8}.*\) from the target \(vocab 409, hash [0-9a-f]{8}"
else
	skip "draft with another tokenizer (OPTSTUDIO_DEMO_MODEL not set)"
fi
test_summary
