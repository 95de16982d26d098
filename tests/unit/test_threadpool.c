/* test_threadpool.c: every task of every run executes exactly once, on a valid thread
 * index, for many task counts and pool sizes, and the caller sees the tasks' writes. */
#include <stdatomic.h>

#include "core/cpu/threadpool.h"
#include "tests/test.h"

struct count_job {
	atomic_int *counts;   /* per task: times run */
	size_t n_threads;
	atomic_int bad_thread; /* a task saw a thread index >= n_threads */
	int *plain;           /* per task: plain (non-atomic) write, checked by the caller */
	int stamp;
};

static void count_task(void *ctx, size_t task, size_t thread)
{
	struct count_job *j = ctx;
	atomic_fetch_add_explicit(&j->counts[task], 1, memory_order_relaxed);
	if (thread >= j->n_threads)
		atomic_store(&j->bad_thread, 1);
	j->plain[task] = j->stamp;
}

static const size_t task_counts[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 64, 127, 1000};

static void check_pool(threadpool *pool, size_t n_threads, int reps)
{
	enum { MAX_TASKS = 1000 };
	static atomic_int counts[MAX_TASKS];
	static int plain[MAX_TASKS];
	struct count_job j = {.counts = counts, .n_threads = n_threads, .plain = plain};
	for (int rep = 0; rep < reps; rep++) {
		for (size_t c = 0; c < sizeof task_counts / sizeof task_counts[0]; c++) {
			size_t n = task_counts[c];
			for (size_t i = 0; i < MAX_TASKS; i++) {
				atomic_store(&counts[i], 0);
				plain[i] = -1;
			}
			j.stamp = rep * 100 + (int)c;
			threadpool_run(pool, n, count_task, &j);
			for (size_t i = 0; i < MAX_TASKS; i++) {
				int want = i < n ? 1 : 0;
				CHECK_MSG(atomic_load(&counts[i]) == want,
					  "threads %zu rep %d n_tasks %zu: task %zu ran %d times",
					  n_threads, rep, n, i, atomic_load(&counts[i]));
				CHECK_MSG(plain[i] == (i < n ? j.stamp : -1),
					  "threads %zu n_tasks %zu: write of task %zu not seen",
					  n_threads, n, i);
			}
			CHECK(atomic_load(&j.bad_thread) == 0);
		}
	}
}

TEST(test_every_task_once)
{
	for (size_t nt = 1; nt <= 4; nt++) {
		threadpool *pool = NULL;
		os_error err;
		CHECK(threadpool_new(&pool, nt, &err) == OS_OK);
		CHECK_EQ_INT(threadpool_n_threads(pool), nt);
		check_pool(pool, nt, 60);
		if (test_case_failed) {
			threadpool_free(pool);
			return;
		}
		threadpool_free(pool);
	}
}

TEST(test_null_pool_runs_inline)
{
	CHECK_EQ_INT(threadpool_n_threads(NULL), 1);
	check_pool(NULL, 1, 2);
}

TEST(test_default_size_is_online_cpus)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 0, NULL) == OS_OK);
	CHECK(threadpool_n_threads(pool) >= 1);
	check_pool(pool, threadpool_n_threads(pool), 3);
	threadpool_free(pool);
}

struct sum_job {
	const double *in;
	double *partial; /* per task */
	size_t n, per;
};

static void sum_task(void *ctx, size_t task, size_t thread)
{
	struct sum_job *j = ctx;
	double s = 0;
	for (size_t i = task * j->per; i < (task + 1) * j->per && i < j->n; i++)
		s += j->in[i];
	j->partial[task] = s;
}

/* Many quick dispatches back to back (the decode pattern), results checked each time. */
TEST(test_many_small_runs)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 2, NULL) == OS_OK);
	enum { N = 999, TASKS = 7 };
	double in[N], partial[TASKS];
	uint64_t seed = 0x5eed1234;
	printf("  seed 0x%llx\n", (unsigned long long)seed);
	double want = 0;
	for (size_t i = 0; i < N; i++) {
		in[i] = test_rand_float(&seed);
		want += in[i];
	}
	struct sum_job j = {.in = in, .partial = partial, .n = N, .per = (N + TASKS - 1) / TASKS};
	for (int rep = 0; rep < 20000; rep++) {
		for (int t = 0; t < TASKS; t++)
			partial[t] = 1e30;
		threadpool_run(pool, TASKS, sum_task, &j);
		double got = 0;
		for (int t = 0; t < TASKS; t++)
			got += partial[t];
		if (fabs(got - want) > 1e-9) {
			threadpool_free(pool);
			FAIL_AT("rep %d: sum %.17g, expected %.17g", rep, got, want);
		}
	}
	threadpool_free(pool);
}

int main(void)
{
	RUN(test_every_task_once);
	RUN(test_null_pool_runs_inline);
	RUN(test_default_size_is_online_cpus);
	RUN(test_many_small_runs);
	return test_summary();
}
