/* home.c: where the data home is ($OPTSTUDIO_HOME, $XDG_DATA_HOME/optstudio,
 * ~/.local/share/optstudio) and making it exist with its subfolders. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_internal.h"

static const char *const home_subdirs[] = {"models", "artifacts", "logs", "text"};
#define N_SUBDIRS (sizeof home_subdirs / sizeof home_subdirs[0])

#define HOME_HINT "set OPTSTUDIO_HOME to a writable folder"

static int set_path(char *buf, size_t len, os_error *err, const char *a, const char *b)
{
	int n = snprintf(buf, len, "%s%s", a, b);
	if (n < 0 || (size_t)n >= len)
		return os_error_set(err, OS_ERANGE, "data home path '%s%s' is longer than %zu bytes",
				    a, b, len ? len - 1 : 0);
	return OS_OK;
}

int store_home_resolve(char *buf, size_t len, os_error *err)
{
	const char *v = getenv("OPTSTUDIO_HOME");
	if (v && *v)
		return set_path(buf, len, err, v, "");
	/* the XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored */
	v = getenv("XDG_DATA_HOME");
	if (v && v[0] == '/')
		return set_path(buf, len, err, v, "/optstudio");
	v = getenv("HOME");
	if (v && *v)
		return set_path(buf, len, err, v, "/.local/share/optstudio");
	return os_error_set(err, OS_ENOTFOUND,
			    "no data home: none of OPTSTUDIO_HOME, XDG_DATA_HOME, HOME is set; "
			    "set OPTSTUDIO_HOME to a writable folder");
}

/* mkdir -p path: creates each missing component; an existing directory is fine. */
static int make_dirs(const char *path, os_error *err, const char *home)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n >= sizeof buf)
		return os_error_set(err, OS_ERANGE, "data home path '%s' is too long", home);
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
			int e = errno;
			if (strcmp(buf, home) == 0)
				return os_error_set(err, OS_EIO, "cannot create data home '%s': %s; " HOME_HINT,
						    home, strerror(e));
			return os_error_set(err, OS_EIO, "cannot create data home '%s': %s (at '%s'); " HOME_HINT,
					    home, strerror(e), buf);
		}
		buf[i] = c;
	}
	struct stat st;
	if (stat(path, &st) != 0)
		return os_error_set(err, OS_EIO, "cannot create data home '%s': %s; " HOME_HINT, home,
				    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return os_error_set(err, OS_EIO, "cannot create data home '%s': '%s' is not a directory; " HOME_HINT,
				    home, path);
	return OS_OK;
}

int store_home_create(const char *home, os_error *err)
{
	if (!home || !*home)
		return os_error_set(err, OS_EUSAGE, "no data home given");
	int rc = make_dirs(home, err, home);
	if (rc)
		return rc;
	if (access(home, W_OK | X_OK) != 0)
		return os_error_set(err, OS_EIO, "data home '%s' is not writable: %s; " HOME_HINT, home,
				    strerror(errno));
	char sub[4096];
	for (size_t i = 0; i < N_SUBDIRS; i++) {
		int n = snprintf(sub, sizeof sub, "%s/%s", home, home_subdirs[i]);
		if (n < 0 || (size_t)n >= sizeof sub)
			return os_error_set(err, OS_ERANGE, "data home path '%s' is too long", home);
		if ((rc = make_dirs(sub, err, home)))
			return rc;
	}
	return OS_OK;
}
