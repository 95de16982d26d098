#!/usr/bin/env bash
# The studio's Optimize wizard in a real terminal (tmux, 80x24, NO_COLOR): from the Hub's `o`
# to a launched job that completes, through a bad value caught as typed, Esc asking before it
# discards, the held-out text, baseline and name of the Evaluate step reaching the spec, a spec
# problem that keeps launch off, the review's command line queueing the same spec, and `q`
# asking before it drops unsaved changes. Every wait polls the pane with a timeout; nothing
# asserts on time.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tui_lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
export OPTSTUDIO_WORKER_IDLE_MS=1500

typed() { tx send-keys -t tui -l "$1"; }
# edit VALUE: Enter opens the field's prompt, Ctrl-U-free: the prompt starts with the old text,
# so erase it first (fields here are short), then type and accept
edit() { keys Enter; for _ in 1 2 3 4 5 6 7 8 9 10 11 12; do keys BSpace; done; typed "$1"; keys Enter; }
# edit_long VALUE: as edit, for a field holding a long value (a path)
edit_long() { keys Enter; keys $(printf 'BSpace %.0s' $(seq 100)); typed "$1"; keys Enter; }
spec_of() { "$BIN" jobs show "$1" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)["spec"]
print(json.dumps(json.loads(s) if isinstance(s, str) else s, sort_keys=True))'; }

"$FIX" "$TMP/a.gguf" --seed 21 --layers 3 >/dev/null && "$FIX" "$TMP/b.gguf" --seed 22 >/dev/null ||
	{ fail "make_fixture"; test_summary; exit; }
"$BIN" hub import "$TMP/a.gguf" --name alpha-fx >/dev/null && "$BIN" hub import "$TMP/b.gguf" --name beta-fx >/dev/null ||
	fail "hub import"
awk 'BEGIN { for (i = 1; i <= 400; i++) printf "passage %d: the %s ferry crossed at %d past %d.\n", i, (i % 3 ? "slow" : "late"), (i * 13) % 60, i % 12 }' >"$TMP/calib.txt"
awk 'BEGIN { for (i = 1; i <= 120; i++) printf "note %d: %s gulls over pier %d at dusk.\n", i, (i % 4 ? "grey" : "white"), (i * 7) % 31 }' >"$TMP/heldout.txt"

tx new-session -d -s tui -x 80 -y 24 "env PS1='wiz\$ ' OPTSTUDIO_HOME='$OPTSTUDIO_HOME' NO_COLOR=1 TERM=tmux-256color bash --norc --noprofile" ||
	{ fail "tmux new-session"; test_summary; exit; }
wait_for "shell up" 'wiz\$'
keys "$BIN studio" Enter
wait_for "the studio has an Optimize tab between Hub and Jobs" '1 Hub +2 Optimize +3 Jobs'
wait_for "the Hub lists the fixtures" 'Models 2'
wait_for "the Hub's footer offers o optimize" 'o optimize'

# ---- from the Hub's o: the wizard starts on that model, at the techniques -------------------
keys Home o
wait_for "o opens the wizard on the selected model" 'Techniques for alpha-fx'
wait_for "the steps are shown" '① Model ─ ② Techniques ─ ③ Options ─ ④ Draft ─ ⑤ Evaluate ─ ⑥ Review'
wait_for "each choice says what it means" 'INT4 AWQ +W4A16, groups'
wait_for "and the focused one is explained below" 'what it means'
keys Down Down Down Space
wait_for "␣ chooses INT8 SmoothQuant" '\(•\) INT8 SmoothQuant'

keys Escape
wait_for "Esc with changes asks before discarding" 'Discard this optimization setup'
keys n
wait_for "another key keeps the wizard" 'cancelled'
wait_for "with the choice intact" '\(•\) INT8 SmoothQuant'

keys Enter
wait_for "⏎ goes to the method's options" 'Options for alpha-fx · int8-smoothquant'
keys Enter
typed 1.5
wait_for "a bad alpha is caught as typed" '✗ 1.5 is out of range \(0 to 1\)'
keys Enter Right
wait_for "and next is refused with the reason" 'alpha: 1.5 is out of range'
wait_for "staying on the options" 'Options for alpha-fx'
edit 0.6
wait_gone "fixing it clears the error" 'out of range'
keys Down; edit 2
keys Down; edit 16
wait_for "seq_len is read" '16 tokens per sample'
keys Down
keys b
wait_for "b browses for the calibration text" 'Choose a file'
keys Escape
wait_gone "Esc closes the file list" 'Choose a file'
keys Enter; typed "$TMP/calib.txt"; keys Enter
wait_for "the calibration text is checked at once" '✓ text, [0-9.]+ KiB'

keys Right
wait_for "speculative decoding off: the draft step is skipped" 'Evaluation of the result'
keys Down; edit 1,2
keys Down; edit 8
keys Down; edit 4
keys Down; edit 2
wait_for "the evaluation settings are read" '2 requests per level'
keys Down Down Down
wait_for "the Evaluate step offers a held-out text" '─ held-out text ─'
edit_long "$TMP/no-such-text.txt"
wait_for "a missing held-out text is caught at once" '✗ cannot read it: No such file'
keys Right
wait_for "and next is refused with the reason" 'held-out text: cannot read it'
edit_long "$TMP/heldout.txt"
wait_for "a readable held-out text is accepted at once" '✓ text, [0-9.]+ KiB'
keys Down
wait_for "the baseline is offered" 'baseline +default: the input model, alpha-fx'
keys Space
wait_for "␣ lists the hub models that can be a baseline" 'Accuracy baseline \(same tokenizer\)'
wait_for "with the default first" '\(default\) +the input model'
wait_for "and the compatible hub model" 'beta-fx +.*params'
keys Down Enter
wait_for "⏎ takes the baseline from the hub" 'baseline +beta-fx ✓ same tokenizer'
keys Down
edit "night sq"
wait_for "the job's name is read" "✓ listed as 'night sq'"
keys Right
wait_for "the review shows the canonical JSON" 'Job spec \(canonical JSON\)'
wait_for "with the method" '"method": "int8-smoothquant"'
wait_for "and alpha" '"alpha": 0.6'
wait_for "it is ready with the plan" '✓ ready: calibrate → quantize → evaluate'
wait_for "and the same as a command line" 'optstudio optimize alpha-fx --quantize int8-smoothquant --alpha 0.6'
# the command, its lines joined at the shell continuations
cli=$(pane | sed -n '/Same from the command line:/,$p' | sed '1d' | awk '{ sub(/^ +/, ""); print; if ($0 !~ /\\$/) exit }' |
	sed 's/ \\$//' | tr '\n' ' ')
case "$cli" in optstudio\ optimize\ *--requests\ 2*) ok "the command line is complete" ;; *) fail "the command line is complete" "got: $cli" ;; esac

keys Enter
wait_for "⏎ launches and shows the Jobs screen" 'Jobs [0-9]+ '
wait_for "with a status line" 'job [0-9]+ queued'
id=$(pane | grep -oE 'job [0-9]+ queued' | head -n 1 | grep -oE '[0-9]+')
wait_for "the job reaches completed" "^│? *${id:-X} +✓ completed" 60
want='{"evaluation": {"baseline": "beta-fx", "concurrency": [1, 2], "input_tokens": 8, "output_tokens": 4, "requests_per_level": 2, "text": "'$TMP'/heldout.txt"}, "model": "alpha-fx", "name": "night sq", "quantization": {"alpha": 0.6, "calibration": {"file": "'$TMP'/calib.txt", "samples": 2, "seq_len": 16}, "method": "int8-smoothquant"}}'
got=$(spec_of "${id:-0}")
[ "$got" = "$want" ] && ok "jobs show has the chosen spec" || fail "jobs show has the chosen spec" "got:  $got" "want: $want"
st=$("$BIN" jobs show "${id:-0}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
[ "$st" = completed ] && ok "the CLI agrees it completed" || fail "the CLI agrees it completed" "state $st"

# the review's command line queues the same spec
out=$(eval "\"\$BIN\" ${cli#optstudio }" 2>&1)
id2=$(echo "$out" | grep -oE 'queued job [0-9]+' | grep -oE '[0-9]+')
if [ -n "$id2" ] && [ "$(spec_of "$id2")" = "$got" ]; then ok "the shown command queues the same spec"
else fail "the shown command queues the same spec" "$out" "$(spec_of "${id2:-0}" 2>&1)"; fi

# ---- a spec problem keeps launch off, with the reason -------------------------------------
keys 2
wait_for "the wizard starts again after a launch" 'Which model to optimize'
keys Enter
wait_for "⏎ takes the model" 'Techniques for alpha-fx'
keys Down Down Down Down Down Down Down
keys Space
wait_for "KV cache FP8 without a method is flagged" '✗ needs a method'
keys Right
wait_for "no options step without a method" 'Evaluation of the result'
keys Right
wait_for "the review lists the problem with its path" '② quantization.method: required'
keys Enter
wait_for "launch is refused with the reason" 'launch: 1 problem: quantization.method'
n_jobs=$("$BIN" jobs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)
[ "$n_jobs" = 2 ] && ok "nothing was queued" || fail "nothing was queued" "$n_jobs jobs"
keys Escape
wait_for "Esc asks before discarding" 'Discard this optimization setup'
keys y
wait_for "y discards" 'discarded'
wait_for "back at the first step" 'Which model to optimize'

# ---- FP8: the calibrated scale search is on by default and can be turned off ----------------
keys Enter
wait_for "⏎ takes the model" 'Techniques for alpha-fx'
keys Down Space
wait_for "FP8 chosen" '\(•\) FP8 E4M3 '
keys Enter
wait_for "FP8 has an options step" 'Options for alpha-fx · fp8'
wait_for "with the scale search on by default" '\[x\] Scale search'
wait_for "which brings the calibration fields" 'samples'
keys Space
wait_for "space turns it off" '\[ \] Scale search'
wait_gone "and the calibration fields go" 'samples'
wait_for "GPTQ is offered, off by default" '\[ \] GPTQ'
keys Down Space
wait_for "space turns GPTQ on" '\[x\] GPTQ'
wait_for "which brings the calibration fields back" 'samples'
keys Down Down Down
keys Enter; typed "$TMP/calib.txt"; keys Enter
wait_for "GPTQ's calibration text is checked" '✓ text, [0-9.]+ KiB'
keys Right Right
wait_for "the review's spec says so" '"scale_search": *false'
wait_for "the review's spec has gptq" '"gptq": *true'
keys Left
wait_for "back to the evaluation" 'Evaluation of the result'
keys Home Space
wait_for "evaluation off" '\[ \] Evaluate the result'
keys Right
wait_for "the review's command line says it too" 'optimize alpha-fx --quantize fp8 --no-scale-search --gptq'
keys Escape
wait_for "Esc asks before discarding" 'Discard this optimization setup'
keys y
wait_for "y discards" 'discarded'

# ---- INT4 AWQ: GPTQ starts on; turned off, the spec and the command line say so ------------
keys Enter
wait_for "⏎ takes the model" 'Techniques for alpha-fx'
keys Down Down Down Down Space
wait_for "INT4 AWQ chosen" '\(•\) INT4 AWQ'
keys Enter
wait_for "INT4 AWQ has an options step" 'Options for alpha-fx · int4-awq'
wait_for "with the scale search on by default" '\[x\] Scale search'
wait_for "and GPTQ on by default" '\[x\] GPTQ'
wait_for "which says what it does" 'rounding errors compensated'
keys Down Down Space
wait_for "space turns GPTQ off" '\[ \] GPTQ'
wait_for "and says so" 'each weight rounded on its own'
keys Down Down Down
keys Enter; typed "$TMP/calib.txt"; keys Enter
wait_for "the calibration text is checked" '✓ text, [0-9.]+ KiB'
keys Right Right
wait_for "the review's spec keeps gptq off" '"gptq": *false'
keys Left
wait_for "back to the evaluation" 'Evaluation of the result'
keys Home Space
wait_for "evaluation off" '\[ \] Evaluate the result'
keys Right
wait_for "the review shows the command line" 'optimize alpha-fx --quantize int4-awq'
cli=$(pane | sed -n '/Same from the command line:/,$p' | sed '1d' | awk '{ sub(/^ +/, ""); print; if ($0 !~ /\\$/) exit }' |
	sed 's/ \\$//' | tr '\n' ' ')
case "$cli" in *--quantize\ int4-awq*--no-gptq*) ok "the review's command line says --no-gptq" ;; *) fail "the review's command line says --no-gptq" "got: $cli" ;; esac
keys Escape
wait_for "Esc asks before discarding" 'Discard this optimization setup'
keys y
wait_for "y discards" 'discarded'

# ---- q with unsaved changes asks; any key but y keeps the studio ---------------------------
keys Enter
wait_for "⏎ takes the model again" 'Techniques for alpha-fx'
keys Down Down Down Space
wait_for "a method is chosen" '\(•\) INT8 SmoothQuant'
keys q
wait_for "q with unsaved changes asks first" 'The Optimize setup for alpha-fx is not launched\. Quit anyway\?'
keys n
wait_for "n keeps the studio open" 'cancelled'
wait_for "with the wizard as it was" '\(•\) INT8 SmoothQuant'
keys Escape
wait_for "Esc asks before discarding" 'Discard this optimization setup'
keys y
wait_for "y discards" 'discarded'

keys q
wait_for "q without changes quits to the shell at once" 'wiz\$ *$'
test_summary
