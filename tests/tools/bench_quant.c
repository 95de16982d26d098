/* bench_quant.c: decode matvec (one token) speed of every weight format on SmolLM2-shaped
 * matrices against the read bandwidth measured in the same run, as one table.
 *   bench_quant [--set-mib N] [--threads N] [--seconds S] [--formats F,F,...]
 * Each matrix is copied until the copies span N MiB (default 1024, beyond the last-level
 * cache), and calls cycle through the copies, so weights come from memory as in a real
 * decode step. OPTSTUDIO_CPU forces a kernel set.
 *   bench_quant --ab-i8 N_TOK[,N_TOK...] [--threads N] [--seconds S]
 * instead: a paired A/B of INT8 W8A8 between the avx512 quantized set and the amx one (AMX-INT8
 * tiles) in one process, for a machine whose speed drifts between runs: passes of one
 * SmolLM2-135M forward's matmuls (30 layers of distinct cold INT8 weights, and the head for
 * one token) alternate A B, B A, ..., and each adjacent pair's time ratio cancels the drift
 * both saw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/kernels.h"
#include "core/cpu/kernels_quant.h"
#include "core/cpu/roofline.h"
#include "core/numerics.h"
#include "core/optimize/quant_formats.h"
#include "tests/ab/ab_pairs.h"

typedef enum bfmt { B_F32, B_BF16, B_FP8, B_FP8_A8, B_INT8, B_INT4, B_COUNT } bfmt;
static const char *const bfmt_names[B_COUNT] = {"F32", "BF16", "FP8", "FP8-A8", "INT8", "INT4"};

typedef struct shape {
	const char *what;
	size_t n_out, n_in;
	size_t per_step; /* matmuls of this shape in one SmolLM2-135M decode step (30 layers) */
} shape;

static const shape shapes[] = {
	{"attn q/o", 576, 576, 60},
	{"attn k/v", 192, 576, 60},
	{"mlp gate/up", 1536, 576, 60},
	{"mlp down", 576, 1536, 30},
	{"lm head", 49152, 576, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One copy of a matrix in one format: the buffers a matmul reads. */
typedef struct wcopy {
	void *data;
	float *scales;
	uint8_t *zeros;
} wcopy;

typedef struct bench {
	threadpool *pool;
	const cpu_kernel_set *ks;
	const cpu_qkernel_set *qk;
	size_t set_bytes;
	double seconds;
} bench;

static size_t int4_group(size_t n_in)
{
	return n_in % 128 == 0 ? 128 : n_in % 64 == 0 ? 64 : 32;
}

static int run_one(const bench *b, bfmt f, const wcopy *w, float *Y, const float *X,
		   const shape *s)
{
	switch (f) {
	case B_F32:
		return cpu_matmul(b->pool, b->ks, Y, X, w->data, CPU_WFMT_F32, 1, s->n_in, s->n_out);
	case B_BF16:
		return cpu_matmul(b->pool, b->ks, Y, X, w->data, CPU_WFMT_BF16, 1, s->n_in, s->n_out);
	case B_FP8:
	case B_FP8_A8:
		return cpu_qmatmul_fp8(b->pool, b->qk, Y, X, w->data, w->scales, 1, s->n_in,
				       s->n_out, f == B_FP8_A8);
	case B_INT8:
		return cpu_qmatmul_i8(b->pool, b->qk, Y, X, w->data, w->scales, 1, s->n_in, s->n_out);
	case B_INT4:
		return cpu_qmatmul_i4(b->pool, b->qk, Y, X, w->data, w->scales, w->zeros,
				      int4_group(s->n_in), 1, s->n_in, s->n_out);
	default:
		return OS_EUSAGE;
	}
}

/* The source matrix in format f as one template copy; *bytes gets what a call streams. */
static int make_template(bfmt f, const float *W, const shape *s, wcopy *t, size_t *data_bytes,
			 size_t *scale_bytes, size_t *zero_bytes)
{
	size_t n = s->n_out * s->n_in;
	memset(t, 0, sizeof *t);
	*scale_bytes = *zero_bytes = 0;
	if (f == B_F32 || f == B_BF16) {
		*data_bytes = n * (f == B_F32 ? 4 : 2);
		t->data = cpu_alloc_aligned(*data_bytes);
		if (!t->data)
			return OS_ENOMEM;
		if (f == B_F32)
			memcpy(t->data, W, *data_bytes);
		else
			for (size_t i = 0; i < n; i++)
				((uint16_t *)t->data)[i] = num_f32_to_bf16(W[i]);
		return OS_OK;
	}
	quant_fmt qf = f == B_INT8 ? QUANT_INT8 : f == B_INT4 ? QUANT_INT4 : QUANT_FP8_E4M3;
	quant_matrix m;
	int rc = quant_matrix_new(&m, qf, W, s->n_out, s->n_in, int4_group(s->n_in), NULL);
	if (rc != OS_OK)
		return rc;
	size_t n_scales = qf == QUANT_INT4 ? s->n_out * (s->n_in / m.group) : s->n_out;
	*data_bytes = qf == QUANT_INT4 ? n / 2 : n;
	*scale_bytes = n_scales * sizeof(float);
	*zero_bytes = qf == QUANT_INT4 ? n_scales : 0;
	t->data = m.data;
	t->scales = m.scales;
	t->zeros = m.zeros; /* the template takes the matrix's buffers (freed with free) */
	return OS_OK;
}

static void *dup_buf(const void *src, size_t bytes)
{
	if (!src)
		return NULL;
	void *p = cpu_alloc_aligned(bytes);
	if (p)
		memcpy(p, src, bytes);
	return p;
}

/* Seconds per call of format f on shape s, cycling through copies spanning set_bytes; the
 * bytes one call streams in *bytes. Negative on failure. */
static double time_format(const bench *b, bfmt f, const float *W, const float *X, float *Y,
			  const shape *s, size_t *bytes)
{
	wcopy t;
	size_t db, sb, zb;
	if (make_template(f, W, s, &t, &db, &sb, &zb) != OS_OK)
		return -1;
	*bytes = db + sb + zb;
	size_t n_copies = b->set_bytes / *bytes + 1;
	wcopy *c = calloc(n_copies, sizeof *c);
	double per_call = -1;
	size_t made = 0;
	if (!c)
		goto done;
	for (; made < n_copies; made++) {
		c[made].data = dup_buf(t.data, db);
		c[made].scales = dup_buf(t.scales, sb);
		c[made].zeros = dup_buf(t.zeros, zb);
		if (!c[made].data || (sb && !c[made].scales) || (zb && !c[made].zeros)) {
			made++;
			goto done;
		}
	}
	for (size_t i = 0; i < n_copies; i++) /* warm-up: page faults, pool spin-up */
		if (run_one(b, f, &c[i], Y, X, s) != OS_OK)
			goto done;
	/* best of 3 rounds, each at least seconds / 3 and one pass over the copies */
	for (int round = 0; round < 3; round++) {
		size_t calls = 0;
		double t0 = now_s(), el;
		do {
			run_one(b, f, &c[calls % n_copies], Y, X, s);
			calls++;
			el = now_s() - t0;
		} while (el < b->seconds / 3 || calls < n_copies);
		double pc = el / (double)calls;
		if (per_call < 0 || pc < per_call)
			per_call = pc;
	}
done:
	for (size_t i = 0; i < made; i++) {
		cpu_free_aligned(c[i].data);
		cpu_free_aligned(c[i].scales);
		cpu_free_aligned(c[i].zeros);
	}
	free(c);
	free(t.data); /* posix_memalign / cpu_alloc_aligned memory: free() either way */
	free(t.scales);
	free(t.zeros);
	return per_call;
}

/* Whether name is an item of the comma-separated list (NULL: every name). */
static int format_listed(const char *list, const char *name)
{
	if (!list)
		return 1;
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !strncmp(p, name, n))
			return 1;
		p += len + (end ? 1 : 0);
	}
	return 0;
}

/* ---- paired A/B of the INT8 sets ------------------------------------------------------- */

enum { AB_LAYERS = 30, AB_DIM = 576, AB_FFN = 1536, AB_KV = 192, AB_VOCAB = 49152,
       AB_MAX_TOK = 2048 };

static const size_t ab_shapes[][2] = { /* n_out, n_in of a layer's projections, in order */
	{AB_DIM, AB_DIM}, {AB_KV, AB_DIM}, {AB_KV, AB_DIM}, {AB_DIM, AB_DIM},
	{AB_FFN, AB_DIM}, {AB_FFN, AB_DIM}, {AB_DIM, AB_FFN},
};
#define AB_N_SHAPES (sizeof ab_shapes / sizeof ab_shapes[0])

/* What a pass needs: the two sets (old, new) and one forward's operands. */
struct ab_i8_ctx {
	threadpool *pool;
	const cpu_qkernel_set *sets[2];
	float *Y;
	const float *X;
	const int8_t *W;
	const float *sw;
};

/* One forward's INT8 matmuls with set `which` (W, sw: every matrix after the other);
 * seconds. */
static double ab_pass(void *ctx, int which, size_t n_tok)
{
	const struct ab_i8_ctx *c = ctx;
	threadpool *pool = c->pool;
	const cpu_qkernel_set *qk = c->sets[which];
	float *Y = c->Y;
	const float *X = c->X;
	const int8_t *W = c->W;
	const float *sw = c->sw;
	double t0 = now_s();
	for (size_t l = 0; l < AB_LAYERS; l++)
		for (size_t i = 0; i < AB_N_SHAPES; i++) {
			cpu_qmatmul_i8(pool, qk, Y, X, W, sw, n_tok, ab_shapes[i][1], ab_shapes[i][0]);
			W += ab_shapes[i][0] * ab_shapes[i][1];
			sw += ab_shapes[i][0];
		}
	cpu_qmatmul_i8(pool, qk, Y, X, W, sw, 1, AB_DIM, AB_VOCAB);
	return now_s() - t0;
}

/* The --ab-i8 mode: prints one line per token count; 0, 1 on failure, 2 on bad arguments. */
static int ab_i8(const char *toks, size_t n_threads, double seconds)
{
	const cpu_qkernel_set *sets[2] = {cpu_qkernels_get(CPU_ISA_AVX512),
					  cpu_qkernels_get(CPU_ISA_AMX)};
	if (!sets[0] || !sets[1] || sets[1] == sets[0]) {
		fprintf(stderr, "bench_quant: no amx quantized set on this CPU\n");
		return 1;
	}
	size_t n_w = (size_t)AB_VOCAB * AB_DIM, n_s = AB_VOCAB;
	for (size_t i = 0; i < AB_N_SHAPES; i++)
		n_w += AB_LAYERS * ab_shapes[i][0] * ab_shapes[i][1], n_s += AB_LAYERS * ab_shapes[i][0];
	int8_t *W = cpu_alloc_aligned(n_w);
	float *sw = cpu_alloc_aligned(n_s * sizeof *sw);
	float *X = cpu_alloc_aligned((size_t)AB_MAX_TOK * AB_FFN * sizeof *X);
	float *Y = cpu_alloc_aligned((size_t)AB_MAX_TOK * AB_VOCAB * sizeof *Y);
	threadpool *pool = NULL;
	os_error err;
	int rc = 1;
	if (!W || !sw || !X || !Y) {
		fprintf(stderr, "bench_quant: out of memory\n");
		goto done;
	}
	if (threadpool_new(&pool, n_threads, &err) != OS_OK) {
		fprintf(stderr, "bench_quant: %s\n", os_error_text(&err));
		goto done;
	}
	uint64_t seed = 0x6938;
	for (size_t i = 0; i < n_w; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		W[i] = (int8_t)((int)((seed >> 33) % 255) - 127);
	}
	for (size_t i = 0; i < n_s; i++)
		sw[i] = 0.001f + (float)(i % 7) * 1e-4f;
	for (size_t i = 0; i < (size_t)AB_MAX_TOK * AB_FFN; i++)
		X[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
	printf("bench_quant --ab-i8: %zu threads, INT8 W8A8, old %s, new %s; ratio = old time / new "
	       "time of adjacent passes (> 1: new is faster)\n",
	       threadpool_n_threads(pool), sets[0]->name, sets[1]->name);
	for (const char *p = toks; *p;) {
		char *end;
		size_t n_tok = strtoul(p, &end, 10);
		if (end == p || n_tok == 0 || n_tok > AB_MAX_TOK || (*end && *end != ',')) {
			fprintf(stderr, "bench_quant: --ab-i8 takes token counts 1..%d, comma-separated\n",
				AB_MAX_TOK);
			rc = 2;
			goto done;
		}
		p = *end ? end + 1 : end;
		struct ab_i8_ctx c = {pool, {sets[0], sets[1]}, Y, X, W, sw};
		ab_pairs_run(ab_pass, &c, n_tok, seconds);
	}
	rc = 0;
done:
	threadpool_free(pool);
	cpu_free_aligned(W), cpu_free_aligned(sw), cpu_free_aligned(X), cpu_free_aligned(Y);
	return rc;
}

int main(int argc, char **argv)
{
	size_t set_mib = 1024, n_threads = 0;
	double seconds = 0.6;
	const char *formats = NULL; /* comma-separated names of bfmt_names; NULL: all */
	const char *ab_toks = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--set-mib") && i + 1 < argc)
			set_mib = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			n_threads = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--formats") && i + 1 < argc)
			formats = argv[++i];
		else if (!strcmp(argv[i], "--ab-i8") && i + 1 < argc)
			ab_toks = argv[++i];
		else {
			fprintf(stderr, "usage: bench_quant [--set-mib N] [--threads N] [--seconds S] "
					"[--formats F32,BF16,FP8,FP8-A8,INT8,INT4]\n"
					"       bench_quant --ab-i8 N_TOK[,N_TOK...] [--threads N] "
					"[--seconds S]\n");
			return 2;
		}
	}
	if (ab_toks)
		return ab_i8(ab_toks, n_threads, seconds);
	bench b = {.set_bytes = set_mib << 20, .seconds = seconds};
	os_error err;
	if (threadpool_new(&b.pool, n_threads, &err) != OS_OK ||
	    cpu_kernels_select(&b.ks, &err) != OS_OK || cpu_qkernels_select(&b.qk, &err) != OS_OK) {
		fprintf(stderr, "bench_quant: %s\n", os_error_text(&err));
		return 1;
	}
	double bw = roofline_read_bandwidth(b.pool, b.set_bytes);
	printf("bench_quant: decode matvec (1 token), %zu threads, kernels %s / quantized %s, "
	       "working set %zu MiB\n",
	       threadpool_n_threads(b.pool), b.ks->name, b.qk->name, set_mib);
	printf("measured read bandwidth: %.1f GB/s (roofline: bytes / bandwidth; measured again at "
	       "the end, the larger one is the ceiling)\n\n",
	       bw);
	printf("%-12s %-11s %-7s %5s %9s %9s %8s %7s %9s %9s\n", "matrix", "out x in", "format",
	       "group", "MB", "us/call", "GB/s", "% roof", "time/F32", "bytes/F32");

	uint64_t seed = 0x6265;
	int rc = 0;
	double step_s[B_COUNT] = {0}, step_bytes[B_COUNT] = {0};
	size_t step_shapes[B_COUNT] = {0};
	for (size_t si = 0; si < N_SHAPES; si++) {
		const shape *s = &shapes[si];
		size_t n = s->n_out * s->n_in;
		float *W = malloc(n * sizeof *W), *X = malloc(s->n_in * sizeof *X);
		float *Y = cpu_alloc_aligned(s->n_out * sizeof *Y);
		if (!W || !X || !Y) {
			fprintf(stderr, "bench_quant: out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < n; i++) { /* ~N(0, 0.02)-ish weights, no zeros */
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			W[i] = ((float)(seed >> 40) / 16777216.0f - 0.5f) * 0.07f + 1e-4f;
		}
		for (size_t i = 0; i < s->n_in; i++)
			X[i] = (float)((i * 37) % 101) / 50.0f - 1.0f + 1e-3f;
		double t_f32 = 0;
		size_t bytes_f32 = n * 4;
		char dims[32];
		snprintf(dims, sizeof dims, "%zux%zu", s->n_out, s->n_in);
		for (int f = 0; f < B_COUNT; f++) {
			size_t bytes = 0;
			if (f != B_F32 && !format_listed(formats, bfmt_names[f]))
				continue; /* F32 always runs: the time/F32 column's reference */
			double t = time_format(&b, (bfmt)f, W, X, Y, s, &bytes);
			if (t < 0) {
				fprintf(stderr, "bench_quant: %s %s failed (out of memory?)\n", dims,
					bfmt_names[f]);
				rc = 1;
				continue;
			}
			if (f == B_F32)
				t_f32 = t;
			step_s[f] += t * (double)s->per_step;
			step_bytes[f] += (double)bytes * (double)s->per_step;
			step_shapes[f]++;
			double gbs = (double)bytes / t / 1e9;
			char group[8] = "-";
			if (f == B_INT4)
				snprintf(group, sizeof group, "%zu", int4_group(s->n_in));
			printf("%-12s %-11s %-7s %5s %9.2f %9.1f %8.1f %6.0f%% %9.3f %9.3f\n", s->what,
			       dims, bfmt_names[f], group, (double)bytes / 1e6, t * 1e6, gbs,
			       100.0 * gbs / bw, t_f32 > 0 ? t / t_f32 : 0.0,
			       (double)bytes / (double)bytes_f32);
		}
		free(W);
		free(X);
		cpu_free_aligned(Y);
	}
	/* the matmuls of one decode step (every shape times its count), as the engine runs them
	 * but without the rest of the step (norms, attention, activations) */
	printf("\n%-24s %-7s %9s %9s %8s %7s\n", "decode step (matmuls)", "format", "MB",
	       "ms/step", "GB/s", "% roof");
	for (int f = 0; f < B_COUNT; f++)
		if (step_shapes[f] == N_SHAPES)
			printf("%-24s %-7s %9.1f %9.3f %8.1f %6.0f%%\n", "30 layers + lm head",
			       bfmt_names[f], step_bytes[f] / 1e6, step_s[f] * 1e3,
			       step_bytes[f] / step_s[f] / 1e9, 100.0 * step_bytes[f] / step_s[f] / 1e9 / bw);
	/* other processes on the machine lower a single probe; take the better of two */
	double bw_end = roofline_read_bandwidth(b.pool, b.set_bytes);
	printf("\nread bandwidth at the end: %.1f GB/s%s\n", bw_end,
	       bw_end > bw * 1.1 ? " (higher than at the start: the machine was busy; "
				   "% of roofline above is overstated)"
				 : "");
	threadpool_free(b.pool);
	return rc;
}
