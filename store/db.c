/* db.c: opening hub.db (WAL, foreign keys, busy timeout), schema migrations by
 * PRAGMA user_version, transactions with savepoint nesting, and SQLite error translation. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_internal.h"

#define BUSY_TIMEOUT_MS 5000

/* Migration i (1-based) takes the schema from version i-1 to i. Later versions append
 * entries here (ALTER TABLE ... ADD COLUMN); a shipped entry is never edited.
 * Times: *_at INTEGER columns are unix seconds; jobs/events/deployments use REAL unix
 * seconds so sub-second ordering and "changed since" polls work. */
static const char *const migrations[] = {
	/* 1: every table of the design's store sketch */
	"CREATE TABLE models (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),\n"
	"  path TEXT NOT NULL CHECK (length(path) > 0),\n"
	"  source_path TEXT,\n"
	"  owned_by_studio INTEGER NOT NULL DEFAULT 0 CHECK (owned_by_studio IN (0, 1)),\n"
	"  format TEXT NOT NULL CHECK (format IN ('gguf', 'safetensors')),\n"
	"  architecture TEXT,\n"
	"  n_params INTEGER NOT NULL DEFAULT 0 CHECK (n_params >= 0),\n"
	"  context_length INTEGER NOT NULL DEFAULT 0 CHECK (context_length >= 0),\n"
	"  n_layers INTEGER NOT NULL DEFAULT 0 CHECK (n_layers >= 0),\n"
	"  n_heads INTEGER NOT NULL DEFAULT 0 CHECK (n_heads >= 0),\n"
	"  n_kv_heads INTEGER NOT NULL DEFAULT 0 CHECK (n_kv_heads >= 0),\n"
	"  hidden_size INTEGER NOT NULL DEFAULT 0 CHECK (hidden_size >= 0),\n"
	"  ffn_size INTEGER NOT NULL DEFAULT 0 CHECK (ffn_size >= 0),\n"
	"  vocab_size INTEGER NOT NULL DEFAULT 0 CHECK (vocab_size >= 0),\n"
	"  tokenizer_kind TEXT,\n"
	"  vocab_hash TEXT,\n"
	"  precision TEXT,\n"
	"  file_size INTEGER NOT NULL DEFAULT 0 CHECK (file_size >= 0),\n"
	"  sha256 TEXT,\n"
	"  license TEXT,\n"
	"  parent_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  recipe TEXT CHECK (recipe IS NULL OR json_valid(recipe)),\n"
	"  created_at INTEGER NOT NULL,\n"
	"  UNIQUE (sha256, path)\n"
	");\n"
	"CREATE INDEX models_by_vocab ON models(vocab_hash, n_params);\n"
	"CREATE INDEX models_by_parent ON models(parent_model_id);\n"
	"\n"
	"CREATE TABLE drafts (\n"
	"  target_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
	"  draft_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
	"  kind TEXT NOT NULL CHECK (kind IN ('recommended', 'user')),\n"
	"  created_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY (target_id, draft_id),\n"
	"  CHECK (target_id <> draft_id)\n"
	");\n"
	"CREATE INDEX drafts_by_draft ON drafts(draft_id);\n"
	"\n"
	"CREATE TABLE jobs (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT,\n"
	"  spec TEXT NOT NULL CHECK (json_valid(spec)),\n"
	"  state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN\n"
	"    ('queued', 'running', 'completed', 'failed', 'stopping', 'stopped')),\n"
	"  stage TEXT,\n"
	"  progress REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),\n"
	"  eta_seconds REAL CHECK (eta_seconds IS NULL OR eta_seconds >= 0),\n"
	"  pid INTEGER,\n"
	"  error TEXT,\n"
	"  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  result_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  created_at REAL NOT NULL,\n"
	"  started_at REAL,\n"
	"  finished_at REAL,\n"
	"  updated_at REAL NOT NULL,\n"
	"  stop_requested INTEGER NOT NULL DEFAULT 0 CHECK (stop_requested IN (0, 1))\n"
	");\n"
	"CREATE INDEX jobs_by_state ON jobs(state, id);\n"
	"CREATE INDEX jobs_by_update ON jobs(updated_at);\n"
	"\n"
	"CREATE TABLE job_events (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,\n"
	"  time REAL NOT NULL,\n"
	"  stage TEXT,\n"
	"  level TEXT NOT NULL DEFAULT 'info' CHECK (level IN ('debug', 'info', 'warn', 'error')),\n"
	"  message TEXT NOT NULL\n"
	");\n"
	"CREATE INDEX job_events_by_job ON job_events(job_id, id);\n"
	"\n"
	"CREATE TABLE artifacts (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  key TEXT NOT NULL UNIQUE CHECK (length(key) > 0),\n"
	"  recipe TEXT CHECK (recipe IS NULL OR json_valid(recipe)),\n"
	"  path TEXT NOT NULL,\n"
	"  size INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),\n"
	"  build_seconds REAL CHECK (build_seconds IS NULL OR build_seconds >= 0),\n"
	"  backend TEXT,\n"
	"  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,\n"
	"  created_at INTEGER NOT NULL,\n"
	"  last_used_at INTEGER\n"
	");\n"
	"CREATE INDEX artifacts_by_model ON artifacts(model_id);\n"
	"\n"
	"CREATE TABLE bench_runs (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,\n"
	"  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  model_name TEXT NOT NULL,\n"
	"  artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,\n"
	"  label TEXT,\n"
	"  backend TEXT,\n"
	"  instance_name TEXT,\n"
	"  input_tokens INTEGER CHECK (input_tokens IS NULL OR input_tokens >= 0),\n"
	"  output_tokens INTEGER CHECK (output_tokens IS NULL OR output_tokens >= 0),\n"
	"  seed INTEGER,\n"
	"  config TEXT CHECK (config IS NULL OR json_valid(config)),\n"
	"  created_at INTEGER NOT NULL\n"
	");\n"
	"CREATE INDEX bench_runs_by_model ON bench_runs(model_id);\n"
	"\n"
	"CREATE TABLE bench_points (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  run_id INTEGER NOT NULL REFERENCES bench_runs(id) ON DELETE CASCADE,\n"
	"  concurrency INTEGER NOT NULL CHECK (concurrency >= 1),\n"
	"  n_requests INTEGER NOT NULL DEFAULT 0 CHECK (n_requests >= 0),\n"
	"  n_errors INTEGER NOT NULL DEFAULT 0 CHECK (n_errors >= 0),\n"
	"  ttft_p50_ms REAL, ttft_p90_ms REAL, ttft_p99_ms REAL,\n"
	"  itl_p50_ms REAL, itl_p90_ms REAL, itl_p99_ms REAL,\n"
	"  latency_p50_ms REAL, latency_p90_ms REAL, latency_p99_ms REAL,\n"
	"  tokens_per_s REAL,\n"       /* output tok/s per request */
	"  total_tokens_per_s REAL,\n" /* whole load, tok/s */
	"  UNIQUE (run_id, concurrency)\n"
	");\n"
	"\n"
	"CREATE TABLE eval_results (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,\n"
	"  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  model_name TEXT NOT NULL,\n"
	"  baseline_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  dataset TEXT,\n"
	"  metric TEXT NOT NULL,\n" /* perplexity | kl_divergence | top1_agreement | acceptance_rate ... */
	"  value REAL NOT NULL,\n"
	"  n_tokens INTEGER CHECK (n_tokens IS NULL OR n_tokens >= 0),\n"
	"  details TEXT CHECK (details IS NULL OR json_valid(details)),\n"
	"  created_at INTEGER NOT NULL\n"
	");\n"
	"CREATE INDEX eval_results_by_model ON eval_results(model_id, metric);\n"
	"\n"
	"CREATE TABLE instances (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),\n"
	"  gpu_model TEXT NOT NULL,\n"
	"  n_gpus INTEGER NOT NULL DEFAULT 0 CHECK (n_gpus >= 0),\n"
	"  gpu_memory_gib REAL NOT NULL DEFAULT 0 CHECK (gpu_memory_gib >= 0),\n"
	"  mem_bandwidth_gbps REAL NOT NULL DEFAULT 0 CHECK (mem_bandwidth_gbps >= 0),\n"
	"  bf16_tflops REAL NOT NULL DEFAULT 0 CHECK (bf16_tflops >= 0),\n"
	"  fp8_tflops REAL CHECK (fp8_tflops IS NULL OR fp8_tflops >= 0),\n"
	"  usd_per_hour REAL NOT NULL DEFAULT 0 CHECK (usd_per_hour >= 0),\n"
	"  source TEXT,\n"
	"  date TEXT,\n"
	"  is_local INTEGER NOT NULL DEFAULT 0 CHECK (is_local IN (0, 1))\n"
	");\n"
	"CREATE UNIQUE INDEX instances_one_local ON instances(is_local) WHERE is_local = 1;\n"
	"\n"
	"CREATE TABLE deployments (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
	"  model_name TEXT NOT NULL,\n"
	"  artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,\n"
	"  pid INTEGER,\n"
	"  host TEXT,\n"
	"  port INTEGER CHECK (port IS NULL OR (port >= 1 AND port <= 65535)),\n"
	"  state TEXT NOT NULL DEFAULT 'starting' CHECK (state IN\n"
	"    ('starting', 'running', 'stopping', 'stopped', 'failed')),\n"
	"  error TEXT,\n"
	"  created_at REAL NOT NULL,\n"
	"  started_at REAL,\n"
	"  stopped_at REAL\n"
	");\n"
	"CREATE INDEX deployments_by_state ON deployments(state);\n"
	"\n"
	"CREATE TABLE settings (\n"
	"  key TEXT PRIMARY KEY,\n"
	"  value TEXT NOT NULL\n"
	");\n",
	/* 2: the worker's identity beside its pid (pid + process start time), so a reused pid
	 * is not mistaken for a live worker (store/jobs.c) */
	"ALTER TABLE jobs ADD COLUMN worker_token TEXT;\n",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION, "one migration per schema version");

static int is_damage(int primary)
{
	return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT;
}

int store_db_fail_rc(store *s, int sqlite_rc, os_error *err, const char *what)
{
	int primary = sqlite_rc & 0xff;
	const char *path = s && s->db_path ? s->db_path : "hub.db";
	const char *msg = s && s->db && (sqlite3_errcode(s->db) & 0xff) == primary
				  ? sqlite3_errmsg(s->db)
				  : sqlite3_errstr(sqlite_rc);
	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
		return os_error_set(err, OS_EBUSY,
				    "%s: '%s' is locked by another optstudio process for more "
				    "than %d s (%s); try again",
				    what, path, BUSY_TIMEOUT_MS / 1000, msg);
	if (is_damage(primary))
		return os_error_set(err, OS_EDB,
				    "%s: '%s' is damaged: %s; move it aside (mv '%s' '%s.bad', "
				    "with any -wal/-shm files) and optstudio will create a fresh one",
				    what, path, msg, path, path);
	if (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN || primary == SQLITE_PERM ||
	    primary == SQLITE_IOERR || primary == SQLITE_FULL)
		return os_error_set(err, OS_EIO, "%s: '%s': %s", what, path, msg);
	if (primary == SQLITE_NOMEM)
		return os_error_set(err, OS_ENOMEM, "%s: out of memory", what);
	return os_error_set(err, OS_EDB, "%s: %s (in '%s')", what, msg, path);
}

int store_db_fail(store *s, os_error *err, const char *what)
{
	return store_db_fail_rc(s, s && s->db ? sqlite3_extended_errcode(s->db) : SQLITE_ERROR, err,
				what);
}

int store_prepare(store *s, const char *sql, sqlite3_stmt **st, os_error *err)
{
	*st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
		return store_db_fail(s, err, "prepare statement");
	return OS_OK;
}

int store_exec(store *s, const char *sql, os_error *err)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return store_db_fail(s, err, "run statement");
	return OS_OK;
}

int store_bind_text(sqlite3_stmt *st, int idx, const char *v)
{
	return v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, idx);
}

int store_grow_rows(void *array_ptr, size_t len, size_t *cap, size_t elem, const char *what,
		    os_error *err)
{
	if (len < *cap)
		return OS_OK;
	/* array_ptr points at a T *, which may not be read through a void ** */
	void *array;
	memcpy(&array, array_ptr, sizeof array);
	size_t ncap = *cap ? *cap * 2 : 16;
	void *grown = realloc(array, ncap * elem);
	if (!grown)
		return os_error_set(err, OS_ENOMEM, "out of memory %s", what);
	memcpy(array_ptr, &grown, sizeof grown);
	*cap = ncap;
	return OS_OK;
}

int store_column_strdup(sqlite3_stmt *st, int col, char **dst, os_error *err)
{
	*dst = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return OS_OK;
	const unsigned char *t = sqlite3_column_text(st, col);
	int n = sqlite3_column_bytes(st, col);
	if (!t)
		return os_error_set(err, OS_ENOMEM, "out of memory reading a text column");
	char *copy = malloc((size_t)n + 1);
	if (!copy)
		return os_error_set(err, OS_ENOMEM, "out of memory (%d bytes of text)", n + 1);
	memcpy(copy, t, (size_t)n);
	copy[n] = '\0';
	*dst = copy;
	return OS_OK;
}

/* Reads one integer from a single-row pragma or query. */
static int query_int64(store *s, const char *sql, int64_t *v, os_error *err, const char *what)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*v = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			rc = SQLITE_ERROR;
		}
	}
	if (rc != SQLITE_OK) {
		int r = store_db_fail_rc(s, sqlite3_errcode(s->db) != SQLITE_OK ? sqlite3_errcode(s->db) : rc,
					 err, what);
		sqlite3_finalize(st);
		return r;
	}
	sqlite3_finalize(st);
	return OS_OK;
}

int store_schema_version(store *s, int *version, os_error *err)
{
	int64_t v = 0;
	int rc = query_int64(s, "PRAGMA user_version", &v, err, "read schema version");
	if (rc)
		return rc;
	*version = v < 0 || v > INT_MAX ? -1 : (int)v;
	return OS_OK;
}

int store_data_version(store *s, int64_t *version, os_error *err)
{
	return query_int64(s, "PRAGMA data_version", version, err, "read data version");
}

/* ---- transactions ---------------------------------------------------------------------- */

int store_tx_begin(store *s, os_error *err)
{
	if (s->tx_depth == 0) {
		if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			return store_db_fail(s, err, "begin transaction");
	} else {
		char sql[64];
		snprintf(sql, sizeof sql, "SAVEPOINT sp%d", s->tx_depth);
		if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return store_db_fail(s, err, "open savepoint");
	}
	s->tx_depth++;
	return OS_OK;
}

int store_tx_commit(store *s, os_error *err)
{
	if (s->tx_depth <= 0)
		return os_error_set(err, OS_EINTERNAL, "commit without a transaction");
	s->tx_depth--;
	if (s->tx_depth == 0) {
		if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			int rc = store_db_fail(s, err, "commit");
			if (!sqlite3_get_autocommit(s->db))
				sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
		return OS_OK;
	}
	char sql[64];
	snprintf(sql, sizeof sql, "RELEASE sp%d", s->tx_depth);
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		int rc = store_db_fail(s, err, "release savepoint");
		snprintf(sql, sizeof sql, "ROLLBACK TO sp%d; RELEASE sp%d", s->tx_depth, s->tx_depth);
		sqlite3_exec(s->db, sql, NULL, NULL, NULL);
		return rc;
	}
	return OS_OK;
}

void store_tx_rollback(store *s)
{
	if (s->tx_depth <= 0)
		return;
	s->tx_depth--;
	if (s->tx_depth == 0) {
		/* SQLite may already have rolled back on its own (e.g. after SQLITE_FULL) */
		if (!sqlite3_get_autocommit(s->db))
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return;
	}
	char sql[64];
	snprintf(sql, sizeof sql, "ROLLBACK TO sp%d; RELEASE sp%d", s->tx_depth, s->tx_depth);
	sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

/* ---- open / close ---------------------------------------------------------------------- */

/* Brings the schema to STORE_SCHEMA_VERSION in one write transaction. The version is read
 * again under the write lock, so two processes opening a fresh home at once migrate once. */
static int migrate(store *s, os_error *err)
{
	int version = 0, rc;
	if ((rc = store_schema_version(s, &version, err)))
		return rc;
	if (version < 0 || version > STORE_SCHEMA_VERSION)
		goto too_new;
	if (version == STORE_SCHEMA_VERSION)
		return OS_OK;
	if ((rc = store_tx_begin(s, err)))
		return rc;
	if ((rc = store_schema_version(s, &version, err)))
		goto fail;
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		store_tx_rollback(s);
		goto too_new;
	}
	for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
		if (sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
			char what[64];
			snprintf(what, sizeof what, "migrate schema to version %d", v + 1);
			rc = store_db_fail(s, err, what);
			goto fail;
		}
	}
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	if ((rc = store_exec(s, sql, err)))
		goto fail;
	return store_tx_commit(s, err);
fail:
	store_tx_rollback(s);
	return rc;
too_new:
	return os_error_set(err, OS_EUNSUPPORTED,
			    "hub.db is schema version %d, this optstudio knows up to %d; upgrade "
			    "optstudio (database '%s')",
			    version, STORE_SCHEMA_VERSION, s->db_path);
}

/* Switches the file to WAL. Changing the journal mode needs an exclusive lock, and SQLite
 * answers SQLITE_BUSY at once (without the busy handler) when two connections race for it
 * on a fresh file, so retry here for up to the busy timeout. A file already in WAL mode
 * takes no lock. */
static int set_wal(store *s, os_error *err)
{
	const struct timespec pause = {0, 10 * 1000 * 1000}; /* 10 ms */
	int r = SQLITE_OK;
	for (int waited_ms = 0; waited_ms <= BUSY_TIMEOUT_MS; waited_ms += 10) {
		r = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
		if ((r & 0xff) != SQLITE_BUSY && (r & 0xff) != SQLITE_LOCKED)
			break;
		nanosleep(&pause, NULL);
	}
	if (r != SQLITE_OK)
		return store_db_fail(s, err, "cannot switch the hub database to WAL");
	return OS_OK;
}

static char *dup_str(const char *src)
{
	size_t n = strlen(src) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, src, n);
	return d;
}

int store_open(store **out, const char *home, os_error *err)
{
	*out = NULL;
	if (!home || !*home)
		return os_error_set(err, OS_EUSAGE, "no data home given");
	int rc = store_home_create(home, err);
	if (rc)
		return rc;

	store *s = calloc(1, sizeof *s);
	if (!s)
		return os_error_set(err, OS_ENOMEM, "out of memory opening the store");
	size_t n = strlen(home) + sizeof "/hub.db";
	s->home = dup_str(home);
	s->db_path = malloc(n);
	if (!s->home || !s->db_path) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening the store");
		goto fail;
	}
	snprintf(s->db_path, n, "%s/hub.db", home);

	int src = sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
				  NULL);
	if (src != SQLITE_OK) {
		rc = s->db ? store_db_fail(s, err, "cannot open the hub database")
			   : store_db_fail_rc(s, src, err, "cannot open the hub database");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	/* SQLite silently falls back to read-only for a write-protected file; the studio
	 * needs to write (jobs, settings), so say so now rather than at the first write */
	if (sqlite3_db_readonly(s->db, "main") == 1) {
		rc = os_error_set(err, OS_EIO,
				  "cannot open the hub database: '%s' is read-only; make it writable "
				  "(chmod u+w) or set OPTSTUDIO_HOME to a writable folder",
				  s->db_path);
		goto fail;
	}

	/* Read the version before changing anything, so a newer file is left untouched; this
	 * is also the first read of the file, where a damaged one shows. */
	int64_t v64 = 0;
	if ((rc = query_int64(s, "PRAGMA user_version", &v64, err, "cannot open the hub database")))
		goto fail;
	int version = v64 < 0 || v64 > INT_MAX ? -1 : (int)v64;
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		rc = os_error_set(err, OS_EUNSUPPORTED,
				  "hub.db is schema version %d, this optstudio knows up to %d; "
				  "upgrade optstudio (database '%s')",
				  version, STORE_SCHEMA_VERSION, s->db_path);
		goto fail;
	}
	/* journal_mode returns the resulting mode as a row; a file system without shared
	 * memory may refuse WAL, which still leaves a working (rollback-journal) database. */
	if ((rc = set_wal(s, err)))
		goto fail;
	if ((rc = store_exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", err)))
		goto fail;
	if ((rc = migrate(s, err)))
		goto fail;
	if ((rc = store_instances_seed(s, err)))
		goto fail;
	*out = s;
	return OS_OK;
fail:
	store_close(s);
	return rc;
}

void store_close(store *s)
{
	if (!s)
		return;
	if (s->db) {
		if (!sqlite3_get_autocommit(s->db))
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close_v2(s->db);
	}
	free(s->home);
	free(s->db_path);
	free(s);
}

const char *store_home(const store *s)
{
	return s->home;
}

const char *store_db_path(const store *s)
{
	return s->db_path;
}
