/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), small and portable, for answering SIGN_REQUEST
 * (PROTOCOL.md 5.8) on an MCU without a crypto library. About 1 KB of code, no tables beyond the 256-byte K. */
#ifndef FB_HMAC_SHA256_H
#define FB_HMAC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define FB_SHA256_SIZE 32u
#define FB_SHA256_BLOCK 64u

typedef struct fb_sha256 {
  uint32_t h[8];
  uint64_t bytes;
  uint8_t block[FB_SHA256_BLOCK];
  size_t fill;
} fb_sha256;

void fb_sha256_init(fb_sha256 *s);
void fb_sha256_update(fb_sha256 *s, const uint8_t *data, size_t n);
void fb_sha256_final(fb_sha256 *s, uint8_t out[FB_SHA256_SIZE]);

/* HMAC-SHA256 of msg under key (any length). */
void fb_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[FB_SHA256_SIZE]);

#endif
