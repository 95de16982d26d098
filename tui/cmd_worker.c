/* cmd_worker.c: `optstudio worker`: the background job runner (started detached by
 * `optimize` and `jobs retry`; runnable by hand in the foreground). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>

#include "cli.h"
#include "core/jobs/worker.h"
#include "store/store.h"

static const char worker_help[] =
	"usage: optstudio worker [--idle SECONDS]\n"
	"\n"
	"Runs queued optimization jobs, one at a time, until none has been queued for\n"
	"--idle seconds (default 10). At most one worker runs per data home (an exclusive\n"
	"lock on <home>/worker.lock); a second one exits at once with status 0.\n"
	"'optstudio optimize' starts it detached; you need not run it by hand.\n"
	"Environment (test hooks):\n"
	"  OPTSTUDIO_WORKER_IDLE_MS        idle period in milliseconds\n"
	"  OPTSTUDIO_WORKER_FSIZE_LIMIT    largest file the worker may write, in bytes\n"
	"                                  (RLIMIT_FSIZE), to simulate a full disk\n";

int cmd_worker(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(worker_help, stdout);
		return EXIT_OK;
	}
	jobs_worker_opts o = {0};
	const char *v;
	if ((v = getenv("OPTSTUDIO_WORKER_IDLE_MS")) && *v)
		o.idle_seconds = strtod(v, NULL) / 1000.0;
	if ((v = getenv("OPTSTUDIO_WORKER_FSIZE_LIMIT")) && *v)
		o.fsize_limit = strtoull(v, NULL, 10);
	for (int i = 1; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "--idle") && i + 1 < argc) {
			o.idle_seconds = strtod(argv[++i], &end);
			if (*end || !(o.idle_seconds > 0))
				return cli_usage_error("worker", "--idle wants seconds > 0, not '%s'",
						       argv[i]);
		} else {
			return cli_usage_error("worker", "unexpected argument '%s'", argv[i]);
		}
	}
	char home[PATH_MAX];
	os_error err = {0};
	if (store_home_resolve(home, sizeof home, &err))
		return cli_fail(&err, "cannot find the data home");
	if (store_home_create(home, &err))
		return cli_fail(&err, "cannot use the data home");
	int rc = jobs_worker_run(home, &o, &err);
	if (rc == OS_EBUSY) {
		fprintf(stderr, "optstudio worker: %s; exiting\n", os_error_text(&err));
		return EXIT_OK;
	}
	if (rc)
		return cli_fail(&err, "worker");
	return EXIT_OK;
}
