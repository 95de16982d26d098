/* models.c: the models table (the hub) and the drafts table. Columns are described once,
 * in MODEL_COLUMNS, and both SQL and struct copying are driven from that list. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_internal.h"

enum { T_TEXT, T_I64, T_FK, T_BOOL }; /* T_FK: int64, 0 <-> NULL; T_BOOL: int 0/1 */

/* (column, type) in SELECT order after id; each column is the store_model field of the
 * same name. */
#define MODEL_COLUMNS(X)                                                                      \
	X(name, T_TEXT) X(path, T_TEXT) X(source_path, T_TEXT) X(owned_by_studio, T_BOOL)     \
	X(format, T_TEXT) X(architecture, T_TEXT) X(n_params, T_I64) X(context_length, T_I64) \
	X(n_layers, T_I64) X(n_heads, T_I64) X(n_kv_heads, T_I64) X(hidden_size, T_I64)       \
	X(ffn_size, T_I64) X(vocab_size, T_I64) X(tokenizer_kind, T_TEXT)                     \
	X(vocab_hash, T_TEXT) X(precision, T_TEXT) X(file_size, T_I64) X(sha256, T_TEXT)      \
	X(license, T_TEXT) X(parent_model_id, T_FK) X(recipe, T_TEXT) X(created_at, T_I64)

#define COL_DESC(n, t) {#n, t, offsetof(store_model, n)},
#define COL_SQL(n, t) ", " #n
#define COL_QMARK(n, t) ", ?"

static const struct column {
	const char *name;
	int type;
	size_t offset;
} model_columns[] = {MODEL_COLUMNS(COL_DESC)};
#define N_COLUMNS (sizeof model_columns / sizeof model_columns[0])

#define SELECT_MODEL "SELECT id" MODEL_COLUMNS(COL_SQL) " FROM models "
/* NULL in the id slot lets SQLite pick the rowid; the other N_COLUMNS are bound in order */
#define INSERT_MODEL "INSERT INTO models (id" MODEL_COLUMNS(COL_SQL) ") VALUES (NULL" \
	MODEL_COLUMNS(COL_QMARK) ")"

void store_model_clear(store_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < N_COLUMNS; i++)
		if (model_columns[i].type == T_TEXT)
			free(*(char **)((char *)m + model_columns[i].offset));
	memset(m, 0, sizeof *m);
}

void store_model_list_free(store_model *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		store_model_clear(&v[i]);
	free(v);
}

/* Fills *m (assumed zeroed) from the current row of a SELECT_MODEL statement. On failure
 * *m is cleared. */
static int row_to_model(sqlite3_stmt *st, store_model *m, os_error *err)
{
	m->id = sqlite3_column_int64(st, 0);
	for (size_t i = 0; i < N_COLUMNS; i++) {
		const struct column *c = &model_columns[i];
		void *field = (char *)m + c->offset;
		int col = (int)i + 1;
		switch (c->type) {
		case T_TEXT:
			if (store_column_strdup(st, col, (char **)field, err)) {
				store_model_clear(m);
				return OS_ENOMEM;
			}
			break;
		case T_BOOL:
			*(int *)field = sqlite3_column_int(st, col) != 0;
			break;
		default: /* T_I64, T_FK: NULL reads as 0 */
			*(int64_t *)field = sqlite3_column_int64(st, col);
			break;
		}
	}
	return OS_OK;
}

/* Runs a prepared SELECT_MODEL statement to completion into a malloc'd array. Takes
 * ownership of st (finalizes it). */
static int collect_models(store *s, sqlite3_stmt *st, store_model **out, size_t *n, os_error *err)
{
	store_model *v = NULL;
	size_t len = 0, cap = 0;
	int rc = OS_OK, step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = store_grow_rows(&v, len, &cap, sizeof *v, "listing models", err)))
			goto fail;
		memset(&v[len], 0, sizeof v[len]);
		if ((rc = row_to_model(st, &v[len], err)))
			goto fail;
		len++;
	}
	if (step != SQLITE_DONE) {
		rc = store_db_fail(s, err, "list models");
		goto fail;
	}
	sqlite3_finalize(st);
	*out = v;
	*n = len;
	return OS_OK;
fail:
	sqlite3_finalize(st);
	store_model_list_free(v, len);
	return rc;
}

/* One row by a bound key: name (text) when name != NULL, else id. OS_ENOTFOUND if absent. */
static int get_one(store *s, const char *name, int64_t id, store_model *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, name ? SELECT_MODEL "WHERE name = ?1" : SELECT_MODEL "WHERE id = ?1",
			       &st, err);
	if (rc)
		return rc;
	if (name)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_int64(st, 1, id);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = row_to_model(st, out, err);
	else if (step == SQLITE_DONE)
		rc = name ? os_error_set(err, OS_ENOTFOUND, "no model named '%s' in the hub", name)
			  : os_error_set(err, OS_ENOTFOUND, "no model with id %lld in the hub",
					 (long long)id);
	else
		rc = store_db_fail(s, err, "read model");
	sqlite3_finalize(st);
	return rc;
}

int store_model_get(store *s, const char *name, store_model *out, os_error *err)
{
	if (!name)
		return os_error_set(err, OS_EUSAGE, "no model name given");
	return get_one(s, name, 0, out, err);
}

int store_model_get_by_id(store *s, int64_t id, store_model *out, os_error *err)
{
	return get_one(s, NULL, id, out, err);
}

int store_model_list(store *s, store_model **out, size_t *n, os_error *err)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_MODEL "ORDER BY name", &st, err);
	return rc ? rc : collect_models(s, st, out, n, err);
}

int store_model_list_by_vocab(store *s, const char *vocab_hash, store_model **out, size_t *n,
			      os_error *err)
{
	*out = NULL;
	*n = 0;
	if (!vocab_hash || !*vocab_hash)
		return os_error_set(err, OS_EUSAGE, "no vocabulary hash given");
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, SELECT_MODEL "WHERE vocab_hash = ?1 ORDER BY n_params, name", &st,
			       err);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, vocab_hash, -1, SQLITE_TRANSIENT);
	return collect_models(s, st, out, n, err);
}

/* Checks what the schema would refuse, so the caller gets a message naming the field. */
static int validate_model(const store_model *m, os_error *err)
{
	if (!m->name || !*m->name)
		return os_error_set(err, OS_EUSAGE, "a model needs a name");
	if (!m->path || !*m->path)
		return os_error_set(err, OS_EUSAGE, "model '%s': no path", m->name);
	if (!m->format || (strcmp(m->format, "gguf") != 0 && strcmp(m->format, "safetensors") != 0))
		return os_error_set(err, OS_EUSAGE,
				    "model '%s': format '%s' (expected gguf or safetensors)", m->name,
				    m->format ? m->format : "(none)");
	for (size_t i = 0; i < N_COLUMNS; i++) {
		const struct column *c = &model_columns[i];
		if (c->type != T_I64 || strcmp(c->name, "created_at") == 0)
			continue;
		int64_t v = *(const int64_t *)((const char *)m + c->offset);
		if (v < 0)
			return os_error_set(err, OS_ERANGE, "model '%s': %s = %lld (expected >= 0)",
					    m->name, c->name, (long long)v);
	}
	if (m->parent_model_id < 0)
		return os_error_set(err, OS_ERANGE, "model '%s': parent_model_id = %lld", m->name,
				    (long long)m->parent_model_id);
	return OS_OK;
}

static int bind_model(sqlite3_stmt *st, const store_model *m)
{
	for (size_t i = 0; i < N_COLUMNS; i++) {
		const struct column *c = &model_columns[i];
		const void *field = (const char *)m + c->offset;
		int idx = (int)i + 1, r;
		switch (c->type) {
		case T_TEXT:
			r = store_bind_text(st, idx, *(char *const *)field);
			break;
		case T_BOOL:
			r = sqlite3_bind_int(st, idx, *(const int *)field != 0);
			break;
		case T_FK: {
			int64_t v = *(const int64_t *)field;
			r = v ? sqlite3_bind_int64(st, idx, v) : sqlite3_bind_null(st, idx);
			break;
		}
		default:
			r = sqlite3_bind_int64(st, idx, *(const int64_t *)field);
			break;
		}
		if (r != SQLITE_OK)
			return r;
	}
	return SQLITE_OK;
}

/* Looks up the row with the same (sha256, path): *found = its id or 0. */
static int find_same_file(store *s, const store_model *m, int64_t *found, os_error *err)
{
	*found = 0;
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, "SELECT id FROM models WHERE sha256 IS ?1 AND path = ?2", &st, err);
	if (rc)
		return rc;
	store_bind_text(st, 1, m->sha256);
	store_bind_text(st, 2, m->path);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		*found = sqlite3_column_int64(st, 0);
	else if (step != SQLITE_DONE)
		rc = store_db_fail(s, err, "look up model file");
	sqlite3_finalize(st);
	return rc;
}

int store_model_insert(store *s, const store_model *m, store_model *out, int *existed,
		       os_error *err)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (existed)
		*existed = 0;
	int rc = validate_model(m, err);
	if (rc)
		return rc;
	if ((rc = store_tx_begin(s, err)))
		return rc;

	int64_t id = 0;
	if ((rc = find_same_file(s, m, &id, err)))
		goto fail;
	if (id) {
		if (existed)
			*existed = 1;
	} else {
		store_model holder = {0};
		os_error get_err = {0};
		rc = store_model_get(s, m->name, &holder, &get_err);
		if (rc == OS_OK) {
			rc = os_error_set(err, OS_EEXISTS,
					  "a model named '%s' is already in the hub (%s); pick another name",
					  m->name, holder.path);
			store_model_clear(&holder);
			goto fail;
		}
		if (rc != OS_ENOTFOUND) {
			if (err)
				*err = get_err;
			goto fail;
		}

		store_model row = *m; /* shallow: only read by bind_model */
		row.created_at = (int64_t)time(NULL);
		sqlite3_stmt *st = NULL;
		if ((rc = store_prepare(s, INSERT_MODEL, &st, err)))
			goto fail;
		int step = bind_model(st, &row);
		if (step == SQLITE_OK)
			step = sqlite3_step(st);
		if (step != SQLITE_DONE) {
			int ext = sqlite3_extended_errcode(s->db);
			if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
				rc = os_error_set(err, OS_ENOTFOUND,
						  "model '%s': parent model id %lld is not in the hub",
						  m->name, (long long)m->parent_model_id);
			else if ((ext & 0xff) == SQLITE_CONSTRAINT)
				rc = os_error_set(err, OS_EUSAGE, "model '%s' refused by the hub: %s",
						  m->name, sqlite3_errmsg(s->db));
			else
				rc = store_db_fail(s, err, "insert model");
			sqlite3_finalize(st);
			goto fail;
		}
		sqlite3_finalize(st);
		id = sqlite3_last_insert_rowid(s->db);
	}
	if (out && (rc = store_model_get_by_id(s, id, out, err)))
		goto fail;
	if ((rc = store_tx_commit(s, err))) {
		if (out)
			store_model_clear(out);
		return rc;
	}
	return OS_OK;
fail:
	store_tx_rollback(s);
	if (out)
		store_model_clear(out);
	if (existed)
		*existed = 0;
	return rc;
}

int store_model_delete(store *s, const char *name, store_model *deleted, os_error *err)
{
	if (deleted)
		memset(deleted, 0, sizeof *deleted);
	if (!name)
		return os_error_set(err, OS_EUSAGE, "no model name given");
	int rc = store_tx_begin(s, err);
	if (rc)
		return rc;
	store_model row = {0};
	sqlite3_stmt *st = NULL;
	if ((rc = store_model_get(s, name, &row, err)))
		goto fail;
	if ((rc = store_prepare(s, "DELETE FROM models WHERE id = ?1", &st, err)))
		goto fail;
	sqlite3_bind_int64(st, 1, row.id);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = store_db_fail(s, err, "delete model");
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((rc = store_tx_commit(s, err)))
		goto fail_committed;
	if (deleted)
		*deleted = row;
	else
		store_model_clear(&row);
	return OS_OK;
fail:
	sqlite3_finalize(st);
	store_tx_rollback(s);
fail_committed:
	store_model_clear(&row);
	return rc;
}

int store_draft_set(store *s, int64_t target_id, int64_t draft_id, int kind, os_error *err)
{
	if (kind != STORE_DRAFT_RECOMMENDED && kind != STORE_DRAFT_USER)
		return os_error_set(err, OS_EUSAGE, "draft kind %d (expected recommended or user)",
				    kind);
	if (target_id == draft_id)
		return os_error_set(err, OS_EUSAGE, "a model cannot be its own draft (id %lld)",
				    (long long)target_id);
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "INSERT INTO drafts (target_id, draft_id, kind, created_at) "
			       "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (target_id, draft_id) "
			       "DO UPDATE SET kind = excluded.kind",
			       &st, err);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, target_id);
	sqlite3_bind_int64(st, 2, draft_id);
	sqlite3_bind_text(st, 3, kind == STORE_DRAFT_USER ? "user" : "recommended", -1,
			  SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
			rc = os_error_set(err, OS_ENOTFOUND,
					  "draft %lld -> %lld: no such model in the hub",
					  (long long)target_id, (long long)draft_id);
		else
			rc = store_db_fail(s, err, "record draft");
	}
	sqlite3_finalize(st);
	return rc;
}
