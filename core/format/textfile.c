/* textfile.c: bounded whole-file reads of small text files (textfile.h). */
#include "textfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int format_read_text_file(const char *path, size_t max, char **out, size_t *len_out,
			  os_error *err)
{
	*out = NULL;
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return os_error_set(err, errno == ENOENT ? OS_ENOTFOUND : OS_EIO, "cannot open '%s': %s",
				    path, strerror(errno));
	int rc = OS_OK;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		rc = os_error_set(err, OS_ENOMEM, "out of memory reading '%s'", path);
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= max) {
				rc = os_error_set(err, OS_EFORMAT, "'%s' is larger than %zu bytes", path, max);
				goto fail;
			}
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				rc = os_error_set(err, OS_ENOMEM, "out of memory reading '%s'", path);
				goto fail;
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if (got == 0) {
			if (ferror(fp)) {
				rc = os_error_set(err, OS_EIO, "cannot read '%s': %s", path, strerror(errno));
				goto fail;
			}
			break;
		}
	}
	buf[len] = '\0';
	*out = buf;
	if (len_out)
		*len_out = len;
	buf = NULL;
fail:
	free(buf);
	fclose(fp);
	return rc;
}
