/* pipeline.h: the stages of an optimization job (calibrate -> quantize -> ...), run in
 * order, only those the spec asks for, each reporting stage, progress (0..1), ETA, events
 * and log lines to the store and the job's log file, and stopping when the job's stop flag
 * is set. */
#ifndef OPTSTUDIO_JOBS_PIPELINE_H
#define OPTSTUDIO_JOBS_PIPELINE_H

#include <stddef.h>
#include <stdio.h>

#include "core/errors.h"
#include "core/jobs/spec.h"
#include "store/store.h"

/* The names of the stages spec asks for, in run order, into names[0..*n) (at most cap;
 * borrowed static strings). OS_EUNSUPPORTED naming the part of the spec when this build has
 * no stage for it (so such a job is refused before it is queued). */
int pipeline_plan(const job_spec *spec, const char **names, size_t cap, size_t *n,
		  os_error *err);

/* Runs job (claimed by this process: state running) on the store s, appending to log (may
 * be NULL). Returns OS_OK when every stage finished, OS_ESTOPPED when the job's stop flag
 * stopped it, or the failing stage's error (err names the stage). Files a failed or
 * stopped stage was writing are removed; a model the job produced is imported into the
 * hub (owned by the studio, with its parent and recipe) and recorded as the job's result.
 * Does not change the job's state: the caller finishes it. */
int pipeline_run(store *s, const store_job *job, FILE *log, os_error *err);

#endif
