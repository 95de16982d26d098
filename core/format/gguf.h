/* gguf.h: GGUF v2/v3 reader over mmap, reference dequantization to f32, and a writer.
 * Every offset, size, count and string length read from a file is checked against the
 * file before use; a bad file is an OS_EFORMAT error naming the file, the field and what
 * was expected, never a crash. */
#ifndef OPTSTUDIO_GGUF_H
#define OPTSTUDIO_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../errors.h"

/* Metadata value types, numbered as in the GGUF specification. */
enum gguf_type {
	GGUF_TYPE_UINT8 = 0,
	GGUF_TYPE_INT8 = 1,
	GGUF_TYPE_UINT16 = 2,
	GGUF_TYPE_INT16 = 3,
	GGUF_TYPE_UINT32 = 4,
	GGUF_TYPE_INT32 = 5,
	GGUF_TYPE_FLOAT32 = 6,
	GGUF_TYPE_BOOL = 7,
	GGUF_TYPE_STRING = 8,
	GGUF_TYPE_ARRAY = 9,
	GGUF_TYPE_UINT64 = 10,
	GGUF_TYPE_INT64 = 11,
	GGUF_TYPE_FLOAT64 = 12,
	GGUF_TYPE_COUNT
};

/* Tensor element types, numbered as ggml numbers them. Our own run-time formats (FP8,
 * INT8 per channel, INT4 AWQ) get ids in a range ggml does not use, added by the
 * quantization work. */
enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_BF16 = 30,
	/* optstudio's quantized formats (core/optimize/quantize.h documents the file layout):
	 * the codes of a matrix, whose scales (and zero points) are companion tensors
	 * "<name>.scale" (F32) and "<name>.zero" (OPTSTUDIO_TYPE_U8). gguf_dequantize gives
	 * the codes' own values (E4M3 value, integer), not scaled weights. */
	OPTSTUDIO_TYPE_FP8_E4M3 = 1000,    /* E4M3FN codes, 1 byte; run W8A16 */
	OPTSTUDIO_TYPE_FP8_E4M3_A8 = 1001, /* E4M3FN codes, 1 byte; run W8A8 (FP8 activations) */
	OPTSTUDIO_TYPE_I8_ROW = 1002,      /* int8 codes in [-127, 127]; run W8A8 (int8 acts) */
	OPTSTUDIO_TYPE_U4 = 1003,          /* uint4 codes, 2 a byte, element 2i in the low nibble */
	OPTSTUDIO_TYPE_U8 = 1004,          /* uint8 (INT4 zero points) */
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef struct gguf_file gguf_file;

/* A tensor as the file describes it. Borrowed from the gguf_file, valid until gguf_close. */
typedef struct gguf_tensor {
	const char *name;             /* NUL-terminated copy of the name */
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];   /* elements per dimension, ne[0] fastest; unused dims are 1 */
	uint32_t type;                /* enum ggml_type */
	uint64_t n_elements;
	uint64_t offset;              /* bytes from the start of the tensor data section */
	size_t n_bytes;
	const void *data;             /* points into the mapping */
} gguf_tensor;

/* Opens and validates path. On success *out owns the mapping. Reads only the metadata
 * (milliseconds for a 100 MB model); tensor data is never copied. Errors: OS_ENOTFOUND
 * (no such file), OS_EIO, OS_EFORMAT, OS_EUNSUPPORTED (GGUF v1, big-endian, unknown
 * version). On failure *out is NULL. */
int gguf_open(gguf_file **out, const char *path, os_error *err);
/* Same, over a caller-owned buffer (fuzzing, tests); buf must outlive the gguf_file.
 * name is used in error messages. */
int gguf_open_buffer(gguf_file **out, const void *buf, size_t size, const char *name,
		     os_error *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);
const char *gguf_path(const gguf_file *f);
/* Byte offset of the tensor data section from the start of the file (aligned). */
size_t gguf_data_offset(const gguf_file *f);
/* "uint32", "string", "array" ...; "unknown" out of range. Never NULL. */
const char *gguf_type_name(enum gguf_type t);

/* Metadata. Keys are looked up by exact name; -1 when absent. */
size_t gguf_n_kv(const gguf_file *f);
long gguf_find_key(const gguf_file *f, const char *key);
const char *gguf_kv_key(const gguf_file *f, size_t i);
enum gguf_type gguf_kv_type(const gguf_file *f, size_t i);

/* Typed getters. Integer getters accept any integer type whose value fits; OS_ENOTFOUND
 * when the key is absent, OS_EFORMAT (with a message naming the key, the type found and
 * the type expected) when the type does not fit. */
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, os_error *err);
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, os_error *err);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, os_error *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, os_error *err);  /* f32 or f64 */
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, os_error *err);
/* The string is not NUL-terminated in the file: *s points into the mapping, *len is its
 * length in bytes. */
int gguf_get_str(const gguf_file *f, const char *key, const char **s, size_t *len,
		 os_error *err);

/* Arrays. For numeric element types *data points at n packed little-endian elements in the
 * mapping (not necessarily aligned: read them with memcpy). For string arrays use
 * gguf_get_arr_str, O(1) per element (an offset table is built at open). Nested arrays are
 * read and validated but only their element type and count are exposed (*data points at
 * the first nested array's header). */
int gguf_get_arr(const gguf_file *f, const char *key, enum gguf_type *elem_type, size_t *n,
		 const void **data, os_error *err);
int gguf_get_arr_str(const gguf_file *f, const char *key, size_t i, const char **s,
		     size_t *len, os_error *err);

/* Tensors. */
size_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Element types. */
const char *ggml_type_name(uint32_t type);          /* "Q4_1"; "unknown type" for unknown
                                                     * ids (print the number beside it) */
bool ggml_type_known(uint32_t type);
size_t ggml_type_block_elems(uint32_t type);        /* elements per block (1 for F32) */
size_t ggml_type_block_bytes(uint32_t type);        /* bytes per block */
/* Bytes of n elements of type (0 when unknown or n is not a multiple of the block size). */
size_t ggml_type_row_bytes(uint32_t type, size_t n);

/* Plain reference dequantization of n elements (a multiple of the block size) to f32. */
int gguf_dequantize(uint32_t type, const void *src, float *dst, size_t n, os_error *err);
/* Plain reference quantization of n f32 elements (a multiple of the block size) into dst
 * (ggml_type_row_bytes(type, n) bytes), the same arithmetic as ggml's reference quantizers
 * (Q8_0: d = amax/127; Q4_0: d = -max/8 with the sign of the largest |x|; Q4_1: d =
 * (max-min)/15, m = min; F16/BF16 round to nearest even; F32 copies). */
int gguf_quantize(uint32_t type, const float *src, void *dst, size_t n, os_error *err);

/* Writer. Builds a file in memory description and writes it in one go, atomically
 * (temporary file + rename), checking every write (a full disk is OS_EIO with the path). */
typedef struct gguf_writer gguf_writer;

int gguf_writer_new(gguf_writer **out, os_error *err);
void gguf_writer_free(gguf_writer *w);
/* Setting a key that exists replaces it (keeping its position). Setters and add_tensor
 * return OS_OK or an error code; the first failure's message is kept and reported by
 * gguf_writer_write, which then writes nothing. */
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s);
/* Any numeric or bool scalar: v points at one value of type (e.g. an int16_t for INT16). */
int gguf_writer_set_value(gguf_writer *w, const char *key, enum gguf_type type, const void *v);
/* Numeric array: n elements of elem_type, copied. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_type elem_type,
			const void *data, size_t n);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, size_t n);
/* Copies every key of src (all value types, arrays included) except those starting with
 * skip_prefix (NULL copies all). */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, const char *skip_prefix);
/* Adds a tensor; data (n_bytes) is borrowed and must stay valid until gguf_writer_write. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
			   const uint64_t *ne, const void *data, size_t n_bytes);
int gguf_writer_write(gguf_writer *w, const char *path, os_error *err);

#endif
