/* bigalloc.c: see bigalloc.h. A pass over the weights with 4 KiB pages takes a TLB miss every
 * 4 KiB; on 2 MiB pages one per 2 MiB. The bandwidth probe takes the same pages as the
 * weights, so that it judges their reading against a reading of the same kind. */
#include "bigalloc.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *big_alloc(size_t bytes)
{
	if (bytes == 0)
		return NULL;
	if (bytes < HUGE_PAGE)
		return aligned_alloc(64, (bytes + 63) / 64 * 64);
	size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	void *p = aligned_alloc(HUGE_PAGE, size);
	if (p)
		(void)madvise(p, size, MADV_HUGEPAGE); /* EINVAL where THP is not built in: 4 KiB */
	return p;
}
