/* theme.h: the studio's colours by semantic role, loaded from themes/<name>.json (cJSON), with
 * 256-colour, 8-colour and monochrome (NO_COLOR, no colour terminal) renderings. */
#ifndef OPTSTUDIO_THEME_H
#define OPTSTUDIO_THEME_H

#include <stdbool.h>
#include <stddef.h>

#include <curses.h>

#include "core/errors.h"

/* What a piece of text means; screens ask for a role, never for a colour. */
typedef enum theme_role {
	ROLE_BACKGROUND = 0, /* the screen's base: its bg is every role's default bg */
	ROLE_TEXT,
	ROLE_DIM,        /* secondary text, hints, "—" */
	ROLE_ACCENT,     /* names, keys in the footer, the active tab */
	ROLE_SELECTION,  /* the selected row */
	ROLE_GOOD,       /* completed, better */
	ROLE_BAD,        /* failed, worse, errors */
	ROLE_WARN,       /* stopped, stopping, warnings */
	ROLE_RUNNING,    /* running jobs */
	ROLE_BORDER,     /* boxes and rules */
	ROLE_HEADER,     /* table headers */
	ROLE_TAB_ACTIVE, /* the active tab */
	ROLE_COUNT
} theme_role;

/* How colours are rendered on this terminal. */
typedef enum theme_mode { THEME_MODE_MONO = 0, THEME_MODE_8 = 1, THEME_MODE_256 = 2 } theme_mode;

/* A parsed theme. Invariant: every role has a foreground, a background (possibly "terminal
 * default", -1) as 24-bit RGB, and curses attributes. */
typedef struct theme theme;

/* The JSON names of the roles ("background", "text", ...), indexed by theme_role. */
const char *theme_role_name(theme_role r);

/* Parses a theme from JSON text. source names it in messages (a path or "embedded dark").
 * Format: {"name": "dark", "roles": {"text": {"fg": "#c0caf5", "bg": "#1a1b26",
 * "attrs": ["bold"]}, ...}}; colours are "#rrggbb", 0..255 (xterm index) or "default";
 * a missing role falls back to text (and background to the terminal's colours); unknown roles
 * and attributes are OS_EFORMAT naming the field. *out is freed with theme_free. */
int theme_parse(theme **out, const char *json, const char *source, os_error *err);

/* Loads theme `name`: the first <dir>/<name>.json among dirs[0..n_dirs), else the copy
 * embedded in the binary (dark, light, high-contrast, mono), else OS_ENOTFOUND listing
 * the built-in names. A file that exists but is malformed is an error (not skipped). */
int theme_load(theme **out, const char *name, const char *const *dirs, size_t n_dirs,
	       os_error *err);

/* Frees t. NULL is fine. */
void theme_free(theme *t);

/* The theme's name (borrowed, valid until theme_free). */
const char *theme_name(const theme *t);

/* The names of the built-in themes, NULL-terminated (static). */
const char *const *theme_builtin_names(void);

/* The rendering this terminal supports: MONO when NO_COLOR is set (non-empty), when force_mono,
 * or when the terminal has no colours; 256 when it has at least 256; else 8. Needs initscr. */
theme_mode theme_detect_mode(bool force_mono);

/* Sets up curses colour pairs for every role under mode (start_color, default colours).
 * Needs initscr. A theme named "mono" renders as MONO in every mode. */
void theme_apply(theme *t, theme_mode mode);

/* The curses attributes (colour pair included) that draw role r after theme_apply. */
attr_t theme_attr(const theme *t, theme_role r);

#endif
