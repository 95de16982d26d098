/* test_price.c: the blended price against values computed by hand from DESIGN.md's formula,
 * its argument checks, and the roofline projection against hand-computed bounds. */
#include "core/eval/price.h"
#include "tests/test.h"

/* $7.09/hour (ml.g5.12xlarge), 26% discount, 1000 tok/s:
 *   (1 - 0.26) x 7.09          = 0.74 x 7.09 = 5.2466 $/hour
 *   1000 tok/s x 3600 / 10^6   = 3.6 M tokens/hour
 *   5.2466 / 3.6               = 1.457388888...
 *   / 4                        = 0.364347222... $ per 1M tokens */
TEST(test_g5_hand)
{
	double p = 0;
	os_error err;
	CHECK(price_blended_per_1m(7.09, 0.26, 1000, &p, &err) == OS_OK);
	CHECK_NEAR(p, 0.3643472222222222, 1e-12);
	/* the default discount is DESIGN.md's 26% */
	double q = 0;
	CHECK(price_blended_per_1m(7.09, PRICE_DEFAULT_DISCOUNT, 1000, &q, &err) == OS_OK);
	CHECK_NEAR(q, p, 1e-15);
}

/* $1/hour, no discount, 1000/3.6 tok/s = exactly 10^6 tokens an hour:
 *   1 / 1 / 4 = 0.25 $ per 1M tokens */
TEST(test_one_million_an_hour)
{
	double p = 0;
	CHECK(price_blended_per_1m(1.0, 0.0, 1000.0 / 3.6, &p, NULL) == OS_OK);
	CHECK_NEAR(p, 0.25, 1e-12);
}

/* $13.12/hour (ml.g6e.12xlarge), 50% discount, 2000 tok/s:
 *   0.5 x 13.12 = 6.56; 2000 x 3600 / 10^6 = 7.2; 6.56 / 7.2 = 0.9111...; / 4 = 0.227777... */
TEST(test_g6e_half)
{
	double p = 0;
	CHECK(price_blended_per_1m(13.12, 0.5, 2000, &p, NULL) == OS_OK);
	CHECK_NEAR(p, 0.2277777777777778, 1e-12);
	/* price is linear in $/hour and inverse in throughput */
	double p2 = 0, p3 = 0;
	CHECK(price_blended_per_1m(2 * 13.12, 0.5, 2000, &p2, NULL) == OS_OK);
	CHECK(price_blended_per_1m(13.12, 0.5, 4000, &p3, NULL) == OS_OK);
	CHECK_NEAR(p2, 2 * p, 1e-12);
	CHECK_NEAR(p3, p / 2, 1e-12);
	/* a free machine costs nothing */
	CHECK(price_blended_per_1m(0, 0.26, 10, &p, NULL) == OS_OK);
	CHECK_NEAR(p, 0, 0);
}

TEST(test_bad_arguments)
{
	double p = 42;
	os_error err;
	CHECK(price_blended_per_1m(7.09, 1.0, 1000, &p, &err) == OS_ERANGE);
	CHECK(strstr(err.msg, "discount") != NULL);
	CHECK(price_blended_per_1m(7.09, -0.1, 1000, &p, &err) == OS_ERANGE);
	CHECK(price_blended_per_1m(7.09, 0.26, 0, &p, &err) == OS_ERANGE);
	CHECK(strstr(err.msg, "throughput") != NULL);
	CHECK(price_blended_per_1m(7.09, 0.26, -5, &p, &err) == OS_ERANGE);
	CHECK(price_blended_per_1m(-1, 0.26, 1000, &p, &err) == OS_ERANGE);
	CHECK(price_blended_per_1m(NAN, 0.26, 1000, &p, &err) == OS_ERANGE);
	CHECK(price_blended_per_1m(7.09, 0.26, INFINITY, &p, &err) == OS_ERANGE);
	CHECK_NEAR(p, 42, 0); /* untouched on failure */
}

TEST(test_formula_text)
{
	const char *f = price_formula();
	CHECK(strstr(f, "(1 - discount)") != NULL);
	CHECK(strstr(f, "3600 / 10^6") != NULL);
	CHECK(strstr(f, "/ 4") != NULL);
	CHECK(strstr(f, "3:1") != NULL);
}

/* Roofline, by hand. An instance of 4 GPUs x 600 GB/s = 2.4e12 bytes/s and 4 x 70 TFLOPS
 * = 2.8e14 FLOP/s; a model of 1e9 parameters reading 1e9 bytes a step.
 *   No KV: memory bound = C x 2.4e12 / 1e9 = 2400 C tok/s.
 *   I = 3, O = 1: FLOPs per output token = 2 x 1e9 x (3 + 1) / 1 = 8e9;
 *   compute bound = 2.8e14 / 8e9 = 35000 tok/s.
 *   C = 1: 2400 (memory); C = 16: 38400 > 35000 so 35000 (compute). */
TEST(test_roofline_hand)
{
	double bw = price_instance_bandwidth(4, 600), fl = price_instance_flops(4, 70);
	CHECK_NEAR(bw, 2.4e12, 1);
	CHECK_NEAR(fl, 2.8e14, 1);
	price_workload w = {.step_bytes = 1e9, .kv_bytes_per_pos = 0, .n_params = 1e9,
			    .input_tokens = 3, .output_tokens = 1};
	price_projection p;
	CHECK(price_project(&w, bw, fl, 1, &p, NULL) == OS_OK);
	CHECK_NEAR(p.tok_s, 2400, 1e-6);
	CHECK_NEAR(p.memory_tok_s, 2400, 1e-6);
	CHECK_NEAR(p.compute_tok_s, 35000, 1e-6);
	CHECK(!p.compute_bound);
	CHECK(price_project(&w, bw, fl, 14, &p, NULL) == OS_OK);
	CHECK_NEAR(p.tok_s, 33600, 1e-6);
	CHECK(price_project(&w, bw, fl, 16, &p, NULL) == OS_OK);
	CHECK_NEAR(p.tok_s, 35000, 1e-6);
	CHECK(p.compute_bound);
	/* With KV: 1e6 bytes a position, I = 100, O = 100: mean context 100 + 50 = 150
	 * positions; C = 10 reads 1e9 + 10 x 1e6 x 150 = 2.5e9 bytes a step, so
	 * 10 x 2.4e12 / 2.5e9 = 9600 tok/s; compute: 2.8e14 / (2e9 x 200 / 100) = 70000. */
	w = (price_workload){.step_bytes = 1e9, .kv_bytes_per_pos = 1e6, .n_params = 1e9,
			     .input_tokens = 100, .output_tokens = 100};
	CHECK(price_project(&w, bw, fl, 10, &p, NULL) == OS_OK);
	CHECK_NEAR(p.tok_s, 9600, 1e-6);
	CHECK_NEAR(p.compute_tok_s, 70000, 1e-6);
	/* bad inputs */
	os_error err;
	CHECK(price_project(&w, 0, fl, 10, &p, &err) == OS_ERANGE);
	CHECK(price_project(&w, bw, fl, 0, &p, &err) == OS_ERANGE);
	w.n_params = 0;
	CHECK(price_project(&w, bw, fl, 1, &p, &err) == OS_ERANGE);
	CHECK(strstr(err.msg, "parameter") != NULL);
}

/* The instance form: 4 GPUs x 600 GB/s, 70 TFLOPS, $7.09/h; the workload above at C = 1
 * projects 2400 tok/s (memory bound), so by hand 0.74 x 7.09 / (2400 x 3600 / 1e6) / 4
 * = 5.2466 / 8.64 / 4 = $0.151811 per 1M tokens; with no price, NaN. */
TEST(test_instance_projection_hand)
{
	price_workload w = {.step_bytes = 1e9, .kv_bytes_per_pos = 0, .n_params = 1e9,
			    .input_tokens = 3, .output_tokens = 1};
	price_instance it = {.n_gpus = 4, .mem_bandwidth_gbps = 600, .bf16_tflops = 70,
			     .usd_per_hour = 7.09};
	price_projection p;
	double usd = 0;
	CHECK(price_project_instance(&w, &it, 0.26, 1, &p, &usd, NULL) == OS_OK);
	CHECK_NEAR(p.tok_s, 2400, 1e-6);
	CHECK_NEAR(usd, 0.74 * 7.09 / (2400 * 3600 / 1e6) / 4, 1e-12);
	CHECK_NEAR(usd, 0.151811, 1e-6);
	it.usd_per_hour = 0;
	CHECK(price_project_instance(&w, &it, 0.26, 1, &p, &usd, NULL) == OS_OK);
	CHECK(isnan(usd));
	it.n_gpus = 0;
	CHECK(price_project_instance(&w, &it, 0.26, 1, &p, &usd, NULL) == OS_ERANGE);
}

int main(void)
{
	RUN(test_g5_hand);
	RUN(test_one_million_an_hour);
	RUN(test_g6e_half);
	RUN(test_bad_arguments);
	RUN(test_formula_text);
	RUN(test_roofline_hand);
	RUN(test_instance_projection_hand);
	return test_summary();
}
