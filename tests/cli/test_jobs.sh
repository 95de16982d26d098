#!/usr/bin/env bash
# `optstudio optimize` / `jobs` / `worker` with the real binary on fixture models in a fresh
# data home: spec validation (every problem with its path), a job to completion, the evaluate
# stage (sweep, accuracy, speculative decoding, results in `results` and `compare`), and the
# faults: kill -9 of the worker, simultaneous submissions, stop, a model removed while
# queued, a full disk. Waits poll with a timeout; nothing asserts on time.
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
export OPTSTUDIO_WORKER_IDLE_MS=1500
"$FIX" "$TMP/fx.gguf" --seed 5 >/dev/null && "$FIX" "$TMP/fx2.gguf" --seed 6 >/dev/null ||
	{ fail "make_fixture" "cannot build the fixture"; test_summary; exit; }
# calibration text: ~30k lines of varied words, enough for thousands of samples
awk 'BEGIN { for (i = 1; i <= 30000; i++) printf "line %d of the text, with words like river%d and stone%d.\n", i, (i * 7) % 13, i % 17 }' >"$TMP/calib.txt"
"$BIN" hub import "$TMP/fx.gguf" --name fx >/dev/null && "$BIN" hub import "$TMP/fx2.gguf" --name fx2 >/dev/null ||
	fail "hub import"

jget() { python3 -c "import json,sys; d=json.load(sys.stdin); v=d.get(sys.argv[1]); print('' if v is None else v)" "$1"; }
job_field() { "$BIN" jobs show "$1" --json 2>/dev/null | jget "$2"; }
# wait_for ID FIELD REGEX [TRIES]: polls every 0.1 s (default up to 60 s)
wait_for() {
	local i v
	for ((i = 0; i < ${4:-600}; i++)); do
		v=$(job_field "$1" "$2")
		if echo "$v" | grep -qE -- "$3"; then return 0; fi
		sleep 0.1
	done
	echo "job $1: $2 is '$v', waited for /$3/" >&2
	return 1
}
# a slow job: calibration with many samples (real work, seconds on the fixture)
slow_job() { "$BIN" optimize "${1:-fx}" --quantize int8-smoothquant --calib "$TMP/calib.txt" --samples 4000 --seq-len 64 --json | jget id; }

expect_rc "optimize --help" 0 "$BIN" optimize --help
expect_out "optimize help names the flags" "--quantize"
expect_rc "jobs --help" 0 "$BIN" jobs --help
expect_rc "worker --help" 0 "$BIN" worker --help
expect_out "worker help documents the test hooks" "OPTSTUDIO_WORKER_FSIZE_LIMIT"
expect_rc "optimize without arguments" 2 "$BIN" optimize
expect_rc "jobs show without an id" 2 "$BIN" jobs show
expect_rc "jobs show of a missing job" 1 "$BIN" jobs show 99
expect_out "missing job message" "no job 99"

# ---- validation: every problem with its path, nothing queued -----------------------------
cat >"$TMP/bad.json" <<'EOF'
{"model": "nosuch", "colour": "red",
 "quantization": {"method": "fp9", "group_size": 7, "calibration": {"samples": "many"}},
 "speculative_decoding": {"k": 99},
 "runtime": {"tensor_parallel_degree": 2}}
EOF
expect_rc "a bad spec is refused" 1 "$BIN" optimize "$TMP/bad.json"
expect_out "unknown field with its path" "^  colour: unknown field 'colour'"
expect_out "wrong type with its path" "quantization.calibration.samples: expected a whole number"
expect_out "out of range with its path" "speculative_decoding.k: 99 is out of range"
expect_out "group size out of range" "quantization.group_size: 7 is out of range"
cat >"$TMP/bad2.json" <<'EOF'
{"model": "nosuch", "quantization": {"method": "fp9"}, "runtime": {"tensor_parallel_degree": 2},
 "speculative_decoding": {"draft": "ghost", "k": 4}}
EOF
expect_rc "a bad spec (semantics) is refused" 1 "$BIN" optimize "$TMP/bad2.json"
expect_out "model not found" "^  model: no model named 'nosuch' in the hub"
expect_out "unknown method lists the methods" "quantization.method: unknown method 'fp9'; one of fp8"
expect_out "tensor parallel refused on CPU" "runtime.tensor_parallel_degree: .*needs GPUs"
expect_out "draft not found" "speculative_decoding.draft: no draft model named 'ghost'"
expect_out "speculative needs evaluation" "^  speculative_decoding: .*add an evaluation block"
printf '{"model": "fx", "override_environment": {"OPTION_QUANTIZE": "awq", "OPTION_BOGUS": "1"}}' >"$TMP/bad3.json"
expect_rc "unknown OPTION_ key refused" 1 "$BIN" optimize "$TMP/bad3.json"
expect_out "unknown key lists the known ones" "override_environment.OPTION_BOGUS: unknown key .*OPTION_QUANTIZE, OPTION_SPECULATIVE_DRAFT_MODEL"
printf '{"model": "fx", "quantization": {' >"$TMP/broken.json"
expect_rc "broken JSON refused" 1 "$BIN" optimize "$TMP/broken.json"
expect_out "broken JSON position" "not valid JSON near line 1"
expect_rc "bad flags are a usage error" 2 "$BIN" optimize fx --quantize fp9
expect_rc "nothing queued by the refusals" 0 "$BIN" jobs --json
expect_out "empty job list" "^\[\]$"

# ---- a job to completion ----------------------------------------------------------------
J=$("$BIN" optimize fx --quantize fp8 --name first --json)
id=$(echo "$J" | jget id)
[ -n "$id" ] && [ "$(echo "$J" | jget state)" = queued ] && ok "optimize --json prints the queued job" || fail "optimize --json prints the queued job" "$J"
wait_for "$id" state '^completed$' && ok "fp8 job completes" || fail "fp8 job completes" "$("$BIN" jobs show "$id")"
[ "$(job_field "$id" stage)" = quantize ] && awk -v p="$(job_field "$id" progress)" 'BEGIN { exit !(p == 1) }' && [ -n "$(job_field "$id" pid)" ] &&
	ok "show --json has stage, progress and pid" || fail "show --json has stage, progress and pid" "$("$BIN" jobs show "$id" --json)"
expect_rc "the result is in the hub" 0 "$BIN" hub show fx-fp8 --json
expect_out "result has its parent's recipe" "fp8"
expect_rc "jobs log" 0 "$BIN" jobs log "$id"
expect_out "log names the stage" "quantize: writing"

# ---- the scale search through a job: calibrate runs, the result's recipe records it --------
J=$("$BIN" optimize fx --quantize int4-rtn --scale-search --calib "$TMP/calib.txt" --samples 4 --seq-len 32 --name searched --json)
sid=$(echo "$J" | jget id)
wait_for "$sid" state '^completed$' && ok "scale-search job completes" || fail "scale-search job completes" "$("$BIN" jobs show "$sid")"
expect_rc "scale-search job log" 0 "$BIN" jobs log "$sid"
expect_out "the job calibrated and searched" "searching importance-weighted scales"
expect_rc "scale-search result in the hub" 0 "$BIN" hub show fx-int4-rtn --json
rpath=$(echo "$OUT" | jget path)
# optstudio.recipe (JSON in the GGUF metadata) records it
[ -f "$rpath" ] && grep -aq '"scale_search":true' "$rpath" && ok "the recipe records the scale search" || fail "the recipe records the scale search" "$rpath"
expect_rc "--scale-search with int8 is refused" 2 "$BIN" optimize fx --quantize int8 --scale-search
expect_out "int8 search refusal names the field" "quantization.scale_search"

# ---- GPTQ through a job: AWQ, a second calibration, GPTQ; the result's recipe records it ----
# int4-awq takes it by default: the spec leaves gptq out (the method's default)
J=$("$BIN" optimize fx --quantize int4-awq --calib "$TMP/calib.txt" --samples 4 --seq-len 32 --name gptq --json)
gid=$(echo "$J" | jget id)
echo "$J" | grep -q '"gptq":' && fail "the default spec leaves gptq out" "$J" || ok "the default spec leaves gptq out"
wait_for "$gid" state '^completed$' && ok "gptq job completes" || fail "gptq job completes" "$("$BIN" jobs show "$gid")"
expect_rc "gptq job log" 0 "$BIN" jobs log "$gid"
expect_out "the job ran AWQ then GPTQ by default" "GPTQ relative proxy error"
expect_rc "gptq result in the hub" 0 "$BIN" hub show fx-int4-awq --json
rpath=$(echo "$OUT" | jget path)
[ -f "$rpath" ] && grep -aq '"gptq":true' "$rpath" && ok "the recipe records gptq" || fail "the recipe records gptq" "$rpath"
# --no-gptq: the spec keeps an explicit false, the job stops after AWQ
J=$("$BIN" optimize fx --quantize int4-awq --no-gptq --calib "$TMP/calib.txt" --samples 4 --seq-len 32 --name nogptq --json)
nid=$(echo "$J" | jget id)
echo "$J" | grep -q '"gptq":false' && ok "--no-gptq is kept in the spec" || fail "--no-gptq is kept in the spec" "$J"
wait_for "$nid" state '^completed$' && ok "no-gptq job completes" || fail "no-gptq job completes" "$("$BIN" jobs show "$nid")"
expect_rc "no-gptq job log" 0 "$BIN" jobs log "$nid"
echo "$OUT" | grep -q "GPTQ" && fail "the no-gptq job ran no GPTQ" "$OUT" || ok "the no-gptq job ran no GPTQ"
expect_out "the no-gptq job ran AWQ" "activation-aware scales"
rpath=$("$BIN" hub show "fx-int4-awq-job$nid" --json | jget path)
[ -f "$rpath" ] && ! grep -aq '"gptq"' "$rpath" && ok "its recipe has no gptq" || fail "its recipe has no gptq" "$rpath"
expect_rc "--gptq with int8-smoothquant is refused" 2 "$BIN" optimize fx --quantize int8-smoothquant --gptq
expect_out "int8 gptq refusal names the field" "quantization.gptq"

# ---- following: `jobs log -f` and `jobs --watch` run from submission to the job's end ------
fid=$("$BIN" optimize fx --quantize int8-smoothquant --calib "$TMP/calib.txt" --samples 3000 --seq-len 32 --name follow --json | jget id)
timeout 120 "$BIN" jobs --watch >"$TMP/watch.out" 2>&1 &
watch_pid=$!
if timeout 120 "$BIN" jobs log "$fid" -f >"$TMP/follow.out" 2>&1; then
	ok "jobs log -f returns once the job ends"
else
	fail "jobs log -f returns once the job ends" "$(tail -5 "$TMP/follow.out")"
fi
[ "$(job_field "$fid" state)" = completed ] && ok "followed job completed" || fail "followed job completed" "$("$BIN" jobs show "$fid")"
"$BIN" jobs log "$fid" >"$TMP/full.out"
cmp -s "$TMP/follow.out" "$TMP/full.out" && ok "the followed log is the whole log, from the first line to the last" ||
	fail "the followed log is the whole log" "$(diff "$TMP/follow.out" "$TMP/full.out" | head -5)"
grep -q "calibrate" "$TMP/follow.out" && grep -q "quantize: writing" "$TMP/follow.out" &&
	ok "the followed log has every stage" || fail "the followed log has every stage" "$(cat "$TMP/follow.out")"
if wait "$watch_pid"; then ok "jobs --watch ends when nothing is queued or running"; else fail "jobs --watch ends when nothing is queued or running" "$(tail -5 "$TMP/watch.out")"; fi
grep -qE "running|queued" "$TMP/watch.out" && ok "--watch showed the job while it was active" || fail "--watch showed the job while it was active" "$(head -5 "$TMP/watch.out")"
tail -n 4 "$TMP/watch.out" | grep -E "^ *$fid " | grep -q completed && ok "--watch's last listing shows it completed" ||
	fail "--watch's last listing shows it completed" "$(tail -n 4 "$TMP/watch.out")"
mkdir -p "$OPTSTUDIO_HOME/text" && cp "$TMP/calib.txt" "$OPTSTUDIO_HOME/text/calibration.txt"
sed "s/\"SmolLM2-135M-Instruct\"/\"fx\"/" "$(dirname "$0")/../../examples/jobs/override-environment.json" >"$TMP/env.json"
J=$("$BIN" optimize "$TMP/env.json" --json)
eid=$(echo "$J" | jget id)
echo "$J" | grep -q '"method":"int4-awq"' && ok "OverrideEnvironment maps to the native fields" || fail "OverrideEnvironment maps to the native fields" "$J"
wait_for "$eid" state '^completed$' && ok "override-environment job completes" || fail "override-environment job completes" "$("$BIN" jobs show "$eid")"

# ---- the evaluate stage: sweep + accuracy, speculative decoding, stop ----------------------
awk 'BEGIN { for (i = 1; i <= 120; i++) printf "held out line %d: the stone%d sat by river%d.\n", i, i % 11, i % 7 }' >"$TMP/heldout.txt"
cp "$TMP/heldout.txt" "$OPTSTUDIO_HOME/text/heldout.txt"
cat >"$TMP/eval.json" <<EOF
{"model": "fx", "name": "evalq", "quantization": {"method": "int8"},
 "evaluation": {"concurrency": [1, 2], "input_tokens": 8, "output_tokens": 4,
                "requests_per_level": 4, "instance": "local", "text": "$TMP/heldout.txt"}}
EOF
cat >"$TMP/spec.json" <<'EOF'
{"model": "fx", "name": "evalspec", "speculative_decoding": {"draft": "fx2", "k": 3},
 "evaluation": {"concurrency": [1], "input_tokens": 8, "output_tokens": 6, "requests_per_level": 3}}
EOF
ev=$("$BIN" optimize "$TMP/eval.json" --json | jget id)
sv=$("$BIN" optimize "$TMP/spec.json" --json | jget id)
[ -n "$ev" ] && [ -n "$sv" ] && ok "specs with evaluation and speculative decoding are queued" || fail "specs with evaluation are queued" "'$ev' '$sv'"
wait_for "$ev" state '^completed$' && ok "quantize + evaluate job completes" || fail "quantize + evaluate job completes" "$("$BIN" jobs show "$ev")"
wait_for "$sv" state '^completed$' && ok "speculative evaluate job completes" || fail "speculative evaluate job completes" "$("$BIN" jobs show "$sv")"
[ "$(job_field "$ev" stage)" = evaluate ] && ok "the last stage is evaluate" || fail "the last stage is evaluate" "$(job_field "$ev" stage)"
er=$("$BIN" jobs show "$ev" --json | python3 -c "import json,sys; r=json.load(sys.stdin)['result_run_ids']; print(r[0] if len(r)==1 else '')")
sr=$("$BIN" jobs show "$sv" --json | python3 -c "import json,sys; r=json.load(sys.stdin)['result_run_ids']; print(r[0] if len(r)==1 else '')")
[ -n "$er" ] && [ -n "$sr" ] && ok "jobs show --json has the result run ids" || fail "jobs show --json has the result run ids" "$("$BIN" jobs show "$ev" --json)"
expect_rc "results --json" 0 "$BIN" results --json
echo "$OUT" | python3 -c "
import json,sys
runs = {r['id']: r for r in json.load(sys.stdin)}
e, s = runs[int(sys.argv[1])], runs[int(sys.argv[2])]
assert e['job_id'] == int(sys.argv[3]) and s['job_id'] == int(sys.argv[4])
assert e['model'] == 'fx-int8' and s['model'] == 'fx', (e['model'], s['model'])
assert [p['concurrency'] for p in e['points']] == [1, 2]
assert all(p['requests'] == 4 and p['errors'] == 0 and p['total_tok_s'] > 0 for p in e['points'])
" "$er" "$sr" "$ev" "$sv" 2>&1 && ok "the job's run is in results (the quantized model, both levels)" || fail "the job's run is in results" "$OUT"
expect_rc "compare the two jobs' runs" 0 "$BIN" compare "$sr" "$er" --format json
echo "$OUT" | python3 -c "
import json,sys
m = {r['metric']: r['values'] for r in json.load(sys.stdin)['metrics'] if r['kind'] == 'accuracy'}
kl, t1, acc = m['kl_divergence'], m['top1_agreement'], m['acceptance_rate']
assert kl[0] is None and kl[1] >= 0 and 0 <= t1[1] <= 1, (kl, t1)
assert acc[0] is not None and 0 <= acc[0] <= 1 and acc[1] is None, acc
assert m['perplexity'][0] > 1 and m['perplexity'][1] > 1 and m['load_seconds'][1] > 0 and m['model_bytes'][1] > 0
assert m['mean_accepted_length'][0] >= 1
" 2>&1 && ok "compare shows accuracy (KL, top-1 vs the source) and acceptance by job" || fail "compare shows accuracy and acceptance" "$OUT"
expect_rc "compare table" 0 "$BIN" compare "$sr" "$er"
expect_out "compare table has the accuracy rows" "kl_divergence"
expect_rc "jobs log of the evaluate job" 0 "$BIN" jobs log "$sv"
expect_out "log says the sweep runs without speculation" "evaluate: the sweep runs without speculative decoding"
expect_out "log has the acceptance" "evaluate: speculative .*acceptance [0-9.]+%"
# stop during evaluate: many requests at one level
printf '{"model": "fx", "evaluation": {"concurrency": [1], "input_tokens": 8, "output_tokens": 4, "requests_per_level": 1000000}}' >"$TMP/long.json"
st=$("$BIN" optimize "$TMP/long.json" --json | jget id)
if wait_for "$st" stage '^evaluate$' && wait_for "$st" progress '^0\.[0-9]*[1-9]'; then
	expect_rc "jobs stop while evaluating" 0 "$BIN" jobs stop "$st"
	wait_for "$st" state '^stopped$' 30 && ok "stop during evaluate takes effect" || fail "stop during evaluate takes effect" "$("$BIN" jobs show "$st")"
	"$BIN" jobs show "$st" --json | grep -q '"result_run_ids":\[\]' && ok "a stopped evaluation stores no run" || fail "a stopped evaluation stores no run" "$("$BIN" jobs show "$st" --json)"
else
	fail "evaluate job starts" "$("$BIN" jobs show "$st")"
fi

# ---- two submissions at the same moment: one worker runs both ----------------------------
"$BIN" optimize fx --quantize int4-rtn --json >"$TMP/a.json" &
"$BIN" optimize fx2 --quantize int4-rtn --json >"$TMP/b.json" &
wait
a=$(jget id <"$TMP/a.json") b=$(jget id <"$TMP/b.json")
if wait_for "$a" state '^completed$' && wait_for "$b" state '^completed$'; then ok "simultaneous submissions both complete"
else fail "simultaneous submissions both complete" "$("$BIN" jobs)"; fi
pa=$(job_field "$a" pid) pb=$(job_field "$b" pid)
[ -n "$pa" ] && [ "$pa" = "$pb" ] && ok "one worker ran both (pid $pa)" || fail "one worker ran both" "pids '$pa' '$pb'"

# ---- kill -9 of the worker mid-job, then retry, then stop --------------------------------
k=$(slow_job)
if wait_for "$k" stage '^calibrate$' && wait_for "$k" state '^running$'; then
	wpid=$(job_field "$k" pid)
	kill -9 "$wpid"
	# the kernel takes a moment to end it: wait until it is gone or a zombie
	for ((i = 0; i < 100; i++)); do
		st=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$wpid/stat" 2>/dev/null)
		[ -z "$st" ] || [ "$st" = Z ] && break
		sleep 0.05
	done
	expect_rc "jobs after the kill" 0 "$BIN" jobs
	expect_out "the listing shows the dead worker" "failed .*worker \(pid $wpid\) died"
	[ "$(job_field "$k" state)" = failed ] && ok "killed job is failed" || fail "killed job is failed"
	expect_rc "jobs retry" 0 "$BIN" jobs retry "$k"
	if wait_for "$k" state '^running$' && wait_for "$k" stage '^calibrate$'; then
		[ "$(job_field "$k" pid)" != "$wpid" ] && ok "retried job runs under a new worker" || fail "retried job runs under a new worker"
		expect_rc "jobs stop while calibrating" 0 "$BIN" jobs stop "$k"
		wait_for "$k" state '^stopped$' && ok "stop takes effect" || fail "stop takes effect" "$("$BIN" jobs show "$k")"
	else
		fail "retried job runs again" "$("$BIN" jobs show "$k")"
	fi
else
	fail "slow job starts" "$("$BIN" jobs show "$k")"
fi
expect_rc "a stopped job cannot be stopped again" 1 "$BIN" jobs stop "$k"

# ---- a model removed while its job is queued ---------------------------------------------
"$FIX" "$TMP/fx3.gguf" --seed 8 >/dev/null && "$BIN" hub import "$TMP/fx3.gguf" --name gone >/dev/null || fail "import gone"
s1=$(slow_job)
wait_for "$s1" state '^running$' || fail "blocker job runs"
q=$("$BIN" optimize gone --quantize fp8 --json | jget id)
[ "$(job_field "$q" state)" = queued ] && ok "second job waits in the queue" || fail "second job waits in the queue" "$(job_field "$q" state)"
expect_rc "hub rm of the queued job's model" 0 "$BIN" hub rm gone
"$BIN" jobs stop "$s1" >/dev/null
wait_for "$q" state '^failed$' && ok "job on a removed model fails" || fail "job on a removed model fails" "$("$BIN" jobs show "$q")"
job_field "$q" error | grep -q "model 'gone' is not in the hub" && ok "failure names the removed model" || fail "failure names the removed model" "$(job_field "$q" error)"
expect_rc "stop a queued job" 0 "$BIN" optimize fx --quantize fp8 --json
sq=$(echo "$OUT" | jget id)
"$BIN" jobs stop "$sq" >/dev/null; st=$(job_field "$sq" state)
echo "$st" | grep -qE '^(stopped|stopping|completed)$' && ok "stop of a just-queued job ($st)" || fail "stop of a just-queued job" "$st"
expect_rc "rm of a finished job" 0 "$BIN" jobs rm "$q"
expect_rc "it is gone" 1 "$BIN" jobs show "$q"

# ---- disk full while writing the quantized model (fresh home, limited worker) -------------
(
	export OPTSTUDIO_HOME=$TMP/home-full OPTSTUDIO_WORKER_FSIZE_LIMIT=2000000
	"$FIX" "$TMP/big.gguf" --seed 9 --dim 256 --ffn 512 --layers 4 >/dev/null
	"$BIN" hub import "$TMP/big.gguf" --name big >/dev/null
	d=$("$BIN" optimize big --quantize fp8 --json | jget id)
	if wait_for "$d" state '^failed$'; then ok "disk full: job failed"; else fail "disk full: job failed" "$("$BIN" jobs show "$d")"; fi
	job_field "$d" error | grep -qiE "too large|no space|write" && ok "disk full: the error says why" || fail "disk full: the error says why" "$(job_field "$d" error)"
	left=$(find "$OPTSTUDIO_HOME/models" -type f | wc -l)
	[ "$left" -eq 0 ] && ok "disk full: no partial files" || fail "disk full: no partial files" "$(ls -la "$OPTSTUDIO_HOME/models")"
	"$BIN" hub list --json | grep -q '"big-fp8"' && fail "disk full: nothing imported" || ok "disk full: nothing imported"
	python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('pragma integrity_check').fetchone()[0])" "$OPTSTUDIO_HOME/hub.db" | grep -q '^ok$' &&
		ok "disk full: database consistent" || fail "disk full: database consistent"
	echo "$n_passed $n_failed" >"$TMP/sub.counts"
)
read -r sp sf <"$TMP/sub.counts" && n_passed=$sp n_failed=$sf
test_summary
