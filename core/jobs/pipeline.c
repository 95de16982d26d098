/* pipeline.c: the stage table and the run of one job: load the model once, calibrate when
 * the method needs it, quantize to a GGUF in the data home and import it into the hub, then
 * evaluate (evaluate.c). A later stage (compile) is one more entry in `stages`. */
#include "pipeline.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/cpu/backend_cpu.h"
#include "core/engine/engine.h"
#include "core/engine/model.h"
#include "core/engine/tokenizer.h"
#include "core/format/gguf.h"
#include "core/format/model_info.h"
#include "core/format/sha256.h"
#include "core/optimize/calibrate.h"
#include "core/optimize/quant_flow.h"
#include "core/optimize/quantize.h"
#include "stage.h"

double job_run_now(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void job_run_event(job_run *r, const char *level, const char *fmt, ...)
{
	char msg[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->log) {
		time_t t = time(NULL);
		struct tm tm;
		char ts[32];
		localtime_r(&t, &tm);
		strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(r->log, "%s %-5s %s%s%s\n", ts, level, r->stage ? r->stage : "",
			r->stage ? ": " : "", msg);
		fflush(r->log);
	}
	store_job_event_add(r->s, r->job->id, r->stage, level, msg, NULL);
}

bool job_run_progress(job_run *r, size_t done, size_t total)
{
	double t = job_run_now();
	if (!r->stopped && t - r->last_write < JOB_PROGRESS_INTERVAL_S && done < total)
		return true;
	r->last_write = t;
	double p = total ? (double)done / (double)total : 0;
	double eta = p > 0 ? (t - r->stage_start) * (1 - p) / p : -1;
	int stop = 0;
	if (store_job_update(r->s, r->job->id, r->stage, p, eta, &stop, NULL) == OS_OK && stop)
		r->stopped = true;
	return !r->stopped;
}

/* ---- shared resources -------------------------------------------------------------------- */

int job_run_resolve_model(job_run *r, os_error *err)
{
	if (r->model_path)
		return OS_OK;
	const char *ref = r->spec->model;
	if (store_model_get(r->s, ref, &r->model_row, NULL) == OS_OK) {
		r->model_path = strdup(r->model_row.path);
	} else if (access(ref, R_OK) == 0) {
		r->model_path = strdup(ref);
	} else {
		return os_error_set(err, OS_ENOTFOUND,
				    "model '%s' is not in the hub and is not a readable file "
				    "(was it removed after the job was queued?)",
				    ref);
	}
	if (!r->model_path)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	return OS_OK;
}

void job_run_drop_model(job_run *r)
{
	calib_stats_free(r->stats);
	r->stats = NULL;
	tokenizer_close(r->tok);
	r->tok = NULL;
	model_close(r->m);
	r->m = NULL;
	gguf_close(r->src);
	r->src = NULL;
}

/* The input model, resolved again now (it may have been removed since the job was queued),
 * loaded once with F32 weights. */
static int run_load_model(job_run *r, os_error *err)
{
	if (r->m)
		return OS_OK;
	int rc = job_run_resolve_model(r, err);
	if (rc)
		return rc;
	job_run_event(r, "info", "loading model '%s' (%s)", r->spec->model, r->model_path);
	rc = gguf_open(&r->src, r->model_path, err);
	if (rc)
		return rc;
	model_load_opts mo = {.weight_format = BE_WFMT_F32};
	if ((rc = model_open_gguf(&r->m, r->src, &mo, err)))
		return rc;
	return OS_OK;
}

/* The backend and tokenizer calibration runs the loaded model with (quant_flow.h makes
 * its engines). */
static int run_tokenizer(job_run *r, os_error *err)
{
	int rc;
	if (!r->be && (rc = backend_cpu_new(&r->be, NULL, err)))
		return rc;
	if (!r->tok && (rc = tokenizer_open(&r->tok, r->src, err)))
		return rc;
	return OS_OK;
}

static void run_free(job_run *r)
{
	job_run_drop_model(r);
	backend_free(r->be);
	free(r->model_path);
	free(r->result_path);
	free(r->result_name);
	store_model_clear(&r->model_row);
	job_spec_free(r->spec);
}

/* ---- stages ------------------------------------------------------------------------------ */

static bool wants_calibrate(const job_spec *s)
{
	return job_spec_calibrates(s);
}

static bool wants_quantize(const job_spec *s)
{
	return s->has_quantization;
}

static bool wants_evaluate(const job_spec *s)
{
	return s->has_evaluation;
}

static bool flow_progress_cb(void *ctx, const char *stage, size_t done, size_t total)
{
	(void)stage;
	return job_run_progress(ctx, done, total);
}

/* The recipe the spec asks for (scale_search as the spec says; the quantize stage turns it
 * off when calibration fell back). */
static int spec_recipe(const job_spec *sp, quant_recipe *out, os_error *err)
{
	quant_method method;
	int rc = quant_method_parse(sp->quantization.method, &method, err);
	if (rc)
		return rc;
	*out = quant_recipe_default(method);
	if (sp->quantization.has_alpha)
		out->alpha = (float)sp->quantization.alpha;
	if (sp->quantization.group_size)
		out->group = (size_t)sp->quantization.group_size;
	if (sp->quantization.kv_cache &&
	    (rc = quant_kv_parse(sp->quantization.kv_cache, &out->kv, err)))
		return rc;
	out->calib_path = sp->quantization.calib_file;
	if (sp->quantization.calib_samples)
		out->calib_samples = (size_t)sp->quantization.calib_samples;
	if (sp->quantization.calib_seq_len)
		out->calib_seq_len = (size_t)sp->quantization.calib_seq_len;
	out->scale_search = job_spec_scale_search(sp);
	out->gptq = job_spec_gptq(sp);
	return OS_OK;
}

/* The calibration text: the spec's, else <home>/text/calibration.txt (buf). */
static const char *calib_text(job_run *r, char *buf, size_t len)
{
	if (r->spec->quantization.calib_file)
		return r->spec->quantization.calib_file;
	snprintf(buf, len, "%s/text/calibration.txt", store_home(r->s));
	return buf;
}

/* calibrate: runs the model over the calibration text and keeps the statistics. */
static int stage_calibrate(job_run *r, os_error *err)
{
	int rc = run_load_model(r, err);
	if (rc)
		return rc;
	quant_recipe rec;
	if ((rc = spec_recipe(r->spec, &rec, err)) || (rc = run_tokenizer(r, err)))
		return rc;
	char path[PATH_MAX];
	const char *file = calib_text(r, path, sizeof path);
	if (!r->spec->quantization.calib_file && access(path, R_OK) != 0) {
		if (!job_spec_method_calibrates(r->spec->quantization.method) &&
		    !r->spec->quantization.has_scale_search && !rec.gptq) {
			/* fp8's default search falls back to the calibration-free plain scales */
			job_run_event(r, "info", "no calibration text at '%s': %s uses plain scales "
				      "(no scale search)", path, r->spec->quantization.method);
			return OS_OK;
		}
		return os_error_set(err, OS_ENOTFOUND,
				    "no calibration text: give quantization.calibration.file "
				    "or place one at '%s' (make models does)",
				    path);
	}
	job_run_event(r, "info", "%zu samples of %zu tokens from '%s'%s", rec.calib_samples,
		      rec.calib_seq_len, file,
		      rec.gptq && rec.method != QUANT_INT4_AWQ ? " (with Hessians)" : "");
	quant_flow_opts fo = {.be = r->be, .tok = r->tok, .calib_path = file,
			      .progress = flow_progress_cb, .progress_ctx = r};
	rc = quant_flow_calibrate(r->m, &rec, &fo, &r->stats, NULL, err);
	if (rc == OS_OK)
		job_run_progress(r, 1, 1);
	return r->stopped ? OS_ESTOPPED : rc;
}

static bool quant_progress_cb(void *ctx, const char *label, size_t done, size_t total)
{
	(void)label;
	return job_run_progress(ctx, done, total);
}

/* "SmolLM2" + "int4-awq" -> a hub name not taken yet. */
static void result_name(job_run *r, const char *base, const char *method, char *buf, size_t len)
{
	snprintf(buf, len, "%s-%s", base, method);
	store_model tmp = {0};
	if (store_model_get(r->s, buf, &tmp, NULL) == OS_OK) {
		store_model_clear(&tmp);
		snprintf(buf, len, "%s-%s-job%lld", base, method, (long long)r->job->id);
	}
}

/* Imports the written file as a studio-owned model whose parent is the input model. */
static int import_result(job_run *r, const char *path, const char *name, int64_t *id,
			 os_error *err)
{
	model_info info;
	char hex[SHA256_HEX_CHARS];
	int rc = model_info_read(path, &info, err);
	if (rc || (rc = sha256_file(path, hex, err)))
		return rc;
	char *recipe = quant_recipe_to_json(&r->recipe);
	if (!recipe)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	store_model m = {
		.name = (char *)name,
		.path = (char *)path,
		.source_path = (char *)path,
		.owned_by_studio = 1,
		.format = info.format,
		.architecture = info.architecture[0] ? info.architecture : NULL,
		.n_params = (int64_t)info.n_params,
		.context_length = (int64_t)info.context_length,
		.n_layers = info.n_layers,
		.n_heads = info.n_heads,
		.n_kv_heads = info.n_kv_heads,
		.hidden_size = info.hidden_size,
		.ffn_size = info.ffn_size,
		.vocab_size = info.vocab_size,
		.tokenizer_kind = info.tokenizer_kind[0] ? info.tokenizer_kind : NULL,
		.vocab_hash = info.vocab_hash[0] ? info.vocab_hash : NULL,
		.precision = info.precision[0] ? info.precision : NULL,
		.file_size = (int64_t)info.file_size,
		.sha256 = hex,
		.license = info.license[0] ? info.license : NULL,
		.parent_model_id = r->model_row.id,
		.recipe = recipe,
	};
	store_model out = {0};
	rc = store_model_insert(r->s, &m, &out, NULL, err);
	free(recipe);
	if (rc)
		return rc;
	*id = out.id;
	store_model_clear(&out);
	return OS_OK;
}

/* quantize: applies the calibrated transform (SmoothQuant, AWQ) when there is one, writes
 * the quantized GGUF into <home>/models and imports it. */
static int stage_quantize(job_run *r, os_error *err)
{
	int rc = run_load_model(r, err);
	if (rc)
		return rc;
	const job_spec *sp = r->spec;
	if ((rc = spec_recipe(sp, &r->recipe, err)))
		return rc;
	quant_method method = r->recipe.method;
	/* without statistics here the calibrate stage fell back to plain scales (fp8) */
	r->recipe.scale_search = r->recipe.scale_search &&
				 (r->stats || quant_method_calibrates(method));
	if ((rc = quant_recipe_check(&r->recipe, err)))
		return rc;

	if (quant_flow_needed(&r->recipe)) {
		if (!r->stats)
			return os_error_set(err, OS_EINTERNAL, "no calibration statistics");
		if (method == QUANT_INT8_SQ)
			job_run_event(r, "info", "smoothing (alpha %.2f)", r->recipe.alpha);
		else if (method == QUANT_INT4_AWQ)
			job_run_event(r, "info", "searching activation-aware scales (group %zu)",
				      r->recipe.group);
		else if (r->recipe.scale_search && !r->recipe.gptq)
			job_run_event(r, "info", "searching importance-weighted scales");
		if (r->recipe.gptq)
			job_run_event(r, "info", "GPTQ error compensation%s",
				      method == QUANT_INT4_AWQ ? " after a second calibration on "
								 "the scaled model" : "");
		char cpath[PATH_MAX];
		if ((rc = run_tokenizer(r, err)))
			return rc;
		quant_flow_opts fo = {.be = r->be, .tok = r->tok,
				      .calib_path = calib_text(r, cpath, sizeof cpath),
				      .progress = flow_progress_cb, .progress_ctx = r};
		quant_flow_report rep = {0};
		if ((rc = quant_flow_transform(r->m, &r->recipe, r->stats, &fo, &rep, err)))
			return r->stopped ? OS_ESTOPPED : rc;
		if (rep.has_awq)
			job_run_event(r, "info", "AWQ output error %.4g (round to nearest %.4g)",
				      rep.awq.err_clip, rep.awq.err_rtn);
		if (rep.has_gptq && rep.gptq.energy > 0)
			job_run_event(r, "info", "GPTQ relative proxy error %.4g (without "
				      "compensation %.4g) in %.1f s",
				      rep.gptq.err_gptq / rep.gptq.energy,
				      rep.gptq.err_rtn / rep.gptq.energy, rep.t_gptq);
	}
	if (r->stopped)
		return OS_ESTOPPED;

	/* <home>/models/<base>.<method>.job<id>.gguf under the hub name <base>-<method> */
	char base[200], name[256], path[PATH_MAX];
	if (r->model_row.id) {
		snprintf(base, sizeof base, "%s", r->model_row.name);
	} else {
		const char *slash = strrchr(r->model_path, '/');
		snprintf(base, sizeof base, "%s", slash ? slash + 1 : r->model_path);
		size_t n = strlen(base);
		if (n > 5 && strcmp(base + n - 5, ".gguf") == 0)
			base[n - 5] = '\0';
	}
	result_name(r, base, sp->quantization.method, name, sizeof name);
	snprintf(path, sizeof path, "%s/models/%s.%s.job%lld.gguf", store_home(r->s), base,
		 sp->quantization.method, (long long)r->job->id);
	job_run_event(r, "info", "writing '%s'", path);
	rc = quant_write_gguf(r->m, r->src, &r->recipe, r->model_row.id ? r->model_row.name : base,
			      r->model_row.sha256, path, quant_progress_cb, r, err);
	if (rc) {
		unlink(path); /* the writer promises no partial file; make sure */
		return r->stopped ? OS_ESTOPPED : rc;
	}
	int64_t id = 0;
	if ((rc = import_result(r, path, name, &id, err)) ||
	    (rc = store_job_set_result_model(r->s, r->job->id, id, err))) {
		unlink(path);
		return rc;
	}
	job_run_event(r, "info", "imported as '%s'", name);
	r->result_model_id = id;
	if (!(r->result_path = strdup(path)) || !(r->result_name = strdup(name)))
		return os_error_set(err, OS_ENOMEM, "out of memory");
	return OS_OK;
}

/* The stages in run order. `wanted` says whether a spec asks for the stage; `part` is the
 * spec block it serves, so pipeline_plan can refuse a spec whose part has no stage here. */
static const struct stage {
	const char *name;
	const char *part;
	bool (*wanted)(const job_spec *s);
	int (*run)(job_run *r, os_error *err);
} stages[] = {
	{"calibrate", "quantization", wants_calibrate, stage_calibrate},
	{"quantize", "quantization", wants_quantize, stage_quantize},
	{"evaluate", "evaluation", wants_evaluate, stage_evaluate},
};
#define N_STAGES (sizeof stages / sizeof stages[0])

static bool part_has_stage(const char *part)
{
	for (size_t i = 0; i < N_STAGES; i++)
		if (strcmp(stages[i].part, part) == 0)
			return true;
	return false;
}

int pipeline_plan(const job_spec *spec, const char **names, size_t cap, size_t *n,
		  os_error *err)
{
	*n = 0;
	if (spec->has_evaluation && !part_has_stage("evaluation"))
		return os_error_set(err, OS_EUNSUPPORTED,
				    "evaluation: this optstudio has no evaluate stage; leave the "
				    "evaluation block out and run 'optstudio bench' on the result");
	for (size_t i = 0; i < N_STAGES; i++) {
		if (!stages[i].wanted(spec))
			continue;
		if (*n < cap)
			names[*n] = stages[i].name;
		(*n)++;
	}
	return OS_OK;
}

int pipeline_run(store *s, const store_job *job, FILE *log, os_error *err)
{
	job_run r = {.s = s, .job = job, .log = log};
	int rc = job_spec_parse(job->spec, strlen(job->spec), NULL, &r.spec, NULL, err);
	if (rc)
		return rc;
	const char *plan[N_STAGES];
	size_t n_plan = 0;
	if ((rc = pipeline_plan(r.spec, plan, N_STAGES, &n_plan, err)))
		goto done;
	for (size_t i = 0; i < N_STAGES; i++) {
		if (!stages[i].wanted(r.spec))
			continue;
		r.stage = stages[i].name;
		r.stage_start = job_run_now();
		r.last_write = 0;
		int stop = 0;
		store_job_update(s, job->id, r.stage, 0, -1, &stop, NULL);
		if (stop) {
			rc = OS_ESTOPPED;
			goto done;
		}
		job_run_event(&r, "info", "started");
		os_error e = {0};
		rc = stages[i].run(&r, &e);
		if (rc == OS_OK && r.stopped)
			rc = OS_ESTOPPED;
		if (rc == OS_ESTOPPED) {
			job_run_event(&r, "warn", "stopped on request");
			os_error_set(err, OS_ESTOPPED, "stopped during %s", r.stage);
			goto done;
		}
		if (rc) {
			job_run_event(&r, "error", "%s", os_error_text(&e));
			os_error_set(err, rc, "%s: %s", r.stage, os_error_text(&e));
			goto done;
		}
		store_job_update(s, job->id, r.stage, 1, 0, NULL, NULL);
		job_run_event(&r, "info", "done in %.1f s", job_run_now() - r.stage_start);
	}
	rc = OS_OK;
done:
	run_free(&r);
	return rc;
}
