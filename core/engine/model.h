/* model.h: a llama-family model in memory: its configuration (from GGUF metadata) and its
 * weights, dequantized on load from the file's formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1)
 * into one run-time format (F32 or BF16), except optstudio's quantized tensors (FP8, INT8,
 * INT4: core/optimize/quantize.h), which load as they are into their own run-time formats;
 * in such a quantized file (one with optstudio.recipe) F32 and BF16 matrices (the head)
 * also keep their file format.
 * Formats are per matrix, so a model may mix them. Run it with engine.h.
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
 * model_close (or model_set_matrix of that matrix). Each matrix has its own run-time format
 * (be_weight.fmt); norms are f32. */
typedef struct model_weights {
	be_weight token_embd;         /* (vocab, dim), rows gathered by token id */
	model_layer_weights *layers;  /* [n_layers] */
	float *output_norm;           /* (dim) */
	be_weight output;             /* (vocab, dim); a copy of the token_embd struct when tied:
				       * the same data, format and scales */
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
/* The same weights, writable: for in-place transforms of an F32 model that keep its
 * function (SmoothQuant and AWQ folding, core/optimize). Shapes and pointers must not
 * change. Borrowed, valid until model_close. */
model_weights *model_weights_mut(model *m);
/* The run-time format (enum be_wfmt) of the transformer blocks' matrices (those of
 * blk.0; the embedding and output head may differ: see model_tensor_at). */
int model_weight_format(const model *m);
/* The KV cache element type the file asks for (enum be_kvfmt, from optstudio.kv_type;
 * BE_KV_F32 when absent). engine_new uses it unless told otherwise. */
int model_kv_format(const model *m);
/* Bytes of KV cache one token position of m takes in KV type kv_fmt (enum be_kvfmt; e.g.
 * model_kv_format(m)): K and V of every layer, the elements and the FP8 / INT8 scales, as
 * kv_cache_new counts them. */
size_t model_kv_bytes_per_pos(const model *m, int kv_fmt);
/* Number of parameters (tied embeddings counted once). */
size_t model_n_params(const model *m);
/* Vocabulary size: the number of logits per row. */
size_t model_n_vocab(const model *m);
/* Bytes of weights one decode step reads (every matrix with its scales and zero points
 * and every norm once, plus one embedding row; a tied output head reads the whole
 * embedding once more), in the run-time formats: the numerator of the memory-bandwidth
 * roofline. */
size_t model_step_bytes(const model *m);
/* Bytes of weight memory held (including matrices a model_set_matrix replaced). */
size_t model_weight_bytes(const model *m);

/* The model's tensors by GGUF name, in file order: token_embd.weight, per block attn_norm,
 * attn_q/k/v, attn_output, ffn_norm, ffn_gate/up/down, then output_norm.weight and
 * output.weight (absent when tied: token_embd.weight is the head). Exactly one of mat and
 * vec is set. Everything is borrowed from the model, valid until model_close; the float
 * data may be written (calibration transforms do, before quantization). */
typedef struct model_tensor {
	const char *name;    /* "blk.3.attn_q.weight" */
	be_weight *mat;      /* a matrix, or NULL */
	float *vec;          /* an f32 vector of vec_len elements, or NULL */
	size_t vec_len;
} model_tensor;
size_t model_n_tensors(const model *m);
model_tensor model_tensor_at(const model *m, size_t i);

/* Replaces matrix i (model_tensor_at(m, i).mat) by w, same rows and cols, any format, and
 * takes ownership of w's data, scales and zeros (malloc'd or posix_memalign'd; freed with
 * free() at model_close or the next replacement of i). For tied embeddings the output head
 * follows. The step and weight byte counts follow. OS_EUSAGE (nothing taken) when i is not
 * a matrix or w does not fit it. Engines made before the call must not run during it. */
int model_set_matrix(model *m, size_t i, const be_weight *w, os_error *err);

#endif
