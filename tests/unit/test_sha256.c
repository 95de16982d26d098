/* test_sha256.c: SHA-256 against the FIPS 180-4 / NIST vectors, incremental == one-shot on
 * random splits, and sha256_file against the sha256sum program on a random file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/format/sha256.h"
#include "tests/test.h"

static void hex_of(const void *data, size_t n, char hex[65])
{
	uint8_t d[32];
	sha256_buffer(data, n, d);
	sha256_to_hex(d, hex);
}

TEST(test_vectors)
{
	static const struct {
		const char *msg, *hex;
	} v[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	char hex[65];
	for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
		hex_of(v[i].msg, strlen(v[i].msg), hex);
		CHECK_EQ_STR(hex, v[i].hex);
	}
}

TEST(test_million_a)
{
	/* fed in uneven pieces so the partial-block path is exercised */
	char buf[1000];
	memset(buf, 'a', sizeof buf);
	sha256_ctx c;
	sha256_init(&c);
	size_t left = 1000000, step = 1;
	while (left) {
		size_t n = step < left ? step : left;
		if (n > sizeof buf)
			n = sizeof buf;
		sha256_update(&c, buf, n);
		left -= n;
		step = step % 997 + 13;
	}
	uint8_t d[32];
	char hex[65];
	sha256_final(&c, d);
	sha256_to_hex(d, hex);
	CHECK_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(test_incremental_matches_oneshot)
{
	uint64_t seed = 0x5a17;
	printf("  seed %llu\n", (unsigned long long)seed);
	/* lengths around the 55/56/64-byte padding boundaries and a few awkward larger ones */
	static const size_t lens[] = {0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4097};
	uint8_t data[4097];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)test_rand_next(&seed);
	for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
		size_t n = lens[k];
		uint8_t one[32], inc[32];
		sha256_buffer(data, n, one);
		sha256_ctx c;
		sha256_init(&c);
		size_t pos = 0;
		while (pos < n) {
			size_t take = (size_t)(test_rand_next(&seed) % 70);
			if (take > n - pos)
				take = n - pos;
			sha256_update(&c, data + pos, take);
			pos += take;
		}
		sha256_final(&c, inc);
		CHECK_MSG(memcmp(one, inc, 32) == 0, "length %zu: incremental differs from one-shot", n);
	}
	/* different data, different digest */
	uint8_t a[32], b[32];
	sha256_buffer(data, 100, a);
	data[50] ^= 1;
	sha256_buffer(data, 100, b);
	CHECK(memcmp(a, b, 32) != 0);
}

TEST(test_file_matches_sha256sum)
{
	if (system("command -v sha256sum >/dev/null 2>&1") != 0)
		SKIP("test_file_matches_sha256sum: no sha256sum program");
	char path[] = "/tmp/optstudio-sha-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	uint64_t seed = 77;
	printf("  seed %llu\n", (unsigned long long)seed);
	size_t n = (2u << 20) + 12345; /* spans the 1 MiB read buffer twice, odd tail */
	uint8_t *buf = malloc(n);
	CHECK(buf);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)test_rand_next(&seed);
	CHECK(write(fd, buf, n) == (ssize_t)n);
	close(fd);
	free(buf);
	char hex[65], cmd[256], want[65] = "";
	os_error err = {0};
	int rc = sha256_file(path, hex, &err);
	snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
	FILE *p = popen(cmd, "r");
	int got = p ? fscanf(p, "%64s", want) : 0;
	if (p)
		pclose(p);
	unlink(path);
	CHECK_EQ_INT(rc, OS_OK);
	CHECK_EQ_INT(got, 1);
	CHECK_EQ_STR(hex, want);
}

TEST(test_file_missing)
{
	char hex[65];
	os_error err = {0};
	int rc = sha256_file("/nonexistent/optstudio/x.bin", hex, &err);
	CHECK_EQ_INT(rc, OS_EIO);
	CHECK(strstr(err.msg, "/nonexistent/optstudio/x.bin") != NULL);
}

int main(void)
{
	RUN(test_vectors);
	RUN(test_million_a);
	RUN(test_incremental_matches_oneshot);
	RUN(test_file_matches_sha256sum);
	RUN(test_file_missing);
	return test_summary();
}
