/* speculative.h: speculative decoding. A draft (a second engine with its own KV cache, or
 * prompt-lookup n-grams) proposes k tokens per sequence; the target checks all k+1 positions
 * of every live sequence in ONE engine_forward; accepted tokens are kept and both KV caches
 * are rolled back (kv_seq_truncate) to exactly the accepted text.
 *
 * Exactness. Greedy (temperature <= 0): a proposal is accepted while it equals the token the
 * target's own sampler picks at that position, and the target's token is emitted at the first
 * mismatch (or as the bonus after k accepts), so the output is the target's alone, token for
 * token (to the extent the engine's logits do not depend on the batch shape). Sampling:
 * proposal x drawn from the draft's q is accepted with probability min(1, p(x)/q(x)), else a
 * token is drawn from norm(max(0, p - q)) and the round stops; after k accepts the bonus is
 * drawn from p (Leviathan et al. 2023, Chen et al. 2023), so every emitted token has exactly
 * the target's distribution p = sampler_probs(target sampler). N-grams use q = one-hot.
 *
 * KV invariant between rounds (per sequence, history h[0..n-1] = prompt + output):
 *   the target's cache holds h[0..n-2] (the last token is fed at the start of the next round);
 *   the draft's cache holds a prefix h[0..d-1], d <= n-1, and catches up at the next round
 *   (after k accepts it has not seen d_k nor the bonus token: it is fed both).
 */
#ifndef OPTSTUDIO_SPECULATIVE_H
#define OPTSTUDIO_SPECULATIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../errors.h"
#include "engine.h"
#include "sampler.h"

#define SPEC_MAX_K 16

enum spec_draft_kind {
	SPEC_DRAFT_NONE = 0,   /* no speculation: plain decoding through the same loop (baseline) */
	SPEC_DRAFT_MODEL = 1,  /* a draft engine */
	SPEC_DRAFT_NGRAM = 2,  /* prompt lookup: no draft model */
};

/* Plain settings; zero fields take the defaults in brackets. */
typedef struct spec_opts {
	size_t k;                /* proposals per round, 1..SPEC_MAX_K [4]; the start value when adaptive */
	bool adaptive;           /* pick k each round from the recent acceptance rate (1..16) */
	size_t ngram_max;        /* prompt lookup: longest suffix to match [3] */
	size_t ngram_min;        /* shortest [1] */
	double draft_cost;       /* adaptive: one draft step in plain target steps [the ratio of
				  * the models' step bytes; 0 for n-grams] */
	double verify_cost;      /* adaptive: each extra verified position in plain target steps
				  * [0.15, measured by bench_spec on this 2-core CPU: 0.13-0.27] */
	const int32_t *stop;     /* end-of-generation tokens (copied) */
	size_t n_stop;
} spec_opts;

/* Counters of one decoder since spec_new (or spec_metrics_reset). Plain data: the CLI prints
 * it, jobs store it. Times are wall-clock ms on the calling thread. */
typedef struct spec_metrics {
	uint64_t n_target_calls;   /* verification engine_forward calls (one per round) */
	uint64_t n_seq_rounds;     /* (sequence, round) pairs: one verification of one sequence */
	uint64_t n_proposed;       /* draft tokens proposed */
	uint64_t n_accepted;       /* of which accepted */
	uint64_t n_emitted;        /* tokens emitted (accepted + corrections + bonus tokens) */
	uint64_t n_prompt;         /* prompt tokens prefilled */
	uint64_t proposed_at[SPEC_MAX_K]; /* rounds that proposed a token at position i+1 */
	uint64_t accepted_at[SPEC_MAX_K]; /* rounds that accepted the token at position i+1 */
	double prefill_ms;         /* prompt forward passes, both engines */
	double draft_ms;           /* draft forward passes and draft sampling, or n-gram lookup */
	double verify_ms;          /* target forward passes of the rounds */
	double accept_ms;          /* accept/reject tests, sampling, KV rollback */
	double decode_ms;          /* whole rounds (draft + verify + accept): tok/s denominator */
} spec_metrics;

/* accepted / proposed (0 when nothing was proposed). */
double spec_metrics_acceptance(const spec_metrics *m);
/* Tokens emitted per verification of a sequence ("mean accepted length"; 1 = no gain). */
double spec_metrics_mean_accepted(const spec_metrics *m);
/* Emitted tokens per second of decode time (prefill excluded). */
double spec_metrics_tok_s(const spec_metrics *m);
/* Acceptance at position i (0-based): accepted_at[i] / proposed_at[i]; 0 when never proposed. */
double spec_metrics_acceptance_at(const spec_metrics *m, size_t i);
/* Adds b's counters and times into a. */
void spec_metrics_add(spec_metrics *a, const spec_metrics *b);
/* One line: "accept 83.1% | mean len 3.41 | draft 31% verify 62% | 41.2 tok/s" into buf. */
void spec_metrics_format(const spec_metrics *m, char *buf, size_t len);

typedef struct spec_decoder spec_decoder;

/* Makes a decoder over target (and draft, for SPEC_DRAFT_MODEL; NULL otherwise), both borrowed
 * and outliving it; each engine keeps its own KV cache, and sequences the decoder adds live in
 * them. sp is the target's sampling (the draft samples with the same parameters). Checks:
 * equal vocabulary sizes (OS_EUSAGE naming both), k in 1..SPEC_MAX_K (OS_ERANGE), sampler
 * parameters (sampler_new's errors). */
int spec_new(spec_decoder **out, engine *target, engine *draft, int kind, const spec_opts *o,
	     const sampler_params *sp, os_error *err);
/* Frees the decoder and ends its sequences in both KV caches. NULL is fine. */
void spec_free(spec_decoder *d);

/* Starts a sequence: prompt (n >= 1 tokens, copied) is the beginning of its history; it
 * generates at most max_new tokens (>= 1), fewer when it emits a stop token (which is kept as
 * its last token). seed seeds its samplers (target and draft). Prefills the prompt into the
 * target in one pass and samples the first token from its last row (as plain decoding does;
 * the next spec_step reports it with its own tokens), prompt[0..n-2] into the draft. *id
 * (>= 0) names it in later calls. */
int spec_seq_add(spec_decoder *d, const int32_t *prompt, size_t n, size_t max_new,
		 uint64_t seed, int *id, os_error *err);
/* Ends a sequence: frees its KV sequences and state. An invalid id is ignored. */
void spec_seq_remove(spec_decoder *d, int id);

/* Runs one round for every live sequence that is not done: proposals, one batched target
 * verification, accept/reject, rollback. Each such sequence emits 1..k+1 tokens. Returns
 * OS_OK with *n_active (may be NULL) = sequences that took part (0 = all done). On an engine
 * error both caches may hold extra positions: remove the sequences. */
int spec_step(spec_decoder *d, size_t *n_active, os_error *err);
/* Runs spec_step until every sequence is done. */
int spec_run(spec_decoder *d, os_error *err);

/* The history (prompt then generated tokens) of sequence id and the index where the tokens
 * emitted by the last spec_step start (== *n when it emitted nothing). Borrowed, valid until
 * the next step / remove. NULL for an invalid id. */
const int32_t *spec_seq_tokens(const spec_decoder *d, int id, size_t *n, size_t *last_start);
/* Number of prompt tokens of sequence id. */
size_t spec_seq_n_prompt(const spec_decoder *d, int id);
/* True when sequence id has emitted max_new tokens or a stop token (or is invalid). */
bool spec_seq_done(const spec_decoder *d, int id);
/* The KV sequence ids of id in the target and draft caches (-1 when none). For tests: the
 * target's cache holds tokens[0..n-2] between rounds. */
int32_t spec_seq_target_kv(const spec_decoder *d, int id);
int32_t spec_seq_draft_kv(const spec_decoder *d, int id);
/* The k the next round of sequence id will use (adaptive mode changes it). */
size_t spec_seq_k(const spec_decoder *d, int id);

/* Counters since spec_new / the last reset. Borrowed, valid until spec_free. */
const spec_metrics *spec_get_metrics(const spec_decoder *d);
void spec_metrics_reset(spec_decoder *d);

/* Prompt lookup: finds the most recent earlier occurrence of the last n tokens of
 * hist[0..n_hist-1] (n from ngram_max down to ngram_min, longest first; the occurrence must
 * end before the last token) and copies up to k of the tokens that followed it to out.
 * Returns how many (0: no match). Pure; exposed for tests. */
size_t spec_ngram_propose(const int32_t *hist, size_t n_hist, size_t ngram_min, size_t ngram_max,
			  size_t k, int32_t *out);

/* The adaptive rule: the k in 1..SPEC_MAX_K maximising the expected speed-up
 * (1 - a^(k+1)) / ((1 - a) (1 + k (c_draft + c_verify))) for per-token acceptance a, draft
 * cost per proposal c_draft and extra verification cost per proposal c_verify, both in units
 * of one plain target step. Pure; exposed for tests and reports. */
size_t spec_best_k(double accept, double c_draft, double c_verify);

#endif
