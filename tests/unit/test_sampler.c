/* test_sampler.c: the sampler against plain references: argmax, sorted top-k / top-p /
 * min-p written the obvious way, softmax(logits / T) checked by chi-square over seeded
 * draws, the repetition penalty, reproducibility and the edge cases of sampler.h. */
#include "../test.h"

#include "../../core/engine/sampler.h"

static uint64_t seed0 = 0x5eed5a3b1e2024ull;

static sampler *make(size_t n_vocab, sampler_params p)
{
	sampler *s = NULL;
	os_error err;
	if (sampler_new(&s, n_vocab, &p, &err) != OS_OK) {
		printf("  sampler_new: %s\n", os_error_text(&err));
		return NULL;
	}
	return s;
}

static void rand_logits(float *x, size_t n, float scale, uint64_t *st)
{
	for (size_t i = 0; i < n; i++)
		x[i] = scale * test_rand_float(st);
}

static size_t argmax_ref(const float *x, size_t n)
{
	size_t b = 0;
	for (size_t i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return b;
}

/* The expected distribution, the slow obvious way: sort (logit desc, id asc), cut top-k,
 * softmax at T in double, cumulative cut at top_p, min-p, renormalise. x already penalised. */
static const float *cmp_key;
static int cmp_desc(const void *a, const void *b)
{
	int ia = *(const int *)a, ib = *(const int *)b;
	if (cmp_key[ia] != cmp_key[ib])
		return cmp_key[ia] > cmp_key[ib] ? -1 : 1;
	return ia < ib ? -1 : 1;
}

static void probs_ref(const float *x, size_t n, double T, int top_k, double top_p,
		      double min_p, double *out)
{
	int *ord = malloc(n * sizeof *ord);
	double *w = malloc(n * sizeof *w);
	for (size_t i = 0; i < n; i++)
		ord[i] = (int)i;
	cmp_key = x;
	qsort(ord, n, sizeof *ord, cmp_desc);
	size_t k = n;
	if (top_k > 0 && (size_t)top_k < n)
		k = (size_t)top_k;
	double sum = 0;
	for (size_t i = 0; i < k; i++) {
		w[i] = exp(((double)x[ord[i]] - (double)x[ord[0]]) / T);
		sum += w[i];
	}
	if (top_p < 1.0) {
		double acc = 0;
		size_t i = 0;
		for (; i < k; i++) {
			acc += w[i] / sum;
			if (acc >= top_p)
				break;
		}
		k = i + 1 < k ? i + 1 : k;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = 0;
	sum = 0;
	for (size_t i = 0; i < k; i++)
		if (w[i] >= min_p * w[0])
			sum += w[i];
	for (size_t i = 0; i < k; i++)
		if (w[i] >= min_p * w[0])
			out[ord[i]] = w[i] / sum;
	free(ord);
	free(w);
}

/* Upper chi-square quantile for dof degrees of freedom at a one-sided tail of about 1e-6
 * (Wilson-Hilferty, z = 4.75): a correct sampler fails with probability ~1e-6 per check,
 * and the draws are seeded, so the outcome is fixed. */
static double chi2_bound(int dof)
{
	double k = dof, z = 4.75, a = 2.0 / (9.0 * k);
	double c = 1.0 - a + z * sqrt(a);
	return k * c * c * c;
}

/* Pearson chi-square of counts against expected probabilities (cells with p == 0 must have
 * no counts at all: returns INFINITY otherwise). *dof receives (cells with p > 0) - 1. */
static double chi2_stat(const long *cnt, const double *p, size_t n, long draws, int *dof)
{
	double x = 0;
	int cells = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] <= 0) {
			if (cnt[i])
				return INFINITY;
			continue;
		}
		double e = p[i] * (double)draws;
		x += ((double)cnt[i] - e) * ((double)cnt[i] - e) / e;
		cells++;
	}
	*dof = cells - 1;
	return x;
}

TEST(greedy_picks_argmax)
{
	uint64_t st = seed0 ^ 1;
	size_t sizes[] = {1, 3, 7, 17, 129, 1000, 49152};
	sampler_params p = sampler_params_default();
	p.temperature = 0;
	for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
		size_t n = sizes[si];
		float *x = malloc(n * sizeof *x);
		sampler *s = make(n, p);
		CHECK(x && s);
		for (int r = 0; r < 5; r++) {
			rand_logits(x, n, 8.0f, &st);
			CHECK_EQ_INT(sampler_sample(s, x), argmax_ref(x, n));
		}
		/* ties: the lowest id wins */
		if (n >= 3) {
			float mx = x[argmax_ref(x, n)];
			x[n - 1] = mx + 1;
			x[n / 2] = mx + 1;
			CHECK_EQ_INT(sampler_sample(s, x), n / 2);
		}
		free(x);
		sampler_free(s);
	}
}

TEST(top_k_1_is_greedy)
{
	uint64_t st = seed0 ^ 2;
	size_t n = 5003;
	float x[5003];
	sampler_params p = sampler_params_default();
	p.top_k = 1;
	p.temperature = 1.3f;
	p.seed = 99;
	sampler *s = make(n, p);
	CHECK(s);
	for (int r = 0; r < 50; r++) {
		rand_logits(x, n, 3.0f, &st);
		CHECK_EQ_INT(sampler_sample(s, x), argmax_ref(x, n));
	}
	sampler_free(s);
}

TEST(reproducible_with_seed)
{
	uint64_t st = seed0 ^ 3;
	enum { N = 1000, STEPS = 200 };
	static float rows[STEPS][N];
	for (int r = 0; r < STEPS; r++)
		rand_logits(rows[r], N, 4.0f, &st);
	sampler_params p = sampler_params_default();
	p.temperature = 0.9f;
	p.top_k = 40;
	p.top_p = 0.95f;
	p.repeat_penalty = 1.1f;
	p.seed = 1234;
	sampler *a = make(N, p), *b = make(N, p);
	p.seed = 1235;
	sampler *c = make(N, p);
	CHECK(a && b && c);
	int32_t ta[STEPS];
	int differs = 0;
	for (int r = 0; r < STEPS; r++) {
		ta[r] = sampler_sample(a, rows[r]);
		int32_t tb = sampler_sample(b, rows[r]);
		int32_t tc = sampler_sample(c, rows[r]);
		CHECK_EQ_INT(ta[r], tb);
		differs |= tc != ta[r];
		sampler_accept(a, ta[r]);
		sampler_accept(b, tb);
		sampler_accept(c, tc);
	}
	CHECK_MSG(differs, "seed 1235 gave the same %d tokens as seed 1234", STEPS);
	/* reset = fresh sampler with that seed */
	sampler_reset(c, 1234);
	for (int r = 0; r < STEPS; r++) {
		int32_t t = sampler_sample(c, rows[r]);
		CHECK_EQ_INT(t, ta[r]);
		sampler_accept(c, t);
	}
	sampler_free(a);
	sampler_free(b);
	sampler_free(c);
}

/* Draws `draws` tokens and checks them against expected by chi-square; what names the
 * case in the failure line (NULL: quiet, for checks that are expected to fail). */
static int check_frequencies(sampler *s, const float *x, const double *expect, size_t n,
			     long draws, const char *what)
{
	long cnt[64] = {0};
	for (long d = 0; d < draws; d++) {
		int32_t t = sampler_sample(s, x);
		if (t < 0 || (size_t)t >= n) {
			printf("  %s: token %d out of range\n", what ? what : "", t);
			return 0;
		}
		cnt[t]++;
	}
	int dof;
	double chi = chi2_stat(cnt, expect, n, draws, &dof);
	double bound = dof > 0 ? chi2_bound(dof) : 0;
	if (!(chi <= bound)) {
		if (what)
			printf("  %s: chi-square %.2f > %.2f (dof %d)\n", what, chi, bound, dof);
		return 0;
	}
	return 1;
}

TEST(frequencies_match_softmax)
{
	uint64_t st = seed0 ^ 4;
	printf("  seed %llu\n", (unsigned long long)(seed0 ^ 4));
	enum { N = 8 };
	float x[N];
	double e[N];
	rand_logits(x, N, 2.0f, &st);
	const float temps[] = {0.7f, 1.0f, 2.5f};
	for (size_t ti = 0; ti < 3; ti++) {
		sampler_params p = sampler_params_default();
		p.temperature = temps[ti];
		p.seed = 77 + ti;
		sampler *s = make(N, p);
		CHECK(s);
		probs_ref(x, N, temps[ti], 0, 1, 0, e);
		int ok = check_frequencies(s, x, e, N, 200000, "softmax(x/T)");
		/* the same draws against the T = 1 distribution must be rejected (test power) */
		if (temps[ti] != 1.0f) {
			double e1[N];
			probs_ref(x, N, 1.0, 0, 1, 0, e1);
			sampler_reset(s, 5);
			int wrong_ok = check_frequencies(s, x, e1, N, 200000, NULL);
			CHECK_MSG(!wrong_ok, "T=%g draws pass as T=1", (double)temps[ti]);
		}
		sampler_free(s);
		CHECK_MSG(ok, "T=%g", (double)temps[ti]);
	}
}

TEST(frequencies_with_all_transforms)
{
	/* draws follow sampler_probs, and sampler_probs follows the sorted reference */
	uint64_t st = seed0 ^ 5;
	enum { N = 13 };
	float x[N], pr[N];
	double e[N];
	rand_logits(x, N, 3.0f, &st);
	sampler_params p = sampler_params_default();
	p.temperature = 0.8f;
	p.top_k = 9;
	p.top_p = 0.9f;
	p.min_p = 0.05f;
	p.seed = 31337;
	sampler *s = make(N, p);
	CHECK(s);
	probs_ref(x, N, 0.8, 9, 0.9, 0.05, e);
	sampler_probs(s, x, pr);
	double sum = 0;
	int kept = 0;
	for (int i = 0; i < N; i++) {
		CHECK_NEAR(pr[i], e[i], 1e-6);
		sum += pr[i];
		kept += pr[i] > 0;
	}
	CHECK_NEAR(sum, 1.0, 1e-6);
	CHECK_MSG(kept > 1 && kept < 9, "kept %d: the test should exercise the cuts", kept);
	CHECK(check_frequencies(s, x, e, N, 200000, "top-k+T+top-p+min-p"));
	sampler_free(s);
}

TEST(top_p_excludes_tail_exactly)
{
	/* probabilities 1/2, 1/4, 1/8, ... scattered over 37 ids */
	enum { N = 37 };
	float x[N];
	int pos[N];
	uint64_t st = seed0 ^ 6;
	for (int i = 0; i < N; i++)
		pos[i] = i;
	for (int i = N - 1; i > 0; i--) {
		int j = (int)(test_rand_next(&st) % (uint64_t)(i + 1));
		int t = pos[i];
		pos[i] = pos[j];
		pos[j] = t;
	}
	for (int r = 0; r < N; r++)
		x[pos[r]] = (float)(-r * log(2.0));
	/* cumulative: .5 .75 .875 .9375 ... ; top_p 0.8 keeps 3, 0.75 keeps 2, 0.9 keeps 4 */
	const float tps[] = {0.8f, 0.75f, 0.9f, 0.3f};
	const int keep[] = {3, 2, 4, 1};
	for (int c = 0; c < 4; c++) {
		sampler_params p = sampler_params_default();
		p.top_p = tps[c];
		sampler *s = make(N, p);
		CHECK(s);
		float pr[N];
		sampler_probs(s, x, pr);
		double kept_mass = 1.0 - ldexp(1.0, -keep[c]);
		for (int r = 0; r < N; r++) {
			double want = r < keep[c] ? ldexp(1.0, -(r + 1)) / kept_mass : 0.0;
			CHECK_NEAR(pr[pos[r]], want, 1e-6);
			if (r >= keep[c])
				CHECK(pr[pos[r]] == 0.0f);
		}
		sampler_free(s);
	}
}

TEST(top_k_top_p_large_vocab_match_sorted_reference)
{
	/* the selection code against qsort at vocabulary sizes where partitioning runs many
	 * rounds, with many tied logits (rounded to a coarse grid) to exercise tie-breaking */
	uint64_t st = seed0 ^ 7;
	printf("  seed %llu\n", (unsigned long long)(seed0 ^ 7));
	size_t sizes[] = {17, 129, 1031, 49152};
	for (size_t si = 0; si < 4; si++) {
		size_t n = sizes[si];
		float *x = malloc(n * sizeof *x), *pr = malloc(n * sizeof *pr);
		double *e = malloc(n * sizeof *e);
		CHECK(x && pr && e);
		for (int r = 0; r < 6; r++) {
			rand_logits(x, n, 10.0f, &st);
			if (r & 1)
				for (size_t i = 0; i < n; i++)
					x[i] = roundf(x[i] * 4) / 4;  /* ties */
			sampler_params p = sampler_params_default();
			p.temperature = 0.5f + (float)r * 0.3f;
			p.top_k = (r % 3 == 0) ? 0 : (int)(n / 3 + 1);
			p.top_p = r == 5 ? 1.0f : 0.6f + 0.07f * (float)r;
			p.min_p = r == 4 ? 0.02f : 0.0f;
			sampler *s = make(n, p);
			CHECK(s);
			sampler_probs(s, x, pr);
			probs_ref(x, n, p.temperature, p.top_k, p.top_p, p.min_p, e);
			for (size_t i = 0; i < n; i++)
				CHECK_MSG(fabs(pr[i] - e[i]) <= 1e-6 && ((pr[i] > 0) == (e[i] > 0)),
					  "n %zu case %d id %zu: %.9g vs %.9g", n, r, i, (double)pr[i],
					  e[i]);
			sampler_free(s);
		}
		free(x);
		free(pr);
		free(e);
	}
}

TEST(min_p_threshold)
{
	enum { N = 10 };
	/* logits log(w); min_p .1 keeps w >= .1 (0.099 and 0.101 straddle the threshold) */
	const double w[N] = {0.04, 1.0, 0.12, 0.5, 0.01, 0.2, 0.05, 0.099, 0.101, 0.002};
	float x[N], pr[N];
	for (int i = 0; i < N; i++)
		x[i] = (float)log(w[i]);
	sampler_params p = sampler_params_default();
	p.min_p = 0.1f;
	sampler *s = make(N, p);
	CHECK(s);
	sampler_probs(s, x, pr);
	double sum = 0;
	for (int i = 0; i < N; i++)
		if (w[i] >= 0.1)
			sum += w[i];
	for (int i = 0; i < N; i++)
		CHECK_NEAR(pr[i], w[i] >= 0.1 ? w[i] / sum : 0.0, 1e-6);
	CHECK(pr[7] == 0.0f && pr[8] > 0.0f);
	for (int d = 0; d < 2000; d++) {
		int32_t t = sampler_sample(s, x);
		CHECK(w[t] >= 0.1);
	}
	sampler_free(s);
}

TEST(repetition_penalty)
{
	enum { N = 11 };
	uint64_t st = seed0 ^ 8;
	float x[N], pr[N], y[N];
	double e[N];
	rand_logits(x, N, 3.0f, &st);
	x[2] = 2.0f;   /* positive, penalised: 2 / 1.5 */
	x[5] = -1.0f;  /* negative, penalised: -1 * 1.5 */
	x[7] = 2.5f;   /* old: outside the window */
	sampler_params p = sampler_params_default();
	p.repeat_penalty = 1.5f;
	p.repeat_last_n = 4;
	sampler *s = make(N, p);
	CHECK(s);
	/* history 7, then the window 2 5 2 2: 7 fell out; 2 is penalised once, not three times */
	const int32_t h[] = {7, 2, 5, 2, 2};
	for (int i = 0; i < 5; i++)
		sampler_accept(s, h[i]);
	sampler_accept(s, -3);  /* ignored */
	sampler_accept(s, N);   /* ignored */
	memcpy(y, x, sizeof y);
	y[2] = 2.0f / 1.5f;
	y[5] = -1.5f;
	sampler_probs(s, x, pr);
	probs_ref(y, N, 1.0, 0, 1, 0, e);
	for (int i = 0; i < N; i++)
		CHECK_NEAR(pr[i], e[i], 1e-6);
	sampler_free(s);

	/* greedy: the penalty moves the argmax off a repeated token */
	float g[4] = {1.0f, 3.0f, 2.5f, -1.0f};
	p.temperature = 0;
	p.repeat_penalty = 1.3f;
	p.repeat_last_n = 8;
	s = make(4, p);
	CHECK(s);
	CHECK_EQ_INT(sampler_sample(s, g), 1);
	sampler_accept(s, 1);
	CHECK_EQ_INT(sampler_sample(s, g), 2);
	sampler_reset(s, 0);
	CHECK_EQ_INT(sampler_sample(s, g), 1);
	sampler_free(s);
}

TEST(temperature_zero_is_greedy)
{
	uint64_t st = seed0 ^ 9;
	enum { N = 300 };
	float x[N], pr[N];
	sampler_params p = sampler_params_default();
	p.temperature = 0;
	p.top_k = 5;
	p.top_p = 0.5f;
	p.min_p = 0.3f;
	p.seed = 4;
	sampler *s = make(N, p);
	p.temperature = -1;
	sampler *s2 = make(N, p);
	CHECK(s && s2);
	for (int r = 0; r < 20; r++) {
		rand_logits(x, N, 5.0f, &st);
		size_t am = argmax_ref(x, N);
		CHECK_EQ_INT(sampler_sample(s, x), am);
		CHECK_EQ_INT(sampler_sample(s2, x), am);
		sampler_probs(s, x, pr);
		for (int i = 0; i < N; i++)
			CHECK(pr[i] == ((size_t)i == am ? 1.0f : 0.0f));
	}
	/* greedy drew no random numbers: the stream is where a fresh seed-4 stream starts */
	sampler_params q = sampler_params_default();
	q.seed = 4;
	sampler *f = make(N, q);
	CHECK(f);
	CHECK(sampler_uniform(s) == sampler_uniform(f));
	sampler_free(s);
	sampler_free(s2);
	sampler_free(f);
}

TEST(edge_cases)
{
	sampler_params p = sampler_params_default();
	p.seed = 11;
	float pr[6];

	/* vocab 1 */
	sampler *s = make(1, p);
	CHECK(s);
	float one = -5.0f;
	for (int i = 0; i < 10; i++)
		CHECK_EQ_INT(sampler_sample(s, &one), 0);
	sampler_probs(s, &one, pr);
	CHECK(pr[0] == 1.0f);
	sampler_free(s);

	/* all equal: uniform; greedy picks 0 */
	float eq[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
	s = make(6, p);
	CHECK(s);
	sampler_probs(s, eq, pr);
	for (int i = 0; i < 6; i++)
		CHECK_NEAR(pr[i], 1.0 / 6, 1e-7);
	double u6[6] = {1. / 6, 1. / 6, 1. / 6, 1. / 6, 1. / 6, 1. / 6};
	CHECK(check_frequencies(s, eq, u6, 6, 60000, "all equal"));
	sampler_free(s);
	p.temperature = 0;
	s = make(6, p);
	CHECK(s);
	CHECK_EQ_INT(sampler_sample(s, eq), 0);
	sampler_free(s);
	p.temperature = 1;

	/* -inf and NaN logits are never drawn */
	float ni[6] = {-INFINITY, 1.0f, NAN, -INFINITY, 0.0f, -INFINITY};
	s = make(6, p);
	CHECK(s);
	sampler_probs(s, ni, pr);
	CHECK(pr[0] == 0 && pr[2] == 0 && pr[3] == 0 && pr[5] == 0);
	CHECK_NEAR(pr[1], exp(1.0) / (exp(1.0) + 1.0), 1e-6);
	for (int i = 0; i < 5000; i++) {
		int32_t t = sampler_sample(s, ni);
		CHECK(t == 1 || t == 4);
	}

	/* all -inf: uniform over the vocabulary */
	float allni[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, NAN};
	sampler_probs(s, allni, pr);
	for (int i = 0; i < 6; i++)
		CHECK_NEAR(pr[i], 1.0 / 6, 1e-7);

	/* +inf: only those, equally likely */
	float pi[6] = {3.0f, INFINITY, 0.0f, INFINITY, -INFINITY, 100.0f};
	sampler_probs(s, pi, pr);
	for (int i = 0; i < 6; i++)
		CHECK_NEAR(pr[i], (i == 1 || i == 3) ? 0.5 : 0.0, 1e-7);
	sampler_free(s);

	/* huge logit gaps and a tiny temperature: no overflow, the max gets all the mass */
	float big[6] = {1e30f, -1e30f, 1e30f, 3e38f, -3e38f, 0.0f};
	p.temperature = 1e-6f;
	s = make(6, p);
	CHECK(s);
	sampler_probs(s, big, pr);
	CHECK(pr[3] == 1.0f);
	for (int i = 0; i < 100; i++)
		CHECK_EQ_INT(sampler_sample(s, big), 3);
	sampler_free(s);

	/* top_p <= 0 keeps the most likely token only */
	p.temperature = 1;
	p.top_p = 0;
	s = make(6, p);
	CHECK(s);
	for (int i = 0; i < 100; i++)
		CHECK_EQ_INT(sampler_sample(s, ni), 1);
	sampler_free(s);
}

TEST(sample_weights_and_uniform)
{
	sampler_params p = sampler_params_default();
	p.seed = 8;
	sampler *s = make(4, p);
	CHECK(s);
	float w[5] = {0.2f, 0.0f, 0.5f, -1.0f, 0.3f};
	double e[5] = {0.2, 0, 0.5, 0, 0.3};
	long cnt[5] = {0};
	for (int d = 0; d < 100000; d++) {
		int32_t t = sampler_sample_weights(s, w, 5);
		CHECK(t >= 0 && t < 5);
		cnt[t]++;
	}
	int dof;
	double chi = chi2_stat(cnt, e, 5, 100000, &dof);
	CHECK_MSG(chi <= chi2_bound(dof), "chi-square %.2f", chi);
	float z[3] = {0.0f, -2.0f, NAN};
	CHECK_EQ_INT(sampler_sample_weights(s, z, 3), -1);
	CHECK_EQ_INT(sampler_sample_weights(s, z, 0), -1);
	double mean = 0;
	for (int i = 0; i < 100000; i++) {
		double u = sampler_uniform(s);
		CHECK(u >= 0.0 && u < 1.0);
		mean += u;
	}
	CHECK_NEAR(mean / 100000, 0.5, 0.005);
	sampler_free(s);
}

TEST(bad_parameters)
{
	sampler *s = (sampler *)1;
	os_error err;
	sampler_params p = sampler_params_default();
	CHECK_EQ_INT(sampler_new(&s, 0, &p, &err), OS_ERANGE);
	CHECK(s == NULL);
	CHECK(strstr(err.msg, "n_vocab"));
	p.repeat_penalty = 0;
	CHECK_EQ_INT(sampler_new(&s, 10, &p, &err), OS_ERANGE);
	CHECK(strstr(err.msg, "repeat_penalty"));
	p = sampler_params_default();
	p.temperature = NAN;
	CHECK_EQ_INT(sampler_new(&s, 10, &p, &err), OS_ERANGE);
	CHECK(strstr(err.msg, "temperature"));
	p = sampler_params_default();
	p.min_p = 1.5f;
	CHECK_EQ_INT(sampler_new(&s, 10, &p, &err), OS_ERANGE);
	CHECK(strstr(err.msg, "min_p"));
	sampler_free(NULL);
}

int main(void)
{
	RUN(greedy_picks_argmax);
	RUN(top_k_1_is_greedy);
	RUN(reproducible_with_seed);
	RUN(frequencies_match_softmax);
	RUN(frequencies_with_all_transforms);
	RUN(top_p_excludes_tail_exactly);
	RUN(top_k_top_p_large_vocab_match_sorted_reference);
	RUN(min_p_threshold);
	RUN(repetition_penalty);
	RUN(temperature_zero_is_greedy);
	RUN(edge_cases);
	RUN(sample_weights_and_uniform);
	RUN(bad_parameters);
	return test_summary();
}
