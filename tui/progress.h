/* progress.h: a progress indicator for long work, on stderr. On a terminal it is one line
 * redrawn in place (bar, count, rate, ETA); otherwise a plain line at most every
 * PROGRESS_PLAIN_EVERY_S seconds, so short runs and logs stay quiet. */
#ifndef OPTSTUDIO_PROGRESS_H
#define OPTSTUDIO_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Seconds between plain lines when the stream is not a terminal. */
#define PROGRESS_PLAIN_EVERY_S 10.0

typedef struct progress progress;

/* Starts a progress indicator for `total` units of work (total may be 0: unknown) named by
 * label ("perplexity") and counted in unit ("tok"); both strings are copied. out is the
 * stream (NULL: stderr); quiet draws nothing at all. Returns NULL only when out of memory,
 * and every progress_* function accepts NULL (doing nothing), so callers need not check. */
progress *progress_new(const char *label, const char *unit, size_t total, bool quiet, FILE *out);

/* Reports that `done` units are finished (monotonic; values above total are clamped).
 * Redraws at most ten times a second on a terminal. */
void progress_update(progress *p, size_t done);

/* Clears the terminal line (or prints a last plain line if any was printed) and frees p. */
void progress_finish(progress *p);

/* Formats a duration in seconds as "1:02:03", "2:03" or "7s" into buf. */
void progress_format_duration(double seconds, char *buf, size_t len);

#endif
