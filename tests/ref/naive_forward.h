/* naive_forward.h: a test-only llama forward pass in float64, written from the math with
 * plain loops and no engine code, used as the reference the engine's logits are checked
 * against. Weights come straight from the GGUF file (gguf_dequantize per tensor). */
#ifndef OPTSTUDIO_NAIVE_FORWARD_H
#define OPTSTUDIO_NAIVE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "../../core/errors.h"
#include "../../core/format/gguf.h"

/* Hyperparameters as the reference reads them from "<arch>.*" keys. */
typedef struct ref_config {
	size_t n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab;
	size_t n_rot;        /* rope.dimension_count, else head_dim: leading dims rotated */
	double rope_base;    /* rope.freq_base, else 10000 */
	double rms_eps;      /* attention.layer_norm_rms_epsilon, else 1e-5 */
	int tied;            /* no output.weight: logits from token_embd.weight */
	int round_bf16;      /* set by the caller (ref_config_read clears it): round every
	                      * weight matrix to bf16 first, to check a BF16 run-time format */
} ref_config;

/* Reads the config of a llama-family GGUF (f borrowed). OS_EFORMAT naming the key or the
 * tensor when something is missing or a tensor shape disagrees with the config. */
int ref_config_read(ref_config *c, const gguf_file *f, os_error *err);

/* Runs tokens[0..n) at positions 0..n-1 of one sequence and writes every position's
 * logits to logits (n * vocab doubles, row-major). Memory is O(one layer's weights + n
 * positions' activations): each layer is dequantized once and all positions pass through
 * it in order, one at a time, attending to the layer's KV cache (causal, GQA). */
int ref_forward(const gguf_file *f, const ref_config *c, const int32_t *tokens, size_t n,
		double *logits, os_error *err);

#endif
