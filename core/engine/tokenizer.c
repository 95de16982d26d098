/* tokenizer.c: byte-level BPE (GPT-2 style, merges by rank) and SentencePiece BPE (merges by
 * score, byte fallback) over a vocabulary read from GGUF metadata. The pre-tokenizer regexes
 * are hand-written scanners over classified code points; BPE runs a binary heap of candidate
 * pairs over a linked list of symbols, O(n log n) per word. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

#define MAX_EOG 16

/* Open-addressing hash table from a token's stored string to its id. */
typedef struct text_slot {
	uint32_t hash;
	int32_t id; /* -1: empty */
} text_slot;

/* Open-addressing hash table from a pair of ids to the merge (byte-level BPE). */
typedef struct merge_slot {
	uint64_t key;   /* (uint64)left << 32 | right; UINT64_MAX: empty */
	uint32_t rank;  /* position in tokenizer.ggml.merges: lower merges first */
	int32_t result; /* id of the merged token */
} merge_slot;

struct tokenizer {
	enum tokenizer_kind kind;
	enum tokenizer_pre pre;
	size_t n_vocab;
	/* text[text_off[i] .. text_off[i+1]-1) is token i's stored string, NUL-terminated */
	char *text;
	size_t *text_off;       /* [n_vocab + 1] */
	/* piece[piece_off[i] ..] is token i's decoded bytes, piece_len[i] long, NUL-terminated */
	char *piece;
	size_t *piece_off;      /* [n_vocab] */
	uint32_t *piece_len;    /* [n_vocab] */
	size_t max_piece_len;
	uint8_t *type;          /* [n_vocab] enum token_type */
	float *score;           /* [n_vocab] SPM scores (zeros when absent) */
	text_slot *text_map;    /* [text_cap], text_cap a power of two >= 2 n_vocab */
	size_t text_cap;
	merge_slot *merge_map;  /* [merge_cap] or NULL (SPM) */
	size_t merge_cap;
	int32_t byte_id[256];   /* token of each byte (mapped char / <0xNN>), -1 when missing */
	bool all_bytes;
	/* special tokens matched in text, sorted by first byte then length descending;
	 * special_first[b] .. special_first[b+1] are those starting with byte b */
	int32_t *special;
	size_t n_special;
	size_t special_first[257];
	int32_t bos, eos, unk, eot, eom;
	int32_t eog[MAX_EOG];
	size_t n_eog;
	bool add_bos, add_space_prefix;
	char warning[320];
};

/* ---------------------------------------------------------------- helpers */

static uint32_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ull;
	x ^= x >> 29;
	return x;
}

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;
	while (c < n)
		c <<= 1;
	return c;
}

static const char *tok_text(const tokenizer *t, int32_t id, size_t *len)
{
	*len = t->text_off[id + 1] - t->text_off[id] - 1;
	return t->text + t->text_off[id];
}

/* Looks up a stored token string; -1 when absent. */
static int32_t text_map_find(const tokenizer *t, const char *s, size_t n)
{
	uint32_t h = hash_bytes(s, n);
	size_t mask = t->text_cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const text_slot *e = &t->text_map[i];
		if (e->id < 0)
			return -1;
		if (e->hash == h) {
			size_t l;
			const char *x = tok_text(t, e->id, &l);
			if (l == n && memcmp(x, s, n) == 0)
				return e->id;
		}
	}
}

static const merge_slot *merge_map_find(const tokenizer *t, int32_t a, int32_t b)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	size_t mask = t->merge_cap - 1;
	for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
		const merge_slot *e = &t->merge_map[i];
		if (e->key == UINT64_MAX)
			return NULL;
		if (e->key == key)
			return e;
	}
}

static bool is_special_type(uint8_t ty)
{
	return ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED || ty == TOKEN_TYPE_UNKNOWN;
}

/* ---------------------------------------------------------------- construction */

void tokenizer_close(tokenizer *t)
{
	if (!t)
		return;
	free(t->text);
	free(t->text_off);
	free(t->piece);
	free(t->piece_off);
	free(t->piece_len);
	free(t->type);
	free(t->score);
	free(t->text_map);
	free(t->merge_map);
	free(t->special);
	free(t);
}

/* Appends n bytes to a growing buffer. */
static int buf_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		while (*len + n + 1 > c)
			c *= 2;
		char *p = realloc(*buf, c);
		if (!p)
			return OS_ENOMEM;
		*buf = p;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	return OS_OK;
}

/* Parses "<0xNN>"; -1 if s is not of that form. */
static int parse_byte_token(const char *s, size_t n)
{
	if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	int v = 0;
	for (int i = 3; i < 5; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 :
			c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* Writes token id's decoded bytes (see tokenizer_piece) to the piece arena. */
static int build_piece(tokenizer *t, int32_t id, char **buf, size_t *len, size_t *cap)
{
	size_t n;
	const char *s = tok_text(t, id, &n);
	uint8_t ty = t->type[id];
	size_t start = *len;
	int rc = OS_OK;

	if (ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED || ty == TOKEN_TYPE_UNKNOWN) {
		rc = buf_append(buf, len, cap, s, n);
	} else if (t->kind == TOKENIZER_KIND_SPM) {
		int b = ty == TOKEN_TYPE_BYTE ? parse_byte_token(s, n) : -1;
		if (b >= 0) {
			char c = (char)b;
			rc = buf_append(buf, len, cap, &c, 1);
		} else {
			for (size_t i = 0; i < n && rc == OS_OK;) {
				if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
					rc = buf_append(buf, len, cap, " ", 1);
					i += 3;
				} else {
					rc = buf_append(buf, len, cap, s + i, 1);
					i++;
				}
			}
		}
	} else {
		/* byte-level: each code point is the image of one byte; anything else is kept */
		for (size_t i = 0; i < n && rc == OS_OK;) {
			uint32_t cp;
			size_t l = unicode_utf8_decode((const unsigned char *)s + i, n - i, &cp);
			int b = cp == UNICODE_INVALID ? -1 : unicode_cp_to_byte(cp);
			if (b >= 0) {
				char c = (char)b;
				rc = buf_append(buf, len, cap, &c, 1);
			} else {
				rc = buf_append(buf, len, cap, s + i, l);
			}
			i += l;
		}
	}
	if (rc == OS_OK)
		rc = buf_append(buf, len, cap, "", 1); /* NUL for convenience */
	if (rc != OS_OK)
		return rc;
	t->piece_off[id] = start;
	t->piece_len[id] = (uint32_t)(*len - start - 1);
	if (t->piece_len[id] > t->max_piece_len)
		t->max_piece_len = t->piece_len[id];
	return OS_OK;
}

/* Sort key of a special token: first byte ascending, then longest first, then id. */
typedef struct special_key {
	unsigned char first;
	size_t len;
	int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b)
{
	const special_key *x = a, *y = b;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void add_eog(tokenizer *t, int32_t id)
{
	if (id < 0 || t->n_eog >= MAX_EOG)
		return;
	for (size_t i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id)
			return;
	t->eog[t->n_eog++] = id;
}

static void add_warning(tokenizer *t, const char *msg)
{
	size_t n = strlen(t->warning);
	snprintf(t->warning + n, sizeof t->warning - n, "%s%s", n ? "; " : "", msg);
}

int tokenizer_open_vocab(tokenizer **out, const tokenizer_vocab *v, os_error *err)
{
	tokenizer *t = NULL;
	char *pbuf = NULL;
	size_t plen = 0, pcap = 0;
	int rc;

	*out = NULL;
	if (v->n_tokens == 0 || v->n_tokens > INT32_MAX / 2)
		return os_error_set(err, OS_EFORMAT, "tokenizer: %zu tokens (expected 1 .. %d)",
				    v->n_tokens, INT32_MAX / 2);
	const int32_t ids[5] = { v->bos_id, v->eos_id, v->unk_id, v->eot_id, v->eom_id };
	const char *id_names[5] = { "bos", "eos", "unknown", "eot", "eom" };
	for (int i = 0; i < 5; i++)
		if (ids[i] < -1 || ids[i] >= (int64_t)v->n_tokens)
			return os_error_set(err, OS_EFORMAT,
					    "tokenizer: %s token id %d out of range (vocabulary of %zu)",
					    id_names[i], (int)ids[i], v->n_tokens);

	t = calloc(1, sizeof *t);
	if (!t)
		return os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
	t->kind = v->kind;
	t->pre = v->pre;
	t->n_vocab = v->n_tokens;
	t->bos = v->bos_id;
	t->eos = v->eos_id;
	t->unk = v->unk_id;
	t->eot = v->eot_id;
	t->eom = v->eom_id;
	t->add_bos = v->add_bos;
	t->add_space_prefix = v->add_space_prefix;

	size_t n = v->n_tokens, total = 0;
	for (size_t i = 0; i < n; i++)
		total += v->token_lens[i] + 1;
	t->text = malloc(total);
	t->text_off = malloc((n + 1) * sizeof *t->text_off);
	t->piece_off = malloc(n * sizeof *t->piece_off);
	t->piece_len = malloc(n * sizeof *t->piece_len);
	t->type = malloc(n);
	t->score = calloc(n, sizeof *t->score);
	t->text_cap = pow2_at_least(2 * n);
	t->text_map = malloc(t->text_cap * sizeof *t->text_map);
	if (!t->text || !t->text_off || !t->piece_off || !t->piece_len || !t->type || !t->score ||
	    !t->text_map) {
		rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory for %zu tokens", n);
		goto fail;
	}
	for (size_t i = 0; i < t->text_cap; i++)
		t->text_map[i].id = -1;

	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		t->text_off[i] = off;
		memcpy(t->text + off, v->tokens[i], v->token_lens[i]);
		off += v->token_lens[i];
		t->text[off++] = '\0';
		int32_t ty = v->token_types ? v->token_types[i] : TOKEN_TYPE_NORMAL;
		t->type[i] = (uint8_t)(ty >= 0 && ty <= TOKEN_TYPE_BYTE ? ty : TOKEN_TYPE_NORMAL);
		if (v->scores)
			t->score[i] = v->scores[i];
	}
	t->text_off[n] = off;

	/* text -> id; the first of duplicate strings wins */
	for (size_t i = 0; i < n; i++) {
		size_t l;
		const char *s = tok_text(t, (int32_t)i, &l);
		if (text_map_find(t, s, l) >= 0)
			continue;
		uint32_t h = hash_bytes(s, l);
		size_t mask = t->text_cap - 1, j = h & mask;
		while (t->text_map[j].id >= 0)
			j = (j + 1) & mask;
		t->text_map[j].hash = h;
		t->text_map[j].id = (int32_t)i;
	}

	for (size_t i = 0; i < n; i++)
		if ((rc = build_piece(t, (int32_t)i, &pbuf, &plen, &pcap)) != OS_OK) {
			os_error_set(err, rc, "tokenizer: out of memory for token pieces");
			goto fail;
		}
	t->piece = pbuf;
	pbuf = NULL;

	/* the token of each byte */
	t->all_bytes = true;
	for (int b = 0; b < 256; b++) {
		int32_t id = -1;
		if (t->kind == TOKENIZER_KIND_BPE) {
			char u[4];
			size_t l = unicode_utf8_encode(unicode_byte_to_cp((uint8_t)b), u);
			id = text_map_find(t, u, l);
		} else {
			char u[8];
			snprintf(u, sizeof u, "<0x%02X>", b);
			id = text_map_find(t, u, 6);
			if (id >= 0 && t->type[id] != TOKEN_TYPE_BYTE && v->token_types)
				id = -1;
		}
		t->byte_id[b] = id;
		if (id < 0)
			t->all_bytes = false;
	}

	/* merges (byte-level BPE) */
	if (t->kind == TOKENIZER_KIND_BPE) {
		size_t skipped = 0;
		t->merge_cap = pow2_at_least(2 * v->n_merges + 2);
		t->merge_map = malloc(t->merge_cap * sizeof *t->merge_map);
		if (!t->merge_map) {
			rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory for %zu merges",
					  v->n_merges);
			goto fail;
		}
		for (size_t i = 0; i < t->merge_cap; i++)
			t->merge_map[i].key = UINT64_MAX;
		char *cat = NULL;
		size_t cat_cap = 0;
		for (size_t i = 0; i < v->n_merges; i++) {
			const char *m = v->merges[i];
			size_t ml = v->merge_lens[i], sp = 1;
			while (sp < ml && m[sp] != ' ')
				sp++;
			if (sp >= ml) {
				skipped++;
				continue;
			}
			int32_t a = text_map_find(t, m, sp);
			int32_t b = text_map_find(t, m + sp + 1, ml - sp - 1);
			if (ml > cat_cap) {
				char *p = realloc(cat, ml);
				if (!p) {
					free(cat);
					rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
					goto fail;
				}
				cat = p;
				cat_cap = ml;
			}
			memcpy(cat, m, sp);
			memcpy(cat + sp, m + sp + 1, ml - sp - 1);
			int32_t r = text_map_find(t, cat, ml - 1);
			if (a < 0 || b < 0 || r < 0) {
				skipped++;
				continue;
			}
			uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
			size_t mask = t->merge_cap - 1, j = hash_u64(key) & mask;
			while (t->merge_map[j].key != UINT64_MAX && t->merge_map[j].key != key)
				j = (j + 1) & mask;
			if (t->merge_map[j].key == key)
				continue; /* a repeated pair keeps its first (lowest) rank */
			t->merge_map[j].key = key;
			t->merge_map[j].rank = (uint32_t)i;
			t->merge_map[j].result = r;
		}
		free(cat);
		if (skipped) {
			char msg[128];
			snprintf(msg, sizeof msg, "%zu of %zu merges skipped (malformed or naming unknown tokens)",
				 skipped, v->n_merges);
			add_warning(t, msg);
		}
	}

	/* special tokens matched in text */
	for (size_t i = 0; i < n; i++)
		if (is_special_type(t->type[i]) && t->text_off[i + 1] - t->text_off[i] > 1)
			t->n_special++;
	if (t->n_special) {
		t->special = malloc(t->n_special * sizeof *t->special);
		if (!t->special) {
			rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
			goto fail;
		}
		special_key *keys = malloc(t->n_special * sizeof *keys);
		if (!keys) {
			rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
			goto fail;
		}
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (is_special_type(t->type[i]) && t->text_off[i + 1] - t->text_off[i] > 1)
				keys[k++] = (special_key){ (unsigned char)t->text[t->text_off[i]],
							   t->text_off[i + 1] - t->text_off[i] - 1, (int32_t)i };
		qsort(keys, t->n_special, sizeof *keys, cmp_special);
		for (k = 0; k < t->n_special; k++)
			t->special[k] = keys[k].id;
		free(keys);
	}
	for (size_t b = 0, k = 0; b <= 256; b++) {
		while (k < t->n_special && (unsigned char)t->text[t->text_off[t->special[k]]] < b)
			k++;
		t->special_first[b] = k;
	}

	/* end of generation */
	add_eog(t, t->eos);
	add_eog(t, t->eot);
	add_eog(t, t->eom);
	static const char *const eog_names[] = { "<|im_end|>", "<|endoftext|>", "<|eot_id|>",
		"<|eom_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>" };
	for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++) {
		int32_t id = text_map_find(t, eog_names[i], strlen(eog_names[i]));
		if (id >= 0 && (t->type[id] == TOKEN_TYPE_CONTROL || !v->token_types))
			add_eog(t, id);
	}

	*out = t;
	return OS_OK;
fail:
	free(pbuf);
	tokenizer_close(t);
	return rc;
}

/* ---------------------------------------------------------------- GGUF */

/* Reads an optional token id key; -1 when absent. */
static int gguf_token_id(const gguf_file *f, const char *key, int32_t *id, os_error *err)
{
	uint32_t v;
	os_error e;
	int rc = gguf_get_u32(f, key, &v, &e);
	*id = -1;
	if (rc == OS_ENOTFOUND)
		return OS_OK;
	if (rc != OS_OK)
		return os_error_set(err, rc, "%s", os_error_text(&e));
	if (v > INT32_MAX)
		return os_error_set(err, OS_EFORMAT, "tokenizer: %s = %u out of range", key, v);
	*id = (int32_t)v;
	return OS_OK;
}

static int gguf_opt_bool(const gguf_file *f, const char *key, bool *out, bool dflt, os_error *err)
{
	os_error e;
	int rc = gguf_get_bool(f, key, out, &e);
	if (rc == OS_ENOTFOUND) {
		*out = dflt;
		return OS_OK;
	}
	if (rc != OS_OK)
		return os_error_set(err, rc, "%s", os_error_text(&e));
	return OS_OK;
}

/* Maps tokenizer.ggml.pre to a splitter; false when the name is unknown. */
static bool pre_from_name(const char *s, size_t n, enum tokenizer_pre *pre)
{
	static const struct {
		const char *name;
		enum tokenizer_pre pre;
	} names[] = {
		{ "default", TOKENIZER_PRE_GPT2 }, { "gpt-2", TOKENIZER_PRE_GPT2 },
		{ "gpt2", TOKENIZER_PRE_GPT2 }, { "phi-2", TOKENIZER_PRE_GPT2 },
		{ "roberta-bpe", TOKENIZER_PRE_GPT2 }, { "jina-es", TOKENIZER_PRE_GPT2 },
		{ "jina-de", TOKENIZER_PRE_GPT2 }, { "jais", TOKENIZER_PRE_GPT2 },
		{ "smollm", TOKENIZER_PRE_GPT2_DIGITS }, { "starcoder", TOKENIZER_PRE_GPT2_DIGITS },
		{ "refact", TOKENIZER_PRE_GPT2_DIGITS }, { "command-r", TOKENIZER_PRE_GPT2_DIGITS },
		{ "codeshell", TOKENIZER_PRE_GPT2_DIGITS }, { "exaone", TOKENIZER_PRE_GPT2_DIGITS },
		{ "minerva-7b", TOKENIZER_PRE_GPT2_DIGITS },
		{ "llama-bpe", TOKENIZER_PRE_LLAMA3 }, { "llama3", TOKENIZER_PRE_LLAMA3 },
		{ "llama-v3", TOKENIZER_PRE_LLAMA3 }, { "smaug-bpe", TOKENIZER_PRE_LLAMA3 },
		{ "dbrx", TOKENIZER_PRE_LLAMA3 }, { "falcon3", TOKENIZER_PRE_LLAMA3 },
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0) {
			*pre = names[i].pre;
			return true;
		}
	return false;
}

int tokenizer_open(tokenizer **out, const gguf_file *f, os_error *err)
{
	tokenizer_vocab v;
	const char **toks = NULL, **merges = NULL;
	size_t *tok_lens = NULL, *merge_lens = NULL;
	int32_t *types = NULL;
	float *scores = NULL;
	const char *s, *pre_name = NULL;
	size_t sl, pre_len = 0, n;
	enum gguf_type et;
	const void *data;
	os_error e;
	int rc;
	char warn[200] = "";

	*out = NULL;
	memset(&v, 0, sizeof v);
	rc = gguf_get_str(f, "tokenizer.ggml.model", &s, &sl, &e);
	if (rc == OS_ENOTFOUND)
		return os_error_set(err, OS_EFORMAT, "no tokenizer.ggml.model in '%s' (expected \"gpt2\" or \"llama\")",
				    gguf_path(f));
	if (rc != OS_OK)
		return os_error_set(err, rc, "%s", os_error_text(&e));
	if (sl == 4 && memcmp(s, "gpt2", 4) == 0)
		v.kind = TOKENIZER_KIND_BPE;
	else if (sl == 5 && memcmp(s, "llama", 5) == 0)
		v.kind = TOKENIZER_KIND_SPM;
	else
		return os_error_set(err, OS_EUNSUPPORTED,
				    "tokenizer.ggml.model = \"%.*s\" in '%s' is not supported (expected \"gpt2\" or \"llama\")",
				    (int)(sl > 64 ? 64 : sl), s, gguf_path(f));

	rc = gguf_get_arr(f, "tokenizer.ggml.tokens", &et, &n, &data, &e);
	if (rc == OS_ENOTFOUND)
		return os_error_set(err, OS_EFORMAT, "no tokenizer.ggml.tokens in '%s'", gguf_path(f));
	if (rc != OS_OK)
		return os_error_set(err, rc, "%s", os_error_text(&e));
	if (et != GGUF_TYPE_STRING || n == 0)
		return os_error_set(err, OS_EFORMAT,
				    "tokenizer.ggml.tokens in '%s': %zu elements of type %d (expected a non-empty string array)",
				    gguf_path(f), n, (int)et);
	toks = malloc(n * sizeof *toks);
	tok_lens = malloc(n * sizeof *tok_lens);
	if (!toks || !tok_lens) {
		rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory for %zu tokens", n);
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &toks[i], &tok_lens[i], err)) != OS_OK)
			goto fail;
	v.n_tokens = n;
	v.tokens = toks;
	v.token_lens = tok_lens;

	size_t nt;
	rc = gguf_get_arr(f, "tokenizer.ggml.token_type", &et, &nt, &data, &e);
	if (rc == OS_OK) {
		if ((et != GGUF_TYPE_INT32 && et != GGUF_TYPE_UINT32) || nt != n) {
			rc = os_error_set(err, OS_EFORMAT,
					  "tokenizer.ggml.token_type in '%s': %zu elements of type %d (expected %zu int32)",
					  gguf_path(f), nt, (int)et, n);
			goto fail;
		}
		types = malloc(n * sizeof *types);
		if (!types) {
			rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
			goto fail;
		}
		memcpy(types, data, n * sizeof *types); /* little-endian host assumed, as gguf.c does */
		v.token_types = types;
	} else if (rc != OS_ENOTFOUND) {
		rc = os_error_set(err, rc, "%s", os_error_text(&e));
		goto fail;
	}

	rc = gguf_get_arr(f, "tokenizer.ggml.scores", &et, &nt, &data, &e);
	if (rc == OS_OK) {
		if (et != GGUF_TYPE_FLOAT32 || nt != n) {
			rc = os_error_set(err, OS_EFORMAT,
					  "tokenizer.ggml.scores in '%s': %zu elements of type %d (expected %zu float32)",
					  gguf_path(f), nt, (int)et, n);
			goto fail;
		}
		scores = malloc(n * sizeof *scores);
		if (!scores) {
			rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
			goto fail;
		}
		memcpy(scores, data, n * sizeof *scores);
		v.scores = scores;
	} else if (rc != OS_ENOTFOUND) {
		rc = os_error_set(err, rc, "%s", os_error_text(&e));
		goto fail;
	}

	if (v.kind == TOKENIZER_KIND_BPE) {
		size_t nm;
		rc = gguf_get_arr(f, "tokenizer.ggml.merges", &et, &nm, &data, &e);
		if (rc == OS_ENOTFOUND) {
			rc = os_error_set(err, OS_EFORMAT, "no tokenizer.ggml.merges in '%s' (a gpt2 tokenizer needs them)",
					  gguf_path(f));
			goto fail;
		}
		if (rc != OS_OK) {
			rc = os_error_set(err, rc, "%s", os_error_text(&e));
			goto fail;
		}
		if (et != GGUF_TYPE_STRING) {
			rc = os_error_set(err, OS_EFORMAT,
					  "tokenizer.ggml.merges in '%s': element type %d (expected string)",
					  gguf_path(f), (int)et);
			goto fail;
		}
		merges = malloc((nm ? nm : 1) * sizeof *merges);
		merge_lens = malloc((nm ? nm : 1) * sizeof *merge_lens);
		if (!merges || !merge_lens) {
			rc = os_error_set(err, OS_ENOMEM, "tokenizer: out of memory for %zu merges", nm);
			goto fail;
		}
		for (size_t i = 0; i < nm; i++)
			if ((rc = gguf_get_arr_str(f, "tokenizer.ggml.merges", i, &merges[i], &merge_lens[i], err)) != OS_OK)
				goto fail;
		v.n_merges = nm;
		v.merges = merges;
		v.merge_lens = merge_lens;

		v.pre = TOKENIZER_PRE_GPT2;
		rc = gguf_get_str(f, "tokenizer.ggml.pre", &pre_name, &pre_len, &e);
		if (rc == OS_OK) {
			if (!pre_from_name(pre_name, pre_len, &v.pre))
				snprintf(warn, sizeof warn,
					 "unknown tokenizer.ggml.pre \"%.*s\": using the GPT-2 pre-tokenizer",
					 (int)(pre_len > 64 ? 64 : pre_len), pre_name);
		} else if (rc == OS_ENOTFOUND) {
			snprintf(warn, sizeof warn, "no tokenizer.ggml.pre: using the GPT-2 pre-tokenizer");
		} else {
			rc = os_error_set(err, rc, "%s", os_error_text(&e));
			goto fail;
		}
	}

	if ((rc = gguf_token_id(f, "tokenizer.ggml.bos_token_id", &v.bos_id, err)) ||
	    (rc = gguf_token_id(f, "tokenizer.ggml.eos_token_id", &v.eos_id, err)) ||
	    (rc = gguf_token_id(f, "tokenizer.ggml.unknown_token_id", &v.unk_id, err)) ||
	    (rc = gguf_token_id(f, "tokenizer.ggml.eot_token_id", &v.eot_id, err)) ||
	    (rc = gguf_token_id(f, "tokenizer.ggml.eom_token_id", &v.eom_id, err)))
		goto fail;
	bool spm = v.kind == TOKENIZER_KIND_SPM;
	if ((rc = gguf_opt_bool(f, "tokenizer.ggml.add_bos_token", &v.add_bos, spm, err)) ||
	    (rc = gguf_opt_bool(f, "tokenizer.ggml.add_space_prefix", &v.add_space_prefix, spm, err)))
		goto fail;

	rc = tokenizer_open_vocab(out, &v, err);
	if (rc == OS_OK && warn[0])
		add_warning(*out, warn);
fail:
	free(toks);
	free(tok_lens);
	free(merges);
	free(merge_lens);
	free(types);
	free(scores);
	return rc;
}

/* ---------------------------------------------------------------- accessors */

const char *tokenizer_warning(const tokenizer *t)
{
	return t->warning[0] ? t->warning : NULL;
}

const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len)
{
	if (id < 0 || (size_t)id >= t->n_vocab) {
		*len = 0;
		return NULL;
	}
	*len = t->piece_len[id];
	return t->piece + t->piece_off[id];
}

const char *tokenizer_token_text(const tokenizer *t, int32_t id)
{
	if (id < 0 || (size_t)id >= t->n_vocab)
		return NULL;
	return t->text + t->text_off[id];
}

int32_t tokenizer_find_token(const tokenizer *t, const char *text, size_t len)
{
	return text_map_find(t, text, len);
}

enum token_type tokenizer_token_type(const tokenizer *t, int32_t id)
{
	if (id < 0 || (size_t)id >= t->n_vocab)
		return TOKEN_TYPE_UNDEFINED;
	return (enum token_type)t->type[id];
}

size_t tokenizer_n_vocab(const tokenizer *t) { return t->n_vocab; }
enum tokenizer_kind tokenizer_kind(const tokenizer *t) { return t->kind; }
enum tokenizer_pre tokenizer_pre(const tokenizer *t) { return t->pre; }
int32_t tokenizer_bos(const tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const tokenizer *t) { return t->eos; }
bool tokenizer_add_bos(const tokenizer *t) { return t->add_bos; }
bool tokenizer_covers_all_bytes(const tokenizer *t) { return t->all_bytes; }
size_t tokenizer_max_piece_len(const tokenizer *t) { return t->max_piece_len; }

bool tokenizer_is_eog(const tokenizer *t, int32_t id)
{
	for (size_t i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id)
			return true;
	return false;
}

/* ---------------------------------------------------------------- encoding */

/* A symbol of the word being merged: a run of bytes, linked to its neighbours. */
typedef struct sym {
	int32_t id;            /* BPE: current token; SPM: unused until the end */
	int32_t prev, next;    /* -1 at the ends */
	uint32_t start, len;   /* bytes of the word; len 0: merged away */
} sym;

/* A candidate merge of sym[left] and sym[right]; the heap pops the smallest key:
 * (rank, left) for BPE, (descending score, left) for SPM. */
typedef struct cand {
	uint64_t key;
	int32_t left, right;
	int32_t a, b; /* BPE: ids of left/right when queued; SPM: a = merged length, b = token */
} cand;

/* Per-call scratch, grown as needed and freed at the end of tokenizer_encode. */
typedef struct scratch {
	int32_t *ids;          /* output */
	size_t n_ids, cap_ids;
	uint8_t *cls;          /* [n_chars] class of each char of the fragment */
	uint32_t *off;         /* [n_chars + 1] byte offset of each char */
	size_t cap_cls, cap_off;
	sym *syms;
	size_t cap_syms;
	cand *heap;
	size_t n_heap, cap_heap;
	char *buf;             /* SPM: the fragment with spaces as U+2581 */
	size_t cap_buf;
} scratch;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return OS_OK;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *q = realloc(*p, c * elem);
	if (!q)
		return OS_ENOMEM;
	*p = q;
	*cap = c;
	return OS_OK;
}

static int emit(scratch *sc, int32_t id)
{
	if (sc->n_ids == sc->cap_ids &&
	    grow((void **)&sc->ids, &sc->cap_ids, sc->n_ids + 1, sizeof *sc->ids))
		return OS_ENOMEM;
	sc->ids[sc->n_ids++] = id;
	return OS_OK;
}

static int heap_push(scratch *sc, cand c)
{
	if (grow((void **)&sc->heap, &sc->cap_heap, sc->n_heap + 1, sizeof *sc->heap))
		return OS_ENOMEM;
	size_t i = sc->n_heap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (sc->heap[p].key <= c.key)
			break;
		sc->heap[i] = sc->heap[p];
		i = p;
	}
	sc->heap[i] = c;
	return OS_OK;
}

static cand heap_pop(scratch *sc)
{
	cand top = sc->heap[0], last = sc->heap[--sc->n_heap];
	size_t i = 0, n = sc->n_heap;
	for (;;) {
		size_t l = 2 * i + 1, m;
		if (l >= n)
			break;
		m = l + 1 < n && sc->heap[l + 1].key < sc->heap[l].key ? l + 1 : l;
		if (sc->heap[m].key >= last.key)
			break;
		sc->heap[i] = sc->heap[m];
		i = m;
	}
	if (n)
		sc->heap[i] = last;
	return top;
}

/* Queues the merge of sym[l] and sym[r] if the vocabulary has one. */
static int bpe_try_pair(const tokenizer *t, scratch *sc, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return OS_OK;
	const merge_slot *m = merge_map_find(t, sc->syms[l].id, sc->syms[r].id);
	if (!m)
		return OS_OK;
	cand c = { (uint64_t)m->rank << 32 | (uint32_t)l, l, r, sc->syms[l].id, sc->syms[r].id };
	return heap_push(sc, c);
}

/* Byte-level BPE of one word (raw bytes w[0..n)). */
static int bpe_word(const tokenizer *t, scratch *sc, const unsigned char *w, size_t n)
{
	int rc;
	if (n == 1) { /* the common case of punctuation and digits */
		int32_t id = t->byte_id[w[0]];
		return id >= 0 ? emit(sc, id) : OS_OK;
	}
	if (grow((void **)&sc->syms, &sc->cap_syms, n, sizeof *sc->syms))
		return OS_ENOMEM;
	int32_t ns = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t id = t->byte_id[w[i]];
		if (id < 0)
			continue; /* no token for this byte: dropped (see tokenizer_encode) */
		sc->syms[ns] = (sym){ id, ns - 1, ns + 1, (uint32_t)i, 1 };
		ns++;
	}
	if (ns == 0)
		return OS_OK;
	sc->syms[ns - 1].next = -1;
	sc->n_heap = 0;
	for (int32_t i = 0; i + 1 < ns; i++)
		if ((rc = bpe_try_pair(t, sc, i, i + 1)))
			return rc;
	while (sc->n_heap) {
		cand c = heap_pop(sc);
		sym *l = &sc->syms[c.left], *r = &sc->syms[c.right];
		if (l->len == 0 || r->len == 0 || l->next != c.right || l->id != c.a || r->id != c.b)
			continue; /* stale: one side has changed since it was queued */
		const merge_slot *m = merge_map_find(t, c.a, c.b);
		l->id = m->result;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			sc->syms[r->next].prev = c.left;
		if ((rc = bpe_try_pair(t, sc, l->prev, c.left)) ||
		    (rc = bpe_try_pair(t, sc, c.left, l->next)))
			return rc;
	}
	for (int32_t i = 0; i >= 0; i = sc->syms[i].next)
		if ((rc = emit(sc, sc->syms[i].id)))
			return rc;
	return OS_OK;
}

/* Receives each word the pre-tokenizer cuts: w[0..n) raw bytes. */
typedef int (*word_fn)(void *ctx, const unsigned char *w, size_t n);

/* Classifies the chars of s[0..n) into sc->cls / sc->off; *n_chars is their number. */
static int classify(scratch *sc, const unsigned char *s, size_t n, size_t *n_chars)
{
	if (grow((void **)&sc->cls, &sc->cap_cls, n + 1, sizeof *sc->cls) ||
	    grow((void **)&sc->off, &sc->cap_off, n + 1, sizeof *sc->off))
		return OS_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = 1;
		if (s[i] < 0x80)
			cp = s[i];
		else
			l = unicode_utf8_decode(s + i, n - i, &cp);
		sc->cls[k] = (uint8_t)unicode_class_of(cp);
		sc->off[k] = (uint32_t)i;
		k++;
		i += l;
	}
	sc->off[k] = (uint32_t)n;
	*n_chars = k;
	return OS_OK;
}

static bool is_ascii_ci(unsigned char c, char lower)
{
	return c == (unsigned char)lower || c == (unsigned char)(lower - 32);
}

/* Length in chars of a contraction 's 't 're 've 'm 'll 'd at char i (0 if none). */
static size_t contraction(const unsigned char *s, const uint32_t *off, size_t i, size_t end,
			  bool ci)
{
	if (s[off[i]] != '\'' || i + 1 >= end)
		return 0;
	unsigned char a = s[off[i + 1]];
	unsigned char b = i + 2 < end ? s[off[i + 2]] : 0;
#define CH(x, c) (ci ? is_ascii_ci((x), (c)) : (x) == (unsigned char)(c))
	if (CH(a, 's') || CH(a, 't') || CH(a, 'm') || CH(a, 'd'))
		return 2;
	if ((CH(a, 'r') && CH(b, 'e')) || (CH(a, 'v') && CH(b, 'e')) || (CH(a, 'l') && CH(b, 'l')))
		return 3;
#undef CH
	return 0;
}

/* The GPT-2 regex over chars [i0, end) of the classified fragment; calls bpe_word per word. */
static int split_gpt2(scratch *sc, const unsigned char *s, size_t i0, size_t end, word_fn fn, void *ctx)
{
	const uint8_t *cls = sc->cls;
	const uint32_t *off = sc->off;
	int rc;
	for (size_t i = i0; i < end;) {
		size_t j = i;
		uint8_t c = cls[i];
		bool sp = s[off[i]] == ' ' && i + 1 < end; /* a space that may lead the next word */
		uint8_t nc = i + 1 < end ? cls[i + 1] : UNICODE_SPACE;
		size_t k = contraction(s, off, i, end, false);
		if (k) {
			j = i + k;
		} else if (c == UNICODE_LETTER || (sp && nc == UNICODE_LETTER)) {
			j = c == UNICODE_LETTER ? i + 1 : i + 2;
			while (j < end && cls[j] == UNICODE_LETTER)
				j++;
		} else if (c == UNICODE_NUMBER || (sp && nc == UNICODE_NUMBER)) {
			j = c == UNICODE_NUMBER ? i + 1 : i + 2;
			while (j < end && cls[j] == UNICODE_NUMBER)
				j++;
		} else if (c == UNICODE_OTHER || (sp && nc == UNICODE_OTHER)) {
			j = c == UNICODE_OTHER ? i + 1 : i + 2;
			while (j < end && cls[j] == UNICODE_OTHER)
				j++;
		} else { /* whitespace: \s+(?!\S) then \s+ */
			j = i + 1;
			while (j < end && cls[j] == UNICODE_SPACE)
				j++;
			if (j < end && j - i >= 2)
				j--; /* leave the last space to lead the next word */
		}
		if ((rc = fn(ctx, s + off[i], off[j] - off[i])))
			return rc;
		i = j;
	}
	return OS_OK;
}

/* Llama 3's regex over chars [i0, end). */
static int split_llama3(scratch *sc, const unsigned char *s, size_t i0, size_t end, word_fn fn, void *ctx)
{
	const uint8_t *cls = sc->cls;
	const uint32_t *off = sc->off;
	int rc;
#define IS_NL(k) (s[off[k]] == '\r' || s[off[k]] == '\n')
	for (size_t i = i0; i < end;) {
		size_t j;
		uint8_t c = cls[i];
		uint8_t nc = i + 1 < end ? cls[i + 1] : UNICODE_SPACE;
		size_t k = contraction(s, off, i, end, true);
		if (k) {
			j = i + k;
		} else if (c == UNICODE_LETTER || (c != UNICODE_NUMBER && !IS_NL(i) && nc == UNICODE_LETTER)) {
			/* [^\r\n\p{L}\p{N}]?\p{L}+ */
			j = i + 1;
			while (j < end && cls[j] == UNICODE_LETTER)
				j++;
		} else if (c == UNICODE_NUMBER) { /* \p{N}{1,3} */
			j = i + 1;
			while (j < end && j < i + 3 && cls[j] == UNICODE_NUMBER)
				j++;
		} else if (c == UNICODE_OTHER || (s[off[i]] == ' ' && nc == UNICODE_OTHER)) {
			/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
			j = c == UNICODE_OTHER ? i + 1 : i + 2;
			while (j < end && cls[j] == UNICODE_OTHER)
				j++;
			while (j < end && IS_NL(j))
				j++;
		} else { /* whitespace */
			size_t e = i + 1, last_nl = IS_NL(i) ? i + 1 : 0;
			while (e < end && cls[e] == UNICODE_SPACE) {
				if (IS_NL(e))
					last_nl = e + 1;
				e++;
			}
			if (last_nl)
				j = last_nl;        /* \s*[\r\n]+ */
			else if (e == end || e - i == 1)
				j = e;              /* \s+ at the end, or a lone space before \S */
			else
				j = e - 1;          /* \s+(?!\S) */
		}
		if ((rc = fn(ctx, s + off[i], off[j] - off[i])))
			return rc;
		i = j;
	}
#undef IS_NL
	return OS_OK;
}

/* Cuts s[0..n) into words with the given pre-tokenizer, calling fn on each. */
static int split_words(scratch *sc, enum tokenizer_pre pre, const unsigned char *s, size_t n,
		       word_fn fn, void *ctx)
{
	size_t nc;
	int rc;
	if ((rc = classify(sc, s, n, &nc)))
		return rc;
	switch (pre) {
	case TOKENIZER_PRE_LLAMA3:
		return split_llama3(sc, s, 0, nc, fn, ctx);
	case TOKENIZER_PRE_GPT2_DIGITS:
		/* every number char is a word of its own; the regex runs between them */
		for (size_t i = 0; i < nc;) {
			if (sc->cls[i] == UNICODE_NUMBER) {
				if ((rc = fn(ctx, s + sc->off[i], sc->off[i + 1] - sc->off[i])))
					return rc;
				i++;
				continue;
			}
			size_t j = i;
			while (j < nc && sc->cls[j] != UNICODE_NUMBER)
				j++;
			if ((rc = split_gpt2(sc, s, i, j, fn, ctx)))
				return rc;
			i = j;
		}
		return OS_OK;
	case TOKENIZER_PRE_GPT2:
	default:
		return split_gpt2(sc, s, 0, nc, fn, ctx);
	}
}

typedef struct bpe_ctx {
	const tokenizer *t;
	scratch *sc;
} bpe_ctx;

static int bpe_word_fn(void *ctx, const unsigned char *w, size_t n)
{
	bpe_ctx *c = ctx;
	return bpe_word(c->t, c->sc, w, n);
}

/* Byte-level BPE of a fragment of plain text (no special tokens in it). */
static int encode_bpe_fragment(const tokenizer *t, scratch *sc, const unsigned char *s, size_t n)
{
	bpe_ctx c = { t, sc };
	return split_words(sc, t->pre, s, n, bpe_word_fn, &c);
}

typedef struct ends_ctx {
	const unsigned char *base;
	size_t *ends;
	size_t n, cap;
} ends_ctx;

static int ends_word_fn(void *ctx, const unsigned char *w, size_t n)
{
	ends_ctx *c = ctx;
	if (grow((void **)&c->ends, &c->cap, c->n + 1, sizeof *c->ends))
		return OS_ENOMEM;
	c->ends[c->n++] = (size_t)(w - c->base) + n;
	return OS_OK;
}

int tokenizer_split_words(enum tokenizer_pre pre, const char *text, size_t len, size_t **ends,
			  size_t *n_words, os_error *err)
{
	scratch sc;
	ends_ctx c = { (const unsigned char *)text, NULL, 0, 0 };
	int rc = OS_OK;

	memset(&sc, 0, sizeof sc);
	*ends = NULL;
	*n_words = 0;
	if (len > UINT32_MAX / 4)
		return os_error_set(err, OS_ERANGE, "tokenizer: text of %zu bytes is too long", len);
	if (len && (rc = split_words(&sc, pre, c.base, len, ends_word_fn, &c))) {
		free(c.ends);
		c.ends = NULL;
		os_error_set(err, rc, "tokenizer: out of memory splitting %zu bytes", len);
	} else {
		*ends = c.ends;
		*n_words = c.n;
	}
	free(sc.cls);
	free(sc.off);
	return rc;
}

/* Token usable as a SentencePiece merge result or a whole symbol. */
static int32_t spm_lookup(const tokenizer *t, const char *s, size_t n)
{
	int32_t id = text_map_find(t, s, n);
	if (id < 0)
		return -1;
	uint8_t ty = t->type[id];
	if (ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_BYTE || ty == TOKEN_TYPE_UNKNOWN)
		return -1;
	return id;
}

/* float -> uint32 with the same order, so scores sort as integers */
static uint32_t float_order(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static int spm_try_pair(const tokenizer *t, scratch *sc, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return OS_OK;
	uint32_t len = sc->syms[l].len + sc->syms[r].len;
	int32_t id = spm_lookup(t, sc->buf + sc->syms[l].start, len);
	if (id < 0)
		return OS_OK;
	/* highest score first, then leftmost */
	cand c = { (uint64_t)(~float_order(t->score[id])) << 32 | (uint32_t)l, l, r, (int32_t)len, id };
	return heap_push(sc, c);
}

/* SentencePiece BPE of a fragment of plain text: spaces become U+2581 (after an optional
 * leading one), symbols start as UTF-8 chars and merge by score; a final symbol that is not a
 * token falls back to <0xNN> byte tokens (or UNK). */
static int encode_spm_fragment(const tokenizer *t, scratch *sc, const unsigned char *s, size_t n,
			       bool prefix)
{
	int rc;
	size_t need = (n + 1) * 3 + 1;
	if (grow((void **)&sc->buf, &sc->cap_buf, need, 1))
		return OS_ENOMEM;
	size_t bl = 0;
	if (prefix) {
		memcpy(sc->buf, "\xE2\x96\x81", 3);
		bl = 3;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ') {
			memcpy(sc->buf + bl, "\xE2\x96\x81", 3);
			bl += 3;
		} else {
			sc->buf[bl++] = (char)s[i];
		}
	}
	if (bl == 0)
		return OS_OK;
	if (grow((void **)&sc->syms, &sc->cap_syms, bl, sizeof *sc->syms))
		return OS_ENOMEM;
	int32_t ns = 0;
	for (size_t i = 0; i < bl;) {
		uint32_t cp;
		size_t l = unicode_utf8_decode((const unsigned char *)sc->buf + i, bl - i, &cp);
		sc->syms[ns] = (sym){ -1, ns - 1, ns + 1, (uint32_t)i, (uint32_t)l };
		ns++;
		i += l;
	}
	sc->syms[ns - 1].next = -1;
	sc->n_heap = 0;
	for (int32_t i = 0; i + 1 < ns; i++)
		if ((rc = spm_try_pair(t, sc, i, i + 1)))
			return rc;
	while (sc->n_heap) {
		cand c = heap_pop(sc);
		sym *l = &sc->syms[c.left], *r = &sc->syms[c.right];
		if (l->len == 0 || r->len == 0 || l->next != c.right || l->len + r->len != (uint32_t)c.a)
			continue;
		l->len += r->len;
		l->id = c.b;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			sc->syms[r->next].prev = c.left;
		if ((rc = spm_try_pair(t, sc, l->prev, c.left)) ||
		    (rc = spm_try_pair(t, sc, c.left, l->next)))
			return rc;
	}
	for (int32_t i = 0; i >= 0; i = sc->syms[i].next) {
		sym *y = &sc->syms[i];
		int32_t id = y->id >= 0 ? y->id : spm_lookup(t, sc->buf + y->start, y->len);
		if (id >= 0) {
			if ((rc = emit(sc, id)))
				return rc;
			continue;
		}
		for (uint32_t k = 0; k < y->len; k++) {
			int32_t b = t->byte_id[(unsigned char)sc->buf[y->start + k]];
			if (b < 0)
				b = t->unk;
			if (b >= 0 && (rc = emit(sc, b)))
				return rc;
		}
	}
	return OS_OK;
}

/* The special token that starts at s[0..n), longest first; -1 if none. */
static int32_t match_special(const tokenizer *t, const unsigned char *s, size_t n, bool parse_special)
{
	for (size_t k = t->special_first[s[0]]; k < t->special_first[s[0] + 1]; k++) {
		int32_t id = t->special[k];
		if (!parse_special && t->type[id] != TOKEN_TYPE_USER_DEFINED)
			continue;
		size_t l;
		const char *x = tok_text(t, id, &l);
		if (l <= n && memcmp(x, s, l) == 0)
			return id;
	}
	return -1;
}

static int encode_fragment(const tokenizer *t, scratch *sc, const unsigned char *s, size_t n,
			   bool prev_special)
{
	if (t->kind == TOKENIZER_KIND_SPM)
		return encode_spm_fragment(t, sc, s, n, t->add_space_prefix && prev_special);
	return n ? encode_bpe_fragment(t, sc, s, n) : OS_OK;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_bos,
		     bool parse_special, int32_t **ids, size_t *n_ids, os_error *err)
{
	scratch sc;
	const unsigned char *s = (const unsigned char *)text;
	int rc = OS_OK;

	memset(&sc, 0, sizeof sc);
	*ids = NULL;
	*n_ids = 0;
	if (len > UINT32_MAX / 4) {
		return os_error_set(err, OS_ERANGE, "tokenizer: text of %zu bytes is too long (at most %u)",
				    len, UINT32_MAX / 4);
	}
	if (add_bos && t->add_bos && t->bos >= 0 && (rc = emit(&sc, t->bos)))
		goto fail;

	/* split at special tokens; each run of text between them is encoded on its own */
	bool prev_special = true;
	size_t start = 0;
	for (size_t i = 0; i < len;) {
		int32_t id = t->n_special ? match_special(t, s + i, len - i, parse_special) : -1;
		if (id < 0) {
			i++;
			continue;
		}
		if (i > start) {
			if ((rc = encode_fragment(t, &sc, s + start, i - start, prev_special)))
				goto fail;
			prev_special = false;
		}
		if ((rc = emit(&sc, id)))
			goto fail;
		prev_special = true;
		i += t->text_off[id + 1] - t->text_off[id] - 1;
		start = i;
	}
	if (len > start && (rc = encode_fragment(t, &sc, s + start, len - start, prev_special)))
		goto fail;

	*ids = sc.ids;
	*n_ids = sc.n_ids;
	sc.ids = NULL;
fail:
	if (rc)
		os_error_set(err, rc, "tokenizer: out of memory encoding %zu bytes", len);
	free(sc.ids);
	free(sc.cls);
	free(sc.off);
	free(sc.syms);
	free(sc.heap);
	free(sc.buf);
	return rc;
}

/* ---------------------------------------------------------------- decoding */

static bool skip_piece(const tokenizer *t, int32_t id, unsigned flags)
{
	uint8_t ty = t->type[id];
	return (flags & TOKENIZER_DECODE_SKIP_CONTROL) &&
	       (ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_UNKNOWN);
}

int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
		     char **out, size_t *len, os_error *err)
{
	char *buf = NULL;
	size_t bl = 0, cap = 0;
	bool strip = (flags & TOKENIZER_DECODE_STRIP_SPACE) && t->kind == TOKENIZER_KIND_SPM &&
		     t->add_space_prefix;

	*out = NULL;
	*len = 0;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || (size_t)ids[i] >= t->n_vocab) {
			free(buf);
			return os_error_set(err, OS_ERANGE, "tokenizer: id %d at position %zu out of range (vocabulary of %zu)",
					    (int)ids[i], i, t->n_vocab);
		}
		if (skip_piece(t, ids[i], flags))
			continue;
		size_t pl;
		const char *p = tokenizer_piece(t, ids[i], &pl);
		if (strip && pl > 0) {
			if (p[0] == ' ') {
				p++;
				pl--;
			}
			strip = false;
		}
		if (buf_append(&buf, &bl, &cap, p, pl)) {
			free(buf);
			return os_error_set(err, OS_ENOMEM, "tokenizer: out of memory decoding %zu ids", n);
		}
	}
	if (!buf && buf_append(&buf, &bl, &cap, "", 0))
		return os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
	buf[bl] = '\0';
	*out = buf;
	*len = bl;
	return OS_OK;
}

struct tokenizer_stream {
	const tokenizer *t;
	unsigned flags;
	bool strip;       /* the next text piece still loses a leading space */
	char *buf;        /* [cap] the bytes handed out by the last call */
	size_t cap;       /* max piece length + room for the held bytes */
	char held[4];     /* an incomplete UTF-8 sequence waiting for its next bytes */
	size_t n_held;    /* < 4 */
};

int tokenizer_stream_new(tokenizer_stream **out, const tokenizer *t, unsigned flags, os_error *err)
{
	tokenizer_stream *s = calloc(1, sizeof *s);
	*out = NULL;
	if (!s)
		return os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
	s->t = t;
	s->flags = flags;
	s->cap = t->max_piece_len + 8;
	s->buf = malloc(s->cap);
	if (!s->buf) {
		free(s);
		return os_error_set(err, OS_ENOMEM, "tokenizer: out of memory");
	}
	s->strip = (flags & TOKENIZER_DECODE_STRIP_SPACE) && t->kind == TOKENIZER_KIND_SPM &&
		   t->add_space_prefix;
	*out = s;
	return OS_OK;
}

void tokenizer_stream_free(tokenizer_stream *s)
{
	if (!s)
		return;
	free(s->buf);
	free(s);
}

/* True if b[0..n) (n shorter than the length its lead byte announces) can still grow into a
 * valid sequence. */
static bool utf8_valid_prefix(const unsigned char *b, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if ((b[i] & 0xC0) != 0x80)
			return false;
	/* the second byte's narrower ranges: no overlongs, surrogates or > U+10FFFF */
	if (n >= 2 && ((b[0] == 0xE0 && b[1] < 0xA0) || (b[0] == 0xED && b[1] > 0x9F) ||
		       (b[0] == 0xF0 && b[1] < 0x90) || (b[0] == 0xF4 && b[1] > 0x8F)))
		return false;
	return true;
}

const char *tokenizer_stream_push(tokenizer_stream *s, int32_t id, size_t *len)
{
	const tokenizer *t = s->t;
	size_t pl = 0;
	const char *p = NULL;

	if (id >= 0 && (size_t)id < t->n_vocab && !skip_piece(t, id, s->flags))
		p = tokenizer_piece(t, id, &pl);
	if (p && s->strip && pl > 0) {
		if (p[0] == ' ') {
			p++;
			pl--;
		}
		s->strip = false;
	}
	memcpy(s->buf, s->held, s->n_held);
	if (pl)
		memcpy(s->buf + s->n_held, p, pl);
	size_t n = s->n_held + pl;
	const unsigned char *b = (const unsigned char *)s->buf;

	/* hand out everything before an incomplete but still valid sequence at the very end;
	 * bytes that can never be part of a valid sequence go out as they are */
	size_t i = 0;
	while (i < n) {
		size_t l = unicode_utf8_lead_len(b[i]);
		if (l > 1 && i + l > n && utf8_valid_prefix(b + i, n - i))
			break;
		if (l > 1 && i + l <= n) {
			uint32_t cp;
			i += unicode_utf8_decode(b + i, n - i, &cp);
		} else {
			i++;
		}
	}
	s->n_held = n - i;
	memcpy(s->held, s->buf + i, s->n_held);
	*len = i;
	return s->buf;
}

const char *tokenizer_stream_flush(tokenizer_stream *s, size_t *len)
{
	memcpy(s->buf, s->held, s->n_held);
	*len = s->n_held;
	s->n_held = 0;
	s->strip = (s->flags & TOKENIZER_DECODE_STRIP_SPACE) && s->t->kind == TOKENIZER_KIND_SPM &&
		   s->t->add_space_prefix;
	return s->buf;
}
