/* cmd_spec.c: speculative decoding on the command line: --draft resolution over the hub,
 * generation with a draft (streamed, with acceptance and speed-up stats) and the
 * `hub recommend-draft` report. */
#include "cmd_spec.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/cpu/backend_cpu.h"
#include "core/engine/speculative.h"
#include "core/jobs/draft_resolve.h"
#include "core/format/sha256.h"
#include "core/optimize/self_draft.h"
#include "hub_ops.h"
#include "progress.h"

int spec_draft_resolve(store *hub, const char *arg, const char *target_path, draft_spec *out,
		       os_error *err)
{
	memset(out, 0, sizeof *out);
	int kind = draft_arg_kind(arg);
	if (kind == DRAFT_ARG_NGRAM)
		return draft_ngram(out, err);
	if (kind == DRAFT_ARG_SELF)
		return draft_self_bf16(target_path, out, err);
	if (kind == DRAFT_ARG_SELF_QUANT)
		return draft_self_quant(target_path, arg + strlen("self:"), out, err);
	store *own = NULL;
	int rc = OS_OK;
	if (!hub) {
		/* the hub is optional for a file path; needed for names and "recommended" */
		os_error herr;
		if (hub_open(&own, &herr) == OS_OK)
			hub = own;
		else if (kind == DRAFT_ARG_RECOMMENDED)
			rc = os_error_set(err, herr.rc, "%s", herr.msg);
	}
	if (rc)
		goto done;
	if (kind == DRAFT_ARG_RECOMMENDED) {
		rc = draft_resolve_recommend(hub, target_path, out, err);
		goto done;
	}
	store_model m = {0};
	if (hub && store_model_get(hub, arg, &m, NULL) == OS_OK) {
		rc = draft_from_file(target_path, m.path, m.name, out, err);
		store_model_clear(&m);
		goto done;
	}
	if (access(arg, F_OK) != 0 && !strchr(arg, '/') && !strstr(arg, ".gguf")) {
		rc = os_error_set(err, OS_ENOTFOUND, "draft '%s' is no hub model and no file; use "
				  "recommended, ngram, self:bf16, a hub name ('optstudio hub list') "
				  "or a GGUF path", arg);
		goto done;
	}
	rc = draft_from_file(target_path, arg, NULL, out, err);
done:
	if (own)
		store_close(own);
	return rc;
}

/* The hub's sha256 of target_path into sha (65 bytes), or "" when the hub has no row for it. */
static void hub_sha_of(store *hub, const char *target_path, char *sha)
{
	model_info ti;
	store_model *v = NULL;
	size_t n = 0;
	sha[0] = 0;
	if (!hub || model_info_read(target_path, &ti, NULL) || !ti.vocab_hash[0] ||
	    store_model_list_by_vocab(hub, ti.vocab_hash, &v, &n, NULL))
		return;
	for (size_t i = 0; i < n; i++)
		if (v[i].path && v[i].sha256 && !strcmp(v[i].path, target_path)) {
			snprintf(sha, 65, "%s", v[i].sha256);
			break;
		}
	store_model_list_free(v, n);
}

/* The artifacts folder of the hub's home into buf; false when there is no home. */
static bool artifacts_dir(store *hub, char *buf, size_t len)
{
	const char *home = hub ? store_home(hub) : NULL;
	if (!home)
		return false;
	int n = snprintf(buf, len, "%s/artifacts", home);
	return n > 0 && (size_t)n < len;
}

typedef struct build_bar {
	progress *bar;
	bool quiet;
} build_bar;

static bool on_build(void *ctx, const char *stage, size_t done, size_t total)
{
	build_bar *b = ctx;
	(void)stage;
	if (!b->bar)
		b->bar = progress_new("self-draft", "tensors", total, b->quiet, NULL);
	progress_update(b->bar, done);
	return true;
}

int spec_draft_build(store *hub, const char *target_path, draft_spec *d, bool quiet,
		     self_draft_result *res, os_error *err)
{
	memset(res, 0, sizeof *res);
	if (d->source != DRAFT_SRC_SELF_QUANT)
		return OS_OK;
	store *own = NULL;
	quant_recipe r;
	char dir[4096], sha[65];
	build_bar bb = {.quiet = quiet};
	int rc = self_draft_recipe(d->self_quant, &r, err);
	if (rc)
		return rc;
	if (!hub) {
		if ((rc = hub_open(&own, err)))
			return os_error_set(err, rc, "the quantized self-draft is cached in the data "
					    "home, which cannot be opened: %s", err->msg);
		hub = own;
	}
	if (!artifacts_dir(hub, dir, sizeof dir)) {
		rc = os_error_set(err, OS_ERANGE, "the data home's path is too long");
		goto done;
	}
	hub_sha_of(hub, target_path, sha);
	self_draft_opts o = {.artifacts_dir = dir, .parent_sha256 = sha[0] ? sha : NULL,
			     .progress = on_build, .progress_ctx = &bb};
	if ((rc = self_draft_ensure(target_path, &r, &o, res, err)))
		goto done;
	char *p = strdup(res->path);
	if (!p) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	free(d->path);
	d->path = p;
	d->weight_format = BE_WFMT_F32; /* the file's own formats (quantized, head included) */
done:
	progress_finish(bb.bar);
	if (own)
		store_close(own);
	return rc;
}

int spec_hub_recommend_draft(store *hub, const char *model_arg, bool json)
{
	os_error err = {0};
	char *path = NULL;
	if (hub_resolve_model(hub, model_arg, &path, &err) != OS_OK)
		return cli_fail(&err, "cannot recommend a draft for '%s'", model_arg);
	draft_spec d;
	model_info ti;
	int rc = model_info_read(path, &ti, &err);
	if (rc == OS_OK)
		rc = draft_resolve_recommend(hub, path, &d, &err);
	if (rc != OS_OK) {
		free(path);
		return cli_fail(&err, "cannot recommend a draft for '%s'", model_arg);
	}
	char qreason[256];
	const char *quant = draft_self_quant_recommendation(&ti, qreason, sizeof qreason);
	const char *rec = d.source == DRAFT_SRC_HUB ? d.name : quant;
	/* is the self-copy in the cache already? (a cheap header check, no build) */
	char cached[4096] = "";
	if (d.source == DRAFT_SRC_SELF_QUANT) {
		quant_recipe r;
		char dir[4096], sha[65];
		hub_sha_of(hub, path, sha);
		if (!sha[0] && sha256_file(path, sha, NULL) != OS_OK)
			sha[0] = 0; /* a file outside the hub: one read to find its cache key */
		if (sha[0] && artifacts_dir(hub, dir, sizeof dir) &&
		    !self_draft_recipe(d.self_quant, &r, NULL) &&
		    !self_draft_path(dir, sha, &r, cached, sizeof cached, NULL) &&
		    self_draft_check(cached, sha, &r, NULL) != OS_OK)
			cached[0] = 0;
	}
	int ex = EXIT_OK;
	if (json) {
		cJSON *o = cJSON_CreateObject();
		char *s = NULL;
		if (o) {
			cJSON_AddStringToObject(o, "model", model_arg);
			cJSON_AddStringToObject(o, "recommended", rec);
			cJSON_AddStringToObject(o, "kind", d.source == DRAFT_SRC_HUB ? "hub" : "self");
			if (d.source == DRAFT_SRC_SELF_QUANT) {
				if (cached[0])
					cJSON_AddStringToObject(o, "path", cached);
				else
					cJSON_AddNullToObject(o, "path");
				cJSON_AddBoolToObject(o, "built", cached[0] != 0);
			} else if (d.path) {
				cJSON_AddStringToObject(o, "path", d.path);
			}
			cJSON_AddStringToObject(o, "reason", d.reason);
			s = cJSON_Print(o);
		}
		if (s) {
			puts(s);
		} else {
			ex = EXIT_FAIL;
			cli_error("out of memory formatting JSON");
		}
		cJSON_free(s);
		cJSON_Delete(o);
	} else {
		printf("recommended draft for %s: %s\n", model_arg, rec);
		printf("why: %s\n", d.reason);
		if (d.source == DRAFT_SRC_SELF_QUANT)
			printf("built: %s\n", cached[0] ? cached : "not yet (built once, in seconds, "
			       "on the first run with --draft recommended, then cached)");
		printf("use now: optstudio run %s --draft %s -p ...\n", model_arg,
		       d.source == DRAFT_SRC_HUB ? d.name : "recommended");
	}
	draft_spec_clear(&d);
	free(path);
	return ex;
}

/* ---- run --draft ------------------------------------------------------------------------ */

/* A growing byte string; ok goes false on the first failed allocation. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool ok;
} sbuf;

static void sbuf_add(sbuf *b, const char *s, size_t n)
{
	if (!b->ok || !n)
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
	b->p[b->len] = 0;
}

/* The end-of-generation tokens of the vocabulary (malloc'd). */
static int32_t *eog_tokens(const tokenizer *t, size_t *n)
{
	size_t V = tokenizer_n_vocab(t), c = 0;
	for (size_t i = 0; i < V; i++)
		c += tokenizer_is_eog(t, (int32_t)i);
	int32_t *v = malloc((c ? c : 1) * sizeof *v);
	if (!v)
		return NULL;
	c = 0;
	for (size_t i = 0; i < V; i++)
		if (tokenizer_is_eog(t, (int32_t)i))
			v[c++] = (int32_t)i;
	*n = c;
	return v;
}

/* The plain run for the speed-up: same engine, settings and seed, no draft. */
static int baseline_run(engine *e, const spec_cli_args *a, const int32_t *stop, size_t n_stop,
			const int32_t *prompt, size_t n_prompt, size_t n_max, spec_metrics *m,
			int32_t **out, size_t *n_out, os_error *err)
{
	spec_opts o = {.k = 1, .stop = stop, .n_stop = n_stop};
	spec_decoder *sd = NULL;
	int id;
	int rc = spec_new(&sd, e, NULL, SPEC_DRAFT_NONE, &o, &a->sp, err);
	if (rc)
		return rc;
	if (!(rc = spec_seq_add(sd, prompt, n_prompt, n_max, a->sp.seed, &id, err)) &&
	    !(rc = spec_run(sd, err))) {
		size_t n;
		const int32_t *h = spec_seq_tokens(sd, id, &n, NULL);
		*n_out = n - n_prompt;
		*out = malloc((*n_out ? *n_out : 1) * sizeof **out);
		if (*out)
			memcpy(*out, h + n_prompt, *n_out * sizeof **out);
		*m = *spec_get_metrics(sd);
	}
	spec_free(sd);
	return rc;
}

int spec_cli_run(cli_session *s, const spec_cli_args *a, const int32_t *prompt, size_t n_prompt,
		 size_t n_max)
{
	os_error err = {0};
	draft_spec ds = {0};
	model *dm = NULL;
	engine *de = NULL;
	spec_decoder *sd = NULL;
	tokenizer_stream *ts = NULL;
	int32_t *stop = NULL, *base_out = NULL, *gen = NULL;
	size_t n_stop = 0, n_base = 0;
	sbuf text = {.ok = true};
	int ex = EXIT_FAIL;

	if (n_max == 0) {
		cli_error("--draft needs at least one token to generate (-n 0 given)");
		return EXIT_USAGE;
	}
	if (spec_draft_resolve(NULL, a->draft_arg, s->path, &ds, &err) != OS_OK) {
		ex = cli_fail(&err, "speculative decoding");
		goto done;
	}
	self_draft_result built;
	if (spec_draft_build(NULL, s->path, &ds, a->json, &built, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot build the draft %s", ds.label);
		goto done;
	}
	if (ds.source == DRAFT_SRC_SELF_QUANT && !a->json) {
		if (built.rebuilt_why[0])
			fprintf(stderr, "optstudio: draft: the cached copy was rejected and rebuilt "
				"(%s)\n", built.rebuilt_why);
		if (built.cached)
			fprintf(stderr, "optstudio: draft: %s (cached at %s)\n", ds.label, built.path);
		else
			fprintf(stderr, "optstudio: draft: %s (built in %.1f s, cached at %s)\n",
				ds.label, built.build_s, built.path);
	}
	if (ds.reason[0] && !a->json)
		fprintf(stderr, "optstudio: draft: %s (%s)\n", ds.label, ds.reason);
	/* KV: prompt + output + the k+1 positions a round may add before rolling back */
	size_t kv_tokens = n_prompt + n_max + SPEC_MAX_K + 1;
	size_t blocks = (kv_tokens + KV_DEFAULT_BLOCK_TOKENS - 1) / KV_DEFAULT_BLOCK_TOKENS;
	if ((ex = cli_session_start_engine(s, blocks, 0)) != EXIT_OK)
		goto done;
	ex = EXIT_FAIL;
	int kind = ds.source == DRAFT_SRC_NGRAM ? SPEC_DRAFT_NGRAM : SPEC_DRAFT_MODEL;
	if (kind == SPEC_DRAFT_MODEL) {
		model_load_opts lo = {.weight_format = ds.weight_format};
		if (model_open(&dm, ds.path, &lo, &err) != OS_OK) {
			ex = cli_fail(&err, "cannot load draft '%s'", a->draft_arg);
			goto done;
		}
		engine_opts eo = {
			.kv_bytes = blocks * KV_DEFAULT_BLOCK_TOKENS *
				    model_kv_bytes_per_pos(dm, model_kv_format(dm)),
			.kv_block_tokens = KV_DEFAULT_BLOCK_TOKENS,
		};
		if (engine_new(&de, dm, s->be, &eo, &err) != OS_OK) {
			ex = cli_fail(&err, "cannot start the draft engine");
			goto done;
		}
	}
	if (!(stop = eog_tokens(s->tok, &n_stop))) {
		cli_error("out of memory");
		goto done;
	}
	spec_opts o = {.k = a->k, .adaptive = a->adaptive, .stop = stop, .n_stop = n_stop};
	if (spec_new(&sd, s->e, de, kind, &o, &a->sp, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot start speculative decoding");
		goto done;
	}
	if (tokenizer_stream_new(&ts, s->tok, TOKENIZER_DECODE_SKIP_CONTROL, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot start the decoder");
		goto done;
	}
	int id;
	if (spec_seq_add(sd, prompt, n_prompt, n_max, a->sp.seed, &id, &err) != OS_OK) {
		ex = cli_fail(&err, "forward pass over the prompt failed");
		goto done;
	}
	const char *stop_why = "length";
	size_t n_act;
	do {
		if (spec_step(sd, &n_act, &err) != OS_OK) {
			ex = cli_fail(&err, "speculative decoding failed");
			goto done;
		}
		size_t n, from;
		const int32_t *h = spec_seq_tokens(sd, id, &n, &from);
		for (size_t i = from; i < n; i++) {
			if (tokenizer_is_eog(s->tok, h[i])) {
				stop_why = "eog";
				break;
			}
			size_t len;
			const char *piece = tokenizer_stream_push(ts, h[i], &len);
			if (a->json)
				sbuf_add(&text, piece, len);
			else if (len)
				fwrite(piece, 1, len, stdout);
		}
		if (!a->json)
			fflush(stdout);
	} while (n_act);
	size_t len;
	const char *rest = tokenizer_stream_flush(ts, &len);
	if (a->json)
		sbuf_add(&text, rest, len);
	else if (len)
		fwrite(rest, 1, len, stdout);
	if (!a->json) {
		if (isatty(STDOUT_FILENO))
			fputc('\n', stdout);
		fflush(stdout);
	}
	spec_metrics m = *spec_get_metrics(sd);
	size_t n_hist;
	const int32_t *h = spec_seq_tokens(sd, id, &n_hist, NULL);
	size_t n_out = n_hist - n_prompt; /* the stop token included */
	size_t n_gen = n_out - (!strcmp(stop_why, "eog") ? 1 : 0);
	if (!(gen = malloc((n_out ? n_out : 1) * sizeof *gen))) {
		cli_error("out of memory");
		goto done;
	}
	memcpy(gen, h + n_prompt, n_out * sizeof *gen);
	spec_free(sd); /* gives the KV space back for the baseline */
	sd = NULL;

	/* the speed-up: the same prompt decoded again without a draft, right now, same engine */
	spec_metrics bm = {0};
	bool identical = false;
	if (a->baseline) {
		if (baseline_run(s->e, a, stop, n_stop, prompt, n_prompt, n_max, &bm, &base_out,
				 &n_base, &err) != OS_OK) {
			ex = cli_fail(&err, "the baseline run (no draft) failed");
			goto done;
		}
		identical = base_out && n_base == n_out &&
			    !memcmp(base_out, gen, n_base * sizeof *base_out);
	}
	double tps = spec_metrics_tok_s(&m), btps = spec_metrics_tok_s(&bm);
	double prompt_tps = m.prefill_ms > 0 ? (double)n_prompt / (m.prefill_ms / 1e3) : 0;
	char kdesc[32];
	snprintf(kdesc, sizeof kdesc, a->adaptive ? "auto" : "%zu", a->k);
	if (a->json) {
		cJSON *jo = cJSON_CreateObject();
		cJSON *sp = jo ? cJSON_AddObjectToObject(jo, "speculative") : NULL;
		char *js = NULL;
		if (sp && text.ok) {
			cJSON_AddStringToObject(jo, "text", text.p ? text.p : "");
			cJSON *arr = cJSON_AddArrayToObject(jo, "tokens");
			for (size_t i = 0; arr && i < n_gen; i++)
				cJSON_AddItemToArray(arr, cJSON_CreateNumber(gen[i]));
			cJSON_AddNumberToObject(jo, "prompt_tokens", (double)n_prompt);
			cJSON_AddNumberToObject(jo, "generated_tokens", (double)n_gen);
			cJSON_AddNumberToObject(jo, "prompt_tok_s", prompt_tps);
			cJSON_AddNumberToObject(jo, "gen_tok_s", tps);
			cJSON_AddNumberToObject(jo, "ms_per_token", m.n_emitted ? m.decode_ms / (double)m.n_emitted : 0);
			cJSON_AddStringToObject(jo, "stop", stop_why);
			cJSON_AddNumberToObject(jo, "seed", (double)a->sp.seed);
			cJSON_AddNumberToObject(jo, "temperature", a->sp.temperature);
			cJSON_AddStringToObject(sp, "draft", ds.label);
			if (ds.source == DRAFT_SRC_SELF_QUANT) {
				cJSON_AddStringToObject(sp, "draft_path", ds.path);
				cJSON_AddBoolToObject(sp, "draft_cached", built.cached);
				cJSON_AddNumberToObject(sp, "draft_build_s", built.build_s);
				if (built.rebuilt_why[0])
					cJSON_AddStringToObject(sp, "draft_rebuilt_why", built.rebuilt_why);
			}
			if (ds.reason[0])
				cJSON_AddStringToObject(sp, "draft_reason", ds.reason);
			cJSON_AddStringToObject(sp, "k", kdesc);
			cJSON_AddNumberToObject(sp, "acceptance_rate", spec_metrics_acceptance(&m));
			cJSON_AddNumberToObject(sp, "mean_accepted_length", spec_metrics_mean_accepted(&m));
			cJSON_AddNumberToObject(sp, "proposed", (double)m.n_proposed);
			cJSON_AddNumberToObject(sp, "accepted", (double)m.n_accepted);
			cJSON_AddNumberToObject(sp, "target_calls", (double)m.n_target_calls);
			cJSON *bp = cJSON_AddArrayToObject(sp, "acceptance_by_position");
			for (size_t i = 0; bp && i < SPEC_MAX_K && m.proposed_at[i]; i++)
				cJSON_AddItemToArray(bp, cJSON_CreateNumber(spec_metrics_acceptance_at(&m, i)));
			double dms = m.decode_ms > 0 ? m.decode_ms : 1;
			cJSON_AddNumberToObject(sp, "draft_share", m.draft_ms / dms);
			cJSON_AddNumberToObject(sp, "verify_share", m.verify_ms / dms);
			cJSON_AddNumberToObject(sp, "tok_s", tps);
			if (a->baseline) {
				cJSON_AddNumberToObject(sp, "baseline_tok_s", btps);
				cJSON_AddNumberToObject(sp, "speedup", btps > 0 ? tps / btps : 0);
				cJSON_AddBoolToObject(sp, "identical_to_baseline", identical);
			}
			js = cJSON_Print(jo);
		}
		if (!js) {
			cli_error("out of memory formatting JSON");
			cJSON_Delete(jo);
			goto done;
		}
		puts(js);
		cJSON_free(js);
		cJSON_Delete(jo);
	} else {
		char seed[48] = "", speed[160] = "";
		if (a->sp.temperature > 0)
			snprintf(seed, sizeof seed, ", seed %llu", (unsigned long long)a->sp.seed);
		/* greedy output parts from the plain one only where the kernels sum a verified
		 * token in another order than a lone one: say what makes it exact */
		bool invariant = backend_cpu_kernels(s->be)->batch_invariant;
		if (a->baseline)
			snprintf(speed, sizeof speed, ", speed-up %.2fx vs no draft (%.1f tok/s, same "
				 "run%s)", btps > 0 ? tps / btps : 0, btps,
				 a->sp.temperature > 0 ? ""
				 : identical	       ? ", identical output"
				 : invariant	       ? ", OUTPUT DIFFERS"
						       : ", OUTPUT DIFFERS at a near-tie: --batch-invariant "
							 "makes it exact");
		fprintf(stderr,
			"prompt %zu tokens, %.1f tok/s | generated %zu tokens, %.1f tok/s, %.2f "
			"ms/token (stop: %s%s) | draft %s, k %s: acceptance %.1f%%, mean accepted "
			"length %.2f%s\n",
			n_prompt, prompt_tps, n_gen, tps,
			m.n_emitted ? m.decode_ms / (double)m.n_emitted : 0, stop_why, seed, ds.label,
			kdesc, 100 * spec_metrics_acceptance(&m), spec_metrics_mean_accepted(&m), speed);
	}
	ex = EXIT_OK;
done:
	free(text.p);
	free(base_out);
	free(gen);
	free(stop);
	tokenizer_stream_free(ts);
	spec_free(sd);
	engine_free(de);
	model_close(dm);
	draft_spec_clear(&ds);
	return ex;
}
