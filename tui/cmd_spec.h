/* cmd_spec.h: speculative decoding on the command line: resolving a --draft argument against
 * the hub, `optstudio run MODEL --draft ...` and `optstudio hub recommend-draft MODEL`. */
#ifndef OPTSTUDIO_CMD_SPEC_H
#define OPTSTUDIO_CMD_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine/draft.h"
#include "core/engine/sampler.h"
#include "core/optimize/self_draft.h"
#include "session.h"
#include "store/store.h"

/* Resolves a --draft argument for the target file target_path: "ngram", "self[:bf16]",
 * "self:int8|int4|fp8", "recommended" (the hub's smallest model with the target's tokenizer,
 * else a quantized self-copy), a hub model name, or a file path. hub may be NULL: the hub is
 * opened when the argument needs it. A different tokenizer or a missing file fail with a
 * message in err. A quantized self-copy comes back as DRAFT_SRC_SELF_QUANT, not yet built:
 * pass it to spec_draft_build. */
int spec_draft_resolve(store *hub, const char *arg, const char *target_path, draft_spec *out,
		       os_error *err);

/* Builds (or reuses from <home>/artifacts) the quantized self-copy d names when d is
 * DRAFT_SRC_SELF_QUANT (core/optimize/self_draft.h), then points d at it (path, F32 load
 * options: the file keeps its quantized formats); any other d is left alone. The key is the
 * target's sha256 (the hub's when it has the file, else computed) and the recipe. quiet: no
 * progress bar. res says whether it was cached, built (seconds) or rebuilt (why). hub may be
 * NULL (opened here). */
int spec_draft_build(store *hub, const char *target_path, draft_spec *d, bool quiet,
		     self_draft_result *res, os_error *err);

/* `hub recommend-draft MODEL [--json]` on an open hub: prints the recommended draft and why.
 * Returns an exit code. */
int spec_hub_recommend_draft(store *hub, const char *model_arg, bool json);

/* What `run --draft` needs beyond the session. */
typedef struct spec_cli_args {
	const char *model_arg;   /* as the user typed it, for messages */
	const char *draft_arg;   /* --draft */
	size_t k;                /* --spec-k (1..16); the starting k when adaptive */
	bool adaptive;           /* --spec-k auto */
	bool baseline;           /* also decode without a draft to measure the speed-up */
	bool json;
	sampler_params sp;
} spec_cli_args;

/* Generates up to n_max tokens after prompt with speculative decoding, streaming text to stdout
 * (or one JSON object with --json), then the stats line on stderr with acceptance rate, mean
 * accepted length and the speed-up against decoding the same prompt without a draft (measured
 * right after, in the same process, same engine and settings). s must be open (no engine yet
 * is fine: it is started here). Returns an exit code. */
int spec_cli_run(cli_session *s, const spec_cli_args *a, const int32_t *prompt, size_t n_prompt,
		 size_t n_max);

#endif
