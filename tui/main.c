/* main.c: optstudio's entry point. With no command on a terminal it opens the studio;
 * `optstudio <command> ...` runs one command of the command line. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/format/textfile.h"
#include "studio.h"

static const cli_command commands[] = {
	{"studio", "the studio: the terminal interface (also: optstudio with no command)", cmd_studio},
	{"hub", "the local model hub: import, list, show, rm, drafts", cmd_hub},
	{"doctor", "what this machine has: CPU features, memory, CUDA devices, libraries", cmd_doctor},
	{"run", "generate text from a prompt, streaming tokens (greedy by default)", cmd_run},
	{"perplexity", "perplexity of a model over a text file, llama.cpp style", cmd_perplexity},
	{"bench-engine", "prefill and batched decode speed beside this machine's roofline", cmd_bench_engine},
	{"quantize", "quantize a model: fp8, fp8-w8a8, int8, int8-smoothquant, int4-awq, int4-rtn", cmd_quantize},
	{"bench", "throughput and latency sweep over concurrency levels, with prices", cmd_bench},
	{"price", "blended $ per 1M tokens of a throughput on an instance", cmd_price},
	{"results", "benchmark runs stored in the hub", cmd_results},
	{"compare", "two to four benchmark runs side by side, deltas against a baseline", cmd_compare},
	{"optimize", "queue an optimization job (quantize ...) from a spec or flags", cmd_optimize},
	{"jobs", "background jobs: list, watch, show, log, stop, retry, rm", cmd_jobs},
	{"eval", "accuracy of a model against a baseline: perplexity, KL, top-1 agreement", cmd_eval},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

void cli_error(const char *fmt, ...)
{
	va_list ap;
	fputs("optstudio: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_fail(const os_error *err, const char *what_fmt, ...)
{
	va_list ap;
	fputs("optstudio: ", stderr);
	va_start(ap, what_fmt);
	vfprintf(stderr, what_fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", os_error_text(err));
	return err && err->rc == OS_EUSAGE ? EXIT_USAGE : EXIT_FAIL;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "optstudio %s: ", command);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'optstudio %s --help'.\n", command);
	return EXIT_USAGE;
}

int cli_option_error(const char *command, const char *opt, int optopt_seen)
{
	if (optopt_seen)
		return cli_usage_error(command, "option '%s' needs a value", opt);
	return cli_usage_error(command, "unknown option '%s'", opt);
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return true;
	}
	return false;
}

int cli_print_json(cJSON *doc)
{
	char *text = doc ? cJSON_Print(doc) : NULL;
	cJSON_Delete(doc);
	if (!text) {
		cli_error("out of memory formatting JSON");
		return EXIT_FAIL;
	}
	puts(text);
	cJSON_free(text);
	return EXIT_OK;
}

int cli_read_text(const char *path, char **buf, size_t *len)
{
	os_error err = {0};
	/* a text is any size the machine can hold: the cap only guards the size arithmetic */
	if (format_read_text_file(path, (size_t)1 << 40, buf, len, &err) != OS_OK)
		return cli_fail(&err, "cannot read text '%s'", path);
	if (*len == 0) {
		cli_error("text '%s' is empty", path);
		free(*buf);
		*buf = NULL;
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static void print_main_help(FILE *out)
{
	fprintf(out, "usage: optstudio <command> [options]   (optstudio <command> --help for more)\n\n"
		     "Make language models cheaper and faster to serve, on your own hardware.\n\n"
		     "commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nData home: $OPTSTUDIO_HOME, else $XDG_DATA_HOME/optstudio, else "
		     "~/.local/share/optstudio.\nExit codes: 0 ok, 1 failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))
			return studio_run(NULL);
		print_main_help(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		print_main_help(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	/* the background job runner: started by `optimize`, not listed in the help */
	if (strcmp(argv[1], "worker") == 0)
		return cmd_worker(argc - 1, argv + 1);
	cli_error("unknown command '%s'; 'optstudio --help' lists the commands", argv[1]);
	return EXIT_USAGE;
}
