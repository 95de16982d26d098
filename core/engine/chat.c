/* chat.c: chat prompt formatting for the template styles chat.h lists, recognised from the
 * Jinja text by markers; a literal default system prompt is lifted out of ChatML templates. */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

const char *chat_style_name(enum chat_style style)
{
	switch (style) {
	case CHAT_STYLE_CHATML: return "chatml";
	case CHAT_STYLE_LLAMA2: return "llama2";
	case CHAT_STYLE_LLAMA3: return "llama3";
	default: return "unknown";
	}
}

/* memmem over a length-delimited haystack; NULL when absent. */
static const char *find(const char *h, size_t hl, const char *needle)
{
	size_t nl = strlen(needle);
	if (nl > hl)
		return NULL;
	for (size_t i = 0; i + nl <= hl; i++)
		if (h[i] == needle[0] && memcmp(h + i, needle, nl) == 0)
			return h + i;
	return NULL;
}

/* The system prompt a ChatML template writes when the conversation has none: the text of a
 * literal '<|im_start|>system\n ... <|im_end|>' (newline real or written \n in the Jinja
 * string), the first such occurrence that holds no expression. NULL if none (or no memory). */
static char *chatml_default_system(const char *t, size_t len)
{
	static const char open[] = "<|im_start|>system";
	const char *end = t + len;
	for (const char *p = find(t, len, open); p; p = find(p + 1, (size_t)(end - p - 1), open)) {
		const char *c = p + sizeof open - 1;
		if (c < end && *c == '\n')
			c++;
		else if (end - c >= 2 && c[0] == '\\' && c[1] == 'n')
			c += 2;
		else
			continue;
		const char *e = find(c, (size_t)(end - c), "<|im_end|>");
		if (!e || e <= c)
			continue;
		size_t cl = (size_t)(e - c);
		bool literal = true;
		for (const char *q = c; q < e; q++)
			if (*q == '\'' || *q == '"' || *q == '{' || *q == '}' || *q == '+')
				literal = false;
		if (!literal)
			continue;
		char *s = malloc(cl + 1);
		if (!s)
			return NULL;
		size_t n = 0;
		for (const char *q = c; q < e; q++) {
			if (*q == '\\' && q + 1 < e) { /* Jinja string escapes */
				q++;
				s[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
			} else {
				s[n++] = *q;
			}
		}
		s[n] = '\0';
		return s;
	}
	return NULL;
}

int chat_template_parse(chat_template *out, const char *tmpl, size_t len, os_error *err)
{
	memset(out, 0, sizeof *out);
	if (find(tmpl, len, "<|im_start|>")) {
		out->style = CHAT_STYLE_CHATML;
		out->default_system = chatml_default_system(tmpl, len);
	} else if (find(tmpl, len, "<|start_header_id|>")) {
		out->style = CHAT_STYLE_LLAMA3;
	} else if (find(tmpl, len, "[INST]")) {
		out->style = CHAT_STYLE_LLAMA2;
	} else {
		return os_error_set(err, OS_EUNSUPPORTED,
				    "unknown chat template style (found none of the markers <|im_start|>, "
				    "<|start_header_id|>, [INST]); pass a style explicitly");
	}
	return OS_OK;
}

int chat_template_from_gguf(chat_template *out, const gguf_file *f, os_error *err)
{
	const char *s;
	size_t n;
	os_error e;
	memset(out, 0, sizeof *out);
	int rc = gguf_get_str(f, "tokenizer.chat_template", &s, &n, &e);
	if (rc == OS_ENOTFOUND)
		return os_error_set(err, OS_ENOTFOUND, "no tokenizer.chat_template in '%s'", gguf_path(f));
	if (rc != OS_OK)
		return os_error_set(err, rc, "%s", os_error_text(&e));
	return chat_template_parse(out, s, n, err);
}

void chat_template_free(chat_template *t)
{
	if (!t)
		return;
	free(t->default_system);
	t->default_system = NULL;
}

/* A growing NUL-terminated string; ok goes false on the first failed allocation. */
typedef struct sbuf {
	char *s;
	size_t len, cap;
	bool ok;
} sbuf;

static void put(sbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (!b->ok)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (b->len + n + 1 > c)
			c *= 2;
		char *p = realloc(b->s, c);
		if (!p) {
			b->ok = false;
			return;
		}
		b->s = p;
		b->cap = c;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

int chat_format(const chat_template *t, const chat_message *msgs, size_t n,
		bool add_generation_prompt, char **out, size_t *len, os_error *err)
{
	sbuf b = { NULL, 0, 0, true };

	*out = NULL;
	*len = 0;
	for (size_t i = 0; i < n; i++)
		if (!msgs[i].role || !msgs[i].content)
			return os_error_set(err, OS_EUSAGE, "chat message %zu has no %s", i,
					    msgs[i].role ? "content" : "role");
	put(&b, "");
	switch (t->style) {
	case CHAT_STYLE_CHATML:
		/* SmolLM2: {% if loop.first and messages[0]['role'] != 'system' %} default system */
		if (t->default_system && n > 0 && strcmp(msgs[0].role, "system") != 0) {
			put(&b, "<|im_start|>system\n");
			put(&b, t->default_system);
			put(&b, "<|im_end|>\n");
		}
		for (size_t i = 0; i < n; i++) {
			put(&b, "<|im_start|>");
			put(&b, msgs[i].role);
			put(&b, "\n");
			put(&b, msgs[i].content);
			put(&b, "<|im_end|>\n");
		}
		if (add_generation_prompt)
			put(&b, "<|im_start|>assistant\n");
		break;
	case CHAT_STYLE_LLAMA3:
		for (size_t i = 0; i < n; i++) {
			put(&b, "<|start_header_id|>");
			put(&b, msgs[i].role);
			put(&b, "<|end_header_id|>\n\n");
			put(&b, msgs[i].content);
			put(&b, "<|eot_id|>");
		}
		if (add_generation_prompt)
			put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
		break;
	case CHAT_STYLE_LLAMA2: {
		/* Meta's format; the first <s> is the tokenizer's BOS */
		bool in_turn = false;
		for (size_t i = 0; i < n; i++) {
			const char *role = msgs[i].role;
			if (!in_turn) {
				put(&b, i == 0 ? "[INST] " : "<s>[INST] ");
				in_turn = true;
			}
			if (strcmp(role, "system") == 0) {
				put(&b, "<<SYS>>\n");
				put(&b, msgs[i].content);
				put(&b, "\n<</SYS>>\n\n");
			} else if (strcmp(role, "user") == 0) {
				put(&b, msgs[i].content);
				put(&b, " [/INST]");
			} else {
				put(&b, " ");
				put(&b, msgs[i].content);
				put(&b, " </s>");
				in_turn = false;
			}
		}
		break;
	}
	default:
		free(b.s);
		return os_error_set(err, OS_EUSAGE, "chat_format: no known template style");
	}
	if (!b.ok) {
		free(b.s);
		return os_error_set(err, OS_ENOMEM, "chat_format: out of memory");
	}
	*out = b.s;
	*len = b.len;
	return OS_OK;
}
