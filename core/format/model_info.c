/* model_info.c: fills a model_info from a GGUF file (metadata keys + tensor table) or a
 * Hugging Face folder (config.json + tokenizer.json + safetensors headers). */
#include "model_info.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "hf_model.h"
#include "safetensors.h"
#include "sha256.h"

/* The last path component without a trailing slash and without suffix (if it ends so). */
static void base_name(const char *path, const char *suffix, char *out, size_t cap)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	size_t b = n;
	while (b > 0 && path[b - 1] != '/')
		b--;
	size_t len = n - b, sl = suffix ? strlen(suffix) : 0;
	if (sl && len > sl && memcmp(path + n - sl, suffix, sl) == 0)
		len -= sl;
	snprintf(out, cap, "%.*s", (int)len, path + b);
}

/* --- GGUF ------------------------------------------------------------------------------ */

/* Optional u32 key "<arch>.<suffix>": absent leaves *out alone; a wrong type is an error. */
static int gguf_arch_u32(const gguf_file *f, const char *arch, const char *suffix, uint32_t *out,
			 os_error *err)
{
	char key[160];
	snprintf(key, sizeof key, "%s.%s", arch, suffix);
	os_error e2 = {0};
	int rc = gguf_get_u32(f, key, out, &e2);
	if (rc == OS_ENOTFOUND)
		return OS_OK;
	if (rc && err)
		*err = e2;
	return rc;
}

static void gguf_copy_str(const gguf_file *f, const char *key, char *out, size_t cap)
{
	const char *s;
	size_t len;
	if (gguf_get_str(f, key, &s, &len, NULL) == OS_OK)
		snprintf(out, cap, "%.*s", (int)(len > 4096 ? 4096 : len), s);
}

static int info_from_gguf(const char *path, model_info *out, os_error *err)
{
	gguf_file *f = NULL;
	int rc = gguf_open(&f, path, err);
	if (rc)
		return rc;
	char arch[64] = "";
	gguf_copy_str(f, "general.architecture", arch, sizeof arch);
	snprintf(out->architecture, sizeof out->architecture, "%s", arch);
	gguf_copy_str(f, "general.name", out->name_hint, sizeof out->name_hint);
	if (!out->name_hint[0])
		base_name(path, ".gguf", out->name_hint, sizeof out->name_hint);
	gguf_copy_str(f, "general.license", out->license, sizeof out->license);
	snprintf(out->format, sizeof out->format, "gguf");
	out->file_size = gguf_file_size(f);
	uint32_t ctx = 0;
	if (arch[0] &&
	    ((rc = gguf_arch_u32(f, arch, "block_count", &out->n_layers, err)) ||
	     (rc = gguf_arch_u32(f, arch, "embedding_length", &out->hidden_size, err)) ||
	     (rc = gguf_arch_u32(f, arch, "attention.head_count", &out->n_heads, err)) ||
	     (rc = gguf_arch_u32(f, arch, "attention.head_count_kv", &out->n_kv_heads, err)) ||
	     (rc = gguf_arch_u32(f, arch, "context_length", &ctx, err)) ||
	     (rc = gguf_arch_u32(f, arch, "feed_forward_length", &out->ffn_size, err)) ||
	     (rc = gguf_arch_u32(f, arch, "vocab_size", &out->vocab_size, err))))
		goto fail;
	out->context_length = ctx;
	if (!out->n_kv_heads)
		out->n_kv_heads = out->n_heads;
	/* tokenizer */
	char tmodel[32] = "";
	gguf_copy_str(f, "tokenizer.ggml.model", tmodel, sizeof tmodel);
	if (tmodel[0]) {
		const char *kind = strcmp(tmodel, "gpt2") == 0    ? "gpt2-bpe"
				   : strcmp(tmodel, "llama") == 0 ? "llama-spm"
				   : strcmp(tmodel, "bert") == 0  ? "bert-wordpiece"
				   : strcmp(tmodel, "t5") == 0    ? "t5-unigram"
								  : NULL;
		if (kind)
			snprintf(out->tokenizer_kind, sizeof out->tokenizer_kind, "%s", kind);
		else
			snprintf(out->tokenizer_kind, sizeof out->tokenizer_kind, "gguf-%.26s", tmodel);
	}
	enum gguf_type et;
	size_t n_tok = 0;
	const void *unused;
	if (gguf_get_arr(f, "tokenizer.ggml.tokens", &et, &n_tok, &unused, NULL) == OS_OK) {
		if (et != GGUF_TYPE_STRING) {
			rc = os_error_set(err, OS_EFORMAT,
					  "'%s': tokenizer.ggml.tokens is an array of type %d, expected strings",
					  path, (int)et);
			goto fail;
		}
		sha256_ctx c;
		sha256_init(&c);
		for (size_t i = 0; i < n_tok; i++) {
			const char *s;
			size_t len;
			if ((rc = gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &s, &len, err)))
				goto fail;
			sha256_update(&c, s, len);
			sha256_update(&c, "", 1);
		}
		uint8_t d[SHA256_DIGEST_BYTES];
		sha256_final(&c, d);
		sha256_to_hex(d, out->vocab_hash);
		if (n_tok > UINT32_MAX) {
			rc = os_error_set(err, OS_EFORMAT, "'%s': tokenizer.ggml.tokens has %zu entries", path, n_tok);
			goto fail;
		}
		out->vocab_size = (uint32_t)n_tok;
	}
	/* parameters and precision: elements per type over the 2-D weights */
	enum { N_TYPE_BINS = OPTSTUDIO_TYPE_U8 + 1 }; /* ggml's types and optstudio's */
	_Static_assert(N_TYPE_BINS <= 2048, "type bins on the stack");
	uint64_t by_type[N_TYPE_BINS] = {0};
	for (size_t i = 0; i < gguf_n_tensors(f); i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		/* scales and zero points of optstudio's quantized matrices are not parameters */
		size_t nl = strlen(t->name);
		if ((nl > 6 && strcmp(t->name + nl - 6, ".scale") == 0) ||
		    (nl > 5 && strcmp(t->name + nl - 5, ".zero") == 0))
			continue;
		out->n_params += t->n_elements;
		if (t->n_dims == 2 && t->type < N_TYPE_BINS)
			by_type[t->type] += t->n_elements;
	}
	int best = -1;
	for (int k = 0; k < N_TYPE_BINS; k++)
		if (by_type[k] && (best < 0 || by_type[k] > by_type[best]))
			best = k;
	if (best >= 0)
		snprintf(out->precision, sizeof out->precision, "%s", ggml_type_name((uint32_t)best));
	rc = OS_OK;
fail:
	gguf_close(f);
	return rc;
}

/* --- safetensors / Hugging Face -------------------------------------------------------- */

/* n_params and precision over a set of tensors given by an accessor. */
static void tensor_stats(const safetensors_tensor *(*at)(const void *, size_t), const void *ctx,
			 size_t n, model_info *out)
{
	uint64_t by_type[ST_N_DTYPES] = {0};
	for (size_t i = 0; i < n; i++) {
		const safetensors_tensor *t = at(ctx, i);
		out->n_params += t->n_elements;
		if (t->n_dims == 2)
			by_type[t->dtype] += t->n_elements;
	}
	int best = -1;
	for (int k = 0; k < ST_N_DTYPES; k++)
		if (by_type[k] && (best < 0 || by_type[k] > by_type[best]))
			best = k;
	if (best >= 0)
		snprintf(out->precision, sizeof out->precision, "%s", st_dtype_name((enum st_dtype)best));
}

static const safetensors_tensor *set_at(const void *ctx, size_t i)
{
	return safetensors_set_tensor_at(ctx, i);
}

static const safetensors_tensor *file_at(const void *ctx, size_t i)
{
	return safetensors_tensor_at(ctx, i);
}

/* Sum of the sizes of the regular files directly in dir (bytes). */
static uint64_t dir_size(const char *dir)
{
	uint64_t total = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(dir) + strlen(de->d_name) + 2;
		char *p = malloc(n);
		if (!p)
			break;
		snprintf(p, n, "%s/%s", dir, de->d_name);
		struct stat st;
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
		free(p);
	}
	closedir(d);
	return total;
}

static const char *hf_tokenizer_kind(const hf_tokenizer *t)
{
	switch (hf_tokenizer_model_type(t)) {
	case HF_TOK_BPE:
		return hf_tokenizer_byte_level(t) ? "gpt2-bpe"
		       : hf_tokenizer_byte_fallback(t) ? "llama-spm" : "hf-bpe";
	case HF_TOK_UNIGRAM:
		return "hf-unigram";
	case HF_TOK_WORDPIECE:
		return "bert-wordpiece";
	case HF_TOK_WORDLEVEL:
		return "hf-wordlevel";
	}
	return "hf";
}

static int info_from_hf(const char *dir, model_info *out, os_error *err)
{
	hf_model *m = NULL;
	int rc = hf_model_open(&m, dir, err);
	if (rc)
		return rc;
	const hf_config *c = hf_model_config(m);
	snprintf(out->architecture, sizeof out->architecture, "%.63s",
		 c->model_type[0] ? c->model_type : c->architecture);
	base_name(dir, NULL, out->name_hint, sizeof out->name_hint);
	out->context_length = c->max_position_embeddings;
	/* hf_config_parse bounds every count to int32 */
	out->n_layers = (uint32_t)c->n_layers;
	out->n_heads = (uint32_t)c->n_heads;
	out->n_kv_heads = (uint32_t)c->n_kv_heads;
	out->hidden_size = (uint32_t)c->hidden_size;
	out->ffn_size = (uint32_t)c->intermediate_size;
	out->vocab_size = (uint32_t)c->vocab_size;
	const hf_tokenizer *t = hf_model_tokenizer(m);
	if (t) {
		snprintf(out->tokenizer_kind, sizeof out->tokenizer_kind, "%s", hf_tokenizer_kind(t));
		hf_tokenizer_vocab_hash(t, out->vocab_hash);
	}
	const safetensors_set *w = hf_model_weights(m);
	tensor_stats(set_at, w, safetensors_set_n_tensors(w), out);
	snprintf(out->license, sizeof out->license, "%s", hf_model_license(m));
	snprintf(out->format, sizeof out->format, "safetensors");
	out->file_size = dir_size(dir);
	hf_model_close(m);
	return OS_OK;
}

/* A lone .safetensors file with no config.json beside it: tensors only. */
static int info_from_safetensors(const char *path, model_info *out, os_error *err)
{
	safetensors_file *f = NULL;
	int rc = safetensors_open(&f, path, err);
	if (rc)
		return rc;
	base_name(path, ".safetensors", out->name_hint, sizeof out->name_hint);
	tensor_stats(file_at, f, safetensors_n_tensors(f), out);
	snprintf(out->format, sizeof out->format, "safetensors");
	out->file_size = safetensors_file_size(f);
	safetensors_close(f);
	return OS_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

int model_info_read(const char *path, model_info *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	struct stat st;
	if (stat(path, &st) != 0)
		return os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO, "cannot open model '%s': %s",
				    path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return info_from_hf(path, out, err);
	if (!S_ISREG(st.st_mode))
		return os_error_set(err, OS_EUSAGE, "cannot open model '%s': not a file or folder", path);
	uint8_t magic[4] = {0};
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return os_error_set(err, OS_EIO, "cannot open model '%s': %s", path, strerror(errno));
	size_t got = fread(magic, 1, sizeof magic, fp);
	fclose(fp);
	if (got == 4 && memcmp(magic, "GGUF", 4) == 0)
		return info_from_gguf(path, out, err);
	if (ends_with(path, ".safetensors")) {
		/* inside a model folder, describe the folder */
		char *dir = strdup(path);
		if (!dir)
			return os_error_set(err, OS_ENOMEM, "out of memory");
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		const char *d = slash ? (dir[0] ? dir : "/") : ".";
		size_t n = strlen(d) + sizeof "/config.json";
		char *cfg = malloc(n);
		int rc;
		if (!cfg) {
			rc = os_error_set(err, OS_ENOMEM, "out of memory");
		} else {
			snprintf(cfg, n, "%s/config.json", d);
			rc = stat(cfg, &st) == 0 ? info_from_hf(d, out, err)
						 : info_from_safetensors(path, out, err);
		}
		free(cfg);
		free(dir);
		return rc;
	}
	uint32_t m = (uint32_t)magic[0] | (uint32_t)magic[1] << 8 | (uint32_t)magic[2] << 16 |
		     (uint32_t)magic[3] << 24;
	return os_error_set(err, OS_EFORMAT,
			    "cannot open model '%s': bad magic 0x%08x (expected GGUF, a .safetensors "
			    "file or a Hugging Face model folder)",
			    path, m);
}
