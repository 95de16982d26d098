/* batch_invariance.c: does a token's arithmetic depend on the batch it comes in? Prefills
 * N tokens of one sequence in one pass, then again in chunks of c tokens (c = 1, 2, 3, ...,
 * N - 1 then 1: what speculative decoding does to a prompt), and compares every row of
 * logits with the one-pass row: how many rows differ in any bit, and the largest difference
 * relative to the row's largest logit. Exact speculative decoding under greedy sampling
 * needs every row identical.
 * Usage: batch_invariance MODEL [--kv f32|bf16|fp8|int8] [--n N] [--threads T] [--invariant]
 * (OPTSTUDIO_CPU=generic|avx2|avx512|amx forces a kernel set; --invariant takes its
 * batch-invariant twin). Exit status 1 when a row differs. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"

static int kv_type_of(const char *s)
{
	if (!strcmp(s, "f32"))
		return ENGINE_KV_F32;
	if (!strcmp(s, "bf16"))
		return ENGINE_KV_BF16;
	if (!strcmp(s, "fp8"))
		return ENGINE_KV_FP8;
	if (!strcmp(s, "int8"))
		return ENGINE_KV_INT8;
	return -1;
}

/* Runs toks[0..n) as one sequence in passes of chunk tokens (the last pass: what is left,
 * except that split_last runs n - 1 tokens then 1), all rows wanted, into out (n, V). */
static int prefill_chunked(engine *e, const int32_t *toks, size_t n, size_t chunk,
			   int split_last, float *out, os_error *err)
{
	int32_t s;
	int rc = kv_seq_new(engine_kv(e), &s, err);
	if (rc)
		return rc;
	size_t V = model_n_vocab(engine_model(e));
	int32_t *pos = malloc(n * sizeof *pos), *seq = malloc(n * sizeof *seq);
	uint8_t *want = malloc(n);
	for (size_t i = 0; i < n; i++) {
		pos[i] = (int32_t)i;
		seq[i] = s;
		want[i] = 1;
	}
	for (size_t i0 = 0; i0 < n && !rc;) {
		size_t c = split_last ? (i0 == 0 ? n - 1 : 1) : (n - i0 < chunk ? n - i0 : chunk);
		engine_batch b = {.n = c, .tokens = toks + i0, .pos = pos + i0, .seq = seq + i0,
				  .want = want + i0};
		rc = engine_forward(e, &b, out + i0 * V, err);
		i0 += c;
	}
	kv_seq_free(engine_kv(e), s);
	free(pos), free(seq), free(want);
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	int kv_type = ENGINE_KV_MODEL;
	size_t n = 40, threads = 0;
	bool invariant = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--kv") && i + 1 < argc)
			kv_type = kv_type_of(argv[++i]);
		else if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--invariant"))
			invariant = true;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = strtoul(argv[++i], NULL, 10);
		else
			path = argv[i];
	}
	if (!path || kv_type < 0 || n < 2 || n > 512) {
		fprintf(stderr, "usage: batch_invariance MODEL [--kv f32|bf16|fp8|int8] [--n N] "
				"[--threads T] [--invariant]\n");
		return 2;
	}
	os_error err;
	model *m = NULL;
	backend *be = NULL;
	engine *e = NULL;
	backend_cpu_opts bo = {.n_threads = threads, .batch_invariant = invariant};
	engine_opts eo = {.max_batch = 512, .kv_type = kv_type};
	if (model_open(&m, path, NULL, &err) || backend_cpu_new(&be, &bo, &err) ||
	    engine_new(&e, m, be, &eo, &err)) {
		fprintf(stderr, "batch_invariance: %s\n", err.msg);
		return 2;
	}
	printf("model %s, kernels %s%s, KV %s, %zu tokens\n", path,
	       backend_cpu_kernels(be)->name,
	       backend_cpu_kernels(be)->batch_invariant ? " (batch-invariant)" : "", be_kvfmt_name(engine_kv_format(e)), n);
	size_t V = model_n_vocab(m);
	int32_t *toks = malloc(n * sizeof *toks);
	uint64_t st = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++) { /* random ids (xorshift), fixed seed */
		st ^= st << 13, st ^= st >> 7, st ^= st << 17;
		toks[i] = (int32_t)(st % V);
	}
	float *ref = malloc(n * V * sizeof *ref), *got = malloc(n * V * sizeof *got);
	if (prefill_chunked(e, toks, n, n, 0, ref, &err)) {
		fprintf(stderr, "batch_invariance: %s\n", err.msg);
		return 2;
	}
	const size_t chunks[] = {1, 2, 3, 5, 8, 16, 17, 0};
	int bad = 0;
	printf("%-10s %14s %16s\n", "passes of", "rows differing", "max |diff| / max");
	for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
		size_t c = chunks[ci];
		if (prefill_chunked(e, toks, n, c ? c : n, c == 0, got, &err)) {
			fprintf(stderr, "batch_invariance: %s\n", err.msg);
			return 2;
		}
		size_t differ = 0;
		double worst = 0;
		for (size_t t = 0; t < n; t++) {
			const float *a = ref + t * V, *b = got + t * V;
			if (memcmp(a, b, V * sizeof *a))
				differ++;
			double mx = 0, d = 0;
			for (size_t v = 0; v < V; v++) {
				mx = fmax(mx, fabs(a[v]));
				d = fmax(d, fabs((double)a[v] - b[v]));
			}
			worst = fmax(worst, mx > 0 ? d / mx : d);
		}
		char label[32];
		if (c)
			snprintf(label, sizeof label, "%zu", c);
		else
			snprintf(label, sizeof label, "%zu + 1", n - 1);
		printf("%-10s %8zu / %-5zu %16.3g\n", label, differ, n, worst);
		bad |= differ > 0;
	}
	free(toks), free(ref), free(got);
	engine_free(e);
	backend_free(be);
	model_close(m);
	return bad;
}
