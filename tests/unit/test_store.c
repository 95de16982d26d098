/* test_store.c: the store: data home, migrations, refusing newer/corrupt databases,
 * model write->read identity (property test), drafts order, instance seeding, settings,
 * transactions, and two processes writing at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "store/store.h"
#include "tests/test.h"

extern const char embedded_instances_json[];
extern const size_t embedded_instances_json_len;

static char test_root[256]; /* every home of this run lives below it; removed at exit */
static int home_counter;
static uint64_t seed;

/* A fresh, not yet existing home path below test_root. */
static void new_home(char *buf, size_t len)
{
	snprintf(buf, len, "%s/home%d", test_root, home_counter++);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	chmod(path, 0700); /* read-only test folders */
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int contains(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

/* Runs a single-value query on db_path through a separate connection; returns a malloc'd
 * text (NULL on error). */
static char *raw_query(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	char *out = NULL;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW) {
				const char *t = (const char *)sqlite3_column_text(st, 0);
				out = strdup(t ? t : "(null)");
			} else if (r == SQLITE_DONE) {
				out = strdup("(done)");
			}
		}
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return out;
}

static long long raw_int(const char *db_path, const char *sql)
{
	char *t = raw_query(db_path, sql);
	long long v = t ? atoll(t) : -1;
	free(t);
	return v;
}

/* ---- random models -------------------------------------------------------------------- */

static const char *const pieces[] = {"a", "Z", "7", " ", "'", "\"", "\\", "%", "_", "-", ".",
				     "é", "日本", "🦙", "\t", "q4", "llama", ";DROP TABLE x;"};

/* A random string of 0..max_pieces pieces (malloc'd). */
static char *rand_str(uint64_t *rng, int max_pieces)
{
	char buf[512];
	size_t len = 0;
	int n = (int)(test_rand_next(rng) % (uint64_t)(max_pieces + 1));
	buf[0] = '\0';
	for (int i = 0; i < n; i++) {
		const char *p = pieces[test_rand_next(rng) % (sizeof pieces / sizeof pieces[0])];
		size_t pl = strlen(p);
		if (len + pl + 1 > sizeof buf)
			break;
		memcpy(buf + len, p, pl + 1);
		len += pl;
	}
	return strdup(buf);
}

/* NULL one time in four, else a random string. */
static char *rand_opt_str(uint64_t *rng)
{
	return test_rand_next(rng) % 4 == 0 ? NULL : rand_str(rng, 12);
}

static int64_t rand_count(uint64_t *rng)
{
	switch (test_rand_next(rng) % 4) {
	case 0: return 0;
	case 1: return (int64_t)(test_rand_next(rng) % 100);
	case 2: return (int64_t)(test_rand_next(rng) % 100000000000ull);
	default: return (int64_t)(test_rand_next(rng) >> 2); /* up to 2^62 */
	}
}

static char *rand_recipe(uint64_t *rng)
{
	if (test_rand_next(rng) % 3 == 0)
		return NULL;
	cJSON *o = cJSON_CreateObject();
	char *method = rand_str(rng, 4);
	cJSON_AddStringToObject(o, "method", method);
	cJSON_AddNumberToObject(o, "alpha", (double)(test_rand_next(rng) % 1000) / 1000.0);
	cJSON_AddNumberToObject(o, "group", (double)(test_rand_next(rng) % 512));
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	free(method);
	return s;
}

/* Fills m with random values; name is "<prefix><i>" plus random text, unique by i. */
static void rand_model(uint64_t *rng, store_model *m, const char *prefix, int i)
{
	memset(m, 0, sizeof *m);
	char *tail = rand_str(rng, 6);
	size_t n = strlen(prefix) + strlen(tail) + 32;
	m->name = malloc(n);
	snprintf(m->name, n, "%s%d#%s", prefix, i, tail); /* '#' is in no piece: unique */
	free(tail);
	char *p = rand_str(rng, 10);
	n = strlen(p) + 64;
	m->path = malloc(n);
	snprintf(m->path, n, "/models/%d/%s.gguf", i, p);
	free(p);
	m->source_path = rand_opt_str(rng);
	m->owned_by_studio = (int)(test_rand_next(rng) % 2);
	m->format = strdup(test_rand_next(rng) % 2 ? "gguf" : "safetensors");
	m->architecture = rand_opt_str(rng);
	m->n_params = rand_count(rng);
	m->context_length = rand_count(rng);
	m->n_layers = rand_count(rng);
	m->n_heads = rand_count(rng);
	m->n_kv_heads = rand_count(rng);
	m->hidden_size = rand_count(rng);
	m->ffn_size = rand_count(rng);
	m->vocab_size = rand_count(rng);
	m->tokenizer_kind = rand_opt_str(rng);
	m->vocab_hash = rand_opt_str(rng);
	m->precision = rand_opt_str(rng);
	m->file_size = rand_count(rng);
	m->sha256 = rand_opt_str(rng);
	m->license = rand_opt_str(rng);
	m->recipe = rand_recipe(rng);
}

static int str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Compares every caller-set field; writes the first difference into why. */
static int model_same(const store_model *a, const store_model *b, char *why, size_t len)
{
#define S(f) if (!str_eq(a->f, b->f)) { snprintf(why, len, #f ": '%s' vs '%s'", a->f ? a->f : "(null)", b->f ? b->f : "(null)"); return 0; }
#define I(f) if (a->f != b->f) { snprintf(why, len, #f ": %lld vs %lld", (long long)a->f, (long long)b->f); return 0; }
	S(name) S(path) S(source_path) I(owned_by_studio) S(format) S(architecture) I(n_params)
	I(context_length) I(n_layers) I(n_heads) I(n_kv_heads) I(hidden_size) I(ffn_size)
	I(vocab_size) S(tokenizer_kind) S(vocab_hash) S(precision) I(file_size) S(sha256)
	S(license) I(parent_model_id) S(recipe)
#undef S
#undef I
	return 1;
}

/* A minimal valid model owned by the caller's strings (not freed). */
static store_model plain_model(const char *name, const char *path, const char *sha)
{
	store_model m = {0};
	m.name = (char *)name;
	m.path = (char *)path;
	m.sha256 = (char *)sha;
	m.format = (char *)"gguf";
	return m;
}

/* ---- data home ------------------------------------------------------------------------ */

static void restore_env(const char *name, char *saved)
{
	if (saved) {
		setenv(name, saved, 1);
		free(saved);
	} else {
		unsetenv(name);
	}
}

static char *save_env(const char *name)
{
	const char *v = getenv(name);
	return v ? strdup(v) : NULL;
}

TEST(test_home_resolve)
{
	char *o = save_env("OPTSTUDIO_HOME"), *x = save_env("XDG_DATA_HOME"), *h = save_env("HOME");
	char buf[512], tiny[8];
	os_error err = {0};
	int ok = 1;
	setenv("OPTSTUDIO_HOME", "/tmp/os-a", 1);
	setenv("XDG_DATA_HOME", "/tmp/xdg", 1);
	setenv("HOME", "/tmp/hh", 1);
	ok &= store_home_resolve(buf, sizeof buf, &err) == OS_OK && strcmp(buf, "/tmp/os-a") == 0;
	ok &= store_home_resolve(tiny, sizeof tiny, &err) == OS_ERANGE;
	setenv("OPTSTUDIO_HOME", "", 1);
	ok &= store_home_resolve(buf, sizeof buf, &err) == OS_OK &&
	      strcmp(buf, "/tmp/xdg/optstudio") == 0;
	setenv("XDG_DATA_HOME", "relative/xdg", 1); /* invalid per the XDG spec: ignored */
	ok &= store_home_resolve(buf, sizeof buf, &err) == OS_OK &&
	      strcmp(buf, "/tmp/hh/.local/share/optstudio") == 0;
	unsetenv("OPTSTUDIO_HOME");
	unsetenv("XDG_DATA_HOME");
	unsetenv("HOME");
	int rc_none = store_home_resolve(buf, sizeof buf, &err);
	restore_env("OPTSTUDIO_HOME", o);
	restore_env("XDG_DATA_HOME", x);
	restore_env("HOME", h);
	CHECK(ok);
	CHECK_EQ_INT(rc_none, OS_ENOTFOUND);
	CHECK(contains(err.msg, "OPTSTUDIO_HOME"));
}

static const char *const all_tables[] = {"models", "drafts", "jobs", "job_events", "artifacts",
					 "bench_runs", "bench_points", "eval_results",
					 "instances", "deployments", "settings"};

TEST(test_migrate_from_empty)
{
	char home[300], path[400];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "open: %s", err.msg);
	int version = -1;
	CHECK(store_schema_version(s, &version, &err) == OS_OK);
	CHECK_EQ_INT(version, STORE_SCHEMA_VERSION);
	const char *subs[] = {"models", "artifacts", "logs", "text"};
	for (size_t i = 0; i < 4; i++) {
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", home, subs[i]);
		CHECK_MSG(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "no folder %s", path);
	}
	CHECK_EQ_STR(store_home(s), home);
	snprintf(path, sizeof path, "%s/hub.db", home);
	CHECK_EQ_STR(store_db_path(s), path);
	store_close(s);

	for (size_t i = 0; i < sizeof all_tables / sizeof all_tables[0]; i++) {
		char sql[200];
		snprintf(sql, sizeof sql,
			 "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
			 all_tables[i]);
		CHECK_MSG(raw_int(path, sql) == 1, "table %s missing", all_tables[i]);
	}
	char *mode = raw_query(path, "PRAGMA journal_mode");
	int wal = mode && strcmp(mode, "wal") == 0;
	free(mode);
	CHECK(wal);
	CHECK_EQ_INT(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
}

TEST(test_reopen_is_noop)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_model m = plain_model("keep-me", "/x/keep.gguf", "abc"), out = {0};
	CHECK(store_model_insert(s, &m, &out, NULL, &err) == OS_OK);
	int64_t id = out.id;
	store_model_clear(&out);
	store_close(s);

	/* a user's edit to the catalog survives reopening */
	char path[400];
	snprintf(path, sizeof path, "%s/hub.db", home);
	char *r = raw_query(path, "UPDATE instances SET usd_per_hour = 4.5 WHERE name = 'g5.xlarge'");
	free(r);
	long long n_inst = raw_int(path, "SELECT count(*) FROM instances");
	long long n_sql = raw_int(path, "SELECT count(*) FROM sqlite_master");

	for (int k = 0; k < 2; k++) {
		CHECK_MSG(store_open(&s, home, &err) == OS_OK, "reopen: %s", err.msg);
		int version = 0;
		CHECK(store_schema_version(s, &version, &err) == OS_OK);
		CHECK_EQ_INT(version, STORE_SCHEMA_VERSION);
		CHECK(store_model_get(s, "keep-me", &out, &err) == OS_OK);
		CHECK_EQ_INT(out.id, id);
		store_model_clear(&out);
		store_instance it = {0};
		CHECK(store_instance_get(s, "g5.xlarge", &it, &err) == OS_OK);
		CHECK_NEAR(it.usd_per_hour, 4.5, 0);
		store_instance_clear(&it);
		store_close(s);
	}
	CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM instances"), n_inst);
	CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_master"), n_sql);
}

TEST(test_newer_version_refused)
{
	char home[300], path[400];
	new_home(home, sizeof home);
	os_error err = {0};
	CHECK(store_home_create(home, &err) == OS_OK);
	snprintf(path, sizeof path, "%s/hub.db", home);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "CREATE TABLE future (x); PRAGMA user_version = 9", NULL, NULL,
			   NULL) == SQLITE_OK);
	sqlite3_close(db);

	store *s = (store *)&err; /* must come back NULL */
	int rc = store_open(&s, home, &err);
	CHECK_EQ_INT(rc, OS_EUNSUPPORTED);
	CHECK(s == NULL);
	char want[128];
	snprintf(want, sizeof want, "hub.db is schema version 9, this optstudio knows up to %d; "
		 "upgrade optstudio", STORE_SCHEMA_VERSION);
	CHECK_MSG(contains(err.msg, want), "message: %s", err.msg);
	/* left untouched */
	CHECK_EQ_INT(raw_int(path, "PRAGMA user_version"), 9);
	CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'models'"), 0);
}

TEST(test_corrupt_refused)
{
	char home[300], path[400];
	new_home(home, sizeof home);
	os_error err = {0};
	CHECK(store_home_create(home, &err) == OS_OK);
	snprintf(path, sizeof path, "%s/hub.db", home);
	uint64_t rng = seed ^ 0xc0ffee;
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	size_t n = 3 * 4096 + 17;
	for (size_t i = 0; i < n; i++)
		fputc((int)(test_rand_next(&rng) & 0xff), f);
	CHECK(fclose(f) == 0);

	store *s = NULL;
	int rc = store_open(&s, home, &err);
	CHECK_EQ_INT(rc, OS_EDB);
	CHECK(s == NULL);
	CHECK_MSG(contains(err.msg, path) && contains(err.msg, "not a database") &&
			  contains(err.msg, "move it aside"),
		  "message: %s", err.msg);
}

/* A valid database whose pages past the header are overwritten with random bytes: open
 * may succeed (the header is fine), but every failure must be a clean OS_EDB. */
TEST(test_malformed_refused)
{
	char home[300], path[400];
	new_home(home, sizeof home);
	os_error err = {0};
	store *s = NULL;
	CHECK(store_open(&s, home, &err) == OS_OK);
	uint64_t rng = seed ^ 0xbad;
	for (int i = 0; i < 60; i++) {
		store_model m = {0};
		rand_model(&rng, &m, "m", i);
		CHECK_MSG(store_model_insert(s, &m, NULL, NULL, &err) == OS_OK, "insert: %s", err.msg);
		store_model_clear(&m);
	}
	store_close(s);
	snprintf(path, sizeof path, "%s/hub.db", home);
	/* fold the WAL into the main file, then damage pages 2.. */
	free(raw_query(path, "PRAGMA wal_checkpoint(TRUNCATE)"));
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	unsigned char junk[4096];
	for (off_t off = 4096; off + (off_t)sizeof junk <= st.st_size; off += sizeof junk) {
		for (size_t i = 0; i < sizeof junk; i++)
			junk[i] = (unsigned char)test_rand_next(&rng);
		CHECK(pwrite(fd, junk, sizeof junk, off) == (ssize_t)sizeof junk);
	}
	close(fd);

	int rc = store_open(&s, home, &err);
	if (rc == OS_OK) {
		store_model *v = NULL;
		size_t nv = 0;
		rc = store_model_list(s, &v, &nv, &err);
		store_model_list_free(v, nv);
		store_close(s);
	}
	CHECK_MSG(rc == OS_EDB, "rc %d: %s", rc, err.msg);
	CHECK_MSG(contains(err.msg, path) && contains(err.msg, "move it aside"), "message: %s",
		  err.msg);
}

/* Checks the messages for a home that cannot be created and one that is not writable, as
 * the current user. Returns 0 when both are right, else writes why into msg. */
static int check_readonly_messages(const char *ro_dir, const char *ro_db_home, char *msg,
				   size_t len)
{
	char home[400];
	os_error err = {0};
	store *s = NULL;
	snprintf(home, sizeof home, "%s/sub/home", ro_dir);
	int rc = store_open(&s, home, &err);
	if (rc != OS_EIO || !contains(err.msg, "cannot create data home") ||
	    !contains(err.msg, home) || !contains(err.msg, "Permission denied") ||
	    !contains(err.msg, "set OPTSTUDIO_HOME to a writable folder")) {
		snprintf(msg, len, "missing home: rc %d: %s", rc, err.msg);
		store_close(s);
		return 1;
	}
	rc = store_open(&s, ro_dir, &err);
	if (rc != OS_EIO || !contains(err.msg, ro_dir) || !contains(err.msg, "Permission denied") ||
	    !contains(err.msg, "OPTSTUDIO_HOME")) {
		snprintf(msg, len, "read-only home: rc %d: %s", rc, err.msg);
		store_close(s);
		return 1;
	}
	rc = store_open(&s, ro_db_home, &err);
	if (rc != OS_EIO || !contains(err.msg, "hub.db' is read-only")) {
		snprintf(msg, len, "read-only hub.db: rc %d: %s", rc, err.msg);
		store_close(s);
		return 1;
	}
	return 0;
}

TEST(test_readonly_home)
{
	char ro[300], ro_db[300], db[400], probe[400], msg[700] = "";
	new_home(ro, sizeof ro);
	CHECK(mkdir(ro, 0755) == 0);
	CHECK(chmod(ro, 0500) == 0);
	/* a working home whose hub.db is write-protected */
	new_home(ro_db, sizeof ro_db);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, ro_db, &err) == OS_OK);
	store_close(s);
	snprintf(db, sizeof db, "%s/hub.db", ro_db);
	CHECK(chmod(db, 0444) == 0);
	snprintf(probe, sizeof probe, "%s/probe", ro);
	int fd = open(probe, O_CREAT | O_WRONLY, 0600);
	if (fd < 0) { /* permissions are enforced for us */
		CHECK_MSG(check_readonly_messages(ro, ro_db, msg, sizeof msg) == 0, "%s", msg);
		return;
	}
	close(fd);
	unlink(probe);
	if (geteuid() != 0)
		SKIP("test_readonly_home: a 0500 folder is writable here and we cannot drop privileges");
	/* root ignores permission bits: check as user nobody in a child, who owns ro_db */
	const char *const owned[] = {"", "/hub.db", "/hub.db-wal", "/hub.db-shm"};
	for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
		snprintf(probe, sizeof probe, "%s%s", ro_db, owned[i]);
		if (chown(probe, 65534, 65534) != 0 && errno != ENOENT)
			SKIP("test_readonly_home: cannot chown '%s': %s", probe, strerror(errno));
	}
	int pfd[2];
	CHECK(pipe(pfd) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		int code = 3;
		if (setgid(65534) == 0 && setuid(65534) == 0) {
			code = check_readonly_messages(ro, ro_db, msg, sizeof msg);
		} else {
			snprintf(msg, sizeof msg, "cannot drop privileges: %s", strerror(errno));
		}
		ssize_t w = write(pfd[1], msg, strlen(msg));
		(void)w;
		_exit(code);
	}
	close(pfd[1]);
	ssize_t got = read(pfd[0], msg, sizeof msg - 1);
	msg[got > 0 ? got : 0] = '\0';
	close(pfd[0]);
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	if (WEXITSTATUS(status) == 3)
		SKIP("test_readonly_home: running as root and %s", msg);
	CHECK_MSG(WEXITSTATUS(status) == 0, "as nobody: %s", msg);
}

/* ---- models --------------------------------------------------------------------------- */

TEST(test_model_roundtrip_property)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	uint64_t rng = seed;
	printf("  model round trip: seed %llu\n", (unsigned long long)seed);
	enum { N = 97 };
	store_model in[N];
	int64_t ids[N];
	memset(in, 0, sizeof in);
	char why[600];
	int failed = 0;
	for (int i = 0; i < N && !failed; i++) {
		rand_model(&rng, &in[i], "", i);
		if (i > 0 && test_rand_next(&rng) % 3 == 0)
			in[i].parent_model_id = ids[test_rand_next(&rng) % (uint64_t)i];
		store_model out = {0}, got = {0};
		int existed = -1;
		time_t before = time(NULL);
		if (store_model_insert(s, &in[i], &out, &existed, &err) != OS_OK) {
			snprintf(why, sizeof why, "insert %d: %s", i, err.msg);
			failed = 1;
		} else if (existed != 0 || out.id <= 0 || out.created_at < before ||
			   !model_same(&in[i], &out, why, sizeof why)) {
			failed = 1;
		} else if (store_model_get(s, in[i].name, &got, &err) != OS_OK ||
			   !model_same(&in[i], &got, why, sizeof why) || got.id != out.id) {
			failed = 1;
		}
		ids[i] = out.id;
		store_model_clear(&got);
		if (!failed && (store_model_get_by_id(s, ids[i], &got, &err) != OS_OK ||
				!model_same(&in[i], &got, why, sizeof why)))
			failed = 1;
		store_model_clear(&got);
		store_model_clear(&out);
	}
	store_model *v = NULL;
	size_t n = 0;
	if (!failed && store_model_list(s, &v, &n, &err) != OS_OK) {
		snprintf(why, sizeof why, "list: %s", err.msg);
		failed = 1;
	}
	if (!failed && n != N) {
		snprintf(why, sizeof why, "list gave %zu models, expected %d", n, N);
		failed = 1;
	}
	for (size_t i = 0; !failed && i < n; i++) {
		if (i > 0 && strcmp(v[i - 1].name, v[i].name) >= 0) {
			snprintf(why, sizeof why, "list not sorted at %zu", i);
			failed = 1;
		}
		int j = 0;
		while (j < N && ids[j] != v[i].id)
			j++;
		if (!failed && (j == N || !model_same(&in[j], &v[i], why, sizeof why)))
			failed = 1;
	}
	store_model_list_free(v, n);
	for (int i = 0; i < N; i++)
		store_model_clear(&in[i]);
	store_close(s);
	CHECK_MSG(!failed, "seed %llu: %s", (unsigned long long)seed, why);
}

TEST(test_model_insert_idempotent_and_clash)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_model a = plain_model("smol", "/m/smol.gguf", "ff00"), out = {0};
	int existed = -1;
	CHECK(store_model_insert(s, &a, &out, &existed, &err) == OS_OK);
	CHECK_EQ_INT(existed, 0);
	int64_t id = out.id;
	store_model_clear(&out);

	/* the same file again, even under another name: the existing row */
	store_model again = plain_model("smol-copy", "/m/smol.gguf", "ff00");
	CHECK(store_model_insert(s, &again, &out, &existed, &err) == OS_OK);
	CHECK_EQ_INT(existed, 1);
	CHECK_EQ_INT(out.id, id);
	CHECK_EQ_STR(out.name, "smol");
	store_model_clear(&out);

	/* a different file (other path, or same path with other content) wants the name */
	store_model other = plain_model("smol", "/m/other.gguf", "ff00");
	CHECK_EQ_INT(store_model_insert(s, &other, &out, &existed, &err), OS_EEXISTS);
	CHECK(contains(err.msg, "'smol'") && contains(err.msg, "/m/smol.gguf"));
	CHECK(out.name == NULL && existed == 0);
	store_model changed = plain_model("smol", "/m/smol.gguf", "ee11");
	CHECK_EQ_INT(store_model_insert(s, &changed, NULL, NULL, &err), OS_EEXISTS);

	/* bad input, named */
	store_model bad = plain_model("bad", "/m/bad", "1");
	bad.format = (char *)"onnx";
	CHECK_EQ_INT(store_model_insert(s, &bad, NULL, NULL, &err), OS_EUSAGE);
	CHECK(contains(err.msg, "onnx"));
	bad = plain_model("bad", "/m/bad", "1");
	bad.n_layers = -3;
	CHECK_EQ_INT(store_model_insert(s, &bad, NULL, NULL, &err), OS_ERANGE);
	CHECK(contains(err.msg, "n_layers"));
	bad = plain_model("bad", "/m/bad", "1");
	bad.recipe = (char *)"{not json";
	CHECK_EQ_INT(store_model_insert(s, &bad, NULL, NULL, &err), OS_EUSAGE);
	bad = plain_model("bad", "/m/bad", "1");
	bad.parent_model_id = id + 1000;
	CHECK_EQ_INT(store_model_insert(s, &bad, NULL, NULL, &err), OS_ENOTFOUND);
	bad = plain_model("", "/m/bad", "1");
	CHECK_EQ_INT(store_model_insert(s, &bad, NULL, NULL, &err), OS_EUSAGE);

	store_model *v = NULL;
	size_t n = 0;
	CHECK(store_model_list(s, &v, &n, &err) == OS_OK);
	store_model_list_free(v, n);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(store_model_get(s, "nope", &out, &err), OS_ENOTFOUND);
	CHECK(contains(err.msg, "'nope'"));
	store_close(s);
}

TEST(test_model_delete)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_model base = plain_model("base", "/m/base.gguf", "01"), child, out = {0};
	CHECK(store_model_insert(s, &base, &out, NULL, &err) == OS_OK);
	int64_t base_id = out.id;
	store_model_clear(&out);
	child = plain_model("base-q4", "/h/models/base-q4.gguf", "02");
	child.owned_by_studio = 1;
	child.parent_model_id = base_id;
	CHECK(store_model_insert(s, &child, &out, NULL, &err) == OS_OK);
	int64_t child_id = out.id;
	store_model_clear(&out);
	CHECK(store_draft_set(s, base_id, child_id, STORE_DRAFT_RECOMMENDED, &err) == OS_OK);
	CHECK_EQ_INT(store_draft_set(s, base_id, base_id, STORE_DRAFT_USER, &err), OS_EUSAGE);
	CHECK_EQ_INT(store_draft_set(s, base_id, child_id + 99, STORE_DRAFT_USER, &err), OS_ENOTFOUND);

	store_model gone = {0};
	CHECK(store_model_delete(s, "base", &gone, &err) == OS_OK);
	CHECK_EQ_INT(gone.id, base_id);
	CHECK_EQ_INT(gone.owned_by_studio, 0);
	CHECK_EQ_STR(gone.path, "/m/base.gguf");
	store_model_clear(&gone);
	CHECK(store_model_get(s, "base-q4", &out, &err) == OS_OK);
	CHECK_EQ_INT(out.parent_model_id, 0); /* ON DELETE SET NULL */
	store_model_clear(&out);
	CHECK_EQ_INT(store_model_delete(s, "base", &gone, &err), OS_ENOTFOUND);
	CHECK(gone.name == NULL);
	CHECK(store_model_delete(s, "base-q4", &gone, &err) == OS_OK);
	CHECK_EQ_INT(gone.owned_by_studio, 1);
	store_model_clear(&gone);
	store_close(s);
	char path[400];
	snprintf(path, sizeof path, "%s/hub.db", home);
	CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM drafts"), 0); /* cascaded */
}

TEST(test_drafts_query_order)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	uint64_t rng = seed ^ 0xd4af7;
	const char *hashes[] = {"vocab-A", "vocab-B", NULL};
	int n_a = 0;
	for (int i = 0; i < 41; i++) {
		store_model m = {0};
		rand_model(&rng, &m, "d", i);
		free(m.vocab_hash);
		const char *h = hashes[test_rand_next(&rng) % 3];
		m.vocab_hash = h ? strdup(h) : NULL;
		n_a += h && strcmp(h, "vocab-A") == 0;
		/* few distinct sizes, so ties (broken by name) happen */
		m.n_params = (int64_t)(test_rand_next(&rng) % 5) * 135000000;
		CHECK_MSG(store_model_insert(s, &m, NULL, NULL, &err) == OS_OK, "%s", err.msg);
		store_model_clear(&m);
	}
	store_model *v = NULL;
	size_t n = 0;
	CHECK(store_model_list_by_vocab(s, "vocab-A", &v, &n, &err) == OS_OK);
	int ok = (int)n == n_a;
	for (size_t i = 0; ok && i < n; i++) {
		ok &= v[i].vocab_hash && strcmp(v[i].vocab_hash, "vocab-A") == 0;
		if (i > 0)
			ok &= v[i - 1].n_params < v[i].n_params ||
			      (v[i - 1].n_params == v[i].n_params && strcmp(v[i - 1].name, v[i].name) < 0);
	}
	store_model_list_free(v, n);
	CHECK_MSG(ok, "vocab-A: %zu rows, expected %d, in n_params order (seed %llu)", n, n_a,
		  (unsigned long long)seed);
	CHECK(store_model_list_by_vocab(s, "vocab-none", &v, &n, &err) == OS_OK);
	CHECK(n == 0 && v == NULL);
	store_close(s);
}

/* ---- instances, settings -------------------------------------------------------------- */

TEST(test_instances_seeded)
{
	cJSON *root = cJSON_ParseWithLength(embedded_instances_json, embedded_instances_json_len);
	CHECK(cJSON_IsArray(root));
	int n_json = cJSON_GetArraySize(root);
	CHECK(n_json >= 9);
	CHECK_EQ_INT(strlen(embedded_instances_json), embedded_instances_json_len);

	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_instance *v = NULL;
	size_t n = 0;
	CHECK(store_instance_list(s, &v, &n, &err) == OS_OK);
	int ok = (int)n == n_json + 1 && v[0].is_local && strcmp(v[0].name, STORE_LOCAL_INSTANCE) == 0;
	char why[300] = "count or local row";
	for (size_t i = 1; ok && i < n; i++) {
		ok &= !v[i].is_local && (i == 1 || strcmp(v[i - 1].name, v[i].name) < 0);
		const cJSON *e = NULL, *it;
		cJSON_ArrayForEach(it, root)
		{
			const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
			if (cJSON_IsString(nm) && strcmp(nm->valuestring, v[i].name) == 0)
				e = it;
		}
		if (!e) {
			snprintf(why, sizeof why, "row %s not in the JSON", v[i].name);
			ok = 0;
			break;
		}
		const cJSON *fp8 = cJSON_GetObjectItemCaseSensitive(e, "fp8_tflops");
		ok &= strcmp(cJSON_GetObjectItemCaseSensitive(e, "gpu_model")->valuestring,
			     v[i].gpu_model) == 0;
		ok &= cJSON_GetObjectItemCaseSensitive(e, "n_gpus")->valuedouble == (double)v[i].n_gpus;
		ok &= cJSON_GetObjectItemCaseSensitive(e, "mem_bandwidth_gbps")->valuedouble ==
		      v[i].mem_bandwidth_gbps;
		ok &= cJSON_GetObjectItemCaseSensitive(e, "usd_per_hour")->valuedouble ==
		      v[i].usd_per_hour;
		ok &= cJSON_IsNull(fp8) ? v[i].fp8_tflops == 0 : fp8->valuedouble == v[i].fp8_tflops;
		ok &= v[i].source && v[i].date && v[i].gpu_memory_gib > 0 && v[i].bf16_tflops > 0;
		if (!ok)
			snprintf(why, sizeof why, "row %s differs from the JSON", v[i].name);
	}
	store_instance_list_free(v, n);
	cJSON_Delete(root);
	CHECK_MSG(ok, "%s", why);
	store_instance it = {0};
	CHECK(store_instance_get(s, "ml.p5.48xlarge", &it, &err) == OS_OK);
	CHECK_EQ_INT(it.n_gpus, 8);
	store_instance_clear(&it);
	CHECK_EQ_INT(store_instance_get(s, "ml.nope", &it, &err), OS_ENOTFOUND);
	store_close(s);
}

TEST(test_local_price_and_settings)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_instance it = {0};
	CHECK(store_instance_get(s, STORE_LOCAL_INSTANCE, &it, &err) == OS_OK);
	CHECK(it.is_local && it.usd_per_hour == 0);
	store_instance_clear(&it);
	uint64_t rng = seed ^ 0x5e77;
	double price = (double)(test_rand_next(&rng) % 100000) / 1000.0 + 0.001;
	CHECK(store_instance_set_local_price(s, price, &err) == OS_OK);
	CHECK_EQ_INT(store_instance_set_local_price(s, -1, &err), OS_ERANGE);
	CHECK_EQ_INT(store_instance_set_local_price(s, NAN, &err), OS_ERANGE);
	store_close(s);
	CHECK(store_open(&s, home, &err) == OS_OK);
	CHECK(store_instance_get(s, STORE_LOCAL_INSTANCE, &it, &err) == OS_OK);
	CHECK_NEAR(it.usd_per_hour, price, 0);
	store_instance_clear(&it);
	char *v = NULL;
	CHECK(store_setting_get(s, STORE_SETTING_LOCAL_PRICE, &v, &err) == OS_OK);
	CHECK_NEAR(strtod(v, NULL), price, 0);
	free(v);

	CHECK_EQ_INT(store_setting_get(s, "theme", &v, &err), OS_ENOTFOUND);
	CHECK(v == NULL);
	CHECK(store_setting_set(s, "theme", "dusk 'é'", &err) == OS_OK);
	CHECK(store_setting_set(s, "theme", "dawn", &err) == OS_OK);
	CHECK(store_setting_get(s, "theme", &v, &err) == OS_OK);
	CHECK_EQ_STR(v, "dawn");
	free(v);
	CHECK_EQ_INT(store_setting_set(s, "", "x", &err), OS_EUSAGE);
	store_close(s);
}

TEST(test_transactions_nest)
{
	char home[300];
	new_home(home, sizeof home);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_model a = plain_model("a", "/a", "1"), b = plain_model("b", "/b", "2"), out = {0};
	/* outer rollback undoes an API call's own (nested) transaction */
	CHECK(store_tx_begin(s, &err) == OS_OK);
	CHECK(store_model_insert(s, &a, NULL, NULL, &err) == OS_OK);
	store_tx_rollback(s);
	CHECK_EQ_INT(store_model_get(s, "a", &out, &err), OS_ENOTFOUND);
	/* inner rollback, outer commit: only the outer work stays */
	CHECK(store_tx_begin(s, &err) == OS_OK);
	CHECK(store_setting_set(s, "k", "v", &err) == OS_OK);
	CHECK(store_tx_begin(s, &err) == OS_OK);
	CHECK(store_model_insert(s, &a, NULL, NULL, &err) == OS_OK);
	store_tx_rollback(s);
	CHECK(store_model_insert(s, &b, NULL, NULL, &err) == OS_OK);
	CHECK(store_tx_commit(s, &err) == OS_OK);
	CHECK_EQ_INT(store_model_get(s, "a", &out, &err), OS_ENOTFOUND);
	CHECK(store_model_get(s, "b", &out, &err) == OS_OK);
	store_model_clear(&out);
	char *v = NULL;
	CHECK(store_setting_get(s, "k", &v, &err) == OS_OK);
	free(v);
	CHECK_EQ_INT(store_tx_commit(s, &err), OS_EINTERNAL);
	/* a failing call inside a caller's transaction leaves the caller's work intact */
	CHECK(store_tx_begin(s, &err) == OS_OK);
	CHECK(store_setting_set(s, "k2", "v2", &err) == OS_OK);
	store_model clash = plain_model("b", "/other", "3");
	CHECK_EQ_INT(store_model_insert(s, &clash, NULL, NULL, &err), OS_EEXISTS);
	CHECK(store_tx_commit(s, &err) == OS_OK);
	CHECK(store_setting_get(s, "k2", &v, &err) == OS_OK);
	free(v);
	store_close(s);
}

TEST(test_data_version_sees_other_writers)
{
	char home[300];
	new_home(home, sizeof home);
	store *s1 = NULL, *s2 = NULL;
	os_error err = {0};
	CHECK(store_open(&s1, home, &err) == OS_OK);
	CHECK(store_open(&s2, home, &err) == OS_OK);
	int64_t v0 = 0, v1 = 0, v2 = 0;
	CHECK(store_data_version(s1, &v0, &err) == OS_OK);
	CHECK(store_data_version(s1, &v1, &err) == OS_OK);
	CHECK_EQ_INT(v1, v0);
	CHECK(store_setting_set(s2, "poke", "1", &err) == OS_OK);
	CHECK(store_data_version(s1, &v2, &err) == OS_OK);
	CHECK(v2 != v1);
	store_close(s1);
	store_close(s2);
}

/* ---- two processes -------------------------------------------------------------------- */

static int child_insert(const char *home, int who, int n)
{
	store *s = NULL;
	os_error err = {0};
	if (store_open(&s, home, &err) != OS_OK) {
		fprintf(stderr, "child %d: open: %s\n", who, err.msg);
		return 10;
	}
	uint64_t rng = seed ^ (uint64_t)(who + 1) * 0x9e3779b97f4a7c15ull;
	int bad = 0;
	for (int i = 0; i < n && !bad; i++) {
		store_model m = {0};
		char prefix[16];
		snprintf(prefix, sizeof prefix, "p%d-", who);
		rand_model(&rng, &m, prefix, i);
		free(m.sha256);
		m.sha256 = malloc(32);
		if (m.sha256)
			snprintf(m.sha256, 32, "%d-%d", who, i);
		int existed = 1;
		if (store_model_insert(s, &m, NULL, &existed, &err) != OS_OK || existed) {
			fprintf(stderr, "child %d: insert %d: %s\n", who, i, err.msg);
			bad = 20;
		}
		store_model_clear(&m);
	}
	store_close(s);
	return bad;
}

TEST(test_two_processes_write_at_once)
{
	char home[300], path[400];
	new_home(home, sizeof home); /* fresh: both children also race to create and migrate */
	enum { PER_CHILD = 200 };
	pid_t pids[2];
	for (int w = 0; w < 2; w++) {
		fflush(stdout);
		pids[w] = fork();
		CHECK(pids[w] >= 0);
		if (pids[w] == 0)
			_exit(child_insert(home, w, PER_CHILD));
	}
	int codes[2];
	for (int w = 0; w < 2; w++) {
		int status = 0;
		CHECK(waitpid(pids[w], &status, 0) == pids[w]);
		codes[w] = WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
	}
	CHECK_MSG(codes[0] == 0 && codes[1] == 0, "children exited %d, %d (10 open, 20 insert)",
		  codes[0], codes[1]);
	store *s = NULL;
	os_error err = {0};
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_model *v = NULL;
	size_t n = 0;
	CHECK(store_model_list(s, &v, &n, &err) == OS_OK);
	int per[2] = {0, 0};
	for (size_t i = 0; i < n; i++)
		if (v[i].name[0] == 'p' && (v[i].name[1] == '0' || v[i].name[1] == '1'))
			per[v[i].name[1] - '0']++;
	store_model_list_free(v, n);
	store_close(s);
	CHECK_EQ_INT(n, 2 * PER_CHILD);
	CHECK_EQ_INT(per[0], PER_CHILD);
	CHECK_EQ_INT(per[1], PER_CHILD);
	snprintf(path, sizeof path, "%s/hub.db", home);
	char *ic = raw_query(path, "PRAGMA integrity_check");
	int ok = ic && strcmp(ic, "ok") == 0;
	CHECK_MSG(ok, "integrity_check: %s", ic ? ic : "(failed)");
	free(ic);
	free(raw_query(path, "SELECT 1"));
	long long n_local = raw_int(path, "SELECT count(*) FROM instances WHERE is_local = 1");
	CHECK_EQ_INT(n_local, 1);
}

int main(void)
{
	const char *env_seed = getenv("TEST_SEED");
	seed = env_seed ? strtoull(env_seed, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	printf("test_store: seed %llu (set TEST_SEED to repeat)\n", (unsigned long long)seed);
	snprintf(test_root, sizeof test_root, "/tmp/test_store.XXXXXX");
	if (!mkdtemp(test_root)) {
		printf("cannot create a temporary folder: %s\n0 passed, 1 failed\n", strerror(errno));
		return 1;
	}
	chmod(test_root, 0755); /* the read-only test's child (user nobody) must traverse it */

	RUN(test_home_resolve);
	RUN(test_migrate_from_empty);
	RUN(test_reopen_is_noop);
	RUN(test_newer_version_refused);
	RUN(test_corrupt_refused);
	RUN(test_malformed_refused);
	RUN(test_readonly_home);
	RUN(test_model_roundtrip_property);
	RUN(test_model_insert_idempotent_and_clash);
	RUN(test_model_delete);
	RUN(test_drafts_query_order);
	RUN(test_instances_seeded);
	RUN(test_local_price_and_settings);
	RUN(test_transactions_nest);
	RUN(test_data_version_sees_other_writers);
	RUN(test_two_processes_write_at_once);

	rm_tree(test_root);
	return test_summary();
}
