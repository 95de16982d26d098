/* draft_resolve.c: draft arguments resolved through the store (draft_resolve.h): the hub's
 * candidates handed to draft_recommend as plain data, hub names looked up by name. */
#include "draft_resolve.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/format/model_info.h"

int draft_resolve_recommend(store *hub, const char *target_path, draft_spec *out,
			    os_error *err)
{
	model_info ti;
	int rc = model_info_read(target_path, &ti, err);
	if (rc)
		return rc;
	store_model *v = NULL;
	size_t n = 0;
	draft_candidate *c = NULL;
	int64_t target_id = 0;
	if (hub && ti.vocab_hash[0] &&
	    (rc = store_model_list_by_vocab(hub, ti.vocab_hash, &v, &n, err)))
		return rc;
	if (n && !(c = calloc(n, sizeof *c))) {
		store_model_list_free(v, n);
		return os_error_set(err, OS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		c[i] = (draft_candidate){.id = v[i].id, .name = v[i].name, .path = v[i].path,
					 .vocab_hash = v[i].vocab_hash, .n_params = v[i].n_params};
		if (v[i].path && !strcmp(v[i].path, target_path))
			target_id = v[i].id;
	}
	rc = draft_recommend(target_path, &ti, target_id, c, n, out, err);
	free(c);
	store_model_list_free(v, n);
	return rc;
}

int draft_resolve_hub(store *hub, const char *arg, const char *target_path, draft_spec *out,
		      os_error *err)
{
	memset(out, 0, sizeof *out);
	switch (draft_arg_kind(arg)) {
	case DRAFT_ARG_NGRAM:
		return draft_ngram(out, err);
	case DRAFT_ARG_SELF:
		return draft_self_bf16(target_path, out, err);
	case DRAFT_ARG_SELF_QUANT:
		return os_error_set(err, OS_EUNSUPPORTED,
				    "draft '%s' needs a quantized copy of the model; quantize it "
				    "first and name the result as the draft",
				    arg);
	case DRAFT_ARG_RECOMMENDED:
		return draft_resolve_recommend(hub, target_path, out, err);
	default:
		break;
	}
	store_model m = {0};
	if (hub && store_model_get(hub, arg, &m, NULL) == OS_OK) {
		int rc = draft_from_file(target_path, m.path, m.name, out, err);
		store_model_clear(&m);
		return rc;
	}
	if (access(arg, F_OK) != 0)
		return os_error_set(err, OS_ENOTFOUND,
				    "draft '%s' is no hub model and no file; use recommended, "
				    "ngram, a hub name ('optstudio hub list') or a GGUF path",
				    arg);
	return draft_from_file(target_path, arg, NULL, out, err);
}
