/* wizard_rows.c: the Optimize wizard's rows: the typed fields' labels and explanations, the
 * row list of the current step and the cursor on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/optimize/quantize.h"
#include "wizard_screen.h"

const char *const wz_step_names[N_STEPS] = {"Model", "Techniques", "Options", "Draft",
					   "Evaluate", "Review"};
const char *const wz_step_marks[N_STEPS] = {"①", "②", "③", "④", "⑤", "⑥"};

const int wz_field_step[WF_COUNT] = {
	[WF_ALPHA] = ST_OPTIONS, [WF_SAMPLES] = ST_OPTIONS, [WF_SEQ_LEN] = ST_OPTIONS,
	[WF_CALIB] = ST_OPTIONS, [WF_DRAFT_PATH] = ST_DRAFT, [WF_K] = ST_DRAFT,
	[WF_CONC] = ST_EVAL, [WF_INPUT] = ST_EVAL, [WF_OUTPUT] = ST_EVAL, [WF_REQUESTS] = ST_EVAL,
	[WF_DISCOUNT] = ST_EVAL, [WF_HELDOUT] = ST_EVAL, [WF_NAME] = ST_EVAL,
};
const char *const wz_field_labels[WF_COUNT] = {
	[WF_ALPHA] = "alpha", [WF_SAMPLES] = "samples", [WF_SEQ_LEN] = "tokens per sample",
	[WF_CALIB] = "calibration text", [WF_DRAFT_PATH] = "path", [WF_K] = "k (draft tokens)",
	[WF_CONC] = "concurrency levels", [WF_INPUT] = "input tokens", [WF_OUTPUT] = "output tokens",
	[WF_REQUESTS] = "requests per level", [WF_DISCOUNT] = "discount",
	[WF_HELDOUT] = "held-out text", [WF_NAME] = "name",
};
const char *const wz_field_hints[WF_COUNT] = {
	[WF_ALPHA] = "SmoothQuant strength, 0 to 1: how much of the activations' outlier range "
		     "moves into the weights before both are rounded to INT8. 0 is plain INT8, 1 "
		     "moves it all; 0.5 is the paper's default, 0.75-0.85 suits models with big "
		     "outliers.",
	[WF_SAMPLES] = "How many passages of the calibration text run through the model to "
		       "measure activation ranges. More give steadier statistics and take longer "
		       "(time grows with samples x tokens).",
	[WF_SEQ_LEN] = "Tokens per calibration passage, at most the model's context. Longer "
		       "passages see more positions; time grows with samples x tokens.",
	[WF_CALIB] = "A plain text file like what the model will serve (chat-like text for chat "
		     "models). Empty: the data home's text/calibration.txt. b browses.",
	[WF_DRAFT_PATH] = "A custom draft: a GGUF file or a Hugging Face folder. Checked at once: "
			  "it must exist, be a model, and share the target's tokenizer. b browses.",
	[WF_K] = "Draft tokens proposed per step, 1 to 16, or auto (4). More pay off when most "
		 "are accepted and waste work when few are.",
	[WF_CONC] = "Concurrent requests to measure at, e.g. 1,2,4,8,16: throughput grows with "
		    "the batch while latency per token rises. Each level is one point of the "
		    "sweep.",
	[WF_INPUT] = "Prompt length of every request, in tokens (prefill work and KV cache "
		     "size).",
	[WF_OUTPUT] = "Tokens generated per request (decode work, the part quantization "
		      "speeds up most).",
	[WF_REQUESTS] = "Requests per concurrency level; auto sends 2 x the level, at least 8. "
			"More requests give steadier percentiles.",
	[WF_DISCOUNT] = "Discount off the on-demand price for the blended $ per 1M tokens, 0 to "
			"1 (0.26 is a typical savings plan, the default).",
	[WF_HELDOUT] = "Text the model has not been tuned on, for accuracy (perplexity, and KL and "
		       "top-1 agreement against the baseline) and to cut the prompts from. Empty: "
		       "the data home's text/heldout.txt; without one accuracy is skipped. Checked "
		       "at once. b browses.",
	[WF_NAME] = "A label for the job in listings (Jobs, 'optstudio jobs'). Optional.",
};

/* ---- rows ----------------------------------------------------------------------------------- */

wrow *wz_row_add(opt_screen *o, int kind, int id, int arg, const char *label)
{
	if (o->n_rows == o->cap_rows) {
		size_t cap = o->cap_rows ? 2 * o->cap_rows : 32;
		wrow *nr = realloc(o->rows, cap * sizeof *nr);
		if (!nr)
			return NULL;
		o->rows = nr;
		o->cap_rows = cap;
	}
	wrow *r = &o->rows[o->n_rows++];
	memset(r, 0, sizeof *r);
	r->kind = kind;
	r->id = id;
	r->arg = arg;
	r->detail_role = ROLE_DIM;
	r->y = -1;
	snprintf(r->label, sizeof r->label, "%s", label ? label : "");
	return r;
}

bool wz_selectable(const wrow *r)
{
	return r->kind != R_HEAD && r->kind != R_TEXT;
}

/* Copies src into dst (n bytes), cut when longer. */
void wz_copy_str(char *dst, size_t n, const char *src)
{
	size_t len = strlen(src);
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

const store_model *wz_find_model(const opt_screen *o, const char *name)
{
	for (size_t i = 0; i < o->n_models; i++)
		if (!strcmp(o->models[i].name, name))
			return &o->models[i];
	return NULL;
}

const char *wz_method_name(int m)
{
	return m < 0 ? "none" : quant_method_name((quant_method)m);
}

static bool method_has_options(int m)
{
	return m == QUANT_INT8_SQ || m == QUANT_INT4_AWQ || m == QUANT_INT4_RTN || m == QUANT_FP8 ||
	       m == QUANT_FP8_W8A8;
}

bool wz_step_relevant(const opt_screen *o, int s)
{
	if (s == ST_OPTIONS)
		return method_has_options(o->w.method);
	if (s == ST_DRAFT)
		return o->w.spec;
	return s >= 0 && s < N_STEPS;
}

void wz_add_field(opt_screen *o, int f, bool off)
{
	wrow *r = wz_row_add(o, R_FIELD, RID_FIELD, f, wz_field_labels[f]);
	if (!r)
		return;
	r->off = off;
	SETF(r->hint, "%s", wz_field_hints[f]);
}
void wz_build_rows(opt_screen *o)
{
	o->n_rows = 0;
	switch (o->step) {
	case ST_MODEL: wz_rows_model(o); break;
	case ST_TECH: wz_rows_tech(o); break;
	case ST_OPTIONS: wz_rows_options(o); break;
	case ST_DRAFT: wz_rows_draft(o); break;
	case ST_EVAL: wz_rows_eval(o); break;
	default: break;
	}
	int *c = &o->cursor[o->step];
	if (*c >= (int)o->n_rows)
		*c = (int)o->n_rows - 1;
	if (*c < 0)
		*c = 0;
	/* onto a selectable row, forwards first */
	int i = *c;
	while (i < (int)o->n_rows && !wz_selectable(&o->rows[i]))
		i++;
	if (i == (int)o->n_rows) {
		i = *c;
		while (i > 0 && !wz_selectable(&o->rows[i]))
			i--;
	}
	*c = i;
}

wrow *wz_focused(opt_screen *o)
{
	int c = o->cursor[o->step];
	if (o->step == ST_REVIEW || c < 0 || c >= (int)o->n_rows || !wz_selectable(&o->rows[c]))
		return NULL;
	return &o->rows[c];
}

bool wz_is_path_field(const wrow *r)
{
	return r && r->kind == R_FIELD &&
	       (r->arg == WF_CALIB || r->arg == WF_DRAFT_PATH || r->arg == WF_HELDOUT);
}
