/* kernels_quant_generic.c: the scalar reference kernels for quantized weights (the set every
 * SIMD set is tested against), set selection and the threaded wrappers. */
#include "core/cpu/kernels_quant.h"

#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu_features.h"
#include "core/numerics.h"

/* ---- the generic kernels ----------------------------------------------------------------- */

static void matmul_fp8_generic(float *Y, const float *X, const uint8_t *W, const float *sw,
			       size_t n_tok, size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	float lut[256];
	num_e4m3_table(lut);
	for (size_t o = o0; o < o1; o++) {
		const uint8_t *w = W + o * n_in;
		for (size_t t = 0; t < n_tok; t++) {
			const float *x = X + t * n_in;
			float s = 0.0f;
			for (size_t k = 0; k < n_in; k++)
				s += x[k] * lut[w[k]];
			Y[t * n_out + o] = sw[o] * s;
		}
	}
}

static void matmul_i8_generic(float *Y, const int8_t *Xq, const float *xs, const int32_t *xsum,
			      const int8_t *W, const float *sw, size_t n_tok, size_t n_in,
			      size_t n_out, size_t o0, size_t o1)
{
	(void)xsum;
	for (size_t o = o0; o < o1; o++) {
		const int8_t *w = W + o * n_in;
		for (size_t t = 0; t < n_tok; t++) {
			const int8_t *x = Xq + t * n_in;
			int32_t acc = 0;
			for (size_t k = 0; k < n_in; k++)
				acc += (int32_t)x[k] * (int32_t)w[k];
			Y[t * n_out + o] = (float)acc * (xs[t] * sw[o]);
		}
	}
}

static void matmul_i4_generic(float *Y, const float *Xp, const uint8_t *W, const float *scales,
			      const uint8_t *zeros, size_t group, size_t n_tok, size_t n_in,
			      size_t n_out, size_t o0, size_t o1)
{
	size_t n_groups = n_in / group;
	for (size_t o = o0; o < o1; o++) {
		const uint8_t *w = W + o * (n_in / 2);
		const float *s = scales + o * n_groups;
		const uint8_t *z = zeros + o * n_groups;
		for (size_t t = 0; t < n_tok; t++) {
			const float *x = Xp + t * n_in;
			float acc = 0.0f;
			for (size_t k = 0; k < n_in; k++) {
				size_t g = k / group;
				acc += x[k] * num_i4_dequantize(num_i4_get(w, k), s[g], z[g]);
			}
			Y[t * n_out + o] = acc;
		}
	}
}

static void prepare_i4_generic(float *Xp, const float *X, size_t n_tok, size_t n_in,
			       size_t group)
{
	(void)group;
	if (Xp != X)
		memcpy(Xp, X, n_tok * n_in * sizeof *X);
}

static void decode_fp8_generic(float *out, const uint8_t *W, size_t n)
{
	for (size_t k = 0; k < n; k++)
		out[k] = num_e4m3_to_f32(W[k]);
}

static void decode_i8_generic(float *out, const uint8_t *q, size_t n)
{
	for (size_t k = 0; k < n; k++)
		out[k] = (float)(int8_t)q[k];
}

static void decode_i4_row_generic(float *out, const uint8_t *W, const float *s,
				  const uint8_t *z, size_t group, size_t n_in)
{
	for (size_t k = 0; k < n_in; k++)
		out[k] = num_i4_dequantize(num_i4_get(W, k), s[k / group], z[k / group]);
}

static void quantize_e4m3_act_generic(float *Xd, float *xs, const float *X, size_t n_tok,
				      size_t n_in)
{
	for (size_t t = 0; t < n_tok; t++) {
		const float *x = X + t * n_in;
		float *xd = Xd + t * n_in;
		float absmax = 0.0f;
		for (size_t k = 0; k < n_in; k++) {
			float a = x[k] < 0 ? -x[k] : x[k];
			absmax = a > absmax ? a : absmax;
		}
		xs[t] = num_e4m3_scale(absmax);
		float inv = num_inv_scale(xs[t]);
		for (size_t k = 0; k < n_in; k++)
			xd[k] = num_e4m3_to_f32(num_e4m3_quantize(x[k], inv));
	}
}

static void quantize_i8_act_generic(int8_t *Xq, float *xs, int32_t *xsum, const float *X,
				    size_t n_tok, size_t n_in)
{
	for (size_t t = 0; t < n_tok; t++) {
		const float *x = X + t * n_in;
		int8_t *q = Xq + t * n_in;
		float absmax = 0.0f;
		for (size_t k = 0; k < n_in; k++) {
			float a = x[k] < 0 ? -x[k] : x[k];
			absmax = a > absmax ? a : absmax;
		}
		xs[t] = num_i8_scale(absmax);
		float inv = num_inv_scale(xs[t]);
		int32_t sum = 0;
		for (size_t k = 0; k < n_in; k++) {
			q[k] = num_i8_quantize(x[k], inv);
			sum += q[k];
		}
		xsum[t] = sum;
	}
}

const cpu_qkernel_set cpu_qkernels_generic = {
	.name = "generic",
	.isa = CPU_ISA_GENERIC,
	.batch_invariant = true, /* every sum in k order, whatever path */
	.matmul_fp8 = matmul_fp8_generic,
	.matmul_i8 = matmul_i8_generic,
	.matmul_i4 = matmul_i4_generic,
	.prepare_i4 = prepare_i4_generic,
	.decode_fp8 = decode_fp8_generic,
	.decode_i8 = decode_i8_generic,
	.decode_i4_row = decode_i4_row_generic,
	.quantize_e4m3_act = quantize_e4m3_act_generic,
	.quantize_i8_act = quantize_i8_act_generic,
};

/* ---- selection ----------------------------------------------------------------------------- */

const cpu_qkernel_set *cpu_qkernels_batch_invariant(const cpu_qkernel_set *qk)
{
	if (qk == &cpu_qkernels_avx512)
		return &cpu_qkernels_avx512_bi;
	if (qk == &cpu_qkernels_amx)
		return &cpu_qkernels_amx_bi;
	return qk;
}

const cpu_qkernel_set *cpu_qkernels_get(cpu_isa isa)
{
	cpu_features f;
	switch (isa) {
	case CPU_ISA_GENERIC:
	case CPU_ISA_AVX2:
		return cpu_kernels_get(isa) ? &cpu_qkernels_generic : NULL;
	case CPU_ISA_AVX512:
		cpu_features_detect(&f);
		return cpu_kernels_get(isa) && f.avx512vnni ? &cpu_qkernels_avx512 : NULL;
	case CPU_ISA_AMX:
		/* the plain amx set implies AVX-512 and granted tiles; INT8 tiles are separate */
		cpu_features_detect(&f);
		if (!cpu_kernels_get(isa) || !f.avx512vnni)
			return NULL;
		return f.amx_int8 ? &cpu_qkernels_amx : &cpu_qkernels_avx512;
	default:
		return NULL;
	}
}

int cpu_qkernels_select(const cpu_qkernel_set **out, os_error *err)
{
	const cpu_kernel_set *ks;
	int rc = cpu_kernels_select(&ks, err);
	if (rc != OS_OK)
		return rc;
	/* the plain set's isa, or the next plainer quantized set (AVX-512 without VNNI) */
	for (int i = (int)ks->isa; i >= 0; i--) {
		const cpu_qkernel_set *qk = cpu_qkernels_get((cpu_isa)i);
		if (qk) {
			*out = qk;
			return OS_OK;
		}
	}
	*out = &cpu_qkernels_generic;
	return OS_OK;
}

/* ---- threaded wrappers -------------------------------------------------------------------- */

/* Output rows per task. The prefill path (tiled): a multiple of 16, several tasks per
 * thread for balance, and not below ~32 KiB of weights per task (the same policy as
 * cpu_matmul). The tile kernels (decode): ~32 KiB or more of weights a task, at most 4
 * tasks a thread, and a task count that is a multiple of the thread count, so that a small
 * matrix (a 192-row K projection is 3 tasks by the first policy) splits evenly; rows a
 * multiple of 8, the one-token row tile of the SIMD kernels. */
static size_t rows_per_task(size_t n_out, size_t row_bytes, size_t n_threads, bool tiled)
{
	if (n_threads <= 1)
		return n_out;
	if (!tiled) {
		size_t n_tasks = n_out * row_bytes / 32768;
		if (n_tasks > 4 * n_threads)
			n_tasks = 4 * n_threads;
		n_tasks = n_tasks < n_threads ? n_threads
					      : (n_tasks + n_threads - 1) / n_threads * n_threads;
		size_t rows = (n_out + n_tasks - 1) / n_tasks;
		return (rows + 7) / 8 * 8;
	}
	size_t per = (n_out + 4 * n_threads - 1) / (4 * n_threads);
	size_t min_rows = 32768 / (row_bytes + 1) + 1;
	if (per < min_rows)
		per = min_rows;
	return (per + 15) / 16 * 16;
}

enum qjob_kind { QJOB_FP8, QJOB_I8, QJOB_I4 };

static size_t align64(size_t n)
{
	return (n + 63) / 64 * 64;
}

/* Bytes of decoded weights per tile of the prefill path: large enough that the activations
 * are re-read from L2/L3 once per many rows, small enough to stay in a 2 MiB L2 beside the
 * GEMM's activation block. */
enum { QTILE_BYTES = 1 << 20 };

/* One threaded matmul: the operands of whichever kernel kind names. */
struct qjob {
	enum qjob_kind kind;
	const cpu_qkernel_set *qk;
	const cpu_kernel_set *ks;  /* tiled (prefill) path: the f32 / bf16 kernels, else NULL */
	const uint16_t *Xb;        /* tiled FP8 W8A8: the decoded activations as bf16 */
	unsigned char *tiles;      /* tiled, AMX-BF16 tile paths: per-thread scratch,
				    * tile_stride bytes each */
	size_t tile_rows, tile_stride;
	float *Y;
	const float *X;      /* FP8: f32 (or decoded FP8) activations; INT4: prepared */
	const uint32_t *Xv;  /* INT4 / FP8 tile paths (matmul_i4_tiles, matmul_fp8_tiles): the
			      * bf16x3 planes, else NULL */
	const int8_t *Xq;    /* INT8 */
	const float *xs;     /* INT8 */
	const int32_t *xsum; /* INT8 */
	const void *W;
	const float *sw;     /* FP8, INT8 row scales; INT4 group scales */
	const uint8_t *zeros;
	size_t group, n_tok, n_in, n_out, rows_per_task;
};

/* The prefill path for rows [o0, o1): tile_rows rows at a time decoded into this thread's
 * scratch, multiplied by kernels.h's matrix kernel into Y's columns, then scaled per row
 * (FP8: the sum times sw[o], as the tile kernels do). */
static void qjob_tiled(const struct qjob *j, size_t o0, size_t o1, size_t thread)
{
	unsigned char *scr = j->tiles + thread * j->tile_stride;
	size_t n_in = j->n_in, n_out = j->n_out;
	for (size_t ob = o0; ob < o1; ob += j->tile_rows) {
		size_t nr = o1 - ob < j->tile_rows ? o1 - ob : j->tile_rows;
		if (j->kind == QJOB_I4) {
			float *wt = (float *)scr;
			size_t ng = n_in / j->group;
			const uint8_t *W = j->W;
			for (size_t r = 0; r < nr; r++)
				j->qk->decode_i4_row(wt + r * n_in, W + (ob + r) * (n_in / 2),
						     j->sw + (ob + r) * ng, j->zeros + (ob + r) * ng,
						     j->group, n_in);
			j->ks->matmul_f32(j->Y + ob, j->X, wt, j->n_tok, n_in, n_out, 0, nr);
			continue;
		}
		const uint8_t *W = (const uint8_t *)j->W + ob * n_in;
		if (j->Xb) { /* W8A8: E4M3 values are exact in bf16, their products in f32 */
			uint16_t *wt = (uint16_t *)scr;
			float *row = (float *)(scr + align64(j->tile_rows * n_in * 2));
			for (size_t r = 0; r < nr; r++) {
				j->qk->decode_fp8(row, W + r * n_in, n_in);
				j->ks->f32_to_bf16(wt + r * n_in, row, n_in);
			}
			j->ks->matmul_bf16(j->Y + ob, j->Xb, wt, j->n_tok, n_in, n_out, 0, nr);
		} else {
			float *wt = (float *)scr;
			j->qk->decode_fp8(wt, W, nr * n_in);
			j->ks->matmul_f32(j->Y + ob, j->X, wt, j->n_tok, n_in, n_out, 0, nr);
		}
		for (size_t t = 0; t < j->n_tok; t++) {
			float *y = j->Y + t * n_out + ob;
			for (size_t r = 0; r < nr; r++)
				y[r] = j->sw[ob + r] * y[r];
		}
	}
}

static void qjob_task(void *ctx, size_t task, size_t thread)
{
	const struct qjob *j = ctx;
	size_t o0 = task * j->rows_per_task;
	size_t o1 = o0 + j->rows_per_task < j->n_out ? o0 + j->rows_per_task : j->n_out;
	if (j->Xv && j->kind == QJOB_FP8) {
		j->qk->matmul_fp8_tiles(j->Y, j->Xv, j->W, j->sw, j->n_tok, j->n_in, j->n_out, o0,
					o1, j->tiles + thread * j->tile_stride);
		return;
	}
	if (j->Xv) {
		j->qk->matmul_i4_tiles(j->Y, j->Xv, j->W, j->sw, j->zeros, j->group, j->n_tok,
				       j->n_in, j->n_out, o0, o1, j->tiles + thread * j->tile_stride);
		return;
	}
	if (j->ks) {
		qjob_tiled(j, o0, o1, thread);
		return;
	}
	switch (j->kind) {
	case QJOB_FP8:
		j->qk->matmul_fp8(j->Y, j->X, j->W, j->sw, j->n_tok, j->n_in, j->n_out, o0, o1);
		break;
	case QJOB_I8:
		j->qk->matmul_i8(j->Y, j->Xq, j->xs, j->xsum, j->W, j->sw, j->n_tok, j->n_in,
				 j->n_out, o0, o1);
		break;
	case QJOB_I4:
		j->qk->matmul_i4(j->Y, j->X, j->W, j->sw, j->zeros, j->group, j->n_tok, j->n_in,
				 j->n_out, o0, o1);
		break;
	}
}

/* Rows per task for a kernel that works in panels of 32 rows (the amx set's INT8 GEMM): whole
 * panels, up to 4 tasks a thread, and a task count that is a multiple of the thread count
 * where some split gives one (6 panels on 2 threads: 2 tasks of 3, not 3 of 2). */
static size_t panels_per_task(size_t n_out, size_t n_threads)
{
	size_t n_panels = (n_out + 31) / 32;
	if (n_threads <= 1)
		return n_panels * 32;
	for (size_t k = 4; k >= 1; k--) {
		size_t per = (n_panels + k * n_threads - 1) / (k * n_threads);
		size_t n_tasks = (n_panels + per - 1) / per;
		if (n_tasks % n_threads == 0 || k == 1)
			return per * 32;
	}
	return n_panels * 32; /* not reached */
}

static void qjob_run(threadpool *pool, struct qjob *j, size_t row_bytes)
{
	size_t n_threads = threadpool_n_threads(pool);
	if ((j->kind == QJOB_I8 && j->qk->isa == CPU_ISA_AMX && j->n_tok >= CPU_QI8_GEMM_MIN_TOK &&
	     j->n_in % 64 == 0) ||
	    j->Xv)
		j->rows_per_task = panels_per_task(j->n_out, n_threads);
	else
		j->rows_per_task = rows_per_task(j->n_out, row_bytes, n_threads, j->ks != NULL);
	size_t n_tasks = (j->n_out + j->rows_per_task - 1) / j->rows_per_task;
	threadpool_run(pool, n_tasks, qjob_task, j);
}

/* Sets j up for the prefill path when n_tok >= CPU_QTILE_MIN_TOK and this isa has matrix
 * kernels: tiles of up to QTILE_BYTES of decoded weights (a multiple of 32 rows, the GEMM's
 * panel width), one per thread, in *heap (free with cpu_free_aligned). elem: bytes of a
 * decoded weight (4 f32, 2 bf16). Returns false to use the tile kernels (small n_tok or no
 * memory for the scratch: they compute the same thing). */
static bool qjob_tiled_setup(threadpool *pool, struct qjob *j, size_t elem, void **heap)
{
	*heap = NULL;
	size_t min_tok = j->qk->tile_min_tok ? j->qk->tile_min_tok : CPU_QTILE_MIN_TOK;
	if (j->n_tok < min_tok) /* decode: before cpu_kernels_get, whose cpuid traps to the
				 * hypervisor in a VM (microseconds a call) */
		return false;
	const cpu_kernel_set *ks = cpu_kernels_get(j->qk->isa);
	if (!ks)
		return false;
	size_t rows = QTILE_BYTES / (j->n_in * elem + 1) / 32 * 32;
	j->tile_rows = rows < 32 ? 32 : rows;
	j->tile_stride = align64(j->tile_rows * j->n_in * elem) + align64(j->n_in * 4);
	*heap = cpu_alloc_aligned(j->tile_stride * threadpool_n_threads(pool));
	if (!*heap)
		return false;
	j->tiles = *heap;
	j->ks = ks;
	return true;
}

/* The per-token work around the threaded matmuls (quantize_i8_act, quantize_e4m3_act,
 * prepare_i4, the W8A8 bf16 copy, the W8A8 epilogue's scale) touches each token row alone, so
 * it splits by token rows over the pool with the same bits. On a prompt it was serial work in
 * front of every matmul: with a 512-token prompt, INT8's activation quantization was 18% of a
 * 576x1536 matmul's samples on 2 threads, the same matmul took longer on 2 threads than on 1.
 * Below QACT_PAR_MIN elements (decode batches) the caller does it alone: a dispatch would cost
 * about as much as the work. */
enum { QACT_PAR_MIN = 32768 };

enum qact_kind { QACT_I8, QACT_E4M3, QACT_I4, QACT_BF16X3, QACT_BF16, QACT_SCALE_Y };

struct qact_job {
	enum qact_kind kind;
	const cpu_qkernel_set *qk;
	const cpu_kernel_set *ks; /* QACT_BF16 */
	const float *X;           /* QACT_SCALE_Y: unused */
	float *Xd;                /* E4M3: the decoded activations; I4: the prepared ones */
	int8_t *Xq;
	uint16_t *Xb;
	uint32_t *Xv;             /* I4_TILES: the planes (tasks of whole 16-token blocks) */
	float *xs;                /* I8, E4M3: written; SCALE_Y: read */
	int32_t *xsum;
	float *Y;                 /* SCALE_Y: rows of n_in floats, each times xs[t] */
	size_t n_tok, n_in, group, rows_per_task;
};

static void qact_task(void *ctx, size_t task, size_t thread)
{
	(void)thread;
	const struct qact_job *j = ctx;
	size_t t0 = task * j->rows_per_task, n_in = j->n_in;
	size_t nt = j->n_tok - t0 < j->rows_per_task ? j->n_tok - t0 : j->rows_per_task;
	switch (j->kind) {
	case QACT_I8:
		j->qk->quantize_i8_act(j->Xq + t0 * n_in, j->xs + t0, j->xsum + t0, j->X + t0 * n_in,
				       nt, n_in);
		break;
	case QACT_E4M3:
		j->qk->quantize_e4m3_act(j->Xd + t0 * n_in, j->xs + t0, j->X + t0 * n_in, nt, n_in);
		break;
	case QACT_I4:
		j->qk->prepare_i4(j->Xd + t0 * n_in, j->X + t0 * n_in, nt, n_in, j->group);
		break;
	case QACT_BF16X3: /* t0 is a multiple of 16: a whole block */
		j->qk->prepare_bf16x3(j->Xv + CPU_BF16X3_PLANES(t0, n_in), j->X + t0 * n_in, nt,
				      n_in);
		break;
	case QACT_BF16:
		j->ks->f32_to_bf16(j->Xb + t0 * n_in, j->X + t0 * n_in, nt * n_in);
		break;
	case QACT_SCALE_Y:
		for (size_t t = t0; t < t0 + nt; t++) {
			float *y = j->Y + t * n_in, s = j->xs[t];
			for (size_t o = 0; o < n_in; o++)
				y[o] *= s;
		}
		break;
	}
}

static void qact_run(threadpool *pool, struct qact_job *j)
{
	size_t n_threads = threadpool_n_threads(pool);
	size_t n_tasks = j->n_tok * j->n_in >= QACT_PAR_MIN ? n_threads : 1;
	if (n_tasks > j->n_tok)
		n_tasks = j->n_tok;
	j->rows_per_task = (j->n_tok + n_tasks - 1) / n_tasks;
	if (j->kind == QACT_BF16X3)
		j->rows_per_task = (j->rows_per_task + 15) / 16 * 16;
	threadpool_run(pool, (j->n_tok + j->rows_per_task - 1) / j->rows_per_task, qact_task, j);
}

/* Scratch for quantized activations: the stack buffer when it fits, else the heap. */
enum { QSCRATCH_STACK = 32768 };

static void *qscratch(unsigned char *stack, size_t bytes, void **heap)
{
	*heap = NULL;
	if (bytes <= QSCRATCH_STACK)
		return stack;
	*heap = cpu_alloc_aligned(bytes);
	return *heap;
}

/* The AMX-BF16 tile paths (matmul_i4_tiles, matmul_fp8_tiles, by j->kind): the bf16x3 planes
 * prepared once for the call (split over the pool by blocks of 16 tokens), then tasks of whole
 * 32-row panels, each thread with its own panel scratch. OS_ENOMEM (nothing written) when the
 * buffers cannot be allocated: the caller then takes the other paths, which compute the same
 * sums. row_bytes: bytes of a weight row. */
static int qmatmul_tiles(threadpool *pool, struct qjob *j, size_t row_bytes)
{
	size_t xv_bytes = align64(CPU_BF16X3_PLANES(j->n_tok, j->n_in) * sizeof(uint32_t));
	j->tile_stride = align64(CPU_QTILES_SCRATCH(j->n_in));
	unsigned char *buf = cpu_alloc_aligned(xv_bytes + j->tile_stride *
								 threadpool_n_threads(pool));
	if (!buf)
		return OS_ENOMEM;
	struct qact_job a = {.kind = QACT_BF16X3, .qk = j->qk, .X = j->X, .Xv = (uint32_t *)buf,
			     .n_tok = j->n_tok, .n_in = j->n_in};
	qact_run(pool, &a);
	j->Xv = (const uint32_t *)buf;
	j->tiles = buf + xv_bytes;
	qjob_run(pool, j, row_bytes);
	cpu_free_aligned(buf);
	return OS_OK;
}

int cpu_qmatmul_fp8(threadpool *pool, const cpu_qkernel_set *qk, float *Y, const float *X,
		    const uint8_t *W, const float *sw, size_t n_tok, size_t n_in, size_t n_out,
		    bool act_fp8)
{
	if (n_tok == 0 || n_out == 0)
		return OS_OK;
	struct qjob j = {.kind = QJOB_FP8, .qk = qk, .Y = Y, .X = X, .W = W, .sw = sw,
			 .n_tok = n_tok, .n_in = n_in, .n_out = n_out};
	if (!act_fp8 && qk->matmul_fp8_tiles && n_tok >= qk->fp8_tiles_min_tok && n_in % 32 == 0 &&
	    qmatmul_tiles(pool, &j, n_in) == OS_OK)
		return OS_OK;
	_Alignas(64) unsigned char stack[QSCRATCH_STACK];
	void *heap = NULL, *tiles = NULL;
	float *xs = NULL;
	bool tiled = qjob_tiled_setup(pool, &j, act_fp8 ? 2 : 4, &tiles);
	if (act_fp8) {
		size_t xd_bytes = align64(n_tok * n_in * sizeof(float));
		size_t xs_bytes = align64(n_tok * sizeof(float));
		size_t xb_bytes = tiled ? n_tok * n_in * sizeof(uint16_t) : 0;
		unsigned char *s = qscratch(stack, xd_bytes + xs_bytes + xb_bytes, &heap);
		if (!s) {
			cpu_free_aligned(tiles);
			return OS_ENOMEM;
		}
		float *xd = (float *)s;
		xs = (float *)(s + xd_bytes);
		struct qact_job a = {.kind = QACT_E4M3, .qk = qk, .X = X, .Xd = xd, .xs = xs,
				     .n_tok = n_tok, .n_in = n_in};
		qact_run(pool, &a);
		j.X = xd;
		if (tiled) { /* exact: E4M3 values have 4 significant bits */
			uint16_t *xb = (uint16_t *)(s + xd_bytes + xs_bytes);
			struct qact_job b = {.kind = QACT_BF16, .ks = j.ks, .X = xd, .Xb = xb,
					     .n_tok = n_tok, .n_in = n_in};
			qact_run(pool, &b);
			j.Xb = xb;
		}
	}
	qjob_run(pool, &j, n_in);
	if (act_fp8) { /* the GEMM epilogue: the per-token activation scale */
		struct qact_job e = {.kind = QACT_SCALE_Y, .xs = xs, .Y = Y, .n_tok = n_tok,
				     .n_in = n_out};
		qact_run(pool, &e);
	}
	cpu_free_aligned(heap);
	cpu_free_aligned(tiles);
	return OS_OK;
}

int cpu_qmatmul_i8(threadpool *pool, const cpu_qkernel_set *qk, float *Y, const float *X,
		   const int8_t *W, const float *sw, size_t n_tok, size_t n_in, size_t n_out)
{
	if (n_in > CPU_QI8_MAX_IN)
		return OS_EUSAGE;
	if (n_tok == 0 || n_out == 0)
		return OS_OK;
	size_t xq_bytes = align64(n_tok * n_in);
	size_t xs_bytes = align64(n_tok * sizeof(float));
	_Alignas(64) unsigned char stack[QSCRATCH_STACK];
	void *heap;
	unsigned char *s = qscratch(stack, xq_bytes + xs_bytes + n_tok * sizeof(int32_t), &heap);
	if (!s)
		return OS_ENOMEM;
	int8_t *xq = (int8_t *)s;
	float *xs = (float *)(s + xq_bytes);
	int32_t *xsum = (int32_t *)(s + xq_bytes + xs_bytes);
	struct qact_job a = {.kind = QACT_I8, .qk = qk, .X = X, .Xq = xq, .xs = xs, .xsum = xsum,
			     .n_tok = n_tok, .n_in = n_in};
	qact_run(pool, &a);
	struct qjob j = {.kind = QJOB_I8, .qk = qk, .Y = Y, .Xq = xq, .xs = xs, .xsum = xsum,
			 .W = W, .sw = sw, .n_tok = n_tok, .n_in = n_in, .n_out = n_out};
	qjob_run(pool, &j, n_in);
	cpu_free_aligned(heap);
	return OS_OK;
}

int cpu_qmatmul_i4(threadpool *pool, const cpu_qkernel_set *qk, float *Y, const float *X,
		   const uint8_t *W, const float *scales, const uint8_t *zeros, size_t group,
		   size_t n_tok, size_t n_in, size_t n_out)
{
	if ((group != 32 && group != 64 && group != 128) || n_in % group != 0)
		return OS_EUSAGE;
	if (n_tok == 0 || n_out == 0)
		return OS_OK;
	struct qjob j = {.kind = QJOB_I4, .qk = qk, .Y = Y, .X = X, .W = W, .sw = scales,
			 .zeros = zeros, .group = group, .n_tok = n_tok, .n_in = n_in,
			 .n_out = n_out};
	if (qk->matmul_i4_tiles && n_tok >= qk->i4_tiles_min_tok && n_in % 32 == 0 &&
	    qmatmul_tiles(pool, &j, n_in / 2) == OS_OK)
		return OS_OK;
	void *tiles;
	if (qjob_tiled_setup(pool, &j, 4, &tiles)) { /* f32 activations as they are */
		qjob_run(pool, &j, n_in / 2);
		cpu_free_aligned(tiles);
		return OS_OK;
	}
	_Alignas(64) unsigned char stack[QSCRATCH_STACK];
	void *heap;
	float *xp = qscratch(stack, n_tok * n_in * sizeof(float), &heap);
	if (!xp)
		return OS_ENOMEM;
	struct qact_job a = {.kind = QACT_I4, .qk = qk, .X = X, .Xd = xp, .n_tok = n_tok,
			     .n_in = n_in, .group = group};
	qact_run(pool, &a);
	j.X = xp;
	qjob_run(pool, &j, n_in / 2);
	cpu_free_aligned(heap);
	return OS_OK;
}
