/* fuzz_gguf.c: libFuzzer target for the GGUF reader: open any bytes, walk every key, string
 * and tensor a consumer would touch, dequantize the small tensors, close.
 * Seeds (tests/fuzz/seeds/gguf) are made by the fixture tool:
 *   make_fixture all-types.gguf --all-types
 *   make_fixture llama-f16-dim8.gguf --dim 8 --layers 1 --heads 2 --kv-heads 1 --ffn 16 \
 *                --type f16 --tied */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gguf_file *f;
	os_error err = { 0 };
	if (gguf_open_buffer(&f, data, size, "fuzz.gguf", &err) != OS_OK) {
		if (!err.msg[0] || !strstr(err.msg, "fuzz.gguf"))
			abort(); /* every failure must explain itself, naming the file */
		return 0;
	}
	volatile size_t sink = gguf_alignment(f) + gguf_version(f) + gguf_file_size(f);
	for (size_t i = 0; i < gguf_n_kv(f); i++) {
		const char *key = gguf_kv_key(f, i), *s;
		size_t n, len;
		enum gguf_type et;
		const void *d;
		uint64_t u;
		int64_t v;
		float x;
		bool b;
		if (gguf_find_key(f, key) != (long)i)
			abort();
		switch (gguf_kv_type(f, i)) {
		case GGUF_TYPE_STRING:
			if (gguf_get_str(f, key, &s, &len, NULL) == OS_OK && len)
				sink += (uint8_t)s[len - 1];
			break;
		case GGUF_TYPE_ARRAY:
			if (gguf_get_arr(f, key, &et, &n, &d, NULL) != OS_OK)
				abort();
			if (et == GGUF_TYPE_STRING) {
				for (size_t j = 0; j < n; j++)
					if (gguf_get_arr_str(f, key, j, &s, &len, NULL) == OS_OK && len)
						sink += (uint8_t)s[0] + (uint8_t)s[len - 1];
			} else if (n && et != GGUF_TYPE_ARRAY) {
				sink += ((const uint8_t *)d)[0];
			}
			break;
		default:
			gguf_get_u64(f, key, &u, NULL);
			gguf_get_i64(f, key, &v, NULL);
			gguf_get_f32(f, key, &x, NULL);
			gguf_get_bool(f, key, &b, NULL);
			break;
		}
	}
	for (size_t i = 0; i < gguf_n_tensors(f); i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		if (gguf_find_tensor(f, t->name) != t)
			abort();
		if (t->n_bytes)
			sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->n_bytes - 1];
		if (t->n_elements && t->n_elements <= 65536) {
			float *buf = malloc(t->n_elements * sizeof *buf);
			if (buf && gguf_dequantize(t->type, t->data, buf, t->n_elements, NULL) != OS_OK)
				abort();
			free(buf);
		}
	}
	(void)sink;
	gguf_close(f);
	return 0;
}
