/* price.h: the blended price of serving, exactly as DESIGN.md "Evaluation" writes it, and a
 * roofline projection of throughput for machines we did not measure on. */
#ifndef OPTSTUDIO_PRICE_H
#define OPTSTUDIO_PRICE_H

#include <stddef.h>

#include "../errors.h"

/* The savings-plan discount DESIGN.md assumes unless told otherwise (26%). */
#define PRICE_DEFAULT_DISCOUNT 0.26
/* The input:output token ratio the "/ 4" of the formula stands for. */
#define PRICE_INPUT_OUTPUT_RATIO "3:1"

/* The formula as shown to users, one line. */
#define PRICE_FORMULA                                                                  \
	"blended $/1M tokens = (1 - discount) x instance $/hour / (total throughput tok/s " \
	"x 3600 / 10^6) / 4   (input:output 3:1)"

/* Same, as a function (for callers that want a const char *). Never NULL. */
const char *price_formula(void);

/* Blended $ per 1M tokens = (1 - discount) x usd_per_hour / (total_tok_s x 3600 / 10^6) / 4.
 * usd_per_hour >= 0 and finite, discount in [0, 1), total_tok_s > 0 and finite; otherwise
 * OS_ERANGE naming the value (*out untouched). */
int price_blended_per_1m(double usd_per_hour, double discount, double total_tok_s, double *out,
			 os_error *err);

/* ---- roofline projection ---------------------------------------------------------------
 * Decode-time model of output throughput at concurrency C on a machine with memory
 * bandwidth BW (bytes/s) and dense compute F (FLOP/s), from what one step of our engine
 * reads and computes:
 *   one step emits C output tokens and reads the weights once (step_bytes) plus each
 *   sequence's KV cache (kv_bytes_per_pos x context_tokens per sequence):
 *     t_mem(C)     = (step_bytes + C x kv_bytes_per_pos x context_tokens) / BW
 *   each output token costs 2 x params FLOPs, plus its share of the prompt's prefill
 *   (I prompt tokens per O output tokens):
 *     flops_per_output_token = 2 x params x (I + O) / O
 *     t_compute(C) = C x flops_per_output_token / F
 *   projected tok/s = C / max(t_mem, t_compute)
 *                   = min(C x BW / (step_bytes + C x kv x ctx), F / flops_per_output_token)
 * An upper bound (perfect overlap, perfect kernels, ideal tensor-parallel scaling across the
 * instance's GPUs, no scheduling or network overhead): a ceiling to compare machines by,
 * never a measurement. Every figure from it is labelled "projected". */
typedef struct price_workload {
	double step_bytes;        /* weight bytes one decode step reads (model_step_bytes) */
	double kv_bytes_per_pos;  /* KV bytes of one cached position (K and V, all layers) */
	double n_params;          /* parameters */
	double input_tokens;      /* I */
	double output_tokens;     /* O */
} price_workload;

typedef struct price_projection {
	double tok_s;             /* projected output tok/s at this concurrency */
	double memory_tok_s;      /* the bandwidth bound */
	double compute_tok_s;     /* the compute bound */
	int compute_bound;        /* 1 when compute is the binding limit */
} price_projection;

/* Projects output throughput at concurrency C (>= 1) for a machine with bandwidth_bytes_s
 * and flops_s (both > 0). The mean context a sequence holds while decoding is taken as
 * I + O / 2 positions. OS_ERANGE for a non-positive or non-finite input. */
int price_project(const price_workload *w, double bandwidth_bytes_s, double flops_s,
		  size_t concurrency, price_projection *out, os_error *err);

/* An instance's totals from per-GPU catalog figures: n_gpus x GB/s x 10^9 bytes/s and
 * n_gpus x TFLOPS x 10^12 FLOP/s. */
double price_instance_bandwidth(double n_gpus, double mem_bandwidth_gbps);
double price_instance_flops(double n_gpus, double tflops);

/* A catalog instance as projection needs it: per-GPU figures and the whole instance's price. */
typedef struct price_instance {
	double n_gpus;
	double mem_bandwidth_gbps;  /* per GPU */
	double bf16_tflops;         /* dense, per GPU */
	double usd_per_hour;        /* whole instance; <= 0: unknown */
} price_instance;

/* price_project on the instance's totals, plus the projected blended price at that
 * throughput (*usd_1m: NaN when the instance has no price). Same errors as price_project. */
int price_project_instance(const price_workload *w, const price_instance *it, double discount,
			   size_t concurrency, price_projection *out, double *usd_1m,
			   os_error *err);

#endif
