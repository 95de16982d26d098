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
 *   anything else          nothing to do here
 *
 * GPTQ's Hessians (dim^2 floats per layer input) may exceed the budget for all layers at once
 * (a 1B model needs about 5 GB): the layers are then split into the fewest consecutive
 * ranges whose Hessians fit (quant_flow_plan_ranges), and each range in order gets its own
 * calibration pass, collecting that range's Hessians only, on the model as it is then, and
 * GPTQ on its block matrices, before the Hessians are freed. The earlier ranges are
 * quantized in memory by then, and the engine runs them as they are (the formats the
 * written file has), so later layers are calibrated on the outputs of quantized earlier ones
 * (sequential GPTQ, as in the GPTQ paper). The first range's matrices are those of a single
 * pass. fp8 / int4-rtn's first calibration then collects no Hessians (its statistics live
 * until the transform ends, and the first range's Hessians beside a later range's would
 * exceed the budget), so every range has its own pass: at most the budget of Hessians is
 * held at any time, for one more calibration pass than the ranges would need otherwise.
 * One pass, when everything fits, is the table above exactly. Only a single layer over the
 * budget is refused. */
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
	size_t hessian_budget;       /* bytes the Hessians may hold at once [calibrate.h's
	                              * default]; more splits GPTQ into layer ranges */
	quant_progress_fn progress;  /* stages "calibrate" (samples), "awq search" (sites),
	                              * "hessians" (samples of the Hessian calibrations: with
	                              * several passes, pass i of n reports its samples from
	                              * (i - 1) * samples of n * samples), "quantize" (scale
	                              * search) and "gptq" (matrices, counted on across the
	                              * passes up to all of the model's); false stops with
	                              * OS_ESTOPPED. NULL: none */
	void *progress_ctx;
} quant_flow_opts;

/* What happened, for the front ends' reports. */
typedef struct quant_flow_report {
	bool has_awq;
	awq_report awq;
	bool has_gptq;
	gptq_report gptq;            /* summed over the block matrices */
	size_t gptq_passes;          /* layer ranges GPTQ ran in (1 when the Hessians fit) */
	double t_calib;              /* s in calibration (both passes) */
	double t_transform;          /* s in smoothing, the AWQ or scale search and GPTQ */
	double t_gptq;               /* s of those in GPTQ */
} quant_flow_report;

/* True when r changes the model in quant_flow_transform (then it needs quant_flow_calibrate
 * first): quant_recipe_calibrates. */
bool quant_flow_needed(const quant_recipe *r);

/* Splits layers [0, n_layers) into consecutive ranges whose layer_bytes each sum to at most
 * budget, greedily (each range takes as many layers as fit: the fewest ranges). ends (room
 * for n_layers) gets one past each range's last layer; range k is [ends[k-1], ends[k]),
 * range 0 starts at 0. Returns the number of ranges: 1 when everything fits, 0 when one
 * layer alone exceeds budget (or n_layers is 0). */
size_t quant_flow_plan_ranges(const size_t *layer_bytes, size_t n_layers, size_t budget,
			      size_t *ends);

/* Runs m (F32 weights, CPU backend) over o->calib_path with r's samples and seq_len and
 * returns the statistics r's transform reads in *out (NULL when r does not calibrate), with
 * Hessians when r->gptq on a method without a transform of its own and they fit the budget
 * at once (in layer ranges, none: each range gets its own pass in the transform). The
 * calibration engine is made and
 * freed here. rep (may be NULL) gets t_calib. Fails as calib_run_file does (OS_EIO naming an
 * unreadable text, OS_EUSAGE for a short one, OS_ESTOPPED), or with the engine's error; with
 * r->gptq, OS_ENOMEM before any work when one layer's Hessians exceed the budget, naming
 * their size and how to quantize without GPTQ. */
int quant_flow_calibrate(model *m, const quant_recipe *r, const quant_flow_opts *o,
			 calib_stats **out, quant_flow_report *rep, os_error *err);

/* Applies r's calibrated steps (the table at the top) to m using st, quant_flow_calibrate's
 * result on this m (NULL only when r does not calibrate: then nothing is done), with GPTQ's
 * further calibration passes (one per layer range after those st covers). Afterwards m is
 * what quant_write_gguf with r writes. Fails with the steps' errors, OS_ESTOPPED when
 * progress says stop (m is then half done: discard it). rep (may be NULL) gets the reports
 * and times (t_calib is added to). */
int quant_flow_transform(model *m, const quant_recipe *r, const calib_stats *st,
			 const quant_flow_opts *o, quant_flow_report *rep, os_error *err);

#endif
