/* metrics.c: percentiles (linear interpolation between closest ranks) and summaries of
 * sample series. */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int metrics_series_push(metrics_series *s, double x, os_error *err)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 64;
		double *nv = ncap > s->cap ? realloc(s->v, ncap * sizeof *nv) : NULL;
		if (!nv)
			return os_error_set(err, OS_ENOMEM, "out of memory growing a series of %zu samples",
					    s->n);
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = x;
	return OS_OK;
}

void metrics_series_free(metrics_series *s)
{
	if (!s)
		return;
	free(s->v);
	memset(s, 0, sizeof *s);
}

double metrics_percentile_sorted(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return NAN;
	if (p <= 0)
		return sorted[0];
	if (p >= 100)
		return sorted[n - 1];
	double rank = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)floor(rank);
	size_t hi = lo + 1 < n ? lo + 1 : lo;
	double frac = rank - (double)lo;
	return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int metrics_summarize(const double *v, size_t n, metrics_summary *out, os_error *err)
{
	out->n = 0;
	out->mean = out->min = out->max = out->p50 = out->p90 = out->p99 = NAN;
	if (n == 0)
		return OS_OK;
	double *s = malloc(n * sizeof *s);
	if (!s)
		return os_error_set(err, OS_ENOMEM, "out of memory summarizing %zu samples", n);
	size_t m = 0;
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		if (!isnan(v[i])) {
			s[m++] = v[i];
			sum += v[i];
		}
	if (m > 0) {
		qsort(s, m, sizeof *s, cmp_double);
		out->n = m;
		out->mean = sum / (double)m;
		out->min = s[0];
		out->max = s[m - 1];
		out->p50 = metrics_percentile_sorted(s, m, 50);
		out->p90 = metrics_percentile_sorted(s, m, 90);
		out->p99 = metrics_percentile_sorted(s, m, 99);
	}
	free(s);
	return OS_OK;
}
