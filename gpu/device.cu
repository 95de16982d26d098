/* device.cu: the CUDA device query behind gpu.h: device count, properties and versions,
 * with every CUDA call checked and its failure named with file and line. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "core/errors.h"
}
#include "gpu/gpu.h"

/* Turns a failed CUDA call into an os_error: no driver or no device is OS_ENOTFOUND (a
 * normal state of a machine, not a fault), anything else OS_EIO. Returns the code. */
static int cuda_fail(cudaError_t e, const char *call, const char *file, int line, os_error *err)
{
	int rc = OS_EIO;
	if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
	    e == cudaErrorSystemDriverMismatch || e == cudaErrorCompatNotSupportedOnDevice)
		rc = OS_ENOTFOUND;
	return os_error_set(err, rc, "%s (%s: %s at %s:%d)", cudaGetErrorString(e),
			    cudaGetErrorName(e), call, file, line);
}

/* cuda_check(call, err): returns from the enclosing function with an OS_E* code when the
 * CUDA call fails, naming the call, the file and the line. */
#define cuda_check(call, err)                                                        \
	do {                                                                         \
		cudaError_t e_ = (call);                                             \
		if (e_ != cudaSuccess) {                                             \
			(void)cudaGetLastError(); /* reset the last-error slot */ \
			return cuda_fail(e_, #call, __FILE__, __LINE__, (err));      \
		}                                                                    \
	} while (0)

extern "C" int gpu_device_count(int *n, os_error *err)
{
	*n = 0;
	int count = 0;
	cuda_check(cudaGetDeviceCount(&count), err);
	*n = count;
	return OS_OK;
}

extern "C" int gpu_device_info(int index, gpu_device_props *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	int count = 0;
	int rc = gpu_device_count(&count, err);
	if (rc != OS_OK)
		return rc;
	if (index < 0 || index >= count)
		return os_error_set(err, OS_ERANGE, "no CUDA device %d (this machine has %d)", index, count);

	cudaDeviceProp p;
	cuda_check(cudaGetDeviceProperties(&p, index), err);
	snprintf(out->name, sizeof out->name, "%s", p.name);
	out->cc_major = p.major;
	out->cc_minor = p.minor;
	out->memory_bytes = p.totalGlobalMem;
	out->n_sm = p.multiProcessorCount;
	/* CUDA 13 dropped memoryClockRate from cudaDeviceProp: ask for the attribute */
	cuda_check(cudaDeviceGetAttribute(&out->memory_clock_khz, cudaDevAttrMemoryClockRate, index), err);
	cuda_check(cudaDeviceGetAttribute(&out->memory_bus_bits, cudaDevAttrGlobalMemoryBusWidth, index), err);
	out->bandwidth_gbs = 2.0 * (double)out->memory_clock_khz * 1e3 *
			     ((double)out->memory_bus_bits / 8.0) / 1e9;
	return OS_OK;
}

extern "C" int gpu_versions(int *runtime, int *driver, os_error *err)
{
	*runtime = 0;
	*driver = 0;
	cuda_check(cudaRuntimeGetVersion(runtime), err);
	cuda_check(cudaDriverGetVersion(driver), err);
	return OS_OK;
}
