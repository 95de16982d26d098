/* test_reference.c: the engine's logits (model + CPU backend + engine_forward) against an
 * independent float64 llama forward pass written from the math (tests/ref/naive_forward.c),
 * on fixture models (F32 and Q4_1 weights, tied and untied) and on the demo model
 * ($OPTSTUDIO_DEMO_MODEL, skipped when unset), at every position of a short prompt, run
 * both as one prefill batch and as a prefill followed by one-token decode steps. */
#include "../test.h"

#include <unistd.h>

#include "../../core/cpu/backend_cpu.h"
#include "../../core/engine/engine.h"
#include "../../core/engine/model.h"
#include "../../core/format/fixture.h"
#include "../../core/format/gguf.h"
#include "../ref/naive_forward.c"

static uint64_t seed0 = 0x7e57fe11ull;

/* Two threads whatever the machine, so the threaded paths run everywhere and the results
 * do not depend on the core count. */
#ifndef REF_TEST_THREADS
#define REF_TEST_THREADS 2
#endif

/* How far the engine may be from the reference: max |engine - ref| / max |ref| over all
 * positions and tokens must stay below a bound, and the argmax must agree at every position
 * except where the reference's own top two are closer than twice the allowed error (a
 * genuine near-tie, where f32 rounding may pick either).
 * Why these bounds: the engine accumulates in f32 (unit roundoff 6e-8) over dot products of
 * length dim / ffn_dim (576 / 1536 for SmolLM2), a softmax over the context and, for
 * SmolLM2, 30 layers of residual updates; the weights are the same f32 values in both (the
 * engine's F32 run-time format is exact for F32 and Q4_1 files). Measured with the
 * AVX-512 / AVX2 / generic kernel sets: 3e-7..7e-7 on the 2-3 layer fixtures,
 * 1.2e-6..2.8e-6 on SmolLM2. The bounds (2e-5 fixtures, 1e-4 SmolLM2) leave 30x room or
 * more for other kernels' summation orders while any real mistake (a wrong rope
 * pair, a missing norm, a causal mask off by one, a wrong GQA head mapping) moves logits
 * by a sizeable fraction of their scale. BF16 run-time weights: the reference rounds its
 * weights to bf16 too; what is left is the kernels' own bf16 arithmetic (activations
 * rounded to bf16, 2^-9 relative): measured ~5e-3, bound 2e-2. */
typedef struct cmp_result {
	double max_abs_diff;   /* max |engine - ref| over all positions and tokens */
	double max_abs_ref;    /* max |ref| */
	size_t argmax_mismatch;
} cmp_result;

static void compare_logits(const float *eng, const double *ref, size_t n, size_t vocab,
			   double rel_bound, cmp_result *r)
{
	memset(r, 0, sizeof *r);
	for (size_t i = 0; i < n * vocab; i++) {
		double d = fabs((double)eng[i] - ref[i]);
		if (!(d <= r->max_abs_diff))  /* NaN propagates as +inf */
			r->max_abs_diff = isnan(d) ? INFINITY : d;
		if (fabs(ref[i]) > r->max_abs_ref)
			r->max_abs_ref = fabs(ref[i]);
	}
	for (size_t t = 0; t < n; t++) {
		const float *e = eng + t * vocab;
		const double *f = ref + t * vocab;
		size_t be = 0, bf = 0;
		for (size_t i = 1; i < vocab; i++) {
			if (e[i] > e[be])
				be = i;
			if (f[i] > f[bf])
				bf = i;
		}
		if (be == bf)
			continue;
		double gap = f[bf] - f[be];
		if (gap > 2.0 * rel_bound * r->max_abs_ref)
			r->argmax_mismatch++;
	}
}

/* Runs tokens through the engine for model path with weight format fmt, every position's
 * logits into out (n, vocab). split == 0: one batch; else a batch of split tokens, then one
 * token per call. */
static int engine_logits(const char *path, int fmt, const int32_t *tokens, size_t n,
			 size_t split, float *out, size_t *vocab_out, os_error *err)
{
	model *m = NULL;
	backend *be = NULL;
	engine *e = NULL;
	int32_t seq = -1;
	int32_t *pos = NULL, *seqs = NULL;
	uint8_t *want = NULL;
	model_load_opts mo = {.weight_format = fmt};
	backend_cpu_opts bo = {.n_threads = REF_TEST_THREADS};
	int rc;
	if ((rc = model_open(&m, path, &mo, err)) || (rc = backend_cpu_new(&be, &bo, err)) ||
	    (rc = engine_new(&e, m, be, NULL, err)) || (rc = kv_seq_new(engine_kv(e), &seq, err)))
		goto fail;
	size_t vocab = model_n_vocab(m);
	*vocab_out = vocab;
	pos = malloc(n * sizeof *pos);
	seqs = malloc(n * sizeof *seqs);
	want = malloc(n);
	if (!pos || !seqs || !want) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		pos[i] = (int32_t)i;
		seqs[i] = seq;
		want[i] = 1;
	}
	size_t done = 0;
	while (done < n) {
		size_t step = split == 0 ? n : done == 0 ? split : 1;
		if (step > n - done)
			step = n - done;
		engine_batch b = {.n = step, .tokens = tokens + done, .pos = pos + done,
				  .seq = seqs + done, .want = want + done};
		if ((rc = engine_forward(e, &b, out + done * vocab, err)))
			goto fail;
		done += step;
	}
	rc = OS_OK;
fail:
	free(pos);
	free(seqs);
	free(want);
	if (e && seq >= 0)
		kv_seq_free(engine_kv(e), seq);
	engine_free(e);
	backend_free(be);
	model_close(m);
	return rc;
}

/* The whole comparison for one model file; returns 0 and prints the failure on a mismatch. */
static int check_model(const char *path, const char *label, int fmt, const int32_t *tokens,
		       size_t n, double rel_bound)
{
	os_error err;
	gguf_file *f = NULL;
	ref_config c;
	double *ref = NULL;
	float *eng = NULL;
	int ok = 0;
	if (gguf_open(&f, path, &err) || ref_config_read(&c, f, &err)) {
		printf("  %s: %s\n", label, os_error_text(&err));
		goto done;
	}
	c.round_bf16 = fmt == BE_WFMT_BF16;
	ref = malloc(n * c.vocab * sizeof *ref);
	eng = malloc(n * c.vocab * sizeof *eng);
	if (!ref || !eng)
		goto done;
	if (ref_forward(f, &c, tokens, n, ref, &err)) {
		printf("  %s: reference: %s\n", label, os_error_text(&err));
		goto done;
	}
	const size_t splits[2] = {0, n / 2 ? n / 2 : 1};
	for (int si = 0; si < 2; si++) {
		size_t vocab = 0;
		if (engine_logits(path, fmt, tokens, n, splits[si], eng, &vocab, &err)) {
			printf("  %s: engine: %s\n", label, os_error_text(&err));
			goto done;
		}
		if (vocab != c.vocab) {
			printf("  %s: engine vocab %zu, reference %zu\n", label, vocab, c.vocab);
			goto done;
		}
		cmp_result r;
		compare_logits(eng, ref, n, c.vocab, rel_bound, &r);
		double rel = r.max_abs_diff / r.max_abs_ref;
		printf("  %s %s (%s): max|dlogit| %.3g, max|logit| %.3g, rel %.3g (bound %.0e), "
		       "argmax mismatches %zu/%zu\n",
		       label, be_wfmt_name(fmt), si ? "prefill + decode" : "one batch",
		       r.max_abs_diff, r.max_abs_ref, rel, rel_bound, r.argmax_mismatch, n);
		if (!(rel < rel_bound) || r.argmax_mismatch || !(r.max_abs_ref > 0))
			goto done;
	}
	ok = 1;
done:
	free(ref);
	free(eng);
	gguf_close(f);
	return ok;
}

static void fixture_path(char *buf, size_t size, const char *tag)
{
	const char *dir = getenv("TMPDIR");
	snprintf(buf, size, "%s/optstudio-test-ref-%ld-%s.gguf", dir && *dir ? dir : "/tmp",
		 (long)getpid(), tag);
}

/* Writes a fixture, compares, removes it. */
static int check_fixture(const char *tag, gguf_fixture_opts o, int fmt, size_t n_tokens,
			 double rel_bound, uint64_t *st)
{
	char path[512];
	os_error err;
	int32_t tokens[64];
	fixture_path(path, sizeof path, tag);
	if (gguf_fixture_write(path, &o, &err)) {
		printf("  %s: fixture: %s\n", tag, os_error_text(&err));
		return 0;
	}
	for (size_t i = 0; i < n_tokens; i++)
		tokens[i] = (int32_t)(test_rand_next(st) % GGUF_FIXTURE_VOCAB);
	int ok = check_model(path, tag, fmt, tokens, n_tokens, rel_bound);
	unlink(path);
	return ok;
}

/* Odd shapes: 3 layers, head_dim 32, GQA 3:1, ffn 224 (all multiples of 32 so the
 * quantized types fit). */
static gguf_fixture_opts odd_shape(uint64_t seed, uint32_t type, bool tied)
{
	gguf_fixture_opts o = {.seed = seed, .weight_type = type, .tied_embeddings = tied,
			       .n_layers = 3, .dim = 96, .n_heads = 3, .n_kv_heads = 1,
			       .ffn_dim = 224, .ctx = 128};
	return o;
}

TEST(fixture_f32)
{
	uint64_t st = seed0 ^ 1;
	printf("  seed %llu\n", (unsigned long long)st);
	gguf_fixture_opts dflt = {.seed = 11, .weight_type = GGML_TYPE_F32};
	CHECK(check_fixture("f32-default", dflt, BE_WFMT_F32, 13, 2e-5, &st));
	CHECK(check_fixture("f32-odd-tied", odd_shape(12, GGML_TYPE_F32, true), BE_WFMT_F32, 17,
			    2e-5, &st));
}

TEST(fixture_q4_1)
{
	uint64_t st = seed0 ^ 2;
	printf("  seed %llu\n", (unsigned long long)st);
	CHECK(check_fixture("q4_1-odd", odd_shape(21, GGML_TYPE_Q4_1, false), BE_WFMT_F32, 15,
			    2e-5, &st));
	gguf_fixture_opts tied = {.seed = 22, .weight_type = GGML_TYPE_Q4_1, .tied_embeddings = true};
	CHECK(check_fixture("q4_1-tied", tied, BE_WFMT_F32, 9, 2e-5, &st));
}

TEST(fixture_bf16_runtime)
{
	/* BF16 weights in the engine vs. a reference with the same weights rounded to bf16:
	 * what is left is the engine's arithmetic (activations may be rounded to bf16 by the
	 * kernels, 2^-9 relative), hence the looser bound */
	uint64_t st = seed0 ^ 3;
	printf("  seed %llu\n", (unsigned long long)st);
	CHECK(check_fixture("q4_1-bf16", odd_shape(31, GGML_TYPE_Q4_1, false), BE_WFMT_BF16, 11,
			    2e-2, &st));
}

TEST(demo_model)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!path || !*path)
		SKIP("OPTSTUDIO_DEMO_MODEL not set: no demo-model comparison");
	if (access(path, R_OK) != 0)
		SKIP("OPTSTUDIO_DEMO_MODEL '%s' not readable", path);
	/* 8 ids of an ordinary English prompt for the SmolLM2 vocabulary ("The capital of
	 * France is Paris. The"); for another model they are just 8 valid ids */
	int32_t tokens[8] = {504, 3575, 282, 4649, 314, 7042, 30, 378};
	os_error err;
	gguf_file *f = NULL;
	ref_config c;
	if (gguf_open(&f, path, &err) || ref_config_read(&c, f, &err)) {
		gguf_close(f);
		FAIL_AT("%s", os_error_text(&err));
	}
	gguf_close(f);
	for (int i = 0; i < 8; i++)
		tokens[i] = (int32_t)((size_t)tokens[i] % c.vocab);
	CHECK(check_model(path, "demo", BE_WFMT_F32, tokens, 8, 1e-4));
}

int main(void)
{
	RUN(fixture_f32);
	RUN(fixture_q4_1);
	RUN(fixture_bf16_runtime);
	RUN(demo_model);
	return test_summary();
}
