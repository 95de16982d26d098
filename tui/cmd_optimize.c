/* cmd_optimize.c: `optstudio optimize SPEC.json | MODEL --quantize M ...`: validates a job
 * spec (every problem with its JSON path), queues the job and starts the worker. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hub_ops.h"
#include "job_submit.h"
#include "store/store.h"

static const char optimize_help[] =
	"usage: optstudio optimize SPEC.json [--json]\n"
	"       optstudio optimize MODEL --quantize METHOD [options] [--json]\n"
	"\n"
	"Queues an optimization job and starts the background worker if none runs. The job\n"
	"runs on after this command returns: follow it with 'optstudio jobs'.\n"
	"SPEC.json is a job spec (see optstudio-job(5) and examples/jobs/); '-' reads stdin.\n"
	"The same settings can be given as flags:\n"
	"      --quantize M          fp8 | fp8-w8a8 | int8-smoothquant | int4-awq | int4-rtn | int8\n"
	"      --alpha A             SmoothQuant strength, 0..1\n"
	"      --group-size G        INT4 group size: 32, 64, 128\n"
	"      --kv-cache T          model | bf16 | fp8 | int8\n"
	"      --scale-search        importance-weighted scale search (fp8, int4; default on\n"
	"                            for fp8 with calibration text, and for int4-awq)\n"
	"      --no-scale-search     scales from each range (fp8 without calibration)\n"
	"      --gptq                GPTQ error compensation from calibration Hessians\n"
	"                            (int4-awq, int4-rtn, fp8; default on for int4-awq)\n"
	"      --no-gptq             no GPTQ (int4-awq: AWQ alone)\n"
	"      --calib FILE          calibration text (int8-smoothquant, int4-awq, the search)\n"
	"      --samples N           calibration samples\n"
	"      --seq-len L           tokens per calibration sample\n"
	"      --draft X             speculative draft: recommended | ngram | hub name | path\n"
	"      --spec-k K            draft tokens per step\n"
	"      --eval-concurrency L  evaluate at these concurrency levels, e.g. 1,2,4\n"
	"      --input-tokens N      evaluation: tokens per prompt\n"
	"      --output-tokens N     evaluation: tokens generated per request\n"
	"      --requests N          evaluation: requests per concurrency level\n"
	"      --instance NAME       evaluation: price on this catalog instance\n"
	"      --discount D          evaluation: price discount, 0..1 (0.26 is 26%)\n"
	"      --baseline MODEL      evaluation: compare accuracy against this model (hub name\n"
	"                            or path; default: the input model when quantizing)\n"
	"      --heldout FILE        evaluation: held-out text for accuracy and the prompts\n"
	"      --name N              a label for listings\n"
	"      --json                print the queued job as JSON (with its id)\n"
	"Every problem in a spec is listed with its JSON path; nothing is queued then.\n";

static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	size_t got;
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			if (cap > (64u << 20)) { /* a spec is small; refuse a runaway input */
				free(buf);
				return NULL;
			}
			char *g = realloc(buf, cap * 2);
			if (!g) {
				free(buf);
				return NULL;
			}
			buf = g;
			cap *= 2;
		}
	}
	if (ferror(f)) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

enum {
	OPT_QUANTIZE = 256, OPT_ALPHA, OPT_GROUP, OPT_KV, OPT_CALIB, OPT_SAMPLES, OPT_SEQ_LEN,
	OPT_DRAFT, OPT_SPEC_K, OPT_EVAL_C, OPT_NAME, OPT_JSON, OPT_EVAL_IN, OPT_EVAL_OUT,
	OPT_EVAL_REQ, OPT_EVAL_INST, OPT_EVAL_DISC, OPT_EVAL_BASE, OPT_EVAL_TEXT, OPT_SEARCH,
	OPT_NO_SEARCH, OPT_GPTQ, OPT_NO_GPTQ
};

/* Adds a number given as text on the command line (kept as the text's value; the spec's
 * validation reports a bad one with its path). */
static bool add_number_arg(cJSON *o, const char *key, const char *text, const char *flag)
{
	char *end;
	double v = strtod(text, &end);
	if (!*text || *end) {
		cli_usage_error("optimize", "%s wants a number, not '%s'", flag, text);
		return false;
	}
	cJSON_AddNumberToObject(o, key, v);
	return true;
}

/* Builds the spec JSON from flags. Returns a malloc'd text, or NULL after printing a usage
 * error. */
static char *spec_from_flags(const char *model, int argc, char **argv, bool *json_out)
{
	static const struct option opts[] = {
		{"quantize", required_argument, NULL, OPT_QUANTIZE},
		{"alpha", required_argument, NULL, OPT_ALPHA},
		{"group-size", required_argument, NULL, OPT_GROUP},
		{"kv-cache", required_argument, NULL, OPT_KV},
		{"calib", required_argument, NULL, OPT_CALIB},
		{"scale-search", no_argument, NULL, OPT_SEARCH},
		{"no-scale-search", no_argument, NULL, OPT_NO_SEARCH},
		{"gptq", no_argument, NULL, OPT_GPTQ},
		{"no-gptq", no_argument, NULL, OPT_NO_GPTQ},
		{"samples", required_argument, NULL, OPT_SAMPLES},
		{"seq-len", required_argument, NULL, OPT_SEQ_LEN},
		{"draft", required_argument, NULL, OPT_DRAFT},
		{"spec-k", required_argument, NULL, OPT_SPEC_K},
		{"eval-concurrency", required_argument, NULL, OPT_EVAL_C},
		{"input-tokens", required_argument, NULL, OPT_EVAL_IN},
		{"output-tokens", required_argument, NULL, OPT_EVAL_OUT},
		{"requests", required_argument, NULL, OPT_EVAL_REQ},
		{"instance", required_argument, NULL, OPT_EVAL_INST},
		{"discount", required_argument, NULL, OPT_EVAL_DISC},
		{"baseline", required_argument, NULL, OPT_EVAL_BASE},
		{"heldout", required_argument, NULL, OPT_EVAL_TEXT},
		{"name", required_argument, NULL, OPT_NAME},
		{"json", no_argument, NULL, OPT_JSON},
		{NULL, 0, NULL, 0},
	};
	cJSON *root = cJSON_CreateObject(), *q = NULL, *cal = NULL, *sd = NULL, *ev = NULL;
	char *text = NULL;
	if (!root)
		return NULL;
	if (model)
		cJSON_AddStringToObject(root, "model", model);
	optind = 1;
	opterr = 0;
	int c;
#define OBJ(var, parent, key) (var ? var : (var = cJSON_AddObjectToObject(parent, key)))
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool ok = true;
		switch (c) {
		case OPT_QUANTIZE: cJSON_AddStringToObject(OBJ(q, root, "quantization"), "method", optarg); break;
		case OPT_ALPHA: ok = add_number_arg(OBJ(q, root, "quantization"), "alpha", optarg, "--alpha"); break;
		case OPT_GROUP: ok = add_number_arg(OBJ(q, root, "quantization"), "group_size", optarg, "--group-size"); break;
		case OPT_KV: cJSON_AddStringToObject(OBJ(q, root, "quantization"), "kv_cache", optarg); break;
		case OPT_SEARCH:
		case OPT_NO_SEARCH:
			OBJ(q, root, "quantization");
			cJSON_DeleteItemFromObjectCaseSensitive(q, "scale_search");
			cJSON_AddBoolToObject(q, "scale_search", c == OPT_SEARCH);
			break;
		case OPT_GPTQ:
		case OPT_NO_GPTQ:
			OBJ(q, root, "quantization");
			cJSON_DeleteItemFromObjectCaseSensitive(q, "gptq");
			cJSON_AddBoolToObject(q, "gptq", c == OPT_GPTQ);
			break;
		case OPT_CALIB:
			OBJ(q, root, "quantization");
			cJSON_AddStringToObject(OBJ(cal, q, "calibration"), "file", optarg);
			break;
		case OPT_SAMPLES:
			OBJ(q, root, "quantization");
			ok = add_number_arg(OBJ(cal, q, "calibration"), "samples", optarg, "--samples");
			break;
		case OPT_SEQ_LEN:
			OBJ(q, root, "quantization");
			ok = add_number_arg(OBJ(cal, q, "calibration"), "seq_len", optarg, "--seq-len");
			break;
		case OPT_DRAFT: cJSON_AddStringToObject(OBJ(sd, root, "speculative_decoding"), "draft", optarg); break;
		case OPT_SPEC_K: ok = add_number_arg(OBJ(sd, root, "speculative_decoding"), "k", optarg, "--spec-k"); break;
		case OPT_EVAL_C: {
			cJSON *arr = cJSON_AddArrayToObject(OBJ(ev, root, "evaluation"), "concurrency");
			char *copy = strdup(optarg), *save = NULL;
			for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && ok;
			     t = strtok_r(NULL, ",", &save)) {
				char *end;
				double v = strtod(t, &end);
				if (*end) {
					cli_usage_error("optimize", "--eval-concurrency wants numbers "
							"such as 1,2,4, not '%s'", optarg);
					ok = false;
				} else {
					cJSON_AddItemToArray(arr, cJSON_CreateNumber(v));
				}
			}
			free(copy);
			break;
		}
		case OPT_EVAL_IN: ok = add_number_arg(OBJ(ev, root, "evaluation"), "input_tokens", optarg, "--input-tokens"); break;
		case OPT_EVAL_OUT: ok = add_number_arg(OBJ(ev, root, "evaluation"), "output_tokens", optarg, "--output-tokens"); break;
		case OPT_EVAL_REQ: ok = add_number_arg(OBJ(ev, root, "evaluation"), "requests_per_level", optarg, "--requests"); break;
		case OPT_EVAL_INST: cJSON_AddStringToObject(OBJ(ev, root, "evaluation"), "instance", optarg); break;
		case OPT_EVAL_DISC: ok = add_number_arg(OBJ(ev, root, "evaluation"), "discount", optarg, "--discount"); break;
		case OPT_EVAL_BASE: cJSON_AddStringToObject(OBJ(ev, root, "evaluation"), "baseline", optarg); break;
		case OPT_EVAL_TEXT: cJSON_AddStringToObject(OBJ(ev, root, "evaluation"), "text", optarg); break;
		case OPT_NAME: cJSON_AddStringToObject(root, "name", optarg); break;
		case OPT_JSON: *json_out = true; break;
		default:
			cli_usage_error("optimize", "unknown or incomplete option '%s'", argv[optind - 1]);
			ok = false;
		}
		if (!ok)
			goto done;
	}
#undef OBJ
	if (optind < argc) {
		cli_usage_error("optimize", "unexpected argument '%s'", argv[optind]);
		goto done;
	}
	text = cJSON_PrintUnformatted(root);
done:
	cJSON_Delete(root);
	return text;
}

static bool is_spec_file(const char *arg)
{
	size_t n = strlen(arg);
	return strcmp(arg, "-") == 0 || (n > 5 && strcmp(arg + n - 5, ".json") == 0);
}

int cmd_optimize(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(optimize_help, stdout);
		return EXIT_OK;
	}
	if (argc < 2 || (argv[1][0] == '-' && strcmp(argv[1], "-") != 0))
		return cli_usage_error("optimize", "give a job spec file or a model");
	bool json = false;
	char *text = NULL;
	size_t len = 0;
	char source_buf[PATH_MAX + 8];
	snprintf(source_buf, sizeof source_buf, "'%s'", argv[1]);
	const char *source = source_buf;
	if (is_spec_file(argv[1])) {
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--json") == 0)
				json = true;
			else
				return cli_usage_error("optimize", "with a spec file, only --json is "
						       "taken; put '%s' in the spec", argv[i]);
		}
		FILE *f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "rb");
		if (!f) {
			cli_error("cannot read job spec '%s': %s", argv[1], strerror(errno));
			return EXIT_FAIL;
		}
		text = read_all(f, &len);
		if (f != stdin)
			fclose(f);
		if (!text) {
			cli_error("cannot read job spec '%s'", argv[1]);
			return EXIT_FAIL;
		}
	} else {
		text = spec_from_flags(argv[1], argc - 1, argv + 1, &json);
		if (!text)
			return EXIT_USAGE;
		len = strlen(text);
		source = "(from the command line)";
	}

	int code = EXIT_FAIL;
	store *s = NULL;
	job_problems probs = {0};
	job_submit_result res = {0};
	os_error err = {0};
	if (hub_open(&s, &err)) {
		code = cli_fail(&err, "cannot open the hub");
		goto done;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0) {
		cli_error("cannot find this program's path to start the worker: %s", strerror(errno));
		goto done;
	}
	exe[n] = '\0';
	if (job_submit(s, text, len, exe, &res, &probs, &err)) {
		if (res.job.id) {
			code = cli_fail(&err, "job %lld is queued, but the worker did not start",
					(long long)res.job.id);
		} else if (probs.n) {
			cli_error("invalid job spec %s: %zu problem%s:", source, probs.n,
				  probs.n == 1 ? "" : "s");
			for (size_t i = 0; i < probs.n; i++)
				fprintf(stderr, "  %s: %s\n", *probs.v[i].path ? probs.v[i].path : "(spec)",
					probs.v[i].message);
			code = is_spec_file(argv[1]) ? EXIT_FAIL : EXIT_USAGE;
		} else if (err.rc == OS_EFORMAT) {
			cli_fail(&err, "invalid job spec %s", source);
			code = is_spec_file(argv[1]) ? EXIT_FAIL : EXIT_USAGE;
		} else {
			code = cli_fail(&err, "cannot queue the job");
		}
		goto done;
	}
	store_job job = res.job;
	if (json) {
		char *j = cli_job_json(&job);
		if (!j) {
			cli_error("out of memory");
			goto done;
		}
		printf("%s\n", j);
		free(j);
	} else {
		printf("queued job %lld:", (long long)job.id);
		for (size_t i = 0; i < res.n_plan; i++)
			printf(" %s%s", i ? "-> " : "", res.plan[i]);
		printf(" of '%s'\nfollow it with 'optstudio jobs show %lld' or 'optstudio jobs log "
		       "%lld -f'\n", res.model, (long long)job.id, (long long)job.id);
	}
	code = EXIT_OK;
done:
	job_submit_result_clear(&res);
	job_problems_free(&probs);
	store_close(s);
	free(text);
	return code;
}
