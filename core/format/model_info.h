/* model_info.h: one plain description of a model for the hub, read from a GGUF file or a
 * Hugging Face safetensors folder. Cheap: reads headers and metadata, never hashes the
 * weights (the caller runs sha256_file when it wants the content hash). */
#ifndef OPTSTUDIO_MODEL_INFO_H
#define OPTSTUDIO_MODEL_INFO_H

#include <stdint.h>

#include "../errors.h"

/* Plain data; strings are "" and numbers 0 when the source does not say. */
typedef struct model_info {
	char architecture[64];    /* "llama" (GGUF general.architecture / HF model_type) */
	char name_hint[128];      /* general.name, else the file or folder name */
	uint64_t n_params;        /* sum of the element counts of every tensor */
	uint64_t context_length;  /* tokens */
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t hidden_size;
	uint32_t ffn_size;
	uint32_t vocab_size;      /* embedding rows: GGUF token count, HF config vocab_size */
	char tokenizer_kind[32];  /* "gpt2-bpe", "llama-spm", "hf-bpe", "hf-unigram" ... */
	char vocab_hash[65];      /* hex sha256 of the token strings, each + 0x00, in id order */
	char precision[16];       /* the type holding most 2-D weight elements: "Q4_1", "BF16" */
	char license[64];
	char format[16];          /* "gguf" or "safetensors" */
	uint64_t file_size;       /* bytes; for a folder the sum of its regular files */
} model_info;

/* Fills *out from path: a folder is read as a Hugging Face model, a file starting with the
 * GGUF magic as GGUF; anything else is OS_EFORMAT naming the path and what was expected. */
int model_info_read(const char *path, model_info *out, os_error *err);

#endif
