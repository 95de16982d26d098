/* backend_cpu.c: the CPU backend. Matmuls split by output rows over the pool (kernels.h,
 * kernels_quant.h for FP8 / INT8 / INT4 weights), attention split by (tile of up to 16 query
 * tokens of one sequence, kv head) over the pool with a blockwise online softmax as small
 * matrix products (FP8 / INT8 KV decoded a block at a time), rope from a cached cos / sin
 * table, the small elementwise and per-token ops (rmsnorm, rope, kv_store) on the calling
 * thread unless the batch is large (prefill). */
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
	/* rope: cos / sin tables for the last two (head_dim, base) seen (a target and a draft
	 * model may share the backend), rope[0] the most recent */
	struct rope_table {
		size_t hd;       /* head_dim the table is for; 0 = none yet */
		float base;
		double *invf;    /* (hd / 2): base^(-2i / hd) */
		float *tab;      /* (n_pos, hd): cos of pairs 0..hd/2-1, then their sin */
		size_t n_pos;    /* positions [0, n_pos) are in the table */
	} rope[2];
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

/* Token-row ops (rmsnorm, rope, kv_store) of a prefill: rows are independent, so they go
 * over the pool in chunks of ROW_CHUNK tokens (no bit changes) once a batch has
 * ROW_POOL_MIN tokens; a decode batch stays on the calling thread. */
#define ROW_CHUNK 32
#define ROW_POOL_MIN 64

typedef void (*row_fn)(void *job, size_t t0, size_t t1);

typedef struct row_split {
	row_fn fn;
	void *job;
	size_t n;
} row_split;

static void row_task(void *p, size_t task, size_t thread)
{
	(void)thread;
	row_split *r = p;
	size_t t0 = task * ROW_CHUNK, t1 = r->n - t0 < ROW_CHUNK ? r->n : t0 + ROW_CHUNK;
	r->fn(r->job, t0, t1);
}

static void rows_run(cpu_ctx *c, size_t n, row_fn fn, void *job)
{
	if (n < ROW_POOL_MIN || c->n_threads < 2) {
		fn(job, 0, n);
		return;
	}
	row_split r = {fn, job, n};
	threadpool_run(c->pool, (n + ROW_CHUNK - 1) / ROW_CHUNK, row_task, &r);
}

typedef struct rmsnorm_job {
	const cpu_kernel_set *ks;
	float *out;
	const float *x, *w;
	size_t dim;
	float eps;
} rmsnorm_job;

static void rmsnorm_rows(void *p, size_t t0, size_t t1)
{
	rmsnorm_job *j = p;
	cpu_rmsnorm(j->ks, j->out + t0 * j->dim, j->x + t0 * j->dim, j->w, t1 - t0, j->dim,
		    j->eps);
}

static int cpu_rmsnorm_op(void *ctx, float *out, const float *x, const float *w, size_t n,
			  size_t dim, float eps)
{
	cpu_ctx *c = ctx;
	rmsnorm_job j = {c->ks, out, x, w, dim, eps};
	rows_run(c, n, rmsnorm_rows, &j);
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

/* Largest rope table kept (bytes); positions beyond it get their angles per call. */
#define ROPE_TAB_MAX_BYTES ((size_t)64 << 20)

/* The table for (head_dim, base), moved to rope[0], covering positions [0, n_pos): entry
 * (p, i) holds (float)cos / sin of the double angle p * base^(-2i / head_dim), the value
 * cpu_rope_angle gives, so the table changes no bit of the result. NULL when out of memory
 * or when n_pos would pass ROPE_TAB_MAX_BYTES (the caller then computes angles itself). */
static const struct rope_table *rope_table_cover(cpu_ctx *c, size_t head_dim, float base,
						 size_t n_pos)
{
	size_t half = head_dim / 2;
	if (c->rope[0].hd != head_dim || c->rope[0].base != base) {
		struct rope_table t = c->rope[1];
		c->rope[1] = c->rope[0];
		if (t.hd != head_dim || t.base != base) { /* evict the older one */
			free(t.invf);
			free(t.tab);
			t = (struct rope_table){0};
			t.invf = malloc(half * sizeof *t.invf);
			if (!t.invf) {
				c->rope[0] = t;
				return NULL;
			}
			for (size_t i = 0; i < half; i++)
				t.invf[i] = pow((double)base, -2.0 * (double)i / (double)head_dim);
			t.hd = head_dim;
			t.base = base;
		}
		c->rope[0] = t;
	}
	struct rope_table *t = &c->rope[0];
	if (n_pos <= t->n_pos)
		return t;
	size_t max_pos = ROPE_TAB_MAX_BYTES / (head_dim * sizeof(float));
	if (n_pos > max_pos)
		return NULL;
	size_t cap = t->n_pos * 2 > n_pos ? t->n_pos * 2 : n_pos;
	cap = cap < 256 ? 256 : cap > max_pos ? max_pos : cap;
	float *tab = realloc(t->tab, cap * head_dim * sizeof *tab);
	if (!tab)
		return NULL;
	for (size_t p = t->n_pos; p < cap; p++)
		for (size_t i = 0; i < half; i++) {
			double a = (double)p * t->invf[i];
			tab[p * head_dim + i] = (float)cos(a);
			tab[p * head_dim + half + i] = (float)sin(a);
		}
	t->tab = tab;
	t->n_pos = cap;
	return t;
}

typedef struct rope_job {
	const cpu_kernel_set *ks;
	const struct rope_table *tab; /* NULL: angles computed per token */
	float *q, *k;
	size_t n_q_heads, n_k_heads, head_dim;
	const int32_t *pos;
	float base;
} rope_job;

static void rope_rows(void *p, size_t t0, size_t t1)
{
	rope_job *j = p;
	float cos_t[512], sin_t[512];
	size_t hd = j->head_dim, half = hd / 2;
	for (size_t t = t0; t < t1; t++) {
		const float *ct = cos_t, *st = sin_t;
		if (j->tab && j->pos[t] >= 0) {
			ct = j->tab->tab + (size_t)j->pos[t] * hd;
			st = ct + half;
		} else {
			for (size_t i = 0; i < half; i++) {
				double a = cpu_rope_angle(j->pos[t], i, hd, j->base);
				cos_t[i] = (float)cos(a);
				sin_t[i] = (float)sin(a);
			}
		}
		j->ks->rope_rotate(j->q + t * j->n_q_heads * hd, j->n_q_heads, hd, ct, st,
				   CPU_ROPE_NORM);
		j->ks->rope_rotate(j->k + t * j->n_k_heads * hd, j->n_k_heads, hd, ct, st,
				   CPU_ROPE_NORM);
	}
}

/* cos / sin per (position, pair) come from a table in the context, built once per
 * (head_dim, base) and grown to the largest position seen (on the calling thread, before
 * the tokens are split); the same row serves q and k. Positions the table cannot hold
 * (negative, or past ROPE_TAB_MAX_BYTES) get their angles computed, with the same values. */
static int cpu_rope_op(void *ctx, float *q, size_t n_q_heads, float *k, size_t n_k_heads,
		       size_t n, size_t head_dim, const int32_t *pos, float base)
{
	cpu_ctx *c = ctx;
	if (head_dim / 2 > 512 || head_dim % 2)
		return OS_EUNSUPPORTED;
	int32_t maxpos = -1;
	for (size_t t = 0; t < n; t++)
		maxpos = pos[t] > maxpos ? pos[t] : maxpos;
	const struct rope_table *tab =
		maxpos >= 0 ? rope_table_cover(c, head_dim, base, (size_t)maxpos + 1) : NULL;
	rope_job j = {c->ks, tab, q, k, n_q_heads, n_k_heads, head_dim, pos, base};
	rows_run(c, n, rope_rows, &j);
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

typedef struct kv_store_job {
	const cpu_kernel_set *ks;
	const be_kv *kv;
	size_t layer;
	const float *k, *v;
	const be_attn_batch *b;
} kv_store_job;

static void kv_store_rows(void *p, size_t t0, size_t t1)
{
	kv_store_job *j = p;
	const be_kv *kv = j->kv;
	size_t d = kv->kv_dim, bt = kv->block_tokens;
	for (size_t i = t0; i < t1; i++) {
		size_t pp = (size_t)j->b->pos[i];
		size_t blk = (size_t)j->b->block_table[i][pp / bt];
		size_t rk = be_kv_row(kv, blk, j->layer, 0, pp % bt);
		size_t rv = be_kv_row(kv, blk, j->layer, 1, pp % bt);
		if (kv->fmt == BE_KV_F32) {
			float *data = kv->data;
			memcpy(data + rk, j->k + i * d, d * sizeof(float));
			memcpy(data + rv, j->v + i * d, d * sizeof(float));
		} else if (kv->fmt == BE_KV_BF16) {
			uint16_t *data = kv->data;
			j->ks->f32_to_bf16(data + rk, j->k + i * d, d);
			j->ks->f32_to_bf16(data + rv, j->v + i * d, d);
		} else {
			kv_quantize_row(kv, rk, j->k + i * d);
			kv_quantize_row(kv, rv, j->v + i * d);
		}
	}
}

/* Each token writes its own slot (positions of a batch are distinct per sequence), so the
 * tokens split over the pool without overlap. */
static int cpu_kv_store(void *ctx, const be_kv *kv, size_t layer, const float *k,
			const float *v, const be_attn_batch *b)
{
	const cpu_ctx *c = ctx;
	size_t d = kv->kv_dim;
	if (kv->fmt != BE_KV_F32 && kv->fmt != BE_KV_BF16 &&
	    (!be_kvfmt_has_scales(kv->fmt) || !kv->scales || !kv->head_dim || d % kv->head_dim))
		return OS_EUNSUPPORTED;
	kv_store_job j = {c->ks, kv, layer, k, v, b};
	rows_run(ctx, b->n, kv_store_rows, &j);
	return OS_OK;
}

/* out (n_t, hd) = the values of head g of n_t consecutive BF16 or quantized rows from
 * element offset row0 (bf16 widened exactly, or code * scale). */
static void kv_decode_rows(const cpu_ctx *c, float *out, const be_kv *kv, size_t row0,
			   size_t g, size_t n_t)
{
	size_t hd = kv->head_dim;
	if (kv->fmt == BE_KV_BF16) {
		const uint16_t *src = (const uint16_t *)kv->data + row0 + g * hd;
		for (size_t t = 0; t < n_t; t++)
			c->ks->bf16_to_f32(out + t * hd, src + t * kv->kv_dim, hd);
		return;
	}
	for (size_t t = 0; t < n_t; t++) {
		size_t row = row0 + t * kv->kv_dim;
		const uint8_t *q = (const uint8_t *)kv->data + row + g * hd;
		float s = kv->scales[row / hd + g];
		float *o = out + t * hd;
		if (kv->fmt == BE_KV_FP8) { /* the quantized set's exact decodes, then the scale:
					     * the same products as a scalar loop times s */
			c->qk->decode_fp8(o, q, hd);
			c->ks->scale(o, s, hd);
		} else {
			c->qk->decode_i8(o, q, hd);
			c->ks->scale(o, s, hd);
		}
	}
}

/* Floats of the stack buffer kv_load_kt decodes key rows into (8 KiB). */
#define KV_DECODE_ROWS 2048

/* Kt (hd, n_t), row stride ldk = the K rows of head g of n_t consecutive slots from element
 * offset row0, transposed so the scores of a query tile are one small matrix product
 * (gemm_nn). F32 rows are read in place; BF16 rows widened (exact), FP8 / INT8 rows decoded
 * (code * scale), a few rows at a time by kv_decode_rows into a small buffer, then
 * transposed by the kernel set as F32 rows are (bench_attn, one thread, prefill of 512
 * tokens, best of 6 runs: BF16 5287 -> 3067 us per layer, FP8 5382 -> 3101 us, INT8 5337 ->
 * 3083 us, F32 3036 us; before: a scalar decode written transposed, value by value). */
static void kv_load_kt(const cpu_ctx *c, float *Kt, size_t ldk, const be_kv *kv, size_t row0,
		       size_t g, size_t n_t)
{
	size_t hd = kv->head_dim;
	if (kv->fmt == BE_KV_F32) { /* rows kv_dim apart, transposed by the kernel set */
		c->ks->transpose(Kt, ldk, (const float *)kv->data + row0 + g * hd, kv->kv_dim, n_t,
				 hd);
		return;
	}
	size_t per = hd <= KV_DECODE_ROWS ? KV_DECODE_ROWS / hd : 0;
	if (per) {
		float rows[KV_DECODE_ROWS];
		for (size_t t0 = 0; t0 < n_t; t0 += per) {
			size_t n = n_t - t0 < per ? n_t - t0 : per;
			kv_decode_rows(c, rows, kv, row0 + t0 * kv->kv_dim, g, n);
			c->ks->transpose(Kt + t0, ldk, rows, hd, n, hd);
		}
		return;
	}
	for (size_t t = 0; t < n_t; t++) { /* heads wider than the buffer: value by value */
		size_t row = row0 + t * kv->kv_dim;
		const uint8_t *q = (const uint8_t *)kv->data + row + g * hd;
		if (kv->fmt == BE_KV_BF16) {
			const uint16_t *b = (const uint16_t *)kv->data + row + g * hd;
			for (size_t d = 0; d < hd; d++)
				Kt[d * ldk + t] = num_bf16_to_f32(b[d]);
			continue;
		}
		float s = kv->scales[row / hd + g];
		if (kv->fmt == BE_KV_FP8)
			for (size_t d = 0; d < hd; d++)
				Kt[d * ldk + t] = c->e4m3[q[d]] * s;
		else
			for (size_t d = 0; d < hd; d++)
				Kt[d * ldk + t] = (float)(int8_t)q[d] * s;
	}
}

/* Query tokens per attention task: with the n_rep heads of a kv head, a tile of
 * ATTN_QTOK * n_rep query rows shares every K / V block it reads (and its transposed keys).
 * 32 against 16: bench_attn, one thread, best of many, two alternating runs each, prefill
 * of 512 tokens 4840 / 4498 -> 3605 / 3281 us per layer, 128 tokens 364 / 345 -> 266 / 266 us;
 * 64 gave the same at 512 tokens and 296 us at 128 (fewer tasks, more masked keys). */
#define ATTN_QTOK 32
/* Keys per step of the online softmax: as many whole cache blocks as fit (at least one). The
 * per-row work of a step (max, correction, rescale, sums) is then spread over up to 256 keys
 * instead of one block's 16 (measured, bench_attn on one thread, best of many: prefill of
 * 512 tokens 4.9 -> 3.5 ms per layer, 128 tokens 0.39 -> 0.29 ms; steps of 64 keys gave
 * 3.75 ms, 128 keys 3.55 ms; F32 decode, then with its scores against the key rows in
 * place, batch 16: context 64 78 -> 68 us, 256 408 -> 377 us, 512 825 -> 779 us, medians
 * of 8 alternating runs; FP8 / INT8 decode takes them too). */
#define ATTN_KEYS 256
/* Scores are the sums of one product with the transposed key block of a step (gemm_nn),
 * decode included (on an F32 cache, attn_scores_f32 forms the same sums without the
 * transposed copy, ATTN_SCORES_IN_PLACE): every query row then gets the same bits whatever
 * the task's row count, so a token's attention does not depend on the batch it comes in
 * (what greedy speculative decoding needs to reproduce plain decoding), and it is faster
 * than the dot products against the key rows that decode used before (gemm_nt, kept below
 * 8 query rows for want of the transpose). bench_attn, one thread, two alternating runs
 * each, us per layer, batch-16 decode: F32 cache, context 64 154 / 165 -> 69 / 69, 256 600 /
 * 705 -> 373 / 375, 512 1218 / 1362 -> 892 / 805; FP8 cache, context 256 748 / 744 -> 525 /
 * 558; batch-1 decode, context 64, 8.7 / 8.9 -> 4.0 / 4.1. BF16 caches on the amx set take
 * tiles either way (unchanged). */

/* ATTN_SCORES_IN_PLACE: with an F32 cache, tasks of at most this many query rows per kv head
 * (a decode token's n_rep, up to 4 tokens of SmolLM2) take their scores from the key rows in
 * place (attn_scores_f32: each 16 x 16 block transposed in registers) instead of transposing
 * the step's keys into Kt and running gemm_nn over it; the same sums in the same order, so
 * the same bits. Longer tasks (prefill) share one transposed copy among many rows. With the
 * next key rows and value blocks prefetched (cache blocks are scattered, so the hardware
 * prefetchers cannot find them), batch-16 decode at context 160-208 (2 threads, per-op
 * timing in process, three runs alternating with the transposing path): attention 12.7 /
 * 10.8 / 12.4 -> 7.6 / 7.6 / 8.9 ms a step on the INT8 model, 13.1 / 13.5 / 10.9 -> 9.4 /
 * 8.9 / 8.5 ms on the F32 one; whole step 1.18x and 1.11x (medians). Prefill of 512 tokens
 * unchanged (attention 63 -> 59-62 ms). */
#define ATTN_SCORES_IN_PLACE_MAX_ROWS 12

/* ATTN_BF16: with a BF16 cache, attention computes as flash attention does on GPUs: the
 * scaled queries and the softmax weights are rounded to bf16 once, each product of two bf16
 * values is exact, sums are f32 (the softmax itself, its running max and sum and the
 * accumulator stay f32). The same on every path and kernel set, so a token's result does
 * not depend on the batch it came in (up to f32 summation order). On a set with bf16
 * attention products (amx; the generic set as their reference) every task runs scores and
 * P V on AMX tiles against the cache blocks in place, with no transposed or decoded copy:
 * bench_attn, one thread, amx, against the F32 cache: prefill of 512 tokens 3080 -> 1490 us
 * per layer, 128 tokens 259 -> 160 us (the f32 online softmax is then the largest part);
 * batch-16 decode at context 256 410 -> 320 us, 512 850 -> 645 us, 64 the same (70-90 us;
 * decode through the f32 kernels on widened rows was 485 and 1199 us: even 3 query rows
 * of 16 in a tile beat the vector products). Other sets widen the bf16 rows to f32 (exact)
 * for the f32 kernels. */

/* Keys per online-softmax step for cache blocks of bt slots: whole blocks, at least one. */
static size_t attn_step_keys(size_t bt)
{
	return bt >= ATTN_KEYS ? bt : ATTN_KEYS / bt * bt;
}

typedef struct attn_job {
	cpu_ctx *c;
	float *out;
	const float *q;
	const be_kv *kv;
	size_t layer;
	const be_attn_batch *b;
	const size_t *grp;   /* [n_grp + 1]: group k is batch tokens [grp[k], grp[k + 1]) */
	size_t n_grp;
	size_t heads_per_task; /* kv heads a task covers: 1 or all (ATTN_ALL_HEADS_MAX_TOK) */
} attn_job;

/* Floats of one thread's attention scratch for groups of R query rows per kv head, steps of
 * sk keys and H kv heads per task (attn_task lays it out). */
static size_t attn_scratch_floats(size_t R, size_t hd, size_t sk, size_t H)
{
	size_t per = 2 * H * R * hd + R * sk + 2 * H * R + 2 * hd * sk;
	per += (H * R * hd + R * sk + 1) / 2; /* Qb and Pb of the BF16 path, 2 bytes an element */
	return (per + 15) / 16 * 16; /* keep each thread's scratch on its own cache lines */
}

/* One task: a group of up to ATTN_QTOK consecutive batch tokens of one sequence (same block
 * table) and heads_per_task kv heads from g0, each with the n_rep query heads sharing it:
 * R = n_tok * n_rep query rows per kv head g, row r = token r / n_rep, head g * n_rep + r %
 * n_rep. Blockwise online softmax (flash-attention style), per step of n_k keys (whole cache
 * blocks, attn_step_keys), for each kv head g of the task in turn:
 *   S (R, n_k) = (Q_g / sqrt(hd)) K_g^T         one gemm_nn against the transposed keys
 *   per row r, over the slots it may see (position <= pos of its token):
 *     m' = max(m, max_t S_t); l = l e^(m - m') + sum_t e^(S_t - m'); P_t = e^(S_t - m')
 *     (P_t = 0 for the slots it may not see); acc_r *= e^(m - m'); m = m'
 *   acc_g (R, hd) += P V_g                      one product per step: gemm_nn_chunks over
 *                                               the F32 value blocks in place, or gemm_nn
 *                                               over the decoded FP8 / INT8 values
 *   out_r = acc_r / l_r
 * which equals softmax(s) V in real arithmetic and needs no buffer as long as the context.
 * Each K and V block is read (and for FP8 / INT8 decoded) once for all R rows. A kv head's
 * rows get the same operations in the same order whether its task covers one head or all,
 * so the result does not depend on heads_per_task. Heavy groups (late in a prompt) come
 * first so the pool's dynamic hand-out balances the causal work. */
static void attn_task(void *p, size_t task, size_t thread)
{
	attn_job *j = p;
	const be_attn_batch *b = j->b;
	const be_kv *kv = j->kv;
	const cpu_kernel_set *ks = j->c->ks;
	size_t hd = b->head_dim, n_rep = b->n_heads / b->n_kv_heads, bt = kv->block_tokens;
	size_t H = j->heads_per_task, tasks_per_grp = b->n_kv_heads / H;
	size_t gi = j->n_grp - 1 - task / tasks_per_grp, g0 = task % tasks_per_grp * H;
	size_t i0 = j->grp[gi], n_tok = j->grp[gi + 1] - i0, R = n_tok * n_rep;
	const int32_t *table = b->block_table[i0];
	float scale = 1.0f / sqrtf((float)hd);
	int f32 = kv->fmt == BE_KV_F32;
	/* BF16 cache and a set with bf16 attention products: see ATTN_BF16 */
	int bf16 = kv->fmt == BE_KV_BF16 && ks->attn_scores_bf16;
	/* F32 cache, few rows (decode): scores against the key rows in place, see
	 * ATTN_SCORES_IN_PLACE */
	int f32_in_place = f32 && ks->attn_scores_f32 && R <= ATTN_SCORES_IN_PLACE_MAX_ROWS;
	const float *kb32[ATTN_KEYS]; /* the step's key blocks, F32 in place */
	size_t sk = attn_step_keys(bt);
	const float *vb[ATTN_KEYS]; /* a step's value blocks: sk / bt <= ATTN_KEYS pointers */
	const uint16_t *kb16[ATTN_KEYS], *vb16[ATTN_KEYS]; /* the same, BF16 */

	/* per kv head h of the task: Q + h R hd, acc + h R hd, m + h R, l + h R, Qb + h R hd */
	float *Q = j->c->scratch + thread * j->c->scratch_per; /* (H, R, hd), scaled */
	float *acc = Q + H * R * hd;                              /* (H, R, hd) */
	float *S = acc + H * R * hd;                              /* (R, sk) */
	float *m = S + R * sk, *l = m + H * R;                    /* (H, R) each */
	float *Kt = l + H * R; /* (hd, sk) transposed keys */
	float *vd = Kt + hd * sk;        /* (sk, hd): decoded FP8 / INT8 values */
	uint16_t *Qb = (uint16_t *)(vd + sk * hd); /* (H, R, hd) bf16 queries, BF16 cache */
	uint16_t *Pb = Qb + H * R * hd;             /* (R, sk) bf16 softmax weights */
	size_t maxpos = 0;
	for (size_t t = 0; t < n_tok; t++) {
		size_t pos = (size_t)b->pos[i0 + t];
		maxpos = pos > maxpos ? pos : maxpos;
		for (size_t h = 0; h < H; h++) {
			const float *qt = j->q + ((i0 + t) * b->n_heads + (g0 + h) * n_rep) * hd;
			memcpy(Q + (h * R + t * n_rep) * hd, qt, n_rep * hd * sizeof *Q);
		}
	}
	ks->scale(Q, scale, H * R * hd); /* the same product per element as a scalar loop */
	if (kv->fmt == BE_KV_BF16) { /* ATTN_BF16: queries rounded once, on every path */
		ks->f32_to_bf16(Qb, Q, H * R * hd);
		ks->bf16_to_f32(Q, Qb, H * R * hd);
	}
	for (size_t r = 0; r < H * R; r++) {
		m[r] = -INFINITY;
		l[r] = 0.0f;
	}
	memset(acc, 0, H * R * hd * sizeof *acc);

	size_t n_keys = maxpos + 1;
	for (size_t k0 = 0; k0 < n_keys; k0 += sk) {
		size_t n_k = n_keys - k0 < sk ? n_keys - k0 : sk;
		for (size_t h = 0; h < H; h++) {
			size_t g = g0 + h;
			float *Qh = Q + h * R * hd, *acch = acc + h * R * hd;
			float *mh = m + h * R, *lh = l + h * R;
			if (bf16) { /* ATTN_BF16: the step's K and V blocks read in place */
				size_t nb = 0;
				for (size_t s0 = k0; s0 < k0 + n_k; s0 += bt, nb++) {
					size_t blk = (size_t)table[s0 / bt];
					kb16[nb] = (const uint16_t *)kv->data +
						   be_kv_row(kv, blk, j->layer, 0, 0) + g * hd;
					vb16[nb] = (const uint16_t *)kv->data +
						   be_kv_row(kv, blk, j->layer, 1, 0) + g * hd;
				}
				ks->attn_scores_bf16(S, sk, Qb + h * R * hd, hd, kb16, kv->kv_dim, bt, R,
						     hd, n_k);
			}
			if (f32_in_place) {
				size_t nb = 0;
				for (size_t s0 = k0; s0 < k0 + n_k; s0 += bt)
					kb32[nb++] = (const float *)kv->data +
						     be_kv_row(kv, (size_t)table[s0 / bt], j->layer, 0, 0) +
						     g * hd;
				ks->attn_scores_f32(S, sk, Qh, hd, kb32, kv->kv_dim, bt, R, hd, n_k);
			}
			for (size_t s0 = k0; !bf16 && !f32_in_place && s0 < k0 + n_k; s0 += bt) {
				size_t blk = (size_t)table[s0 / bt];
				size_t n_t = k0 + n_k - s0 < bt ? k0 + n_k - s0 : bt;
				kv_load_kt(j->c, Kt + (s0 - k0), sk, kv,
					   be_kv_row(kv, blk, j->layer, 0, 0), g, n_t);
			}
			if (!bf16 && !f32_in_place)
				ks->gemm_nn(S, sk, Qh, hd, Kt, sk, R, hd, n_k, 0);
			for (size_t r = 0; r < R; r++) {
				size_t pos = (size_t)b->pos[i0 + r / n_rep];
				size_t nv = pos < k0 ? 0 : pos - k0 + 1 < n_k ? pos - k0 + 1 : n_k;
				ks->online_softmax(S + r * sk, n_k, nv, &mh[r], &lh[r], acch + r * hd, hd);
				if (kv->fmt == BE_KV_BF16) /* ATTN_BF16: the weights rounded */
					ks->f32_to_bf16(Pb + r * sk, S + r * sk, n_k);
				if (kv->fmt == BE_KV_BF16 && !bf16) /* and widened for the f32 kernels */
					ks->bf16_to_f32(S + r * sk, Pb + r * sk, n_k);
			}
			if (bf16) {
				ks->attn_pv_bf16(acch, hd, Pb, sk, vb16, kv->kv_dim, bt, R, n_k, hd);
				continue;
			}
			size_t nb = 0;
			for (size_t s0 = k0; s0 < k0 + n_k; s0 += bt) {
				size_t blk = (size_t)table[s0 / bt];
				size_t n_t = k0 + n_k - s0 < bt ? k0 + n_k - s0 : bt;
				size_t rv = be_kv_row(kv, blk, j->layer, 1, 0), c0 = s0 - k0;
				if (f32) /* values read in place */
					vb[nb++] = (const float *)kv->data + rv + g * hd;
				else
					kv_decode_rows(j->c, vd + c0 * hd, kv, rv, g, n_t);
			}
			/* F32: one product over the step's blocks, each acc tile in registers for the
			 * whole step (before: one gemm_nn per 16-key block, k = 16, the tile loaded and
			 * stored 16 times per step). With it, 6 x 4-vector gemm tiles (were 4 x 4) and a
			 * 4-chain online_softmax_avx512: bench_attn prefill (one thread, 40 calls, best
			 * of 8 runs alternating with the old binary; the machine was very noisy): 512
			 * tokens 3233 -> 3096 us per layer, 128 tokens 265 -> 255 us (the chunked PV
			 * alone: 3229 / 256 us). Steps of 128 keys measured the same (3073 / 255 us); the
			 * products run near 140-160 GFLOP/s, and the softmax (~20%) and K transpose (~5%)
			 * make most of the rest. */
			if (f32)
				ks->gemm_nn_chunks(acch, hd, S, sk, vb, kv->kv_dim, bt, R, n_k, hd, 1);
			else
				ks->gemm_nn(acch, hd, S, sk, vd, hd, R, n_k, hd, 1);
		}
	}
	for (size_t h = 0; h < H; h++)
		for (size_t r = 0; r < R; r++) {
			size_t i = i0 + r / n_rep, hq = (g0 + h) * n_rep + r % n_rep;
			float *o = j->out + (i * b->n_heads + hq) * hd;
			memcpy(o, acc + (h * R + r) * hd, hd * sizeof *o);
			ks->scale(o, 1.0f / l[h * R + r], hd);
		}
}

/* ATTN_ALL_HEADS: groups of at most this many tokens (decode) get one task for all kv heads
 * of their sequence when there are enough groups to keep every thread busy; longer groups
 * (prefill) keep a task per (group, kv head). A cache block holds each layer's K (then V)
 * rows of all kv heads together, so a task for one head reads a head_dim slice of every
 * row; a task for all heads reads each block's rows whole while they are in cache. In a
 * batch-16 decode step (context 160-208, 2 threads, in-process per-op timing, three runs
 * alternating with the per-head tasks) attention took 9.7 / 8.9 / 9.6 -> 8.5 / 8.2 / 7.7 ms
 * on a BF16 cache, 13.4 / 13.7 / 14.3 -> 12.8 / 13.4 / 13.1 ms on an F32 cache (the F32
 * model), 12.2 / 13.0 / 13.3 -> 12.5 / 12.7 / 11.9 ms on an F32 cache (INT8 model). It is
 * still the largest op of that step: ~29 ns of CPU time per (query head, key), the same
 * with the cache in L3 as out of it; a software prefetch of the next block's rows (1, 2, 4
 * blocks ahead) or of a whole step, and the cache on huge pages, changed nothing. */
#define ATTN_ALL_HEADS_MAX_TOK 4

static int cpu_attention(void *ctx, float *out, const float *q, const be_kv *kv, size_t layer,
			 const be_attn_batch *b)
{
	cpu_ctx *c = ctx;
	if (kv->fmt != BE_KV_F32 &&
	    ((kv->fmt != BE_KV_BF16 && !be_kvfmt_has_scales(kv->fmt)) ||
	     kv->head_dim != b->head_dim || (be_kvfmt_has_scales(kv->fmt) && !kv->scales)))
		return OS_EUNSUPPORTED;
	if (!b->n)
		return OS_OK;
	/* groups: runs of consecutive tokens with the same block table, cut every ATTN_QTOK */
	size_t *grp = malloc((b->n + 1) * sizeof *grp);
	if (!grp)
		return OS_ENOMEM;
	size_t n_grp = 0, longest = 0;
	for (size_t i = 0; i < b->n; i++)
		if (i == 0 || b->block_table[i] != b->block_table[i - 1] ||
		    i - grp[n_grp - 1] == ATTN_QTOK) {
			if (n_grp && i - grp[n_grp - 1] > longest)
				longest = i - grp[n_grp - 1];
			grp[n_grp++] = i;
		}
	grp[n_grp] = b->n;
	if (b->n - grp[n_grp - 1] > longest)
		longest = b->n - grp[n_grp - 1];
	size_t H = longest <= ATTN_ALL_HEADS_MAX_TOK && n_grp >= 2 * c->n_threads ? b->n_kv_heads
										    : 1;
	size_t n_rep = b->n_heads / b->n_kv_heads, hd = b->head_dim;
	size_t sk = attn_step_keys(kv->block_tokens);
	size_t R = (H > 1 ? ATTN_ALL_HEADS_MAX_TOK : ATTN_QTOK) * n_rep;
	size_t per = attn_scratch_floats(R, hd, sk, H);
	if (per > c->scratch_per) { /* grows once per shape, never per token */
		float *sc = cpu_alloc_aligned(per * c->n_threads * sizeof(float));
		if (!sc) {
			free(grp);
			return OS_ENOMEM;
		}
		cpu_free_aligned(c->scratch);
		c->scratch = sc;
		c->scratch_per = per;
	}
	attn_job j = {c, out, q, kv, layer, b, grp, n_grp, H};
	threadpool_run(c->pool, n_grp * (b->n_kv_heads / H), attn_task, &j);
	free(grp);
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
		for (int r = 0; r < 2; r++) {
			free(c->rope[r].invf);
			free(c->rope[r].tab);
		}
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
	if (opts && opts->batch_invariant) {
		ks = cpu_kernels_batch_invariant(ks);
		qk = cpu_qkernels_batch_invariant(qk);
	}
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
