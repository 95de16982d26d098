/* wizard_draft.c: the wizard's ④ Draft step: recommended, from the hub, a custom file or
 * prompt lookup, and k. */
#include <stdio.h>
#include <string.h>

#include "wizard_screen.h"

void wz_rows_draft(opt_screen *o)
{
	const wiz_settings *w = &o->w;
	char head[512];
	SETF(head, "Draft model for %s%s", w->model, o->target_vocab);
	wz_row_add(o, R_HEAD, RID_NONE, 0, head);
	wrow *r = wz_row_add(o, R_RADIO, RID_DRAFT, WD_RECOMMENDED, "Recommended");
	if (r) {
		r->on = w->draft == WD_RECOMMENDED;
		if (o->rec_error[0]) {
			SETF(r->detail, "✗ %s", o->rec_error);
			r->detail_role = ROLE_BAD;
			SETF(r->hint, "No recommendation: %s", o->rec_error);
		} else {
			SETF(r->detail, "%s", o->rec_label);
			r->detail_role = ROLE_GOOD;
			SETF(r->hint, "%s — why: %s", o->rec_label, o->rec_reason[0] ? o->rec_reason : "—");
		}
	}
	r = wz_row_add(o, R_RADIO, RID_DRAFT, WD_HUB, "From hub");
	if (r) {
		r->on = w->draft == WD_HUB;
		r->off = !o->n_compat;
		if (!o->n_compat)
			SETF(r->detail, "no other hub model shares this tokenizer");
		else if (w->draft == WD_HUB && w->hub_draft[0])
			SETF(r->detail, "%s ✓ · ␣ lists %zu compatible", w->hub_draft, o->n_compat);
		else
			SETF(r->detail, "%zu compatible model%s ▸", o->n_compat, o->n_compat == 1 ? "" : "s");
		SETF(r->hint, "A hub model as the draft. Only models with the target's tokenizer "
		     "(same vocabulary and hash) can draft, so only those are listed; smaller is "
		     "cheaper per guess. ␣ opens the list.");
	}
	r = wz_row_add(o, R_RADIO, RID_DRAFT, WD_CUSTOM, "Custom file");
	if (r) {
		r->on = w->draft == WD_CUSTOM;
		if (w->text[WF_DRAFT_PATH][0] && w->error[WF_DRAFT_PATH][0]) {
			SETF(r->detail, "✗ %s", w->error[WF_DRAFT_PATH]);
			r->detail_role = ROLE_BAD;
		} else if (w->text[WF_DRAFT_PATH][0]) {
			SETF(r->detail, "%s", w->note[WF_DRAFT_PATH]);
			r->detail_role = ROLE_GOOD;
		} else {
			SETF(r->detail, "a GGUF file or Hugging Face folder, checked at once");
		}
		SETF(r->hint, "%s%s%s", w->text[WF_DRAFT_PATH][0] ? r->detail : "",
		     w->text[WF_DRAFT_PATH][0] ? " — " : "", wz_field_hints[WF_DRAFT_PATH]);
	}
	wz_add_field(o, WF_DRAFT_PATH, w->draft != WD_CUSTOM);
	r = wz_row_add(o, R_RADIO, RID_DRAFT, WD_NGRAM, "Prompt lookup");
	if (r) {
		r->on = w->draft == WD_NGRAM;
		SETF(r->detail, "n-gram, no draft model");
		SETF(r->hint, "Proposes tokens by finding the latest words earlier in the prompt and "
		     "copying what followed: no second model, no memory. Shines when answers repeat "
		     "the input (summaries, code edits, retrieval).");
	}
	wz_add_field(o, WF_K, false);
}
