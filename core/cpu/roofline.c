/* roofline.c: the bandwidth and peak-FLOP probes behind roofline.h. The inner loops use
 * function-level target attributes and run only when cpu_features says they may. */
#include "core/cpu/roofline.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bigalloc.h"
#include "core/cpu/cpu_features.h"
#include "core/cpu/kernels.h"
#include "core/cpu/kernels_amx.h"

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni,avx2,fma")))
#define TGT2 __attribute__((target("avx2,fma")))
#define TGT_AMX __attribute__((target("amx-tile,amx-bf16,amx-int8")))

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- bandwidth ------------------------------------------------------------------------- */

enum { BW_TASKS_PER_THREAD = 16 };

struct bw_job {
	unsigned char *buf;
	size_t bytes, chunk; /* chunk: bytes per task, a multiple of 256 */
	int isa;             /* 2 avx512, 1 avx2, 0 scalar */
	uint64_t sink[64];   /* one slot per thread (mod 64), so the reads are not dead */
};

TGT512 static uint64_t read_avx512(const unsigned char *p, size_t n)
{
	__m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
	for (size_t i = 0; i + 256 <= n; i += 256) {
		a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
		a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
		a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
		a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
	}
	a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
	return (uint64_t)_mm512_reduce_or_epi64(a0);
}

TGT2 static uint64_t read_avx2(const unsigned char *p, size_t n)
{
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
	for (size_t i = 0; i + 128 <= n; i += 128) {
		a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
		a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
		a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
		a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
	}
	a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
	return (uint64_t)_mm256_extract_epi64(a0, 0) ^ (uint64_t)_mm256_extract_epi64(a0, 3);
}

static uint64_t read_scalar(const unsigned char *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;
	uint64_t a = 0, b = 0;
	for (size_t i = 0; i + 2 <= n / 8; i += 2) {
		a ^= q[i];
		b ^= q[i + 1];
	}
	return a ^ b;
}

static void bw_fill_task(void *ctx, size_t task, size_t thread)
{
	struct bw_job *j = ctx;
	size_t a = task * j->chunk;
	size_t n = a + j->chunk <= j->bytes ? j->chunk : j->bytes - a;
	memset(j->buf + a, (int)(task * 37 + 1), n);
}

static void bw_read_task(void *ctx, size_t task, size_t thread)
{
	struct bw_job *j = ctx;
	size_t a = task * j->chunk;
	size_t n = a + j->chunk <= j->bytes ? j->chunk : j->bytes - a;
	uint64_t v = j->isa == 2 ? read_avx512(j->buf + a, n)
		   : j->isa == 1 ? read_avx2(j->buf + a, n)
				 : read_scalar(j->buf + a, n);
	j->sink[thread % 64] ^= v;
}

double roofline_read_bandwidth(threadpool *pool, size_t bytes)
{
	if (bytes == 0)
		bytes = (size_t)512 << 20;
	size_t n_threads = threadpool_n_threads(pool);
	size_t n_tasks = n_threads * BW_TASKS_PER_THREAD;
	struct bw_job j = {.bytes = bytes};
	j.chunk = (bytes + n_tasks - 1) / n_tasks;
	j.chunk = (j.chunk + 255) / 256 * 256;
	j.bytes = j.chunk * n_tasks; /* whole chunks: every byte read counts */
	j.buf = big_alloc(j.bytes); /* the pages the weights get */
	if (!j.buf)
		return -1.0;
	cpu_features f;
	cpu_features_detect(&f);
	j.isa = f.avx512f && f.avx512bw && f.os_avx512 ? 2 : f.avx2 && f.os_avx ? 1 : 0;
	threadpool_run(pool, n_tasks, bw_fill_task, &j); /* pages faulted in by their readers */
	double best = 0.0;
	for (int rep = 0; rep < 4; rep++) {
		double t0 = now_s();
		threadpool_run(pool, n_tasks, bw_read_task, &j);
		double dt = now_s() - t0;
		double gbs = (double)j.bytes / dt * 1e-9;
		if (rep > 0 && gbs > best) /* rep 0 warms the TLB and the workers */
			best = gbs;
	}
	free(j.buf);
	return best;
}

/* ---- peak flops ------------------------------------------------------------------------ */

enum { FL_ITERS = 1 << 15, FL_TASKS_PER_THREAD = 8, FL_CHAINS = 24, FL_CHAINS_AVX2 = 12,
       FL_REPS = 16 };

struct fl_job {
	int isa; /* 2 avx512, 1 avx2, 0 scalar */
	roofline_kind kind;
	float sink[64];
};

/* FL_CHAINS (24) independent chains: more than latency x throughput of either instruction
 * (FMA: 4 cycles x 2 ports; vdpbf16ps: ~10 cycles x 1/2 per cycle here), and as many
 * accumulators as the GEMM micro-kernels hold. 1 op = 16 lanes * 2 flops. */
TGT512 static float fma_avx512(size_t iters)
{
	__m512 a[FL_CHAINS];
	__m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
	for (int i = 0; i < FL_CHAINS; i++)
		a[i] = _mm512_set1_ps((float)i);
	for (size_t it = 0; it < iters; it++) {
#pragma GCC unroll 24
		for (int i = 0; i < FL_CHAINS; i++)
			a[i] = _mm512_fmadd_ps(a[i], m, c);
	}
	for (int i = 1; i < FL_CHAINS; i++)
		a[0] = _mm512_add_ps(a[0], a[i]);
	return _mm512_reduce_add_ps(a[0]);
}

/* 1 op = 16 lanes * 2 pairs * 2 flops = 64 */
TGT512 static float dpbf16_avx512(size_t iters)
{
	__m512 a[FL_CHAINS];
	__m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3380);
	for (int i = 0; i < FL_CHAINS; i++)
		a[i] = _mm512_set1_ps((float)i);
	for (size_t it = 0; it < iters; it++) {
#pragma GCC unroll 24
		for (int i = 0; i < FL_CHAINS; i++)
			a[i] = _mm512_dpbf16_ps(a[i], x, y);
	}
	for (int i = 1; i < FL_CHAINS; i++)
		a[0] = _mm512_add_ps(a[0], a[i]);
	return _mm512_reduce_add_ps(a[0]);
}

/* 1 op = 16 lanes * 4 byte products * 2 = 128 */
TGT512 static float dpbusd_avx512(size_t iters)
{
	__m512i a[FL_CHAINS];
	__m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1);
	for (int i = 0; i < FL_CHAINS; i++)
		a[i] = _mm512_set1_epi32(i);
	for (size_t it = 0; it < iters; it++) {
#pragma GCC unroll 24
		for (int i = 0; i < FL_CHAINS; i++)
			a[i] = _mm512_dpbusd_epi32(a[i], x, y);
	}
	for (int i = 1; i < FL_CHAINS; i++)
		a[0] = _mm512_add_epi32(a[0], a[i]);
	return (float)_mm512_reduce_add_epi32(a[0]);
}

/* Four accumulator tiles fed by two activation and two weight tiles held in registers, as
 * in the GEMMs' 32 x 32 tiles; 1 op = 16 x 16 results x 32 bf16 (int8: 64) products x 2 flops
 * = 16384 (32768). iters / 4 rounds of 4 ops (a tile product takes ~16 cycles): ~0.3 ms a
 * task. */
TGT_AMX static float dp_amx(size_t iters, int int8)
{
	cpu_amx_tilecfg cfg = cpu_amx_tilecfg_16x64();
	_Alignas(64) uint16_t ones[16 * 32]; /* bf16 1.0: sums stay small and exact */
	_Alignas(64) float out[16 * 16];
	for (int i = 0; i < 16 * 32; i++)
		ones[i] = 0x3f80;
	_tile_loadconfig(&cfg);
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	_tile_loadd(4, ones, 64);
	_tile_loadd(5, ones, 64);
	_tile_loadd(6, ones, 64);
	_tile_loadd(7, ones, 64);
	if (int8)
		for (size_t it = 0; it < iters / 4; it++) {
			_tile_dpbssd(0, 4, 6);
			_tile_dpbssd(1, 4, 7);
			_tile_dpbssd(2, 5, 6);
			_tile_dpbssd(3, 5, 7);
		}
	else
		for (size_t it = 0; it < iters / 4; it++) {
			_tile_dpbf16ps(0, 4, 6);
			_tile_dpbf16ps(1, 4, 7);
			_tile_dpbf16ps(2, 5, 6);
			_tile_dpbf16ps(3, 5, 7);
		}
	_tile_stored(0, out, 64);
	_tile_release();
	return out[0];
}

/* 12 chains (16 ymm registers); 1 op = 8 lanes * 2 flops */
TGT2 static float fma_avx2(size_t iters)
{
	__m256 a[FL_CHAINS_AVX2];
	__m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
	for (int i = 0; i < FL_CHAINS_AVX2; i++)
		a[i] = _mm256_set1_ps((float)i);
	for (size_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
		for (int i = 0; i < FL_CHAINS_AVX2; i++)
			a[i] = _mm256_fmadd_ps(a[i], m, c);
	}
	for (int i = 1; i < FL_CHAINS_AVX2; i++)
		a[0] = _mm256_add_ps(a[0], a[i]);
	float t[8];
	_mm256_storeu_ps(t, a[0]);
	return t[0] + t[7];
}

static void fl_task(void *ctx, size_t task, size_t thread)
{
	struct fl_job *j = ctx;
	float v;
	if (j->kind == ROOFLINE_BF16_AMX || j->kind == ROOFLINE_I8_AMX)
		v = dp_amx(FL_ITERS, j->kind == ROOFLINE_I8_AMX);
	else if (j->kind == ROOFLINE_I8_DP)
		v = dpbusd_avx512(FL_ITERS);
	else if (j->kind == ROOFLINE_BF16_DP)
		v = dpbf16_avx512(FL_ITERS);
	else if (j->isa == 2)
		v = fma_avx512(FL_ITERS);
	else if (j->isa == 1)
		v = fma_avx2(FL_ITERS);
	else {
		volatile float s = 0.0f; /* scalar fallback: a lower bound, not a peak */
		float a0 = 1, a1 = 2, a2 = 3, a3 = 4;
		for (size_t it = 0; it < (size_t)FL_ITERS * FL_CHAINS; it++) {
			a0 = a0 * 0.999999f + 1e-7f;
			a1 = a1 * 0.999999f + 1e-7f;
			a2 = a2 * 0.999999f + 1e-7f;
			a3 = a3 * 0.999999f + 1e-7f;
		}
		s = a0 + a1 + a2 + a3;
		v = s;
	}
	j->sink[thread % 64] += v;
}

double roofline_peak_flops(threadpool *pool, roofline_kind kind)
{
	cpu_features f;
	cpu_features_detect(&f);
	struct fl_job j = {.kind = kind};
	j.isa = f.avx512f && f.os_avx512 ? 2 : f.avx2 && f.fma && f.os_avx ? 1 : 0;
	double flops_per_task;
	if (kind == ROOFLINE_BF16_AMX || kind == ROOFLINE_I8_AMX) {
		if (!cpu_amx_enable() || (kind == ROOFLINE_I8_AMX && !f.amx_int8))
			return 0.0;
		flops_per_task = (double)(FL_ITERS / 4) * 4 * (kind == ROOFLINE_I8_AMX ? 32768 : 16384);
	} else if (kind == ROOFLINE_I8_DP) {
		if (!(f.avx512vnni && f.avx512f && f.os_avx512))
			return 0.0;
		flops_per_task = (double)FL_ITERS * FL_CHAINS * 128;
	} else if (kind == ROOFLINE_BF16_DP) {
		if (!(f.avx512bf16 && f.avx512f && f.avx512bw && f.avx512vl && f.os_avx512))
			return 0.0;
		flops_per_task = (double)FL_ITERS * FL_CHAINS * 64;
	} else {
		/* per op: 16 or 8 lanes * 2 flops; the scalar loop does 4 chains * 2 flops */
		flops_per_task = j.isa == 2   ? (double)FL_ITERS * FL_CHAINS * 32
				 : j.isa == 1 ? (double)FL_ITERS * FL_CHAINS_AVX2 * 16
					      : (double)FL_ITERS * FL_CHAINS * 8;
	}
	size_t n_tasks = threadpool_n_threads(pool) * FL_TASKS_PER_THREAD;
	double best = 0.0;
	for (int rep = 0; rep <= FL_REPS; rep++) {
		double t0 = now_s();
		threadpool_run(pool, n_tasks, fl_task, &j);
		double dt = now_s() - t0;
		double g = flops_per_task * (double)n_tasks / dt * 1e-9;
		if (rep > 0 && g > best)
			best = g;
	}
	return best;
}
