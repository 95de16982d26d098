/* fuzz_hf_config.c: libFuzzer target for config.json, tokenizer.json and README front-matter
 * parsing. The first byte picks the parser; the rest is the document. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/hf_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *doc = (const char *)data + 1;
	size_t len = size - 1;
	os_error err = {0};
	switch (data[0] % 3) {
	case 0: {
		hf_config c;
		if (hf_config_parse(doc, len, "config.json", &c, &err) == OS_OK) {
			if (!c.n_heads || !c.n_kv_heads || c.n_heads % c.n_kv_heads || !c.head_dim)
				abort(); /* the invariants hf_config_parse promises */
		} else if (!err.msg[0]) {
			abort();
		}
		break;
	}
	case 1: {
		hf_tokenizer *t = NULL;
		if (hf_tokenizer_parse(&t, doc, len, "tokenizer.json", &err) != OS_OK) {
			if (!err.msg[0])
				abort();
			break;
		}
		for (size_t id = 0; id < hf_tokenizer_n_tokens(t); id++) {
			const char *s = hf_tokenizer_token(t, id);
			long found = hf_tokenizer_find(t, s);
			if (found < 0 || strcmp(hf_tokenizer_token(t, (size_t)found), s) != 0)
				abort();
		}
		for (size_t r = 0; r < hf_tokenizer_n_merges(t); r++) {
			const char *a, *b;
			hf_tokenizer_merge(t, r, &a, &b);
			if (!a || !b)
				abort();
		}
		char hex[65];
		hf_tokenizer_vocab_hash(t, hex);
		hf_tokenizer_free(t);
		break;
	}
	default: {
		char out[64];
		if (hf_readme_license(doc, len, out, sizeof out) && strlen(out) >= sizeof out)
			abort();
		break;
	}
	}
	return 0;
}
