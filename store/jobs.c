/* jobs.c: the jobs and job_events tables: queueing, the worker's claim in one write
 * transaction, progress and stop flags, finishing, retry, and reaping jobs whose worker died. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>

#include "store_internal.h"

#define SELECT_JOB                                                                          \
	"SELECT id, name, spec, state, stage, progress, eta_seconds, pid, worker_token, error, " \
	"model_id, result_model_id, created_at, started_at, finished_at, updated_at, "          \
	"stop_requested FROM jobs "

static double now_s(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void store_job_clear(store_job *j)
{
	if (!j)
		return;
	free(j->name);
	free(j->spec);
	free(j->state);
	free(j->stage);
	free(j->worker_token);
	free(j->error);
	memset(j, 0, sizeof *j);
}

void store_job_list_free(store_job *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		store_job_clear(&v[i]);
	free(v);
}

/* Fills *j (zeroed) from a SELECT_JOB row; cleared on failure. */
static int row_to_job(sqlite3_stmt *st, store_job *j, os_error *err)
{
	memset(j, 0, sizeof *j);
	j->id = sqlite3_column_int64(st, 0);
	if (store_column_strdup(st, 1, &j->name, err) || store_column_strdup(st, 2, &j->spec, err) ||
	    store_column_strdup(st, 3, &j->state, err) || store_column_strdup(st, 4, &j->stage, err) ||
	    store_column_strdup(st, 8, &j->worker_token, err) ||
	    store_column_strdup(st, 9, &j->error, err)) {
		store_job_clear(j);
		return OS_ENOMEM;
	}
	j->progress = sqlite3_column_double(st, 5);
	j->eta_seconds = sqlite3_column_type(st, 6) == SQLITE_NULL ? -1 : sqlite3_column_double(st, 6);
	j->pid = sqlite3_column_int64(st, 7);
	j->model_id = sqlite3_column_int64(st, 10);
	j->result_model_id = sqlite3_column_int64(st, 11);
	j->created_at = sqlite3_column_double(st, 12);
	j->started_at = sqlite3_column_double(st, 13);
	j->finished_at = sqlite3_column_double(st, 14);
	j->updated_at = sqlite3_column_double(st, 15);
	j->stop_requested = sqlite3_column_int(st, 16) != 0;
	return OS_OK;
}

static int get_job(store *s, int64_t id, store_job *out, os_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_JOB "WHERE id = ?1", &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = row_to_job(st, out, err);
	else if (step == SQLITE_DONE)
		rc = os_error_set(err, OS_ENOTFOUND, "no job %lld; 'optstudio jobs' lists them",
				  (long long)id);
	else
		rc = store_db_fail(s, err, "read job");
	sqlite3_finalize(st);
	return rc;
}

int store_job_get(store *s, int64_t id, store_job *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	return get_job(s, id, out, err);
}

int store_job_list(store *s, store_job **out, size_t *n, os_error *err)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_JOB "ORDER BY id", &st, err), step;
	if (rc)
		return rc;
	store_job *v = NULL;
	size_t len = 0, cap = 0;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = store_grow_rows(&v, len, &cap, sizeof *v, "listing jobs", err)))
			goto fail;
		if ((rc = row_to_job(st, &v[len], err)))
			goto fail;
		len++;
	}
	if (step != SQLITE_DONE) {
		rc = store_db_fail(s, err, "list jobs");
		goto fail;
	}
	sqlite3_finalize(st);
	*out = v;
	*n = len;
	return OS_OK;
fail:
	sqlite3_finalize(st);
	store_job_list_free(v, len);
	return rc;
}

int store_job_count_queued(store *s, int64_t *n, os_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, "SELECT count(*) FROM jobs WHERE state = 'queued'", &st, err);
	if (rc)
		return rc;
	if (sqlite3_step(st) == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	else
		rc = store_db_fail(s, err, "count queued jobs");
	sqlite3_finalize(st);
	return rc;
}

/* Runs a one-shot statement with up to three bound int64/text parameters described by a
 * tiny format: 'i' int64, 's' text, 'd' double. Reports SQLite failures as what. */
static int run_stmt(store *s, const char *sql, const char *what, os_error *err,
		    const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, sql, &st, err);
	if (rc)
		return rc;
	va_list ap;
	va_start(ap, fmt);
	for (int i = 0; fmt[i]; i++) {
		if (fmt[i] == 'i')
			sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		else if (fmt[i] == 'd')
			sqlite3_bind_double(st, i + 1, va_arg(ap, double));
		else
			store_bind_text(st, i + 1, va_arg(ap, const char *));
	}
	va_end(ap);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = store_db_fail(s, err, what);
	sqlite3_finalize(st);
	return rc;
}

static int add_event(store *s, int64_t id, double t, const char *stage, const char *level,
		     const char *message, os_error *err)
{
	return run_stmt(s,
			"INSERT INTO job_events (job_id, time, stage, level, message) "
			"VALUES (?1, ?2, ?3, ?4, ?5)",
			"record job event", err, "idsss", id, t, stage, level, message);
}

int store_job_event_add(store *s, int64_t id, const char *stage, const char *level,
			const char *message, os_error *err)
{
	if (!level)
		level = "info";
	if (strcmp(level, "debug") && strcmp(level, "info") && strcmp(level, "warn") &&
	    strcmp(level, "error"))
		return os_error_set(err, OS_EUSAGE, "unknown event level '%s'", level);
	return add_event(s, id, now_s(), stage, level, message ? message : "", err);
}

int store_job_insert(store *s, const char *name, const char *spec, int64_t model_id,
		     store_job *out, os_error *err)
{
	if (!spec)
		return os_error_set(err, OS_EUSAGE, "no job spec given");
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	double t = now_s();
	sqlite3_stmt *st = NULL;
	if ((rc = store_prepare(s,
				"INSERT INTO jobs (name, spec, state, model_id, created_at, "
				"updated_at) VALUES (?1, ?2, 'queued', ?3, ?4, ?4)",
				&st, err)))
		goto fail;
	store_bind_text(st, 1, name);
	store_bind_text(st, 2, spec);
	if (model_id > 0)
		sqlite3_bind_int64(st, 3, model_id);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_double(st, 4, t);
	int step = sqlite3_step(st);
	if (step != SQLITE_DONE) {
		if ((sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_CONSTRAINT)
			rc = os_error_set(err, OS_EUSAGE, "job spec is not valid JSON, or model id "
					  "%lld is not in the hub", (long long)model_id);
		else
			rc = store_db_fail(s, err, "queue job");
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	int64_t id = sqlite3_last_insert_rowid(s->db);
	if ((rc = add_event(s, id, t, NULL, "info", "queued", err)))
		goto fail;
	if ((rc = store_tx_commit(s, err)))
		return rc;
	return out ? store_job_get(s, id, out, err) : OS_OK;
fail:
	sqlite3_finalize(st);
	store_tx_rollback(s);
	return rc;
}

int store_job_claim(store *s, int64_t pid, const char *token, store_job *out, int *claimed,
		    os_error *err)
{
	*claimed = 0;
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	sqlite3_stmt *st = NULL;
	int64_t id = 0;
	if ((rc = store_prepare(s, "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1",
				&st, err)))
		goto fail;
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	else if (step != SQLITE_DONE) {
		rc = store_db_fail(s, err, "find a queued job");
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (!id) {
		store_tx_rollback(s);
		return OS_OK;
	}
	double t = now_s();
	if ((rc = run_stmt(s,
			   "UPDATE jobs SET state = 'running', pid = ?2, worker_token = ?3, "
			   "started_at = ?4, updated_at = ?4, finished_at = NULL, stage = NULL, "
			   "progress = 0, eta_seconds = NULL, error = NULL, stop_requested = 0 "
			   "WHERE id = ?1",
			   "claim job", err, "iisd", id, pid, token, t)))
		goto fail;
	char msg[96];
	snprintf(msg, sizeof msg, "started by worker pid %lld", (long long)pid);
	if ((rc = add_event(s, id, t, NULL, "info", msg, err)))
		goto fail;
	if ((rc = store_tx_commit(s, err)))
		return rc;
	*claimed = 1;
	return store_job_get(s, id, out, err);
fail:
	sqlite3_finalize(st);
	store_tx_rollback(s);
	return rc;
}

int store_job_stop_requested(store *s, int64_t id, int *stop, os_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, "SELECT state, stop_requested FROM jobs WHERE id = ?1", &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(st, 0);
		int owned = state && (!strcmp(state, "running") || !strcmp(state, "stopping"));
		*stop = !owned || sqlite3_column_int(st, 1) != 0;
	} else if (step == SQLITE_DONE) {
		*stop = 1; /* deleted under us */
	} else {
		rc = store_db_fail(s, err, "read stop flag");
	}
	sqlite3_finalize(st);
	return rc;
}

int store_job_update(store *s, int64_t id, const char *stage, double progress,
		     double eta_seconds, int *stop, os_error *err)
{
	if (!(progress >= 0))
		progress = 0;
	if (progress > 1)
		progress = 1;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "UPDATE jobs SET stage = ?2, progress = ?3, eta_seconds = ?4, "
			       "updated_at = ?5 WHERE id = ?1 AND state IN ('running', 'stopping')",
			       &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	store_bind_text(st, 2, stage);
	sqlite3_bind_double(st, 3, progress);
	if (eta_seconds >= 0)
		sqlite3_bind_double(st, 4, eta_seconds);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_double(st, 5, now_s());
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = store_db_fail(s, err, "update job progress");
	sqlite3_finalize(st);
	if (rc)
		return rc;
	if (stop)
		return store_job_stop_requested(s, id, stop, err);
	return OS_OK;
}

static int state_is(const store_job *j, const char *a, const char *b)
{
	return j->state && (!strcmp(j->state, a) || (b && !strcmp(j->state, b)));
}

int store_job_request_stop(store *s, int64_t id, char **state_after, os_error *err)
{
	if (state_after)
		*state_after = NULL;
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	store_job j = {0};
	const char *next = NULL;
	if ((rc = get_job(s, id, &j, err)))
		goto fail;
	double t = now_s();
	if (state_is(&j, "queued", NULL)) {
		next = "stopped";
		rc = run_stmt(s,
			      "UPDATE jobs SET state = 'stopped', stop_requested = 1, "
			      "finished_at = ?2, updated_at = ?2, error = 'stopped before it started' "
			      "WHERE id = ?1",
			      "stop job", err, "id", id, t);
	} else if (state_is(&j, "running", "stopping")) {
		next = "stopping";
		rc = run_stmt(s,
			      "UPDATE jobs SET state = 'stopping', stop_requested = 1, updated_at = ?2 "
			      "WHERE id = ?1",
			      "stop job", err, "id", id, t);
	} else {
		rc = os_error_set(err, OS_EUSAGE, "job %lld is %s; there is nothing to stop",
				  (long long)id, j.state);
	}
	if (rc)
		goto fail;
	if ((rc = add_event(s, id, t, j.stage, "info", "stop requested", err)))
		goto fail;
	store_job_clear(&j);
	if ((rc = store_tx_commit(s, err)))
		return rc;
	if (state_after && !(*state_after = strdup(next)))
		return os_error_set(err, OS_ENOMEM, "out of memory");
	return OS_OK;
fail:
	store_job_clear(&j);
	store_tx_rollback(s);
	return rc;
}

int store_job_finish(store *s, int64_t id, const char *state, const char *error, os_error *err)
{
	if (!state || (strcmp(state, "completed") && strcmp(state, "failed") &&
		       strcmp(state, "stopped")))
		return os_error_set(err, OS_EUSAGE, "a job ends completed, failed or stopped, not "
				    "'%s'", state ? state : "(null)");
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	store_job j = {0};
	if ((rc = get_job(s, id, &j, err)))
		goto fail;
	if (!state_is(&j, "running", "stopping")) {
		rc = os_error_set(err, OS_EBUSY, "job %lld is %s, no longer running", (long long)id,
				  j.state);
		goto fail;
	}
	double t = now_s();
	int done = !strcmp(state, "completed");
	if ((rc = run_stmt(s,
			   done ? "UPDATE jobs SET state = ?2, error = NULL, progress = 1, "
				  "eta_seconds = NULL, finished_at = ?3, updated_at = ?3 WHERE id = ?1"
				: "UPDATE jobs SET state = ?2, error = ?4, eta_seconds = NULL, "
				  "finished_at = ?3, updated_at = ?3 WHERE id = ?1",
			   "finish job", err, "isds", id, state, t, error)))
		goto fail;
	char msg[600];
	snprintf(msg, sizeof msg, "%s%s%s", state, error ? ": " : "", error ? error : "");
	if ((rc = add_event(s, id, t, j.stage, done ? "info" : !strcmp(state, "failed") ? "error"
								: "warn",
			    msg, err)))
		goto fail;
	store_job_clear(&j);
	return store_tx_commit(s, err);
fail:
	store_job_clear(&j);
	store_tx_rollback(s);
	return rc;
}

int store_job_set_result_model(store *s, int64_t id, int64_t model_id, os_error *err)
{
	return run_stmt(s, "UPDATE jobs SET result_model_id = ?2, updated_at = ?3 WHERE id = ?1",
			"record the job's model", err, "iid", id, model_id, now_s());
}

int store_job_retry(store *s, int64_t id, os_error *err)
{
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	store_job j = {0};
	if ((rc = get_job(s, id, &j, err)))
		goto fail;
	if (!state_is(&j, "failed", "stopped")) {
		rc = os_error_set(err, OS_EUSAGE, "job %lld is %s; only a failed or stopped job "
				  "can be retried", (long long)id, j.state);
		goto fail;
	}
	double t = now_s();
	if ((rc = run_stmt(s,
			   "UPDATE jobs SET state = 'queued', stage = NULL, progress = 0, "
			   "eta_seconds = NULL, pid = NULL, worker_token = NULL, error = NULL, "
			   "result_model_id = NULL, started_at = NULL, finished_at = NULL, "
			   "stop_requested = 0, updated_at = ?2 WHERE id = ?1",
			   "retry job", err, "id", id, t)))
		goto fail;
	if ((rc = add_event(s, id, t, NULL, "info", "queued again (retry)", err)))
		goto fail;
	store_job_clear(&j);
	return store_tx_commit(s, err);
fail:
	store_job_clear(&j);
	store_tx_rollback(s);
	return rc;
}

int store_job_delete(store *s, int64_t id, os_error *err)
{
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	store_job j = {0};
	if ((rc = get_job(s, id, &j, err)))
		goto fail;
	if (state_is(&j, "running", "stopping")) {
		rc = os_error_set(err, OS_EBUSY, "job %lld is %s; stop it first (optstudio jobs "
				  "stop %lld)", (long long)id, j.state, (long long)id);
		goto fail;
	}
	if ((rc = run_stmt(s, "DELETE FROM jobs WHERE id = ?1", "delete job", err, "i", id)))
		goto fail;
	store_job_clear(&j);
	return store_tx_commit(s, err);
fail:
	store_job_clear(&j);
	store_tx_rollback(s);
	return rc;
}

/* ---- events ------------------------------------------------------------------------------ */

void store_job_event_list_free(store_job_event *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].stage);
		free(v[i].level);
		free(v[i].message);
	}
	free(v);
}

int store_job_event_list(store *s, int64_t job_id, int64_t after_id, store_job_event **out,
			 size_t *n, os_error *err)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "SELECT id, job_id, time, stage, level, message FROM job_events "
			       "WHERE job_id = ?1 AND id > ?2 ORDER BY id",
			       &st, err), step;
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, job_id);
	sqlite3_bind_int64(st, 2, after_id);
	store_job_event *v = NULL;
	size_t len = 0, cap = 0;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = store_grow_rows(&v, len, &cap, sizeof *v, "listing events", err)))
			goto fail;
		store_job_event *e = &v[len];
		memset(e, 0, sizeof *e);
		len++;
		e->id = sqlite3_column_int64(st, 0);
		e->job_id = sqlite3_column_int64(st, 1);
		e->time = sqlite3_column_double(st, 2);
		if ((rc = store_column_strdup(st, 3, &e->stage, err)) ||
		    (rc = store_column_strdup(st, 4, &e->level, err)) ||
		    (rc = store_column_strdup(st, 5, &e->message, err)))
			goto fail;
	}
	if (step != SQLITE_DONE) {
		rc = store_db_fail(s, err, "list job events");
		goto fail;
	}
	sqlite3_finalize(st);
	*out = v;
	*n = len;
	return OS_OK;
fail:
	sqlite3_finalize(st);
	store_job_event_list_free(v, len);
	return rc;
}

/* ---- dead workers ------------------------------------------------------------------------ */

int store_jobs_process_token(int64_t pid, char *buf, size_t len, os_error *err)
{
	if (pid <= 0)
		return os_error_set(err, OS_ENOTFOUND, "no process %lld", (long long)pid);
	if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
		return os_error_set(err, OS_ENOTFOUND, "no process %lld", (long long)pid);
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return os_error_set(err, OS_ENOTFOUND, "no process %lld", (long long)pid);
	size_t got = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[got] = '\0';
	/* "pid (comm) S ppid ..."; comm may hold spaces and parentheses: skip to the last ')' */
	char *p = strrchr(line, ')');
	if (!p || p[1] != ' ')
		return os_error_set(err, OS_ENOTFOUND, "no process %lld", (long long)pid);
	char state = p[2];
	if (state == 'Z' || state == 'X') /* killed but not yet reaped by its parent */
		return os_error_set(err, OS_ENOTFOUND, "process %lld is a zombie", (long long)pid);
	/* field 3 is the state; start time is field 22 */
	int field = 3;
	char *q = p + 2;
	while (*q && field < 22) {
		if (*q == ' ')
			field++;
		q++;
	}
	unsigned long long start = strtoull(q, NULL, 10);
	snprintf(buf, len, "%lld:%llu", (long long)pid, start);
	return OS_OK;
}

int store_jobs_reap_dead(store *s, size_t *n_reaped, os_error *err)
{
	if (n_reaped)
		*n_reaped = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "SELECT id, pid, worker_token FROM jobs WHERE state IN "
			       "('running', 'stopping')",
			       &st, err);
	if (rc)
		return rc;
	/* collect first: the checks and updates run outside this read */
	struct dead { int64_t id, pid; } dead[64];
	size_t n_dead = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW && n_dead < sizeof dead / sizeof dead[0]) {
		int64_t id = sqlite3_column_int64(st, 0), pid = sqlite3_column_int64(st, 1);
		const char *token = (const char *)sqlite3_column_text(st, 2);
		char now[64];
		int alive = store_jobs_process_token(pid, now, sizeof now, NULL) == OS_OK &&
			    (!token || strcmp(token, now) == 0);
		if (!alive)
			dead[n_dead++] = (struct dead){id, pid};
	}
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		rc = store_db_fail(s, err, "look for dead workers");
	sqlite3_finalize(st);
	if (rc || !n_dead)
		return rc;
	if ((rc = store_tx_begin(s, err)))
		return rc;
	size_t reaped = 0;
	double t = now_s();
	for (size_t i = 0; i < n_dead; i++) {
		char msg[128];
		snprintf(msg, sizeof msg, "worker (pid %lld) died", (long long)dead[i].pid);
		/* the state and pid are checked again under the write lock: the job may have
		 * finished, or been retried and claimed by a new worker, since the read */
		sqlite3_stmt *up = NULL;
		if ((rc = store_prepare(s,
					"UPDATE jobs SET state = 'failed', error = ?3, eta_seconds = NULL, "
					"finished_at = ?4, updated_at = ?4 WHERE id = ?1 AND pid = ?2 "
					"AND state IN ('running', 'stopping')",
					&up, err)))
			goto fail;
		sqlite3_bind_int64(up, 1, dead[i].id);
		sqlite3_bind_int64(up, 2, dead[i].pid);
		sqlite3_bind_text(up, 3, msg, -1, SQLITE_TRANSIENT);
		sqlite3_bind_double(up, 4, t);
		if (sqlite3_step(up) != SQLITE_DONE) {
			rc = store_db_fail(s, err, "mark job failed");
			sqlite3_finalize(up);
			goto fail;
		}
		sqlite3_finalize(up);
		if (sqlite3_changes(s->db) == 0)
			continue;
		char ev[160];
		snprintf(ev, sizeof ev, "failed: %s", msg);
		if ((rc = add_event(s, dead[i].id, t, NULL, "error", ev, err)))
			goto fail;
		reaped++;
	}
	if ((rc = store_tx_commit(s, err)))
		return rc;
	if (n_reaped)
		*n_reaped = reaped;
	return OS_OK;
fail:
	store_tx_rollback(s);
	return rc;
}
