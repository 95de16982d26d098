/* cpu_features.c: cpuid / xgetbv probing behind cpu_features_detect. */
#include "core/cpu/cpu_features.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long long xgetbv0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}
#endif

/* The probe proper. Its cpuid instructions trap to the hypervisor in a virtual machine: 32.7
 * us a probe here (1000 calls), and the FP8 / INT4 prefill path looks its kernel set up once
 * per matmul, 210 times per pass of a 30-layer model (~7 ms). cpu_features_detect probes once
 * per process and copies the answer (0.06 us). */
static void features_probe(cpu_features *f)
{
	memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return;
	bool osxsave = (c >> 27) & 1;
	f->fma = (c >> 12) & 1;
	f->f16c = (c >> 29) & 1;
	bool avx = (c >> 28) & 1;
	if (osxsave && avx) {
		unsigned long long xcr0 = xgetbv0();
		f->os_avx = (xcr0 & 0x6) == 0x6;
		f->os_amx = (xcr0 & 0x60000) == 0x60000;
		f->os_avx512 = f->os_avx && (xcr0 & 0xe0) == 0xe0;
	}
	if (__get_cpuid_max(0, NULL) < 7)
		return;
	__cpuid_count(7, 0, a, b, c, d);
	f->avx2 = (b >> 5) & 1;
	f->avx512f = (b >> 16) & 1;
	f->avx512bw = (b >> 30) & 1;
	f->avx512vl = (b >> 31) & 1;
	f->avx512vnni = (c >> 11) & 1;
	f->amx_bf16 = (d >> 22) & 1;
	f->amx_tile = (d >> 24) & 1;
	f->amx_int8 = (d >> 25) & 1;
	__cpuid_count(7, 1, a, b, c, d);
	f->avx512bf16 = (a >> 5) & 1;
	if (!f->os_avx) {
		f->avx2 = f->fma = f->f16c = false;
	}
	if (!f->os_avx512) {
		f->avx512f = f->avx512bw = f->avx512vl = false;
		f->avx512vnni = f->avx512bf16 = false;
	}
#endif
}

static cpu_features probed;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe_run(void)
{
	features_probe(&probed);
}

void cpu_features_detect(cpu_features *f)
{
	pthread_once(&probe_once, probe_run);
	*f = probed;
}

#if defined(__x86_64__) && defined(SYS_arch_prctl)
/* Linux hands out the 8 KiB of tile state only on request (arch_prctl, Linux 5.16+): without
 * it the first tile instruction kills the process with SIGILL. One request per process. */
enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };

static bool amx_granted;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_request(void)
{
	cpu_features f;
	cpu_features_detect(&f);
	amx_granted = f.amx_tile && f.amx_bf16 && f.os_amx &&
		      syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

bool cpu_amx_enable(void)
{
	pthread_once(&amx_once, amx_request);
	return amx_granted;
}
#else
bool cpu_amx_enable(void)
{
	return false;
}
#endif
