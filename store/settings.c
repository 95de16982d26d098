/* settings.c: the settings table, string key = string value. */
#include <string.h>

#include "store_internal.h"

int store_setting_get(store *s, const char *key, char **value, os_error *err)
{
	*value = NULL;
	if (!key || !*key)
		return os_error_set(err, OS_EUSAGE, "empty setting name");
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s, "SELECT value FROM settings WHERE key = ?1", &st, err);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		rc = store_column_strdup(st, 0, value, err);
	else if (step == SQLITE_DONE)
		rc = os_error_set(err, OS_ENOTFOUND, "no setting '%s'", key);
	else
		rc = store_db_fail(s, err, "read setting");
	sqlite3_finalize(st);
	return rc;
}

int store_setting_set(store *s, const char *key, const char *value, os_error *err)
{
	if (!key || !*key)
		return os_error_set(err, OS_EUSAGE, "empty setting name");
	if (!value)
		return os_error_set(err, OS_EUSAGE, "setting '%s': no value", key);
	sqlite3_stmt *st = NULL;
	int rc = store_prepare(s,
			       "INSERT INTO settings (key, value) VALUES (?1, ?2) "
			       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			       &st, err);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = store_db_fail(s, err, "write setting");
	sqlite3_finalize(st);
	return rc;
}
