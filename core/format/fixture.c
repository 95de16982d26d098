/* fixture.c: a tiny llama GGUF from a seed: GPT-2 byte-level BPE vocabulary whose merges are
 * learned greedily from a built-in English text, random weights, written through gguf_writer
 * in the tensor order llama.cpp's converter produces (Hugging Face names sorted). */
#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* The merge-learning text: plain words, no apostrophes (GPT-2's pre-tokenizer splits
 * contractions specially and we do not model that). */
static const char *const fixture_text[] = {
	"The quick brown fox jumps over the lazy dog.",
	"A language model reads the text and predicts the next token.",
	"The weather is nice today, and the sun is shining on the hills.",
	"She sells sea shells on the sea shore near the old harbor.",
	"In the beginning there was the word, and the word was with the writer.",
	"The studio quantizes the model, then measures the speed and the accuracy.",
	"Speculative decoding uses a small draft model to propose tokens.",
	"The target model checks the proposed tokens in a single forward pass.",
	"Rain fell on the roof of the house all through the night.",
	"There are seven days in a week and twelve months in a year.",
	"The teacher asked the students to read the chapter again.",
	"Learning to write clean code takes practice and patience.",
	"The children played in the garden while their parents talked.",
	"He opened the window and the cold air came into the room.",
	"The river runs through the valley and into the sea.",
	"Every morning the baker makes fresh bread for the town.",
	"The train leaves the station at nine in the morning.",
	"Reading books is one of the best ways to learn new things.",
	"They walked along the beach and watched the waves.",
	"The computer computes the answer faster than the person.",
	"Hello, how are you today? I am fine, thank you.",
	"The cat sat on the mat and the dog slept by the fire.",
	"Numbers like 1, 2, 3 and 42 appear in the text too.",
	"The moon is bright in the night sky over the mountains.",
	"Water boils at one hundred degrees at sea level.",
	"The library opens at ten and closes at six in the evening.",
	"She wrote a letter to her friend in another country.",
	"The engine reads the weights and runs the layers in order.",
	"The store keeps the results of every job in a database.",
	"Good tests fail when the code is wrong and pass when it is right.",
};

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others, in byte order,
 * to U+0100 onwards. Writes the UTF-8 (1 or 2 bytes) of byte b's character into out. */
static size_t byte_to_utf8(unsigned b, char out[3])
{
	unsigned cp;
	if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) {
		cp = b;
	} else {
		unsigned n = 0; /* how many non-printable bytes come before b */
		for (unsigned x = 0; x < b; x++)
			if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) ||
			      (x >= 0xae && x <= 0xff)))
				n++;
		cp = 256 + n;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = '\0';
		return 1;
	}
	out[0] = (char)(0xc0 | (cp >> 6));
	out[1] = (char)(0x80 | (cp & 0x3f));
	out[2] = '\0';
	return 2;
}

typedef struct word {
	int *sym;      /* token ids */
	size_t n;
	size_t count;  /* occurrences in the text */
} word;

typedef struct bpe {
	char **tok;       /* token strings (UTF-8 of the mapped bytes), owned */
	size_t n_tok;
	char **merges;    /* "left right", owned */
	size_t n_merges;
	word *words;
	size_t n_words;
} bpe;

static void bpe_free(bpe *b)
{
	for (size_t i = 0; i < b->n_tok; i++)
		free(b->tok[i]);
	for (size_t i = 0; i < b->n_merges; i++)
		free(b->merges[i]);
	for (size_t i = 0; i < b->n_words; i++)
		free(b->words[i].sym);
	free(b->tok);
	free(b->merges);
	free(b->words);
}

static int char_class(unsigned char c)
{
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return 1;
	if (c >= '0' && c <= '9')
		return 2;
	return 3;
}

/* Adds a pre-tokenized piece (GPT-2 style: an optional leading space and a run of letters,
 * digits or other symbols) to the word table, counting repeats. */
static int bpe_add_piece(bpe *b, const char *s, size_t len)
{
	for (size_t i = 0; i < b->n_words; i++) {
		word *w = &b->words[i];
		if (w->n != len)
			continue;
		size_t k = 0;
		while (k < len && w->sym[k] == (unsigned char)s[k])
			k++;
		if (k == len) {
			w->count++;
			return OS_OK;
		}
	}
	word *nw = realloc(b->words, (b->n_words + 1) * sizeof *nw);
	if (!nw)
		return OS_ENOMEM;
	b->words = nw;
	word *w = &b->words[b->n_words];
	w->sym = malloc(len * sizeof *w->sym);
	if (!w->sym)
		return OS_ENOMEM;
	for (size_t k = 0; k < len; k++)
		w->sym[k] = (unsigned char)s[k];
	w->n = len;
	w->count = 1;
	b->n_words++;
	return OS_OK;
}

static int bpe_pretokenize(bpe *b)
{
	for (size_t t = 0; t < sizeof fixture_text / sizeof *fixture_text; t++) {
		const char *s = fixture_text[t];
		size_t i = 0, n = strlen(s);
		while (i < n) {
			size_t start = i;
			if (s[i] == ' ')
				i++;
			if (i >= n)
				break;
			int cls = char_class((unsigned char)s[i]);
			while (i < n && s[i] != ' ' && char_class((unsigned char)s[i]) == cls)
				i++;
			if (bpe_add_piece(b, s + start, i - start))
				return OS_ENOMEM;
		}
	}
	return OS_OK;
}

static long bpe_find_tok(const bpe *b, const char *s)
{
	for (size_t i = 0; i < b->n_tok; i++)
		if (strcmp(b->tok[i], s) == 0)
			return (long)i;
	return -1;
}

/* Learns n merges greedily: the most frequent adjacent pair inside words (ties to the
 * smallest ids), skipping pairs whose concatenation is already a token. */
static int bpe_learn(bpe *b, size_t n_merges, os_error *err)
{
	b->merges = calloc(n_merges, sizeof *b->merges);
	char **tok = realloc(b->tok, (256 + n_merges) * sizeof *tok);
	if (!b->merges || !tok)
		return os_error_set(err, OS_ENOMEM, "out of memory learning merges");
	b->tok = tok;
	size_t V = 256 + n_merges;
	size_t *cnt = malloc(V * V * sizeof *cnt);
	if (!cnt)
		return os_error_set(err, OS_ENOMEM, "out of memory learning merges");
	while (b->n_merges < n_merges) {
		memset(cnt, 0, V * V * sizeof *cnt);
		for (size_t i = 0; i < b->n_words; i++)
			for (size_t k = 0; k + 1 < b->words[i].n; k++)
				cnt[(size_t)b->words[i].sym[k] * V + (size_t)b->words[i].sym[k + 1]] +=
					b->words[i].count;
		size_t best = 0, best_cnt = 0;
		char *cat = NULL;
		for (;;) {
			best_cnt = 0;
			for (size_t p = 0; p < V * V; p++)
				if (cnt[p] > best_cnt) {
					best_cnt = cnt[p];
					best = p;
				}
			if (!best_cnt)
				break;
			const char *l = b->tok[best / V], *r = b->tok[best % V];
			cat = malloc(strlen(l) + strlen(r) + 1);
			if (!cat) {
				free(cnt);
				return os_error_set(err, OS_ENOMEM, "out of memory learning merges");
			}
			strcpy(cat, l);
			strcat(cat, r);
			if (bpe_find_tok(b, cat) < 0)
				break;
			free(cat); /* already a token by another route: skip this pair */
			cat = NULL;
			cnt[best] = 0;
		}
		if (!best_cnt) {
			free(cnt);
			return os_error_set(err, OS_EINTERNAL,
					    "fixture text yields only %zu merges (need %zu)",
					    b->n_merges, n_merges);
		}
		int left = (int)(best / V), right = (int)(best % V), id = (int)b->n_tok;
		size_t mlen = strlen(b->tok[left]) + strlen(b->tok[right]) + 2;
		char *m = malloc(mlen);
		if (!m) {
			free(cat);
			free(cnt);
			return os_error_set(err, OS_ENOMEM, "out of memory learning merges");
		}
		snprintf(m, mlen, "%s %s", b->tok[left], b->tok[right]);
		b->merges[b->n_merges++] = m;
		b->tok[b->n_tok++] = cat;
		for (size_t i = 0; i < b->n_words; i++) {
			word *w = &b->words[i];
			size_t o = 0;
			for (size_t k = 0; k < w->n; k++) {
				if (k + 1 < w->n && w->sym[k] == left && w->sym[k + 1] == right) {
					w->sym[o++] = id;
					k++;
				} else {
					w->sym[o++] = w->sym[k];
				}
			}
			w->n = o;
		}
	}
	free(cnt);
	return OS_OK;
}

static int bpe_build(bpe *b, os_error *err)
{
	memset(b, 0, sizeof *b);
	b->tok = calloc(256, sizeof *b->tok);
	if (!b->tok)
		return os_error_set(err, OS_ENOMEM, "out of memory building the vocabulary");
	for (unsigned i = 0; i < 256; i++) {
		char u[3];
		byte_to_utf8(i, u);
		b->tok[i] = strdup(u);
		if (!b->tok[i])
			return os_error_set(err, OS_ENOMEM, "out of memory building the vocabulary");
		b->n_tok++;
	}
	if (bpe_pretokenize(b))
		return os_error_set(err, OS_ENOMEM, "out of memory building the vocabulary");
	/* pieces are bytes; map them to byte token ids (identity) before learning */
	return bpe_learn(b, GGUF_FIXTURE_N_MERGES, err);
}

/* ---- weights ----------------------------------------------------------------------- */

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
	uint64_t x = (r->s += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Standard normal by Box-Muller (one of the pair; simple over fast). */
static float rng_normal(rng *r)
{
	double u1 = ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
	double u2 = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
	return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

typedef struct fx_tensor {
	char name[64];
	uint32_t type;
	uint32_t n_dims;
	uint64_t ne[2];
	float mean, std;  /* init: mean + std * normal */
	void *data;       /* owned, quantized */
	size_t n_bytes;
} fx_tensor;

static uint32_t file_type_of(uint32_t t)
{
	switch (t) {
	case GGML_TYPE_F16: return 1;
	case GGML_TYPE_Q4_0: return 2;
	case GGML_TYPE_Q4_1: return 3;
	case GGML_TYPE_Q8_0: return 7;
	case GGML_TYPE_BF16: return 32;
	default: return 0;
	}
}

static const char chat_template[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
	"{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
	"{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
	"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

static void add_tensor_spec(fx_tensor *ts, size_t *n, const char *name, uint32_t type,
			   uint32_t n_dims, uint64_t ne0, uint64_t ne1, float mean, float std)
{
	fx_tensor *t = &ts[(*n)++];
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	t->type = type;
	t->n_dims = n_dims;
	t->ne[0] = ne0;
	t->ne[1] = ne1;
	t->mean = mean;
	t->std = std;
}

/* Sorts layer indices by their decimal text, as the converter's sorted HF names do
 * (blk.0, blk.1, blk.10, blk.11, ..., blk.2). */
static int cmp_layer_text(const void *a, const void *b)
{
	char x[16], y[16];
	snprintf(x, sizeof x, "%u", *(const uint32_t *)a);
	snprintf(y, sizeof y, "%u", *(const uint32_t *)b);
	return strcmp(x, y);
}

int gguf_fixture_write(const char *path, const gguf_fixture_opts *opts, os_error *err)
{
	gguf_fixture_opts o = *opts;
	o.n_layers = o.n_layers ? o.n_layers : 2;
	o.dim = o.dim ? o.dim : 64;
	o.n_heads = o.n_heads ? o.n_heads : 4;
	o.n_kv_heads = o.n_kv_heads ? o.n_kv_heads : 2;
	o.ffn_dim = o.ffn_dim ? o.ffn_dim : 160;
	o.ctx = o.ctx ? o.ctx : 256;
	uint32_t wt = o.weight_type;
	if (wt != GGML_TYPE_F32 && wt != GGML_TYPE_F16 && wt != GGML_TYPE_BF16 &&
	    wt != GGML_TYPE_Q8_0 && wt != GGML_TYPE_Q4_0 && wt != GGML_TYPE_Q4_1)
		return os_error_set(err, OS_EUSAGE,
				    "fixture weight type %u is not one of F32, F16, BF16, Q8_0, Q4_0, "
				    "Q4_1", wt);
	if (o.dim % o.n_heads || o.n_heads % o.n_kv_heads || (o.dim / o.n_heads) % 2)
		return os_error_set(err, OS_EUSAGE,
				    "fixture heads: n_heads %u must divide dim %u into an even head "
				    "size and n_kv_heads %u must divide n_heads", o.n_heads, o.dim,
				    o.n_kv_heads);
	if (o.n_layers > 1000)
		return os_error_set(err, OS_EUSAGE, "fixture n_layers %u is too many (max 1000)",
				    o.n_layers);
	uint32_t head = o.dim / o.n_heads, kv_dim = head * o.n_kv_heads;
	size_t be = ggml_type_block_elems(wt);
	if (o.dim % be || kv_dim % be || o.ffn_dim % be)
		return os_error_set(err, OS_EUSAGE,
				    "fixture type %s needs dim (%u), kv_dim (%u) and ffn_dim (%u) to "
				    "be multiples of %zu", ggml_type_name(wt), o.dim, kv_dim,
				    o.ffn_dim, be);

	int rc;
	bpe b;
	gguf_writer *w = NULL;
	fx_tensor *ts = NULL;
	uint32_t *order = NULL;
	const char **tokens = NULL;
	int32_t *ttype = NULL;
	float *buf = NULL;
	size_t n_t = 0;
	if ((rc = bpe_build(&b, err)))
		goto fail;
	size_t vocab = b.n_tok + 3;
	tokens = calloc(vocab, sizeof *tokens);
	ttype = calloc(vocab, sizeof *ttype);
	ts = calloc(3 + 9 * (size_t)o.n_layers, sizeof *ts);
	order = calloc(o.n_layers, sizeof *order);
	if (!tokens || !ttype || !ts || !order) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory building the fixture");
		goto fail;
	}
	for (size_t i = 0; i < b.n_tok; i++) {
		tokens[i] = b.tok[i];
		ttype[i] = 1;
	}
	static const char *const specials[3] = { "<|endoftext|>", "<|im_start|>", "<|im_end|>" };
	for (int i = 0; i < 3; i++) {
		tokens[b.n_tok + i] = specials[i];
		ttype[b.n_tok + i] = 3;
	}

	/* shapes, in the converter's order (sorted HF names: lm_head, embed_tokens, layers,
	 * norm); linear weights ~ N(0, 1/fan_in) so activations keep unit scale, residual
	 * projections further scaled by 1/sqrt(2 n_layers), embeddings so that tied logits
	 * have a standard deviation near 2, norms 1 +- 0.1 */
	float emb_std = 2.0f / sqrtf((float)o.dim);
	float res = 1.0f / sqrtf(2.0f * (float)o.n_layers);
	if (!o.tied_embeddings)
		add_tensor_spec(ts, &n_t, "output.weight", wt, 2, o.dim, vocab, 0, emb_std);
	add_tensor_spec(ts, &n_t, "token_embd.weight", wt, 2, o.dim, vocab, 0, emb_std);
	for (uint32_t l = 0; l < o.n_layers; l++)
		order[l] = l;
	qsort(order, o.n_layers, sizeof *order, cmp_layer_text);
	for (uint32_t k = 0; k < o.n_layers; k++) {
		char nm[64];
		uint32_t l = order[k];
		float sd = 1.0f / sqrtf((float)o.dim), sf = 1.0f / sqrtf((float)o.ffn_dim);
#define BLK(suffix, type, nd, ne0, ne1, mean, std)                                       \
	do {                                                                              \
		snprintf(nm, sizeof nm, "blk.%u.%s", l, suffix);                          \
		add_tensor_spec(ts, &n_t, nm, type, nd, ne0, ne1, mean, std);             \
	} while (0)
		BLK("attn_norm.weight", GGML_TYPE_F32, 1, o.dim, 1, 1.0f, 0.1f);
		BLK("ffn_down.weight", wt, 2, o.ffn_dim, o.dim, 0, sf * res);
		BLK("ffn_gate.weight", wt, 2, o.dim, o.ffn_dim, 0, sd);
		BLK("ffn_up.weight", wt, 2, o.dim, o.ffn_dim, 0, sd);
		BLK("ffn_norm.weight", GGML_TYPE_F32, 1, o.dim, 1, 1.0f, 0.1f);
		BLK("attn_k.weight", wt, 2, o.dim, kv_dim, 0, sd);
		BLK("attn_output.weight", wt, 2, o.dim, o.dim, 0, sd * res);
		BLK("attn_q.weight", wt, 2, o.dim, o.dim, 0, sd);
		BLK("attn_v.weight", wt, 2, o.dim, kv_dim, 0, sd);
#undef BLK
	}
	add_tensor_spec(ts, &n_t, "output_norm.weight", GGML_TYPE_F32, 1, o.dim, 1, 1.0f, 0.1f);

	if ((rc = gguf_writer_new(&w, err)))
		goto fail;
	char name[96];
	snprintf(name, sizeof name, "optstudio fixture llama seed %llu",
		 (unsigned long long)o.seed);
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_str(w, "general.type", "model");
	gguf_writer_set_str(w, "general.name", name);
	gguf_writer_set_str(w, "general.license", "apache-2.0");
	gguf_writer_set_u32(w, "llama.block_count", o.n_layers);
	gguf_writer_set_u32(w, "llama.context_length", o.ctx);
	gguf_writer_set_u32(w, "llama.embedding_length", o.dim);
	gguf_writer_set_u32(w, "llama.feed_forward_length", o.ffn_dim);
	gguf_writer_set_u32(w, "llama.attention.head_count", o.n_heads);
	gguf_writer_set_u32(w, "llama.attention.head_count_kv", o.n_kv_heads);
	gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
	gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	gguf_writer_set_u32(w, "general.file_type", file_type_of(wt));
	gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)vocab);
	gguf_writer_set_u32(w, "llama.rope.dimension_count", head);
	gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
	gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
	gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
	gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, vocab);
	gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, ttype, vocab);
	gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)b.merges,
				b.n_merges);
	gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)b.n_tok + 1);
	gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)b.n_tok + 2);
	gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)b.n_tok);
	gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)b.n_tok + 2);
	gguf_writer_set_str(w, "tokenizer.chat_template", chat_template);
	if (wt == GGML_TYPE_Q8_0 || wt == GGML_TYPE_Q4_0 || wt == GGML_TYPE_Q4_1)
		gguf_writer_set_u32(w, "general.quantization_version", 2);

	rng r = { .s = o.seed ^ 0x6f707473747564ull }; /* "optstud" */
	for (size_t i = 0; i < n_t; i++) {
		fx_tensor *t = &ts[i];
		size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
		float *nb = realloc(buf, n * sizeof *buf);
		if (!nb) {
			rc = os_error_set(err, OS_ENOMEM, "out of memory for tensor '%s'", t->name);
			goto fail;
		}
		buf = nb;
		for (size_t j = 0; j < n; j++)
			buf[j] = t->mean + t->std * rng_normal(&r);
		t->n_bytes = ggml_type_row_bytes(t->type, n);
		t->data = malloc(t->n_bytes);
		if (!t->data) {
			rc = os_error_set(err, OS_ENOMEM, "out of memory for tensor '%s'", t->name);
			goto fail;
		}
		if ((rc = gguf_quantize(t->type, buf, t->data, n, err)))
			goto fail;
		if ((rc = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
						 t->n_bytes)))
			break; /* reported by gguf_writer_write */
	}
	rc = gguf_writer_write(w, path, err);
fail:
	gguf_writer_free(w);
	if (ts)
		for (size_t i = 0; i < n_t; i++)
			free(ts[i].data);
	free(ts);
	free(order);
	free(tokens);
	free(ttype);
	free(buf);
	bpe_free(&b);
	return rc;
}
