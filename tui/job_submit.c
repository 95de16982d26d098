/* job_submit.c: the shared queueing path of `optstudio optimize` and the Optimize wizard
 * (job_submit.h), so a job launched from either is checked and stored the same way. */
#include "job_submit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/jobs/pipeline.h"
#include "core/jobs/worker.h"

void job_submit_result_clear(job_submit_result *r)
{
	if (!r)
		return;
	store_job_clear(&r->job);
	free(r->model);
	memset(r, 0, sizeof *r);
}

bool job_submit_resolve(void *ctx, job_ref_kind kind, const char *ref, char *why, size_t len)
{
	store *s = ctx;
	if (kind == JOB_REF_INSTANCE) {
		store_instance it = {0};
		if (store_instance_get(s, ref, &it, NULL) == OS_OK) {
			store_instance_clear(&it);
			return true;
		}
		snprintf(why, len, "no instance named '%s' in the catalog", ref);
		return false;
	}
	if (kind == JOB_REF_FILE) {
		if (access(ref, R_OK) == 0)
			return true;
		snprintf(why, len, "cannot read '%s': %s", ref, strerror(errno));
		return false;
	}
	store_model m = {0};
	if (store_model_get(s, ref, &m, NULL) == OS_OK) {
		store_model_clear(&m);
		return true;
	}
	if (access(ref, R_OK) == 0)
		return true;
	snprintf(why, len, "no %s named '%s' in the hub and no such file; 'optstudio hub list' "
		 "shows the hub", kind == JOB_REF_DRAFT ? "draft model" : "model", ref);
	return false;
}

int job_submit_check(store *s, const job_spec *spec, job_problems *probs, os_error *err)
{
	job_spec_env env = {.resolve = job_submit_resolve, .resolve_ctx = s, .n_gpus = 0};
	return job_spec_validate(spec, &env, probs, err);
}

int job_submit(store *s, const char *spec_json, size_t len, const char *exe,
	       job_submit_result *out, job_problems *probs, os_error *err)
{
	job_spec *spec = NULL;
	char *canon = NULL;
	int rc;
	memset(out, 0, sizeof *out);
	/* a dead worker's running job would otherwise hold the queue's attention forever */
	store_jobs_reap_dead(s, NULL, NULL);
	job_spec_env env = {.resolve = job_submit_resolve, .resolve_ctx = s, .n_gpus = 0};
	if ((rc = job_spec_parse(spec_json, len, &env, &spec, probs, err)))
		goto done;
	if (!(out->model = strdup(spec->model))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = pipeline_plan(spec, out->plan, JOB_SUBMIT_MAX_STAGES, &out->n_plan, err)))
		goto done;
	if (!(canon = job_spec_print(spec, false))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	store_model m = {0};
	int64_t model_id = 0;
	if (store_model_get(s, spec->model, &m, NULL) == OS_OK)
		model_id = m.id;
	store_model_clear(&m);
	if ((rc = store_job_insert(s, spec->name, canon, model_id, &out->job, err)))
		goto done;
	rc = jobs_ensure_worker(store_home(s), exe, NULL, err);
done:
	free(canon);
	job_spec_free(spec);
	return rc;
}
