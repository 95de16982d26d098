#!/usr/bin/env bash
# The studio in a real terminal: tmux runs the real binary on a fresh data home with fixture
# models; every wait polls the captured pane with a timeout (no fixed sleeps, no timing
# assertions). Hub list, filter, card, help, Jobs live to "completed", stop/delete with
# confirmation, liveness while a job runs, resize, too-small, NO_COLOR, clean exit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tui_lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
export OPTSTUDIO_WORKER_IDLE_MS=1500

# two fixture models with an awkward layer count, and calibration text for a slow job
"$FIX" "$TMP/a.gguf" --seed 11 --layers 3 >/dev/null && "$FIX" "$TMP/b.gguf" --seed 12 >/dev/null ||
	{ fail "make_fixture"; test_summary; exit; }
"$BIN" hub import "$TMP/a.gguf" --name alpha-fx >/dev/null && "$BIN" hub import "$TMP/b.gguf" --name beta-fx >/dev/null ||
	fail "hub import"
awk 'BEGIN { for (i = 1; i <= 30000; i++) printf "line %d of the text, with words like river%d and stone%d.\n", i, (i * 7) % 13, i % 17 }' >"$TMP/calib.txt"
layers=$("$BIN" hub show alpha-fx --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_layers"])')

# ---- without a terminal: the command line is unchanged ---------------------------------
expect_rc "no command without a terminal prints the help" 2 "$BIN"
expect_out "the help lists the studio" "studio +the studio"
expect_rc "studio without a terminal is refused" 2 "$BIN" studio </dev/null
expect_out "and says why" "needs a terminal"
expect_rc "studio --help" 0 "$BIN" studio --help
expect_rc "an unknown theme is an error" 1 "$BIN" studio --theme nosuch </dev/null
expect_out "naming the built-in themes" "no theme named 'nosuch'.*dark, light, high-contrast, mono"

# ---- in tmux ---------------------------------------------------------------------------
tx new-session -d -s tui -x 100 -y 30 "env PS1='tui\$ ' OPTSTUDIO_HOME='$OPTSTUDIO_HOME' TERM=tmux-256color bash --norc --noprofile" ||
	{ fail "tmux new-session"; test_summary; exit; }
wait_for "shell up" 'tui\$'
keys "$BIN" Enter
wait_for "no command on a terminal opens the studio (tab bar)" '1 Hub .* Jobs'
wait_for "the Hub lists the fixtures" 'Models 2'
wait_for "with name, architecture and precision" 'alpha-fx +llama .*F32'

keys /
keys -l bet
wait_for "/ filters as typed" 'Models 1 '
if pane | grep -q 'alpha-fx'; then fail "the filter hides the other model" "$(pane)"; else ok "the filter hides the other model"; fi
keys Escape
wait_for "Esc clears the filter" 'Models 2'

keys Home Enter
wait_for "Enter opens the card" 'Model card: alpha-fx'
wait_for "the card has the layer count" "layers +$layers\\b"
wait_for "the card recommends the smaller model with the same tokenizer" 'recommended +hub:beta-fx'
wait_for "and says why" "why +'beta-fx' is the hub's smallest model"
keys Escape
wait_for "Esc closes the card" 'Models 2'

keys s
wait_for "s sorts by the next column" 'ARCH▲'

keys '?'
wait_for "? opens help" 'Help: keys'
keys -l stop
wait_for "help is searchable" 'stop the selected job'
keys Escape
wait_gone "Esc closes help" 'Help: keys'

jobs_key=$(pane | head -n 1 | grep -oE '[0-9] Jobs' | cut -c1)
keys "$jobs_key"
wait_for "the Jobs tab opens" 'Jobs 0 '
wait_for "and says how to queue one" 'no jobs yet'

id=$("$BIN" optimize alpha-fx --quantize int8 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
wait_for "a job from the command line shows up" "│ +$id +. (queued|running|completed)"
wait_for "and reaches completed live" "│ +$id +✓ completed .*100%" 60
wait_for "its log shows in the pane" "$id · completed · log"

# a slow job: liveness while it runs, then stop it with confirmation
slow=$("$BIN" optimize alpha-fx --quantize int8-smoothquant --calib "$TMP/calib.txt" --samples 4000 --seq-len 64 --json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
wait_for "the slow job runs" "│ +$slow +● running" 60
keys 1
wait_for "keys answer while a job runs (to Hub)" 'Models [0-9]+ ' 30
keys "$jobs_key"
wait_for "keys answer while a job runs (back to Jobs)" 'Jobs 2 ' 30
wait_for "the tab bar counts running jobs" '● 1 job running'
keys Home x
wait_for "x asks before stopping" "Stop job $slow"
keys y
wait_for "the job stops" "│ +$slow +■ stopped" 60
keys d
wait_for "d asks before deleting" "Delete job $slow"
keys n
wait_for "another key cancels" 'cancelled'
keys d
wait_for "d asks again" "Delete job $slow"
keys y
wait_gone "the job is deleted" "│ +$slow +■" 20
keys R
wait_for "retry of a completed job says why not" "only failed or stopped jobs can be retried"

tx resize-window -t tui -x 80 -y 24
wait_for "at 80x24 the frame redraws (tab bar)" '^ optstudio +1 Hub .* Jobs'
wait_for "and the footer" 'q quit'
w=$(pane | head -n 2 | tail -n 1 | python3 -c 'import sys; print(len(sys.stdin.readline().rstrip("\n")))')
[ "$w" -eq 80 ] && ok "the box spans 80 columns" || fail "the box spans 80 columns" "width $w"
tx resize-window -t tui -x 60 -y 15
wait_for "below 80x24 a clear message" 'Terminal too small: 60×15'
tx resize-window -t tui -x 100 -y 30
wait_for "back to 100x30 redraws" '1 Hub .* Jobs'
keys C-l
wait_for "Ctrl-L redraws" '1 Hub .* Jobs'

keys q
wait_for "q quits to the shell" 'tui\$ *$'
keys "stty -a | tr ' ;' '\\n\\n' | grep -xE 'icanon|echo' | tr '\\n' ' '; echo END" Enter
wait_for "the terminal is restored (icanon, echo)" '^icanon echo END'

# NO_COLOR and the themes
keys clear Enter "NO_COLOR=1 $BIN studio" Enter
wait_for "NO_COLOR=1 runs" 'Models [0-9]+ '
keys q
wait_for "and quits" 'tui\$ *$'
for t in light high-contrast mono; do
	keys clear Enter "$BIN studio --theme $t" Enter
	wait_for "theme $t runs" 'Models [0-9]+ '
	keys q
	wait_for "theme $t quits" 'tui\$ *$'
done
test_summary
