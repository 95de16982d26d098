/* quant_formats.c: f32 weight matrices to FP8 E4M3 / INT8 / INT4 and back (quant_formats.h). */
#include "core/optimize/quant_formats.h"

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

static void quantize_rows(quant_matrix *m, const float *W)
{
	size_t rows = m->rows, cols = m->cols;
	for (size_t r = 0; r < rows; r++) {
		const float *w = W + r * cols;
		if (m->fmt == QUANT_FP8_E4M3) {
			uint8_t *q = (uint8_t *)m->data + r * cols;
			m->scales[r] = num_e4m3_scale(row_absmax(w, cols));
			float inv = num_inv_scale(m->scales[r]);
			for (size_t k = 0; k < cols; k++)
				q[k] = num_e4m3_quantize(w[k], inv);
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
				int4_group_params(wg, m->group, 1.0f, s, z);
				for (size_t k = 0; k < m->group; k++)
					num_i4_set(q, g * m->group + k, num_i4_quantize(wg[k], *s, *z));
			}
		}
	}
}

int quant_matrix_new(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		     size_t group, os_error *err)
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
	quantize_rows(m, W);
	return OS_OK;
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
