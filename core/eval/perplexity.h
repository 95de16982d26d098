/* perplexity.h: perplexity of a model over a token stream, computed as llama.cpp's
 * perplexity tool does: the stream is cut into chunks of ctx tokens, each chunk is run as a
 * fresh sequence, and (by default) only the second half of each chunk is scored, so every
 * scored token sees at least ctx/2 tokens of context.
 *
 * For a chunk t[0..ctx) and first = ctx/2 (0 with score_all), the scored predictions are
 * token t[j+1] from the logits at position j for j in [first, ctx-1): ctx-1-first per chunk.
 * When bos >= 0, position 0 of every chunk is replaced by the BOS token (as llama.cpp does
 * for models that want one); it is never a predicted token since j+1 >= 1.
 *   NLL_i = logsumexp(logits) - logits[target]     (natural log, computed in double)
 *   mean  = sum NLL_i / N,  ppl = exp(mean)
 *   stderr(ppl) = ppl * sqrt((mean(NLL^2) - mean^2) / (N - 1))   (delta method, llama.cpp) */
#ifndef OPTSTUDIO_PERPLEXITY_H
#define OPTSTUDIO_PERPLEXITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../cpu/threadpool.h"
#include "../engine/engine.h"
#include "../errors.h"

/* Called after each chunk: chunks_done of n_chunks finished, the running result so far
 * (borrowed for the call). */
typedef void (*perplexity_progress_fn)(void *ctx, size_t chunks_done, size_t n_chunks,
				       double running_ppl);
/* Polled between chunks and between passes inside a chunk; true stops the computation
 * with OS_ESTOPPED. */
typedef bool (*perplexity_stop_fn)(void *ctx);

typedef struct perplexity_opts {
	size_t ctx;                      /* tokens per chunk: >= 3, >= 2 with score_all (so a chunk
	                                  * scores something); the CLI's default is 512 */
	size_t max_chunks;               /* 0 = as many whole chunks as the stream holds */
	bool score_all;                  /* score every position after the first, not only the
	                                  * second half: a lower figure, not comparable to llama.cpp */
	int32_t bos;                     /* token placed at position 0 of each chunk; -1: none */
	perplexity_progress_fn progress; /* NULL: none */
	perplexity_stop_fn should_stop;  /* NULL: never stop */
	void *cb_ctx;                    /* passed to both callbacks */
	threadpool *pool;                /* runs the scored rows' log-sum-exp (double precision,
	                                  * a vocabulary per row) between forward passes, e.g.
	                                  * the CPU backend's; NULL: the caller's thread. The
	                                  * result does not depend on it. */
} perplexity_opts;

typedef struct perplexity_result {
	double ppl;          /* exp(mean_nll) */
	double ppl_stderr;   /* standard error of ppl (0 when fewer than 2 tokens were scored) */
	double mean_nll;     /* nats per scored token */
	size_t n_scored;     /* predictions scored */
	size_t n_chunks;     /* chunks run */
	size_t n_tokens_run; /* tokens sent through the model (n_chunks * ctx) */
	double seconds;      /* wall time of the whole computation */
} perplexity_result;

/* Number of whole chunks of ctx tokens in n_tokens (capped by max_chunks when nonzero). */
size_t perplexity_n_chunks(size_t n_tokens, size_t ctx, size_t max_chunks);

/* Computes the perplexity of e's model over tokens[0..n_tokens) (borrowed). Each chunk uses
 * its own KV sequence, freed before the next one, so the engine's KV cache must hold ctx
 * tokens (OS_ERANGE from the engine otherwise). Fails with OS_EUSAGE when ctx is too small
 * (above), a token or bos is outside the vocabulary, or the stream holds less than one
 * chunk (the message says how many tokens are needed and were given), OS_ESTOPPED when
 * should_stop asked (then *out holds the result of the chunks finished before the stop,
 * possibly none), OS_ENOMEM, or the engine's error (then *out is zeroed). Deterministic: the result depends only on the model and the tokens (the
 * backend's results do not depend on the thread count). */
int perplexity_compute(engine *e, const int32_t *tokens, size_t n_tokens,
		       const perplexity_opts *opts, perplexity_result *out, os_error *err);

/* NLL in nats of token `target` under one row of n logits: logsumexp(logits) - logits[target],
 * in double. NaN logits count as -inf. target must be in [0, n). */
double perplexity_token_nll(const float *logits, size_t n, int32_t target);

#endif
