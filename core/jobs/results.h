/* results.h: evaluation figures as store rows: one load-generator level (core/eval) as one
 * bench_points row (store). Shared by the evaluate stage and `optstudio bench`, so a job's
 * run and a direct run are stored alike. */
#ifndef OPTSTUDIO_JOBS_RESULTS_H
#define OPTSTUDIO_JOBS_RESULTS_H

#include "core/eval/loadgen.h"
#include "store/store.h"

/* Fills *out from level l: percentiles as measured (NAN when there were no samples), the
 * per-request rate as its p50, the total throughput (DESIGN.md's formula) NAN when no
 * request completed, the measured aggregate NAN when no wall time was measured. */
void results_point_from_level(const loadgen_level *l, store_bench_point *out);

#endif
