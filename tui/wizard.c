/* wizard.c: the Optimize wizard's plain-data side (wizard.h): fields checked as typed, the
 * spec built from the choices, the equivalent command line. */
#include "wizard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/engine/draft.h"
#include "core/format/model_info.h"
#include "core/optimize/quantize.h"

static const char *const field_paths[WF_COUNT] = {
	[WF_ALPHA] = "quantization.alpha",
	[WF_SAMPLES] = "quantization.calibration.samples",
	[WF_SEQ_LEN] = "quantization.calibration.seq_len",
	[WF_CALIB] = "quantization.calibration.file",
	[WF_DRAFT_PATH] = "speculative_decoding.draft",
	[WF_K] = "speculative_decoding.k",
	[WF_CONC] = "evaluation.concurrency",
	[WF_INPUT] = "evaluation.input_tokens",
	[WF_OUTPUT] = "evaluation.output_tokens",
	[WF_REQUESTS] = "evaluation.requests_per_level",
	[WF_DISCOUNT] = "evaluation.discount",
	[WF_HELDOUT] = "evaluation.text",
	[WF_NAME] = "name",
};

/* the stages' defaults, as the fields show them when empty (core/jobs, core/optimize) */
static const char *const field_defaults[WF_COUNT] = {
	[WF_ALPHA] = "0.5",
	[WF_SAMPLES] = "32",
	[WF_SEQ_LEN] = "256",
	[WF_CALIB] = "text/calibration.txt",
	[WF_DRAFT_PATH] = "",
	[WF_K] = "auto",
	[WF_CONC] = "1,2,4,8,16",
	[WF_INPUT] = "128",
	[WF_OUTPUT] = "64",
	[WF_REQUESTS] = "auto",
	[WF_DISCOUNT] = "0.26",
	[WF_HELDOUT] = "text/heldout.txt",
	[WF_NAME] = "none",
};

void wiz_settings_init(wiz_settings *w)
{
	memset(w, 0, sizeof *w);
	w->method = -1;
	w->group = 128;
	w->search = -1;
	w->gptq = -1;
	w->draft = WD_RECOMMENDED;
	w->eval = true;
}

const char *wiz_field_path(int f)
{
	return f >= 0 && f < WF_COUNT ? field_paths[f] : "";
}

const char *wiz_field_default(int f)
{
	return f >= 0 && f < WF_COUNT ? field_defaults[f] : "";
}

static bool method_is(const wiz_settings *w, quant_method m)
{
	return w->method == (int)m;
}

bool wiz_search_applies(const wiz_settings *w)
{
	return w->method >= 0 && w->method != QUANT_INT8_SQ && w->method != QUANT_INT8_RTN;
}

bool wiz_search_on(const wiz_settings *w)
{
	if (!wiz_search_applies(w))
		return false;
	return w->search >= 0 ? w->search == 1 : quant_method_search_default((quant_method)w->method);
}

bool wiz_gptq_applies(const wiz_settings *w)
{
	return w->method >= 0 && quant_method_gptq_ok((quant_method)w->method);
}

bool wiz_gptq_on(const wiz_settings *w)
{
	if (!wiz_gptq_applies(w))
		return false;
	return w->gptq >= 0 ? w->gptq == 1 : quant_method_gptq_default((quant_method)w->method);
}

bool wiz_field_relevant(const wiz_settings *w, int f)
{
	bool calib = w->method >= 0 && (quant_method_calibrates((quant_method)w->method) ||
					wiz_search_on(w) || wiz_gptq_on(w));
	switch (f) {
	case WF_ALPHA: return method_is(w, QUANT_INT8_SQ);
	case WF_SAMPLES: case WF_SEQ_LEN: case WF_CALIB: return calib;
	case WF_DRAFT_PATH: return w->spec && w->draft == WD_CUSTOM;
	case WF_K: return w->spec;
	case WF_CONC: case WF_INPUT: case WF_OUTPUT: case WF_REQUESTS: case WF_DISCOUNT:
	case WF_HELDOUT:
		return w->eval;
	case WF_NAME: return true;
	default: return false;
	}
}

/* "" and "auto" leave the field to the stage */
static bool is_default(const char *t)
{
	return !*t || strcmp(t, "auto") == 0;
}

static bool parse_double(const char *t, double *v)
{
	char *end;
	errno = 0;
	*v = strtod(t, &end);
	return *t && !*end && errno == 0 && isfinite(*v);
}

static bool parse_int(const char *t, int64_t *v)
{
	char *end;
	errno = 0;
	long long x = strtoll(t, &end, 10);
	*v = x;
	return *t && !*end && errno == 0;
}

static void check_int(wiz_settings *w, int f, const char *t, int64_t lo, int64_t hi,
		      const char *unit)
{
	int64_t v;
	if (!parse_int(t, &v))
		snprintf(w->error[f], WIZ_TEXT, "'%s' is not a whole number", t);
	else if (v < lo || v > hi)
		snprintf(w->error[f], WIZ_TEXT, "%lld is out of range (%lld to %lld)", (long long)v,
			 (long long)lo, (long long)hi);
	else if (unit)
		snprintf(w->note[f], WIZ_TEXT, "%lld %s", (long long)v, unit);
}

/* Lists "1,2, 4" into v (at most cap): false with why on a bad or repeated level. */
static bool parse_levels(const char *t, int64_t *v, size_t cap, size_t *n, char *why, size_t len)
{
	*n = 0;
	const char *p = t;
	while (*p) {
		while (*p == ' ')
			p++;
		char *end;
		errno = 0;
		long long x = strtoll(p, &end, 10);
		if (end == p || errno) {
			snprintf(why, len, "levels are whole numbers separated by commas, e.g. 1,2,4");
			return false;
		}
		if (x < 1 || x > JOB_SPEC_MAX_CONCURRENCY) {
			snprintf(why, len, "level %lld is out of range (1 to %d)", x,
				 JOB_SPEC_MAX_CONCURRENCY);
			return false;
		}
		for (size_t i = 0; i < *n; i++)
			if (v[i] == x) {
				snprintf(why, len, "level %lld is given twice", x);
				return false;
			}
		if (*n == cap) {
			snprintf(why, len, "at most %zu levels", cap);
			return false;
		}
		v[(*n)++] = x;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p) {
			snprintf(why, len, "levels are whole numbers separated by commas, e.g. 1,2,4");
			return false;
		}
	}
	if (!*n) {
		snprintf(why, len, "give at least one level, e.g. 1,2,4");
		return false;
	}
	return true;
}

static void check_calib(wiz_settings *w, const char *home)
{
	char def[4200];
	const char *t = w->text[WF_CALIB];
	if (!*t) {
		snprintf(def, sizeof def, "%s/text/calibration.txt", home ? home : ".");
		if (access(def, R_OK) == 0)
			snprintf(w->note[WF_CALIB], WIZ_TEXT, "empty: the data home's text/calibration.txt");
		else
			snprintf(w->error[WF_CALIB], WIZ_TEXT, "no default text in the data home: give "
				 "a file (b browses)");
		return;
	}
	struct stat st;
	if (stat(t, &st) != 0 || access(t, R_OK) != 0)
		snprintf(w->error[WF_CALIB], WIZ_TEXT, "cannot read it: %s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		snprintf(w->error[WF_CALIB], WIZ_TEXT, "not a file");
	else
		snprintf(w->note[WF_CALIB], WIZ_TEXT, "✓ text, %.1f KiB", (double)st.st_size / 1024.0);
}

/* The held-out text: a readable, non-empty file. Empty uses the data home's text/heldout.txt;
 * without one the stage skips accuracy (a warning, not an error: speed is still measured). */
static void check_heldout(wiz_settings *w, const char *home)
{
	char def[4200];
	const char *t = w->text[WF_HELDOUT];
	if (!*t) {
		snprintf(def, sizeof def, "%s/text/heldout.txt", home ? home : ".");
		if (access(def, R_OK) == 0)
			snprintf(w->note[WF_HELDOUT], WIZ_TEXT, "empty: the data home's text/heldout.txt");
		else
			snprintf(w->note[WF_HELDOUT], WIZ_TEXT, "⚠ no text/heldout.txt in the data "
				 "home: accuracy is skipped (b browses)");
		return;
	}
	struct stat st;
	if (stat(t, &st) != 0 || access(t, R_OK) != 0)
		snprintf(w->error[WF_HELDOUT], WIZ_TEXT, "cannot read it: %s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		snprintf(w->error[WF_HELDOUT], WIZ_TEXT, "not a file");
	else if (st.st_size == 0)
		snprintf(w->error[WF_HELDOUT], WIZ_TEXT, "the file is empty: accuracy needs text");
	else
		snprintf(w->note[WF_HELDOUT], WIZ_TEXT, "✓ text, %.1f KiB", (double)st.st_size / 1024.0);
}

/* A job name: any label a listing can show on one line. */
static void check_name(wiz_settings *w)
{
	const char *t = w->text[WF_NAME];
	if (!*t) {
		snprintf(w->note[WF_NAME], WIZ_TEXT, "optional: no name");
		return;
	}
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(w->error[WF_NAME], WIZ_TEXT, "control characters cannot be shown in "
				 "listings");
			return;
		}
	if (strspn(t, " ") == strlen(t))
		snprintf(w->error[WF_NAME], WIZ_TEXT, "only blanks: leave it empty for no name");
	else
		snprintf(w->note[WF_NAME], WIZ_TEXT, "✓ listed as '%.64s'", t);
}

/* A custom draft: it exists, is a GGUF or Hugging Face model, and has the target's
 * tokenizer. */
static void check_draft_path(wiz_settings *w)
{
	const char *t = w->text[WF_DRAFT_PATH];
	char *e = w->error[WF_DRAFT_PATH];
	if (!*t) {
		snprintf(e, WIZ_TEXT, "give a GGUF file or a Hugging Face folder (b browses)");
		return;
	}
	if (access(t, F_OK) != 0) {
		snprintf(e, WIZ_TEXT, "no such file or folder");
		return;
	}
	model_info d, tg;
	os_error err = {0};
	if (model_info_read(t, &d, &err) != OS_OK) {
		snprintf(e, WIZ_TEXT, "not a GGUF or Hugging Face model (%s)", os_error_text(&err));
		return;
	}
	if (!w->model_path[0] || model_info_read(w->model_path, &tg, &err) != OS_OK) {
		snprintf(w->note[WF_DRAFT_PATH], WIZ_TEXT, "%s model, vocab %u (target unreadable)",
			 d.format, d.vocab_size);
		return;
	}
	if (draft_check_infos(&tg, &d, t, &err) != OS_OK) {
		if (!d.vocab_hash[0])
			snprintf(e, WIZ_TEXT, "the draft has no tokenizer vocabulary");
		else
			snprintf(e, WIZ_TEXT, "tokenizer differs (draft vocab %u · %.6s…, target %u · "
				 "%.6s…)", d.vocab_size, d.vocab_hash, tg.vocab_size, tg.vocab_hash);
		return;
	}
	snprintf(w->note[WF_DRAFT_PATH], WIZ_TEXT, "✓ %s · vocab %u · tokenizer matches", d.format,
		 d.vocab_size);
}

void wiz_field_check(wiz_settings *w, int f, const char *home)
{
	if (f < 0 || f >= WF_COUNT)
		return;
	w->error[f][0] = w->note[f][0] = '\0';
	char t[WIZ_TEXT]; /* a copy: the messages quote it into the same struct */
	memcpy(t, w->text[f], WIZ_TEXT);
	t[WIZ_TEXT - 1] = '\0';
	double d;
	int64_t lv[JOB_SPEC_MAX_CONCURRENCY_LEVELS];
	size_t n;
	if (f == WF_CALIB) {
		check_calib(w, home);
		return;
	}
	if (f == WF_DRAFT_PATH) {
		check_draft_path(w);
		return;
	}
	if (f == WF_HELDOUT) { /* a path and a label: "auto" is a name like any other here */
		check_heldout(w, home);
		return;
	}
	if (f == WF_NAME) {
		check_name(w);
		return;
	}
	if (is_default(t)) {
		snprintf(w->note[f], WIZ_TEXT, "default: %s", field_defaults[f]);
		return;
	}
	switch (f) {
	case WF_ALPHA:
		if (!parse_double(t, &d))
			snprintf(w->error[f], WIZ_TEXT, "'%s' is not a number", t);
		else if (!(d >= 0 && d <= 1))
			snprintf(w->error[f], WIZ_TEXT, "%g is out of range (0 to 1)", d);
		break;
	case WF_SAMPLES:
		check_int(w, f, t, 1, JOB_SPEC_MAX_SAMPLES, "samples");
		break;
	case WF_SEQ_LEN: {
		int64_t hi = w->model_ctx > 0 && w->model_ctx < JOB_SPEC_MAX_TOKENS ? w->model_ctx
										 : JOB_SPEC_MAX_TOKENS;
		check_int(w, f, t, 2, hi, "tokens per sample");
		if (w->error[f][0] && w->model_ctx > 0 && parse_int(t, &lv[0]) && lv[0] > w->model_ctx)
			snprintf(w->error[f], WIZ_TEXT, "%lld exceeds the model's context of %lld tokens",
				 (long long)lv[0], (long long)w->model_ctx);
		break;
	}
	case WF_K:
		check_int(w, f, t, 1, JOB_SPEC_MAX_SPEC_K, "draft tokens per step");
		if (w->error[f][0])
			snprintf(w->error[f], WIZ_TEXT, "k is 1 to %d, or auto", JOB_SPEC_MAX_SPEC_K);
		break;
	case WF_CONC:
		if (parse_levels(t, lv, JOB_SPEC_MAX_CONCURRENCY_LEVELS, &n, w->error[f], WIZ_TEXT))
			snprintf(w->note[f], WIZ_TEXT, "%zu level%s", n, n == 1 ? "" : "s");
		break;
	case WF_INPUT:
		check_int(w, f, t, 1, JOB_SPEC_MAX_TOKENS, "tokens per prompt");
		break;
	case WF_OUTPUT:
		check_int(w, f, t, 1, JOB_SPEC_MAX_TOKENS, "tokens per answer");
		break;
	case WF_REQUESTS:
		check_int(w, f, t, 1, JOB_SPEC_MAX_REQUESTS, "requests per level");
		break;
	case WF_DISCOUNT:
		if (!parse_double(t, &d))
			snprintf(w->error[f], WIZ_TEXT, "'%s' is not a number", t);
		else if (!(d >= 0 && d < 1))
			snprintf(w->error[f], WIZ_TEXT, "%g is out of range (0 to 1, exclusive)", d);
		else
			snprintf(w->note[f], WIZ_TEXT, "%.0f%% off the on-demand price", d * 100);
		break;
	default:
		break;
	}
}

/* ---- the spec ------------------------------------------------------------------------------ */

/* The field's value when it is relevant, set and parses (range problems are left for the
 * spec's validation to report with its path). */
static bool field_int(const wiz_settings *w, int f, int64_t *v)
{
	return wiz_field_relevant(w, f) && !is_default(w->text[f]) && parse_int(w->text[f], v);
}

static bool field_double(const wiz_settings *w, int f, double *v)
{
	return wiz_field_relevant(w, f) && !is_default(w->text[f]) && parse_double(w->text[f], v);
}

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

int wiz_build_spec(const wiz_settings *w, job_spec **out, os_error *err)
{
	bool oom = false;
	int64_t v;
	double d;
	job_spec *s = calloc(1, sizeof *s);
	*out = NULL;
	if (!s)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	s->model = dup_or_null(w->model, &oom);
	if (w->method >= 0 || w->kv) {
		static const char *const kv_names[] = {"model", "fp8", "int8", "bf16"};
		s->has_quantization = true;
		if (w->method >= 0)
			s->quantization.method = dup_or_null(quant_method_name((quant_method)w->method), &oom);
		if (w->kv > 0 && w->kv < 4)
			s->quantization.kv_cache = dup_or_null(kv_names[w->kv], &oom);
		if (field_double(w, WF_ALPHA, &d)) {
			s->quantization.has_alpha = true;
			s->quantization.alpha = d;
		}
		if (method_is(w, QUANT_INT4_AWQ) || method_is(w, QUANT_INT4_RTN))
			s->quantization.group_size = w->group;
		if (wiz_search_applies(w) && w->search >= 0) {
			s->quantization.has_scale_search = true;
			s->quantization.scale_search = w->search == 1;
		}
		if (wiz_gptq_applies(w) && w->gptq >= 0) {
			s->quantization.has_gptq = true;
			s->quantization.gptq = w->gptq == 1;
		}
		if (field_int(w, WF_SAMPLES, &v))
			s->quantization.calib_samples = v;
		if (field_int(w, WF_SEQ_LEN, &v))
			s->quantization.calib_seq_len = v;
		if (wiz_field_relevant(w, WF_CALIB) && w->text[WF_CALIB][0])
			s->quantization.calib_file = dup_or_null(w->text[WF_CALIB], &oom);
		s->quantization.has_calibration = s->quantization.calib_samples ||
						  s->quantization.calib_seq_len ||
						  s->quantization.calib_file;
	}
	if (w->spec) {
		static const char *const kw[WD_COUNT] = {"recommended", NULL, NULL, "ngram"};
		const char *draft = w->draft == WD_HUB ? w->hub_draft
				    : w->draft == WD_CUSTOM ? w->text[WF_DRAFT_PATH] : kw[w->draft];
		s->has_speculative = true;
		s->speculative.draft = dup_or_null(draft && *draft ? draft : NULL, &oom);
		if (field_int(w, WF_K, &v))
			s->speculative.k = v;
	}
	if (w->eval) {
		s->has_evaluation = true;
		int64_t lv[JOB_SPEC_MAX_CONCURRENCY_LEVELS];
		size_t n = 0;
		char why[WIZ_TEXT];
		if (!is_default(w->text[WF_CONC]) &&
		    parse_levels(w->text[WF_CONC], lv, JOB_SPEC_MAX_CONCURRENCY_LEVELS, &n, why, sizeof why)) {
			if (!(s->evaluation.concurrency = malloc(n * sizeof *lv)))
				oom = true;
			else {
				memcpy(s->evaluation.concurrency, lv, n * sizeof *lv);
				s->evaluation.n_concurrency = n;
			}
		}
		if (field_int(w, WF_INPUT, &v))
			s->evaluation.input_tokens = v;
		if (field_int(w, WF_OUTPUT, &v))
			s->evaluation.output_tokens = v;
		if (field_int(w, WF_REQUESTS, &v))
			s->evaluation.requests_per_level = v;
		if (w->instance[0] && strcmp(w->instance, "local") != 0)
			s->evaluation.instance = dup_or_null(w->instance, &oom);
		if (field_double(w, WF_DISCOUNT, &d)) {
			s->evaluation.has_discount = true;
			s->evaluation.discount = d;
		}
		if (w->baseline[0])
			s->evaluation.baseline = dup_or_null(w->baseline, &oom);
		if (w->text[WF_HELDOUT][0])
			s->evaluation.text = dup_or_null(w->text[WF_HELDOUT], &oom);
	}
	if (w->text[WF_NAME][0])
		s->name = dup_or_null(w->text[WF_NAME], &oom);
	if (oom) {
		job_spec_free(s);
		return os_error_set(err, OS_ENOMEM, "out of memory");
	}
	*out = s;
	return OS_OK;
}

/* ---- the command line ---------------------------------------------------------------------- */

/* word in single quotes unless it is made of characters a shell leaves alone */
static char *shell_quote(const char *s)
{
	bool plain = *s != '\0';
	for (const char *p = s; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:,=+-@%", *p))
			plain = false;
	size_t n = strlen(s);
	char *q = malloc(4 * n + 3);
	if (!q)
		return NULL;
	if (plain) {
		memcpy(q, s, n + 1);
		return q;
	}
	size_t k = 0;
	q[k++] = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'') {
			memcpy(q + k, "'\\''", 4);
			k += 4;
		} else {
			q[k++] = *p;
		}
	}
	q[k++] = '\'';
	q[k] = '\0';
	return q;
}

typedef struct words {
	char **v;
	size_t n, cap;
	bool oom;
} words;

static void words_add(words *w, const char *flag, const char *value)
{
	if (w->oom)
		return;
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		char **nv = realloc(w->v, cap * sizeof *nv);
		if (!nv) {
			w->oom = true;
			return;
		}
		w->v = nv;
		w->cap = cap;
	}
	char *q = value ? shell_quote(value) : NULL;
	size_t len = strlen(flag) + (q ? strlen(q) + 1 : 0) + 1;
	char *word = malloc(len);
	if (!word || (value && !q)) {
		free(word);
		free(q);
		w->oom = true;
		return;
	}
	snprintf(word, len, "%s%s%s", flag, q && *flag ? " " : "", q ? q : "");
	free(q);
	w->v[w->n++] = word;
}

static void words_int(words *w, const char *flag, int64_t v)
{
	char buf[32];
	if (!v)
		return;
	snprintf(buf, sizeof buf, "%lld", (long long)v);
	words_add(w, flag, buf);
}

/* the fewest of 15..17 digits that read back exactly, as job_spec_print writes doubles */
static void words_double(words *w, const char *flag, bool has, double v)
{
	char buf[40];
	if (!has)
		return;
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(buf, sizeof buf, "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	words_add(w, flag, buf);
}

void wiz_cli_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

char **wiz_cli_words(const job_spec *s, size_t *n)
{
	words w = {0};
	*n = 0;
	size_t ml = s->model ? strlen(s->model) : 0;
	/* what `optimize` would take for a spec file or an option, and what its flags cannot
	 * say: such specs are given as a file */
	if (!ml || s->model[0] == '-' || (ml > 5 && !strcmp(s->model + ml - 5, ".json")) ||
	    s->has_runtime ||
	    (s->has_quantization && !s->quantization.method && !s->quantization.kv_cache &&
	     !s->quantization.has_alpha && !s->quantization.group_size && !s->quantization.has_calibration &&
	     !s->quantization.has_scale_search && !s->quantization.has_gptq) ||
	    (s->has_speculative && !s->speculative.draft && !s->speculative.k))
		return NULL;
	const __typeof__(s->evaluation) *e = &s->evaluation;
	if (s->has_evaluation && !e->n_concurrency && !e->input_tokens && !e->output_tokens &&
	    !e->requests_per_level && !e->instance && !e->has_discount && !e->baseline && !e->text)
		return NULL;
	if (s->has_quantization && s->quantization.has_calibration && !s->quantization.calib_file &&
	    !s->quantization.calib_samples && !s->quantization.calib_seq_len)
		return NULL;
	words_add(&w, "optstudio", NULL);
	words_add(&w, "optimize", NULL);
	words_add(&w, "", s->model);
	if (s->has_quantization) {
		if (s->quantization.method)
			words_add(&w, "--quantize", s->quantization.method);
		words_double(&w, "--alpha", s->quantization.has_alpha, s->quantization.alpha);
		words_int(&w, "--group-size", s->quantization.group_size);
		if (s->quantization.has_scale_search)
			words_add(&w, s->quantization.scale_search ? "--scale-search" : "--no-scale-search",
				  NULL);
		if (s->quantization.has_gptq)
			words_add(&w, s->quantization.gptq ? "--gptq" : "--no-gptq", NULL);
		if (s->quantization.kv_cache)
			words_add(&w, "--kv-cache", s->quantization.kv_cache);
		if (s->quantization.calib_file)
			words_add(&w, "--calib", s->quantization.calib_file);
		words_int(&w, "--samples", s->quantization.calib_samples);
		words_int(&w, "--seq-len", s->quantization.calib_seq_len);
	}
	if (s->has_speculative) {
		if (s->speculative.draft)
			words_add(&w, "--draft", s->speculative.draft);
		words_int(&w, "--spec-k", s->speculative.k);
	}
	if (s->has_evaluation) {
		if (e->n_concurrency) {
			char buf[JOB_SPEC_MAX_CONCURRENCY_LEVELS * 8];
			size_t k = 0;
			buf[0] = '\0';
			for (size_t i = 0; i < e->n_concurrency && k < sizeof buf; i++)
				k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%lld", i ? "," : "",
						      (long long)e->concurrency[i]);
			words_add(&w, "--eval-concurrency", buf);
		}
		words_int(&w, "--input-tokens", e->input_tokens);
		words_int(&w, "--output-tokens", e->output_tokens);
		words_int(&w, "--requests", e->requests_per_level);
		if (e->instance)
			words_add(&w, "--instance", e->instance);
		words_double(&w, "--discount", e->has_discount, e->discount);
		if (e->baseline)
			words_add(&w, "--baseline", e->baseline);
		if (e->text)
			words_add(&w, "--heldout", e->text);
	}
	if (s->name)
		words_add(&w, "--name", s->name);
	if (w.oom) {
		wiz_cli_free(w.v, w.n);
		return NULL;
	}
	*n = w.n;
	return w.v;
}
