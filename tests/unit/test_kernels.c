/* test_kernels.c: every kernel set this CPU runs against the generic twin on random data at
 * awkward sizes, the generic matmul against a float64 triple loop, threaded == one thread,
 * prefill-sized GEMM shapes, rope layouts against their definitions, and OPTSTUDIO_CPU
 * selection. */
#include <float.h>
#include <stdlib.h>

#include "core/cpu/kernels.h"
#include "core/numerics.h"
#include "tests/test.h"

static uint64_t seed0;

static const size_t sizes_in[] = {1, 3, 7, 15, 17, 31, 33, 127, 129, 576, 1536};
static const size_t sizes_out[] = {1, 3, 17, 129};
static const size_t sizes_tok[] = {1, 2, 3, 4, 7, 9, 16, 17, 31, 33, 47, 65};
static const size_t sizes_vec[] = {1, 3, 7, 15, 16, 17, 31, 32, 33, 127, 129, 576, 1536};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* random in [-1, 1) but never 0 (so a dropped term always shows) */
static float rnd(uint64_t *s)
{
	float v = test_rand_float(s);
	return v == 0.0f ? 0.5f : v;
}

static void fill(float *p, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		p[i] = rnd(s);
}

/* The SIMD sets this CPU has, and the batch-invariant twins of those that have one. */
static const cpu_kernel_set *simd_sets[2 * CPU_ISA_COUNT];
static size_t n_simd_sets;

static void find_sets(void)
{
	n_simd_sets = 0;
	for (int i = 1; i < CPU_ISA_COUNT; i++) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)i);
		if (ks)
			simd_sets[n_simd_sets++] = ks;
		if (ks && cpu_kernels_batch_invariant(ks) != ks)
			simd_sets[n_simd_sets++] = cpu_kernels_batch_invariant(ks);
		static const char *const names[CPU_ISA_COUNT] = {"generic", "avx2", "avx512", "amx"};
		printf("  set %-7s %s\n", names[i],
		       ks ? "available, tested" : "not on this CPU, skipped");
	}
}

/* Float64 reference of Y = X W^T (W as f32 or as bf16 with X rounded to bf16) and the
 * error scale S[t][o] = sum |x||w|. */
static void matmul_ref(double *Yr, double *S, const float *X, const void *W, cpu_wfmt fmt,
		       size_t n_tok, size_t n_in, size_t n_out)
{
	for (size_t t = 0; t < n_tok; t++)
		for (size_t o = 0; o < n_out; o++) {
			double s = 0, a = 0;
			for (size_t k = 0; k < n_in; k++) {
				double x, w;
				if (fmt == CPU_WFMT_F32) {
					x = X[t * n_in + k];
					w = ((const float *)W)[o * n_in + k];
				} else {
					x = num_bf16_to_f32(num_f32_to_bf16(X[t * n_in + k]));
					w = num_bf16_to_f32(((const uint16_t *)W)[o * n_in + k]);
				}
				s += x * w;
				a += fabs(x * w);
			}
			Yr[t * n_out + o] = s;
			S[t * n_out + o] = a;
		}
}

/* f32 sums of n terms in any order are within n * eps * sum|terms| of the exact value;
 * two such sums within twice that of each other. */
static double tol_for(size_t n_in, double scale)
{
	return 2.0 * ((double)n_in + 2.0) * FLT_EPSILON * scale + 1e-30;
}

struct mm_case {
	float *X, *Y, *Y2;
	void *W;
	double *Yr, *S;
};

static int mm_alloc(struct mm_case *c, size_t n_tok, size_t n_in, size_t n_out)
{
	c->X = cpu_alloc_aligned(n_tok * n_in * sizeof(float));
	c->Y = cpu_alloc_aligned(n_tok * n_out * sizeof(float));
	c->Y2 = cpu_alloc_aligned(n_tok * n_out * sizeof(float));
	c->W = cpu_alloc_aligned(n_out * n_in * sizeof(float));
	c->Yr = malloc(n_tok * n_out * sizeof(double));
	c->S = malloc(n_tok * n_out * sizeof(double));
	return c->X && c->Y && c->Y2 && c->W && c->Yr && c->S;
}

static void mm_free(struct mm_case *c)
{
	cpu_free_aligned(c->X);
	cpu_free_aligned(c->Y);
	cpu_free_aligned(c->Y2);
	cpu_free_aligned(c->W);
	free(c->Yr);
	free(c->S);
}

static void fill_weights(void *W, cpu_wfmt fmt, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++) {
		if (fmt == CPU_WFMT_F32)
			((float *)W)[i] = rnd(s);
		else
			((uint16_t *)W)[i] = num_f32_to_bf16(rnd(s));
	}
}

/* For every shape: generic vs float64, every SIMD set vs float64 and vs generic, and the
 * threaded entry point (3 threads) bit-identical to one thread. */
static void check_matmul(cpu_wfmt fmt, threadpool *pool)
{
	uint64_t s = seed0 ^ (uint64_t)(fmt + 1) * 0x1234567;
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	for (size_t a = 0; a < COUNT(sizes_in); a++)
		for (size_t b = 0; b < COUNT(sizes_out); b++)
			for (size_t c = 0; c < COUNT(sizes_tok); c++) {
				size_t n_in = sizes_in[a], n_out = sizes_out[b], n_tok = sizes_tok[c];
				struct mm_case m = {0};
				if (!mm_alloc(&m, n_tok, n_in, n_out)) {
					mm_free(&m);
					FAIL_AT("out of memory");
				}
				fill(m.X, n_tok * n_in, &s);
				fill_weights(m.W, fmt, n_out * n_in, &s);
				matmul_ref(m.Yr, m.S, m.X, m.W, fmt, n_tok, n_in, n_out);
				const char *what = NULL;
				size_t bad = 0;
				double got = 0, want = 0, tol = 0;
				for (size_t v = 0; v <= n_simd_sets && !what; v++) {
					const cpu_kernel_set *ks = v == 0 ? gen : simd_sets[v - 1];
					cpu_matmul(NULL, ks, m.Y, m.X, m.W, fmt, n_tok, n_in, n_out);
					for (size_t i = 0; i < n_tok * n_out && !what; i++) {
						tol = tol_for(n_in, m.S[i]);
						if (!(fabs(m.Y[i] - m.Yr[i]) <= tol)) {
							what = ks->name, bad = i;
							got = m.Y[i], want = m.Yr[i];
						}
					}
					if (what)
						break;
					/* threaded: same bits */
					cpu_matmul(pool, ks, m.Y2, m.X, m.W, fmt, n_tok, n_in, n_out);
					if (memcmp(m.Y, m.Y2, n_tok * n_out * sizeof(float)) != 0)
						what = "threaded", got = want = tol = 0;
					if (v == 0)
						memcpy(m.Y2, m.Y, n_tok * n_out * sizeof(float));
				}
				mm_free(&m);
				CHECK_MSG(!what,
					  "%s %s matmul n_tok %zu n_in %zu n_out %zu: Y[%zu] = %.9g, "
					  "expected %.9g within %.3g",
					  what, fmt == CPU_WFMT_F32 ? "F32" : "BF16", n_tok, n_in, n_out,
					  bad, got, want, tol);
			}
}

/* SIMD sets against the generic set directly (the same bf16-rounded activations). */
static void check_matmul_vs_generic(cpu_wfmt fmt)
{
	uint64_t s = seed0 ^ 0xabcdef ^ (uint64_t)fmt;
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	for (size_t v = 0; v < n_simd_sets; v++)
		for (size_t a = 0; a < COUNT(sizes_in); a++)
			for (size_t c = 0; c < COUNT(sizes_tok); c++) {
				size_t n_in = sizes_in[a], n_out = 33, n_tok = sizes_tok[c];
				struct mm_case m = {0};
				if (!mm_alloc(&m, n_tok, n_in, n_out)) {
					mm_free(&m);
					FAIL_AT("out of memory");
				}
				fill(m.X, n_tok * n_in, &s);
				fill_weights(m.W, fmt, n_out * n_in, &s);
				matmul_ref(m.Yr, m.S, m.X, m.W, fmt, n_tok, n_in, n_out);
				/* a row range inside the matrix: rows outside must stay untouched */
				for (size_t i = 0; i < n_tok * n_out; i++)
					m.Y[i] = m.Y2[i] = 12345.0f;
				uint16_t *xb = cpu_alloc_aligned(n_tok * n_in * 2);
				if (!xb) {
					mm_free(&m);
					FAIL_AT("out of memory");
				}
				gen->f32_to_bf16(xb, m.X, n_tok * n_in);
				if (fmt == CPU_WFMT_F32) {
					gen->matmul_f32(m.Y, m.X, m.W, n_tok, n_in, n_out, 5, 30);
					simd_sets[v]->matmul_f32(m.Y2, m.X, m.W, n_tok, n_in, n_out, 5, 30);
				} else {
					gen->matmul_bf16(m.Y, xb, m.W, n_tok, n_in, n_out, 5, 30);
					simd_sets[v]->matmul_bf16(m.Y2, xb, m.W, n_tok, n_in, n_out, 5, 30);
				}
				cpu_free_aligned(xb);
				size_t bad = SIZE_MAX;
				for (size_t i = 0; i < n_tok * n_out && bad == SIZE_MAX; i++) {
					size_t o = i % n_out;
					if (o < 5 || o >= 30) {
						if (m.Y2[i] != 12345.0f)
							bad = i;
					} else if (!(fabs(m.Y[i] - m.Y2[i]) <= tol_for(n_in, m.S[i]))) {
						bad = i;
					}
				}
				double g = bad != SIZE_MAX ? m.Y[bad] : 0, w = bad != SIZE_MAX ? m.Y2[bad] : 0;
				mm_free(&m);
				CHECK_MSG(bad == SIZE_MAX,
					  "%s vs generic, %s, rows 5..30 of 33, n_tok %zu n_in %zu: "
					  "Y[%zu] = %.9g, generic %.9g",
					  simd_sets[v]->name, fmt == CPU_WFMT_F32 ? "F32" : "BF16", n_tok,
					  n_in, bad, w, g);
			}
}

TEST(test_matmul_f32)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 3, NULL) == OS_OK);
	check_matmul(CPU_WFMT_F32, pool);
	threadpool_free(pool);
}

TEST(test_matmul_bf16)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 3, NULL) == OS_OK);
	check_matmul(CPU_WFMT_BF16, pool);
	threadpool_free(pool);
}

/* The batch-invariant sets: 100 tokens run in batches of 1, 2, ... 100 tokens give every row
 * the bits of one call over all of them, for batch sizes across every path the default sets
 * switch between (1-3 and 4-7 few-token tiles, 8..16 outer products, the GEMM; BF16 on AMX
 * tiles shaped to 1-3 tokens, with the weights as the first operand up to 64 tokens, packed
 * panels beyond, or the vdpbf16ps GEMM), with the rows whole or split at 5 and 21 (ranges
 * ending before row 16, off the 16- and 32-row grids), at awkward n_in and n_out. Greedy
 * speculative decoding relies on it: a verified token must see the logits plain decoding
 * saw. */
TEST(test_matmul_batch_invariant)
{
	enum { N_TOK = 100 };
	static const size_t batches[] = {1, 2, 3, 4, 5, 8, 13, 17, 33, 65, 100};
	static const size_t shapes[][2] = {{96, 37},  {576, 200}, {100, 33}, {1030, 50},
					   {96, 200}, {576, 37},  {32, 16},  {1536, 50}};
	uint64_t s = seed0 ^ 0xb1;
	for (size_t v = 0; v < n_simd_sets && !test_case_failed; v++) {
		const cpu_kernel_set *ks = simd_sets[v];
		if (!ks->batch_invariant)
			continue;
		for (size_t si = 0; si < COUNT(shapes) && !test_case_failed; si++)
			for (int f = 0; f < CPU_WFMT_COUNT && !test_case_failed; f++) {
				size_t n_in = shapes[si][0], n_out = shapes[si][1];
				struct mm_case m = {0};
				uint16_t *xb = cpu_alloc_aligned(N_TOK * n_in * 2);
				if (!mm_alloc(&m, N_TOK, n_in, n_out) || !xb) {
					mm_free(&m);
					cpu_free_aligned(xb);
					FAIL_AT("out of memory");
				}
				fill(m.X, N_TOK * n_in, &s);
				fill_weights(m.W, (cpu_wfmt)f, n_out * n_in, &s);
				ks->f32_to_bf16(xb, m.X, N_TOK * n_in);
				/* tokens [t0, t0 + nt) over rows [o0, o1) into Y */
#define RUN_MM(Y, t0, nt, o0, o1)                                                             \
	(f == CPU_WFMT_F32                                                                    \
		 ? ks->matmul_f32((Y) + (t0) * n_out, m.X + (t0) * n_in, m.W, nt, n_in, n_out,  \
				  o0, o1)                                                     \
		 : ks->matmul_bf16((Y) + (t0) * n_out, xb + (t0) * n_in, m.W, nt, n_in, n_out, \
				   o0, o1))
				RUN_MM(m.Y2, 0, N_TOK, 0, n_out); /* the reference: one call */
				size_t cuts[4] = {0, 5, 21 < n_out ? 21 : n_out, n_out};
				for (size_t bi = 0; bi < COUNT(batches) && !test_case_failed; bi++)
					for (int split = 0; split < 2 && !test_case_failed; split++) {
						size_t b = batches[bi];
						for (size_t i = 0; i < N_TOK * n_out; i++)
							m.Y[i] = 12345.0f;
						for (size_t t0 = 0; t0 < N_TOK; t0 += b) {
							size_t nt = N_TOK - t0 < b ? N_TOK - t0 : b;
							if (!split)
								RUN_MM(m.Y, t0, nt, 0, n_out);
							for (int c = 0; split && c < 3; c++)
								if (cuts[c + 1] > cuts[c])
									RUN_MM(m.Y, t0, nt, cuts[c], cuts[c + 1]);
						}
						size_t bad = SIZE_MAX;
						for (size_t i = 0; i < N_TOK * n_out && bad == SIZE_MAX; i++)
							if (memcmp(&m.Y[i], &m.Y2[i], sizeof(float)))
								bad = i;
						CHECK_MSG(bad == SIZE_MAX,
							  "%s (batch-invariant) %s n_in %zu n_out %zu, batches "
							  "of %zu%s: token %zu row %zu %.9g, in one batch %.9g",
							  ks->name, f ? "BF16" : "F32", n_in, n_out, b,
							  split ? ", rows split at 5 and 21" : "", bad / n_out,
							  bad % n_out, bad != SIZE_MAX ? m.Y[bad] : 0.0,
							  bad != SIZE_MAX ? m.Y2[bad] : 0.0);
					}
#undef RUN_MM
				mm_free(&m);
				cpu_free_aligned(xb);
			}
		printf("  %s (batch-invariant): batches of 1..100 = one call\n", ks->name);
	}
}

TEST(test_matmul_rows_vs_generic)
{
	check_matmul_vs_generic(CPU_WFMT_F32);
	if (test_case_failed)
		return;
	check_matmul_vs_generic(CPU_WFMT_BF16);
}

/* Batches the AVX-512 set blocks: prefill (the packed-panel GEMM from 17 tokens on for F32,
 * 32 for BF16) and decode of 8..16 tokens for F32 (outer-product tiles over 1536-input
 * activation blocks, each prefetching the next tile's weights), 8..31 for BF16 (256-input
 * weight blocks widened inside 1024-input activation blocks). Shapes that cross the blocks
 * (12-token tiles, 528-token blocks, 256/512/1024/1536-input blocks, 16-token groups, 16- and
 * 32-row tiles, 256-row blocks) and odd n_in (BF16 prefill falls back to the tiles), each set
 * vs float64 and vs generic, 3 threads bit-identical to one, and a row range off the tile
 * grid (rows 5 to n_out - 3) within tolerance inside and untouched outside. */
TEST(test_matmul_prefill_shapes)
{
	static const size_t cases[][3] = {
		/* n_tok, n_in, n_out */
		{32, 256, 33},   {47, 257, 70},   {64, 512, 300}, {545, 96, 40},
		{35, 1030, 45},  {40, 513, 287},  {33, 1, 17},    {100, 31, 64},
		{8, 1030, 45},   {9, 2311, 37},   {16, 257, 19},  {17, 1025, 70},
		{24, 513, 287},  {31, 1299, 33},  {15, 1537, 50}, {16, 576, 77},
		{8, 100, 31},    {31, 1536, 49},  {17, 77, 1550},
	};
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 3, NULL) == OS_OK);
	uint64_t s = seed0 ^ 0x9e11;
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	for (size_t ci = 0; ci < COUNT(cases) && !test_case_failed; ci++)
		for (int f = 0; f < CPU_WFMT_COUNT && !test_case_failed; f++) {
			size_t n_tok = cases[ci][0], n_in = cases[ci][1], n_out = cases[ci][2];
			cpu_wfmt fmt = (cpu_wfmt)f;
			struct mm_case m = {0};
			uint16_t *xb = cpu_alloc_aligned(n_tok * n_in * 2);
			float *Yg = cpu_alloc_aligned(n_tok * n_out * sizeof(float));
			if (!mm_alloc(&m, n_tok, n_in, n_out) || !xb || !Yg) {
				mm_free(&m);
				cpu_free_aligned(xb);
				cpu_free_aligned(Yg);
				FAIL_AT("out of memory");
			}
			fill(m.X, n_tok * n_in, &s);
			fill_weights(m.W, fmt, n_out * n_in, &s);
			matmul_ref(m.Yr, m.S, m.X, m.W, fmt, n_tok, n_in, n_out);
			gen->f32_to_bf16(xb, m.X, n_tok * n_in);
			size_t o0 = 5, o1 = n_out - 3 > o0 ? n_out - 3 : n_out;
			for (size_t v = 0; v < n_simd_sets && !test_case_failed; v++) {
				const cpu_kernel_set *ks = simd_sets[v];
				cpu_matmul(NULL, ks, m.Y, m.X, m.W, fmt, n_tok, n_in, n_out);
				cpu_matmul(NULL, gen, Yg, m.X, m.W, fmt, n_tok, n_in, n_out);
				size_t bad = SIZE_MAX;
				for (size_t i = 0; i < n_tok * n_out && bad == SIZE_MAX; i++) {
					double tol = tol_for(n_in, m.S[i]);
					if (!(fabs(m.Y[i] - m.Yr[i]) <= tol) ||
					    !(fabs(m.Y[i] - Yg[i]) <= tol))
						bad = i;
				}
				CHECK_MSG(bad == SIZE_MAX,
					  "%s %s n_tok %zu n_in %zu n_out %zu: Y[%zu] = %.9g, float64 "
					  "%.9g, generic %.9g",
					  ks->name, f ? "BF16" : "F32", n_tok, n_in, n_out, bad,
					  bad != SIZE_MAX ? m.Y[bad] : 0.0, bad != SIZE_MAX ? m.Yr[bad] : 0.0,
					  bad != SIZE_MAX ? Yg[bad] : 0.0);
				/* threaded: same bits */
				cpu_matmul(pool, ks, m.Y2, m.X, m.W, fmt, n_tok, n_in, n_out);
				CHECK_MSG(memcmp(m.Y, m.Y2, n_tok * n_out * sizeof(float)) == 0,
					  "%s %s n_tok %zu n_in %zu n_out %zu: 3 threads differ from 1",
					  ks->name, f ? "BF16" : "F32", n_tok, n_in, n_out);
				/* a row range [5, n_out - 3): same bits inside, untouched outside */
				for (size_t i = 0; i < n_tok * n_out; i++)
					m.Y2[i] = 12345.0f;
				if (fmt == CPU_WFMT_F32)
					ks->matmul_f32(m.Y2, m.X, m.W, n_tok, n_in, n_out, o0, o1);
				else
					ks->matmul_bf16(m.Y2, xb, m.W, n_tok, n_in, n_out, o0, o1);
				bad = SIZE_MAX;
				for (size_t i = 0; i < n_tok * n_out && bad == SIZE_MAX; i++) {
					size_t o = i % n_out;
					int inside = o >= o0 && o < o1;
					if (inside ? !(fabs(m.Y2[i] - m.Yr[i]) <= tol_for(n_in, m.S[i]))
						   : m.Y2[i] != 12345.0f)
						bad = i;
				}
				CHECK_MSG(bad == SIZE_MAX,
					  "%s %s n_tok %zu n_in %zu n_out %zu rows %zu..%zu: Y[%zu] = %.9g "
					  "(float64 %.9g)",
					  ks->name, f ? "BF16" : "F32", n_tok, n_in, n_out, o0, o1, bad,
					  bad != SIZE_MAX ? m.Y2[bad] : 0.0, bad != SIZE_MAX ? m.Yr[bad] : 0.0);
			}
			mm_free(&m);
			cpu_free_aligned(xb);
			cpu_free_aligned(Yg);
		}
	threadpool_free(pool);
}

/* A bigger matrix split over 2 threads into several tasks: same bits as one thread. */
TEST(test_matmul_threaded_large)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 2, NULL) == OS_OK);
	uint64_t s = seed0 ^ 0x77;
	size_t n_in = 576, n_out = 1000, n_tok = 37;
	struct mm_case m = {0};
	int ok = mm_alloc(&m, n_tok, n_in, n_out);
	for (int f = 0; ok && f < CPU_WFMT_COUNT && !test_case_failed; f++) {
		fill(m.X, n_tok * n_in, &s);
		fill_weights(m.W, (cpu_wfmt)f, n_out * n_in, &s);
		for (size_t v = 0; v <= n_simd_sets; v++) {
			const cpu_kernel_set *ks = v == 0 ? cpu_kernels_get(CPU_ISA_GENERIC)
							  : simd_sets[v - 1];
			cpu_matmul(NULL, ks, m.Y, m.X, m.W, (cpu_wfmt)f, n_tok, n_in, n_out);
			cpu_matmul(pool, ks, m.Y2, m.X, m.W, (cpu_wfmt)f, n_tok, n_in, n_out);
			if (memcmp(m.Y, m.Y2, n_tok * n_out * sizeof(float)) != 0) {
				test_case_failed = 1;
				printf("  %s fmt %d: threaded result differs\n", ks->name, f);
				break;
			}
		}
	}
	mm_free(&m);
	threadpool_free(pool);
	CHECK(ok);
}

/* ---- elementwise kernels ------------------------------------------------------------------ */

/* |a - b| <= rel * (|b| + floor) elementwise; returns the first bad index or SIZE_MAX */
static size_t first_diff(const float *a, const float *b, size_t n, double rel, double floor_)
{
	for (size_t i = 0; i < n; i++)
		if (!(fabs((double)a[i] - (double)b[i]) <= rel * (fabs((double)b[i]) + floor_)))
			return i;
	return SIZE_MAX;
}

#define CHECK_VEC(what, ks, a, b, n, rel, fl)                                             \
	do {                                                                              \
		size_t i_ = first_diff(a, b, n, rel, fl);                                 \
		CHECK_MSG(i_ == SIZE_MAX, "%s %s n %zu: [%zu] = %.9g, generic %.9g", what, \
			  (ks)->name, (size_t)(n), i_, (double)(a)[i_], (double)(b)[i_]); \
	} while (0)

TEST(test_elementwise_vs_generic)
{
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	uint64_t s = seed0 ^ 0xe1e;
	enum { N = 1536 + 8 };
	float x[N], y[N], w[N], r1[N], r2[N], u[N];
	uint16_t b1[N], b2[N];
	for (size_t v = 0; v < n_simd_sets; v++) {
		const cpu_kernel_set *ks = simd_sets[v];
		for (size_t c = 0; c < COUNT(sizes_vec); c++) {
			size_t n = sizes_vec[c];
			fill(x, N, &s);
			fill(y, N, &s);
			fill(w, N, &s);
			fill(u, N, &s);
			double S = 0;
			for (size_t i = 0; i < n; i++)
				S += fabs(x[i] * y[i]);
			float d1 = gen->dot(x, y, n), d2 = ks->dot(x, y, n);
			CHECK_MSG(fabs(d1 - d2) <= tol_for(n, S), "dot %s n %zu: %.9g vs %.9g",
				  ks->name, n, d2, d1);

			/* the guard element after n must never be written */
			memcpy(r1, y, sizeof y);
			memcpy(r2, y, sizeof y);
			gen->axpy(r1, 0.37f, x, n);
			ks->axpy(r2, 0.37f, x, n);
			CHECK_VEC("axpy", ks, r2, r1, n + 1, 1e-6, 1.0);

			memcpy(r1, y, sizeof y);
			memcpy(r2, y, sizeof y);
			gen->add(r1, x, n);
			ks->add(r2, x, n);
			CHECK_VEC("add", ks, r2, r1, n + 1, 0, 0);

			memcpy(r1, y, sizeof y);
			memcpy(r2, y, sizeof y);
			gen->scale(r1, -1.7f, n);
			ks->scale(r2, -1.7f, n);
			CHECK_VEC("scale", ks, r2, r1, n + 1, 0, 0);

			memcpy(r1, y, sizeof y);
			memcpy(r2, y, sizeof y);
			gen->rmsnorm(r1, x, w, n, 1e-5f);
			ks->rmsnorm(r2, x, w, n, 1e-5f);
			CHECK_VEC("rmsnorm", ks, r2, r1, n + 1, 1e-5, 1e-3);
			memcpy(r2, x, sizeof x); /* in place */
			ks->rmsnorm(r2, r2, w, n, 1e-5f);
			CHECK_VEC("rmsnorm in place", ks, r2, r1, n, 1e-5, 1e-3);

			for (size_t i = 0; i < N; i++)
				r1[i] = r2[i] = 8.0f * x[i]; /* spread out: e^-16 .. e^16 */
			if (n > 2)
				r1[1] = r2[1] = -INFINITY; /* a masked entry */
			gen->softmax(r1, n);
			ks->softmax(r2, n);
			CHECK_VEC("softmax", ks, r2, r1, n + 1, 1e-5, 1e-9);
			if (n > 2)
				CHECK(r2[1] == 0.0f);

			/* exp_sum: softmax's numerator and its sum, against a shifted max */
			for (size_t i = 0; i < N; i++)
				r1[i] = r2[i] = 8.0f * x[i];
			if (n > 2)
				r1[1] = r2[1] = -INFINITY;
			float es1 = gen->exp_sum(r1, n, 3.5f), es2 = ks->exp_sum(r2, n, 3.5f);
			CHECK_VEC("exp_sum", ks, r2, r1, n + 1, 1e-5, 1e-9);
			CHECK_MSG(fabsf(es1 - es2) <= 1e-5f * es1, "exp_sum %s n %zu: sum %.9g vs %.9g",
				  ks->name, n, es2, es1);
			if (n > 2)
				CHECK(r2[1] == 0.0f);

			for (size_t i = 0; i < N; i++)
				r1[i] = r2[i] = 12.0f * x[i];
			gen->swiglu(r1, r1, u, n);
			ks->swiglu(r2, r2, u, n);
			CHECK_VEC("swiglu", ks, r2, r1, n + 1, 1e-5, 1e-6);

			for (size_t i = 0; i < N; i++)
				b1[i] = b2[i] = (uint16_t)test_rand_next(&s);
			gen->bf16_to_f32(r1, b1, n);
			ks->bf16_to_f32(r2, b1, n);
			CHECK(memcmp(r1, r2, n * sizeof(float)) == 0);
			gen->f32_to_bf16(b1, r1, n);
			ks->f32_to_bf16(b2, r1, n);
			CHECK(memcmp(b1, b2, sizeof b1) == 0);
		}
	}
}

/* gemm_nn (attention's small products): every set against float64 with the error bound of
 * an f32 sum, at awkward shapes, with and without accumulation, with row strides wider than
 * the rows (the padding between rows must stay untouched). */
TEST(test_gemm_nn)
{
	uint64_t s = seed0 ^ 0x6e33;
	static const size_t ms[] = {1, 2, 3, 5, 8, 9, 48}, ks_[] = {0, 1, 5, 16, 24, 64},
			    ns[] = {1, 5, 16, 17, 24, 33, 64, 65, 130};
	enum { MAXM = 48, MAXK = 64, MAXN = 130, PAD = 3 };
	static float X[MAXM * (MAXK + PAD)], B[MAXK * (MAXN + PAD)], Y0[MAXM * (MAXN + PAD)],
		Y[MAXM * (MAXN + PAD)];
	static double R[MAXM * (MAXN + PAD)], S[MAXM * (MAXN + PAD)];
	for (size_t a = 0; a < COUNT(ms); a++)
		for (size_t b = 0; b < COUNT(ks_); b++)
			for (size_t c = 0; c < COUNT(ns); c++)
				for (int acc = 0; acc < 2; acc++) {
					size_t m = ms[a], k = ks_[b], n = ns[c];
					size_t ldx = k + PAD, ldb = n + PAD, ldy = n + PAD;
					fill(X, COUNT(X), &s);
					fill(B, COUNT(B), &s);
					fill(Y0, COUNT(Y0), &s);
					for (size_t i = 0; i < m; i++)
						for (size_t j = 0; j < ldy; j++) {
							double r = j >= n || acc ? Y0[i * ldy + j] : 0.0, sc = fabs(r);
							for (size_t p = 0; j < n && p < k; p++) {
								double t = (double)X[i * ldx + p] * B[p * ldb + j];
								r += t;
								sc += fabs(t);
							}
							R[i * ldy + j] = r; /* padding (j >= n): untouched */
							S[i * ldy + j] = sc;
						}
					for (int v = 0; v < CPU_ISA_COUNT; v++) {
						const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
						if (!ks)
							continue;
						memcpy(Y, Y0, sizeof Y);
						ks->gemm_nn(Y, ldy, X, ldx, B, ldb, m, k, n, acc);
						size_t bad = SIZE_MAX;
						for (size_t e = 0; e < m * ldy && bad == SIZE_MAX; e++)
							if (!(fabs(Y[e] - R[e]) <= tol_for(k + 1, S[e])))
								bad = e;
						CHECK_MSG(bad == SIZE_MAX,
							  "gemm_nn %s m %zu k %zu n %zu acc %d: [%zu] %.9g vs %.9g",
							  ks->name, m, k, n, acc, bad, Y[bad], R[bad]);
						for (size_t e = m * ldy; e < COUNT(Y); e++)
							bad = Y[e] != Y0[e] ? e : bad;
						CHECK_MSG(bad == SIZE_MAX, "gemm_nn %s wrote past row m - 1",
							  ks->name);
					}
				}
}

/* gemm_nn_chunks (attention's P V over a step of cache blocks): B's rows in chunks of kb at
 * their own places, apart and out of order in one buffer, the gaps poisoned so a row read
 * from the wrong chunk or past a chunk's end shows. Every set against float64 with the
 * bound of an f32 sum, and the generic twin bit for bit against gemm_nn_generic of the
 * gathered B (the same sums in the same order), at awkward m, k, kb and n. */
TEST(test_gemm_nn_chunks)
{
	uint64_t s = seed0 ^ 0x6e35;
	static const size_t ms[] = {1, 5, 7, 96, 97}, ks_[] = {0, 1, 7, 17, 33, 64},
			    kbs[] = {1, 5, 16}, ns[] = {1, 17, 33, 64, 65};
	enum { MAXM = 97, MAXK = 64, MAXN = 65, PAD = 3, GAP = 7 };
	enum { LDB = MAXN + PAD, CH = 16 * LDB + GAP }; /* one chunk's slot: up to 16 rows */
	static float X[MAXM * (MAXK + PAD)], B[MAXK * LDB], Bc[MAXK * CH], Y0[MAXM * (MAXN + PAD)],
		Y[MAXM * (MAXN + PAD)], Yg[MAXM * (MAXN + PAD)];
	static double R[MAXM * (MAXN + PAD)], S[MAXM * (MAXN + PAD)];
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	const float *Bs[MAXK];
	for (size_t a = 0; a < COUNT(ms); a++)
		for (size_t b = 0; b < COUNT(ks_); b++)
			for (size_t q = 0; q < COUNT(kbs); q++)
				for (size_t c = 0; c < COUNT(ns); c++) {
					size_t m = ms[a], k = ks_[b], kb = kbs[q], n = ns[c];
					size_t ldx = k + PAD, ldy = n + PAD, n_ch = (k + kb - 1) / kb;
					int acc = (int)((a + b + c) & 1);
					fill(X, m * ldx, &s);
					fill(B, COUNT(B), &s);
					fill(Y0, COUNT(Y0), &s);
					for (size_t e = 0; e < COUNT(Bc); e++)
						Bc[e] = 1e6f; /* poison */
					for (size_t h = 0; h < n_ch; h++) { /* chunk h in slot n_ch - 1 - h */
						Bs[h] = Bc + (n_ch - 1 - h) * CH + GAP;
						for (size_t p = h * kb; p < k && p < (h + 1) * kb; p++)
							memcpy((float *)Bs[h] + (p - h * kb) * LDB, B + p * LDB,
							       n * sizeof(float));
					}
					for (size_t i = 0; i < m; i++)
						for (size_t j = 0; j < ldy; j++) {
							double r = j >= n || acc ? Y0[i * ldy + j] : 0.0, sc = fabs(r);
							for (size_t p = 0; j < n && p < k; p++) {
								double t = (double)X[i * ldx + p] * B[p * LDB + j];
								r += t;
								sc += fabs(t);
							}
							R[i * ldy + j] = r;
							S[i * ldy + j] = sc;
						}
					memcpy(Yg, Y0, sizeof Yg);
					gen->gemm_nn(Yg, ldy, X, ldx, B, LDB, m, k, n, acc);
					for (int v = 0; v < CPU_ISA_COUNT; v++) {
						const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
						if (!ks)
							continue;
						memcpy(Y, Y0, sizeof Y);
						ks->gemm_nn_chunks(Y, ldy, X, ldx, Bs, LDB, kb, m, k, n, acc);
						size_t bad = SIZE_MAX;
						for (size_t e = 0; e < m * ldy && bad == SIZE_MAX; e++)
							if (!(fabs(Y[e] - R[e]) <= tol_for(k + 1, S[e])))
								bad = e;
						CHECK_MSG(bad == SIZE_MAX,
							  "gemm_nn_chunks %s m %zu k %zu kb %zu n %zu acc %d: "
							  "[%zu] %.9g vs %.9g",
							  ks->name, m, k, kb, n, acc, bad, Y[bad], R[bad]);
						for (size_t e = m * ldy; e < COUNT(Y); e++)
							bad = Y[e] != Y0[e] ? e : bad;
						CHECK_MSG(bad == SIZE_MAX, "gemm_nn_chunks %s wrote past row m - 1",
							  ks->name);
						if (v == CPU_ISA_GENERIC)
							CHECK_MSG(memcmp(Y, Yg, sizeof Y) == 0,
								  "gemm_nn_chunks generic m %zu k %zu kb %zu n %zu: "
								  "not gemm_nn's sums",
								  m, k, kb, n);
					}
				}
}

/* The attention tests' cache: key / value rows of kb-row chunks, chunk g in slot n_ch - 1 - g
 * (out of order) of `slot` elements, after a gap of `gap` elements left as the caller
 * poisoned them. chunk_offset: where chunk g starts, in elements; scatter_chunks copies rows
 * j < n (hd elements of elem bytes, ld apart in KV and in the chunks) into Kc. */
static size_t chunk_offset(size_t g, size_t n_ch, size_t slot, size_t gap)
{
	return (n_ch - 1 - g) * slot + gap;
}

static void scatter_chunks(void *Kc, const void *KV, size_t elem, size_t ld, size_t slot,
			   size_t gap, size_t n, size_t kb, size_t hd)
{
	size_t n_ch = (n + kb - 1) / kb;
	for (size_t j = 0; j < n; j++) {
		size_t off = chunk_offset(j / kb, n_ch, slot, gap) + j % kb * ld;
		memcpy((char *)Kc + off * elem, (const char *)KV + j * ld * elem, hd * elem);
	}
}

/* attn_scores_f32 (sets that have it) against float64 and, bit for bit, against the same
 * set's gemm_nn of the queries and the transposed keys (what the attention ran before, and
 * still runs for long tasks: a token's scores must not depend on which one it got). Key rows
 * in out-of-order chunks between poisoned gaps; awkward m (past the 12-row tile), n (key
 * tails of 16), kb and hd (tails of 16); nothing outside S[0..m)[0..n) may be written. */
TEST(test_attn_scores_f32)
{
	uint64_t s = seed0 ^ 0x5c0f;
	static const size_t ms[] = {1, 3, 12, 13, 27}, ns[] = {1, 7, 16, 33, 257},
			    kbs[] = {1, 5, 16}, hds[] = {8, 40, 64, 72};
	enum { MAXM = 27, MAXN = 257, MAXD = 72, PAD = 3, GAP = 5, LDK = MAXD + 8 };
	enum { CH = 16 * LDK + GAP }; /* a chunk's slot: up to 16 rows */
	static float X[MAXM * (MAXD + PAD)], KV[MAXN * LDK], Kc[MAXN * CH], Kt[MAXD * MAXN];
	static float S0[MAXM * (MAXN + PAD)], Sg[MAXM * (MAXN + PAD)], Sr[MAXM * (MAXN + PAD)];
	const float *Ks[MAXN];
	size_t n_tested = 0;
	for (size_t a = 0; a < COUNT(ms); a++)
		for (size_t c = 0; c < COUNT(ns); c++)
			for (size_t q = 0; q < COUNT(kbs); q++)
				for (size_t h = 0; h < COUNT(hds); h++) {
					size_t m = ms[a], n = ns[c], kb = kbs[q], hd = hds[h];
					size_t ldx = hd + PAD, lds = n + PAD, n_ch = (n + kb - 1) / kb;
					fill(X, COUNT(X), &s);
					fill(KV, COUNT(KV), &s);
					for (size_t e = 0; e < COUNT(Kc); e++)
						Kc[e] = NAN; /* poison: a read would spread */
					for (size_t i = 0; i < m; i++)
						for (size_t d = hd; d < ldx; d++)
							X[i * ldx + d] = NAN;
					scatter_chunks(Kc, KV, sizeof *KV, LDK, CH, GAP, n, kb, hd);
					for (size_t g = 0; g < n_ch; g++)
						Ks[g] = Kc + chunk_offset(g, n_ch, CH, GAP);
					for (size_t d = 0; d < hd; d++)
						for (size_t j = 0; j < n; j++)
							Kt[d * n + j] = KV[j * LDK + d];
					fill(S0, COUNT(S0), &s);
					for (int v = 0; v < CPU_ISA_COUNT; v++) {
						const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
						if (!ks || !ks->attn_scores_f32)
							continue;
						n_tested++;
						memcpy(Sg, S0, sizeof Sg);
						ks->attn_scores_f32(Sg, lds, X, ldx, Ks, LDK, kb, m, hd, n);
						memcpy(Sr, S0, sizeof Sr);
						ks->gemm_nn(Sr, lds, X, ldx, Kt, n, m, hd, n, 0);
						size_t bad = SIZE_MAX, differ = 0;
						for (size_t i = 0; i < MAXM && bad == SIZE_MAX; i++)
							for (size_t j = 0; j < lds && bad == SIZE_MAX; j++) {
								size_t e = i * lds + j;
								if (i >= m || j >= n) {
									bad = Sg[e] != S0[e] ? e : bad;
									continue;
								}
								differ += memcmp(&Sg[e], &Sr[e], sizeof Sg[e]) != 0;
								double r = 0, t = 0;
								for (size_t d = 0; d < hd; d++) {
									double x = (double)X[i * ldx + d] *
										   KV[j * LDK + d];
									r += x;
									t += fabs(x);
								}
								bad = fabs(Sg[e] - r) <= tol_for(hd, t) ? bad : e;
							}
						CHECK_MSG(bad == SIZE_MAX,
							  "attn_scores_f32 %s m %zu n %zu kb %zu hd %zu: [%zu]",
							  ks->name, m, n, kb, hd, bad);
						CHECK_MSG(differ == 0,
							  "attn_scores_f32 %s m %zu n %zu kb %zu hd %zu: %zu scores "
							  "differ from gemm_nn's",
							  ks->name, m, n, kb, hd, differ);
					}
				}
	CHECK(n_tested > 0);
}

/* The bf16 attention products (sets that have them: generic and amx) against float64 of the
 * same bf16 values, with key / value rows in out-of-order chunks between poisoned gaps, at
 * awkward m (row tails), n (key tails of 16 and 32, more than one 256-key chunk), kb and hd;
 * nothing outside S[0..m)[0..n) / acc rows < m, columns < hd may be written. */
TEST(test_attn_bf16)
{
	uint64_t s = seed0 ^ 0xa77e;
	static const size_t ms[] = {1, 5, 16, 17, 96, 97}, ns[] = {1, 7, 16, 33, 64, 257},
			    kbs[] = {1, 5, 16}, hds[] = {32, 64, 128};
	enum { MAXM = 97, MAXN = 257, MAXD = 128, PAD = 3, GAP = 5, LDK = MAXD + 8 };
	enum { CH = 16 * LDK + GAP }; /* a chunk's slot: up to 16 rows */
	static uint16_t X[MAXM * (MAXD + PAD)], P[MAXM * (MAXN + PAD)], KV[MAXN * LDK],
		Kc[MAXN * CH];
	static float S0[MAXM * (MAXN + PAD)], Sg[MAXM * (MAXN + PAD)], S17[MAXM * (MAXN + PAD)],
		A0[MAXM * (MAXD + PAD)], Ag[MAXM * (MAXD + PAD)], tmp[MAXN * (MAXD + PAD)];
	const uint16_t *Ks[MAXN];
	size_t n_tested = 0;
	for (size_t a = 0; a < COUNT(ms); a++)
		for (size_t c = 0; c < COUNT(ns); c++)
			for (size_t q = 0; q < COUNT(kbs); q++)
				for (size_t h = 0; h < COUNT(hds); h++) {
					size_t m = ms[a], n = ns[c], kb = kbs[q], hd = hds[h];
					size_t ldx = hd + PAD, ldp = n + PAD, lds = n + PAD, lda = hd + PAD;
					size_t n_ch = (n + kb - 1) / kb;
					fill(tmp, COUNT(tmp), &s);
					for (size_t e = 0; e < COUNT(X); e++)
						X[e] = num_f32_to_bf16(tmp[e % COUNT(tmp)]);
					fill(tmp, COUNT(tmp), &s);
					for (size_t e = 0; e < COUNT(KV); e++)
						KV[e] = num_f32_to_bf16(tmp[e % COUNT(tmp)]);
					fill(tmp, COUNT(tmp), &s);
					for (size_t e = 0; e < COUNT(P); e++)
						P[e] = num_f32_to_bf16(tmp[e % COUNT(tmp)]);
					for (size_t e = 0; e < COUNT(Kc); e++)
						Kc[e] = 0x7fc0; /* poison: a NaN read would spread */
					for (size_t i = 0; i < m; i++) { /* so would padding read */
						for (size_t d = hd; d < ldx; d++)
							X[i * ldx + d] = 0x7fc0;
						for (size_t j = n; j < ldp; j++)
							P[i * ldp + j] = 0x7fc0;
					}
					scatter_chunks(Kc, KV, sizeof *KV, LDK, CH, GAP, n, kb, hd);
					for (size_t g = 0; g < n_ch; g++)
						Ks[g] = Kc + chunk_offset(g, n_ch, CH, GAP);
					fill(S0, COUNT(S0), &s);
					fill(A0, COUNT(A0), &s);
					for (int v = 0; v < CPU_ISA_COUNT; v++) {
						const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
						if (!ks || !ks->attn_scores_bf16)
							continue;
						n_tested++;
						/* scores */
						memcpy(Sg, S0, sizeof Sg);
						ks->attn_scores_bf16(Sg, lds, X, ldx, Ks, LDK, kb, m, hd, n);
						size_t bad = SIZE_MAX;
						for (size_t i = 0; i < MAXM && bad == SIZE_MAX; i++)
							for (size_t j = 0; j < lds && bad == SIZE_MAX; j++) {
								size_t e = i * lds + j;
								if (i >= m || j >= n) {
									bad = Sg[e] != S0[e] ? e : bad;
									continue;
								}
								double r = 0, t = 0;
								for (size_t d = 0; d < hd; d++) {
									double x = num_bf16_to_f32(X[i * ldx + d]) *
										   (double)num_bf16_to_f32(
											   KV[j * LDK + d]);
									r += x;
									t += fabs(x);
								}
								bad = fabs(Sg[e] - r) <= tol_for(hd, t) ? bad : e;
							}
						CHECK_MSG(bad == SIZE_MAX,
							  "attn_scores_bf16 %s m %zu n %zu kb %zu hd %zu: [%zu]",
							  ks->name, m, n, kb, hd, bad);
						/* up to 16 rows may take another path (amx: the operands
						 * swapped); 17 rows take the general one: the same bits */
						if (m <= 16) {
							memcpy(S17, S0, sizeof S17);
							ks->attn_scores_bf16(S17, lds, X, ldx, Ks, LDK, kb, 17, hd,
									     n);
							size_t differ = 0;
							for (size_t i = 0; i < m; i++)
								differ += memcmp(Sg + i * lds, S17 + i * lds,
										 n * sizeof *Sg) != 0;
							CHECK_MSG(differ == 0,
								  "attn_scores_bf16 %s m %zu n %zu kb %zu hd %zu: "
								  "%zu rows differ from the 17-row path",
								  ks->name, m, n, kb, hd, differ);
						}
						/* P V, values from the same chunks */
						memcpy(Ag, A0, sizeof Ag);
						ks->attn_pv_bf16(Ag, lda, P, ldp, Ks, LDK, kb, m, n, hd);
						bad = SIZE_MAX;
						for (size_t i = 0; i < MAXM && bad == SIZE_MAX; i++)
							for (size_t d = 0; d < lda && bad == SIZE_MAX; d++) {
								size_t e = i * lda + d;
								if (i >= m || d >= hd) {
									bad = Ag[e] != A0[e] ? e : bad;
									continue;
								}
								double r = A0[e], t = fabs(r);
								for (size_t j = 0; j < n; j++) {
									double x = num_bf16_to_f32(P[i * ldp + j]) *
										   (double)num_bf16_to_f32(
											   KV[j * LDK + d]);
									r += x;
									t += fabs(x);
								}
								bad = fabs(Ag[e] - r) <= tol_for(n + 1, t) ? bad : e;
							}
						CHECK_MSG(bad == SIZE_MAX,
							  "attn_pv_bf16 %s m %zu n %zu kb %zu hd %zu: [%zu]",
							  ks->name, m, n, kb, hd, bad);
					}
				}
	CHECK(n_tested > 0);
}

/* online_softmax: every set against the generic one at awkward block widths, visible counts
 * (none, one, some, all) and running maxima (none yet, above and below the block's); the
 * guard elements after s and acc must not change. Then a whole row fed block by block
 * through each set must give softmax(scores) V as computed in float64. */
TEST(test_online_softmax)
{
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	uint64_t s = seed0 ^ 0x50f7;
	static const size_t widths[] = {1, 5, 16, 17, 33, 64};
	static const size_t hds[] = {7, 16, 64, 80};
	enum { NT = 64 + 1, HD = 80 + 1 };
	float s0[NT], s1[NT], s2[NT], a0[HD], a1[HD], a2[HD];
	for (size_t v = 0; v < n_simd_sets; v++) {
		const cpu_kernel_set *ks = simd_sets[v];
		for (size_t wi = 0; wi < COUNT(widths); wi++)
			for (size_t hi = 0; hi < COUNT(hds); hi++)
				for (int mcase = 0; mcase < 3; mcase++) {
					size_t n_t = widths[wi], hd = hds[hi];
					size_t nvs[] = {0, 1, (n_t + 1) / 2, n_t};
					for (size_t c = 0; c < COUNT(nvs); c++) {
						size_t nv = nvs[c];
						fill(s0, NT, &s);
						for (size_t i = 0; i < NT; i++)
							s0[i] *= 6.0f;
						fill(a0, HD, &s);
						float m0 = mcase == 0 ? -INFINITY : mcase == 1 ? 7.0f : -7.0f;
						float l0 = mcase == 0 ? 0.0f : 1.0f + fabsf(rnd(&s)) * 5.0f;
						float m1 = m0, m2 = m0, l1 = l0, l2 = l0;
						memcpy(s1, s0, sizeof s0);
						memcpy(s2, s0, sizeof s0);
						memcpy(a1, a0, sizeof a0);
						memcpy(a2, a0, sizeof a0);
						gen->online_softmax(s1, n_t, nv, &m1, &l1, a1, hd);
						ks->online_softmax(s2, n_t, nv, &m2, &l2, a2, hd);
						CHECK_VEC("online_softmax s", ks, s2, s1, n_t + 1, 1e-5, 1e-9);
						CHECK_VEC("online_softmax acc", ks, a2, a1, hd + 1, 1e-5, 1e-6);
						CHECK_MSG(m1 == m2 && fabsf(l1 - l2) <= 1e-5f * (l1 + 1e-6f),
							  "online_softmax %s n_t %zu nv %zu: m %g l %.9g vs "
							  "m %g l %.9g", ks->name, n_t, nv, m2, l2, m1, l1);
						CHECK(s2[n_t] == s0[n_t] && a2[hd] == a0[hd]);
						for (size_t t = nv; t < n_t; t++)
							CHECK(s2[t] == 0.0f);
					}
				}
	}

	enum { T = 83, D = 19, BT = 16 };
	float sc[T], V[T * D];
	fill(sc, T, &s);
	fill(V, T * D, &s);
	for (size_t i = 0; i < T; i++)
		sc[i] *= 9.0f;
	double mx = sc[0], den = 0, want[D] = {0};
	for (size_t t = 1; t < T; t++)
		mx = sc[t] > mx ? sc[t] : mx;
	for (size_t t = 0; t < T; t++) {
		double e = exp(sc[t] - mx);
		den += e;
		for (size_t d = 0; d < D; d++)
			want[d] += e * V[t * D + d];
	}
	for (int v = 0; v < CPU_ISA_COUNT; v++) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
		if (!ks)
			continue;
		float acc[D] = {0}, blk[BT], m = -INFINITY, l = 0.0f;
		for (size_t t0 = 0; t0 < T; t0 += BT) {
			size_t n_t = T - t0 < BT ? T - t0 : BT;
			memcpy(blk, sc + t0, n_t * sizeof *blk);
			ks->online_softmax(blk, n_t, n_t, &m, &l, acc, D);
			for (size_t t = 0; t < n_t; t++)
				for (size_t d = 0; d < D; d++)
					acc[d] += blk[t] * V[(t0 + t) * D + d];
		}
		for (size_t d = 0; d < D; d++)
			CHECK_MSG(fabs(acc[d] / l - want[d] / den) <= 1e-5 * (fabs(want[d] / den) + 0.1),
				  "online_softmax %s blockwise: out[%zu] %.9g vs %.9g", ks->name, d,
				  acc[d] / l, want[d] / den);
	}
}

/* transpose: every set copies exactly (also the masked edges of 16 x 16 blocks) and writes
 * nothing outside the rows x cols it is given. */
TEST(test_transpose)
{
	uint64_t s = seed0 ^ 0x7a05;
	static const size_t dims[] = {1, 3, 15, 16, 17, 31, 33, 64, 70};
	enum { MAXD = 70, PAD = 5 };
	static float src[MAXD * (MAXD + PAD)], dst[(MAXD + PAD) * (MAXD + PAD)],
		dst0[(MAXD + PAD) * (MAXD + PAD)];
	for (size_t a = 0; a < COUNT(dims) && !test_case_failed; a++)
		for (size_t b = 0; b < COUNT(dims) && !test_case_failed; b++) {
			size_t rows = dims[a], cols = dims[b], lds = cols + PAD, ldd = rows + 3;
			fill(src, COUNT(src), &s);
			fill(dst0, COUNT(dst0), &s);
			for (int v = 0; v < CPU_ISA_COUNT; v++) {
				const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
				if (!ks)
					continue;
				memcpy(dst, dst0, sizeof dst);
				ks->transpose(dst, ldd, src, lds, rows, cols);
				size_t bad = SIZE_MAX;
				for (size_t c = 0; c < cols + 2 && bad == SIZE_MAX; c++)
					for (size_t r = 0; r < ldd; r++) {
						size_t e = c * ldd + r;
						float want = r < rows && c < cols ? src[r * lds + c] : dst0[e];
						if (memcmp(&dst[e], &want, sizeof want) != 0) {
							bad = e;
							break;
						}
					}
				CHECK_MSG(bad == SIZE_MAX, "transpose %s rows %zu cols %zu: dst[%zu] wrong",
					  ks->name, rows, cols, bad);
			}
		}
}

/* f32 -> bf16 rounding is bit-exact with numerics.h on special values: NaN, Inf,
 * subnormals, exact halfway cases (ties to even), the largest finite values. */
TEST(test_bf16_rounding_special)
{
	const uint32_t bits[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
				 0x7f800001, 0xffbfffff, 0x00000001, 0x807fffff, 0x00008000,
				 0x3f808000, 0x3f818000, 0x3f80c000, 0x7f7fffff, 0xff7f8000,
				 0x3f7fffff, 0x00010000, 0x7f7f7fff};
	enum { N = sizeof bits / sizeof bits[0] };
	float x[N];
	uint16_t want[N], got[N];
	for (size_t i = 0; i < N; i++) {
		x[i] = num_bits_f32(bits[i]);
		want[i] = num_f32_to_bf16(x[i]);
	}
	for (int v = 0; v < CPU_ISA_COUNT; v++) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
		if (!ks)
			continue;
		ks->f32_to_bf16(got, x, N);
		for (size_t i = 0; i < N; i++)
			CHECK_MSG(got[i] == want[i], "%s: bf16(0x%08x) = 0x%04x, expected 0x%04x",
				  ks->name, bits[i], got[i], want[i]);
	}
}

/* Generic rope against its definition in double, NEOX == NORM under the pair permutation,
 * and every set against generic. */
TEST(test_rope)
{
	uint64_t s = seed0 ^ 0x40be;
	const size_t dims[] = {2, 6, 16, 34, 64, 128};
	const int32_t pos[] = {0, 1, 7, 300, 4095, 32767};
	enum { N_TOK = 6, MAXD = 128, HEADS = 3 };
	static float x[N_TOK * HEADS * MAXD], a[N_TOK * HEADS * MAXD], b[N_TOK * HEADS * MAXD];
	const cpu_kernel_set *gen = cpu_kernels_get(CPU_ISA_GENERIC);
	for (size_t di = 0; di < COUNT(dims); di++) {
		size_t d = dims[di], n = N_TOK * HEADS * d, half = d / 2;
		fill(x, n, &s);
		for (int lay = 0; lay < 2; lay++) {
			memcpy(a, x, n * sizeof(float));
			cpu_rope(gen, a, N_TOK, HEADS, d, pos, 10000.0f, (cpu_rope_layout)lay);
			for (size_t t = 0; t < N_TOK; t++)
				for (size_t h = 0; h < HEADS; h++)
					for (size_t i = 0; i < half; i++) {
						size_t base = (t * HEADS + h) * d;
						size_t ia = lay ? i : 2 * i, ib = lay ? i + half : 2 * i + 1;
						double th = (double)pos[t] *
							    pow(10000.0, -2.0 * (double)i / (double)d);
						double xa = x[base + ia], xb = x[base + ib];
						double wa = xa * cos(th) - xb * sin(th);
						double wb = xa * sin(th) + xb * cos(th);
						CHECK_MSG(fabs(a[base + ia] - wa) < 1e-6 &&
								  fabs(a[base + ib] - wb) < 1e-6,
							  "rope layout %d d %zu pos %d pair %zu: (%.7g, %.7g) "
							  "expected (%.7g, %.7g)",
							  lay, d, pos[t], i, a[base + ia], a[base + ib], wa, wb);
					}
			for (size_t v = 0; v < n_simd_sets; v++) {
				memcpy(b, x, n * sizeof(float));
				cpu_rope(simd_sets[v], b, N_TOK, HEADS, d, pos, 10000.0f,
					 (cpu_rope_layout)lay);
				CHECK_VEC("rope", simd_sets[v], b, a, n, 1e-5, 0.1);
			}
		}
		/* NEOX on the de-interleaved head equals NORM on the interleaved one */
		for (size_t r = 0; r < N_TOK * HEADS; r++)
			for (size_t i = 0; i < half; i++) {
				b[r * d + i] = x[r * d + 2 * i];
				b[r * d + half + i] = x[r * d + 2 * i + 1];
			}
		memcpy(a, x, n * sizeof(float));
		cpu_rope(gen, a, N_TOK, HEADS, d, pos, 10000.0f, CPU_ROPE_NORM);
		cpu_rope(gen, b, N_TOK, HEADS, d, pos, 10000.0f, CPU_ROPE_NEOX);
		for (size_t r = 0; r < N_TOK * HEADS; r++)
			for (size_t i = 0; i < half; i++)
				CHECK(a[r * d + 2 * i] == b[r * d + i] &&
				      a[r * d + 2 * i + 1] == b[r * d + half + i]);
	}
}

/* head_dim beyond the table limit takes the scalar path: same values as the definition */
TEST(test_rope_wide_head)
{
	enum { D = 1040, HEADS = 2 };
	static float x[HEADS * D], a[HEADS * D];
	uint64_t s = seed0 ^ 0x31de;
	const int32_t pos[] = {77};
	fill(x, HEADS * D, &s);
	for (int lay = 0; lay < 2; lay++) {
		memcpy(a, x, sizeof x);
		cpu_rope(cpu_kernels_get(CPU_ISA_GENERIC), a, 1, HEADS, D, pos, 10000.0f,
			 (cpu_rope_layout)lay);
		for (size_t h = 0; h < HEADS; h++)
			for (size_t i = 0; i < D / 2; i++) {
				size_t ia = lay ? i : 2 * i, ib = lay ? i + D / 2 : 2 * i + 1;
				double th = 77.0 * pow(10000.0, -2.0 * (double)i / D);
				double xa = x[h * D + ia], xb = x[h * D + ib];
				CHECK(fabs(a[h * D + ia] - (xa * cos(th) - xb * sin(th))) < 1e-6);
				CHECK(fabs(a[h * D + ib] - (xa * sin(th) + xb * cos(th))) < 1e-6);
			}
	}
}

TEST(test_select_env)
{
	const cpu_kernel_set *ks = NULL;
	os_error err;
	unsetenv("OPTSTUDIO_CPU");
	CHECK(cpu_kernels_select(&ks, &err) == OS_OK && ks);
	const cpu_kernel_set *best = ks;
	for (int i = CPU_ISA_COUNT - 1; i >= 0; i--)
		if (cpu_kernels_get((cpu_isa)i)) {
			CHECK(best == cpu_kernels_get((cpu_isa)i));
			break;
		}
	setenv("OPTSTUDIO_CPU", "generic", 1);
	CHECK(cpu_kernels_select(&ks, &err) == OS_OK);
	CHECK_EQ_STR(ks->name, "generic");
	setenv("OPTSTUDIO_CPU", "avx2", 1);
	int rc = cpu_kernels_select(&ks, &err);
	CHECK(cpu_kernels_get(CPU_ISA_AVX2) ? rc == OS_OK && ks->isa == CPU_ISA_AVX2
					    : rc == OS_EUNSUPPORTED);
	setenv("OPTSTUDIO_CPU", "sse9", 1);
	ks = NULL;
	CHECK(cpu_kernels_select(&ks, &err) == OS_EUSAGE && ks == NULL);
	CHECK(strstr(err.msg, "sse9") != NULL);
	unsetenv("OPTSTUDIO_CPU");
}

int main(void)
{
	const char *env = getenv("OPTSTUDIO_TEST_SEED");
	seed0 = env ? strtoull(env, NULL, 0) : 0x6b65726e656c73ull;
	printf("seed 0x%llx (set OPTSTUDIO_TEST_SEED to change)\n", (unsigned long long)seed0);
	find_sets();
	RUN(test_matmul_f32);
	RUN(test_matmul_bf16);
	RUN(test_matmul_rows_vs_generic);
	RUN(test_matmul_batch_invariant);
	RUN(test_matmul_threaded_large);
	RUN(test_matmul_prefill_shapes);
	RUN(test_elementwise_vs_generic);
	RUN(test_gemm_nn);
	RUN(test_gemm_nn_chunks);
	RUN(test_attn_scores_f32);
	RUN(test_attn_bf16);
	RUN(test_online_softmax);
	RUN(test_transpose);
	RUN(test_bf16_rounding_special);
	RUN(test_rope);
	RUN(test_rope_wide_head);
	RUN(test_select_env);
	return test_summary();
}
