/* screen_settings.c: the Settings screen (tab 9): the theme, previewed live on the whole studio
 * and saved as the "theme" setting; this machine's $/hour; the CPU kernels and CUDA status;
 * the data home with the disk its folders use and the free space on its filesystem. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/cpu/kernels.h"
#include "hub_ops.h"
#include "studio.h"
#ifdef OPTSTUDIO_CUDA
#include "gpu/gpu.h"
#endif

#define SETTING_THEME "theme"
#define USAGE_EVERY_S 10.0      /* the data home's disk use is measured again this often */
#define PRICE_LABEL "$/hour:"
#define DU_MAX_DEPTH 16

enum { S_UP = 1, S_DOWN, S_HOME, S_END, S_KEEP, S_REVERT, S_PRICE, S_RESCAN };

static const ui_key settings_keys[] = {
	{KEY_UP, "↑↓", "theme", "preview the previous / next theme on the whole studio (also k/j)", S_UP},
	{KEY_DOWN, "↓", NULL, "preview the next theme", S_DOWN},
	{'k', "k", NULL, "preview the previous theme", S_UP},
	{'j', "j", NULL, "preview the next theme", S_DOWN},
	{KEY_HOME, "Home", NULL, "preview the first theme", S_HOME},
	{KEY_END, "End", NULL, "preview the last theme", S_END},
	{'\n', "⏎", "keep", "keep the previewed theme and save it (the 'theme' setting)", S_KEEP},
	{27, "Esc", "revert", "drop the preview: back to the theme in use before it", S_REVERT},
	{'p', "p", "$/hour", "set this machine's price in $/hour (bench and compare price runs with it)", S_PRICE},
	{'r', "r", "rescan", "read the themes folder and the data home's disk use again", S_RESCAN},
};

/* One theme the user can pick. */
typedef struct theme_entry {
	char name[128];      /* what theme_load takes: a built-in name or a file's stem */
	bool builtin;        /* one of theme_builtin_names() */
	bool file;           /* <home>/themes/<name>.json exists (it wins over a built-in) */
	char error[512];     /* why it does not load; "" when it does */
} theme_entry;

/* Invariant on themes: the ui draws with preview when it is not NULL, else with kept. kept is
 * the studio's own theme (borrowed) until the user keeps one this screen loaded (owned, then
 * kept_owned); preview is always owned. */
typedef struct settings_screen {
	bool ready;              /* init ran (it needs the ui) */
	theme_entry *themes;     /* [n_themes]: built-ins, then the data home's files by name */
	size_t n_themes, sel, top;
	theme *kept, *preview;
	bool kept_owned;
	char kept_name[128];     /* the entry name of kept ("" when it matches no entry) */
	/* this machine */
	bool price_ok;
	double price;            /* $/hour; 0: not set */
	char price_why[256];     /* why it could not be read */
	bool editing;            /* the $/hour prompt is open */
	bool edit_ok;
	char edit_why[256];      /* what is wrong with the text typed so far */
	char cpu[256];           /* kernels · cores */
	char cuda[512];          /* built in or not, the devices; "" until the screen shows */
	/* the data home */
	char home[4096];
	bool usage_ok;
	int64_t used_models, used_artifacts, used_logs;      /* bytes on disk */
	int64_t fs_free, fs_total;                           /* bytes; -1 unknown */
	double usage_at;         /* monotonic seconds of the last measure; 0: never */
	/* geometry of the last draw, for clicks */
	int list_y0, list_rows, list_x1, price_y;
} settings_screen;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- themes ------------------------------------------------------------------------------ */

/* Loads theme name from the folders the studio itself loads from, so that what is previewed
 * here is what the next start shows. */
static int load_theme(ui *u, const char *name, theme **out, os_error *err)
{
	char *dirs[STUDIO_THEME_DIRS] = {0};
	size_t nd = studio_theme_dirs(store_home(ui_store(u)), dirs);
	int rc = theme_load(out, name, (const char *const *)dirs, nd, err);
	for (size_t i = 0; i < nd; i++)
		free(dirs[i]);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const theme_entry *)a)->name, ((const theme_entry *)b)->name);
}

static theme_entry *entry_add(theme_entry **v, size_t *n, size_t *cap)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		theme_entry *nv = realloc(*v, nc * sizeof *nv);
		if (!nv)
			return NULL;
		*v = nv;
		*cap = nc;
	}
	theme_entry *e = &(*v)[(*n)++];
	memset(e, 0, sizeof *e);
	return e;
}

static size_t find_entry(const settings_screen *ss, const char *name)
{
	for (size_t i = 0; i < ss->n_themes; i++)
		if (!strcmp(ss->themes[i].name, name))
			return i;
	return (size_t)-1;
}

/* Lists the built-in themes and <home>/themes/NAME.json, each loaded once to learn whether it
 * works (a broken file keeps its parse error). Keeps the selection on the same name. */
static void scan_themes(settings_screen *ss, ui *u)
{
	char keep_sel[128] = "";
	if (ss->n_themes)
		snprintf(keep_sel, sizeof keep_sel, "%s", ss->themes[ss->sel].name);
	theme_entry *v = NULL;
	size_t n = 0, cap = 0, n_builtin = 0;
	for (const char *const *b = theme_builtin_names(); *b; b++) {
		theme_entry *e = entry_add(&v, &n, &cap);
		if (!e)
			goto oom;
		snprintf(e->name, sizeof e->name, "%s", *b);
		e->builtin = true;
		n_builtin++;
	}
	char dir[4200];
	snprintf(dir, sizeof dir, "%s/themes", store_home(ui_store(u)));
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len <= 5 || len - 5 >= sizeof v->name ||
		    strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		char stem[128];
		snprintf(stem, sizeof stem, "%.*s", (int)(len - 5), de->d_name);
		theme_entry *e = NULL;
		for (size_t i = 0; i < n_builtin; i++)
			if (!strcmp(v[i].name, stem))
				e = &v[i];
		if (!e && !(e = entry_add(&v, &n, &cap))) {
			closedir(d);
			goto oom;
		}
		snprintf(e->name, sizeof e->name, "%s", stem);
		e->file = true;
	}
	if (d)
		closedir(d);
	if (n > n_builtin)
		qsort(v + n_builtin, n - n_builtin, sizeof *v, cmp_entry);
	for (size_t i = 0; i < n; i++) {
		theme *t = NULL;
		os_error err = {0};
		if (load_theme(u, v[i].name, &t, &err) != OS_OK)
			snprintf(v[i].error, sizeof v[i].error, "%s", os_error_text(&err));
		theme_free(t);
	}
	free(ss->themes);
	ss->themes = v;
	ss->n_themes = n;
	size_t s = find_entry(ss, keep_sel[0] ? keep_sel : ss->kept_name);
	ss->sel = s == (size_t)-1 ? 0 : s;
	return;
oom:
	free(v);
	ui_status(u, true, "out of memory listing the themes");
}

/* Shows the kept theme again; the preview is freed. */
static void drop_preview(settings_screen *ss, ui *u)
{
	if (!ss->preview)
		return;
	ui_set_theme(u, ss->kept);
	theme_free(ss->preview);
	ss->preview = NULL;
}

/* The selection moved: the whole studio takes the selected theme at once. A theme that does
 * not load (or the kept one) shows the kept theme. */
static void preview_selection(settings_screen *ss, ui *u)
{
	if (!ss->n_themes)
		return;
	theme_entry *e = &ss->themes[ss->sel];
	if (!strcmp(e->name, ss->kept_name) || e->error[0]) {
		drop_preview(ss, u);
		return;
	}
	theme *t = NULL;
	os_error err = {0};
	if (load_theme(u, e->name, &t, &err) != OS_OK) {
		/* the file changed since the scan */
		snprintf(e->error, sizeof e->error, "%s", os_error_text(&err));
		drop_preview(ss, u);
		return;
	}
	ui_set_theme(u, t);
	theme_free(ss->preview);
	ss->preview = t;
}

static void keep_selection(settings_screen *ss, ui *u)
{
	if (!ss->n_themes)
		return;
	theme_entry *e = &ss->themes[ss->sel];
	if (e->error[0]) {
		ui_status(u, true, "theme '%s' cannot be used: %s", e->name, e->error);
		return;
	}
	os_error err = {0};
	if (store_setting_set(ui_store(u), SETTING_THEME, e->name, &err) != OS_OK) {
		ui_status(u, true, "cannot save the theme: %s", os_error_text(&err));
		return;
	}
	if (ss->preview) {
		if (ss->kept_owned)
			theme_free(ss->kept);
		ss->kept = ss->preview;
		ss->kept_owned = true;
		ss->preview = NULL;
	}
	snprintf(ss->kept_name, sizeof ss->kept_name, "%s", e->name);
	ui_status(u, false, "theme '%s' saved: the studio starts with it from now on", e->name);
}

static void revert_preview(settings_screen *ss, ui *u)
{
	drop_preview(ss, u);
	size_t k = find_entry(ss, ss->kept_name);
	if (k != (size_t)-1)
		ss->sel = k;
	ui_status(u, false, "back to theme '%s'", theme_name(ss->kept));
}

/* ---- this machine and the data home ------------------------------------------------------ */

static void read_price(settings_screen *ss, ui *u)
{
	store_instance it;
	os_error err = {0};
	ss->price_ok = store_instance_get(ui_store(u), STORE_LOCAL_INSTANCE, &it, &err) == OS_OK;
	if (!ss->price_ok) {
		snprintf(ss->price_why, sizeof ss->price_why, "%s", os_error_text(&err));
		return;
	}
	ss->price = it.usd_per_hour;
	store_instance_clear(&it);
}

/* A price as typed: a finite number >= 0 ($/hour), a leading '$' allowed. false with why. */
static bool parse_price(const char *text, double *out, char *why, size_t len)
{
	while (*text == ' ')
		text++;
	if (*text == '$')
		text++;
	if (!*text) {
		snprintf(why, len, "type this machine's price in $/hour, e.g. 0.35");
		return false;
	}
	char *end = NULL;
	double v = strtod(text, &end);
	while (end && *end == ' ')
		end++;
	if (end == text || *end) {
		snprintf(why, len, "'%s' is not a number: type $/hour, e.g. 0.35", text);
		return false;
	}
	if (!isfinite(v)) {
		snprintf(why, len, "the price must be a finite number of $/hour");
		return false;
	}
	if (v < 0) {
		snprintf(why, len, "the price cannot be negative (0 means not set)");
		return false;
	}
	*out = v;
	return true;
}

static void on_price(void *state, ui *u, const char *text, int event)
{
	settings_screen *ss = state;
	double v = 0;
	os_error err = {0};
	switch (event) {
	case UI_PROMPT_EDIT:
		ss->edit_ok = parse_price(text, &v, ss->edit_why, sizeof ss->edit_why);
		break;
	case UI_PROMPT_CANCEL:
		ss->editing = false;
		ui_status(u, false, "price unchanged");
		break;
	case UI_PROMPT_ACCEPT:
		if (!parse_price(text, &v, ss->edit_why, sizeof ss->edit_why)) {
			/* stays open until the text is valid or Esc; text is the prompt's own
			 * buffer, which ui_prompt overwrites */
			char again[256];
			snprintf(again, sizeof again, "%s", text);
			ss->edit_ok = false;
			ui_prompt(u, PRICE_LABEL, again, on_price, ss);
			break;
		}
		ss->editing = false;
		if (store_instance_set_local_price(ui_store(u), v, &err) != OS_OK) {
			ui_status(u, true, "cannot save the price: %s", os_error_text(&err));
			break;
		}
		read_price(ss, u);
		ui_status(u, false, "this machine now costs $%g/hour (saved)", v);
		ui_store_changed(u);
		break;
	}
}

static void start_price_edit(settings_screen *ss, ui *u)
{
	char initial[64] = "";
	if (ss->price_ok && ss->price > 0)
		snprintf(initial, sizeof initial, "%g", ss->price);
	double v;
	ss->editing = true;
	ss->edit_ok = parse_price(initial, &v, ss->edit_why, sizeof ss->edit_why);
	ui_prompt(u, PRICE_LABEL, initial, on_price, ss);
}

/* Bytes of disk used by the files under path (allocated blocks, as du counts them); links
 * are not followed. */
static int64_t disk_used(const char *path, int depth)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int64_t sum = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char p[4096];
		int n = snprintf(p, sizeof p, "%s/%s", path, de->d_name);
		struct stat st;
		if (n < 0 || (size_t)n >= sizeof p || lstat(p, &st) != 0)
			continue;
		sum += (int64_t)st.st_blocks * 512;
		if (S_ISDIR(st.st_mode) && depth < DU_MAX_DEPTH)
			sum += disk_used(p, depth + 1);
	}
	closedir(d);
	return sum;
}

static void measure_home(settings_screen *ss)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/models", ss->home);
	ss->used_models = disk_used(p, 0);
	snprintf(p, sizeof p, "%s/artifacts", ss->home);
	ss->used_artifacts = disk_used(p, 0);
	snprintf(p, sizeof p, "%s/logs", ss->home);
	ss->used_logs = disk_used(p, 0);
	struct statvfs vfs;
	if (statvfs(ss->home, &vfs) == 0) {
		ss->fs_free = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
		ss->fs_total = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
	} else {
		ss->fs_free = ss->fs_total = -1;
	}
	ss->usage_ok = true;
	ss->usage_at = now_s();
}

static void describe_cpu(settings_screen *ss)
{
	const cpu_kernel_set *ks = NULL;
	os_error err = {0};
	char k[160];
	const char *forced = getenv("OPTSTUDIO_CPU");
	if (cpu_kernels_select(&ks, &err) == OS_OK)
		snprintf(k, sizeof k, "%s kernels (%s)", ks->name,
			 forced && *forced ? "forced by OPTSTUDIO_CPU" : "the fastest this CPU runs");
	else
		snprintf(k, sizeof k, "no CPU kernels: %s", os_error_text(&err));
	snprintf(ss->cpu, sizeof ss->cpu, "%s · %ld cores", k, sysconf(_SC_NPROCESSORS_ONLN));
}

/* The CUDA line as 'optstudio doctor' has it, asked only when the screen first shows: with a
 * device, the runtime's first call takes a moment. */
static void describe_cuda(settings_screen *ss)
{
	if (ss->cuda[0])
		return;
#ifdef OPTSTUDIO_CUDA
	os_error err = {0};
	int n = 0;
	gpu_device_props d;
	if (gpu_device_count(&n, &err) != OS_OK || n <= 0)
		snprintf(ss->cuda, sizeof ss->cuda, "built in · no device: %s",
			 n <= 0 && !err.msg[0] ? "the driver reports none" : os_error_text(&err));
	else if (gpu_device_info(0, &d, &err) == OS_OK)
		snprintf(ss->cuda, sizeof ss->cuda, "built in · %d device%s: %s, sm_%d%d%s", n,
			 n == 1 ? "" : "s", d.name, d.cc_major, d.cc_minor, n > 1 ? ", …" : "");
	else
		snprintf(ss->cuda, sizeof ss->cuda, "built in · %d device%s", n, n == 1 ? "" : "s");
#else
	snprintf(ss->cuda, sizeof ss->cuda, "not built in (built without nvcc, or CUDA=0): CPU only");
#endif
}

/* Everything that needs the ui, once: the theme in use, the lists, the price. */
static void ensure_ready(settings_screen *ss, ui *u)
{
	if (ss->ready)
		return;
	ss->ready = true;
	ss->kept = ui_theme(u);
	snprintf(ss->home, sizeof ss->home, "%s", store_home(ui_store(u)));
	ss->fs_free = ss->fs_total = -1;
	scan_themes(ss, u);
	/* the entry of the studio's theme: by file or built-in name, which theme_name gives for
	 * the built-ins and for files whose "name" matches their stem */
	size_t k = find_entry(ss, theme_name(ss->kept));
	if (k != (size_t)-1) {
		snprintf(ss->kept_name, sizeof ss->kept_name, "%s", ss->themes[k].name);
		ss->sel = k;
	}
	read_price(ss, u);
	describe_cpu(ss);
}

/* ---- drawing ----------------------------------------------------------------------------- */

static void draw_themes(settings_screen *ss, ui *u, ui_rect b)
{
	char right[160];
	snprintf(right, sizeof right, "%s", ss->preview ? "previewing · ⏎ keep · Esc revert" : "↑↓ preview");
	ui_box(u, b, "Theme", right);
	ss->list_y0 = b.y + 1;
	ss->list_rows = b.h - 2;
	ss->list_x1 = b.x + b.w;
	if (ss->sel < ss->top)
		ss->top = ss->sel;
	if (ss->list_rows > 0 && ss->sel >= ss->top + (size_t)ss->list_rows)
		ss->top = ss->sel - (size_t)ss->list_rows + 1;
	int w = b.w - 2, x = b.x + 1;
	for (int i = 0; i < ss->list_rows && ss->top + (size_t)i < ss->n_themes; i++) {
		size_t k = ss->top + (size_t)i;
		const theme_entry *e = &ss->themes[k];
		bool sel = k == ss->sel;
		int y = ss->list_y0 + i;
		theme_role base = sel ? ROLE_SELECTION : ROLE_TEXT;
		ui_fill(u, y, x, w, base);
		bool in_use = !strcmp(e->name, ss->kept_name);
		ui_put(u, y, x, 2, sel ? base : ROLE_GOOD, in_use ? " ✓" : "  ", false);
		int kind_w = 9, name_w = w - 3 - kind_w - 1;
		ui_put(u, y, x + 3, name_w, base, e->name, false);
		const char *kind = e->error[0] ? "✗ broken" : e->file ? "file" : "built in";
		ui_put(u, y, x + 3 + name_w + 1, kind_w, sel ? base : e->error[0] ? ROLE_BAD : ROLE_DIM,
		       kind, false);
	}
}

/* One sample: the role's name (dim) then text drawn in the role. Returns the x after it. */
static int sample(ui *u, int y, int x, int w, theme_role r, const char *text)
{
	char label[32];
	snprintf(label, sizeof label, "%s", theme_role_name(r));
	ui_put(u, y, x, 11, ROLE_DIM, label, false);
	return x + 11 + ui_put(u, y, x + 11, w - 11, r, text, false);
}

static void draw_preview(settings_screen *ss, ui *u, ui_rect b)
{
	const theme_entry *e = ss->n_themes ? &ss->themes[ss->sel] : NULL;
	char title[200];
	snprintf(title, sizeof title, "Preview: %s", e ? e->name : theme_name(ui_theme(u)));
	const char *nc = getenv("NO_COLOR");
	ui_box(u, b, title, nc && *nc ? "NO_COLOR: attributes only"
			    : !e || !e->file ? NULL
			    : e->builtin ? "data home file, replaces the built-in" : "from the data home");
	int x = b.x + 2, w = b.w - 4, y = b.y + 1, bottom = b.y + b.h - 1;
	if (e && e->error[0]) {
		/* the parse error, wrapped over the box */
		ui_put(u, y++, x, w, ROLE_BAD, "this theme does not load:", false);
		const char *p = e->error;
		while (*p && y < bottom) {
			int n = 0, used = 0;
			while (p[n] && used < w) {
				n++;
				while (((unsigned char)p[n] & 0xC0) == 0x80)
					n++;
				used++;
			}
			char line[600];
			snprintf(line, sizeof line, "%.*s", n, p);
			ui_put(u, y++, x, w, ROLE_TEXT, line, false);
			p += n;
		}
		if (y < bottom)
			ui_put(u, y, x, w, ROLE_DIM, "the studio keeps its theme; fix the file, r rescans", false);
		return;
	}
	int half = w / 2;
	struct { theme_role a; const char *ta; theme_role b; const char *tb; } rows[] = {
		{ROLE_TEXT, "plain", ROLE_DIM, "hints, —"},
		{ROLE_ACCENT, "names, ⏎", ROLE_HEADER, "HEADER"},
		{ROLE_GOOD, "✓ better", ROLE_BAD, "✗ worse"},
		{ROLE_WARN, "■ warning", ROLE_RUNNING, "● running"},
		{ROLE_SELECTION, " selected ", ROLE_TAB_ACTIVE, " 9 Tab "},
		{ROLE_BORDER, "╭─╮ ├─┤", ROLE_BACKGROUND, "base"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0] && y < bottom; i++, y++) {
		sample(u, y, x, half - 1, rows[i].a, rows[i].ta);
		sample(u, y, x + half, w - half, rows[i].b, rows[i].tb);
	}
	if (y < bottom) {
		ui_put(u, y, x, 11, ROLE_DIM, "bars", false);
		int bw = (w - 11 - 4) / 3;
		if (bw > 2) {
			ui_bar(u, y, x + 11, bw, 0.83, ROLE_GOOD);
			ui_bar(u, y, x + 11 + bw + 2, bw, 0.47, ROLE_RUNNING);
			ui_bar(u, y, x + 11 + 2 * (bw + 2), bw, 0.21, ROLE_BAD);
		}
	}
}

static void draw_machine(settings_screen *ss, ui *u, ui_rect b)
{
	ui_box(u, b, "This machine", NULL);
	int x = b.x + 2, w = b.w - 4, y = b.y + 1;
	char buf[600];
	ss->price_y = y;
	ui_put(u, y, x, 10, ROLE_DIM, "price", false);
	if (ss->editing) {
		if (ss->edit_ok)
			ui_put(u, y, x + 10, w - 10, ROLE_GOOD, "✓ ⏎ saves it", false);
		else {
			snprintf(buf, sizeof buf, "✗ %s", ss->edit_why);
			ui_put(u, y, x + 10, w - 10, ROLE_BAD, buf, false);
		}
	} else if (!ss->price_ok) {
		snprintf(buf, sizeof buf, "unknown: %s", ss->price_why);
		ui_put(u, y, x + 10, w - 10, ROLE_BAD, buf, false);
	} else if (ss->price > 0) {
		snprintf(buf, sizeof buf, "$%g/hour", ss->price);
		int n = ui_put(u, y, x + 10, w - 10, ROLE_ACCENT, buf, false);
		ui_put(u, y, x + 12 + n, w - 12 - n, ROLE_DIM,
		       "p edit · prices bench and compare runs on this machine", false);
	} else {
		int n = ui_put(u, y, x + 10, w - 10, ROLE_WARN, "not set", false);
		ui_put(u, y, x + 12 + n, w - 12 - n, ROLE_DIM,
		       "p sets it ($/hour) to price runs on this machine", false);
	}
	if (b.h > 3) {
		ui_put(u, y + 1, x, 10, ROLE_DIM, "CPU", false);
		ui_put(u, y + 1, x + 10, w - 10, ROLE_TEXT, ss->cpu, false);
	}
	if (b.h > 4) {
		ui_put(u, y + 2, x, 10, ROLE_DIM, "CUDA", false);
		ui_put(u, y + 2, x + 10, w - 10, ROLE_TEXT, ss->cuda, false);
	}
}

static void draw_home(settings_screen *ss, ui *u, ui_rect b)
{
	ui_box(u, b, "Data home", NULL);
	int x = b.x + 2, w = b.w - 4, y = b.y + 1, bottom = b.y + b.h - 1;
	char buf[600], m[32], a[32], l[32], f[32], t[32];
	ui_put(u, y, x, 10, ROLE_DIM, "path", false);
	ui_put(u, y++, x + 10, w - 10, ROLE_TEXT, ss->home, false);
	if (y < bottom) {
		ui_put(u, y, x, 10, ROLE_DIM, "disk", false);
		if (!ss->usage_ok) {
			ui_put(u, y, x + 10, w - 10, ROLE_DIM, "measuring…", false);
		} else {
			hub_format_bytes(ss->used_models, m, sizeof m);
			hub_format_bytes(ss->used_artifacts, a, sizeof a);
			hub_format_bytes(ss->used_logs, l, sizeof l);
			int n = snprintf(buf, sizeof buf, "models %s · artifacts %s · logs %s", m, a, l);
			if (ss->fs_free >= 0 && n > 0 && (size_t)n < sizeof buf) {
				hub_format_bytes(ss->fs_free, f, sizeof f);
				hub_format_bytes(ss->fs_total, t, sizeof t);
				snprintf(buf + n, sizeof buf - (size_t)n, " · %s free of %s", f, t);
			}
			ui_put(u, y, x + 10, w - 10, ROLE_TEXT, buf, false);
		}
		y++;
	}
	if (y < bottom) {
		ui_put(u, y, x, 10, ROLE_DIM, "another", false);
		ui_put(u, y, x + 10, w - 10, ROLE_DIM,
		       "OPTSTUDIO_HOME=/some/folder optstudio (set before it starts)", false);
	}
}

static void settings_draw(void *state, ui *u, ui_rect r)
{
	settings_screen *ss = state;
	ensure_ready(ss, u);
	describe_cuda(ss);
	int machine_h = 5, home_h = 5;
	int top_h = r.h - machine_h - home_h;
	int want = (int)ss->n_themes + 2;
	if (want < 9)
		want = 9;
	if (top_h > want)
		top_h = want;
	int list_w = r.w * 2 / 5;
	if (list_w > 44)
		list_w = 44;
	draw_themes(ss, u, (ui_rect){r.y, r.x, top_h, list_w});
	draw_preview(ss, u, (ui_rect){r.y, r.x + list_w, top_h, r.w - list_w});
	draw_machine(ss, u, (ui_rect){r.y + top_h, r.x, machine_h, r.w});
	draw_home(ss, u, (ui_rect){r.y + top_h + machine_h, r.x, home_h, r.w});
}

/* ---- input ------------------------------------------------------------------------------- */

static void move_sel(settings_screen *ss, ui *u, long d)
{
	if (!ss->n_themes)
		return;
	long s = (long)ss->sel + d;
	if (s < 0)
		s = 0;
	if (s >= (long)ss->n_themes)
		s = (long)ss->n_themes - 1;
	if ((size_t)s == ss->sel)
		return;
	ss->sel = (size_t)s;
	preview_selection(ss, u);
}

static void settings_action(void *state, ui *u, int action)
{
	settings_screen *ss = state;
	ensure_ready(ss, u);
	switch (action) {
	case S_UP: move_sel(ss, u, -1); break;
	case S_DOWN: move_sel(ss, u, 1); break;
	case S_HOME: move_sel(ss, u, -(long)ss->n_themes); break;
	case S_END: move_sel(ss, u, (long)ss->n_themes); break;
	case S_KEEP: keep_selection(ss, u); break;
	case S_REVERT: revert_preview(ss, u); break;
	case S_PRICE: start_price_edit(ss, u); break;
	case S_RESCAN:
		scan_themes(ss, u);
		preview_selection(ss, u);
		measure_home(ss);
		ui_status(u, false, "%zu themes; disk use measured again", ss->n_themes);
		break;
	default: break;
	}
}

static bool settings_disabled(void *state, int action, char *why, size_t len)
{
	settings_screen *ss = state;
	if (action == S_REVERT && !ss->preview) {
		snprintf(why, len, "nothing previewed: move through the themes with ↑↓");
		return true;
	}
	if (action == S_KEEP && ss->n_themes && ss->themes[ss->sel].error[0]) {
		snprintf(why, len, "theme '%s' does not load (the preview says why)", ss->themes[ss->sel].name);
		return true;
	}
	return false;
}

static void settings_refresh(void *state, ui *u)
{
	settings_screen *ss = state;
	ensure_ready(ss, u);
	read_price(ss, u);
}

static bool settings_tick(void *state, ui *u)
{
	settings_screen *ss = state;
	ensure_ready(ss, u);
	if (ss->usage_at > 0 && now_s() - ss->usage_at < USAGE_EVERY_S)
		return false;
	measure_home(ss);
	return true;
}

static void settings_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	settings_screen *ss = state;
	ensure_ready(ss, u);
	int i = y - ss->list_y0;
	if (i >= 0 && i < ss->list_rows && ss->top + (size_t)i < ss->n_themes && x < ss->list_x1) {
		size_t k = ss->top + (size_t)i;
		if (k != ss->sel) {
			ss->sel = k;
			preview_selection(ss, u);
		}
		if (dbl)
			keep_selection(ss, u);
		return;
	}
	if (y == ss->price_y && !ss->editing)
		start_price_edit(ss, u);
}

static void settings_enter(void *state, ui *u, const char *arg)
{
	settings_screen *ss = state;
	ensure_ready(ss, u);
	measure_home(ss);
}

/* A preview is a question asked on this screen; leaving it answers "no". */
static void settings_leave(void *state, ui *u)
{
	settings_screen *ss = state;
	if (ss->preview)
		revert_preview(ss, u);
}

static void settings_destroy(void *state)
{
	settings_screen *ss = state;
	if (!ss)
		return;
	/* the ui is being freed: nothing draws with these any more */
	theme_free(ss->preview);
	if (ss->kept_owned)
		theme_free(ss->kept);
	free(ss->themes);
	free(ss);
}

int screen_settings_new(ui_screen *out, os_error *err)
{
	settings_screen *ss = calloc(1, sizeof *ss);
	if (!ss)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	*out = (ui_screen){
		.title = "Settings",
		.number = 9,
		.keys = settings_keys,
		.n_keys = sizeof settings_keys / sizeof settings_keys[0],
		.state = ss,
		.draw = settings_draw,
		.on_action = settings_action,
		.on_refresh = settings_refresh,
		.on_tick = settings_tick,
		.on_click = settings_click,
		.disabled = settings_disabled,
		.destroy = settings_destroy,
		.on_enter = settings_enter,
		.on_leave = settings_leave,
	};
	return OS_OK;
}
