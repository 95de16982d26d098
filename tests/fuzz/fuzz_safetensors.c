/* fuzz_safetensors.c: libFuzzer target for the safetensors header parser. Any input must
 * give OS_OK or an error message, never a crash; accepted tensors must lie in the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	safetensors_file *f = NULL;
	os_error err = {0};
	if (safetensors_open_buffer(&f, data, size, "fuzz.safetensors", &err) != OS_OK) {
		if (!err.msg[0])
			abort(); /* every failure explains itself */
		return 0;
	}
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < safetensors_n_tensors(f); i++) {
		const safetensors_tensor *t = safetensors_tensor_at(f, i);
		const uint8_t *p = t->data;
		if (p < data || p + t->n_bytes > data + size)
			abort();
		if (t->n_bytes)
			sink ^= p[0] ^ p[t->n_bytes - 1];
		if (safetensors_find_tensor(f, t->name) != t)
			abort();
	}
	for (size_t i = 0; i < safetensors_n_metadata(f); i++) {
		const char *k, *v;
		safetensors_metadata_at(f, i, &k, &v);
		sink ^= (uint8_t)strlen(k) ^ (uint8_t)strlen(v);
	}
	(void)sink;
	safetensors_close(f);
	return 0;
}
