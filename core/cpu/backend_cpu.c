/* backend_cpu.c: the CPU backend. Matmuls split by output rows over the pool (kernels.h,
 * kernels_quant.h for FP8 / INT8 / INT4 weights), attention split by (token, kv head) over
 * the pool with a blockwise online softmax (FP8 / INT8 KV decoded a block at a time), the
 * small elementwise ops on the calling thread unless they are large. */
#include "backend_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../numerics.h"

typedef struct cpu_ctx {
	threadpool *pool;
	const cpu_kernel_set *ks;
	const cpu_qkernel_set *qk;
	float e4m3[256];         /* E4M3 code -> value, for the embedding and FP8 KV */
	size_t n_threads;
	float *scratch;          /* per-thread attention scratch, n_threads * scratch_per */
	size_t scratch_per;      /* floats per thread */
} cpu_ctx;

/* --- memory -------------------------------------------------------------------------------- */

static void *cpu_buf_alloc(void *ctx, size_t bytes)
{
	(void)ctx;
	return cpu_alloc_aligned(bytes ? bytes : 64);
}

static void cpu_buf_free(void *ctx, void *buf)
{
	(void)ctx;
	cpu_free_aligned(buf);
}

/* --- elementwise ops, split in chunks over the pool when large ------------------------------ */

#define EW_CHUNK ((size_t)1 << 15) /* elements per task */

typedef struct ew_job {
	const cpu_kernel_set *ks;
	float *x;
	const float *y;
	size_t n;
	int op; /* 0 add, 1 swiglu */
} ew_job;

static void ew_task(void *p, size_t task, size_t thread)
{
	(void)thread;
	ew_job *j = p;
	size_t i0 = task * EW_CHUNK, n = j->n - i0 < EW_CHUNK ? j->n - i0 : EW_CHUNK;
	if (j->op == 0)
		j->ks->add(j->x + i0, j->y + i0, n);
	else
		j->ks->swiglu(j->x + i0, j->x + i0, j->y + i0, n);
}

static void ew_run(cpu_ctx *c, float *x, const float *y, size_t n, int op)
{
	ew_job j = {c->ks, x, y, n, op};
	size_t n_tasks = (n + EW_CHUNK - 1) / EW_CHUNK;
	if (n_tasks <= 1)
		ew_task(&j, 0, 0);
	else
		threadpool_run(c->pool, n_tasks, ew_task, &j);
}

static int cpu_add(void *ctx, float *x, const float *y, size_t n)
{
	ew_run(ctx, x, y, n, 0);
	return OS_OK;
}

static int cpu_swiglu(void *ctx, float *gate, const float *up, size_t n)
{
	ew_run(ctx, gate, up, n, 1);
	return OS_OK;
}

static int cpu_rmsnorm_op(void *ctx, float *out, const float *x, const float *w, size_t n,
			  size_t dim, float eps)
{
	cpu_ctx *c = ctx;
	cpu_rmsnorm(c->ks, out, x, w, n, dim, eps);
	return OS_OK;
}

/* x (d) = row r of a quantized table, the values the matmul multiplies by:
 * code * scale (FP8, INT8), s * (q - z) (INT4). Nonzero for a format it does not know. */
static int embed_quant_row(const cpu_ctx *c, float *x, const be_weight *t, size_t r)
{
	size_t d = t->cols;
	switch (t->fmt) {
	case BE_WFMT_FP8:
	case BE_WFMT_FP8_W8A8: {
		const uint8_t *q = (const uint8_t *)t->data + r * d;
		float s = t->scales[r];
		for (size_t k = 0; k < d; k++)
			x[k] = c->e4m3[q[k]] * s;
		return 0;
	}
	case BE_WFMT_I8: {
		const int8_t *q = (const int8_t *)t->data + r * d;
		float s = t->scales[r];
		for (size_t k = 0; k < d; k++)
			x[k] = (float)q[k] * s;
		return 0;
	}
	case BE_WFMT_I4: {
		const uint8_t *q = (const uint8_t *)t->data + r * (d / 2);
		size_t ng = d / t->group;
		for (size_t k = 0; k < d; k++) {
			size_t g = r * ng + k / t->group;
			x[k] = num_i4_dequantize(num_i4_get(q, k), t->scales[g], t->zeros[g]);
		}
		return 0;
	}
	default:
		return 1;
	}
}

static int cpu_embed(void *ctx, float *x, const be_weight *table, const int32_t *tokens,
		     size_t n)
{
	cpu_ctx *c = ctx;
	size_t d = table->cols;
	for (size_t i = 0; i < n; i++) {
		size_t r = (size_t)tokens[i];
		if (table->fmt == BE_WFMT_F32)
			memcpy(x + i * d, (const float *)table->data + r * d, d * sizeof(float));
		else if (table->fmt == BE_WFMT_BF16)
			c->ks->bf16_to_f32(x + i * d, (const uint16_t *)table->data + r * d, d);
		else if (embed_quant_row(c, x + i * d, table, r))
			return OS_EUNSUPPORTED;
	}
	return OS_OK;
}

/* --- matmul ---------------------------------------------------------------------------------- */

static int cpu_matmul_f32(void *ctx, float *out, const float *x, size_t n, const be_weight *w)
{
	cpu_ctx *c = ctx;
	return cpu_matmul(c->pool, c->ks, out, x, w->data, CPU_WFMT_F32, n, w->cols, w->rows);
}

static int cpu_matmul_bf16(void *ctx, float *out, const float *x, size_t n, const be_weight *w)
{
	cpu_ctx *c = ctx;
	return cpu_matmul(c->pool, c->ks, out, x, w->data, CPU_WFMT_BF16, n, w->cols, w->rows);
}

static int cpu_matmul_fp8(void *ctx, float *out, const float *x, size_t n, const be_weight *w)
{
	cpu_ctx *c = ctx;
	return cpu_qmatmul_fp8(c->pool, c->qk, out, x, w->data, w->scales, n, w->cols, w->rows,
			       false);
}

static int cpu_matmul_fp8_w8a8(void *ctx, float *out, const float *x, size_t n,
			       const be_weight *w)
{
	cpu_ctx *c = ctx;
	return cpu_qmatmul_fp8(c->pool, c->qk, out, x, w->data, w->scales, n, w->cols, w->rows,
			       true);
}

static int cpu_matmul_i8(void *ctx, float *out, const float *x, size_t n, const be_weight *w)
{
	cpu_ctx *c = ctx;
	return cpu_qmatmul_i8(c->pool, c->qk, out, x, w->data, w->scales, n, w->cols, w->rows);
}

static int cpu_matmul_i4(void *ctx, float *out, const float *x, size_t n, const be_weight *w)
{
	cpu_ctx *c = ctx;
	return cpu_qmatmul_i4(c->pool, c->qk, out, x, w->data, w->scales, w->zeros, w->group, n,
			      w->cols, w->rows);
}

typedef int (*cpu_matmul_fn)(void *ctx, float *out, const float *x, size_t n,
			     const be_weight *w);
static const cpu_matmul_fn cpu_matmuls[BE_WFMT_COUNT] = {
	[BE_WFMT_F32] = cpu_matmul_f32,
	[BE_WFMT_BF16] = cpu_matmul_bf16,
	[BE_WFMT_FP8] = cpu_matmul_fp8,
	[BE_WFMT_FP8_W8A8] = cpu_matmul_fp8_w8a8,
	[BE_WFMT_I8] = cpu_matmul_i8,
	[BE_WFMT_I4] = cpu_matmul_i4,
};

static int cpu_logits(void *ctx, float *out, float *scratch, const float *x,
		      const int32_t *rows, size_t n_rows, size_t dim, const float *norm_w,
		      float eps, const be_weight *w)
{
	cpu_ctx *c = ctx;
	for (size_t r = 0; r < n_rows; r++)
		c->ks->rmsnorm(scratch + r * dim, x + (size_t)rows[r] * dim, norm_w, dim, eps);
	if (w->fmt < 0 || w->fmt >= BE_WFMT_COUNT)
		return OS_EUNSUPPORTED;
	return cpu_matmuls[w->fmt](ctx, out, scratch, n_rows, w);
}

/* --- rope ------------------------------------------------------------------------------------ */

/* The angles are computed once per token and used for q and k. */
static int cpu_rope_op(void *ctx, float *q, size_t n_q_heads, float *k, size_t n_k_heads,
		       size_t n, size_t head_dim, const int32_t *pos, float base)
{
	cpu_ctx *c = ctx;
	float cos_t[512], sin_t[512];
	size_t half = head_dim / 2;
	if (half > 512 || head_dim % 2)
		return OS_EUNSUPPORTED;
	for (size_t t = 0; t < n; t++) {
		for (size_t i = 0; i < half; i++) {
			double a = cpu_rope_angle(pos[t], i, head_dim, base);
			cos_t[i] = (float)cos(a);
			sin_t[i] = (float)sin(a);
		}
		c->ks->rope_rotate(q + t * n_q_heads * head_dim, n_q_heads, head_dim, cos_t, sin_t,
				   CPU_ROPE_NORM);
		c->ks->rope_rotate(k + t * n_k_heads * head_dim, n_k_heads, head_dim, cos_t, sin_t,
				   CPU_ROPE_NORM);
	}
	return OS_OK;
}

/* --- KV cache and attention ------------------------------------------------------------------ */

/* Quantizes one K or V row (kv_dim values) into codes at element offset row, one scale per
 * head of kv->head_dim values: FP8 s = absmax / 448, INT8 s = absmax / 127 (backend.h). */
static void kv_quantize_row(const be_kv *kv, size_t row, const float *x)
{
	size_t hd = kv->head_dim;
	for (size_t h = 0; h < kv->kv_dim / hd; h++) {
		const float *xh = x + h * hd;
		float amax = 0.0f;
		for (size_t c = 0; c < hd; c++)
			amax = fabsf(xh[c]) > amax ? fabsf(xh[c]) : amax;
		float s = kv->fmt == BE_KV_FP8 ? num_e4m3_scale(amax) : num_i8_scale(amax);
		float inv = num_inv_scale(s);
		kv->scales[row / hd + h] = s;
		uint8_t *q = (uint8_t *)kv->data + row + h * hd;
		if (kv->fmt == BE_KV_FP8)
			for (size_t c = 0; c < hd; c++)
				q[c] = num_e4m3_quantize(xh[c], inv);
		else
			for (size_t c = 0; c < hd; c++)
				q[c] = (uint8_t)num_i8_quantize(xh[c], inv);
	}
}

static int cpu_kv_store(void *ctx, const be_kv *kv, size_t layer, const float *k,
			const float *v, const be_attn_batch *b)
{
	(void)ctx;
	size_t d = kv->kv_dim, bt = kv->block_tokens;
	if (kv->fmt != BE_KV_F32 &&
	    ((kv->fmt != BE_KV_FP8 && kv->fmt != BE_KV_I8) || !kv->scales || !kv->head_dim ||
	     d % kv->head_dim))
		return OS_EUNSUPPORTED;
	for (size_t i = 0; i < b->n; i++) {
		size_t p = (size_t)b->pos[i];
		size_t blk = (size_t)b->block_table[i][p / bt];
		size_t rk = be_kv_row(kv, blk, layer, 0, p % bt), rv = be_kv_row(kv, blk, layer, 1, p % bt);
		if (kv->fmt == BE_KV_F32) {
			float *data = kv->data;
			memcpy(data + rk, k + i * d, d * sizeof(float));
			memcpy(data + rv, v + i * d, d * sizeof(float));
		} else {
			kv_quantize_row(kv, rk, k + i * d);
			kv_quantize_row(kv, rv, v + i * d);
		}
	}
	return OS_OK;
}

/* out (n_t, hd) = the values of head g of n_t consecutive quantized rows from element
 * offset row0 (code * scale). */
static void kv_decode_rows(const cpu_ctx *c, float *out, const be_kv *kv, size_t row0,
			   size_t g, size_t n_t)
{
	size_t hd = kv->head_dim;
	for (size_t t = 0; t < n_t; t++) {
		size_t row = row0 + t * kv->kv_dim;
		const uint8_t *q = (const uint8_t *)kv->data + row + g * hd;
		float s = kv->scales[row / hd + g];
		float *o = out + t * hd;
		if (kv->fmt == BE_KV_FP8)
			for (size_t k = 0; k < hd; k++)
				o[k] = c->e4m3[q[k]] * s;
		else
			for (size_t k = 0; k < hd; k++)
				o[k] = (float)(int8_t)q[k] * s;
	}
}

typedef struct attn_job {
	cpu_ctx *c;
	float *out;
	const float *q;
	const be_kv *kv;
	size_t layer;
	const be_attn_batch *b;
} attn_job;

/* One task: token i = task / n_kv_heads, kv head g = task % n_kv_heads, and the n_rep query
 * heads that share g. Blockwise online softmax (flash-attention style), per query head h:
 *   for each cache block: s_t = q_h . K_t / sqrt(head_dim) for the block's visible slots,
 *     m' = max(m, max_t s_t); l = l e^(m - m') + sum_t e^(s_t - m');
 *     acc = acc e^(m - m') + sum_t e^(s_t - m') V_t;  m = m'
 *   out_h = acc / l
 * which equals softmax(s) V exactly in real arithmetic, and needs no buffer as long as the
 * context. K and V rows of a block are read once for all n_rep heads. */
static void attn_task(void *p, size_t task, size_t thread)
{
	attn_job *j = p;
	const be_attn_batch *b = j->b;
	const be_kv *kv = j->kv;
	const cpu_kernel_set *ks = j->c->ks;
	size_t hd = b->head_dim, n_rep = b->n_heads / b->n_kv_heads, bt = kv->block_tokens;
	size_t i = task / b->n_kv_heads, g = task % b->n_kv_heads;
	size_t pos = (size_t)b->pos[i];
	const int32_t *table = b->block_table[i];
	float scale = 1.0f / sqrtf((float)hd);

	float *acc = j->c->scratch + thread * j->c->scratch_per; /* (n_rep, hd) */
	float *s = acc + n_rep * hd;                               /* (bt) */
	float *m = s + bt, *l = m + n_rep;                         /* (n_rep) each */
	float *kd = l + n_rep, *vd = kd + bt * hd; /* (bt, hd) each: a decoded FP8/INT8 block */
	for (size_t r = 0; r < n_rep; r++) {
		m[r] = -INFINITY;
		l[r] = 0.0f;
	}
	memset(acc, 0, n_rep * hd * sizeof *acc);

	const float *data = kv->data;
	size_t n_blocks = pos / bt + 1;
	for (size_t jb = 0; jb < n_blocks; jb++) {
		size_t blk = (size_t)table[jb];
		size_t n_t = jb + 1 < n_blocks ? bt : pos % bt + 1;
		const float *K, *V;
		size_t stride = kv->kv_dim; /* floats between consecutive K (V) rows */
		if (kv->fmt == BE_KV_F32) {
			K = data + be_kv_row(kv, blk, j->layer, 0, 0) + g * hd;
			V = data + be_kv_row(kv, blk, j->layer, 1, 0) + g * hd;
		} else {
			kv_decode_rows(j->c, kd, kv, be_kv_row(kv, blk, j->layer, 0, 0), g, n_t);
			kv_decode_rows(j->c, vd, kv, be_kv_row(kv, blk, j->layer, 1, 0), g, n_t);
			K = kd;
			V = vd;
			stride = hd;
		}
		for (size_t r = 0; r < n_rep; r++) {
			size_t h = g * n_rep + r;
			const float *qh = j->q + (i * b->n_heads + h) * hd;
			float *ah = acc + r * hd;
			float bm = -INFINITY;
			for (size_t t = 0; t < n_t; t++) {
				s[t] = ks->dot(qh, K + t * stride, hd) * scale;
				if (s[t] > bm)
					bm = s[t];
			}
			float mn = bm > m[r] ? bm : m[r];
			float corr = expf(m[r] - mn); /* 0 on the first block (m = -inf) */
			if (corr != 1.0f) {
				ks->scale(ah, corr, hd);
				l[r] *= corr;
			}
			for (size_t t = 0; t < n_t; t++) {
				float e = expf(s[t] - mn);
				l[r] += e;
				ks->axpy(ah, e, V + t * stride, hd);
			}
			m[r] = mn;
		}
	}
	for (size_t r = 0; r < n_rep; r++) {
		size_t h = g * n_rep + r;
		float *o = j->out + (i * b->n_heads + h) * hd;
		float inv = 1.0f / l[r];
		for (size_t c = 0; c < hd; c++)
			o[c] = acc[r * hd + c] * inv;
	}
}

static int cpu_attention(void *ctx, float *out, const float *q, const be_kv *kv, size_t layer,
			 const be_attn_batch *b)
{
	cpu_ctx *c = ctx;
	if (kv->fmt != BE_KV_F32 &&
	    ((kv->fmt != BE_KV_FP8 && kv->fmt != BE_KV_I8) || kv->head_dim != b->head_dim ||
	     !kv->scales))
		return OS_EUNSUPPORTED;
	size_t n_rep = b->n_heads / b->n_kv_heads;
	size_t per = n_rep * b->head_dim + kv->block_tokens + 2 * n_rep;
	if (kv->fmt != BE_KV_F32)
		per += 2 * kv->block_tokens * b->head_dim;
	per = (per + 15) / 16 * 16; /* keep each thread's scratch on its own cache lines */
	if (per > c->scratch_per) { /* grows once per shape, never per token */
		float *sc = cpu_alloc_aligned(per * c->n_threads * sizeof(float));
		if (!sc)
			return OS_ENOMEM;
		cpu_free_aligned(c->scratch);
		c->scratch = sc;
		c->scratch_per = per;
	}
	attn_job j = {c, out, q, kv, layer, b};
	threadpool_run(c->pool, b->n * b->n_kv_heads, attn_task, &j);
	return OS_OK;
}

/* --- the table --------------------------------------------------------------------------- */

static void cpu_free(backend *be);

static const backend_ops cpu_ops = {
	.buf_alloc = cpu_buf_alloc,
	.buf_free = cpu_buf_free,
	.embed = cpu_embed,
	.rmsnorm = cpu_rmsnorm_op,
	.matmul = {[BE_WFMT_F32] = cpu_matmul_f32, [BE_WFMT_BF16] = cpu_matmul_bf16,
		   [BE_WFMT_FP8] = cpu_matmul_fp8, [BE_WFMT_FP8_W8A8] = cpu_matmul_fp8_w8a8,
		   [BE_WFMT_I8] = cpu_matmul_i8, [BE_WFMT_I4] = cpu_matmul_i4},
	.rope = cpu_rope_op,
	.kv_store = cpu_kv_store,
	.attention = cpu_attention,
	.swiglu = cpu_swiglu,
	.add = cpu_add,
	.logits = cpu_logits,
	.free = cpu_free,
};

static void cpu_free(backend *be)
{
	if (!be)
		return;
	cpu_ctx *c = be->ctx;
	if (c) {
		threadpool_free(c->pool);
		cpu_free_aligned(c->scratch);
		free(c);
	}
	free(be);
}

int backend_cpu_new(backend **out, const backend_cpu_opts *opts, os_error *err)
{
	*out = NULL;
	const cpu_kernel_set *ks = opts ? opts->kernels : NULL;
	const cpu_qkernel_set *qk = opts ? opts->qkernels : NULL;
	int rc;
	if (!qk && ks)
		qk = cpu_qkernels_get(ks->isa);
	if (!qk && ks)
		qk = cpu_qkernels_get(CPU_ISA_GENERIC);
	if (!ks && (rc = cpu_kernels_select(&ks, err)))
		return rc;
	if (!qk && (rc = cpu_qkernels_select(&qk, err)))
		return rc;
	backend *be = calloc(1, sizeof *be);
	cpu_ctx *c = calloc(1, sizeof *c);
	if (!be || !c) {
		free(be);
		free(c);
		return os_error_set(err, OS_ENOMEM, "CPU backend: out of memory");
	}
	be->name = "cpu";
	be->ops = &cpu_ops;
	be->ctx = c;
	c->ks = ks;
	c->qk = qk;
	num_e4m3_table(c->e4m3);
	if ((rc = threadpool_new(&c->pool, opts ? opts->n_threads : 0, err))) {
		cpu_free(be);
		return rc;
	}
	c->n_threads = threadpool_n_threads(c->pool);
	*out = be;
	return OS_OK;
}

threadpool *backend_cpu_pool(const backend *be)
{
	return ((const cpu_ctx *)be->ctx)->pool;
}

const cpu_kernel_set *backend_cpu_kernels(const backend *be)
{
	return ((const cpu_ctx *)be->ctx)->ks;
}

const cpu_qkernel_set *backend_cpu_qkernels(const backend *be)
{
	return ((const cpu_ctx *)be->ctx)->qk;
}
