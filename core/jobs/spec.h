/* spec.h: an optimization job's spec: the JSON a user writes (documented in
 * man/optstudio-job.5), parsed and validated into plain data, and printed back as canonical
 * JSON. Validation lists every problem with its JSON path; names of models, drafts and
 * instances are checked through a caller's resolver, so this file knows nothing of the store. */
#ifndef OPTSTUDIO_JOBS_SPEC_H
#define OPTSTUDIO_JOBS_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

/* Limits a spec must respect (also written in the man page). */
#define JOB_SPEC_MAX_CONCURRENCY_LEVELS 16
#define JOB_SPEC_MAX_CONCURRENCY 1024
#define JOB_SPEC_MAX_TOKENS 1000000      /* input/output tokens, seq_len, max_model_len */
#define JOB_SPEC_MAX_SAMPLES 1000000     /* calibration samples */
#define JOB_SPEC_MAX_REQUESTS 1000000    /* requests per concurrency level */
#define JOB_SPEC_MAX_SPEC_K 16           /* draft tokens per step */
#define JOB_SPEC_MAX_TP 64               /* tensor-parallel degree */
#define JOB_SPEC_MAX_BATCH 4096          /* max rolling batch size */

/* The job spec. Plain data; every char * is malloc'd and owned (job_spec_free); NULL and 0
 * mean "not given" (the stage then uses its default), so printing writes back exactly
 * what was given and parse(print(x)) == x. Doubles carry a has_ flag because 0 is valid. */
typedef struct job_spec {
	char *name;                  /* optional label for listings */
	char *model;                 /* hub name or file path; required */

	bool has_quantization;
	struct {
		char *method;        /* a quant_method_name(): "fp8", "int8-smoothquant", ... */
		bool has_alpha;
		double alpha;        /* SmoothQuant strength, [0, 1]; int8-smoothquant only */
		int64_t group_size;  /* 32 | 64 | 128; int4 methods only */
		char *kv_cache;      /* "model" | "bf16" | "fp8" | "int8" */
		bool has_calibration;
		char *calib_file;    /* calibration text (path) */
		int64_t calib_samples; /* N samples ... */
		int64_t calib_seq_len; /* ... of L tokens */
		bool has_scale_search;
		bool scale_search;   /* importance-weighted scale search (quantize.h's
		                      * scale_search); absent: the method's default
		                      * (quant_method_search_default); fp8 and int4 only */
		bool has_gptq;
		bool gptq;           /* GPTQ error compensation (quantize.h's gptq); absent:
		                      * the method's default (quant_method_gptq_default: on
		                      * for int4-awq); int4-awq, int4-rtn and fp8 only */
	} quantization;

	bool has_speculative;
	struct {
		char *draft;         /* "recommended" | "ngram" | hub name | file path; required */
		int64_t k;           /* draft tokens per step, 1..JOB_SPEC_MAX_SPEC_K */
	} speculative;

	bool has_evaluation;
	struct {
		int64_t *concurrency;      /* [n_concurrency] levels, distinct, each >= 1 */
		size_t n_concurrency;
		int64_t input_tokens;      /* tokens per prompt */
		int64_t output_tokens;     /* tokens generated per request */
		int64_t requests_per_level;
		char *instance;            /* instance catalog name for the price */
		bool has_discount;
		double discount;           /* [0, 1) */
		char *baseline;            /* model to compare accuracy against */
		char *text;                /* held-out text (path) for accuracy and the prompts */
	} evaluation;

	bool has_runtime;
	struct {
		int64_t tensor_parallel_degree; /* 1 on CPU */
		int64_t max_batch_size;         /* concurrent sequences in the rolling batch */
		int64_t max_model_len;          /* tokens of context per sequence */
	} runtime;
} job_spec;

/* One problem found in a spec: where (a JSON path such as "quantization.calibration.samples"
 * or "evaluation.concurrency[2]"; "" for the document itself) and what. */
typedef struct job_problem {
	char path[128];
	char message[384];
} job_problem;

/* A growing list of problems. Zero-initialise; free with job_problems_free. */
typedef struct job_problems {
	job_problem *v;
	size_t n, cap;
	bool oom;            /* a problem could not be recorded (out of memory) */
} job_problems;

void job_problems_free(job_problems *p);
/* Appends a problem (printf-style message). Never fails from the caller's view: on OOM it
 * sets p->oom. */
void job_problems_add(job_problems *p, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* What a reference in a spec names. */
typedef enum job_ref_kind {
	JOB_REF_MODEL,     /* the model, or the evaluation baseline: hub name or path */
	JOB_REF_DRAFT,     /* a draft model: hub name or path (not the keywords) */
	JOB_REF_INSTANCE,  /* an instance catalog name */
	JOB_REF_FILE,      /* a readable file (calibration text) */
} job_ref_kind;

/* Checks that ref (a hub name or a path for models and drafts; a catalog name for
 * instances) exists. Returns true when it does; otherwise writes the reason (e.g. "no model
 * named 'x' in the hub and no such file") into why (why_len bytes) and returns false. */
typedef bool (*job_resolve_fn)(void *ctx, job_ref_kind kind, const char *ref, char *why,
			       size_t why_len);

/* What validation needs to know about its surroundings. NULL = no resolver, no GPUs. */
typedef struct job_spec_env {
	job_resolve_fn resolve;  /* NULL: names are not checked */
	void *resolve_ctx;
	int n_gpus;              /* 0 on a CPU-only machine: tensor parallelism is refused */
} job_spec_env;

/* Parses the JSON text (len bytes, need not be NUL-terminated) into *out and validates it.
 * The document may use the native fields or `override_environment` (OPTION_* keys, see
 * the man page), or both when they agree. On OS_OK *out owns a spec (job_spec_free) and
 * probs is empty. On OS_EFORMAT (JSON syntax or a problem) *out is NULL, probs lists every
 * problem found (paths as above) and err says how many. OS_ENOMEM otherwise. probs may be
 * NULL (then only err tells the first problem). */
int job_spec_parse(const char *json, size_t len, const job_spec_env *env, job_spec **out,
		   job_problems *probs, os_error *err);

/* Validates a spec built in code (the same checks as parse, minus JSON typing): appends to
 * probs and returns OS_EFORMAT when there is any problem, else OS_OK. */
int job_spec_validate(const job_spec *s, const job_spec_env *env, job_problems *probs,
		      os_error *err);

/* The spec as canonical JSON: native fields only, fixed key order, only what is set,
 * indented when pretty, else on one line. malloc'd (free it); NULL on OOM. */
char *job_spec_print(const job_spec *s, bool pretty);

/* True when a and b hold the same values (strings by content, doubles exactly). */
bool job_spec_equal(const job_spec *a, const job_spec *b);

/* A deep copy, or NULL on OOM. */
job_spec *job_spec_dup(const job_spec *s);

/* Frees s and everything it owns. NULL is fine. */
void job_spec_free(job_spec *s);

/* The quantization methods that need a calibration pass (int8-smoothquant, int4-awq). */
bool job_spec_method_calibrates(const char *method);
/* Whether s's quantization uses the scale search: quantization.scale_search when given (and
 * the method takes it), else the method's default (fp8, int4-awq). False without a known
 * method. */
bool job_spec_scale_search(const job_spec *s);
/* Whether s's quantization uses GPTQ: quantization.gptq when given, else the method's
 * default (int4-awq). False without a known method. */
bool job_spec_gptq(const job_spec *s);
/* Whether s's quantization calibrates: a calibrating method, the scale search or GPTQ. (For fp8
 * by default the pipeline still falls back to plain scales when there is no calibration
 * text.) */
bool job_spec_calibrates(const job_spec *s);

/* The OverrideEnvironment keys understood, NULL-terminated, for help texts. */
extern const char *const job_spec_option_keys[];

#endif
