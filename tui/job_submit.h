/* job_submit.h: the one path that queues an optimization job, shared by `optstudio optimize`
 * and the studio's Optimize wizard: parse and validate the spec against the store (every
 * problem with its JSON path), plan it, insert it canonicalised, start the worker. */
#ifndef OPTSTUDIO_JOB_SUBMIT_H
#define OPTSTUDIO_JOB_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/errors.h"
#include "core/jobs/spec.h"
#include "store/store.h"

#define JOB_SUBMIT_MAX_STAGES 8

/* What job_submit queued. Clear with job_submit_result_clear. */
typedef struct job_submit_result {
	store_job job;          /* the queued row; job.id 0 when nothing was queued */
	char *model;            /* the spec's model (malloc'd), for messages */
	const char *plan[JOB_SUBMIT_MAX_STAGES]; /* the stages the job runs (static names) */
	size_t n_plan;
} job_submit_result;

void job_submit_result_clear(job_submit_result *r);

/* The resolver validation uses (job_spec_env.resolve with ctx = the store): models and drafts
 * are hub names or readable paths, instances are catalog names, files must be readable. */
bool job_submit_resolve(void *ctx, job_ref_kind kind, const char *ref, char *why, size_t len);

/* Validates a spec built in code exactly as job_submit will (same resolver, no GPUs):
 * appends every problem to probs; OS_EFORMAT when there is any, else OS_OK. */
int job_submit_check(store *s, const job_spec *spec, job_problems *probs, os_error *err);

/* Queues the job spec_json (len bytes): reaps jobs of dead workers, parses and validates it
 * (OS_EFORMAT with every problem in probs, nothing queued), plans it, inserts it as
 * canonical JSON and starts the worker as `exe worker` unless one runs. On OS_OK out->job is
 * the queued row. An error after the insert (the worker did not start) leaves out->job.id
 * set: the job is queued and a later worker will run it. out is filled as far as it got. */
int job_submit(store *s, const char *spec_json, size_t len, const char *exe,
	       job_submit_result *out, job_problems *probs, os_error *err);

#endif
