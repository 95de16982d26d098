/* test_calibrate.c: calibration statistics on the fixture model: the recorded rows are the
 * inputs of the linear layers (checked by recomputing the residual stream from them), max and
 * mean |x| match the rows, kept subsets are seeded and in order, passes split inside a sample
 * give the same result, and progress, stop, short text and file errors behave.
 * TEST_SEED overrides the seed. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "core/optimize/calibrate.h"
#include "tests/engine_run.h"
#include "tests/test.h"

#include <unistd.h>

static uint64_t seed = 20250612;
static char dir[64];
static char path_fx[128];

static int32_t *random_tokens(size_t n, uint64_t *st)
{
	int32_t *t = malloc(n * sizeof *t);
	for (size_t i = 0; t && i < n; i++)
		t[i] = (int32_t)(test_rand_next(st) % GGUF_FIXTURE_VOCAB);
	return t;
}

/* out (dim) = rmsnorm(x) * w, in double. */
static void ref_rmsnorm(double *out, const double *x, const float *w, size_t dim, float eps)
{
	double ss = 0;
	for (size_t j = 0; j < dim; j++)
		ss += x[j] * x[j];
	double k = 1.0 / sqrt(ss / (double)dim + eps);
	for (size_t j = 0; j < dim; j++)
		out[j] = x[j] * k * w[j];
}

/* x (dim) += W (rows=dim, cols) r (cols) */
static void ref_addmv(double *x, const be_weight *W, const float *r)
{
	const float *w = W->data;
	for (size_t i = 0; i < W->rows; i++) {
		double acc = 0;
		for (size_t k = 0; k < W->cols; k++)
			acc += (double)w[i * W->cols + k] * r[k];
		x[i] += acc;
	}
}

static double max_err(const double *want, const float *got, size_t n)
{
	double e = 0;
	for (size_t j = 0; j < n; j++)
		e = fmax(e, fabs(want[j] - got[j]) / (1 + fabs(want[j])));
	return e;
}

/* With every row kept, the rows are the layer inputs: the residual stream rebuilt from them
 * (embedding + wo att + w_down h per layer) normalises to the next ATTN_IN / FFN_IN rows. */
TEST(test_rows_are_layer_inputs)
{
	test_run r;
	CHECK(test_run_open(&r, path_fx, NULL, 256) == 0);
	const model_config *c = model_get_config(r.m);
	const model_weights *w = model_get_weights(r.m);
	uint64_t st = seed;
	size_t N = 3, L = 23, n_text = 100;
	int32_t *toks = random_tokens(n_text, &st);
	calib_opts co = calib_opts_default();
	co.n_samples = N, co.seq_len = L, co.keep_rows = N * L + 5; /* capped at N * L */
	calib_stats *cs = NULL;
	os_error err;
	CHECK_MSG(calib_run_tokens(r.e, toks, n_text, &co, &cs, &err) == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(calib_n_tokens(cs), N * L);
	CHECK_EQ_INT(calib_n_layers(cs), c->n_layers);
	size_t stride = (n_text - L) / (N - 1);
	double *x = malloc(c->dim * sizeof *x), *xn = malloc(c->dim * sizeof *xn);
	double worst = 0;
	for (size_t i = 0; i < N * L; i++) {
		int32_t t = toks[(i / L) * stride + i % L];
		const float *emb = (const float *)w->token_embd.data + (size_t)t * c->dim;
		for (size_t j = 0; j < c->dim; j++)
			x[j] = emb[j];
		for (size_t l = 0; l < c->n_layers; l++) {
			const calib_site *a_in = calib_get(cs, l, ENGINE_SITE_ATTN_IN);
			const calib_site *a_out = calib_get(cs, l, ENGINE_SITE_ATTN_OUT);
			const calib_site *f_in = calib_get(cs, l, ENGINE_SITE_FFN_IN);
			const calib_site *f_dn = calib_get(cs, l, ENGINE_SITE_FFN_DOWN_IN);
			CHECK_EQ_INT(a_in->n_rows, N * L);
			CHECK_EQ_INT(a_out->dim, c->n_heads * c->head_dim);
			CHECK_EQ_INT(f_dn->dim, c->ffn_dim);
			ref_rmsnorm(xn, x, w->layers[l].attn_norm, c->dim, c->rms_eps);
			worst = fmax(worst, max_err(xn, a_in->rows + i * c->dim, c->dim));
			ref_addmv(x, &w->layers[l].wo, a_out->rows + i * a_out->dim);
			ref_rmsnorm(xn, x, w->layers[l].ffn_norm, c->dim, c->rms_eps);
			worst = fmax(worst, max_err(xn, f_in->rows + i * c->dim, c->dim));
			ref_addmv(x, &w->layers[l].w_down, f_dn->rows + i * f_dn->dim);
		}
	}
	printf("  worst relative error of the rebuilt layer inputs: %.3g\n", worst);
	CHECK(worst < 1e-4);
	/* max and mean |x| and mean x^2 are those of the rows (all kept) */
	for (size_t l = 0; l < c->n_layers; l++)
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			const calib_site *s = calib_get(cs, l, site);
			for (size_t j = 0; j < s->dim; j++) {
				double mx = 0, sum = 0, sq = 0;
				for (size_t i = 0; i < s->n_rows; i++) {
					double v = fabs(s->rows[i * s->dim + j]);
					mx = fmax(mx, v);
					sum += v;
					sq += v * v;
				}
				CHECK_NEAR(s->mean_sq[j], sq / (double)s->n_rows,
					   1e-5 * (1 + sq / (double)s->n_rows));
				CHECK(s->max_abs[j] == (float)mx);
				CHECK_NEAR(s->mean_abs[j], sum / (double)s->n_rows,
					   1e-6 * (1 + sum / (double)s->n_rows));
				CHECK(s->mean_abs[j] > 0);
			}
		}
	CHECK_EQ_STR(calib_site_name(ENGINE_SITE_FFN_DOWN_IN), "ffn_down_in");
	free(x);
	free(xn);
	free(toks);
	calib_stats_free(cs);
	test_run_close(&r);
}

/* A kept subset: K distinct rows of the full record, in token order, the same at every site,
 * chosen by the seed; passes of 7 tokens give the same statistics as one pass. */
TEST(test_subset_and_passes)
{
	test_run r, r7;
	CHECK(test_run_open(&r, path_fx, NULL, 256) == 0);
	CHECK(test_run_open(&r7, path_fx, NULL, 7) == 0);
	uint64_t st = seed + 1;
	size_t N = 4, L = 31, n_text = 4 * 31 + 17, K = 37;
	int32_t *toks = random_tokens(n_text, &st);
	os_error err;
	calib_opts co = calib_opts_default();
	co.n_samples = N, co.seq_len = L, co.keep_rows = N * L;
	calib_stats *full = NULL, *a = NULL, *b = NULL, *c2 = NULL;
	CHECK(calib_run_tokens(r.e, toks, n_text, &co, &full, &err) == OS_OK);
	co.keep_rows = K, co.seed = 99;
	CHECK(calib_run_tokens(r.e, toks, n_text, &co, &a, &err) == OS_OK);
	CHECK(calib_run_tokens(r7.e, toks, n_text, &co, &b, &err) == OS_OK);
	co.seed = 100;
	CHECK(calib_run_tokens(r.e, toks, n_text, &co, &c2, &err) == OS_OK);
	const model_config *c = model_get_config(r.m);
	size_t differ = 0;
	for (size_t l = 0; l < c->n_layers; l++)
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			const calib_site *F = calib_get(full, l, site), *A = calib_get(a, l, site);
			const calib_site *B = calib_get(b, l, site), *C = calib_get(c2, l, site);
			size_t d = F->dim;
			CHECK_EQ_INT(A->n_rows, K);
			/* each kept row is a full row, strictly after the previous one */
			size_t next = 0;
			for (size_t k = 0; k < K; k++) {
				while (next < F->n_rows &&
				       memcmp(F->rows + next * d, A->rows + k * d, d * sizeof(float)))
					next++;
				CHECK_MSG(next < F->n_rows, "layer %zu %s row %zu not found in order", l,
					  calib_site_name(site), k);
				next++;
			}
			for (size_t j = 0; j < d; j++) {
				CHECK(F->max_abs[j] == A->max_abs[j]);
				CHECK_NEAR(B->max_abs[j], A->max_abs[j], 1e-5 * (1 + A->max_abs[j]));
				CHECK_NEAR(B->mean_abs[j], A->mean_abs[j], 1e-5 * (1 + A->mean_abs[j]));
			}
			for (size_t k = 0; k < K * d; k++)
				CHECK_NEAR(B->rows[k], A->rows[k], 1e-4 * (1 + fabs(A->rows[k])));
			differ += memcmp(A->rows, C->rows, K * d * sizeof(float)) != 0;
		}
	CHECK(differ > 0); /* another seed, another subset */
	calib_stats_free(full);
	calib_stats_free(a);
	calib_stats_free(b);
	calib_stats_free(c2);
	free(toks);
	test_run_close(&r);
	test_run_close(&r7);
}

typedef struct cb_state {
	size_t calls, last_done, last_total, stop_after;
	int monotone;
} cb_state;

static void on_progress(void *ctx, size_t done, size_t total)
{
	cb_state *s = ctx;
	if (done != s->last_done + 1)
		s->monotone = 0;
	s->calls++;
	s->last_done = done;
	s->last_total = total;
}

static bool on_stop(void *ctx)
{
	cb_state *s = ctx;
	return s->stop_after && s->calls >= s->stop_after;
}

TEST(test_progress_stop_errors)
{
	test_run r;
	CHECK(test_run_open(&r, path_fx, NULL, 64) == 0);
	uint64_t st = seed + 2;
	int32_t *toks = random_tokens(200, &st);
	os_error err;
	calib_stats *cs = NULL;
	cb_state s = {.monotone = 1};
	calib_opts co = calib_opts_default();
	co.n_samples = 5, co.seq_len = 20, co.progress = on_progress, co.should_stop = on_stop,
	co.cb_ctx = &s;
	CHECK(calib_run_tokens(r.e, toks, 200, &co, &cs, &err) == OS_OK);
	CHECK(s.calls == 5 && s.last_done == 5 && s.last_total == 5 && s.monotone);
	calib_stats_free(cs);
	cs = NULL;
	s = (cb_state){.monotone = 1, .stop_after = 2};
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 200, &co, &cs, &err), OS_ESTOPPED);
	CHECK(cs == NULL && s.calls == 2);
	CHECK(strstr(err.msg, "2 of 5"));
	/* the KV cache is left empty: a full run still fits */
	s = (cb_state){.monotone = 1};
	CHECK(calib_run_tokens(r.e, toks, 200, &co, &cs, &err) == OS_OK);
	calib_stats_free(cs);
	cs = NULL;
	/* too short: 5 x 41 > 200 */
	co.seq_len = 41;
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 200, &co, &cs, &err), OS_EUSAGE);
	CHECK(strstr(err.msg, "too short") && strstr(err.msg, "200 tokens") && strstr(err.msg, "205"));
	CHECK(cs == NULL);
	/* longer than the model's context */
	co.n_samples = 1, co.seq_len = 100000;
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 200, &co, &cs, &err), OS_EUSAGE);
	/* a bad BOS */
	co.seq_len = 10, co.add_bos = true, co.bos = GGUF_FIXTURE_VOCAB;
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 200, &co, &cs, &err), OS_EUSAGE);
	/* BOS at position 0: the first rows of ATTN_IN are BOS's embedding normed */
	co.bos = 5, co.keep_rows = 10;
	CHECK(calib_run_tokens(r.e, toks, 200, &co, &cs, &err) == OS_OK);
	calib_stats *cs2 = NULL;
	int32_t *t2 = malloc(200 * sizeof *t2);
	memcpy(t2, toks, 200 * sizeof *t2);
	t2[0] = 5;
	co.add_bos = false;
	CHECK(calib_run_tokens(r.e, t2, 200, &co, &cs2, &err) == OS_OK);
	CHECK(memcmp(calib_get(cs, 1, 0)->rows, calib_get(cs2, 1, 0)->rows,
		     10 * calib_get(cs, 1, 0)->dim * sizeof(float)) == 0);
	calib_stats_free(cs);
	calib_stats_free(cs2);
	free(t2);
	free(toks);
	test_run_close(&r);
}

TEST(test_text_and_file)
{
	test_run r;
	CHECK(test_run_open(&r, path_fx, NULL, 64) == 0);
	gguf_file *f = NULL;
	tokenizer *tok = NULL;
	os_error err;
	CHECK(gguf_open(&f, path_fx, &err) == OS_OK);
	CHECK(tokenizer_open(&tok, f, &err) == OS_OK);
	gguf_close(f);
	char text[8192];
	size_t n = 0;
	for (int i = 0; i < 120; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "line %d: the river%d runs by stone %d.\n",
				      i, i * 7 % 13, i * 3);
	calib_opts co = calib_opts_default();
	co.n_samples = 4, co.seq_len = 32;
	calib_stats *cs = NULL;
	CHECK_MSG(calib_run_text(r.e, tok, text, n, &co, &cs, &err) == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(calib_n_tokens(cs), 4 * 32);
	calib_stats_free(cs);
	cs = NULL;
	char p[160];
	snprintf(p, sizeof p, "%s/text.txt", dir);
	FILE *fp = fopen(p, "wb");
	CHECK(fp && fwrite(text, 1, n, fp) == n);
	fclose(fp);
	CHECK(calib_run_file(r.e, tok, p, &co, &cs, &err) == OS_OK);
	calib_stats_free(cs);
	cs = NULL;
	snprintf(p, sizeof p, "%s/nosuch.txt", dir);
	CHECK_EQ_INT(calib_run_file(r.e, tok, p, &co, &cs, &err), OS_EIO);
	CHECK(strstr(err.msg, "nosuch.txt"));
	snprintf(p, sizeof p, "%s/empty.txt", dir);
	fp = fopen(p, "wb");
	CHECK(fp);
	fclose(fp);
	CHECK_EQ_INT(calib_run_file(r.e, tok, p, &co, &cs, &err), OS_EUSAGE);
	CHECK(strstr(err.msg, "empty"));
	CHECK_EQ_INT(calib_run_text(r.e, tok, "short", 5, &co, &cs, &err), OS_EUSAGE);
	CHECK(strstr(err.msg, "too short"));
	tokenizer_close(tok);
	test_run_close(&r);
}

int main(void)
{
	seed = test_seed(seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_calibrate"))
		return 1;
	snprintf(path_fx, sizeof path_fx, "%s/fx.gguf", dir);
	gguf_fixture_opts fo = {.seed = seed, .n_layers = 3, .dim = 40, .n_heads = 4,
				.n_kv_heads = 2, .ffn_dim = 72, .ctx = 256};
	os_error err;
	if (gguf_fixture_write(path_fx, &fo, &err) != OS_OK) {
		printf("fixture: %s\n", err.msg);
		return 1;
	}
	RUN(test_rows_are_layer_inputs);
	RUN(test_subset_and_passes);
	RUN(test_progress_stop_errors);
	RUN(test_text_and_file);
	test_tmpdir_remove(dir);
	return test_summary();
}
