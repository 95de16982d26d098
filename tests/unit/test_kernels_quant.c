/* test_kernels_quant.c: the quantized matmul kernels (core/cpu/kernels_quant.h): every SIMD
 * set against its generic twin on random data at awkward sizes, the generic twins against a
 * float64 reference of dequantize(W) X, and quantize -> dequantize error bounds of
 * core/optimize/quant_formats.h. */
#include "core/cpu/kernels_quant.h"

#include <inttypes.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/cpu/cpu_features.h"
#include "core/numerics.h"
#include "core/optimize/quant_formats.h"
#include "tests/test.h"

static const size_t n_ins[] = {1, 3, 17, 33, 129, 576};
/* 13 and 17 take the one-token tiles of 8 rows, 4 rows and single rows of the SIMD sets */
static const size_t n_outs[] = {1, 3, 13, 17, 129};
static const size_t n_toks[] = {1, 2, 7, 16, 33};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Uniform in [-1, 1) but never within 1e-3 of 0, so no product vanishes by accident. */
static float rand_nonzero(uint64_t *s)
{
	float v = test_rand_float(s);
	return v < 0 ? v - 1e-3f : v + 1e-3f;
}

static void fill_x(float *x, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		x[i] = rand_nonzero(s) * 3.0f;
}

static void fill_e4m3(uint8_t *w, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c;
		do
			c = (uint8_t)test_rand_next(s);
		while ((c & 0x7f) == 0x7f || (c & 0x7f) == 0); /* no NaN, no zero */
		w[i] = c;
	}
}

static void fill_scales(float *sc, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		sc[i] = (1.5f + test_rand_float(s)) * 0.01f; /* 0.005 .. 0.025 */
}

/* The SIMD sets this CPU runs (the generic one excluded), and their batch-invariant twins;
 * out has room for 2 * CPU_ISA_COUNT. */
static size_t simd_sets(const cpu_qkernel_set **out)
{
	size_t n = 0;
	for (int i = 1; i < CPU_ISA_COUNT; i++) {
		const cpu_qkernel_set *qk = cpu_qkernels_get((cpu_isa)i);
		if (qk && qk != &cpu_qkernels_generic) {
			out[n++] = qk;
			if (cpu_qkernels_batch_invariant(qk) != qk)
				out[n++] = cpu_qkernels_batch_invariant(qk);
		}
	}
	return n;
}

/* |a - b| within the float32 summation error of two orders of n terms whose absolute sum is
 * abs_sum: 2 (n + 2) 2^-24 abs_sum, plus a hair for the final scaling. */
static int close_sum(double a, double b, double abs_sum, size_t n)
{
	double tol = 2.0 * ((double)n + 2.0) * ldexp(1.0, -24) * abs_sum + 1e-30;
	return fabs(a - b) <= tol;
}

TEST(selection)
{
	CHECK(cpu_qkernels_get(CPU_ISA_GENERIC) == &cpu_qkernels_generic);
	const cpu_qkernel_set *qk = NULL;
	os_error err;
	setenv("OPTSTUDIO_CPU", "generic", 1);
	CHECK(cpu_qkernels_select(&qk, &err) == OS_OK && qk == &cpu_qkernels_generic);
	setenv("OPTSTUDIO_CPU", "nonsense", 1);
	CHECK(cpu_qkernels_select(&qk, &err) == OS_EUSAGE);
	unsetenv("OPTSTUDIO_CPU");
	CHECK(cpu_qkernels_select(&qk, &err) == OS_OK && qk);
	printf("  fastest quantized set: %s\n", qk->name);
	if (cpu_qkernels_get(CPU_ISA_AVX512)) {
		setenv("OPTSTUDIO_CPU", "avx512", 1);
		CHECK(cpu_qkernels_select(&qk, &err) == OS_OK && qk == &cpu_qkernels_avx512);
		unsetenv("OPTSTUDIO_CPU");
	}
	/* the amx set wherever the plain amx set runs and the CPU has AMX-INT8 */
	cpu_features f;
	cpu_features_detect(&f);
	if (cpu_kernels_get(CPU_ISA_AMX) && f.avx512vnni) {
		const cpu_qkernel_set *want = f.amx_int8 ? &cpu_qkernels_amx : &cpu_qkernels_avx512;
		CHECK(cpu_qkernels_get(CPU_ISA_AMX) == want);
		setenv("OPTSTUDIO_CPU", "amx", 1);
		CHECK(cpu_qkernels_select(&qk, &err) == OS_OK && qk == want);
		unsetenv("OPTSTUDIO_CPU");
	} else {
		CHECK(!cpu_qkernels_get(CPU_ISA_AMX));
	}
}

/* ---- twins ------------------------------------------------------------------------------- */

TEST(fp8_twins)
{
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT];
	size_t n_sets = simd_sets(sets);
	if (!n_sets)
		SKIP("no SIMD quantized set on this CPU");
	uint64_t seed = 0x9a11f8;
	printf("  seed 0x%" PRIx64 "\n", seed);
	float lut[256];
	num_e4m3_table(lut);
	for (size_t a = 0; a < N_OF(n_ins); a++)
		for (size_t b = 0; b < N_OF(n_outs); b++)
			for (size_t c = 0; c < N_OF(n_toks); c++) {
				size_t n_in = n_ins[a], n_out = n_outs[b], n_tok = n_toks[c];
				float *X = malloc(n_tok * n_in * 4), *sw = malloc(n_out * 4);
				float *Yg = malloc(n_tok * n_out * 4), *Ys = malloc(n_tok * n_out * 4);
				uint8_t *W = malloc(n_out * n_in);
				CHECK(X && sw && Yg && Ys && W);
				fill_x(X, n_tok * n_in, &seed);
				fill_e4m3(W, n_out * n_in, &seed);
				fill_scales(sw, n_out, &seed);
				cpu_qkernels_generic.matmul_fp8(Yg, X, W, sw, n_tok, n_in, n_out, 0, n_out);
				for (size_t si = 0; si < n_sets; si++) {
					sets[si]->matmul_fp8(Ys, X, W, sw, n_tok, n_in, n_out, 0, n_out);
					for (size_t t = 0; t < n_tok; t++)
						for (size_t o = 0; o < n_out; o++) {
							double abs_sum = 0;
							for (size_t k = 0; k < n_in; k++)
								abs_sum += fabs(X[t * n_in + k] * lut[W[o * n_in + k]]);
							abs_sum *= sw[o];
							size_t i = t * n_out + o;
							CHECK_MSG(close_sum(Ys[i], Yg[i], abs_sum, n_in),
								  "%s fp8 %zux%zu tok %zu [%zu][%zu]: %.9g vs %.9g",
								  sets[si]->name, n_out, n_in, n_tok, t, o,
								  (double)Ys[i], (double)Yg[i]);
						}
				}
				free(X), free(sw), free(Yg), free(Ys), free(W);
			}
}

/* INT8 codes over the full range [-127, 127], extremes included. */
static void fill_i8(int8_t *q, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		q[i] = (int8_t)((int)(test_rand_next(s) % 255) - 127);
}

/* xsum[t] = sum_k Xq[t][k], as quantize_i8_act gives it. */
static void sum_i8_rows(int32_t *xsum, const int8_t *Xq, size_t n_tok, size_t n_in)
{
	for (size_t t = 0; t < n_tok; t++) {
		xsum[t] = 0;
		for (size_t k = 0; k < n_in; k++)
			xsum[t] += Xq[t * n_in + k];
	}
}

TEST(int8_twins_bit_exact)
{
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT];
	size_t n_sets = simd_sets(sets);
	if (!n_sets)
		SKIP("no SIMD quantized set on this CPU");
	uint64_t seed = 0x9a1118;
	printf("  seed 0x%" PRIx64 "\n", seed);
	for (size_t a = 0; a < N_OF(n_ins); a++)
		for (size_t b = 0; b < N_OF(n_outs); b++)
			for (size_t c = 0; c < N_OF(n_toks); c++) {
				size_t n_in = n_ins[a], n_out = n_outs[b], n_tok = n_toks[c];
				int8_t *Xq = malloc(n_tok * n_in), *W = malloc(n_out * n_in);
				float *xs = malloc(n_tok * 4), *sw = malloc(n_out * 4);
				float *ones_t = malloc(n_tok * 4), *ones_o = malloc(n_out * 4);
				int32_t *xsum = malloc(n_tok * 4);
				float *Yg = malloc(n_tok * n_out * 4), *Ys = malloc(n_tok * n_out * 4);
				CHECK(Xq && W && xs && sw && ones_t && ones_o && xsum && Yg && Ys);
				/* full code range, extremes included, so the +128 trick is exercised */
				fill_i8(Xq, n_tok * n_in, &seed);
				fill_i8(W, n_out * n_in, &seed);
				sum_i8_rows(xsum, Xq, n_tok, n_in);
				for (size_t t = 0; t < n_tok; t++)
					ones_t[t] = 1.0f;
				for (size_t o = 0; o < n_out; o++)
					ones_o[o] = 1.0f;
				fill_scales(xs, n_tok, &seed);
				fill_scales(sw, n_out, &seed);
				for (size_t si = 0; si < n_sets; si++) {
					/* unit scales: Y is the int32 sum itself (|sum| < 2^24 here) */
					cpu_qkernels_generic.matmul_i8(Yg, Xq, ones_t, xsum, W, ones_o,
								       n_tok, n_in, n_out, 0, n_out);
					sets[si]->matmul_i8(Ys, Xq, ones_t, xsum, W, ones_o, n_tok, n_in,
							    n_out, 0, n_out);
					for (size_t t = 0; t < n_tok; t++)
						for (size_t o = 0; o < n_out; o++) {
							int64_t ref = 0;
							for (size_t k = 0; k < n_in; k++)
								ref += Xq[t * n_in + k] * W[o * n_in + k];
							size_t i = t * n_out + o;
							CHECK_MSG((int64_t)Yg[i] == ref && (int64_t)Ys[i] == ref,
								  "%s int8 %zux%zu tok %zu: %.0f %.0f vs %" PRId64,
								  sets[si]->name, n_out, n_in, n_tok,
								  (double)Ys[i], (double)Yg[i], ref);
						}
					/* real scales: the same float operations, bit for bit */
					cpu_qkernels_generic.matmul_i8(Yg, Xq, xs, xsum, W, sw, n_tok, n_in,
								       n_out, 0, n_out);
					sets[si]->matmul_i8(Ys, Xq, xs, xsum, W, sw, n_tok, n_in, n_out, 0,
							    n_out);
					CHECK_MSG(memcmp(Yg, Ys, n_tok * n_out * 4) == 0,
						  "%s int8 scaled %zux%zu tok %zu differs", sets[si]->name,
						  n_out, n_in, n_tok);
				}
				free(Xq), free(W), free(xs), free(sw), free(ones_t), free(ones_o);
				free(xsum), free(Yg), free(Ys);
			}
}

TEST(int8_extreme_sums)
{
	/* every code at +-127: the largest sums, checked against int64 at n_in = 65536 */
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT];
	size_t n_sets = simd_sets(sets);
	size_t n_in = CPU_QI8_MAX_IN, n_out = 2;
	int8_t *X = malloc(n_in), *W = malloc(n_out * n_in);
	CHECK(X && W);
	for (size_t k = 0; k < n_in; k++) {
		X[k] = -127;
		W[k] = 127;          /* row 0: -127 * 127 * n_in */
		W[n_in + k] = -127;  /* row 1: +127 * 127 * n_in */
	}
	int32_t xsum = -127 * (int32_t)n_in;
	float one = 1.0f, ones[2] = {1.0f, 1.0f};
	const cpu_qkernel_set *all[2 * CPU_ISA_COUNT + 1] = {&cpu_qkernels_generic};
	for (size_t i = 0; i < n_sets; i++)
		all[i + 1] = sets[i];
	for (size_t i = 0; i <= n_sets; i++) {
		float Y[2];
		all[i]->matmul_i8(Y, X, &one, &xsum, W, ones, 1, n_in, n_out, 0, n_out);
		CHECK_MSG(Y[0] == -(float)(127 * 127 * (int64_t)n_in), "%s: %.0f", all[i]->name,
			  (double)Y[0]);
		CHECK_MSG(Y[1] == (float)(127 * 127 * (int64_t)n_in), "%s: %.0f", all[i]->name,
			  (double)Y[1]);
	}
	/* the same rows for a batch of 17 tokens (the amx set's tile GEMM) */
	enum { NB = 17 };
	int8_t *Xb = malloc(NB * n_in);
	float Yb[NB * 2], ob[NB];
	int32_t sb[NB];
	CHECK(Xb);
	for (size_t t = 0; t < NB; t++) {
		memcpy(Xb + t * n_in, X, n_in);
		ob[t] = 1.0f, sb[t] = xsum;
	}
	for (size_t i = 0; i <= n_sets; i++) {
		all[i]->matmul_i8(Yb, Xb, ob, sb, W, ones, NB, n_in, n_out, 0, n_out);
		for (size_t t = 0; t < NB; t++)
			CHECK_MSG(Yb[2 * t] == -(float)(127 * 127 * (int64_t)n_in) &&
					  Yb[2 * t + 1] == (float)(127 * 127 * (int64_t)n_in),
				  "%s batch tok %zu: %.0f %.0f", all[i]->name, t, (double)Yb[2 * t],
				  (double)Yb[2 * t + 1]);
	}
	free(Xb);
	free(X);
	free(W);
}

/* bytes at the end of a mapping whose next page is inaccessible: a kernel reading past them
 * faults. *base, *len: what to munmap. */
static void *guarded(size_t bytes, void **base, size_t *len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (bytes + page - 1) / page * page;
	*len = body + page;
	unsigned char *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				-1, 0);
	if (m == MAP_FAILED)
		return NULL;
	if (mprotect(m + body, page, PROT_NONE) != 0) {
		munmap(m, *len);
		return NULL;
	}
	*base = m;
	return m + body - bytes;
}

/* INT8 at the sizes of the amx set's tile GEMM (CPU_QI8_GEMM_MIN_TOK tokens and more, n_in a
 * multiple of 64) and around it: token counts around the 16-token tiles and 32-token pairs,
 * row ranges that start and end off the 32-row panels, and n_in = 100 (the vpdpbusd
 * fallback). Every set bit-identical to the generic one, rows outside the ranges untouched,
 * activations and weights ending at an inaccessible page (no read past them). */
TEST(int8_gemm_edges)
{
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT];
	size_t n_sets = simd_sets(sets);
	if (!n_sets)
		SKIP("no SIMD quantized set on this CPU");
	uint64_t seed = 0x9a11c4;
	printf("  seed 0x%" PRIx64 "\n", seed);
	static const size_t ins[] = {64, 100, 576, 1536};
	static const size_t toks[] = {CPU_QI8_GEMM_MIN_TOK - 1, 8, 15, 16, 17, 31, 33, 47, 65};
	/* pieces of 83 rows: [3, 37) [37, 70) [75, 83); rows 0..2 and 70..74 untouched */
	static const size_t cuts[][2] = {{3, 37}, {37, 70}, {75, 83}};
	const size_t n_out = 83;
	for (size_t a = 0; a < N_OF(ins); a++)
		for (size_t c = 0; c < N_OF(toks); c++) {
			size_t n_in = ins[a], n_tok = toks[c];
			void *xb, *wb;
			size_t xl, wl;
			int8_t *Xq = guarded(n_tok * n_in, &xb, &xl);
			int8_t *W = guarded(n_out * n_in, &wb, &wl);
			float *xs = malloc(n_tok * 4), *sw = malloc(n_out * 4);
			int32_t *xsum = malloc(n_tok * 4);
			float *Yg = malloc(n_tok * n_out * 4), *Ys = malloc(n_tok * n_out * 4);
			CHECK(Xq && W && xs && sw && xsum && Yg && Ys);
			fill_i8(Xq, n_tok * n_in, &seed);
			fill_i8(W, n_out * n_in, &seed);
			sum_i8_rows(xsum, Xq, n_tok, n_in);
			fill_scales(xs, n_tok, &seed);
			fill_scales(sw, n_out, &seed);
			cpu_qkernels_generic.matmul_i8(Yg, Xq, xs, xsum, W, sw, n_tok, n_in, n_out, 0,
						       n_out);
			for (size_t si = 0; si < n_sets; si++) {
				for (size_t i = 0; i < n_tok * n_out; i++)
					Ys[i] = -7.0f; /* sentinel */
				for (size_t p = 0; p < N_OF(cuts); p++)
					sets[si]->matmul_i8(Ys, Xq, xs, xsum, W, sw, n_tok, n_in, n_out,
							    cuts[p][0], cuts[p][1]);
				for (size_t t = 0; t < n_tok; t++)
					for (size_t o = 0; o < n_out; o++) {
						size_t i = t * n_out + o;
						bool in = (o >= 3 && o < 70) || o >= 75;
						CHECK_MSG(in ? !memcmp(&Ys[i], &Yg[i], 4) : Ys[i] == -7.0f,
							  "%s int8 n_in %zu tok %zu/%zu row %zu: %.9g vs %.9g",
							  sets[si]->name, n_in, t, n_tok, o, (double)Ys[i],
							  (double)Yg[i]);
					}
				/* and the whole range in one call */
				sets[si]->matmul_i8(Ys, Xq, xs, xsum, W, sw, n_tok, n_in, n_out, 0, n_out);
				CHECK_MSG(!memcmp(Ys, Yg, n_tok * n_out * 4), "%s int8 n_in %zu tok %zu whole",
					  sets[si]->name, n_in, n_tok);
			}
			munmap(xb, xl), munmap(wb, wl);
			free(xs), free(sw), free(xsum), free(Yg), free(Ys);
		}
}

static const size_t i4_n_ins[] = {128, 192, 320, 576, 1536};
static const size_t i4_groups[] = {32, 64, 128};

static void fill_i4(uint8_t *W, float *sc, uint8_t *z, size_t n_out, size_t n_in, size_t group,
		    uint64_t *s)
{
	for (size_t i = 0; i < n_out * n_in / 2; i++)
		W[i] = (uint8_t)test_rand_next(s);
	fill_scales(sc, n_out * (n_in / group), s);
	for (size_t i = 0; i < n_out * (n_in / group); i++)
		z[i] = (uint8_t)(test_rand_next(s) % 16);
}

TEST(int4_twins)
{
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT];
	size_t n_sets = simd_sets(sets);
	if (!n_sets)
		SKIP("no SIMD quantized set on this CPU");
	uint64_t seed = 0x9a1114;
	printf("  seed 0x%" PRIx64 "\n", seed);
	for (size_t gi = 0; gi < N_OF(i4_groups); gi++)
		for (size_t a = 0; a < N_OF(i4_n_ins); a++)
			for (size_t b = 0; b < N_OF(n_outs); b++)
				for (size_t c = 0; c < N_OF(n_toks); c++) {
					size_t G = i4_groups[gi], n_in = i4_n_ins[a];
					size_t n_out = n_outs[b], n_tok = n_toks[c];
					if (n_in % G)
						continue;
					size_t ng = n_in / G;
					float *X = malloc(n_tok * n_in * 4), *Xp = malloc(n_tok * n_in * 4);
					float *sc = malloc(n_out * ng * 4);
					uint8_t *z = malloc(n_out * ng), *W = malloc(n_out * n_in / 2);
					float *Yg = malloc(n_tok * n_out * 4), *Ys = malloc(n_tok * n_out * 4);
					CHECK(X && Xp && sc && z && W && Yg && Ys);
					fill_x(X, n_tok * n_in, &seed);
					fill_i4(W, sc, z, n_out, n_in, G, &seed);
					cpu_qkernels_generic.prepare_i4(Xp, X, n_tok, n_in, G);
					cpu_qkernels_generic.matmul_i4(Yg, Xp, W, sc, z, G, n_tok, n_in, n_out,
								       0, n_out);
					for (size_t si = 0; si < n_sets; si++) {
						sets[si]->prepare_i4(Xp, X, n_tok, n_in, G);
						sets[si]->matmul_i4(Ys, Xp, W, sc, z, G, n_tok, n_in, n_out, 0,
								    n_out);
						for (size_t t = 0; t < n_tok; t++)
							for (size_t o = 0; o < n_out; o++) {
								double abs_sum = 0;
								for (size_t k = 0; k < n_in; k++) {
									size_t g = o * ng + k / G;
									abs_sum += fabs(X[t * n_in + k] *
											num_i4_dequantize(
												num_i4_get(W + o * n_in / 2, k),
												sc[g], z[g]));
								}
								size_t i = t * n_out + o;
								CHECK_MSG(close_sum(Ys[i], Yg[i], abs_sum, n_in),
									  "%s int4 g%zu %zux%zu tok %zu [%zu][%zu]: "
									  "%.9g vs %.9g",
									  sets[si]->name, G, n_out, n_in, n_tok, t, o,
									  (double)Ys[i], (double)Yg[i]);
							}
					}
					free(X), free(Xp), free(sc), free(z), free(W), free(Yg), free(Ys);
				}
}

/* Rows of activations that exercise the quantizers: random magnitudes, plus rows with NaN,
 * Inf, zeros, subnormals, and a dense sweep of f32 values under a 448 (or 127) anchor that
 * makes the scale exactly 1. */
static void act_rows(float *X, size_t n_tok, size_t n_in, float anchor, uint64_t *s)
{
	for (size_t t = 0; t < n_tok; t++) {
		float *x = X + t * n_in;
		float mag = ldexpf(1.0f, (int)(test_rand_next(s) % 50) - 25);
		for (size_t k = 0; k < n_in; k++)
			x[k] = rand_nonzero(s) * mag;
		switch (t % 6) {
		case 1:
			x[test_rand_next(s) % n_in] = NAN;
			break;
		case 2:
			x[test_rand_next(s) % n_in] = -INFINITY;
			break;
		case 3:
			for (size_t k = 0; k < n_in; k++)
				x[k] = (k % 3) ? 0.0f : -0.0f;
			break;
		case 4:
			for (size_t k = 0; k < n_in; k++)
				x[k] = num_bits_f32((uint32_t)test_rand_next(s) & 0x807fffffu);
			break;
		case 5: /* scale 1: codes of every f32 below the anchor, ties included */
			x[0] = anchor;
			for (size_t k = 1; k < n_in; k++) {
				uint32_t u = (uint32_t)test_rand_next(s);
				float v = num_bits_f32((u & 0x807fffffu) | ((u % 24 + 112) << 23));
				x[k] = fabsf(v) <= anchor ? v : v * 0.25f;
				if (fabsf(x[k]) > anchor)
					x[k] = anchor * 0.5f;
				if (k % 4 == 1 || k % 4 == 3) { /* exact ties, and their neighbours */
					float tie;
					if (anchor == 448.0f) {
						uint8_t c = (uint8_t)(test_rand_next(s) % 0x7e);
						tie = (num_e4m3_to_f32(c) + num_e4m3_to_f32((uint8_t)(c + 1))) / 2;
					} else {
						tie = (float)((int)(test_rand_next(s) % 254) - 127) + 0.5f;
					}
					if (k % 4 == 3)
						tie = nextafterf(tie, (u & 1) ? INFINITY : -INFINITY);
					x[k] = (u & 2) ? -tie : tie;
				}
			}
			break;
		}
	}
}

TEST(activation_quantizers_bit_exact)
{
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT];
	size_t n_sets = simd_sets(sets);
	if (!n_sets)
		SKIP("no SIMD quantized set on this CPU");
	uint64_t seed = 0x9a11ac;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const size_t n_tok = 60;
	for (size_t a = 0; a < N_OF(n_ins); a++) {
		size_t n_in = n_ins[a];
		float *X = malloc(n_tok * n_in * 4), *Xg = malloc(n_tok * n_in * 4);
		float *Xs = malloc(n_tok * n_in * 4), xsg[60], xss[60];
		int8_t *Qg = malloc(n_tok * n_in), *Qs = malloc(n_tok * n_in);
		int32_t sg[60], ss[60];
		CHECK(X && Xg && Xs && Qg && Qs);
		for (size_t si = 0; si < n_sets; si++) {
			act_rows(X, n_tok, n_in, 448.0f, &seed);
			cpu_qkernels_generic.quantize_e4m3_act(Xg, xsg, X, n_tok, n_in);
			sets[si]->quantize_e4m3_act(Xs, xss, X, n_tok, n_in);
			CHECK_MSG(memcmp(xsg, xss, sizeof(float) * n_tok) == 0, "e4m3 scales n_in %zu",
				  n_in);
			for (size_t i = 0; i < n_tok * n_in; i++)
				CHECK_MSG(num_f32_bits(Xg[i]) == num_f32_bits(Xs[i]),
					  "%s e4m3 act n_in %zu elem %zu: x %.9g -> 0x%08" PRIx32
					  " vs 0x%08" PRIx32,
					  sets[si]->name, n_in, i, (double)X[i], num_f32_bits(Xs[i]),
					  num_f32_bits(Xg[i]));
			act_rows(X, n_tok, n_in, 127.0f, &seed);
			cpu_qkernels_generic.quantize_i8_act(Qg, xsg, sg, X, n_tok, n_in);
			sets[si]->quantize_i8_act(Qs, xss, ss, X, n_tok, n_in);
			CHECK(memcmp(xsg, xss, sizeof(float) * n_tok) == 0);
			CHECK(memcmp(sg, ss, sizeof(int32_t) * n_tok) == 0);
			for (size_t i = 0; i < n_tok * n_in; i++)
				CHECK_MSG(Qg[i] == Qs[i], "%s i8 act n_in %zu elem %zu: x %.9g -> %d vs %d",
					  sets[si]->name, n_in, i, (double)X[i], Qs[i], Qg[i]);
		}
		free(X), free(Xg), free(Xs), free(Qg), free(Qs);
	}
}

/* ---- generic twins against float64 references of dequantize(W) X ------------------------- */

/* Y (n_tok, n_out) in double from dequantized weights Wd (n_out, n_in). */
static void ref_matmul(double *Y, double *abs_sum, const float *X, const float *Wd, size_t n_tok,
		       size_t n_in, size_t n_out)
{
	for (size_t t = 0; t < n_tok; t++)
		for (size_t o = 0; o < n_out; o++) {
			double s = 0, a = 0;
			for (size_t k = 0; k < n_in; k++) {
				double p = (double)X[t * n_in + k] * (double)Wd[o * n_in + k];
				s += p;
				a += fabs(p);
			}
			Y[t * n_out + o] = s;
			abs_sum[t * n_out + o] = a;
		}
}

TEST(generic_vs_float64)
{
	uint64_t seed = 0x9a11d6;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const cpu_qkernel_set *qk = &cpu_qkernels_generic;
	const size_t n_in_list[] = {3, 33, 129, 576, 256, 1536};
	for (size_t a = 0; a < N_OF(n_in_list); a++)
		for (size_t c = 0; c < N_OF(n_toks); c += 2) {
			size_t n_in = n_in_list[a], n_out = 17, n_tok = n_toks[c];
			float *W = malloc(n_out * n_in * 4), *Wd = malloc(n_out * n_in * 4);
			float *X = malloc(n_tok * n_in * 4), *Y = malloc(n_tok * n_out * 4);
			double *R = malloc(n_tok * n_out * 8), *A = malloc(n_tok * n_out * 8);
			CHECK(W && Wd && X && Y && R && A);
			fill_x(W, n_out * n_in, &seed);
			fill_x(X, n_tok * n_in, &seed);
			for (int f = 0; f < QUANT_FMT_COUNT; f++) {
				quant_matrix m;
				size_t group = n_in % 128 == 0 ? 128 : 32;
				if (f == QUANT_INT4 && n_in % 32)
					continue;
				CHECK(quant_matrix_new(&m, (quant_fmt)f, W, n_out, n_in, group, NULL) ==
				      OS_OK);
				quant_matrix_dequantize(&m, Wd);
				ref_matmul(R, A, X, Wd, n_tok, n_in, n_out);
				int rc = f == QUANT_FP8_E4M3
						 ? cpu_qmatmul_fp8(NULL, qk, Y, X, m.data, m.scales, n_tok,
								   n_in, n_out, false)
					 : f == QUANT_INT4
						 ? cpu_qmatmul_i4(NULL, qk, Y, X, m.data, m.scales, m.zeros,
								  group, n_tok, n_in, n_out)
						 : OS_OK;
				CHECK(rc == OS_OK);
				if (f != QUANT_INT8)
					for (size_t i = 0; i < n_tok * n_out; i++)
						CHECK_MSG(close_sum(Y[i], R[i], A[i], n_in),
							  "%s n_in %zu: %.9g vs %.9g", quant_fmt_name((quant_fmt)f),
							  n_in, (double)Y[i], R[i]);
				if (f == QUANT_INT8) {
					/* W8A8: reference with the activations quantized per token */
					CHECK(cpu_qmatmul_i8(NULL, qk, Y, X, m.data, m.scales, n_tok, n_in,
							     n_out) == OS_OK);
					for (size_t t = 0; t < n_tok; t++) {
						const float *x = X + t * n_in;
						float am = 0;
						for (size_t k = 0; k < n_in; k++)
							am = fmaxf(am, fabsf(x[k]));
						float xs = am / 127.0f, inv = 1.0f / xs;
						for (size_t o = 0; o < n_out; o++) {
							int64_t acc = 0;
							for (size_t k = 0; k < n_in; k++)
								acc += (int64_t)num_i8_quantize(x[k], inv) *
								       ((int8_t *)m.data)[o * n_in + k];
							double want = (double)acc * xs * m.scales[o];
							CHECK_MSG(fabs(Y[t * n_out + o] - want) <= 1e-6 * fabs(want) + 1e-30,
								  "int8 n_in %zu: %.9g vs %.9g", n_in,
								  (double)Y[t * n_out + o], want);
						}
					}
				}
				if (f == QUANT_FP8_E4M3) {
					/* W8A8 emulation: exact products of E4M3 values, scaled */
					CHECK(cpu_qmatmul_fp8(NULL, qk, Y, X, m.data, m.scales, n_tok, n_in,
							      n_out, true) == OS_OK);
					for (size_t t = 0; t < n_tok; t++) {
						const float *x = X + t * n_in;
						float am = 0;
						for (size_t k = 0; k < n_in; k++)
							am = fmaxf(am, fabsf(x[k]));
						float xs = am / 448.0f, inv = 1.0f / xs;
						for (size_t o = 0; o < n_out; o++) {
							double s = 0, abs_s = 0;
							for (size_t k = 0; k < n_in; k++) {
								double p = (double)num_e4m3_to_f32(num_f32_to_e4m3(x[k] * inv)) *
									   num_e4m3_to_f32(((uint8_t *)m.data)[o * n_in + k]);
								s += p;
								abs_s += fabs(p);
							}
							double sc = (double)xs * m.scales[o];
							CHECK_MSG(close_sum(Y[t * n_out + o], s * sc, abs_s * sc, n_in),
								  "fp8 w8a8 n_in %zu: %.9g vs %.9g", n_in,
								  (double)Y[t * n_out + o], s * sc);
						}
					}
				}
				quant_matrix_free(&m);
			}
			free(W), free(Wd), free(X), free(Y), free(R), free(A);
		}
}

/* ---- threaded wrappers ------------------------------------------------------------------- */

TEST(threads_do_not_change_results)
{
	uint64_t seed = 0x9a1177;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const cpu_qkernel_set *qk;
	CHECK(cpu_qkernels_select(&qk, NULL) == OS_OK);
	/* a batch, one decode token on a 200-row matrix (a few tasks of unequal size), a
	 * prefill (the tiled paths; INT8 of the amx set: tasks of whole 32-row panels), and one
	 * whose activations are prepared over the threads too (61 x 576 >= QACT_PAR_MIN: token
	 * rows split 31 + 30 on 2 threads, 21 + 21 + 19 on 3) */
	static const size_t shapes[][2] = {{1003, 5}, {200, 1}, {331, 37}, {97, 61}};
	for (size_t sh = 0; sh < N_OF(shapes); sh++) {
		size_t n_in = 576, n_out = shapes[sh][0], n_tok = shapes[sh][1];
		float *W = malloc(n_out * n_in * 4), *X = malloc(n_tok * n_in * 4);
		float *Y1 = malloc(n_tok * n_out * 4), *Yn = malloc(n_tok * n_out * 4);
		CHECK(W && X && Y1 && Yn);
		fill_x(W, n_out * n_in, &seed);
		fill_x(X, n_tok * n_in, &seed);
		quant_matrix m[3];
		for (int f = 0; f < 3; f++)
			CHECK(quant_matrix_new(&m[f], (quant_fmt)f, W, n_out, n_in, 64, NULL) == OS_OK);
		for (size_t nt = 2; nt <= 3; nt++) {
			threadpool *pool;
			CHECK(threadpool_new(&pool, nt, NULL) == OS_OK);
			for (int v = 0; v < 4; v++) {
				threadpool *pools[2] = {NULL, pool};
				float *Ys[2] = {Y1, Yn};
				for (int p = 0; p < 2; p++) {
					int rc = v == 0 ? cpu_qmatmul_fp8(pools[p], qk, Ys[p], X, m[0].data,
									  m[0].scales, n_tok, n_in, n_out, false)
					       : v == 1 ? cpu_qmatmul_fp8(pools[p], qk, Ys[p], X, m[0].data,
									  m[0].scales, n_tok, n_in, n_out, true)
					       : v == 2 ? cpu_qmatmul_i8(pools[p], qk, Ys[p], X, m[1].data,
									 m[1].scales, n_tok, n_in, n_out)
							: cpu_qmatmul_i4(pools[p], qk, Ys[p], X, m[2].data,
									 m[2].scales, m[2].zeros, 64, n_tok, n_in,
									 n_out);
					CHECK(rc == OS_OK);
				}
				CHECK_MSG(memcmp(Y1, Yn, n_tok * n_out * 4) == 0,
					  "variant %d, %zu threads, %zux%zu tok %zu", v, nt, n_out, n_in,
					  n_tok);
			}
			threadpool_free(pool);
		}
		CHECK(cpu_qmatmul_i4(NULL, qk, Y1, X, m[2].data, m[2].scales, m[2].zeros, 48, n_tok, n_in,
				     n_out) == OS_EUSAGE);
		CHECK(cpu_qmatmul_i8(NULL, qk, Y1, X, m[1].data, m[1].scales, 1, CPU_QI8_MAX_IN + 1, 1) ==
		      OS_EUSAGE);
		for (int f = 0; f < 3; f++)
			quant_matrix_free(&m[f]);
		free(W), free(X), free(Y1), free(Yn);
	}
}

/* Every set's matmuls over row ranges [o0, o1) that start anywhere (tasks and the row tiles
 * inside them do not line up with 0): the pieces give the whole call's Y bit for bit, and
 * rows outside the range are not written. */
TEST(row_ranges)
{
	uint64_t seed = 0x9a11a0;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const size_t n_in = 192, n_out = 61, G = 64, ng = n_in / G;
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT + 1];
	size_t n_sets = simd_sets(sets);
	sets[n_sets++] = &cpu_qkernels_generic;
	uint8_t *W8 = malloc(n_out * n_in), *W4 = malloc(n_out * n_in / 2), *z = malloc(n_out * ng);
	float *sw = malloc(n_out * 4), *sc = malloc(n_out * ng * 4), *xs = malloc(2 * 4);
	float *X = malloc(2 * n_in * 4), *Xp = malloc(2 * n_in * 4);
	float *Yw = malloc(2 * n_out * 4), *Yp = malloc(2 * n_out * 4);
	int8_t *Xq = malloc(2 * n_in);
	int32_t *xsum = malloc(2 * 4);
	CHECK(W8 && W4 && z && sw && sc && xs && X && Xp && Yw && Yp && Xq && xsum);
	fill_e4m3(W8, n_out * n_in, &seed);
	fill_scales(sw, n_out, &seed);
	fill_i4(W4, sc, z, n_out, n_in, G, &seed);
	fill_x(X, 2 * n_in, &seed);
	for (size_t si = 0; si < n_sets; si++) {
		const cpu_qkernel_set *qk = sets[si];
		qk->quantize_i8_act(Xq, xs, xsum, X, 2, n_in);
		qk->prepare_i4(Xp, X, 2, n_in, G);
		for (size_t n_tok = 1; n_tok <= 2; n_tok++)
			for (int v = 0; v < 3; v++) {
				for (int whole = 1; whole >= 0; whole--) {
					float *Y = whole ? Yw : Yp;
					for (size_t i = 0; i < 2 * n_out; i++)
						Y[i] = -7.0f; /* sentinel */
					/* whole: [0, n_out); pieces: [5, 9), [9, 22), [22, 39), the
					 * rest untouched but for [50, 61) */
					static const size_t cuts[][2] = {{5, 9}, {9, 22}, {22, 39}, {50, 61}};
					for (size_t c = 0; c < (whole ? 1 : N_OF(cuts)); c++) {
						size_t o0 = whole ? 0 : cuts[c][0];
						size_t o1 = whole ? n_out : cuts[c][1];
						if (v == 0)
							qk->matmul_fp8(Y, X, W8, sw, n_tok, n_in, n_out, o0, o1);
						else if (v == 1)
							qk->matmul_i8(Y, Xq, xs, xsum, (const int8_t *)W8, sw,
								      n_tok, n_in, n_out, o0, o1);
						else
							qk->matmul_i4(Y, Xp, W4, sc, z, G, n_tok, n_in, n_out,
								      o0, o1);
					}
				}
				for (size_t t = 0; t < n_tok; t++)
					for (size_t o = 0; o < n_out; o++) {
						size_t i = t * n_out + o;
						bool in = (o >= 5 && o < 39) || o >= 50;
						CHECK_MSG(in ? !memcmp(&Yp[i], &Yw[i], 4) : Yp[i] == -7.0f,
							  "%s variant %d tok %zu/%zu row %zu: %.9g vs %.9g",
							  qk->name, v, t, n_tok, o, (double)Yp[i],
							  (double)Yw[i]);
					}
			}
	}
	free(W8), free(W4), free(z), free(sw), free(sc), free(xs), free(X), free(Xp);
	free(Yw), free(Yp), free(Xq), free(xsum);
}

/* ---- the prefill path (n_tok >= CPU_QTILE_MIN_TOK) ------------------------------------------ */

/* The wrappers' decoded-tile path of every set, threaded and not, against the generic tile
 * kernels called directly (which never take it): FP8 W8A16, FP8 W8A8 (activations quantized
 * per token by the generic quantizer, then the scales) and INT4, within the f32 summation
 * bound; and the decoders bit-identical to the generic ones. */
TEST(prefill_path_vs_twin)
{
	uint64_t seed = 0x9a1171;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT + 1] = {&cpu_qkernels_generic};
	size_t n_sets = 1 + simd_sets(sets + 1);
	threadpool *pool;
	CHECK(threadpool_new(&pool, 2, NULL) == OS_OK);
	const cpu_qkernel_set *g = &cpu_qkernels_generic;
	float lut[256];
	num_e4m3_table(lut);
	const size_t toks[] = {CPU_QTILE_MIN_TOK, 45, 130};
	const size_t ins[] = {64, 160, 576, 1536}, outs[] = {17, 300};
	for (size_t a = 0; a < N_OF(ins); a++)
		for (size_t b = 0; b < N_OF(outs); b++)
			for (size_t c = 0; c < N_OF(toks); c++) {
				size_t n_in = ins[a], n_out = outs[b], n_tok = toks[c];
				size_t group = n_in % 64 == 0 ? 64 : 32, ng = n_in / group;
				float *X = malloc(n_tok * n_in * 4), *Xd = malloc(n_tok * n_in * 4);
				float *xs = malloc(n_tok * 4), *sw = malloc(n_out * 4);
				float *i4s = malloc(n_out * ng * 4), *Wd = malloc(n_out * n_in * 4);
				float *Wd2 = malloc(n_out * n_in * 4);
				float *R = malloc(n_tok * n_out * 4), *Y = malloc(n_tok * n_out * 4);
				float *Y1 = malloc(n_tok * n_out * 4);
				uint8_t *W8 = malloc(n_out * n_in), *W4 = malloc(n_out * n_in / 2);
				uint8_t *z = malloc(n_out * ng);
				CHECK(X && Xd && xs && sw && i4s && Wd && Wd2 && R && Y && Y1 && W8 && W4 && z);
				fill_x(X, n_tok * n_in, &seed);
				fill_e4m3(W8, n_out * n_in, &seed);
				fill_scales(sw, n_out, &seed);
				fill_scales(i4s, n_out * ng, &seed);
				for (size_t i = 0; i < n_out * n_in / 2; i++)
					W4[i] = (uint8_t)test_rand_next(&seed);
				for (size_t i = 0; i < n_out * ng; i++)
					z[i] = (uint8_t)(test_rand_next(&seed) % 16);
				for (int v = 0; v < 3; v++) {
					/* the reference, and |terms| for the bound (per output, scaled) */
					const float *Xr = X;
					if (v == 1) {
						g->quantize_e4m3_act(Xd, xs, X, n_tok, n_in);
						Xr = Xd;
					}
					if (v < 2)
						g->matmul_fp8(R, Xr, W8, sw, n_tok, n_in, n_out, 0, n_out);
					else
						g->matmul_i4(R, X, W4, i4s, z, group, n_tok, n_in, n_out, 0,
							     n_out);
					for (size_t o = 0; o < n_out; o++)
						g->decode_i4_row(Wd + o * n_in, W4 + o * n_in / 2, i4s + o * ng,
								 z + o * ng, group, n_in);
					for (size_t si = 0; si < n_sets; si++) {
						const cpu_qkernel_set *qk = sets[si];
						/* decoders: bit-identical */
						qk->decode_fp8(Wd2, W8, n_out * n_in);
						for (size_t i = 0; i < n_out * n_in; i++)
							if (memcmp(&Wd2[i], &lut[W8[i]], 4)) {
								CHECK_MSG(0, "%s decode_fp8 [%zu]", qk->name, i);
								break;
							}
						for (size_t o = 0; o < n_out; o++)
							qk->decode_i4_row(Wd2 + o * n_in, W4 + o * n_in / 2,
									  i4s + o * ng, z + o * ng, group, n_in);
						CHECK_MSG(!memcmp(Wd, Wd2, n_out * n_in * 4), "%s decode_i4",
							  qk->name);
						for (int p = 0; p < 2; p++) {
							threadpool *tp = p ? pool : NULL;
							float *out = p ? Y1 : Y;
							int rc = v < 2 ? cpu_qmatmul_fp8(tp, qk, out, X, W8, sw, n_tok,
											 n_in, n_out, v == 1)
								       : cpu_qmatmul_i4(tp, qk, out, X, W4, i4s, z,
											group, n_tok, n_in, n_out);
							CHECK(rc == OS_OK);
						}
						CHECK_MSG(!memcmp(Y, Y1, n_tok * n_out * 4),
							  "%s variant %d: threads change the result", qk->name, v);
						int bad = 0;
						for (size_t t = 0; t < n_tok && !bad; t++)
							for (size_t o = 0; o < n_out && !bad; o++) {
								double abs_sum = 0;
								for (size_t k = 0; k < n_in; k++)
									abs_sum += v < 2 ? fabs(Xr[t * n_in + k] *
												lut[W8[o * n_in + k]])
											 : fabs(X[t * n_in + k] *
												Wd[o * n_in + k]);
								double want = R[t * n_out + o];
								if (v < 2)
									abs_sum *= sw[o];
								if (v == 1) {
									want *= xs[t];
									abs_sum *= xs[t];
								}
								double got = Y[t * n_out + o];
								if (!close_sum(got, want, abs_sum, n_in)) {
									CHECK_MSG(0, "%s variant %d %zux%zu tok %zu "
										  "[%zu][%zu]: %.9g vs %.9g",
										  qk->name, v, n_out, n_in, n_tok, t, o,
										  got, want);
									bad = 1;
								}
							}
					}
				}
				free(X), free(Xd), free(xs), free(sw), free(i4s), free(Wd), free(Wd2);
				free(R), free(Y), free(Y1), free(W8), free(W4), free(z);
			}
	threadpool_free(pool);
}

/* ---- INT4 on AMX-BF16 tiles (the amx set's matmul_i4_tiles) --------------------------------- */

/* The amx set when it has the INT4 tile path on this CPU, else NULL (the callers SKIP). */
static const cpu_qkernel_set *i4_tiles_set(void)
{
	const cpu_qkernel_set *qk = cpu_qkernels_get(CPU_ISA_AMX);
	return qk && qk->matmul_i4_tiles ? qk : NULL;
}

/* Element k of token t's plane p in prepare_bf16x3's layout (kernels_quant.h). */
static float i4_plane_at(const uint32_t *Xv, size_t n_in, size_t t, size_t p, size_t k)
{
	uint32_t pair = Xv[((3 * (t / 16) + p) * (n_in / 2) + k / 2) * 16 + t % 16];
	return num_bf16_to_f32((uint16_t)(k % 2 ? pair >> 16 : pair));
}

/* The planes: hi the bf16 nearest x (ties to even), hi + mid + lo == x exactly, for
 * activations of every magnitude from 2^-40 to 2^40, Inf carried by hi alone, and tokens
 * past n_tok (up to the block of 16) zero. */
TEST(int4_tiles_planes_exact)
{
	const cpu_qkernel_set *qk = i4_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 INT4 tile path on this CPU (needs the amx set)");
	uint64_t seed = 0x9a11b3;
	printf("  seed 0x%" PRIx64 "\n", seed);
	static const size_t toks[] = {1, 15, 16, 17, 33};
	static const size_t ins[] = {32, 96, 576};
	for (size_t a = 0; a < N_OF(ins); a++)
		for (size_t c = 0; c < N_OF(toks); c++) {
			size_t n_in = ins[a], n_tok = toks[c], n_pad = (n_tok + 15) / 16 * 16;
			float *X = malloc(n_tok * n_in * 4);
			uint32_t *Xv = cpu_alloc_aligned(CPU_BF16X3_PLANES(n_tok, n_in) * 4);
			CHECK(X && Xv);
			CHECK(CPU_BF16X3_PLANES(n_tok, n_in) == n_pad * 3 * n_in / 2);
			for (size_t i = 0; i < n_tok * n_in; i++)
				X[i] = ldexpf(rand_nonzero(&seed), (int)(test_rand_next(&seed) % 81) - 40);
			X[0] = INFINITY;
			memset(Xv, 0xa5, CPU_BF16X3_PLANES(n_tok, n_in) * 4);
			qk->prepare_bf16x3(Xv, X, n_tok, n_in);
			for (size_t t = 0; t < n_pad; t++)
				for (size_t k = 0; k < n_in; k++) {
					float hi = i4_plane_at(Xv, n_in, t, 0, k);
					float mid = i4_plane_at(Xv, n_in, t, 1, k);
					float lo = i4_plane_at(Xv, n_in, t, 2, k);
					float x = t < n_tok ? X[t * n_in + k] : 0.0f;
					bool ok = t == 0 && k == 0
							  ? hi == INFINITY && mid == 0.0f && lo == 0.0f
							  : num_f32_to_bf16(x) == num_f32_to_bf16(hi) &&
								    (double)hi + mid + lo == (double)x;
					CHECK_MSG(ok, "n_in %zu tok %zu/%zu [%zu]: %.9g = %.9g + %.9g + %.9g",
						  n_in, t, n_tok, k, (double)x, (double)hi, (double)mid,
						  (double)lo);
				}
			free(X);
			cpu_free_aligned(Xv);
		}
}

/* The float64 reference of one output: sum_k x[k] * s * (q - z), x rounded to bf16 first when
 * hi_only (what one plane alone would compute); *abs_sum = sum_k |x s (q - z)|. */
static double i4_ref(const float *x, const uint8_t *w, const float *s, const uint8_t *z,
		     size_t group, size_t n_in, bool hi_only, double *abs_sum)
{
	double sum = 0, abs = 0;
	for (size_t k = 0; k < n_in; k++) {
		double xv = hi_only ? num_bf16_to_f32(num_f32_to_bf16(x[k])) : x[k];
		double wv = (double)s[k / group] * ((int)num_i4_get(w, k) - (int)z[k / group]);
		sum += xv * wv;
		abs += fabs(xv * wv);
	}
	*abs_sum = abs;
	return sum;
}

/* The tile kernel against float64 at awkward sizes (rows not a multiple of the 32-row panel,
 * tokens around the 16-token blocks), within the bound of kernels_quant.h:
 * (3 G + n_in / G + 2) 2^-24 sum |x w| (each group's 3 G exact products summed in f32, then
 * n_in / G scaled partials, one rounding each). That bound is tight enough to tell the three
 * planes from the hi plane alone: bf16-rounded activations miss it on most outputs, and the
 * kernel's worst error must be 64 x below theirs. */
TEST(int4_tiles_vs_float64)
{
	const cpu_qkernel_set *qk = i4_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 INT4 tile path on this CPU (needs the amx set)");
	uint64_t seed = 0x9a11b4;
	printf("  seed 0x%" PRIx64 "\n", seed);
	static const size_t toks[] = {1, 15, 16, 17, 33, 70};
	static const size_t ins[] = {96, 384, 576}, outs[] = {37, 100}, groups[] = {32, 64, 128};
	for (size_t a = 0; a < N_OF(ins); a++)
		for (size_t gi = 0; gi < N_OF(groups); gi++)
			for (size_t b = 0; b < N_OF(outs); b++)
				for (size_t c = 0; c < N_OF(toks); c++) {
					size_t n_in = ins[a], G = groups[gi], n_out = outs[b], n_tok = toks[c];
					if (n_in % G)
						continue;
					size_t ng = n_in / G;
					float *X = malloc(n_tok * n_in * 4), *sc = malloc(n_out * ng * 4);
					float *Y = malloc(n_tok * n_out * 4);
					uint8_t *W = malloc(n_out * n_in / 2), *z = malloc(n_out * ng);
					uint32_t *Xv = cpu_alloc_aligned(CPU_BF16X3_PLANES(n_tok, n_in) * 4);
					void *scr = cpu_alloc_aligned(CPU_QTILES_SCRATCH(n_in));
					CHECK(X && sc && Y && W && z && Xv && scr);
					fill_x(X, n_tok * n_in, &seed);
					fill_i4(W, sc, z, n_out, n_in, G, &seed);
					qk->prepare_bf16x3(Xv, X, n_tok, n_in);
					qk->matmul_i4_tiles(Y, Xv, W, sc, z, G, n_tok, n_in, n_out, 0, n_out,
							    scr);
					double worst = 0, worst_hi = 0;
					size_t hi_out = 0;
					for (size_t t = 0; t < n_tok; t++)
						for (size_t o = 0; o < n_out; o++) {
							double abs_sum, abs_hi;
							const float *x = X + t * n_in, *s = sc + o * ng;
							const uint8_t *w = W + o * n_in / 2, *zo = z + o * ng;
							double want = i4_ref(x, w, s, zo, G, n_in, false, &abs_sum);
							double hi = i4_ref(x, w, s, zo, G, n_in, true, &abs_hi);
							double bound = (3.0 * (double)G + (double)ng + 2.0) *
								       ldexp(1.0, -24) * abs_sum;
							double got = Y[t * n_out + o];
							CHECK_MSG(fabs(got - want) <= bound,
								  "g%zu %zux%zu tok %zu [%zu][%zu]: %.9g vs %.9g "
								  "(bound %.3g)",
								  G, n_out, n_in, n_tok, t, o, got, want, bound);
							hi_out += fabs(hi - want) > bound;
							worst = fmax(worst, fabs(got - want) / abs_sum);
							worst_hi = fmax(worst_hi, fabs(hi - want) / abs_sum);
						}
					CHECK_MSG(hi_out * 2 > n_tok * n_out,
						  "g%zu %zux%zu tok %zu: the bound does not tell the hi plane "
						  "alone (%zu of %zu outputs outside)",
						  G, n_out, n_in, n_tok, hi_out, n_tok * n_out);
					CHECK_MSG(worst * 64 < worst_hi,
						  "g%zu %zux%zu tok %zu: worst relative error %.3g, hi plane "
						  "alone %.3g",
						  G, n_out, n_in, n_tok, worst, worst_hi);
					free(X), free(sc), free(Y), free(W), free(z);
					cpu_free_aligned(Xv), cpu_free_aligned(scr);
				}
}

/* The wrapper takes the tile path from i4_tiles_min_tok tokens on (its output is the kernel's,
 * bit for bit) whatever the threads (1, 2, 3: tasks of whole panels) or the rows a call
 * covers (any range gives the whole call's bits and writes nothing outside); and the
 * batch-invariant twin never takes it: each token's output is that token's alone. */
TEST(int4_tiles_threads_ranges_twin)
{
	const cpu_qkernel_set *qk = i4_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 INT4 tile path on this CPU (needs the amx set)");
	const cpu_qkernel_set *bi = cpu_qkernels_batch_invariant(qk);
	CHECK(bi != qk && bi->matmul_i4_tiles == NULL);
	uint64_t seed = 0x9a11b5;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const size_t n_in = 576, G = 64, ng = n_in / G, n_out = 203;
	size_t n_tok = qk->i4_tiles_min_tok + 21;
	float *X = malloc(n_tok * n_in * 4), *sc = malloc(n_out * ng * 4);
	float *Yk = malloc(n_tok * n_out * 4), *Y = malloc(n_tok * n_out * 4);
	float *Y1 = malloc(n_out * 4);
	uint8_t *W = malloc(n_out * n_in / 2), *z = malloc(n_out * ng);
	uint32_t *Xv = cpu_alloc_aligned(CPU_BF16X3_PLANES(n_tok, n_in) * 4);
	void *scr = cpu_alloc_aligned(CPU_QTILES_SCRATCH(n_in));
	CHECK(X && sc && Yk && Y && Y1 && W && z && Xv && scr);
	fill_x(X, n_tok * n_in, &seed);
	fill_i4(W, sc, z, n_out, n_in, G, &seed);
	qk->prepare_bf16x3(Xv, X, n_tok, n_in);
	qk->matmul_i4_tiles(Yk, Xv, W, sc, z, G, n_tok, n_in, n_out, 0, n_out, scr);
	for (size_t nt = 1; nt <= 3; nt++) {
		threadpool *pool = NULL;
		if (nt > 1)
			CHECK(threadpool_new(&pool, nt, NULL) == OS_OK);
		memset(Y, 0, n_tok * n_out * 4);
		CHECK(cpu_qmatmul_i4(pool, qk, Y, X, W, sc, z, G, n_tok, n_in, n_out) == OS_OK);
		CHECK_MSG(!memcmp(Y, Yk, n_tok * n_out * 4), "%zu threads: not the tile kernel's bits",
			  nt);
		threadpool_free(pool);
	}
	/* row ranges that start anywhere, rows outside untouched */
	static const size_t cuts[][2] = {{0, 5}, {5, 40}, {40, 41}, {41, 100}, {130, 203}};
	for (size_t i = 0; i < n_tok * n_out; i++)
		Y[i] = -7.0f;
	for (size_t c = 0; c < N_OF(cuts); c++)
		qk->matmul_i4_tiles(Y, Xv, W, sc, z, G, n_tok, n_in, n_out, cuts[c][0], cuts[c][1],
				    scr);
	for (size_t t = 0; t < n_tok; t++)
		for (size_t o = 0; o < n_out; o++) {
			size_t i = t * n_out + o;
			CHECK_MSG(o >= 100 && o < 130 ? Y[i] == -7.0f : !memcmp(&Y[i], &Yk[i], 4),
				  "row ranges: tok %zu row %zu: %.9g vs %.9g", t, o, (double)Y[i],
				  (double)Yk[i]);
		}
	/* up to 16 tokens the kernel decodes each k step's weights just before its tiles
	 * (i4_tiles_fused16): the same products in the same order as the blocked path, so those
	 * tokens get the bits they have in the whole call, over whole and cut row ranges */
	static const size_t few[] = {1, 5, 16};
	for (size_t f = 0; f < N_OF(few); f++) {
		size_t nf = few[f];
		qk->prepare_bf16x3(Xv, X, nf, n_in);
		for (int cut = 0; cut < 2; cut++) {
			for (size_t i = 0; i < nf * n_out; i++)
				Y[i] = -7.0f;
			if (cut)
				for (size_t c = 0; c < N_OF(cuts); c++)
					qk->matmul_i4_tiles(Y, Xv, W, sc, z, G, nf, n_in, n_out, cuts[c][0],
							    cuts[c][1], scr);
			else
				qk->matmul_i4_tiles(Y, Xv, W, sc, z, G, nf, n_in, n_out, 0, n_out, scr);
			size_t bad = 0;
			for (size_t t = 0; t < nf; t++)
				for (size_t o = 0; o < n_out; o++) {
					size_t i = t * n_out + o;
					bad += cut && o >= 100 && o < 130 ? Y[i] != -7.0f
									  : memcmp(&Y[i], &Yk[i], 4) != 0;
				}
			CHECK_MSG(bad == 0, "%zu tokens%s: %zu values differ from the %zu-token call", nf,
				  cut ? " (cut ranges)" : "", bad, n_tok);
		}
	}
	/* the twin: a token alone gives the batch's bits */
	CHECK(cpu_qmatmul_i4(NULL, bi, Y, X, W, sc, z, G, n_tok, n_in, n_out) == OS_OK);
	for (size_t t = 0; t < n_tok; t += 7) {
		CHECK(cpu_qmatmul_i4(NULL, bi, Y1, X + t * n_in, W, sc, z, G, 1, n_in, n_out) ==
		      OS_OK);
		CHECK_MSG(!memcmp(Y1, Y + t * n_out, n_out * 4), "%s twin: token %zu of %zu differs",
			  bi->name, t, n_tok);
	}
	free(X), free(sc), free(Yk), free(Y), free(Y1), free(W), free(z);
	cpu_free_aligned(Xv), cpu_free_aligned(scr);
}

/* ---- FP8 W8A16 on AMX-BF16 tiles (the amx set's matmul_fp8_tiles) ------------------------- */

/* The amx set when it has the FP8 tile path on this CPU, else NULL (the callers SKIP). */
static const cpu_qkernel_set *fp8_tiles_set(void)
{
	const cpu_qkernel_set *qk = cpu_qkernels_get(CPU_ISA_AMX);
	return qk && qk->matmul_fp8_tiles ? qk : NULL;
}

/* Only the amx set has the path (and its decoder); the avx512 set and both twins do not. */
TEST(fp8_tiles_membership)
{
	CHECK(cpu_qkernels_generic.matmul_fp8_tiles == NULL);
	CHECK(cpu_qkernels_avx512.matmul_fp8_tiles == NULL);
	CHECK(cpu_qkernels_avx512_bi.matmul_fp8_tiles == NULL);
	CHECK(cpu_qkernels_amx_bi.matmul_fp8_tiles == NULL);
	CHECK(cpu_qkernels_amx.matmul_fp8_tiles && cpu_qkernels_amx.decode_fp8_bf16 &&
	      cpu_qkernels_amx.prepare_bf16x3);
	CHECK(cpu_qkernels_batch_invariant(&cpu_qkernels_amx) == &cpu_qkernels_amx_bi);
}

/* E4M3 -> bf16 is exact for every code but the two NaNs: the bf16 is that of the code's f32
 * value and converts back to it. All 254 codes in one call (odd length: the masked tail),
 * nothing written past n. */
TEST(fp8_tiles_decode_every_code)
{
	const cpu_qkernel_set *qk = fp8_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 FP8 tile path on this CPU (needs the amx set)");
	uint8_t codes[256];
	uint16_t out[256 + 1];
	size_t n = 0;
	for (int c = 0; c < 256; c++)
		if ((c & 0x7f) != 0x7f)
			codes[n++] = (uint8_t)c;
	CHECK_EQ_INT(n, 254);
	for (size_t start = 0; start < 2; start++) { /* whole and masked 32-code steps */
		size_t m = n - start;
		out[m] = 0xdead;
		qk->decode_fp8_bf16(out, codes + start, m);
		CHECK_MSG(out[m] == 0xdead, "decode wrote past n = %zu", m);
		for (size_t i = 0; i < m; i++) {
			uint8_t c = codes[start + i];
			float v = num_e4m3_to_f32(c);
			CHECK_MSG(out[i] == num_f32_to_bf16(v) && num_bf16_to_f32(out[i]) == v,
				  "code 0x%02x: bf16 0x%04x (%.9g), want %.9g", c, out[i],
				  (double)num_bf16_to_f32(out[i]), (double)v);
		}
	}
}

/* The float64 reference of one output: sw * sum_k x[k] e4m3(w[k]), x rounded to bf16 first
 * when hi_only (what one plane alone would compute); *abs_sum = sum_k |x sw e4m3(w)|. */
static double fp8_ref(const float *x, const uint8_t *w, float sw, size_t n_in, bool hi_only,
		      double *abs_sum)
{
	double sum = 0, abs = 0;
	for (size_t k = 0; k < n_in; k++) {
		double xv = hi_only ? num_bf16_to_f32(num_f32_to_bf16(x[k])) : x[k];
		double p = xv * (double)sw * num_e4m3_to_f32(w[k]);
		sum += p;
		abs += fabs(p);
	}
	*abs_sum = abs;
	return sum;
}

/* The bound of kernels_quant.h: 3 n_in exact products summed in f32 (each addition one
 * rounding), then one rounding for the scale: (3 n_in + 2) 2^-24 sum |x sw w|. */
static double fp8_tiles_bound(size_t n_in, double abs_sum)
{
	return (3.0 * (double)n_in + 2.0) * ldexp(1.0, -24) * abs_sum;
}

/* One tile call on fresh planes and scratch; false if out of memory. */
static bool fp8_tiles_run(const cpu_qkernel_set *qk, float *Y, const float *X, const uint8_t *W,
			  const float *sw, size_t n_tok, size_t n_in, size_t n_out)
{
	uint32_t *Xv = cpu_alloc_aligned(CPU_BF16X3_PLANES(n_tok, n_in) * 4);
	void *scr = cpu_alloc_aligned(CPU_QTILES_SCRATCH(n_in));
	if (Xv && scr) {
		qk->prepare_bf16x3(Xv, X, n_tok, n_in);
		qk->matmul_fp8_tiles(Y, Xv, W, sw, n_tok, n_in, n_out, 0, n_out, scr);
	}
	bool ok = Xv && scr;
	cpu_free_aligned(Xv), cpu_free_aligned(scr);
	return ok;
}

/* The tile kernel against float64 at awkward sizes (rows not a multiple of the 32-row panel,
 * tokens around the 16-token blocks), within fp8_tiles_bound. On random data that bound is
 * loose at large n_in (random rounding errors grow like sqrt(n_in), the bound like n_in), so
 * the planes are told from bf16-rounded activations twice: the kernel's worst relative error
 * must be 64 x below the hi plane alone's, and on activations whose bf16 rounding errors all
 * add up (every x 0.375 bf16 ulp above its hi, every weight positive: the hi plane alone is
 * off by ~2^-9.4 relative, the bound is at most ~2^-11.8 at n_in 1536) the hi plane alone
 * misses the bound on every output while the kernel stays within it. */
TEST(fp8_tiles_vs_float64)
{
	const cpu_qkernel_set *qk = fp8_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 FP8 tile path on this CPU (needs the amx set)");
	uint64_t seed = 0x9a11f9;
	printf("  seed 0x%" PRIx64 "\n", seed);
	static const size_t toks[] = {1, 15, 16, 17, 33, 70};
	static const size_t ins[] = {96, 576, 1536}, outs[] = {37, 100};
	for (size_t a = 0; a < N_OF(ins); a++)
		for (size_t b = 0; b < N_OF(outs); b++)
			for (size_t c = 0; c < N_OF(toks); c++)
				for (int aligned = 0; aligned < 2; aligned++) {
					size_t n_in = ins[a], n_out = outs[b], n_tok = toks[c];
					if (aligned && (b > 0 || (n_tok != 17 && n_tok != 70)))
						continue;
					float *X = malloc(n_tok * n_in * 4), *sw = malloc(n_out * 4);
					float *Y = malloc(n_tok * n_out * 4);
					uint8_t *W = malloc(n_out * n_in);
					CHECK(X && sw && Y && W);
					fill_x(X, n_tok * n_in, &seed);
					fill_e4m3(W, n_out * n_in, &seed);
					fill_scales(sw, n_out, &seed);
					if (aligned)
						for (size_t i = 0; i < n_tok * n_in; i++) {
							/* h in [1, 2) on the bf16 grid (ulp 2^-7), x = h +
							 * 0.375 ulp: rounds to h, exact in f32 */
							float h = 1.0f + (float)(test_rand_next(&seed) % 128) / 128.0f;
							X[i] = ldexpf(h + 0.375f / 128.0f, (int)(i % 5) - 2);
						}
					if (aligned)
						for (size_t i = 0; i < n_out * n_in; i++)
							W[i] &= 0x7f;
					CHECK(fp8_tiles_run(qk, Y, X, W, sw, n_tok, n_in, n_out));
					double worst = 0, worst_hi = 0;
					size_t hi_out = 0;
					for (size_t t = 0; t < n_tok; t++)
						for (size_t o = 0; o < n_out; o++) {
							double abs_sum, abs_hi;
							const float *x = X + t * n_in;
							const uint8_t *w = W + o * n_in;
							double want = fp8_ref(x, w, sw[o], n_in, false, &abs_sum);
							double hi = fp8_ref(x, w, sw[o], n_in, true, &abs_hi);
							double bound = fp8_tiles_bound(n_in, abs_sum);
							double got = Y[t * n_out + o];
							CHECK_MSG(fabs(got - want) <= bound,
								  "%s%zux%zu tok %zu [%zu][%zu]: %.9g vs %.9g "
								  "(bound %.3g)",
								  aligned ? "aligned " : "", n_out, n_in, n_tok, t,
								  o, got, want, bound);
							hi_out += fabs(hi - want) > bound;
							worst = fmax(worst, fabs(got - want) / abs_sum);
							worst_hi = fmax(worst_hi, fabs(hi - want) / abs_sum);
						}
					if (aligned)
						CHECK_MSG(hi_out == n_tok * n_out,
							  "aligned %zux%zu tok %zu: the hi plane alone within the "
							  "bound on %zu of %zu outputs",
							  n_out, n_in, n_tok, n_tok * n_out - hi_out,
							  n_tok * n_out);
					CHECK_MSG(worst * 64 < worst_hi,
						  "%s%zux%zu tok %zu: worst relative error %.3g, hi plane "
						  "alone %.3g",
						  aligned ? "aligned " : "", n_out, n_in, n_tok, worst,
						  worst_hi);
					free(X), free(sw), free(Y), free(W);
				}
}

/* Rows of one weight, a power of two 2^e at column k_o, the rest zero codes: every plane
 * product and partial sum is then exact, so Y[t][o] must be sw[o] * (x[t][k_o] 2^e) rounded
 * once, bit for bit, with activations of 24 significant bits. This catches what the f32
 * summation bound cannot at these sizes: a plane dropped (hi + mid alone is off by up to
 * 2^-17 relative, below (3 n_in + 2) 2^-24 from n_in 43 on) or a column out of place. */
TEST(fp8_tiles_one_hot_exact)
{
	const cpu_qkernel_set *qk = fp8_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 FP8 tile path on this CPU (needs the amx set)");
	uint64_t seed = 0x9a11fb;
	printf("  seed 0x%" PRIx64 "\n", seed);
	static const size_t ins[] = {32, 96, 576};
	const size_t n_out = 37, n_tok = 17;
	for (size_t a = 0; a < N_OF(ins); a++) {
		size_t n_in = ins[a];
		float *X = malloc(n_tok * n_in * 4), *sw = malloc(n_out * 4);
		float *Y = malloc(n_tok * n_out * 4);
		uint8_t *W = calloc(n_out * n_in, 1);
		CHECK(X && sw && Y && W);
		fill_x(X, n_tok * n_in, &seed);
		fill_scales(sw, n_out, &seed);
		for (size_t o = 0; o < n_out; o++) /* codes E << 3 | 0: 2^(E - 7), E 1..15 */
			W[o * n_in + (o * 37 + 5) % n_in] =
				(uint8_t)((o % 2) << 7 | (1 + test_rand_next(&seed) % 15) << 3);
		CHECK(fp8_tiles_run(qk, Y, X, W, sw, n_tok, n_in, n_out));
		for (size_t t = 0; t < n_tok; t++)
			for (size_t o = 0; o < n_out; o++) {
				size_t k = (o * 37 + 5) % n_in;
				float want = sw[o] * (X[t * n_in + k] * num_e4m3_to_f32(W[o * n_in + k]));
				float got = Y[t * n_out + o];
				CHECK_MSG(!memcmp(&got, &want, 4), "%zux%zu tok %zu [%zu][%zu]: %.9g vs %.9g",
					  n_out, n_in, t, t, o, (double)got, (double)want);
			}
		free(X), free(sw), free(Y), free(W);
	}
}

/* The wrapper takes the tile path from fp8_tiles_min_tok tokens on (its output is the
 * kernel's, bit for bit) whatever the threads (1, 2, 3: tasks of whole panels) or the rows a
 * call covers (any range gives the whole call's bits and writes nothing outside); W8A8 does
 * not take it; and the batch-invariant twin never does: each token's output is that token's
 * alone. */
TEST(fp8_tiles_threads_ranges_twin)
{
	const cpu_qkernel_set *qk = fp8_tiles_set();
	if (!qk)
		SKIP("no AMX-BF16 FP8 tile path on this CPU (needs the amx set)");
	const cpu_qkernel_set *bi = cpu_qkernels_batch_invariant(qk);
	CHECK(bi != qk && bi->matmul_fp8_tiles == NULL);
	uint64_t seed = 0x9a11fa;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const size_t n_in = 576, n_out = 203;
	size_t n_tok = qk->fp8_tiles_min_tok + 21;
	float *X = malloc(n_tok * n_in * 4), *sw = malloc(n_out * 4);
	float *Yk = malloc(n_tok * n_out * 4), *Y = malloc(n_tok * n_out * 4);
	float *Y1 = malloc(n_out * 4);
	uint8_t *W = malloc(n_out * n_in);
	uint32_t *Xv = cpu_alloc_aligned(CPU_BF16X3_PLANES(n_tok, n_in) * 4);
	void *scr = cpu_alloc_aligned(CPU_QTILES_SCRATCH(n_in));
	CHECK(X && sw && Yk && Y && Y1 && W && Xv && scr);
	fill_x(X, n_tok * n_in, &seed);
	fill_e4m3(W, n_out * n_in, &seed);
	fill_scales(sw, n_out, &seed);
	qk->prepare_bf16x3(Xv, X, n_tok, n_in);
	qk->matmul_fp8_tiles(Yk, Xv, W, sw, n_tok, n_in, n_out, 0, n_out, scr);
	for (size_t nt = 1; nt <= 3; nt++) {
		threadpool *pool = NULL;
		if (nt > 1)
			CHECK(threadpool_new(&pool, nt, NULL) == OS_OK);
		memset(Y, 0, n_tok * n_out * 4);
		CHECK(cpu_qmatmul_fp8(pool, qk, Y, X, W, sw, n_tok, n_in, n_out, false) == OS_OK);
		CHECK_MSG(!memcmp(Y, Yk, n_tok * n_out * 4), "%zu threads: not the tile kernel's bits",
			  nt);
		/* from exactly the threshold (a token's tile result is its own, whatever n_tok),
		 * and not below it: the FMA tiles' sums differ in their last bits */
		size_t few = qk->fp8_tiles_min_tok;
		CHECK(cpu_qmatmul_fp8(pool, qk, Y, X, W, sw, few, n_in, n_out, false) == OS_OK);
		CHECK_MSG(!memcmp(Y, Yk, few * n_out * 4), "%zu tokens: not the tile path", few);
		CHECK(cpu_qmatmul_fp8(pool, qk, Y, X, W, sw, few - 1, n_in, n_out, false) == OS_OK);
		CHECK_MSG(memcmp(Y, Yk, (few - 1) * n_out * 4), "%zu tokens took the tile path",
			  few - 1);
		threadpool_free(pool);
	}
	/* W8A8 keeps its path: its activations are E4M3-rounded, far from the tiles' result */
	CHECK(cpu_qmatmul_fp8(NULL, qk, Y, X, W, sw, n_tok, n_in, n_out, true) == OS_OK);
	CHECK(memcmp(Y, Yk, n_tok * n_out * 4));
	/* row ranges that start anywhere, rows outside untouched */
	static const size_t cuts[][2] = {{0, 5}, {5, 40}, {40, 41}, {41, 100}, {130, 203}};
	for (size_t i = 0; i < n_tok * n_out; i++)
		Y[i] = -7.0f;
	for (size_t c = 0; c < N_OF(cuts); c++)
		qk->matmul_fp8_tiles(Y, Xv, W, sw, n_tok, n_in, n_out, cuts[c][0], cuts[c][1], scr);
	for (size_t t = 0; t < n_tok; t++)
		for (size_t o = 0; o < n_out; o++) {
			size_t i = t * n_out + o;
			CHECK_MSG(o >= 100 && o < 130 ? Y[i] == -7.0f : !memcmp(&Y[i], &Yk[i], 4),
				  "row ranges: tok %zu row %zu: %.9g vs %.9g", t, o, (double)Y[i],
				  (double)Yk[i]);
		}
	/* up to 16 tokens the kernel decodes each k step's weights just before its tiles
	 * (fp8_tiles_fused16): those tokens get the bits they have in the whole call, also over
	 * cut row ranges */
	static const size_t few_toks[] = {1, 5, 16};
	for (size_t f = 0; f < N_OF(few_toks); f++) {
		size_t nf = few_toks[f], bad = 0;
		qk->prepare_bf16x3(Xv, X, nf, n_in);
		for (size_t i = 0; i < nf * n_out; i++)
			Y[i] = -7.0f;
		for (size_t c = 0; c < N_OF(cuts); c++)
			qk->matmul_fp8_tiles(Y, Xv, W, sw, nf, n_in, n_out, cuts[c][0], cuts[c][1], scr);
		for (size_t t = 0; t < nf; t++)
			for (size_t o = 0; o < n_out; o++) {
				size_t i = t * n_out + o;
				bad += o >= 100 && o < 130 ? Y[i] != -7.0f : memcmp(&Y[i], &Yk[i], 4) != 0;
			}
		CHECK_MSG(bad == 0, "%zu tokens (cut ranges): %zu values differ from the %zu-token call",
			  nf, bad, n_tok);
	}
	/* the twin: a token alone gives the batch's bits */
	CHECK(cpu_qmatmul_fp8(NULL, bi, Y, X, W, sw, n_tok, n_in, n_out, false) == OS_OK);
	for (size_t t = 0; t < n_tok; t += 7) {
		CHECK(cpu_qmatmul_fp8(NULL, bi, Y1, X + t * n_in, W, sw, 1, n_in, n_out, false) ==
		      OS_OK);
		CHECK_MSG(!memcmp(Y1, Y + t * n_out, n_out * 4), "%s twin: token %zu of %zu differs",
			  bi->name, t, n_tok);
	}
	free(X), free(sw), free(Yk), free(Y), free(Y1), free(W);
	cpu_free_aligned(Xv), cpu_free_aligned(scr);
}

/* ---- quantize -> dequantize error bounds ---------------------------------------------------- */

TEST(quantize_error_bounds)
{
	uint64_t seed = 0x9a11eb;
	printf("  seed 0x%" PRIx64 "\n", seed);
	const size_t rows_list[] = {1, 3, 17};
	const size_t cols_list[] = {1, 3, 17, 33, 129, 128, 256, 576, 1536};
	for (size_t a = 0; a < N_OF(rows_list); a++)
		for (size_t b = 0; b < N_OF(cols_list); b++) {
			size_t rows = rows_list[a], cols = cols_list[b];
			float *W = malloc(rows * cols * 4), *D = malloc(rows * cols * 4);
			CHECK(W && D);
			for (size_t r = 0; r < rows; r++) { /* rows of very different magnitudes */
				float mag = ldexpf(1.0f, (int)(test_rand_next(&seed) % 30) - 15);
				float off = r % 3 == 2 ? mag : 0.0f; /* some one-sided rows */
				for (size_t k = 0; k < cols; k++)
					W[r * cols + k] = rand_nonzero(&seed) * mag + off;
			}
			quant_matrix m;
			/* FP8: relative 2^-4 for values normal after scaling */
			CHECK(quant_matrix_new(&m, QUANT_FP8_E4M3, W, rows, cols, 0, NULL) == OS_OK);
			quant_matrix_dequantize(&m, D);
			for (size_t i = 0; i < rows * cols; i++) {
				float s = m.scales[i / cols];
				double err = fabs((double)W[i] - D[i]);
				if (fabs(W[i]) / s >= 0.015625)
					CHECK_MSG(err <= ldexp(fabs(W[i]), -4) * (1 + 1e-6),
						  "fp8 %zux%zu [%zu]: %g -> %g", rows, cols, i,
						  (double)W[i], (double)D[i]);
				else
					CHECK(err <= ldexp(s, -10) * (1 + 1e-5));
			}
			CHECK_EQ_INT(quant_matrix_bytes(&m), rows * cols + rows * 4);
			quant_matrix_free(&m);
			/* INT8: |err| <= scale / 2 */
			CHECK(quant_matrix_new(&m, QUANT_INT8, W, rows, cols, 0, NULL) == OS_OK);
			quant_matrix_dequantize(&m, D);
			for (size_t i = 0; i < rows * cols; i++) {
				float s = m.scales[i / cols];
				CHECK_MSG(fabs((double)W[i] - D[i]) <= s * 0.5 * (1 + 1e-5),
					  "int8 %zux%zu [%zu]: %g -> %g (s %g)", rows, cols, i,
					  (double)W[i], (double)D[i], (double)s);
			}
			quant_matrix_free(&m);
			/* INT4: |err| <= group scale / 2, every group size dividing cols */
			for (size_t gi = 0; gi < N_OF(i4_groups); gi++) {
				size_t G = i4_groups[gi];
				if (cols % G)
					continue;
				CHECK(quant_matrix_new(&m, QUANT_INT4, W, rows, cols, G, NULL) == OS_OK);
				quant_matrix_dequantize(&m, D);
				for (size_t i = 0; i < rows * cols; i++) {
					size_t r = i / cols, g = (i % cols) / G;
					float s = m.scales[r * (cols / G) + g];
					CHECK_MSG(fabs((double)W[i] - D[i]) <= s * 0.5 * (1 + 1e-5),
						  "int4 g%zu %zux%zu [%zu]: %g -> %g (s %g)", G, rows, cols,
						  i, (double)W[i], (double)D[i], (double)s);
				}
				/* the row helper agrees with the matrix path at clip 1 */
				float *F = malloc(cols * 4);
				CHECK(F);
				quant_fake_int4_row(F, W, cols, G, 1.0f);
				CHECK(memcmp(F, D, cols * 4) == 0);
				free(F);
				quant_matrix_free(&m);
			}
			free(W), free(D);
		}
	os_error err;
	quant_matrix m;
	float w[96] = {1.0f};
	CHECK(quant_matrix_new(&m, QUANT_INT4, w, 1, 96, 64, &err) == OS_EUSAGE);
	printf("  (expected) %s\n", err.msg);
	CHECK(quant_matrix_new(&m, QUANT_INT4, w, 1, 96, 48, &err) == OS_EUSAGE);
	CHECK(quant_matrix_new(&m, QUANT_INT8, w, 0, 96, 0, &err) == OS_EUSAGE);
	CHECK(m.data == NULL);
	quant_matrix_free(&m);
}

/* decode_i8 (INT8 KV cache rows): every set gives (float)(int8_t)q exactly for every code,
 * at lengths around the vector widths, and writes nothing past n. */
TEST(decode_i8_every_code)
{
	static const size_t lens[] = {1, 15, 16, 17, 31, 63, 64, 65, 256, 300};
	const cpu_qkernel_set *sets[2 * CPU_ISA_COUNT + 1] = {&cpu_qkernels_generic};
	size_t n_sets = 1 + simd_sets(sets + 1);
	uint8_t q[300];
	float out[300 + 16];
	uint64_t st = test_seed(91);
	for (size_t i = 0; i < 300; i++)
		q[i] = (uint8_t)(i < 256 ? i : (st = st * 6364136223846793005ull + 1) >> 56);
	for (size_t si = 0; si < n_sets; si++)
		for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
			size_t n = lens[li];
			for (size_t i = 0; i < n + 16; i++)
				out[i] = -1234.5f;
			sets[si]->decode_i8(out, q, n);
			for (size_t i = 0; i < n; i++)
				CHECK_MSG(out[i] == (float)(int8_t)q[i], "%s decode_i8 n %zu [%zu] = %g",
					  sets[si]->name, n, i, out[i]);
			for (size_t i = n; i < n + 16; i++)
				CHECK_MSG(out[i] == -1234.5f, "%s decode_i8 n %zu wrote [%zu]",
					  sets[si]->name, n, i);
		}
}

int main(void)
{
	RUN(selection);
	RUN(fp8_twins);
	RUN(int8_twins_bit_exact);
	RUN(int8_extreme_sums);
	RUN(int8_gemm_edges);
	RUN(int4_twins);
	RUN(activation_quantizers_bit_exact);
	RUN(generic_vs_float64);
	RUN(threads_do_not_change_results);
	RUN(row_ranges);
	RUN(prefill_path_vs_twin);
	RUN(int4_tiles_planes_exact);
	RUN(int4_tiles_vs_float64);
	RUN(int4_tiles_threads_ranges_twin);
	RUN(fp8_tiles_membership);
	RUN(fp8_tiles_decode_every_code);
	RUN(fp8_tiles_vs_float64);
	RUN(fp8_tiles_one_hot_exact);
	RUN(fp8_tiles_threads_ranges_twin);
	RUN(quantize_error_bounds);
	RUN(decode_i8_every_code);
	return test_summary();
}
