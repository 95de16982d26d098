/* bench_spec.c: greedy decode speed with and without speculative decoding in one process, over
 * three kinds of prompt (chat answer, code, summarising a given passage), with the quantized
 * self-drafts (self:int8, self:int4, self:fp8: core/optimize/self_draft.h's recipes, applied in
 * memory), prompt-lookup n-grams and optionally the BF16 self-draft and draft files.
 *   bench_spec [MODEL.gguf] [-n TOKENS] [--threads N] [--reps R] [--ks 2,4] [--bf16]
 *              [--bf16-head] [--draft-file F]... [--costs-only]
 * MODEL defaults to $OPTSTUDIO_DEMO_MODEL. The target runs F32 run-time weights. Each cell runs
 * R (plain, speculative) pairs back to back (A/B/A/B) and reports the medians of tok/s and of
 * the pairwise speed-ups, and the spread of those speed-ups (min..max) as the noise. Every
 * speculative output is checked against the plain run's, token for token. The cost table
 * measures c (one draft step in target steps) and v_k (a k+1-token verification in target
 * steps) and prints the expected speed-up (1 - a^(k+1)) / ((1 - a)(k c + 1)) (and with v_k in
 * place of 1) next to the measured one. --bf16-head adds self:int8 with a BF16 head (the
 * quantize default) to show what the head costs a draft. */
#include <math.h>
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
#include "core/optimize/self_draft.h"

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

/* One draft under test: its engine (NULL for n-grams) and its counters per k (last: auto). */
#define MAX_KS 6
typedef struct bench_draft {
	char label[64];
	int kind;
	model *m;
	engine *e;
	double c;                      /* measured: one draft step in plain target steps */
	double c_bytes;                /* step bytes ratio draft / target */
	spec_metrics by_k[MAX_KS + 1]; /* [n_ks]: adaptive */
	double speedup[MAX_KS + 1];    /* sum over prompts of the median pairwise speed-up */
} bench_draft;

#define MAX_DRAFTS 10

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
}

/* A quantized self-draft in memory: the target's file at F32, quantized as the self-draft
 * recipe of kind says (head: QUANT_HEAD_METHOD unless bf16_head). */
static int self_quant_draft(gguf_file *f, const char *kind, bool bf16_head, model **m,
			    os_error *err)
{
	quant_recipe r;
	model_load_opts lo = {.weight_format = BE_WFMT_F32};
	int rc = self_draft_recipe(kind, &r, err);
	if (rc)
		return rc;
	if (bf16_head)
		r.head = QUANT_HEAD_BF16;
	if ((rc = model_open_gguf(m, f, &lo, err)))
		return rc;
	return quant_model_apply(*m, &r, NULL, NULL, err);
}

int main(int argc, char **argv)
{
	const char *path = getenv("OPTSTUDIO_DEMO_MODEL");
	const char *files[MAX_DRAFTS];
	size_t n_files = 0, n_new = 64, n_threads = 0, reps = 3, ks[MAX_KS] = {2, 4}, n_ks = 2;
	bool costs_only = false, with_bf16 = false, bf16_head = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			n_new = (size_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--costs-only"))
			costs_only = true;
		else if (!strcmp(argv[i], "--bf16"))
			with_bf16 = true;
		else if (!strcmp(argv[i], "--bf16-head"))
			bf16_head = true;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			n_threads = (size_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = (size_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ks") && i + 1 < argc) {
			char *q = argv[++i];
			for (n_ks = 0; *q && n_ks < MAX_KS;) {
				size_t k = strtoul(q, &q, 10);
				if (k >= 1 && k <= SPEC_MAX_K)
					ks[n_ks++] = k;
				q += *q == ',';
			}
		} else if (!strcmp(argv[i], "--draft-file") && i + 1 < argc && n_files < 3)
			files[n_files++] = argv[++i];
		else
			path = argv[i];
	}
	if (!path || !*path || !n_new || !reps || reps > 32) {
		fprintf(stderr, "usage: bench_spec [MODEL.gguf] [-n TOKENS] [--threads N] [--reps R] "
				"[--ks 2,4] [--bf16] [--bf16-head] [--draft-file F]... [--costs-only]\n"
				"(MODEL defaults to $OPTSTUDIO_DEMO_MODEL; R in 1..32)\n");
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
	/* drafts: the quantized self-copies, n-grams, then the optional ones */
	static const char *kinds[] = {"int8", "int4", "fp8"};
	for (size_t i = 0; i < (size_t)(bf16_head ? 4 : 3); i++) {
		bench_draft *bd = &drafts[n_drafts++];
		const char *kind = kinds[i < 3 ? i : 0];
		snprintf(bd->label, sizeof bd->label, "self:%s%s", kind, i < 3 ? "" : "/bf16-head");
		bd->kind = SPEC_DRAFT_MODEL;
		if (self_quant_draft(f, kind, i >= 3, &bd->m, &err) ||
		    engine_new(&bd->e, bd->m, be, &eo, &err)) {
			fprintf(stderr, "bench_spec: self:%s draft: %s\n", kind, err.msg);
			return 1;
		}
	}
	bench_draft *bd = &drafts[n_drafts++];
	snprintf(bd->label, sizeof bd->label, "ngram");
	bd->kind = SPEC_DRAFT_NGRAM;
	if (with_bf16) {
		bd = &drafts[n_drafts++];
		snprintf(bd->label, sizeof bd->label, "self:bf16");
		bd->kind = SPEC_DRAFT_MODEL;
		if (model_open_gguf(&bd->m, f, &lo_d, &err) || engine_new(&bd->e, bd->m, be, &eo, &err)) {
			fprintf(stderr, "bench_spec: BF16 self-draft: %s\n", err.msg);
			return 1;
		}
	}
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

	/* the costs first: c per draft and v_k, interleaved (target, each draft) rounds */
	double tt1[8] = {0}, tv[MAX_KS][8] = {{0}}, td[MAX_DRAFTS][8] = {{0}};
	int rc = 0;
	for (int round = 0; round < 7 && !rc; round++) {
		rc = time_forward(et, 1, 5, &tt1[round], &err);
		for (size_t i = 0; i < n_ks && !rc; i++)
			rc = time_forward(et, ks[i] + 1, 5, &tv[i][round], &err);
		for (size_t d = 0; d < n_drafts && !rc; d++)
			if (drafts[d].e)
				rc = time_forward(drafts[d].e, 1, 5, &td[d][round], &err);
	}
	if (rc) {
		fprintf(stderr, "bench_spec: timing: %s\n", err.msg);
		return 1;
	}
	double t1 = median(tt1, 7), vk[MAX_KS];
	for (size_t i = 0; i < n_ks; i++)
		vk[i] = median(tv[i], 7) / t1;
	printf("bench_spec: %s, target F32, %zu new tokens per run, greedy, %zu A/B pairs per "
	       "cell; machine shared: medians, spread = min..max of the pairwise speed-ups\n\n",
	       path, n_new, reps);
	printf("forward cost (median of 7 interleaved rounds, each a median of 5, after a "
	       "64-token context):\n  target F32, 1 token: %.2f ms (%.1f MB per step)\n", t1,
	       model_step_bytes(mt) / 1e6);
	for (size_t i = 0; i < n_ks; i++)
		printf("  verify k=%zu (%zu tokens): v = %.2f target steps\n", ks[i], ks[i] + 1, vk[i]);
	for (size_t d = 0; d < n_drafts; d++) {
		bench_draft *dr = &drafts[d];
		if (!dr->e)
			continue;
		dr->c = median(td[d], 7) / t1;
		dr->c_bytes = (double)model_step_bytes(dr->m) / (double)model_step_bytes(mt);
		printf("  draft %-22s 1 token: %.2f ms, c = %.3f target steps (step bytes %.1f MB, "
		       "ratio %.3f)\n", dr->label, median(td[d], 7), dr->c,
		       model_step_bytes(dr->m) / 1e6, dr->c_bytes);
	}
	if (costs_only)
		goto out;

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
	printf("\nexpected = (1 - a^(k+1)) / ((1 - a)(k c + 1)) with a = the cell's acceptance, c "
	       "measured above; expected_v: with v_k in place of 1\n");
	printf("%-8s %-22s %4s %7s %7s %8s %11s %7s %7s %8s %10s %5s\n", "prompt", "draft", "k",
	       "tok/s", "plain", "speedup", "spread", "accept", "meanlen", "expected", "expected_v",
	       "same");
	fflush(stdout);
	for (size_t pi = 0; pi < 3 && !rc; pi++) {
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
		run_result base;
		if ((rc = run_one(et, NULL, SPEC_DRAFT_NONE, 1, false, stop, n_stop, ids, n_ids, n_new,
				  &base, &err)))
			break;
		printf("%-8s (%zu prompt tokens, %zu generated)\n", prompts[pi].kind, n_ids,
		       base.n_out);
		for (size_t di = 0; di < n_drafts && !rc; di++) {
			bench_draft *dr = &drafts[di];
			for (size_t ki = 0; ki <= n_ks && !rc; ki++) {
				bool adaptive = ki == n_ks;
				size_t k = adaptive ? 4 : ks[ki];
				double tps[32], btps[32], sp[32], lo = 1e9, hi = 0;
				spec_metrics cell = {0};
				bool same = true;
				for (size_t r = 0; r < reps && !rc; r++) {
					run_result b2, rr;
					if ((rc = run_one(et, NULL, SPEC_DRAFT_NONE, 1, false, stop, n_stop,
							  ids, n_ids, n_new, &b2, &err)))
						break;
					btps[r] = spec_metrics_tok_s(&b2.m);
					free(b2.out);
					if ((rc = run_one(et, dr->e, dr->kind, k, adaptive, stop, n_stop,
							  ids, n_ids, n_new, &rr, &err)))
						break;
					tps[r] = spec_metrics_tok_s(&rr.m);
					sp[r] = btps[r] > 0 ? tps[r] / btps[r] : 0;
					lo = sp[r] < lo ? sp[r] : lo;
					hi = sp[r] > hi ? sp[r] : hi;
					same = same && same_output(&base, &rr);
					spec_metrics_add(&cell, &rr.m);
					free(rr.out);
				}
				if (rc)
					break;
				double a = spec_metrics_acceptance(&cell), c = dr->e ? dr->c : 0;
				double gain = a < 1 ? (1 - pow(a, (double)k + 1)) / (1 - a) : (double)k + 1;
				char kbuf[16], ebuf[16] = "-", evbuf[16] = "-", spread[32];
				snprintf(kbuf, sizeof kbuf, adaptive ? "auto" : "%zu", k);
				if (!adaptive) {
					snprintf(ebuf, sizeof ebuf, "%.2fx", gain / ((double)k * c + 1));
					snprintf(evbuf, sizeof evbuf, "%.2fx",
						 gain / ((double)k * c + vk[ki]));
				}
				double msp = median(sp, reps);
				snprintf(spread, sizeof spread, "%.2f..%.2f", lo, hi);
				printf("%-8s %-22s %4s %7.1f %7.1f %7.2fx %11s %6.1f%% %7.2f %8s %10s %5s\n",
				       prompts[pi].kind, dr->label, kbuf, median(tps, reps),
				       median(btps, reps), msp, spread, 100 * a,
				       spec_metrics_mean_accepted(&cell), ebuf, evbuf,
				       same ? "yes" : "NO");
				fflush(stdout);
				if (!same)
					rc = 3;
				spec_metrics_add(&dr->by_k[ki], &cell);
				dr->speedup[ki] += msp / 3;
			}
		}
		free(base.out);
		free(ids);
	}
	if (rc == 1 || (rc && rc != 3))
		fprintf(stderr, "bench_spec: %s\n", err.msg);
	for (size_t pi = 0; pi < 3; pi++)
		free(prompts[pi].text);
	if (rc)
		goto out;
	printf("\nacceptance by k (all prompts): acceptance, tokens per target call, acceptance "
	       "at positions 1..k (%%), mean over prompts of the median speed-up\n");
	for (size_t di = 0; di < n_drafts; di++) {
		bench_draft *dr = &drafts[di];
		for (size_t i = 0; i <= n_ks; i++) {
			bool adaptive = i == n_ks;
			const spec_metrics *m = &dr->by_k[i];
			char kbuf[16];
			snprintf(kbuf, sizeof kbuf, adaptive ? "auto" : "%zu", adaptive ? 0 : ks[i]);
			printf("  %-22s k=%-4s %5.1f%% %5.2f  [", dr->label, kbuf,
			       100 * spec_metrics_acceptance(m), spec_metrics_mean_accepted(m));
			for (size_t j = 0; j < SPEC_MAX_K && m->proposed_at[j]; j++)
				printf("%s%.0f", j ? " " : "", 100 * spec_metrics_acceptance_at(m, j));
			printf("] %.2fx\n", dr->speedup[i]);
		}
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
