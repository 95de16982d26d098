/* test_gguf.c: GGUF reader/writer round trips, quantize/dequantize bounds, f16/bf16
 * exactness, the fixture generator, every malformed-file case, and the real demo model
 * when OPTSTUDIO_DEMO_MODEL names it. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "core/numerics.h"
#include "tests/test.h"

static char tmpdir[64];
static uint64_t seed;

static void tmp_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Reads a whole file into an exactly sized malloc'd buffer (so sanitizers catch overreads). */
static uint8_t *slurp(const char *path, size_t *size)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
	if (p && fread(p, 1, (size_t)n, fp) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(fp);
	*size = (size_t)n;
	return p;
}

/* ---- a byte builder for hand-made (and deliberately broken) files -------------------- */

typedef struct bb {
	uint8_t *p;
	size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s)
{
	bb_u64(b, strlen(s));
	bb_put(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t a)
{
	while (b->n % a)
		bb_put(b, "", 1);
}

/* A small file with two F32 tensors "x" [8] and "y" [8]; each field can be spoiled. */
typedef struct spec {
	uint32_t magic, version;
	uint64_t n_tensors, n_kv;    /* header counts (defaults 2, 3 or 4) */
	int64_t alignment;           /* -1: no general.alignment key */
	uint64_t name_len;           /* 0: the true length of general.name's value */
	const char *tensor2;         /* the second tensor's name */
	const char *key3;            /* the third key's name */
	uint32_t n_dims, type;       /* of tensor "x" */
	uint64_t ne0, ne1;           /* of tensor "x" (ne1 used when n_dims >= 2) */
	uint64_t offset;             /* of tensor "x" */
	uint32_t kv_type;            /* value type of the third key */
	int nesting;                 /* > 0: third key is an array nested this deep */
} spec;

static spec spec_ok(void)
{
	return (spec){ .magic = 0x46554747u, .version = 3, .n_tensors = 2, .n_kv = 3,
		       .alignment = -1, .tensor2 = "y", .key3 = "general.file_type",
		       .n_dims = 1, .type = GGML_TYPE_F32, .ne0 = 8, .ne1 = 1, .offset = 0,
		       .kv_type = GGUF_TYPE_UINT32 };
}

static void bb_nested(bb *b, int depth)
{
	if (depth == 0) {
		bb_u32(b, GGUF_TYPE_UINT32);
		bb_u64(b, 2);
		bb_u32(b, 7);
		bb_u32(b, 9);
		return;
	}
	bb_u32(b, GGUF_TYPE_ARRAY);
	bb_u64(b, 1);
	bb_nested(b, depth - 1);
}

static bb build(spec s)
{
	bb b = { 0 };
	bb_u32(&b, s.magic);
	bb_u32(&b, s.version);
	bb_u64(&b, s.n_tensors);
	bb_u64(&b, s.n_kv + (s.alignment >= 0 && s.n_kv == 3));
	bb_str(&b, "general.architecture");
	bb_u32(&b, GGUF_TYPE_STRING);
	bb_str(&b, "llama");
	bb_str(&b, "general.name");
	bb_u32(&b, GGUF_TYPE_STRING);
	bb_u64(&b, s.name_len ? s.name_len : 4);
	bb_put(&b, "tiny", 4);
	bb_str(&b, s.key3);
	if (s.nesting > 0) {
		bb_u32(&b, GGUF_TYPE_ARRAY);
		bb_nested(&b, s.nesting - 1);
	} else {
		bb_u32(&b, s.kv_type);
		bb_u32(&b, 1);
	}
	if (s.alignment >= 0) {
		bb_str(&b, "general.alignment");
		bb_u32(&b, GGUF_TYPE_UINT32);
		bb_u32(&b, (uint32_t)s.alignment);
	}
	bb_str(&b, "x");
	bb_u32(&b, s.n_dims);
	for (uint32_t d = 0; d < s.n_dims; d++)
		bb_u64(&b, d == 0 ? s.ne0 : d == 1 ? s.ne1 : 1);
	bb_u32(&b, s.type);
	bb_u64(&b, s.offset);
	bb_str(&b, s.tensor2);
	bb_u32(&b, 1);
	bb_u64(&b, 8);
	bb_u32(&b, GGML_TYPE_F32);
	bb_u64(&b, 32);
	bb_pad(&b, s.alignment > 0 && (s.alignment & (s.alignment - 1)) == 0 ?
			   (size_t)s.alignment : 32);
	for (int i = 0; i < 16; i++) {
		float v = (float)i * 0.5f - 3.0f;
		bb_put(&b, &v, 4);
	}
	return b;
}

/* Opens a spoiled spec; checks rc and that the message names the file and each needle. */
#define EXPECT_BAD(s, want_rc, ...)                                                       \
	do {                                                                              \
		bb b_ = build(s);                                                         \
		gguf_file *f_ = NULL;                                                     \
		os_error e_ = { 0 };                                                      \
		int rc_ = gguf_open_buffer(&f_, b_.p, b_.n, "bad.gguf", &e_);             \
		free(b_.p);                                                               \
		gguf_close(f_);                                                           \
		CHECK_MSG(rc_ == (want_rc), "rc %d (expected %d): %s", rc_, (want_rc),    \
			  e_.msg);                                                        \
		CHECK_MSG(f_ == NULL, "a failed open must leave *out NULL");              \
		CHECK_MSG(strstr(e_.msg, "'bad.gguf'"), "message lacks the file: %s", e_.msg); \
		const char *needles_[] = { "", __VA_ARGS__ };                                 \
		for (size_t k_ = 0; k_ < sizeof needles_ / sizeof *needles_; k_++)        \
			CHECK_MSG(strstr(e_.msg, needles_[k_]), "message lacks \"%s\": %s", \
				  needles_[k_], e_.msg);                                  \
	} while (0)

TEST(test_spec_control)
{
	/* the unspoiled spec opens, so each bad case below fails for its own reason */
	spec s = spec_ok();
	bb b = build(s);
	gguf_file *f;
	os_error e = { 0 };
	int rc = gguf_open_buffer(&f, b.p, b.n, "ok.gguf", &e);
	CHECK_MSG(rc == OS_OK, "%s", e.msg);
	CHECK_EQ_INT(gguf_n_tensors(f), 2);
	const gguf_tensor *y = gguf_find_tensor(f, "y");
	CHECK(y && y->offset == 32 && y->n_bytes == 32);
	float v;
	memcpy(&v, y->data, 4);
	CHECK_NEAR(v, 8 * 0.5f - 3.0f, 0);
	gguf_close(f);
	free(b.p);
	s.version = 2; /* v2 has the same layout as v3 */
	b = build(s);
	rc = gguf_open_buffer(&f, b.p, b.n, "v2.gguf", &e);
	CHECK_MSG(rc == OS_OK, "%s", e.msg);
	CHECK_EQ_INT(gguf_version(f), 2);
	gguf_close(f);
	s.alignment = 16;
	bb b2 = build(s);
	rc = gguf_open_buffer(&f, b2.p, b2.n, "ok.gguf", &e);
	CHECK_MSG(rc == OS_OK, "%s", e.msg);
	CHECK_EQ_INT(gguf_alignment(f), 16);
	CHECK_EQ_INT(gguf_data_offset(f) % 16, 0);
	gguf_close(f);
	free(b.p);
	free(b2.p);
}

TEST(test_bad_files)
{
	spec s;
	s = spec_ok(); s.magic = 0x46554746u;
	EXPECT_BAD(s, OS_EFORMAT, "magic", "expected GGUF");
	s = spec_ok(); s.version = 1;
	EXPECT_BAD(s, OS_EUNSUPPORTED, "version 1");
	s = spec_ok(); s.version = 99;
	EXPECT_BAD(s, OS_EUNSUPPORTED, "version 99", "expected version 2 or 3");
	s = spec_ok(); s.version = 0x03000000u;
	EXPECT_BAD(s, OS_EUNSUPPORTED, "big-endian");
	s = spec_ok(); s.n_tensors = 1ull << 40;
	EXPECT_BAD(s, OS_EFORMAT, "n_tensors", "absurd");
	s = spec_ok(); s.n_tensors = UINT64_MAX;
	EXPECT_BAD(s, OS_EFORMAT, "n_tensors");
	s = spec_ok(); s.n_kv = 1ull << 40;
	EXPECT_BAD(s, OS_EFORMAT, "n_kv", "absurd");
	s = spec_ok(); s.n_kv = 5; /* plausible but more keys than there are */
	EXPECT_BAD(s, OS_EFORMAT);
	s = spec_ok(); s.name_len = 1u << 20;
	EXPECT_BAD(s, OS_EFORMAT, "general.name", "length 1048576");
	s = spec_ok(); s.name_len = UINT64_MAX;
	EXPECT_BAD(s, OS_EFORMAT, "general.name");
	s = spec_ok(); s.offset = 4096;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x' data [offset 4096, 32 bytes] runs past the end");
	s = spec_ok(); s.offset = UINT64_MAX - 31;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x'", "runs past the end");
	s = spec_ok(); s.offset = 4;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x' offset 4", "alignment 32");
	s = spec_ok(); s.type = 42;
	EXPECT_BAD(s, OS_EFORMAT, "unknown tensor type 42 for tensor 'x'");
	s = spec_ok(); s.n_dims = 5;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x' has n_dims = 5");
	s = spec_ok(); s.n_dims = 0;
	EXPECT_BAD(s, OS_EFORMAT, "n_dims = 0");
	s = spec_ok(); s.alignment = 0;
	EXPECT_BAD(s, OS_EFORMAT, "general.alignment = 0", "power of two");
	s = spec_ok(); s.alignment = 3;
	EXPECT_BAD(s, OS_EFORMAT, "general.alignment = 3", "power of two");
	s = spec_ok(); s.tensor2 = "x";
	EXPECT_BAD(s, OS_EFORMAT, "duplicate tensor name 'x'");
	s = spec_ok(); s.key3 = "general.name";
	EXPECT_BAD(s, OS_EFORMAT, "duplicate key 'general.name'");
	s = spec_ok(); s.key3 = "";
	EXPECT_BAD(s, OS_EFORMAT, "empty name");
	s = spec_ok(); s.type = GGML_TYPE_Q4_0;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x' ne[0] = 8", "block size 32");
	s = spec_ok(); s.n_dims = 2; s.ne0 = 1ull << 32; s.ne1 = 1ull << 32;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x'", "overflows");
	s = spec_ok(); s.n_dims = 2; s.ne0 = 1ull << 63;
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x' ne[0]");
	s = spec_ok(); s.n_dims = 2; s.ne1 = 1ull << 40; /* 2^43 elements: past the end */
	EXPECT_BAD(s, OS_EFORMAT, "tensor 'x'", "runs past the end");
	s = spec_ok(); s.kv_type = 13;
	EXPECT_BAD(s, OS_EFORMAT, "key 'general.file_type' has unknown value type 13");
	s = spec_ok(); s.nesting = 9;
	EXPECT_BAD(s, OS_EFORMAT, "general.file_type", "nests arrays deeper");
	s = spec_ok(); s.nesting = 1; s.key3 = "general.alignment"; /* an array, not a u32 */
	EXPECT_BAD(s, OS_EFORMAT, "general.alignment has type array");
}

/* A file whose only key is a string array of which element 1 claims len1 bytes. */
static void expect_bad_str_array(uint64_t n, uint64_t len1, const char *needle)
{
	bb b = { 0 };
	bb_u32(&b, 0x46554747u);
	bb_u32(&b, 3);
	bb_u64(&b, 0);
	bb_u64(&b, 1);
	bb_str(&b, "tokenizer.ggml.tokens");
	bb_u32(&b, GGUF_TYPE_ARRAY);
	bb_u32(&b, GGUF_TYPE_STRING);
	bb_u64(&b, n);
	bb_str(&b, "a");
	bb_u64(&b, len1);
	bb_put(&b, "bc", 2);
	gguf_file *f;
	os_error e = { 0 };
	int rc = gguf_open_buffer(&f, b.p, b.n, "arr.gguf", &e);
	free(b.p);
	CHECK_MSG(rc == OS_EFORMAT, "rc %d: %s", rc, e.msg);
	CHECK_MSG(strstr(e.msg, needle), "message lacks \"%s\": %s", needle, e.msg);
}

TEST(test_bad_string_arrays)
{
	expect_bad_str_array(2, 1000, "element 1 of string array 'tokenizer.ggml.tokens'");
	if (test_case_failed)
		return;
	expect_bad_str_array(2, UINT64_MAX, "element 1 of string array");
	if (test_case_failed)
		return;
	expect_bad_str_array(1ull << 40, 2, "array of 1099511627776 strings");
	if (test_case_failed)
		return;
	expect_bad_str_array(3, 2, "array of 3 strings needs at least 24 bytes");
}

TEST(test_tiny_buffers)
{
	os_error e = { 0 };
	gguf_file *f;
	CHECK_EQ_INT(gguf_open_buffer(&f, "", 0, "empty.gguf", &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "empty.gguf"));
	CHECK_EQ_INT(gguf_open_buffer(&f, "GGUF", 4, "four.gguf", &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "version"));
	char path[256];
	tmp_path(path, sizeof path, "does-not-exist.gguf");
	CHECK_EQ_INT(gguf_open(&f, path, &e), OS_ENOTFOUND);
	CHECK(strstr(e.msg, path));
	CHECK_EQ_INT(gguf_open(&f, tmpdir, &e), OS_EIO); /* a directory */
}

/* ---- round trips ----------------------------------------------------------------------- */

static void fill_random(void *p, size_t n, uint64_t *st)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)test_rand_next(st);
}

/* Random f32 values of a random scale, packed as type (so f16/quant scales are sane). */
static void fill_tensor(uint32_t type, void *dst, size_t n, uint64_t *st)
{
	float *x = malloc(n * sizeof *x);
	float scale = 0.01f + (float)(test_rand_next(st) % 1000) * 0.01f;
	for (size_t i = 0; i < n; i++)
		x[i] = test_rand_float(st) * scale;
	gguf_quantize(type, x, dst, n, NULL);
	free(x);
}

TEST(test_round_trip_all_types)
{
	uint64_t st = seed;
	gguf_writer *w;
	os_error e = { 0 };
	CHECK_EQ_INT(gguf_writer_new(&w, &e), OS_OK);
	uint8_t u8 = 0xab;
	int8_t i8 = -5;
	uint16_t u16 = 0xbeef;
	int16_t i16 = -12345;
	uint32_t u32 = 0xdeadbeefu;
	int32_t i32 = -2000000000;
	float f32 = 3.25f;
	uint8_t bl = 1;
	uint64_t u64 = 0xfedcba9876543210ull;
	int64_t i64 = -(1ll << 50);
	double f64 = 3.141592653589793;
	CHECK(!gguf_writer_set_value(w, "t.u8", GGUF_TYPE_UINT8, &u8));
	CHECK(!gguf_writer_set_value(w, "t.i8", GGUF_TYPE_INT8, &i8));
	CHECK(!gguf_writer_set_value(w, "t.u16", GGUF_TYPE_UINT16, &u16));
	CHECK(!gguf_writer_set_value(w, "t.i16", GGUF_TYPE_INT16, &i16));
	CHECK(!gguf_writer_set_u32(w, "t.u32", 7)); /* replaced below */
	CHECK(!gguf_writer_set_i32(w, "t.i32", i32));
	CHECK(!gguf_writer_set_f32(w, "t.f32", f32));
	CHECK(!gguf_writer_set_value(w, "t.bool", GGUF_TYPE_BOOL, &bl));
	CHECK(!gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo \xc4\xa0world"));
	CHECK(!gguf_writer_set_str(w, "t.empty", ""));
	CHECK(!gguf_writer_set_u64(w, "t.u64", u64));
	CHECK(!gguf_writer_set_value(w, "t.i64", GGUF_TYPE_INT64, &i64));
	CHECK(!gguf_writer_set_value(w, "t.f64", GGUF_TYPE_FLOAT64, &f64));
	CHECK(!gguf_writer_set_bool(w, "t.false", false));
	CHECK(!gguf_writer_set_u32(w, "t.u32", u32));
	/* arrays of every numeric type, at awkward lengths */
	static const enum gguf_type num_types[] = {
		GGUF_TYPE_UINT8, GGUF_TYPE_INT8, GGUF_TYPE_UINT16, GGUF_TYPE_INT16,
		GGUF_TYPE_UINT32, GGUF_TYPE_INT32, GGUF_TYPE_FLOAT32, GGUF_TYPE_BOOL,
		GGUF_TYPE_UINT64, GGUF_TYPE_INT64, GGUF_TYPE_FLOAT64,
	};
	static const size_t lens[] = { 0, 1, 7, 33 };
	static const size_t esz[] = { 1, 1, 2, 2, 4, 4, 4, 1, 8, 8, 8 };
	uint8_t arr[11][4][33 * 8];
	for (size_t t = 0; t < 11; t++)
		for (size_t l = 0; l < 4; l++) {
			char key[64];
			fill_random(arr[t][l], sizeof arr[t][l], &st);
			snprintf(key, sizeof key, "a.%s.%zu", gguf_type_name(num_types[t]), lens[l]);
			CHECK(!gguf_writer_set_arr(w, key, num_types[t], arr[t][l], lens[l]));
		}
	char longs[301];
	memset(longs, 'z', 300);
	longs[300] = '\0';
	const char *strs[] = { "", "a", "\xc4\xa0the", longs, "<|im_end|>" };
	CHECK(!gguf_writer_set_arr_str(w, "a.str", strs, 5));
	CHECK(!gguf_writer_set_arr_str(w, "a.str0", strs, 0));
	/* tensors of every type, awkward shapes, random contents */
	static const struct { uint32_t type; uint32_t nd; uint64_t ne[4]; } tt[] = {
		{ GGML_TYPE_F32, 2, { 3, 5 } },       { GGML_TYPE_F16, 1, { 7 } },
		{ GGML_TYPE_BF16, 3, { 1, 1, 3 } },   { GGML_TYPE_Q8_0, 2, { 32, 3 } },
		{ GGML_TYPE_Q4_0, 3, { 64, 1, 2 } },  { GGML_TYPE_Q4_1, 4, { 96, 2, 1, 3 } },
		{ GGML_TYPE_F32, 1, { 1 } },
	};
	enum { NT = sizeof tt / sizeof *tt };
	void *tdata[NT];
	size_t tbytes[NT];
	for (int i = 0; i < NT; i++) {
		size_t n = 1;
		for (uint32_t d = 0; d < tt[i].nd; d++)
			n *= tt[i].ne[d];
		tbytes[i] = ggml_type_row_bytes(tt[i].type, n);
		tdata[i] = malloc(tbytes[i]);
		fill_tensor(tt[i].type, tdata[i], n, &st);
		char name[32];
		snprintf(name, sizeof name, "t%d.%s", i, ggml_type_name(tt[i].type));
		CHECK(!gguf_writer_add_tensor(w, name, tt[i].type, tt[i].nd, tt[i].ne, tdata[i],
					      tbytes[i]));
	}
	char p1[256], p2[256];
	tmp_path(p1, sizeof p1, "rt1.gguf");
	tmp_path(p2, sizeof p2, "rt2.gguf");
	int rc = gguf_writer_write(w, p1, &e);
	CHECK_MSG(rc == OS_OK, "%s", e.msg);
	gguf_writer_free(w);

	gguf_file *f;
	rc = gguf_open(&f, p1, &e);
	CHECK_MSG(rc == OS_OK, "%s", e.msg);
	CHECK_EQ_INT(gguf_version(f), 3);
	CHECK_EQ_INT(gguf_n_kv(f), 14 + 44 + 2); /* t.u32 set twice counts once */
	uint64_t vu;
	int64_t vi;
	float vf;
	bool vb;
	const char *s;
	size_t len;
	CHECK(!gguf_get_u64(f, "t.u8", &vu, &e) && vu == u8);
	CHECK(!gguf_get_i64(f, "t.i8", &vi, &e) && vi == i8);
	CHECK(!gguf_get_u64(f, "t.u16", &vu, &e) && vu == u16);
	CHECK(!gguf_get_i64(f, "t.i16", &vi, &e) && vi == i16);
	uint32_t v32;
	CHECK(!gguf_get_u32(f, "t.u32", &v32, &e) && v32 == u32);
	CHECK(!gguf_get_i64(f, "t.i32", &vi, &e) && vi == i32);
	CHECK(!gguf_get_f32(f, "t.f32", &vf, &e) && vf == f32);
	CHECK(!gguf_get_bool(f, "t.bool", &vb, &e) && vb);
	CHECK(!gguf_get_bool(f, "t.false", &vb, &e) && !vb);
	CHECK(!gguf_get_str(f, "t.str", &s, &len, &e) && len == 14 &&
	      memcmp(s, "h\xc3\xa9llo \xc4\xa0world", 14) == 0);
	CHECK(!gguf_get_str(f, "t.empty", &s, &len, &e) && len == 0);
	CHECK(!gguf_get_u64(f, "t.u64", &vu, &e) && vu == u64);
	CHECK(!gguf_get_i64(f, "t.i64", &vi, &e) && vi == i64);
	CHECK(!gguf_get_f32(f, "t.f64", &vf, &e) && vf == (float)f64);
	CHECK_EQ_INT(gguf_kv_type(f, (size_t)gguf_find_key(f, "t.f64")), GGUF_TYPE_FLOAT64);
	CHECK_EQ_INT(gguf_kv_type(f, (size_t)gguf_find_key(f, "t.u32")), GGUF_TYPE_UINT32);
	CHECK_EQ_INT(gguf_find_key(f, "t.u8"), 0); /* insertion order kept */
	for (size_t t = 0; t < 11; t++)
		for (size_t l = 0; l < 4; l++) {
			char key[64];
			enum gguf_type et;
			size_t n;
			const void *d;
			snprintf(key, sizeof key, "a.%s.%zu", gguf_type_name(num_types[t]), lens[l]);
			CHECK_MSG(!gguf_get_arr(f, key, &et, &n, &d, &e), "%s", e.msg);
			CHECK(et == num_types[t] && n == lens[l]);
			CHECK_MSG(memcmp(d, arr[t][l], n * esz[t]) == 0, "array %s differs", key);
		}
	for (size_t i = 0; i < 5; i++) {
		CHECK(!gguf_get_arr_str(f, "a.str", i, &s, &len, &e));
		CHECK(len == strlen(strs[i]) && memcmp(s, strs[i], len) == 0);
	}
	CHECK_EQ_INT(gguf_get_arr_str(f, "a.str", 5, &s, &len, &e), OS_ERANGE);
	CHECK_EQ_INT(gguf_get_arr_str(f, "a.str0", 0, &s, &len, &e), OS_ERANGE);
	CHECK_EQ_INT(gguf_n_tensors(f), NT);
	for (int i = 0; i < NT; i++) {
		const gguf_tensor *t = gguf_tensor_at(f, (size_t)i);
		CHECK(t && t->type == tt[i].type && t->n_dims == tt[i].nd);
		for (int d = 0; d < 4; d++)
			CHECK(t->ne[d] == ((uint32_t)d < tt[i].nd ? tt[i].ne[d] : 1));
		CHECK(t->n_bytes == tbytes[i] && memcmp(t->data, tdata[i], tbytes[i]) == 0);
		CHECK(t->offset % 32 == 0 && ((uintptr_t)t->data % 32) == 0);
		CHECK(gguf_find_tensor(f, t->name) == t);
	}
	CHECK(gguf_find_tensor(f, "nope") == NULL);
	CHECK(gguf_tensor_at(f, NT) == NULL);

	/* copy_kv + the same tensors gives a byte-identical file */
	CHECK(!gguf_writer_new(&w, &e));
	CHECK(!gguf_writer_copy_kv(w, f, NULL));
	for (int i = 0; i < NT; i++) {
		const gguf_tensor *t = gguf_tensor_at(f, (size_t)i);
		CHECK(!gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
					      t->n_bytes));
	}
	rc = gguf_writer_write(w, p2, &e);
	CHECK_MSG(rc == OS_OK, "%s", e.msg);
	gguf_writer_free(w);
	size_t n1, n2;
	uint8_t *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
	CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0);
	free(b1);
	free(b2);

	/* skip_prefix drops exactly the keys it names */
	CHECK(!gguf_writer_new(&w, &e));
	CHECK(!gguf_writer_copy_kv(w, f, "a."));
	CHECK_EQ_INT(gguf_writer_write(w, p2, &e), OS_OK);
	gguf_writer_free(w);
	gguf_file *g;
	CHECK(!gguf_open(&g, p2, &e));
	CHECK_EQ_INT(gguf_n_kv(g), 14);
	CHECK_EQ_INT(gguf_n_tensors(g), 0);
	CHECK(gguf_find_key(g, "a.str") < 0 && gguf_find_key(g, "t.str") >= 0);
	gguf_close(g);
	gguf_close(f);
	for (int i = 0; i < NT; i++)
		free(tdata[i]);
}

TEST(test_getter_types)
{
	gguf_writer *w;
	os_error e = { 0 };
	char p[256];
	tmp_path(p, sizeof p, "getters.gguf");
	CHECK(!gguf_writer_new(&w, &e));
	gguf_writer_set_i32(w, "neg", -3);
	gguf_writer_set_u64(w, "big", 1ull << 40);
	gguf_writer_set_u64(w, "huge", UINT64_MAX);
	gguf_writer_set_str(w, "name", "x");
	uint32_t a[2] = { 1, 2 };
	gguf_writer_set_arr(w, "arr", GGUF_TYPE_UINT32, a, 2);
	CHECK(!gguf_writer_write(w, p, &e));
	gguf_writer_free(w);
	gguf_file *f;
	CHECK(!gguf_open(&f, p, &e));
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	float fl;
	bool b;
	const char *s;
	size_t n;
	CHECK_EQ_INT(gguf_get_u32(f, "neg", &u32, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "'neg'") && strstr(e.msg, "negative"));
	CHECK_EQ_INT(gguf_get_i64(f, "neg", &i64, &e), OS_OK);
	CHECK_EQ_INT(i64, -3);
	CHECK_EQ_INT(gguf_get_u32(f, "big", &u32, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "'big'") && strstr(e.msg, "uint32"));
	CHECK_EQ_INT(gguf_get_u64(f, "big", &u64, &e), OS_OK);
	CHECK_EQ_INT(gguf_get_i64(f, "huge", &i64, &e), OS_EFORMAT);
	CHECK_EQ_INT(gguf_get_u32(f, "name", &u32, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "'name'") && strstr(e.msg, "string") && strstr(e.msg, "getters.gguf"));
	CHECK_EQ_INT(gguf_get_str(f, "big", &s, &n, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "uint64") && strstr(e.msg, "expected string"));
	CHECK_EQ_INT(gguf_get_f32(f, "name", &fl, &e), OS_EFORMAT);
	CHECK_EQ_INT(gguf_get_bool(f, "big", &b, &e), OS_EFORMAT);
	CHECK_EQ_INT(gguf_get_arr(f, "name", NULL, NULL, NULL, &e), OS_EFORMAT);
	CHECK_EQ_INT(gguf_get_arr_str(f, "arr", 0, &s, &n, &e), OS_EFORMAT);
	CHECK(strstr(e.msg, "array of uint32"));
	CHECK_EQ_INT(gguf_get_u32(f, "absent", &u32, &e), OS_ENOTFOUND);
	CHECK(strstr(e.msg, "'absent'"));
	CHECK_EQ_INT(gguf_find_key(f, "absent"), -1);
	gguf_writer *w2;
	CHECK(!gguf_writer_new(&w2, &e));
	CHECK(gguf_writer_set_value(w2, "t.bad", GGUF_TYPE_STRING, "x") == OS_EUSAGE);
	CHECK(gguf_writer_set_arr(w2, "t.bad2", GGUF_TYPE_ARRAY, "x", 1) == OS_EUSAGE);
	CHECK_EQ_INT(gguf_writer_write(w2, p, &e), OS_EUSAGE);
	CHECK(strstr(e.msg, "t.bad") && !strstr(e.msg, "t.bad2"));
	gguf_writer_free(w2);
	gguf_close(f);
}

TEST(test_nested_arrays_copy)
{
	/* a writer cannot make nested arrays, so build one by hand and copy it through */
	spec s = spec_ok();
	s.nesting = 3;
	bb b = build(s);
	gguf_file *f, *g;
	os_error e = { 0 };
	CHECK_MSG(!gguf_open_buffer(&f, b.p, b.n, "nested.gguf", &e), "%s", e.msg);
	enum gguf_type et;
	size_t n;
	const void *d;
	CHECK(!gguf_get_arr(f, "general.file_type", &et, &n, &d, &e));
	CHECK(et == GGUF_TYPE_ARRAY && n == 1);
	gguf_writer *w;
	char p[256];
	tmp_path(p, sizeof p, "nested.gguf");
	CHECK(!gguf_writer_new(&w, &e));
	CHECK(!gguf_writer_copy_kv(w, f, NULL));
	CHECK(!gguf_writer_write(w, p, &e));
	gguf_writer_free(w);
	CHECK_MSG(!gguf_open(&g, p, &e), "%s", e.msg);
	const void *d2;
	size_t n2;
	CHECK(!gguf_get_arr(g, "general.file_type", &et, &n2, &d2, &e));
	CHECK(et == GGUF_TYPE_ARRAY && n2 == 1);
	/* after the outer header: two nested headers (12 bytes each), then two u32 */
	CHECK(memcmp(d, d2, 12 + 12 + 8) == 0);
	uint32_t last;
	memcpy(&last, (const uint8_t *)d2 + 28, 4);
	CHECK_EQ_INT(last, 9);
	gguf_close(g);
	gguf_close(f);
	free(b.p);
}

TEST(test_writer_alignment)
{
	gguf_writer *w;
	os_error e = { 0 };
	char p[256];
	tmp_path(p, sizeof p, "align.gguf");
	uint64_t st = seed ^ 1;
	float x[3 * 7];
	for (int i = 0; i < 21; i++)
		x[i] = test_rand_float(&st);
	uint64_t ne[2] = { 7, 3 };
	CHECK(!gguf_writer_new(&w, &e));
	gguf_writer_set_u32(w, "general.alignment", 128);
	CHECK(!gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 2, ne, x, sizeof x));
	CHECK(!gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, ne, x, sizeof x));
	CHECK(gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, ne, x, sizeof x) == OS_EEXISTS);
	CHECK_EQ_INT(gguf_writer_write(w, p, &e), OS_EEXISTS); /* the setter failure is kept */
	CHECK(strstr(e.msg, "duplicate tensor name 'b'"));
	gguf_writer_free(w);
	CHECK(access(p, F_OK) != 0);

	CHECK(!gguf_writer_new(&w, &e));
	gguf_writer_set_u32(w, "general.alignment", 128);
	CHECK(!gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 2, ne, x, sizeof x));
	CHECK(!gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, ne, x, sizeof x));
	CHECK(gguf_writer_add_tensor(w, "c", GGML_TYPE_F32, 2, ne, x, sizeof x - 4) == OS_EUSAGE);
	CHECK_EQ_INT(gguf_writer_write(w, p, &e), OS_EUSAGE);
	gguf_writer_free(w);

	CHECK(!gguf_writer_new(&w, &e));
	gguf_writer_set_u32(w, "general.alignment", 128);
	CHECK(!gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 2, ne, x, sizeof x));
	CHECK(!gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, ne, x, sizeof x));
	CHECK_MSG(!gguf_writer_write(w, p, &e), "%s", e.msg);
	gguf_writer_free(w);
	gguf_file *f;
	CHECK(!gguf_open(&f, p, &e));
	CHECK_EQ_INT(gguf_alignment(f), 128);
	CHECK_EQ_INT(gguf_data_offset(f) % 128, 0);
	CHECK_EQ_INT(gguf_find_tensor(f, "b")->offset, 128);
	CHECK(memcmp(gguf_find_tensor(f, "b")->data, x, sizeof x) == 0);
	gguf_close(f);

	CHECK(!gguf_writer_new(&w, &e));
	gguf_writer_set_u32(w, "general.alignment", 48);
	CHECK_EQ_INT(gguf_writer_write(w, p, &e), OS_EUSAGE);
	CHECK(strstr(e.msg, "general.alignment"));
	gguf_writer_free(w);
}

TEST(test_writer_io_errors)
{
	gguf_writer *w;
	os_error e = { 0 };
	CHECK(!gguf_writer_new(&w, &e));
	gguf_writer_set_str(w, "k", "v");
	char p[256];
	tmp_path(p, sizeof p, "no/such/dir/x.gguf");
	CHECK_EQ_INT(gguf_writer_write(w, p, &e), OS_EIO);
	CHECK(strstr(e.msg, "no/such/dir/x.gguf") && strstr(e.msg, "No such file or directory"));
	gguf_writer_free(w);

	/* a write that runs out of room (file size limit) fails cleanly, leaving no files */
	tmp_path(p, sizeof p, "full.gguf");
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = { 4096, 4096 };
		setrlimit(RLIMIT_FSIZE, &rl);
		static float big[1 << 14];
		uint64_t ne = 1 << 14;
		gguf_writer *cw;
		os_error ce = { 0 };
		gguf_writer_new(&cw, &ce);
		gguf_writer_add_tensor(cw, "big", GGML_TYPE_F32, 1, &ne, big, sizeof big);
		int rc = gguf_writer_write(cw, p, &ce);
		char tmp[300];
		snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
		int ok = rc == OS_EIO && strstr(ce.msg, "File too large") && strstr(ce.msg, p) &&
			 access(tmp, F_OK) != 0 && access(p, F_OK) != 0;
		if (!ok)
			printf("  child: rc %d msg %s\n", rc, ce.msg);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- numerics ---------------------------------------------------------------------------- */

TEST(test_f16_bf16_exact)
{
	for (uint32_t h = 0; h < 65536; h++) {
		float f = num_f16_to_f32((uint16_t)h);
		float g;
		uint8_t src[2] = { (uint8_t)h, (uint8_t)(h >> 8) };
		CHECK(!gguf_dequantize(GGML_TYPE_F16, src, &g, 1, NULL));
		CHECK(num_f32_bits(f) == num_f32_bits(g));
		if (isnan(f)) {
			CHECK(isnan(num_f16_to_f32(num_f32_to_f16(f))));
			continue;
		}
		uint8_t back[2];
		CHECK(!gguf_quantize(GGML_TYPE_F16, &f, back, 1, NULL));
		CHECK_MSG((back[0] | back[1] << 8) == (int)h, "f16 0x%04x does not round trip", h);
		float b = num_bf16_to_f32((uint16_t)h);
		CHECK(!gguf_dequantize(GGML_TYPE_BF16, src, &g, 1, NULL));
		CHECK(num_f32_bits(b) == num_f32_bits(g));
		if (!isnan(b)) {
			CHECK(!gguf_quantize(GGML_TYPE_BF16, &b, back, 1, NULL));
			CHECK_MSG((back[0] | back[1] << 8) == (int)h, "bf16 0x%04x round trip", h);
		}
	}
	/* rounding picks the nearest representable value */
	uint64_t st = seed ^ 2;
	for (int i = 0; i < 20000; i++) {
		float x = test_rand_float(&st) * 60000.0f / (float)(1 + test_rand_next(&st) % 4096);
		uint16_t h = num_f32_to_f16(x), hb = num_f32_to_bf16(x);
		double e0 = fabs((double)x - num_f16_to_f32(h));
		double eb = fabs((double)x - num_bf16_to_f32(hb));
		for (int k = -1; k <= 1; k += 2) {
			uint16_t n = (uint16_t)(h + k), nb = (uint16_t)(hb + k);
			if (((n ^ h) & 0x8000) == 0 && !isnan(num_f16_to_f32(n)))
				CHECK_MSG(fabs((double)x - num_f16_to_f32(n)) >= e0,
					  "f16(%g) not nearest", x);
			if (((nb ^ hb) & 0x8000) == 0)
				CHECK_MSG(fabs((double)x - num_bf16_to_f32(nb)) >= eb,
					  "bf16(%g) not nearest", x);
		}
	}
}

TEST(test_block_layouts)
{
	/* blocks built by hand from the format's definition, not by our quantizer */
	uint64_t st = seed ^ 3;
	uint8_t blk[34];
	float out[32];
	uint16_t d = num_f32_to_f16(0.25f + (float)(test_rand_next(&st) % 8) * 0.125f);
	float df = num_f16_to_f32(d);
	memcpy(blk, &d, 2);
	fill_random(blk + 2, 32, &st);
	CHECK(!gguf_dequantize(GGML_TYPE_Q8_0, blk, out, 32, NULL));
	for (int j = 0; j < 32; j++)
		CHECK(out[j] == (float)(int8_t)blk[2 + j] * df);
	fill_random(blk + 2, 16, &st);
	CHECK(!gguf_dequantize(GGML_TYPE_Q4_0, blk, out, 32, NULL));
	for (int j = 0; j < 16; j++) {
		CHECK(out[j] == (float)((blk[2 + j] & 15) - 8) * df);
		CHECK(out[j + 16] == (float)((blk[2 + j] >> 4) - 8) * df);
	}
	uint16_t m = num_f32_to_f16(-1.5f);
	memcpy(blk + 2, &m, 2);
	fill_random(blk + 4, 16, &st);
	CHECK(!gguf_dequantize(GGML_TYPE_Q4_1, blk, out, 32, NULL));
	for (int j = 0; j < 16; j++) {
		CHECK(out[j] == (float)(blk[4 + j] & 15) * df - 1.5f);
		CHECK(out[j + 16] == (float)(blk[4 + j] >> 4) * df - 1.5f);
	}
	CHECK_EQ_INT(gguf_dequantize(GGML_TYPE_Q4_1, blk, out, 31, NULL), OS_EUSAGE);
	CHECK_EQ_INT(gguf_dequantize(42, blk, out, 32, NULL), OS_EUNSUPPORTED);
	CHECK_EQ_INT(ggml_type_row_bytes(GGML_TYPE_Q4_1, 64), 40);
	CHECK_EQ_INT(ggml_type_row_bytes(GGML_TYPE_Q4_1, 65), 0);
	CHECK_EQ_STR(ggml_type_name(GGML_TYPE_Q8_0), "Q8_0");
	CHECK(!ggml_type_known(42));
}

TEST(test_quant_error_bounds)
{
	static const uint32_t types[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16,
					  GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1 };
	static const size_t sizes[] = { 32, 64, 96, 1056, 4096 + 32 };
	uint64_t st = seed ^ 4;
	for (size_t ti = 0; ti < 6; ti++)
		for (size_t si = 0; si < 5; si++) {
			uint32_t type = types[ti];
			size_t n = sizes[si];
			float *x = malloc(n * 4), *y = malloc(n * 4);
			void *q = malloc(ggml_type_row_bytes(type, n));
			/* per-block scale from 1e-3 to 1e2, a random offset for half the blocks
			 * (Q4_1's min matters), and one constant block */
			for (size_t b = 0; b < n / 32; b++) {
				float sc = powf(10.0f, -3.0f + 5.0f * (test_rand_float(&st) + 1) / 2);
				float off = (b & 1) ? test_rand_float(&st) * sc : 0.0f;
				for (size_t j = 0; j < 32; j++)
					x[b * 32 + j] = b == 1 ? sc : off + sc * test_rand_float(&st);
			}
			CHECK(!gguf_quantize(type, x, q, n, NULL));
			CHECK(!gguf_dequantize(type, q, y, n, NULL));
			double sum_err = 0, sum_step = 0;
			for (size_t b = 0; b < n / 32; b++) {
				float amax = 0, mn = x[b * 32], mx = x[b * 32];
				for (size_t j = 0; j < 32; j++) {
					amax = fmaxf(amax, fabsf(x[b * 32 + j]));
					mn = fminf(mn, x[b * 32 + j]);
					mx = fmaxf(mx, x[b * 32 + j]);
				}
				double step = type == GGML_TYPE_Q8_0 ? amax / 127.0
					    : type == GGML_TYPE_Q4_0 ? amax / 8.0
					    : type == GGML_TYPE_Q4_1 ? (mx - mn) / 15.0 : 0;
				for (size_t j = 0; j < 32; j++) {
					double xv = x[b * 32 + j], err = fabs(y[b * 32 + j] - xv), tol;
					switch (type) {
					case GGML_TYPE_F32: tol = 0; break;
					case GGML_TYPE_F16: tol = fabs(xv) * 0x1p-11 + 0x1p-25; break;
					case GGML_TYPE_BF16: tol = fabs(xv) * 0x1p-8; break;
					/* the f16 scale's own rounding: relative 2^-11, or
					 * absolute 2^-25 once it is subnormal, times |q| */
					case GGML_TYPE_Q8_0:
						tol = 0.5 * step + amax * 0x1p-10 + 127 * 0x1p-25;
						break;
					case GGML_TYPE_Q4_0:
						tol = step + amax * 0x1p-10 + 8 * 0x1p-25;
						break;
					default:
						tol = 0.5 * step + (fabs(mn) + (mx - mn)) * 0x1p-10 +
						      16 * 0x1p-25;
					}
					CHECK_MSG(err <= tol * 1.0001 + 1e-12,
						  "%s n=%zu block %zu elem %zu: x=%.9g y=%.9g err %.3g > %.3g",
						  ggml_type_name(type), n, b, j, xv, y[b * 32 + j], err, tol);
					sum_err += err;
					sum_step += step;
				}
			}
			/* rounding (not truncation): mean error near a quarter step, over enough
			 * elements for the mean to settle */
			if ((type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_1) && n >= 1000)
				CHECK_MSG(sum_err / sum_step < 0.3, "%s mean err/step %.3f",
					  ggml_type_name(type), sum_err / sum_step);
			free(x);
			free(y);
			free(q);
		}
}

/* ---- fixture ----------------------------------------------------------------------------- */

static long token_id(const gguf_file *f, const char *s, size_t len)
{
	size_t n;
	gguf_get_arr(f, "tokenizer.ggml.tokens", NULL, &n, NULL, NULL);
	for (size_t i = 0; i < n; i++) {
		const char *t;
		size_t l;
		gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &t, &l, NULL);
		if (l == len && memcmp(t, s, len) == 0)
			return (long)i;
	}
	return -1;
}

TEST(test_fixture_vocab)
{
	char p[256];
	tmp_path(p, sizeof p, "fx.gguf");
	os_error e = { 0 };
	gguf_fixture_opts o = { .seed = seed };
	CHECK_MSG(!gguf_fixture_write(p, &o, &e), "%s", e.msg);
	gguf_file *f;
	CHECK_MSG(!gguf_open(&f, p, &e), "%s", e.msg);
	uint32_t vocab, bos, eos;
	CHECK(!gguf_get_u32(f, "llama.vocab_size", &vocab, &e));
	CHECK_EQ_INT(vocab, GGUF_FIXTURE_VOCAB);
	enum gguf_type et;
	size_t n, nm;
	const void *tt;
	CHECK(!gguf_get_arr(f, "tokenizer.ggml.tokens", &et, &n, NULL, &e));
	CHECK(et == GGUF_TYPE_STRING && n == vocab);
	CHECK(!gguf_get_arr(f, "tokenizer.ggml.token_type", &et, &n, &tt, &e));
	CHECK(et == GGUF_TYPE_INT32 && n == vocab);
	CHECK(!gguf_get_arr(f, "tokenizer.ggml.merges", &et, &nm, NULL, &e));
	CHECK(et == GGUF_TYPE_STRING && nm == GGUF_FIXTURE_N_MERGES);
	/* GPT-2 byte mapping */
	CHECK(token_id(f, "\xc4\xa0", 2) == ' ');
	CHECK(token_id(f, "\xc4\x8a", 2) == '\n');
	CHECK(token_id(f, "A", 1) == 'A');
	CHECK(token_id(f, "\xc4\x80", 2) == 0);
	CHECK(token_id(f, "\xc3\xbf", 2) == 255);
	/* every merge joins two tokens into a later token */
	for (size_t i = 0; i < nm; i++) {
		const char *m;
		size_t l;
		CHECK(!gguf_get_arr_str(f, "tokenizer.ggml.merges", i, &m, &l, &e));
		const char *sp = memchr(m, ' ', l);
		CHECK_MSG(sp && sp > m && sp < m + l - 1, "merge %zu '%.*s'", i, (int)l, m);
		long a = token_id(f, m, (size_t)(sp - m));
		long b = token_id(f, sp + 1, (size_t)(m + l - sp - 1));
		char cat[256];
		snprintf(cat, sizeof cat, "%.*s%.*s", (int)(sp - m), m, (int)(m + l - sp - 1), sp + 1);
		long c = token_id(f, cat, strlen(cat));
		CHECK_MSG(a >= 0 && b >= 0 && c == (long)(256 + i),
			  "merge %zu '%.*s': ids %ld %ld -> %ld", i, (int)l, m, a, b, c);
	}
	/* specials are control tokens, everything else normal; token strings unique */
	for (size_t i = 0; i < vocab; i++) {
		int32_t ty;
		memcpy(&ty, (const uint8_t *)tt + 4 * i, 4);
		CHECK_EQ_INT(ty, i >= vocab - 3 ? 3 : 1);
		const char *s;
		size_t l;
		gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &s, &l, NULL);
		CHECK_MSG(token_id(f, s, l) == (long)i, "token %zu is not unique", i);
	}
	CHECK(!gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &bos, &e));
	CHECK(!gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &eos, &e));
	CHECK(token_id(f, "<|im_start|>", 12) == bos && token_id(f, "<|im_end|>", 10) == eos);
	CHECK(token_id(f, "<|endoftext|>", 13) >= 0);
	const char *s;
	size_t l;
	CHECK(!gguf_get_str(f, "tokenizer.ggml.model", &s, &l, &e) && l == 4 && !memcmp(s, "gpt2", 4));
	CHECK(!gguf_get_str(f, "tokenizer.chat_template", &s, &l, &e));
	CHECK(l > 20 && memmem(s, l, "<|im_start|>", 12));
	CHECK(!gguf_get_str(f, "general.architecture", &s, &l, &e) && l == 5);
	float eps, base;
	CHECK(!gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps, &e) && eps == 1e-5f);
	CHECK(!gguf_get_f32(f, "llama.rope.freq_base", &base, &e) && base == 10000.0f);
	gguf_close(f);
}

TEST(test_fixture_tensors)
{
	static const uint32_t types[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16,
					  GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1 };
	char p[256], p2[256];
	tmp_path(p, sizeof p, "fxt.gguf");
	tmp_path(p2, sizeof p2, "fxt2.gguf");
	os_error e = { 0 };
	for (size_t ti = 0; ti < 6; ti++) {
		bool tied = ti & 1;
		gguf_fixture_opts o = { .seed = seed + ti, .weight_type = types[ti],
					.tied_embeddings = tied, .n_layers = 3 };
		CHECK_MSG(!gguf_fixture_write(p, &o, &e), "%s", e.msg);
		gguf_file *f;
		CHECK_MSG(!gguf_open(&f, p, &e), "%s", e.msg);
		CHECK_EQ_INT(gguf_n_tensors(f), 2 + 9 * 3 + !tied);
		uint32_t dim, nl, ffn, heads, kvh, ft;
		CHECK(!gguf_get_u32(f, "llama.embedding_length", &dim, &e) && dim == 64);
		CHECK(!gguf_get_u32(f, "llama.block_count", &nl, &e) && nl == 3);
		CHECK(!gguf_get_u32(f, "llama.feed_forward_length", &ffn, &e) && ffn == 160);
		CHECK(!gguf_get_u32(f, "llama.attention.head_count", &heads, &e) && heads == 4);
		CHECK(!gguf_get_u32(f, "llama.attention.head_count_kv", &kvh, &e) && kvh == 2);
		CHECK(!gguf_get_u32(f, "general.file_type", &ft, &e));
		CHECK((gguf_find_tensor(f, "output.weight") == NULL) == tied);
		const gguf_tensor *q = gguf_find_tensor(f, "blk.2.attn_q.weight");
		const gguf_tensor *k = gguf_find_tensor(f, "blk.0.attn_k.weight");
		const gguf_tensor *dn = gguf_find_tensor(f, "blk.1.ffn_down.weight");
		const gguf_tensor *nrm = gguf_find_tensor(f, "output_norm.weight");
		const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
		CHECK(q && k && dn && nrm && emb);
		CHECK(q->type == types[ti] && nrm->type == GGML_TYPE_F32);
		CHECK(k->ne[0] == 64 && k->ne[1] == 32 && dn->ne[0] == 160 && dn->ne[1] == 64);
		CHECK(emb->ne[0] == 64 && emb->ne[1] == GGUF_FIXTURE_VOCAB && nrm->n_dims == 1);
		/* sane statistics: attn_q ~ N(0, 1/dim), norms ~ 1 */
		float *buf = malloc(q->n_elements * 4);
		CHECK(!gguf_dequantize(q->type, q->data, buf, q->n_elements, &e));
		double s = 0, s2 = 0;
		for (size_t i = 0; i < q->n_elements; i++) {
			CHECK(isfinite(buf[i]));
			s += buf[i];
			s2 += (double)buf[i] * buf[i];
		}
		double mean = s / q->n_elements, sd = sqrt(s2 / q->n_elements - mean * mean);
		CHECK_MSG(fabs(mean) < 0.02 && fabs(sd - 0.125) < 0.02, "attn_q mean %g sd %g",
			  mean, sd);
		free(buf);
		const float *nw = nrm->data;
		s = 0;
		for (int i = 0; i < 64; i++)
			s += nw[i];
		CHECK_MSG(fabs(s / 64 - 1.0) < 0.05, "norm mean %g", s / 64);
		/* deterministic: the same options give the same bytes; another seed does not */
		CHECK(!gguf_fixture_write(p2, &o, &e));
		size_t n1, n2;
		uint8_t *b1 = slurp(p, &n1), *b2 = slurp(p2, &n2);
		CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0);
		free(b2);
		o.seed++;
		CHECK(!gguf_fixture_write(p2, &o, &e));
		b2 = slurp(p2, &n2);
		CHECK(b2 && n1 == n2 && memcmp(b1, b2, n1) != 0);
		free(b1);
		free(b2);
		gguf_close(f);
	}
	gguf_fixture_opts bad = { .weight_type = GGML_TYPE_Q4_0, .dim = 8 };
	CHECK_EQ_INT(gguf_fixture_write(p, &bad, &e), OS_EUSAGE);
	CHECK(strstr(e.msg, "dim (8)"));
	bad = (gguf_fixture_opts){ .n_heads = 3 };
	CHECK_EQ_INT(gguf_fixture_write(p, &bad, &e), OS_EUSAGE);
	bad = (gguf_fixture_opts){ .weight_type = 7 };
	CHECK_EQ_INT(gguf_fixture_write(p, &bad, &e), OS_EUSAGE);
}

/* Walks everything an opened file exposes (what a consumer would touch). */
static void walk(const gguf_file *f)
{
	for (size_t i = 0; i < gguf_n_kv(f); i++) {
		const char *k = gguf_kv_key(f, i), *s;
		size_t n, l;
		enum gguf_type et;
		const void *d;
		if (gguf_kv_type(f, i) == GGUF_TYPE_ARRAY &&
		    !gguf_get_arr(f, k, &et, &n, &d, NULL) && et == GGUF_TYPE_STRING)
			for (size_t j = 0; j < n; j++)
				gguf_get_arr_str(f, k, j, &s, &l, NULL);
	}
	for (size_t i = 0; i < gguf_n_tensors(f); i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		if (t->n_elements <= 4096) {
			float buf[4096];
			gguf_dequantize(t->type, t->data, buf, t->n_elements, NULL);
		}
	}
}

TEST(test_truncation_and_corruption)
{
	char p[256];
	tmp_path(p, sizeof p, "small.gguf");
	os_error e = { 0 };
	gguf_fixture_opts o = { .seed = seed, .weight_type = GGML_TYPE_Q8_0, .dim = 32,
				.n_heads = 2, .n_kv_heads = 2, .ffn_dim = 32, .n_layers = 1,
				.tied_embeddings = true };
	CHECK_MSG(!gguf_fixture_write(p, &o, &e), "%s", e.msg);
	size_t size;
	uint8_t *full = slurp(p, &size);
	CHECK(full);
	gguf_file *f;
	CHECK(!gguf_open_buffer(&f, full, size, "small.gguf", &e));
	gguf_close(f);
	/* every cut point fails cleanly with OS_EFORMAT (the last tensor ends the file) */
	size_t n_cuts = 0;
	for (size_t cut = 0; cut < size; cut++) {
		uint8_t *b = malloc(cut ? cut : 1);
		memcpy(b, full, cut);
		int rc = gguf_open_buffer(&f, b, cut, "cut.gguf", &e);
		free(b);
		CHECK_MSG(rc == OS_EFORMAT && f == NULL, "cut at %zu: rc %d", cut, rc);
		CHECK_MSG(strstr(e.msg, "cut.gguf"), "cut at %zu: %s", cut, e.msg);
		n_cuts++;
	}
	CHECK(n_cuts == size);
	/* random byte corruption: never a crash; either a clean error or a walkable file */
	uint64_t st = seed ^ 5;
	uint8_t *b = malloc(size);
	int n_ok = 0;
	for (int it = 0; it < 3000; it++) {
		memcpy(b, full, size);
		int flips = 1 + (int)(test_rand_next(&st) % 4);
		for (int k = 0; k < flips; k++) {
			/* mostly in the metadata, where the structure is */
			size_t at = test_rand_next(&st) % (it & 1 ? size : 600);
			b[at] = (uint8_t)test_rand_next(&st);
		}
		int rc = gguf_open_buffer(&f, b, size, "flip.gguf", &e);
		CHECK_MSG(rc == OS_OK || rc == OS_EFORMAT || rc == OS_EUNSUPPORTED,
			  "flip %d: rc %d %s", it, rc, e.msg);
		if (rc == OS_OK) {
			n_ok++;
			walk(f);
			gguf_close(f);
		}
	}
	printf("  corruption: %d of 3000 corrupted files still valid\n", n_ok);
	free(b);
	free(full);
}

TEST(test_demo_model)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!path || !*path)
		SKIP("OPTSTUDIO_DEMO_MODEL not set: real model checks skipped");
	gguf_file *f;
	os_error e = { 0 };
	CHECK_MSG(!gguf_open(&f, path, &e), "%s", e.msg);
	uint32_t v;
	CHECK(!gguf_get_u32(f, "llama.block_count", &v, &e) && v == 30);
	CHECK(!gguf_get_u32(f, "llama.embedding_length", &v, &e) && v == 576);
	CHECK(!gguf_get_u32(f, "llama.attention.head_count", &v, &e) && v == 9);
	CHECK(!gguf_get_u32(f, "llama.attention.head_count_kv", &v, &e) && v == 3);
	enum gguf_type et;
	size_t n;
	CHECK(!gguf_get_arr(f, "tokenizer.ggml.tokens", &et, &n, NULL, &e));
	CHECK(et == GGUF_TYPE_STRING && n == 49152);
	const char *s;
	size_t l;
	CHECK(!gguf_get_arr_str(f, "tokenizer.ggml.tokens", 49151, &s, &l, &e) && l > 0);
	static const char *const names[] = { "blk.0.attn_q.weight", "blk.29.ffn_down.weight",
					     "blk.7.attn_norm.weight", "output_norm.weight",
					     "blk.13.attn_v.weight" };
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		const gguf_tensor *t = gguf_find_tensor(f, names[i]);
		CHECK_MSG(t, "tensor %s missing", names[i]);
		float *buf = malloc(t->n_elements * sizeof *buf);
		CHECK(!gguf_dequantize(t->type, t->data, buf, t->n_elements, &e));
		double amax = 0;
		for (size_t j = 0; j < t->n_elements; j++) {
			CHECK_MSG(isfinite(buf[j]), "%s[%zu] = %g", names[i], j, buf[j]);
			amax = fmax(amax, fabs(buf[j]));
		}
		CHECK(amax > 0);
		free(buf);
	}
	/* every tensor lies in the file and is a known type */
	for (size_t i = 0; i < gguf_n_tensors(f); i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		CHECK(ggml_type_known(t->type));
		CHECK(gguf_data_offset(f) + t->offset + t->n_bytes <= gguf_file_size(f));
	}
	gguf_close(f);
}

static void rm_tmpdir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", tmpdir);
}

int main(void)
{
	const char *s = getenv("TEST_SEED");
	seed = s ? strtoull(s, NULL, 0) : 0x5eed0001ull;
	printf("test_gguf: seed 0x%llx (set TEST_SEED to change)\n", (unsigned long long)seed);
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_gguf.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_spec_control);
	RUN(test_bad_files);
	RUN(test_bad_string_arrays);
	RUN(test_tiny_buffers);
	RUN(test_round_trip_all_types);
	RUN(test_getter_types);
	RUN(test_nested_arrays_copy);
	RUN(test_writer_alignment);
	RUN(test_writer_io_errors);
	RUN(test_f16_bf16_exact);
	RUN(test_block_layouts);
	RUN(test_quant_error_bounds);
	RUN(test_fixture_vocab);
	RUN(test_fixture_tensors);
	RUN(test_truncation_and_corruption);
	RUN(test_demo_model);
	rm_tmpdir();
	return test_summary();
}
