/* screen_optimize.c: the Optimize screen: a wizard from a hub model to a queued job (model,
 * techniques, their options, the draft, the evaluation, review), every choice explained, typed
 * fields checked as typed, and launch through job_submit, the path `optstudio optimize` uses. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs/draft_resolve.h"
#include "core/jobs/pipeline.h"
#include "core/optimize/quantize.h"
#include "hub_ops.h"
#include "job_submit.h"
#include "studio.h"
#include "wizard.h"

enum { ST_MODEL, ST_TECH, ST_OPTIONS, ST_DRAFT, ST_EVAL, ST_REVIEW, N_STEPS };
static const char *const step_names[N_STEPS] = {"Model", "Techniques", "Options", "Draft",
						"Evaluate", "Review"};
static const char *const step_marks[N_STEPS] = {"①", "②", "③", "④", "⑤", "⑥"};

enum { W_UP = 1, W_DOWN, W_PGUP, W_PGDN, W_CHOOSE, W_ENTER, W_NEXT, W_BACK, W_BROWSE,
       W_CANCEL };

enum { K_CHOOSE = 6, K_ENTER = 7, K_NEXT = 8, K_BROWSE = 10, N_KEYS = 12 };
static const ui_key opt_keys[N_KEYS] = {
	{KEY_UP, "↑↓", "move", "move between the choices (also k/j); on Review: scroll the spec", W_UP},
	{KEY_DOWN, "↓", NULL, "move down", W_DOWN},
	{'k', "k", NULL, "move up", W_UP},
	{'j', "j", NULL, "move down", W_DOWN},
	{KEY_PPAGE, "PgUp", NULL, "a page up", W_PGUP},
	{KEY_NPAGE, "PgDn", NULL, "a page down", W_PGDN},
	{' ', "␣", "choose", "choose the option under the cursor, toggle a box, cycle a setting, "
			     "edit a field (or click it)", W_CHOOSE},
	{'\n', "⏎", "next", "edit the field under the cursor, else the next step; on Review: "
			    "launch the job", W_ENTER},
	{KEY_RIGHT, "→", NULL, "next step", W_NEXT},
	{KEY_LEFT, "←", "back", "previous step (in the file list: the parent folder)", W_BACK},
	{'b', "b", NULL, "browse for a file (calibration text, custom draft)", W_BROWSE},
	{27, "Esc", "cancel", "close a list; else discard the wizard (asks when anything changed)",
	 W_CANCEL},
};

/* What a row of a step is and does. */
enum { R_HEAD, R_TEXT, R_RADIO, R_CHECK, R_CYCLE, R_FIELD, R_PICK };
enum { RID_NONE, RID_MODEL, RID_METHOD, RID_KV, RID_SPEC, RID_GROUP, RID_DRAFT, RID_FIELD,
       RID_EVAL, RID_INSTANCE };

#define MAX_OPTS 3
typedef struct wrow {
	int kind, id, arg;
	bool on, off;
	char label[96];
	char detail[WIZ_TEXT + 96];
	theme_role detail_role;
	char hint[800];
	const char *opts[MAX_OPTS];     /* R_CYCLE: the values, opts[cur] chosen */
	int n_opts, cur;
	int opt_x0[MAX_OPTS], opt_x1[MAX_OPTS];
	int y;                          /* screen line in the last draw, -1 when not shown */
} wrow;

/* One entry of a list opened over the step: hub drafts, instances, files. */
typedef struct pick_item {
	char name[WIZ_TEXT];
	char detail[160];
	bool dir;                       /* a folder the file list opens */
} pick_item;
enum { PK_NONE, PK_HUB, PK_INSTANCE, PK_FILE };

typedef struct opt_screen {
	wiz_settings w;
	ui_key keys[N_KEYS];            /* the frame's key table: labels follow the cursor */
	int step, max_step;
	bool changed;                   /* the user changed something since the start */
	int cursor[N_STEPS];
	int top;
	char home[PATH_MAX];
	/* from the store */
	store_model *models;
	size_t n_models;
	long long models_sig;           /* ids and times of the list, to notice a change */
	store_instance *insts;
	size_t n_insts;
	pick_item *compat;              /* hub models sharing the target's tokenizer */
	size_t n_compat;
	char rec_label[160], rec_reason[512], rec_error[300];
	char target_vocab[96];
	/* the rows of the current step */
	wrow *rows;
	size_t n_rows, cap_rows;
	int list_y0, list_h, bar_y;
	int bar_x0[N_STEPS], bar_x1[N_STEPS];
	/* the field being edited */
	int editing;
	char saved[WIZ_TEXT];
	/* a list over the step */
	int pick, pick_field;
	pick_item *items;
	size_t n_items, pick_sel, pick_top;
	char pick_dir[PATH_MAX];
	int pick_y0, pick_rows;
	/* what the choices make */
	job_spec *spec;
	char *json;
	job_problems probs;
	char **cli;
	size_t n_cli;
	const char *plan[JOB_SUBMIT_MAX_STAGES];
	size_t n_plan;
	int review_scroll, json_rows;
	char pending_model[WIZ_TEXT];   /* ui_goto asked to start over on this model */
} opt_screen;

static const int field_step[WF_COUNT] = {
	[WF_ALPHA] = ST_OPTIONS, [WF_SAMPLES] = ST_OPTIONS, [WF_SEQ_LEN] = ST_OPTIONS,
	[WF_CALIB] = ST_OPTIONS, [WF_DRAFT_PATH] = ST_DRAFT, [WF_K] = ST_DRAFT,
	[WF_CONC] = ST_EVAL, [WF_INPUT] = ST_EVAL, [WF_OUTPUT] = ST_EVAL, [WF_REQUESTS] = ST_EVAL,
	[WF_DISCOUNT] = ST_EVAL,
};
static const char *const field_labels[WF_COUNT] = {
	[WF_ALPHA] = "alpha", [WF_SAMPLES] = "samples", [WF_SEQ_LEN] = "tokens per sample",
	[WF_CALIB] = "calibration text", [WF_DRAFT_PATH] = "path", [WF_K] = "k (draft tokens)",
	[WF_CONC] = "concurrency levels", [WF_INPUT] = "input tokens", [WF_OUTPUT] = "output tokens",
	[WF_REQUESTS] = "requests per level", [WF_DISCOUNT] = "discount",
};
static const char *const field_hints[WF_COUNT] = {
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
};

/* ---- rows ----------------------------------------------------------------------------------- */

static wrow *row_add(opt_screen *o, int kind, int id, int arg, const char *label)
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

static bool selectable(const wrow *r)
{
	return r->kind != R_HEAD && r->kind != R_TEXT;
}

#define SETF(buf, ...) snprintf((buf), sizeof(buf), __VA_ARGS__)

/* Copies src into dst (n bytes), cut when longer. */
static void copy_str(char *dst, size_t n, const char *src)
{
	size_t len = strlen(src);
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static const store_model *find_model(const opt_screen *o, const char *name)
{
	for (size_t i = 0; i < o->n_models; i++)
		if (!strcmp(o->models[i].name, name))
			return &o->models[i];
	return NULL;
}

static const char *method_name(int m)
{
	return m < 0 ? "none" : quant_method_name((quant_method)m);
}

static bool method_has_options(int m)
{
	return m == QUANT_INT8_SQ || m == QUANT_INT4_AWQ || m == QUANT_INT4_RTN;
}

static bool step_relevant(const opt_screen *o, int s)
{
	if (s == ST_OPTIONS)
		return method_has_options(o->w.method);
	if (s == ST_DRAFT)
		return o->w.spec;
	return s >= 0 && s < N_STEPS;
}

static void add_field(opt_screen *o, int f, bool off)
{
	wrow *r = row_add(o, R_FIELD, RID_FIELD, f, field_labels[f]);
	if (!r)
		return;
	r->off = off;
	SETF(r->hint, "%s", field_hints[f]);
}

static void rows_model(opt_screen *o)
{
	row_add(o, R_HEAD, RID_NONE, 0, "Models in the hub (the one under the cursor is chosen)");
	if (!o->n_models)
		row_add(o, R_TEXT, RID_NONE, 0, "the hub is empty: 'optstudio hub import FILE.gguf' "
						"adds a model");
	for (size_t i = 0; i < o->n_models; i++) {
		const store_model *m = &o->models[i];
		wrow *r = row_add(o, R_RADIO, RID_MODEL, (int)i, m->name);
		if (!r)
			return;
		char p[32], sz[32];
		hub_format_params(m->n_params, p, sizeof p);
		hub_format_bytes(m->file_size, sz, sizeof sz);
		r->on = !strcmp(m->name, o->w.model);
		SETF(r->detail, "%s · %s params · %s · %s", m->architecture ? m->architecture : "—", p,
		     m->precision ? m->precision : "—", sz);
		SETF(r->hint, "%s · %lld layers · hidden %lld · %lld heads / %lld KV · vocab %lld (%s) · "
		     "context %lld tokens · %s", m->architecture ? m->architecture : "—",
		     (long long)m->n_layers, (long long)m->hidden_size, (long long)m->n_heads,
		     (long long)m->n_kv_heads, (long long)m->vocab_size,
		     m->tokenizer_kind ? m->tokenizer_kind : "—", (long long)m->context_length,
		     m->path ? m->path : "");
	}
}

/* the methods in the order the wizard offers them, with what each means */
static const struct {
	int method;
	const char *label, *detail, *hint;
} method_rows[] = {
	{-1, "None", "keep the model's weights",
	 "No quantization: the weights stay as they are. Choose this to only measure the model, "
	 "or to try speculative decoding alone."},
	{QUANT_FP8, "FP8 E4M3", "W8A16 · ~2x fewer weight bytes than BF16",
	 "FP8 weights with per-output-channel scales; activations keep their precision. Half the "
	 "weight bytes of BF16 and no calibration. Decoding is bound by memory reads, so fewer "
	 "bytes means faster tokens."},
	{QUANT_FP8_W8A8, "FP8 E4M3 W8A8", "W8A8 · needs FP8 matrix units · emulated on CPU",
	 "FP8 weights and dynamic per-token FP8 activations, for GPUs with FP8 matrix units "
	 "(H100, L40S). On this CPU the FP8 products are emulated: expect accuracy figures more "
	 "than speed."},
	{QUANT_INT8_SQ, "INT8 SmoothQuant", "W8A8 · int8 matmuls · calibrated",
	 "INT8 weights and per-token INT8 activations with int8 matrix products (VNNI/AMX where "
	 "the CPU has them). SmoothQuant moves activation outliers into the weights (strength "
	 "alpha), measured on a calibration text. Next: alpha and calibration."},
	{QUANT_INT4_AWQ, "INT4 AWQ", "W4A16, groups · ~4x fewer bytes · calibrated",
	 "INT4 weights in groups with activation-aware scales found on a calibration text: about "
	 "4x fewer weight bytes than BF16, the biggest decode speed-up, a small accuracy cost. "
	 "Next: group size and calibration."},
	{QUANT_INT4_RTN, "INT4 RTN", "W4A16, groups · round to nearest, no calibration",
	 "INT4 groups by plain rounding: as small as AWQ, quicker to make, usually less accurate. "
	 "A baseline for AWQ. Next: group size."},
	{QUANT_INT8_RTN, "INT8 RTN", "W8A8 · int8 without smoothing, no calibration",
	 "INT8 weights and activations in SmoothQuant's format without smoothing: quick, no "
	 "calibration; activation outliers cost accuracy. A baseline for SmoothQuant."},
};

static const char *const kv_opts[] = {"model", "FP8", "INT8"};
static const char *const group_opts[] = {"32", "64", "128"};

static void rows_tech(opt_screen *o)
{
	row_add(o, R_HEAD, RID_NONE, 0, "Quantization (one method)");
	for (size_t i = 0; i < sizeof method_rows / sizeof method_rows[0]; i++) {
		wrow *r = row_add(o, R_RADIO, RID_METHOD, method_rows[i].method, method_rows[i].label);
		if (!r)
			return;
		r->on = o->w.method == method_rows[i].method;
		SETF(r->detail, "%s", method_rows[i].detail);
		SETF(r->hint, "%s", method_rows[i].hint);
	}
	row_add(o, R_HEAD, RID_NONE, 0, "Run time");
	wrow *r = row_add(o, R_CYCLE, RID_KV, 0, "KV cache");
	if (r) {
		for (int i = 0; i < 3; i++)
			r->opts[i] = kv_opts[i];
		r->n_opts = 3;
		r->cur = o->w.kv;
		if (o->w.kv && o->w.method < 0) {
			SETF(r->detail, "✗ needs a method");
			r->detail_role = ROLE_WARN;
		}
		SETF(r->hint, "The KV cache keeps every sequence's keys and values; at long contexts "
		     "and high concurrency it outgrows the weights. FP8 or INT8 store it in 1 byte "
		     "per value, so more sequences fit and attention reads less. model keeps the "
		     "model's precision. It rides on a quantization method.");
	}
	r = row_add(o, R_CHECK, RID_SPEC, 0, "Speculative decoding");
	if (r) {
		r->on = o->w.spec;
		SETF(r->detail, "%s", o->w.spec ? "next: choose the draft" : "a draft guesses, the model checks");
		SETF(r->hint, "A small draft model (or n-gram prompt lookup) proposes the next k tokens "
		     "and the model checks them in one batched pass: accepted tokens come almost "
		     "free, output is the same as plain decoding. Measured by the evaluation.");
	}
}

static void rows_options(opt_screen *o)
{
	row_add(o, R_HEAD, RID_NONE, 0, o->w.method == QUANT_INT8_SQ ? "Smoothing" : "Groups");
	if (wiz_field_relevant(&o->w, WF_ALPHA))
		add_field(o, WF_ALPHA, false);
	if (o->w.method == QUANT_INT4_AWQ || o->w.method == QUANT_INT4_RTN) {
		wrow *r = row_add(o, R_CYCLE, RID_GROUP, 0, "group size");
		if (r) {
			for (int i = 0; i < 3; i++)
				r->opts[i] = group_opts[i];
			r->n_opts = 3;
			r->cur = o->w.group == 32 ? 0 : o->w.group == 64 ? 1 : 2;
			SETF(r->hint, "Weights share one scale and zero point per group of this many "
			     "values: smaller groups follow the weights more closely (more accurate) "
			     "and add scale bytes; 128 is the usual choice.");
		}
	}
	if (wiz_field_relevant(&o->w, WF_CALIB)) {
		row_add(o, R_HEAD, RID_NONE, 0, "Calibration");
		add_field(o, WF_SAMPLES, false);
		add_field(o, WF_SEQ_LEN, false);
		add_field(o, WF_CALIB, false);
	}
}

static void rows_draft(opt_screen *o)
{
	const wiz_settings *w = &o->w;
	char head[512];
	SETF(head, "Draft model for %s%s", w->model, o->target_vocab);
	row_add(o, R_HEAD, RID_NONE, 0, head);
	wrow *r = row_add(o, R_RADIO, RID_DRAFT, WD_RECOMMENDED, "Recommended");
	if (r) {
		r->on = w->draft == WD_RECOMMENDED;
		if (o->rec_error[0]) {
			SETF(r->detail, "✗ %s", o->rec_error);
			r->detail_role = ROLE_BAD;
			SETF(r->hint, "No recommendation: %s", o->rec_error);
		} else {
			SETF(r->detail, "%s", o->rec_label);
			r->detail_role = ROLE_GOOD;
			SETF(r->hint, "%s — why: %s", o->rec_label, o->rec_reason[0] ? o->rec_reason : "—");
		}
	}
	r = row_add(o, R_RADIO, RID_DRAFT, WD_HUB, "From hub");
	if (r) {
		r->on = w->draft == WD_HUB;
		r->off = !o->n_compat;
		if (!o->n_compat)
			SETF(r->detail, "no other hub model shares this tokenizer");
		else if (w->draft == WD_HUB && w->hub_draft[0])
			SETF(r->detail, "%s ✓ · ␣ lists %zu compatible", w->hub_draft, o->n_compat);
		else
			SETF(r->detail, "%zu compatible model%s ▸", o->n_compat, o->n_compat == 1 ? "" : "s");
		SETF(r->hint, "A hub model as the draft. Only models with the target's tokenizer "
		     "(same vocabulary and hash) can draft, so only those are listed; smaller is "
		     "cheaper per guess. ␣ opens the list.");
	}
	r = row_add(o, R_RADIO, RID_DRAFT, WD_CUSTOM, "Custom file");
	if (r) {
		r->on = w->draft == WD_CUSTOM;
		if (w->text[WF_DRAFT_PATH][0] && w->error[WF_DRAFT_PATH][0]) {
			SETF(r->detail, "✗ %s", w->error[WF_DRAFT_PATH]);
			r->detail_role = ROLE_BAD;
		} else if (w->text[WF_DRAFT_PATH][0]) {
			SETF(r->detail, "%s", w->note[WF_DRAFT_PATH]);
			r->detail_role = ROLE_GOOD;
		} else {
			SETF(r->detail, "a GGUF file or Hugging Face folder, checked at once");
		}
		SETF(r->hint, "%s%s%s", w->text[WF_DRAFT_PATH][0] ? r->detail : "",
		     w->text[WF_DRAFT_PATH][0] ? " — " : "", field_hints[WF_DRAFT_PATH]);
	}
	add_field(o, WF_DRAFT_PATH, w->draft != WD_CUSTOM);
	r = row_add(o, R_RADIO, RID_DRAFT, WD_NGRAM, "Prompt lookup");
	if (r) {
		r->on = w->draft == WD_NGRAM;
		SETF(r->detail, "n-gram, no draft model");
		SETF(r->hint, "Proposes tokens by finding the latest words earlier in the prompt and "
		     "copying what followed: no second model, no memory. Shines when answers repeat "
		     "the input (summaries, code edits, retrieval).");
	}
	add_field(o, WF_K, false);
}

static void rows_eval(opt_screen *o)
{
	const wiz_settings *w = &o->w;
	wrow *r = row_add(o, R_CHECK, RID_EVAL, 0, "Evaluate the result");
	if (r) {
		r->on = w->eval;
		SETF(r->detail, "%s", w->eval ? "speed sweep, $ per 1M tokens, accuracy"
					      : "off: the job only makes the model");
		SETF(r->hint, "After optimizing, the job loads the result and measures throughput and "
		     "latency at each concurrency level with continuous batching, the blended price, "
		     "and (with a held-out text) accuracy against the original.");
	}
	add_field(o, WF_CONC, !w->eval);
	add_field(o, WF_INPUT, !w->eval);
	add_field(o, WF_OUTPUT, !w->eval);
	add_field(o, WF_REQUESTS, !w->eval);
	r = row_add(o, R_PICK, RID_INSTANCE, 0, "instance");
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
	add_field(o, WF_DISCOUNT, !w->eval);
}

static void build_rows(opt_screen *o)
{
	o->n_rows = 0;
	switch (o->step) {
	case ST_MODEL: rows_model(o); break;
	case ST_TECH: rows_tech(o); break;
	case ST_OPTIONS: rows_options(o); break;
	case ST_DRAFT: rows_draft(o); break;
	case ST_EVAL: rows_eval(o); break;
	default: break;
	}
	int *c = &o->cursor[o->step];
	if (*c >= (int)o->n_rows)
		*c = (int)o->n_rows - 1;
	if (*c < 0)
		*c = 0;
	/* onto a selectable row, forwards first */
	int i = *c;
	while (i < (int)o->n_rows && !selectable(&o->rows[i]))
		i++;
	if (i == (int)o->n_rows) {
		i = *c;
		while (i > 0 && !selectable(&o->rows[i]))
			i--;
	}
	*c = i;
}

static wrow *focused(opt_screen *o)
{
	int c = o->cursor[o->step];
	if (o->step == ST_REVIEW || c < 0 || c >= (int)o->n_rows || !selectable(&o->rows[c]))
		return NULL;
	return &o->rows[c];
}

static bool is_path_field(const wrow *r)
{
	return r && r->kind == R_FIELD && (r->arg == WF_CALIB || r->arg == WF_DRAFT_PATH);
}

/* ---- what the choices make ---------------------------------------------------------------- */

/* Why step s cannot be left forwards (a field with an error, a choice missing), or NULL. */
static const char *step_block(const opt_screen *o, int s, char *why, size_t len)
{
	const wiz_settings *w = &o->w;
	if (s == ST_MODEL && !w->model[0]) {
		snprintf(why, len, o->n_models ? "choose a model" : "the hub is empty: 'optstudio hub "
			 "import FILE.gguf' adds a model");
		return why;
	}
	for (int f = 0; f < WF_COUNT; f++)
		if (field_step[f] == s && wiz_field_relevant(w, f) && w->error[f][0]) {
			snprintf(why, len, "%s: %s", field_labels[f], w->error[f]);
			return why;
		}
	if (s == ST_DRAFT && w->spec) {
		if (w->draft == WD_HUB && !w->hub_draft[0]) {
			snprintf(why, len, "choose a hub model (␣ on From hub lists them)");
			return why;
		}
		if (w->draft == WD_RECOMMENDED && o->rec_error[0]) {
			snprintf(why, len, "no recommended draft: %s", o->rec_error);
			return why;
		}
	}
	if (s == ST_REVIEW && o->probs.n) {
		snprintf(why, len, "%zu problem%s: %s%s%s", o->probs.n, o->probs.n == 1 ? "" : "s",
			 o->probs.v[0].path, o->probs.v[0].path[0] ? ": " : "", o->probs.v[0].message);
		return why;
	}
	return NULL;
}

/* The spec of the choices, its problems (the wizard's own field errors first, then the
 * spec's validation as job_submit does it), canonical JSON and command line. */
static void update(opt_screen *o, ui *u)
{
	job_spec_free(o->spec);
	o->spec = NULL;
	free(o->json);
	o->json = NULL;
	wiz_cli_free(o->cli, o->n_cli);
	o->cli = NULL;
	o->n_cli = 0;
	o->n_plan = 0;
	job_problems_free(&o->probs);
	os_error err = {0};
	for (int f = 0; f < WF_COUNT; f++)
		if (wiz_field_relevant(&o->w, f) && o->w.error[f][0])
			job_problems_add(&o->probs, wiz_field_path(f), "%s", o->w.error[f]);
	if (o->w.spec && o->w.draft == WD_RECOMMENDED && o->rec_error[0])
		job_problems_add(&o->probs, "speculative_decoding.draft", "no recommended draft: %s",
				 o->rec_error);
	if (wiz_build_spec(&o->w, &o->spec, &err) != OS_OK) {
		job_problems_add(&o->probs, "", "%s", os_error_text(&err));
		return;
	}
	job_problems spec_probs = {0};
	job_submit_check(ui_store(u), o->spec, &spec_probs, NULL);
	for (size_t i = 0; i < spec_probs.n; i++) {
		bool dup = false;
		for (size_t j = 0; j < o->probs.n; j++)
			if (!strcmp(o->probs.v[j].path, spec_probs.v[i].path))
				dup = true;
		if (!dup)
			job_problems_add(&o->probs, spec_probs.v[i].path, "%s", spec_probs.v[i].message);
	}
	job_problems_free(&spec_probs);
	if (!o->probs.n && pipeline_plan(o->spec, o->plan, JOB_SUBMIT_MAX_STAGES, &o->n_plan, &err))
		job_problems_add(&o->probs, "", "%s", os_error_text(&err));
	o->json = job_spec_print(o->spec, true);
	o->cli = wiz_cli_words(o->spec, &o->n_cli);
}

static void check_all(opt_screen *o)
{
	for (int f = 0; f < WF_COUNT; f++)
		wiz_field_check(&o->w, f, o->home);
}

/* The chosen model's file, context, compatible drafts and recommendation. */
static void load_target(opt_screen *o, ui *u)
{
	wiz_settings *w = &o->w;
	free(o->compat);
	o->compat = NULL;
	o->n_compat = 0;
	o->rec_label[0] = o->rec_reason[0] = o->rec_error[0] = o->target_vocab[0] = '\0';
	const store_model *m = find_model(o, w->model);
	w->model_path[0] = '\0';
	w->model_ctx = 0;
	if (!m)
		return;
	SETF(w->model_path, "%s", m->path ? m->path : "");
	w->model_ctx = m->context_length;
	SETF(o->target_vocab, " (vocab %lld · %.6s…)", (long long)m->vocab_size,
	     m->vocab_hash ? m->vocab_hash : "");
	store_model *v = NULL;
	size_t n = 0;
	if (m->vocab_hash && store_model_list_by_vocab(ui_store(u), m->vocab_hash, &v, &n, NULL) == OS_OK) {
		o->compat = n ? calloc(n, sizeof *o->compat) : NULL;
		for (size_t i = 0; o->compat && i < n; i++) {
			if (v[i].id == m->id)
				continue;
			pick_item *it = &o->compat[o->n_compat++];
			char p[32];
			hub_format_params(v[i].n_params, p, sizeof p);
			SETF(it->name, "%s", v[i].name);
			SETF(it->detail, "%s params · %s%s", p, v[i].precision ? v[i].precision : "—",
			     v[i].n_params < m->n_params ? " · smaller" : "");
		}
		store_model_list_free(v, n);
	}
	if (w->draft == WD_HUB) {
		bool still = false;
		for (size_t i = 0; i < o->n_compat; i++)
			still |= !strcmp(o->compat[i].name, w->hub_draft);
		if (!still)
			w->hub_draft[0] = '\0';
	}
	draft_spec d;
	memset(&d, 0, sizeof d);
	os_error err = {0};
	if (w->model_path[0] && draft_resolve_recommend(ui_store(u), w->model_path, &d, &err) == OS_OK) {
		SETF(o->rec_label, "%s", d.label);
		SETF(o->rec_reason, "%s", d.reason);
		draft_spec_clear(&d);
	} else {
		SETF(o->rec_error, "%s", os_error_text(&err));
	}
	wiz_field_check(w, WF_DRAFT_PATH, o->home);
	wiz_field_check(w, WF_SEQ_LEN, o->home);
}

static void set_model(opt_screen *o, ui *u, const char *name)
{
	if (!strcmp(o->w.model, name))
		return;
	SETF(o->w.model, "%s", name);
	load_target(o, u);
}

static void reset(opt_screen *o, ui *u, const char *name)
{
	char keep[WIZ_TEXT];
	SETF(keep, "%s", name ? name : o->w.model);
	wiz_settings_init(&o->w);
	o->step = o->max_step = ST_MODEL;
	o->changed = false;
	memset(o->cursor, 0, sizeof o->cursor);
	o->top = o->review_scroll = 0;
	o->pick = PK_NONE;
	check_all(o);
	if (find_model(o, keep))
		set_model(o, u, keep);
	else if (o->n_models)
		set_model(o, u, o->models[0].name);
	else
		load_target(o, u);
}

/* ---- navigation -------------------------------------------------------------------------------- */

static void place_cursor(opt_screen *o)
{
	build_rows(o);
	/* on the chosen option when there is one (the model list, a radio group) */
	if (o->step == ST_MODEL)
		for (size_t i = 0; i < o->n_rows; i++)
			if (o->rows[i].on)
				o->cursor[o->step] = (int)i;
	o->top = 0;
	build_rows(o);
}

static void go_step(opt_screen *o, ui *u, int s)
{
	o->step = s;
	if (s > o->max_step)
		o->max_step = s;
	o->review_scroll = 0;
	place_cursor(o);
	update(o, u);
}

static void go_next(opt_screen *o, ui *u)
{
	char why[512];
	if (step_block(o, o->step, why, sizeof why)) {
		ui_status(u, true, "%s", why);
		return;
	}
	int s = o->step + 1;
	while (s < N_STEPS && !step_relevant(o, s))
		s++;
	if (s < N_STEPS)
		go_step(o, u, s);
}

static void go_back(opt_screen *o, ui *u)
{
	int s = o->step - 1;
	while (s > 0 && !step_relevant(o, s))
		s--;
	if (s >= 0 && s != o->step)
		go_step(o, u, s);
}

/* ---- editing ------------------------------------------------------------------------------------ */

static void on_field(void *state, ui *u, const char *text, int event)
{
	opt_screen *o = state;
	int f = o->editing;
	if (f < 0 || f >= WF_COUNT)
		return;
	wiz_settings *w = &o->w;
	SETF(w->text[f], "%s", event == UI_PROMPT_CANCEL ? o->saved : text);
	if (event == UI_PROMPT_ACCEPT) {
		/* surrounding blanks mean nothing in a number or a path typed here */
		char *t = w->text[f], *a = t;
		while (*a == ' ')
			a++;
		memmove(t, a, strlen(a) + 1);
		for (size_t n = strlen(t); n && t[n - 1] == ' '; n--)
			t[n - 1] = '\0';
	}
	wiz_field_check(w, f, o->home);
	if (event == UI_PROMPT_ACCEPT) {
		if (strcmp(o->saved, w->text[f]))
			o->changed = true;
		if (w->error[f][0])
			ui_status(u, true, "%s: %s", field_labels[f], w->error[f]);
	}
	if (event != UI_PROMPT_EDIT)
		o->editing = -1;
	update(o, u);
}

static void edit_field(opt_screen *o, ui *u, int f)
{
	char label[32];
	o->editing = f;
	SETF(o->saved, "%s", o->w.text[f]);
	SETF(label, "%s: ", field_labels[f]);
	if (f == WF_DRAFT_PATH && o->w.draft != WD_CUSTOM) {
		o->w.draft = WD_CUSTOM;
		o->changed = true;
	}
	ui_prompt(u, label, o->w.text[f], on_field, o);
	update(o, u);
}

/* ---- lists over the step: hub drafts, instances, files --------------------------------------- */

static int cmp_items(const void *a, const void *b)
{
	const pick_item *x = a, *y = b;
	if (!strcmp(x->name, ".."))
		return -1;
	if (!strcmp(y->name, ".."))
		return 1;
	if (x->dir != y->dir)
		return x->dir ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool items_grow(opt_screen *o, size_t *cap)
{
	if (o->n_items < *cap)
		return true;
	size_t nc = *cap ? 2 * *cap : 64;
	pick_item *ni = realloc(o->items, nc * sizeof *ni);
	if (!ni)
		return false;
	o->items = ni;
	*cap = nc;
	return true;
}

/* Lists pick_dir: "..", folders, files (no hidden ones). */
static void list_dir(opt_screen *o, ui *u)
{
	o->n_items = 0;
	o->pick_sel = o->pick_top = 0;
	size_t cap = 0;
	DIR *d = opendir(o->pick_dir);
	if (!d) {
		ui_status(u, true, "cannot open '%s': %s", o->pick_dir, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		bool up = !strcmp(e->d_name, "..");
		if (e->d_name[0] == '.' && !up)
			continue;
		if (up && !strcmp(o->pick_dir, "/"))
			continue;
		char full[PATH_MAX + 256];
		snprintf(full, sizeof full, "%s/%s", o->pick_dir, e->d_name);
		struct stat st;
		if (stat(full, &st) != 0 || !items_grow(o, &cap))
			continue;
		pick_item *it = &o->items[o->n_items++];
		memset(it, 0, sizeof *it);
		SETF(it->name, "%s", e->d_name);
		it->dir = S_ISDIR(st.st_mode);
		char cfg[PATH_MAX + 300];
		snprintf(cfg, sizeof cfg, "%s/config.json", full);
		if (up)
			SETF(it->detail, "parent folder");
		else if (it->dir && o->pick_field == WF_DRAFT_PATH && access(cfg, R_OK) == 0) {
			it->dir = false; /* a Hugging Face model: chosen, not opened */
			SETF(it->detail, "Hugging Face model folder");
		} else if (it->dir)
			SETF(it->detail, "folder");
		else {
			char sz[32];
			hub_format_bytes(st.st_size, sz, sizeof sz);
			size_t n = strlen(it->name);
			SETF(it->detail, "%s%s", sz, n > 5 && !strcmp(it->name + n - 5, ".gguf") ? " · GGUF" : "");
		}
	}
	closedir(d);
	if (o->n_items)
		qsort(o->items, o->n_items, sizeof *o->items, cmp_items);
}

static void open_files(opt_screen *o, ui *u, int f)
{
	char buf[PATH_MAX + 16];
	const char *t = o->w.text[f];
	struct stat st;
	o->pick_field = f;
	buf[0] = '\0';
	if (*t && stat(t, &st) == 0 && S_ISDIR(st.st_mode) && f != WF_DRAFT_PATH)
		SETF(buf, "%s", t);
	else if (*t) {
		char tmp[PATH_MAX];
		SETF(tmp, "%s", t);
		SETF(buf, "%s", dirname(tmp));
	}
	if (!buf[0] || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(buf, sizeof buf, "%s/%s", o->home, f == WF_CALIB ? "text" : "models");
		if (stat(buf, &st) != 0 && !getcwd(buf, sizeof buf))
			SETF(buf, "/");
	}
	if (strlen(buf) >= PATH_MAX || !realpath(buf, o->pick_dir))
		copy_str(o->pick_dir, sizeof o->pick_dir, buf);
	o->pick = PK_FILE;
	list_dir(o, u);
}

static void open_list(opt_screen *o, ui *u, int kind)
{
	o->n_items = 0;
	o->pick_sel = o->pick_top = 0;
	size_t cap = 0;
	if (kind == PK_HUB) {
		for (size_t i = 0; i < o->n_compat && items_grow(o, &cap); i++) {
			o->items[o->n_items] = o->compat[i];
			if (!strcmp(o->compat[i].name, o->w.hub_draft))
				o->pick_sel = o->n_items;
			o->n_items++;
		}
	} else {
		const char *cur = o->w.instance[0] ? o->w.instance : STORE_LOCAL_INSTANCE;
		for (size_t i = 0; i < o->n_insts && items_grow(o, &cap); i++) {
			const store_instance *it = &o->insts[i];
			pick_item *p = &o->items[o->n_items];
			memset(p, 0, sizeof *p);
			SETF(p->name, "%s", it->name);
			if (it->is_local)
				SETF(p->detail, "this machine · %s", it->usd_per_hour > 0 ? "measured" : "no price set ('optstudio price --set-local')");
			else
				SETF(p->detail, "%lld × %s · $%.2f/h · projected", (long long)it->n_gpus,
				     it->gpu_model ? it->gpu_model : "?", it->usd_per_hour);
			if (!strcmp(it->name, cur))
				o->pick_sel = o->n_items;
			o->n_items++;
		}
	}
	o->pick = kind;
}

static void pick_choose(opt_screen *o, ui *u)
{
	if (o->pick_sel >= o->n_items)
		return;
	const pick_item *it = &o->items[o->pick_sel];
	if (o->pick == PK_FILE) {
		char full[PATH_MAX + WIZ_TEXT + 2], real[PATH_MAX + WIZ_TEXT + 2];
		snprintf(full, sizeof full, "%s/%s", strcmp(o->pick_dir, "/") ? o->pick_dir : "", it->name);
		if (!realpath(full, real))
			SETF(real, "%s", full);
		if (it->dir) {
			copy_str(o->pick_dir, sizeof o->pick_dir, real);
			list_dir(o, u);
			return;
		}
		if (strlen(real) >= WIZ_TEXT) {
			ui_status(u, true, "the path is too long (at most %d bytes)", WIZ_TEXT - 1);
			return;
		}
		SETF(o->w.text[o->pick_field], "%s", real);
		if (o->pick_field == WF_DRAFT_PATH)
			o->w.draft = WD_CUSTOM;
		wiz_field_check(&o->w, o->pick_field, o->home);
	} else if (o->pick == PK_HUB) {
		SETF(o->w.hub_draft, "%s", it->name);
		o->w.draft = WD_HUB;
	} else {
		SETF(o->w.instance, "%s", it->name);
	}
	o->changed = true;
	o->pick = PK_NONE;
	update(o, u);
}

static void pick_parent(opt_screen *o, ui *u)
{
	if (o->pick != PK_FILE || !strcmp(o->pick_dir, "/")) {
		o->pick = PK_NONE;
		return;
	}
	char tmp[PATH_MAX];
	SETF(tmp, "%s", o->pick_dir);
	SETF(o->pick_dir, "%s", dirname(tmp));
	list_dir(o, u);
}

/* ---- actions ---------------------------------------------------------------------------------- */

static void choose_row(opt_screen *o, ui *u, wrow *r, int opt)
{
	wiz_settings *w = &o->w;
	if (!r)
		return;
	if (r->off && r->kind == R_RADIO) {
		ui_status(u, true, "%s: %s", r->label, r->detail);
		return;
	}
	switch (r->id) {
	case RID_MODEL:
		set_model(o, u, o->models[r->arg].name);
		break;
	case RID_METHOD:
		if (w->method != r->arg)
			o->changed = true;
		w->method = r->arg;
		for (int f = WF_ALPHA; f <= WF_CALIB; f++)
			wiz_field_check(w, f, o->home);
		break;
	case RID_KV:
		w->kv = opt >= 0 ? opt : (w->kv + 1) % 3;
		o->changed = true;
		break;
	case RID_GROUP: {
		static const int g[3] = {32, 64, 128};
		int cur = w->group == 32 ? 0 : w->group == 64 ? 1 : 2;
		w->group = g[opt >= 0 ? opt : (cur + 1) % 3];
		o->changed = true;
		break;
	}
	case RID_SPEC:
		w->spec = !w->spec;
		o->changed = true;
		break;
	case RID_EVAL:
		w->eval = !w->eval;
		o->changed = true;
		break;
	case RID_DRAFT:
		if (r->arg == WD_HUB) {
			open_list(o, u, PK_HUB);
			return;
		}
		if (w->draft != r->arg)
			o->changed = true;
		w->draft = r->arg;
		if (r->arg == WD_CUSTOM && !w->text[WF_DRAFT_PATH][0]) {
			edit_field(o, u, WF_DRAFT_PATH);
			return;
		}
		break;
	case RID_FIELD:
		edit_field(o, u, r->arg);
		return;
	case RID_INSTANCE:
		open_list(o, u, PK_INSTANCE);
		return;
	default:
		break;
	}
	update(o, u);
}

static void launch(opt_screen *o, ui *u)
{
	update(o, u);
	if (o->probs.n || !o->spec) {
		char why[512];
		ui_status(u, true, "launch: %s", step_block(o, ST_REVIEW, why, sizeof why) ? why : "no spec");
		return;
	}
	char *canon = job_spec_print(o->spec, false);
	if (!canon) {
		ui_status(u, true, "out of memory");
		return;
	}
	job_submit_result res = {0};
	job_problems probs = {0};
	os_error err = {0};
	int rc = job_submit(ui_store(u), canon, strlen(canon), ui_exe(u), &res, &probs, &err);
	free(canon);
	if (rc && !res.job.id) {
		if (probs.n) {
			job_problems_free(&o->probs);
			o->probs = probs;
			memset(&probs, 0, sizeof probs);
		}
		ui_status(u, true, "cannot queue the job: %s", os_error_text(&err));
		goto done;
	}
	long long id = (long long)res.job.id;
	char plan[160] = "";
	size_t k = 0;
	for (size_t i = 0; i < res.n_plan && k < sizeof plan; i++)
		k += (size_t)snprintf(plan + k, sizeof plan - k, "%s%s", i ? " → " : "", res.plan[i]);
	reset(o, u, NULL);
	ui_store_changed(u);
	ui_goto(u, "Jobs", NULL);
	if (rc)
		ui_status(u, true, "job %lld queued, but the worker did not start: %s", id,
			  os_error_text(&err));
	else
		ui_status(u, false, "job %lld queued: %s", id, plan);
done:
	job_problems_free(&probs);
	job_submit_result_clear(&res);
}

static void on_discard(void *state, ui *u, int64_t arg)
{
	opt_screen *o = state;
	reset(o, u, NULL);
	update(o, u);
	ui_status(u, false, "discarded: the wizard starts again");
}

static void on_start_over(void *state, ui *u, int64_t arg)
{
	opt_screen *o = state;
	reset(o, u, o->pending_model);
	go_step(o, u, ST_TECH);
}

static void move_by(opt_screen *o, int d)
{
	if (o->pick) {
		long s = (long)o->pick_sel + d;
		if (s >= (long)o->n_items)
			s = (long)o->n_items - 1;
		o->pick_sel = s < 0 ? 0 : (size_t)s;
		return;
	}
	if (o->step == ST_REVIEW) {
		o->review_scroll += d;
		if (o->review_scroll < 0)
			o->review_scroll = 0;
		return;
	}
	int c = o->cursor[o->step], step = d > 0 ? 1 : -1;
	for (int left = d > 0 ? d : -d; left > 0; left--) {
		int i = c + step;
		while (i >= 0 && i < (int)o->n_rows && !selectable(&o->rows[i]))
			i += step;
		if (i < 0 || i >= (int)o->n_rows)
			break;
		c = i;
	}
	o->cursor[o->step] = c;
}

static void opt_action(void *state, ui *u, int action)
{
	opt_screen *o = state;
	build_rows(o);
	int page = o->list_h > 2 ? o->list_h - 1 : 5;
	if (o->pick) {
		switch (action) {
		case W_UP: move_by(o, -1); break;
		case W_DOWN: move_by(o, 1); break;
		case W_PGUP: move_by(o, -page); break;
		case W_PGDN: move_by(o, page); break;
		case W_CHOOSE: case W_ENTER: case W_NEXT: pick_choose(o, u); break;
		case W_BACK: pick_parent(o, u); break;
		case W_CANCEL: o->pick = PK_NONE; break;
		default: break;
		}
		return;
	}
	wrow *r = focused(o);
	switch (action) {
	case W_UP: move_by(o, -1); break;
	case W_DOWN: move_by(o, 1); break;
	case W_PGUP: move_by(o, -page); break;
	case W_PGDN: move_by(o, page); break;
	case W_CHOOSE: choose_row(o, u, r, -1); break;
	case W_ENTER:
		if (r && r->kind == R_FIELD)
			choose_row(o, u, r, -1);
		else if (o->step == ST_REVIEW)
			launch(o, u);
		else
			go_next(o, u);
		break;
	case W_NEXT: go_next(o, u); break;
	case W_BACK: go_back(o, u); break;
	case W_BROWSE:
		if (is_path_field(r))
			open_files(o, u, r->arg);
		break;
	case W_CANCEL:
		if (o->changed)
			ui_confirm(u, "Discard this optimization setup? (y discards)", on_discard, o, 0);
		else if (o->step != ST_MODEL) {
			reset(o, u, NULL);
			update(o, u);
		}
		break;
	default: break;
	}
	if (o->step == ST_MODEL && action != W_CANCEL) {
		build_rows(o);
		wrow *m = focused(o);
		if (m && m->id == RID_MODEL)
			set_model(o, u, o->models[m->arg].name);
	}
	build_rows(o);
	if (action == W_UP || action == W_DOWN || action == W_PGUP || action == W_PGDN)
		update(o, u);
}

static bool opt_disabled(void *state, int action, char *why, size_t len)
{
	opt_screen *o = state;
	if (o->pick)
		return action == W_BROWSE && snprintf(why, len, "close the list first (Esc)") > 0;
	wrow *r = focused(o);
	switch (action) {
	case W_ENTER:
		if (r && r->kind == R_FIELD)
			return false;
		return step_block(o, o->step, why, len) != NULL;
	case W_NEXT:
		if (o->step == ST_REVIEW) {
			snprintf(why, len, "this is the last step; ⏎ launches the job");
			return true;
		}
		return step_block(o, o->step, why, len) != NULL;
	case W_BACK:
		if (o->step == ST_MODEL) {
			snprintf(why, len, "this is the first step");
			return true;
		}
		return false;
	case W_BROWSE:
		if (!is_path_field(r)) {
			snprintf(why, len, "b browses on the calibration text or the custom draft path");
			return true;
		}
		return false;
	case W_CHOOSE:
		if (o->step == ST_REVIEW) {
			snprintf(why, len, "nothing to choose on Review; ⏎ launches, ← goes back");
			return true;
		}
		return false;
	default:
		return false;
	}
}

/* The footer follows the cursor: what ⏎ and ␣ do here. */
static void update_keys(opt_screen *o)
{
	wrow *r = focused(o);
	o->keys[K_ENTER].label = o->pick ? "choose" : r && r->kind == R_FIELD ? "edit"
				 : o->step == ST_REVIEW ? "launch" : "next";
	o->keys[K_CHOOSE].label = o->pick || o->step == ST_REVIEW || (r && r->kind == R_FIELD) ? NULL
				  : r && r->kind == R_CHECK ? "toggle" : "choose";
	o->keys[K_NEXT].label = !o->pick && r && r->kind == R_FIELD ? "next" : NULL;
	o->keys[K_BROWSE].label = !o->pick && is_path_field(r) ? "browse" : NULL;
}

/* ---- drawing --------------------------------------------------------------------------------- */

/* Columns of s: every UTF-8 character the wizard writes is one column wide. */
static int cols(const char *s, size_t n)
{
	int c = 0;
	for (size_t i = 0; i < n && s[i]; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

/* Writes text wrapped at spaces into at most max lines of w columns from (y, x). */
static int put_wrapped(ui *u, int y, int x, int w, int max, theme_role role, const char *text)
{
	int line = 0;
	const char *p = text;
	while (*p && line < max) {
		size_t n = 0, cut = 0;
		while (p[n] && cols(p, n + 1) <= w) {
			n++;
			if (p[n] == ' ' || !p[n])
				cut = n;
		}
		if (!p[n])
			cut = n;
		if (!cut)
			cut = n ? n : 1;
		char buf[1024];
		snprintf(buf, sizeof buf, "%.*s", (int)cut, p);
		ui_put(u, y + line, x, w, role, buf, false);
		line++;
		p += cut;
		while (*p == ' ')
			p++;
	}
	return line;
}

static void draw_bar(opt_screen *o, ui *u, ui_rect r)
{
	int x = r.x + 1;
	o->bar_y = r.y;
	for (int s = 0; s < N_STEPS; s++) {
		char t[64];
		snprintf(t, sizeof t, "%s %s", step_marks[s], step_names[s]);
		theme_role role = s == o->step ? ROLE_TAB_ACTIVE
				  : !step_relevant(o, s) || s > o->max_step ? ROLE_DIM : ROLE_TEXT;
		o->bar_x0[s] = x;
		x += ui_put(u, r.y, x, r.x + r.w - x, role, t, false);
		o->bar_x1[s] = x;
		if (s + 1 < N_STEPS)
			x += ui_put(u, r.y, x, r.x + r.w - x, ROLE_BORDER, " ─ ", false);
	}
}

static void draw_field(opt_screen *o, ui *u, const wrow *rw, int y, int x, int w, bool sel)
{
	const wiz_settings *ws = &o->w;
	int f = rw->arg;
	bool path = f == WF_CALIB || f == WF_DRAFT_PATH;
	int bw = path ? 34 : 14;
	if (bw > w - 2)
		bw = w - 2;
	const char *t = ws->text[f];
	const char *val = *t ? t : wiz_field_default(f);
	int inner = bw - 4; /* "[ " text " ]" */
	char shown[WIZ_TEXT + 8];
	if (cols(val, strlen(val)) > inner) {
		/* a long path shows its end, where the file name is */
		const char *p = val;
		while (*p && cols(p, strlen(p)) > inner - 1) {
			p++;
			while (((unsigned char)*p & 0xC0) == 0x80)
				p++;
		}
		snprintf(shown, sizeof shown, "[ …%s", p);
	} else {
		snprintf(shown, sizeof shown, "[ %s", val);
	}
	theme_role role = sel ? ROLE_SELECTION : o->editing == f ? ROLE_ACCENT
			  : rw->off || !*t ? ROLE_DIM : ROLE_TEXT;
	ui_put(u, y, x, bw - 1, role, shown, true);
	ui_put(u, y, x + bw - 1, 1, role, "]", false);
	int dx = x + bw + 1;
	if (rw->off) {
		ui_put(u, y, dx, w - bw - 1, ROLE_DIM, f == WF_DRAFT_PATH ? "(for Custom file)"
							  : "(evaluation is off)", false);
		return;
	}
	if (ws->error[f][0]) {
		char e[WIZ_TEXT + 8];
		snprintf(e, sizeof e, "✗ %s", ws->error[f]);
		ui_put(u, y, dx, w - bw - 1, sel ? ROLE_SELECTION : ROLE_BAD, e, false);
	} else if (ws->note[f][0]) {
		ui_put(u, y, dx, w - bw - 1, sel ? ROLE_SELECTION : ws->note[f][0] == '\xe2' ? ROLE_GOOD
										 : ROLE_DIM,
		       ws->note[f], false);
	}
}

#define LABEL_W 22

static void draw_row(opt_screen *o, ui *u, wrow *rw, int y, int x0, int w, bool sel)
{
	rw->y = y;
	if (rw->kind == R_HEAD) {
		ui_put(u, y, x0, w, ROLE_HEADER, rw->label, false);
		return;
	}
	if (rw->kind == R_TEXT) {
		ui_put(u, y, x0 + 2, w - 2, ROLE_DIM, rw->label, false);
		return;
	}
	theme_role base = sel ? ROLE_SELECTION : rw->off ? ROLE_DIM : ROLE_TEXT;
	if (sel)
		ui_fill(u, y, x0, w, ROLE_SELECTION);
	const char *mark = rw->kind == R_RADIO ? (rw->on ? "(•)" : "( )")
			   : rw->kind == R_CHECK ? (rw->on ? "[x]" : "[ ]") : "   ";
	int x = x0 + 1;
	ui_put(u, y, x, 3, base, mark, false);
	x += 4;
	ui_put(u, y, x, LABEL_W, base, rw->label, false);
	x += LABEL_W;
	int rest = x0 + w - x;
	if (rw->kind == R_FIELD) {
		draw_field(o, u, rw, y, x, rest, sel);
		return;
	}
	if (rw->kind == R_CYCLE) {
		int cx = x;
		for (int i = 0; i < rw->n_opts; i++) {
			char t[64];
			snprintf(t, sizeof t, "%s %s", i == rw->cur ? "(•)" : "( )", rw->opts[i]);
			rw->opt_x0[i] = cx;
			cx += ui_put(u, y, cx, x0 + w - cx, base, t, false);
			rw->opt_x1[i] = cx;
			cx += 2;
		}
		if (rw->detail[0])
			ui_put(u, y, cx + 1, x0 + w - cx - 1, sel ? base : rw->detail_role, rw->detail, false);
		return;
	}
	ui_put(u, y, x, rest - 1, sel ? base : rw->off ? ROLE_DIM : rw->detail_role, rw->detail, false);
}

static void draw_pick(opt_screen *o, ui *u, ui_rect b)
{
	char title[PATH_MAX + 32];
	if (o->pick == PK_FILE)
		snprintf(title, sizeof title, "Choose a file: %s", o->pick_dir);
	else
		snprintf(title, sizeof title, "%s", o->pick == PK_HUB ? "Hub models with this tokenizer"
								  : "Instances (price catalog)");
	for (int j = 0; j < b.h; j++)
		ui_fill(u, b.y + j, b.x, b.w, ROLE_BACKGROUND);
	ui_box(u, b, title, o->pick == PK_FILE ? "⏎ open/choose · ← up · Esc close"
					       : "⏎ choose · Esc close");
	o->pick_y0 = b.y + 1;
	o->pick_rows = b.h - 2;
	if (o->pick_rows < 1)
		o->pick_rows = 1;
	if (o->pick_sel < o->pick_top)
		o->pick_top = o->pick_sel;
	if (o->pick_sel >= o->pick_top + (size_t)o->pick_rows)
		o->pick_top = o->pick_sel - (size_t)o->pick_rows + 1;
	if (!o->n_items)
		ui_put(u, o->pick_y0, b.x + 3, b.w - 6, ROLE_DIM, "nothing to list", false);
	for (int i = 0; i < o->pick_rows && o->pick_top + (size_t)i < o->n_items; i++) {
		size_t k = o->pick_top + (size_t)i;
		const pick_item *it = &o->items[k];
		bool sel = k == o->pick_sel;
		int y = o->pick_y0 + i;
		if (sel)
			ui_fill(u, y, b.x + 1, b.w - 2, ROLE_SELECTION);
		char name[WIZ_TEXT + 2];
		snprintf(name, sizeof name, "%s%s", it->name, it->dir && strcmp(it->name, "..") ? "/" : "");
		int nw = b.w / 2 - 2 > 28 ? 28 : b.w / 2 - 2;
		ui_put(u, y, b.x + 2, nw, sel ? ROLE_SELECTION : it->dir ? ROLE_ACCENT : ROLE_TEXT, name, false);
		ui_put(u, y, b.x + 3 + nw, b.w - nw - 5, sel ? ROLE_SELECTION : ROLE_DIM, it->detail, false);
	}
}

/* The command line, wrapped at words with a shell continuation at each line's end. */
static int draw_cli(opt_screen *o, ui *u, int y, int x, int w, int max, bool measure)
{
	if (!o->cli) {
		if (!measure)
			put_wrapped(u, y, x, w, 2, ROLE_DIM, "the flags cannot say this spec: save the JSON "
				    "above as spec.json and run: optstudio optimize spec.json");
		return 2;
	}
	int lines = 0;
	char line[1024] = "";
	size_t len = 0;
	for (size_t i = 0; i < o->n_cli; i++) {
		const char *word = o->cli[i];
		int need = cols(line, len) + (len ? 1 : 0) + cols(word, strlen(word)) + 2;
		if (len && need > w) {
			if (!measure && lines < max) {
				snprintf(line + len, sizeof line - len, " \\");
				ui_put(u, y + lines, x + (lines ? 2 : 0), w, ROLE_ACCENT, line, false);
			}
			lines++;
			len = 0;
			line[0] = '\0';
		}
		len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", len ? " " : "", word);
		if (len >= sizeof line)
			len = sizeof line - 1;
	}
	if (len) {
		if (!measure && lines < max)
			ui_put(u, y + lines, x + (lines ? 2 : 0), w, ROLE_ACCENT, line, false);
		lines++;
	}
	return lines;
}

static int problem_step(const char *path)
{
	if (!strcmp(path, "model"))
		return ST_MODEL;
	if (!strcmp(path, "quantization.method") || !strcmp(path, "quantization.kv_cache") ||
	    !strcmp(path, "speculative_decoding"))
		return ST_TECH;
	if (!strncmp(path, "quantization", 12))
		return ST_OPTIONS;
	if (!strncmp(path, "speculative_decoding", 20))
		return ST_DRAFT;
	if (!strncmp(path, "evaluation", 10))
		return ST_EVAL;
	return -1;
}

static void draw_review(opt_screen *o, ui *u, ui_rect r, int y)
{
	int x = r.x + 2, w = r.w - 4, bottom = r.y + r.h;
	if (o->probs.n) {
		char t[160];
		snprintf(t, sizeof t, "✗ %zu problem%s: launch is off until %s fixed (← goes back)",
			 o->probs.n, o->probs.n == 1 ? "" : "s", o->probs.n == 1 ? "it is" : "they are");
		ui_put(u, y++, x, w, ROLE_BAD, t, false);
		size_t shown = o->probs.n > 4 ? 3 : o->probs.n;
		for (size_t i = 0; i < shown; i++) {
			const job_problem *p = &o->probs.v[i];
			char line[700];
			int s = problem_step(p->path);
			snprintf(line, sizeof line, "%s %s%s%s", s >= 0 ? step_marks[s] : "·", p->path,
				 p->path[0] ? ": " : "", p->message);
			ui_put(u, y++, x + 2, w - 2, ROLE_BAD, line, false);
		}
		if (shown < o->probs.n) {
			char more[64];
			snprintf(more, sizeof more, "… and %zu more", o->probs.n - shown);
			ui_put(u, y++, x + 2, w - 2, ROLE_BAD, more, false);
		}
	} else {
		char t[256] = "✓ ready: ";
		size_t k = strlen(t);
		for (size_t i = 0; i < o->n_plan && k < sizeof t; i++)
			k += (size_t)snprintf(t + k, sizeof t - k, "%s%s", i ? " → " : "", o->plan[i]);
		if (k < sizeof t)
			snprintf(t + k, sizeof t - k, " · ⏎ launches");
		ui_put(u, y++, x, w, ROLE_GOOD, t, false);
	}
	int cli_lines = draw_cli(o, u, 0, 0, w - 2, 99, true);
	int cli_y = bottom - cli_lines;
	int box_h = cli_y - 1 - y;
	if (box_h >= 3) {
		ui_rect b = {y, r.x, box_h, r.w};
		ui_box(u, b, "Job spec (canonical JSON)", "↑↓ scroll");
		int rows = box_h - 2, n = 0, start = 0;
		const char *p = o->json ? o->json : "";
		for (const char *q = p; *q; q++)
			n += *q == '\n';
		n++;
		if (o->review_scroll > n - rows)
			o->review_scroll = n - rows > 0 ? n - rows : 0;
		start = o->review_scroll;
		int line = 0, shown = 0;
		while (*p && shown < rows) {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			if (line >= start) {
				char buf[1024];
				size_t k = 0;
				bool lead = true; /* cJSON indents with tabs and puts one after ':' */
				for (size_t i = 0; i < len && k + 3 < sizeof buf; i++) {
					if (p[i] == '\t') {
						buf[k++] = ' ';
						if (lead)
							buf[k++] = ' ';
					} else {
						lead = false;
						buf[k++] = p[i];
					}
				}
				buf[k] = '\0';
				ui_put(u, b.y + 1 + shown, b.x + 2, b.w - 4, ROLE_TEXT, buf, false);
				shown++;
			}
			line++;
			p += len + (e ? 1 : 0);
			if (!e)
				break;
		}
	}
	ui_put(u, cli_y - 1, x, w, ROLE_DIM, "Same from the command line:", false);
	draw_cli(o, u, cli_y, x + 2, w - 2, cli_lines, false);
}

static void opt_draw(void *state, ui *u, ui_rect r)
{
	opt_screen *o = state;
	build_rows(o);
	update_keys(o);
	draw_bar(o, u, r);
	char title[512];
	const char *m = o->w.model[0] ? o->w.model : "(no model)";
	switch (o->step) {
	case ST_MODEL: snprintf(title, sizeof title, "Which model to optimize?"); break;
	case ST_TECH: snprintf(title, sizeof title, "Techniques for %s", m); break;
	case ST_OPTIONS: snprintf(title, sizeof title, "Options for %s · %s", m, method_name(o->w.method)); break;
	case ST_DRAFT: snprintf(title, sizeof title, "Speculative decoding for %s", m); break;
	case ST_EVAL: snprintf(title, sizeof title, "Evaluation of the result"); break;
	default: snprintf(title, sizeof title, "Review and launch: %s", m); break;
	}
	ui_put(u, r.y + 1, r.x + 1, r.w - 2, ROLE_ACCENT, title, false);
	int y0 = r.y + 3;
	ui_rect area = {y0, r.x, r.y + r.h - y0, r.w};
	if (o->step == ST_REVIEW) {
		draw_review(o, u, r, r.y + 2);
		return;
	}
	/* the hint box takes what the list leaves, 3 to 5 lines of text */
	int hint_h = area.h - (int)o->n_rows;
	hint_h = hint_h > 7 ? 7 : hint_h < 5 ? 5 : hint_h;
	o->list_y0 = y0;
	o->list_h = area.h - hint_h;
	if (o->list_h < 3)
		o->list_h = 3;
	int c = o->cursor[o->step];
	if (c < o->top)
		o->top = c;
	if (c >= o->top + o->list_h)
		o->top = c - o->list_h + 1;
	if (o->top > 0 && o->rows[o->top - 1].kind == R_HEAD && c - (o->top - 1) < o->list_h)
		o->top--; /* keep a section's heading with its first row */
	for (size_t i = 0; i < o->n_rows; i++)
		o->rows[i].y = -1;
	for (int i = 0; i < o->list_h && o->top + i < (int)o->n_rows; i++)
		draw_row(o, u, &o->rows[o->top + i], y0 + i, r.x + 1, r.w - 2, o->top + i == c);
	wrow *f = focused(o);
	ui_rect hb = {r.y + r.h - hint_h, r.x, hint_h, r.w};
	ui_box(u, hb, f ? f->label : "", "what it means");
	int hy = hb.y + 1, left = hint_h - 2;
	if (f && f->kind == R_FIELD && !f->off && (o->w.error[f->arg][0] || !strncmp(o->w.note[f->arg], "✓", 3))) {
		char e[WIZ_TEXT + 8];
		bool bad = o->w.error[f->arg][0];
		snprintf(e, sizeof e, "%s%s", bad ? "✗ " : "", bad ? o->w.error[f->arg] : o->w.note[f->arg]);
		int n = put_wrapped(u, hy, hb.x + 2, hb.w - 4, left, bad ? ROLE_BAD : ROLE_GOOD, e);
		hy += n;
		left -= n;
	}
	if (f && f->hint[0] && left > 0)
		put_wrapped(u, hy, hb.x + 2, hb.w - 4, left, ROLE_TEXT, f->hint);
	if (o->pick)
		draw_pick(o, u, (ui_rect){y0 - 1, r.x, r.h - (y0 - 1 - r.y), r.w});
}

/* ---- mouse ---------------------------------------------------------------------------------------- */

static void opt_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	opt_screen *o = state;
	if (o->pick) {
		int i = y - o->pick_y0;
		if (i >= 0 && i < o->pick_rows && o->pick_top + (size_t)i < o->n_items) {
			o->pick_sel = o->pick_top + (size_t)i;
			pick_choose(o, u);
		}
		return;
	}
	if (y == o->bar_y) {
		for (int s = 0; s < N_STEPS; s++) {
			if (x < o->bar_x0[s] || x >= o->bar_x1[s])
				continue;
			char why[512];
			if (!step_relevant(o, s)) {
				ui_status(u, true, "%s is not needed for these choices", step_names[s]);
				return;
			}
			if (s > o->max_step) {
				ui_status(u, true, "%s: go through the steps before it first", step_names[s]);
				return;
			}
			for (int k = o->step; k < s; k++)
				if (step_relevant(o, k) && step_block(o, k, why, sizeof why)) {
					ui_status(u, true, "%s", why);
					return;
				}
			go_step(o, u, s);
			return;
		}
		return;
	}
	build_rows(o);
	for (size_t i = 0; i < o->n_rows; i++) {
		wrow *rw = &o->rows[i];
		if (rw->y != y || !selectable(rw))
			continue;
		o->cursor[o->step] = (int)i;
		int opt = -1;
		for (int k = 0; rw->kind == R_CYCLE && k < rw->n_opts; k++)
			if (x >= rw->opt_x0[k] && x < rw->opt_x1[k])
				opt = k;
		if (rw->kind == R_CYCLE && opt < 0)
			return;
		choose_row(o, u, rw, opt);
		if (dbl && o->step == ST_MODEL)
			go_next(o, u);
		return;
	}
}

/* ---- frame callbacks ------------------------------------------------------------------------------ */

static long long list_sig(const store_model *v, size_t n)
{
	long long s = (long long)n;
	for (size_t i = 0; i < n; i++)
		s = s * 31 + v[i].id * 7 + v[i].created_at;
	return s;
}

static void opt_refresh(void *state, ui *u)
{
	opt_screen *o = state;
	store *s = ui_store(u);
	SETF(o->home, "%s", store_home(s));
	store_model *v = NULL;
	size_t n = 0;
	os_error err = {0};
	if (store_model_list(s, &v, &n, &err) != OS_OK) {
		ui_status(u, true, "cannot list the hub: %s", os_error_text(&err));
		return;
	}
	long long sig = list_sig(v, n);
	bool same = sig == o->models_sig && o->models;
	store_model_list_free(o->models, o->n_models);
	o->models = v;
	o->n_models = n;
	o->models_sig = sig;
	store_instance *iv = NULL;
	size_t ni = 0;
	if (store_instance_list(s, &iv, &ni, NULL) == OS_OK) {
		store_instance_list_free(o->insts, o->n_insts);
		o->insts = iv;
		o->n_insts = ni;
	}
	if (!same) {
		/* a model went away or came: the target's drafts and recommendation follow */
		if (!o->w.model[0] || !find_model(o, o->w.model)) {
			o->w.model[0] = '\0';
			if (o->n_models)
				SETF(o->w.model, "%s", o->models[0].name);
			if (o->step != ST_MODEL && !find_model(o, o->w.model))
				o->step = ST_MODEL;
		}
		check_all(o);
		load_target(o, u);
	}
	if (o->pick == PK_INSTANCE || o->pick == PK_HUB)
		o->pick = PK_NONE; /* its entries may be stale */
	update(o, u);
}

static void opt_enter(void *state, ui *u, const char *arg)
{
	opt_screen *o = state;
	if (!arg || !*arg)
		return;
	if (!find_model(o, arg))
		opt_refresh(o, u);
	if (!find_model(o, arg)) {
		ui_status(u, true, "no model named '%s' in the hub", arg);
		return;
	}
	o->pick = PK_NONE;
	if (o->changed && strcmp(arg, o->w.model) != 0) {
		char q[WIZ_TEXT * 2 + 64];
		SETF(o->pending_model, "%s", arg);
		snprintf(q, sizeof q, "Start over for %s? (the setup for %s is discarded)", arg, o->w.model);
		ui_confirm(u, q, on_start_over, o, 0);
		return;
	}
	if (o->changed) {
		ui_status(u, false, "the setup for %s is kept (Esc discards it)", arg);
		return;
	}
	reset(o, u, arg);
	go_step(o, u, ST_TECH);
}

static void opt_destroy(void *state)
{
	opt_screen *o = state;
	if (!o)
		return;
	store_model_list_free(o->models, o->n_models);
	store_instance_list_free(o->insts, o->n_insts);
	free(o->compat);
	free(o->rows);
	free(o->items);
	job_spec_free(o->spec);
	free(o->json);
	job_problems_free(&o->probs);
	wiz_cli_free(o->cli, o->n_cli);
	free(o);
}

int screen_optimize_new(ui_screen *out, os_error *err)
{
	opt_screen *o = calloc(1, sizeof *o);
	if (!o)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	wiz_settings_init(&o->w);
	memcpy(o->keys, opt_keys, sizeof o->keys);
	o->editing = -1;
	*out = (ui_screen){
		.title = "Optimize",
		.number = 2,
		.keys = o->keys,
		.n_keys = N_KEYS,
		.state = o,
		.draw = opt_draw,
		.on_action = opt_action,
		.on_refresh = opt_refresh,
		.on_click = opt_click,
		.disabled = opt_disabled,
		.destroy = opt_destroy,
		.on_enter = opt_enter,
	};
	return OS_OK;
}
