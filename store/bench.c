/* bench.c: benchmark runs with their per-concurrency points (bench_runs, bench_points) and
 * accuracy results (eval_results). The measured aggregate throughput of a point has no
 * column in schema 1; it is kept inside the run's config JSON under the key
 * STORE_BENCH_MEASURED_KEY (an object "<concurrency>": tok/s) and read back into the point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "store_internal.h"

#define STORE_BENCH_MEASURED_KEY "measured_tokens_per_s"

void store_bench_run_clear(store_bench_run *r)
{
	if (!r)
		return;
	free(r->model_name);
	free(r->label);
	free(r->backend);
	free(r->instance_name);
	free(r->config);
	free(r->points);
	memset(r, 0, sizeof *r);
}

void store_bench_run_list_free(store_bench_run *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		store_bench_run_clear(&v[i]);
	free(v);
}

static void bind_fk(sqlite3_stmt *st, int idx, int64_t v)
{
	if (v > 0)
		sqlite3_bind_int64(st, idx, v);
	else
		sqlite3_bind_null(st, idx);
}

static void bind_real(sqlite3_stmt *st, int idx, double v)
{
	if (isfinite(v))
		sqlite3_bind_double(st, idx, v);
	else
		sqlite3_bind_null(st, idx);
}

static double column_real(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

/* The config to store: the caller's JSON object (or {}) with the points' measured
 * throughputs under STORE_BENCH_MEASURED_KEY. *out is malloc'd (cJSON's allocator). */
static int config_with_measured(const store_bench_run *r, char **out, os_error *err)
{
	*out = NULL;
	cJSON *root = r->config ? cJSON_Parse(r->config) : cJSON_CreateObject();
	if (r->config && !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return os_error_set(err, OS_EUSAGE, "bench run config is not a JSON object: %.60s",
				    r->config);
	}
	if (!root)
		goto oom;
	cJSON_DeleteItemFromObjectCaseSensitive(root, STORE_BENCH_MEASURED_KEY);
	cJSON *m = cJSON_AddObjectToObject(root, STORE_BENCH_MEASURED_KEY);
	if (!m)
		goto oom;
	for (size_t i = 0; i < r->n_points; i++) {
		if (!isfinite(r->points[i].measured_tokens_per_s))
			continue;
		char key[32];
		snprintf(key, sizeof key, "%lld", (long long)r->points[i].concurrency);
		if (!cJSON_AddNumberToObject(m, key, r->points[i].measured_tokens_per_s))
			goto oom;
	}
	*out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!*out)
		return os_error_set(err, OS_ENOMEM, "out of memory writing a bench run's config");
	return OS_OK;
oom:
	cJSON_Delete(root);
	return os_error_set(err, OS_ENOMEM, "out of memory writing a bench run's config");
}

int store_bench_run_insert(store *s, const store_bench_run *r, int64_t *id, os_error *err)
{
	if (id)
		*id = 0;
	if (!r->model_name || !*r->model_name)
		return os_error_set(err, OS_EUSAGE, "bench run without a model name");
	for (size_t i = 0; i < r->n_points; i++) {
		const store_bench_point *p = &r->points[i];
		if (p->concurrency < 1 || p->n_requests < 0 || p->n_errors < 0)
			return os_error_set(err, OS_EUSAGE,
					    "bench point %zu: concurrency %lld (expected >= 1), requests "
					    "%lld and errors %lld (expected >= 0)",
					    i, (long long)p->concurrency, (long long)p->n_requests,
					    (long long)p->n_errors);
		for (size_t j = 0; j < i; j++)
			if (r->points[j].concurrency == p->concurrency)
				return os_error_set(err, OS_EUSAGE,
						    "bench points %zu and %zu have the same concurrency %lld",
						    j, i, (long long)p->concurrency);
	}
	char *config = NULL;
	sqlite3_stmt *st = NULL;
	int rc = config_with_measured(r, &config, err);
	if (rc)
		return rc;
	if ((rc = store_tx_begin(s, err))) {
		cJSON_free(config);
		return rc;
	}
	rc = store_prepare(s,
			   "INSERT INTO bench_runs (job_id, model_id, model_name, artifact_id, label, "
			   "backend, instance_name, input_tokens, output_tokens, seed, config, created_at) "
			   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
			   &st, err);
	if (rc)
		goto fail;
	bind_fk(st, 1, r->job_id);
	bind_fk(st, 2, r->model_id);
	store_bind_text(st, 3, r->model_name);
	bind_fk(st, 4, r->artifact_id);
	store_bind_text(st, 5, r->label);
	store_bind_text(st, 6, r->backend);
	store_bind_text(st, 7, r->instance_name);
	sqlite3_bind_int64(st, 8, r->input_tokens);
	sqlite3_bind_int64(st, 9, r->output_tokens);
	sqlite3_bind_int64(st, 10, r->seed);
	store_bind_text(st, 11, config);
	sqlite3_bind_int64(st, 12, r->created_at > 0 ? r->created_at : (int64_t)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = store_db_fail(s, err, "insert bench run");
		goto fail;
	}
	int64_t run_id = sqlite3_last_insert_rowid(s->db);
	sqlite3_finalize(st);
	st = NULL;
	rc = store_prepare(s,
			   "INSERT INTO bench_points (run_id, concurrency, n_requests, n_errors, "
			   "ttft_p50_ms, ttft_p90_ms, ttft_p99_ms, itl_p50_ms, itl_p90_ms, itl_p99_ms, "
			   "latency_p50_ms, latency_p90_ms, latency_p99_ms, tokens_per_s, "
			   "total_tokens_per_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
			   "?12, ?13, ?14, ?15)",
			   &st, err);
	if (rc)
		goto fail;
	for (size_t i = 0; i < r->n_points; i++) {
		const store_bench_point *p = &r->points[i];
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, run_id);
		sqlite3_bind_int64(st, 2, p->concurrency);
		sqlite3_bind_int64(st, 3, p->n_requests);
		sqlite3_bind_int64(st, 4, p->n_errors);
		const double v[] = {p->ttft_p50_ms, p->ttft_p90_ms, p->ttft_p99_ms,
				    p->itl_p50_ms, p->itl_p90_ms, p->itl_p99_ms,
				    p->latency_p50_ms, p->latency_p90_ms, p->latency_p99_ms,
				    p->tokens_per_s, p->total_tokens_per_s};
		for (int k = 0; k < (int)(sizeof v / sizeof v[0]); k++)
			bind_real(st, 5 + k, v[k]);
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = store_db_fail(s, err, "insert bench point");
			goto fail;
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((rc = store_tx_commit(s, err)))
		goto done;
	if (id)
		*id = run_id;
	goto done;
fail:
	sqlite3_finalize(st);
	store_tx_rollback(s);
done:
	cJSON_free(config);
	return rc;
}

#define SELECT_RUN                                                                       \
	"SELECT id, job_id, model_id, model_name, artifact_id, label, backend, instance_name, " \
	"input_tokens, output_tokens, seed, config, created_at FROM bench_runs "

static int row_to_run(sqlite3_stmt *st, store_bench_run *r, os_error *err)
{
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(st, 0);
	r->job_id = sqlite3_column_int64(st, 1);
	r->model_id = sqlite3_column_int64(st, 2);
	r->artifact_id = sqlite3_column_int64(st, 4);
	r->input_tokens = sqlite3_column_int64(st, 8);
	r->output_tokens = sqlite3_column_int64(st, 9);
	r->seed = sqlite3_column_int64(st, 10);
	r->created_at = sqlite3_column_int64(st, 12);
	if (store_column_strdup(st, 3, &r->model_name, err) ||
	    store_column_strdup(st, 5, &r->label, err) || store_column_strdup(st, 6, &r->backend, err) ||
	    store_column_strdup(st, 7, &r->instance_name, err) ||
	    store_column_strdup(st, 11, &r->config, err)) {
		store_bench_run_clear(r);
		return OS_ENOMEM;
	}
	return OS_OK;
}

/* Reads the points of r (by concurrency ascending) and their measured throughput from the
 * config. */
static int load_points(store *s, store_bench_run *r, os_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "SELECT concurrency, n_requests, n_errors, ttft_p50_ms, ttft_p90_ms, "
			       "ttft_p99_ms, itl_p50_ms, itl_p90_ms, itl_p99_ms, latency_p50_ms, "
			       "latency_p90_ms, latency_p99_ms, tokens_per_s, total_tokens_per_s "
			       "FROM bench_points WHERE run_id = ?1 ORDER BY concurrency",
			       &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, r->id);
	cJSON *cfg = r->config ? cJSON_Parse(r->config) : NULL;
	const cJSON *meas = cJSON_GetObjectItemCaseSensitive(cfg, STORE_BENCH_MEASURED_KEY);
	size_t cap = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = store_grow_rows(&r->points, r->n_points, &cap, sizeof *r->points,
					  "reading bench points", err)))
			goto done;
		store_bench_point *p = &r->points[r->n_points++];
		p->concurrency = sqlite3_column_int64(st, 0);
		p->n_requests = sqlite3_column_int64(st, 1);
		p->n_errors = sqlite3_column_int64(st, 2);
		double *v[] = {&p->ttft_p50_ms, &p->ttft_p90_ms, &p->ttft_p99_ms,
			       &p->itl_p50_ms, &p->itl_p90_ms, &p->itl_p99_ms,
			       &p->latency_p50_ms, &p->latency_p90_ms, &p->latency_p99_ms,
			       &p->tokens_per_s, &p->total_tokens_per_s};
		for (int k = 0; k < (int)(sizeof v / sizeof v[0]); k++)
			*v[k] = column_real(st, 3 + k);
		char key[32];
		snprintf(key, sizeof key, "%lld", (long long)p->concurrency);
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(meas, key);
		p->measured_tokens_per_s = cJSON_IsNumber(m) ? m->valuedouble : NAN;
	}
	if (step != SQLITE_DONE)
		rc = store_db_fail(s, err, "read bench points");
done:
	cJSON_Delete(cfg);
	sqlite3_finalize(st);
	return rc;
}

int store_bench_run_get(store *s, int64_t id, store_bench_run *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_RUN "WHERE id = ?1", &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = row_to_run(st, out, err);
	else if (step == SQLITE_DONE)
		rc = os_error_set(err, OS_ENOTFOUND,
				  "no benchmark run %lld; 'optstudio results' lists them", (long long)id);
	else
		rc = store_db_fail(s, err, "read bench run");
	sqlite3_finalize(st);
	if (!rc && (rc = load_points(s, out, err)))
		store_bench_run_clear(out);
	return rc;
}

int store_bench_run_list(store *s, store_bench_run **out, size_t *n, os_error *err)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_RUN "ORDER BY id DESC", &st, err);
	if (rc)
		return rc;
	store_bench_run *v = NULL;
	size_t len = 0, cap = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = store_grow_rows(&v, len, &cap, sizeof *v, "listing bench runs", err)))
			goto fail;
		if ((rc = row_to_run(st, &v[len], err)))
			goto fail;
		len++;
	}
	if (step != SQLITE_DONE) {
		rc = store_db_fail(s, err, "list bench runs");
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < len; i++)
		if ((rc = load_points(s, &v[i], err)))
			goto fail;
	*out = v;
	*n = len;
	return OS_OK;
fail:
	sqlite3_finalize(st);
	store_bench_run_list_free(v, len);
	return rc;
}

int store_bench_run_delete(store *s, int64_t id, os_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, "DELETE FROM bench_runs WHERE id = ?1", &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = store_db_fail(s, err, "delete bench run");
	else if (sqlite3_changes(s->db) == 0)
		rc = os_error_set(err, OS_ENOTFOUND, "no benchmark run %lld", (long long)id);
	sqlite3_finalize(st);
	return rc;
}

/* ---- eval_results ------------------------------------------------------------------------ */

void store_eval_result_clear(store_eval_result *r)
{
	if (!r)
		return;
	free(r->model_name);
	free(r->dataset);
	free(r->metric);
	free(r->details);
	memset(r, 0, sizeof *r);
}

void store_eval_result_list_free(store_eval_result *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		store_eval_result_clear(&v[i]);
	free(v);
}

int store_eval_result_insert(store *s, const store_eval_result *r, int64_t *id, os_error *err)
{
	if (id)
		*id = 0;
	if (!r->model_name || !*r->model_name || !r->metric || !*r->metric)
		return os_error_set(err, OS_EUSAGE, "eval result without a model name or metric");
	if (!isfinite(r->value))
		return os_error_set(err, OS_EUSAGE, "eval result %s of '%s' is not a finite number",
				    r->metric, r->model_name);
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "INSERT INTO eval_results (job_id, model_id, model_name, "
			       "baseline_model_id, dataset, metric, value, n_tokens, details, "
			       "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
			       &st, err);
	if (rc)
		return rc;
	bind_fk(st, 1, r->job_id);
	bind_fk(st, 2, r->model_id);
	store_bind_text(st, 3, r->model_name);
	bind_fk(st, 4, r->baseline_model_id);
	store_bind_text(st, 5, r->dataset);
	store_bind_text(st, 6, r->metric);
	sqlite3_bind_double(st, 7, r->value);
	if (r->n_tokens >= 0)
		sqlite3_bind_int64(st, 8, r->n_tokens);
	store_bind_text(st, 9, r->details);
	sqlite3_bind_int64(st, 10, r->created_at > 0 ? r->created_at : (int64_t)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = store_db_fail(s, err, "insert eval result");
	else if (id)
		*id = sqlite3_last_insert_rowid(s->db);
	sqlite3_finalize(st);
	return rc;
}

#define SELECT_EVAL                                                                        \
	"SELECT id, job_id, model_id, model_name, baseline_model_id, dataset, metric, value, " \
	"n_tokens, details, created_at FROM eval_results "

static int row_to_eval(sqlite3_stmt *st, store_eval_result *r, os_error *err)
{
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(st, 0);
	r->job_id = sqlite3_column_int64(st, 1);
	r->model_id = sqlite3_column_int64(st, 2);
	r->baseline_model_id = sqlite3_column_int64(st, 4);
	r->value = sqlite3_column_double(st, 7);
	r->n_tokens = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8);
	r->created_at = sqlite3_column_int64(st, 10);
	if (store_column_strdup(st, 3, &r->model_name, err) ||
	    store_column_strdup(st, 5, &r->dataset, err) ||
	    store_column_strdup(st, 6, &r->metric, err) ||
	    store_column_strdup(st, 9, &r->details, err)) {
		store_eval_result_clear(r);
		return OS_ENOMEM;
	}
	return OS_OK;
}

int store_eval_result_get(store *s, int64_t id, store_eval_result *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_EVAL "WHERE id = ?1", &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = row_to_eval(st, out, err);
	else if (step == SQLITE_DONE)
		rc = os_error_set(err, OS_ENOTFOUND, "no eval result %lld", (long long)id);
	else
		rc = store_db_fail(s, err, "read eval result");
	sqlite3_finalize(st);
	return rc;
}

int store_eval_result_list(store *s, const char *model_name, int64_t job_id,
			   store_eval_result **out, size_t *n, os_error *err)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       SELECT_EVAL "WHERE (?1 IS NULL OR model_name = ?1) AND "
					   "(?2 IS NULL OR job_id = ?2) ORDER BY id DESC",
			       &st, err);
	if (rc)
		return rc;
	store_bind_text(st, 1, model_name);
	bind_fk(st, 2, job_id);
	store_eval_result *v = NULL;
	size_t len = 0, cap = 0;
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = store_grow_rows(&v, len, &cap, sizeof *v, "listing eval results", err)))
			goto fail;
		if ((rc = row_to_eval(st, &v[len], err)))
			goto fail;
		len++;
	}
	if (step != SQLITE_DONE) {
		rc = store_db_fail(s, err, "list eval results");
		goto fail;
	}
	sqlite3_finalize(st);
	*out = v;
	*n = len;
	return OS_OK;
fail:
	sqlite3_finalize(st);
	store_eval_result_list_free(v, len);
	return rc;
}
