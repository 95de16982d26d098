/* gguf.c: GGUF v2/v3 reader (over mmap or a caller's buffer), reference quantizers and
 * dequantizers for F32/F16/BF16/Q8_0/Q4_0/Q4_1, and an atomic GGUF v3 writer.
 * Every count, length and offset read from a file is checked against the bytes that remain
 * before it is used; allocations are sized only by counts already bounded by the file size. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../numerics.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian files with plain loads; port the loads for big-endian hosts"
#endif

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_MAX_NESTING 8     /* arrays of arrays deeper than this are refused */

/* Smallest possible encodings, used to refuse absurd counts before allocating:
 * a kv is key length (8) + type (4) + a 1-byte value; a tensor info is name length (8) +
 * n_dims (4) + one ne (8) + type (4) + offset (8). */
#define KV_MIN_BYTES 13u
#define TENSOR_MIN_BYTES 32u

/* ---- quant blocks (layouts as ggml defines them) ------------------------------------ */

typedef struct {
	uint16_t d;      /* f16 scale */
	int8_t qs[32];   /* value = qs[i] * d */
} block_q8_0;
typedef struct {
	uint16_t d;      /* f16 scale */
	uint8_t qs[16];  /* element j in the low nibble of qs[j], j+16 in the high; value = (q-8)*d */
} block_q4_0;
typedef struct {
	uint16_t d;      /* f16 scale */
	uint16_t m;      /* f16 minimum */
	uint8_t qs[16];  /* nibbles as Q4_0; value = q*d + m */
} block_q4_1;

_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 block is 20 bytes");

#define QK 32 /* elements per block of every quantized type here */

/* ---- reader state ------------------------------------------------------------------- */

typedef struct gguf_kv {
	char *key;               /* NUL-terminated copy */
	enum gguf_type type;
	size_t val_off;          /* value bytes (after the type field) from the start of the file */
	size_t val_size;         /* bytes of the value encoding, for verbatim copies */
	/* arrays */
	enum gguf_type elem_type;
	size_t n;                /* element count */
	size_t data_off;         /* first element */
	size_t *str_off;         /* string arrays: offset of element i's length field */
} gguf_kv;

/* Open-addressing hash set of indices into a name table, for duplicate detection and
 * lookups in O(1). Capacity is a power of two at least twice the count. */
typedef struct name_index {
	size_t cap;
	size_t *slot; /* index + 1; 0 is empty */
} name_index;

struct gguf_file {
	char *path;
	const uint8_t *base;
	size_t size;
	bool mapped;
	uint32_t version;
	size_t alignment;
	size_t data_start;
	size_t n_kv;
	gguf_kv *kv;
	size_t n_tensors;
	gguf_tensor *tensors;
	name_index kv_index;
	name_index tensor_index;
};

/* Bounds-checked cursor over the file bytes. */
typedef struct cursor {
	const uint8_t *p;
	size_t size;
	size_t pos;
	const char *name; /* for messages */
	os_error *err;
} cursor;

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static int name_index_init(name_index *ix, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	ix->slot = calloc(cap, sizeof *ix->slot);
	if (!ix->slot)
		return OS_ENOMEM;
	ix->cap = cap;
	return OS_OK;
}

/* Inserts index i whose name is names(i); returns the index already holding an equal
 * name, or (size_t)-1 when inserted. */
static size_t name_index_insert(name_index *ix, const char *name, size_t i,
				const char *(*name_of)(const void *, size_t), const void *ctx)
{
	size_t mask = ix->cap - 1;
	for (size_t h = hash_str(name) & mask;; h = (h + 1) & mask) {
		if (!ix->slot[h]) {
			ix->slot[h] = i + 1;
			return (size_t)-1;
		}
		if (strcmp(name_of(ctx, ix->slot[h] - 1), name) == 0)
			return ix->slot[h] - 1;
	}
}

static long name_index_find(const name_index *ix, const char *name,
			    const char *(*name_of)(const void *, size_t), const void *ctx)
{
	if (!ix->slot)
		return -1;
	size_t mask = ix->cap - 1;
	for (size_t h = hash_str(name) & mask;; h = (h + 1) & mask) {
		if (!ix->slot[h])
			return -1;
		if (strcmp(name_of(ctx, ix->slot[h] - 1), name) == 0)
			return (long)(ix->slot[h] - 1);
	}
}

static const char *kv_name_of(const void *ctx, size_t i)
{
	return ((const gguf_file *)ctx)->kv[i].key;
}

static const char *tensor_name_of(const void *ctx, size_t i)
{
	return ((const gguf_file *)ctx)->tensors[i].name;
}

static const char *const type_names[GGUF_TYPE_COUNT] = {
	[GGUF_TYPE_UINT8] = "uint8",   [GGUF_TYPE_INT8] = "int8",
	[GGUF_TYPE_UINT16] = "uint16", [GGUF_TYPE_INT16] = "int16",
	[GGUF_TYPE_UINT32] = "uint32", [GGUF_TYPE_INT32] = "int32",
	[GGUF_TYPE_FLOAT32] = "float32", [GGUF_TYPE_BOOL] = "bool",
	[GGUF_TYPE_STRING] = "string", [GGUF_TYPE_ARRAY] = "array",
	[GGUF_TYPE_UINT64] = "uint64", [GGUF_TYPE_INT64] = "int64",
	[GGUF_TYPE_FLOAT64] = "float64",
};

const char *gguf_type_name(enum gguf_type t)
{
	if ((unsigned)t < GGUF_TYPE_COUNT)
		return type_names[t];
	return "unknown";
}

/* Bytes of one scalar of type t; 0 for string, array and unknown types. */
static size_t scalar_size(enum gguf_type t)
{
	switch (t) {
	case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
	case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
	case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
	case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
	default: return 0;
	}
}

static size_t cur_left(const cursor *c)
{
	return c->size - c->pos;
}

/* what: the field being read, for the message */
static int cur_need(cursor *c, size_t n, const char *what)
{
	if (n > cur_left(c))
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': %s at offset %zu needs %zu bytes but the file ends at %zu "
				    "(truncated file?)", c->name, what, c->pos, n, c->size);
	return OS_OK;
}

static int cur_u32(cursor *c, uint32_t *v, const char *what)
{
	if (cur_need(c, 4, what))
		return OS_EFORMAT;
	memcpy(v, c->p + c->pos, 4);
	c->pos += 4;
	return OS_OK;
}

static int cur_u64(cursor *c, uint64_t *v, const char *what)
{
	if (cur_need(c, 8, what))
		return OS_EFORMAT;
	memcpy(v, c->p + c->pos, 8);
	c->pos += 8;
	return OS_OK;
}

/* Reads a string header and checks its bytes are present; *s points into the file. */
static int cur_str(cursor *c, const char **s, size_t *len, const char *what)
{
	size_t at = c->pos;
	uint64_t n;
	if (cur_u64(c, &n, what))
		return OS_EFORMAT;
	if (n > cur_left(c))
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': %s at offset %zu has length %llu but only %zu bytes remain "
				    "in the file (size %zu)", c->name, what, at, (unsigned long long)n,
				    cur_left(c), c->size);
	*s = (const char *)c->p + c->pos;
	*len = (size_t)n;
	c->pos += (size_t)n;
	return OS_OK;
}

/* A NUL-terminated copy of a name read from the file; names with NUL bytes are refused. */
static int copy_name(cursor *c, const char *s, size_t len, char **out, const char *what)
{
	if (memchr(s, 0, len))
		return os_error_set(c->err, OS_EFORMAT, "'%s': %s contains a NUL byte", c->name,
				    what);
	char *p = malloc(len + 1);
	if (!p)
		return os_error_set(c->err, OS_ENOMEM, "'%s': out of memory reading %s", c->name,
				    what);
	memcpy(p, s, len);
	p[len] = '\0';
	*out = p;
	return OS_OK;
}

/* Skips over one value of type t (validating it); depth counts array nesting. */
static int skip_value(cursor *c, enum gguf_type t, const char *key, int depth)
{
	size_t sz = scalar_size(t);
	if (sz) {
		if (cur_need(c, sz, "scalar value"))
			return OS_EFORMAT;
		c->pos += sz;
		return OS_OK;
	}
	if (t == GGUF_TYPE_STRING) {
		const char *s;
		size_t len;
		char what[256];
		snprintf(what, sizeof what, "string value of key '%.160s'", key);
		return cur_str(c, &s, &len, what);
	}
	if (t != GGUF_TYPE_ARRAY)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': key '%s' has unknown value type %u (expected 0..12)",
				    c->name, key, (unsigned)t);
	if (depth >= GGUF_MAX_NESTING)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': key '%s' nests arrays deeper than %d levels", c->name, key,
				    GGUF_MAX_NESTING);
	uint32_t et;
	uint64_t n;
	if (cur_u32(c, &et, "array element type") || cur_u64(c, &n, "array length"))
		return OS_EFORMAT;
	if (et >= GGUF_TYPE_COUNT)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': key '%s' is an array of unknown type %u (expected 0..12)",
				    c->name, key, et);
	size_t esz = scalar_size((enum gguf_type)et);
	size_t emin = esz ? esz : (et == GGUF_TYPE_STRING ? 8 : 12);
	if (n > cur_left(c) / emin)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': key '%s' array of %llu %s elements needs at least %llu bytes "
				    "but only %zu remain", c->name, key, (unsigned long long)n,
				    type_names[et], (unsigned long long)n * emin, cur_left(c));
	if (esz) {
		c->pos += (size_t)n * esz;
		return OS_OK;
	}
	for (uint64_t i = 0; i < n; i++)
		if (skip_value(c, (enum gguf_type)et, key, depth + 1))
			return OS_EFORMAT;
	return OS_OK;
}

/* Reads the value of kv (type already read) and fills its fields. */
static int read_value(cursor *c, gguf_kv *kv)
{
	kv->val_off = c->pos;
	if (kv->type != GGUF_TYPE_ARRAY) {
		if (skip_value(c, kv->type, kv->key, 0))
			return OS_EFORMAT;
		kv->val_size = c->pos - kv->val_off;
		return OS_OK;
	}
	uint32_t et;
	uint64_t n;
	if (cur_u32(c, &et, "array element type") || cur_u64(c, &n, "array length"))
		return OS_EFORMAT;
	if (et >= GGUF_TYPE_COUNT)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': key '%s' is an array of unknown type %u (expected 0..12)",
				    c->name, kv->key, et);
	kv->elem_type = (enum gguf_type)et;
	kv->data_off = c->pos;
	if (et == GGUF_TYPE_STRING) {
		if (n > cur_left(c) / 8)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': key '%s' array of %llu strings needs at least %llu "
					    "bytes but only %zu remain", c->name, kv->key,
					    (unsigned long long)n, (unsigned long long)n * 8,
					    cur_left(c));
		kv->n = (size_t)n;
		kv->str_off = malloc((n ? n : 1) * sizeof *kv->str_off);
		if (!kv->str_off)
			return os_error_set(c->err, OS_ENOMEM, "'%s': out of memory for key '%s'",
					    c->name, kv->key);
		for (size_t i = 0; i < kv->n; i++) {
			const char *s;
			size_t len;
			kv->str_off[i] = c->pos;
			/* fast path; the message is only formatted for a bad element */
			uint64_t l = 0;
			if (cur_left(c) >= 8)
				memcpy(&l, c->p + c->pos, 8);
			if (cur_left(c) < 8 || l > cur_left(c) - 8) {
				char what[256];
				snprintf(what, sizeof what, "element %zu of string array '%.160s'", i,
					 kv->key);
				return cur_str(c, &s, &len, what);
			}
			c->pos += 8 + (size_t)l;
		}
	} else {
		/* rewind so skip_value validates count and nesting in one place */
		c->pos = kv->val_off;
		if (skip_value(c, GGUF_TYPE_ARRAY, kv->key, 0))
			return OS_EFORMAT;
		kv->n = (size_t)n;
	}
	kv->val_size = c->pos - kv->val_off;
	return OS_OK;
}

static int read_kvs(gguf_file *f, cursor *c)
{
	if (f->n_kv > cur_left(c) / KV_MIN_BYTES)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': header n_kv = %zu is absurd: at least %zu bytes needed but "
				    "the file has %zu left", c->name, f->n_kv, f->n_kv * KV_MIN_BYTES,
				    cur_left(c));
	f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
	if (!f->kv || name_index_init(&f->kv_index, f->n_kv))
		return os_error_set(c->err, OS_ENOMEM, "'%s': out of memory for %zu keys",
				    c->name, f->n_kv);
	for (size_t i = 0; i < f->n_kv; i++) {
		gguf_kv *kv = &f->kv[i];
		const char *s;
		size_t len;
		uint32_t t;
		if (cur_str(c, &s, &len, "key"))
			return OS_EFORMAT;
		if (len == 0)
			return os_error_set(c->err, OS_EFORMAT, "'%s': key %zu has an empty name",
					    c->name, i);
		if (copy_name(c, s, len, &kv->key, "key name"))
			return c->err ? c->err->rc : OS_EFORMAT;
		if (name_index_insert(&f->kv_index, kv->key, i, kv_name_of, f) != (size_t)-1)
			return os_error_set(c->err, OS_EFORMAT, "'%s': duplicate key '%s'", c->name,
					    kv->key);
		if (cur_u32(c, &t, "value type"))
			return OS_EFORMAT;
		if (t >= GGUF_TYPE_COUNT)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': key '%s' has unknown value type %u (expected 0..12)",
					    c->name, kv->key, t);
		kv->type = (enum gguf_type)t;
		int rc = read_value(c, kv);
		if (rc)
			return rc;
	}
	return OS_OK;
}

/* Reads an unsigned integer of any width from a kv; false if it is not an integer >= 0. */
static bool kv_as_u64(const gguf_file *f, const gguf_kv *kv, uint64_t *out)
{
	const uint8_t *p = f->base + kv->val_off;
	switch (kv->type) {
	case GGUF_TYPE_UINT8: *out = p[0]; return true;
	case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *out = (uint64_t)v; return v >= 0; }
	case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
	case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = (uint64_t)v; return v >= 0; }
	case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
	case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = (uint64_t)v; return v >= 0; }
	case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *out = v; return true; }
	case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = (uint64_t)v; return v >= 0; }
	default: return false;
	}
}

static int read_alignment(gguf_file *f, cursor *c)
{
	f->alignment = GGUF_DEFAULT_ALIGNMENT;
	long i = gguf_find_key(f, "general.alignment");
	if (i < 0)
		return OS_OK;
	uint64_t a;
	const gguf_kv *kv = &f->kv[i];
	if (!kv_as_u64(f, kv, &a))
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': general.alignment has type %s (expected uint32)", c->name,
				    gguf_type_name(kv->type));
	if (a == 0 || (a & (a - 1)) || a > (1u << 30))
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': general.alignment = %llu (expected a non-zero power of two "
				    "up to 2^30)", c->name, (unsigned long long)a);
	f->alignment = (size_t)a;
	return OS_OK;
}

static int read_tensor_infos(gguf_file *f, cursor *c)
{
	if (f->n_tensors > cur_left(c) / TENSOR_MIN_BYTES)
		return os_error_set(c->err, OS_EFORMAT,
				    "'%s': header n_tensors = %zu is absurd: at least %zu bytes needed "
				    "but the file has %zu left", c->name, f->n_tensors,
				    f->n_tensors * TENSOR_MIN_BYTES, cur_left(c));
	f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
	if (!f->tensors || name_index_init(&f->tensor_index, f->n_tensors))
		return os_error_set(c->err, OS_ENOMEM, "'%s': out of memory for %zu tensors",
				    c->name, f->n_tensors);
	for (size_t i = 0; i < f->n_tensors; i++) {
		gguf_tensor *t = &f->tensors[i];
		const char *s;
		size_t len;
		char *name;
		if (cur_str(c, &s, &len, "tensor name"))
			return OS_EFORMAT;
		if (len == 0)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor %zu has an empty name", c->name, i);
		if (copy_name(c, s, len, &name, "tensor name"))
			return c->err ? c->err->rc : OS_EFORMAT;
		t->name = name;
		if (name_index_insert(&f->tensor_index, name, i, tensor_name_of, f) != (size_t)-1)
			return os_error_set(c->err, OS_EFORMAT, "'%s': duplicate tensor name '%s'",
					    c->name, name);
		if (cur_u32(c, &t->n_dims, "tensor n_dims"))
			return OS_EFORMAT;
		if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor '%s' has n_dims = %u (expected 1..%d)",
					    c->name, name, t->n_dims, GGUF_MAX_DIMS);
		uint64_t n_el = 1;
		bool overflow = false;
		for (int d = 0; d < GGUF_MAX_DIMS; d++) {
			t->ne[d] = 1;
			if ((uint32_t)d >= t->n_dims)
				continue;
			if (cur_u64(c, &t->ne[d], "tensor dimension"))
				return OS_EFORMAT;
			if (t->ne[d] > (uint64_t)INT64_MAX)
				return os_error_set(c->err, OS_EFORMAT,
						    "'%s': tensor '%s' ne[%d] = %llu is negative as int64",
						    c->name, name, d, (unsigned long long)t->ne[d]);
			if (t->ne[d] && n_el > (uint64_t)INT64_MAX / t->ne[d])
				overflow = true;
			n_el *= t->ne[d];
		}
		if (overflow)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor '%s' element count overflows (ne = %llu x %llu "
					    "x %llu x %llu)", c->name, name,
					    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
					    (unsigned long long)t->ne[2], (unsigned long long)t->ne[3]);
		t->n_elements = n_el;
		if (cur_u32(c, &t->type, "tensor type"))
			return OS_EFORMAT;
		if (!ggml_type_known(t->type))
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': unknown tensor type %u for tensor '%s'", c->name,
					    t->type, name);
		size_t be = ggml_type_block_elems(t->type), bb = ggml_type_block_bytes(t->type);
		if (t->ne[0] % be)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor '%s' ne[0] = %llu is not a multiple of the "
					    "%s block size %zu", c->name, name,
					    (unsigned long long)t->ne[0], ggml_type_name(t->type), be);
		uint64_t n_blocks = n_el / be;
		if (n_blocks > SIZE_MAX / bb)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor '%s' byte size overflows", c->name, name);
		t->n_bytes = (size_t)n_blocks * bb;
		if (cur_u64(c, &t->offset, "tensor offset"))
			return OS_EFORMAT;
		if (t->offset % f->alignment)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor '%s' offset %llu is not a multiple of the "
					    "alignment %zu", c->name, name,
					    (unsigned long long)t->offset, f->alignment);
	}
	return OS_OK;
}

/* Places every tensor's data inside the file, now that the data section start is known. */
static int place_tensors(gguf_file *f, cursor *c)
{
	size_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
	f->data_start = c->pos + pad; /* c->pos <= size <= SIZE_MAX/2 in practice; checked below */
	if (f->data_start < c->pos)
		return os_error_set(c->err, OS_EFORMAT, "'%s': data section start overflows",
				    c->name);
	for (size_t i = 0; i < f->n_tensors; i++) {
		gguf_tensor *t = &f->tensors[i];
		size_t avail = f->size > f->data_start ? f->size - f->data_start : 0;
		if (t->offset > avail || t->n_bytes > avail - t->offset)
			return os_error_set(c->err, OS_EFORMAT,
					    "'%s': tensor '%s' data [offset %llu, %zu bytes] runs past "
					    "the end of the file (size %zu, data section at %zu)", c->name,
					    t->name, (unsigned long long)t->offset, t->n_bytes, f->size,
					    f->data_start);
		/* an empty tensor may sit at the very end, where no byte can be pointed at */
		t->data = t->n_bytes ? f->base + f->data_start + t->offset : f->base;
	}
	return OS_OK;
}

static int parse(gguf_file *f, os_error *err)
{
	cursor c = { .p = f->base, .size = f->size, .pos = 0, .name = f->path, .err = err };
	uint32_t magic;
	if (f->size < 4)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': file is %zu bytes, too short for a GGUF header (24 bytes)",
				    f->path, f->size);
	memcpy(&magic, f->base, 4);
	if (magic != GGUF_MAGIC)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': bad magic 0x%08x (expected GGUF); is this a GGUF file?",
				    f->path, magic);
	c.pos = 4;
	if (cur_u32(&c, &f->version, "header version"))
		return OS_EFORMAT;
	if (f->version == 1)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': GGUF version 1 is not supported (expected version 2 or 3); "
				    "convert the file with a current llama.cpp", f->path);
	if (f->version == 0x02000000u || f->version == 0x03000000u)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': big-endian GGUF is not supported (version field 0x%08x, "
				    "expected 2 or 3 little-endian)", f->path, f->version);
	if (f->version != 2 && f->version != 3)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': GGUF version %u is not supported (expected version 2 or 3)",
				    f->path, f->version);
	uint64_t nt, nkv;
	if (cur_u64(&c, &nt, "header n_tensors") || cur_u64(&c, &nkv, "header n_kv"))
		return OS_EFORMAT;
	if (nt > cur_left(&c) / TENSOR_MIN_BYTES)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': header n_tensors = %llu is absurd: a file of %zu bytes holds "
				    "at most %zu tensor infos", f->path, (unsigned long long)nt,
				    f->size, cur_left(&c) / TENSOR_MIN_BYTES);
	if (nkv > cur_left(&c) / KV_MIN_BYTES)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': header n_kv = %llu is absurd: a file of %zu bytes holds at "
				    "most %zu keys", f->path, (unsigned long long)nkv, f->size,
				    cur_left(&c) / KV_MIN_BYTES);
	f->n_tensors = (size_t)nt;
	f->n_kv = (size_t)nkv;
	int rc;
	if ((rc = read_kvs(f, &c)))
		return rc;
	if ((rc = read_alignment(f, &c)))
		return rc;
	if ((rc = read_tensor_infos(f, &c)))
		return rc;
	return place_tensors(f, &c);
}

static gguf_file *file_new(const char *path, os_error *err)
{
	gguf_file *f = calloc(1, sizeof *f);
	if (f)
		f->path = strdup(path ? path : "(buffer)");
	if (!f || !f->path) {
		free(f);
		os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", path ? path : "(buffer)");
		return NULL;
	}
	return f;
}

int gguf_open_buffer(gguf_file **out, const void *buf, size_t size, const char *name,
		     os_error *err)
{
	*out = NULL;
	gguf_file *f = file_new(name, err);
	if (!f)
		return OS_ENOMEM;
	f->base = buf;
	f->size = size;
	int rc = parse(f, err);
	if (rc) {
		gguf_close(f);
		return rc;
	}
	*out = f;
	return OS_OK;
}

int gguf_open(gguf_file **out, const char *path, os_error *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO,
				    "cannot open '%s': %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return os_error_set(err, OS_EIO, "cannot stat '%s': %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return os_error_set(err, OS_EIO, "'%s' is not a regular file", path);
	}
	gguf_file *f = file_new(path, err);
	if (!f) {
		close(fd);
		return OS_ENOMEM;
	}
	f->size = (size_t)st.st_size;
	if (f->size > 0) {
		void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			close(fd);
			gguf_close(f);
			return os_error_set(err, OS_EIO, "cannot map '%s' (%zu bytes): %s", path,
					    (size_t)st.st_size, strerror(e));
		}
		f->base = m;
		f->mapped = true;
	} else {
		f->base = (const uint8_t *)"";
	}
	close(fd);
	int rc = parse(f, err);
	if (rc) {
		gguf_close(f);
		return rc;
	}
	*out = f;
	return OS_OK;
}

void gguf_close(gguf_file *f)
{
	if (!f)
		return;
	if (f->kv)
		for (size_t i = 0; i < f->n_kv; i++) {
			free(f->kv[i].key);
			free(f->kv[i].str_off);
		}
	if (f->tensors)
		for (size_t i = 0; i < f->n_tensors; i++)
			free((char *)f->tensors[i].name);
	free(f->kv);
	free(f->tensors);
	free(f->kv_index.slot);
	free(f->tensor_index.slot);
	if (f->mapped)
		munmap((void *)f->base, f->size);
	free(f->path);
	free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
size_t gguf_file_size(const gguf_file *f) { return f->size; }
const char *gguf_path(const gguf_file *f) { return f->path; }
size_t gguf_data_offset(const gguf_file *f) { return f->data_start; }
size_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }

long gguf_find_key(const gguf_file *f, const char *key)
{
	return name_index_find(&f->kv_index, key, kv_name_of, f);
}

const char *gguf_kv_key(const gguf_file *f, size_t i)
{
	return i < f->n_kv ? f->kv[i].key : NULL;
}

enum gguf_type gguf_kv_type(const gguf_file *f, size_t i)
{
	return i < f->n_kv ? f->kv[i].type : GGUF_TYPE_COUNT;
}

/* Finds key or fills an OS_ENOTFOUND error. */
static const gguf_kv *need_key(const gguf_file *f, const char *key, os_error *err)
{
	long i = gguf_find_key(f, key);
	if (i < 0) {
		os_error_set(err, OS_ENOTFOUND, "'%s': key '%s' not found", f->path, key);
		return NULL;
	}
	return &f->kv[i];
}

static int wrong_type(const gguf_file *f, const gguf_kv *kv, const char *expected,
		      os_error *err)
{
	return os_error_set(err, OS_EFORMAT, "'%s': key '%s' has type %s (expected %s)", f->path,
			    kv->key, gguf_type_name(kv->type), expected);
}

static bool kv_is_signed(enum gguf_type t)
{
	return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
	       t == GGUF_TYPE_INT64;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	uint64_t v;
	if (!kv_as_u64(f, kv, &v)) {
		if (kv_is_signed(kv->type))
			return os_error_set(err, OS_EFORMAT,
					    "'%s': key '%s' is negative (expected a value >= 0)",
					    f->path, key);
		return wrong_type(f, kv, "an unsigned integer", err);
	}
	*out = v;
	return OS_OK;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, os_error *err)
{
	uint64_t v;
	int rc = gguf_get_u64(f, key, &v, err);
	if (rc)
		return rc;
	if (v > UINT32_MAX)
		return os_error_set(err, OS_EFORMAT, "'%s': key '%s' = %llu does not fit uint32",
				    f->path, key, (unsigned long long)v);
	*out = (uint32_t)v;
	return OS_OK;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	const uint8_t *p = f->base + kv->val_off;
	switch (kv->type) {
	case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *out = v; return OS_OK; }
	case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return OS_OK; }
	case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return OS_OK; }
	case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return OS_OK; }
	default: break;
	}
	uint64_t u;
	if (!kv_as_u64(f, kv, &u))
		return wrong_type(f, kv, "an integer", err);
	if (u > (uint64_t)INT64_MAX)
		return os_error_set(err, OS_EFORMAT, "'%s': key '%s' = %llu does not fit int64",
				    f->path, key, (unsigned long long)u);
	*out = (int64_t)u;
	return OS_OK;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	const uint8_t *p = f->base + kv->val_off;
	if (kv->type == GGUF_TYPE_FLOAT32) {
		memcpy(out, p, 4);
		return OS_OK;
	}
	if (kv->type == GGUF_TYPE_FLOAT64) {
		double d;
		memcpy(&d, p, 8);
		*out = (float)d;
		return OS_OK;
	}
	return wrong_type(f, kv, "float32", err);
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	if (kv->type != GGUF_TYPE_BOOL)
		return wrong_type(f, kv, "bool", err);
	*out = f->base[kv->val_off] != 0;
	return OS_OK;
}

int gguf_get_str(const gguf_file *f, const char *key, const char **s, size_t *len,
		 os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	if (kv->type != GGUF_TYPE_STRING)
		return wrong_type(f, kv, "string", err);
	uint64_t n;
	memcpy(&n, f->base + kv->val_off, 8);
	*s = (const char *)f->base + kv->val_off + 8;
	*len = (size_t)n;
	return OS_OK;
}

int gguf_get_arr(const gguf_file *f, const char *key, enum gguf_type *elem_type, size_t *n,
		 const void **data, os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	if (kv->type != GGUF_TYPE_ARRAY)
		return wrong_type(f, kv, "array", err);
	if (elem_type)
		*elem_type = kv->elem_type;
	if (n)
		*n = kv->n;
	if (data)
		*data = f->base + kv->data_off;
	return OS_OK;
}

int gguf_get_arr_str(const gguf_file *f, const char *key, size_t i, const char **s,
		     size_t *len, os_error *err)
{
	const gguf_kv *kv = need_key(f, key, err);
	if (!kv)
		return OS_ENOTFOUND;
	if (kv->type != GGUF_TYPE_ARRAY || kv->elem_type != GGUF_TYPE_STRING)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': key '%s' has type %s%s%s (expected array of string)",
				    f->path, key, gguf_type_name(kv->type),
				    kv->type == GGUF_TYPE_ARRAY ? " of " : "",
				    kv->type == GGUF_TYPE_ARRAY ? gguf_type_name(kv->elem_type) : "");
	if (i >= kv->n)
		return os_error_set(err, OS_ERANGE,
				    "'%s': index %zu past the end of string array '%s' (length %zu)",
				    f->path, i, key, kv->n);
	uint64_t l;
	memcpy(&l, f->base + kv->str_off[i], 8);
	*s = (const char *)f->base + kv->str_off[i] + 8;
	*len = (size_t)l;
	return OS_OK;
}

size_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
	return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
	long i = name_index_find(&f->tensor_index, name, tensor_name_of, f);
	return i < 0 ? NULL : &f->tensors[i];
}

/* ---- element types ------------------------------------------------------------------ */

const char *ggml_type_name(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return "F32";
	case GGML_TYPE_F16: return "F16";
	case GGML_TYPE_BF16: return "BF16";
	case GGML_TYPE_Q8_0: return "Q8_0";
	case GGML_TYPE_Q4_0: return "Q4_0";
	case GGML_TYPE_Q4_1: return "Q4_1";
	case OPTSTUDIO_TYPE_FP8_E4M3: return "OS_FP8_E4M3";
	case OPTSTUDIO_TYPE_FP8_E4M3_A8: return "OS_FP8_E4M3_A8";
	case OPTSTUDIO_TYPE_I8_ROW: return "OS_I8_ROW";
	case OPTSTUDIO_TYPE_U4: return "OS_U4";
	case OPTSTUDIO_TYPE_U8: return "OS_U8";
	default: return "unknown type";
	}
}

bool ggml_type_known(uint32_t type)
{
	return ggml_type_block_bytes(type) != 0;
}

size_t ggml_type_block_elems(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return 1;
	case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: return QK;
	case OPTSTUDIO_TYPE_FP8_E4M3: case OPTSTUDIO_TYPE_FP8_E4M3_A8: case OPTSTUDIO_TYPE_I8_ROW:
	case OPTSTUDIO_TYPE_U8: return 1;
	case OPTSTUDIO_TYPE_U4: return 2;
	default: return 0;
	}
}

size_t ggml_type_block_bytes(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return 4;
	case GGML_TYPE_F16: case GGML_TYPE_BF16: return 2;
	case GGML_TYPE_Q8_0: return sizeof(block_q8_0);
	case GGML_TYPE_Q4_0: return sizeof(block_q4_0);
	case GGML_TYPE_Q4_1: return sizeof(block_q4_1);
	case OPTSTUDIO_TYPE_FP8_E4M3: case OPTSTUDIO_TYPE_FP8_E4M3_A8: case OPTSTUDIO_TYPE_I8_ROW:
	case OPTSTUDIO_TYPE_U4: case OPTSTUDIO_TYPE_U8: return 1;
	default: return 0;
	}
}

size_t ggml_type_row_bytes(uint32_t type, size_t n)
{
	size_t be = ggml_type_block_elems(type);
	if (!be || n % be)
		return 0;
	return n / be * ggml_type_block_bytes(type);
}

static int check_n(uint32_t type, size_t n, const char *op, os_error *err)
{
	if (!ggml_type_known(type))
		return os_error_set(err, OS_EUNSUPPORTED, "%s: unknown tensor type %u", op, type);
	size_t be = ggml_type_block_elems(type);
	if (n % be)
		return os_error_set(err, OS_EUSAGE,
				    "%s: %zu elements is not a multiple of the %s block size %zu", op,
				    n, ggml_type_name(type), be);
	return OS_OK;
}

static inline float load_f16(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return num_f16_to_f32(h);
}

static inline void store_f16(uint8_t *p, float v)
{
	uint16_t h = num_f32_to_f16(v);
	memcpy(p, &h, 2);
}

int gguf_dequantize(uint32_t type, const void *src, float *dst, size_t n, os_error *err)
{
	int rc = check_n(type, n, "dequantize", err);
	if (rc)
		return rc;
	const uint8_t *s = src;
	switch (type) {
	case GGML_TYPE_F32:
		memcpy(dst, s, n * 4);
		break;
	case GGML_TYPE_F16:
		for (size_t i = 0; i < n; i++)
			dst[i] = load_f16(s + 2 * i);
		break;
	case GGML_TYPE_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, s + 2 * i, 2);
			dst[i] = num_bf16_to_f32(h);
		}
		break;
	case GGML_TYPE_Q8_0:
		for (size_t b = 0; b < n / QK; b++, s += sizeof(block_q8_0), dst += QK) {
			float d = load_f16(s);
			const int8_t *q = (const int8_t *)(s + 2);
			for (int j = 0; j < QK; j++)
				dst[j] = (float)q[j] * d;
		}
		break;
	case GGML_TYPE_Q4_0:
		for (size_t b = 0; b < n / QK; b++, s += sizeof(block_q4_0), dst += QK) {
			float d = load_f16(s);
			const uint8_t *q = s + 2;
			for (int j = 0; j < QK / 2; j++) {
				dst[j] = (float)((int)(q[j] & 0x0f) - 8) * d;
				dst[j + QK / 2] = (float)((int)(q[j] >> 4) - 8) * d;
			}
		}
		break;
	case GGML_TYPE_Q4_1:
		for (size_t b = 0; b < n / QK; b++, s += sizeof(block_q4_1), dst += QK) {
			float d = load_f16(s), m = load_f16(s + 2);
			const uint8_t *q = s + 4;
			for (int j = 0; j < QK / 2; j++) {
				dst[j] = (float)(q[j] & 0x0f) * d + m;
				dst[j + QK / 2] = (float)(q[j] >> 4) * d + m;
			}
		}
		break;
	/* optstudio's code types: the codes' values, before their companion scales */
	case OPTSTUDIO_TYPE_FP8_E4M3:
	case OPTSTUDIO_TYPE_FP8_E4M3_A8:
		for (size_t i = 0; i < n; i++)
			dst[i] = num_e4m3_to_f32(s[i]);
		break;
	case OPTSTUDIO_TYPE_I8_ROW:
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)(int8_t)s[i];
		break;
	case OPTSTUDIO_TYPE_U4:
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)num_i4_get(s, i);
		break;
	case OPTSTUDIO_TYPE_U8:
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)s[i];
		break;
	}
	return OS_OK;
}

/* Reference quantizers, the same arithmetic as ggml's *_ref functions. */
int gguf_quantize(uint32_t type, const float *src, void *dst, size_t n, os_error *err)
{
	int rc = check_n(type, n, "quantize", err);
	if (rc)
		return rc;
	uint8_t *o = dst;
	switch (type) {
	case OPTSTUDIO_TYPE_FP8_E4M3:
	case OPTSTUDIO_TYPE_FP8_E4M3_A8:
	case OPTSTUDIO_TYPE_I8_ROW:
	case OPTSTUDIO_TYPE_U4:
	case OPTSTUDIO_TYPE_U8:
		return os_error_set(err, OS_EUNSUPPORTED,
				    "quantize: %s needs per-row scales (core/optimize/quantize.h "
				    "writes it)",
				    ggml_type_name(type));
	case GGML_TYPE_F32:
		memcpy(o, src, n * 4);
		break;
	case GGML_TYPE_F16:
		for (size_t i = 0; i < n; i++)
			store_f16(o + 2 * i, src[i]);
		break;
	case GGML_TYPE_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h = num_f32_to_bf16(src[i]);
			memcpy(o + 2 * i, &h, 2);
		}
		break;
	case GGML_TYPE_Q8_0:
		for (size_t b = 0; b < n / QK; b++, src += QK, o += sizeof(block_q8_0)) {
			float amax = 0.0f;
			for (int j = 0; j < QK; j++)
				amax = fmaxf(amax, fabsf(src[j]));
			float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
			store_f16(o, d);
			for (int j = 0; j < QK; j++)
				o[2 + j] = (uint8_t)(int8_t)roundf(src[j] * id);
		}
		break;
	case GGML_TYPE_Q4_0:
		for (size_t b = 0; b < n / QK; b++, src += QK, o += sizeof(block_q4_0)) {
			float amax = 0.0f, max = 0.0f; /* max keeps the sign of the largest |x| */
			for (int j = 0; j < QK; j++)
				if (fabsf(src[j]) > amax) {
					amax = fabsf(src[j]);
					max = src[j];
				}
			float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
			store_f16(o, d);
			for (int j = 0; j < QK / 2; j++) {
				int q0 = (int)(src[j] * id + 8.5f), q1 = (int)(src[j + QK / 2] * id + 8.5f);
				q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
				q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
				o[2 + j] = (uint8_t)(q0 | (q1 << 4));
			}
		}
		break;
	case GGML_TYPE_Q4_1:
		for (size_t b = 0; b < n / QK; b++, src += QK, o += sizeof(block_q4_1)) {
			float min = src[0], max = src[0];
			for (int j = 1; j < QK; j++) {
				min = fminf(min, src[j]);
				max = fmaxf(max, src[j]);
			}
			float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
			store_f16(o, d);
			store_f16(o + 2, min);
			for (int j = 0; j < QK / 2; j++) {
				int q0 = (int)((src[j] - min) * id + 0.5f);
				int q1 = (int)((src[j + QK / 2] - min) * id + 0.5f);
				q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
				q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
				o[4 + j] = (uint8_t)(q0 | (q1 << 4));
			}
		}
		break;
	}
	return OS_OK;
}

/* ---- writer ------------------------------------------------------------------------- */

typedef struct wkv {
	char *key;
	uint32_t type;
	uint8_t *val;   /* the value exactly as encoded in the file */
	size_t val_size;
} wkv;

typedef struct wtensor {
	char *name;
	uint32_t type;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];
	const void *data; /* borrowed */
	size_t n_bytes;
} wtensor;

struct gguf_writer {
	wkv *kv;
	size_t n_kv, cap_kv;
	wtensor *t;
	size_t n_t, cap_t;
	os_error first_err; /* the first failure of a setter, reported by gguf_writer_write */
};

int gguf_writer_new(gguf_writer **out, os_error *err)
{
	*out = calloc(1, sizeof **out);
	if (!*out)
		return os_error_set(err, OS_ENOMEM, "out of memory creating a GGUF writer");
	return OS_OK;
}

void gguf_writer_free(gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].val);
	}
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->kv);
	free(w->t);
	free(w);
}

/* Remembers the first setter failure so gguf_writer_write can report it. */
static int w_fail(gguf_writer *w, int rc, const char *fmt, const char *arg)
{
	if (w->first_err.rc == OS_OK)
		os_error_set(&w->first_err, rc, fmt, arg);
	return rc;
}

/* Sets key to an encoded value (val is consumed on success and on failure). */
static int w_set(gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t size)
{
	if (!val)
		return w_fail(w, OS_ENOMEM, "out of memory setting key '%s'", key);
	if (!key || !*key) {
		free(val);
		return w_fail(w, OS_EUSAGE, "empty key name%s", "");
	}
	for (size_t i = 0; i < w->n_kv; i++)
		if (strcmp(w->kv[i].key, key) == 0) {
			free(w->kv[i].val);
			w->kv[i].type = type;
			w->kv[i].val = val;
			w->kv[i].val_size = size;
			return OS_OK;
		}
	if (w->n_kv == w->cap_kv) {
		size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
		wkv *p = realloc(w->kv, cap * sizeof *p);
		if (!p) {
			free(val);
			return w_fail(w, OS_ENOMEM, "out of memory setting key '%s'", key);
		}
		w->kv = p;
		w->cap_kv = cap;
	}
	char *k = strdup(key);
	if (!k) {
		free(val);
		return w_fail(w, OS_ENOMEM, "out of memory setting key '%s'", key);
	}
	w->kv[w->n_kv++] = (wkv){ .key = k, .type = type, .val = val, .val_size = size };
	return OS_OK;
}

static int w_set_scalar(gguf_writer *w, const char *key, uint32_t type, const void *v,
			size_t size)
{
	uint8_t *val = malloc(size);
	if (val)
		memcpy(val, v, size);
	return w_set(w, key, type, val, size);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
	return w_set_scalar(w, key, GGUF_TYPE_UINT32, &v, 4);
}

int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
	return w_set_scalar(w, key, GGUF_TYPE_INT32, &v, 4);
}

int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
	return w_set_scalar(w, key, GGUF_TYPE_UINT64, &v, 8);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
	return w_set_scalar(w, key, GGUF_TYPE_FLOAT32, &v, 4);
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
	uint8_t b = v ? 1 : 0;
	return w_set_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

int gguf_writer_set_value(gguf_writer *w, const char *key, enum gguf_type type, const void *v)
{
	size_t sz = scalar_size(type);
	if (!sz)
		return w_fail(w, OS_EUSAGE,
			      "gguf_writer_set_value: key '%s' needs a numeric or bool type", key);
	return w_set_scalar(w, key, type, v, sz);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s)
{
	size_t len = strlen(s);
	uint64_t l = len;
	uint8_t *val = malloc(8 + len);
	if (val) {
		memcpy(val, &l, 8);
		memcpy(val + 8, s, len);
	}
	return w_set(w, key, GGUF_TYPE_STRING, val, 8 + len);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_type elem_type,
			const void *data, size_t n)
{
	size_t esz = scalar_size(elem_type);
	if (!esz)
		return w_fail(w, OS_EUSAGE,
			      "gguf_writer_set_arr: key '%s' needs a numeric element type", key);
	if (n > (SIZE_MAX - 12) / esz)
		return w_fail(w, OS_ERANGE, "array for key '%s' is too large", key);
	uint32_t et = elem_type;
	uint64_t cnt = n;
	uint8_t *val = malloc(12 + n * esz);
	if (val) {
		memcpy(val, &et, 4);
		memcpy(val + 4, &cnt, 8);
		if (n)
			memcpy(val + 12, data, n * esz);
	}
	return w_set(w, key, GGUF_TYPE_ARRAY, val, 12 + n * esz);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, size_t n)
{
	size_t size = 12;
	for (size_t i = 0; i < n; i++)
		size += 8 + strlen(strs[i]);
	uint8_t *val = malloc(size);
	if (val) {
		uint32_t et = GGUF_TYPE_STRING;
		uint64_t cnt = n;
		memcpy(val, &et, 4);
		memcpy(val + 4, &cnt, 8);
		size_t at = 12;
		for (size_t i = 0; i < n; i++) {
			uint64_t l = strlen(strs[i]);
			memcpy(val + at, &l, 8);
			memcpy(val + at + 8, strs[i], (size_t)l);
			at += 8 + (size_t)l;
		}
	}
	return w_set(w, key, GGUF_TYPE_ARRAY, val, size);
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, const char *skip_prefix)
{
	size_t skip = skip_prefix ? strlen(skip_prefix) : 0;
	for (size_t i = 0; i < src->n_kv; i++) {
		const gguf_kv *kv = &src->kv[i];
		if (skip && strncmp(kv->key, skip_prefix, skip) == 0)
			continue;
		/* v2 and v3 encode values identically, so the bytes copy verbatim */
		uint8_t *val = malloc(kv->val_size ? kv->val_size : 1);
		if (val)
			memcpy(val, src->base + kv->val_off, kv->val_size);
		int rc = w_set(w, kv->key, kv->type, val, kv->val_size);
		if (rc)
			return rc;
	}
	return OS_OK;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
			   const uint64_t *ne, const void *data, size_t n_bytes)
{
	if (!name || !*name)
		return w_fail(w, OS_EUSAGE, "tensor with an empty name%s", "");
	if (!ggml_type_known(type))
		return w_fail(w, OS_EUSAGE, "tensor '%s' has an unknown type", name);
	if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
		return w_fail(w, OS_EUSAGE, "tensor '%s' needs 1..4 dimensions", name);
	uint64_t n = 1;
	for (uint32_t d = 0; d < n_dims; d++) {
		if (ne[d] && n > (uint64_t)INT64_MAX / ne[d])
			return w_fail(w, OS_EUSAGE, "tensor '%s' element count overflows", name);
		n *= ne[d];
	}
	size_t be = ggml_type_block_elems(type);
	if (ne[0] % be)
		return w_fail(w, OS_EUSAGE,
			      "tensor '%s' ne[0] is not a multiple of its type's block size", name);
	if (n / be > SIZE_MAX / ggml_type_block_bytes(type) ||
	    n_bytes != (size_t)(n / be) * ggml_type_block_bytes(type))
		return w_fail(w, OS_EUSAGE, "tensor '%s' n_bytes does not match its shape and type",
			      name);
	for (size_t i = 0; i < w->n_t; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return w_fail(w, OS_EEXISTS, "duplicate tensor name '%s'", name);
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? 2 * w->cap_t : 64;
		wtensor *p = realloc(w->t, cap * sizeof *p);
		if (!p)
			return w_fail(w, OS_ENOMEM, "out of memory adding tensor '%s'", name);
		w->t = p;
		w->cap_t = cap;
	}
	wtensor *t = &w->t[w->n_t];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	if (!t->name)
		return w_fail(w, OS_ENOMEM, "out of memory adding tensor '%s'", name);
	t->type = type;
	t->n_dims = n_dims;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
	t->data = data;
	t->n_bytes = n_bytes;
	w->n_t++;
	return OS_OK;
}

/* Buffered output that remembers the first failure (errno) of fwrite. */
typedef struct wout {
	FILE *fp;
	int err; /* errno of the first failure, 0 if none */
	size_t pos;
} wout;

static void out_bytes(wout *o, const void *p, size_t n)
{
	if (o->err || n == 0)
		return;
	errno = 0;
	if (fwrite(p, 1, n, o->fp) != n)
		o->err = errno ? errno : EIO;
	o->pos += n;
}

static void out_u32(wout *o, uint32_t v) { out_bytes(o, &v, 4); }
static void out_u64(wout *o, uint64_t v) { out_bytes(o, &v, 8); }

static void out_str(wout *o, const char *s)
{
	size_t n = strlen(s);
	out_u64(o, n);
	out_bytes(o, s, n);
}

static void out_pad(wout *o, size_t align)
{
	static const uint8_t zeros[64];
	size_t pad = (align - o->pos % align) % align;
	while (pad && !o->err) {
		size_t k = pad < sizeof zeros ? pad : sizeof zeros;
		out_bytes(o, zeros, k);
		pad -= k;
	}
}

static size_t writer_alignment(const gguf_writer *w, os_error *err, int *rc)
{
	*rc = OS_OK;
	for (size_t i = 0; i < w->n_kv; i++) {
		if (strcmp(w->kv[i].key, "general.alignment") != 0)
			continue;
		uint32_t a;
		if (w->kv[i].type != GGUF_TYPE_UINT32) {
			*rc = os_error_set(err, OS_EUSAGE, "general.alignment must be a uint32");
			return 0;
		}
		memcpy(&a, w->kv[i].val, 4);
		if (a == 0 || (a & (a - 1)) || a > (1u << 30)) {
			*rc = os_error_set(err, OS_EUSAGE,
					   "general.alignment = %u (expected a non-zero power of two)",
					   a);
			return 0;
		}
		return a;
	}
	return GGUF_DEFAULT_ALIGNMENT;
}

int gguf_writer_write(gguf_writer *w, const char *path, os_error *err)
{
	if (w->first_err.rc != OS_OK)
		return os_error_set(err, w->first_err.rc, "cannot write '%s': %s", path,
				    w->first_err.msg);
	int rc;
	size_t align = writer_alignment(w, err, &rc);
	if (rc)
		return rc;
	size_t plen = strlen(path) + 32;
	char *tmp = malloc(plen);
	if (!tmp)
		return os_error_set(err, OS_ENOMEM, "out of memory writing '%s'", path);
	snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
	wout o = { 0 };
	o.fp = fopen(tmp, "wb");
	if (!o.fp) {
		rc = os_error_set(err, OS_EIO, "cannot create '%s': %s", tmp, strerror(errno));
		free(tmp);
		return rc;
	}
	out_u32(&o, GGUF_MAGIC);
	out_u32(&o, 3);
	out_u64(&o, w->n_t);
	out_u64(&o, w->n_kv);
	for (size_t i = 0; i < w->n_kv; i++) {
		out_str(&o, w->kv[i].key);
		out_u32(&o, w->kv[i].type);
		out_bytes(&o, w->kv[i].val, w->kv[i].val_size);
	}
	size_t off = 0;
	for (size_t i = 0; i < w->n_t; i++) {
		const wtensor *t = &w->t[i];
		out_str(&o, t->name);
		out_u32(&o, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			out_u64(&o, t->ne[d]);
		out_u32(&o, t->type);
		out_u64(&o, off);
		off += t->n_bytes;
		off += (align - off % align) % align;
	}
	out_pad(&o, align);
	for (size_t i = 0; i < w->n_t; i++) {
		out_bytes(&o, w->t[i].data, w->t[i].n_bytes);
		if (i + 1 < w->n_t)
			out_pad(&o, align);
	}
	int e = o.err;
	if (!e && fflush(o.fp) != 0)
		e = errno ? errno : EIO;
	if (!e && fsync(fileno(o.fp)) != 0)
		e = errno;
	if (fclose(o.fp) != 0 && !e)
		e = errno ? errno : EIO;
	if (!e && rename(tmp, path) != 0)
		e = errno;
	if (e) {
		unlink(tmp);
		rc = os_error_set(err, OS_EIO, "cannot write '%s': %s", path, strerror(e));
		free(tmp);
		return rc;
	}
	free(tmp);
	/* make the rename itself durable; a failure here leaves a complete file, so it is
	 * not reported */
	char *dir = strdup(path);
	if (dir) {
		char *slash = strrchr(dir, '/');
		const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
		int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
	return OS_OK;
}
