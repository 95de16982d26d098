/* kernels_avx512.c: the AVX-512 kernel set (F, BW, VL, BF16): f32 FMA and bf16 vdpbf16ps
 * matmuls (dot-product tiles for decode, outer-product tiles for decode batches of 8..16
 * tokens (BF16: 8..31, weights widened to f32 on the fly), a packed-panel GEMM for
 * prefill), vector exp for softmax / SwiGLU; and the "amx" set, the same with BF16 matmuls
 * on AMX tiles. Compiled with function-level target attributes, so this file builds with
 * plain flags and its code only runs when cpuid (and, for tiles, the OS) says it may. */
#include "core/cpu/kernels.h"
#include "core/cpu/kernels_amx.h"
#include "core/cpu/kernels_avx512.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni,avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TGT

/* ---- matmul: register tiles of R output rows x T tokens, dot-product form --------------- */
/* Both operands are contiguous along n_in, so each accumulator holds 16 (f32) or 32 (bf16)
 * partial products of one (row, token) pair, summed across lanes at the end of the row.
 * Tiles are 8 rows x 3 tokens (24 accumulators, 3 activation and 1 weight register); the
 * last n_out % 8 rows go one at a time. A row's result depends only on whether it lies in
 * an 8-row tile, and 8-row tiles always start at multiples of 8 as long as the caller's
 * row ranges start at multiples of 8 (cpu_matmul uses 16), so threading never changes bits. */

enum { TILE_R = 8, TILE_T = 3 };

static inline __mmask16 tail16(size_t n)
{
	return (__mmask16)((1u << n) - 1u);
}

static inline __mmask32 tail32(size_t n)
{
	return (__mmask32)((n >= 32) ? 0xffffffffu : ((1u << n) - 1u));
}

/* The 8 horizontal sums of a[0..7], in order: a shuffle tree of 25 instructions instead of
 * 8 separate reductions. */
INLINE __m256 reduce8(const __m512 a[8])
{
	__m512 p[4], q[2];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
		p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
				     _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
	/* p[i]: 128-bit blocks 0,1 sum to a[2i], blocks 2,3 to a[2i+1] */
#pragma GCC unroll 2
	for (int i = 0; i < 2; i++)
		q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x88),
				     _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xdd));
	/* q[i]: block j sums to a[4i+j] */
	__m512 r = _mm512_add_ps(_mm512_unpacklo_ps(q[0], q[1]), _mm512_unpackhi_ps(q[0], q[1]));
	/* r: block j lanes (0,2) sum to a[j], lanes (1,3) to a[4+j] */
	r = _mm512_add_ps(r, _mm512_permute_ps(r, 0x4e));
	/* block j: lane 0 = a[j], lane 1 = a[4+j] */
	const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0);
	return _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, r));
}

INLINE void store_tile(float *Y, size_t n_out, size_t o, size_t t0, __m512 acc[TILE_R][TILE_T],
		       const int R, const int T)
{
#pragma GCC unroll 3
	for (int t = 0; t < T; t++) {
		float *y = Y + (t0 + (size_t)t) * n_out + o;
		if (R == 8) {
			__m512 col[8];
#pragma GCC unroll 8
			for (int r = 0; r < 8; r++)
				col[r] = acc[r][t];
			_mm256_storeu_ps(y, reduce8(col));
		} else {
#pragma GCC unroll 8
			for (int r = 0; r < R; r++)
				y[r] = _mm512_reduce_add_ps(acc[r][t]);
		}
	}
}

INLINE void tile_f32(float *Y, const float *X, const float *W, size_t n_in, size_t n_out,
		     size_t o, size_t t0, const int R, const int T)
{
	__m512 acc[TILE_R][TILE_T];
	const float *w[TILE_R], *x[TILE_T];
#pragma GCC unroll 8
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * n_in;
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			acc[r][t] = _mm512_setzero_ps();
	}
#pragma GCC unroll 3
	for (int t = 0; t < T; t++)
		x[t] = X + (t0 + (size_t)t) * n_in;
	size_t k = 0;
	for (; k + 16 <= n_in; k += 16) {
		__m512 xv[TILE_T];
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			xv[t] = _mm512_loadu_ps(x[t] + k);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			__m512 wv = _mm512_loadu_ps(w[r] + k);
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
		}
	}
	if (k < n_in) {
		__mmask16 m = tail16(n_in - k);
		__m512 xv[TILE_T];
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			xv[t] = _mm512_maskz_loadu_ps(m, x[t] + k);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			__m512 wv = _mm512_maskz_loadu_ps(m, w[r] + k);
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
		}
	}
	store_tile(Y, n_out, o, t0, acc, R, T);
}

INLINE void tile_bf16(float *Y, const uint16_t *X, const uint16_t *W, size_t n_in,
		      size_t n_out, size_t o, size_t t0, const int R, const int T)
{
	__m512 acc[TILE_R][TILE_T];
	const uint16_t *w[TILE_R], *x[TILE_T];
#pragma GCC unroll 8
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * n_in;
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			acc[r][t] = _mm512_setzero_ps();
	}
#pragma GCC unroll 3
	for (int t = 0; t < T; t++)
		x[t] = X + (t0 + (size_t)t) * n_in;
	size_t k = 0;
	for (; k + 32 <= n_in; k += 32) {
		/* the same line of the next tile's rows: decode streams W from memory, and the 8
		 * interleaved row streams of a tile outrun the hardware prefetcher. A whole tile
		 * ahead (rows are contiguous, so a linear 8-row distance) also covers the start of
		 * each tile, which a fixed distance within the row (512 bytes, used before) left
		 * to demand misses (measured: BF16 batch 1 +5-15% over 512 bytes ahead; that was
		 * +5-50% over none; for F32 it was a wash, so it is off there) */
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
			_mm_prefetch((const char *)(w[r] + k + TILE_R * n_in), _MM_HINT_T0);
		__m512bh xv[TILE_T];
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			xv[t] = (__m512bh)_mm512_loadu_si512(x[t] + k);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			__m512bh wv = (__m512bh)_mm512_loadu_si512(w[r] + k);
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
		}
	}
	if (k < n_in) {
		__mmask32 m = tail32(n_in - k);
		__m512bh xv[TILE_T];
#pragma GCC unroll 3
		for (int t = 0; t < T; t++)
			xv[t] = (__m512bh)_mm512_maskz_loadu_epi16(m, x[t] + k);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			__m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w[r] + k);
#pragma GCC unroll 3
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
		}
	}
	store_tile(Y, n_out, o, t0, acc, R, T);
}

/* Cache blocking for mid-sized batches: tokens in blocks whose activations fit ~512 KiB of
 * L2; inside, rows in blocks whose weights fit ~24 KiB of L1 (at least one tile), so each
 * weight block is reused across the token tiles from L1 and the activation block across row
 * blocks from L2. For decode (a few tokens) this is simply one pass over the weights. */
static size_t block_of(size_t budget, size_t row_bytes, size_t multiple)
{
	size_t n = budget / (row_bytes ? row_bytes : 1);
	n = n / multiple * multiple;
	return n < multiple ? multiple : n;
}

/* Row tiles of 8 then single rows, for token tile t of nt (1..3) tokens. */
#define ROW_TILES(TILE, Y, X, W, n_in, n_out, ob, oe, t, NT)                                  \
	do {                                                                                  \
		size_t o = (ob);                                                              \
		for (; o + 8 <= (oe); o += 8)                                                 \
			TILE(Y, X, W, n_in, n_out, o, t, 8, NT);                              \
		for (; o < (oe); o++)                                                         \
			TILE(Y, X, W, n_in, n_out, o, t, 1, NT);                              \
	} while (0)

#define MATMUL_DRIVER(TILE, Y, X, W, n_tok, n_in, n_out, o0, o1, elem_w, elem_x)              \
	do {                                                                                  \
		size_t tb_ = block_of(524288, (n_in) * (elem_x), TILE_T);                     \
		size_t ob_ = block_of(24576, (n_in) * (elem_w), TILE_R);                      \
		for (size_t tb = 0; tb < (n_tok); tb += tb_) {                                \
			size_t te = tb + tb_ < (n_tok) ? tb + tb_ : (n_tok);                  \
			for (size_t ob = (o0); ob < (o1); ob += ob_) {                        \
				size_t oe = ob + ob_ < (o1) ? ob + ob_ : (o1);                \
				size_t t = tb;                                                \
				for (; t + 3 <= te; t += 3)                                   \
					ROW_TILES(TILE, Y, X, W, n_in, n_out, ob, oe, t, 3);  \
				if (te - t == 2)                                              \
					ROW_TILES(TILE, Y, X, W, n_in, n_out, ob, oe, t, 2);  \
				else if (te - t == 1)                                         \
					ROW_TILES(TILE, Y, X, W, n_in, n_out, ob, oe, t, 1);  \
			}                                                                     \
		}                                                                             \
	} while (0)

/* ---- matmul for many tokens: register-blocked outer-product GEMM over packed panels ------ */
/* For n_tok >= GEMM_MIN_TOK_* (prefill) the dot-product tiles above pay horizontal sums and
 * stream their weight rows from L2; instead, BLIS style:
 *   for a block of G_TB tokens, for a block of G_OB rows, for a block of KC inputs, for
 *   each panel of 32 output rows:
 *     pack the panel's weights k-major (Wp[k][32], zero rows past the range), 32 KiB, L1;
 *     for each 12 tokens: 24 zmm accumulators C[t][o..o+31] += X[t][k] * Wp[k][..]
 *     (one broadcast per token and two panel loads per k; the activations come from L2).
 * BF16: the same with vdpbf16ps over k pairs: Wp holds (W[o][k], W[o][k+1]) pairs per lane
 * and each token's pair is broadcast as 32 bits (n_in must be even, else the tile path).
 * Every Y[t][o] is the sum over k in order, one k block after another, added to Y between
 * blocks: the same order for every row and token, so the thread split and the row range
 * never change bits (the dot-product tiles give other, equally valid bits). */

/* GEMM_MIN_TOK_F32: from 17 tokens the F32 GEMM beats the decode tiles, which take a second
 * 16-token group (a whole second pass of FMAs) for the 17th token. Measured, paired A/B of
 * one step's 30 layers of cold weights on 2 threads: 17 tokens 1.37x, 24 1.16x, 31 1.04x
 * faster than the decode tiles. BF16's decode tiles stay ahead up to 31 tokens (GEMM 0.74x
 * at 31; 17 tokens 1.07x, 20 0.97x), so BF16 switches at 32 as before. */
enum { G_MR = 12, G_NR = 32, G_KC_F32 = 256, G_KC_BF16 = 512, G_TB = 528, G_OB = 256,
       GEMM_MIN_TOK_F32 = 17, GEMM_MIN_TOK_BF16 = 32 };

/* In-register transpose of 16 rows of 16 32-bit lanes: r[i] lane c -> r[c] lane i. Three
 * stages: 32-bit unpacks, 64-bit shuffles within 128-bit blocks, then a 4x4 transpose of the
 * 128-bit blocks. */
INLINE void transpose16(__m512 r[16])
{
	__m512 a[16], b[16];
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++) {
		a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	/* b[4i+q] block L = rows 4i..4i+3, lane 4L+q */
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		b[4 * i + 0] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0x44);
		b[4 * i + 1] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0xee);
		b[4 * i + 2] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0x44);
		b[4 * i + 3] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0xee);
	}
#pragma GCC unroll 4
	for (int q = 0; q < 4; q++) {
		__m512 c0 = _mm512_shuffle_f32x4(b[q], b[4 + q], 0x88);
		__m512 c1 = _mm512_shuffle_f32x4(b[q], b[4 + q], 0xdd);
		__m512 c2 = _mm512_shuffle_f32x4(b[8 + q], b[12 + q], 0x88);
		__m512 c3 = _mm512_shuffle_f32x4(b[8 + q], b[12 + q], 0xdd);
		r[q] = _mm512_shuffle_f32x4(c0, c2, 0x88);
		r[8 + q] = _mm512_shuffle_f32x4(c0, c2, 0xdd);
		r[4 + q] = _mm512_shuffle_f32x4(c1, c3, 0x88);
		r[12 + q] = _mm512_shuffle_f32x4(c1, c3, 0xdd);
	}
}

/* rows[t] = the cache row of key j0 + t, for t < n: key j is row j % kb of chunk Ks[j / kb],
 * rows ld elements apart. One division for the first key, then a walk: a division per key
 * (kb is known only at run time) cost more than the attention kernels' arithmetic. A macro so
 * that rows and Ks keep their element type (float or bf16 bits). */
#define CHUNK_ROWS(rows, Ks, ld, kb, j0, n)                                                   \
	do {                                                                                  \
		size_t q_ = (j0) / (kb), r_ = (j0) % (kb);                                     \
		for (size_t t_ = 0; t_ < (n); t_++) {                                          \
			(rows)[t_] = (Ks)[q_] + r_ * (ld);                                       \
			if (++r_ == (kb))                                                        \
				r_ = 0, q_++;                                                    \
		}                                                                             \
	} while (0)

/* kernels_avx512.h; F32: a lane is one weight; BF16: a lane is a (k, k+1) pair. 16 x 16
 * blocks, transposed in registers. */
TGT void cpu_avx512_pack_panel32(void *Wp_, const void *W_, size_t row_lanes, size_t n_lanes,
				 size_t nr)
{
	float *Wp = Wp_;
	const float *W = W_;
	for (size_t j0 = 0; j0 < G_NR; j0 += 16) {
		size_t rows = nr > j0 ? (nr - j0 < 16 ? nr - j0 : 16) : 0;
		for (size_t l = 0; l < n_lanes; l += 16) {
			size_t nl = n_lanes - l < 16 ? n_lanes - l : 16;
			__mmask16 m = tail16(nl);
			__m512 r[16];
#pragma GCC unroll 16
			for (size_t i = 0; i < 16; i++)
				r[i] = i < rows ? _mm512_maskz_loadu_ps(m, W + (j0 + i) * row_lanes + l)
						: _mm512_setzero_ps();
			transpose16(r);
			for (size_t c = 0; c < nl; c++)
				_mm512_store_ps(Wp + (l + c) * G_NR + j0, r[c]);
		}
	}
}

/* kernels_avx512.h */
TGT void cpu_avx512_transpose16x16(void *block)
{
	float *b = block;
	__m512 r[16];
#pragma GCC unroll 16
	for (int i = 0; i < 16; i++)
		r[i] = _mm512_load_ps(b + 16 * i);
	transpose16(r);
#pragma GCC unroll 16
	for (int i = 0; i < 16; i++)
		_mm512_store_ps(b + 16 * i, r[i]);
}

/* Wp[k][j] = W[j][k] for k < kc, j < nr (W rows n_in apart), 0 for nr <= j < 32. */
TGT static void pack_f32(float *Wp, const float *W, size_t n_in, size_t kc, size_t nr)
{
	cpu_avx512_pack_panel32(Wp, W, n_in, kc, nr);
}

/* Wp[p][j] = the bf16 pair (W[j][2p], W[j][2p+1]) as 32 bits, p < kc / 2; kc and n_in even. */
TGT static void pack_bf16(uint32_t *Wp, const uint16_t *W, size_t n_in, size_t kc, size_t nr)
{
	cpu_avx512_pack_panel32(Wp, W, n_in / 2, kc / 2, nr);
}

/* C tile of NT tokens x 32 rows at Y (rows n_out apart): C (= 0 if first, else Y) +=
 * X[t][0..kc) . Wp; m0, m1 mask the two 16-row halves that exist. */
INLINE void gemm_f32_micro(float *Y, size_t n_out, const float *X, size_t n_in, const float *Wp,
			   size_t kc, __mmask16 m0, __mmask16 m1, int first, const float *pf,
			   size_t pf_stride, size_t pf_rows, const int NT)
{
	__m512 c0[G_MR], c1[G_MR];
#pragma GCC unroll 12
	for (int t = 0; t < NT; t++) {
		c0[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, Y + t * n_out);
		c1[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, Y + t * n_out + 16);
	}
	/* four row pointers, rows b, b+1, b+2 of each as base + n_in * {0, 4, 8} bytes: few
	 * registers, so nothing spills in the loop */
	const float *xr[4];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
		xr[i] = X + (size_t)(3 * i) * n_in;
	for (size_t kb = 0; kb < kc; kb += 16) {
		/* one line of each weight row the caller wants in L2 per 16 k */
		for (size_t r = 0; r < pf_rows; r++)
			_mm_prefetch((const char *)(pf + r * pf_stride + kb), _MM_HINT_T1);
		size_t ke = kc - kb < 16 ? kc : kb + 16;
		/* unrolled: the loop's pointer and counter updates share the FMA ports (paired
		 * A/B, 2 threads, 30 cold layers: 32 tokens 1.035x, 256 1.033x, 512 ~1.1x) */
#pragma GCC unroll 4
		for (size_t k = kb; k < ke; k++) {
			__m512 w0 = _mm512_load_ps(Wp + G_NR * k);
			__m512 w1 = _mm512_load_ps(Wp + G_NR * k + 16);
#pragma GCC unroll 12
			for (int t = 0; t < NT; t++) {
				__m512 xb = _mm512_set1_ps(xr[t / 3][(size_t)(t % 3) * n_in]);
				c0[t] = _mm512_fmadd_ps(w0, xb, c0[t]);
				c1[t] = _mm512_fmadd_ps(w1, xb, c1[t]);
			}
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++)
				xr[i]++;
		}
	}
#pragma GCC unroll 12
	for (int t = 0; t < NT; t++) {
		_mm512_mask_storeu_ps(Y + t * n_out, m0, c0[t]);
		_mm512_mask_storeu_ps(Y + t * n_out + 16, m1, c1[t]);
	}
}

INLINE void gemm_bf16_micro(float *Y, size_t n_out, const uint16_t *X, size_t n_in,
			    const uint32_t *Wp, size_t kc, __mmask16 m0, __mmask16 m1, int first,
			    const int NT)
{
	__m512 c0[G_MR], c1[G_MR];
#pragma GCC unroll 12
	for (int t = 0; t < NT; t++) {
		c0[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, Y + t * n_out);
		c1[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, Y + t * n_out + 16);
	}
	const uint16_t *xr[4];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
		xr[i] = X + (size_t)(3 * i) * n_in;
	for (size_t p = 0; p < kc / 2; p++) {
		__m512bh w0 = (__m512bh)_mm512_load_si512(Wp + G_NR * p);
		__m512bh w1 = (__m512bh)_mm512_load_si512(Wp + G_NR * p + 16);
#pragma GCC unroll 4
		for (int i = 0; i < 4; i++)
			xr[i] += 2;
#pragma GCC unroll 12
		for (int t = 0; t < NT; t++) {
			uint32_t pair;
			__builtin_memcpy(&pair, xr[t / 3] - 2 + (size_t)(t % 3) * n_in, 4);
			__m512bh xb = (__m512bh)_mm512_set1_epi32((int)pair);
			c0[t] = _mm512_dpbf16_ps(c0[t], w0, xb);
			c1[t] = _mm512_dpbf16_ps(c1[t], w1, xb);
		}
	}
#pragma GCC unroll 12
	for (int t = 0; t < NT; t++) {
		_mm512_mask_storeu_ps(Y + t * n_out, m0, c0[t]);
		_mm512_mask_storeu_ps(Y + t * n_out + 16, m1, c1[t]);
	}
}

#define GEMM_CASES(MICRO, ...)                                                                \
	switch (nt) {                                                                         \
	case 12: MICRO(__VA_ARGS__, 12); break;                                               \
	case 11: MICRO(__VA_ARGS__, 11); break;                                               \
	case 10: MICRO(__VA_ARGS__, 10); break;                                               \
	case 9: MICRO(__VA_ARGS__, 9); break;                                                 \
	case 8: MICRO(__VA_ARGS__, 8); break;                                                 \
	case 7: MICRO(__VA_ARGS__, 7); break;                                                 \
	case 6: MICRO(__VA_ARGS__, 6); break;                                                 \
	case 5: MICRO(__VA_ARGS__, 5); break;                                                 \
	case 4: MICRO(__VA_ARGS__, 4); break;                                                 \
	case 3: MICRO(__VA_ARGS__, 3); break;                                                 \
	case 2: MICRO(__VA_ARGS__, 2); break;                                                 \
	default: MICRO(__VA_ARGS__, 1); break;                                                \
	}

/* One micro tile of nt (1..12) tokens; out of line so that the loop's registers belong to the
 * tile alone (inlined into the block loops, GCC spilled a weight vector to the stack). */
__attribute__((noinline)) TGT static void gemm_f32_tile(float *Y, size_t n_out, const float *X,
							 size_t n_in, const float *Wp, size_t kc,
							 __mmask16 m0, __mmask16 m1, int first,
							 const float *pf, size_t pf_stride,
							 size_t pf_rows, size_t nt)
{
	GEMM_CASES(gemm_f32_micro, Y, n_out, X, n_in, Wp, kc, m0, m1, first, pf, pf_stride,
		   pf_rows)
}

__attribute__((noinline)) TGT static void gemm_bf16_tile(float *Y, size_t n_out,
							  const uint16_t *X, size_t n_in,
							  const uint32_t *Wp, size_t kc,
							  __mmask16 m0, __mmask16 m1, int first,
							  size_t nt)
{
	GEMM_CASES(gemm_bf16_micro, Y, n_out, X, n_in, Wp, kc, m0, m1, first)
}

/* The panel a GEMM packs after the one at (o, k0) of the row block [ob, oe) (row blocks of
 * G_OB from o0 up to o1, k blocks of kc_block): the block's next panel, else its first at the
 * next k block, else the next block's first. Returns the offset of its first weight (rows
 * n_in apart) and sets *nr to its rows (0: none left). */
static size_t next_panel(size_t n_in, size_t kc_block, size_t o1, size_t ob, size_t oe,
			 size_t o, size_t k0, size_t *nr)
{
	size_t no = o + G_NR, nk = k0, ne = oe;
	if (no >= oe && k0 + kc_block < n_in) {
		no = ob;
		nk = k0 + kc_block;
	} else if (no >= oe) {
		no = oe;
		nk = 0;
		ne = o1 - oe < G_OB ? o1 : oe + G_OB;
	}
	*nr = no < ne ? (ne - no < G_NR ? ne - no : G_NR) : 0;
	return no * n_in + nk;
}

TGT static void gemm_f32(float *Y, const float *X, const float *W, size_t n_tok, size_t n_in,
			 size_t n_out, size_t o0, size_t o1)
{
	_Alignas(64) float Wp[G_KC_F32 * G_NR];
	for (size_t tb = 0; tb < n_tok; tb += G_TB) {
		size_t te = tb + G_TB < n_tok ? tb + G_TB : n_tok;
		size_t n_tiles = (te - tb + G_MR - 1) / G_MR;
		for (size_t ob = o0; ob < o1; ob += G_OB) {
			size_t oe = o1 - ob < G_OB ? o1 : ob + G_OB;
			for (size_t k0 = 0; k0 < n_in; k0 += G_KC_F32) {
				size_t kc = n_in - k0 < G_KC_F32 ? n_in - k0 : G_KC_F32;
				for (size_t o = ob; o < oe; o += G_NR) {
					size_t nr = oe - o < G_NR ? oe - o : G_NR;
					pack_f32(Wp, W + o * n_in + k0, n_in, kc, nr);
					__mmask16 m0 = nr >= 16 ? 0xffff : tail16(nr);
					__mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? tail16(nr - 16) : 0;
					/* the next panel's weights come from memory, and its pack
					 * stalled on them (~6% of the GEMM's time): token tile i
					 * fetches that panel's rows i, i + n_tiles, i + 2 n_tiles...
					 * into L2, a line of each per 16 k, so the pack finds them
					 * there, however few the tiles. Measured, one thread, weights
					 * streamed from memory: +1-2% on every SmolLM2 shape at 512
					 * tokens (all the lines prefetched at once per tile stalled on
					 * the fill buffers and gained nothing); with rows i and
					 * i + n_tiles only, prompts under 16 tiles left most of the
					 * panel to the pack. */
					size_t pnr;
					const float *pw =
						W + next_panel(n_in, G_KC_F32, o1, ob, oe, o, k0, &pnr);
					for (size_t t = tb, i = 0; t < te; t += G_MR, i++) {
						size_t nt = te - t < G_MR ? te - t : G_MR;
						size_t pf_rows = i < pnr ? (pnr - i + n_tiles - 1) / n_tiles : 0;
						gemm_f32_tile(Y + t * n_out + o, n_out, X + t * n_in + k0,
							      n_in, Wp, kc, m0, m1, k0 == 0, pw + i * n_in,
							      n_tiles * n_in, pf_rows, nt);
					}
				}
			}
		}
	}
}

TGT static void gemm_bf16(float *Y, const uint16_t *X, const uint16_t *W, size_t n_tok,
			  size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	_Alignas(64) uint32_t Wp[G_KC_BF16 / 2 * G_NR];
	for (size_t tb = 0; tb < n_tok; tb += G_TB) {
		size_t te = tb + G_TB < n_tok ? tb + G_TB : n_tok;
		for (size_t ob = o0; ob < o1; ob += G_OB) {
			size_t oe = o1 - ob < G_OB ? o1 : ob + G_OB;
			for (size_t k0 = 0; k0 < n_in; k0 += G_KC_BF16) {
				size_t kc = n_in - k0 < G_KC_BF16 ? n_in - k0 : G_KC_BF16;
				for (size_t o = ob; o < oe; o += G_NR) {
					size_t nr = oe - o < G_NR ? oe - o : G_NR;
					pack_bf16(Wp, W + o * n_in + k0, n_in, kc, nr);
					__mmask16 m0 = nr >= 16 ? 0xffff : tail16(nr);
					__mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? tail16(nr - 16) : 0;
					for (size_t t = tb; t < te; t += G_MR) {
						size_t nt = te - t < G_MR ? te - t : G_MR;
						gemm_bf16_tile(Y + t * n_out + o, n_out, X + t * n_in + k0,
							       n_in, Wp, kc, m0, m1, k0 == 0, nt);
					}
				}
			}
		}
	}
}

/* ---- F32 matmul for decode batches (8..16 tokens): outer products, transposed activations - */
/* The activations of up to 16 tokens are transposed k-major (Xp[k][t], zero past the last
 * token) in blocks of D_KC inputs; a tile of 16 output rows keeps one accumulator per row
 * whose 16 lanes are the tokens: acc[r] += W[o+r][k] (broadcast from memory) * Xp[k]. Each
 * weight is read once per 16 tokens, there is no horizontal sum, and the accumulators are
 * transposed into Y (rows n_out apart) once per k block (reloaded for the next block).
 * Every Y[t][o] is the sum over k in order, so the result of a row does not depend on the
 * tile, the row range or the thread split. Tiles of 16 rows start at o, and the last partial
 * tile is shifted back to end at o1 (recomputing rows it does not store; needs o1 >= 16).
 * Measured on SmolLM2-135M, 2 threads: batch-16 decode ~225 -> 250-280 tok/s; below 8 tokens
 * the 16 lanes are mostly idle (batch 4 lost 20%), so those keep the dot tiles. The same
 * with vdpbf16ps for BF16 was slower than the dot tiles (which are compute-bound there too);
 * BF16 widens its weights to f32 instead (dec_bf16 below). */

/* Weight streaming: the 16 rows of a tile are read 4 bytes per k each, 16 interleaved streams
 * the hardware prefetcher follows poorly, and prefetching each row a few lines ahead kept too
 * few lines in flight: with cold weights a batch-16 step cost about the sum of its memory time
 * and its FMA time. Each k now prefetches one line of the next tile into L2, walking its
 * 16 x kc block linearly (contiguous when kc == n_in: D_KC_F32 covers every SmolLM2 width),
 * so the whole next tile is on its way while this one computes. Measured (one thread, all 30
 * layers + head, cold weights, same process, A/B interleaved): the step's p10 time 71 -> 61 ms
 * on a loaded machine; the prefetch hint (T0/T1/T2) and a 2-tile distance made no difference,
 * copying the rows into an L1 block first (the BF16 scheme) was 10-20% slower. */
enum { D_KC = 1024, D_KC_F32 = 1536, D_MIN_TOK = 8 };

/* Xp[k][j] = X[j][k0 + k] (rows n_in apart) for k < kc, j < nt, 0 for nt <= j < 16. */
TGT static void dec_pack_x(float *Xp, const float *X, size_t n_in, size_t k0, size_t kc,
			   size_t nt)
{
	for (size_t l = 0; l < kc; l += 16) {
		size_t nl = kc - l < 16 ? kc - l : 16;
		__mmask16 m = tail16(nl);
		__m512 r[16];
#pragma GCC unroll 16
		for (size_t i = 0; i < 16; i++)
			r[i] = i < nt ? _mm512_maskz_loadu_ps(m, X + i * n_in + k0 + l)
				      : _mm512_setzero_ps();
		transpose16(r);
		for (size_t c = 0; c < nl; c++)
			_mm512_store_ps(Xp + (l + c) * 16, r[c]);
	}
}

/* One tile: rows s..s+15 (W at row s, column k0 already applied), tokens 0..nt-1 of Xp; loads
 * and stores Y (at row s of token 0) only in lanes rm. first: start from 0 instead of Y.
 * pf: the next tile's weights, 16 x kc floats prefetched from there in address order (a hint
 * only: any address, even past the matrix, is fine). */
__attribute__((noinline)) TGT static void dec_tile_f32(float *Y, size_t n_out, const float *W,
							size_t n_in, const float *Xp, size_t kc,
							__mmask16 rm, size_t nt, int first,
							const float *pf)
{
	__m512 acc[16];
	if (first) {
#pragma GCC unroll 16
		for (int r = 0; r < 16; r++)
			acc[r] = _mm512_setzero_ps();
	} else {
#pragma GCC unroll 16
		for (size_t t = 0; t < 16; t++)
			acc[t] = t < nt ? _mm512_maskz_loadu_ps(rm, Y + t * n_out)
					: _mm512_setzero_ps();
		transpose16(acc);
	}
	/* rows 3i, 3i+1, 3i+2 as p[i] + {0, 1, 2} * n_in: 6 pointers and one stride in GPRs */
	const float *p[6];
#pragma GCC unroll 6
	for (int i = 0; i < 6; i++)
		p[i] = W + (size_t)(3 * i) * n_in;
	/* unrolled as the GEMM's loop (paired A/B, 30 cold layers: 16 tokens 1.03x on 1 and on
	 * 2 threads, 8 and 12 tokens 1.03x) */
#pragma GCC unroll 4
	for (size_t k = 0; k < kc; k++) {
		_mm_prefetch((const char *)(pf + 16 * k), _MM_HINT_T1);
		__m512 xv = _mm512_load_ps(Xp + 16 * k);
#pragma GCC unroll 16
		for (int r = 0; r < 16; r++)
			acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r / 3][(size_t)(r % 3) * n_in]), xv,
						 acc[r]);
#pragma GCC unroll 6
		for (int i = 0; i < 6; i++)
			p[i]++;
	}
	transpose16(acc);
	for (size_t t = 0; t < nt; t++)
		_mm512_mask_storeu_ps(Y + t * n_out, rm, acc[t]);
}

/* n_tok <= 16: one group of tokens in the lanes (a 17th token would cost a second pass of
 * FMAs; the GEMM takes those batches). */
TGT static void dec_f32(float *Y, const float *X, const float *W, size_t n_tok, size_t n_in,
			size_t n_out, size_t o0, size_t o1)
{
	_Alignas(64) float Xp[D_KC_F32 * 16];
	for (size_t k0 = 0; k0 < n_in; k0 += D_KC_F32) {
		size_t kc = n_in - k0 < D_KC_F32 ? n_in - k0 : D_KC_F32;
		dec_pack_x(Xp, X, n_in, k0, kc, n_tok);
		for (size_t o = o0; o < o1;) {
			size_t s = o1 - o >= 16 ? o : o1 - 16;
			__mmask16 rm = (__mmask16)(0xffffu & ~((1u << (o - s)) - 1u));
			dec_tile_f32(Y + s, n_out, W + s * n_in + k0, n_in, Xp, kc, rm, n_tok, k0 == 0,
				     W + (s + 16) * n_in + k0);
			o = s + 16;
		}
	}
}

/* ---- F32 matmul for 1..7 tokens: the GEMM's sums, weights transposed in registers ------- */
/* For the batch-invariant sets (kernels.h), and from FEW_MIN_TOK_F32 tokens for all: the GEMM
 * and the outer-product decode tiles give every Y[t][o] as one FMA chain over k = 0..n_in-1
 * from zero, so a token's row is the same whatever batch it comes in; the dot-product tiles
 * (tile_f32) sum 16 lanes and then across them, other bits. For fewer tokens than dec_f32
 * fills its lanes with, this kernel keeps the outputs in the lanes instead: per 16 inputs it
 * loads 16 weight rows as they are,
 * transposes them in registers (transpose16) into 16 columns of 16 rows, and runs one FMA
 * per column and token into an accumulator per token, in k order: the GEMM's chain.
 * Accumulators stay in registers over the whole n_in, so the weights stream once and Y is
 * written once; each 16 inputs prefetch 16 lines of the next tile's rows into L2 (into L1,
 * the 32-row tiles' 74 KiB of SmolLM2's head overran it: the head at 1 token, one thread,
 * cold, took 1.27-1.30x the dot tiles' time, 1.05-1.13x with L2). The transposes are the
 * cost: 64 shuffles per 256 weights on the one 512-bit shuffle port, ~4 weights a cycle,
 * so with the weights in L2 (576 x 576) 1 token takes 34 us against the dot tiles' 12;
 * from memory that mostly hides (ab_kernels with the prefetch into L1: 1 token 0.77x, 4
 * tokens 1.14x; 16- instead of 32-row tiles and no prefetch within 2%). */
/* FEW_MIN_TOK_F32: from 4 tokens the default set takes this kernel too, whose transposes
 * are then shared by enough FMAs: paired A/B against the dot tiles (ab_kernels, 2 threads,
 * 30 cold layers + head, 8 s): 2 tokens 0.94x, 3 0.98x, 4 1.05x, 6 1.10x. */
enum { FEW_MIN_TOK_F32 = 4, FEW_MAX_TOK = D_MIN_TOK - 1 };

/* Rows s..s+rows-1 (rows <= 16 G; W at row s), tokens 0..NT-1 of X (rows n_in apart): Y[t][s
 * + r] for r < rows (Y at row s of token 0, rows n_out apart). G groups of 16 rows: their
 * chains are independent, so the FMA latency of one token's chain is hidden. pf: the next
 * tile's weights. */
INLINE void few_tile_f32(float *Y, size_t n_out, const float *X, const float *W, size_t n_in,
			 size_t rows, const float *pf, const int NT, const int G)
{
	__m512 acc[2][FEW_MAX_TOK];
#pragma GCC unroll 2
	for (int g = 0; g < G; g++)
#pragma GCC unroll 7
		for (int t = 0; t < NT; t++)
			acc[g][t] = _mm512_setzero_ps();
	for (size_t k = 0; k < n_in; k += 16) {
		size_t nl = n_in - k < 16 ? n_in - k : 16;
		__mmask16 m = tail16(nl);
#pragma GCC unroll 2
		for (int g = 0; g < G; g++) {
#pragma GCC unroll 16
			for (size_t j = 0; j < 16; j++)
				_mm_prefetch((const char *)(pf + 16 * ((size_t)G * k + 16 * (size_t)g + j)),
					     _MM_HINT_T1);
			__m512 r[16];
#pragma GCC unroll 16
			for (size_t i = 0; i < 16; i++)
				r[i] = 16 * (size_t)g + i < rows
					       ? _mm512_maskz_loadu_ps(m, W + (16 * (size_t)g + i) * n_in + k)
					       : _mm512_setzero_ps();
			transpose16(r); /* r[c]: input k + c of the 16 rows */
			if (nl == 16) {
#pragma GCC unroll 16
				for (size_t c = 0; c < 16; c++)
#pragma GCC unroll 7
					for (int t = 0; t < NT; t++)
						acc[g][t] = _mm512_fmadd_ps(
							r[c], _mm512_set1_ps(X[t * n_in + k + c]), acc[g][t]);
			} else {
				for (size_t c = 0; c < nl; c++)
#pragma GCC unroll 7
					for (int t = 0; t < NT; t++)
						acc[g][t] = _mm512_fmadd_ps(
							r[c], _mm512_set1_ps(X[t * n_in + k + c]), acc[g][t]);
			}
		}
	}
#pragma GCC unroll 2
	for (int g = 0; g < G; g++) {
		size_t rg = rows > 16 * (size_t)g ? rows - 16 * (size_t)g : 0;
		__mmask16 rm = tail16(rg < 16 ? rg : 16);
#pragma GCC unroll 7
		for (int t = 0; t < NT; t++)
			_mm512_mask_storeu_ps(Y + t * n_out + 16 * g, rm, acc[g][t]);
	}
}

#define FEW_CASE(NT, G)                                                                       \
	case NT:                                                                              \
		for (size_t o = o0; o < o1; o += 16 * (G))                                    \
			few_tile_f32(Y + o, n_out, X, W + o * n_in, n_in,                     \
				     o1 - o < 16 * (G) ? o1 - o : 16 * (G),                   \
				     W + (o + 16 * (G)) * n_in, NT, G);                       \
		break;

TGT static void few_f32(float *Y, const float *X, const float *W, size_t n_tok, size_t n_in,
			size_t n_out, size_t o0, size_t o1)
{
	switch (n_tok) {
		FEW_CASE(1, 2)
		FEW_CASE(2, 2)
		FEW_CASE(3, 2)
		FEW_CASE(4, 2)
		FEW_CASE(5, 1)
		FEW_CASE(6, 1)
		FEW_CASE(7, 1)
	}
}
#undef FEW_CASE

/* ---- BF16 decode with f32 FMAs: weights widened on the fly ------------------------------ */
/* vdpbf16ps retires at a quarter of the FMA instruction rate here (half its FLOP rate), which
 * made BF16 decode of 8..31 tokens compute-bound at that rate. A bf16 is the top half of an
 * f32, so a weight widens exactly (zero-extend, shift left 16) and the products bf16(x) * w
 * are exact in f32 either way: these tiles read half the bytes of F32 and multiply at the f32
 * FMA rate. Below 8 tokens the widening costs more issue slots than it saves (measured: the
 * vdpbf16ps dot tiles were ~20% faster at 1 and 4 tokens), and prefill keeps vdpbf16ps in
 * the packed GEMM, the instruction the BF16 prefill roofline is measured with. */

/* A 32-bit lane holding bf16 elements (2i, 2i+1) gives element 2i as f32 by a shift left of
 * 16 and element 2i+1 by clearing the low 16 bits: one load and two integer ops widen 32
 * weights, as 16 even then 16 odd ones. The tiles therefore take the inputs of each 32-input
 * chunk in that order (k = 2i at position i, k = 2i + 1 at 16 + i), weights and activations
 * alike, zero past kc; a sum in another order is still the same sum for every row. */
INLINE __m512 bf16_even(__m512i v)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

INLINE __m512 bf16_odd(__m512i v)
{
	return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}

/* Outer-product decode tiles for 8..31 tokens, as dec_f32 (D_KC-input blocks of transposed
 * activations, 16-row tiles with the tokens in the lanes): a tile widens its 16 weight rows
 * DW_KB inputs at a time into an f32 block Wf (L1-sized, then the FMA loop broadcasts from
 * it exactly as dec_tile_f32 does from an F32 matrix), keeping its accumulators in registers
 * over the whole D_KC block so each row streams from memory in one piece. Rows of Wf are
 * DW_LD floats apart (not a multiple of 4 KiB, or the 16 rows would share L1 sets); with a
 * second group of 16 tokens the second tile reuses the widened rows. */
enum { DW_KB = 256, DW_LD = D_KC + 16 };

/* Xp[p][j] = f32 of X[j][k0 + k] (bf16, rows n_in apart) at the chunk position p of k (see
 * bf16_even) for k < kc, j < nt; 0 for j >= nt and for the positions of k >= kc up to the
 * next multiple of 32. */
TGT static void dec_pack_xb(float *Xp, const uint16_t *X, size_t n_in, size_t k0, size_t kc,
			    size_t nt)
{
	for (size_t l = 0; l < kc; l += 32) {
		__mmask32 m = tail32(kc - l);
		for (int odd = 0; odd < 2; odd++) {
			__m512 r[16];
#pragma GCC unroll 16
			for (size_t i = 0; i < 16; i++) {
				__m512i v = i < nt ? _mm512_maskz_loadu_epi16(m, X + i * n_in + k0 + l)
						   : _mm512_setzero_si512();
				r[i] = odd ? bf16_odd(v) : bf16_even(v);
			}
			transpose16(r);
#pragma GCC unroll 16
			for (size_t c = 0; c < 16; c++)
				_mm512_store_ps(Xp + (l + 16 * (size_t)odd + c) * 16, r[c]);
		}
	}
}

/* Wf[r][p] (rows DW_LD apart) = f32 of W[r][k] (rows n_in apart) at the chunk position p of k
 * for r < 16, k < kc (0 up to the next multiple of 32); meanwhile the same lines of the 16
 * rows at pf (the block the tile widens next, or the next tile's first) are prefetched into
 * L2: the FMA loop between two widenings is about as long as the memory takes to deliver a
 * block, so fetching one block ahead keeps both busy (measured: prefetching within the row
 * instead left the widening stalled on memory ~40% of the time). */
INLINE void dec_widen16(float *Wf, const uint16_t *W, size_t n_in, size_t kc, const uint16_t *pf)
{
	for (size_t r = 0; r < 16; r++) {
		const uint16_t *w = W + r * n_in;
		float *f = Wf + r * DW_LD;
#pragma GCC unroll 8
		for (size_t j = 0; j < DW_KB; j += 32)
			_mm_prefetch((const char *)(pf + r * n_in + j), _MM_HINT_T1);
		for (size_t k = 0; k < kc; k += 32) {
			__m512i v = _mm512_maskz_loadu_epi16(tail32(kc - k), w + k);
			_mm512_store_ps(f + k, bf16_even(v));
			_mm512_store_ps(f + k + 16, bf16_odd(v));
		}
	}
}

/* One tile: rows s..s+15 (W at row s, column k0 already applied), tokens 0..nt-1 of Xp, k <
 * kc; widen: fill Wf from W first (else Wf already holds these rows). Y as dec_tile_f32. */
__attribute__((noinline)) TGT static void dec_tile_bf16(float *Y, size_t n_out,
							 const uint16_t *W, size_t n_in, float *Wf,
							 const float *Xp, size_t kc, __mmask16 rm,
							 size_t nt, int first, int widen)
{
	__m512 acc[16];
	if (first) {
#pragma GCC unroll 16
		for (int r = 0; r < 16; r++)
			acc[r] = _mm512_setzero_ps();
	} else {
#pragma GCC unroll 16
		for (size_t t = 0; t < 16; t++)
			acc[t] = t < nt ? _mm512_maskz_loadu_ps(rm, Y + t * n_out)
					: _mm512_setzero_ps();
		transpose16(acc);
	}
	for (size_t kb = 0; kb < kc; kb += DW_KB) {
		size_t ke = kc - kb < DW_KB ? kc : kb + DW_KB;
		/* prefetch addresses need not be valid: past the rows or the matrix they are
		 * dropped */
		if (widen)
			dec_widen16(Wf + kb, W + kb, n_in, ke - kb,
				    ke < kc ? W + ke : W + 16 * n_in);
		size_t kp = kb + (ke - kb + 31) / 32 * 32; /* positions, zero past ke */
		for (size_t k = kb; k < kp; k++) {
			__m512 xv = _mm512_load_ps(Xp + 16 * k);
			const float *w = Wf + k;
#pragma GCC unroll 16
			for (int r = 0; r < 16; r++)
				acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(w[r * DW_LD]), xv, acc[r]);
		}
	}
	transpose16(acc);
	for (size_t t = 0; t < nt; t++)
		_mm512_mask_storeu_ps(Y + t * n_out, rm, acc[t]);
}

TGT static void dec_bf16(float *Y, const uint16_t *X, const uint16_t *W, size_t n_tok,
			 size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	_Alignas(64) float Xp[2][D_KC * 16];
	_Alignas(64) float Wf[16 * DW_LD];
	size_t n_g = (n_tok + 15) / 16;
	for (size_t k0 = 0; k0 < n_in; k0 += D_KC) {
		size_t kc = n_in - k0 < D_KC ? n_in - k0 : D_KC;
		for (size_t g = 0; g < n_g; g++)
			dec_pack_xb(Xp[g], X + g * 16 * n_in, n_in, k0, kc,
				    n_tok - 16 * g < 16 ? n_tok - 16 * g : 16);
		for (size_t o = o0; o < o1;) {
			size_t s = o1 - o >= 16 ? o : o1 - 16;
			__mmask16 rm = (__mmask16)(0xffffu & ~((1u << (o - s)) - 1u));
			for (size_t g = 0; g < n_g; g++) {
				size_t nt = n_tok - 16 * g < 16 ? n_tok - 16 * g : 16;
				dec_tile_bf16(Y + g * 16 * n_out + s, n_out, W + s * n_in + k0, n_in,
					      Wf, Xp[g], kc, rm, nt, k0 == 0, g == 0);
			}
			o = s + 16;
		}
	}
}

/* Prefill-sized batches take the GEMM, decode batches of 8..16 tokens (BF16: 8..31) the
 * outer-product tiles (when o1 >= 16), F32 batches of 4..7 few_f32, fewer tokens and tiny
 * outputs the dot-product tiles. */
TGT static void matmul_f32_avx512(float *Y, const float *X, const float *W, size_t n_tok,
				  size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (n_tok >= GEMM_MIN_TOK_F32 && (size_t)n_in * G_NR <= INT32_MAX) {
		gemm_f32(Y, X, W, n_tok, n_in, n_out, o0, o1);
		return;
	}
	if (n_tok >= D_MIN_TOK && n_tok < GEMM_MIN_TOK_F32 && o1 >= 16) {
		dec_f32(Y, X, W, n_tok, n_in, n_out, o0, o1);
		return;
	}
	if (n_tok >= FEW_MIN_TOK_F32 && n_tok <= FEW_MAX_TOK) {
		few_f32(Y, X, W, n_tok, n_in, n_out, o0, o1);
		return;
	}
	MATMUL_DRIVER(tile_f32, Y, X, W, n_tok, n_in, n_out, o0, o1, 4, 4);
}

TGT static void matmul_bf16_avx512(float *Y, const uint16_t *Xb, const uint16_t *W,
				   size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (n_tok >= GEMM_MIN_TOK_BF16 && n_in % 2 == 0 && (size_t)n_in * G_NR <= INT32_MAX) {
		gemm_bf16(Y, Xb, W, n_tok, n_in, n_out, o0, o1);
		return;
	}
	if (n_tok >= D_MIN_TOK && n_tok < GEMM_MIN_TOK_BF16 && o1 >= 16) {
		dec_bf16(Y, Xb, W, n_tok, n_in, n_out, o0, o1);
		return;
	}
	MATMUL_DRIVER(tile_bf16, Y, Xb, W, n_tok, n_in, n_out, o0, o1, 2, 2);
}

/* The batch-invariant set's matmuls: every Y[t][o] in one order whatever n_tok, so a row does
 * not depend on its batch. F32: the FMA chain over k of the GEMM (few_f32 below 8 tokens,
 * dec_f32 to 16, the GEMM above). BF16: the vdpbf16ps GEMM's pair chain for every n_tok
 * (its panels are packed per call, which at 1 token costs more than the dot tiles' direct
 * reads), or, for odd n_in, the dot tiles for every n_tok. */
TGT static void matmul_f32_avx512_bi(float *Y, const float *X, const float *W, size_t n_tok,
				     size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (n_tok <= FEW_MAX_TOK)
		few_f32(Y, X, W, n_tok, n_in, n_out, o0, o1);
	else if (n_tok < GEMM_MIN_TOK_F32 && o1 >= 16)
		dec_f32(Y, X, W, n_tok, n_in, n_out, o0, o1);
	else
		gemm_f32(Y, X, W, n_tok, n_in, n_out, o0, o1);
}

TGT static void matmul_bf16_avx512_bi(float *Y, const uint16_t *Xb, const uint16_t *W,
				      size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (n_in % 2 == 0 && (size_t)n_in * G_NR <= INT32_MAX)
		gemm_bf16(Y, Xb, W, n_tok, n_in, n_out, o0, o1);
	else
		MATMUL_DRIVER(tile_bf16, Y, Xb, W, n_tok, n_in, n_out, o0, o1, 2, 2);
}

/* ---- BF16 matmul on AMX tiles (the "amx" set) -------------------------------------------- */
/* Sapphire Rapids and later multiply bf16 in tiles: one TDPBF16PS adds a 16 x 32 bf16 block
 * times a 32 x 16 one into 16 x 16 f32 accumulators, about 20 x the rate of vdpbf16ps here
 * (the roofline probes: 1.5-2.3 TFLOP/s a core against 85 GFLOP/s). For prompts (decode
 * batches swap the operands: gemm_bf16_amx_wa) a tile of 32 tokens
 * x 32 rows keeps four accumulator tiles (tmm0-3) and per 32 inputs loads two activation
 * tiles straight from Xb (tmm4, 5: 16 token rows of 32 bf16, rows n_in apart) and two weight
 * tiles from the packed panel (tmm6, 7): pack_bf16's Wp[p][j] pairs are the VNNI layout the
 * instruction wants, 16 rows j per tile, 128 bytes apart. Products are exact and summed in
 * f32 as with vdpbf16ps, so results agree with the other sets to f32 rounding.
 * Edges go through small zero-padded copies so that every row and token takes the same
 * instructions (threading never changes bits): the last < 16 tokens (x_tail), and accumulator
 * tiles that would touch rows outside [o0, o1) or tokens past the end (struct amx_ctile).
 * Inputs must come in whole 32s (n_in % 32 == 0; other widths take the vdpbf16ps GEMM). */
#define TGT_AMX                                                                               \
	__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,"     \
			      "avx512vnni,avx2,fma")))

/* Measured against the avx512 set's BF16 kernels (paired A/B, 2 threads, one forward's 30
 * cold layers + head): the packed-panel tiles 8 tokens 1.42x, 16 1.35x, 32 2.1x, 64 2.5x, 512
 * 3.8x; the swapped operands (gemm_bf16_amx_wa, against the packed-panel tiles) 4 tokens
 * 1.07x, 6 1.32x, 8 1.55x, 16 1.46x, 24 1.27x, 32 1.16x, 33 1.09x, 48 1.05x, 64 1.05x, but
 * 2 tokens 0.87x, 128 0.92x, 512 0.84x: so the swapped operands from AMX_MIN_TOK = 4 tokens
 * up to AMX_WA_MAX_TOK, packed panels beyond, and tiles shaped to 1 to 3 tokens below
 * (gemm_bf16_amx_few; matmul_bf16_amx_tiles has their measurements against the dot-product
 * tiles these took before). */
enum { AMX_MIN_TOK = 4, AMX_TM = 32, AMX_WA_MAX_TOK = 64 };

/* One 16 x 16 accumulator tile: at y in Y (rows ld floats apart), or, when only tokens x rows
 * of it lie inside, in tmp (16 x 16, zero-padded) during the k block, copied back after. */
struct amx_ctile {
	float *y;
	size_t ld;
	float *tmp;
	size_t tokens, rows;
};

static void amx_ctile_open(struct amx_ctile *c, float *Y, size_t n_out, size_t tokens,
			   size_t rows, int first, float *tmp)
{
	c->y = Y, c->ld = n_out, c->tokens = tokens, c->rows = rows;
	c->tmp = tokens == 16 && rows == 16 ? NULL : tmp;
	if (!c->tmp || first) /* a first block starts from a zeroed tile, whatever tmp holds */
		return;
	memset(tmp, 0, 256 * sizeof *tmp);
	for (size_t t = 0; t < tokens; t++)
		memcpy(tmp + 16 * t, Y + t * n_out, rows * sizeof *tmp);
}

static void amx_ctile_close(const struct amx_ctile *c)
{
	if (c->tmp)
		for (size_t t = 0; t < c->tokens; t++)
			memcpy(c->y + t * c->ld, c->tmp + 16 * t, c->rows * sizeof *c->tmp);
}

#define AMX_C_PTR(c) ((c).tmp ? (void *)(c).tmp : (void *)(c).y)
#define AMX_C_STRIDE(c) ((c).tmp ? 64 : (c).ld * sizeof(float))

/* Accumulates a 16- or 32-token (NH = 1, 2 halves) by 32-row tile over kc inputs (kc % 32
 * == 0): x[h] the halves' first activations (rows x_ld bf16 apart), Wp the packed panel. */
static inline __attribute__((always_inline)) TGT_AMX void
amx_tile_run(struct amx_ctile c[2][2], const uint16_t *const x[2], size_t x_ld,
	     const uint32_t *Wp, size_t kc, int first, const uint16_t *pf, size_t pf_stride,
	     size_t pf_rows, const int NH)
{
	if (first) {
		_tile_zero(0);
		_tile_zero(1);
		_tile_zero(2);
		_tile_zero(3);
	} else {
		_tile_loadd(0, AMX_C_PTR(c[0][0]), AMX_C_STRIDE(c[0][0]));
		_tile_loadd(1, AMX_C_PTR(c[0][1]), AMX_C_STRIDE(c[0][1]));
		if (NH == 2) {
			_tile_loadd(2, AMX_C_PTR(c[1][0]), AMX_C_STRIDE(c[1][0]));
			_tile_loadd(3, AMX_C_PTR(c[1][1]), AMX_C_STRIDE(c[1][1]));
		}
	}
	for (size_t p = 0; p < kc / 2; p += 16) {
		/* a line of each of this tile's share of the next panel's rows, as gemm_f32 does */
		for (size_t r = 0; r < pf_rows; r++)
			_mm_prefetch((const char *)(pf + r * pf_stride + 2 * p), _MM_HINT_T1);
		_tile_loadd(6, Wp + G_NR * p, G_NR * sizeof *Wp);
		_tile_loadd(7, Wp + G_NR * p + 16, G_NR * sizeof *Wp);
		_tile_loadd(4, x[0] + 2 * p, x_ld * sizeof *x[0]);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		if (NH == 2) {
			_tile_loadd(5, x[1] + 2 * p, x_ld * sizeof *x[1]);
			_tile_dpbf16ps(2, 5, 6);
			_tile_dpbf16ps(3, 5, 7);
		}
	}
	_tile_stored(0, AMX_C_PTR(c[0][0]), AMX_C_STRIDE(c[0][0]));
	_tile_stored(1, AMX_C_PTR(c[0][1]), AMX_C_STRIDE(c[0][1]));
	if (NH == 2) {
		_tile_stored(2, AMX_C_PTR(c[1][0]), AMX_C_STRIDE(c[1][0]));
		_tile_stored(3, AMX_C_PTR(c[1][1]), AMX_C_STRIDE(c[1][1]));
	}
}

__attribute__((noinline)) TGT_AMX static void amx_tile(float *Y, size_t n_out,
						       const uint16_t *X, const uint16_t *x_tail,
						       size_t n_in, const uint32_t *Wp, size_t kc,
						       size_t nt, size_t nr, int first,
						       const uint16_t *pf, size_t pf_stride,
						       size_t pf_rows, float tmp[4][256])
{
	struct amx_ctile c[2][2];
	const uint16_t *x[2];
	size_t nh = nt > 16 ? 2 : 1;
	for (size_t h = 0; h < nh; h++) {
		size_t toks = nt - 16 * h < 16 ? nt - 16 * h : 16;
		/* a half of fewer than 16 tokens reads the zero-padded copy of the last tokens */
		x[h] = toks == 16 ? X + 16 * h * n_in : x_tail;
		for (size_t j = 0; j < 2; j++) {
			size_t rows = nr > 16 * j ? (nr - 16 * j < 16 ? nr - 16 * j : 16) : 0;
			amx_ctile_open(&c[h][j], Y + 16 * h * n_out + 16 * j, n_out, toks, rows,
				       first, tmp[2 * h + j]);
		}
	}
	if (nh == 2)
		amx_tile_run(c, x, n_in, Wp, kc, first, pf, pf_stride, pf_rows, 2);
	else
		amx_tile_run(c, x, n_in, Wp, kc, first, pf, pf_stride, pf_rows, 1);
	for (size_t h = 0; h < nh; h++)
		for (size_t j = 0; j < 2; j++)
			amx_ctile_close(&c[h][j]);
}

/* Returns 0, or -1 (nothing written) when the tail copy cannot be allocated. */
TGT_AMX static int gemm_bf16_amx(float *Y, const uint16_t *X, const uint16_t *W, size_t n_tok,
				 size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	/* the last n_tok % 16 tokens, zero-padded to 16 rows */
	size_t n_tail = n_tok % 16;
	uint16_t *x_tail = NULL;
	if (n_tail) {
		x_tail = cpu_alloc_aligned(16 * n_in * sizeof *x_tail);
		if (!x_tail)
			return -1;
		memcpy(x_tail, X + (n_tok - n_tail) * n_in, n_tail * n_in * sizeof *x_tail);
		memset(x_tail + n_tail * n_in, 0, (16 - n_tail) * n_in * sizeof *x_tail);
	}
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	_Alignas(64) uint32_t Wp[G_KC_BF16 / 2 * G_NR];
	_Alignas(64) float tmp[4][256];
	for (size_t tb = 0; tb < n_tok; tb += G_TB) {
		size_t te = tb + G_TB < n_tok ? tb + G_TB : n_tok;
		size_t n_tiles = (te - tb + AMX_TM - 1) / AMX_TM;
		for (size_t ob = o0; ob < o1; ob += G_OB) {
			size_t oe = o1 - ob < G_OB ? o1 : ob + G_OB;
			for (size_t k0 = 0; k0 < n_in; k0 += G_KC_BF16) {
				size_t kc = n_in - k0 < G_KC_BF16 ? n_in - k0 : G_KC_BF16;
				for (size_t o = ob; o < oe; o += G_NR) {
					size_t nr = oe - o < G_NR ? oe - o : G_NR;
					pack_bf16(Wp, W + o * n_in + k0, n_in, kc, nr);
					/* tile i fetches rows i, i + n_tiles, ... of the next panel into
					 * L2 while it computes, so the next pack finds them there */
					size_t pnr;
					const uint16_t *pw =
						W + next_panel(n_in, G_KC_BF16, o1, ob, oe, o, k0, &pnr);
					for (size_t t = tb, i = 0; t < te; t += AMX_TM, i++) {
						size_t nt = te - t < AMX_TM ? te - t : AMX_TM;
						size_t pf_rows = i < pnr ? (pnr - i + n_tiles - 1) / n_tiles : 0;
						amx_tile(Y + t * n_out + o, n_out, X + t * n_in + k0,
							 x_tail ? x_tail + k0 : NULL, n_in, Wp, kc, nt,
							 nr, k0 == 0, pw + i * n_in, n_tiles * n_in, pf_rows,
							 tmp);
					}
				}
			}
		}
	}
	/* give the tile state back: a thread holding it makes every context switch save 8 KiB */
	_tile_release();
	cpu_free_aligned(x_tail);
	return 0;
}

/* Decode batches (up to AMX_WA_MAX_TOK tokens) swap the operands: a panel packed per 32
 * weight rows costs more than so few tokens' products, so the weight rows are the first
 * operand, loaded straight from W (16 rows of 32 bf16, rows n_in apart), and the activations
 * are packed once per call, per block of 32 tokens, into the second operand's layout
 * (pack_bf16 on token rows). The four accumulators (rows x tokens) then hold the whole sum
 * over n_in and are transposed to tokens x rows on the way out; the next token block reads
 * the same weight rows again from cache. A last block of fewer than 32 rows reads a
 * zero-padded copy (w_tail). Each weight block prefetches the next one's rows. */
static inline __attribute__((always_inline)) TGT_AMX void
amx_wa_run(float acc[4][256], const uint16_t *w, size_t n_in, const uint32_t *xp,
	   const uint16_t *pf, const int NH)
{
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	for (size_t k = 0; k < n_in; k += 32) {
		/* a line of each of the next block's 32 rows per 32 inputs (64 bytes of each) */
		for (size_t r = 0; r < G_NR; r++)
			_mm_prefetch((const char *)(pf + r * n_in + k), _MM_HINT_T1);
		_tile_loadd(4, w + k, n_in * sizeof *w);
		_tile_loadd(5, w + 16 * n_in + k, n_in * sizeof *w);
		_tile_loadd(6, xp + G_NR * (k / 2), G_NR * sizeof *xp);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(2, 5, 6);
		if (NH == 2) {
			_tile_loadd(7, xp + G_NR * (k / 2) + 16, G_NR * sizeof *xp);
			_tile_dpbf16ps(1, 4, 7);
			_tile_dpbf16ps(3, 5, 7);
		}
	}
	/* tile 2 r + c: rows 16 r.., tokens 16 c.. */
	_tile_stored(0, acc[0], 64);
	_tile_stored(2, acc[2], 64);
	if (NH == 2) {
		_tile_stored(1, acc[1], 64);
		_tile_stored(3, acc[3], 64);
	}
}

/* Returns 0, or -1 (nothing written) when the scratch cannot be allocated. */
TGT_AMX static int gemm_bf16_amx_wa(float *Y, const uint16_t *X, const uint16_t *W, size_t n_tok,
				    size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	size_t n_full = (o1 - o0) / G_NR * G_NR, n_rest = o1 - o0 - n_full;
	size_t n_tb = (n_tok + AMX_TM - 1) / AMX_TM;
	size_t xp_elems = n_in / 2 * G_NR; /* a token block's 32-bit pairs x 32 tokens */
	uint32_t *xp = cpu_alloc_aligned(n_tb * xp_elems * sizeof *xp + G_NR * n_in * sizeof *W);
	if (!xp)
		return -1;
	for (size_t b = 0; b < n_tb; b++) {
		size_t nt = n_tok - AMX_TM * b < AMX_TM ? n_tok - AMX_TM * b : AMX_TM;
		pack_bf16(xp + b * xp_elems, X + AMX_TM * b * n_in, n_in, n_in, nt);
	}
	uint16_t *w_tail = (uint16_t *)(void *)(xp + n_tb * xp_elems);
	if (n_rest) {
		memcpy(w_tail, W + (o0 + n_full) * n_in, n_rest * n_in * sizeof *W);
		memset(w_tail + n_rest * n_in, 0, (G_NR - n_rest) * n_in * sizeof *W);
	}
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	_Alignas(64) float acc[4][256];
	for (size_t o = o0; o < o1; o += G_NR)
	for (size_t b = 0; b < n_tb; b++) {
		size_t nr = o1 - o < G_NR ? o1 - o : G_NR;
		size_t t0 = AMX_TM * b, nt = n_tok - t0 < AMX_TM ? n_tok - t0 : AMX_TM;
		int nh = nt > 16 ? 2 : 1;
		const uint16_t *w = nr < G_NR ? w_tail : W + o * n_in;
		/* the next block, or this one again at the end (prefetches stay inside W) */
		const uint16_t *pf = o + 2 * G_NR <= o1 ? W + (o + G_NR) * n_in : w;
		if (nh == 2)
			amx_wa_run(acc, w, n_in, xp + b * xp_elems, pf, 2);
		else
			amx_wa_run(acc, w, n_in, xp + b * xp_elems, pf, 1);
		for (int r = 0; r < 2; r++) {
			__mmask16 rm = nr > 16 * (size_t)r ? tail16(nr - 16 * r < 16 ? nr - 16 * r : 16)
							   : 0;
			for (int c = 0; c < nh; c++) {
				__m512 v[16];
#pragma GCC unroll 16
				for (int i = 0; i < 16; i++)
					v[i] = _mm512_load_ps(acc[2 * r + c] + 16 * i);
				transpose16(v); /* v[t] = token 16 c + t, rows 16 r .. 16 r + 15 */
				for (size_t t = 16 * (size_t)c; t < nt && t < 16 * (size_t)c + 16; t++)
					_mm512_mask_storeu_ps(Y + (t0 + t) * n_out + o + 16 * r, rm,
							      v[t - 16 * c]);
			}
		}
	}
	_tile_release();
	cpu_free_aligned(xp);
	return 0;
}

/* 1 to 3 tokens: the weights as the first operand as in gemm_bf16_amx_wa, but tiles shaped to
 * the batch so that nothing is packed or copied per call: the activation tile (second
 * operand) is 16 k-pairs by nt tokens (4 nt bytes a row), so for one token it is the
 * activation row itself, read 4 bytes a row; 2 and 3 tokens interleave their pairs into a
 * small stack copy. The accumulator is 16 rows by nt tokens. Every element is still one
 * accumulator over the whole n_in in steps of 32 inputs by TDPBF16PS, as in the other AMX
 * paths, so the bits do not depend on the batch (a narrower tile computes each of its
 * elements exactly as a wider one does). The last < 16 rows take a tile moved back to end at
 * o1 (rows before o are recomputed, not stored), so no zero-padded copy either. */

/* AMX_FEW_AHEAD: the tile whose rows are prefetched into L2 while one computes, whole and in
 * address order, one sequential stream; AMX_FEW_L1: meanwhile each step brings the line that
 * many inputs on of its own 16 rows into L1, so the tile loads find them there. Measured,
 * paired A/B against the dot-product tiles at 1 token (2 threads, 30 cold layers + head):
 * as here 0.96-1.04x (the fastest passes 0.95-0.98x); without the L1 prefetch 0.94-0.95x
 * (64 or 256 inputs on instead of 128: no better); the next tile's rows a line each per step
 * instead of in address order 0.97-0.99x, two tiles ahead 0.89-0.96x, into L1 0.94x, the
 * first tile of a range also fetching its own rows 1.00x. One tile at a time: 2, 3 and 4
 * tiles in flight (more accumulators and independent tile loads) measured 0.87x, 0.73x and
 * 0.56-0.80x with the next block fetched a line per row per step, 2 tiles 0.98x with the
 * prefetches as here; alternating two register pairs for the tile loads 1.00x. */
enum { AMX_FEW_AHEAD = 1, AMX_FEW_L1 = 128, AMX_FEW_MAX_IN = 8192 };

/* One 16-row tile (W rows from w, n_in apart) over all of n_in against the activation pairs
 * xb (rows xb_ld bytes apart) into acc (16 rows, 64 bytes apart); meanwhile pf_lines lines
 * from pf on are prefetched into L2, in address order. */
__attribute__((noinline)) TGT_AMX static void amx_few_tile(float acc[256], const uint16_t *w,
							   size_t n_in, const void *xb,
							   size_t xb_ld, const char *pf,
							   size_t pf_lines)
{
	size_t steps = n_in / 32, per = (pf_lines + steps - 1) / steps, done = 0;
	_tile_zero(0);
	for (size_t k = 0; k < n_in; k += 32) {
		for (size_t i = 0; i < per && done < pf_lines; i++, done++)
			_mm_prefetch(pf + 64 * done, _MM_HINT_T1);
		if (k + AMX_FEW_L1 < n_in)
			for (size_t r = 0; r < 16; r++)
				_mm_prefetch((const char *)(w + r * n_in + k + AMX_FEW_L1),
					     _MM_HINT_T0);
		_tile_loadd(6, (const char *)xb + (k / 2) * xb_ld, xb_ld);
		_tile_loadd(4, w + k, n_in * sizeof *w);
		_tile_dpbf16ps(0, 4, 6);
	}
	_tile_stored(0, acc, 64);
}

/* Returns 0, or -1 (nothing written) for shapes it does not take (the caller falls back to
 * gemm_bf16_amx_wa, whose bits are the same). */
TGT_AMX static int gemm_bf16_amx_few(float *Y, const uint16_t *X, const uint16_t *W,
				     size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (o1 < 16 || (n_tok > 1 && n_in > AMX_FEW_MAX_IN))
		return -1;
	_Alignas(64) uint32_t xpair[AMX_FEW_MAX_IN / 2 * 3];
	const void *xb = X;
	size_t xb_ld = 4 * n_tok;
	if (n_tok > 1) {
		for (size_t p = 0; p < n_in / 2; p++)
			for (size_t t = 0; t < n_tok; t++)
				memcpy(&xpair[p * n_tok + t], X + t * n_in + 2 * p, sizeof *xpair);
		xb = xpair;
	}
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	cfg.colsb[0] = cfg.colsb[6] = (uint16_t)(4 * n_tok);
	_tile_loadconfig(&cfg);
	_Alignas(64) float acc[256];
	const char *w_end = (const char *)(W + o1 * n_in);
	for (size_t o = o0; o < o1; o += 16) {
		size_t s = o + 16 <= o1 ? o : o1 - 16;
		/* the rows AMX_FEW_AHEAD tiles on, those still inside [o0, o1) */
		const char *pf = (const char *)(W + (s + 16 * AMX_FEW_AHEAD) * n_in);
		const char *pe = pf + 16 * n_in * sizeof *W;
		if (pe > w_end)
			pe = w_end;
		size_t pf_lines = pe > pf ? (size_t)(pe - pf) / 64 : 0;
		amx_few_tile(acc, W + s * n_in, n_in, xb, xb_ld, pf, pf_lines);
		for (size_t t = 0; t < n_tok; t++)
			for (size_t r = o - s; r < 16; r++)
				Y[t * n_out + s + r] = acc[16 * r + t];
	}
	_tile_release();
	return 0;
}

/* BF16 products on tiles for every n_tok: gemm_bf16_amx_few below AMX_MIN_TOK, the swapped
 * operands up to AMX_WA_MAX_TOK, packed panels beyond, bit-identical across the three (every
 * element one f32 accumulator over n_in in steps of 32 by TDPBF16PS), so a token's row does
 * not depend on its batch. Returns -1 (nothing written) for n_in not a multiple of 32 or a
 * scratch it cannot allocate. 1 to 3 tokens on tiles against the dot-product tiles (paired
 * A/B, ab_kernels WFMT=bf16, 2 threads, 30 cold layers + head, 12 s): 1 token 1.03x (490
 * pairs; quartiles 0.99-1.08), 2 tokens 1.08x, 3 1.09x. */
TGT static int matmul_bf16_amx_tiles(float *Y, const uint16_t *Xb, const uint16_t *W,
				     size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (n_in % 32 != 0 || (size_t)n_in * G_NR > INT32_MAX)
		return -1;
	if (n_tok < AMX_MIN_TOK && gemm_bf16_amx_few(Y, Xb, W, n_tok, n_in, n_out, o0, o1) == 0)
		return 0;
	return n_tok <= AMX_WA_MAX_TOK ? gemm_bf16_amx_wa(Y, Xb, W, n_tok, n_in, n_out, o0, o1)
				       : gemm_bf16_amx(Y, Xb, W, n_tok, n_in, n_out, o0, o1);
}

/* The amx set's BF16 matmul: tiles, else the AVX-512 kernels. */
TGT static void matmul_bf16_amx(float *Y, const uint16_t *Xb, const uint16_t *W, size_t n_tok,
				size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (matmul_bf16_amx_tiles(Y, Xb, W, n_tok, n_in, n_out, o0, o1) != 0)
		matmul_bf16_avx512(Y, Xb, W, n_tok, n_in, n_out, o0, o1);
}

/* The batch-invariant amx set's BF16 matmul: the same tiles, else the avx512 twin's (the
 * tiles fall back only for n_in not a multiple of 32, or without memory for their scratch:
 * then correct, other bits). */
TGT static void matmul_bf16_amx_bi(float *Y, const uint16_t *Xb, const uint16_t *W,
				   size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	if (matmul_bf16_amx_tiles(Y, Xb, W, n_tok, n_in, n_out, o0, o1) != 0)
		matmul_bf16_avx512_bi(Y, Xb, W, n_tok, n_in, n_out, o0, o1);
}

/* ---- attention on a BF16 KV cache, on AMX tiles ------------------------------------------- */
/* Scores: per 16 keys, the key rows' 32-bit lanes (bf16 pairs along d) transposed into
 * second-operand tiles [pair][key] (cpu_avx512_transpose16x16; keys past n zero), then for
 * every 16 query rows one accumulator tile over hd / 32 products. Query rows past m come
 * from a zero-padded copy of the last block, and edge score tiles go through a 16 x 16
 * buffer, so nothing outside S[0..m)[0..n) is read or written. hd must be a multiple of 32
 * up to 256, else the generic reference runs. */
/* The cache rows of keys j0.. (kr[0..15]) and of the next 16 (kr[16..31]), whose rows are
 * prefetched: cache blocks are scattered, so the hardware prefetchers miss the start of each,
 * and these loads were where the decode time went. */
INLINE void bf16_key_group(const uint16_t *kr[32], const uint16_t *const *Ks, size_t ldk,
			   size_t kb, size_t j0, size_t n, size_t hd)
{
	CHUNK_ROWS(kr, Ks, ldk, kb, j0, n - j0 < 32 ? n - j0 : 32);
	for (size_t j = 16; j < 32 && j0 + j < n; j++)
		for (size_t b = 0; b < hd; b += 32)
			_mm_prefetch((const char *)(kr[j] + b), _MM_HINT_T0);
}

/* buf (16 rows of 64 bytes) = bf16 elements 32 kk .. 32 kk + 31 of rows[0..nj) (key rows,
 * or query rows), zero past nj. */
INLINE void bf16_key_rows16(uint32_t *buf, const uint16_t *const *kr, size_t nj, size_t kk)
{
	for (size_t j = 0; j < 16; j++)
		_mm512_store_si512(buf + 16 * j, j < nj ? _mm512_loadu_si512(kr[j] + 32 * kk)
						     : _mm512_setzero_si512());
}

/* Up to 16 query rows (decode): the operands swap. The keys are the first operand, 16 cache
 * rows of 32 bf16 loaded as they lie (a block of kb >= 16 rows holds whole groups), and the
 * queries, transposed once per call into [pair][row] tiles, the second; the 16 x 16 result
 * is by key and is transposed into S on the way out. Every score is the same sum of the same
 * exact products over the same pairs in the same order as the other orientation computes
 * (TDPBF16PS treats its two operands alike), so the bits are the same: test_attn_bf16 holds
 * the two to that. No per-group transposes of the keys: batch-16 decode on a BF16 cache
 * (context 160-208, 5 runs alternating with the other orientation) attention 7.7 / 11.2 /
 * 8.0 / 8.7 / 7.3 -> 6.8 / 8.4 / 6.7 / 8.4 / 6.9 ms a step (median 1.13x). */
TGT_AMX static void attn_scores_bf16_amx_few(float *S, size_t lds, const uint16_t *X,
					     size_t ldx, const uint16_t *const *Ks, size_t ldk,
					     size_t kb, size_t m, size_t hd, size_t n)
{
	size_t nkk = hd / 32;
	_Alignas(64) uint32_t qt[8][256]; /* [kk] a tile: row p = pair 16 kk + p, col query row */
	_Alignas(64) uint32_t kstage[256]; /* 16 key rows of a group the cache does not hold whole */
	_Alignas(64) float ct[256];        /* [key][query row] */
	const uint16_t *xr[16]; /* the query rows, staged as key rows are */
	for (size_t i = 0; i < m; i++)
		xr[i] = X + i * ldx;
	for (size_t kk = 0; kk < nkk; kk++) {
		bf16_key_rows16(qt[kk], xr, m, kk);
		cpu_avx512_transpose16x16(qt[kk]);
	}
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	for (size_t j0 = 0; j0 < n; j0 += 16) {
		size_t nj = n - j0 < 16 ? n - j0 : 16;
		const uint16_t *kr[32];
		bf16_key_group(kr, Ks, ldk, kb, j0, n, hd);
		/* one block holds the 16 rows, evenly spaced: load them in place */
		int whole = nj == 16 && kb >= 16 && j0 % kb + 16 <= kb;
		_tile_zero(0);
		for (size_t kk = 0; kk < nkk; kk++) {
			if (whole) {
				_tile_loadd(4, kr[0] + 32 * kk, ldk * sizeof *kr[0]);
			} else {
				bf16_key_rows16(kstage, kr, nj, kk);
				_tile_loadd(4, kstage, 64);
			}
			_tile_loadd(6, qt[kk], 64);
			_tile_dpbf16ps(0, 4, 6);
		}
		_tile_stored(0, ct, 64);
		cpu_avx512_transpose16x16(ct); /* [query row][key] */
		for (size_t i = 0; i < m; i++)
			_mm512_mask_storeu_ps(S + i * lds + j0, tail16(nj), _mm512_load_ps(ct + 16 * i));
	}
	_tile_release();
}

TGT_AMX static void attn_scores_bf16_amx(float *S, size_t lds, const uint16_t *X, size_t ldx,
					 const uint16_t *const *Ks, size_t ldk, size_t kb,
					 size_t m, size_t hd, size_t n)
{
	if (hd % 32 || hd > 256 || m == 0 || n == 0) {
		cpu_kernels_generic.attn_scores_bf16(S, lds, X, ldx, Ks, ldk, kb, m, hd, n);
		return;
	}
	if (m <= 16) {
		attn_scores_bf16_amx_few(S, lds, X, ldx, Ks, ldk, kb, m, hd, n);
		return;
	}
	size_t nkk = hd / 32, m_full = m / 16 * 16;
	_Alignas(64) uint32_t kt[8][256];    /* [kk] a tile: row i = pair 16 kk + i, col key */
	_Alignas(64) uint16_t xtail[16 * 256]; /* rows m_full.. of X, zero past m */
	_Alignas(64) float ct[256];
	if (m_full < m) {
		memset(xtail, 0, 16 * hd * sizeof *xtail);
		for (size_t i = m_full; i < m; i++)
			memcpy(xtail + (i - m_full) * hd, X + i * ldx, hd * sizeof *X);
	}
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	for (size_t j0 = 0; j0 < n; j0 += 16) {
		size_t nj = n - j0 < 16 ? n - j0 : 16;
		const uint16_t *kr[32];
		bf16_key_group(kr, Ks, ldk, kb, j0, n, hd);
		for (size_t kk = 0; kk < nkk; kk++) {
			bf16_key_rows16(kt[kk], kr, nj, kk);
			cpu_avx512_transpose16x16(kt[kk]);
		}
		for (size_t i0 = 0; i0 < m; i0 += 16) {
			const uint16_t *xa = i0 < m_full ? X + i0 * ldx : xtail;
			size_t xs = (i0 < m_full ? ldx : hd) * sizeof *X;
			_tile_zero(0);
			for (size_t kk = 0; kk < nkk; kk++) {
				_tile_loadd(4, xa + 32 * kk, xs);
				_tile_loadd(6, kt[kk], 64);
				_tile_dpbf16ps(0, 4, 6);
			}
			if (i0 < m_full && nj == 16) {
				_tile_stored(0, S + i0 * lds + j0, lds * sizeof *S);
				continue;
			}
			_tile_stored(0, ct, 64);
			size_t ni = m - i0 < 16 ? m - i0 : 16;
			for (size_t i = 0; i < ni; i++)
				memcpy(S + (i0 + i) * lds + j0, ct + 16 * i, nj * sizeof *S);
		}
	}
	_tile_release();
}

/* P V: the value rows of 32 keys interleaved in pairs into second-operand tiles
 * [key pair][d] (one vpermt2w per pair and 16 d; keys past n zero), a chunk of up to 256
 * keys x 64 d at a time (32 KiB); then for every 16 rows the hd / 16 <= 4 accumulator tiles
 * are loaded from acc, take every 32-key product of the chunk, and are stored back. Rows
 * past m and keys past n go through zero-padded copies. hd must be a multiple of 16, else
 * the generic reference runs. */
TGT_AMX static void attn_pv_bf16_amx(float *acc, size_t lda, const uint16_t *P, size_t ldp,
				     const uint16_t *const *Vs, size_t ldv, size_t kb, size_t m,
				     size_t n, size_t hd)
{
	if (hd % 16 || m == 0 || n == 0) {
		cpu_kernels_generic.attn_pv_bf16(acc, lda, P, ldp, Vs, ldv, kb, m, n, hd);
		return;
	}
	enum { CHUNK = 256 };
	_Alignas(64) uint32_t vp[CHUNK / 32][4][256]; /* [key block][d block] tile */
	_Alignas(64) uint16_t pa[16 * 32];          /* an edge block of P, zero-padded */
	_Alignas(64) float ca[4][256];              /* edge rows of acc */
	const __m512i ilv = _mm512_setr_epi32(0x00200000, 0x00210001, 0x00220002, 0x00230003,
					      0x00240004, 0x00250005, 0x00260006, 0x00270007,
					      0x00280008, 0x00290009, 0x002a000a, 0x002b000b,
					      0x002c000c, 0x002d000d, 0x002e000e, 0x002f000f);
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	for (size_t c0 = 0; c0 < n; c0 += CHUNK) {
		size_t nc = n - c0 < CHUNK ? n - c0 : CHUNK, nkb = (nc + 31) / 32;
		for (size_t d0 = 0; d0 < hd; d0 += 64) {
			size_t ndb = (hd - d0 < 64 ? hd - d0 : 64) / 16;
			/* pair q of key block b: keys c0 + 32 b + 2 q and + 1 */
			for (size_t b = 0; b < nkb; b++) {
				size_t jb = c0 + 32 * b;
				const uint16_t *vr[64]; /* this key block's rows, then the next one's */
				CHUNK_ROWS(vr, Vs, ldv, kb, jb, n - jb < 64 ? n - jb : 64);
				for (size_t q = 0; q < 16; q++) {
					size_t j = jb + 2 * q;
					/* the same pair of the next 32 keys (as the scores' keys) */
					for (size_t jj = j + 32; jj < j + 34 && jj < n; jj++)
						for (size_t d = 0; d < 64 && d0 + d < hd; d += 32)
							_mm_prefetch((const char *)(vr[jj - jb] + d0 + d),
								     _MM_HINT_T0);
					const uint16_t *v0 = j < n ? vr[2 * q] + d0 : NULL;
					const uint16_t *v1 = j + 1 < n ? vr[2 * q + 1] + d0 : NULL;
					for (size_t db = 0; db < ndb; db++) {
						__m512i a = v0 ? _mm512_castsi256_si512(_mm256_loadu_si256(
									 (const __m256i *)(v0 + 16 * db)))
							       : _mm512_setzero_si512();
						__m512i c = v1 ? _mm512_castsi256_si512(_mm256_loadu_si256(
									 (const __m256i *)(v1 + 16 * db)))
							       : _mm512_setzero_si512();
						_mm512_store_si512(vp[b][db] + 16 * q,
								   _mm512_permutex2var_epi16(a, ilv, c));
					}
				}
			}
			for (size_t i0 = 0; i0 < m; i0 += 16) {
				size_t ni = m - i0 < 16 ? m - i0 : 16;
				float *ar = acc + i0 * lda + d0;
				if (ni == 16) {
					/* tile numbers are immediates: one load per possible tile */
					_tile_loadd(0, ar, lda * sizeof *acc);
					if (ndb > 1)
						_tile_loadd(1, ar + 16, lda * sizeof *acc);
					if (ndb > 2)
						_tile_loadd(2, ar + 32, lda * sizeof *acc);
					if (ndb > 3)
						_tile_loadd(3, ar + 48, lda * sizeof *acc);
				} else {
					memset(ca, 0, sizeof ca);
					for (size_t i = 0; i < ni; i++)
						for (size_t db = 0; db < ndb; db++)
							memcpy(ca[db] + 16 * i, ar + i * lda + 16 * db,
							       16 * sizeof *acc);
					_tile_loadd(0, ca[0], 64);
					_tile_loadd(1, ca[1], 64);
					_tile_loadd(2, ca[2], 64);
					_tile_loadd(3, ca[3], 64);
				}
				for (size_t b = 0; b < nkb; b++) {
					size_t k0 = c0 + 32 * b, nk = n - k0 < 32 ? n - k0 : 32;
					if (ni == 16 && nk == 32) {
						_tile_loadd(4, P + i0 * ldp + k0, ldp * sizeof *P);
					} else {
						memset(pa, 0, sizeof pa);
						for (size_t i = 0; i < ni; i++)
							memcpy(pa + 32 * i, P + (i0 + i) * ldp + k0,
							       nk * sizeof *P);
						_tile_loadd(4, pa, 64);
					}
					_tile_loadd(5, vp[b][0], 64);
					_tile_dpbf16ps(0, 4, 5);
					if (ndb > 1) {
						_tile_loadd(6, vp[b][1], 64);
						_tile_dpbf16ps(1, 4, 6);
					}
					if (ndb > 2) {
						_tile_loadd(7, vp[b][2], 64);
						_tile_dpbf16ps(2, 4, 7);
					}
					if (ndb > 3) {
						_tile_loadd(5, vp[b][3], 64);
						_tile_dpbf16ps(3, 4, 5);
					}
				}
				if (ni == 16) {
					_tile_stored(0, ar, lda * sizeof *acc);
					if (ndb > 1)
						_tile_stored(1, ar + 16, lda * sizeof *acc);
					if (ndb > 2)
						_tile_stored(2, ar + 32, lda * sizeof *acc);
					if (ndb > 3)
						_tile_stored(3, ar + 48, lda * sizeof *acc);
				} else {
					_tile_stored(0, ca[0], 64);
					_tile_stored(1, ca[1], 64);
					_tile_stored(2, ca[2], 64);
					_tile_stored(3, ca[3], 64);
					for (size_t i = 0; i < ni; i++)
						for (size_t db = 0; db < ndb; db++)
							memcpy(ar + i * lda + 16 * db, ca[db] + 16 * i,
							       16 * sizeof *acc);
				}
			}
		}
	}
	_tile_release();
}

/* ---- vector helpers ---------------------------------------------------------------------- */

/* e^x for f32 lanes of x already clamped to [-87.3, 88.7], about 2 ulp: 2^n * p(r) with
 * x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r. */
INLINE __m512 exp512_clamped(__m512 xc)
{
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	__m512 p = _mm512_set1_ps(1.9875691500E-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
	p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
	/* scalef computes p * 2^n without building the exponent by hand (n may be -126..128) */
	return _mm512_scalef_ps(p, n);
}

/* e^x for f32 lanes: lanes below -87.3 (including -inf) give 0, above 88.7 give +inf. */
INLINE __m512 exp512(__m512 x)
{
	const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
	__mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
	__mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
	__m512 e = exp512_clamped(_mm512_min_ps(_mm512_max_ps(x, lo), hi));
	e = _mm512_mask_mov_ps(e, under, _mm512_setzero_ps());
	return _mm512_mask_mov_ps(e, over, _mm512_set1_ps(INFINITY));
}

/* ---- elementwise ----------------------------------------------------------------------- */

TGT static float dot_avx512(const float *a, const float *b, size_t n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	__m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
	size_t i = 0;
	for (; i + 64 <= n; i += 64) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
		s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
		s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
	}
	for (; i + 16 <= n; i += 16)
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
	if (i < n) {
		__mmask16 m = tail16(n - i);
		s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i),
				     s1);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

TGT static void axpy_avx512(float *y, float a, const float *x, size_t n)
{
	__m512 av = _mm512_set1_ps(a);
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i),
							_mm512_loadu_ps(y + i)));
	if (i < n) {
		__mmask16 m = tail16(n - i);
		_mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i),
								_mm512_maskz_loadu_ps(m, y + i)));
	}
}

TGT static void add_avx512(float *y, const float *x, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(x + i)));
	if (i < n) {
		__mmask16 m = tail16(n - i);
		_mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
							      _mm512_maskz_loadu_ps(m, x + i)));
	}
}

TGT static void scale_avx512(float *x, float a, size_t n)
{
	__m512 av = _mm512_set1_ps(a);
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), av));
	if (i < n) {
		__mmask16 m = tail16(n - i);
		_mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), av));
	}
}

TGT static void rmsnorm_avx512(float *y, const float *x, const float *w, size_t n, float eps)
{
	float ss = dot_avx512(x, x, n);
	__m512 r = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), r),
						      _mm512_loadu_ps(w + i)));
	if (i < n) {
		__mmask16 m = tail16(n - i);
		_mm512_mask_storeu_ps(y + i, m,
				      _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), r),
						    _mm512_maskz_loadu_ps(m, w + i)));
	}
}

TGT static void softmax_avx512(float *x, size_t n)
{
	__m512 mv = _mm512_set1_ps(-INFINITY);
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
	if (i < n)
		mv = _mm512_mask_max_ps(mv, tail16(n - i), mv, _mm512_maskz_loadu_ps(tail16(n - i), x + i));
	__m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
	__m512 s = _mm512_setzero_ps();
	for (i = 0; i + 16 <= n; i += 16) {
		__m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
		_mm512_storeu_ps(x + i, e);
		s = _mm512_add_ps(s, e);
	}
	if (i < n) {
		__mmask16 k = tail16(n - i);
		__m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m));
		_mm512_mask_storeu_ps(x + i, k, e);
		s = _mm512_add_ps(s, _mm512_maskz_mov_ps(k, e));
	}
	scale_avx512(x, 1.0f / _mm512_reduce_add_ps(s), n);
}

TGT static float exp_sum_avx512(float *x, size_t n, float m)
{
	__m512 mv = _mm512_set1_ps(m), s = _mm512_setzero_ps();
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
		_mm512_storeu_ps(x + i, e);
		s = _mm512_add_ps(s, e);
	}
	if (i < n) {
		__mmask16 k = tail16(n - i);
		__m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mv));
		_mm512_mask_storeu_ps(x + i, k, e);
		s = _mm512_add_ps(s, _mm512_maskz_mov_ps(k, e));
	}
	return _mm512_reduce_add_ps(s);
}

/* exp512 for arguments <= 0 (the scores minus their running max): no overflow to check,
 * 4 instructions fewer; below -87.3 (and -INFINITY) gives 0 as exp512 does. */
INLINE __m512 exp512_nonpos(__m512 x)
{
	const __m512 lo = _mm512_set1_ps(-87.33654f);
	__mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
	return _mm512_maskz_mov_ps((__mmask16)~under, exp512_clamped(_mm512_max_ps(x, lo)));
}

/* 16-lane vector t of a row of n floats: the lanes below n (or none). */
INLINE __mmask16 lanes16(size_t n, size_t i)
{
	return i >= n ? 0 : n - i >= 16 ? 0xffff : tail16(n - i);
}

/* The max, the correction factor, the exponentials and their sum, the rescale of acc and
 * the zeroed tail in one pass of 16-lane vectors; c comes from exp512 like the s[t] do. The
 * max and the sum run as 4 independent chains (64 keys per round): one row is one short
 * dependency chain after another (max, correction, rescale), and with a single chain the
 * scores of a 256-key step took about 25 cycles per vector (latency), measured with
 * bench_attn prefill. */
TGT static void online_softmax_avx512(float *s, size_t n_t, size_t nv, float *m, float *l,
				      float *acc, size_t hd)
{
	if (!nv) {
		for (size_t i = 0; i < n_t; i += 16)
			_mm512_mask_storeu_ps(s + i, lanes16(n_t, i), _mm512_setzero_ps());
		return;
	}
	__m512 mx[4];
	for (int u = 0; u < 4; u++)
		mx[u] = _mm512_set1_ps(*m);
	size_t i = 0;
	for (; i + 64 <= nv; i += 64)
#pragma GCC unroll 4
		for (int u = 0; u < 4; u++)
			mx[u] = _mm512_max_ps(mx[u], _mm512_loadu_ps(s + i + 16 * u));
	for (int u = 0; i < nv; i += 16, u++)
		mx[u] = _mm512_mask_max_ps(mx[u], lanes16(nv, i), mx[u],
					   _mm512_maskz_loadu_ps(lanes16(nv, i), s + i));
	float mn = _mm512_reduce_max_ps(
		_mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3])));
	__m512 mnv = _mm512_set1_ps(mn);
	float c = _mm512_cvtss_f32(exp512_nonpos(_mm512_set1_ps(*m - mn))); /* 0: *m = -inf */
	if (c != 1.0f) {
		scale_avx512(acc, c, hd);
		*l *= c;
	}
	__m512 sum[4];
	for (int u = 0; u < 4; u++)
		sum[u] = _mm512_setzero_ps();
	for (i = 0; i + 64 <= nv; i += 64)
#pragma GCC unroll 4
		for (int u = 0; u < 4; u++) {
			__m512 e = exp512_nonpos(_mm512_sub_ps(_mm512_loadu_ps(s + i + 16 * u), mnv));
			_mm512_storeu_ps(s + i + 16 * u, e);
			sum[u] = _mm512_add_ps(sum[u], e);
		}
	for (int u = 0; i < n_t; i += 16, u = (u + 1) & 3) {
		__mmask16 vis = lanes16(nv, i);
		__m512 e = _mm512_maskz_mov_ps(
			vis, exp512_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(vis, s + i), mnv)));
		_mm512_mask_storeu_ps(s + i, lanes16(n_t, i), e);
		sum[u] = _mm512_add_ps(sum[u], e);
	}
	*l += _mm512_reduce_add_ps(
		_mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3])));
	*m = mn;
}

/* Chunks ahead whose rows a tile prefetches at the start of each chunk, into L1: in
 * attention's P V the chunks are cache blocks scattered in memory, which the hardware
 * prefetchers cannot foresee. */
enum { GEMM_CHUNK_PF = 2 };

/* Rows [0, R) x columns [j, j + 16 NV) of Y = X B (+ Y), the last column vector masked by
 * mk, row p of B at Bs[p / kb] + (p % kb) * ldb: R x NV accumulators held in registers over
 * all k (every chunk), per p one broadcast of X per row and NV loads of B. pf > 0: at each
 * chunk, the rows of the chunk pf ahead are prefetched. */

INLINE void gemm_tile512(float *Y, size_t ldy, const float *X, size_t ldx,
			 const float *const *Bs, size_t j, size_t ldb, size_t kb, size_t k, int acc,
			 const int R, const int NV, __mmask16 mk, int pf)
{
	__m512 c[12][4], b[4];
#pragma GCC unroll 12
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			c[r][v] = acc ? _mm512_maskz_loadu_ps(v == NV - 1 ? mk : 0xffff,
							      Y + (size_t)r * ldy + j + 16 * v)
				      : _mm512_setzero_ps();
	for (size_t p0 = 0, q = 0; p0 < k; p0 += kb, q++) {
		const float *B = Bs[q] + j, *x = X + p0;
		size_t pe = k - p0 < kb ? k - p0 : kb;
		if (pf && p0 + (size_t)pf * kb < k) {
			const float *Bn = Bs[q + (size_t)pf] + j;
			size_t pn = k - p0 - (size_t)pf * kb < kb ? k - p0 - (size_t)pf * kb : kb;
			for (size_t p = 0; p < pn; p++)
#pragma GCC unroll 4
				for (int v = 0; v < NV; v++)
					_mm_prefetch((const char *)(Bn + p * ldb + 16 * v), _MM_HINT_T0);
		}
		for (size_t p = 0; p < pe; p++) {
#pragma GCC unroll 4
			for (int v = 0; v < NV; v++)
				b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? mk : 0xffff,
							     B + p * ldb + 16 * v);
#pragma GCC unroll 12
			for (int r = 0; r < R; r++) {
				__m512 a = _mm512_set1_ps(x[(size_t)r * ldx + p]);
#pragma GCC unroll 4
				for (int v = 0; v < NV; v++)
					c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
			}
		}
	}
#pragma GCC unroll 12
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			_mm512_mask_storeu_ps(Y + (size_t)r * ldy + j + 16 * v,
					      v == NV - 1 ? mk : 0xffff, c[r][v]);
}

/* All m rows of one column strip [j, j + 16 NV): tiles of RM rows, then 4, 2 and 1. */
INLINE void gemm_strip512(float *Y, size_t ldy, const float *X, size_t ldx,
			  const float *const *Bs, size_t j, size_t ldb, size_t kb, size_t m,
			  size_t k, int acc, const int NV, const int RM, __mmask16 mk)
{
	int pfd = GEMM_CHUNK_PF; /* the first row tile prefetches; the others find B in cache */
	size_t i = 0;
	for (; i + RM <= m; i += RM)
		gemm_tile512(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc, RM, NV, mk,
			     i == 0 ? pfd : 0);
	if (RM > 4)
		for (; i + 4 <= m; i += 4)
			gemm_tile512(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc, 4, NV,
				     mk, i == 0 ? pfd : 0);
	for (; i + 2 <= m; i += 2)
		gemm_tile512(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc, 2, NV, mk,
			     i == 0 ? pfd : 0);
	for (; i < m; i++)
		gemm_tile512(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc, 1, NV, mk,
			     i == 0 ? pfd : 0);
}

/* Column strips of 64 (4 vectors, the last masked); row tiles of about 24 accumulators (6
 * rows of 4 vectors, 8 of 3, 12 of 2 or 1), which leaves registers for the B row and the
 * broadcast (before: 4 x 4 and 8 x 1 tiles, one gemm_nn per 16-key cache block). */
TGT static void gemm_nn_chunks_avx512(float *Y, size_t ldy, const float *X, size_t ldx,
				      const float *const *Bs, size_t ldb, size_t kb, size_t m,
				      size_t k, size_t n, int acc)
{
	for (size_t j = 0; j < n; j += 64) {
		size_t nj = n - j < 64 ? n - j : 64;
		int nv = (int)((nj + 15) / 16);
		__mmask16 mk = tail16(nj - 16 * (size_t)(nv - 1));
		switch (nv) {
		case 1:
			gemm_strip512(Y, ldy, X, ldx, Bs, j, ldb, kb, m, k, acc, 1, 12, mk);
			break;
		case 2:
			gemm_strip512(Y, ldy, X, ldx, Bs, j, ldb, kb, m, k, acc, 2, 12, mk);
			break;
		case 3:
			gemm_strip512(Y, ldy, X, ldx, Bs, j, ldb, kb, m, k, acc, 3, 8, mk);
			break;
		default:
			gemm_strip512(Y, ldy, X, ldx, Bs, j, ldb, kb, m, k, acc, 4, 6, mk);
			break;
		}
	}
}

/* attn_scores_f32 for up to ATTN_F32_MR rows of X at a time: per 16 keys, per 16 dims the
 * 16 key rows' chunks are loaded and transposed in registers (r[c]: dim d0 + c of the 16
 * keys), then S[i][keys] = fma(X[i][d0 + c], r[c], S[i][keys]) for c in order: one FMA chain
 * per (row, key) over d = 0..hd-1 from zero, the chain gemm_tile512 forms for X times the
 * transposed keys. Replaces a transpose into a buffer and a pass of gemm_nn over it for a
 * decode token's n_rep rows. The keys ATTN_F32_PF groups ahead are prefetched: without it
 * the loads of the key rows were most of the kernel's time (paired runs: attention of a
 * batch-16 decode step 10.0-10.4 -> 8.1-8.6 ms with 2 groups ahead, 8.5-9.0 with 1). */
enum { ATTN_F32_MR = 12, ATTN_F32_PF = 2 };

INLINE void scores_f32_tile(float *S, size_t lds, const float *X, size_t ldx,
			    const float *const *rows, size_t nk, size_t hd, const int MR)
{
	__m512 acc[ATTN_F32_MR];
#pragma GCC unroll 12
	for (int i = 0; i < MR; i++)
		acc[i] = _mm512_setzero_ps();
	for (size_t d0 = 0; d0 < hd; d0 += 16) {
		size_t nd = hd - d0 < 16 ? hd - d0 : 16;
		__mmask16 md = tail16(nd);
		__m512 r[16];
#pragma GCC unroll 16
		for (size_t t = 0; t < 16; t++)
			r[t] = t < nk ? _mm512_maskz_loadu_ps(md, rows[t] + d0) : _mm512_setzero_ps();
		transpose16(r);
		if (nd == 16) {
#pragma GCC unroll 16
			for (size_t c = 0; c < 16; c++)
#pragma GCC unroll 12
				for (int i = 0; i < MR; i++)
					acc[i] = _mm512_fmadd_ps(
						_mm512_set1_ps(X[(size_t)i * ldx + d0 + c]), r[c], acc[i]);
		} else {
			for (size_t c = 0; c < nd; c++)
#pragma GCC unroll 12
				for (int i = 0; i < MR; i++)
					acc[i] = _mm512_fmadd_ps(
						_mm512_set1_ps(X[(size_t)i * ldx + d0 + c]), r[c], acc[i]);
		}
	}
	__mmask16 mk = tail16(nk);
#pragma GCC unroll 12
	for (int i = 0; i < MR; i++)
		_mm512_mask_storeu_ps(S + (size_t)i * lds, mk, acc[i]);
}

TGT static void attn_scores_f32_avx512(float *S, size_t lds, const float *X, size_t ldx,
				       const float *const *Ks, size_t ldk, size_t kb, size_t m,
				       size_t hd, size_t n)
{
	for (size_t j = 0; j < n; j += 16) {
		size_t nk = n - j < 16 ? n - j : 16;
		/* these 16 keys' rows, then those of the next ATTN_F32_PF groups */
		const float *rows[16 * (1 + ATTN_F32_PF)];
		size_t n_rows = n - j < 16 * (1 + ATTN_F32_PF) ? n - j : 16 * (1 + ATTN_F32_PF);
		CHUNK_ROWS(rows, Ks, ldk, kb, j, n_rows);
		/* the key rows ATTN_F32_PF groups ahead, into L1: cache blocks are scattered, so the
		 * hardware prefetchers cannot know the next rows */
		for (size_t t = 16 * ATTN_F32_PF; t < n_rows; t++)
			for (size_t d = 0; d < hd; d += 16)
				_mm_prefetch((const char *)(rows[t] + d), _MM_HINT_T0);
		for (size_t i = 0; i < m; i += ATTN_F32_MR) {
			size_t mr = m - i < ATTN_F32_MR ? m - i : ATTN_F32_MR;
			float *s = S + i * lds + j;
			const float *x = X + i * ldx;
			switch (mr) {
#define SCORES_CASE(R)                                                                        \
	case R: scores_f32_tile(s, lds, x, ldx, rows, nk, hd, R); break;
				SCORES_CASE(12) SCORES_CASE(11) SCORES_CASE(10) SCORES_CASE(9)
				SCORES_CASE(8) SCORES_CASE(7) SCORES_CASE(6) SCORES_CASE(5)
				SCORES_CASE(4) SCORES_CASE(3) SCORES_CASE(2)
#undef SCORES_CASE
			default: scores_f32_tile(s, lds, x, ldx, rows, nk, hd, 1); break;
			}
		}
	}
}

/* One chunk of all k rows. */
TGT static void gemm_nn_avx512(float *Y, size_t ldy, const float *X, size_t ldx, const float *B,
			       size_t ldb, size_t m, size_t k, size_t n, int acc)
{
	gemm_nn_chunks_avx512(Y, ldy, X, ldx, &B, ldb, k ? k : 1, m, k, n, acc);
}

INLINE __m512 swiglu512(__m512 g, __m512 u)
{
	__m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
	return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

TGT static void swiglu_avx512(float *y, const float *gate, const float *up, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, swiglu512(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
	if (i < n) {
		__mmask16 m = tail16(n - i);
		_mm512_mask_storeu_ps(y + i, m, swiglu512(_mm512_maskz_loadu_ps(m, gate + i),
							  _mm512_maskz_loadu_ps(m, up + i)));
	}
}

TGT static void rope_rotate_avx512(float *x, size_t n_heads, size_t head_dim, const float *cos_t,
				   const float *sin_t, cpu_rope_layout layout)
{
	size_t half = head_dim / 2;
	const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
	/* sign of the sin term: -s for the even lane (a' = a c - b s), +s for the odd one */
	const __m512 sgn = _mm512_set_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
	for (size_t h = 0; h < n_heads; h++) {
		float *v = x + h * head_dim;
		if (layout == CPU_ROPE_NEOX) {
			size_t i = 0;
			for (; i < half; i += 16) {
				__mmask16 m = half - i >= 16 ? 0xffff : tail16(half - i);
				__m512 a = _mm512_maskz_loadu_ps(m, v + i);
				__m512 b = _mm512_maskz_loadu_ps(m, v + half + i);
				__m512 c = _mm512_maskz_loadu_ps(m, cos_t + i);
				__m512 s = _mm512_maskz_loadu_ps(m, sin_t + i);
				_mm512_mask_storeu_ps(v + i, m, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
				_mm512_mask_storeu_ps(v + half + i, m,
						      _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c)));
			}
		} else {
			/* 8 pairs per step: c = (c0 c0 c1 c1 ..), s = (-s0 s0 -s1 s1 ..),
			 * v' = v c + swap(v) s */
			for (size_t i = 0; i < half; i += 8) {
				size_t np = half - i >= 8 ? 8 : half - i;
				__mmask16 m = tail16(2 * np);
				__mmask16 mh = tail16(np);
				__m512 c = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(mh, cos_t + i));
				__m512 s = _mm512_mul_ps(
					_mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(mh, sin_t + i)),
					sgn);
				__m512 a = _mm512_maskz_loadu_ps(m, v + 2 * i);
				__m512 sw = _mm512_permute_ps(a, 0xb1); /* swap within pairs */
				_mm512_mask_storeu_ps(v + 2 * i, m,
						      _mm512_fmadd_ps(a, c, _mm512_mul_ps(sw, s)));
			}
		}
	}
}

/* 16 x 16 blocks through transpose16, the edges masked. */
TGT static void transpose_avx512(float *dst, size_t ldd, const float *src, size_t lds,
				 size_t rows, size_t cols)
{
	for (size_t r0 = 0; r0 < rows; r0 += 16) {
		size_t nr = rows - r0 < 16 ? rows - r0 : 16;
		__mmask16 mr = tail16(nr);
		for (size_t c0 = 0; c0 < cols; c0 += 16) {
			size_t nc = cols - c0 < 16 ? cols - c0 : 16;
			__mmask16 mc = tail16(nc);
			__m512 v[16];
#pragma GCC unroll 16
			for (size_t i = 0; i < 16; i++)
				v[i] = i < nr ? _mm512_maskz_loadu_ps(mc, src + (r0 + i) * lds + c0)
					      : _mm512_setzero_ps();
			transpose16(v);
			for (size_t c = 0; c < nc; c++)
				_mm512_mask_storeu_ps(dst + (c0 + c) * ldd + r0, mr, v[c]);
		}
	}
}

TGT static void bf16_to_f32_avx512(float *y, const uint16_t *x, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
		_mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
	}
	if (i < n) {
		__mmask16 m = tail16(n - i);
		__m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
		_mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
	}
}

/* Integer rounding exactly as num_f32_to_bf16 (vcvtneps2bf16 would flush subnormals). */
INLINE __m256i f32_to_bf16_16(__m512 f)
{
	__m512i u = _mm512_castps_si512(f);
	__m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
	__mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
	__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
	__m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
	r = _mm512_srli_epi32(r, 16);
	__m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
	r = _mm512_mask_mov_epi32(r, nan, q);
	return _mm512_cvtepi32_epi16(r);
}

TGT static void f32_to_bf16_avx512(uint16_t *y, const float *x, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(y + i), f32_to_bf16_16(_mm512_loadu_ps(x + i)));
	if (i < n) {
		__mmask16 m = tail16(n - i);
		_mm256_mask_storeu_epi16(y + i, m, f32_to_bf16_16(_mm512_maskz_loadu_ps(m, x + i)));
	}
}

/* Every op but the BF16 matmul, shared by the two sets below. */
#define AVX512_SET_COMMON                                                                     \
	.dot = dot_avx512, .axpy = axpy_avx512,              \
	.add = add_avx512, .scale = scale_avx512, .rmsnorm = rmsnorm_avx512,                  \
	.softmax = softmax_avx512, .gemm_nn = gemm_nn_avx512,      \
	.gemm_nn_chunks = gemm_nn_chunks_avx512, .attn_scores_f32 = attn_scores_f32_avx512,    \
	.exp_sum = exp_sum_avx512, .online_softmax = online_softmax_avx512,                   \
	.swiglu = swiglu_avx512, .rope_rotate = rope_rotate_avx512,                           \
	.transpose = transpose_avx512, .bf16_to_f32 = bf16_to_f32_avx512,                     \
	.f32_to_bf16 = f32_to_bf16_avx512

const cpu_kernel_set cpu_kernels_avx512 = {
	.name = "avx512",
	.isa = CPU_ISA_AVX512,
	.matmul_f32 = matmul_f32_avx512,
	.matmul_bf16 = matmul_bf16_avx512,
	AVX512_SET_COMMON,
};

/* The same set with BF16 matmuls on AMX tiles (for every batch size when n_in is a multiple
 * of 32). */
const cpu_kernel_set cpu_kernels_amx = {
	.name = "amx",
	.isa = CPU_ISA_AMX,
	.matmul_f32 = matmul_f32_avx512,
	.matmul_bf16 = matmul_bf16_amx,
	.attn_scores_bf16 = attn_scores_bf16_amx,
	.attn_pv_bf16 = attn_pv_bf16_amx,
	AVX512_SET_COMMON,
};

/* The batch-invariant twins (kernels.h, cpu_kernels_batch_invariant). */
const cpu_kernel_set cpu_kernels_avx512_bi = {
	.name = "avx512",
	.isa = CPU_ISA_AVX512,
	.batch_invariant = true,
	.matmul_f32 = matmul_f32_avx512_bi,
	.matmul_bf16 = matmul_bf16_avx512_bi,
	AVX512_SET_COMMON,
};

const cpu_kernel_set cpu_kernels_amx_bi = {
	.name = "amx",
	.isa = CPU_ISA_AMX,
	.batch_invariant = true,
	.matmul_f32 = matmul_f32_avx512_bi,
	.matmul_bf16 = matmul_bf16_amx_bi,
	.attn_scores_bf16 = attn_scores_bf16_amx,
	.attn_pv_bf16 = attn_pv_bf16_amx,
	AVX512_SET_COMMON,
};
