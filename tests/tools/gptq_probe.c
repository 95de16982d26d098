/* gptq_probe.c: GPTQ's proxy output error on real SmolLM2 matrices, before wiring it into
 * the quantizer: H = X^T X / n of a few matrices' inputs on calibration text (the objective)
 * and on held-out text (does the gain carry over), RTN against GPTQ in several settings.
 *   gptq_probe MODEL.gguf CALIB.txt HELDOUT.txt [--samples N] [--seq L] [--threads T]
 *              [--damp D[,D...]] [--fp8]
 * Errors are printed relative to the energy tr(W H W^T) of the same H. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/engine/kv_cache.h"
#include "core/engine/model.h"
#include "core/engine/tokenizer.h"
#include "core/format/gguf.h"
#include "core/format/textfile.h"
#include "core/optimize/gptq.h"

typedef struct probe_mat {
	const char *name;
	size_t layer;
	int site;
	int which; /* 0 wq, 1 wo, 2 w_down, 3 w_gate */
} probe_mat;

static const probe_mat mats[] = {
	{"blk.3.attn_q", 3, ENGINE_SITE_ATTN_IN, 0},
	{"blk.3.ffn_down", 3, ENGINE_SITE_FFN_DOWN_IN, 2},
	{"blk.20.ffn_down", 20, ENGINE_SITE_FFN_DOWN_IN, 2},
	{"blk.20.attn_output", 20, ENGINE_SITE_ATTN_OUT, 1},
	{"blk.20.ffn_gate", 20, ENGINE_SITE_FFN_IN, 3},
};
#define N_MATS (sizeof mats / sizeof mats[0])

/* Accumulates sum x x^T (upper triangle, double) of the wanted sites. */
typedef struct collector {
	double *acc[N_MATS];
	size_t dim[N_MATS];
	size_t n_tok[N_MATS];
} collector;

__attribute__((optimize("O3"))) static void syr_rows(double *acc, const float *x, size_t n_tok,
						     size_t dim)
{
	for (size_t t = 0; t < n_tok; t++) {
		const float *r = x + t * dim;
		for (size_t a = 0; a < dim; a++) {
			double xa = r[a], *h = acc + a * dim;
			for (size_t b = a; b < dim; b++)
				h[b] += xa * (double)r[b];
		}
	}
}

static void observe(void *ctx, size_t layer, int site, const float *x, size_t n_tok, size_t dim)
{
	collector *c = ctx;
	for (size_t i = 0; i < N_MATS; i++) {
		if (mats[i].layer != layer || mats[i].site != site)
			continue;
		/* the same site may serve two probe matrices: accumulate once, share later */
		for (size_t k = 0; k < i; k++)
			if (mats[k].layer == layer && mats[k].site == site)
				return;
		syr_rows(c->acc[i], x, n_tok, dim);
		c->n_tok[i] += n_tok;
		return;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* H (float) of every probe matrix from text: N samples of L tokens spread over it. */
static int collect(engine *e, const tokenizer *tok, const char *path, size_t N, size_t L,
		   float *H[N_MATS], os_error *err)
{
	char *text = NULL;
	size_t len = 0;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	int rc = format_read_text_file(path, (size_t)64 << 20, &text, &len, err);
	if (rc)
		return rc;
	rc = tokenizer_encode(tok, text, len, false, false, &ids, &n_ids, err);
	free(text);
	if (rc)
		return rc;
	if (n_ids < N * L) {
		free(ids);
		return os_error_set(err, OS_EUSAGE, "%s: %zu tokens, need %zu", path, n_ids, N * L);
	}
	collector c = {0};
	const model_config *cfg = model_get_config(engine_model(e));
	for (size_t i = 0; i < N_MATS; i++) {
		c.dim[i] = mats[i].site == ENGINE_SITE_FFN_DOWN_IN ? cfg->ffn_dim
			   : mats[i].site == ENGINE_SITE_ATTN_OUT ? cfg->n_heads * cfg->head_dim
								  : cfg->dim;
		c.acc[i] = calloc(c.dim[i] * c.dim[i], sizeof(double));
		if (!c.acc[i]) {
			rc = os_error_set(err, OS_ENOMEM, "out of memory");
			goto done;
		}
	}
	engine_set_observer(e, observe, &c);
	int32_t *t = malloc(L * sizeof *t), *pos = malloc(L * sizeof *pos);
	int32_t *seq = malloc(L * sizeof *seq);
	float *logits = malloc(cfg->vocab * sizeof *logits);
	size_t stride = N > 1 ? (n_ids - L) / (N - 1) : 0;
	for (size_t s = 0; s < N && rc == OS_OK && t && pos && seq && logits; s++) {
		int32_t sid;
		if ((rc = kv_seq_new(engine_kv(e), &sid, err)))
			break;
		for (size_t k = 0; k < L; k++)
			t[k] = ids[s * stride + k], pos[k] = (int32_t)k, seq[k] = sid;
		engine_batch b = {.n = L, .tokens = t, .pos = pos, .seq = seq};
		rc = engine_forward(e, &b, logits, err);
		kv_seq_free(engine_kv(e), sid);
	}
	if (!t || !pos || !seq || !logits)
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
	free(t), free(pos), free(seq), free(logits);
	engine_set_observer(e, NULL, NULL);
	for (size_t i = 0; rc == OS_OK && i < N_MATS; i++) {
		size_t src = i, d = c.dim[i];
		for (size_t k = 0; k < i; k++)
			if (mats[k].layer == mats[i].layer && mats[k].site == mats[i].site)
				src = k;
		H[i] = malloc(d * d * sizeof *H[i]);
		if (!H[i]) {
			rc = os_error_set(err, OS_ENOMEM, "out of memory");
			break;
		}
		for (size_t a = 0; a < d; a++)
			for (size_t b = 0; b < d; b++)
				H[i][a * d + b] = (float)((a <= b ? c.acc[src][a * d + b]
								  : c.acc[src][b * d + a]) /
							  (double)c.n_tok[src]);
	}
done:
	for (size_t i = 0; i < N_MATS; i++)
		free(c.acc[i]);
	free(ids);
	return rc;
}

static const float *mat_weights(const model *m, const probe_mat *p, size_t *rows, size_t *cols)
{
	const model_layer_weights *l = &model_get_weights(m)->layers[p->layer];
	const be_weight *w = p->which == 0 ? &l->wq : p->which == 1 ? &l->wo
					   : p->which == 2 ? &l->w_down : &l->w_gate;
	*rows = w->rows, *cols = w->cols;
	return w->data;
}

/* One table row: GPTQ with o on H (calibration), and its result and the same RTN grid
 * judged on Hh (held out). */
static int probe_one(const probe_mat *pm, quant_fmt fmt, const gptq_opts *o, const float *W,
		     size_t rows, size_t cols, const float *H, const float *Hh, os_error *err)
{
	quant_matrix q = {0}, rtn = {0};
	gptq_report rep;
	float *imp = malloc(cols * sizeof *imp);
	if (!imp)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	for (size_t k = 0; k < cols; k++)
		imp[k] = H[k * cols + k];
	double t1 = now_s();
	int rc = gptq_quantize(&q, fmt, W, rows, cols, H, o, &rep, err);
	double dt = now_s() - t1;
	if (!rc)
		rc = o->weighted ? quant_matrix_new_weighted(&rtn, fmt, W, rows, cols, o->group,
							     imp, o->pool, err)
				 : quant_matrix_new(&rtn, fmt, W, rows, cols, o->group, err);
	if (!rc) {
		double eh = gptq_proxy_error(NULL, W, rows, cols, Hh, o->pool);
		double rh = gptq_proxy_error(&rtn, W, rows, cols, Hh, o->pool);
		double gh = gptq_proxy_error(&q, W, rows, cols, Hh, o->pool);
		const char *fname = fmt != QUANT_INT4 ? "fp8"
				    : o->group == 128     ? "i4g128"
							  : "i4g64";
		printf("%-19s %-6s %-8s %-3s %-5g | %9.3e %9.3e %6.3f | %9.3e %9.3e %6.3f "
		       "| %6.2f\n",
		       pm->name, fname, o->weighted ? "weighted" : "plain",
		       o->act_order ? "on" : "off", (double)o->damp, rep.err_rtn / rep.energy,
		       rep.err_gptq / rep.energy, rep.err_gptq / rep.err_rtn, rh / eh, gh / eh,
		       gh / rh, dt);
		fflush(stdout);
	}
	free(imp);
	quant_matrix_free(&q);
	quant_matrix_free(&rtn);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: gptq_probe MODEL.gguf CALIB.txt HELDOUT.txt [--samples N] "
				"[--seq L] [--threads T] [--damp D] [--fp8]\n");
		return 2;
	}
	size_t N = 16, L = 256, threads = 2;
	float damps[8] = {0.01f};
	size_t n_damps = 1;
	int fp8 = 0;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--samples") && i + 1 < argc)
			N = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seq") && i + 1 < argc)
			L = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--damp") && i + 1 < argc) {
			char *p = argv[++i];
			for (n_damps = 0; n_damps < 8 && *p; n_damps++) {
				damps[n_damps] = strtof(p, &p);
				p += *p == ',';
			}
		}
		else if (!strcmp(argv[i], "--fp8"))
			fp8 = 1;
		else {
			fprintf(stderr, "gptq_probe: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	os_error err = {0};
	gguf_file *f = NULL;
	model *m = NULL;
	tokenizer *tok = NULL;
	backend *be = NULL;
	engine *e = NULL;
	float *Hc[N_MATS] = {0}, *Hh[N_MATS] = {0};
	int rc = 1;
	backend_cpu_opts bo = {.n_threads = threads};
	engine_opts eo = {.max_batch = L, .kv_block_tokens = 0};
	if (gguf_open(&f, argv[1], &err) || model_open_gguf(&m, f, NULL, &err) ||
	    tokenizer_open(&tok, f, &err) || backend_cpu_new(&be, &bo, &err) ||
	    engine_new(&e, m, be, &eo, &err)) {
		fprintf(stderr, "gptq_probe: %s\n", os_error_text(&err));
		goto out;
	}
	double t0 = now_s();
	if (collect(e, tok, argv[2], N, L, Hc, &err) || collect(e, tok, argv[3], N, L, Hh, &err)) {
		fprintf(stderr, "gptq_probe: %s\n", os_error_text(&err));
		goto out;
	}
	printf("# Hessians from %zu x %zu tokens of each text in %.1f s\n", N, L, now_s() - t0);
	printf("%-19s %-6s %-8s %-3s %-5s | %9s %9s %6s | %9s %9s %6s | %6s\n", "matrix",
	       "fmt", "grid", "act", "damp", "rtn/E", "gptq/E", "ratio", "rtn/E_h", "gptq/E_h",
	       "ratio", "sec");
	threadpool *pool = backend_cpu_pool(be);
	for (size_t i = 0; i < N_MATS; i++) {
		size_t rows, cols;
		const float *W = mat_weights(m, &mats[i], &rows, &cols);
		for (int cfg = 0; cfg < (fp8 ? 8 : 4) * (int)n_damps; cfg++) {
			float damp = damps[cfg / (fp8 ? 8 : 4)];
			quant_fmt fmt = cfg % (fp8 ? 8 : 4) < 4 ? QUANT_INT4 : QUANT_FP8_E4M3;
			gptq_opts o = gptq_opts_default();
			o.group = cols % 128 ? 64 : 128, o.damp = damp, o.pool = pool;
			o.weighted = cfg & 1, o.act_order = (cfg >> 1) & 1;
			if (probe_one(&mats[i], fmt, &o, W, rows, cols, Hc[i], Hh[i], &err)) {
				fprintf(stderr, "gptq_probe: %s: %s\n", mats[i].name,
					os_error_text(&err));
				goto out;
			}
		}
	}
	rc = 0;
out:
	for (size_t i = 0; i < N_MATS; i++)
		free(Hc[i]), free(Hh[i]);
	engine_free(e);
	backend_free(be);
	tokenizer_close(tok);
	model_close(m);
	gguf_close(f);
	return rc;
}
