/* calibrate.c: activation statistics of an F32 model over calibration text (calibrate.h),
 * gathered through the engine's observer hook; Hessians as X^T X of each pass's rows. */
#include "calibrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Running sums of one site: per-channel sum |x| in double (the mean of ~10^4 tokens). */
typedef struct site_acc {
	calib_site pub;
	double *sum_abs;     /* (dim) */
	double *sum_sq;      /* (dim) */
	size_t n_seen;       /* tokens seen so far */
	size_t next_keep;    /* index into keep[] of the next kept token */
	float *hess;         /* (dim, dim) sum of x x^T, then the mean; NULL: not collected */
} site_acc;

struct calib_stats {
	size_t n_layers;
	size_t n_tokens;     /* tokens per site */
	site_acc *sites;     /* [n_layers * ENGINE_N_SITES] */
	size_t *keep;        /* sorted global token indices whose rows are kept */
	size_t n_keep;
	int failed;          /* an allocation failed inside the observer */
	backend *be;         /* the Hessians' matmuls; NULL: loops */
	float *xt;           /* (dim, n_tok) scratch: a pass's rows transposed */
	size_t xt_cap;       /* floats */
	float *prod;         /* (dim, dim) scratch: one pass's X^T X from the backend */
	size_t prod_cap;     /* floats */
};

calib_opts calib_opts_default(void)
{
	calib_opts o = {
		.n_samples = CALIB_DEFAULT_SAMPLES,
		.seq_len = CALIB_DEFAULT_SEQ_LEN,
		.keep_rows = CALIB_DEFAULT_KEEP_ROWS,
		.seed = 1,
	};
	return o;
}

const char *calib_site_name(int site)
{
	static const char *const names[ENGINE_N_SITES] = {"attn_in", "attn_out", "ffn_in",
							  "ffn_down_in"};
	return site >= 0 && site < ENGINE_N_SITES ? names[site] : "?";
}

void calib_stats_free(calib_stats *s)
{
	if (!s)
		return;
	if (s->sites)
		for (size_t i = 0; i < s->n_layers * ENGINE_N_SITES; i++) {
			free(s->sites[i].pub.max_abs);
			free(s->sites[i].pub.mean_abs);
			free(s->sites[i].pub.mean_sq);
			free(s->sites[i].pub.rows);
			free(s->sites[i].sum_abs);
			free(s->sites[i].sum_sq);
			free(s->sites[i].hess);
		}
	free(s->sites);
	free(s->keep);
	free(s->xt);
	free(s->prod);
	free(s);
}

size_t calib_n_layers(const calib_stats *s)
{
	return s->n_layers;
}

size_t calib_n_tokens(const calib_stats *s)
{
	return s->n_tokens;
}

const calib_site *calib_get(const calib_stats *s, size_t layer, int site)
{
	return &s->sites[layer * ENGINE_N_SITES + (size_t)site].pub;
}

const float *calib_hessian(const calib_stats *s, size_t layer, int site)
{
	if (layer >= s->n_layers || site < 0 || site >= ENGINE_N_SITES)
		return NULL;
	return s->sites[layer * ENGINE_N_SITES + (size_t)site].hess;
}

/* The input width of a site (engine.h's enum engine_site). */
static size_t site_dim(const model_config *c, int site)
{
	switch (site) {
	case ENGINE_SITE_ATTN_OUT: return c->n_heads * c->head_dim;
	case ENGINE_SITE_FFN_DOWN_IN: return c->ffn_dim;
	default: return c->dim;
	}
}

size_t calib_hessian_bytes(const model_config *c, size_t layer_begin, size_t layer_end)
{
	size_t end = layer_end ? layer_end : c->n_layers;
	if (end > c->n_layers)
		end = c->n_layers;
	size_t per_layer = 0;
	for (int site = 0; site < ENGINE_N_SITES; site++)
		per_layer += site_dim(c, site) * site_dim(c, site) * sizeof(float);
	return layer_begin < end ? (end - layer_begin) * per_layer : 0;
}

/* Grows *buf to hold n floats (64-byte aligned: the backend's matmul operands). */
static int scratch_reserve(float **buf, size_t *cap, size_t n)
{
	if (n <= *cap)
		return 0;
	void *p = NULL;
	if (posix_memalign(&p, 64, n * sizeof(float)) != 0)
		return -1;
	free(*buf);
	*buf = p;
	*cap = n;
	return 0;
}

/* The upper triangle of H += X^T X for rows X (n_tok, dim), without a backend: rank-1
 * updates over blocks of H's rows so a block stays in cache while the tokens stream by; the
 * inner loop over j has no reduction, so it vectorises. */
static void hess_add_loops(float *H, const float *X, size_t n_tok, size_t dim)
{
	enum { RB = 32 };
	for (size_t i0 = 0; i0 < dim; i0 += RB) {
		size_t i1 = i0 + RB < dim ? i0 + RB : dim;
		for (size_t t = 0; t < n_tok; t++) {
			const float *x = X + t * dim;
			for (size_t i = i0; i < i1; i++) {
				float xi = x[i];
				float *h = H + i * dim;
				for (size_t j = i; j < dim; j++)
					h[j] += xi * x[j];
			}
		}
	}
}

/* H += X^T X for one pass (only the upper triangle is meant: the mean mirrors it). Through
 * the backend's F32 matmul as (X^T) (X^T)^T: X^T is (dim, n_tok), read as dim "tokens" of
 * n_tok inputs times a weight of dim rows. */
static int hess_add(calib_stats *s, float *H, const float *X, size_t n_tok, size_t dim)
{
	if (!s->be || !s->be->ops->matmul[BE_WFMT_F32]) {
		hess_add_loops(H, X, n_tok, dim);
		return 0;
	}
	if (scratch_reserve(&s->xt, &s->xt_cap, dim * n_tok) ||
	    scratch_reserve(&s->prod, &s->prod_cap, dim * dim))
		return -1;
	for (size_t t = 0; t < n_tok; t++)
		for (size_t j = 0; j < dim; j++)
			s->xt[j * n_tok + t] = X[t * dim + j];
	be_weight w = {.fmt = BE_WFMT_F32, .rows = dim, .cols = n_tok, .data = s->xt};
	if (s->be->ops->matmul[BE_WFMT_F32](s->be->ctx, s->prod, s->xt, dim, &w) != OS_OK)
		return -1;
	for (size_t i = 0; i < dim; i++) {
		float *h = H + i * dim;
		const float *p = s->prod + i * dim;
		for (size_t j = i; j < dim; j++)
			h[j] += p[j];
	}
	return 0;
}

static uint64_t rng_next(uint64_t *st)
{
	uint64_t x = (*st += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* Picks k distinct indices of [0, n) (Floyd's algorithm over a bitmap), sorted. */
static size_t *pick_sorted(size_t n, size_t k, uint64_t seed)
{
	size_t *out = malloc((k ? k : 1) * sizeof *out);
	unsigned char *taken = calloc(n ? n : 1, 1);
	if (!out || !taken) {
		free(out);
		free(taken);
		return NULL;
	}
	uint64_t st = seed;
	size_t m = 0;
	for (size_t j = n - k; j < n; j++) {
		size_t t = (size_t)(rng_next(&st) % (j + 1));
		if (taken[t])
			t = j;
		taken[t] = 1;
		out[m++] = t;
	}
	free(taken);
	qsort(out, k, sizeof *out, cmp_size);
	return out;
}

/* The engine observer: folds one pass's rows into the site's sums and copies the kept rows. */
static void observe(void *ctx, size_t layer, int site, const float *x, size_t n_tok, size_t dim)
{
	calib_stats *s = ctx;
	if (layer >= s->n_layers || site < 0 || site >= ENGINE_N_SITES)
		return;
	site_acc *a = &s->sites[layer * ENGINE_N_SITES + (size_t)site];
	if (!a->sum_abs) {
		a->pub.dim = dim;
		a->sum_abs = calloc(dim, sizeof *a->sum_abs);
		a->sum_sq = calloc(dim, sizeof *a->sum_sq);
		a->pub.max_abs = calloc(dim, sizeof *a->pub.max_abs);
		a->pub.rows = malloc((s->n_keep ? s->n_keep : 1) * dim * sizeof *a->pub.rows);
		if (!a->sum_abs || !a->sum_sq || !a->pub.max_abs || !a->pub.rows) {
			s->failed = 1;
			return;
		}
	}
	if (dim != a->pub.dim) {
		s->failed = 1;
		return;
	}
	if (a->hess && hess_add(s, a->hess, x, n_tok, dim)) {
		s->failed = 1;
		return;
	}
	for (size_t i = 0; i < n_tok; i++) {
		const float *r = x + i * dim;
		for (size_t j = 0; j < dim; j++) {
			float v = r[j] < 0 ? -r[j] : r[j];
			a->sum_abs[j] += v;
			a->sum_sq[j] += (double)v * v;
			if (v > a->pub.max_abs[j])
				a->pub.max_abs[j] = v;
		}
		size_t g = a->n_seen + i;
		if (a->next_keep < s->n_keep && s->keep[a->next_keep] == g) {
			memcpy(a->pub.rows + a->next_keep * dim, r, dim * sizeof *r);
			a->next_keep++;
		}
	}
	a->n_seen += n_tok;
}

int calib_run_tokens(engine *e, const int32_t *tokens, size_t n_tokens, const calib_opts *o,
		     calib_stats **out, os_error *err)
{
	*out = NULL;
	calib_opts dflt = calib_opts_default();
	size_t N = o && o->n_samples ? o->n_samples : dflt.n_samples;
	size_t L = o && o->seq_len ? o->seq_len : dflt.seq_len;
	size_t K = o && o->keep_rows ? o->keep_rows : dflt.keep_rows;
	uint64_t seed = o && o->seed ? o->seed : dflt.seed;
	int32_t bos = o && o->add_bos ? o->bos : -1;
	const model_config *c = model_get_config(engine_model(e));
	if (N > ((size_t)1 << 20) || L > ((size_t)1 << 20))
		return os_error_set(err, OS_EUSAGE, "calibration: %zu samples of %zu tokens is too "
				    "many", N, L);
	if (L > c->ctx)
		return os_error_set(err, OS_EUSAGE, "calibration: samples of %zu tokens exceed the "
				    "model's context of %zu tokens", L, c->ctx);
	if (o && o->add_bos && (bos < 0 || (size_t)bos >= c->vocab))
		return os_error_set(err, OS_EUSAGE, "calibration: BOS id %d is outside the "
				    "vocabulary", (int)bos);
	if (n_tokens < N * L)
		return os_error_set(err, OS_EUSAGE,
				    "calibration text too short: %zu tokens, and %zu samples of %zu "
				    "tokens need %zu; use a longer text or fewer samples / a shorter "
				    "sequence length",
				    n_tokens, N, L, N * L);
	if (K > N * L)
		K = N * L;
	bool hess = o && o->hessian;
	size_t h_begin = hess ? o->layer_begin : 0;
	size_t h_end = hess && o->layer_end ? o->layer_end : c->n_layers;
	if (hess && (h_end > c->n_layers || h_begin >= h_end))
		return os_error_set(err, OS_EUSAGE, "calibration: Hessian layers [%zu, %zu) are not "
				    "a range inside the model's %zu layers", h_begin, h_end,
				    c->n_layers);
	if (hess) {
		size_t budget = o->hessian_budget ? o->hessian_budget : CALIB_DEFAULT_HESSIAN_BUDGET;
		size_t need = calib_hessian_bytes(c, h_begin, h_end);
		if (need > budget)
			return os_error_set(err, OS_ENOMEM,
					    "calibration: the Hessians of layers [%zu, %zu) need %.1f "
					    "MiB, over the budget of %.1f MiB; collect fewer layers "
					    "per pass", h_begin, h_end, (double)need / (1 << 20),
					    (double)budget / (1 << 20));
	}

	int rc = OS_OK;
	int32_t *tok = NULL, *pos = NULL, *seq = NULL;
	int32_t sid = -1;
	calib_stats *s = calloc(1, sizeof *s);
	if (!s)
		return os_error_set(err, OS_ENOMEM, "calibration: out of memory");
	s->n_layers = c->n_layers;
	s->sites = calloc(c->n_layers * ENGINE_N_SITES, sizeof *s->sites);
	s->keep = pick_sorted(N * L, K, seed);
	s->n_keep = K;
	s->be = o ? o->be : NULL;
	for (size_t l = h_begin; hess && s->sites && l < h_end; l++)
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			size_t d = site_dim(c, site);
			site_acc *a = &s->sites[l * ENGINE_N_SITES + (size_t)site];
			if (!(a->hess = calloc(d * d, sizeof *a->hess))) {
				rc = os_error_set(err, OS_ENOMEM, "calibration: out of memory for the "
						  "Hessians (%.1f MiB)",
						  (double)calib_hessian_bytes(c, h_begin, h_end) /
							  (1 << 20));
				goto fail;
			}
		}
	tok = malloc(L * sizeof *tok);
	pos = malloc(L * sizeof *pos);
	seq = malloc(L * sizeof *seq);
	if (!s->sites || !s->keep || !tok || !pos || !seq) {
		rc = os_error_set(err, OS_ENOMEM, "calibration: out of memory");
		goto fail;
	}
	engine_set_observer(e, observe, s);
	/* samples spread evenly over the stream: sample i starts at i * stride */
	size_t stride = N > 1 ? (n_tokens - L) / (N - 1) : 0;
	kv_cache *kv = engine_kv(e);
	for (size_t i = 0; i < N; i++) {
		if (o && o->should_stop && o->should_stop(o->cb_ctx)) {
			rc = os_error_set(err, OS_ESTOPPED, "calibration stopped after %zu of %zu "
					  "samples", i, N);
			goto fail;
		}
		const int32_t *src = tokens + i * stride;
		for (size_t t = 0; t < L; t++) {
			tok[t] = src[t];
			pos[t] = (int32_t)t;
		}
		if (bos >= 0)
			tok[0] = bos;
		if ((rc = kv_seq_new(kv, &sid, err)))
			goto fail;
		for (size_t t = 0; t < L; t++)
			seq[t] = sid;
		engine_batch b = {.n = L, .tokens = tok, .pos = pos, .seq = seq};
		/* logits of the last token only: all we want is the observer */
		float *logits = malloc(c->vocab * sizeof *logits);
		if (!logits) {
			rc = os_error_set(err, OS_ENOMEM, "calibration: out of memory");
			goto fail;
		}
		rc = engine_forward(e, &b, logits, err);
		free(logits);
		kv_seq_free(kv, sid);
		sid = -1;
		if (rc)
			goto fail;
		if (s->failed) {
			rc = os_error_set(err, OS_ENOMEM, "calibration: out of memory for activation "
					  "statistics");
			goto fail;
		}
		if (o && o->progress)
			o->progress(o->cb_ctx, i + 1, N);
	}
	engine_set_observer(e, NULL, NULL);
	s->n_tokens = N * L;
	for (size_t i = 0; i < s->n_layers * ENGINE_N_SITES; i++) {
		site_acc *a = &s->sites[i];
		if (!a->sum_abs || a->n_seen != s->n_tokens || a->next_keep != s->n_keep) {
			rc = os_error_set(err, OS_EINTERNAL,
					  "calibration: layer %zu site %s saw %zu of %zu tokens",
					  i / ENGINE_N_SITES,
					  calib_site_name((int)(i % ENGINE_N_SITES)), a->n_seen,
					  s->n_tokens);
			goto fail;
		}
		a->pub.mean_abs = malloc(a->pub.dim * sizeof *a->pub.mean_abs);
		a->pub.mean_sq = malloc(a->pub.dim * sizeof *a->pub.mean_sq);
		if (!a->pub.mean_abs || !a->pub.mean_sq) {
			rc = os_error_set(err, OS_ENOMEM, "calibration: out of memory");
			goto fail;
		}
		for (size_t j = 0; j < a->pub.dim; j++) {
			a->pub.mean_abs[j] = (float)(a->sum_abs[j] / (double)s->n_tokens);
			a->pub.mean_sq[j] = (float)(a->sum_sq[j] / (double)s->n_tokens);
		}
		if (a->hess) { /* the mean, the lower triangle mirrored from the upper */
			size_t d = a->pub.dim;
			float inv = (float)(1.0 / (double)s->n_tokens);
			for (size_t r = 0; r < d; r++) {
				for (size_t j = r; j < d; j++)
					a->hess[r * d + j] *= inv;
				for (size_t j = 0; j < r; j++)
					a->hess[r * d + j] = a->hess[j * d + r];
			}
		}
		a->pub.n_rows = s->n_keep;
		free(a->sum_abs);
		free(a->sum_sq);
		a->sum_abs = NULL;
		a->sum_sq = NULL;
	}
	free(tok);
	free(pos);
	free(seq);
	*out = s;
	return OS_OK;
fail:
	engine_set_observer(e, NULL, NULL);
	if (sid >= 0)
		kv_seq_free(engine_kv(e), sid);
	free(tok);
	free(pos);
	free(seq);
	calib_stats_free(s);
	return rc;
}

int calib_run_text(engine *e, const tokenizer *tok, const char *text, size_t len,
		   const calib_opts *o, calib_stats **out, os_error *err)
{
	*out = NULL;
	int32_t *ids = NULL;
	size_t n = 0;
	int rc = tokenizer_encode(tok, text, len, false, false, &ids, &n, err);
	if (rc)
		return rc;
	rc = calib_run_tokens(e, ids, n, o, out, err);
	free(ids);
	return rc;
}

int calib_run_file(engine *e, const tokenizer *tok, const char *path, const calib_opts *o,
		   calib_stats **out, os_error *err)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return os_error_set(err, OS_EIO, "cannot read calibration text '%s': %s", path,
				    strerror(errno));
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = OS_OK;
	for (;;) {
		if (len + 65536 > cap) {
			size_t nc = cap ? cap * 2 : 1 << 20;
			char *nb = realloc(buf, nc);
			if (!nb) {
				rc = os_error_set(err, OS_ENOMEM, "calibration text '%s': out of "
						  "memory", path);
				goto done;
			}
			buf = nb;
			cap = nc;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		rc = os_error_set(err, OS_EIO, "cannot read calibration text '%s'", path);
		goto done;
	}
	if (len == 0) {
		rc = os_error_set(err, OS_EUSAGE, "calibration text '%s' is empty", path);
		goto done;
	}
	rc = calib_run_text(e, tok, buf, len, o, out, err);
done:
	fclose(f);
	free(buf);
	return rc;
}
