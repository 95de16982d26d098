/* numerics.h: element-level number formats, written once and compiled by both gcc and
 * nvcc, so the CPU tests cover exactly what the GPU kernels compute.
 * Plain C, header only, no libc beyond <stdint.h>/<string.h>. */
#ifndef OPTSTUDIO_NUMERICS_H
#define OPTSTUDIO_NUMERICS_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define NUM_FN static inline __host__ __device__
#else
#define NUM_FN static inline
#endif

NUM_FN uint32_t num_f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

NUM_FN float num_bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* bfloat16: the top 16 bits of an IEEE binary32. */
NUM_FN float num_bf16_to_f32(uint16_t h)
{
	return num_bits_f32((uint32_t)h << 16);
}

/* Round to nearest even; NaN stays NaN (quiet bit forced so it cannot round to Inf). */
NUM_FN uint16_t num_f32_to_bf16(float f)
{
	uint32_t u = num_f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x0040u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* IEEE binary16 -> binary32, exact for every input including subnormals, Inf and NaN. */
NUM_FN float num_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	if (exp == 0x1f)
		return num_bits_f32(sign | 0x7f800000u | (man << 13));
	if (exp == 0) {
		if (man == 0)
			return num_bits_f32(sign);
		/* subnormal: value = man * 2^-24 */
		float v = (float)man * (1.0f / 16777216.0f);
		return sign ? -v : v;
	}
	return num_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* binary32 -> binary16 with round to nearest even, overflow to Inf, NaN kept. */
NUM_FN uint16_t num_f32_to_f16(float f)
{
	uint32_t u = num_f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u);
	if (a >= 0x477ff000u) /* rounds to >= 65520: Inf */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) { /* below the smallest normal 2^-14: subnormal or zero */
		if (a < 0x33000000u) /* below half the smallest subnormal */
			return sign;
		uint32_t exp = a >> 23;
		uint32_t man = (a & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126u - exp; /* 14..24 */
		uint32_t half = 1u << (shift - 1);
		uint32_t rest = man & ((1u << shift) - 1u);
		uint32_t q = man >> shift;
		if (rest > half || (rest == half && (q & 1u)))
			q++;
		return (uint16_t)(sign | q);
	}
	uint32_t q = a - 0x38000000u; /* rebias exponent 127 -> 15 */
	uint32_t rest = q & 0x1fffu;
	q >>= 13;
	if (rest > 0x1000u || (rest == 0x1000u && (q & 1u)))
		q++;
	return (uint16_t)(sign | q);
}

#endif
