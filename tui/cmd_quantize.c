/* cmd_quantize.c: `optstudio quantize MODEL --method M -o OUT`: quantizes a model into an
 * optstudio GGUF (core/optimize/quantize.h), calibrating first for SmoothQuant, AWQ, the
 * scale search and GPTQ (core/optimize/quant_flow.h), and imports the result into the hub
 * when the source came from it. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/cpu/backend_cpu.h"
#include "core/format/sha256.h"
#include "core/optimize/quant_flow.h"
#include "core/optimize/quantize.h"
#include "hub_ops.h"
#include "progress.h"
#include "session.h"

static const char quantize_help[] =
	"usage: optstudio quantize MODEL --method M [options]\n"
	"\n"
	"Quantizes MODEL (a hub name or a GGUF file) and writes an optstudio GGUF that runs\n"
	"wherever a model runs (run, perplexity, bench-engine) and records its recipe and\n"
	"parent. Transformer-block matrices take the method's format; the embedding and the\n"
	"output head follow --head (default: BF16 for every method). When MODEL is a hub\n"
	"model, the result is imported into the hub as <parent>-<method>.\n"
	"\n"
	"methods:\n"
	"  fp8               FP8 E4M3 weights, per-output-channel scales, f32 activations\n"
	"  fp8-w8a8          FP8 weights and dynamic per-token FP8 activations\n"
	"  int8              INT8 weights per channel, per-token INT8 activations (no smoothing)\n"
	"  int8-smoothquant  the same after SmoothQuant smoothing from calibration (--alpha)\n"
	"  int4-awq          INT4 group-wise weights after AWQ's activation-aware scale search,\n"
	"                    then GPTQ (--no-gptq: AWQ alone)\n"
	"  int4-rtn          INT4 group-wise weights, plain round to nearest\n"
	"\n"
	"options:\n"
	"  -m, --method M      the method (required)\n"
	"  -o, --output OUT    output file (default <data home>/models/<parent>-<method>.gguf)\n"
	"      --alpha A       SmoothQuant migration strength, 0..1 (default 0.5)\n"
	"      --group G       INT4 group size 32, 64 or 128 (default 128; a matrix whose width\n"
	"                      G does not divide takes 64 or 32)\n"
	"      --kv T          KV cache type recorded in the file: bf16 (half of f32, near\n"
	"                      lossless), fp8 or int8 (a quarter, per-token scales); default f32\n"
	"      --head H        the embedding / output head: bf16 (default; 16-bit weights, as\n"
	"                      AWQ and TensorRT-LLM keep lm_head), f32 (unchanged) or method\n"
	"                      (the method's format, like the blocks)\n"
	"      --scale-search  choose scales by a search weighted by calibration activations\n"
	"                      (FP8: per-row scale; INT4: per-group scale and zero point, for\n"
	"                      int4-awq inside its search) instead of from each range. On by\n"
	"                      default for int4-awq, and for fp8 when calibration text exists\n"
	"                      (without it fp8 notes the fallback and uses plain scales); not\n"
	"                      for the INT8 methods\n"
	"      --no-scale-search  scales from each range: fp8 without calibration, int4-awq as\n"
	"                      in the paper (plain round to nearest inside the search)\n"
	"      --gptq          GPTQ: quantize the block matrices column by column, spreading\n"
	"                      each column's rounding error over the columns not yet quantized\n"
	"                      through the inverse of the input Hessian from calibration (after\n"
	"                      AWQ's scales for int4-awq, on a second calibration pass). For\n"
	"                      int4-awq, int4-rtn and fp8; the Hessians take dim^2 * 4 bytes\n"
	"                      per layer input (about 400 MB for SmolLM2-135M). On by default\n"
	"                      for int4-awq (SmolLM2 INT4 perplexity +19% -> +6-8%, for a\n"
	"                      second calibration pass); off for the others unless asked.\n"
	"                      Hessians over the budget (2 GiB, or the environment's\n"
	"                      OPTSTUDIO_HESSIAN_BUDGET_MIB) are gathered a few layers at a\n"
	"                      time, one calibration pass per range, each range by GPTQ\n"
	"                      before the next one's pass; refused only when one layer's\n"
	"                      exceed it\n"
	"      --no-gptq       round each matrix on its own (int4-awq: AWQ alone)\n"
	"      --calib FILE    calibration text (default <data home>/text/calibration.txt)\n"
	"      --samples N     calibration samples (default 32)\n"
	"      --seq-len L     tokens per calibration sample (default 256)\n"
	"      --name NAME     hub name of the result (default <parent>-<method>)\n"
	"      --threads N     CPU threads (default: all online CPUs)\n"
	"      --json          print a JSON object: output, method, recipe, bytes, seconds, ...\n";

typedef struct quantize_args {
	const char *model;
	const char *out;
	const char *name;
	quant_recipe r;
	bool have_method;
	size_t n_threads;
	bool json;
	int search;       /* --scale-search 1, --no-scale-search 0, neither -1 */
	size_t hessian_budget; /* bytes, from OPTSTUDIO_HESSIAN_BUDGET_MIB; 0: the default */
} quantize_args;

enum { OPT_ALPHA = 256, OPT_GROUP, OPT_KV, OPT_HEAD, OPT_CALIB, OPT_SAMPLES, OPT_SEQ_LEN, OPT_NAME,
       OPT_THREADS, OPT_JSON, OPT_SEARCH, OPT_NO_SEARCH, OPT_GPTQ, OPT_NO_GPTQ };

static int parse_args(int argc, char **argv, quantize_args *a)
{
	static const struct option long_opts[] = {
		{"method", required_argument, NULL, 'm'},
		{"output", required_argument, NULL, 'o'},
		{"alpha", required_argument, NULL, OPT_ALPHA},
		{"group", required_argument, NULL, OPT_GROUP},
		{"kv", required_argument, NULL, OPT_KV},
		{"head", required_argument, NULL, OPT_HEAD},
		{"calib", required_argument, NULL, OPT_CALIB},
		{"samples", required_argument, NULL, OPT_SAMPLES},
		{"seq-len", required_argument, NULL, OPT_SEQ_LEN},
		{"name", required_argument, NULL, OPT_NAME},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"json", no_argument, NULL, OPT_JSON},
		{"scale-search", no_argument, NULL, OPT_SEARCH},
		{"no-scale-search", no_argument, NULL, OPT_NO_SEARCH},
		{"gptq", no_argument, NULL, OPT_GPTQ},
		{"no-gptq", no_argument, NULL, OPT_NO_GPTQ},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* options may come before the method: collect them, then apply to its defaults */
	const char *alpha = NULL, *group = NULL, *kv = NULL, *samples = NULL, *seq_len = NULL;
	const char *calib = NULL, *method = NULL, *head = NULL;
	int search = -1; /* -1: the method's default */
	int gptq = -1;   /* -1: the method's default */
	memset(a, 0, sizeof *a);
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "hm:o:", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (c) {
		case 'm': method = optarg; break;
		case 'o': a->out = optarg; break;
		case OPT_ALPHA: alpha = optarg; break;
		case OPT_GROUP: group = optarg; break;
		case OPT_KV: kv = optarg; break;
		case OPT_HEAD: head = optarg; break;
		case OPT_CALIB: calib = optarg; break;
		case OPT_SAMPLES: samples = optarg; break;
		case OPT_SEQ_LEN: seq_len = optarg; break;
		case OPT_NAME: a->name = optarg; break;
		case OPT_THREADS:
			if (!cli_parse_size(optarg, &a->n_threads) || a->n_threads == 0 ||
			    a->n_threads > 1024)
				return cli_usage_error("quantize",
						       "--threads wants a count in 1..1024, got '%s'", optarg);
			break;
		case OPT_JSON: a->json = true; break;
		case OPT_SEARCH: search = 1; break;
		case OPT_NO_SEARCH: search = 0; break;
		case OPT_GPTQ: gptq = 1; break;
		case OPT_NO_GPTQ: gptq = 0; break;
		case '?':
			return cli_option_error("quantize", opt, optopt);
		default:
			return cli_option_error("quantize", opt, 0);
		}
	}
	if (argc - optind < 1)
		return cli_usage_error("quantize", "missing MODEL");
	if (argc - optind > 1)
		return cli_usage_error("quantize", "unexpected argument '%s'", argv[optind + 1]);
	a->model = argv[optind];
	if (!method)
		return cli_usage_error("quantize", "missing --method (fp8, fp8-w8a8, int8, "
				       "int8-smoothquant, int4-awq or int4-rtn)");
	os_error err;
	quant_method m;
	if (quant_method_parse(method, &m, &err))
		return cli_usage_error("quantize", "%s", err.msg);
	a->r = quant_recipe_default(m);
	a->r.calib_path = calib;
	a->search = search;
	/* fp8's default search may still fall back to plain without calibration text (below) */
	a->r.scale_search = search >= 0 ? search == 1 : quant_method_search_default(m);
	if (a->r.scale_search && (m == QUANT_INT8_SQ || m == QUANT_INT8_RTN))
		return cli_usage_error("quantize", "--scale-search is for the fp8 and int4 methods, "
				       "not %s", method);
	a->r.gptq = gptq >= 0 ? gptq == 1 : quant_method_gptq_default(m);
	if (a->r.gptq && !quant_method_gptq_ok(m))
		return cli_usage_error("quantize", "--gptq is for int4-awq, int4-rtn and fp8, not %s",
				       method);
	if (alpha && (!cli_parse_float(alpha, &a->r.alpha) || a->r.alpha < 0 || a->r.alpha > 1))
		return cli_usage_error("quantize", "--alpha wants a number in 0..1, got '%s'", alpha);
	if (group && (!cli_parse_size(group, &a->r.group) ||
		      (a->r.group != 32 && a->r.group != 64 && a->r.group != 128)))
		return cli_usage_error("quantize", "--group wants 32, 64 or 128, got '%s'", group);
	if (kv && quant_kv_parse(kv, &a->r.kv, &err))
		return cli_usage_error("quantize", "%s", err.msg);
	if (head && quant_head_parse(head, &a->r.head, &err))
		return cli_usage_error("quantize", "%s", err.msg);
	if (samples && (!cli_parse_size(samples, &a->r.calib_samples) || !a->r.calib_samples))
		return cli_usage_error("quantize", "--samples wants a count >= 1, got '%s'", samples);
	if (seq_len && (!cli_parse_size(seq_len, &a->r.calib_seq_len) || a->r.calib_seq_len < 2 ||
			a->r.calib_seq_len > 65536))
		return cli_usage_error("quantize", "--seq-len wants a token count in 2..65536, got "
				       "'%s'", seq_len);
	/* an environment setting, not an option: only machines short of memory need it */
	const char *mib = getenv("OPTSTUDIO_HESSIAN_BUDGET_MIB");
	size_t n_mib = 0;
	if (mib && *mib) {
		if (!cli_parse_size(mib, &n_mib) || n_mib == 0 || n_mib > ((size_t)1 << 24))
			return cli_usage_error("quantize", "OPTSTUDIO_HESSIAN_BUDGET_MIB wants MiB in "
					       "1..16777216, got '%s'", mib);
		a->hessian_budget = n_mib << 20;
	}
	return EXIT_OK;
}

/* The progress bar of one stage at a time. */
typedef struct bar_ctx {
	progress *bar;
	const char *stage;
	bool quiet;
} bar_ctx;

static void bar_stage(bar_ctx *b, const char *stage, const char *unit, size_t total)
{
	if (b->stage && strcmp(b->stage, stage) == 0)
		return;
	progress_finish(b->bar);
	b->bar = progress_new(stage, unit, total, b->quiet, NULL);
	b->stage = stage;
}

static bool on_quant(void *ctx, const char *stage, size_t done, size_t total)
{
	bar_ctx *b = ctx;
	bar_stage(b, "quantize", "tensors", total);
	(void)stage;
	progress_update(b->bar, done);
	return true;
}

/* The flow's stages (quant_flow.h): one bar each. */
static bool on_progress(void *ctx, const char *stage, size_t done, size_t total)
{
	bar_ctx *b = ctx;
	const char *unit = strcmp(stage, "calibrate") == 0 || strcmp(stage, "hessians") == 0
				   ? "samples"
			   : strcmp(stage, "awq search") == 0 ? "sites"
							      : "tensors";
	bar_stage(b, stage, unit, total);
	progress_update(b->bar, done);
	return true;
}

/* "dir/x.Q4_1.gguf" -> "x.Q4_1" into buf. */
static void base_name(const char *path, char *buf, size_t len)
{
	const char *s = strrchr(path, '/');
	snprintf(buf, len, "%s", s ? s + 1 : path);
	size_t n = strlen(buf);
	if (n > 5 && strcmp(buf + n - 5, ".gguf") == 0)
		buf[n - 5] = '\0';
}

/* Calibration, the transform and the in-memory quantization of the block matrices
 * (quant_flow.h) on m (F32) over the recipe's text. Prints errors. */
static int calibrate_and_transform(model *m, const tokenizer *tok, backend *be,
				   const quantize_args *a, const char *home, bar_ctx *bar,
				   quant_flow_report *rep)
{
	os_error err = {0};
	char calib_buf[PATH_MAX];
	const char *calib = a->r.calib_path;
	if (!calib) {
		if (!home) {
			cli_error("no calibration text: give --calib FILE (the data home cannot be "
				  "opened)");
			return EXIT_FAIL;
		}
		snprintf(calib_buf, sizeof calib_buf, "%s/text/calibration.txt", home);
		calib = calib_buf;
		if (access(calib, R_OK) != 0) {
			cli_error("no calibration text at '%s'; run 'make models' or give --calib FILE",
				  calib);
			return EXIT_FAIL;
		}
	}
	quant_flow_opts fo = {.be = be, .tok = tok, .calib_path = calib,
			      .hessian_budget = a->hessian_budget, .progress = on_progress,
			      .progress_ctx = bar};
	calib_stats *st = NULL;
	int ex = EXIT_FAIL;
	if (quant_flow_calibrate(m, &a->r, &fo, &st, rep, &err)) {
		progress_finish(bar->bar), bar->bar = NULL, bar->stage = NULL;
		cli_fail(&err, "calibration on '%s' failed", calib);
		goto done;
	}
	if (quant_flow_transform(m, &a->r, st, &fo, rep, &err)) {
		progress_finish(bar->bar), bar->bar = NULL, bar->stage = NULL;
		cli_fail(&err, "%s%s failed", quant_method_name(a->r.method),
			 a->r.gptq ? " with gptq" : "");
		goto done;
	}
	ex = EXIT_OK;
done:
	calib_stats_free(st);
	return ex;
}

int cmd_quantize(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(quantize_help, stdout);
		return EXIT_OK;
	}
	quantize_args a;
	int ex = parse_args(argc, argv, &a);
	if (ex != EXIT_OK)
		return ex;

	os_error err = {0};
	store *st = NULL;
	store_model parent = {0};
	bool from_hub = false;
	char *src_path = NULL, *json = NULL;
	gguf_file *src = NULL;
	tokenizer *tok = NULL;
	model *m = NULL;
	backend *be = NULL;
	bar_ctx bar = {.quiet = false};
	quant_flow_report rep = {0};
	ex = EXIT_FAIL;
	double t0 = cli_now_s();

	/* MODEL: a hub name first, else a path; the hub is optional for a path */
	os_error herr = {0};
	if (hub_open(&st, &herr) == OS_OK && store_model_get(st, a.model, &parent, NULL) == OS_OK) {
		from_hub = true;
		src_path = strdup(parent.path);
	} else if (access(a.model, R_OK) == 0) {
		src_path = strdup(a.model);
	} else {
		cli_error("cannot open model '%s': no model of that name in the hub and no such "
			  "file%s%s%s", a.model, st ? "" : " (the hub cannot be opened: ",
			  st ? "" : os_error_text(&herr), st ? "" : ")");
		goto done;
	}
	if (!src_path) {
		cli_error("out of memory");
		goto done;
	}
	const char *home = st ? store_home(st) : NULL;
	char parent_name[256], parent_sha[SHA256_HEX_CHARS];
	if (from_hub) {
		snprintf(parent_name, sizeof parent_name, "%s", parent.name);
		snprintf(parent_sha, sizeof parent_sha, "%s", parent.sha256 ? parent.sha256 : "");
	} else {
		base_name(src_path, parent_name, sizeof parent_name);
		if (sha256_file(src_path, parent_sha, &err) != OS_OK) {
			cli_fail(&err, "cannot read model '%s'", a.model);
			goto done;
		}
	}

	/* OUT: default <home>/models/<parent>-<method>.gguf */
	char out_buf[PATH_MAX];
	const char *out = a.out;
	if (!out) {
		if (!home) {
			cli_error("no output file: give -o OUT (the data home cannot be opened: %s)",
				  os_error_text(&herr));
			goto done;
		}
		snprintf(out_buf, sizeof out_buf, "%s/models/%s-%s.gguf", home, parent_name,
			 quant_method_name(a.r.method));
		out = out_buf;
	}

	if (gguf_open(&src, src_path, &err) != OS_OK) {
		cli_fail(&err, "cannot open model '%s'", a.model);
		goto done;
	}
	model_load_opts lo = {.weight_format = BE_WFMT_F32};
	if (model_open_gguf(&m, src, &lo, &err) != OS_OK) {
		cli_fail(&err, "cannot load model '%s'", a.model);
		goto done;
	}
	for (size_t i = 0; i < model_n_tensors(m); i++) {
		model_tensor t = model_tensor_at(m, i);
		if (t.mat && t.mat->fmt != BE_WFMT_F32) {
			cli_error("cannot quantize '%s': it is already quantized (%s %s); quantize "
				  "its parent model instead", a.model, t.name, be_wfmt_name(t.mat->fmt));
			goto done;
		}
	}
	/* fp8 searches by default when there is calibration text; without, plain scales */
	if (a.r.scale_search && a.search < 0 && !quant_method_calibrates(a.r.method) &&
	    !a.r.calib_path && !a.r.gptq) {
		char cal[PATH_MAX];
		if (home)
			snprintf(cal, sizeof cal, "%s/text/calibration.txt", home);
		if (!home || access(cal, R_OK) != 0) {
			a.r.scale_search = false;
			fprintf(stderr, "optstudio: note: no calibration text%s%s%s; %s uses plain "
					"per-channel scales (--calib FILE enables the scale search)\n",
				home ? " at '" : "", home ? cal : "", home ? "'" : "",
				quant_method_name(a.r.method));
		}
	}
	backend_cpu_opts bo = {.n_threads = a.n_threads};
	if (backend_cpu_new(&be, &bo, &err) != OS_OK) {
		cli_fail(&err, "cannot start the CPU backend");
		goto done;
	}
	if (quant_recipe_calibrates(&a.r)) {
		if (tokenizer_open(&tok, src, &err) != OS_OK) {
			cli_fail(&err, "cannot read the tokenizer of '%s'", a.model);
			goto done;
		}
		if (calibrate_and_transform(m, tok, be, &a, home, &bar, &rep) != EXIT_OK)
			goto done;
	}
	double t_write = cli_now_s();
	if (quant_write_gguf(m, src, &a.r, parent_name, parent_sha[0] ? parent_sha : NULL, out,
			     on_quant, &bar, &err) != OS_OK) {
		progress_finish(bar.bar);
		bar.bar = NULL;
		cli_fail(&err, "cannot write '%s'", out);
		goto done;
	}
	progress_finish(bar.bar);
	bar.bar = NULL;
	t_write = cli_now_s() - t_write;
	double secs = cli_now_s() - t0;
	json = quant_recipe_to_json(&a.r);

	/* hub import: when the source is a hub model (or --name asks for it) */
	char hub_name[300] = "";
	int hub_rc = OS_OK;
	if (st && (from_hub || a.name)) {
		if (a.name)
			snprintf(hub_name, sizeof hub_name, "%s", a.name);
		else
			snprintf(hub_name, sizeof hub_name, "%s-%s", parent_name,
				 quant_method_name(a.r.method));
		char models_dir[PATH_MAX], real_models[PATH_MAX], real_out[PATH_MAX];
		snprintf(models_dir, sizeof models_dir, "%s/models", home);
		bool owned = realpath(models_dir, real_models) && realpath(out, real_out) &&
			     strncmp(real_out, real_models, strlen(real_models)) == 0 &&
			     real_out[strlen(real_models)] == '/';
		hub_import_opts io = {.parent_model_id = from_hub ? parent.id : 0, .recipe = json,
				      .owned_by_studio = owned};
		int existed = 0;
		hub_rc = hub_import_with(st, out, hub_name, &io, NULL, &existed, &err);
	}
	struct stat sb;
	long long bytes = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
	if (a.json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "output", out);
		cJSON_AddStringToObject(o, "method", quant_method_name(a.r.method));
		cJSON_AddItemToObject(o, "recipe", cJSON_Parse(json ? json : "null"));
		cJSON_AddStringToObject(o, "parent", parent_name);
		cJSON_AddNumberToObject(o, "bytes", (double)bytes);
		cJSON_AddNumberToObject(o, "step_bytes_f32", (double)model_step_bytes(m));
		cJSON_AddNumberToObject(o, "seconds", secs);
		cJSON *ph = cJSON_AddObjectToObject(o, "phase_seconds");
		if (ph) {
			cJSON_AddNumberToObject(ph, "calibrate", rep.t_calib);
			cJSON_AddNumberToObject(ph, "transform", rep.t_transform);
			if (rep.has_gptq)
				cJSON_AddNumberToObject(ph, "gptq", rep.t_gptq);
			cJSON_AddNumberToObject(ph, "write", t_write);
		}
		if (hub_name[0] && hub_rc == OS_OK)
			cJSON_AddStringToObject(o, "hub_name", hub_name);
		else
			cJSON_AddNullToObject(o, "hub_name");
		if (rep.has_awq && rep.awq.energy > 0) {
			cJSON_AddNumberToObject(o, "awq_rel_err_rtn", rep.awq.err_rtn / rep.awq.energy);
			cJSON_AddNumberToObject(o, "awq_rel_err", rep.awq.err_clip / rep.awq.energy);
		}
		if (rep.has_gptq && rep.gptq.energy > 0) {
			cJSON_AddNumberToObject(o, "gptq_rel_err_rtn", rep.gptq.err_rtn / rep.gptq.energy);
			cJSON_AddNumberToObject(o, "gptq_rel_err", rep.gptq.err_gptq / rep.gptq.energy);
			cJSON_AddNumberToObject(o, "gptq_passes", (double)rep.gptq_passes);
		}
		if (cli_print_json(o) != EXIT_OK)
			goto done;
	} else {
		char sz[32];
		hub_format_bytes(bytes, sz, sizeof sz);
		printf("wrote %s (%s, %s) in %.1f s\n", out, quant_method_name(a.r.method), sz, secs);
		if (quant_recipe_calibrates(&a.r))
			printf("time: calibration %.1f s, %s %.1f s, writing %.1f s\n", rep.t_calib,
			       a.r.method == QUANT_INT8_SQ	 ? "smoothing"
			       : a.r.method == QUANT_INT4_AWQ ? (a.r.gptq ? "awq search + gptq"
								   : "awq search")
			       : a.r.gptq ? "gptq"
					  : "scale search",
			       rep.t_transform, t_write);
		if (rep.has_awq && rep.awq.energy > 0)
			printf("awq: relative output error %.3g (round to nearest: %.3g), mean alpha "
			       "%.2f\n",
			       rep.awq.err_clip / rep.awq.energy, rep.awq.err_rtn / rep.awq.energy,
			       rep.awq.mean_alpha);
		if (rep.has_gptq && rep.gptq.energy > 0) {
			printf("gptq: relative proxy error %.3g (without compensation: %.3g)",
			       rep.gptq.err_gptq / rep.gptq.energy, rep.gptq.err_rtn / rep.gptq.energy);
			if (rep.gptq_passes > 1)
				printf(", in %zu layer ranges (Hessians over the budget)",
				       rep.gptq_passes);
			putchar('\n');
		}
		if (hub_name[0] && hub_rc == OS_OK)
			printf("imported into the hub as '%s'\n", hub_name);
	}
	if (hub_name[0] && hub_rc != OS_OK) {
		cli_fail(&err, "'%s' was written but not imported into the hub as '%s'", out,
			 hub_name);
		if (hub_rc == OS_EEXISTS)
			fprintf(stderr, "optstudio: hint: choose another name with --name, or "
					"'optstudio hub rm %s' first\n", hub_name);
		goto done;
	}
	ex = EXIT_OK;
done:
	progress_finish(bar.bar);
	cJSON_free(json);
	backend_free(be);
	model_close(m);
	tokenizer_close(tok);
	gguf_close(src);
	free(src_path);
	store_model_clear(&parent);
	store_close(st);
	return ex;
}
