/* evaluate.c: the evaluate stage of a job: the model the job produced (or the input model)
 * swept by the load generator over the spec's concurrency levels, its accuracy on held-out
 * text (against a baseline when there is one), speculative decoding measured at batch 1
 * when the spec asks for it, blended prices, and everything stored at the end in one
 * transaction as a bench run with its points plus eval results, all linked to the job. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/draft.h"
#include "core/engine/speculative.h"
#include "core/eval/accuracy.h"
#include "core/eval/loadgen.h"
#include "core/eval/perplexity.h"
#include "core/eval/price.h"
#include "draft_resolve.h"
#include "results.h"
#include "stage.h"

/* Defaults of the evaluation block (the man page says the same). */
static const size_t default_levels[] = {1, 2, 4, 8, 16};
#define EVAL_DEFAULT_INPUT 128
#define EVAL_DEFAULT_OUTPUT 64
#define EVAL_WARMUP 2
#define EVAL_SEED 1234
#define EVAL_STEP_TOKENS 256
/* Accuracy: chunks of this many tokens (capped by the model's context and the text), at most
 * this many chunks: a chunk (both models) is the unit between two stop checks, so it stays
 * short (about 0.3 s for SmolLM2-135M on 2 cores). */
#define EVAL_ACC_CTX 64
#define EVAL_ACC_MAX_CHUNKS 32
/* Held-out text read at most (bytes): enough for the chunks and varied prompts, and quick
 * to tokenize. */
#define EVAL_TEXT_MAX_BYTES (256u << 10)
/* Speculative decoding: prompts run one at a time (batch 1), at most this many. */
#define EVAL_SPEC_MAX_PROMPTS 8
#define EVAL_SPEC_DEFAULT_K 4
/* Progress: each part (a level, the accuracy pass, speculative decoding) counts this much. */
#define PART_UNITS 1000
#define MAX_LEVELS 16

/* What the stage has open and measured; all owned, freed by eval_free. */
typedef struct eval_state {
	job_run *r;
	size_t part, n_parts;        /* progress: the running part of n_parts */

	size_t units;                /* progress so far, of n_parts x PART_UNITS */

	const char *path;            /* the evaluated model's file (borrowed from r) */
	const char *name;            /* its hub name, or the path */
	int64_t model_id;            /* 0: not in the hub */
	model *m;
	tokenizer *tok;
	engine *e;
	double load_s;               /* gguf_open + model_open_gguf of the evaluated model, s */
	size_t kv_blocks;

	char text_path[PATH_MAX];    /* "" when there is no held-out text */
	int32_t *text;               /* [n_text] the held-out text's tokens */
	size_t n_text;
	int32_t *corpus;             /* [n_corpus] the prompts' corpus: text, else random ids */
	size_t n_corpus;

	size_t levels[MAX_LEVELS];
	size_t n_levels;
	size_t input, output, requests;
	loadgen_level lv[MAX_LEVELS];

	bool has_acc;                /* accuracy measured */
	bool acc_vs_base;            /* against a baseline (else perplexity only) */
	char *base_path;
	int64_t base_id;
	accuracy_result acc;
	perplexity_result ppl;
	size_t acc_ctx;

	bool has_spec;               /* speculative decoding measured */
	char draft_label[160];
	spec_metrics sm_draft, sm_plain;
	size_t spec_prompts, spec_identical, spec_k;
} eval_state;

static void eval_free(eval_state *ev)
{
	engine_free(ev->e);
	model_close(ev->m);
	tokenizer_close(ev->tok);
	free(ev->text);
	free(ev->corpus);
	free(ev->base_path);
}

/* ---- progress and stop --------------------------------------------------------------------- */

/* done of total within the running part; false when the job must stop. */
static bool part_progress(eval_state *ev, size_t done, size_t total)
{
	size_t in = total ? (size_t)((double)done / (double)total * PART_UNITS) : 0;
	if (in >= PART_UNITS)
		in = PART_UNITS - 1; /* the stage's end is written by the pipeline */
	ev->units = ev->part * PART_UNITS + in;
	return job_run_progress(ev->r, ev->units, ev->n_parts * PART_UNITS);
}

static void lg_progress(void *ctx, size_t done, size_t total)
{
	part_progress(ctx, done, total);
}

/* Polled every client iteration / chunk / round: throttled by job_run_progress, which reads
 * the stop flag every JOB_PROGRESS_INTERVAL_S. */
static bool ev_should_stop(void *ctx)
{
	eval_state *ev = ctx;
	return !job_run_progress(ev->r, ev->units, ev->n_parts * PART_UNITS);
}

static void acc_progress(void *ctx, size_t done, size_t n)
{
	part_progress(ctx, done, n);
}

static void ppl_progress(void *ctx, size_t done, size_t n, double running)
{
	(void)running;
	part_progress(ctx, done, n);
}

/* ---- inputs -------------------------------------------------------------------------------- */

/* Up to EVAL_TEXT_MAX_BYTES of path into *buf (malloc'd, NUL-terminated). */
static int read_text(const char *path, char **buf, size_t *len, os_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO,
				    "cannot read held-out text '%s': %s", path, strerror(errno));
	char *p = malloc(EVAL_TEXT_MAX_BYTES + 1);
	if (!p) {
		fclose(f);
		return os_error_set(err, OS_ENOMEM, "out of memory reading '%s'", path);
	}
	size_t n = fread(p, 1, EVAL_TEXT_MAX_BYTES, f);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(p);
		return os_error_set(err, OS_EIO, "cannot read held-out text '%s'", path);
	}
	/* do not cut a UTF-8 sequence in two */
	while (n == EVAL_TEXT_MAX_BYTES && n > 0 && ((unsigned char)p[n - 1] & 0xC0) == 0x80)
		n--;
	if (n == EVAL_TEXT_MAX_BYTES && n > 0 && ((unsigned char)p[n - 1] & 0x80))
		n--;
	p[n] = '\0';
	*buf = p;
	*len = n;
	return OS_OK;
}

/* The held-out text (the spec's, else <home>/text/heldout.txt when present) tokenized, and
 * the prompts' corpus: that text, else random token ids from the seed (as `bench`). */
static int load_text(eval_state *ev, os_error *err)
{
	job_run *r = ev->r;
	const char *given = r->spec->evaluation.text;
	if (given)
		snprintf(ev->text_path, sizeof ev->text_path, "%s", given);
	else
		snprintf(ev->text_path, sizeof ev->text_path, "%s/text/heldout.txt", store_home(r->s));
	if (!given && access(ev->text_path, R_OK) != 0) {
		job_run_event(r, "warn", "no held-out text at '%s': prompts are random token ids "
			      "and accuracy is not measured (give evaluation.text, or 'make models' "
			      "places one there)", ev->text_path);
		ev->text_path[0] = '\0';
	} else {
		char *buf = NULL;
		size_t len = 0;
		int rc = read_text(ev->text_path, &buf, &len, err);
		if (rc)
			return rc;
		rc = tokenizer_encode(ev->tok, buf, len, false, false, &ev->text, &ev->n_text, err);
		free(buf);
		if (rc)
			return rc;
		if (ev->n_text == 0)
			return os_error_set(err, OS_EUSAGE, "held-out text '%s' is empty",
					    ev->text_path);
		job_run_event(r, "info", "held-out text '%s': %zu tokens", ev->text_path,
			      ev->n_text);
	}
	if (ev->n_text) {
		ev->n_corpus = ev->n_text;
		ev->corpus = malloc(ev->n_corpus * sizeof *ev->corpus);
		if (ev->corpus)
			memcpy(ev->corpus, ev->text, ev->n_corpus * sizeof *ev->corpus);
	} else {
		size_t vocab = model_n_vocab(ev->m);
		ev->n_corpus = 65536;
		ev->corpus = malloc(ev->n_corpus * sizeof *ev->corpus);
		uint64_t st = (uint64_t)EVAL_SEED * 6364136223846793005ull + 1;
		for (size_t i = 0; ev->corpus && i < ev->n_corpus; i++) {
			st = st * 6364136223846793005ull + 1442695040888963407ull;
			ev->corpus[i] = (int32_t)((st >> 33) % vocab);
		}
	}
	if (!ev->corpus)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	return OS_OK;
}


static size_t blocks_for(size_t positions)
{
	return (positions + KV_DEFAULT_BLOCK_TOKENS - 1) / KV_DEFAULT_BLOCK_TOKENS;
}

/* An engine over m with kv_blocks blocks of KV (f32 sized: enough for any KV type). */
static int make_engine(job_run *r, const model *m, size_t kv_blocks, engine **out, os_error *err)
{
	engine_opts eo = {
		.max_batch = EVAL_STEP_TOKENS,
		.kv_bytes = kv_blocks * KV_DEFAULT_BLOCK_TOKENS * model_kv_bytes_per_pos(m, model_kv_format(m)),
		.kv_block_tokens = KV_DEFAULT_BLOCK_TOKENS,
	};
	return engine_new(out, m, r->be, &eo, err);
}

/* Opens a model file (timed: the file read and the weights loaded). */
static int open_model(const char *path, model **m, tokenizer **tok, double *seconds,
		      os_error *err)
{
	double t0 = job_run_now();
	gguf_file *f = NULL;
	int rc = gguf_open(&f, path, err);
	if (rc == OS_OK && tok)
		rc = tokenizer_open(tok, f, err);
	if (rc == OS_OK) {
		model_load_opts lo = {.weight_format = BE_WFMT_F32};
		rc = model_open_gguf(m, f, &lo, err);
	}
	gguf_close(f);
	if (seconds)
		*seconds = job_run_now() - t0;
	return rc;
}

/* ---- the parts ------------------------------------------------------------------------------ */

/* The load-generator sweep, one level after the other, without speculative decoding. */
static int run_sweep(eval_state *ev, os_error *err)
{
	job_run *r = ev->r;
	loadgen_engine_target *tg = NULL;
	size_t C_max = ev->levels[ev->n_levels - 1];
	loadgen_engine_opts eo = {.max_running = C_max, .step_tokens = EVAL_STEP_TOKENS};
	int rc = loadgen_engine_target_new(&tg, ev->e, &eo, err);
	if (rc)
		return rc;
	loadgen_target it = loadgen_engine_target_iface(tg);
	for (size_t i = 0; i < ev->n_levels; i++, ev->part++) {
		size_t C = ev->levels[i];
		size_t N = ev->requests ? ev->requests : (2 * C < 8 ? 8 : 2 * C);
		loadgen_opts o = {.concurrency = C, .n_requests = N, .n_warmup = EVAL_WARMUP,
				  .input_tokens = ev->input, .output_tokens = ev->output,
				  .seed = EVAL_SEED, .corpus = ev->corpus, .n_corpus = ev->n_corpus,
				  .progress = lg_progress, .should_stop = ev_should_stop, .cb_ctx = ev};
		part_progress(ev, 0, 1);
		if ((rc = loadgen_run_level(&it, &o, &ev->lv[i], err)))
			break;
		const loadgen_level *l = &ev->lv[i];
		job_run_event(r, "info",
			      "C=%zu: %zu requests, %zu errors; total %.1f tok/s (formula), %.1f "
			      "measured; latency p50 %.1f ms, TTFT p50 %.1f ms, ITL p50 %.2f ms",
			      C, l->n_requests, l->n_errors, l->total_tok_s, l->measured_tok_s,
			      l->latency_ms.p50, l->ttft_ms.p50, l->itl_ms.p50);
	}
	loadgen_engine_target_free(tg);
	return rc;
}

/* The baseline accuracy is measured against: the spec's, else the input model when the
 * job quantized it, else none. */
static int resolve_baseline(eval_state *ev, os_error *err)
{
	job_run *r = ev->r;
	const char *b = r->spec->evaluation.baseline;
	if (!b) {
		if (!r->result_path)
			return OS_OK;
		ev->base_id = r->model_row.id;
		ev->base_path = strdup(r->model_path);
	} else {
		store_model m = {0};
		if (store_model_get(r->s, b, &m, NULL) == OS_OK) {
			ev->base_id = m.id;
			ev->base_path = strdup(m.path);
			store_model_clear(&m);
		} else if (access(b, R_OK) == 0) {
			ev->base_path = strdup(b);
		} else {
			return os_error_set(err, OS_ENOTFOUND, "baseline '%s' is not in the hub and "
					    "is not a readable file", b);
		}
	}
	return ev->base_path ? OS_OK : os_error_set(err, OS_ENOMEM, "out of memory");
}

/* Perplexity of the evaluated model on the held-out text, and KL / top-1 agreement against
 * the baseline when there is one. */
static int run_accuracy(eval_state *ev, os_error *err)
{
	job_run *r = ev->r;
	size_t ctx = EVAL_ACC_CTX, mctx = model_get_config(ev->m)->ctx;
	if (mctx && ctx > mctx)
		ctx = mctx;
	if (ctx > ev->n_text)
		ctx = ev->n_text;
	if (ctx < 16) {
		job_run_event(r, "warn", "held-out text too short for accuracy (%zu tokens, at "
			      "least 16 needed); skipped", ev->n_text);
		return OS_OK;
	}
	ev->acc_ctx = ctx;
	int rc = resolve_baseline(ev, err);
	if (rc)
		return rc;
	int32_t bos = tokenizer_add_bos(ev->tok) ? tokenizer_bos(ev->tok) : -1;
	if (!ev->base_path) {
		job_run_event(r, "info", "perplexity over %zu chunks of %zu tokens (no baseline)",
			      perplexity_n_chunks(ev->n_text, ctx, EVAL_ACC_MAX_CHUNKS), ctx);
		perplexity_opts po = {.ctx = ctx, .max_chunks = EVAL_ACC_MAX_CHUNKS, .bos = bos,
				      .progress = ppl_progress, .should_stop = ev_should_stop,
				      .cb_ctx = ev,
				      .pool = backend_cpu_pool(ev->r->be)};
		if ((rc = perplexity_compute(ev->e, ev->text, ev->n_text, &po, &ev->ppl, err)))
			return rc;
		ev->has_acc = true;
		job_run_event(r, "info", "perplexity %.4f (%zu tokens scored)", ev->ppl.ppl,
			      ev->ppl.n_scored);
		return OS_OK;
	}
	model *bm = NULL;
	tokenizer *bt = NULL;
	engine *be = NULL;
	int32_t *bt_toks = NULL;
	size_t n_bt = 0;
	job_run_event(r, "info", "accuracy against '%s' over %zu chunks of %zu tokens",
		      ev->base_path, perplexity_n_chunks(ev->n_text, ctx, EVAL_ACC_MAX_CHUNKS), ctx);
	if ((rc = open_model(ev->base_path, &bm, &bt, NULL, err)))
		goto done;
	if (ev_should_stop(ev)) { /* loading is not interruptible: look right after it */
		rc = OS_ESTOPPED;
		goto done;
	}
	/* a token for token comparison needs one tokenizer */
	char *buf = NULL;
	size_t len = 0;
	if ((rc = read_text(ev->text_path, &buf, &len, err)))
		goto done;
	rc = tokenizer_encode(bt, buf, len, false, false, &bt_toks, &n_bt, err);
	free(buf);
	if (rc)
		goto done;
	if (n_bt != ev->n_text || memcmp(bt_toks, ev->text, n_bt * sizeof *bt_toks) != 0 ||
	    model_n_vocab(bm) != model_n_vocab(ev->m)) {
		rc = os_error_set(err, OS_EUSAGE, "baseline '%s' has another tokenizer than '%s'; "
				  "accuracy compares models sharing one", ev->base_path, ev->path);
		goto done;
	}
	if ((rc = make_engine(r, bm, blocks_for(ctx), &be, err)))
		goto done;
	accuracy_opts ao = {.ctx = ctx, .max_chunks = EVAL_ACC_MAX_CHUNKS, .bos = bos,
			    .progress = acc_progress, .should_stop = ev_should_stop, .cb_ctx = ev,
			    .pool = backend_cpu_pool(r->be)};
	if ((rc = accuracy_compare(ev->e, be, ev->text, ev->n_text, &ao, &ev->acc, err)))
		goto done;
	ev->has_acc = ev->acc_vs_base = true;
	job_run_event(r, "info", "perplexity %.4f (baseline %.4f), KL mean %.5f p99 %.5f nats, "
		      "top-1 agreement %.2f%% (%zu tokens scored)", ev->acc.ppl_model,
		      ev->acc.ppl_base, ev->acc.kl_mean, ev->acc.kl_p99, 100 * ev->acc.top1_agree,
		      ev->acc.n_scored);
done:
	free(bt_toks);
	engine_free(be);
	model_close(bm);
	tokenizer_close(bt);
	return rc;
}

/* Runs every prompt through a decoder at batch 1 (greedy, EOS ignored); outputs go to
 * out[i * O ..] and the decoder's counters to *m. Frees the decoder. */
static int spec_pass(eval_state *ev, spec_decoder *sd, const int32_t *prompts, size_t n,
		     size_t done_before, int32_t *out, spec_metrics *m, os_error *err)
{
	int rc = OS_OK;
	for (size_t i = 0; i < n && rc == OS_OK; i++) {
		int id;
		if ((rc = spec_seq_add(sd, prompts + i * ev->input, ev->input, ev->output, EVAL_SEED,
				       &id, err)))
			break;
		size_t n_act = 1;
		while (rc == OS_OK && n_act) {
			if (ev_should_stop(ev))
				rc = os_error_set(err, OS_ESTOPPED, "speculative decoding stopped");
			else
				rc = spec_step(sd, &n_act, err);
		}
		if (rc == OS_OK) {
			size_t nh;
			const int32_t *h = spec_seq_tokens(sd, id, &nh, NULL);
			size_t got = nh - ev->input;
			memcpy(out + i * ev->output, h + ev->input,
			       (got < ev->output ? got : ev->output) * sizeof *out);
		}
		spec_seq_remove(sd, id);
		part_progress(ev, done_before + i + 1, 2 * n);
	}
	*m = *spec_get_metrics(sd);
	spec_free(sd);
	return rc;
}

/* Acceptance, mean accepted length and tok/s with and without the draft, at batch 1 on
 * prompts cut from the held-out text, greedy: the latency lever, measured apart from the
 * sweep. */
static int run_speculative(eval_state *ev, os_error *err)
{
	job_run *r = ev->r;
	const job_spec *sp = r->spec;
	draft_spec ds = {0};
	model *dm = NULL;
	engine *de = NULL;
	int32_t *prompts = NULL, *out_plain = NULL, *out_draft = NULL;
	spec_decoder *sd = NULL;
	int rc = draft_resolve_hub(r->s, sp->speculative.draft, ev->path, &ds, err);
	if (rc)
		return rc;
	snprintf(ev->draft_label, sizeof ev->draft_label, "%s", ds.label);
	job_run_event(r, "info", "speculative decoding: draft %s%s%s%s", ds.label,
		      ds.reason[0] ? " (" : "", ds.reason, ds.reason[0] ? ")" : "");
	ev->spec_k = sp->speculative.k ? (size_t)sp->speculative.k : EVAL_SPEC_DEFAULT_K;
	size_t n = ev->requests ? ev->requests : EVAL_SPEC_MAX_PROMPTS;
	if (n > EVAL_SPEC_MAX_PROMPTS)
		n = EVAL_SPEC_MAX_PROMPTS;
	ev->spec_prompts = n;
	size_t blocks = blocks_for(ev->input + ev->output + SPEC_MAX_K + 1);
	int kind = ds.source == DRAFT_SRC_NGRAM ? SPEC_DRAFT_NGRAM : SPEC_DRAFT_MODEL;
	if (kind == SPEC_DRAFT_MODEL) {
		model_load_opts lo = {.weight_format = ds.weight_format};
		if ((rc = model_open(&dm, ds.path, &lo, err)))
			goto done;
		if ((rc = make_engine(r, dm, blocks, &de, err)))
			goto done;
		if (ev_should_stop(ev)) {
			rc = OS_ESTOPPED;
			goto done;
		}
	}
	prompts = malloc(n * ev->input * sizeof *prompts);
	out_plain = calloc(n * ev->output, sizeof *out_plain);
	out_draft = calloc(n * ev->output, sizeof *out_draft);
	if (!prompts || !out_plain || !out_draft) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	loadgen_opts po = {.input_tokens = ev->input, .seed = EVAL_SEED, .corpus = ev->corpus,
			   .n_corpus = ev->n_corpus};
	for (size_t i = 0; i < n; i++)
		loadgen_make_prompt(&po, i, prompts + i * ev->input);
	sampler_params spp = sampler_params_default();
	spp.temperature = 0;
	spp.seed = EVAL_SEED;
	spec_opts plain = {.k = 1};
	if ((rc = spec_new(&sd, ev->e, NULL, SPEC_DRAFT_NONE, &plain, &spp, err)))
		goto done;
	rc = spec_pass(ev, sd, prompts, n, 0, out_plain, &ev->sm_plain, err);
	sd = NULL;
	if (rc)
		goto done;
	spec_opts so = {.k = ev->spec_k};
	if ((rc = spec_new(&sd, ev->e, de, kind, &so, &spp, err)))
		goto done;
	rc = spec_pass(ev, sd, prompts, n, n, out_draft, &ev->sm_draft, err);
	sd = NULL;
	if (rc)
		goto done;
	for (size_t i = 0; i < n; i++)
		ev->spec_identical += !memcmp(out_plain + i * ev->output, out_draft + i * ev->output,
					      ev->output * sizeof *out_plain);
	ev->has_spec = true;
	double t1 = spec_metrics_tok_s(&ev->sm_draft), t0 = spec_metrics_tok_s(&ev->sm_plain);
	job_run_event(r, "info", "speculative (k %zu, %zu prompts at batch 1): acceptance %.1f%%, "
		      "mean accepted length %.2f, %.1f tok/s vs %.1f without the draft (%.2fx); "
		      "%zu of %zu outputs identical to the plain run",
		      ev->spec_k, n, 100 * spec_metrics_acceptance(&ev->sm_draft),
		      spec_metrics_mean_accepted(&ev->sm_draft), t1, t0, t0 > 0 ? t1 / t0 : 0,
		      ev->spec_identical, n);
done:
	spec_free(sd);
	free(prompts);
	free(out_plain);
	free(out_draft);
	engine_free(de);
	model_close(dm);
	draft_spec_clear(&ds);
	return rc;
}

/* ---- prices and storing ----------------------------------------------------------------- */

static void add_num_or_null(cJSON *o, const char *k, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

/* The run's settings and prices as JSON (bench_runs.config): measured prices on the spec's
 * instance, and the catalog's other instances projected by the roofline, labelled so. */
static char *config_json(eval_state *ev, const store_instance *here, double discount)
{
	job_run *r = ev->r;
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON *lv = cJSON_AddArrayToObject(o, "concurrency");
	for (size_t i = 0; lv && i < ev->n_levels; i++)
		cJSON_AddItemToArray(lv, cJSON_CreateNumber((double)ev->levels[i]));
	cJSON_AddNumberToObject(o, "requests", (double)ev->requests);
	cJSON_AddNumberToObject(o, "warmup", EVAL_WARMUP);
	cJSON_AddNumberToObject(o, "discount", discount);
	cJSON_AddStringToObject(o, "weight_format", be_wfmt_name(model_weight_format(ev->m)));
	cJSON_AddNumberToObject(o, "step_tokens", EVAL_STEP_TOKENS);
	cJSON_AddStringToObject(o, "prefill", "chunked");
	cJSON_AddStringToObject(o, "corpus", ev->text_path[0] ? ev->text_path
							       : "random token ids (seed 1234)");
	cJSON_AddStringToObject(o, "model_path", ev->path);
	cJSON_AddStringToObject(o, "speculative", "off in the sweep (measured at batch 1 apart)");
	cJSON_AddNumberToObject(o, "job_id", (double)r->job->id);
	price_workload w = {
		.step_bytes = (double)model_step_bytes(ev->m),
		.kv_bytes_per_pos = (double)model_kv_bytes_per_pos(ev->m, model_kv_format(ev->m)),
		.n_params = (double)model_n_params(ev->m),
		.input_tokens = (double)ev->input,
		.output_tokens = (double)ev->output,
	};
	cJSON_AddNumberToObject(o, "n_params", w.n_params);
	cJSON_AddNumberToObject(o, "step_bytes", w.step_bytes);
	cJSON_AddNumberToObject(o, "kv_bytes_per_pos", w.kv_bytes_per_pos);
	cJSON_AddNumberToObject(o, "load_seconds", ev->load_s);
	cJSON *ml = cJSON_AddObjectToObject(o, "latency_mean_ms");
	cJSON *pr = cJSON_AddObjectToObject(o, "price");
	cJSON_AddStringToObject(pr, "instance", here->name);
	add_num_or_null(pr, "usd_per_hour", here->usd_per_hour > 0 ? here->usd_per_hour : NAN);
	cJSON_AddStringToObject(pr, "formula", price_formula());
	cJSON_AddBoolToObject(pr, "measured", 1);
	cJSON *pm = cJSON_AddObjectToObject(pr, "blended_usd_per_1m");
	for (size_t i = 0; i < ev->n_levels; i++) {
		char k[32];
		snprintf(k, sizeof k, "%zu", ev->levels[i]);
		add_num_or_null(ml, k, ev->lv[i].latency_ms.mean);
		double usd = NAN;
		if (here->usd_per_hour > 0 && ev->lv[i].total_tok_s > 0 &&
		    price_blended_per_1m(here->usd_per_hour, discount, ev->lv[i].total_tok_s, &usd,
					 NULL))
			usd = NAN;
		add_num_or_null(pm, k, usd);
	}
	/* projections: never mixed with the measured figures */
	store_instance *cat = NULL;
	size_t n_cat = 0;
	cJSON *pj = cJSON_AddObjectToObject(o, "projected");
	cJSON_AddStringToObject(pj, "label", "projected");
	cJSON_AddStringToObject(pj, "model", "roofline (core/eval/price.h): an upper bound from "
				"bytes and FLOPs per token, not a measurement");
	cJSON *insts = cJSON_AddArrayToObject(pj, "instances");
	if (store_instance_list(r->s, &cat, &n_cat, NULL) == OS_OK) {
		for (size_t k = 0; k < n_cat; k++) {
			const store_instance *ci = &cat[k];
			if (ci->is_local || ci->n_gpus < 1 || ci->mem_bandwidth_gbps <= 0 ||
			    ci->bf16_tflops <= 0)
				continue;
			cJSON *io = cJSON_CreateObject();
			if (!io)
				break;
			cJSON_AddItemToArray(insts, io);
			cJSON_AddStringToObject(io, "instance", ci->name);
			cJSON_AddNumberToObject(io, "usd_per_hour", ci->usd_per_hour);
			cJSON *pl = cJSON_AddArrayToObject(io, "levels");
			price_instance pi = {(double)ci->n_gpus, ci->mem_bandwidth_gbps,
					     ci->bf16_tflops, ci->usd_per_hour};
			for (size_t i = 0; i < ev->n_levels; i++) {
				price_projection p;
				double usd;
				if (price_project_instance(&w, &pi, discount, ev->levels[i], &p, &usd,
							   NULL))
					continue;
				cJSON *q = cJSON_CreateObject();
				if (!q)
					break;
				cJSON_AddItemToArray(pl, q);
				cJSON_AddNumberToObject(q, "concurrency", (double)ev->levels[i]);
				cJSON_AddNumberToObject(q, "projected_tok_s", p.tok_s);
				add_num_or_null(q, "projected_blended_usd_per_1m", usd);
			}
		}
		store_instance_list_free(cat, n_cat);
	}
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* One eval_results row of the evaluated model. */
static int put_metric(eval_state *ev, const char *metric, double value, int64_t n_tokens,
		      int64_t base_id, const char *details, os_error *err)
{
	if (!isfinite(value))
		return OS_OK; /* nothing measured: no row */
	store_eval_result e = {
		.job_id = ev->r->job->id,
		.model_id = ev->model_id,
		.model_name = (char *)ev->name,
		.baseline_model_id = base_id,
		.dataset = ev->text_path[0] ? ev->text_path : NULL,
		.metric = (char *)metric,
		.value = value,
		.n_tokens = n_tokens,
		.details = (char *)details,
	};
	return store_eval_result_insert(ev->r->s, &e, NULL, err);
}

/* The bench run, its points and the eval results, in one transaction. */
static int store_results(eval_state *ev, int64_t *run_id, os_error *err)
{
	job_run *r = ev->r;
	const job_spec *sp = r->spec;
	const char *inst = sp->evaluation.instance ? sp->evaluation.instance : STORE_LOCAL_INSTANCE;
	double discount = sp->evaluation.has_discount ? sp->evaluation.discount
						      : PRICE_DEFAULT_DISCOUNT;
	store_instance here = {0};
	store_bench_point pts[MAX_LEVELS];
	char *config = NULL;
	int rc = store_instance_get(r->s, inst, &here, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < ev->n_levels; i++)
		results_point_from_level(&ev->lv[i], &pts[i]);
	if (!(config = config_json(ev, &here, discount))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	char label[200];
	snprintf(label, sizeof label, "%s", sp->name ? sp->name
				    : sp->has_quantization ? sp->quantization.method : "baseline");
	store_bench_run run = {
		.job_id = r->job->id,
		.model_id = ev->model_id,
		.model_name = (char *)ev->name,
		.label = label,
		.backend = "cpu",
		.instance_name = here.name,
		.input_tokens = (int64_t)ev->input,
		.output_tokens = (int64_t)ev->output,
		.seed = EVAL_SEED,
		.config = config,
		.points = pts,
		.n_points = ev->n_levels,
	};
	if ((rc = store_tx_begin(r->s, err)))
		goto done;
	rc = store_bench_run_insert(r->s, &run, run_id, err);
	struct stat st;
	double bytes = stat(ev->path, &st) == 0 ? (double)st.st_size : NAN;
	if (!rc)
		rc = put_metric(ev, "model_bytes", bytes, -1, 0, NULL, err);
	if (!rc)
		rc = put_metric(ev, "load_seconds", ev->load_s, -1, 0, NULL, err);
	if (!rc && ev->has_acc && ev->acc_vs_base) {
		const accuracy_result *a = &ev->acc;
		char det[256];
		snprintf(det, sizeof det, "{\"ctx\":%zu,\"chunks\":%zu,\"baseline_perplexity\":%.17g}",
			 ev->acc_ctx, a->n_chunks, a->ppl_base);
		int64_t nt = (int64_t)a->n_scored;
		if (!rc)
			rc = put_metric(ev, "perplexity", a->ppl_model, nt, ev->base_id, det, err);
		if (!rc)
			rc = put_metric(ev, "baseline_perplexity", a->ppl_base, nt, ev->base_id, det, err);
		if (!rc)
			rc = put_metric(ev, "kl_divergence", a->kl_mean, nt, ev->base_id, det, err);
		if (!rc)
			rc = put_metric(ev, "kl_divergence_p99", a->kl_p99, nt, ev->base_id, det, err);
		if (!rc)
			rc = put_metric(ev, "top1_agreement", a->top1_agree, nt, ev->base_id, det, err);
	} else if (!rc && ev->has_acc) {
		char det[128];
		snprintf(det, sizeof det, "{\"ctx\":%zu,\"chunks\":%zu,\"stderr\":%.17g}", ev->acc_ctx,
			 ev->ppl.n_chunks, ev->ppl.ppl_stderr);
		rc = put_metric(ev, "perplexity", ev->ppl.ppl, (int64_t)ev->ppl.n_scored, 0, det, err);
	}
	if (!rc && ev->has_spec) {
		const spec_metrics *m = &ev->sm_draft;
		double t1 = spec_metrics_tok_s(m), t0 = spec_metrics_tok_s(&ev->sm_plain);
		char det[512];
		snprintf(det, sizeof det,
			 "{\"draft\":\"%s\",\"k\":%zu,\"prompts\":%zu,\"batch\":1,\"greedy\":true,"
			 "\"identical_outputs\":%zu,\"proposed\":%llu,\"accepted\":%llu}",
			 ev->draft_label, ev->spec_k, ev->spec_prompts, ev->spec_identical,
			 (unsigned long long)m->n_proposed, (unsigned long long)m->n_accepted);
		cJSON *chk = cJSON_Parse(det); /* a label with a quote would break the JSON */
		const char *d = chk ? det : NULL;
		cJSON_Delete(chk);
		int64_t ne = (int64_t)m->n_emitted;
		if (!rc)
			rc = put_metric(ev, "acceptance_rate", spec_metrics_acceptance(m), ne, 0, d, err);
		if (!rc)
			rc = put_metric(ev, "mean_accepted_length", spec_metrics_mean_accepted(m), ne, 0,
					d, err);
		if (!rc)
			rc = put_metric(ev, "speculative_tok_s", t1, ne, 0, d, err);
		if (!rc)
			rc = put_metric(ev, "no_draft_tok_s", t0, ne, 0, d, err);
		if (!rc && t0 > 0)
			rc = put_metric(ev, "speculative_speedup", t1 / t0, ne, 0, d, err);
	}
	if (rc) {
		store_tx_rollback(r->s);
		goto done;
	}
	if ((rc = store_tx_commit(r->s, err)))
		goto done;
	/* the price line of the log */
	size_t pk = 0;
	for (size_t i = 1; i < ev->n_levels; i++)
		if (ev->lv[i].total_tok_s > ev->lv[pk].total_tok_s)
			pk = i;
	double usd;
	if (here.usd_per_hour > 0 && ev->lv[pk].total_tok_s > 0 &&
	    price_blended_per_1m(here.usd_per_hour, discount, ev->lv[pk].total_tok_s, &usd,
				 NULL) == OS_OK)
		job_run_event(r, "info", "price on '%s' at $%.4g/hour, discount %.0f%%: $%.4g per 1M "
			      "tokens at C=%zu (measured; %s)", here.name, here.usd_per_hour,
			      100 * discount, usd, ev->levels[pk], price_formula());
	else if (here.is_local)
		job_run_event(r, "info", "this machine has no price; set it with 'optstudio price "
			      "--set-local USD_PER_HOUR' ('optstudio results' prices the run then)");
done:
	free(config);
	store_instance_clear(&here);
	return rc;
}

/* ---- the stage -------------------------------------------------------------------------- */

int stage_evaluate(job_run *r, os_error *err)
{
	eval_state ev = {.r = r};
	const job_spec *sp = r->spec;
	int rc = job_run_resolve_model(r, err);
	if (rc)
		return rc;
	/* the quantize stage's F32 model is no longer needed: give its memory back */
	job_run_drop_model(r);
	if (!r->be && (rc = backend_cpu_new(&r->be, NULL, err)))
		return rc;
	if (r->result_path) {
		ev.path = r->result_path;
		ev.name = r->result_name;
		ev.model_id = r->result_model_id;
	} else {
		ev.path = r->model_path;
		ev.name = r->model_row.id ? r->model_row.name : r->model_path;
		ev.model_id = r->model_row.id;
	}
	if (sp->evaluation.n_concurrency) {
		for (size_t i = 0; i < sp->evaluation.n_concurrency && i < MAX_LEVELS; i++)
			ev.levels[ev.n_levels++] = (size_t)sp->evaluation.concurrency[i];
		/* ascending (the spec's levels are distinct) */
		for (size_t i = 1; i < ev.n_levels; i++)
			for (size_t j = i; j > 0 && ev.levels[j - 1] > ev.levels[j]; j--) {
				size_t t = ev.levels[j];
				ev.levels[j] = ev.levels[j - 1];
				ev.levels[j - 1] = t;
			}
	} else {
		ev.n_levels = sizeof default_levels / sizeof default_levels[0];
		memcpy(ev.levels, default_levels, sizeof default_levels);
	}
	ev.input = sp->evaluation.input_tokens ? (size_t)sp->evaluation.input_tokens
					       : EVAL_DEFAULT_INPUT;
	ev.output = sp->evaluation.output_tokens ? (size_t)sp->evaluation.output_tokens
						 : EVAL_DEFAULT_OUTPUT;
	ev.requests = (size_t)sp->evaluation.requests_per_level;

	job_run_event(r, "info", "loading '%s' (%s)", ev.name, ev.path);
	if ((rc = open_model(ev.path, &ev.m, &ev.tok, &ev.load_s, err)))
		goto done;
	job_run_event(r, "info", "loaded in %.3f s (%s weights)", ev.load_s,
		      be_wfmt_name(model_weight_format(ev.m)));
	if ((rc = load_text(&ev, err)))
		goto done;
	bool want_acc = ev.n_text > 0;
	ev.n_parts = ev.n_levels + (want_acc ? 1 : 0) + (sp->has_speculative ? 1 : 0);
	if (ev_should_stop(&ev)) {
		rc = OS_ESTOPPED;
		goto done;
	}

	/* one engine, used by one part at a time: KV for the largest of them */
	size_t C_max = ev.levels[ev.n_levels - 1];
	size_t need = C_max * blocks_for(ev.input + ev.output - 1);
	size_t acc = blocks_for(EVAL_ACC_CTX), spec = blocks_for(ev.input + ev.output + SPEC_MAX_K + 1);
	ev.kv_blocks = need > acc ? need : acc;
	if (sp->has_speculative && spec > ev.kv_blocks)
		ev.kv_blocks = spec;
	if ((rc = make_engine(r, ev.m, ev.kv_blocks, &ev.e, err)))
		goto done;

	if (sp->has_speculative)
		job_run_event(r, "info", "the sweep runs without speculative decoding (a batch-1 "
			      "latency lever, measured after it)");
	job_run_event(r, "info", "sweep: concurrency %zu..%zu, %zu input + %zu output tokens, %s "
		      "requests per level", ev.levels[0], C_max, ev.input, ev.output,
		      ev.requests ? "given" : "2 x C (at least 8)");
	if ((rc = run_sweep(&ev, err)))
		goto done;
	if (want_acc) {
		part_progress(&ev, 0, 1);
		if ((rc = run_accuracy(&ev, err)))
			goto done;
		ev.part++;
	}
	if (sp->has_speculative) {
		part_progress(&ev, 0, 1);
		if ((rc = run_speculative(&ev, err)))
			goto done;
		ev.part++;
	}
	if (r->stopped) {
		rc = OS_ESTOPPED;
		goto done;
	}
	int64_t run_id = 0;
	if ((rc = store_results(&ev, &run_id, err)))
		goto done;
	job_run_event(r, "info", "stored as run %lld ('optstudio results', 'optstudio compare "
		      "%lld ...')", (long long)run_id, (long long)run_id);
done:
	if (r->stopped && rc != OS_OK)
		rc = OS_ESTOPPED;
	eval_free(&ev);
	return rc;
}
