/* draft_resolve.h: a speculative-decoding draft argument ("recommended", "ngram", "self",
 * a hub name or a file path) resolved through the store, for code below the TUI (the
 * evaluate stage). The same lookup as `optstudio run --draft` (tui/cmd_spec.c), which
 * may call this once the two are merged. */
#ifndef OPTSTUDIO_JOBS_DRAFT_RESOLVE_H
#define OPTSTUDIO_JOBS_DRAFT_RESOLVE_H

#include "core/engine/draft.h"
#include "core/errors.h"
#include "store/store.h"

/* Resolves arg for the target model file target_path into *out (clear it with
 * draft_spec_clear). hub (borrowed, may be NULL: then only "ngram", "self" and paths work)
 * gives the candidates of "recommended" (models with the target's vocabulary hash) and
 * the hub names. Fails with draft.h's errors (a different tokenizer, a missing file),
 * OS_ENOTFOUND for a name that is neither a hub model nor a file, OS_EUNSUPPORTED for a
 * quantized self-copy ("self:int8", "self:int4": quantize the model and name the file). */
/* "recommended" alone: the hub's models with the target's vocabulary hash (hub may be NULL:
 * no candidates) handed to draft_recommend as plain data. */
int draft_resolve_recommend(store *hub, const char *target_path, draft_spec *out,
			    os_error *err);

int draft_resolve_hub(store *hub, const char *arg, const char *target_path, draft_spec *out,
		      os_error *err);

#endif
