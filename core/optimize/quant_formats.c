/* quant_formats.c: f32 weight matrices to FP8 E4M3 / INT8 / INT4 and back (quant_formats.h). */
#include "core/optimize/quant_formats.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/numerics.h"

const char *quant_fmt_name(quant_fmt fmt)
{
	switch (fmt) {
	case QUANT_FP8_E4M3:
		return "fp8-e4m3";
	case QUANT_INT8:
		return "int8";
	case QUANT_INT4:
		return "int4";
	default:
		return "?";
	}
}

static void *alloc64(size_t bytes)
{
	void *p = NULL;
	if (bytes == 0 || posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0)
		return NULL;
	return p;
}

static float row_absmax(const float *w, size_t n)
{
	float m = 0.0f;
	for (size_t k = 0; k < n; k++) {
		float a = w[k] < 0 ? -w[k] : w[k];
		m = a > m ? a : m;
	}
	return m;
}

/* Scale and zero point of one INT4 group, its range shrunk by clip. */
static void int4_group_params(const float *w, size_t n, float clip, float *s, uint8_t *z)
{
	float lo = w[0], hi = w[0];
	for (size_t k = 1; k < n; k++) {
		lo = w[k] < lo ? w[k] : lo;
		hi = w[k] > hi ? w[k] : hi;
	}
	num_i4_params(lo * clip, hi * clip, s, z);
}

/* ---- the INT4 group search ----------------------------------------------------------
 * One pass over a group for a candidate (s, z) gives, with c_k = q_k - z the centred codes
 * num_i4_quantize gives: a = sum imp c w, b = sum imp c^2 (the weighted least-squares refit
 * s' = a / b) and e = sum imp (w - s c)^2 (the objective, s c rounded to f32 as
 * num_i4_dequantize). Element k accumulates into lane k % 16 in double and the lanes are
 * summed in order, so the AVX-512 pass and its scalar twin give the same bits. */

#define I4_LANES 16

/* One element of a pass into lane sums (a, b, e), as the AVX-512 pass computes it. */
static inline void i4_elem(float w, double wt, float s, uint8_t z, double *a, double *b,
			   double *e)
{
	double c = (double)((int)num_i4_quantize(w, s, z) - (int)z);
	float val = s * (float)c;
	double d = (double)w - (double)val;
	*a += wt * c * (double)w;
	*b += wt * c * c;
	*e += wt * d * d;
}

static void i4_lanes_sum(const double *la, const double *lb, const double *le, i4_sums *out)
{
	double a = 0, b = 0, e = 0;
	for (int j = 0; j < I4_LANES; j++)
		a += la[j], b += lb[j], e += le[j];
	out->a = a, out->b = b, out->e = e;
}

void quant_i4_pass_scalar(const float *w, const float *imp, size_t n, float s, uint8_t z,
			  i4_sums *out)
{
	double la[I4_LANES] = {0}, lb[I4_LANES] = {0}, le[I4_LANES] = {0};
	for (size_t k = 0; k < n; k++)
		i4_elem(w[k], imp ? (double)imp[k] : 1.0, s, z, &la[k % I4_LANES],
			&lb[k % I4_LANES], &le[k % I4_LANES]);
	i4_lanes_sum(la, lb, le, out);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* no contraction into FMA: the scalar twin (baseline x86-64) has none, and the bits must agree */
#define I4_TGT __attribute__((target("avx512f"), optimize("fp-contract=off")))

/* Eight lanes of a pass: c, w, val and wt widened to double, products without FMA. */
I4_TGT static inline void i4_acc8(__m256 c8, __m256 w8, __m256 v8, __m256 i8, __m512d *a,
				  __m512d *b, __m512d *e)
{
	__m512d c = _mm512_cvtps_pd(c8), w = _mm512_cvtps_pd(w8), wt = _mm512_cvtps_pd(i8);
	__m512d d = _mm512_sub_pd(w, _mm512_cvtps_pd(v8));
	__m512d wc = _mm512_mul_pd(wt, c);
	*a = _mm512_add_pd(*a, _mm512_mul_pd(wc, w));
	*b = _mm512_add_pd(*b, _mm512_mul_pd(wc, c));
	*e = _mm512_add_pd(*e, _mm512_mul_pd(_mm512_mul_pd(wt, d), d));
}

I4_TGT static inline __m256 i4_hi8(__m512 v)
{
	return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* Smallest and largest w (n >= 1): exact, so any order gives the scalar loop's result. */
I4_TGT static void i4_range_avx512(const float *w, size_t n, float *lo, float *hi)
{
	__m512 vlo = _mm512_setzero_ps(), vhi = vlo;
	size_t k = 0;
	for (; k + I4_LANES <= n; k += I4_LANES) {
		__m512 v = _mm512_loadu_ps(w + k);
		vlo = _mm512_min_ps(vlo, v), vhi = _mm512_max_ps(vhi, v);
	}
	float l = _mm512_reduce_min_ps(vlo), h = _mm512_reduce_max_ps(vhi);
	for (; k < n; k++)
		l = w[k] < l ? w[k] : l, h = w[k] > h ? w[k] : h;
	*lo = l, *hi = h;
}

/* out = num_i4_dequantize(num_i4_quantize(w, s, z), s, z) for s > 0. */
I4_TGT static void i4_fake_avx512(float *out, const float *w, size_t n, float s, uint8_t z)
{
	const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps((float)z);
	const __m512 lim = _mm512_set1_ps(32.0f), zero = _mm512_setzero_ps();
	const __m512 fifteen = _mm512_set1_ps(15.0f);
	size_t k = 0;
	for (; k + I4_LANES <= n; k += I4_LANES) {
		__m512 v = _mm512_div_ps(_mm512_loadu_ps(w + k), vs);
		v = _mm512_min_ps(_mm512_max_ps(v, _mm512_sub_ps(zero, lim)), lim);
		v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		__m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, vz), zero), fifteen);
		_mm512_storeu_ps(out + k, _mm512_mul_ps(vs, _mm512_sub_ps(q, vz)));
	}
	for (; k < n; k++)
		out[k] = num_i4_dequantize(num_i4_quantize(w[k], s, z), s, z);
}

I4_TGT static void i4_pass_avx512(const float *w, const float *imp, size_t n, float s,
				  uint8_t z, i4_sums *out)
{
	__m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0, e0 = a0, e1 = a0;
	const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps((float)z);
	const __m512 lim = _mm512_set1_ps(32.0f), one = _mm512_set1_ps(1.0f);
	const __m512 zero = _mm512_setzero_ps(), fifteen = _mm512_set1_ps(15.0f);
	size_t k = 0;
	for (; k + I4_LANES <= n; k += I4_LANES) {
		__m512 wv = _mm512_loadu_ps(w + k);
		__m512 iv = imp ? _mm512_loadu_ps(imp + k) : one;
		/* num_i4_quantize: w / s clamped to +-32, rounded to even, + z, clamped to 0..15 */
		__m512 v = _mm512_div_ps(wv, vs);
		v = _mm512_min_ps(_mm512_max_ps(v, _mm512_sub_ps(zero, lim)), lim);
		v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		__m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, vz), zero), fifteen);
		__m512 c = _mm512_sub_ps(q, vz);
		__m512 val = _mm512_mul_ps(vs, c);
		i4_acc8(_mm512_castps512_ps256(c), _mm512_castps512_ps256(wv),
			_mm512_castps512_ps256(val), _mm512_castps512_ps256(iv), &a0, &b0, &e0);
		i4_acc8(i4_hi8(c), i4_hi8(wv), i4_hi8(val), i4_hi8(iv), &a1, &b1, &e1);
	}
	double la[I4_LANES], lb[I4_LANES], le[I4_LANES];
	_mm512_storeu_pd(la, a0), _mm512_storeu_pd(la + 8, a1);
	_mm512_storeu_pd(lb, b0), _mm512_storeu_pd(lb + 8, b1);
	_mm512_storeu_pd(le, e0), _mm512_storeu_pd(le + 8, e1);
	for (; k < n; k++)
		i4_elem(w[k], imp ? (double)imp[k] : 1.0, s, z, &la[k % I4_LANES],
			&lb[k % I4_LANES], &le[k % I4_LANES]);
	i4_lanes_sum(la, lb, le, out);
}
#endif

static void i4_range_scalar(const float *w, size_t n, float *lo, float *hi)
{
	float l = 0.0f, h = 0.0f;
	for (size_t k = 0; k < n; k++)
		l = w[k] < l ? w[k] : l, h = w[k] > h ? w[k] : h;
	*lo = l, *hi = h;
}

static void i4_fake_scalar(float *out, const float *w, size_t n, float s, uint8_t z)
{
	for (size_t k = 0; k < n; k++)
		out[k] = num_i4_dequantize(num_i4_quantize(w[k], s, z), s, z);
}

/* The group search's kernels, one ISA; chosen once per matrix or row. */
typedef struct i4_kernels {
	i4_pass_fn pass;
	void (*range)(const float *w, size_t n, float *lo, float *hi); /* min(w, 0), max(w, 0) */
	void (*fake)(float *out, const float *w, size_t n, float s, uint8_t z);
} i4_kernels;

static i4_kernels i4_kernels_pick(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (__builtin_cpu_supports("avx512f"))
		return (i4_kernels){i4_pass_avx512, i4_range_avx512, i4_fake_avx512};
#endif
	return (i4_kernels){quant_i4_pass_scalar, i4_range_scalar, i4_fake_scalar};
}

i4_pass_fn quant_i4_pass_pick(void)
{
	return i4_kernels_pick().pass;
}

/* Number of FP8 row scales tried by the weighted search: absmax / 448 * 2^(j / N). A power
 * of two only moves every element by the same exponent, so these N steps cover every
 * alignment of the row with the E4M3 grid; larger scales never saturate. */
#define FP8_SCALE_STEPS 32

static float fp8_scale(const float *w, size_t n, const float *imp, bool search)
{
	float s0 = num_e4m3_scale(row_absmax(w, n)), best_s = s0;
	if (search && s0 > 0.0f) {
		double best = INFINITY;
		for (int j = 0; j < FP8_SCALE_STEPS; j++) {
			float s = s0 * exp2f((float)j / FP8_SCALE_STEPS), inv = num_inv_scale(s);
			double e = 0;
			for (size_t k = 0; k < n; k++) {
				double d = (double)num_e4m3_to_f32(num_e4m3_quantize(w[k], inv)) * s -
					   (double)w[k];
				e += (imp ? (double)imp[k] : 1.0) * d * d;
			}
			if (e < best) /* strict: ties keep the plain absmax scale (j = 0) */
				best = e, best_s = s;
		}
	}
	return best_s;
}

static void fp8_row(uint8_t *q, float *scale, const float *w, size_t n, const float *imp,
		    bool search)
{
	float best_s = fp8_scale(w, n, imp, search);
	*scale = best_s;
	float inv = num_inv_scale(best_s);
	for (size_t k = 0; k < n; k++)
		q[k] = num_e4m3_quantize(w[k], inv);
}

/* Values of one INT4 group quantized with (s, z) into out. */
static void int4_fake(float *out, const float *w, size_t n, float s, uint8_t z)
{
	for (size_t k = 0; k < n; k++)
		out[k] = num_i4_dequantize(num_i4_quantize(w[k], s, z), s, z);
}

/* The error of candidate (s0, z) after `iters` least-squares refits of its scale: each
 * refit is a pass at the current scale whose (a, b) give the next; a refit that leaves the
 * scale as it was ends early (the remaining passes would repeat it). *s_out: the scale. */
static double i4_candidate(i4_pass_fn pass, const float *w, const float *imp, size_t n,
			   float s, uint8_t z, int iters, float *s_out)
{
	i4_sums r;
	pass(w, imp, n, s, z, &r);
	for (int it = 0; it < iters; it++) {
		if (!(r.b > 0 && r.a > 0))
			break;
		float s2 = (float)(r.a / r.b);
		if (s2 == s)
			break;
		s = s2;
		pass(w, imp, n, s, z, &r);
	}
	*s_out = s;
	return r.e;
}

/* The weighted search of one INT4 group: (s, z) minimising sum imp (w - value)^2 among the
 * plain range parameters (tried first: ties keep them) and, for 21 scales
 * s0 = range / (14 + i / 10) and the zero points around -lo / s0, s refit by weighted least
 * squares to the codes it gives (twice). Weights live on the same grid as plain RTN. */
static void int4_group_search(const i4_kernels *ker, const float *w, size_t n, const float *imp,
			      size_t steps, float *s_out, uint8_t *z_out)
{
	i4_pass_fn pass = ker->pass;
	float lo, hi;
	ker->range(w, n, &lo, &hi);
	num_i4_params(lo, hi, s_out, z_out);
	if (!(*s_out > 0.0f))
		return;
	i4_sums r0;
	pass(w, imp, n, *s_out, *z_out, &r0);
	double best = r0.e;
	bool full = steps >= QUANT_SEARCH_STEPS;
	int stride = steps ? (int)(QUANT_SEARCH_STEPS / (steps < QUANT_SEARCH_STEPS ? steps : QUANT_SEARCH_STEPS)) : QUANT_SEARCH_STEPS + 1;
	for (int i = 0; i <= QUANT_SEARCH_STEPS; i += stride) {
		float s0 = (hi - lo) / (14.0f + 0.1f * (float)i);
		int zc = (int)floorf(-lo / s0);
		for (int z = zc - (full ? 1 : 0); z <= zc + (full ? 2 : 1); z++) {
			if (z < 0 || z > 15)
				continue;
			float s;
			double e = i4_candidate(pass, w, imp, n, s0, (uint8_t)z, full ? 2 : 1, &s);
			if (e < best)
				best = e, *s_out = s, *z_out = (uint8_t)z;
		}
	}
}

/* Rows [r0, r1) of m from W. */
static void quantize_rows(quant_matrix *m, const float *W, const float *imp, bool search,
			  size_t r0, size_t r1)
{
	size_t cols = m->cols;
	i4_kernels ker = i4_kernels_pick();
	for (size_t r = r0; r < r1; r++) {
		const float *w = W + r * cols;
		if (m->fmt == QUANT_FP8_E4M3) {
			fp8_row((uint8_t *)m->data + r * cols, &m->scales[r], w, cols, imp, search);
		} else if (m->fmt == QUANT_INT8) {
			int8_t *q = (int8_t *)m->data + r * cols;
			m->scales[r] = num_i8_scale(row_absmax(w, cols));
			float inv = num_inv_scale(m->scales[r]);
			for (size_t k = 0; k < cols; k++)
				q[k] = num_i8_quantize(w[k], inv);
		} else {
			uint8_t *q = (uint8_t *)m->data + r * (cols / 2);
			size_t n_groups = cols / m->group;
			for (size_t g = 0; g < n_groups; g++) {
				const float *wg = w + g * m->group;
				float *s = &m->scales[r * n_groups + g];
				uint8_t *z = &m->zeros[r * n_groups + g];
				if (search)
					int4_group_search(&ker, wg, m->group,
							  imp ? imp + g * m->group : NULL,
							  QUANT_SEARCH_STEPS, s, z);
				else
					int4_group_params(wg, m->group, 1.0f, s, z);
				for (size_t k = 0; k < m->group; k++)
					num_i4_set(q, g * m->group + k, num_i4_quantize(wg[k], *s, *z));
			}
		}
	}
}

/* Rows per pool task: a few tasks per thread even for short matrices, and an even count
 * of rows so INT4 tasks never share a byte (they do not: rows are whole bytes anyway). */
#define QUANT_TASK_ROWS 8

typedef struct rows_job {
	quant_matrix *m;
	const float *W, *imp;
	bool search;
} rows_job;

static void rows_task(void *ctx, size_t task, size_t thread)
{
	rows_job *j = ctx;
	size_t r0 = task * QUANT_TASK_ROWS, r1 = r0 + QUANT_TASK_ROWS;
	quantize_rows(j->m, j->W, j->imp, j->search, r0, r1 < j->m->rows ? r1 : j->m->rows);
}

static int matrix_new(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		      size_t group, const float *imp, bool search, threadpool *pool, os_error *err)
{
	memset(m, 0, sizeof *m);
	if (rows == 0 || cols == 0)
		return os_error_set(err, OS_EUSAGE, "quantize: empty matrix (%zu x %zu)", rows,
				    cols);
	if (fmt == QUANT_INT4 && ((group != 32 && group != 64 && group != 128) || cols % group))
		return os_error_set(err, OS_EUSAGE,
				    "quantize int4: group %zu must be 32, 64 or 128 and divide the "
				    "%zu input columns",
				    group, cols);
	if (fmt != QUANT_FP8_E4M3 && fmt != QUANT_INT8 && fmt != QUANT_INT4)
		return os_error_set(err, OS_EUSAGE, "quantize: unknown format %d", (int)fmt);
	m->fmt = fmt;
	m->rows = rows;
	m->cols = cols;
	m->group = fmt == QUANT_INT4 ? group : 0;
	size_t n_scales = fmt == QUANT_INT4 ? rows * (cols / group) : rows;
	m->data = alloc64(fmt == QUANT_INT4 ? rows * cols / 2 : rows * cols);
	m->scales = alloc64(n_scales * sizeof(float));
	if (fmt == QUANT_INT4)
		m->zeros = alloc64(n_scales);
	if (!m->data || !m->scales || (fmt == QUANT_INT4 && !m->zeros)) {
		quant_matrix_free(m);
		return os_error_set(err, OS_ENOMEM, "quantize %s: out of memory for %zu x %zu",
				    quant_fmt_name(fmt), rows, cols);
	}
	if (search) {
		/* rows are independent and the search costs ~100x the plain rounding */
		rows_job j = {.m = m, .W = W, .imp = imp, .search = search};
		threadpool_run(pool, (rows + QUANT_TASK_ROWS - 1) / QUANT_TASK_ROWS, rows_task, &j);
	} else {
		quantize_rows(m, W, imp, search, 0, rows);
	}
	return OS_OK;
}

int quant_matrix_new(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		     size_t group, os_error *err)
{
	return matrix_new(m, fmt, W, rows, cols, group, NULL, false, NULL, err);
}

int quant_matrix_new_weighted(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows,
			      size_t cols, size_t group, const float *imp, threadpool *pool,
			      os_error *err)
{
	return matrix_new(m, fmt, W, rows, cols, group, imp, fmt != QUANT_INT8, pool, err);
}

void quant_matrix_free(quant_matrix *m)
{
	if (!m)
		return;
	free(m->data);
	free(m->scales);
	free(m->zeros);
	memset(m, 0, sizeof *m);
}

void quant_matrix_dequantize(const quant_matrix *m, float *W)
{
	size_t cols = m->cols;
	for (size_t r = 0; r < m->rows; r++) {
		float *w = W + r * cols;
		if (m->fmt == QUANT_FP8_E4M3) {
			const uint8_t *q = (const uint8_t *)m->data + r * cols;
			for (size_t k = 0; k < cols; k++)
				w[k] = num_e4m3_to_f32(q[k]) * m->scales[r];
		} else if (m->fmt == QUANT_INT8) {
			const int8_t *q = (const int8_t *)m->data + r * cols;
			for (size_t k = 0; k < cols; k++)
				w[k] = (float)q[k] * m->scales[r];
		} else {
			const uint8_t *q = (const uint8_t *)m->data + r * (cols / 2);
			size_t n_groups = cols / m->group;
			for (size_t k = 0; k < cols; k++) {
				size_t gi = r * n_groups + k / m->group;
				w[k] = num_i4_dequantize(num_i4_get(q, k), m->scales[gi], m->zeros[gi]);
			}
		}
	}
}

size_t quant_matrix_bytes(const quant_matrix *m)
{
	if (m->fmt == QUANT_INT4) {
		size_t n_groups = m->rows * (m->cols / m->group);
		return m->rows * m->cols / 2 + n_groups * (sizeof(float) + 1);
	}
	return m->rows * m->cols + m->rows * sizeof(float);
}

void quant_fake_int4_row(float *out, const float *w, size_t n, size_t group, float clip)
{
	for (size_t g = 0; g < n; g += group) {
		float s;
		uint8_t z;
		int4_group_params(w + g, group, clip, &s, &z);
		for (size_t k = g; k < g + group; k++)
			out[k] = num_i4_dequantize(num_i4_quantize(w[k], s, z), s, z);
	}
}

void quant_fake_int4_row_weighted(float *out, const float *w, size_t n, size_t group,
				  const float *imp, size_t steps)
{
	i4_kernels ker = i4_kernels_pick();
	for (size_t g = 0; g < n; g += group) {
		float s;
		uint8_t z;
		int4_group_search(&ker, w + g, group, imp ? imp + g : NULL, steps, &s, &z);
		if (s > 0.0f)
			ker.fake(out + g, w + g, group, s, z);
		else
			int4_fake(out + g, w + g, group, s, z);
	}
}

void quant_int4_group_choose(const float *w, size_t n, const float *imp, size_t steps,
			     float *scale, uint8_t *zero)
{
	if (steps == 0) {
		int4_group_params(w, n, 1.0f, scale, zero);
		return;
	}
	i4_kernels ker = i4_kernels_pick();
	int4_group_search(&ker, w, n, imp, steps, scale, zero);
}

float quant_fp8_row_scale(const float *w, size_t n, const float *imp, int search)
{
	return fp8_scale(w, n, imp, search != 0);
}
