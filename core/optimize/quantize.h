/* quantize.h: turning a loaded model into a quantized model, in memory or as a file. The
 * recipe says which run-time format each weight matrix gets; calibration-based methods
 * (SmoothQuant, AWQ) first transform the model's f32 weights in memory (smoothquant.h,
 * awq.h) and then quantize them through quant_model_apply / quant_write_gguf like plain
 * round-to-nearest does. The output file records its recipe and parent, and model_open loads
 * it back to identical logits.
 *
 * Which format each matrix gets (quant_matrix_format):
 *   blk.*  (q, k, v, o, gate, up, down)   the method's format:
 *            fp8 -> FP8 W8A16, fp8-w8a8 -> FP8 W8A8, int8 / int8-smoothquant -> INT8 W8A8,
 *            int4-rtn / int4-awq -> INT4 W4A16 with group awq_group_for(group, cols)
 *            (the group asked for when it divides cols, else 64 or 32: SmolLM2's 576-wide
 *            inputs take 64 when 128 is asked for)
 *   token_embd.weight and output.weight    by the recipe's head policy (quant_head):
 *            bf16   (default) BF16 weights, f32 activations (the bf16 matmul rounds them
 *                   to bf16 per call, kernels.h). The head's input has no smoothing and
 *                   its error reaches the logits directly, so it stays in 16 bits, as AWQ
 *                   and TensorRT-LLM keep lm_head unquantized: half the bytes of F32 for
 *                   an error far below the blocks' (SmolLM2 fp8 on held-out text: an FP8
 *                   head raises the mean KL to F32 by a third and costs 2 points of top-1
 *                   agreement; a BF16 head measures the same as F32)
 *            f32    kept as the source has it (F32)
 *            method the blocks' format, INT4 group chosen for the head's width as for
 *                   any matrix (576 columns take 64 when 128 is asked for)
 *            The embedding op reads one row per token from any of these formats.
 *            Tied models (no output.weight) keep ONE matrix that is both the
 *            embedding and the head: the file holds it once, and model_step_bytes counts one
 *            row for the lookup plus the whole matrix for the head.
 *   norms                                   f32 (SmoothQuant folds its scales into them).
 *
 * File format: GGUF v3, the source's metadata (keys starting "optstudio." are not copied)
 * plus
 *   optstudio.recipe          string: quant_recipe_to_json
 *   optstudio.parent.name     string (when known): the hub name or file the model came from
 *   optstudio.parent.sha256   string (when known): hex digest of the parent file
 *   optstudio.kv_type         string "fp8" | "int8" | "bf16" (absent: f32): the KV cache
 *                             element type engines use by default (engine.h,
 *                             ENGINE_KV_MODEL)
 * and tensors with the source's names and shapes. A quantized matrix W (rows, cols), GGUF
 * shape [cols, rows], is the tensor "<name>" holding its codes row-major, with its scales
 * and zero points as companion tensors right after it:
 *   OPTSTUDIO_TYPE_FP8_E4M3 (1000)     E4M3FN codes, 1 byte each; run W8A16
 *   OPTSTUDIO_TYPE_FP8_E4M3_A8 (1001)  E4M3FN codes, 1 byte each; run W8A8
 *   OPTSTUDIO_TYPE_I8_ROW (1002)       int8 codes in [-127, 127]; run W8A8
 *     "<name>.scale"  F32 [1, rows]: w[r][c] = value(code[r][c]) * scale[r]
 *   OPTSTUDIO_TYPE_U4 (1003)           uint4 codes, two a byte, element 2i in the low nibble
 *     "<name>.scale"  F32 [cols / G, rows]
 *     "<name>.zero"   OPTSTUDIO_TYPE_U8 (1004) [cols / G, rows], values 0..15:
 *                     w[r][c] = scale[r][c / G] * (code[r][c] - zero[r][c / G])
 *     the group size G = cols / (ne[0] of .scale), one of 32, 64, 128 (per matrix).
 *   GGML BF16 / F32                    a head kept in 16 / 32 bits (no companions); in
 *                                      a file with optstudio.recipe, model_open keeps
 *                                      these matrices in their file format at run time
 * This is exactly the run-time layout of core/cpu/kernels_quant.h, so loading is a copy.
 * Element rules (E4M3 rounding, int8 and uint4 round to nearest even, scales absmax / 448,
 * absmax / 127, (max - min) / 15) are core/numerics.h's; quant_formats.h quantizes. */
#ifndef OPTSTUDIO_QUANTIZE_H
#define OPTSTUDIO_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/cpu/threadpool.h"
#include "core/engine/model.h"
#include "core/errors.h"
#include "core/format/gguf.h"
#include "core/optimize/calibrate.h"

typedef enum quant_method {
	QUANT_FP8 = 0,        /* FP8 E4M3 W8A16, per-output-channel scales */
	QUANT_FP8_W8A8,       /* FP8 E4M3 weights and dynamic per-token FP8 activations */
	QUANT_INT8_SQ,        /* INT8 SmoothQuant W8A8 (per-channel int8 weights, per-token int8 acts) */
	QUANT_INT4_AWQ,       /* INT4 W4A16 group-wise asymmetric, activation-aware scales */
	QUANT_INT4_RTN,       /* INT4 W4A16 group-wise asymmetric, plain round to nearest */
	QUANT_INT8_RTN,       /* INT8 W8A8 as SmoothQuant's format, without smoothing */
	QUANT_N_METHODS
} quant_method;

/* What token_embd.weight / output.weight become (the head policy, quantize.h's top). */
typedef enum quant_head {
	QUANT_HEAD_BF16 = 0,  /* default: BF16 */
	QUANT_HEAD_F32,       /* unchanged F32 */
	QUANT_HEAD_METHOD,    /* the method's format, as the blocks */
} quant_head;

typedef enum quant_kv {
	QUANT_KV_MODEL = 0,   /* the KV cache keeps the model's precision */
	QUANT_KV_FP8,
	QUANT_KV_INT8,
	QUANT_KV_BF16,        /* bf16 values, no scales: half of F32, ~100x finer than FP8 */
} quant_kv;

/* What to do, as the user said it. Plain data. */
typedef struct quant_recipe {
	quant_method method;
	float alpha;              /* SmoothQuant migration strength, 0..1 (default 0.5) */
	size_t group;             /* INT4 group size: 32, 64 or 128 (default 128) */
	quant_kv kv;              /* KV cache element type recorded for the run time */
	quant_head head;          /* embedding / LM head format (default QUANT_HEAD_BF16) */
	const char *calib_path;   /* calibration text; NULL: the data home's text/calibration.txt */
	size_t calib_samples;     /* N samples ... */
	size_t calib_seq_len;     /* ... of L tokens each */
	bool scale_search;        /* scales by an importance-weighted search on calibration
	                           * (quant_matrix_new_weighted) instead of from the range:
	                           * FP8 per-row scale, INT4 per-group scale and zero point (for
	                           * int4-awq inside the AWQ search too). Needs calibration;
	                           * not for the INT8 methods. Default: on for int4-awq only */
	bool gptq;                /* block matrices by GPTQ error compensation (gptq.h) with
	                           * the input Hessians of calibration (on the model as
	                           * transformed: int4-awq folds its scales first), group
	                           * scales by the weighted search when scale_search. For
	                           * int4-awq, int4-rtn and fp8; needs calibration. Default:
	                           * on for int4-awq only (quant_method_gptq_default) */
} quant_recipe;

/* "fp8", "fp8-w8a8", "int8-smoothquant", "int4-awq", "int4-rtn", "int8" <-> enum
 * (name: "?" out of range). */
const char *quant_method_name(quant_method m);
int quant_method_parse(const char *name, quant_method *out, os_error *err);
/* True for the methods that need calibration (int8-smoothquant, int4-awq). */
bool quant_method_calibrates(quant_method m);
/* True for the methods whose front ends (quantize, jobs, wizard) turn scale_search on unless
 * told otherwise: int4-awq (which calibrates anyway) and fp8 (when calibration text is
 * available; without it fp8 falls back to the calibration-free plain scales).
 * quant_recipe_default itself stays calibration-free for fp8 (self-drafts rely on that). */
bool quant_method_search_default(quant_method m);
/* True for the methods whose front ends (quantize, jobs, wizard) turn gptq on unless told
 * otherwise: int4-awq only (it calibrates anyway; GPTQ after its scales takes SmolLM2's INT4
 * perplexity cost from +19% to about +6-8%, for a second calibration pass and the GPTQ
 * stage). quant_recipe_default follows it, as it does the search for int4-awq: fp8 and
 * int4-rtn stay calibration-free there (self-drafts rely on that). */
bool quant_method_gptq_default(quant_method m);
/* True when r needs calibration: a calibrating method, scale_search or gptq. */
bool quant_recipe_calibrates(const quant_recipe *r);
/* "model" (keep), "fp8", "int8", "bf16" <-> enum; parse also takes "f32" / "none" for the
 * model's. */
const char *quant_kv_name(quant_kv kv);
int quant_kv_parse(const char *name, quant_kv *out, os_error *err);
/* "bf16", "f32", "method" <-> enum (name: "?" out of range). */
const char *quant_head_name(quant_head h);
int quant_head_parse(const char *name, quant_head *out, os_error *err);
/* Defaults for a method (alpha 0.5, group 128, samples/seq_len sized for a small model;
 * scale_search and gptq on for int4-awq). */
quant_recipe quant_recipe_default(quant_method m);
/* True for the methods gptq works with: int4-awq, int4-rtn, fp8. */
bool quant_method_gptq_ok(quant_method m);
/* Checks alpha in [0, 1], group in {32, 64, 128}, method, kv and head in range, gptq only
 * for the methods quant_method_gptq_ok, samples and seq_len > 0 for calibrating recipes;
 * OS_EUSAGE naming the field. */
int quant_recipe_check(const quant_recipe *r, os_error *err);
/* The recipe as a JSON object text (malloc'd; free it; NULL when out of memory), stored in
 * the output file and hub: {"method": ..., "kv": ..., "group": G (INT4), "alpha": A
 * (SmoothQuant), "calib", "samples", "seq_len" (calibrating recipes), "head": "bf16" |
 * "f32" | "method", "scale_search": true (only when on), "gptq": true (only when on)}. */
char *quant_recipe_to_json(const quant_recipe *r);

/* The run-time format (enum be_wfmt) and INT4 group (0 otherwise) that r gives the matrix
 * named name with cols input columns (the table at the top of this file). OS_EUNSUPPORTED
 * when no INT4 group divides cols. */
int quant_matrix_format(const quant_recipe *r, const char *name, size_t cols, int *fmt,
			size_t *group, os_error *err);

/* Progress: called with done/total units and a short stage label; returns false to stop
 * (the call then fails with OS_ESTOPPED and, for the writer, leaves no output). */
typedef bool (*quant_progress_fn)(void *ctx, const char *stage, size_t done, size_t total);

/* Quantizes m's F32 matrices in place into the formats r gives them (BF16 for the head by
 * default) (model_set_matrix), so
 * that m runs as the file quant_write_gguf would write loads: the same codes, the same
 * logits. Matrices already in their target format are left alone; a matrix in another
 * format than F32 or its target is OS_EUSAGE. On failure m may be partly quantized (still
 * a valid model). */
int quant_model_apply(model *m, const quant_recipe *r, quant_progress_fn progress,
		      void *progress_ctx, os_error *err);

/* quant_model_apply with scale_search: every block matrix (F32) is quantized by
 * quant_matrix_new_weighted with the importance of its input, st's mean_sq of its layer and
 * site (st gathered on m as it is now: transforms after calibration change the importance);
 * the head follows the head policy as in quant_model_apply. OS_EUSAGE when st does not
 * match m (layers, widths) or r has no scale_search. The searches run row-parallel on pool
 * (NULL: the caller's thread; the result does not depend on it). */
int quant_model_apply_search(model *m, const quant_recipe *r, const calib_stats *st,
			     threadpool *pool, quant_progress_fn progress, void *progress_ctx,
			     os_error *err);

/* quant_model_apply with gptq: every block matrix (F32) is quantized by gptq_quantize with
 * the Hessian of its input, calib_hessian of its layer and site in st (gathered on m as it
 * is now, with the hessian option), in the method's format (INT4 at awq_group_for(group,
 * cols), FP8 per row), group scales by the weighted search when r->scale_search; the head
 * follows the head policy as in quant_model_apply. OS_EUSAGE when r has no gptq, st does
 * not match m (layers, widths) or a block matrix's Hessian is missing. Rows run in parallel
 * on pool (NULL: the caller's thread; the result does not depend on it). progress gets the
 * stage "gptq" per matrix. rep (may be NULL) receives the sums over the block matrices. */
typedef struct gptq_report gptq_report;
int quant_model_apply_gptq(model *m, const quant_recipe *r, const calib_stats *st,
			   threadpool *pool, quant_progress_fn progress, void *progress_ctx,
			   gptq_report *rep, os_error *err);
/* quant_model_apply_gptq on part of m, for GPTQ in passes whose Hessians cover a range of
 * layers each: the block matrices of layers [layer_begin, layer_end) and, when rest, every
 * matrix outside the blocks (the head policy's); the others are left as they are, and st
 * needs Hessians for the range only. *done (in/out) counts the matrices visited by the
 * passes so far: progress gets ("gptq", *done, every matrix of m), so passes that cover each
 * layer once and the rest once end at the total. quant_model_apply_gptq is the one pass
 * (0, n_layers, true). rep (may be NULL) receives the sums over this call's matrices.
 * OS_EUSAGE also for a range outside the model. */
int quant_model_apply_gptq_layers(model *m, const quant_recipe *r, const calib_stats *st,
				  size_t layer_begin, size_t layer_end, bool rest,
				  threadpool *pool, quant_progress_fn progress,
				  void *progress_ctx, size_t *done, gptq_report *rep,
				  os_error *err);

/* Writes m's weights, quantized as r says, to out_path as GGUF (the format at the top of
 * this file): metadata copied from src (the file m was loaded from), plus optstudio.recipe
 * (JSON), optstudio.kv_type, optstudio.parent.sha256 and optstudio.parent.name when known
 * (parent_name/parent_sha256 may be NULL). Norms are written from m (as transformed). Each
 * matrix must be F32 (quantized here, as quant_model_apply would) or already in its target
 * format (written as it is); else OS_EUSAGE. The write is atomic: a failure (full disk:
 * OS_EIO; stop: OS_ESTOPPED) leaves no partial file and out_path untouched. */
int quant_write_gguf(const model *m, const gguf_file *src, const quant_recipe *r,
		     const char *parent_name, const char *parent_sha256, const char *out_path,
		     quant_progress_fn progress, void *progress_ctx, os_error *err);

#endif
