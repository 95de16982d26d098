/* sha256.h: SHA-256 (FIPS 180-4), incremental and over a whole file, for content hashes
 * of model files and the vocabulary hash that matches drafts to targets. */
#ifndef OPTSTUDIO_SHA256_H
#define OPTSTUDIO_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "../errors.h"

#define SHA256_DIGEST_BYTES 32
#define SHA256_HEX_CHARS 65 /* 64 hex digits + NUL */

/* Running state. Plain data: copy it to fork a hash. */
typedef struct sha256_ctx {
	uint32_t h[8];
	uint64_t n_bytes;   /* message bytes consumed so far */
	uint8_t block[64];  /* pending partial block */
	size_t n_block;     /* bytes used in block, < 64 */
} sha256_ctx;

/* Starts a new hash. */
void sha256_init(sha256_ctx *c);
/* Feeds n bytes (n may be 0; data may be NULL when n is 0). */
void sha256_update(sha256_ctx *c, const void *data, size_t n);
/* Pads, writes the 32-byte digest to out and leaves c unusable until sha256_init. */
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_DIGEST_BYTES]);

/* One-shot digest of a buffer. */
void sha256_buffer(const void *data, size_t n, uint8_t out[SHA256_DIGEST_BYTES]);
/* Lower-case hex of a digest: 64 digits + NUL into out_hex. */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_BYTES], char out_hex[SHA256_HEX_CHARS]);

/* Streams the file at path (1 MiB reads) and writes its hex digest to out_hex.
 * OS_EIO with the path and the system's reason when it cannot be opened or read. */
int sha256_file(const char *path, char out_hex[SHA256_HEX_CHARS], os_error *err);

#endif
