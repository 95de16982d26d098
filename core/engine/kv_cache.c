/* kv_cache.c: the paged KV cache's bookkeeping (free block stack, per-sequence block tables)
 * over storage allocated by the backend. */
#include "kv_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct kv_seq {
	bool live;
	size_t len;          /* positions held */
	int32_t *blocks;     /* [cap] block table; the first ceil(len / block_tokens) are used */
	size_t n_blocks;
	size_t cap;
} kv_seq;

struct kv_cache {
	backend *be;         /* borrowed */
	be_kv view;          /* view.data owned, from be->ops->buf_alloc */
	size_t block_bytes;
	int32_t *free_stack; /* [n_blocks]; the top n_free entries are the free blocks */
	size_t n_free;
	kv_seq *seqs;        /* [n_seqs], index = sequence id; dead entries keep their table */
	size_t n_seqs;
};


int kv_cache_new(kv_cache **out, const kv_cache_opts *opts, backend *be, os_error *err)
{
	*out = NULL;
	if (!opts || !be || opts->n_layers == 0 || opts->kv_dim == 0)
		return os_error_set(err, OS_EUSAGE, "KV cache: n_layers and kv_dim must be > 0");
	if (opts->fmt < 0 || opts->fmt >= BE_KV_COUNT)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "KV cache element type %d is not supported (f32, bf16, fp8, int8)",
				    opts->fmt);
	size_t hd = opts->head_dim ? opts->head_dim : opts->kv_dim;
	if (opts->kv_dim % hd)
		return os_error_set(err, OS_EUSAGE,
				    "KV cache: head_dim %zu does not divide kv_dim %zu", hd,
				    opts->kv_dim);
	size_t bt = opts->block_tokens ? opts->block_tokens : KV_DEFAULT_BLOCK_TOKENS;
	if (bt > (1u << 20))
		return os_error_set(err, OS_ERANGE, "KV cache: block of %zu tokens is too large",
				    bt);
	be_kv v = {.fmt = opts->fmt, .n_layers = opts->n_layers, .kv_dim = opts->kv_dim,
		   .head_dim = hd, .block_tokens = bt};
	size_t elems = be_kv_block_elems(&v);
	if (elems / bt / 2 / opts->n_layers != opts->kv_dim)
		return os_error_set(err, OS_ERANGE, "KV cache: block size overflows");
	/* codes, plus one f32 scale per (row, head) for the quantized types */
	size_t scale_bytes = be_kvfmt_has_scales(opts->fmt) ? elems / hd * sizeof(float) : 0;
	size_t block_bytes = elems * be_kvfmt_elem_bytes(opts->fmt) + scale_bytes;
	size_t n_blocks = opts->capacity_bytes / block_bytes;
	if (n_blocks == 0)
		return os_error_set(err, OS_ERANGE,
				    "KV cache capacity %zu bytes holds no block (one block of %zu "
				    "tokens x %zu layers x %zu K+V channels is %zu bytes)",
				    opts->capacity_bytes, bt, opts->n_layers, opts->kv_dim,
				    block_bytes);
	if (n_blocks > INT32_MAX)
		n_blocks = INT32_MAX;
	v.n_blocks = n_blocks;

	kv_cache *kv = calloc(1, sizeof *kv);
	if (!kv)
		return os_error_set(err, OS_ENOMEM, "KV cache: out of memory");
	kv->be = be;
	kv->block_bytes = block_bytes;
	kv->view = v;
	kv->free_stack = malloc(n_blocks * sizeof *kv->free_stack);
	if (!kv->free_stack) {
		os_error_set(err, OS_ENOMEM, "KV cache: out of memory for %zu block entries",
			     n_blocks);
		goto fail;
	}
	/* Lowest block on top, so a fresh cache hands blocks out in order. */
	for (size_t i = 0; i < n_blocks; i++)
		kv->free_stack[i] = (int32_t)(n_blocks - 1 - i);
	kv->n_free = n_blocks;
	kv->view.data = be->ops->buf_alloc(be->ctx, n_blocks * (block_bytes - scale_bytes));
	if (scale_bytes)
		kv->view.scales = be->ops->buf_alloc(be->ctx, n_blocks * scale_bytes);
	if (!kv->view.data || (scale_bytes && !kv->view.scales)) {
		os_error_set(err, OS_ENOMEM, "KV cache: cannot allocate %zu bytes of storage",
			     n_blocks * block_bytes);
		goto fail;
	}
	*out = kv;
	return OS_OK;
fail:
	kv_cache_free(kv);
	return err ? err->rc : OS_ENOMEM;
}

void kv_cache_free(kv_cache *kv)
{
	if (!kv)
		return;
	if (kv->view.data)
		kv->be->ops->buf_free(kv->be->ctx, kv->view.data);
	if (kv->view.scales)
		kv->be->ops->buf_free(kv->be->ctx, kv->view.scales);
	for (size_t i = 0; i < kv->n_seqs; i++)
		free(kv->seqs[i].blocks);
	free(kv->seqs);
	free(kv->free_stack);
	free(kv);
}

const be_kv *kv_cache_view(const kv_cache *kv)
{
	return &kv->view;
}

size_t kv_cache_n_blocks(const kv_cache *kv)
{
	return kv->view.n_blocks;
}

size_t kv_cache_n_free_blocks(const kv_cache *kv)
{
	return kv->n_free;
}

size_t kv_cache_block_tokens(const kv_cache *kv)
{
	return kv->view.block_tokens;
}

size_t kv_cache_block_bytes(const kv_cache *kv)
{
	return kv->block_bytes;
}

static kv_seq *seq_get(const kv_cache *kv, int32_t seq)
{
	if (seq < 0 || (size_t)seq >= kv->n_seqs || !kv->seqs[seq].live)
		return NULL;
	return &kv->seqs[seq];
}

int kv_seq_new(kv_cache *kv, int32_t *seq, os_error *err)
{
	size_t i;
	for (i = 0; i < kv->n_seqs; i++)
		if (!kv->seqs[i].live)
			break;
	if (i == kv->n_seqs) {
		if (kv->n_seqs >= INT32_MAX)
			return os_error_set(err, OS_ERANGE, "KV cache: too many sequences");
		size_t cap = kv->n_seqs ? kv->n_seqs * 2 : 8;
		kv_seq *s = realloc(kv->seqs, cap * sizeof *s);
		if (!s)
			return os_error_set(err, OS_ENOMEM, "KV cache: out of memory for sequences");
		memset(s + kv->n_seqs, 0, (cap - kv->n_seqs) * sizeof *s);
		kv->seqs = s;
		kv->n_seqs = cap;
	}
	kv->seqs[i].live = true;
	kv->seqs[i].len = 0;
	kv->seqs[i].n_blocks = 0;
	*seq = (int32_t)i;
	return OS_OK;
}

/* Returns the blocks of s past its first keep, to the free stack. */
static void seq_release(kv_cache *kv, kv_seq *s, size_t keep)
{
	while (s->n_blocks > keep)
		kv->free_stack[kv->n_free++] = s->blocks[--s->n_blocks];
}

void kv_seq_free(kv_cache *kv, int32_t seq)
{
	kv_seq *s = seq_get(kv, seq);
	if (!s)
		return;
	seq_release(kv, s, 0);
	s->len = 0;
	s->live = false;
}

int kv_seq_valid(const kv_cache *kv, int32_t seq)
{
	return seq_get(kv, seq) != NULL;
}

size_t kv_seq_len(const kv_cache *kv, int32_t seq)
{
	kv_seq *s = seq_get(kv, seq);
	return s ? s->len : 0;
}

static size_t blocks_for(const kv_cache *kv, size_t n_tokens)
{
	return n_tokens / kv->view.block_tokens + (n_tokens % kv->view.block_tokens != 0);
}

int kv_seq_grow(kv_cache *kv, int32_t seq, size_t n_tokens, os_error *err)
{
	kv_seq *s = seq_get(kv, seq);
	if (!s)
		return os_error_set(err, OS_EUSAGE, "KV cache: sequence %d does not exist",
				    (int)seq);
	if (n_tokens < s->len)
		return os_error_set(err, OS_EUSAGE,
				    "KV cache: cannot grow sequence %d from %zu to %zu tokens",
				    (int)seq, s->len, n_tokens);
	size_t need = blocks_for(kv, n_tokens);
	if (need > s->n_blocks) {
		size_t more = need - s->n_blocks;
		if (more > kv->n_free)
			return os_error_set(
				err, OS_ERANGE,
				"KV cache full: sequence %d needs %zu more blocks of %zu tokens for "
				"%zu tokens, %zu of %zu blocks free (%zu bytes each); finish other "
				"sequences or raise the KV cache capacity",
				(int)seq, more, kv->view.block_tokens, n_tokens, kv->n_free,
				kv->view.n_blocks, kv->block_bytes);
		if (need > s->cap) {
			size_t cap = s->cap ? s->cap : 4;
			while (cap < need)
				cap *= 2;
			int32_t *b = realloc(s->blocks, cap * sizeof *b);
			if (!b)
				return os_error_set(err, OS_ENOMEM,
						    "KV cache: out of memory for a block table");
			s->blocks = b;
			s->cap = cap;
		}
		while (s->n_blocks < need)
			s->blocks[s->n_blocks++] = kv->free_stack[--kv->n_free];
	}
	s->len = n_tokens;
	return OS_OK;
}

int kv_seq_truncate(kv_cache *kv, int32_t seq, size_t n_tokens, os_error *err)
{
	kv_seq *s = seq_get(kv, seq);
	if (!s)
		return os_error_set(err, OS_EUSAGE, "KV cache: sequence %d does not exist",
				    (int)seq);
	if (n_tokens > s->len)
		return os_error_set(err, OS_EUSAGE,
				    "KV cache: cannot truncate sequence %d of %zu tokens to %zu",
				    (int)seq, s->len, n_tokens);
	seq_release(kv, s, blocks_for(kv, n_tokens));
	s->len = n_tokens;
	return OS_OK;
}

const int32_t *kv_seq_blocks(const kv_cache *kv, int32_t seq, size_t *n_blocks)
{
	kv_seq *s = seq_get(kv, seq);
	if (!s) {
		if (n_blocks)
			*n_blocks = 0;
		return NULL;
	}
	if (n_blocks)
		*n_blocks = s->n_blocks;
	return s->blocks;
}

int kv_cache_check(const kv_cache *kv, os_error *err)
{
	size_t nb = kv->view.n_blocks;
	int rc = OS_OK;
	int32_t *owner = malloc((nb ? nb : 1) * sizeof *owner); /* -2 unseen, -1 free, else seq */
	if (!owner)
		return os_error_set(err, OS_ENOMEM, "KV check: out of memory");
	for (size_t b = 0; b < nb; b++)
		owner[b] = -2;
	if (kv->n_free > nb) {
		rc = os_error_set(err, OS_EINTERNAL, "KV check: %zu free of %zu blocks", kv->n_free,
				  nb);
		goto out;
	}
	for (size_t i = 0; i < kv->n_free; i++) {
		int32_t b = kv->free_stack[i];
		if (b < 0 || (size_t)b >= nb || owner[b] != -2) {
			rc = os_error_set(err, OS_EINTERNAL,
					  "KV check: free entry %zu is block %d (bad or repeated)", i,
					  (int)b);
			goto out;
		}
		owner[b] = -1;
	}
	size_t used = 0;
	for (size_t si = 0; si < kv->n_seqs; si++) {
		const kv_seq *s = &kv->seqs[si];
		if (!s->live)
			continue;
		if (s->n_blocks != blocks_for(kv, s->len) || s->n_blocks > s->cap) {
			rc = os_error_set(err, OS_EINTERNAL,
					  "KV check: sequence %zu of %zu tokens holds %zu blocks", si,
					  s->len, s->n_blocks);
			goto out;
		}
		for (size_t j = 0; j < s->n_blocks; j++) {
			int32_t b = s->blocks[j];
			if (b < 0 || (size_t)b >= nb || owner[b] != -2) {
				rc = os_error_set(err, OS_EINTERNAL,
						  "KV check: sequence %zu entry %zu is block %d, which "
						  "is out of range, free or owned by sequence %d",
						  si, j, (int)b,
						  (b >= 0 && (size_t)b < nb) ? (int)owner[b] : -3);
				goto out;
			}
			owner[b] = (int32_t)si;
		}
		used += s->n_blocks;
	}
	if (used + kv->n_free != nb)
		rc = os_error_set(err, OS_EINTERNAL,
				  "KV check: %zu used + %zu free blocks != %zu blocks (leaked)", used,
				  kv->n_free, nb);
out:
	free(owner);
	return rc;
}
