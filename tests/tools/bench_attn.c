/* bench_attn.c: the CPU backend's attention and rope ops on SmolLM2-135M shapes (9 heads,
 * 3 kv heads, head_dim 64, 16-slot KV blocks), beside the per-token algorithm they replaced
 * (one dot product, expf and axpy per key; cos / sin in double per token and pair), in the
 * same process on one thread. Times are the fastest of many calls (the machine is shared).
 * Then every row again per KV format (F32, BF16, FP8, INT8), tiled only.
 * Usage: bench_attn [prefill [bf16]]   (OPTSTUDIO_CPU=generic|avx2|avx512 forces a kernel set)
 * "prefill" times only the tiled prefill rows, 40 calls each (quick A/B runs, profiling), on
 * the F32 cache or, with "bf16", on its values rounded into a BF16 cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/backend_cpu.h"
#include "core/numerics.h"

enum { NH = 9, NKV = 3, HD = 64, BT = 16, MAXCTX = 512, NSEQ = 16 };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The former attention: per (token, kv head), per query head, per key a dot product, a
 * scalar expf and an axpy (F32 KV only). */
static void attention_per_token(const cpu_kernel_set *ks, float *out, const float *q,
				const be_kv *kv, const be_attn_batch *b)
{
	size_t hd = b->head_dim, n_rep = b->n_heads / b->n_kv_heads, bt = kv->block_tokens;
	float scale = 1.0f / sqrtf((float)hd), acc[8 * HD], s[BT], m[8], l[8];
	const float *data = kv->data;
	for (size_t i = 0; i < b->n; i++)
		for (size_t g = 0; g < b->n_kv_heads; g++) {
			size_t pos = (size_t)b->pos[i], n_blocks = pos / bt + 1;
			for (size_t r = 0; r < n_rep; r++)
				m[r] = -INFINITY, l[r] = 0.0f;
			memset(acc, 0, sizeof acc);
			for (size_t jb = 0; jb < n_blocks; jb++) {
				size_t blk = (size_t)b->block_table[i][jb];
				size_t n_t = jb + 1 < n_blocks ? bt : pos % bt + 1;
				const float *K = data + be_kv_row(kv, blk, 0, 0, 0) + g * hd;
				const float *V = data + be_kv_row(kv, blk, 0, 1, 0) + g * hd;
				for (size_t r = 0; r < n_rep; r++) {
					const float *qh = q + (i * b->n_heads + g * n_rep + r) * hd;
					float *ah = acc + r * hd, bm = -INFINITY;
					for (size_t t = 0; t < n_t; t++) {
						s[t] = ks->dot(qh, K + t * kv->kv_dim, hd) * scale;
						bm = s[t] > bm ? s[t] : bm;
					}
					float mn = bm > m[r] ? bm : m[r], corr = expf(m[r] - mn);
					if (corr != 1.0f) {
						ks->scale(ah, corr, hd);
						l[r] *= corr;
					}
					for (size_t t = 0; t < n_t; t++) {
						float e = expf(s[t] - mn);
						l[r] += e;
						ks->axpy(ah, e, V + t * kv->kv_dim, hd);
					}
					m[r] = mn;
				}
			}
			for (size_t r = 0; r < n_rep; r++)
				for (size_t c = 0; c < hd; c++)
					out[(i * b->n_heads + g * n_rep + r) * hd + c] = acc[r * hd + c] / l[r];
		}
}

/* The former rope: cos / sin in double per token and pair. */
static void rope_per_token(const cpu_kernel_set *ks, float *q, float *k, size_t n,
			   const int32_t *pos)
{
	float c[HD / 2], s[HD / 2];
	for (size_t t = 0; t < n; t++) {
		for (size_t i = 0; i < HD / 2; i++) {
			double a = cpu_rope_angle(pos[t], i, HD, 10000.0f);
			c[i] = (float)cos(a);
			s[i] = (float)sin(a);
		}
		ks->rope_rotate(q + t * NH * HD, NH, HD, c, s, CPU_ROPE_NORM);
		ks->rope_rotate(k + t * NKV * HD, NKV, HD, c, s, CPU_ROPE_NORM);
	}
}

#define BEST_OF(reps, stmt)                                                                        \
	({                                                                                         \
		double best_ = 1e30;                                                               \
		for (int r_ = 0; r_ < (reps); r_++) {                                              \
			double t0_ = now_s();                                                      \
			stmt;                                                                      \
			double t_ = now_s() - t0_;                                                 \
			best_ = t_ < best_ ? t_ : best_;                                           \
		}                                                                                  \
		best_;                                                                             \
	})

int main(int argc, char **argv)
{
	int only_prefill = argc > 1 && !strcmp(argv[1], "prefill");
	int prefill_bf16 = only_prefill && argc > 2 && !strcmp(argv[2], "bf16");
	backend *be = NULL;
	backend_cpu_opts o = {.n_threads = 1};
	os_error err = {0};
	if (backend_cpu_new(&be, &o, &err)) {
		fprintf(stderr, "bench_attn: %s\n", err.msg);
		return 1;
	}
	const cpu_kernel_set *ks = backend_cpu_kernels(be);
	size_t nb_seq = MAXCTX / BT;
	be_kv kv = {.fmt = BE_KV_F32, .n_blocks = NSEQ * nb_seq, .n_layers = 1,
		    .kv_dim = NKV * HD, .head_dim = HD, .block_tokens = BT};
	size_t elems = kv.n_blocks * be_kv_block_elems(&kv), nq = NSEQ * MAXCTX * NH * HD;
	kv.data = malloc(elems * sizeof(float));
	float *q = malloc(nq * sizeof *q), *out = malloc(nq * sizeof *out);
	float *q2 = malloc(nq * sizeof *q2), *k = malloc(MAXCTX * NKV * HD * sizeof *k);
	int32_t *tables = malloc(NSEQ * nb_seq * sizeof *tables), pos[MAXCTX * NSEQ];
	const int32_t *tb[MAXCTX * NSEQ];
	if (!kv.data || !q || !out || !q2 || !k || !tables)
		return 1;
	uint64_t st = 12345;
	for (size_t e = 0; e < elems; e++)
		((float *)kv.data)[e] = (float)((st = st * 6364136223846793005ull + 1) >> 40) / 16777216.0f - 0.5f;
	for (size_t e = 0; e < nq; e++)
		q[e] = (float)((st = st * 6364136223846793005ull + 1) >> 40) / 4194304.0f - 2.0f;
	for (size_t i = 0; i < NSEQ * nb_seq; i++)
		tables[i] = (int32_t)i;
	printf("bench_attn: kernels %s, 1 thread, SmolLM2-135M shapes (one layer)\n", ks->name);
	printf("%-34s %12s %12s %8s\n", "case", "per-token us", "tiled us", "speedup");
	/* prefill of n tokens into one sequence; decode of NSEQ sequences at context c */
	struct { const char *name; size_t n_tok, n_seq, ctx; } cases[] = {
		{"prefill 512 tokens", 512, 1, 0},
		{"prefill 128 tokens", 128, 1, 0},
		{"decode batch 1, context 64", 1, 1, 64},
		{"decode batch 16, context 64", 1, 16, 64},
		{"decode batch 16, context 256", 1, 16, 256},
		{"decode batch 16, context 512", 1, 16, 512},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		size_t n = 0;
		for (size_t s = 0; s < cases[c].n_seq; s++)
			for (size_t t = 0; t < cases[c].n_tok; t++) {
				pos[n] = (int32_t)(cases[c].ctx ? cases[c].ctx - 1 : t);
				tb[n++] = tables + s * nb_seq;
			}
		be_attn_batch b = {n, pos, tb, NH, NKV, HD};
		if (only_prefill) {
			if (cases[c].ctx)
				break;
			be_kv kp = kv;
			if (prefill_bf16) {
				kp.fmt = BE_KV_BF16;
				kp.data = malloc(elems * sizeof(uint16_t));
				if (!kp.data)
					return 1;
				for (size_t e = 0; e < elems; e++)
					((uint16_t *)kp.data)[e] =
						num_f32_to_bf16(((const float *)kv.data)[e]);
			}
			double t = BEST_OF(40, be->ops->attention(be->ctx, out, q, &kp, 0, &b));
			if (prefill_bf16)
				free(kp.data);
			printf("attention %-24s %12s %12.1f\n", cases[c].name, "-", 1e6 * t);
			continue;
		}
		int reps = n > 100 ? 5 : 200;
		double t_old = BEST_OF(reps, attention_per_token(ks, out, q, &kv, &b));
		double t_new = BEST_OF(reps, be->ops->attention(be->ctx, out, q, &kv, 0, &b));
		printf("attention %-24s %12.1f %12.1f %7.2fx\n", cases[c].name, 1e6 * t_old,
		       1e6 * t_new, t_old / t_new);
	}
	if (only_prefill) {
		backend_free(be);
		return 0;
	}
	/* the other caches, tiled only (the per-token algorithm reads F32 keys), beside F32
	 * again so one run gives comparable rows; BF16 holds the F32 cache's values rounded */
	static const struct { const char *name; int fmt; } qfmts[] = {
		{"F32", BE_KV_F32}, {"BF16", BE_KV_BF16}, {"FP8", BE_KV_FP8}, {"INT8", BE_KV_I8}};
	be_kv kq = kv, kb = kv;
	kq.data = malloc(elems);
	kq.scales = malloc(elems / HD * sizeof(float));
	kb.fmt = BE_KV_BF16;
	kb.data = malloc(elems * sizeof(uint16_t));
	if (!kq.data || !kq.scales || !kb.data)
		return 1;
	for (size_t e = 0; e < elems; e++)
		((uint16_t *)kb.data)[e] = num_f32_to_bf16(((const float *)kv.data)[e]);
	for (size_t e = 0; e < elems; e++) /* no E4M3 NaN codes (0x7f, 0xff) */
		((uint8_t *)kq.data)[e] = (uint8_t)(((st = st * 6364136223846793005ull + 1) >> 40) % 0x7f) |
					  (uint8_t)(e & 0x80);
	for (size_t e = 0; e < elems / HD; e++)
		kq.scales[e] = 0.001f + (float)((st = st * 6364136223846793005ull + 1) >> 40) / 1.7e10f;
	for (size_t f = 0; f < sizeof qfmts / sizeof qfmts[0]; f++) {
		kq.fmt = qfmts[f].fmt;
		const be_kv *kf = kq.fmt == BE_KV_F32 ? &kv : kq.fmt == BE_KV_BF16 ? &kb : &kq;
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			if (c == 2) /* batch 1 decode: too small to tell formats apart */
				continue;
			size_t n = 0;
			for (size_t s = 0; s < cases[c].n_seq; s++)
				for (size_t t = 0; t < cases[c].n_tok; t++) {
					pos[n] = (int32_t)(cases[c].ctx ? cases[c].ctx - 1 : t);
					tb[n++] = tables + s * nb_seq;
				}
			be_attn_batch b = {n, pos, tb, NH, NKV, HD};
			double t_new = BEST_OF(n > 100 ? 10 : 200,
					       be->ops->attention(be->ctx, out, q, kf, 0, &b));
			char name[64];
			snprintf(name, sizeof name, "%s, %s KV", cases[c].name, qfmts[f].name);
			printf("attention %-36s %12s %12.1f\n", name, "-", 1e6 * t_new);
		}
	}
	free(kq.data);
	free(kq.scales);
	free(kb.data);
	for (size_t t = 0; t < MAXCTX; t++)
		pos[t] = (int32_t)t;
	memcpy(q2, q, MAXCTX * NH * HD * sizeof *q2);
	double r_old = BEST_OF(5, rope_per_token(ks, q2, k, MAXCTX, pos));
	double r_new = BEST_OF(5, be->ops->rope(be->ctx, q2, NH, k, NKV, MAXCTX, HD, pos, 10000.0f));
	printf("rope      %-24s %12.1f %12.1f %7.2fx\n", "512 tokens", 1e6 * r_old, 1e6 * r_new,
	       r_old / r_new);
	free(kv.data);
	free(q);
	free(out);
	free(q2);
	free(k);
	free(tables);
	backend_free(be);
	return 0;
}
