/* test_backend_cpu.c: the CPU backend's rope and attention ops against plain float64
 * definitions, for every kernel set, on random data at awkward shapes (several sequences,
 * shuffled blocks of 5 slots, query groups longer than one attention tile, FP8 / INT8 KV). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/backend_cpu.h"
#include "core/numerics.h"
#include "tests/test.h"

static uint64_t seed = 0x5eedba5eull;

/* The rope op at positions up to 8192 (in several calls, so the position table grows and
 * is rebuilt for a new (head_dim, base)) against the float64 definition, within 1e-6 of the
 * pair's magnitude, and bit for bit against cpu_rope of the same kernel set. */
TEST(test_rope_op)
{
	printf("  seed %llu\n", (unsigned long long)seed);
	uint64_t rng = seed;
	enum { NQ = 3, NK = 1, N = 9 };
	const size_t dims[] = {64, 6, 128};
	const float bases[] = {10000.0f, 10000.0f, 500000.0f};
	for (int v = 0; v < CPU_ISA_COUNT; v++) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
		if (!ks)
			continue;
		backend *be = NULL;
		backend_cpu_opts o = {.n_threads = 2, .kernels = ks};
		CHECK(backend_cpu_new(&be, &o, NULL) == OS_OK);
		if (!be)
			return;
		for (int call = 0; call < 9; call++) {
			size_t hd = dims[call % 3];
			float base = bases[call % 3];
			float q[N * NQ * 128], k[N * NK * 128], q0[N * NQ * 128], k0[N * NK * 128];
			float qr[N * NQ * 128];
			int32_t pos[N];
			for (size_t t = 0; t < N; t++)
				pos[t] = (int32_t)(test_rand_next(&rng) % (call < 3 ? 300 : 8193));
			pos[0] = call >= 6 ? 8192 : pos[0];
			for (size_t e = 0; e < N * NQ * hd; e++)
				q[e] = q0[e] = test_rand_float(&rng);
			for (size_t e = 0; e < N * NK * hd; e++)
				k[e] = k0[e] = test_rand_float(&rng);
			memcpy(qr, q0, N * NQ * hd * sizeof *qr);
			CHECK(be->ops->rope(be->ctx, q, NQ, k, NK, N, hd, pos, base) == OS_OK);
			cpu_rope(ks, qr, N, NQ, hd, pos, base, CPU_ROPE_NORM);
			CHECK(memcmp(q, qr, N * NQ * hd * sizeof *q) == 0);
			double worst = 0.0;
			for (size_t t = 0; t < N; t++)
				for (size_t h = 0; h < NQ + NK; h++) {
					const float *x0 = h < NQ ? q0 + (t * NQ + h) * hd
								 : k0 + (t * NK + h - NQ) * hd;
					const float *x = h < NQ ? q + (t * NQ + h) * hd
								: k + (t * NK + h - NQ) * hd;
					for (size_t i = 0; i < hd / 2; i++) {
						double th = (double)pos[t] *
							    pow((double)base, -2.0 * (double)i / (double)hd);
						double a = x0[2 * i], b = x0[2 * i + 1];
						double ra = a * cos(th) - b * sin(th);
						double rb = a * sin(th) + b * cos(th);
						double mag = fabs(a) + fabs(b) + 1e-30;
						double e = fmax(fabs(x[2 * i] - ra), fabs(x[2 * i + 1] - rb)) / mag;
						worst = e > worst ? e : worst;
					}
				}
			CHECK_MSG(worst <= 1e-6, "%s hd %zu: rope rel err %g > 1e-6", ks->name, hd, worst);
		}
		backend_free(be);
	}
}

/* The sequences of the attention test: seq s holds positions [0, len[s]) in the cache;
 * the query batch is tokens of the sequences in the order below. Seq 2 is longer than two
 * of the backend's online-softmax steps (256 keys, whole blocks of BT: 255), so a query
 * late in it combines three steps. */
enum { HD = 24, NH = 6, NKV = 2, BT = 5, NSEQ = 3, MAXLEN = 533, NBLK = 3 * (MAXLEN / BT + 1) };
static const size_t seq_len[NSEQ] = {41, 23, MAXLEN};

/* float64 attention for token (seq, pos), head h, from the values the cache holds:
 * out[c] = sum_t softmax_t(q . K_t * qscale) V_t[c] over t <= pos (qscale 1 / sqrt(HD), or
 * 1 for queries already scaled). */
static void naive_attention(double *out, const float *q, const float *kc, const float *vc,
			    size_t pos, double qscale)
{
	double s[MAXLEN], m = -INFINITY, l = 0.0;
	for (size_t t = 0; t <= pos; t++) {
		double d = 0.0;
		for (size_t c = 0; c < HD; c++)
			d += (double)q[c] * kc[t * HD + c];
		s[t] = d * qscale;
		m = s[t] > m ? s[t] : m;
	}
	for (size_t c = 0; c < HD; c++)
		out[c] = 0.0;
	for (size_t t = 0; t <= pos; t++) {
		double e = exp(s[t] - m);
		l += e;
		for (size_t c = 0; c < HD; c++)
			out[c] += e * vc[t * HD + c];
	}
	for (size_t c = 0; c < HD; c++)
		out[c] /= l;
}

/* The value of element (row, c) as the cache holds it (widened for BF16, decoded for
 * FP8 / INT8). */
static float kv_value(const be_kv *kv, const float *e4m3, size_t row, size_t c)
{
	if (kv->fmt == BE_KV_F32)
		return ((const float *)kv->data)[row + c];
	if (kv->fmt == BE_KV_BF16)
		return num_bf16_to_f32(((const uint16_t *)kv->data)[row + c]);
	uint8_t code = ((const uint8_t *)kv->data)[row + c];
	float s = kv->scales[row / kv->head_dim + c / kv->head_dim];
	return kv->fmt == BE_KV_FP8 ? e4m3[code] * s : (float)(int8_t)code * s;
}

TEST(test_attention_op)
{
	printf("  seed %llu\n", (unsigned long long)seed);
	uint64_t rng = seed + 1;
	float e4m3[256];
	num_e4m3_table(e4m3);
	/* block tables: a shuffled permutation of the blocks, split between the sequences */
	int32_t perm[NBLK], tables[NSEQ][MAXLEN / BT + 1];
	for (int i = 0; i < NBLK; i++)
		perm[i] = i;
	for (int i = NBLK - 1; i > 0; i--) {
		int j = (int)(test_rand_next(&rng) % (uint64_t)(i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int s = 0, n = 0; s < NSEQ; s++)
		for (size_t b = 0; b <= MAXLEN / BT; b++)
			tables[s][b] = perm[n++];
	/* the query batch: seq 0 prefill of its last 35 tokens (more than one tile), seq 1 one
	 * decode token, seq 2 its last 3 tokens, then seq 0's position 7 again (a repeat is
	 * fine: attention only reads the cache), seq 2's last 19 tokens (a full tile, then a tile
	 * of its last 3 with positions 300, 254 and 255 around a step edge), seq 0 position 40
	 * and seq 2 position 400 alone (decode-sized tiles: the scores without a transpose) */
	int32_t qseq[80], qpos[80];
	size_t n = 0;
	for (size_t p = seq_len[0] - 35; p < seq_len[0]; p++)
		qseq[n] = 0, qpos[n++] = (int32_t)p;
	qseq[n] = 1, qpos[n++] = (int32_t)seq_len[1] - 1;
	for (size_t p = seq_len[2] - 3; p < seq_len[2]; p++)
		qseq[n] = 2, qpos[n++] = (int32_t)p;
	qseq[n] = 0, qpos[n++] = 7;
	for (size_t p = seq_len[2] - 19; p < seq_len[2]; p++)
		qseq[n] = 2, qpos[n++] = (int32_t)p;
	qseq[n] = 2, qpos[n++] = 300;
	qseq[n] = 2, qpos[n++] = 254;
	qseq[n] = 2, qpos[n++] = 255;
	qseq[n] = 0, qpos[n++] = 40;
	qseq[n] = 2, qpos[n++] = 400;
	/* the second batch is pure decode: one token from each sequence in turn (never two
	 * neighbours of one sequence, so every task has a single token's n_rep rows), contexts
	 * of 1, 17, 250, 41, 255 (one whole step), 23, 256 (one key into the second step), 8
	 * and 533 (three steps) */
	static const int32_t dseq[] = {0, 1, 2, 0, 2, 1, 2, 0, 2},
			     dpos[] = {0, 16, 249, 40, 254, 22, 255, 7, MAXLEN - 1};
	size_t nd = sizeof dseq / sizeof dseq[0];
	for (size_t i = 0; i < nd; i++)
		qseq[n + i] = dseq[i], qpos[n + i] = dpos[i];
	const int32_t *qtab[80];
	for (size_t i = 0; i < n + nd; i++)
		qtab[i] = tables[qseq[i]];
	/* batch bi: tokens [first[bi], first[bi] + count[bi]) of qpos / qtab */
	size_t first[2] = {0, n}, count[2] = {n, nd};
	n += nd;

	size_t kvd = NKV * HD;
	float *q = malloc(n * NH * HD * sizeof *q), *out = malloc(n * NH * HD * sizeof *out);
	float *kin = malloc(MAXLEN * kvd * sizeof *kin), *vin = malloc(MAXLEN * kvd * sizeof *vin);
	CHECK(q && out && kin && vin);
	for (size_t e = 0; e < n * NH * HD; e++)
		q[e] = 2.0f * test_rand_float(&rng);
	for (int fmt = 0; fmt < BE_KV_COUNT; fmt++)
		for (int v = 0; v < CPU_ISA_COUNT; v++) {
			const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
			if (!ks)
				continue;
			backend *be = NULL;
			backend_cpu_opts o = {.n_threads = 2, .kernels = ks};
			CHECK(backend_cpu_new(&be, &o, NULL) == OS_OK);
			if (!be)
				break;
			be_kv kv = {.fmt = fmt, .n_blocks = NBLK, .n_layers = 2, .kv_dim = kvd,
				    .head_dim = HD, .block_tokens = BT};
			size_t elems = NBLK * be_kv_block_elems(&kv);
			kv.data = be->ops->buf_alloc(be->ctx, elems * be_kvfmt_elem_bytes(fmt));
			int scaled = be_kvfmt_has_scales(fmt);
			kv.scales = scaled ? malloc(elems / HD * sizeof(float)) : NULL;
			CHECK(kv.data && (!scaled || kv.scales));
			/* fill every sequence's cache at layer 1 */
			for (int s = 0; s < NSEQ; s++) {
				int32_t pos[MAXLEN];
				const int32_t *tb[MAXLEN];
				for (size_t p = 0; p < seq_len[s]; p++) {
					pos[p] = (int32_t)p;
					tb[p] = tables[s];
				}
				for (size_t e = 0; e < seq_len[s] * kvd; e++) {
					kin[e] = test_rand_float(&rng);
					vin[e] = test_rand_float(&rng);
				}
				be_attn_batch fb = {seq_len[s], pos, tb, NH, NKV, HD};
				CHECK(be->ops->kv_store(be->ctx, &kv, 1, kin, vin, &fb) == OS_OK);
				if (fmt != BE_KV_BF16)
					continue;
				/* BF16 stores each value rounded to nearest even, nothing else: the
				 * reference below then reads exactly the rounded K / V */
				size_t bad = 0;
				for (size_t p = 0; p < seq_len[s]; p++) {
					size_t blk = (size_t)tables[s][p / BT];
					const uint16_t *kr = (const uint16_t *)kv.data +
							     be_kv_row(&kv, blk, 1, 0, p % BT);
					const uint16_t *vr = (const uint16_t *)kv.data +
							     be_kv_row(&kv, blk, 1, 1, p % BT);
					for (size_t c = 0; c < kvd; c++)
						bad += kr[c] != num_f32_to_bf16(kin[p * kvd + c]) ||
						       vr[c] != num_f32_to_bf16(vin[p * kvd + c]);
				}
				CHECK_MSG(bad == 0, "%s kv bf16: %zu stored values are not the "
					  "rounded inputs", ks->name, bad);
			}
			double worst = 0.0;
			for (int bi = 0; bi < 2; bi++) {
				size_t i0 = first[bi], n_b = count[bi];
				be_attn_batch b = {n_b, qpos + i0, qtab + i0, NH, NKV, HD};
				float *ob = out + i0 * NH * HD;
				CHECK(be->ops->attention(be->ctx, ob, q + i0 * NH * HD, &kv, 1, &b) == OS_OK);
				for (size_t i = i0; i < i0 + n_b; i++)
					for (size_t h = 0; h < NH; h++) {
						size_t g = h / (NH / NKV), len = (size_t)qpos[i] + 1;
						float kc[MAXLEN * HD], vc[MAXLEN * HD];
						for (size_t t = 0; t < len; t++) {
							size_t blk = (size_t)qtab[i][t / BT];
							size_t rk = be_kv_row(&kv, blk, 1, 0, t % BT);
							size_t rv = be_kv_row(&kv, blk, 1, 1, t % BT);
							for (size_t c = 0; c < HD; c++) {
								kc[t * HD + c] = kv_value(&kv, e4m3, rk, g * HD + c);
								vc[t * HD + c] = kv_value(&kv, e4m3, rv, g * HD + c);
							}
						}
						double ref[HD], refb[HD];
						const float *qh = q + (i * NH + h) * HD;
						naive_attention(ref, qh, kc, vc, (size_t)qpos[i],
								1.0 / sqrt((double)HD));
						/* a BF16 cache takes bf16 products: the reference has
						 * the queries scaled in f32 and rounded, as the backend
						 * does; the softmax weights are rounded too, each by at
						 * most 2^-9 of itself, which moves the output by at most
						 * 2^-9 max |V| (|V| < 1) */
						int bf16 = fmt == BE_KV_BF16;
						if (bf16) {
							float qb[HD], sc = 1.0f / sqrtf((float)HD);
							for (size_t c = 0; c < HD; c++)
								qb[c] = num_bf16_to_f32(
									num_f32_to_bf16(qh[c] * sc));
							naive_attention(refb, qb, kc, vc, (size_t)qpos[i], 1.0);
						}
						for (size_t c = 0; c < HD; c++) {
							double got = out[(i * NH + h) * HD + c];
							double e = fabs(got - ref[c]) / (fabs(ref[c]) + 1e-2);
							if (bf16) /* in units of the bound below */
								e = fabs(got - refb[c]) /
								    (0x1p-9 + 2e-5 * fabs(refb[c])) * 2e-5;
							worst = e > worst ? e : worst;
						}
					}
			}
			CHECK_MSG(worst <= 2e-5, "%s kv %s: attention rel err %g > 2e-5", ks->name,
				  be_kvfmt_name(fmt), worst);
			/* the decode batch has enough single-token groups for tasks that cover all kv
			 * heads; a token alone gets a task per kv head: the same bits */
			size_t differ = 0;
			for (size_t i = first[1]; i < first[1] + count[1]; i++) {
				float alone[NH * HD];
				be_attn_batch b1 = {1, qpos + i, qtab + i, NH, NKV, HD};
				CHECK(be->ops->attention(be->ctx, alone, q + i * NH * HD, &kv, 1, &b1) ==
				      OS_OK);
				differ += memcmp(alone, out + i * NH * HD, sizeof alone) != 0;
			}
			CHECK_MSG(differ == 0, "%s kv %s: %zu decode tokens differ alone and batched",
				  ks->name, be_kvfmt_name(fmt), differ);
			be->ops->buf_free(be->ctx, kv.data);
			free(kv.scales);
			backend_free(be);
		}
	free(q);
	free(out);
	free(kin);
	free(vin);
}

/* Prefill-sized batches (the row ops then split over the pool): rmsnorm, rope and kv_store
 * on 2 threads give the same bits as on 1 thread (the plain loop), rmsnorm also the same as
 * cpu_rmsnorm, at an awkward token count, for every KV format (shuffled blocks). */
TEST(test_row_ops_pooled)
{
	uint64_t rng = seed + 2;
	enum { N = 133, D = 40, RH = 3, RK = 1, RD = 16, RB = 7, RBLK = N / RB + 1 };
	static float x[N * D], w[D], y1[N * D], y2[N * D], yr[N * D];
	static float q1[N * RH * RD], q2[N * RH * RD], k1[N * RK * RD], k2[N * RK * RD];
	static float kin[N * RK * RD], vin[N * RK * RD];
	int32_t pos[N], table[RBLK];
	const int32_t *tb[N];
	for (size_t e = 0; e < N * D; e++)
		x[e] = test_rand_float(&rng) * 3.0f + 0.01f;
	for (size_t e = 0; e < D; e++)
		w[e] = test_rand_float(&rng) + 1.5f;
	for (size_t e = 0; e < N * RH * RD; e++)
		q1[e] = q2[e] = test_rand_float(&rng);
	for (size_t e = 0; e < N * RK * RD; e++) {
		k1[e] = k2[e] = test_rand_float(&rng);
		kin[e] = test_rand_float(&rng);
		vin[e] = test_rand_float(&rng);
	}
	for (int i = 0; i < RBLK; i++)
		table[i] = (int32_t)((i * 3 + 7) % RBLK); /* a permutation: 3 is prime to RBLK = 20 */
	for (size_t t = 0; t < N; t++) {
		pos[t] = (int32_t)t;
		tb[t] = table;
	}
	for (int v = 0; v < CPU_ISA_COUNT; v++) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)v);
		if (!ks)
			continue;
		backend *b1 = NULL, *b2 = NULL;
		backend_cpu_opts o1 = {.n_threads = 1, .kernels = ks};
		backend_cpu_opts o2 = {.n_threads = 2, .kernels = ks};
		CHECK(backend_cpu_new(&b1, &o1, NULL) == OS_OK);
		CHECK(backend_cpu_new(&b2, &o2, NULL) == OS_OK);
		if (!b1 || !b2) {
			backend_free(b1);
			backend_free(b2);
			return;
		}
		CHECK(b1->ops->rmsnorm(b1->ctx, y1, x, w, N, D, 1e-5f) == OS_OK);
		CHECK(b2->ops->rmsnorm(b2->ctx, y2, x, w, N, D, 1e-5f) == OS_OK);
		cpu_rmsnorm(ks, yr, x, w, N, D, 1e-5f);
		CHECK(memcmp(y1, y2, sizeof y1) == 0 && memcmp(y1, yr, sizeof y1) == 0);

		float qa[N * RH * RD], qb[N * RH * RD], ka[N * RK * RD], kb[N * RK * RD];
		memcpy(qa, q1, sizeof qa);
		memcpy(qb, q2, sizeof qb);
		memcpy(ka, k1, sizeof ka);
		memcpy(kb, k2, sizeof kb);
		CHECK(b1->ops->rope(b1->ctx, qa, RH, ka, RK, N, RD, pos, 10000.0f) == OS_OK);
		CHECK(b2->ops->rope(b2->ctx, qb, RH, kb, RK, N, RD, pos, 10000.0f) == OS_OK);
		CHECK(memcmp(qa, qb, sizeof qa) == 0 && memcmp(ka, kb, sizeof ka) == 0);
		CHECK(memcmp(qa, q1, sizeof qa) != 0); /* it did rotate */

		for (int fmt = 0; fmt < BE_KV_COUNT; fmt++) {
			be_kv kv[2];
			int scaled = be_kvfmt_has_scales(fmt);
			backend *bes[2] = {b1, b2};
			for (int i = 0; i < 2; i++) {
				kv[i] = (be_kv){.fmt = fmt, .n_blocks = RBLK, .n_layers = 2,
						.kv_dim = RK * RD, .head_dim = RD, .block_tokens = RB};
				size_t elems = RBLK * be_kv_block_elems(&kv[i]);
				size_t bytes = elems * be_kvfmt_elem_bytes(fmt);
				kv[i].data = calloc(1, bytes);
				kv[i].scales = scaled ? calloc(elems / RD, sizeof(float)) : NULL;
				CHECK(kv[i].data && (!scaled || kv[i].scales));
				if (!kv[i].data || (scaled && !kv[i].scales))
					break;
				be_attn_batch fb = {N, pos, tb, RH, RK, RD};
				CHECK(bes[i]->ops->kv_store(bes[i]->ctx, &kv[i], 1, kin, vin, &fb) ==
				      OS_OK);
			}
			if (kv[0].data && kv[1].data) {
				size_t elems = RBLK * be_kv_block_elems(&kv[0]);
				CHECK_MSG(memcmp(kv[0].data, kv[1].data,
						 elems * be_kvfmt_elem_bytes(fmt)) == 0,
					  "%s kv %s: pooled kv_store differs", ks->name,
					  be_kvfmt_name(fmt));
				if (fmt == BE_KV_F32) /* token 100's K at its slot */
					CHECK(memcmp((float *)kv[1].data +
							     be_kv_row(&kv[1], (size_t)table[100 / RB], 1,
								       0, 100 % RB),
						     kin + 100 * RK * RD, RK * RD * sizeof(float)) == 0);
				if (fmt == BE_KV_BF16) { /* token 100's V, rounded */
					const uint16_t *vr = (const uint16_t *)kv[1].data +
							     be_kv_row(&kv[1], (size_t)table[100 / RB], 1,
								       1, 100 % RB);
					size_t bad = 0;
					for (size_t c = 0; c < RK * RD; c++)
						bad += vr[c] != num_f32_to_bf16(vin[100 * RK * RD + c]);
					CHECK_EQ_INT(bad, 0);
				}
				if (scaled)
					CHECK(memcmp(kv[0].scales, kv[1].scales,
						     elems / RD * sizeof(float)) == 0);
			}
			for (int i = 0; i < 2; i++) {
				free(kv[i].data);
				free(kv[i].scales);
			}
		}
		backend_free(b1);
		backend_free(b2);
	}
}

int main(void)
{
	RUN(test_rope_op);
	RUN(test_attention_op);
	RUN(test_row_ops_pooled);
	return test_summary();
}
