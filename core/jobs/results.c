/* results.c: a load-generator level as a bench point (results.h). */
#include "results.h"

#include <math.h>

void results_point_from_level(const loadgen_level *l, store_bench_point *out)
{
	*out = (store_bench_point){
		.concurrency = (int64_t)l->concurrency,
		.n_requests = (int64_t)l->n_requests,
		.n_errors = (int64_t)l->n_errors,
		.ttft_p50_ms = l->ttft_ms.p50, .ttft_p90_ms = l->ttft_ms.p90,
		.ttft_p99_ms = l->ttft_ms.p99,
		.itl_p50_ms = l->itl_ms.p50, .itl_p90_ms = l->itl_ms.p90,
		.itl_p99_ms = l->itl_ms.p99,
		.latency_p50_ms = l->latency_ms.p50, .latency_p90_ms = l->latency_ms.p90,
		.latency_p99_ms = l->latency_ms.p99,
		.tokens_per_s = l->tok_s_per_request.p50,
		.total_tokens_per_s = l->n_requests ? l->total_tok_s : NAN,
		.measured_tokens_per_s = l->wall_s > 0 ? l->measured_tok_s : NAN,
	};
}
