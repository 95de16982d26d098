/* kernels_avx512.h: the AVX-512 helpers kernels_avx512.c lends the other AVX-512 kernel file
 * (kernels_quant_avx512.c). Internal to core/cpu; call them only where the avx512 set runs. */
#ifndef OPTSTUDIO_KERNELS_AVX512_H
#define OPTSTUDIO_KERNELS_AVX512_H

#include <immintrin.h>
#include <stddef.h>

/* Packs a panel of nr <= 32 rows (row_lanes 32-bit lanes apart) and n_lanes 32-bit lanes into
 * Wp[l][j] = row j lane l (32 lanes of Wp per l; Wp 64-byte aligned), zero for rows
 * nr <= j < 32; reads only rows < nr. A lane is whatever 32 bits the caller packs: one f32
 * weight, a bf16 pair, four int8: the second-operand layout of the AMX tile products. */
void cpu_avx512_pack_panel32(void *Wp, const void *W, size_t row_lanes, size_t n_lanes,
			     size_t nr);

/* Transposes a 16 x 16 block of 32-bit values in place (rows of 64 bytes, 64-byte aligned). */
void cpu_avx512_transpose16x16(void *block);

/* In-register transpose of 16 rows of 16 32-bit lanes: r[i] lane c -> r[c] lane i. Three
 * stages: 32-bit unpacks, 64-bit shuffles within 128-bit blocks, then a 4x4 transpose of the
 * 128-bit blocks. */
static inline __attribute__((always_inline, target("avx512f"))) void
cpu_avx512_transpose16(__m512 r[16])
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

#endif
