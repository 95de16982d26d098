/* worker.h: the worker process that runs queued jobs in the background, and starting one.
 * At most one worker runs per data home: it holds an exclusive flock on <home>/worker.lock.
 * It claims queued jobs one at a time, runs their pipelines, and exits after an idle period. */
#ifndef OPTSTUDIO_JOBS_WORKER_H
#define OPTSTUDIO_JOBS_WORKER_H

#include <stdint.h>
#include <sys/types.h>

#include "core/errors.h"

typedef struct jobs_worker_opts {
	double idle_seconds;      /* exit after this long without a queued job; 0 = 10 s */
	uint64_t fsize_limit;     /* TEST HOOK: RLIMIT_FSIZE (bytes) set on the worker at start,
	                           * so a disk-full write can be simulated; 0 = none */
} jobs_worker_opts;

/* Runs the worker in the calling process until it has been idle for opts->idle_seconds
 * (opts NULL = defaults). Returns OS_EBUSY at once when another worker holds the lock (not
 * an error for a caller that only wanted one running), OS_OK after an idle exit, or a store
 * error. On start and between jobs it reaps jobs whose worker died. Every job it claims ends
 * completed, failed (with the reason) or stopped. */
int jobs_worker_run(const char *home, const jobs_worker_opts *opts, os_error *err);

/* Starts `exe worker` detached (double fork, setsid, stdin from /dev/null, stdout and stderr
 * appended to <home>/logs/worker.log) unless a worker already holds the lock. *started (may
 * be NULL) is 1 when a process was started. Call it after queueing a job: a worker about to
 * exit idle looks for queued jobs again after releasing its lock, so no job is stranded. */
int jobs_ensure_worker(const char *home, const char *exe, int *started, os_error *err);

/* The log file of job id: <home>/logs/<id>.log, into buf. */
void jobs_log_path(const char *home, int64_t id, char *buf, size_t len);

#endif
