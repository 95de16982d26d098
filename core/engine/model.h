/* model.h: a llama-family model in memory: its configuration (from GGUF metadata) and its
 * weights, dequantized on load from the file's formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1)
 * into one run-time format (F32 or BF16). Run it with engine.h.
 * Not yet: HF config.json + safetensors loading, llama3 rope scaling (rope_freqs.weight),
 * q/k/v biases (Qwen2). */
#ifndef OPTSTUDIO_MODEL_H
#define OPTSTUDIO_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "../errors.h"
#include "../format/gguf.h"
#include "backend.h"

/* The hyperparameters. Plain data; read from "<arch>.*" GGUF keys. */
typedef struct model_config {
	char arch[32];          /* general.architecture, "llama" */
	size_t n_layers;        /* <arch>.block_count */
	size_t dim;             /* <arch>.embedding_length */
	size_t n_heads;         /* <arch>.attention.head_count */
	size_t n_kv_heads;      /* <arch>.attention.head_count_kv (default n_heads); divides n_heads */
	size_t head_dim;        /* <arch>.attention.key_length, else dim / n_heads; even */
	size_t ffn_dim;         /* <arch>.feed_forward_length */
	size_t vocab;           /* <arch>.vocab_size, else rows of token_embd.weight */
	size_t ctx;             /* <arch>.context_length (default 2048): trained context, tokens */
	float rope_base;        /* <arch>.rope.freq_base (default 10000) */
	float rms_eps;          /* <arch>.attention.layer_norm_rms_epsilon (default 1e-5) */
	bool tied_embeddings;   /* no output.weight: logits use token_embd.weight */
} model_config;

/* One transformer block, llama2.c style; shapes are (rows, cols) of y = W x. */
typedef struct model_layer_weights {
	float *attn_norm;       /* (dim) */
	be_weight wq;           /* (n_heads * head_dim, dim) */
	be_weight wk;           /* (n_kv_heads * head_dim, dim) */
	be_weight wv;           /* (n_kv_heads * head_dim, dim) */
	be_weight wo;           /* (dim, n_heads * head_dim) */
	float *ffn_norm;        /* (dim) */
	be_weight w_gate;       /* (ffn_dim, dim) */
	be_weight w_up;         /* (ffn_dim, dim) */
	be_weight w_down;       /* (dim, ffn_dim) */
} model_layer_weights;

/* All weights. Every pointer is owned by the model (64-byte aligned), valid until
 * model_close. The matrices are in the model's run-time format; norms are f32. */
typedef struct model_weights {
	be_weight token_embd;         /* (vocab, dim), rows gathered by token id */
	model_layer_weights *layers;  /* [n_layers] */
	float *output_norm;           /* (dim) */
	be_weight output;             /* (vocab, dim); same data as token_embd when tied */
} model_weights;

typedef struct model model;

typedef struct model_load_opts {
	int weight_format;      /* enum be_wfmt: BE_WFMT_F32 (default, 0) or BE_WFMT_BF16 */
} model_load_opts;

/* Opens a GGUF file and loads the model (opts NULL = defaults). Errors name the file and
 * what is wrong: OS_EUNSUPPORTED for an architecture other than llama (naming it) or a
 * tensor type we cannot dequantize; OS_EFORMAT for a missing key or tensor, or a tensor
 * whose shape differs from what the config implies (naming the tensor and both shapes). */
int model_open(model **out, const char *path, const model_load_opts *opts, os_error *err);
/* Same, from a GGUF file the caller already opened (borrowed; may be closed afterwards:
 * the model copies what it needs). */
int model_open_gguf(model **out, const gguf_file *f, const model_load_opts *opts,
		    os_error *err);
/* Frees the model and its weights. NULL is fine. */
void model_close(model *m);

/* Borrowed, valid until model_close. */
const model_config *model_get_config(const model *m);
const model_weights *model_get_weights(const model *m);
/* The run-time weight format (enum be_wfmt). */
int model_weight_format(const model *m);
/* Number of parameters (tied embeddings counted once). */
size_t model_n_params(const model *m);
/* Vocabulary size: the number of logits per row. */
size_t model_n_vocab(const model *m);
/* Bytes of weights one decode step reads (every matrix and norm once, plus one embedding
 * row), in the run-time format: the numerator of the memory-bandwidth roofline. */
size_t model_step_bytes(const model *m);
/* Bytes of weight memory held. */
size_t model_weight_bytes(const model *m);

#endif
