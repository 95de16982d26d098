/* kernels.h: the compute kernels of the CPU backend. Every kernel has a plain scalar
 * "generic" version, kept as the reference; AVX2 and AVX-512 versions sit beside it in a
 * cpu_kernel_set chosen at run time by CPU feature, and the tests compare them against it.
 *
 * Shapes, all row-major f32 unless said: weights W (n_out, n_in), activations X (n_tok, n_in),
 * outputs Y (n_tok, n_out), so Y = X W^T, Y[t][o] = sum_k X[t][k] W[o][k].
 *
 * BF16 weights: activations are rounded to bf16 once per call (round to nearest even,
 * num_f32_to_bf16), and every variant computes Y[t][o] = sum_k bf16(X[t][k]) * W[o][k] with
 * the exact products accumulated in f32; variants differ only in summation order. (The
 * AVX-512 variant uses vdpbf16ps for prefill and decode below 8 tokens, which treats bf16
 * subnormals as zero; activations and weights of a real model are far from 1e-38, so this
 * does not show. Its 8..31-token decode tiles widen to f32 and use FMAs instead.) */
#ifndef OPTSTUDIO_KERNELS_H
#define OPTSTUDIO_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cpu/threadpool.h"
#include "core/errors.h"

/* Weight formats the matmul kernels take (same numbering as backend.h's be_wfmt). */
typedef enum cpu_wfmt {
	CPU_WFMT_F32 = 0,  /* float */
	CPU_WFMT_BF16 = 1, /* uint16_t bf16 bits */
	CPU_WFMT_COUNT
} cpu_wfmt;

/* Kernel sets, from plainest to fastest. */
typedef enum cpu_isa {
	CPU_ISA_GENERIC = 0, /* scalar C, the reference */
	CPU_ISA_AVX2 = 1,    /* AVX2 + FMA */
	CPU_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL + BF16 (vdpbf16ps) */
	CPU_ISA_AMX = 3,     /* the AVX-512 set, BF16 matmuls of 4+ tokens on AMX tiles */
	CPU_ISA_COUNT
} cpu_isa;

/* Rotary embedding layouts. NORM: rotate adjacent pairs (x[2i], x[2i+1]), llama.cpp's
 * "normal" rope, used by GGUF llama after the converter's Q/K permutation. NEOX: rotate
 * (x[i], x[i + d/2]), the half-split layout of HF checkpoints and GPT-NeoX. */
typedef enum cpu_rope_layout {
	CPU_ROPE_NORM = 0,
	CPU_ROPE_NEOX = 1
} cpu_rope_layout;

/* One set of kernels. Plain data; the sets are static const tables, never written.
 * Row ranges [o0, o1) let a caller (cpu_matmul) split work over threads by output rows;
 * start ranges at multiples of 16 and a row's result does not depend on the split (the
 * AVX-512 set sums 8-row tiles with a different lane order than single rows). */
typedef struct cpu_kernel_set {
	const char *name; /* "generic", "avx2", "avx512" */
	cpu_isa isa;
	/* Every kernel's result for a row (a token) is the same bits whatever the batch
	 * around it: n_tok of the matmuls, m of the attention products. The generic and avx2
	 * sets are so by construction; avx512 and amx have twins that are (see
	 * cpu_kernels_batch_invariant). */
	bool batch_invariant;

	/* Y[t][o] = sum_k X[t][k] W[o][k] for every t < n_tok and o in [o0, o1). W streams
	 * from memory once: all n_tok dot products are computed per loaded weight chunk.
	 * Y (n_tok, n_out), X (n_tok, n_in), W (n_out, n_in). */
	void (*matmul_f32)(float *Y, const float *X, const float *W, size_t n_tok, size_t n_in,
			   size_t n_out, size_t o0, size_t o1);
	/* The same with bf16 weights and activations already rounded to bf16:
	 * Xb (n_tok, n_in) bf16 bits, W (n_out, n_in) bf16 bits; products summed in f32. */
	void (*matmul_bf16)(float *Y, const uint16_t *Xb, const uint16_t *W, size_t n_tok,
			    size_t n_in, size_t n_out, size_t o0, size_t o1);

	/* sum a[i] b[i], f32 accumulation (order differs between sets). */
	float (*dot)(const float *a, const float *b, size_t n);
	/* y[i] += a * x[i]. */
	void (*axpy)(float *y, float a, const float *x, size_t n);
	/* y[i] += x[i] (residual add). */
	void (*add)(float *y, const float *x, size_t n);
	/* x[i] *= a. */
	void (*scale)(float *x, float a, size_t n);
	/* y = x / sqrt(mean(x^2) + eps) * w for one row of n; y may equal x. */
	void (*rmsnorm)(float *y, const float *x, const float *w, size_t n, float eps);
	/* In place x = exp(x - max) / sum exp(x - max) over n >= 1 elements. -INFINITY entries
	 * (masked) become 0; at least one entry must be finite. */
	void (*softmax)(float *x, size_t n);
	/* Y (m, n) = X (m, k) B (k, n), or Y += X B when acc is nonzero; ldy, ldx, ldb are row
	 * strides in floats; k may be 0. The small products of attention: a query tile times a
	 * transposed key block, and softmax weights times a value block. Y must not overlap X
	 * or B. f32 accumulation (fused or not, in order p = 0..k-1). */
	void (*gemm_nn)(float *Y, size_t ldy, const float *X, size_t ldx, const float *B,
			size_t ldb, size_t m, size_t k, size_t n, int acc);
	/* gemm_nn with the rows of B in chunks of kb >= 1 rows, each chunk from its own
	 * pointer: row p of B is Bs[p / kb] + (p % kb) * ldb (Bs holds ceil(k / kb) pointers).
	 * Attention's P V over a step of cache blocks (the value rows of each block in place)
	 * in one call, so the accumulator tile stays in registers across the whole step. The
	 * same sums, in the same order, as gemm_nn of the gathered B. */
	void (*gemm_nn_chunks)(float *Y, size_t ldy, const float *X, size_t ldx,
			       const float *const *Bs, size_t ldb, size_t kb, size_t m, size_t k,
			       size_t n, int acc);
	/* Attention scores on an F32 KV cache read in place, for the few query rows of a decode
	 * token: S[i][j] = sum_d X[i][d] K_j[d] for i < m, j < n (X (m, hd) rows ldx apart,
	 * only those S entries written), key row j at Ks[j / kb] + (j % kb) * ldk (kb >= 1 rows
	 * per cache block). Every sum in the order and rounding of gemm_nn of X and the
	 * transposed keys, so the bits are the same as that product's; it needs no transposed
	 * copy. NULL where a set has none (the caller transposes and calls gemm_nn). */
	void (*attn_scores_f32)(float *S, size_t lds, const float *X, size_t ldx,
				const float *const *Ks, size_t ldk, size_t kb, size_t m,
				size_t hd, size_t n);
	/* Attention on bf16 operands, for a BF16 KV cache read in place: only sets with bf16
	 * matrix tiles (amx) and the generic reference have them, NULL elsewhere. Key / value
	 * row j of a step is at Ks[j / kb] + (j % kb) * ldk (bf16 elements; kb >= 1 rows per
	 * cache block). Products of bf16 values are exact in f32 and summed in f32 (order
	 * differs between sets). Scores: S[i][j] = sum_d X[i][d] K_j[d] for i < m, j < n
	 * (X (m, hd) bf16 rows ldx apart; only those S entries are written). */
	void (*attn_scores_bf16)(float *S, size_t lds, const uint16_t *X, size_t ldx,
				 const uint16_t *const *Ks, size_t ldk, size_t kb, size_t m,
				 size_t hd, size_t n);
	/* acc[i][d] += sum_j P[i][j] V_j[d] for i < m, d < hd: P (m, n) bf16 rows ldp apart
	 * (the softmax weights), acc f32 rows lda apart. */
	void (*attn_pv_bf16)(float *acc, size_t lda, const uint16_t *P, size_t ldp,
			     const uint16_t *const *Vs, size_t ldv, size_t kb, size_t m, size_t n,
			     size_t hd);
	/* In place x[i] = e^(x[i] - m) for i < n, returns the f32 sum of the new x[i] (order
	 * differs between sets). -INFINITY entries become 0; m finite. Softmax without the
	 * division, for the online softmax of attention. */
	float (*exp_sum)(float *x, size_t n, float m);
	/* One row of attention's blockwise online softmax: s holds the n_t scores of a key
	 * block, the first nv (<= n_t) visible to the row, m and l its running max and sum,
	 * acc (hd) its running weighted values. When nv > 0: mn = max(*m, s[0..nv)), c =
	 * e^(*m - mn) (0 when *m is -INFINITY); if c != 1, acc *= c and *l *= c; then s[t] =
	 * e^(s[t] - mn) for t < nv, *l += their f32 sum, *m = mn. Always s[t] = 0 for nv <= t <
	 * n_t. One call per row replaces a scalar max, expf and three kernel calls per row. */
	void (*online_softmax)(float *s, size_t n_t, size_t nv, float *m, float *l, float *acc,
			       size_t hd);
	/* y[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g); y may equal gate or up. */
	void (*swiglu)(float *y, const float *gate, const float *up, size_t n);
	/* Rotates every head of one token in place: x is (n_heads, head_dim), head_dim even;
	 * pair i in [0, head_dim/2) turns by the angle with cos_t[i], sin_t[i]:
	 *   (a, b) <- (a cos - b sin, a sin + b cos)
	 * with (a, b) = (x[2i], x[2i+1]) for NORM and (x[i], x[i + head_dim/2]) for NEOX. */
	void (*rope_rotate)(float *x, size_t n_heads, size_t head_dim, const float *cos_t,
			    const float *sin_t, cpu_rope_layout layout);
	/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (an exact copy, transposed;
	 * nothing else of dst is written). dst must not overlap src. Attention's key blocks. */
	void (*transpose)(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
			  size_t cols);
	/* y[i] = bf16 -> f32 of x[i] (exact). */
	void (*bf16_to_f32)(float *y, const uint16_t *x, size_t n);
	/* y[i] = bf16 of x[i], round to nearest even (num_f32_to_bf16). */
	void (*f32_to_bf16)(uint16_t *y, const float *x, size_t n);
} cpu_kernel_set;

/* The set for isa when this CPU (and OS) supports it, else NULL. GENERIC never fails. */
const cpu_kernel_set *cpu_kernels_get(cpu_isa isa);

/* The fastest set this CPU supports, unless the environment variable OPTSTUDIO_CPU is set
 * to "generic", "avx2", "avx512" or "amx", which forces that set. Fails with OS_EUSAGE for
 * another value and OS_EUNSUPPORTED when the CPU lacks the forced set; *out is then
 * untouched. */
int cpu_kernels_select(const cpu_kernel_set **out, os_error *err);

/* The batch-invariant twin of ks (ks itself when it is one): the same kernels except the
 * matmuls, which then sum every output in one order for every n_tok. A token's logits are
 * then the same bits in any batch, so greedy speculative decoding reproduces plain greedy
 * decoding exactly (vLLM calls this batch invariance). The price is speed at the batch
 * sizes whose fastest kernel sums in another order: on avx512 / amx, F32 and BF16 decode of
 * 1-7 tokens (kernels_avx512.c gives the measurements). */
const cpu_kernel_set *cpu_kernels_batch_invariant(const cpu_kernel_set *ks);

/* Y = X W^T with W in fmt (F32: float, BF16: uint16_t bf16 bits), threaded over the pool by
 * output rows (pool may be NULL). For n_tok >= 32 the kernels tile over tokens and outputs
 * so each weight block is reused across tokens from cache. Y must not overlap X or W.
 * The result does not depend on the number of threads. Fails only with OS_ENOMEM (the bf16
 * copy of X for BF16, when it does not fit the 32 KiB on the stack) or OS_EUSAGE (bad fmt). */
int cpu_matmul(threadpool *pool, const cpu_kernel_set *ks, float *Y, const float *X,
	       const void *W, cpu_wfmt fmt, size_t n_tok, size_t n_in, size_t n_out);

/* rmsnorm of n_rows rows of dim: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w; y may equal x. */
void cpu_rmsnorm(const cpu_kernel_set *ks, float *y, const float *x, const float *w,
		 size_t n_rows, size_t dim, float eps);

/* The rope angle of pair i at position pos: pos * base^(-2i/head_dim), in radians,
 * computed in double. */
double cpu_rope_angle(int64_t pos, size_t i, size_t head_dim, float base);

/* Rotary embedding in place for n_tok tokens: x is (n_tok, n_heads * head_dim), token t at
 * position pos[t]; angles from cpu_rope_angle (sin/cos in double, then rounded to f32).
 * head_dim even; up to 1024 the rotation uses the set's kernel, beyond it a scalar loop. */
void cpu_rope(const cpu_kernel_set *ks, float *x, size_t n_tok, size_t n_heads,
	      size_t head_dim, const int32_t *pos, float base, cpu_rope_layout layout);

/* bytes of memory aligned to 64 bytes (a cache line; also any SIMD load), contents
 * undefined; NULL on failure or bytes == 0. Free with cpu_free_aligned (NULL is fine). */
void *cpu_alloc_aligned(size_t bytes);
void cpu_free_aligned(void *p);

/* The sets themselves (kernels_generic.c, kernels_avx2.c, kernels_avx512.c: avx512 and
 * amx). Use cpu_kernels_get / cpu_kernels_select: the SIMD sets fault on a CPU without their
 * features, amx also in a process Linux has not granted the tile state. */
extern const cpu_kernel_set cpu_kernels_generic;
extern const cpu_kernel_set cpu_kernels_avx2;
extern const cpu_kernel_set cpu_kernels_avx512;
extern const cpu_kernel_set cpu_kernels_amx;
extern const cpu_kernel_set cpu_kernels_avx512_bi;
extern const cpu_kernel_set cpu_kernels_amx_bi;

#endif
