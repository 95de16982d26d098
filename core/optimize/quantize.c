/* quantize.c: recipes, the per-matrix format policy, in-memory quantization of a model and
 * the quantized GGUF writer (formats documented in quantize.h). */
#include "core/optimize/quantize.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/numerics.h"
#include "core/optimize/awq.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/gptq.h"
#include "core/optimize/quant_formats.h"

static const char *const method_names[QUANT_N_METHODS] = {
	[QUANT_FP8] = "fp8",
	[QUANT_FP8_W8A8] = "fp8-w8a8",
	[QUANT_INT8_SQ] = "int8-smoothquant",
	[QUANT_INT4_AWQ] = "int4-awq",
	[QUANT_INT4_RTN] = "int4-rtn",
	[QUANT_INT8_RTN] = "int8",
};

const char *quant_method_name(quant_method m)
{
	return (unsigned)m < QUANT_N_METHODS ? method_names[m] : "?";
}

int quant_method_parse(const char *name, quant_method *out, os_error *err)
{
	for (int m = 0; m < QUANT_N_METHODS; m++)
		if (name && strcmp(name, method_names[m]) == 0) {
			*out = (quant_method)m;
			return OS_OK;
		}
	return os_error_set(err, OS_EUSAGE,
			    "unknown quantization method '%s' (expected fp8, fp8-w8a8, int8, "
			    "int8-smoothquant, int4-awq or int4-rtn)",
			    name ? name : "");
}

bool quant_method_calibrates(quant_method m)
{
	return m == QUANT_INT8_SQ || m == QUANT_INT4_AWQ;
}

bool quant_method_search_default(quant_method m)
{
	return m == QUANT_FP8 || m == QUANT_INT4_AWQ;
}

bool quant_method_gptq_default(quant_method m)
{
	return m == QUANT_INT4_AWQ;
}

bool quant_recipe_calibrates(const quant_recipe *r)
{
	return quant_method_calibrates(r->method) || r->scale_search || r->gptq;
}

bool quant_method_gptq_ok(quant_method m)
{
	return m == QUANT_INT4_AWQ || m == QUANT_INT4_RTN || m == QUANT_FP8;
}

const char *quant_kv_name(quant_kv kv)
{
	return kv == QUANT_KV_MODEL ? "model" : kv == QUANT_KV_FP8 ? "fp8" :
	       kv == QUANT_KV_INT8  ? "int8" : kv == QUANT_KV_BF16 ? "bf16" : "?";
}

int quant_kv_parse(const char *name, quant_kv *out, os_error *err)
{
	if (name && (!strcmp(name, "model") || !strcmp(name, "f32") || !strcmp(name, "none")))
		*out = QUANT_KV_MODEL;
	else if (name && !strcmp(name, "fp8"))
		*out = QUANT_KV_FP8;
	else if (name && !strcmp(name, "int8"))
		*out = QUANT_KV_INT8;
	else if (name && !strcmp(name, "bf16"))
		*out = QUANT_KV_BF16;
	else
		return os_error_set(err, OS_EUSAGE,
				    "unknown KV cache type '%s' (expected bf16, fp8, int8 or f32)",
				    name ? name : "");
	return OS_OK;
}

const char *quant_head_name(quant_head h)
{
	return h == QUANT_HEAD_BF16 ? "bf16" : h == QUANT_HEAD_F32 ? "f32" :
	       h == QUANT_HEAD_METHOD ? "method" : "?";
}

int quant_head_parse(const char *name, quant_head *out, os_error *err)
{
	for (int h = QUANT_HEAD_BF16; h <= QUANT_HEAD_METHOD; h++)
		if (name && strcmp(name, quant_head_name((quant_head)h)) == 0) {
			*out = (quant_head)h;
			return OS_OK;
		}
	return os_error_set(err, OS_EUSAGE,
			    "unknown head policy '%s' (expected bf16, f32 or method)",
			    name ? name : "");
}

quant_recipe quant_recipe_default(quant_method m)
{
	return (quant_recipe){
		.method = m,
		.alpha = 0.5f,
		.group = 128,
		.kv = QUANT_KV_MODEL,
		.head = QUANT_HEAD_BF16,
		.calib_path = NULL,
		.calib_samples = CALIB_DEFAULT_SAMPLES,
		.calib_seq_len = CALIB_DEFAULT_SEQ_LEN,
		.scale_search = m == QUANT_INT4_AWQ,
		.gptq = quant_method_gptq_default(m),
	};
}

int quant_recipe_check(const quant_recipe *r, os_error *err)
{
	if ((unsigned)r->method >= QUANT_N_METHODS)
		return os_error_set(err, OS_EUSAGE, "recipe: method %d is unknown", (int)r->method);
	if (!(r->alpha >= 0.0f && r->alpha <= 1.0f))
		return os_error_set(err, OS_EUSAGE, "recipe: alpha %g is outside [0, 1]",
				    (double)r->alpha);
	if (r->group != 32 && r->group != 64 && r->group != 128)
		return os_error_set(err, OS_EUSAGE, "recipe: group %zu is not 32, 64 or 128",
				    r->group);
	if ((unsigned)r->kv > QUANT_KV_BF16)
		return os_error_set(err, OS_EUSAGE, "recipe: KV type %d is unknown", (int)r->kv);
	if ((unsigned)r->head > QUANT_HEAD_METHOD)
		return os_error_set(err, OS_EUSAGE, "recipe: head policy %d is unknown",
				    (int)r->head);
	if (r->scale_search && (r->method == QUANT_INT8_SQ || r->method == QUANT_INT8_RTN))
		return os_error_set(err, OS_EUSAGE,
				    "recipe: scale search is for the fp8 and int4 methods, not %s",
				    quant_method_name(r->method));
	if (r->gptq && !quant_method_gptq_ok(r->method))
		return os_error_set(err, OS_EUSAGE,
				    "recipe: gptq is for int4-awq, int4-rtn and fp8, not %s",
				    quant_method_name(r->method));
	if (quant_recipe_calibrates(r) && (!r->calib_samples || !r->calib_seq_len))
		return os_error_set(err, OS_EUSAGE,
				    "recipe: calibration needs samples and seq_len > 0 (got %zu, "
				    "%zu)",
				    r->calib_samples, r->calib_seq_len);
	return OS_OK;
}

char *quant_recipe_to_json(const quant_recipe *r)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	bool ok = cJSON_AddStringToObject(o, "method", quant_method_name(r->method)) &&
		  cJSON_AddStringToObject(o, "kv", r->kv == QUANT_KV_MODEL ? "f32" :
						   quant_kv_name(r->kv)) &&
		  cJSON_AddStringToObject(o, "head", quant_head_name(r->head));
	if (ok && (r->method == QUANT_INT4_RTN || r->method == QUANT_INT4_AWQ))
		ok = cJSON_AddNumberToObject(o, "group", (double)r->group) != NULL;
	if (ok && r->method == QUANT_INT8_SQ)
		ok = cJSON_AddNumberToObject(o, "alpha", (double)r->alpha) != NULL;
	if (ok && r->scale_search)
		ok = cJSON_AddBoolToObject(o, "scale_search", 1) != NULL;
	if (ok && r->gptq)
		ok = cJSON_AddBoolToObject(o, "gptq", 1) != NULL;
	if (ok && quant_recipe_calibrates(r))
		ok = (r->calib_path ? cJSON_AddStringToObject(o, "calib", r->calib_path)
				    : cJSON_AddNullToObject(o, "calib")) &&
		     cJSON_AddNumberToObject(o, "samples", (double)r->calib_samples) &&
		     cJSON_AddNumberToObject(o, "seq_len", (double)r->calib_seq_len);
	char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return s;
}

/* --- the per-matrix policy ------------------------------------------------------------ */

int quant_matrix_format(const quant_recipe *r, const char *name, size_t cols, int *fmt,
			size_t *group, os_error *err)
{
	*group = 0;
	if (strncmp(name, "blk.", 4) != 0 && r->head != QUANT_HEAD_METHOD) {
		/* token_embd, output: the head policy (quantize.h) */
		*fmt = r->head == QUANT_HEAD_F32 ? BE_WFMT_F32 : BE_WFMT_BF16;
		return OS_OK;
	}
	switch (r->method) {
	case QUANT_FP8: *fmt = BE_WFMT_FP8; return OS_OK;
	case QUANT_FP8_W8A8: *fmt = BE_WFMT_FP8_W8A8; return OS_OK;
	case QUANT_INT8_SQ:
	case QUANT_INT8_RTN: *fmt = BE_WFMT_I8; return OS_OK;
	case QUANT_INT4_AWQ:
	case QUANT_INT4_RTN:
		*fmt = BE_WFMT_I4;
		*group = awq_group_for(r->group, cols);
		if (!*group)
			return os_error_set(err, OS_EUNSUPPORTED,
					    "tensor %s: %zu input columns fit no INT4 group of %zu, "
					    "64 or 32",
					    name, cols, r->group);
		return OS_OK;
	default:
		return os_error_set(err, OS_EUSAGE, "recipe: method %d is unknown", (int)r->method);
	}
}

static quant_fmt to_quant_fmt(int fmt)
{
	return fmt == BE_WFMT_I8 ? QUANT_INT8 : fmt == BE_WFMT_I4 ? QUANT_INT4 : QUANT_FP8_E4M3;
}

/* Quantizes the F32 matrix w into *out (fmt, group), buffers malloc'd (owned by the caller:
 * free data, scales, zeros). The one place codes are made, for memory and file alike.
 * BF16 (the head): round to nearest even, num_f32_to_bf16, 64-byte aligned, no scales. */
static int quantize_weight(const be_weight *w, const char *name, int fmt, size_t group,
			   be_weight *out, os_error *err)
{
	if (fmt == BE_WFMT_BF16) {
		size_t n = w->rows * w->cols;
		uint16_t *b = aligned_alloc(64, (n * sizeof *b + 63) / 64 * 64);
		if (!b)
			return os_error_set(err, OS_ENOMEM, "tensor %s: out of memory", name);
		const float *f = w->data;
		for (size_t i = 0; i < n; i++)
			b[i] = num_f32_to_bf16(f[i]);
		*out = (be_weight){.fmt = BE_WFMT_BF16, .rows = w->rows, .cols = w->cols,
				   .data = b};
		return OS_OK;
	}
	quant_matrix q;
	os_error e2;
	int rc = quant_matrix_new(&q, to_quant_fmt(fmt), w->data, w->rows, w->cols, group, &e2);
	if (rc)
		return os_error_set(err, rc, "tensor %s: %s", name, e2.msg);
	*out = (be_weight){.fmt = fmt, .rows = w->rows, .cols = w->cols, .data = q.data,
			   .scales = q.scales, .zeros = q.zeros, .group = fmt == BE_WFMT_I4 ? group : 0};
	return OS_OK;
}

static void weight_free(be_weight *w)
{
	free(w->data);
	free(w->scales);
	free(w->zeros);
	memset(w, 0, sizeof *w);
}

/* What happens to matrix t under r: *target its format; *convert true when it is F32 and
 * must be quantized now, false when it already is in its target format. */
static int plan_matrix(const quant_recipe *r, const model_tensor *t, int *target,
		       size_t *group, bool *convert, os_error *err)
{
	int rc = quant_matrix_format(r, t->name, t->mat->cols, target, group, err);
	if (rc)
		return rc;
	if (t->mat->fmt == *target && (*target != BE_WFMT_I4 || t->mat->group == *group)) {
		*convert = false;
		return OS_OK;
	}
	if (t->mat->fmt != BE_WFMT_F32)
		return os_error_set(err, OS_EUSAGE,
				    "tensor %s is %s; quantizing to %s needs F32 weights (load the "
				    "source model with F32 weights)",
				    t->name, be_wfmt_name(t->mat->fmt), be_wfmt_name(*target));
	*convert = true;
	return OS_OK;
}

static size_t count_matrices(const model *m)
{
	size_t n = 0;
	for (size_t i = 0; i < model_n_tensors(m); i++)
		n += model_tensor_at(m, i).mat != NULL;
	return n;
}

/* The calibration site a block matrix reads, from its GGUF name; -1 for other tensors. */
static int site_of_name(const char *name, size_t *layer)
{
	static const struct {
		const char *suffix;
		int site;
	} map[] = {
		{".attn_q.weight", ENGINE_SITE_ATTN_IN},   {".attn_k.weight", ENGINE_SITE_ATTN_IN},
		{".attn_v.weight", ENGINE_SITE_ATTN_IN},   {".attn_output.weight", ENGINE_SITE_ATTN_OUT},
		{".ffn_gate.weight", ENGINE_SITE_FFN_IN},  {".ffn_up.weight", ENGINE_SITE_FFN_IN},
		{".ffn_down.weight", ENGINE_SITE_FFN_DOWN_IN},
	};
	char *end;
	if (strncmp(name, "blk.", 4) != 0)
		return -1;
	*layer = strtoul(name + 4, &end, 10);
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(end, map[i].suffix) == 0)
			return map[i].site;
	return -1;
}

/* Quantizes a block matrix by the importance-weighted search on its input's calibration
 * statistics (st), into *q. */
static int search_weight(const model_tensor *t, const calib_stats *st, size_t layer, int site,
			 int target, size_t group, threadpool *pool, be_weight *q, os_error *err)
{
	const calib_site *cs = layer < calib_n_layers(st) ? calib_get(st, layer, site) : NULL;
	if (!cs || cs->dim != t->mat->cols || !cs->mean_sq)
		return os_error_set(err, OS_EUSAGE, "tensor %s: the calibration of its input does "
				    "not match its %zu columns", t->name, t->mat->cols);
	quant_matrix qm;
	os_error e2;
	int rc = quant_matrix_new_weighted(&qm, to_quant_fmt(target), t->mat->data, t->mat->rows,
					   t->mat->cols, group, cs->mean_sq, pool, &e2);
	if (rc)
		return os_error_set(err, rc, "tensor %s: %s", t->name, e2.msg);
	*q = (be_weight){.fmt = target, .rows = qm.rows, .cols = qm.cols, .data = qm.data,
			 .scales = qm.scales, .zeros = qm.zeros,
			 .group = target == BE_WFMT_I4 ? group : 0};
	return OS_OK;
}

/* Quantizes a block matrix by GPTQ with its input's Hessian in st, into *q; the proxy
 * errors are added to *rep. */
static int gptq_weight(const model_tensor *t, const quant_recipe *r, const calib_stats *st,
		       size_t layer, int site, int target, size_t group, threadpool *pool,
		       be_weight *q, gptq_report *rep, os_error *err)
{
	const calib_site *cs = layer < calib_n_layers(st) ? calib_get(st, layer, site) : NULL;
	const float *H = cs ? calib_hessian(st, layer, site) : NULL;
	if (!cs || cs->dim != t->mat->cols || !H)
		return os_error_set(err, OS_EUSAGE, "tensor %s: no Hessian of its input matching "
				    "its %zu columns (calibrate with Hessians on this model)",
				    t->name, t->mat->cols);
	gptq_opts go = gptq_opts_default();
	go.group = target == BE_WFMT_I4 ? group : go.group;
	go.weighted = r->scale_search;
	go.pool = pool;
	gptq_report gr = {0};
	quant_matrix qm;
	os_error e2;
	int rc = gptq_quantize(&qm, to_quant_fmt(target), t->mat->data, t->mat->rows, t->mat->cols,
			       H, &go, &gr, &e2);
	if (rc)
		return os_error_set(err, rc, "tensor %s: gptq: %s", t->name, e2.msg);
	rep->err_rtn += gr.err_rtn;
	rep->err_gptq += gr.err_gptq;
	rep->energy += gr.energy;
	*q = (be_weight){.fmt = target, .rows = qm.rows, .cols = qm.cols, .data = qm.data,
			 .scales = qm.scales, .zeros = qm.zeros,
			 .group = target == BE_WFMT_I4 ? group : 0};
	return OS_OK;
}

/* Which matrices one apply_matrices call converts: the block matrices of layers [begin,
 * end), and the others when rest. */
typedef struct matrix_scope {
	size_t begin, end;
	bool rest;
} matrix_scope;

static bool in_scope(const matrix_scope *sc, const char *name)
{
	size_t layer = 0;
	if (!sc)
		return true;
	if (site_of_name(name, &layer) < 0)
		return sc->rest;
	return layer >= sc->begin && layer < sc->end;
}

/* Converts every matrix r asks for within sc (NULL: all): block matrices by GPTQ (gptq) or
 * the weighted search when st is given, everything else (and everything when st is NULL) by
 * plain per-range scales. *done counts the matrices visited, for progress over all of m's. */
static int apply_matrices(model *m, const quant_recipe *r, const calib_stats *st, bool gptq,
			  const matrix_scope *sc, threadpool *pool, quant_progress_fn progress,
			  void *progress_ctx, size_t *done, gptq_report *rep, os_error *err)
{
	int rc;
	size_t total = count_matrices(m);
	for (size_t i = 0; i < model_n_tensors(m); i++) {
		model_tensor t = model_tensor_at(m, i);
		if (!t.mat || !in_scope(sc, t.name))
			continue;
		int target;
		size_t group, layer = 0;
		bool convert;
		if ((rc = plan_matrix(r, &t, &target, &group, &convert, err)))
			return rc;
		if (convert) {
			be_weight q;
			int site = st ? site_of_name(t.name, &layer) : -1;
			if (site >= 0 && be_wfmt_quantized(target) && gptq)
				rc = gptq_weight(&t, r, st, layer, site, target, group, pool, &q, rep,
						 err);
			else if (site >= 0 && be_wfmt_quantized(target))
				rc = search_weight(&t, st, layer, site, target, group, pool, &q, err);
			else
				rc = quantize_weight(t.mat, t.name, target, group, &q, err);
			if (rc)
				return rc;
			if ((rc = model_set_matrix(m, i, &q, err))) {
				weight_free(&q);
				return rc;
			}
		}
		if (progress && !progress(progress_ctx, gptq ? "gptq" : "quantize", ++*done, total))
			return os_error_set(err, OS_ESTOPPED, "quantization stopped");
	}
	return OS_OK;
}

int quant_model_apply(model *m, const quant_recipe *r, quant_progress_fn progress,
		      void *progress_ctx, os_error *err)
{
	int rc = quant_recipe_check(r, err);
	if (rc)
		return rc;
	size_t done = 0;
	return apply_matrices(m, r, NULL, false, NULL, NULL, progress, progress_ctx, &done, NULL,
			      err);
}

/* What both calibrated conversions check first: a valid recipe that asks for the step
 * (asked, named what) and statistics of a model with m's layers. */
static int check_calibrated(const model *m, const quant_recipe *r, const calib_stats *st,
			    bool asked, const char *what, os_error *err)
{
	int rc = quant_recipe_check(r, err);
	if (rc)
		return rc;
	if (!asked)
		return os_error_set(err, OS_EUSAGE, "quantize: the recipe has no %s", what);
	if (calib_n_layers(st) != model_get_config(m)->n_layers)
		return os_error_set(err, OS_EUSAGE, "calibration has %zu layers, the model %zu",
				    calib_n_layers(st), model_get_config(m)->n_layers);
	return OS_OK;
}

int quant_model_apply_search(model *m, const quant_recipe *r, const calib_stats *st,
			     threadpool *pool, quant_progress_fn progress, void *progress_ctx,
			     os_error *err)
{
	int rc = check_calibrated(m, r, st, r->scale_search, "scale search", err);
	if (rc)
		return rc;
	size_t done = 0;
	return apply_matrices(m, r, st, false, NULL, pool, progress, progress_ctx, &done, NULL,
			      err);
}

int quant_model_apply_gptq(model *m, const quant_recipe *r, const calib_stats *st,
			   threadpool *pool, quant_progress_fn progress, void *progress_ctx,
			   gptq_report *rep, os_error *err)
{
	size_t done = 0;
	return quant_model_apply_gptq_layers(m, r, st, 0, model_get_config(m)->n_layers, true,
					     pool, progress, progress_ctx, &done, rep, err);
}

int quant_model_apply_gptq_layers(model *m, const quant_recipe *r, const calib_stats *st,
				  size_t layer_begin, size_t layer_end, bool rest,
				  threadpool *pool, quant_progress_fn progress,
				  void *progress_ctx, size_t *done, gptq_report *rep,
				  os_error *err)
{
	gptq_report sum = {0};
	if (rep)
		*rep = sum;
	int rc = check_calibrated(m, r, st, r->gptq, "gptq", err);
	if (rc)
		return rc;
	if (layer_begin > layer_end || layer_end > model_get_config(m)->n_layers)
		return os_error_set(err, OS_EUSAGE, "gptq: layers [%zu, %zu) outside the model's %zu",
				    layer_begin, layer_end, model_get_config(m)->n_layers);
	matrix_scope sc = {.begin = layer_begin, .end = layer_end, .rest = rest};
	rc = apply_matrices(m, r, st, true, &sc, pool, progress, progress_ctx, done, &sum, err);
	if (rep)
		*rep = sum;
	return rc;
}

/* --- the writer ------------------------------------------------------------------------ */

static uint32_t file_type_of(int fmt)
{
	switch (fmt) {
	case BE_WFMT_FP8: return OPTSTUDIO_TYPE_FP8_E4M3;
	case BE_WFMT_FP8_W8A8: return OPTSTUDIO_TYPE_FP8_E4M3_A8;
	case BE_WFMT_I8: return OPTSTUDIO_TYPE_I8_ROW;
	case BE_WFMT_I4: return OPTSTUDIO_TYPE_U4;
	case BE_WFMT_BF16: return GGML_TYPE_BF16;
	default: return GGML_TYPE_F32;
	}
}

/* Adds matrix w (any format) under name, with its companions. Names are copied by the
 * writer; data is borrowed until the write. */
static int add_matrix(gguf_writer *gw, const char *name, const be_weight *w)
{
	uint64_t ne[2] = {w->cols, w->rows};
	size_t n = w->rows * w->cols;
	size_t code_bytes = w->fmt == BE_WFMT_I4 ? n / 2 : n * be_wfmt_elem_bytes(w->fmt);
	int rc = gguf_writer_add_tensor(gw, name, file_type_of(w->fmt), 2, ne, w->data, code_bytes);
	if (rc || !be_wfmt_quantized(w->fmt))
		return rc;
	char nm[128];
	uint64_t ng = w->fmt == BE_WFMT_I4 ? w->cols / w->group : 1;
	uint64_t se[2] = {ng, w->rows};
	snprintf(nm, sizeof nm, "%s.scale", name);
	if ((rc = gguf_writer_add_tensor(gw, nm, GGML_TYPE_F32, 2, se, w->scales,
					 (size_t)(ng * w->rows) * sizeof(float))))
		return rc;
	if (w->fmt != BE_WFMT_I4)
		return OS_OK;
	snprintf(nm, sizeof nm, "%s.zero", name);
	return gguf_writer_add_tensor(gw, nm, OPTSTUDIO_TYPE_U8, 2, se, w->zeros,
				      (size_t)(ng * w->rows));
}

int quant_write_gguf(const model *m, const gguf_file *src, const quant_recipe *r,
		     const char *parent_name, const char *parent_sha256, const char *out_path,
		     quant_progress_fn progress, void *progress_ctx, os_error *err)
{
	int rc = quant_recipe_check(r, err);
	if (rc)
		return rc;
	size_t n_t = model_n_tensors(m), total = count_matrices(m) + 1, done = 0;
	be_weight *tmp = calloc(n_t, sizeof *tmp); /* matrices quantized here, freed at the end */
	gguf_writer *gw = NULL;
	char *json = quant_recipe_to_json(r);
	if (!tmp || !json) {
		rc = os_error_set(err, OS_ENOMEM, "cannot write '%s': out of memory", out_path);
		goto done;
	}
	if ((rc = gguf_writer_new(&gw, err)))
		goto done;
	/* Setter failures are kept by the writer and reported by gguf_writer_write. */
	gguf_writer_copy_kv(gw, src, "optstudio.");
	gguf_writer_set_str(gw, "optstudio.recipe", json);
	if (parent_name)
		gguf_writer_set_str(gw, "optstudio.parent.name", parent_name);
	if (parent_sha256)
		gguf_writer_set_str(gw, "optstudio.parent.sha256", parent_sha256);
	if (r->kv != QUANT_KV_MODEL)
		gguf_writer_set_str(gw, "optstudio.kv_type", quant_kv_name(r->kv));

	for (size_t i = 0; i < n_t; i++) {
		model_tensor t = model_tensor_at(m, i);
		if (t.vec) {
			uint64_t ne[1] = {t.vec_len};
			gguf_writer_add_tensor(gw, t.name, GGML_TYPE_F32, 1, ne, t.vec,
					       t.vec_len * sizeof(float));
			continue;
		}
		int target;
		size_t group;
		bool convert;
		if ((rc = plan_matrix(r, &t, &target, &group, &convert, err)))
			goto done;
		const be_weight *w = t.mat;
		if (convert) {
			if ((rc = quantize_weight(t.mat, t.name, target, group, &tmp[i], err)))
				goto done;
			w = &tmp[i];
		}
		add_matrix(gw, t.name, w);
		if (progress && !progress(progress_ctx, "quantize", ++done, total)) {
			rc = os_error_set(err, OS_ESTOPPED, "quantization stopped; '%s' not written",
					  out_path);
			goto done;
		}
	}
	rc = gguf_writer_write(gw, out_path, err);
	if (!rc && progress)
		progress(progress_ctx, "write", ++done, total);
done:
	gguf_writer_free(gw);
	if (tmp)
		for (size_t i = 0; i < n_t; i++)
			weight_free(&tmp[i]);
	free(tmp);
	cJSON_free(json);
	return rc;
}
