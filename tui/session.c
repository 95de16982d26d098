/* session.c: opens a MODEL argument into a ready engine for the CLI commands (session.h). */
#include "session.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/cpu/backend_cpu.h"
#include "hub_ops.h"

double cli_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool cli_parse_size(const char *s, size_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > (unsigned long long)SIZE_MAX)
		return false;
	*out = (size_t)v;
	return true;
}

bool cli_parse_float(const char *s, float *out)
{
	if (!s || !*s)
		return false;
	errno = 0;
	char *end;
	float v = strtof(s, &end);
	if (errno || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

size_t cli_session_kv_bytes_per_token(const cli_session *s)
{
	return model_kv_bytes_per_pos(s->m, s->kv_fmt);
}

bool cli_parse_kv_type(const char *name, int *kv_type)
{
	static const struct { const char *name; int type; } types[] = {
		{"f32", ENGINE_KV_F32}, {"bf16", ENGINE_KV_BF16},
		{"fp8", ENGINE_KV_FP8}, {"int8", ENGINE_KV_INT8},
	};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (!strcmp(name, types[i].name)) {
			*kv_type = types[i].type;
			return true;
		}
	return false;
}


/* The hub's path for a name, else the argument itself when it is a readable file. */
static int resolve(const char *arg, char **path, os_error *err)
{
	store *st = NULL;
	os_error herr = {0};
	if (hub_open(&st, &herr) == OS_OK) {
		int rc = hub_resolve_model(st, arg, path, err);
		store_close(st);
		return rc;
	}
	/* no usable data home: a path still works */
	if (access(arg, R_OK) == 0) {
		*path = strdup(arg);
		return *path ? OS_OK : os_error_set(err, OS_ENOMEM, "out of memory");
	}
	return os_error_set(err, herr.rc ? herr.rc : OS_ENOTFOUND,
			    "no such file, and the hub cannot be opened (%s)", os_error_text(&herr));
}

int cli_session_open(cli_session *s, const cli_session_opts *o)
{
	memset(s, 0, sizeof *s);
	os_error err = {0};
	gguf_file *f = NULL;
	int ex = EXIT_FAIL;
	double t0 = cli_now_s();
	if (resolve(o->model_arg, &s->path, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot open model '%s'", o->model_arg);
		goto fail;
	}
	if (gguf_open(&f, s->path, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot open model '%s'", o->model_arg);
		goto fail;
	}
	if (tokenizer_open(&s->tok, f, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot read the tokenizer of '%s'", o->model_arg);
		goto fail;
	}
	if (chat_template_from_gguf(&s->chat, f, &err) != OS_OK) {
		s->chat.style = CHAT_STYLE_UNKNOWN;
		s->chat.default_system = NULL;
		s->chat_note = strdup(os_error_text(&err));
	}
	model_load_opts lo = {.weight_format = o->bf16 ? BE_WFMT_BF16 : BE_WFMT_F32};
	if (model_open_gguf(&s->m, f, &lo, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot load model '%s'", o->model_arg);
		goto fail;
	}
	gguf_close(f);
	f = NULL;
	s->load_s = cli_now_s() - t0;
	s->kv_type = o->kv_type;
	s->kv_fmt = engine_kv_type_format(s->m, o->kv_type);
	backend_cpu_opts bo = {.n_threads = o->n_threads, .batch_invariant = o->batch_invariant};
	if (backend_cpu_new(&s->be, &bo, &err) != OS_OK) {
		ex = cli_fail(&err, "cannot start the CPU backend");
		goto fail;
	}
	return EXIT_OK;
fail:
	gguf_close(f);
	cli_session_close(s);
	return ex;
}

int cli_session_start_engine(cli_session *s, size_t kv_blocks, size_t max_batch)
{
	os_error err = {0};
	size_t bt = KV_DEFAULT_BLOCK_TOKENS;
	engine_opts eo = {
		.max_batch = max_batch,
		.kv_bytes = kv_blocks * bt * cli_session_kv_bytes_per_token(s),
		.kv_block_tokens = bt,
		.kv_type = s->kv_type,
	};
	engine_free(s->e);
	s->e = NULL;
	if (engine_new(&s->e, s->m, s->be, &eo, &err) != OS_OK)
		return cli_fail(&err, "cannot start the engine (%zu KV blocks, batch %zu)", kv_blocks,
				max_batch);
	return EXIT_OK;
}

void cli_session_close(cli_session *s)
{
	engine_free(s->e);
	if (s->be)
		backend_free(s->be);
	model_close(s->m);
	tokenizer_close(s->tok);
	chat_template_free(&s->chat);
	free(s->chat_note);
	free(s->path);
	memset(s, 0, sizeof *s);
}
