/* hub_ops.c: importing models into the hub and resolving MODEL arguments. */
#include "hub_ops.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/model_info.h"
#include "core/format/sha256.h"

#define SETTING_DEMO_SEEDED "demo_model_seeded"

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Content hash of a folder: every regular file at the top level, in name order, as
 * name + NUL + contents, so renaming or editing any file changes the hash. */
static int hash_folder(const char *dir, char out_hex[SHA256_HEX_CHARS], os_error *err)
{
	int rc = OS_OK;
	char **names = NULL;
	size_t n_names = 0, cap = 0;
	unsigned char *buf = NULL;
	DIR *d = opendir(dir);
	if (!d)
		return os_error_set(err, OS_EIO, "cannot open folder '%s': %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n_names == cap) {
			cap = cap ? cap * 2 : 16;
			char **grown = realloc(names, cap * sizeof *names);
			if (!grown) {
				rc = os_error_set(err, OS_ENOMEM, "out of memory listing '%s'", dir);
				goto done;
			}
			names = grown;
		}
		if (!(names[n_names] = strdup(e->d_name))) {
			rc = os_error_set(err, OS_ENOMEM, "out of memory listing '%s'", dir);
			goto done;
		}
		n_names++;
	}
	qsort(names, n_names, sizeof *names, compare_names);

	enum { CHUNK = 1 << 20 };
	if (!(buf = malloc(CHUNK))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory hashing '%s'", dir);
		goto done;
	}
	sha256_ctx ctx;
	sha256_init(&ctx);
	for (size_t i = 0; i < n_names; i++) {
		char path[PATH_MAX];
		struct stat st;
		int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (len < 0 || (size_t)len >= sizeof path) {
			rc = os_error_set(err, OS_ERANGE, "path too long: '%s/%s'", dir, names[i]);
			goto done;
		}
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		FILE *f = fopen(path, "rb");
		if (!f) {
			rc = os_error_set(err, OS_EIO, "cannot read '%s': %s", path, strerror(errno));
			goto done;
		}
		sha256_update(&ctx, names[i], strlen(names[i]) + 1);
		size_t got;
		while ((got = fread(buf, 1, CHUNK, f)) > 0)
			sha256_update(&ctx, buf, got);
		int failed = ferror(f);
		fclose(f);
		if (failed) {
			rc = os_error_set(err, OS_EIO, "cannot read '%s'", path);
			goto done;
		}
	}
	uint8_t digest[SHA256_DIGEST_BYTES];
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, out_hex);
done:
	closedir(d);
	for (size_t i = 0; i < n_names; i++)
		free(names[i]);
	free(names);
	free(buf);
	return rc;
}

/* "dir/SmolLM2.Q4_1.gguf" -> "SmolLM2.Q4_1"; "dir/my-model/" -> "my-model". */
static void default_name(const char *path, char *buf, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	size_t n = strlen(tmp);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = '\0';
	const char *base = strrchr(tmp, '/');
	base = base ? base + 1 : tmp;
	snprintf(buf, len, "%s", base);
	size_t bn = strlen(buf);
	if (bn > 5 && strcmp(buf + bn - 5, ".gguf") == 0)
		buf[bn - 5] = '\0';
}

int hub_import(store *s, const char *path, const char *name, store_model *out, int *existed,
	       os_error *err)
{
	return hub_import_with(s, path, name, NULL, out, existed, err);
}

int hub_import_with(store *s, const char *path, const char *name, const hub_import_opts *o,
		    store_model *out, int *existed, os_error *err)
{
	char abs_path[PATH_MAX];
	if (!realpath(path, abs_path))
		return os_error_set(err, OS_EIO, "cannot open '%s': %s", path, strerror(errno));
	struct stat st;
	if (stat(abs_path, &st) != 0)
		return os_error_set(err, OS_EIO, "cannot open '%s': %s", path, strerror(errno));

	model_info info;
	int rc = model_info_read(abs_path, &info, err);
	if (rc != OS_OK)
		return rc;

	char hex[SHA256_HEX_CHARS];
	rc = S_ISDIR(st.st_mode) ? hash_folder(abs_path, hex, err) : sha256_file(abs_path, hex, err);
	if (rc != OS_OK)
		return rc;

	char name_buf[256];
	if (!name || !*name) {
		default_name(abs_path, name_buf, sizeof name_buf);
		name = name_buf;
	}
	store_model m = {
		.name = (char *)name,
		.path = abs_path,
		.source_path = abs_path,
		.owned_by_studio = o ? o->owned_by_studio : 0,
		.parent_model_id = o ? o->parent_model_id : 0,
		.recipe = o ? (char *)o->recipe : NULL,
		.format = info.format,
		.architecture = dup_or_null(info.architecture),
		.n_params = (int64_t)info.n_params,
		.context_length = (int64_t)info.context_length,
		.n_layers = info.n_layers,
		.n_heads = info.n_heads,
		.n_kv_heads = info.n_kv_heads,
		.hidden_size = info.hidden_size,
		.ffn_size = info.ffn_size,
		.vocab_size = info.vocab_size,
		.tokenizer_kind = dup_or_null(info.tokenizer_kind),
		.vocab_hash = dup_or_null(info.vocab_hash),
		.precision = dup_or_null(info.precision),
		.file_size = (int64_t)info.file_size,
		.sha256 = hex,
		.license = dup_or_null(info.license),
	};
	rc = store_model_insert(s, &m, out, existed, err);
	free(m.architecture);
	free(m.tokenizer_kind);
	free(m.vocab_hash);
	free(m.precision);
	free(m.license);
	return rc;
}

/* The first time a data home is opened with the demo model in it, import it, once: a user
 * who removes it from the hub does not see it come back. */
static int seed_demo_model(store *s, os_error *err)
{
	char *seeded = NULL;
	if (store_setting_get(s, SETTING_DEMO_SEEDED, &seeded, NULL) == OS_OK) {
		free(seeded);
		return OS_OK;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/models/%s", store_home(s), HUB_DEMO_FILE);
	if (access(path, R_OK) != 0)
		return OS_OK; /* not fetched yet: seed on a later run */
	int existed = 0;
	int rc = hub_import(s, path, HUB_DEMO_NAME, NULL, &existed, err);
	if (rc == OS_EEXISTS)
		rc = OS_OK; /* the user already has a model of that name: keep theirs */
	if (rc != OS_OK)
		return rc;
	return store_setting_set(s, SETTING_DEMO_SEEDED, "1", err);
}

int hub_open(store **out, os_error *err)
{
	char home[PATH_MAX];
	*out = NULL;
	int rc = store_home_resolve(home, sizeof home, err);
	if (rc != OS_OK)
		return rc;
	store *s;
	rc = store_open(&s, home, err);
	if (rc != OS_OK)
		return rc;
	rc = seed_demo_model(s, err);
	if (rc != OS_OK) {
		store_close(s);
		return rc;
	}
	*out = s;
	return OS_OK;
}

int hub_resolve_model(store *s, const char *arg, char **path, os_error *err)
{
	store_model m = {0};
	int rc = store_model_get(s, arg, &m, NULL);
	if (rc == OS_OK) {
		*path = m.path;
		m.path = NULL;
		store_model_clear(&m);
		return OS_OK;
	}
	if (access(arg, R_OK) == 0) {
		*path = strdup(arg);
		return *path ? OS_OK : os_error_set(err, OS_ENOMEM, "out of memory");
	}
	return os_error_set(err, OS_ENOTFOUND,
			    "no model named '%s' in the hub and no such file; 'optstudio hub list' "
			    "shows the hub",
			    arg);
}

void hub_format_params(int64_t n, char *buf, size_t len)
{
	if (n >= 1000000000)
		snprintf(buf, len, "%.1fB", (double)n / 1e9);
	else if (n >= 1000000)
		snprintf(buf, len, "%.1fM", (double)n / 1e6);
	else if (n >= 1000)
		snprintf(buf, len, "%.1fK", (double)n / 1e3);
	else
		snprintf(buf, len, "%lld", (long long)n);
}

void hub_format_bytes(int64_t n, char *buf, size_t len)
{
	const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	size_t u = 0;
	while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lld B", (long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}
