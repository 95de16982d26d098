/* quant_formats.h: quantizes f32 weight matrices into the run-time formats of the quantized
 * kernels (core/cpu/kernels_quant.h), and back, with the element rules of core/numerics.h. */
#ifndef OPTSTUDIO_QUANT_FORMATS_H
#define OPTSTUDIO_QUANT_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/cpu/threadpool.h"
#include "core/errors.h"

typedef enum quant_fmt {
	QUANT_FP8_E4M3 = 0, /* per-output-channel f32 scale absmax / 448, E4M3 codes */
	QUANT_INT8 = 1,     /* per-output-channel symmetric, scale absmax / 127, codes -127..127 */
	QUANT_INT4 = 2,     /* group-wise asymmetric uint4, f32 scale + uint8 zero per group */
	QUANT_FMT_COUNT
} quant_fmt;

/* A quantized weight matrix W of shape (rows, cols) = (n_out, n_in), row-major, in exactly
 * the layout the kernels read. Plain data; the buffers are owned by the struct (64-byte
 * aligned) and freed by quant_matrix_free. */
typedef struct quant_matrix {
	quant_fmt fmt;
	size_t rows, cols;
	size_t group;    /* INT4: 32, 64 or 128, dividing cols; else 0 */
	void *data;      /* FP8: rows*cols E4M3 bytes; INT8: rows*cols int8; INT4: rows*cols/2
			  * bytes, element 2i in the low nibble of byte i */
	float *scales;   /* FP8, INT8: rows; INT4: rows * (cols / group), by (row, group) */
	uint8_t *zeros;  /* INT4: rows * (cols / group) zero points in [0, 15]; else NULL */
} quant_matrix;

/* "fp8-e4m3", "int8", "int4"; "?" for anything else. */
const char *quant_fmt_name(quant_fmt fmt);

/* Quantizes W (rows, cols) f32 into *m (whose previous contents are ignored) in fmt; group is
 * the INT4 group size (ignored otherwise). Values must be finite. On failure *m is zeroed and
 * nothing is allocated. Fails with OS_EUSAGE (zero size, group not 32/64/128 or not dividing
 * cols, odd cols) or OS_ENOMEM. */
int quant_matrix_new(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		     size_t group, os_error *err);

/* quant_matrix_new with each scale chosen by a search instead of taken from the range: the
 * one minimising the importance-weighted squared error sum_k imp[k] (w[k] - value[k])^2 of
 * its row (FP8: among absmax / 448 * 2^(j / 32), j < 32, which covers every alignment with
 * the E4M3 grid and never saturates) or group (INT4: scale and zero point among the plain
 * range's and 21 x 4 candidates around it, the scale refit by weighted least squares).
 * The plain choice is a candidate and wins ties, so the weighted error is never above
 * quant_matrix_new's. imp (cols, >= 0, finite) is the mean x_k^2 of the activations the
 * matrix reads (calibrate.h's mean_sq): the sum is then the expected output error of the row
 * when input channels are uncorrelated (the objective of llama.cpp's importance matrix and
 * of MSE calibration). imp NULL weighs all columns alike. INT8 ignores imp (plain absmax).
 * The codes use the same formats and kernels as quant_matrix_new's. Fails like it. */
/* The rows are searched in parallel on pool (NULL: on the caller's thread); the result does
 * not depend on the pool. */
int quant_matrix_new_weighted(quant_matrix *m, quant_fmt fmt, const float *W, size_t rows,
			      size_t cols, size_t group, const float *imp, threadpool *pool,
			      os_error *err);

/* Frees the buffers of m and zeroes it. NULL and a zeroed struct are fine. */
void quant_matrix_free(quant_matrix *m);

/* W (rows, cols) f32 = the values the codes stand for: code * scale for FP8 / INT8,
 * s * (q - z) for INT4 (what the kernels multiply by, exactly). */
void quant_matrix_dequantize(const quant_matrix *m, float *W);

/* Bytes of codes, scales and zero points (the memory a matmul streams). */
size_t quant_matrix_bytes(const quant_matrix *m);

/* One row of n values quantized to INT4 and back (out may equal w), the group range shrunk
 * by clip in (0, 1] first (clip = 1: plain round to nearest): for AWQ-style searches over
 * scales and clipping that measure the output error without building a matrix. group
 * divides n. */
void quant_fake_int4_row(float *out, const float *w, size_t n, size_t group, float clip);

/* Scale steps of quant_matrix_new_weighted's INT4 search (21 scales, 4 zero points each,
 * two least-squares refits). */
#define QUANT_SEARCH_STEPS 20

/* quant_fake_int4_row with the INT4 search (imp: n weights or NULL). steps =
 * QUANT_SEARCH_STEPS gives exactly quant_matrix_new_weighted's values; fewer (a divisor of
 * it, >= 1) is a cheaper search over steps + 1 scales, 2 zero points and one refit, for
 * inner loops such as AWQ's scale search (0: the plain range only, as RTN). */
void quant_fake_int4_row_weighted(float *out, const float *w, size_t n, size_t group,
				  const float *imp, size_t steps);

/* Scale and zero point of one INT4 group of n >= 1 values w: steps 0 the plain range (as
 * quant_matrix_new), else the search of quant_fake_int4_row_weighted with importances imp (n,
 * or NULL) and that many steps (QUANT_SEARCH_STEPS: quant_matrix_new_weighted's choice).
 * For callers that quantize group by group themselves (GPTQ). */
void quant_int4_group_choose(const float *w, size_t n, const float *imp, size_t steps,
			     float *scale, uint8_t *zero);

/* FP8 E4M3 scale of one row of n values: absmax / 448, or with search the weighted choice
 * quant_matrix_new_weighted makes (imp: n importances or NULL). */
float quant_fp8_row_scale(const float *w, size_t n, const float *imp, int search);

/* One pass of the INT4 search over a group w (n) with scale s > 0 and zero z: with c_k the
 * centred code num_i4_quantize(w_k, s, z) - z and wt_k = imp[k] (1 when imp is NULL),
 * a = sum wt c w, b = sum wt c^2 and e = sum wt (w - s c)^2, s c rounded to f32 as
 * num_i4_dequantize does. Summed in double over 16 lanes (element k in lane k % 16) added in
 * order, so every implementation gives the same bits. */
typedef struct i4_sums {
	double a, b, e;
} i4_sums;
typedef void (*i4_pass_fn)(const float *w, const float *imp, size_t n, float s, uint8_t z,
			   i4_sums *out);
/* The portable pass. */
void quant_i4_pass_scalar(const float *w, const float *imp, size_t n, float s, uint8_t z,
			  i4_sums *out);
/* The fastest pass this CPU runs (AVX-512 when it has it), bit-identical to the scalar one. */
i4_pass_fn quant_i4_pass_pick(void);

#endif
