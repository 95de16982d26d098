/* quant_flow.h: the calibrated part of quantizing a model, shared by `optstudio quantize`
 * and the job pipeline's calibrate and quantize stages: calibrate on the F32 model, then
 * transform it (SmoothQuant folding, AWQ's scale search) and quantize its block matrices in
 * memory where the recipe's calibration decides the codes (the importance-weighted scale
 * search, GPTQ); quant_write_gguf then writes what is left (plain matrices, the head).
 *
 * The sequence for each recipe (quantize.h's quant_recipe):
 *   int8-smoothquant       calibrate; fold the smoothing scales
 *   int4-awq               calibrate; AWQ folds its scales, and with scale_search quantizes
 *                          each finished layer itself (awq.h)
 *   int4-awq + gptq        calibrate; AWQ folds its scales leaving F32 (awq_opts.keep_f32);
 *                          calibrate AGAIN with Hessians on the folded model (GPTQ's H must
 *                          be that of the scaled inputs); GPTQ on every block matrix
 *   fp8 / int4-rtn + gptq  calibrate with Hessians; GPTQ
 *   fp8 / int4-rtn + scale_search   calibrate; the weighted scale search
 *   anything else          nothing to do here */
#ifndef OPTSTUDIO_QUANT_FLOW_H
#define OPTSTUDIO_QUANT_FLOW_H

#include <stdbool.h>
#include <stddef.h>

#include "core/engine/backend.h"
#include "core/engine/model.h"
#include "core/engine/tokenizer.h"
#include "core/errors.h"
#include "core/optimize/awq.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/gptq.h"
#include "core/optimize/quantize.h"

/* What the flow needs besides the model and recipe. Borrowed. */
typedef struct quant_flow_opts {
	backend *be;                 /* a CPU backend: calibration engines, AWQ's matmuls, the
	                              * Hessians' products and the searches' thread pool */
	const tokenizer *tok;        /* the model's tokenizer */
	const char *calib_path;      /* the calibration text, resolved by the caller (the
	                              * recipe's calib_path or the data home's) */
	size_t hessian_budget;       /* bytes the Hessians may take [calibrate.h's default] */
	quant_progress_fn progress;  /* stages "calibrate" (samples), "awq search" (sites),
	                              * "hessians" (samples of the second calibration),
	                              * "quantize" (scale search) and "gptq" (matrices); false
	                              * stops with OS_ESTOPPED. NULL: none */
	void *progress_ctx;
} quant_flow_opts;

/* What happened, for the front ends' reports. */
typedef struct quant_flow_report {
	bool has_awq;
	awq_report awq;
	bool has_gptq;
	gptq_report gptq;            /* summed over the block matrices */
	double t_calib;              /* s in calibration (both passes) */
	double t_transform;          /* s in smoothing, the AWQ or scale search and GPTQ */
	double t_gptq;               /* s of those in GPTQ */
} quant_flow_report;

/* True when r changes the model in quant_flow_transform (then it needs quant_flow_calibrate
 * first): quant_recipe_calibrates. */
bool quant_flow_needed(const quant_recipe *r);

/* Runs m (F32 weights, CPU backend) over o->calib_path with r's samples and seq_len and
 * returns the statistics r's transform reads in *out (NULL when r does not calibrate), with
 * Hessians when r->gptq on a method without a transform of its own. The calibration engine
 * is made and freed here. rep (may be NULL) gets t_calib. Fails as calib_run_file does
 * (OS_EIO naming an unreadable text, OS_EUSAGE for a short one, OS_ESTOPPED), or with the
 * engine's error; with r->gptq, OS_ENOMEM before any work when the Hessians exceed the
 * budget, naming their size and how to quantize without GPTQ. */
int quant_flow_calibrate(model *m, const quant_recipe *r, const quant_flow_opts *o,
			 calib_stats **out, quant_flow_report *rep, os_error *err);

/* Applies r's calibrated steps (the table at the top) to m using st, quant_flow_calibrate's
 * result on this m (NULL only when r does not calibrate: then nothing is done). Afterwards m
 * is what quant_write_gguf with r writes. Fails with the steps' errors, OS_ESTOPPED when
 * progress says stop (m is then half done: discard it). rep (may be NULL) gets the reports
 * and times (t_calib is added to). */
int quant_flow_transform(model *m, const quant_recipe *r, const calib_stats *st,
			 const quant_flow_opts *o, quant_flow_report *rep, os_error *err);

#endif
