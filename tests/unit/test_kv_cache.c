/* test_kv_cache.c: the paged KV cache's bookkeeping: growth, truncation, block reuse,
 * out-of-blocks, and a random property test of the invariants. */
#include "core/cpu/backend_cpu.h"
#include "core/engine/kv_cache.h"
#include "tests/test.h"

#include <time.h>

static backend *be;

static kv_cache *make(size_t n_blocks, size_t block_tokens)
{
	kv_cache_opts o = {.n_layers = 3, .kv_dim = 5, .block_tokens = block_tokens,
			   .fmt = BE_KV_F32};
	size_t bt = block_tokens ? block_tokens : KV_DEFAULT_BLOCK_TOKENS;
	/* a little extra that does not make a whole block */
	o.capacity_bytes = n_blocks * 3 * 2 * bt * 5 * sizeof(float) + 17;
	kv_cache *kv = NULL;
	os_error err;
	if (kv_cache_new(&kv, &o, be, &err))
		printf("  kv_cache_new: %s\n", err.msg);
	return kv;
}

TEST(test_basic)
{
	kv_cache *kv = make(10, 16);
	CHECK(kv);
	CHECK_EQ_INT(kv_cache_n_blocks(kv), 10);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 10);
	CHECK_EQ_INT(kv_cache_block_tokens(kv), 16);
	CHECK_EQ_INT(kv_cache_block_bytes(kv), 3 * 2 * 16 * 5 * 4);
	const be_kv *v = kv_cache_view(kv);
	CHECK(v->data && ((uintptr_t)v->data % 64) == 0);
	os_error err;
	int32_t a, b;
	CHECK_EQ_INT(kv_seq_new(kv, &a, &err), OS_OK);
	CHECK_EQ_INT(kv_seq_new(kv, &b, &err), OS_OK);
	CHECK(a != b && kv_seq_valid(kv, a) && kv_seq_valid(kv, b));
	CHECK_EQ_INT(kv_seq_len(kv, a), 0);
	CHECK_EQ_INT(kv_seq_grow(kv, a, 17, &err), OS_OK); /* 2 blocks */
	CHECK_EQ_INT(kv_seq_len(kv, a), 17);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 8);
	CHECK_EQ_INT(kv_seq_grow(kv, a, 32, &err), OS_OK); /* still 2 */
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 8);
	CHECK_EQ_INT(kv_seq_grow(kv, b, 1, &err), OS_OK);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 7);
	size_t nb;
	const int32_t *t = kv_seq_blocks(kv, a, &nb);
	CHECK(t && nb == 2);
	/* shrinking: 32 -> 16 frees one block, 16 -> 15 none, 15 -> 0 the last */
	CHECK_EQ_INT(kv_seq_truncate(kv, a, 16, &err), OS_OK);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 8);
	CHECK_EQ_INT(kv_seq_truncate(kv, a, 15, &err), OS_OK);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 8);
	CHECK_EQ_INT(kv_seq_len(kv, a), 15);
	/* errors: longer by truncate, shorter by grow, unknown ids */
	CHECK_EQ_INT(kv_seq_truncate(kv, a, 16, &err), OS_EUSAGE);
	CHECK_EQ_INT(kv_seq_grow(kv, a, 14, &err), OS_EUSAGE);
	CHECK_EQ_INT(kv_seq_grow(kv, 99, 1, &err), OS_EUSAGE);
	CHECK_EQ_INT(kv_seq_grow(kv, -1, 1, &err), OS_EUSAGE);
	CHECK_EQ_INT(kv_seq_len(kv, 99), 0);
	CHECK_EQ_INT(kv_cache_check(kv, &err), OS_OK);
	kv_seq_free(kv, a);
	CHECK(!kv_seq_valid(kv, a));
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 9);
	/* the freed id is reused */
	int32_t c;
	CHECK_EQ_INT(kv_seq_new(kv, &c, &err), OS_OK);
	CHECK_EQ_INT(c, a);
	CHECK_EQ_INT(kv_cache_check(kv, &err), OS_OK);
	kv_cache_free(kv);
}

TEST(test_out_of_blocks)
{
	kv_cache *kv = make(3, 8);
	CHECK(kv);
	os_error err;
	int32_t a, b;
	CHECK_EQ_INT(kv_seq_new(kv, &a, &err), OS_OK);
	CHECK_EQ_INT(kv_seq_new(kv, &b, &err), OS_OK);
	CHECK_EQ_INT(kv_seq_grow(kv, a, 10, &err), OS_OK); /* 2 blocks */
	/* b wants 2 blocks, 1 is free: refused, nothing changes */
	CHECK_EQ_INT(kv_seq_grow(kv, b, 9, &err), OS_ERANGE);
	CHECK_MSG(strstr(err.msg, "KV cache full") && strstr(err.msg, "1 of 3 blocks free"),
		  "message: %s", err.msg);
	CHECK_EQ_INT(kv_seq_len(kv, b), 0);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 1);
	CHECK_EQ_INT(kv_cache_check(kv, &err), OS_OK);
	/* after a frees its blocks, they are reused by b */
	size_t na;
	const int32_t *ta = kv_seq_blocks(kv, a, &na);
	int32_t a0 = ta[0], a1 = ta[1];
	kv_seq_free(kv, a);
	CHECK_EQ_INT(kv_seq_grow(kv, b, 24, &err), OS_OK);
	size_t nbk;
	const int32_t *tb = kv_seq_blocks(kv, b, &nbk);
	CHECK_EQ_INT(nbk, 3);
	int seen0 = 0, seen1 = 0;
	for (size_t i = 0; i < nbk; i++) {
		seen0 |= tb[i] == a0;
		seen1 |= tb[i] == a1;
	}
	CHECK(seen0 && seen1);
	CHECK_EQ_INT(kv_cache_n_free_blocks(kv), 0);
	CHECK_EQ_INT(kv_cache_check(kv, &err), OS_OK);
	kv_cache_free(kv);
}

TEST(test_bad_opts)
{
	os_error err;
	kv_cache *kv = NULL;
	kv_cache_opts o = {.n_layers = 2, .kv_dim = 4, .block_tokens = 16, .capacity_bytes = 100};
	CHECK_EQ_INT(kv_cache_new(&kv, &o, be, &err), OS_ERANGE);
	CHECK_MSG(strstr(err.msg, "holds no block"), "message: %s", err.msg);
	CHECK(kv == NULL);
	o.capacity_bytes = 1 << 20;
	o.fmt = 7;
	CHECK_EQ_INT(kv_cache_new(&kv, &o, be, &err), OS_EUNSUPPORTED);
	o.fmt = BE_KV_F32;
	o.block_tokens = 0;
	CHECK_EQ_INT(kv_cache_new(&kv, &o, be, &err), OS_OK);
	CHECK_EQ_INT(kv_cache_block_tokens(kv), KV_DEFAULT_BLOCK_TOKENS);
	kv_cache_free(kv);
}

/* The same bytes hold twice the BF16 blocks of F32 (2 bytes an element, no scales) and
 * four times the FP8 / INT8 codes less their scales; growth and truncation of a BF16 cache
 * count blocks as F32's do. */
TEST(test_formats)
{
	enum { L = 3, D = 12, HDIM = 4, BTOK = 5 };
	size_t f32_block = (size_t)L * 2 * BTOK * D * sizeof(float);
	size_t cap = 11 * f32_block + 3; /* a remainder that makes no block */
	size_t want[BE_KV_COUNT] = {[BE_KV_F32] = 11, [BE_KV_BF16] = 22,
				    [BE_KV_FP8] = cap / (f32_block / 4 + f32_block / HDIM),
				    [BE_KV_I8] = cap / (f32_block / 4 + f32_block / HDIM)};
	for (int fmt = 0; fmt < BE_KV_COUNT; fmt++) {
		kv_cache_opts o = {.n_layers = L, .kv_dim = D, .block_tokens = BTOK,
				   .capacity_bytes = cap, .fmt = fmt, .head_dim = HDIM};
		kv_cache *kv = NULL;
		os_error err;
		CHECK_MSG(kv_cache_new(&kv, &o, be, &err) == OS_OK, "%s: %s", be_kvfmt_name(fmt),
			  err.msg);
		if (!kv)
			continue;
		CHECK_MSG(kv_cache_n_blocks(kv) == want[fmt], "%s: %zu blocks, want %zu",
			  be_kvfmt_name(fmt), kv_cache_n_blocks(kv), want[fmt]);
		const be_kv *v = kv_cache_view(kv);
		CHECK(v->fmt == fmt && v->data && (be_kvfmt_has_scales(fmt) == (v->scales != NULL)));
		int32_t s;
		CHECK_EQ_INT(kv_seq_new(kv, &s, &err), OS_OK);
		CHECK_EQ_INT(kv_seq_grow(kv, s, 3 * BTOK + 1, &err), OS_OK);
		CHECK_EQ_INT(kv_cache_n_free_blocks(kv), want[fmt] - 4);
		CHECK_EQ_INT(kv_seq_truncate(kv, s, BTOK, &err), OS_OK);
		CHECK_EQ_INT(kv_cache_n_free_blocks(kv), want[fmt] - 1);
		kv_cache_free(kv);
	}
}

/* Random new / grow / truncate / free against a simple model of the expected lengths; the
 * invariants hold after every step and the free count matches the lengths. */
TEST(test_property)
{
	uint64_t seed = (uint64_t)time(NULL);
	seed = test_seed(seed);
	uint64_t st = seed;
	enum { N_BLOCKS = 37, MAX_SEQ = 9, STEPS = 20000 };
	size_t bt = 1 + test_rand_next(&st) % 20;
	kv_cache *kv = make(N_BLOCKS, bt);
	CHECK(kv);
	int32_t ids[MAX_SEQ];
	size_t lens[MAX_SEQ];
	size_t n_live = 0;
	os_error err;
	for (int step = 0; step < STEPS; step++) {
		unsigned op = (unsigned)(test_rand_next(&st) % 4);
		size_t k = n_live ? (size_t)(test_rand_next(&st) % n_live) : 0;
		if (op == 0 && n_live < MAX_SEQ) {
			CHECK_EQ_INT(kv_seq_new(kv, &ids[n_live], &err), OS_OK);
			lens[n_live++] = 0;
		} else if (op == 1 && n_live) {
			size_t to = lens[k] + test_rand_next(&st) % (3 * bt);
			size_t free_before = kv_cache_n_free_blocks(kv);
			size_t need = (to + bt - 1) / bt - (lens[k] + bt - 1) / bt;
			int rc = kv_seq_grow(kv, ids[k], to, &err);
			if (need <= free_before) {
				CHECK_MSG(rc == OS_OK, "step %d: grow failed: %s", step, err.msg);
				lens[k] = to;
			} else {
				CHECK_EQ_INT(rc, OS_ERANGE);
				CHECK_EQ_INT(kv_cache_n_free_blocks(kv), free_before);
			}
		} else if (op == 2 && n_live) {
			size_t to = lens[k] ? (size_t)(test_rand_next(&st) % (lens[k] + 1)) : 0;
			CHECK_EQ_INT(kv_seq_truncate(kv, ids[k], to, &err), OS_OK);
			lens[k] = to;
		} else if (op == 3 && n_live) {
			kv_seq_free(kv, ids[k]);
			ids[k] = ids[n_live - 1];
			lens[k] = lens[n_live - 1];
			n_live--;
		}
		int rc = kv_cache_check(kv, &err);
		CHECK_MSG(rc == OS_OK, "step %d: %s", step, err.msg);
		size_t used = 0;
		for (size_t i = 0; i < n_live; i++) {
			CHECK_EQ_INT(kv_seq_len(kv, ids[i]), lens[i]);
			used += (lens[i] + bt - 1) / bt;
		}
		CHECK_EQ_INT(kv_cache_n_free_blocks(kv) + used, N_BLOCKS);
	}
	kv_cache_free(kv);
}

int main(void)
{
	os_error err;
	backend_cpu_opts o = {.n_threads = 1};
	if (backend_cpu_new(&be, &o, &err)) {
		printf("cannot make the CPU backend: %s\n0 passed, 1 failed\n", err.msg);
		return 1;
	}
	RUN(test_basic);
	RUN(test_out_of_blocks);
	RUN(test_bad_opts);
	RUN(test_formats);
	RUN(test_property);
	backend_free(be);
	return test_summary();
}
