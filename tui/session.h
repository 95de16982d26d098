/* session.h: what the engine commands (run, perplexity, bench-engine) share: a MODEL
 * argument (hub name or path) opened into a model, its tokenizer and chat template, a CPU
 * backend and an engine, with errors printed in the house style. */
#ifndef OPTSTUDIO_SESSION_H
#define OPTSTUDIO_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "core/engine/chat.h"
#include "core/engine/engine.h"
#include "core/engine/tokenizer.h"

typedef struct cli_session_opts {
	const char *model_arg;  /* hub name or GGUF path, as the user typed it */
	size_t n_threads;       /* 0 = online CPUs */
	bool bf16;              /* run-time weights in BF16 instead of F32 */
	int kv_type;            /* enum engine_kv_type: the KV cache type; 0 = the model's */
	bool batch_invariant;   /* the kernels' batch-invariant twins (backend_cpu_opts) */
} cli_session_opts;

/* Everything owned; closed by cli_session_close. */
typedef struct cli_session {
	char *path;             /* resolved file path */
	model *m;
	tokenizer *tok;
	chat_template chat;     /* style CHAT_STYLE_UNKNOWN when the model has none we know */
	char *chat_note;        /* why there is no chat template, or NULL */
	backend *be;
	engine *e;              /* NULL until cli_session_start_engine */
	double load_s;          /* wall time of reading + dequantizing the model, s */
	int kv_type;            /* enum engine_kv_type the engines are asked for (0: model's) */
	int kv_fmt;             /* enum be_kvfmt their KV caches then use */
} cli_session;

/* Opens the model, tokenizer, chat template and backend (no engine yet: its KV size depends
 * on the work). On failure prints "optstudio: cannot open model '<arg>': <why>" (or the
 * failing step) to stderr, leaves nothing allocated and returns EXIT_FAIL (EXIT_USAGE for a
 * usage problem); EXIT_OK on success. */
int cli_session_open(cli_session *s, const cli_session_opts *o);
/* Makes s->e with a KV cache of kv_blocks blocks of KV_DEFAULT_BLOCK_TOKENS positions
 * (a sequence of L tokens takes ceil(L / 16) of them) and max_batch tokens per pass (0: the
 * engine's default). Prints the error and returns EXIT_FAIL on failure. */
int cli_session_start_engine(cli_session *s, size_t kv_blocks, size_t max_batch);
/* Frees everything; a zeroed session is fine. */
void cli_session_close(cli_session *s);

/* Bytes of KV cache one token position takes (K and V, every layer) in the session's KV
 * type (elements, and the FP8 / INT8 scales, as kv_cache_new counts them). */
size_t cli_session_kv_bytes_per_token(const cli_session *s);

/* The --kv option of the engine commands: "f32", "bf16", "fp8" or "int8" into *kv_type
 * (enum engine_kv_type). false for anything else. */
bool cli_parse_kv_type(const char *name, int *kv_type);

/* Parses a whole non-negative decimal (size_t) or finite float option; false when malformed. */
bool cli_parse_size(const char *s, size_t *out);
bool cli_parse_float(const char *s, float *out);

/* Seconds on the monotonic clock. */
double cli_now_s(void);

#endif
