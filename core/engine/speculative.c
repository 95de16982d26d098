/* speculative.c: speculative decoding over two engines (or prompt-lookup n-grams): batched
 * drafting, one batched verification per round, exact accept/reject, KV rollback, metrics. */
#include "speculative.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Default extra verification cost of one more position, in plain target steps: a k+1-row pass
 * reads the weights once, so the marginal row costs compute only (bench_spec measures it). */
#define SPEC_C_VERIFY 0.15
/* Decay of the adaptive acceptance estimate per round, and its prior (accepts, rejects). */
#define SPEC_DECAY 0.8
#define SPEC_PRIOR_ACC 2.0
#define SPEC_PRIOR_REJ 1.0

typedef struct spec_seq {
	bool live, done;
	int32_t tkv, dkv;       /* KV sequence ids in the target / draft caches; -1 none */
	int32_t *hist;          /* [n_hist] prompt then output */
	size_t n_hist, cap_hist;
	size_t n_prompt, max_new, n_new;
	size_t last_start;      /* first token emitted by the last step */
	bool fresh;             /* added since the last step, which then also reports the
				 * token sampled from the prompt's logits */
	size_t d_len;           /* tokens the draft cache holds: hist[0..d_len-1] */
	size_t k;               /* proposals of the next round */
	double acc, rej;        /* decayed accepted tokens / rejections (adaptive k) */
	sampler *st;            /* target sampler: history = hist, PRNG for accept/resample */
	sampler *sq;            /* draft sampler: history = hist, PRNG for proposals */
	int32_t prop[SPEC_MAX_K];
	size_t n_prop;          /* proposals of the current round */
	float *q;               /* (SPEC_MAX_K, V) draft distributions (model draft, sampling) */
	size_t row0;            /* the current round's first verification row */
} spec_seq;

struct spec_decoder {
	engine *target, *draft;
	int kind;
	spec_opts o;
	int32_t *stop;          /* owned copy of o.stop */
	sampler_params sp;
	bool greedy;
	size_t V;
	double c_draft;         /* draft step bytes / target step bytes */
	spec_seq *seqs;
	size_t n_seqs, cap_seqs;
	/* batch scratch, grown as needed */
	int32_t *bt, *bp, *bs;
	uint8_t *bw;
	size_t cap_batch;
	float *logits;          /* (cap_rows, V) */
	size_t cap_rows;
	float *p, *resid;       /* (V) each */
	int *row_seq;           /* draft rows -> sequence index */
	spec_metrics m;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- metrics ------------------------------------------------------------------------- */

double spec_metrics_acceptance(const spec_metrics *m)
{
	return m->n_proposed ? (double)m->n_accepted / (double)m->n_proposed : 0.0;
}

double spec_metrics_mean_accepted(const spec_metrics *m)
{
	return m->n_seq_rounds ? (double)m->n_emitted / (double)m->n_seq_rounds : 0.0;
}

double spec_metrics_tok_s(const spec_metrics *m)
{
	return m->decode_ms > 0 ? (double)m->n_emitted / (m->decode_ms / 1e3) : 0.0;
}

double spec_metrics_acceptance_at(const spec_metrics *m, size_t i)
{
	if (i >= SPEC_MAX_K || !m->proposed_at[i])
		return 0.0;
	return (double)m->accepted_at[i] / (double)m->proposed_at[i];
}

void spec_metrics_add(spec_metrics *a, const spec_metrics *b)
{
	a->n_target_calls += b->n_target_calls;
	a->n_seq_rounds += b->n_seq_rounds;
	a->n_proposed += b->n_proposed;
	a->n_accepted += b->n_accepted;
	a->n_emitted += b->n_emitted;
	a->n_prompt += b->n_prompt;
	for (size_t i = 0; i < SPEC_MAX_K; i++) {
		a->proposed_at[i] += b->proposed_at[i];
		a->accepted_at[i] += b->accepted_at[i];
	}
	a->prefill_ms += b->prefill_ms;
	a->draft_ms += b->draft_ms;
	a->verify_ms += b->verify_ms;
	a->accept_ms += b->accept_ms;
	a->decode_ms += b->decode_ms;
}

void spec_metrics_format(const spec_metrics *m, char *buf, size_t len)
{
	double t = m->decode_ms > 0 ? m->decode_ms : 1;
	snprintf(buf, len,
		 "accept %.1f%% (%llu/%llu) | mean len %.2f | draft %.0f%% verify %.0f%% | %.1f tok/s",
		 100.0 * spec_metrics_acceptance(m), (unsigned long long)m->n_accepted,
		 (unsigned long long)m->n_proposed, spec_metrics_mean_accepted(m),
		 100.0 * m->draft_ms / t, 100.0 * m->verify_ms / t, spec_metrics_tok_s(m));
}

/* ---- pure helpers -------------------------------------------------------------------- */

size_t spec_ngram_propose(const int32_t *hist, size_t n_hist, size_t ngram_min, size_t ngram_max,
			  size_t k, int32_t *out)
{
	if (ngram_min < 1)
		ngram_min = 1;
	for (size_t n = ngram_max; n >= ngram_min && n >= 1; n--) {
		if (n >= n_hist)
			continue;
		const int32_t *pat = hist + n_hist - n;
		/* candidate starts j: the occurrence hist[j..j+n-1] ends before the last token,
		 * so at least one token follows it; most recent first */
		for (size_t j = n_hist - n; j-- > 0;) {
			if (memcmp(hist + j, pat, n * sizeof *pat) != 0)
				continue;
			size_t avail = n_hist - (j + n);
			size_t c = avail < k ? avail : k;
			memcpy(out, hist + j + n, c * sizeof *out);
			return c;
		}
	}
	return 0;
}

size_t spec_best_k(double a, double c_draft, double c_verify)
{
	size_t best = 1;
	double best_v = -1;
	if (!(a >= 0))
		a = 0;
	for (size_t k = 1; k <= SPEC_MAX_K; k++) {
		double gain = a > 0.9999 ? (double)(k + 1) : (1 - pow(a, (double)k + 1)) / (1 - a);
		double v = gain / (1 + (double)k * (c_draft + c_verify));
		if (v > best_v + 1e-12) {
			best_v = v;
			best = k;
		}
	}
	return best;
}

/* ---- decoder ------------------------------------------------------------------------- */

int spec_new(spec_decoder **out, engine *target, engine *draft, int kind, const spec_opts *o,
	     const sampler_params *sp, os_error *err)
{
	*out = NULL;
	if (kind != SPEC_DRAFT_NONE && kind != SPEC_DRAFT_MODEL && kind != SPEC_DRAFT_NGRAM)
		return os_error_set(err, OS_EUSAGE, "speculative: unknown draft kind %d", kind);
	if ((kind == SPEC_DRAFT_MODEL) != (draft != NULL))
		return os_error_set(err, OS_EUSAGE, "speculative: a draft engine is needed exactly "
				    "for the model draft kind");
	size_t V = model_n_vocab(engine_model(target));
	if (draft && model_n_vocab(engine_model(draft)) != V)
		return os_error_set(err, OS_EUSAGE, "speculative: the draft's vocabulary has %zu "
				    "tokens, the target's %zu; they must be identical",
				    model_n_vocab(engine_model(draft)), V);
	spec_opts oo = o ? *o : (spec_opts){0};
	if (!oo.k)
		oo.k = 4;
	if (oo.k > SPEC_MAX_K)
		return os_error_set(err, OS_ERANGE, "speculative: k = %zu, expected 1..%d", oo.k,
				    SPEC_MAX_K);
	if (!oo.ngram_max)
		oo.ngram_max = 3;
	if (!oo.ngram_min)
		oo.ngram_min = 1;
	if (oo.ngram_min > oo.ngram_max)
		return os_error_set(err, OS_ERANGE, "speculative: ngram_min %zu > ngram_max %zu",
				    oo.ngram_min, oo.ngram_max);
	/* validate the sampling parameters once, as sampler_new does */
	sampler *probe = NULL;
	int rc = sampler_new(&probe, V, sp, err);
	if (rc)
		return rc;
	sampler_free(probe);

	spec_decoder *d = calloc(1, sizeof *d);
	if (!d)
		return os_error_set(err, OS_ENOMEM, "speculative: out of memory");
	d->target = target;
	d->draft = draft;
	d->kind = kind;
	d->o = oo;
	d->sp = *sp;
	d->greedy = !(sp->temperature > 0.0f);
	d->V = V;
	d->c_draft = 0.0;
	if (draft) {
		double tb = (double)model_step_bytes(engine_model(target));
		d->c_draft = tb > 0 ? (double)model_step_bytes(engine_model(draft)) / tb : 1.0;
	}
	if (oo.draft_cost > 0)
		d->c_draft = oo.draft_cost;
	if (!(oo.verify_cost > 0))
		d->o.verify_cost = SPEC_C_VERIFY;
	d->p = malloc(V * sizeof *d->p);
	d->resid = malloc(V * sizeof *d->resid);
	if (oo.n_stop) {
		d->stop = malloc(oo.n_stop * sizeof *d->stop);
		if (d->stop)
			memcpy(d->stop, oo.stop, oo.n_stop * sizeof *d->stop);
	}
	d->o.stop = d->stop;
	if (!d->p || !d->resid || (oo.n_stop && !d->stop)) {
		spec_free(d);
		return os_error_set(err, OS_ENOMEM, "speculative: out of memory");
	}
	*out = d;
	return OS_OK;
}

static void seq_clear(spec_decoder *d, spec_seq *s)
{
	if (s->tkv >= 0)
		kv_seq_free(engine_kv(d->target), s->tkv);
	if (d->draft && s->dkv >= 0)
		kv_seq_free(engine_kv(d->draft), s->dkv);
	sampler_free(s->st);
	sampler_free(s->sq);
	free(s->hist);
	free(s->q);
	memset(s, 0, sizeof *s);
	s->tkv = s->dkv = -1;
}

void spec_free(spec_decoder *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n_seqs; i++)
		if (d->seqs[i].live)
			seq_clear(d, &d->seqs[i]);
	free(d->seqs);
	free(d->stop);
	free(d->bt);
	free(d->bp);
	free(d->bs);
	free(d->bw);
	free(d->logits);
	free(d->p);
	free(d->resid);
	free(d->row_seq);
	free(d);
}

static spec_seq *seq_get(const spec_decoder *d, int id)
{
	if (id < 0 || (size_t)id >= d->n_seqs || !d->seqs[id].live)
		return NULL;
	return &d->seqs[id];
}

/* Grows the batch scratch to n tokens and the logits to rows rows. */
static int scratch_reserve(spec_decoder *d, size_t n, size_t rows, os_error *err)
{
	if (n > d->cap_batch) {
		size_t c = n * 2;
		int32_t *t = realloc(d->bt, c * sizeof *t);
		if (t)
			d->bt = t;
		int32_t *p = realloc(d->bp, c * sizeof *p);
		if (p)
			d->bp = p;
		int32_t *s = realloc(d->bs, c * sizeof *s);
		if (s)
			d->bs = s;
		uint8_t *w = realloc(d->bw, c * sizeof *w);
		if (w)
			d->bw = w;
		int *r = realloc(d->row_seq, c * sizeof *r);
		if (r)
			d->row_seq = r;
		if (!t || !p || !s || !w || !r)
			return os_error_set(err, OS_ENOMEM, "speculative: out of memory (batch of %zu)",
					    n);
		d->cap_batch = c;
	}
	if (rows > d->cap_rows) {
		float *l = realloc(d->logits, rows * d->V * sizeof *l);
		if (!l)
			return os_error_set(err, OS_ENOMEM, "speculative: out of memory (%zu logit "
					    "rows)", rows);
		d->logits = l;
		d->cap_rows = rows;
	}
	return OS_OK;
}

static int hist_push(spec_seq *s, int32_t t)
{
	if (s->n_hist == s->cap_hist) {
		size_t c = s->cap_hist ? s->cap_hist * 2 : 64;
		int32_t *h = realloc(s->hist, c * sizeof *h);
		if (!h)
			return OS_ENOMEM;
		s->hist = h;
		s->cap_hist = c;
	}
	s->hist[s->n_hist++] = t;
	return OS_OK;
}

/* Feeds tokens[0..n-1] of one sequence at positions start..; d->logits holds the last
 * token's row. */
static int prefill(spec_decoder *d, engine *e, int32_t kvs, const int32_t *tokens, size_t n,
		   size_t start, os_error *err)
{
	if (!n)
		return OS_OK;
	int rc = scratch_reserve(d, n, 1, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		d->bt[i] = tokens[i];
		d->bp[i] = (int32_t)(start + i);
		d->bs[i] = kvs;
	}
	engine_batch b = {.n = n, .tokens = d->bt, .pos = d->bp, .seq = d->bs, .want = NULL};
	return engine_forward(e, &b, d->logits, err);
}

static bool emit(spec_decoder *d, spec_seq *s, int32_t t, int *rc);

int spec_seq_add(spec_decoder *d, const int32_t *prompt, size_t n, size_t max_new,
		 uint64_t seed, int *id, os_error *err)
{
	*id = -1;
	if (!n || !max_new)
		return os_error_set(err, OS_EUSAGE, "speculative: a sequence needs at least one "
				    "prompt token and max_new >= 1 (got %zu, %zu)", n, max_new);
	for (size_t i = 0; i < n; i++)
		if (prompt[i] < 0 || (size_t)prompt[i] >= d->V)
			return os_error_set(err, OS_EUSAGE, "speculative: prompt token %zu is %d, "
					    "outside the vocabulary [0, %zu)", i, (int)prompt[i], d->V);
	size_t slot = d->n_seqs;
	for (size_t i = 0; i < d->n_seqs; i++)
		if (!d->seqs[i].live) {
			slot = i;
			break;
		}
	if (slot == d->cap_seqs) {
		size_t c = d->cap_seqs ? d->cap_seqs * 2 : 4;
		spec_seq *v = realloc(d->seqs, c * sizeof *v);
		if (!v)
			return os_error_set(err, OS_ENOMEM, "speculative: out of memory");
		d->seqs = v;
		d->cap_seqs = c;
	}
	if (slot == d->n_seqs)
		d->n_seqs++;
	spec_seq *s = &d->seqs[slot];
	memset(s, 0, sizeof *s);
	s->tkv = s->dkv = -1;
	s->live = true;
	int rc;
	sampler_params sp = d->sp;
	sp.seed = seed;
	if ((rc = sampler_new(&s->st, d->V, &sp, err)))
		goto fail;
	sp.seed = seed ^ 0x9e3779b97f4a7c15ull; /* the draft's stream, independent of the target's */
	if ((rc = sampler_new(&s->sq, d->V, &sp, err)))
		goto fail;
	if (d->kind == SPEC_DRAFT_MODEL && !d->greedy) {
		s->q = malloc(SPEC_MAX_K * d->V * sizeof *s->q);
		if (!s->q) {
			rc = os_error_set(err, OS_ENOMEM, "speculative: out of memory");
			goto fail;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (hist_push(s, prompt[i])) {
			rc = os_error_set(err, OS_ENOMEM, "speculative: out of memory");
			goto fail;
		}
		sampler_accept(s->st, prompt[i]);
		sampler_accept(s->sq, prompt[i]);
	}
	s->n_prompt = n;
	s->max_new = max_new;
	s->last_start = n;
	s->k = d->o.k;
	s->acc = SPEC_PRIOR_ACC;
	s->rej = SPEC_PRIOR_REJ;
	double t0 = now_ms();
	/* The whole prompt in one pass and the first token sampled from its last row, as plain
	 * decoding does (before: n - 1 tokens, the last one fed with the first proposals, so a
	 * prompt took other batch shapes than in a plain run, and with kernels that are not
	 * batch-invariant other bits: the first token of a plain and a speculative greedy run
	 * could differ). The target then holds all but the last token, as between rounds. */
	if ((rc = kv_seq_new(engine_kv(d->target), &s->tkv, err)))
		goto fail;
	if ((rc = prefill(d, d->target, s->tkv, prompt, n, 0, err)))
		goto fail;
	s->fresh = true;
	emit(d, s, sampler_sample(s->st, d->logits), &rc);
	if (rc) {
		rc = os_error_set(err, rc, "speculative: out of memory");
		goto fail;
	}
	if (d->draft) {
		if ((rc = kv_seq_new(engine_kv(d->draft), &s->dkv, err)))
			goto fail;
		if ((rc = prefill(d, d->draft, s->dkv, prompt, n - 1, 0, err)))
			goto fail;
		s->d_len = n - 1;
	}
	d->m.prefill_ms += now_ms() - t0;
	d->m.n_prompt += n;
	*id = (int)slot;
	return OS_OK;
fail:
	seq_clear(d, s);
	return rc;
}

void spec_seq_remove(spec_decoder *d, int id)
{
	spec_seq *s = seq_get(d, id);
	if (s)
		seq_clear(d, s);
}

static bool is_stop(const spec_decoder *d, int32_t t)
{
	for (size_t i = 0; i < d->o.n_stop; i++)
		if (d->o.stop[i] == t)
			return true;
	return false;
}

/* Appends an emitted token; returns true when the sequence is now done. */
static bool emit(spec_decoder *d, spec_seq *s, int32_t t, int *rc)
{
	if (hist_push(s, t)) {
		*rc = OS_ENOMEM;
		return true;
	}
	sampler_accept(s->st, t);
	sampler_accept(s->sq, t);
	s->n_new++;
	d->m.n_emitted++;
	if (s->n_new >= s->max_new || is_stop(d, t))
		s->done = true;
	return s->done;
}

/* Phase 1: proposals. Model drafts run max k autoregressive steps, each one engine_forward
 * over every sequence still proposing (the first step also feeds the tokens the draft has
 * not seen yet). */
static int propose(spec_decoder *d, spec_seq **act, size_t n_act, os_error *err)
{
	size_t kmax = 0;
	for (size_t a = 0; a < n_act; a++) {
		spec_seq *s = act[a];
		size_t room = s->max_new - s->n_new - 1; /* never propose past the limit */
		size_t k = s->k < room ? s->k : room;
		s->n_prop = 0;
		if (d->kind == SPEC_DRAFT_NGRAM)
			s->n_prop = spec_ngram_propose(s->hist, s->n_hist, d->o.ngram_min,
						       d->o.ngram_max, k, s->prop);
		else if (d->kind == SPEC_DRAFT_MODEL)
			s->n_prop = k; /* filled below */
		if (s->n_prop > kmax)
			kmax = s->n_prop;
	}
	if (d->kind != SPEC_DRAFT_MODEL)
		return OS_OK;
	for (size_t j = 0; j < kmax; j++) {
		size_t n = 0, rows = 0;
		for (size_t a = 0; a < n_act; a++) {
			spec_seq *s = act[a];
			if (s->n_prop > j)
				n += j == 0 ? s->n_hist - s->d_len : 1;
		}
		int rc = scratch_reserve(d, n, n_act, err);
		if (rc)
			return rc;
		n = 0;
		for (size_t a = 0; a < n_act; a++) {
			spec_seq *s = act[a];
			if (s->n_prop <= j)
				continue;
			if (j == 0) {
				for (size_t i = s->d_len; i < s->n_hist; i++) {
					d->bt[n] = s->hist[i];
					d->bp[n] = (int32_t)i;
					d->bs[n] = s->dkv;
					d->bw[n++] = i + 1 == s->n_hist;
				}
			} else {
				d->bt[n] = s->prop[j - 1];
				d->bp[n] = (int32_t)(s->n_hist + j - 1);
				d->bs[n] = s->dkv;
				d->bw[n++] = 1;
			}
			d->row_seq[rows++] = (int)a;
		}
		engine_batch b = {.n = n, .tokens = d->bt, .pos = d->bp, .seq = d->bs, .want = d->bw};
		if ((rc = engine_forward(d->draft, &b, d->logits, err)))
			return rc;
		for (size_t r = 0; r < rows; r++) {
			spec_seq *s = act[d->row_seq[r]];
			const float *row = d->logits + r * d->V;
			s->d_len = s->n_hist + j; /* hist + prop[0..j-1] */
			if (d->greedy) {
				s->prop[j] = sampler_sample(s->sq, row);
			} else {
				float *q = s->q + j * d->V;
				sampler_probs(s->sq, row, q);
				int32_t t = sampler_sample_weights(s->sq, q, d->V);
				s->prop[j] = t >= 0 ? t : sampler_sample(s->sq, row);
			}
		}
	}
	return OS_OK;
}

/* Phase 3 for one sequence: accept/reject against the target rows, emit, roll back. */
static int accept_seq(spec_decoder *d, spec_seq *s, os_error *err)
{
	const float *rows = d->logits + s->row0 * d->V; /* (n_prop + 1, V) */
	size_t old_n = s->n_hist, kp = s->n_prop, acc = 0;
	int rc = OS_OK;
	bool stopped = false;
	for (size_t i = 0; i < kp && !stopped; i++) {
		const float *row = rows + i * d->V;
		int32_t x = s->prop[i], t;
		if (d->greedy) {
			t = sampler_sample(s->st, row);
			if (t == x) {
				acc++;
				stopped = emit(d, s, x, &rc);
				continue;
			}
		} else {
			sampler_probs(s->st, row, d->p);
			const float *q = d->kind == SPEC_DRAFT_MODEL ? s->q + i * d->V : NULL;
			double px = d->p[x], qx = q ? q[x] : 1.0;
			/* px >= qx accepts surely; no random number is spent on it */
			if (px >= qx || sampler_uniform(s->st) * qx < px) {
				acc++;
				stopped = emit(d, s, x, &rc);
				continue;
			}
			for (size_t v = 0; v < d->V; v++) {
				float r = d->p[v] - (q ? q[v] : (v == (size_t)x ? 1.0f : 0.0f));
				d->resid[v] = r > 0 ? r : 0;
			}
			t = sampler_sample_weights(s->st, d->resid, d->V);
			if (t < 0) /* p == q up to rounding: the residual is empty */
				t = sampler_sample_weights(s->st, d->p, d->V);
		}
		emit(d, s, t, &rc);
		stopped = true;
	}
	if (!stopped) /* all accepted: the bonus token from the last row */
		emit(d, s, sampler_sample(s->st, rows + kp * d->V), &rc);
	if (rc)
		return os_error_set(err, rc, "speculative: out of memory");
	/* metrics */
	d->m.n_seq_rounds++;
	d->m.n_proposed += kp;
	d->m.n_accepted += acc;
	for (size_t i = 0; i < kp; i++) {
		d->m.proposed_at[i]++;
		if (i < acc)
			d->m.accepted_at[i]++;
	}
	/* adaptive k from the decayed acceptance estimate (a round shows at most one rejection) */
	if (kp) {
		s->acc = SPEC_DECAY * s->acc + (double)acc;
		s->rej = SPEC_DECAY * s->rej + (acc < kp ? 1.0 : 0.0);
		if (d->o.adaptive) {
			double c_draft = d->kind == SPEC_DRAFT_MODEL ? d->c_draft : 0.0;
			s->k = spec_best_k(s->acc / (s->acc + s->rej), c_draft, d->o.verify_cost);
		}
	}
	/* rollback: the target holds all but the last token; the draft held hist[0..old_n-1] and
	 * prop[0..kp-2], of which the accepted prefix stays */
	if ((rc = kv_seq_truncate(engine_kv(d->target), s->tkv, s->n_hist - 1, err)))
		return rc;
	if (d->kind == SPEC_DRAFT_MODEL && kp) {
		size_t keep = old_n + (acc < kp - 1 ? acc : kp - 1);
		if (keep < s->d_len) {
			if ((rc = kv_seq_truncate(engine_kv(d->draft), s->dkv, keep, err)))
				return rc;
			s->d_len = keep;
		}
	}
	return OS_OK;
}

int spec_step(spec_decoder *d, size_t *n_active, os_error *err)
{
	if (n_active)
		*n_active = 0;
	size_t n_act = 0;
	for (size_t i = 0; i < d->n_seqs; i++)
		if (d->seqs[i].live && !d->seqs[i].done)
			n_act++;
	for (size_t i = 0; i < d->n_seqs; i++) {
		spec_seq *s = &d->seqs[i];
		if (s->live && !s->fresh)
			s->last_start = s->n_hist;
		s->fresh = false;
	}
	if (!n_act)
		return OS_OK;
	spec_seq **act = malloc(n_act * sizeof *act);
	if (!act)
		return os_error_set(err, OS_ENOMEM, "speculative: out of memory");
	n_act = 0;
	for (size_t i = 0; i < d->n_seqs; i++)
		if (d->seqs[i].live && !d->seqs[i].done)
			act[n_act++] = &d->seqs[i];
	double t0 = now_ms();
	int rc = propose(d, act, n_act, err);
	if (rc)
		goto done;
	double t1 = now_ms();
	/* Phase 2: one verification pass: per sequence its last token then its proposals */
	size_t n = 0;
	for (size_t a = 0; a < n_act; a++)
		n += act[a]->n_prop + 1;
	if ((rc = scratch_reserve(d, n, n, err)))
		goto done;
	n = 0;
	for (size_t a = 0; a < n_act; a++) {
		spec_seq *s = act[a];
		s->row0 = n;
		for (size_t i = 0; i <= s->n_prop; i++) {
			d->bt[n] = i == 0 ? s->hist[s->n_hist - 1] : s->prop[i - 1];
			d->bp[n] = (int32_t)(s->n_hist - 1 + i);
			d->bs[n] = s->tkv;
			d->bw[n++] = 1;
		}
	}
	engine_batch b = {.n = n, .tokens = d->bt, .pos = d->bp, .seq = d->bs, .want = d->bw};
	if ((rc = engine_forward(d->target, &b, d->logits, err)))
		goto done;
	d->m.n_target_calls++;
	double t2 = now_ms();
	for (size_t a = 0; a < n_act && !rc; a++)
		rc = accept_seq(d, act[a], err);
	double t3 = now_ms();
	d->m.draft_ms += t1 - t0;
	d->m.verify_ms += t2 - t1;
	d->m.accept_ms += t3 - t2;
	d->m.decode_ms += t3 - t0;
	if (n_active)
		*n_active = n_act;
done:
	free(act);
	return rc;
}

int spec_run(spec_decoder *d, os_error *err)
{
	size_t n_act;
	do {
		int rc = spec_step(d, &n_act, err);
		if (rc)
			return rc;
	} while (n_act);
	return OS_OK;
}

const int32_t *spec_seq_tokens(const spec_decoder *d, int id, size_t *n, size_t *last_start)
{
	spec_seq *s = seq_get(d, id);
	if (!s) {
		if (n)
			*n = 0;
		return NULL;
	}
	if (n)
		*n = s->n_hist;
	if (last_start)
		*last_start = s->last_start;
	return s->hist;
}

size_t spec_seq_n_prompt(const spec_decoder *d, int id)
{
	spec_seq *s = seq_get(d, id);
	return s ? s->n_prompt : 0;
}

bool spec_seq_done(const spec_decoder *d, int id)
{
	spec_seq *s = seq_get(d, id);
	return !s || s->done;
}

int32_t spec_seq_target_kv(const spec_decoder *d, int id)
{
	spec_seq *s = seq_get(d, id);
	return s ? s->tkv : -1;
}

int32_t spec_seq_draft_kv(const spec_decoder *d, int id)
{
	spec_seq *s = seq_get(d, id);
	return s ? s->dkv : -1;
}

size_t spec_seq_k(const spec_decoder *d, int id)
{
	spec_seq *s = seq_get(d, id);
	return s ? s->k : 0;
}

const spec_metrics *spec_get_metrics(const spec_decoder *d)
{
	return &d->m;
}

void spec_metrics_reset(spec_decoder *d)
{
	memset(&d->m, 0, sizeof d->m);
}
