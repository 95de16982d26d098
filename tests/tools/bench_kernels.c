/* bench_kernels.c: CPU kernel benchmark table: measured roofline (read bandwidth, peak f32
 * FMA and bf16 dot-product rates), then decode matvecs (GB/s of weights, % of bandwidth)
 * and prefill GEMMs (GFLOP/s, % of peak) on SmolLM2 shapes, all in the same run. Times are
 * the fastest call of many, which filters out other processes sharing the cores.
 * Usage: bench_kernels [threads] [gemm|decode|step|prefill [n_tok...]]
 * (OPTSTUDIO_CPU=generic|avx2|avx512 forces a kernel set); "gemm" times only the prefill GEMMs
 * of every SmolLM2 projection shape, "decode" only the 8..31-token decode matmuls, both on hot
 * weights, for quick kernel tuning; "step" times every matmul of one SmolLM2 F32 decode step
 * (30 layers and the tied head, 538 MB of distinct cold weights) at batch 1, 4 and 16 (or the
 * token counts given), the cost decode actually pays; "prefill" the same for a 512-token
 * prompt (or the counts given), with the head for its last token only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/kernels.h"
#include "core/cpu/roofline.h"
#include "core/numerics.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void empty_task(void *ctx, size_t task, size_t thread)
{
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct shape {
	const char *name;
	size_t n_out, n_in;
};

/* GFLOP/s of cpu_matmul for n_tok tokens on every projection shape of SmolLM2-135M with hot
 * weights (the fastest call of at least 3 and 0.2 s), then the FLOP-weighted total. */
static int bench_shapes(threadpool *pool, const cpu_kernel_set *ks, size_t n_tok, double pk_f32,
			double pk_bf16)
{
	static const struct shape sh[] = {
		{"q/o 576x576", 576, 576}, {"k/v 192x576", 192, 576},
		{"gate/up 1536x576", 1536, 576}, {"down 576x1536", 576, 1536},
	};
	static const double per_layer[] = {2, 2, 2, 1}; /* how often each shape occurs */
	for (int f = 0; f < CPU_WFMT_COUNT; f++) {
		double tot_fl = 0, tot_s = 0;
		for (size_t si = 0; si < sizeof sh / sizeof sh[0]; si++) {
			size_t n_in = sh[si].n_in, n_out = sh[si].n_out;
			size_t elem = f == CPU_WFMT_F32 ? 4 : 2;
			unsigned char *W = cpu_alloc_aligned(n_out * n_in * elem);
			float *X = cpu_alloc_aligned(n_tok * n_in * sizeof(float));
			float *Y = cpu_alloc_aligned(n_tok * n_out * sizeof(float));
			if (!W || !X || !Y) {
				cpu_free_aligned(W), cpu_free_aligned(X), cpu_free_aligned(Y);
				fprintf(stderr, "bench_kernels: out of memory\n");
				return 1;
			}
			for (size_t i = 0; i < n_tok * n_in; i++)
				X[i] = (float)((i * 2654435761u) % 997) / 997.0f - 0.5f;
			for (size_t i = 0; i < n_out * n_in; i++) {
				float v = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
				if (f == CPU_WFMT_F32)
					((float *)(void *)W)[i] = v;
				else
					((uint16_t *)(void *)W)[i] = num_f32_to_bf16(v);
			}
			size_t calls = 0;
			double t00 = now_s(), per = 1e30;
			do {
				double t0 = now_s();
				cpu_matmul(pool, ks, Y, X, W, (cpu_wfmt)f, n_tok, n_in, n_out);
				double dt = now_s() - t0;
				per = dt < per ? dt : per;
				calls++;
			} while (calls < 3 || now_s() - t00 < 0.2);
			double fl = 2.0 * (double)n_tok * (double)n_in * (double)n_out;
			double pk = f == CPU_WFMT_F32 ? pk_f32 : pk_bf16;
			printf("%-20s %-5s %5zu %9.1f us %8.1f GFLOP/s %5.1f%% of peak\n", sh[si].name,
			       f == CPU_WFMT_F32 ? "F32" : "BF16", n_tok, per * 1e6, fl / per * 1e-9,
			       pk > 0 ? 100.0 * fl / per * 1e-9 / pk : 0.0);
			tot_fl += per_layer[si] * fl;
			tot_s += per_layer[si] * per;
			cpu_free_aligned(W), cpu_free_aligned(X), cpu_free_aligned(Y);
		}
		printf("%-20s %-5s %5zu %12s %8.1f GFLOP/s (a layer's mix)\n", "total",
		       f == CPU_WFMT_F32 ? "F32" : "BF16", n_tok, "", tot_fl / tot_s * 1e-9);
	}
	return 0;
}

/* One SmolLM2-135M F32 forward pass's matmuls (every layer's own weights, so they stream
 * from memory as in the engine) for each token count in toks: the fastest and the median of
 * the passes run in at least 3 s each, against the bandwidth (the weights once) and FMA
 * (2 x n_tok x parameters) rooflines. A decode step also runs the tied head for every
 * token; a prefill (prefill != 0) runs it for its last token only, as the engine does. */
static int bench_step(threadpool *pool, const cpu_kernel_set *ks, double bw, double pk,
		      const size_t *toks, size_t n_toks, int prefill)
{
	enum { LAYERS = 30, DIM = 576, FFN = 1536, KV = 192, VOCAB = 49152 };
	size_t max_tok = 1;
	for (size_t i = 0; i < n_toks; i++)
		max_tok = toks[i] > max_tok ? toks[i] : max_tok;
	static const size_t sh[][2] = {
		{DIM, DIM}, {KV, DIM}, {KV, DIM}, {DIM, DIM}, {FFN, DIM}, {FFN, DIM}, {DIM, FFN},
	};
	enum { NSH = sizeof sh / sizeof sh[0] };
	size_t per_layer = 0;
	for (size_t i = 0; i < NSH; i++)
		per_layer += sh[i][0] * sh[i][1];
	size_t n_par = LAYERS * per_layer + (size_t)VOCAB * DIM;
	float *W = cpu_alloc_aligned(n_par * sizeof(float));
	size_t head_tok = prefill ? 1 : max_tok;
	size_t y_cols = head_tok * VOCAB > max_tok * FFN ? head_tok * VOCAB : max_tok * FFN;
	float *X = cpu_alloc_aligned(max_tok * FFN * sizeof(float));
	float *Y = cpu_alloc_aligned(y_cols * sizeof(float));
	if (!W || !X || !Y) {
		fprintf(stderr, "bench_kernels: out of memory\n");
		cpu_free_aligned(W), cpu_free_aligned(X), cpu_free_aligned(Y);
		return 1;
	}
	for (size_t i = 0; i < n_par; i++)
		W[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
	for (size_t i = 0; i < max_tok * FFN; i++)
		X[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
	printf("\n%-22s %5s %9s %9s %8s %8s %8s\n", prefill ? "prefill (F32)" : "decode step (F32)",
	       "n_tok", "best ms", "median", "% bw", "% fma", "head ms");
	for (size_t ti = 0; ti < n_toks; ti++) {
		size_t n_tok = toks[ti];
		enum { MAXSTEPS = 1000 };
		static double times[MAXSTEPS];
		double head_best = 1e30;
		size_t steps = 0;
		double t00 = now_s();
		do {
			double t0 = now_s();
			const float *w = W;
			for (size_t l = 0; l < LAYERS; l++)
				for (size_t i = 0; i < NSH; i++) {
					cpu_matmul(pool, ks, Y, X, w, CPU_WFMT_F32, n_tok, sh[i][1],
						   sh[i][0]);
					w += sh[i][0] * sh[i][1];
				}
			double th = now_s();
			cpu_matmul(pool, ks, Y, X, w, CPU_WFMT_F32, prefill ? 1 : n_tok, DIM, VOCAB);
			double t1 = now_s();
			times[steps++] = t1 - t0;
			head_best = t1 - th < head_best ? t1 - th : head_best;
		} while (steps < MAXSTEPS && (steps < 5 || now_s() - t00 < 3.0));
		qsort(times, steps, sizeof times[0], cmp_double);
		double best = times[0], bytes = (double)n_par * sizeof(float);
		double fl = 2.0 * (double)n_tok * (double)(n_par - (size_t)VOCAB * DIM) +
			    2.0 * (double)(prefill ? 1 : n_tok) * VOCAB * DIM;
		printf("%-22s %5zu %9.2f %9.2f %7.1f%% %7.1f%% %8.2f\n", "30 layers + head", n_tok,
		       best * 1e3, times[steps / 2] * 1e3, 100.0 * bytes / best * 1e-9 / bw,
		       100.0 * fl / best * 1e-9 / pk, head_best * 1e3);
	}
	cpu_free_aligned(W), cpu_free_aligned(X), cpu_free_aligned(Y);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n_threads = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 0;
	threadpool *pool = NULL;
	os_error err;
	const cpu_kernel_set *ks = NULL;
	if (threadpool_new(&pool, n_threads, &err) != OS_OK ||
	    cpu_kernels_select(&ks, &err) != OS_OK) {
		fprintf(stderr, "bench_kernels: %s\n", os_error_text(&err));
		threadpool_free(pool);
		return 1;
	}
	n_threads = threadpool_n_threads(pool);
	const size_t cold_bytes = (size_t)512 << 20; /* rotate weight copies over this much */

	double bw = roofline_read_bandwidth(pool, cold_bytes);
	double pk_f32 = roofline_peak_flops(pool, ROOFLINE_F32_FMA);
	double pk_bf16 = roofline_peak_flops(pool, ROOFLINE_BF16_DP);
	/* the AMX set's BF16 products run on tiles: judge them by the tiles' peak */
	if (ks->isa == CPU_ISA_AMX)
		pk_bf16 = roofline_peak_flops(pool, ROOFLINE_BF16_AMX);
	printf("kernel set %s, %zu threads\n", ks->name, n_threads);
	printf("roofline  read bandwidth %8.1f GB/s (512 MiB buffer)\n", bw);
	printf("roofline  peak f32 FMA   %8.1f GFLOP/s\n", pk_f32);
	printf("roofline  peak bf16 %s %8.1f GFLOP/s%s\n", ks->isa == CPU_ISA_AMX ? "amx" : "dp ",
	       pk_bf16, pk_bf16 > 0 ? "" : " (no AVX-512 BF16)");
	if (argc > 2 && (!strcmp(argv[2], "step") || !strcmp(argv[2], "prefill"))) {
		size_t toks[16] = {1, 4, 16}, n_toks = 3;
		if (!strcmp(argv[2], "prefill"))
			toks[0] = 512, n_toks = 1;
		if (argc > 3) /* token counts given: "step 16 48" */
			for (n_toks = 0; n_toks < 16 && n_toks + 3 < (size_t)argc; n_toks++)
				toks[n_toks] = (size_t)strtoul(argv[n_toks + 3], NULL, 10);
		for (size_t i = 0; i < n_toks; i++)
			if (toks[i] == 0 || toks[i] > 4096) {
				fprintf(stderr, "bench_kernels: token counts are 1..4096\n");
				threadpool_free(pool);
				return 2;
			}
		int rc = bench_step(pool, ks, bw, pk_f32, toks, n_toks, !strcmp(argv[2], "prefill"));
		threadpool_free(pool);
		return rc;
	}
	if (argc > 2 && (!strcmp(argv[2], "gemm") || !strcmp(argv[2], "decode"))) {
		int rc = 0;
		if (!strcmp(argv[2], "gemm"))
			rc = bench_shapes(pool, ks, 512, pk_f32, pk_bf16);
		else
			for (size_t n = 1; n <= 16 && !rc; n *= 4)
				rc = bench_shapes(pool, ks, n, pk_f32, pk_bf16);
		threadpool_free(pool);
		return rc;
	}

	{
		/* dispatch: one empty task per thread; the median of back-to-back runs */
		enum { RUNS = 20001 };
		static double times[RUNS];
		for (int i = 0; i < RUNS; i++) {
			double t0 = now_s();
			threadpool_run(pool, n_threads, empty_task, NULL);
			times[i] = now_s() - t0;
		}
		qsort(times, RUNS, sizeof times[0], cmp_double);
		printf("threadpool dispatch     %8.2f us (median of %d empty runs; 90%%: %.2f us)\n",
		       times[RUNS / 2] * 1e6, RUNS, times[RUNS * 9 / 10] * 1e6);
	}

	static const struct shape shapes[] = {
		{"ffn down 576x1536", 576, 1536},
		{"lm head 49152x576", 49152, 576},
	};
	static const size_t toks[] = {1, 4, 16};
	printf("\n%-20s %-5s %5s %10s %9s %9s %8s\n", "matvec (cold W)", "fmt", "n_tok", "copies",
	       "us/call", "GB/s", "% bw");
	int rc = 0;
	for (size_t si = 0; si < 2; si++) {
		const struct shape *sh = &shapes[si];
		for (int f = 0; f < CPU_WFMT_COUNT; f++) {
			size_t elem = f == CPU_WFMT_F32 ? 4 : 2;
			size_t wbytes = sh->n_out * sh->n_in * elem;
			size_t copies = cold_bytes / wbytes + 1;
			unsigned char *W = cpu_alloc_aligned(copies * wbytes);
			float *X = cpu_alloc_aligned(512 * sh->n_in * sizeof(float));
			float *Y = cpu_alloc_aligned(512 * sh->n_out * sizeof(float));
			if (!W || !X || !Y) {
				fprintf(stderr, "bench_kernels: out of memory\n");
				cpu_free_aligned(W), cpu_free_aligned(X), cpu_free_aligned(Y);
				rc = 1;
				goto done;
			}
			uint64_t s = 12345;
			for (size_t i = 0; i < 512 * sh->n_in; i++) {
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				X[i] = (float)((s >> 40) & 0xffff) / 65536.0f - 0.5f;
			}
			/* fill every copy (also faults the pages in) */
			for (size_t i = 0; i < copies * sh->n_out * sh->n_in; i++) {
				float v = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
				if (f == CPU_WFMT_F32)
					((float *)(void *)W)[i] = v;
				else
					((uint16_t *)(void *)W)[i] = num_f32_to_bf16(v);
			}
			for (size_t ti = 0; ti < 3; ti++) {
				size_t n_tok = toks[ti];
				/* at least 2 passes over all copies and 0.3 s; the fastest call
				 * counts (each reads a copy evicted since its last use) */
				size_t calls = 0;
				double t00 = now_s(), per = 1e30;
				do {
					double t0 = now_s();
					cpu_matmul(pool, ks, Y, X, W + (calls % copies) * wbytes,
						   (cpu_wfmt)f, n_tok, sh->n_in, sh->n_out);
					double dt = now_s() - t0;
					per = dt < per ? dt : per;
					calls++;
				} while (calls < 2 * copies || now_s() - t00 < 0.3);
				double gbs = (double)wbytes / per * 1e-9;
				printf("%-20s %-5s %5zu %10zu %9.1f %9.1f %7.1f%%\n", sh->name,
				       f == CPU_WFMT_F32 ? "F32" : "BF16", n_tok, copies, per * 1e6,
				       gbs, 100.0 * gbs / bw);
			}
			/* prefill: one copy, hot in cache as it is during a real prefill chunk */
			{
				size_t n_tok = 512, calls = 0;
				double t00 = now_s(), per = 1e30;
				do {
					double t0 = now_s();
					cpu_matmul(pool, ks, Y, X, W, (cpu_wfmt)f, n_tok, sh->n_in,
						   sh->n_out);
					double dt = now_s() - t0;
					per = dt < per ? dt : per;
					calls++;
				} while (calls < 3 || now_s() - t00 < 0.5);
				double gfl = 2.0 * (double)n_tok * (double)sh->n_in *
					     (double)sh->n_out / per * 1e-9;
				double pk = f == CPU_WFMT_F32 ? pk_f32 : pk_bf16;
				printf("%-20s %-5s %5zu %10s %9.1f %9.1f GFLOP/s %5.1f%% of peak\n",
				       "prefill GEMM", f == CPU_WFMT_F32 ? "F32" : "BF16", n_tok, "-",
				       per * 1e6, gfl, pk > 0 ? 100.0 * gfl / pk : 0.0);
			}
			cpu_free_aligned(W);
			cpu_free_aligned(X);
			cpu_free_aligned(Y);
		}
	}
done:
	threadpool_free(pool);
	return rc;
}
