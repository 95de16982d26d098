#!/usr/bin/env bash
# Hub CLI integration: the real binary on the fixture model and on the real SmolLM2 file.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
HFFIX=$BUILD_DIR/tests/make_hf_fixture

"$FIX" "$TMP/tiny.gguf" --seed 7 --type q4_1 >/dev/null
"$FIX" "$TMP/tiny-big.gguf" --seed 8 --type f32 --layers 3 >/dev/null

expect_rc "hub --help exits 0" 0 "$BIN" hub --help
expect_out "hub --help lists import" "import PATH"
expect_rc "hub without subcommand is a usage error" 2 "$BIN" hub
expect_rc "hub unknown subcommand is a usage error" 2 "$BIN" hub frobnicate
expect_rc "hub list --bogus is a usage error" 2 "$BIN" hub list --bogus
expect_rc "empty hub lists fine" 0 "$BIN" hub list
expect_out "empty hub says how to add" "hub import"

expect_rc "import fixture" 0 "$BIN" hub import "$TMP/tiny.gguf" --name tiny
expect_out "import names the model" "imported tiny"
expect_rc "import again is idempotent" 0 "$BIN" hub import "$TMP/tiny.gguf" --name tiny
expect_out "import again says already" "already in the hub"
expect_rc "list --json" 0 "$BIN" hub list --json
n=$(echo "$OUT" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 1 ] && ok "one model after two imports" || fail "one model after two imports" "got $n"

expect_rc "show --json" 0 "$BIN" hub show tiny --json
shape=$(echo "$OUT" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["n_layers"], m["hidden_size"], m["n_heads"], m["n_kv_heads"], m["precision"], m["tokenizer_kind"])')
[ "$shape" = "2 64 4 2 Q4_1 gpt2-bpe" ] && ok "fixture shape read from file" || fail "fixture shape read from file" "got '$shape'"
sha=$(sha256sum "$TMP/tiny.gguf" | cut -d' ' -f1)
echo "$OUT" | grep -q "\"sha256\":	\"$sha\"" && ok "sha256 matches sha256sum" || fail "sha256 matches sha256sum" "$(echo "$OUT" | grep sha256)"

expect_rc "import a second model of the same vocabulary" 0 "$BIN" hub import "$TMP/tiny-big.gguf"
expect_rc "drafts lists the other model" 0 "$BIN" hub drafts tiny-big
expect_out "drafts names tiny" "^tiny "
"$FIX" "$TMP/other.gguf" --seed 9 --type q8_0 >/dev/null
expect_rc "name clash from another file" 1 "$BIN" hub import "$TMP/other.gguf" --name tiny
expect_out "name clash message names the holder" "tiny"
expect_rc "show missing model" 1 "$BIN" hub show nosuch
expect_out "missing model message" "no model named 'nosuch'"

# bad files: a clear message naming the file and nothing written to the hub
printf 'NOPE0000000000000000000000' >"$TMP/bad-magic.gguf"
expect_rc "bad magic refused" 1 "$BIN" hub import "$TMP/bad-magic.gguf"
expect_out "bad magic message names the file" "bad-magic.gguf"
head -c 3000 "$TMP/tiny.gguf" >"$TMP/truncated.gguf"
expect_rc "truncated file refused" 1 "$BIN" hub import "$TMP/truncated.gguf"
expect_out "truncated file message" "truncated.gguf"
mkdir -p "$TMP/not-a-model"
expect_rc "folder without config.json refused" 1 "$BIN" hub import "$TMP/not-a-model"
expect_out "folder message names config.json" "config.json"
expect_rc "missing path refused" 1 "$BIN" hub import "$TMP/nope.gguf"
"$BIN" hub list --json >"$TMP/list.json"
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$TMP/list.json")
[ "$n" = 2 ] && ok "bad imports wrote nothing" || fail "bad imports wrote nothing" "got $n models"

if [ -x "$HFFIX" ]; then
	"$HFFIX" "$TMP/hf-model" --seed 3 >/dev/null
	expect_rc "import HF folder" 0 "$BIN" hub import "$TMP/hf-model" --name hf-tiny --json
	echo "$OUT" | grep -q '"format":	"safetensors"' && ok "HF folder recorded as safetensors" || fail "HF folder recorded as safetensors" "$OUT"
fi

expect_rc "rm keeps the user's file" 0 "$BIN" hub rm tiny
[ -f "$TMP/tiny.gguf" ] && ok "file still there after rm" || fail "file still there after rm"
expect_rc "rm twice fails" 1 "$BIN" hub rm tiny

# the real model: shape read from the file, not hard-coded in the binary
if model=$(demo_model); then
	expect_rc "import SmolLM2" 0 "$BIN" hub import "$model" --name SmolLM2-135M-Instruct
	expect_rc "show SmolLM2" 0 "$BIN" hub show SmolLM2-135M-Instruct --json
	shape=$(echo "$OUT" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["architecture"], m["n_layers"], m["hidden_size"], m["n_heads"], m["n_kv_heads"], m["vocab_size"], m["precision"])')
	[ "$shape" = "llama 30 576 9 3 49152 Q4_1" ] && ok "SmolLM2 shape" || fail "SmolLM2 shape" "got '$shape'"
	expect_rc "show SmolLM2 human" 0 "$BIN" hub show SmolLM2-135M-Instruct
	expect_out "card shows layers" "layers +30"
else
	skip "SmolLM2 checks: demo model not fetched (make models)"
fi

# a fresh home with the demo model present seeds the hub on first run
if model=$(demo_model); then
	mkdir -p "$TMP/seed/models" && ln -s "$model" "$TMP/seed/models/SmolLM2-135M-Instruct.Q4_1.gguf"
	OUT=$(OPTSTUDIO_HOME=$TMP/seed "$BIN" hub list 2>&1)
	expect_out "fresh home seeded with the demo model" "^SmolLM2-135M-Instruct "
	OPTSTUDIO_HOME=$TMP/seed "$BIN" hub rm SmolLM2-135M-Instruct >/dev/null
	OUT=$(OPTSTUDIO_HOME=$TMP/seed "$BIN" hub list 2>&1)
	echo "$OUT" | grep -q SmolLM2 && fail "a removed demo model stays removed" "$OUT" || ok "a removed demo model stays removed"
fi

# a read-only or unusable home is a clear message
OUT=$(OPTSTUDIO_HOME=/proc/optstudio-nope "$BIN" hub list 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$OUT" | grep -q "data home" && ok "unusable home is a clear error" || fail "unusable home is a clear error" "rc $rc: $OUT"
# a corrupt hub.db
mkdir -p "$TMP/corrupt" && head -c 8192 /dev/urandom >"$TMP/corrupt/hub.db"
OUT=$(OPTSTUDIO_HOME=$TMP/corrupt "$BIN" hub list 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$OUT" | grep -q "hub.db" && ok "corrupt hub.db is a clear error" || fail "corrupt hub.db is a clear error" "rc $rc: $OUT"
test_summary
