/* test_store_jobs.c: the jobs tables: queue, claim (oldest first, once), progress and stop
 * flag, finish, retry, delete, events, and reaping jobs whose worker died or whose pid was
 * reused. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/test.h"

static store *open_fresh(char *home, size_t len)
{
	snprintf(home, len, "/tmp/optstudio-test-jobs.XXXXXX");
	if (!mkdtemp(home))
		return NULL;
	store *s = NULL;
	os_error err = {0};
	if (store_open(&s, home, &err) != OS_OK)
		fprintf(stderr, "store_open: %s\n", err.msg);
	return s;
}

static void rm_home(const char *home)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", home);
}

TEST(test_lifecycle)
{
	char home[256];
	store *s = open_fresh(home, sizeof home);
	CHECK(s);
	if (!s)
		return;
	os_error err = {0};
	store_job a = {0}, b = {0}, c = {0};
	CHECK_EQ_INT(store_job_insert(s, "first", "{\"model\":\"m\"}", 0, &a, &err), OS_OK);
	CHECK_EQ_INT(store_job_insert(s, NULL, "{\"model\":\"n\"}", 0, &b, &err), OS_OK);
	CHECK_EQ_INT(store_job_insert(s, NULL, "not json", 0, NULL, &err), OS_EUSAGE);
	CHECK_EQ_STR(a.state, "queued");
	CHECK(b.id > a.id);
	int64_t nq = 0;
	CHECK(store_job_count_queued(s, &nq, &err) == OS_OK && nq == 2);

	char token[64];
	CHECK_EQ_INT(store_jobs_process_token(getpid(), token, sizeof token, &err), OS_OK);
	int claimed = 0;
	CHECK_EQ_INT(store_job_claim(s, getpid(), token, &c, &claimed, &err), OS_OK);
	CHECK(claimed && c.id == a.id);
	CHECK_EQ_STR(c.state, "running");
	CHECK(c.pid == getpid() && c.started_at > 0);
	store_job_clear(&c);

	/* progress is clamped, the stop flag read back */
	int stop = -1;
	CHECK_EQ_INT(store_job_update(s, a.id, "calibrate", 1.7, 12.5, &stop, &err), OS_OK);
	CHECK(stop == 0);
	CHECK_EQ_INT(store_job_get(s, a.id, &c, &err), OS_OK);
	CHECK(c.progress == 1.0 && c.eta_seconds == 12.5);
	CHECK_EQ_STR(c.stage, "calibrate");
	store_job_clear(&c);
	char *st = NULL;
	CHECK_EQ_INT(store_job_request_stop(s, a.id, &st, &err), OS_OK);
	CHECK_EQ_STR(st, "stopping");
	free(st);
	CHECK(store_job_stop_requested(s, a.id, &stop, &err) == OS_OK && stop == 1);
	CHECK_EQ_INT(store_job_finish(s, a.id, "stopped", "stopped during calibrate", &err), OS_OK);
	CHECK_EQ_INT(store_job_finish(s, a.id, "completed", NULL, &err), OS_EBUSY);
	CHECK_EQ_INT(store_job_finish(s, a.id, "running", NULL, &err), OS_EUSAGE);
	CHECK_EQ_INT(store_job_request_stop(s, a.id, NULL, &err), OS_EUSAGE);

	/* a queued job stops at once; running jobs cannot be deleted */
	CHECK_EQ_INT(store_job_request_stop(s, b.id, &st, &err), OS_OK);
	CHECK_EQ_STR(st, "stopped");
	free(st);

	/* retry: same id, reset, queued, claimable again */
	CHECK_EQ_INT(store_job_retry(s, a.id, &err), OS_OK);
	CHECK_EQ_INT(store_job_get(s, a.id, &c, &err), OS_OK);
	CHECK_EQ_STR(c.state, "queued");
	CHECK(c.pid == 0 && c.error == NULL && c.stage == NULL && c.progress == 0 && !c.stop_requested);
	store_job_clear(&c);
	CHECK_EQ_INT(store_job_retry(s, a.id, &err), OS_EUSAGE);
	CHECK_EQ_INT(store_job_claim(s, getpid(), token, &c, &claimed, &err), OS_OK);
	CHECK(claimed && c.id == a.id);
	store_job_clear(&c);
	CHECK_EQ_INT(store_job_delete(s, a.id, &err), OS_EBUSY);
	CHECK_EQ_INT(store_job_finish(s, a.id, "completed", NULL, &err), OS_OK);
	claimed = 1;
	CHECK_EQ_INT(store_job_claim(s, getpid(), token, &c, &claimed, &err), OS_OK);
	CHECK(claimed == 0); /* b is stopped, nothing queued */

	store_job_event *ev = NULL;
	size_t n = 0;
	CHECK_EQ_INT(store_job_event_list(s, a.id, 0, &ev, &n, &err), OS_OK);
	CHECK_MSG(n >= 6, "%zu events", n);
	if (n)
		CHECK_EQ_STR(ev[0].message, "queued");
	int64_t last = n ? ev[n - 1].id : 0;
	store_job_event_list_free(ev, n);
	CHECK_EQ_INT(store_job_event_add(s, a.id, "x", "warn", "hello", &err), OS_OK);
	CHECK_EQ_INT(store_job_event_add(s, a.id, "x", "loud", "hello", &err), OS_EUSAGE);
	CHECK_EQ_INT(store_job_event_list(s, a.id, last, &ev, &n, &err), OS_OK);
	CHECK(n == 1 && strcmp(ev[0].message, "hello") == 0);
	store_job_event_list_free(ev, n);

	store_job *v = NULL;
	CHECK_EQ_INT(store_job_list(s, &v, &n, &err), OS_OK);
	CHECK(n == 2 && v[0].id == a.id && strcmp(v[0].state, "completed") == 0);
	store_job_list_free(v, n);
	CHECK_EQ_INT(store_job_delete(s, a.id, &err), OS_OK);
	CHECK_EQ_INT(store_job_get(s, a.id, &c, &err), OS_ENOTFOUND);
	CHECK_EQ_INT(store_job_event_list(s, a.id, 0, &ev, &n, &err), OS_OK);
	CHECK(n == 0);
	store_job_event_list_free(ev, n);
	store_job_clear(&a);
	store_job_clear(&b);
	store_close(s);
	rm_home(home);
}

TEST(test_reap_dead_worker)
{
	char home[256];
	store *s = open_fresh(home, sizeof home);
	CHECK(s);
	if (!s)
		return;
	os_error err = {0};
	/* a child that exits at once: its pid is dead once reaped */
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	char token[64];
	CHECK_EQ_INT(store_jobs_process_token(child, token, sizeof token, &err), OS_ENOTFOUND);
	char mine[64];
	CHECK_EQ_INT(store_jobs_process_token(getpid(), mine, sizeof mine, &err), OS_OK);

	store_job j1 = {0}, j2 = {0}, j3 = {0};
	int claimed;
	store_job_insert(s, NULL, "{}", 0, NULL, &err);
	store_job_insert(s, NULL, "{}", 0, NULL, &err);
	store_job_insert(s, NULL, "{}", 0, NULL, &err);
	CHECK_EQ_INT(store_job_claim(s, child, "dead:1", &j1, &claimed, &err), OS_OK);
	/* our own pid with a wrong start time: a reused pid */
	char reused[80];
	snprintf(reused, sizeof reused, "%lld:1", (long long)getpid());
	CHECK_EQ_INT(store_job_claim(s, getpid(), reused, &j2, &claimed, &err), OS_OK);
	CHECK_EQ_INT(store_job_claim(s, getpid(), mine, &j3, &claimed, &err), OS_OK);
	size_t n = 0;
	CHECK_EQ_INT(store_jobs_reap_dead(s, &n, &err), OS_OK);
	CHECK_EQ_INT((int)n, 2);
	store_job g = {0};
	char want[64];
	store_job_get(s, j1.id, &g, &err);
	snprintf(want, sizeof want, "worker (pid %lld) died", (long long)child);
	CHECK_EQ_STR(g.state, "failed");
	CHECK_EQ_STR(g.error, want);
	store_job_clear(&g);
	store_job_get(s, j2.id, &g, &err);
	CHECK_EQ_STR(g.state, "failed");
	store_job_clear(&g);
	store_job_get(s, j3.id, &g, &err);
	CHECK_EQ_STR(g.state, "running"); /* alive: left alone */
	store_job_clear(&g);
	CHECK_EQ_INT(store_jobs_reap_dead(s, &n, &err), OS_OK);
	CHECK_EQ_INT((int)n, 0);
	CHECK_EQ_INT(store_job_retry(s, j1.id, &err), OS_OK);
	store_job_clear(&j1);
	store_job_clear(&j2);
	store_job_clear(&j3);
	store_close(s);
	rm_home(home);
}

int main(void)
{
	RUN(test_lifecycle);
	RUN(test_reap_dead_worker);
	return test_summary();
}
