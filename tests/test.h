/* test.h: the unit-test harness. Each tests/unit/test_*.c is its own program: TEST(name)
 * defines a case, RUN(name) runs it, and test_summary() prints "N passed, N failed" and
 * returns the exit code. Checks carry file and line; a failed check ends its case. */
#ifndef OPTSTUDIO_TEST_H
#define OPTSTUDIO_TEST_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_n_passed, test_n_failed, test_case_failed;

#define TEST(name) static void name(void)

#define RUN(name)                                                                 \
	do {                                                                      \
		test_case_failed = 0;                                             \
		name();                                                           \
		if (test_case_failed) {                                           \
			test_n_failed++;                                          \
			printf("FAIL %s\n", #name);                               \
		} else {                                                          \
			test_n_passed++;                                          \
			printf("ok   %s\n", #name);                               \
		}                                                                 \
		fflush(stdout);                                                   \
	} while (0)

#define FAIL_AT(...)                                                              \
	do {                                                                      \
		printf("  %s:%d: ", __FILE__, __LINE__);                          \
		printf(__VA_ARGS__);                                              \
		printf("\n");                                                     \
		test_case_failed = 1;                                             \
		return;                                                           \
	} while (0)

#define CHECK(cond)                                                               \
	do {                                                                      \
		if (!(cond))                                                      \
			FAIL_AT("check failed: %s", #cond);                       \
	} while (0)

#define CHECK_MSG(cond, ...)                                                      \
	do {                                                                      \
		if (!(cond))                                                      \
			FAIL_AT(__VA_ARGS__);                                     \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                        \
	do {                                                                      \
		long long va_ = (long long)(a), vb_ = (long long)(b);             \
		if (va_ != vb_)                                                   \
			FAIL_AT("%s == %lld, expected %s == %lld", #a, va_, #b, vb_); \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                        \
	do {                                                                      \
		const char *sa_ = (a), *sb_ = (b);                                \
		if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                        \
			FAIL_AT("%s == \"%s\", expected \"%s\"", #a,              \
				sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");      \
	} while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                     \
	do {                                                                      \
		double va_ = (double)(a), vb_ = (double)(b);                      \
		if (!(fabs(va_ - vb_) <= (tol)))                                  \
			FAIL_AT("%s = %.9g, expected %.9g within %g", #a, va_, vb_, \
				(double)(tol));                                   \
	} while (0)

/* Skips the rest of a case with a clear line (e.g. no demo model, no GPU); counts as passed. */
#define SKIP(...)                                                                 \
	do {                                                                      \
		printf("SKIP ");                                                  \
		printf(__VA_ARGS__);                                              \
		printf("\n");                                                     \
		return;                                                           \
	} while (0)

/* Deterministic random numbers for property tests; the seed is printed by the caller. */
static inline uint64_t test_rand_next(uint64_t *state)
{
	uint64_t x = (*state += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Uniform in [-1, 1). */
static inline float test_rand_float(uint64_t *state)
{
	return (float)((double)(test_rand_next(state) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* The seed of a run: TEST_SEED when set (decimal, or hex with 0x), else dflt. Printed, so a
 * failing run can be repeated. */
static inline uint64_t test_seed(uint64_t dflt)
{
	const char *env = getenv("TEST_SEED");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : dflt;
	printf("seed %llu (TEST_SEED to repeat)\n", (unsigned long long)seed);
	return seed;
}

/* Makes a fresh directory /tmp/<name>.XXXXXX in dir (cap bytes). When it cannot, says why
 * in a summary line the runner counts as a failure, and returns false. */
static inline bool test_tmpdir_make(char *dir, size_t cap, const char *name)
{
	snprintf(dir, cap, "/tmp/%s.XXXXXX", name);
	if (mkdtemp(dir))
		return true;
	printf("cannot make a temporary directory %s: %s\n0 passed, 1 failed\n", dir,
	       strerror(errno));
	return false;
}

/* Removes dir and everything under it, saying so when it cannot. */
static inline void test_tmpdir_remove(const char *dir)
{
	char cmd[1100];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("cannot remove %s\n", dir);
}

static inline int test_summary(void)
{
	printf("%d passed, %d failed\n", test_n_passed, test_n_failed);
	return test_n_failed ? 1 : 0;
}

#endif
