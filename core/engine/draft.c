/* draft.c: draft sources for speculative decoding (recommended, hub, file, self, ngram) and the
 * identical-tokenizer check. */
#include "draft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

int draft_arg_kind(const char *arg)
{
	if (!strcmp(arg, "recommended"))
		return DRAFT_ARG_RECOMMENDED;
	if (!strcmp(arg, "ngram") || !strcmp(arg, "prompt-lookup"))
		return DRAFT_ARG_NGRAM;
	if (!strcmp(arg, "self") || !strcmp(arg, "self:bf16"))
		return DRAFT_ARG_SELF;
	if (!strcmp(arg, "self:int8") || !strcmp(arg, "self:int4") || !strcmp(arg, "self:fp8"))
		return DRAFT_ARG_SELF_QUANT;
	return DRAFT_ARG_NAME_OR_PATH;
}

void draft_spec_clear(draft_spec *d)
{
	if (!d)
		return;
	free(d->path);
	free(d->name);
	memset(d, 0, sizeof *d);
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

int draft_check_infos(const model_info *target, const model_info *draft, const char *draft_path,
		      os_error *err)
{
	if (!target->vocab_hash[0])
		return os_error_set(err, OS_EFORMAT, "the target has no tokenizer vocabulary "
				    "(tokenizer.ggml.tokens); cannot check a draft against it");
	if (!draft->vocab_hash[0])
		return os_error_set(err, OS_EFORMAT, "draft '%s' has no tokenizer vocabulary "
				    "(tokenizer.ggml.tokens); speculative decoding needs the "
				    "target's tokenizer", draft_path);
	if (target->vocab_size != draft->vocab_size ||
	    strcmp(target->vocab_hash, draft->vocab_hash) != 0)
		return os_error_set(err, OS_EUNSUPPORTED, "draft '%s' has a different tokenizer (vocab "
				    "%u, hash %.8s\u2026) from the target (vocab %u, hash %.8s\u2026); "
				    "speculative decoding needs identical tokenizers", draft_path,
				    draft->vocab_size, draft->vocab_hash, target->vocab_size,
				    target->vocab_hash);
	return OS_OK;
}

int draft_check_files(const char *target_path, const char *draft_path, os_error *err)
{
	model_info t, d;
	int rc = model_info_read(target_path, &t, err);
	if (rc)
		return rc;
	if ((rc = model_info_read(draft_path, &d, err))) {
		/* model_info_read says "cannot open model 'x': why"; name it as the draft */
		char why[sizeof err->msg];
		snprintf(why, sizeof why, "%s", err->msg);
		return os_error_set(err, rc, "draft '%s': %s", draft_path, why);
	}
	return draft_check_infos(&t, &d, draft_path, err);
}

const char *draft_self_quant_recommendation(const model_info *target, char *reason, size_t len)
{
	if (target->n_params && target->n_params < 1000000000ull) {
		snprintf(reason, len, "a quantized copy of the target itself: INT8 weights read 1/4 "
			 "of the F32 bytes per step and agree with the target almost always; 4-bit "
			 "costs a model under 1B parameters too much agreement");
		return "self:int8";
	}
	snprintf(reason, len, "a quantized copy of the target itself: INT4 (round to nearest, "
		 "group 128) reads 1/8 of the F32 bytes per step; a 1B+ model agrees with "
		 "itself at 4 bits better than SmolLM2-135M does (where INT8 won)");
	return "self:int4";
}

int draft_ngram(draft_spec *out, os_error *err)
{
	(void)err;
	memset(out, 0, sizeof *out);
	out->source = DRAFT_SRC_NGRAM;
	snprintf(out->label, sizeof out->label, "ngram");
	return OS_OK;
}

int draft_self_bf16(const char *target_path, draft_spec *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	out->source = DRAFT_SRC_SELF;
	out->weight_format = BE_WFMT_BF16;
	out->path = dup_str(target_path);
	if (!out->path)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	snprintf(out->label, sizeof out->label, "self:bf16");
	return OS_OK;
}

int draft_self_quant(const char *target_path, const char *kind, draft_spec *out, os_error *err)
{
	if (strcmp(kind, "int8") && strcmp(kind, "int4") && strcmp(kind, "fp8"))
		return os_error_set(err, OS_EUSAGE, "draft 'self:%s' is unknown (expected self:int8, "
				    "self:int4, self:fp8 or self:bf16)", kind);
	int rc = draft_self_bf16(target_path, out, err);
	if (rc)
		return rc;
	out->source = DRAFT_SRC_SELF_QUANT;
	snprintf(out->self_quant, sizeof out->self_quant, "%s", kind);
	snprintf(out->label, sizeof out->label, "self:%s", kind);
	return OS_OK;
}

int draft_from_file(const char *target_path, const char *draft_path, const char *hub_name,
		    draft_spec *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	int rc = draft_check_files(target_path, draft_path, err);
	if (rc)
		return rc;
	out->source = hub_name ? DRAFT_SRC_HUB : DRAFT_SRC_FILE;
	out->weight_format = BE_WFMT_F32;
	out->path = dup_str(draft_path);
	out->name = hub_name ? dup_str(hub_name) : NULL;
	if (!out->path || (hub_name && !out->name)) {
		draft_spec_clear(out);
		return os_error_set(err, OS_ENOMEM, "out of memory");
	}
	if (hub_name)
		snprintf(out->label, sizeof out->label, "hub:%s", hub_name);
	else {
		const char *base = strrchr(draft_path, '/');
		snprintf(out->label, sizeof out->label, "file:%s", base ? base + 1 : draft_path);
	}
	return OS_OK;
}

int draft_recommend(const char *target_path, const model_info *target, int64_t target_id,
		    const draft_candidate *cands, size_t n_cands, draft_spec *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	const draft_candidate *best = NULL;
	for (size_t i = 0; i < n_cands; i++) {
		const draft_candidate *c = &cands[i];
		if (c->id == target_id || !c->vocab_hash || strcmp(c->vocab_hash, target->vocab_hash))
			continue;
		if (target->n_params && c->n_params >= (int64_t)target->n_params)
			continue; /* not smaller: no cheaper than the target itself */
		if (!strcmp(c->path, target_path))
			continue;
		if (!best || c->n_params < best->n_params)
			best = c;
	}
	if (best) {
		int rc = draft_from_file(target_path, best->path, best->name, out, err);
		if (rc)
			return rc;
		snprintf(out->reason, sizeof out->reason, "'%s' is the hub's smallest model with "
			 "the target's tokenizer (%lld parameters against %llu, vocabulary hash "
			 "%.8s\u2026)", best->name, (long long)best->n_params,
			 (unsigned long long)target->n_params, target->vocab_hash);
		return OS_OK;
	}
	char qreason[256];
	const char *q = draft_self_quant_recommendation(target, qreason, sizeof qreason);
	int rc = draft_self_quant(target_path, q + strlen("self:"), out, err);
	if (rc)
		return rc;
	snprintf(out->reason, sizeof out->reason, "no smaller hub model shares the target's "
		 "tokenizer, so %s", qreason);
	return OS_OK;
}
