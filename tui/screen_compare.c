/* screen_compare.c: the Compare screen: 2 to 4 runs marked on Results side by side, one column
 * per run, every figure of core/jobs/compare (the numbers `optstudio compare` prints) with its
 * delta against a chosen baseline coloured better/worse, bar charts of throughput, latency and
 * price, and export to CSV or Markdown under the data home. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/jobs/compare.h"
#include "studio.h"

enum { C_UP = 1, C_DOWN, C_PGUP, C_PGDN, C_HOME, C_END, C_BASE_NEXT, C_BASE_PREV, C_EXPORT,
       C_FILTER, C_BACK, C_RESULTS };

static const ui_key compare_keys[] = {
	{KEY_UP, "↑↓", "scroll", "scroll the table (also k/j, the mouse wheel)", C_UP},
	{KEY_DOWN, "↓", NULL, "scroll down", C_DOWN},
	{'k', "k", NULL, "scroll up", C_UP},
	{'j', "j", NULL, "scroll down", C_DOWN},
	{KEY_PPAGE, "PgUp", NULL, "a page up", C_PGUP},
	{KEY_NPAGE, "PgDn", NULL, "a page down", C_PGDN},
	{KEY_HOME, "Home", NULL, "top of the table", C_HOME},
	{KEY_END, "End", NULL, "end of the table", C_END},
	{'b', "b", "baseline", "make the next run the baseline (or click a run's column head)",
	 C_BASE_NEXT},
	{'B', "B", NULL, "make the previous run the baseline", C_BASE_PREV},
	{'e', "e", "export", "export as CSV or Markdown to the data home's exports/ folder", C_EXPORT},
	{'/', "/", "filter", "filter the rows by figure or level as you type (ttft, @4, price)",
	 C_FILTER},
	{27, "Esc", NULL, "clear the filter", C_BACK},
	{'m', "m", NULL, "back to Results to mark other runs", C_RESULTS},
};

typedef struct compare_screen {
	compare *c;                      /* NULL until runs are handed over */
	int64_t ids[COMPARE_MAX_RUNS];
	size_t n_ids;
	size_t *order;                   /* [n_order] rows in display order */
	size_t n_order;
	size_t *view;                    /* [n_view] entries of order matching the filter */
	size_t n_view, top;
	char filter[256];
	/* geometry of the last draw */
	int table_rows, head_y, col_x0, col_w;
	int chart_y0, chart_x[COMPARE_N_CHARTS], chart_w;
} compare_screen;

/* ---- the model ---------------------------------------------------------------------------- */

static int row_group(const compare_row *row)
{
	return row->concurrency == COMPARE_SUMMARY ? 0 : row->concurrency == COMPARE_ACCURACY ? 1 : 2;
}

/* Summary first, then accuracy, then each per-level figure across the levels (so "total tok/s"
 * at every level reads as one block). */
static void build_order(compare_screen *cs)
{
	size_t n = compare_n_rows(cs->c);
	cs->n_order = 0;
	for (int g = 0; g < 3; g++)
		for (size_t i = 0; i < n; i++) {
			const compare_row *ri = compare_row_at(cs->c, i);
			if (row_group(ri) != g)
				continue;
			bool first = true; /* the first row of its name places the whole block */
			for (size_t k = 0; k < i && first; k++)
				first = row_group(compare_row_at(cs->c, k)) != g ||
					strcmp(compare_row_at(cs->c, k)->name, ri->name) != 0;
			if (!first)
				continue;
			for (size_t k = i; k < n; k++) {
				const compare_row *rk = compare_row_at(cs->c, k);
				if (row_group(rk) == g && strcmp(rk->name, ri->name) == 0)
					cs->order[cs->n_order++] = k;
			}
		}
}

static void row_label(const compare_row *row, char *buf, size_t len)
{
	const char *name = row->name;
	if (row->concurrency > 0) {
		if (strcmp(name, "price") == 0)
			name = "$/1M";
		snprintf(buf, len, "%s @%lld%s", name, (long long)row->concurrency,
			 strcmp(row->unit, "ms") == 0 ? " ms" : "");
	} else if (row->concurrency == COMPARE_SUMMARY && strcmp(name, "price at peak") == 0) {
		snprintf(buf, len, "$/1M at peak");
	} else if (row->concurrency == COMPARE_SUMMARY && *row->unit && strcmp(row->unit, "tok/s")) {
		snprintf(buf, len, "%s %s", name, row->unit);
	} else {
		snprintf(buf, len, "%s", name);
	}
}

static void rebuild_view(compare_screen *cs)
{
	cs->n_view = 0;
	for (size_t i = 0; cs->c && i < cs->n_order; i++) {
		const compare_row *row = compare_row_at(cs->c, cs->order[i]);
		char label[96];
		row_label(row, label, sizeof label);
		if (ui_match(label, cs->filter) || ui_match(row->name, cs->filter))
			cs->view[cs->n_view++] = cs->order[i];
	}
	if (cs->top >= cs->n_view)
		cs->top = cs->n_view ? cs->n_view - 1 : 0;
}

/* (Re)builds the comparison of cs->ids with the run base_id as the baseline (the first when
 * it is not among them). Runs deleted meanwhile are dropped. */
static void load(compare_screen *cs, ui *u, int64_t base_id)
{
	store *s = ui_store(u);
	compare *c = NULL;
	os_error err = {0};
	/* drop runs that are gone */
	size_t k = 0;
	for (size_t i = 0; i < cs->n_ids; i++) {
		store_bench_run r;
		if (store_bench_run_get(s, cs->ids[i], &r, NULL) == OS_OK) {
			store_bench_run_clear(&r);
			cs->ids[k++] = cs->ids[i];
		}
	}
	if (k < cs->n_ids)
		ui_status(u, true, "%zu of the compared runs were deleted", cs->n_ids - k);
	cs->n_ids = k;
	size_t base = 0;
	for (size_t i = 0; i < cs->n_ids; i++)
		if (cs->ids[i] == base_id)
			base = i;
	compare_free(cs->c);
	cs->c = NULL;
	free(cs->order);
	free(cs->view);
	cs->order = cs->view = NULL;
	cs->n_order = cs->n_view = 0;
	if (cs->n_ids < 2)
		return;
	if (compare_new(s, cs->ids, cs->n_ids, base, COMPARE_DETAIL, &c, &err) != OS_OK) {
		ui_status(u, true, "cannot compare: %s", os_error_text(&err));
		return;
	}
	size_t n = compare_n_rows(c);
	cs->order = calloc(n ? n : 1, sizeof *cs->order);
	cs->view = calloc(n ? n : 1, sizeof *cs->view);
	if (!cs->order || !cs->view) {
		compare_free(c);
		free(cs->order);
		free(cs->view);
		cs->order = cs->view = NULL;
		ui_status(u, true, "out of memory building the comparison");
		return;
	}
	cs->c = c;
	build_order(cs);
	rebuild_view(cs);
}

static int64_t base_id(const compare_screen *cs)
{
	return cs->c ? compare_run(cs->c, compare_baseline(cs->c))->id : 0;
}

static void compare_refresh(void *state, ui *u)
{
	compare_screen *cs = state;
	if (cs->n_ids)
		load(cs, u, base_id(cs));
}

/* arg: "ID,ID[,ID[,ID]]" from Results; the first is the baseline. */
static void compare_enter(void *state, ui *u, const char *arg)
{
	compare_screen *cs = state;
	if (!arg || !*arg)
		return;
	int64_t ids[COMPARE_MAX_RUNS];
	size_t n = 0;
	const char *p = arg;
	while (*p) {
		char *end = NULL;
		long long v = strtoll(p, &end, 10);
		if (end == p || v <= 0 || n == COMPARE_MAX_RUNS) {
			ui_status(u, true, "cannot compare '%s': want 2 to %d run ids", arg, COMPARE_MAX_RUNS);
			return;
		}
		ids[n++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	if (n < 2) {
		ui_status(u, true, "mark 2 to %d runs on Results (␣), then c", COMPARE_MAX_RUNS);
		return;
	}
	memcpy(cs->ids, ids, n * sizeof ids[0]);
	cs->n_ids = n;
	cs->top = 0;
	load(cs, u, ids[0]);
}

/* ---- drawing ------------------------------------------------------------------------------------ */

/* The delta as a short text: "+12.3%", "-4%", "×49" for large gains. */
static void delta_text(double d, char *buf, size_t len)
{
	if (d >= 999.5)
		snprintf(buf, len, "×%.0f", 1 + d / 100);
	else if (fabs(d) < 9.95)
		snprintf(buf, len, "%+.1f%%", d);
	else
		snprintf(buf, len, "%+.0f%%", d);
}

static void value_text(const compare_row *row, double v, char *buf, size_t len)
{
	if (!isfinite(v))
		snprintf(buf, len, "—");
	else if (strcmp(row->unit, "requests") == 0)
		snprintf(buf, len, "%.0f", v);
	else
		compare_format_num(v, buf, len);
}

static void draw_cell(compare_screen *cs, ui *u, int y, int x, const compare_row *row, size_t r)
{
	int dw = cs->col_w >= 20 ? 9 : 8, vw = cs->col_w - dw - 1;
	char v[48], d[48];
	value_text(row, row->v[r], v, sizeof v);
	ui_put_right(u, y, x, vw, isfinite(row->v[r]) ? ROLE_TEXT : ROLE_DIM, v);
	const char *vd = compare_verdict(cs->c, row, r);
	double delta = compare_delta_pct(cs->c, row, r);
	if (!strcmp(vd, "better") || !strcmp(vd, "worse")) {
		bool better = vd[0] == 'b';
		char t[32];
		if (isfinite(delta))
			delta_text(delta, t, sizeof t);
		else /* against a baseline of 0 */
			snprintf(t, sizeof t, "%s", better ? "better" : "worse");
		/* the glyph keeps the meaning without colour (NO_COLOR, mono) */
		snprintf(d, sizeof d, " %s%s", t, better ? "✓" : "✗");
		ui_put(u, y, x + vw, dw + 1, better ? ROLE_GOOD : ROLE_BAD, d, false);
	} else if (!strcmp(vd, "same")) {
		ui_put(u, y, x + vw, dw + 1, ROLE_DIM, " =", false);
	}
}

static void draw_chart(compare_screen *cs, ui *u, ui_rect b, compare_chart ch)
{
	static const char *const titles[COMPARE_N_CHARTS] = {"peak tok/s", "latency p50", "$/1M at peak"};
	static const bool higher[COMPARE_N_CHARTS] = {true, false, false};
	char title[64];
	if (ch == COMPARE_CHART_LATENCY)
		snprintf(title, sizeof title, "%s @%lld ms", titles[ch],
			 (long long)compare_chart_concurrency(cs->c));
	else
		snprintf(title, sizeof title, "%s", titles[ch]);
	ui_box(u, b, title, NULL);
	double v[COMPARE_MAX_RUNS], max = 0;
	size_t n = compare_n_runs(cs->c), base = compare_baseline(cs->c);
	compare_chart_values(cs->c, ch, v);
	int idw = 0;
	for (size_t r = 0; r < n; r++) {
		char id[32];
		snprintf(id, sizeof id, "#%lld", (long long)compare_run(cs->c, r)->id);
		if (ui_width(id) > idw)
			idw = ui_width(id);
		if (isfinite(v[r]) && v[r] > max)
			max = v[r];
	}
	int inner = b.w - 4, valw = 8, barw = inner - idw - valw - 2;
	for (size_t r = 0; r < n && (int)r < b.h - 2; r++) {
		int y = b.y + 1 + (int)r, x = b.x + 2;
		char id[32], num[32];
		snprintf(id, sizeof id, "#%lld", (long long)compare_run(cs->c, r)->id);
		ui_put(u, y, x, idw, r == base ? ROLE_ACCENT : ROLE_TEXT, id, false);
		theme_role role = ROLE_TEXT;
		if (r == base)
			role = ROLE_ACCENT;
		else if (isfinite(v[r]) && isfinite(v[base]) && v[r] != v[base])
			role = (v[r] > v[base]) == higher[ch] ? ROLE_GOOD : ROLE_BAD;
		if (barw > 0)
			ui_bar(u, y, x + idw + 1, barw, max > 0 && isfinite(v[r]) ? v[r] / max : 0, role);
		if (isfinite(v[r]))
			compare_format_num(v[r], num, sizeof num);
		else
			snprintf(num, sizeof num, "—");
		ui_put_right(u, y, x + inner - valw, valw, isfinite(v[r]) ? ROLE_TEXT : ROLE_DIM, num);
	}
}

static void draw_empty(ui *u, ui_rect r)
{
	ui_box(u, (ui_rect){r.y, r.x, r.h, r.w}, "Compare", NULL);
	static const char *const lines[] = {
		"Nothing to compare yet.",
		"",
		"On Results (4): mark 2 to 4 runs with ␣, then press c (or ⏎).",
		"The first run marked is the baseline; b here picks another.",
		"",
		"From a shell: optstudio compare RUN RUN [RUN RUN] --format csv|md|json",
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0] && (int)i + 2 < r.h - 1; i++)
		ui_put(u, r.y + 2 + (int)i, r.x + 3, r.w - 6, i == 0 ? ROLE_TEXT : ROLE_DIM, lines[i], false);
}

static void compare_draw(void *state, ui *u, ui_rect r)
{
	compare_screen *cs = state;
	if (!cs->c) {
		draw_empty(u, r);
		return;
	}
	size_t n = compare_n_runs(cs->c), base = compare_baseline(cs->c);
	int chart_h = (int)n + 2;
	ui_rect tb = {r.y, r.x, r.h - chart_h, r.w};
	char title[96], right[300];
	const store_bench_run *br = compare_run(cs->c, base);
	snprintf(title, sizeof title, "Compare %zu runs · baseline #%lld", n, (long long)br->id);
	if (cs->filter[0])
		snprintf(right, sizeof right, "/ %s · %zu of %zu", cs->filter, cs->n_view, cs->n_order);
	else
		snprintf(right, sizeof right, "/ filter");
	ui_box(u, tb, title, right);
	int inner = tb.w - 4, x0 = tb.x + 2;
	int label_w = inner / 4 < 20 ? 20 : inner / 4 > 28 ? 28 : inner / 4;
	cs->col_w = (inner - label_w - 1) / (int)n;
	if (cs->col_w > 34)
		cs->col_w = 34;
	cs->col_x0 = x0 + label_w + 1;
	cs->head_y = tb.y + 1;
	for (size_t k = 0; k < n; k++) {
		const store_bench_run *run = compare_run(cs->c, k);
		int x = cs->col_x0 + (int)k * cs->col_w;
		char h[160];
		snprintf(h, sizeof h, "%s#%lld %s", k == base ? "◆" : "", (long long)run->id,
			 run->label ? run->label : "");
		ui_put(u, cs->head_y, x, cs->col_w - 1, k == base ? ROLE_ACCENT : ROLE_HEADER, h, false);
		snprintf(h, sizeof h, "%s%s", k == base ? "baseline · " : "",
			 compare_display_name(run->model_name));
		ui_put(u, cs->head_y + 1, x, cs->col_w - 1, ROLE_DIM, h, false);
	}
	ui_put(u, cs->head_y, x0, label_w, ROLE_HEADER, "run", false);
	ui_put(u, cs->head_y + 1, x0, label_w, ROLE_DIM, "model", false);
	int y0 = tb.y + 3;
	cs->table_rows = tb.h - 4;
	if (cs->table_rows > 0 && cs->n_view > (size_t)cs->table_rows &&
	    cs->top > cs->n_view - (size_t)cs->table_rows)
		cs->top = cs->n_view - (size_t)cs->table_rows;
	for (int i = 0; i < cs->table_rows && cs->top + (size_t)i < cs->n_view; i++) {
		const compare_row *row = compare_row_at(cs->c, cs->view[cs->top + (size_t)i]);
		char label[96];
		row_label(row, label, sizeof label);
		ui_put(u, y0 + i, x0, label_w, row->concurrency == COMPARE_ACCURACY ? ROLE_ACCENT : ROLE_TEXT,
		       label, false);
		for (size_t k = 0; k < n; k++)
			draw_cell(cs, u, y0 + i, cs->col_x0 + (int)k * cs->col_w, row, k);
	}
	if (!cs->n_view)
		ui_put(u, y0, x0, inner, ROLE_DIM, "no figure matches the filter (Esc clears it)", false);
	else if (cs->table_rows > 0 && cs->n_view > (size_t)cs->table_rows) {
		snprintf(right, sizeof right, " %zu–%zu of %zu ↑↓ ", cs->top + 1,
			 cs->top + (size_t)cs->table_rows < cs->n_view ? cs->top + (size_t)cs->table_rows
								      : cs->n_view,
			 cs->n_view);
		ui_put_right(u, tb.y + tb.h - 1, tb.x + 2, tb.w - 4, ROLE_DIM, right);
	}
	/* the charts, side by side */
	cs->chart_y0 = r.y + r.h - chart_h;
	cs->chart_w = r.w / COMPARE_N_CHARTS;
	for (int ch = 0; ch < COMPARE_N_CHARTS; ch++) {
		cs->chart_x[ch] = r.x + ch * cs->chart_w;
		int w = ch == COMPARE_N_CHARTS - 1 ? r.w - ch * cs->chart_w : cs->chart_w;
		draw_chart(cs, u, (ui_rect){cs->chart_y0, cs->chart_x[ch], chart_h, w}, (compare_chart)ch);
	}
}

/* ---- actions ------------------------------------------------------------------------------------ */

static void scroll_table(compare_screen *cs, long d)
{
	long t = (long)cs->top + d, max = (long)cs->n_view - (cs->table_rows > 0 ? cs->table_rows : 1);
	if (t > max)
		t = max;
	if (t < 0)
		t = 0;
	cs->top = (size_t)t;
}

static void on_filter(void *state, ui *u, const char *text, int event)
{
	compare_screen *cs = state;
	snprintf(cs->filter, sizeof cs->filter, "%s", text);
	cs->top = 0;
	rebuild_view(cs);
}

static void set_baseline(compare_screen *cs, ui *u, size_t r)
{
	if (!compare_set_baseline(cs->c, r))
		return;
	const store_bench_run *run = compare_run(cs->c, r);
	ui_status(u, false, "baseline: run %lld (%s)", (long long)run->id,
		  run->label ? run->label : compare_display_name(run->model_name));
}

/* Writes the comparison to <home>/exports/compare-<ids>.<csv|md>. */
static void export_to(compare_screen *cs, ui *u, compare_format fmt)
{
	const char *home = store_home(ui_store(u));
	char dir[4096], path[4300];
	snprintf(dir, sizeof dir, "%s/exports", home);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		ui_status(u, true, "cannot create %s: %s", dir, strerror(errno));
		return;
	}
	size_t off = (size_t)snprintf(path, sizeof path, "%s/compare", dir);
	for (size_t r = 0; r < compare_n_runs(cs->c) && off < sizeof path; r++)
		off += (size_t)snprintf(path + off, sizeof path - off, "-%lld",
					(long long)compare_run(cs->c, r)->id);
	if (off < sizeof path)
		snprintf(path + off, sizeof path - off, ".%s", fmt == COMPARE_FORMAT_CSV ? "csv" : "md");
	FILE *f = fopen(path, "w");
	if (!f) {
		ui_status(u, true, "cannot write %s: %s", path, strerror(errno));
		return;
	}
	os_error err = {0};
	int rc = compare_write(cs->c, f, fmt, &err);
	if (fclose(f) != 0 && rc == OS_OK)
		rc = os_error_set(&err, OS_EIO, "cannot close the file");
	if (rc != OS_OK)
		ui_status(u, true, "cannot write %s: %s", path, os_error_text(&err));
	else
		ui_status(u, false, "exported to %s", path);
}

static void on_export(void *state, ui *u, const char *text, int event)
{
	compare_screen *cs = state;
	if (event == UI_PROMPT_CANCEL)
		ui_status(u, false, "export cancelled");
	if (event != UI_PROMPT_ACCEPT || !cs->c)
		return;
	while (*text == ' ')
		text++;
	char fmt[16];
	size_t n = 0;
	for (; text[n] && text[n] != ' ' && n + 1 < sizeof fmt; n++)
		fmt[n] = (char)(text[n] >= 'A' && text[n] <= 'Z' ? text[n] - 'A' + 'a' : text[n]);
	fmt[n] = '\0';
	if (!strcmp(fmt, "csv"))
		export_to(cs, u, COMPARE_FORMAT_CSV);
	else if (!strcmp(fmt, "md") || !strcmp(fmt, "markdown"))
		export_to(cs, u, COMPARE_FORMAT_MD);
	else
		ui_status(u, true, "export wants csv or md, got '%s'", text);
}

static void compare_action(void *state, ui *u, int action)
{
	compare_screen *cs = state;
	long page = cs->table_rows > 1 ? cs->table_rows - 1 : 1;
	size_t n = cs->c ? compare_n_runs(cs->c) : 0;
	switch (action) {
	case C_UP: scroll_table(cs, -1); break;
	case C_DOWN: scroll_table(cs, 1); break;
	case C_PGUP: scroll_table(cs, -page); break;
	case C_PGDN: scroll_table(cs, page); break;
	case C_HOME: cs->top = 0; break;
	case C_END: scroll_table(cs, (long)cs->n_view); break;
	case C_BASE_NEXT: set_baseline(cs, u, (compare_baseline(cs->c) + 1) % n); break;
	case C_BASE_PREV: set_baseline(cs, u, (compare_baseline(cs->c) + n - 1) % n); break;
	case C_EXPORT:
		ui_prompt_ex(u, "export as csv or md:", "csv", UI_PROMPT_CANCELS, on_export, cs);
		break;
	case C_FILTER: ui_prompt(u, "/", cs->filter, on_filter, cs); break;
	case C_BACK:
		if (cs->filter[0])
			on_filter(cs, u, "", UI_PROMPT_CANCEL);
		break;
	case C_RESULTS: ui_goto(u, "Results", NULL); break;
	default: break;
	}
}

static bool compare_disabled(void *state, int action, char *why, size_t len)
{
	compare_screen *cs = state;
	if ((action == C_BASE_NEXT || action == C_BASE_PREV || action == C_EXPORT ||
	     action == C_FILTER) && !cs->c) {
		snprintf(why, len, "nothing to compare: mark 2 to %d runs on Results (4) with ␣, then c",
			 COMPARE_MAX_RUNS);
		return true;
	}
	return false;
}

static void compare_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	compare_screen *cs = state;
	if (!cs->c)
		return;
	size_t n = compare_n_runs(cs->c);
	/* a run's column head, or its line in a chart, makes it the baseline */
	if ((y == cs->head_y || y == cs->head_y + 1) && x >= cs->col_x0 && cs->col_w > 0) {
		size_t k = (size_t)((x - cs->col_x0) / cs->col_w);
		if (k < n)
			set_baseline(cs, u, k);
		return;
	}
	int k = y - cs->chart_y0 - 1;
	if (k >= 0 && (size_t)k < n && x >= r.x)
		set_baseline(cs, u, (size_t)k);
}

static void compare_destroy(void *state)
{
	compare_screen *cs = state;
	if (!cs)
		return;
	compare_free(cs->c);
	free(cs->order);
	free(cs->view);
	free(cs);
}

int screen_compare_new(ui_screen *out, os_error *err)
{
	compare_screen *cs = calloc(1, sizeof *cs);
	if (!cs)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	*out = (ui_screen){
		.title = "Compare",
		.number = 5,
		.keys = compare_keys,
		.n_keys = sizeof compare_keys / sizeof compare_keys[0],
		.state = cs,
		.draw = compare_draw,
		.on_action = compare_action,
		.on_refresh = compare_refresh,
		.on_click = compare_click,
		.disabled = compare_disabled,
		.destroy = compare_destroy,
		.on_enter = compare_enter,
	};
	return OS_OK;
}
