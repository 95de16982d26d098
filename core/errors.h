/* errors.h: the one status code enum of optstudio and the error record that carries
 * a human-readable explanation alongside it. Library code returns an int rc (OS_OK or an
 * OS_E* code) and, where the caller passed an os_error, says what failed and why. */
#ifndef OPTSTUDIO_ERRORS_H
#define OPTSTUDIO_ERRORS_H

#include <stddef.h>

enum {
	OS_OK = 0,
	OS_EIO,          /* a read, write, open or map of a file failed */
	OS_EFORMAT,      /* a file or document is not what it claims to be */
	OS_ENOMEM,       /* an allocation failed */
	OS_ERANGE,       /* a value is outside what is allowed */
	OS_EUNSUPPORTED, /* valid, but not something we handle (yet) */
	OS_ENOTFOUND,    /* a named thing does not exist */
	OS_EEXISTS,      /* a thing that must be new already exists */
	OS_EDB,          /* the database refused or failed */
	OS_EUSAGE,       /* the caller asked for something malformed */
	OS_EBUSY,        /* someone else holds it */
	OS_ESTOPPED,     /* stopped on request */
	OS_EINTERNAL,    /* a bug: an invariant did not hold */
	OS_N_CODES
};

/* An error record: rc plus a message such as
 * "bad magic 0x00000000 (expected GGUF) in 'x.gguf'". Plain data, lives on the caller's stack. */
typedef struct os_error {
	int rc;
	char msg[512];
} os_error;

/* Short fixed text for a code ("I/O error", "bad format" ...). Never NULL. */
const char *os_strerror(int rc);

/* Records rc and a printf-style message in err (which may be NULL) and returns rc,
 * so a failing path reads `return os_error_set(err, OS_EFORMAT, "...", ...);`. */
int os_error_set(os_error *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Clears err to OS_OK with an empty message. err may be NULL. */
void os_error_clear(os_error *err);

/* The message if one was set, else os_strerror(err->rc). */
const char *os_error_text(const os_error *err);

#endif
