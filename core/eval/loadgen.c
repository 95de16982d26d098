/* loadgen.c: the load generator's client side (closed-loop clients, per-token timing,
 * percentiles) and the engine target (a continuous-batching scheduler over engine_forward).
 * The two halves meet only through loadgen_target. */
#include "loadgen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- client side ----------------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: a well-mixed 64-bit hash of x, so nearby seeds and indices give unrelated
 * offsets. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void loadgen_make_prompt(const loadgen_opts *o, uint64_t i, int32_t *out)
{
	size_t I = o->input_tokens, n = o->n_corpus;
	uint64_t h = mix64(mix64(o->seed) ^ i);
	size_t span = n >= I ? n - I + 1 : n; /* offsets where a whole prompt fits (or any) */
	size_t off = (size_t)(h % span);
	for (size_t k = 0; k < I; k++)
		out[k] = o->corpus[(off + k) % n];
}

/* One client: its request in flight, if any. itl buffers the request's gaps (O - 1) until it
 * completes, so a request that fails late adds nothing to the latency series. */
typedef struct lg_slot {
	bool active;
	bool measured;
	uint64_t id;
	size_t index;       /* measured request index */
	double t_submit, t_first, t_last;  /* s, monotonic */
	size_t n_tok;
	double *itl;        /* [O - 1] ms */
} lg_slot;

/* The run's state shared by both phases. */
typedef struct lg_run {
	const loadgen_target *t;
	const loadgen_opts *o;
	lg_slot *slots;        /* [C] */
	int32_t *prompt;       /* [I] */
	loadgen_event ev[64];
	uint64_t next_id;
	size_t in_flight;
	metrics_series ttft, itl, lat, tps;   /* ms, ms, ms, tok/s */
	loadgen_level *out;
	double t_measure0, t_measure1;
	bool measure_started;
} lg_run;

static lg_slot *find_slot(lg_run *r, uint64_t id)
{
	for (size_t s = 0; s < r->o->concurrency; s++)
		if (r->slots[s].active && r->slots[s].id == id)
			return &r->slots[s];
	return NULL;
}

/* A request left the client (done, failed or refused): update counters and progress. */
static void request_ended(lg_run *r, lg_slot *sl, bool measured, bool ok, size_t *done,
			  size_t n, double now)
{
	if (sl && sl->active) {
		sl->active = false;
		r->in_flight--;
	}
	(*done)++;
	if (!measured)
		return;
	if (ok)
		r->out->n_requests++;
	else
		r->out->n_errors++;
	r->t_measure1 = now;
	if (r->o->progress)
		r->o->progress(r->o->cb_ctx, *done, n);
}

/* Commits a completed request's timings to the series. */
static int commit_request(lg_run *r, lg_slot *sl, double now, os_error *err)
{
	const size_t O = r->o->output_tokens;
	double lat_s = now - sl->t_submit;
	int rc = metrics_series_push(&r->ttft, (sl->t_first - sl->t_submit) * 1e3, err);
	for (size_t k = 0; !rc && k + 1 < O; k++)
		rc = metrics_series_push(&r->itl, sl->itl[k], err);
	if (!rc)
		rc = metrics_series_push(&r->lat, lat_s * 1e3, err);
	if (!rc)
		rc = metrics_series_push(&r->tps, lat_s > 0 ? (double)O / lat_s : NAN, err);
	return rc;
}

/* Handles one event seen at time now. */
static int handle_event(lg_run *r, const loadgen_event *e, double now, size_t *done, size_t n,
			os_error *err)
{
	const size_t O = r->o->output_tokens;
	lg_slot *sl = find_slot(r, e->request);
	if (!sl)
		return OS_OK; /* an event of a request the client no longer tracks */
	switch (e->kind) {
	case LOADGEN_EV_TOKEN:
		if (sl->n_tok == 0)
			sl->t_first = now;
		else if (sl->n_tok < O)
			sl->itl[sl->n_tok - 1] = (now - sl->t_last) * 1e3;
		if (sl->measured) {
			r->out->total_output_tokens++;
			if (r->o->on_token && sl->n_tok < O)
				r->o->on_token(r->o->cb_ctx, sl->index, sl->n_tok, e->token);
		}
		sl->n_tok++;
		sl->t_last = now;
		return OS_OK;
	case LOADGEN_EV_DONE: {
		bool ok = sl->n_tok == O;
		bool measured = sl->measured;
		if (ok && measured) {
			int rc = commit_request(r, sl, now, err);
			if (rc)
				return rc;
		}
		request_ended(r, sl, measured, ok, done, n, now);
		return OS_OK;
	}
	default: /* LOADGEN_EV_ERROR and anything unknown */
		request_ended(r, sl, sl->measured, false, done, n, now);
		return OS_OK;
	}
}

/* Runs n requests (measured or warm-up) with up to C in flight until all have ended. */
static int run_phase(lg_run *r, bool measured, size_t n, os_error *err)
{
	const loadgen_target *t = r->t;
	const loadgen_opts *o = r->o;
	size_t next = 0, done = 0;
	while (done < n) {
		if (o->should_stop && o->should_stop(o->cb_ctx))
			return os_error_set(err, OS_ESTOPPED, "load generation stopped on request");
		for (size_t s = 0; s < o->concurrency && next < n; s++) {
			lg_slot *sl = &r->slots[s];
			if (sl->active)
				continue;
			uint64_t idx = measured ? (uint64_t)next : ((uint64_t)1 << 32) + next;
			loadgen_make_prompt(o, idx, r->prompt);
			loadgen_request req = {.id = r->next_id++, .prompt = r->prompt,
					       .n_prompt = o->input_tokens, .n_output = o->output_tokens};
			double t0 = now_s();
			if (measured && !r->measure_started) {
				r->measure_started = true;
				r->t_measure0 = t0;
			}
			os_error serr = {0};
			if (t->submit(t->ctx, &req, &serr) != OS_OK) {
				next++;
				request_ended(r, NULL, measured, false, &done, n, now_s());
				continue;
			}
			*sl = (lg_slot){.active = true, .measured = measured, .id = req.id,
					.index = next, .t_submit = t0, .itl = sl->itl};
			next++;
			r->in_flight++;
			if (measured && r->in_flight > r->out->max_in_flight)
				r->out->max_in_flight = r->in_flight;
		}
		if (r->in_flight == 0)
			continue;
		int rc = t->step(t->ctx, err);
		if (rc)
			return rc;
		double now = now_s();
		size_t got;
		do {
			got = t->poll(t->ctx, r->ev, sizeof r->ev / sizeof r->ev[0]);
			for (size_t k = 0; k < got; k++)
				if ((rc = handle_event(r, &r->ev[k], now, &done, n, err)))
					return rc;
		} while (got == sizeof r->ev / sizeof r->ev[0]);
	}
	return OS_OK;
}

int loadgen_run_level(const loadgen_target *t, const loadgen_opts *o, loadgen_level *out,
		      os_error *err)
{
	memset(out, 0, sizeof *out);
	if (!t || !t->submit || !t->step || !t->poll || !t->cancel_all)
		return os_error_set(err, OS_EUSAGE, "load generator: incomplete target");
	if (o->concurrency < 1 || o->n_requests < 1 || o->input_tokens < 1 ||
	    o->output_tokens < 1 || !o->corpus || o->n_corpus < 1)
		return os_error_set(err, OS_EUSAGE,
				    "load generator: concurrency (%zu), requests (%zu), input tokens "
				    "(%zu), output tokens (%zu) and corpus tokens (%zu) must all be >= 1",
				    o->concurrency, o->n_requests, o->input_tokens, o->output_tokens,
				    o->n_corpus);
	lg_run r = {.t = t, .o = o, .out = out};
	int rc = OS_OK;
	double *itl_all = NULL;
	r.slots = calloc(o->concurrency, sizeof *r.slots);
	r.prompt = malloc(o->input_tokens * sizeof *r.prompt);
	size_t per = o->output_tokens > 1 ? o->output_tokens - 1 : 1;
	if (o->concurrency > SIZE_MAX / per / sizeof(double))
		goto oom;
	itl_all = malloc(o->concurrency * per * sizeof *itl_all);
	if (!r.slots || !r.prompt || !itl_all)
		goto oom;
	for (size_t s = 0; s < o->concurrency; s++)
		r.slots[s].itl = itl_all + s * per;

	if (o->n_warmup && (rc = run_phase(&r, false, o->n_warmup, err)))
		goto fail;
	out->concurrency = o->concurrency;
	out->input_tokens = o->input_tokens;
	out->output_tokens = o->output_tokens;
	if ((rc = run_phase(&r, true, o->n_requests, err)))
		goto fail;
	out->wall_s = r.t_measure1 - r.t_measure0;
	if ((rc = metrics_summarize(r.ttft.v, r.ttft.n, &out->ttft_ms, err)) ||
	    (rc = metrics_summarize(r.itl.v, r.itl.n, &out->itl_ms, err)) ||
	    (rc = metrics_summarize(r.lat.v, r.lat.n, &out->latency_ms, err)) ||
	    (rc = metrics_summarize(r.tps.v, r.tps.n, &out->tok_s_per_request, err)))
		goto fail;
	/* DESIGN.md: output tokens per request / (client latency ms / 1000) x concurrency */
	if (out->latency_ms.n > 0 && out->latency_ms.mean > 0)
		out->total_tok_s = (double)o->output_tokens / (out->latency_ms.mean / 1000.0) *
				   (double)o->concurrency;
	if (out->wall_s > 0)
		out->measured_tok_s = (double)out->total_output_tokens / out->wall_s;
	goto done;
oom:
	rc = os_error_set(err, OS_ENOMEM, "out of memory starting %zu clients", o->concurrency);
fail:
	t->cancel_all(t->ctx);
	memset(out, 0, sizeof *out);
done:
	metrics_series_free(&r.ttft);
	metrics_series_free(&r.itl);
	metrics_series_free(&r.lat);
	metrics_series_free(&r.tps);
	free(itl_all);
	free(r.prompt);
	free(r.slots);
	return rc;
}

/* ---- engine target ----------------------------------------------------------------------- */

/* A request inside the scheduler. Invariant: waiting requests have seq == -1 and n_fed ==
 * n_gen == 0; running ones own seq, whose length is n_fed + max(0, n_gen - 1). */
typedef struct lg_req {
	uint64_t id;
	int32_t *prompt;     /* [n_prompt], owned */
	size_t n_prompt, n_output;
	int32_t seq;
	size_t n_fed;        /* prompt tokens in the KV cache */
	size_t n_gen;        /* output tokens produced */
	int32_t last;        /* the last output token: the next decode step's input */
	size_t need_blocks;  /* KV blocks of the whole sequence (n_prompt + n_output - 1) */
	size_t take;         /* prompt tokens in the batch being built */
	bool finished;
} lg_req;

struct loadgen_engine_target {
	engine *e;
	kv_cache *kv;
	size_t vocab;
	loadgen_engine_opts o;
	lg_req *wait;            /* FIFO [n_wait], cap_wait */
	size_t n_wait, cap_wait;
	lg_req *run;             /* [n_run <= o.max_running], admission order */
	size_t n_run;
	loadgen_event *ev;       /* pending events [ev_head, n_ev) */
	size_t ev_head, n_ev, cap_ev;
	int32_t *bt, *bp, *bs;   /* the batch [cap_batch >= o.step_tokens]; a whole prompt
	                          * alone in a step may need more */
	uint8_t *bw;
	size_t cap_batch;
	size_t *row_owner;       /* [o.max_running]: wanted row -> index into run */
	float *logits;           /* (o.max_running, vocab) */
	loadgen_engine_stats st;
};

static size_t blocks_for(const kv_cache *kv, size_t n_pos)
{
	size_t bt = kv_cache_block_tokens(kv);
	return (n_pos + bt - 1) / bt;
}

static void req_free(loadgen_engine_target *t, lg_req *q)
{
	if (q->seq >= 0)
		kv_seq_free(t->kv, q->seq);
	free(q->prompt);
	q->prompt = NULL;
	q->seq = -1;
}

static void eng_cancel_all(void *ctx)
{
	loadgen_engine_target *t = ctx;
	for (size_t i = 0; i < t->n_run; i++)
		req_free(t, &t->run[i]);
	for (size_t i = 0; i < t->n_wait; i++)
		req_free(t, &t->wait[i]);
	t->n_run = t->n_wait = 0;
	t->ev_head = t->n_ev = 0;
}

/* Makes room for k more events (called before any state changes in a step). */
static int ev_reserve(loadgen_engine_target *t, size_t k, os_error *err)
{
	if (t->ev_head == t->n_ev)
		t->ev_head = t->n_ev = 0;
	if (t->n_ev + k <= t->cap_ev)
		return OS_OK;
	size_t ncap = t->cap_ev ? t->cap_ev : 64;
	while (ncap < t->n_ev + k)
		ncap *= 2;
	loadgen_event *nv = realloc(t->ev, ncap * sizeof *nv);
	if (!nv)
		return os_error_set(err, OS_ENOMEM, "out of memory queueing load generator events");
	t->ev = nv;
	t->cap_ev = ncap;
	return OS_OK;
}

static void ev_push(loadgen_engine_target *t, uint64_t id, int kind, int32_t token)
{
	t->ev[t->n_ev++] = (loadgen_event){.request = id, .kind = kind, .token = token};
}

static int eng_submit(void *ctx, const loadgen_request *r, os_error *err)
{
	loadgen_engine_target *t = ctx;
	if (r->n_prompt < 1 || r->n_output < 1)
		return os_error_set(err, OS_EUSAGE, "request %llu: needs >= 1 prompt and output token",
				    (unsigned long long)r->id);
	for (size_t i = 0; i < r->n_prompt; i++)
		if (r->prompt[i] < 0 || (size_t)r->prompt[i] >= t->vocab)
			return os_error_set(err, OS_EUSAGE,
					    "request %llu: prompt token %zu is %d (expected 0..%zu)",
					    (unsigned long long)r->id, i, (int)r->prompt[i],
					    t->vocab - 1);
	size_t n_pos = r->n_prompt + r->n_output - 1;
	size_t need = blocks_for(t->kv, n_pos);
	if (need > kv_cache_n_blocks(t->kv))
		return os_error_set(err, OS_ERANGE,
				    "request %llu: %zu positions need %zu KV blocks, the cache holds %zu",
				    (unsigned long long)r->id, n_pos, need, kv_cache_n_blocks(t->kv));
	if (t->n_wait == t->cap_wait) {
		size_t ncap = t->cap_wait ? t->cap_wait * 2 : 16;
		lg_req *nv = realloc(t->wait, ncap * sizeof *nv);
		if (!nv)
			return os_error_set(err, OS_ENOMEM, "out of memory queueing a request");
		t->wait = nv;
		t->cap_wait = ncap;
	}
	int32_t *p = malloc(r->n_prompt * sizeof *p);
	if (!p)
		return os_error_set(err, OS_ENOMEM, "out of memory copying a prompt of %zu tokens",
				    r->n_prompt);
	memcpy(p, r->prompt, r->n_prompt * sizeof *p);
	t->wait[t->n_wait++] = (lg_req){.id = r->id, .prompt = p, .n_prompt = r->n_prompt,
					.n_output = r->n_output, .seq = -1, .need_blocks = need};
	return OS_OK;
}

/* Grows the batch arrays to hold n tokens. */
static int batch_reserve(loadgen_engine_target *t, size_t n, os_error *err)
{
	if (n <= t->cap_batch)
		return OS_OK;
	int32_t *bt = realloc(t->bt, n * sizeof *bt);
	if (bt)
		t->bt = bt;
	int32_t *bp = realloc(t->bp, n * sizeof *bp);
	if (bp)
		t->bp = bp;
	int32_t *bs = realloc(t->bs, n * sizeof *bs);
	if (bs)
		t->bs = bs;
	uint8_t *bw = realloc(t->bw, n * sizeof *bw);
	if (bw)
		t->bw = bw;
	if (!bt || !bp || !bs || !bw)
		return os_error_set(err, OS_ENOMEM, "out of memory for a batch of %zu tokens", n);
	t->cap_batch = n;
	return OS_OK;
}

/* Free blocks not promised to running requests' future positions. */
static size_t unreserved_blocks(const loadgen_engine_target *t)
{
	size_t promised = 0;
	for (size_t i = 0; i < t->n_run; i++) {
		size_t held = blocks_for(t->kv, kv_seq_len(t->kv, t->run[i].seq));
		promised += t->run[i].need_blocks > held ? t->run[i].need_blocks - held : 0;
	}
	size_t free_b = kv_cache_n_free_blocks(t->kv);
	return free_b > promised ? free_b - promised : 0;
}

/* Step 1: FIFO admission within max_running and the KV capacity. */
static int admit(loadgen_engine_target *t, os_error *err)
{
	size_t avail = unreserved_blocks(t);
	size_t k = 0;
	while (k < t->n_wait && t->n_run < t->o.max_running && t->wait[k].need_blocks <= avail) {
		lg_req q = t->wait[k];
		int rc = kv_seq_new(t->kv, &q.seq, err);
		if (rc)
			break; /* out of sequence ids: wait for a retirement */
		avail -= q.need_blocks;
		t->run[t->n_run++] = q;
		k++;
	}
	if (k) {
		memmove(t->wait, t->wait + k, (t->n_wait - k) * sizeof *t->wait);
		t->n_wait -= k;
	}
	if (t->n_run > t->st.max_running)
		t->st.max_running = t->n_run;
	return OS_OK;
}

/* Greedy: the argmax of one row, lowest id on ties (NaN never wins). */
static int32_t argmax(const float *x, size_t n)
{
	size_t best = 0;
	for (size_t i = 1; i < n; i++)
		if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i])))
			best = i;
	return (int32_t)best;
}

static int eng_step(void *ctx, os_error *err)
{
	loadgen_engine_target *t = ctx;
	int rc = admit(t, err);
	if (rc)
		return rc;
	if (t->n_run == 0)
		return OS_OK;
	if ((rc = ev_reserve(t, 2 * t->n_run, err)))
		return rc;
	/* step 2: decodes first, then prefill chunks */
	size_t budget = t->o.step_tokens, n = 0, n_rows = 0;
	size_t n_prefill_tok = 0, n_decode_tok = 0;
	for (size_t i = 0; i < t->n_run; i++) {
		lg_req *q = &t->run[i];
		if (q->n_fed < q->n_prompt)
			continue;
		t->bt[n] = q->last;
		t->bp[n] = (int32_t)(q->n_prompt + q->n_gen - 1);
		t->bs[n] = q->seq;
		t->bw[n] = 1;
		t->row_owner[n_rows++] = i;
		n++;
		n_decode_tok++;
	}
	/* prefill chunks, oldest request first; n_fed moves only once the forward succeeded */
	for (size_t i = 0; i < t->n_run; i++) {
		lg_req *q = &t->run[i];
		size_t left = q->n_prompt - q->n_fed;
		q->take = 0;
		if (left == 0)
			continue;
		size_t room = budget > n ? budget - n : 0;
		size_t take;
		if (t->o.whole_prefill) /* whole, or alone in a step that has nothing else */
			take = left <= room || n == 0 ? left : 0;
		else
			take = left < room ? left : room;
		if (take == 0)
			continue;
		if ((rc = batch_reserve(t, n + take, err)))
			return rc;
		for (size_t k = 0; k < take; k++, n++) {
			t->bt[n] = q->prompt[q->n_fed + k];
			t->bp[n] = (int32_t)(q->n_fed + k);
			t->bs[n] = q->seq;
			t->bw[n] = q->n_fed + k + 1 == q->n_prompt;
		}
		if (take == left)
			t->row_owner[n_rows++] = i;
		q->take = take;
		n_prefill_tok += take;
	}
	if (n == 0)
		return OS_OK;
	/* step 3: one forward call (it changes nothing when it fails) */
	engine_batch b = {.n = n, .tokens = t->bt, .pos = t->bp, .seq = t->bs, .want = t->bw};
	if ((rc = engine_forward(t->e, &b, t->logits, err)))
		return rc;
	for (size_t i = 0; i < t->n_run; i++) {
		t->run[i].n_fed += t->run[i].take;
		t->run[i].take = 0;
	}
	t->st.n_steps++;
	t->st.prefill_tokens += n_prefill_tok;
	t->st.decode_tokens += n_decode_tok;
	if (n > t->st.max_step_tokens)
		t->st.max_step_tokens = n;
	for (size_t r = 0; r < n_rows; r++) {
		lg_req *q = &t->run[t->row_owner[r]];
		int32_t tok = argmax(t->logits + r * t->vocab, t->vocab);
		q->last = tok;
		q->n_gen++;
		ev_push(t, q->id, LOADGEN_EV_TOKEN, tok);
		if (q->n_gen == q->n_output) {
			ev_push(t, q->id, LOADGEN_EV_DONE, 0);
			q->finished = true;
		}
	}
	/* retire finished requests, keeping admission order */
	size_t w = 0;
	for (size_t i = 0; i < t->n_run; i++) {
		if (t->run[i].finished) {
			req_free(t, &t->run[i]);
			t->st.n_completed++;
		} else {
			t->run[w++] = t->run[i];
		}
	}
	t->n_run = w;
	return OS_OK;
}

static size_t eng_poll(void *ctx, loadgen_event *ev, size_t cap)
{
	loadgen_engine_target *t = ctx;
	size_t k = t->n_ev - t->ev_head;
	if (k > cap)
		k = cap;
	memcpy(ev, t->ev + t->ev_head, k * sizeof *ev);
	t->ev_head += k;
	if (t->ev_head == t->n_ev)
		t->ev_head = t->n_ev = 0;
	return k;
}

int loadgen_engine_target_new(loadgen_engine_target **out, engine *e,
			      const loadgen_engine_opts *opts, os_error *err)
{
	*out = NULL;
	loadgen_engine_target *t = calloc(1, sizeof *t);
	if (!t)
		return os_error_set(err, OS_ENOMEM, "out of memory making the load generator target");
	t->e = e;
	t->kv = engine_kv(e);
	t->vocab = model_n_vocab(engine_model(e));
	if (opts)
		t->o = *opts;
	if (t->o.step_tokens == 0)
		t->o.step_tokens = engine_max_batch(e);
	if (t->o.max_running == 0)
		t->o.max_running = 64;
	if (t->o.max_running > t->o.step_tokens)
		t->o.max_running = t->o.step_tokens;
	size_t S = t->o.step_tokens, R = t->o.max_running;
	t->run = calloc(R, sizeof *t->run);
	t->bt = malloc(S * sizeof *t->bt);
	t->bp = malloc(S * sizeof *t->bp);
	t->bs = malloc(S * sizeof *t->bs);
	t->bw = malloc(S * sizeof *t->bw);
	t->row_owner = malloc(R * sizeof *t->row_owner);
	t->logits = R <= SIZE_MAX / sizeof(float) / t->vocab ? malloc(R * t->vocab * sizeof(float))
							      : NULL;
	t->cap_batch = S;
	if (!t->run || !t->bt || !t->bp || !t->bs || !t->bw || !t->row_owner || !t->logits) {
		loadgen_engine_target_free(t);
		return os_error_set(err, OS_ENOMEM,
				    "out of memory making the scheduler (%zu requests, %zu tokens a step)",
				    R, S);
	}
	*out = t;
	return OS_OK;
}

void loadgen_engine_target_free(loadgen_engine_target *t)
{
	if (!t)
		return;
	if (t->run)
		eng_cancel_all(t);
	free(t->wait);
	free(t->run);
	free(t->ev);
	free(t->bt);
	free(t->bp);
	free(t->bs);
	free(t->bw);
	free(t->row_owner);
	free(t->logits);
	free(t);
}

loadgen_target loadgen_engine_target_iface(loadgen_engine_target *t)
{
	return (loadgen_target){.ctx = t, .submit = eng_submit, .step = eng_step,
				.poll = eng_poll, .cancel_all = eng_cancel_all};
}

void loadgen_engine_target_stats(const loadgen_engine_target *t, loadgen_engine_stats *out)
{
	*out = t->st;
}

void loadgen_engine_target_reset_stats(loadgen_engine_target *t)
{
	memset(&t->st, 0, sizeof t->st);
}
