#include "fb_frame.h"

#include "fb_cobs.h"
#include "fb_crc16.h"

size_t fb_frame_pack(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint8_t *out, size_t cap) {
  size_t total = (size_t)len + FB_FRAME_OVERHEAD;
  uint16_t crc;
  if (cap < total) {
    return 0;
  }
  if (len > 0 && payload != out + FB_HEADER_SIZE) {
    /* memmove semantics without the C library: forwards when the payload moves down, backwards when it moves
     * up, so a payload that overlaps the frame buffer is copied intact. */
    size_t i = len;
    uint8_t *dst = out + FB_HEADER_SIZE;
    /* Compared as integers: relational operators on pointers into different objects (payload is usually not in
     * out) are undefined behaviour in C99 (6.5.8). */
    if ((uintptr_t)dst < (uintptr_t)payload) {
      for (i = 0; i < len; i++) {
        dst[i] = payload[i];
      }
    } else {
      while (i > 0) {
        i--;
        dst[i] = payload[i];
      }
    }
  }
  out[0] = (uint8_t)FB_PROTOCOL_VERSION;
  out[1] = type;
  fb_put_u16(out + 2, seq);
  fb_put_u16(out + 4, len);
  crc = fb_crc16(out, FB_HEADER_SIZE + (size_t)len);
  fb_put_u16(out + FB_HEADER_SIZE + len, crc);
  return total;
}

int fb_frame_parse(const uint8_t *raw, size_t n, fb_frame *f) {
  uint16_t len;
  if (n < FB_FRAME_OVERHEAD) {
    return FB_ERR_FRAME;
  }
  len = fb_get_u16(raw + 4);
  if ((size_t)len + FB_FRAME_OVERHEAD != n) {
    return FB_ERR_FRAME;
  }
  if (fb_crc16(raw, n - 2u) != fb_get_u16(raw + n - 2u)) {
    return FB_ERR_CRC;
  }
  if (raw[0] != FB_PROTOCOL_VERSION) {
    return FB_ERR_FRAME;
  }
  f->version = raw[0];
  f->type = raw[1];
  f->seq = fb_get_u16(raw + 2);
  f->len = len;
  f->payload = raw + FB_HEADER_SIZE;
  return FB_OK;
}

size_t fb_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint8_t *scratch,
                       size_t scratch_cap, uint8_t *out, size_t cap) {
  size_t n = fb_frame_pack(type, seq, payload, len, scratch, scratch_cap);
  size_t w;
  if (n == 0) {
    return 0;
  }
  w = fb_cobs_encode(scratch, n, out, cap);
  if (w == 0 || w + 1u > cap) {
    return 0;
  }
  out[w] = 0;
  return w + 1u;
}
