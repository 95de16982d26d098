/* stage.h: internal to core/jobs: the state one job's stages share (job_run) and the calls a
 * stage uses to report (events, progress, the stop flag). pipeline.c owns the stage table;
 * stages that grew their own file (evaluate.c) include this. */
#ifndef OPTSTUDIO_JOBS_STAGE_H
#define OPTSTUDIO_JOBS_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/engine/model.h"
#include "core/engine/tokenizer.h"
#include "core/errors.h"
#include "core/format/gguf.h"
#include "core/jobs/spec.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/quantize.h"
#include "store/store.h"

/* Progress is written at most this often (s), and the stop flag read as often: a stop takes
 * effect well within a second, and the database sees a few writes a second at most. */
#define JOB_PROGRESS_INTERVAL_S 0.1

/* The state of one job's run, shared by its stages. Owns everything it points to except
 * s, job and log. */
typedef struct job_run {
	store *s;
	const store_job *job;
	FILE *log;
	job_spec *spec;
	const char *stage;         /* the running stage's name */
	double stage_start;        /* s */
	double last_write;         /* s, last progress write / stop check */
	bool stopped;              /* the stop flag was seen */

	store_model model_row;     /* the input model's hub row (id 0: a plain path) */
	char *model_path;
	gguf_file *src;
	model *m;                  /* F32 weights, transformed in place by calibrated methods */
	backend *be;
	tokenizer *tok;
	calib_stats *stats;        /* calibrate's output, quantize's input */
	quant_recipe recipe;

	/* quantize's output (evaluate's input when set) */
	int64_t result_model_id;   /* 0: no quantize stage ran */
	char *result_path;         /* the quantized GGUF */
	char *result_name;         /* its hub name */
} job_run;

/* Seconds on the wall clock. */
double job_run_now(void);

/* A line in the job's log file and an event in the store (level: info | warn | error). */
void job_run_event(job_run *r, const char *level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Reports done/total of the current stage (progress done/total, ETA from the stage's
 * elapsed time); returns false when the job must stop. Writes to the store at most every
 * JOB_PROGRESS_INTERVAL_S, and always when done == total. */
bool job_run_progress(job_run *r, size_t done, size_t total);

/* Resolves the input model's path again (it may have been removed since the job was
 * queued) into r->model_path and r->model_row. OS_ENOTFOUND names it. */
int job_run_resolve_model(job_run *r, os_error *err);

/* Frees the input model, its engine and the calibration statistics (a later stage that
 * opens models of its own calls this first to give the memory back). */
void job_run_drop_model(job_run *r);

/* The evaluate stage (evaluate.c): the load-generator sweep over the spec's concurrency
 * levels, accuracy on held-out text, speculative decoding when asked, prices, and the
 * results stored as a bench run with its points and eval results linked to the job. */
int stage_evaluate(job_run *r, os_error *err);

#endif
