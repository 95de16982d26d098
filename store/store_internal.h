/* store_internal.h: what the .c files of store/ share and nobody else includes: the store
 * struct, SQLite error translation, and small statement helpers. */
#ifndef OPTSTUDIO_STORE_INTERNAL_H
#define OPTSTUDIO_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

/* Invariant: db is open with foreign keys on and busy timeout set; tx_depth counts the
 * open store_tx_begin calls (0 = autocommit). home and db_path are owned. */
struct store {
	sqlite3 *db;
	char *home;    /* as given to store_open */
	char *db_path; /* <home>/hub.db */
	int tx_depth;
};

/* Translates the connection's last SQLite error into err and returns the rc:
 * OS_EBUSY for a lock held too long, OS_EDB (with the path and a "move it aside" hint) for
 * a damaged file, OS_EIO for read-only / cannot-open, OS_EDB otherwise. what names the
 * operation ("insert model 'x'"). */
int store_db_fail(store *s, os_error *err, const char *what);

/* Same, for a SQLite result code rc that did not come from the connection's state. */
int store_db_fail_rc(store *s, int sqlite_rc, os_error *err, const char *what);

/* Prepares sql on s (OS_EDB with SQLite's message on failure). */
int store_prepare(store *s, const char *sql, sqlite3_stmt **st, os_error *err);

/* Runs one or more statements that return no rows. */
int store_exec(store *s, const char *sql, os_error *err);

/* Binds a possibly NULL string as TEXT or NULL. Returns a SQLite rc. */
int store_bind_text(sqlite3_stmt *st, int idx, const char *v);

/* *dst = malloc'd copy of column col's text, NULL for SQL NULL. OS_ENOMEM on failure. */
int store_column_strdup(sqlite3_stmt *st, int col, char **dst, os_error *err);

/* Makes room for element len of a growing array of rows: when len == *cap, doubles the
 * array (16 at first) whose pointer is at array_ptr (any T **; elem = sizeof (T)). On
 * failure the array is left as it was and OS_ENOMEM names what was being read ("listing
 * models"). */
int store_grow_rows(void *array_ptr, size_t len, size_t *cap, size_t elem, const char *what,
		    os_error *err);

/* Seeds the instance catalog from the embedded JSON when the table is empty, and makes sure
 * the local row exists. Runs its own transaction. Called by store_open. */
int store_instances_seed(store *s, os_error *err);

#endif
