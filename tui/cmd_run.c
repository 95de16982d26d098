/* cmd_run.c: `optstudio run MODEL -p PROMPT`: generates text, streaming each piece to stdout
 * as soon as it is complete UTF-8, and ends with one stats line on stderr. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_spec.h"
#include "core/engine/sampler.h"
#include "session.h"

static const char run_help[] =
	"usage: optstudio run MODEL -p PROMPT [options]\n"
	"\n"
	"Generates a continuation of PROMPT with MODEL (a hub name or a GGUF file) on the CPU,\n"
	"printing tokens to stdout as they are made, then one stats line on stderr (prompt\n"
	"tokens and tok/s, generated tokens and tok/s, ms/token).\n"
	"\n"
	"options:\n"
	"  -p, --prompt TEXT       the prompt (required)\n"
	"  -n, --n-predict N       generate at most N tokens (default 128); generation also\n"
	"                          stops at an end-of-generation token (not printed)\n"
	"      --chat              wrap the prompt in the model's chat template (ChatML for\n"
	"                          SmolLM2) as a user turn, and answer as the assistant\n"
	"      --system TEXT       the system prompt with --chat (default: the template's own)\n"
	"      --temp T            temperature; default 0 = greedy (deterministic, for\n"
	"                          reproducible demos; llama.cpp defaults to 0.8)\n"
	"      --top-k K           keep the K most likely tokens (default 0 = off)\n"
	"      --top-p P           nucleus sampling (default 1 = off)\n"
	"      --min-p P           drop tokens below P x the top probability (default 0 = off)\n"
	"      --repeat-penalty R  penalise the last 64 tokens (default 1 = off)\n"
	"      --seed S            sampling seed (default: random, printed in the stats line)\n"
	"      --threads N         CPU threads (default: all online CPUs); the output does not\n"
	"                          depend on it\n"
	"      --bf16              run with BF16 weights (default F32)\n"
	"      --kv T              KV cache f32|bf16|fp8|int8 (default: the model\n"
	"                          file's, else f32)\n"
	"      --batch-invariant   kernels that give a token the same bits in any batch:\n"
	"                          greedy output with --draft is then exactly the plain\n"
	"                          greedy output (without, it can part at a near-tie);\n"
	"                          decode of a few tokens is slower (optstudio(1))\n"
	"      --draft D           speculative decoding with draft D: recommended (the hub's\n"
	"                          smallest model with the same tokenizer, else a quantized\n"
	"                          copy of the model, built once into <home>/artifacts),\n"
	"                          self:int8, self:int4, self:fp8 (that copy in a given\n"
	"                          format), self:bf16, ngram (prompt lookup, no\n"
	"                          model), a hub name or a GGUF path (same tokenizer only).\n"
	"                          The output is the model's own: identical when greedy,\n"
	"                          the same distribution when sampling\n"
	"      --spec-k K|auto     draft tokens per step, 1..16 (default 4); auto picks k\n"
	"                          from the recent acceptance rate\n"
	"      --no-baseline       with --draft, skip the plain decode of the same prompt that\n"
	"                          measures the speed-up (it runs after the output, same\n"
	"                          process and settings, and doubles the run time)\n"
	"      --json              print one JSON object instead: text, tokens, prompt_tokens,\n"
	"                          generated_tokens, prompt_tok_s, gen_tok_s, ms_per_token,\n"
	"                          stop (\"length\" or \"eog\"), seed; with --draft also\n"
	"                          \"speculative\": acceptance_rate, mean_accepted_length,\n"
	"                          acceptance_by_position, draft/verify shares, speedup\n"
	"\n"
	"The prompt is plain text (special-token spellings such as <|im_start|> are not parsed\n"
	"without --chat). Generation time runs from the end of the prompt's forward pass to the\n"
	"last token, sampling included.\n";

typedef struct run_args {
	const char *model;
	const char *prompt;
	const char *system;
	size_t n_predict;
	bool chat;
	bool json;
	bool bf16;
	int kv_type; /* enum engine_kv_type; 0 = the model's */
	bool batch_invariant;
	bool seed_given;
	size_t n_threads;
	sampler_params sp;
	const char *draft;      /* --draft, or NULL */
	size_t spec_k;          /* --spec-k (default 4; the starting k with auto) */
	bool spec_auto;
	bool spec_k_given;
	bool no_baseline;
} run_args;

enum {
	OPT_TEMP = 256,
	OPT_TOP_K,
	OPT_TOP_P,
	OPT_MIN_P,
	OPT_REPEAT,
	OPT_SEED,
	OPT_CHAT,
	OPT_SYSTEM,
	OPT_THREADS,
	OPT_BF16, OPT_KV, OPT_BATCH_INVARIANT,
	OPT_JSON,
	OPT_DRAFT,
	OPT_SPEC_K,
	OPT_NO_BASELINE,
};

static int parse_run_args(int argc, char **argv, run_args *a)
{
	static const struct option long_opts[] = {
		{"prompt", required_argument, NULL, 'p'},
		{"n-predict", required_argument, NULL, 'n'},
		{"temp", required_argument, NULL, OPT_TEMP},
		{"top-k", required_argument, NULL, OPT_TOP_K},
		{"top-p", required_argument, NULL, OPT_TOP_P},
		{"min-p", required_argument, NULL, OPT_MIN_P},
		{"repeat-penalty", required_argument, NULL, OPT_REPEAT},
		{"seed", required_argument, NULL, OPT_SEED},
		{"chat", no_argument, NULL, OPT_CHAT},
		{"system", required_argument, NULL, OPT_SYSTEM},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"bf16", no_argument, NULL, OPT_BF16},
		{"kv", required_argument, NULL, OPT_KV},
		{"batch-invariant", no_argument, NULL, OPT_BATCH_INVARIANT},
		{"json", no_argument, NULL, OPT_JSON},
		{"draft", required_argument, NULL, OPT_DRAFT},
		{"spec-k", required_argument, NULL, OPT_SPEC_K},
		{"no-baseline", no_argument, NULL, OPT_NO_BASELINE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof *a);
	a->n_predict = 128;
	a->spec_k = 4;
	a->sp = sampler_params_default();
	a->sp.temperature = 0;
	optind = 1;
	opterr = 0;
	int c;
	size_t v;
	while ((c = getopt_long(argc, argv, "p:n:h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (c) {
		case 'p':
			a->prompt = optarg;
			break;
		case 'n':
			if (!cli_parse_size(optarg, &a->n_predict))
				return cli_usage_error("run", "-n wants a token count, got '%s'", optarg);
			break;
		case OPT_TEMP:
			if (!cli_parse_float(optarg, &a->sp.temperature) || a->sp.temperature < 0)
				return cli_usage_error("run", "--temp wants a number >= 0, got '%s'", optarg);
			break;
		case OPT_TOP_K:
			if (!cli_parse_size(optarg, &v) || v > INT32_MAX)
				return cli_usage_error("run", "--top-k wants a count, got '%s'", optarg);
			a->sp.top_k = (int32_t)v;
			break;
		case OPT_TOP_P:
			if (!cli_parse_float(optarg, &a->sp.top_p) || a->sp.top_p < 0 || a->sp.top_p > 1)
				return cli_usage_error("run", "--top-p wants a number in [0, 1], got '%s'",
						       optarg);
			break;
		case OPT_MIN_P:
			if (!cli_parse_float(optarg, &a->sp.min_p) || a->sp.min_p < 0 || a->sp.min_p > 1)
				return cli_usage_error("run", "--min-p wants a number in [0, 1], got '%s'",
						       optarg);
			break;
		case OPT_REPEAT:
			if (!cli_parse_float(optarg, &a->sp.repeat_penalty) || a->sp.repeat_penalty <= 0)
				return cli_usage_error("run", "--repeat-penalty wants a number > 0, got '%s'",
						       optarg);
			break;
		case OPT_SEED:
			if (!cli_parse_size(optarg, &v))
				return cli_usage_error("run", "--seed wants a non-negative integer, got '%s'",
						       optarg);
			a->sp.seed = v;
			a->seed_given = true;
			break;
		case OPT_CHAT:
			a->chat = true;
			break;
		case OPT_SYSTEM:
			a->system = optarg;
			break;
		case OPT_THREADS:
			if (!cli_parse_size(optarg, &a->n_threads) || a->n_threads == 0 ||
			    a->n_threads > 1024)
				return cli_usage_error("run", "--threads wants a count in 1..1024, got '%s'",
						       optarg);
			break;
		case OPT_BF16:
			a->bf16 = true;
			break;
		case OPT_BATCH_INVARIANT:
			a->batch_invariant = true;
			break;
		case OPT_KV:
			if (!cli_parse_kv_type(optarg, &a->kv_type))
				return cli_usage_error("run", "--kv wants f32, bf16, fp8 or int8, got '%s'",
						       optarg);
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_DRAFT:
			a->draft = optarg;
			break;
		case OPT_SPEC_K:
			a->spec_k_given = true;
			if (!strcmp(optarg, "auto")) {
				a->spec_auto = true;
			} else if (!cli_parse_size(optarg, &a->spec_k) || a->spec_k < 1 ||
				   a->spec_k > 16) {
				return cli_usage_error("run", "--spec-k wants 1..16 or auto, got '%s'",
						       optarg);
			}
			break;
		case OPT_NO_BASELINE:
			a->no_baseline = true;
			break;
		case '?':
			return cli_option_error("run", opt, optopt);
		default:
			return cli_option_error("run", opt, 0);
		}
	}
	int n_pos = argc - optind;
	if (n_pos == 0)
		return cli_usage_error("run", "missing MODEL (a hub name or a GGUF file)");
	if (n_pos > 1)
		return cli_usage_error("run", "unexpected argument '%s'", argv[optind + 1]);
	a->model = argv[optind];
	if (!a->prompt)
		return cli_usage_error("run", "missing -p PROMPT");
	if (a->system && !a->chat)
		return cli_usage_error("run", "--system only makes sense with --chat");
	if (!a->draft && (a->spec_k_given || a->no_baseline))
		return cli_usage_error("run", "--spec-k and --no-baseline only make sense with --draft");
	if (!a->seed_given)
		a->sp.seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
	return EXIT_OK;
}

/* A growing byte string; ok goes false on the first failed allocation. */
typedef struct text_buf {
	char *p;
	size_t len, cap;
	bool ok;
} text_buf;

static void text_append(text_buf *b, const char *s, size_t n)
{
	if (!b->ok || n == 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->ok = false;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Length of the valid UTF-8 sequence at s[0..n), 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	unsigned cp = c & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A copy of s with each invalid UTF-8 byte replaced by U+FFFD, for JSON (malloc'd or NULL). */
static char *utf8_sanitize(const char *s, size_t n)
{
	text_buf b = {.ok = true};
	text_append(&b, "", 0);
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
		if (l == 0) {
			text_append(&b, "\xef\xbf\xbd", 3);
			i++;
		} else {
			text_append(&b, s + i, l);
			i += l;
		}
	}
	if (!b.ok || !b.p) {
		free(b.p);
		return b.ok ? strdup("") : NULL;
	}
	return b.p;
}

/* The prompt as token ids: plain, or wrapped in the chat template. */
static int encode_prompt(const cli_session *s, const run_args *a, int32_t **ids, size_t *n)
{
	os_error err = {0};
	if (!a->chat) {
		if (tokenizer_encode(s->tok, a->prompt, strlen(a->prompt), true, false, ids, n, &err))
			return cli_fail(&err, "cannot tokenize the prompt");
		return EXIT_OK;
	}
	if (s->chat.style == CHAT_STYLE_UNKNOWN) {
		cli_error("model '%s' has no chat template optstudio knows (%s); run without --chat",
			  a->model, s->chat_note ? s->chat_note : "unknown style");
		return EXIT_FAIL;
	}
	chat_message msgs[2];
	size_t n_msgs = 0;
	if (a->system)
		msgs[n_msgs++] = (chat_message){"system", a->system};
	msgs[n_msgs++] = (chat_message){"user", a->prompt};
	char *text = NULL;
	size_t len = 0;
	if (chat_format(&s->chat, msgs, n_msgs, true, &text, &len, &err))
		return cli_fail(&err, "cannot format the chat prompt");
	int rc = tokenizer_encode(s->tok, text, len, true, true, ids, n, &err);
	free(text);
	if (rc)
		return cli_fail(&err, "cannot tokenize the chat prompt");
	return EXIT_OK;
}

/* What one generation produced and how fast. */
typedef struct run_stats {
	size_t n_prompt, n_gen;
	double prompt_s, gen_s;
	const char *stop;     /* "length" or "eog" */
} run_stats;

static void print_stats(const run_stats *st, const run_args *a)
{
	double ptps = st->prompt_s > 0 ? (double)st->n_prompt / st->prompt_s : 0;
	double gtps = st->gen_s > 0 && st->n_gen ? (double)st->n_gen / st->gen_s : 0;
	double ms = st->n_gen ? st->gen_s * 1e3 / (double)st->n_gen : 0;
	char seed[48] = "";
	if (a->sp.temperature > 0)
		snprintf(seed, sizeof seed, ", seed %llu", (unsigned long long)a->sp.seed);
	fprintf(stderr,
		"prompt %zu tokens, %.1f tok/s | generated %zu tokens, %.1f tok/s, %.2f ms/token "
		"(stop: %s%s)\n",
		st->n_prompt, ptps, st->n_gen, gtps, ms, st->stop, seed);
}

static int print_json(const run_stats *st, const run_args *a, const text_buf *text,
		      const int32_t *toks, size_t n)
{
	cJSON *o = cJSON_CreateObject();
	char *clean = utf8_sanitize(text->p ? text->p : "", text->len);
	int ex = EXIT_FAIL;
	if (!o || !clean)
		goto done;
	cJSON_AddStringToObject(o, "text", clean);
	cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
	for (size_t i = 0; arr && i < n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(toks[i]));
	cJSON_AddNumberToObject(o, "prompt_tokens", (double)st->n_prompt);
	cJSON_AddNumberToObject(o, "generated_tokens", (double)st->n_gen);
	cJSON_AddNumberToObject(o, "prompt_tok_s",
				st->prompt_s > 0 ? (double)st->n_prompt / st->prompt_s : 0);
	cJSON_AddNumberToObject(o, "gen_tok_s",
				st->gen_s > 0 && st->n_gen ? (double)st->n_gen / st->gen_s : 0);
	cJSON_AddNumberToObject(o, "ms_per_token",
				st->n_gen ? st->gen_s * 1e3 / (double)st->n_gen : 0);
	cJSON_AddStringToObject(o, "stop", st->stop);
	cJSON_AddNumberToObject(o, "seed", (double)a->sp.seed);
	cJSON_AddNumberToObject(o, "temperature", a->sp.temperature);
	char *s = cJSON_Print(o);
	if (s) {
		puts(s);
		cJSON_free(s);
		ex = EXIT_OK;
	}
done:
	if (ex != EXIT_OK)
		cli_error("out of memory formatting JSON");
	cJSON_Delete(o);
	free(clean);
	return ex;
}

int cmd_run(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(run_help, stdout);
		return EXIT_OK;
	}
	run_args a;
	int ex = parse_run_args(argc, argv, &a);
	if (ex != EXIT_OK)
		return ex;

	cli_session s;
	cli_session_opts so = {.model_arg = a.model, .n_threads = a.n_threads, .bf16 = a.bf16,
			       .kv_type = a.kv_type,
			       .batch_invariant = a.batch_invariant};
	if ((ex = cli_session_open(&s, &so)) != EXIT_OK)
		return ex;
	int32_t *prompt = NULL, *gen = NULL, *pos = NULL, *seqs = NULL;
	size_t n_prompt = 0;
	float *logits = NULL;
	sampler *smp = NULL;
	tokenizer_stream *ts = NULL;
	text_buf text = {.ok = true};
	os_error err = {0};
	run_stats st = {.stop = "length"};

	if ((ex = encode_prompt(&s, &a, &prompt, &n_prompt)) != EXIT_OK)
		goto done;
	ex = EXIT_FAIL;
	const model_config *c = model_get_config(s.m);
	if (n_prompt == 0) {
		cli_error("the prompt is empty after tokenization (and the model has no BOS token)");
		ex = EXIT_USAGE;
		goto done;
	}
	if (n_prompt >= c->ctx) {
		cli_error("the prompt has %zu tokens; the model's context is %zu", n_prompt, c->ctx);
		goto done;
	}
	size_t n_max = a.n_predict;
	if (n_prompt + n_max > c->ctx) {
		n_max = c->ctx - n_prompt;
		fprintf(stderr, "optstudio: note: generating at most %zu tokens (context %zu)\n", n_max,
			c->ctx);
	}
	if (a.draft) {
		spec_cli_args sa = {.model_arg = a.model, .draft_arg = a.draft, .k = a.spec_k,
				    .adaptive = a.spec_auto, .baseline = !a.no_baseline,
				    .json = a.json, .sp = a.sp};
		ex = spec_cli_run(&s, &sa, prompt, n_prompt, n_max);
		goto done;
	}
	size_t kv_tokens = n_prompt + n_max;
	if ((ex = cli_session_start_engine(&s, (kv_tokens + KV_DEFAULT_BLOCK_TOKENS - 1) /
						       KV_DEFAULT_BLOCK_TOKENS,
					   0)) != EXIT_OK)
		goto done;
	ex = EXIT_FAIL;

	size_t vocab = model_n_vocab(s.m);
	logits = malloc(vocab * sizeof *logits);
	gen = malloc((n_max ? n_max : 1) * sizeof *gen);
	pos = malloc(n_prompt * sizeof *pos);
	seqs = malloc(n_prompt * sizeof *seqs);
	if (!logits || !gen || !pos || !seqs) {
		cli_error("out of memory");
		goto done;
	}
	if (sampler_new(&smp, vocab, &a.sp, &err) != OS_OK) {
		ex = cli_fail(&err, "bad sampling settings");
		goto done;
	}
	if (tokenizer_stream_new(&ts, s.tok, TOKENIZER_DECODE_SKIP_CONTROL, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot start the decoder");
		goto done;
	}
	int32_t seq;
	if (kv_seq_new(engine_kv(s.e), &seq, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot start a sequence");
		goto done;
	}
	for (size_t i = 0; i < n_prompt; i++) {
		pos[i] = (int32_t)i;
		seqs[i] = seq;
		sampler_accept(smp, prompt[i]);
	}

	/* prompt: one forward call, logits of the last token */
	double t0 = cli_now_s();
	engine_batch b = {.n = n_prompt, .tokens = prompt, .pos = pos, .seq = seqs};
	if (engine_forward(s.e, &b, logits, &err) != OS_OK) {
		ex = cli_fail(&err, "forward pass over the prompt failed");
		goto done;
	}
	double t1 = cli_now_s();
	st.n_prompt = n_prompt;
	st.prompt_s = t1 - t0;

	/* generation: sample, emit, feed back */
	for (size_t i = 0; i < n_max; i++) {
		int32_t tok = sampler_sample(smp, logits);
		if (tokenizer_is_eog(s.tok, tok)) {
			st.stop = "eog";
			break;
		}
		sampler_accept(smp, tok);
		gen[st.n_gen++] = tok;
		size_t len;
		const char *piece = tokenizer_stream_push(ts, tok, &len);
		if (a.json) {
			text_append(&text, piece, len);
		} else if (len) {
			fwrite(piece, 1, len, stdout);
			fflush(stdout);
		}
		if (i + 1 == n_max)
			break;
		int32_t p = (int32_t)(n_prompt + i);
		engine_batch one = {.n = 1, .tokens = &tok, .pos = &p, .seq = &seq};
		if (engine_forward(s.e, &one, logits, &err) != OS_OK) {
			ex = cli_fail(&err, "forward pass at position %d failed", (int)p);
			goto done;
		}
	}
	size_t len;
	const char *rest = tokenizer_stream_flush(ts, &len);
	if (a.json)
		text_append(&text, rest, len);
	else if (len)
		fwrite(rest, 1, len, stdout);
	st.gen_s = cli_now_s() - t1;
	kv_seq_free(engine_kv(s.e), seq);

	if (a.json) {
		if (!text.ok) {
			cli_error("out of memory");
			goto done;
		}
		ex = print_json(&st, &a, &text, gen, st.n_gen);
	} else {
		if (isatty(STDOUT_FILENO))
			fputc('\n', stdout);
		fflush(stdout);
		print_stats(&st, &a);
		ex = ferror(stdout) ? EXIT_FAIL : EXIT_OK;
		if (ex != EXIT_OK)
			cli_error("cannot write to stdout");
	}
done:
	tokenizer_stream_free(ts);
	sampler_free(smp);
	free(text.p);
	free(prompt);
	free(gen);
	free(pos);
	free(seqs);
	free(logits);
	cli_session_close(&s);
	return ex;
}
