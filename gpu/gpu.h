/* gpu.h: the CUDA side of optstudio as seen from C: which devices there are and what they
 * offer. Plain C, no CUDA types; implemented in gpu/device.cu, built only with OPTSTUDIO_CUDA. */
#ifndef OPTSTUDIO_GPU_H
#define OPTSTUDIO_GPU_H

#include <stddef.h>

#include "core/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one device offers. Plain data, filled by gpu_device_info. */
typedef struct gpu_device_props {
	char name[256];            /* e.g. "NVIDIA H100 80GB HBM3", NUL-terminated */
	int cc_major, cc_minor;    /* compute capability, e.g. 9.0 */
	size_t memory_bytes;       /* total global memory, bytes */
	int n_sm;                  /* streaming multiprocessors */
	int memory_clock_khz;      /* peak memory clock, kHz (0 when the driver does not say) */
	int memory_bus_bits;       /* global memory bus width, bits */
	double bandwidth_gbs;      /* peak memory bandwidth, GB/s (10^9 bytes/s):
	                            * 2 (double data rate) x clock x bus width / 8 */
} gpu_device_props;

/* Counts the CUDA devices visible to this process into *n (0 on failure). No driver or no
 * device is OS_ENOTFOUND with CUDA's own explanation ("no CUDA-capable device is detected",
 * "CUDA driver version is insufficient for CUDA runtime version"); anything else OS_EIO. */
int gpu_device_count(int *n, os_error *err);

/* Fills *out with the properties of device `index` (0 .. count-1). OS_ERANGE for an index
 * out of range, OS_ENOTFOUND when there is no driver or device, OS_EIO otherwise. */
int gpu_device_info(int index, gpu_device_props *out, os_error *err);

/* The CUDA runtime version this binary was linked with and the installed driver's version,
 * both as 1000 * major + 10 * minor (13000 is 13.0); *driver is 0 when no driver is
 * installed, which is not an error. */
int gpu_versions(int *runtime, int *driver, os_error *err);

#ifdef __cplusplus
}
#endif

#endif
