/* naive_forward.c: the float64 reference llama forward pass (see naive_forward.h).
 * Deliberately slow and plain: every product is a double loop, every formula is the one
 * from the papers / llama.cpp's graph, nothing is shared with core/engine. Included by the
 * tests that use it (the Makefile does not build tests/ref/ on its own). */
#include "naive_forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/numerics.h"

static int get_size(const gguf_file *f, const char *arch, const char *suffix, size_t *out,
		    int required, size_t dflt, os_error *err)
{
	char key[128];
	uint64_t v;
	snprintf(key, sizeof key, "%s.%s", arch, suffix);
	int rc = gguf_get_u64(f, key, &v, err);
	if (rc == OS_ENOTFOUND && !required) {
		*out = dflt;
		return OS_OK;
	}
	if (rc == OS_ENOTFOUND)
		return os_error_set(err, OS_EFORMAT, "ref: key '%s' missing", key);
	if (rc)
		return rc;
	*out = (size_t)v;
	return OS_OK;
}

static int get_real(const gguf_file *f, const char *arch, const char *suffix, double *out,
		    double dflt, os_error *err)
{
	char key[128];
	float v;
	snprintf(key, sizeof key, "%s.%s", arch, suffix);
	int rc = gguf_get_f32(f, key, &v, err);
	if (rc == OS_ENOTFOUND) {
		*out = dflt;
		return OS_OK;
	}
	if (rc)
		return rc;
	*out = (double)v;
	return OS_OK;
}

/* The tensor name, checked to be a matrix (or vector when rows == 0) of ne = {cols, rows}. */
static const gguf_tensor *need_tensor(const gguf_file *f, const char *name, size_t cols,
				      size_t rows, os_error *err)
{
	const gguf_tensor *t = gguf_find_tensor(f, name);
	if (!t) {
		os_error_set(err, OS_EFORMAT, "ref: tensor '%s' missing", name);
		return NULL;
	}
	if (t->ne[0] != cols || t->ne[1] != (rows ? rows : 1) || t->ne[2] != 1 || t->ne[3] != 1) {
		os_error_set(err, OS_EFORMAT,
			     "ref: tensor '%s' has ne {%llu, %llu, %llu, %llu}, expected {%zu, %zu}",
			     name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
			     (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], cols,
			     rows ? rows : 1);
		return NULL;
	}
	return t;
}

int ref_config_read(ref_config *c, const gguf_file *f, os_error *err)
{
	char arch[32];
	const char *s;
	size_t len;
	int rc;
	memset(c, 0, sizeof *c);
	if ((rc = gguf_get_str(f, "general.architecture", &s, &len, err)))
		return rc == OS_ENOTFOUND
			       ? os_error_set(err, OS_EFORMAT, "ref: general.architecture missing")
			       : rc;
	if (len == 0 || len >= sizeof arch)
		return os_error_set(err, OS_EFORMAT, "ref: bad general.architecture");
	memcpy(arch, s, len);
	arch[len] = 0;
	if ((rc = get_size(f, arch, "block_count", &c->n_layers, 1, 0, err)) ||
	    (rc = get_size(f, arch, "embedding_length", &c->dim, 1, 0, err)) ||
	    (rc = get_size(f, arch, "feed_forward_length", &c->ffn_dim, 1, 0, err)) ||
	    (rc = get_size(f, arch, "attention.head_count", &c->n_heads, 1, 0, err)))
		return rc;
	if (c->n_heads == 0 || c->dim == 0)
		return os_error_set(err, OS_EFORMAT, "ref: zero dim or head count");
	if ((rc = get_size(f, arch, "attention.head_count_kv", &c->n_kv_heads, 0, c->n_heads,
			   err)) ||
	    (rc = get_size(f, arch, "attention.key_length", &c->head_dim, 0, c->dim / c->n_heads,
			   err)))
		return rc;
	if ((rc = get_size(f, arch, "rope.dimension_count", &c->n_rot, 0, c->head_dim, err)) ||
	    (rc = get_real(f, arch, "rope.freq_base", &c->rope_base, 10000.0, err)) ||
	    (rc = get_real(f, arch, "attention.layer_norm_rms_epsilon", &c->rms_eps, 1e-5, err)))
		return rc;
	if (c->n_kv_heads == 0 || c->n_heads % c->n_kv_heads || c->head_dim % 2 ||
	    c->n_rot > c->head_dim || c->n_rot % 2)
		return os_error_set(err, OS_EFORMAT, "ref: bad head counts / dims");
	const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
	if (!emb || emb->ne[0] != c->dim)
		return os_error_set(err, OS_EFORMAT, "ref: token_embd.weight missing or not {dim, *}");
	c->vocab = (size_t)emb->ne[1];
	c->tied = gguf_find_tensor(f, "output.weight") == NULL;
	if (!c->tied && !need_tensor(f, "output.weight", c->dim, c->vocab, err))
		return err ? err->rc : OS_EFORMAT;
	return OS_OK;
}

/* Dequantizes rows [r0, r0 + nr) of a 2-D tensor into dst (nr * ne0 floats). */
static int load_rows(const gguf_tensor *t, size_t r0, size_t nr, float *dst, os_error *err)
{
	size_t ne0 = (size_t)t->ne[0], be = ggml_type_block_elems(t->type);
	size_t bb = ggml_type_block_bytes(t->type);
	if (!be || ne0 % be)
		return os_error_set(err, OS_EUNSUPPORTED, "ref: tensor '%s' type %s", t->name,
				    ggml_type_name(t->type));
	size_t row_bytes = ne0 / be * bb;
	return gguf_dequantize(t->type, (const char *)t->data + r0 * row_bytes, dst, nr * ne0, err);
}

/* Rounds n floats to the nearest bf16 (as a BF16 run-time weight would be). */
static void round_to_bf16(float *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		w[i] = num_bf16_to_f32(num_f32_to_bf16(w[i]));
}

/* A whole tensor as floats (malloc'd, caller frees), shape-checked; matrices (rows > 0)
 * rounded to bf16 when bf16 is set. */
static float *load_tensor(const gguf_file *f, const char *name, size_t cols, size_t rows,
			  int bf16, os_error *err)
{
	const gguf_tensor *t = need_tensor(f, name, cols, rows, err);
	if (!t)
		return NULL;
	size_t nr = rows ? rows : 1;
	float *w = malloc(nr * cols * sizeof *w);
	if (!w) {
		os_error_set(err, OS_ENOMEM, "ref: out of memory for '%s'", name);
		return NULL;
	}
	if (load_rows(t, 0, nr, w, err)) {
		free(w);
		return NULL;
	}
	if (bf16 && rows)
		round_to_bf16(w, nr * cols);
	return w;
}

/* y[r] = sum_c W[r * cols + c] x[c], W (rows, cols) in f32, accumulated in double. */
static void matvec(double *y, const float *W, const double *x, size_t rows, size_t cols)
{
	for (size_t r = 0; r < rows; r++) {
		const float *w = W + r * cols;
		double acc = 0.0;
		for (size_t c = 0; c < cols; c++)
			acc += (double)w[c] * x[c];
		y[r] = acc;
	}
}

/* out = x / sqrt(mean(x^2) + eps) * g */
static void rmsnorm(double *out, const double *x, const float *g, size_t n, double eps)
{
	double ss = 0.0;
	for (size_t i = 0; i < n; i++)
		ss += x[i] * x[i];
	double scale = 1.0 / sqrt(ss / (double)n + eps);
	for (size_t i = 0; i < n; i++)
		out[i] = x[i] * scale * (double)g[i];
}

/* llama.cpp "normal" rope: each head's adjacent pairs (2i, 2i+1), i < n_rot/2, turned by
 * pos * base^(-2i / n_rot); dims at or beyond n_rot are left alone. */
static void rope(double *v, size_t n_heads, size_t head_dim, size_t n_rot, size_t pos,
		 double base)
{
	for (size_t h = 0; h < n_heads; h++) {
		double *x = v + h * head_dim;
		for (size_t i = 0; i < n_rot / 2; i++) {
			double theta = (double)pos * pow(base, -2.0 * (double)i / (double)n_rot);
			double c = cos(theta), s = sin(theta);
			double a = x[2 * i], b = x[2 * i + 1];
			x[2 * i] = a * c - b * s;
			x[2 * i + 1] = a * s + b * c;
		}
	}
}

int ref_forward(const gguf_file *f, const ref_config *c, const int32_t *tokens, size_t n,
		double *logits, os_error *err)
{
	const size_t dim = c->dim, hd = c->head_dim, q_dim = c->n_heads * hd;
	const size_t kv_dim = c->n_kv_heads * hd, ffn = c->ffn_dim, group = c->n_heads / c->n_kv_heads;
	int rc = OS_ENOMEM;
	double *x = malloc(n * dim * sizeof *x);            /* (n, dim) the residual stream */
	double *xn = malloc((dim > ffn ? dim : ffn) * sizeof *xn);
	double *q = malloc(q_dim * sizeof *q);
	double *att = malloc(q_dim * sizeof *att);
	double *kc = malloc(n * kv_dim * sizeof *kc);       /* (n, kv_dim) this layer's keys */
	double *vc = malloc(n * kv_dim * sizeof *vc);       /* (n, kv_dim) this layer's values */
	double *sc = malloc(n * sizeof *sc);                /* attention scores of one head */
	double *g = malloc(ffn * sizeof *g), *u = malloc(ffn * sizeof *u);
	double *tmp = malloc(dim * sizeof *tmp);
	float *row = malloc(dim * sizeof *row);
	float *an = NULL, *wq = NULL, *wk = NULL, *wv = NULL, *wo = NULL;
	float *fn = NULL, *wg = NULL, *wu = NULL, *wd = NULL, *wout = NULL;
	if (!x || !xn || !q || !att || !kc || !vc || !sc || !g || !u || !tmp || !row) {
		os_error_set(err, OS_ENOMEM, "ref: out of memory");
		goto fail;
	}

	/* embeddings */
	const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
	for (size_t t = 0; t < n; t++) {
		if (tokens[t] < 0 || (size_t)tokens[t] >= c->vocab) {
			rc = os_error_set(err, OS_ERANGE, "ref: token %d out of range", tokens[t]);
			goto fail;
		}
		if ((rc = load_rows(emb, (size_t)tokens[t], 1, row, err)))
			goto fail;
		if (c->round_bf16)
			round_to_bf16(row, dim);
		for (size_t i = 0; i < dim; i++)
			x[t * dim + i] = row[i];
	}

	for (size_t l = 0; l < c->n_layers; l++) {
		char nm[9][64];
		const char *suf[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
				      "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
		for (int i = 0; i < 9; i++)
			snprintf(nm[i], sizeof nm[i], "blk.%zu.%s.weight", l, suf[i]);
		rc = OS_EFORMAT;
		if (!(an = load_tensor(f, nm[0], dim, 0, c->round_bf16, err)) ||
		    !(wq = load_tensor(f, nm[1], dim, q_dim, c->round_bf16, err)) ||
		    !(wk = load_tensor(f, nm[2], dim, kv_dim, c->round_bf16, err)) ||
		    !(wv = load_tensor(f, nm[3], dim, kv_dim, c->round_bf16, err)) ||
		    !(wo = load_tensor(f, nm[4], q_dim, dim, c->round_bf16, err)) ||
		    !(fn = load_tensor(f, nm[5], dim, 0, c->round_bf16, err)) ||
		    !(wg = load_tensor(f, nm[6], dim, ffn, c->round_bf16, err)) ||
		    !(wu = load_tensor(f, nm[7], dim, ffn, c->round_bf16, err)) ||
		    !(wd = load_tensor(f, nm[8], ffn, dim, c->round_bf16, err))) {
			rc = err ? err->rc : OS_EFORMAT;
			goto fail;
		}
		for (size_t t = 0; t < n; t++) {
			double *xt = x + t * dim;
			/* attention block: x += Wo attn(rope(Wq n(x)), rope(Wk n(x)), Wv n(x)) */
			rmsnorm(xn, xt, an, dim, c->rms_eps);
			matvec(q, wq, xn, q_dim, dim);
			matvec(kc + t * kv_dim, wk, xn, kv_dim, dim);
			matvec(vc + t * kv_dim, wv, xn, kv_dim, dim);
			rope(q, c->n_heads, hd, c->n_rot, t, c->rope_base);
			rope(kc + t * kv_dim, c->n_kv_heads, hd, c->n_rot, t, c->rope_base);
			for (size_t h = 0; h < c->n_heads; h++) {
				size_t kvh = h / group;
				const double *qh = q + h * hd;
				double mx = -INFINITY, sum = 0.0;
				for (size_t s = 0; s <= t; s++) {
					const double *k = kc + s * kv_dim + kvh * hd;
					double d = 0.0;
					for (size_t i = 0; i < hd; i++)
						d += qh[i] * k[i];
					sc[s] = d / sqrt((double)hd);
					if (sc[s] > mx)
						mx = sc[s];
				}
				for (size_t s = 0; s <= t; s++) {
					sc[s] = exp(sc[s] - mx);
					sum += sc[s];
				}
				double *o = att + h * hd;
				for (size_t i = 0; i < hd; i++)
					o[i] = 0.0;
				for (size_t s = 0; s <= t; s++) {
					const double *v = vc + s * kv_dim + kvh * hd;
					double p = sc[s] / sum;
					for (size_t i = 0; i < hd; i++)
						o[i] += p * v[i];
				}
			}
			matvec(tmp, wo, att, dim, q_dim);
			for (size_t i = 0; i < dim; i++)
				xt[i] += tmp[i];
			/* FFN block: x += Wdown (silu(Wgate n(x)) * Wup n(x)) */
			rmsnorm(xn, xt, fn, dim, c->rms_eps);
			matvec(g, wg, xn, ffn, dim);
			matvec(u, wu, xn, ffn, dim);
			for (size_t j = 0; j < ffn; j++)
				g[j] = g[j] / (1.0 + exp(-g[j])) * u[j];
			matvec(tmp, wd, g, dim, ffn);
			for (size_t i = 0; i < dim; i++)
				xt[i] += tmp[i];
		}
		free(an), free(wq), free(wk), free(wv), free(wo);
		free(fn), free(wg), free(wu), free(wd);
		an = wq = wk = wv = wo = fn = wg = wu = wd = NULL;
	}

	/* final norm, then logits = Wout n(x); Wout read in chunks of rows */
	if (!(an = load_tensor(f, "output_norm.weight", dim, 0, c->round_bf16, err))) {
		rc = err ? err->rc : OS_EFORMAT;
		goto fail;
	}
	for (size_t t = 0; t < n; t++)
		rmsnorm(x + t * dim, x + t * dim, an, dim, c->rms_eps);
	const gguf_tensor *out = c->tied ? emb : gguf_find_tensor(f, "output.weight");
	const size_t chunk = 1024;
	wout = malloc(chunk * dim * sizeof *wout);
	if (!wout) {
		rc = os_error_set(err, OS_ENOMEM, "ref: out of memory");
		goto fail;
	}
	for (size_t r0 = 0; r0 < c->vocab; r0 += chunk) {
		size_t nr = c->vocab - r0 < chunk ? c->vocab - r0 : chunk;
		if ((rc = load_rows(out, r0, nr, wout, err)))
			goto fail;
		if (c->round_bf16)
			round_to_bf16(wout, nr * dim);
		for (size_t t = 0; t < n; t++)
			matvec(logits + t * c->vocab + r0, wout, x + t * dim, nr, dim);
	}
	rc = OS_OK;
fail:
	free(x), free(xn), free(q), free(att), free(kc), free(vc), free(sc);
	free(g), free(u), free(tmp), free(row);
	free(an), free(wq), free(wk), free(wv), free(wo);
	free(fn), free(wg), free(wu), free(wd), free(wout);
	return rc;
}
