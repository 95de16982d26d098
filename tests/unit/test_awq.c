/* test_awq.c: AWQ's scale search beats plain INT4 RTN on a constructed layer with outlier
 * input channels (and never loses: alpha = 0 is RTN), the backend and plain-C searches
 * agree, and on the fixture model the transform keeps the f32 logits while lowering the
 * layers' output error; the clipping search's error is reported (and checked below RTN's).
 * TEST_SEED overrides the seed. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/format/fixture.h"
#include "core/optimize/awq.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/quant_formats.h"
#include "tests/engine_run.h"
#include "tests/test.h"

#include <unistd.h>

static uint64_t seed = 20250613;
static char dir[64];

/* A layer of rows x cols with n_x input rows whose few outlier channels are large (as in
 * LLM activations); W random. */
static void make_layer(float *W, size_t rows, float *X, size_t n_x, size_t cols, float *mean,
		       uint64_t *st, float outlier)
{
	for (size_t i = 0; i < rows * cols; i++)
		W[i] = 0.05f * test_rand_float(st);
	float *gain = malloc(cols * sizeof *gain);
	for (size_t j = 0; j < cols; j++)
		gain[j] = 0.5f + 0.5f * fabsf(test_rand_float(st));
	for (int k = 0; k < 5; k++)
		gain[test_rand_next(st) % cols] = outlier;
	for (size_t j = 0; j < cols; j++)
		mean[j] = 0;
	for (size_t i = 0; i < n_x; i++)
		for (size_t j = 0; j < cols; j++) {
			X[i * cols + j] = gain[j] * test_rand_float(st);
			mean[j] += fabsf(X[i * cols + j]) / (float)n_x;
		}
	free(gain);
}

TEST(test_search_beats_rtn)
{
	static const struct {
		size_t rows, cols, n_x, group;
	} cases[] = {{17, 128, 33, 32}, {31, 192, 64, 64}, {7, 256, 15, 128}, {48, 96, 40, 32}};
	uint64_t st = seed;
	backend *be = NULL;
	os_error err;
	CHECK(backend_cpu_new(&be, NULL, &err) == OS_OK);
	for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
		size_t rows = cases[t].rows, cols = cases[t].cols, n_x = cases[t].n_x;
		float *W = malloc(rows * cols * sizeof *W), *W2 = malloc(rows * cols * sizeof *W2);
		float *X = malloc(n_x * cols * sizeof *X), *mean = malloc(cols * sizeof *mean);
		float *s = malloc(cols * sizeof *s), *s2 = malloc(cols * sizeof *s2);
		make_layer(W, rows, X, n_x, cols, mean, &st, 30.0f);
		for (size_t i = 0; i < rows * cols; i++)
			W2[i] = 0.03f * test_rand_float(&st);
		be_weight w1 = {.fmt = BE_WFMT_F32, .rows = rows, .cols = cols, .data = W};
		be_weight w2 = {.fmt = BE_WFMT_F32, .rows = rows / 2 + 1, .cols = cols, .data = W2};
		const be_weight *mats[2] = {&w1, &w2};
		awq_opts o = {.group = cases[t].group, .n_grid = 20};
		float alpha = -1, alpha2 = -1;
		double e_rtn, e_best, en, e_rtn2, e_best2, en2;
		CHECK_MSG(awq_search(mats, 2, X, n_x, mean, &o, s, &alpha, &e_rtn, &e_best, &en,
				     &err) == OS_OK, "%s", err.msg);
		/* the same through the backend's matmul */
		o.be = be;
		CHECK(awq_search(mats, 2, X, n_x, mean, &o, s2, &alpha2, &e_rtn2, &e_best2, &en2,
				 &err) == OS_OK);
		printf("  %zux%zu group %zu: RTN error %.4g, AWQ %.4g (alpha %.2f): %.1f%% lower; "
		       "energy %.4g\n",
		       rows, cols, cases[t].group, e_rtn, e_best, alpha,
		       100.0 * (1 - e_best / e_rtn), en);
		CHECK(e_best <= e_rtn);
		CHECK(e_best < 0.9 * e_rtn); /* outliers: AWQ must help clearly */
		CHECK(alpha > 0);
		CHECK_NEAR(e_rtn2, e_rtn, 1e-3 * e_rtn);
		CHECK_NEAR(alpha2, alpha, 0.051);
		/* the RTN error is that of quant_matrix_new's INT4 */
		quant_matrix q;
		CHECK(quant_matrix_new(&q, QUANT_INT4, W, rows, cols, cases[t].group, &err) == OS_OK);
		float *Wd = malloc(rows * cols * sizeof *Wd);
		quant_matrix_dequantize(&q, Wd);
		quant_matrix_free(&q);
		double e1 = 0;
		for (size_t i = 0; i < n_x; i++)
			for (size_t r = 0; r < rows; r++) {
				double y = 0, yq = 0;
				for (size_t k = 0; k < cols; k++) {
					y += (double)X[i * cols + k] * W[r * cols + k];
					yq += (double)X[i * cols + k] * Wd[r * cols + k];
				}
				e1 += (y - yq) * (y - yq);
			}
		CHECK(e1 <= e_rtn * 1.001); /* the other matrix adds to e_rtn */
		/* scales: positive, normalised so max * min = 1 */
		float lo = INFINITY, hi = 0;
		for (size_t j = 0; j < cols; j++)
			lo = fminf(lo, s[j]), hi = fmaxf(hi, s[j]);
		CHECK(lo > 0);
		CHECK_NEAR(lo * hi, 1.0, 1e-4);
		free(Wd);
		free(W);
		free(W2);
		free(X);
		free(mean);
		free(s);
		free(s2);
	}
	/* without outliers, the search still never loses to RTN */
	{
		size_t rows = 9, cols = 64, n_x = 11;
		float *W = malloc(rows * cols * 4), *X = malloc(n_x * cols * 4), *mean = malloc(cols * 4);
		float *s = malloc(cols * 4), alpha;
		make_layer(W, rows, X, n_x, cols, mean, &st, 1.0f);
		be_weight w1 = {.fmt = BE_WFMT_F32, .rows = rows, .cols = cols, .data = W};
		const be_weight *mats[1] = {&w1};
		awq_opts o = {.group = 32};
		double e_rtn, e_best, en;
		CHECK(awq_search(mats, 1, X, n_x, mean, &o, s, &alpha, &e_rtn, &e_best, &en, &err) ==
		      OS_OK);
		CHECK(e_best <= e_rtn);
		o.group = 48;
		CHECK_EQ_INT(awq_search(mats, 1, X, n_x, mean, &o, s, &alpha, &e_rtn, &e_best, &en,
					&err), OS_EUSAGE);
		free(W);
		free(X);
		free(mean);
		free(s);
	}
	backend_free(be);
}

TEST(test_group_for)
{
	CHECK_EQ_INT(awq_group_for(128, 1536), 128);
	CHECK_EQ_INT(awq_group_for(128, 576), 64);
	CHECK_EQ_INT(awq_group_for(128, 96), 32);
	CHECK_EQ_INT(awq_group_for(64, 1536), 64);
	CHECK_EQ_INT(awq_group_for(32, 1536), 32);
	CHECK_EQ_INT(awq_group_for(128, 40), 0);
}

static void add_outliers(model *m, uint64_t *st)
{
	const model_config *c = model_get_config(m);
	model_weights *w = model_weights_mut(m);
	for (size_t l = 0; l < c->n_layers; l++)
		for (int k = 0; k < 3; k++) {
			w->layers[l].attn_norm[test_rand_next(st) % c->dim] *= 20.0f;
			w->layers[l].ffn_norm[test_rand_next(st) % c->dim] *= 20.0f;
		}
}

/* On the fixture (GQA 8/2 heads, widths 64 / 160): logits unchanged, error lowered. */
TEST(test_fixture_model)
{
	char path[128];
	snprintf(path, sizeof path, "%s/fx.gguf", dir);
	gguf_fixture_opts fo = {.seed = seed, .n_layers = 2, .dim = 64, .n_heads = 8,
				.n_kv_heads = 2, .ffn_dim = 160, .ctx = 256};
	os_error err;
	CHECK_MSG(gguf_fixture_write(path, &fo, &err) == OS_OK, "%s", err.msg);
	test_run a, b;
	CHECK(test_run_open(&a, path, NULL, 64) == 0);
	CHECK(test_run_open(&b, path, NULL, 64) == 0);
	uint64_t st = seed, st2 = seed;
	add_outliers(a.m, &st);
	add_outliers(b.m, &st2);
	size_t n_cal = 6 * 32, vocab = model_n_vocab(a.m);
	int32_t *cal = malloc(n_cal * sizeof *cal), toks[29];
	for (size_t i = 0; i < n_cal; i++)
		cal[i] = (int32_t)(test_rand_next(&st) % GGUF_FIXTURE_VOCAB);
	for (size_t i = 0; i < 29; i++)
		toks[i] = (int32_t)(test_rand_next(&st) % GGUF_FIXTURE_VOCAB);
	calib_opts co = calib_opts_default();
	co.n_samples = 6, co.seq_len = 32, co.keep_rows = 64;
	calib_stats *cs = NULL;
	CHECK(calib_run_tokens(b.e, cal, n_cal, &co, &cs, &err) == OS_OK);
	awq_opts ao = {.group = 128, .be = b.be}; /* 64 and 160 columns fall back to 64 / 32 */
	awq_report rep;
	CHECK_MSG(awq_apply(b.m, cs, &ao, &rep, &err) == OS_OK, "%s", err.msg);
	printf("  fixture: %zu sites, output error RTN %.4g -> AWQ %.4g (%.1f%% lower), relative "
	       "%.3g -> %.3g, mean alpha %.2f\n",
	       rep.n_sites, rep.err_rtn, rep.err_awq, 100 * (1 - rep.err_awq / rep.err_rtn),
	       rep.err_rtn / rep.energy, rep.err_awq / rep.energy, rep.mean_alpha);
	CHECK_EQ_INT(rep.n_sites, 2 * ENGINE_N_SITES);
	CHECK(rep.err_awq <= rep.err_rtn);
	CHECK(rep.err_awq < rep.err_rtn); /* outlier channels: strictly better */
	CHECK(rep.err_clip == rep.err_awq);
	float *la = malloc(29 * vocab * sizeof *la), *lb = malloc(29 * vocab * sizeof *lb);
	CHECK(test_logits_all(a.e, toks, 29, la) == 0);
	CHECK(test_logits_all(b.e, toks, 29, lb) == 0);
	double maxd = 0, maxa = 0;
	for (size_t i = 0; i < 29 * vocab; i++) {
		maxd = fmax(maxd, fabs((double)la[i] - lb[i]));
		maxa = fmax(maxa, fabs(la[i]));
	}
	printf("  fixture: max |logit diff| after the AWQ transform %.3g (max |logit| %.3g)\n",
	       maxd, maxa);
	CHECK(maxd <= 1e-4 * (1 + maxa));

	/* with clipping, on a fresh copy: reported, and the search stays finite */
	test_run c;
	CHECK(test_run_open(&c, path, NULL, 64) == 0);
	uint64_t st3 = seed;
	add_outliers(c.m, &st3);
	ao.clip = true, ao.be = c.be;
	CHECK(awq_apply(c.m, cs, &ao, &rep, &err) == OS_OK);
	printf("  fixture with clipping: RTN %.4g, AWQ %.4g, AWQ + clip %.4g\n", rep.err_rtn,
	       rep.err_awq, rep.err_clip);
	CHECK(isfinite(rep.err_clip) && rep.err_clip <= rep.err_rtn);
	test_run_close(&c);

	/* with the weighted grid: the layers come back as INT4 (what int4-awq writes), and
	 * their logits are closer to the float model's than plain RTN's */
	test_run d, e;
	CHECK(test_run_open(&d, path, NULL, 64) == 0);
	CHECK(test_run_open(&e, path, NULL, 64) == 0);
	uint64_t st4 = seed, st5 = seed;
	add_outliers(d.m, &st4);
	add_outliers(e.m, &st5);
	awq_opts wo = {.group = 128, .weighted = true, .be = d.be};
	CHECK_MSG(awq_apply(d.m, cs, &wo, &rep, &err) == OS_OK, "%s", err.msg);
	size_t n_i4 = 0;
	for (size_t i = 0; i < model_n_tensors(d.m); i++) {
		model_tensor t = model_tensor_at(d.m, i);
		if (t.mat && strncmp(t.name, "blk.", 4) == 0) {
			CHECK_MSG(t.mat->fmt == BE_WFMT_I4 &&
					  t.mat->group == awq_group_for(128, t.mat->cols),
				  "%s is %s group %zu", t.name, be_wfmt_name(t.mat->fmt), t.mat->group);
			n_i4++;
		}
	}
	CHECK_EQ_INT(n_i4, 2 * 7);
	for (size_t i = 0; i < model_n_tensors(e.m); i++) {
		model_tensor t = model_tensor_at(e.m, i);
		if (!t.mat || strncmp(t.name, "blk.", 4) != 0)
			continue;
		quant_matrix q;
		size_t g = awq_group_for(128, t.mat->cols);
		CHECK(quant_matrix_new(&q, QUANT_INT4, t.mat->data, t.mat->rows, t.mat->cols, g,
				       &err) == OS_OK);
		be_weight w = {.fmt = BE_WFMT_I4, .rows = q.rows, .cols = q.cols, .data = q.data,
			       .scales = q.scales, .zeros = q.zeros, .group = g};
		CHECK(model_set_matrix(e.m, i, &w, &err) == OS_OK);
	}
	engine_free(d.e), d.e = NULL;
	engine_free(e.e), e.e = NULL;
	engine_opts eo = {.max_batch = 64, .kv_bytes = 1u << 20};
	CHECK(engine_new(&d.e, d.m, d.be, &eo, &err) == OS_OK);
	CHECK(engine_new(&e.e, e.m, e.be, &eo, &err) == OS_OK);
	float *ld = malloc(29 * vocab * sizeof *ld), *le = malloc(29 * vocab * sizeof *le);
	CHECK(test_logits_all(d.e, toks, 29, ld) == 0);
	CHECK(test_logits_all(e.e, toks, 29, le) == 0);
	double ed = 0, ee = 0;
	for (size_t i = 0; i < 29 * vocab; i++) {
		ed += ((double)ld[i] - la[i]) * ((double)ld[i] - la[i]);
		ee += ((double)le[i] - la[i]) * ((double)le[i] - la[i]);
	}
	printf("  fixture: logit squared error vs f32: INT4 RTN %.4g, AWQ weighted %.4g\n", ee, ed);
	CHECK(ed < ee);
	free(ld);
	free(le);
	test_run_close(&d);
	test_run_close(&e);

	/* a stats record from another shape is refused */
	calib_stats_free(cs);
	free(la);
	free(lb);
	free(cal);
	test_run_close(&a);
	test_run_close(&b);
}

int main(void)
{
	seed = test_seed(seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_awq"))
		return 1;
	RUN(test_search_beats_rtn);
	RUN(test_group_for);
	RUN(test_fixture_model);
	test_tmpdir_remove(dir);
	return test_summary();
}
