/* studio.c: assembles the studio: opens the hub, finds and loads the theme, adds the screens
 * to the frame (tabs in this order; Optimize, Results, Compare, Deploy and Settings join
 * here as they are built) and runs it. */
#include <getopt.h>
#include <libgen.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hub_ops.h"
#include "studio.h"

static const char studio_help[] =
	"usage: optstudio studio [--theme NAME]\n"
	"\n"
	"Opens the studio, the terminal interface (also what 'optstudio' with no command does on\n"
	"a terminal). Press ? inside for every key.\n"
	"      --theme NAME   dark (default), light, high-contrast, mono, or a themes/NAME.json\n"
	"                     in the data home; else the 'theme' setting or $OPTSTUDIO_THEME.\n"
	"NO_COLOR=1 renders without colour. Needs a terminal of at least 80x24.\n";

/* Theme folders, first match wins: the data home's themes/, the install tree's
 * share/optstudio/themes next to the binary, and the source tree's themes/ when run from a
 * build folder. dirs receives up to 4 malloc'd paths (free them). */
size_t studio_theme_dirs(const char *home, char **dirs)
{
	size_t n = 0;
	char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	char buf[4200];
	if (home) {
		snprintf(buf, sizeof buf, "%s/themes", home);
		dirs[n] = strdup(buf);
		n += dirs[n] != NULL;
	}
	if (len > 0) {
		exe[len] = '\0';
		const char *d = dirname(exe);
		static const char *const rel[] = {"../share/optstudio/themes", "themes", "../themes"};
		for (size_t i = 0; i < 3; i++) {
			snprintf(buf, sizeof buf, "%s/%s", d, rel[i]);
			dirs[n] = strdup(buf);
			n += dirs[n] != NULL;
		}
	}
	return n;
}

int studio_run(const char *theme_name)
{
	setlocale(LC_ALL, "");
	os_error err = {0};
	store *s = NULL;
	theme *t = NULL;
	ui *u = NULL;
	char *setting = NULL;
	char *dirs[4] = {0};
	int code = EXIT_FAIL;
	if (hub_open(&s, &err) != OS_OK) {
		code = cli_fail(&err, "cannot open the hub");
		goto done;
	}
	if (!theme_name && store_setting_get(s, "theme", &setting, NULL) == OS_OK)
		theme_name = setting;
	if (!theme_name && getenv("OPTSTUDIO_THEME") && getenv("OPTSTUDIO_THEME")[0])
		theme_name = getenv("OPTSTUDIO_THEME");
	if (!theme_name)
		theme_name = "dark";
	size_t nd = studio_theme_dirs(store_home(s), dirs);
	if (theme_load(&t, theme_name, (const char *const *)dirs, nd, &err) != OS_OK) {
		code = cli_fail(&err, "cannot load theme '%s'", theme_name);
		goto done;
	}
	if (!(u = ui_new(s, t))) {
		cli_error("out of memory");
		goto done;
	}
	ui_screen sc;
	if (screen_hub_new(&sc, &err) != OS_OK || !ui_add_screen(u, &sc)) {
		code = cli_fail(&err, "cannot start the studio");
		goto done;
	}
	if (screen_optimize_new(&sc, &err) != OS_OK || !ui_add_screen(u, &sc)) {
		code = cli_fail(&err, "cannot start the studio");
		goto done;
	}
	if (screen_jobs_new(&sc, &err) != OS_OK || !ui_add_screen(u, &sc)) {
		code = cli_fail(&err, "cannot start the studio");
		goto done;
	}
	if (screen_results_new(&sc, &err) != OS_OK || !ui_add_screen(u, &sc)) {
		code = cli_fail(&err, "cannot start the studio");
		goto done;
	}
	if (screen_compare_new(&sc, &err) != OS_OK || !ui_add_screen(u, &sc)) {
		code = cli_fail(&err, "cannot start the studio");
		goto done;
	}
	/* Settings stays the last tab (9) */
	if (screen_settings_new(&sc, &err) != OS_OK || !ui_add_screen(u, &sc)) {
		code = cli_fail(&err, "cannot start the studio");
		goto done;
	}
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		cli_error("the studio needs a terminal; the commands ('optstudio --help') work "
			  "without one");
		code = EXIT_USAGE;
		goto done;
	}
	code = ui_run(u) ? EXIT_FAIL : EXIT_OK;
done:
	ui_free(u);
	theme_free(t);
	free(setting);
	for (size_t i = 0; i < 4; i++)
		free(dirs[i]);
	store_close(s);
	return code;
}

int cmd_studio(int argc, char **argv)
{
	static const struct option opts[] = {
		{"theme", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *theme_name = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			theme_name = optarg;
			break;
		case 'h':
			fputs(studio_help, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("studio", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("studio", "unexpected argument '%s'", argv[optind]);
	return studio_run(theme_name);
}
