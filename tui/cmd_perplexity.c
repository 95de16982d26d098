/* cmd_perplexity.c: `optstudio perplexity MODEL FILE`: the model's perplexity over a text
 * file, computed as llama.cpp's perplexity tool does (core/eval/perplexity.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/cpu/backend_cpu.h"
#include "core/eval/perplexity.h"
#include "progress.h"
#include "session.h"

static const char perplexity_help[] =
	"usage: optstudio perplexity MODEL FILE [options]\n"
	"\n"
	"Perplexity of MODEL (a hub name or a GGUF file) over the text in FILE, as llama.cpp's\n"
	"perplexity tool computes it: the tokenized text is cut into chunks of --ctx tokens,\n"
	"each chunk is a fresh sequence (its first token replaced by BOS when the model wants\n"
	"one), and the second half of each chunk is scored, so every scored token has at least\n"
	"ctx/2 tokens of context. Prints ppl +/- its standard error, tokens scored and time.\n"
	"\n"
	"options:\n"
	"      --ctx N       tokens per chunk (default 512)\n"
	"      --chunks K    run at most K chunks (default: every whole chunk of the text)\n"
	"      --score-all   score every position of a chunk, not only the second half (a\n"
	"                    lower figure, not comparable with llama.cpp's)\n"
	"      --threads N   CPU threads (default: all online CPUs)\n"
	"      --bf16        run with BF16 weights (default F32)\n"
	"      --kv T        KV cache f32|bf16|fp8|int8 (default: the model\n"
	"                    file's, else f32)\n"
	"      --batch-invariant  kernels that give a token the same bits in any batch\n"
	"                    (optstudio(1))\n"
	"      --json        print a JSON object: perplexity, perplexity_stderr, mean_nll,\n"
	"                    tokens_scored, chunks, ctx, text_tokens, seconds, tok_s, ...\n";

typedef struct ppl_args {
	const char *model;
	const char *file;
	size_t ctx;
	size_t chunks;
	size_t n_threads;
	bool score_all;
	bool bf16;
	int kv_type; /* enum engine_kv_type; 0 = the model's */
	bool batch_invariant;
	bool json;
} ppl_args;

enum { OPT_CTX = 256, OPT_CHUNKS, OPT_SCORE_ALL, OPT_THREADS, OPT_BF16, OPT_KV, OPT_BATCH_INVARIANT, OPT_JSON };

static int parse_ppl_args(int argc, char **argv, ppl_args *a)
{
	static const struct option long_opts[] = {
		{"ctx", required_argument, NULL, OPT_CTX},
		{"chunks", required_argument, NULL, OPT_CHUNKS},
		{"score-all", no_argument, NULL, OPT_SCORE_ALL},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"bf16", no_argument, NULL, OPT_BF16},
		{"kv", required_argument, NULL, OPT_KV},
		{"batch-invariant", no_argument, NULL, OPT_BATCH_INVARIANT},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof *a);
	a->ctx = 512;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (c) {
		case OPT_CTX:
			if (!cli_parse_size(optarg, &a->ctx) || a->ctx < 2 || a->ctx > (1u << 20))
				return cli_usage_error("perplexity", "--ctx wants a token count >= 2, got '%s'",
						       optarg);
			break;
		case OPT_CHUNKS:
			if (!cli_parse_size(optarg, &a->chunks) || a->chunks == 0)
				return cli_usage_error("perplexity", "--chunks wants a count >= 1, got '%s'",
						       optarg);
			break;
		case OPT_SCORE_ALL:
			a->score_all = true;
			break;
		case OPT_THREADS:
			if (!cli_parse_size(optarg, &a->n_threads) || a->n_threads == 0 ||
			    a->n_threads > 1024)
				return cli_usage_error("perplexity",
						       "--threads wants a count in 1..1024, got '%s'", optarg);
			break;
		case OPT_BF16:
			a->bf16 = true;
			break;
		case OPT_BATCH_INVARIANT:
			a->batch_invariant = true;
			break;
		case OPT_KV:
			if (!cli_parse_kv_type(optarg, &a->kv_type))
				return cli_usage_error("perplexity", "--kv wants f32, bf16, fp8 or int8, got '%s'",
						       optarg);
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case '?':
			return cli_option_error("perplexity", opt, optopt);
		default:
			return cli_option_error("perplexity", opt, 0);
		}
	}
	int n_pos = argc - optind;
	if (n_pos < 2)
		return cli_usage_error("perplexity", n_pos ? "missing FILE (the text to score)"
							   : "missing MODEL and FILE");
	if (n_pos > 2)
		return cli_usage_error("perplexity", "unexpected argument '%s'", argv[optind + 2]);
	a->model = argv[optind];
	a->file = argv[optind + 1];
	return EXIT_OK;
}

/* The progress callback: tokens through the model so far. */
typedef struct ppl_progress {
	progress *bar;
	size_t ctx;
} ppl_progress;

static void on_chunk(void *ctx, size_t done, size_t n_chunks, double running_ppl)
{
	ppl_progress *p = ctx;
	progress_update(p->bar, done * p->ctx);
}

static int print_result(const ppl_args *a, const cli_session *s, const perplexity_result *r,
			size_t n_text_tokens)
{
	double tok_s = r->seconds > 0 ? (double)r->n_tokens_run / r->seconds : 0;
	const char *scoring = a->score_all ? "all" : "second_half";
	const char *wfmt = be_wfmt_name(model_weight_format(s->m));
	if (!a->json) {
		printf("perplexity: %.4f +/- %.4f (mean NLL %.4f nats) over %zu tokens scored\n",
		       r->ppl, r->ppl_stderr, r->mean_nll, r->n_scored);
		printf("  %zu chunks of %zu tokens (%s scored), %zu tokens in the text, %s weights\n",
		       r->n_chunks, a->ctx, a->score_all ? "every position" : "second half", n_text_tokens,
		       wfmt);
		printf("  %.2f s, %.1f tok/s through the model\n", r->seconds, tok_s);
		fflush(stdout);
		return ferror(stdout) ? EXIT_FAIL : EXIT_OK;
	}
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return cli_print_json(NULL);
	cJSON_AddNumberToObject(o, "perplexity", r->ppl);
	cJSON_AddNumberToObject(o, "perplexity_stderr", r->ppl_stderr);
	cJSON_AddNumberToObject(o, "mean_nll", r->mean_nll);
	cJSON_AddNumberToObject(o, "tokens_scored", (double)r->n_scored);
	cJSON_AddNumberToObject(o, "chunks", (double)r->n_chunks);
	cJSON_AddNumberToObject(o, "ctx", (double)a->ctx);
	cJSON_AddStringToObject(o, "scoring", scoring);
	cJSON_AddNumberToObject(o, "text_tokens", (double)n_text_tokens);
	cJSON_AddNumberToObject(o, "seconds", r->seconds);
	cJSON_AddNumberToObject(o, "tok_s", tok_s);
	cJSON_AddStringToObject(o, "weight_format", wfmt);
	cJSON_AddStringToObject(o, "model", s->path);
	cJSON_AddStringToObject(o, "file", a->file);
	return cli_print_json(o);
}

int cmd_perplexity(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(perplexity_help, stdout);
		return EXIT_OK;
	}
	ppl_args a;
	int ex = parse_ppl_args(argc, argv, &a);
	if (ex != EXIT_OK)
		return ex;
	char *text = NULL;
	size_t text_len = 0;
	/* the text first: a bad path should not cost a model load */
	if ((ex = cli_read_text(a.file, &text, &text_len)) != EXIT_OK)
		return ex;

	cli_session s;
	cli_session_opts so = {.model_arg = a.model, .n_threads = a.n_threads, .bf16 = a.bf16,
			       .kv_type = a.kv_type,
			       .batch_invariant = a.batch_invariant};
	if ((ex = cli_session_open(&s, &so)) != EXIT_OK) {
		free(text);
		return ex;
	}
	int32_t *toks = NULL;
	size_t n_toks = 0;
	progress *bar = NULL;
	os_error err = {0};
	ex = EXIT_FAIL;
	const model_config *c = model_get_config(s.m);
	if (a.ctx > c->ctx) {
		ex = cli_usage_error("perplexity", "--ctx %zu exceeds the model's context of %zu tokens",
				     a.ctx, c->ctx);
		goto done;
	}
	if (tokenizer_encode(s.tok, text, text_len, false, false, &toks, &n_toks, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot tokenize '%s'", a.file);
		goto done;
	}
	size_t n_chunks = perplexity_n_chunks(n_toks, a.ctx, a.chunks);
	if (n_chunks == 0) {
		cli_error("text '%s' is too short: %zu tokens, and one chunk needs --ctx %zu; use a "
			  "longer text or a smaller --ctx",
			  a.file, n_toks, a.ctx);
		goto done;
	}
	if (cli_session_start_engine(&s, (a.ctx + KV_DEFAULT_BLOCK_TOKENS - 1) / KV_DEFAULT_BLOCK_TOKENS,
				     0) != EXIT_OK)
		goto done;
	bar = progress_new("perplexity", "tok", n_chunks * a.ctx, false, stderr);
	progress_update(bar, 0); /* the empty bar at once on a terminal */
	ppl_progress pp = {.bar = bar, .ctx = a.ctx};
	perplexity_opts po = {
		.ctx = a.ctx,
		.max_chunks = a.chunks,
		.score_all = a.score_all,
		.bos = tokenizer_add_bos(s.tok) ? tokenizer_bos(s.tok) : -1,
		.progress = on_chunk,
		.cb_ctx = &pp,
		.pool = backend_cpu_pool(s.be),
	};
	perplexity_result r;
	int rc = perplexity_compute(s.e, toks, n_toks, &po, &r, &err);
	progress_finish(bar);
	if (rc != OS_OK) {
		ex = cli_fail(&err, "perplexity of '%s' over '%s' failed", a.model, a.file);
		goto done;
	}
	ex = print_result(&a, &s, &r, n_toks);
done:
	free(toks);
	free(text);
	cli_session_close(&s);
	return ex;
}
