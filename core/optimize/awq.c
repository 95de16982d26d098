/* awq.c: AWQ's scale search and clipping search on calibration rows, folded into the f32
 * model (awq.h). */
#include "awq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/optimize/quant_formats.h"
#include "core/optimize/smoothquant.h"

/* The INT4 grid search inside the scale search (weighted): 5 of the 21 scales, a
 * quarter of the final search's cost per candidate alpha; the final quantization uses all. */
#define AWQ_SEARCH_STEPS 4

static float *alloc_f(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0)
		return NULL;
	return p;
}

static void opts_fill(awq_opts *d, const awq_opts *o)
{
	memset(d, 0, sizeof *d);
	if (o)
		*d = *o;
	if (!d->group)
		d->group = AWQ_DEFAULT_GROUP;
	if (!d->n_grid)
		d->n_grid = AWQ_DEFAULT_GRID;
	if (!d->n_clip_grid)
		d->n_clip_grid = 20;
	if (!(d->min_clip > 0.0f && d->min_clip < 1.0f))
		d->min_clip = 0.5f;
}

/* Y (n, rows) = X (n, cols) W^T, W (rows, cols) f32; through the backend when there is one. */
static int mm(const awq_opts *o, float *Y, const float *X, size_t n, const float *W, size_t rows,
	      size_t cols)
{
	if (o->be && o->be->ops->matmul[BE_WFMT_F32]) {
		be_weight bw = {.fmt = BE_WFMT_F32, .rows = rows, .cols = cols, .data = (void *)W};
		return o->be->ops->matmul[BE_WFMT_F32](o->be->ctx, Y, X, n, &bw);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t r = 0; r < rows; r++) {
			float acc = 0;
			const float *x = X + i * cols, *w = W + r * cols;
			for (size_t k = 0; k < cols; k++)
				acc += x[k] * w[k];
			Y[i * rows + r] = acc;
		}
	return OS_OK;
}

static double sq_diff(const float *a, const float *b, size_t n)
{
	double e = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		e += d * d;
	}
	return e;
}

/* s = max(mean^alpha, 1e-4) normalised by sqrt(max * min). alpha = 0 gives exactly 1. */
static void scales_for(float *s, const float *mean, size_t cols, float alpha)
{
	if (alpha == 0.0f) {
		for (size_t j = 0; j < cols; j++)
			s[j] = 1.0f;
		return;
	}
	float lo = INFINITY, hi = 0;
	for (size_t j = 0; j < cols; j++) {
		float v = powf(mean[j] > 0 ? mean[j] : 0.0f, alpha);
		v = v > 1e-4f ? v : 1e-4f;
		s[j] = v;
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	float norm = sqrtf(lo * hi);
	for (size_t j = 0; j < cols; j++)
		s[j] /= norm;
}

/* Rows of Wq = Q(W diag(s)) for a pool: the INT4 search dominates AWQ's time, rows are
 * independent. */
typedef struct fake_job {
	const float *W, *s, *imp;
	float *Wq;
	size_t rows, cols, group;
} fake_job;

#define AWQ_TASK_ROWS 8

static void fake_task(void *ctx, size_t task, size_t thread)
{
	const fake_job *j = ctx;
	size_t r1 = (task + 1) * AWQ_TASK_ROWS < j->rows ? (task + 1) * AWQ_TASK_ROWS : j->rows;
	for (size_t r = task * AWQ_TASK_ROWS; r < r1; r++) {
		float *q = j->Wq + r * j->cols;
		for (size_t c = 0; c < j->cols; c++)
			q[c] = j->W[r * j->cols + c] * j->s[c];
		if (j->imp)
			quant_fake_int4_row_weighted(q, q, j->cols, j->group, j->imp,
						     AWQ_SEARCH_STEPS);
		else
			quant_fake_int4_row(q, q, j->cols, j->group, 1.0f);
	}
}

/* Sum over the rows of ||Y - (X / s) Q(W diag(s))^T||^2 for one matrix; Xs = X / s given.
 * Wq (rows, cols) and Yq (n_x, rows) are scratch. */
static int matrix_error(const awq_opts *o, const be_weight *w, const float *Y, const float *Xs,
			size_t n_x, const float *s, const float *imp, float *Wq, float *Yq, double *e)
{
	size_t rows = w->rows, cols = w->cols;
	fake_job j = {.W = w->data, .s = s, .imp = imp, .Wq = Wq, .rows = rows, .cols = cols,
		      .group = o->group};
	threadpool_run(o->pool, (rows + AWQ_TASK_ROWS - 1) / AWQ_TASK_ROWS, fake_task, &j);
	int rc = mm(o, Yq, Xs, n_x, Wq, rows, cols);
	if (rc)
		return rc;
	*e = sq_diff(Y, Yq, n_x * rows);
	return OS_OK;
}

int awq_search(const be_weight *const *mats, size_t n_mats, const float *X, size_t n_x,
	       const float *mean_abs, const awq_opts *o_in, float *s, float *alpha,
	       double *err_rtn, double *err_best, double *energy, os_error *err)
{
	awq_opts o;
	opts_fill(&o, o_in);
	if (n_mats == 0 || n_x == 0)
		return os_error_set(err, OS_EUSAGE, "awq: nothing to search (%zu matrices, %zu rows)",
				    n_mats, n_x);
	size_t cols = mats[0]->cols, max_rows = 0, sum_rows = 0;
	for (size_t k = 0; k < n_mats; k++) {
		if (mats[k]->cols != cols || mats[k]->fmt != BE_WFMT_F32)
			return os_error_set(err, OS_EUSAGE, "awq: matrix %zu is %s with %zu columns "
					    "(expected F32 with %zu)", k,
					    be_wfmt_name(mats[k]->fmt), mats[k]->cols, cols);
		max_rows = mats[k]->rows > max_rows ? mats[k]->rows : max_rows;
		sum_rows += mats[k]->rows;
	}
	if ((o.group != 32 && o.group != 64 && o.group != 128) || cols % o.group)
		return os_error_set(err, OS_EUSAGE, "awq: group %zu must be 32, 64 or 128 and divide "
				    "%zu columns", o.group, cols);
	int rc = OS_OK;
	float *Y = alloc_f(n_x * sum_rows), *Yq = alloc_f(n_x * max_rows);
	float *Wq = alloc_f(max_rows * cols), *Xs = alloc_f(n_x * cols), *st = alloc_f(cols);
	bool weighted = o.weighted && o.importance;
	float *imp = weighted ? alloc_f(cols) : NULL;
	if (!Y || !Yq || !Wq || !Xs || !st || (weighted && !imp)) {
		rc = os_error_set(err, OS_ENOMEM, "awq: out of memory");
		goto done;
	}
	/* the f32 outputs, once */
	double en = 0;
	for (size_t k = 0, off = 0; k < n_mats; off += n_x * mats[k]->rows, k++) {
		if ((rc = mm(&o, Y + off, X, n_x, mats[k]->data, mats[k]->rows, cols)))
			goto backend_fail;
		for (size_t i = 0; i < n_x * mats[k]->rows; i++)
			en += (double)Y[off + i] * Y[off + i];
	}
	double best = INFINITY;
	for (size_t g = 0; g <= o.n_grid; g++) {
		float a = (float)g / (float)o.n_grid;
		scales_for(st, mean_abs, cols, a);
		for (size_t i = 0; i < n_x; i++)
			for (size_t j = 0; j < cols; j++)
				Xs[i * cols + j] = X[i * cols + j] / st[j];
		if (weighted) /* the scaled activations' mean square */
			for (size_t j = 0; j < cols; j++)
				imp[j] = o.importance[j] / (st[j] * st[j]);
		double e = 0;
		for (size_t k = 0, off = 0; k < n_mats; off += n_x * mats[k]->rows, k++) {
			double ek;
			if ((rc = matrix_error(&o, mats[k], Y + off, Xs, n_x, st, imp, Wq, Yq, &ek)))
				goto backend_fail;
			e += ek;
		}
		if (g == 0)
			*err_rtn = e;
		if (e < best) { /* strict: ties keep the smaller alpha (RTN first) */
			best = e;
			*alpha = a;
			memcpy(s, st, cols * sizeof *s);
		}
	}
	*err_best = best;
	*energy = en;
	goto done;
backend_fail:
	rc = os_error_set(err, rc, "awq: backend matmul failed: %s", os_strerror(rc));
done:
	free(Y);
	free(Yq);
	free(Wq);
	free(Xs);
	free(st);
	free(imp);
	return rc;
}

/* The clipping search on one matrix w (already scaled) reading Xs (n_x, cols): per (row,
 * group), the ratio c minimising ||x_g (w_g - Q_c(w_g))^T||^2 over the rows; then w_g is
 * clamped to the shrunk range [min(lo, 0) c, max(hi, 0) c], which RTN then quantizes with
 * the same scale and zero point as Q_c. */
static int clip_search(const awq_opts *o, be_weight *w, const float *Xs, size_t n_x,
		       os_error *err)
{
	size_t rows = w->rows, cols = w->cols, G = o->group, n_groups = cols / G;
	float *W = w->data;
	int rc = OS_OK;
	float *Xg = alloc_f(n_x * G), *Wg = alloc_f(rows * G), *Wc = alloc_f(rows * G);
	float *Y0 = alloc_f(n_x * rows), *Yc = alloc_f(n_x * rows), *best_c = alloc_f(rows);
	double *best_e = malloc(rows * sizeof *best_e);
	if (!Xg || !Wg || !Wc || !Y0 || !Yc || !best_c || !best_e) {
		rc = os_error_set(err, OS_ENOMEM, "awq: out of memory");
		goto done;
	}
	for (size_t g = 0; g < n_groups; g++) {
		for (size_t i = 0; i < n_x; i++)
			memcpy(Xg + i * G, Xs + i * cols + g * G, G * sizeof *Xg);
		for (size_t r = 0; r < rows; r++)
			memcpy(Wg + r * G, W + r * cols + g * G, G * sizeof *Wg);
		if ((rc = mm(o, Y0, Xg, n_x, Wg, rows, G)))
			goto backend_fail;
		for (size_t r = 0; r < rows; r++)
			best_e[r] = INFINITY, best_c[r] = 1.0f;
		for (size_t ci = 0; ci < o->n_clip_grid; ci++) {
			float c = 1.0f - (float)ci * (1.0f - o->min_clip) / (float)o->n_clip_grid;
			for (size_t r = 0; r < rows; r++)
				quant_fake_int4_row(Wc + r * G, Wg + r * G, G, G, c);
			if ((rc = mm(o, Yc, Xg, n_x, Wc, rows, G)))
				goto backend_fail;
			for (size_t r = 0; r < rows; r++) {
				double e = 0;
				for (size_t i = 0; i < n_x; i++) {
					double d = (double)Y0[i * rows + r] - Yc[i * rows + r];
					e += d * d;
				}
				if (e < best_e[r])
					best_e[r] = e, best_c[r] = c;
			}
		}
		for (size_t r = 0; r < rows; r++) {
			if (best_c[r] == 1.0f)
				continue;
			float *wg = W + r * cols + g * G, lo = 0, hi = 0;
			for (size_t k = 0; k < G; k++) {
				lo = wg[k] < lo ? wg[k] : lo;
				hi = wg[k] > hi ? wg[k] : hi;
			}
			lo *= best_c[r];
			hi *= best_c[r];
			for (size_t k = 0; k < G; k++)
				wg[k] = wg[k] < lo ? lo : wg[k] > hi ? hi : wg[k];
		}
	}
	goto done;
backend_fail:
	rc = os_error_set(err, rc, "awq: backend matmul failed: %s", os_strerror(rc));
done:
	free(Xg);
	free(Wg);
	free(Wc);
	free(Y0);
	free(Yc);
	free(best_c);
	free(best_e);
	return rc;
}

/* Output error of mats reading X against Y0 = X W0^T (the f32 outputs before any change),
 * the matrices now scaled by s and (maybe) clipped: sum ||Y0 - (X/s) Q(W)^T||^2. */
static int site_error(const awq_opts *o, be_weight *const *mats, size_t n_mats, const float *Xs,
		      const float *Y0, size_t n_x, const float *imp, double *e, os_error *err)
{
	size_t max_rows = 0, cols = mats[0]->cols;
	for (size_t k = 0; k < n_mats; k++)
		max_rows = mats[k]->rows > max_rows ? mats[k]->rows : max_rows;
	float *Wq = alloc_f(max_rows * cols), *Yq = alloc_f(n_x * max_rows);
	int rc = OS_OK;
	*e = 0;
	if (!Wq || !Yq) {
		rc = os_error_set(err, OS_ENOMEM, "awq: out of memory");
		goto done;
	}
	for (size_t k = 0, off = 0; k < n_mats; off += n_x * mats[k]->rows, k++) {
		const float *W = mats[k]->data;
		for (size_t r = 0; r < mats[k]->rows; r++)
			if (imp)
				quant_fake_int4_row_weighted(Wq + r * cols, W + r * cols, cols,
							     o->group, imp, QUANT_SEARCH_STEPS);
			else
				quant_fake_int4_row(Wq + r * cols, W + r * cols, cols, o->group,
						    1.0f);
		if ((rc = mm(o, Yq, Xs, n_x, Wq, mats[k]->rows, cols))) {
			rc = os_error_set(err, rc, "awq: backend matmul failed: %s", os_strerror(rc));
			goto done;
		}
		*e += sq_diff(Y0 + off, Yq, n_x * mats[k]->rows);
	}
done:
	free(Wq);
	free(Yq);
	return rc;
}

/* Replaces the matrices of layer l by their INT4 quantization with the weighted grid, the
 * importance of site k being mean_sq / s_k^2 (s_k at lay_s + k * stride); imp is scratch
 * of stride floats. */
static int quantize_layer(model *m, const calib_stats *st, size_t l, const awq_opts *o,
			  const float *lay_s, size_t stride, float *imp, os_error *err)
{
	for (int site = 0; site < ENGINE_N_SITES; site++) {
		const calib_site *cs = calib_get(st, l, site);
		const float *s = lay_s + (size_t)site * stride;
		for (size_t j = 0; j < cs->dim; j++)
			imp[j] = cs->mean_sq[j] / (s[j] * s[j]);
		be_weight *mats[3];
		size_t n = smooth_site_matrices(model_weights_mut(m), l, site, mats);
		for (size_t k = 0; k < n; k++) {
			size_t idx = model_n_tensors(m);
			for (size_t i = 0; i < model_n_tensors(m); i++)
				if (model_tensor_at(m, i).mat == mats[k])
					idx = i;
			size_t g = awq_group_for(o->group, cs->dim);
			quant_matrix q;
			int rc = quant_matrix_new_weighted(&q, QUANT_INT4, mats[k]->data, mats[k]->rows,
							   mats[k]->cols, g, imp, o->pool, err);
			if (rc)
				return rc;
			be_weight w = {.fmt = BE_WFMT_I4, .rows = q.rows, .cols = q.cols,
				       .data = q.data, .scales = q.scales, .zeros = q.zeros,
				       .group = g};
			if (idx == model_n_tensors(m))
				rc = os_error_set(err, OS_EINTERNAL, "awq: layer %zu %s: matrix not "
						  "found in the model", l, calib_site_name(site));
			else
				rc = model_set_matrix(m, idx, &w, err);
			if (rc) {
				quant_matrix_free(&q);
				return rc;
			}
		}
	}
	return OS_OK;
}

size_t awq_group_for(size_t group, size_t cols)
{
	static const size_t sizes[] = {128, 64, 32};
	for (size_t i = 0; i < 3; i++)
		if (sizes[i] <= group && cols % sizes[i] == 0)
			return sizes[i];
	return 0;
}

int awq_apply(model *m, const calib_stats *st, const awq_opts *o_in, awq_report *rep,
	      os_error *err)
{
	awq_opts o;
	opts_fill(&o, o_in);
	const model_config *c = model_get_config(m);
	awq_report r = {0};
	if (rep)
		*rep = r;
	if (calib_n_layers(st) != c->n_layers)
		return os_error_set(err, OS_EUSAGE, "calibration has %zu layers, the model %zu",
				    calib_n_layers(st), c->n_layers);
	for (int site = 0; site < ENGINE_N_SITES; site++) {
		size_t d = smooth_site_dim(c, site);
		if (awq_group_for(o.group, d) == 0)
			return os_error_set(err, OS_EUSAGE,
					    "awq: no INT4 group of at most %zu (128, 64 or 32) divides "
					    "the %zu input channels of %s",
					    o.group, d, calib_site_name(site));
		for (size_t l = 0; l < c->n_layers; l++) {
			const calib_site *cs = calib_get(st, l, site);
			if (cs->dim != d || cs->n_rows == 0)
				return os_error_set(err, OS_EUSAGE,
						    "calibration layer %zu %s: %zu channels and %zu "
						    "rows (expected %zu channels and kept rows)",
						    l, calib_site_name(site), cs->dim, cs->n_rows, d);
		}
	}
	size_t maxdim = c->ffn_dim > c->dim ? c->ffn_dim : c->dim;
	if (c->n_heads * c->head_dim > maxdim)
		maxdim = c->n_heads * c->head_dim;
	size_t n_x = calib_get(st, 0, 0)->n_rows;
	size_t max_out = 0;
	{
		be_weight *mats[3];
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			size_t n = smooth_site_matrices(model_weights_mut(m), 0, site, mats), t = 0;
			for (size_t k = 0; k < n; k++)
				t += mats[k]->rows;
			max_out = t > max_out ? t : max_out;
		}
	}
	int rc = OS_OK;
	float *s = alloc_f(maxdim), *mean = alloc_f(maxdim), *Xs = alloc_f(n_x * maxdim);
	float *Y0 = alloc_f(n_x * max_out);
	float *lay_s = o.weighted ? alloc_f(ENGINE_N_SITES * maxdim) : NULL; /* the layer's s */
	if (!s || !mean || !Xs || !Y0 || (o.weighted && !lay_s)) {
		rc = os_error_set(err, OS_ENOMEM, "awq: out of memory");
		goto done;
	}
	size_t total = c->n_layers * ENGINE_N_SITES, done_n = 0;
	double sum_alpha = 0;
	for (size_t l = 0; l < c->n_layers; l++) {
		for (int site = 0; site < ENGINE_N_SITES; site++) {
			if (o.should_stop && o.should_stop(o.cb_ctx)) {
				rc = os_error_set(err, OS_ESTOPPED, "awq stopped after %zu of %zu "
						  "sites", done_n, total);
				goto done;
			}
			const calib_site *cs = calib_get(st, l, site);
			size_t d = cs->dim;
			awq_opts so = o;
			so.group = awq_group_for(o.group, d);
			so.importance = cs->mean_sq;
			be_weight *mats[3];
			size_t n = smooth_site_matrices(model_weights_mut(m), l, site, mats);
			memcpy(mean, cs->mean_abs, d * sizeof *mean);
			if (site == ENGINE_SITE_ATTN_OUT)
				smooth_gqa_max(c, mean);
			float alpha = 0;
			double e_rtn = 0, e_best = 0, en = 0;
			if ((rc = awq_search((const be_weight *const *)mats, n, cs->rows, n_x, mean, &so,
					     s, &alpha, &e_rtn, &e_best, &en, err)))
				goto done;
			bool clip = o.clip && !o.weighted;
			if (clip)
				/* the f32 outputs before the change, for the final error */
				for (size_t k = 0, off = 0; k < n; off += n_x * mats[k]->rows, k++)
					if ((rc = mm(&so, Y0 + off, cs->rows, n_x, mats[k]->data,
						     mats[k]->rows, d))) {
						rc = os_error_set(err, rc, "awq: backend matmul failed");
						goto done;
					}
			if ((rc = smooth_fold(m, l, site, s, err)))
				goto done;
			double e_clip = e_best;
			if (o.weighted)
				memcpy(lay_s + (size_t)site * maxdim, s, d * sizeof *s);
			if (clip) {
				for (size_t i = 0; i < n_x; i++)
					for (size_t j = 0; j < d; j++)
						Xs[i * d + j] = cs->rows[i * d + j] / s[j];
				for (size_t k = 0; k < n; k++)
					if ((rc = clip_search(&so, mats[k], Xs, n_x, err)))
						goto done;
				if ((rc = site_error(&so, mats, n, Xs, Y0, n_x, NULL, &e_clip, err)))
					goto done;
			}
			r.err_rtn += e_rtn;
			r.err_awq += e_best;
			r.err_clip += e_clip;
			r.energy += en;
			sum_alpha += alpha;
			r.n_sites++;
			done_n++;
			if (o.progress)
				o.progress(o.cb_ctx, done_n, total);
		}
		/* after the layer's last fold: v and up (producers of later sites) are final */
		if (o.weighted && !o.keep_f32 && (rc = quantize_layer(m, st, l, &o, lay_s, maxdim, mean, err)))
			goto done;
	}
	r.mean_alpha = r.n_sites ? sum_alpha / (double)r.n_sites : 0;
	if (rep)
		*rep = r;
done:
	free(s);
	free(mean);
	free(Xs);
	free(Y0);
	free(lay_s);
	return rc;
}
