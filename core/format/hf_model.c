/* hf_model.c: config.json, tokenizer.json and README.md readers and the model folder that
 * ties them to the safetensors weights. JSON via cJSON; every field's type is checked. */
#include "hf_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sha256.h"
#include "textfile.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)
#define TOKENIZER_MAX_BYTES ((size_t)512 << 20)
#define README_MAX_BYTES ((size_t)4 << 20)
#define HF_MAX_INT 2147483647.0 /* every count and id fits an int32 */

/* "a string", "a number" ... for messages about a JSON value of the wrong kind. */
static const char *json_kind(const cJSON *v)
{
	if (!v)
		return "missing";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsObject(v))
		return "an object";
	return "an unknown value";
}

static bool json_is_int(const cJSON *v, double lo, double hi)
{
	return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
	       v->valuedouble == floor(v->valuedouble);
}

/* Parses len bytes of JSON (need not be NUL-terminated) through a terminated copy, so the
 * parser never reads past the caller's buffer. NULL + message on failure. */
static cJSON *parse_json(const char *text, size_t len, const char *name, os_error *err)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		os_error_set(err, OS_ENOMEM, "%s: out of memory for %zu bytes", name, len);
		return NULL;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
	if (!root) {
		size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
		os_error_set(err, OS_EFORMAT, "%s: not valid JSON (error near byte %zu of %zu)", name, at,
			     len);
	} else if (!cJSON_IsObject(root)) {
		os_error_set(err, OS_EFORMAT, "%s: the document is %s, expected a JSON object", name,
			     json_kind(root));
		cJSON_Delete(root);
		root = NULL;
	}
	free(copy);
	return root;
}

/* --- config.json ----------------------------------------------------------------------- */

/* The first of the names (NULL-terminated list; names[0] is the canonical one) present
 * and not null in root, or NULL. */
static const cJSON *cfg_find(const cJSON *root, const char *const *names)
{
	for (; *names; names++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, *names);
		if (v && !cJSON_IsNull(v))
			return v;
	}
	return NULL;
}

static int cfg_uint(const cJSON *root, const char *name, const char *const *names, bool required,
		    uint64_t *out, os_error *err)
{
	const cJSON *v = cfg_find(root, names);
	if (!v) {
		if (required)
			return os_error_set(err, OS_EFORMAT, "%s: %s is missing, expected an integer", name,
					    names[0]);
		return OS_OK;
	}
	if (!cJSON_IsNumber(v))
		return os_error_set(err, OS_EFORMAT, "%s: %s is %s, expected an integer", name, v->string,
				    json_kind(v));
	if (!json_is_int(v, 0, HF_MAX_INT))
		return os_error_set(err, OS_EFORMAT,
				    "%s: %s is %g, expected an integer from 0 to 2147483647", name,
				    v->string, v->valuedouble);
	*out = (uint64_t)v->valuedouble;
	return OS_OK;
}

static int cfg_number(const cJSON *root, const char *name, const char *key, double *out,
		      os_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!v || cJSON_IsNull(v))
		return OS_OK;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return os_error_set(err, OS_EFORMAT, "%s: %s is %s, expected a number", name, key,
				    json_kind(v));
	*out = v->valuedouble;
	return OS_OK;
}

static int cfg_string(const cJSON *root, const char *name, const char *key, char *out, size_t cap,
		      os_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!v || cJSON_IsNull(v))
		return OS_OK;
	if (!cJSON_IsString(v))
		return os_error_set(err, OS_EFORMAT, "%s: %s is %s, expected a string", name, key,
				    json_kind(v));
	snprintf(out, cap, "%s", v->valuestring);
	return OS_OK;
}

/* bos/eos: an integer, or a list of integers (the first is taken); -1 when absent. */
static int cfg_token_id(const cJSON *root, const char *name, const char *key, int64_t *out,
			os_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	*out = -1;
	if (!v || cJSON_IsNull(v))
		return OS_OK;
	if (cJSON_IsArray(v)) {
		if (cJSON_GetArraySize(v) == 0)
			return OS_OK;
		v = cJSON_GetArrayItem(v, 0);
	}
	if (!json_is_int(v, 0, HF_MAX_INT))
		return os_error_set(err, OS_EFORMAT, "%s: %s is %s, expected a token id (an integer >= 0)",
				    name, key, cJSON_IsNumber(v) ? "out of range" : json_kind(v));
	*out = (int64_t)v->valuedouble;
	return OS_OK;
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

int hf_config_parse(const char *json, size_t len, const char *name, hf_config *out,
		    os_error *err)
{
	memset(out, 0, sizeof *out);
	out->rope_theta = 10000.0;
	out->rms_norm_eps = 1e-6;
	out->bos_token_id = out->eos_token_id = -1;
	cJSON *root = parse_json(json, len, name, err);
	if (!root)
		return err ? err->rc : OS_EFORMAT;
	int rc;
	if ((rc = cfg_string(root, name, "model_type", out->model_type, sizeof out->model_type, err)))
		goto fail;
	if ((rc = cfg_string(root, name, "torch_dtype", out->torch_dtype, sizeof out->torch_dtype, err)))
		goto fail;
	const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
	if (arch && !cJSON_IsNull(arch)) {
		const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
		if (!cJSON_IsArray(arch) || (a0 && !cJSON_IsString(a0))) {
			rc = os_error_set(err, OS_EFORMAT, "%s: architectures is %s, expected an array of strings",
					  name, cJSON_IsArray(arch) ? "an array of non-strings" : json_kind(arch));
			goto fail;
		}
		if (a0)
			snprintf(out->architecture, sizeof out->architecture, "%s", a0->valuestring);
	}
	if ((rc = cfg_uint(root, name, NAMES("hidden_size", "n_embd", "d_model"), true,
			   &out->hidden_size, err)) ||
	    (rc = cfg_uint(root, name, NAMES("intermediate_size", "n_inner"), false,
			   &out->intermediate_size, err)) ||
	    (rc = cfg_uint(root, name, NAMES("num_hidden_layers", "n_layer", "num_layers"), true,
			   &out->n_layers, err)) ||
	    (rc = cfg_uint(root, name, NAMES("num_attention_heads", "n_head"), true, &out->n_heads,
			   err)) ||
	    (rc = cfg_uint(root, name, NAMES("num_key_value_heads"), false, &out->n_kv_heads, err)) ||
	    (rc = cfg_uint(root, name, NAMES("head_dim"), false, &out->head_dim, err)) ||
	    (rc = cfg_uint(root, name, NAMES("max_position_embeddings", "n_positions"), false,
			   &out->max_position_embeddings, err)) ||
	    (rc = cfg_uint(root, name, NAMES("vocab_size"), true, &out->vocab_size, err)))
		goto fail;
	if ((rc = cfg_number(root, name, "rope_theta", &out->rope_theta, err)))
		goto fail;
	const cJSON *eps = cfg_find(root, NAMES("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"));
	if (eps && (!cJSON_IsNumber(eps) || !isfinite(eps->valuedouble))) {
		rc = os_error_set(err, OS_EFORMAT, "%s: %s is %s, expected a number", name, eps->string,
				  json_kind(eps));
		goto fail;
	}
	if (eps)
		out->rms_norm_eps = eps->valuedouble;
	const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
	if (tie && !cJSON_IsNull(tie)) {
		if (!cJSON_IsBool(tie)) {
			rc = os_error_set(err, OS_EFORMAT, "%s: tie_word_embeddings is %s, expected true or false",
					  name, json_kind(tie));
			goto fail;
		}
		out->tie_word_embeddings = cJSON_IsTrue(tie);
	}
	if ((rc = cfg_token_id(root, name, "bos_token_id", &out->bos_token_id, err)) ||
	    (rc = cfg_token_id(root, name, "eos_token_id", &out->eos_token_id, err)))
		goto fail;
	/* invariants the engine relies on */
	const char *zero = !out->hidden_size ? "hidden_size" : !out->n_layers ? "num_hidden_layers"
			 : !out->n_heads ? "num_attention_heads" : !out->vocab_size ? "vocab_size" : NULL;
	if (zero) {
		rc = os_error_set(err, OS_EFORMAT, "%s: %s is 0, expected a positive integer", name, zero);
		goto fail;
	}
	if (!out->n_kv_heads)
		out->n_kv_heads = out->n_heads;
	if (out->n_heads % out->n_kv_heads != 0) {
		rc = os_error_set(err, OS_EFORMAT,
				  "%s: num_attention_heads %llu is not a multiple of num_key_value_heads %llu",
				  name, (unsigned long long)out->n_heads, (unsigned long long)out->n_kv_heads);
		goto fail;
	}
	if (!out->head_dim) {
		if (out->hidden_size % out->n_heads != 0) {
			rc = os_error_set(err, OS_EFORMAT,
					  "%s: hidden_size %llu is not a multiple of num_attention_heads %llu "
					  "(expected one, or a head_dim field)",
					  name, (unsigned long long)out->hidden_size,
					  (unsigned long long)out->n_heads);
			goto fail;
		}
		out->head_dim = out->hidden_size / out->n_heads;
	}
	rc = OS_OK;
fail:
	cJSON_Delete(root);
	return rc;
}

/* --- tokenizer.json -------------------------------------------------------------------- */

struct hf_tokenizer {
	enum hf_tokenizer_model model;
	bool byte_level, byte_fallback;
	size_t n_tokens;
	const char **tokens;   /* n_tokens, into arena */
	float *scores;         /* n_tokens */
	uint8_t *special;      /* n_tokens, 0/1 */
	size_t n_merges;
	const char **merges;   /* 2 * n_merges (left, right), into arena */
	uint32_t *map;         /* map_cap slots of id + 1 (0 = empty), open addressing */
	size_t map_cap;        /* power of two >= 2 * n_tokens */
	char *arena;           /* every string, NUL-terminated */
};

static const char *const model_names[] = {
	[HF_TOK_BPE] = "BPE", [HF_TOK_UNIGRAM] = "Unigram", [HF_TOK_WORDPIECE] = "WordPiece",
	[HF_TOK_WORDLEVEL] = "WordLevel",
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

/* A slot while parsing: the token string borrowed from the cJSON tree. */
typedef struct tok_slot {
	const char *s;
	float score;
	bool special;
	bool from_added;
} tok_slot;

/* Adds id -> s to slots (n_slots long; ids >= n_slots only raise *max_id). */
static int slot_put(tok_slot *slots, size_t n_slots, double id_d, const char *s, float score,
		    bool special, bool added, long long *max_id, const char *name, const char *where,
		    os_error *err)
{
	long long id = (long long)id_d;
	if (id > *max_id)
		*max_id = id;
	if ((size_t)id >= n_slots)
		return OS_OK; /* past every possible dense id: a gap is reported later */
	tok_slot *sl = &slots[id];
	if (sl->s && !added)
		return os_error_set(err, OS_EFORMAT, "%s: id %lld is given to both '%.40s' and '%.40s' (%s)",
				    name, id, sl->s, s, where);
	if (sl->s && sl->from_added)
		return os_error_set(err, OS_EFORMAT,
				    "%s: added_tokens has id %lld twice ('%.40s' and '%.40s')", name, id,
				    sl->s, s);
	sl->s = s;
	if (!added)
		sl->score = score;
	sl->special = sl->special || special;
	sl->from_added = added;
	return OS_OK;
}

/* true when a pre-tokenizer/decoder node is, or is a Sequence containing, type ByteLevel. */
static bool has_byte_level(const cJSON *node, int depth)
{
	if (!cJSON_IsObject(node) || depth > 8)
		return false;
	const cJSON *ty = cJSON_GetObjectItemCaseSensitive(node, "type");
	if (cJSON_IsString(ty) && strcmp(ty->valuestring, "ByteLevel") == 0)
		return true;
	const char *lists[] = {"pretokenizers", "decoders"};
	for (int k = 0; k < 2; k++) {
		const cJSON *e;
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(node, lists[k]))
			if (has_byte_level(e, depth + 1))
				return true;
	}
	return false;
}

void hf_tokenizer_free(hf_tokenizer *t)
{
	if (!t)
		return;
	free(t->tokens);
	free(t->scores);
	free(t->special);
	free(t->merges);
	free(t->map);
	free(t->arena);
	free(t);
}

/* Copies s into the arena at *pos and returns where it went. */
static const char *arena_put(char *arena, size_t *pos, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = arena + *pos;
	memcpy(d, s, n);
	*pos += n;
	return d;
}

int hf_tokenizer_parse(hf_tokenizer **out, const char *json, size_t len, const char *name,
		       os_error *err)
{
	*out = NULL;
	int rc = OS_OK;
	tok_slot *slots = NULL;
	const char **mpairs = NULL; /* 2 per merge, borrowed from root */
	char **split = NULL;        /* merges given as "a b" strings: the split copies */
	size_t n_split = 0;
	hf_tokenizer *t = NULL;
	cJSON *root = parse_json(json, len, name, err);
	if (!root)
		return err ? err->rc : OS_EFORMAT;
	t = calloc(1, sizeof *t);
	if (!t) {
		rc = os_error_set(err, OS_ENOMEM, "%s: out of memory", name);
		goto fail;
	}
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!cJSON_IsObject(model)) {
		rc = os_error_set(err, OS_EFORMAT, "%s: model is %s, expected an object", name,
				  json_kind(model));
		goto fail;
	}
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
	if (cJSON_IsString(type)) {
		size_t k;
		for (k = 0; k < sizeof model_names / sizeof *model_names; k++)
			if (strcmp(type->valuestring, model_names[k]) == 0)
				break;
		if (k == sizeof model_names / sizeof *model_names) {
			rc = os_error_set(err, OS_EUNSUPPORTED,
					  "%s: model.type '%.40s' is unknown (expected BPE, Unigram, WordPiece or "
					  "WordLevel)",
					  name, type->valuestring);
			goto fail;
		}
		t->model = (enum hf_tokenizer_model)k;
	} else if (type && !cJSON_IsNull(type)) {
		rc = os_error_set(err, OS_EFORMAT, "%s: model.type is %s, expected a string such as \"BPE\"",
				  name, json_kind(type));
		goto fail;
	} else if (merges) {
		t->model = HF_TOK_BPE; /* older files omit the type */
	} else if (cJSON_IsArray(vocab)) {
		t->model = HF_TOK_UNIGRAM;
	} else {
		rc = os_error_set(err, OS_EFORMAT,
				  "%s: model.type is missing, expected BPE, Unigram, WordPiece or WordLevel", name);
		goto fail;
	}
	if (t->model == HF_TOK_UNIGRAM ? !cJSON_IsArray(vocab) : !cJSON_IsObject(vocab)) {
		rc = os_error_set(err, OS_EFORMAT, "%s: model.vocab is %s, expected %s", name,
				  json_kind(vocab),
				  t->model == HF_TOK_UNIGRAM ? "an array of [piece, score] pairs"
							     : "an object of token -> id");
		goto fail;
	}
	const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
	t->byte_fallback = cJSON_IsTrue(bf);
	t->byte_level = has_byte_level(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0) ||
			has_byte_level(cJSON_GetObjectItemCaseSensitive(root, "decoder"), 0);
	const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
	if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
		rc = os_error_set(err, OS_EFORMAT, "%s: added_tokens is %s, expected an array", name,
				  json_kind(added));
		goto fail;
	}
	size_t n_vocab = (size_t)cJSON_GetArraySize(vocab);
	size_t n_added = cJSON_IsArray(added) ? (size_t)cJSON_GetArraySize(added) : 0;
	/* a dense id space cannot be larger than the number of entries */
	size_t n_slots = n_vocab + n_added;
	slots = calloc(n_slots + 1, sizeof *slots);
	if (!slots) {
		rc = os_error_set(err, OS_ENOMEM, "%s: out of memory for %zu tokens", name, n_slots);
		goto fail;
	}
	long long max_id = -1;
	const cJSON *e;
	if (t->model == HF_TOK_UNIGRAM) {
		size_t id = 0;
		cJSON_ArrayForEach(e, vocab)
		{
			const cJSON *piece = cJSON_GetArrayItem(e, 0), *score = cJSON_GetArrayItem(e, 1);
			if (!cJSON_IsArray(e) || !cJSON_IsString(piece) || !cJSON_IsNumber(score)) {
				rc = os_error_set(err, OS_EFORMAT,
						  "%s: model.vocab[%zu] is %s, expected a [piece, score] pair", name,
						  id, cJSON_IsArray(e) ? "malformed" : json_kind(e));
				goto fail;
			}
			if ((rc = slot_put(slots, n_slots + 1, (double)id, piece->valuestring,
					   (float)score->valuedouble, false, false, &max_id, name, "model.vocab",
					   err)))
				goto fail;
			id++;
		}
	} else {
		cJSON_ArrayForEach(e, vocab)
		{
			if (!json_is_int(e, 0, HF_MAX_INT)) {
				rc = os_error_set(err, OS_EFORMAT,
						  "%s: model.vocab '%.40s' has %s for its id, expected an integer from 0 "
						  "to 2147483647",
						  name, e->string, cJSON_IsNumber(e) ? "an out-of-range number" : json_kind(e));
				goto fail;
			}
			if ((rc = slot_put(slots, n_slots + 1, e->valuedouble, e->string, 0, false, false,
					   &max_id, name, "model.vocab", err)))
				goto fail;
		}
	}
	size_t ai = 0;
	cJSON_ArrayForEach(e, added)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
		if (!cJSON_IsObject(e) || !cJSON_IsString(content) || !json_is_int(id, 0, HF_MAX_INT)) {
			rc = os_error_set(err, OS_EFORMAT,
					  "%s: added_tokens[%zu] is %s, expected {\"id\": integer, \"content\": "
					  "string, ...}",
					  name, ai, cJSON_IsObject(e) ? "malformed" : json_kind(e));
			goto fail;
		}
		if ((rc = slot_put(slots, n_slots + 1, id->valuedouble, content->valuestring, 0,
				   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")), true,
				   &max_id, name, "added_tokens", err)))
			goto fail;
		ai++;
	}
	if (max_id < 0) {
		rc = os_error_set(err, OS_EFORMAT, "%s: the vocabulary is empty (expected model.vocab entries)",
				  name);
		goto fail;
	}
	for (size_t id = 0; id <= n_slots && (long long)id <= max_id; id++) {
		if (!slots[id].s) {
			rc = os_error_set(err, OS_EFORMAT, "%s: no token with id %zu (ids must run 0..%lld)",
					  name, id, max_id);
			goto fail;
		}
	}
	t->n_tokens = (size_t)max_id + 1; /* <= n_slots: otherwise the loop found a gap */
	/* merges: "a b" strings or [a, b] pairs */
	if (merges && !cJSON_IsNull(merges) && !cJSON_IsArray(merges)) {
		rc = os_error_set(err, OS_EFORMAT, "%s: model.merges is %s, expected an array", name,
				  json_kind(merges));
		goto fail;
	}
	size_t n_m = cJSON_IsArray(merges) ? (size_t)cJSON_GetArraySize(merges) : 0;
	mpairs = calloc(2 * n_m + 1, sizeof *mpairs);
	split = calloc(n_m + 1, sizeof *split);
	if (!mpairs || !split) {
		rc = os_error_set(err, OS_ENOMEM, "%s: out of memory for %zu merges", name, n_m);
		goto fail;
	}
	size_t mi = 0;
	const cJSON *merge_list = cJSON_IsArray(merges) ? merges : NULL;
	cJSON_ArrayForEach(e, merge_list)
	{
		if (cJSON_IsString(e)) {
			const char *sp = strchr(e->valuestring, ' ');
			if (!sp || sp == e->valuestring || !sp[1] || strchr(sp + 1, ' ')) {
				rc = os_error_set(err, OS_EFORMAT,
						  "%s: model.merges[%zu] is '%.40s', expected two tokens separated by "
						  "one space",
						  name, mi, e->valuestring);
				goto fail;
			}
			char *c = strdup(e->valuestring);
			if (!c) {
				rc = os_error_set(err, OS_ENOMEM, "%s: out of memory", name);
				goto fail;
			}
			split[n_split++] = c;
			c[sp - e->valuestring] = '\0';
			mpairs[2 * mi] = c;
			mpairs[2 * mi + 1] = c + (sp - e->valuestring) + 1;
		} else {
			const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
			if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(a) ||
			    !cJSON_IsString(b)) {
				rc = os_error_set(err, OS_EFORMAT,
						  "%s: model.merges[%zu] is %s, expected \"a b\" or [\"a\", \"b\"]",
						  name, mi, cJSON_IsArray(e) ? "a malformed pair" : json_kind(e));
				goto fail;
			}
			mpairs[2 * mi] = a->valuestring;
			mpairs[2 * mi + 1] = b->valuestring;
		}
		mi++;
	}
	t->n_merges = mi;
	/* copy every string into one arena, then drop the JSON tree */
	size_t bytes = 1;
	for (size_t id = 0; id < t->n_tokens; id++)
		bytes += strlen(slots[id].s) + 1;
	for (size_t k = 0; k < 2 * t->n_merges; k++)
		bytes += strlen(mpairs[k]) + 1;
	t->arena = malloc(bytes);
	t->tokens = calloc(t->n_tokens, sizeof *t->tokens);
	t->scores = calloc(t->n_tokens, sizeof *t->scores);
	t->special = calloc(t->n_tokens, 1);
	t->merges = calloc(2 * t->n_merges + 1, sizeof *t->merges);
	t->map_cap = 16;
	while (t->map_cap < 2 * t->n_tokens)
		t->map_cap *= 2;
	t->map = calloc(t->map_cap, sizeof *t->map);
	if (!t->arena || !t->tokens || !t->scores || !t->special || !t->merges || !t->map) {
		rc = os_error_set(err, OS_ENOMEM, "%s: out of memory for %zu tokens", name, t->n_tokens);
		goto fail;
	}
	size_t pos = 0;
	for (size_t id = 0; id < t->n_tokens; id++) {
		t->tokens[id] = arena_put(t->arena, &pos, slots[id].s);
		t->scores[id] = slots[id].score;
		t->special[id] = slots[id].special;
		/* first id wins for a string given twice (an added token shadowing nothing) */
		size_t h = (size_t)str_hash(t->tokens[id]) & (t->map_cap - 1);
		while (t->map[h] && strcmp(t->tokens[t->map[h] - 1], t->tokens[id]) != 0)
			h = (h + 1) & (t->map_cap - 1);
		if (!t->map[h])
			t->map[h] = (uint32_t)id + 1;
	}
	for (size_t k = 0; k < 2 * t->n_merges; k++)
		t->merges[k] = arena_put(t->arena, &pos, mpairs[k]);
	*out = t;
	t = NULL;
fail:
	for (size_t k = 0; k < n_split; k++)
		free(split[k]);
	free(split);
	free(mpairs);
	free(slots);
	hf_tokenizer_free(t);
	cJSON_Delete(root);
	return rc;
}

enum hf_tokenizer_model hf_tokenizer_model_type(const hf_tokenizer *t)
{
	return t->model;
}

const char *hf_tokenizer_model_name(const hf_tokenizer *t)
{
	return model_names[t->model];
}

bool hf_tokenizer_byte_level(const hf_tokenizer *t)
{
	return t->byte_level;
}

bool hf_tokenizer_byte_fallback(const hf_tokenizer *t)
{
	return t->byte_fallback;
}

size_t hf_tokenizer_n_tokens(const hf_tokenizer *t)
{
	return t->n_tokens;
}

const char *hf_tokenizer_token(const hf_tokenizer *t, size_t id)
{
	return id < t->n_tokens ? t->tokens[id] : NULL;
}

float hf_tokenizer_score(const hf_tokenizer *t, size_t id)
{
	return id < t->n_tokens ? t->scores[id] : 0.0f;
}

bool hf_tokenizer_is_special(const hf_tokenizer *t, size_t id)
{
	return id < t->n_tokens && t->special[id];
}

long hf_tokenizer_find(const hf_tokenizer *t, const char *token)
{
	size_t h = (size_t)str_hash(token) & (t->map_cap - 1);
	while (t->map[h]) {
		if (strcmp(t->tokens[t->map[h] - 1], token) == 0)
			return (long)t->map[h] - 1;
		h = (h + 1) & (t->map_cap - 1);
	}
	return -1;
}

size_t hf_tokenizer_n_merges(const hf_tokenizer *t)
{
	return t->n_merges;
}

void hf_tokenizer_merge(const hf_tokenizer *t, size_t rank, const char **left, const char **right)
{
	*left = rank < t->n_merges ? t->merges[2 * rank] : NULL;
	*right = rank < t->n_merges ? t->merges[2 * rank + 1] : NULL;
}

void hf_tokenizer_vocab_hash(const hf_tokenizer *t, char out_hex[65])
{
	sha256_ctx c;
	sha256_init(&c);
	for (size_t id = 0; id < t->n_tokens; id++)
		sha256_update(&c, t->tokens[id], strlen(t->tokens[id]) + 1); /* + the NUL */
	uint8_t d[SHA256_DIGEST_BYTES];
	sha256_final(&c, d);
	sha256_to_hex(d, out_hex);
}

/* --- README.md front matter ------------------------------------------------------------ */

/* Copies the line [s, e) trimmed of blanks and one pair of quotes into out. */
static void copy_trimmed(const char *s, const char *e, char *out, size_t cap)
{
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	if (e - s >= 2 && (*s == '"' || *s == '\'') && e[-1] == *s) {
		s++;
		e--;
	}
	snprintf(out, cap, "%.*s", (int)(e - s), s);
}

bool hf_readme_license(const char *text, size_t len, char *out, size_t cap)
{
	const char *p = text, *end = text + len;
	if (len >= 3 && (uint8_t)p[0] == 0xef && (uint8_t)p[1] == 0xbb && (uint8_t)p[2] == 0xbf)
		p += 3; /* UTF-8 BOM */
	if (end - p < 3 || memcmp(p, "---", 3) != 0)
		return false;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		return false;
	bool want_item = false; /* "license:" with the value on the next "- x" line */
	for (p = nl + 1; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (le - p >= 3 && (memcmp(p, "---", 3) == 0 || memcmp(p, "...", 3) == 0))
			return false;
		if (want_item) {
			const char *q = p;
			while (q < le && (*q == ' ' || *q == '\t'))
				q++;
			if (q < le && *q == '-') {
				copy_trimmed(q + 1, le, out, cap);
				return out[0] != '\0';
			}
			return false;
		}
		if (le - p >= 8 && memcmp(p, "license:", 8) == 0) {
			copy_trimmed(p + 8, le, out, cap);
			if (out[0])
				return true;
			want_item = true;
		}
		if (!nl)
			break;
	}
	return false;
}

/* --- the folder ------------------------------------------------------------------------ */

struct hf_model {
	char *dir;
	hf_config config;
	hf_tokenizer *tokenizer;   /* NULL without tokenizer.json */
	safetensors_set *weights;
	char license[64];
};

void hf_model_close(hf_model *m)
{
	if (!m)
		return;
	hf_tokenizer_free(m->tokenizer);
	safetensors_set_close(m->weights);
	free(m->dir);
	free(m);
}

/* malloc'd "dir/name". */
static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

int hf_model_open(hf_model **out, const char *dir, os_error *err)
{
	*out = NULL;
	int rc = OS_OK;
	char *path = NULL, *text = NULL;
	size_t len = 0;
	hf_model *m = calloc(1, sizeof *m);
	if (!m || !(m->dir = strdup(dir))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		goto fail;
	}
	struct stat st;
	if (stat(dir, &st) != 0) {
		rc = os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO, "cannot open '%s': %s", dir,
				  strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = os_error_set(err, OS_EUSAGE, "'%s' is not a folder (expected a Hugging Face model folder)",
				  dir);
		goto fail;
	}
	if (!(path = path_join(dir, "config.json"))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		goto fail;
	}
	if (stat(path, &st) != 0) {
		rc = os_error_set(err, OS_ENOTFOUND, "'%s' has no config.json; is this a Hugging Face model folder?",
				  dir);
		goto fail;
	}
	if ((rc = format_read_text_file(path, CONFIG_MAX_BYTES, &text, &len, err)) ||
	    (rc = hf_config_parse(text, len, path, &m->config, err)))
		goto fail;
	free(text);
	text = NULL;
	free(path);
	if (!(path = path_join(dir, "tokenizer.json"))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		goto fail;
	}
	if (stat(path, &st) == 0) {
		if ((rc = format_read_text_file(path, TOKENIZER_MAX_BYTES, &text, &len, err)) ||
		    (rc = hf_tokenizer_parse(&m->tokenizer, text, len, path, err)))
			goto fail;
		free(text);
		text = NULL;
	}
	free(path);
	if (!(path = path_join(dir, "README.md"))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		goto fail;
	}
	if (stat(path, &st) == 0 && format_read_text_file(path, README_MAX_BYTES, &text, &len, NULL) == OS_OK)
		hf_readme_license(text, len, m->license, sizeof m->license);
	if ((rc = safetensors_set_open(&m->weights, dir, err)))
		goto fail;
	*out = m;
	m = NULL;
fail:
	free(text);
	free(path);
	hf_model_close(m);
	return rc;
}

const char *hf_model_dir(const hf_model *m)
{
	return m->dir;
}

const hf_config *hf_model_config(const hf_model *m)
{
	return &m->config;
}

const hf_tokenizer *hf_model_tokenizer(const hf_model *m)
{
	return m->tokenizer;
}

const safetensors_set *hf_model_weights(const hf_model *m)
{
	return m->weights;
}

const char *hf_model_license(const hf_model *m)
{
	return m->license;
}
