/* roofline.h: measured ceilings of this machine, taken in the same run as the figures they
 * judge: memory read bandwidth and peak multiply-add rate, with every pool thread busy. */
#ifndef OPTSTUDIO_ROOFLINE_H
#define OPTSTUDIO_ROOFLINE_H

#include <stddef.h>

#include "core/cpu/threadpool.h"

typedef enum roofline_kind {
	ROOFLINE_F32_FMA = 0, /* f32 fused multiply-add (AVX-512, else AVX2+FMA, else scalar) */
	ROOFLINE_BF16_DP = 1, /* bf16 pair dot products into f32 (vdpbf16ps; AVX-512 BF16 only) */
	ROOFLINE_BF16_AMX = 2, /* bf16 tile products into f32 (TDPBF16PS; AMX, cpu_amx_enable) */
	ROOFLINE_I8_DP = 3,    /* int8 dot products into int32 (vpdpbusd; AVX-512 VNNI) */
	ROOFLINE_I8_AMX = 4,   /* int8 tile products into int32 (TDPBSSD; AMX-INT8) */
} roofline_kind;

/* Read bandwidth in GB/s (1e9 bytes/s): a buffer of `bytes` (make it well beyond the last
 * level cache, e.g. 512 MiB; 0 means 512 MiB) written once, then read by all threads of the
 * pool (NULL: the caller alone) with vector loads; best of 3 passes. Takes about a second.
 * Returns a negative value when the buffer cannot be allocated. */
double roofline_read_bandwidth(threadpool *pool, size_t bytes);

/* Peak arithmetic rate in GFLOP/s (a multiply-add counts 2, an integer one too) of kind on
 * all threads of the pool: many independent accumulators in registers, no memory traffic;
 * best of 16 runs. Returns 0 when this CPU lacks the instructions for kind. Takes about a
 * quarter second. */
double roofline_peak_flops(threadpool *pool, roofline_kind kind);

#endif
