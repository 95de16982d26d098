/* cpu_features.h: what the x86 CPU (cpuid) and the OS (xgetbv: saved register state)
 * let us run, so kernel sets are picked at run time. All false on other architectures. */
#ifndef OPTSTUDIO_CPU_FEATURES_H
#define OPTSTUDIO_CPU_FEATURES_H

#include <stdbool.h>

typedef struct cpu_features {
	bool avx2, fma, f16c;
	bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
	bool amx_tile, amx_bf16, amx_int8;
	bool os_avx;    /* the OS saves YMM state (XCR0 bits 1, 2) */
	bool os_avx512; /* the OS saves opmask and ZMM state (XCR0 bits 5, 6, 7) */
	bool os_amx;    /* the OS saves tile state (XCR0 bits 17, 18) */
} cpu_features;

/* Fills *f from cpuid and xgetbv, probed on the first call and copied on later ones (cpuid
 * traps to the hypervisor in a VM). Thread-safe. */
void cpu_features_detect(cpu_features *f);

/* True when this process may run AMX tile instructions: the CPU has AMX-TILE and AMX-BF16,
 * the OS saves tile state, and it granted this process the tile data (asked once, on the
 * first call; thread-safe). */
bool cpu_amx_enable(void);

#endif
