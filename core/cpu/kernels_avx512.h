/* kernels_avx512.h: the AVX-512 helpers kernels_avx512.c lends the other AVX-512 kernel file
 * (kernels_quant_avx512.c). Internal to core/cpu; call them only where the avx512 set runs. */
#ifndef OPTSTUDIO_KERNELS_AVX512_H
#define OPTSTUDIO_KERNELS_AVX512_H

#include <stddef.h>

/* Packs a panel of nr <= 32 rows (row_lanes 32-bit lanes apart) and n_lanes 32-bit lanes into
 * Wp[l][j] = row j lane l (32 lanes of Wp per l; Wp 64-byte aligned), zero for rows
 * nr <= j < 32; reads only rows < nr. A lane is whatever 32 bits the caller packs: one f32
 * weight, a bf16 pair, four int8: the second-operand layout of the AMX tile products. */
void cpu_avx512_pack_panel32(void *Wp, const void *W, size_t row_lanes, size_t n_lanes,
			     size_t nr);

/* Transposes a 16 x 16 block of 32-bit values in place (rows of 64 bytes, 64-byte aligned). */
void cpu_avx512_transpose16x16(void *block);

#endif
