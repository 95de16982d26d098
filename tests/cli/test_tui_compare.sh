#!/usr/bin/env bash
# The studio's Results and Compare screens in a real terminal: tmux runs the real binary on a
# fresh data home with real `optstudio bench` runs of the fixture model; every wait polls the
# captured pane (no fixed sleeps, no timing assertions). Filter, marks (and the refused 5th),
# Compare's figures checked against `optstudio compare --format json`, baseline change, CSV
# and Markdown export checked against the command line's CSV (the prompt's Esc cancels),
# resize to 80x24, help, NO_COLOR, clean exit; then a run made by a job: its accuracy figures
# (KL, top-1 agreement, acceptance) in the Results detail pane, and its size and load time
# once in Compare.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tui_lib.sh"
FIX=$BUILD_DIR/tests/make_fixture

# wait_file NAME PATH [SECONDS]: until PATH exists
wait_file() {
	local i
	for ((i = 0; i < ${3:-20} * 10; i++)); do
		if [ -s "$2" ]; then ok "$1"; return 0; fi
		sleep 0.1
	done
	fail "$1" "no file $2 after ${3:-20} s" "$(ls "$(dirname "$2")" 2>&1)"
	return 1
}

# check_rows NAME JSON ROW...: every named row of the Compare table on the pane shows the
# figures of `optstudio compare --format json` (JSON, a file) as the screen formats them:
# the value of each run, then for a run other than the baseline its delta and ✓/✗. A ROW is
# "total tok/s", "price" (shown as $/1M @C), "peak total tok/s" or "price at peak".
check_rows() {
	local name=$1 json=$2
	shift 2
	local got
	got=$(pane | python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
want_rows = sys.argv[2:]
pane = sys.stdin.read().splitlines()
def num(v):
    if v is None: return "—"
    a = abs(v)
    if a >= 1000: return "%.0f" % v
    if a >= 10: return "%.1f" % v
    if a >= 0.01 or v == 0: return "%.3f" % v
    return "%.3g" % v
def delta(x):
    if x >= 999.5: return "×%.0f" % (1 + x / 100)
    if abs(x) < 9.95: return "%+.1f%%" % x
    return "%+.0f%%" % x
bad, n = [], 0
for m in d["metrics"]:
    if m["metric"] not in want_rows: continue
    if m["kind"] == "level":
        label = ("$/1M" if m["metric"] == "price" else m["metric"]) + " @%d" % m["concurrency"]
    else:
        label = "$/1M at peak" if m["metric"] == "price at peak" else m["metric"]
    want = []
    for v, dl, vd in zip(m["values"], m["deltas_pct"], m["verdicts"]):
        want.append(num(v))
        if vd in ("better", "worse"):
            want.append(delta(dl) + ("✓" if vd == "better" else "✗"))
        elif vd == "same":
            want.append("=")
    lines = [l.strip("│ ") for l in pane if l.strip("│ ").startswith(label + "  ")]
    if not lines:
        bad.append("no row %r on the pane" % label); continue
    toks = lines[0][len(label):].replace("│", " ").split()
    n += 1
    if toks != want: bad.append("%s: pane %s, want %s" % (label, toks, want))
print("ok %d" % n if not bad else "; ".join(bad))
' "$json" "$@" 2>&1)
	case $got in
	"ok 0" | "") fail "$name" "no row checked: $got" "$(pane | sed 's/^/| /')" ;;
	ok*) ok "$name ($got rows)" ;;
	*) fail "$name" "$got" "$(pane | sed 's/^/| /')" ;;
	esac
}

# ---- a data home with five real runs of the fixture model --------------------------------
"$FIX" "$TMP/fx.gguf" --seed 31 >/dev/null || { fail "make_fixture"; test_summary; exit; }
"$BIN" hub import "$TMP/fx.gguf" --name fx >/dev/null || fail "hub import"
"$BIN" price --set-local 0.75 >/dev/null || fail "price --set-local"
run_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])'; }
A=$("$BIN" bench fx --concurrency 1,3 --input-tokens 12 --output-tokens 5 --requests 5 --warmup 1 \
	--seed 7 --label alpha-base --json 2>/dev/null | run_id)
B=$("$BIN" bench "$TMP/fx.gguf" --concurrency 1,3,4 --input-tokens 12 --output-tokens 5 --requests 4 \
	--warmup 0 --whole-prefill --label alpha-other --json 2>/dev/null | run_id)
others=()
for s in 3 5 9; do
	others+=("$("$BIN" bench fx --concurrency 2 --input-tokens 7 --output-tokens 3 --requests 3 --warmup 0 \
		--seed "$s" --label "zeta-$s" --json 2>/dev/null | run_id)")
done
[ -n "$A" ] && [ -n "$B" ] && [ "${#others[@]}" -eq 3 ] && [ -n "${others[2]}" ] && ok "five bench runs stored" ||
	{ fail "five bench runs stored" "A=$A B=$B others=${others[*]}"; test_summary; exit; }
"$BIN" compare "$A" "$B" --format json >"$TMP/ab.json" 2>&1 && ok "compare A B --format json" || fail "compare A B --format json" "$(cat "$TMP/ab.json")"
"$BIN" compare "$A" "$B" --baseline "$B" --format json >"$TMP/ba.json" 2>&1 || fail "compare --baseline B"
"$BIN" compare "$A" "$B" --baseline "$B" --format csv >"$TMP/ba.csv" 2>&1 || fail "compare --baseline B --format csv"

# ---- in tmux ---------------------------------------------------------------------------
tx new-session -d -s tui -x 100 -y 30 "env PS1='tui\$ ' OPTSTUDIO_HOME='$OPTSTUDIO_HOME' TERM=tmux-256color bash --norc --noprofile" ||
	{ fail "tmux new-session"; test_summary; exit; }
wait_for "shell up" 'tui\$'
keys "$BIN studio" Enter
wait_for "the studio opens with Results and Compare tabs" '4 Results +5 Compare'

keys 5
wait_for "Compare with nothing marked says so" 'Nothing to compare yet'
wait_for "and how to get there" 'mark 2 to 4 runs with ␣, then press c'
keys e
wait_for "export with nothing to compare says why not" 'nothing to compare: mark 2 to 4 runs'

keys 4
wait_for "Results lists the five runs" 'Runs 5 '
wait_for "with recipe, instance and best throughput at its level" "│ · +$A .*fx +alpha-base +local +[0-9.]+ @[13] "
wait_for "the detail pane has the per-level table" 'TTFT p50 +p99 +ITL p50'
wait_for "and a sparkline of throughput over C" 'tok/s over C [▁▂▃▄▅▆▇█]+'
keys c
wait_for "c with nothing marked says why not" 'mark 2 to 4 runs with ␣ first \(0 marked\)'

# marks: four, and a fifth refused
keys Home ' ' Down ' ' Down ' ' Down ' '
wait_for "four runs marked" '4 marked'
keys Down ' '
wait_for "a fifth mark says why not" 'at most 4 runs can be compared'
keys u
wait_for "u unmarks every run" 'no run marked'

# the filter
keys /
keys -l alpha
wait_for "/ filters as typed" 'Runs 2 .*/ alpha · 2 of 5'
if pane | grep -q 'zeta-'; then fail "the filter hides the other runs" "$(pane)"; else ok "the filter hides the other runs"; fi
keys Enter
# A first: it is the baseline
keys End ' ' Home ' '
wait_for "two runs marked" '2 marked'
keys c
wait_for "c opens Compare on the marked runs, the first as baseline" "Compare 2 runs · baseline #$A"
wait_for "one column per run" "◆#$A alpha-base +#$B alpha-other"

# the figures are the command line's
keys /
keys -l 'total tok/s'
wait_for "the row filter" '/ total tok/s · [0-9]+ of [0-9]+'
check_rows "total throughput per level and at the peak, with deltas" "$TMP/ab.json" "total tok/s" "peak total tok/s"
keys Escape /
keys -l '$/1M'
wait_for "the price rows" '/ \$/1M · [0-9]+ of'
check_rows "blended \$/1M per level and at the peak, with deltas" "$TMP/ab.json" "price" "price at peak"
wait_for "charts of throughput, latency and price" 'peak tok/s .*latency p50 @1 ms .*\$/1M at peak'
keys Enter

keys b
wait_for "b makes the other run the baseline" "Compare 2 runs · baseline #$B"
check_rows "deltas follow the new baseline" "$TMP/ba.json" "price" "price at peak"

# export
keys e
wait_for "e asks for the format" 'export as csv or md:csv'
wait_for "the export prompt says Esc cancels" '⏎ ok · Esc cancel'
keys Escape
wait_for "Esc cancels the export" 'export cancelled'
[ -e "$OPTSTUDIO_HOME/exports/compare-$A-$B.csv" ] && fail "nothing is exported after Esc" || ok "nothing is exported after Esc"
keys e
wait_for "e asks again" 'export as csv or md:csv'
keys Enter
csv=$OPTSTUDIO_HOME/exports/compare-$A-$B.csv
wait_for "the status line says where the CSV went" "exported to .*compare-$A-$B.csv"
wait_file "the CSV file is written" "$csv"
missing=$(grep -cvxF -f "$csv" "$TMP/ba.csv")
[ "$missing" = 0 ] && ok "every line of 'compare --baseline B --format csv' is in the export" ||
	fail "every line of the command line's CSV is in the export" "$(grep -vxF -f "$csv" "$TMP/ba.csv" | head -3)"
grep -qE "^TTFT p99,3,ms,lower," "$csv" && grep -qE "^ITL p99,1,ms,lower," "$csv" &&
	grep -qE "^model size,,MiB,lower," "$csv" && grep -qE "^load time,,s,lower," "$csv" &&
	ok "the export has the studio's extra rows (p99s, size, load time)" || fail "the export has the extra rows" "$(head -5 "$csv")"
keys e BSpace BSpace BSpace
keys -l md
keys Enter
wait_file "e, md: the Markdown file is written" "$OPTSTUDIO_HOME/exports/compare-$A-$B.md"
grep -q "^| run | $A | $B (baseline) |" "$OPTSTUDIO_HOME/exports/compare-$A-$B.md" &&
	ok "the Markdown table names the baseline" || fail "the Markdown table names the baseline" "$(head -3 "$OPTSTUDIO_HOME/exports/compare-$A-$B.md")"
keys e BSpace BSpace BSpace
keys -l xml
keys Enter
wait_for "an unknown export format says what it wants" "export wants csv or md, got 'xml'"

# 80x24
tx resize-window -t tui -x 80 -y 24
wait_for "at 80x24 Compare redraws" "Compare 2 runs · baseline #$B"
wait_for "with the footer" 'q quit'
w=$(pane | head -n 2 | tail -n 1 | python3 -c 'import sys; print(len(sys.stdin.readline().rstrip("\n")))')
[ "$w" -eq 80 ] && ok "the box spans 80 columns" || fail "the box spans 80 columns" "width $w"
check_rows "the figures still read at 80x24" "$TMP/ba.json" "price at peak"
keys '?'
wait_for "? opens help" 'Help: keys'
keys -l baseline
wait_for "help, searched, lists the screen's keys" 'make the next run the baseline'
keys Escape
wait_gone "Esc closes help" 'Help: keys'
keys m
wait_for "m goes back to Results, filter and marks kept" 'Runs 2 .*2 marked · / alpha'
keys Escape
wait_for "Esc clears the Results filter" 'Runs 5 '
keys s
wait_for "s sorts by the next column" 'WHEN[▲▼]'
tx resize-window -t tui -x 100 -y 30
wait_for "back to 100x30 redraws" 'Runs 5 '

keys q
wait_for "q quits to the shell" 'tui\$ *$'
keys "stty -a | tr ' ;' '\\n\\n' | grep -xE 'icanon|echo' | tr '\\n' ' '; echo END" Enter
wait_for "the terminal is restored (icanon, echo)" '^icanon echo END'

# NO_COLOR: better and worse still read, by glyph
keys clear Enter "NO_COLOR=1 $BIN studio" Enter
wait_for "NO_COLOR=1 runs" '4 Results'
keys 4 /
keys -l alpha
keys Enter End ' ' Home ' ' c
wait_for "NO_COLOR: Compare opens" "Compare 2 runs · baseline #$A"
wait_for "NO_COLOR: deltas carry ✓ or ✗" '[0-9]%?[✓✗]'
keys q
wait_for "and quits" 'tui\$ *$'

# ---- a run made by a job: accuracy against the input model, speculative acceptance --------
awk 'BEGIN { for (i = 1; i <= 150; i++) printf "line %d: %s kites drift over field %d.\n", i, (i % 5 ? "red" : "blue"), (i * 11) % 23 }' >"$TMP/heldout.txt"
export OPTSTUDIO_WORKER_IDLE_MS=1500
J=$("$BIN" optimize fx --quantize int8 --draft ngram --spec-k 2 --eval-concurrency 1 --input-tokens 8 \
	--output-tokens 4 --requests 2 --heldout "$TMP/heldout.txt" --name jobrun --json 2>&1 |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)
state=
for ((i = 0; i < 1200; i++)); do
	state=$("$BIN" jobs show "${J:-0}" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' 2>/dev/null)
	case $state in completed | failed | stopped) break ;; esac
	sleep 0.1
done
[ "$state" = completed ] && ok "an optimize job with evaluation completes" ||
	{ fail "an optimize job with evaluation completes" "job ${J:-?}: $state" "$("$BIN" jobs log "${J:-0}" 2>&1 | tail -5)"; test_summary; exit; }
R=$("$BIN" jobs show "$J" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["result_run_ids"][0])')
"$BIN" compare "$R" "$A" --format json >"$TMP/ra.json" || fail "compare R A --format json"
# the detail pane's accuracy line as the stored figures make it
acc=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = {m["metric"]: m["values"][0] for m in d["metrics"] if m["kind"] == "accuracy"}
def num(x):
    a = abs(x)
    if a >= 1000: return "%.0f" % x
    if a >= 10: return "%.1f" % x
    if a >= 0.01 or x == 0: return "%.3f" % x
    return "%.3g" % x
out = []
for key, name, pct in (("perplexity", "ppl", 0), ("kl_divergence", "KL", 0), ("kl_divergence_p99", "KL p99", 0),
                       ("top1_agreement", "top-1", 1), ("acceptance_rate", "acceptance", 1)):
    if v.get(key) is not None:
        out.append("%s %s" % (name, "%.1f%%" % (v[key] * 100) if pct else num(v[key])))
print(" · ".join(out))' "$TMP/ra.json")
case $acc in *KL*top-1*acceptance*) ok "the job stored KL, top-1 agreement and acceptance" ;;
*) fail "the job stored KL, top-1 agreement and acceptance" "$acc" ;; esac
keys clear Enter "$BIN studio" Enter
wait_for "the studio opens again" '4 Results'
keys 4 /
keys -l jobrun
keys Enter
wait_for "Results lists the job's run" "│ · +$R .*jobrun"
wait_for "its detail pane has every accuracy figure it has" "accuracy $(printf '%s' "$acc" | sed 's/[.()%]/\\&/g')"
keys Escape Home
keys /
keys -l "$R"
keys Enter ' ' Escape
keys /
keys -l alpha-base
keys Enter ' ' c
wait_for "Compare opens on the job's run and a bench run" "Compare 2 runs · baseline #$R"
keys /
keys -l load
wait_for "load time is one row" '/ load · 1 of [0-9]+'
wait_for "the load time row" 'load time'
keys Escape /
keys -l model
wait_for "model size is one row" '/ model · 1 of [0-9]+'
if pane | grep -qE 'model_bytes|load_seconds'; then fail "no model_bytes or load_seconds rows" "$(pane)"; else ok "no model_bytes or load_seconds rows"; fi
keys Escape e Enter
wait_file "the job's comparison is exported" "$OPTSTUDIO_HOME/exports/compare-$R-$A.csv"
n=$(grep -cE '^(model size|load time|model_bytes|load_seconds),' "$OPTSTUDIO_HOME/exports/compare-$R-$A.csv")
[ "$n" = 2 ] && ok "the export has size and load time once each" || fail "the export has size and load time once each" "$(grep -E '^(model|load)' "$OPTSTUDIO_HOME/exports/compare-$R-$A.csv")"
keys q
wait_for "q quits" 'tui\$ *$'
test_summary
