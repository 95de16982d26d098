/* test_hf.c: safetensors reader, HF config/tokenizer parsers, the HF folder, model_info on
 * GGUF and HF, and the vocabulary hash agreeing between the two for the same tokenizer. */
#define HF_FIXTURE_NO_MAIN
#include "tests/tools/make_hf_fixture.c"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/format/hf_model.h"
#include "core/format/model_info.h"
#include "core/format/safetensors.h"
#include "core/format/sha256.h"
#include "tests/test.h"

static const uint64_t SEED = 20251123;

/* Removes the regular files of a flat folder and the folder. */
static void rm_flat_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	char p[4096];
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* A fresh fixture folder (caller rm_flat_dir's it). */
static int make_fixture(char *dir, size_t cap, const hf_fixture_opts *o)
{
	snprintf(dir, cap, "/tmp/optstudio-hf-XXXXXX");
	if (!mkdtemp(dir))
		return OS_EIO;
	os_error err = {0};
	int rc = hf_fixture_write(dir, o, &err);
	if (rc)
		printf("  fixture: %s\n", os_error_text(&err));
	return rc;
}

/* sum of elements of the fixture's tensors, from its shape constants */
static uint64_t fixture_n_params(void)
{
	const uint64_t V = FIX_VOCAB, H = FIX_HIDDEN, F = FIX_FFN, L = FIX_LAYERS;
	const uint64_t hd = FIX_HIDDEN / FIX_HEADS, Q = FIX_HEADS * hd, KV = FIX_KV_HEADS * hd;
	return 2 * V * H + H + L * (2 * H + Q * H + 2 * KV * H + H * Q + 3 * F * H);
}

/* The hash as the spec defines it, computed here independently of hf_tokenizer. */
static void expected_vocab_hash(const hf_fixture_vocab *v, char hex[65])
{
	size_t total = 0;
	for (int i = 0; i < FIX_VOCAB; i++)
		total += strlen(v->tokens[i]) + 1;
	char *buf = malloc(total), *p = buf;
	for (int i = 0; i < FIX_VOCAB; i++) {
		size_t n = strlen(v->tokens[i]) + 1; /* includes the 0x00 */
		memcpy(p, v->tokens[i], n);
		p += n;
	}
	uint8_t d[32];
	sha256_buffer(buf, total, d);
	sha256_to_hex(d, hex);
	free(buf);
}

/* --- safetensors ----------------------------------------------------------------------- */

TEST(test_safetensors_fixture_round_trip)
{
	char dir[64], path[128];
	hf_fixture_opts o = {.seed = SEED, .n_shards = 1};
	printf("  seed %llu\n", (unsigned long long)SEED);
	CHECK_EQ_INT(make_fixture(dir, sizeof dir, &o), OS_OK);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	safetensors_file *f = NULL;
	os_error err = {0};
	int rc = safetensors_open(&f, path, &err);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(safetensors_n_tensors(f), 3 + 9 * FIX_LAYERS);
	CHECK_EQ_STR(safetensors_metadata_get(f, "format"), "pt");
	/* regenerate the fixture's random stream in tensor order and compare every value */
	uint64_t rng = SEED ^ 0x5eedf1c5u;
	for (size_t i = 0; i < safetensors_n_tensors(f); i++) {
		const safetensors_tensor *t = safetensors_tensor_at(f, i);
		bool norm = strstr(t->name, "norm") != NULL;
		CHECK_EQ_INT(t->n_dims, norm ? 1 : 2);
		CHECK_EQ_INT(t->dtype, norm ? ST_F32 : ST_BF16);
		CHECK(safetensors_find_tensor(f, t->name) == t);
		for (uint64_t k = 0; k < t->n_elements; k++) {
			float want = norm ? 1.0f + 0.1f * fix_randf(&rng) : 0.05f * fix_randf(&rng);
			float got;
			if (t->dtype == ST_BF16) {
				uint16_t h;
				memcpy(&h, (const uint8_t *)t->data + 2 * k, 2);
				got = num_bf16_to_f32(h);
				want = num_bf16_to_f32(num_f32_to_bf16(want));
			} else {
				memcpy(&got, (const uint8_t *)t->data + 4 * k, 4);
			}
			CHECK_MSG(got == want, "%s[%llu] = %g, expected %g", t->name,
				  (unsigned long long)k, got, want);
		}
	}
	const safetensors_tensor *q = safetensors_find_tensor(f, "model.layers.1.self_attn.k_proj.weight");
	CHECK(q != NULL);
	CHECK_EQ_INT(q->shape[0], FIX_KV_HEADS * (FIX_HIDDEN / FIX_HEADS));
	CHECK_EQ_INT(q->shape[1], FIX_HIDDEN);
	CHECK(safetensors_find_tensor(f, "model.layers.2.self_attn.k_proj.weight") == NULL);
	safetensors_close(f);
	rm_flat_dir(dir);
}

TEST(test_safetensors_sharded_equals_single)
{
	char d1[64], d3[64];
	hf_fixture_opts o = {.seed = SEED + 1, .n_shards = 1};
	CHECK_EQ_INT(make_fixture(d1, sizeof d1, &o), OS_OK);
	o.n_shards = 3;
	CHECK_EQ_INT(make_fixture(d3, sizeof d3, &o), OS_OK);
	safetensors_set *a = NULL, *b = NULL;
	os_error err = {0};
	CHECK_MSG(safetensors_set_open(&a, d1, &err) == OS_OK, "%s", err.msg);
	CHECK_MSG(safetensors_set_open(&b, d3, &err) == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(safetensors_set_n_files(a), 1);
	CHECK_EQ_INT(safetensors_set_n_files(b), 3);
	CHECK_EQ_INT(safetensors_set_n_tensors(a), safetensors_set_n_tensors(b));
	for (size_t i = 0; i < safetensors_set_n_tensors(a); i++) {
		const safetensors_tensor *x = safetensors_set_tensor_at(a, i);
		const safetensors_tensor *y = safetensors_set_find(b, x->name);
		CHECK_MSG(y != NULL, "tensor %s missing from the shards", x->name);
		CHECK_EQ_INT(x->dtype, y->dtype);
		CHECK_EQ_INT(x->n_bytes, y->n_bytes);
		CHECK_MSG(memcmp(x->data, y->data, x->n_bytes) == 0, "tensor %s differs", x->name);
	}
	safetensors_set_close(a);
	safetensors_set_close(b);
	/* a weight_map that puts a tensor in the wrong shard is refused */
	char ip[128];
	snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", d3);
	FILE *fp = fopen(ip, "w");
	CHECK(fp);
	fputs("{\"weight_map\": {\"model.norm.weight\": \"model-00003-of-00003.safetensors\", "
	      "\"lm_head.weight\": \"model-00001-of-00003.safetensors\"}}", fp);
	fclose(fp);
	int rc = safetensors_set_open(&b, d3, &err);
	CHECK_EQ_INT(rc, OS_EFORMAT);
	CHECK_MSG(strstr(err.msg, "lm_head.weight") && strstr(err.msg, "it is in") &&
		  strstr(err.msg, "model-00003-of-00003"), "%s", err.msg);
	fp = fopen(ip, "w");
	CHECK(fp);
	fputs("{\"weight_map\": {\"lm_head.weight\": \"model-00001-of-00003.safetensors\"}}", fp);
	fclose(fp);
	CHECK_EQ_INT(safetensors_set_open(&b, d3, &err), OS_EFORMAT);
	CHECK_MSG(strstr(err.msg, "has no such tensor"), "%s", err.msg);
	/* a shard the index names but the folder lacks */
	fp = fopen(ip, "w");
	CHECK(fp);
	fputs("{\"weight_map\": {\"lm_head.weight\": \"model-00009-of-00009.safetensors\"}}", fp);
	fclose(fp);
	CHECK(safetensors_set_open(&b, d3, &err) != OS_OK);
	CHECK_MSG(strstr(err.msg, "model-00009-of-00009.safetensors"), "%s", err.msg);
	/* a weight_map naming a path outside the folder is refused */
	fp = fopen(ip, "w");
	CHECK(fp);
	fputs("{\"weight_map\": {\"lm_head.weight\": \"../x.safetensors\"}}", fp);
	fclose(fp);
	CHECK_EQ_INT(safetensors_set_open(&b, d3, &err), OS_EFORMAT);
	CHECK(strstr(err.msg, "plain file name"));
	rm_flat_dir(d1);
	rm_flat_dir(d3);
}

/* A safetensors image: 8-byte length, header text (exactly as given), data_bytes of 0x5a. */
static size_t make_st(uint8_t *buf, size_t cap, const char *header, uint64_t claimed_len,
		      size_t data_bytes)
{
	size_t hl = strlen(header);
	if (8 + hl + data_bytes > cap)
		return 0;
	for (int b = 0; b < 8; b++)
		buf[b] = (uint8_t)(claimed_len >> (8 * b));
	memcpy(buf + 8, header, hl);
	memset(buf + 8 + hl, 0x5a, data_bytes);
	return 8 + hl + data_bytes;
}

/* Opens the image and expects rc with every needle in the message. */
static int st_expect(const uint8_t *buf, size_t n, int want_rc, const char *n1, const char *n2)
{
	safetensors_file *f = NULL;
	os_error err = {0};
	int rc = safetensors_open_buffer(&f, buf, n, "bad.safetensors", &err);
	safetensors_close(f);
	if (rc != want_rc || (n1 && !strstr(err.msg, n1)) || (n2 && !strstr(err.msg, n2)) ||
	    (rc && !strstr(err.msg, "bad.safetensors"))) {
		printf("  rc %d (want %d), message: %s\n", rc, want_rc, err.msg);
		return 0;
	}
	return 1;
}

TEST(test_safetensors_bad_inputs)
{
	uint8_t buf[512];
	size_t n;
	const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
	n = make_st(buf, sizeof buf, ok, strlen(ok), 24);
	CHECK(st_expect(buf, n, OS_OK, NULL, NULL));
	/* too small */
	CHECK(st_expect(buf, 5, OS_EFORMAT, "too small", NULL));
	/* header length past the end */
	n = make_st(buf, sizeof buf, ok, 1000, 24);
	CHECK(st_expect(buf, n, OS_EFORMAT, "header length 1000", "past the end"));
	n = make_st(buf, sizeof buf, ok, UINT64_MAX, 24);
	CHECK(st_expect(buf, n, OS_EFORMAT, "past the end", NULL));
	/* header not JSON */
	const char *nj = "{\"a\": nope}                    ";
	n = make_st(buf, sizeof buf, nj, strlen(nj), 0);
	CHECK(st_expect(buf, n, OS_EFORMAT, "not valid JSON", NULL));
	n = make_st(buf, sizeof buf, "hello", 5, 0);
	CHECK(st_expect(buf, n, OS_EFORMAT, "does not start with '{'", NULL));
	/* offsets past the end of the data */
	n = make_st(buf, sizeof buf, ok, strlen(ok), 20);
	CHECK(st_expect(buf, n, OS_EFORMAT, "tensor 'a': data_offsets end 24", "past the end"));
	/* begin after end */
	const char *be = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}";
	n = make_st(buf, sizeof buf, be, strlen(be), 24);
	CHECK(st_expect(buf, n, OS_EFORMAT, "begin after end", NULL));
	/* shape/size mismatch */
	const char *mm = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}";
	n = make_st(buf, sizeof buf, mm, strlen(mm), 24);
	CHECK(st_expect(buf, n, OS_EFORMAT, "span 20 bytes, expected 24", "[2, 3] of F32"));
	/* shape product overflowing 64 bits */
	const char *of = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}";
	n = make_st(buf, sizeof buf, of, strlen(of), 0);
	CHECK(st_expect(buf, n, OS_EFORMAT, "overflows", NULL));
	const char *of2 = "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}}";
	n = make_st(buf, sizeof buf, of2, strlen(of2), 0);
	CHECK(st_expect(buf, n, OS_EFORMAT, "tensor 'a'", "expected"));
	/* unknown dtype */
	const char *ud = "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,2]}}";
	n = make_st(buf, sizeof buf, ud, strlen(ud), 2);
	CHECK(st_expect(buf, n, OS_EFORMAT, "tensor 'a': dtype 'Q7' is unknown", "BF16"));
	/* wrong field types */
	const char *ws = "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}";
	n = make_st(buf, sizeof buf, ws, strlen(ws), 8);
	CHECK(st_expect(buf, n, OS_EFORMAT, "shape is a string", NULL));
	const char *neg = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}";
	n = make_st(buf, sizeof buf, neg, strlen(neg), 8);
	CHECK(st_expect(buf, n, OS_EFORMAT, "shape[0]", NULL));
	/* duplicate names, metadata of the wrong type */
	const char *dup = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
			  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
	n = make_st(buf, sizeof buf, dup, strlen(dup), 2);
	CHECK(st_expect(buf, n, OS_EFORMAT, "'a' appears twice", NULL));
	const char *md = "{\"__metadata__\":{\"format\":3}}";
	n = make_st(buf, sizeof buf, md, strlen(md), 0);
	CHECK(st_expect(buf, n, OS_EFORMAT, "__metadata__ 'format' is a number", NULL));
	/* recognised dtypes and scalar shapes parse */
	const char *all = "{\"a\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[0,3]},"
			  "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[3,4]},"
			  "\"c\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]},"
			  "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1],\"data_offsets\":[8,16]},"
			  "\"e\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[16,20]}}    ";
	n = make_st(buf, sizeof buf, all, strlen(all), 20);
	CHECK(st_expect(buf, n, OS_OK, NULL, NULL));
	/* trailing garbage after the JSON object */
	const char *tg = "{}xx";
	n = make_st(buf, sizeof buf, tg, strlen(tg), 0);
	CHECK(st_expect(buf, n, OS_EFORMAT, "after its JSON object", NULL));
	/* a missing file names the path */
	safetensors_file *f = NULL;
	os_error err = {0};
	CHECK(safetensors_open(&f, "/nonexistent/m.safetensors", &err) != OS_OK);
	CHECK(strstr(err.msg, "/nonexistent/m.safetensors"));
}

/* --- config.json / tokenizer.json -------------------------------------------------------- */

static int cfg_expect(const char *json, int want_rc, const char *needle)
{
	hf_config c;
	os_error err = {0};
	int rc = hf_config_parse(json, strlen(json), "config.json", &c, &err);
	if (rc != want_rc || (needle && !strstr(err.msg, needle))) {
		printf("  rc %d (want %d), message: %s\n", rc, want_rc, err.msg);
		return 0;
	}
	return 1;
}

TEST(test_config_parse)
{
	const char *good = "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
			   "\"hidden_size\":576,\"intermediate_size\":1536,\"num_hidden_layers\":30,"
			   "\"num_attention_heads\":9,\"num_key_value_heads\":3,"
			   "\"max_position_embeddings\":8192,\"vocab_size\":49152,\"rope_theta\":100000,"
			   "\"rms_norm_eps\":1e-05,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
			   "\"eos_token_id\":[2,5],\"bos_token_id\":null}";
	hf_config c;
	os_error err = {0};
	CHECK_MSG(hf_config_parse(good, strlen(good), "config.json", &c, &err) == OS_OK, "%s", err.msg);
	CHECK_EQ_STR(c.model_type, "llama");
	CHECK_EQ_STR(c.architecture, "LlamaForCausalLM");
	CHECK_EQ_INT(c.hidden_size, 576);
	CHECK_EQ_INT(c.intermediate_size, 1536);
	CHECK_EQ_INT(c.n_layers, 30);
	CHECK_EQ_INT(c.n_heads, 9);
	CHECK_EQ_INT(c.n_kv_heads, 3);
	CHECK_EQ_INT(c.head_dim, 64);
	CHECK_EQ_INT(c.max_position_embeddings, 8192);
	CHECK_EQ_INT(c.vocab_size, 49152);
	CHECK_NEAR(c.rope_theta, 100000, 0);
	CHECK_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
	CHECK(c.tie_word_embeddings);
	CHECK_EQ_STR(c.torch_dtype, "bfloat16");
	CHECK_EQ_INT(c.eos_token_id, 2);
	CHECK_EQ_INT(c.bos_token_id, -1);
	/* kv heads default to heads */
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
			 "\"vocab_size\":10}", OS_OK, NULL));
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":\"2\",\"num_attention_heads\":4,"
			 "\"vocab_size\":10}", OS_EFORMAT,
			 "config.json: num_hidden_layers is a string, expected an integer"));
	CHECK(cfg_expect("{\"hidden_size\":64.5,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
			 "\"vocab_size\":10}", OS_EFORMAT, "config.json: hidden_size is 64.5"));
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4}",
			 OS_EFORMAT, "config.json: vocab_size is missing, expected an integer"));
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
			 "\"vocab_size\":10,\"tie_word_embeddings\":\"yes\"}", OS_EFORMAT,
			 "tie_word_embeddings is a string, expected true or false"));
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
			 "\"vocab_size\":10,\"num_key_value_heads\":3}", OS_EFORMAT, "not a multiple"));
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
			 "\"vocab_size\":10,\"rope_theta\":\"1e4\"}", OS_EFORMAT,
			 "rope_theta is a string, expected a number"));
	CHECK(cfg_expect("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
			 "\"vocab_size\":10,\"architectures\":\"Llama\"}", OS_EFORMAT,
			 "architectures is a string"));
	CHECK(cfg_expect("[1,2]", OS_EFORMAT, "expected a JSON object"));
	CHECK(cfg_expect("{\"hidden_size\":", OS_EFORMAT, "not valid JSON"));
}

static int tok_expect(const char *json, int want_rc, const char *needle)
{
	hf_tokenizer *t = NULL;
	os_error err = {0};
	int rc = hf_tokenizer_parse(&t, json, strlen(json), "tokenizer.json", &err);
	hf_tokenizer_free(t);
	if (rc != want_rc || (needle && !strstr(err.msg, needle))) {
		printf("  rc %d (want %d), message: %s\n", rc, want_rc, err.msg);
		return 0;
	}
	return 1;
}

TEST(test_tokenizer_parse)
{
	/* id gap */
	CHECK(tok_expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":3},\"merges\":[]}}",
			 OS_EFORMAT, "tokenizer.json: no token with id 2"));
	/* a huge id is a gap too (and allocates nothing big) */
	CHECK(tok_expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2000000000},\"merges\":[]}}",
			 OS_EFORMAT, "no token with id 1"));
	CHECK(tok_expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
			 OS_EFORMAT, "id 0 is given to both"));
	CHECK(tok_expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", OS_EFORMAT,
			 "model.vocab 'a' has a string"));
	CHECK(tok_expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"ab\"]}}",
			 OS_EFORMAT, "model.merges[0]"));
	CHECK(tok_expect("{\"model\":{\"type\":\"Magic\",\"vocab\":{}}}", OS_EUNSUPPORTED,
			 "model.type 'Magic'"));
	CHECK(tok_expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", OS_EFORMAT, "empty"));
	CHECK(tok_expect("{\"nomodel\":1}", OS_EFORMAT, "model is missing"));
	/* added tokens extend the vocab; both merge forms give the same merges */
	const char *a = "{\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true},"
			"{\"id\":0,\"content\":\"a\",\"special\":false}],"
			"\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\"},"
			"{\"type\":\"ByteLevel\"}]},"
			"\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}";
	const char *b = "{\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true}],"
			"\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"a\",\"b\"]]}}";
	hf_tokenizer *ta = NULL, *tb = NULL;
	os_error err = {0};
	CHECK_MSG(hf_tokenizer_parse(&ta, a, strlen(a), "a.json", &err) == OS_OK, "%s", err.msg);
	CHECK_MSG(hf_tokenizer_parse(&tb, b, strlen(b), "b.json", &err) == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(hf_tokenizer_n_tokens(ta), 4);
	CHECK_EQ_STR(hf_tokenizer_token(ta, 3), "<s>");
	CHECK(hf_tokenizer_is_special(ta, 3) && !hf_tokenizer_is_special(ta, 0));
	CHECK(hf_tokenizer_byte_level(ta) && !hf_tokenizer_byte_level(tb));
	CHECK_EQ_INT(hf_tokenizer_find(ta, "ab"), 2);
	CHECK_EQ_INT(hf_tokenizer_find(ta, "<s>"), 3);
	CHECK_EQ_INT(hf_tokenizer_find(ta, "zz"), -1);
	CHECK_EQ_INT(hf_tokenizer_n_merges(ta), 1);
	CHECK_EQ_INT(hf_tokenizer_n_merges(tb), 1);
	const char *l1, *r1, *l2, *r2;
	hf_tokenizer_merge(ta, 0, &l1, &r1);
	hf_tokenizer_merge(tb, 0, &l2, &r2);
	CHECK_EQ_STR(l1, "a");
	CHECK_EQ_STR(r1, "b");
	CHECK_EQ_STR(l2, "a");
	CHECK_EQ_STR(r2, "b");
	char h1[65], h2[65];
	hf_tokenizer_vocab_hash(ta, h1);
	hf_tokenizer_vocab_hash(tb, h2);
	CHECK_EQ_STR(h1, h2);
	hf_tokenizer_free(ta);
	hf_tokenizer_free(tb);
	/* Unigram: a list of [piece, score], ids by position */
	const char *u = "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],"
			"[\"\\u2581the\",-2.5],[\"s\",-3.25]]}}";
	CHECK_MSG(hf_tokenizer_parse(&ta, u, strlen(u), "u.json", &err) == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(hf_tokenizer_model_type(ta), HF_TOK_UNIGRAM);
	CHECK_EQ_INT(hf_tokenizer_n_tokens(ta), 3);
	CHECK_EQ_STR(hf_tokenizer_token(ta, 1), "\xe2\x96\x81the");
	CHECK_NEAR(hf_tokenizer_score(ta, 2), -3.25, 0);
	hf_tokenizer_free(ta);
	CHECK(tok_expect("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", OS_EFORMAT,
			 "model.vocab[0]"));
	/* WordPiece: a map like BPE, no merges */
	CHECK(tok_expect("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0,\"##s\":1}}}", OS_OK,
			 NULL));
}

TEST(test_readme_license)
{
	char out[64];
	const char *a = "---\nlanguage: en\nlicense: apache-2.0\n---\n# x\nlicense: mit\n";
	CHECK(hf_readme_license(a, strlen(a), out, sizeof out));
	CHECK_EQ_STR(out, "apache-2.0");
	const char *b = "---\r\nlicense: \"llama3.2\"\r\n---\r\n";
	CHECK(hf_readme_license(b, strlen(b), out, sizeof out));
	CHECK_EQ_STR(out, "llama3.2");
	const char *c = "---\nlicense:\n  - mit\n---\n";
	CHECK(hf_readme_license(c, strlen(c), out, sizeof out));
	CHECK_EQ_STR(out, "mit");
	const char *d = "# no front matter\nlicense: mit\n";
	CHECK(!hf_readme_license(d, strlen(d), out, sizeof out));
	const char *e = "---\ntags: [x]\n---\nlicense: mit\n";
	CHECK(!hf_readme_license(e, strlen(e), out, sizeof out));
}

/* --- the folder and model_info ----------------------------------------------------------- */

TEST(test_hf_model_open_fixture)
{
	char dir[64];
	hf_fixture_opts o = {.seed = SEED + 2, .n_shards = 1, .merges_as_pairs = true};
	CHECK_EQ_INT(make_fixture(dir, sizeof dir, &o), OS_OK);
	hf_model *m = NULL;
	os_error err = {0};
	int rc = hf_model_open(&m, dir, &err);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	const hf_config *c = hf_model_config(m);
	CHECK_EQ_INT(c->hidden_size, FIX_HIDDEN);
	CHECK_EQ_INT(c->intermediate_size, FIX_FFN);
	CHECK_EQ_INT(c->n_layers, FIX_LAYERS);
	CHECK_EQ_INT(c->n_heads, FIX_HEADS);
	CHECK_EQ_INT(c->n_kv_heads, FIX_KV_HEADS);
	CHECK_EQ_INT(c->vocab_size, FIX_VOCAB);
	CHECK(!c->tie_word_embeddings);
	const hf_tokenizer *t = hf_model_tokenizer(m);
	CHECK(t != NULL);
	hf_fixture_vocab v;
	hf_fixture_vocab_build(&v);
	CHECK_EQ_INT(hf_tokenizer_n_tokens(t), FIX_VOCAB);
	for (int i = 0; i < FIX_VOCAB; i++) {
		CHECK_EQ_STR(hf_tokenizer_token(t, (size_t)i), v.tokens[i]);
		CHECK_EQ_INT(hf_tokenizer_find(t, v.tokens[i]), i);
		CHECK_EQ_INT(hf_tokenizer_is_special(t, (size_t)i), i < FIX_N_SPECIAL);
	}
	CHECK_EQ_STR(hf_tokenizer_token(t, FIX_N_SPECIAL + ' '), "\xc4\xa0"); /* "Ġ" */
	CHECK_EQ_INT(hf_tokenizer_n_merges(t), FIX_N_MERGES);
	const char *l, *r;
	hf_tokenizer_merge(t, 3, &l, &r);
	CHECK_EQ_STR(l, "\xc4\xa0t");
	CHECK_EQ_STR(r, "he");
	CHECK(hf_tokenizer_byte_level(t));
	CHECK_EQ_STR(hf_model_license(m), "apache-2.0");
	CHECK_EQ_INT(safetensors_set_n_tensors(hf_model_weights(m)), 3 + 9 * FIX_LAYERS);
	hf_model_close(m);
	/* no config.json */
	char cp[128];
	snprintf(cp, sizeof cp, "%s/config.json", dir);
	unlink(cp);
	rc = hf_model_open(&m, dir, &err);
	CHECK_EQ_INT(rc, OS_ENOTFOUND);
	CHECK(strstr(err.msg, dir) && strstr(err.msg, "has no config.json; is this a Hugging Face model folder?"));
	/* a config field of the wrong type names the file and the field */
	FILE *fp = fopen(cp, "w");
	CHECK(fp);
	fputs("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":[4],\"vocab_size\":267}", fp);
	fclose(fp);
	rc = hf_model_open(&m, dir, &err);
	CHECK_EQ_INT(rc, OS_EFORMAT);
	CHECK(strstr(err.msg, "config.json: num_attention_heads is an array, expected an integer"));
	/* a tokenizer.json with a gap */
	fp = fopen(cp, "w");
	CHECK(fp);
	fputs("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":267}", fp);
	fclose(fp);
	snprintf(cp, sizeof cp, "%s/tokenizer.json", dir);
	fp = fopen(cp, "w");
	CHECK(fp);
	fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":18},\"merges\":[]},"
	      "\"added_tokens\":[{\"id\":17,\"content\":\"<x>\"}]}", fp);
	fclose(fp);
	rc = hf_model_open(&m, dir, &err);
	CHECK_EQ_INT(rc, OS_EFORMAT);
	CHECK_MSG(strstr(err.msg, "tokenizer.json: no token with id 2"), "%s", err.msg);
	rm_flat_dir(dir);
	/* not a folder at all */
	CHECK(hf_model_open(&m, "/nonexistent/model", &err) != OS_OK);
}

static uint64_t dir_file_bytes(const char *dir)
{
	uint64_t total = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[4096];
	while (d && (de = readdir(d))) {
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	return total;
}

TEST(test_model_info_hf)
{
	char dir[64];
	hf_fixture_opts o = {.seed = SEED + 3, .n_shards = 2};
	CHECK_EQ_INT(make_fixture(dir, sizeof dir, &o), OS_OK);
	model_info mi;
	os_error err = {0};
	int rc = model_info_read(dir, &mi, &err);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	CHECK_EQ_STR(mi.format, "safetensors");
	CHECK_EQ_STR(mi.architecture, "llama");
	CHECK_EQ_INT(mi.n_params, fixture_n_params());
	CHECK_EQ_INT(mi.n_layers, FIX_LAYERS);
	CHECK_EQ_INT(mi.n_heads, FIX_HEADS);
	CHECK_EQ_INT(mi.n_kv_heads, FIX_KV_HEADS);
	CHECK_EQ_INT(mi.hidden_size, FIX_HIDDEN);
	CHECK_EQ_INT(mi.ffn_size, FIX_FFN);
	CHECK_EQ_INT(mi.vocab_size, FIX_VOCAB);
	CHECK_EQ_INT(mi.context_length, FIX_CTX);
	CHECK_EQ_STR(mi.precision, "BF16");
	CHECK_EQ_STR(mi.license, "apache-2.0");
	CHECK_EQ_STR(mi.tokenizer_kind, "gpt2-bpe");
	CHECK_EQ_INT(mi.file_size, dir_file_bytes(dir));
	hf_fixture_vocab v;
	hf_fixture_vocab_build(&v);
	char want[65];
	expected_vocab_hash(&v, want);
	CHECK_EQ_STR(mi.vocab_hash, want);
	rm_flat_dir(dir);
	/* all-F32 weights: precision follows the tensors */
	o.all_f32 = true;
	o.n_shards = 1;
	CHECK_EQ_INT(make_fixture(dir, sizeof dir, &o), OS_OK);
	CHECK_EQ_INT(model_info_read(dir, &mi, &err), OS_OK);
	CHECK_EQ_STR(mi.precision, "F32");
	CHECK_EQ_INT(mi.n_params, fixture_n_params());
	/* a .safetensors inside a model folder describes the folder */
	char p[128];
	snprintf(p, sizeof p, "%s/model.safetensors", dir);
	CHECK_EQ_INT(model_info_read(p, &mi, &err), OS_OK);
	CHECK_EQ_STR(mi.architecture, "llama");
	/* not a model */
	snprintf(p, sizeof p, "%s/README.md", dir);
	CHECK_EQ_INT(model_info_read(p, &mi, &err), OS_EFORMAT);
	CHECK(strstr(err.msg, "bad magic") && strstr(err.msg, "README.md"));
	rm_flat_dir(dir);
}

/* The same byte-level tokenizer written as tokenizer.json and as GGUF gives the same hash. */
TEST(test_vocab_hash_gguf_equals_hf)
{
	char dir[64], gpath[128];
	hf_fixture_opts o = {.seed = SEED + 4, .n_shards = 1};
	CHECK_EQ_INT(make_fixture(dir, sizeof dir, &o), OS_OK);
	hf_fixture_vocab v;
	hf_fixture_vocab_build(&v);
	const char *toks[FIX_VOCAB];
	for (int i = 0; i < FIX_VOCAB; i++)
		toks[i] = v.tokens[i];
	uint64_t seed = SEED + 5;
	float w[FIX_HIDDEN * 3];
	for (size_t i = 0; i < sizeof w / sizeof *w; i++)
		w[i] = test_rand_float(&seed);
	os_error err = {0};
	model_info hf, gg;
	CHECK_EQ_INT(model_info_read(dir, &hf, &err), OS_OK);
	for (int variant = 0; variant < 2; variant++) {
		gguf_writer *wr = NULL;
		CHECK_EQ_INT(gguf_writer_new(&wr, &err), OS_OK);
		gguf_writer_set_str(wr, "general.architecture", "llama");
		gguf_writer_set_str(wr, "general.name", "fixture");
		gguf_writer_set_str(wr, "general.license", "apache-2.0");
		gguf_writer_set_u32(wr, "llama.block_count", FIX_LAYERS);
		gguf_writer_set_u32(wr, "llama.embedding_length", FIX_HIDDEN);
		gguf_writer_set_str(wr, "tokenizer.ggml.model", "gpt2");
		if (variant == 1)
			toks[FIX_VOCAB - 1] = "re!"; /* one token differs */
		gguf_writer_set_arr_str(wr, "tokenizer.ggml.tokens", toks, FIX_VOCAB);
		uint64_t ne[2] = {FIX_HIDDEN, 3};
		gguf_writer_add_tensor(wr, "blk.0.attn_q.weight", GGML_TYPE_F32, 2, ne, w, sizeof w);
		snprintf(gpath, sizeof gpath, "%s/fixture.gguf", dir);
		int rc = gguf_writer_write(wr, gpath, &err);
		gguf_writer_free(wr);
		CHECK_MSG(rc == OS_OK, "%s", err.msg);
		rc = model_info_read(gpath, &gg, &err);
		CHECK_MSG(rc == OS_OK, "%s", err.msg);
		CHECK_EQ_STR(gg.format, "gguf");
		CHECK_EQ_STR(gg.tokenizer_kind, hf.tokenizer_kind);
		CHECK_EQ_INT(gg.vocab_size, FIX_VOCAB);
		CHECK_EQ_INT(gg.n_params, FIX_HIDDEN * 3);
		CHECK_EQ_STR(gg.precision, "F32");
		CHECK_EQ_STR(gg.name_hint, "fixture");
		CHECK_EQ_INT(gg.n_layers, FIX_LAYERS);
		CHECK_EQ_STR(gg.license, "apache-2.0");
		if (variant == 0)
			CHECK_EQ_STR(gg.vocab_hash, hf.vocab_hash);
		else
			CHECK(strcmp(gg.vocab_hash, hf.vocab_hash) != 0);
		unlink(gpath);
	}
	rm_flat_dir(dir);
}

TEST(test_model_info_demo_gguf)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!path || !*path)
		SKIP("test_model_info_demo_gguf: OPTSTUDIO_DEMO_MODEL not set");
	model_info mi;
	os_error err = {0};
	int rc = model_info_read(path, &mi, &err);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	printf("  %s: %s, %llu params, %s, vocab %u, hash %.16s...\n", mi.name_hint, mi.architecture,
	       (unsigned long long)mi.n_params, mi.precision, mi.vocab_size, mi.vocab_hash);
	CHECK_EQ_STR(mi.format, "gguf");
	CHECK_EQ_STR(mi.architecture, "llama");
	CHECK_EQ_INT(mi.n_layers, 30);
	CHECK_EQ_INT(mi.hidden_size, 576);
	CHECK_EQ_INT(mi.n_heads, 9);
	CHECK_EQ_INT(mi.n_kv_heads, 3);
	CHECK_EQ_INT(mi.vocab_size, 49152);
	CHECK_EQ_STR(mi.precision, "Q4_1");
	CHECK_EQ_STR(mi.tokenizer_kind, "gpt2-bpe");
	CHECK(mi.n_params >= 130000000ull && mi.n_params <= 140000000ull);
	CHECK(strlen(mi.vocab_hash) == 64);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	CHECK_EQ_INT(mi.file_size, st.st_size);
}

int main(void)
{
	RUN(test_safetensors_fixture_round_trip);
	RUN(test_safetensors_sharded_equals_single);
	RUN(test_safetensors_bad_inputs);
	RUN(test_config_parse);
	RUN(test_tokenizer_parse);
	RUN(test_readme_license);
	RUN(test_hf_model_open_fixture);
	RUN(test_model_info_hf);
	RUN(test_vocab_hash_gguf_equals_hf);
	RUN(test_model_info_demo_gguf);
	return test_summary();
}
