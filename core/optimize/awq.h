/* awq.h: activation-aware weight quantization (AWQ, W4A16): for each group of matrices that
 * read the same input, a grid search over alpha in [0, 1] for the per-channel scale
 *   s = mean|x|^alpha / sqrt(max(mean|x|^alpha) * min(mean|x|^alpha))
 * that minimises the output error sum ||x W^T - (x / s) Q(W diag(s))^T||^2 on calibration
 * rows, Q being group-wise asymmetric INT4 round-to-nearest (quant_formats.h). alpha = 0 is
 * plain RTN, so the search never does worse than RTN on those rows. The chosen s is folded
 * exactly as SmoothQuant folds (smoothquant.h), giving an f32 model with the same logits
 * whose INT4 RTN quantization is the AWQ model. An optional clipping search then shrinks
 * each (row, group)'s range by the ratio minimising that group's output error (this one
 * changes the f32 weights: the clipped values are what RTN will see). */
#ifndef OPTSTUDIO_AWQ_H
#define OPTSTUDIO_AWQ_H

#include <stdbool.h>
#include <stddef.h>

#include "core/cpu/threadpool.h"
#include "core/engine/backend.h"
#include "core/engine/model.h"
#include "core/errors.h"
#include "core/optimize/calibrate.h"

#define AWQ_DEFAULT_GROUP 128
#define AWQ_DEFAULT_GRID 20

/* Called after each (layer, site) searched: done of total. */
typedef void (*awq_progress_fn)(void *ctx, size_t done, size_t total);
/* Polled between sites; true stops with OS_ESTOPPED (the model is then half transformed:
 * still the same function, but discard it). */
typedef bool (*awq_stop_fn)(void *ctx);

/* Zero fields take the defaults. */
typedef struct awq_opts {
	size_t group;             /* INT4 group size 32, 64 or 128 [128] */
	size_t n_grid;            /* alpha = i / n_grid for i in 0..n_grid [20] (>= 1) */
	bool clip;                /* also search a clipping ratio per (row, group) */
	size_t n_clip_grid;       /* clip ratios 1 - i * (1 - min_clip) / n_clip_grid [20] */
	float min_clip;           /* smallest ratio tried [0.5] */
	bool weighted;            /* INT4 grid by importance (quant_matrix_new_weighted) in the
	                           * searches, the importance being calibrate.h's mean_sq of the
	                           * scaled activations, mean_sq / s^2; awq_apply then also
	                           * quantizes each finished layer to INT4 itself (see there) */
	bool keep_f32;            /* awq_apply only folds the scales (and clips): the layers
	                           * stay F32 even with weighted, for a quantizer that must
	                           * see the folded model whole (GPTQ recalibrates on it) */
	const float *importance;  /* awq_search with weighted: mean x^2 per channel of X (cols) */
	threadpool *pool;         /* the INT4 searches, row-parallel (the CPU backend's:
	                           * backend_cpu_pool); NULL: the caller's thread. Results do
	                           * not depend on it */
	backend *be;              /* matmuls of the search (host memory: a CPU backend); NULL:
	                           * plain C loops */
	awq_progress_fn progress;
	awq_stop_fn should_stop;
	void *cb_ctx;
} awq_opts;

/* Output error of the search on calibration rows, summed over sites and layers:
 * sum ||y - y'||^2 for plain RTN and for the chosen scales (and clipping), and the sum of
 * ||y||^2 to make them relative. */
typedef struct awq_report {
	double err_rtn;        /* alpha = 0: plain RTN; with weighted, the search's weighted
	                        * grid without scaling */
	double err_awq;        /* after the scale search */
	double err_clip;       /* after the clipping search (= err_awq when clip is off) */
	double energy;         /* sum ||y||^2 */
	double mean_alpha;     /* mean chosen alpha over the searched sites */
	size_t n_sites;
} awq_report;

/* Searches the scale for matrices mats[0..n_mats) (F32, all with cols columns) reading
 * the rows X (n_x, cols), with mean_abs (cols) the per-channel mean |x| (GQA-consistent when
 * the scale must be). Writes the best scale to s (cols), its alpha to *alpha, and the
 * output errors of alpha = 0 (RTN) and of the best to *err_rtn / *err_best (sum of squares
 * over every output of every matrix), and sum ||y||^2 to *energy. group must divide cols. */
int awq_search(const be_weight *const *mats, size_t n_mats, const float *X, size_t n_x,
	       const float *mean_abs, const awq_opts *o, float *s, float *alpha,
	       double *err_rtn, double *err_best, double *energy, os_error *err);

/* The INT4 group size used for a matrix of cols input columns when group is asked for: group
 * itself when it divides cols, else the largest of 64, 32 below it that does (SmolLM2's 576
 * = 4.5 x 128 takes 64); 0 when none does. quant_write_gguf should follow the same rule so
 * that the search optimised the format actually written. */
size_t awq_group_for(size_t group, size_t cols);

/* Applies AWQ to every site of every layer of m (F32 weights), using statistics gathered
 * on this same model (st must hold kept rows; layer count and widths must match:
 * OS_EUSAGE). rep (may be NULL) receives the errors. Each site uses
 * awq_group_for(group, width) (OS_EUSAGE naming the site when that is 0). */
/* With o->weighted the searches quantize with the importance-weighted grid, the clipping
 * search is skipped (the grid search already trades range for resolution), and each layer
 * ends with its matrices replaced (model_set_matrix) by INT4 at awq_group_for(group, cols)
 * made by quant_matrix_new_weighted with importance mean_sq / s^2 of the folded model: m
 * then holds exactly what quant_write_gguf writes for int4-awq (it keeps matrices already
 * in their target format). With o->keep_f32 that last step is skipped: m is the folded F32
 * model. */
int awq_apply(model *m, const calib_stats *st, const awq_opts *o, awq_report *rep,
	      os_error *err);

#endif
