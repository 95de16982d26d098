/* backend.h: the compute backend interface, as in ggml: a table of function pointers plus
 * an opaque context. The forward pass (engine.c) calls only these ops; the CPU backend
 * (core/cpu/backend_cpu.c) fills the table, and a CUDA backend will fill the same table. */
#ifndef OPTSTUDIO_BACKEND_H
#define OPTSTUDIO_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Run-time weight formats, per matrix (a model may mix them). A matmul op exists per format
 * (backend_ops.matmul[fmt]); a NULL entry means the backend does not run that format.
 * Element rules are core/numerics.h's, the arithmetic of each matmul core/cpu/kernels_quant.h's:
 *   FP8       E4M3 codes, one f32 scale per output row; activations stay f32 (W8A16)
 *   FP8_W8A8  the same storage; activations quantized per token to E4M3 (dynamic scale
 *             absmax / 448) before the product, as an FP8 GEMM computes
 *   I8        int8 codes in [-127, 127], one f32 scale per output row; activations
 *             quantized per token to int8 (dynamic scale absmax / 127), int32 accumulation
 *   I4        packed uint4 codes (element 2i in the low nibble of byte i), per (row, group)
 *             an f32 scale and a uint8 zero point: w = s * (q - z); activations f32 (W4A16) */
enum be_wfmt {
	BE_WFMT_F32 = 0,
	BE_WFMT_BF16 = 1,
	BE_WFMT_FP8 = 2,
	BE_WFMT_FP8_W8A8 = 3,
	BE_WFMT_I8 = 4,
	BE_WFMT_I4 = 5,
	BE_WFMT_COUNT
};

/* "F32", "BF16", "FP8", "FP8-W8A8", "INT8", "INT4"; "?" for anything else. */
static inline const char *be_wfmt_name(int fmt)
{
	static const char *const names[BE_WFMT_COUNT] = {"F32", "BF16", "FP8", "FP8-W8A8",
							 "INT8", "INT4"};
	return fmt >= 0 && fmt < BE_WFMT_COUNT ? names[fmt] : "?";
}

/* Bytes of one element of the float formats and the 8-bit codes (0 for INT4, whose
 * elements are half a byte, and unknown formats): use be_weight_bytes for a matrix. */
static inline size_t be_wfmt_elem_bytes(int fmt)
{
	switch (fmt) {
	case BE_WFMT_F32: return 4;
	case BE_WFMT_BF16: return 2;
	case BE_WFMT_FP8: case BE_WFMT_FP8_W8A8: case BE_WFMT_I8: return 1;
	default: return 0;
	}
}

/* True for the formats whose matrices carry scales (and, INT4, zero points). */
static inline int be_wfmt_quantized(int fmt)
{
	return fmt >= BE_WFMT_FP8 && fmt < BE_WFMT_COUNT;
}

/* A weight matrix W of shape (rows, cols): rows = output features, cols = input features,
 * row-major, so y = W x is y[r] = sum_c W[r][c] x[c] (what llama.cpp calls ne = {cols, rows}).
 * data is rows * cols elements of fmt (INT4: rows * cols / 2 bytes), 64-byte aligned; data,
 * scales and zeros are owned by whoever made the matrix (the model). */
typedef struct be_weight {
	int fmt;        /* enum be_wfmt */
	size_t rows;
	size_t cols;
	void *data;
	float *scales;  /* FP8, FP8_W8A8, I8: rows; I4: rows * (cols / group) by (row, group);
			 * NULL for F32 / BF16 */
	uint8_t *zeros; /* I4: rows * (cols / group) zero points in [0, 15]; else NULL */
	size_t group;   /* I4: 32, 64 or 128, dividing cols; else 0 */
} be_weight;

/* Bytes a matmul streams for w: codes, scales and zero points. */
static inline size_t be_weight_bytes(const be_weight *w)
{
	size_t n = w->rows * w->cols;
	switch (w->fmt) {
	case BE_WFMT_F32: return n * 4;
	case BE_WFMT_BF16: return n * 2;
	case BE_WFMT_FP8: case BE_WFMT_FP8_W8A8: case BE_WFMT_I8: return n + w->rows * 4;
	case BE_WFMT_I4: return n / 2 + (w->group ? n / w->group * 5 : 0);
	default: return 0;
	}
}

/* Bytes of one row (the embedding lookup reads one). */
static inline size_t be_weight_row_bytes(const be_weight *w)
{
	return w->rows ? be_weight_bytes(w) / w->rows : 0;
}

/* KV cache element types. F32 stores K and V rows as they are. BF16 stores each value as
 * bf16 bits (num_f32_to_bf16, round to nearest even) at the same element offsets, 2 bytes
 * an element and no scales: half the bytes of F32, read back exactly as the rounded value.
 * FP8 (E4M3) and INT8 store one code per element plus one f32 scale per (token, kv head):
 * each head's head_dim values of a new token are quantized with the dynamic scale
 * absmax / 448 (FP8) or absmax / 127 (INT8, round to nearest even), so a token's scale
 * never changes after it is written, and rolling a sequence back needs no rescaling. */
enum be_kvfmt {
	BE_KV_F32 = 0,
	BE_KV_FP8 = 1,
	BE_KV_I8 = 2,
	BE_KV_BF16 = 3,
	BE_KV_COUNT
};

/* "f32", "fp8", "int8", "bf16"; "?" for anything else (the names of optstudio.kv_type). */
static inline const char *be_kvfmt_name(int fmt)
{
	return fmt == BE_KV_F32 ? "f32" : fmt == BE_KV_FP8 ? "fp8" : fmt == BE_KV_I8 ? "int8" :
	       fmt == BE_KV_BF16 ? "bf16" : "?";
}

/* Bytes of one element's code (4, 1, 1, 2; 0 for an unknown type). */
static inline size_t be_kvfmt_elem_bytes(int fmt)
{
	return fmt == BE_KV_F32 ? 4 : fmt == BE_KV_BF16 ? 2 :
	       fmt == BE_KV_FP8 || fmt == BE_KV_I8 ? 1 : 0;
}

/* Whether fmt stores one f32 scale per (token, kv head) (FP8, INT8). */
static inline int be_kvfmt_has_scales(int fmt)
{
	return fmt == BE_KV_FP8 || fmt == BE_KV_I8;
}

/* The paged KV storage as a backend sees it: n_blocks blocks, each holding, for every layer,
 * block_tokens K rows then block_tokens V rows of kv_dim elements:
 *   element offset of (block b, layer l, K=0/V=1, slot t, channel c) =
 *     (((b * n_layers + l) * 2 + kv) * block_tokens + t) * kv_dim + c
 * A token at position p of a sequence lives in block table[p / block_tokens],
 * slot p % block_tokens. For BF16, data holds uint16_t bf16 bits at those offsets. For
 * FP8 / INT8, data holds 1-byte codes at those offsets and scales holds the f32 scale of
 * (row, kv head h) at be_kv_row(...) / head_dim + h. */
typedef struct be_kv {
	void *data;          /* n_blocks * block_elems elements of fmt; allocated with buf_alloc */
	float *scales;       /* FP8 / INT8: n_blocks * block_elems / head_dim f32; else NULL */
	int fmt;             /* enum be_kvfmt */
	size_t n_blocks;
	size_t n_layers;
	size_t kv_dim;       /* n_kv_heads * head_dim */
	size_t head_dim;     /* the scale granularity of FP8 / INT8 (divides kv_dim) */
	size_t block_tokens;
} be_kv;

/* Elements per block (K and V of every layer). */
static inline size_t be_kv_block_elems(const be_kv *kv)
{
	return kv->n_layers * 2 * kv->block_tokens * kv->kv_dim;
}

/* Element offset of row (block, layer, which = 0 for K / 1 for V, slot). */
static inline size_t be_kv_row(const be_kv *kv, size_t block, size_t layer, int which,
			       size_t slot)
{
	return (((block * kv->n_layers + layer) * 2 + (size_t)which) * kv->block_tokens + slot) *
	       kv->kv_dim;
}

/* What the attention ops need to know about the tokens of one batch. All arrays are host
 * memory with n entries, borrowed for the duration of the call. block_table[i] is the block
 * table of token i's sequence (its entries are block indices into the kv storage) and
 * covers positions 0..pos[i]. */
typedef struct be_attn_batch {
	size_t n;
	const int32_t *pos;
	const int32_t *const *block_table;
	size_t n_heads;
	size_t n_kv_heads;   /* divides n_heads; query head h reads kv head h / (n_heads / n_kv_heads) */
	size_t head_dim;
} be_attn_batch;

typedef struct backend backend;

/* The op table. Every op works on buffers from buf_alloc (activations, KV storage) and on
 * model weights; shapes are in the comments, all activations are f32 row-major with one row
 * per batch token. The caller checked shapes, formats and token ids beforehand; compute ops
 * return OS_OK, or an error code when the device fails (OS_ENOMEM for scratch it could not
 * get, OS_EINTERNAL otherwise), without a message. */
typedef struct backend_ops {
	/* Memory for activations and KV storage: bytes, 64-byte aligned, contents undefined.
	 * NULL when out of memory. */
	void *(*buf_alloc)(void *ctx, size_t bytes);
	void (*buf_free)(void *ctx, void *buf);

	/* x[i] = table row tokens[i] converted to f32. x: (n, table->cols). Token ids were checked
	 * against table->rows by the caller. */
	int (*embed)(void *ctx, float *x, const be_weight *table, const int32_t *tokens,
		      size_t n);

	/* out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * w, for n rows of dim; out may equal x. */
	int (*rmsnorm)(void *ctx, float *out, const float *x, const float *w, size_t n,
			size_t dim, float eps);

	/* out = x W^T: out (n, w->rows), x (n, w->cols). One entry per enum be_wfmt.
	 * All n rows go through together, so W is streamed from memory once per call. */
	int (*matmul[BE_WFMT_COUNT])(void *ctx, float *out, const float *x, size_t n,
				      const be_weight *w);

	/* Rotary embedding in place, llama.cpp's "normal" layout (adjacent pairs): for token i,
	 * every head, pair j in [0, head_dim/2):
	 *   theta = pos[i] * base^(-2j/head_dim)
	 *   (x[2j], x[2j+1]) <- (x[2j] cos theta - x[2j+1] sin theta,
	 *                        x[2j] sin theta + x[2j+1] cos theta)
	 * q: (n, n_q_heads * head_dim), k: (n, n_k_heads * head_dim). */
	int (*rope)(void *ctx, float *q, size_t n_q_heads, float *k, size_t n_k_heads,
		     size_t n, size_t head_dim, const int32_t *pos, float base);

	/* Writes K and V rows of the batch into the cache at layer, at each token's position.
	 * k, v: (n, kv_dim). */
	int (*kv_store)(void *ctx, const be_kv *kv, size_t layer, const float *k,
			 const float *v, const be_attn_batch *b);

	/* Causal grouped-query attention over the cache (after kv_store of the same batch):
	 *   out[i, h] = sum_{t <= pos[i]} softmax_t(q[i, h] . K[t, g] / sqrt(head_dim)) V[t, g]
	 * with g = h / (n_heads / n_kv_heads) and K, V read from token i's sequence.
	 * q, out: (n, n_heads * head_dim). Softmax in f32. */
	int (*attention)(void *ctx, float *out, const float *q, const be_kv *kv, size_t layer,
			  const be_attn_batch *b);

	/* SwiGLU: gate[j] = silu(gate[j]) * up[j] for n elements, silu(x) = x / (1 + e^-x). */
	int (*swiglu)(void *ctx, float *gate, const float *up, size_t n);

	/* Residual: x[j] += y[j] for n elements. */
	int (*add)(void *ctx, float *x, const float *y, size_t n);

	/* Logits for the selected rows only:
	 *   out[r] = rmsnorm(x[rows[r]], norm_w, eps) W^T,  out (n_rows, w->rows)
	 * x: (*, dim), scratch: (n_rows, dim) from buf_alloc. */
	int (*logits)(void *ctx, float *out, float *scratch, const float *x,
		       const int32_t *rows, size_t n_rows, size_t dim, const float *norm_w,
		       float eps, const be_weight *w);

	/* Ends the backend: frees ctx and the backend struct itself. */
	void (*free)(backend *be);
} backend_ops;

/* A backend: its op table and its context. Made by a backend's constructor
 * (backend_cpu_new), ended by backend_free. One backend may serve several engines, but
 * one call at a time: ops are not reentrant (they share the backend's threads). */
struct backend {
	const char *name;        /* "cpu" */
	const backend_ops *ops;
	void *ctx;
};

/* Frees a backend made by any constructor. NULL is fine. */
static inline void backend_free(backend *be)
{
	if (be)
		be->ops->free(be);
}

#endif
