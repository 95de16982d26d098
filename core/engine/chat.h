/* chat.h: turns a conversation into the prompt text a chat model expects. No Jinja: the
 * model's tokenizer.chat_template is recognised by its markers as one of a few known styles
 * (ChatML, Llama 2 [INST], Llama 3 headers) and formatted by hand. */
#ifndef OPTSTUDIO_CHAT_H
#define OPTSTUDIO_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "../errors.h"
#include "../format/gguf.h"

enum chat_style {
	CHAT_STYLE_UNKNOWN = 0,
	CHAT_STYLE_CHATML,  /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen2) */
	CHAT_STYLE_LLAMA2,  /* [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer</s><s>[INST] ... */
	CHAT_STYLE_LLAMA3,  /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
};

/* One turn. role is "system", "user" or "assistant"; both strings are borrowed. */
typedef struct chat_message {
	const char *role;
	const char *content;
} chat_message;

/* A recognised template: its style and the system prompt it inserts when the conversation
 * has none (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
 * or NULL. Plain data; free with chat_template_free. */
typedef struct chat_template {
	enum chat_style style;
	char *default_system; /* owned, NUL-terminated, or NULL */
} chat_template;

/* "chatml", "llama2", "llama3", "unknown". */
const char *chat_style_name(enum chat_style style);

/* Recognises a template text (len bytes, not necessarily NUL-terminated) by its markers.
 * OS_EUNSUPPORTED, with a message saying which markers were looked for, when none match.
 * On success *out is filled (caller calls chat_template_free). */
int chat_template_parse(chat_template *out, const char *tmpl, size_t len, os_error *err);

/* Reads tokenizer.chat_template from f and parses it. OS_ENOTFOUND when the file has none. */
int chat_template_from_gguf(chat_template *out, const gguf_file *f, os_error *err);

void chat_template_free(chat_template *t);

/* Formats n messages in the template's style. add_generation_prompt appends the opening of
 * the assistant's turn ("<|im_start|>assistant\n"). The text contains the special tokens'
 * spelling ("<|im_start|>"): encode it with parse_special. No BOS is written for ChatML or
 * Llama 3 (the tokenizer adds it when the model wants it); Llama 2's "<s>" between turns is.
 * On success *out is malloc'd, NUL-terminated (caller frees), *len excludes the NUL.
 * OS_EUSAGE for a NULL role/content or a style of CHAT_STYLE_UNKNOWN. */
int chat_format(const chat_template *t, const chat_message *msgs, size_t n,
		bool add_generation_prompt, char **out, size_t *len, os_error *err);

#endif
