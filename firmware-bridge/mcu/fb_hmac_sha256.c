#include "fb_hmac_sha256.h"

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

static void compress(fb_sha256 *s, const uint8_t *b) {
  uint32_t w[64];
  uint32_t a, bb, c, d, e, f, g, h;
  unsigned i;
  for (i = 0; i < 16u; i++) {
    w[i] = ((uint32_t)b[4 * i] << 24) | ((uint32_t)b[4 * i + 1] << 16) | ((uint32_t)b[4 * i + 2] << 8) |
           (uint32_t)b[4 * i + 3];
  }
  for (i = 16; i < 64u; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = s->h[0];
  bb = s->h[1];
  c = s->h[2];
  d = s->h[3];
  e = s->h[4];
  f = s->h[5];
  g = s->h[6];
  h = s->h[7];
  for (i = 0; i < 64u; i++) {
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = bb;
    bb = a;
    a = t1 + t2;
  }
  s->h[0] += a;
  s->h[1] += bb;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
  s->h[5] += f;
  s->h[6] += g;
  s->h[7] += h;
}

void fb_sha256_init(fb_sha256 *s) {
  s->h[0] = 0x6a09e667u;
  s->h[1] = 0xbb67ae85u;
  s->h[2] = 0x3c6ef372u;
  s->h[3] = 0xa54ff53au;
  s->h[4] = 0x510e527fu;
  s->h[5] = 0x9b05688cu;
  s->h[6] = 0x1f83d9abu;
  s->h[7] = 0x5be0cd19u;
  s->bytes = 0;
  s->fill = 0;
}

void fb_sha256_update(fb_sha256 *s, const uint8_t *data, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    s->block[s->fill++] = data[i];
    if (s->fill == FB_SHA256_BLOCK) {
      compress(s, s->block);
      s->fill = 0;
    }
  }
  s->bytes += n;
}

void fb_sha256_final(fb_sha256 *s, uint8_t out[FB_SHA256_SIZE]) {
  uint64_t bits = s->bytes * 8u;
  unsigned i;
  s->block[s->fill++] = 0x80u;
  if (s->fill > 56u) {
    while (s->fill < FB_SHA256_BLOCK) {
      s->block[s->fill++] = 0;
    }
    compress(s, s->block);
    s->fill = 0;
  }
  while (s->fill < 56u) {
    s->block[s->fill++] = 0;
  }
  for (i = 0; i < 8u; i++) {
    s->block[56u + i] = (uint8_t)(bits >> (56u - 8u * i));
  }
  compress(s, s->block);
  for (i = 0; i < 8u; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}

/* Overwrite key material through a volatile pointer: a plain loop or memset on memory that is never read again
 * may be optimised away. */
static void wipe(void *p, size_t n) {
  volatile uint8_t *v = (volatile uint8_t *)p;
  while (n > 0) {
    n--;
    v[n] = 0;
  }
}

void fb_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[FB_SHA256_SIZE]) {
  uint8_t k[FB_SHA256_BLOCK];
  uint8_t pad[FB_SHA256_BLOCK];
  uint8_t inner[FB_SHA256_SIZE];
  fb_sha256 s;
  size_t i;
  for (i = 0; i < FB_SHA256_BLOCK; i++) {
    k[i] = 0;
  }
  if (key_len > FB_SHA256_BLOCK) { /* RFC 2104: longer keys are hashed first */
    fb_sha256_init(&s);
    fb_sha256_update(&s, key, key_len);
    fb_sha256_final(&s, k);
  } else {
    for (i = 0; i < key_len; i++) {
      k[i] = key[i];
    }
  }
  for (i = 0; i < FB_SHA256_BLOCK; i++) {
    pad[i] = (uint8_t)(k[i] ^ 0x36u);
  }
  fb_sha256_init(&s);
  fb_sha256_update(&s, pad, FB_SHA256_BLOCK);
  fb_sha256_update(&s, msg, msg_len);
  fb_sha256_final(&s, inner);
  for (i = 0; i < FB_SHA256_BLOCK; i++) {
    pad[i] = (uint8_t)(k[i] ^ 0x5cu);
  }
  fb_sha256_init(&s);
  fb_sha256_update(&s, pad, FB_SHA256_BLOCK);
  fb_sha256_update(&s, inner, FB_SHA256_SIZE);
  fb_sha256_final(&s, out);
  /* The key (and the pads and states derived from it) must not outlive the call in stack memory that the next
   * function, or a crash dump, can read: the device key never leaves the MCU (PROTOCOL.md 5.8). */
  wipe(k, sizeof k);
  wipe(pad, sizeof pad);
  wipe(inner, sizeof inner);
  wipe(&s, sizeof s);
}
