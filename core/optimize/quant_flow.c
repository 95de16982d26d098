/* quant_flow.c: calibrate -> transform -> quantize in memory, the one copy both front ends
 * run (quant_flow.h). */
#include "core/optimize/quant_flow.h"

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
	bool stop;
} relay;

static void relay_progress(void *ctx, size_t done, size_t total)
{
	relay *r = ctx;
	r->done = done;
	r->total = total;
	if (r->o->progress && !r->o->progress(r->o->progress_ctx, r->stage, done, total))
		r->stop = true;
}

static bool relay_stop(void *ctx)
{
	relay *r = ctx;
	/* asked between steps: the progress function is where a stop request is read */
	if (!r->stop && r->o->progress && r->total &&
	    !r->o->progress(r->o->progress_ctx, r->stage, r->done, r->total))
		r->stop = true;
	return r->stop;
}

bool quant_flow_needed(const quant_recipe *r)
{
	return quant_recipe_calibrates(r);
}

/* One calibration pass over the text with its own engine; hessian adds the Hessians (and
 * then keeps a single row: nothing after GPTQ's pass reads rows). */
static int calibrate_pass(model *m, const quant_recipe *r, const quant_flow_opts *o,
			  bool hessian, bool keep_rows, const char *stage, calib_stats **out,
			  os_error *err)
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
	relay rl = {.o = o, .stage = stage, .total = r->calib_samples};
	calib_opts co = calib_opts_default();
	co.n_samples = r->calib_samples;
	co.seq_len = L;
	if (!keep_rows)
		co.keep_rows = 1;
	co.hessian = hessian;
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

/* GPTQ's Hessians must fit the budget. Checked before the first calibration (int4-awq's
 * Hessian pass comes only after its AWQ search) and worded for the user: calibration would
 * refuse them too, but only later and in terms a user cannot act on. */
static int check_hessian_budget(const model *m, const quant_flow_opts *o, os_error *err)
{
	const model_config *c = model_get_config(m);
	size_t budget = o->hessian_budget ? o->hessian_budget : CALIB_DEFAULT_HESSIAN_BUDGET;
	size_t need = calib_hessian_bytes(c, 0, c->n_layers);
	if (need > budget)
		return os_error_set(err, OS_ENOMEM, "GPTQ needs %.1f MiB for this model's Hessians, "
				    "over the budget of %.1f MiB; quantize without GPTQ "
				    "(--no-gptq, or \"gptq\": false in a job spec)",
				    (double)need / (1 << 20), (double)budget / (1 << 20));
	return OS_OK;
}

int quant_flow_calibrate(model *m, const quant_recipe *r, const quant_flow_opts *o,
			 calib_stats **out, quant_flow_report *rep, os_error *err)
{
	*out = NULL;
	if (!quant_flow_needed(r))
		return OS_OK;
	if (r->gptq) {
		int rc = check_hessian_budget(m, o, err);
		if (rc)
			return rc;
	}
	double t0 = now_s();
	int rc = calibrate_pass(m, r, o, r->gptq && !method_transforms(r->method),
				!r->gptq || method_transforms(r->method), "calibrate", out, err);
	if (rep)
		rep->t_calib += now_s() - t0;
	return rc;
}

/* GPTQ on every block matrix with Hessians of m as it is now: st when it has them, else a
 * second calibration. */
static int run_gptq(model *m, const quant_recipe *r, const calib_stats *st,
		    const quant_flow_opts *o, quant_flow_report *rep, os_error *err)
{
	calib_stats *own = NULL;
	int rc;
	if (!calib_hessian(st, 0, ENGINE_SITE_ATTN_IN)) {
		double t0 = now_s();
		rc = calibrate_pass(m, r, o, true, false, "hessians", &own, err);
		rep->t_calib += now_s() - t0;
		if (rc)
			return rc;
		st = own;
	}
	double t0 = now_s();
	rc = quant_model_apply_gptq(m, r, st, backend_cpu_pool(o->be), o->progress,
				    o->progress_ctx, &rep->gptq, err);
	rep->has_gptq = rc == OS_OK;
	rep->t_gptq += now_s() - t0;
	rep->t_transform += now_s() - t0;
	calib_stats_free(own);
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
