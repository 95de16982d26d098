/* quant_flow.c: calibrate -> transform -> quantize in memory, the one copy both front ends
 * run (quant_flow.h). */
#include "core/optimize/quant_flow.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/engine/kv_cache.h"
#include "core/optimize/smoothquant.h"

static double now_s(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The callbacks of calibration and AWQ (no stop return of their own) routed to the one
 * progress function: its last answer is what should_stop reports. */
typedef struct relay {
	const quant_flow_opts *o;
	const char *stage;
	size_t done, total;
	size_t base, grand;  /* grand nonzero: reported as (base + done) of grand, one pass of
	                      * several counted on one scale */
	bool stop;
} relay;

static bool relay_report(relay *r)
{
	size_t done = r->grand ? r->base + r->done : r->done;
	size_t total = r->grand ? r->grand : r->total;
	return r->o->progress(r->o->progress_ctx, r->stage, done, total);
}

static void relay_progress(void *ctx, size_t done, size_t total)
{
	relay *r = ctx;
	r->done = done;
	r->total = total;
	if (r->o->progress && !relay_report(r))
		r->stop = true;
}

static bool relay_stop(void *ctx)
{
	relay *r = ctx;
	/* asked between steps: the progress function is where a stop request is read */
	if (!r->stop && r->o->progress && r->total && !relay_report(r))
		r->stop = true;
	return r->stop;
}

bool quant_flow_needed(const quant_recipe *r)
{
	return quant_recipe_calibrates(r);
}

/* Where a calibration pass's Hessians go and how its progress is counted. */
typedef struct pass_opts {
	bool hessian;                /* with the Hessians of layers [begin, end) */
	size_t begin, end;
	bool keep_rows;              /* false: a single row (nothing after GPTQ's pass reads
	                              * rows) */
	const char *stage;
	size_t base, grand;          /* the relay's: this pass on a scale of several */
} pass_opts;

/* One calibration pass over the text with its own engine, on m as it is now. */
static int calibrate_pass(model *m, const quant_recipe *r, const quant_flow_opts *o,
			  const pass_opts *p, calib_stats **out, os_error *err)
{
	*out = NULL;
	if (!o->calib_path || !o->tok || !o->be)
		return os_error_set(err, OS_EUSAGE, "calibration needs a text, a tokenizer and a "
				    "backend");
	const model_config *c = model_get_config(m);
	size_t L = r->calib_seq_len, bt = KV_DEFAULT_BLOCK_TOKENS;
	size_t kv_per_tok = c->n_layers * 2 * c->n_kv_heads * c->head_dim * sizeof(float);
	engine_opts eo = {
		.max_batch = L < 256 ? L : 256,
		.kv_bytes = (L + bt - 1) / bt * bt * kv_per_tok,
		.kv_block_tokens = bt,
		.kv_type = ENGINE_KV_F32,
	};
	engine *e = NULL;
	int rc = engine_new(&e, m, o->be, &eo, err);
	if (rc)
		return rc;
	relay rl = {.o = o, .stage = p->stage, .total = r->calib_samples, .base = p->base,
		    .grand = p->grand};
	calib_opts co = calib_opts_default();
	co.n_samples = r->calib_samples;
	co.seq_len = L;
	if (!p->keep_rows)
		co.keep_rows = 1;
	co.hessian = p->hessian;
	co.layer_begin = p->begin;
	co.layer_end = p->end;
	co.hessian_budget = o->hessian_budget;
	co.be = o->be;
	co.progress = relay_progress;
	co.should_stop = relay_stop;
	co.cb_ctx = &rl;
	rc = calib_run_file(e, o->tok, o->calib_path, &co, out, err);
	engine_free(e); /* the transforms change the weights the engine reads */
	return rc;
}

/* Whether the method transforms the model before quantizing (its statistics are then
 * stale for a later quantizer that needs them of the transformed model). */
static bool method_transforms(quant_method m)
{
	return m == QUANT_INT8_SQ || m == QUANT_INT4_AWQ;
}

size_t quant_flow_plan_ranges(const size_t *layer_bytes, size_t n_layers, size_t budget,
			      size_t *ends)
{
	size_t n = 0, sum = 0;
	for (size_t l = 0; l < n_layers; l++) {
		if (layer_bytes[l] > budget)
			return 0;
		/* a layer that does not fit closes the range before it: greedy ranges are the
		 * fewest, since each takes the most layers any split could from its start */
		if (l > 0 && sum + layer_bytes[l] > budget) {
			ends[n++] = l;
			sum = 0;
		}
		sum += layer_bytes[l];
	}
	if (n_layers)
		ends[n++] = n_layers;
	return n;
}

/* GPTQ's layer ranges for m under o's budget into *ends (malloc'd, *n of them). Planned
 * before the first calibration (int4-awq's Hessian passes come only after its AWQ search)
 * and the refusal worded for the user: calibration would refuse too, but only later and in
 * terms a user cannot act on. */
static int plan_gptq(const model *m, const quant_flow_opts *o, size_t **ends, size_t *n,
		     os_error *err)
{
	const model_config *c = model_get_config(m);
	size_t budget = o->hessian_budget ? o->hessian_budget : CALIB_DEFAULT_HESSIAN_BUDGET;
	size_t nl = c->n_layers, worst = 0;
	size_t *bytes = malloc((nl ? nl : 1) * sizeof *bytes);
	*ends = malloc((nl ? nl : 1) * sizeof **ends);
	*n = 0;
	if (!bytes || !*ends) {
		free(bytes);
		free(*ends);
		*ends = NULL;
		return os_error_set(err, OS_ENOMEM, "gptq: out of memory");
	}
	for (size_t l = 0; l < nl; l++) {
		bytes[l] = calib_hessian_bytes(c, l, l + 1);
		worst = bytes[l] > worst ? bytes[l] : worst;
	}
	*n = quant_flow_plan_ranges(bytes, nl, budget, *ends);
	free(bytes);
	if (*n == 0) {
		free(*ends);
		*ends = NULL;
		return os_error_set(err, OS_ENOMEM, "GPTQ needs %.1f MiB for the Hessians of one "
				    "of this model's layers, over the budget of %.1f MiB; quantize "
				    "without GPTQ (--no-gptq, or \"gptq\": false in a job spec)",
				    (double)worst / (1 << 20), (double)budget / (1 << 20));
	}
	return OS_OK;
}

int quant_flow_calibrate(model *m, const quant_recipe *r, const quant_flow_opts *o,
			 calib_stats **out, quant_flow_report *rep, os_error *err)
{
	*out = NULL;
	if (!quant_flow_needed(r))
		return OS_OK;
	size_t *ends = NULL, n = 0;
	if (r->gptq) {
		int rc = plan_gptq(m, o, &ends, &n, err);
		if (rc)
			return rc;
	}
	/* GPTQ without a transform of its own takes its Hessians from here when they fit at
	 * once; in ranges, none: the caller holds these statistics until the transform ends, so
	 * the first range's Hessians would stay beside every later range's, over the budget */
	pass_opts p = {.hessian = r->gptq && !method_transforms(r->method) && n == 1,
		       .keep_rows = !r->gptq || method_transforms(r->method),
		       .stage = "calibrate"};
	free(ends);
	double t0 = now_s();
	int rc = calibrate_pass(m, r, o, &p, out, err);
	if (rep)
		rep->t_calib += now_s() - t0;
	return rc;
}

/* GPTQ on every block matrix, in the fewest layer ranges whose Hessians fit the budget,
 * each range with Hessians of m as it is then (the ranges before it quantized): st's for
 * the first range when it has them, else a calibration pass per range. */
static int run_gptq(model *m, const quant_recipe *r, const calib_stats *st,
		    const quant_flow_opts *o, quant_flow_report *rep, os_error *err)
{
	size_t *ends = NULL, n = 0, done = 0;
	int rc = plan_gptq(m, o, &ends, &n, err);
	if (rc)
		return rc;
	bool first_given = calib_hessian(st, 0, ENGINE_SITE_ATTN_IN) != NULL;
	size_t n_cal = n - first_given, i_cal = 0; /* the "hessians" passes */
	rep->gptq = (gptq_report){0};
	rep->gptq_passes = n;
	for (size_t k = 0; k < n && !rc; k++) {
		size_t begin = k ? ends[k - 1] : 0;
		calib_stats *own = NULL;
		const calib_stats *use = st;
		if (k > 0 || !first_given) {
			pass_opts p = {.hessian = true, .begin = begin, .end = ends[k],
				       .stage = "hessians"};
			if (n_cal > 1) { /* pass i of n shows as samples on one scale */
				p.base = i_cal * r->calib_samples;
				p.grand = n_cal * r->calib_samples;
			}
			i_cal++;
			double t0 = now_s();
			rc = calibrate_pass(m, r, o, &p, &own, err);
			rep->t_calib += now_s() - t0;
			if (rc)
				break;
			use = own;
		}
		double t0 = now_s();
		gptq_report gr = {0};
		rc = quant_model_apply_gptq_layers(m, r, use, begin, ends[k], k == n - 1,
						   backend_cpu_pool(o->be), o->progress,
						   o->progress_ctx, &done, &gr, err);
		rep->gptq.err_rtn += gr.err_rtn;
		rep->gptq.err_gptq += gr.err_gptq;
		rep->gptq.energy += gr.energy;
		rep->t_gptq += now_s() - t0;
		rep->t_transform += now_s() - t0;
		calib_stats_free(own); /* this range's Hessians, before the next one's */
	}
	rep->has_gptq = rc == OS_OK;
	free(ends);
	return rc;
}

int quant_flow_transform(model *m, const quant_recipe *r, const calib_stats *st,
			 const quant_flow_opts *o, quant_flow_report *rep_out, os_error *err)
{
	quant_flow_report scratch = {0}, *rep = rep_out ? rep_out : &scratch;
	int rc = quant_recipe_check(r, err);
	if (rc)
		return rc;
	if (!quant_flow_needed(r))
		return OS_OK;
	if (!st)
		return os_error_set(err, OS_EINTERNAL, "%s: no calibration statistics",
				    quant_method_name(r->method));
	double t0 = now_s();
	if (r->method == QUANT_INT8_SQ) {
		rc = smoothquant_apply(m, st, r->alpha, err);
	} else if (r->method == QUANT_INT4_AWQ) {
		/* with the scale search and no GPTQ, awq_apply leaves the blocks quantized */
		relay rl = {.o = o, .stage = "awq search",
			    .total = model_get_config(m)->n_layers * ENGINE_N_SITES};
		awq_opts ao = {.group = r->group, .weighted = r->scale_search, .keep_f32 = r->gptq,
			       .be = o->be, .pool = backend_cpu_pool(o->be),
			       .progress = relay_progress, .should_stop = relay_stop, .cb_ctx = &rl};
		rc = awq_apply(m, st, &ao, &rep->awq, err);
		rep->has_awq = rc == OS_OK;
	} else if (r->scale_search && !r->gptq) {
		rc = quant_model_apply_search(m, r, st, backend_cpu_pool(o->be), o->progress,
					      o->progress_ctx, err);
	}
	rep->t_transform += now_s() - t0;
	if (rc)
		return rc;
	if (r->gptq)
		rc = run_gptq(m, r, st, o, rep, err);
	return rc;
}
