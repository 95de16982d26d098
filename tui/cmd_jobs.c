/* cmd_jobs.c: `optstudio jobs [--watch] [--json]` and `jobs show|log|stop|retry|rm ID`:
 * the background jobs. Every call first marks failed the jobs whose worker died. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/jobs/worker.h"
#include "hub_ops.h"
#include "store/store.h"

static const char jobs_help[] =
	"usage: optstudio jobs [--watch] [--json]\n"
	"       optstudio jobs show ID [--json]\n"
	"       optstudio jobs log ID [-f]\n"
	"       optstudio jobs stop ID | retry ID | rm ID\n"
	"\n"
	"The background optimization jobs (queued with 'optstudio optimize').\n"
	"  (no command)   every job: id, state, stage, progress, ETA, model, error\n"
	"      --watch    redraw twice a second until no job is queued or running\n"
	"  show ID        one job: state, stage, progress, error, the worker's pid, events\n"
	"  log ID [-f]    the job's log file; -f follows it until the job ends\n"
	"  stop ID        stop a job (a queued job stops at once, a running one at its next\n"
	"                 check, within a second)\n"
	"  retry ID       queue a failed or stopped job again (same id; its log continues)\n"
	"  rm ID          delete a job that is not running, with its events and log\n"
	"States: queued, running, completed, failed, stopping, stopped. A running job whose\n"
	"worker died is marked failed, naming the worker, by whoever reads the jobs next.\n";

static bool is_active(const store_job *j)
{
	return !strcmp(j->state, "queued") || !strcmp(j->state, "running") ||
	       !strcmp(j->state, "stopping");
}

char *cli_job_json(const store_job *j)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "id", (double)j->id);
	if (j->name)
		cJSON_AddStringToObject(o, "name", j->name);
	else
		cJSON_AddNullToObject(o, "name");
	cJSON_AddStringToObject(o, "state", j->state);
	if (j->stage)
		cJSON_AddStringToObject(o, "stage", j->stage);
	else
		cJSON_AddNullToObject(o, "stage");
	cJSON_AddNumberToObject(o, "progress", j->progress);
	if (j->eta_seconds >= 0)
		cJSON_AddNumberToObject(o, "eta_seconds", j->eta_seconds);
	else
		cJSON_AddNullToObject(o, "eta_seconds");
	if (j->error)
		cJSON_AddStringToObject(o, "error", j->error);
	else
		cJSON_AddNullToObject(o, "error");
	if (j->pid)
		cJSON_AddNumberToObject(o, "pid", (double)j->pid);
	else
		cJSON_AddNullToObject(o, "pid");
	if (j->result_model_id)
		cJSON_AddNumberToObject(o, "result_model_id", (double)j->result_model_id);
	else
		cJSON_AddNullToObject(o, "result_model_id");
	cJSON_AddBoolToObject(o, "stop_requested", j->stop_requested);
	cJSON_AddNumberToObject(o, "created_at", j->created_at);
	if (j->started_at > 0)
		cJSON_AddNumberToObject(o, "started_at", j->started_at);
	else
		cJSON_AddNullToObject(o, "started_at");
	if (j->finished_at > 0)
		cJSON_AddNumberToObject(o, "finished_at", j->finished_at);
	else
		cJSON_AddNullToObject(o, "finished_at");
	cJSON *spec = j->spec ? cJSON_Parse(j->spec) : NULL;
	if (spec)
		cJSON_AddItemToObject(o, "spec", spec);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* The model a job works on, from its spec (for listings). */
static void job_model(const store_job *j, char *buf, size_t len)
{
	snprintf(buf, len, "?");
	cJSON *spec = j->spec ? cJSON_Parse(j->spec) : NULL;
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(spec, "model");
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(spec, "quantization");
	const cJSON *meth = cJSON_GetObjectItemCaseSensitive(q, "method");
	if (cJSON_IsString(m))
		snprintf(buf, len, "%s%s%s", m->valuestring, cJSON_IsString(meth) ? " " : "",
			 cJSON_IsString(meth) ? meth->valuestring : "");
	cJSON_Delete(spec);
}

static void format_eta(double s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s < 60)
		snprintf(buf, len, "%.0fs", ceil(s));
	else if (s < 3600)
		snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
	else
		snprintf(buf, len, "%.0fh%02.0fm", floor(s / 3600), fmod(s / 60, 60));
}

static int open_and_reap(store **s)
{
	os_error err = {0};
	if (hub_open(s, &err))
		return cli_fail(&err, "cannot open the hub");
	if (store_jobs_reap_dead(*s, NULL, &err)) {
		store_close(*s);
		*s = NULL;
		return cli_fail(&err, "cannot check the jobs' workers");
	}
	return EXIT_OK;
}

/* Prints the table; *active receives how many jobs are queued or running. */
static int print_list(store *s, bool json, size_t *active)
{
	store_job *v = NULL;
	size_t n = 0;
	os_error err = {0};
	if (store_job_list(s, &v, &n, &err))
		return cli_fail(&err, "cannot list the jobs");
	*active = 0;
	if (json)
		fputs("[", stdout);
	else if (n == 0)
		printf("no jobs; queue one with 'optstudio optimize'\n");
	else
		printf("%-5s %-10s %-10s %6s %7s  %-32s %s\n", "ID", "STATE", "STAGE", "DONE", "ETA",
		       "MODEL", "ERROR");
	for (size_t i = 0; i < n; i++) {
		*active += is_active(&v[i]);
		if (json) {
			char *t = cli_job_json(&v[i]);
			printf("%s%s", i ? "," : "", t ? t : "null");
			free(t);
			continue;
		}
		char model[128], eta[32];
		job_model(&v[i], model, sizeof model);
		format_eta(!strcmp(v[i].state, "running") ? v[i].eta_seconds : -1, eta, sizeof eta);
		printf("%-5lld %-10s %-10s %5.0f%% %7s  %-32s %s\n", (long long)v[i].id, v[i].state,
		       v[i].stage ? v[i].stage : "-", v[i].progress * 100, eta, model,
		       v[i].error ? v[i].error : "");
	}
	if (json)
		fputs("]\n", stdout);
	fflush(stdout);
	store_job_list_free(v, n);
	return EXIT_OK;
}

static int jobs_list(bool json, bool watch)
{
	store *s = NULL;
	int code = open_and_reap(&s);
	if (code)
		return code;
	const struct timespec pause = {0, 500 * 1000 * 1000};
	bool tty = isatty(1);
	for (;;) {
		size_t active = 0;
		if (watch && tty)
			fputs("\033[H\033[2J", stdout);
		if ((code = print_list(s, json, &active)) || !watch || active == 0)
			break;
		nanosleep(&pause, NULL);
		store_jobs_reap_dead(s, NULL, NULL);
	}
	store_close(s);
	return code;
}

static bool parse_id(const char *arg, int64_t *id)
{
	char *end;
	errno = 0;
	long long v = strtoll(arg, &end, 10);
	if (!*arg || *end || errno || v <= 0)
		return false;
	*id = v;
	return true;
}

/* The ids of the benchmark runs job id stored (its evaluate stage), oldest first, into
 * *ids (malloc'd; free it). */
static int job_run_ids(store *s, int64_t id, int64_t **ids, size_t *n, os_error *err)
{
	store_bench_run *v = NULL;
	size_t nv = 0;
	*ids = NULL;
	*n = 0;
	int rc = store_bench_run_list(s, &v, &nv, err);
	if (rc)
		return rc;
	if (nv && !(*ids = malloc(nv * sizeof **ids))) {
		store_bench_run_list_free(v, nv);
		return os_error_set(err, OS_ENOMEM, "out of memory");
	}
	for (size_t i = nv; i-- > 0;) /* the list is newest first */
		if (v[i].job_id == id)
			(*ids)[(*n)++] = v[i].id;
	store_bench_run_list_free(v, nv);
	return OS_OK;
}

/* cli_job_json plus "result_run_ids": the benchmark runs the job stored. */
static char *job_json_with_runs(store *s, const store_job *j)
{
	int64_t *ids = NULL;
	size_t n = 0;
	char *t = cli_job_json(j), *out = NULL;
	cJSON *o = t ? cJSON_Parse(t) : NULL;
	cJSON *a = o ? cJSON_AddArrayToObject(o, "result_run_ids") : NULL;
	if (a && job_run_ids(s, j->id, &ids, &n, NULL) == OS_OK) {
		for (size_t i = 0; i < n; i++)
			cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ids[i]));
		char *p = cJSON_PrintUnformatted(o);
		if (p) {
			out = strdup(p);
			cJSON_free(p);
		}
	}
	free(ids);
	cJSON_Delete(o);
	free(t);
	return out;
}

static int jobs_show(store *s, int64_t id, bool json)
{
	store_job j = {0};
	os_error err = {0};
	if (store_job_get(s, id, &j, &err))
		return cli_fail(&err, "cannot show job %lld", (long long)id);
	if (json) {
		char *t = job_json_with_runs(s, &j);
		store_job_clear(&j);
		if (!t) {
			cli_error("out of memory formatting JSON");
			return EXIT_FAIL;
		}
		printf("%s\n", t);
		free(t);
		return EXIT_OK;
	}
	char model[128], eta[32], log[PATH_MAX];
	job_model(&j, model, sizeof model);
	format_eta(!strcmp(j.state, "running") ? j.eta_seconds : -1, eta, sizeof eta);
	jobs_log_path(store_home(s), id, log, sizeof log);
	printf("job %lld%s%s%s\n", (long long)j.id, j.name ? " (" : "", j.name ? j.name : "",
	       j.name ? ")" : "");
	printf("  state     %s%s\n", j.state, j.stop_requested && is_active(&j) ? " (stop asked)" : "");
	printf("  stage     %s\n", j.stage ? j.stage : "-");
	printf("  progress  %.0f%%  eta %s\n", j.progress * 100, eta);
	printf("  model     %s\n", model);
	if (j.pid)
		printf("  worker    pid %lld\n", (long long)j.pid);
	if (j.error)
		printf("  error     %s\n", j.error);
	if (j.result_model_id) {
		store_model m = {0};
		if (store_model_get_by_id(s, j.result_model_id, &m, NULL) == OS_OK)
			printf("  result    %s (%s)\n", m.name, m.path);
		store_model_clear(&m);
	}
	int64_t *runs = NULL;
	size_t n_runs = 0;
	if (job_run_ids(s, id, &runs, &n_runs, NULL) == OS_OK && n_runs) {
		printf("  runs     ");
		for (size_t i = 0; i < n_runs; i++)
			printf(" %lld", (long long)runs[i]);
		printf("  ('optstudio compare %lld ...')\n", (long long)runs[0]);
	}
	free(runs);
	printf("  spec      %s\n  log       %s\n  events:\n", j.spec, log);
	store_job_event *ev = NULL;
	size_t n = 0;
	if (store_job_event_list(s, id, 0, &ev, &n, &err) == OS_OK) {
		for (size_t i = 0; i < n; i++) {
			time_t t = (time_t)ev[i].time;
			struct tm tm;
			char ts[32];
			localtime_r(&t, &tm);
			strftime(ts, sizeof ts, "%H:%M:%S", &tm);
			printf("    %s %-5s %s%s%s\n", ts, ev[i].level, ev[i].stage ? ev[i].stage : "",
			       ev[i].stage ? ": " : "", ev[i].message);
		}
		store_job_event_list_free(ev, n);
	}
	store_job_clear(&j);
	return EXIT_OK;
}

/* Copies the log from *offset to stdout; returns false on a read error. */
static bool copy_log(const char *path, long *offset)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT; /* not written yet */
	if (fseek(f, *offset, SEEK_SET) != 0) {
		fclose(f);
		return false;
	}
	char buf[8192];
	size_t got;
	while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
		fwrite(buf, 1, got, stdout);
		*offset += (long)got;
	}
	fclose(f);
	fflush(stdout);
	return true;
}

static int jobs_log(store *s, int64_t id, bool follow)
{
	store_job j = {0};
	os_error err = {0};
	if (store_job_get(s, id, &j, &err))
		return cli_fail(&err, "cannot show the log of job %lld", (long long)id);
	char path[PATH_MAX];
	jobs_log_path(store_home(s), id, path, sizeof path);
	long offset = 0;
	const struct timespec pause = {0, 200 * 1000 * 1000};
	bool active = is_active(&j);
	store_job_clear(&j);
	if (!follow && access(path, R_OK) != 0) {
		printf("job %lld has no log yet (%s)\n", (long long)id,
		       active ? "it has not started" : "it never ran");
		return EXIT_OK;
	}
	for (;;) {
		if (!copy_log(path, &offset)) {
			cli_error("cannot read '%s': %s", path, strerror(errno));
			return EXIT_FAIL;
		}
		if (!follow || !active)
			break;
		nanosleep(&pause, NULL);
		store_jobs_reap_dead(s, NULL, NULL);
		if (store_job_get(s, id, &j, &err))
			break; /* deleted */
		active = is_active(&j);
		store_job_clear(&j);
		/* one more copy after the end, for the last lines */
	}
	return EXIT_OK;
}

int cmd_jobs(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(jobs_help, stdout);
		return EXIT_OK;
	}
	bool json = false, watch = false, follow = false;
	const char *words[3] = {0};
	size_t n_words = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--watch"))
			watch = true;
		else if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow"))
			follow = true;
		else if (argv[i][0] == '-')
			return cli_usage_error("jobs", "unknown option '%s'", argv[i]);
		else if (n_words < 2)
			words[n_words++] = argv[i];
		else
			return cli_usage_error("jobs", "unexpected argument '%s'", argv[i]);
	}
	if (n_words == 0) {
		if (follow)
			return cli_usage_error("jobs", "-f goes with 'jobs log ID'");
		return jobs_list(json, watch);
	}
	const char *sub = words[0];
	static const char *const subs[] = {"show", "log", "stop", "retry", "rm"};
	bool known = false;
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
		known |= !strcmp(sub, subs[i]);
	if (!known)
		return cli_usage_error("jobs", "unknown command '%s' (show, log, stop, retry, rm)", sub);
	int64_t id;
	if (n_words < 2)
		return cli_usage_error("jobs", "'%s' needs a job ID", sub);
	if (!parse_id(words[1], &id))
		return cli_usage_error("jobs", "'%s' is not a job ID (a positive number)", words[1]);
	if (watch || (follow && strcmp(sub, "log")) || (json && strcmp(sub, "show")))
		return cli_usage_error("jobs", "that option does not go with '%s'", sub);

	store *s = NULL;
	int code = open_and_reap(&s);
	if (code)
		return code;
	os_error err = {0};
	if (!strcmp(sub, "show")) {
		code = jobs_show(s, id, json);
	} else if (!strcmp(sub, "log")) {
		code = jobs_log(s, id, follow);
	} else if (!strcmp(sub, "stop")) {
		char *state = NULL;
		/* a job in the wrong state is a failure (1), not a usage error */
		if (store_job_request_stop(s, id, &state, &err)) {
			cli_fail(&err, "cannot stop job %lld", (long long)id);
			code = EXIT_FAIL;
		}
		if (state)
			printf("job %lld: %s\n", (long long)id,
			       !strcmp(state, "stopped") ? "stopped (it had not started)"
							 : "stopping (the worker stops it within a second)");
		free(state);
	} else if (!strcmp(sub, "retry")) {
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (store_job_retry(s, id, &err)) {
			cli_fail(&err, "cannot retry job %lld", (long long)id);
			code = EXIT_FAIL;
		} else if (n <= 0) {
			cli_error("job %lld is queued again, but the worker cannot be started: %s",
				  (long long)id, strerror(errno));
			code = EXIT_FAIL;
		} else {
			exe[n] = '\0';
			if (jobs_ensure_worker(store_home(s), exe, NULL, &err))
				code = cli_fail(&err, "job %lld is queued again, but the worker did "
						"not start", (long long)id);
			else
				printf("job %lld: queued again\n", (long long)id);
		}
	} else { /* rm */
		if (store_job_delete(s, id, &err)) {
			code = cli_fail(&err, "cannot delete job %lld", (long long)id);
		} else {
			char path[PATH_MAX];
			jobs_log_path(store_home(s), id, path, sizeof path);
			unlink(path);
			printf("job %lld: deleted\n", (long long)id);
		}
	}
	store_close(s);
	return code;
}
