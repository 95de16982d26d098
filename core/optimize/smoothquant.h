/* smoothquant.h: SmoothQuant (W8A8) and the scale folding it shares with AWQ: per input
 * channel j of a linear layer, x_j / s_j and W[:, j] * s_j give the same output, and the
 * division is folded into the op that produces x (an RMSNorm weight, w_up's rows, wv's rows),
 * so the f32 model computes the same function with activations that are easier to quantize.
 *   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)      (max over the rows of every matrix
 *                                                     reading x; alpha in [0, 1])
 * Sites (engine.h): ATTN_IN -> attn_norm and wq/wk/wv columns; FFN_IN -> ffn_norm and
 * w_gate/w_up columns; FFN_DOWN_IN -> w_up rows (silu(gate) * up is linear in up) and w_down
 * columns; ATTN_OUT -> wv rows and wo columns, exact under grouped-query attention because
 * channel (h, d) of wo's input is channel (h / group, d) of v: s is shared by the query
 * heads of one kv head (the max over them is taken before the formula). */
#ifndef OPTSTUDIO_SMOOTHQUANT_H
#define OPTSTUDIO_SMOOTHQUANT_H

#include <stddef.h>

#include "core/engine/model.h"
#include "core/errors.h"
#include "core/optimize/calibrate.h"

/* The matrices that read site's activations in layer (wq wk wv; wo; w_gate w_up; w_down):
 * writes up to 3 pointers into mats (borrowed from w) and returns their number. */
size_t smooth_site_matrices(model_weights *w, size_t layer, int site, be_weight **mats);

/* Input width of a site: dim, n_heads * head_dim, dim, ffn_dim. */
size_t smooth_site_dim(const model_config *c, int site);

/* Makes a per-channel vector of the ATTN_OUT site (n_heads * head_dim) consistent with
 * grouped-query attention in place: v[(h, d)] becomes the max over the heads h' sharing h's
 * kv head of v[(h', d)]. A no-op when n_heads == n_kv_heads. */
void smooth_gqa_max(const model_config *c, float *v);

/* Folds scales s (site dim entries, finite and > 0) into m's layer: the matrices reading the
 * site get W[:, j] *= s_j, the producer of the site is divided by s_j. Exact in real
 * arithmetic (f32 rounding aside). ATTN_OUT: s must be GQA-consistent (smooth_gqa_max),
 * else OS_EUSAGE. m's matrices must be F32 (OS_EUNSUPPORTED otherwise). */
int smooth_fold(model *m, size_t layer, int site, const float *s, os_error *err);

/* SmoothQuant scales of one site from calibration: s (site dim) per the formula above,
 * GQA-consistent for ATTN_OUT; channels with max|X| = 0 or max|W| = 0 get s = 1, and s is
 * kept in [1e-5, 1e5]. */
int smooth_compute_scales(model *m, const calib_stats *st, size_t layer, int site,
			  float alpha, float *s, os_error *err);

/* Applies SmoothQuant to every site of every layer of m (F32 weights), with alpha in [0, 1]
 * (OS_EUSAGE otherwise), from statistics gathered on this same model (layer count and
 * widths must match: OS_EUSAGE). The model then computes the same logits up to f32
 * rounding; its weights are ready for per-channel INT8 quantization. */
int smoothquant_apply(model *m, const calib_stats *st, float alpha, os_error *err);

#endif
