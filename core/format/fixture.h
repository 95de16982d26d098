/* fixture.h: writes a real, tiny llama-family GGUF (GPT-2 byte-level BPE vocabulary with
 * learned merges, ChatML template, random weights from a seed) laid out as llama.cpp's
 * converter lays out a Hugging Face llama checkpoint, for tests and demos. */
#ifndef OPTSTUDIO_FIXTURE_H
#define OPTSTUDIO_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "../errors.h"

/* Zero fields take the defaults in brackets. */
typedef struct gguf_fixture_opts {
	uint64_t seed;         /* weights are a pure function of the seed and the shape */
	uint32_t weight_type;  /* enum ggml_type of the 2-D weights [F32]: F32, F16, BF16,
	                        * Q8_0, Q4_0 or Q4_1; norm weights are always F32 */
	bool tied_embeddings;  /* no output.weight; the output reuses token_embd.weight */
	uint32_t n_layers;     /* [2] */
	uint32_t dim;          /* embedding_length [64] */
	uint32_t n_heads;      /* [4] */
	uint32_t n_kv_heads;   /* [2] */
	uint32_t ffn_dim;      /* feed_forward_length [160] */
	uint32_t ctx;          /* context_length [256] */
} gguf_fixture_opts;

/* Number of merges the fixture's tokenizer learns, and its vocabulary size: the 256 byte
 * tokens, one token per merge, then <|endoftext|>, <|im_start|>, <|im_end|>. */
#define GGUF_FIXTURE_N_MERGES 150
#define GGUF_FIXTURE_VOCAB (256 + GGUF_FIXTURE_N_MERGES + 3)

/* Writes the fixture to path atomically. OS_EUSAGE (naming the option) when the shape does
 * not fit the type (a quantized type needs dim, kv_dim and ffn_dim multiples of 32) or the
 * heads do not divide dim; OS_EIO when the write fails. */
int gguf_fixture_write(const char *path, const gguf_fixture_opts *opts, os_error *err);

#endif
