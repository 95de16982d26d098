/* test_store_bench.c: bench runs and eval results in hub.db: write -> read identity on random
 * figures (NaN as NULL, the measured aggregate through the config), all-or-nothing inserts,
 * listing order, deletion, eval results with filters. */
#include <stdbool.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/test.h"

static char home[64];
static uint64_t seed;

static bool same(double a, double b)
{
	return (isnan(a) && isnan(b)) || a == b;
}

static bool same_point(const store_bench_point *a, const store_bench_point *b)
{
	return a->concurrency == b->concurrency && a->n_requests == b->n_requests &&
	       a->n_errors == b->n_errors && same(a->ttft_p50_ms, b->ttft_p50_ms) &&
	       same(a->ttft_p90_ms, b->ttft_p90_ms) && same(a->ttft_p99_ms, b->ttft_p99_ms) &&
	       same(a->itl_p50_ms, b->itl_p50_ms) && same(a->itl_p90_ms, b->itl_p90_ms) &&
	       same(a->itl_p99_ms, b->itl_p99_ms) && same(a->latency_p50_ms, b->latency_p50_ms) &&
	       same(a->latency_p90_ms, b->latency_p90_ms) && same(a->latency_p99_ms, b->latency_p99_ms) &&
	       same(a->tokens_per_s, b->tokens_per_s) && same(a->total_tokens_per_s, b->total_tokens_per_s) &&
	       /* the measured aggregate goes through JSON: 15 significant digits */
	       ((isnan(a->measured_tokens_per_s) && isnan(b->measured_tokens_per_s)) ||
		fabs(a->measured_tokens_per_s - b->measured_tokens_per_s) <=
			1e-14 * fabs(b->measured_tokens_per_s));
}

/* A random figure, NaN one time in seven. */
static double fig(uint64_t *st)
{
	uint64_t r = test_rand_next(st);
	return r % 7 == 0 ? NAN : (double)(r >> 11) / 9007199254740992.0 * 1000;
}

TEST(test_round_trip)
{
	store *s = NULL;
	os_error err;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	uint64_t st = seed;
	int64_t ids[5];
	store_bench_point pts[5][6];
	size_t n_pts[5];
	for (int k = 0; k < 5; k++) {
		n_pts[k] = 1 + test_rand_next(&st) % 6;
		for (size_t i = 0; i < n_pts[k]; i++) {
			/* descending concurrency: the store must sort them */
			store_bench_point *p = &pts[k][i];
			*p = (store_bench_point){.concurrency = (int64_t)(n_pts[k] - i) * 3,
						 .n_requests = (int64_t)(test_rand_next(&st) % 50),
						 .n_errors = (int64_t)(test_rand_next(&st) % 3)};
			double *f[] = {&p->ttft_p50_ms, &p->ttft_p90_ms, &p->ttft_p99_ms, &p->itl_p50_ms,
				       &p->itl_p90_ms, &p->itl_p99_ms, &p->latency_p50_ms,
				       &p->latency_p90_ms, &p->latency_p99_ms, &p->tokens_per_s,
				       &p->total_tokens_per_s, &p->measured_tokens_per_s};
			for (size_t j = 0; j < sizeof f / sizeof f[0]; j++)
				*f[j] = fig(&st);
		}
		store_bench_run r = {.model_name = "m", .label = k % 2 ? "int4" : NULL, .backend = "cpu",
				     .instance_name = "local", .input_tokens = 64, .output_tokens = 32 + k,
				     .seed = k, .config = k % 3 ? "{\"discount\": 0.3}" : NULL,
				     .points = pts[k], .n_points = n_pts[k]};
		CHECK_MSG(store_bench_run_insert(s, &r, &ids[k], &err) == OS_OK, "%s", err.msg);
		CHECK(ids[k] > 0);
	}
	for (int k = 0; k < 5; k++) {
		store_bench_run got;
		CHECK_MSG(store_bench_run_get(s, ids[k], &got, &err) == OS_OK, "%s", err.msg);
		CHECK_EQ_INT(got.n_points, n_pts[k]);
		CHECK_EQ_STR(got.model_name, "m");
		CHECK(k % 2 ? got.label && strcmp(got.label, "int4") == 0 : got.label == NULL);
		CHECK_EQ_INT(got.output_tokens, 32 + k);
		CHECK(got.created_at > 0);
		for (size_t i = 0; i < n_pts[k]; i++) {
			const store_bench_point *x = &got.points[i], *y = &pts[k][n_pts[k] - 1 - i];
			CHECK_MSG(same_point(x, y), "run %d point %zu differs", k, i);
		}
		store_bench_run_clear(&got);
	}
	store_bench_run *v = NULL;
	size_t n = 0;
	CHECK(store_bench_run_list(s, &v, &n, &err) == OS_OK);
	CHECK(n >= 5);
	for (size_t i = 1; i < n; i++)
		CHECK(v[i - 1].id > v[i].id);
	store_bench_run_list_free(v, n);
	/* delete */
	CHECK(store_bench_run_delete(s, ids[0], &err) == OS_OK);
	store_bench_run gone;
	CHECK(store_bench_run_get(s, ids[0], &gone, &err) == OS_ENOTFOUND);
	CHECK(store_bench_run_delete(s, ids[0], &err) == OS_ENOTFOUND);
	store_close(s);
}

TEST(test_all_or_nothing)
{
	store *s = NULL;
	os_error err;
	CHECK(store_open(&s, home, &err) == OS_OK);
	store_bench_run *v = NULL;
	size_t n0 = 0, n1 = 0;
	CHECK(store_bench_run_list(s, &v, &n0, &err) == OS_OK);
	store_bench_run_list_free(v, n0);
	store_bench_point pts[2] = {{.concurrency = 2}, {.concurrency = 2}};
	store_bench_run r = {.model_name = "m", .points = pts, .n_points = 2};
	CHECK(store_bench_run_insert(s, &r, NULL, &err) == OS_EUSAGE);
	pts[1].concurrency = 0;
	CHECK(store_bench_run_insert(s, &r, NULL, &err) == OS_EUSAGE);
	r.n_points = 1;
	r.config = "[1, 2]";
	CHECK(store_bench_run_insert(s, &r, NULL, &err) == OS_EUSAGE);
	r.config = NULL;
	r.model_name = NULL;
	CHECK(store_bench_run_insert(s, &r, NULL, &err) == OS_EUSAGE);
	/* a point the table refuses (negative requests pass our check? no: checked) */
	r.model_name = "m";
	pts[0].n_requests = -1;
	CHECK(store_bench_run_insert(s, &r, NULL, &err) == OS_EUSAGE);
	CHECK(store_bench_run_list(s, &v, &n1, &err) == OS_OK);
	store_bench_run_list_free(v, n1);
	CHECK_EQ_INT(n1, n0);
	store_close(s);
}

TEST(test_eval_results)
{
	store *s = NULL;
	os_error err;
	CHECK(store_open(&s, home, &err) == OS_OK);
	uint64_t st = seed ^ 0xe7a1;
	const char *metrics[] = {"perplexity", "kl_divergence", "top1_agreement"};
	int64_t first = 0;
	double vals[9];
	for (int i = 0; i < 9; i++) {
		vals[i] = 1 + test_rand_float(&st);
		store_eval_result r = {.model_name = i < 6 ? "a" : "b", .metric = (char *)metrics[i % 3],
				       .value = vals[i], .n_tokens = i == 4 ? -1 : 100 + i,
				       .details = i == 2 ? "{\"k\": 1}" : NULL, .dataset = "held.txt"};
		int64_t id;
		CHECK_MSG(store_eval_result_insert(s, &r, &id, &err) == OS_OK, "%s", err.msg);
		if (i == 0)
			first = id;
	}
	store_eval_result g;
	CHECK(store_eval_result_get(s, first + 2, &g, &err) == OS_OK);
	CHECK_EQ_STR(g.metric, "top1_agreement");
	CHECK(g.value == vals[2]);
	CHECK_EQ_STR(g.details, "{\"k\": 1}");
	CHECK_EQ_INT(g.n_tokens, 102);
	store_eval_result_clear(&g);
	CHECK(store_eval_result_get(s, first + 4, &g, &err) == OS_OK);
	CHECK_EQ_INT(g.n_tokens, -1);
	store_eval_result_clear(&g);
	store_eval_result *v = NULL;
	size_t n = 0;
	CHECK(store_eval_result_list(s, "a", 0, &v, &n, &err) == OS_OK);
	CHECK_EQ_INT(n, 6);
	CHECK(v[0].value == vals[5]); /* newest first */
	store_eval_result_list_free(v, n);
	CHECK(store_eval_result_list(s, NULL, 0, &v, &n, &err) == OS_OK);
	CHECK_EQ_INT(n, 9);
	store_eval_result_list_free(v, n);
	store_eval_result bad = {.model_name = "a", .metric = "perplexity", .value = NAN};
	CHECK(store_eval_result_insert(s, &bad, NULL, &err) == OS_EUSAGE);
	bad.value = 1;
	bad.metric = NULL;
	CHECK(store_eval_result_insert(s, &bad, NULL, &err) == OS_EUSAGE);
	CHECK(store_eval_result_get(s, 999999, &g, &err) == OS_ENOTFOUND);
	store_close(s);
}

int main(void)
{
	seed = 0x5707eb;
	printf("seed %llu\n", (unsigned long long)seed);
	if (!test_tmpdir_make(home, sizeof home, "test_store_bench"))
		return 1;
	RUN(test_round_trip);
	RUN(test_all_or_nothing);
	RUN(test_eval_results);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
	if (system(cmd) != 0)
		printf("  could not remove %s\n", home);
	return test_summary();
}
