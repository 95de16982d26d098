/* cmd_results.c: `optstudio results` (the stored benchmark runs) and `optstudio compare`
 * (two to four runs side by side: deltas against a baseline marked better/worse, accuracy
 * beside speed, Unicode bar charts for throughput, latency and price). The comparison itself
 * is core/jobs/compare, shared with the studio's Results and Compare screens. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/jobs/compare.h"
#include "hub_ops.h"
#include "store/store.h"

static const char results_help[] =
	"usage: optstudio results [--json]\n"
	"\n"
	"Lists the stored benchmark runs ('optstudio bench'), newest first: id, date, model,\n"
	"label, instance, input/output tokens, concurrency levels, peak total throughput (and\n"
	"its level), p50 client latency at the lowest level, and the blended price at the peak\n"
	"on the run's instance (its current catalog price, the run's discount).\n"
	"\n"
	"options:\n"
	"      --json    print a JSON array of runs with all their points\n";

static const char compare_help[] =
	"usage: optstudio compare RUN RUN [RUN RUN] [--baseline RUN] [--format table|csv|json|md]\n"
	"\n"
	"Puts two to four benchmark runs (ids from 'optstudio results') side by side: per\n"
	"concurrency level total throughput (formula and measured), TTFT, ITL and client\n"
	"latency, errors and blended price; accuracy figures stored for the same job or model\n"
	"(perplexity, KL divergence, top-1 agreement, acceptance rate). Each figure of a run\n"
	"other than the baseline (default: the first RUN) carries its delta against the\n"
	"baseline, marked better or worse (throughput, agreement and acceptance: higher is\n"
	"better; latency, errors, price, perplexity and KL: lower is better). The table ends\n"
	"with bar charts of peak throughput, latency and price.\n"
	"\n"
	"options:\n"
	"      --baseline RUN    the run deltas are taken against (one of the RUNs, or added)\n"
	"      --format F        table (default), csv, json or md\n";

static void format_date(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tmv;
	if (!localtime_r(&tt, &tmv) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tmv))
		snprintf(buf, len, "%lld", (long long)t);
}

int cmd_results(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(results_help, stdout);
		return EXIT_OK;
	}
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (argv[i][0] == '-')
			return cli_usage_error("results", "unknown option '%s'", argv[i]);
		else
			return cli_usage_error("results", "unexpected argument '%s'", argv[i]);
	}
	store *s = NULL;
	os_error err = {0};
	store_bench_run *runs = NULL;
	size_t n = 0;
	if (hub_open(&s, &err) || store_bench_run_list(s, &runs, &n, &err)) {
		store_close(s);
		return cli_fail(&err, "cannot list benchmark runs");
	}
	int ex = EXIT_OK;
	if (json) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; arr && i < n; i++) {
			cJSON *o = compare_run_json(s, &runs[i]);
			if (!o) {
				cJSON_Delete(arr);
				arr = NULL;
				break;
			}
			cJSON_AddItemToArray(arr, o);
		}
		ex = cli_print_json(arr);
	} else if (n == 0) {
		printf("no benchmark runs yet; 'optstudio bench MODEL' makes one\n");
	} else {
		printf("%5s  %-16s  %-24s  %-10s  %-10s  %9s  %-14s  %16s  %13s  %10s\n", "run", "date",
		       "model", "label", "instance", "in/out", "levels", "peak tok/s (C)",
		       "p50 lat ms", "$/1M peak");
		for (size_t i = 0; i < n; i++) {
			const store_bench_run *r = &runs[i];
			char date[32], levels[64] = "", io[48], peak[64], lat[32], usd[48];
			format_date(r->created_at, date, sizeof date);
			size_t off = 0;
			for (size_t k = 0; k < r->n_points && off < sizeof levels; k++)
				off += (size_t)snprintf(levels + off, sizeof levels - off, "%s%lld",
							k ? "," : "", (long long)r->points[k].concurrency);
			snprintf(io, sizeof io, "%lld/%lld", (long long)r->input_tokens,
				 (long long)r->output_tokens);
			const store_bench_point *pk = compare_peak_point(r);
			char num[32];
			compare_format_num(pk ? pk->total_tokens_per_s : NAN, num, sizeof num);
			if (pk)
				snprintf(peak, sizeof peak, "%s (%lld)", num, (long long)pk->concurrency);
			else
				snprintf(peak, sizeof peak, "n/a");
			compare_format_num(r->n_points ? r->points[0].latency_p50_ms : NAN, lat, sizeof lat);
			compare_summary sum;
			compare_run_summary(s, r, &sum);
			double p = sum.peak_usd_per_1m;
			compare_format_num(p, num, sizeof num);
			snprintf(usd, sizeof usd, "%s%s", isfinite(p) ? "$" : "", num);
			printf("%5lld  %-16s  %-24.24s  %-10.10s  %-10.10s  %9s  %-14.14s  %16s  %13s  %10s\n",
			       (long long)r->id, date, compare_display_name(r->model_name), r->label ? r->label : "-",
			       r->instance_name ? r->instance_name : "-", io, levels, peak, lat, usd);
		}
	}
	store_bench_run_list_free(runs, n);
	store_close(s);
	return ex;
}

/* ---- compare ----------------------------------------------------------------------- */

/* A RUN argument: a positive id. */
static bool parse_run_id(const char *s, int64_t *id)
{
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end || v <= 0)
		return false;
	*id = v;
	return true;
}

int cmd_compare(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(compare_help, stdout);
		return EXIT_OK;
	}
	static const struct option long_opts[] = {
		{"baseline", required_argument, NULL, 'b'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int64_t ids[COMPARE_MAX_RUNS + 1], base_id = 0;
	size_t n_ids = 0;
	const char *format = "table";
	optind = 1;
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (ch) {
		case 'b':
			if (!parse_run_id(optarg, &base_id))
				return cli_usage_error("compare", "--baseline wants a run id, got '%s'", optarg);
			break;
		case 'f':
			if (strcmp(optarg, "table") && strcmp(optarg, "csv") && strcmp(optarg, "json") &&
			    strcmp(optarg, "md"))
				return cli_usage_error("compare",
						       "--format wants table, csv, json or md, got '%s'",
						       optarg);
			format = optarg;
			break;
		case '?':
			return cli_option_error("compare", opt, optopt);
		default:
			return cli_option_error("compare", opt, 0);
		}
	}
	for (int i = optind; i < argc; i++) {
		if (n_ids == COMPARE_MAX_RUNS)
			return cli_usage_error("compare", "at most %d runs, got more", COMPARE_MAX_RUNS);
		if (!parse_run_id(argv[i], &ids[n_ids]))
			return cli_usage_error("compare", "RUN wants a run id ('optstudio results' lists "
							  "them), got '%s'",
					       argv[i]);
		for (size_t k = 0; k < n_ids; k++)
			if (ids[k] == ids[n_ids])
				return cli_usage_error("compare", "run %lld given twice", (long long)ids[k]);
		n_ids++;
	}
	size_t base = 0;
	if (base_id) {
		bool found = false;
		for (size_t k = 0; k < n_ids; k++)
			if (ids[k] == base_id) {
				base = k;
				found = true;
			}
		if (!found) {
			if (n_ids == COMPARE_MAX_RUNS)
				return cli_usage_error("compare", "the baseline run %lld makes more than %d runs",
						       (long long)base_id, COMPARE_MAX_RUNS);
			memmove(ids + 1, ids, n_ids * sizeof ids[0]);
			ids[0] = base_id;
			n_ids++;
		}
	}
	if (n_ids < 2)
		return cli_usage_error("compare", "give two to four runs ('optstudio results' lists them)");

	store *s = NULL;
	os_error err = {0};
	compare *c = NULL;
	int ex = EXIT_FAIL;
	if (hub_open(&s, &err)) {
		ex = cli_fail(&err, "cannot open the hub");
		goto done;
	}
	if (compare_new(s, ids, n_ids, base, 0, &c, &err)) {
		ex = cli_fail(&err, "cannot compare");
		goto done;
	}
	if (strcmp(format, "json") == 0) {
		ex = cli_print_json(compare_to_json(c));
		goto done;
	}
	compare_format fmt = strcmp(format, "csv") == 0  ? COMPARE_FORMAT_CSV
			     : strcmp(format, "md") == 0 ? COMPARE_FORMAT_MD
							 : COMPARE_FORMAT_TABLE;
	ex = compare_write(c, stdout, fmt, NULL) == OS_OK ? EXIT_OK : EXIT_FAIL;
done:
	compare_free(c);
	store_close(s);
	return ex;
}
