/* wizard_tech.c: the wizard's ② Techniques (quantization method, KV cache, speculative
 * decoding) and ③ Options (alpha, group size, calibration) steps. */
#include <stdio.h>
#include <string.h>

#include "core/optimize/quantize.h"
#include "wizard_screen.h"

/* the methods in the order the wizard offers them, with what each means */
static const struct {
	int method;
	const char *label, *detail, *hint;
} method_rows[] = {
	{-1, "None", "keep the model's weights",
	 "No quantization: the weights stay as they are. Choose this to only measure the model, "
	 "or to try speculative decoding alone."},
	{QUANT_FP8, "FP8 E4M3", "W8A16 · ~2x fewer weight bytes than BF16",
	 "FP8 weights with per-output-channel scales; activations keep their precision. Half the "
	 "weight bytes of BF16; the scales are fitted on a calibration text by default (off in "
	 "Options: no calibration). Decoding is bound by memory reads, so fewer bytes means "
	 "faster tokens. Next: scale search."},
	{QUANT_FP8_W8A8, "FP8 E4M3 W8A8", "W8A8 · needs FP8 matrix units · emulated on CPU",
	 "FP8 weights and dynamic per-token FP8 activations, for GPUs with FP8 matrix units "
	 "(H100, L40S). On this CPU the FP8 products are emulated: expect accuracy figures more "
	 "than speed."},
	{QUANT_INT8_SQ, "INT8 SmoothQuant", "W8A8 · int8 matmuls · calibrated",
	 "INT8 weights and per-token INT8 activations with int8 matrix products (VNNI/AMX where "
	 "the CPU has them). SmoothQuant moves activation outliers into the weights (strength "
	 "alpha), measured on a calibration text. Next: alpha and calibration."},
	{QUANT_INT4_AWQ, "INT4 AWQ", "W4A16, groups · ~4x fewer bytes · calibrated",
	 "INT4 weights in groups with activation-aware scales found on a calibration text: about "
	 "4x fewer weight bytes than BF16, the biggest decode speed-up, a small accuracy cost "
	 "(GPTQ, on by default, keeps it small). Next: group size, GPTQ and calibration."},
	{QUANT_INT4_RTN, "INT4 RTN", "W4A16, groups · round to nearest, no calibration",
	 "INT4 groups by plain rounding: as small as AWQ, quicker to make, usually less accurate. "
	 "A baseline for AWQ. Next: group size (and, optionally, the scale search)."},
	{QUANT_INT8_RTN, "INT8 RTN", "W8A8 · int8 without smoothing, no calibration",
	 "INT8 weights and activations in SmoothQuant's format without smoothing: quick, no "
	 "calibration; activation outliers cost accuracy. A baseline for SmoothQuant."},
};

static const char *const kv_opts[] = {"model", "FP8", "INT8", "BF16"};
static const char *const group_opts[] = {"32", "64", "128"};

void wz_rows_tech(opt_screen *o)
{
	wz_row_add(o, R_HEAD, RID_NONE, 0, "Quantization (one method)");
	for (size_t i = 0; i < sizeof method_rows / sizeof method_rows[0]; i++) {
		wrow *r = wz_row_add(o, R_RADIO, RID_METHOD, method_rows[i].method, method_rows[i].label);
		if (!r)
			return;
		r->on = o->w.method == method_rows[i].method;
		SETF(r->detail, "%s", method_rows[i].detail);
		SETF(r->hint, "%s", method_rows[i].hint);
	}
	wz_row_add(o, R_HEAD, RID_NONE, 0, "Run time");
	wrow *r = wz_row_add(o, R_CYCLE, RID_KV, 0, "KV cache");
	if (r) {
		for (int i = 0; i < 4; i++)
			r->opts[i] = kv_opts[i];
		r->n_opts = 4;
		r->cur = o->w.kv;
		/* with four choices the row's warning is cut at 80 columns: the hint repeats it */
		bool orphan = o->w.kv && o->w.method < 0;
		if (orphan) {
			SETF(r->detail, "✗ needs a method");
			r->detail_role = ROLE_WARN;
		}
		SETF(r->hint, "%sThe KV cache keeps every sequence's keys and values; at long contexts "
		     "and high concurrency it outgrows the weights. FP8 or INT8 store it in 1 byte "
		     "per value, BF16 in 2 (near lossless), so more sequences fit and attention "
		     "reads less. model keeps the model's precision. It rides on a quantization "
		     "method.", orphan ? "✗ needs a method (choose one above). " : "");
	}
	r = wz_row_add(o, R_CHECK, RID_SPEC, 0, "Speculative decoding");
	if (r) {
		r->on = o->w.spec;
		SETF(r->detail, "%s", o->w.spec ? "next: choose the draft" : "a draft guesses, the model checks");
		SETF(r->hint, "A small draft model (or n-gram prompt lookup) proposes the next k tokens "
		     "and the model checks them in one batched pass: accepted tokens come almost "
		     "free, output is the same as plain decoding. Measured by the evaluation.");
	}
}

void wz_rows_options(opt_screen *o)
{
	wz_row_add(o, R_HEAD, RID_NONE, 0, o->w.method == QUANT_INT8_SQ ? "Smoothing"
				       : o->w.method == QUANT_FP8 || o->w.method == QUANT_FP8_W8A8 ? "Scales"
				       : "Groups");
	if (wiz_field_relevant(&o->w, WF_ALPHA))
		wz_add_field(o, WF_ALPHA, false);
	if (o->w.method == QUANT_INT4_AWQ || o->w.method == QUANT_INT4_RTN) {
		wrow *r = wz_row_add(o, R_CYCLE, RID_GROUP, 0, "group size");
		if (r) {
			for (int i = 0; i < 3; i++)
				r->opts[i] = group_opts[i];
			r->n_opts = 3;
			r->cur = o->w.group == 32 ? 0 : o->w.group == 64 ? 1 : 2;
			SETF(r->hint, "Weights share one scale and zero point per group of this many "
			     "values: smaller groups follow the weights more closely (more accurate) "
			     "and add scale bytes; 128 is the usual choice.");
		}
	}
	if (wiz_search_applies(&o->w)) {
		wrow *r = wz_row_add(o, R_CHECK, RID_SEARCH, 0, "Scale search");
		if (r) {
			r->on = wiz_search_on(&o->w);
			SETF(r->detail, "%s", r->on ? "scales fitted to calibration activations"
						    : "scales from each range, no calibration");
			SETF(r->hint, "Chooses each scale (and INT4 zero point) to minimise the error the "
			     "calibration text's activations see, weighting every input channel by its "
			     "mean square, instead of taking it from the weights' range. Measured on "
			     "SmolLM2: FP8 perplexity +0.6%% instead of +1.7%%. Needs calibration text; "
			     "on by default for FP8 and INT4 AWQ.");
		}
	}
	if (wiz_gptq_applies(&o->w)) {
		wrow *r = wz_row_add(o, R_CHECK, RID_GPTQ, 0, "GPTQ");
		if (r) {
			r->on = wiz_gptq_on(&o->w);
			SETF(r->detail, "%s", r->on ? "rounding errors compensated (calibration)"
						    : "each weight rounded on its own");
			SETF(r->hint, "Quantizes each matrix column by column and spreads every "
			     "column's rounding error over the columns still to come, through the "
			     "inverse of the input Hessian gathered on the calibration text (for INT4 "
			     "AWQ on a second pass, after its scales). Slower to quantize, more "
			     "accurate at 4 bits (SmolLM2 INT4 AWQ perplexity +6-8%% instead of "
			     "+19%%); the Hessians take about 400 MB for SmolLM2. On by default for "
			     "INT4 AWQ.");
		}
	}
	if (wiz_field_relevant(&o->w, WF_CALIB)) {
		wz_row_add(o, R_HEAD, RID_NONE, 0, "Calibration");
		wz_add_field(o, WF_SAMPLES, false);
		wz_add_field(o, WF_SEQ_LEN, false);
		wz_add_field(o, WF_CALIB, false);
	}
}
