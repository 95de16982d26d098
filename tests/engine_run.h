/* engine_run.h: what the unit tests that run a model through the engine share: a model, a CPU
 * backend and an engine opened together, and the logits of every position of a short prompt.
 * Header-only (static functions), included by the test programs that need it. */
#ifndef OPTSTUDIO_TESTS_ENGINE_RUN_H
#define OPTSTUDIO_TESTS_ENGINE_RUN_H

#include <stdio.h>
#include <string.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"

typedef struct test_run {
	model *m;
	backend *be;
	engine *e;
} test_run;

/* Opens path (mo may be NULL) on a CPU backend with an engine of max_batch tokens and a 1 MiB
 * KV cache. Prints the error and returns -1 on failure (what was opened stays in *r for
 * test_run_close). */
static inline int test_run_open(test_run *r, const char *path, const model_load_opts *mo,
				size_t max_batch)
{
	os_error err;
	memset(r, 0, sizeof *r);
	engine_opts eo = {.max_batch = max_batch, .kv_bytes = 1u << 20};
	if (model_open(&r->m, path, mo, &err) || backend_cpu_new(&r->be, NULL, &err) ||
	    engine_new(&r->e, r->m, r->be, &eo, &err)) {
		printf("  open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static inline void test_run_close(test_run *r)
{
	engine_free(r->e);
	backend_free(r->be);
	model_close(r->m);
}

/* Logits of every position of toks[0..n) (n <= 256) run as one fresh sequence: (n, vocab). */
static inline int test_logits_all(engine *e, const int32_t *toks, size_t n, float *out)
{
	enum { MAX_TOKENS = 256 };
	os_error err;
	int32_t s, pos[MAX_TOKENS], seq[MAX_TOKENS];
	uint8_t want[MAX_TOKENS];
	if (n > MAX_TOKENS || kv_seq_new(engine_kv(e), &s, &err))
		return -1;
	for (size_t i = 0; i < n; i++)
		pos[i] = (int32_t)i, seq[i] = s, want[i] = 1;
	engine_batch b = {.n = n, .tokens = toks, .pos = pos, .seq = seq, .want = want};
	int rc = engine_forward(e, &b, out, &err);
	kv_seq_free(engine_kv(e), s);
	return rc;
}

#endif
