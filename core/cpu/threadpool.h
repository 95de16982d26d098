/* threadpool.h: a persistent pool of worker threads for the CPU backend. Created once,
 * then each threadpool_run hands n_tasks tasks to the workers and the calling thread,
 * and returns when every task has run. Dispatch costs a few microseconds (spin, then sleep). */
#ifndef OPTSTUDIO_THREADPOOL_H
#define OPTSTUDIO_THREADPOOL_H

#include <stddef.h>

#include "core/errors.h"

typedef struct threadpool threadpool;

/* A task: ctx is the caller's, task in [0, n_tasks), thread in [0, n_threads) names the
 * thread running it (0 is the caller), so fn may index per-thread scratch by it. */
typedef void (*threadpool_fn)(void *ctx, size_t task, size_t thread);

/* Makes a pool of n_threads threads counting the caller (so n_threads - 1 workers are
 * started); n_threads == 0 means the number of online CPUs. On success *out owns the pool
 * (end it with threadpool_free). Fails with OS_ENOMEM or OS_EINTERNAL (thread creation). */
int threadpool_new(threadpool **out, size_t n_threads, os_error *err);

/* Stops and joins the workers and frees the pool. NULL is fine. Not during a run. */
void threadpool_free(threadpool *pool);

/* Threads that run tasks, counting the caller (>= 1). A NULL pool has 1. */
size_t threadpool_n_threads(const threadpool *pool);

/* Runs fn(ctx, task, thread) exactly once for every task in [0, n_tasks), spread over the
 * workers and the calling thread, and returns when all have finished (their writes are
 * visible to the caller). Tasks are handed out dynamically in index order, so make them
 * similar in cost or numerous. pool may be NULL (everything runs on the caller, thread 0).
 * One run at a time per pool: do not call it concurrently from two threads nor from
 * inside a task of the same pool. */
void threadpool_run(threadpool *pool, size_t n_tasks, threadpool_fn fn, void *ctx);

#endif
