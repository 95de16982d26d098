/* test_gptq.c: GPTQ (gptq.h): with a diagonal H it is plain quantization; with correlated
 * inputs it clearly beats round-to-nearest on the proxy error, which its report states
 * truthfully; the fast blocked version agrees with the textbook double twin; neither a pool
 * nor the block size changes anything; dead channels, rank-deficient and indefinite
 * Hessians, bad arguments. */
#include "tests/test.h"

#include <stdbool.h>

#include "core/numerics.h"
#include "core/optimize/gptq.h"

static uint64_t seed = 20261124;

/* Heavy-tailed weights, never zero. */
static float *rand_weights(size_t rows, size_t cols, uint64_t *st)
{
	float *W = malloc(rows * cols * sizeof *W);
	for (size_t i = 0; W && i < rows * cols; i++) {
		float u = test_rand_float(st);
		W[i] = u * u * u * 0.2f + 0.02f * test_rand_float(st) + 1e-4f;
	}
	return W;
}

/* H = X^T X / n for X = Z A: n samples mixed by a random A (I + dense noise + a strong
 * shared component), a few outlier channels scaled up, as real activations look. */
static float *rand_hessian(size_t cols, size_t n, uint64_t *st)
{
	float *A = malloc(cols * cols * sizeof *A), *X = malloc(n * cols * sizeof *X);
	float *H = malloc(cols * cols * sizeof *H);
	float *shared = malloc(cols * sizeof *shared);
	if (!A || !X || !H || !shared) {
		free(A), free(X), free(H), free(shared);
		return NULL;
	}
	for (size_t j = 0; j < cols; j++)
		shared[j] = test_rand_float(st);
	for (size_t i = 0; i < cols; i++)
		for (size_t j = 0; j < cols; j++)
			A[i * cols + j] = (i == j) + 0.3f * test_rand_float(st) +
					  1.5f * shared[i] * shared[j];
	/* Z random (fresh per sample), X = Z A */
	float *z = malloc(cols * sizeof *z);
	for (size_t s = 0; z && s < n; s++) {
		for (size_t i = 0; i < cols; i++)
			z[i] = test_rand_float(st);
		for (size_t j = 0; j < cols; j++) {
			double t = 0;
			for (size_t i = 0; i < cols; i++)
				t += (double)z[i] * A[i * cols + j];
			X[s * cols + j] = (float)t * (j % 17 == 3 ? 12.0f : 1.0f);
		}
	}
	for (size_t a = 0; a < cols; a++)
		for (size_t b = 0; b < cols; b++) {
			double t = 0;
			for (size_t s = 0; s < n; s++)
				t += (double)X[s * cols + a] * X[s * cols + b];
			H[a * cols + b] = (float)(t / (double)n);
		}
	free(A), free(X), free(shared), free(z);
	return H;
}

/* tr((W - Q) H (W - Q)^T) straight from the definition, in double. */
static double proxy_naive(const quant_matrix *q, const float *W, const float *H, size_t rows,
			  size_t cols)
{
	float *Q = malloc(rows * cols * sizeof *Q);
	quant_matrix_dequantize(q, Q);
	double tot = 0;
	for (size_t r = 0; r < rows; r++)
		for (size_t a = 0; a < cols; a++)
			for (size_t b = 0; b < cols; b++)
				tot += ((double)W[r * cols + a] - Q[r * cols + a]) *
				       (double)H[a * cols + b] *
				       ((double)W[r * cols + b] - Q[r * cols + b]);
	free(Q);
	return tot;
}

static bool same_matrix(const quant_matrix *a, const quant_matrix *b)
{
	size_t nd = a->fmt == QUANT_INT4 ? a->rows * a->cols / 2 : a->rows * a->cols;
	size_t ns = a->fmt == QUANT_INT4 ? a->rows * (a->cols / a->group) : a->rows;
	return a->fmt == b->fmt && a->rows == b->rows && a->cols == b->cols &&
	       a->group == b->group && memcmp(a->data, b->data, nd) == 0 &&
	       memcmp(a->scales, b->scales, ns * sizeof(float)) == 0 &&
	       (a->fmt != QUANT_INT4 || memcmp(a->zeros, b->zeros, ns) == 0);
}

static uint8_t code_at(const quant_matrix *m, size_t r, size_t c)
{
	if (m->fmt == QUANT_INT4)
		return num_i4_get((const uint8_t *)m->data + r * (m->cols / 2), c);
	return ((const uint8_t *)m->data)[r * m->cols + c];
}

/* With H diagonal there is nothing to spread the error to: GPTQ (both versions, either
 * order) gives exactly the codes of plain (or, weighted, importance-searched) quantization. */
static void check_diagonal(quant_fmt fmt, size_t rows, size_t cols, size_t group, bool weighted,
			   bool act)
{
	uint64_t st = seed + rows * 7 + cols + weighted * 3 + act;
	float *W = rand_weights(rows, cols, &st);
	float *H = calloc(cols * cols, sizeof *H), *imp = malloc(cols * sizeof *imp);
	CHECK(W && H && imp);
	for (size_t j = 0; j < cols; j++)
		H[j * cols + j] = imp[j] = powf(10.0f, 2.0f * test_rand_float(&st));
	quant_matrix plain, fast, ref;
	os_error err;
	int rc = weighted ? quant_matrix_new_weighted(&plain, fmt, W, rows, cols, group, imp, NULL,
						      &err)
			  : quant_matrix_new(&plain, fmt, W, rows, cols, group, &err);
	CHECK(rc == OS_OK);
	gptq_opts o = {.group = group, .weighted = weighted, .act_order = act, .block = 32};
	CHECK_MSG(gptq_quantize(&fast, fmt, W, rows, cols, H, &o, NULL, &err) == OS_OK, "%s",
		  err.msg);
	CHECK_MSG(gptq_quantize_reference(&ref, fmt, W, rows, cols, H, &o, NULL, &err) == OS_OK,
		  "%s", err.msg);
	CHECK_MSG(same_matrix(&fast, &plain), "%s %zux%zu weighted %d act %d: fast != plain",
		  quant_fmt_name(fmt), rows, cols, weighted, act);
	CHECK_MSG(same_matrix(&ref, &plain), "%s %zux%zu weighted %d act %d: reference != plain",
		  quant_fmt_name(fmt), rows, cols, weighted, act);
	quant_matrix_free(&plain), quant_matrix_free(&fast), quant_matrix_free(&ref);
	free(W), free(H), free(imp);
}

TEST(diagonal_hessian_is_plain_quantization)
{
	for (int a = 0; a < 2; a++)
		for (int wt = 0; wt < 2; wt++) {
			check_diagonal(QUANT_INT4, 37, 192, 64, wt, a);
			if (test_case_failed)
				return;
			check_diagonal(QUANT_INT4, 13, 96, 32, wt, a);
			if (test_case_failed)
				return;
			check_diagonal(QUANT_FP8_E4M3, 29, 75, 0, wt, a);
			if (test_case_failed)
				return;
		}
	check_diagonal(QUANT_INT8, 19, 83, 0, false, false);
}

/* On correlated inputs GPTQ's proxy error is well below RTN's, and the report's three
 * numbers are what the definition gives for the returned matrix. */
static void check_beats_rtn(quant_fmt fmt, size_t rows, size_t cols, size_t group, bool weighted,
			    bool act, double max_ratio)
{
	uint64_t st = seed + 101 * cols + rows + weighted;
	float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, 2 * cols, &st);
	CHECK(W && H);
	gptq_opts o = {.group = group, .weighted = weighted, .act_order = act};
	quant_matrix q, rtn;
	gptq_report rep;
	os_error err;
	CHECK_MSG(gptq_quantize(&q, fmt, W, rows, cols, H, &o, &rep, &err) == OS_OK, "%s", err.msg);
	float *imp = malloc(cols * sizeof *imp);
	for (size_t j = 0; j < cols; j++)
		imp[j] = H[j * cols + j];
	CHECK(weighted ? quant_matrix_new_weighted(&rtn, fmt, W, rows, cols, group, imp, NULL,
						   &err) == OS_OK
		       : quant_matrix_new(&rtn, fmt, W, rows, cols, group, &err) == OS_OK);
	double e_q = proxy_naive(&q, W, H, rows, cols), e_r = proxy_naive(&rtn, W, H, rows, cols);
	double energy = 0;
	for (size_t r = 0; r < rows; r++)
		for (size_t a = 0; a < cols; a++)
			for (size_t b = 0; b < cols; b++)
				energy += (double)W[r * cols + a] * H[a * cols + b] *
					  W[r * cols + b];
	CHECK_NEAR(rep.err_gptq, e_q, 1e-6 * e_q);
	CHECK_NEAR(rep.err_rtn, e_r, 1e-6 * e_r);
	CHECK_NEAR(rep.energy, energy, 1e-6 * energy);
	CHECK_MSG(e_q < max_ratio * e_r,
		  "%s %zux%zu weighted %d act %d: gptq %g not below %g x rtn %g (energy %g)",
		  quant_fmt_name(fmt), rows, cols, weighted, act, e_q, max_ratio, e_r, energy);
	printf("  %s %zux%zu g%zu weighted %d act %d: rtn %.3e gptq %.3e (ratio %.3f) of energy "
	       "%.3e\n",
	       quant_fmt_name(fmt), rows, cols, group, weighted, act, e_r, e_q, e_q / e_r, energy);
	quant_matrix_free(&q), quant_matrix_free(&rtn);
	free(W), free(H), free(imp);
}

TEST(correlated_inputs_beat_rtn)
{
	for (int a = 0; a < 2; a++)
		for (int wt = 0; wt < 2; wt++) {
			check_beats_rtn(QUANT_INT4, 37, 192, 64, wt, a, 0.8);
			if (test_case_failed)
				return;
			check_beats_rtn(QUANT_FP8_E4M3, 23, 96, 0, wt, a, 0.8);
			if (test_case_failed)
				return;
		}
	check_beats_rtn(QUANT_INT8, 23, 96, 0, false, false, 0.8);
}

/* The blocked f32 version against the double textbook twin: the same objective to 1e-3 and
 * nearly all codes equal (f32 rounding may flip a few near-ties). */
static void check_twin(quant_fmt fmt, size_t rows, size_t cols, size_t group, size_t block,
		       bool weighted, bool act)
{
	uint64_t st = seed + 7 * cols + rows + block + act;
	float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, cols + cols / 2, &st);
	CHECK(W && H);
	gptq_opts o = {.group = group, .block = block, .weighted = weighted, .act_order = act};
	quant_matrix f, r;
	gptq_report rf, rr;
	os_error err;
	CHECK_MSG(gptq_quantize(&f, fmt, W, rows, cols, H, &o, &rf, &err) == OS_OK, "%s", err.msg);
	CHECK_MSG(gptq_quantize_reference(&r, fmt, W, rows, cols, H, &o, &rr, &err) == OS_OK, "%s",
		  err.msg);
	size_t same = 0;
	for (size_t i = 0; i < rows; i++)
		for (size_t c = 0; c < cols; c++)
			same += code_at(&f, i, c) == code_at(&r, i, c);
	double frac = (double)same / (double)(rows * cols);
	CHECK_NEAR(rf.err_rtn, rr.err_rtn, 1e-9 * rr.err_rtn);
	CHECK_MSG(fabs(rf.err_gptq - rr.err_gptq) <= 1e-3 * rr.err_gptq,
		  "%s %zux%zu block %zu act %d: fast %g vs reference %g", quant_fmt_name(fmt),
		  rows, cols, block, act, rf.err_gptq, rr.err_gptq);
	CHECK_MSG(frac >= 0.99, "%s %zux%zu block %zu act %d: only %.4f of codes agree",
		  quant_fmt_name(fmt), rows, cols, block, act, frac);
	printf("  %s %zux%zu block %zu weighted %d act %d: codes agree %.4f, objective %+.2e\n",
	       quant_fmt_name(fmt), rows, cols, block, weighted, act, frac,
	       (rf.err_gptq - rr.err_gptq) / rr.err_gptq);
	quant_matrix_free(&f), quant_matrix_free(&r);
	free(W), free(H);
}

TEST(fast_matches_reference)
{
	for (int a = 0; a < 2; a++) {
		check_twin(QUANT_INT4, 37, 192, 64, 128, false, a);
		if (test_case_failed)
			return;
		check_twin(QUANT_INT4, 21, 96, 32, 40, true, a); /* block rounded up to 64 */
		if (test_case_failed)
			return;
		check_twin(QUANT_INT4, 9, 256, 128, 0, true, a);
		if (test_case_failed)
			return;
		check_twin(QUANT_FP8_E4M3, 17, 150, 0, 48, a, a);
		if (test_case_failed)
			return;
		check_twin(QUANT_INT8, 11, 70, 0, 16, false, a);
		if (test_case_failed)
			return;
	}
}

TEST(pool_and_block_change_nothing)
{
	threadpool *pool = NULL;
	os_error err;
	CHECK(threadpool_new(&pool, 2, &err) == OS_OK);
	uint64_t st = seed + 5;
	size_t rows = 45, cols = 192;
	float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, 300, &st);
	CHECK(W && H);
	for (int k = 0; k < 3; k++) {
		quant_fmt fmt = k == 2 ? QUANT_FP8_E4M3 : QUANT_INT4;
		gptq_opts o = {.group = 64, .weighted = k != 0, .act_order = k == 1};
		quant_matrix a, b;
		gptq_report ra, rb;
		CHECK(gptq_quantize(&a, fmt, W, rows, cols, H, &o, &ra, &err) == OS_OK);
		o.pool = pool;
		CHECK(gptq_quantize(&b, fmt, W, rows, cols, H, &o, &rb, &err) == OS_OK);
		CHECK_MSG(same_matrix(&a, &b), "case %d: pool changed the result", k);
		CHECK(memcmp(&ra, &rb, sizeof ra) == 0);
		quant_matrix_free(&b);
		/* the lazy batch only regroups the same updates: the block size changes nothing */
		o.block = k == 2 ? 20 : 64;
		CHECK(gptq_quantize(&b, fmt, W, rows, cols, H, &o, NULL, &err) == OS_OK);
		CHECK_MSG(same_matrix(&a, &b), "case %d: block %zu changed the result", k, o.block);
		quant_matrix_free(&a), quant_matrix_free(&b);
	}
	free(W), free(H);
	threadpool_free(pool);
}

/* The AVX-512 column updates against their scalar twins (OPTSTUDIO_CPU=generic): the same
 * codes, scales and zero points to the bit, at awkward sizes. */
TEST(simd_updates_match_scalar)
{
	uint64_t st = seed + 11;
	static const struct {
		quant_fmt fmt;
		size_t rows, cols, group;
	} cases[] = {
		{QUANT_INT4, 37, 192, 64},
		{QUANT_INT4, 13, 96, 32},
		{QUANT_FP8_E4M3, 29, 75, 0},
		{QUANT_INT8, 11, 70, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t rows = cases[i].rows, cols = cases[i].cols;
		float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, cols + 17, &st);
		CHECK(W && H);
		gptq_opts o = {.group = cases[i].group, .weighted = true, .act_order = i % 2 == 0};
		quant_matrix fast, scalar;
		os_error err;
		CHECK(gptq_quantize(&fast, cases[i].fmt, W, rows, cols, H, &o, NULL, &err) == OS_OK);
		setenv("OPTSTUDIO_CPU", "generic", 1);
		int rc = gptq_quantize(&scalar, cases[i].fmt, W, rows, cols, H, &o, NULL, &err);
		unsetenv("OPTSTUDIO_CPU");
		CHECK(rc == OS_OK);
		CHECK_MSG(same_matrix(&fast, &scalar), "%s %zux%zu: SIMD and scalar updates differ",
			  quant_fmt_name(cases[i].fmt), rows, cols);
		quant_matrix_free(&fast), quant_matrix_free(&scalar);
		free(W), free(H);
	}
}

/* A dead channel (its row and column of H zero): succeeds, the column becomes exact zeros,
 * and the rest still beats RTN. */
TEST(dead_channel)
{
	uint64_t st = seed + 9;
	size_t rows = 19, cols = 96, dead = 41;
	float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, 200, &st);
	CHECK(W && H);
	for (size_t k = 0; k < cols; k++)
		H[dead * cols + k] = H[k * cols + dead] = 0.0f;
	for (int a = 0; a < 2; a++) {
		gptq_opts o = {.group = 32, .act_order = a, .weighted = true};
		quant_matrix q, r;
		gptq_report rep;
		os_error err;
		CHECK_MSG(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, &rep, &err) == OS_OK,
			  "%s", err.msg);
		CHECK(gptq_quantize_reference(&r, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) ==
		      OS_OK);
		float *D = malloc(rows * cols * sizeof *D), *Dr = malloc(rows * cols * sizeof *Dr);
		quant_matrix_dequantize(&q, D);
		quant_matrix_dequantize(&r, Dr);
		for (size_t i = 0; i < rows; i++) {
			CHECK(D[i * cols + dead] == 0.0f);
			CHECK(Dr[i * cols + dead] == 0.0f);
		}
		CHECK(isfinite(rep.err_gptq) && rep.err_gptq < rep.err_rtn);
		quant_matrix_free(&q), quant_matrix_free(&r);
		free(D), free(Dr);
	}
	free(W), free(H);
}

/* Fewer samples than columns: H is singular, the dampening makes it definite. */
TEST(rank_deficient_hessian)
{
	uint64_t st = seed + 11;
	size_t rows = 23, cols = 192;
	float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, 40, &st);
	CHECK(W && H);
	gptq_opts o = {.group = 64};
	quant_matrix q;
	gptq_report rep;
	os_error err;
	CHECK_MSG(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, &rep, &err) == OS_OK, "%s",
		  err.msg);
	CHECK(rep.err_gptq < rep.err_rtn);
	quant_matrix_free(&q);
	CHECK(gptq_quantize_reference(&q, QUANT_INT4, W, rows, cols, H, &o, &rep, &err) == OS_OK);
	CHECK(rep.err_gptq < rep.err_rtn);
	quant_matrix_free(&q);
	free(W), free(H);
}

TEST(bad_arguments)
{
	uint64_t st = seed + 13;
	size_t rows = 8, cols = 96;
	float *W = rand_weights(rows, cols, &st), *H = rand_hessian(cols, 100, &st);
	CHECK(W && H);
	quant_matrix q;
	os_error err;
	gptq_opts o = {.group = 48};
	CHECK(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) == OS_EUSAGE);
	CHECK(q.data == NULL);
	o.group = 64; /* does not divide 96 */
	CHECK(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) == OS_EUSAGE);
	CHECK(gptq_quantize_reference(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) ==
	      OS_EUSAGE);
	o.group = 32;
	CHECK(gptq_quantize(&q, QUANT_INT4, W, 0, cols, H, &o, NULL, &err) == OS_EUSAGE);
	CHECK(gptq_quantize(&q, (quant_fmt)7, W, rows, cols, H, &o, NULL, &err) == OS_EUSAGE);
	o.damp = -0.5f;
	CHECK(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) == OS_EUSAGE);
	o.damp = 0;
	float keep = W[5];
	W[5] = NAN;
	CHECK(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) == OS_EUSAGE);
	W[5] = keep;
	/* indefinite: no dampening of its mean diagonal fixes a negative one */
	for (size_t i = 0; i < cols * cols; i++)
		H[i] = i % (cols + 1) == 0 ? -1.0f : 0.0f;
	CHECK(gptq_quantize(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) == OS_ERANGE);
	CHECK(strstr(err.msg, "positive definite") != NULL);
	CHECK(gptq_quantize_reference(&q, QUANT_INT4, W, rows, cols, H, &o, NULL, &err) ==
	      OS_ERANGE);
	CHECK(q.data == NULL);
	free(W), free(H);
}

int main(void)
{
	printf("seed %llu\n", (unsigned long long)seed);
	RUN(diagonal_hessian_is_plain_quantization);
	RUN(correlated_inputs_beat_rtn);
	RUN(fast_matches_reference);
	RUN(pool_and_block_change_nothing);
	RUN(simd_updates_match_scalar);
	RUN(dead_channel);
	RUN(rank_deficient_hessian);
	RUN(bad_arguments);
	return test_summary();
}
