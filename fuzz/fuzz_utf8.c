/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for util_utf8_valid(), against an independent validator
 * written here from the table of well-formed byte sequences (Unicode 15,
 * section 3.9, table 3-7) rather than by decoding code points: the two must
 * agree on every input, and on every prefix the fuzzer's input ends at.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tokend/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool in(uint8_t c, uint8_t lo, uint8_t hi)
{
	return c >= lo && c <= hi;
}

static bool reference(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t left = n - i;
		if (c <= 0x7f) {
			i += 1;
		} else if (in(c, 0xc2, 0xdf)) {
			if (left < 2 || !in(s[i + 1], 0x80, 0xbf))
				return false;
			i += 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			uint8_t lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
			if (left < 3 || !in(s[i + 1], lo, hi) || !in(s[i + 2], 0x80, 0xbf))
				return false;
			i += 3;
		} else if (c >= 0xf0 && c <= 0xf4) {
			uint8_t lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
			if (left < 4 || !in(s[i + 1], lo, hi) || !in(s[i + 2], 0x80, 0xbf) ||
			    !in(s[i + 3], 0x80, 0xbf))
				return false;
			i += 4;
		} else {
			return false; /* 80..c1, f5..ff */
		}
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (util_utf8_valid((const char *)data, size) != reference(data, size))
		abort();
	for (size_t k = size > 4 ? size - 4 : 0; k < size; k++)
		if (util_utf8_valid((const char *)data, k) != reference(data, k))
			abort();
	return 0;
}
