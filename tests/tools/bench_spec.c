/* bench_spec.c: greedy decode speed with and without speculative decoding in one run, over
 * three kinds of prompt (chat answer, code, summarising a given passage), with the target's
 * own file at BF16 run-time weights and prompt-lookup n-grams as drafts; acceptance by k.
 *   bench_spec [MODEL.gguf] [-n TOKENS] [--threads N] [--draft-file F]... [--costs-only]
 * MODEL defaults to $OPTSTUDIO_DEMO_MODEL. The target runs F32 run-time weights; --draft-file
 * adds a draft model (e.g. a quantized copy of the target from `optstudio quantize`). Every
 * speculative output is checked against the plain run's, token for token; the forward-cost
 * table at the end explains the speed-ups (draft step and k+1 verification in target steps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/chat.h"
#include "core/engine/draft.h"
#include "core/engine/engine.h"
#include "core/engine/speculative.h"
#include "core/engine/tokenizer.h"
#include "core/format/gguf.h"

static const char passage[] =
	"The Rhine is a river that begins in the Swiss Alps and flows north through Germany and "
	"the Netherlands to the North Sea. It is about 1,230 kilometres long. For centuries the "
	"Rhine has been one of the most important trade routes in Europe, carrying coal, grain "
	"and manufactured goods between the industrial regions of Germany and the port of "
	"Rotterdam. Many castles stand on the hills along the Middle Rhine, a stretch between "
	"Bingen and Koblenz that UNESCO listed as a World Heritage Site in 2002. The river also "
	"supplies drinking water to millions of people, and after serious pollution in the 1970s "
	"and 1980s, international agreements between the Rhine countries have made the water "
	"much cleaner, so that salmon have returned to parts of the river.";

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median ms of one forward pass of n tokens appended after a 64-token context of e, over
 * reps interleaved repetitions (rolled back each time). */
static int time_forward(engine *e, size_t n, int reps, double *ms, os_error *err)
{
	int32_t kvs, toks[64 + 17], pos[64 + 17], seq[64 + 17];
	double t[16];
	float *logits = malloc(17 * model_n_vocab(engine_model(e)) * sizeof *logits);
	uint8_t want[17];
	if (!logits)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	int rc = kv_seq_new(engine_kv(e), &kvs, err);
	for (size_t i = 0; i < 64 + 17; i++) {
		toks[i] = (int32_t)((100 + 37 * i) % model_n_vocab(engine_model(e)));
		pos[i] = (int32_t)i;
		seq[i] = kvs;
	}
	memset(want, 1, sizeof want);
	engine_batch ctx = {.n = 64, .tokens = toks, .pos = pos, .seq = seq};
	if (!rc)
		rc = engine_forward(e, &ctx, logits, err);
	for (int r = 0; r < reps && r < 16 && !rc; r++) {
		engine_batch b = {.n = n, .tokens = toks + 64, .pos = pos + 64, .seq = seq,
				  .want = want};
		double t0 = now_ms();
		rc = engine_forward(e, &b, logits, err);
		t[r] = now_ms() - t0;
		if (!rc)
			rc = kv_seq_truncate(engine_kv(e), kvs, 64, err);
	}
	if (!rc) {
		qsort(t, (size_t)(reps < 16 ? reps : 16), sizeof *t, cmp_double);
		*ms = t[(reps < 16 ? reps : 16) / 2];
	}
	kv_seq_free(engine_kv(e), kvs);
	free(logits);
	return rc;
}

/* The cost model behind the speed-up: one draft step and a k+1-token verification in units of
 * one plain target step, and the speed-up they allow at full acceptance. */
static int print_costs(engine *et, engine *ed, os_error *err)
{
	static const size_t ns[] = {1, 2, 3, 5, 9, 17};
	double tt[6] = {0}, td = 0;
	int rc = 0;
	for (int round = 0; round < 3 && !rc; round++) /* interleaved against load swings */
		for (size_t i = 0; i < 6 && !rc; i++) {
			double a, b = 0;
			rc = time_forward(et, ns[i], 5, &a, err);
			if (!rc && i == 0)
				rc = time_forward(ed, 1, 5, &b, err);
			tt[i] += a / 3;
			td += b / 3;
		}
	if (rc)
		return rc;
	printf("\nforward cost (median ms after a 64-token context; x = plain target steps):\n");
	printf("  target F32, 1 token: %.1f ms; draft BF16, 1 token: %.1f ms (%.2fx)\n", tt[0], td,
	       td / tt[0]);
	for (size_t i = 1; i < 6; i++) {
		size_t k = ns[i] - 1;
		double round = (double)k * td + tt[i];
		printf("  verify k=%-2zu (%2zu tokens): %.1f ms (%.2fx, +%.3f per extra token) | "
		       "self:bf16 round %.2fx for %zu tokens at full acceptance: best speed-up "
		       "%.2fx; ngram %.2fx\n", k, ns[i], tt[i], tt[i] / tt[0],
		       (tt[i] / tt[0] - 1) / (double)k, round / tt[0], k + 1,
		       (double)(k + 1) * tt[0] / round, (double)(k + 1) * tt[0] / tt[i]);
	}
	return 0;
}

typedef struct bench_prompt {
	const char *kind;
	char *text; /* the user turn */
} bench_prompt;

typedef struct run_result {
	spec_metrics m;
	int32_t *out; /* generated tokens */
	size_t n_out;
} run_result;

/* Generates n_new tokens greedily for prompt with the given draft; fills r (r->out malloc'd). */
static int run_one(engine *t, engine *d, int kind, size_t k, bool adaptive, const int32_t *stop,
		   size_t n_stop, const int32_t *prompt, size_t n, size_t n_new, run_result *r,
		   os_error *err)
{
	spec_opts o = {.k = k, .adaptive = adaptive, .stop = stop, .n_stop = n_stop};
	sampler_params sp = sampler_params_default();
	sp.temperature = 0;
	spec_decoder *sd = NULL;
	int id;
	memset(r, 0, sizeof *r);
	int rc = spec_new(&sd, t, d, kind, &o, &sp, err);
	if (rc)
		return rc;
	if ((rc = spec_seq_add(sd, prompt, n, n_new, 1, &id, err)) || (rc = spec_run(sd, err)))
		goto done;
	size_t nh;
	const int32_t *h = spec_seq_tokens(sd, id, &nh, NULL);
	r->n_out = nh - n;
	r->out = malloc((r->n_out ? r->n_out : 1) * sizeof *r->out);
	if (!r->out) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(r->out, h + n, r->n_out * sizeof *r->out);
	r->m = *spec_get_metrics(sd);
done:
	spec_free(sd);
	return rc;
}

static bool same_output(const run_result *a, const run_result *b)
{
	return a->n_out == b->n_out && !memcmp(a->out, b->out, a->n_out * sizeof *a->out);
}

/* One draft under test: its engine (NULL for n-grams), the ks it runs at, and its counters. */
typedef struct bench_draft {
	char label[64];
	int kind;
	model *m;
	engine *e;
	size_t ks[4], n_ks;
	spec_metrics by_k[4], tot; /* tot: adaptive runs */
} bench_draft;

#define MAX_DRAFTS 6

int main(int argc, char **argv)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	const char *files[MAX_DRAFTS];
	size_t n_files = 0, n_new = 64, n_threads = 0;
	bool costs_only = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			n_new = (size_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--costs-only"))
			costs_only = true;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			n_threads = (size_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--draft-file") && i + 1 < argc && n_files < MAX_DRAFTS - 2)
			files[n_files++] = argv[++i];
		else
			path = argv[i];
	}
	if (!path || !*path || !n_new) {
		fprintf(stderr, "usage: bench_spec [MODEL.gguf] [-n TOKENS] [--threads N] "
				"[--draft-file F]... [--costs-only]\n"
				"(MODEL defaults to $OPTSTUDIO_DEMO_MODEL)\n");
		return 2;
	}
	os_error err;
	gguf_file *f = NULL;
	tokenizer *tok = NULL;
	chat_template ct = {0};
	backend *be = NULL;
	model *mt = NULL;
	engine *et = NULL;
	bench_draft drafts[MAX_DRAFTS];
	size_t n_drafts = 0;
	memset(drafts, 0, sizeof drafts);
	backend_cpu_opts bo = {.n_threads = n_threads};
	model_load_opts lo_t = {.weight_format = BE_WFMT_F32}, lo_d = {.weight_format = BE_WFMT_BF16};
	engine_opts eo = {.kv_bytes = (size_t)256 << 20};
	if (gguf_open(&f, path, &err) || tokenizer_open(&tok, f, &err) ||
	    chat_template_from_gguf(&ct, f, &err) || backend_cpu_new(&be, &bo, &err) ||
	    model_open_gguf(&mt, f, &lo_t, &err) || engine_new(&et, mt, be, &eo, &err)) {
		fprintf(stderr, "bench_spec: %s\n", err.msg);
		return 1;
	}
	/* drafts: the target's file at BF16, n-grams, then any --draft-file (e.g. a quantized
	 * copy of the target), each checked for the target's tokenizer */
	bench_draft *bd = &drafts[n_drafts++];
	snprintf(bd->label, sizeof bd->label, "self:bf16");
	bd->kind = SPEC_DRAFT_MODEL;
	if (model_open_gguf(&bd->m, f, &lo_d, &err) || engine_new(&bd->e, bd->m, be, &eo, &err)) {
		fprintf(stderr, "bench_spec: BF16 self-draft: %s\n", err.msg);
		return 1;
	}
	bd = &drafts[n_drafts++];
	snprintf(bd->label, sizeof bd->label, "ngram");
	bd->kind = SPEC_DRAFT_NGRAM;
	for (size_t i = 0; i < n_files; i++) {
		bd = &drafts[n_drafts];
		const char *base = strrchr(files[i], '/');
		snprintf(bd->label, sizeof bd->label, "%.63s", base ? base + 1 : files[i]);
		bd->kind = SPEC_DRAFT_MODEL;
		if (draft_check_files(path, files[i], &err) || model_open(&bd->m, files[i], NULL, &err) ||
		    engine_new(&bd->e, bd->m, be, &eo, &err)) {
			fprintf(stderr, "bench_spec: draft %s: %s\n", files[i], err.msg);
			return 1;
		}
		n_drafts++;
	}
	for (size_t i = 0; i < n_drafts; i++) {
		static const size_t ks_model[] = {1, 2, 4, 8}, ks_ngram[] = {2, 4, 8};
		bool ng = drafts[i].kind == SPEC_DRAFT_NGRAM;
		drafts[i].n_ks = ng ? 3 : 4;
		memcpy(drafts[i].ks, ng ? ks_ngram : ks_model, drafts[i].n_ks * sizeof(size_t));
	}
	int32_t stop[2] = {tokenizer_eos(tok), -1};
	size_t n_stop = stop[0] >= 0 ? 1 : 0;

	bench_prompt prompts[3] = {
		{"chat", strdup("What are three simple tips for staying healthy? Explain each briefly.")},
		{"code", strdup("Write a Python function that returns the n-th Fibonacci number "
				"iteratively, with a docstring, then show how to call it.")},
		{"summary", NULL},
	};
	size_t plen = sizeof passage + 128;
	prompts[2].text = malloc(plen);
	if (prompts[2].text)
		snprintf(prompts[2].text, plen, "%s\n\nSummarise the passage above in three "
			 "sentences, reusing its wording.", passage);
	printf("bench_spec: %s, target F32, %zu new tokens per run, greedy; machine shared and "
	       "noisy: compare within a row, not across runs\n\n", path, n_new);
	printf("speedup: against a plain run of the same prompt made right before each row\n");
	printf("%-8s %-22s %5s %8s %8s %7s %7s %7s %8s %s\n", "prompt", "draft", "k", "tok/s",
	       "speedup", "accept", "meanlen", "draft%", "verify%", "identical");
	fflush(stdout);

	spec_metrics tot_base = {0};
	int rc = 0;
	for (size_t pi = 0; pi < 3 && !rc && !costs_only; pi++) {
		chat_message msg = {"user", prompts[pi].text};
		char *text = NULL;
		size_t tlen;
		int32_t *ids = NULL;
		size_t n_ids;
		if (!prompts[pi].text || chat_format(&ct, &msg, 1, true, &text, &tlen, &err) ||
		    tokenizer_encode(tok, text, tlen, tokenizer_add_bos(tok), true, &ids, &n_ids,
				     &err)) {
			fprintf(stderr, "bench_spec: prompt: %s\n", err.msg);
			free(text);
			rc = 1;
			break;
		}
		free(text);
		run_result base, r;
		if ((rc = run_one(et, NULL, SPEC_DRAFT_NONE, 1, false, stop, n_stop, ids, n_ids, n_new,
				  &base, &err)))
			break;
		double base_tps = spec_metrics_tok_s(&base.m);
		printf("%-8s %-22s %5s %8.1f %8s %7s %7s %7s %8s (%zu prompt tokens, %zu "
		       "generated)\n", prompts[pi].kind, "none", "-", base_tps, "1.00x", "-", "1.00",
		       "-", "100", n_ids, base.n_out);
		fflush(stdout);
		for (size_t di = 0; di < n_drafts && !rc; di++) {
			bench_draft *dr = &drafts[di];
			for (size_t ki = 0; ki <= dr->n_ks && !rc; ki++) {
				bool adaptive = ki == dr->n_ks;
				size_t k = adaptive ? 4 : dr->ks[ki];
				/* a plain run right before each speculative one: the speed-up is
				 * against this adjacent baseline, which tames a noisy machine */
				run_result b2;
				if ((rc = run_one(et, NULL, SPEC_DRAFT_NONE, 1, false, stop, n_stop, ids,
						  n_ids, n_new, &b2, &err)))
					break;
				base_tps = spec_metrics_tok_s(&b2.m);
				spec_metrics_add(&tot_base, &b2.m);
				free(b2.out);
				if ((rc = run_one(et, dr->e, dr->kind, k, adaptive, stop, n_stop, ids,
						  n_ids, n_new, &r, &err)))
					break;
				double tps = spec_metrics_tok_s(&r.m), dm = r.m.decode_ms;
				char kbuf[16];
				snprintf(kbuf, sizeof kbuf, adaptive ? "auto" : "%zu", k);
				printf("%-8s %-22s %5s %8.1f %7.2fx %6.1f%% %7.2f %7.0f %8.0f %s\n",
				       prompts[pi].kind, dr->label, kbuf, tps,
				       base_tps > 0 ? tps / base_tps : 0,
				       100 * spec_metrics_acceptance(&r.m),
				       spec_metrics_mean_accepted(&r.m), 100 * r.m.draft_ms / dm,
				       100 * r.m.verify_ms / dm, same_output(&base, &r) ? "yes" : "NO");
				fflush(stdout);
				if (!same_output(&base, &r))
					rc = 3;
				spec_metrics_add(adaptive ? &dr->tot : &dr->by_k[ki], &r.m);
				free(r.out);
			}
		}
		free(base.out);
		free(ids);
	}
	if (!rc && print_costs(et, drafts[0].e, &err))
		rc = 1;
	if (rc == 1 || (rc && rc != 3))
		fprintf(stderr, "bench_spec: %s\n", err.msg);
	for (size_t pi = 0; pi < 3; pi++)
		free(prompts[pi].text);
	if (costs_only)
		goto out;
	printf("\nacceptance by k (all prompts): acceptance, tokens per target call, acceptance "
	       "at positions 1..k (%%), tok/s\n");
	for (size_t di = 0; di < n_drafts; di++) {
		bench_draft *dr = &drafts[di];
		for (size_t i = 0; i < dr->n_ks; i++) {
			printf("  %-22s k=%-2zu %5.1f%% %5.2f  [", dr->label, dr->ks[i],
			       100 * spec_metrics_acceptance(&dr->by_k[i]),
			       spec_metrics_mean_accepted(&dr->by_k[i]));
			for (size_t j = 0; j < dr->ks[i]; j++)
				printf("%s%.0f", j ? " " : "",
				       100 * spec_metrics_acceptance_at(&dr->by_k[i], j));
			printf("] %.1f tok/s\n", spec_metrics_tok_s(&dr->by_k[i]));
		}
		printf("  %-22s auto %4.1f%% %5.2f  %.1f tok/s (plain runs overall %.1f tok/s)\n",
		       dr->label, 100 * spec_metrics_acceptance(&dr->tot),
		       spec_metrics_mean_accepted(&dr->tot), spec_metrics_tok_s(&dr->tot),
		       spec_metrics_tok_s(&tot_base));
	}
out:
	for (size_t di = 0; di < n_drafts; di++) {
		engine_free(drafts[di].e);
		model_close(drafts[di].m);
	}
	engine_free(et);
	model_close(mt);
	backend_free(be);
	chat_template_free(&ct);
	tokenizer_close(tok);
	gguf_close(f);
	return rc == 3 ? 1 : rc;
}
