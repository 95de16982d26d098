/* test_bigalloc.c: big_alloc's promises: alignment (64 bytes; 2 MiB from 2 MiB up), every
 * requested byte usable, NULL for nothing. */
#include "core/bigalloc.h"
#include "tests/test.h"

TEST(test_zero_bytes)
{
	CHECK(big_alloc(0) == NULL);
}

TEST(test_alignment_and_use)
{
	static const size_t sizes[] = {1, 63, 64, 65, 4097, ((size_t)2 << 20) - 1, (size_t)2 << 20,
				       ((size_t)2 << 20) + 1, (size_t)5 << 20};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		unsigned char *p = big_alloc(n);
		CHECK_MSG(p != NULL, "big_alloc(%zu) failed", n);
		size_t align = n >= ((size_t)2 << 20) ? (size_t)2 << 20 : 64;
		CHECK_MSG((uintptr_t)p % align == 0, "big_alloc(%zu) = %p, not %zu-aligned", n,
			  (void *)p, align);
		for (size_t j = 0; j < n; j++)
			p[j] = (unsigned char)(j * 131u + n);
		size_t bad = SIZE_MAX;
		for (size_t j = 0; j < n && bad == SIZE_MAX; j++)
			if (p[j] != (unsigned char)(j * 131u + n))
				bad = j;
		free(p);
		CHECK_MSG(bad == SIZE_MAX, "big_alloc(%zu): byte %zu did not keep its value", n, bad);
	}
}

int main(void)
{
	RUN(test_zero_bytes);
	RUN(test_alignment_and_use);
	return test_summary();
}
