/* cmd_eval.c: `optstudio eval MODEL --baseline MODEL --text FILE`: a model's accuracy
 * against a baseline over the same text (core/eval/accuracy.h), in one table or JSON. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/cpu/backend_cpu.h"
#include "core/eval/accuracy.h"
#include "core/eval/perplexity.h"
#include "hub_ops.h"
#include "progress.h"
#include "session.h"

static const char eval_help[] =
	"usage: optstudio eval MODEL --baseline MODEL --text FILE [options]\n"
	"\n"
	"Accuracy of MODEL (e.g. a quantized copy) against a baseline (e.g. the F32 original),\n"
	"both hub names or GGUF files, over the text in FILE: the tokenized text is cut into\n"
	"chunks of --ctx tokens and the second half of each chunk is scored, as `optstudio\n"
	"perplexity` does. Reports the perplexity of both, the mean and 99th percentile of\n"
	"KL(baseline || model) between their next-token distributions (nats), how often their\n"
	"most likely tokens agree (top-1 agreement), the largest logit difference, and the\n"
	"size of both files. Use held-out text, not the calibration text.\n"
	"\n"
	"options:\n"
	"      --baseline M  the reference model (required)\n"
	"      --text FILE   the text to score (required)\n"
	"      --ctx N       tokens per chunk (default 512)\n"
	"      --chunks K    run at most K chunks (default: every whole chunk)\n"
	"      --threads N   CPU threads (default: all online CPUs)\n"
	"      --json        print a JSON object: ppl_model, ppl_baseline, ppl_delta_pct,\n"
	"                    kl_mean, kl_p99, kl_max, top1_agreement_pct, max_logit_error,\n"
	"                    model_bytes, baseline_bytes, tokens_scored, chunks, ...\n";

typedef struct eval_args {
	const char *model, *baseline, *text;
	size_t ctx, chunks, n_threads;
	bool json;
} eval_args;

enum { OPT_BASELINE = 256, OPT_TEXT, OPT_CTX, OPT_CHUNKS, OPT_THREADS, OPT_JSON };

static int parse_eval_args(int argc, char **argv, eval_args *a)
{
	static const struct option long_opts[] = {
		{"baseline", required_argument, NULL, OPT_BASELINE},
		{"text", required_argument, NULL, OPT_TEXT},
		{"ctx", required_argument, NULL, OPT_CTX},
		{"chunks", required_argument, NULL, OPT_CHUNKS},
		{"threads", required_argument, NULL, OPT_THREADS},
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
		case OPT_BASELINE:
			a->baseline = optarg;
			break;
		case OPT_TEXT:
			a->text = optarg;
			break;
		case OPT_CTX:
			if (!cli_parse_size(optarg, &a->ctx) || a->ctx < 3 || a->ctx > (1u << 20))
				return cli_usage_error("eval", "--ctx wants a token count >= 3, got '%s'",
						       optarg);
			break;
		case OPT_CHUNKS:
			if (!cli_parse_size(optarg, &a->chunks) || a->chunks == 0)
				return cli_usage_error("eval", "--chunks wants a count >= 1, got '%s'",
						       optarg);
			break;
		case OPT_THREADS:
			if (!cli_parse_size(optarg, &a->n_threads) || a->n_threads == 0 ||
			    a->n_threads > 1024)
				return cli_usage_error("eval", "--threads wants a count in 1..1024, got "
						       "'%s'", optarg);
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case '?':
			return cli_option_error("eval", opt, optopt);
		default:
			return cli_option_error("eval", opt, 0);
		}
	}
	int n_pos = argc - optind;
	if (n_pos < 1)
		return cli_usage_error("eval", "missing MODEL");
	if (n_pos > 1)
		return cli_usage_error("eval", "unexpected argument '%s'", argv[optind + 1]);
	a->model = argv[optind];
	if (!a->baseline)
		return cli_usage_error("eval", "missing --baseline MODEL (the reference to compare "
				       "with)");
	if (!a->text)
		return cli_usage_error("eval", "missing --text FILE (held-out text to score)");
	return EXIT_OK;
}

typedef struct eval_progress {
	progress *bar;
	size_t ctx;
} eval_progress;

static void on_chunk(void *ctx, size_t done, size_t n_chunks)
{
	eval_progress *p = ctx;
	(void)n_chunks;
	progress_update(p->bar, done * p->ctx);
}

static long long file_bytes(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int print_result(const eval_args *a, const cli_session *m, const cli_session *b,
			const accuracy_result *r, size_t n_text_tokens)
{
	long long mb = file_bytes(m->path), bb = file_bytes(b->path);
	double dppl = 100.0 * (r->ppl_model / r->ppl_base - 1.0);
	if (!a->json) {
		char sm[32], sb[32];
		hub_format_bytes(mb, sm, sizeof sm);
		hub_format_bytes(bb, sb, sizeof sb);
		printf("%-18s %-22s %-22s\n", "", "baseline", "model");
		printf("%-18s %-22s %-22s\n", "file", a->baseline, a->model);
		printf("%-18s %-22s %-22s", "size", sb, sm);
		if (bb > 0)
			printf(" (%.2fx)", (double)mb / (double)bb);
		printf("\n");
		printf("%-18s %-22.4f %-.4f (%+.2f%%)\n", "perplexity", r->ppl_base, r->ppl_model, dppl);
		printf("%-18s %-22s %.5f / %.5f nats (max %.4f)\n", "KL mean / p99", "-", r->kl_mean,
		       r->kl_p99, r->kl_max);
		printf("%-18s %-22s %.2f%%\n", "top-1 agreement", "-", 100.0 * r->top1_agree);
		printf("%-18s %-22s %.4f\n", "max |logit err|", "-", r->max_logit_err);
		printf("%zu tokens scored in %zu chunks of %zu (%zu tokens in the text), %.1f s\n",
		       r->n_scored, r->n_chunks, a->ctx, n_text_tokens, r->seconds);
		fflush(stdout);
		return ferror(stdout) ? EXIT_FAIL : EXIT_OK;
	}
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return cli_print_json(NULL);
	cJSON_AddStringToObject(o, "model", a->model);
	cJSON_AddStringToObject(o, "baseline", a->baseline);
	cJSON_AddStringToObject(o, "model_path", m->path);
	cJSON_AddStringToObject(o, "baseline_path", b->path);
	cJSON_AddStringToObject(o, "text", a->text);
	cJSON_AddNumberToObject(o, "ppl_model", r->ppl_model);
	cJSON_AddNumberToObject(o, "ppl_baseline", r->ppl_base);
	cJSON_AddNumberToObject(o, "ppl_delta_pct", dppl);
	cJSON_AddNumberToObject(o, "kl_mean", r->kl_mean);
	cJSON_AddNumberToObject(o, "kl_p99", r->kl_p99);
	cJSON_AddNumberToObject(o, "kl_max", r->kl_max);
	cJSON_AddNumberToObject(o, "top1_agreement_pct", 100.0 * r->top1_agree);
	cJSON_AddNumberToObject(o, "max_logit_error", r->max_logit_err);
	cJSON_AddNumberToObject(o, "model_bytes", (double)mb);
	cJSON_AddNumberToObject(o, "baseline_bytes", (double)bb);
	cJSON_AddNumberToObject(o, "tokens_scored", (double)r->n_scored);
	cJSON_AddNumberToObject(o, "chunks", (double)r->n_chunks);
	cJSON_AddNumberToObject(o, "ctx", (double)a->ctx);
	cJSON_AddNumberToObject(o, "text_tokens", (double)n_text_tokens);
	cJSON_AddNumberToObject(o, "seconds", r->seconds);
	return cli_print_json(o);
}

int cmd_eval(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(eval_help, stdout);
		return EXIT_OK;
	}
	eval_args a;
	int ex = parse_eval_args(argc, argv, &a);
	if (ex != EXIT_OK)
		return ex;
	char *text = NULL;
	size_t text_len = 0;
	if ((ex = cli_read_text(a.text, &text, &text_len)) != EXIT_OK)
		return ex;
	cli_session sm = {0}, sb = {0};
	cli_session_opts om = {.model_arg = a.model, .n_threads = a.n_threads};
	cli_session_opts ob = {.model_arg = a.baseline, .n_threads = a.n_threads};
	int32_t *toks = NULL, *toks_b = NULL;
	size_t n_toks = 0, n_toks_b = 0;
	progress *bar = NULL;
	os_error err = {0};
	if ((ex = cli_session_open(&sm, &om)) != EXIT_OK)
		goto done;
	if ((ex = cli_session_open(&sb, &ob)) != EXIT_OK)
		goto done;
	ex = EXIT_FAIL;
	size_t ctx_m = model_get_config(sm.m)->ctx, ctx_b = model_get_config(sb.m)->ctx;
	if (a.ctx > ctx_m || a.ctx > ctx_b) {
		ex = cli_usage_error("eval", "--ctx %zu exceeds the models' context of %zu tokens",
				     a.ctx, ctx_m < ctx_b ? ctx_m : ctx_b);
		goto done;
	}
	if (tokenizer_encode(sm.tok, text, text_len, false, false, &toks, &n_toks, &err) ||
	    tokenizer_encode(sb.tok, text, text_len, false, false, &toks_b, &n_toks_b, &err)) {
		ex = cli_fail(&err, "cannot tokenize '%s'", a.text);
		goto done;
	}
	if (n_toks != n_toks_b || memcmp(toks, toks_b, n_toks * sizeof *toks) != 0 ||
	    model_n_vocab(sm.m) != model_n_vocab(sb.m)) {
		cli_error("'%s' and '%s' have different tokenizers; only models sharing one can be "
			  "compared token by token", a.model, a.baseline);
		goto done;
	}
	size_t n_chunks = perplexity_n_chunks(n_toks, a.ctx, a.chunks);
	if (n_chunks == 0) {
		cli_error("text '%s' is too short: %zu tokens, and one chunk needs --ctx %zu; use a "
			  "longer text or a smaller --ctx",
			  a.text, n_toks, a.ctx);
		goto done;
	}
	size_t blocks = (a.ctx + KV_DEFAULT_BLOCK_TOKENS - 1) / KV_DEFAULT_BLOCK_TOKENS;
	if (cli_session_start_engine(&sm, blocks, 0) != EXIT_OK ||
	    cli_session_start_engine(&sb, blocks, 0) != EXIT_OK)
		goto done;
	bar = progress_new("eval", "tok", n_chunks * a.ctx, false, stderr);
	progress_update(bar, 0);
	eval_progress ep = {.bar = bar, .ctx = a.ctx};
	accuracy_opts ao = {
		.ctx = a.ctx,
		.max_chunks = a.chunks,
		.bos = tokenizer_add_bos(sm.tok) ? tokenizer_bos(sm.tok) : -1,
		.progress = on_chunk,
		.cb_ctx = &ep,
		.pool = backend_cpu_pool(sm.be),
	};
	accuracy_result r;
	int rc = accuracy_compare(sm.e, sb.e, toks, n_toks, &ao, &r, &err);
	progress_finish(bar);
	if (rc != OS_OK) {
		ex = cli_fail(&err, "eval of '%s' against '%s' failed", a.model, a.baseline);
		goto done;
	}
	ex = print_result(&a, &sm, &sb, &r, n_toks);
done:
	free(toks);
	free(toks_b);
	free(text);
	cli_session_close(&sm);
	cli_session_close(&sb);
	return ex;
}
