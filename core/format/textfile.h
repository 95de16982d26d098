/* textfile.h: reading a small outside text file (config.json, tokenizer.json, an index)
 * whole, with a size bound, for the format readers. */
#ifndef OPTSTUDIO_TEXTFILE_H
#define OPTSTUDIO_TEXTFILE_H

#include <stddef.h>

#include "../errors.h"

/* Reads path whole into *out, a NUL-terminated malloc'd buffer (free it) of *len bytes
 * (len may be NULL). OS_ENOTFOUND when the file does not exist, OS_EIO when it cannot be
 * opened or read, OS_EFORMAT when it is larger than max bytes, OS_ENOMEM. On failure *out
 * is NULL. */
int format_read_text_file(const char *path, size_t max, char **out, size_t *len,
			  os_error *err);

#endif
