/* kv_cache.h: the paged KV cache. Storage is a fixed number of blocks, each holding
 * block_tokens positions of K and V for every layer; each sequence has a block table mapping
 * its positions to blocks, so sequences come and go (and roll back) without copying. */
#ifndef OPTSTUDIO_KV_CACHE_H
#define OPTSTUDIO_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../errors.h"
#include "backend.h"

/* Invariants (kv_cache_check verifies them):
 *   - every block is either free or in exactly one live sequence's block table, once;
 *   - n_free + sum over live sequences of their blocks == n_blocks;
 *   - a live sequence of len tokens holds exactly ceil(len / block_tokens) blocks. */
typedef struct kv_cache kv_cache;

#define KV_DEFAULT_BLOCK_TOKENS 16

typedef struct kv_cache_opts {
	size_t n_layers;
	size_t kv_dim;          /* n_kv_heads * head_dim */
	size_t block_tokens;    /* positions per block; 0 = KV_DEFAULT_BLOCK_TOKENS */
	size_t capacity_bytes;  /* storage budget; n_blocks = capacity_bytes / block bytes */
	int fmt;                /* enum be_kvfmt: F32, BF16, FP8 or INT8 (backend.h says how) */
	size_t head_dim;        /* FP8 / INT8 scale granularity: one scale per (token, head of
				 * head_dim channels); divides kv_dim; 0 = kv_dim */
} kv_cache_opts;

/* Makes a cache whose storage comes from be->ops->buf_alloc (be is borrowed and must
 * outlive the cache). A block costs block_tokens * n_layers * 2 * (kv_dim * element bytes +
 * kv_dim / head_dim * 4 for the quantized types' scales). OS_ERANGE when the capacity holds
 * less than one block, OS_EUNSUPPORTED for an unknown element type, OS_ENOMEM when the
 * storage cannot be allocated. */
int kv_cache_new(kv_cache **out, const kv_cache_opts *opts, backend *be, os_error *err);
/* Frees the cache and its storage; every sequence id becomes invalid. NULL is fine. */
void kv_cache_free(kv_cache *kv);

/* The storage as the backend ops see it. Borrowed, valid until kv_cache_free. */
const be_kv *kv_cache_view(const kv_cache *kv);
size_t kv_cache_n_blocks(const kv_cache *kv);
size_t kv_cache_n_free_blocks(const kv_cache *kv);
size_t kv_cache_block_tokens(const kv_cache *kv);
/* Bytes of one block (K and V, all layers, codes and scales). */
size_t kv_cache_block_bytes(const kv_cache *kv);

/* Starts an empty sequence; *seq is a small non-negative id (the lowest free one). */
int kv_seq_new(kv_cache *kv, int32_t *seq, os_error *err);
/* Ends a sequence and returns its blocks. An invalid id is ignored. */
void kv_seq_free(kv_cache *kv, int32_t seq);
/* True when seq is a live sequence of this cache. */
int kv_seq_valid(const kv_cache *kv, int32_t seq);
/* Tokens (positions 0..len-1) held by seq; 0 for an invalid id. */
size_t kv_seq_len(const kv_cache *kv, int32_t seq);
/* Grows seq to n_tokens positions (n_tokens >= its length), taking blocks as needed. All or
 * nothing: when the free blocks do not suffice nothing changes and the result is OS_ERANGE
 * with a message saying how many blocks were needed and free. The new positions' contents
 * are undefined until written. */
int kv_seq_grow(kv_cache *kv, int32_t seq, size_t n_tokens, os_error *err);
/* Shrinks seq to its first n_tokens positions (n_tokens <= its length) and frees the whole
 * blocks past the new end; speculative decoding rolls back rejected tokens with it. */
int kv_seq_truncate(kv_cache *kv, int32_t seq, size_t n_tokens, os_error *err);
/* The block table of seq: *n_blocks entries, block indices into the storage. Borrowed,
 * valid until the next grow / truncate / free of this sequence. NULL for an invalid id. */
const int32_t *kv_seq_blocks(const kv_cache *kv, int32_t seq, size_t *n_blocks);

/* Checks the invariants above; OS_EINTERNAL with a description of the first violation. */
int kv_cache_check(const kv_cache *kv, os_error *err);

#endif
