/* compare.c: the comparison of stored benchmark runs (see compare.h): one model behind both
 * `optstudio compare` and the studio, so the two show the same numbers by construction. */
#include "compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/eval/price.h"

struct compare {
	store_bench_run runs[COMPARE_MAX_RUNS];
	size_t n_runs;
	size_t base;                         /* index of the baseline run */
	double usd[COMPARE_MAX_RUNS];        /* instance $/hour when built; 0: unknown */
	double disc[COMPARE_MAX_RUNS];
	compare_row *rows;
	size_t n_rows, cap_rows;
	double chart[COMPARE_N_CHARTS][COMPARE_MAX_RUNS];
	int64_t chart_c;                     /* the latency chart's level */
};

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

/* A number from the run's config (NAN when absent). */
static double run_config_num(const store_bench_run *r, const char *key)
{
	double d = NAN;
	cJSON *c = r->config ? cJSON_Parse(r->config) : NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
	if (cJSON_IsNumber(v))
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

/* The model file's size in bytes: its hub row, else the file the config names (NAN). */
static double run_model_bytes(store *s, const store_bench_run *r)
{
	store_model m;
	if (r->model_id && store_model_get_by_id(s, r->model_id, &m, NULL) == OS_OK) {
		double b = m.file_size > 0 ? (double)m.file_size : NAN;
		store_model_clear(&m);
		if (isfinite(b))
			return b;
	}
	double b = NAN;
	cJSON *c = r->config ? cJSON_Parse(r->config) : NULL;
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "model_path");
	struct stat st;
	if (cJSON_IsString(p) && stat(p->valuestring, &st) == 0 && S_ISREG(st.st_mode))
		b = (double)st.st_size;
	cJSON_Delete(c);
	return b;
}

static double point_price(double usd, double discount, double tok_s)
{
	double p;
	if (usd <= 0 || !isfinite(tok_s) || price_blended_per_1m(usd, discount, tok_s, &p, NULL))
		return NAN;
	return p;
}

const store_bench_point *compare_peak_point(const store_bench_run *r)
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

/* The run's accuracy figures: those of its job, else the newest of its model. *ev is a
 * store list (newest first); free with store_eval_result_list_free. */
static void run_eval_results(store *s, const store_bench_run *run, store_eval_result **ev,
			     size_t *n_ev)
{
	*ev = NULL;
	*n_ev = 0;
	if (run->job_id)
		store_eval_result_list(s, NULL, run->job_id, ev, n_ev, NULL);
	if (*n_ev == 0) {
		store_eval_result_list_free(*ev, *n_ev);
		*ev = NULL;
		*n_ev = 0;
		store_eval_result_list(s, run->model_name, 0, ev, n_ev, NULL);
	}
}

void compare_format_num(double v, char *buf, size_t len)
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

const char *compare_display_name(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash && slash[1] ? slash + 1 : name;
}

void compare_run_summary(store *s, const store_bench_run *r, compare_summary *out)
{
	memset(out, 0, sizeof *out);
	out->usd_per_hour = run_usd_per_hour(s, r);
	out->discount = run_discount(r);
	const store_bench_point *pk = compare_peak_point(r);
	out->peak_tok_s = pk ? pk->total_tokens_per_s : NAN;
	out->peak_concurrency = pk ? pk->concurrency : 0;
	out->peak_usd_per_1m = pk ? point_price(out->usd_per_hour, out->discount, pk->total_tokens_per_s)
				  : NAN;
	out->load_seconds = run_config_num(r, "load_seconds");
	const struct {
		const char *metric;
		double *v;
	} want[] = {
		{"perplexity", &out->perplexity},
		{"kl_divergence", &out->kl_mean},
		{"kl_divergence_p99", &out->kl_p99},
		{"top1_agreement", &out->top1_agreement},
		{"acceptance_rate", &out->acceptance_rate},
	};
	for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
		*want[k].v = NAN;
	store_eval_result *ev;
	size_t n_ev;
	run_eval_results(s, r, &ev, &n_ev);
	for (size_t i = 0; i < n_ev; i++) /* newest first: the first seen wins */
		for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
			if (isnan(*want[k].v) && strcmp(ev[i].metric, want[k].metric) == 0)
				*want[k].v = ev[i].value;
	store_eval_result_list_free(ev, n_ev);
}

double compare_point_price(const compare_summary *sum, double total_tok_s)
{
	return point_price(sum->usd_per_hour, sum->discount, total_tok_s);
}

/* ---- JSON ------------------------------------------------------------------------------------ */

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

static cJSON *run_json(const store_bench_run *r, double usd, double disc)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
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
	const store_bench_point *pk = compare_peak_point(r);
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

cJSON *compare_run_json(store *s, const store_bench_run *r)
{
	return run_json(r, run_usd_per_hour(s, r), run_discount(r));
}

/* ---- building the rows ---------------------------------------------------------------------- */

static compare_row *add_row(compare *c, const char *name, int64_t conc, const char *unit,
			    compare_better better)
{
	if (c->n_rows == c->cap_rows) {
		size_t ncap = c->cap_rows ? c->cap_rows * 2 : 32;
		compare_row *nv = realloc(c->rows, ncap * sizeof *nv);
		if (!nv)
			return NULL;
		c->rows = nv;
		c->cap_rows = ncap;
	}
	compare_row *r = &c->rows[c->n_rows++];
	memset(r, 0, sizeof *r);
	snprintf(r->name, sizeof r->name, "%s", name);
	r->concurrency = conc;
	r->unit = unit;
	r->better = better;
	for (size_t i = 0; i < COMPARE_MAX_RUNS; i++)
		r->v[i] = NAN;
	return r;
}

/* Direction of an accuracy metric. */
static compare_better metric_better(const char *m)
{
	if (strcmp(m, "perplexity") == 0 || strcmp(m, "kl_divergence") == 0 ||
	    strcmp(m, "load_seconds") == 0 || strcmp(m, "model_bytes") == 0)
		return COMPARE_BETTER_LOWER;
	if (strcmp(m, "top1_agreement") == 0 || strcmp(m, "acceptance_rate") == 0 ||
	    strcmp(m, "mean_accepted_length") == 0)
		return COMPARE_BETTER_HIGHER;
	return COMPARE_BETTER_NONE;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* The latency chart follows the baseline: its lowest level. */
static void set_latency_chart(compare *c)
{
	const store_bench_run *b = &c->runs[c->base];
	int64_t lowest = 0;
	for (size_t r = 0; r < c->n_runs; r++)
		for (size_t k = 0; k < c->runs[r].n_points; k++)
			if (!lowest || c->runs[r].points[k].concurrency < lowest)
				lowest = c->runs[r].points[k].concurrency;
	c->chart_c = b->n_points ? b->points[0].concurrency : lowest;
	for (size_t r = 0; r < c->n_runs; r++) {
		const store_bench_point *p = point_at(&c->runs[r], c->chart_c);
		c->chart[COMPARE_CHART_LATENCY][r] = p ? p->latency_p50_ms : NAN;
	}
}

static int build_rows(store *s, compare *c, unsigned flags)
{
	int64_t levels[COMPARE_MAX_RUNS * 64];
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
	bool detail = flags & COMPARE_DETAIL;
	/* summary rows first */
	compare_row *row = add_row(c, "peak total tok/s", COMPARE_SUMMARY, "tok/s", COMPARE_BETTER_HIGHER);
	compare_row *prow = row ? add_row(c, "price at peak", COMPARE_SUMMARY, "$/1M", COMPARE_BETTER_LOWER)
				: NULL;
	if (!prow)
		return OS_ENOMEM;
	row = &c->rows[0];
	for (size_t r = 0; r < c->n_runs; r++) {
		const store_bench_point *pk = compare_peak_point(&c->runs[r]);
		row->v[r] = c->chart[COMPARE_CHART_THROUGHPUT][r] = pk ? pk->total_tokens_per_s : NAN;
		prow->v[r] = c->chart[COMPARE_CHART_PRICE][r] =
			pk ? point_price(c->usd[r], c->disc[r], pk->total_tokens_per_s) : NAN;
	}
	size_t sz_i = 0, ld_i = 0; /* indexes of the detail rows (add_row may move the rows) */
	if (detail) {
		compare_row *sz = add_row(c, "model size", COMPARE_SUMMARY, "MiB", COMPARE_BETTER_LOWER);
		compare_row *ld = sz ? add_row(c, "load time", COMPARE_SUMMARY, "s", COMPARE_BETTER_LOWER)
				     : NULL;
		if (!ld)
			return OS_ENOMEM;
		sz = ld - 1;
		sz_i = (size_t)(sz - c->rows);
		ld_i = (size_t)(ld - c->rows);
		for (size_t r = 0; r < c->n_runs; r++) {
			sz->v[r] = run_model_bytes(s, &c->runs[r]) / (1024.0 * 1024.0);
			ld->v[r] = run_config_num(&c->runs[r], "load_seconds");
		}
	}
	/* per level; the detail rows are the studio's only */
	static const struct {
		const char *name, *unit;
		compare_better better;
		bool detail;
	} per[] = {
		{"total tok/s", "tok/s", COMPARE_BETTER_HIGHER, false},
		{"measured tok/s", "tok/s", COMPARE_BETTER_HIGHER, false},
		{"TTFT p50", "ms", COMPARE_BETTER_LOWER, false},
		{"TTFT p99", "ms", COMPARE_BETTER_LOWER, true},
		{"ITL p50", "ms", COMPARE_BETTER_LOWER, false},
		{"ITL p99", "ms", COMPARE_BETTER_LOWER, true},
		{"latency p50", "ms", COMPARE_BETTER_LOWER, false},
		{"latency p90", "ms", COMPARE_BETTER_LOWER, false},
		{"latency p99", "ms", COMPARE_BETTER_LOWER, false},
		{"tok/s per request", "tok/s", COMPARE_BETTER_HIGHER, false},
		{"errors", "requests", COMPARE_BETTER_LOWER, false},
		{"price", "$/1M", COMPARE_BETTER_LOWER, false},
	};
	for (size_t l = 0; l < n_levels; l++)
		for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
			if (per[k].detail && !detail)
				continue;
			row = add_row(c, per[k].name, levels[l], per[k].unit, per[k].better);
			if (!row)
				return OS_ENOMEM;
			for (size_t r = 0; r < c->n_runs; r++) {
				const store_bench_point *p = point_at(&c->runs[r], levels[l]);
				if (!p)
					continue;
				const double v[] = {p->total_tokens_per_s, p->measured_tokens_per_s,
						    p->ttft_p50_ms, p->ttft_p99_ms, p->itl_p50_ms,
						    p->itl_p99_ms, p->latency_p50_ms, p->latency_p90_ms,
						    p->latency_p99_ms, p->tokens_per_s, (double)p->n_errors,
						    point_price(c->usd[r], c->disc[r], p->total_tokens_per_s)};
				row->v[r] = v[k];
			}
		}
	/* accuracy: results of the run's job, else the newest of its model, per metric */
	for (size_t r = 0; r < c->n_runs; r++) {
		store_eval_result *ev;
		size_t n_ev;
		run_eval_results(s, &c->runs[r], &ev, &n_ev);
		for (size_t i = 0; i < n_ev; i++) {
			/* a job's evaluation also stores the model's size and load time: with the
			 * detail rows they are those rows' figures (where the run's own are
			 * missing), not a second pair of rows */
			bool bytes = strcmp(ev[i].metric, "model_bytes") == 0;
			if (detail && (bytes || strcmp(ev[i].metric, "load_seconds") == 0)) {
				compare_row *dr = &c->rows[bytes ? sz_i : ld_i];
				if (isnan(dr->v[r]))
					dr->v[r] = bytes ? ev[i].value / (1024.0 * 1024.0) : ev[i].value;
				continue;
			}
			compare_row *ar = NULL;
			for (size_t k = 0; k < c->n_rows; k++)
				if (c->rows[k].concurrency == COMPARE_ACCURACY &&
				    strcmp(c->rows[k].name, ev[i].metric) == 0)
					ar = &c->rows[k];
			if (!ar && !(ar = add_row(c, ev[i].metric, COMPARE_ACCURACY, "",
						  metric_better(ev[i].metric)))) {
				store_eval_result_list_free(ev, n_ev);
				return OS_ENOMEM;
			}
			if (isnan(ar->v[r])) /* newest first: keep the first seen */
				ar->v[r] = ev[i].value;
		}
		store_eval_result_list_free(ev, n_ev);
	}
	set_latency_chart(c);
	return OS_OK;
}

int compare_new(store *s, const int64_t *ids, size_t n_ids, size_t base, unsigned flags,
		compare **out, os_error *err)
{
	*out = NULL;
	if (n_ids < 2 || n_ids > COMPARE_MAX_RUNS)
		return os_error_set(err, OS_EUSAGE, "a comparison wants 2 to %d runs, got %zu",
				    COMPARE_MAX_RUNS, n_ids);
	if (base >= n_ids)
		return os_error_set(err, OS_EUSAGE, "baseline %zu is not one of the %zu runs", base,
				    n_ids);
	for (size_t i = 0; i < n_ids; i++)
		for (size_t k = 0; k < i; k++)
			if (ids[i] == ids[k])
				return os_error_set(err, OS_EUSAGE, "run %lld given twice",
						    (long long)ids[i]);
	compare *c = calloc(1, sizeof *c);
	if (!c)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	int rc;
	for (size_t k = 0; k < n_ids; k++) {
		if ((rc = store_bench_run_get(s, ids[k], &c->runs[k], err)) != OS_OK)
			goto fail;
		c->n_runs++;
		c->usd[k] = run_usd_per_hour(s, &c->runs[k]);
		c->disc[k] = run_discount(&c->runs[k]);
	}
	c->base = base;
	if ((rc = build_rows(s, c, flags)) != OS_OK) {
		os_error_set(err, rc, "out of memory building the comparison");
		goto fail;
	}
	*out = c;
	return OS_OK;
fail:
	compare_free(c);
	return rc;
}

void compare_free(compare *c)
{
	if (!c)
		return;
	for (size_t k = 0; k < c->n_runs; k++)
		store_bench_run_clear(&c->runs[k]);
	free(c->rows);
	free(c);
}

size_t compare_n_runs(const compare *c)
{
	return c->n_runs;
}

const store_bench_run *compare_run(const compare *c, size_t r)
{
	return r < c->n_runs ? &c->runs[r] : NULL;
}

size_t compare_baseline(const compare *c)
{
	return c->base;
}

bool compare_set_baseline(compare *c, size_t r)
{
	if (r >= c->n_runs)
		return false;
	c->base = r;
	set_latency_chart(c);
	return true;
}

size_t compare_n_rows(const compare *c)
{
	return c->n_rows;
}

const compare_row *compare_row_at(const compare *c, size_t i)
{
	return i < c->n_rows ? &c->rows[i] : NULL;
}

void compare_chart_values(const compare *c, compare_chart ch, double *v)
{
	for (size_t r = 0; r < c->n_runs; r++)
		v[r] = ch < COMPARE_N_CHARTS ? c->chart[ch][r] : NAN;
}

int64_t compare_chart_concurrency(const compare *c)
{
	return c->chart_c;
}

double compare_delta_pct(const compare *c, const compare_row *row, size_t r)
{
	double b = row->v[c->base], v = row->v[r];
	if (!isfinite(b) || !isfinite(v))
		return NAN;
	if (b == 0)
		return v == 0 ? 0 : NAN;
	return (v - b) / fabs(b) * 100.0;
}

const char *compare_verdict(const compare *c, const compare_row *row, size_t r)
{
	if (r == c->base)
		return "baseline";
	double b = row->v[c->base], v = row->v[r];
	if (!isfinite(b) || !isfinite(v) || row->better == COMPARE_BETTER_NONE)
		return "";
	if (v == b)
		return "same";
	bool higher = v > b;
	return higher == (row->better == COMPARE_BETTER_HIGHER) ? "better" : "worse";
}

void compare_row_label(const compare_row *row, char *buf, size_t len)
{
	if (row->concurrency > 0)
		snprintf(buf, len, "C=%lld %s%s%s%s", (long long)row->concurrency, row->name,
			 *row->unit ? " (" : "", row->unit, *row->unit ? ")" : "");
	else if (row->concurrency == COMPARE_ACCURACY)
		snprintf(buf, len, "accuracy: %s", row->name);
	else
		snprintf(buf, len, "%s%s%s%s", row->name, *row->unit ? " (" : "", row->unit,
			 *row->unit ? ")" : "");
}

/* ---- writers ----------------------------------------------------------------------------- */

static void cell_text(const compare *c, const compare_row *row, size_t r, char *buf, size_t len)
{
	char num[32];
	if (strcmp(row->unit, "requests") == 0 && isfinite(row->v[r]))
		snprintf(num, sizeof num, "%.0f", row->v[r]);
	else
		compare_format_num(row->v[r], num, sizeof num);
	const char *vd = compare_verdict(c, row, r);
	double d = compare_delta_pct(c, row, r);
	if (r == c->base || !isfinite(d) || !*vd)
		snprintf(buf, len, "%s", num);
	else if (strcmp(vd, "same") == 0)
		snprintf(buf, len, "%s (same)", num);
	else
		snprintf(buf, len, "%s (%+.1f%% %s)", num, d, vd);
}

void compare_bar(double v, double max, size_t width, char *buf, size_t len)
{
	static const char *const eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
	if (len)
		buf[0] = '\0';
	if (!isfinite(v) || !(max > 0) || v <= 0 || len == 0)
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

static void write_chart(const compare *c, FILE *f, const char *title, compare_chart ch,
			const char *unit)
{
	const double *v = c->chart[ch];
	double max = 0;
	for (size_t r = 0; r < c->n_runs; r++)
		if (isfinite(v[r]) && v[r] > max)
			max = v[r];
	fprintf(f, "\n%s\n", title);
	for (size_t r = 0; r < c->n_runs; r++) {
		char b[256], num[32], name[48];
		compare_bar(v[r], max, 40, b, sizeof b);
		compare_format_num(v[r], num, sizeof num);
		snprintf(name, sizeof name, "run %lld", (long long)c->runs[r].id);
		/* pad by display cells, not bytes: each bar cell is one column */
		size_t cells = 0;
		for (const unsigned char *p = (const unsigned char *)b; *p; p++)
			cells += (*p & 0xc0) != 0x80;
		fprintf(f, "  %-8s %s%*s %s%s%s\n", name, b, (int)(41 - cells), "", num,
			*unit ? " " : "", isfinite(v[r]) ? unit : "");
	}
}

static void write_run_heads(const compare *c, FILE *f, bool md)
{
	const char *fields[] = {"run", "model", "label", "instance", "in/out tokens"};
	for (int k = 0; k < 5; k++) {
		if (md)
			fprintf(f, "| %s |", fields[k]);
		else
			fprintf(f, "%-34s", fields[k]);
		for (size_t r = 0; r < c->n_runs; r++) {
			const store_bench_run *run = &c->runs[r];
			char cell[128];
			switch (k) {
			case 0:
				snprintf(cell, sizeof cell, "%lld%s", (long long)run->id,
					 r == c->base ? " (baseline)" : "");
				break;
			case 1:
				snprintf(cell, sizeof cell, "%s", compare_display_name(run->model_name));
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
				fprintf(f, " %s |", cell);
			else
				fprintf(f, "  %-30.30s", cell);
		}
		fprintf(f, "\n");
		if (md && k == 0) {
			fprintf(f, "|---|");
			for (size_t r = 0; r < c->n_runs; r++)
				fprintf(f, "---|");
			fprintf(f, "\n");
		}
	}
}

static void write_table(const compare *c, FILE *f, bool md)
{
	write_run_heads(c, f, md);
	if (!md)
		fprintf(f, "\n");
	for (size_t i = 0; i < c->n_rows; i++) {
		const compare_row *row = &c->rows[i];
		char label[96];
		compare_row_label(row, label, sizeof label);
		if (md)
			fprintf(f, "| %s |", label);
		else
			fprintf(f, "%-34s", label);
		for (size_t r = 0; r < c->n_runs; r++) {
			char cell[96];
			cell_text(c, row, r, cell, sizeof cell);
			if (md)
				fprintf(f, " %s |", cell);
			else
				fprintf(f, "  %-30s", cell);
		}
		fprintf(f, "\n");
	}
	if (md)
		return;
	fprintf(f, "\nprices: %s; each run's instance at its current catalog price\n", price_formula());
	write_chart(c, f, "throughput: peak total tok/s (higher is better)", COMPARE_CHART_THROUGHPUT,
		    "tok/s");
	char title[96];
	snprintf(title, sizeof title, "latency: p50 client latency at C=%lld, ms (lower is better)",
		 (long long)c->chart_c);
	write_chart(c, f, title, COMPARE_CHART_LATENCY, "ms");
	write_chart(c, f, "price: $ per 1M tokens at peak throughput (lower is better)",
		    COMPARE_CHART_PRICE, "$/1M");
}

static const char *better_name(compare_better b)
{
	return b == COMPARE_BETTER_HIGHER ? "higher" : b == COMPARE_BETTER_LOWER ? "lower" : NULL;
}

static void write_csv(const compare *c, FILE *f)
{
	fprintf(f, "metric,concurrency,unit,better");
	for (size_t r = 0; r < c->n_runs; r++)
		fprintf(f, ",run_%lld", (long long)c->runs[r].id);
	for (size_t r = 0; r < c->n_runs; r++)
		if (r != c->base)
			fprintf(f, ",delta_pct_%lld,verdict_%lld", (long long)c->runs[r].id,
				(long long)c->runs[r].id);
	fprintf(f, "\n");
	for (size_t i = 0; i < c->n_rows; i++) {
		const compare_row *row = &c->rows[i];
		if (row->concurrency > 0)
			fprintf(f, "%s,%lld,%s,", row->name, (long long)row->concurrency, row->unit);
		else
			fprintf(f, "%s,,%s,", row->name, row->unit);
		const char *b = better_name(row->better);
		fprintf(f, "%s", b ? b : "");
		for (size_t r = 0; r < c->n_runs; r++) {
			if (isfinite(row->v[r]))
				fprintf(f, ",%.10g", row->v[r]);
			else
				fprintf(f, ",");
		}
		for (size_t r = 0; r < c->n_runs; r++) {
			if (r == c->base)
				continue;
			double d = compare_delta_pct(c, row, r);
			if (isfinite(d))
				fprintf(f, ",%.4f,%s", d, compare_verdict(c, row, r));
			else
				fprintf(f, ",,%s", compare_verdict(c, row, r));
		}
		fprintf(f, "\n");
	}
}

int compare_write(const compare *c, FILE *f, compare_format fmt, os_error *err)
{
	if (fmt == COMPARE_FORMAT_CSV)
		write_csv(c, f);
	else
		write_table(c, f, fmt == COMPARE_FORMAT_MD);
	if (fflush(f) != 0 || ferror(f))
		return os_error_set(err, OS_EIO, "cannot write the comparison");
	return OS_OK;
}

cJSON *compare_to_json(const compare *c)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "baseline", (double)c->runs[c->base].id);
	cJSON_AddStringToObject(o, "price_formula", price_formula());
	cJSON *runs = cJSON_AddArrayToObject(o, "runs");
	for (size_t r = 0; r < c->n_runs; r++)
		cJSON_AddItemToArray(runs, run_json(&c->runs[r], c->usd[r], c->disc[r]));
	cJSON *rows = cJSON_AddArrayToObject(o, "metrics");
	for (size_t i = 0; i < c->n_rows; i++) {
		const compare_row *row = &c->rows[i];
		cJSON *q = cJSON_CreateObject();
		if (!q) {
			cJSON_Delete(o);
			return NULL;
		}
		cJSON_AddItemToArray(rows, q);
		cJSON_AddStringToObject(q, "metric", row->name);
		if (row->concurrency > 0)
			cJSON_AddNumberToObject(q, "concurrency", (double)row->concurrency);
		else
			cJSON_AddNullToObject(q, "concurrency");
		cJSON_AddStringToObject(q, "kind", row->concurrency == COMPARE_ACCURACY ? "accuracy"
					  : row->concurrency ? "level" : "summary");
		cJSON_AddStringToObject(q, "unit", row->unit);
		add_str(q, "better", better_name(row->better));
		cJSON *vals = cJSON_AddArrayToObject(q, "values");
		cJSON *dels = cJSON_AddArrayToObject(q, "deltas_pct");
		cJSON *vds = cJSON_AddArrayToObject(q, "verdicts");
		for (size_t r = 0; r < c->n_runs; r++) {
			double v = row->v[r], d = r == c->base ? NAN : compare_delta_pct(c, row, r);
			cJSON_AddItemToArray(vals, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
			cJSON_AddItemToArray(dels, isfinite(d) ? cJSON_CreateNumber(d) : cJSON_CreateNull());
			cJSON_AddItemToArray(vds, cJSON_CreateString(compare_verdict(c, row, r)));
		}
	}
	return o;
}
