/* gptq.c: GPTQ quantization of one matrix (gptq.h): the fast blocked version, its plain
 * double-precision twin, and the proxy error tr(D H D^T) both report. */
#include "core/optimize/gptq.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/kernels.h"
#include "core/numerics.h"

/* Raising the dampening this many times (x10 each) before giving up on a Cholesky. */
#define GPTQ_DAMP_RETRIES 3
/* Rows per pool task: rows are independent, so any split gives the same bits. */
#define GPTQ_TASK_ROWS 8

gptq_opts gptq_opts_default(void)
{
	return (gptq_opts){.group = 128, .damp = 0.1f, .block = 128, .act_order = true,
			   .weighted = true};
}

static gptq_opts opts_resolve(const gptq_opts *o)
{
	gptq_opts d = gptq_opts_default(), r = o ? *o : d;
	if (r.group == 0)
		r.group = d.group;
	if (r.damp == 0.0f)
		r.damp = d.damp;
	if (r.block == 0)
		r.block = d.block;
	return r;
}

/* ---- shared by both versions: arguments, dead channels, order, element rules ------------ */

static bool all_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return false;
	return true;
}

static int check_args(quant_fmt fmt, const float *W, size_t rows, size_t cols, const float *H,
		      const gptq_opts *o, os_error *err)
{
	if (rows == 0 || cols == 0 || !W || !H)
		return os_error_set(err, OS_EUSAGE, "gptq: empty matrix (%zu x %zu) or no Hessian",
				    rows, cols);
	if (fmt != QUANT_FP8_E4M3 && fmt != QUANT_INT8 && fmt != QUANT_INT4)
		return os_error_set(err, OS_EUSAGE, "gptq: unknown format %d", (int)fmt);
	if (fmt == QUANT_INT4 &&
	    ((o->group != 32 && o->group != 64 && o->group != 128) || cols % o->group))
		return os_error_set(err, OS_EUSAGE,
				    "gptq int4: group %zu must be 32, 64 or 128 and divide the %zu "
				    "input columns",
				    o->group, cols);
	if (!(o->damp > 0.0f) || !isfinite(o->damp))
		return os_error_set(err, OS_EUSAGE, "gptq: dampening %g must be positive",
				    (double)o->damp);
	if (cols > ((size_t)1 << 15) || rows > SIZE_MAX / cols / sizeof(double))
		return os_error_set(err, OS_EUSAGE, "gptq: matrix %zu x %zu too large", rows,
				    cols);
	if (!all_finite(W, rows * cols) || !all_finite(H, cols * cols))
		return os_error_set(err, OS_EUSAGE, "gptq: weights or Hessian not finite");
	return OS_OK;
}

/* The prepared problem both versions solve: W with dead columns zeroed (f32, natural order),
 * H in double with dead diagonals 1 (and their row and column cleared, which a PSD H has
 * anyway), imp = diag(H) as f32, and perm: the processing order (decreasing diag(H), ties by
 * index, with act_order; else identity). */
typedef struct prep {
	size_t rows, cols;
	float *W;
	double *H;
	float *imp;
	size_t *perm;
	double mean_diag;
} prep;

static void prep_free(prep *p)
{
	free(p->W);
	free(p->H);
	free(p->imp);
	free(p->perm);
	memset(p, 0, sizeof *p);
}

typedef struct diag_key {
	double d;
	size_t i;
} diag_key;

static int diag_key_cmp(const void *a, const void *b)
{
	const diag_key *x = a, *y = b;
	if (x->d != y->d)
		return x->d > y->d ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int prep_new(prep *p, const float *W, size_t rows, size_t cols, const float *H,
		    bool act_order, os_error *err)
{
	memset(p, 0, sizeof *p);
	p->rows = rows, p->cols = cols;
	p->W = malloc(rows * cols * sizeof *p->W);
	p->H = malloc(cols * cols * sizeof *p->H);
	p->imp = malloc(cols * sizeof *p->imp);
	p->perm = malloc(cols * sizeof *p->perm);
	diag_key *keys = malloc(cols * sizeof *keys);
	if (!p->W || !p->H || !p->imp || !p->perm || !keys) {
		free(keys);
		prep_free(p);
		return os_error_set(err, OS_ENOMEM, "gptq: out of memory for %zu x %zu", rows,
				    cols);
	}
	memcpy(p->W, W, rows * cols * sizeof *p->W);
	for (size_t i = 0; i < cols * cols; i++)
		p->H[i] = H[i];
	double sum = 0;
	for (size_t i = 0; i < cols; i++) {
		if (H[i * cols + i] == 0.0f) {
			for (size_t k = 0; k < cols; k++)
				p->H[i * cols + k] = p->H[k * cols + i] = 0.0;
			p->H[i * cols + i] = 1.0;
			for (size_t r = 0; r < rows; r++)
				p->W[r * cols + i] = 0.0f;
		}
		p->imp[i] = (float)p->H[i * cols + i];
		sum += p->H[i * cols + i];
		keys[i] = (diag_key){p->H[i * cols + i], i};
	}
	p->mean_diag = sum / (double)cols;
	if (act_order)
		qsort(keys, cols, sizeof *keys, diag_key_cmp);
	for (size_t i = 0; i < cols; i++)
		p->perm[i] = act_order ? keys[i].i : i;
	free(keys);
	return OS_OK;
}

/* The grid of one row: per-row scale (FP8, INT8) or the current INT4 group's (s, z). */
typedef struct grid {
	quant_fmt fmt;
	float s, inv;
	uint8_t z;
} grid;

/* Code of w on grid g and the value it stands for (what quant_matrix_dequantize gives). */
static inline float grid_quant(const grid *g, float w, uint8_t *code)
{
	switch (g->fmt) {
	case QUANT_INT4:
		*code = num_i4_quantize(w, g->s, g->z);
		return num_i4_dequantize(*code, g->s, g->z);
	case QUANT_FP8_E4M3:
		*code = num_e4m3_quantize(w, g->inv);
		return num_e4m3_to_f32(*code) * g->s;
	default: {
		int8_t c = num_i8_quantize(w, g->inv);
		*code = (uint8_t)c;
		return (float)c * g->s;
	}
	}
}

static float row_absmax(const float *w, size_t n)
{
	float m = 0.0f;
	for (size_t k = 0; k < n; k++)
		m = fabsf(w[k]) > m ? fabsf(w[k]) : m;
	return m;
}

/* The per-row scale (FP8, INT8), fixed from the prepared weights before the column loop. */
static float row_scale(quant_fmt fmt, const float *w, size_t cols, const float *imp,
		       bool weighted)
{
	if (fmt == QUANT_FP8_E4M3)
		return quant_fp8_row_scale(w, cols, imp, weighted);
	return num_i8_scale(row_absmax(w, cols));
}

static void group_choose(const float *w, size_t n, const float *imp, bool weighted, float *s,
			 uint8_t *z)
{
	quant_int4_group_choose(w, n, weighted ? imp : NULL, weighted ? QUANT_SEARCH_STEPS : 0,
				s, z);
}

/* Stores code at (r, c) of m. */
static void store_code(quant_matrix *m, size_t r, size_t c, uint8_t code)
{
	if (m->fmt == QUANT_INT4)
		num_i4_set((uint8_t *)m->data + r * (m->cols / 2), c, code);
	else
		((uint8_t *)m->data)[r * m->cols + c] = code;
}

/* Static INT4 groups (act_order): every group's parameters from the prepared weights. */
static void static_groups(quant_matrix *m, const prep *p, bool weighted, size_t r0, size_t r1)
{
	size_t ng = p->cols / m->group;
	for (size_t r = r0; r < r1; r++)
		for (size_t g = 0; g < ng; g++)
			group_choose(p->W + r * p->cols + g * m->group, m->group,
				     p->imp + g * m->group, weighted, &m->scales[r * ng + g],
				     &m->zeros[r * ng + g]);
}

/* ---- the proxy error --------------------------------------------------------------------- */

/* With D = W - Q, the error is sum_r d_r . (H d_r): one F32 product Y = D H on the CPU
 * kernels (H is symmetric, so its rows are the product's weight rows), then a double dot
 * product per row. Reading H once per 8-row tile in double loops took 40% of a whole
 * `quantize --gptq` run; the product is the engine's tested GEMM, and its F32 sums are
 * within about 1e-5 relative of a float64 evaluation, plenty for a reported error. */
double gptq_proxy_error(const quant_matrix *q, const float *W, size_t rows, size_t cols,
			const float *H, threadpool *pool)
{
	if (q && (q->rows != rows || q->cols != cols))
		return -1;
	const cpu_kernel_set *ks;
	os_error err;
	if (cpu_kernels_select(&ks, &err))
		return -1;
	float *D = malloc(rows * cols * sizeof *D), *Y = malloc(rows * cols * sizeof *Y);
	double total = -1;
	if (!D || !Y)
		goto done;
	if (q) {
		quant_matrix_dequantize(q, D);
		for (size_t i = 0; i < rows * cols; i++)
			D[i] = W[i] - D[i];
	} else {
		memcpy(D, W, rows * cols * sizeof *D);
	}
	if (cpu_matmul(pool, ks, Y, D, H, CPU_WFMT_F32, rows, cols, cols))
		goto done;
	total = 0;
	for (size_t i = 0; i < rows * cols; i++)
		total += (double)D[i] * (double)Y[i];
done:
	free(D);
	free(Y);
	return total;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GPTQ_TGT __attribute__((target("avx512f"), optimize("fp-contract=off")))
#endif

/* The report: the error of the same grid choice without compensation (built from the
 * prepared weights, so dead channels and the importances match), of the result, and the
 * energy, all with the caller's H and W. */
static int fill_report(gptq_report *rep, const quant_matrix *out, quant_fmt fmt, const prep *p,
		       const float *W, const float *H, const gptq_opts *o, os_error *err)
{
	if (!rep)
		return OS_OK;
	quant_matrix rtn;
	int rc = o->weighted ? quant_matrix_new_weighted(&rtn, fmt, p->W, p->rows, p->cols,
							  o->group, p->imp, o->pool, err)
			     : quant_matrix_new(&rtn, fmt, p->W, p->rows, p->cols, o->group, err);
	if (rc)
		return rc;
	rep->energy = gptq_proxy_error(NULL, W, p->rows, p->cols, H, o->pool);
	rep->err_rtn = gptq_proxy_error(&rtn, W, p->rows, p->cols, H, o->pool);
	rep->err_gptq = gptq_proxy_error(out, W, p->rows, p->cols, H, o->pool);
	quant_matrix_free(&rtn);
	if (rep->energy < 0 || rep->err_rtn < 0 || rep->err_gptq < 0)
		return os_error_set(err, OS_ENOMEM, "gptq: out of memory for the report");
	return OS_OK;
}

static int chol_error(os_error *err, size_t cols, double lambda)
{
	return os_error_set(err, OS_ERANGE,
			    "gptq: the Hessian (%zu x %zu) is not positive definite even with "
			    "dampening raised to %g; check the calibration activations",
			    cols, cols, lambda);
}

/* ---- the reference: textbook GPTQ in double ---------------------------------------------- */

/* In-place lower Cholesky of the n x n row-major A (the upper part is left alone). */
static bool ref_cholesky(double *A, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		double s = A[j * n + j];
		for (size_t k = 0; k < j; k++)
			s -= A[j * n + k] * A[j * n + k];
		if (!(s > 0.0) || !isfinite(s))
			return false;
		double d = sqrt(s);
		A[j * n + j] = d;
		for (size_t i = j + 1; i < n; i++) {
			double t = A[i * n + j];
			for (size_t k = 0; k < j; k++)
				t -= A[i * n + k] * A[j * n + k];
			A[i * n + j] = t / d;
		}
	}
	return true;
}

/* U (upper, n x n) with U^T U = (H_perm + lambda I)^-1: Cholesky, the explicit inverse
 * L^-T L^-1, then the Cholesky of that. A and Li are n x n scratch. */
static bool ref_factor(const prep *p, double lambda, double *A, double *Li, double *U)
{
	size_t n = p->cols;
	for (size_t a = 0; a < n; a++) {
		for (size_t b = 0; b < n; b++)
			A[a * n + b] = p->H[p->perm[a] * n + p->perm[b]];
		A[a * n + a] += lambda;
	}
	if (!ref_cholesky(A, n))
		return false;
	/* Li = L^-1 by forward substitution, column by column */
	memset(Li, 0, n * n * sizeof *Li);
	for (size_t j = 0; j < n; j++) {
		Li[j * n + j] = 1.0 / A[j * n + j];
		for (size_t i = j + 1; i < n; i++) {
			double t = 0;
			for (size_t k = j; k < i; k++)
				t += A[i * n + k] * Li[k * n + j];
			Li[i * n + j] = -t / A[i * n + i];
		}
	}
	/* U temporarily holds the inverse Li^T Li */
	for (size_t a = 0; a < n; a++)
		for (size_t b = 0; b < n; b++) {
			double t = 0;
			for (size_t k = a > b ? a : b; k < n; k++)
				t += Li[k * n + a] * Li[k * n + b];
			U[a * n + b] = t;
		}
	if (!ref_cholesky(U, n))
		return false;
	for (size_t a = 0; a < n; a++)
		for (size_t b = a + 1; b < n; b++)
			U[a * n + b] = U[b * n + a], U[b * n + a] = 0.0;
	return true;
}

int gptq_quantize_reference(quant_matrix *out, quant_fmt fmt, const float *W, size_t rows,
			    size_t cols, const float *H, const gptq_opts *o_in, gptq_report *rep,
			    os_error *err)
{
	memset(out, 0, sizeof *out);
	gptq_opts o = opts_resolve(o_in);
	int rc = check_args(fmt, W, rows, cols, H, &o, err);
	if (rc)
		return rc;
	prep p;
	rc = prep_new(&p, W, rows, cols, H, o.act_order, err);
	if (rc)
		return rc;
	size_t n = cols;
	double *A = malloc(n * n * sizeof *A), *Li = malloc(n * n * sizeof *Li);
	double *U = malloc(n * n * sizeof *U), *w = malloc(n * sizeof *w);
	float *buf = malloc(n * sizeof *buf);
	if (!A || !Li || !U || !w || !buf) {
		rc = os_error_set(err, OS_ENOMEM, "gptq: out of memory for %zu x %zu", rows, cols);
		goto fail;
	}
	double lambda = o.damp * p.mean_diag;
	for (int attempt = 0; !ref_factor(&p, lambda, A, Li, U); attempt++) {
		if (attempt == GPTQ_DAMP_RETRIES) {
			rc = chol_error(err, cols, lambda);
			goto fail;
		}
		lambda *= 10.0;
	}
	rc = quant_matrix_new(out, fmt, p.W, rows, cols, o.group, err);
	if (rc)
		goto fail;
	bool int4 = fmt == QUANT_INT4;
	size_t g = o.group, ng = int4 ? cols / g : 0;
	if (int4 && o.act_order)
		static_groups(out, &p, o.weighted, 0, rows);
	for (size_t r = 0; r < rows; r++) {
		grid gr = {.fmt = fmt};
		if (!int4) {
			gr.s = out->scales[r] = row_scale(fmt, p.W + r * n, n, p.imp, o.weighted);
			gr.inv = num_inv_scale(gr.s);
		}
		for (size_t k = 0; k < n; k++)
			w[k] = p.W[r * n + p.perm[k]];
		for (size_t j = 0; j < n; j++) {
			size_t c = p.perm[j];
			if (int4) {
				size_t gi = r * ng + c / g;
				if (!o.act_order && c % g == 0) {
					for (size_t k = 0; k < g; k++)
						buf[k] = (float)w[j + k];
					group_choose(buf, g, p.imp + c, o.weighted,
						     &out->scales[gi], &out->zeros[gi]);
				}
				gr.s = out->scales[gi], gr.z = out->zeros[gi];
			}
			uint8_t code;
			float val = grid_quant(&gr, (float)w[j], &code);
			store_code(out, r, c, code);
			double e = (w[j] - (double)val) / U[j * n + j];
			for (size_t k = j + 1; k < n; k++)
				w[k] -= e * U[j * n + k];
		}
	}
	rc = fill_report(rep, out, fmt, &p, W, H, &o, err);
	if (rc)
		quant_matrix_free(out);
fail:
	free(A);
	free(Li);
	free(U);
	free(w);
	free(buf);
	prep_free(&p);
	return rc;
}

/* ---- the fast version: f32 blocked lazy-batch updates, rows across the pool --------------- */

/* y -= a * x over n elements, the product rounded before the subtraction (no FMA), so the
 * AVX-512 loops and the portable ones give the same bits. */
static void saxpy_sub_scalar(float *restrict y, const float *restrict x, float a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float t = a * x[i];
		y[i] -= t;
	}
}

static void daxpy_sub_scalar(double *restrict y, const double *restrict x, double a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double t = a * x[i];
		y[i] -= t;
	}
}

typedef struct axpy_kernels {
	void (*s)(float *restrict y, const float *restrict x, float a, size_t n);
	void (*d)(double *restrict y, const double *restrict x, double a, size_t n);
} axpy_kernels;

#if defined(__x86_64__) && defined(__GNUC__)
GPTQ_TGT static void saxpy_sub_avx512(float *restrict y, const float *restrict x, float a,
				      size_t n)
{
	__m512 va = _mm512_set1_ps(a);
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_loadu_ps(y + i),
						      _mm512_mul_ps(va, _mm512_loadu_ps(x + i))));
	saxpy_sub_scalar(y + i, x + i, a, n - i);
}

GPTQ_TGT static void daxpy_sub_avx512(double *restrict y, const double *restrict x, double a,
				      size_t n)
{
	__m512d va = _mm512_set1_pd(a);
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm512_storeu_pd(y + i, _mm512_sub_pd(_mm512_loadu_pd(y + i),
						      _mm512_mul_pd(va, _mm512_loadu_pd(x + i))));
	daxpy_sub_scalar(y + i, x + i, a, n - i);
}
#endif

/* The AVX-512 updates where the engine's kernel set is AVX-512 or AMX (so OPTSTUDIO_CPU=generic
 * runs the scalar twins, as it does for every other kernel), else the scalar ones. */
static axpy_kernels axpy_pick(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	const cpu_kernel_set *ks;
	os_error err;
	if (cpu_kernels_select(&ks, &err) == OS_OK && ks->isa >= CPU_ISA_AVX512)
		return (axpy_kernels){saxpy_sub_avx512, daxpy_sub_avx512};
#endif
	return (axpy_kernels){saxpy_sub_scalar, daxpy_sub_scalar};
}

/* The same U as ref_factor, computed the cheap way: with J the order reversal, the upper
 * Cholesky R of J A J (J A J = R^T R, right-looking, all row updates) gives A = V V^T with
 * V = J R^T J upper, so A^-1 = U^T U with U = V^-1 = J (R^T)^-1 J: one factorisation and one
 * triangular inverse instead of two factorisations, an inverse and a product. */
typedef struct inv_job {
	const double *R;
	float *U;
	double *scratch; /* GPTQ_INV_COLS x n per thread */
	size_t n;
	axpy_kernels ax;
} inv_job;

/* Columns of the inverse solved together, so each row of R is read once for all of them. */
#define GPTQ_INV_COLS 32

/* Columns of N = (R^T)^-1 (lower) by forward substitution in row-update form, scattered into
 * U: U[n-1-i][n-1-j] = N[i][j]. Each column's arithmetic is that of solving it alone. */
static void inv_task(void *ctx, size_t task, size_t thread)
{
	inv_job *jb = ctx;
	size_t n = jb->n, j0 = task * GPTQ_INV_COLS, j1 = j0 + GPTQ_INV_COLS;
	j1 = j1 < n ? j1 : n;
	double *x = jb->scratch + thread * GPTQ_INV_COLS * n;
	for (size_t j = j0; j < j1; j++) {
		double *xc = x + (j - j0) * n;
		memset(xc + j, 0, (n - j) * sizeof *xc);
		xc[j] = 1.0;
	}
	for (size_t k = j0; k < n; k++) {
		const double *rk = jb->R + k * n;
		for (size_t j = j0; j < j1 && j <= k; j++) {
			double *xc = x + (j - j0) * n;
			xc[k] /= rk[k];
			jb->ax.d(xc + k + 1, rk + k + 1, xc[k], n - k - 1);
		}
	}
	for (size_t j = j0; j < j1; j++)
		for (size_t i = j; i < n; i++)
			jb->U[(n - 1 - i) * n + (n - 1 - j)] = (float)x[(j - j0) * n + i];
}

/* The Cholesky is right-looking by panels of GPTQ_PANEL rows: a panel is factored, then
 * every later row takes the panel's updates in order while the panel stays in cache. Each
 * element sees the same updates in the same order as the unblocked loop. */
#define GPTQ_PANEL 32
#define GPTQ_TRAIL_ROWS 16

typedef struct chol_job {
	double *R;
	size_t n, k0, k1; /* the panel's rows */
	axpy_kernels ax;
} chol_job;

static void chol_trail_task(void *ctx, size_t task, size_t thread)
{
	chol_job *c = ctx;
	size_t n = c->n, i0 = c->k1 + task * GPTQ_TRAIL_ROWS, i1 = i0 + GPTQ_TRAIL_ROWS;
	i1 = i1 < n ? i1 : n;
	for (size_t i = i0; i < i1; i++)
		for (size_t k = c->k0; k < c->k1; k++) {
			const double *rk = c->R + k * n;
			c->ax.d(c->R + i * n + i, rk + i, rk[i], n - i);
		}
}

/* U (f32, upper; the strictly lower part zeroed) for H_perm + lambda I; false when that is
 * not positive definite. R: n x n double scratch; scratch: GPTQ_INV_COLS x n doubles per
 * pool thread. */
static bool fast_factor(const prep *p, double lambda, double *R, double *scratch, float *U,
			threadpool *pool, axpy_kernels ax)
{
	size_t n = p->cols;
	for (size_t a = 0; a < n; a++) {
		const size_t pa = p->perm[n - 1 - a];
		for (size_t b = a; b < n; b++)
			R[a * n + b] = p->H[pa * n + p->perm[n - 1 - b]];
		R[a * n + a] += lambda;
	}
	for (size_t k0 = 0; k0 < n; k0 += GPTQ_PANEL) {
		size_t k1 = k0 + GPTQ_PANEL < n ? k0 + GPTQ_PANEL : n;
		for (size_t k = k0; k < k1; k++) {
			double *rk = R + k * n;
			double s = rk[k];
			if (!(s > 0.0) || !isfinite(s))
				return false;
			double d = sqrt(s), inv = 1.0 / d;
			rk[k] = d;
			for (size_t j = k + 1; j < n; j++)
				rk[j] *= inv;
			for (size_t i = k + 1; i < k1; i++)
				ax.d(R + i * n + i, rk + i, rk[i], n - i);
		}
		chol_job c = {.R = R, .n = n, .k0 = k0, .k1 = k1, .ax = ax};
		threadpool_run(pool, (n - k1 + GPTQ_TRAIL_ROWS - 1) / GPTQ_TRAIL_ROWS,
			       chol_trail_task, &c);
	}
	memset(U, 0, n * n * sizeof *U);
	inv_job jb = {.R = R, .U = U, .scratch = scratch, .n = n, .ax = ax};
	threadpool_run(pool, (n + GPTQ_INV_COLS - 1) / GPTQ_INV_COLS, inv_task, &jb);
	return true;
}

typedef struct gptq_job {
	quant_matrix *out;
	const prep *p;
	const gptq_opts *o;
	float *Wp;       /* rows x cols, columns in processing order, updated in place */
	const float *U;  /* cols x cols upper */
	float *err;      /* GPTQ_TASK_ROWS x block per thread */
	size_t block;
	axpy_kernels ax;
} gptq_job;

/* GPTQ on rows [r0, r1): each block of columns is quantized row by row with its in-block
 * updates applied at once, then its errors reach the later columns in one batched update
 * (the same updates in the same order as the column loop, only grouped). */
static void gptq_task(void *ctx, size_t task, size_t thread)
{
	gptq_job *jb = ctx;
	quant_matrix *out = jb->out;
	const prep *p = jb->p;
	size_t n = p->cols, B = jb->block;
	size_t r0 = task * GPTQ_TASK_ROWS, r1 = r0 + GPTQ_TASK_ROWS;
	r1 = r1 < p->rows ? r1 : p->rows;
	bool int4 = out->fmt == QUANT_INT4, act = jb->o->act_order, weighted = jb->o->weighted;
	size_t g = out->group, ng = int4 ? n / g : 0;
	float *errb = jb->err + thread * GPTQ_TASK_ROWS * B;
	const float *U = jb->U;
	if (int4 && act)
		static_groups(out, p, weighted, r0, r1);
	if (!int4)
		for (size_t r = r0; r < r1; r++)
			out->scales[r] = row_scale(out->fmt, p->W + r * n, n, p->imp, weighted);
	for (size_t i1 = 0; i1 < n; i1 += B) {
		size_t i2 = i1 + B < n ? i1 + B : n;
		for (size_t r = r0; r < r1; r++) {
			float *w = jb->Wp + r * n, *er = errb + (r - r0) * B;
			grid gr = {.fmt = out->fmt};
			if (!int4)
				gr.s = out->scales[r], gr.inv = num_inv_scale(gr.s);
			for (size_t j = i1; j < i2; j++) {
				size_t c = p->perm[j];
				if (int4) {
					size_t gi = r * ng + c / g;
					/* natural order, and B a multiple of g: the group lies in
					 * this block, whose updates so far are all applied */
					if (!act && c % g == 0)
						group_choose(w + j, g, p->imp + c, weighted,
							     &out->scales[gi], &out->zeros[gi]);
					gr.s = out->scales[gi], gr.z = out->zeros[gi];
				}
				uint8_t code;
				float val = grid_quant(&gr, w[j], &code);
				store_code(out, r, c, code);
				float e = (w[j] - val) / U[j * n + j];
				er[j - i1] = e;
				jb->ax.s(w + j + 1, U + j * n + j + 1, e, i2 - j - 1);
			}
		}
		if (i2 == n)
			break;
		for (size_t k = i1; k < i2; k++)
			for (size_t r = r0; r < r1; r++)
				jb->ax.s(jb->Wp + r * n + i2, U + k * n + i2,
					 errb[(r - r0) * B + (k - i1)], n - i2);
	}
}

int gptq_quantize(quant_matrix *out, quant_fmt fmt, const float *W, size_t rows, size_t cols,
		  const float *H, const gptq_opts *o_in, gptq_report *rep, os_error *err)
{
	memset(out, 0, sizeof *out);
	gptq_opts o = opts_resolve(o_in);
	int rc = check_args(fmt, W, rows, cols, H, &o, err);
	if (rc)
		return rc;
	prep p;
	rc = prep_new(&p, W, rows, cols, H, o.act_order, err);
	if (rc)
		return rc;
	size_t n = cols, nt = threadpool_n_threads(o.pool);
	size_t B = o.block;
	if (fmt == QUANT_INT4) /* groups must not straddle blocks: see gptq_task */
		B = (B + o.group - 1) / o.group * o.group;
	B = B < n ? B : n;
	axpy_kernels ax = axpy_pick();
	double *R = malloc(n * n * sizeof *R);
	double *scratch = malloc(nt * GPTQ_INV_COLS * n * sizeof *scratch);
	float *U = malloc(n * n * sizeof *U), *Wp = malloc(rows * n * sizeof *Wp);
	float *errb = malloc(nt * GPTQ_TASK_ROWS * B * sizeof *errb);
	if (!R || !scratch || !U || !Wp || !errb) {
		rc = os_error_set(err, OS_ENOMEM, "gptq: out of memory for %zu x %zu", rows, cols);
		goto fail;
	}
	double lambda = o.damp * p.mean_diag;
	for (int attempt = 0; !fast_factor(&p, lambda, R, scratch, U, o.pool, ax); attempt++) {
		if (attempt == GPTQ_DAMP_RETRIES) {
			rc = chol_error(err, cols, lambda);
			goto fail;
		}
		lambda *= 10.0;
	}
	free(R);
	R = NULL;
	for (size_t r = 0; r < rows; r++)
		for (size_t k = 0; k < n; k++)
			Wp[r * n + k] = p.W[r * n + p.perm[k]];
	rc = quant_matrix_new(out, fmt, p.W, rows, cols, o.group, err);
	if (rc)
		goto fail;
	gptq_job jb = {.out = out, .p = &p, .o = &o, .Wp = Wp, .U = U, .err = errb,
		       .block = B, .ax = ax};
	threadpool_run(o.pool, (rows + GPTQ_TASK_ROWS - 1) / GPTQ_TASK_ROWS, gptq_task, &jb);
	rc = fill_report(rep, out, fmt, &p, W, H, &o, err);
	if (rc)
		quant_matrix_free(out);
fail:
	free(R);
	free(scratch);
	free(U);
	free(Wp);
	free(errb);
	prep_free(&p);
	return rc;
}
