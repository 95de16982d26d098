#!/usr/bin/env bash
# The Settings screen (tab 9) in tmux: the theme list (built-ins, a user file, a broken file
# with its parse error), the live preview seen in the pane's colours (capture-pane -e), Esc
# restoring, Enter saving the "theme" setting that a restarted studio uses, this machine's
# $/hour validated as typed and stored where 'optstudio price' reads it, 80x24, NO_COLOR.
# Every wait polls the pane with a timeout (no fixed sleeps, no timing assertions).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tui_lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
# the tab bar with its colour escapes: what a theme change shows first
bar() { tx capture-pane -p -e -t tui -S 0 -E 0 2>/dev/null; }

# wait_bar NAME OP COLOURS: polls until the tab bar's escapes are (OP "=") or are not ("!=")
# the given capture
wait_bar() {
	local i now
	for ((i = 0; i < 200; i++)); do
		now=$(bar)
		if [ "$2" = "=" ] && [ "$now" = "$3" ]; then ok "$1"; return 0; fi
		if [ "$2" = "!=" ] && [ -n "$now" ] && [ "$now" != "$3" ]; then ok "$1"; return 0; fi
		sleep 0.1
	done
	fail "$1" "tab bar colours stayed $([ "$2" = "=" ] && echo different || echo the same):" "$(bar | cat -v)"
	return 1
}
setting() {
	python3 -c 'import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute("SELECT value FROM settings WHERE key=?", (sys.argv[2],)).fetchone(); print(r[0] if r else "")' \
		"$OPTSTUDIO_HOME/hub.db" "$1"
}

"$FIX" "$TMP/a.gguf" --seed 21 --layers 3 >/dev/null || { fail "make_fixture"; test_summary; exit; }
"$BIN" hub import "$TMP/a.gguf" --name alpha-fx >/dev/null || fail "hub import"
# a user theme (dark with another background) and a broken one, in the data home
mkdir -p "$OPTSTUDIO_HOME/themes"
python3 - "$OPTSTUDIO_HOME/themes" <<'EOF' || fail "writing the user themes"
import json, sys
d = sys.argv[1]
json.dump({"name": "zest", "roles": {"background": {"fg": "#101010", "bg": "#2e7d32"},
                                     "tab_active": {"fg": "#000000", "bg": "#ffd54f"}}},
          open(d + "/zest.json", "w"))
open(d + "/cracked.json", "w").write('{"name": "cracked", "roles": {"txet": {"fg": "#ffffff"}}}')
EOF

tx new-session -d -s tui -x 100 -y 30 "env PS1='tui\$ ' OPTSTUDIO_HOME='$OPTSTUDIO_HOME' TERM=tmux-256color bash --norc --noprofile" ||
	{ fail "tmux new-session"; test_summary; exit; }
wait_for "shell up" 'tui\$'
keys "$BIN" Enter
wait_for "the studio has a Settings tab 9" ' 9 Settings '
keys 9
wait_for "9 opens Settings with the theme list" 'Theme .*Preview: dark'
wait_for "the built-in themes are listed" 'high-contrast +built in'
wait_for "a user theme file is listed" 'zest +file'
wait_for "a broken theme file is marked" 'cracked +✗ broken'
wait_for "this machine's price (not set yet)" 'price +not set'
wait_for "the CPU kernels line" 'CPU +(generic|avx2|avx512|amx) kernels'
wait_for "the CUDA line" 'CUDA +(built in|not built in)'
wait_for "the data home path" "path +$OPTSTUDIO_HOME"
wait_for "its disk use and free space" 'models .* · artifacts .* · logs .* free of '
wait_for "and how to change it" 'OPTSTUDIO_HOME='
wait_for "every role has a sample" 'good +✓ better.*bad +✗ worse'
dark=$(bar)

# live preview: the whole studio changes as the selection moves; Esc restores
keys Down
wait_for "↓ previews the next theme" 'Preview: light'
wait_bar "the preview recolours the studio at once" "!=" "$dark"
light=$(bar)
keys Escape
wait_bar "Esc restores the theme in use" "=" "$dark"
wait_for "and says so" "back to theme 'dark'"
# the broken file: its parse error shows, the studio keeps its colours
keys Down Down Down Down
wait_for "a broken theme shows why it does not load" 'this theme does not load'
wait_for "with the parse error" 'roles.txet: unknown role'
wait_bar "the studio keeps its theme meanwhile" "=" "$dark"
keys Enter
wait_for "Enter on a broken theme says why not" "keep: theme 'cracked' does not load"
keys Down
wait_for "the user theme previews" 'Preview: zest'
wait_bar "in its own colours" "!=" "$dark"
keys 1
wait_for "another tab while previewing" 'Models [0-9]'
keys 9
wait_bar "leaving Settings dropped the preview (the theme in use is back)" "=" "$dark"
keys Home Down
wait_for "back to light" 'Preview: light'
wait_bar "light's colours again" "=" "$light"
keys Enter
wait_for "Enter keeps and saves the theme" "theme 'light' saved"
[ "$(setting theme)" = light ] && ok "the theme setting is stored" ||
	fail "the theme setting is stored" "got '$(setting theme)'"
wait_for "the kept theme gets the mark" '✓ light'

# $/hour: an invalid value is refused inline, a valid one is stored
keys p
wait_for "p opens the price prompt" '\$/hour:'
keys -l abc
wait_for "a non-number is refused as typed" "✗ 'abc' is not a number"
keys Enter
wait_for "Enter with a bad value keeps the prompt open" '\$/hour:abc'
keys BSpace BSpace BSpace
keys -l -- -1
wait_for "a negative price is refused" 'cannot be negative'
keys BSpace BSpace
keys -l 0.42
wait_for "a valid price is accepted as typed" '✓ ⏎ saves it'
keys Enter
wait_for "Enter saves it" 'this machine now costs \$0.42/hour'
wait_for "the row shows it" 'price +\$0.42/hour'
OUT=$("$BIN" price --instance local --throughput 1000 --json 2>&1)
echo "$OUT" | python3 -c 'import json,sys; assert abs(json.load(sys.stdin)["usd_per_hour"] - 0.42) < 1e-9' 2>/dev/null &&
	ok "optstudio price reads the stored price" || fail "optstudio price reads the stored price" "$OUT"
python3 -c 'import sys; assert abs(float(sys.argv[1]) - 0.42) < 1e-9' "$(setting local_usd_per_hour)" 2>/dev/null &&
	ok "and so does its setting" || fail "and so does its setting" "got '$(setting local_usd_per_hour)'"

# 80x24 still draws every part
tx resize-window -t tui -x 80 -y 24
wait_for "at 80x24: the theme list and preview" 'Theme .*Preview: light'
wait_for "at 80x24: the data home" 'OPTSTUDIO_HOME='
wait_for "at 80x24: the footer" 'p \$/hour .*q quit'
tx resize-window -t tui -x 100 -y 30

# a restarted studio starts with the saved theme
keys q
wait_for "q quits" 'tui\$ *$'
keys clear Enter "$BIN" Enter
wait_for "the studio restarts" ' 9 Settings '
keys 9
wait_for "on Settings, light is in use" '✓ light'
wait_bar "it starts with the saved theme" "=" "$light"
keys q
wait_for "and quits" 'tui\$ *$'

# NO_COLOR: no colour escapes, the list still shows the selection
keys clear Enter "NO_COLOR=1 $BIN" Enter
wait_for "NO_COLOR=1 runs" ' 9 Settings '
keys 9
wait_for "NO_COLOR: Settings draws" 'Preview: light'
keys Down
wait_for "NO_COLOR: the preview follows the selection" 'Preview: high-contrast'
if tx capture-pane -p -e -t tui | grep -qE $'\e\\[[0-9;]*(38|48);5;'; then
	fail "NO_COLOR draws without colours" "$(tx capture-pane -p -e -t tui | head -n 3 | cat -v)"
else
	ok "NO_COLOR draws without colours"
fi
keys Escape q
wait_for "NO_COLOR quits" 'tui\$ *$'
[ "$(setting theme)" = light ] && ok "Esc left the saved theme alone" ||
	fail "Esc left the saved theme alone" "got '$(setting theme)'"

# a role that is not an object (found by fuzz_theme: it crashed the parser) is refused
mkdir -p "$OPTSTUDIO_HOME/themes"
printf '{"name": "odd", "roles": {"text": ["#ffffff"]}}' >"$OPTSTUDIO_HOME/themes/odd.json"
expect_rc "a theme whose role is an array is refused" 1 "$BIN" studio --theme odd
expect_out "and the message names the role" "roles.text: expected an object"
test_summary
