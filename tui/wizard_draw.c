/* wizard_draw.c: drawing the Optimize wizard: the step bar, the current step's rows with their
 * fields and choices, the explanation box, and a list over the step. */
#include <stdio.h>
#include <string.h>

#include "wizard_screen.h"

/* ---- drawing --------------------------------------------------------------------------------- */

/* Columns of s: every UTF-8 character the wizard writes is one column wide. */
int wz_cols(const char *s, size_t n)
{
	int c = 0;
	for (size_t i = 0; i < n && s[i]; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

/* Writes text wrapped at spaces into at most max lines of w columns from (y, x). */
int wz_put_wrapped(ui *u, int y, int x, int w, int max, theme_role role, const char *text)
{
	int line = 0;
	const char *p = text;
	while (*p && line < max) {
		size_t n = 0, cut = 0;
		while (p[n] && wz_cols(p, n + 1) <= w) {
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
		snprintf(t, sizeof t, "%s %s", wz_step_marks[s], wz_step_names[s]);
		theme_role role = s == o->step ? ROLE_TAB_ACTIVE
				  : !wz_step_relevant(o, s) || s > o->max_step ? ROLE_DIM : ROLE_TEXT;
		o->bar_x0[s] = x;
		x += ui_put(u, r.y, x, r.x + r.w - x, role, t, false);
		o->bar_x1[s] = x;
		if (s + 1 < N_STEPS)
			x += ui_put(u, r.y, x, r.x + r.w - x, ROLE_BORDER, " ─ ", false);
	}
}

/* A note saying "✓" is good news, "⚠" a warning (shown in the explanation box too), else
 * plain information. */
static theme_role note_role(const char *note)
{
	return !strncmp(note, "✓", 3) ? ROLE_GOOD : !strncmp(note, "⚠", 3) ? ROLE_WARN : ROLE_DIM;
}

static void draw_field(opt_screen *o, ui *u, const wrow *rw, int y, int x, int w, bool sel)
{
	const wiz_settings *ws = &o->w;
	int f = rw->arg;
	bool path = f == WF_CALIB || f == WF_DRAFT_PATH || f == WF_HELDOUT;
	int bw = path ? 34 : f == WF_NAME ? 24 : 14;
	if (bw > w - 2)
		bw = w - 2;
	const char *t = ws->text[f];
	const char *val = *t ? t : wiz_field_default(f);
	int inner = bw - 4; /* "[ " text " ]" */
	char shown[WIZ_TEXT + 8];
	if (wz_cols(val, strlen(val)) > inner) {
		/* a long path shows its end, where the file name is */
		const char *p = val;
		while (*p && wz_cols(p, strlen(p)) > inner - 1) {
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
		ui_put(u, y, dx, w - bw - 1, sel ? ROLE_SELECTION : note_role(ws->note[f]), ws->note[f],
		       false);
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
				 : o->pick == PK_BASELINE ? "Accuracy baseline (same tokenizer)"
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

void wz_draw(void *state, ui *u, ui_rect r)
{
	opt_screen *o = state;
	wz_build_rows(o);
	wz_update_keys(o);
	draw_bar(o, u, r);
	char title[512];
	const char *m = o->w.model[0] ? o->w.model : "(no model)";
	switch (o->step) {
	case ST_MODEL: snprintf(title, sizeof title, "Which model to optimize?"); break;
	case ST_TECH: snprintf(title, sizeof title, "Techniques for %s", m); break;
	case ST_OPTIONS: snprintf(title, sizeof title, "Options for %s · %s", m, wz_method_name(o->w.method)); break;
	case ST_DRAFT: snprintf(title, sizeof title, "Speculative decoding for %s", m); break;
	case ST_EVAL: snprintf(title, sizeof title, "Evaluation of the result"); break;
	default: snprintf(title, sizeof title, "Review and launch: %s", m); break;
	}
	ui_put(u, r.y + 1, r.x + 1, r.w - 2, ROLE_ACCENT, title, false);
	int y0 = r.y + 3;
	ui_rect area = {y0, r.x, r.y + r.h - y0, r.w};
	if (o->step == ST_REVIEW) {
		wz_draw_review(o, u, r, r.y + 2);
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
	wrow *f = wz_focused(o);
	ui_rect hb = {r.y + r.h - hint_h, r.x, hint_h, r.w};
	ui_box(u, hb, f ? f->label : "", "what it means");
	int hy = hb.y + 1, left = hint_h - 2;
	if (f && f->kind == R_FIELD && !f->off &&
	    (o->w.error[f->arg][0] || note_role(o->w.note[f->arg]) != ROLE_DIM)) {
		char e[WIZ_TEXT + 8];
		bool bad = o->w.error[f->arg][0];
		snprintf(e, sizeof e, "%s%s", bad ? "✗ " : "", bad ? o->w.error[f->arg] : o->w.note[f->arg]);
		int n = wz_put_wrapped(u, hy, hb.x + 2, hb.w - 4, left,
				       bad ? ROLE_BAD : note_role(o->w.note[f->arg]), e);
		hy += n;
		left -= n;
	}
	if (f && f->hint[0] && left > 0)
		wz_put_wrapped(u, hy, hb.x + 2, hb.w - 4, left, ROLE_TEXT, f->hint);
	if (o->pick)
		draw_pick(o, u, (ui_rect){y0 - 1, r.x, r.h - (y0 - 1 - r.y), r.w});
}
