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

/* sum_k imp[k] (a[k] - b[k])^2 (imp NULL: 1), in double. */
static double wsq_err(const float *a, const float *b, const float *imp, size_t n)
{
	double e = 0;
	for (size_t k = 0; k < n; k++) {
		double d = (double)a[k] - (double)b[k];
		e += (imp ? (double)imp[k] : 1.0) * d * d;
	}
	return e;
}

/* Number of FP8 row scales tried by the weighted search: absmax / 448 * 2^(j / N). A power
 * of two only moves every element by the same exponent, so these N steps cover every
 * alignment of the row with the E4M3 grid; larger scales never saturate. */
#define FP8_SCALE_STEPS 32

static void fp8_row(uint8_t *q, float *scale, const float *w, size_t n, const float *imp,
		    bool search)
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

/* The weighted search of one INT4 group: (s, z) minimising sum imp (w - value)^2 among the
 * plain range parameters (tried first: ties keep them) and, for 21 scales
 * s0 = range / (14 + i / 10) and the zero points around -lo / s0, s refit by weighted least
 * squares to the codes it gives (twice). Weights live on the same grid as plain RTN. */
static void int4_group_search(const float *w, size_t n, const float *imp, size_t steps,
			      float *s_out, uint8_t *z_out)
{
	float tmp[128];
	float lo = 0.0f, hi = 0.0f;
	for (size_t k = 0; k < n; k++) {
		lo = w[k] < lo ? w[k] : lo;
		hi = w[k] > hi ? w[k] : hi;
	}
	num_i4_params(lo, hi, s_out, z_out);
	if (!(*s_out > 0.0f))
		return;
	int4_fake(tmp, w, n, *s_out, *z_out);
	double best = wsq_err(w, tmp, imp, n);
	bool full = steps >= QUANT_SEARCH_STEPS;
	int stride = steps ? (int)(QUANT_SEARCH_STEPS / (steps < QUANT_SEARCH_STEPS ? steps : QUANT_SEARCH_STEPS)) : QUANT_SEARCH_STEPS + 1;
	for (int i = 0; i <= QUANT_SEARCH_STEPS; i += stride) {
		float s0 = (hi - lo) / (14.0f + 0.1f * (float)i);
		int zc = (int)floorf(-lo / s0);
		for (int z = zc - (full ? 1 : 0); z <= zc + (full ? 2 : 1); z++) {
			if (z < 0 || z > 15)
				continue;
			float s = s0;
			for (int it = 0; it < (full ? 2 : 1); it++) {
				double num = 0, den = 0;
				for (size_t k = 0; k < n; k++) {
					double c = (double)num_i4_quantize(w[k], s, (uint8_t)z) - z;
					double wt = imp ? (double)imp[k] : 1.0;
					num += wt * c * w[k];
					den += wt * c * c;
				}
				if (den > 0 && num > 0)
					s = (float)(num / den);
			}
			int4_fake(tmp, w, n, s, (uint8_t)z);
			double e = wsq_err(w, tmp, imp, n);
			if (e < best)
				best = e, *s_out = s, *z_out = (uint8_t)z;
		}
	}
}

static void quantize_rows(quant_matrix *m, const float *W, const float *imp, bool search)
{
	size_t rows = m->rows, cols = m->cols;
	for (size_t r = 0; r < rows; r++) {
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
					int4_group_search(wg, m->group, imp ? imp + g * m->group : NULL,
							  QUANT_SEARCH_STEPS, s, z);
				else
					int4_group_params(wg, m->group, 1.0f, s, z);
				for (size_t k = 0; k < m->group; k++)
					num_i4_set(q, g * m->group + k, num_i4_quantize(wg[k], *s, *z));
			}
		}
	}
}

static int matrix_new(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		      size_t group, const float *imp, bool search, os_error *err)
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
	quantize_rows(m, W, imp, search);
	return OS_OK;
}

int quant_matrix_new(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		     size_t group, os_error *err)
{
	return matrix_new(m, fmt, W, rows, cols, group, NULL, false, err);
}

int quant_matrix_new_weighted(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows,
			      size_t cols, size_t group, const float *imp, os_error *err)
{
	return matrix_new(m, fmt, W, rows, cols, group, imp, fmt != QUANT_INT8, err);
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
	for (size_t g = 0; g < n; g += group) {
		float s;
		uint8_t z;
		int4_group_search(w + g, group, imp ? imp + g : NULL, steps, &s, &z);
		int4_fake(out + g, w + g, group, s, z);
	}
}
