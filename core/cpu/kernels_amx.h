/* kernels_amx.h: what the AMX tile code shares across files (kernels_avx512.c: BF16,
 * kernels_quant_avx512.c: INT8, roofline.c: the peak probes). Internal to core/cpu; callers
 * check cpu_amx_enable() first. */
#ifndef OPTSTUDIO_KERNELS_AMX_H
#define OPTSTUDIO_KERNELS_AMX_H

#include <stddef.h>
#include <stdint.h>

/* The LDTILECFG operand (64 bytes). */
typedef struct cpu_amx_tilecfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
} cpu_amx_tilecfg;

/* Palette 1, tiles 0..7 each 16 rows of 64 bytes: the only shape the kernels use. */
static inline cpu_amx_tilecfg cpu_amx_tilecfg_16x64(void)
{
	cpu_amx_tilecfg cfg = {.palette = 1};
	for (int i = 0; i < 8; i++)
		cfg.colsb[i] = 64, cfg.rows[i] = 16;
	return cfg;
}

#endif
