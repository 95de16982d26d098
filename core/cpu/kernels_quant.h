/* kernels_quant.h: matmul kernels of the CPU backend for quantized weights (FP8 E4M3, INT8,
 * INT4), each with a scalar "generic" twin kept as the reference, chosen at run time like
 * the f32/bf16 sets of kernels.h. Element formats are those of core/numerics.h.
 *
 * Shapes as kernels.h: W (n_out, n_in) row-major, X (n_tok, n_in) f32, Y (n_tok, n_out) f32,
 * Y = X W^T. What each variant computes (twins differ only in f32 summation order, except
 * INT8, which is bit-identical):
 *
 *   FP8 W8A16  Y[t][o] = sw[o] * sum_k X[t][k] e4m3(W[o][k])            products exact in f32
 *              The amx set's tile path (matmul_fp8_tiles) computes the same sum on
 *              AMX-BF16 tiles: X = hi + mid + lo exactly (the bf16x3 planes below) and every
 *              E4M3 value is exact in bf16, so the products are exact and only f32 additions
 *              round, as on the other paths: |Y - exact| <= (3 n_in + 2) 2^-24
 *              sum_k |X[t][k] sw[o] e4m3(W[o][k])| (tested).
 *   FP8 W8A8   xs = absmax_k |X[t][k]| / 448, xd[k] = the E4M3 value nearest X[t][k] / xs
 *              (num_e4m3_quantize, then decoded exactly),
 *              Y[t][o] = (sw[o] * sum_k xd[k] e4m3(W[o][k])) * xs
 *              The products of two E4M3 values are exact in f32 and summed in f32, which is
 *              what an FP8 GEMM with f32 accumulation computes; only the order of the f32
 *              additions is unspecified (an FP8 tensor core differs from this by the same kind
 *              of rounding: |difference| <= ~n_in * 2^-24 * sum_k |xd[k] w[k]|).
 *   INT8 W8A8  xs = absmax / 127, xq[k] = clamp(round_even(X[t][k] * (1/xs)), -127, 127),
 *              acc = sum_k xq[k] W[o][k] exactly in int32 (n_in <= 65536),
 *              Y[t][o] = (float)acc * (xs * sw[o])
 *   INT4 W4A16 group g of G inputs: w = s[o][g] * (q - z[o][g]) (num_i4_dequantize, one
 *              rounding), Y[t][o] = sum_k X[t][k] w[o][k]
 *              The amx set's tile path (matmul_i4_tiles) computes the same sum with the
 *              scale applied to each group's partial instead of to each weight:
 *              Y[t][o] = sum_g s[o][g] * sum_{k in g} X[t][k] (q[o][k] - z[o][g]), where
 *              X = hi + mid + lo exactly (three bf16 planes) and q - z is exact in bf16, so
 *              every product is exact and only f32 additions round: |Y - exact| <=
 *              (3 G + n_in / G + 2) 2^-24 sum_k |X[t][k] s (q - z)| (tested), against ~2^-9
 *              relative per element with bf16-rounded activations. Only activations below
 *              ~2^-110 (whose lo or mid part is a bf16 denormal, flushed by AMX) lose bits.
 *
 * Weight storage (any alignment works; 64 bytes is best):
 *   FP8:  W n_out * n_in E4M3 bytes (no NaN codes), sw n_out f32 scales.
 *   INT8: W n_out * n_in int8 in [-127, 127], sw n_out f32 scales.
 *   INT4: W n_out * n_in / 2 bytes (element 2i in the low nibble), scales and zeros
 *         n_out * (n_in / G) each (f32, uint8 in [0, 15]), row-major by (row, group);
 *         G in {32, 64, 128} and n_in a multiple of G. */
#ifndef OPTSTUDIO_KERNELS_QUANT_H
#define OPTSTUDIO_KERNELS_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cpu/kernels.h"
#include "core/cpu/threadpool.h"
#include "core/errors.h"

/* Largest n_in of the INT8 kernels (int32 accumulation without overflow). */
#define CPU_QI8_MAX_IN 65536

/* Prefill: from this many tokens on, the FP8 and INT4 wrappers decode a tile of weight rows
 * once into f32 (FP8 W8A8: bf16, exact for E4M3 values) scratch and run kernels.h's matrix
 * kernel of the same isa on it (a packed GEMM at this size), instead of decoding every
 * weight inside every dot product: the decode is paid once per row for all n_tok tokens.
 * The arithmetic is the same as the tile kernels' (products of exact weight values, f32
 * sums; W8A8 activations still quantized per token first; row scale applied to the sum),
 * only the summation order differs. INT8 keeps its integer kernels (exact int32 sums); the
 * amx set's INT4 and FP8 W8A16 take their AMX-BF16 tiles (matmul_i4_tiles,
 * matmul_fp8_tiles) before this path. */
#define CPU_QTILE_MIN_TOK 32

/* The amx set's INT8 matmul runs a GEMM on AMX-INT8 tiles from this many tokens on (n_in a
 * multiple of 64), on panels of 32 weight rows: the threaded wrapper then gives it tasks of
 * whole panels. Fewer tokens take the AVX-512 vpdpbusd tiles, at the memory roofline there. */
#define CPU_QI8_GEMM_MIN_TOK 8

/* The amx set's INT4 and FP8 W8A16 paths on AMX-BF16 tiles (matmul_i4_tiles,
 * matmul_fp8_tiles): from i4_tiles_min_tok / fp8_tiles_min_tok tokens on, n_in a multiple of
 * 32. Their activations are the "bf16x3 planes", three bf16 planes laid out for the tiles'
 * second operand, per block of 16 tokens b (tokens past n_tok zero), plane p (0 hi, 1 mid,
 * 2 lo), pair l < n_in / 2: 16 uint32 lanes, lane j = token 16 b + j's bf16 pair
 * (x[2 l] low half, x[2 l + 1] high half), so CPU_BF16X3_PLANES(n_tok, n_in) uint32 in
 * all; element (b, p, l, j) at ((3 b + p) n_in / 2 + l) 16 + j. Either kernel also takes
 * CPU_QTILES_SCRATCH(n_in) bytes of 64-byte aligned scratch, its own (one per thread). */
#define CPU_BF16X3_PLANES(n_tok, n_in) (((size_t)(n_tok) + 15) / 16 * 24 * (size_t)(n_in))
#define CPU_QTILES_BLOCK 2 /* panels of 32 rows the kernel decodes at a time */
#define CPU_QTILES_SCRATCH(n_in) (CPU_QTILES_BLOCK * ((size_t)(n_in) * 68 + 4096))

/* One set of quantized kernels. Plain data; the sets are static const tables. Matmuls fill
 * Y[t][o] for every t < n_tok and o in [o0, o1), as kernels.h. */
typedef struct cpu_qkernel_set {
	const char *name; /* "generic", "avx512", "amx" */
	cpu_isa isa;
	/* A row's result does not depend on n_tok (kernels.h's batch_invariant): the generic
	 * set sums in k order on both paths; the avx512 / amx twins never take the prefill path
	 * (tile_min_tok). INT8 sums are exact in every set. */
	bool batch_invariant;
	/* Tokens from which FP8 / INT4 take the prefill path (CPU_QTILE_MIN_TOK); 0 = that,
	 * SIZE_MAX = never. */
	size_t tile_min_tok;

	/* FP8 W8A16: Y[t][o] = sw[o] * sum_k X[t][k] e4m3(W[o][k]). */
	void (*matmul_fp8)(float *Y, const float *X, const uint8_t *W, const float *sw,
			   size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1);
	/* INT8: Y[t][o] = (float)(sum_k Xq[t][k] W[o][k]) * (xs[t] * sw[o]), the sum exact in
	 * int32. xsum[t] = sum_k Xq[t][k] (from quantize_i8_act; some sets use it). */
	void (*matmul_i8)(float *Y, const int8_t *Xq, const float *xs, const int32_t *xsum,
			  const int8_t *W, const float *sw, size_t n_tok, size_t n_in, size_t n_out,
			  size_t o0, size_t o1);
	/* INT4 W4A16 with activations Xp laid out by this set's prepare_i4 (a set may reorder
	 * the elements of each group to suit its decoder; the generic set copies). */
	void (*matmul_i4)(float *Y, const float *Xp, const uint8_t *W, const float *scales,
			  const uint8_t *zeros, size_t group, size_t n_tok, size_t n_in,
			  size_t n_out, size_t o0, size_t o1);
	/* Xp (n_tok, n_in) = X in this set's INT4 activation layout for group size group. */
	void (*prepare_i4)(float *Xp, const float *X, size_t n_tok, size_t n_in, size_t group);
	/* The INT4 tile path, in the amx set only (NULL elsewhere; the batch-invariant twins
	 * never take it, so that a token's bits do not depend on its batch): Y as matmul_i4 with
	 * the group-partial scaling described above, Xv from prepare_bf16x3, rows [o0, o1)
	 * in panels of 32 from o0 (any split gives the same bits; whole panels waste nothing),
	 * n_in % 32 == 0. i4_tiles_min_tok: the fewest tokens worth it (unused when
	 * matmul_i4_tiles is NULL). */
	size_t i4_tiles_min_tok;
	void (*matmul_i4_tiles)(float *Y, const uint32_t *Xv, const uint8_t *W,
				const float *scales, const uint8_t *zeros, size_t group,
				size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1,
				void *scratch);
	/* Xv (CPU_BF16X3_PLANES(n_tok, n_in) uint32, 64-byte aligned) = the hi / mid / lo
	 * planes of X, exact: hi = bf16(x) (round to nearest even), mid = bf16(x - hi),
	 * lo = x - hi - mid; a token row's planes depend on that row alone (callers split by
	 * blocks of 16 tokens, offsetting Xv by CPU_BF16X3_PLANES(t0, n_in)). */
	void (*prepare_bf16x3)(uint32_t *Xv, const float *X, size_t n_tok, size_t n_in);
	/* The FP8 W8A16 tile path, in the amx set only (NULL elsewhere, the twins included, as
	 * matmul_i4_tiles): Y as matmul_fp8, the row's whole sum accumulated in the tiles, then
	 * times sw[o]; Xv from prepare_bf16x3, rows [o0, o1) in panels of 32 from o0 (any
	 * split gives the same bits), n_in % 32 == 0. fp8_tiles_min_tok: the fewest tokens
	 * worth it (unused when matmul_fp8_tiles is NULL). */
	size_t fp8_tiles_min_tok;
	void (*matmul_fp8_tiles)(float *Y, const uint32_t *Xv, const uint8_t *W, const float *sw,
				 size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1,
				 void *scratch);

	/* Weight decoding for the prefill path (CPU_QTILE_MIN_TOK), bit-identical in every set:
	 * out[k] = e4m3_to_f32(W[k]) for n codes (the unscaled, exact E4M3 values), and one
	 * INT4 row: out[k] = num_i4_dequantize(q[k], s[k / group], z[k / group]) for n_in
	 * elements (n_in a multiple of group, group in {32, 64, 128}). */
	void (*decode_fp8)(float *out, const uint8_t *W, size_t n);
	/* out[k] = num_f32_to_bf16(e4m3_to_f32(W[k])) for n codes, exact (E4M3 values have 4
	 * significant bits and exponents within bf16's); the weight decode of
	 * matmul_fp8_tiles, NULL in the sets without it. */
	void (*decode_fp8_bf16)(uint16_t *out, const uint8_t *W, size_t n);
	/* out[k] = (float)(int8_t)q[k] for n codes (INT8 KV cache rows; exact). */
	void (*decode_i8)(float *out, const uint8_t *q, size_t n);
	void (*decode_i4_row)(float *out, const uint8_t *W, const float *s, const uint8_t *z,
			      size_t group, size_t n_in);

	/* Per-token FP8 activations: xs[t] = num_e4m3_scale(absmax of row t) and
	 * Xd[t][k] = e4m3_to_f32(num_e4m3_quantize(X[t][k], num_inv_scale(xs[t]))), exactly
	 * (bit-identical in every set). Xd may equal X. */
	void (*quantize_e4m3_act)(float *Xd, float *xs, const float *X, size_t n_tok,
				  size_t n_in);
	/* Per-token INT8 activations: xs[t] = num_i8_scale(absmax of row t),
	 * Xq[t][k] = num_i8_quantize(X[t][k], num_inv_scale(xs[t])), xsum[t] = sum_k Xq[t][k];
	 * bit-identical in every set. */
	void (*quantize_i8_act)(int8_t *Xq, float *xs, int32_t *xsum, const float *X,
				size_t n_tok, size_t n_in);
} cpu_qkernel_set;

/* The quantized set for isa when this CPU supports it, else NULL. GENERIC never fails.
 * AVX2 has no quantized set of its own: it gives the generic one. AVX512 also needs
 * AVX-512 VNNI; AMX needs the plain amx set (tiles granted by Linux) and VNNI, and gives the
 * amx set with AMX-INT8, the avx512 one without. */
const cpu_qkernel_set *cpu_qkernels_get(cpu_isa isa);

/* The batch-invariant twin of qk (qk itself when it is one). */
const cpu_qkernel_set *cpu_qkernels_batch_invariant(const cpu_qkernel_set *qk);

/* The fastest quantized set this CPU supports, or the one OPTSTUDIO_CPU forces ("generic",
 * "avx2" -> generic, "avx512", "amx"), with the errors of cpu_kernels_select. */
int cpu_qkernels_select(const cpu_qkernel_set **out, os_error *err);

/* Threaded wrappers: Y = X W^T split by output rows over the pool (NULL: the caller alone),
 * activations quantized first where the variant says so. The result does not depend on the
 * number of threads. Y must not overlap X or W. Fail with OS_EUSAGE on bad shapes (n_in > 65536
 * for INT8, group not 32/64/128 or not dividing n_in for INT4) or OS_ENOMEM for scratch. */

/* FP8 weights; act_fp8 false: W8A16, true: W8A8 emulation. */
int cpu_qmatmul_fp8(threadpool *pool, const cpu_qkernel_set *qk, float *Y, const float *X,
		    const uint8_t *W, const float *sw, size_t n_tok, size_t n_in, size_t n_out,
		    bool act_fp8);
/* INT8 W8A8. */
int cpu_qmatmul_i8(threadpool *pool, const cpu_qkernel_set *qk, float *Y, const float *X,
		   const int8_t *W, const float *sw, size_t n_tok, size_t n_in, size_t n_out);
/* INT4 W4A16, group-wise asymmetric. */
int cpu_qmatmul_i4(threadpool *pool, const cpu_qkernel_set *qk, float *Y, const float *X,
		   const uint8_t *W, const float *scales, const uint8_t *zeros, size_t group,
		   size_t n_tok, size_t n_in, size_t n_out);

/* The sets themselves (kernels_quant_generic.c, kernels_quant_avx512.c: avx512 and amx). Use
 * cpu_qkernels_get / cpu_qkernels_select: the SIMD sets fault on a CPU without their
 * features, amx also in a process Linux has not granted the tile state. */
extern const cpu_qkernel_set cpu_qkernels_generic;
extern const cpu_qkernel_set cpu_qkernels_avx512;
extern const cpu_qkernel_set cpu_qkernels_amx;
extern const cpu_qkernel_set cpu_qkernels_avx512_bi;
extern const cpu_qkernel_set cpu_qkernels_amx_bi;

#endif
