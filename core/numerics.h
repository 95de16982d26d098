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

/* ==== FP8 ===================================================================================
 * E4M3FN (OCP FP8 / NVIDIA "e4m3"): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no
 * infinities, NaN is S.1111.111 (0x7f / 0xff), largest finite 448 (0x7e), smallest normal 2^-6,
 * smallest subnormal 2^-9.
 * E5M2 (IEEE-like, the top byte of a binary16): 5 exponent bits (bias 15), 2 mantissa bits;
 * infinities S.11111.00, NaN S.11111.{01,10,11}, largest finite 57344 (0x7b), smallest normal
 * 2^-14, smallest subnormal 2^-16.
 * Encoding rounds to nearest even and saturates ("satfinite", as CUDA's __NV_SATFINITE and
 * PTX cvt.rn.satfinite): every finite value beyond the largest finite, and +-Inf, becomes
 * +-max, never Inf or NaN. NaN stays NaN with its sign (E4M3: S.1111.111; E5M2: the quiet
 * NaN S.11111.1x keeping the lowest payload bit, as CUDA). Decoding is exact. */

#define NUM_E4M3_MAX 448.0f
#define NUM_E5M2_MAX 57344.0f
#define NUM_E4M3_NAN 0x7fu /* | 0x80 for the negative one */

/* Shared by both encoders: man_bits mantissa bits, exponent bias, the largest finite code
 * (max_code) and the f32 bits of its value (max_bits). NaN handled by the caller. */
NUM_FN uint8_t num_fp8_encode_finite_(uint32_t u, uint32_t man_bits, uint32_t bias,
				      uint32_t max_code, uint32_t max_bits)
{
	uint32_t sign = (u >> 24) & 0x80u;
	uint32_t a = u & 0x7fffffffu;
	if (a >= max_bits) /* finite overflow and Inf: saturate */
		return (uint8_t)(sign | max_code);
	uint32_t drop = 23u - man_bits; /* f32 mantissa bits that do not fit */
	uint32_t q;
	if (a >= ((128u - bias) << 23)) { /* normal in FP8: rebias, round off drop bits */
		q = a - ((127u - bias) << 23);
		uint32_t rest = q & ((1u << drop) - 1u), half = 1u << (drop - 1u);
		q >>= drop;
		if (rest > half || (rest == half && (q & 1u)))
			q++; /* a carry into the exponent is the right answer */
	} else { /* FP8 subnormal (or zero): q = |x| / 2^(1 - bias - man_bits), rounded */
		uint32_t e = a >> 23;
		uint32_t m = (a & 0x7fffffu) | (e ? 0x800000u : 0u);
		uint32_t shift = 151u - bias - man_bits - (e ? e : 1u);
		if (shift >= 32u)
			return (uint8_t)sign;
		uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
		q = m >> shift;
		if (rest > half || (rest == half && (q & 1u)))
			q++; /* may become the smallest normal code: still right */
	}
	return (uint8_t)(sign | q);
}

/* f32 -> E4M3FN: round to nearest even, satfinite, NaN -> S.1111.111. */
NUM_FN uint8_t num_f32_to_e4m3(float f)
{
	uint32_t u = num_f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint8_t)(((u >> 24) & 0x80u) | NUM_E4M3_NAN);
	return num_fp8_encode_finite_(u, 3u, 7u, 0x7eu, 0x43e00000u /* 448 */);
}

/* E4M3FN -> f32, exact; S.1111.111 -> NaN. */
NUM_FN float num_e4m3_to_f32(uint8_t b)
{
	uint32_t sign = (uint32_t)(b & 0x80u) << 24;
	uint32_t e = (b >> 3) & 0xfu, m = b & 7u;
	if (e == 15u && m == 7u)
		return num_bits_f32(sign | 0x7fc00000u);
	if (e == 0u) /* subnormal: m * 2^-9, exact in f32 */
		return num_bits_f32(sign | num_f32_bits((float)m * (1.0f / 512.0f)));
	return num_bits_f32(sign | ((e + 120u) << 23) | (m << 20));
}

/* f32 -> E5M2: round to nearest even, satfinite (Inf -> +-57344), NaN -> S.11111.1x. */
NUM_FN uint8_t num_f32_to_e5m2(float f)
{
	uint32_t u = num_f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint8_t)(((u >> 24) & 0x80u) | 0x7eu | ((u >> 21) & 1u));
	return num_fp8_encode_finite_(u, 2u, 15u, 0x7bu, 0x47600000u /* 57344 */);
}

/* E5M2 -> f32, exact, including Inf and NaN (payload kept, as binary16 -> binary32). */
NUM_FN float num_e5m2_to_f32(uint8_t b)
{
	uint32_t sign = (uint32_t)(b & 0x80u) << 24;
	uint32_t e = (b >> 2) & 0x1fu, m = b & 3u;
	if (e == 31u)
		return num_bits_f32(sign | 0x7f800000u | (m << 21));
	if (e == 0u) /* subnormal: m * 2^-16 */
		return num_bits_f32(sign | num_f32_bits((float)m * (1.0f / 65536.0f)));
	return num_bits_f32(sign | ((e + 112u) << 23) | (m << 21));
}

/* Fills t[256] with num_e4m3_to_f32 of every code: the decode table for kernels. */
NUM_FN void num_e4m3_table(float t[256])
{
	for (uint32_t i = 0; i < 256u; i++)
		t[i] = num_e4m3_to_f32((uint8_t)i);
}

/* ==== rounding and scales ===================================================================
 * All quantizers here are symmetric round-to-nearest-even with clamping. A "scale" s maps a
 * code q back to a value q * s; quantizing multiplies by inv = num_inv_scale(s), computed once
 * per row, so SIMD kernels reproduce the scalar result bit for bit. */

/* Nearest integer to v, ties to even, for |v| < 2^31; NaN -> 0. Integer arithmetic only, so
 * the result does not depend on the FPU rounding mode or on FMA contraction. */
NUM_FN int32_t num_round_even(float v)
{
	uint32_t u = num_f32_bits(v), a = u & 0x7fffffffu;
	uint32_t q;
	if (a < 0x3f000000u || a > 0x7f800000u) /* |v| < 0.5, or NaN */
		return 0;
	if (a >= 0x4b000000u) { /* |v| >= 2^23: already an integer */
		if (a >= 0x4f000000u)
			return (u >> 31) ? INT32_MIN : INT32_MAX;
		q = ((a & 0x7fffffu) | 0x800000u) << ((a >> 23) - 150u);
	} else {
		uint32_t m = (a & 0x7fffffu) | 0x800000u;
		uint32_t shift = 150u - (a >> 23); /* 1..24 */
		uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
		q = m >> shift;
		if (rest > half || (rest == half && (q & 1u)))
			q++;
	}
	return (u >> 31) ? -(int32_t)q : (int32_t)q;
}

/* 1 / s, or 0 for s == 0 (an all-zero row quantizes to all-zero codes). */
NUM_FN float num_inv_scale(float s)
{
	return s > 0.0f ? 1.0f / s : 0.0f;
}

/* Symmetric int8 scale of a row (weights: per output channel; activations: per token) whose
 * largest |x| is absmax: codes span [-127, 127]. */
NUM_FN float num_i8_scale(float absmax)
{
	return absmax / 127.0f;
}

/* int8 code of x: round_even(x * inv) clamped to [-127, 127]; NaN -> 0. |x - q s| <= s/2
 * for |x| <= absmax (up to the rounding of inv). */
NUM_FN int8_t num_i8_quantize(float x, float inv)
{
	float v = x * inv;
	if (v != v)
		return 0;
	v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
	return (int8_t)num_round_even(v);
}

/* E4M3 scale of a row whose largest |x| is absmax: the row's largest value maps to 448. */
NUM_FN float num_e4m3_scale(float absmax)
{
	return absmax / NUM_E4M3_MAX;
}

/* E4M3 code of x / s, given inv = num_inv_scale(s). */
NUM_FN uint8_t num_e4m3_quantize(float x, float inv)
{
	return num_f32_to_e4m3(x * inv);
}

/* ==== INT4 ==================================================================================
 * Asymmetric group-wise uint4 (AWQ/GPTQ style): a group of g consecutive weights of one row
 * shares a scale s (f32) and an integer zero point z in [0, 15]; code q in [0, 15] stands for
 * s * (q - z). The range always contains 0 (lo = min(min w, 0), hi = max(max w, 0), as GPTQ),
 * so 0 is exact and every w in the group is within s/2 of its code's value.
 * Packing: two codes a byte, element 2i in the low nibble of byte i, 2i+1 in the high one. */

/* Scale and zero point of a group with smallest value lo and largest hi:
 * s = (max(hi,0) - min(lo,0)) / 15, z = round_even(-min(lo,0) / s) (0 when s == 0). */
NUM_FN void num_i4_params(float lo, float hi, float *scale, uint8_t *zero)
{
	lo = lo < 0.0f ? lo : 0.0f;
	hi = hi > 0.0f ? hi : 0.0f;
	float s = (hi - lo) / 15.0f;
	int32_t z = s > 0.0f ? num_round_even(-lo / s) : 0;
	*scale = s;
	*zero = (uint8_t)(z < 0 ? 0 : z > 15 ? 15 : z);
}

/* uint4 code of w: round_even(w / s) + z clamped to [0, 15]; z when s == 0. */
NUM_FN uint8_t num_i4_quantize(float w, float scale, uint8_t zero)
{
	if (!(scale > 0.0f))
		return zero;
	float v = w / scale;
	v = v > 32.0f ? 32.0f : v < -32.0f ? -32.0f : v; /* also NaN -> 0 in round_even */
	int32_t q = num_round_even(v) + (int32_t)zero;
	return (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
}

/* The value of code q: s * (q - z), one rounding. */
NUM_FN float num_i4_dequantize(uint8_t q, float scale, uint8_t zero)
{
	return scale * (float)((int32_t)q - (int32_t)zero);
}

/* One byte from two codes: even element in the low nibble. */
NUM_FN uint8_t num_i4_pack(uint8_t even, uint8_t odd)
{
	return (uint8_t)((even & 0xfu) | ((odd & 0xfu) << 4));
}

/* Code of element i of a packed row p. */
NUM_FN uint8_t num_i4_get(const uint8_t *p, size_t i)
{
	return (uint8_t)((p[i >> 1] >> ((i & 1u) * 4u)) & 0xfu);
}

/* Sets element i of a packed row p to code q (low 4 bits), keeping its neighbour. */
NUM_FN void num_i4_set(uint8_t *p, size_t i, uint8_t q)
{
	uint32_t sh = (uint32_t)(i & 1u) * 4u;
	p[i >> 1] = (uint8_t)((p[i >> 1] & ~(0xfu << sh)) | ((q & 0xfu) << sh));
}

#endif
