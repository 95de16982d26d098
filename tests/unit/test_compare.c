/* test_compare.c: the shared comparison of benchmark runs (core/jobs/compare) on random runs
 * in a fresh hub: rows against the stored points, prices by the formula computed by hand,
 * deltas and verdicts against every baseline, the charts, accuracy lookup (newest first),
 * the detail rows, the CSV and JSON writers read back, bars, and the errors. */
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/jobs/compare.h"
#include "store/store.h"
#include "tests/test.h"

#define N_RUNS 3

static char home[64];
static uint64_t seed;

/* A random figure, NaN one time in nine. */
static double fig(uint64_t *st)
{
	uint64_t r = test_rand_next(st);
	return r % 9 == 0 ? NAN : 0.5 + (double)(r >> 11) / 9007199254740992.0 * 1000;
}

static bool same(double a, double b)
{
	return (isnan(a) && isnan(b)) || fabs(a - b) <= 1e-12 * fabs(b);
}

typedef struct fixture {
	int64_t ids[N_RUNS];
	double usd, disc[N_RUNS];
	char model_path[96];
	size_t model_bytes;
} fixture;

/* Three runs at awkward, partly shared levels; run 0 on model "ma" (with a model file in
 * its config), 1 and 2 on "mb"; eval results for "ma". */
static bool make_runs(store *s, fixture *fx, uint64_t st)
{
	static const int64_t levels[N_RUNS][4] = {{1, 3, 7, 0}, {3, 7, 17, 0}, {1, 17, 0, 0}};
	os_error err;
	fx->usd = 0.1 + (double)(test_rand_next(&st) % 1000) / 100;
	if (store_instance_set_local_price(s, fx->usd, &err) != OS_OK)
		return false;
	snprintf(fx->model_path, sizeof fx->model_path, "%s/ma.gguf", home);
	fx->model_bytes = 1000 + test_rand_next(&st) % 300000;
	FILE *f = fopen(fx->model_path, "wb");
	if (!f)
		return false;
	for (size_t i = 0; i < fx->model_bytes; i++)
		fputc((int)(test_rand_next(&st) & 0xff), f);
	if (fclose(f) != 0)
		return false;
	for (int k = 0; k < N_RUNS; k++) {
		store_bench_point pts[4];
		size_t n = 0;
		for (; n < 4 && levels[k][n]; n++) {
			store_bench_point *p = &pts[n];
			*p = (store_bench_point){.concurrency = levels[k][n],
						 .n_requests = 5 + (int64_t)(test_rand_next(&st) % 9),
						 .n_errors = (int64_t)(test_rand_next(&st) % 2)};
			double *v[] = {&p->ttft_p50_ms, &p->ttft_p90_ms, &p->ttft_p99_ms, &p->itl_p50_ms,
				       &p->itl_p90_ms, &p->itl_p99_ms, &p->latency_p50_ms,
				       &p->latency_p90_ms, &p->latency_p99_ms, &p->tokens_per_s,
				       &p->total_tokens_per_s, &p->measured_tokens_per_s};
			for (size_t j = 0; j < sizeof v / sizeof v[0]; j++)
				*v[j] = fig(&st);
		}
		/* the latency chart needs the baseline's lowest level measured */
		pts[0].latency_p50_ms = 1 + (double)(test_rand_next(&st) % 500);
		pts[0].total_tokens_per_s = 10 + (double)(test_rand_next(&st) % 5000);
		fx->disc[k] = k == 1 ? 0.26 : (double)(test_rand_next(&st) % 90) / 100;
		char config[256];
		if (k == 1)
			snprintf(config, sizeof config, "{\"load_seconds\": 0.%d}", 3 + k);
		else
			snprintf(config, sizeof config,
				 "{\"discount\": %.2f, \"load_seconds\": 1.%d, \"model_path\": \"%s\"}",
				 fx->disc[k], k, k == 0 ? fx->model_path : "/nonexistent/x.gguf");
		store_bench_run r = {.model_name = k == 0 ? "ma" : "mb", .label = "lbl",
				     .backend = "cpu", .instance_name = "local", .input_tokens = 12,
				     .output_tokens = 5, .seed = k, .config = config, .points = pts,
				     .n_points = n};
		if (store_bench_run_insert(s, &r, &fx->ids[k], &err) != OS_OK)
			return false;
	}
	/* two perplexities for "ma": the newer must win */
	const struct {
		const char *metric;
		double value;
		int64_t at;
	} ev[] = {{"perplexity", 17.25, 1000}, {"perplexity", 12.5, 2000}, {"kl_divergence", 0.0125, 1500},
		  {"top1_agreement", 0.93, 1500}};
	for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
		store_eval_result e = {.model_name = "ma", .metric = (char *)ev[i].metric,
				       .value = ev[i].value, .n_tokens = 100, .created_at = ev[i].at};
		if (store_eval_result_insert(s, &e, NULL, &err) != OS_OK)
			return false;
	}
	return true;
}

static const store_bench_point *point_at(const store_bench_run *r, int64_t c)
{
	for (size_t i = 0; i < r->n_points; i++)
		if (r->points[i].concurrency == c)
			return &r->points[i];
	return NULL;
}

static double hand_price(double usd, double disc, double tok_s)
{
	return isfinite(tok_s) && tok_s > 0 ? (1 - disc) * usd / (tok_s * 3600 / 1e6) / 4 : NAN;
}

static const compare_row *find_row(const compare *c, const char *name, int64_t conc)
{
	for (size_t i = 0; i < compare_n_rows(c); i++) {
		const compare_row *r = compare_row_at(c, i);
		if (r->concurrency == conc && strcmp(r->name, name) == 0)
			return r;
	}
	return NULL;
}

TEST(test_rows_against_the_store)
{
	store *s = NULL;
	os_error err;
	fixture fx;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	CHECK(make_runs(s, &fx, seed));
	compare *c = NULL;
	CHECK_MSG(compare_new(s, fx.ids, N_RUNS, 0, 0, &c, &err) == OS_OK, "%s", err.msg);
	if (!c) {
		store_close(s);
		return;
	}
	CHECK_EQ_INT(compare_n_runs(c), N_RUNS);
	/* levels 1, 3, 7, 17: ten figures each, two summary rows, three accuracy metrics */
	CHECK_EQ_INT(compare_n_rows(c), 2 + 4 * 10 + 3);
	static const char *const names[] = {"total tok/s", "measured tok/s", "TTFT p50", "ITL p50",
					    "latency p50", "tok/s per request", "errors", "price"};
	static const int64_t all_levels[] = {1, 3, 7, 17};
	for (size_t r = 0; r < N_RUNS; r++) {
		const store_bench_run *run = compare_run(c, r);
		CHECK_EQ_INT(run->id, fx.ids[r]);
		double disc = r == 1 ? 0.26 : fx.disc[r];
		for (size_t l = 0; l < 4; l++) {
			const store_bench_point *p = point_at(run, all_levels[l]);
			for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
				const compare_row *row = find_row(c, names[k], all_levels[l]);
				CHECK_MSG(row != NULL, "row %s at %lld", names[k], (long long)all_levels[l]);
				if (!row)
					continue;
				double want = NAN;
				if (p) {
					const double v[] = {p->total_tokens_per_s, p->measured_tokens_per_s,
							    p->ttft_p50_ms, p->itl_p50_ms, p->latency_p50_ms,
							    p->tokens_per_s, (double)p->n_errors,
							    hand_price(fx.usd, disc, p->total_tokens_per_s)};
					want = v[k];
				}
				CHECK_MSG(same(row->v[r], want), "run %zu %s @%lld: %g vs %g", r, names[k],
					  (long long)all_levels[l], row->v[r], want);
			}
		}
		/* summary: the peak and its price */
		double peak = NAN;
		for (size_t i = 0; i < run->n_points; i++)
			if (isfinite(run->points[i].total_tokens_per_s) &&
			    !(run->points[i].total_tokens_per_s <= peak))
				peak = run->points[i].total_tokens_per_s;
		const compare_row *pr = find_row(c, "peak total tok/s", COMPARE_SUMMARY);
		const compare_row *pp = find_row(c, "price at peak", COMPARE_SUMMARY);
		CHECK(pr && same(pr->v[r], peak));
		CHECK(pp && same(pp->v[r], hand_price(fx.usd, disc, peak)));
		compare_summary sum;
		compare_run_summary(s, run, &sum);
		CHECK(same(sum.peak_tok_s, peak));
		CHECK(same(sum.peak_usd_per_1m, hand_price(fx.usd, disc, peak)));
		CHECK(same(sum.perplexity, r == 0 ? 12.5 : NAN));
		CHECK(same(sum.load_seconds, r == 1 ? 0.4 : 1.0 + 0.1 * (double)r));
		double ch[COMPARE_MAX_RUNS];
		compare_chart_values(c, COMPARE_CHART_THROUGHPUT, ch);
		CHECK(same(ch[r], peak));
		compare_chart_values(c, COMPARE_CHART_PRICE, ch);
		CHECK(same(ch[r], pp ? pp->v[r] : NAN));
	}
	/* accuracy: the newest perplexity of "ma"; none for "mb" */
	const compare_row *ppl = find_row(c, "perplexity", COMPARE_ACCURACY);
	CHECK(ppl && ppl->v[0] == 12.5 && isnan(ppl->v[1]) && isnan(ppl->v[2]));
	CHECK(ppl && ppl->better == COMPARE_BETTER_LOWER);
	const compare_row *agree = find_row(c, "top1_agreement", COMPARE_ACCURACY);
	CHECK(agree && agree->better == COMPARE_BETTER_HIGHER);
	CHECK(find_row(c, "TTFT p99", 1) == NULL && find_row(c, "model size", COMPARE_SUMMARY) == NULL);
	compare_free(c);
	store_close(s);
}

/* Deltas and verdicts by hand, for every baseline; the latency chart follows the baseline. */
TEST(test_deltas_and_baselines)
{
	store *s = NULL;
	os_error err;
	fixture fx;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	CHECK(make_runs(s, &fx, seed ^ 0x77));
	compare *c = NULL;
	CHECK_MSG(compare_new(s, fx.ids, N_RUNS, 2, 0, &c, &err) == OS_OK, "%s", err.msg);
	if (!c) {
		store_close(s);
		return;
	}
	CHECK_EQ_INT(compare_baseline(c), 2);
	size_t checked = 0;
	for (size_t b = 0; b < N_RUNS; b++) {
		CHECK(compare_set_baseline(c, b));
		CHECK_EQ_INT(compare_baseline(c), b);
		const store_bench_run *br = compare_run(c, b);
		CHECK_EQ_INT(compare_chart_concurrency(c), br->points[0].concurrency);
		double lat[COMPARE_MAX_RUNS];
		compare_chart_values(c, COMPARE_CHART_LATENCY, lat);
		CHECK(same(lat[b], br->points[0].latency_p50_ms));
		for (size_t i = 0; i < compare_n_rows(c); i++) {
			const compare_row *row = compare_row_at(c, i);
			for (size_t r = 0; r < N_RUNS; r++) {
				double d = compare_delta_pct(c, row, r), bv = row->v[b], v = row->v[r];
				const char *vd = compare_verdict(c, row, r);
				if (r == b) {
					CHECK_EQ_STR(vd, "baseline");
					continue;
				}
				if (!isfinite(bv) || !isfinite(v)) {
					CHECK(isnan(d) && strcmp(vd, "") == 0);
					continue;
				}
				double want = bv == 0 ? (v == 0 ? 0 : NAN) : (v - bv) / fabs(bv) * 100;
				CHECK_MSG(same(d, want), "%s: %g vs %g", row->name, d, want);
				const char *wv = row->better == COMPARE_BETTER_NONE ? ""
						 : v == bv			    ? "same"
						 : (v > bv) == (row->better == COMPARE_BETTER_HIGHER) ? "better"
												    : "worse";
				CHECK_MSG(strcmp(vd, wv) == 0, "%s run %zu base %zu: %s vs %s", row->name, r, b,
					  vd, wv);
				checked++;
			}
		}
	}
	CHECK(checked > 50);
	CHECK(!compare_set_baseline(c, N_RUNS));
	compare_free(c);
	store_close(s);
}

TEST(test_detail_rows)
{
	store *s = NULL;
	os_error err;
	fixture fx;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	CHECK(make_runs(s, &fx, seed ^ 0x1234));
	compare *c = NULL;
	CHECK_MSG(compare_new(s, fx.ids, N_RUNS, 0, COMPARE_DETAIL, &c, &err) == OS_OK, "%s", err.msg);
	if (!c) {
		store_close(s);
		return;
	}
	CHECK_EQ_INT(compare_n_rows(c), 4 + 4 * 12 + 3);
	const compare_row *sz = find_row(c, "model size", COMPARE_SUMMARY);
	CHECK(sz && same(sz->v[0], (double)fx.model_bytes / 1048576.0) && isnan(sz->v[1]) &&
	      isnan(sz->v[2]));
	const compare_row *ld = find_row(c, "load time", COMPARE_SUMMARY);
	CHECK(ld && same(ld->v[0], 1.0) && same(ld->v[1], 0.4) && same(ld->v[2], 1.2));
	for (size_t r = 0; r < N_RUNS; r++) {
		const store_bench_run *run = compare_run(c, r);
		for (size_t i = 0; i < run->n_points; i++) {
			const compare_row *t = find_row(c, "TTFT p99", run->points[i].concurrency);
			const compare_row *it = find_row(c, "ITL p99", run->points[i].concurrency);
			CHECK(t && same(t->v[r], run->points[i].ttft_p99_ms));
			CHECK(it && same(it->v[r], run->points[i].itl_p99_ms));
		}
	}
	compare_free(c);
	store_close(s);
}

/* Runs made by jobs: the job's "model_bytes" and "load_seconds" results fill the detail rows
 * where the run's config lacks them and make no second pair of rows; without the detail rows
 * (the command line) they stay accuracy rows. The summary carries KL, top-1 agreement and
 * acceptance where the run has them. */
TEST(test_job_run_figures)
{
	store *s = NULL;
	os_error err;
	fixture fx;
	uint64_t st = seed ^ 0x70b5;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	CHECK(make_runs(s, &fx, seed ^ 0x99));
	store_job job[2];
	memset(job, 0, sizeof job);
	int64_t ids[2] = {0, 0};
	double bytes[2], load[2], acc[5];
	for (int k = 0; k < 2; k++) {
		CHECK_MSG(store_job_insert(s, k ? "j1" : "j0", "{}", 0, &job[k], &err) == OS_OK, "%s",
			  err.msg);
		bytes[k] = (double)(4096 + test_rand_next(&st) % 9000000);
		load[k] = 0.05 + (double)(test_rand_next(&st) % 997) / 331.0;
	}
	for (size_t i = 0; i < 5; i++)
		acc[i] = 0.001 + (double)(test_rand_next(&st) % 9973) / 10007.0;
	/* run 0: the job's figures only; run 1: its config names the model file and load time */
	for (int k = 0; k < 2; k++) {
		store_bench_point p = {.concurrency = 1 + 2 * k, .n_requests = 8,
				       .total_tokens_per_s = fig(&st) + 1, .latency_p50_ms = fig(&st) + 1};
		char config[256];
		if (k == 0)
			snprintf(config, sizeof config, "{\"discount\": 0.1}");
		else
			snprintf(config, sizeof config, "{\"load_seconds\": 2.5, \"model_path\": \"%s\"}",
				 fx.model_path);
		store_bench_run r = {.model_name = k ? "mk1" : "mk0", .label = "job", .backend = "cpu",
				     .instance_name = "local", .input_tokens = 9, .output_tokens = 3,
				     .seed = 1234, .config = config, .points = &p, .n_points = 1,
				     .job_id = job[k].id};
		CHECK_MSG(store_bench_run_insert(s, &r, &ids[k], &err) == OS_OK, "%s", err.msg);
		const struct {
			const char *metric;
			double v;
		} ev[] = {{"model_bytes", bytes[k]}, {"load_seconds", load[k]}, {"perplexity", 3 + acc[0]},
			  {"kl_divergence", acc[1]}, {"kl_divergence_p99", 4 * acc[2]},
			  {"top1_agreement", acc[3]}, {"acceptance_rate", acc[4]}};
		size_t n_ev = k == 0 ? sizeof ev / sizeof ev[0] : 2; /* run 1: size and load only */
		for (size_t i = 0; i < n_ev; i++) {
			store_eval_result e = {.model_name = r.model_name, .job_id = job[k].id,
					       .metric = (char *)ev[i].metric, .value = ev[i].v,
					       .n_tokens = -1};
			CHECK_MSG(store_eval_result_insert(s, &e, NULL, &err) == OS_OK, "%s", err.msg);
		}
	}
	compare *c = NULL;
	CHECK_MSG(compare_new(s, ids, 2, 0, COMPARE_DETAIL, &c, &err) == OS_OK, "%s", err.msg);
	if (c) {
		CHECK(!find_row(c, "model_bytes", COMPARE_ACCURACY));
		CHECK(!find_row(c, "load_seconds", COMPARE_ACCURACY));
		const compare_row *sz = find_row(c, "model size", COMPARE_SUMMARY);
		const compare_row *ld = find_row(c, "load time", COMPARE_SUMMARY);
		/* run 0 from its job; run 1's own figures win over its job's */
		CHECK(sz && same(sz->v[0], bytes[0] / 1048576.0) &&
		      same(sz->v[1], (double)fx.model_bytes / 1048576.0));
		CHECK(ld && same(ld->v[0], load[0]) && same(ld->v[1], 2.5));
		const compare_row *kl = find_row(c, "kl_divergence", COMPARE_ACCURACY);
		CHECK(kl && same(kl->v[0], acc[1]) && isnan(kl->v[1]));
		size_t n_size = 0;
		for (size_t i = 0; i < compare_n_rows(c); i++)
			n_size += strcmp(compare_row_at(c, i)->name, "model size") == 0;
		CHECK_EQ_INT(n_size, 1);
		compare_free(c);
	}
	c = NULL;
	CHECK_MSG(compare_new(s, ids, 2, 0, 0, &c, &err) == OS_OK, "%s", err.msg);
	if (c) {
		const compare_row *mb = find_row(c, "model_bytes", COMPARE_ACCURACY);
		const compare_row *ls = find_row(c, "load_seconds", COMPARE_ACCURACY);
		CHECK(mb && same(mb->v[0], bytes[0]) && same(mb->v[1], bytes[1]));
		CHECK(ls && same(ls->v[0], load[0]) && same(ls->v[1], load[1]));
		CHECK(!find_row(c, "model size", COMPARE_SUMMARY));
		compare_free(c);
	}
	for (int k = 0; k < 2; k++) {
		store_bench_run run;
		compare_summary sum;
		CHECK_MSG(store_bench_run_get(s, ids[k], &run, &err) == OS_OK, "%s", err.msg);
		compare_run_summary(s, &run, &sum);
		CHECK(same(sum.perplexity, k ? NAN : 3 + acc[0]));
		CHECK(same(sum.kl_mean, k ? NAN : acc[1]));
		CHECK(same(sum.kl_p99, k ? NAN : 4 * acc[2]));
		CHECK(same(sum.top1_agreement, k ? NAN : acc[3]));
		CHECK(same(sum.acceptance_rate, k ? NAN : acc[4]));
		store_bench_run_clear(&run);
	}
	for (int k = 0; k < 2; k++)
		store_job_clear(&job[k]);
	store_close(s);
}

/* The CSV read back: every value and delta as printed matches the model. */
TEST(test_csv_and_json)
{
	store *s = NULL;
	os_error err;
	fixture fx;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	CHECK(make_runs(s, &fx, seed ^ 0x5151));
	compare *c = NULL;
	CHECK_MSG(compare_new(s, fx.ids, N_RUNS, 1, 0, &c, &err) == OS_OK, "%s", err.msg);
	if (!c) {
		store_close(s);
		return;
	}
	FILE *f = tmpfile();
	CHECK(f != NULL);
	if (!f) {
		compare_free(c);
		store_close(s);
		return;
	}
	CHECK(compare_write(c, f, COMPARE_FORMAT_CSV, &err) == OS_OK);
	rewind(f);
	char line[2048];
	CHECK(fgets(line, sizeof line, f) != NULL);
	char want[512];
	snprintf(want, sizeof want,
		 "metric,concurrency,unit,better,run_%lld,run_%lld,run_%lld,delta_pct_%lld,verdict_%lld,"
		 "delta_pct_%lld,verdict_%lld\n",
		 (long long)fx.ids[0], (long long)fx.ids[1], (long long)fx.ids[2], (long long)fx.ids[0],
		 (long long)fx.ids[0], (long long)fx.ids[2], (long long)fx.ids[2]);
	CHECK_EQ_STR(line, want);
	size_t i = 0;
	while (fgets(line, sizeof line, f)) {
		const compare_row *row = compare_row_at(c, i++);
		CHECK(row != NULL);
		if (!row)
			break;
		/* split on commas; fields are never quoted here */
		char *fld[16];
		size_t nf = 0;
		line[strcspn(line, "\n")] = '\0';
		for (char *p = line; nf < 16;) {
			fld[nf++] = p;
			char *comma = strchr(p, ',');
			if (!comma)
				break;
			*comma = '\0';
			p = comma + 1;
		}
		CHECK_EQ_INT(nf, 4 + N_RUNS + 2 * (N_RUNS - 1));
		if (nf != 4 + N_RUNS + 2 * (N_RUNS - 1))
			continue;
		CHECK_EQ_STR(fld[0], row->name);
		for (size_t r = 0; r < N_RUNS; r++) {
			double v = *fld[4 + r] ? strtod(fld[4 + r], NULL) : NAN;
			CHECK_MSG((isnan(v) && isnan(row->v[r])) || fabs(v - row->v[r]) <= 1e-9 * fabs(row->v[r]),
				  "%s run %zu: %s vs %g", row->name, r, fld[4 + r], row->v[r]);
		}
		size_t k = 4 + N_RUNS;
		for (size_t r = 0; r < N_RUNS; r++) {
			if (r == 1)
				continue;
			double d = compare_delta_pct(c, row, r);
			double got = *fld[k] ? strtod(fld[k], NULL) : NAN;
			CHECK((isnan(d) && isnan(got)) || fabs(got - d) <= 5e-5 + 1e-9 * fabs(d));
			CHECK_EQ_STR(fld[k + 1], compare_verdict(c, row, r));
			k += 2;
		}
	}
	CHECK_EQ_INT(i, compare_n_rows(c));
	fclose(f);

	cJSON *j = compare_to_json(c);
	CHECK(j != NULL);
	const cJSON *base = cJSON_GetObjectItemCaseSensitive(j, "baseline");
	CHECK(cJSON_IsNumber(base) && (int64_t)base->valuedouble == fx.ids[1]);
	const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(j, "metrics");
	CHECK_EQ_INT(cJSON_GetArraySize(metrics), compare_n_rows(c));
	size_t n = 0;
	const cJSON *m;
	cJSON_ArrayForEach(m, metrics)
	{
		const compare_row *row = compare_row_at(c, n++);
		const cJSON *vals = cJSON_GetObjectItemCaseSensitive(m, "values");
		for (size_t r = 0; row && r < N_RUNS; r++) {
			const cJSON *v = cJSON_GetArrayItem(vals, (int)r);
			CHECK(isnan(row->v[r]) ? cJSON_IsNull(v) : cJSON_IsNumber(v) && v->valuedouble == row->v[r]);
		}
	}
	cJSON_Delete(j);
	compare_free(c);
	store_close(s);
}

TEST(test_errors)
{
	store *s = NULL;
	os_error err;
	fixture fx;
	CHECK_MSG(store_open(&s, home, &err) == OS_OK, "%s", err.msg);
	CHECK(make_runs(s, &fx, seed ^ 0x99));
	compare *c = NULL;
	CHECK(compare_new(s, fx.ids, 1, 0, 0, &c, &err) == OS_EUSAGE && c == NULL);
	int64_t five[5] = {fx.ids[0], fx.ids[1], fx.ids[2], fx.ids[0] + 100, fx.ids[0] + 101};
	CHECK(compare_new(s, five, 5, 0, 0, &c, &err) == OS_EUSAGE);
	int64_t twice[2] = {fx.ids[1], fx.ids[1]};
	CHECK(compare_new(s, twice, 2, 0, 0, &c, &err) == OS_EUSAGE);
	CHECK(strstr(err.msg, "given twice") != NULL);
	CHECK(compare_new(s, fx.ids, 2, 2, 0, &c, &err) == OS_EUSAGE);
	int64_t missing[2] = {fx.ids[0], 987654};
	CHECK(compare_new(s, missing, 2, 0, 0, &c, &err) == OS_ENOTFOUND && c == NULL);
	compare_free(NULL);
	store_close(s);
}

/* Bars: v / max of width cells in eighths, at least one eighth for a positive figure. */
TEST(test_bar)
{
	uint64_t st = seed ^ 0xba5;
	for (int t = 0; t < 200; t++) {
		size_t width = 1 + test_rand_next(&st) % 37;
		double max = 1 + (double)(test_rand_next(&st) % 100000) / 7;
		double v = max * (double)(test_rand_next(&st) % 1001) / 1000;
		char buf[512];
		compare_bar(v, max, width, buf, sizeof buf);
		size_t cells = 0, full = 0;
		for (const unsigned char *p = (const unsigned char *)buf; *p; p++) {
			cells += (*p & 0xc0) != 0x80;
			full += strncmp((const char *)p, "█", 3) == 0;
		}
		long units = lround(v / max * (double)(width * 8));
		if (v > 0 && units == 0)
			units = 1;
		CHECK_MSG((long)full == units / 8 && (long)cells == units / 8 + (units % 8 != 0),
			  "v %g max %g width %zu: %zu cells", v, max, width, cells);
	}
	char buf[8];
	compare_bar(NAN, 10, 5, buf, sizeof buf);
	CHECK_EQ_STR(buf, "");
	compare_bar(3, 0, 5, buf, sizeof buf);
	CHECK_EQ_STR(buf, "");
	char num[32];
	compare_format_num(1234.56, num, sizeof num);
	CHECK_EQ_STR(num, "1235");
	compare_format_num(NAN, num, sizeof num);
	CHECK_EQ_STR(num, "n/a");
	CHECK_EQ_STR(compare_display_name("/a/b/c.gguf"), "c.gguf");
}

int main(void)
{
	seed = 0xc0a7e;
	printf("seed %llu\n", (unsigned long long)seed);
	if (!test_tmpdir_make(home, sizeof home, "test_compare"))
		return 1;
	RUN(test_rows_against_the_store);
	RUN(test_deltas_and_baselines);
	RUN(test_detail_rows);
	RUN(test_job_run_figures);
	RUN(test_csv_and_json);
	RUN(test_errors);
	RUN(test_bar);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
	if (system(cmd) != 0)
		printf("  could not remove %s\n", home);
	return test_summary();
}
