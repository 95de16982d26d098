/* gptq.h: GPTQ (Frantar et al. 2022) error-compensating quantization of one weight matrix:
 * columns are quantized in turn and each one's rounding error is spread over the columns not
 * yet quantized through the inverse of the input Hessian H = E[x x^T]. */
#ifndef OPTSTUDIO_GPTQ_H
#define OPTSTUDIO_GPTQ_H

#include <stdbool.h>
#include <stddef.h>

#include "core/cpu/threadpool.h"
#include "core/errors.h"
#include "core/optimize/quant_formats.h"

typedef struct gptq_opts {
	size_t group;     /* INT4 group size (32/64/128, divides cols); ignored for FP8/INT8 */
	float damp;       /* dampening: damp * mean(diag H) added to the diagonal [0.1] */
	size_t block;     /* columns per lazy-update block [128]; INT4 rounds it up to a
			   * multiple of group (a group never straddles two blocks) */
	bool act_order;   /* columns in decreasing diag(H) order; the INT4 group parameters
			   * are then fixed up front from the original weights' groups ("static
			   * groups", since the file stores groups in natural column order) */
	bool weighted;    /* each group's (INT4) or row's (FP8) scale chosen by the
			   * importance-weighted search (quant_formats.h) with importance diag(H),
			   * from the error-updated weights when the group starts (act_order:
			   * from the original weights); false: plain range. INT8: plain absmax
			   * either way */
	threadpool *pool; /* row-parallel (NULL: caller's thread); the result does not depend
			   * on it */
} gptq_opts;              /* zero numeric fields take the defaults; the flags are as given */

/* The recommended settings, measured on SmolLM2-135M (held-out proxy error): group 128,
 * damp 0.1, block 128, act_order and weighted on, no pool. */
gptq_opts gptq_opts_default(void);
typedef struct gptq_report {
	double err_rtn;  /* tr((W - Q_rtn) H (W - Q_rtn)^T): the proxy output error of the
			  * same grid choice without compensation (weighted search when weighted) */
	double err_gptq; /* the same for the GPTQ result */
	double energy;   /* tr(W H W^T) */
} gptq_report;

/* Quantizes W (rows, cols) f32 into *out (quant_matrix in fmt: QUANT_INT4 at o->group, or
 * QUANT_FP8_E4M3 / QUANT_INT8 with per-row scales) minimising the proxy output error
 * tr((W - Q) H (W - Q)^T), H (cols, cols) symmetric positive semi-definite, float, row-major:
 * E[x x^T] of the activations the matrix reads. Dead channels (H_ii = 0) get their W column
 * zeroed and H_ii = 1, as GPTQ does. The report's traces use the undampened H (dead channels
 * as given). o NULL: the defaults. On failure *out is zeroed and nothing is allocated.
 * Fails with OS_EUSAGE (sizes, group, format, non-finite inputs), OS_ENOMEM, or OS_ERANGE
 * when H + damping is not positive definite even after raising the dampening a few times.
 * The result does not depend on o->pool. rep may be NULL. */
int gptq_quantize(quant_matrix *out, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		  const float *H, const gptq_opts *o, gptq_report *rep, os_error *err);

/* The plain scalar twin of gptq_quantize for tests: double throughout, explicit H^-1 and
 * its upper Cholesky factor, the textbook column loop without blocking or threads. Same
 * contract; its codes agree with gptq_quantize's up to rounding ties. */
int gptq_quantize_reference(quant_matrix *out, quant_fmt fmt, const float *W, size_t rows,
			    size_t cols, const float *H, const gptq_opts *o, gptq_report *rep,
			    os_error *err);

/* tr((W - Q) H (W - Q)^T) for W (rows, cols) and Q = quant_matrix_dequantize(q) (q of the
 * same shape): the proxy output error of a quantized matrix, H as for gptq_quantize. q NULL:
 * tr(W H W^T). (W - Q) H is an F32 product on the CPU kernels (rows split over pool; NULL:
 * the caller's thread; the split does not change the bits), summed against W - Q in double:
 * within about 1e-5 relative of a float64 evaluation. Returns -1 on allocation failure or a
 * shape mismatch. */
double gptq_proxy_error(const quant_matrix *q, const float *W, size_t rows, size_t cols,
			const float *H, threadpool *pool);

#endif
