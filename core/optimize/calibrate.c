/* calibrate.c: activation statistics of an F32 model over calibration text (calibrate.h),
 * gathered through the engine's observer hook. */
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
} site_acc;

struct calib_stats {
	size_t n_layers;
	size_t n_tokens;     /* tokens per site */
	site_acc *sites;     /* [n_layers * ENGINE_N_SITES] */
	size_t *keep;        /* sorted global token indices whose rows are kept */
	size_t n_keep;
	int failed;          /* an allocation failed inside the observer */
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
		}
	free(s->sites);
	free(s->keep);
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
	calib_opts d = calib_opts_default();
	size_t N = o && o->n_samples ? o->n_samples : d.n_samples;
	size_t L = o && o->seq_len ? o->seq_len : d.seq_len;
	size_t K = o && o->keep_rows ? o->keep_rows : d.keep_rows;
	uint64_t seed = o && o->seed ? o->seed : d.seed;
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
