/* bigalloc.h: allocations of hundreds of megabytes that are read end to end (model weights,
 * the bandwidth probe that judges reading them), on transparent huge pages where the system
 * offers them on request. */
#ifndef OPTSTUDIO_BIGALLOC_H
#define OPTSTUDIO_BIGALLOC_H

#include <stddef.h>

/* At least `bytes`, 64-byte aligned; from 2 MiB up, aligned to 2 MiB and advised to use
 * huge pages (a hint the kernel may ignore). NULL when out of memory. Free with free(). */
void *big_alloc(size_t bytes);

#endif
