/* engine.c: the llama forward pass for a batch of tokens from several sequences, written
 * top to bottom with the math in comments (llama2.c style), every op through backend.h. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

struct engine {
	const model *m;      /* borrowed */
	backend *be;         /* borrowed */
	kv_cache *kv;        /* owned */
	size_t max_batch;

	/* Activations, (max_batch, width) f32 each, from be->ops->buf_alloc. */
	float *x;            /* (B, dim) residual stream */
	float *xb;           /* (B, dim) normed input of a sublayer */
	float *q;            /* (B, n_heads * head_dim) */
	float *k;            /* (B, kv_dim) */
	float *v;            /* (B, kv_dim) */
	float *att;          /* (B, n_heads * head_dim) attention output */
	float *xo;           /* (B, dim) sublayer output */
	float *hb;           /* (B, ffn_dim) gate, then silu(gate) * up */
	float *hb2;          /* (B, ffn_dim) up */
	float *lscratch;     /* (B, dim) normed rows for the logits */

	/* Host bookkeeping, max_batch entries each. */
	int32_t *rows;                  /* wanted rows of the current pass */
	const int32_t **tables;         /* block table per token */
	int32_t *uniq_seq;              /* distinct sequences of the batch */
	size_t *uniq_len;               /* their length before the call */
	size_t *uniq_count;             /* their tokens in the batch */
	size_t n_uniq_cap;

	engine_observer_fn observe;     /* NULL: none */
	void *observe_ctx;
};

static int alloc_act(engine *e, float **p, size_t width, os_error *err)
{
	size_t bytes = e->max_batch * width * sizeof(float);
	*p = e->be->ops->buf_alloc(e->be->ctx, bytes);
	if (!*p)
		return os_error_set(err, OS_ENOMEM,
				    "engine: cannot allocate %zu bytes of activations (max batch "
				    "%zu)",
				    bytes, e->max_batch);
	return OS_OK;
}

int engine_kv_type_format(const model *m, int kv_type)
{
	switch (kv_type) {
	case ENGINE_KV_MODEL: return model_kv_format(m);
	case ENGINE_KV_F32: return BE_KV_F32;
	case ENGINE_KV_FP8: return BE_KV_FP8;
	case ENGINE_KV_INT8: return BE_KV_I8;
	case ENGINE_KV_BF16: return BE_KV_BF16;
	default: return -1;
	}
}

int engine_new(engine **out, const model *m, backend *be, const engine_opts *opts,
	       os_error *err)
{
	*out = NULL;
	const model_config *c = model_get_config(m);
	for (size_t i = 0; i < model_n_tensors(m); i++) {
		model_tensor t = model_tensor_at(m, i);
		int wfmt = t.mat ? t.mat->fmt : BE_WFMT_F32;
		if (wfmt < 0 || wfmt >= BE_WFMT_COUNT || !be->ops->matmul[wfmt])
			return os_error_set(err, OS_EUNSUPPORTED,
					    "backend %s cannot run %s weights (tensor %s)", be->name,
					    be_wfmt_name(wfmt), t.name);
	}
	int kv_type = opts ? opts->kv_type : ENGINE_KV_MODEL;
	int kv_fmt = engine_kv_type_format(m, kv_type);
	if (kv_fmt < 0)
		return os_error_set(err, OS_EUSAGE, "engine: KV type %d is not one of "
				    "model, f32, bf16, fp8, int8", kv_type);
	if (opts && opts->max_batch > ((size_t)1 << 20))
		return os_error_set(err, OS_ERANGE, "engine: max batch %zu is above %zu tokens",
				    opts->max_batch, (size_t)1 << 20);
	engine *e = calloc(1, sizeof *e);
	if (!e)
		return os_error_set(err, OS_ENOMEM, "engine: out of memory");
	e->m = m;
	e->be = be;
	e->max_batch = opts && opts->max_batch ? opts->max_batch : 256;
	size_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
	int rc;
	if ((rc = alloc_act(e, &e->x, c->dim, err)) || (rc = alloc_act(e, &e->xb, c->dim, err)) ||
	    (rc = alloc_act(e, &e->q, q_dim, err)) || (rc = alloc_act(e, &e->k, kv_dim, err)) ||
	    (rc = alloc_act(e, &e->v, kv_dim, err)) || (rc = alloc_act(e, &e->att, q_dim, err)) ||
	    (rc = alloc_act(e, &e->xo, c->dim, err)) ||
	    (rc = alloc_act(e, &e->hb, c->ffn_dim, err)) ||
	    (rc = alloc_act(e, &e->hb2, c->ffn_dim, err)) ||
	    (rc = alloc_act(e, &e->lscratch, c->dim, err)))
		goto fail;
	e->n_uniq_cap = e->max_batch;
	e->rows = malloc(e->max_batch * sizeof *e->rows);
	e->tables = malloc(e->max_batch * sizeof *e->tables);
	if (!e->rows || !e->tables) {
		rc = os_error_set(err, OS_ENOMEM, "engine: out of memory");
		goto fail;
	}

	kv_cache_opts ko = {
		.n_layers = c->n_layers,
		.kv_dim = kv_dim,
		.block_tokens = opts ? opts->kv_block_tokens : 0,
		.capacity_bytes = opts ? opts->kv_bytes : 0,
		.fmt = kv_fmt,
		.head_dim = c->head_dim,
	};
	if (ko.capacity_bytes == 0) { /* min(ctx, 4096) tokens, codes and scales */
		size_t per_tok = c->n_layers * 2 *
				 (kv_dim * be_kvfmt_elem_bytes(kv_fmt) +
				  (be_kvfmt_has_scales(kv_fmt) ? c->n_kv_heads * sizeof(float) : 0));
		ko.capacity_bytes = (c->ctx < 4096 ? c->ctx : 4096) * per_tok;
	}
	if ((rc = kv_cache_new(&e->kv, &ko, be, err)))
		goto fail;
	*out = e;
	return OS_OK;
fail:
	engine_free(e);
	return rc;
}

void engine_free(engine *e)
{
	if (!e)
		return;
	float *acts[] = {e->x, e->xb, e->q, e->k, e->v, e->att, e->xo, e->hb, e->hb2, e->lscratch};
	for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
		if (acts[i])
			e->be->ops->buf_free(e->be->ctx, acts[i]);
	kv_cache_free(e->kv);
	free(e->rows);
	free(e->tables);
	free(e->uniq_seq);
	free(e->uniq_len);
	free(e->uniq_count);
	free(e);
}

kv_cache *engine_kv(engine *e)
{
	return e->kv;
}

const model *engine_model(const engine *e)
{
	return e->m;
}

int engine_kv_format(const engine *e)
{
	return kv_cache_view(e->kv)->fmt;
}

size_t engine_max_batch(const engine *e)
{
	return e->max_batch;
}

void engine_set_observer(engine *e, engine_observer_fn fn, void *ctx)
{
	e->observe = fn;
	e->observe_ctx = ctx;
}

#define OBSERVE(layer, site, x, width)                                                    \
	do {                                                                              \
		if (e->observe)                                                           \
			e->observe(e->observe_ctx, layer, site, x, n, width);             \
	} while (0)

/* Makes room for n distinct sequences in the bookkeeping arrays (grows rarely: only when a
 * batch has more sequences than any before). */
static int uniq_reserve(engine *e, size_t n, os_error *err)
{
	if (e->uniq_seq && n <= e->n_uniq_cap)
		return OS_OK;
	size_t cap = e->n_uniq_cap;
	while (cap < n)
		cap *= 2;
	int32_t *s = realloc(e->uniq_seq, cap * sizeof *s);
	if (s)
		e->uniq_seq = s;
	size_t *l = realloc(e->uniq_len, cap * sizeof *l);
	if (l)
		e->uniq_len = l;
	size_t *c = realloc(e->uniq_count, cap * sizeof *c);
	if (c)
		e->uniq_count = c;
	if (!s || !l || !c)
		return os_error_set(err, OS_ENOMEM, "engine: out of memory");
	e->n_uniq_cap = cap;
	return OS_OK;
}

/* Checks tokens, sequences and positions, then grows each sequence by its tokens (all or
 * nothing). *n_uniq receives the number of distinct sequences (their old lengths are kept
 * in e->uniq_len for a rollback). */
static int batch_admit(engine *e, const engine_batch *b, size_t *n_uniq, os_error *err)
{
	const model_config *c = model_get_config(e->m);
	size_t nu = 0, last = 0;
	int rc;
	*n_uniq = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->tokens[i] < 0 || (size_t)b->tokens[i] >= c->vocab)
			return os_error_set(err, OS_EUSAGE,
					    "batch token %zu: id %d is outside the vocabulary [0, %zu)",
					    i, (int)b->tokens[i], c->vocab);
		int32_t s = b->seq[i];
		size_t u = last;
		if (!(u < nu && e->uniq_seq[u] == s))
			for (u = 0; u < nu && e->uniq_seq[u] != s; u++)
				;
		if (u == nu) {
			if (!kv_seq_valid(e->kv, s))
				return os_error_set(err, OS_EUSAGE,
						    "batch token %zu: sequence %d does not exist (start "
						    "it with kv_seq_new)",
						    i, (int)s);
			if ((rc = uniq_reserve(e, nu + 1, err)))
				return rc;
			e->uniq_seq[nu] = s;
			e->uniq_len[nu] = kv_seq_len(e->kv, s);
			e->uniq_count[nu] = 0;
			nu++;
		}
		last = u;
		size_t want = e->uniq_len[u] + e->uniq_count[u];
		if (b->pos[i] < 0 || (size_t)b->pos[i] != want)
			return os_error_set(err, OS_EUSAGE,
					    "batch token %zu: position %d of sequence %d (expected "
					    "%zu: positions of a sequence continue from its length, "
					    "in order)",
					    i, (int)b->pos[i], (int)s, want);
		e->uniq_count[u]++;
	}
	for (size_t u = 0; u < nu; u++) {
		rc = kv_seq_grow(e->kv, e->uniq_seq[u], e->uniq_len[u] + e->uniq_count[u], err);
		if (rc) {
			while (u-- > 0)
				kv_seq_truncate(e->kv, e->uniq_seq[u], e->uniq_len[u], NULL);
			return rc;
		}
	}
	*n_uniq = nu;
	return OS_OK;
}

static int op_failed(engine *e, const char *op, int rc, os_error *err)
{
	return os_error_set(err, rc, "backend %s: %s failed: %s", e->be->name, op,
			    os_strerror(rc));
}

#define OP(name, call)                                                                    \
	do {                                                                              \
		int rc_ = ops->call;                                                      \
		if (rc_)                                                                  \
			return op_failed(e, name, rc_, err);                              \
	} while (0)

/* One pass over n <= max_batch tokens (already admitted into the KV cache). Writes the
 * wanted rows' logits to out and returns how many through *n_out. want NULL: only row n-1,
 * and only when is_last (the last pass of the call). */
static int forward_pass(engine *e, const int32_t *tokens, const int32_t *pos,
			const int32_t *seq, const uint8_t *want, int is_last, size_t n,
			float *out, size_t *n_out, os_error *err)
{
	const model_config *c = model_get_config(e->m);
	const model_weights *w = model_get_weights(e->m);
	const backend_ops *ops = e->be->ops;
	void *ctx = e->be->ctx;
	size_t dim = c->dim;
	size_t ffn = c->ffn_dim;
	be_kv kv = *kv_cache_view(e->kv);

	for (size_t i = 0; i < n; i++)
		e->tables[i] = kv_seq_blocks(e->kv, seq[i], NULL);
	be_attn_batch ab = {
		.n = n,
		.pos = pos,
		.block_table = e->tables,
		.n_heads = c->n_heads,
		.n_kv_heads = c->n_kv_heads,
		.head_dim = c->head_dim,
	};

	/* x = token_embd[tokens]                                          (n, dim) */
	OP("embed", embed(ctx, e->x, &w->token_embd, tokens, n));

	for (size_t l = 0; l < c->n_layers; l++) {
		const model_layer_weights *L = &w->layers[l];

		/* Attention sublayer:
		 *   xb = rmsnorm(x) * attn_norm
		 *   q = xb Wq^T (n, n_heads*hd), k = xb Wk^T, v = xb Wv^T (n, n_kv_heads*hd)
		 *   q, k rotated by position (rope, adjacent pairs)
		 *   K, V of the batch appended to each token's sequence in the cache
		 *   att[i, h] = softmax_{t <= pos_i}(q[i, h] . K[t, g] / sqrt(hd)) V[t, g],
		 *     g = h / (n_heads / n_kv_heads)    (grouped-query attention)
		 *   x += att Wo^T */
		OP("rmsnorm", rmsnorm(ctx, e->xb, e->x, L->attn_norm, n, dim, c->rms_eps));
		OBSERVE(l, ENGINE_SITE_ATTN_IN, e->xb, dim);
		OP("matmul q", matmul[L->wq.fmt](ctx, e->q, e->xb, n, &L->wq));
		OP("matmul k", matmul[L->wk.fmt](ctx, e->k, e->xb, n, &L->wk));
		OP("matmul v", matmul[L->wv.fmt](ctx, e->v, e->xb, n, &L->wv));
		OP("rope", rope(ctx, e->q, c->n_heads, e->k, c->n_kv_heads, n, c->head_dim, pos,
				c->rope_base));
		OP("kv_store", kv_store(ctx, &kv, l, e->k, e->v, &ab));
		OP("attention", attention(ctx, e->att, e->q, &kv, l, &ab));
		OBSERVE(l, ENGINE_SITE_ATTN_OUT, e->att, c->n_heads * c->head_dim);
		OP("matmul o", matmul[L->wo.fmt](ctx, e->xo, e->att, n, &L->wo));
		OP("add", add(ctx, e->x, e->xo, n * dim));

		/* Feed-forward sublayer (SwiGLU):
		 *   xb = rmsnorm(x) * ffn_norm
		 *   h = silu(xb Wgate^T) * (xb Wup^T)     (n, ffn), silu(a) = a / (1 + e^-a)
		 *   x += h Wdown^T */
		OP("rmsnorm", rmsnorm(ctx, e->xb, e->x, L->ffn_norm, n, dim, c->rms_eps));
		OBSERVE(l, ENGINE_SITE_FFN_IN, e->xb, dim);
		OP("matmul gate", matmul[L->w_gate.fmt](ctx, e->hb, e->xb, n, &L->w_gate));
		OP("matmul up", matmul[L->w_up.fmt](ctx, e->hb2, e->xb, n, &L->w_up));
		OP("swiglu", swiglu(ctx, e->hb, e->hb2, n * ffn));
		OBSERVE(l, ENGINE_SITE_FFN_DOWN_IN, e->hb, ffn);
		OP("matmul down", matmul[L->w_down.fmt](ctx, e->xo, e->hb, n, &L->w_down));
		OP("add", add(ctx, e->x, e->xo, n * dim));
	}

	/* logits[r] = rmsnorm(x[row r]) * output_norm  Wout^T   for the wanted rows only */
	size_t nr = 0;
	if (want) {
		for (size_t i = 0; i < n; i++)
			if (want[i])
				e->rows[nr++] = (int32_t)i;
	} else if (is_last) {
		e->rows[nr++] = (int32_t)(n - 1);
	}
	if (nr)
		OP("logits", logits(ctx, out, e->lscratch, e->x, e->rows, nr, dim, w->output_norm,
				    c->rms_eps, &w->output));
	*n_out = nr;
	return OS_OK;
}

int engine_forward(engine *e, const engine_batch *b, float *logits, os_error *err)
{
	if (b->n == 0)
		return OS_OK;
	if (!b->tokens || !b->pos || !b->seq)
		return os_error_set(err, OS_EUSAGE, "engine: batch without tokens, pos or seq");
	size_t n_uniq;
	int rc = batch_admit(e, b, &n_uniq, err);
	if (rc)
		return rc;
	size_t vocab = model_get_config(e->m)->vocab;
	float *out = logits;
	/* Passes of at most max_batch tokens, in order, so later tokens of a sequence find the
	 * K and V of its earlier ones in the cache. */
	for (size_t i0 = 0; i0 < b->n; i0 += e->max_batch) {
		size_t n = b->n - i0 < e->max_batch ? b->n - i0 : e->max_batch, n_out = 0;
		rc = forward_pass(e, b->tokens + i0, b->pos + i0, b->seq + i0,
				  b->want ? b->want + i0 : NULL, i0 + n == b->n, n, out, &n_out,
				  err);
		if (rc)
			goto fail;
		out += n_out * vocab;
	}
	return OS_OK;
fail:
	for (size_t u = 0; u < n_uniq; u++)
		kv_seq_truncate(e->kv, e->uniq_seq[u], e->uniq_len[u], NULL);
	return rc;
}
