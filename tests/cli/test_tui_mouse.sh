#!/usr/bin/env bash
# The studio's mouse end to end: bench_tui --test-mouse runs the real binary in a pseudo-
# terminal (TERM=xterm-256color, which reports the mouse as xterm SGR sequences) and writes
# clicks, double clicks and wheel events as a terminal would: tabs, Hub rows (the summary
# follows), a column header, footer keys ('?', '/', 'q') and a Settings theme row. Every wait
# polls the emulated screen with a timeout.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
DRIVER=$BUILD_DIR/tests/bench_tui
[ -x "$DRIVER" ] || { skip "$DRIVER not built"; test_summary; exit; }

"$FIX" "$TMP/a.gguf" --seed 31 --layers 3 >/dev/null && "$FIX" "$TMP/b.gguf" --seed 32 --layers 2 >/dev/null ||
	{ fail "make_fixture"; test_summary; exit; }
"$BIN" hub import "$TMP/a.gguf" --name alpha-fx >/dev/null && "$BIN" hub import "$TMP/b.gguf" --name beta-fx >/dev/null ||
	fail "hub import"

out=$(timeout 300 "$DRIVER" --test-mouse --bin "$BIN" 2>&1)
rc=$?
echo "$out" | sed '$d'
last=$(echo "$out" | tail -n 1)
if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
	n_passed=$((n_passed + BASH_REMATCH[1]))
	n_failed=$((n_failed + BASH_REMATCH[2]))
	[ "$rc" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || fail "bench_tui --test-mouse exits 0 when every check passes" "exit $rc"
else
	fail "bench_tui --test-mouse ends with a summary" "exit $rc" "$last"
fi
test_summary
