/* self_draft.c: building, caching and checking the quantized self-copy of a target that
 * serves as its speculative draft (self_draft.h). */
#include "self_draft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/format/gguf.h"
#include "core/format/sha256.h"

int self_draft_recipe(const char *kind, quant_recipe *out, os_error *err)
{
	quant_method m;
	if (!strcmp(kind, "int8"))
		m = QUANT_INT8_RTN;
	else if (!strcmp(kind, "int4"))
		m = QUANT_INT4_RTN;
	else if (!strcmp(kind, "fp8"))
		m = QUANT_FP8;
	else
		return os_error_set(err, OS_EUSAGE, "self-draft '%s' is unknown (expected int8, int4 "
				    "or fp8)", kind);
	*out = quant_recipe_default(m);
	out->head = QUANT_HEAD_METHOD;
	return OS_OK;
}

static bool is_hex64(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 64;
}

int self_draft_path(const char *artifacts_dir, const char *parent_sha256, const quant_recipe *r,
		    char *buf, size_t len, os_error *err)
{
	if (!parent_sha256 || !is_hex64(parent_sha256))
		return os_error_set(err, OS_EUSAGE, "self-draft key: parent digest '%s' is not 64 "
				    "lower-case hex digits", parent_sha256 ? parent_sha256 : "(null)");
	int n = snprintf(buf, len, "%s/draft-%.16s-%s.gguf", artifacts_dir, parent_sha256,
			 quant_method_name(r->method));
	if (n < 0 || (size_t)n >= len)
		return os_error_set(err, OS_ERANGE, "self-draft path under '%s' is too long",
				    artifacts_dir);
	return OS_OK;
}

/* The string metadata key of f, or NULL when absent or not a string. */
static const char *meta_str(const gguf_file *f, const char *key, size_t *len)
{
	const char *s;
	os_error e;
	if (gguf_find_key(f, key) < 0 || gguf_get_str(f, key, &s, len, &e) != OS_OK)
		return NULL;
	return s;
}

int self_draft_check(const char *path, const char *parent_sha256, const quant_recipe *r,
		     os_error *err)
{
	gguf_file *f = NULL;
	char *want = NULL;
	int rc = gguf_open(&f, path, err);
	if (rc)
		return rc;
	size_t n;
	const char *sha = meta_str(f, "optstudio.parent.sha256", &n);
	if (!sha || n != strlen(parent_sha256) || memcmp(sha, parent_sha256, n)) {
		rc = os_error_set(err, OS_EFORMAT, "'%s': optstudio.parent.sha256 is %s (expected "
				  "%.16s\u2026, the target's)", path, sha ? "another digest" : "missing",
				  parent_sha256);
		goto done;
	}
	if (!(want = quant_recipe_to_json(r))) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory");
		goto done;
	}
	const char *rec = meta_str(f, "optstudio.recipe", &n);
	if (!rec || n != strlen(want) || memcmp(rec, want, n)) {
		rc = os_error_set(err, OS_EFORMAT, "'%s': optstudio.recipe is %s (expected %s)", path,
				  rec ? "another recipe" : "missing", want);
		goto done;
	}
done:
	free(want);
	gguf_close(f);
	return rc;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes the self-draft of target_path to path (atomic, quant_write_gguf). */
static int build(const char *target_path, const quant_recipe *r, const self_draft_opts *o,
		 const char *sha, const char *path, os_error *err)
{
	gguf_file *src = NULL;
	model *m = NULL;
	char name[256];
	const char *base = strrchr(target_path, '/');
	snprintf(name, sizeof name, "%s", o->parent_name ? o->parent_name
							 : base ? base + 1 : target_path);
	int rc = gguf_open(&src, target_path, err);
	if (rc)
		return rc;
	model_load_opts lo = {.weight_format = BE_WFMT_F32};
	if (!(rc = model_open_gguf(&m, src, &lo, err)))
		rc = quant_write_gguf(m, src, r, name, sha, path, o->progress, o->progress_ctx, err);
	model_close(m);
	gguf_close(src);
	return rc;
}

int self_draft_ensure(const char *target_path, const quant_recipe *r, const self_draft_opts *o,
		      self_draft_result *out, os_error *err)
{
	memset(out, 0, sizeof *out);
	if (!o || !o->artifacts_dir)
		return os_error_set(err, OS_EUSAGE, "self-draft: no artifacts folder given");
	if (quant_method_calibrates(r->method))
		return os_error_set(err, OS_EUSAGE, "self-draft: method %s needs calibration; a "
				    "self-draft is built by round to nearest (int8, int4-rtn, fp8)",
				    quant_method_name(r->method));
	int rc = quant_recipe_check(r, err);
	if (rc)
		return rc;
	if (o->parent_sha256 && is_hex64(o->parent_sha256)) {
		snprintf(out->parent_sha256, sizeof out->parent_sha256, "%s", o->parent_sha256);
	} else if ((rc = sha256_file(target_path, out->parent_sha256, err))) {
		return rc;
	}
	if ((rc = self_draft_path(o->artifacts_dir, out->parent_sha256, r, out->path,
				  sizeof out->path, err)))
		return rc;
	os_error cerr = {0};
	int crc = self_draft_check(out->path, out->parent_sha256, r, &cerr);
	if (crc == OS_OK) {
		out->cached = true;
		return OS_OK;
	}
	if (crc != OS_ENOTFOUND)
		snprintf(out->rebuilt_why, sizeof out->rebuilt_why, "%s", cerr.msg);
	if (mkdir(o->artifacts_dir, 0755) != 0 && errno != EEXIST)
		return os_error_set(err, OS_EIO, "cannot create '%s': %s", o->artifacts_dir,
				    strerror(errno));
	double t0 = now_s();
	if ((rc = build(target_path, r, o, out->parent_sha256, out->path, err)))
		return rc;
	out->build_s = now_s() - t0;
	/* what was written must pass the same check a later run applies */
	if ((rc = self_draft_check(out->path, out->parent_sha256, r, err)))
		return rc;
	return OS_OK;
}
