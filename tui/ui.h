/* ui.h: the studio's frame: tab bar, screens (state + draw + key table), a footer and a `?`
 * help overlay generated from the key tables, `/` prompts, confirmations, a status line,
 * resize and "too small" handling, and drawing helpers by semantic role. One UI thread. */
#ifndef OPTSTUDIO_UI_H
#define OPTSTUDIO_UI_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "theme.h"

/* The smallest terminal the studio draws in; below it a "too small" message is shown. */
#define UI_MIN_COLS 80
#define UI_MIN_LINES 24

typedef struct ui ui;

/* One key binding of a screen. The same table makes the footer (entries with a label, in
 * table order), the help overlay (every entry) and the dispatch. */
typedef struct ui_key {
	int key;               /* curses key code or character */
	const char *shown;     /* how the key is written: "⏎", "x", "↑↓" */
	const char *label;     /* short footer hint ("stop"); NULL: help only */
	const char *help;      /* one line for the help overlay */
	int action;            /* passed to the screen's on_action */
} ui_key;

/* A rectangle of the terminal, in cells. */
typedef struct ui_rect {
	int y, x, h, w;
} ui_rect;

/* A screen: its state and what the frame calls. Every callback but draw and on_action may
 * be NULL. The frame owns the struct; the screen owns state (freed by destroy). */
typedef struct ui_screen {
	const char *title;                 /* tab label: "Hub" */
	int number;                        /* tab key 1..9; 0: the next free number after the
					    * previous screen's (gaps keep room for screens to come) */
	const ui_key *keys;
	size_t n_keys;
	void *state;
	/* draws the content area r */
	void (*draw)(void *state, ui *u, ui_rect r);
	/* one of the screen's key table actions */
	void (*on_action)(void *state, ui *u, int action);
	/* the store changed (another process committed) or the screen is shown first */
	void (*on_refresh)(void *state, ui *u);
	/* every turn of the loop (~150 ms) while active; true when a redraw is needed */
	bool (*on_tick)(void *state, ui *u);
	/* a click in the content area r */
	void (*on_click)(void *state, ui *u, int y, int x, bool dbl, ui_rect r);
	/* why action is unavailable now (shown dimmed in the footer, said in the status line
	 * when pressed), or NULL when it is available; why is len bytes */
	bool (*disabled)(void *state, int action, char *why, size_t len);
	void (*destroy)(void *state);
	/* another screen sent the user here with ui_goto (arg may be NULL) */
	void (*on_enter)(void *state, ui *u, const char *arg);
	/* true when quitting now would lose the user's unsaved work (a half-finished wizard):
	 * `q` then asks first, quoting why (len bytes, a sentence without its full stop: "The
	 * Optimize setup for x is not launched") */
	bool (*busy)(void *state, char *why, size_t len);
	/* the user is leaving this screen for another tab: drop what only makes sense while it
	 * is in view (a theme preview) */
	void (*on_leave)(void *state, ui *u);
} ui_screen;

/* Creates the frame around an open store and a loaded theme (both borrowed; they must
 * outlive the ui). Does not touch the terminal yet. NULL when out of memory. */
ui *ui_new(store *s, theme *t);
/* Adds a screen (copied), in tab-bar order. false when full, or when its number is taken or
 * not above the previous screen's. */
bool ui_add_screen(ui *u, const ui_screen *sc);
/* Takes the terminal (initscr, colours, mouse), runs the loop until the user quits or a
 * signal asks to, restores the terminal. Returns 0, or 1 when the terminal could not be
 * set up (a message is then printed on stderr after endwin). */
int ui_run(ui *u);
/* Destroys every screen and frees u. NULL is fine. */
void ui_free(ui *u);

/* ---- for screens ----------------------------------------------------------------------- */

store *ui_store(ui *u);
/* Attributes for role r in the current theme. */
attr_t ui_attr(ui *u, theme_role r);
/* Re-reads every screen's data now: after the UI's own writes, which PRAGMA data_version
 * does not report to the connection that made them. */
void ui_store_changed(ui *u);
/* Asks for a redraw at the end of this turn. */
void ui_dirty(ui *u);
/* Shows a message in the status line (error: in the "bad" role) until a few seconds pass
 * or a key is pressed. */
void ui_status(ui *u, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The path of this program (for starting the worker), or "optstudio" when unknown. */
const char *ui_exe(ui *u);
/* Makes the screen titled title active and, when it has on_enter, hands it arg ("o" on a
 * Hub row opens the wizard on that model). false when no screen has that title. */
bool ui_goto(ui *u, const char *title, const char *arg);
/* Draws with theme t from now on (borrowed; it must outlive its use). Needs the terminal
 * (call from a screen callback). The caller keeps ownership of the previous theme. */
void ui_set_theme(ui *u, theme *t);
/* The theme in use. */
theme *ui_theme(ui *u);

/* A line prompt in the status line ("/" filters). fn is called with the text after every
 * edit (UI_PROMPT_EDIT), on Enter (UI_PROMPT_ACCEPT) and on Esc (UI_PROMPT_CANCEL, text
 * "" and the caller should drop what the prompt filtered). */
enum { UI_PROMPT_EDIT, UI_PROMPT_ACCEPT, UI_PROMPT_CANCEL };
typedef void (*ui_prompt_fn)(void *state, ui *u, const char *text, int event);
void ui_prompt(ui *u, const char *label, const char *initial, ui_prompt_fn fn, void *state);
/* ui_prompt's flags: UI_PROMPT_CANCELS for a value Esc abandons (a field, a file name): the
 * hint then says "Esc cancel" instead of the filters' "Esc clear". */
enum { UI_PROMPT_FILTER = 0, UI_PROMPT_CANCELS = 1u };
/* As ui_prompt, with flags. */
void ui_prompt_ex(ui *u, const char *label, const char *initial, unsigned flags, ui_prompt_fn fn,
		  void *state);

/* A yes/no question in a box; fn(state, u, arg) runs on 'y' only. */
typedef void (*ui_confirm_fn)(void *state, ui *u, int64_t arg);
void ui_confirm(ui *u, const char *question, ui_confirm_fn fn, void *state, int64_t arg);

/* ---- drawing helpers (display columns, UTF-8 aware) --------------------------------------- */

/* Display width of a UTF-8 string (invalid bytes count 1). */
int ui_width(const char *s);
/* Writes s at (y, x) in role r, at most w columns, cut with "…" when longer; pads with
 * spaces to w when pad. Returns the columns written. */
int ui_put(ui *u, int y, int x, int w, theme_role r, const char *s, bool pad);
/* As ui_put, right-aligned in w columns. */
void ui_put_right(ui *u, int y, int x, int w, theme_role r, const char *s);
/* Fills w cells at (y, x) with spaces in role r. */
void ui_fill(ui *u, int y, int x, int w, theme_role r);
/* A box with rounded corners around rect, title on the top border (may be NULL), right
 * text on the top border at the right (may be NULL). */
void ui_box(ui *u, ui_rect rect, const char *title, const char *right);
/* A progress bar of w cells, fraction 0..1, with eighth-block resolution. */
void ui_bar(ui *u, int y, int x, int w, double fraction, theme_role r);

/* True when needle occurs in hay, ignoring ASCII case; an empty needle matches. */
bool ui_match(const char *hay, const char *needle);

#endif
