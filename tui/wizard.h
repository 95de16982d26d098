/* wizard.h: the Optimize wizard's choices as plain data, and what they become: the typed
 * fields checked as they are typed, the job spec, and the equivalent `optstudio optimize`
 * command line. No curses here (screen_optimize.c draws it). */
#ifndef OPTSTUDIO_WIZARD_H
#define OPTSTUDIO_WIZARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"
#include "core/jobs/spec.h"

/* The typed fields. */
enum wiz_field {
	WF_ALPHA, WF_SAMPLES, WF_SEQ_LEN, WF_CALIB, WF_DRAFT_PATH, WF_K, WF_CONC, WF_INPUT,
	WF_OUTPUT, WF_REQUESTS, WF_DISCOUNT, WF_HELDOUT, WF_NAME, WF_COUNT
};

/* Where the draft comes from. */
enum wiz_draft { WD_RECOMMENDED, WD_HUB, WD_CUSTOM, WD_NGRAM, WD_COUNT };

#define WIZ_TEXT 256

/* Every choice of the wizard. An empty field means "the stage's default" and is left out
 * of the spec. Invariant: error[f] is "" exactly when text[f] passed wiz_field_check. */
typedef struct wiz_settings {
	char model[WIZ_TEXT];       /* hub name; "" = none chosen */
	char model_path[4096];      /* its file, for the draft checks */
	int64_t model_ctx;          /* its context length, 0 = unknown */
	int method;                 /* a quant_method, or -1: no quantization */
	int kv;                     /* 0 model precision, 1 fp8, 2 int8, 3 bf16 */
	int group;                  /* 32, 64 or 128 (int4 methods) */
	int search;                 /* scale search: -1 the method's default, 0 off, 1 on */
	int gptq;                   /* GPTQ error compensation: -1 the method's default (on for
				     * int4-awq), 0 off, 1 on */
	bool spec;                  /* speculative decoding */
	int draft;                  /* enum wiz_draft */
	char hub_draft[WIZ_TEXT];   /* WD_HUB: the hub model's name */
	bool eval;                  /* evaluate after optimizing */
	char instance[WIZ_TEXT];    /* catalog name; "" = this machine (the stage's default) */
	char baseline[WIZ_TEXT];    /* accuracy baseline, a hub name; "" = the stage's default
				     * (the input model when quantizing, else none) */
	char text[WF_COUNT][WIZ_TEXT];
	char error[WF_COUNT][WIZ_TEXT];
	char note[WF_COUNT][WIZ_TEXT];
} wiz_settings;

/* The fresh wizard: no model, no quantization, no speculative decoding, evaluation on, no
 * baseline chosen, every field empty (defaults; WF_NAME empty: no name). */
void wiz_settings_init(wiz_settings *w);

/* True when the method can take the calibrated scale search (fp8 and int4 methods). */
bool wiz_search_applies(const wiz_settings *w);
/* Whether the scale search is on: the user's choice, else the method's default. */
bool wiz_search_on(const wiz_settings *w);
/* True when the method can take GPTQ (int4-awq, int4-rtn, fp8). */
bool wiz_gptq_applies(const wiz_settings *w);
/* Whether GPTQ is on: the method takes it, and the user's choice, else the method's
 * default. */
bool wiz_gptq_on(const wiz_settings *w);

/* The spec JSON path a field fills ("quantization.alpha"). */
const char *wiz_field_path(int f);
/* What the field shows when empty ("0.5", "auto"). */
const char *wiz_field_default(int f);
/* True when the field is used by the current choices (alpha only for int8-smoothquant...). */
bool wiz_field_relevant(const wiz_settings *w, int f);
/* Checks text[f] and fills error[f] (why it is wrong, "" when fine) and note[f] (what it
 * means: "✓ tokenizer matches"). home is the data home (default calibration text). */
void wiz_field_check(wiz_settings *w, int f, const char *home);

/* The spec the choices make (only relevant fields that parse). *out: job_spec_free. */
int wiz_build_spec(const wiz_settings *w, job_spec **out, os_error *err);

/* `optstudio optimize MODEL --flag value ...` for spec, arguments shell-quoted, as a
 * malloc'd array of n words (flag and value joined: "--alpha 0.6"), or NULL when the flags
 * cannot say it (e.g. an evaluation block with every default): then the spec file is the
 * way. Free with wiz_cli_free. */
char **wiz_cli_words(const job_spec *s, size_t *n);
void wiz_cli_free(char **words, size_t n);

#endif
