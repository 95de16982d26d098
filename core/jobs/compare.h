/* compare.h: the comparison of stored benchmark runs, shared by `optstudio compare` and the
 * studio's Results and Compare screens: runs, points and accuracy figures read from the store,
 * one row per figure, deltas against a baseline with a better/worse verdict, the charts' figures,
 * and the table, CSV, Markdown and JSON writers. No terminal, no CLI: callers print. */
#ifndef OPTSTUDIO_JOBS_COMPARE_H
#define OPTSTUDIO_JOBS_COMPARE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/errors.h"
#include "store/store.h"

#define COMPARE_MAX_RUNS 4

/* Which way a figure improves. */
typedef enum compare_better {
	COMPARE_BETTER_NONE = 0,
	COMPARE_BETTER_HIGHER,
	COMPARE_BETTER_LOWER,
} compare_better;

/* A row's concurrency field: > 0 is a per-level figure; these two are the others. */
#define COMPARE_SUMMARY 0
#define COMPARE_ACCURACY (-1)

/* Extra rows the studio shows and the command line does not (its output stays as it was):
 * TTFT and ITL p99 per level, model size (MiB) and load time (s). With it, a job's
 * "model_bytes" and "load_seconds" eval results fill those two rows (where the run's own
 * figures are missing) instead of making accuracy rows, so each shows once. */
#define COMPARE_DETAIL 1u

/* One row of the comparison: a figure of every run. */
typedef struct compare_row {
	char name[48];           /* "total tok/s", "TTFT p50", an eval metric ("perplexity") */
	int64_t concurrency;     /* > 0: that level; COMPARE_SUMMARY; COMPARE_ACCURACY */
	const char *unit;        /* static: "tok/s", "ms", "$/1M", "requests", "MiB", "s", "" */
	compare_better better;
	double v[COMPARE_MAX_RUNS]; /* [compare_n_runs]; NAN: the run has no such figure */
} compare_row;

/* The charts under the table, one figure per run. */
typedef enum compare_chart {
	COMPARE_CHART_THROUGHPUT = 0, /* peak total tok/s */
	COMPARE_CHART_LATENCY,        /* p50 client latency (ms) at compare_chart_concurrency */
	COMPARE_CHART_PRICE,          /* $ per 1M tokens at peak throughput */
	COMPARE_N_CHARTS
} compare_chart;

typedef enum compare_format {
	COMPARE_FORMAT_TABLE = 0, /* aligned text with the bar charts */
	COMPARE_FORMAT_CSV,
	COMPARE_FORMAT_MD,
} compare_format;

/* A built comparison. Invariant: 2..COMPARE_MAX_RUNS runs, baseline < n_runs, every row has a
 * value slot per run; rows do not depend on the baseline (deltas and verdicts do). */
typedef struct compare compare;

/* Reads runs ids[0..n_ids) (2..COMPARE_MAX_RUNS distinct ids) from s and builds the rows:
 * summary (peak throughput, price at peak), per level (every level any run has, ascending),
 * then accuracy (eval results of the run's job, else the newest of its model, per metric).
 * base indexes ids. flags: 0 or COMPARE_DETAIL. OS_EUSAGE for a bad count, a repeated id or
 * base out of range; the store's error for a missing run (OS_ENOTFOUND); OS_ENOMEM. s is
 * only read here (the instance prices are taken now). *out is freed with compare_free. */
int compare_new(store *s, const int64_t *ids, size_t n_ids, size_t base, unsigned flags,
		compare **out, os_error *err);
void compare_free(compare *c);

size_t compare_n_runs(const compare *c);
/* Run r (borrowed, valid until compare_free), in the order of ids. */
const store_bench_run *compare_run(const compare *c, size_t r);
size_t compare_baseline(const compare *c);
/* Makes run r the baseline (deltas, verdicts and the latency chart's level follow). false
 * when r is out of range. */
bool compare_set_baseline(compare *c, size_t r);

size_t compare_n_rows(const compare *c);
/* Row i (borrowed, valid until compare_free). */
const compare_row *compare_row_at(const compare *c, size_t i);
/* "C=3 total tok/s (tok/s)", "accuracy: perplexity", "peak total tok/s (tok/s)". */
void compare_row_label(const compare_row *row, char *buf, size_t len);

/* Delta of run r against the baseline in percent, (v - base) / |base| x 100; NAN when either
 * value is missing or the baseline's is 0 (0 when both are 0). */
double compare_delta_pct(const compare *c, const compare_row *row, size_t r);
/* "baseline" for the baseline run, else "better", "worse", "same", or "" when the row has no
 * direction or a value is missing. Static strings. */
const char *compare_verdict(const compare *c, const compare_row *row, size_t r);

/* The chart's figure of every run into v[0..n_runs) (NAN: none). */
void compare_chart_values(const compare *c, compare_chart ch, double *v);
/* The level the latency chart is at: the baseline's lowest level. */
int64_t compare_chart_concurrency(const compare *c);

/* Writes the comparison in format fmt to f (what `optstudio compare --format` prints).
 * OS_EIO when writing fails. */
int compare_write(const compare *c, FILE *f, compare_format fmt, os_error *err);
/* The comparison as JSON: baseline, price formula, runs (compare_run_json), metrics with
 * values, deltas and verdicts. NULL when out of memory; the caller cJSON_Deletes it. */
cJSON *compare_to_json(const compare *c);

/* ---- one run --------------------------------------------------------------------------- */

/* What a list of runs shows of one run. NANs and 0 when unknown. */
typedef struct compare_summary {
	double peak_tok_s;        /* highest total tok/s of any level */
	int64_t peak_concurrency; /* its level; 0 when no level has a throughput */
	double usd_per_hour;      /* the run's instance's current catalog price; 0: unknown */
	double discount;          /* the run's discount (its config, else the default) */
	double peak_usd_per_1m;   /* blended price at the peak */
	double perplexity;        /* the run's accuracy figures (as the comparison's accuracy */
	double kl_mean;           /* rows: its job's, else its model's newest): "perplexity", */
	double kl_p99;            /* "kl_divergence" and "kl_divergence_p99" (nats), */
	double top1_agreement;    /* "top1_agreement" (0..1), */
	double acceptance_rate;   /* "acceptance_rate" (0..1, speculative decoding) */
	double load_seconds;      /* from the run's config */
} compare_summary;

/* Fills *out for run r. Reads the instance and the eval results from s; never fails (what
 * cannot be read is left unknown). */
void compare_run_summary(store *s, const store_bench_run *r, compare_summary *out);
/* Blended $/1M at total_tok_s for the summary's instance and discount (NAN when unknown). */
double compare_point_price(const compare_summary *sum, double total_tok_s);
/* The point with the highest total throughput (NULL when none has one). */
const store_bench_point *compare_peak_point(const store_bench_run *r);
/* One run as `optstudio results --json` prints it (with every point). NULL: out of memory. */
cJSON *compare_run_json(store *s, const store_bench_run *r);

/* ---- formatting shared by the command line and the studio ------------------------------- */

/* A figure with the precision its size deserves ("1210", "41.3", "0.412", "n/a"). */
void compare_format_num(double v, char *buf, size_t len);
/* A model as listed: a hub name as is, a file path by its last component (borrowed). */
const char *compare_display_name(const char *name);
/* A horizontal bar of v / max x width cells of eighth blocks into buf (UTF-8; empty for a
 * missing or non-positive v). */
void compare_bar(double v, double max, size_t width, char *buf, size_t len);

#endif
