/* test_smoothquant.c: SmoothQuant on the fixture model (grouped-query and multi-head
 * attention): folding leaves the f32 logits unchanged, makes the per-channel max |x| of the
 * quantized layers' inputs flatter where there were outlier channels, and the scales follow
 * the formula; errors for a bad alpha, BF16 weights and GQA-inconsistent scales.
 * TEST_SEED overrides the seed. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/format/fixture.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/smoothquant.h"
#include "tests/engine_run.h"
#include "tests/test.h"

#include <unistd.h>

static uint64_t seed = 20250611;
static char dir[64];

/* Multiplies a few channels of every norm by large factors: the outliers SmoothQuant is for. */
static void add_outliers(model *m, uint64_t *st)
{
	const model_config *c = model_get_config(m);
	model_weights *w = model_weights_mut(m);
	for (size_t l = 0; l < c->n_layers; l++)
		for (int k = 0; k < 3; k++) {
			size_t j = test_rand_next(st) % c->dim;
			w->layers[l].attn_norm[j] *= 25.0f + 10.0f * test_rand_float(st);
			j = test_rand_next(st) % c->dim;
			w->layers[l].ffn_norm[j] *= 25.0f + 10.0f * test_rand_float(st);
		}
}

static int cmp_f(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* max / median of a site's per-channel max |x|. */
static double peakiness(const calib_site *cs)
{
	float *v = malloc(cs->dim * sizeof *v);
	memcpy(v, cs->max_abs, cs->dim * sizeof *v);
	qsort(v, cs->dim, sizeof *v, cmp_f);
	double r = v[cs->dim - 1] / (v[cs->dim / 2] > 0 ? v[cs->dim / 2] : 1e-30f);
	free(v);
	return r;
}

static void check_identity(uint32_t n_heads, uint32_t n_kv_heads, float alpha)
{
	char path[128];
	snprintf(path, sizeof path, "%s/fx_%u_%u.gguf", dir, n_heads, n_kv_heads);
	gguf_fixture_opts fo = {.seed = seed, .n_layers = 2, .dim = 48, .n_heads = n_heads,
				.n_kv_heads = n_kv_heads, .ffn_dim = 88, .ctx = 256};
	os_error err;
	CHECK_MSG(gguf_fixture_write(path, &fo, &err) == OS_OK, "fixture: %s", err.msg);
	test_run a, b;
	CHECK(test_run_open(&a, path, &(model_load_opts){.weight_format = BE_WFMT_F32}, 64) == 0);
	CHECK(test_run_open(&b, path, &(model_load_opts){.weight_format = BE_WFMT_F32}, 64) == 0);
	uint64_t st = seed ^ n_heads;
	uint64_t st2 = st;
	add_outliers(a.m, &st);
	add_outliers(b.m, &st2);

	size_t n_cal = 4 * 40, vocab = model_n_vocab(a.m);
	int32_t *cal = malloc(n_cal * sizeof *cal), toks[37];
	for (size_t i = 0; i < n_cal; i++)
		cal[i] = (int32_t)(test_rand_next(&st) % GGUF_FIXTURE_VOCAB);
	for (size_t i = 0; i < 37; i++)
		toks[i] = (int32_t)(test_rand_next(&st) % GGUF_FIXTURE_VOCAB);
	calib_opts co = calib_opts_default();
	co.n_samples = 4, co.seq_len = 40, co.keep_rows = 16;
	calib_stats *before = NULL, *after = NULL;
	CHECK_MSG(calib_run_tokens(b.e, cal, n_cal, &co, &before, &err) == OS_OK, "%s", err.msg);
	CHECK_MSG(smoothquant_apply(b.m, before, alpha, &err) == OS_OK, "%s", err.msg);

	float *la = malloc(37 * vocab * sizeof *la), *lb = malloc(37 * vocab * sizeof *lb);
	CHECK(la && lb);
	CHECK(test_logits_all(a.e, toks, 37, la) == 0);
	CHECK(test_logits_all(b.e, toks, 37, lb) == 0);
	double maxd = 0, maxa = 0;
	for (size_t i = 0; i < 37 * vocab; i++) {
		double d = fabs((double)la[i] - lb[i]);
		maxd = d > maxd ? d : maxd;
		maxa = fabs(la[i]) > maxa ? fabs(la[i]) : maxa;
	}
	printf("  heads %u/%u alpha %.2f: max |logit diff| %.3g (max |logit| %.3g)\n", n_heads,
	       n_kv_heads, alpha, maxd, maxa);
	CHECK(maxd <= 1e-4 * (1 + maxa));

	/* flatter inputs where the outliers were (ATTN_IN, FFN_IN) */
	if (alpha > 0) {
		CHECK_MSG(calib_run_tokens(b.e, cal, n_cal, &co, &after, &err) == OS_OK, "%s",
			  err.msg);
		for (size_t l = 0; l < 2; l++)
			for (int site = 0; site < ENGINE_N_SITES; site++) {
				double p0 = peakiness(calib_get(before, l, site));
				double p1 = peakiness(calib_get(after, l, site));
				printf("  layer %zu %-11s max/median of max|x|: %7.2f -> %6.2f\n", l,
				       calib_site_name(site), p0, p1);
				if (site == ENGINE_SITE_ATTN_IN || site == ENGINE_SITE_FFN_IN)
					CHECK(p1 < 0.5 * p0);
			}
	}
	calib_stats_free(before);
	calib_stats_free(after);
	free(la);
	free(lb);
	free(cal);
	test_run_close(&a);
	test_run_close(&b);
}

TEST(test_identity_gqa)
{
	check_identity(4, 2, 0.5f);
}

TEST(test_identity_mha)
{
	check_identity(4, 4, 0.5f);
}

TEST(test_identity_alpha_ends)
{
	check_identity(6, 2, 0.0f);
	check_identity(6, 2, 1.0f);
	check_identity(6, 3, 0.8f);
}

/* The scales of one site follow s_j = max|X_j|^a / max|W_j|^(1-a), and ATTN_OUT's are
 * shared across each kv group. */
TEST(test_scales_formula)
{
	char path[128];
	snprintf(path, sizeof path, "%s/fx_formula.gguf", dir);
	gguf_fixture_opts fo = {.seed = seed + 1, .n_layers = 2, .dim = 48, .n_heads = 6,
				.n_kv_heads = 2, .ffn_dim = 72, .ctx = 128};
	os_error err;
	CHECK(gguf_fixture_write(path, &fo, &err) == OS_OK);
	test_run r;
	CHECK(test_run_open(&r, path, &(model_load_opts){.weight_format = BE_WFMT_F32}, 64) == 0);
	uint64_t st = seed;
	int32_t cal[3 * 30];
	for (size_t i = 0; i < 90; i++)
		cal[i] = (int32_t)(test_rand_next(&st) % GGUF_FIXTURE_VOCAB);
	calib_opts co = calib_opts_default();
	co.n_samples = 3, co.seq_len = 30;
	calib_stats *cs = NULL;
	CHECK(calib_run_tokens(r.e, cal, 90, &co, &cs, &err) == OS_OK);
	const model_config *c = model_get_config(r.m);
	const model_weights *w = model_get_weights(r.m);
	float s[128];
	float alpha = 0.37f;
	/* FFN_IN: w_gate and w_up */
	CHECK(smooth_compute_scales(r.m, cs, 1, ENGINE_SITE_FFN_IN, alpha, s, &err) == OS_OK);
	for (size_t j = 0; j < c->dim; j++) {
		double wm = 0;
		const be_weight *ms[2] = {&w->layers[1].w_gate, &w->layers[1].w_up};
		for (int k = 0; k < 2; k++)
			for (size_t rr = 0; rr < ms[k]->rows; rr++)
				wm = fmax(wm, fabs(((const float *)ms[k]->data)[rr * c->dim + j]));
		double want = pow(calib_get(cs, 1, ENGINE_SITE_FFN_IN)->max_abs[j], alpha) /
			      pow(wm, 1 - alpha);
		CHECK_NEAR(s[j], want, 1e-5 * want);
	}
	/* ATTN_OUT: shared within each group of 3 heads, and the max over the group's xmax */
	CHECK(smooth_compute_scales(r.m, cs, 0, ENGINE_SITE_ATTN_OUT, alpha, s, &err) == OS_OK);
	size_t hd = c->head_dim, g = c->n_heads / c->n_kv_heads;
	for (size_t h = 0; h < c->n_heads; h++)
		for (size_t d = 0; d < hd; d++)
			CHECK(s[h * hd + d] == s[(h / g * g) * hd + d]);
	/* an inconsistent vector is refused */
	s[hd + 1] *= 2;
	CHECK_EQ_INT(smooth_fold(r.m, 0, ENGINE_SITE_ATTN_OUT, s, &err), OS_EUSAGE);
	CHECK(strstr(err.msg, "kv group"));
	s[0] = 0;
	CHECK_EQ_INT(smooth_fold(r.m, 0, ENGINE_SITE_ATTN_IN, s, &err), OS_EUSAGE);
	CHECK_EQ_INT(smoothquant_apply(r.m, cs, 1.5f, &err), OS_EUSAGE);
	CHECK(strstr(err.msg, "alpha"));
	CHECK_EQ_INT(smoothquant_apply(r.m, cs, NAN, &err), OS_EUSAGE);
	calib_stats_free(cs);
	test_run_close(&r);
}

TEST(test_bf16_refused)
{
	char path[128];
	snprintf(path, sizeof path, "%s/fx_4_2.gguf", dir);
	test_run r;
	CHECK(test_run_open(&r, path, &(model_load_opts){.weight_format = BE_WFMT_BF16}, 64) == 0);
	uint64_t st = seed;
	int32_t cal[2 * 20];
	for (size_t i = 0; i < 40; i++)
		cal[i] = (int32_t)(test_rand_next(&st) % GGUF_FIXTURE_VOCAB);
	calib_opts co = calib_opts_default();
	co.n_samples = 2, co.seq_len = 20;
	calib_stats *cs = NULL;
	os_error err;
	CHECK(calib_run_tokens(r.e, cal, 40, &co, &cs, &err) == OS_OK);
	CHECK_EQ_INT(smoothquant_apply(r.m, cs, 0.5f, &err), OS_EUNSUPPORTED);
	CHECK(strstr(err.msg, "F32"));
	calib_stats_free(cs);
	test_run_close(&r);
}

int main(void)
{
	seed = test_seed(seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_smoothquant"))
		return 1;
	RUN(test_identity_gqa);
	RUN(test_identity_mha);
	RUN(test_identity_alpha_ends);
	RUN(test_scales_formula);
	RUN(test_bf16_refused);
	test_tmpdir_remove(dir);
	return test_summary();
}
