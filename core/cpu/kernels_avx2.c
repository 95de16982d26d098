/* kernels_avx2.c: the AVX2 + FMA kernel set (for CPUs without AVX-512): f32 FMA matmuls,
 * bf16 weights widened to f32 in registers, vector exp for softmax / SwiGLU. Compiled with
 * function-level target attributes; only called when cpuid reports AVX2 and FMA. */
#include "core/cpu/kernels.h"

#include <immintrin.h>
#include <math.h>

#include "core/numerics.h"

#define TGT __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TGT

/* ---- matmul: register tiles of R output rows x T tokens, dot-product form --------------- */

enum { TILE_R = 4, TILE_T = 2 };

/* lanes [0, n) all ones, the rest zero; n in [0, 8] */
INLINE __m256i tail_mask8(size_t n)
{
	const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

INLINE float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* 8 bf16 (16 bytes) widened to f32 */
INLINE __m256 load_bf16x8(const uint16_t *p)
{
	__m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

INLINE void tile_f32(float *Y, const float *X, const float *W, size_t n_in, size_t n_out,
		     size_t o, size_t t0, const int R, const int T)
{
	__m256 acc[TILE_R][TILE_T];
	const float *w[TILE_R], *x[TILE_T];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * n_in;
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[r][t] = _mm256_setzero_ps();
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		x[t] = X + (t0 + (size_t)t) * n_in;
	size_t k = 0;
	for (; k + 8 <= n_in; k += 8) {
		__m256 xv[TILE_T];
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			xv[t] = _mm256_loadu_ps(x[t] + k);
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			__m256 wv = _mm256_loadu_ps(w[r] + k);
#pragma GCC unroll 4
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
		}
	}
	if (k < n_in) {
		__m256i m = tail_mask8(n_in - k);
		__m256 xv[TILE_T];
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			xv[t] = _mm256_maskload_ps(x[t] + k, m);
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			__m256 wv = _mm256_maskload_ps(w[r] + k, m);
#pragma GCC unroll 4
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			Y[(t0 + (size_t)t) * n_out + o + (size_t)r] = hsum256(acc[r][t]);
}

INLINE void tile_bf16(float *Y, const uint16_t *X, const uint16_t *W, size_t n_in,
		      size_t n_out, size_t o, size_t t0, const int R, const int T)
{
	__m256 acc[TILE_R][TILE_T];
	const uint16_t *w[TILE_R], *x[TILE_T];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * n_in;
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[r][t] = _mm256_setzero_ps();
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		x[t] = X + (t0 + (size_t)t) * n_in;
	size_t k = 0;
	for (; k + 8 <= n_in; k += 8) {
		__m256 xv[TILE_T];
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			xv[t] = load_bf16x8(x[t] + k);
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			__m256 wv = load_bf16x8(w[r] + k);
#pragma GCC unroll 4
			for (int t = 0; t < T; t++)
				acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			float s = hsum256(acc[r][t]);
			for (size_t kk = k; kk < n_in; kk++)
				s += num_bf16_to_f32(x[t][kk]) * num_bf16_to_f32(w[r][kk]);
			Y[(t0 + (size_t)t) * n_out + o + (size_t)r] = s;
		}
}

/* Rows per block: as many as keep the block's weights within ~24 KiB of L1, at least one
 * tile, so the token tiles of the block re-read them from cache, not memory. */
static size_t block_rows(size_t row_bytes)
{
	size_t rows = 24576 / (row_bytes ? row_bytes : 1);
	rows = rows / TILE_R * TILE_R;
	return rows < TILE_R ? TILE_R : rows;
}

#define MATMUL_DRIVER(TILE, Y, X, W, n_tok, n_in, n_out, o0, o1, elem)                        \
	do {                                                                                  \
		size_t ob_ = block_rows((n_in) * (elem));                                     \
		for (size_t ob = (o0); ob < (o1); ob += ob_) {                                \
			size_t oe = ob + ob_ < (o1) ? ob + ob_ : (o1);                        \
			for (size_t t = 0; t < (n_tok); t += TILE_T) {                        \
				size_t o = ob;                                                \
				if ((n_tok) - t >= 2) {                                       \
					for (; o + 4 <= oe; o += 4)                           \
						TILE(Y, X, W, n_in, n_out, o, t, 4, 2);       \
					for (; o < oe; o++)                                   \
						TILE(Y, X, W, n_in, n_out, o, t, 1, 2);       \
				} else {                                                      \
					for (; o + 4 <= oe; o += 4)                           \
						TILE(Y, X, W, n_in, n_out, o, t, 4, 1);       \
					for (; o < oe; o++)                                   \
						TILE(Y, X, W, n_in, n_out, o, t, 1, 1);       \
				}                                                             \
			}                                                                     \
		}                                                                             \
	} while (0)

TGT static void matmul_f32_avx2(float *Y, const float *X, const float *W, size_t n_tok,
				size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	MATMUL_DRIVER(tile_f32, Y, X, W, n_tok, n_in, n_out, o0, o1, 4);
}

TGT static void matmul_bf16_avx2(float *Y, const uint16_t *Xb, const uint16_t *W, size_t n_tok,
				 size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	MATMUL_DRIVER(tile_bf16, Y, Xb, W, n_tok, n_in, n_out, o0, o1, 2);
}

/* ---- vector helpers ---------------------------------------------------------------------- */

/* e^x for f32 lanes, about 2 ulp (see exp512 in kernels_avx512.c); 2^n is applied as two
 * factors 2^(n/2) so no exponent field over- or underflows. Below -87.3 gives 0. */
INLINE __m256 exp256(__m256 x)
{
	const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.72283f);
	__m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
	__m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
	__m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500E-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	__m256i ni = _mm256_cvtps_epi32(n);
	__m256i n1 = _mm256_srai_epi32(ni, 1);
	__m256i n2 = _mm256_sub_epi32(ni, n1);
	__m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
	__m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
	__m256 e = _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
	return _mm256_andnot_ps(under, e);
}

/* ---- elementwise ----------------------------------------------------------------------- */

TGT static float dot_avx2(const float *a, const float *b, size_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	__m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	if (i < n) {
		__m256i m = tail_mask8(n - i);
		s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
	}
	return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

TGT static void axpy_avx2(float *y, float a, const float *x, size_t n)
{
	__m256 av = _mm256_set1_ps(a);
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i),
							_mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] = fmaf(a, x[i], y[i]);
}

TGT static void add_avx2(float *y, const float *x, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		y[i] += x[i];
}

TGT static void scale_avx2(float *x, float a, size_t n)
{
	__m256 av = _mm256_set1_ps(a);
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), av));
	for (; i < n; i++)
		x[i] *= a;
}

TGT static void rmsnorm_avx2(float *y, const float *x, const float *w, size_t n, float eps)
{
	float ss = dot_avx2(x, x, n);
	float rs = 1.0f / sqrtf(ss / (float)n + eps);
	__m256 r = _mm256_set1_ps(rs);
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), r),
						      _mm256_loadu_ps(w + i)));
	for (; i < n; i++)
		y[i] = x[i] * rs * w[i];
}

TGT static void softmax_avx2(float *x, size_t n)
{
	float m = -INFINITY;
	size_t i = 0;
	if (n >= 8) {
		__m256 mv = _mm256_loadu_ps(x);
		for (i = 8; i + 8 <= n; i += 8)
			mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
		__m128 h = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
		h = _mm_max_ps(h, _mm_movehl_ps(h, h));
		h = _mm_max_ss(h, _mm_movehdup_ps(h));
		m = _mm_cvtss_f32(h);
	}
	for (; i < n; i++)
		m = x[i] > m ? x[i] : m;
	__m256 mv = _mm256_set1_ps(m);
	__m256 s = _mm256_setzero_ps();
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
		_mm256_storeu_ps(x + i, e);
		s = _mm256_add_ps(s, e);
	}
	float st = hsum256(s);
	for (; i < n; i++) {
		x[i] = expf(x[i] - m);
		st += x[i];
	}
	scale_avx2(x, 1.0f / st, n);
}

TGT static float exp_sum_avx2(float *x, size_t n, float m)
{
	__m256 mv = _mm256_set1_ps(m), s = _mm256_setzero_ps();
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
		_mm256_storeu_ps(x + i, e);
		s = _mm256_add_ps(s, e);
	}
	float st = hsum256(s);
	for (; i < n; i++) {
		x[i] = expf(x[i] - m);
		st += x[i];
	}
	return st;
}

/* online_softmax with this set's scale and exp_sum; the max is a plain loop (the AVX2 set
 * is the fallback, not the tuned path). */
TGT static void online_softmax_avx2(float *s, size_t n_t, size_t nv, float *m, float *l,
				    float *acc, size_t hd)
{
	if (nv) {
		float bm = s[0];
		for (size_t t = 1; t < nv; t++)
			bm = s[t] > bm ? s[t] : bm;
		float mn = bm > *m ? bm : *m;
		float c = expf(*m - mn);
		if (c != 1.0f) {
			scale_avx2(acc, c, hd);
			*l *= c;
		}
		*l += exp_sum_avx2(s, nv, mn);
		*m = mn;
	}
	for (size_t t = nv; t < n_t; t++)
		s[t] = 0.0f;
}

/* Rows [0, R) x columns [j, j + 8 NV) of Y = X B (+ Y), the last column vector masked by
 * mk, row p of B at Bs[p / kb] + (p % kb) * ldb; the accumulators stay in registers over
 * every chunk. */
INLINE void gemm_tile256(float *Y, size_t ldy, const float *X, size_t ldx,
			 const float *const *Bs, size_t j, size_t ldb, size_t kb, size_t k, int acc,
			 const int R, const int NV, __m256i mk)
{
	const __m256i all = _mm256_set1_epi32(-1);
	__m256 c[4][2], b[2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int v = 0; v < NV; v++)
			c[r][v] = acc ? _mm256_maskload_ps(Y + (size_t)r * ldy + j + 8 * v,
							   v == NV - 1 ? mk : all)
				      : _mm256_setzero_ps();
	for (size_t p0 = 0, q = 0; p0 < k; p0 += kb, q++) {
		const float *B = Bs[q] + j, *x = X + p0;
		size_t pe = k - p0 < kb ? k - p0 : kb;
		for (size_t p = 0; p < pe; p++) {
#pragma GCC unroll 2
			for (int v = 0; v < NV; v++)
				b[v] = _mm256_maskload_ps(B + p * ldb + 8 * v, v == NV - 1 ? mk : all);
#pragma GCC unroll 4
			for (int r = 0; r < R; r++) {
				__m256 a = _mm256_broadcast_ss(x + (size_t)r * ldx + p);
#pragma GCC unroll 2
				for (int v = 0; v < NV; v++)
					c[r][v] = _mm256_fmadd_ps(a, b[v], c[r][v]);
			}
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int v = 0; v < NV; v++)
			_mm256_maskstore_ps(Y + (size_t)r * ldy + j + 8 * v, v == NV - 1 ? mk : all,
					    c[r][v]);
}

/* Column strips of 16 (2 vectors, the last masked), rows in tiles of 4 then 1. */
TGT static void gemm_nn_chunks_avx2(float *Y, size_t ldy, const float *X, size_t ldx,
				    const float *const *Bs, size_t ldb, size_t kb, size_t m,
				    size_t k, size_t n, int acc)
{
	for (size_t j = 0; j < n; j += 16) {
		size_t nj = n - j < 16 ? n - j : 16;
		__m256i mk = tail_mask8(nj > 8 ? nj - 8 : nj);
		size_t i = 0;
		if (nj > 8) {
			for (; i + 4 <= m; i += 4)
				gemm_tile256(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc,
					     4, 2, mk);
			for (; i < m; i++)
				gemm_tile256(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc,
					     1, 2, mk);
		} else {
			for (; i + 4 <= m; i += 4)
				gemm_tile256(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc,
					     4, 1, mk);
			for (; i < m; i++)
				gemm_tile256(Y + i * ldy, ldy, X + i * ldx, ldx, Bs, j, ldb, kb, k, acc,
					     1, 1, mk);
		}
	}
}

/* One chunk of all k rows. */
TGT static void gemm_nn_avx2(float *Y, size_t ldy, const float *X, size_t ldx, const float *B,
			     size_t ldb, size_t m, size_t k, size_t n, int acc)
{
	gemm_nn_chunks_avx2(Y, ldy, X, ldx, &B, ldb, k ? k : 1, m, k, n, acc);
}

TGT static void swiglu_avx2(float *y, const float *gate, const float *up, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 g = _mm256_loadu_ps(gate + i);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
		__m256 v = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_loadu_ps(up + i)));
	}
	for (; i < n; i++) {
		float g = gate[i];
		y[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

TGT static void rope_rotate_avx2(float *x, size_t n_heads, size_t head_dim, const float *cos_t,
				 const float *sin_t, cpu_rope_layout layout)
{
	size_t half = head_dim / 2;
	for (size_t h = 0; h < n_heads; h++) {
		float *v = x + h * head_dim;
		size_t i = 0;
		if (layout == CPU_ROPE_NEOX) {
			for (; i + 8 <= half; i += 8) {
				__m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + half + i);
				__m256 c = _mm256_loadu_ps(cos_t + i), s = _mm256_loadu_ps(sin_t + i);
				_mm256_storeu_ps(v + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
				_mm256_storeu_ps(v + half + i, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
			}
		}
		for (; i < half; i++) {
			size_t ia = layout == CPU_ROPE_NEOX ? i : 2 * i;
			size_t ib = layout == CPU_ROPE_NEOX ? i + half : 2 * i + 1;
			float a = v[ia], b = v[ib], c = cos_t[i], s = sin_t[i];
			v[ia] = a * c - b * s;
			v[ib] = a * s + b * c;
		}
	}
}

TGT static void bf16_to_f32_avx2(float *y, const uint16_t *x, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, load_bf16x8(x + i));
	for (; i < n; i++)
		y[i] = num_bf16_to_f32(x[i]);
}

TGT static void f32_to_bf16_avx2(uint16_t *y, const float *x, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
		__m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
		__m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
		__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
		__m256i r = _mm256_srli_epi32(
			_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
		__m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
		r = _mm256_blendv_epi8(r, q, nan);
		/* pack 8 x u32 (each < 65536) to 8 x u16 */
		__m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
		_mm_storeu_si128((__m128i *)(y + i), p);
	}
	for (; i < n; i++)
		y[i] = num_f32_to_bf16(x[i]);
}

/* Scalar: only the AVX-512 set has a register transpose; the copies are a few KiB. */
static void transpose_avx2(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
			   size_t cols)
{
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++)
			dst[c * ldd + r] = src[r * lds + c];
}

const cpu_kernel_set cpu_kernels_avx2 = {
	.name = "avx2",
	.isa = CPU_ISA_AVX2,
	.batch_invariant = true, /* dot-product tiles for every n_tok */
	.matmul_f32 = matmul_f32_avx2,
	.matmul_bf16 = matmul_bf16_avx2,
	.dot = dot_avx2,
	.axpy = axpy_avx2,
	.add = add_avx2,
	.scale = scale_avx2,
	.rmsnorm = rmsnorm_avx2,
	.softmax = softmax_avx2,
	.gemm_nn = gemm_nn_avx2,
	.gemm_nn_chunks = gemm_nn_chunks_avx2,
	.exp_sum = exp_sum_avx2,
	.online_softmax = online_softmax_avx2,
	.swiglu = swiglu_avx2,
	.rope_rotate = rope_rotate_avx2,
	.transpose = transpose_avx2,
	.bf16_to_f32 = bf16_to_f32_avx2,
	.f32_to_bf16 = f32_to_bf16_avx2,
};
