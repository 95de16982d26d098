/* wizard_pick.c: the lists the wizard opens over a step: compatible hub drafts, the instance
 * catalog, and a file browser for path fields. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub_ops.h"
#include "wizard_screen.h"

/* ---- lists over the step: hub drafts, instances, files --------------------------------------- */

static int cmp_items(const void *a, const void *b)
{
	const pick_item *x = a, *y = b;
	if (!strcmp(x->name, ".."))
		return -1;
	if (!strcmp(y->name, ".."))
		return 1;
	if (x->dir != y->dir)
		return x->dir ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool items_grow(opt_screen *o, size_t *cap)
{
	if (o->n_items < *cap)
		return true;
	size_t nc = *cap ? 2 * *cap : 64;
	pick_item *ni = realloc(o->items, nc * sizeof *ni);
	if (!ni)
		return false;
	o->items = ni;
	*cap = nc;
	return true;
}

/* Lists pick_dir: "..", folders, files (no hidden ones). */
static void list_dir(opt_screen *o, ui *u)
{
	o->n_items = 0;
	o->pick_sel = o->pick_top = 0;
	size_t cap = 0;
	DIR *d = opendir(o->pick_dir);
	if (!d) {
		ui_status(u, true, "cannot open '%s': %s", o->pick_dir, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		bool up = !strcmp(e->d_name, "..");
		if (e->d_name[0] == '.' && !up)
			continue;
		if (up && !strcmp(o->pick_dir, "/"))
			continue;
		char full[PATH_MAX + 256];
		snprintf(full, sizeof full, "%s/%s", o->pick_dir, e->d_name);
		struct stat st;
		if (stat(full, &st) != 0 || !items_grow(o, &cap))
			continue;
		pick_item *it = &o->items[o->n_items++];
		memset(it, 0, sizeof *it);
		SETF(it->name, "%s", e->d_name);
		it->dir = S_ISDIR(st.st_mode);
		char cfg[PATH_MAX + 300];
		snprintf(cfg, sizeof cfg, "%s/config.json", full);
		if (up)
			SETF(it->detail, "parent folder");
		else if (it->dir && o->pick_field == WF_DRAFT_PATH && access(cfg, R_OK) == 0) {
			it->dir = false; /* a Hugging Face model: chosen, not opened */
			SETF(it->detail, "Hugging Face model folder");
		} else if (it->dir)
			SETF(it->detail, "folder");
		else {
			char sz[32];
			hub_format_bytes(st.st_size, sz, sizeof sz);
			size_t n = strlen(it->name);
			SETF(it->detail, "%s%s", sz, n > 5 && !strcmp(it->name + n - 5, ".gguf") ? " · GGUF" : "");
		}
	}
	closedir(d);
	if (o->n_items)
		qsort(o->items, o->n_items, sizeof *o->items, cmp_items);
}

void wz_open_files(opt_screen *o, ui *u, int f)
{
	char buf[PATH_MAX + 16];
	const char *t = o->w.text[f];
	struct stat st;
	o->pick_field = f;
	buf[0] = '\0';
	if (*t && stat(t, &st) == 0 && S_ISDIR(st.st_mode) && f != WF_DRAFT_PATH)
		SETF(buf, "%s", t);
	else if (*t) {
		char tmp[PATH_MAX];
		SETF(tmp, "%s", t);
		SETF(buf, "%s", dirname(tmp));
	}
	if (!buf[0] || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(buf, sizeof buf, "%s/%s", o->home, f == WF_DRAFT_PATH ? "models" : "text");
		if (stat(buf, &st) != 0 && !getcwd(buf, sizeof buf))
			SETF(buf, "/");
	}
	if (strlen(buf) >= PATH_MAX || !realpath(buf, o->pick_dir))
		wz_copy_str(o->pick_dir, sizeof o->pick_dir, buf);
	o->pick = PK_FILE;
	list_dir(o, u);
}

void wz_open_list(opt_screen *o, ui *u, int kind)
{
	o->n_items = 0;
	o->pick_sel = o->pick_top = 0;
	size_t cap = 0;
	if (kind == PK_HUB) {
		for (size_t i = 0; i < o->n_compat && items_grow(o, &cap); i++) {
			o->items[o->n_items] = o->compat[i];
			if (!strcmp(o->compat[i].name, o->w.hub_draft))
				o->pick_sel = o->n_items;
			o->n_items++;
		}
	} else if (kind == PK_BASELINE) {
		/* the stage's default first: choosing it clears the baseline */
		if (!items_grow(o, &cap))
			return;
		pick_item *p = &o->items[o->n_items++];
		memset(p, 0, sizeof *p);
		SETF(p->name, "(default)");
		SETF(p->detail, "%s", o->w.method >= 0 ? "the input model, as the job quantizes it"
						       : "none: perplexity only");
		for (size_t i = 0; i < o->n_compat && items_grow(o, &cap); i++) {
			o->items[o->n_items] = o->compat[i];
			if (!strcmp(o->compat[i].name, o->w.baseline))
				o->pick_sel = o->n_items;
			o->n_items++;
		}
	} else {
		const char *cur = o->w.instance[0] ? o->w.instance : STORE_LOCAL_INSTANCE;
		for (size_t i = 0; i < o->n_insts && items_grow(o, &cap); i++) {
			const store_instance *it = &o->insts[i];
			pick_item *p = &o->items[o->n_items];
			memset(p, 0, sizeof *p);
			SETF(p->name, "%s", it->name);
			if (it->is_local)
				SETF(p->detail, "this machine · %s", it->usd_per_hour > 0 ? "measured" : "no price set ('optstudio price --set-local')");
			else
				SETF(p->detail, "%lld × %s · $%.2f/h · projected", (long long)it->n_gpus,
				     it->gpu_model ? it->gpu_model : "?", it->usd_per_hour);
			if (!strcmp(it->name, cur))
				o->pick_sel = o->n_items;
			o->n_items++;
		}
	}
	o->pick = kind;
}

void wz_pick_choose(opt_screen *o, ui *u)
{
	if (o->pick_sel >= o->n_items)
		return;
	const pick_item *it = &o->items[o->pick_sel];
	if (o->pick == PK_FILE) {
		char full[PATH_MAX + WIZ_TEXT + 2], real[PATH_MAX + WIZ_TEXT + 2];
		snprintf(full, sizeof full, "%s/%s", strcmp(o->pick_dir, "/") ? o->pick_dir : "", it->name);
		if (!realpath(full, real))
			SETF(real, "%s", full);
		if (it->dir) {
			wz_copy_str(o->pick_dir, sizeof o->pick_dir, real);
			list_dir(o, u);
			return;
		}
		if (strlen(real) >= WIZ_TEXT) {
			ui_status(u, true, "the path is too long (at most %d bytes)", WIZ_TEXT - 1);
			return;
		}
		SETF(o->w.text[o->pick_field], "%s", real);
		if (o->pick_field == WF_DRAFT_PATH)
			o->w.draft = WD_CUSTOM;
		wiz_field_check(&o->w, o->pick_field, o->home);
	} else if (o->pick == PK_HUB) {
		SETF(o->w.hub_draft, "%s", it->name);
		o->w.draft = WD_HUB;
	} else if (o->pick == PK_BASELINE) {
		SETF(o->w.baseline, "%s", o->pick_sel ? it->name : "");
	} else {
		SETF(o->w.instance, "%s", it->name);
	}
	o->changed = true;
	o->pick = PK_NONE;
	wz_update(o, u);
}

void wz_pick_parent(opt_screen *o, ui *u)
{
	if (o->pick != PK_FILE || !strcmp(o->pick_dir, "/")) {
		o->pick = PK_NONE;
		return;
	}
	char tmp[PATH_MAX];
	SETF(tmp, "%s", o->pick_dir);
	SETF(o->pick_dir, "%s", dirname(tmp));
	list_dir(o, u);
}
