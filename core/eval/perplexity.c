/* perplexity.c: chunked perplexity over a token stream, llama.cpp's method (see
 * perplexity.h for the exact definition of what is scored). */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t perplexity_n_chunks(size_t n_tokens, size_t ctx, size_t max_chunks)
{
	if (ctx == 0)
		return 0;
	size_t n = n_tokens / ctx;
	return max_chunks && n > max_chunks ? max_chunks : n;
}

double perplexity_token_nll(const float *logits, size_t n, int32_t target)
{
	double mx = -INFINITY;
	for (size_t i = 0; i < n; i++)
		if (logits[i] > mx) /* false for NaN */
			mx = logits[i];
	double t = logits[target];
	if (isnan(t) || mx == -INFINITY)
		return INFINITY;
	if (mx == INFINITY)
		return t == INFINITY ? 0 : INFINITY; /* approximately: +inf logits take all mass */
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		if (logits[i] > -INFINITY) /* NaN and -inf add nothing */
			sum += exp((double)logits[i] - mx);
	return mx + log(sum) - t;
}

/* One pass's scored rows: row r of logits (vocab wide) against target[r] into nll[r]. */
typedef struct nll_rows_job {
	const float *logits;
	const int32_t *target;
	double *nll;
	size_t vocab;
} nll_rows_job;

/* A vocabulary of double exp per row: SmolLM2's 255 scored rows of a ctx-512 chunk took
 * 86-95 ms on one thread, 47-53 ms on two (about 6% of the chunk's ~640 ms; 8.6% of a
 * `perplexity` profile was this loop), so the rows go over the pool, one task each; the
 * caller sums them in row order. */
static void nll_row_task(void *p, size_t r, size_t thread)
{
	(void)thread;
	const nll_rows_job *j = p;
	j->nll[r] = perplexity_token_nll(j->logits + r * j->vocab, j->vocab, j->target[r]);
}

/* Running sums over scored tokens. */
typedef struct nll_sums {
	double sum, sum2; /* of NLL, of NLL^2 */
	size_t n;
} nll_sums;

static void fill_result(perplexity_result *out, const nll_sums *s, size_t n_chunks, size_t ctx,
			double seconds)
{
	memset(out, 0, sizeof *out);
	out->n_chunks = n_chunks;
	out->n_tokens_run = n_chunks * ctx;
	out->n_scored = s->n;
	out->seconds = seconds;
	if (s->n == 0)
		return;
	double mean = s->sum / (double)s->n;
	out->mean_nll = mean;
	out->ppl = exp(mean);
	if (s->n > 1) {
		double var = s->sum2 / (double)s->n - mean * mean;
		out->ppl_stderr = var > 0 ? out->ppl * sqrt(var / (double)(s->n - 1)) : 0;
	}
}

int perplexity_compute(engine *e, const int32_t *tokens, size_t n_tokens,
		       const perplexity_opts *opts, perplexity_result *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	size_t ctx = opts->ctx;
	size_t min_ctx = opts->score_all ? 2 : 3; /* at least one scored prediction per chunk */
	if (ctx < min_ctx)
		return os_error_set(err, OS_EUSAGE,
				    "a context of %zu tokens scores nothing (at least %zu%s)", ctx,
				    min_ctx, opts->score_all ? "" : " when the second half is scored");
	size_t n_chunks = perplexity_n_chunks(n_tokens, ctx, opts->max_chunks);
	if (n_chunks == 0)
		return os_error_set(err, OS_EUSAGE,
				    "the text has %zu tokens; one chunk needs %zu (use a longer "
				    "text or a smaller --ctx)",
				    n_tokens, ctx);

	const model *m = engine_model(e);
	size_t vocab = model_n_vocab(m);
	for (size_t i = 0; i < n_chunks * ctx; i++)
		if (tokens[i] < 0 || (size_t)tokens[i] >= vocab)
			return os_error_set(err, OS_EUSAGE, "token %zu is %d, outside the vocabulary [0, %zu)",
					    i, (int)tokens[i], vocab);
	if (opts->bos >= (int64_t)vocab)
		return os_error_set(err, OS_EUSAGE, "BOS token %d outside the vocabulary [0, %zu)",
				    (int)opts->bos, vocab);
	size_t pass = engine_max_batch(e);
	if (pass > ctx)
		pass = ctx;
	size_t first = opts->score_all ? 0 : ctx / 2;
	double t0 = now_s();
	nll_sums sums = {0};
	int rc = OS_OK;
	int32_t seq = -1;
	int32_t *toks = malloc(ctx * sizeof *toks);
	int32_t *pos = malloc(ctx * sizeof *pos);
	int32_t *seqs = malloc(ctx * sizeof *seqs);
	uint8_t *want = malloc(ctx);
	float *logits = malloc(pass * vocab * sizeof *logits); /* (pass, vocab) */
	int32_t *target = malloc(pass * sizeof *target);       /* of each scored row */
	double *nll = malloc(pass * sizeof *nll);
	if (!toks || !pos || !seqs || !want || !logits || !target || !nll) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory for perplexity buffers (%zu x %zu logits)",
				  pass, vocab);
		goto fail;
	}
	for (size_t j = 0; j < ctx; j++) {
		pos[j] = (int32_t)j;
		/* logits at j predict token j+1: score j in [first, ctx-1) */
		want[j] = j >= first && j + 1 < ctx;
	}

	size_t chunk = 0;
	for (; chunk < n_chunks; chunk++) {
		if (opts->should_stop && opts->should_stop(opts->cb_ctx)) {
			rc = os_error_set(err, OS_ESTOPPED, "perplexity stopped after %zu of %zu chunks",
					  chunk, n_chunks);
			goto stopped;
		}
		const int32_t *src = tokens + chunk * ctx;
		memcpy(toks, src, ctx * sizeof *toks);
		if (opts->bos >= 0)
			toks[0] = opts->bos;
		rc = kv_seq_new(engine_kv(e), &seq, err);
		if (rc != OS_OK)
			goto fail;
		for (size_t j = 0; j < ctx; j++)
			seqs[j] = seq;
		for (size_t a = 0; a < ctx; a += pass) {
			size_t n = ctx - a < pass ? ctx - a : pass;
			size_t n_want = 0;
			for (size_t j = a; j < a + n; j++)
				n_want += want[j];
			if (a > 0 && opts->should_stop && opts->should_stop(opts->cb_ctx)) {
				rc = os_error_set(err, OS_ESTOPPED,
						  "perplexity stopped after %zu of %zu chunks", chunk,
						  n_chunks);
				goto stopped;
			}
			if (n_want == 0 && a + n == ctx)
				break; /* nothing left to score in this chunk */
			/* a pass with no row to score still runs (its K and V feed later passes);
			 * want = NULL then returns just its last row, into the same buffer */
			engine_batch b = {.n = n, .tokens = toks + a, .pos = pos + a, .seq = seqs + a,
					  .want = n_want ? want + a : NULL};
			rc = engine_forward(e, &b, logits, err);
			if (rc != OS_OK)
				goto fail;
			if (n_want == 0)
				continue;
			size_t rows = 0;
			for (size_t j = a; j < a + n; j++)
				if (want[j])
					target[rows++] = src[j + 1];
			nll_rows_job nj = {logits, target, nll, vocab};
			threadpool_run(opts->pool, rows, nll_row_task, &nj);
			for (size_t r = 0; r < rows; r++) { /* in row order: any split, same sums */
				sums.sum += nll[r];
				sums.sum2 += nll[r] * nll[r];
				sums.n++;
			}
		}
		kv_seq_free(engine_kv(e), seq);
		seq = -1;
		if (opts->progress) {
			perplexity_result r;
			fill_result(&r, &sums, chunk + 1, ctx, now_s() - t0);
			opts->progress(opts->cb_ctx, chunk + 1, n_chunks, r.ppl);
		}
	}
	fill_result(out, &sums, n_chunks, ctx, now_s() - t0);
	goto done;

stopped:
	fill_result(out, &sums, chunk, ctx, now_s() - t0);
	goto done;
fail:
	memset(out, 0, sizeof *out);
done:
	if (seq >= 0)
		kv_seq_free(engine_kv(e), seq);
	free(toks);
	free(pos);
	free(seqs);
	free(want);
	free(logits);
	free(target);
	free(nll);
	return rc;
}
