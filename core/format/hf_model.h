/* hf_model.h: a Hugging Face model folder: config.json (the architecture), tokenizer.json
 * (vocabulary, merges, special tokens) and the *.safetensors weights. Parsers take buffers
 * (so they can be fuzzed); hf_model_open reads a folder. Bad input is OS_EFORMAT naming the
 * file and the field, e.g. "config.json: num_hidden_layers is a string, expected an integer". */
#ifndef OPTSTUDIO_HF_MODEL_H
#define OPTSTUDIO_HF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../errors.h"
#include "safetensors.h"

/* config.json, plain data. Integer fields absent from the file are 0 unless noted. */
typedef struct hf_config {
	char model_type[64];          /* "llama", "qwen2" ... ("" when absent) */
	char architecture[128];       /* architectures[0], "LlamaForCausalLM" ("" when absent) */
	uint64_t hidden_size;         /* required (alias n_embd, d_model) */
	uint64_t intermediate_size;   /* FFN width (alias n_inner) */
	uint64_t n_layers;            /* num_hidden_layers, required (alias n_layer, num_layers) */
	uint64_t n_heads;             /* num_attention_heads, required (alias n_head) */
	uint64_t n_kv_heads;          /* num_key_value_heads; = n_heads when absent */
	uint64_t head_dim;            /* head_dim; = hidden_size / n_heads when absent */
	uint64_t max_position_embeddings; /* context length in tokens (alias n_positions) */
	uint64_t vocab_size;          /* required */
	double rope_theta;            /* 10000 when absent */
	double rms_norm_eps;          /* 1e-6 when absent (alias layer_norm_epsilon) */
	bool tie_word_embeddings;     /* false when absent */
	int64_t bos_token_id;         /* -1 when absent */
	int64_t eos_token_id;         /* -1 when absent; the first when a list */
	char torch_dtype[16];         /* "bfloat16" ... ("" when absent) */
} hf_config;

/* Parses config.json text (len bytes, need not be NUL-terminated). name is used as the
 * prefix of messages ("config.json" or its path). Checks types, requires hidden_size,
 * num_hidden_layers, num_attention_heads and vocab_size, and that the head counts divide. */
int hf_config_parse(const char *json, size_t len, const char *name, hf_config *out,
		    os_error *err);

/* tokenizer.json: the token table in id order, merges, special tokens. Opaque: ids are
 * dense 0..n_tokens-1 (a gap is an error "tokenizer.json: no token with id 17"). */
typedef struct hf_tokenizer hf_tokenizer;

enum hf_tokenizer_model { HF_TOK_BPE, HF_TOK_UNIGRAM, HF_TOK_WORDPIECE, HF_TOK_WORDLEVEL };

/* Parses tokenizer.json text; model.vocab plus added_tokens (an added token whose id is in
 * the vocab replaces that entry and marks it special when "special": true). */
int hf_tokenizer_parse(hf_tokenizer **out, const char *json, size_t len, const char *name,
		       os_error *err);
void hf_tokenizer_free(hf_tokenizer *t);

enum hf_tokenizer_model hf_tokenizer_model_type(const hf_tokenizer *t);
/* "BPE", "Unigram", "WordPiece", "WordLevel". */
const char *hf_tokenizer_model_name(const hf_tokenizer *t);
/* true when the pre-tokenizer or decoder is ByteLevel (GPT-2 byte-to-unicode tokens). */
bool hf_tokenizer_byte_level(const hf_tokenizer *t);
/* model.byte_fallback (SentencePiece-style "<0x0A>" tokens). */
bool hf_tokenizer_byte_fallback(const hf_tokenizer *t);
size_t hf_tokenizer_n_tokens(const hf_tokenizer *t);
/* Token string of id (UTF-8, NUL-terminated; borrowed); NULL when id is out of range. */
const char *hf_tokenizer_token(const hf_tokenizer *t, size_t id);
/* Unigram log-probability of id (0 for other models). */
float hf_tokenizer_score(const hf_tokenizer *t, size_t id);
bool hf_tokenizer_is_special(const hf_tokenizer *t, size_t id);
/* Id of an exact token string, -1 when absent. O(1) expected. */
long hf_tokenizer_find(const hf_tokenizer *t, const char *token);
/* BPE merges in rank order (rank 0 first); left/right borrowed. */
size_t hf_tokenizer_n_merges(const hf_tokenizer *t);
void hf_tokenizer_merge(const hf_tokenizer *t, size_t rank, const char **left, const char **right);
/* The vocabulary hash: sha256 over every token string in id order, each followed by one
 * 0x00 byte, as 64 lower-case hex digits + NUL. Same tokens, same hash, whatever the source. */
void hf_tokenizer_vocab_hash(const hf_tokenizer *t, char out_hex[65]);

/* A model folder. */
typedef struct hf_model hf_model;

/* Opens dir: config.json is required ("'dir' has no config.json; is this a Hugging Face
 * model folder?"), tokenizer.json is read when present, the weights are the folder's
 * safetensors set (required), the license comes from README.md's YAML front matter. */
int hf_model_open(hf_model **out, const char *dir, os_error *err);
void hf_model_close(hf_model *m);

const char *hf_model_dir(const hf_model *m);
const hf_config *hf_model_config(const hf_model *m);
/* NULL when the folder has no tokenizer.json. */
const hf_tokenizer *hf_model_tokenizer(const hf_model *m);
const safetensors_set *hf_model_weights(const hf_model *m);
/* "apache-2.0" ...; "" when unknown. */
const char *hf_model_license(const hf_model *m);

/* The license: value of a README.md's YAML front matter (text between leading "---" lines),
 * unquoted, into out (cap bytes). Returns false when there is none. */
bool hf_readme_license(const char *text, size_t len, char *out, size_t cap);

#endif
