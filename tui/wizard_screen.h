/* wizard_screen.h: the Optimize screen's insides, shared by its files: screen_optimize.c (keys,
 * navigation, editing, frame callbacks), one file per step's rows (wizard_model.c ①,
 * wizard_tech.c ② ③, wizard_draft.c ④, wizard_eval.c ⑤, wizard_review.c ⑥ and launch), the
 * lists over a step (wizard_pick.c) and drawing (wizard_draw.c). Not for other screens. */
#ifndef OPTSTUDIO_WIZARD_SCREEN_H
#define OPTSTUDIO_WIZARD_SCREEN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "job_submit.h"
#include "store/store.h"
#include "ui.h"
#include "wizard.h"

/* The steps, in order. */
enum { ST_MODEL, ST_TECH, ST_OPTIONS, ST_DRAFT, ST_EVAL, ST_REVIEW, N_STEPS };

/* Entries of the key table whose footer label follows the cursor (wz_update_keys). */
enum { K_CHOOSE = 6, K_ENTER = 7, K_NEXT = 8, K_BROWSE = 10, N_KEYS = 12 };

/* What a row of a step is and does. */
enum { R_HEAD, R_TEXT, R_RADIO, R_CHECK, R_CYCLE, R_FIELD, R_PICK };
enum { RID_NONE, RID_MODEL, RID_METHOD, RID_KV, RID_SPEC, RID_GROUP, RID_DRAFT, RID_FIELD,
       RID_EVAL, RID_INSTANCE, RID_BASELINE, RID_SEARCH, RID_GPTQ };

#define MAX_OPTS 4
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
enum { PK_NONE, PK_HUB, PK_INSTANCE, PK_FILE, PK_BASELINE };

/* The screen's state. Invariant: rows are those of step (wz_build_rows), cursor[step] is on
 * a selectable row when there is one, and spec/json/probs/cli say what w makes (wz_update). */
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

#define SETF(buf, ...) snprintf((buf), sizeof(buf), __VA_ARGS__)

extern const char *const wz_step_names[N_STEPS];  /* "Model" ... */
extern const char *const wz_step_marks[N_STEPS];  /* "①" ... */
extern const int wz_field_step[WF_COUNT];         /* the step a typed field is on */
extern const char *const wz_field_labels[WF_COUNT];
extern const char *const wz_field_hints[WF_COUNT];

/* ---- rows (wizard_rows.c) ------------------------------------------------------------------- */

/* Appends a row to the step's rows (NULL when out of memory). */
wrow *wz_row_add(opt_screen *o, int kind, int id, int arg, const char *label);
/* Appends typed field f (off: shown dimmed, not used by the choices). */
void wz_add_field(opt_screen *o, int f, bool off);
/* True for rows the cursor can stop on (not headings or text). */
bool wz_selectable(const wrow *r);
/* Copies src into dst (n bytes), cut when longer. */
void wz_copy_str(char *dst, size_t n, const char *src);
/* The hub model named name (borrowed from o->models), or NULL. */
const store_model *wz_find_model(const opt_screen *o, const char *name);
/* A quant method's name, "none" for -1. */
const char *wz_method_name(int m);
/* True when step s is needed by the current choices (Options, Draft may be skipped). */
bool wz_step_relevant(const opt_screen *o, int s);
/* Rebuilds the current step's rows and puts its cursor on a selectable row. */
void wz_build_rows(opt_screen *o);
/* The row under the cursor, or NULL (Review, or nothing selectable). */
wrow *wz_focused(opt_screen *o);
/* True when r is a typed path field (b browses). */
bool wz_is_path_field(const wrow *r);

/* ---- the steps' rows ----------------------------------------------------------------------- */

void wz_rows_model(opt_screen *o);    /* wizard_model.c */
void wz_rows_tech(opt_screen *o);     /* wizard_tech.c */
void wz_rows_options(opt_screen *o);  /* wizard_tech.c */
void wz_rows_draft(opt_screen *o);    /* wizard_draft.c */
void wz_rows_eval(opt_screen *o);     /* wizard_eval.c */

/* ---- the model and its target data (wizard_model.c) --------------------------------------- */

/* Checks every typed field. */
void wz_check_all(opt_screen *o);
/* Reads the chosen model's file, context, compatible drafts and recommended draft. */
void wz_load_target(opt_screen *o, ui *u);
/* Chooses model name (loads its target data when it changes). */
void wz_set_model(opt_screen *o, ui *u, const char *name);
/* Starts the wizard over on model name (NULL: the current one), nothing changed. */
void wz_reset(opt_screen *o, ui *u, const char *name);

/* ---- what the choices make, review and launch (wizard_review.c) --------------------------- */

/* Why step s cannot be left forwards (written into why, len bytes, and returned), or NULL. */
const char *wz_step_block(const opt_screen *o, int s, char *why, size_t len);
/* Rebuilds the spec, its problems, canonical JSON and command line from the choices. */
void wz_update(opt_screen *o, ui *u);
/* Queues the job when the spec has no problem, then starts over and shows Jobs. */
void wz_launch(opt_screen *o, ui *u);
/* Draws the Review step in r from line y. */
void wz_draw_review(opt_screen *o, ui *u, ui_rect r, int y);

/* ---- lists over the step (wizard_pick.c) --------------------------------------------------- */

/* Opens the file list for path field f, in the folder of its value or the data home's. */
void wz_open_files(opt_screen *o, ui *u, int f);
/* Opens the list of kind PK_HUB (compatible drafts), PK_BASELINE (the stage's default, then
 * the compatible hub models) or PK_INSTANCE (the price catalog). */
void wz_open_list(opt_screen *o, ui *u, int kind);
/* Takes the selected entry (a folder opens), closing the list. */
void wz_pick_choose(opt_screen *o, ui *u);
/* The file list's parent folder; other lists close. */
void wz_pick_parent(opt_screen *o, ui *u);

/* ---- drawing (wizard_draw.c) --------------------------------------------------------------- */

/* Columns of the first n bytes of s (every character the wizard writes is one column). */
int wz_cols(const char *s, size_t n);
/* Writes text wrapped at spaces into at most max lines of w columns from (y, x); returns the
 * lines written. */
int wz_put_wrapped(ui *u, int y, int x, int w, int max, theme_role role, const char *text);
/* The screen's draw callback. */
void wz_draw(void *state, ui *u, ui_rect r);
/* The footer follows the cursor: what ⏎ and ␣ do here (screen_optimize.c). */
void wz_update_keys(opt_screen *o);

#endif
