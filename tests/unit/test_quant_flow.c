/* test_quant_flow.c: the recipe's gptq option (default, JSON, check), GPTQ over a whole
 * model with calibration Hessians (quant_model_apply_gptq), awq_apply's keep_f32, and the
 * shared flow (quant_flow.h) on the fixture model: int4-awq + gptq is exactly calibrate ->
 * AWQ folded in F32 -> calibrate again with Hessians -> GPTQ, the written file loads to the
 * same logits, and a stop request stops it; GPTQ in layer ranges when the Hessians exceed
 * the budget (quant_flow_plan_ranges, the passes, the refusal of one layer over it).
 * TEST_SEED overrides the seed. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "core/optimize/awq.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/quant_flow.h"
#include "core/optimize/quantize.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <unistd.h>

static uint64_t seed = 20261125;
static char dir[64];
static char path_fx[128];
static char path_txt[128];

TEST(test_recipe_gptq)
{
	os_error err;
	for (int m = 0; m < QUANT_N_METHODS; m++) {
		/* on by default for int4-awq only: the others keep their calibration-free default */
		bool dflt = m == QUANT_INT4_AWQ;
		CHECK_EQ_INT(quant_method_gptq_default((quant_method)m), dflt);
		quant_recipe r = quant_recipe_default((quant_method)m);
		CHECK_MSG(r.gptq == dflt, "%s", quant_method_name((quant_method)m));
		CHECK_MSG(quant_recipe_calibrates(&r) == quant_method_calibrates((quant_method)m),
			  "%s", quant_method_name((quant_method)m));
		char *js = quant_recipe_to_json(&r);
		CHECK(js && (strstr(js, "\"gptq\":true") != NULL) == dflt);
		cJSON_free(js);
		r.gptq = false;
		js = quant_recipe_to_json(&r);
		CHECK(js && !strstr(js, "gptq")); /* off: absent */
		cJSON_free(js);
		r.gptq = true;
		bool ok = m == QUANT_INT4_AWQ || m == QUANT_INT4_RTN || m == QUANT_FP8;
		CHECK_EQ_INT(quant_method_gptq_ok((quant_method)m), ok);
		int rc = quant_recipe_check(&r, &err);
		CHECK_MSG(rc == (ok ? OS_OK : OS_EUSAGE), "%s", quant_method_name((quant_method)m));
		if (!ok) {
			CHECK(strstr(err.msg, "gptq") && strstr(err.msg, quant_method_name((quant_method)m)));
			continue;
		}
		CHECK(quant_recipe_calibrates(&r)); /* int4-rtn and fp8 calibrate for it */
		js = quant_recipe_to_json(&r);
		cJSON *o = js ? cJSON_Parse(js) : NULL;
		CHECK(o && cJSON_IsTrue(cJSON_GetObjectItem(o, "gptq")));
		CHECK(o && cJSON_GetObjectItem(o, "samples")); /* a calibrating recipe */
		cJSON_Delete(o);
		cJSON_free(js);
		r.calib_samples = 0;
		CHECK_EQ_INT(quant_recipe_check(&r, &err), OS_EUSAGE);
	}
}

typedef struct env {
	gguf_file *src;
	model *m;
	backend *be;
	tokenizer *tok;
} env;

static int env_open(env *v)
{
	os_error err;
	memset(v, 0, sizeof *v);
	model_load_opts lo = {.weight_format = BE_WFMT_F32};
	if (gguf_open(&v->src, path_fx, &err) || model_open_gguf(&v->m, v->src, &lo, &err) ||
	    backend_cpu_new(&v->be, NULL, &err) || tokenizer_open(&v->tok, v->src, &err)) {
		printf("  open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void env_close(env *v)
{
	tokenizer_close(v->tok);
	backend_free(v->be);
	model_close(v->m);
	gguf_close(v->src);
}

/* The block matrices' codes and scales of a and b are identical. */
static bool same_blocks(const model *a, const model *b)
{
	for (size_t i = 0; i < model_n_tensors(a); i++) {
		model_tensor x = model_tensor_at(a, i), y = model_tensor_at(b, i);
		if (!x.mat || strncmp(x.name, "blk.", 4) != 0)
			continue;
		if (x.mat->fmt != y.mat->fmt || x.mat->group != y.mat->group)
			return false;
		size_t n = x.mat->rows * x.mat->cols;
		size_t bytes = x.mat->fmt == BE_WFMT_I4 ? n / 2 : n * be_wfmt_elem_bytes(x.mat->fmt);
		if (memcmp(x.mat->data, y.mat->data, bytes) != 0)
			return false;
		size_t ns = x.mat->fmt == BE_WFMT_I4 ? x.mat->rows * (x.mat->cols / x.mat->group)
						     : x.mat->rows;
		if (x.mat->scales && memcmp(x.mat->scales, y.mat->scales, ns * sizeof(float)) != 0)
			return false;
	}
	return true;
}

static size_t count_fmt(const model *m, int fmt)
{
	size_t n = 0;
	for (size_t i = 0; i < model_n_tensors(m); i++) {
		model_tensor t = model_tensor_at(m, i);
		n += t.mat && strncmp(t.name, "blk.", 4) == 0 && t.mat->fmt == fmt;
	}
	return n;
}

static calib_stats *calibrate(env *v, const quant_recipe *r, bool hessian)
{
	os_error err;
	const model_config *c = model_get_config(v->m);
	engine_opts eo = {.kv_bytes = 2 * r->calib_seq_len * c->n_layers * 2 * c->n_kv_heads *
				      c->head_dim * sizeof(float)};
	engine *e = NULL;
	calib_stats *st = NULL;
	calib_opts co = calib_opts_default();
	co.n_samples = r->calib_samples;
	co.seq_len = r->calib_seq_len;
	co.hessian = hessian;
	co.be = v->be;
	if (engine_new(&e, v->m, v->be, &eo, &err) ||
	    calib_run_file(e, v->tok, path_txt, &co, &st, &err))
		printf("  calibrate: %s\n", err.msg);
	engine_free(e);
	return st;
}

TEST(test_apply_gptq_int4_and_fp8)
{
	static const quant_method methods[] = {QUANT_INT4_RTN, QUANT_FP8};
	for (size_t k = 0; k < 2; k++) {
		env v;
		CHECK(env_open(&v) == 0);
		quant_recipe r = quant_recipe_default(methods[k]);
		r.gptq = true;
		r.calib_samples = 3;
		r.calib_seq_len = 24;
		os_error err;
		calib_stats *plain = calibrate(&v, &r, false), *st = calibrate(&v, &r, true);
		CHECK(plain && st);
		gptq_report rep = {.err_gptq = -1};
		/* no Hessians: refused, naming the tensor */
		CHECK_EQ_INT(quant_model_apply_gptq(v.m, &r, plain, NULL, NULL, NULL, &rep, &err),
			     OS_EUSAGE);
		CHECK(strstr(err.msg, "blk.0.") && strstr(err.msg, "Hessian"));
		quant_recipe nog = r;
		nog.gptq = false;
		CHECK_EQ_INT(quant_model_apply_gptq(v.m, &nog, st, NULL, NULL, NULL, &rep, &err),
			     OS_EUSAGE);
		int want = methods[k] == QUANT_FP8 ? BE_WFMT_FP8 : BE_WFMT_I4;
		CHECK_EQ_INT(count_fmt(v.m, want), 0);
		CHECK_MSG(quant_model_apply_gptq(v.m, &r, st, backend_cpu_pool(v.be), NULL, NULL, &rep,
						 &err) == OS_OK, "%s", err.msg);
		const model_config *c = model_get_config(v.m);
		CHECK_EQ_INT(count_fmt(v.m, want), c->n_layers * 7);
		CHECK_MSG(rep.energy > 0 && rep.err_gptq >= 0 && rep.err_gptq <= rep.err_rtn,
			  "%s: gptq %g rtn %g energy %g", quant_method_name(methods[k]), rep.err_gptq,
			  rep.err_rtn, rep.energy);
		calib_stats_free(plain);
		calib_stats_free(st);
		env_close(&v);
	}
}

static bool stop_at_gptq(void *ctx, const char *stage, size_t done, size_t total)
{
	(void)done;
	(void)total;
	int *seen = ctx;
	*seen += strcmp(stage, "hessians") == 0;
	return strcmp(stage, "gptq") != 0;
}

TEST(test_flow_awq_gptq)
{
	os_error err;
	quant_recipe r = quant_recipe_default(QUANT_INT4_AWQ);
	r.gptq = true;
	r.calib_samples = 3;
	r.calib_seq_len = 24;
	r.group = 32;

	/* by hand: calibrate, AWQ folded and left F32, calibrate with Hessians, GPTQ */
	env a;
	CHECK(env_open(&a) == 0);
	calib_stats *st = calibrate(&a, &r, false);
	awq_opts ao = {.group = r.group, .weighted = r.scale_search, .keep_f32 = true, .be = a.be,
		       .pool = backend_cpu_pool(a.be)};
	CHECK(st && awq_apply(a.m, st, &ao, NULL, &err) == OS_OK);
	CHECK_EQ_INT(count_fmt(a.m, BE_WFMT_I4), 0); /* keep_f32: still F32 */
	calib_stats *h = calibrate(&a, &r, true);
	CHECK(h && quant_model_apply_gptq(a.m, &r, h, backend_cpu_pool(a.be), NULL, NULL, NULL,
					  &err) == OS_OK);

	/* the flow */
	env b;
	CHECK(env_open(&b) == 0);
	quant_flow_opts fo = {.be = b.be, .tok = b.tok, .calib_path = path_txt};
	quant_flow_report rep = {0};
	calib_stats *fs = NULL;
	CHECK_MSG(quant_flow_calibrate(b.m, &r, &fo, &fs, &rep, &err) == OS_OK, "%s", err.msg);
	CHECK(fs && calib_hessian(fs, 0, 0) == NULL); /* AWQ's pass needs none */
	CHECK_MSG(quant_flow_transform(b.m, &r, fs, &fo, &rep, &err) == OS_OK, "%s", err.msg);
	CHECK(rep.has_awq && rep.has_gptq && rep.gptq.energy > 0 && rep.t_calib > 0);
	const model_config *c = model_get_config(b.m);
	CHECK_EQ_INT(count_fmt(b.m, BE_WFMT_I4), c->n_layers * 7);
	CHECK_MSG(same_blocks(a.m, b.m), "the flow differs from calibrate-AWQ-calibrate-GPTQ");

	/* the written file loads to the same logits as the model in memory */
	char out[160];
	snprintf(out, sizeof out, "%s/awq-gptq.gguf", dir);
	CHECK(quant_write_gguf(b.m, b.src, &r, "fx", NULL, out, NULL, NULL, &err) == OS_OK);
	model *back = NULL;
	CHECK_MSG(model_open(&back, out, NULL, &err) == OS_OK, "%s", err.msg);
	if (back) {
		CHECK(same_blocks(b.m, back));
		model_close(back);
	}
	gguf_file *gf = NULL;
	char *recipe = NULL;
	if (gguf_open(&gf, out, &err) == OS_OK) {
		const char *txt = NULL;
		size_t len = 0;
		if (gguf_get_str(gf, "optstudio.recipe", &txt, &len, &err) == OS_OK)
			recipe = strndup(txt, len);
		gguf_close(gf);
	}
	CHECK(recipe && strstr(recipe, "\"gptq\":true"));
	free(recipe);

	/* a stop request in GPTQ stops the flow */
	env s;
	CHECK(env_open(&s) == 0);
	int seen = 0;
	quant_flow_opts so = {.be = s.be, .tok = s.tok, .calib_path = path_txt,
			      .progress = stop_at_gptq, .progress_ctx = &seen};
	calib_stats *ss = NULL;
	CHECK(quant_flow_calibrate(s.m, &r, &so, &ss, NULL, &err) == OS_OK);
	CHECK_EQ_INT(quant_flow_transform(s.m, &r, ss, &so, NULL, &err), OS_ESTOPPED);
	CHECK(seen > 0); /* the second calibration ran */
	calib_stats_free(ss);
	env_close(&s);

	calib_stats_free(st);
	calib_stats_free(h);
	calib_stats_free(fs);
	env_close(&a);
	env_close(&b);
}

static bool count_calls(void *ctx, const char *stage, size_t done, size_t total)
{
	(void)stage;
	(void)done;
	(void)total;
	(*(int *)ctx)++;
	return true;
}

/* The greedy plan on random per-layer sizes: the ranges tile the layers in order, each fits,
 * none could take its next layer (so no plan has fewer ranges), one layer over the budget
 * is 0 ranges. */
TEST(test_plan_ranges)
{
	uint64_t rs = seed ^ 0x9e37;
	for (int trial = 0; trial < 200; trial++) {
		size_t n = 1 + test_rand_next(&rs) % 37, bytes[40], ends[40], big = 0, all = 0;
		for (size_t l = 0; l < n; l++) {
			bytes[l] = 1000 + test_rand_next(&rs) % 9001;
			big = bytes[l] > big ? bytes[l] : big;
			all += bytes[l];
		}
		size_t budget = big + test_rand_next(&rs) % (all - big + 1);
		size_t k = quant_flow_plan_ranges(bytes, n, budget, ends);
		CHECK(k >= 1 && k <= n);
		size_t begin = 0;
		for (size_t q = 0; q < k; q++) {
			size_t sum = 0;
			CHECK(ends[q] > begin && ends[q] <= n);
			for (size_t l = begin; l < ends[q]; l++)
				sum += bytes[l];
			CHECK_MSG(sum <= budget, "range %zu: %zu > %zu", q, sum, budget);
			if (q + 1 < k)
				CHECK(sum + bytes[ends[q]] > budget); /* greedy: as long as it fits */
			begin = ends[q];
		}
		CHECK_EQ_INT(begin, n);
		CHECK_EQ_INT(quant_flow_plan_ranges(bytes, n, all, ends), 1);
		CHECK_EQ_INT(ends[0], n);
		CHECK_EQ_INT(quant_flow_plan_ranges(bytes, n, big - 1, ends), 0);
	}
}

/* What the flow's progress showed: calls per stage, and whether "hessians" and "gptq" went
 * up monotonically to their totals. Stops at the stop_at-th "hessians" sample when set. */
typedef struct seen {
	size_t calls, hess_calls, hess_done, hess_total, gptq_done, gptq_total;
	bool hess_back, gptq_back;
	size_t stop_at;
} seen;

static bool watch(void *ctx, const char *stage, size_t done, size_t total)
{
	seen *s = ctx;
	s->calls++;
	if (strcmp(stage, "hessians") == 0) {
		s->hess_calls++;
		s->hess_back |= done < s->hess_done || (s->hess_total && total != s->hess_total);
		s->hess_done = done;
		s->hess_total = total;
		if (s->stop_at && done >= s->stop_at)
			return false;
	} else if (strcmp(stage, "gptq") == 0) {
		s->gptq_back |= done < s->gptq_done || (s->gptq_total && total != s->gptq_total);
		s->gptq_done = done;
		s->gptq_total = total;
	}
	return true;
}

/* The flow on a fresh model with budget (0: the default); the model stays in *v. */
static int run_flow(env *v, const quant_recipe *r, size_t budget, seen *sn,
		    quant_flow_report *rep, os_error *err)
{
	if (env_open(v) != 0)
		return OS_EIO;
	quant_flow_opts fo = {.be = v->be, .tok = v->tok, .calib_path = path_txt,
			      .hessian_budget = budget, .progress = sn ? watch : NULL,
			      .progress_ctx = sn};
	calib_stats *st = NULL;
	int rc = quant_flow_calibrate(v->m, r, &fo, &st, rep, err);
	if (!rc)
		rc = quant_flow_transform(v->m, r, st, &fo, rep, err);
	calib_stats_free(st);
	return rc;
}

/* The block matrices of layer l are identical in a and b. */
static bool same_layer(const model *a, const model *b, size_t l)
{
	char pre[32];
	snprintf(pre, sizeof pre, "blk.%zu.", l);
	for (size_t i = 0; i < model_n_tensors(a); i++) {
		model_tensor x = model_tensor_at(a, i), y = model_tensor_at(b, i);
		if (!x.mat || strncmp(x.name, pre, strlen(pre)) != 0)
			continue;
		if (x.mat->fmt != y.mat->fmt || x.mat->group != y.mat->group)
			return false;
		size_t n = x.mat->rows * x.mat->cols;
		size_t bytes = x.mat->fmt == BE_WFMT_I4 ? n / 2 : n * be_wfmt_elem_bytes(x.mat->fmt);
		size_t ns = x.mat->fmt == BE_WFMT_I4 ? n / x.mat->group : x.mat->rows;
		if (memcmp(x.mat->data, y.mat->data, bytes) != 0 ||
		    (x.mat->scales && memcmp(x.mat->scales, y.mat->scales, ns * sizeof(float))) ||
		    (x.mat->zeros && memcmp(x.mat->zeros, y.mat->zeros, ns)))
			return false;
	}
	return true;
}

/* Every block matrix of layer l is in fmt (INT4 at group g, or FP8) with finite positive
 * scales, INT4 zero points in [0, 15] and no FP8 NaN codes. */
static bool layer_valid(const model *m, size_t l, int fmt, size_t g)
{
	char pre[32];
	snprintf(pre, sizeof pre, "blk.%zu.", l);
	size_t seen_mats = 0;
	for (size_t i = 0; i < model_n_tensors(m); i++) {
		model_tensor t = model_tensor_at(m, i);
		if (!t.mat || strncmp(t.name, pre, strlen(pre)) != 0)
			continue;
		bool i4 = fmt == BE_WFMT_I4;
		if (t.mat->fmt != fmt || (i4 && (t.mat->group != g || !t.mat->zeros)) ||
		    !t.mat->scales)
			return false;
		size_t ns = i4 ? t.mat->rows * t.mat->cols / g : t.mat->rows;
		for (size_t k = 0; k < ns; k++)
			if (!(t.mat->scales[k] > 0 && t.mat->scales[k] < 1e30f) ||
			    (i4 && t.mat->zeros[k] > 15))
				return false;
		const uint8_t *code = t.mat->data;
		for (size_t k = 0; !i4 && k < t.mat->rows * t.mat->cols; k++)
			if ((code[k] & 0x7f) == 0x7f)
				return false;
		seen_mats++;
	}
	return seen_mats == 7;
}

/* Hessians over the budget: GPTQ in layer ranges (int4-rtn, int4-awq, fp8), each calibrated
 * on the model with the earlier ranges quantized; the first range's matrices are those of
 * one pass. One layer
 * over the budget: refused before any calibration, saying how to do without GPTQ. */
TEST(test_flow_hessian_budget)
{
	os_error err = {0};
	static const quant_method methods[] = {QUANT_INT4_RTN, QUANT_INT4_AWQ, QUANT_FP8};
	env a;
	CHECK(env_open(&a) == 0);
	const model_config *c = model_get_config(a.m);
	size_t nl = c->n_layers, bytes[8], ends[8];
	CHECK(nl >= 3 && nl <= 8);
	for (size_t l = 0; l < nl; l++)
		bytes[l] = calib_hessian_bytes(c, l, l + 1);
	size_t one = bytes[0], all = calib_hessian_bytes(c, 0, nl);
	for (size_t mi = 0; mi < sizeof methods / sizeof methods[0]; mi++) {
		quant_recipe r = quant_recipe_default(methods[mi]);
		r.gptq = true;
		r.calib_samples = 2;
		r.calib_seq_len = 16;
		r.group = 32;
		const char *name = quant_method_name(r.method);
		env ref;
		quant_flow_report rr = {0};
		CHECK_MSG(run_flow(&ref, &r, all, NULL, &rr, &err) == OS_OK, "%s: %s", name, err.msg);
		CHECK_EQ_INT(rr.gptq_passes, 1);
		/* 2 passes: all but one layer fit; 3: two layers do not (one more byte than 1) */
		size_t budgets[2] = {all - 1, 2 * one - 1}, want[2] = {2, nl};
		for (size_t b = 0; b < 2; b++) {
			size_t k = quant_flow_plan_ranges(bytes, nl, budgets[b], ends);
			CHECK_MSG(k == want[b], "%s: %zu ranges for budget %zu", name, k, budgets[b]);
			for (size_t q = 0; q < k; q++) /* what each calibration pass holds */
				CHECK(calib_hessian_bytes(c, q ? ends[q - 1] : 0, ends[q]) <= budgets[b]);
			env v;
			seen sn = {0};
			quant_flow_report rep = {0};
			int rc = run_flow(&v, &r, budgets[b], &sn, &rep, &err);
			CHECK_MSG(rc == OS_OK, "%s, %zu passes: %s", name, want[b], err.msg);
			CHECK_EQ_INT(rep.gptq_passes, k);
			CHECK(rep.has_gptq && rep.gptq.energy > 0 && rep.gptq.err_gptq <= rep.gptq.err_rtn);
			/* the first range saw the same F32 model as one pass */
			for (size_t l = 0; l < ends[0]; l++)
				CHECK_MSG(same_layer(ref.m, v.m, l), "%s: layer %zu differs", name, l);
			/* the later ones were calibrated on the quantized earlier layers */
			bool differs = false;
			for (size_t l = ends[0]; l < nl; l++) {
				CHECK_MSG(layer_valid(v.m, l, r.method == QUANT_FP8 ? BE_WFMT_FP8
										   : BE_WFMT_I4, r.group),
					  "%s: layer %zu", name, l);
				differs |= !same_layer(ref.m, v.m, l);
			}
			CHECK_MSG(differs, "%s, %zu passes: later layers as if calibrated in F32", name,
				  k);
			/* progress: GPTQ counts every matrix once over the passes; the k Hessian
			 * passes count samples on one scale */
			CHECK(!sn.gptq_back && sn.gptq_total > 0 && sn.gptq_done == sn.gptq_total);
			CHECK_MSG(!sn.hess_back && sn.hess_done == k * r.calib_samples &&
					  sn.hess_total == k * r.calib_samples,
				  "%s: hessians %zu of %zu", name, sn.hess_done, sn.hess_total);
			env_close(&v);
		}
		/* a stop request in the second Hessian pass stops the flow */
		env s;
		seen sn = {.stop_at = r.calib_samples + 1};
		CHECK_EQ_INT(run_flow(&s, &r, 2 * one - 1, &sn, NULL, &err), OS_ESTOPPED);
		CHECK(sn.hess_calls > 0);
		env_close(&s);
		/* one layer over the budget: refused before any work, naming what fits */
		int calls = 0;
		quant_flow_opts fo = {.be = a.be, .tok = a.tok, .calib_path = path_txt,
				      .hessian_budget = one - 1, .progress = count_calls,
				      .progress_ctx = &calls};
		calib_stats *st = NULL;
		CHECK_EQ_INT(quant_flow_calibrate(a.m, &r, &fo, &st, NULL, &err), OS_ENOMEM);
		CHECK(st == NULL && calls == 0);
		CHECK_MSG(strstr(err.msg, "--no-gptq") && strstr(err.msg, "budget"), "%s", err.msg);
		char mib[32];
		snprintf(mib, sizeof mib, "%.1f MiB", (double)one / (1 << 20));
		CHECK_MSG(strstr(err.msg, mib), "%s", err.msg);
		/* exactly one layer is enough; int4-rtn and fp8's first calibration collects the
		 * Hessians only when they fit at once (in ranges, its statistics would keep the
		 * first range's beside the later ones') */
		for (size_t q = 0; q < 2 && r.method != QUANT_INT4_AWQ; q++) {
			fo.hessian_budget = q ? all : one;
			CHECK_MSG(quant_flow_calibrate(a.m, &r, &fo, &st, NULL, &err) == OS_OK, "%s",
				  err.msg);
			for (size_t l = 0; st && l < nl; l++)
				CHECK_MSG((calib_hessian(st, l, 0) != NULL) == (q == 1),
					  "%s, budget %zu: layer %zu", name, fo.hessian_budget, l);
			calib_stats_free(st);
			st = NULL;
		}
		env_close(&ref);
	}
	env_close(&a);
}

int main(void)
{
	seed = test_seed(seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_quant_flow"))
		return 1;
	snprintf(path_fx, sizeof path_fx, "%s/fx.gguf", dir);
	snprintf(path_txt, sizeof path_txt, "%s/cal.txt", dir);
	/* INT4 needs widths divisible by 32: dim 96, ffn 160 */
	gguf_fixture_opts fo = {.seed = seed, .n_layers = 3, .dim = 96, .n_heads = 4,
				.n_kv_heads = 2, .ffn_dim = 160, .ctx = 128};
	os_error err;
	if (gguf_fixture_write(path_fx, &fo, &err) != OS_OK) {
		printf("fixture: %s\n", err.msg);
		return 1;
	}
	FILE *f = fopen(path_txt, "w");
	uint64_t st = seed;
	for (int i = 0; f && i < 300; i++)
		fprintf(f, "line %d: the %s heron waits by pier %u.\n", i, i % 3 ? "grey" : "white",
			(unsigned)(test_rand_next(&st) % 97));
	if (!f || fclose(f) != 0) {
		printf("cannot write %s\n", path_txt);
		return 1;
	}
	RUN(test_recipe_gptq);
	RUN(test_apply_gptq_int4_and_fp8);
	RUN(test_flow_awq_gptq);
	RUN(test_plan_ranges);
	RUN(test_flow_hessian_budget);
	test_tmpdir_remove(dir);
	return test_summary();
}
