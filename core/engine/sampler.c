/* sampler.c: logits -> token (penalty, top-k, temperature, top-p, min-p, draw); see
 * sampler.h for the order and the edge-case rules. Selection by partitioning keeps each
 * call O(n_vocab) expected; the PRNG is xoshiro256** seeded through splitmix64. */
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Invariants: work, idx, w, mark hold n_vocab entries; hist holds hist_cap entries of which
 * the hist_len most recent end just before hist_pos (a ring); mark is all zero between
 * calls. */
struct sampler {
	size_t n_vocab;
	sampler_params p;
	uint64_t rng[4];    /* xoshiro256** state, never all zero */
	int32_t *hist;      /* (hist_cap) ring of accepted tokens */
	size_t hist_cap, hist_len, hist_pos;
	float *work;        /* (n_vocab) penalised logits of the current call */
	int32_t *idx;       /* (n_vocab) candidate token ids; the kept set is a prefix */
	double *w;          /* (n_vocab) unnormalised probability, indexed by token id */
	uint8_t *mark;      /* (n_vocab) penalty dedupe flags */
};

/* --- PRNG ----------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t result = rotl64(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return result;
}

static void rng_seed(uint64_t *s, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		s[i] = splitmix64(&x);
	if (!(s[0] | s[1] | s[2] | s[3]))  /* cannot happen with splitmix, but keep the invariant */
		s[0] = 1;
}

double sampler_uniform(sampler *s)
{
	return (double)(rng_next(s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* --- lifecycle -------------------------------------------------------------------------- */

sampler_params sampler_params_default(void)
{
	sampler_params p = {
		.temperature = 1.0f,
		.top_k = 0,
		.top_p = 1.0f,
		.min_p = 0.0f,
		.repeat_penalty = 1.0f,
		.repeat_last_n = 64,
		.seed = 0,
	};
	return p;
}

int sampler_new(sampler **out, size_t n_vocab, const sampler_params *p, os_error *err)
{
	*out = NULL;
	if (n_vocab == 0 || n_vocab > INT32_MAX)
		return os_error_set(err, OS_ERANGE, "sampler: n_vocab %zu (expected 1..%d)",
				    n_vocab, INT32_MAX);
	if (isnan(p->temperature))
		return os_error_set(err, OS_ERANGE, "sampler: temperature is NaN");
	if (isnan(p->top_p))
		return os_error_set(err, OS_ERANGE, "sampler: top_p is NaN");
	if (isnan(p->min_p) || p->min_p > 1.0f)
		return os_error_set(err, OS_ERANGE, "sampler: min_p %g (expected <= 1)",
				    (double)p->min_p);
	if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
		return os_error_set(err, OS_ERANGE,
				    "sampler: repeat_penalty %g (expected a finite value > 0)",
				    (double)p->repeat_penalty);
	sampler *s = calloc(1, sizeof *s);
	if (!s)
		goto nomem;
	s->n_vocab = n_vocab;
	s->p = *p;
	s->hist_cap = p->repeat_last_n;
	if (s->hist_cap > n_vocab * 4 + 4096)  /* a window longer than this is pointless */
		s->hist_cap = n_vocab * 4 + 4096;
	s->work = malloc(n_vocab * sizeof *s->work);
	s->idx = malloc(n_vocab * sizeof *s->idx);
	s->w = malloc(n_vocab * sizeof *s->w);
	s->mark = calloc(n_vocab, 1);
	s->hist = s->hist_cap ? malloc(s->hist_cap * sizeof *s->hist) : NULL;
	if (!s->work || !s->idx || !s->w || !s->mark || (s->hist_cap && !s->hist))
		goto nomem;
	rng_seed(s->rng, p->seed);
	*out = s;
	return OS_OK;
nomem:
	sampler_free(s);
	return os_error_set(err, OS_ENOMEM, "sampler: out of memory for a vocabulary of %zu",
			    n_vocab);
}

void sampler_free(sampler *s)
{
	if (!s)
		return;
	free(s->work);
	free(s->idx);
	free(s->w);
	free(s->mark);
	free(s->hist);
	free(s);
}

const sampler_params *sampler_get_params(const sampler *s)
{
	return &s->p;
}

size_t sampler_n_vocab(const sampler *s)
{
	return s->n_vocab;
}

void sampler_reset(sampler *s, uint64_t seed)
{
	rng_seed(s->rng, seed);
	s->hist_len = 0;
	s->hist_pos = 0;
}

void sampler_accept(sampler *s, int32_t token)
{
	if (!s->hist_cap || token < 0 || (size_t)token >= s->n_vocab)
		return;
	s->hist[s->hist_pos] = token;
	s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
	if (s->hist_len < s->hist_cap)
		s->hist_len++;
}

/* --- selection over candidate ids ------------------------------------------------------
 * "a before b" is a total order: larger key first, lower id first among equal keys, so
 * every selection below has one well-defined answer. */

static int before(const float *key, int32_t a, int32_t b)
{
	return key[a] > key[b] || (key[a] == key[b] && a < b);
}

static void swap_i32(int32_t *a, int32_t *b)
{
	int32_t t = *a;
	*a = *b;
	*b = t;
}

/* Sorts idx[0..n) best first (heapsort: the fallback when partitioning goes badly, and the
 * finisher for short ranges). */
static void sift_down(int32_t *idx, size_t i, size_t n, const float *key)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			return;
		/* a min-heap in the "before" order puts the worst element at the root */
		if (c + 1 < n && before(key, idx[c], idx[c + 1]))
			c++;
		if (!before(key, idx[i], idx[c]))
			return;
		swap_i32(&idx[i], &idx[c]);
		i = c;
	}
}

static void sort_best_first(int32_t *idx, size_t n, const float *key)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(idx, i, n, key);
	for (size_t end = n; end > 1; end--) {
		swap_i32(&idx[0], &idx[end - 1]);
		sift_down(idx, 0, end - 1, key);
	}
}

/* Partitions idx[lo..hi) (hi - lo >= 3) around a median-of-three pivot; returns the pivot's
 * final position p: idx[lo..p) come before it, idx[p+1..hi) after it. */
static size_t partition(int32_t *idx, size_t lo, size_t hi, const float *key)
{
	size_t mid = lo + (hi - lo) / 2, last = hi - 1;
	if (before(key, idx[mid], idx[lo]))
		swap_i32(&idx[mid], &idx[lo]);
	if (before(key, idx[last], idx[lo]))
		swap_i32(&idx[last], &idx[lo]);
	if (before(key, idx[last], idx[mid]))
		swap_i32(&idx[last], &idx[mid]);
	swap_i32(&idx[mid], &idx[last]);  /* the median is the pivot, parked at the end */
	int32_t pivot = idx[last];
	size_t store = lo;
	for (size_t i = lo; i < last; i++)
		if (before(key, idx[i], pivot))
			swap_i32(&idx[i], &idx[store++]);
	swap_i32(&idx[store], &idx[last]);
	return store;
}

/* How many partitioning rounds before falling back to heapsort (keeps the worst case
 * O(n log n) on adversarial rows). */
static size_t round_limit(size_t n)
{
	size_t lim = 16;
	while (n >>= 1)
		lim += 2;
	return lim;
}

#define SMALL_RANGE 16

/* Top-k for small k: idx[0..k) is kept as a heap with the worst of the k at its root, and
 * each later candidate costs one comparison unless it beats that root. About n
 * comparisons over sequential memory, versus quickselect's ~3n scattered ones. */
#define HEAP_K_MAX 256
static void select_top_k_heap(int32_t *idx, size_t n, size_t k, const float *key)
{
	for (size_t i = k / 2; i-- > 0;)
		sift_down(idx, i, k, key);
	for (size_t i = k; i < n; i++) {
		if (before(key, idx[i], idx[0])) {
			swap_i32(&idx[i], &idx[0]);
			sift_down(idx, 0, k, key);
		}
	}
}

/* Rearranges idx[0..n) so that idx[0..k) are the k best (in no particular order), 0 < k < n. */
static void select_top_k(int32_t *idx, size_t n, size_t k, const float *key)
{
	if (k <= HEAP_K_MAX) {
		select_top_k_heap(idx, n, k, key);
		return;
	}
	size_t lo = 0, hi = n, rounds = 0, limit = round_limit(n);
	while (hi - lo > 1) {
		if (hi - lo <= SMALL_RANGE || ++rounds > limit) {
			sort_best_first(idx + lo, hi - lo, key);
			return;
		}
		size_t p = partition(idx, lo, hi, key);
		if (p == k || p + 1 == k)
			return;
		if (p < k)
			lo = p + 1;
		else
			hi = p;
	}
}

/* Nucleus: rearranges idx[0..n) and returns cut such that idx[0..cut) is the smallest set of
 * best tokens whose weight reaches need (> 0); w is indexed by token id. Equivalent to a
 * sort followed by a cumulative sum, up to rounding, in O(n) expected. */
static size_t select_nucleus(int32_t *idx, size_t n, double need, const double *w,
			     const float *key)
{
	size_t lo = 0, hi = n, rounds = 0, limit = round_limit(n);
	double acc = 0.0;  /* weight of idx[0..lo), all known to be in the nucleus; acc < need */
	while (lo < hi) {
		if (hi - lo <= SMALL_RANGE || ++rounds > limit) {
			sort_best_first(idx + lo, hi - lo, key);
			for (size_t i = lo; i < hi; i++) {
				acc += w[idx[i]];
				if (acc >= need)
					return i + 1;
			}
			return hi;  /* rounding: the whole range was needed */
		}
		size_t p = partition(idx, lo, hi, key);
		double upper = 0.0;
		for (size_t i = lo; i < p; i++)
			upper += w[idx[i]];
		if (acc + upper >= need) {
			hi = p;
		} else if (acc + upper + w[idx[p]] >= need) {
			return p + 1;
		} else {
			acc += upper + w[idx[p]];
			lo = p + 1;
		}
	}
	return hi;
}

/* --- the transforms --------------------------------------------------------------------- */

/* Applies steps 1-5 of sampler.h to logits. Returns the number of kept tokens n (>= 1):
 * their ids are idx[0..n), their unnormalised probabilities w[id], their sum in *total. */
static size_t prepare(sampler *s, const float *logits, double *total)
{
	const size_t nv = s->n_vocab;
	float *work = s->work;
	float m = -INFINITY;
	size_t n_finite = 0;
	for (size_t i = 0; i < nv; i++) {
		float v = logits[i];
		v = v == v ? v : -INFINITY;  /* NaN -> -inf */
		work[i] = v;
		m = v > m ? v : m;
	}
	/* 1. repetition penalty, once per distinct token in the window */
	if (s->p.repeat_penalty != 1.0f && s->hist_len) {
		float pen = s->p.repeat_penalty;
		for (size_t j = 0; j < s->hist_len; j++) {
			int32_t t = s->hist[j];
			if (s->mark[t])
				continue;
			s->mark[t] = 1;
			work[t] = work[t] > 0.0f ? work[t] / pen : work[t] * pen;
		}
		for (size_t j = 0; j < s->hist_len; j++)
			s->mark[s->hist[j]] = 0;
		m = -INFINITY;  /* the penalty may have lowered the maximum */
		for (size_t i = 0; i < nv; i++)
			m = work[i] > m ? work[i] : m;
	}
	if (m == -INFINITY) {  /* nothing finite: equal logits */
		for (size_t i = 0; i < nv; i++)
			work[i] = 0.0f;
		m = 0.0f;
	} else if (m == INFINITY) {  /* only the +inf tokens, equally likely */
		for (size_t i = 0; i < nv; i++)
			work[i] = work[i] == INFINITY ? 0.0f : -INFINITY;
		m = 0.0f;
	}

	/* greedy: the first maximum is the lowest id among ties */
	if (!(s->p.temperature > 0.0f)) {
		size_t best = 0;
		for (size_t i = 0; i < nv; i++)
			if (work[i] == m) {
				best = i;
				break;
			}
		s->idx[0] = (int32_t)best;
		s->w[best] = 1.0;
		*total = 1.0;
		return 1;
	}

	for (size_t i = 0; i < nv; i++)
		n_finite += work[i] > -INFINITY;
	/* Without top-k, tokens that top-p or min-p are sure to drop are skipped before any
	 * exp (real logit rows are peaked, so this is most of the vocabulary). Both rules are
	 * exact, with a margin of 1e-3 in log space so that rounding never skips a survivor:
	 *   min-p drops w < min_p (w = exp((l - m) / T), the maximum has w = 1);
	 *   top-p drops every w < (1 - top_p) / n: these are the smallest weights and together
	 *   hold less than (1 - top_p) of the mass (W >= 1), so the tokens before them already
	 *   reach top_p of it. */
	float cutoff = -INFINITY;
	if (!(s->p.top_k > 0 && (size_t)s->p.top_k < n_finite)) {
		double lt = -INFINITY;
		if (s->p.top_p > 0.0f && s->p.top_p < 1.0f)
			lt = log((1.0 - (double)s->p.top_p) / (double)n_finite);
		if (s->p.min_p > 0.0f && log((double)s->p.min_p) > lt)
			lt = log((double)s->p.min_p);
		double c = (double)m + (double)s->p.temperature * (lt - 1e-3);
		if (c > -FLT_MAX)
			cutoff = (float)c;
	}
	size_t n = 0;
	for (size_t i = 0; i < nv; i++)
		if (work[i] > -INFINITY && work[i] >= cutoff)
			s->idx[n++] = (int32_t)i;

	/* 2. top-k */
	if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
		select_top_k(s->idx, n, (size_t)s->p.top_k, work);
		n = (size_t)s->p.top_k;
	}

	/* 3. temperature + softmax weights; the maximum m is always kept and has weight 1 */
	/* expf: float precision is plenty for a probability, and it is several times faster
	 * than exp over a whole vocabulary; sums are still taken in double */
	double sum = 0.0;
	float inv_t = 1.0f / s->p.temperature;
	if (isinf(inv_t))  /* temperature below ~3e-39: everything but the maxima vanishes */
		inv_t = FLT_MAX;
	for (size_t i = 0; i < n; i++) {
		int32_t t = s->idx[i];
		double wt = expf((work[t] - m) * inv_t);
		s->w[t] = wt;
		sum += wt;
	}

	/* 4. top-p */
	if (s->p.top_p < 1.0f && n > 1) {
		if (s->p.top_p <= 0.0f) {
			select_top_k(s->idx, n, 1, work);
			n = 1;
		} else {
			n = select_nucleus(s->idx, n, (double)s->p.top_p * sum, s->w, work);
		}
		sum = 0.0;
		for (size_t i = 0; i < n; i++)
			sum += s->w[s->idx[i]];
	}

	/* 5. min-p, relative to the largest weight (1.0, the maximum's) */
	if (s->p.min_p > 0.0f && n > 1) {
		double thresh = (double)s->p.min_p;
		size_t kept = 0;
		sum = 0.0;
		for (size_t i = 0; i < n; i++) {
			int32_t t = s->idx[i];
			if (s->w[t] >= thresh) {
				s->idx[kept++] = t;
				sum += s->w[t];
			}
		}
		n = kept;  /* >= 1: the maximum has weight 1 >= min_p */
	}
	*total = sum;
	return n;
}

/* Draws from idx[0..n) with weights w[id] summing to total; never picks a zero weight. */
static int32_t draw(sampler *s, size_t n, double total)
{
	double u = sampler_uniform(s) * total, acc = 0.0;
	int32_t last = s->idx[0];
	for (size_t i = 0; i < n; i++) {
		int32_t t = s->idx[i];
		double wt = s->w[t];
		if (wt <= 0.0)
			continue;
		acc += wt;
		last = t;
		if (acc > u)
			return t;
	}
	return last;  /* rounding left u at or above the final sum */
}

int32_t sampler_sample(sampler *s, const float *logits)
{
	double total;
	size_t n = prepare(s, logits, &total);
	if (!(s->p.temperature > 0.0f))
		return s->idx[0];
	return draw(s, n, total);  /* one uniform per call even when n == 1: streams stay aligned */
}

void sampler_probs(sampler *s, const float *logits, float *probs)
{
	double total;
	size_t n = prepare(s, logits, &total);
	memset(probs, 0, s->n_vocab * sizeof *probs);
	for (size_t i = 0; i < n; i++) {
		int32_t t = s->idx[i];
		probs[t] = (float)(s->w[t] / total);
	}
}

int32_t sampler_sample_weights(sampler *s, const float *weights, size_t n)
{
	double total = 0.0;
	for (size_t i = 0; i < n; i++)
		if (weights[i] > 0.0f && isfinite(weights[i]))
			total += weights[i];
	if (!(total > 0.0))
		return -1;
	double u = sampler_uniform(s) * total, acc = 0.0;
	int32_t last = -1;
	for (size_t i = 0; i < n; i++) {
		if (!(weights[i] > 0.0f && isfinite(weights[i])))
			continue;
		acc += weights[i];
		last = (int32_t)i;
		if (acc > u)
			return last;
	}
	return last;
}
