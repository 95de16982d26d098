/* errors.c: status code texts and the error record helpers. */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const code_text[OS_N_CODES] = {
	[OS_OK] = "ok",
	[OS_EIO] = "I/O error",
	[OS_EFORMAT] = "bad format",
	[OS_ENOMEM] = "out of memory",
	[OS_ERANGE] = "value out of range",
	[OS_EUNSUPPORTED] = "not supported",
	[OS_ENOTFOUND] = "not found",
	[OS_EEXISTS] = "already exists",
	[OS_EDB] = "database error",
	[OS_EUSAGE] = "bad usage",
	[OS_EBUSY] = "busy",
	[OS_ESTOPPED] = "stopped",
	[OS_EINTERNAL] = "internal error",
};

const char *os_strerror(int rc)
{
	if (rc < 0 || rc >= OS_N_CODES || !code_text[rc])
		return "unknown error";
	return code_text[rc];
}

int os_error_set(os_error *err, int rc, const char *fmt, ...)
{
	if (!err)
		return rc;
	err->rc = rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	return rc;
}

void os_error_clear(os_error *err)
{
	if (!err)
		return;
	err->rc = OS_OK;
	err->msg[0] = '\0';
}

const char *os_error_text(const os_error *err)
{
	if (!err)
		return "unknown error";
	return err->msg[0] ? err->msg : os_strerror(err->rc);
}
