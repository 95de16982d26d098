/* unicode.h: the little Unicode a tokenizer needs: strict UTF-8 decoding that never loses a
 * byte, the letter / number / whitespace classes of the GPT-2 style pre-tokenizer regexes,
 * and GPT-2's reversible byte <-> code point mapping. Pure functions, no state. */
#ifndef OPTSTUDIO_UNICODE_H
#define OPTSTUDIO_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Returned in *cp for a byte that does not start a valid UTF-8 sequence. */
#define UNICODE_INVALID 0xFFFFFFFFu

/* Coarse classes, as the pre-tokenizer regexes use them. */
enum unicode_class {
	UNICODE_OTHER = 0,      /* [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls, invalid bytes */
	UNICODE_LETTER = 1,     /* \p{L} */
	UNICODE_NUMBER = 2,     /* \p{N} */
	UNICODE_SPACE = 3,      /* \s (the Unicode White_Space property) */
};

/* Decodes one UTF-8 sequence at s (n >= 1 bytes available). Returns its length in bytes
 * (1..4) and stores the code point in *cp. A byte that does not start a complete, shortest-form
 * sequence of a scalar value (no surrogates, <= U+10FFFF) is consumed alone with
 * *cp = UNICODE_INVALID, so walking a buffer this way visits every byte exactly once. */
size_t unicode_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Encodes a scalar value cp (<= U+10FFFF) as UTF-8 into out (4 bytes). Returns the length. */
size_t unicode_utf8_encode(uint32_t cp, char out[4]);

/* Length of the sequence a lead byte announces (1..4), or 0 for a byte that cannot lead
 * (continuation bytes 0x80..0xBF, 0xC0, 0xC1, 0xF5..0xFF). */
size_t unicode_utf8_lead_len(unsigned char b);

/* The class of a code point; UNICODE_INVALID is UNICODE_OTHER. Letters and numbers follow
 * the general categories L* and N* of Unicode 14.0 in full (a 779-range table generated from
 * Python's unicodedata); unassigned code points are OTHER. */
enum unicode_class unicode_class_of(uint32_t cp);

/* GPT-2's byte-level mapping: each byte 0..255 to a printable code point (printable Latin-1
 * bytes map to themselves, the rest to U+0100..U+0143), and back. unicode_cp_to_byte returns
 * -1 for a code point that is not the image of a byte. */
uint32_t unicode_byte_to_cp(uint8_t b);
int unicode_cp_to_byte(uint32_t cp);

#endif
