/* kernels_generic.c: the scalar reference kernels (the "generic" set every SIMD set is
 * tested against), and the dispatch shared by all sets: set selection, threaded matmul,
 * rope angles, aligned allocation. */
#include "core/cpu/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu_features.h"
#include "core/numerics.h"

/* ---- the generic kernels ----------------------------------------------------------------- */

static void matmul_f32_generic(float *Y, const float *X, const float *W, size_t n_tok,
			       size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	for (size_t o = o0; o < o1; o++) {
		const float *w = W + o * n_in;
		for (size_t t = 0; t < n_tok; t++) {
			const float *x = X + t * n_in;
			float s = 0.0f;
			for (size_t k = 0; k < n_in; k++)
				s += x[k] * w[k];
			Y[t * n_out + o] = s;
		}
	}
}

static void matmul_bf16_generic(float *Y, const uint16_t *Xb, const uint16_t *W, size_t n_tok,
				size_t n_in, size_t n_out, size_t o0, size_t o1)
{
	for (size_t o = o0; o < o1; o++) {
		const uint16_t *w = W + o * n_in;
		for (size_t t = 0; t < n_tok; t++) {
			const uint16_t *x = Xb + t * n_in;
			float s = 0.0f;
			for (size_t k = 0; k < n_in; k++)
				s += num_bf16_to_f32(x[k]) * num_bf16_to_f32(w[k]);
			Y[t * n_out + o] = s;
		}
	}
}

static float dot_generic(const float *a, const float *b, size_t n)
{
	float s = 0.0f;
	for (size_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void axpy_generic(float *y, float a, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

static void add_generic(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += x[i];
}

static void scale_generic(float *x, float a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= a;
}

static void rmsnorm_generic(float *y, const float *x, const float *w, size_t n, float eps)
{
	float ss = 0.0f;
	for (size_t i = 0; i < n; i++)
		ss += x[i] * x[i];
	float r = 1.0f / sqrtf(ss / (float)n + eps);
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] * r * w[i];
}

static void softmax_generic(float *x, size_t n)
{
	float m = -INFINITY;
	for (size_t i = 0; i < n; i++)
		m = x[i] > m ? x[i] : m;
	float s = 0.0f;
	for (size_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - m);
		s += x[i];
	}
	float r = 1.0f / s;
	for (size_t i = 0; i < n; i++)
		x[i] *= r;
}


/* The reference of gemm_nn and of the chunked product: row p of B looked up in its chunk,
 * Y[i][j] summed in order p = 0..k-1. */
static void gemm_nn_chunks_generic(float *Y, size_t ldy, const float *X, size_t ldx,
				   const float *const *Bs, size_t ldb, size_t kb, size_t m,
				   size_t k, size_t n, int acc)
{
	for (size_t i = 0; i < m; i++) {
		float *y = Y + i * ldy;
		if (!acc)
			for (size_t j = 0; j < n; j++)
				y[j] = 0.0f;
		for (size_t p = 0; p < k; p++) {
			float a = X[i * ldx + p];
			const float *b = Bs[p / kb] + p % kb * ldb;
			for (size_t j = 0; j < n; j++)
				y[j] += a * b[j];
		}
	}
}

/* The plain product: one chunk holding all k rows of B. */
static void gemm_nn_generic(float *Y, size_t ldy, const float *X, size_t ldx, const float *B,
			    size_t ldb, size_t m, size_t k, size_t n, int acc)
{
	gemm_nn_chunks_generic(Y, ldy, X, ldx, &B, ldb, k ? k : 1, m, k, n, acc);
}

/* gemm_nn_generic's sums (y = 0, then y += x k in order of d), each key row read in place. */
static void attn_scores_f32_generic(float *S, size_t lds, const float *X, size_t ldx,
				    const float *const *Ks, size_t ldk, size_t kb, size_t m,
				    size_t hd, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		const float *k = Ks[j / kb] + j % kb * ldk;
		for (size_t i = 0; i < m; i++) {
			float s = 0.0f;
			for (size_t d = 0; d < hd; d++)
				s += X[i * ldx + d] * k[d];
			S[i * lds + j] = s;
		}
	}
}

/* The references of the bf16 attention products: exact products, f32 sums in order. */
static void attn_scores_bf16_generic(float *S, size_t lds, const uint16_t *X, size_t ldx,
				     const uint16_t *const *Ks, size_t ldk, size_t kb, size_t m,
				     size_t hd, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		const uint16_t *k = Ks[j / kb] + j % kb * ldk;
		for (size_t i = 0; i < m; i++) {
			float s = 0.0f;
			for (size_t d = 0; d < hd; d++)
				s += num_bf16_to_f32(X[i * ldx + d]) * num_bf16_to_f32(k[d]);
			S[i * lds + j] = s;
		}
	}
}

static void attn_pv_bf16_generic(float *acc, size_t lda, const uint16_t *P, size_t ldp,
				 const uint16_t *const *Vs, size_t ldv, size_t kb, size_t m,
				 size_t n, size_t hd)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			float p = num_bf16_to_f32(P[i * ldp + j]);
			const uint16_t *v = Vs[j / kb] + j % kb * ldv;
			for (size_t d = 0; d < hd; d++)
				acc[i * lda + d] += p * num_bf16_to_f32(v[d]);
		}
}

static float exp_sum_generic(float *x, size_t n, float m)
{
	float s = 0.0f;
	for (size_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - m);
		s += x[i];
	}
	return s;
}

static void online_softmax_generic(float *s, size_t n_t, size_t nv, float *m, float *l,
				   float *acc, size_t hd)
{
	if (nv) {
		float bm = s[0];
		for (size_t t = 1; t < nv; t++)
			bm = s[t] > bm ? s[t] : bm;
		float mn = bm > *m ? bm : *m;
		float c = expf(*m - mn);
		if (c != 1.0f) {
			scale_generic(acc, c, hd);
			*l *= c;
		}
		*l += exp_sum_generic(s, nv, mn);
		*m = mn;
	}
	for (size_t t = nv; t < n_t; t++)
		s[t] = 0.0f;
}

static void swiglu_generic(float *y, const float *gate, const float *up, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float g = gate[i];
		y[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

static void rope_rotate_generic(float *x, size_t n_heads, size_t head_dim, const float *cos_t,
				const float *sin_t, cpu_rope_layout layout)
{
	size_t half = head_dim / 2;
	for (size_t h = 0; h < n_heads; h++) {
		float *v = x + h * head_dim;
		for (size_t i = 0; i < half; i++) {
			size_t ia = layout == CPU_ROPE_NEOX ? i : 2 * i;
			size_t ib = layout == CPU_ROPE_NEOX ? i + half : 2 * i + 1;
			float a = v[ia], b = v[ib], c = cos_t[i], s = sin_t[i];
			v[ia] = a * c - b * s;
			v[ib] = a * s + b * c;
		}
	}
}

static void transpose_generic(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
			      size_t cols)
{
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++)
			dst[c * ldd + r] = src[r * lds + c];
}

static void bf16_to_f32_generic(float *y, const uint16_t *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = num_bf16_to_f32(x[i]);
}

static void f32_to_bf16_generic(uint16_t *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = num_f32_to_bf16(x[i]);
}

const cpu_kernel_set cpu_kernels_generic = {
	.name = "generic",
	.isa = CPU_ISA_GENERIC,
	.batch_invariant = true,
	.matmul_f32 = matmul_f32_generic,
	.matmul_bf16 = matmul_bf16_generic,
	.dot = dot_generic,
	.axpy = axpy_generic,
	.add = add_generic,
	.scale = scale_generic,
	.rmsnorm = rmsnorm_generic,
	.softmax = softmax_generic,
	.gemm_nn = gemm_nn_generic,
	.gemm_nn_chunks = gemm_nn_chunks_generic,
	.attn_scores_f32 = attn_scores_f32_generic,
	.attn_scores_bf16 = attn_scores_bf16_generic,
	.attn_pv_bf16 = attn_pv_bf16_generic,
	.exp_sum = exp_sum_generic,
	.online_softmax = online_softmax_generic,
	.swiglu = swiglu_generic,
	.rope_rotate = rope_rotate_generic,
	.transpose = transpose_generic,
	.bf16_to_f32 = bf16_to_f32_generic,
	.f32_to_bf16 = f32_to_bf16_generic,
};

/* ---- selection ----------------------------------------------------------------------------- */

static const char *const isa_names[CPU_ISA_COUNT] = {"generic", "avx2", "avx512", "amx"};

const cpu_kernel_set *cpu_kernels_batch_invariant(const cpu_kernel_set *ks)
{
	if (ks == &cpu_kernels_avx512)
		return &cpu_kernels_avx512_bi;
	if (ks == &cpu_kernels_amx)
		return &cpu_kernels_amx_bi;
	return ks;
}

const cpu_kernel_set *cpu_kernels_get(cpu_isa isa)
{
	cpu_features f;
	cpu_features_detect(&f);
	bool avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.avx512bf16 && f.os_avx512 &&
		      f.avx2 && f.fma;
	switch (isa) {
	case CPU_ISA_GENERIC:
		return &cpu_kernels_generic;
	case CPU_ISA_AVX2:
		return f.avx2 && f.fma && f.os_avx ? &cpu_kernels_avx2 : NULL;
	case CPU_ISA_AVX512:
		return avx512 ? &cpu_kernels_avx512 : NULL;
	case CPU_ISA_AMX:
		return avx512 && cpu_amx_enable() ? &cpu_kernels_amx : NULL;
	default:
		return NULL;
	}
}

int cpu_kernels_select(const cpu_kernel_set **out, os_error *err)
{
	const char *want = getenv("OPTSTUDIO_CPU");
	if (want && *want) {
		for (int i = 0; i < CPU_ISA_COUNT; i++) {
			if (strcmp(want, isa_names[i]) != 0)
				continue;
			const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)i);
			if (!ks)
				return os_error_set(err, OS_EUNSUPPORTED,
						    "OPTSTUDIO_CPU=%s: this CPU lacks the %s "
						    "instructions (try generic or unset it)",
						    want, want);
			*out = ks;
			return OS_OK;
		}
		return os_error_set(err, OS_EUSAGE,
				    "OPTSTUDIO_CPU='%s' is not a kernel set "
				    "(expected generic, avx2, avx512 or amx)",
				    want);
	}
	for (int i = CPU_ISA_COUNT - 1; i >= 0; i--) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)i);
		if (ks) {
			*out = ks;
			return OS_OK;
		}
	}
	*out = &cpu_kernels_generic;
	return OS_OK;
}

/* ---- threaded matmul ---------------------------------------------------------------------- */

/* Output rows per task: a multiple of 32 (the AVX-512 GEMM's panels; also of the 8- and
 * 16-row tiles) sized so every thread gets several tasks for balance, and small matrices are
 * not split below ~32 KiB of weight. */
static size_t matmul_rows_per_task(size_t n_out, size_t n_in, size_t elem, size_t n_threads)
{
	if (n_threads <= 1)
		return n_out;
	size_t per = (n_out + 4 * n_threads - 1) / (4 * n_threads);
	size_t min_rows = (32768 / (n_in * elem + 1)) + 1;
	if (per < min_rows)
		per = min_rows;
	per = (per + 31) / 32 * 32;
	return per;
}

struct matmul_job {
	const cpu_kernel_set *ks;
	float *Y;
	const float *X;
	const uint16_t *Xb;
	const void *W;
	cpu_wfmt fmt;
	size_t n_tok, n_in, n_out, rows_per_task;
};

static void matmul_task(void *ctx, size_t task, size_t thread)
{
	const struct matmul_job *j = ctx;
	size_t o0 = task * j->rows_per_task;
	size_t o1 = o0 + j->rows_per_task;
	if (o1 > j->n_out)
		o1 = j->n_out;
	if (j->fmt == CPU_WFMT_F32)
		j->ks->matmul_f32(j->Y, j->X, j->W, j->n_tok, j->n_in, j->n_out, o0, o1);
	else
		j->ks->matmul_bf16(j->Y, j->Xb, j->W, j->n_tok, j->n_in, j->n_out, o0, o1);
}

struct cvt_job {
	const cpu_kernel_set *ks;
	uint16_t *dst;
	const float *src;
	size_t n, per_task;
};

static void cvt_task(void *ctx, size_t task, size_t thread)
{
	const struct cvt_job *j = ctx;
	size_t a = task * j->per_task, b = a + j->per_task;
	if (b > j->n)
		b = j->n;
	j->ks->f32_to_bf16(j->dst + a, j->src + a, b - a);
}

int cpu_matmul(threadpool *pool, const cpu_kernel_set *ks, float *Y, const float *X,
	       const void *W, cpu_wfmt fmt, size_t n_tok, size_t n_in, size_t n_out)
{
	if (fmt != CPU_WFMT_F32 && fmt != CPU_WFMT_BF16)
		return OS_EUSAGE;
	if (n_tok == 0 || n_out == 0)
		return OS_OK;
	size_t n_threads = threadpool_n_threads(pool);
	struct matmul_job j = {
		.ks = ks, .Y = Y, .X = X, .W = W, .fmt = fmt,
		.n_tok = n_tok, .n_in = n_in, .n_out = n_out,
	};
	_Alignas(64) uint16_t stack_xb[16384];
	uint16_t *heap_xb = NULL;
	if (fmt == CPU_WFMT_BF16) {
		size_t n = n_tok * n_in;
		uint16_t *xb = stack_xb;
		if (n > sizeof stack_xb / sizeof stack_xb[0]) {
			heap_xb = cpu_alloc_aligned(n * sizeof *heap_xb);
			if (!heap_xb)
				return OS_ENOMEM;
			xb = heap_xb;
		}
		if (n >= 65536 && n_threads > 1) {
			struct cvt_job c = {.ks = ks, .dst = xb, .src = X, .n = n};
			c.per_task = (n + n_threads - 1) / n_threads;
			threadpool_run(pool, n_threads, cvt_task, &c);
		} else {
			ks->f32_to_bf16(xb, X, n);
		}
		j.Xb = xb;
	}
	size_t elem = fmt == CPU_WFMT_F32 ? 4 : 2;
	j.rows_per_task = matmul_rows_per_task(n_out, n_in, elem, n_threads);
	size_t n_tasks = (n_out + j.rows_per_task - 1) / j.rows_per_task;
	threadpool_run(pool, n_tasks, matmul_task, &j);
	cpu_free_aligned(heap_xb);
	return OS_OK;
}

/* ---- row helpers -------------------------------------------------------------------------- */

void cpu_rmsnorm(const cpu_kernel_set *ks, float *y, const float *x, const float *w,
		 size_t n_rows, size_t dim, float eps)
{
	for (size_t r = 0; r < n_rows; r++)
		ks->rmsnorm(y + r * dim, x + r * dim, w, dim, eps);
}

double cpu_rope_angle(int64_t pos, size_t i, size_t head_dim, float base)
{
	return (double)pos * pow((double)base, -2.0 * (double)i / (double)head_dim);
}

void cpu_rope(const cpu_kernel_set *ks, float *x, size_t n_tok, size_t n_heads,
	      size_t head_dim, const int32_t *pos, float base, cpu_rope_layout layout)
{
	enum { MAX_HALF = 512 };
	float cos_t[MAX_HALF], sin_t[MAX_HALF];
	size_t half = head_dim / 2;
	if (half > MAX_HALF) {
		/* beyond the documented limit: stay correct, one scalar pair at a time */
		for (size_t t = 0; t < n_tok; t++)
			for (size_t i = 0; i < half; i++) {
				double a = cpu_rope_angle(pos[t], i, head_dim, base);
				float c = (float)cos(a), s = (float)sin(a);
				for (size_t h = 0; h < n_heads; h++) {
					float *v = x + (t * n_heads + h) * head_dim;
					size_t ia = layout == CPU_ROPE_NEOX ? i : 2 * i;
					size_t ib = layout == CPU_ROPE_NEOX ? i + half : 2 * i + 1;
					float va = v[ia], vb = v[ib];
					v[ia] = va * c - vb * s;
					v[ib] = va * s + vb * c;
				}
			}
		return;
	}
	for (size_t t = 0; t < n_tok; t++) {
		for (size_t i = 0; i < half; i++) {
			double a = cpu_rope_angle(pos[t], i, head_dim, base);
			cos_t[i] = (float)cos(a);
			sin_t[i] = (float)sin(a);
		}
		ks->rope_rotate(x + t * n_heads * head_dim, n_heads, head_dim, cos_t, sin_t,
				layout);
	}
}

/* ---- memory ------------------------------------------------------------------------------- */

void *cpu_alloc_aligned(size_t bytes)
{
	if (bytes == 0)
		return NULL;
	void *p = NULL;
	if (posix_memalign(&p, 64, bytes) != 0)
		return NULL;
	return p;
}

void cpu_free_aligned(void *p)
{
	free(p);
}
