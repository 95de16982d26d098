/* kernels_quant_avx512.c: the AVX-512 (F, BW, VL, VNNI) quantized matmuls: FP8 decoded in
 * registers through binary16, INT8 with vpdpbusd, INT4 nibbles through a 16-entry vpermps
 * table per group; and the "amx" set, the same with INT8 batches on AMX-INT8 tiles.
 * Function-level target attributes; runs only when cpuid (and, for AMX, Linux) says it may. */
#include "core/cpu/kernels_quant.h"

#include <immintrin.h>
#include <string.h>

#include "core/cpu/kernels_amx.h"
#include "core/cpu/kernels_avx512.h"
#include "core/numerics.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TGT

/* Register tiles of R output rows x T tokens: every weight vector decoded once per tile is
 * used by T tokens. One token (decode) takes 8 rows a tile, more tokens 4 (the registers
 * hold R x T accumulators): the rows' sums are reduced together (hsum_ps / hsum_epi32),
 * which costs a fraction of reducing each row alone, and a matvec row is short. */
enum { TILE_R = 8, TILE_T = 4 };

/* Software prefetch distance, in row tiles: each row's same position this many tiles ahead.
 * Rows of quantized weights are short (288 bytes for INT4 at n_in = 576), so the stream of
 * one task is many short rows read in an interleaved order the hardware prefetcher follows
 * late; the next tiles' rows are requested early. A prefetch beyond the matrix is harmless
 * (prefetches never fault). One tile measured best: none is ~30% slower on INT4, two
 * or four a little slower than one. */
enum { PREFETCH_TILES = 1 };

static inline __mmask16 mask16(size_t n)
{
	return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

static inline __mmask64 mask64(size_t n)
{
	return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1;
}

/* Rows per block: as many as keep the block's weights within ~24 KiB of L1 (at least one
 * tile), so the token tiles after the first read them from cache. */
static size_t block_rows(size_t row_bytes)
{
	size_t rows = 24576 / (row_bytes ? row_bytes : 1);
	rows = rows / TILE_R * TILE_R;
	return rows < TILE_R ? TILE_R : rows;
}

/* out[r] = the sum of the 16 lanes of acc[r] for r < R (R = 1, 4 or 8): the rows are
 * folded together by 128-bit block shuffles, so R rows cost about as much as 3 of them
 * reduced alone. */
INLINE void hsum_ps(float *out, const __m512 *acc, const int R)
{
	if (R == 1) {
		out[0] = _mm512_reduce_add_ps(acc[0]);
		return;
	}
	__m512 b[4], c[2];
	/* b[i]: rows 2i and 2i + 1 with their blocks 0 + 2 and 1 + 3 added */
	for (int i = 0; i < R / 2; i++)
		b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0x44),
				     _mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0xee));
	/* c[i]: block j holds 4 partial sums of row 4i + j */
	for (int i = 0; i < R / 4; i++)
		c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
				     _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd));
	if (R == 4) {
		__m512 d = _mm512_add_ps(c[0], _mm512_permute_ps(c[0], 0x4e));
		d = _mm512_add_ps(d, _mm512_permute_ps(d, 0xb1));
		__m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
		_mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, d)));
		return;
	}
	/* block j: rows j and j + 4 interleaved, two pairs of partial sums each, then lanes
	 * 0, 1 of block j = rows j, j + 4 */
	__m512 d = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
	d = _mm512_add_ps(d, _mm512_permute_ps(d, 0x4e));
	__m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
	_mm256_storeu_ps(out, _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, d)));
}

/* hsum_ps for int32 lanes (sums modulo 2^32). */
INLINE void hsum_epi32(int32_t *out, const __m512i *acc, const int R)
{
	if (R == 1) {
		out[0] = _mm512_reduce_add_epi32(acc[0]);
		return;
	}
	__m512i b[4], c[2];
	for (int i = 0; i < R / 2; i++)
		b[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(acc[2 * i], acc[2 * i + 1], 0x44),
					_mm512_shuffle_i32x4(acc[2 * i], acc[2 * i + 1], 0xee));
	for (int i = 0; i < R / 4; i++)
		c[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0x88),
					_mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0xdd));
	if (R == 4) {
		__m512i d = _mm512_add_epi32(c[0], _mm512_shuffle_epi32(c[0], 0x4e));
		d = _mm512_add_epi32(d, _mm512_shuffle_epi32(d, 0xb1));
		__m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
		_mm_storeu_si128((__m128i *)out,
				 _mm512_castsi512_si128(_mm512_permutexvar_epi32(idx, d)));
		return;
	}
	__m512i d = _mm512_add_epi32(_mm512_unpacklo_epi32(c[0], c[1]),
				     _mm512_unpackhi_epi32(c[0], c[1]));
	d = _mm512_add_epi32(d, _mm512_shuffle_epi32(d, 0x4e));
	__m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
	_mm256_storeu_si256((__m256i *)out,
			    _mm512_castsi512_si256(_mm512_permutexvar_epi32(idx, d)));
}

/* Rows [o, oe) for the T tokens from t: R-row tiles (R = 4 or 8), then 4-row ones, then
 * single rows. */
#define QROWS(TILE, o, oe, t, R, T)                                                          \
	do {                                                                                 \
		if ((R) == 8)                                                                \
			for (; (o) + 8 <= (oe); (o) += 8)                                    \
				TILE(o, t, 8, T);                                            \
		for (; (o) + 4 <= (oe); (o) += 4)                                            \
			TILE(o, t, 4, T);                                                    \
		for (; (o) < (oe); (o)++)                                                    \
			TILE(o, t, 1, T);                                                    \
	} while (0)

/* For every row block, every token tile; inside, row tiles as QROWS, R1 (4 or 8) rows a
 * tile for one token. TILE is called as TILE(o, t0, R, T) with R, T compile-time constants. */
#define QDRIVER(TILE, n_tok, o0, o1, row_bytes, R1)                                          \
	do {                                                                                 \
		size_t ob_ = block_rows(row_bytes);                                          \
		for (size_t ob = (o0); ob < (o1); ob += ob_) {                               \
			size_t oe = ob + ob_ < (o1) ? ob + ob_ : (o1);                       \
			for (size_t t = 0; t < (n_tok); t += TILE_T) {                       \
				size_t nt = (n_tok) - t < TILE_T ? (n_tok) - t : TILE_T;     \
				size_t o = ob;                                               \
				switch (nt) {                                                \
				case 4:                                                      \
					QROWS(TILE, o, oe, t, 4, 4);                         \
					break;                                               \
				case 3:                                                      \
					QROWS(TILE, o, oe, t, 4, 3);                         \
					break;                                               \
				case 2:                                                      \
					QROWS(TILE, o, oe, t, 4, 2);                         \
					break;                                               \
				default:                                                     \
					QROWS(TILE, o, oe, t, R1, 1);                        \
					break;                                               \
				}                                                            \
			}                                                                    \
		}                                                                            \
	} while (0)

/* ---- FP8 W8A16 ---------------------------------------------------------------------------- */

/* 32 E4M3 codes -> 2 x 16 f32 equal to their values times 2^-8, exactly: the sign-extended byte
 * shifted left by 7 puts S.EEEE.MMM in binary16's sign, low exponent bits and top mantissa
 * bits (bit 14, a copy of the sign, is cleared), and binary16's bias 15 vs E4M3's 7 is the
 * 2^-8; E4M3 subnormals land on binary16 subnormals. NaN codes do not occur in weights. */
INLINE void e4m3x32(__m256i b, __m512 *lo, __m512 *hi)
{
	__m512i h = _mm512_slli_epi16(_mm512_cvtepi8_epi16(b), 7);
	h = _mm512_and_si512(h, _mm512_set1_epi16((short)0xbfff));
	*lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
	*hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}

INLINE void tile_fp8(float *Y, const float *X, const uint8_t *W, const float *sw, size_t n_in,
		     size_t n_out, size_t o, size_t t0, const int R, const int T)
{
	__m512 acc[TILE_T][TILE_R];
	const uint8_t *w[TILE_R];
	const float *x[TILE_T];
	const size_t pf = PREFETCH_TILES * (size_t)R * n_in;
#pragma GCC unroll 8
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * n_in;
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[t][r] = _mm512_setzero_ps();
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		x[t] = X + (t0 + (size_t)t) * n_in;
	for (size_t k = 0; k < n_in; k += 32) {
		__mmask32 m = (__mmask32)mask64(n_in - k < 32 ? n_in - k : 32);
		__mmask16 m0 = mask16(n_in - k), m1 = n_in - k > 16 ? mask16(n_in - k - 16) : 0;
		__m512 x0[TILE_T], x1[TILE_T];
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			x0[t] = _mm512_maskz_loadu_ps(m0, x[t] + k);
			x1[t] = _mm512_maskz_loadu_ps(m1, x[t] + k + 16);
		}
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			__m512 w0, w1;
			_mm_prefetch((const char *)(w[r] + k + pf), _MM_HINT_T0);
			e4m3x32(_mm256_maskz_loadu_epi8(m, w[r] + k), &w0, &w1);
#pragma GCC unroll 4
			for (int t = 0; t < T; t++) {
				acc[t][r] = _mm512_fmadd_ps(w0, x0[t], acc[t][r]);
				acc[t][r] = _mm512_fmadd_ps(w1, x1[t], acc[t][r]);
			}
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++) {
		float sum[TILE_R];
		hsum_ps(sum, acc[t], R);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) /* *256 undoes the 2^-8 of e4m3x32, exactly */
			Y[(t0 + (size_t)t) * n_out + o + (size_t)r] =
				sw[o + (size_t)r] * (sum[r] * 256.0f);
	}
}

TGT static void matmul_fp8_avx512(float *Y, const float *X, const uint8_t *W, const float *sw,
				  size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
#define TILE(o, t, R, T) tile_fp8(Y, X, W, sw, n_in, n_out, o, t, R, T)
	QDRIVER(TILE, n_tok, o0, o1, n_in, 8);
#undef TILE
}

/* ---- INT8 W8A8 ---------------------------------------------------------------------------- */

/* vpdpbusd multiplies unsigned by signed bytes: the weights go in as w + 128 (xor 0x80), so
 * each sum is sum (w + 128) x = sum w x + 128 xsum, corrected at the end. The arithmetic
 * wraps modulo 2^32, so the corrected sum is exact whenever the true sum fits an int32. */
INLINE void tile_i8(float *Y, const int8_t *X, const float *xs, const int32_t *xsum,
		    const int8_t *W, const float *sw, size_t n_in, size_t n_out, size_t o,
		    size_t t0, const int R, const int T)
{
	__m512i acc[TILE_T][TILE_R];
	const int8_t *w[TILE_R], *x[TILE_T];
	const __m512i bias = _mm512_set1_epi8((char)0x80);
	const size_t pf = PREFETCH_TILES * (size_t)R * n_in;
#pragma GCC unroll 8
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * n_in;
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[t][r] = _mm512_setzero_si512();
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		x[t] = X + (t0 + (size_t)t) * n_in;
	for (size_t k = 0; k < n_in; k += 64) {
		__mmask64 m = mask64(n_in - k);
		__m512i xv[TILE_T];
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			xv[t] = _mm512_maskz_loadu_epi8(m, x[t] + k); /* masked lanes: x = 0 */
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			_mm_prefetch((const char *)(w[r] + k + pf), _MM_HINT_T0);
			__m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, w[r] + k), bias);
#pragma GCC unroll 4
			for (int t = 0; t < T; t++)
				acc[t][r] = _mm512_dpbusd_epi32(acc[t][r], wv, xv[t]);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++) {
		size_t tt = t0 + (size_t)t;
		uint32_t corr = (uint32_t)xsum[tt] << 7; /* once per token and tile */
		int32_t sum[TILE_R];
		hsum_epi32(sum, acc[t], R);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			uint32_t s = (uint32_t)sum[r] - corr;
			Y[tt * n_out + o + (size_t)r] = (float)(int32_t)s * (xs[tt] * sw[o + (size_t)r]);
		}
	}
}

TGT static void matmul_i8_avx512(float *Y, const int8_t *Xq, const float *xs,
				 const int32_t *xsum, const int8_t *W, const float *sw,
				 size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
#define TILE(o, t, R, T) tile_i8(Y, Xq, xs, xsum, W, sw, n_in, n_out, o, t, R, T)
	QDRIVER(TILE, n_tok, o0, o1, n_in, 8);
#undef TILE
}

/* ---- INT8 W8A8 on AMX tiles (the "amx" set) ----------------------------------------------- */
/* Sapphire Rapids multiplies signed bytes in tiles: one TDPBSSD adds a 16 x 64 int8 block
 * (16 tokens of Xq, straight from its rows) times a 64 x 16 one (16 weight rows) into 16 x 16
 * int32 accumulators. The second operand wants each row r of the tile to hold, for 16
 * output rows c, the 4 bytes W[c][4r .. 4r + 3]: a 16 x 16 transpose of 32-bit lanes, done
 * once per panel of 32 weight rows (cpu_avx512_pack_panel32 on 4-byte lanes) and used by every token tile. A tile of
 * 32 tokens x 32 rows keeps four accumulators (tmm0-3) over the whole n_in, so each sum is
 * the exact int32 sum (no partial ever leaves int32 between k steps), then scaled with the
 * float expression of every other set: results bit-identical to the generic set.
 * Edges: tokens past the last whole 16 read a zero-padded copy (x_tail), rows past the range
 * are zero in the panel, and only rows [o0, o1) of tokens < n_tok are stored.
 * Up to I8_WA_MAX_TOK tokens the operands swap (gemm_i8_amx_wa): packing a panel per 32 rows
 * costs more than these few tokens' products (paired A/B, see matmul_i8_amx). */
#define TGT_AMX                                                                               \
	__attribute__((target("amx-tile,amx-int8,prfchw,avx512f,avx512bw,avx512vl,avx512vnni,"   \
			      "avx2,fma,f16c")))

/* panel width (rows; the 32 of cpu_avx512_pack_panel32) and token tile;
 * CPU_QI8_GEMM_MIN_TOK (kernels_quant.h) the threshold */
enum { I8_NR = 32, I8_TM = 32, I8_WA_MAX_TOK = 32 };

/* Every tile 16 rows of 64 bytes (palette 1). */
TGT_AMX static void i8_tiles_config(void)
{
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
}

/* The accumulators tmm0..(2 NH - 1) zeroed, or stored to acc[0..2 NH). */
static inline __attribute__((always_inline)) TGT_AMX void i8_tiles_zero(const int NH)
{
	_tile_zero(0);
	_tile_zero(1);
	if (NH == 2) {
		_tile_zero(2);
		_tile_zero(3);
	}
}

static inline __attribute__((always_inline)) TGT_AMX void i8_tiles_store(int32_t acc[4][256],
									 const int NH)
{
	_tile_stored(0, acc[0], 64);
	_tile_stored(1, acc[1], 64);
	if (NH == 2) {
		_tile_stored(2, acc[2], 64);
		_tile_stored(3, acc[3], 64);
	}
}

/* A 32 x 32 tile's epilogue (i8_amx_store's expression, so the same bits) done a few vectors
 * at a time between the next tile's tile products (i8_amx_run says why): Y[t0 + t][o + 16 j ..]
 * for unit u = J t + j of nt J, J = 1 or 2 row halves. acc borrowed until done == nt J; the
 * GEMM alternates two acc buffers. */
typedef struct i8_epi {
	const int32_t (*acc)[256];
	float *Y;
	const float *xs, *sw;
	size_t n_out, t0, nt, o, nr, done;
} i8_epi;

static inline __attribute__((always_inline)) TGT void i8_epi_step(i8_epi *e, size_t n)
{
	size_t J = e->nr > 16 ? 2 : 1, end = e->done + n < e->nt * J ? e->done + n : e->nt * J;
	for (size_t u = e->done; u < end; u++) {
		size_t t = u / J, j = u % J;
		__mmask16 m = mask16(e->nr - 16 * j);
		__m512 s = _mm512_maskz_loadu_ps(m, e->sw + e->o + 16 * j);
		const int32_t *c = e->acc[2 * (t / 16) + j] + 16 * (t % 16);
		__m512 a = _mm512_cvtepi32_ps(_mm512_load_si512(c));
		__m512 y = _mm512_mul_ps(a, _mm512_mul_ps(_mm512_set1_ps(e->xs[e->t0 + t]), s));
		_mm512_mask_storeu_ps(e->Y + (e->t0 + t) * e->n_out + e->o + 16 * j, m, y);
	}
	e->done = end;
}

/* C tiles tmm0..3 (token half h, row half j at 2 h + j) = the exact int32 sums over n_in of
 * the NH halves' tokens (x[h], rows n_in apart) times the panel; stored to acc[2 h + j].
 * pf: rows of the next panel, pf_stride apart, one 64-byte line of each per k step.
 * Between the k steps it also runs the previous tile's epilogue (prev, ~64 / (n_in / 64)
 * units a step) and prefetches for writing the y_tok rows of y_lpt lines this tile's
 * epilogue will store (y, rows y_ld floats apart). The epilogue was a third of the GEMM's
 * samples (576x576, 512 tokens, one thread): a loop of 64 vector stores that waited for the
 * tile's sums and kept the next tile's products from starting, and Y's lines missed. Spread
 * out, it runs under the tile products: bench-engine INT8 prefill of 512 tokens, 7 pairs
 * alternating with the epilogue after each tile, median ratio 1.13 (0.95-1.28). */
static inline __attribute__((always_inline)) TGT_AMX void
i8_amx_run(int32_t acc[4][256], const int8_t *const x[2], const uint32_t *Wp, size_t n_in,
	   const int8_t *pf, size_t pf_stride, size_t pf_rows, float *y, size_t y_ld, size_t y_tok,
	   size_t y_lpt, i8_epi *prev, const int NH)
{
	size_t n_yl = y_tok * y_lpt, n_s = n_in / 64, yl = 0;
	size_t y_per = (n_yl + (n_s < 8 ? n_s : 8) - 1) / (n_s < 8 ? n_s : 8);
	size_t e_per = (64 + n_s - 1) / n_s;
	i8_tiles_zero(NH);
	for (size_t q = 0; q < n_in / 4; q += 16) {
		i8_epi_step(prev, e_per);
		for (size_t e = yl + y_per < n_yl ? yl + y_per : n_yl; yl < e; yl++)
			_mm_prefetch((const char *)(y + yl / y_lpt * y_ld + 16 * (yl % y_lpt)),
				     _MM_HINT_ET0);
		for (size_t r = 0; r < pf_rows; r++)
			_mm_prefetch((const char *)(pf + r * pf_stride + 4 * q), _MM_HINT_T1);
		_tile_loadd(4, x[0] + 4 * q, n_in);
		_tile_loadd(6, Wp + q * I8_NR, I8_NR * sizeof *Wp);
		_tile_dpbssd(0, 4, 6);
		_tile_loadd(7, Wp + q * I8_NR + 16, I8_NR * sizeof *Wp);
		_tile_dpbssd(1, 4, 7);
		if (NH == 2) {
			_tile_loadd(5, x[1] + 4 * q, n_in);
			_tile_dpbssd(2, 5, 6);
			_tile_dpbssd(3, 5, 7);
		}
	}
	i8_tiles_store(acc, NH);
}

/* Y[t][o + c] = (float)acc * (xs[t] * sw[o + c]) for the nt tokens from t0 and nr rows from o
 * of one 32 x 32 tile, the generic set's expression lane by lane. */
TGT static void i8_amx_store(float *Y, size_t n_out, const int32_t acc[4][256],
			     const float *xs, const float *sw, size_t t0, size_t nt, size_t o,
			     size_t nr)
{
	for (size_t j = 0; j < 2 && 16 * j < nr; j++) {
		__mmask16 m = mask16(nr - 16 * j);
		__m512 s = _mm512_maskz_loadu_ps(m, sw + o + 16 * j);
		for (size_t t = 0; t < nt; t++) {
			const int32_t *c = acc[2 * (t / 16) + j] + 16 * (t % 16);
			__m512 a = _mm512_cvtepi32_ps(_mm512_load_si512(c));
			__m512 y = _mm512_mul_ps(a, _mm512_mul_ps(_mm512_set1_ps(xs[t0 + t]), s));
			_mm512_mask_storeu_ps(Y + (t0 + t) * n_out + o + 16 * j, m, y);
		}
	}
}

/* Returns 0, or -1 (nothing written) when the scratch cannot be allocated. n_in % 64 == 0. */
TGT_AMX static int gemm_i8_amx(float *Y, const int8_t *Xq, const float *xs, const int8_t *W,
			       const float *sw, size_t n_tok, size_t n_in, size_t n_out, size_t o0,
			       size_t o1)
{
	size_t n_tail = n_tok % 16;
	unsigned char *scr = cpu_alloc_aligned(I8_NR * n_in + (n_tail ? 16 * n_in : 0));
	if (!scr)
		return -1;
	uint32_t *Wp = (uint32_t *)(void *)scr;
	int8_t *x_tail = NULL;
	if (n_tail) { /* the last n_tok % 16 tokens, zero-padded to a whole tile */
		x_tail = (int8_t *)(scr + I8_NR * n_in);
		memcpy(x_tail, Xq + (n_tok - n_tail) * n_in, n_tail * n_in);
		memset(x_tail + n_tail * n_in, 0, (16 - n_tail) * n_in);
	}
	i8_tiles_config();
	_Alignas(64) int32_t acc[2][4][256];
	i8_epi prev = {.acc = acc[1], .Y = Y, .xs = xs, .sw = sw, .n_out = n_out}; /* none yet */
	size_t n_run = 0;
	/* token blocks of ~512 KiB of activations, re-read from L2 by every panel */
	size_t tb_tok = (size_t)(1 << 19) / n_in / I8_TM * I8_TM;
	if (tb_tok < I8_TM)
		tb_tok = I8_TM;
	for (size_t tb = 0; tb < n_tok; tb += tb_tok) {
		size_t te = n_tok - tb < tb_tok ? n_tok : tb + tb_tok;
		size_t n_tiles = (te - tb + I8_TM - 1) / I8_TM;
		for (size_t o = o0; o < o1; o += I8_NR) {
			size_t nr = o1 - o < I8_NR ? o1 - o : I8_NR;
			cpu_avx512_pack_panel32(Wp, W + o * n_in, n_in / 4, n_in / 4, nr);
			/* tile i fetches rows i, i + n_tiles, ... of the next panel into L2 while it
			 * computes, so that the next pack finds them there */
			size_t pnr = o + nr < o1 ? (o1 - o - nr < I8_NR ? o1 - o - nr : I8_NR) : 0;
			const int8_t *pw = W + (o + nr) * n_in;
			for (size_t t = tb, i = 0; t < te; t += I8_TM, i++) {
				size_t nt = te - t < I8_TM ? te - t : I8_TM;
				const int8_t *x[2] = {t + 16 <= n_tok ? Xq + t * n_in : x_tail,
						      t + 32 <= n_tok ? Xq + (t + 16) * n_in : x_tail};
				size_t pf_rows = i < pnr ? (pnr - i + n_tiles - 1) / n_tiles : 0;
				int32_t(*a)[256] = acc[n_run++ & 1];
				if (nt > 16)
					i8_amx_run(a, x, Wp, n_in, pw + i * n_in, n_tiles * n_in,
						   pf_rows, Y + t * n_out + o, n_out, nt, nr > 16 ? 2 : 1,
						   &prev, 2);
				else
					i8_amx_run(a, x, Wp, n_in, pw + i * n_in, n_tiles * n_in,
						   pf_rows, Y + t * n_out + o, n_out, nt, nr > 16 ? 2 : 1,
						   &prev, 1);
				i8_epi_step(&prev, 64); /* whatever the k steps left */
				prev.acc = (const int32_t(*)[256])a;
				prev.t0 = t, prev.nt = nt, prev.o = o, prev.nr = nr, prev.done = 0;
			}
		}
	}
	i8_epi_step(&prev, 64);
	/* give the tile state back: a thread holding it makes every context switch save 8 KiB */
	_tile_release();
	cpu_free_aligned(scr);
	return 0;
}

/* Few tokens (decode batches): the weights are the first operand instead, 16 rows of W
 * straight from memory per tile, and the activations, packed once per call, the second
 * (cpu_avx512_pack_panel32 on Xq: token c of 32 in lane c). Nothing per panel but the tile loads; the
 * 16 x 16 sums come out row-major by weight row and are transposed before the same store.
 * C tile 2 h + j: tokens 16 h.., rows 16 j... Rows of a block that reaches past o1 come from
 * a zero-padded copy (w_tail). n_tok <= 32. */
static inline __attribute__((always_inline)) TGT_AMX void
i8_amx_run_wa(int32_t acc[4][256], const int8_t *w, size_t w_ld, const uint32_t *Xp,
	      size_t n_in, const int8_t *pf, size_t pf_stride, size_t pf_rows, const int NH)
{
	i8_tiles_zero(NH);
	for (size_t q = 0; q < n_in / 4; q += 16) {
		for (size_t r = 0; r < pf_rows; r++) /* the next block's rows, a block ahead */
			_mm_prefetch((const char *)(pf + r * pf_stride + 4 * q), _MM_HINT_T0);
		_tile_loadd(4, w + 4 * q, w_ld);
		_tile_loadd(5, w + 16 * w_ld + 4 * q, w_ld);
		_tile_loadd(6, Xp + q * I8_NR, I8_NR * sizeof *Xp);
		_tile_dpbssd(0, 4, 6);
		_tile_dpbssd(1, 5, 6);
		if (NH == 2) {
			_tile_loadd(7, Xp + q * I8_NR + 16, I8_NR * sizeof *Xp);
			_tile_dpbssd(2, 4, 7);
			_tile_dpbssd(3, 5, 7);
		}
	}
	i8_tiles_store(acc, NH);
}

TGT_AMX static int gemm_i8_amx_wa(float *Y, const int8_t *Xq, const float *xs, const int8_t *W,
				  const float *sw, size_t n_tok, size_t n_in, size_t n_out,
				  size_t o0, size_t o1)
{
	size_t n_full = (o1 - o0) / I8_NR * I8_NR, n_rest = o1 - o0 - n_full;
	size_t n_tb = (n_tok + I8_TM - 1) / I8_TM, xp_bytes = n_tb * I8_TM * n_in;
	unsigned char *scr = cpu_alloc_aligned(xp_bytes + (n_rest ? I8_NR * n_in : 0));
	if (!scr)
		return -1;
	uint32_t *Xp = (uint32_t *)(void *)scr;
	for (size_t b = 0; b < n_tb; b++) {
		size_t nt = n_tok - I8_TM * b < I8_TM ? n_tok - I8_TM * b : I8_TM;
		cpu_avx512_pack_panel32(Xp + b * I8_TM * n_in / 4, Xq + b * I8_TM * n_in, n_in / 4,
					n_in / 4, nt);
	}
	int8_t *w_tail = NULL;
	if (n_rest) {
		w_tail = (int8_t *)(scr + xp_bytes);
		memcpy(w_tail, W + (o0 + n_full) * n_in, n_rest * n_in);
		memset(w_tail + n_rest * n_in, 0, (I8_NR - n_rest) * n_in);
	}
	i8_tiles_config();
	_Alignas(64) int32_t acc[4][256];
	for (size_t o = o0; o < o1; o += I8_NR) {
		int tail = o + I8_NR > o1;
		const int8_t *w = tail ? w_tail : W + o * n_in;
		/* the next block, or this one again at the end (prefetches never fault, but stay
		 * inside the matrix) */
		const int8_t *pf = o + 2 * I8_NR <= o1 ? W + (o + I8_NR) * n_in : w;
		for (size_t b = 0; b < n_tb; b++) {
			size_t nt = n_tok - I8_TM * b < I8_TM ? n_tok - I8_TM * b : I8_TM;
			const uint32_t *xp = Xp + b * I8_TM * n_in / 4;
			size_t pf_rows = b == 0 ? I8_NR : 0; /* later blocks find the rows in L1 */
			if (nt > 16)
				i8_amx_run_wa(acc, w, n_in, xp, n_in, pf, n_in, pf_rows, 2);
			else
				i8_amx_run_wa(acc, w, n_in, xp, n_in, pf, n_in, pf_rows, 1);
			/* row-major by weight row -> by token, as i8_amx_store reads them */
			for (size_t c = 0; c < (nt > 16 ? 4 : 2); c++)
				cpu_avx512_transpose16x16(acc[c]);
			i8_amx_store(Y, n_out, (const int32_t(*)[256])acc, xs, sw, I8_TM * b, nt, o,
				     o1 - o < I8_NR ? o1 - o : I8_NR);
		}
	}
	_tile_release();
	cpu_free_aligned(scr);
	return 0;
}

/* The AVX-512 INT8 matmul with CPU_QI8_GEMM_MIN_TOK tokens and more on tiles (n_in a
 * multiple of 64; other widths, and no memory for the scratch, take the vpdpbusd tiles).
 * Paired A/B against the avx512 set (bench_quant --ab-i8, 2 threads, one SmolLM2-135M
 * forward's INT8 matmuls, cold weights): weights as the first operand 6 tokens 1.03x,
 * 8 1.10x, 16 1.60x, 32 2.0x, 48 2.15x, 64 2.24x, 512 2.6x; packed weights as the second
 * 16 1.23x, 32 1.9x, 48 2.3x, 64 2.55x, 128 3.2x, 512 4.7x: the swap up to 32 tokens. */
TGT static void matmul_i8_amx(float *Y, const int8_t *Xq, const float *xs, const int32_t *xsum,
			      const int8_t *W, const float *sw, size_t n_tok, size_t n_in,
			      size_t n_out, size_t o0, size_t o1)
{
	if (n_tok >= CPU_QI8_GEMM_MIN_TOK && n_in % 64 == 0 &&
	    (n_tok <= I8_WA_MAX_TOK ? gemm_i8_amx_wa(Y, Xq, xs, W, sw, n_tok, n_in, n_out, o0, o1)
				    : gemm_i8_amx(Y, Xq, xs, W, sw, n_tok, n_in, n_out, o0, o1)) == 0)
		return;
	matmul_i8_avx512(Y, Xq, xs, xsum, W, sw, n_tok, n_in, n_out, o0, o1);
}

/* ---- INT4 W4A16 --------------------------------------------------------------------------- */

/* A group of G = 16 E codes (E = 2, 4, 8) is read as 16 lanes of 32 bits, lane j holding
 * elements E j .. E j + E - 1 in its nibbles (low first). Shifting right by 4 m puts element
 * E j + m in the low nibble of lane j, and vpermps, which reads only the low 4 bits of each
 * index, looks its value up in the group's table lut[q] = s (q - z). The activations are
 * laid out to match by prepare_i4: Xp[g G + 16 m + j] = X[g G + E j + m]. */

static void prepare_i4_avx512(float *Xp, const float *X, size_t n_tok, size_t n_in,
			      size_t group)
{
	size_t e = group / 16;
	for (size_t t = 0; t < n_tok; t++)
		for (size_t g = 0; g < n_in; g += group) {
			const float *x = X + t * n_in + g;
			float *xp = Xp + t * n_in + g;
			for (size_t m = 0; m < e; m++)
				for (size_t j = 0; j < 16; j++)
					xp[16 * m + j] = x[e * j + m];
		}
}

/* The 16 lanes of one group of row w (E codes a lane). */
INLINE __m512i i4_lanes(const uint8_t *w, const int E)
{
	if (E == 8)
		return _mm512_loadu_si512(w);
	if (E == 4)
		return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w));
	return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)w));
}

/* qz[z] = the 16 values q - z, q = 0..15: a group's table is qz[z] * s, one multiply with a
 * broadcast scale (exactly num_i4_dequantize: q - z is exact in f32, then one rounding). */
#define QZ_ROW(z)                                                                             \
	{0 - (z), 1 - (z), 2 - (z), 3 - (z), 4 - (z), 5 - (z), 6 - (z), 7 - (z), 8 - (z),     \
	 9 - (z), 10 - (z), 11 - (z), 12 - (z), 13 - (z), 14 - (z), 15 - (z)}
static const float i4_qz[16][16] __attribute__((aligned(64))) = {
	QZ_ROW(0),  QZ_ROW(1),  QZ_ROW(2),  QZ_ROW(3),  QZ_ROW(4),  QZ_ROW(5),
	QZ_ROW(6),  QZ_ROW(7),  QZ_ROW(8),  QZ_ROW(9),  QZ_ROW(10), QZ_ROW(11),
	QZ_ROW(12), QZ_ROW(13), QZ_ROW(14), QZ_ROW(15),
};
#undef QZ_ROW

/* Per group and row: one table multiply and the lanes' load; per 16 weights: a shift
 * (none for the low nibble), a vpermps and T fused multiply-adds. One token takes 4-row
 * tiles here, not 8: the 3 x 8 row pointers of 8 rows spill, and 4 measured ~10% faster. */
INLINE void tile_i4(float *Y, const float *Xp, const uint8_t *W, const float *scales,
		    const uint8_t *zeros, size_t n_in, size_t n_out, size_t o, size_t t0,
		    const int R, const int T, const int E)
{
	const size_t G = 16 * (size_t)E, n_groups = n_in / G;
	const size_t pf = PREFETCH_TILES * (size_t)R * (n_in / 2);
	__m512 acc[TILE_T][TILE_R];
	const uint8_t *w[TILE_R], *z[TILE_R];
	const float *s[TILE_R], *x[TILE_T];
#pragma GCC unroll 8
	for (int r = 0; r < R; r++) {
		w[r] = W + (o + (size_t)r) * (n_in / 2);
		s[r] = scales + (o + (size_t)r) * n_groups;
		z[r] = zeros + (o + (size_t)r) * n_groups;
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[t][r] = _mm512_setzero_ps();
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		x[t] = Xp + (t0 + (size_t)t) * n_in;
	for (size_t g = 0; g < n_groups; g++) {
		__m512 lut[TILE_R];
		__m512i v[TILE_R];
#pragma GCC unroll 8
		for (int r = 0; r < R; r++) {
			lut[r] = _mm512_mul_ps(_mm512_load_ps(i4_qz[z[r][g] & 15]),
					       _mm512_set1_ps(s[r][g]));
			_mm_prefetch((const char *)(w[r] + g * G / 2 + pf), _MM_HINT_T0);
			v[r] = i4_lanes(w[r] + g * G / 2, E);
		}
#pragma GCC unroll 8
		for (int m = 0; m < E; m++) {
			__m512 xv[TILE_T];
#pragma GCC unroll 4
			for (int t = 0; t < T; t++)
				xv[t] = _mm512_loadu_ps(x[t] + g * G + 16 * (size_t)m);
#pragma GCC unroll 8
			for (int r = 0; r < R; r++) {
				__m512i idx = m ? _mm512_srli_epi32(v[r], (unsigned)(4 * m)) : v[r];
				__m512 d = _mm512_permutexvar_ps(idx, lut[r]);
#pragma GCC unroll 4
				for (int t = 0; t < T; t++)
					acc[t][r] = _mm512_fmadd_ps(d, xv[t], acc[t][r]);
			}
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		hsum_ps(Y + (t0 + (size_t)t) * n_out + o, acc[t], R);
}

TGT static void matmul_i4_avx512(float *Y, const float *Xp, const uint8_t *W,
				 const float *scales, const uint8_t *zeros, size_t group,
				 size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
#define TILE8(o, t, R, T) tile_i4(Y, Xp, W, scales, zeros, n_in, n_out, o, t, R, T, 8)
#define TILE4(o, t, R, T) tile_i4(Y, Xp, W, scales, zeros, n_in, n_out, o, t, R, T, 4)
#define TILE2(o, t, R, T) tile_i4(Y, Xp, W, scales, zeros, n_in, n_out, o, t, R, T, 2)
	if (group == 128)
		QDRIVER(TILE8, n_tok, o0, o1, n_in / 2, 4);
	else if (group == 64)
		QDRIVER(TILE4, n_tok, o0, o1, n_in / 2, 4);
	else
		QDRIVER(TILE2, n_tok, o0, o1, n_in / 2, 4);
#undef TILE8
#undef TILE4
#undef TILE2
}

/* ---- INT4 W4A16 on AMX-BF16 tiles (the "amx" set) ----------------------------------------- */
/* Exact INT4 on bf16 tiles (kernels_quant.h has the arithmetic): q - z in -15..15 is exact in
 * bf16, and every f32 activation is the exact sum of three bf16 planes hi + mid + lo
 * (prepare_bf16x3_amx), so the TDPBF16PS products are exact and one accumulator tile sums a
 * group's hi, mid and lo products in f32; the group's 16 x 16 partials then leave the tile,
 * times the group's scale per row, into f32 accumulators in L1 (one fused multiply-add each),
 * and the tile is zeroed for the next group.
 * Operands: the weights are the first one, 16 rows x 32 bf16 per tile, and a packed INT4 row
 * is that layout already: byte l holds elements 2 l and 2 l + 1, so one 32-bit lane per byte
 * holding the pair (q[2 l] - z, q[2 l + 1] - z) is the row in element order, decoded per
 * panel of 32 rows (i4_tiles_panel) without any transpose and used by every token tile. The
 * activations are the second operand, in the VNNI pair layout prepared once per call. A tile
 * of 32 tokens x 32 rows keeps four accumulators (tmm0-3: row half j, token half h at
 * 2 h + j), the two weight tiles (tmm4, 5) and the activation tiles alternate in tmm6, 7 (tile
 * registers are not renamed). Rows past the range are zero in the panel and tokens past
 * n_tok zero in the planes; only rows [o0, o1) of tokens < n_tok are stored. Every
 * (row, token) result is computed alone from its row and its token's planes, the same way
 * wherever the row sits in a panel, so row ranges and threads never change bits. */
#define TGT_AMX_BF16                                                                          \
	__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,"     \
			      "avx512vnni,avx2,fma,f16c")))

/* panel width (rows), token tile, panels per row block: CPU_QTILES_SCRATCH holds the
 * block (kernels_quant.h) */
enum { I4_NR = 32, I4_TM = 32, I4_BLOCK = CPU_QTILES_BLOCK };

/* The exact three-way split of 32 activations x0 (elements 0..15), x1 (16..31) into bf16
 * planes, each as 16 lanes of element pairs. hi rounds to nearest even; x - hi is exact in
 * f32 (a multiple of x's ulp, below half of hi's bf16 ulp), so is x - hi - mid, which then
 * has at most 8 significant bits (24 - 8 - 8) and converts to bf16 exactly. vcvtne2ps2bf16
 * treats denormal inputs as zero, so only parts below 2^-126 (activations below ~2^-110)
 * are lost. Non-finite x: hi carries it, mid and lo are 0 (x - hi would be NaN for Inf). */
static inline __attribute__((always_inline)) TGT_AMX_BF16 void
bf16x3_split32(__m512 x0, __m512 x1, __m512i out[3])
{
	const __m512i expo = _mm512_set1_epi32(0x7f800000);
	__mmask16 f0 = _mm512_cmpneq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x0), expo),
						expo);
	__mmask16 f1 = _mm512_cmpneq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x1), expo),
						expo);
	for (int p = 0; p < 3; p++) {
		__m512i b = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
		out[p] = b;
		if (p == 2)
			break;
		/* the planes' values back in f32 (bf16 -> f32 is a shift), and the residuals */
		__m512 h0 = _mm512_castsi512_ps(
			_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(b)), 16));
		__m512 h1 = _mm512_castsi512_ps(
			_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(b, 1)), 16));
		x0 = _mm512_maskz_sub_ps(f0, x0, h0);
		x1 = _mm512_maskz_sub_ps(f1, x1, h1);
	}
}

/* 16 tokens per block (zero past n_tok); per 32 inputs, each plane's 16 token rows of 16
 * pairs are stored in place and transposed there to 16 pairs of 16 token lanes, the second
 * operand's rows. */
TGT_AMX_BF16 static void prepare_bf16x3_amx(uint32_t *Xv, const float *X, size_t n_tok,
					      size_t n_in)
{
	const size_t n_pairs = n_in / 2;
	for (size_t b = 0; b < (n_tok + 15) / 16; b++) {
		size_t nt = n_tok - 16 * b < 16 ? n_tok - 16 * b : 16;
		uint32_t *xv = Xv + 3 * b * n_pairs * 16;
		for (size_t k = 0; k < n_in; k += 32) {
			uint32_t *blk[3] = {xv + k / 2 * 16, xv + (n_pairs + k / 2) * 16,
					    xv + (2 * n_pairs + k / 2) * 16};
			for (size_t j = 0; j < 16; j++) {
				__m512i v[3] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
						_mm512_setzero_si512()};
				if (j < nt) {
					const float *x = X + (16 * b + j) * n_in + k;
					bf16x3_split32(_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16), v);
				}
				for (int p = 0; p < 3; p++)
					_mm512_storeu_si512(blk[p] + 16 * j, v[p]);
			}
			for (int p = 0; p < 3; p++)
				cpu_avx512_transpose16x16(blk[p]);
		}
	}
}

/* Wd (32 rows of n_in / 2 uint32) = rows o .. o + nr - 1 as bf16 pairs (q - z) in element
 * order, zero rows past nr; sT[g][r] = the rows' group scales (0 past nr). Per 32 weights:
 * a widening load of 16 bytes, a shift and two vpermd from the group's tables (vpermd reads
 * the low 4 bits of each index, the low nibble) and an or. */
TGT_AMX_BF16 static void i4_tiles_panel(uint32_t *Wd, float *sT, const uint8_t *W,
					const float *scales, const uint8_t *zeros, size_t group,
					size_t n_in, size_t o, size_t nr)
{
	const size_t n_pairs = n_in / 2, ng = n_in / group;
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
	for (size_t r = 0; r < nr; r++) {
		const uint8_t *w = W + (o + r) * n_pairs, *z = zeros + (o + r) * ng;
		uint32_t *d = Wd + r * n_pairs;
		for (size_t g = 0; g < ng; g++) {
			/* q - z as f32 then bf16 by truncation: exact, integers of 4 bits */
			__m512i f = _mm512_castps_si512(
				_mm512_cvtepi32_ps(_mm512_sub_epi32(iota, _mm512_set1_epi32(z[g]))));
			__m512i tlo = _mm512_srli_epi32(f, 16), thi = _mm512_and_si512(f, high);
			for (size_t l = g * group / 2; l < (g + 1) * group / 2; l += 16) {
				__m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + l)));
				__m512i lo = _mm512_permutexvar_epi32(v, tlo);
				__m512i hi = _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 4), thi);
				_mm512_storeu_si512(d + l, _mm512_or_si512(lo, hi));
			}
			sT[g * I4_NR + r] = scales[(o + r) * ng + g];
		}
	}
	for (size_t r = nr; r < I4_NR; r++) {
		memset(Wd + r * n_pairs, 0, n_pairs * sizeof *Wd);
		for (size_t g = 0; g < ng; g++)
			sT[g * I4_NR + r] = 0.0f;
	}
}

/* One k step (16 pairs): A0, A1 the panel's two 16-row weight tiles (rows LDA bytes apart),
 * XL the first 16 tokens' planes at this step (the next 16's 24 n_in lanes on); 16 tokens
 * (NH = 1) into tiles C0, C1, or 32 (NH = 2) into tmm0-3, added to what they hold; planes hi,
 * mid, lo at 8 n_in lanes apart; B tiles alternate 6, 7. */
#define QTILES_STEP(A0, A1, LDA, XL, C0, C1, NH)                                              \
	do {                                                                                 \
		const uint32_t *b0 = (XL), *b1 = (XL) + 24 * n_in;                           \
		_tile_loadd(4, (A0), (LDA));                                                 \
		_tile_loadd(5, (A1), (LDA));                                                 \
		_tile_loadd(6, b0, 64);                                                      \
		if ((NH) == 2) {                                                             \
			_tile_loadd(7, b1, 64);                                              \
			_tile_dpbf16ps(0, 4, 6);                                             \
			_tile_dpbf16ps(1, 5, 6);                                             \
			_tile_loadd(6, b0 + 8 * n_in, 64);                                   \
			_tile_dpbf16ps(2, 4, 7);                                             \
			_tile_dpbf16ps(3, 5, 7);                                             \
			_tile_loadd(7, b1 + 8 * n_in, 64);                                   \
			_tile_dpbf16ps(0, 4, 6);                                             \
			_tile_dpbf16ps(1, 5, 6);                                             \
			_tile_loadd(6, b0 + 16 * n_in, 64);                                  \
			_tile_dpbf16ps(2, 4, 7);                                             \
			_tile_dpbf16ps(3, 5, 7);                                             \
			_tile_loadd(7, b1 + 16 * n_in, 64);                                  \
			_tile_dpbf16ps(0, 4, 6);                                             \
			_tile_dpbf16ps(1, 5, 6);                                             \
			_tile_dpbf16ps(2, 4, 7);                                             \
			_tile_dpbf16ps(3, 5, 7);                                             \
		} else {                                                                     \
			_tile_loadd(7, b0 + 8 * n_in, 64);                                   \
			_tile_dpbf16ps(C0, 4, 6);                                            \
			_tile_dpbf16ps(C1, 5, 6);                                            \
			_tile_loadd(6, b0 + 16 * n_in, 64);                                  \
			_tile_dpbf16ps(C0, 4, 7);                                            \
			_tile_dpbf16ps(C1, 5, 7);                                            \
			_tile_dpbf16ps(C0, 4, 6);                                            \
			_tile_dpbf16ps(C1, 5, 6);                                            \
		}                                                                            \
	} while (0)

/* The products of pairs [l0, l1) for one panel (INT4: a group; FP8: a chunk): QTILES_STEP
 * over Wd, the panel's decoded rows (n_pairs lanes, ld bytes apart), and xv's planes. */
#define QTILES_PRODUCTS(C0, C1, NH)                                                           \
	do {                                                                                 \
		for (size_t l = l0; l < l1; l += 16)                                         \
			QTILES_STEP(Wd + l, Wd + 16 * n_pairs + l, ld, xv + 16 * l, C0, C1, NH);  \
	} while (0)

/* QTILES_PRODUCTS from zeroed tiles, stored to cb: one INT4 group's partial sums, or one FP8
 * panel's whole sums. */
#define QTILES_SUMS(C0, C1, NH)                                                             \
	do {                                                                                 \
		_tile_zero(C0);                                                              \
		_tile_zero(C1);                                                              \
		if ((NH) == 2) {                                                             \
			_tile_zero(2);                                                       \
			_tile_zero(3);                                                       \
		}                                                                            \
		QTILES_PRODUCTS(C0, C1, NH);                                                 \
		_tile_stored(C0, cb[0], 64);                                                 \
		_tile_stored(C1, cb[1], 64);                                                 \
		if ((NH) == 2) {                                                             \
			_tile_stored(2, cb[2], 64);                                          \
			_tile_stored(3, cb[3], 64);                                          \
		}                                                                            \
	} while (0)

/* acc[2 h + j][16 c + t] += s[16 j + c] * (group g's partial of row 16 j + c, token 16 h + t)
 * for one panel (Wd its decoded rows, s its scales of group g) and NH token halves from xv.
 * With 16 tokens, odd groups take tmm2, 3: the tiles are not renamed, and alternating lets
 * one group's products start while the last group's tiles are being stored. */
static inline __attribute__((always_inline)) TGT_AMX_BF16 void
i4_tiles_group(float acc[4][256], float cb[4][256], const uint32_t *Wd, const float *s,
	       const uint32_t *xv, size_t g, size_t group, size_t n_in, const int NH)
{
	const size_t n_pairs = n_in / 2, ld = n_in * 2, l0 = g * group / 2, l1 = l0 + group / 2;
	if (NH == 2)
		QTILES_SUMS(0, 1, 2);
	else if (g % 2 == 0)
		QTILES_SUMS(0, 1, 1);
	else
		QTILES_SUMS(2, 3, 1);
	/* row c of a partial tile is 16 tokens: one scale per row */
	for (int i = 0; i < 2 * NH; i++)
#pragma GCC unroll 16
		for (int c = 0; c < 16; c++) {
			float *a = acc[i] + 16 * c;
			_mm512_store_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(s[16 * (i & 1) + c]),
							   _mm512_load_ps(cb[i] + 16 * c),
							   _mm512_load_ps(a)));
		}
}

/* Y[t0 + 16 h + t][o + 16 j + c] = acc[2 h + j][16 c + t] for the nt tokens and nr rows
 * (transposed in place: acc is by row, Y by token), times sw[o + 16 j + c] when sw is not
 * NULL (FP8's row scales). */
TGT static void qtiles_store(float *Y, size_t n_out, float acc[4][256], const float *sw,
			     size_t t0, size_t nt, size_t o, size_t nr)
{
	for (size_t h = 0; 16 * h < nt; h++)
		for (size_t j = 0; j < 2 && 16 * j < nr; j++) {
			float *a = acc[2 * h + j];
			cpu_avx512_transpose16x16(a);
			__mmask16 m = mask16(nr - 16 * j);
			size_t toks = nt - 16 * h < 16 ? nt - 16 * h : 16;
			__m512 s = sw ? _mm512_maskz_loadu_ps(m, sw + o + 16 * j) : _mm512_set1_ps(1.0f);
			for (size_t t = 0; t < toks; t++)
				_mm512_mask_storeu_ps(Y + (t0 + 16 * h + t) * n_out + o + 16 * j, m,
						      _mm512_mul_ps(s, _mm512_load_ps(a + 16 * t)));
		}
}

/* Up to 16 tokens (one token half: batched decode), one panel of rows o .. o + nr - 1: the
 * same tiles, products, order and epilogue as the blocked path below (so the same bits), but
 * each k step's 32 x 32 weights are decoded into a 2 KiB L1 buffer just before their tile
 * loads, instead of a whole block decoded to a scratch that outgrows L1 (2 panels of 576
 * inputs are 73 KiB) and read back from L2. One thread, 60 distinct 576 x 576 INT4 matrices,
 * 16 tokens: the decode was 63 of 174 ps a weight (174 -> 111 with it skipped); fused, 175-193
 * -> 122-135 ps a weight at 12 and 16 tokens. The next panel's packed rows are prefetched a
 * few lines per k step into L2 (two or three panels ahead, or into L1, measured the same). */
static void i4_tiles_fused16(float *Y, size_t n_out, const uint32_t *xv, const uint8_t *W,
			     const float *scales, const uint8_t *zeros, size_t group,
			     size_t n_in, size_t nt, size_t o, size_t nr, size_t o1);

/* Measured: see i4_tiles_min_tok in the amx set; one thread, 60 distinct 576 x 576 matrices,
 * group 64: 1 token 165 ps a weight (old 41), 16 tokens 170 (old 335), 32 tokens 245 (old
 * 650), 512 tokens 3.1 ns (old 6.6). At 512 tokens the products run at ~10 ns a TDPBF16PS
 * against 7.3 ns in a loop of nothing else (2.2 TFLOP/s a core), and the planes take ~9%.
 * Rows [o0, o1) in blocks of up to I4_BLOCK panels, decoded once per call into the scratch;
 * for every 32-token tile, group by group, every panel of the block: the tile's planes of one
 * group (6 G x 32 bytes) are read from L1 by the block's later panels. Blocks of 2 panels
 * measured best (one thread, 512 tokens as above): 1 panel 8% slower, 4 2%, 8 3%. */
TGT_AMX_BF16 static void matmul_i4_tiles_amx(float *Y, const uint32_t *Xv, const uint8_t *W,
					     const float *scales, const uint8_t *zeros,
					     size_t group, size_t n_tok, size_t n_in, size_t n_out,
					     size_t o0, size_t o1, void *scratch)
{
	const size_t n_pairs = n_in / 2, ng = n_in / group;
	/* per panel: decoded rows, scales (ng x 32), accumulators (4 x 256) */
	uint32_t *Wd = scratch;
	float *sT = (float *)(Wd + I4_BLOCK * I4_NR * n_pairs);
	float(*acc)[4][256] = (float(*)[4][256])(sT + I4_BLOCK * I4_NR * (n_in / 32));
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	_Alignas(64) float cb[4][256];
	if (n_tok <= 16) {
		for (size_t o = o0; o < o1; o += I4_NR)
			i4_tiles_fused16(Y, n_out, Xv, W, scales, zeros, group, n_in, n_tok, o,
					 o1 - o < I4_NR ? o1 - o : I4_NR, o1);
		_tile_release();
		return;
	}
	const size_t block = I4_BLOCK * I4_NR;
	for (size_t ob = o0; ob < o1; ob += block) {
		size_t oe = o1 - ob < block ? o1 : ob + block;
		size_t np = (oe - ob + I4_NR - 1) / I4_NR;
		for (size_t p = 0; p < np; p++) {
			size_t o = ob + p * I4_NR;
			i4_tiles_panel(Wd + p * I4_NR * n_pairs, sT + p * I4_NR * ng, W, scales, zeros,
				       group, n_in, o, oe - o < I4_NR ? oe - o : I4_NR);
		}
		/* the next block's packed rows (contiguous), fetched during the first tile */
		const uint8_t *pw = W + oe * n_pairs;
		size_t pbytes = (o1 - oe < block ? o1 - oe : block) * n_pairs;
		size_t pf_step = (pbytes / ng + 63) / 64 * 64;
		for (size_t t = 0; t < n_tok; t += I4_TM) {
			size_t nt = n_tok - t < I4_TM ? n_tok - t : I4_TM;
			const uint32_t *xv = Xv + t / 16 * 24 * n_in;
			memset(acc, 0, np * sizeof *acc);
			for (size_t g = 0; g < ng; g++) {
				if (t == 0)
					for (size_t b = g * pf_step; b < (g + 1) * pf_step && b < pbytes;
					     b += 64)
						_mm_prefetch((const char *)(pw + b), _MM_HINT_T1);
				for (size_t p = 0; p < np; p++) {
					const uint32_t *wd = Wd + p * I4_NR * n_pairs;
					const float *s = sT + (p * ng + g) * I4_NR;
					if (nt > 16)
						i4_tiles_group(acc[p], cb, wd, s, xv, g, group, n_in, 2);
					else
						i4_tiles_group(acc[p], cb, wd, s, xv, g, group, n_in, 1);
				}
			}
			for (size_t p = 0; p < np; p++) {
				size_t o = ob + p * I4_NR;
				qtiles_store(Y, n_out, acc[p], NULL, t, nt, o,
					     oe - o < I4_NR ? oe - o : I4_NR);
			}
		}
	}
	/* give the tile state back: a thread holding it makes every context switch save 8 KiB */
	_tile_release();
}

/* The fused paths' pieces. One token half: tiles 0, 1, or 2, 3 when odd (alternating lets
 * one panel's or group's products start while the last one's tiles are being stored). */
static inline __attribute__((always_inline)) TGT_AMX_BF16 void qtiles_half_zero(int odd)
{
	if (odd) {
		_tile_zero(2);
		_tile_zero(3);
	} else {
		_tile_zero(0);
		_tile_zero(1);
	}
}

/* One k step of 16 pairs from wa (2 A tiles, rows 64 bytes apart) and the planes at xl. */
static inline __attribute__((always_inline)) TGT_AMX_BF16 void
qtiles_half_step(const uint32_t *wa, const uint32_t *xl, size_t n_in, int odd)
{
	if (odd)
		QTILES_STEP(wa, wa + 16 * 16, 64, xl, 2, 3, 1);
	else
		QTILES_STEP(wa, wa + 16 * 16, 64, xl, 0, 1, 1);
}

static inline __attribute__((always_inline)) TGT_AMX_BF16 void
qtiles_half_store(float cb[4][256], int odd)
{
	if (odd) {
		_tile_stored(2, cb[0], 64);
		_tile_stored(3, cb[1], 64);
	} else {
		_tile_stored(0, cb[0], 64);
		_tile_stored(1, cb[1], 64);
	}
}

/* The next panel's packed rows (row_bytes each, contiguous from row o + 32 below o1), handed
 * out as L2 prefetches a few lines per k step over the n_steps steps of this panel. */
typedef struct qtiles_pf {
	const uint8_t *p;
	size_t bytes, per, next;
} qtiles_pf;

static qtiles_pf qtiles_pf_init(const uint8_t *W, size_t row_bytes, size_t o, size_t o1,
				size_t n_steps)
{
	size_t rows = o + I4_NR < o1 ? (o1 - o - I4_NR < I4_NR ? o1 - o - I4_NR : I4_NR) : 0;
	qtiles_pf f = {rows ? W + (o + I4_NR) * row_bytes : W, rows * row_bytes, 0, 0};
	f.per = (f.bytes / 64 + n_steps - 1) / n_steps;
	return f;
}

static inline __attribute__((always_inline)) void qtiles_pf_step(qtiles_pf *f)
{
	for (size_t e = f->next + f->per; f->next < e && 64 * f->next < f->bytes; f->next++)
		_mm_prefetch((const char *)(f->p + 64 * f->next), _MM_HINT_T1);
}

TGT_AMX_BF16 static void i4_tiles_fused16(float *Y, size_t n_out, const uint32_t *xv,
					  const uint8_t *W, const float *scales, const uint8_t *zeros,
					  size_t group, size_t n_in, size_t nt, size_t o, size_t nr,
					  size_t o1)
{
	const size_t n_pairs = n_in / 2, ng = n_in / group;
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
	_Alignas(64) uint32_t wa[I4_NR * 16];      /* a k step's decoded rows: 2 A tiles */
	_Alignas(64) uint32_t tab[I4_NR][2][16];  /* the group's tables, per row */
	_Alignas(64) float acc[4][256], cb[4][256], s[I4_NR];
	memset(acc, 0, sizeof acc);
	memset(wa, 0, sizeof wa); /* rows past nr stay zero */
	qtiles_pf pf = qtiles_pf_init(W, n_pairs, o, o1, n_in / 32);
	for (size_t g = 0; g < ng; g++) {
		for (size_t r = 0; r < nr; r++) {
			__m512i f = _mm512_castps_si512(_mm512_cvtepi32_ps(
				_mm512_sub_epi32(iota, _mm512_set1_epi32(zeros[(o + r) * ng + g]))));
			_mm512_store_si512(tab[r][0], _mm512_srli_epi32(f, 16));
			_mm512_store_si512(tab[r][1], _mm512_and_si512(f, high));
			s[r] = scales[(o + r) * ng + g];
		}
		for (size_t r = nr; r < I4_NR; r++)
			s[r] = 0.0f;
		const size_t l0 = g * group / 2, l1 = l0 + group / 2;
		const int odd = g % 2;
		qtiles_half_zero(odd);
		for (size_t l = l0; l < l1; l += 16) {
			qtiles_pf_step(&pf);
			for (size_t r = 0; r < nr; r++) {
				__m512i v = _mm512_cvtepu8_epi32(
					_mm_loadu_si128((const __m128i *)(W + (o + r) * n_pairs + l)));
				__m512i lo = _mm512_permutexvar_epi32(v, _mm512_load_si512(tab[r][0]));
				__m512i hi = _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 4),
								      _mm512_load_si512(tab[r][1]));
				_mm512_store_si512(wa + 16 * r, _mm512_or_si512(lo, hi));
			}
			qtiles_half_step(wa, xv + 16 * l, n_in, odd);
		}
		qtiles_half_store(cb, odd);
		/* i4_tiles_group's epilogue: row c of a partial tile is 16 tokens, one scale */
		for (int i = 0; i < 2; i++)
#pragma GCC unroll 16
			for (int c = 0; c < 16; c++) {
				float *a = acc[i] + 16 * c;
				_mm512_store_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(s[16 * i + c]),
								   _mm512_load_ps(cb[i] + 16 * c),
								   _mm512_load_ps(a)));
			}
	}
	qtiles_store(Y, n_out, acc, NULL, 0, nt, o, nr);
}

/* ---- FP8 W8A16 on AMX-BF16 tiles (the "amx" set) ------------------------------------------ */
/* The INT4 tile scheme with E4M3 weights (kernels_quant.h has the arithmetic): every E4M3 value
 * is exact in bf16, so with the bf16x3 planes every product is exact. One scale per row and no
 * groups: the tiles accumulate their rows' whole sums over n_in, leave the tiles once, and the
 * row scale multiplies each finished sum, as the other FP8 paths do. Panels, token tiles, tile
 * registers, the row-range argument and the prefetch of the next block are INT4's. */

/* 32 E4M3 codes -> their 32 values as bf16, exactly, in element order (16 lanes of pairs).
 * A normal code S.EEEE.MMM is bf16 S.(EEEE + 120).MMM0000 (biases 7 and 127): the magnitude
 * shifted left by 4 plus 120 << 7; the 7 subnormal magnitudes M 2^-9 (EEEE = 0) come from a
 * table (vpermw on the lanes below 8). NaN codes do not occur in weights. */
INLINE __m512i e4m3x32_bf16(__m256i b)
{
	/* bf16 of M 2^-9 for M = 0..7 (2^-9 is 0x3b00); the other 24 entries unused */
	static const uint16_t sub[32] = {0x0000, 0x3b00, 0x3b80, 0x3bc0,
					 0x3c00, 0x3c20, 0x3c40, 0x3c60};
	__m512i c = _mm512_cvtepu8_epi16(b);
	__m512i mag = _mm512_and_si512(c, _mm512_set1_epi16(0x7f));
	__m512i v = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(0x3c00));
	v = _mm512_mask_permutexvar_epi16(v, _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8)),
					  mag, _mm512_loadu_si512(sub));
	__m512i sign = _mm512_slli_epi16(_mm512_and_si512(c, _mm512_set1_epi16(0x80)), 8);
	return _mm512_or_si512(v, sign);
}

TGT static void decode_fp8_bf16_avx512(uint16_t *out, const uint8_t *W, size_t n)
{
	for (size_t k = 0; k < n; k += 32) {
		__mmask32 m = (__mmask32)mask64(n - k < 32 ? n - k : 32);
		_mm512_mask_storeu_epi16(out + k, m, e4m3x32_bf16(_mm256_maskz_loadu_epi8(m, W + k)));
	}
}

/* Wd (32 rows of n_in / 2 uint32) = rows o .. o + nr - 1 as bf16 pairs in element order
 * (the tiles' first operand as it is), zero rows past nr. */
TGT static void fp8_tiles_panel(uint32_t *Wd, const uint8_t *W, size_t n_in, size_t o, size_t nr)
{
	const size_t n_pairs = n_in / 2;
	for (size_t r = 0; r < nr; r++) {
		const uint8_t *w = W + (o + r) * n_in;
		uint32_t *d = Wd + r * n_pairs;
		for (size_t k = 0; k < n_in; k += 32)
			_mm512_storeu_si512(d + k / 2,
					    e4m3x32_bf16(_mm256_loadu_si256((const __m256i *)(w + k))));
	}
	memset(Wd + nr * n_pairs, 0, (I4_NR - nr) * n_pairs * sizeof *Wd);
}

/* One panel's sums for NH token halves from xv into cb (tile layout: cb[2 h + j][16 c + t] for
 * row 16 j + c, token 16 h + t). With 16 tokens, odd panels take tmm2, 3: the tiles are not
 * renamed, and alternating lets one panel's products start while the last panel's tiles are
 * being stored. */
static inline __attribute__((always_inline)) TGT_AMX_BF16 void
fp8_tiles_sums(float cb[4][256], const uint32_t *Wd, const uint32_t *xv, size_t n_in, bool odd,
	       const int NH)
{
	const size_t n_pairs = n_in / 2, ld = n_in * 2, l0 = 0, l1 = n_pairs;
	if (NH == 2)
		QTILES_SUMS(0, 1, 2);
	else if (!odd)
		QTILES_SUMS(0, 1, 1);
	else
		QTILES_SUMS(2, 3, 1);
}

/* Up to 16 tokens, one panel of rows o .. o + nr - 1: i4_tiles_fused16's scheme for FP8 (each
 * k step's 32 x 32 weights decoded into an L1 buffer just before their tile loads; the same
 * products in the same order as the blocked path below, so the same bits), the row scales
 * applied by qtiles_store. Paired A/B in the amx set's comment. */
TGT_AMX_BF16 static void fp8_tiles_fused16(float *Y, size_t n_out, const uint32_t *xv,
					   const uint8_t *W, const float *sw, size_t n_in, size_t nt,
					   size_t o, size_t nr, size_t o1, int odd)
{
	const size_t n_pairs = n_in / 2;
	_Alignas(64) uint32_t wa[I4_NR * 16]; /* a k step's decoded rows: 2 A tiles */
	_Alignas(64) float cb[4][256];
	memset(wa, 0, sizeof wa);             /* rows past nr stay zero */
	qtiles_pf pf = qtiles_pf_init(W, n_in, o, o1, n_in / 32);
	qtiles_half_zero(odd);
	for (size_t l = 0; l < n_pairs; l += 16) {
		qtiles_pf_step(&pf);
		for (size_t r = 0; r < nr; r++)
			_mm512_store_si512(wa + 16 * r,
					   e4m3x32_bf16(_mm256_loadu_si256(
						   (const __m256i *)(W + (o + r) * n_in + 2 * l))));
		qtiles_half_step(wa, xv + 16 * l, n_in, odd);
	}
	qtiles_half_store(cb, odd);
	qtiles_store(Y, n_out, cb, sw, 0, nt, o, nr);
}

/* Rows [o0, o1) in blocks of up to I4_BLOCK panels decoded once per call into the scratch
 * (matmul_i4_tiles_amx's rows without its scales); for every 32-token tile, every panel of the
 * block, whole sums, scaled into Y. Measured (the amx set's paired A/B below, 16, 32 and 512
 * tokens): sums left in memory between chunks of 64, 128 or 256 inputs, so that a chunk of the
 * token tile's planes stays in L1 for the block's panels (INT4's order), were no faster than
 * whole sums (ratios 0.98-1.11, within the noise of the shared machine). */
TGT_AMX_BF16 static void matmul_fp8_tiles_amx(float *Y, const uint32_t *Xv, const uint8_t *W,
					      const float *sw, size_t n_tok, size_t n_in,
					      size_t n_out, size_t o0, size_t o1, void *scratch)
{
	const size_t n_pairs = n_in / 2;
	uint32_t *Wd = scratch; /* I4_BLOCK panels of 32 rows x n_in bf16 */
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_tile_loadconfig(&cfg);
	if (n_tok <= 16) {
		for (size_t o = o0; o < o1; o += I4_NR)
			fp8_tiles_fused16(Y, n_out, Xv, W, sw, n_in, n_tok, o,
					  o1 - o < I4_NR ? o1 - o : I4_NR, o1, (o - o0) / I4_NR % 2);
		_tile_release();
		return;
	}
	_Alignas(64) float cb[4][256];
	const size_t block = I4_BLOCK * I4_NR;
	for (size_t ob = o0; ob < o1; ob += block) {
		size_t oe = o1 - ob < block ? o1 : ob + block;
		size_t np = (oe - ob + I4_NR - 1) / I4_NR;
		for (size_t p = 0; p < np; p++) {
			size_t o = ob + p * I4_NR;
			fp8_tiles_panel(Wd + p * I4_NR * n_pairs, W, n_in, o,
					oe - o < I4_NR ? oe - o : I4_NR);
		}
		/* the next block's rows (contiguous), fetched during the first tile */
		const uint8_t *pw = W + oe * n_in;
		size_t pbytes = (o1 - oe < block ? o1 - oe : block) * n_in;
		size_t pf_step = (pbytes / np + 63) / 64 * 64;
		for (size_t t = 0; t < n_tok; t += I4_TM) {
			size_t nt = n_tok - t < I4_TM ? n_tok - t : I4_TM;
			const uint32_t *xv = Xv + t / 16 * 24 * n_in;
			for (size_t p = 0; p < np; p++) {
				size_t o = ob + p * I4_NR;
				if (t == 0)
					for (size_t b = p * pf_step; b < (p + 1) * pf_step && b < pbytes;
					     b += 64)
						_mm_prefetch((const char *)(pw + b), _MM_HINT_T1);
				if (nt > 16)
					fp8_tiles_sums(cb, Wd + p * I4_NR * n_pairs, xv, n_in, false, 2);
				else
					fp8_tiles_sums(cb, Wd + p * I4_NR * n_pairs, xv, n_in, p % 2, 1);
				qtiles_store(Y, n_out, cb, sw, t, nt, o, oe - o < I4_NR ? oe - o : I4_NR);
			}
		}
	}
	/* give the tile state back: a thread holding it makes every context switch save 8 KiB */
	_tile_release();
}

/* ---- weight decoding for the prefill path (bit-identical to the generic one) ------------- */

TGT static void decode_fp8_avx512(float *out, const uint8_t *W, size_t n)
{
	const __m512 k256 = _mm512_set1_ps(256.0f);
	for (size_t k = 0; k < n; k += 32) {
		size_t left = n - k;
		__m512 lo, hi;
		e4m3x32(_mm256_maskz_loadu_epi8((__mmask32)mask64(left < 32 ? left : 32), W + k),
			&lo, &hi);
		_mm512_mask_storeu_ps(out + k, mask16(left), _mm512_mul_ps(lo, k256));
		if (left > 16)
			_mm512_mask_storeu_ps(out + k + 16, mask16(left - 16), _mm512_mul_ps(hi, k256));
	}
}

TGT static void decode_i8_avx512(float *out, const uint8_t *q, size_t n)
{
	for (size_t k = 0; k < n; k += 16) {
		__mmask16 m = mask16(n - k);
		__m128i b = _mm_maskz_loadu_epi8(m, q + k);
		_mm512_mask_storeu_ps(out + k, m, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)));
	}
}

/* 32 elements (16 bytes) at a time, within one group: byte j holds elements 2j (low nibble)
 * and 2j + 1; both nibbles index the group's table lut[q] = s (q - z), and the two results
 * are interleaved back into element order. */
TGT static void decode_i4_row_avx512(float *out, const uint8_t *W, const float *s,
				     const uint8_t *z, size_t group, size_t n_in)
{
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m512i il0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
	const __m512i il1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
					      15, 31);
	const __m512i nib = _mm512_set1_epi32(15);
	for (size_t g = 0; g < n_in / group; g++) {
		__m512i qz = _mm512_sub_epi32(iota, _mm512_set1_epi32(z[g]));
		__m512 lut = _mm512_mul_ps(_mm512_cvtepi32_ps(qz), _mm512_set1_ps(s[g]));
		for (size_t k = g * group; k < (g + 1) * group; k += 32) {
			__m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(W + k / 2)));
			__m512 lo = _mm512_permutexvar_ps(_mm512_and_si512(v, nib), lut);
			__m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut);
			_mm512_storeu_ps(out + k, _mm512_permutex2var_ps(lo, il0, hi));
			_mm512_storeu_ps(out + k + 16, _mm512_permutex2var_ps(lo, il1, hi));
		}
	}
}

/* ---- activation quantizers (bit-identical to the generic ones) --------------------------- */

/* max |x| over a row; NaN lanes are skipped as the generic "a > max ? a : max" does (vmaxps
 * returns its second operand when either is NaN). */
INLINE float absmax_row(const float *x, size_t n)
{
	__m512 mx = _mm512_setzero_ps();
	for (size_t k = 0; k < n; k += 16) {
		__m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask16(n - k), x + k));
		mx = _mm512_max_ps(a, mx);
	}
	return _mm512_reduce_max_ps(mx);
}

/* decode(e4m3 code of v), as num_e4m3_to_f32(num_f32_to_e4m3(v)) lane by lane: the same
 * integer rounding for normals, |v| * 2^9 rounded to even for subnormals (exact product). */
INLINE __m512 e4m3_round16(__m512 v)
{
	__m512i u = _mm512_castps_si512(v);
	__m512i sign = _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u));
	__m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
	__mmask16 nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000));
	__mmask16 sat = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x43e00000)); /* 448 */
	__mmask16 nrm = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x3c800000)); /* 2^-6 */
	/* normal: round off 20 mantissa bits to even (bit 20 of a is the kept lsb) */
	__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
	__m512i rn = _mm512_add_epi32(a, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7ffff)));
	rn = _mm512_andnot_si512(_mm512_set1_epi32(0xfffff), rn);
	/* subnormal: q = round_even(|v| * 512) in 0..8, value q / 512 */
	__m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(512.0f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512i r = _mm512_castps_si512(_mm512_mul_ps(q, _mm512_set1_ps(1.0f / 512.0f)));
	r = _mm512_mask_mov_epi32(r, nrm, rn);
	r = _mm512_mask_mov_epi32(r, sat, _mm512_set1_epi32(0x43e00000));
	r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc00000));
	return _mm512_castsi512_ps(_mm512_or_si512(r, sign));
}

TGT static void quantize_e4m3_act_avx512(float *Xd, float *xs, const float *X, size_t n_tok,
					 size_t n_in)
{
	for (size_t t = 0; t < n_tok; t++) {
		const float *x = X + t * n_in;
		float *xd = Xd + t * n_in;
		xs[t] = num_e4m3_scale(absmax_row(x, n_in));
		__m512 inv = _mm512_set1_ps(num_inv_scale(xs[t]));
		for (size_t k = 0; k < n_in; k += 16) {
			__mmask16 m = mask16(n_in - k);
			__m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), inv);
			_mm512_mask_storeu_ps(xd + k, m, e4m3_round16(v));
		}
	}
}

TGT static void quantize_i8_act_avx512(int8_t *Xq, float *xs, int32_t *xsum, const float *X,
				       size_t n_tok, size_t n_in)
{
	const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
	for (size_t t = 0; t < n_tok; t++) {
		const float *x = X + t * n_in;
		xs[t] = num_i8_scale(absmax_row(x, n_in));
		__m512 inv = _mm512_set1_ps(num_inv_scale(xs[t]));
		__m512i sum = _mm512_setzero_si512();
		for (size_t k = 0; k < n_in; k += 16) {
			__mmask16 m = mask16(n_in - k);
			__m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), inv);
			__mmask16 ok = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q); /* NaN -> 0 */
			v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
			__m512i q = _mm512_maskz_cvt_roundps_epi32(
				ok, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			sum = _mm512_add_epi32(sum, q);
			_mm512_mask_cvtepi32_storeu_epi8(Xq + t * n_in + k, m, q);
		}
		xsum[t] = _mm512_reduce_add_epi32(sum);
	}
}

/* Every op but the INT8 matmul, shared by the two sets below. */
#define AVX512_QSET_COMMON                                                                    \
	.matmul_fp8 = matmul_fp8_avx512, .matmul_i4 = matmul_i4_avx512,                       \
	.prepare_i4 = prepare_i4_avx512, .decode_fp8 = decode_fp8_avx512,                     \
	.decode_i8 = decode_i8_avx512, .decode_i4_row = decode_i4_row_avx512,                 \
	.quantize_e4m3_act = quantize_e4m3_act_avx512,                                        \
	.quantize_i8_act = quantize_i8_act_avx512

const cpu_qkernel_set cpu_qkernels_avx512 = {
	.name = "avx512",
	.isa = CPU_ISA_AVX512,
	.matmul_i8 = matmul_i8_avx512,
	AVX512_QSET_COMMON,
};

/* The same set with INT8 W8A8 of CPU_QI8_GEMM_MIN_TOK tokens and more on AMX-INT8 tiles, and
 * INT4 of i4_tiles_min_tok tokens and more on AMX-BF16 tiles (matmul_i4_tiles_amx). That
 * threshold, paired A/B against today's paths (throwaway bench: 2 threads, one SmolLM2-135M
 * forward's INT4 matmuls, 30 layers of distinct weights, 53 MB, median ratio of adjacent
 * pairs, > 1: tiles faster): group 64: 4 tokens 0.41x, 6 0.66x, 8 0.75x, 10 0.96x,
 * 12 1.03x, 16 1.48x, 24 1.36x, 32 1.79x, 64 1.75x, 512 1.54x; group 32: 8 0.74x, 12 1.10x,
 * 16 1.39x, 32 1.69x, 512 1.34x; group 128 (only the 1536-input matrices divide): 8 0.81x,
 * 12 1.17x, 16 1.48x, 32 2.2x, 512 1.65x. Below 12 tokens the per-call decode of every
 * weight to bf16 (~60 ps a weight a thread) and three tile products per weight per 16
 * tokens cost more than the FMA tiles' products. With up to 16 tokens decoded per k step
 * into L1 (i4_tiles_fused16), the same A/B, group 64: 4 tokens 0.51x, 6 0.83x, 8 0.85x,
 * 10 1.09x, 12 1.20x, 16 1.55x (12.7 ms a forward against 17.9 with the whole-block decode);
 * so from 10.
 * FP8 W8A16 from fp8_tiles_min_tok tokens on (matmul_fp8_tiles_amx), the same kind of paired
 * A/B (2 threads, one forward's FP8 matmuls: 576x576, 192x576 twice, 576x576, 1536x576 twice,
 * 576x1536, 30 layers of distinct weights, 106 MB; old: the FMA tiles below 32 tokens, the
 * f32 decode + GEMM from 32): 4 tokens 0.50x, 8 0.81x, 9 1.02x, 10 1.08x, 11 1.14x,
 * 12 1.13-1.25x, 16 1.62x, 24 1.68x, 32 1.93x, 64 2.00x, 512 1.52x. The tile path's time is
 * flat up to 16 tokens (one block of planes: the per-call bf16 decode of every weight and
 * three products per weight per 16 tokens), the FMA tiles' grows with the tokens. With up to
 * 16 tokens decoded per k step into L1 (fp8_tiles_fused16), the same A/B: 6 tokens 0.95x,
 * 8 1.12x, 10 1.39x, 16 2.08x (14.9 ms a forward against 20.2 with the whole-block decode);
 * so from 8. */
const cpu_qkernel_set cpu_qkernels_amx = {
	.name = "amx",
	.isa = CPU_ISA_AMX,
	.matmul_i8 = matmul_i8_amx,
	.i4_tiles_min_tok = 10,
	.matmul_i4_tiles = matmul_i4_tiles_amx,
	.prepare_bf16x3 = prepare_bf16x3_amx,
	.fp8_tiles_min_tok = 8,
	.matmul_fp8_tiles = matmul_fp8_tiles_amx,
	.decode_fp8_bf16 = decode_fp8_bf16_avx512,
	AVX512_QSET_COMMON,
};

/* The batch-invariant twins (kernels_quant.h, cpu_qkernels_batch_invariant): the tile
 * kernels for every n_tok. Each (row, token) sum of theirs is its own accumulator, reduced
 * the same way for every token count, so no path switch changes bits; the prefill path's
 * GEMM order would have needed weights transposed at decode. Measured (bench-engine,
 * SmolLM2, default -> twin): decode batch 1 the same code and speed (INT4, two alternating
 * pairs: 172 / 140 -> 176 / 200 tok/s; FP8 134 -> 134), where the prefill path's order with
 * an INT4 kernel transposing its decoded rows in registers reached only ~50 (FP8 through
 * decoded tiles ~40); prefill of 512 tokens INT4 844 -> 478, FP8 777 -> 411 tok/s (against
 * today's defaults, which take the exact AMX tiles from 10 (INT4) and 8 (FP8) tokens: INT4
 * 1391 -> 688, FP8 1513 -> 468). */
const cpu_qkernel_set cpu_qkernels_avx512_bi = {
	.name = "avx512",
	.isa = CPU_ISA_AVX512,
	.batch_invariant = true,
	.tile_min_tok = SIZE_MAX,
	.matmul_i8 = matmul_i8_avx512,
	AVX512_QSET_COMMON,
};

const cpu_qkernel_set cpu_qkernels_amx_bi = {
	.name = "amx",
	.isa = CPU_ISA_AMX,
	.batch_invariant = true,
	.tile_min_tok = SIZE_MAX,
	.matmul_i8 = matmul_i8_amx,
	AVX512_QSET_COMMON,
};
