/* self_draft.h: the quantized self-copy of a target model that serves as its speculative
 * draft when no smaller model shares its tokenizer ("self:int8", "self:int4", "self:fp8"):
 * built once with round-to-nearest (no calibration) into the data home's artifacts cache,
 * keyed by the parent file's sha256 and the recipe, checked before reuse.
 *
 * Cache file: <artifacts_dir>/draft-<first 16 hex of parent sha256>-<method>.gguf, an
 * optstudio GGUF (quantize.h) whose optstudio.parent.sha256 is the parent's full digest and
 * whose optstudio.recipe is the draft recipe's JSON. A file that does not open as GGUF, or
 * whose digest or recipe differ, is rebuilt, never trusted. */
#ifndef OPTSTUDIO_SELF_DRAFT_H
#define OPTSTUDIO_SELF_DRAFT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/errors.h"
#include "core/optimize/quantize.h"

/* The recipe of a self-draft kind: "int8" (INT8 W8A8 RTN), "int4" (INT4 W4A16 RTN, group
 * 128, narrower where the width asks for it) or "fp8" (FP8 E4M3 W8A16). The head (embedding
 * and output) takes the method's format too (QUANT_HEAD_METHOD): a draft trades accuracy for
 * speed, and a 16-bit tied head of a small model is a large share of its step (SmolLM2's
 * 49152 x 576 head is a third of its weights). OS_EUSAGE for another kind. */
int self_draft_recipe(const char *kind, quant_recipe *out, os_error *err);

/* The cache path for (parent digest, recipe) into buf (len bytes). OS_ERANGE when it does
 * not fit, OS_EUSAGE when parent_sha256 is not 64 hex digits. */
int self_draft_path(const char *artifacts_dir, const char *parent_sha256, const quant_recipe *r,
		    char *buf, size_t len, os_error *err);

/* Checks that path is a usable self-draft of the parent with digest parent_sha256 under r:
 * it opens as GGUF (every tensor bounds-checked against the file), its
 * optstudio.parent.sha256 equals parent_sha256 and its optstudio.recipe equals r's JSON.
 * OS_ENOTFOUND when absent; OS_EFORMAT naming the mismatch otherwise. */
int self_draft_check(const char *path, const char *parent_sha256, const quant_recipe *r,
		     os_error *err);

/* What self_draft_ensure needs beyond the target and recipe. */
typedef struct self_draft_opts {
	const char *artifacts_dir;  /* the cache folder (created if missing), required */
	const char *parent_sha256;  /* hex digest of the target file if known (the hub has it),
				     * else NULL: computed here (one read of the file) */
	const char *parent_name;    /* recorded in the file, NULL: the target's base name */
	quant_progress_fn progress; /* may be NULL */
	void *progress_ctx;
} self_draft_opts;

/* What self_draft_ensure did. Plain data. */
typedef struct self_draft_result {
	char path[4096];            /* the draft file (valid on OS_OK) */
	char parent_sha256[65];     /* the parent's digest used for the key */
	bool cached;                /* true: a valid file was there and was reused */
	double build_s;             /* seconds spent building (0 when cached) */
	char rebuilt_why[512];      /* non-empty when a file was there but rejected: why */
} self_draft_result;

/* Makes sure the self-draft of target_path under r exists in the cache and is valid, building
 * it when absent or invalid: loads the target at F32 and writes it quantized with
 * quant_write_gguf (atomic: a failed or concurrent build never leaves a partial file under
 * the cache name). r must not calibrate (OS_EUSAGE for SmoothQuant / AWQ). A target that is
 * itself quantized fails with quant_write_gguf's OS_EUSAGE. Fills out. */
int self_draft_ensure(const char *target_path, const quant_recipe *r, const self_draft_opts *o,
		      self_draft_result *out, os_error *err);

#endif
