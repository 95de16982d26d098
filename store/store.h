/* store.h: the studio's persistent state: the data home on disk and hub.db (SQLite, WAL,
 * foreign keys on, migrations by PRAGMA user_version). The one place that knows SQL. */
#ifndef OPTSTUDIO_STORE_H
#define OPTSTUDIO_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

/* The schema version this build creates and understands. A hub.db whose user_version is
 * newer is refused with OS_EUNSUPPORTED; an older one is migrated on open. */
#define STORE_SCHEMA_VERSION 2

/* ---- data home ------------------------------------------------------------------------ */

/* Writes the data home path into buf (len bytes): $OPTSTUDIO_HOME if set and non-empty,
 * else $XDG_DATA_HOME/optstudio, else $HOME/.local/share/optstudio. Creates nothing.
 * OS_ERANGE if buf is too small, OS_ENOTFOUND if none of the variables is set. */
int store_home_resolve(char *buf, size_t len, os_error *err);

/* Creates home (and its parents) if missing, with the subfolders models/ artifacts/ logs/
 * text/, and checks that home is writable. Idempotent. On failure OS_EIO with a message
 * such as "cannot create data home '/x': Permission denied; set OPTSTUDIO_HOME to a
 * writable folder". store_open calls this itself. */
int store_home_create(const char *home, os_error *err);

/* ---- opening -------------------------------------------------------------------------- */

/* An open hub.db. Invariant: schema at STORE_SCHEMA_VERSION, WAL, foreign keys on, busy
 * timeout 5 s, instance catalog seeded. One per thread; each process opens its own (a
 * forked child must not use its parent's store: close it or let it be, and open anew). */
typedef struct store store;

/* Creates the home (store_home_create), opens <home>/hub.db, applies pending migrations in
 * one transaction and seeds the instance catalog when its table is empty. On success *out
 * owns the connection (close with store_close). On failure *out is NULL and err says:
 * OS_EUNSUPPORTED "hub.db is schema version 9, this optstudio knows up to 1; upgrade
 * optstudio"; OS_EDB for a corrupt file (path, SQLite's message, and a hint to move it
 * aside); OS_EIO for an unusable home or a write-protected hub.db. Safe against
 * concurrent first opens by several processes. */
int store_open(store **out, const char *home, os_error *err);

/* Closes the connection and frees s. NULL is fine. Rolls back an open transaction. */
void store_close(store *s);

/* The home folder and the database path this store was opened with. Borrowed, valid until
 * store_close. */
const char *store_home(const store *s);
const char *store_db_path(const store *s);

/* The schema version found in the file (after migration: STORE_SCHEMA_VERSION). */
int store_schema_version(store *s, int *version, os_error *err);

/* A number that changes whenever ANOTHER connection commits to hub.db (PRAGMA
 * data_version): the cheap "did anything change" poll for the TUI. */
int store_data_version(store *s, int64_t *version, os_error *err);

/* ---- transactions --------------------------------------------------------------------- */

/* Begins a write transaction (BEGIN IMMEDIATE: takes the write lock now, waiting up to the
 * busy timeout). Nests: an inner begin opens a savepoint, so API calls that run their own
 * transaction can be grouped by a caller into one. Every begin must be matched by exactly
 * one commit or rollback. OS_EBUSY if the lock could not be had within the timeout. */
int store_tx_begin(store *s, os_error *err);

/* Commits the innermost transaction (or releases the savepoint). On failure the
 * transaction is rolled back and the nesting level is still popped. */
int store_tx_commit(store *s, os_error *err);

/* Rolls back the innermost transaction (or savepoint). Never fails from the caller's view. */
void store_tx_rollback(store *s);

/* ---- models --------------------------------------------------------------------------- */

/* One row of `models`. Plain data. Ownership: every char * is malloc'd and owned by the
 * struct (free with store_model_clear); NULL means "unknown / not set". Integers are 0
 * when unknown. A struct filled by the caller for insert is only read, never freed by
 * the store. */
typedef struct store_model {
	int64_t id;              /* rowid; 0 before insert */
	char *name;              /* unique hub name, required */
	char *path;              /* the file/folder the studio reads, required */
	char *source_path;       /* where it was imported from (may equal path) */
	int owned_by_studio;     /* 1: the studio created these files and may delete them */
	char *format;            /* "gguf" | "safetensors", required */
	char *architecture;      /* e.g. "llama" */
	int64_t n_params;        /* parameters (count) */
	int64_t context_length;  /* tokens */
	int64_t n_layers, n_heads, n_kv_heads;
	int64_t hidden_size, ffn_size, vocab_size;
	char *tokenizer_kind;    /* e.g. "llama-spm", "gpt2-bpe" */
	char *vocab_hash;        /* hex digest of the vocabulary; equal hashes = compatible drafts */
	char *precision;         /* e.g. "F16", "BF16", "Q4_1" */
	int64_t file_size;       /* bytes */
	char *sha256;            /* hex digest of the file */
	char *license;
	int64_t parent_model_id; /* the model this was quantized from; 0 = none */
	char *recipe;            /* JSON of the recipe that produced it, or NULL */
	int64_t created_at;      /* unix seconds, set by insert */
} store_model;

/* Frees m's strings and zeroes it. NULL is fine; a zeroed struct is fine. */
void store_model_clear(store_model *m);

/* Frees an array from a list call: clears each of the n rows, then frees v. */
void store_model_list_free(store_model *v, size_t n);

/* Inserts m (m->id and m->created_at are ignored). Idempotent by (sha256, path): if a row
 * with the same sha256 and path exists, nothing is written, *existed = 1 and out receives
 * that row (whatever its name). Otherwise *existed = 0 and out receives the new row.
 * A different file asking for a name already taken: OS_EEXISTS naming the holder.
 * Missing name/path/format or a format other than gguf|safetensors: OS_EUSAGE.
 * out (cleared by the caller later with store_model_clear) and existed may be NULL. */
int store_model_insert(store *s, const store_model *m, store_model *out, int *existed,
		       os_error *err);

/* Fills *out with the model named name, or OS_ENOTFOUND "no model named 'x' in the hub". */
int store_model_get(store *s, const char *name, store_model *out, os_error *err);

/* Fills *out with the model whose id is id, or OS_ENOTFOUND. */
int store_model_get_by_id(store *s, int64_t id, store_model *out, os_error *err);

/* All models sorted by name (bytewise). *out is a malloc'd array of *n rows (NULL when
 * *n == 0); free with store_model_list_free. */
int store_model_list(store *s, store_model **out, size_t *n, os_error *err);

/* Models whose vocab_hash equals vocab_hash, by n_params ascending, then name: the draft
 * candidates for a target with that vocabulary (the target itself included; skip it by id).
 * Same ownership as store_model_list. */
int store_model_list_by_vocab(store *s, const char *vocab_hash, store_model **out, size_t *n,
			      os_error *err);

/* Deletes the model named name and fills *deleted (may be NULL) with the row as it was, so
 * the caller can decide to remove files (only if deleted->owned_by_studio). Its drafts rows
 * go with it; children's parent_model_id and artifacts' model_id become NULL.
 * OS_ENOTFOUND when absent. */
int store_model_delete(store *s, const char *name, store_model *deleted, os_error *err);

/* ---- drafts --------------------------------------------------------------------------- */

enum { STORE_DRAFT_RECOMMENDED = 0, STORE_DRAFT_USER = 1 };

/* Records draft_id as a draft for target_id of the given kind (replacing the same pair). */
int store_draft_set(store *s, int64_t target_id, int64_t draft_id, int kind, os_error *err);

/* ---- instances ------------------------------------------------------------------------ */

/* One row of `instances`: a machine type with its GPUs and price. Ownership as store_model
 * (store_instance_clear). Per-GPU figures are per GPU; the price is for the whole instance. */
typedef struct store_instance {
	int64_t id;
	char *name;                /* e.g. "ml.g5.12xlarge", "local" for this machine */
	char *gpu_model;           /* e.g. "NVIDIA A10G"; "none (CPU)" for a machine without GPU */
	int64_t n_gpus;
	double gpu_memory_gib;     /* per GPU, GiB */
	double mem_bandwidth_gbps; /* per GPU, GB/s */
	double bf16_tflops;        /* dense, per GPU */
	double fp8_tflops;         /* dense, per GPU; 0 when the GPU has no FP8 units */
	double usd_per_hour;       /* on-demand, whole instance; 0 = not set */
	char *source;              /* where the figures come from */
	char *date;                /* when the price was read, e.g. "2025-06" */
	int is_local;              /* 1 for the "this machine" row, exactly one such row */
} store_instance;

/* The name of the "this machine" row, and the settings key holding its $/hour. */
#define STORE_LOCAL_INSTANCE "local"
#define STORE_SETTING_LOCAL_PRICE "local_usd_per_hour"

void store_instance_clear(store_instance *it);
void store_instance_list_free(store_instance *v, size_t n);

/* All instances: the local row first, then by name. Same ownership as store_model_list. */
int store_instance_list(store *s, store_instance **out, size_t *n, os_error *err);

/* Fills *out with the instance named name, or OS_ENOTFOUND. */
int store_instance_get(store *s, const char *name, store_instance *out, os_error *err);

/* Sets the local machine's price ($/hour, >= 0 and finite, else OS_ERANGE) in the local row
 * and in settings, in one transaction. */
int store_instance_set_local_price(store *s, double usd_per_hour, os_error *err);

/* ---- settings ------------------------------------------------------------------------- */

/* *value receives a malloc'd copy of the setting's value (free it), or OS_ENOTFOUND. */
int store_setting_get(store *s, const char *key, char **value, os_error *err);

/* Sets (inserts or replaces) key = value. */
int store_setting_set(store *s, const char *key, const char *value, os_error *err);

/* ---- jobs (store/jobs.c) ------------------------------------------------------------------
 * Background optimization jobs and their events. States: queued -> running -> completed |
 * failed | stopped; running -> stopping (stop asked) -> stopped. A running job records its
 * worker's pid and a worker token (pid + the process's start time) so that a dead worker,
 * or a pid the system has since reused, is recognised by store_jobs_reap_dead. Times are
 * REAL unix seconds. */

/* One row of `jobs`. Ownership as store_model (store_job_clear). */
typedef struct store_job {
	int64_t id;
	char *name;             /* label, may be NULL */
	char *spec;             /* the job spec, canonical JSON */
	char *state;            /* queued | running | completed | failed | stopping | stopped */
	char *stage;            /* the running (or last) stage, NULL before the first */
	double progress;        /* of the current stage, 0..1 */
	double eta_seconds;     /* of the current stage; < 0 when unknown */
	int64_t pid;            /* worker that runs (ran) it; 0 = none yet */
	char *worker_token;     /* "pid:starttime" of that worker; NULL = none */
	char *error;            /* why it failed, NULL otherwise */
	int64_t model_id;       /* the input model's hub row; 0 = a path or unknown */
	int64_t result_model_id;/* the model the job produced; 0 = none */
	double created_at, started_at, finished_at, updated_at; /* unix s; 0 = not yet */
	int stop_requested;
} store_job;

void store_job_clear(store_job *j);
void store_job_list_free(store_job *v, size_t n);

/* Inserts a queued job (spec must be valid JSON, else OS_EUSAGE). model_id 0 = none.
 * out (may be NULL) receives the new row. Records a "queued" event. */
int store_job_insert(store *s, const char *name, const char *spec, int64_t model_id,
		     store_job *out, os_error *err);

/* Fills *out with job id, or OS_ENOTFOUND "no job 7". */
int store_job_get(store *s, int64_t id, store_job *out, os_error *err);

/* All jobs by id. Same ownership as store_model_list. */
int store_job_list(store *s, store_job **out, size_t *n, os_error *err);

/* Number of jobs in state `queued`. */
int store_job_count_queued(store *s, int64_t *n, os_error *err);

/* Claims the oldest queued job for the worker (pid, token) in one BEGIN IMMEDIATE
 * transaction: state running, pid, worker_token, started_at, stage NULL, progress 0.
 * *claimed = 1 and *out filled when there was one, else *claimed = 0 (out untouched). */
int store_job_claim(store *s, int64_t pid, const char *token, store_job *out, int *claimed,
		    os_error *err);

/* Records the stage, its progress (clamped to 0..1) and ETA (< 0: unknown) of a running or
 * stopping job; *stop (may be NULL) receives the stop flag. A job in another state is left
 * alone and *stop = 1 (the worker no longer owns it). */
int store_job_update(store *s, int64_t id, const char *stage, double progress,
		     double eta_seconds, int *stop, os_error *err);

/* Reads the job's stop flag (1 also when the job is no longer running or stopping). */
int store_job_stop_requested(store *s, int64_t id, int *stop, os_error *err);

/* Appends an event (level: debug | info | warn | error; stage may be NULL). */
int store_job_event_add(store *s, int64_t id, const char *stage, const char *level,
			const char *message, os_error *err);

/* One row of `job_events`. Ownership as above (store_job_event_clear). */
typedef struct store_job_event {
	int64_t id;
	int64_t job_id;
	double time;
	char *stage;
	char *level;
	char *message;
} store_job_event;

void store_job_event_list_free(store_job_event *v, size_t n);
/* The job's events with id > after_id, oldest first. */
int store_job_event_list(store *s, int64_t job_id, int64_t after_id, store_job_event **out,
			 size_t *n, os_error *err);

/* Asks job id to stop. queued -> stopped at once; running -> stopping (the worker stops it
 * at its next check and marks it stopped); stopping: nothing to do. Other states:
 * OS_EUSAGE "job 3 is completed; there is nothing to stop". *state_after (may be NULL)
 * receives the new state (malloc'd, free it). */
int store_job_request_stop(store *s, int64_t id, char **state_after, os_error *err);

/* Ends a running or stopping job: state is "completed", "failed" or "stopped"; error (may
 * be NULL) is kept for failed/stopped; completed sets progress 1. OS_EUSAGE for another
 * target state, OS_EBUSY when the job is not running/stopping any more (someone reaped it). */
int store_job_finish(store *s, int64_t id, const char *state, const char *error,
		     os_error *err);

/* Records the model the job produced. */
int store_job_set_result_model(store *s, int64_t id, int64_t model_id, os_error *err);

/* Retry: a failed or stopped job goes back to queued under the same id (its events and log
 * are kept and continue; stage, progress, error, pid, times and the stop flag are reset).
 * Other states: OS_EUSAGE naming the state. */
int store_job_retry(store *s, int64_t id, os_error *err);

/* Deletes a job and its events. A running or stopping job: OS_EBUSY ("stop it first"). */
int store_job_delete(store *s, int64_t id, os_error *err);

/* "pid:starttime" of process pid (Linux /proc/<pid>/stat field 22) into buf; OS_ENOTFOUND
 * when there is no such process. */
int store_jobs_process_token(int64_t pid, char *buf, size_t len, os_error *err);

/* Marks failed every running or stopping job whose worker is gone: its pid does not exist,
 * or exists with another start time (the pid was reused). The error names the worker:
 * "worker (pid 123) died". *n_reaped (may be NULL) receives how many. Cheap; call it
 * whenever jobs are read. */
int store_jobs_reap_dead(store *s, size_t *n_reaped, os_error *err);

/* ---- bench runs and eval results (store/bench.c) ---------------------------------------- */

/* One concurrency level of a benchmark run (a row of bench_points). Latencies in ms, rates
 * in tok/s; NAN means "not measured" (NULL in the table). */
typedef struct store_bench_point {
	int64_t concurrency;          /* >= 1, unique within a run */
	int64_t n_requests;           /* measured requests completed */
	int64_t n_errors;
	double ttft_p50_ms, ttft_p90_ms, ttft_p99_ms;
	double itl_p50_ms, itl_p90_ms, itl_p99_ms;
	double latency_p50_ms, latency_p90_ms, latency_p99_ms;
	double tokens_per_s;          /* output tok/s per request (p50) */
	double total_tokens_per_s;    /* DESIGN.md's formula: O / (latency s) x concurrency */
	double measured_tokens_per_s; /* total output tokens / wall time (kept in the run's
	                               * config JSON under "measured_tokens_per_s") */
} store_bench_point;

/* A row of bench_runs with its points. Ownership as store_model (store_bench_run_clear),
 * points included. Foreign keys (job_id, model_id, artifact_id) are 0 when unset. */
typedef struct store_bench_run {
	int64_t id;
	int64_t job_id;
	int64_t model_id;
	char *model_name;             /* required: hub name or the file path benchmarked */
	int64_t artifact_id;
	char *label;                  /* e.g. "baseline", "int4-awq" */
	char *backend;                /* e.g. "cpu" */
	char *instance_name;          /* the catalog instance it ran on ("local") */
	int64_t input_tokens, output_tokens, seed;
	char *config;                 /* JSON object (free-form run settings) or NULL */
	int64_t created_at;           /* unix seconds; insert sets it when 0 */
	store_bench_point *points;    /* [n_points], by concurrency ascending when read */
	size_t n_points;
} store_bench_run;

void store_bench_run_clear(store_bench_run *r);
void store_bench_run_list_free(store_bench_run *v, size_t n);

/* Inserts the run and all its points in one transaction (all or nothing); *id (may be NULL)
 * receives the run's id. OS_EUSAGE for a missing model name, a config that is not a JSON
 * object, a point with concurrency < 1 or two points with the same concurrency. */
int store_bench_run_insert(store *s, const store_bench_run *r, int64_t *id, os_error *err);

/* Fills *out with run id and its points, or OS_ENOTFOUND. */
int store_bench_run_get(store *s, int64_t id, store_bench_run *out, os_error *err);

/* Every run with its points, newest first. Same ownership as store_model_list. */
int store_bench_run_list(store *s, store_bench_run **out, size_t *n, os_error *err);

/* Deletes run id and its points; OS_ENOTFOUND when absent. */
int store_bench_run_delete(store *s, int64_t id, os_error *err);

/* A row of eval_results: one accuracy figure (metric "perplexity", "kl_divergence",
 * "top1_agreement", "acceptance_rate", "load_seconds", ...). Ownership as store_model. */
typedef struct store_eval_result {
	int64_t id;
	int64_t job_id, model_id;     /* 0 when unset */
	char *model_name;             /* required */
	int64_t baseline_model_id;    /* 0 when unset */
	char *dataset;                /* e.g. the held-out text's path */
	char *metric;                 /* required */
	double value;                 /* finite */
	int64_t n_tokens;             /* tokens scored; -1 when unknown */
	char *details;                /* JSON or NULL */
	int64_t created_at;           /* unix seconds; insert sets it when 0 */
} store_eval_result;

void store_eval_result_clear(store_eval_result *r);
void store_eval_result_list_free(store_eval_result *v, size_t n);

/* Inserts r; *id (may be NULL) receives its id. OS_EUSAGE for a missing model name or
 * metric, or a value that is not finite. */
int store_eval_result_insert(store *s, const store_eval_result *r, int64_t *id, os_error *err);

/* Fills *out with result id, or OS_ENOTFOUND. */
int store_eval_result_get(store *s, int64_t id, store_eval_result *out, os_error *err);

/* Results, newest first, filtered by model_name (NULL: any) and job_id (0: any). Same
 * ownership as store_model_list. */
int store_eval_result_list(store *s, const char *model_name, int64_t job_id,
			   store_eval_result **out, size_t *n, os_error *err);

#endif
