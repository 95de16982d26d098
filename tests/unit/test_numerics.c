/* test_numerics.c: the element formats of core/numerics.h (FP8 E4M3/E5M2, int8 and int4
 * quantizers, rounding) against references written here independently, in float64. */
#include "core/numerics.h"

#include <fenv.h>
#include <float.h>
#include <inttypes.h>

#include "tests/test.h"

/* ---- a float64 reference FP8 encoder, from the format's definition ------------------------ */

typedef struct fp8_ref {
	int man_bits, bias, max_code; /* max_code: largest finite magnitude code */
	double val[128];              /* val[c] = value of positive code c, c <= max_code */
} fp8_ref;

static void fp8_ref_init(fp8_ref *r, int exp_bits, int man_bits, int bias, int max_code)
{
	r->man_bits = man_bits;
	r->bias = bias;
	r->max_code = max_code;
	(void)exp_bits;
	for (int c = 0; c <= max_code; c++) {
		int e = c >> man_bits, m = c & ((1 << man_bits) - 1);
		r->val[c] = e == 0 ? ldexp((double)m, 1 - bias - man_bits)
				   : ldexp(1.0 + ldexp((double)m, -man_bits), e - bias);
	}
}

/* Nearest code by search; ties to the even code; beyond the largest finite (and Inf) the
 * largest finite; NaN returns -1 (checked apart). */
static int fp8_ref_encode(const fp8_ref *r, float x)
{
	if (isnan(x))
		return -1;
	int sign = signbit(x) ? 0x80 : 0;
	double a = fabs((double)x);
	if (a >= r->val[r->max_code])
		return sign | r->max_code;
	int lo = 0, hi = r->max_code; /* val[lo] <= a < val[hi] */
	while (hi - lo > 1) {
		int mid = (lo + hi) / 2;
		if (r->val[mid] <= a)
			lo = mid;
		else
			hi = mid;
	}
	double d0 = a - r->val[lo], d1 = r->val[hi] - a;
	int c = d0 < d1 ? lo : d1 < d0 ? hi : (lo & 1) ? hi : lo;
	return sign | c;
}

static fp8_ref ref_e4m3, ref_e5m2;

/* Checks encode(x) against the reference for both formats; returns 0 on a mismatch after
 * printing it. */
static int check_encode_one(float x)
{
	int want4 = fp8_ref_encode(&ref_e4m3, x), got4 = num_f32_to_e4m3(x);
	int want5 = fp8_ref_encode(&ref_e5m2, x), got5 = num_f32_to_e5m2(x);
	if (want4 >= 0 && want4 != got4) {
		printf("  e4m3(%.9g = 0x%08" PRIx32 ") = 0x%02x, expected 0x%02x\n", (double)x,
		       num_f32_bits(x), got4, want4);
		return 0;
	}
	if (want5 >= 0 && want5 != got5) {
		printf("  e5m2(%.9g = 0x%08" PRIx32 ") = 0x%02x, expected 0x%02x\n", (double)x,
		       num_f32_bits(x), got5, want5);
		return 0;
	}
	return 1;
}

TEST(e4m3_decode_values)
{
	/* a few values from the OCP FP8 specification's table */
	CHECK(num_e4m3_to_f32(0x7e) == 448.0f);
	CHECK(num_e4m3_to_f32(0xfe) == -448.0f);
	CHECK(num_e4m3_to_f32(0x08) == 0.015625f); /* 2^-6, smallest normal */
	CHECK(num_e4m3_to_f32(0x07) == 0.013671875f); /* 7 * 2^-9, largest subnormal */
	CHECK(num_e4m3_to_f32(0x01) == 0.001953125f); /* 2^-9 */
	CHECK(num_e4m3_to_f32(0x38) == 1.0f);
	CHECK(isnan(num_e4m3_to_f32(0x7f)) && isnan(num_e4m3_to_f32(0xff)));
	CHECK(!signbit(num_e4m3_to_f32(0x7f)) && signbit(num_e4m3_to_f32(0xff)));
	CHECK(num_e4m3_to_f32(0x80) == 0.0f && signbit(num_e4m3_to_f32(0x80)));
	CHECK(!isinf(num_e4m3_to_f32(0x78))); /* S.1111.000 is 256, not Inf */
	CHECK(num_e4m3_to_f32(0x78) == 256.0f);
	/* every non-NaN code decodes to the reference value */
	for (int c = 0; c < 256; c++) {
		int mag = c & 0x7f;
		if (mag == 0x7f)
			continue;
		double want = (c & 0x80) ? -ref_e4m3.val[mag] : ref_e4m3.val[mag];
		CHECK_MSG((double)num_e4m3_to_f32((uint8_t)c) == want, "code 0x%02x", c);
	}
}

TEST(e5m2_decode_values)
{
	CHECK(num_e5m2_to_f32(0x7b) == 57344.0f);
	CHECK(isinf(num_e5m2_to_f32(0x7c)) && num_e5m2_to_f32(0x7c) > 0);
	CHECK(isinf(num_e5m2_to_f32(0xfc)) && num_e5m2_to_f32(0xfc) < 0);
	for (int c = 0x7d; c <= 0x7f; c++)
		CHECK(isnan(num_e5m2_to_f32((uint8_t)c)) && isnan(num_e5m2_to_f32((uint8_t)(c | 0x80))));
	CHECK(num_e5m2_to_f32(0x01) == ldexpf(1.0f, -16));
	CHECK(num_e5m2_to_f32(0x04) == ldexpf(1.0f, -14));
	CHECK(num_e5m2_to_f32(0x3c) == 1.0f);
	for (int c = 0; c < 256; c++) {
		int mag = c & 0x7f;
		if (mag > 0x7b)
			continue;
		double want = (c & 0x80) ? -ref_e5m2.val[mag] : ref_e5m2.val[mag];
		CHECK_MSG((double)num_e5m2_to_f32((uint8_t)c) == want, "code 0x%02x", c);
		/* E5M2 is the top byte of a binary16: the two decoders agree */
		CHECK_MSG(num_e5m2_to_f32((uint8_t)c) == num_f16_to_f32((uint16_t)(c << 8)),
			  "code 0x%02x vs f16", c);
	}
}

TEST(fp8_all_codes_round_trip)
{
	for (int c = 0; c < 256; c++) {
		float v4 = num_e4m3_to_f32((uint8_t)c);
		CHECK_MSG(num_f32_to_e4m3(v4) == c, "e4m3 0x%02x -> %g -> 0x%02x", c, (double)v4,
			  num_f32_to_e4m3(v4));
		float v5 = num_e5m2_to_f32((uint8_t)c);
		uint8_t back = num_f32_to_e5m2(v5);
		if (isnan(v5)) /* NaN stays a NaN of the same sign (payload: quiet bit forced) */
			CHECK_MSG((back & 0x7c) == 0x7c && (back & 3) && (back & 0x80) == (c & 0x80),
				  "e5m2 NaN 0x%02x -> 0x%02x", c, back);
		else if (isinf(v5)) /* satfinite: Inf saturates */
			CHECK_MSG(back == ((c & 0x80) | 0x7b), "e5m2 Inf 0x%02x -> 0x%02x", c, back);
		else
			CHECK_MSG(back == c, "e5m2 0x%02x -> %g -> 0x%02x", c, (double)v5, back);
	}
	/* the table is generated from the decoder */
	float t[256];
	num_e4m3_table(t);
	for (int c = 0; c < 256; c++)
		CHECK(memcmp(&t[c], &(float){num_e4m3_to_f32((uint8_t)c)}, 4) == 0);
}

TEST(fp8_saturation_nan_zero)
{
	CHECK_EQ_INT(num_f32_to_e4m3(448.0f), 0x7e);
	CHECK_EQ_INT(num_f32_to_e4m3(463.99f), 0x7e);
	CHECK_EQ_INT(num_f32_to_e4m3(464.0f), 0x7e); /* the tie with "480" saturates too */
	CHECK_EQ_INT(num_f32_to_e4m3(1e30f), 0x7e);
	CHECK_EQ_INT(num_f32_to_e4m3(-1e30f), 0xfe);
	CHECK_EQ_INT(num_f32_to_e4m3(INFINITY), 0x7e);
	CHECK_EQ_INT(num_f32_to_e4m3(-INFINITY), 0xfe);
	CHECK_EQ_INT(num_f32_to_e4m3(FLT_MAX), 0x7e);
	CHECK_EQ_INT(num_f32_to_e4m3(NAN), 0x7f);
	CHECK_EQ_INT(num_f32_to_e4m3(-NAN), 0xff);
	CHECK_EQ_INT(num_f32_to_e4m3(num_bits_f32(0x7f800001u)), 0x7f); /* signalling NaN */
	CHECK_EQ_INT(num_f32_to_e5m2(1e30f), 0x7b);
	CHECK_EQ_INT(num_f32_to_e5m2(INFINITY), 0x7b);
	CHECK_EQ_INT(num_f32_to_e5m2(-INFINITY), 0xfb);
	CHECK_EQ_INT(num_f32_to_e5m2(61440.0f), 0x7b);
	CHECK((num_f32_to_e5m2(NAN) & 0x7f) >= 0x7d);
	CHECK_EQ_INT(num_f32_to_e4m3(0.0f), 0x00);
	CHECK_EQ_INT(num_f32_to_e4m3(-0.0f), 0x80);
	CHECK_EQ_INT(num_f32_to_e5m2(-0.0f), 0x80);
	CHECK_EQ_INT(num_f32_to_e4m3(-1e-30f), 0x80); /* underflow keeps the sign */
	CHECK_EQ_INT(num_f32_to_e4m3(num_bits_f32(1)), 0x00); /* f32 subnormal */
	/* subnormal boundaries of E4M3: 2^-10 is the tie between 0 and 2^-9 (to even: 0) */
	CHECK_EQ_INT(num_f32_to_e4m3(ldexpf(1.0f, -10)), 0x00);
	CHECK_EQ_INT(num_f32_to_e4m3(nextafterf(ldexpf(1.0f, -10), 1.0f)), 0x01);
	CHECK_EQ_INT(num_f32_to_e4m3(ldexpf(3.0f, -10)), 0x02); /* tie 1|2 -> 2 */
	CHECK_EQ_INT(num_f32_to_e4m3(ldexpf(15.0f, -10)), 0x08); /* tie 7|8 -> 8, normal */
	CHECK_EQ_INT(num_f32_to_e4m3(nextafterf(ldexpf(15.0f, -10), 0.0f)), 0x07);
	CHECK_EQ_INT(num_f32_to_e4m3(ldexpf(1.0f, -6)), 0x08);
	CHECK_EQ_INT(num_f32_to_e5m2(ldexpf(1.0f, -17)), 0x00);
	CHECK_EQ_INT(num_f32_to_e5m2(ldexpf(3.0f, -17)), 0x02);
}

/* Encode of every 61st f32 bit pattern (all of them across signs, zero, subnormals, normals,
 * Inf and NaN), then every pattern within 2^12 ulps of each tie and each code value. */
TEST(fp8_encode_sweep)
{
	size_t n = 0;
	for (uint64_t u = 0; u <= 0xffffffffull; u += 61, n++)
		if (!check_encode_one(num_bits_f32((uint32_t)u)))
			FAIL_AT("sweep mismatch");
	const fp8_ref *refs[2] = {&ref_e4m3, &ref_e5m2};
	for (int f = 0; f < 2; f++) {
		const fp8_ref *r = refs[f];
		for (int c = 0; c < r->max_code; c++) {
			float pts[2] = {(float)r->val[c], (float)((r->val[c] + r->val[c + 1]) / 2)};
			for (int p = 0; p < 2; p++) {
				uint32_t mid = num_f32_bits(pts[p]);
				uint32_t lo = mid > 4096 ? mid - 4096 : 0;
				for (uint32_t u = lo; u <= mid + 4096; u++, n++) {
					if (!check_encode_one(num_bits_f32(u)) ||
					    !check_encode_one(num_bits_f32(u | 0x80000000u)))
						FAIL_AT("near-tie mismatch");
				}
			}
		}
	}
	printf("  %zu values checked\n", n);
}

TEST(round_even_vs_libm)
{
	fesetround(FE_TONEAREST);
	uint64_t seed = 0x5eed0001;
	printf("  seed 0x%" PRIx64 "\n", seed);
	for (uint64_t u = 0; u <= 0xffffffffull; u += 97) {
		float v = num_bits_f32((uint32_t)u);
		if (isnan(v)) {
			CHECK(num_round_even(v) == 0);
			continue;
		}
		if (fabsf(v) >= 2147483648.0f)
			continue;
		CHECK_MSG(num_round_even(v) == (int32_t)rintf(v), "round_even(%.9g)", (double)v);
	}
	for (int i = -300; i <= 300; i++) { /* every half */
		float v = (float)i * 0.5f;
		CHECK_MSG(num_round_even(v) == (int32_t)rintf(v), "round_even(%g)", (double)v);
	}
	for (int i = 0; i < 100000; i++) {
		float v = test_rand_float(&seed) * 200.0f;
		CHECK(num_round_even(v) == (int32_t)rintf(v));
	}
}

TEST(int8_quantize_bounds)
{
	uint64_t seed = 0x5eed0002;
	printf("  seed 0x%" PRIx64 "\n", seed);
	for (int row = 0; row < 2000; row++) {
		float x[97], absmax = 0.0f;
		float mag = ldexpf(1.0f, (int)(test_rand_next(&seed) % 40) - 20);
		for (int i = 0; i < 97; i++) {
			x[i] = test_rand_float(&seed) * mag;
			absmax = fmaxf(absmax, fabsf(x[i]));
		}
		float s = num_i8_scale(absmax), inv = num_inv_scale(s);
		for (int i = 0; i < 97; i++) {
			int8_t q = num_i8_quantize(x[i], inv);
			CHECK(q >= -127); /* int8 holds no more than 127: -128 is the code never used */
			double err = fabs((double)x[i] - (double)q * s);
			CHECK_MSG(err <= s * 0.5 * (1 + 1e-5), "row %d: x %g q %d s %g err %g", row,
				  (double)x[i], q, (double)s, err);
		}
	}
	CHECK_EQ_INT(num_i8_quantize(1e9f, 1.0f), 127);
	CHECK_EQ_INT(num_i8_quantize(-1e9f, 1.0f), -127);
	CHECK_EQ_INT(num_i8_quantize(2.5f, 1.0f), 2);
	CHECK_EQ_INT(num_i8_quantize(-3.5f, 1.0f), -4);
	CHECK_EQ_INT(num_i8_quantize(NAN, 1.0f), 0);
	CHECK_EQ_INT(num_i8_quantize(5.0f, num_inv_scale(0.0f)), 0);
}

TEST(e4m3_quantize_bounds)
{
	uint64_t seed = 0x5eed0003;
	printf("  seed 0x%" PRIx64 "\n", seed);
	for (int row = 0; row < 2000; row++) {
		float x[65], absmax = 0.0f;
		float mag = ldexpf(1.0f, (int)(test_rand_next(&seed) % 40) - 20);
		for (int i = 0; i < 65; i++) {
			x[i] = test_rand_float(&seed) * mag;
			absmax = fmaxf(absmax, fabsf(x[i]));
		}
		float s = num_e4m3_scale(absmax), inv = num_inv_scale(s);
		for (int i = 0; i < 65; i++) {
			uint8_t q = num_e4m3_quantize(x[i], inv);
			CHECK(q != 0x7f && q != 0xff);
			double back = (double)num_e4m3_to_f32(q) * s;
			double err = fabs((double)x[i] - back);
			if (fabs(x[i] * inv) >= 0.015625) /* normal in E4M3: relative bound */
				CHECK_MSG(err <= ldexp(fabs((double)x[i]), -4) * (1 + 1e-5),
					  "x %g q 0x%02x err %g", (double)x[i], q, err);
			else /* subnormal: absolute bound, half the spacing 2^-9 */
				CHECK_MSG(err <= ldexp(s, -10) * (1 + 1e-5) + 1e-30, "x %g err %g",
					  (double)x[i], err);
		}
	}
}

TEST(int4_params_and_bounds)
{
	uint64_t seed = 0x5eed0004;
	printf("  seed 0x%" PRIx64 "\n", seed);
	for (int g = 0; g < 5000; g++) {
		float w[128], lo = INFINITY, hi = -INFINITY;
		float mag = ldexpf(1.0f, (int)(test_rand_next(&seed) % 20) - 10);
		float off = (test_rand_next(&seed) % 4 == 0) ? mag * 1.5f : 0.0f; /* one-sided */
		for (int i = 0; i < 128; i++) {
			w[i] = test_rand_float(&seed) * mag + off;
			lo = fminf(lo, w[i]);
			hi = fmaxf(hi, w[i]);
		}
		float s;
		uint8_t z;
		num_i4_params(lo, hi, &s, &z);
		CHECK(z <= 15 && s > 0);
		CHECK_MSG(num_i4_dequantize(z, s, z) == 0.0f, "0 is exact");
		for (int i = 0; i < 128; i++) {
			uint8_t q = num_i4_quantize(w[i], s, z);
			CHECK(q <= 15);
			double err = fabs((double)w[i] - (double)num_i4_dequantize(q, s, z));
			CHECK_MSG(err <= s * 0.5 * (1 + 1e-5), "group %d: w %g q %d s %g z %d err %g",
				  g, (double)w[i], q, (double)s, z, err);
		}
	}
	float s;
	uint8_t z;
	num_i4_params(0.0f, 0.0f, &s, &z);
	CHECK(s == 0.0f && z == 0 && num_i4_quantize(0.0f, s, z) == 0);
}

TEST(int4_packing)
{
	uint64_t seed = 0x5eed0005;
	printf("  seed 0x%" PRIx64 "\n", seed);
	uint8_t codes[301], packed[151];
	memset(packed, 0xa5, sizeof packed);
	for (int i = 0; i < 301; i++) {
		codes[i] = (uint8_t)(test_rand_next(&seed) & 15);
		num_i4_set(packed, (size_t)i, codes[i]);
	}
	for (int i = 0; i < 301; i++)
		CHECK_EQ_INT(num_i4_get(packed, (size_t)i), codes[i]);
	for (int i = 0; i + 1 < 301; i += 2)
		CHECK_EQ_INT(packed[i / 2], num_i4_pack(codes[i], codes[i + 1]));
	CHECK_EQ_INT(num_i4_pack(0x3, 0xc), 0xc3); /* element 2i in the low nibble */
	CHECK_EQ_INT(packed[150] >> 4, 0xa);       /* the neighbour of the last is kept */
}

int main(void)
{
	fp8_ref_init(&ref_e4m3, 4, 3, 7, 0x7e);
	fp8_ref_init(&ref_e5m2, 5, 2, 15, 0x7b);
	RUN(e4m3_decode_values);
	RUN(e5m2_decode_values);
	RUN(fp8_all_codes_round_trip);
	RUN(fp8_saturation_nan_zero);
	RUN(fp8_encode_sweep);
	RUN(round_even_vs_libm);
	RUN(int8_quantize_bounds);
	RUN(e4m3_quantize_bounds);
	RUN(int4_params_and_bounds);
	RUN(int4_packing);
	return test_summary();
}
