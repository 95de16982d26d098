/* wizard_review.c: what the wizard's choices make (the spec, its problems, canonical JSON and
 * command line), the ⑥ Review step that shows them, and launch through job_submit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/pipeline.h"
#include "wizard_screen.h"

/* ---- what the choices make ---------------------------------------------------------------- */

/* Why step s cannot be left forwards (a field with an error, a choice missing), or NULL. */
const char *wz_step_block(const opt_screen *o, int s, char *why, size_t len)
{
	const wiz_settings *w = &o->w;
	if (s == ST_MODEL && !w->model[0]) {
		snprintf(why, len, o->n_models ? "choose a model" : "the hub is empty: 'optstudio hub "
			 "import FILE.gguf' adds a model");
		return why;
	}
	for (int f = 0; f < WF_COUNT; f++)
		if (wz_field_step[f] == s && wiz_field_relevant(w, f) && w->error[f][0]) {
			snprintf(why, len, "%s: %s", wz_field_labels[f], w->error[f]);
			return why;
		}
	if (s == ST_DRAFT && w->spec) {
		if (w->draft == WD_HUB && !w->hub_draft[0]) {
			snprintf(why, len, "choose a hub model (␣ on From hub lists them)");
			return why;
		}
		if (w->draft == WD_RECOMMENDED && o->rec_error[0]) {
			snprintf(why, len, "no recommended draft: %s", o->rec_error);
			return why;
		}
	}
	if (s == ST_REVIEW && o->probs.n) {
		snprintf(why, len, "%zu problem%s: %s%s%s", o->probs.n, o->probs.n == 1 ? "" : "s",
			 o->probs.v[0].path, o->probs.v[0].path[0] ? ": " : "", o->probs.v[0].message);
		return why;
	}
	return NULL;
}

/* The spec of the choices, its problems (the wizard's own field errors first, then the
 * spec's validation as job_submit does it), canonical JSON and command line. */
void wz_update(opt_screen *o, ui *u)
{
	job_spec_free(o->spec);
	o->spec = NULL;
	free(o->json);
	o->json = NULL;
	wiz_cli_free(o->cli, o->n_cli);
	o->cli = NULL;
	o->n_cli = 0;
	o->n_plan = 0;
	job_problems_free(&o->probs);
	os_error err = {0};
	for (int f = 0; f < WF_COUNT; f++)
		if (wiz_field_relevant(&o->w, f) && o->w.error[f][0])
			job_problems_add(&o->probs, wiz_field_path(f), "%s", o->w.error[f]);
	if (o->w.spec && o->w.draft == WD_RECOMMENDED && o->rec_error[0])
		job_problems_add(&o->probs, "speculative_decoding.draft", "no recommended draft: %s",
				 o->rec_error);
	if (wiz_build_spec(&o->w, &o->spec, &err) != OS_OK) {
		job_problems_add(&o->probs, "", "%s", os_error_text(&err));
		return;
	}
	job_problems spec_probs = {0};
	job_submit_check(ui_store(u), o->spec, &spec_probs, NULL);
	for (size_t i = 0; i < spec_probs.n; i++) {
		bool dup = false;
		for (size_t j = 0; j < o->probs.n; j++)
			if (!strcmp(o->probs.v[j].path, spec_probs.v[i].path))
				dup = true;
		if (!dup)
			job_problems_add(&o->probs, spec_probs.v[i].path, "%s", spec_probs.v[i].message);
	}
	job_problems_free(&spec_probs);
	if (!o->probs.n && pipeline_plan(o->spec, o->plan, JOB_SUBMIT_MAX_STAGES, &o->n_plan, &err))
		job_problems_add(&o->probs, "", "%s", os_error_text(&err));
	o->json = job_spec_print(o->spec, true);
	o->cli = wiz_cli_words(o->spec, &o->n_cli);
}

void wz_launch(opt_screen *o, ui *u)
{
	wz_update(o, u);
	if (o->probs.n || !o->spec) {
		char why[512];
		ui_status(u, true, "launch: %s", wz_step_block(o, ST_REVIEW, why, sizeof why) ? why : "no spec");
		return;
	}
	char *canon = job_spec_print(o->spec, false);
	if (!canon) {
		ui_status(u, true, "out of memory");
		return;
	}
	job_submit_result res = {0};
	job_problems probs = {0};
	os_error err = {0};
	int rc = job_submit(ui_store(u), canon, strlen(canon), ui_exe(u), &res, &probs, &err);
	free(canon);
	if (rc && !res.job.id) {
		if (probs.n) {
			job_problems_free(&o->probs);
			o->probs = probs;
			memset(&probs, 0, sizeof probs);
		}
		ui_status(u, true, "cannot queue the job: %s", os_error_text(&err));
		goto done;
	}
	long long id = (long long)res.job.id;
	char plan[160] = "";
	size_t k = 0;
	for (size_t i = 0; i < res.n_plan && k < sizeof plan; i++)
		k += (size_t)snprintf(plan + k, sizeof plan - k, "%s%s", i ? " → " : "", res.plan[i]);
	wz_reset(o, u, NULL);
	ui_store_changed(u);
	ui_goto(u, "Jobs", NULL);
	if (rc)
		ui_status(u, true, "job %lld queued, but the worker did not start: %s", id,
			  os_error_text(&err));
	else
		ui_status(u, false, "job %lld queued: %s", id, plan);
done:
	job_problems_free(&probs);
	job_submit_result_clear(&res);
}

/* The command line, wrapped at words with a shell continuation at each line's end. */
static int draw_cli(opt_screen *o, ui *u, int y, int x, int w, int max, bool measure)
{
	if (!o->cli) {
		if (!measure)
			wz_put_wrapped(u, y, x, w, 2, ROLE_DIM, "the flags cannot say this spec: save the JSON "
				    "above as spec.json and run: optstudio optimize spec.json");
		return 2;
	}
	int lines = 0;
	char line[1024] = "";
	size_t len = 0;
	for (size_t i = 0; i < o->n_cli; i++) {
		const char *word = o->cli[i];
		int need = wz_cols(line, len) + (len ? 1 : 0) + wz_cols(word, strlen(word)) + 2;
		if (len && need > w) {
			if (!measure && lines < max) {
				snprintf(line + len, sizeof line - len, " \\");
				ui_put(u, y + lines, x + (lines ? 2 : 0), w, ROLE_ACCENT, line, false);
			}
			lines++;
			len = 0;
			line[0] = '\0';
		}
		len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", len ? " " : "", word);
		if (len >= sizeof line)
			len = sizeof line - 1;
	}
	if (len) {
		if (!measure && lines < max)
			ui_put(u, y + lines, x + (lines ? 2 : 0), w, ROLE_ACCENT, line, false);
		lines++;
	}
	return lines;
}

static int problem_step(const char *path)
{
	if (!strcmp(path, "model"))
		return ST_MODEL;
	if (!strcmp(path, "name"))
		return ST_EVAL;
	if (!strcmp(path, "quantization.method") || !strcmp(path, "quantization.kv_cache") ||
	    !strcmp(path, "speculative_decoding"))
		return ST_TECH;
	if (!strncmp(path, "quantization", 12))
		return ST_OPTIONS;
	if (!strncmp(path, "speculative_decoding", 20))
		return ST_DRAFT;
	if (!strncmp(path, "evaluation", 10))
		return ST_EVAL;
	return -1;
}

void wz_draw_review(opt_screen *o, ui *u, ui_rect r, int y)
{
	int x = r.x + 2, w = r.w - 4, bottom = r.y + r.h;
	if (o->probs.n) {
		char t[160];
		snprintf(t, sizeof t, "✗ %zu problem%s: launch is off until %s fixed (← goes back)",
			 o->probs.n, o->probs.n == 1 ? "" : "s", o->probs.n == 1 ? "it is" : "they are");
		ui_put(u, y++, x, w, ROLE_BAD, t, false);
		size_t shown = o->probs.n > 4 ? 3 : o->probs.n;
		for (size_t i = 0; i < shown; i++) {
			const job_problem *p = &o->probs.v[i];
			char line[700];
			int s = problem_step(p->path);
			snprintf(line, sizeof line, "%s %s%s%s", s >= 0 ? wz_step_marks[s] : "·", p->path,
				 p->path[0] ? ": " : "", p->message);
			ui_put(u, y++, x + 2, w - 2, ROLE_BAD, line, false);
		}
		if (shown < o->probs.n) {
			char more[64];
			snprintf(more, sizeof more, "… and %zu more", o->probs.n - shown);
			ui_put(u, y++, x + 2, w - 2, ROLE_BAD, more, false);
		}
	} else {
		char t[256] = "✓ ready: ";
		size_t k = strlen(t);
		for (size_t i = 0; i < o->n_plan && k < sizeof t; i++)
			k += (size_t)snprintf(t + k, sizeof t - k, "%s%s", i ? " → " : "", o->plan[i]);
		if (k < sizeof t)
			snprintf(t + k, sizeof t - k, " · ⏎ launches");
		ui_put(u, y++, x, w, ROLE_GOOD, t, false);
	}
	int cli_lines = draw_cli(o, u, 0, 0, w - 2, 99, true);
	int cli_y = bottom - cli_lines;
	int box_h = cli_y - 1 - y;
	if (box_h >= 3) {
		ui_rect b = {y, r.x, box_h, r.w};
		ui_box(u, b, "Job spec (canonical JSON)", "↑↓ scroll");
		int rows = box_h - 2, n = 0, start = 0;
		const char *p = o->json ? o->json : "";
		for (const char *q = p; *q; q++)
			n += *q == '\n';
		n++;
		if (o->review_scroll > n - rows)
			o->review_scroll = n - rows > 0 ? n - rows : 0;
		start = o->review_scroll;
		int line = 0, shown = 0;
		while (*p && shown < rows) {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			if (line >= start) {
				char buf[1024];
				size_t k = 0;
				bool lead = true; /* cJSON indents with tabs and puts one after ':' */
				for (size_t i = 0; i < len && k + 3 < sizeof buf; i++) {
					if (p[i] == '\t') {
						buf[k++] = ' ';
						if (lead)
							buf[k++] = ' ';
					} else {
						lead = false;
						buf[k++] = p[i];
					}
				}
				buf[k] = '\0';
				ui_put(u, b.y + 1 + shown, b.x + 2, b.w - 4, ROLE_TEXT, buf, false);
				shown++;
			}
			line++;
			p += len + (e ? 1 : 0);
			if (!e)
				break;
		}
	}
	ui_put(u, cli_y - 1, x, w, ROLE_DIM, "Same from the command line:", false);
	draw_cli(o, u, cli_y, x + 2, w - 2, cli_lines, false);
}
