/* wizard_eval.c: the wizard's ⑤ Evaluate step: the load generator's sweep, the price's
 * instance and discount, accuracy (held-out text, baseline) and the job's name. */
#include <stdio.h>
#include <string.h>

#include "wizard_screen.h"

void wz_rows_eval(opt_screen *o)
{
	const wiz_settings *w = &o->w;
	wrow *r = wz_row_add(o, R_CHECK, RID_EVAL, 0, "Evaluate the result");
	if (r) {
		r->on = w->eval;
		SETF(r->detail, "%s", w->eval ? "speed sweep, $ per 1M tokens, accuracy"
					      : "off: the job only makes the model");
		SETF(r->hint, "After optimizing, the job loads the result and measures throughput and "
		     "latency at each concurrency level with continuous batching, the blended price, "
		     "and (with a held-out text) accuracy against the original.");
	}
	wz_add_field(o, WF_CONC, !w->eval);
	wz_add_field(o, WF_INPUT, !w->eval);
	wz_add_field(o, WF_OUTPUT, !w->eval);
	wz_add_field(o, WF_REQUESTS, !w->eval);
	r = wz_row_add(o, R_PICK, RID_INSTANCE, 0, "instance");
	if (r) {
		r->off = !w->eval;
		const char *name = w->instance[0] ? w->instance : STORE_LOCAL_INSTANCE;
		const store_instance *it = NULL;
		for (size_t i = 0; i < o->n_insts; i++)
			if (!strcmp(o->insts[i].name, name))
				it = &o->insts[i];
		if (it && it->is_local)
			SETF(r->detail, "%s — this machine%s ▸", it->name,
			     it->usd_per_hour > 0 ? "" : " (no price set)");
		else if (it)
			SETF(r->detail, "%s — %lld × %s · $%.2f/h ▸", it->name, (long long)it->n_gpus,
			     it->gpu_model ? it->gpu_model : "?", it->usd_per_hour);
		else
			SETF(r->detail, "%s ▸", name);
		r->detail_role = ROLE_TEXT;
		SETF(r->hint, "Where the price is computed: this machine (measured), or a catalog "
		     "instance, projected from these measurements by the roofline and labelled "
		     "projected. ␣ lists the catalog.");
	}
	wz_add_field(o, WF_DISCOUNT, !w->eval);
	wz_row_add(o, R_HEAD, RID_NONE, 0, "Accuracy");
	wz_add_field(o, WF_HELDOUT, !w->eval);
	r = wz_row_add(o, R_PICK, RID_BASELINE, 0, "baseline");
	if (r) {
		r->off = !w->eval;
		bool quant = w->method >= 0;
		if (w->baseline[0])
			SETF(r->detail, "%s ✓ same tokenizer ▸", w->baseline);
		else if (quant)
			SETF(r->detail, "default: the input model, %s ▸", w->model);
		else
			SETF(r->detail, "default: none, perplexity only ▸");
		r->detail_role = w->baseline[0] ? ROLE_GOOD : ROLE_TEXT;
		SETF(r->hint, "The model whose next-token distributions the result is compared with on "
		     "the held-out text: KL divergence (mean, p99) and top-1 agreement. By default the "
		     "input model when the job quantizes it, else none (perplexity only). Only hub "
		     "models with the target's tokenizer can be compared (%zu here). ␣ lists them.",
		     o->n_compat);
	}
	wz_row_add(o, R_HEAD, RID_NONE, 0, "Job");
	wz_add_field(o, WF_NAME, false);
}
