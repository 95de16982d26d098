/* make_hf_fixture.c: writes a tiny Hugging Face llama folder (config.json, tokenizer.json with
 * the 256 GPT-2 byte tokens + merges + specials, README.md, random F32/BF16 safetensors).
 * Usage: make_hf_fixture DIR [--seed S] [--shards N] [--f32] [--merges-pairs]
 * Tests #define HF_FIXTURE_NO_MAIN and #include this file to reuse the writer. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/errors.h"
#include "core/numerics.h"

/* The fixture's shape: small, awkward where it may be (vocab 267, ffn 176). */
#define FIX_HIDDEN 64
#define FIX_FFN 176
#define FIX_LAYERS 2
#define FIX_HEADS 4
#define FIX_KV_HEADS 2
#define FIX_CTX 512
#define FIX_N_SPECIAL 3
#define FIX_N_MERGES 8
#define FIX_VOCAB (FIX_N_SPECIAL + 256 + FIX_N_MERGES)

typedef struct hf_fixture_opts {
	uint64_t seed;
	int n_shards;          /* 1: model.safetensors; more: shards + model.safetensors.index.json */
	bool all_f32;          /* every tensor F32 (else matrices BF16, norms F32) */
	bool merges_as_pairs;  /* merges as [["a","b"], ...] instead of ["a b", ...] */
} hf_fixture_opts;

/* The vocabulary in id order: specials, bytes 0..255 (id 3 + byte), merge results. */
typedef struct hf_fixture_vocab {
	char tokens[FIX_VOCAB][16];      /* UTF-8, NUL-terminated */
	char merges[FIX_N_MERGES][2][16];
} hf_fixture_vocab;

static const char *const fix_specials[FIX_N_SPECIAL] = {"<|endoftext|>", "<|im_start|>",
							"<|im_end|>"};

/* GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100.. */
static unsigned fix_byte_codepoint(unsigned b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
		return b;
	unsigned n = 0;
	for (unsigned x = 0; x < b; x++)
		if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
			n++;
	return 256 + n;
}

static void fix_utf8(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else { /* every code point here is < 0x800 */
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = 0;
	}
}

static void hf_fixture_vocab_build(hf_fixture_vocab *v)
{
	static const char *const m[FIX_N_MERGES][2] = {
		{"Ġ", "t"}, {"h", "e"}, {"i", "n"}, {"Ġt", "he"},
		{"e", "r"}, {"o", "n"}, {"Ġ", "a"}, {"r", "e"},
	};
	memset(v, 0, sizeof *v);
	for (int i = 0; i < FIX_N_SPECIAL; i++)
		snprintf(v->tokens[i], sizeof v->tokens[i], "%s", fix_specials[i]);
	for (unsigned b = 0; b < 256; b++)
		fix_utf8(fix_byte_codepoint(b), v->tokens[FIX_N_SPECIAL + b]);
	for (int i = 0; i < FIX_N_MERGES; i++) {
		snprintf(v->merges[i][0], 16, "%s", m[i][0]);
		snprintf(v->merges[i][1], 16, "%s", m[i][1]);
		snprintf(v->tokens[FIX_N_SPECIAL + 256 + i], 16, "%s%s", m[i][0], m[i][1]);
	}
}

static uint64_t fix_rand(uint64_t *s)
{
	uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static float fix_randf(uint64_t *s) /* uniform in [-1, 1) */
{
	return (float)((double)(fix_rand(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static int fix_write_file(const char *path, const void *data, size_t n, os_error *err)
{
	FILE *fp = fopen(path, "wb");
	if (!fp)
		return os_error_set(err, OS_EIO, "cannot create '%s': %s", path, strerror(errno));
	bool ok = fwrite(data, 1, n, fp) == n;
	ok = (fclose(fp) == 0) && ok;
	return ok ? OS_OK : os_error_set(err, OS_EIO, "cannot write '%s': %s", path, strerror(errno));
}

static int fix_write_json(const char *dir, const char *name, cJSON *doc, os_error *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	char *text = cJSON_Print(doc);
	if (!text)
		return os_error_set(err, OS_ENOMEM, "out of memory printing %s", name);
	int rc = fix_write_file(path, text, strlen(text), err);
	free(text);
	return rc;
}

/* One tensor of the fixture: name, shape, dtype and bytes (owned). */
typedef struct fix_tensor {
	char name[96];
	uint64_t shape[2];
	int n_dims;
	bool bf16;
	size_t n_bytes;
	uint8_t *data;
} fix_tensor;

static int fix_add(fix_tensor *t, size_t *n, const char *name, uint64_t rows, uint64_t cols,
		   bool is_norm, const hf_fixture_opts *o, uint64_t *rng)
{
	fix_tensor *x = &t[(*n)++];
	snprintf(x->name, sizeof x->name, "%s", name);
	x->n_dims = cols ? 2 : 1;
	x->shape[0] = rows;
	x->shape[1] = cols;
	x->bf16 = !is_norm && !o->all_f32;
	size_t ne = (size_t)rows * (cols ? cols : 1);
	x->n_bytes = ne * (x->bf16 ? 2 : 4);
	x->data = malloc(x->n_bytes);
	if (!x->data)
		return OS_ENOMEM;
	for (size_t i = 0; i < ne; i++) {
		float v = is_norm ? 1.0f + 0.1f * fix_randf(rng) : 0.05f * fix_randf(rng);
		if (x->bf16) {
			uint16_t h = num_f32_to_bf16(v);
			memcpy(x->data + 2 * i, &h, 2);
		} else {
			memcpy(x->data + 4 * i, &v, 4);
		}
	}
	return OS_OK;
}

/* Writes tensors t[0, n) as one safetensors file: u64 header length, JSON header padded
 * with spaces to a multiple of 8, then the data. */
static int fix_write_safetensors(const char *path, const fix_tensor *t, size_t n, os_error *err)
{
	int rc = OS_OK;
	char *hdr = NULL;
	uint8_t *buf = NULL;
	cJSON *root = cJSON_CreateObject();
	cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
	cJSON_AddStringToObject(meta, "format", "pt");
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
		cJSON_AddStringToObject(e, "dtype", t[i].bf16 ? "BF16" : "F32");
		cJSON *sh = cJSON_AddArrayToObject(e, "shape");
		for (int d = 0; d < t[i].n_dims; d++)
			cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
		cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t[i].n_bytes)));
		off += t[i].n_bytes;
	}
	hdr = cJSON_PrintUnformatted(root);
	if (!hdr) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory writing '%s'", path);
		goto fail;
	}
	size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
	size_t total = 8 + padded + (size_t)off;
	buf = malloc(total);
	if (!buf) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory writing '%s'", path);
		goto fail;
	}
	for (int b = 0; b < 8; b++)
		buf[b] = (uint8_t)((uint64_t)padded >> (8 * b));
	memcpy(buf + 8, hdr, hl);
	memset(buf + 8 + hl, ' ', padded - hl);
	size_t p = 8 + padded;
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + p, t[i].data, t[i].n_bytes);
		p += t[i].n_bytes;
	}
	rc = fix_write_file(path, buf, total, err);
fail:
	free(buf);
	free(hdr);
	cJSON_Delete(root);
	return rc;
}

static cJSON *fix_config(void)
{
	cJSON *c = cJSON_CreateObject();
	cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
	cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
	cJSON_AddStringToObject(c, "model_type", "llama");
	cJSON_AddNumberToObject(c, "hidden_size", FIX_HIDDEN);
	cJSON_AddNumberToObject(c, "intermediate_size", FIX_FFN);
	cJSON_AddNumberToObject(c, "num_hidden_layers", FIX_LAYERS);
	cJSON_AddNumberToObject(c, "num_attention_heads", FIX_HEADS);
	cJSON_AddNumberToObject(c, "num_key_value_heads", FIX_KV_HEADS);
	cJSON_AddNumberToObject(c, "max_position_embeddings", FIX_CTX);
	cJSON_AddNumberToObject(c, "vocab_size", FIX_VOCAB);
	cJSON_AddNumberToObject(c, "rope_theta", 10000.0);
	cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
	cJSON_AddBoolToObject(c, "tie_word_embeddings", 0);
	cJSON_AddNumberToObject(c, "bos_token_id", 1);
	cJSON_AddNumberToObject(c, "eos_token_id", 2);
	cJSON_AddStringToObject(c, "torch_dtype", "bfloat16");
	cJSON_AddStringToObject(c, "hidden_act", "silu");
	return c;
}

static cJSON *fix_tokenizer(const hf_fixture_vocab *v, bool merges_as_pairs)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "version", "1.0");
	cJSON *added = cJSON_AddArrayToObject(r, "added_tokens");
	for (int i = 0; i < FIX_N_SPECIAL; i++) {
		cJSON *a = cJSON_CreateObject();
		cJSON_AddNumberToObject(a, "id", i);
		cJSON_AddStringToObject(a, "content", v->tokens[i]);
		cJSON_AddBoolToObject(a, "single_word", 0);
		cJSON_AddBoolToObject(a, "lstrip", 0);
		cJSON_AddBoolToObject(a, "rstrip", 0);
		cJSON_AddBoolToObject(a, "normalized", 0);
		cJSON_AddBoolToObject(a, "special", 1);
		cJSON_AddItemToArray(added, a);
	}
	cJSON_AddNullToObject(r, "normalizer");
	cJSON *pre = cJSON_AddObjectToObject(r, "pre_tokenizer");
	cJSON_AddStringToObject(pre, "type", "ByteLevel");
	cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
	cJSON_AddBoolToObject(pre, "trim_offsets", 1);
	cJSON_AddBoolToObject(pre, "use_regex", 1);
	cJSON *dec = cJSON_AddObjectToObject(r, "decoder");
	cJSON_AddStringToObject(dec, "type", "ByteLevel");
	cJSON *m = cJSON_AddObjectToObject(r, "model");
	cJSON_AddStringToObject(m, "type", "BPE");
	cJSON_AddBoolToObject(m, "byte_fallback", 0);
	cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
	for (int i = 0; i < FIX_VOCAB; i++)
		cJSON_AddNumberToObject(vocab, v->tokens[i], i);
	cJSON *merges = cJSON_AddArrayToObject(m, "merges");
	for (int i = 0; i < FIX_N_MERGES; i++) {
		if (merges_as_pairs) {
			const char *pair[2] = {v->merges[i][0], v->merges[i][1]};
			cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
		} else {
			char s[40];
			snprintf(s, sizeof s, "%s %s", v->merges[i][0], v->merges[i][1]);
			cJSON_AddItemToArray(merges, cJSON_CreateString(s));
		}
	}
	return r;
}

/* Writes the fixture folder dir (created if missing). Same options, same bytes. */
static int hf_fixture_write(const char *dir, const hf_fixture_opts *o, os_error *err)
{
	int rc = OS_OK;
	enum { MAX_T = 3 + 9 * FIX_LAYERS };
	fix_tensor t[MAX_T];
	size_t n = 0;
	uint64_t rng = o->seed ^ 0x5eedf1c5u;
	hf_fixture_vocab v;
	cJSON *cfg = NULL, *tok = NULL, *index = NULL;
	memset(t, 0, sizeof t);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return os_error_set(err, OS_EIO, "cannot create folder '%s': %s", dir, strerror(errno));
	hf_fixture_vocab_build(&v);
	if ((rc = fix_write_json(dir, "config.json", cfg = fix_config(), err)) ||
	    (rc = fix_write_json(dir, "tokenizer.json", tok = fix_tokenizer(&v, o->merges_as_pairs), err)))
		goto fail;
	char path[4096];
	snprintf(path, sizeof path, "%s/README.md", dir);
	const char readme[] = "---\nlicense: apache-2.0\nlanguage:\n- en\n---\n# tiny llama fixture\n";
	if ((rc = fix_write_file(path, readme, sizeof readme - 1, err)))
		goto fail;
	const uint64_t hd = FIX_HIDDEN / FIX_HEADS;
	rc = fix_add(t, &n, "model.embed_tokens.weight", FIX_VOCAB, FIX_HIDDEN, false, o, &rng);
	for (int l = 0; l < FIX_LAYERS && !rc; l++) {
		static const struct {
			const char *name;
			int rows, cols; /* 0 hidden, 1 ffn, 2 q, 3 kv, -1 none */
		} L[] = {
			{"input_layernorm", 0, -1}, {"self_attn.q_proj", 2, 0}, {"self_attn.k_proj", 3, 0},
			{"self_attn.v_proj", 3, 0}, {"self_attn.o_proj", 0, 2}, {"post_attention_layernorm", 0, -1},
			{"mlp.gate_proj", 1, 0},    {"mlp.up_proj", 1, 0},      {"mlp.down_proj", 0, 1},
		};
		const uint64_t dims[4] = {FIX_HIDDEN, FIX_FFN, FIX_HEADS * hd, FIX_KV_HEADS * hd};
		for (size_t k = 0; k < sizeof L / sizeof *L && !rc; k++) {
			char name[96];
			snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, L[k].name);
			rc = fix_add(t, &n, name, dims[L[k].rows], L[k].cols < 0 ? 0 : dims[L[k].cols],
				     L[k].cols < 0, o, &rng);
		}
	}
	if (!rc)
		rc = fix_add(t, &n, "model.norm.weight", FIX_HIDDEN, 0, true, o, &rng);
	if (!rc)
		rc = fix_add(t, &n, "lm_head.weight", FIX_VOCAB, FIX_HIDDEN, false, o, &rng);
	if (rc) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory building tensors");
		goto fail;
	}
	int shards = o->n_shards < 1 ? 1 : o->n_shards > (int)n ? (int)n : o->n_shards;
	if (shards == 1) {
		snprintf(path, sizeof path, "%s/model.safetensors", dir);
		rc = fix_write_safetensors(path, t, n, err);
		goto fail;
	}
	index = cJSON_CreateObject();
	cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
	cJSON *wm = cJSON_AddObjectToObject(index, "weight_map");
	uint64_t total = 0;
	for (int s = 0; s < shards; s++) {
		size_t lo = n * (size_t)s / (size_t)shards, hi = n * (size_t)(s + 1) / (size_t)shards;
		char fname[64];
		snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, shards);
		snprintf(path, sizeof path, "%s/%s", dir, fname);
		if ((rc = fix_write_safetensors(path, t + lo, hi - lo, err)))
			goto fail;
		for (size_t i = lo; i < hi; i++) {
			cJSON_AddStringToObject(wm, t[i].name, fname);
			total += t[i].n_bytes;
		}
	}
	cJSON_AddNumberToObject(meta, "total_size", (double)total);
	rc = fix_write_json(dir, "model.safetensors.index.json", index, err);
fail:
	for (size_t i = 0; i < n; i++)
		free(t[i].data);
	cJSON_Delete(cfg);
	cJSON_Delete(tok);
	cJSON_Delete(index);
	return rc;
}

#ifndef HF_FIXTURE_NO_MAIN
int main(int argc, char **argv)
{
	hf_fixture_opts o = {.seed = 1, .n_shards = 1};
	const char *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			o.seed = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc)
			o.n_shards = atoi(argv[++i]);
		else if (strcmp(argv[i], "--f32") == 0)
			o.all_f32 = true;
		else if (strcmp(argv[i], "--merges-pairs") == 0)
			o.merges_as_pairs = true;
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else {
			dir = NULL;
			break;
		}
	}
	if (!dir) {
		fprintf(stderr, "usage: make_hf_fixture DIR [--seed S] [--shards N] [--f32] [--merges-pairs]\n");
		return 2;
	}
	os_error err = {0};
	if (hf_fixture_write(dir, &o, &err)) {
		fprintf(stderr, "make_hf_fixture: %s\n", os_error_text(&err));
		return 1;
	}
	return 0;
}
#endif
