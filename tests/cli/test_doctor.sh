#!/usr/bin/env bash
# test_doctor.sh: `optstudio doctor` reports the machine as a table and as JSON that agrees
# with what the system itself says, and keeps the usual exit codes.
. "$(dirname "$0")/lib.sh"

expect_rc "doctor exits 0" 0 "$BIN" doctor
expect_out "doctor prints the CPU line" '^  CPU +[^ ]'
expect_out "doctor prints the CUDA line" '^  CUDA +(built in|not built in)'
expect_out "doctor names the data home it was given" "^  data home +$OPTSTUDIO_HOME \(not created yet\)"
expect_out "doctor prints the library versions" '^  sqlite3 +[0-9]+\.[0-9]+'
table=$OUT

expect_rc "doctor --json exits 0" 0 "$BIN" doctor --json
json=$OUT
# python3 is part of every Debian install; it checks the JSON against the system's own view
check=$(printf '%s' "$json" | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
bad = []
def want(cond, what):
    if not cond: bad.append(what)
want(d["cpu"]["cores_online"] == os.cpu_count(), "cores_online %s != os.cpu_count() %s" % (d["cpu"]["cores_online"], os.cpu_count()))
want(1 <= d["cpu"]["cores_usable"] <= d["cpu"]["cores_online"], "cores_usable out of range")
flags = set()
for line in open("/proc/cpuinfo"):
    if line.startswith("flags"):
        flags = set(line.split(":", 1)[1].split()); break
# cpuid + xgetbv (doctor) against what Linux reports; AMX needs more OS state than these say
for name, has in d["cpu"]["features"].items():
    if not name.startswith("amx"):
        want(has == (name in flags), "feature %s: %s, /proc/cpuinfo says %s" % (name, has, name in flags))
want(d["cpu"]["kernels"] in ("generic", "avx2", "avx512", "amx"), "kernels %r" % d["cpu"]["kernels"])
# the AMX set only where the CPU and the OS both have the tiles
want(d["cpu"]["kernels"] != "amx" or (d["cpu"]["features"]["amx_tile"] and d["cpu"]["features"]["amx_bf16"] and d["cpu"]["os_amx"] and d["cpu"]["amx_usable"] is True), "amx kernels without usable AMX")
want(d["cpu"]["amx_usable"] in (True, False) and (not d["cpu"]["amx_usable"] or d["cpu"]["os_amx"]), "amx_usable %r" % d["cpu"].get("amx_usable"))
total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
want(abs(d["memory"]["total_bytes"] - total) <= total // 100, "memory %s vs %s" % (d["memory"]["total_bytes"], total))
want(d["data_home"]["path"] == os.environ["OPTSTUDIO_HOME"], "data home %r" % d["data_home"]["path"])
want(d["data_home"]["exists"] is False and d["data_home"]["demo_model"] is False, "fresh home reported as populated")
c = d["cuda"]
want(isinstance(c["built"], bool) and isinstance(c["devices"], list), "cuda shape")
want(c["devices"] or c["error"], "no device and no reason given")
for k in ("sqlite3", "cjson", "curses"):
    want(d["libraries"][k], "library %s has no version" % k)
print("\n".join(bad) if bad else "ok")
' 2>&1)
if [ "$check" = ok ]; then ok "doctor --json parses and agrees with the system"; else fail "doctor --json parses and agrees with the system" "$check"; fi

# the table and the JSON tell the same story about CUDA
built=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cuda"]["built"])' 2>/dev/null)
if { [ "$built" = True ] && echo "$table" | grep -q '^  CUDA  *built in'; } ||
	{ [ "$built" = False ] && echo "$table" | grep -q '^  CUDA  *not built in'; }; then
	ok "table and JSON agree on CUDA ($built)"
else
	fail "table and JSON agree on CUDA" "json built=$built" "$(echo "$table" | grep CUDA)"
fi

# OPTSTUDIO_CPU forces the kernel set, and a bad value is reported, not fatal
expect_rc "doctor with OPTSTUDIO_CPU=generic" 0 env OPTSTUDIO_CPU=generic "$BIN" doctor
expect_out "doctor reports the forced kernel set" '^  CPU kernels +generic \(forced by OPTSTUDIO_CPU\)'
expect_rc "doctor with a bad OPTSTUDIO_CPU still exits 0" 0 env OPTSTUDIO_CPU=sse9 "$BIN" doctor
expect_out "doctor explains the bad OPTSTUDIO_CPU" "^  CPU kernels +none: .*sse9"

# a populated home is seen as such
mkdir -p "$OPTSTUDIO_HOME/models"
head -c 4096 /dev/urandom >"$OPTSTUDIO_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf"
expect_rc "doctor with a demo model present" 0 "$BIN" doctor
expect_out "doctor sees the demo model and the home" "^  data home +$OPTSTUDIO_HOME \(exists\)"
expect_out "doctor reports the demo model present" '^  demo model +SmolLM2-135M-Instruct.Q4_1.gguf present'

expect_rc "doctor --help exits 0" 0 "$BIN" doctor --help
expect_out "doctor --help shows usage" '^usage: optstudio doctor'
expect_rc "doctor with an unknown option exits 2" 2 "$BIN" doctor --frobnicate
expect_out "the usage error names the option" "unknown option '--frobnicate'"
expect_rc "doctor with a stray argument exits 2" 2 "$BIN" doctor extra

test_summary
