/* threadpool.c: persistent workers that wait for a new generation of work (spinning
 * briefly, then sleeping on a futex) and claim tasks with a compare-and-swap on one word
 * holding (generation, next task). The caller waits for tasks, not for workers, so a worker
 * the OS has not scheduled never holds a run up: the caller simply runs its share too. */
#define _GNU_SOURCE
#include "core/cpu/threadpool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* How long a waiting thread spins before it sleeps, in pause iterations (10 to 140 cycles
 * each depending on the core, so some tens of microseconds): long enough to bridge the
 * serial gaps between the ~200 ops of a decode step, short enough not to burn a core. */
#define POOL_SPIN 2000

struct worker {
	threadpool *pool;
	pthread_t tid;
	size_t index; /* 1..n_threads-1 */
};

/* One run's work. Fields are atomics only so that a late worker may read a slot the
 * caller is rewriting without a data race; such a worker's claim then fails. */
struct job {
	_Atomic(threadpool_fn) fn;
	_Atomic(void *) ctx;
	atomic_size_t n_tasks;
};

/* Invariants: n_threads >= 1; workers[0 .. n_threads-2] run until stop is set. Run g uses
 * jobs[g & 1], which the caller writes only while no run is in progress, and run g + 2
 * cannot start before every task of run g has finished (the caller waits for that). */
struct threadpool {
	size_t n_threads;
	struct worker *workers;
	struct job jobs[2];

	/* (generation << 32) | index of the next unclaimed task of that generation */
	_Alignas(64) _Atomic uint64_t state;
	_Alignas(64) atomic_uint gen;     /* the current generation, what sleepers wait on */
	atomic_uint n_sleeping;           /* workers asleep (or about to be) on gen */
	_Alignas(64) atomic_uint done;    /* tasks of the current generation finished */
	atomic_uint caller_sleeping;      /* the caller is asleep (or about to be) on done */
	atomic_int stop;
};

static void futex_wait(atomic_uint *addr, unsigned val)
{
	syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *addr, int n)
{
	syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Claims and runs tasks of the current generation until none are left. A claim succeeds
 * only while its generation is current, so a thread woken late never runs a stale task. */
static void pool_drain(threadpool *pool, size_t thread)
{
	uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
	for (;;) {
		uint32_t g = (uint32_t)(s >> 32), k = (uint32_t)s;
		struct job *j = &pool->jobs[g & 1];
		size_t n = atomic_load_explicit(&j->n_tasks, memory_order_relaxed);
		if (k >= n)
			return;
		if (!atomic_compare_exchange_weak_explicit(&pool->state, &s, s + 1,
							   memory_order_acquire,
							   memory_order_acquire))
			continue; /* s now holds the fresh value */
		threadpool_fn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
		void *ctx = atomic_load_explicit(&j->ctx, memory_order_relaxed);
		fn(ctx, k, thread);
		/* seq_cst: our writes happen-before the caller's read of done == n_tasks, and
		 * pairs with the caller's caller_sleeping store (Dekker) */
		if (atomic_fetch_add(&pool->done, 1) + 1 == n && atomic_load(&pool->caller_sleeping))
			futex_wake(&pool->done, 1);
		s = atomic_load_explicit(&pool->state, memory_order_acquire);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	threadpool *pool = w->pool;
	unsigned seen = 0; /* gen is 0 until the first run, which starts after all workers */
	for (;;) {
		unsigned g;
		int spins = 0;
		while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen) {
			if (++spins < POOL_SPIN) {
				cpu_relax();
				continue;
			}
			/* either threadpool_run sees n_sleeping > 0 and wakes us, or we see its
			 * new gen here (both sides seq_cst) */
			atomic_fetch_add(&pool->n_sleeping, 1);
			if (atomic_load(&pool->gen) == seen)
				futex_wait(&pool->gen, seen);
			atomic_fetch_sub(&pool->n_sleeping, 1);
			spins = 0;
		}
		seen = g;
		if (atomic_load_explicit(&pool->stop, memory_order_acquire))
			break;
		pool_drain(pool, w->index);
	}
	return NULL;
}

int threadpool_new(threadpool **out, size_t n_threads, os_error *err)
{
	if (n_threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = n > 0 ? (size_t)n : 1;
	}
	threadpool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return os_error_set(err, OS_ENOMEM, "cannot allocate a thread pool");
	pool->n_threads = 1;
	if (n_threads > 1) {
		pool->workers = calloc(n_threads - 1, sizeof *pool->workers);
		if (!pool->workers) {
			free(pool);
			return os_error_set(err, OS_ENOMEM, "cannot allocate %zu thread records",
					    n_threads - 1);
		}
	}
	for (size_t i = 0; i + 1 < n_threads; i++) {
		struct worker *w = &pool->workers[i];
		w->pool = pool;
		w->index = i + 1;
		int rc = pthread_create(&w->tid, NULL, worker_main, w);
		if (rc != 0) {
			threadpool_free(pool); /* joins the ones already started */
			return os_error_set(err, OS_EINTERNAL,
					    "cannot start worker thread %zu of %zu (error %d)", i + 1,
					    n_threads - 1, rc);
		}
		pool->n_threads++;
	}
	*out = pool;
	return OS_OK;
}

void threadpool_free(threadpool *pool)
{
	if (!pool)
		return;
	atomic_store(&pool->stop, 1);
	atomic_fetch_add(&pool->gen, 1);
	futex_wake(&pool->gen, INT_MAX);
	for (size_t i = 0; i + 1 < pool->n_threads; i++)
		pthread_join(pool->workers[i].tid, NULL);
	free(pool->workers);
	free(pool);
}

size_t threadpool_n_threads(const threadpool *pool)
{
	return pool ? pool->n_threads : 1;
}

void threadpool_run(threadpool *pool, size_t n_tasks, threadpool_fn fn, void *ctx)
{
	if (n_tasks == 0)
		return;
	if (!pool || pool->n_threads == 1 || n_tasks == 1 || n_tasks > UINT32_MAX) {
		for (size_t t = 0; t < n_tasks; t++)
			fn(ctx, t, 0);
		return;
	}
	unsigned g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
	struct job *j = &pool->jobs[g & 1];
	atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
	atomic_store_explicit(&j->ctx, ctx, memory_order_relaxed);
	atomic_store_explicit(&j->n_tasks, n_tasks, memory_order_relaxed);
	atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
	atomic_store(&pool->state, (uint64_t)g << 32); /* publishes the job (seq_cst) */
	atomic_store(&pool->gen, g);
	if (atomic_load(&pool->n_sleeping) > 0)
		futex_wake(&pool->gen, INT_MAX);

	pool_drain(pool, 0);

	int spins = 0;
	unsigned d;
	while ((d = atomic_load_explicit(&pool->done, memory_order_acquire)) != n_tasks) {
		if (++spins < POOL_SPIN) {
			cpu_relax();
			continue;
		}
		atomic_store(&pool->caller_sleeping, 1);
		d = atomic_load(&pool->done);
		if (d != n_tasks)
			futex_wait(&pool->done, d);
		atomic_store(&pool->caller_sleeping, 0);
		spins = 0;
	}
}
