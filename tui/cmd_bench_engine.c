/* cmd_bench_engine.c: `optstudio bench-engine MODEL`: prefill and batched decode speed of the
 * CPU engine, each beside the roofline of this machine measured in the same run. A benchmark:
 * it prints figures, it never passes or fails on them. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/cpu/backend_cpu.h"
#include "core/cpu/roofline.h"
#include "session.h"

static const char bench_help[] =
	"usage: optstudio bench-engine MODEL [options]\n"
	"\n"
	"Measures, in one run: this machine's memory read bandwidth and peak multiply-add rate\n"
	"(f32 FMA; bf16 dot products and AMX tile products where the CPU has them), then the\n"
	"engine's prefill speed\n"
	"and its decode speed at batch 1, 4 and 16 (B sequences decoding together, one token\n"
	"each per forward call), each the median of --reps timed repetitions after a warm-up,\n"
	"printed beside its roofline:\n"
	"  decode roofline  = B x bandwidth / (weight bytes of one step + KV bytes the B\n"
	"                     sequences read in that step)  [the weights are read once per\n"
	"                     step for all B tokens]\n"
	"  prefill roofline = peak / (matmul FLOPs per prompt token) tok/s: 2 x the layers'\n"
	"                     projection weights per token plus the output head once per\n"
	"                     prompt (only the last token's logits are computed); peak is\n"
	"                     that of the instruction the matmul uses for the weight format\n"
	"                     (f32 FMA for F32, FP8 and INT4; for BF16 and FP8-W8A8 the AMX\n"
	"                     tile products where the kernel set is amx, else bf16 dot\n"
	"                     products; for INT8 W8A8 int8 AMX tiles or VNNI dot products,\n"
	"                     an integer multiply-add counting 2 ops; for INT4 and FP8 on\n"
	"                     the amx set a third of the AMX tile products, since each\n"
	"                     f32 activation goes in as three exact bf16 parts); attention\n"
	"                     FLOPs are not counted\n"
	"The table gives each figure as a percentage of its roofline twice: the median's\n"
	"(% roof) and the fastest repetition's (best %). The peak probes keep the best of\n"
	"their own repetitions, so on a machine other work shares, best % compares like\n"
	"with like. JSON: roofline_pct and roofline_pct_best.\n"
	"The machine's ceiling a phase is judged by (peak FLOP/s for prefill, bandwidth for\n"
	"decode) is probed just before and just after that phase, and the higher of the two\n"
	"counts: on a virtual machine whose neighbours come and go, a probe at the start of\n"
	"the run can see half the machine the phase then gets, or twice it. A phase whose two\n"
	"probes differ by more than 10% is marked '~' (the machine changed during it). JSON:\n"
	"ceiling_before, ceiling_after (GFLOP/s for prefill, GB/s for decode).\n"
	"\n"
	"options:\n"
	"      --threads N    CPU threads (default: all online CPUs)\n"
	"      --bf16         BF16 weights (default F32)\n"
	"      --kv T         KV cache f32|bf16|fp8|int8 (default: the model\n"
	"                     file's, else f32)\n"
	"      --batch-invariant  kernels that give a token the same bits in any\n"
	"                     batch, to measure what that costs (optstudio(1))\n"
	"      --prefill N    prompt tokens of the prefill measurement (default 512)\n"
	"      --decode N     decode steps per timed repetition (default 32)\n"
	"      --context N    tokens each decoding sequence holds before timing (default 64)\n"
	"      --reps R       timed repetitions (default 3)\n"
	"      --json         print a JSON object instead of the table\n";

typedef struct bench_args {
	const char *model;
	size_t n_threads;
	size_t prefill;
	size_t decode;
	size_t context;
	size_t reps;
	bool bf16;
	int kv_type; /* enum engine_kv_type; 0 = the model's */
	bool batch_invariant;
	bool json;
} bench_args;

enum { OPT_THREADS = 256, OPT_BF16, OPT_KV, OPT_BATCH_INVARIANT, OPT_JSON, OPT_PREFILL, OPT_DECODE, OPT_CONTEXT, OPT_REPS };

static int parse_bench_args(int argc, char **argv, bench_args *a)
{
	static const struct option long_opts[] = {
		{"threads", required_argument, NULL, OPT_THREADS},
		{"bf16", no_argument, NULL, OPT_BF16},
		{"kv", required_argument, NULL, OPT_KV},
		{"batch-invariant", no_argument, NULL, OPT_BATCH_INVARIANT},
		{"json", no_argument, NULL, OPT_JSON},
		{"prefill", required_argument, NULL, OPT_PREFILL},
		{"decode", required_argument, NULL, OPT_DECODE},
		{"context", required_argument, NULL, OPT_CONTEXT},
		{"reps", required_argument, NULL, OPT_REPS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof *a);
	a->prefill = 512;
	a->decode = 32;
	a->context = 64;
	a->reps = 3;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		size_t *target = NULL;
		size_t lo = 1, hi = 1u << 20;
		switch (c) {
		case OPT_THREADS:
			target = &a->n_threads, hi = 1024;
			break;
		case OPT_PREFILL:
			target = &a->prefill;
			break;
		case OPT_DECODE:
			target = &a->decode;
			break;
		case OPT_CONTEXT:
			target = &a->context, lo = 0;
			break;
		case OPT_REPS:
			target = &a->reps, hi = 1000;
			break;
		case OPT_BF16:
			a->bf16 = true;
			continue;
		case OPT_BATCH_INVARIANT:
			a->batch_invariant = true;
			continue;
		case OPT_KV:
			if (!cli_parse_kv_type(optarg, &a->kv_type))
				return cli_usage_error("bench-engine", "--kv wants f32, bf16, fp8 or int8, got '%s'",
						       optarg);
			continue;
		case OPT_JSON:
			a->json = true;
			continue;
		case '?':
			return cli_option_error("bench-engine", opt, optopt);
		default:
			return cli_option_error("bench-engine", opt, 0);
		}
		if (!cli_parse_size(optarg, target) || *target < lo || *target > hi)
			return cli_usage_error("bench-engine", "%s wants a number in %zu..%zu, got '%s'",
					       opt, lo, hi, optarg);
	}
	int n_pos = argc - optind;
	if (n_pos == 0)
		return cli_usage_error("bench-engine", "missing MODEL (a hub name or a GGUF file)");
	if (n_pos > 1)
		return cli_usage_error("bench-engine", "unexpected argument '%s'", argv[optind + 1]);
	a->model = argv[optind];
	return EXIT_OK;
}

/* One measured figure: the median and range over repetitions, and its roofline. */
typedef struct bench_point {
	const char *phase;    /* "prefill" or "decode" */
	size_t batch;         /* prefill: prompt tokens; decode: sequences */
	double tok_s;         /* median */
	double tok_s_min, tok_s_max;
	double roofline_tok_s;
	double bytes_per_step;  /* decode: weights + KV read per step, bytes */
	double ceiling_before;  /* the machine probed just before and after the phase: */
	double ceiling_after;   /* GFLOP/s (prefill) or GB/s (decode); the higher counts */
} bench_point;

static double ceiling_of(const bench_point *p)
{
	return p->ceiling_before > p->ceiling_after ? p->ceiling_before : p->ceiling_after;
}

/* The two probes of p differ by more than 10%: the machine changed during the phase. */
static bool ceiling_unsteady(const bench_point *p)
{
	double lo = p->ceiling_before < p->ceiling_after ? p->ceiling_before : p->ceiling_after;
	return lo < 0.9 * ceiling_of(p);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

static void summarize(const double *v, size_t n, bench_point *p)
{
	double s[1000];
	memcpy(s, v, n * sizeof *s);
	qsort(s, n, sizeof *s, cmp_double);
	p->tok_s_min = s[0];
	p->tok_s_max = s[n - 1];
	p->tok_s = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Matmul FLOPs per prompt token of a prefill of n tokens that returns the last token's
 * logits only (as bench_prefill asks): 2 x the weights of every layer's projections for each
 * token, plus the output head (vocab x dim) once for the whole prompt. The token embedding
 * is a row lookup, not a matmul, and attention (scores and weighted values) is left out,
 * so the roofline is, if anything, too high. */
static double prefill_flops_per_token(const model_config *c, size_t n)
{
	double q = (double)c->n_heads * (double)c->head_dim;
	double kv = (double)c->n_kv_heads * (double)c->head_dim;
	double layer = (double)c->dim * (q + 2.0 * kv) + q * (double)c->dim +
		       3.0 * (double)c->ffn_dim * (double)c->dim;
	double head = (double)c->vocab * (double)c->dim;
	return 2.0 * ((double)c->n_layers * layer + head / (double)n);
}

/* A deterministic stream of token ids in [0, vocab), so every run does the same work. */
static int32_t next_token(uint64_t *state, size_t vocab)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return (int32_t)((*state >> 33) % vocab);
}

/* The bench state the phases share: engine, scratch, token stream. */
typedef struct bench_ctx {
	engine *e;
	size_t vocab;
	uint64_t rng;
	int32_t *toks, *pos, *seqs;  /* [cap] */
	uint8_t *want;               /* [cap] */
	float *logits;               /* (16, vocab) */
	size_t cap;
} bench_ctx;

/* Prefill: `reps` timed runs of n tokens into a fresh sequence (one untimed first). */
static int bench_prefill(bench_ctx *b, size_t n, size_t reps, bench_point *out, os_error *err)
{
	double v[1000];
	for (size_t r = 0; r <= reps; r++) {
		int32_t seq;
		int rc = kv_seq_new(engine_kv(b->e), &seq, err);
		if (rc)
			return rc;
		for (size_t i = 0; i < n; i++) {
			b->toks[i] = next_token(&b->rng, b->vocab);
			b->pos[i] = (int32_t)i;
			b->seqs[i] = seq;
		}
		engine_batch batch = {.n = n, .tokens = b->toks, .pos = b->pos, .seq = b->seqs};
		double t0 = cli_now_s();
		rc = engine_forward(b->e, &batch, b->logits, err);
		double t = cli_now_s() - t0;
		kv_seq_free(engine_kv(b->e), seq);
		if (rc)
			return rc;
		if (r > 0)
			v[r - 1] = (double)n / t;
	}
	out->phase = "prefill";
	out->batch = n;
	summarize(v, reps, out);
	return OS_OK;
}

/* Decode at batch B: B sequences of `context` tokens, a few warm-up steps, then `reps` timed
 * runs of `steps` steps, each step one token per sequence in one engine_forward call with
 * every row's logits returned. *kv_tokens_read gets the mean KV positions read per step. */
static int bench_decode(bench_ctx *b, size_t B, size_t context, size_t steps, size_t reps,
			bench_point *out, double *kv_tokens_read, os_error *err)
{
	enum { WARMUP = 3 };
	int32_t seq[16];
	size_t n_seq = 0;
	int rc = OS_OK;
	double v[1000];
	for (; n_seq < B; n_seq++)
		if ((rc = kv_seq_new(engine_kv(b->e), &seq[n_seq], err)))
			goto done;
	/* the context, all sequences in one call */
	if (context) {
		size_t n = 0;
		for (size_t s = 0; s < B; s++)
			for (size_t i = 0; i < context; i++, n++) {
				b->toks[n] = next_token(&b->rng, b->vocab);
				b->pos[n] = (int32_t)i;
				b->seqs[n] = seq[s];
			}
		engine_batch batch = {.n = n, .tokens = b->toks, .pos = b->pos, .seq = b->seqs};
		if ((rc = engine_forward(b->e, &batch, b->logits, err)))
			goto done;
	}
	size_t len = context;
	double kv_sum = 0;
	for (size_t r = 0; r <= reps; r++) {
		size_t n_steps = r == 0 ? WARMUP : steps;
		double t0 = cli_now_s();
		for (size_t st = 0; st < n_steps; st++, len++) {
			for (size_t s = 0; s < B; s++) {
				b->toks[s] = next_token(&b->rng, b->vocab);
				b->pos[s] = (int32_t)len;
				b->seqs[s] = seq[s];
				b->want[s] = 1;
			}
			if (r > 0)
				kv_sum += (double)B * (double)(len + 1);
			engine_batch batch = {.n = B, .tokens = b->toks, .pos = b->pos, .seq = b->seqs,
					      .want = b->want};
			if ((rc = engine_forward(b->e, &batch, b->logits, err)))
				goto done;
		}
		double t = cli_now_s() - t0;
		if (r > 0)
			v[r - 1] = (double)(B * steps) / t;
	}
	out->phase = "decode";
	out->batch = B;
	summarize(v, reps, out);
	*kv_tokens_read = kv_sum / (double)(reps * steps);
done:
	for (size_t s = 0; s < n_seq; s++)
		kv_seq_free(engine_kv(b->e), seq[s]);
	return rc;
}

/* The machine's ceilings, probed at the start of the run (0: no such instructions). */
typedef struct machine_peaks {
	double bw;                /* GB/s */
	double f32, bf16, amx;    /* GFLOP/s: f32 FMA, bf16 vdpbf16ps, bf16 AMX tiles */
	double i8;                /* GOP/s of the int8 instruction INT8 weights use, or 0 */
	double used;              /* the one the prefill roofline uses */
	const char *used_name;
	/* the tile products one multiply-add of the weight format costs: 3 where f32
	 * activations go into AMX-BF16 tiles as three exact bf16 parts (kernels_quant.h) */
	double products_per_op;
} machine_peaks;

/* The instruction a model's prefill matmuls run on, by the format of its blocks: f32 FMA
 * for F32 and the formats multiplied in f32 (FP8 weight-only, INT4); bf16 for BF16 and FP8
 * W8A8 (whose E4M3 values are exact in bf16), on AMX tiles under the amx set; int8 for INT8
 * W8A8, on AMX-INT8 tiles where the quantized set is amx, else VNNI dot products; INT4 and
 * FP8 W8A16 prompts of n_prefill tokens on the amx set's tile paths: AMX-BF16 tiles at
 * three products an operation. Sets pk->used_name and pk->products_per_op; a kind this CPU
 * lacks falls back to f32 FMA. */
static roofline_kind prefill_peak_kind(const backend *be, const model *m, size_t n_prefill,
					machine_peaks *pk)
{
	pk->used_name = "f32 FMA";
	pk->products_per_op = 1;
	int wfmt = model_weight_format(m);
	const model_config *c = model_get_config(m);
	const cpu_qkernel_set *qk = backend_cpu_qkernels(be);
	/* the tile path needs every matmul's inputs in whole 32s (kernels_quant.h) */
	bool tiles_fit = c->dim % 32 == 0 && c->ffn_dim % 32 == 0 &&
			 c->n_heads * c->head_dim % 32 == 0;
	bool i4_tiles = wfmt == BE_WFMT_I4 && qk && qk->matmul_i4_tiles &&
			n_prefill >= qk->i4_tiles_min_tok;
	bool fp8_tiles = wfmt == BE_WFMT_FP8 && qk && qk->matmul_fp8_tiles &&
			 n_prefill >= qk->fp8_tiles_min_tok;
	if ((i4_tiles || fp8_tiles) && tiles_fit && pk->amx > 0) {
		pk->used_name = "bf16 AMX tiles / 3";
		pk->products_per_op = 3;
		return ROOFLINE_BF16_AMX;
	}
	if (wfmt == BE_WFMT_BF16 || wfmt == BE_WFMT_FP8_W8A8) {
		if (pk->amx > 0) {
			pk->used_name = "bf16 AMX tiles";
			return ROOFLINE_BF16_AMX;
		}
		if (pk->bf16 > 0) {
			pk->used_name = "bf16 dot product";
			return ROOFLINE_BF16_DP;
		}
	}
	if (wfmt == BE_WFMT_I8 && qk && qk->isa != CPU_ISA_GENERIC) {
		pk->used_name = qk->isa == CPU_ISA_AMX ? "int8 AMX tiles" : "int8 dot product";
		return qk->isa == CPU_ISA_AMX ? ROOFLINE_I8_AMX : ROOFLINE_I8_DP;
	}
	return ROOFLINE_F32_FMA;
}

static void print_table(const bench_args *a, const cli_session *s, size_t n_threads,
			const machine_peaks *pk, const bench_point *pts, size_t n_pts, double ratio)
{
	const model *m = s->m;
	printf("bench-engine: %s\n", s->path);
	printf("  %s weights, %s KV cache%s, %.1fM parameters, %.1f MB read per decode step "
	       "(weights), %zu threads, %zu reps (median, min-max)\n",
	       be_wfmt_name(model_weight_format(m)), be_kvfmt_name(s->kv_fmt),
	       a->batch_invariant ? ", batch-invariant kernels" : "",
	       (double)model_n_params(m) / 1e6,
	       (double)model_step_bytes(m) / 1e6, n_threads, a->reps);
	printf("  machine (same run, at the start): read bandwidth %.1f GB/s, peak f32 FMA %.1f "
	       "GFLOP/s, ", pk->bw, pk->f32);
	if (pk->bf16 > 0)
		printf("peak bf16 dot product %.1f GFLOP/s", pk->bf16);
	else
		printf("no bf16 dot product instructions");
	if (pk->amx > 0)
		printf(", peak bf16 AMX tiles %.1f GFLOP/s", pk->amx);
	if (pk->i8 > 0)
		printf(", peak %s %.1f GOP/s", pk->used_name, pk->i8);
	printf("\n  prefill roofline uses %s (%.1f %s at the start); decode roofline counts the "
	       "weights once per step plus the batch's KV reads\n",
	       pk->used_name, pk->used, pk->i8 > 0 ? "GOP/s" : "GFLOP/s");
	/* The peak probes keep the best of their reps; on a shared machine the engine's best rep
	 * is the figure measured under the same conditions, so it gets a column of its own. */
	printf("  %% roof = median rep / roofline; best %% = fastest rep / roofline\n"
	       "  (each peak above is the best of its probe's reps)\n"
	       "  ceiling = the machine probed again just before and after each phase, the higher\n"
	       "  of the two (GFLOP/s for prefill, GB/s for decode); ~: the two differ by > 10%%\n\n");
	printf("%-8s %6s %11s %21s %10s %14s %9s %9s\n", "phase", "batch", "tok/s", "min-max",
	       "ceiling", "roofline tok/s", "% roof", "best %");
	for (size_t i = 0; i < n_pts; i++) {
		const bench_point *p = &pts[i];
		char range[48], ceil[32];
		snprintf(range, sizeof range, "%.1f-%.1f", p->tok_s_min, p->tok_s_max);
		snprintf(ceil, sizeof ceil, "%s%.1f", ceiling_unsteady(p) ? "~" : "", ceiling_of(p));
		printf("%-8s %6zu %11.1f %21s %10s %14.1f %8.1f%% %8.1f%%\n", p->phase, p->batch,
		       p->tok_s, range, ceil, p->roofline_tok_s, 100.0 * p->tok_s / p->roofline_tok_s,
		       100.0 * p->tok_s_max / p->roofline_tok_s);
	}
	if (ratio > 0)
		printf("\nbatch-16 / batch-1 decode throughput: %.2fx\n", ratio);
}

static int print_json(const bench_args *a, const cli_session *s, size_t n_threads,
		      const machine_peaks *pk, const bench_point *pts, size_t n_pts, double ratio)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		goto oom;
	const model *m = s->m;
	cJSON_AddStringToObject(o, "model", s->path);
	cJSON_AddStringToObject(o, "weight_format", be_wfmt_name(model_weight_format(m)));
	cJSON_AddStringToObject(o, "kv_cache", be_kvfmt_name(s->kv_fmt));
	cJSON_AddBoolToObject(o, "batch_invariant", a->batch_invariant);
	cJSON_AddNumberToObject(o, "n_params", (double)model_n_params(m));
	cJSON_AddNumberToObject(o, "step_bytes", (double)model_step_bytes(m));
	cJSON_AddNumberToObject(o, "threads", (double)n_threads);
	cJSON_AddNumberToObject(o, "reps", (double)a->reps);
	cJSON_AddNumberToObject(o, "bandwidth_gb_s", pk->bw);
	cJSON_AddNumberToObject(o, "peak_f32_fma_gflop_s", pk->f32);
	cJSON_AddNumberToObject(o, "peak_bf16_dp_gflop_s", pk->bf16);
	cJSON_AddNumberToObject(o, "peak_bf16_amx_gflop_s", pk->amx);
	cJSON_AddNumberToObject(o, "peak_int8_gop_s", pk->i8);
	cJSON_AddStringToObject(o, "prefill_peak", pk->used_name);
	cJSON_AddNumberToObject(o, "prefill_peak_gflop_s", pk->used);
	cJSON *arr = cJSON_AddArrayToObject(o, "results");
	for (size_t i = 0; arr && i < n_pts; i++) {
		const bench_point *p = &pts[i];
		cJSON *r = cJSON_CreateObject();
		if (!r)
			goto oom_doc;
		cJSON_AddStringToObject(r, "phase", p->phase);
		cJSON_AddNumberToObject(r, "batch", (double)p->batch);
		cJSON_AddNumberToObject(r, "tok_s", p->tok_s);
		cJSON_AddNumberToObject(r, "tok_s_min", p->tok_s_min);
		cJSON_AddNumberToObject(r, "tok_s_max", p->tok_s_max);
		cJSON_AddNumberToObject(r, "roofline_tok_s", p->roofline_tok_s);
		cJSON_AddNumberToObject(r, "roofline_pct", 100.0 * p->tok_s / p->roofline_tok_s);
		cJSON_AddNumberToObject(r, "roofline_pct_best", 100.0 * p->tok_s_max / p->roofline_tok_s);
		if (p->bytes_per_step > 0)
			cJSON_AddNumberToObject(r, "bytes_per_step", p->bytes_per_step);
		cJSON_AddNumberToObject(r, "ceiling_before", p->ceiling_before);
		cJSON_AddNumberToObject(r, "ceiling_after", p->ceiling_after);
		cJSON_AddItemToArray(arr, r);
	}
	cJSON_AddNumberToObject(o, "decode_b16_over_b1", ratio);
	char *text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		goto oom;
	puts(text);
	cJSON_free(text);
	return EXIT_OK;
oom_doc:
	cJSON_Delete(o);
oom:
	cli_error("out of memory formatting JSON");
	return EXIT_FAIL;
}

int cmd_bench_engine(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(bench_help, stdout);
		return EXIT_OK;
	}
	bench_args a;
	int ex = parse_bench_args(argc, argv, &a);
	if (ex != EXIT_OK)
		return ex;
	static const size_t batches[] = {1, 4, 16};
	enum { N_BATCHES = sizeof batches / sizeof batches[0], MAX_B = 16 };

	cli_session s;
	cli_session_opts so = {.model_arg = a.model, .n_threads = a.n_threads, .bf16 = a.bf16,
			       .kv_type = a.kv_type,
			       .batch_invariant = a.batch_invariant};
	if ((ex = cli_session_open(&s, &so)) != EXIT_OK)
		return ex;
	ex = EXIT_FAIL;
	bench_ctx b = {.rng = 0x5eedull};
	os_error err = {0};
	const model_config *c = model_get_config(s.m);
	size_t dec_len = a.context + 3 + a.reps * a.decode; /* tokens per decoding sequence */
	if (a.prefill > c->ctx || dec_len > c->ctx) {
		ex = cli_usage_error("bench-engine",
				     "--prefill %zu or --context + --reps x --decode (%zu) exceeds the "
				     "model's context of %zu tokens",
				     a.prefill, dec_len, c->ctx);
		goto done;
	}
	size_t bt = KV_DEFAULT_BLOCK_TOKENS;
	size_t blocks_prefill = (a.prefill + bt - 1) / bt;
	size_t blocks_decode = MAX_B * ((dec_len + bt - 1) / bt);
	b.cap = a.prefill > MAX_B * a.context ? a.prefill : MAX_B * a.context;
	if (b.cap < MAX_B)
		b.cap = MAX_B;
	/* one pass for the whole prefill, as a serving engine would do it */
	if (cli_session_start_engine(&s, blocks_prefill > blocks_decode ? blocks_prefill : blocks_decode,
				     a.prefill > 256 ? a.prefill : 256) != EXIT_OK)
		goto done;
	b.e = s.e;
	b.vocab = model_n_vocab(s.m);
	b.toks = malloc(b.cap * sizeof *b.toks);
	b.pos = malloc(b.cap * sizeof *b.pos);
	b.seqs = malloc(b.cap * sizeof *b.seqs);
	b.want = malloc(b.cap);
	b.logits = malloc(MAX_B * b.vocab * sizeof *b.logits);
	if (!b.toks || !b.pos || !b.seqs || !b.want || !b.logits) {
		cli_error("out of memory");
		goto done;
	}

	/* the machine's ceilings, measured now, on the engine's own threads */
	threadpool *pool = backend_cpu_pool(s.be);
	size_t n_threads = threadpool_n_threads(pool);
	if (!a.json)
		fprintf(stderr, "measuring memory bandwidth and peak FLOP/s on %zu threads...\n",
			n_threads);
	machine_peaks pk = {
		.bw = roofline_read_bandwidth(pool, 0),
		.f32 = roofline_peak_flops(pool, ROOFLINE_F32_FMA),
		.bf16 = roofline_peak_flops(pool, ROOFLINE_BF16_DP),
	};
	/* the AMX set runs BF16 prefill on tiles: that is the instruction its roofline needs */
	bool amx = backend_cpu_kernels(s.be)->isa == CPU_ISA_AMX;
	if (amx)
		pk.amx = roofline_peak_flops(pool, ROOFLINE_BF16_AMX);
	if (pk.bw <= 0) {
		cli_error("cannot measure memory bandwidth (no memory for the 512 MiB test buffer)");
		goto done;
	}
	roofline_kind peak_kind = prefill_peak_kind(s.be, s.m, a.prefill, &pk);
	if (peak_kind == ROOFLINE_I8_AMX || peak_kind == ROOFLINE_I8_DP)
		pk.used = pk.i8 = roofline_peak_flops(pool, peak_kind);
	else
		pk.used = (peak_kind == ROOFLINE_BF16_AMX ? pk.amx
			   : peak_kind == ROOFLINE_BF16_DP ? pk.bf16
							   : pk.f32) /
			  pk.products_per_op;

	bench_point pts[1 + N_BATCHES];
	size_t n_pts = 0;
	if (!a.json)
		fprintf(stderr, "prefill of %zu tokens...\n", a.prefill);
	if (bench_prefill(&b, a.prefill, a.reps, &pts[n_pts], &err) != OS_OK) {
		ex = cli_fail(&err, "prefill failed");
		goto done;
	}
	pts[n_pts].ceiling_before = pk.used; /* probed just now */
	pts[n_pts].ceiling_after = roofline_peak_flops(pool, peak_kind) / pk.products_per_op;
	pts[n_pts].roofline_tok_s = ceiling_of(&pts[n_pts]) * 1e9 /
				    prefill_flops_per_token(c, a.prefill);
	pts[n_pts].bytes_per_step = 0;
	n_pts++;
	double kv_per_tok = (double)cli_session_kv_bytes_per_token(&s);
	double tps_b1 = 0, tps_b16 = 0;
	for (size_t i = 0; i < N_BATCHES; i++) {
		size_t B = batches[i];
		if (!a.json)
			fprintf(stderr, "decode at batch %zu...\n", B);
		double kv_tokens = 0;
		bench_point *p = &pts[n_pts];
		double before = i == 0 ? roofline_read_bandwidth(pool, 0)
				       : pts[n_pts - 1].ceiling_after;
		if (bench_decode(&b, B, a.context, a.decode, a.reps, p, &kv_tokens, &err) != OS_OK) {
			ex = cli_fail(&err, "decode at batch %zu failed", B);
			goto done;
		}
		p->ceiling_before = before; /* after batch 1, the previous phase's after-probe */
		p->ceiling_after = roofline_read_bandwidth(pool, 0);
		p->bytes_per_step = (double)model_step_bytes(s.m) + kv_tokens * kv_per_tok;
		p->roofline_tok_s = (double)B * ceiling_of(p) * 1e9 / p->bytes_per_step;
		if (B == 1)
			tps_b1 = p->tok_s;
		if (B == 16)
			tps_b16 = p->tok_s;
		n_pts++;
	}
	double ratio = tps_b1 > 0 ? tps_b16 / tps_b1 : 0;
	if (a.json) {
		ex = print_json(&a, &s, n_threads, &pk, pts, n_pts, ratio);
	} else {
		print_table(&a, &s, n_threads, &pk, pts, n_pts, ratio);
		ex = EXIT_OK;
	}
done:
	free(b.toks);
	free(b.pos);
	free(b.seqs);
	free(b.want);
	free(b.logits);
	cli_session_close(&s);
	return ex;
}
