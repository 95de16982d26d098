/* engine.h: the batched forward pass of a llama model over a paged KV cache. One call,
 * engine_forward, takes tokens of any number of sequences (prefill, batched decode,
 * speculative verification alike) and returns the logits of the rows asked for.
 *
 * Typical use (errors unchecked for brevity):
 *   model *m;    model_open(&m, "x.gguf", NULL, &err);
 *   backend *be; backend_cpu_new(&be, NULL, &err);
 *   engine *e;   engine_new(&e, m, be, NULL, &err);
 *   int32_t s;   kv_seq_new(engine_kv(e), &s, &err);
 *   // prefill n prompt tokens at positions 0..n-1, logits of the last one only
 *   engine_batch b = {.n = n, .tokens = toks, .pos = pos, .seq = seqs};  // seqs[i] = s
 *   float *logits = malloc(model_n_vocab(m) * sizeof *logits);
 *   engine_forward(e, &b, logits, &err);
 *   ... then one token at position n, and so on; kv_seq_free(engine_kv(e), s) at the end.
 *   engine_free(e); backend_free(be); model_close(m);
 */
#ifndef OPTSTUDIO_ENGINE_H
#define OPTSTUDIO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../errors.h"
#include "backend.h"
#include "kv_cache.h"
#include "model.h"

typedef struct engine engine;

/* KV cache element type of an engine: the model file's (optstudio.kv_type, else F32) or a
 * forced one. */
enum engine_kv_type {
	ENGINE_KV_MODEL = 0,
	ENGINE_KV_F32,
	ENGINE_KV_FP8,    /* E4M3 codes, one f32 scale per (token, kv head) */
	ENGINE_KV_INT8,   /* int8 codes, one f32 scale per (token, kv head) */
	ENGINE_KV_BF16,   /* bf16 values (round to nearest even), no scales: half of F32 */
};

typedef struct engine_opts {
	size_t max_batch;        /* tokens per pass; scratch is sized for it; 0 = 256. Larger
				  * batches are run as consecutive passes of this size. */
	size_t kv_bytes;         /* KV cache capacity in bytes; 0 = min(ctx, 4096) tokens */
	size_t kv_block_tokens;  /* positions per KV block; 0 = KV_DEFAULT_BLOCK_TOKENS */
	int kv_type;             /* enum engine_kv_type; 0 = the model's */
} engine_opts;

/* Makes an engine running m on be, with its own KV cache and scratch sized for
 * opts->max_batch (opts NULL = defaults). m and be are borrowed and must outlive it. Fails
 * with OS_EUSAGE for a bad kv_type, OS_EUNSUPPORTED when be has no matmul for the format of
 * one of the model's matrices, OS_ERANGE for a KV capacity below one block, OS_ENOMEM. */
int engine_new(engine **out, const model *m, backend *be, const engine_opts *opts,
	       os_error *err);
/* Frees the engine, its KV cache and scratch. NULL is fine. */
void engine_free(engine *e);

/* The KV cache: start sequences with kv_seq_new, end them with kv_seq_free, roll back with
 * kv_seq_truncate. Borrowed, valid until engine_free. */
kv_cache *engine_kv(engine *e);
const model *engine_model(const engine *e);
/* The KV cache element type (enum be_kvfmt) an engine of m asked for kv_type (enum
 * engine_kv_type; ENGINE_KV_MODEL = model_kv_format(m)) uses; -1 for an unknown kv_type. */
int engine_kv_type_format(const model *m, int kv_type);
/* The KV cache element type in use (enum be_kvfmt). */
int engine_kv_format(const engine *e);
size_t engine_max_batch(const engine *e);

/* A batch: n tokens, each with its id, position and sequence. All arrays have n entries
 * and are borrowed for the call. Within the batch, the tokens of each sequence must have
 * consecutive positions starting at that sequence's current length (kv_seq_len), in
 * order; tokens of different sequences may interleave in any way. */
typedef struct engine_batch {
	size_t n;
	const int32_t *tokens;   /* ids in [0, vocab) */
	const int32_t *pos;      /* positions */
	const int32_t *seq;      /* KV cache sequence ids (kv_seq_new) */
	const uint8_t *want;     /* nonzero: return this token's logits; NULL: the last token only */
} engine_batch;

/* Runs the batch: appends every token's K and V to its sequence (each sequence grows by its
 * number of tokens) and writes to logits, caller-owned (n_wanted, vocab) f32, one row per
 * wanted token in batch order. Each token attends to its own sequence's positions
 * 0..pos (earlier calls and earlier tokens of this batch). Fails without changing the KV
 * cache: OS_EUSAGE for a bad token id, sequence or position (the message names the index),
 * OS_ERANGE when the KV cache has too few free blocks, or a backend error. */
int engine_forward(engine *e, const engine_batch *b, float *logits, os_error *err);

/* Activation observers (calibration, core/optimize/calibrate.h): where the input of a linear
 * layer is seen. */
enum engine_site {
	ENGINE_SITE_ATTN_IN = 0,   /* normed input of wq, wk, wv: (n_tok, dim) */
	ENGINE_SITE_ATTN_OUT,      /* attention output, the input of wo: (n_tok, n_heads*head_dim) */
	ENGINE_SITE_FFN_IN,        /* normed input of w_gate, w_up: (n_tok, dim) */
	ENGINE_SITE_FFN_DOWN_IN,   /* silu(gate) * up, the input of w_down: (n_tok, ffn_dim) */
	ENGINE_N_SITES
};
/* Called during engine_forward at each site of each layer with the activations of one pass,
 * x (n_tok, dim) f32 row-major, borrowed for the call. They are host memory only on a host
 * backend (the CPU backend). */
typedef void (*engine_observer_fn)(void *ctx, size_t layer, int site, const float *x,
				   size_t n_tok, size_t dim);
/* Sets (fn NULL: clears) the observer; ctx is passed back. Costs nothing when unset. */
void engine_set_observer(engine *e, engine_observer_fn fn, void *ctx);

#endif
