#include "fb_cobs.h"

/* Length of the run of non-zero bytes at src[i..], at most 254. */
static size_t run_length(const uint8_t *src, size_t n, size_t i) {
  size_t r = 0;
  while (i + r < n && src[i + r] != 0 && r < 254u) {
    r++;
  }
  return r;
}

size_t fb_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
  size_t i = 0;
  size_t o = 0;
  for (;;) {
    size_t r = run_length(src, n, i);
    if (o + 1u + r > cap) {
      return 0;
    }
    dst[o++] = (uint8_t)(r == 254u ? 0xFFu : r + 1u);
    if (r > 0) {
      const uint8_t *s = src + i;
      size_t k;
      for (k = 0; k < r; k++) {
        dst[o + k] = s[k];
      }
      o += r;
    }
    i += r;
    if (i == n) {
      break;
    }
    if (r != 254u) {
      i++; /* the zero this block stands for */
    }
  }
  return o;
}

void fb_cobs_write(const uint8_t *src, size_t n, fb_write_fn write, void *ctx) {
  size_t i = 0;
  static const uint8_t zero = 0; /* const data, not state */
  for (;;) {
    size_t r = run_length(src, n, i);
    uint8_t code = (uint8_t)(r == 254u ? 0xFFu : r + 1u);
    write(ctx, &code, 1);
    if (r > 0) {
      write(ctx, src + i, r);
    }
    i += r;
    if (i == n) {
      break;
    }
    if (r != 254u) {
      i++;
    }
  }
  write(ctx, &zero, 1);
}

int fb_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out_len) {
  size_t i = 0;
  size_t o = 0;
  while (i < n) {
    uint8_t code = src[i++];
    size_t k;
    if (code == 0 || i + (size_t)code - 1u > n) {
      return FB_ERR_COBS;
    }
    if (o + (size_t)code - 1u > cap) {
      return FB_ERR_TOO_LARGE;
    }
    for (k = 1; k < code; k++) {
      if (src[i] == 0) {
        return FB_ERR_COBS;
      }
      dst[o++] = src[i++];
    }
    if (code != 0xFFu && i < n) {
      if (o >= cap) {
        return FB_ERR_TOO_LARGE;
      }
      dst[o++] = 0;
    }
  }
  *out_len = o;
  return FB_OK;
}

void fb_cobs_decoder_init(fb_cobs_decoder *d, uint8_t *buf, size_t cap) {
  d->buf = buf;
  d->cap = cap;
  d->len = 0;
  d->code = 0;
  d->left = 0;
  d->started = 0;
  d->discard = 0;
}

static void decoder_reset(fb_cobs_decoder *d) {
  d->len = 0;
  d->code = 0;
  d->left = 0;
  d->started = 0;
  d->discard = 0;
}

int fb_cobs_decoder_put(fb_cobs_decoder *d, uint8_t byte, size_t *frame_len) {
  if (byte == 0) {
    int result;
    if (d->discard) {
      result = FB_COBS_NONE; /* already reported */
    } else if (!d->started) {
      result = FB_COBS_NONE; /* an empty frame (two delimiters): ignored, PROTOCOL.md 2 */
    } else if (d->left != 0) {
      result = FB_COBS_ERROR; /* a code byte pointing past the delimiter */
    } else {
      *frame_len = d->len;
      result = FB_COBS_FRAME;
    }
    decoder_reset(d);
    return result;
  }
  if (d->discard) {
    return FB_COBS_NONE;
  }
  if (d->left == 0) {
    /* A code byte. The zero that ended the previous block (unless it was a 0xFF block) is written now, not
     * when the block ends: the last block of a frame stands for no zero. */
    if (d->started && d->code != 0xFFu) {
      if (d->len >= d->cap) {
        d->discard = 1;
        return FB_COBS_ERROR;
      }
      d->buf[d->len++] = 0;
    }
    d->started = 1;
    d->code = byte;
    d->left = (uint8_t)(byte - 1u);
    return FB_COBS_NONE;
  }
  if (d->len >= d->cap) {
    d->discard = 1;
    return FB_COBS_ERROR;
  }
  d->buf[d->len++] = byte;
  d->left--;
  return FB_COBS_NONE;
}
