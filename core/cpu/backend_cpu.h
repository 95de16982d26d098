/* backend_cpu.h: the CPU backend: fills backend.h's op table with the kernels of kernels.h,
 * threaded over one persistent thread pool. */
#ifndef OPTSTUDIO_BACKEND_CPU_H
#define OPTSTUDIO_BACKEND_CPU_H

#include <stdbool.h>
#include <stddef.h>

#include "../engine/backend.h"
#include "../errors.h"
#include "kernels.h"
#include "kernels_quant.h"
#include "threadpool.h"

typedef struct backend_cpu_opts {
	size_t n_threads;               /* threads counting the caller; 0 = online CPUs */
	const cpu_kernel_set *kernels;  /* NULL = cpu_kernels_select (fastest, or $OPTSTUDIO_CPU) */
	const cpu_qkernel_set *qkernels; /* quantized matmuls (FP8 / INT8 / INT4); NULL = the set
					  * of kernels' ISA when kernels is given, else
					  * cpu_qkernels_select */
	bool batch_invariant;           /* the batch-invariant twins of both sets (kernels.h,
					  * cpu_kernels_batch_invariant): a token's logits the same
					  * bits in any batch, at some decode speed */
} backend_cpu_opts;

/* Makes a CPU backend (opts NULL = defaults); end it with backend_free. Results do not
 * depend on the thread count. Fails with OS_ENOMEM, OS_EINTERNAL (threads) or the kernel
 * selection's error. */
int backend_cpu_new(backend **out, const backend_cpu_opts *opts, os_error *err);

/* The backend's thread pool and kernel set, for CPU-side work outside the op table
 * (calibration, quantization). Borrowed; be must be a CPU backend. */
threadpool *backend_cpu_pool(const backend *be);
const cpu_kernel_set *backend_cpu_kernels(const backend *be);
const cpu_qkernel_set *backend_cpu_qkernels(const backend *be);

#endif
