/* spec.c: job spec JSON -> job_spec (every problem listed with its JSON path), the
 * OverrideEnvironment mapping, validation, and canonical printing. */
#include "spec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/optimize/quantize.h"

const char *const job_spec_option_keys[] = {
	"OPTION_QUANTIZE", "OPTION_SPECULATIVE_DRAFT_MODEL", "OPTION_SPECULATIVE_LENGTH",
	"OPTION_TENSOR_PARALLEL_DEGREE", "OPTION_MAX_ROLLING_BATCH_SIZE", "OPTION_KV_CACHE_DTYPE",
	"OPTION_MAX_MODEL_LEN", NULL,
};

static const char *const kv_cache_names[] = {"model", "bf16", "fp8", "int8", NULL};

/* ---- problems ---------------------------------------------------------------------------- */

void job_problems_free(job_problems *p)
{
	if (!p)
		return;
	free(p->v);
	memset(p, 0, sizeof *p);
}

void job_problems_add(job_problems *p, const char *path, const char *fmt, ...)
{
	if (!p)
		return;
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 8;
		job_problem *nv = realloc(p->v, ncap * sizeof *nv);
		if (!nv) {
			p->oom = true;
			return;
		}
		p->v = nv;
		p->cap = ncap;
	}
	job_problem *q = &p->v[p->n++];
	snprintf(q->path, sizeof q->path, "%s", path ? path : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->message, sizeof q->message, fmt, ap);
	va_end(ap);
}

/* ---- small helpers ----------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* "a, b, c" of a NULL-terminated list into buf. */
static const char *join_list(const char *const *list, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; list[i] && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", list[i]);
	return buf;
}

static const char *join_methods(char *buf, size_t len)
{
	const char *names[QUANT_N_METHODS + 1];
	for (int m = 0; m < QUANT_N_METHODS; m++)
		names[m] = quant_method_name((quant_method)m);
	names[QUANT_N_METHODS] = NULL;
	return join_list(names, buf, len);
}

static bool method_known(const char *name)
{
	for (int m = 0; m < QUANT_N_METHODS; m++)
		if (strcmp(name, quant_method_name((quant_method)m)) == 0)
			return true;
	return false;
}

bool job_spec_method_calibrates(const char *method)
{
	quant_method m;
	return method && quant_method_parse(method, &m, NULL) == OS_OK && quant_method_calibrates(m);
}

/* The methods the scale search applies to (not the INT8 ones). */
static bool method_searches(const char *method)
{
	quant_method m;
	return method && quant_method_parse(method, &m, NULL) == OS_OK && m != QUANT_INT8_RTN &&
	       m != QUANT_INT8_SQ;
}

bool job_spec_scale_search(const job_spec *s)
{
	quant_method m;
	if (!s->has_quantization || !s->quantization.method ||
	    quant_method_parse(s->quantization.method, &m, NULL) != OS_OK)
		return false;
	if (s->quantization.has_scale_search)
		return s->quantization.scale_search && method_searches(s->quantization.method);
	return quant_method_search_default(m);
}

bool job_spec_gptq(const job_spec *s)
{
	quant_method m;
	if (!s->has_quantization)
		return false;
	/* given: as given (validation refuses true on a method that cannot take it) */
	if (s->quantization.has_gptq)
		return s->quantization.gptq;
	return s->quantization.method &&
	       quant_method_parse(s->quantization.method, &m, NULL) == OS_OK &&
	       quant_method_gptq_default(m);
}

bool job_spec_calibrates(const job_spec *s)
{
	return s->has_quantization && (job_spec_method_calibrates(s->quantization.method) ||
				       job_spec_scale_search(s) || job_spec_gptq(s));
}

/* The methods GPTQ applies to. */
static bool method_gptq(const char *method)
{
	quant_method m;
	return method && quant_method_parse(method, &m, NULL) == OS_OK && quant_method_gptq_ok(m);
}

static bool method_is_int4(const char *method)
{
	return method && (strcmp(method, quant_method_name(QUANT_INT4_AWQ)) == 0 ||
			  strcmp(method, quant_method_name(QUANT_INT4_RTN)) == 0);
}

/* ---- JSON walking ------------------------------------------------------------------------ */

/* Reports fields of obj not in known, and fields given twice. */
static void check_fields(const cJSON *obj, const char *path, const char *const *known,
			 job_problems *pr)
{
	char list[512];
	for (const cJSON *c = obj->child; c; c = c->next) {
		char p[128];
		snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", c->string ? c->string : "");
		if (!c->string || !in_list(c->string, known)) {
			job_problems_add(pr, p, "unknown field '%s'; known fields here: %s",
					 c->string ? c->string : "", join_list(known, list, sizeof list));
			continue;
		}
		for (const cJSON *d = obj->child; d != c; d = d->next)
			if (d->string && strcmp(d->string, c->string) == 0) {
				job_problems_add(pr, p, "field given twice");
				break;
			}
	}
}

static void child_path(char *buf, size_t len, const char *path, const char *key)
{
	snprintf(buf, len, "%s%s%s", path, *path ? "." : "", key);
}

static const char *json_type_name(const cJSON *v)
{
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsObject(v))
		return "an object";
	return "invalid";
}

/* Reads obj.key as a string into *dst (malloc'd). Absent: *dst untouched, false. */
static bool get_string(const cJSON *obj, const char *path, const char *key, char **dst,
		       job_problems *pr, bool *oom)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return false;
	char p[128];
	child_path(p, sizeof p, path, key);
	if (!cJSON_IsString(v) || !v->valuestring) {
		job_problems_add(pr, p, "expected a string, got %s", json_type_name(v));
		return false;
	}
	if (!(*dst = dup_str(v->valuestring)))
		*oom = true;
	return *dst != NULL;
}

/* Reads an integral number in [lo, hi] from v (a string of digits too when allow_string, as
 * environment values are). */
static bool read_int(const cJSON *v, const char *p, int64_t lo, int64_t hi, bool allow_string,
		     int64_t *dst, job_problems *pr)
{
	double d;
	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
	} else if (allow_string && cJSON_IsString(v) && v->valuestring && *v->valuestring) {
		char *end;
		d = strtod(v->valuestring, &end);
		if (*end) {
			job_problems_add(pr, p, "expected a whole number, got '%s'", v->valuestring);
			return false;
		}
	} else {
		job_problems_add(pr, p, "expected a whole number, got %s", json_type_name(v));
		return false;
	}
	if (!isfinite(d) || d != floor(d)) {
		job_problems_add(pr, p, "expected a whole number, got %g", d);
		return false;
	}
	if (d < (double)lo || d > (double)hi) {
		job_problems_add(pr, p, "%.0f is out of range (%lld to %lld)", d, (long long)lo,
				 (long long)hi);
		return false;
	}
	*dst = (int64_t)d;
	return true;
}

/* obj.key as an integer in [lo, hi] (lo >= 1, so 0 keeps meaning "not given"). */
static void get_int(const cJSON *obj, const char *path, const char *key, int64_t lo, int64_t hi,
		    int64_t *dst, job_problems *pr)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return;
	char p[128];
	child_path(p, sizeof p, path, key);
	int64_t x;
	if (read_int(v, p, lo, hi, false, &x, pr))
		*dst = x;
}

static void get_double(const cJSON *obj, const char *path, const char *key, bool *has,
		       double *dst, job_problems *pr)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return;
	char p[128];
	child_path(p, sizeof p, path, key);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
		job_problems_add(pr, p, "expected a number, got %s", json_type_name(v));
		return;
	}
	*has = true;
	*dst = v->valuedouble;
}

static void get_bool(const cJSON *obj, const char *path, const char *key, bool *has,
		     bool *dst, job_problems *pr)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return;
	char p[128];
	child_path(p, sizeof p, path, key);
	if (!cJSON_IsBool(v)) {
		job_problems_add(pr, p, "expected true or false, got %s", json_type_name(v));
		return;
	}
	*has = true;
	*dst = cJSON_IsTrue(v);
}

/* obj.key must be an object if present; returns it or NULL. */
static const cJSON *get_object(const cJSON *obj, const char *path, const char *key,
			       job_problems *pr)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return NULL;
	if (!cJSON_IsObject(v)) {
		char p[128];
		child_path(p, sizeof p, path, key);
		job_problems_add(pr, p, "expected an object, got %s", json_type_name(v));
		return NULL;
	}
	return v;
}

static void parse_quantization(const cJSON *q, job_spec *s, job_problems *pr, bool *oom)
{
	static const char *const known[] = {"method", "alpha", "group_size", "kv_cache",
					    "calibration", "scale_search", "gptq", NULL};
	static const char *const known_calib[] = {"file", "samples", "seq_len", NULL};
	const char *path = "quantization";
	s->has_quantization = true;
	check_fields(q, path, known, pr);
	get_string(q, path, "method", &s->quantization.method, pr, oom);
	get_double(q, path, "alpha", &s->quantization.has_alpha, &s->quantization.alpha, pr);
	get_int(q, path, "group_size", 32, 128, &s->quantization.group_size, pr);
	get_string(q, path, "kv_cache", &s->quantization.kv_cache, pr, oom);
	get_bool(q, path, "scale_search", &s->quantization.has_scale_search,
		 &s->quantization.scale_search, pr);
	get_bool(q, path, "gptq", &s->quantization.has_gptq, &s->quantization.gptq, pr);
	const cJSON *c = get_object(q, path, "calibration", pr);
	if (c) {
		const char *cp = "quantization.calibration";
		s->quantization.has_calibration = true;
		check_fields(c, cp, known_calib, pr);
		get_string(c, cp, "file", &s->quantization.calib_file, pr, oom);
		get_int(c, cp, "samples", 1, JOB_SPEC_MAX_SAMPLES, &s->quantization.calib_samples, pr);
		get_int(c, cp, "seq_len", 2, JOB_SPEC_MAX_TOKENS, &s->quantization.calib_seq_len, pr);
	}
}

static void parse_speculative(const cJSON *o, job_spec *s, job_problems *pr, bool *oom)
{
	static const char *const known[] = {"draft", "k", NULL};
	const char *path = "speculative_decoding";
	s->has_speculative = true;
	check_fields(o, path, known, pr);
	get_string(o, path, "draft", &s->speculative.draft, pr, oom);
	get_int(o, path, "k", 1, JOB_SPEC_MAX_SPEC_K, &s->speculative.k, pr);
}

static void parse_evaluation(const cJSON *o, job_spec *s, job_problems *pr, bool *oom)
{
	static const char *const known[] = {"concurrency", "input_tokens", "output_tokens",
					    "requests_per_level", "instance", "discount",
					    "baseline", "text", NULL};
	const char *path = "evaluation";
	s->has_evaluation = true;
	check_fields(o, path, known, pr);
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "concurrency");
	if (c && !cJSON_IsArray(c)) {
		job_problems_add(pr, "evaluation.concurrency",
				 "expected an array of whole numbers such as [1, 2, 4], got %s",
				 json_type_name(c));
	} else if (c) {
		int n = cJSON_GetArraySize(c);
		if (n == 0) {
			job_problems_add(pr, "evaluation.concurrency",
					 "empty; give at least one level, such as [1, 2, 4]");
		} else if (n > JOB_SPEC_MAX_CONCURRENCY_LEVELS) {
			job_problems_add(pr, "evaluation.concurrency",
					 "%d levels; at most %d", n, JOB_SPEC_MAX_CONCURRENCY_LEVELS);
		} else {
			int64_t *v = calloc((size_t)n, sizeof *v);
			if (!v) {
				*oom = true;
				return;
			}
			size_t k = 0;
			int i = 0;
			for (const cJSON *e = c->child; e; e = e->next, i++) {
				char p[128];
				snprintf(p, sizeof p, "evaluation.concurrency[%d]", i);
				if (read_int(e, p, 1, JOB_SPEC_MAX_CONCURRENCY, false, &v[k], pr))
					k++;
			}
			s->evaluation.concurrency = v;
			s->evaluation.n_concurrency = k;
		}
	}
	get_int(o, path, "input_tokens", 1, JOB_SPEC_MAX_TOKENS, &s->evaluation.input_tokens, pr);
	get_int(o, path, "output_tokens", 1, JOB_SPEC_MAX_TOKENS, &s->evaluation.output_tokens, pr);
	get_int(o, path, "requests_per_level", 1, JOB_SPEC_MAX_REQUESTS,
		&s->evaluation.requests_per_level, pr);
	get_string(o, path, "instance", &s->evaluation.instance, pr, oom);
	get_double(o, path, "discount", &s->evaluation.has_discount, &s->evaluation.discount, pr);
	get_string(o, path, "baseline", &s->evaluation.baseline, pr, oom);
	get_string(o, path, "text", &s->evaluation.text, pr, oom);
}

static void parse_runtime(const cJSON *o, job_spec *s, job_problems *pr)
{
	static const char *const known[] = {"tensor_parallel_degree", "max_batch_size",
					    "max_model_len", NULL};
	const char *path = "runtime";
	s->has_runtime = true;
	check_fields(o, path, known, pr);
	get_int(o, path, "tensor_parallel_degree", 1, JOB_SPEC_MAX_TP,
		&s->runtime.tensor_parallel_degree, pr);
	get_int(o, path, "max_batch_size", 1, JOB_SPEC_MAX_BATCH, &s->runtime.max_batch_size, pr);
	get_int(o, path, "max_model_len", 1, JOB_SPEC_MAX_TOKENS, &s->runtime.max_model_len, pr);
}

/* ---- OverrideEnvironment ----------------------------------------------------------------- */

/* Sets a string field from an OPTION_ key; a different value already given natively is a
 * conflict. */
static void env_set_str(char **field, const char *value, const char *native_path,
			const char *p, job_problems *pr, bool *oom)
{
	if (*field) {
		if (strcmp(*field, value) != 0)
			job_problems_add(pr, p, "'%s' conflicts with %s = '%s'; give one of them",
					 value, native_path, *field);
		return;
	}
	if (!(*field = dup_str(value)))
		*oom = true;
}

static void env_set_int(int64_t *field, const cJSON *v, int64_t hi, const char *native_path,
			const char *p, job_problems *pr)
{
	int64_t x;
	if (!read_int(v, p, 1, hi, true, &x, pr))
		return;
	if (*field && *field != x) {
		job_problems_add(pr, p, "%lld conflicts with %s = %lld; give one of them",
				 (long long)x, native_path, (long long)*field);
		return;
	}
	*field = x;
}

/* The cloud toolkit's names for a quantization method, and ours, to ours. */
static const char *env_method(const char *v)
{
	static const char *const alias[][2] = {
		{"awq", "int4-awq"}, {"smoothquant", "int8-smoothquant"},
		{"sq", "int8-smoothquant"}, {"int8", "int8-smoothquant"},
		{"int4", "int4-awq"}, {"rtn", "int4-rtn"}, {"fp8_e4m3", "fp8"},
	};
	for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
		if (strcmp(v, alias[i][0]) == 0)
			return alias[i][1];
	return v;
}

static const char *env_kv(const char *v)
{
	if (strcmp(v, "auto") == 0)
		return "model";
	if (strcmp(v, "fp8_e4m3") == 0 || strcmp(v, "fp8_e5m2") == 0)
		return "fp8";
	if (strcmp(v, "bfloat16") == 0)
		return "bf16";
	return v;
}

static void parse_override_env(const cJSON *o, job_spec *s, job_problems *pr, bool *oom)
{
	char list[512];
	for (const cJSON *c = o->child; c; c = c->next) {
		char p[160];
		const char *key = c->string ? c->string : "";
		snprintf(p, sizeof p, "override_environment.%s", key);
		if (!in_list(key, job_spec_option_keys)) {
			job_problems_add(pr, p, "unknown key '%s'; known keys: %s", key,
					 join_list(job_spec_option_keys, list, sizeof list));
			continue;
		}
		bool str_key = strcmp(key, "OPTION_QUANTIZE") == 0 ||
			       strcmp(key, "OPTION_SPECULATIVE_DRAFT_MODEL") == 0 ||
			       strcmp(key, "OPTION_KV_CACHE_DTYPE") == 0;
		if (str_key && (!cJSON_IsString(c) || !c->valuestring)) {
			job_problems_add(pr, p, "expected a string, got %s", json_type_name(c));
			continue;
		}
		if (strcmp(key, "OPTION_QUANTIZE") == 0) {
			s->has_quantization = true;
			env_set_str(&s->quantization.method, env_method(c->valuestring),
				    "quantization.method", p, pr, oom);
		} else if (strcmp(key, "OPTION_KV_CACHE_DTYPE") == 0) {
			s->has_quantization = true;
			env_set_str(&s->quantization.kv_cache, env_kv(c->valuestring),
				    "quantization.kv_cache", p, pr, oom);
		} else if (strcmp(key, "OPTION_SPECULATIVE_DRAFT_MODEL") == 0) {
			s->has_speculative = true;
			env_set_str(&s->speculative.draft, c->valuestring,
				    "speculative_decoding.draft", p, pr, oom);
		} else if (strcmp(key, "OPTION_SPECULATIVE_LENGTH") == 0) {
			s->has_speculative = true;
			env_set_int(&s->speculative.k, c, JOB_SPEC_MAX_SPEC_K, "speculative_decoding.k", p, pr);
		} else if (strcmp(key, "OPTION_TENSOR_PARALLEL_DEGREE") == 0) {
			s->has_runtime = true;
			env_set_int(&s->runtime.tensor_parallel_degree, c, JOB_SPEC_MAX_TP,
				    "runtime.tensor_parallel_degree", p, pr);
		} else if (strcmp(key, "OPTION_MAX_ROLLING_BATCH_SIZE") == 0) {
			s->has_runtime = true;
			env_set_int(&s->runtime.max_batch_size, c, JOB_SPEC_MAX_BATCH, "runtime.max_batch_size",
				    p, pr);
		} else if (strcmp(key, "OPTION_MAX_MODEL_LEN") == 0) {
			s->has_runtime = true;
			env_set_int(&s->runtime.max_model_len, c, JOB_SPEC_MAX_TOKENS, "runtime.max_model_len",
				    p, pr);
		}
	}
}

/* ---- validation -------------------------------------------------------------------------- */

static void check_range(int64_t v, const char *p, int64_t lo, int64_t hi, job_problems *pr)
{
	if (v && (v < lo || v > hi))
		job_problems_add(pr, p, "%lld is out of range (%lld to %lld)", (long long)v,
				 (long long)lo, (long long)hi);
}

static void check_ref(const job_spec_env *env, job_ref_kind kind, const char *ref,
		      const char *p, job_problems *pr)
{
	char why[256] = "not found";
	if (!env || !env->resolve || !ref || !*ref)
		return;
	if (!env->resolve(env->resolve_ctx, kind, ref, why, sizeof why))
		job_problems_add(pr, p, "%s", why);
}

int job_spec_validate(const job_spec *s, const job_spec_env *env, job_problems *probs,
		      os_error *err)
{
	job_problems local = {0};
	job_problems *pr = probs ? probs : &local;
	size_t before = pr->n;
	char list[512];

	if (!s->model || !*s->model)
		job_problems_add(pr, "model", "required: a hub name or a model file path");
	else
		check_ref(env, JOB_REF_MODEL, s->model, "model", pr);
	if (s->name && !*s->name)
		job_problems_add(pr, "name", "empty; leave it out or give a label");
	if (!s->has_quantization && !s->has_evaluation)
		job_problems_add(pr, "", "the spec asks for nothing: add a quantization or an "
					 "evaluation block (or OPTION_QUANTIZE)");

	if (s->has_quantization) {
		const char *m = s->quantization.method;
		if (!m)
			job_problems_add(pr, "quantization.method", "required; one of %s",
					 join_methods(list, sizeof list));
		else if (!method_known(m))
			job_problems_add(pr, "quantization.method", "unknown method '%s'; one of %s",
					 m, join_methods(list, sizeof list));
		bool known = m && method_known(m);
		if (s->quantization.has_alpha) {
			double a = s->quantization.alpha;
			if (!(a >= 0 && a <= 1))
				job_problems_add(pr, "quantization.alpha",
						 "%g is out of range (0 to 1)", a);
			else if (known && strcmp(m, quant_method_name(QUANT_INT8_SQ)) != 0)
				job_problems_add(pr, "quantization.alpha",
						 "only int8-smoothquant uses alpha, not %s", m);
		}
		int64_t g = s->quantization.group_size;
		if (g && g != 32 && g != 64 && g != 128)
			job_problems_add(pr, "quantization.group_size",
					 "%lld is not a supported group size (32, 64 or 128)",
					 (long long)g);
		else if (g && known && !method_is_int4(m))
			job_problems_add(pr, "quantization.group_size",
					 "only the int4 methods use a group size, not %s", m);
		if (s->quantization.kv_cache && !in_list(s->quantization.kv_cache, kv_cache_names))
			job_problems_add(pr, "quantization.kv_cache", "unknown KV cache type '%s'; "
					 "one of %s", s->quantization.kv_cache,
					 join_list(kv_cache_names, list, sizeof list));
		if (s->quantization.has_scale_search && s->quantization.scale_search && known &&
		    !method_searches(m))
			job_problems_add(pr, "quantization.scale_search",
					 "the scale search is for the fp8 and int4 methods, not %s", m);
		if (s->quantization.has_gptq && s->quantization.gptq && known && !method_gptq(m))
			job_problems_add(pr, "quantization.gptq",
					 "gptq is for int4-awq, int4-rtn and fp8, not %s", m);
		if (s->quantization.has_calibration) {
			if (known && !job_spec_calibrates(s))
				job_problems_add(pr, "quantization.calibration",
						 "%s needs no calibration; only int8-smoothquant, "
						 "int4-awq, the scale search (fp8, int4-rtn) and "
						 "gptq calibrate", m);
			check_range(s->quantization.calib_samples, "quantization.calibration.samples",
				    1, JOB_SPEC_MAX_SAMPLES, pr);
			check_range(s->quantization.calib_seq_len, "quantization.calibration.seq_len",
				    2, JOB_SPEC_MAX_TOKENS, pr);
			if (s->quantization.calib_file && !*s->quantization.calib_file)
				job_problems_add(pr, "quantization.calibration.file", "empty path");
			else
				check_ref(env, JOB_REF_FILE, s->quantization.calib_file,
					  "quantization.calibration.file", pr);
		}
	}

	if (s->has_speculative) {
		const char *d = s->speculative.draft;
		if (!d || !*d)
			job_problems_add(pr, "speculative_decoding.draft",
					 "required: \"recommended\", \"ngram\", a hub name or a path");
		else if (strcmp(d, "recommended") != 0 && strcmp(d, "ngram") != 0) {
			if (s->model && strcmp(d, s->model) == 0)
				job_problems_add(pr, "speculative_decoding.draft",
						 "the draft is the model itself; use a smaller "
						 "model, \"recommended\" or \"ngram\"");
			else
				check_ref(env, JOB_REF_DRAFT, d, "speculative_decoding.draft", pr);
		}
		if (s->speculative.k)
			check_range(s->speculative.k, "speculative_decoding.k", 1,
				    JOB_SPEC_MAX_SPEC_K, pr);
		if (!s->has_evaluation)
			job_problems_add(pr, "speculative_decoding",
					 "speculative decoding is a run-time setting measured by "
					 "evaluation; add an evaluation block");
	}

	int64_t max_c = 0;
	if (s->has_evaluation) {
		for (size_t i = 0; i < s->evaluation.n_concurrency; i++) {
			char p[64];
			int64_t c = s->evaluation.concurrency[i];
			snprintf(p, sizeof p, "evaluation.concurrency[%zu]", i);
			if (c < 1 || c > JOB_SPEC_MAX_CONCURRENCY)
				job_problems_add(pr, p, "%lld is out of range (1 to %d)",
						 (long long)c, JOB_SPEC_MAX_CONCURRENCY);
			for (size_t j = 0; j < i; j++)
				if (s->evaluation.concurrency[j] == c) {
					job_problems_add(pr, p, "level %lld is given twice",
							 (long long)c);
					break;
				}
			if (c > max_c)
				max_c = c;
		}
		check_range(s->evaluation.input_tokens, "evaluation.input_tokens", 1,
			    JOB_SPEC_MAX_TOKENS, pr);
		check_range(s->evaluation.output_tokens, "evaluation.output_tokens", 1,
			    JOB_SPEC_MAX_TOKENS, pr);
		check_range(s->evaluation.requests_per_level, "evaluation.requests_per_level", 1,
			    JOB_SPEC_MAX_REQUESTS, pr);
		if (s->evaluation.has_discount &&
		    !(s->evaluation.discount >= 0 && s->evaluation.discount < 1))
			job_problems_add(pr, "evaluation.discount",
					 "%g is out of range (0 to 1, exclusive; 0.26 is 26%%)",
					 s->evaluation.discount);
		if (s->evaluation.instance && !*s->evaluation.instance)
			job_problems_add(pr, "evaluation.instance", "empty name");
		else
			check_ref(env, JOB_REF_INSTANCE, s->evaluation.instance,
				  "evaluation.instance", pr);
		if (s->evaluation.baseline && !*s->evaluation.baseline)
			job_problems_add(pr, "evaluation.baseline", "empty name");
		else
			check_ref(env, JOB_REF_MODEL, s->evaluation.baseline, "evaluation.baseline",
				  pr);
		if (s->evaluation.text && !*s->evaluation.text)
			job_problems_add(pr, "evaluation.text", "empty path");
		else
			check_ref(env, JOB_REF_FILE, s->evaluation.text, "evaluation.text", pr);
	}

	if (s->has_runtime) {
		int64_t tp = s->runtime.tensor_parallel_degree;
		int n_gpus = env ? env->n_gpus : 0;
		if (tp)
			check_range(tp, "runtime.tensor_parallel_degree", 1, JOB_SPEC_MAX_TP, pr);
		if (tp > 1 && tp <= JOB_SPEC_MAX_TP) {
			if (n_gpus <= 0)
				job_problems_add(pr, "runtime.tensor_parallel_degree",
						 "tensor parallelism (degree %lld) needs GPUs and this "
						 "machine has none; the CPU backend runs degree 1",
						 (long long)tp);
			else if (tp > n_gpus)
				job_problems_add(pr, "runtime.tensor_parallel_degree",
						 "degree %lld needs %lld GPUs; this machine has %d",
						 (long long)tp, (long long)tp, n_gpus);
		}
		int64_t mb = s->runtime.max_batch_size, ml = s->runtime.max_model_len;
		check_range(mb, "runtime.max_batch_size", 1, JOB_SPEC_MAX_BATCH, pr);
		check_range(ml, "runtime.max_model_len", 1, JOB_SPEC_MAX_TOKENS, pr);
		if (mb > 0 && max_c > mb)
			job_problems_add(pr, "evaluation.concurrency",
					 "level %lld exceeds runtime.max_batch_size = %lld",
					 (long long)max_c, (long long)mb);
		int64_t need = s->evaluation.input_tokens + s->evaluation.output_tokens;
		if (ml > 0 && s->has_evaluation && need > ml)
			job_problems_add(pr, "runtime.max_model_len",
					 "%lld is less than evaluation.input_tokens + output_tokens "
					 "= %lld", (long long)ml, (long long)need);
	}

	size_t found = pr->n - before;
	int rc = OS_OK;
	if (pr->oom)
		rc = os_error_set(err, OS_ENOMEM, "out of memory validating the job spec");
	else if (found)
		rc = os_error_set(err, OS_EFORMAT, "%zu problem%s in the job spec; first: %s%s%s",
				  found, found == 1 ? "" : "s", pr->v[before].path,
				  *pr->v[before].path ? ": " : "", pr->v[before].message);
	job_problems_free(&local);
	return rc;
}

/* ---- parse ------------------------------------------------------------------------------- */

int job_spec_parse(const char *json, size_t len, const job_spec_env *env, job_spec **out,
		   job_problems *probs, os_error *err)
{
	job_problems local = {0};
	job_problems *pr = probs ? probs : &local;
	size_t before = pr->n;
	bool oom = false;
	int rc;
	*out = NULL;

	job_spec *s = calloc(1, sizeof *s);
	if (!s)
		return os_error_set(err, OS_ENOMEM, "out of memory reading the job spec");
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (!root) {
		size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
		size_t line = 1, col = 1;
		for (size_t i = 0; i < at; i++) {
			if (json[i] == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		job_problems_add(pr, "", "not valid JSON near line %zu, column %zu", line, col);
		goto done;
	}
	if (!cJSON_IsObject(root)) {
		job_problems_add(pr, "", "expected a JSON object, got %s", json_type_name(root));
		goto done;
	}
	static const char *const known[] = {"name", "model", "quantization",
					    "speculative_decoding", "evaluation", "runtime",
					    "override_environment", NULL};
	check_fields(root, "", known, pr);
	get_string(root, "", "name", &s->name, pr, &oom);
	get_string(root, "", "model", &s->model, pr, &oom);
	const cJSON *o;
	if ((o = get_object(root, "", "quantization", pr)))
		parse_quantization(o, s, pr, &oom);
	if ((o = get_object(root, "", "speculative_decoding", pr)))
		parse_speculative(o, s, pr, &oom);
	if ((o = get_object(root, "", "evaluation", pr)))
		parse_evaluation(o, s, pr, &oom);
	if ((o = get_object(root, "", "runtime", pr)))
		parse_runtime(o, s, pr);
	if ((o = get_object(root, "", "override_environment", pr)))
		parse_override_env(o, s, pr, &oom);
	if (oom)
		goto done;
	/* semantic checks only on a document whose shape is right, so one mistake is not
	 * reported twice */
	if (pr->n == before)
		job_spec_validate(s, env, pr, NULL);
done:
	cJSON_Delete(root);
	if (oom || pr->oom) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory reading the job spec");
	} else if (pr->n > before) {
		size_t found = pr->n - before;
		rc = os_error_set(err, OS_EFORMAT, "%zu problem%s in the job spec; first: %s%s%s",
				  found, found == 1 ? "" : "s", pr->v[before].path,
				  *pr->v[before].path ? ": " : "", pr->v[before].message);
	} else {
		*out = s;
		s = NULL;
		rc = OS_OK;
	}
	job_spec_free(s);
	job_problems_free(&local);
	return rc;
}

/* ---- print ------------------------------------------------------------------------------- */

/* Adds helpers that record failure in *ok instead of checking each call. */
static void add_str(cJSON *o, const char *k, const char *v, bool *ok)
{
	if (v && !cJSON_AddStringToObject(o, k, v))
		*ok = false;
}

static void add_int(cJSON *o, const char *k, int64_t v, bool *ok)
{
	if (v && !cJSON_AddNumberToObject(o, k, (double)v))
		*ok = false;
}

/* Doubles are written with the fewest of 15..17 significant digits that read back exactly
 * (cJSON's own printing accepts an approximate round trip). */
static void add_num(cJSON *o, const char *k, bool has, double v, bool *ok)
{
	if (!has)
		return;
	char buf[40];
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(buf, sizeof buf, "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!cJSON_AddRawToObject(o, k, buf))
		*ok = false;
}

static cJSON *add_obj(cJSON *o, const char *k, bool *ok)
{
	cJSON *c = cJSON_AddObjectToObject(o, k);
	if (!c)
		*ok = false;
	return c;
}

char *job_spec_print(const job_spec *s, bool pretty)
{
	bool ok = true;
	char *text = NULL;
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	add_str(root, "name", s->name, &ok);
	add_str(root, "model", s->model, &ok);
	cJSON *o;
	if (s->has_quantization && (o = add_obj(root, "quantization", &ok))) {
		add_str(o, "method", s->quantization.method, &ok);
		add_num(o, "alpha", s->quantization.has_alpha, s->quantization.alpha, &ok);
		add_int(o, "group_size", s->quantization.group_size, &ok);
		add_str(o, "kv_cache", s->quantization.kv_cache, &ok);
		if (s->quantization.has_scale_search &&
		    !cJSON_AddBoolToObject(o, "scale_search", s->quantization.scale_search))
			ok = false;
		if (s->quantization.has_gptq &&
		    !cJSON_AddBoolToObject(o, "gptq", s->quantization.gptq))
			ok = false;
		cJSON *c;
		if (s->quantization.has_calibration && (c = add_obj(o, "calibration", &ok))) {
			add_str(c, "file", s->quantization.calib_file, &ok);
			add_int(c, "samples", s->quantization.calib_samples, &ok);
			add_int(c, "seq_len", s->quantization.calib_seq_len, &ok);
		}
	}
	if (s->has_speculative && (o = add_obj(root, "speculative_decoding", &ok))) {
		add_str(o, "draft", s->speculative.draft, &ok);
		add_int(o, "k", s->speculative.k, &ok);
	}
	if (s->has_evaluation && (o = add_obj(root, "evaluation", &ok))) {
		if (s->evaluation.n_concurrency) {
			cJSON *a = cJSON_AddArrayToObject(o, "concurrency");
			for (size_t i = 0; a && i < s->evaluation.n_concurrency; i++) {
				cJSON *n = cJSON_CreateNumber((double)s->evaluation.concurrency[i]);
				if (!n || !cJSON_AddItemToArray(a, n)) {
					cJSON_Delete(n);
					ok = false;
				}
			}
			if (!a)
				ok = false;
		}
		add_int(o, "input_tokens", s->evaluation.input_tokens, &ok);
		add_int(o, "output_tokens", s->evaluation.output_tokens, &ok);
		add_int(o, "requests_per_level", s->evaluation.requests_per_level, &ok);
		add_str(o, "instance", s->evaluation.instance, &ok);
		add_num(o, "discount", s->evaluation.has_discount, s->evaluation.discount, &ok);
		add_str(o, "baseline", s->evaluation.baseline, &ok);
		add_str(o, "text", s->evaluation.text, &ok);
	}
	if (s->has_runtime && (o = add_obj(root, "runtime", &ok))) {
		add_int(o, "tensor_parallel_degree", s->runtime.tensor_parallel_degree, &ok);
		add_int(o, "max_batch_size", s->runtime.max_batch_size, &ok);
		add_int(o, "max_model_len", s->runtime.max_model_len, &ok);
	}
	if (ok)
		text = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

/* ---- equal / dup / free ------------------------------------------------------------------ */

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool job_spec_equal(const job_spec *a, const job_spec *b)
{
	if (!str_eq(a->name, b->name) || !str_eq(a->model, b->model))
		return false;
	if (a->has_quantization != b->has_quantization ||
	    a->has_speculative != b->has_speculative || a->has_evaluation != b->has_evaluation ||
	    a->has_runtime != b->has_runtime)
		return false;
	const __typeof__(a->quantization) *qa = &a->quantization, *qb = &b->quantization;
	if (!str_eq(qa->method, qb->method) || qa->has_alpha != qb->has_alpha ||
	    (qa->has_alpha && qa->alpha != qb->alpha) || qa->group_size != qb->group_size ||
	    !str_eq(qa->kv_cache, qb->kv_cache) || qa->has_calibration != qb->has_calibration ||
	    !str_eq(qa->calib_file, qb->calib_file) || qa->calib_samples != qb->calib_samples ||
	    qa->calib_seq_len != qb->calib_seq_len || qa->has_scale_search != qb->has_scale_search ||
	    (qa->has_scale_search && qa->scale_search != qb->scale_search) ||
	    qa->has_gptq != qb->has_gptq || (qa->has_gptq && qa->gptq != qb->gptq))
		return false;
	if (!str_eq(a->speculative.draft, b->speculative.draft) ||
	    a->speculative.k != b->speculative.k)
		return false;
	const __typeof__(a->evaluation) *ea = &a->evaluation, *eb = &b->evaluation;
	if (ea->n_concurrency != eb->n_concurrency ||
	    (ea->n_concurrency &&
	     memcmp(ea->concurrency, eb->concurrency, ea->n_concurrency * sizeof *ea->concurrency)))
		return false;
	if (ea->input_tokens != eb->input_tokens || ea->output_tokens != eb->output_tokens ||
	    ea->requests_per_level != eb->requests_per_level ||
	    !str_eq(ea->instance, eb->instance) || ea->has_discount != eb->has_discount ||
	    (ea->has_discount && ea->discount != eb->discount) ||
	    !str_eq(ea->baseline, eb->baseline) || !str_eq(ea->text, eb->text))
		return false;
	return a->runtime.tensor_parallel_degree == b->runtime.tensor_parallel_degree &&
	       a->runtime.max_batch_size == b->runtime.max_batch_size &&
	       a->runtime.max_model_len == b->runtime.max_model_len;
}

job_spec *job_spec_dup(const job_spec *s)
{
	job_spec *d = malloc(sizeof *d);
	if (!d)
		return NULL;
	*d = *s;
	d->name = dup_str(s->name);
	d->model = dup_str(s->model);
	d->quantization.method = dup_str(s->quantization.method);
	d->quantization.kv_cache = dup_str(s->quantization.kv_cache);
	d->quantization.calib_file = dup_str(s->quantization.calib_file);
	d->speculative.draft = dup_str(s->speculative.draft);
	d->evaluation.instance = dup_str(s->evaluation.instance);
	d->evaluation.baseline = dup_str(s->evaluation.baseline);
	d->evaluation.text = dup_str(s->evaluation.text);
	d->evaluation.concurrency = NULL;
	if (s->evaluation.n_concurrency) {
		size_t n = s->evaluation.n_concurrency * sizeof *s->evaluation.concurrency;
		if ((d->evaluation.concurrency = malloc(n)))
			memcpy(d->evaluation.concurrency, s->evaluation.concurrency, n);
	}
	if ((s->name && !d->name) || (s->model && !d->model) ||
	    (s->quantization.method && !d->quantization.method) ||
	    (s->quantization.kv_cache && !d->quantization.kv_cache) ||
	    (s->quantization.calib_file && !d->quantization.calib_file) ||
	    (s->speculative.draft && !d->speculative.draft) ||
	    (s->evaluation.instance && !d->evaluation.instance) ||
	    (s->evaluation.baseline && !d->evaluation.baseline) ||
	    (s->evaluation.text && !d->evaluation.text) ||
	    (s->evaluation.n_concurrency && !d->evaluation.concurrency)) {
		job_spec_free(d);
		return NULL;
	}
	return d;
}

void job_spec_free(job_spec *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->model);
	free(s->quantization.method);
	free(s->quantization.kv_cache);
	free(s->quantization.calib_file);
	free(s->speculative.draft);
	free(s->evaluation.concurrency);
	free(s->evaluation.instance);
	free(s->evaluation.baseline);
	free(s->evaluation.text);
	free(s);
}
