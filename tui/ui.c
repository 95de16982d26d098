/* ui.c: the studio's frame and main loop: tabs, footer and help from key tables, prompts,
 * confirmations, status line, the store poll (PRAGMA data_version) between getch timeouts,
 * KEY_RESIZE and Ctrl-L in one place, and the curses drawing helpers. */
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "ui.h"

#define UI_MAX_SCREENS 9
#define UI_MAX_FOOT 32
#define UI_TICK_MS 150          /* getch timeout: the loop's heartbeat */
#define UI_REAP_EVERY_S 2.0     /* dead workers commit nothing: look for them this often */
#define UI_STATUS_S 6.0         /* a status message lasts this long (or to the next key) */
#define KEY_CTRL_L 12
#define KEY_ESC 27

enum { G_HELP = 1, G_QUIT, G_NEXT, G_PREV, G_REDRAW, G_TAB };

static const ui_key global_keys[] = {
	{'?', "?", "help", "this help: type to search it, Esc closes", G_HELP},
	{'q', "q", "quit", "quit the studio (jobs keep running in the background)", G_QUIT},
	{'1', "1…9", NULL, "go to that tab (or click the tab)", G_TAB},
	{'\t', "Tab", NULL, "next screen", G_NEXT},
	{KEY_BTAB, "S-Tab", NULL, "previous screen", G_PREV},
	{KEY_CTRL_L, "^L", NULL, "redraw the whole terminal (e.g. after reattaching tmux)", G_REDRAW},
};
#define N_GLOBAL_KEYS (sizeof global_keys / sizeof global_keys[0])

struct ui {
	store *s;
	theme *t;
	ui_screen screens[UI_MAX_SCREENS];
	size_t n_screens, active;
	bool dirty, quit;
	char exe[4096];
	/* status line */
	char status[512];
	bool status_error;
	double status_until;
	/* prompt */
	bool prompt_on;
	unsigned prompt_flags;
	char prompt_label[32], prompt_text[256];
	ui_prompt_fn prompt_fn;
	void *prompt_state;
	/* confirmation */
	bool confirm_on;
	char confirm_q[256];
	ui_confirm_fn confirm_fn;
	void *confirm_state;
	int64_t confirm_arg;
	/* help overlay */
	bool help_on;
	char help_q[64];
	int help_scroll;
	/* hit boxes of the last draw: tabs and footer keys */
	int tab_x0[UI_MAX_SCREENS], tab_x1[UI_MAX_SCREENS];
	int foot_x0[UI_MAX_FOOT], foot_x1[UI_MAX_FOOT], foot_key[UI_MAX_FOOT];
	size_t n_foot;
	/* store poll */
	int64_t data_version;
	double last_reap;
	size_t n_running, n_queued;
};

/* The one piece of process-wide state: a signal handler can only set a flag. */
static volatile sig_atomic_t ui_signalled;

static void on_signal(int sig)
{
	ui_signalled = sig;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

ui *ui_new(store *s, theme *t)
{
	ui *u = calloc(1, sizeof *u);
	if (!u)
		return NULL;
	u->s = s;
	u->t = t;
	u->dirty = true;
	u->data_version = -1;
	ssize_t n = readlink("/proc/self/exe", u->exe, sizeof u->exe - 1);
	if (n <= 0)
		snprintf(u->exe, sizeof u->exe, "optstudio");
	else
		u->exe[n] = '\0';
	return u;
}

bool ui_add_screen(ui *u, const ui_screen *sc)
{
	if (u->n_screens >= UI_MAX_SCREENS)
		return false;
	int previous = u->n_screens ? u->screens[u->n_screens - 1].number : 0;
	int number = sc->number ? sc->number : previous + 1;
	if (number <= previous || number > 9)
		return false;
	u->screens[u->n_screens] = *sc;
	u->screens[u->n_screens++].number = number;
	return true;
}

void ui_free(ui *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n_screens; i++)
		if (u->screens[i].destroy)
			u->screens[i].destroy(u->screens[i].state);
	free(u);
}

store *ui_store(ui *u)
{
	return u->s;
}

const char *ui_exe(ui *u)
{
	return u->exe;
}

theme *ui_theme(ui *u)
{
	return u->t;
}

void ui_set_theme(ui *u, theme *t)
{
	u->t = t;
	theme_apply(u->t, theme_detect_mode(false));
	u->dirty = true;
}

attr_t ui_attr(ui *u, theme_role r)
{
	return theme_attr(u->t, r);
}

void ui_dirty(ui *u)
{
	u->dirty = true;
}

void ui_status(ui *u, bool error, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->status, sizeof u->status, fmt, ap);
	va_end(ap);
	u->status_error = error;
	u->status_until = now_s() + UI_STATUS_S;
	u->dirty = true;
}

void ui_prompt(ui *u, const char *label, const char *initial, ui_prompt_fn fn, void *state)
{
	ui_prompt_ex(u, label, initial, UI_PROMPT_FILTER, fn, state);
}

void ui_prompt_ex(ui *u, const char *label, const char *initial, unsigned flags, ui_prompt_fn fn,
		  void *state)
{
	u->prompt_on = true;
	u->prompt_flags = flags;
	snprintf(u->prompt_label, sizeof u->prompt_label, "%s", label);
	snprintf(u->prompt_text, sizeof u->prompt_text, "%s", initial ? initial : "");
	u->prompt_fn = fn;
	u->prompt_state = state;
	u->dirty = true;
}

void ui_confirm(ui *u, const char *question, ui_confirm_fn fn, void *state, int64_t arg)
{
	u->confirm_on = true;
	snprintf(u->confirm_q, sizeof u->confirm_q, "%s", question);
	u->confirm_fn = fn;
	u->confirm_state = state;
	u->confirm_arg = arg;
	u->dirty = true;
}

/* ---- text ------------------------------------------------------------------------------ */

/* the next character of s: its byte length and display width (>= 0) */
static size_t next_char(const char *s, int *width)
{
	mbstate_t st;
	memset(&st, 0, sizeof st);
	wchar_t wc;
	size_t n = mbrtowc(&wc, s, MB_CUR_MAX, &st);
	if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
		*width = 1;
		return 1;
	}
	int w = wcwidth(wc);
	*width = w < 0 ? 1 : w;
	return n;
}

int ui_width(const char *s)
{
	int w = 0, cw;
	while (*s) {
		s += next_char(s, &cw);
		w += cw;
	}
	return w;
}

int ui_put(ui *u, int y, int x, int w, theme_role r, const char *s, bool pad)
{
	if (w <= 0 || y < 0 || y >= LINES || x >= COLS)
		return 0;
	if (x + w > COLS)
		w = COLS - x;
	attr_t a = ui_attr(u, r);
	attron(a);
	int total = ui_width(s), used = 0, cw;
	int limit = total <= w ? w : w - 1; /* room for "…" when cut */
	const char *p = s;
	while (*p) {
		size_t n = next_char(p, &cw);
		if (used + cw > limit)
			break;
		if ((unsigned char)*p < 0x20)
			mvaddch(y, x + used, ' ');
		else
			mvaddnstr(y, x + used, p, (int)n);
		used += cw;
		p += n;
	}
	if (total > w && used < w) {
		mvaddstr(y, x + used, "…");
		used++;
	}
	if (pad)
		for (; used < w; used++)
			mvaddch(y, x + used, ' ');
	attroff(a);
	return used;
}

void ui_put_right(ui *u, int y, int x, int w, theme_role r, const char *s)
{
	int sw = ui_width(s);
	if (sw >= w)
		ui_put(u, y, x, w, r, s, false);
	else
		ui_put(u, y, x + w - sw, sw, r, s, false);
}

void ui_fill(ui *u, int y, int x, int w, theme_role r)
{
	ui_put(u, y, x, w, r, "", true);
}

void ui_box(ui *u, ui_rect b, const char *title, const char *right)
{
	if (b.h < 2 || b.w < 4)
		return;
	attr_t a = ui_attr(u, ROLE_BORDER);
	attron(a);
	mvaddstr(b.y, b.x, "╭");
	mvaddstr(b.y, b.x + b.w - 1, "╮");
	mvaddstr(b.y + b.h - 1, b.x, "╰");
	mvaddstr(b.y + b.h - 1, b.x + b.w - 1, "╯");
	for (int i = 1; i < b.w - 1; i++) {
		mvaddstr(b.y, b.x + i, "─");
		mvaddstr(b.y + b.h - 1, b.x + i, "─");
	}
	for (int j = 1; j < b.h - 1; j++) {
		mvaddstr(b.y + j, b.x, "│");
		mvaddstr(b.y + j, b.x + b.w - 1, "│");
	}
	attroff(a);
	int tw = 0;
	if (title && *title) {
		char t[256];
		snprintf(t, sizeof t, " %s ", title);
		tw = ui_put(u, b.y, b.x + 2, b.w - 4, ROLE_ACCENT, t, false);
	}
	if (right && *right) {
		char t[256];
		snprintf(t, sizeof t, " %s ", right);
		int rw = ui_width(t);
		if (rw < b.w - 6 - tw)
			ui_put(u, b.y, b.x + b.w - 2 - rw, rw, ROLE_DIM, t, false);
	}
}

void ui_bar(ui *u, int y, int x, int w, double f, theme_role r)
{
	static const char *const eighths[8] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
	if (w <= 0)
		return;
	if (!(f >= 0))
		f = 0;
	if (f > 1)
		f = 1;
	int cells8 = (int)(f * w * 8 + 0.5), full = cells8 / 8, part = cells8 % 8;
	attr_t a = ui_attr(u, r);
	attron(a);
	int i = 0;
	for (; i < full; i++)
		mvaddstr(y, x + i, "█");
	if (part && i < w) {
		mvaddstr(y, x + i, eighths[part]);
		i++;
	}
	attroff(a);
	attr_t d = ui_attr(u, ROLE_DIM);
	attron(d);
	for (; i < w; i++)
		mvaddstr(y, x + i, "░");
	attroff(d);
}

bool ui_match(const char *hay, const char *needle)
{
	if (!needle || !*needle)
		return true;
	if (!hay)
		return false;
	size_t n = strlen(needle);
	for (const char *p = hay; *p; p++) {
		size_t i = 0;
		while (i < n && p[i]) {
			char a = p[i], b = needle[i];
			if (a >= 'A' && a <= 'Z')
				a += 'a' - 'A';
			if (b >= 'A' && b <= 'Z')
				b += 'a' - 'A';
			if (a != b)
				break;
			i++;
		}
		if (i == n)
			return true;
	}
	return false;
}

/* ---- the store poll -------------------------------------------------------------------- */

static void count_jobs(ui *u)
{
	store_job *v = NULL;
	size_t n = 0;
	u->n_running = u->n_queued = 0;
	if (store_job_list(u->s, &v, &n, NULL) != OS_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(v[i].state, "running") || !strcmp(v[i].state, "stopping"))
			u->n_running++;
		else if (!strcmp(v[i].state, "queued"))
			u->n_queued++;
	}
	store_job_list_free(v, n);
}

static void refresh_all(ui *u)
{
	count_jobs(u);
	for (size_t i = 0; i < u->n_screens; i++)
		if (u->screens[i].on_refresh)
			u->screens[i].on_refresh(u->screens[i].state, u);
	u->dirty = true;
}

void ui_store_changed(ui *u)
{
	refresh_all(u);
}

/* Cheap: one PRAGMA per turn; the lists are read again only when another connection
 * committed, or when a dead worker's job was just marked failed. */
static void poll_store(ui *u)
{
	os_error err = {0};
	int64_t v = 0;
	bool changed = false;
	if (store_data_version(u->s, &v, &err) == OS_OK && v != u->data_version) {
		u->data_version = v;
		changed = true;
	}
	double t = now_s();
	if (t - u->last_reap >= UI_REAP_EVERY_S) {
		u->last_reap = t;
		size_t n = 0;
		if (store_jobs_reap_dead(u->s, &n, &err) == OS_OK && n)
			changed = true;
	}
	if (changed)
		refresh_all(u);
}

/* ---- drawing ---------------------------------------------------------------------------- */

static bool too_small(void)
{
	return COLS < UI_MIN_COLS || LINES < UI_MIN_LINES;
}

static void draw_too_small(ui *u)
{
	char a[96], b[96];
	snprintf(a, sizeof a, "Terminal too small: %d×%d", COLS, LINES);
	snprintf(b, sizeof b, "the studio needs at least %d×%d · q quits", UI_MIN_COLS, UI_MIN_LINES);
	int y = LINES / 2 - 1;
	ui_put(u, y, (COLS - ui_width(a)) / 2 > 0 ? (COLS - ui_width(a)) / 2 : 0, COLS, ROLE_WARN, a, false);
	ui_put(u, y + 1, (COLS - ui_width(b)) / 2 > 0 ? (COLS - ui_width(b)) / 2 : 0, COLS, ROLE_DIM, b, false);
}

/* The tab bar. The tabs always show; when the terminal is too narrow for everything, the
 * job indicator is kept (shortened if need be) before the brand, and the idle text goes first. */
static void draw_tabs(ui *u)
{
	static const char brand[] = " optstudio ";
	char t[UI_MAX_SCREENS][64];
	int tabs_w = 0;
	for (size_t i = 0; i < u->n_screens; i++) {
		snprintf(t[i], sizeof t[i], " %d %s ", u->screens[i].number, u->screens[i].title);
		tabs_w += ui_width(t[i]) + 1;
	}
	char r[96] = "", r_short[32] = "";
	if (u->n_running || u->n_queued) {
		snprintf(r, sizeof r, "● %zu job%s running ", u->n_running, u->n_running == 1 ? "" : "s");
		snprintf(r_short, sizeof r_short, "● %zu ", u->n_running);
		if (u->n_queued) {
			size_t l = strlen(r);
			snprintf(r + l, sizeof r - l, "· %zu queued ", u->n_queued);
			l = strlen(r_short);
			snprintf(r_short + l, sizeof r_short - l, "+%zu queued ", u->n_queued);
		}
	}
	bool busy = r[0] != '\0';
	int brand_w = ui_width(brand) + 1;
	const char *right = r;
	bool show_brand = true;
	if (!busy) {
		snprintf(r, sizeof r, "no jobs running ");
		if (brand_w + tabs_w + ui_width(r) >= COLS)
			right = "";
	} else if (brand_w + tabs_w + ui_width(r) >= COLS) {
		show_brand = false;
		if (tabs_w + ui_width(r) >= COLS)
			right = r_short;
	}
	ui_fill(u, 0, 0, COLS, ROLE_BACKGROUND);
	int x = show_brand ? ui_put(u, 0, 0, COLS, ROLE_ACCENT, brand, false) + 1 : 0;
	for (size_t i = 0; i < u->n_screens; i++) {
		u->tab_x0[i] = x;
		x += ui_put(u, 0, x, COLS - x > 0 ? COLS - x : 0, i == u->active ? ROLE_TAB_ACTIVE : ROLE_TEXT,
			    t[i], false);
		u->tab_x1[i] = x;
		x++;
	}
	int rw = ui_width(right);
	if (rw && x + rw < COLS)
		ui_put(u, 0, COLS - rw, rw, u->n_running ? ROLE_RUNNING : ROLE_DIM, right, false);
}

static bool key_disabled(ui *u, const ui_key *k, char *why, size_t len)
{
	ui_screen *sc = &u->screens[u->active];
	why[0] = '\0';
	return sc->disabled && sc->disabled(sc->state, k->action, why, len);
}

static void draw_footer(ui *u)
{
	int y = LINES - 1, x = 1;
	ui_fill(u, y, 0, COLS, ROLE_BACKGROUND);
	u->n_foot = 0;
	ui_screen *sc = &u->screens[u->active];
	for (int pass = 0; pass < 2; pass++) {
		const ui_key *keys = pass ? global_keys : sc->keys;
		size_t n = pass ? N_GLOBAL_KEYS : sc->n_keys;
		for (size_t i = 0; i < n; i++) {
			const ui_key *k = &keys[i];
			if (!k->label)
				continue;
			char why[8];
			bool off = !pass && key_disabled(u, k, why, sizeof why);
			int need = ui_width(k->shown) + 1 + ui_width(k->label) + 2;
			if (x + need > COLS)
				return;
			int x0 = x;
			x += ui_put(u, y, x, COLS - x, off ? ROLE_DIM : ROLE_ACCENT, k->shown, false) + 1;
			x += ui_put(u, y, x, COLS - x, ROLE_DIM, k->label, false) + 2;
			if (u->n_foot < UI_MAX_FOOT) {
				u->foot_x0[u->n_foot] = x0;
				u->foot_x1[u->n_foot] = x - 2;
				u->foot_key[u->n_foot] = k->key;
				u->n_foot++;
			}
		}
	}
}

static void draw_status(ui *u)
{
	int y = LINES - 2;
	ui_fill(u, y, 0, COLS, ROLE_BACKGROUND);
	if (u->prompt_on) {
		int x = ui_put(u, y, 1, COLS - 2, ROLE_ACCENT, u->prompt_label, false);
		x += 1 + ui_put(u, y, 1 + x, COLS - 2 - x, ROLE_TEXT, u->prompt_text, false);
		ui_put(u, y, 1 + x, 1, ROLE_SELECTION, " ", false);
		ui_put(u, y, x + 3, COLS - x - 4, ROLE_DIM, u->prompt_flags & UI_PROMPT_CANCELS
			? "  ⏎ ok · Esc cancel" : "  ⏎ keep · Esc clear", false);
		return;
	}
	if (u->status[0] && now_s() < u->status_until)
		ui_put(u, y, 1, COLS - 2, u->status_error ? ROLE_BAD : ROLE_TEXT, u->status, false);
}

/* One line of the help overlay: a section title (key NULL) or a binding. */
typedef struct help_line {
	const char *section;
	const ui_key *key;
} help_line;

static size_t help_lines(ui *u, help_line *out, size_t cap)
{
	size_t n = 0;
	for (size_t s = 0; s <= u->n_screens; s++) {
		const char *title = s == 0 ? "Everywhere" : u->screens[s - 1].title;
		const ui_key *keys = s == 0 ? global_keys : u->screens[s - 1].keys;
		size_t nk = s == 0 ? N_GLOBAL_KEYS : u->screens[s - 1].n_keys;
		bool any = false;
		for (size_t i = 0; i < nk; i++) {
			const ui_key *k = &keys[i];
			if (!ui_match(k->help, u->help_q) && !ui_match(k->shown, u->help_q) &&
			    !ui_match(k->label, u->help_q) && !ui_match(title, u->help_q))
				continue;
			if (!any && n < cap)
				out[n++] = (help_line){title, NULL};
			any = true;
			if (n < cap)
				out[n++] = (help_line){title, k};
		}
	}
	return n;
}

static void draw_help(ui *u)
{
	help_line lines[256];
	size_t n = help_lines(u, lines, sizeof lines / sizeof lines[0]);
	int w = COLS - 8 < 84 ? COLS - 8 : 84, h = LINES - 4;
	ui_rect b = {2, (COLS - w) / 2, h, w};
	for (int j = 0; j < h; j++)
		ui_fill(u, b.y + j, b.x, w, ROLE_BACKGROUND);
	ui_box(u, b, "Help: keys", "Esc close");
	char q[128];
	snprintf(q, sizeof q, "search: %s", u->help_q);
	ui_put(u, b.y + 1, b.x + 2, w - 4, u->help_q[0] ? ROLE_TEXT : ROLE_DIM,
	       u->help_q[0] ? q : "type to search · ↑↓ scroll", true);
	int rows = h - 4;
	if (u->help_scroll > (int)n - rows)
		u->help_scroll = (int)n - rows;
	if (u->help_scroll < 0)
		u->help_scroll = 0;
	for (int r = 0; r < rows && u->help_scroll + r < (int)n; r++) {
		const help_line *l = &lines[u->help_scroll + r];
		int y = b.y + 3 + r;
		if (!l->key) {
			ui_put(u, y, b.x + 2, w - 4, ROLE_HEADER, l->section, false);
			continue;
		}
		ui_put(u, y, b.x + 4, 8, ROLE_ACCENT, l->key->shown, false);
		ui_put(u, y, b.x + 13, w - 15, ROLE_TEXT, l->key->help, false);
	}
	if (!n)
		ui_put(u, b.y + 3, b.x + 4, w - 6, ROLE_DIM, "no key matches the search", false);
}

static void draw_confirm(ui *u)
{
	int w = ui_width(u->confirm_q) + 6;
	if (w < 40)
		w = 40;
	if (w > COLS - 4)
		w = COLS - 4;
	ui_rect b = {LINES / 2 - 2, (COLS - w) / 2, 4, w};
	for (int j = 0; j < b.h; j++)
		ui_fill(u, b.y + j, b.x, w, ROLE_BACKGROUND);
	ui_box(u, b, "Confirm", NULL);
	ui_put(u, b.y + 1, b.x + 2, w - 4, ROLE_WARN, u->confirm_q, false);
	ui_put(u, b.y + 2, b.x + 2, w - 4, ROLE_DIM, "y yes · any other key: no", false);
}

static void draw(ui *u)
{
	bkgdset(' ' | ui_attr(u, ROLE_BACKGROUND));
	erase();
	if (too_small()) {
		draw_too_small(u);
	} else {
		draw_tabs(u);
		ui_screen *sc = &u->screens[u->active];
		ui_rect r = {1, 0, LINES - 3, COLS};
		sc->draw(sc->state, u, r);
		draw_status(u);
		draw_footer(u);
		if (u->help_on)
			draw_help(u);
		if (u->confirm_on)
			draw_confirm(u);
	}
	refresh();
	u->dirty = false;
}

/* ---- input -------------------------------------------------------------------------------- */

static void switch_to(ui *u, size_t i)
{
	if (i >= u->n_screens || i == u->active)
		return;
	ui_screen *leaving = &u->screens[u->active];
	if (leaving->on_leave)
		leaving->on_leave(leaving->state, u);
	u->active = i;
	u->dirty = true;
}

bool ui_goto(ui *u, const char *title, const char *arg)
{
	for (size_t i = 0; i < u->n_screens; i++) {
		if (strcmp(u->screens[i].title, title) != 0)
			continue;
		switch_to(u, i);
		if (u->screens[i].on_enter)
			u->screens[i].on_enter(u->screens[i].state, u, arg);
		u->dirty = true;
		return true;
	}
	return false;
}

static void dispatch(ui *u, int ch);

static void handle_mouse(ui *u)
{
	MEVENT ev;
	if (getmouse(&ev) != OK)
		return;
	if (ev.bstate & BUTTON4_PRESSED) {
		dispatch(u, KEY_UP);
		return;
	}
#ifdef BUTTON5_PRESSED
	if (ev.bstate & BUTTON5_PRESSED) {
		dispatch(u, KEY_DOWN);
		return;
	}
#endif
	if (!(ev.bstate & (BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON1_DOUBLE_CLICKED)))
		return;
	if (too_small() || u->confirm_on || u->help_on || u->prompt_on)
		return;
	if (ev.y == 0) {
		for (size_t i = 0; i < u->n_screens; i++)
			if (ev.x >= u->tab_x0[i] && ev.x < u->tab_x1[i])
				switch_to(u, i);
		return;
	}
	if (ev.y == LINES - 1) {
		for (size_t i = 0; i < u->n_foot; i++)
			if (ev.x >= u->foot_x0[i] && ev.x < u->foot_x1[i])
				dispatch(u, u->foot_key[i]);
		return;
	}
	ui_screen *sc = &u->screens[u->active];
	ui_rect r = {1, 0, LINES - 3, COLS};
	if (sc->on_click && ev.y >= r.y && ev.y < r.y + r.h) {
		sc->on_click(sc->state, u, ev.y, ev.x, (ev.bstate & BUTTON1_DOUBLE_CLICKED) != 0, r);
		u->dirty = true;
	}
}

static void prompt_key(ui *u, int ch)
{
	size_t len = strlen(u->prompt_text);
	ui_prompt_fn fn = u->prompt_fn;
	void *st = u->prompt_state;
	if (ch == KEY_ESC) {
		u->prompt_on = false;
		fn(st, u, "", UI_PROMPT_CANCEL);
	} else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
		u->prompt_on = false;
		fn(st, u, u->prompt_text, UI_PROMPT_ACCEPT);
	} else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
		/* drop one UTF-8 character */
		while (len > 0 && ((unsigned char)u->prompt_text[len - 1] & 0xC0) == 0x80)
			len--;
		if (len > 0)
			len--;
		u->prompt_text[len] = '\0';
		fn(st, u, u->prompt_text, UI_PROMPT_EDIT);
	} else if (ch >= 0x20 && ch < 0x100 && ch != 127 && len + 1 < sizeof u->prompt_text) {
		u->prompt_text[len] = (char)ch;
		u->prompt_text[len + 1] = '\0';
		fn(st, u, u->prompt_text, UI_PROMPT_EDIT);
	}
	u->dirty = true;
}

static void help_key(ui *u, int ch)
{
	size_t len = strlen(u->help_q);
	if (ch == KEY_ESC || (ch == '?' && !len))
		u->help_on = false;
	else if (ch == KEY_UP)
		u->help_scroll--;
	else if (ch == KEY_DOWN)
		u->help_scroll++;
	else if (ch == KEY_PPAGE)
		u->help_scroll -= 10;
	else if (ch == KEY_NPAGE)
		u->help_scroll += 10;
	else if ((ch == KEY_BACKSPACE || ch == 127 || ch == 8) && len)
		u->help_q[len - 1] = '\0';
	else if (ch >= 0x20 && ch < 0x7f && len + 1 < sizeof u->help_q) {
		u->help_q[len] = (char)ch;
		u->help_q[len + 1] = '\0';
		u->help_scroll = 0;
	}
	u->dirty = true;
}

static void on_quit(void *state, ui *u, int64_t arg)
{
	(void)state;
	(void)arg;
	u->quit = true;
}

/* Quits, unless a screen holds unsaved work: then asks first. */
static void quit_or_ask(ui *u)
{
	for (size_t i = 0; i < u->n_screens; i++) {
		ui_screen *sc = &u->screens[i];
		char why[160] = "", q[256];
		if (sc->busy && sc->busy(sc->state, why, sizeof why)) {
			snprintf(q, sizeof q, "%s. Quit anyway?", why[0] ? why : "Unsaved work is lost");
			ui_confirm(u, q, on_quit, NULL, 0);
			return;
		}
	}
	u->quit = true;
}

static void run_global(ui *u, int action)
{
	switch (action) {
	case G_HELP:
		u->help_on = true;
		u->help_q[0] = '\0';
		u->help_scroll = 0;
		break;
	case G_QUIT:
		quit_or_ask(u);
		break;
	case G_NEXT:
		switch_to(u, (u->active + 1) % u->n_screens);
		break;
	case G_PREV:
		switch_to(u, (u->active + u->n_screens - 1) % u->n_screens);
		break;
	case G_REDRAW:
		clearok(curscr, TRUE);
		break;
	}
	u->dirty = true;
}

static void dispatch(ui *u, int ch)
{
	if (ch == KEY_RESIZE || ch == KEY_CTRL_L) {
		if (ch == KEY_CTRL_L)
			clearok(curscr, TRUE);
		u->dirty = true;
		return;
	}
	if (ch == KEY_MOUSE) {
		handle_mouse(u);
		return;
	}
	if (too_small()) {
		if (ch == 'q')
			u->quit = true;
		return;
	}
	if (u->confirm_on) {
		u->confirm_on = false;
		u->dirty = true;
		if (ch == 'y' || ch == 'Y')
			u->confirm_fn(u->confirm_state, u, u->confirm_arg);
		else
			ui_status(u, false, "cancelled");
		return;
	}
	if (u->prompt_on) {
		prompt_key(u, ch);
		return;
	}
	if (u->help_on) {
		help_key(u, ch);
		return;
	}
	if (u->status[0]) {
		u->status[0] = '\0';
		u->dirty = true;
	}
	if (ch >= '1' && ch <= '9') {
		for (size_t i = 0; i < u->n_screens; i++)
			if (u->screens[i].number == ch - '0')
				switch_to(u, i);
		return;
	}
	ui_screen *sc = &u->screens[u->active];
	for (size_t i = 0; i < sc->n_keys; i++) {
		const ui_key *k = &sc->keys[i];
		if (k->key != ch)
			continue;
		char why[256];
		if (key_disabled(u, k, why, sizeof why)) {
			ui_status(u, true, "%s: %s", k->label ? k->label : k->help, why);
			return;
		}
		sc->on_action(sc->state, u, k->action);
		u->dirty = true;
		return;
	}
	for (size_t i = 0; i < N_GLOBAL_KEYS; i++)
		if (global_keys[i].key == ch && global_keys[i].action != G_TAB) {
			run_global(u, global_keys[i].action);
			return;
		}
}

/* ---- the loop ------------------------------------------------------------------------------ */

int ui_run(ui *u)
{
	if (!u->n_screens)
		return 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	struct sigaction old_int, old_term, old_hup;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	ui_signalled = 0;

	if (!initscr()) {
		fprintf(stderr, "optstudio: cannot start the terminal interface (TERM=%s)\n",
			getenv("TERM") ? getenv("TERM") : "");
		return 1;
	}
	cbreak();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	curs_set(0);
	set_escdelay(25);
	timeout(UI_TICK_MS);
	mousemask(BUTTON1_CLICKED | BUTTON1_DOUBLE_CLICKED | BUTTON4_PRESSED
#ifdef BUTTON5_PRESSED
		  | BUTTON5_PRESSED
#endif
		  , NULL);
	theme_apply(u->t, theme_detect_mode(false));
	refresh_all(u);
	store_data_version(u->s, &u->data_version, NULL);

	while (!u->quit && !ui_signalled) {
		if (u->dirty)
			draw(u);
		int ch = getch();
		if (ch != ERR)
			dispatch(u, ch == '\r' ? '\n' : ch);
		poll_store(u);
		ui_screen *sc = &u->screens[u->active];
		if (!too_small() && sc->on_tick && sc->on_tick(sc->state, u))
			u->dirty = true;
		if (u->status[0] && now_s() >= u->status_until) {
			u->status[0] = '\0';
			u->dirty = true;
		}
	}
	endwin();
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	return 0;
}
