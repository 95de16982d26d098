/* metrics.h: percentiles and latency summaries for the load generator and the comparison
 * screens: a growable series of samples and its p50/p90/p99, mean, min and max. */
#ifndef OPTSTUDIO_METRICS_H
#define OPTSTUDIO_METRICS_H

#include <stddef.h>

#include "../errors.h"

/* A growable array of samples (any unit; the owner says which). Invariant: n <= cap, v
 * holds cap doubles (NULL when cap == 0). A zeroed struct is an empty series. */
typedef struct metrics_series {
	double *v;
	size_t n, cap;
} metrics_series;

/* Appends x; OS_ENOMEM (series unchanged) when it cannot grow. */
int metrics_series_push(metrics_series *s, double x, os_error *err);
/* Frees the samples and zeroes s. NULL is fine. */
void metrics_series_free(metrics_series *s);

/* The p-th percentile (p in [0, 100]) of sorted[0..n) (ascending), by linear interpolation
 * between closest ranks: rank = p / 100 x (n - 1), the result interpolates sorted[floor]
 * and sorted[ceil] (numpy's default 'linear' method). NAN when n == 0. */
double metrics_percentile_sorted(const double *sorted, size_t n, double p);

/* A summary of n samples. Every figure is NAN when n == 0. */
typedef struct metrics_summary {
	size_t n;
	double mean, min, max;
	double p50, p90, p99;
} metrics_summary;

/* Summarizes v[0..n) (borrowed, not modified: a sorted copy is made). NaN samples are
 * skipped (not counted in n). OS_ENOMEM when the copy cannot be made. */
int metrics_summarize(const double *v, size_t n, metrics_summary *out, os_error *err);

#endif
