/* CRC-16, COBS and HMAC-SHA256 against published vectors; COBS decoder edge cases. */
#include <string.h>

#include "fb_cobs.h"
#include "fb_crc16.h"
#include "fb_hmac_sha256.h"
#include "runner.h"

static void crc16_matches_the_ccitt_false_check_value(void) {
  CHECK(fb_crc16((const uint8_t *)"123456789", 9) == 0x29B1u);
  CHECK(fb_crc16((const uint8_t *)"", 0) == 0xFFFFu);
  CHECK(fb_crc16_update(fb_crc16((const uint8_t *)"1234", 4), (const uint8_t *)"56789", 5) == 0x29B1u);
}

typedef struct vec {
  const char *raw;
  size_t raw_len;
  const char *enc;
  size_t enc_len;
} vec;

static void cobs_encodes_the_published_vectors(void) {
  static const vec v[] = {
      {"\0", 1, "\1\1", 2},
      {"\0\0", 2, "\1\1\1", 3},
      {"\0\21\0", 3, "\1\2\21\1", 4},
      {"\21\42\0\63", 4, "\3\21\42\2\63", 5},
      {"\21\42\63\104", 4, "\5\21\42\63\104", 5},
      {"\21\0\0\0", 4, "\2\21\1\1\1", 5},
  };
  uint8_t out[16];
  uint8_t back[16];
  size_t i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    size_t n = fb_cobs_encode((const uint8_t *)v[i].raw, v[i].raw_len, out, sizeof out);
    size_t m = 0;
    CHECK(n == v[i].enc_len && memcmp(out, v[i].enc, n) == 0);
    CHECK(fb_cobs_decode(out, n, back, sizeof back, &m) == FB_OK && m == v[i].raw_len);
    CHECK(memcmp(back, v[i].raw, m) == 0);
  }
}

static void cobs_writes_0xff_blocks_at_254_byte_runs(void) {
  uint8_t raw[600];
  uint8_t enc[700];
  size_t i;
  size_t n;
  for (i = 0; i < sizeof raw; i++) {
    raw[i] = (uint8_t)(i % 255u + 1u);
  }
  /* 254 non-zero: one 0xFF block, nothing after it (shortest form, PROTOCOL.md 2). */
  n = fb_cobs_encode(raw, 254, enc, sizeof enc);
  CHECK(n == 255 && enc[0] == 0xFF && memcmp(enc + 1, raw, 254) == 0);
  /* 255 non-zero: 0xFF block, then a block of 1. */
  n = fb_cobs_encode(raw, 255, enc, sizeof enc);
  CHECK(n == 257 && enc[0] == 0xFF && enc[255] == 2 && enc[256] == raw[254]);
  /* 508 non-zero: two 0xFF blocks and nothing else. */
  n = fb_cobs_encode(raw, 508, enc, sizeof enc);
  CHECK(n == 510 && enc[0] == 0xFF && enc[255] == 0xFF);
  /* 254 non-zero then a zero: FF <254> 01 01. */
  raw[254] = 0;
  n = fb_cobs_encode(raw, 255, enc, sizeof enc);
  CHECK(n == 257 && enc[255] == 1 && enc[256] == 1);
  CHECK(fb_cobs_encode(raw, 254, enc, 254) == 0); /* too small */
  CHECK(FB_COBS_MAX_ENCODED(508u) >= 510u);
}

/* Feed bytes to a decoder; count frames and errors, keep the last frame. */
typedef struct feed_result {
  int frames;
  int errors;
  size_t last_len;
  uint8_t last[1200];
} feed_result;

static void feed(fb_cobs_decoder *d, const uint8_t *bytes, size_t n, feed_result *r) {
  size_t i;
  for (i = 0; i < n; i++) {
    size_t len = 0;
    int k = fb_cobs_decoder_put(d, bytes[i], &len);
    if (k == FB_COBS_FRAME) {
      r->frames++;
      r->last_len = len;
      memcpy(r->last, d->buf, len);
    } else if (k == FB_COBS_ERROR) {
      r->errors++;
    }
  }
}

static void cobs_round_trips_every_length_through_the_incremental_decoder(void) {
  static uint8_t raw[1100];
  static uint8_t enc[1200];
  static uint8_t buf[1100];
  fb_rng rng = {12345};
  size_t len;
  for (len = 0; len <= sizeof raw; len += (len < 600 ? 1 : 7)) {
    fb_cobs_decoder d;
    static feed_result r;
    size_t i;
    size_t n;
    for (i = 0; i < len; i++) {
      unsigned x = fb_rand(&rng);
      raw[i] = (uint8_t)((x & 7u) == 0 ? 0 : x >> 8); /* some zeros, often long non-zero runs */
    }
    n = fb_cobs_encode(raw, len, enc, sizeof enc);
    CHECK(n > 0 && n <= FB_COBS_MAX_ENCODED(len));
    CHECK(memchr(enc, 0, n) == NULL);
    enc[n] = 0;
    memset(&r, 0, sizeof r);
    fb_cobs_decoder_init(&d, buf, sizeof buf);
    feed(&d, enc, n + 1, &r);
    CHECK_MSG(r.frames == 1 && r.errors == 0 && r.last_len == len && memcmp(r.last, raw, len) == 0, "len %u",
              (unsigned)len);
  }
}

static void cobs_decoder_accepts_a_trailing_0x01_after_a_final_0xff_block(void) {
  uint8_t enc[260];
  uint8_t buf[300];
  fb_cobs_decoder d;
  feed_result r;
  size_t i;
  enc[0] = 0xFF;
  for (i = 1; i < 255; i++) {
    enc[i] = (uint8_t)i;
  }
  enc[255] = 0x01;
  enc[256] = 0x00;
  memset(&r, 0, sizeof r);
  fb_cobs_decoder_init(&d, buf, sizeof buf);
  feed(&d, enc, 257, &r);
  CHECK(r.frames == 1 && r.last_len == 254 && r.last[253] == 254);
}

static void cobs_decoder_rejects_a_code_past_the_delimiter_and_overflow_then_resynchronises(void) {
  static const uint8_t bad[] = {0x05, 0x11, 0x22, 0x00};         /* code 5 but only 2 bytes */
  static const uint8_t good[] = {0x03, 0x11, 0x22, 0x02, 0x33, 0x00};
  static const uint8_t empty[] = {0x00, 0x00};
  uint8_t big[80];
  uint8_t buf[64];
  fb_cobs_decoder d;
  feed_result r;
  memset(&r, 0, sizeof r);
  fb_cobs_decoder_init(&d, buf, sizeof buf);
  feed(&d, bad, sizeof bad, &r);
  CHECK(r.frames == 0 && r.errors == 1);
  feed(&d, empty, sizeof empty, &r); /* empty frames are ignored */
  CHECK(r.frames == 0 && r.errors == 1);
  memset(big, 0x41, sizeof big); /* 80 non-zero bytes: longer than the 64-byte buffer */
  big[0] = 0x51;
  feed(&d, big, sizeof big, &r);
  CHECK(r.errors == 2);
  feed(&d, good, sizeof good, &r); /* the overflowing frame ends at this delimiter... */
  CHECK(r.frames == 0);
  feed(&d, good, sizeof good, &r); /* ...and the next one is decoded */
  CHECK(r.frames == 1 && r.last_len == 4 && r.last[2] == 0 && r.last[3] == 0x33);
  {
    size_t m = 0;
    CHECK(fb_cobs_decode(bad, 3, buf, sizeof buf, &m) == FB_ERR_COBS);
    CHECK(fb_cobs_decode(good, 5, buf, 2, &m) == FB_ERR_TOO_LARGE);
  }
}

static int unhex(const char *h, uint8_t *out) {
  int n = 0;
  while (h[0] && h[1]) {
    unsigned v = 0;
    int k;
    for (k = 0; k < 2; k++) {
      char c = h[k];
      v = v * 16u + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    out[n++] = (uint8_t)v;
    h += 2;
  }
  return n;
}

static void hmac_sha256_matches_rfc_4231(void) {
  /* RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (5 is a truncated output). */
  static const struct {
    const char *key;
    const char *data;
    const char *mac;
  } v[] = {
      {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"0102030405060708090a0b0c0d0e0f10111213141516171819",
       "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {"*131",
       "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {"*131",
       "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e64"
       "2061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f2062652068"
       "6173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  size_t i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    uint8_t key[200];
    uint8_t data[200];
    uint8_t want[32];
    uint8_t got[32];
    int kn;
    if (strcmp(v[i].key, "*131") == 0) { /* cases 6 and 7: 131 bytes of 0xaa, longer than a block */
      memset(key, 0xaa, 131);
      kn = 131;
    } else {
      kn = unhex(v[i].key, key);
    }
    int dn = unhex(v[i].data, data);
    (void)unhex(v[i].mac, want);
    fb_hmac_sha256(key, (size_t)kn, data, (size_t)dn, got);
    CHECK_MSG(memcmp(got, want, 32) == 0, "RFC 4231 vector %u", (unsigned)i);
  }
}

static void sha256_hashes_across_block_boundaries(void) {
  /* SHA-256("abc") and of 1,000,000 x 'a' (FIPS 180-2 appendix B). */
  static const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  static const char *million = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  uint8_t want[32];
  uint8_t got[32];
  uint8_t a[1000];
  fb_sha256 s;
  int i;
  fb_sha256_init(&s);
  fb_sha256_update(&s, (const uint8_t *)"abc", 3);
  fb_sha256_final(&s, got);
  (void)unhex(abc, want);
  CHECK(memcmp(got, want, 32) == 0);
  memset(a, 'a', sizeof a);
  fb_sha256_init(&s);
  for (i = 0; i < 1000; i++) {
    fb_sha256_update(&s, a, sizeof a);
  }
  fb_sha256_final(&s, got);
  (void)unhex(million, want);
  CHECK(memcmp(got, want, 32) == 0);
}

const fb_test codec_tests[] = {
    {"crc16 matches the CCITT-FALSE check value", crc16_matches_the_ccitt_false_check_value},
    {"cobs encodes the published vectors", cobs_encodes_the_published_vectors},
    {"cobs writes 0xFF blocks at 254-byte runs, nothing after a final one", cobs_writes_0xff_blocks_at_254_byte_runs},
    {"cobs round-trips every length through the incremental decoder",
     cobs_round_trips_every_length_through_the_incremental_decoder},
    {"cobs decoder accepts a trailing 0x01 after a final 0xFF block",
     cobs_decoder_accepts_a_trailing_0x01_after_a_final_0xff_block},
    {"cobs decoder rejects a code past the delimiter and overflow, then resynchronises",
     cobs_decoder_rejects_a_code_past_the_delimiter_and_overflow_then_resynchronises},
    {"hmac-sha256 matches RFC 4231", hmac_sha256_matches_rfc_4231},
    {"sha-256 hashes across block boundaries", sha256_hashes_across_block_boundaries},
    {0, 0},
};
