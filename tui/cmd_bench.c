/* cmd_bench.c: `optstudio bench MODEL`: a throughput and latency sweep over concurrency
 * levels with the load generator on the engine's continuous batching (core/eval/loadgen.h),
 * run directly (no job system), priced for this machine and projected for the catalog
 * instances (core/eval/price.h), and stored as a benchmark run. A benchmark: it prints
 * figures, it never passes or fails on them. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/eval/loadgen.h"
#include "core/eval/price.h"
#include "core/jobs/results.h"
#include "hub_ops.h"
#include "progress.h"
#include "session.h"
#include "store/store.h"

static const char bench_help[] =
	"usage: optstudio bench MODEL [options]\n"
	"\n"
	"Runs C concurrent clients against MODEL (a hub name or a GGUF file) in this process,\n"
	"for each concurrency level C: --warmup requests first (not measured), then --requests\n"
	"requests, each of --input-tokens prompt tokens cut from a corpus at offsets drawn\n"
	"from --seed, generating exactly --output-tokens tokens (greedy, end-of-text ignored).\n"
	"A client sends its next request as soon as its previous one ends. The engine side is a\n"
	"continuous-batching scheduler: each step admits waiting requests, runs one decode\n"
	"token of every running request and chunks of new prompts in ONE forward call, and\n"
	"retires finished requests at once.\n"
	"\n"
	"Per level: TTFT (submission to first token), ITL (gaps between tokens), client latency\n"
	"(submission to last token) as p50/p90/p99 in ms; output tok/s per request (O / latency);\n"
	"total throughput by DESIGN.md's formula, O / (mean latency s) x C; and the measured\n"
	"aggregate, total output tokens / wall time. Then the blended price for this machine\n"
	"(its $/hour: 'optstudio price --set-local USD_PER_HOUR') and *projected* prices for the\n"
	"catalog instances from a roofline (bytes and FLOPs per token against the instance's\n"
	"bandwidth and compute; see core/eval/price.h). The run is stored; 'optstudio results'\n"
	"lists runs, 'optstudio compare' puts them side by side.\n"
	"\n"
	"options:\n"
	"      --concurrency LIST   levels, e.g. 1,2,4,8,16 (the default)\n"
	"      --input-tokens I     prompt tokens per request (default 128)\n"
	"      --output-tokens O    output tokens per request (default 64)\n"
	"      --requests N         measured requests per level (default: 2 x C, at least 8)\n"
	"      --warmup W           warm-up requests per level (default 2)\n"
	"      --seed S             prompt offsets (default 1234)\n"
	"      --corpus FILE        text the prompts are cut from (default: the data home's\n"
	"                           text/heldout.txt if present, else random token ids)\n"
	"      --instance NAME      the catalog instance this machine is (default 'local')\n"
	"      --discount D         savings-plan discount, 0 <= D < 1 (default 0.26)\n"
	"      --label TEXT         a label for the stored run (e.g. baseline, int4)\n"
	"      --threads N          CPU threads (default: all online CPUs)\n"
	"      --bf16               BF16 weights (default F32)\n"
	"      --kv T               KV cache f32|bf16|fp8|int8 (default: the model\n"
	"                           file's, else f32)\n"
	"      --batch-invariant    kernels that give a token the same bits in any\n"
	"                           batch (optstudio(1))\n"
	"      --step-tokens N      tokens per engine step, decodes + prefill chunks (default 256)\n"
	"      --whole-prefill      admit prompts only whole, never in chunks\n"
	"      --no-store           do not store the run\n"
	"      --json               print a JSON object instead of the tables\n";

#define MAX_LEVELS 32

typedef struct bench_args {
	const char *model;
	size_t levels[MAX_LEVELS];
	size_t n_levels;
	size_t input_tokens, output_tokens;
	size_t requests;           /* 0: 2 x C, at least 8 */
	size_t warmup;
	size_t seed;
	const char *corpus;
	const char *instance;
	double discount;
	const char *label;
	size_t n_threads;
	bool bf16;
	int kv_type; /* enum engine_kv_type; 0 = the model's */
	bool batch_invariant;
	size_t step_tokens;
	bool whole_prefill;
	bool no_store;
	bool json;
} bench_args;

enum { OPT_CONC = 256, OPT_IN, OPT_OUT, OPT_REQ, OPT_WARM, OPT_SEED, OPT_CORPUS, OPT_INSTANCE,
       OPT_DISCOUNT, OPT_LABEL, OPT_THREADS, OPT_BF16, OPT_KV, OPT_BATCH_INVARIANT, OPT_STEP, OPT_WHOLE, OPT_NO_STORE,
       OPT_JSON };

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* "1,2,4" -> levels, ascending; false on a bad or repeated entry. */
static bool parse_levels(const char *s, bench_args *a)
{
	a->n_levels = 0;
	const char *p = s;
	while (*p) {
		const char *q = strchr(p, ',');
		size_t len = q ? (size_t)(q - p) : strlen(p);
		char buf[32];
		if (len == 0 || len >= sizeof buf || a->n_levels == MAX_LEVELS)
			return false;
		memcpy(buf, p, len);
		buf[len] = '\0';
		size_t v;
		if (!cli_parse_size(buf, &v) || v < 1 || v > 1024)
			return false;
		for (size_t i = 0; i < a->n_levels; i++)
			if (a->levels[i] == v)
				return false;
		a->levels[a->n_levels++] = v;
		p += len + (q ? 1 : 0);
		if (q && !*p)
			return false;
	}
	qsort(a->levels, a->n_levels, sizeof a->levels[0], cmp_size);
	return a->n_levels > 0;
}

static int parse_bench_args(int argc, char **argv, bench_args *a)
{
	static const struct option long_opts[] = {
		{"concurrency", required_argument, NULL, OPT_CONC},
		{"input-tokens", required_argument, NULL, OPT_IN},
		{"output-tokens", required_argument, NULL, OPT_OUT},
		{"requests", required_argument, NULL, OPT_REQ},
		{"warmup", required_argument, NULL, OPT_WARM},
		{"seed", required_argument, NULL, OPT_SEED},
		{"corpus", required_argument, NULL, OPT_CORPUS},
		{"instance", required_argument, NULL, OPT_INSTANCE},
		{"discount", required_argument, NULL, OPT_DISCOUNT},
		{"label", required_argument, NULL, OPT_LABEL},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"bf16", no_argument, NULL, OPT_BF16},
		{"kv", required_argument, NULL, OPT_KV},
		{"batch-invariant", no_argument, NULL, OPT_BATCH_INVARIANT},
		{"step-tokens", required_argument, NULL, OPT_STEP},
		{"whole-prefill", no_argument, NULL, OPT_WHOLE},
		{"no-store", no_argument, NULL, OPT_NO_STORE},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof *a);
	const size_t def_levels[] = {1, 2, 4, 8, 16};
	memcpy(a->levels, def_levels, sizeof def_levels);
	a->n_levels = 5;
	a->input_tokens = 128;
	a->output_tokens = 64;
	a->warmup = 2;
	a->seed = 1234;
	a->instance = STORE_LOCAL_INSTANCE;
	a->discount = PRICE_DEFAULT_DISCOUNT;
	a->step_tokens = 256;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		size_t *target = NULL;
		size_t lo = 1, hi = 1u << 20;
		switch (c) {
		case OPT_CONC:
			if (!parse_levels(optarg, a))
				return cli_usage_error("bench",
						       "--concurrency wants distinct levels in 1..1024 "
						       "separated by commas (e.g. 1,2,4,8,16), got '%s'",
						       optarg);
			continue;
		case OPT_IN:
			target = &a->input_tokens;
			break;
		case OPT_OUT:
			target = &a->output_tokens;
			break;
		case OPT_REQ:
			target = &a->requests;
			break;
		case OPT_WARM:
			target = &a->warmup, lo = 0;
			break;
		case OPT_SEED:
			target = &a->seed, lo = 0, hi = SIZE_MAX;
			break;
		case OPT_THREADS:
			target = &a->n_threads, hi = 1024;
			break;
		case OPT_STEP:
			target = &a->step_tokens, hi = 65536;
			break;
		case OPT_CORPUS:
			a->corpus = optarg;
			continue;
		case OPT_INSTANCE:
			a->instance = optarg;
			continue;
		case OPT_LABEL:
			a->label = optarg;
			continue;
		case OPT_DISCOUNT: {
			float d;
			if (!cli_parse_float(optarg, &d) || d < 0 || d >= 1)
				return cli_usage_error("bench", "--discount wants 0 <= D < 1, got '%s'", optarg);
			a->discount = strtod(optarg, NULL);
			continue;
		}
		case OPT_BF16:
			a->bf16 = true;
			continue;
		case OPT_BATCH_INVARIANT:
			a->batch_invariant = true;
			continue;
		case OPT_KV:
			if (!cli_parse_kv_type(optarg, &a->kv_type))
				return cli_usage_error("bench", "--kv wants f32, bf16, fp8 or int8, got '%s'",
						       optarg);
			continue;
		case OPT_WHOLE:
			a->whole_prefill = true;
			continue;
		case OPT_NO_STORE:
			a->no_store = true;
			continue;
		case OPT_JSON:
			a->json = true;
			continue;
		case '?':
			return cli_option_error("bench", opt, optopt);
		default:
			return cli_option_error("bench", opt, 0);
		}
		if (!cli_parse_size(optarg, target) || *target < lo || *target > hi)
			return cli_usage_error("bench", "%s wants a number in %zu..%zu, got '%s'", opt, lo,
					       hi, optarg);
	}
	int n_pos = argc - optind;
	if (n_pos == 0)
		return cli_usage_error("bench", "missing MODEL (a hub name or a GGUF file)");
	if (n_pos > 1)
		return cli_usage_error("bench", "unexpected argument '%s'", argv[optind + 1]);
	a->model = argv[optind];
	return EXIT_OK;
}

static size_t level_requests(const bench_args *a, size_t C)
{
	if (a->requests)
		return a->requests;
	return 2 * C < 8 ? 8 : 2 * C;
}

/* Reads and tokenizes a text file into *toks; prints its own errors. */
static int corpus_from_text(const char *path, const tokenizer *tok, int32_t **toks, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		cli_error("cannot read corpus '%s': %s", path, strerror(errno));
		return EXIT_FAIL;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + len, 1, cap - 1 - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int bad = !buf ? ENOMEM : ferror(f) ? EIO : 0;
	fclose(f);
	if (bad) {
		free(buf);
		cli_error("cannot read corpus '%s': %s", path, strerror(bad));
		return EXIT_FAIL;
	}
	os_error err = {0};
	int rc = tokenizer_encode(tok, buf, len, false, false, toks, n, &err);
	free(buf);
	if (rc)
		return cli_fail(&err, "cannot tokenize corpus '%s'", path);
	if (*n == 0) {
		free(*toks);
		*toks = NULL;
		cli_error("corpus '%s' is empty", path);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Random token ids from the seed: a corpus when no text is at hand. */
static int corpus_random(size_t vocab, uint64_t seed, size_t n, int32_t **toks)
{
	*toks = malloc(n * sizeof **toks);
	if (!*toks) {
		cli_error("out of memory making a corpus of %zu tokens", n);
		return EXIT_FAIL;
	}
	uint64_t st = seed * 6364136223846793005ull + 1;
	for (size_t i = 0; i < n; i++) {
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		(*toks)[i] = (int32_t)((st >> 33) % vocab);
	}
	return EXIT_OK;
}

typedef struct bench_progress {
	progress *bar;
} bench_progress;

static void on_progress(void *ctx, size_t done, size_t total)
{
	bench_progress *p = ctx;
	(void)total;
	progress_update(p->bar, done);
}

/* One projected instance. */
typedef struct projected {
	store_instance *it;
	price_projection p[MAX_LEVELS];
	double usd_1m[MAX_LEVELS];    /* NAN when the instance has no price */
} projected;

/* "$0.3643", or "$0.000214" for small figures, into buf. */
static void format_usd(double v, char *buf, size_t len)
{
	if (!isfinite(v))
		snprintf(buf, len, "n/a");
	else if (v >= 0.01 || v == 0)
		snprintf(buf, len, "$%.4f", v);
	else
		snprintf(buf, len, "$%#.3g", v);
}

static void print_header(void)
{
	printf("%5s %5s %4s | %28s | %25s | %28s | %8s | %21s\n", "", "", "", "TTFT ms", "ITL ms",
	       "latency ms", "tok/s", "total tok/s");
	printf("%5s %5s %4s | %8s %9s %9s | %7s %8s %8s | %8s %9s %9s | %8s | %10s %10s\n", "C",
	       "reqs", "errs", "p50", "p90", "p99", "p50", "p90", "p99", "p50", "p90", "p99", "/req p50",
	       "formula", "measured");
}

static void print_level(const loadgen_level *l)
{
	printf("%5zu %5zu %4zu | %8.1f %9.1f %9.1f | %7.2f %8.2f %8.2f | %8.1f %9.1f %9.1f | %8.2f | "
	       "%10.1f %10.1f\n",
	       l->concurrency, l->n_requests, l->n_errors, l->ttft_ms.p50, l->ttft_ms.p90,
	       l->ttft_ms.p99, l->itl_ms.p50, l->itl_ms.p90, l->itl_ms.p99, l->latency_ms.p50,
	       l->latency_ms.p90, l->latency_ms.p99, l->tok_s_per_request.p50, l->total_tok_s,
	       l->measured_tok_s);
	fflush(stdout);
}

static cJSON *summary_json(const metrics_summary *s)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	const double v[] = {s->p50, s->p90, s->p99, s->mean, s->min, s->max};
	const char *k[] = {"p50", "p90", "p99", "mean", "min", "max"};
	for (int i = 0; i < 6; i++) {
		if (isfinite(v[i]))
			cJSON_AddNumberToObject(o, k[i], v[i]);
		else
			cJSON_AddNullToObject(o, k[i]);
	}
	cJSON_AddNumberToObject(o, "n", (double)s->n);
	return o;
}

static void add_num_or_null(cJSON *o, const char *k, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

/* The run's settings, stored in bench_runs.config. */
static char *config_json(const bench_args *a, const cli_session *s, const char *corpus_desc,
			 const loadgen_level *lv, size_t n_lv, const price_workload *w)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON *lvls = cJSON_AddArrayToObject(o, "concurrency");
	for (size_t i = 0; i < a->n_levels; i++)
		cJSON_AddItemToArray(lvls, cJSON_CreateNumber((double)a->levels[i]));
	cJSON_AddNumberToObject(o, "requests", (double)a->requests);
	cJSON_AddNumberToObject(o, "warmup", (double)a->warmup);
	cJSON_AddNumberToObject(o, "discount", a->discount);
	cJSON_AddNumberToObject(o, "threads", (double)a->n_threads);
	cJSON_AddStringToObject(o, "weight_format", be_wfmt_name(model_weight_format(s->m)));
	cJSON_AddStringToObject(o, "kv_cache", be_kvfmt_name(s->kv_fmt));
	cJSON_AddBoolToObject(o, "batch_invariant", a->batch_invariant);
	cJSON_AddNumberToObject(o, "step_tokens", (double)a->step_tokens);
	cJSON_AddStringToObject(o, "prefill", a->whole_prefill ? "whole" : "chunked");
	cJSON_AddStringToObject(o, "corpus", corpus_desc);
	cJSON_AddStringToObject(o, "model_path", s->path);
	cJSON_AddNumberToObject(o, "n_params", w->n_params);
	cJSON_AddNumberToObject(o, "step_bytes", w->step_bytes);
	cJSON_AddNumberToObject(o, "kv_bytes_per_pos", w->kv_bytes_per_pos);
	cJSON_AddNumberToObject(o, "load_seconds", s->load_s);
	cJSON *ml = cJSON_AddObjectToObject(o, "latency_mean_ms");
	for (size_t i = 0; i < n_lv; i++) {
		char k[32];
		snprintf(k, sizeof k, "%zu", lv[i].concurrency);
		add_num_or_null(ml, k, lv[i].latency_ms.mean);
	}
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* Stores the run; *run_id gets its id. Prints its own error. */
static int store_run(store *st, const bench_args *a, const char *config, const loadgen_level *lv,
		     size_t n_lv, int64_t *run_id)
{
	store_bench_point pts[MAX_LEVELS];
	for (size_t i = 0; i < n_lv; i++)
		results_point_from_level(&lv[i], &pts[i]);
	store_model m = {0};
	os_error err = {0};
	int64_t model_id = 0;
	if (store_model_get(st, a->model, &m, &err) == OS_OK)
		model_id = m.id;
	store_model_clear(&m);
	store_bench_run r = {
		.model_id = model_id,
		.model_name = (char *)a->model,
		.label = (char *)a->label,
		.backend = "cpu",
		.instance_name = (char *)a->instance,
		.input_tokens = (int64_t)a->input_tokens,
		.output_tokens = (int64_t)a->output_tokens,
		.seed = (int64_t)a->seed,
		.config = (char *)config,
		.points = pts,
		.n_points = n_lv,
	};
	if (store_bench_run_insert(st, &r, run_id, &err))
		return cli_fail(&err, "cannot store the benchmark run");
	return EXIT_OK;
}

int cmd_bench(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(bench_help, stdout);
		return EXIT_OK;
	}
	bench_args a;
	int ex = parse_bench_args(argc, argv, &a);
	if (ex != EXIT_OK)
		return ex;
	store *st = NULL;
	os_error err = {0};
	cli_session s;
	memset(&s, 0, sizeof s);
	int32_t *corpus = NULL;
	size_t n_corpus = 0;
	loadgen_engine_target *tg = NULL;
	store_instance here = {0};
	store_instance *cat = NULL;
	size_t n_cat = 0;
	projected *proj = NULL;
	size_t n_proj = 0;
	loadgen_level lv[MAX_LEVELS];
	size_t n_lv = 0;
	char *config = NULL;
	cJSON *jo = NULL;
	char corpus_desc[4200];
	ex = EXIT_FAIL;

	/* the store first: the instance must exist before minutes of benchmarking */
	if (hub_open(&st, &err)) {
		ex = cli_fail(&err, "cannot open the hub");
		goto done;
	}
	if (store_instance_get(st, a.instance, &here, &err)) {
		ex = cli_fail(&err, "cannot price on instance '%s'", a.instance);
		goto done;
	}
	cli_session_opts so = {.model_arg = a.model, .n_threads = a.n_threads, .bf16 = a.bf16,
			       .kv_type = a.kv_type,
			       .batch_invariant = a.batch_invariant};
	if ((ex = cli_session_open(&s, &so)) != EXIT_OK)
		goto done;
	ex = EXIT_FAIL;

	/* the corpus */
	char heldout[4096];
	snprintf(heldout, sizeof heldout, "%s/text/heldout.txt", store_home(st));
	struct stat sb;
	const char *text = a.corpus ? a.corpus : stat(heldout, &sb) == 0 ? heldout : NULL;
	if (text) {
		if (corpus_from_text(text, s.tok, &corpus, &n_corpus) != EXIT_OK)
			goto done;
		snprintf(corpus_desc, sizeof corpus_desc, "%s", text);
	} else {
		n_corpus = 65536;
		if (corpus_random(model_n_vocab(s.m), a.seed, n_corpus, &corpus) != EXIT_OK)
			goto done;
		snprintf(corpus_desc, sizeof corpus_desc, "random token ids (seed %zu)", a.seed);
	}

	/* the engine: KV for every client's whole sequence at the highest level */
	size_t C_max = a.levels[a.n_levels - 1];
	size_t n_pos = a.input_tokens + a.output_tokens - 1;
	size_t kv_blocks = C_max * ((n_pos + KV_DEFAULT_BLOCK_TOKENS - 1) / KV_DEFAULT_BLOCK_TOKENS);
	if (cli_session_start_engine(&s, kv_blocks, a.step_tokens) != EXIT_OK)
		goto done;
	loadgen_engine_opts eo = {.max_running = C_max, .step_tokens = a.step_tokens,
				  .whole_prefill = a.whole_prefill};
	if (loadgen_engine_target_new(&tg, s.e, &eo, &err)) {
		ex = cli_fail(&err, "cannot start the load generator");
		goto done;
	}
	loadgen_target it = loadgen_engine_target_iface(tg);

	if (!a.json) {
		printf("bench %s: %s weights, %s KV cache, %zu input + %zu output tokens a request, "
		       "%s prefill, corpus %s\n\n",
		       a.model, be_wfmt_name(model_weight_format(s.m)), be_kvfmt_name(s.kv_fmt),
		       a.input_tokens, a.output_tokens,
		       a.whole_prefill ? "whole" : "chunked", corpus_desc);
		print_header();
	}
	for (size_t i = 0; i < a.n_levels; i++) {
		size_t C = a.levels[i], N = level_requests(&a, C);
		char label[64];
		snprintf(label, sizeof label, "bench C=%zu", C);
		bench_progress bp = {.bar = progress_new(label, "req", N, false, stderr)};
		progress_update(bp.bar, 0);
		loadgen_opts o = {.concurrency = C, .n_requests = N, .n_warmup = a.warmup,
				  .input_tokens = a.input_tokens, .output_tokens = a.output_tokens,
				  .seed = a.seed, .corpus = corpus, .n_corpus = n_corpus,
				  .progress = on_progress, .cb_ctx = &bp};
		int rc = loadgen_run_level(&it, &o, &lv[n_lv], &err);
		progress_finish(bp.bar);
		if (rc) {
			ex = cli_fail(&err, "benchmark of '%s' at concurrency %zu failed", a.model, C);
			goto done;
		}
		if (!a.json)
			print_level(&lv[n_lv]);
		n_lv++;
	}

	/* prices: this machine measured, the catalog projected */
	const model_config *mc = model_get_config(s.m);
	price_workload w = {
		.step_bytes = (double)model_step_bytes(s.m),
		.kv_bytes_per_pos = (double)cli_session_kv_bytes_per_token(&s),
		.n_params = (double)model_n_params(s.m),
		.input_tokens = (double)a.input_tokens,
		.output_tokens = (double)a.output_tokens,
	};
	(void)mc;
	double usd_1m[MAX_LEVELS];
	for (size_t i = 0; i < n_lv; i++)
		if (here.usd_per_hour <= 0 || lv[i].total_tok_s <= 0 ||
		    price_blended_per_1m(here.usd_per_hour, a.discount, lv[i].total_tok_s, &usd_1m[i],
					 NULL))
			usd_1m[i] = NAN;
	if (store_instance_list(st, &cat, &n_cat, &err)) {
		ex = cli_fail(&err, "cannot read the instance catalog");
		goto done;
	}
	proj = calloc(n_cat ? n_cat : 1, sizeof *proj);
	if (!proj) {
		cli_error("out of memory");
		goto done;
	}
	for (size_t k = 0; k < n_cat; k++) {
		store_instance *ci = &cat[k];
		if (ci->is_local || ci->n_gpus < 1 || ci->mem_bandwidth_gbps <= 0 || ci->bf16_tflops <= 0)
			continue;
		projected *p = &proj[n_proj];
		p->it = ci;
		price_instance pi = {(double)ci->n_gpus, ci->mem_bandwidth_gbps, ci->bf16_tflops,
				     ci->usd_per_hour};
		bool ok = true;
		for (size_t i = 0; i < n_lv && ok; i++)
			ok = price_project_instance(&w, &pi, a.discount, lv[i].concurrency, &p->p[i],
						    &p->usd_1m[i], NULL) == OS_OK;
		if (ok)
			n_proj++;
	}

	config = config_json(&a, &s, corpus_desc, lv, n_lv, &w);
	int64_t run_id = 0;
	if (!a.no_store) {
		if (!config) {
			cli_error("out of memory");
			goto done;
		}
		if (store_run(st, &a, config, lv, n_lv, &run_id) != EXIT_OK)
			goto done;
	}

	if (!a.json) {
		if (n_lv > 1 && lv[0].total_tok_s > 0)
			printf("\ntotal throughput at C=%zu vs C=%zu: %.2fx (formula), %.2fx (measured)\n",
			       lv[n_lv - 1].concurrency, lv[0].concurrency,
			       lv[n_lv - 1].total_tok_s / lv[0].total_tok_s,
			       lv[0].measured_tok_s > 0 ? lv[n_lv - 1].measured_tok_s / lv[0].measured_tok_s
							: NAN);
		printf("\nprice on '%s'", a.instance);
		if (here.usd_per_hour > 0) {
			printf(" at $%.4g/hour, %.4g%% discount (measured):\n", here.usd_per_hour,
			       a.discount * 100);
			for (size_t i = 0; i < n_lv; i++)
				if (isfinite(usd_1m[i])) {
					char usd[32];
					format_usd(usd_1m[i], usd, sizeof usd);
					printf("  C=%-4zu %10.1f tok/s   %s per 1M tokens\n",
					       lv[i].concurrency, lv[i].total_tok_s, usd);
				}
		} else if (here.is_local) {
			printf(": this machine has no price; set it with 'optstudio price --set-local "
			       "USD_PER_HOUR'\n");
		} else {
			printf(": the catalog has no price for it\n");
		}
		printf("  formula: %s\n", price_formula());
		if (n_proj) {
			size_t L = n_lv - 1;
			printf("\nprojected on catalog instances at C=%zu (roofline: %.1f MB read a step, "
			       "2 x %.1fM params FLOPs a token, ideal scaling over the GPUs; an upper "
			       "bound, not a measurement):\n",
			       lv[L].concurrency, w.step_bytes / 1e6, w.n_params / 1e6);
			printf("  %-18s %-14s %4s %9s %18s %22s %8s\n", "instance", "GPU", "GPUs", "$/hour",
			       "projected tok/s", "projected $/1M tokens", "bound");
			for (size_t k = 0; k < n_proj; k++) {
				const projected *p = &proj[k];
				char usd[32];
				format_usd(p->usd_1m[L], usd, sizeof usd);
				printf("  %-18s %-14.14s %4lld %9.2f %18.0f %22s %8s\n", p->it->name,
				       p->it->gpu_model, (long long)p->it->n_gpus, p->it->usd_per_hour,
				       p->p[L].tok_s, usd, p->p[L].compute_bound ? "compute" : "memory");
			}
		}
		if (!a.no_store)
			printf("\nstored as run %lld ('optstudio results', 'optstudio compare %lld ...')\n",
			       (long long)run_id, (long long)run_id);
		ex = EXIT_OK;
		goto done;
	}

	/* JSON */
	jo = cJSON_CreateObject();
	if (!jo)
		goto oom;
	if (a.no_store)
		cJSON_AddNullToObject(jo, "run_id");
	else
		cJSON_AddNumberToObject(jo, "run_id", (double)run_id);
	cJSON_AddStringToObject(jo, "model", a.model);
	cJSON_AddStringToObject(jo, "model_path", s.path);
	if (a.label)
		cJSON_AddStringToObject(jo, "label", a.label);
	cJSON_AddStringToObject(jo, "weight_format", be_wfmt_name(model_weight_format(s.m)));
	cJSON_AddStringToObject(jo, "kv_cache", be_kvfmt_name(s.kv_fmt));
	cJSON_AddBoolToObject(jo, "batch_invariant", a.batch_invariant);
	cJSON_AddNumberToObject(jo, "input_tokens", (double)a.input_tokens);
	cJSON_AddNumberToObject(jo, "output_tokens", (double)a.output_tokens);
	cJSON_AddNumberToObject(jo, "warmup", (double)a.warmup);
	cJSON_AddNumberToObject(jo, "seed", (double)a.seed);
	cJSON_AddStringToObject(jo, "prefill", a.whole_prefill ? "whole" : "chunked");
	cJSON_AddStringToObject(jo, "corpus", corpus_desc);
	cJSON *levels = cJSON_AddArrayToObject(jo, "levels");
	for (size_t i = 0; i < n_lv; i++) {
		const loadgen_level *l = &lv[i];
		cJSON *o = cJSON_CreateObject();
		if (!o)
			goto oom;
		cJSON_AddItemToArray(levels, o);
		cJSON_AddNumberToObject(o, "concurrency", (double)l->concurrency);
		cJSON_AddNumberToObject(o, "requests", (double)l->n_requests);
		cJSON_AddNumberToObject(o, "errors", (double)l->n_errors);
		cJSON_AddItemToObject(o, "ttft_ms", summary_json(&l->ttft_ms));
		cJSON_AddItemToObject(o, "itl_ms", summary_json(&l->itl_ms));
		cJSON_AddItemToObject(o, "latency_ms", summary_json(&l->latency_ms));
		cJSON_AddItemToObject(o, "tok_s_per_request", summary_json(&l->tok_s_per_request));
		cJSON_AddNumberToObject(o, "total_tok_s", l->total_tok_s);
		cJSON_AddNumberToObject(o, "measured_tok_s", l->measured_tok_s);
		cJSON_AddNumberToObject(o, "output_tokens_total", (double)l->total_output_tokens);
		cJSON_AddNumberToObject(o, "wall_s", l->wall_s);
		cJSON_AddNumberToObject(o, "max_in_flight", (double)l->max_in_flight);
		add_num_or_null(o, "blended_usd_per_1m", usd_1m[i]);
	}
	cJSON *pr = cJSON_AddObjectToObject(jo, "price");
	cJSON_AddStringToObject(pr, "instance", a.instance);
	add_num_or_null(pr, "usd_per_hour", here.usd_per_hour > 0 ? here.usd_per_hour : NAN);
	cJSON_AddNumberToObject(pr, "discount", a.discount);
	cJSON_AddStringToObject(pr, "formula", price_formula());
	cJSON_AddBoolToObject(pr, "measured", 1);
	cJSON *pj = cJSON_AddObjectToObject(jo, "projected");
	cJSON_AddStringToObject(pj, "label", "projected");
	cJSON_AddStringToObject(pj, "model",
				"roofline: tok/s = min(C x bandwidth / (step_bytes + C x kv_bytes_per_pos "
				"x (I + O/2)), compute / (2 x params x (I + O) / O))");
	cJSON_AddNumberToObject(pj, "step_bytes", w.step_bytes);
	cJSON_AddNumberToObject(pj, "kv_bytes_per_pos", w.kv_bytes_per_pos);
	cJSON_AddNumberToObject(pj, "n_params", w.n_params);
	cJSON *insts = cJSON_AddArrayToObject(pj, "instances");
	for (size_t k = 0; k < n_proj; k++) {
		const projected *p = &proj[k];
		cJSON *o = cJSON_CreateObject();
		if (!o)
			goto oom;
		cJSON_AddItemToArray(insts, o);
		cJSON_AddStringToObject(o, "instance", p->it->name);
		cJSON_AddStringToObject(o, "gpu_model", p->it->gpu_model);
		cJSON_AddNumberToObject(o, "n_gpus", (double)p->it->n_gpus);
		cJSON_AddNumberToObject(o, "usd_per_hour", p->it->usd_per_hour);
		cJSON *pl = cJSON_AddArrayToObject(o, "levels");
		for (size_t i = 0; i < n_lv; i++) {
			cJSON *q = cJSON_CreateObject();
			if (!q)
				goto oom;
			cJSON_AddItemToArray(pl, q);
			cJSON_AddNumberToObject(q, "concurrency", (double)lv[i].concurrency);
			cJSON_AddNumberToObject(q, "projected_tok_s", p->p[i].tok_s);
			add_num_or_null(q, "projected_blended_usd_per_1m", p->usd_1m[i]);
			cJSON_AddStringToObject(q, "bound", p->p[i].compute_bound ? "compute" : "memory");
		}
	}
	char *out = cJSON_Print(jo);
	if (!out)
		goto oom;
	puts(out);
	cJSON_free(out);
	ex = EXIT_OK;
	goto done;
oom:
	cli_error("out of memory formatting JSON");
	ex = EXIT_FAIL;
done:
	cJSON_Delete(jo);
	cJSON_free(config);
	free(proj);
	store_instance_list_free(cat, n_cat);
	store_instance_clear(&here);
	loadgen_engine_target_free(tg);
	free(corpus);
	cli_session_close(&s);
	store_close(st);
	return ex;
}
