#!/usr/bin/env bash
# `optstudio bench`, `price`, `results` and `compare`: the real binary on the fixture model
# with small sizes (JSON fields, request accounting, stored runs, prices checked against
# hand computations, the comparison's formats and errors).
. "$(dirname "$0")/lib.sh"
FIX=$BUILD_DIR/tests/make_fixture
"$FIX" "$TMP/fx.gguf" --seed 21 >/dev/null || { fail "make_fixture" "cannot build the fixture"; test_summary; exit; }

# jq-free JSON access: py EXPR evaluates EXPR with d = the JSON in $J
py() { echo "$J" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
# near A B: |A - B| <= 1e-9 x |B|
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(a != "" && d <= 1e-9 * m) }'; }

# ---- usage errors ----
expect_rc "bench --help exits 0" 0 "$BIN" bench --help
expect_out "help gives the formula" "O / \(mean latency s\) x C"
expect_rc "bench without MODEL" 2 "$BIN" bench
expect_rc "bench --concurrency 0" 2 "$BIN" bench "$TMP/fx.gguf" --concurrency 0
expect_rc "bench --concurrency 1,1" 2 "$BIN" bench "$TMP/fx.gguf" --concurrency 1,1
expect_rc "bench --concurrency 1," 2 "$BIN" bench "$TMP/fx.gguf" --concurrency 1,
expect_rc "bench --discount 1" 2 "$BIN" bench "$TMP/fx.gguf" --discount 1
expect_rc "bench --output-tokens 0" 2 "$BIN" bench "$TMP/fx.gguf" --output-tokens 0
expect_rc "bench on a missing model" 1 "$BIN" bench "$TMP/nosuch.gguf"
expect_out "missing model message" "cannot open model"
expect_rc "bench on an unknown instance" 1 "$BIN" bench "$TMP/fx.gguf" --instance nosuch
expect_out "unknown instance message" "no instance named 'nosuch'"

# ---- no local price yet: the bench says how to set one ----
expect_rc "bench without a local price" 0 "$BIN" bench "$TMP/fx.gguf" --concurrency 2 --input-tokens 8 \
	--output-tokens 4 --requests 3 --warmup 0 --no-store
expect_out "says how to set the local price" "no price; set it with 'optstudio price --set-local"
expect_out "table header" "TTFT ms .* ITL ms .* latency ms"
expect_out "projected prices are labelled" "^projected on catalog instances"

expect_rc "price --set-local 0.5" 0 "$BIN" price --set-local 0.5

# ---- a sweep, JSON ----
J=$("$BIN" bench "$TMP/fx.gguf" --concurrency 1,3 --input-tokens 12 --output-tokens 5 --requests 5 \
	--warmup 1 --seed 7 --label base --json 2>/dev/null)
run1=$(py 'd["run_id"]')
[ -n "$run1" ] && [ "$run1" -ge 1 ] && ok "--json has run_id" || fail "--json has run_id" "$J"
[ "$(py '[l["concurrency"] for l in d["levels"]]')" = "[1, 3]" ] && ok "levels 1 and 3" || fail "levels 1 and 3" "$(py 'd["levels"]')"
[ "$(py '[(l["requests"], l["errors"], l["output_tokens_total"]) for l in d["levels"]]')" = "[(5, 0, 25), (5, 0, 25)]" ] &&
	ok "5 requests of exactly 5 tokens per level" || fail "5 requests of exactly 5 tokens per level" "$(py 'd["levels"]')"
[ "$(py '[l["max_in_flight"] for l in d["levels"]]')" = "[1, 3]" ] && ok "concurrency reached, not exceeded" ||
	fail "concurrency reached, not exceeded" "$(py '[l["max_in_flight"] for l in d["levels"]]')"
[ "$(py 'all(l["ttft_ms"]["n"] == 5 and l["itl_ms"]["n"] == 20 and l["latency_ms"]["p50"] > 0 and l["total_tok_s"] > 0 and l["measured_tok_s"] > 0 for l in d["levels"])')" = True ] &&
	ok "per-level percentiles and throughputs present" || fail "per-level percentiles and throughputs present" "$J"
# DESIGN.md's formula: O / (mean latency ms / 1000) x C
tot=$(py 'd["levels"][1]["total_tok_s"]')
want=$(py '5 / (d["levels"][1]["latency_ms"]["mean"] / 1000) * 3')
near "$tot" "$want" && ok "total throughput by the formula" || fail "total throughput by the formula" "$tot vs $want"
# blended price at $0.5/hour, 26%: 0.74 x 0.5 / (tok/s x 3600 / 1e6) / 4
usd=$(py 'd["levels"][1]["blended_usd_per_1m"]')
want=$(awk -v t="$tot" 'BEGIN { printf "%.17g", 0.74 * 0.5 / (t * 3600 / 1e6) / 4 }')
near "$usd" "$want" && ok "local price from the formula" || fail "local price from the formula" "$usd vs $want"
[ "$(py 'd["price"]["usd_per_hour"]')" = 0.5 ] && ok "price uses the local \$/hour" || fail "price uses the local \$/hour" "$(py 'd["price"]')"
[ "$(py 'd["projected"]["label"]')" = projected ] &&
	[ "$(py 'len(d["projected"]["instances"]) > 0 and all(q["projected_tok_s"] > 0 for i in d["projected"]["instances"] for q in i["levels"])')" = True ] &&
	ok "projected instances labelled, positive" || fail "projected instances labelled, positive" "$(py 'd["projected"]')"

# a second run, whole prefill, for the comparison
J=$("$BIN" bench "$TMP/fx.gguf" --concurrency 1,3,4 --input-tokens 12 --output-tokens 5 --requests 4 \
	--warmup 0 --whole-prefill --label other --json 2>/dev/null)
run2=$(py 'd["run_id"]')
[ -n "$run2" ] && [ "$run2" != "$run1" ] && ok "second run stored" || fail "second run stored" "$J"

# ---- results ----
expect_rc "results" 0 "$BIN" results
expect_out "results lists run 1" "^ +$run1 .*fx.gguf .*base"
J=$("$BIN" results --json 2>/dev/null)
[ "$(py '[r["id"] for r in d]')" = "[$run2, $run1]" ] && ok "results --json, newest first" || fail "results --json, newest first" "$J"
[ "$(py '[p["concurrency"] for p in d[1]["points"]]')" = "[1, 3]" ] && [ "$(py 'd[1]["points"][1]["measured_tok_s"] > 0')" = True ] &&
	ok "stored points read back with the measured aggregate" || fail "stored points read back with the measured aggregate" "$(py 'd[1]')"
expect_rc "results with an argument" 2 "$BIN" results nope

# ---- compare ----
expect_rc "compare two runs" 0 "$BIN" compare "$run1" "$run2"
expect_out "baseline marked" "$run1 \(baseline\)"
expect_out "deltas marked" "% (better|worse)\)"
expect_out "throughput bars" "^  run $run1 +█"
expect_out "latency chart" "^latency: p50 client latency"
expect_out "price chart" "^price: "
expect_rc "compare --format csv" 0 "$BIN" compare "$run1" "$run2" --format csv
expect_out "csv header" "^metric,concurrency,unit,better,run_$run1,run_$run2,delta_pct_$run2,verdict_$run2$"
expect_out "csv level row" "^total tok/s,3,tok/s,higher,[0-9.e+]+,[0-9.e+]+,-?[0-9.]+,(better|worse|same)$"
expect_rc "compare --format md" 0 "$BIN" compare "$run1" "$run2" --format md
expect_out "md table" "^\| run \| $run1 \(baseline\) \| $run2 \|"
J=$("$BIN" compare "$run1" "$run2" --baseline "$run2" --format json 2>/dev/null)
[ "$(py 'd["baseline"]')" = "$run2" ] && ok "--baseline in JSON" || fail "--baseline in JSON" "$J"
[ "$(py '[m["verdicts"][1] for m in d["metrics"] if m["metric"] == "total tok/s" and m["concurrency"] == 4]')" = "['baseline']" ] &&
	[ "$(py '[m["values"][0] for m in d["metrics"] if m["metric"] == "total tok/s" and m["concurrency"] == 4]')" = "[None]" ] &&
	ok "a level only one run has: value null" || fail "a level only one run has: value null" "$(py 'd["metrics"][:3]')"
# the delta is (v - base) / base x 100 and its verdict follows "higher is better"
chk=$(py '[(abs(m["deltas_pct"][0] - (m["values"][0] - m["values"][1]) / m["values"][1] * 100) < 1e-6, m["verdicts"][0] == ("better" if m["values"][0] > m["values"][1] else "worse")) for m in d["metrics"] if m["metric"] == "total tok/s" and m["concurrency"] == 3]')
[ "$chk" = "[(True, True)]" ] && ok "delta and verdict against the baseline" || fail "delta and verdict against the baseline" "$chk"
expect_rc "compare one run" 2 "$BIN" compare "$run1"
expect_rc "compare a run twice" 2 "$BIN" compare "$run1" "$run1"
expect_rc "compare --format xml" 2 "$BIN" compare "$run1" "$run2" --format xml
expect_rc "compare a missing run" 1 "$BIN" compare "$run1" 999
expect_out "missing run message" "no benchmark run 999"

# ---- price ----
# $7.09/hour, 26%, 1000 tok/s: 0.74 x 7.09 = 5.2466; 1000 x 3600 / 1e6 = 3.6;
# 5.2466 / 3.6 = 1.4573888...; / 4 = 0.36434722...
J=$("$BIN" price --instance-price 7.09 --throughput 1000 --json 2>/dev/null)
near "$(py 'd["blended_usd_per_1m"]')" 0.364347222222222 && ok "price JSON by hand (g5, 26%)" || fail "price JSON by hand (g5, 26%)" "$J"
# ml.g5.12xlarge from the catalog ($7.09), 50%: 0.5 x 7.09 / 3.6 / 4 = 0.24618055...
J=$("$BIN" price --instance ml.g5.12xlarge --throughput 1000 --discount 0.5 --json 2>/dev/null)
near "$(py 'd["blended_usd_per_1m"]')" 0.246180555555556 && ok "price of a catalog instance by hand" || fail "price of a catalog instance by hand" "$J"
expect_rc "price prints the formula" 0 "$BIN" price --instance-price 2 --throughput 500
expect_out "formula shown" "formula: blended \\\$/1M tokens = \(1 - discount\) x instance \\\$/hour"
expect_rc "price without --throughput" 2 "$BIN" price --instance-price 2
expect_rc "price with both instance forms" 2 "$BIN" price --instance local --instance-price 2 --throughput 5
expect_rc "price --discount 1" 2 "$BIN" price --instance-price 2 --throughput 5 --discount 1
expect_rc "price on an unknown instance" 1 "$BIN" price --instance nosuch --throughput 5
OPTSTUDIO_HOME=$TMP/fresh expect_rc "price on local without a price" 1 "$BIN" price --instance local --throughput 5
expect_out "says how to set it" "set it with 'optstudio price --set-local USD_PER_HOUR'"

test_summary
