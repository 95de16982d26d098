/* screen_optimize.c: the Optimize screen: a wizard from a hub model to a queued job (model,
 * techniques, their options, the draft, the evaluation, review), every choice explained, typed
 * fields checked as typed, and launch through job_submit, the path `optstudio optimize` uses.
 * This file holds the keys, navigation, editing and the frame's callbacks; the steps live in
 * wizard_*.c (wizard_screen.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/optimize/quantize.h"
#include "studio.h"
#include "wizard_screen.h"

enum { W_UP = 1, W_DOWN, W_PGUP, W_PGDN, W_CHOOSE, W_ENTER, W_NEXT, W_BACK, W_BROWSE,
       W_CANCEL };

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
	{'b', "b", NULL, "browse for a file (calibration text, custom draft, held-out text)",
	 W_BROWSE},
	{27, "Esc", "cancel", "close a list; else discard the wizard (asks when anything changed)",
	 W_CANCEL},
};

/* ---- navigation -------------------------------------------------------------------------------- */

static void place_cursor(opt_screen *o)
{
	wz_build_rows(o);
	/* on the chosen option when there is one (the model list, a radio group) */
	if (o->step == ST_MODEL)
		for (size_t i = 0; i < o->n_rows; i++)
			if (o->rows[i].on)
				o->cursor[o->step] = (int)i;
	o->top = 0;
	wz_build_rows(o);
}

static void go_step(opt_screen *o, ui *u, int s)
{
	o->step = s;
	if (s > o->max_step)
		o->max_step = s;
	o->review_scroll = 0;
	place_cursor(o);
	wz_update(o, u);
}

static void go_next(opt_screen *o, ui *u)
{
	char why[512];
	if (wz_step_block(o, o->step, why, sizeof why)) {
		ui_status(u, true, "%s", why);
		return;
	}
	int s = o->step + 1;
	while (s < N_STEPS && !wz_step_relevant(o, s))
		s++;
	if (s < N_STEPS)
		go_step(o, u, s);
}

static void go_back(opt_screen *o, ui *u)
{
	int s = o->step - 1;
	while (s > 0 && !wz_step_relevant(o, s))
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
			ui_status(u, true, "%s: %s", wz_field_labels[f], w->error[f]);
	}
	if (event != UI_PROMPT_EDIT)
		o->editing = -1;
	wz_update(o, u);
}

static void edit_field(opt_screen *o, ui *u, int f)
{
	char label[32];
	o->editing = f;
	SETF(o->saved, "%s", o->w.text[f]);
	SETF(label, "%s: ", wz_field_labels[f]);
	if (f == WF_DRAFT_PATH && o->w.draft != WD_CUSTOM) {
		o->w.draft = WD_CUSTOM;
		o->changed = true;
	}
	ui_prompt_ex(u, label, o->w.text[f], UI_PROMPT_CANCELS, on_field, o);
	wz_update(o, u);
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
		wz_set_model(o, u, o->models[r->arg].name);
		break;
	case RID_METHOD:
		if (w->method != r->arg) {
			o->changed = true;
			w->search = -1; /* each method has its own defaults */
			w->gptq = -1;
		}
		w->method = r->arg;
		for (int f = WF_ALPHA; f <= WF_CALIB; f++)
			wiz_field_check(w, f, o->home);
		break;
	case RID_KV:
		w->kv = opt >= 0 ? opt : (w->kv + 1) % 4;
		o->changed = true;
		break;
	case RID_GROUP: {
		static const int g[3] = {32, 64, 128};
		int cur = w->group == 32 ? 0 : w->group == 64 ? 1 : 2;
		w->group = g[opt >= 0 ? opt : (cur + 1) % 3];
		o->changed = true;
		break;
	}
	case RID_SEARCH:
		w->search = !wiz_search_on(w);
		for (int f = WF_ALPHA; f <= WF_CALIB; f++)
			wiz_field_check(w, f, o->home);
		o->changed = true;
		break;
	case RID_GPTQ:
		w->gptq = !wiz_gptq_on(w);
		for (int f = WF_ALPHA; f <= WF_CALIB; f++)
			wiz_field_check(w, f, o->home);
		o->changed = true;
		break;
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
			wz_open_list(o, u, PK_HUB);
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
		wz_open_list(o, u, PK_INSTANCE);
		return;
	case RID_BASELINE:
		wz_open_list(o, u, PK_BASELINE);
		return;
	default:
		break;
	}
	wz_update(o, u);
}

static void on_discard(void *state, ui *u, int64_t arg)
{
	opt_screen *o = state;
	wz_reset(o, u, NULL);
	wz_update(o, u);
	ui_status(u, false, "discarded: the wizard starts again");
}

static void on_start_over(void *state, ui *u, int64_t arg)
{
	opt_screen *o = state;
	wz_reset(o, u, o->pending_model);
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
		while (i >= 0 && i < (int)o->n_rows && !wz_selectable(&o->rows[i]))
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
	wz_build_rows(o);
	int page = o->list_h > 2 ? o->list_h - 1 : 5;
	if (o->pick) {
		switch (action) {
		case W_UP: move_by(o, -1); break;
		case W_DOWN: move_by(o, 1); break;
		case W_PGUP: move_by(o, -page); break;
		case W_PGDN: move_by(o, page); break;
		case W_CHOOSE: case W_ENTER: case W_NEXT: wz_pick_choose(o, u); break;
		case W_BACK: wz_pick_parent(o, u); break;
		case W_CANCEL: o->pick = PK_NONE; break;
		default: break;
		}
		return;
	}
	wrow *r = wz_focused(o);
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
			wz_launch(o, u);
		else
			go_next(o, u);
		break;
	case W_NEXT: go_next(o, u); break;
	case W_BACK: go_back(o, u); break;
	case W_BROWSE:
		if (wz_is_path_field(r))
			wz_open_files(o, u, r->arg);
		break;
	case W_CANCEL:
		if (o->changed)
			ui_confirm(u, "Discard this optimization setup? (y discards)", on_discard, o, 0);
		else if (o->step != ST_MODEL) {
			wz_reset(o, u, NULL);
			wz_update(o, u);
		}
		break;
	default: break;
	}
	if (o->step == ST_MODEL && action != W_CANCEL) {
		wz_build_rows(o);
		wrow *m = wz_focused(o);
		if (m && m->id == RID_MODEL)
			wz_set_model(o, u, o->models[m->arg].name);
	}
	wz_build_rows(o);
	if (action == W_UP || action == W_DOWN || action == W_PGUP || action == W_PGDN)
		wz_update(o, u);
}

static bool opt_disabled(void *state, int action, char *why, size_t len)
{
	opt_screen *o = state;
	if (o->pick)
		return action == W_BROWSE && snprintf(why, len, "close the list first (Esc)") > 0;
	wrow *r = wz_focused(o);
	switch (action) {
	case W_ENTER:
		if (r && r->kind == R_FIELD)
			return false;
		return wz_step_block(o, o->step, why, len) != NULL;
	case W_NEXT:
		if (o->step == ST_REVIEW) {
			snprintf(why, len, "this is the last step; ⏎ launches the job");
			return true;
		}
		return wz_step_block(o, o->step, why, len) != NULL;
	case W_BACK:
		if (o->step == ST_MODEL) {
			snprintf(why, len, "this is the first step");
			return true;
		}
		return false;
	case W_BROWSE:
		if (!wz_is_path_field(r)) {
			snprintf(why, len, "b browses on the calibration text, the custom draft path or "
				 "the held-out text");
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
void wz_update_keys(opt_screen *o)
{
	wrow *r = wz_focused(o);
	o->keys[K_ENTER].label = o->pick ? "choose" : r && r->kind == R_FIELD ? "edit"
				 : o->step == ST_REVIEW ? "launch" : "next";
	o->keys[K_CHOOSE].label = o->pick || o->step == ST_REVIEW || (r && r->kind == R_FIELD) ? NULL
				  : r && r->kind == R_CHECK ? "toggle" : "choose";
	o->keys[K_NEXT].label = !o->pick && r && r->kind == R_FIELD ? "next" : NULL;
	o->keys[K_BROWSE].label = !o->pick && wz_is_path_field(r) ? "browse" : NULL;
}

/* ---- mouse ---------------------------------------------------------------------------------------- */

static void opt_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	opt_screen *o = state;
	if (o->pick) {
		int i = y - o->pick_y0;
		if (i >= 0 && i < o->pick_rows && o->pick_top + (size_t)i < o->n_items) {
			o->pick_sel = o->pick_top + (size_t)i;
			wz_pick_choose(o, u);
		}
		return;
	}
	if (y == o->bar_y) {
		for (int s = 0; s < N_STEPS; s++) {
			if (x < o->bar_x0[s] || x >= o->bar_x1[s])
				continue;
			char why[512];
			if (!wz_step_relevant(o, s)) {
				ui_status(u, true, "%s is not needed for these choices", wz_step_names[s]);
				return;
			}
			if (s > o->max_step) {
				ui_status(u, true, "%s: go through the steps before it first", wz_step_names[s]);
				return;
			}
			for (int k = o->step; k < s; k++)
				if (wz_step_relevant(o, k) && wz_step_block(o, k, why, sizeof why)) {
					ui_status(u, true, "%s", why);
					return;
				}
			go_step(o, u, s);
			return;
		}
		return;
	}
	wz_build_rows(o);
	for (size_t i = 0; i < o->n_rows; i++) {
		wrow *rw = &o->rows[i];
		if (rw->y != y || !wz_selectable(rw))
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
		if (!o->w.model[0] || !wz_find_model(o, o->w.model)) {
			o->w.model[0] = '\0';
			if (o->n_models)
				SETF(o->w.model, "%s", o->models[0].name);
			if (o->step != ST_MODEL && !wz_find_model(o, o->w.model))
				o->step = ST_MODEL;
		}
		wz_check_all(o);
		wz_load_target(o, u);
	}
	if (o->pick == PK_INSTANCE || o->pick == PK_HUB || o->pick == PK_BASELINE)
		o->pick = PK_NONE; /* its entries may be stale */
	wz_update(o, u);
}

static void opt_enter(void *state, ui *u, const char *arg)
{
	opt_screen *o = state;
	if (!arg || !*arg)
		return;
	if (!wz_find_model(o, arg))
		opt_refresh(o, u);
	if (!wz_find_model(o, arg)) {
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
	wz_reset(o, u, arg);
	go_step(o, u, ST_TECH);
}

/* A setup the user changed and did not launch would be lost by quitting. */
static bool opt_busy(void *state, char *why, size_t len)
{
	opt_screen *o = state;
	if (!o->changed)
		return false;
	snprintf(why, len, "The Optimize setup for %s is not launched",
		 o->w.model[0] ? o->w.model : "no model");
	return true;
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
		.draw = wz_draw,
		.on_action = opt_action,
		.on_refresh = opt_refresh,
		.on_click = opt_click,
		.disabled = opt_disabled,
		.destroy = opt_destroy,
		.on_enter = opt_enter,
		.busy = opt_busy,
	};
	return OS_OK;
}
