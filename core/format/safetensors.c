/* safetensors.c: the safetensors reader. Layout: u64 little-endian header length N, N bytes
 * of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the byte
 * buffer that data_offsets index into. Sharded sets are resolved here too. */
#include "safetensors.h"
#include "textfile.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct safetensors_file {
	char *path;                         /* owned; used in every message */
	const uint8_t *base;                /* whole file (mapping or caller buffer) */
	size_t size;                        /* bytes */
	bool mapped;                        /* base is our mapping, unmapped at close */
	const uint8_t *data;                /* the byte buffer after the header */
	size_t data_size;                   /* bytes */
	safetensors_tensor *tensors;        /* n_tensors, header order; names owned */
	size_t n_tensors;
	const safetensors_tensor **sorted;  /* n_tensors, by name, for lookup */
	char **meta_keys, **meta_values;    /* n_meta each, owned */
	size_t n_meta;
};

static const char *const dtype_names[ST_N_DTYPES] = {
	[ST_BOOL] = "BOOL", [ST_U8] = "U8", [ST_I8] = "I8", [ST_F8_E5M2] = "F8_E5M2",
	[ST_F8_E4M3] = "F8_E4M3", [ST_I16] = "I16", [ST_U16] = "U16", [ST_F16] = "F16",
	[ST_BF16] = "BF16", [ST_I32] = "I32", [ST_U32] = "U32", [ST_F32] = "F32",
	[ST_F64] = "F64", [ST_I64] = "I64", [ST_U64] = "U64",
};
static const unsigned char dtype_sizes[ST_N_DTYPES] = {
	[ST_BOOL] = 1, [ST_U8] = 1, [ST_I8] = 1, [ST_F8_E5M2] = 1, [ST_F8_E4M3] = 1,
	[ST_I16] = 2, [ST_U16] = 2, [ST_F16] = 2, [ST_BF16] = 2, [ST_I32] = 4, [ST_U32] = 4,
	[ST_F32] = 4, [ST_F64] = 8, [ST_I64] = 8, [ST_U64] = 8,
};

const char *st_dtype_name(enum st_dtype t)
{
	return (unsigned)t < ST_N_DTYPES ? dtype_names[t] : NULL;
}

size_t st_dtype_size(enum st_dtype t)
{
	return (unsigned)t < ST_N_DTYPES ? dtype_sizes[t] : 0;
}

bool st_dtype_parse(const char *s, enum st_dtype *out)
{
	for (int t = 0; t < ST_N_DTYPES; t++) {
		if (strcmp(s, dtype_names[t]) == 0) {
			*out = (enum st_dtype)t;
			return true;
		}
	}
	return false;
}

/* "a string", "a number" ... for messages about a JSON value of the wrong kind. */
static const char *json_kind(const cJSON *v)
{
	if (!v)
		return "missing";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsObject(v))
		return "an object";
	return "an unknown value";
}

/* A JSON number that is an exact non-negative integer representable in a double. */
static bool json_to_u64(const cJSON *v, uint64_t *out)
{
	if (!cJSON_IsNumber(v))
		return false;
	double d = v->valuedouble;
	if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
		return false;
	*out = (uint64_t)d;
	return true;
}

static int cmp_tensor_ptr(const void *a, const void *b)
{
	const safetensors_tensor *x = *(const safetensors_tensor *const *)a;
	const safetensors_tensor *y = *(const safetensors_tensor *const *)b;
	return strcmp(x->name, y->name);
}

/* Formats shape as "[2, 3]" into buf (truncated safely). */
static const char *shape_str(const uint64_t *shape, uint32_t n, char *buf, size_t cap)
{
	size_t k = 0;
	int w = snprintf(buf, cap, "[");
	k = w > 0 ? (size_t)w : 0;
	for (uint32_t i = 0; i < n && k < cap; i++) {
		w = snprintf(buf + k, cap - k, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
		if (w < 0)
			break;
		k += (size_t)w;
	}
	if (k < cap)
		snprintf(buf + k, cap - k, "]");
	return buf;
}

/* Fills t from the header entry v (named name), checking every field against the file. */
static int parse_tensor(safetensors_file *f, const char *name, const cJSON *v,
			safetensors_tensor *t, os_error *err)
{
	const char *P = f->path;
	if (!cJSON_IsObject(v))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s' is %s, expected an object with dtype, shape and data_offsets",
				    P, name, json_kind(v));
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(v, "dtype");
	if (!cJSON_IsString(dt))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': dtype is %s, expected a string such as \"F32\"", P,
				    name, json_kind(dt));
	if (!st_dtype_parse(dt->valuestring, &t->dtype))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': dtype '%.32s' is unknown (expected one of BOOL U8 I8 "
				    "F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64)",
				    P, name, dt->valuestring);
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(v, "shape");
	if (!cJSON_IsArray(sh))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': shape is %s, expected an array of integers", P,
				    name, json_kind(sh));
	int nd = cJSON_GetArraySize(sh);
	if (nd > SAFETENSORS_MAX_DIMS)
		return os_error_set(err, OS_EUNSUPPORTED,
				    "'%s': tensor '%s': shape has %d dimensions (expected at most %d)", P,
				    name, nd, SAFETENSORS_MAX_DIMS);
	t->n_dims = (uint32_t)nd;
	t->n_elements = 1;
	uint32_t i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, sh)
	{
		if (!json_to_u64(e, &t->shape[i]))
			return os_error_set(err, OS_EFORMAT,
					    "'%s': tensor '%s': shape[%u] is %s, expected a non-negative integer",
					    P, name, i, cJSON_IsNumber(e) ? "not a whole number >= 0" : json_kind(e));
		if (t->shape[i] && t->n_elements > UINT64_MAX / t->shape[i])
			return os_error_set(err, OS_EFORMAT,
					    "'%s': tensor '%s': shape has too many elements (overflows 64 bits)",
					    P, name);
		t->n_elements *= t->shape[i];
		i++;
	}
	for (; i < SAFETENSORS_MAX_DIMS; i++)
		t->shape[i] = 0;
	const cJSON *off = cJSON_GetObjectItemCaseSensitive(v, "data_offsets");
	uint64_t begin, end;
	if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
	    !json_to_u64(cJSON_GetArrayItem(off, 0), &begin) ||
	    !json_to_u64(cJSON_GetArrayItem(off, 1), &end))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': data_offsets is %s, expected [begin, end] (two "
				    "non-negative integers)",
				    P, name, cJSON_IsArray(off) ? "malformed" : json_kind(off));
	if (begin > end)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': data_offsets [%llu, %llu] has begin after end", P,
				    name, (unsigned long long)begin, (unsigned long long)end);
	if (end > f->data_size)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': data_offsets end %llu is past the end of the data "
				    "(expected at most %zu)",
				    P, name, (unsigned long long)end, f->data_size);
	size_t esz = st_dtype_size(t->dtype);
	char sbuf[160];
	if (t->n_elements > UINT64_MAX / esz || t->n_elements * esz != end - begin)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': tensor '%s': data_offsets span %llu bytes, expected %llu "
				    "(shape %s of %s)",
				    P, name, (unsigned long long)(end - begin),
				    t->n_elements > UINT64_MAX / esz ? 0ull
								      : (unsigned long long)(t->n_elements * esz),
				    shape_str(t->shape, t->n_dims, sbuf, sizeof sbuf), dtype_names[t->dtype]);
	t->offset = begin;
	t->n_bytes = (size_t)(end - begin);
	t->data = f->data + begin;
	t->file = f->path;
	return OS_OK;
}

static int parse_metadata(safetensors_file *f, const cJSON *v, os_error *err)
{
	if (!cJSON_IsObject(v))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': __metadata__ is %s, expected an object of strings", f->path,
				    json_kind(v));
	size_t n = (size_t)cJSON_GetArraySize(v);
	f->meta_keys = calloc(n ? n : 1, sizeof *f->meta_keys);
	f->meta_values = calloc(n ? n : 1, sizeof *f->meta_values);
	if (!f->meta_keys || !f->meta_values)
		return os_error_set(err, OS_ENOMEM, "'%s': out of memory reading __metadata__", f->path);
	const cJSON *e;
	cJSON_ArrayForEach(e, v)
	{
		if (!cJSON_IsString(e))
			return os_error_set(err, OS_EFORMAT,
					    "'%s': __metadata__ '%.64s' is %s, expected a string", f->path,
					    e->string, json_kind(e));
		f->meta_keys[f->n_meta] = strdup(e->string);
		f->meta_values[f->n_meta] = strdup(e->valuestring);
		f->n_meta++;
		if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
			return os_error_set(err, OS_ENOMEM, "'%s': out of memory reading __metadata__",
					    f->path);
	}
	return OS_OK;
}

/* Parses and checks the header of f->base[0, f->size). */
static int parse_file(safetensors_file *f, os_error *err)
{
	const char *P = f->path;
	int rc = OS_OK;
	char *hdr = NULL;
	cJSON *root = NULL;
	if (f->size < 8)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': file is %zu bytes, too small for a safetensors header (expected at "
				    "least 8); is this a safetensors file?",
				    P, f->size);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | f->base[i];
	if (n > f->size - 8)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': header length %llu is past the end of the file (expected at most "
				    "%zu); is this a safetensors file?",
				    P, (unsigned long long)n, f->size - 8);
	if (n > SAFETENSORS_MAX_HEADER_BYTES)
		return os_error_set(err, OS_EFORMAT,
				    "'%s': header length %llu is too large (expected at most %llu)", P,
				    (unsigned long long)n, (unsigned long long)SAFETENSORS_MAX_HEADER_BYTES);
	if (n < 2 || f->base[8] != '{')
		return os_error_set(err, OS_EFORMAT,
				    "'%s': header does not start with '{' (expected a JSON object); is this a "
				    "safetensors file?",
				    P);
	f->data = f->base + 8 + n;
	f->data_size = f->size - 8 - (size_t)n;
	/* parse a NUL-terminated copy so the JSON parser never reads past the header */
	hdr = malloc((size_t)n + 1);
	if (!hdr)
		return os_error_set(err, OS_ENOMEM, "'%s': out of memory for a %llu-byte header", P,
				    (unsigned long long)n);
	memcpy(hdr, f->base + 8, (size_t)n);
	hdr[n] = '\0';
	const char *end = NULL;
	root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
	if (!root) {
		size_t at = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : 0;
		rc = os_error_set(err, OS_EFORMAT, "'%s': header is not valid JSON (error near byte %zu of %llu)",
				  P, at, (unsigned long long)n);
		goto fail;
	}
	for (const char *p = end; p && p < hdr + n; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			rc = os_error_set(err, OS_EFORMAT,
					  "'%s': header has bytes after its JSON object (at byte %zu of %llu; "
					  "expected only space padding)",
					  P, (size_t)(p - hdr), (unsigned long long)n);
			goto fail;
		}
	}
	if (!cJSON_IsObject(root)) {
		rc = os_error_set(err, OS_EFORMAT, "'%s': header is %s, expected a JSON object", P,
				  json_kind(root));
		goto fail;
	}
	size_t n_items = (size_t)cJSON_GetArraySize(root);
	f->tensors = calloc(n_items ? n_items : 1, sizeof *f->tensors);
	f->sorted = calloc(n_items ? n_items : 1, sizeof *f->sorted);
	if (!f->tensors || !f->sorted) {
		rc = os_error_set(err, OS_ENOMEM, "'%s': out of memory for %zu tensors", P, n_items);
		goto fail;
	}
	bool seen_meta = false;
	const cJSON *e;
	cJSON_ArrayForEach(e, root)
	{
		if (strcmp(e->string, "__metadata__") == 0) {
			if (seen_meta) {
				rc = os_error_set(err, OS_EFORMAT, "'%s': __metadata__ appears twice", P);
				goto fail;
			}
			seen_meta = true;
			if ((rc = parse_metadata(f, e, err)))
				goto fail;
			continue;
		}
		safetensors_tensor *t = &f->tensors[f->n_tensors];
		if ((rc = parse_tensor(f, e->string, e, t, err)))
			goto fail;
		t->name = strdup(e->string);
		if (!t->name) {
			rc = os_error_set(err, OS_ENOMEM, "'%s': out of memory", P);
			goto fail;
		}
		f->sorted[f->n_tensors] = t;
		f->n_tensors++;
	}
	qsort(f->sorted, f->n_tensors, sizeof *f->sorted, cmp_tensor_ptr);
	for (size_t i = 1; i < f->n_tensors; i++) {
		if (strcmp(f->sorted[i - 1]->name, f->sorted[i]->name) == 0) {
			rc = os_error_set(err, OS_EFORMAT,
					  "'%s': tensor '%s' appears twice in the header (expected unique names)",
					  P, f->sorted[i]->name);
			goto fail;
		}
	}
fail:
	cJSON_Delete(root);
	free(hdr);
	return rc;
}

void safetensors_close(safetensors_file *f)
{
	if (!f)
		return;
	if (f->mapped && f->base)
		munmap((void *)f->base, f->size);
	for (size_t i = 0; i < f->n_tensors; i++)
		free((void *)f->tensors[i].name);
	for (size_t i = 0; i < f->n_meta; i++) {
		free(f->meta_keys[i]);
		free(f->meta_values[i]);
	}
	free(f->meta_keys);
	free(f->meta_values);
	free(f->tensors);
	free(f->sorted);
	free(f->path);
	free(f);
}

int safetensors_open_buffer(safetensors_file **out, const void *buf, size_t size,
			    const char *name, os_error *err)
{
	*out = NULL;
	safetensors_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(name ? name : "(buffer)"))) {
		free(f);
		return os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", name ? name : "(buffer)");
	}
	f->base = buf;
	f->size = size;
	int rc = parse_file(f, err);
	if (rc) {
		safetensors_close(f);
		return rc;
	}
	*out = f;
	return OS_OK;
}

int safetensors_open(safetensors_file **out, const char *path, os_error *err)
{
	*out = NULL;
	int rc = OS_OK;
	safetensors_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", path);
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO, "cannot open '%s': %s",
				  path, strerror(errno));
		goto fail;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = os_error_set(err, OS_EIO, "cannot stat '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = os_error_set(err, OS_EIO, "cannot open '%s': %s", path,
				  S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
		goto fail;
	}
	f->size = (size_t)st.st_size;
	if (f->size >= 8) {
		void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			rc = os_error_set(err, OS_EIO, "cannot map '%s' (%zu bytes): %s", path, f->size,
					  strerror(errno));
			goto fail;
		}
		f->base = m;
		f->mapped = true;
	}
	rc = parse_file(f, err);
fail:
	if (fd >= 0)
		close(fd);
	if (rc) {
		safetensors_close(f);
		return rc;
	}
	*out = f;
	return OS_OK;
}

const char *safetensors_path(const safetensors_file *f)
{
	return f->path;
}

size_t safetensors_file_size(const safetensors_file *f)
{
	return f->size;
}

size_t safetensors_n_tensors(const safetensors_file *f)
{
	return f->n_tensors;
}

const safetensors_tensor *safetensors_tensor_at(const safetensors_file *f, size_t i)
{
	return i < f->n_tensors ? &f->tensors[i] : NULL;
}

/* Binary search over a by-name sorted array of n tensor pointers. */
static const safetensors_tensor *find_sorted(const safetensors_tensor *const *sorted, size_t n,
					     const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(sorted[mid]->name, name);
		if (c == 0)
			return sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const safetensors_tensor *safetensors_find_tensor(const safetensors_file *f, const char *name)
{
	return find_sorted(f->sorted, f->n_tensors, name);
}

size_t safetensors_n_metadata(const safetensors_file *f)
{
	return f->n_meta;
}

void safetensors_metadata_at(const safetensors_file *f, size_t i, const char **key,
			     const char **value)
{
	*key = i < f->n_meta ? f->meta_keys[i] : NULL;
	*value = i < f->n_meta ? f->meta_values[i] : NULL;
}

const char *safetensors_metadata_get(const safetensors_file *f, const char *key)
{
	for (size_t i = 0; i < f->n_meta; i++)
		if (strcmp(f->meta_keys[i], key) == 0)
			return f->meta_values[i];
	return NULL;
}

/* --- sets of shards --------------------------------------------------------------------- */

struct safetensors_set {
	safetensors_file **files;            /* n_files, owned */
	size_t n_files;
	const safetensors_tensor **all;      /* n_all, file by file */
	const safetensors_tensor **sorted;   /* n_all, by name */
	size_t n_all;
};

#define INDEX_NAME "model.safetensors.index.json"
#define INDEX_MAX_BYTES ((size_t)64 << 20)

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void safetensors_set_close(safetensors_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_files; i++)
		safetensors_close(s->files[i]);
	free(s->files);
	free(s->all);
	free(s->sorted);
	free(s);
}

/* Opens dir/name[i] for each i into s->files. */
static int open_shards(safetensors_set *s, const char *dir, char **names, size_t n, os_error *err)
{
	s->files = calloc(n ? n : 1, sizeof *s->files);
	if (!s->files)
		return os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
	for (size_t i = 0; i < n; i++) {
		size_t plen = strlen(dir) + strlen(names[i]) + 2;
		char *p = malloc(plen);
		if (!p)
			return os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		snprintf(p, plen, "%s/%s", dir, names[i]);
		int rc = safetensors_open(&s->files[i], p, err);
		free(p);
		if (rc)
			return rc;
		s->n_files++;
	}
	return OS_OK;
}

/* The shard names listed by the index's weight_map, sorted and unique, into *names. */
static int read_index(const char *index_path, cJSON **root_out, char ***names, size_t *n_names,
		      os_error *err)
{
	char *text = NULL;
	int rc = format_read_text_file(index_path, INDEX_MAX_BYTES, &text, NULL, err);
	if (rc)
		return rc;
	cJSON *root = cJSON_Parse(text);
	free(text);
	*root_out = root;
	if (!cJSON_IsObject(root))
		return os_error_set(err, OS_EFORMAT, "'%s' is not a JSON object (expected {\"weight_map\": {...}})",
				    index_path);
	const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(wm))
		return os_error_set(err, OS_EFORMAT,
				    "'%s': weight_map is %s, expected an object of tensor name -> file name",
				    index_path, json_kind(wm));
	size_t n = (size_t)cJSON_GetArraySize(wm);
	char **v = calloc(n ? n : 1, sizeof *v);
	if (!v)
		return os_error_set(err, OS_ENOMEM, "out of memory reading '%s'", index_path);
	*names = v;
	size_t k = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, wm)
	{
		if (!cJSON_IsString(e))
			return os_error_set(err, OS_EFORMAT,
					    "'%s': weight_map '%.64s' is %s, expected a file name", index_path,
					    e->string, json_kind(e));
		const char *fn = e->valuestring;
		if (!fn[0] || strchr(fn, '/') || strcmp(fn, ".") == 0 || strcmp(fn, "..") == 0)
			return os_error_set(err, OS_EFORMAT,
					    "'%s': weight_map '%.64s' names '%.64s' (expected a plain file name "
					    "in the same folder)",
					    index_path, e->string, fn);
		v[k++] = e->valuestring; /* borrowed from root */
	}
	qsort(v, k, sizeof *v, cmp_str_ptr);
	size_t u = 0;
	for (size_t i = 0; i < k; i++)
		if (u == 0 || strcmp(v[u - 1], v[i]) != 0)
			v[u++] = v[i];
	*n_names = u;
	return OS_OK;
}

int safetensors_set_open(safetensors_set **out, const char *dir, os_error *err)
{
	*out = NULL;
	int rc = OS_OK;
	cJSON *index = NULL;
	char **names = NULL;
	size_t n_names = 0;
	bool names_owned = false;
	char *index_path = NULL;
	DIR *d = NULL;
	safetensors_set *s = calloc(1, sizeof *s);
	size_t plen = strlen(dir) + sizeof INDEX_NAME + 2;
	index_path = malloc(plen);
	if (!s || !index_path) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		goto fail;
	}
	snprintf(index_path, plen, "%s/%s", dir, INDEX_NAME);
	struct stat st;
	if (stat(index_path, &st) == 0) {
		if ((rc = read_index(index_path, &index, &names, &n_names, err)))
			goto fail;
	} else {
		d = opendir(dir);
		if (!d) {
			rc = os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO,
					  "cannot open folder '%s': %s", dir, strerror(errno));
			goto fail;
		}
		names_owned = true;
		size_t cap = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			size_t len = strlen(de->d_name);
			if (len <= 12 || strcmp(de->d_name + len - 12, ".safetensors") != 0 ||
			    de->d_name[0] == '.')
				continue;
			if (n_names == cap) {
				cap = cap ? 2 * cap : 8;
				char **nv = realloc(names, cap * sizeof *nv);
				if (!nv) {
					rc = os_error_set(err, OS_ENOMEM, "out of memory listing '%s'", dir);
					goto fail;
				}
				names = nv;
			}
			if (!(names[n_names] = strdup(de->d_name))) {
				rc = os_error_set(err, OS_ENOMEM, "out of memory listing '%s'", dir);
				goto fail;
			}
			n_names++;
		}
		if (n_names == 0) {
			rc = os_error_set(err, OS_ENOTFOUND,
					  "'%s' has no *.safetensors files (expected model.safetensors or shards)",
					  dir);
			goto fail;
		}
		qsort(names, n_names, sizeof *names, cmp_str_ptr);
	}
	if ((rc = open_shards(s, dir, names, n_names, err)))
		goto fail;
	for (size_t i = 0; i < s->n_files; i++)
		s->n_all += s->files[i]->n_tensors;
	s->all = calloc(s->n_all ? s->n_all : 1, sizeof *s->all);
	s->sorted = calloc(s->n_all ? s->n_all : 1, sizeof *s->sorted);
	if (!s->all || !s->sorted) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory opening '%s'", dir);
		goto fail;
	}
	size_t k = 0;
	for (size_t i = 0; i < s->n_files; i++)
		for (size_t j = 0; j < s->files[i]->n_tensors; j++, k++)
			s->all[k] = s->sorted[k] = &s->files[i]->tensors[j];
	qsort(s->sorted, s->n_all, sizeof *s->sorted, cmp_tensor_ptr);
	for (size_t i = 1; i < s->n_all; i++) {
		if (strcmp(s->sorted[i - 1]->name, s->sorted[i]->name) == 0) {
			rc = os_error_set(err, OS_EFORMAT, "tensor '%s' is in both '%s' and '%s' (expected once)",
					  s->sorted[i]->name, s->sorted[i - 1]->file, s->sorted[i]->file);
			goto fail;
		}
	}
	if (index) {
		const cJSON *e;
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(index, "weight_map"))
		{
			const safetensors_tensor *t = find_sorted(s->sorted, s->n_all, e->string);
			const char *base = t ? strrchr(t->file, '/') : NULL;
			base = base ? base + 1 : (t ? t->file : NULL);
			if (!t || strcmp(base, e->valuestring) != 0) {
				if (t)
					rc = os_error_set(err, OS_EFORMAT,
							  "'%s': weight_map puts tensor '%.64s' in '%.64s', but it is in '%s'",
							  index_path, e->string, e->valuestring, t->file);
				else
					rc = os_error_set(err, OS_EFORMAT,
							  "'%s': weight_map puts tensor '%.64s' in '%.64s', which has no such tensor",
							  index_path, e->string, e->valuestring);
				goto fail;
			}
		}
	}
	*out = s;
	s = NULL;
fail:
	if (d)
		closedir(d);
	if (names_owned)
		for (size_t i = 0; i < n_names; i++)
			free(names[i]);
	free(names);
	cJSON_Delete(index);
	free(index_path);
	safetensors_set_close(s);
	return rc;
}

size_t safetensors_set_n_files(const safetensors_set *s)
{
	return s->n_files;
}

const safetensors_file *safetensors_set_file(const safetensors_set *s, size_t i)
{
	return i < s->n_files ? s->files[i] : NULL;
}

size_t safetensors_set_n_tensors(const safetensors_set *s)
{
	return s->n_all;
}

const safetensors_tensor *safetensors_set_tensor_at(const safetensors_set *s, size_t i)
{
	return i < s->n_all ? s->all[i] : NULL;
}

const safetensors_tensor *safetensors_set_find(const safetensors_set *s, const char *name)
{
	return find_sorted(s->sorted, s->n_all, name);
}
