/* tokenizer.h: the inference engine's tokenizer, built from GGUF metadata (tokenizer.ggml.*):
 * byte-level BPE (tokenizer.ggml.model = "gpt2": GPT-2, SmolLM2, Llama 3) and SentencePiece
 * style BPE with byte fallback ("llama": Llama 2), special tokens, exact decoding and a
 * streaming decoder that only emits complete UTF-8 sequences. */
#ifndef OPTSTUDIO_TOKENIZER_H
#define OPTSTUDIO_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../errors.h"
#include "../format/gguf.h"

typedef struct tokenizer tokenizer;

/* Token types, numbered as tokenizer.ggml.token_type numbers them (llama.cpp's). */
enum token_type {
	TOKEN_TYPE_UNDEFINED = 0,
	TOKEN_TYPE_NORMAL = 1,
	TOKEN_TYPE_UNKNOWN = 2,
	TOKEN_TYPE_CONTROL = 3,      /* <|im_start|>, <s>: matched in text only with parse_special */
	TOKEN_TYPE_USER_DEFINED = 4, /* added tokens: always matched in text, as llama.cpp does */
	TOKEN_TYPE_UNUSED = 5,
	TOKEN_TYPE_BYTE = 6,         /* SentencePiece byte fallback <0xNN> */
};

enum tokenizer_kind {
	TOKENIZER_KIND_BPE = 0, /* byte-level BPE, merges by rank ("gpt2") */
	TOKENIZER_KIND_SPM = 1, /* SentencePiece BPE, merges by score, byte fallback ("llama") */
};

/* The pre-tokenizer splitting text into words before BPE (byte-level BPE only). */
enum tokenizer_pre {
	TOKENIZER_PRE_GPT2 = 0,        /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
	TOKENIZER_PRE_GPT2_DIGITS = 1, /* every \p{N} its own word, then GPT-2 ("smollm", "starcoder", ...) */
	TOKENIZER_PRE_LLAMA3 = 2,      /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
	                                  | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ ("llama-bpe") */
};

/* A vocabulary as plain data, all borrowed for the duration of tokenizer_open_vocab (which
 * copies what it keeps). Strings are byte ranges (not NUL-terminated): tokens[i] has
 * token_lens[i] bytes. This is what tokenizer_open reads from a GGUF file; tests build
 * small ones by hand. */
typedef struct tokenizer_vocab {
	enum tokenizer_kind kind;
	enum tokenizer_pre pre;
	size_t n_tokens;
	const char *const *tokens;    /* [n_tokens], byte-level BPE tokens in GPT-2's mapped alphabet */
	const size_t *token_lens;     /* [n_tokens] */
	const int32_t *token_types;   /* [n_tokens] enum token_type, or NULL: all NORMAL */
	const float *scores;          /* [n_tokens] SPM merge scores (higher merges first), or NULL */
	size_t n_merges;              /* BPE: merges in rank order, "left right" */
	const char *const *merges;    /* [n_merges] */
	const size_t *merge_lens;     /* [n_merges] */
	int32_t bos_id, eos_id, unk_id, eot_id, eom_id; /* -1 when absent */
	bool add_bos;                 /* tokenizer_encode(add_bos = true) prepends bos_id */
	bool add_space_prefix;        /* SPM: a space before the text and after each special token */
} tokenizer_vocab;

/* Builds a tokenizer from GGUF metadata: tokenizer.ggml.model ("gpt2" or "llama"), .tokens,
 * .token_type, .scores, .merges, .pre, .bos/eos/unknown/eot/eom_token_id, .add_bos_token,
 * .add_space_prefix. Missing or malformed required keys are OS_EFORMAT naming the key; other
 * models (bert, t5, rwkv) are OS_EUNSUPPORTED. An unknown tokenizer.ggml.pre falls back to
 * GPT-2's regex and says so in tokenizer_warning. *out owns copies of everything it needs:
 * f may be closed afterwards. */
int tokenizer_open(tokenizer **out, const gguf_file *f, os_error *err);

/* Builds a tokenizer from a vocabulary described in memory (see tokenizer_vocab). Token ids
 * (bos, eos ...) outside the vocabulary are OS_EFORMAT. Merges naming a token that is not in
 * the vocabulary are skipped (counted in tokenizer_warning). */
int tokenizer_open_vocab(tokenizer **out, const tokenizer_vocab *v, os_error *err);

void tokenizer_close(tokenizer *t);

/* A note about how the tokenizer was built (unknown pre-tokenizer name, skipped merges), or
 * NULL when there is nothing to say. Borrowed, valid until tokenizer_close. */
const char *tokenizer_warning(const tokenizer *t);

/* Encodes len bytes of text (any bytes: invalid UTF-8 is tokenized byte by byte, never
 * rejected) into token ids. add_bos prepends the BOS id when the model asks for one
 * (tokenizer.ggml.add_bos_token) and has one. parse_special: text equal to a control token
 * ("<|im_start|>") becomes that token; without it control tokens are ordinary text.
 * User-defined tokens are always matched. On success *ids is malloc'd (caller frees; it may be
 * NULL when *n_ids is 0). A byte-level vocabulary that lacks one of the 256 byte tokens drops
 * that byte (as the Hugging Face tokenizer does); see tokenizer_covers_all_bytes. SPM: a
 * literal U+2581 in the text is indistinguishable from a space after encoding. Encoding is
 * thread-safe: t is only read. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_bos,
		     bool parse_special, int32_t **ids, size_t *n_ids, os_error *err);

/* The pre-tokenizer alone: cuts text[0..len) into the words BPE then works on, as the regex
 * of `pre` would. On success *ends (malloc'd, caller frees; NULL when *n_words is 0) holds the
 * end offset in bytes of each word; the words are non-empty and cover the text in order.
 * Needs no vocabulary: for tests and for inspecting how a text is cut. */
int tokenizer_split_words(enum tokenizer_pre pre, const char *text, size_t len, size_t **ends,
			  size_t *n_words, os_error *err);

/* The raw bytes a token stands for: byte-level BPE tokens are mapped back to bytes, SPM's
 * U+2581 becomes a space and <0xNN> the byte NN; control and user-defined tokens are their
 * text ("<|im_end|>"). Borrowed, valid until tokenizer_close; NUL-terminated for convenience
 * but may contain NULs, so use *len. NULL (and *len = 0) for an id out of range. */
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);

/* The token's string as stored in the vocabulary ("Ġworld", "<0x0A>"), NUL-terminated,
 * borrowed; NULL for an id out of range. */
const char *tokenizer_token_text(const tokenizer *t, int32_t id);

/* The id whose stored string is exactly text[0..len) ("Ġworld", "<|im_end|>"), or -1. */
int32_t tokenizer_find_token(const tokenizer *t, const char *text, size_t len);

enum token_type tokenizer_token_type(const tokenizer *t, int32_t id); /* UNDEFINED if out of range */
size_t tokenizer_n_vocab(const tokenizer *t);
enum tokenizer_kind tokenizer_kind(const tokenizer *t);
enum tokenizer_pre tokenizer_pre(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t);   /* -1 when the model has none */
int32_t tokenizer_eos(const tokenizer *t);   /* -1 when the model has none */
bool tokenizer_add_bos(const tokenizer *t);  /* tokenizer.ggml.add_bos_token */
/* End of generation: EOS, EOT, EOM, and control tokens spelled <|im_end|>, <|endoftext|>,
 * <|eot_id|>, <|eom_id|>, <|end|>, <end_of_turn>, <|end_of_text|>. */
bool tokenizer_is_eog(const tokenizer *t, int32_t id);
/* True when every byte 0..255 has a token (byte-level: its mapped character; SPM: <0xNN>),
 * which is when decode(encode(s)) == s holds for every byte string s. */
bool tokenizer_covers_all_bytes(const tokenizer *t);
/* The longest piece in bytes (for sizing buffers). */
size_t tokenizer_max_piece_len(const tokenizer *t);

/* Decoding flags. */
enum {
	TOKENIZER_DECODE_SKIP_CONTROL = 1, /* control tokens (BOS, <|im_end|>) produce no text */
	TOKENIZER_DECODE_STRIP_SPACE = 2,  /* SPM with a space prefix: drop the leading space the
	                                      encoder added to the first text piece */
};

/* Concatenates the pieces of n ids into *out (malloc'd, NUL-terminated, caller frees; *len
 * excludes the NUL). An id out of range is OS_ERANGE naming its position. */
int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
		     char **out, size_t *len, os_error *err);

/* Streaming decoder: feed ids one at a time as they are generated, get back only text that
 * is safe to print: complete UTF-8 sequences, plus bytes that can never become part of one
 * (emitted as they are, so nothing is lost). The concatenation of every push and the final
 * flush equals tokenizer_decode of the same ids with the same flags, byte for byte. */
typedef struct tokenizer_stream tokenizer_stream;

/* t is borrowed and must outlive the stream. */
int tokenizer_stream_new(tokenizer_stream **out, const tokenizer *t, unsigned flags,
			 os_error *err);
void tokenizer_stream_free(tokenizer_stream *s);
/* Returns the bytes now ready (borrowed, valid until the next call on s; *len may be 0).
 * An id out of range adds nothing. */
const char *tokenizer_stream_push(tokenizer_stream *s, int32_t id, size_t *len);
/* Returns whatever is still held (an incomplete sequence at the end of generation) and
 * resets the stream for a new text. */
const char *tokenizer_stream_flush(tokenizer_stream *s, size_t *len);

#endif
