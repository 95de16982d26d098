/* test_loadgen.c: the load generator on the fixture model: every request gets exactly O
 * tokens; continuous batching (chunked or whole prefill, any concurrency, KV pressure) gives
 * each request the same greedy tokens as running it alone; concurrency is never exceeded;
 * refused requests are errors, not hangs; stop; the client side against a fake target;
 * percentiles on known arrays. */
#include <unistd.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/eval/loadgen.h"
#include "core/eval/metrics.h"
#include "core/format/fixture.h"
#include "tests/test.h"

static char dir[64], path[128];
static backend *be;
static model *m;
static int32_t *corpus;
static size_t n_corpus;
static uint64_t seed;

/* KV capacity in positions of 16-token blocks. */
static engine *new_engine(size_t kv_blocks)
{
	const model_config *c = model_get_config(m);
	size_t per_pos = 2 * c->n_layers * c->n_kv_heads * c->head_dim * sizeof(float);
	engine_opts eo = {.kv_bytes = kv_blocks * KV_DEFAULT_BLOCK_TOKENS * per_pos};
	engine *e = NULL;
	os_error err;
	if (engine_new(&e, m, be, &eo, &err))
		printf("  engine_new: %s\n", err.msg);
	return e;
}

/* Collects the tokens of each measured request: toks[r * O + i], counts per request. */
typedef struct collect {
	size_t O, n_req;
	int32_t *toks;
	size_t *count;
	size_t n_progress;
	size_t stop_after;  /* 0: never */
} collect;

static void on_token(void *ctx, size_t r, size_t i, int32_t tok)
{
	collect *c = ctx;
	if (r < c->n_req && i < c->O)
		c->toks[r * c->O + i] = tok;
	if (r < c->n_req)
		c->count[r]++;
}

static void on_progress(void *ctx, size_t done, size_t total)
{
	collect *c = ctx;
	(void)done;
	(void)total;
	c->n_progress++;
}

static bool should_stop(void *ctx)
{
	collect *c = ctx;
	return c->stop_after && c->n_progress >= c->stop_after;
}

static collect collect_new(size_t n_req, size_t O)
{
	collect c = {.O = O, .n_req = n_req};
	c.toks = calloc(n_req * O, sizeof *c.toks);
	c.count = calloc(n_req, sizeof *c.count);
	return c;
}

static void collect_free(collect *c)
{
	free(c->toks);
	free(c->count);
}

/* Runs one level on a fresh engine + target; fills *c and *lv, *st. */
static int run(size_t kv_blocks, const loadgen_engine_opts *eo, loadgen_opts o, collect *c,
	       loadgen_level *lv, loadgen_engine_stats *st, os_error *err)
{
	engine *e = new_engine(kv_blocks);
	if (!e)
		return OS_EINTERNAL;
	loadgen_engine_target *t = NULL;
	int rc = loadgen_engine_target_new(&t, e, eo, err);
	if (rc) {
		engine_free(e);
		return rc;
	}
	loadgen_target it = loadgen_engine_target_iface(t);
	o.corpus = corpus;
	o.n_corpus = n_corpus;
	o.on_token = on_token;
	o.progress = on_progress;
	o.should_stop = should_stop;
	o.cb_ctx = c;
	rc = loadgen_run_level(&it, &o, lv, err);
	loadgen_engine_target_stats(t, st);
	/* every sequence returned, whatever happened */
	if (kv_cache_n_free_blocks(engine_kv(e)) != kv_cache_n_blocks(engine_kv(e))) {
		printf("  KV blocks leaked: %zu of %zu free\n", kv_cache_n_free_blocks(engine_kv(e)),
		       kv_cache_n_blocks(engine_kv(e)));
		rc = rc ? rc : OS_EINTERNAL;
	}
	loadgen_engine_target_free(t);
	engine_free(e);
	return rc;
}

/* The reference: each request alone, one at a time, whole prefill. */
static int run_alone(loadgen_opts o, collect *ref, os_error *err)
{
	o.concurrency = 1;
	o.n_warmup = 0;
	loadgen_engine_opts eo = {.whole_prefill = true, .step_tokens = 512};
	loadgen_level lv;
	loadgen_engine_stats st;
	return run(256, &eo, o, ref, &lv, &st, err);
}

TEST(test_exact_tokens)
{
	const size_t N = 7, O = 9;
	collect c = collect_new(N, O);
	loadgen_opts o = {.concurrency = 3, .n_requests = N, .n_warmup = 2, .input_tokens = 13,
			  .output_tokens = O, .seed = seed};
	loadgen_engine_opts eo = {.step_tokens = 16}; /* 3 x 13 prompt tokens: chunked */
	loadgen_level lv;
	loadgen_engine_stats st;
	os_error err;
	int rc = run(64, &eo, o, &c, &lv, &st, &err);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	for (size_t r = 0; r < N; r++)
		CHECK_MSG(c.count[r] == O, "request %zu got %zu tokens, expected %zu", r, c.count[r], O);
	CHECK_EQ_INT(lv.n_requests, N);
	CHECK_EQ_INT(lv.n_errors, 0);
	CHECK_EQ_INT(lv.total_output_tokens, N * O);
	CHECK_EQ_INT(lv.ttft_ms.n, N);
	CHECK_EQ_INT(lv.latency_ms.n, N);
	CHECK_EQ_INT(lv.itl_ms.n, N * (O - 1));
	CHECK_EQ_INT(c.n_progress, N);
	/* warm-up and measured requests all went through the engine */
	CHECK_EQ_INT(st.n_completed, N + 2);
	CHECK_EQ_INT(st.prefill_tokens, (N + 2) * 13);
	CHECK_EQ_INT(st.decode_tokens, (N + 2) * (O - 1));
	CHECK(st.max_step_tokens <= 16);
	/* timings are ordered as defined: ttft <= latency, and the figures are consistent */
	CHECK(lv.ttft_ms.min > 0 && lv.ttft_ms.max <= lv.latency_ms.max);
	CHECK(lv.wall_s > 0 && lv.measured_tok_s > 0);
	CHECK_NEAR(lv.measured_tok_s, (double)(N * O) / lv.wall_s, 1e-9 * lv.measured_tok_s);
	CHECK_NEAR(lv.total_tok_s, (double)O / (lv.latency_ms.mean / 1000) * 3,
		   1e-9 * lv.total_tok_s);
	collect_free(&c);
}

/* Same greedy tokens per request as alone, for several schedules. */
TEST(test_same_as_alone)
{
	const size_t N = 9, O = 11, I = 21;
	loadgen_opts o = {.n_requests = N, .n_warmup = 1, .input_tokens = I, .output_tokens = O,
			  .seed = seed + 1};
	collect ref = collect_new(N, O);
	os_error err;
	int rc = run_alone(o, &ref, &err);
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	struct {
		size_t C, step, kv_blocks;
		bool whole;
	} cases[] = {
		{4, 16, 64, false},   /* chunked prefill alongside decodes */
		{4, 7, 64, false},    /* awkward budget: chunks of every size */
		{5, 32, 64, true},    /* whole prefill */
		{9, 256, 64, false},  /* everything at once */
		{5, 64, 5, false},    /* KV pressure: 31 positions = 2 blocks each, 2 run at once */
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		collect c = collect_new(N, O);
		loadgen_opts oc = o;
		oc.concurrency = cases[k].C;
		loadgen_engine_opts eo = {.step_tokens = cases[k].step, .whole_prefill = cases[k].whole};
		loadgen_level lv;
		loadgen_engine_stats st;
		rc = run(cases[k].kv_blocks, &eo, oc, &c, &lv, &st, &err);
		CHECK_MSG(rc == OS_OK, "case %zu: %s", k, err.msg);
		CHECK_EQ_INT(lv.n_errors, 0);
		size_t diff = 0;
		for (size_t r = 0; r < N * O; r++)
			diff += c.toks[r] != ref.toks[r];
		CHECK_MSG(diff == 0, "case %zu (C %zu, step %zu, %s): %zu of %zu tokens differ from "
				     "running alone",
			  k, cases[k].C, cases[k].step, cases[k].whole ? "whole" : "chunked", diff, N * O);
		if (cases[k].kv_blocks == 5)
			CHECK_MSG(st.max_running == 2, "KV of 5 blocks ran %zu at once", st.max_running);
		collect_free(&c);
	}
	/* a different seed gives different prompts, so (almost surely) different outputs */
	collect other = collect_new(N, O);
	o.seed = seed + 2;
	CHECK(run_alone(o, &other, &err) == OS_OK);
	CHECK(memcmp(other.toks, ref.toks, N * O * sizeof *ref.toks) != 0);
	collect_free(&other);
	collect_free(&ref);
}

TEST(test_concurrency_bound)
{
	const size_t N = 11, O = 5;
	const size_t levels[] = {1, 2, 5, 16};
	for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
		size_t C = levels[k];
		collect c = collect_new(N, O);
		loadgen_opts o = {.concurrency = C, .n_requests = N, .n_warmup = 3, .input_tokens = 6,
				  .output_tokens = O, .seed = seed + k};
		loadgen_level lv;
		loadgen_engine_stats st;
		os_error err;
		int rc = run(128, NULL, o, &c, &lv, &st, &err);
		CHECK_MSG(rc == OS_OK, "%s", err.msg);
		size_t want = C < N ? C : N;
		CHECK_MSG(lv.max_in_flight == want, "C %zu: client had %zu in flight", C, lv.max_in_flight);
		CHECK_MSG(st.max_running <= C && st.max_running == want, "C %zu: engine ran %zu at once",
			  C, st.max_running);
		CHECK_EQ_INT(lv.n_requests, N);
		CHECK_EQ_INT(lv.concurrency, C);
		collect_free(&c);
	}
}

/* Requests the KV cache can never hold are refused (errors), and the run ends. */
TEST(test_refused_requests)
{
	const size_t N = 4;
	collect c = collect_new(N, 3);
	loadgen_opts o = {.concurrency = 2, .n_requests = N, .input_tokens = 100, .output_tokens = 3,
			  .seed = seed};
	loadgen_level lv;
	loadgen_engine_stats st;
	os_error err;
	int rc = run(4, NULL, o, &c, &lv, &st, &err); /* 4 blocks = 64 positions < 102 */
	CHECK_MSG(rc == OS_OK, "%s", err.msg);
	CHECK_EQ_INT(lv.n_errors, N);
	CHECK_EQ_INT(lv.n_requests, 0);
	CHECK_EQ_INT(c.n_progress, N);
	CHECK(isnan(lv.latency_ms.p50));
	CHECK_NEAR(lv.total_tok_s, 0, 0);
	collect_free(&c);
}

TEST(test_stop)
{
	const size_t N = 20;
	collect c = collect_new(N, 4);
	c.stop_after = 3;
	loadgen_opts o = {.concurrency = 4, .n_requests = N, .input_tokens = 5, .output_tokens = 4,
			  .seed = seed};
	loadgen_level lv;
	loadgen_engine_stats st;
	os_error err;
	int rc = run(64, NULL, o, &c, &lv, &st, &err); /* checks that no KV block leaked */
	CHECK_EQ_INT(rc, OS_ESTOPPED);
	CHECK(c.n_progress >= 3 && c.n_progress < N);
	CHECK_EQ_INT(lv.n_requests, 0); /* zeroed on failure */
	collect_free(&c);
}

TEST(test_bad_options)
{
	engine *e = new_engine(16);
	CHECK(e);
	loadgen_engine_target *t;
	os_error err;
	CHECK(loadgen_engine_target_new(&t, e, NULL, &err) == OS_OK);
	loadgen_target it = loadgen_engine_target_iface(t);
	loadgen_level lv;
	loadgen_opts o = {.concurrency = 0, .n_requests = 1, .input_tokens = 1, .output_tokens = 1,
			  .corpus = corpus, .n_corpus = n_corpus};
	CHECK(loadgen_run_level(&it, &o, &lv, &err) == OS_EUSAGE);
	o.concurrency = 1;
	o.n_corpus = 0;
	CHECK(loadgen_run_level(&it, &o, &lv, &err) == OS_EUSAGE);
	/* a prompt token outside the vocabulary is refused at submit */
	int32_t bad[2] = {1, (int32_t)model_n_vocab(m)};
	loadgen_request r = {.id = 1, .prompt = bad, .n_prompt = 2, .n_output = 1};
	CHECK(it.submit(it.ctx, &r, &err) == OS_EUSAGE);
	CHECK(strstr(err.msg, "token 1") != NULL);
	loadgen_engine_target_free(t);
	engine_free(e);
}

/* Prompts are a pure function of (seed, index, corpus), cut from the corpus. */
TEST(test_prompts)
{
	loadgen_opts o = {.input_tokens = 17, .seed = seed, .corpus = corpus, .n_corpus = n_corpus};
	int32_t a[17], b[17];
	size_t n_same = 0;
	for (uint64_t i = 0; i < 50; i++) {
		loadgen_make_prompt(&o, i, a);
		loadgen_make_prompt(&o, i, b);
		CHECK(memcmp(a, b, sizeof a) == 0);
		/* a contiguous window of the corpus */
		size_t off = 0;
		while (off + 17 <= n_corpus && memcmp(corpus + off, a, sizeof a) != 0)
			off++;
		CHECK_MSG(off + 17 <= n_corpus, "prompt %llu is not a window of the corpus",
			  (unsigned long long)i);
		loadgen_make_prompt(&o, i + 1, b);
		n_same += memcmp(a, b, sizeof a) == 0;
	}
	CHECK(n_same < 3);
	/* a corpus shorter than the prompt wraps around */
	int32_t small[3] = {5, 6, 7}, w[8];
	loadgen_opts s = {.input_tokens = 8, .seed = 1, .corpus = small, .n_corpus = 3};
	loadgen_make_prompt(&s, 0, w);
	for (size_t k = 1; k < 8; k++)
		CHECK(w[k] == small[((size_t)(w[0] - 5) + k) % 3]);
}

/* ---- the client side against a fake target (no engine) -------------------------------- */

/* Emits one token per in-flight request per step; requests whose id is odd finish one
 * token short (the client must count them as errors); id 4 fails outright. */
typedef struct fake {
	uint64_t ids[8];
	size_t left[8], n_out[8];
	size_t n;
	loadgen_event ev[64];
	size_t n_ev;
	size_t max_n;
} fake;

static int fake_submit(void *ctx, const loadgen_request *r, os_error *err)
{
	fake *f = ctx;
	if (f->n == 8)
		return os_error_set(err, OS_EBUSY, "full");
	f->ids[f->n] = r->id;
	f->left[f->n] = r->id % 2 ? r->n_output - 1 : r->n_output;
	f->n_out[f->n] = r->n_output;
	f->n++;
	if (f->n > f->max_n)
		f->max_n = f->n;
	return OS_OK;
}

static int fake_step(void *ctx, os_error *err)
{
	(void)err;
	fake *f = ctx;
	size_t w = 0;
	for (size_t i = 0; i < f->n; i++) {
		if (f->ids[i] == 4) {
			f->ev[f->n_ev++] = (loadgen_event){.request = 4, .kind = LOADGEN_EV_ERROR,
							   .rc = OS_EIO};
			continue;
		}
		if (f->left[i] > 0) {
			f->ev[f->n_ev++] = (loadgen_event){.request = f->ids[i], .kind = LOADGEN_EV_TOKEN,
							   .token = (int32_t)f->left[i]};
			f->left[i]--;
		}
		if (f->left[i] == 0) {
			f->ev[f->n_ev++] = (loadgen_event){.request = f->ids[i], .kind = LOADGEN_EV_DONE};
			continue;
		}
		f->ids[w] = f->ids[i];
		f->left[w] = f->left[i];
		f->n_out[w] = f->n_out[i];
		w++;
	}
	f->n = w;
	return OS_OK;
}

static size_t fake_poll(void *ctx, loadgen_event *ev, size_t cap)
{
	fake *f = ctx;
	size_t k = f->n_ev < cap ? f->n_ev : cap;
	memcpy(ev, f->ev, k * sizeof *ev);
	memmove(f->ev, f->ev + k, (f->n_ev - k) * sizeof *ev);
	f->n_ev -= k;
	return k;
}

static void fake_cancel(void *ctx)
{
	fake *f = ctx;
	f->n = f->n_ev = 0;
}

TEST(test_client_fake_target)
{
	fake f = {0};
	loadgen_target t = {.ctx = &f, .submit = fake_submit, .step = fake_step, .poll = fake_poll,
			    .cancel_all = fake_cancel};
	const size_t N = 10, O = 4;
	int32_t cor[5] = {1, 2, 3, 4, 5};
	loadgen_opts o = {.concurrency = 3, .n_requests = N, .n_warmup = 0, .input_tokens = 2,
			  .output_tokens = O, .seed = 3, .corpus = cor, .n_corpus = 5};
	loadgen_level lv;
	os_error err;
	CHECK(loadgen_run_level(&t, &o, &lv, &err) == OS_OK);
	/* ids 0..9: odd ids (5 of them) are short, id 4 fails: 4 complete (0, 2, 6, 8) */
	CHECK_EQ_INT(lv.n_requests, 4);
	CHECK_EQ_INT(lv.n_errors, 6);
	CHECK_EQ_INT(lv.ttft_ms.n, 4);
	CHECK_EQ_INT(lv.itl_ms.n, 4 * (O - 1));
	CHECK_EQ_INT(lv.total_output_tokens, 4 * O + 5 * (O - 1));
	CHECK(f.max_n <= 3);
	CHECK_EQ_INT(lv.max_in_flight, 3);
}

/* ---- metrics -------------------------------------------------------------------------- */

TEST(test_percentiles)
{
	/* 1..10 shuffled: rank = p/100 x 9; p50 -> 4.5 -> 5.5; p90 -> 8.1 -> 9.1; p99 -> 8.91 */
	double v[10] = {7, 3, 10, 1, 9, 2, 8, 5, 4, 6};
	metrics_summary s;
	CHECK(metrics_summarize(v, 10, &s, NULL) == OS_OK);
	CHECK_EQ_INT(s.n, 10);
	CHECK_NEAR(s.p50, 5.5, 1e-12);
	CHECK_NEAR(s.p90, 9.1, 1e-12);
	CHECK_NEAR(s.p99, 9.91, 1e-12);
	CHECK_NEAR(s.mean, 5.5, 1e-12);
	CHECK_NEAR(s.min, 1, 0);
	CHECK_NEAR(s.max, 10, 0);
	CHECK_NEAR(v[0], 7, 0); /* input untouched */
	/* one sample: every percentile is it */
	double one = 3.25;
	CHECK(metrics_summarize(&one, 1, &s, NULL) == OS_OK);
	CHECK(s.p50 == 3.25 && s.p90 == 3.25 && s.p99 == 3.25);
	/* none: NAN */
	CHECK(metrics_summarize(NULL, 0, &s, NULL) == OS_OK);
	CHECK(s.n == 0 && isnan(s.p50) && isnan(s.mean));
	/* NaN samples are skipped: {NaN, 4, 2, NaN} -> {2, 4}: p50 3, p90 = 2 + 0.9 x 2 = 3.8 */
	double w[4] = {NAN, 4, 2, NAN};
	CHECK(metrics_summarize(w, 4, &s, NULL) == OS_OK);
	CHECK_EQ_INT(s.n, 2);
	CHECK_NEAR(s.p50, 3, 1e-12);
	CHECK_NEAR(s.p90, 3.8, 1e-12);
	/* property: on random data, percentiles are monotone and within [min, max], and p0 /
	 * p100 are the extremes; a series grows past its first allocation */
	uint64_t st = seed;
	metrics_series ser = {0};
	for (int i = 0; i < 1037; i++)
		CHECK(metrics_series_push(&ser, test_rand_float(&st) * 100, NULL) == OS_OK);
	CHECK(metrics_summarize(ser.v, ser.n, &s, NULL) == OS_OK);
	CHECK(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
	size_t below = 0;
	for (size_t i = 0; i < ser.n; i++)
		below += ser.v[i] <= s.p50;
	CHECK(below == 519); /* rank 518 exactly: 519 samples at or below the median */
	metrics_series_free(&ser);
	CHECK(ser.v == NULL && ser.n == 0);
}

int main(void)
{
	seed = 0x10ad6e11ull;
	printf("seed %llu\n", (unsigned long long)seed);
	if (!test_tmpdir_make(dir, sizeof dir, "test_loadgen"))
		return 1;
	snprintf(path, sizeof path, "%s/f32.gguf", dir);
	os_error err;
	gguf_fixture_opts fo = {.seed = 77};
	backend_cpu_opts bo = {.n_threads = 2};
	if (gguf_fixture_write(path, &fo, &err) || model_open(&m, path, NULL, &err) ||
	    backend_cpu_new(&be, &bo, &err)) {
		printf("setup failed: %s\n0 passed, 1 failed\n", err.msg);
		return 1;
	}
	/* a corpus of random token ids, awkward length */
	n_corpus = 503;
	corpus = malloc(n_corpus * sizeof *corpus);
	uint64_t st = seed;
	for (size_t i = 0; i < n_corpus; i++)
		corpus[i] = (int32_t)(test_rand_next(&st) % model_n_vocab(m));
	RUN(test_exact_tokens);
	RUN(test_same_as_alone);
	RUN(test_concurrency_bound);
	RUN(test_refused_requests);
	RUN(test_stop);
	RUN(test_bad_options);
	RUN(test_prompts);
	RUN(test_client_fake_target);
	RUN(test_percentiles);
	free(corpus);
	backend_free(be);
	model_close(m);
	unlink(path);
	rmdir(dir);
	return test_summary();
}
