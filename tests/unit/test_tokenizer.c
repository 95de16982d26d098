/* test_tokenizer.c: the tokenizer (byte-level BPE and SentencePiece BPE), its pre-tokenizer
 * regexes, UTF-8 helpers, the streaming decoder and the chat templates. The SmolLM2 checks
 * run when OPTSTUDIO_DEMO_MODEL names the model file, else they print a SKIP line. */
#include "core/engine/chat.h"
#include "core/engine/tokenizer.h"
#include "core/engine/unicode.h"
#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "tests/test.h"

#include <unistd.h>

static uint64_t seed0;

/* ---------------------------------------------------------------- helpers */

/* Checks that the words cut from text are exactly want[0..n) (NULL-terminated list). */
static int split_is(enum tokenizer_pre pre, const char *text, const char *const *want)
{
	size_t *ends, n;
	os_error e;
	if (tokenizer_split_words(pre, text, strlen(text), &ends, &n, &e))
		return 0;
	size_t k = 0, start = 0;
	int ok = 1;
	for (; want[k]; k++) {
		if (k >= n || ends[k] - start != strlen(want[k]) ||
		    memcmp(text + start, want[k], ends[k] - start) != 0) {
			ok = 0;
			break;
		}
		start = ends[k];
	}
	if (k != n)
		ok = 0;
	if (!ok) {
		printf("  split of \"%s\" (pre %d):", text, (int)pre);
		for (size_t i = 0, s = 0; i < n; s = ends[i], i++)
			printf(" [%.*s]", (int)(ends[i] - s), text + s);
		printf("\n");
	}
	free(ends);
	return ok;
}

/* Random bytes: fully random, or mostly valid UTF-8 text with some stray bytes. */
static size_t rand_text(uint64_t *rng, char *buf, size_t cap, bool valid_only)
{
	size_t n = test_rand_next(rng) % (cap - 4);
	size_t i = 0;
	int mode = (int)(test_rand_next(rng) % 3);
	while (i < n) {
		uint64_t r = test_rand_next(rng);
		if (!valid_only && mode == 0) {
			buf[i++] = (char)(r & 0xFF);
			continue;
		}
		uint32_t cp;
		switch ((r >> 8) % 8) {
		case 0: case 1: case 2: cp = 0x20 + (uint32_t)((r >> 16) % 95); break;      /* ASCII */
		case 3: cp = " \n\t'0123456789"[(r >> 16) % 14]; break;
		case 4: cp = 0xA0 + (uint32_t)((r >> 16) % 0x2F60); break;                  /* 2-3 byte */
		case 5: cp = 0x3000 + (uint32_t)((r >> 16) % 0xA800); break;                /* CJK .. */
		case 6: cp = 0x1F300 + (uint32_t)((r >> 16) % 0x300); break;                /* emoji */
		default:
			if (!valid_only && mode == 1) {
				buf[i++] = (char)(0x80 + (r >> 16) % 0x80); /* stray byte */
				continue;
			}
			cp = 'a' + (uint32_t)((r >> 16) % 26);
		}
		if (cp >= 0xD800 && cp <= 0xDFFF)
			cp = 'x';
		char u[4];
		size_t l = unicode_utf8_encode(cp, u);
		if (i + l > n)
			break;
		memcpy(buf + i, u, l);
		i += l;
	}
	return i;
}

/* Encodes, decodes, and checks decode(encode(s)) == prefix + s, plus the streaming decoder. */
static int round_trip(const tokenizer *t, const char *s, size_t n, bool parse_special,
		      unsigned flags, const char *prefix)
{
	int32_t *ids;
	size_t ni, dl, pl = strlen(prefix);
	char *d;
	os_error e;
	int ok = 1;
	if (tokenizer_encode(t, s, n, false, parse_special, &ids, &ni, &e))
		return 0;
	if (tokenizer_decode(t, ids, ni, flags, &d, &dl, &e)) {
		free(ids);
		return 0;
	}
	if (dl != n + pl || memcmp(d, prefix, pl) != 0 || memcmp(d + pl, s, n) != 0)
		ok = 0;
	/* streaming: the concatenation equals the whole decode, and every chunk is whole UTF-8
	 * wherever the input was valid */
	tokenizer_stream *st;
	if (ok && tokenizer_stream_new(&st, t, flags, &e) == OS_OK) {
		char *cat = malloc(dl + 1);
		size_t cl = 0, l;
		for (size_t i = 0; i < ni && ok; i++) {
			const char *p = tokenizer_stream_push(st, ids[i], &l);
			if (cl + l > dl)
				ok = 0;
			else
				memcpy(cat + cl, p, l), cl += l;
		}
		const char *p = tokenizer_stream_flush(st, &l);
		if (ok && cl + l == dl) {
			memcpy(cat + cl, p, l);
			cl += l;
		}
		if (!ok || cl != dl || memcmp(cat, d, dl) != 0)
			ok = 0;
		free(cat);
		tokenizer_stream_free(st);
	} else {
		ok = 0;
	}
	free(ids);
	free(d);
	return ok;
}

static int32_t *encode(const tokenizer *t, const char *s, bool special, size_t *n)
{
	int32_t *ids;
	os_error e;
	if (tokenizer_encode(t, s, strlen(s), false, special, &ids, n, &e))
		return NULL;
	return ids;
}

static int ids_are(const int32_t *ids, size_t n, const int32_t *want, size_t nw)
{
	if (n != nw || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
		printf("  got %zu ids:", n);
		for (size_t i = 0; i < n; i++)
			printf(" %d", ids[i]);
		printf("\n  want %zu:", nw);
		for (size_t i = 0; i < nw; i++)
			printf(" %d", want[i]);
		printf("\n");
		return 0;
	}
	return 1;
}

/* ---------------------------------------------------------------- unicode */

TEST(test_utf8_decode)
{
	uint32_t cp;
	CHECK_EQ_INT(unicode_utf8_decode((const unsigned char *)"\xC3\xA9", 2, &cp), 2);
	CHECK_EQ_INT(cp, 0xE9);
	CHECK_EQ_INT(unicode_utf8_decode((const unsigned char *)"\xF0\x9F\x8E\x89", 4, &cp), 4);
	CHECK_EQ_INT(cp, 0x1F389);
	/* overlong, surrogate, > U+10FFFF, truncated, lone continuation: one invalid byte */
	const char *bad[] = { "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
			      "\xE2\x82", "\x80", "\xFF" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		CHECK_EQ_INT(unicode_utf8_decode((const unsigned char *)bad[i], strlen(bad[i]), &cp), 1);
		CHECK(cp == UNICODE_INVALID);
	}
	/* encode/decode agree on random scalar values */
	uint64_t rng = seed0 ^ 1;
	for (int i = 0; i < 20000; i++) {
		uint32_t c = (uint32_t)(test_rand_next(&rng) % 0x110000);
		if (c >= 0xD800 && c <= 0xDFFF)
			continue;
		char u[4];
		size_t l = unicode_utf8_encode(c, u);
		CHECK_EQ_INT(unicode_utf8_decode((const unsigned char *)u, l, &cp), l);
		CHECK_EQ_INT(cp, c);
	}
}

TEST(test_unicode_classes)
{
	CHECK_EQ_INT(unicode_class_of('a'), UNICODE_LETTER);
	CHECK_EQ_INT(unicode_class_of('Z'), UNICODE_LETTER);
	CHECK_EQ_INT(unicode_class_of('7'), UNICODE_NUMBER);
	CHECK_EQ_INT(unicode_class_of('!'), UNICODE_OTHER);
	CHECK_EQ_INT(unicode_class_of('\n'), UNICODE_SPACE);
	CHECK_EQ_INT(unicode_class_of(0xE9), UNICODE_LETTER);   /* é */
	CHECK_EQ_INT(unicode_class_of(0x3A9), UNICODE_LETTER);  /* Ω */
	CHECK_EQ_INT(unicode_class_of(0x65E5), UNICODE_LETTER); /* 日 */
	CHECK_EQ_INT(unicode_class_of(0x663), UNICODE_NUMBER);  /* Arabic-Indic three */
	CHECK_EQ_INT(unicode_class_of(0xBD), UNICODE_NUMBER);   /* ½ (No) */
	CHECK_EQ_INT(unicode_class_of(0x216B), UNICODE_NUMBER); /* Ⅻ (Nl) */
	CHECK_EQ_INT(unicode_class_of(0xA0), UNICODE_SPACE);
	CHECK_EQ_INT(unicode_class_of(0x3000), UNICODE_SPACE);
	CHECK_EQ_INT(unicode_class_of(0x301), UNICODE_OTHER);   /* combining acute (Mn) */
	CHECK_EQ_INT(unicode_class_of(0x1F389), UNICODE_OTHER); /* 🎉 */
	CHECK_EQ_INT(unicode_class_of(0x20000), UNICODE_LETTER); /* CJK ext B */
	CHECK_EQ_INT(unicode_class_of(UNICODE_INVALID), UNICODE_OTHER);
}

TEST(test_byte_map_bijection)
{
	int seen[0x200] = { 0 };
	for (int b = 0; b < 256; b++) {
		uint32_t cp = unicode_byte_to_cp((uint8_t)b);
		CHECK(cp < 0x200);
		CHECK_EQ_INT(unicode_cp_to_byte(cp), b);
		CHECK(!seen[cp]);
		seen[cp] = 1;
	}
	CHECK_EQ_INT(unicode_byte_to_cp(' '), 0x120);  /* Ġ */
	CHECK_EQ_INT(unicode_byte_to_cp('\n'), 0x10A); /* Ċ */
	CHECK_EQ_INT(unicode_byte_to_cp('A'), 'A');
	CHECK_EQ_INT(unicode_cp_to_byte(0x144), -1);
	CHECK_EQ_INT(unicode_cp_to_byte(0x20), -1);
}

/* ---------------------------------------------------------------- pre-tokenizers */

/* Expected words checked against the Hugging Face tokenizers library's pre-tokenizers
 * (ByteLevel(use_regex=True); Digits(individual_digits=True) + ByteLevel; Split on the
 * Llama 3 regex), shown here as raw bytes. */
TEST(test_split_gpt2)
{
	CHECK(split_is(TOKENIZER_PRE_GPT2, "Hello world", (const char *[]){ "Hello", " world", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2, "I'm  fine!!\n\nok",
		       (const char *[]){ "I", "'m", " ", " fine", "!!", "\n", "\n", "ok", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2, "abc 1234 x", (const char *[]){ "abc", " 1234", " x", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2, "hello\n\n  world",
		       (const char *[]){ "hello", "\n\n ", " world", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2, "DON'T stop\t\tnow ",
		       (const char *[]){ "DON", "'", "T", " stop", "\t", "\t", "now", " ", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2, "a\xC2\xA0" "b \xC2\xBD \xC3\xA9",
		       (const char *[]){ "a", "\xC2\xA0", "b", " \xC2\xBD", " \xC3\xA9", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2, "'s're've'll'd't'm",
		       (const char *[]){ "'s", "'re", "'ve", "'ll", "'d", "'t", "'m", NULL }));
	/* invalid bytes are punctuation-like words of their own class */
	CHECK(split_is(TOKENIZER_PRE_GPT2, "ab\xFF\xFE cd", (const char *[]){ "ab", "\xFF\xFE", " cd", NULL }));
}

TEST(test_split_digits_and_llama3)
{
	CHECK(split_is(TOKENIZER_PRE_GPT2_DIGITS, "abc 1234 x",
		       (const char *[]){ "abc", " ", "1", "2", "3", "4", " x", NULL }));
	CHECK(split_is(TOKENIZER_PRE_GPT2_DIGITS, "a\xC2\xA0" "b \xC2\xBD \xC3\xA9",
		       (const char *[]){ "a", "\xC2\xA0", "b", " ", "\xC2\xBD", " \xC3\xA9", NULL }));
	CHECK(split_is(TOKENIZER_PRE_LLAMA3, "I'm  fine!!\n\nok",
		       (const char *[]){ "I", "'m", " ", " fine", "!!\n\n", "ok", NULL }));
	CHECK(split_is(TOKENIZER_PRE_LLAMA3, "abc 1234 x", (const char *[]){ "abc", " ", "123", "4", " x", NULL }));
	CHECK(split_is(TOKENIZER_PRE_LLAMA3, "hello\n\n  world",
		       (const char *[]){ "hello", "\n\n", " ", " world", NULL }));
	CHECK(split_is(TOKENIZER_PRE_LLAMA3, "DON'T stop\t\tnow ",
		       (const char *[]){ "DON", "'T", " stop", "\t", "\tnow", " ", NULL }));
	CHECK(split_is(TOKENIZER_PRE_LLAMA3, "a\xC2\xA0" "b \xC2\xBD \xC3\xA9",
		       (const char *[]){ "a", "\xC2\xA0" "b", " ", "\xC2\xBD", " \xC3\xA9", NULL }));
}

TEST(test_split_covers_random_text)
{
	uint64_t rng = seed0 ^ 2;
	char buf[300];
	for (int it = 0; it < 3000; it++) {
		size_t n = rand_text(&rng, buf, sizeof buf, false);
		for (int pre = 0; pre <= TOKENIZER_PRE_LLAMA3; pre++) {
			size_t *ends, nw;
			os_error e;
			CHECK(tokenizer_split_words((enum tokenizer_pre)pre, buf, n, &ends, &nw, &e) == OS_OK);
			size_t prev = 0;
			for (size_t i = 0; i < nw; i++) {
				CHECK_MSG(ends[i] > prev, "empty or backwards word %zu (case %d)", i, it);
				prev = ends[i];
			}
			CHECK_EQ_INT(prev, n);
			free(ends);
		}
	}
}

/* ---------------------------------------------------------------- byte-level BPE, hand-built */

/* A byte-level vocabulary: the 256 byte tokens (ids 0..255, in byte order) plus extras. */
typedef struct hand_vocab {
	char *tok[300];
	size_t len[300];
	int32_t type[300];
	size_t n;
	char *merge[16];
	size_t merge_len[16];
	size_t n_merges;
} hand_vocab;

static void hv_add(hand_vocab *h, const char *s, int32_t type)
{
	h->tok[h->n] = strdup(s);
	h->len[h->n] = strlen(s);
	h->type[h->n] = type;
	h->n++;
}

static void hv_free(hand_vocab *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->tok[i]);
	for (size_t i = 0; i < h->n_merges; i++)
		free(h->merge[i]);
}

static int hv_open_bpe(hand_vocab *h, const char *const *merges, tokenizer **t)
{
	os_error e;
	for (int b = 0; b < 256; b++) {
		char u[5] = { 0 };
		unicode_utf8_encode(unicode_byte_to_cp((uint8_t)b), u);
		hv_add(h, u, TOKEN_TYPE_NORMAL);
	}
	for (size_t i = 0; merges[i]; i++) {
		/* the merge and its result token */
		char cat[64];
		size_t k = 0;
		for (const char *p = merges[i]; *p; p++)
			if (*p != ' ')
				cat[k++] = *p;
		cat[k] = 0;
		hv_add(h, cat, TOKEN_TYPE_NORMAL);
		h->merge[h->n_merges] = strdup(merges[i]);
		h->merge_len[h->n_merges] = strlen(merges[i]);
		h->n_merges++;
	}
	hv_add(h, "<|end|>", TOKEN_TYPE_CONTROL);
	hv_add(h, "<tool>", TOKEN_TYPE_USER_DEFINED);
	tokenizer_vocab v = { .kind = TOKENIZER_KIND_BPE, .pre = TOKENIZER_PRE_GPT2,
			      .n_tokens = h->n, .tokens = (const char *const *)h->tok,
			      .token_lens = h->len, .token_types = h->type,
			      .n_merges = h->n_merges, .merges = (const char *const *)h->merge,
			      .merge_lens = h->merge_len, .bos_id = -1, .eos_id = (int32_t)h->n - 2,
			      .unk_id = -1, .eot_id = -1, .eom_id = -1 };
	return tokenizer_open_vocab(t, &v, &e);
}

TEST(test_bpe_merge_order)
{
	/* rank decides, not position: with "b c" ranked first, "abc" is a + bc */
	hand_vocab h = { 0 };
	tokenizer *t;
	const char *m1[] = { "b c", "a b", NULL };
	CHECK(hv_open_bpe(&h, m1, &t) == OS_OK);
	int32_t bc = tokenizer_find_token(t, "bc", 2), ab = tokenizer_find_token(t, "ab", 2);
	CHECK(bc == 256 && ab == 257);
	size_t n;
	int32_t *ids = encode(t, "abc", false, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ 'a', bc }, 2));
	free(ids);
	tokenizer_close(t);
	hv_free(&h);

	hand_vocab h2 = { 0 };
	const char *m2[] = { "a b", "b c", "Ġ ab", "a a", NULL };
	CHECK(hv_open_bpe(&h2, m2, &t) == OS_OK);
	ab = tokenizer_find_token(t, "ab", 2);
	int32_t sab = tokenizer_find_token(t, "\xC4\xA0" "ab", 4), aa = tokenizer_find_token(t, "aa", 2);
	ids = encode(t, "abc", false, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ ab, 'c' }, 2));
	free(ids);
	/* equal ranks: leftmost first, so "aaa" is aa + a; the space joins the word */
	ids = encode(t, "aaa ab", false, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ aa, 'a', sab }, 3));
	free(ids);
	/* merges never cross words: "a" "'b" */
	ids = encode(t, "a'b", false, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ 'a', '\'', 'b' }, 3));
	free(ids);
	/* special tokens: control only with parse_special, user-defined always */
	int32_t end = tokenizer_find_token(t, "<|end|>", 7), tool = tokenizer_find_token(t, "<tool>", 6);
	ids = encode(t, "ab<|end|><tool>", true, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ ab, end, tool }, 3));
	free(ids);
	ids = encode(t, "ab<|end|><tool>", false, &n);
	CHECK(n > 3);
	CHECK(ids[n - 1] == tool);
	for (size_t i = 0; i < n; i++)
		CHECK(ids[i] != end);
	free(ids);
	CHECK(tokenizer_is_eog(t, end));
	CHECK(!tokenizer_is_eog(t, ab));
	CHECK(tokenizer_covers_all_bytes(t));
	tokenizer_close(t);
	hv_free(&h2);
}

TEST(test_bpe_bad_vocab)
{
	tokenizer *t;
	os_error e;
	const char *toks[] = { "a", "b" };
	size_t lens[] = { 1, 1 };
	const char *merges[] = { "a b", "nospace" };
	size_t mlens[] = { 3, 7 };
	tokenizer_vocab v = { .kind = TOKENIZER_KIND_BPE, .n_tokens = 2, .tokens = toks,
			      .token_lens = lens, .n_merges = 2, .merges = merges, .merge_lens = mlens,
			      .bos_id = -1, .eos_id = 7, .unk_id = -1, .eot_id = -1, .eom_id = -1 };
	CHECK_EQ_INT(tokenizer_open_vocab(&t, &v, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "eos") != NULL);
	v.eos_id = 1;
	CHECK_EQ_INT(tokenizer_open_vocab(&t, &v, &e), OS_OK);
	/* "ab" is not a token, "nospace" is malformed: both skipped and said so */
	CHECK(tokenizer_warning(t) && strstr(tokenizer_warning(t), "2 of 2 merges skipped"));
	CHECK(!tokenizer_covers_all_bytes(t));
	size_t n;
	int32_t *ids = encode(t, "a\x01" "b", false, &n); /* \x01 has no token: dropped */
	CHECK(ids_are(ids, n, (int32_t[]){ 0, 1 }, 2));
	free(ids);
	size_t pl;
	CHECK(tokenizer_piece(t, 5, &pl) == NULL && pl == 0);
	char *d;
	CHECK_EQ_INT(tokenizer_decode(t, (int32_t[]){ 0, 9 }, 2, 0, &d, &pl, &e), OS_ERANGE);
	tokenizer_close(t);
}

/* ---------------------------------------------------------------- SentencePiece */

/* A Llama-2-like vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces with scores. */
static int spm_open(tokenizer **t, bool add_space_prefix)
{
	static const struct {
		const char *s;
		float score;
	} pieces[] = {
		{ "\xE2\x96\x81", -1 }, { "h", -2 }, { "e", -2 }, { "l", -2 }, { "o", -2 },
		{ "w", -2 }, { "r", -2 }, { "d", -2 }, { "\xE2\x96\x81h", -5 }, { "he", -3 },
		{ "ll", -4 }, { "llo", -6 }, { "hello", -7 }, { "\xE2\x96\x81hello", -8 },
		{ "or", -4 }, { "ld", -4 }, { "\xE2\x96\x81w", -5 }, { "\xE2\x96\x81wor", -9 },
		{ "\xE2\x96\x81world", -10 }, { "wor", -6 }, { "\xE2\x96\x81\xE2\x96\x81", -3 },
	};
	const size_t np = sizeof pieces / sizeof *pieces, n = 3 + 256 + np;
	const char *toks[3 + 256 + 32];
	char bytes[256][8];
	size_t lens[3 + 256 + 32];
	int32_t types[3 + 256 + 32];
	float scores[3 + 256 + 32];
	toks[0] = "<unk>", types[0] = TOKEN_TYPE_UNKNOWN;
	toks[1] = "<s>", types[1] = TOKEN_TYPE_CONTROL;
	toks[2] = "</s>", types[2] = TOKEN_TYPE_CONTROL;
	for (int b = 0; b < 256; b++) {
		snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
		toks[3 + b] = bytes[b];
		types[3 + b] = TOKEN_TYPE_BYTE;
	}
	for (size_t i = 0; i < np; i++) {
		toks[259 + i] = pieces[i].s;
		types[259 + i] = TOKEN_TYPE_NORMAL;
		scores[259 + i] = pieces[i].score;
	}
	for (size_t i = 0; i < n; i++) {
		lens[i] = strlen(toks[i]);
		if (i < 259)
			scores[i] = 0;
	}
	tokenizer_vocab v = { .kind = TOKENIZER_KIND_SPM, .n_tokens = n, .tokens = toks,
			      .token_lens = lens, .token_types = types, .scores = scores,
			      .bos_id = 1, .eos_id = 2, .unk_id = 0, .eot_id = -1, .eom_id = -1,
			      .add_bos = true, .add_space_prefix = add_space_prefix };
	os_error e;
	return tokenizer_open_vocab(t, &v, &e);
}

TEST(test_spm_encode)
{
	tokenizer *t;
	CHECK(spm_open(&t, true) == OS_OK);
	CHECK_EQ_INT(tokenizer_kind(t), TOKENIZER_KIND_SPM);
	int32_t hello = tokenizer_find_token(t, "\xE2\x96\x81hello", 8);
	int32_t world = tokenizer_find_token(t, "\xE2\x96\x81world", 8);
	CHECK(hello > 0 && world > 0);
	int32_t *ids;
	size_t n;
	os_error e;
	/* BOS added, leading space prefix, merges by score */
	CHECK(tokenizer_encode(t, "hello world", 11, true, false, &ids, &n, &e) == OS_OK);
	CHECK(ids_are(ids, n, (int32_t[]){ 1, hello, world }, 3));
	free(ids);
	/* score decides: "he"(-3) before "▁h"(-5), so "▁hel" ends as ▁ he l, never ▁h */
	ids = encode(t, "hel", false, &n);
	int32_t sp = tokenizer_find_token(t, "\xE2\x96\x81", 3), he = tokenizer_find_token(t, "he", 2),
		l = tokenizer_find_token(t, "l", 1);
	CHECK(ids_are(ids, n, (int32_t[]){ sp, he, l }, 3));
	free(ids);
	/* byte fallback: é is not a piece, so its two bytes come as <0xC3> <0xA9> */
	ids = encode(t, "h\xC3\xA9", false, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ tokenizer_find_token(t, "\xE2\x96\x81h", 4), 3 + 0xC3, 3 + 0xA9 }, 3));
	free(ids);
	/* special tokens, and the space prefix after them */
	ids = encode(t, "<s>hello", true, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ 1, hello }, 2));
	free(ids);
	size_t pl;
	CHECK_EQ_STR(tokenizer_piece(t, world, &pl), " world");
	CHECK_EQ_INT(pl, 6);
	CHECK(memcmp(tokenizer_piece(t, 3 + 0x0A, &pl), "\n", 1) == 0 && pl == 1);
	CHECK(tokenizer_is_eog(t, 2));
	CHECK(tokenizer_covers_all_bytes(t));
	tokenizer_close(t);

	CHECK(spm_open(&t, false) == OS_OK);
	ids = encode(t, "hello world", false, &n);
	CHECK(ids_are(ids, n, (int32_t[]){ tokenizer_find_token(t, "hello", 5), world }, 2));
	free(ids);
	tokenizer_close(t);
}

TEST(test_spm_round_trip_random)
{
	tokenizer *t;
	CHECK(spm_open(&t, true) == OS_OK);
	uint64_t rng = seed0 ^ 3;
	char buf[200];
	for (int it = 0; it < 2000; it++) {
		size_t n = rand_text(&rng, buf, sizeof buf, false);
		/* a literal U+2581 in the input decodes as a space: SentencePiece's one lossy case */
		for (size_t i = 0; i + 2 < n; i++)
			if (memcmp(buf + i, "\xE2\x96\x81", 3) == 0)
				buf[i] = 'x';
		if (!round_trip(t, buf, n, false, 0, n ? " " : "")) { /* empty text: no tokens at all */
			printf("  text:");
			for (size_t i = 0; i < n; i++)
				printf(" %02x", (unsigned char)buf[i]);
			printf("\n");
			FAIL_AT("case %d (seed %llu)", it, (unsigned long long)seed0);
		}
		CHECK_MSG(round_trip(t, buf, n, false, TOKENIZER_DECODE_STRIP_SPACE, ""), "case %d", it);
	}
	tokenizer_close(t);
}

/* ---------------------------------------------------------------- fixture GGUF */

static char fixture_path[256];

static gguf_file *fixture_open(void)
{
	os_error e;
	gguf_file *f;
	if (!fixture_path[0]) {
		snprintf(fixture_path, sizeof fixture_path, "/tmp/optstudio-test-tokenizer-%d.gguf", (int)getpid());
		gguf_fixture_opts o = { .seed = 7 };
		if (gguf_fixture_write(fixture_path, &o, &e)) {
			printf("  fixture: %s\n", e.msg);
			return NULL;
		}
	}
	if (gguf_open(&f, fixture_path, &e)) {
		printf("  fixture: %s\n", e.msg);
		return NULL;
	}
	return f;
}

TEST(test_fixture_tokenizer)
{
	gguf_file *f = fixture_open();
	CHECK(f);
	tokenizer *t;
	os_error e;
	CHECK_MSG(tokenizer_open(&t, f, &e) == OS_OK, "%s", e.msg);
	CHECK_EQ_INT(tokenizer_n_vocab(t), GGUF_FIXTURE_VOCAB);
	CHECK(tokenizer_warning(t) == NULL); /* pre = "default" is known */
	CHECK(tokenizer_covers_all_bytes(t));
	int32_t ims = tokenizer_find_token(t, "<|im_start|>", 12);
	int32_t ime = tokenizer_find_token(t, "<|im_end|>", 10);
	CHECK(ims >= 0 && ime >= 0);
	CHECK(tokenizer_is_eog(t, ime));
	CHECK(tokenizer_is_eog(t, tokenizer_eos(t)));
	/* the fixture learned " the" from its text: one token */
	int32_t the = tokenizer_find_token(t, "\xC4\xA0the", 5);
	CHECK(the >= 0);
	size_t n;
	int32_t *ids = encode(t, " the", false, &n);
	CHECK(ids_are(ids, n, &the, 1));
	free(ids);
	ids = encode(t, "<|im_start|>user\n the<|im_end|>", true, &n);
	CHECK(n >= 4 && ids[0] == ims && ids[n - 1] == ime && ids[n - 2] == the);
	free(ids);
	ids = encode(t, "<|im_start|>", false, &n);
	CHECK(n > 1);
	free(ids);
	/* decoding skips control tokens on request */
	char *d;
	size_t dl;
	CHECK(tokenizer_decode(t, (int32_t[]){ ims, the, ime }, 3, TOKENIZER_DECODE_SKIP_CONTROL, &d, &dl, &e) == OS_OK);
	CHECK_EQ_STR(d, " the");
	free(d);

	chat_template ct;
	CHECK(chat_template_from_gguf(&ct, f, &e) == OS_OK);
	CHECK_EQ_INT(ct.style, CHAT_STYLE_CHATML);
	CHECK_EQ_STR(ct.default_system, "You are a helpful AI assistant");
	chat_template_free(&ct);
	tokenizer_close(t);
	gguf_close(f);
}

TEST(test_fixture_round_trip_random)
{
	gguf_file *f = fixture_open();
	CHECK(f);
	tokenizer *t;
	os_error e;
	CHECK(tokenizer_open(&t, f, &e) == OS_OK);
	gguf_close(f); /* the tokenizer keeps its own copies */
	uint64_t rng = seed0 ^ 4;
	char buf[400];
	for (int it = 0; it < 4000; it++) {
		size_t n = rand_text(&rng, buf, sizeof buf, it % 2);
		CHECK_MSG(round_trip(t, buf, n, it % 3 == 0, 0, ""), "case %d (seed %llu)", it,
			  (unsigned long long)seed0);
	}
	tokenizer_close(t);
}

TEST(test_stream_utf8)
{
	gguf_file *f = fixture_open();
	CHECK(f);
	tokenizer *t;
	tokenizer_stream *st;
	os_error e;
	CHECK(tokenizer_open(&t, f, &e) == OS_OK);
	gguf_close(f);
	CHECK(tokenizer_stream_new(&st, t, 0, &e) == OS_OK);
	/* é = C3 A9 and 🎉 = F0 9F 8E 89 fed byte token by byte token */
	const unsigned char bytes[] = { 'a', 0xC3, 0xA9, 0xF0, 0x9F, 0x8E, 0x89, 0xC3, 'b', 0xE2 };
	const size_t want[] = { 1, 0, 2, 0, 0, 0, 4, 0, 2, 0 }; /* C3 then 'b': C3 can't complete */
	for (size_t i = 0; i < sizeof bytes; i++) {
		char u[4];
		size_t l = unicode_utf8_encode(unicode_byte_to_cp(bytes[i]), u), got;
		int32_t id = tokenizer_find_token(t, u, l);
		CHECK(id >= 0);
		const char *p = tokenizer_stream_push(st, id, &got);
		CHECK_MSG(got == want[i], "push %zu gave %zu bytes, expected %zu", i, got, want[i]);
		(void)p;
	}
	size_t l;
	const char *p = tokenizer_stream_flush(st, &l);
	CHECK(l == 1 && (unsigned char)p[0] == 0xE2);
	tokenizer_stream_free(st);
	tokenizer_close(t);
}

TEST(test_open_errors)
{
	char path[128];
	snprintf(path, sizeof path, "/tmp/optstudio-test-tokenizer-bad-%d.gguf", (int)getpid());
	gguf_writer *w;
	gguf_file *f;
	tokenizer *t;
	os_error e;
	/* no tokenizer at all */
	CHECK(gguf_writer_new(&w, &e) == OS_OK);
	gguf_writer_set_str(w, "general.architecture", "llama");
	CHECK(gguf_writer_write(w, path, &e) == OS_OK);
	gguf_writer_free(w);
	CHECK(gguf_open(&f, path, &e) == OS_OK);
	CHECK_EQ_INT(tokenizer_open(&t, f, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "tokenizer.ggml.model"));
	chat_template ct;
	CHECK_EQ_INT(chat_template_from_gguf(&ct, f, &e), OS_ENOTFOUND);
	gguf_close(f);
	/* an unknown model; then an unknown pre-tokenizer falls back with a warning */
	const char *toks[] = { "a", "b", "ab" };
	for (int pass = 0; pass < 2; pass++) {
		CHECK(gguf_writer_new(&w, &e) == OS_OK);
		gguf_writer_set_str(w, "tokenizer.ggml.model", pass == 0 ? "bert" : "gpt2");
		gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre");
		gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
		gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *[]){ "a b" }, 1);
		CHECK(gguf_writer_write(w, path, &e) == OS_OK);
		gguf_writer_free(w);
		CHECK(gguf_open(&f, path, &e) == OS_OK);
		int rc = tokenizer_open(&t, f, &e);
		gguf_close(f);
		if (pass == 0) {
			CHECK_EQ_INT(rc, OS_EUNSUPPORTED);
			CHECK(strstr(e.msg, "bert"));
			continue;
		}
		CHECK_EQ_INT(rc, OS_OK);
		CHECK(tokenizer_warning(t) && strstr(tokenizer_warning(t), "no-such-pre"));
		CHECK_EQ_INT(tokenizer_pre(t), TOKENIZER_PRE_GPT2);
		size_t n;
		int32_t *ids = encode(t, "ab", false, &n);
		CHECK(ids_are(ids, n, (int32_t[]){ 2 }, 1));
		free(ids);
		tokenizer_close(t);
	}
	unlink(path);
}

/* ---------------------------------------------------------------- chat */

TEST(test_chat_formats)
{
	/* SmolLM2's template text, as in its GGUF */
	const char *smol =
		"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
		"{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
		"{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
		"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
	chat_template ct;
	os_error e;
	char *s;
	size_t n;
	CHECK(chat_template_parse(&ct, smol, strlen(smol), &e) == OS_OK);
	CHECK_EQ_INT(ct.style, CHAT_STYLE_CHATML);
	CHECK_EQ_STR(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
	chat_message m1[] = { { "user", "Hi" } };
	CHECK(chat_format(&ct, m1, 1, true, &s, &n, &e) == OS_OK);
	CHECK_EQ_STR(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
			"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
	CHECK_EQ_INT(n, strlen(s));
	free(s);
	chat_message m2[] = { { "system", "Be brief." }, { "user", "Hi" }, { "assistant", "Hello!" } };
	CHECK(chat_format(&ct, m2, 3, false, &s, &n, &e) == OS_OK);
	CHECK_EQ_STR(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
			"<|im_start|>assistant\nHello!<|im_end|>\n");
	free(s);
	chat_template_free(&ct);

	/* a Qwen-style template: the first "<|im_start|>system\n" is an expression, the second a
	 * literal with a written \n */
	const char *qwen = "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
			   "{%- else %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}";
	CHECK(chat_template_parse(&ct, qwen, strlen(qwen), &e) == OS_OK);
	CHECK_EQ_STR(ct.default_system, "You are Qwen.");
	chat_template_free(&ct);

	const char *l3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}";
	CHECK(chat_template_parse(&ct, l3, strlen(l3), &e) == OS_OK);
	CHECK_EQ_INT(ct.style, CHAT_STYLE_LLAMA3);
	CHECK(chat_format(&ct, m2, 2, true, &s, &n, &e) == OS_OK);
	CHECK_EQ_STR(s, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
			"<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
			"<|start_header_id|>assistant<|end_header_id|>\n\n");
	free(s);
	chat_template_free(&ct);

	const char *l2 = "{{ bos_token + '[INST] ' + content + ' [/INST]' }}";
	CHECK(chat_template_parse(&ct, l2, strlen(l2), &e) == OS_OK);
	CHECK_EQ_INT(ct.style, CHAT_STYLE_LLAMA2);
	chat_message m3[] = { { "system", "S" }, { "user", "U1" }, { "assistant", "A1" }, { "user", "U2" } };
	CHECK(chat_format(&ct, m3, 4, true, &s, &n, &e) == OS_OK);
	CHECK_EQ_STR(s, "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]");
	free(s);
	chat_template_free(&ct);

	CHECK_EQ_INT(chat_template_parse(&ct, "{{ x }}", 7, &e), OS_EUNSUPPORTED);
	CHECK(strstr(e.msg, "unknown chat template"));
	CHECK_EQ_STR(chat_style_name(CHAT_STYLE_CHATML), "chatml");
}

/* ---------------------------------------------------------------- SmolLM2 */

TEST(test_smollm2)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!path || !*path)
		SKIP("test_smollm2: OPTSTUDIO_DEMO_MODEL not set");
	gguf_file *f;
	tokenizer *t;
	os_error e;
	CHECK_MSG(gguf_open(&f, path, &e) == OS_OK, "%s", e.msg);
	CHECK_MSG(tokenizer_open(&t, f, &e) == OS_OK, "%s", e.msg);
	CHECK_EQ_INT(tokenizer_n_vocab(t), 49152);
	CHECK_EQ_INT(tokenizer_pre(t), TOKENIZER_PRE_GPT2_DIGITS); /* "smollm" */
	CHECK(tokenizer_warning(t) == NULL);
	CHECK_EQ_INT(tokenizer_bos(t), 1);
	CHECK_EQ_INT(tokenizer_eos(t), 2);
	CHECK(!tokenizer_add_bos(t));
	CHECK(tokenizer_is_eog(t, 2) && tokenizer_is_eog(t, 0) && !tokenizer_is_eog(t, 1));

	/* consistency with the file's own vocabulary */
	size_t n;
	int32_t *ids = encode(t, "Hello", false, &n);
	CHECK(n == 1 && ids[0] == tokenizer_find_token(t, "Hello", 5));
	free(ids);
	ids = encode(t, " world", false, &n);
	CHECK(n == 1 && ids[0] == tokenizer_find_token(t, "\xC4\xA0world", 7));
	free(ids);

	/* Reference ids from the Hugging Face `tokenizers` library (0.23), a BPE model built from
	 * this file's tokens and merges with SmolLM2's pre-tokenizer (Digits(individual_digits)
	 * then ByteLevel(add_prefix_space=false)) and its 17 control tokens as special tokens. */
	static const struct {
		const char *text;
		int32_t ids[20];
		size_t n;
	} ref[] = {
		{ "Hello world", { 19556, 905 }, 2 },
		{ "The quick brown fox jumps over the lazy dog.",
		  { 504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30 }, 10 },
		{ "I'm 25 years old, and it's 2024!",
		  { 57, 5248, 216, 34, 37, 929, 1573, 28, 284, 357, 506, 216, 34, 32, 34, 36, 17 }, 17 },
		{ "na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x8E\x89",
		  { 3546, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248, 15107, 232, 227 }, 13 },
		{ "def f(x):\n    return x ** 2\n",
		  { 1604, 275, 24, 104, 727, 472, 1003, 1792, 1903, 216, 34, 198 }, 12 },
		{ "<|im_start|>user\nHi<|im_end|>\n", { 1, 4093, 198, 26843, 2, 198 }, 6 },
	};
	for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) {
		ids = encode(t, ref[i].text, true, &n);
		CHECK_MSG(ids_are(ids, n, ref[i].ids, ref[i].n), "text %zu", i);
		free(ids);
	}
	/* without parse_special the markers are text, and still decode back exactly */
	ids = encode(t, "<|im_start|>user", false, &n);
	CHECK(n > 2);
	for (size_t i = 0; i < n; i++)
		CHECK(tokenizer_token_type(t, ids[i]) == TOKEN_TYPE_NORMAL);
	free(ids);
	CHECK(round_trip(t, "<|im_start|>user\nHi<|im_end|>", 29, false, 0, ""));
	CHECK(round_trip(t, "<|im_start|>user\nHi<|im_end|>", 29, true, 0, ""));

	/* random valid text round-trips (SmolLM2 lacks 21 byte tokens, e.g. 0x04 and 0xF5..0xFF,
	 * so random bytes cannot) */
	CHECK(!tokenizer_covers_all_bytes(t));
	uint64_t rng = seed0 ^ 5;
	char buf[300];
	for (int it = 0; it < 1500; it++) {
		size_t len = rand_text(&rng, buf, sizeof buf, true);
		CHECK_MSG(round_trip(t, buf, len, it % 2, 0, ""), "case %d (seed %llu)", it,
			  (unsigned long long)seed0);
	}

	chat_template ct;
	CHECK(chat_template_from_gguf(&ct, f, &e) == OS_OK);
	CHECK_EQ_INT(ct.style, CHAT_STYLE_CHATML);
	CHECK_EQ_STR(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
	char *s;
	size_t sl;
	chat_message m[] = { { "user", "Hi" } };
	CHECK(chat_format(&ct, m, 1, true, &s, &sl, &e) == OS_OK);
	/* the same Hugging Face reference on the whole prompt */
	static const int32_t chat_ids[] = { 1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365,
		3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 26843, 2,
		198, 1, 520, 9531, 198 };
	ids = encode(t, s, true, &n);
	CHECK(ids_are(ids, n, chat_ids, sizeof chat_ids / sizeof *chat_ids));
	free(ids);
	free(s);
	chat_template_free(&ct);
	tokenizer_close(t);
	gguf_close(f);
}

int main(void)
{
	const char *s = getenv("TEST_SEED");
	seed0 = s ? strtoull(s, NULL, 10) : 20240917ull;
	printf("test_tokenizer: seed %llu (set TEST_SEED to change)\n", (unsigned long long)seed0);
	RUN(test_utf8_decode);
	RUN(test_unicode_classes);
	RUN(test_byte_map_bijection);
	RUN(test_split_gpt2);
	RUN(test_split_digits_and_llama3);
	RUN(test_split_covers_random_text);
	RUN(test_bpe_merge_order);
	RUN(test_bpe_bad_vocab);
	RUN(test_spm_encode);
	RUN(test_spm_round_trip_random);
	RUN(test_fixture_tokenizer);
	RUN(test_fixture_round_trip_random);
	RUN(test_stream_utf8);
	RUN(test_open_errors);
	RUN(test_chat_formats);
	RUN(test_smollm2);
	if (fixture_path[0])
		unlink(fixture_path);
	return test_summary();
}
