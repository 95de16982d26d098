/* ab_kernels.c: a paired A/B of two builds of the AVX-512 kernel set in one process, for
 * speed claims on a machine whose speed drifts by 20% from one run to the next: passes of one
 * SmolLM2-135M forward's F32 (or BF16) matmuls, 30 layers of distinct cold weights and the
 * head for the last token (all tokens for decode-sized batches), alternate between the two
 * sets (A B, B A, A B, ...), and the ratio of each adjacent pair's times cancels the drift
 * both saw. Built and run by tests/ab_kernels.sh, which compiles the other revision's
 * kernels_avx512.c as cpu_kernels_avx512_old; not part of `make`.
 * Usage: ab_kernels THREADS SECONDS N_TOK...   (WFMT=bf16 for BF16 weights; AB_SETS=OLD,NEW
 * names the sets, avx512 or amx, default avx512,avx512) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bigalloc.h"
#include "core/cpu/kernels.h"
#include "core/cpu/threadpool.h"
#include "core/numerics.h"
#include "tests/ab/ab_pairs.h"

extern const cpu_kernel_set cpu_kernels_avx512_old;
/* weak: a revision from before the AMX set has none */
extern const cpu_kernel_set cpu_kernels_amx_old __attribute__((weak));

enum { LAYERS = 30, DIM = 576, FFN = 1536, KV = 192, VOCAB = 49152, MAX_TOK = 4096 };

static const size_t shapes[][2] = { /* n_out, n_in of a layer's projections, in order */
	{DIM, DIM}, {KV, DIM}, {KV, DIM}, {DIM, DIM}, {FFN, DIM}, {FFN, DIM}, {DIM, FFN},
};

/* What a pass needs: the two sets (old, new) and one forward's operands. */
struct ab_ctx {
	threadpool *pool;
	const cpu_kernel_set *sets[2];
	float *Y;
	const float *X;
	const unsigned char *W;
	cpu_wfmt fmt;
	size_t elem;
};

/* One forward's matmuls with set `which`; seconds taken. */
static double pass(void *ctx, int which, size_t n_tok)
{
	const struct ab_ctx *c = ctx;
	threadpool *pool = c->pool;
	const cpu_kernel_set *ks = c->sets[which];
	float *Y = c->Y;
	const float *X = c->X;
	cpu_wfmt fmt = c->fmt;
	size_t elem = c->elem;
	double t0 = ab_now_s();
	const unsigned char *W = c->W;
	const unsigned char *w = W;
	for (size_t l = 0; l < LAYERS; l++)
		for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
			cpu_matmul(pool, ks, Y, X, w, fmt, n_tok, shapes[i][1], shapes[i][0]);
			w += shapes[i][0] * shapes[i][1] * elem;
		}
	cpu_matmul(pool, ks, Y, X, w, fmt, n_tok >= 32 ? 1 : n_tok, DIM, VOCAB);
	return ab_now_s() - t0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: ab_kernels THREADS SECONDS N_TOK...\n");
		return 2;
	}
	size_t n_threads = strtoul(argv[1], NULL, 10);
	double seconds = atof(argv[2]);
	const char *wf = getenv("WFMT");
	cpu_wfmt fmt = wf && !strcmp(wf, "bf16") ? CPU_WFMT_BF16 : CPU_WFMT_F32;
	size_t elem = fmt == CPU_WFMT_BF16 ? 2 : 4;
	threadpool *pool = NULL;
	os_error err;
	if (threadpool_new(&pool, n_threads, &err) != OS_OK) {
		fprintf(stderr, "ab_kernels: %s\n", os_error_text(&err));
		return 1;
	}
	size_t n_par = (size_t)VOCAB * DIM;
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		n_par += LAYERS * shapes[i][0] * shapes[i][1];
	unsigned char *W = big_alloc(n_par * elem); /* the pages the engine's weights get */
	float *X = cpu_alloc_aligned((size_t)MAX_TOK * FFN * sizeof(float));
	float *Y = cpu_alloc_aligned((size_t)MAX_TOK * FFN * sizeof(float) +
				     (size_t)32 * VOCAB * sizeof(float));
	if (!W || !X || !Y) {
		fprintf(stderr, "ab_kernels: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < n_par; i++) {
		float v = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
		if (fmt == CPU_WFMT_F32)
			((float *)(void *)W)[i] = v;
		else
			((uint16_t *)(void *)W)[i] = num_f32_to_bf16(v);
	}
	for (size_t i = 0; i < (size_t)MAX_TOK * FFN; i++)
		X[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
	const cpu_kernel_set *sets[2] = {&cpu_kernels_avx512_old, &cpu_kernels_avx512};
	const char *ab = getenv("AB_SETS");
	if (ab && *ab) {
		char old_name[16] = "", new_name[16] = "";
		if (sscanf(ab, "%15[^,],%15s", old_name, new_name) != 2) {
			fprintf(stderr, "ab_kernels: AB_SETS is OLD,NEW (avx512 or amx)\n");
			return 2;
		}
		sets[0] = !strcmp(old_name, "amx") ? &cpu_kernels_amx_old : &cpu_kernels_avx512_old;
		sets[1] = !strcmp(new_name, "amx") ? cpu_kernels_get(CPU_ISA_AMX) : &cpu_kernels_avx512;
		if (!sets[0] || !sets[1] || (!strcmp(old_name, "amx") && !cpu_kernels_get(CPU_ISA_AMX))) {
			fprintf(stderr, "ab_kernels: no AMX set (this CPU, or revision)\n");
			return 2;
		}
	}
	printf("%zu threads, %s weights, old %s, new %s; ratio = old time / new time of adjacent "
	       "passes (> 1: new is faster)\n", threadpool_n_threads(pool),
	       elem == 4 ? "F32" : "BF16", sets[0]->name, sets[1]->name);
	for (int a = 3; a < argc; a++) {
		size_t n_tok = strtoul(argv[a], NULL, 10);
		if (n_tok == 0 || n_tok > MAX_TOK) {
			fprintf(stderr, "ab_kernels: token counts are 1..%d\n", MAX_TOK);
			return 2;
		}
		struct ab_ctx c = {pool, {sets[0], sets[1]}, Y, X, W, fmt, elem};
		ab_pairs_run(pass, &c, n_tok, seconds);
	}
	free(W), cpu_free_aligned(X), cpu_free_aligned(Y);
	threadpool_free(pool);
	return 0;
}
