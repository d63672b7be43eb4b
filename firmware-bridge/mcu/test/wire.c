#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_frame.h"

static void w_write(void *ctx, const uint8_t *bytes, size_t n) {
  end *e = (end *)ctx;
  if (e->out_len + n <= WIRE_CAP) {
    memcpy(e->out + e->out_len, bytes, n);
    e->out_len += n;
  }
}

/* Payload of counted frame c: the counter, then a length and filler derived from it (zeros included). */
static size_t make_payload(uint32_t c, uint8_t *p) {
  size_t len = 4u + (c * 37u) % 200u;
  size_t i;
  fb_put_u32(p, c);
  for (i = 4; i < len; i++) {
    p[i] = (uint8_t)((c + i) % 7u == 0 ? 0 : c * 13u + i);
  }
  return len;
}

int end_send(end *e) {
  uint8_t p[256];
  size_t len = make_payload(e->next_counter, p);
  int r = fb_link_send(&e->link, 0x20, p, len);
  if (r == FB_OK) {
    e->next_counter++;
  }
  return r;
}

static void w_on_frame(void *ctx, uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len) {
  end *e = (end *)ctx;
  uint8_t want[256];
  uint32_t c;
  (void)seq;
  if (type != 0x20 || len < 4) {
    e->order_errors++;
    return;
  }
  c = fb_get_u32(payload);
  if (make_payload(c, want) != len || memcmp(want, payload, len) != 0) {
    e->order_errors++;
  }
  if (e->n_got < 4096) {
    e->got[e->n_got++] = c;
  }
}

static void w_on_link(void *ctx, int up, unsigned reason) {
  end *e = (end *)ctx;
  if (getenv("WIRE_DEBUG")) {
    printf("      [%lu] %s %s reason %u (rx_last %lu)\n", (unsigned long)e->link.now,
           e->link.cfg.role == FB_ROLE_MCU ? "mcu" : "gw", up ? "up" : "down", reason, (unsigned long)e->link.last_rx);
  }
  if (up) {
    unsigned k;
    e->ups++;
    for (k = 0; k < e->send_on_up; k++) {
      (void)end_send(e);
    }
  } else {
    e->downs++;
    e->last_down = reason;
  }
}

void end_init(end *e, uint8_t role, uint8_t window, uint8_t tx_slots, uint32_t boot_id, uint8_t max_retries) {
  fb_link_config cfg;
  fb_link_callbacks cb;
  faults keep = e->f;
  memset(e, 0, sizeof *e);
  e->f = keep;
  memset(&cfg, 0, sizeof cfg);
  cfg.role = role;
  cfg.capabilities = role == FB_ROLE_MCU ? 0x0F : 0x0E;
  cfg.window = window;
  cfg.boot_id = boot_id;
  cfg.max_retries = max_retries;
  cb.write = w_write;
  cb.on_frame = w_on_frame;
  cb.on_link = w_on_link;
  (void)fb_link_init(&e->link, &cfg, &cb, e, e->rx, sizeof e->rx, e->tx, END_FRAME, tx_slots);
}

static void deliver(end *to, const uint8_t *b, size_t n, uint32_t now) { fb_link_input(&to->link, b, n, now); }

void wire_transfer(end *from, end *to, fb_rng *rng, uint32_t now) {
  size_t start = 0;
  size_t i;
  const faults *f = &from->f;
  if (f->hold) {
    return;
  }
  for (i = 0; i < from->out_len; i++) {
    uint8_t frame[2 * END_FRAME];
    size_t n;
    if (from->out[i] != 0) {
      continue;
    }
    n = i + 1 - start;
    if (n <= sizeof frame) {
      memcpy(frame, from->out + start, n);
      if (n > 3 && frame[0] == 0x03 && frame[1] == 0x01 && frame[2] == FB_T_HELLO) {
        from->hellos_written++;
      }
      if (!f->cut && fb_rand(rng) % 100u >= f->drop_pct) {
        if (f->noise_pct && fb_rand(rng) % 100u < f->noise_pct) {
          uint8_t noise[24];
          unsigned k;
          unsigned len = 1u + fb_rand(rng) % 23u;
          for (k = 0; k < len; k++) {
            unsigned x = fb_rand(rng);
            noise[k] = (uint8_t)(x % 6u == 0 ? 0 : x >> 9);
          }
          deliver(to, noise, len, now); /* without a final 0x00 it spoils the frame after it: retransmitted */
        }
        if (n > 1 && f->corrupt_pct && fb_rand(rng) % 100u < f->corrupt_pct) {
          size_t at = fb_rand(rng) % (n - 1u);
          frame[at] = (uint8_t)(frame[at] ^ (1u << (fb_rand(rng) % 8u)));
        }
        deliver(to, frame, n, now);
        if (f->dup_pct && fb_rand(rng) % 100u < f->dup_pct) {
          deliver(to, frame, n, now);
        }
      }
    }
    start = i + 1;
  }
  memmove(from->out, from->out + start, from->out_len - start);
  from->out_len -= start;
}

uint32_t wire_run(end *a, end *b, fb_rng *rng, uint32_t now, uint32_t ms, unsigned a_total, unsigned b_total) {
  uint32_t stop = now + ms;
  while ((int32_t)(stop - now) > 0) {
    now += 5;
    while (a->next_counter < a_total && fb_link_can_send(&a->link) && end_send(a) == FB_OK) {
    }
    while (b->next_counter < b_total && fb_link_can_send(&b->link) && end_send(b) == FB_OK) {
    }
    wire_transfer(a, b, rng, now);
    wire_transfer(b, a, rng, now);
    fb_link_poll(&a->link, now);
    fb_link_poll(&b->link, now);
    if ((a_total || b_total) && a->link.up && b->link.up && a->next_counter == a_total && b->next_counter == b_total &&
        a->link.tx_count == 0 && b->link.tx_count == 0) {
      break; /* everything sent and acknowledged */
    }
  }
  return now;
}
