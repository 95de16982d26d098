/* test_roofline.c: the machine probes bench-engine judges its figures by. Each peak kind is
 * measured exactly where this CPU (and, for tiles, the OS) has its instructions and reads 0
 * elsewhere, on one thread and on a pool; the bandwidth probe reads a buffer. No speed is
 * asserted: the figures vary with the machine, only their presence and sign are checked. */
#include "core/cpu/cpu_features.h"
#include "core/cpu/roofline.h"
#include "core/cpu/threadpool.h"
#include "tests/test.h"

/* Whether kind's instructions may run here, from cpuid / xgetbv and the tile grant. */
static bool kind_available(roofline_kind kind)
{
	cpu_features f;
	cpu_features_detect(&f);
	bool avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.os_avx512;
	switch (kind) {
	case ROOFLINE_F32_FMA:
		return true; /* a scalar loop where no vector FMA exists */
	case ROOFLINE_BF16_DP:
		return avx512 && f.avx512bf16;
	case ROOFLINE_BF16_AMX:
		return cpu_amx_enable();
	case ROOFLINE_I8_DP:
		return avx512 && f.avx512vnni;
	case ROOFLINE_I8_AMX:
		return cpu_amx_enable() && f.amx_int8;
	}
	return false;
}

static const roofline_kind kinds[] = {ROOFLINE_F32_FMA, ROOFLINE_BF16_DP, ROOFLINE_BF16_AMX,
				      ROOFLINE_I8_DP, ROOFLINE_I8_AMX};
static const char *const kind_names[] = {"f32 fma", "bf16 dp", "bf16 amx", "i8 dp", "i8 amx"};

static void check_peaks(threadpool *pool)
{
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		double g = roofline_peak_flops(pool, kinds[i]);
		bool want = kind_available(kinds[i]);
		printf("  %-8s %s: %.1f GFLOP/s (%s here)\n", kind_names[i],
		       pool ? "pool" : "caller", g, want ? "available" : "not available");
		CHECK_MSG(want ? g > 0 && isfinite(g) : g == 0.0, "%s: %.3g GFLOP/s, expected %s",
			  kind_names[i], g, want ? "a positive rate" : "0");
	}
}

TEST(peaks_caller_alone)
{
	check_peaks(NULL);
}

TEST(peaks_on_a_pool)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 2, NULL) == OS_OK);
	check_peaks(pool);
	threadpool_free(pool);
}

TEST(bandwidth_reads_a_buffer)
{
	threadpool *pool = NULL;
	CHECK(threadpool_new(&pool, 2, NULL) == OS_OK);
	double gbs = roofline_read_bandwidth(pool, (size_t)64 << 20);
	threadpool_free(pool);
	CHECK_MSG(gbs > 0 && isfinite(gbs), "bandwidth %.3g GB/s", gbs);
}

int main(void)
{
	RUN(peaks_caller_alone);
	RUN(peaks_on_a_pool);
	RUN(bandwidth_reads_a_buffer);
	return test_summary();
}
