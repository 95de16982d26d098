/* test_calibrate_hessian.c: the Hessians E[x x^T] of calibration (calibrate.h) on the
 * fixture model: with every token's row kept, each site's H equals a double X^T X / n of
 * those rows, through the backend's matmul and through the plain loops, split passes or not;
 * H is symmetric; the layer range collects only its layers; the budget is checked before any
 * work with a message naming the size. TEST_SEED overrides the seed. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/format/fixture.h"
#include "core/optimize/calibrate.h"
#include "tests/engine_run.h"
#include "tests/test.h"

#include <unistd.h>

static uint64_t seed = 20261124;
static char dir[64];
static char path_fx[128];

static int32_t *random_tokens(size_t n, uint64_t *st)
{
	int32_t *t = malloc(n * sizeof *t);
	for (size_t i = 0; t && i < n; i++)
		t[i] = (int32_t)(test_rand_next(st) % GGUF_FIXTURE_VOCAB);
	return t;
}

/* Largest |H - X^T X / n| relative to the largest |entry| of the reference, the reference
 * from the kept rows (all of them) in double; also whether H is exactly symmetric. */
static double hess_err(const calib_site *cs, const float *H, bool *symmetric)
{
	size_t d = cs->dim, n = cs->n_rows;
	double worst = 0, scale = 0;
	*symmetric = true;
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < d; j++) {
			double acc = 0;
			for (size_t t = 0; t < n; t++)
				acc += (double)cs->rows[t * d + i] * cs->rows[t * d + j];
			acc /= (double)n;
			scale = fmax(scale, fabs(acc));
			worst = fmax(worst, fabs(acc - H[i * d + j]));
			if (H[i * d + j] != H[j * d + i])
				*symmetric = false;
		}
	return scale > 0 ? worst / scale : INFINITY;
}

/* Every site of every layer against the reference; be chooses the matmul or the loops. */
static void check_all(test_run *r, backend *be, size_t N, size_t L, const int32_t *toks,
		      size_t n_text)
{
	os_error err;
	calib_opts co = calib_opts_default();
	co.n_samples = N;
	co.seq_len = L;
	co.keep_rows = N * L; /* every token: the reference sees what H saw */
	co.hessian = true;
	co.be = be;
	calib_stats *cs = NULL;
	CHECK_MSG(calib_run_tokens(r->e, toks, n_text, &co, &cs, &err) == OS_OK, "%s", err.msg);
	if (!cs)
		return;
	const model_config *c = model_get_config(r->m);
	double worst = 0;
	for (size_t l = 0; l < c->n_layers; l++)
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			const calib_site *s = calib_get(cs, l, site);
			const float *H = calib_hessian(cs, l, site);
			CHECK_MSG(H != NULL, "layer %zu %s: no Hessian", l, calib_site_name(site));
			if (!H)
				continue;
			CHECK_EQ_INT(s->n_rows, N * L);
			bool sym;
			double e = hess_err(s, H, &sym);
			CHECK_MSG(sym, "layer %zu %s: H not symmetric", l, calib_site_name(site));
			worst = fmax(worst, e);
			/* the diagonal is calibrate's mean x^2 */
			for (size_t j = 0; j < s->dim; j++)
				CHECK_NEAR(H[j * s->dim + j], s->mean_sq[j], 1e-4 * (1 + s->mean_sq[j]));
		}
	CHECK_MSG(worst < 1e-5, "relative error %g", worst);
	calib_stats_free(cs);
}

TEST(test_hessian_matches_rows)
{
	test_run r, r5;
	CHECK(test_run_open(&r, path_fx, NULL, 256) == 0);
	CHECK(test_run_open(&r5, path_fx, NULL, 5) == 0); /* passes of 5 tokens: H sums across passes */
	uint64_t st = seed;
	size_t N = 3, L = 37, n_text = 200;
	int32_t *toks = random_tokens(n_text, &st);
	CHECK(toks);
	check_all(&r, r.be, N, L, toks, n_text);    /* backend matmul */
	check_all(&r, NULL, N, L, toks, n_text);    /* loops */
	check_all(&r5, r5.be, N, L, toks, n_text);  /* split passes */
	free(toks);
	test_run_close(&r);
	test_run_close(&r5);
}

static void count_progress(void *ctx, size_t done, size_t total)
{
	(void)done;
	(void)total;
	(*(size_t *)ctx)++;
}

TEST(test_hessian_range_and_budget)
{
	test_run r;
	CHECK(test_run_open(&r, path_fx, NULL, 64) == 0);
	uint64_t st = seed + 1;
	int32_t *toks = random_tokens(300, &st);
	CHECK(toks);
	const model_config *c = model_get_config(r.m);
	os_error err;
	calib_opts co = calib_opts_default();
	co.n_samples = 4;
	co.seq_len = 29;
	co.be = r.be;
	calib_stats *cs = NULL;
	/* no option: no Hessians */
	CHECK(calib_run_tokens(r.e, toks, 300, &co, &cs, &err) == OS_OK);
	for (size_t l = 0; cs && l < c->n_layers; l++)
		CHECK(calib_hessian(cs, l, ENGINE_SITE_FFN_IN) == NULL);
	calib_stats_free(cs);
	/* layers [1, 2) only, and the same H there as a full run */
	calib_stats *full = NULL;
	co.hessian = true;
	CHECK(calib_run_tokens(r.e, toks, 300, &co, &full, &err) == OS_OK);
	co.layer_begin = 1;
	co.layer_end = 2;
	CHECK_MSG(calib_run_tokens(r.e, toks, 300, &co, &cs, &err) == OS_OK, "%s", err.msg);
	for (size_t l = 0; cs && full && l < c->n_layers; l++)
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			const float *h = calib_hessian(cs, l, site);
			CHECK((h != NULL) == (l == 1));
			size_t d = calib_get(cs, l, site)->dim;
			if (h)
				CHECK(memcmp(h, calib_hessian(full, l, site), d * d * sizeof *h) == 0);
		}
	CHECK(cs && calib_hessian(cs, 7, 0) == NULL && calib_hessian(cs, 0, -1) == NULL);
	calib_stats_free(cs);
	calib_stats_free(full);
	/* bytes: one layer is dim^2 * 3 + ffn^2 floats here (n_heads * head_dim = dim) */
	size_t one = (3 * (size_t)c->dim * c->dim + (size_t)c->ffn_dim * c->ffn_dim) * 4;
	CHECK_EQ_INT(calib_hessian_bytes(c, 0, 0), c->n_layers * one);
	CHECK_EQ_INT(calib_hessian_bytes(c, 1, 2), one);
	/* over the budget: refused before any sample, naming the size */
	co.layer_begin = 0;
	co.layer_end = 0;
	co.hessian_budget = calib_hessian_bytes(c, 0, 0) - 1;
	size_t calls = 0;
	co.progress = count_progress;
	co.cb_ctx = &calls;
	cs = NULL;
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 300, &co, &cs, &err), OS_ENOMEM);
	CHECK(cs == NULL && calls == 0);
	CHECK_MSG(strstr(err.msg, "MiB") && strstr(err.msg, "budget"), "%s", err.msg);
	co.hessian_budget = calib_hessian_bytes(c, 0, 0);
	CHECK(calib_run_tokens(r.e, toks, 300, &co, &cs, &err) == OS_OK);
	CHECK_EQ_INT(calls, 4);
	calib_stats_free(cs);
	/* a range outside the model */
	co.layer_begin = 2;
	co.layer_end = c->n_layers + 1;
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 300, &co, &cs, &err), OS_EUSAGE);
	co.layer_begin = 2;
	co.layer_end = 2;
	CHECK_EQ_INT(calib_run_tokens(r.e, toks, 300, &co, &cs, &err), OS_EUSAGE);
	free(toks);
	test_run_close(&r);
}

int main(void)
{
	seed = test_seed(seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_calib_hess"))
		return 1;
	snprintf(path_fx, sizeof path_fx, "%s/fx.gguf", dir);
	/* awkward widths: 56 and 76 are no multiple of 16 floats */
	gguf_fixture_opts fo = {.seed = seed, .n_layers = 3, .dim = 56, .n_heads = 4,
				.n_kv_heads = 2, .ffn_dim = 76, .ctx = 256};
	os_error err;
	if (gguf_fixture_write(path_fx, &fo, &err) != OS_OK) {
		printf("fixture: %s\n", err.msg);
		return 1;
	}
	RUN(test_hessian_matches_rows);
	RUN(test_hessian_range_and_budget);
	test_tmpdir_remove(dir);
	return test_summary();
}
