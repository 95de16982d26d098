/* worker.c: the background worker (lock, claim, run, finish, idle exit) and its detached
 * start by whoever queues a job. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/jobs/pipeline.h"
#include "store/store.h"

#define DEFAULT_IDLE_S 10.0
#define POLL_MS 100

static double now_s(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void jobs_log_path(const char *home, int64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/logs/%lld.log", home, (long long)id);
}

/* Opens <home>/worker.lock and tries to take it. Returns the fd holding the lock, -1 with
 * errno EWOULDBLOCK when another process holds it, or -1 with another errno. */
static int lock_try(const char *home)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/worker.lock", home);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Runs one claimed job to its end state. */
static void run_job(store *s, const char *home, const store_job *job)
{
	char path[PATH_MAX];
	jobs_log_path(home, job->id, path, sizeof path);
	FILE *log = fopen(path, "a");
	if (log) {
		fprintf(log, "---- job %lld started by worker pid %lld\n", (long long)job->id,
			(long long)getpid());
		fflush(log);
	}
	os_error e = {0};
	int rc = pipeline_run(s, job, log, &e);
	const char *state = rc == OS_OK ? "completed" : rc == OS_ESTOPPED ? "stopped" : "failed";
	os_error fe = {0};
	int frc = store_job_finish(s, job->id, state, rc ? os_error_text(&e) : NULL, &fe);
	if (log) {
		fprintf(log, "---- job %lld %s%s%s\n", (long long)job->id, state, rc ? ": " : "",
			rc ? os_error_text(&e) : "");
		if (frc)
			fprintf(log, "---- could not record the end state: %s\n", os_error_text(&fe));
		fclose(log);
	}
}

int jobs_worker_run(const char *home, const jobs_worker_opts *opts, os_error *err)
{
	double idle_s = opts && opts->idle_seconds > 0 ? opts->idle_seconds : DEFAULT_IDLE_S;
	int lock = lock_try(home);
	if (lock < 0) {
		if (errno == EWOULDBLOCK)
			return os_error_set(err, OS_EBUSY, "another worker is running (lock "
					    "'%s/worker.lock' held)", home);
		return os_error_set(err, OS_EIO, "cannot open '%s/worker.lock': %s", home,
				    strerror(errno));
	}
	if (opts && opts->fsize_limit) {
		/* test hook: a full disk. Writes past the limit fail with EFBIG instead of
		 * killing the process with SIGXFSZ. */
		struct rlimit rl = {opts->fsize_limit, opts->fsize_limit};
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
	}
	store *s = NULL;
	int rc = store_open(&s, home, err);
	if (rc) {
		close(lock);
		return rc;
	}
	char token[64];
	if ((rc = store_jobs_process_token(getpid(), token, sizeof token, err)))
		goto done;
	double idle_since = now_s();
	const struct timespec pause = {0, POLL_MS * 1000 * 1000};
	for (;;) {
		store_jobs_reap_dead(s, NULL, NULL);
		store_job job = {0};
		int claimed = 0;
		os_error ce = {0};
		if (store_job_claim(s, getpid(), token, &job, &claimed, &ce) == OS_OK && claimed) {
			run_job(s, home, &job);
			store_job_clear(&job);
			idle_since = now_s();
			continue;
		}
		if (now_s() - idle_since >= idle_s) {
			/* release, then look once more: a job queued while we held the lock found
			 * it held and started no worker, so it is ours to run */
			flock(lock, LOCK_UN);
			int64_t n = 0;
			if (store_job_count_queued(s, &n, NULL) != OS_OK || n == 0)
				break;
			if (flock(lock, LOCK_EX | LOCK_NB) != 0)
				break; /* a new worker took over */
			idle_since = now_s();
			continue;
		}
		nanosleep(&pause, NULL);
	}
	rc = OS_OK;
done:
	store_close(s);
	close(lock);
	return rc;
}

int jobs_ensure_worker(const char *home, const char *exe, int *started, os_error *err)
{
	if (started)
		*started = 0;
	int fd = lock_try(home);
	if (fd < 0) {
		if (errno == EWOULDBLOCK)
			return OS_OK; /* one runs; it will see the new job */
		return os_error_set(err, OS_EIO, "cannot open '%s/worker.lock': %s", home,
				    strerror(errno));
	}
	/* free: release it for the worker we start (if two callers race here, both start one
	 * and the loser of the lock exits at once) */
	close(fd);
	char log_path[PATH_MAX];
	snprintf(log_path, sizeof log_path, "%s/logs/worker.log", home);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return os_error_set(err, OS_EIO, "cannot start the worker: fork: %s", strerror(errno));
	if (pid == 0) {
		/* first child: a new session, then fork again so the worker is no session leader
		 * and no child of the caller (it must outlive the command that queued the job) */
		if (setsid() < 0 || fork() != 0)
			_exit(0);
		int in = open("/dev/null", O_RDONLY);
		int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (in < 0 || out < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		long max_fd = sysconf(_SC_OPEN_MAX);
		for (long f = 3; f < (max_fd > 0 && max_fd < 65536 ? max_fd : 1024); f++)
			close((int)f);
		char *argv[] = {(char *)exe, "worker", NULL};
		execv(exe, argv);
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (started)
		*started = 1;
	return OS_OK;
}
