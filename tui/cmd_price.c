/* cmd_price.c: `optstudio price`: the blended $ per 1M tokens of a throughput on an
 * instance (core/eval/price.h, DESIGN.md's formula), and setting this machine's price. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/eval/price.h"
#include "hub_ops.h"

static const char price_help[] =
	"usage: optstudio price --instance NAME --throughput TOK_S [--discount D] [--json]\n"
	"       optstudio price --instance-price USD_PER_HOUR --throughput TOK_S [--discount D] [--json]\n"
	"       optstudio price --set-local USD_PER_HOUR\n"
	"\n"
	"The blended price of serving, in $ per 1M tokens:\n"
	"  " PRICE_FORMULA "\n"
	"where the total throughput is output tokens per second of the whole load (as\n"
	"'optstudio bench' reports it) and the discount is a savings plan's (default 0.26).\n"
	"--instance takes the $/hour of a catalog instance ('local' is this machine, whose price\n"
	"you set with --set-local); --instance-price gives the $/hour directly.\n"
	"\n"
	"options:\n"
	"      --instance NAME            a catalog instance\n"
	"      --instance-price USD       $/hour of the instance (instead of --instance)\n"
	"      --throughput TOK_S         total throughput, tok/s (> 0)\n"
	"      --discount D               0 <= D < 1 (default 0.26)\n"
	"      --set-local USD            store this machine's price in $/hour and exit\n"
	"      --json                     print a JSON object (field blended_usd_per_1m)\n";

enum { OPT_INSTANCE = 256, OPT_INSTANCE_PRICE, OPT_THROUGHPUT, OPT_DISCOUNT, OPT_SET_LOCAL,
       OPT_JSON };

/* Parses a finite double; false when malformed. */
static bool parse_double(const char *s, double *out)
{
	char *end = NULL;
	double d = strtod(s, &end);
	if (end == s || *end != '\0' || !isfinite(d))
		return false;
	*out = d;
	return true;
}

int cmd_price(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(price_help, stdout);
		return EXIT_OK;
	}
	static const struct option long_opts[] = {
		{"instance", required_argument, NULL, OPT_INSTANCE},
		{"instance-price", required_argument, NULL, OPT_INSTANCE_PRICE},
		{"throughput", required_argument, NULL, OPT_THROUGHPUT},
		{"discount", required_argument, NULL, OPT_DISCOUNT},
		{"set-local", required_argument, NULL, OPT_SET_LOCAL},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *instance = NULL;
	double usd = NAN, tok_s = NAN, discount = PRICE_DEFAULT_DISCOUNT, set_local = NAN;
	bool json = false;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		double *target = NULL;
		switch (c) {
		case OPT_INSTANCE:
			instance = optarg;
			continue;
		case OPT_JSON:
			json = true;
			continue;
		case OPT_INSTANCE_PRICE:
			target = &usd;
			break;
		case OPT_THROUGHPUT:
			target = &tok_s;
			break;
		case OPT_DISCOUNT:
			target = &discount;
			break;
		case OPT_SET_LOCAL:
			target = &set_local;
			break;
		case '?':
			return cli_option_error("price", opt, optopt);
		default:
			return cli_option_error("price", opt, 0);
		}
		if (!parse_double(optarg, target))
			return cli_usage_error("price", "%s wants a number, got '%s'", opt, optarg);
	}
	if (optind < argc)
		return cli_usage_error("price", "unexpected argument '%s'", argv[optind]);

	os_error err = {0};
	store *s = NULL;
	if (!isnan(set_local)) {
		if (instance || !isnan(usd) || !isnan(tok_s))
			return cli_usage_error("price", "--set-local goes alone");
		if (set_local < 0)
			return cli_usage_error("price", "--set-local wants a price >= 0 $/hour, got %g",
					       set_local);
		if (hub_open(&s, &err) || store_instance_set_local_price(s, set_local, &err)) {
			store_close(s);
			return cli_fail(&err, "cannot set this machine's price");
		}
		store_close(s);
		if (json)
			printf("{\"instance\": \"%s\", \"usd_per_hour\": %.17g}\n", STORE_LOCAL_INSTANCE,
			       set_local);
		else
			printf("this machine ('%s') now costs $%g/hour\n", STORE_LOCAL_INSTANCE, set_local);
		return EXIT_OK;
	}
	if (!instance == isnan(usd))
		return cli_usage_error("price", "give one of --instance NAME or --instance-price USD_PER_HOUR");
	if (isnan(tok_s))
		return cli_usage_error("price", "missing --throughput TOK_S (total output tokens per second)");
	if (tok_s <= 0)
		return cli_usage_error("price", "--throughput wants a rate > 0 tok/s, got %g", tok_s);
	if (discount < 0 || discount >= 1)
		return cli_usage_error("price", "--discount wants 0 <= D < 1 (0.26 is 26%%), got %g",
				       discount);
	if (!isnan(usd) && usd < 0)
		return cli_usage_error("price", "--instance-price wants $/hour >= 0, got %g", usd);
	if (instance) {
		store_instance it;
		if (hub_open(&s, &err) || store_instance_get(s, instance, &it, &err)) {
			store_close(s);
			return cli_fail(&err, "cannot price on instance '%s'", instance);
		}
		usd = it.usd_per_hour;
		bool local = it.is_local;
		store_instance_clear(&it);
		store_close(s);
		if (usd <= 0) {
			if (local)
				cli_error("this machine ('%s') has no price yet; set it with 'optstudio "
					  "price --set-local USD_PER_HOUR'",
					  instance);
			else
				cli_error("instance '%s' has no price in the catalog; give "
					  "--instance-price USD_PER_HOUR",
					  instance);
			return EXIT_FAIL;
		}
	}
	double blended = 0;
	if (price_blended_per_1m(usd, discount, tok_s, &blended, &err))
		return cli_fail(&err, "cannot compute the price");
	if (json) {
		cJSON *o = cJSON_CreateObject();
		if (!o)
			return cli_print_json(NULL);
		cJSON_AddNumberToObject(o, "blended_usd_per_1m", blended);
		if (instance)
			cJSON_AddStringToObject(o, "instance", instance);
		else
			cJSON_AddNullToObject(o, "instance");
		cJSON_AddNumberToObject(o, "usd_per_hour", usd);
		cJSON_AddNumberToObject(o, "discount", discount);
		cJSON_AddNumberToObject(o, "throughput_tok_s", tok_s);
		cJSON_AddStringToObject(o, "input_output_ratio", PRICE_INPUT_OUTPUT_RATIO);
		cJSON_AddStringToObject(o, "formula", price_formula());
		return cli_print_json(o);
	}
	printf("blended price: $%.4f per 1M tokens\n", blended);
	printf("  %s%s at $%.4g/hour, %.4g%% discount, %.4g tok/s total throughput\n",
	       instance ? "instance " : "", instance ? instance : "an instance", usd, discount * 100,
	       tok_s);
	printf("  formula: %s\n", price_formula());
	return EXIT_OK;
}
