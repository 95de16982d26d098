/* calibrate.h: runs an F32 model over calibration text and records, for every layer and
 * every linear-layer input site (engine.h's enum engine_site), per input channel max |x| and
 * mean |x|, plus a seeded random subset of activation rows for AWQ's search, and on request
 * the input Hessian E[x x^T] of each site for GPTQ (gptq.h). */
#ifndef OPTSTUDIO_CALIBRATE_H
#define OPTSTUDIO_CALIBRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine/backend.h"
#include "core/engine/engine.h"
#include "core/engine/tokenizer.h"
#include "core/errors.h"

/* Defaults sized for SmolLM2-135M. */
#define CALIB_DEFAULT_SAMPLES 32
#define CALIB_DEFAULT_SEQ_LEN 256
#define CALIB_DEFAULT_KEEP_ROWS 256
/* Bytes the Hessians may take unless told otherwise (SmolLM2-135M needs about 400 MB). */
#define CALIB_DEFAULT_HESSIAN_BUDGET ((size_t)2 << 30)

/* Called after each sample: done of total samples. Returns nothing. */
typedef void (*calib_progress_fn)(void *ctx, size_t done, size_t total);
/* Polled between samples; true stops calibration with OS_ESTOPPED. */
typedef bool (*calib_stop_fn)(void *ctx);

/* Zero fields take the defaults. */
typedef struct calib_opts {
	size_t n_samples;            /* N samples ... [CALIB_DEFAULT_SAMPLES] */
	size_t seq_len;              /* ... of L tokens each [CALIB_DEFAULT_SEQ_LEN] */
	size_t keep_rows;            /* activation rows kept per site (the same token positions
	                              * at every site) [CALIB_DEFAULT_KEEP_ROWS]; capped by N*L */
	uint64_t seed;               /* which rows are kept [1] */
	bool add_bos;                /* bos replaces position 0 of each sample [false] */
	int32_t bos;
	calib_progress_fn progress;  /* NULL: none */
	calib_stop_fn should_stop;   /* NULL: never */
	void *cb_ctx;
	bool hessian;                /* also accumulate H = (1/n) sum x x^T per site of the
	                              * layers [layer_begin, layer_end): dim^2 floats each */
	size_t layer_begin;          /* first layer with Hessians [0] */
	size_t layer_end;            /* one past the last [0: the model's layer count] */
	size_t hessian_budget;       /* bytes the Hessians may take; more is OS_ENOMEM naming
	                              * the size [CALIB_DEFAULT_HESSIAN_BUDGET] */
	backend *be;                 /* the X^T X products through its F32 matmul (a CPU
	                              * backend: host memory); NULL: plain C loops */
} calib_opts;

/* The defaults above. */
calib_opts calib_opts_default(void);

/* What was seen at one site of one layer. Plain data owned by the calib_stats. */
typedef struct calib_site {
	size_t dim;          /* input channels */
	float *max_abs;      /* (dim) max over calibration tokens of |x_j| */
	float *mean_abs;     /* (dim) mean over calibration tokens of |x_j| */
	float *mean_sq;      /* (dim) mean over calibration tokens of x_j^2: the diagonal of
	                      * E[x x^T], the weight each input column's error gets in the
	                      * expected output error (quant_formats.h's importance) */
	float *rows;         /* (n_rows, dim) kept activation rows, in token order */
	size_t n_rows;
} calib_site;

typedef struct calib_stats calib_stats;

/* Calibrates e's model (F32 or BF16 weights, or with some block matrices already quantized,
 * run as they are, as GPTQ's passes after the first; CPU backend: the observer reads
 * activations as host memory) on tokens[0..n_tokens) (borrowed): N samples of L tokens each, spread evenly
 * over the stream without overlap, each run as a fresh KV sequence, so the engine's KV cache
 * must hold L tokens. Fails with OS_EUSAGE when the stream holds fewer than N * L tokens (the
 * message says how many are needed and given), or a zero size, or a Hessian layer range
 * outside the model; OS_ENOMEM when the Hessians asked for exceed the budget (before any
 * work; the message names the bytes needed and the budget) or memory runs out; OS_ESTOPPED
 * when asked; or the engine's error. The engine's observer is cleared afterwards. */
int calib_run_tokens(engine *e, const int32_t *tokens, size_t n_tokens, const calib_opts *o,
		     calib_stats **out, os_error *err);
/* Same on text[0..len) tokenized with tok (no BOS added by the tokenizer). */
int calib_run_text(engine *e, const tokenizer *tok, const char *text, size_t len,
		   const calib_opts *o, calib_stats **out, os_error *err);
/* Same on the text of a file (OS_EIO naming it when it cannot be read; an empty file is
 * OS_EUSAGE). */
int calib_run_file(engine *e, const tokenizer *tok, const char *path, const calib_opts *o,
		   calib_stats **out, os_error *err);

void calib_stats_free(calib_stats *s);

/* Bytes the Hessians of layers [layer_begin, layer_end) of a model with config c take
 * (layer_end 0: all): sum over those layers and sites of dim^2 * 4. */
size_t calib_hessian_bytes(const model_config *c, size_t layer_begin, size_t layer_end);

/* Number of layers recorded and tokens seen per site. */
size_t calib_n_layers(const calib_stats *s);
size_t calib_n_tokens(const calib_stats *s);
/* The site's record; borrowed, valid until calib_stats_free. layer < n_layers, site <
 * ENGINE_N_SITES. */
const calib_site *calib_get(const calib_stats *s, size_t layer, int site);
/* The site's Hessian H = (1/n) sum over the calibration tokens of x x^T, (dim, dim) float
 * row-major, symmetric (calib_get's dim); borrowed, valid until calib_stats_free. NULL when
 * it was not collected (no hessian option, or layer outside the range asked for). */
const float *calib_hessian(const calib_stats *s, size_t layer, int site);
/* "attn_in", "attn_out", "ffn_in", "ffn_down_in". */
const char *calib_site_name(int site);

#endif
