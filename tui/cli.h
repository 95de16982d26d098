/* cli.h: what every command of the command line shares: the command table, error
 * printing in the house style, and exit codes. */
#ifndef OPTSTUDIO_CLI_H
#define OPTSTUDIO_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "core/errors.h"

/* Exit codes: they mean the same for every command. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct cli_command {
	const char *name;
	const char *summary;                 /* one line for `optstudio --help` */
	int (*run)(int argc, char **argv);   /* argv[0] is the command name; returns an exit code */
} cli_command;

/* Prints "optstudio: <message>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "optstudio: <what>: <err's text>" and returns EXIT_FAIL (EXIT_USAGE for OS_EUSAGE). */
int cli_fail(const os_error *err, const char *what_fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error with a pointer to --help and returns EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The usage error for an option getopt_long refused: opt as the user wrote it, and getopt's
 * optopt (nonzero: the option is known but its value is missing). Returns EXIT_USAGE. */
int cli_option_error(const char *command, const char *opt, int optopt_seen);
/* True when argv holds -h or --help. */
bool cli_wants_help(int argc, char **argv);

struct cJSON;
/* Prints doc (pretty) on stdout and frees it. EXIT_OK, or EXIT_FAIL with a message when doc
 * is NULL or cannot be printed (out of memory while building or formatting it). */
int cli_print_json(struct cJSON *doc);
/* Reads the text file at path whole (malloc'd, NUL-terminated, *len bytes) for a command
 * that scores or calibrates on it. EXIT_OK, or EXIT_FAIL with the message printed: the
 * file cannot be read, or it is empty. */
int cli_read_text(const char *path, char **buf, size_t *len);

/* Command entry points, one per tui/cmd_*.c. */
int cmd_hub(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench_engine(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_price(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_optimize(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_worker(int argc, char **argv);

/* cmd_jobs.c: a job as one line of JSON (id, name, state, stage, progress, eta_seconds,
 * error, pid, result_model_id, stop_requested, times, spec); malloc'd, NULL on OOM. */
struct store_job;
char *cli_job_json(const struct store_job *j);
int cmd_eval(int argc, char **argv);

#endif
