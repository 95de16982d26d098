/* theme.c: themes/NAME.json parsed with cJSON into per-role colours, and their curses rendering
 * at 256 colours (xterm cube + grey ramp), 8 colours (nearest ANSI) or attributes only. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "theme.h"

/* the JSON files compiled in by the Makefile (EMBED_SRC), NUL-terminated */
extern const char embedded_dark_json[];
extern const char embedded_light_json[];
extern const char embedded_high_contrast_json[];
extern const char embedded_mono_json[];

#define COLOUR_DEFAULT (-1)   /* the terminal's own colour */

typedef struct role_style {
	int fg, bg;        /* 0xRRGGBB, or 0x1000000 | xterm index, or COLOUR_DEFAULT */
	attr_t attrs;      /* from "attrs", used in every mode */
	bool has_fg, has_bg;
} role_style;

struct theme {
	char name[64];
	role_style roles[ROLE_COUNT];
	bool mono_only;                /* the theme asks for no colour at all */
	theme_mode mode;               /* set by theme_apply */
};

static const char *const role_names[ROLE_COUNT] = {
	"background", "text", "dim", "accent", "selection", "good", "bad", "warn", "running",
	"border", "header", "tab_active",
};

/* attributes that carry each role's meaning when there is no colour */
static const attr_t mono_attrs[ROLE_COUNT] = {
	[ROLE_DIM] = A_DIM, [ROLE_ACCENT] = A_BOLD, [ROLE_SELECTION] = A_REVERSE,
	[ROLE_GOOD] = A_NORMAL, [ROLE_BAD] = A_BOLD | A_UNDERLINE, [ROLE_WARN] = A_BOLD,
	[ROLE_RUNNING] = A_BOLD, [ROLE_HEADER] = A_BOLD | A_UNDERLINE,
	[ROLE_TAB_ACTIVE] = A_REVERSE | A_BOLD,
};

static const char *const builtin_names[] = {"dark", "light", "high-contrast", "mono", NULL};

const char *theme_role_name(theme_role r)
{
	return r >= 0 && r < ROLE_COUNT ? role_names[r] : "?";
}

const char *const *theme_builtin_names(void)
{
	return builtin_names;
}

const char *theme_name(const theme *t)
{
	return t->name;
}

void theme_free(theme *t)
{
	free(t);
}

/* "#rrggbb" | 0..255 | "default" -> *out; false when malformed */
static bool parse_colour(const cJSON *v, int *out)
{
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d < 0 || d > 255 || d != (int)d)
			return false;
		*out = 0x1000000 | (int)d;
		return true;
	}
	if (!cJSON_IsString(v))
		return false;
	const char *s = v->valuestring;
	if (!strcmp(s, "default")) {
		*out = COLOUR_DEFAULT;
		return true;
	}
	if (s[0] != '#' || strlen(s) != 7)
		return false;
	char *end;
	long x = strtol(s + 1, &end, 16);
	if (*end)
		return false;
	*out = (int)x;
	return true;
}

static bool parse_attr(const char *s, attr_t *a)
{
	static const struct { const char *name; attr_t a; } t[] = {
		{"bold", A_BOLD}, {"dim", A_DIM}, {"reverse", A_REVERSE},
		{"underline", A_UNDERLINE}, {"italic", A_ITALIC}, {"standout", A_STANDOUT},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(s, t[i].name)) {
			*a |= t[i].a;
			return true;
		}
	return false;
}

int theme_parse(theme **out, const char *json, const char *source, os_error *err)
{
	*out = NULL;
	cJSON *root = cJSON_Parse(json);
	if (!root)
		return os_error_set(err, OS_EFORMAT, "theme %s: not valid JSON", source);
	int rc = OS_OK;
	theme *t = calloc(1, sizeof *t);
	if (!t) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto fail;
	}
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
	if (!cJSON_IsString(name) || !name->valuestring[0]) {
		rc = os_error_set(err, OS_EFORMAT, "theme %s: name: expected a non-empty string",
				  source);
		goto fail;
	}
	snprintf(t->name, sizeof t->name, "%s", name->valuestring);
	const cJSON *mono = cJSON_GetObjectItemCaseSensitive(root, "monochrome");
	t->mono_only = cJSON_IsTrue(mono);
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(root, "roles");
	if (!cJSON_IsObject(roles)) {
		rc = os_error_set(err, OS_EFORMAT, "theme %s: roles: expected an object", source);
		goto fail;
	}
	const cJSON *r;
	cJSON_ArrayForEach(r, roles) {
		int idx = -1;
		for (int i = 0; i < ROLE_COUNT; i++)
			if (!strcmp(r->string, role_names[i]))
				idx = i;
		if (idx < 0) {
			rc = os_error_set(err, OS_EFORMAT, "theme %s: roles.%s: unknown role; the "
					  "roles are background, text, dim, accent, selection, good, "
					  "bad, warn, running, border, header, tab_active",
					  source, r->string);
			goto fail;
		}
		if (!cJSON_IsObject(r)) {
			rc = os_error_set(err, OS_EFORMAT, "theme %s: roles.%s: expected an object "
					  "such as {\"fg\": \"#rrggbb\", \"bg\": \"default\"}",
					  source, r->string);
			goto fail;
		}
		role_style *st = &t->roles[idx];
		const cJSON *f;
		cJSON_ArrayForEach(f, r) {
			if (!strcmp(f->string, "fg") || !strcmp(f->string, "bg")) {
				bool fg = f->string[0] == 'f';
				if (!parse_colour(f, fg ? &st->fg : &st->bg)) {
					rc = os_error_set(err, OS_EFORMAT, "theme %s: roles.%s.%s: "
							  "expected \"#rrggbb\", 0..255 or \"default\"",
							  source, r->string, f->string);
					goto fail;
				}
				*(fg ? &st->has_fg : &st->has_bg) = true;
			} else if (!strcmp(f->string, "attrs") && cJSON_IsArray(f)) {
				const cJSON *a;
				cJSON_ArrayForEach(a, f) {
					if (!cJSON_IsString(a) || !parse_attr(a->valuestring, &st->attrs)) {
						rc = os_error_set(err, OS_EFORMAT, "theme %s: roles.%s.attrs: "
								  "unknown attribute; one of bold, dim, reverse, "
								  "underline, italic, standout", source, r->string);
						goto fail;
					}
				}
			} else {
				rc = os_error_set(err, OS_EFORMAT, "theme %s: roles.%s.%s: unknown field "
						  "(fg, bg, attrs)", source, r->string, f->string);
				goto fail;
			}
		}
	}
	/* fallbacks: background -> terminal default; other roles -> text's fg, background's bg */
	role_style *bg = &t->roles[ROLE_BACKGROUND];
	if (!bg->has_fg)
		bg->fg = COLOUR_DEFAULT;
	if (!bg->has_bg)
		bg->bg = COLOUR_DEFAULT;
	role_style *tx = &t->roles[ROLE_TEXT];
	if (!tx->has_fg)
		tx->fg = bg->fg;
	for (int i = 1; i < ROLE_COUNT; i++) {
		if (!t->roles[i].has_fg)
			t->roles[i].fg = tx->fg;
		if (!t->roles[i].has_bg)
			t->roles[i].bg = bg->bg;
	}
	cJSON_Delete(root);
	*out = t;
	return OS_OK;
fail:
	free(t);
	cJSON_Delete(root);
	return rc;
}

static const char *embedded_theme(const char *name)
{
	if (!strcmp(name, "dark"))
		return embedded_dark_json;
	if (!strcmp(name, "light"))
		return embedded_light_json;
	if (!strcmp(name, "high-contrast"))
		return embedded_high_contrast_json;
	if (!strcmp(name, "mono"))
		return embedded_mono_json;
	return NULL;
}

static char *read_file(const char *path, os_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		os_error_set(err, OS_EIO, "cannot open theme '%s': %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap + 1);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n < cap)
			break;
		if (cap > (1u << 20)) {
			free(buf);
			buf = NULL;
			fclose(f);
			os_error_set(err, OS_EFORMAT, "theme '%s' is larger than 1 MiB", path);
			return NULL;
		}
		char *nb = realloc(buf, 2 * cap + 1);
		if (!nb) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	bool bad = ferror(f);
	fclose(f);
	if (!buf) {
		os_error_set(err, OS_ENOMEM, "out of memory reading '%s'", path);
		return NULL;
	}
	if (bad) {
		free(buf);
		os_error_set(err, OS_EIO, "cannot read theme '%s'", path);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

int theme_load(theme **out, const char *name, const char *const *dirs, size_t n_dirs,
	       os_error *err)
{
	*out = NULL;
	if (!name[0] || strchr(name, '/'))
		return os_error_set(err, OS_EUSAGE, "theme name '%s' is not a plain name", name);
	for (size_t i = 0; i < n_dirs; i++) {
		if (!dirs[i])
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.json", dirs[i], name);
		FILE *probe = fopen(path, "rb");
		if (!probe)
			continue;
		fclose(probe);
		char *text = read_file(path, err);
		if (!text)
			return err ? err->rc : OS_EIO;
		int rc = theme_parse(out, text, path, err);
		free(text);
		return rc;
	}
	const char *emb = embedded_theme(name);
	if (!emb)
		return os_error_set(err, OS_ENOTFOUND, "no theme named '%s'; built in: dark, light, "
				    "high-contrast, mono", name);
	char source[96];
	snprintf(source, sizeof source, "embedded %s", name);
	return theme_parse(out, emb, source, err);
}

theme_mode theme_detect_mode(bool force_mono)
{
	const char *nc = getenv("NO_COLOR");
	if (force_mono || (nc && nc[0]) || !has_colors())
		return THEME_MODE_MONO;
	start_color();
	return COLORS >= 256 ? THEME_MODE_256 : THEME_MODE_8;
}

static int rgb_of(int c)
{
	if (c & 0x1000000) { /* an xterm index: its approximate RGB */
		int i = c & 0xff;
		static const int base16[16] = {
			0x000000, 0x800000, 0x008000, 0x808000, 0x000080, 0x800080, 0x008080, 0xc0c0c0,
			0x808080, 0xff0000, 0x00ff00, 0xffff00, 0x0000ff, 0xff00ff, 0x00ffff, 0xffffff,
		};
		if (i < 16)
			return base16[i];
		if (i >= 232) {
			int v = 8 + 10 * (i - 232);
			return v << 16 | v << 8 | v;
		}
		static const int lv[6] = {0, 95, 135, 175, 215, 255};
		i -= 16;
		return lv[i / 36] << 16 | lv[i / 6 % 6] << 8 | lv[i % 6];
	}
	return c;
}

static long dist2(int a, int b)
{
	long dr = ((a >> 16) & 255) - ((b >> 16) & 255), dg = ((a >> 8) & 255) - ((b >> 8) & 255),
	     db = (a & 255) - (b & 255);
	return dr * dr + dg * dg + db * db;
}

/* nearest xterm-256 colour (cube 16..231 or grey 232..255) */
static short to_256(int c)
{
	if (c == COLOUR_DEFAULT)
		return -1;
	if (c & 0x1000000)
		return (short)(c & 0xff);
	int best = 16;
	long bd = -1;
	for (int i = 16; i < 256; i++) {
		long d = dist2(c, rgb_of(0x1000000 | i));
		if (bd < 0 || d < bd) {
			bd = d;
			best = i;
		}
	}
	return (short)best;
}

/* nearest of the 8 ANSI colours, judged on their conventional RGB values */
static short to_8(int c)
{
	if (c == COLOUR_DEFAULT)
		return -1;
	static const int ansi[8] = {0x000000, 0xcd0000, 0x00cd00, 0xcdcd00,
				    0x0000ee, 0xcd00cd, 0x00cdcd, 0xe5e5e5};
	int rgb = rgb_of(c), best = 0;
	long bd = -1;
	for (int i = 0; i < 8; i++) {
		long d = dist2(rgb, ansi[i]);
		if (bd < 0 || d < bd) {
			bd = d;
			best = i;
		}
	}
	return (short)best;
}

void theme_apply(theme *t, theme_mode mode)
{
	if (t->mono_only)
		mode = THEME_MODE_MONO;
	t->mode = mode;
	if (mode == THEME_MODE_MONO)
		return;
	start_color();
	use_default_colors();
	for (int i = 0; i < ROLE_COUNT; i++) {
		const role_style *st = &t->roles[i];
		short fg = mode == THEME_MODE_256 ? to_256(st->fg) : to_8(st->fg);
		short bg = mode == THEME_MODE_256 ? to_256(st->bg) : to_8(st->bg);
		if (mode == THEME_MODE_8 && fg == bg && fg >= 0)
			fg = bg == COLOR_BLACK ? COLOR_WHITE : COLOR_BLACK; /* keep it readable */
		init_pair((short)(i + 1), fg, bg);
	}
}

attr_t theme_attr(const theme *t, theme_role r)
{
	if (r < 0 || r >= ROLE_COUNT)
		r = ROLE_TEXT;
	if (t->mode == THEME_MODE_MONO)
		return mono_attrs[r] | (t->roles[r].attrs & (A_BOLD | A_UNDERLINE));
	attr_t a = COLOR_PAIR(r + 1) | t->roles[r].attrs;
	if (t->mode == THEME_MODE_8 && r == ROLE_DIM)
		a |= A_DIM;
	return a;
}
