/* smoothquant.c: per-channel smoothing scales and their exact folding into the model
 * (smoothquant.h). */
#include "smoothquant.h"

#include <math.h>
#include <stdlib.h>

size_t smooth_site_matrices(model_weights *w, size_t layer, int site, be_weight **mats)
{
	model_layer_weights *L = &w->layers[layer];
	switch (site) {
	case ENGINE_SITE_ATTN_IN:
		mats[0] = &L->wq, mats[1] = &L->wk, mats[2] = &L->wv;
		return 3;
	case ENGINE_SITE_ATTN_OUT:
		mats[0] = &L->wo;
		return 1;
	case ENGINE_SITE_FFN_IN:
		mats[0] = &L->w_gate, mats[1] = &L->w_up;
		return 2;
	case ENGINE_SITE_FFN_DOWN_IN:
		mats[0] = &L->w_down;
		return 1;
	default:
		return 0;
	}
}

size_t smooth_site_dim(const model_config *c, int site)
{
	switch (site) {
	case ENGINE_SITE_ATTN_IN:
	case ENGINE_SITE_FFN_IN:
		return c->dim;
	case ENGINE_SITE_ATTN_OUT:
		return c->n_heads * c->head_dim;
	case ENGINE_SITE_FFN_DOWN_IN:
		return c->ffn_dim;
	default:
		return 0;
	}
}

void smooth_gqa_max(const model_config *c, float *v)
{
	size_t g = c->n_heads / c->n_kv_heads, hd = c->head_dim;
	if (g <= 1)
		return;
	for (size_t kvh = 0; kvh < c->n_kv_heads; kvh++)
		for (size_t d = 0; d < hd; d++) {
			float m = v[(kvh * g) * hd + d];
			for (size_t i = 1; i < g; i++) {
				float x = v[(kvh * g + i) * hd + d];
				m = x > m ? x : m;
			}
			for (size_t i = 0; i < g; i++)
				v[(kvh * g + i) * hd + d] = m;
		}
}

static int check_f32(model *m, size_t layer, int site, os_error *err)
{
	be_weight *mats[3];
	model_weights *w = model_weights_mut(m);
	size_t n = smooth_site_matrices(w, layer, site, mats);
	for (size_t k = 0; k < n; k++)
		if (mats[k]->fmt != BE_WFMT_F32)
			return os_error_set(err, OS_EUNSUPPORTED,
					    "smoothing layer %zu: %s weights (expected F32: load the "
					    "model with F32 weights)",
					    layer, be_wfmt_name(mats[k]->fmt));
	if (site == ENGINE_SITE_ATTN_OUT && w->layers[layer].wv.fmt != BE_WFMT_F32)
		return os_error_set(err, OS_EUNSUPPORTED, "smoothing layer %zu: wv is %s (expected "
				    "F32)", layer, be_wfmt_name(w->layers[layer].wv.fmt));
	if (site == ENGINE_SITE_FFN_DOWN_IN && w->layers[layer].w_up.fmt != BE_WFMT_F32)
		return os_error_set(err, OS_EUNSUPPORTED, "smoothing layer %zu: w_up is %s "
				    "(expected F32)", layer, be_wfmt_name(w->layers[layer].w_up.fmt));
	return OS_OK;
}

int smooth_fold(model *m, size_t layer, int site, const float *s, os_error *err)
{
	const model_config *c = model_get_config(m);
	if (layer >= c->n_layers || site < 0 || site >= ENGINE_N_SITES)
		return os_error_set(err, OS_EUSAGE, "smoothing: no site %d in layer %zu", site, layer);
	int rc = check_f32(m, layer, site, err);
	if (rc)
		return rc;
	size_t dim = smooth_site_dim(c, site);
	for (size_t j = 0; j < dim; j++)
		if (!(s[j] > 0.0f) || !isfinite(s[j]))
			return os_error_set(err, OS_EUSAGE, "smoothing layer %zu %s: scale %zu is %g "
					    "(expected finite and > 0)",
					    layer, calib_site_name(site), j, (double)s[j]);
	size_t g = c->n_heads / c->n_kv_heads, hd = c->head_dim;
	if (site == ENGINE_SITE_ATTN_OUT)
		for (size_t h = 0; h < c->n_heads; h++)
			for (size_t d = 0; d < hd; d++)
				if (s[h * hd + d] != s[(h / g * g) * hd + d])
					return os_error_set(err, OS_EUSAGE,
							    "smoothing layer %zu attn_out: scale of "
							    "head %zu channel %zu differs from its kv "
							    "group's (grouped-query attention shares v)",
							    layer, h, d);

	model_weights *w = model_weights_mut(m);
	model_layer_weights *L = &w->layers[layer];
	be_weight *mats[3];
	size_t n = smooth_site_matrices(w, layer, site, mats);
	for (size_t k = 0; k < n; k++) {
		float *W = mats[k]->data;
		for (size_t r = 0; r < mats[k]->rows; r++)
			for (size_t j = 0; j < dim; j++)
				W[r * dim + j] *= s[j];
	}
	switch (site) {
	case ENGINE_SITE_ATTN_IN:
		for (size_t j = 0; j < dim; j++)
			L->attn_norm[j] /= s[j];
		break;
	case ENGINE_SITE_FFN_IN:
		for (size_t j = 0; j < dim; j++)
			L->ffn_norm[j] /= s[j];
		break;
	case ENGINE_SITE_FFN_DOWN_IN: {
		/* h_j = silu(gate_j) * up_j: up_j / s_j gives h_j / s_j */
		float *U = L->w_up.data;
		for (size_t j = 0; j < dim; j++)
			for (size_t k = 0; k < L->w_up.cols; k++)
				U[j * L->w_up.cols + k] /= s[j];
		break;
	}
	case ENGINE_SITE_ATTN_OUT: {
		/* att[h, d] = sum_t p_t V[t, h/g, d]: v row (kvh, d) / s gives att / s for every
		 * head of the group */
		float *V = L->wv.data;
		for (size_t kvh = 0; kvh < c->n_kv_heads; kvh++)
			for (size_t d = 0; d < hd; d++) {
				float sj = s[(kvh * g) * hd + d];
				float *row = V + (kvh * hd + d) * L->wv.cols;
				for (size_t k = 0; k < L->wv.cols; k++)
					row[k] /= sj;
			}
		break;
	}
	}
	return OS_OK;
}

static int check_stats(const model *m, const calib_stats *st, os_error *err)
{
	const model_config *c = model_get_config(m);
	if (calib_n_layers(st) != c->n_layers)
		return os_error_set(err, OS_EUSAGE, "calibration has %zu layers, the model %zu",
				    calib_n_layers(st), c->n_layers);
	for (size_t l = 0; l < c->n_layers; l++)
		for (int site = 0; site < ENGINE_N_SITES; site++)
			if (calib_get(st, l, site)->dim != smooth_site_dim(c, site))
				return os_error_set(err, OS_EUSAGE,
						    "calibration layer %zu %s has %zu channels, the "
						    "model %zu",
						    l, calib_site_name(site), calib_get(st, l, site)->dim,
						    smooth_site_dim(c, site));
	return OS_OK;
}

int smooth_compute_scales(model *m, const calib_stats *st, size_t layer, int site,
			  float alpha, float *s, os_error *err)
{
	const model_config *c = model_get_config(m);
	int rc = check_f32(m, layer, site, err);
	if (rc)
		return rc;
	size_t dim = smooth_site_dim(c, site);
	const calib_site *cs = calib_get(st, layer, site);
	float *wmax = calloc(dim, sizeof *wmax);
	float *xmax = malloc(dim * sizeof *xmax);
	if (!wmax || !xmax) {
		free(wmax);
		free(xmax);
		return os_error_set(err, OS_ENOMEM, "smoothing: out of memory");
	}
	be_weight *mats[3];
	size_t n = smooth_site_matrices(model_weights_mut(m), layer, site, mats);
	for (size_t k = 0; k < n; k++) {
		const float *W = mats[k]->data;
		for (size_t r = 0; r < mats[k]->rows; r++)
			for (size_t j = 0; j < dim; j++) {
				float a = fabsf(W[r * dim + j]);
				wmax[j] = a > wmax[j] ? a : wmax[j];
			}
	}
	for (size_t j = 0; j < dim; j++)
		xmax[j] = cs->max_abs[j];
	if (site == ENGINE_SITE_ATTN_OUT) {
		smooth_gqa_max(c, wmax);
		smooth_gqa_max(c, xmax);
	}
	for (size_t j = 0; j < dim; j++) {
		double v = 1.0;
		if (xmax[j] > 0 && wmax[j] > 0)
			v = pow(xmax[j], alpha) / pow(wmax[j], 1.0 - alpha);
		v = v < 1e-5 ? 1e-5 : v > 1e5 ? 1e5 : v;
		s[j] = (float)v;
	}
	free(wmax);
	free(xmax);
	return OS_OK;
}

int smoothquant_apply(model *m, const calib_stats *st, float alpha, os_error *err)
{
	if (!(alpha >= 0.0f && alpha <= 1.0f))
		return os_error_set(err, OS_EUSAGE, "SmoothQuant alpha %g is outside [0, 1]",
				    (double)alpha);
	int rc = check_stats(m, st, err);
	if (rc)
		return rc;
	const model_config *c = model_get_config(m);
	size_t maxdim = c->ffn_dim > c->dim ? c->ffn_dim : c->dim;
	if (c->n_heads * c->head_dim > maxdim)
		maxdim = c->n_heads * c->head_dim;
	float *s = malloc(maxdim * sizeof *s);
	if (!s)
		return os_error_set(err, OS_ENOMEM, "smoothing: out of memory");
	for (size_t l = 0; l < c->n_layers && !rc; l++)
		for (int site = 0; site < ENGINE_N_SITES && !rc; site++) {
			rc = smooth_compute_scales(m, st, l, site, alpha, s, err);
			if (!rc)
				rc = smooth_fold(m, l, site, s, err);
		}
	free(s);
	return rc;
}
