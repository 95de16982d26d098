/* test_quant_search.c: quant_matrix_new_weighted (importance-weighted FP8 row scales and INT4
 * group parameters): never worse than the plain scales on its objective, the same formats
 * (the kernels read the codes as they read plain ones), and the fake-quant twin agrees; the
 * SIMD pass equals its scalar twin, a pool changes nothing, and the search is as good as a
 * straightforward one over the same candidates. */
#include "tests/test.h"

#include "core/cpu/kernels_quant.h"
#include "core/numerics.h"
#include "core/optimize/quant_formats.h"

static uint64_t seed = 20261123;

/* Rows with heavy-tailed values and importances spanning 6 decades, a few channels dominant
 * (as activations with outlier channels give). */
static void fill(float *W, float *imp, size_t rows, size_t cols, uint64_t *st)
{
	for (size_t i = 0; i < rows * cols; i++) {
		float u = test_rand_float(st);
		W[i] = u * u * u * 0.2f + 0.01f * test_rand_float(st);
	}
	for (size_t j = 0; j < cols; j++)
		imp[j] = powf(10.0f, 3.0f * test_rand_float(st));
}

static double wsq(const float *a, const float *b, const float *imp, size_t n)
{
	double e = 0;
	for (size_t k = 0; k < n; k++) {
		double d = (double)a[k] - b[k];
		e += (imp ? imp[k] : 1.0) * d * d;
	}
	return e;
}

/* Per row (FP8) or per group (INT4): weighted error of the search <= plain's, and lower in
 * total; the scales keep their invariants. */
static void check_never_worse(quant_fmt fmt, size_t rows, size_t cols, size_t group, bool use_imp)
{
	uint64_t st = seed + rows * 31 + cols;
	float *W = malloc(rows * cols * sizeof *W), *imp = malloc(cols * sizeof *imp);
	float *Dp = malloc(rows * cols * sizeof *Dp), *Dw = malloc(rows * cols * sizeof *Dw);
	fill(W, imp, rows, cols, &st);
	const float *im = use_imp ? imp : NULL;
	quant_matrix p, w;
	os_error err;
	CHECK(quant_matrix_new(&p, fmt, W, rows, cols, group, &err) == OS_OK);
	CHECK_MSG(quant_matrix_new_weighted(&w, fmt, W, rows, cols, group, im, NULL, &err) == OS_OK, "%s",
		  err.msg);
	CHECK(w.fmt == fmt && w.rows == rows && w.cols == cols && w.group == p.group);
	CHECK(quant_matrix_bytes(&w) == quant_matrix_bytes(&p));
	quant_matrix_dequantize(&p, Dp);
	quant_matrix_dequantize(&w, Dw);
	size_t unit = fmt == QUANT_INT4 ? group : cols;
	double tp = 0, tw = 0;
	for (size_t i = 0; i < rows * cols; i += unit) {
		const float *iu = im ? im + i % cols : NULL;
		double ep = wsq(W + i, Dp + i, iu, unit), ew = wsq(W + i, Dw + i, iu, unit);
		CHECK_MSG(ew <= ep * (1 + 1e-12), "unit %zu: weighted %g > plain %g", i / unit, ew,
			  ep);
		tp += ep, tw += ew;
	}
	printf("  %s %zux%zu%s: weighted error plain %.4g -> search %.4g (%.1f%% lower)\n",
	       quant_fmt_name(fmt), rows, cols, use_imp ? " (importance)" : "", tp, tw,
	       100 * (1 - tw / tp));
	CHECK(tw < tp);
	for (size_t r = 0; r < rows && fmt == QUANT_FP8_E4M3; r++) {
		float amax = 0;
		for (size_t k = 0; k < cols; k++)
			amax = fmaxf(amax, fabsf(W[r * cols + k]));
		float s0 = num_e4m3_scale(amax);
		/* never saturating: the scale only grows, by less than 2x */
		CHECK(w.scales[r] >= s0 && w.scales[r] < 2 * s0);
	}
	for (size_t g = 0; fmt == QUANT_INT4 && g < rows * cols / group; g++)
		CHECK(w.zeros[g] <= 15 && w.scales[g] > 0);
	quant_matrix_free(&p);
	quant_matrix_free(&w);
	free(W);
	free(imp);
	free(Dp);
	free(Dw);
}

TEST(test_fp8_never_worse)
{
	check_never_worse(QUANT_FP8_E4M3, 13, 301, 0, true);
	check_never_worse(QUANT_FP8_E4M3, 7, 77, 0, false);
}

TEST(test_int4_never_worse)
{
	check_never_worse(QUANT_INT4, 11, 192, 64, true);
	check_never_worse(QUANT_INT4, 5, 384, 128, true);
	check_never_worse(QUANT_INT4, 9, 96, 32, false);
}

/* An important column gets a smaller error from the search than from plain RTN, summed over
 * many rows (the point of weighting). */
TEST(test_importance_moves_error)
{
	size_t rows = 64, cols = 128, G = 64;
	uint64_t st = seed;
	float *W = malloc(rows * cols * sizeof *W), *imp = malloc(cols * sizeof *imp);
	float *Dp = malloc(rows * cols * sizeof *Dp), *Dw = malloc(rows * cols * sizeof *Dw);
	fill(W, imp, rows, cols, &st);
	for (size_t j = 0; j < cols; j++)
		imp[j] = 1e-3f;
	imp[5] = imp[70] = 1e3f;
	quant_matrix p, w;
	os_error err;
	CHECK(quant_matrix_new(&p, QUANT_INT4, W, rows, cols, G, &err) == OS_OK);
	CHECK(quant_matrix_new_weighted(&w, QUANT_INT4, W, rows, cols, G, imp, NULL, &err) == OS_OK);
	quant_matrix_dequantize(&p, Dp);
	quant_matrix_dequantize(&w, Dw);
	double ep = 0, ew = 0;
	for (size_t r = 0; r < rows; r++)
		for (size_t j = 5; j < cols; j += 65) {
			double a = W[r * cols + j] - Dp[r * cols + j], b = W[r * cols + j] - Dw[r * cols + j];
			ep += a * a, ew += b * b;
		}
	printf("  important columns: squared error plain %.4g, search %.4g\n", ep, ew);
	CHECK(ew < 0.5 * ep);
	quant_matrix_free(&p);
	quant_matrix_free(&w);
	free(W);
	free(imp);
	free(Dp);
	free(Dw);
}

/* quant_fake_int4_row_weighted gives exactly the values the matrix holds. */
TEST(test_fake_twin)
{
	size_t rows = 3, cols = 320, G = 32;
	uint64_t st = seed + 7;
	float *W = malloc(rows * cols * sizeof *W), *imp = malloc(cols * sizeof *imp);
	float *D = malloc(rows * cols * sizeof *D), *F = malloc(cols * sizeof *F);
	fill(W, imp, rows, cols, &st);
	quant_matrix q;
	os_error err;
	CHECK(quant_matrix_new_weighted(&q, QUANT_INT4, W, rows, cols, G, imp, NULL, &err) == OS_OK);
	quant_matrix_dequantize(&q, D);
	for (size_t r = 0; r < rows; r++) {
		quant_fake_int4_row_weighted(F, W + r * cols, cols, G, imp, QUANT_SEARCH_STEPS);
		CHECK(memcmp(F, D + r * cols, cols * sizeof *F) == 0);
	}
	quant_matrix_free(&q);
	free(W);
	free(imp);
	free(D);
	free(F);
}

/* The kernels read searched codes like plain ones: generic and SIMD INT4 / FP8 matmuls
 * against the dequantized matrix at awkward token counts. */
TEST(test_kernels_read_searched)
{
	size_t rows = 37, cols = 192, G = 64, n_tok = 5;
	uint64_t st = seed + 11;
	float *W = malloc(rows * cols * sizeof *W), *imp = malloc(cols * sizeof *imp);
	float *D = malloc(rows * cols * sizeof *D), *X = malloc(n_tok * cols * sizeof *X);
	float *Y = malloc(n_tok * rows * sizeof *Y);
	fill(W, imp, rows, cols, &st);
	for (size_t i = 0; i < n_tok * cols; i++)
		X[i] = test_rand_float(&st);
	const cpu_qkernel_set *sets[2] = {cpu_qkernels_get(CPU_ISA_GENERIC),
					  cpu_qkernels_get(CPU_ISA_AVX512)};
	for (int f = 0; f < 2; f++) {
		quant_fmt fmt = f ? QUANT_INT4 : QUANT_FP8_E4M3;
		quant_matrix q;
		os_error err;
		CHECK(quant_matrix_new_weighted(&q, fmt, W, rows, cols, G, imp, NULL, &err) == OS_OK);
		quant_matrix_dequantize(&q, D);
		for (int k = 0; k < 2; k++) {
			if (!sets[k])
				continue;
			int rc = fmt == QUANT_INT4
					 ? cpu_qmatmul_i4(NULL, sets[k], Y, X, q.data, q.scales, q.zeros, G,
							  n_tok, cols, rows)
					 : cpu_qmatmul_fp8(NULL, sets[k], Y, X, q.data, q.scales, n_tok,
							   cols, rows, false);
			CHECK(rc == OS_OK);
			for (size_t t = 0; t < n_tok; t++)
				for (size_t o = 0; o < rows; o++) {
					double ref = 0, mag = 0;
					for (size_t j = 0; j < cols; j++) {
						ref += (double)X[t * cols + j] * D[o * cols + j];
						mag += fabs((double)X[t * cols + j] * D[o * cols + j]);
					}
					CHECK_MSG(fabs(Y[t * rows + o] - ref) <= 1e-5 * (1 + mag),
						  "%s %s t %zu o %zu: %g vs %g", sets[k]->name,
						  quant_fmt_name(fmt), t, o, Y[t * rows + o], ref);
				}
		}
		quant_matrix_free(&q);
	}
	free(W);
	free(imp);
	free(D);
	free(X);
	free(Y);
}

/* The picked (SIMD) pass and the scalar one give the same bits, at awkward lengths, with
 * and without importance, at scales that clamp codes at both ends. */
TEST(test_pass_twin)
{
	static const size_t lens[] = {1, 15, 16, 17, 32, 64, 100, 128, 131};
	uint64_t st = seed + 3;
	float w[131], imp[131];
	i4_pass_fn fast = quant_i4_pass_pick();
	for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
		size_t n = lens[t];
		fill(w, imp, 1, n, &st);
		for (int c = 0; c < 6; c++) {
			float s = 0.002f * (float)(1 + c * c) * (1 + test_rand_float(&st) * 0.5f);
			uint8_t z = (uint8_t)(c * 3);
			for (int ui = 0; ui < 2; ui++) {
				i4_sums a, b;
				quant_i4_pass_scalar(w, ui ? imp : NULL, n, s, z, &a);
				fast(w, ui ? imp : NULL, n, s, z, &b);
				CHECK_MSG(memcmp(&a, &b, sizeof a) == 0,
					  "n %zu s %g z %u: scalar (%.17g %.17g %.17g) simd (%.17g %.17g "
					  "%.17g)", n, s, z, a.a, a.b, a.e, b.a, b.b, b.e);
				/* e is the objective computed directly */
				double e = 0;
				for (size_t k = 0; k < n; k++) {
					double d = (double)w[k] -
						   num_i4_dequantize(num_i4_quantize(w[k], s, z), s, z);
					e += (ui ? imp[k] : 1.0) * d * d;
				}
				CHECK_NEAR(a.e, e, 1e-12 * (1 + e));
			}
		}
	}
}

/* The same matrix with and without a pool (3 threads: uneven task shares). */
TEST(test_pool_same)
{
	size_t rows = 45, cols = 256, G = 64;
	uint64_t st = seed + 5;
	float *W = malloc(rows * cols * sizeof *W), *imp = malloc(cols * sizeof *imp);
	fill(W, imp, rows, cols, &st);
	threadpool *pool = NULL;
	os_error err;
	CHECK(threadpool_new(&pool, 3, &err) == OS_OK);
	for (int f = 0; f < 2; f++) {
		quant_fmt fmt = f ? QUANT_INT4 : QUANT_FP8_E4M3;
		quant_matrix a, b;
		CHECK(quant_matrix_new_weighted(&a, fmt, W, rows, cols, G, imp, NULL, &err) == OS_OK);
		CHECK(quant_matrix_new_weighted(&b, fmt, W, rows, cols, G, imp, pool, &err) == OS_OK);
		size_t ng = f ? rows * cols / G : rows;
		CHECK(memcmp(a.data, b.data, f ? rows * cols / 2 : rows * cols) == 0);
		CHECK(memcmp(a.scales, b.scales, ng * sizeof(float)) == 0);
		CHECK(!f || memcmp(a.zeros, b.zeros, ng) == 0);
		quant_matrix_free(&a);
		quant_matrix_free(&b);
	}
	threadpool_free(pool);
	free(W);
	free(imp);
}

/* A plain implementation of the search's candidates (range, then 21 scales x zero points
 * zc-1..zc+2 with two refits each), evaluating every candidate in full: the fast search
 * (which skips repeated passes) must reach the same weighted error per group. */
static double ref_group_error(const float *w, const float *imp, size_t n)
{
	float lo = 0, hi = 0, s;
	uint8_t z0;
	for (size_t k = 0; k < n; k++)
		lo = fminf(lo, w[k]), hi = fmaxf(hi, w[k]);
	num_i4_params(lo, hi, &s, &z0);
	double best = 0;
	for (size_t k = 0; k < n; k++) {
		double d = (double)w[k] - num_i4_dequantize(num_i4_quantize(w[k], s, z0), s, z0);
		best += imp[k] * d * d;
	}
	for (int i = 0; i <= QUANT_SEARCH_STEPS; i++) {
		float s0 = (hi - lo) / (14.0f + 0.1f * (float)i);
		int zc = (int)floorf(-lo / s0);
		for (int z = zc - 1; z <= zc + 2; z++) {
			if (z < 0 || z > 15)
				continue;
			float sc = s0;
			for (int it = 0; it < 2; it++) {
				double num = 0, den = 0;
				for (size_t k = 0; k < n; k++) {
					double c = (double)num_i4_quantize(w[k], sc, (uint8_t)z) - z;
					num += imp[k] * c * w[k];
					den += imp[k] * c * c;
				}
				if (den > 0 && num > 0)
					sc = (float)(num / den);
			}
			double e = 0;
			for (size_t k = 0; k < n; k++) {
				double d = (double)w[k] -
					   num_i4_dequantize(num_i4_quantize(w[k], sc, (uint8_t)z), sc,
							     (uint8_t)z);
				e += imp[k] * d * d;
			}
			best = e < best ? e : best;
		}
	}
	return best;
}

TEST(test_search_matches_reference)
{
	size_t rows = 17, cols = 384, G = 128;
	uint64_t st = seed + 9;
	float *W = malloc(rows * cols * sizeof *W), *imp = malloc(cols * sizeof *imp);
	float *D = malloc(rows * cols * sizeof *D);
	fill(W, imp, rows, cols, &st);
	quant_matrix q;
	os_error err;
	CHECK(quant_matrix_new_weighted(&q, QUANT_INT4, W, rows, cols, G, imp, NULL, &err) == OS_OK);
	quant_matrix_dequantize(&q, D);
	for (size_t i = 0; i < rows * cols; i += G) {
		double ref = ref_group_error(W + i, imp + i % cols, G), e = 0;
		for (size_t k = 0; k < G; k++) {
			double d = (double)W[i + k] - D[i + k];
			e += imp[i % cols + k] * d * d;
		}
		CHECK_MSG(e <= ref * (1 + 1e-9), "group %zu: search %.17g, reference %.17g", i / G, e,
			  ref);
	}
	quant_matrix_free(&q);
	free(W);
	free(imp);
	free(D);
}

int main(void)
{
	seed = test_seed(seed);
	RUN(test_fp8_never_worse);
	RUN(test_int4_never_worse);
	RUN(test_importance_moves_error);
	RUN(test_fake_twin);
	RUN(test_kernels_read_searched);
	RUN(test_pass_twin);
	RUN(test_pool_same);
	RUN(test_search_matches_reference);
	return test_summary();
}
