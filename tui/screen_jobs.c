/* screen_jobs.c: the Jobs screen: the store's jobs, live (state colours, progress bars, stage,
 * ETA), and a pane following the selected job's log (<home>/logs/<id>.log); stop, retry and
 * delete, the destructive ones after a confirmation. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs/worker.h"
#include "progress.h"
#include "studio.h"

#define LOG_TAIL_BYTES 65536  /* the log pane reads at most this much of the file's end */

enum { J_UP = 1, J_DOWN, J_PGUP, J_PGDN, J_HOME, J_END, J_ZOOM, J_BACK, J_STOP, J_RETRY,
       J_DELETE, J_FOLLOW, J_FILTER, J_LOG_UP, J_LOG_DOWN };

static const ui_key jobs_keys[] = {
	{KEY_UP, "↑↓", "move", "select a job (also k/j, the mouse wheel)", J_UP},
	{KEY_DOWN, "↓", NULL, "move down", J_DOWN},
	{'k', "k", NULL, "move up", J_UP},
	{'j', "j", NULL, "move down", J_DOWN},
	{KEY_HOME, "Home", NULL, "newest job", J_HOME},
	{KEY_END, "End", NULL, "oldest job", J_END},
	{'\n', "⏎", "log", "enlarge the log pane / shrink it again", J_ZOOM},
	{'x', "x", "stop", "stop the selected job (asks first)", J_STOP},
	{'R', "R", "retry", "queue a failed or stopped job again and start the worker", J_RETRY},
	{'d', "d", "delete", "delete the selected job and its log (asks first)", J_DELETE},
	{'f', "f", "follow", "follow the log's end (on/off)", J_FOLLOW},
	{KEY_PPAGE, "PgUp", NULL, "scroll the log up (stops following)", J_LOG_UP},
	{KEY_NPAGE, "PgDn", NULL, "scroll the log down", J_LOG_DOWN},
	{'/', "/", "filter", "filter jobs by id, state, model, recipe or stage", J_FILTER},
	{27, "Esc", NULL, "clear the filter, shrink the log pane", J_BACK},
};

typedef struct job_row {
	int64_t id;
	char state[16];
	char model[160];
	char recipe[160];
	char stage[64];
	double progress, eta;
	char error[320];
	int64_t pid;
	bool stop_requested;
} job_row;

typedef struct jobs_screen {
	job_row *rows;      /* [n_rows], newest first */
	size_t n_rows;
	size_t *view;       /* [n_view] indices into rows, filtered */
	size_t n_view, sel, top;
	int64_t sel_id;
	char filter[256];
	bool zoom;
	int list_y0, list_rows;
	/* the log pane: the tail of the selected job's log */
	int64_t log_id;
	off_t log_size;
	struct timespec log_mtime;
	char *log_buf;      /* the tail, NUL-terminated; lines point into it */
	char **log_lines;
	size_t n_log_lines;
	bool follow;
	int log_scroll;     /* first line shown when not following */
	int log_rows;
} jobs_screen;

static void row_from_job(job_row *r, const store_job *j)
{
	memset(r, 0, sizeof *r);
	r->id = j->id;
	snprintf(r->state, sizeof r->state, "%s", j->state ? j->state : "?");
	snprintf(r->stage, sizeof r->stage, "%s", j->stage ? j->stage : "—");
	snprintf(r->error, sizeof r->error, "%s", j->error ? j->error : "");
	r->progress = j->progress;
	r->eta = j->eta_seconds;
	r->pid = j->pid;
	r->stop_requested = j->stop_requested;
	cJSON *spec = j->spec ? cJSON_Parse(j->spec) : NULL;
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(spec, "model");
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(spec, "quantization");
	const cJSON *method = cJSON_GetObjectItemCaseSensitive(q, "method");
	const cJSON *sd = cJSON_GetObjectItemCaseSensitive(spec, "speculative_decoding");
	const cJSON *draft = cJSON_GetObjectItemCaseSensitive(sd, "draft");
	snprintf(r->model, sizeof r->model, "%s",
		 cJSON_IsString(model) ? model->valuestring : j->name ? j->name : "—");
	size_t n = (size_t)snprintf(r->recipe, sizeof r->recipe, "%s",
				    cJSON_IsString(method) ? method->valuestring : "");
	if (sd && n < sizeof r->recipe)
		snprintf(r->recipe + n, sizeof r->recipe - n, "%sspec:%s", n ? " + " : "",
			 cJSON_IsString(draft) ? draft->valuestring : "auto");
	if (!r->recipe[0])
		snprintf(r->recipe, sizeof r->recipe, "—");
	cJSON_Delete(spec);
}

static bool row_matches(const job_row *r, const char *f)
{
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)r->id);
	return ui_match(id, f) || ui_match(r->state, f) || ui_match(r->model, f) ||
	       ui_match(r->recipe, f) || ui_match(r->stage, f);
}

static void rebuild_view(jobs_screen *js)
{
	js->n_view = 0;
	for (size_t i = 0; i < js->n_rows; i++)
		if (row_matches(&js->rows[i], js->filter))
			js->view[js->n_view++] = i;
	js->sel = 0;
	for (size_t i = 0; i < js->n_view; i++)
		if (js->rows[js->view[i]].id == js->sel_id)
			js->sel = i;
	js->sel_id = js->n_view ? js->rows[js->view[js->sel]].id : 0;
}

static const job_row *selected(const jobs_screen *js)
{
	return js->n_view ? &js->rows[js->view[js->sel]] : NULL;
}

static void jobs_refresh(void *state, ui *u)
{
	jobs_screen *js = state;
	store_job *v = NULL;
	size_t n = 0;
	os_error err = {0};
	if (store_job_list(ui_store(u), &v, &n, &err) != OS_OK) {
		ui_status(u, true, "cannot list the jobs: %s", os_error_text(&err));
		return;
	}
	job_row *rows = n ? calloc(n, sizeof *rows) : NULL;
	size_t *view = n ? calloc(n, sizeof *view) : NULL;
	if (n && (!rows || !view)) {
		free(rows);
		free(view);
		store_job_list_free(v, n);
		ui_status(u, true, "out of memory listing the jobs");
		return;
	}
	for (size_t i = 0; i < n; i++)
		row_from_job(&rows[i], &v[n - 1 - i]); /* newest first */
	store_job_list_free(v, n);
	free(js->rows);
	free(js->view);
	js->rows = rows;
	js->view = view;
	js->n_rows = n;
	rebuild_view(js);
}

/* ---- the log pane ------------------------------------------------------------------------- */

static void log_clear(jobs_screen *js)
{
	free(js->log_buf);
	free(js->log_lines);
	js->log_buf = NULL;
	js->log_lines = NULL;
	js->n_log_lines = 0;
}

/* Reads the tail of the log of job id when the file changed since the last read (or the job
 * did). Returns true when the pane's content changed. */
static bool log_update(jobs_screen *js, ui *u, int64_t id)
{
	char path[4096];
	jobs_log_path(store_home(ui_store(u)), id, path, sizeof path);
	struct stat st;
	bool exists = stat(path, &st) == 0;
	if (id == js->log_id && exists && st.st_size == js->log_size &&
	    st.st_mtim.tv_sec == js->log_mtime.tv_sec && st.st_mtim.tv_nsec == js->log_mtime.tv_nsec)
		return false;
	if (id == js->log_id && !exists && !js->log_buf)
		return false;
	if (id != js->log_id) {
		js->follow = true;
		js->log_scroll = 0;
	}
	js->log_id = id;
	log_clear(js);
	if (!exists) {
		js->log_size = -1;
		return true;
	}
	js->log_size = st.st_size;
	js->log_mtime = st.st_mtim;
	FILE *f = fopen(path, "rb");
	if (!f)
		return true;
	off_t from = st.st_size > LOG_TAIL_BYTES ? st.st_size - LOG_TAIL_BYTES : 0;
	char *buf = malloc(LOG_TAIL_BYTES + 1);
	size_t got = 0;
	if (buf && fseeko(f, from, SEEK_SET) == 0)
		got = fread(buf, 1, LOG_TAIL_BYTES, f);
	fclose(f);
	if (!buf)
		return true;
	buf[got] = '\0';
	size_t n = 1;
	for (size_t i = 0; i < got; i++)
		n += buf[i] == '\n';
	char **lines = malloc(n * sizeof *lines);
	if (!lines) {
		free(buf);
		return true;
	}
	size_t k = 0;
	char *p = buf;
	if (from > 0) { /* the first line is cut: skip it */
		char *nl = strchr(p, '\n');
		p = nl ? nl + 1 : p + got;
	}
	while (*p) {
		char *nl = strchr(p, '\n');
		lines[k++] = p;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	js->log_buf = buf;
	js->log_lines = lines;
	js->n_log_lines = k;
	return true;
}

static bool jobs_tick(void *state, ui *u)
{
	jobs_screen *js = state;
	const job_row *r = selected(js);
	if (!r) {
		bool had = js->log_buf != NULL || js->log_id != 0;
		log_clear(js);
		js->log_id = 0;
		return had;
	}
	return log_update(js, u, r->id);
}

/* ---- drawing --------------------------------------------------------------------------------- */

static theme_role state_role(const char *s)
{
	if (!strcmp(s, "running"))
		return ROLE_RUNNING;
	if (!strcmp(s, "completed"))
		return ROLE_GOOD;
	if (!strcmp(s, "failed"))
		return ROLE_BAD;
	if (!strcmp(s, "stopped") || !strcmp(s, "stopping"))
		return ROLE_WARN;
	return ROLE_DIM;
}

static const char *state_glyph(const char *s)
{
	if (!strcmp(s, "running"))
		return "●";
	if (!strcmp(s, "completed"))
		return "✓";
	if (!strcmp(s, "failed"))
		return "✗";
	if (!strcmp(s, "stopped"))
		return "■";
	if (!strcmp(s, "stopping"))
		return "◐";
	return "○";
}

enum { W_ID = 4, W_STATE = 11, W_STAGE = 10, W_PROGRESS = 15, W_ETA = 5 };

static void draw_header(ui *u, int y, int x, int w_model, int w_recipe)
{
	ui_put_right(u, y, x, W_ID, ROLE_HEADER, "ID");
	x += W_ID + 2;
	ui_put(u, y, x, W_STATE, ROLE_HEADER, "STATE", false);
	x += W_STATE + 2;
	ui_put(u, y, x, w_model, ROLE_HEADER, "MODEL", false);
	x += w_model + 2;
	ui_put(u, y, x, w_recipe, ROLE_HEADER, "RECIPE", false);
	x += w_recipe + 2;
	ui_put(u, y, x, W_STAGE, ROLE_HEADER, "STAGE", false);
	x += W_STAGE + 2;
	ui_put(u, y, x, W_PROGRESS, ROLE_HEADER, "PROGRESS", false);
	x += W_PROGRESS + 2;
	ui_put(u, y, x, W_ETA, ROLE_HEADER, "ETA", false);
}

static void draw_job(ui *u, int y, int x, int w, int w_model, int w_recipe, const job_row *r,
		     bool sel)
{
	theme_role base = sel ? ROLE_SELECTION : ROLE_TEXT;
	ui_fill(u, y, x - 1, w + 2, base);
	char buf[400];
	snprintf(buf, sizeof buf, "%lld", (long long)r->id);
	ui_put_right(u, y, x, W_ID, base, buf);
	x += W_ID + 2;
	snprintf(buf, sizeof buf, "%s %s", state_glyph(r->state), r->state);
	ui_put(u, y, x, W_STATE, sel ? base : state_role(r->state), buf, false);
	x += W_STATE + 2;
	ui_put(u, y, x, w_model, base, r->model, false);
	x += w_model + 2;
	ui_put(u, y, x, w_recipe, base, r->recipe, false);
	x += w_recipe + 2;
	ui_put(u, y, x, W_STAGE, base, r->stage, false);
	x += W_STAGE + 2;
	bool done = !strcmp(r->state, "completed");
	bool live = !strcmp(r->state, "running") || !strcmp(r->state, "stopping");
	if (live || done) {
		double f = done ? 1.0 : r->progress;
		ui_bar(u, y, x, 10, f, sel ? base : state_role(r->state));
		snprintf(buf, sizeof buf, "%3.0f%%", f * 100);
		ui_put_right(u, y, x + 10, W_PROGRESS - 10, base, buf);
		if (live && r->eta >= 0) {
			progress_format_duration(r->eta, buf, sizeof buf);
			ui_put_right(u, y, x + W_PROGRESS + 2, W_ETA, base, buf);
		}
	} else if (r->error[0]) {
		ui_put(u, y, x, W_PROGRESS + 2 + W_ETA, sel ? base : state_role(r->state), r->error, false);
	} else if (!strcmp(r->state, "stopped")) {
		ui_put(u, y, x, W_PROGRESS + 2 + W_ETA, sel ? base : ROLE_WARN, "stopped by user", false);
	} else {
		ui_put(u, y, x, W_PROGRESS + 2 + W_ETA, sel ? base : ROLE_DIM, "waiting for the worker", false);
	}
}

static void draw_log(jobs_screen *js, ui *u, ui_rect b)
{
	const job_row *r = selected(js);
	char title[128], right[64];
	if (!r) {
		ui_box(u, b, "log", NULL);
		return;
	}
	snprintf(title, sizeof title, "%lld · %s · log", (long long)r->id, r->state);
	snprintf(right, sizeof right, "%s", js->follow ? "following · f stop" : "paused · f follow");
	ui_box(u, b, title, right);
	int rows = b.h - 2;
	js->log_rows = rows;
	int y = b.y + 1;
	if (r->error[0] && rows > 1) {
		char e[400];
		snprintf(e, sizeof e, "error: %s", r->error);
		ui_put(u, y++, b.x + 2, b.w - 4, ROLE_BAD, e, false);
		rows--;
	}
	if (!js->log_buf) {
		ui_put(u, y, b.x + 2, b.w - 4, ROLE_DIM,
		       !strcmp(r->state, "queued") ? "no log yet: the job waits for the worker"
						   : "no log file for this job", false);
		return;
	}
	int n = (int)js->n_log_lines;
	int first = js->follow ? n - rows : js->log_scroll;
	if (first > n - rows)
		first = n - rows;
	if (first < 0)
		first = 0;
	js->log_scroll = first;
	for (int i = 0; i < rows && first + i < n; i++)
		ui_put(u, y + i, b.x + 2, b.w - 4, ROLE_TEXT, js->log_lines[first + i], false);
}

static void jobs_draw(void *state, ui *u, ui_rect r)
{
	jobs_screen *js = state;
	int list_h = js->zoom ? 6 : (int)js->n_view + 3;
	int max_list = js->zoom ? 6 : r.h * 3 / 5;
	if (list_h > max_list)
		list_h = max_list;
	if (list_h < 5)
		list_h = 5;
	ui_rect list = {r.y, r.x, list_h, r.w};
	char title[64], right[300];
	snprintf(title, sizeof title, "Jobs %zu", js->n_view);
	if (js->filter[0])
		snprintf(right, sizeof right, "/ %s · %zu of %zu", js->filter, js->n_view, js->n_rows);
	else
		snprintf(right, sizeof right, "/ filter");
	ui_box(u, list, title, right);
	int inner = list.w - 4;
	int flex = inner - (W_ID + W_STATE + W_STAGE + W_PROGRESS + W_ETA + 6 * 2);
	if (flex < 12)
		flex = 12;
	int w_model = (flex + 1) / 2, w_recipe = flex - w_model;
	draw_header(u, list.y + 1, list.x + 2, w_model, w_recipe);
	js->list_y0 = list.y + 2;
	js->list_rows = list.h - 3;
	if (js->sel < js->top)
		js->top = js->sel;
	if (js->list_rows > 0 && js->sel >= js->top + (size_t)js->list_rows)
		js->top = js->sel - (size_t)js->list_rows + 1;
	for (int i = 0; i < js->list_rows && js->top + (size_t)i < js->n_view; i++) {
		size_t vi = js->top + (size_t)i;
		draw_job(u, js->list_y0 + i, list.x + 2, inner, w_model, w_recipe,
			 &js->rows[js->view[vi]], vi == js->sel);
	}
	if (!js->n_view)
		ui_put(u, js->list_y0, list.x + 2, inner, ROLE_DIM,
		       js->n_rows ? "no job matches the filter (Esc clears it)"
				  : "no jobs yet: 'optstudio optimize MODEL --quantize int8' queues one",
		       false);
	draw_log(js, u, (ui_rect){r.y + list_h, r.x, r.h - list_h, r.w});
}

/* ---- actions ---------------------------------------------------------------------------------- */

static void move_sel(jobs_screen *js, long d)
{
	if (!js->n_view)
		return;
	long s = (long)js->sel + d;
	if (s < 0)
		s = 0;
	if (s >= (long)js->n_view)
		s = (long)js->n_view - 1;
	js->sel = (size_t)s;
	js->sel_id = js->rows[js->view[js->sel]].id;
}

static void on_filter(void *state, ui *u, const char *text, int event)
{
	jobs_screen *js = state;
	snprintf(js->filter, sizeof js->filter, "%s", text);
	rebuild_view(js);
	js->top = 0;
}

static void do_stop(void *state, ui *u, int64_t id)
{
	os_error err = {0};
	char *after = NULL;
	if (store_job_request_stop(ui_store(u), id, &after, &err) != OS_OK)
		ui_status(u, true, "cannot stop job %lld: %s", (long long)id, os_error_text(&err));
	else
		ui_status(u, false, "job %lld: %s", (long long)id, after ? after : "stopping");
	free(after);
	ui_store_changed(u);
}

static void do_delete(void *state, ui *u, int64_t id)
{
	os_error err = {0};
	if (store_job_delete(ui_store(u), id, &err) != OS_OK) {
		ui_status(u, true, "cannot delete job %lld: %s", (long long)id, os_error_text(&err));
	} else {
		char path[4096];
		jobs_log_path(store_home(ui_store(u)), id, path, sizeof path);
		unlink(path);
		ui_status(u, false, "job %lld deleted", (long long)id);
	}
	ui_store_changed(u);
}

static void do_retry(jobs_screen *js, ui *u, int64_t id)
{
	os_error err = {0};
	store *s = ui_store(u);
	if (store_job_retry(s, id, &err) != OS_OK) {
		ui_status(u, true, "cannot retry job %lld: %s", (long long)id, os_error_text(&err));
	} else if (jobs_ensure_worker(store_home(s), ui_exe(u), NULL, &err) != OS_OK) {
		ui_status(u, true, "job %lld is queued again, but the worker did not start: %s",
			  (long long)id, os_error_text(&err));
	} else {
		ui_status(u, false, "job %lld queued again", (long long)id);
	}
	ui_store_changed(u);
}

static void jobs_action(void *state, ui *u, int action)
{
	jobs_screen *js = state;
	const job_row *r = selected(js);
	char q[256];
	switch (action) {
	case J_UP: move_sel(js, -1); break;
	case J_DOWN: move_sel(js, 1); break;
	case J_HOME: move_sel(js, -(long)js->n_view); break;
	case J_END: move_sel(js, (long)js->n_view); break;
	case J_ZOOM: js->zoom = !js->zoom; break;
	case J_BACK:
		if (js->filter[0])
			on_filter(js, u, "", UI_PROMPT_CANCEL);
		js->zoom = false;
		break;
	case J_FOLLOW: js->follow = !js->follow; break;
	case J_LOG_UP:
		js->follow = false;
		js->log_scroll -= js->log_rows > 2 ? js->log_rows - 1 : 1;
		break;
	case J_LOG_DOWN:
		js->log_scroll += js->log_rows > 2 ? js->log_rows - 1 : 1;
		if (js->log_scroll + js->log_rows >= (int)js->n_log_lines)
			js->follow = true;
		break;
	case J_FILTER: ui_prompt(u, "/", js->filter, on_filter, js); break;
	case J_STOP:
		snprintf(q, sizeof q, "Stop job %lld (%s, %s)?", (long long)r->id, r->state, r->model);
		ui_confirm(u, q, do_stop, js, r->id);
		break;
	case J_DELETE:
		snprintf(q, sizeof q, "Delete job %lld (%s) and its log?", (long long)r->id, r->state);
		ui_confirm(u, q, do_delete, js, r->id);
		break;
	case J_RETRY: do_retry(js, u, r->id); break;
	default: break;
	}
}

static bool jobs_disabled(void *state, int action, char *why, size_t len)
{
	jobs_screen *js = state;
	const job_row *r = selected(js);
	if (action != J_STOP && action != J_RETRY && action != J_DELETE)
		return false;
	if (!r) {
		snprintf(why, len, "no job selected");
		return true;
	}
	bool live = !strcmp(r->state, "running") || !strcmp(r->state, "stopping");
	if (action == J_STOP && strcmp(r->state, "running") && strcmp(r->state, "queued")) {
		snprintf(why, len, "job %lld is %s; there is nothing to stop", (long long)r->id, r->state);
		return true;
	}
	if (action == J_RETRY && strcmp(r->state, "failed") && strcmp(r->state, "stopped")) {
		snprintf(why, len, "job %lld is %s; only failed or stopped jobs can be retried",
			 (long long)r->id, r->state);
		return true;
	}
	if (action == J_DELETE && live) {
		snprintf(why, len, "job %lld is %s; stop it first (x)", (long long)r->id, r->state);
		return true;
	}
	return false;
}

static void jobs_click(void *state, ui *u, int y, int x, bool dbl, ui_rect r)
{
	jobs_screen *js = state;
	int i = y - js->list_y0;
	if (i >= 0 && i < js->list_rows && js->top + (size_t)i < js->n_view) {
		js->sel = js->top + (size_t)i;
		js->sel_id = js->rows[js->view[js->sel]].id;
		if (dbl)
			js->zoom = !js->zoom;
	}
}

static void jobs_destroy(void *state)
{
	jobs_screen *js = state;
	if (!js)
		return;
	log_clear(js);
	free(js->rows);
	free(js->view);
	free(js);
}

int screen_jobs_new(ui_screen *out, os_error *err)
{
	jobs_screen *js = calloc(1, sizeof *js);
	if (!js)
		return os_error_set(err, OS_ENOMEM, "out of memory");
	js->follow = true;
	js->log_size = -1;
	*out = (ui_screen){
		.title = "Jobs",
		.number = 3,
		.keys = jobs_keys,
		.n_keys = sizeof jobs_keys / sizeof jobs_keys[0],
		.state = js,
		.draw = jobs_draw,
		.on_action = jobs_action,
		.on_refresh = jobs_refresh,
		.on_tick = jobs_tick,
		.on_click = jobs_click,
		.disabled = jobs_disabled,
		.destroy = jobs_destroy,
	};
	return OS_OK;
}
