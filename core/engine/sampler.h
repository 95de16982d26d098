/* sampler.h: turns one row of logits into a token: greedy, temperature, top-k, top-p,
 * min-p and a repetition penalty, with its own seeded PRNG (reproducible, no global state).
 *
 * The transforms are applied in this fixed order (the HF transformers / vLLM order, with
 * llama.cpp's repetition penalty first):
 *   1. repetition penalty over the last repeat_last_n accepted tokens (llama.cpp semantics:
 *      each distinct token in the window once: a positive logit is divided by the penalty,
 *      a negative one multiplied);
 *   2. top-k: keep the k largest logits (ties broken by lowest token id);
 *   3. temperature: logits / T, softmax over what is left;
 *   4. top-p (nucleus): keep the smallest set of most likely tokens whose mass reaches
 *      top_p (the token that crosses top_p is kept; at least one token is kept);
 *   5. min-p: drop tokens whose probability is below min_p * (the largest probability);
 *   6. renormalise and draw one token with the sampler's PRNG.
 * temperature <= 0 means greedy: the argmax of the penalised logits, lowest id on ties
 * (top-k/top-p/min-p cannot change it), and no random number is drawn.
 * NaN logits count as -inf. A row whose every logit is -inf (or NaN) is treated as a row
 * of equal logits (uniform); if some logits are +inf, only those are kept, equally likely.
 * Cost per call is O(n_vocab) expected: top-k uses a k-heap (k <= 256) or quickselect,
 * top-p a mass-guided quickselect, never a full sort of the vocabulary; without top-k,
 * tokens that top-p / min-p are sure to drop are skipped before any exp. */
#ifndef OPTSTUDIO_SAMPLER_H
#define OPTSTUDIO_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "../errors.h"

/* Plain settings; sampler_params_default() gives the "off" value of each. */
typedef struct sampler_params {
	float temperature;     /* <= 0: greedy; 1: the model's own distribution */
	int32_t top_k;         /* <= 0 or >= n_vocab: off */
	float top_p;           /* in (0, 1); >= 1: off; <= 0 keeps only the most likely token */
	float min_p;           /* in (0, 1]; <= 0: off */
	float repeat_penalty;  /* > 0; 1: off */
	size_t repeat_last_n;  /* tokens of history the penalty looks at; 0: off */
	uint64_t seed;         /* PRNG seed; same seed + same logits -> same tokens */
} sampler_params;

typedef struct sampler sampler;

/* temperature 1, top_k 0, top_p 1, min_p 0, repeat_penalty 1, repeat_last_n 64, seed 0:
 * plain sampling from softmax(logits). */
sampler_params sampler_params_default(void);

/* Creates a sampler for rows of n_vocab logits (n_vocab >= 1). Checks the parameters
 * (OS_ERANGE naming the field: temperature/top_p/min_p NaN, repeat_penalty <= 0 or NaN,
 * n_vocab 0 or above INT32_MAX). The PRNG is seeded with p->seed, the history is empty. */
int sampler_new(sampler **out, size_t n_vocab, const sampler_params *p, os_error *err);
void sampler_free(sampler *s);

/* Parameters as given to sampler_new; borrowed, valid until sampler_free. */
const sampler_params *sampler_get_params(const sampler *s);
size_t sampler_n_vocab(const sampler *s);

/* Reseeds the PRNG and clears the penalty history: afterwards the sampler behaves as a
 * freshly created one with that seed. */
void sampler_reset(sampler *s, uint64_t seed);

/* Appends token to the penalty history (keeps the last repeat_last_n). Call it for the
 * prompt tokens and for every token actually emitted: sampling does not append by itself,
 * because with speculative decoding the emitted token may not be the one sampled.
 * Tokens outside [0, n_vocab) are ignored. */
void sampler_accept(sampler *s, int32_t token);

/* Draws one token from logits (n_vocab floats, not modified) after the transforms above.
 * Always returns a token in [0, n_vocab). Greedy draws no random number; otherwise exactly
 * one uniform is drawn per call. */
int32_t sampler_sample(sampler *s, const float *logits);

/* The final distribution sampler_sample draws from, written to probs (n_vocab floats,
 * summing to 1, 0 for every excluded token; one-hot for greedy). Draws no random number.
 * Used by speculative decoding for the target's p and the draft's q. */
void sampler_probs(sampler *s, const float *logits, float *probs);

/* Draws a token from an arbitrary non-negative weight vector (n entries, need not sum to
 * 1; e.g. the residual max(0, p - q) of speculative decoding) with the sampler's PRNG.
 * Returns -1 when n is 0 or no weight is positive (NaN and inf weights count as 0). */
int32_t sampler_sample_weights(sampler *s, const float *weights, size_t n);

/* A uniform double in [0, 1) from the sampler's PRNG (53 random bits), e.g. for the
 * accept test min(1, p/q) of speculative decoding. */
double sampler_uniform(sampler *s);

#endif
