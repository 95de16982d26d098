/* hub_ops.h: hub operations shared by the command line and the studio: opening the store
 * of the user's data home (seeding the demo model once), importing a model file or folder,
 * and resolving a MODEL argument that may be a hub name or a path. */
#ifndef OPTSTUDIO_HUB_OPS_H
#define OPTSTUDIO_HUB_OPS_H

#include "core/errors.h"
#include "store/store.h"

/* The demo model's file name inside <home>/models and its hub name. */
#define HUB_DEMO_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"
#define HUB_DEMO_NAME "SmolLM2-135M-Instruct"

/* Resolves the data home, opens hub.db there and, the first time only, imports the demo
 * model if `make models` has placed it in <home>/models. *out is closed with store_close. */
int hub_open(store **out, os_error *err);

/* Imports path (a GGUF file or a Hugging Face folder) under name (NULL: derived from the
 * file name). Reads the metadata, hashes the content, records one row. Importing the same
 * file again is a no-op reported through *existed. Nothing is written when the file is bad.
 * out (may be NULL) receives the row; clear it with store_model_clear. */
int hub_import(store *s, const char *path, const char *name, store_model *out, int *existed,
	       os_error *err);

/* What hub_import_with records beyond the file's own description. */
typedef struct hub_import_opts {
	int64_t parent_model_id;  /* the hub model this one was made from; 0 = none */
	const char *recipe;       /* JSON of the recipe that made it, or NULL */
	int owned_by_studio;      /* 1: the studio made the file (inside <home>/models) and may
				   * delete it with the row */
} hub_import_opts;

/* hub_import, recording o's fields too (o NULL: as hub_import). */
int hub_import_with(store *s, const char *path, const char *name, const hub_import_opts *o,
		    store_model *out, int *existed, os_error *err);

/* MODEL arguments: a hub name first, else an existing path. *path is malloc'd (free it). */
int hub_resolve_model(store *s, const char *arg, char **path, os_error *err);

/* Formats a parameter count as "134.5M" into buf. */
void hub_format_params(int64_t n, char *buf, size_t len);
/* Formats a byte count as "88.0 MiB" into buf. */
void hub_format_bytes(int64_t n, char *buf, size_t len);

#endif
