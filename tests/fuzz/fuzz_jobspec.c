/* fuzz_jobspec: job specs from outside input: job_spec_parse must never crash, and any spec
 * it accepts must print to canonical JSON that parses back to an equal spec. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	job_spec *s = NULL;
	job_problems p = {0};
	os_error err = {0};
	if (job_spec_parse((const char *)data, size, NULL, &s, &p, &err) == OS_OK) {
		char *text = job_spec_print(s, false);
		if (text) {
			job_spec *t = NULL;
			if (job_spec_parse(text, strlen(text), NULL, &t, NULL, &err) != OS_OK ||
			    !job_spec_equal(s, t))
				abort();
			job_spec_free(t);
			free(text);
		}
	}
	job_spec_free(s);
	job_problems_free(&p);
	return 0;
}
