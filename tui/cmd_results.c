/* cmd_results.c: `optstudio results` (the stored benchmark runs) and `optstudio compare`
 * (two to four runs side by side: deltas against a baseline marked better/worse, accuracy
 * beside speed, Unicode bar charts for throughput, latency and price). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/eval/price.h"
#include "hub_ops.h"
#include "store/store.h"

static const char results_help[] =
	"usage: optstudio results [--json]\n"
	"\n"
	"Lists the stored benchmark runs ('optstudio bench'), newest first: id, date, model,\n"
	"label, instance, input/output tokens, concurrency levels, peak total throughput (and\n"
	"its level), p50 client latency at the lowest level, and the blended price at the peak\n"
	"on the run's instance (its current catalog price, the run's discount).\n"
	"\n"
	"options:\n"
	"      --json    print a JSON array of runs with all their points\n";

static const char compare_help[] =
	"usage: optstudio compare RUN RUN [RUN RUN] [--baseline RUN] [--format table|csv|json|md]\n"
	"\n"
	"Puts two to four benchmark runs (ids from 'optstudio results') side by side: per\n"
	"concurrency level total throughput (formula and measured), TTFT, ITL and client\n"
	"latency, errors and blended price; accuracy figures stored for the same job or model\n"
	"(perplexity, KL divergence, top-1 agreement, acceptance rate). Each figure of a run\n"
	"other than the baseline (default: the first RUN) carries its delta against the\n"
	"baseline, marked better or worse (throughput, agreement and acceptance: higher is\n"
	"better; latency, errors, price, perplexity and KL: lower is better). The table ends\n"
	"with bar charts of peak throughput, latency and price.\n"
	"\n"
	"options:\n"
	"      --baseline RUN    the run deltas are taken against (one of the RUNs, or added)\n"
	"      --format F        table (default), csv, json or md\n";

#define MAX_RUNS 4

/* ---- per-run figures --------------------------------------------------------------------- */

/* The run's discount from its config (default PRICE_DEFAULT_DISCOUNT). */
static double run_discount(const store_bench_run *r)
{
	double d = PRICE_DEFAULT_DISCOUNT;
	cJSON *c = r->config ? cJSON_Parse(r->config) : NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "discount");
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1)
		d = v->valuedouble;
	cJSON_Delete(c);
	return d;
}

/* $/hour of the run's instance now (0 when unknown or unset). */
static double run_usd_per_hour(store *s, const store_bench_run *r)
{
	if (!r->instance_name)
		return 0;
	store_instance it;
	if (store_instance_get(s, r->instance_name, &it, NULL))
		return 0;
	double usd = it.usd_per_hour;
	store_instance_clear(&it);
	return usd;
}

static double point_price(double usd, double discount, double tok_s)
{
	double p;
	if (usd <= 0 || !isfinite(tok_s) || price_blended_per_1m(usd, discount, tok_s, &p, NULL))
		return NAN;
	return p;
}

/* The point with the highest total throughput (NULL when none has one). */
static const store_bench_point *peak_point(const store_bench_run *r)
{
	const store_bench_point *best = NULL;
	for (size_t i = 0; i < r->n_points; i++)
		if (isfinite(r->points[i].total_tokens_per_s) &&
		    (!best || r->points[i].total_tokens_per_s > best->total_tokens_per_s))
			best = &r->points[i];
	return best;
}

static const store_bench_point *point_at(const store_bench_run *r, int64_t c)
{
	for (size_t i = 0; i < r->n_points; i++)
		if (r->points[i].concurrency == c)
			return &r->points[i];
	return NULL;
}

static void format_num(double v, char *buf, size_t len)
{
	if (!isfinite(v))
		snprintf(buf, len, "n/a");
	else if (fabs(v) >= 1000)
		snprintf(buf, len, "%.0f", v);
	else if (fabs(v) >= 10)
		snprintf(buf, len, "%.1f", v);
	else if (fabs(v) >= 0.01 || v == 0)
		snprintf(buf, len, "%.3f", v);
	else
		snprintf(buf, len, "%.3g", v);
}

/* A model as listed: a hub name as is, a file path by its last component. */
static const char *display_name(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash && slash[1] ? slash + 1 : name;
}

static void format_date(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tmv;
	if (!localtime_r(&tt, &tmv) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tmv))
		snprintf(buf, len, "%lld", (long long)t);
}

static void add_num(cJSON *o, const char *k, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

static void add_str(cJSON *o, const char *k, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

static cJSON *run_json(store *s, const store_bench_run *r)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	double usd = run_usd_per_hour(s, r), disc = run_discount(r);
	cJSON_AddNumberToObject(o, "id", (double)r->id);
	cJSON_AddStringToObject(o, "model", r->model_name);
	add_str(o, "label", r->label);
	add_str(o, "backend", r->backend);
	add_str(o, "instance", r->instance_name);
	cJSON_AddNumberToObject(o, "input_tokens", (double)r->input_tokens);
	cJSON_AddNumberToObject(o, "output_tokens", (double)r->output_tokens);
	cJSON_AddNumberToObject(o, "seed", (double)r->seed);
	cJSON_AddNumberToObject(o, "created_at", (double)r->created_at);
	if (r->job_id)
		cJSON_AddNumberToObject(o, "job_id", (double)r->job_id);
	else
		cJSON_AddNullToObject(o, "job_id");
	add_num(o, "usd_per_hour", usd > 0 ? usd : NAN);
	cJSON_AddNumberToObject(o, "discount", disc);
	const store_bench_point *pk = peak_point(r);
	add_num(o, "peak_total_tok_s", pk ? pk->total_tokens_per_s : NAN);
	if (pk)
		cJSON_AddNumberToObject(o, "peak_concurrency", (double)pk->concurrency);
	else
		cJSON_AddNullToObject(o, "peak_concurrency");
	add_num(o, "peak_blended_usd_per_1m", pk ? point_price(usd, disc, pk->total_tokens_per_s) : NAN);
	cJSON *pts = cJSON_AddArrayToObject(o, "points");
	for (size_t i = 0; i < r->n_points; i++) {
		const store_bench_point *p = &r->points[i];
		cJSON *q = cJSON_CreateObject();
		if (!q)
			break;
		cJSON_AddItemToArray(pts, q);
		cJSON_AddNumberToObject(q, "concurrency", (double)p->concurrency);
		cJSON_AddNumberToObject(q, "requests", (double)p->n_requests);
		cJSON_AddNumberToObject(q, "errors", (double)p->n_errors);
		add_num(q, "ttft_p50_ms", p->ttft_p50_ms);
		add_num(q, "ttft_p90_ms", p->ttft_p90_ms);
		add_num(q, "ttft_p99_ms", p->ttft_p99_ms);
		add_num(q, "itl_p50_ms", p->itl_p50_ms);
		add_num(q, "itl_p90_ms", p->itl_p90_ms);
		add_num(q, "itl_p99_ms", p->itl_p99_ms);
		add_num(q, "latency_p50_ms", p->latency_p50_ms);
		add_num(q, "latency_p90_ms", p->latency_p90_ms);
		add_num(q, "latency_p99_ms", p->latency_p99_ms);
		add_num(q, "tok_s_per_request_p50", p->tokens_per_s);
		add_num(q, "total_tok_s", p->total_tokens_per_s);
		add_num(q, "measured_tok_s", p->measured_tokens_per_s);
		add_num(q, "blended_usd_per_1m", point_price(usd, disc, p->total_tokens_per_s));
	}
	return o;
}

static int print_json(cJSON *o)
{
	char *text = o ? cJSON_Print(o) : NULL;
	cJSON_Delete(o);
	if (!text) {
		cli_error("out of memory formatting JSON");
		return EXIT_FAIL;
	}
	puts(text);
	cJSON_free(text);
	return EXIT_OK;
}

int cmd_results(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(results_help, stdout);
		return EXIT_OK;
	}
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (argv[i][0] == '-')
			return cli_usage_error("results", "unknown option '%s'", argv[i]);
		else
			return cli_usage_error("results", "unexpected argument '%s'", argv[i]);
	}
	store *s = NULL;
	os_error err = {0};
	store_bench_run *runs = NULL;
	size_t n = 0;
	if (hub_open(&s, &err) || store_bench_run_list(s, &runs, &n, &err)) {
		store_close(s);
		return cli_fail(&err, "cannot list benchmark runs");
	}
	int ex = EXIT_OK;
	if (json) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; arr && i < n; i++) {
			cJSON *o = run_json(s, &runs[i]);
			if (!o) {
				cJSON_Delete(arr);
				arr = NULL;
				break;
			}
			cJSON_AddItemToArray(arr, o);
		}
		ex = print_json(arr);
	} else if (n == 0) {
		printf("no benchmark runs yet; 'optstudio bench MODEL' makes one\n");
	} else {
		printf("%5s  %-16s  %-24s  %-10s  %-10s  %9s  %-14s  %16s  %13s  %10s\n", "run", "date",
		       "model", "label", "instance", "in/out", "levels", "peak tok/s (C)",
		       "p50 lat ms", "$/1M peak");
		for (size_t i = 0; i < n; i++) {
			const store_bench_run *r = &runs[i];
			char date[32], levels[64] = "", io[48], peak[64], lat[32], usd[48];
			format_date(r->created_at, date, sizeof date);
			size_t off = 0;
			for (size_t k = 0; k < r->n_points && off < sizeof levels; k++)
				off += (size_t)snprintf(levels + off, sizeof levels - off, "%s%lld",
							k ? "," : "", (long long)r->points[k].concurrency);
			snprintf(io, sizeof io, "%lld/%lld", (long long)r->input_tokens,
				 (long long)r->output_tokens);
			const store_bench_point *pk = peak_point(r);
			char num[32];
			format_num(pk ? pk->total_tokens_per_s : NAN, num, sizeof num);
			if (pk)
				snprintf(peak, sizeof peak, "%s (%lld)", num, (long long)pk->concurrency);
			else
				snprintf(peak, sizeof peak, "n/a");
			format_num(r->n_points ? r->points[0].latency_p50_ms : NAN, lat, sizeof lat);
			double p = pk ? point_price(run_usd_per_hour(s, r), run_discount(r),
						    pk->total_tokens_per_s)
				      : NAN;
			format_num(p, num, sizeof num);
			snprintf(usd, sizeof usd, "%s%s", isfinite(p) ? "$" : "", num);
			printf("%5lld  %-16s  %-24.24s  %-10.10s  %-10.10s  %9s  %-14.14s  %16s  %13s  %10s\n",
			       (long long)r->id, date, display_name(r->model_name), r->label ? r->label : "-",
			       r->instance_name ? r->instance_name : "-", io, levels, peak, lat, usd);
		}
	}
	store_bench_run_list_free(runs, n);
	store_close(s);
	return ex;
}

/* ---- compare -------------------------------------------------------------------------- */

enum { BETTER_NONE = 0, BETTER_HIGHER, BETTER_LOWER };
enum { CHART_NONE = 0, CHART_THROUGHPUT, CHART_LATENCY, CHART_PRICE };

/* One row of the comparison: a figure of every run. */
typedef struct cmp_row {
	char name[48];
	int64_t concurrency;     /* 0: not per level */
	const char *unit;
	int better;              /* BETTER_* */
	double v[MAX_RUNS];      /* NAN: missing */
} cmp_row;

typedef struct cmp {
	store_bench_run runs[MAX_RUNS];
	size_t n_runs;
	size_t base;             /* index of the baseline run */
	cmp_row *rows;
	size_t n_rows, cap_rows;
	/* chart figures, one per run */
	double peak_tok_s[MAX_RUNS];
	double chart_latency[MAX_RUNS];   /* p50 latency at chart_c */
	double peak_price[MAX_RUNS];
	int64_t chart_c;
} cmp;

static cmp_row *add_row(cmp *c, const char *name, int64_t conc, const char *unit, int better)
{
	if (c->n_rows == c->cap_rows) {
		size_t ncap = c->cap_rows ? c->cap_rows * 2 : 32;
		cmp_row *nv = realloc(c->rows, ncap * sizeof *nv);
		if (!nv)
			return NULL;
		c->rows = nv;
		c->cap_rows = ncap;
	}
	cmp_row *r = &c->rows[c->n_rows++];
	memset(r, 0, sizeof *r);
	snprintf(r->name, sizeof r->name, "%s", name);
	r->concurrency = conc;
	r->unit = unit;
	r->better = better;
	for (size_t i = 0; i < MAX_RUNS; i++)
		r->v[i] = NAN;
	return r;
}

/* Direction of an accuracy metric. */
static int metric_better(const char *m)
{
	if (strcmp(m, "perplexity") == 0 || strcmp(m, "kl_divergence") == 0 ||
	    strcmp(m, "load_seconds") == 0 || strcmp(m, "model_bytes") == 0)
		return BETTER_LOWER;
	if (strcmp(m, "top1_agreement") == 0 || strcmp(m, "acceptance_rate") == 0 ||
	    strcmp(m, "mean_accepted_length") == 0)
		return BETTER_HIGHER;
	return BETTER_NONE;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Builds the rows from the loaded runs. */
static int cmp_build(store *s, cmp *c)
{
	int64_t levels[MAX_RUNS * 64];
	size_t n_levels = 0;
	for (size_t r = 0; r < c->n_runs; r++)
		for (size_t k = 0; k < c->runs[r].n_points && n_levels < sizeof levels / sizeof levels[0];
		     k++) {
			int64_t cc = c->runs[r].points[k].concurrency;
			bool seen = false;
			for (size_t j = 0; j < n_levels; j++)
				seen |= levels[j] == cc;
			if (!seen)
				levels[n_levels++] = cc;
		}
	qsort(levels, n_levels, sizeof levels[0], cmp_i64);
	double usd[MAX_RUNS], disc[MAX_RUNS];
	for (size_t r = 0; r < c->n_runs; r++) {
		usd[r] = run_usd_per_hour(s, &c->runs[r]);
		disc[r] = run_discount(&c->runs[r]);
	}
	/* summary rows first */
	cmp_row *row = add_row(c, "peak total tok/s", 0, "tok/s", BETTER_HIGHER);
	cmp_row *prow = row ? add_row(c, "price at peak", 0, "$/1M", BETTER_LOWER) : NULL;
	if (!prow)
		return OS_ENOMEM;
	row = &c->rows[0];
	for (size_t r = 0; r < c->n_runs; r++) {
		const store_bench_point *pk = peak_point(&c->runs[r]);
		row->v[r] = c->peak_tok_s[r] = pk ? pk->total_tokens_per_s : NAN;
		prow->v[r] = c->peak_price[r] =
			pk ? point_price(usd[r], disc[r], pk->total_tokens_per_s) : NAN;
	}
	/* the latency chart: the baseline's lowest level */
	const store_bench_run *b = &c->runs[c->base];
	c->chart_c = b->n_points ? b->points[0].concurrency : (n_levels ? levels[0] : 0);
	for (size_t r = 0; r < c->n_runs; r++) {
		const store_bench_point *p = point_at(&c->runs[r], c->chart_c);
		c->chart_latency[r] = p ? p->latency_p50_ms : NAN;
	}
	/* per level */
	static const struct {
		const char *name, *unit;
		int better;
	} per[] = {
		{"total tok/s", "tok/s", BETTER_HIGHER},   {"measured tok/s", "tok/s", BETTER_HIGHER},
		{"TTFT p50", "ms", BETTER_LOWER},          {"ITL p50", "ms", BETTER_LOWER},
		{"latency p50", "ms", BETTER_LOWER},       {"latency p90", "ms", BETTER_LOWER},
		{"latency p99", "ms", BETTER_LOWER},       {"tok/s per request", "tok/s", BETTER_HIGHER},
		{"errors", "requests", BETTER_LOWER},      {"price", "$/1M", BETTER_LOWER},
	};
	for (size_t l = 0; l < n_levels; l++)
		for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
			row = add_row(c, per[k].name, levels[l], per[k].unit, per[k].better);
			if (!row)
				return OS_ENOMEM;
			for (size_t r = 0; r < c->n_runs; r++) {
				const store_bench_point *p = point_at(&c->runs[r], levels[l]);
				if (!p)
					continue;
				const double v[] = {p->total_tokens_per_s, p->measured_tokens_per_s,
						    p->ttft_p50_ms, p->itl_p50_ms, p->latency_p50_ms,
						    p->latency_p90_ms, p->latency_p99_ms, p->tokens_per_s,
						    (double)p->n_errors,
						    point_price(usd[r], disc[r], p->total_tokens_per_s)};
				row->v[r] = v[k];
			}
		}
	/* accuracy: results of the run's job, else the newest of its model, per metric */
	for (size_t r = 0; r < c->n_runs; r++) {
		store_eval_result *ev = NULL;
		size_t n_ev = 0;
		const store_bench_run *run = &c->runs[r];
		if (run->job_id)
			store_eval_result_list(s, NULL, run->job_id, &ev, &n_ev, NULL);
		if (n_ev == 0) {
			store_eval_result_list_free(ev, n_ev);
			ev = NULL;
			store_eval_result_list(s, run->model_name, 0, &ev, &n_ev, NULL);
		}
		for (size_t i = 0; i < n_ev; i++) {
			cmp_row *ar = NULL;
			for (size_t k = 0; k < c->n_rows; k++)
				if (c->rows[k].concurrency == -1 && strcmp(c->rows[k].name, ev[i].metric) == 0)
					ar = &c->rows[k];
			if (!ar && !(ar = add_row(c, ev[i].metric, -1, "", metric_better(ev[i].metric)))) {
				store_eval_result_list_free(ev, n_ev);
				return OS_ENOMEM;
			}
			if (isnan(ar->v[r])) /* newest first: keep the first seen */
				ar->v[r] = ev[i].value;
		}
		store_eval_result_list_free(ev, n_ev);
	}
	return OS_OK;
}

/* Delta of run r against the baseline, percent; NAN when either is missing or base is 0. */
static double delta_pct(const cmp *c, const cmp_row *row, size_t r)
{
	double b = row->v[c->base], v = row->v[r];
	if (!isfinite(b) || !isfinite(v))
		return NAN;
	if (b == 0)
		return v == 0 ? 0 : NAN;
	return (v - b) / fabs(b) * 100.0;
}

/* "better", "worse", "same", "baseline" or "" (no direction / missing). */
static const char *verdict(const cmp *c, const cmp_row *row, size_t r)
{
	if (r == c->base)
		return "baseline";
	double b = row->v[c->base], v = row->v[r];
	if (!isfinite(b) || !isfinite(v) || row->better == BETTER_NONE)
		return "";
	if (v == b)
		return "same";
	bool higher = v > b;
	return higher == (row->better == BETTER_HIGHER) ? "better" : "worse";
}

static void row_label(const cmp_row *row, char *buf, size_t len)
{
	if (row->concurrency > 0)
		snprintf(buf, len, "C=%lld %s%s%s%s", (long long)row->concurrency, row->name,
			 *row->unit ? " (" : "", row->unit, *row->unit ? ")" : "");
	else if (row->concurrency == -1)
		snprintf(buf, len, "accuracy: %s", row->name);
	else
		snprintf(buf, len, "%s%s%s%s", row->name, *row->unit ? " (" : "", row->unit,
			 *row->unit ? ")" : "");
}

static void cell_text(const cmp *c, const cmp_row *row, size_t r, char *buf, size_t len)
{
	char num[32];
	if (strcmp(row->unit, "requests") == 0 && isfinite(row->v[r]))
		snprintf(num, sizeof num, "%.0f", row->v[r]);
	else
		format_num(row->v[r], num, sizeof num);
	const char *vd = verdict(c, row, r);
	double d = delta_pct(c, row, r);
	if (r == c->base || !isfinite(d) || !*vd)
		snprintf(buf, len, "%s", num);
	else if (strcmp(vd, "same") == 0)
		snprintf(buf, len, "%s (same)", num);
	else
		snprintf(buf, len, "%s (%+.1f%% %s)", num, d, vd);
}

/* A horizontal bar of v / max x width cells with eighth blocks into buf (UTF-8). */
static void bar(double v, double max, size_t width, char *buf, size_t len)
{
	static const char *const eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
	buf[0] = '\0';
	if (!isfinite(v) || !(max > 0) || v <= 0)
		return;
	size_t units = (size_t)llround(v / max * (double)(width * 8));
	if (units == 0)
		units = 1; /* something visible for a non-zero figure */
	size_t off = 0;
	for (size_t i = 0; i < units / 8 && off + 4 < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "█");
	if (units % 8 && off + 4 < len)
		snprintf(buf + off, len - off, "%s", eighths[units % 8]);
}

static void print_chart(const cmp *c, const char *title, const double *v, const char *unit)
{
	double max = 0;
	for (size_t r = 0; r < c->n_runs; r++)
		if (isfinite(v[r]) && v[r] > max)
			max = v[r];
	printf("\n%s\n", title);
	for (size_t r = 0; r < c->n_runs; r++) {
		char b[256], num[32], name[48];
		bar(v[r], max, 40, b, sizeof b);
		format_num(v[r], num, sizeof num);
		snprintf(name, sizeof name, "run %lld", (long long)c->runs[r].id);
		/* pad by display cells, not bytes: each bar cell is one column */
		size_t cells = 0;
		for (const unsigned char *p = (const unsigned char *)b; *p; p++)
			cells += (*p & 0xc0) != 0x80;
		printf("  %-8s %s%*s %s%s%s\n", name, b, (int)(41 - cells), "", num, *unit ? " " : "",
		       isfinite(v[r]) ? unit : "");
	}
}

static void print_run_heads(const cmp *c, bool md)
{
	const char *fields[] = {"run", "model", "label", "instance", "in/out tokens"};
	for (int f = 0; f < 5; f++) {
		if (md)
			printf("| %s |", fields[f]);
		else
			printf("%-34s", fields[f]);
		for (size_t r = 0; r < c->n_runs; r++) {
			const store_bench_run *run = &c->runs[r];
			char cell[128];
			switch (f) {
			case 0:
				snprintf(cell, sizeof cell, "%lld%s", (long long)run->id,
					 r == c->base ? " (baseline)" : "");
				break;
			case 1:
				snprintf(cell, sizeof cell, "%s", display_name(run->model_name));
				break;
			case 2:
				snprintf(cell, sizeof cell, "%s", run->label ? run->label : "-");
				break;
			case 3:
				snprintf(cell, sizeof cell, "%s", run->instance_name ? run->instance_name : "-");
				break;
			default:
				snprintf(cell, sizeof cell, "%lld/%lld", (long long)run->input_tokens,
					 (long long)run->output_tokens);
				break;
			}
			if (md)
				printf(" %s |", cell);
			else
				printf("  %-30.30s", cell);
		}
		printf("\n");
		if (md && f == 0) {
			printf("|---|");
			for (size_t r = 0; r < c->n_runs; r++)
				printf("---|");
			printf("\n");
		}
	}
}

static void print_table(const cmp *c, bool md)
{
	print_run_heads(c, md);
	if (!md)
		printf("\n");
	for (size_t i = 0; i < c->n_rows; i++) {
		const cmp_row *row = &c->rows[i];
		char label[96];
		row_label(row, label, sizeof label);
		if (md)
			printf("| %s |", label);
		else
			printf("%-34s", label);
		for (size_t r = 0; r < c->n_runs; r++) {
			char cell[96];
			cell_text(c, row, r, cell, sizeof cell);
			if (md)
				printf(" %s |", cell);
			else
				printf("  %-30s", cell);
		}
		printf("\n");
	}
	if (md)
		return;
	printf("\nprices: %s; each run's instance at its current catalog price\n", price_formula());
	print_chart(c, "throughput: peak total tok/s (higher is better)", c->peak_tok_s, "tok/s");
	char title[96];
	snprintf(title, sizeof title, "latency: p50 client latency at C=%lld, ms (lower is better)",
		 (long long)c->chart_c);
	print_chart(c, title, c->chart_latency, "ms");
	print_chart(c, "price: $ per 1M tokens at peak throughput (lower is better)", c->peak_price,
		    "$/1M");
}

static void print_csv(const cmp *c)
{
	printf("metric,concurrency,unit,better");
	for (size_t r = 0; r < c->n_runs; r++)
		printf(",run_%lld", (long long)c->runs[r].id);
	for (size_t r = 0; r < c->n_runs; r++)
		if (r != c->base)
			printf(",delta_pct_%lld,verdict_%lld", (long long)c->runs[r].id,
			       (long long)c->runs[r].id);
	printf("\n");
	for (size_t i = 0; i < c->n_rows; i++) {
		const cmp_row *row = &c->rows[i];
		if (row->concurrency > 0)
			printf("%s,%lld,%s,", row->name, (long long)row->concurrency, row->unit);
		else
			printf("%s,,%s,", row->name, row->unit);
		printf("%s", row->better == BETTER_HIGHER ? "higher" : row->better == BETTER_LOWER ? "lower" : "");
		for (size_t r = 0; r < c->n_runs; r++) {
			if (isfinite(row->v[r]))
				printf(",%.10g", row->v[r]);
			else
				printf(",");
		}
		for (size_t r = 0; r < c->n_runs; r++) {
			if (r == c->base)
				continue;
			double d = delta_pct(c, row, r);
			if (isfinite(d))
				printf(",%.4f,%s", d, verdict(c, row, r));
			else
				printf(",,%s", verdict(c, row, r));
		}
		printf("\n");
	}
}

static cJSON *compare_json(store *s, const cmp *c)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "baseline", (double)c->runs[c->base].id);
	cJSON_AddStringToObject(o, "price_formula", price_formula());
	cJSON *runs = cJSON_AddArrayToObject(o, "runs");
	for (size_t r = 0; r < c->n_runs; r++)
		cJSON_AddItemToArray(runs, run_json(s, &c->runs[r]));
	cJSON *rows = cJSON_AddArrayToObject(o, "metrics");
	for (size_t i = 0; i < c->n_rows; i++) {
		const cmp_row *row = &c->rows[i];
		cJSON *q = cJSON_CreateObject();
		if (!q)
			break;
		cJSON_AddItemToArray(rows, q);
		cJSON_AddStringToObject(q, "metric", row->name);
		if (row->concurrency > 0)
			cJSON_AddNumberToObject(q, "concurrency", (double)row->concurrency);
		else
			cJSON_AddNullToObject(q, "concurrency");
		cJSON_AddStringToObject(q, "kind", row->concurrency == -1 ? "accuracy"
					  : row->concurrency ? "level" : "summary");
		cJSON_AddStringToObject(q, "unit", row->unit);
		add_str(q, "better", row->better == BETTER_HIGHER ? "higher"
				     : row->better == BETTER_LOWER ? "lower" : NULL);
		cJSON *vals = cJSON_AddArrayToObject(q, "values");
		cJSON *dels = cJSON_AddArrayToObject(q, "deltas_pct");
		cJSON *vds = cJSON_AddArrayToObject(q, "verdicts");
		for (size_t r = 0; r < c->n_runs; r++) {
			double v = row->v[r], d = r == c->base ? NAN : delta_pct(c, row, r);
			cJSON_AddItemToArray(vals, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
			cJSON_AddItemToArray(dels, isfinite(d) ? cJSON_CreateNumber(d) : cJSON_CreateNull());
			cJSON_AddItemToArray(vds, cJSON_CreateString(verdict(c, row, r)));
		}
	}
	return o;
}

/* A RUN argument: a positive id. */
static bool parse_run_id(const char *s, int64_t *id)
{
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end || v <= 0)
		return false;
	*id = v;
	return true;
}

int cmd_compare(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(compare_help, stdout);
		return EXIT_OK;
	}
	static const struct option long_opts[] = {
		{"baseline", required_argument, NULL, 'b'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int64_t ids[MAX_RUNS + 1], base_id = 0;
	size_t n_ids = 0;
	const char *format = "table";
	optind = 1;
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (ch) {
		case 'b':
			if (!parse_run_id(optarg, &base_id))
				return cli_usage_error("compare", "--baseline wants a run id, got '%s'", optarg);
			break;
		case 'f':
			if (strcmp(optarg, "table") && strcmp(optarg, "csv") && strcmp(optarg, "json") &&
			    strcmp(optarg, "md"))
				return cli_usage_error("compare",
						       "--format wants table, csv, json or md, got '%s'",
						       optarg);
			format = optarg;
			break;
		case '?':
			if (optopt)
				return cli_usage_error("compare", "option '%s' needs a value", opt);
			return cli_usage_error("compare", "unknown option '%s'", opt);
		default:
			return cli_usage_error("compare", "unknown option '%s'", opt);
		}
	}
	for (int i = optind; i < argc; i++) {
		if (n_ids == MAX_RUNS)
			return cli_usage_error("compare", "at most %d runs, got more", MAX_RUNS);
		if (!parse_run_id(argv[i], &ids[n_ids]))
			return cli_usage_error("compare", "RUN wants a run id ('optstudio results' lists "
							  "them), got '%s'",
					       argv[i]);
		for (size_t k = 0; k < n_ids; k++)
			if (ids[k] == ids[n_ids])
				return cli_usage_error("compare", "run %lld given twice", (long long)ids[k]);
		n_ids++;
	}
	size_t base = 0;
	if (base_id) {
		bool found = false;
		for (size_t k = 0; k < n_ids; k++)
			if (ids[k] == base_id) {
				base = k;
				found = true;
			}
		if (!found) {
			if (n_ids == MAX_RUNS)
				return cli_usage_error("compare", "the baseline run %lld makes more than %d runs",
						       (long long)base_id, MAX_RUNS);
			memmove(ids + 1, ids, n_ids * sizeof ids[0]);
			ids[0] = base_id;
			n_ids++;
		}
	}
	if (n_ids < 2)
		return cli_usage_error("compare", "give two to four runs ('optstudio results' lists them)");

	store *s = NULL;
	os_error err = {0};
	cmp c;
	memset(&c, 0, sizeof c);
	int ex = EXIT_FAIL;
	if (hub_open(&s, &err)) {
		ex = cli_fail(&err, "cannot open the hub");
		goto done;
	}
	for (size_t k = 0; k < n_ids; k++) {
		if (store_bench_run_get(s, ids[k], &c.runs[k], &err)) {
			ex = cli_fail(&err, "cannot compare");
			goto done;
		}
		c.n_runs++;
	}
	c.base = base;
	if (cmp_build(s, &c)) {
		cli_error("out of memory building the comparison");
		goto done;
	}
	if (strcmp(format, "json") == 0) {
		ex = print_json(compare_json(s, &c));
		goto done;
	}
	if (strcmp(format, "csv") == 0)
		print_csv(&c);
	else
		print_table(&c, strcmp(format, "md") == 0);
	fflush(stdout);
	ex = ferror(stdout) ? EXIT_FAIL : EXIT_OK;
done:
	for (size_t k = 0; k < c.n_runs; k++)
		store_bench_run_clear(&c.runs[k]);
	free(c.rows);
	store_close(s);
	return ex;
}
