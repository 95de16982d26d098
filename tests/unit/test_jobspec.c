/* test_jobspec.c: job spec parsing, validation (every problem with its path),
 * OverrideEnvironment mapping, and the property parse(print(x)) == x on random specs. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/jobs/pipeline.h"
#include "core/jobs/spec.h"
#include "tests/test.h"

static bool has_problem(const job_problems *p, const char *path, const char *needle)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].path, path) == 0 && strstr(p->v[i].message, needle))
			return true;
	return false;
}

static void dump(const job_problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		fprintf(stderr, "    %s: %s\n", p->v[i].path, p->v[i].message);
}

/* A resolver that knows models "m", "draft", instance "local" and file "calib.txt". */
static bool resolver(void *ctx, job_ref_kind kind, const char *ref, char *why, size_t len)
{
	int *calls = ctx;
	(*calls)++;
	bool ok = kind == JOB_REF_INSTANCE ? strcmp(ref, "local") == 0
		  : kind == JOB_REF_FILE   ? strcmp(ref, "calib.txt") == 0
					   : strcmp(ref, "m") == 0 || strcmp(ref, "draft") == 0;
	if (!ok)
		snprintf(why, len, "no such thing '%s'", ref);
	return ok;
}

static int parse(const char *json, job_spec **out, job_problems *p)
{
	static int calls;
	job_spec_env env = {.resolve = resolver, .resolve_ctx = &calls};
	os_error err = {0};
	return job_spec_parse(json, strlen(json), &env, out, p, &err);
}

/* True when doc is refused (OS_EFORMAT) with a problem at path whose message holds needle;
 * else the problems are printed. */
static bool refused(const char *doc, const char *path, const char *needle)
{
	job_spec *s = NULL;
	job_problems p = {0};
	bool ok = parse(doc, &s, &p) == OS_EFORMAT && has_problem(&p, path, needle);
	if (!ok)
		dump(&p);
	job_spec_free(s);
	job_problems_free(&p);
	return ok;
}

TEST(test_minimal_spec)
{
	job_spec *s = NULL;
	job_problems p = {0};
	CHECK_EQ_INT(parse("{\"model\": \"m\", \"quantization\": {\"method\": \"fp8\"}}", &s, &p),
		     OS_OK);
	CHECK(s && p.n == 0);
	if (s) {
		CHECK_EQ_STR(s->model, "m");
		CHECK_EQ_STR(s->quantization.method, "fp8");
		CHECK(!s->has_evaluation && !s->has_speculative);
		char *t = job_spec_print(s, false);
		CHECK_EQ_STR(t, "{\"model\":\"m\",\"quantization\":{\"method\":\"fp8\"}}");
		free(t);
	}
	job_spec_free(s);
	job_problems_free(&p);
}

TEST(test_every_problem_listed)
{
	job_spec *s = NULL;
	job_problems p = {0};
	const char *doc =
		"{\"model\": 3, \"extra\": 1, \"quantization\": {\"method\": \"fp8\", \"alpha\": \"x\","
		" \"calibration\": {\"samples\": 0, \"bogus\": true}},"
		" \"evaluation\": {\"concurrency\": [1, 2.5, -1], \"discount\": []},"
		" \"runtime\": {\"max_batch_size\": 99999}}";
	CHECK_EQ_INT(parse(doc, &s, &p), OS_EFORMAT);
	CHECK(s == NULL);
	CHECK(has_problem(&p, "model", "expected a string, got a number"));
	CHECK(has_problem(&p, "extra", "unknown field 'extra'"));
	CHECK(has_problem(&p, "quantization.alpha", "expected a number"));
	CHECK(has_problem(&p, "quantization.calibration.samples", "0 is out of range"));
	CHECK(has_problem(&p, "quantization.calibration.bogus", "unknown field"));
	CHECK(has_problem(&p, "evaluation.concurrency[1]", "whole number"));
	CHECK(has_problem(&p, "evaluation.concurrency[2]", "out of range"));
	CHECK(has_problem(&p, "evaluation.discount", "expected a number"));
	CHECK(has_problem(&p, "runtime.max_batch_size", "out of range"));
	CHECK_MSG(p.n == 9, "%zu problems", p.n);
	if (p.n != 9)
		dump(&p);
	job_problems_free(&p);
}

TEST(test_semantic_problems)
{
	job_spec *s = NULL;
	job_problems p = {0};
	const char *doc =
		"{\"model\": \"ghost\", \"quantization\": {\"method\": \"int8\", \"alpha\": 0.5,"
		" \"group_size\": 64, \"calibration\": {\"file\": \"nope.txt\"}},"
		" \"speculative_decoding\": {\"draft\": \"ghost2\"},"
		" \"evaluation\": {\"concurrency\": [4, 4, 32], \"input_tokens\": 100,"
		" \"output_tokens\": 100, \"instance\": \"mars\", \"discount\": 1},"
		" \"runtime\": {\"tensor_parallel_degree\": 4, \"max_batch_size\": 8,"
		" \"max_model_len\": 150}}";
	CHECK_EQ_INT(parse(doc, &s, &p), OS_EFORMAT);
	CHECK(has_problem(&p, "model", "no such thing 'ghost'"));
	CHECK(has_problem(&p, "quantization.alpha", "only int8-smoothquant"));
	CHECK(has_problem(&p, "quantization.group_size", "only the int4 methods"));
	CHECK(has_problem(&p, "quantization.calibration", "needs no calibration"));
	CHECK(has_problem(&p, "speculative_decoding.draft", "no such thing 'ghost2'"));
	CHECK(has_problem(&p, "evaluation.concurrency[1]", "given twice"));
	CHECK(has_problem(&p, "evaluation.instance", "no such thing 'mars'"));
	CHECK(has_problem(&p, "evaluation.discount", "out of range"));
	CHECK(has_problem(&p, "runtime.tensor_parallel_degree", "needs GPUs"));
	CHECK(has_problem(&p, "evaluation.concurrency", "exceeds runtime.max_batch_size"));
	CHECK(has_problem(&p, "runtime.max_model_len", "less than"));
	job_problems_free(&p);

	/* the scale search: a boolean, not for the INT8 methods; fp8 (which searches by default)
	 * and int4-rtn with it take calibration settings, fp8 without it does not */
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"int8-smoothquant\", "
		      "\"scale_search\": true}}",
		      "quantization.scale_search", "not int8-smoothquant"));
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"fp8\", "
		      "\"scale_search\": \"yes\"}}",
		      "quantization.scale_search", "expected true or false"));
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"fp8\", "
		      "\"scale_search\": false, \"calibration\": {\"samples\": 4}}}",
		      "quantization.calibration", "needs no calibration"));
	static const struct {
		const char *doc;
		bool search, calibrates;
	} cases[] = {
		{"{\"method\": \"fp8\"}", true, true},
		{"{\"method\": \"fp8\", \"scale_search\": false}", false, false},
		{"{\"method\": \"int4-rtn\"}", false, false},
		{"{\"method\": \"int4-rtn\", \"scale_search\": true, \"calibration\": {\"samples\": 4}}",
		 true, true},
		{"{\"method\": \"int4-awq\", \"scale_search\": false}", false, true},
		{"{\"method\": \"int8\", \"scale_search\": false}", false, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char d[300];
		snprintf(d, sizeof d, "{\"model\": \"m\", \"quantization\": %s}", cases[i].doc);
		job_spec *c = NULL;
		CHECK_MSG(parse(d, &c, &p) == OS_OK, "%s", d);
		if (c) {
			CHECK_MSG(job_spec_scale_search(c) == cases[i].search, "%s", d);
			CHECK_MSG(job_spec_calibrates(c) == cases[i].calibrates, "%s", d);
		}
		job_spec_free(c);
		job_problems_free(&p);
	}

	/* with GPUs, a degree above their count is refused, at or below is fine */
	job_spec *ok = NULL;
	CHECK_EQ_INT(parse("{\"model\": \"m\", \"quantization\": {\"method\": \"int4-awq\", "
			   "\"calibration\": {\"file\": \"calib.txt\"}}}", &ok, &p), OS_OK);
	if (ok) {
		ok->has_runtime = true;
		ok->runtime.tensor_parallel_degree = 4;
		job_spec_env env2 = {.n_gpus = 2};
		CHECK_EQ_INT(job_spec_validate(ok, &env2, &p, NULL), OS_EFORMAT);
		CHECK(has_problem(&p, "runtime.tensor_parallel_degree", "needs 4 GPUs; this machine has 2"));
		job_problems_free(&p);
		env2.n_gpus = 4;
		CHECK_EQ_INT(job_spec_validate(ok, &env2, &p, NULL), OS_OK);
	}
	job_spec_free(ok);
	job_problems_free(&p);
}

/* quantization.gptq: a boolean for int4-awq, int4-rtn and fp8 that makes the spec calibrate;
 * absent means the method's default (on for int4-awq only); absent and false print back as
 * given. */
TEST(test_gptq)
{
	job_problems p = {0};
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"int8-smoothquant\", "
		      "\"gptq\": true}}",
		      "quantization.gptq", "not int8-smoothquant"));
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"fp8-w8a8\", "
		      "\"gptq\": true}}",
		      "quantization.gptq", "not fp8-w8a8"));
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"int4-rtn\", "
		      "\"gptq\": 1}}",
		      "quantization.gptq", "expected true or false"));
	/* false is fine for any method, and needs no calibration by itself */
	CHECK(refused("{\"model\": \"m\", \"quantization\": {\"method\": \"int8\", "
		      "\"gptq\": false, \"calibration\": {\"samples\": 4}}}",
		      "quantization.calibration", "needs no calibration"));
	static const struct {
		const char *doc;
		bool gptq, calibrates;
		const char *printed; /* a fragment of the canonical JSON, or NULL: no "gptq" */
	} cases[] = {
		{"{\"method\": \"int4-rtn\"}", false, false, NULL},
		{"{\"method\": \"int4-rtn\", \"gptq\": true, \"calibration\": {\"samples\": 4}}",
		 true, true, "\"gptq\":true"},
		{"{\"method\": \"int4-rtn\", \"gptq\": false}", false, false, "\"gptq\":false"},
		{"{\"method\": \"fp8\", \"scale_search\": false, \"gptq\": true}", true, true,
		 "\"gptq\":true"},
		{"{\"method\": \"int4-awq\", \"gptq\": true}", true, true, "\"gptq\":true"},
		{"{\"method\": \"int4-awq\"}", true, true, NULL},
		{"{\"method\": \"int4-awq\", \"group_size\": 64, \"scale_search\": false}", true,
		 true, NULL},
		{"{\"method\": \"int4-awq\", \"gptq\": false}", false, true, "\"gptq\":false"},
		{"{\"method\": \"fp8\"}", false, true, NULL},
		{"{\"method\": \"fp8\", \"scale_search\": false}", false, false, NULL},
		{"{\"method\": \"fp8-w8a8\"}", false, false, NULL},
		{"{\"method\": \"int8-smoothquant\"}", false, true, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char d[300];
		snprintf(d, sizeof d, "{\"model\": \"m\", \"quantization\": %s}", cases[i].doc);
		job_spec *c = NULL;
		CHECK_MSG(parse(d, &c, &p) == OS_OK, "%s", d);
		if (c) {
			CHECK_MSG(job_spec_gptq(c) == cases[i].gptq, "%s", d);
			CHECK_MSG(job_spec_calibrates(c) == cases[i].calibrates, "%s", d);
			char *txt = job_spec_print(c, false);
			CHECK(txt != NULL);
			if (txt && cases[i].printed)
				CHECK_MSG(strstr(txt, cases[i].printed), "%s", txt);
			else if (txt)
				CHECK_MSG(!strstr(txt, "gptq"), "%s", txt);
			job_spec *back = NULL;
			if (txt) {
				CHECK(parse(txt, &back, &p) == OS_OK);
				CHECK(back && job_spec_equal(c, back));
			}
			job_spec_free(back);
			free(txt);
		}
		job_spec_free(c);
		job_problems_free(&p);
	}
	/* no method, or one not known: no default to take */
	job_spec bare;
	memset(&bare, 0, sizeof bare);
	bare.has_quantization = true;
	CHECK(!job_spec_gptq(&bare));
	bare.quantization.method = (char *)"int5-awq";
	CHECK(!job_spec_gptq(&bare));
	bare.quantization.method = (char *)"int4-awq";
	CHECK(job_spec_gptq(&bare));
	bare.has_quantization = false;
	CHECK(!job_spec_gptq(&bare));
}

TEST(test_nothing_asked_and_bad_json)
{
	job_spec *s = NULL;
	job_problems p = {0};
	CHECK_EQ_INT(parse("{\"model\": \"m\"}", &s, &p), OS_EFORMAT);
	CHECK(has_problem(&p, "", "asks for nothing"));
	job_problems_free(&p);
	CHECK_EQ_INT(parse("{\"model\": \"m\",\n \"quantization\": {", &s, &p), OS_EFORMAT);
	CHECK(has_problem(&p, "", "not valid JSON near line 2"));
	job_problems_free(&p);
	CHECK_EQ_INT(parse("[1]", &s, &p), OS_EFORMAT);
	CHECK(has_problem(&p, "", "expected a JSON object"));
	job_problems_free(&p);
	CHECK_EQ_INT(parse("{\"model\": \"m\", \"model\": \"m\", \"quantization\": {\"method\": \"fp8\"}}",
			   &s, &p), OS_EFORMAT);
	CHECK(has_problem(&p, "model", "given twice"));
	job_problems_free(&p);
}

TEST(test_override_environment)
{
	job_spec *s = NULL;
	job_problems p = {0};
	const char *doc = "{\"model\": \"m\", \"override_environment\": {"
			  "\"OPTION_QUANTIZE\": \"awq\", \"OPTION_SPECULATIVE_DRAFT_MODEL\": \"draft\","
			  "\"OPTION_SPECULATIVE_LENGTH\": \"5\", \"OPTION_TENSOR_PARALLEL_DEGREE\": 1,"
			  "\"OPTION_MAX_ROLLING_BATCH_SIZE\": \"32\", \"OPTION_KV_CACHE_DTYPE\": \"fp8\","
			  "\"OPTION_MAX_MODEL_LEN\": \"4096\"},"
			  "\"evaluation\": {\"concurrency\": [1, 2]}}";
	CHECK_EQ_INT(parse(doc, &s, &p), OS_OK);
	if (p.n)
		dump(&p);
	if (s) {
		CHECK_EQ_STR(s->quantization.method, "int4-awq");
		CHECK_EQ_STR(s->quantization.kv_cache, "fp8");
		CHECK_EQ_STR(s->speculative.draft, "draft");
		CHECK_EQ_INT(s->speculative.k, 5);
		CHECK_EQ_INT(s->runtime.tensor_parallel_degree, 1);
		CHECK_EQ_INT(s->runtime.max_batch_size, 32);
		CHECK_EQ_INT(s->runtime.max_model_len, 4096);
		/* the canonical form is native: no override_environment */
		char *t = job_spec_print(s, false);
		CHECK(t && !strstr(t, "OPTION_") && strstr(t, "\"method\":\"int4-awq\""));
		free(t);
	}
	job_spec_free(s);
	job_problems_free(&p);

	CHECK_EQ_INT(parse("{\"model\": \"m\", \"quantization\": {\"method\": \"fp8\"},"
			   "\"override_environment\": {\"OPTION_QUANTIZE\": \"awq\", \"OPTION_NOPE\": 1,"
			   "\"OPTION_MAX_MODEL_LEN\": \"lots\"}}", &s, &p), OS_EFORMAT);
	CHECK(has_problem(&p, "override_environment.OPTION_QUANTIZE", "conflicts with quantization.method"));
	CHECK(has_problem(&p, "override_environment.OPTION_NOPE", "known keys: OPTION_QUANTIZE"));
	CHECK(has_problem(&p, "override_environment.OPTION_MAX_MODEL_LEN", "whole number"));
	job_problems_free(&p);
}

/* quantization.kv_cache takes "bf16"; OPTION_KV_CACHE_DTYPE maps "bf16" and "bfloat16" to
 * it (and still fp8_e4m3 to fp8); an unknown type is refused with the list of known ones. */
TEST(test_kv_cache_bf16)
{
	static const char *const cases[][2] = {
		{"{\"model\": \"m\", \"quantization\": {\"method\": \"fp8\", \"kv_cache\": \"bf16\"}}",
		 "bf16"},
		{"{\"model\": \"m\", \"override_environment\": {\"OPTION_KV_CACHE_DTYPE\": \"bf16\"},"
		 "\"quantization\": {\"method\": \"int4-awq\"}}", "bf16"},
		{"{\"model\": \"m\", \"override_environment\": {\"OPTION_KV_CACHE_DTYPE\": \"bfloat16\"},"
		 "\"quantization\": {\"method\": \"int4-awq\"}}", "bf16"},
		{"{\"model\": \"m\", \"override_environment\": {\"OPTION_KV_CACHE_DTYPE\": \"fp8_e4m3\"},"
		 "\"quantization\": {\"method\": \"int4-awq\"}}", "fp8"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		job_spec *s = NULL;
		job_problems p = {0};
		CHECK_MSG(parse(cases[i][0], &s, &p) == OS_OK, "case %zu", i);
		if (p.n)
			dump(&p);
		if (s) {
			CHECK_EQ_STR(s->quantization.kv_cache, cases[i][1]);
			char *t = job_spec_print(s, false);
			char want[64];
			snprintf(want, sizeof want, "\"kv_cache\":\"%s\"", cases[i][1]);
			CHECK_MSG(t && strstr(t, want), "printed: %s", t ? t : "(null)");
			free(t);
		}
		job_spec_free(s);
		job_problems_free(&p);
	}
	static const char *const bad[] = {"fp16", "BF16", "bfloat"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char doc[160];
		snprintf(doc, sizeof doc, "{\"model\": \"m\", \"quantization\": {\"method\": "
			 "\"fp8\", \"kv_cache\": \"%s\"}}", bad[i]);
		job_spec *s = NULL;
		job_problems p = {0};
		CHECK_EQ_INT(parse(doc, &s, &p), OS_EFORMAT);
		CHECK(has_problem(&p, "quantization.kv_cache", bad[i]));
		CHECK(has_problem(&p, "quantization.kv_cache", "model, bf16, fp8, int8"));
		job_spec_free(s);
		job_problems_free(&p);
	}
}

/* ---- property: parse(print(x)) == x --------------------------------------------------- */

static char *rand_name(uint64_t *rng)
{
	static const char alphabet[] = "abcXYZ09 _-./\"\\\n\t\xc3\xa9";
	size_t n = 1 + test_rand_next(rng) % 12;
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		char c = alphabet[test_rand_next(rng) % (sizeof alphabet - 1)];
		s[i] = (c & 0x80) ? 'e' : c; /* keep the text valid UTF-8 */
	}
	s[n] = '\0';
	return s;
}

static int64_t rand_in(uint64_t *rng, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(test_rand_next(rng) % (uint64_t)(hi - lo + 1));
}

/* A random valid spec (no resolver: names are free). */
static job_spec *rand_spec(uint64_t *rng)
{
	static const char *const methods[] = {"fp8", "fp8-w8a8", "int8-smoothquant", "int4-awq",
					      "int4-rtn"};
	static const char *const kvs[] = {"model", "fp8", "int8", "bf16"};
	static const int64_t groups[] = {32, 64, 128};
	job_spec *s = calloc(1, sizeof *s);
	s->model = rand_name(rng);
	if (test_rand_next(rng) % 2)
		s->name = rand_name(rng);
	s->has_quantization = test_rand_next(rng) % 3 != 0;
	s->has_evaluation = !s->has_quantization || test_rand_next(rng) % 2;
	if (s->has_quantization) {
		const char *m = methods[test_rand_next(rng) % 5];
		s->quantization.method = strdup(m);
		if (!strcmp(m, "int8-smoothquant") && test_rand_next(rng) % 2) {
			s->quantization.has_alpha = true;
			s->quantization.alpha = (test_rand_float(rng) + 1) / 2 * 0.999 + 0.0005 / 3.0;
		}
		if (!strncmp(m, "int4", 4) && test_rand_next(rng) % 2)
			s->quantization.group_size = groups[test_rand_next(rng) % 3];
		if (test_rand_next(rng) % 2)
			s->quantization.kv_cache = strdup(kvs[test_rand_next(rng) % 4]);
		if (strncmp(m, "int8", 4) != 0 && test_rand_next(rng) % 2) {
			s->quantization.has_scale_search = true;
			s->quantization.scale_search = test_rand_next(rng) % 2;
		}
		if ((!strcmp(m, "fp8") || !strncmp(m, "int4", 4)) && test_rand_next(rng) % 2) {
			s->quantization.has_gptq = true;
			s->quantization.gptq = test_rand_next(rng) % 2;
		}
		if (job_spec_calibrates(s) && test_rand_next(rng) % 2) {
			s->quantization.has_calibration = true;
			if (test_rand_next(rng) % 2)
				s->quantization.calib_file = rand_name(rng);
			s->quantization.calib_samples = rand_in(rng, 0, 5000);
			s->quantization.calib_seq_len = test_rand_next(rng) % 2 ? rand_in(rng, 2, 9999) : 0;
		}
	}
	if (s->has_evaluation) {
		size_t n = (size_t)rand_in(rng, 0, 7);
		s->evaluation.n_concurrency = n;
		s->evaluation.concurrency = n ? calloc(n, sizeof(int64_t)) : NULL;
		for (size_t i = 0; i < n; i++)
			s->evaluation.concurrency[i] = (int64_t)(i * 37 + 1 + test_rand_next(rng) % 30);
		s->evaluation.input_tokens = rand_in(rng, 0, 4096);
		s->evaluation.output_tokens = rand_in(rng, 0, 4096);
		s->evaluation.requests_per_level = rand_in(rng, 0, 100);
		if (test_rand_next(rng) % 2)
			s->evaluation.instance = rand_name(rng);
		if (test_rand_next(rng) % 2) {
			s->evaluation.has_discount = true;
			s->evaluation.discount = (test_rand_float(rng) + 1) / 2 * 0.9;
		}
		if (test_rand_next(rng) % 2)
			s->evaluation.baseline = rand_name(rng);
		if (test_rand_next(rng) % 2)
			s->evaluation.text = rand_name(rng);
		if (test_rand_next(rng) % 2) {
			s->has_speculative = true;
			s->speculative.draft = test_rand_next(rng) % 2 ? strdup("ngram") : rand_name(rng);
			if (!strcmp(s->speculative.draft, s->model))
				s->speculative.draft[0] ^= 1;
			s->speculative.k = rand_in(rng, 0, 16);
		}
	}
	if (test_rand_next(rng) % 2) {
		s->has_runtime = true;
		s->runtime.tensor_parallel_degree = rand_in(rng, 0, 1);
		s->runtime.max_batch_size = test_rand_next(rng) % 2 ? 4096 : 0;
		s->runtime.max_model_len = test_rand_next(rng) % 2 ? 9000 : 0;
	}
	return s;
}

TEST(test_parse_print_roundtrip)
{
	uint64_t seed = (uint64_t)time(NULL);
	printf("  roundtrip seed %llu\n", (unsigned long long)seed);
	uint64_t rng = seed;
	for (int it = 0; it < 500; it++) {
		job_spec *x = rand_spec(&rng);
		job_problems p = {0};
		os_error verr = {0};
		CHECK_MSG(job_spec_validate(x, NULL, &p, &verr) == OS_OK, "generated spec invalid (iteration %d): %s", it, verr.msg);
		if (p.n)
			dump(&p);
		job_problems_free(&p);
		char *text = job_spec_print(x, it % 2);
		job_spec *y = NULL;
		os_error err = {0};
		int rc = job_spec_parse(text, strlen(text), NULL, &y, &p, &err);
		CHECK_MSG(rc == OS_OK, "iteration %d: %s\n%s", it, err.msg, text);
		CHECK_MSG(y && job_spec_equal(x, y), "iteration %d differs: %s", it, text);
		job_spec *z = job_spec_dup(x);
		CHECK(z && job_spec_equal(x, z));
		job_spec_free(z);
		if (y) {
			char *again = job_spec_print(y, it % 2);
			CHECK(again && strcmp(again, text) == 0);
			free(again);
		}
		job_problems_free(&p);
		job_spec_free(y);
		job_spec_free(x);
		free(text);
		if (test_case_failed)
			break;
	}
}

/* Every example spec in examples/jobs parses (names unchecked) and has a plan: a spec with
 * evaluation or speculative decoding is accepted, and asks for the evaluate stage. */
static void test_examples_accepted(void)
{
	DIR *d = opendir("examples/jobs");
	if (!d) {
		SKIP("examples/jobs not found from the working directory");
	}
	size_t n_files = 0, n_eval = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		char path[512];
		snprintf(path, sizeof path, "examples/jobs/%s", de->d_name);
		FILE *f = fopen(path, "rb");
		CHECK(f != NULL);
		if (!f)
			continue;
		char buf[8192];
		size_t n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		job_spec *s = NULL;
		os_error err = {0};
		CHECK_MSG(job_spec_parse(buf, n, NULL, &s, NULL, &err) == OS_OK, "%s: %s", path,
			  err.msg);
		if (!s)
			continue;
		n_files++;
		const char *plan[8];
		size_t n_plan = 0;
		CHECK_MSG(pipeline_plan(s, plan, 8, &n_plan, &err) == OS_OK, "%s: %s", path, err.msg);
		bool has_eval = false;
		for (size_t i = 0; i < n_plan && i < 8; i++)
			has_eval |= strcmp(plan[i], "evaluate") == 0;
		CHECK_MSG(has_eval == s->has_evaluation, "%s: evaluate stage planned %d", path,
			  (int)has_eval);
		n_eval += s->has_evaluation;
		/* an int4-awq example that does not say otherwise gets GPTQ */
		if (s->has_quantization && s->quantization.method &&
		    !strcmp(s->quantization.method, "int4-awq") && !s->quantization.has_gptq)
			CHECK_MSG(job_spec_gptq(s), "%s: int4-awq without gptq", path);
		job_spec_free(s);
	}
	closedir(d);
	CHECK(n_files >= 4);
	CHECK(n_eval >= 2);
}

int main(void)
{
	RUN(test_minimal_spec);
	RUN(test_every_problem_listed);
	RUN(test_semantic_problems);
	RUN(test_gptq);
	RUN(test_nothing_asked_and_bad_json);
	RUN(test_override_environment);
	RUN(test_kv_cache_bf16);
	RUN(test_parse_print_roundtrip);
	RUN(test_examples_accepted);
	return test_summary();
}
