# tui_lib.sh: helpers for studio tests in a real terminal (sourced after lib.sh). tmux runs
# the real binary in a session named "tui" on a private server; every wait polls the
# captured pane with a timeout (no fixed sleeps, no timing assertions).
command -v tmux >/dev/null || { skip "tmux not installed"; test_summary; exit; }
SOCK=optstudio-$(basename "$0" .sh)-$$
trap 'tmux -L "$SOCK" kill-server 2>/dev/null; rm -rf "$TMP"' EXIT
tx() { tmux -L "$SOCK" "$@"; }
pane() { tx capture-pane -p -t tui 2>/dev/null; }
keys() { tx send-keys -t tui "$@"; }

# wait_for NAME REGEX [SECONDS]: polls the pane every 0.1 s until REGEX shows (default 20 s)
wait_for() {
	local i
	for ((i = 0; i < ${3:-20} * 10; i++)); do
		if pane | grep -qE -- "$2"; then ok "$1"; return 0; fi
		sleep 0.1
	done
	fail "$1" "pane lacks /$2/ after ${3:-20} s:" "$(pane | sed 's/^/| /')"
	return 1
}
# wait_gone NAME REGEX [SECONDS]: until REGEX no longer shows
wait_gone() {
	local i
	for ((i = 0; i < ${3:-20} * 10; i++)); do
		if ! pane | grep -qE -- "$2"; then ok "$1"; return 0; fi
		sleep 0.1
	done
	fail "$1" "pane still shows /$2/ after ${3:-20} s:" "$(pane | sed 's/^/| /')"
	return 1
}
