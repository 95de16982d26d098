/* model.c: llama config from GGUF metadata, and weights dequantized into one 64-byte aligned
 * arena in the run-time format, each tensor's shape checked against the config. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bigalloc.h"
#include "../numerics.h"

#define ALIGN 64

/* One tensor of the model by its GGUF name: a matrix or an f32 vector. */
typedef struct model_entry {
	char name[64];
	be_weight *mat;
	float **vec;
	size_t vec_len;
	void *own[3];         /* buffers of a matrix replaced by model_set_matrix (else NULL) */
	size_t own_bytes;
} model_entry;

struct model {
	model_config cfg;
	model_weights w;
	int kv_fmt;           /* enum be_kvfmt, from optstudio.kv_type (default F32) */
	void *arena;          /* every weight loaded from the file lives here */
	size_t arena_bytes;
	size_t n_params;
	model_entry *ents;    /* [n_ents], file order; the tied output head is not listed */
	size_t n_ents;
};

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* --- config ------------------------------------------------------------------------------ */

/* Reads "<arch>.<name>" as a size; *out keeps def when absent (required = 0). */
static int get_size(const gguf_file *f, const char *arch, const char *name, size_t *out,
		    int required, size_t max, os_error *err)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", arch, name);
	uint64_t v;
	os_error e2;
	int rc = gguf_get_u64(f, key, &v, &e2);
	if (rc == OS_ENOTFOUND) {
		if (required)
			return os_error_set(err, OS_EFORMAT, "'%s': missing metadata key %s",
					    gguf_path(f), key);
		return OS_OK;
	}
	if (rc)
		return os_error_set(err, rc, "'%s': %s", gguf_path(f), e2.msg);
	if (v == 0 || v > max)
		return os_error_set(err, OS_EFORMAT, "'%s': %s = %llu (expected 1..%zu)",
				    gguf_path(f), key, (unsigned long long)v, max);
	*out = (size_t)v;
	return OS_OK;
}

static int get_float(const gguf_file *f, const char *arch, const char *name, float *out,
		     os_error *err)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", arch, name);
	float v;
	os_error e2;
	int rc = gguf_get_f32(f, key, &v, &e2);
	if (rc == OS_ENOTFOUND)
		return OS_OK;
	if (rc)
		return os_error_set(err, rc, "'%s': %s", gguf_path(f), e2.msg);
	if (!(v > 0.0f) || v > 1e30f)
		return os_error_set(err, OS_EFORMAT, "'%s': %s = %g (expected a positive number)",
				    gguf_path(f), key, (double)v);
	*out = v;
	return OS_OK;
}

static int read_config(const gguf_file *f, model_config *c, os_error *err)
{
	const char *path = gguf_path(f);
	const char *s;
	size_t len;
	os_error e2;
	int rc = gguf_get_str(f, "general.architecture", &s, &len, &e2);
	if (rc == OS_ENOTFOUND)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': missing metadata key general.architecture", path);
	if (rc)
		return os_error_set(err, rc, "'%s': %s", path, e2.msg);
	if (len >= sizeof c->arch)
		len = sizeof c->arch - 1;
	memcpy(c->arch, s, len);
	c->arch[len] = '\0';
	if (strcmp(c->arch, "llama") != 0)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': architecture '%s' is not supported (only llama-family "
				    "models with general.architecture = llama)",
				    path, c->arch);
	const char *a = c->arch;
	const size_t big = (size_t)1 << 20;
	if ((rc = get_size(f, a, "block_count", &c->n_layers, 1, 4096, err)) ||
	    (rc = get_size(f, a, "embedding_length", &c->dim, 1, big, err)) ||
	    (rc = get_size(f, a, "attention.head_count", &c->n_heads, 1, 65536, err)) ||
	    (rc = get_size(f, a, "feed_forward_length", &c->ffn_dim, 1, big, err)))
		return rc;
	c->n_kv_heads = c->n_heads;
	c->head_dim = c->dim / c->n_heads;
	c->ctx = 2048;
	c->vocab = 0;
	c->rope_base = 10000.0f;
	c->rms_eps = 1e-5f;
	size_t rope_dim = 0, v_len = 0;
	if ((rc = get_size(f, a, "attention.head_count_kv", &c->n_kv_heads, 0, 65536, err)) ||
	    (rc = get_size(f, a, "attention.key_length", &c->head_dim, 0, 65536, err)) ||
	    (rc = get_size(f, a, "attention.value_length", &v_len, 0, 65536, err)) ||
	    (rc = get_size(f, a, "rope.dimension_count", &rope_dim, 0, 65536, err)) ||
	    (rc = get_size(f, a, "context_length", &c->ctx, 0, (size_t)1 << 24, err)) ||
	    (rc = get_size(f, a, "vocab_size", &c->vocab, 0, (size_t)1 << 24, err)) ||
	    (rc = get_float(f, a, "rope.freq_base", &c->rope_base, err)) ||
	    (rc = get_float(f, a, "attention.layer_norm_rms_epsilon", &c->rms_eps, err)))
		return rc;
	if (c->n_heads % c->n_kv_heads != 0)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': %s.attention.head_count_kv = %zu does not divide "
				    "head_count = %zu",
				    path, a, c->n_kv_heads, c->n_heads);
	if (c->head_dim == 0 || c->head_dim % 2 != 0)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': head dimension %zu (embedding_length %zu / head_count "
				    "%zu) must be even and non-zero",
				    path, c->head_dim, c->dim, c->n_heads);
	if (v_len && v_len != c->head_dim)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': %s.attention.value_length = %zu differs from key_length "
				    "%zu (not supported)",
				    path, a, v_len, c->head_dim);
	if (rope_dim && rope_dim != c->head_dim)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': %s.rope.dimension_count = %zu differs from the head "
				    "dimension %zu (partial rotary embedding is not supported)",
				    path, a, rope_dim, c->head_dim);
	if (gguf_find_key(f, "llama.rope.scaling.type") >= 0) {
		const char *st;
		size_t stl;
		if (gguf_get_str(f, "llama.rope.scaling.type", &st, &stl, NULL) == OS_OK &&
		    !(stl == 4 && memcmp(st, "none", 4) == 0))
			return os_error_set(err, OS_EUNSUPPORTED,
					    "'%s': rope scaling '%.*s' is not supported yet", path,
					    (int)(stl > 32 ? 32 : stl), st);
	}
	if (gguf_find_tensor(f, "rope_freqs.weight"))
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': llama3-style rope scaling (tensor rope_freqs.weight) is "
				    "not supported yet",
				    path);
	const gguf_tensor *te = gguf_find_tensor(f, "token_embd.weight");
	if (!te)
		return os_error_set(err, OS_EFORMAT, "'%s': missing tensor token_embd.weight",
				    path);
	if (c->vocab == 0) {
		if (te->n_dims != 2 || te->ne[1] == 0 || te->ne[1] > ((uint64_t)1 << 24))
			return os_error_set(err, OS_EFORMAT,
					    "'%s': tensor token_embd.weight has %u dims (expected 2: "
					    "[embedding_length, vocab])",
					    path, te->n_dims);
		c->vocab = (size_t)te->ne[1];
	}
	c->tied_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
	return OS_OK;
}

/* --- weights ----------------------------------------------------------------------------- */

/* One tensor to load: its name, the shape the config implies (rows, cols; rows = 1 for a
 * vector) and where it goes. */
typedef struct load_item {
	char name[64];
	size_t rows, cols;
	bool vector;          /* f32 norm weights, 1-D */
	float **vec;          /* destination of a vector */
	be_weight *mat;       /* destination of a matrix */
	size_t offset;        /* in the arena: codes (or floats), then scales, then zeros */
	size_t off_scales, off_zeros;
	const gguf_tensor *t;
	int qfmt;             /* enum be_wfmt of a quantized tensor in the file, else -1 */
	int fmt;              /* enum be_wfmt: the run-time format of a matrix */
	size_t group;         /* INT4 group size */
	const gguf_tensor *scale_t, *zero_t;
} load_item;

/* The run-time format of optstudio's code types (gguf.h), or -1 for any other type. */
static int qtype_fmt(uint32_t type)
{
	switch (type) {
	case OPTSTUDIO_TYPE_FP8_E4M3: return BE_WFMT_FP8;
	case OPTSTUDIO_TYPE_FP8_E4M3_A8: return BE_WFMT_FP8_W8A8;
	case OPTSTUDIO_TYPE_I8_ROW: return BE_WFMT_I8;
	case OPTSTUDIO_TYPE_U4: return BE_WFMT_I4;
	default: return -1;
	}
}

/* Finds companion tensor "<it->name><suffix>" of type type and shape [ne0, it->rows]
 * (ne0 = 0: any ne0 dividing it->cols into 32, 64 or 128 element groups). */
static int find_companion(const gguf_file *f, const load_item *it, const char *suffix,
			  uint32_t type, uint64_t ne0, const gguf_tensor **out, os_error *err)
{
	char nm[96];
	snprintf(nm, sizeof nm, "%s%s", it->name, suffix);
	const gguf_tensor *t = gguf_find_tensor(f, nm);
	if (!t)
		return os_error_set(err, OS_EFORMAT, "'%s': tensor %s is %s but %s is missing",
				    gguf_path(f), it->name, ggml_type_name(it->t->type), nm);
	if (t->type != type || t->n_dims != 2 || t->ne[1] != it->rows || (ne0 && t->ne[0] != ne0))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor %s has type %s, %u dims [%llu, %llu] (expected %s "
				    "[%llu, %zu])",
				    gguf_path(f), nm, ggml_type_name(t->type), t->n_dims,
				    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				    ggml_type_name(type), (unsigned long long)ne0, it->rows);
	*out = t;
	return OS_OK;
}

/* For a quantized matrix: its companions, group size and format. */
static int check_quant(const gguf_file *f, load_item *it, os_error *err)
{
	int rc;
	it->qfmt = qtype_fmt(it->t->type);
	if (it->vector)
		return os_error_set(err, OS_EFORMAT, "'%s': tensor %s is %s (expected F32)",
				    gguf_path(f), it->name, ggml_type_name(it->t->type));
	if (it->qfmt != BE_WFMT_I4)
		return find_companion(f, it, ".scale", GGML_TYPE_F32, 1, &it->scale_t, err);
	if ((rc = find_companion(f, it, ".scale", GGML_TYPE_F32, 0, &it->scale_t, err)))
		return rc;
	uint64_t ng = it->scale_t->ne[0];
	size_t g = ng ? it->cols / (size_t)ng : 0;
	if (ng == 0 || g * ng != it->cols || (g != 32 && g != 64 && g != 128))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor %s.scale has %llu groups per row of %zu elements "
				    "(expected groups of 32, 64 or 128)",
				    gguf_path(f), it->name, (unsigned long long)ng, it->cols);
	it->group = g;
	return find_companion(f, it, ".zero", OPTSTUDIO_TYPE_U8, ng, &it->zero_t, err);
}

static int check_shape(const gguf_file *f, load_item *it, os_error *err)
{
	const gguf_tensor *t = gguf_find_tensor(f, it->name);
	if (!t)
		return os_error_set(err, OS_EFORMAT, "'%s': missing tensor %s", gguf_path(f),
				    it->name);
	bool ok;
	if (it->vector)
		ok = t->n_dims == 1 && t->ne[0] == it->cols;
	else
		ok = t->n_dims == 2 && t->ne[0] == it->cols && t->ne[1] == it->rows;
	if (!ok) {
		char got[96];
		if (t->n_dims == 1)
			snprintf(got, sizeof got, "[%llu]", (unsigned long long)t->ne[0]);
		else if (t->n_dims == 2)
			snprintf(got, sizeof got, "[%llu, %llu]", (unsigned long long)t->ne[0],
				 (unsigned long long)t->ne[1]);
		else
			snprintf(got, sizeof got, "%u dims [%llu, %llu, %llu, ...]", t->n_dims,
				 (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				 (unsigned long long)t->ne[2]);
		if (it->vector)
			return os_error_set(err, OS_EFORMAT,
					    "'%s': tensor %s has shape %s (expected [%zu])",
					    gguf_path(f), it->name, got, it->cols);
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor %s has shape %s (expected [%zu, %zu], GGUF order: "
				    "input dim first)",
				    gguf_path(f), it->name, got, it->cols, it->rows);
	}
	it->t = t;
	it->qfmt = -1;
	switch (t->type) {
	case GGML_TYPE_F32:
	case GGML_TYPE_F16:
	case GGML_TYPE_BF16:
	case GGML_TYPE_Q8_0:
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_Q4_1:
		break;
	case OPTSTUDIO_TYPE_FP8_E4M3:
	case OPTSTUDIO_TYPE_FP8_E4M3_A8:
	case OPTSTUDIO_TYPE_I8_ROW:
	case OPTSTUDIO_TYPE_U4:
		return check_quant(f, it, err);
	default:
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': tensor %s is of type %s (supported: F32, F16, BF16, "
				    "Q8_0, Q4_0, Q4_1 and optstudio's quantized types)",
				    gguf_path(f), it->name, ggml_type_name(t->type));
	}
	size_t be = ggml_type_block_elems(t->type);
	if (be == 0 || it->cols % be != 0)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor %s has rows of %zu elements, not a multiple of "
				    "the %s block (%zu)",
				    gguf_path(f), it->name, it->cols, ggml_type_name(t->type), be);
	return OS_OK;
}

/* Bytes of (codes, scales, zeros) of a matrix item in the run-time format fmt. */
static void item_sizes(const load_item *it, int fmt, size_t sz[3])
{
	be_weight w = {.fmt = fmt, .rows = it->rows, .cols = it->cols, .group = it->group};
	size_t n = it->rows * it->cols;
	sz[0] = fmt == BE_WFMT_I4 ? n / 2 : n * be_wfmt_elem_bytes(fmt);
	sz[2] = fmt == BE_WFMT_I4 ? n / it->group : 0;
	sz[1] = be_wfmt_quantized(fmt) ? be_weight_bytes(&w) - sz[0] - sz[2] : 0;
}

/* Copies a quantized tensor and its companions into the arena as they are (the file holds
 * the run-time layout), checking the codes the kernels assume: no E4M3 NaN codes, int8 in
 * [-127, 127], zero points in [0, 15], finite scales. */
static int load_quant(const gguf_file *f, const load_item *it, be_weight *w, os_error *err)
{
	size_t sz[3];
	item_sizes(it, it->qfmt, sz);
	const gguf_tensor *src[3] = {it->t, it->scale_t, it->zero_t};
	void *dst[3] = {w->data, w->scales, w->zeros};
	for (int i = 0; i < 3; i++) {
		if (!sz[i])
			continue;
		if (!src[i] || src[i]->n_bytes != sz[i])
			return os_error_set(err, OS_EFORMAT,
					    "'%s': tensor %s%s holds %zu bytes (expected %zu)",
					    gguf_path(f), it->name, i == 0 ? "" : i == 1 ? ".scale" : ".zero",
					    src[i] ? src[i]->n_bytes : 0, sz[i]);
		memcpy(dst[i], src[i]->data, sz[i]);
	}
	const uint8_t *c = w->data;
	if (it->qfmt == BE_WFMT_FP8 || it->qfmt == BE_WFMT_FP8_W8A8) {
		for (size_t i = 0; i < sz[0]; i++)
			if ((c[i] & 0x7f) == 0x7f)
				return os_error_set(err, OS_EFORMAT,
						    "'%s': tensor %s holds an E4M3 NaN code at element "
						    "%zu",
						    gguf_path(f), it->name, i);
	} else if (it->qfmt == BE_WFMT_I8) {
		for (size_t i = 0; i < sz[0]; i++)
			if (c[i] == 0x80)
				return os_error_set(err, OS_EFORMAT,
						    "'%s': tensor %s holds int8 code -128 at element %zu "
						    "(expected -127..127)",
						    gguf_path(f), it->name, i);
	} else {
		for (size_t i = 0; i < sz[2]; i++)
			if (w->zeros[i] > 15)
				return os_error_set(err, OS_EFORMAT,
						    "'%s': tensor %s.zero holds %u at %zu (expected "
						    "0..15)",
						    gguf_path(f), it->name, w->zeros[i], i);
	}
	for (size_t i = 0; i < sz[1] / sizeof(float); i++)
		if (!(w->scales[i] >= 0.0f && w->scales[i] < 1e30f))
			return os_error_set(err, OS_EFORMAT,
					    "'%s': tensor %s.scale[%zu] = %g (expected a finite scale "
					    ">= 0)",
					    gguf_path(f), it->name, i, (double)w->scales[i]);
	return OS_OK;
}

/* Dequantizes tensor it->t into dst in format fmt, a row at a time through row (cols f32). */
static int load_tensor(const gguf_file *f, const load_item *it, void *dst, int fmt,
		       float *row, os_error *err)
{
	const gguf_tensor *t = it->t;
	size_t row_bytes = it->cols / ggml_type_block_elems(t->type) * ggml_type_block_bytes(t->type);
	if (row_bytes * it->rows > t->n_bytes)
		return os_error_set(err, OS_EFORMAT, "'%s': tensor %s holds %zu bytes (expected %zu)",
				    gguf_path(f), it->name, t->n_bytes, row_bytes * it->rows);
	const uint8_t *src = t->data;
	for (size_t r = 0; r < it->rows; r++) {
		float *out = fmt == BE_WFMT_F32 ? (float *)dst + r * it->cols : row;
		os_error e2;
		int rc = gguf_dequantize(t->type, src + r * row_bytes, out, it->cols, &e2);
		if (rc)
			return os_error_set(err, rc, "'%s': tensor %s: %s", gguf_path(f), it->name,
					    e2.msg);
		if (fmt == BE_WFMT_BF16) {
			uint16_t *o = (uint16_t *)dst + r * it->cols;
			for (size_t c = 0; c < it->cols; c++)
				o[c] = num_f32_to_bf16(row[c]);
		}
	}
	return OS_OK;
}

/* Reads optstudio.kv_type ("f32", "bf16", "fp8", "int8"; absent: f32). */
static int read_kv_type(const gguf_file *f, int *out, os_error *err)
{
	const char *s;
	size_t len;
	*out = BE_KV_F32;
	int rc = gguf_get_str(f, "optstudio.kv_type", &s, &len, NULL);
	if (rc == OS_ENOTFOUND)
		return OS_OK;
	for (int k = 0; rc == OS_OK && k < BE_KV_COUNT; k++)
		if (strlen(be_kvfmt_name(k)) == len && memcmp(s, be_kvfmt_name(k), len) == 0) {
			*out = k;
			return OS_OK;
		}
	return os_error_set(err, OS_EFORMAT, "'%s': optstudio.kv_type is not one of f32, bf16, "
			    "fp8, int8", gguf_path(f));
}

int model_open_gguf(model **out, const gguf_file *f, const model_load_opts *opts,
		    os_error *err)
{
	*out = NULL;
	int fmt = opts ? opts->weight_format : BE_WFMT_F32;
	if (fmt != BE_WFMT_F32 && fmt != BE_WFMT_BF16)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "run-time weight format %d is not supported on load (F32, BF16)",
				    fmt);
	int rc;
	load_item *items = NULL;
	float *row = NULL;
	model *m = calloc(1, sizeof *m);
	if (!m)
		return os_error_set(err, OS_ENOMEM, "model: out of memory");
	if ((rc = read_config(f, &m->cfg, err)) || (rc = read_kv_type(f, &m->kv_fmt, err)))
		goto fail;
	const model_config *c = &m->cfg;
	m->w.layers = calloc(c->n_layers, sizeof *m->w.layers);
	size_t n_items = 3 + !c->tied_embeddings + 9 * c->n_layers;
	items = calloc(n_items, sizeof *items);
	m->ents = calloc(n_items, sizeof *m->ents);
	if (!m->w.layers || !items || !m->ents) {
		rc = os_error_set(err, OS_ENOMEM, "model: out of memory");
		goto fail;
	}

	/* The list of tensors and the shapes the config implies. */
	size_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
	size_t k = 0;
#define ADD_MAT(nm, w_, r_, c_)                                                           \
	do {                                                                              \
		load_item *it_ = &items[k++];                                             \
		snprintf(it_->name, sizeof it_->name, "%s", nm);                          \
		it_->rows = (r_), it_->cols = (c_), it_->mat = (w_);                      \
	} while (0)
#define ADD_VEC(nm, v_, n_)                                                               \
	do {                                                                              \
		load_item *it_ = &items[k++];                                             \
		snprintf(it_->name, sizeof it_->name, "%s", nm);                          \
		it_->rows = 1, it_->cols = (n_), it_->vec = (v_), it_->vector = true;     \
	} while (0)
	ADD_MAT("token_embd.weight", &m->w.token_embd, c->vocab, c->dim);
	for (size_t l = 0; l < c->n_layers; l++) {
		model_layer_weights *L = &m->w.layers[l];
		char nm[64];
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%zu.%s.weight", l, s), nm)
		ADD_VEC(NAME("attn_norm"), &L->attn_norm, c->dim);
		ADD_MAT(NAME("attn_q"), &L->wq, q_dim, c->dim);
		ADD_MAT(NAME("attn_k"), &L->wk, kv_dim, c->dim);
		ADD_MAT(NAME("attn_v"), &L->wv, kv_dim, c->dim);
		ADD_MAT(NAME("attn_output"), &L->wo, c->dim, q_dim);
		ADD_VEC(NAME("ffn_norm"), &L->ffn_norm, c->dim);
		ADD_MAT(NAME("ffn_gate"), &L->w_gate, c->ffn_dim, c->dim);
		ADD_MAT(NAME("ffn_up"), &L->w_up, c->ffn_dim, c->dim);
		ADD_MAT(NAME("ffn_down"), &L->w_down, c->dim, c->ffn_dim);
#undef NAME
	}
	ADD_VEC("output_norm.weight", &m->w.output_norm, c->dim);
	if (!c->tied_embeddings)
		ADD_MAT("output.weight", &m->w.output, c->vocab, c->dim);
#undef ADD_MAT
#undef ADD_VEC

	/* Check every shape before allocating, and lay the arena out: a float tensor in the
	 * run-time format fmt, a quantized one as the file has it (codes, scales, zeros). A
	 * quantized file (one with optstudio.recipe) chose each matrix's format: its F32 and
	 * BF16 matrices (the head, quantize.h) keep their file format too. */
	bool keep_float = gguf_find_key(f, "optstudio.recipe") >= 0;
	size_t off = 0, max_cols = 0;
	for (size_t i = 0; i < k; i++) {
		load_item *it = &items[i];
		if ((rc = check_shape(f, it, err)))
			goto fail;
		it->fmt = it->qfmt >= 0 ? it->qfmt : fmt;
		if (keep_float && it->t->type == GGML_TYPE_BF16)
			it->fmt = BE_WFMT_BF16;
		else if (keep_float && it->t->type == GGML_TYPE_F32)
			it->fmt = BE_WFMT_F32;
		size_t n = it->rows * it->cols, sz[3] = {n * sizeof(float), 0, 0};
		if (!it->vector)
			item_sizes(it, it->fmt, sz);
		it->offset = off;
		off += round_up(sz[0], ALIGN);
		it->off_scales = off;
		off += round_up(sz[1], ALIGN);
		it->off_zeros = off;
		off += round_up(sz[2], ALIGN);
		m->n_params += n;
		if (it->cols > max_cols)
			max_cols = it->cols;
	}
	m->arena_bytes = off;
	m->arena = big_alloc(off);
	row = malloc(max_cols * sizeof *row);
	if (!m->arena || !row) {
		rc = os_error_set(err, OS_ENOMEM, "'%s': cannot allocate %zu bytes of weights",
				  gguf_path(f), off);
		goto fail;
	}
	for (size_t i = 0; i < k; i++) {
		load_item *it = &items[i];
		model_entry *e = &m->ents[m->n_ents++];
		snprintf(e->name, sizeof e->name, "%s", it->name);
		char *base = m->arena;
		void *dst = base + it->offset;
		if (it->vector) {
			if ((rc = load_tensor(f, it, dst, BE_WFMT_F32, row, err)))
				goto fail;
			*it->vec = dst;
			e->vec = it->vec;
			e->vec_len = it->cols;
			continue;
		}
		be_weight *w = it->mat;
		*w = (be_weight){.fmt = it->fmt, .rows = it->rows, .cols = it->cols, .data = dst,
				 .group = it->group};
		if (be_wfmt_quantized(w->fmt))
			w->scales = (float *)(base + it->off_scales);
		if (w->fmt == BE_WFMT_I4)
			w->zeros = (uint8_t *)(base + it->off_zeros);
		rc = it->qfmt >= 0 ? load_quant(f, it, w, err)
				   : load_tensor(f, it, dst, it->fmt, row, err);
		if (rc)
			goto fail;
		e->mat = w;
	}
	if (c->tied_embeddings)
		m->w.output = m->w.token_embd;
	free(items);
	free(row);
	*out = m;
	return OS_OK;
fail:
	free(items);
	free(row);
	model_close(m);
	return rc;
}

int model_open(model **out, const char *path, const model_load_opts *opts, os_error *err)
{
	*out = NULL;
	gguf_file *f;
	int rc = gguf_open(&f, path, err);
	if (rc)
		return rc;
	rc = model_open_gguf(out, f, opts, err);
	gguf_close(f);
	return rc;
}

void model_close(model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_ents; i++)
		for (int j = 0; j < 3; j++)
			free(m->ents[i].own[j]);
	free(m->ents);
	free(m->arena);
	free(m->w.layers);
	free(m);
}

const model_config *model_get_config(const model *m)
{
	return &m->cfg;
}

const model_weights *model_get_weights(const model *m)
{
	return &m->w;
}

model_weights *model_weights_mut(model *m)
{
	return &m->w;
}

int model_weight_format(const model *m)
{
	return m->cfg.n_layers ? m->w.layers[0].wq.fmt : m->w.token_embd.fmt;
}

int model_kv_format(const model *m)
{
	return m->kv_fmt;
}

size_t model_kv_bytes_per_pos(const model *m, int fmt)
{
	const model_config *c = model_get_config(m);
	size_t per_head = c->head_dim * be_kvfmt_elem_bytes(fmt) +
			  (be_kvfmt_has_scales(fmt) ? sizeof(float) : 0);
	return c->n_layers * 2 * c->n_kv_heads * per_head;
}

size_t model_n_params(const model *m)
{
	return m->n_params;
}

size_t model_n_vocab(const model *m)
{
	return m->cfg.vocab;
}

size_t model_step_bytes(const model *m)
{
	size_t b = 0;
	for (size_t i = 0; i < m->n_ents; i++) {
		const model_entry *e = &m->ents[i];
		if (e->vec)
			b += e->vec_len * sizeof(float);
		else if (e->mat == &m->w.token_embd) /* one row for the lookup ... */
			b += be_weight_row_bytes(e->mat);
		else
			b += be_weight_bytes(e->mat);
	}
	if (m->cfg.tied_embeddings) /* ... and all of it for the tied output head */
		b += be_weight_bytes(&m->w.output);
	return b;
}

size_t model_weight_bytes(const model *m)
{
	size_t b = m->arena_bytes;
	for (size_t i = 0; i < m->n_ents; i++)
		b += m->ents[i].own_bytes;
	return b;
}

size_t model_n_tensors(const model *m)
{
	return m->n_ents;
}

model_tensor model_tensor_at(const model *m, size_t i)
{
	const model_entry *e = &m->ents[i];
	return (model_tensor){.name = e->name, .mat = e->mat, .vec = e->vec ? *e->vec : NULL,
			      .vec_len = e->vec_len};
}

int model_set_matrix(model *m, size_t i, const be_weight *w, os_error *err)
{
	model_entry *e = i < m->n_ents ? &m->ents[i] : NULL;
	if (!e || !e->mat)
		return os_error_set(err, OS_EUSAGE, "model: tensor %zu is not a matrix", i);
	if (w->rows != e->mat->rows || w->cols != e->mat->cols || w->fmt < 0 ||
	    w->fmt >= BE_WFMT_COUNT || !w->data || (be_wfmt_quantized(w->fmt) && !w->scales) ||
	    (w->fmt == BE_WFMT_I4 && (!w->zeros || (w->group != 32 && w->group != 64 &&
						    w->group != 128) || w->cols % w->group)))
		return os_error_set(err, OS_EUSAGE,
				    "model: %s as %s (%zu x %zu) does not fit tensor %s (%zu x %zu)",
				    "replacement", be_wfmt_name(w->fmt), w->rows, w->cols, e->name,
				    e->mat->rows, e->mat->cols);
	for (int j = 0; j < 3; j++)
		free(e->own[j]);
	e->own[0] = w->data;
	e->own[1] = w->scales;
	e->own[2] = w->zeros;
	e->own_bytes = be_weight_bytes(w);
	*e->mat = *w;
	if (e->mat == &m->w.token_embd && m->cfg.tied_embeddings)
		m->w.output = *w;
	return OS_OK;
}
