/* test_quant_flow.c: the recipe's gptq option (default, JSON, check), GPTQ over a whole
 * model with calibration Hessians (quant_model_apply_gptq), awq_apply's keep_f32, and the
 * shared flow (quant_flow.h) on the fixture model: int4-awq + gptq is exactly calibrate ->
 * AWQ folded in F32 -> calibrate again with Hessians -> GPTQ, the written file loads to the
 * same logits, and a stop request stops it. TEST_SEED overrides the seed. */
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
	(*(int *)ctx)++;
	return true;
}

/* Hessians over the budget: refused before any calibration, saying how to do without GPTQ. */
TEST(test_flow_hessian_budget)
{
	os_error err = {0};
	quant_recipe r = quant_recipe_default(QUANT_INT4_RTN);
	r.gptq = true;
	r.calib_samples = 2;
	r.calib_seq_len = 16;
	r.group = 32;
	env a;
	CHECK(env_open(&a) == 0);
	const model_config *c = model_get_config(a.m);
	size_t need = calib_hessian_bytes(c, 0, c->n_layers);
	int calls = 0;
	quant_flow_opts fo = {.be = a.be, .tok = a.tok, .calib_path = path_txt,
			      .hessian_budget = need - 1, .progress = count_calls,
			      .progress_ctx = &calls};
	calib_stats *st = NULL;
	CHECK_EQ_INT(quant_flow_calibrate(a.m, &r, &fo, &st, NULL, &err), OS_ENOMEM);
	CHECK(st == NULL && calls == 0);
	CHECK_MSG(strstr(err.msg, "--no-gptq") && strstr(err.msg, "budget"), "%s", err.msg);
	fo.hessian_budget = need; /* exactly the budget is enough */
	CHECK_MSG(quant_flow_calibrate(a.m, &r, &fo, &st, NULL, &err) == OS_OK, "%s", err.msg);
	CHECK(st && calib_hessian(st, 0, 0) != NULL);
	calib_stats_free(st);
	/* int4-awq's Hessians come after its AWQ search: refused before that too */
	r = quant_recipe_default(QUANT_INT4_AWQ);
	r.gptq = true;
	r.calib_samples = 2;
	r.calib_seq_len = 16;
	r.group = 32;
	fo.hessian_budget = need - 1;
	calls = 0;
	st = NULL;
	CHECK_EQ_INT(quant_flow_calibrate(a.m, &r, &fo, &st, NULL, &err), OS_ENOMEM);
	CHECK(st == NULL && calls == 0);
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
	gguf_fixture_opts fo = {.seed = seed, .n_layers = 2, .dim = 96, .n_heads = 4,
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
	RUN(test_flow_hessian_budget);
	test_tmpdir_remove(dir);
	return test_summary();
}
