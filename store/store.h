/* store.h: the studio's persistent state: the data home on disk and hub.db (SQLite, WAL,
 * foreign keys on, migrations by PRAGMA user_version). The one place that knows SQL. */
#ifndef OPTSTUDIO_STORE_H
#define OPTSTUDIO_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

/* The schema version this build creates and understands. A hub.db whose user_version is
 * newer is refused with OS_EUNSUPPORTED; an older one is migrated on open. */
#define STORE_SCHEMA_VERSION 1

/* ---- data home ------------------------------------------------------------------------ */

/* Writes the data home path into buf (len bytes): $OPTSTUDIO_HOME if set and non-empty,
 * else $XDG_DATA_HOME/optstudio, else $HOME/.local/share/optstudio. Creates nothing.
 * OS_ERANGE if buf is too small, OS_ENOTFOUND if none of the variables is set. */
int store_home_resolve(char *buf, size_t len, os_error *err);

/* Creates home (and its parents) if missing, with the subfolders models/ artifacts/ logs/
 * text/, and checks that home is writable. Idempotent. On failure OS_EIO with a message
 * such as "cannot create data home '/x': Permission denied; set OPTSTUDIO_HOME to a
 * writable folder". store_open calls this itself. */
int store_home_create(const char *home, os_error *err);

/* ---- opening -------------------------------------------------------------------------- */

/* An open hub.db. Invariant: schema at STORE_SCHEMA_VERSION, WAL, foreign keys on, busy
 * timeout 5 s, instance catalog seeded. One per thread; each process opens its own (a
 * forked child must not use its parent's store: close it or let it be, and open anew). */
typedef struct store store;

/* Creates the home (store_home_create), opens <home>/hub.db, applies pending migrations in
 * one transaction and seeds the instance catalog when its table is empty. On success *out
 * owns the connection (close with store_close). On failure *out is NULL and err says:
 * OS_EUNSUPPORTED "hub.db is schema version 9, this optstudio knows up to 1; upgrade
 * optstudio"; OS_EDB for a corrupt file (path, SQLite's message, and a hint to move it
 * aside); OS_EIO for an unusable home or a write-protected hub.db. Safe against
 * concurrent first opens by several processes. */
int store_open(store **out, const char *home, os_error *err);

/* Closes the connection and frees s. NULL is fine. Rolls back an open transaction. */
void store_close(store *s);

/* The home folder and the database path this store was opened with. Borrowed, valid until
 * store_close. */
const char *store_home(const store *s);
const char *store_db_path(const store *s);

/* The schema version found in the file (after migration: STORE_SCHEMA_VERSION). */
int store_schema_version(store *s, int *version, os_error *err);

/* A number that changes whenever ANOTHER connection commits to hub.db (PRAGMA
 * data_version): the cheap "did anything change" poll for the TUI. */
int store_data_version(store *s, int64_t *version, os_error *err);

/* ---- transactions --------------------------------------------------------------------- */

/* Begins a write transaction (BEGIN IMMEDIATE: takes the write lock now, waiting up to the
 * busy timeout). Nests: an inner begin opens a savepoint, so API calls that run their own
 * transaction can be grouped by a caller into one. Every begin must be matched by exactly
 * one commit or rollback. OS_EBUSY if the lock could not be had within the timeout. */
int store_tx_begin(store *s, os_error *err);

/* Commits the innermost transaction (or releases the savepoint). On failure the
 * transaction is rolled back and the nesting level is still popped. */
int store_tx_commit(store *s, os_error *err);

/* Rolls back the innermost transaction (or savepoint). Never fails from the caller's view. */
void store_tx_rollback(store *s);

/* ---- models --------------------------------------------------------------------------- */

/* One row of `models`. Plain data. Ownership: every char * is malloc'd and owned by the
 * struct (free with store_model_clear); NULL means "unknown / not set". Integers are 0
 * when unknown. A struct filled by the caller for insert is only read, never freed by
 * the store. */
typedef struct store_model {
	int64_t id;              /* rowid; 0 before insert */
	char *name;              /* unique hub name, required */
	char *path;              /* the file/folder the studio reads, required */
	char *source_path;       /* where it was imported from (may equal path) */
	int owned_by_studio;     /* 1: the studio created these files and may delete them */
	char *format;            /* "gguf" | "safetensors", required */
	char *architecture;      /* e.g. "llama" */
	int64_t n_params;        /* parameters (count) */
	int64_t context_length;  /* tokens */
	int64_t n_layers, n_heads, n_kv_heads;
	int64_t hidden_size, ffn_size, vocab_size;
	char *tokenizer_kind;    /* e.g. "llama-spm", "gpt2-bpe" */
	char *vocab_hash;        /* hex digest of the vocabulary; equal hashes = compatible drafts */
	char *precision;         /* e.g. "F16", "BF16", "Q4_1" */
	int64_t file_size;       /* bytes */
	char *sha256;            /* hex digest of the file */
	char *license;
	int64_t parent_model_id; /* the model this was quantized from; 0 = none */
	char *recipe;            /* JSON of the recipe that produced it, or NULL */
	int64_t created_at;      /* unix seconds, set by insert */
} store_model;

/* Frees m's strings and zeroes it. NULL is fine; a zeroed struct is fine. */
void store_model_clear(store_model *m);

/* Frees an array from a list call: clears each of the n rows, then frees v. */
void store_model_list_free(store_model *v, size_t n);

/* Inserts m (m->id and m->created_at are ignored). Idempotent by (sha256, path): if a row
 * with the same sha256 and path exists, nothing is written, *existed = 1 and out receives
 * that row (whatever its name). Otherwise *existed = 0 and out receives the new row.
 * A different file asking for a name already taken: OS_EEXISTS naming the holder.
 * Missing name/path/format or a format other than gguf|safetensors: OS_EUSAGE.
 * out (cleared by the caller later with store_model_clear) and existed may be NULL. */
int store_model_insert(store *s, const store_model *m, store_model *out, int *existed,
		       os_error *err);

/* Fills *out with the model named name, or OS_ENOTFOUND "no model named 'x' in the hub". */
int store_model_get(store *s, const char *name, store_model *out, os_error *err);

/* Fills *out with the model whose id is id, or OS_ENOTFOUND. */
int store_model_get_by_id(store *s, int64_t id, store_model *out, os_error *err);

/* All models sorted by name (bytewise). *out is a malloc'd array of *n rows (NULL when
 * *n == 0); free with store_model_list_free. */
int store_model_list(store *s, store_model **out, size_t *n, os_error *err);

/* Models whose vocab_hash equals vocab_hash, by n_params ascending, then name: the draft
 * candidates for a target with that vocabulary (the target itself included; skip it by id).
 * Same ownership as store_model_list. */
int store_model_list_by_vocab(store *s, const char *vocab_hash, store_model **out, size_t *n,
			      os_error *err);

/* Deletes the model named name and fills *deleted (may be NULL) with the row as it was, so
 * the caller can decide to remove files (only if deleted->owned_by_studio). Its drafts rows
 * go with it; children's parent_model_id and artifacts' model_id become NULL.
 * OS_ENOTFOUND when absent. */
int store_model_delete(store *s, const char *name, store_model *deleted, os_error *err);

/* ---- drafts --------------------------------------------------------------------------- */

enum { STORE_DRAFT_RECOMMENDED = 0, STORE_DRAFT_USER = 1 };

/* Records draft_id as a draft for target_id of the given kind (replacing the same pair). */
int store_draft_set(store *s, int64_t target_id, int64_t draft_id, int kind, os_error *err);

/* ---- instances ------------------------------------------------------------------------ */

/* One row of `instances`: a machine type with its GPUs and price. Ownership as store_model
 * (store_instance_clear). Per-GPU figures are per GPU; the price is for the whole instance. */
typedef struct store_instance {
	int64_t id;
	char *name;                /* e.g. "ml.g5.12xlarge", "local" for this machine */
	char *gpu_model;           /* e.g. "NVIDIA A10G"; "none (CPU)" for a machine without GPU */
	int64_t n_gpus;
	double gpu_memory_gib;     /* per GPU, GiB */
	double mem_bandwidth_gbps; /* per GPU, GB/s */
	double bf16_tflops;        /* dense, per GPU */
	double fp8_tflops;         /* dense, per GPU; 0 when the GPU has no FP8 units */
	double usd_per_hour;       /* on-demand, whole instance; 0 = not set */
	char *source;              /* where the figures come from */
	char *date;                /* when the price was read, e.g. "2025-06" */
	int is_local;              /* 1 for the "this machine" row, exactly one such row */
} store_instance;

/* The name of the "this machine" row, and the settings key holding its $/hour. */
#define STORE_LOCAL_INSTANCE "local"
#define STORE_SETTING_LOCAL_PRICE "local_usd_per_hour"

void store_instance_clear(store_instance *it);
void store_instance_list_free(store_instance *v, size_t n);

/* All instances: the local row first, then by name. Same ownership as store_model_list. */
int store_instance_list(store *s, store_instance **out, size_t *n, os_error *err);

/* Fills *out with the instance named name, or OS_ENOTFOUND. */
int store_instance_get(store *s, const char *name, store_instance *out, os_error *err);

/* Sets the local machine's price ($/hour, >= 0 and finite, else OS_ERANGE) in the local row
 * and in settings, in one transaction. */
int store_instance_set_local_price(store *s, double usd_per_hour, os_error *err);

/* ---- settings ------------------------------------------------------------------------- */

/* *value receives a malloc'd copy of the setting's value (free it), or OS_ENOTFOUND. */
int store_setting_get(store *s, const char *key, char **value, os_error *err);

/* Sets (inserts or replaces) key = value. */
int store_setting_set(store *s, const char *key, const char *value, os_error *err);

#endif
