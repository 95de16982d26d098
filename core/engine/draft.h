/* draft.h: where a speculative-decoding draft comes from: "recommended", a hub model, a
 * custom file, the target itself at another precision ("self:bf16"), or prompt-lookup
 * n-grams ("ngram"); and the tokenizer check every model draft must pass.
 * The hub lookup itself lives above the engine (tui/cmd_spec.c): this module receives the
 * hub's candidates as plain data, so engine code never touches the store. */
#ifndef OPTSTUDIO_DRAFT_H
#define OPTSTUDIO_DRAFT_H

#include <stddef.h>
#include <stdint.h>

#include "../errors.h"
#include "../format/model_info.h"

/* What a --draft argument names, before any lookup. */
enum draft_arg_kind {
	DRAFT_ARG_RECOMMENDED = 0, /* "recommended" */
	DRAFT_ARG_NGRAM = 1,       /* "ngram" (also "prompt-lookup") */
	DRAFT_ARG_SELF = 2,        /* "self" / "self:bf16": the target's file at BF16 run-time weights */
	DRAFT_ARG_SELF_QUANT = 3,  /* "self:int8" / "self:int4" / "self:fp8": a quantized self-copy */
	DRAFT_ARG_NAME_OR_PATH = 4 /* anything else: a hub name first, else a file path */
};

/* Classifies a --draft argument (case-sensitive keywords). Never fails. */
int draft_arg_kind(const char *arg);

/* A resolved draft. Plain data; path and name are malloc'd and owned (draft_spec_clear). */
enum draft_source {
	DRAFT_SRC_NGRAM = 0,  /* no model */
	DRAFT_SRC_HUB = 1,    /* a hub model (name set) */
	DRAFT_SRC_FILE = 2,   /* a custom file */
	DRAFT_SRC_SELF = 3,   /* the target's own file at weight_format */
	DRAFT_SRC_SELF_QUANT = 4, /* a quantized self-copy (self_quant) to be built above the
				   * engine (core/optimize/self_draft.h), which then sets path and
				   * weight_format; until then path is the target's own file at
				   * BF16, so a caller that cannot build still has a working draft */
};
typedef struct draft_spec {
	int source;             /* enum draft_source */
	char *path;             /* the draft's model file; NULL for ngram */
	char *name;             /* hub name or NULL */
	int weight_format;      /* enum be_wfmt of the draft's run-time weights */
	char self_quant[8];     /* DRAFT_SRC_SELF_QUANT: "int8", "int4" or "fp8"; else "" */
	char label[160];        /* short, for stats lines: "ngram", "self:bf16", "hub:smol-35M" */
	char reason[512];       /* why (for "recommended"), else "" */
} draft_spec;

/* Frees path and name and zeroes d. NULL and zeroed structs are fine. */
void draft_spec_clear(draft_spec *d);

/* Refuses a draft whose tokenizer differs from the target's: equal vocabulary size and equal
 * vocab_hash (model_info.h) are required. OS_EUNSUPPORTED with the message
 *   draft 'PATH' has a different tokenizer (vocab N, hash 9b1e2c3d…) from the target
 *   (vocab M, hash 3f9a0b1c…); speculative decoding needs identical tokenizers
 * A model without a vocabulary hash (no token list) is OS_EFORMAT. */
int draft_check_infos(const model_info *target, const model_info *draft, const char *draft_path,
		      os_error *err);
/* The same from files: reads both headers (model_info_read); a missing or unreadable draft
 * is "draft 'PATH': <why>" with model_info_read's code (OS_ENOTFOUND for a missing file). */
int draft_check_files(const char *target_path, const char *draft_path, os_error *err);

/* The quantized self-copy to recommend when the hub has no smaller model with the target's
 * tokenizer (the measured choice, see the reason text and tests/tools/bench_spec.c). Writes
 * the reason to reason. Returns a static string "self:<kind>". */
const char *draft_self_quant_recommendation(const model_info *target, char *reason, size_t len);

/* One hub model that may serve as a draft: plain data, all borrowed. */
typedef struct draft_candidate {
	int64_t id;
	const char *name;
	const char *path;
	const char *vocab_hash;
	int64_t n_params;
} draft_candidate;

/* "recommended": the candidate with the smallest n_params (ties: first given) whose vocab_hash
 * equals the target's, whose id is not target_id and which is smaller than the target; its
 * tokenizer is re-checked from its file. Failing that, the quantized self-copy of
 * draft_self_quant_recommendation (DRAFT_SRC_SELF_QUANT, see draft_self_quant). Fills out
 * (clear it with draft_spec_clear). */
int draft_recommend(const char *target_path, const model_info *target, int64_t target_id,
		    const draft_candidate *cands, size_t n_cands, draft_spec *out, os_error *err);

/* Resolves a draft file path (custom file or hub model's file): checks the tokenizer against
 * the target and fills out with source (DRAFT_SRC_FILE or DRAFT_SRC_HUB with name), F32
 * run-time weights. */
int draft_from_file(const char *target_path, const char *draft_path, const char *hub_name,
		    draft_spec *out, os_error *err);

/* Fills out for "self:<kind>" (kind "int8", "int4" or "fp8"): DRAFT_SRC_SELF_QUANT with
 * self_quant = kind and label "self:<kind>", path the target's file at BF16 until the caller
 * has built the copy. OS_EUSAGE for another kind. */
int draft_self_quant(const char *target_path, const char *kind, draft_spec *out, os_error *err);

/* Fills out for "ngram" or "self[:bf16]" (the target's file at BF16). */
int draft_ngram(draft_spec *out, os_error *err);
int draft_self_bf16(const char *target_path, draft_spec *out, os_error *err);

#endif
