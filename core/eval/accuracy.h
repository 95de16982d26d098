/* accuracy.h: how far a (quantized) model's next-token distributions are from a baseline's
 * over the same tokens: perplexity of both, KL(baseline || model) mean and p99, top-1
 * agreement and the largest logit difference. Chunks and scored positions are those of
 * perplexity.h (chunks of ctx tokens, the second half scored), so the perplexities equal
 * perplexity_compute's.
 *   KL_i = sum_v p_b(v) (log p_b(v) - log p_m(v)),  p = softmax(logits)   (nats, in double)
 *   top-1 agreement = share of scored positions where both argmax agree
 *   max logit error = max over scored positions and the vocabulary of |l_m - l_b| */
#ifndef OPTSTUDIO_ACCURACY_H
#define OPTSTUDIO_ACCURACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../cpu/threadpool.h"
#include "../engine/engine.h"
#include "../errors.h"

/* Called after each chunk. */
typedef void (*accuracy_progress_fn)(void *ctx, size_t chunks_done, size_t n_chunks);
/* Polled between chunks; true stops with OS_ESTOPPED. */
typedef bool (*accuracy_stop_fn)(void *ctx);

typedef struct accuracy_opts {
	size_t ctx;                    /* tokens per chunk, >= 3 */
	size_t max_chunks;             /* 0 = every whole chunk */
	int32_t bos;                   /* replaces position 0 of each chunk; -1: none */
	accuracy_progress_fn progress; /* NULL: none */
	accuracy_stop_fn should_stop;  /* NULL: never */
	void *cb_ctx;
	threadpool *pool;              /* runs the per-token scores (NLLs, KL, agreement:
	                                * vocabulary-wide double sums) between forward passes,
	                                * e.g. the CPU backend's; NULL: the caller's thread. The
	                                * result does not depend on it. */
} accuracy_opts;

typedef struct accuracy_result {
	double ppl_model, ppl_base;    /* exp(mean NLL) */
	double nll_model, nll_base;    /* mean NLL, nats per token */
	double kl_mean, kl_p99, kl_max;/* KL(base || model), nats */
	double top1_agree;             /* fraction in [0, 1] */
	double max_logit_err;          /* max |logit_model - logit_base| */
	size_t n_scored;
	size_t n_chunks;
	double seconds;
} accuracy_result;

/* Compares model (engine m) against base (engine b) over tokens[0..n_tokens) (borrowed).
 * Both models must have the same vocabulary size (OS_EUSAGE otherwise) and each engine's KV
 * cache must hold ctx tokens. Fails like perplexity_compute: OS_EUSAGE for a too small ctx,
 * a token outside the vocabulary, or a stream shorter than one chunk (saying how many
 * tokens are needed and given); OS_ESTOPPED; OS_ENOMEM; or an engine error. */
int accuracy_compare(engine *m, engine *b, const int32_t *tokens, size_t n_tokens,
		     const accuracy_opts *opts, accuracy_result *out, os_error *err);

/* KL(p || q) in nats of the softmax distributions of two logit rows of n, in double. */
double accuracy_kl(const float *logits_p, const float *logits_q, size_t n);

#endif
