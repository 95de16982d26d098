/* wizard_model.c: the wizard's ① Model step and the chosen model's target data: its file,
 * context, the hub models that can draft for it and the recommended draft. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/draft_resolve.h"
#include "hub_ops.h"
#include "wizard_screen.h"

void wz_rows_model(opt_screen *o)
{
	wz_row_add(o, R_HEAD, RID_NONE, 0, "Models in the hub (the one under the cursor is chosen)");
	if (!o->n_models)
		wz_row_add(o, R_TEXT, RID_NONE, 0, "the hub is empty: 'optstudio hub import FILE.gguf' "
						"adds a model");
	for (size_t i = 0; i < o->n_models; i++) {
		const store_model *m = &o->models[i];
		wrow *r = wz_row_add(o, R_RADIO, RID_MODEL, (int)i, m->name);
		if (!r)
			return;
		char p[32], sz[32];
		hub_format_params(m->n_params, p, sizeof p);
		hub_format_bytes(m->file_size, sz, sizeof sz);
		r->on = !strcmp(m->name, o->w.model);
		SETF(r->detail, "%s · %s params · %s · %s", m->architecture ? m->architecture : "—", p,
		     m->precision ? m->precision : "—", sz);
		SETF(r->hint, "%s · %lld layers · hidden %lld · %lld heads / %lld KV · vocab %lld (%s) · "
		     "context %lld tokens · %s", m->architecture ? m->architecture : "—",
		     (long long)m->n_layers, (long long)m->hidden_size, (long long)m->n_heads,
		     (long long)m->n_kv_heads, (long long)m->vocab_size,
		     m->tokenizer_kind ? m->tokenizer_kind : "—", (long long)m->context_length,
		     m->path ? m->path : "");
	}
}

void wz_check_all(opt_screen *o)
{
	for (int f = 0; f < WF_COUNT; f++)
		wiz_field_check(&o->w, f, o->home);
}

/* The chosen model's file, context, compatible drafts and recommendation. */
void wz_load_target(opt_screen *o, ui *u)
{
	wiz_settings *w = &o->w;
	free(o->compat);
	o->compat = NULL;
	o->n_compat = 0;
	o->rec_label[0] = o->rec_reason[0] = o->rec_error[0] = o->target_vocab[0] = '\0';
	const store_model *m = wz_find_model(o, w->model);
	w->model_path[0] = '\0';
	w->model_ctx = 0;
	if (!m)
		return;
	SETF(w->model_path, "%s", m->path ? m->path : "");
	w->model_ctx = m->context_length;
	SETF(o->target_vocab, " (vocab %lld · %.6s…)", (long long)m->vocab_size,
	     m->vocab_hash ? m->vocab_hash : "");
	store_model *v = NULL;
	size_t n = 0;
	if (m->vocab_hash && store_model_list_by_vocab(ui_store(u), m->vocab_hash, &v, &n, NULL) == OS_OK) {
		o->compat = n ? calloc(n, sizeof *o->compat) : NULL;
		for (size_t i = 0; o->compat && i < n; i++) {
			if (v[i].id == m->id)
				continue;
			pick_item *it = &o->compat[o->n_compat++];
			char p[32];
			hub_format_params(v[i].n_params, p, sizeof p);
			SETF(it->name, "%s", v[i].name);
			SETF(it->detail, "%s params · %s%s", p, v[i].precision ? v[i].precision : "—",
			     v[i].n_params < m->n_params ? " · smaller" : "");
		}
		store_model_list_free(v, n);
	}
	if (w->draft == WD_HUB) {
		bool still = false;
		for (size_t i = 0; i < o->n_compat; i++)
			still |= !strcmp(o->compat[i].name, w->hub_draft);
		if (!still)
			w->hub_draft[0] = '\0';
	}
	if (w->baseline[0]) { /* a baseline must share the tokenizer too */
		bool still = false;
		for (size_t i = 0; i < o->n_compat; i++)
			still |= !strcmp(o->compat[i].name, w->baseline);
		if (!still)
			w->baseline[0] = '\0';
	}
	draft_spec d;
	memset(&d, 0, sizeof d);
	os_error err = {0};
	if (w->model_path[0] && draft_resolve_recommend(ui_store(u), w->model_path, &d, &err) == OS_OK) {
		SETF(o->rec_label, "%s", d.label);
		SETF(o->rec_reason, "%s", d.reason);
		draft_spec_clear(&d);
	} else {
		SETF(o->rec_error, "%s", os_error_text(&err));
	}
	wiz_field_check(w, WF_DRAFT_PATH, o->home);
	wiz_field_check(w, WF_SEQ_LEN, o->home);
}

void wz_set_model(opt_screen *o, ui *u, const char *name)
{
	if (!strcmp(o->w.model, name))
		return;
	SETF(o->w.model, "%s", name);
	wz_load_target(o, u);
}

void wz_reset(opt_screen *o, ui *u, const char *name)
{
	char keep[WIZ_TEXT];
	SETF(keep, "%s", name ? name : o->w.model);
	wiz_settings_init(&o->w);
	o->step = o->max_step = ST_MODEL;
	o->changed = false;
	memset(o->cursor, 0, sizeof o->cursor);
	o->top = o->review_scroll = 0;
	o->pick = PK_NONE;
	wz_check_all(o);
	if (wz_find_model(o, keep))
		wz_set_model(o, u, keep);
	else if (o->n_models)
		wz_set_model(o, u, o->models[0].name);
	else
		wz_load_target(o, u);
}
