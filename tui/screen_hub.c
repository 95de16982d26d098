/* screen_hub.c: the Hub screen: the models of the store in a sortable, filterable table, a
 * summary of the selected one, and its full card (every field, the recommended draft and
 * why, models made from it, past benchmark runs and evaluation results). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_spec.h"
#include "hub_ops.h"
#include "studio.h"

enum { COL_NAME, COL_ARCH, COL_PARAMS, COL_SIZE, COL_PREC, COL_CTX, N_COLS };
static const char *const col_names[N_COLS] = {"NAME", "ARCH", "PARAMS", "SIZE", "PRECISION", "CTX"};
static const int col_widths[N_COLS] = {0, 8, 8, 10, 14, 7}; /* 0: takes the rest */
static const bool col_right[N_COLS] = {false, false, true, true, false, true};

enum { H_UP = 1, H_DOWN, H_PGUP, H_PGDN, H_HOME, H_END, H_OPEN, H_BACK, H_FILTER, H_SORT,
       H_REVERSE, H_OPTIMIZE };

static const ui_key hub_keys[] = {
	{KEY_UP, "↑↓", "move", "move the selection (also k/j, the mouse wheel); scroll the card", H_UP},
	{KEY_DOWN, "↓", NULL, "move down", H_DOWN},
	{'k', "k", NULL, "move up", H_UP},
	{'j', "j", NULL, "move down", H_DOWN},
	{KEY_PPAGE, "PgUp", NULL, "a page up", H_PGUP},
	{KEY_NPAGE, "PgDn", NULL, "a page down", H_PGDN},
	{KEY_HOME, "Home", NULL, "first model", H_HOME},
	{KEY_END, "End", NULL, "last model", H_END},
	{'\n', "⏎", "card", "open the model card: every field, recommended draft and why, past runs", H_OPEN},
	{27, "Esc", "back", "close the card, else clear the filter", H_BACK},
	{'o', "o", "optimize", "open the Optimize wizard on the selected model", H_OPTIMIZE},
	{'/', "/", "filter", "filter models by name, architecture or precision (as you type)", H_FILTER},
	{'s', "s", "sort", "sort by the next column (or click a column header)", H_SORT},
	{'r', "r", "reverse", "reverse the sort order", H_REVERSE},
};

typedef struct card_line {
	theme_role role;
	char text[320];
} card_line;

typedef struct hub_screen {
	store_model *models;  /* [n_models], from store_model_list */
	size_t n_models;
	size_t *view;         /* [n_view] indices into models: filtered, sorted */
	size_t n_view;
	size_t sel, top;      /* index into view; first row shown */
	int64_t sel_id;       /* the selected model's id, kept across refreshes */
	char filter[256];
	int sort_col;
	bool sort_desc;
	bool card;            /* the card is open for card_id */
	int64_t card_id;
	card_line *lines;
	size_t n_lines, cap_lines;
	int card_scroll;
	int list_rows;        /* rows of the table in the last draw (for paging and clicks) */
	int list_y0, header_y, name_w;
} hub_screen;

/* qsort has no context argument: sorting goes through this per-call pair */
typedef struct sort_ctx {
	const store_model *m;
	int col;
	bool desc;
} sort_ctx;

static int cmp_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int cmp_models(const store_model *a, const store_model *b, int col)
{
	int c = 0;
	switch (col) {
	case COL_ARCH: c = cmp_str(a->architecture, b->architecture); break;
	case COL_PARAMS: c = (a->n_params > b->n_params) - (a->n_params < b->n_params); break;
	case COL_SIZE: c = (a->file_size > b->file_size) - (a->file_size < b->file_size); break;
	case COL_PREC: c = cmp_str(a->precision, b->precision); break;
	case COL_CTX: c = (a->context_length > b->context_length) - (a->context_length < b->context_length); break;
	default: break;
	}
	return c ? c : cmp_str(a->name, b->name);
}

/* insertion sort: lists are short and this keeps the context without globals */
static void sort_view(hub_screen *h)
{
	for (size_t i = 1; i < h->n_view; i++) {
		size_t v = h->view[i], j = i;
		while (j > 0) {
			int c = cmp_models(&h->models[h->view[j - 1]], &h->models[v], h->sort_col);
			if (h->sort_desc ? c >= 0 : c <= 0)
				break;
			h->view[j] = h->view[j - 1];
			j--;
		}
		h->view[j] = v;
	}
}

static void rebuild_view(hub_screen *h)
{
	h->n_view = 0;
	for (size_t i = 0; i < h->n_models; i++) {
		const store_model *m = &h->models[i];
		if (ui_match(m->name, h->filter) || ui_match(m->architecture, h->filter) ||
		    ui_match(m->precision, h->filter))
			h->view[h->n_view++] = i;
	}
	sort_view(h);
	h->sel = 0;
	for (size_t i = 0; i < h->n_view; i++)
		if (h->models[h->view[i]].id == h->sel_id)
			h->sel = i;
	if (h->n_view)
		h->sel_id = h->models[h->view[h->sel]].id;
}

static const store_model *selected(const hub_screen *h)
{
	return h->n_view ? &h->models[h->view[h->sel]] : NULL;
}

static void hub_refresh(void *state, ui *u)
{
	hub_screen *h = state;
	store_model *v = NULL;
	size_t n = 0;
	os_error err = {0};
	if (store_model_list(ui_store(u), &v, &n, &err) != OS_OK) {
		ui_status(u, true, "cannot list the hub: %s", os_error_text(&err));
		return;
	}
	size_t *view = n ? calloc(n, sizeof *view) : NULL;
	if (n && !view) {
		store_model_list_free(v, n);
		ui_status(u, true, "out of memory listing the hub");
		return;
	}
	store_model_list_free(h->models, h->n_models);
	free(h->view);
	h->models = v;
	h->n_models = n;
	h->view = view;
	rebuild_view(h);
}

/* ---- the card ------------------------------------------------------------------------------ */

static void card_add(hub_screen *h, theme_role role, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void card_add(hub_screen *h, theme_role role, const char *fmt, ...)
{
	if (h->n_lines == h->cap_lines) {
		size_t cap = h->cap_lines ? 2 * h->cap_lines : 64;
		card_line *nl = realloc(h->lines, cap * sizeof *nl);
		if (!nl)
			return;
		h->lines = nl;
		h->cap_lines = cap;
	}
	card_line *l = &h->lines[h->n_lines++];
	l->role = role;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->text, sizeof l->text, fmt, ap);
	va_end(ap);
}

/* Adds "  <label padded to 16> text" wrapped at spaces to CARD_WRAP columns. */
#define CARD_WRAP 74
static void card_add_wrapped(hub_screen *h, theme_role role, const char *label, const char *text)
{
	const char *p = text;
	bool first = true;
	do {
		size_t n = strlen(p);
		if (n > CARD_WRAP) {
			n = CARD_WRAP;
			while (n > 20 && p[n] != ' ')
				n--;
			if (p[n] != ' ')
				n = CARD_WRAP;
		}
		card_add(h, role, "  %-16s%.*s", first ? label : "", (int)n, p);
		first = false;
		p += n;
		while (*p == ' ')
			p++;
	} while (*p);
}

#define OR_DASH(s) ((s) && *(s) ? (s) : "—")

static void card_build(hub_screen *h, ui *u, const store_model *m)
{
	store *s = ui_store(u);
	h->n_lines = 0;
	h->card_scroll = 0;
	char p[32], sz[32];
	hub_format_params(m->n_params, p, sizeof p);
	hub_format_bytes(m->file_size, sz, sizeof sz);
	card_add(h, ROLE_HEADER, "Model");
	card_add(h, ROLE_TEXT, "  name            %s", m->name);
	card_add(h, ROLE_TEXT, "  architecture    %s", OR_DASH(m->architecture));
	card_add(h, ROLE_TEXT, "  parameters      %s (%lld)", p, (long long)m->n_params);
	card_add(h, ROLE_TEXT, "  layers          %lld", (long long)m->n_layers);
	card_add(h, ROLE_TEXT, "  hidden size     %lld", (long long)m->hidden_size);
	card_add(h, ROLE_TEXT, "  ffn size        %lld", (long long)m->ffn_size);
	card_add(h, ROLE_TEXT, "  heads           %lld (KV heads %lld)", (long long)m->n_heads,
		 (long long)m->n_kv_heads);
	card_add(h, ROLE_TEXT, "  context         %lld tokens", (long long)m->context_length);
	card_add(h, ROLE_TEXT, "  vocabulary      %lld (%s)", (long long)m->vocab_size,
		 OR_DASH(m->tokenizer_kind));
	card_add(h, ROLE_TEXT, "  vocab hash      %s", OR_DASH(m->vocab_hash));
	card_add(h, ROLE_TEXT, "  precision       %s", OR_DASH(m->precision));
	card_add(h, ROLE_HEADER, "File");
	card_add(h, ROLE_TEXT, "  format          %s", OR_DASH(m->format));
	card_add(h, ROLE_TEXT, "  path            %s", OR_DASH(m->path));
	card_add(h, ROLE_TEXT, "  imported from   %s", OR_DASH(m->source_path));
	card_add(h, ROLE_TEXT, "  size            %s (%lld bytes)", sz, (long long)m->file_size);
	card_add(h, ROLE_TEXT, "  sha256          %s", OR_DASH(m->sha256));
	card_add(h, ROLE_TEXT, "  license         %s", OR_DASH(m->license));
	card_add(h, ROLE_TEXT, "  owned by studio %s", m->owned_by_studio ? "yes (deleting it removes the file)" : "no");
	char when[64] = "—";
	time_t ct = (time_t)m->created_at;
	struct tm tmv;
	if (ct && localtime_r(&ct, &tmv))
		strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tmv);
	card_add(h, ROLE_TEXT, "  added           %s", when);
	if (m->parent_model_id) {
		store_model parent = {0};
		bool ok = store_model_get_by_id(s, m->parent_model_id, &parent, NULL) == OS_OK;
		card_add(h, ROLE_TEXT, "  made from       %s", ok ? parent.name : "(deleted model)");
		store_model_clear(&parent);
	}
	if (m->recipe)
		card_add_wrapped(h, ROLE_TEXT, "recipe", m->recipe);

	card_add(h, ROLE_HEADER, "Speculative decoding");
	draft_spec d;
	memset(&d, 0, sizeof d);
	os_error err = {0};
	if (m->path && spec_draft_resolve(s, "recommended", m->path, &d, &err) == OS_OK) {
		card_add(h, ROLE_GOOD, "  recommended     %s", d.label);
		card_add_wrapped(h, ROLE_TEXT, "why", d.reason[0] ? d.reason : "—");
		draft_spec_clear(&d);
	} else {
		card_add(h, ROLE_WARN, "  no recommendation: %s", os_error_text(&err));
	}

	card_add(h, ROLE_HEADER, "Made from it");
	size_t n_children = 0;
	for (size_t i = 0; i < h->n_models; i++)
		if (h->models[i].parent_model_id == m->id) {
			card_add(h, ROLE_TEXT, "  %-30s %s", h->models[i].name, OR_DASH(h->models[i].precision));
			n_children++;
		}
	if (!n_children)
		card_add(h, ROLE_DIM, "  nothing yet (the Optimize screen or 'optstudio optimize' makes some)");

	card_add(h, ROLE_HEADER, "Benchmark runs");
	store_bench_run *runs = NULL;
	size_t n_runs = 0, shown = 0;
	if (store_bench_run_list(s, &runs, &n_runs, &err) == OS_OK) {
		for (size_t i = 0; i < n_runs; i++) {
			const store_bench_run *r = &runs[i];
			if (r->model_id != m->id && cmp_str(r->model_name, m->name))
				continue;
			double best = 0;
			int64_t at = 0;
			for (size_t k = 0; k < r->n_points; k++)
				if (r->points[k].total_tokens_per_s > best) {
					best = r->points[k].total_tokens_per_s;
					at = r->points[k].concurrency;
				}
			card_add(h, ROLE_TEXT, "  #%-4lld %-16s %-6s on %-10s best %.1f tok/s total @%lld",
				 (long long)r->id, OR_DASH(r->label), OR_DASH(r->backend),
				 OR_DASH(r->instance_name), best, (long long)at);
			shown++;
		}
		store_bench_run_list_free(runs, n_runs);
	}
	if (!shown)
		card_add(h, ROLE_DIM, "  none yet ('optstudio bench %s' measures it)", m->name);

	card_add(h, ROLE_HEADER, "Evaluation results");
	store_eval_result *ev = NULL;
	size_t n_ev = 0;
	if (store_eval_result_list(s, m->name, 0, &ev, &n_ev, &err) == OS_OK) {
		for (size_t i = 0; i < n_ev; i++)
			card_add(h, ROLE_TEXT, "  %-18s %.4g  (%lld tokens, %s)", ev[i].metric, ev[i].value,
				 (long long)ev[i].n_tokens, OR_DASH(ev[i].dataset));
		store_eval_result_list_free(ev, n_ev);
	}
	if (!n_ev)
		card_add(h, ROLE_DIM, "  none yet ('optstudio eval' measures accuracy)");
}

/* ---- drawing -------------------------------------------------------------------------------- */

static void format_cell(const store_model *m, int col, char *buf, size_t len)
{
	switch (col) {
	case COL_NAME: snprintf(buf, len, "%s", m->name); break;
	case COL_ARCH: snprintf(buf, len, "%s", OR_DASH(m->architecture)); break;
	case COL_PARAMS: hub_format_params(m->n_params, buf, len); break;
	case COL_SIZE: hub_format_bytes(m->file_size, buf, len); break;
	case COL_PREC: snprintf(buf, len, "%s", OR_DASH(m->precision)); break;
	case COL_CTX: snprintf(buf, len, "%lld", (long long)m->context_length); break;
	default: buf[0] = '\0';
	}
}

static void draw_row(hub_screen *h, ui *u, int y, int x, const store_model *m, bool sel, int w)
{
	theme_role role = sel ? ROLE_SELECTION : ROLE_TEXT;
	ui_fill(u, y, x, w, role);
	int cx = x + 1;
	for (int c = 0; c < N_COLS; c++) {
		int cw = c == COL_NAME ? h->name_w : col_widths[c];
		char cell[160];
		if (m)
			format_cell(m, c, cell, sizeof cell);
		else
			snprintf(cell, sizeof cell, "%s%s", col_names[c],
				 c == h->sort_col ? (h->sort_desc ? "▼" : "▲") : "");
		theme_role r = m ? role : ROLE_HEADER;
		if (col_right[c])
			ui_put_right(u, y, cx, cw, r, cell);
		else
			ui_put(u, y, cx, cw, r, cell, false);
		cx += cw + 2;
	}
}

static void draw_summary(hub_screen *h, ui *u, ui_rect b)
{
	const store_model *m = selected(h);
	ui_box(u, b, m ? m->name : "no model", "⏎ full card");
	if (!m)
		return;
	char line[512];
	snprintf(line, sizeof line, "%s · %lld layers · hidden %lld · %lld heads / %lld KV · vocab %lld (%s)",
		 OR_DASH(m->architecture), (long long)m->n_layers, (long long)m->hidden_size,
		 (long long)m->n_heads, (long long)m->n_kv_heads, (long long)m->vocab_size,
		 OR_DASH(m->tokenizer_kind));
	ui_put(u, b.y + 1, b.x + 2, b.w - 4, ROLE_TEXT, line, false);
	if (b.h > 3) {
		snprintf(line, sizeof line, "file %s", OR_DASH(m->path));
		ui_put(u, b.y + 2, b.x + 2, b.w - 4, ROLE_DIM, line, false);
	}
	if (b.h > 4) {
		snprintf(line, sizeof line, "sha256 %.16s…   license %s", OR_DASH(m->sha256), OR_DASH(m->license));
		ui_put(u, b.y + 3, b.x + 2, b.w - 4, ROLE_DIM, line, false);
	}
}

static void draw_card(hub_screen *h, ui *u, ui_rect r)
{
	const store_model *m = NULL;
	for (size_t i = 0; i < h->n_models; i++)
		if (h->models[i].id == h->card_id)
			m = &h->models[i];
	char title[300];
	snprintf(title, sizeof title, "Model card: %s", m ? m->name : "(removed from the hub)");
	ui_box(u, r, title, "Esc back · ↑↓ scroll");
	int rows = r.h - 2;
	if (h->card_scroll > (int)h->n_lines - rows)
		h->card_scroll = (int)h->n_lines - rows;
	if (h->card_scroll < 0)
		h->card_scroll = 0;
	for (int i = 0; i < rows && h->card_scroll + i < (int)h->n_lines; i++) {
		const card_line *l = &h->lines[h->card_scroll + i];
		ui_put(u, r.y + 1 + i, r.x + 2, r.w - 4, l->role, l->text, false);
	}
}

static void hub_draw(void *state, ui *u, ui_rect r)
{
	hub_screen *h = state;
	if (h->card) {
		draw_card(h, u, r);
		return;
	}
	int summary_h = r.h >= 20 ? 5 : 0;
	ui_rect list = {r.y, r.x, r.h - summary_h, r.w};
	char title[64], right[300];
	snprintf(title, sizeof title, "Models %zu", h->n_view);
	if (h->filter[0])
		snprintf(right, sizeof right, "/ %s · %zu of %zu", h->filter, h->n_view, h->n_models);
	else
		snprintf(right, sizeof right, "/ filter");
	ui_box(u, list, title, right);
	int fixed = 0;
	for (int c = 1; c < N_COLS; c++)
		fixed += col_widths[c] + 2;
	h->name_w = list.w - 4 - fixed;
	if (h->name_w < 12)
		h->name_w = 12;
	h->header_y = list.y + 1;
	draw_row(h, u, h->header_y, list.x + 1, NULL, false, list.w - 2);
	h->list_y0 = list.y + 2;
	h->list_rows = list.h - 3;
	if (h->list_rows < 1)
		h->list_rows = 1;
	if (h->sel < h->top)
		h->top = h->sel;
	if (h->sel >= h->top + (size_t)h->list_rows)
		h->top = h->sel - (size_t)h->list_rows + 1;
	for (int i = 0; i < h->list_rows && h->top + (size_t)i < h->n_view; i++) {
		size_t vi = h->top + (size_t)i;
		draw_row(h, u, h->list_y0 + i, list.x + 1, &h->models[h->view[vi]], vi == h->sel,
			 list.w - 2);
	}
	if (!h->n_view)
		ui_put(u, h->list_y0, list.x + 3, list.w - 6, ROLE_DIM,
		       h->n_models ? "no model matches the filter (Esc clears it)"
				   : "the hub is empty: 'optstudio hub import FILE.gguf' adds a model",
		       false);
	if (summary_h)
		draw_summary(h, u, (ui_rect){r.y + r.h - summary_h, r.x, summary_h, r.w});
}

/* ---- keys and mouse ------------------------------------------------------------------------- */

static void move_sel(hub_screen *h, long d)
{
	if (!h->n_view)
		return;
	long s = (long)h->sel + d;
	if (s < 0)
		s = 0;
	if (s >= (long)h->n_view)
		s = (long)h->n_view - 1;
	h->sel = (size_t)s;
	h->sel_id = h->models[h->view[h->sel]].id;
}

static void on_filter(void *state, ui *u, const char *text, int event)
{
	hub_screen *h = state;
	snprintf(h->filter, sizeof h->filter, "%s", text);
	rebuild_view(h);
	h->top = 0;
}

static void open_card(hub_screen *h, ui *u)
{
	const store_model *m = selected(h);
	if (!m)
		return;
	h->card = true;
	h->card_id = m->id;
	card_build(h, u, m);
}

static void hub_action(void *state, ui *u, int action)
{
	hub_screen *h = state;
	long page = h->list_rows > 1 ? h->list_rows - 1 : 1;
	if (h->card) {
		switch (action) {
		case H_UP: h->card_scroll--; break;
		case H_DOWN: h->card_scroll++; break;
		case H_PGUP: h->card_scroll -= 10; break;
		case H_PGDN: h->card_scroll += 10; break;
		case H_HOME: h->card_scroll = 0; break;
		case H_END: h->card_scroll = (int)h->n_lines; break;
		case H_BACK: case H_OPEN: h->card = false; break;
		case H_OPTIMIZE:
			for (size_t i = 0; i < h->n_models; i++)
				if (h->models[i].id == h->card_id) {
					h->card = false;
					ui_goto(u, "Optimize", h->models[i].name);
					break;
				}
			break;
		default: break;
		}
		return;
	}
	switch (action) {
	case H_UP: move_sel(h, -1); break;
	case H_DOWN: move_sel(h, 1); break;
	case H_PGUP: move_sel(h, -page); break;
	case H_PGDN: move_sel(h, page); break;
	case H_HOME: move_sel(h, -(long)h->n_view); break;
	case H_END: move_sel(h, (long)h->n_view); break;
	case H_OPEN: open_card(h, u); break;
	case H_BACK:
		if (h->filter[0])
			on_filter(h, u, "", UI_PROMPT_CANCEL);
		break;
	case H_FILTER: ui_prompt(u, "/", h->filter, on_filter, h); break;
	case H_SORT:
		h->sort_col = (h->sort_col + 1) % N_COLS;
		rebuild_view(h);
		ui_status(u, false, "sorted by %s", col_names[h->sort_col]);
		break;
	case H_REVERSE: h->sort_desc = !h->sort_desc; rebuild_view(h); break;
	case H_OPTIMIZE:
		if (selected(h))
			ui_goto(u, "Optimize", selected(h)->name);
		break;
	default: break;
	}
}

static void hub_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	hub_screen *h = state;
	if (h->card)
		return;
	if (y == h->header_y) {
		int cx = r.x + 2;
		for (int c = 0; c < N_COLS; c++) {
			int cw = c == COL_NAME ? h->name_w : col_widths[c];
			if (x >= cx && x < cx + cw) {
				if (h->sort_col == c)
					h->sort_desc = !h->sort_desc;
				h->sort_col = c;
				rebuild_view(h);
			}
			cx += cw + 2;
		}
		return;
	}
	int i = y - h->list_y0;
	if (i >= 0 && i < h->list_rows && h->top + (size_t)i < h->n_view) {
		h->sel = h->top + (size_t)i;
		h->sel_id = h->models[h->view[h->sel]].id;
		if (dbl)
			open_card(h, u);
	}
}

static bool hub_disabled(void *state, int action, char *why, size_t len)
{
	hub_screen *h = state;
	if (action == H_OPTIMIZE && !h->card && !h->n_view) {
		snprintf(why, len, "no model selected");
		return true;
	}
	if (action == H_OPEN && !h->card && !h->n_view) {
		snprintf(why, len, "no model selected");
		return true;
	}
	if ((action == H_FILTER || action == H_SORT || action == H_REVERSE) && h->card) {
		snprintf(why, len, "close the card first (Esc)");
		return true;
	}
	return false;
}

static void hub_destroy(void *state)
{
	hub_screen *h = state;
	if (!h)
		return;
	store_model_list_free(h->models, h->n_models);
	free(h->view);
	free(h->lines);
	free(h);
}

int screen_hub_new(ui_screen *out, os_error *err)
{
	hub_screen *h = calloc(1, sizeof *h);
	if (!h)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	*out = (ui_screen){
		.title = "Hub",
		.keys = hub_keys,
		.n_keys = sizeof hub_keys / sizeof hub_keys[0],
		.state = h,
		.draw = hub_draw,
		.on_action = hub_action,
		.on_refresh = hub_refresh,
		.on_click = hub_click,
		.disabled = hub_disabled,
		.destroy = hub_destroy,
	};
	return OS_OK;
}
