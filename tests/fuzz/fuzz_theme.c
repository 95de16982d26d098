/* fuzz_theme: theme files are outside input (any JSON in the data home's themes/):
 * theme_parse must never crash, and a theme it accepts names itself and has an attribute
 * for every role. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tui/theme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* cJSON reads up to a NUL: give it one */
	char *json = malloc(size + 1);
	if (!json)
		return 0;
	memcpy(json, data, size);
	json[size] = '\0';
	theme *t = NULL;
	os_error err = {0};
	if (theme_parse(&t, json, "fuzz", &err) == OS_OK) {
		if (!theme_name(t) || !theme_name(t)[0])
			abort();
		theme_free(t);
	} else if (!os_error_text(&err)[0]) {
		abort(); /* a refusal always says why */
	}
	free(json);
	return 0;
}
