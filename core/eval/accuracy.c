/* accuracy.c: a model's next-token distributions against a baseline's over the same chunks
 * (accuracy.h). */
#include "accuracy.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "perplexity.h"

/* Tokens per engine call: bounds the logits held at once to PASS * vocab floats per model. */
#define PASS 64

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* log-sum-exp of a row, in double; NaN counts as -inf. */
static double row_lse(const float *x, size_t n)
{
	double mx = -INFINITY;
	for (size_t i = 0; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	if (!isfinite(mx))
		return mx;
	double s = 0;
	for (size_t i = 0; i < n; i++)
		if (x[i] == x[i])
			s += exp((double)x[i] - mx);
	return mx + log(s);
}

double accuracy_kl(const float *p, const float *q, size_t n)
{
	double lp = row_lse(p, n), lq = row_lse(q, n), kl = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(p[i] == p[i]))
			continue;
		double a = (double)p[i] - lp;
		double pa = exp(a);
		if (pa == 0)
			continue;
		kl += pa * (a - ((double)q[i] - lq));
	}
	return kl > 0 ? kl : 0; /* rounding can make an identical pair -1e-17 */
}

static size_t argmax(const float *x, size_t n)
{
	size_t b = 0;
	for (size_t i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return b;
}

/* The scores of one scored row: both NLLs, KL(base || model), agreement, max |error|. */
typedef struct row_scores {
	double nll_m, nll_b, kl, max_err;
	bool agree;
} row_scores;

/* One pass's scored rows: row r of lm / lb (vocab wide) against target[r] into out[r]. */
typedef struct score_rows_job {
	const float *lm, *lb;
	const int32_t *target;
	row_scores *out;
	size_t vocab;
} score_rows_job;

/* Four vocabulary-wide double passes per row, on one thread before: `optstudio eval` of
 * SmolLM2's INT8 file against F32, ctx 512, 4 chunks, alternating: 7.14 / 6.68 -> 5.88 /
 * 5.58 s, the same KL mean. The rows go over the pool, one task each; the caller sums them
 * in row order. */
static void score_row_task(void *p, size_t r, size_t thread)
{
	(void)thread;
	const score_rows_job *j = p;
	size_t vocab = j->vocab;
	const float *xm = j->lm + r * vocab, *xb = j->lb + r * vocab;
	row_scores *o = &j->out[r];
	o->nll_m = perplexity_token_nll(xm, vocab, j->target[r]);
	o->nll_b = perplexity_token_nll(xb, vocab, j->target[r]);
	o->kl = accuracy_kl(xb, xm, vocab);
	o->agree = argmax(xm, vocab) == argmax(xb, vocab);
	o->max_err = 0;
	for (size_t v = 0; v < vocab; v++) {
		double d = fabs((double)xm[v] - xb[v]);
		o->max_err = d > o->max_err ? d : o->max_err;
	}
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int accuracy_compare(engine *m, engine *b, const int32_t *tokens, size_t n_tokens,
		     const accuracy_opts *o, accuracy_result *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	size_t ctx = o->ctx, vocab = model_n_vocab(engine_model(m));
	if (model_n_vocab(engine_model(b)) != vocab)
		return os_error_set(err, OS_EUSAGE, "the model has %zu tokens in its vocabulary, "
				    "the baseline %zu: they cannot be compared",
				    vocab, model_n_vocab(engine_model(b)));
	if (ctx < 3)
		return os_error_set(err, OS_EUSAGE, "accuracy: ctx %zu is below 3 tokens", ctx);
	if (o->bos >= 0 && (size_t)o->bos >= vocab)
		return os_error_set(err, OS_EUSAGE, "accuracy: BOS id %d is outside the vocabulary",
				    (int)o->bos);
	for (size_t i = 0; i < n_tokens; i++)
		if (tokens[i] < 0 || (size_t)tokens[i] >= vocab)
			return os_error_set(err, OS_EUSAGE, "accuracy: token %zu (id %d) is outside "
					    "the vocabulary [0, %zu)", i, (int)tokens[i], vocab);
	size_t n_chunks = perplexity_n_chunks(n_tokens, ctx, o->max_chunks);
	if (n_chunks == 0)
		return os_error_set(err, OS_EUSAGE, "accuracy: the text holds %zu tokens, and one "
				    "chunk needs %zu", n_tokens, ctx);
	size_t first = ctx / 2, per_chunk = ctx - 1 - first;
	double t0 = now_s();
	int rc = OS_OK;
	int32_t sm = -1, sb = -1;
	float *lm = malloc(PASS * vocab * sizeof *lm), *lb = malloc(PASS * vocab * sizeof *lb);
	double *kls = malloc(n_chunks * per_chunk * sizeof *kls);
	if (!lm || !lb || !kls) {
		rc = os_error_set(err, OS_ENOMEM, "accuracy: out of memory");
		goto done;
	}
	double s_nm = 0, s_nb = 0, max_err = 0;
	size_t n = 0, agree = 0;
	for (size_t c = 0; c < n_chunks; c++) {
		if (o->should_stop && o->should_stop(o->cb_ctx)) {
			rc = os_error_set(err, OS_ESTOPPED, "accuracy stopped after %zu of %zu chunks",
					  c, n_chunks);
			goto done;
		}
		const int32_t *ct = tokens + c * ctx;
		if ((rc = kv_seq_new(engine_kv(m), &sm, err)) || (rc = kv_seq_new(engine_kv(b), &sb, err)))
			goto done;
		/* positions 0..ctx-2 are run (the last token is only predicted) */
		for (size_t j0 = 0; j0 + 1 < ctx; j0 += PASS) {
			size_t np = ctx - 1 - j0 < PASS ? ctx - 1 - j0 : PASS;
			int32_t tok[PASS], pos[PASS], sq_m[PASS], sq_b[PASS];
			uint8_t want[PASS];
			for (size_t i = 0; i < np; i++) {
				size_t j = j0 + i;
				tok[i] = j == 0 && o->bos >= 0 ? o->bos : ct[j];
				pos[i] = (int32_t)j;
				sq_m[i] = sm;
				sq_b[i] = sb;
				want[i] = j >= first;
			}
			engine_batch bm = {.n = np, .tokens = tok, .pos = pos, .seq = sq_m, .want = want};
			engine_batch bb = {.n = np, .tokens = tok, .pos = pos, .seq = sq_b, .want = want};
			if ((rc = engine_forward(m, &bm, lm, err)) || (rc = engine_forward(b, &bb, lb, err)))
				goto done;
			int32_t target[PASS];
			row_scores sc[PASS];
			size_t rows = 0;
			for (size_t i = 0; i < np; i++)
				if (want[i])
					target[rows++] = ct[j0 + i + 1];
			score_rows_job sj = {lm, lb, target, sc, vocab};
			threadpool_run(o->pool, rows, score_row_task, &sj);
			for (size_t r = 0; r < rows; r++) { /* in row order: any split, same sums */
				s_nm += sc[r].nll_m;
				s_nb += sc[r].nll_b;
				kls[n++] = sc[r].kl;
				agree += sc[r].agree;
				max_err = sc[r].max_err > max_err ? sc[r].max_err : max_err;
			}
		}
		kv_seq_free(engine_kv(m), sm);
		kv_seq_free(engine_kv(b), sb);
		sm = sb = -1;
		if (o->progress)
			o->progress(o->cb_ctx, c + 1, n_chunks);
	}
	double sum_kl = 0;
	for (size_t i = 0; i < n; i++)
		sum_kl += kls[i];
	qsort(kls, n, sizeof *kls, cmp_d);
	size_t i99 = (size_t)ceil(0.99 * (double)n);
	out->kl_mean = sum_kl / (double)n;
	out->kl_p99 = kls[i99 ? i99 - 1 : 0];
	out->kl_max = kls[n - 1];
	out->nll_model = s_nm / (double)n;
	out->nll_base = s_nb / (double)n;
	out->ppl_model = exp(out->nll_model);
	out->ppl_base = exp(out->nll_base);
	out->top1_agree = (double)agree / (double)n;
	out->max_logit_err = max_err;
	out->n_scored = n;
	out->n_chunks = n_chunks;
	out->seconds = now_s() - t0;
done:
	if (sm >= 0)
		kv_seq_free(engine_kv(m), sm);
	if (sb >= 0)
		kv_seq_free(engine_kv(b), sb);
	free(lm);
	free(lb);
	free(kls);
	return rc;
}
