/* safetensors.h: safetensors reader over mmap (one file, or a directory of shards with or
 * without model.safetensors.index.json). Every length, shape and offset from a file is
 * checked before use; a bad file is OS_EFORMAT naming the file, the tensor, the field and
 * the value expected, never a crash. */
#ifndef OPTSTUDIO_SAFETENSORS_H
#define OPTSTUDIO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../errors.h"

/* Element types as safetensors names them. */
enum st_dtype {
	ST_BOOL,
	ST_U8,
	ST_I8,
	ST_F8_E5M2,
	ST_F8_E4M3,
	ST_I16,
	ST_U16,
	ST_F16,
	ST_BF16,
	ST_I32,
	ST_U32,
	ST_F32,
	ST_F64,
	ST_I64,
	ST_U64,
	ST_N_DTYPES
};

#define SAFETENSORS_MAX_DIMS 8
#define SAFETENSORS_MAX_HEADER_BYTES ((uint64_t)100 << 20) /* 100 MiB */

/* A tensor as the header describes it. Borrowed from its file, valid until it is closed. */
typedef struct safetensors_tensor {
	const char *name;                     /* NUL-terminated */
	enum st_dtype dtype;
	uint32_t n_dims;                      /* 0 for a scalar */
	uint64_t shape[SAFETENSORS_MAX_DIMS]; /* row-major, shape[n_dims-1] fastest */
	uint64_t n_elements;                  /* product of shape (1 for a scalar) */
	uint64_t offset;                      /* bytes from the start of the data buffer */
	size_t n_bytes;                       /* n_elements * st_dtype_size(dtype) */
	const void *data;                     /* into the mapping; NOT necessarily aligned */
	const char *file;                     /* path (or name) of the file holding it */
} safetensors_tensor;

typedef struct safetensors_file safetensors_file;

/* Maps and validates path. On success *out owns the mapping. */
int safetensors_open(safetensors_file **out, const char *path, os_error *err);
/* Same over a caller-owned buffer that must outlive the result (fuzzing, tests); name is
 * used in messages. */
int safetensors_open_buffer(safetensors_file **out, const void *buf, size_t size,
			    const char *name, os_error *err);
void safetensors_close(safetensors_file *f);

const char *safetensors_path(const safetensors_file *f);
size_t safetensors_file_size(const safetensors_file *f);      /* bytes */
size_t safetensors_n_tensors(const safetensors_file *f);
/* Tensors in the header's order, i < safetensors_n_tensors. */
const safetensors_tensor *safetensors_tensor_at(const safetensors_file *f, size_t i);
/* O(log n); NULL when absent. */
const safetensors_tensor *safetensors_find_tensor(const safetensors_file *f, const char *name);
/* The string __metadata__ map: n entries, key/value borrowed. value NULL when absent. */
size_t safetensors_n_metadata(const safetensors_file *f);
void safetensors_metadata_at(const safetensors_file *f, size_t i, const char **key,
			     const char **value);
const char *safetensors_metadata_get(const safetensors_file *f, const char *key);

/* "F32", "BF16" ...; NULL for an out-of-range value. */
const char *st_dtype_name(enum st_dtype t);
/* Bytes per element (1 for BOOL and the F8 types). */
size_t st_dtype_size(enum st_dtype t);
/* Parses a dtype name; false when unknown. */
bool st_dtype_parse(const char *s, enum st_dtype *out);

/* A model's weights across one or more files of a directory: the files named by
 * model.safetensors.index.json's weight_map when present (each mapped tensor must be in
 * the file it names), else every *.safetensors file in name order. Tensor names are unique
 * across the set. */
typedef struct safetensors_set safetensors_set;

int safetensors_set_open(safetensors_set **out, const char *dir, os_error *err);
void safetensors_set_close(safetensors_set *s);
size_t safetensors_set_n_files(const safetensors_set *s);
const safetensors_file *safetensors_set_file(const safetensors_set *s, size_t i);
/* All tensors, file by file, each file in header order. */
size_t safetensors_set_n_tensors(const safetensors_set *s);
const safetensors_tensor *safetensors_set_tensor_at(const safetensors_set *s, size_t i);
const safetensors_tensor *safetensors_set_find(const safetensors_set *s, const char *name);

#endif
