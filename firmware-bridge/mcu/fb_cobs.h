/* COBS framing with a 0x00 delimiter (PROTOCOL.md 2). */
#ifndef FB_COBS_H
#define FB_COBS_H

#include <stddef.h>
#include <stdint.h>

#include "fb_common.h"

/* The largest encoding of n bytes, without the delimiter. */
#define FB_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Encode n bytes into dst (capacity cap), shortest form (nothing after a final 0xFF block), no delimiter.
 * Returns the encoded length, or 0 when cap is too small. */
size_t fb_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/* Encode n bytes straight to a write callback, code bytes and runs taken from src (no second buffer), then the
 * 0x00 delimiter. */
void fb_cobs_write(const uint8_t *src, size_t n, fb_write_fn write, void *ctx);

/* Decode one complete encoding (without its delimiter). Returns FB_OK and the decoded length in *out_len,
 * FB_ERR_COBS for a zero byte or a code byte pointing past the end, FB_ERR_TOO_LARGE when cap is too small. */
int fb_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out_len);

/* Incremental decoder, one byte in at a time (from a UART ISR or a read loop). */
typedef struct fb_cobs_decoder {
  uint8_t *buf;
  size_t cap;
  size_t len;
  uint8_t code;    /* the current block's code byte */
  uint8_t left;    /* data bytes still expected in the current block */
  uint8_t started; /* a code byte has been read for this frame */
  uint8_t discard; /* the frame is bad: skip to the next delimiter */
} fb_cobs_decoder;

#define FB_COBS_NONE 0   /* nothing complete yet */
#define FB_COBS_FRAME 1  /* a frame is complete: buf[0 .. *frame_len) */
#define FB_COBS_ERROR 2  /* a frame was discarded (invalid COBS or overflow); the decoder resynchronises */

void fb_cobs_decoder_init(fb_cobs_decoder *d, uint8_t *buf, size_t cap);

/* Feed one byte. Returns FB_COBS_NONE, FB_COBS_FRAME (then *frame_len is set; the bytes stay valid until the next
 * call) or FB_COBS_ERROR (reported once per bad frame: on overflow at once, otherwise at its delimiter). */
int fb_cobs_decoder_put(fb_cobs_decoder *d, uint8_t byte, size_t *frame_len);

#endif
