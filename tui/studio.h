/* studio.h: the studio (ncurses), `optstudio` with no command on a terminal or `optstudio
 * studio`: the screens and the entry point that assembles them into the ui frame. */
#ifndef OPTSTUDIO_STUDIO_H
#define OPTSTUDIO_STUDIO_H

#include "core/errors.h"
#include "ui.h"

/* Opens the user's hub, loads the theme (theme_name, else the "theme" setting, else
 * $OPTSTUDIO_THEME, else "dark"; NULL allowed), runs the studio until the user quits and
 * restores the terminal. Returns an exit code (errors printed after the terminal is back). */
int studio_run(const char *theme_name);

/* `optstudio studio [--theme NAME]`. */
int cmd_studio(int argc, char **argv);

/* The theme folders the studio loads from, first match wins (the data home's themes/ first):
 * fills dirs with up to STUDIO_THEME_DIRS malloc'd paths (free them) and returns how many. */
#define STUDIO_THEME_DIRS 4
size_t studio_theme_dirs(const char *home, char **dirs);

/* The screens: each fills *out (title, key table, callbacks, a fresh state owned by the
 * screen). OS_ENOMEM only. */
int screen_hub_new(ui_screen *out, os_error *err);
int screen_optimize_new(ui_screen *out, os_error *err);
int screen_jobs_new(ui_screen *out, os_error *err);
int screen_results_new(ui_screen *out, os_error *err);
int screen_compare_new(ui_screen *out, os_error *err);
int screen_settings_new(ui_screen *out, os_error *err);

#endif
