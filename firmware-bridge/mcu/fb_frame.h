/* Frame header pack / parse and CRC (PROTOCOL.md 3): version u8 | type u8 | seq u16 | len u16 | payload | crc u16,
 * little-endian, CRC-16/CCITT-FALSE over header and payload. */
#ifndef FB_FRAME_H
#define FB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "fb_common.h"

typedef struct fb_frame {
  uint8_t version;
  uint8_t type;
  uint16_t seq;
  uint16_t len;
  const uint8_t *payload; /* points into the parsed buffer */
} fb_frame;

/* Write header, payload and CRC into out. payload may already sit at out + FB_HEADER_SIZE (then it is not
 * copied). Returns the frame size (len + 8), or 0 when cap is too small. */
size_t fb_frame_pack(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint8_t *out, size_t cap);

/* Parse a decoded frame of n bytes. Returns FB_OK, FB_ERR_FRAME (short, version not 1, len mismatch) or
 * FB_ERR_CRC. */
int fb_frame_parse(const uint8_t *raw, size_t n, fb_frame *f);

/* Pack and COBS-encode into out, with the trailing 0x00. Returns the wire size or 0 when cap is too small.
 * scratch (at least len + 8 bytes) holds the raw frame. */
size_t fb_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint8_t *scratch,
                       size_t scratch_cap, uint8_t *out, size_t cap);

static inline uint16_t fb_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
static inline uint32_t fb_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void fb_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)(v >> 8);
}
static inline void fb_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)((v >> 8) & 0xFFu);
  p[2] = (uint8_t)((v >> 16) & 0xFFu);
  p[3] = (uint8_t)(v >> 24);
}

#endif
