/* screen_results.c: the Results screen: the stored benchmark runs in a sortable, filterable
 * table (figures from core/jobs/compare, as `optstudio results` prints them), 2 to 4 of them
 * marked for the Compare screen, and the selected run's levels with a throughput bar and a
 * sparkline of throughput over concurrency. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/jobs/compare.h"
#include "studio.h"

enum { COL_ID, COL_WHEN, COL_MODEL, COL_RECIPE, COL_INSTANCE, COL_BEST, COL_PRICE, COL_PPL, N_COLS };
static const char *const col_names[N_COLS] = {"ID", "WHEN", "MODEL", "RECIPE", "INSTANCE",
					      "BEST tok/s", "$/1M", "PPL"};
static const int col_widths[N_COLS] = {4, 11, 0, 0, 8, 11, 9, 7}; /* 0: shares the rest */
static const bool col_right[N_COLS] = {true, false, false, false, false, true, true, true};
#define MARK_W 2 /* "● " before the id */

enum { R_UP = 1, R_DOWN, R_PGUP, R_PGDN, R_HOME, R_END, R_MARK, R_COMPARE, R_UNMARK, R_BACK,
       R_FILTER, R_SORT, R_REVERSE };

static const ui_key results_keys[] = {
	{KEY_UP, "↑↓", "move", "select a run (also k/j, the mouse wheel)", R_UP},
	{KEY_DOWN, "↓", NULL, "move down", R_DOWN},
	{'k', "k", NULL, "move up", R_UP},
	{'j', "j", NULL, "move down", R_DOWN},
	{KEY_PPAGE, "PgUp", NULL, "a page up", R_PGUP},
	{KEY_NPAGE, "PgDn", NULL, "a page down", R_PGDN},
	{KEY_HOME, "Home", NULL, "first run", R_HOME},
	{KEY_END, "End", NULL, "last run", R_END},
	{' ', "␣", "mark", "mark or unmark the run for comparison, 2 to 4 (or click its ● column)",
	 R_MARK},
	{'c', "c", "compare", "compare the marked runs side by side (the first marked is the baseline)",
	 R_COMPARE},
	{'\n', "⏎", NULL, "compare the marked runs (as c)", R_COMPARE},
	{'u', "u", NULL, "unmark every run", R_UNMARK},
	{'/', "/", "filter", "filter runs by id, date, model, recipe or instance (as you type)", R_FILTER},
	{'s', "s", "sort", "sort by the next column (or click a column header)", R_SORT},
	{'r', "r", NULL, "reverse the sort order", R_REVERSE},
	{27, "Esc", NULL, "clear the filter", R_BACK},
};

/* One listed run: the store's row (points included) and its figures. */
typedef struct run_row {
	store_bench_run *run;   /* borrowed from results_screen.runs */
	compare_summary sum;
	char when[16];          /* "11-23 22:45" */
	const char *model;      /* display name, borrowed from run */
} run_row;

typedef struct results_screen {
	store_bench_run *runs;  /* [n_rows], from store_bench_run_list (newest first) */
	run_row *rows;          /* [n_rows] */
	size_t n_rows;
	size_t *view;           /* [n_view] indices into rows: filtered, sorted */
	size_t n_view, sel, top;
	int64_t sel_id;         /* kept across refreshes */
	int64_t marks[COMPARE_MAX_RUNS]; /* in marking order; the first is the baseline */
	size_t n_marks;
	char filter[256];
	int sort_col;
	bool sort_desc;
	/* geometry of the last draw, for clicks and paging */
	int list_y0, list_rows, header_y, list_x;
	int col_w[N_COLS];
} results_screen;

/* ---- data ---------------------------------------------------------------------------------- */

static bool is_marked(const results_screen *rs, int64_t id)
{
	for (size_t i = 0; i < rs->n_marks; i++)
		if (rs->marks[i] == id)
			return true;
	return false;
}

static int cmp_num(double a, double b)
{
	/* a missing figure sorts after every present one */
	if (isnan(a) || isnan(b))
		return (isnan(a) != 0) - (isnan(b) != 0);
	return (a > b) - (a < b);
}

static int cmp_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int cmp_rows(const run_row *a, const run_row *b, int col)
{
	int c = 0;
	switch (col) {
	case COL_WHEN: c = cmp_num((double)a->run->created_at, (double)b->run->created_at); break;
	case COL_MODEL: c = cmp_str(a->model, b->model); break;
	case COL_RECIPE: c = cmp_str(a->run->label, b->run->label); break;
	case COL_INSTANCE: c = cmp_str(a->run->instance_name, b->run->instance_name); break;
	case COL_BEST: c = cmp_num(a->sum.peak_tok_s, b->sum.peak_tok_s); break;
	case COL_PRICE: c = cmp_num(a->sum.peak_usd_per_1m, b->sum.peak_usd_per_1m); break;
	case COL_PPL: c = cmp_num(a->sum.perplexity, b->sum.perplexity); break;
	default: break;
	}
	return c ? c : (a->run->id > b->run->id) - (a->run->id < b->run->id);
}

static bool row_matches(const run_row *r, const char *f)
{
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)r->run->id);
	return ui_match(id, f) || ui_match(r->when, f) || ui_match(r->run->model_name, f) ||
	       ui_match(r->run->label, f) || ui_match(r->run->instance_name, f);
}

/* insertion sort: lists are short and this keeps the context without globals */
static void rebuild_view(results_screen *rs)
{
	rs->n_view = 0;
	for (size_t i = 0; i < rs->n_rows; i++)
		if (row_matches(&rs->rows[i], rs->filter))
			rs->view[rs->n_view++] = i;
	for (size_t i = 1; i < rs->n_view; i++) {
		size_t v = rs->view[i], j = i;
		while (j > 0) {
			int c = cmp_rows(&rs->rows[rs->view[j - 1]], &rs->rows[v], rs->sort_col);
			if (rs->sort_desc ? c >= 0 : c <= 0)
				break;
			rs->view[j] = rs->view[j - 1];
			j--;
		}
		rs->view[j] = v;
	}
	rs->sel = 0;
	for (size_t i = 0; i < rs->n_view; i++)
		if (rs->rows[rs->view[i]].run->id == rs->sel_id)
			rs->sel = i;
	rs->sel_id = rs->n_view ? rs->rows[rs->view[rs->sel]].run->id : 0;
}

static const run_row *selected(const results_screen *rs)
{
	return rs->n_view ? &rs->rows[rs->view[rs->sel]] : NULL;
}

static void results_refresh(void *state, ui *u)
{
	results_screen *rs = state;
	store *s = ui_store(u);
	store_bench_run *runs = NULL;
	size_t n = 0;
	os_error err = {0};
	if (store_bench_run_list(s, &runs, &n, &err) != OS_OK) {
		ui_status(u, true, "cannot list the benchmark runs: %s", os_error_text(&err));
		return;
	}
	run_row *rows = n ? calloc(n, sizeof *rows) : NULL;
	size_t *view = n ? calloc(n, sizeof *view) : NULL;
	if (n && (!rows || !view)) {
		free(rows);
		free(view);
		store_bench_run_list_free(runs, n);
		ui_status(u, true, "out of memory listing the benchmark runs");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		run_row *r = &rows[i];
		r->run = &runs[i];
		r->model = compare_display_name(runs[i].model_name);
		compare_run_summary(s, &runs[i], &r->sum);
		time_t t = (time_t)runs[i].created_at;
		struct tm tmv;
		if (!localtime_r(&t, &tmv) || !strftime(r->when, sizeof r->when, "%m-%d %H:%M", &tmv))
			snprintf(r->when, sizeof r->when, "—");
	}
	store_bench_run_list_free(rs->runs, rs->n_rows);
	free(rs->rows);
	free(rs->view);
	rs->runs = runs;
	rs->rows = rows;
	rs->view = view;
	rs->n_rows = n;
	/* marks of runs deleted meanwhile go */
	size_t k = 0;
	for (size_t i = 0; i < rs->n_marks; i++) {
		bool found = false;
		for (size_t j = 0; j < n && !found; j++)
			found = runs[j].id == rs->marks[i];
		if (found)
			rs->marks[k++] = rs->marks[i];
	}
	rs->n_marks = k;
	rebuild_view(rs);
}

/* ---- drawing ---------------------------------------------------------------------------------- */

static void cell_num(double v, const char *prefix, char *buf, size_t len)
{
	char num[32];
	if (!isfinite(v)) {
		snprintf(buf, len, "—");
		return;
	}
	compare_format_num(v, num, sizeof num);
	snprintf(buf, len, "%s%s", prefix, num);
}

static void col_text(const run_row *r, int col, char *buf, size_t len)
{
	switch (col) {
	case COL_ID: snprintf(buf, len, "%lld", (long long)r->run->id); break;
	case COL_WHEN: snprintf(buf, len, "%s", r->when); break;
	case COL_MODEL: snprintf(buf, len, "%s", r->model); break;
	case COL_RECIPE: snprintf(buf, len, "%s", r->run->label ? r->run->label : "—"); break;
	case COL_INSTANCE: snprintf(buf, len, "%s", r->run->instance_name ? r->run->instance_name : "—"); break;
	case COL_BEST:
		if (r->sum.peak_concurrency) {
			char num[32];
			compare_format_num(r->sum.peak_tok_s, num, sizeof num);
			snprintf(buf, len, "%s @%lld", num, (long long)r->sum.peak_concurrency);
		} else {
			snprintf(buf, len, "—");
		}
		break;
	case COL_PRICE: cell_num(r->sum.peak_usd_per_1m, "$", buf, len); break;
	default: cell_num(r->sum.perplexity, "", buf, len); break;
	}
}

static void layout_cols(results_screen *rs, int inner)
{
	int fixed = MARK_W, n_flex = 0;
	for (int c = 0; c < N_COLS; c++) {
		fixed += col_widths[c] + (c ? 1 : 0);
		n_flex += col_widths[c] == 0;
	}
	int flex = inner - fixed;
	if (flex < 2 * n_flex)
		flex = 2 * n_flex;
	for (int c = 0, k = 0; c < N_COLS; c++) {
		if (col_widths[c])
			rs->col_w[c] = col_widths[c];
		else /* the model gets the larger share */
			rs->col_w[c] = k++ == 0 ? (flex * 11 + 19) / 20 : flex - (flex * 11 + 19) / 20;
	}
}

static void draw_list(results_screen *rs, ui *u, ui_rect b)
{
	char title[64], right[300];
	snprintf(title, sizeof title, "Runs %zu", rs->n_view);
	int off = 0;
	if (rs->n_marks)
		off = snprintf(right, sizeof right, "%zu marked · ", rs->n_marks);
	if (rs->filter[0])
		snprintf(right + off, sizeof right - (size_t)off, "/ %s · %zu of %zu", rs->filter,
			 rs->n_view, rs->n_rows);
	else
		snprintf(right + off, sizeof right - (size_t)off, "/ filter");
	ui_box(u, b, title, right);
	int inner = b.w - 4;
	layout_cols(rs, inner);
	rs->list_x = b.x + 2;
	rs->header_y = b.y + 1;
	int x = rs->list_x + MARK_W;
	for (int c = 0; c < N_COLS; c++) {
		char h[48];
		snprintf(h, sizeof h, "%s%s", col_names[c],
			 c == rs->sort_col ? (rs->sort_desc ? "▼" : "▲") : "");
		if (col_right[c])
			ui_put_right(u, rs->header_y, x, rs->col_w[c], ROLE_HEADER, h);
		else
			ui_put(u, rs->header_y, x, rs->col_w[c], ROLE_HEADER, h, false);
		x += rs->col_w[c] + 1;
	}
	rs->list_y0 = b.y + 2;
	rs->list_rows = b.h - 3;
	if (rs->sel < rs->top)
		rs->top = rs->sel;
	if (rs->list_rows > 0 && rs->sel >= rs->top + (size_t)rs->list_rows)
		rs->top = rs->sel - (size_t)rs->list_rows + 1;
	for (int i = 0; i < rs->list_rows && rs->top + (size_t)i < rs->n_view; i++) {
		size_t vi = rs->top + (size_t)i;
		const run_row *r = &rs->rows[rs->view[vi]];
		bool sel = vi == rs->sel, mk = is_marked(rs, r->run->id);
		theme_role base = sel ? ROLE_SELECTION : ROLE_TEXT;
		int y = rs->list_y0 + i;
		ui_fill(u, y, rs->list_x - 1, inner + 2, base);
		ui_put(u, y, rs->list_x, MARK_W, sel ? base : ROLE_ACCENT, mk ? "●" : "·", false);
		x = rs->list_x + MARK_W;
		for (int c = 0; c < N_COLS; c++) {
			char t[200];
			col_text(r, c, t, sizeof t);
			theme_role role = base;
			if (!sel && !strcmp(t, "—"))
				role = ROLE_DIM;
			if (col_right[c])
				ui_put_right(u, y, x, rs->col_w[c], role, t);
			else
				ui_put(u, y, x, rs->col_w[c], role, t, false);
			x += rs->col_w[c] + 1;
		}
	}
	if (!rs->n_view)
		ui_put(u, rs->list_y0, rs->list_x, inner, ROLE_DIM,
		       rs->n_rows ? "no run matches the filter (Esc clears it)"
				  : "no benchmark runs yet: 'optstudio bench MODEL' makes one (so does a job "
				    "with an evaluation)",
		       false);
}

/* Throughput over concurrency in eighth-height blocks, one per level. */
static void sparkline(const store_bench_run *r, char *buf, size_t len)
{
	static const char *const ticks[8] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
	double max = 0;
	for (size_t i = 0; i < r->n_points; i++)
		if (isfinite(r->points[i].total_tokens_per_s) && r->points[i].total_tokens_per_s > max)
			max = r->points[i].total_tokens_per_s;
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < r->n_points && off + 4 < len; i++) {
		double v = r->points[i].total_tokens_per_s;
		const char *t = " ";
		if (isfinite(v) && max > 0) {
			int k = (int)lround(v / max * 7);
			t = ticks[k < 0 ? 0 : k > 7 ? 7 : k];
		}
		off += (size_t)snprintf(buf + off, len - off, "%s", t);
	}
}

enum { D_C = 5, D_TOT = 9, D_TTFT = 8, D_ITL = 7, D_PRICE = 9, D_ERR = 4 };

/* The run's accuracy figures it has, "ppl 12.3 · KL 0.0123 · KL p99 0.081 · top-1 93.1% ·
 * acceptance 81.2%", into buf; false (buf "") when it has none. */
static bool accuracy_text(const compare_summary *s, char *buf, size_t len)
{
	const struct {
		const char *name;
		double v;
		bool pct; /* a 0..1 fraction shown as a percentage */
	} fig[] = {
		{"ppl", s->perplexity, false},
		{"KL", s->kl_mean, false},
		{"KL p99", s->kl_p99, false},
		{"top-1", s->top1_agreement, true},
		{"acceptance", s->acceptance_rate, true},
	};
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof fig / sizeof fig[0] && off < len; i++) {
		if (!isfinite(fig[i].v))
			continue;
		char num[32];
		if (fig[i].pct)
			snprintf(num, sizeof num, "%.1f%%", fig[i].v * 100);
		else
			compare_format_num(fig[i].v, num, sizeof num);
		off += (size_t)snprintf(buf + off, len - off, "%s%s %s", off ? " · " : "", fig[i].name,
					num);
	}
	return off > 0;
}

static void draw_detail(results_screen *rs, ui *u, ui_rect b)
{
	const run_row *r = selected(rs);
	if (!r) {
		ui_box(u, b, "run", NULL);
		return;
	}
	const store_bench_run *run = r->run;
	char title[256], right[128], spark[128], buf[512];
	snprintf(title, sizeof title, "%lld · %s · %s", (long long)run->id, r->model,
		 run->label ? run->label : "no label");
	sparkline(run, spark, sizeof spark);
	snprintf(right, sizeof right, "tok/s over C %s", spark);
	ui_box(u, b, title, right);
	int x0 = b.x + 2, w = b.w - 4, y = b.y + 1, bottom = b.y + b.h - 1;
	if (y >= bottom)
		return;
	char usd[48] = "no $/hour set";
	if (r->sum.usd_per_hour > 0)
		snprintf(usd, sizeof usd, "$%.2f/h", r->sum.usd_per_hour);
	char load[32] = "—", acc[256];
	if (isfinite(r->sum.load_seconds))
		snprintf(load, sizeof load, "%.3g s", r->sum.load_seconds);
	bool has_acc = accuracy_text(&r->sum, acc, sizeof acc);
	snprintf(buf, sizeof buf, "%s %s · discount %.0f%% · in/out %lld/%lld · seed %lld · load %s%s",
		 run->instance_name ? run->instance_name : "—", usd, r->sum.discount * 100,
		 (long long)run->input_tokens, (long long)run->output_tokens, (long long)run->seed, load,
		 has_acc ? "" : " · no accuracy figures");
	ui_put(u, y++, x0, w, ROLE_DIM, buf, false);
	if (y >= bottom)
		return;
	if (has_acc) { /* the figures of the run's job (else its model's newest) */
		int lx = x0 + ui_put(u, y, x0, w, ROLE_ACCENT, "accuracy ", false);
		ui_put(u, y++, lx, x0 + w - lx, ROLE_TEXT, acc, false);
		if (y >= bottom)
			return;
	}
	int bar_w = w - (D_C + D_TOT + 2 * D_TTFT + 2 * D_ITL + D_PRICE + D_ERR + 8);
	if (bar_w < 4)
		bar_w = 4;
	/* header */
	int x = x0;
	static const struct {
		const char *h;
		int w;
	} cols[] = {{"C", D_C},	       {"tok/s", D_TOT}, {"", 0},	       {"TTFT p50", D_TTFT},
		    {"p99", D_TTFT},   {"ITL p50", D_ITL},     {"p99", D_ITL}, {"$/1M", D_PRICE},
		    {"err", D_ERR}};
	for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
		int cw = cols[c].w ? cols[c].w : bar_w;
		ui_put_right(u, y, x, cw, ROLE_HEADER, cols[c].h);
		x += cw + 1;
	}
	y++;
	double max = isfinite(r->sum.peak_tok_s) ? r->sum.peak_tok_s : 0;
	size_t shown = 0;
	for (size_t i = 0; i < run->n_points && y < bottom; i++, y++, shown++) {
		if (y == bottom - 1 && i + 1 < run->n_points) {
			snprintf(buf, sizeof buf, "… %zu more levels ('optstudio compare' or ⏎ shows all)",
				 run->n_points - i);
			ui_put(u, y, x0, w, ROLE_DIM, buf, false);
			break;
		}
		const store_bench_point *p = &run->points[i];
		bool peak = p->concurrency == r->sum.peak_concurrency;
		x = x0;
		snprintf(buf, sizeof buf, "%lld", (long long)p->concurrency);
		ui_put_right(u, y, x, D_C, ROLE_TEXT, buf);
		x += D_C + 1;
		cell_num(p->total_tokens_per_s, "", buf, sizeof buf);
		ui_put_right(u, y, x, D_TOT, peak ? ROLE_GOOD : ROLE_TEXT, buf);
		x += D_TOT + 1;
		ui_bar(u, y, x, bar_w, max > 0 && isfinite(p->total_tokens_per_s) ? p->total_tokens_per_s / max : 0,
		       peak ? ROLE_GOOD : ROLE_ACCENT);
		x += bar_w + 1;
		const double v[] = {p->ttft_p50_ms, p->ttft_p99_ms, p->itl_p50_ms, p->itl_p99_ms,
				    compare_point_price(&r->sum, p->total_tokens_per_s)};
		const int vw[] = {D_TTFT, D_TTFT, D_ITL, D_ITL, D_PRICE};
		for (size_t k = 0; k < 5; k++) {
			cell_num(v[k], k == 4 ? "$" : "", buf, sizeof buf);
			ui_put_right(u, y, x, vw[k], isfinite(v[k]) ? ROLE_TEXT : ROLE_DIM, buf);
			x += vw[k] + 1;
		}
		snprintf(buf, sizeof buf, "%lld", (long long)p->n_errors);
		ui_put_right(u, y, x, D_ERR, p->n_errors ? ROLE_BAD : ROLE_DIM, buf);
	}
	if (!run->n_points && y < bottom)
		ui_put(u, y, x0, w, ROLE_DIM, "this run has no levels", false);
}

static void results_draw(void *state, ui *u, ui_rect r)
{
	results_screen *rs = state;
	int list_h = (int)rs->n_view + 3;
	int max_list = r.h * 3 / 5;
	if (list_h > max_list)
		list_h = max_list;
	if (list_h < 5)
		list_h = 5;
	draw_list(rs, u, (ui_rect){r.y, r.x, list_h, r.w});
	draw_detail(rs, u, (ui_rect){r.y + list_h, r.x, r.h - list_h, r.w});
}

/* ---- actions ------------------------------------------------------------------------------------ */

static void move_sel(results_screen *rs, long d)
{
	if (!rs->n_view)
		return;
	long s = (long)rs->sel + d;
	if (s < 0)
		s = 0;
	if (s >= (long)rs->n_view)
		s = (long)rs->n_view - 1;
	rs->sel = (size_t)s;
	rs->sel_id = rs->rows[rs->view[rs->sel]].run->id;
}

static void on_filter(void *state, ui *u, const char *text, int event)
{
	results_screen *rs = state;
	snprintf(rs->filter, sizeof rs->filter, "%s", text);
	rebuild_view(rs);
	rs->top = 0;
}

static void toggle_mark(results_screen *rs, ui *u, int64_t id)
{
	for (size_t i = 0; i < rs->n_marks; i++)
		if (rs->marks[i] == id) {
			memmove(rs->marks + i, rs->marks + i + 1, (rs->n_marks - i - 1) * sizeof rs->marks[0]);
			rs->n_marks--;
			return;
		}
	if (rs->n_marks == COMPARE_MAX_RUNS) {
		ui_status(u, true, "at most %d runs can be compared; unmark one first (␣ on a ● run)",
			  COMPARE_MAX_RUNS);
		return;
	}
	rs->marks[rs->n_marks++] = id;
	if (rs->n_marks >= 2)
		ui_status(u, false, "%zu runs marked · c compares them (run %lld is the baseline)",
			  rs->n_marks, (long long)rs->marks[0]);
}

static void open_compare(results_screen *rs, ui *u)
{
	char arg[128];
	size_t off = 0;
	arg[0] = '\0';
	for (size_t i = 0; i < rs->n_marks && off < sizeof arg; i++)
		off += (size_t)snprintf(arg + off, sizeof arg - off, "%s%lld", i ? "," : "",
					(long long)rs->marks[i]);
	if (!ui_goto(u, "Compare", arg))
		ui_status(u, true, "the Compare screen is missing from this build");
}

static void results_action(void *state, ui *u, int action)
{
	results_screen *rs = state;
	long page = rs->list_rows > 1 ? rs->list_rows - 1 : 1;
	const run_row *r = selected(rs);
	switch (action) {
	case R_UP: move_sel(rs, -1); break;
	case R_DOWN: move_sel(rs, 1); break;
	case R_PGUP: move_sel(rs, -page); break;
	case R_PGDN: move_sel(rs, page); break;
	case R_HOME: move_sel(rs, -(long)rs->n_view); break;
	case R_END: move_sel(rs, (long)rs->n_view); break;
	case R_MARK:
		if (r)
			toggle_mark(rs, u, r->run->id);
		break;
	case R_UNMARK:
		rs->n_marks = 0;
		ui_status(u, false, "no run marked");
		break;
	case R_COMPARE: open_compare(rs, u); break;
	case R_BACK:
		if (rs->filter[0])
			on_filter(rs, u, "", UI_PROMPT_CANCEL);
		break;
	case R_FILTER: ui_prompt(u, "/", rs->filter, on_filter, rs); break;
	case R_SORT:
		rs->sort_col = (rs->sort_col + 1) % N_COLS;
		rebuild_view(rs);
		ui_status(u, false, "sorted by %s", col_names[rs->sort_col]);
		break;
	case R_REVERSE: rs->sort_desc = !rs->sort_desc; rebuild_view(rs); break;
	default: break;
	}
}

static bool results_disabled(void *state, int action, char *why, size_t len)
{
	results_screen *rs = state;
	if (action == R_MARK && !rs->n_view) {
		snprintf(why, len, "no run selected");
		return true;
	}
	if (action == R_COMPARE && rs->n_marks < 2) {
		snprintf(why, len, "mark 2 to %d runs with ␣ first (%zu marked)", COMPARE_MAX_RUNS,
			 rs->n_marks);
		return true;
	}
	return false;
}

static void results_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	results_screen *rs = state;
	if (y == rs->header_y) {
		int cx = rs->list_x + MARK_W;
		for (int c = 0; c < N_COLS; c++) {
			if (x >= cx && x < cx + rs->col_w[c]) {
				if (rs->sort_col == c)
					rs->sort_desc = !rs->sort_desc;
				rs->sort_col = c;
				rebuild_view(rs);
			}
			cx += rs->col_w[c] + 1;
		}
		return;
	}
	int i = y - rs->list_y0;
	if (i >= 0 && i < rs->list_rows && rs->top + (size_t)i < rs->n_view) {
		rs->sel = rs->top + (size_t)i;
		rs->sel_id = rs->rows[rs->view[rs->sel]].run->id;
		if (dbl || (x >= rs->list_x - 1 && x < rs->list_x + MARK_W))
			toggle_mark(rs, u, rs->sel_id);
	}
}

static void results_destroy(void *state)
{
	results_screen *rs = state;
	if (!rs)
		return;
	store_bench_run_list_free(rs->runs, rs->n_rows);
	free(rs->rows);
	free(rs->view);
	free(rs);
}

int screen_results_new(ui_screen *out, os_error *err)
{
	results_screen *rs = calloc(1, sizeof *rs);
	if (!rs)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	rs->sort_col = COL_ID;
	rs->sort_desc = true; /* newest first */
	*out = (ui_screen){
		.title = "Results",
		.number = 4,
		.keys = results_keys,
		.n_keys = sizeof results_keys / sizeof results_keys[0],
		.state = rs,
		.draw = results_draw,
		.on_action = results_action,
		.on_refresh = results_refresh,
		.on_click = results_click,
		.disabled = results_disabled,
		.destroy = results_destroy,
	};
	return OS_OK;
}
