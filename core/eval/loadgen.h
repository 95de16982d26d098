/* loadgen.h: the load generator. A client side (C concurrent closed-loop clients sending
 * requests of I prompt tokens for O output tokens, timing every token) drives a target
 * through a small callback interface; the engine target here runs a continuous-batching
 * scheduler over one engine (requests join and leave every step). An HTTP target for a
 * deployment can implement the same interface later; the client side knows nothing of the
 * engine.
 *
 * Definitions (per concurrency level, measured requests only, warm-up excluded):
 *   TTFT          = time of the first output token - time of submission, ms
 *   ITL           = gaps between consecutive output tokens of a request, ms (O-1 per request)
 *   latency       = time of the last output token - time of submission (client, end to end), ms
 *   tok/s/request = O / (latency / 1000)
 *   total (DESIGN) = O / (mean latency ms / 1000) x C        [DESIGN.md "Evaluation"; the
 *                   "client latency" of the formula is taken as the mean, so by Little's law
 *                   it matches the measured aggregate up to the ramp-up and drain edges]
 *   measured      = total output tokens of the measured requests / wall time from the first
 *                   measured submission to the last completion, tok/s
 * A token's time is when the client sees it (after the target's step that produced it). */
#ifndef OPTSTUDIO_LOADGEN_H
#define OPTSTUDIO_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/engine.h"
#include "../errors.h"
#include "metrics.h"

/* ---- the target interface ----------------------------------------------------------- */

/* One request as the client sends it. prompt is borrowed for the submit call only (the
 * target copies what it keeps). Output: exactly n_output tokens, greedy, EOS ignored. */
typedef struct loadgen_request {
	uint64_t id;             /* unique within a run, chosen by the client */
	const int32_t *prompt;   /* [n_prompt] token ids */
	size_t n_prompt;         /* >= 1 */
	size_t n_output;         /* >= 1 */
} loadgen_request;

enum loadgen_event_kind {
	LOADGEN_EV_TOKEN = 0,    /* one output token of a request */
	LOADGEN_EV_DONE,         /* the request finished (after its last TOKEN event) */
	LOADGEN_EV_ERROR,        /* the request failed and is gone from the target */
};

typedef struct loadgen_event {
	uint64_t request;        /* loadgen_request.id */
	int kind;                /* enum loadgen_event_kind */
	int32_t token;           /* TOKEN: the token id */
	int rc;                  /* ERROR: an OS_E* code */
} loadgen_event;

/* A target: callbacks plus their context. Contract:
 *   submit     queues a request (copying its prompt); a nonzero rc means the request was
 *              refused (counted as an error; err says why) and the run goes on.
 *   step       makes progress (the engine target: one scheduler step, one forward call;
 *              an HTTP target: wait for network events). A nonzero rc is fatal for the run.
 *   poll       moves up to cap pending events into ev in the order they happened and
 *              returns how many; the client calls it until it returns less than cap.
 *   cancel_all drops every request in flight and every pending event (a stopped or failed
 *              run leaves the target empty and reusable). */
typedef struct loadgen_target {
	void *ctx;
	int (*submit)(void *ctx, const loadgen_request *r, os_error *err);
	int (*step)(void *ctx, os_error *err);
	size_t (*poll)(void *ctx, loadgen_event *ev, size_t cap);
	void (*cancel_all)(void *ctx);
} loadgen_target;

/* ---- the client side ---------------------------------------------------------------- */

/* Called with every output token of every measured request: request index in
 * [0, n_requests), token index in [0, O), the token id. */
typedef void (*loadgen_token_fn)(void *ctx, size_t request, size_t index, int32_t token);
/* Called after each measured request finishes (or fails): done of total. */
typedef void (*loadgen_progress_fn)(void *ctx, size_t done, size_t total);
/* Polled every client iteration; true stops the run with OS_ESTOPPED. */
typedef bool (*loadgen_stop_fn)(void *ctx);

typedef struct loadgen_opts {
	size_t concurrency;      /* C clients, each with at most one request in flight; >= 1 */
	size_t n_requests;       /* measured requests at this level; >= 1 */
	size_t n_warmup;         /* warm-up requests before them (run at the same concurrency,
	                          * not measured) */
	size_t input_tokens;     /* I: prompt tokens per request; >= 1 */
	size_t output_tokens;    /* O: output tokens per request; >= 1 */
	uint64_t seed;           /* request i's prompt is a pure function of (seed, i, corpus) */
	const int32_t *corpus;   /* [n_corpus] token ids the prompts are cut from; borrowed */
	size_t n_corpus;         /* >= 1; a corpus shorter than I is repeated */
	loadgen_token_fn on_token;       /* NULL: none */
	loadgen_progress_fn progress;    /* NULL: none */
	loadgen_stop_fn should_stop;     /* NULL: never */
	void *cb_ctx;                    /* passed to the three callbacks */
} loadgen_opts;

/* The results of one concurrency level. Latencies in ms, rates in tok/s. */
typedef struct loadgen_level {
	size_t concurrency;
	size_t input_tokens, output_tokens;
	size_t n_requests;           /* measured requests that completed with O tokens */
	size_t n_errors;             /* measured requests refused, failed, or short/long of O */
	metrics_summary ttft_ms;
	metrics_summary itl_ms;
	metrics_summary latency_ms;
	metrics_summary tok_s_per_request;
	double total_tok_s;          /* DESIGN.md's formula (above); 0 without completed requests */
	double measured_tok_s;       /* total output tokens / wall_s */
	size_t total_output_tokens;  /* of the measured requests, completed or not */
	double wall_s;               /* first measured submission to last measured completion */
	size_t max_in_flight;        /* most requests the client had in flight at once (<= C) */
} loadgen_level;

/* The prompt of request i (measured requests are 0..n_requests-1; warm-up requests use
 * indices from 2^32 on so they never repeat a measured prompt): I tokens read from the
 * corpus at an offset drawn from (seed, i), wrapping around a short corpus. out holds I. */
void loadgen_make_prompt(const loadgen_opts *o, uint64_t i, int32_t *out);

/* Runs one level against t: the warm-up requests, then the measured ones, C in flight at
 * a time (a client sends its next request as soon as its previous one ends), and fills
 * *out. Fails with OS_EUSAGE for bad options, OS_ESTOPPED when should_stop asked, OS_ENOMEM,
 * or a step's error; then every request still in flight is cancelled (t->cancel_all) and
 * *out is zeroed. Refused or failed requests are not a failure of the run: they count in
 * n_errors. */
int loadgen_run_level(const loadgen_target *t, const loadgen_opts *o, loadgen_level *out,
		      os_error *err);

/* ---- the engine target: continuous batching over one engine ------------------------ */

/* The scheduler, one step (one engine_forward call):
 *   1. admit waiting requests (FIFO) while fewer than max_running run and the KV cache can
 *      hold every admitted request's whole sequence (I + O - 1 positions; capacity is
 *      reserved at admission, so a running request never runs out of blocks);
 *   2. build one batch: first one decode token for every request past its prefill, then
 *      prefill tokens of requests still prefilling, oldest first, within step_tokens tokens
 *      in all. Chunked prefill (the default): a prompt is cut into chunks that fill what the
 *      decodes leave, so a long prompt never stalls the running decodes for more than one
 *      step's budget. Whole prefill (whole_prefill): a prompt goes in only whole, as soon as
 *      it fits in what is left of the budget (or alone in a step with nothing else to do);
 *   3. run it; the logits of each decode token and of each prompt's last token give a
 *      greedy token (argmax, lowest id on ties, as sampler.h's greedy); a request that has
 *      its O tokens is retired (kv_seq_free) at once. */
typedef struct loadgen_engine_target loadgen_engine_target;

typedef struct loadgen_engine_opts {
	size_t max_running;      /* requests running at once; 0 = 64; at most step_tokens */
	size_t step_tokens;      /* tokens per step (decodes + prefill chunks); 0 = the engine's
	                          * max batch */
	bool whole_prefill;      /* prompts only whole, never chunked (above) */
} loadgen_engine_opts;

/* Statistics since creation (or loadgen_engine_target_reset_stats). */
typedef struct loadgen_engine_stats {
	size_t n_steps;            /* forward calls */
	size_t max_running;        /* most requests admitted at once */
	size_t max_step_tokens;    /* most tokens in one forward call */
	size_t prefill_tokens;     /* prompt tokens run */
	size_t decode_tokens;      /* decode tokens run */
	size_t n_completed;        /* requests retired with all their tokens */
} loadgen_engine_stats;

/* Makes a target over e (borrowed; must outlive the target; its KV cache must be empty of
 * other users' sequences while the target runs). opts NULL = defaults. OS_ENOMEM. */
int loadgen_engine_target_new(loadgen_engine_target **out, engine *e,
			      const loadgen_engine_opts *opts, os_error *err);
/* Frees the target and every sequence it holds. NULL is fine. */
void loadgen_engine_target_free(loadgen_engine_target *t);
/* The callback interface of t (t stays owned by the caller). */
loadgen_target loadgen_engine_target_iface(loadgen_engine_target *t);
void loadgen_engine_target_stats(const loadgen_engine_target *t, loadgen_engine_stats *out);
void loadgen_engine_target_reset_stats(loadgen_engine_target *t);

#endif
