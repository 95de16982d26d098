/* price.c: blended $ per 1M tokens (DESIGN.md "Evaluation") and the roofline projection. */
#include "price.h"

#include <math.h>

const char *price_formula(void)
{
	return PRICE_FORMULA;
}

int price_blended_per_1m(double usd_per_hour, double discount, double total_tok_s, double *out,
			 os_error *err)
{
	if (!isfinite(usd_per_hour) || usd_per_hour < 0)
		return os_error_set(err, OS_ERANGE, "instance price %g $/hour (expected a finite value >= 0)",
				    usd_per_hour);
	if (!isfinite(discount) || discount < 0 || discount >= 1)
		return os_error_set(err, OS_ERANGE, "discount %g (expected 0 <= discount < 1, e.g. 0.26)",
				    discount);
	if (!isfinite(total_tok_s) || total_tok_s <= 0)
		return os_error_set(err, OS_ERANGE, "throughput %g tok/s (expected a finite value > 0)",
				    total_tok_s);
	/* (1 - discount) x $/hour / (tok/s x 3600 / 10^6) / 4 */
	*out = (1.0 - discount) * usd_per_hour / (total_tok_s * 3600.0 / 1e6) / 4.0;
	return OS_OK;
}

static int positive(double v, const char *what, os_error *err)
{
	if (!isfinite(v) || v <= 0)
		return os_error_set(err, OS_ERANGE, "roofline projection: %s is %g (expected > 0)", what, v);
	return OS_OK;
}

int price_project(const price_workload *w, double bandwidth_bytes_s, double flops_s,
		  size_t concurrency, price_projection *out, os_error *err)
{
	int rc;
	if ((rc = positive(w->step_bytes, "bytes per step", err)) ||
	    (rc = positive(w->n_params, "parameter count", err)) ||
	    (rc = positive(w->input_tokens, "input tokens", err)) ||
	    (rc = positive(w->output_tokens, "output tokens", err)) ||
	    (rc = positive(bandwidth_bytes_s, "memory bandwidth", err)) ||
	    (rc = positive(flops_s, "compute", err)))
		return rc;
	if (!isfinite(w->kv_bytes_per_pos) || w->kv_bytes_per_pos < 0)
		return os_error_set(err, OS_ERANGE, "roofline projection: KV bytes per position is %g",
				    w->kv_bytes_per_pos);
	if (concurrency < 1)
		return os_error_set(err, OS_ERANGE, "roofline projection: concurrency 0");
	double C = (double)concurrency;
	double ctx = w->input_tokens + w->output_tokens / 2.0;
	double bytes = w->step_bytes + C * w->kv_bytes_per_pos * ctx;
	double flops_tok = 2.0 * w->n_params * (w->input_tokens + w->output_tokens) / w->output_tokens;
	out->memory_tok_s = C * bandwidth_bytes_s / bytes;
	out->compute_tok_s = flops_s / flops_tok;
	out->compute_bound = out->compute_tok_s < out->memory_tok_s;
	out->tok_s = out->compute_bound ? out->compute_tok_s : out->memory_tok_s;
	return OS_OK;
}

double price_instance_bandwidth(double n_gpus, double mem_bandwidth_gbps)
{
	return n_gpus * mem_bandwidth_gbps * 1e9;
}

double price_instance_flops(double n_gpus, double tflops)
{
	return n_gpus * tflops * 1e12;
}

int price_project_instance(const price_workload *w, const price_instance *it, double discount,
			   size_t concurrency, price_projection *out, double *usd_1m,
			   os_error *err)
{
	int rc = price_project(w, price_instance_bandwidth(it->n_gpus, it->mem_bandwidth_gbps),
			       price_instance_flops(it->n_gpus, it->bf16_tflops), concurrency, out,
			       err);
	if (rc != OS_OK)
		return rc;
	if (it->usd_per_hour <= 0 ||
	    price_blended_per_1m(it->usd_per_hour, discount, out->tok_s, usd_1m, NULL) != OS_OK)
		*usd_1m = NAN;
	return OS_OK;
}
