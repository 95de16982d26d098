/* ab_pairs.h: the paired A/B loop of the kernel benchmarks (tests/ab/ab_kernels.c and
 * bench_quant --ab-i8). On a machine whose speed drifts between runs, passes of the old and
 * the new kernels alternate (A B, then B A: neither always goes first) and the ratio of each
 * adjacent pair's times cancels the drift both saw; the median and quartiles of the ratios
 * are printed with the best time of each. */
#ifndef OPTSTUDIO_AB_PAIRS_H
#define OPTSTUDIO_AB_PAIRS_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { AB_PAIRS_MAX = 2000 };

/* Seconds one pass took with the old (which 0) or the new (which 1) kernels. */
typedef double (*ab_pass_fn)(void *ctx, int which, size_t n_tok);

static inline double ab_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int ab_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Pairs for at least `seconds` (and at least 6), then one line of results for n_tok. */
static inline void ab_pairs_run(ab_pass_fn pass, void *ctx, size_t n_tok, double seconds)
{
	static double ratio[AB_PAIRS_MAX];
	double best[2] = {1e30, 1e30};
	size_t n = 0;
	double t00 = ab_now_s();
	while (n < AB_PAIRS_MAX && (n < 6 || ab_now_s() - t00 < seconds)) {
		double t[2];
		for (int i = 0; i < 2; i++) {
			int v = n % 2 ? 1 - i : i;
			t[v] = pass(ctx, v, n_tok);
			best[v] = t[v] < best[v] ? t[v] : best[v];
		}
		ratio[n++] = t[0] / t[1];
	}
	qsort(ratio, n, sizeof ratio[0], ab_cmp_double);
	printf("n_tok %4zu  ratio median %.3f  (quartiles %.3f %.3f, %zu pairs)  best: old %.2f "
	       "ms, new %.2f ms\n", n_tok, ratio[n / 2], ratio[n / 4], ratio[3 * n / 4], n,
	       best[0] * 1e3, best[1] * 1e3);
}

#endif
