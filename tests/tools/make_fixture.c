/* make_fixture: writes a tiny llama GGUF fixture (see core/format/fixture.h), or with
 * --all-types a ~1 KB GGUF holding every metadata value type and every tensor type (a fuzz
 * seed; not a model).
 *   make_fixture OUT.gguf [--seed S] [--type f32|f16|bf16|q8_0|q4_0|q4_1] [--tied]
 *                [--layers N] [--dim D] [--heads H] [--kv-heads K] [--ffn F] [--ctx C]
 *   make_fixture OUT.gguf --all-types [--seed S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/format/fixture.h"
#include "core/format/gguf.h"

/* Every value type and every tensor type, small, with values from the seed. */
static int write_all_types(const char *path, uint64_t seed, os_error *err)
{
	static const uint32_t types[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16,
					  GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1 };
	float x[64];
	uint8_t q[6][256];
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int i = 0; i < 64; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = (float)(int32_t)(s >> 32) / 2147483648.0f;
	}
	gguf_writer *w;
	int rc = gguf_writer_new(&w, err);
	if (rc)
		return rc;
	uint8_t u8 = 200, b = 1;
	int8_t i8 = -3;
	uint16_t u16 = 60000;
	int16_t i16 = -300;
	int64_t i64 = -5;
	double f64 = 0.5;
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_value(w, "t.u8", GGUF_TYPE_UINT8, &u8);
	gguf_writer_set_value(w, "t.i8", GGUF_TYPE_INT8, &i8);
	gguf_writer_set_value(w, "t.u16", GGUF_TYPE_UINT16, &u16);
	gguf_writer_set_value(w, "t.i16", GGUF_TYPE_INT16, &i16);
	gguf_writer_set_u32(w, "t.u32", 7);
	gguf_writer_set_i32(w, "t.i32", -7);
	gguf_writer_set_f32(w, "t.f32", 1.5f);
	gguf_writer_set_value(w, "t.bool", GGUF_TYPE_BOOL, &b);
	gguf_writer_set_u64(w, "t.u64", 1ull << 40);
	gguf_writer_set_value(w, "t.i64", GGUF_TYPE_INT64, &i64);
	gguf_writer_set_value(w, "t.f64", GGUF_TYPE_FLOAT64, &f64);
	static const char *const strs[] = { "a", "", "\xc4\xa0" "b" };
	gguf_writer_set_arr_str(w, "t.strs", strs, 3);
	gguf_writer_set_arr(w, "t.f32s", GGUF_TYPE_FLOAT32, x, 3);
	gguf_writer_set_u32(w, "general.alignment", 16);
	for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
		uint64_t ne[2] = { 32, 1 };
		char name[16];
		size_t n = ggml_type_row_bytes(types[i], 32);
		gguf_quantize(types[i], x + 16 * (i % 2), q[i], 32, NULL);
		snprintf(name, sizeof name, "t.%s", ggml_type_name(types[i]));
		gguf_writer_add_tensor(w, name, types[i], 2, ne, q[i], n);
	}
	rc = gguf_writer_write(w, path, err);
	gguf_writer_free(w);
	return rc;
}

static int usage(void)
{
	fprintf(stderr, "usage: make_fixture OUT.gguf [--seed S] [--type f32|f16|bf16|q8_0|q4_0|q4_1] "
			"[--tied] [--layers N] [--dim D] [--heads H] [--kv-heads K] [--ffn F] "
			"[--ctx C]\n       make_fixture OUT.gguf --all-types [--seed S]\n");
	return 2;
}

/* Parses a decimal number into *out; false when it is not one. */
static int parse_u64(const char *s, unsigned long long *out)
{
	char *end;
	if (!s || !*s || *s == '-')
		return 0;
	*out = strtoull(s, &end, 10);
	return *end == '\0';
}

int main(int argc, char **argv)
{
	static const struct { const char *name; uint32_t type; } types[] = {
		{ "f32", GGML_TYPE_F32 }, { "f16", GGML_TYPE_F16 }, { "bf16", GGML_TYPE_BF16 },
		{ "q8_0", GGML_TYPE_Q8_0 }, { "q4_0", GGML_TYPE_Q4_0 }, { "q4_1", GGML_TYPE_Q4_1 },
	};
	gguf_fixture_opts o = { 0 };
	const char *out = NULL;
	bool all_types = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned long long n;
		uint32_t *field = NULL;
		if (strcmp(a, "--all-types") == 0) {
			all_types = true;
			continue;
		}
		if (strcmp(a, "--tied") == 0) {
			o.tied_embeddings = true;
			continue;
		}
		if (strcmp(a, "--type") == 0) {
			size_t k;
			for (k = 0; v && k < sizeof types / sizeof *types; k++)
				if (strcasecmp(v, types[k].name) == 0)
					break;
			if (!v || k == sizeof types / sizeof *types) {
				fprintf(stderr, "make_fixture: --type '%s' is not one of f32 f16 bf16 "
						"q8_0 q4_0 q4_1\n", v ? v : "");
				return 2;
			}
			o.weight_type = types[k].type;
			i++;
			continue;
		}
		if (strcmp(a, "--seed") == 0) {
			if (!parse_u64(v, &n))
				return usage();
			o.seed = n;
			i++;
			continue;
		}
		if (strcmp(a, "--layers") == 0) field = &o.n_layers;
		else if (strcmp(a, "--dim") == 0) field = &o.dim;
		else if (strcmp(a, "--heads") == 0) field = &o.n_heads;
		else if (strcmp(a, "--kv-heads") == 0) field = &o.n_kv_heads;
		else if (strcmp(a, "--ffn") == 0) field = &o.ffn_dim;
		else if (strcmp(a, "--ctx") == 0) field = &o.ctx;
		if (field) {
			if (!parse_u64(v, &n) || n == 0 || n > 1000000) {
				fprintf(stderr, "make_fixture: %s needs a number in 1..1000000\n", a);
				return 2;
			}
			*field = (uint32_t)n;
			i++;
			continue;
		}
		if (a[0] == '-' || out)
			return usage();
		out = a;
	}
	if (!out)
		return usage();
	os_error err = { 0 };
	if (all_types ? write_all_types(out, o.seed, &err) : gguf_fixture_write(out, &o, &err)) {
		fprintf(stderr, "make_fixture: %s\n", os_error_text(&err));
		return 1;
	}
	return 0;
}
