#include "fb_link.h"

#include "fb_frame.h"

#define DUPLICATE_SPAN 8u /* PROTOCOL.md 4.2: a retransmission is one of the 8 numbers before expected */

static uint16_t seq_next(uint16_t s) { return (uint16_t)(s == 65535u ? 1u : s + 1u); }
static uint16_t seq_prev(uint16_t s) { return (uint16_t)(s <= 1u ? 65535u : s - 1u); }

/* Steps forward from a to b in the 1..65535 cycle. */
static uint32_t seq_dist(uint16_t a, uint16_t b) { return b >= a ? (uint32_t)(b - a) : (uint32_t)b + 65535u - a; }

/* Wrap-safe "t has come" for a millisecond clock that wraps at 2^32. */
static int reached(uint32_t now, uint32_t t) { return (int32_t)(now - t) >= 0; }

static uint8_t window_limit(const fb_link *l) { return l->peer.window < l->tx_slots ? l->peer.window : l->tx_slots; }

static size_t max_send_frame(const fb_link *l) {
  return (size_t)l->peer.max_frame < l->tx_slot_size ? (size_t)l->peer.max_frame : l->tx_slot_size;
}

static void write_raw(fb_link *l, const uint8_t *frame, size_t n) {
  fb_cobs_write(frame, n, l->cb.write, l->ctx);
  l->last_tx = l->now;
}

static void send_ctl(fb_link *l, uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len) {
  size_t n = fb_frame_pack(type, seq, payload, len, l->ctl, sizeof l->ctl);
  write_raw(l, l->ctl, n);
}

static void send_hello(fb_link *l, uint8_t type) {
  uint8_t p[9];
  p[0] = (uint8_t)FB_PROTOCOL_VERSION;
  p[1] = l->cfg.capabilities;
  fb_put_u16(p + 2, (uint16_t)l->dec.cap);
  p[4] = l->cfg.window;
  fb_put_u32(p + 5, l->cfg.boot_id);
  send_ctl(l, type, 0, p, sizeof p);
  if (type == FB_T_HELLO) {
    l->next_hello = l->now + l->cfg.hello_interval_ms;
  }
}

static void drop_in_flight(fb_link *l) {
  l->tx_count = 0;
  l->tx_head = 0;
  l->retries = 0;
  l->rto = l->cfg.retransmit_ms;
}

static void link_up(fb_link *l) {
  l->up = 1;
  drop_in_flight(l);
  l->tx_next_seq = 1;
  l->tx_base_seq = 1;
  l->rx_expected = 1;
  l->last_rx = l->now;
  l->last_tx = l->now;
  if (l->cb.on_link) {
    l->cb.on_link(l->ctx, 1, 0);
  }
}

/* (MCU, link down) Whether our last HELLO went out less than retransmitMs ago: it may still be on its way to the
 * gateway, or its HELLO_ACK on the way back. */
static int hello_just_sent(const fb_link *l) {
  return l->now - (l->next_hello - l->cfg.hello_interval_ms) < (uint32_t)l->cfg.retransmit_ms;
}

/* announce: tell the peer (MCU: HELLO, gateway: RESET); not when the peer itself said it (RESET, HELLO). */
static void link_down(fb_link *l, unsigned reason, int announce) {
  int was_up = l->up;
  l->up = 0;
  drop_in_flight(l);
  if (l->cfg.role == FB_ROLE_MCU) {
    send_hello(l, FB_T_HELLO);
  } else if (announce) {
    send_ctl(l, FB_T_RESET, 0, 0, 0);
  }
  if (was_up && l->cb.on_link) {
    l->cb.on_link(l->ctx, 0, reason);
  }
}

static int parse_peer(fb_peer *p, const uint8_t *payload, uint16_t len) {
  if (len != 9u || payload[0] != FB_PROTOCOL_VERSION) {
    return FB_ERR_MALFORMED;
  }
  p->protocol = payload[0];
  p->capabilities = payload[1];
  p->max_frame = fb_get_u16(payload + 2);
  if (p->max_frame < FB_MIN_MAX_FRAME) {
    p->max_frame = FB_MIN_MAX_FRAME;
  }
  p->window = payload[4];
  if (p->window < 1u) {
    p->window = 1;
  } else if (p->window > FB_WINDOW_MAX) {
    p->window = FB_WINDOW_MAX;
  }
  p->boot_id = fb_get_u32(payload + 5);
  return FB_OK;
}

int fb_link_init(fb_link *l, const fb_link_config *cfg, const fb_link_callbacks *cb, void *ctx, uint8_t *rx,
                 size_t rx_size, uint8_t *tx, size_t tx_slot_size, uint8_t tx_slots) {
  if (!l || !cfg || !cb || !cb->write || !rx || !tx || rx_size < FB_MIN_MAX_FRAME || rx_size > 65535u ||
      tx_slots < 1u || tx_slots > FB_WINDOW_MAX || tx_slot_size < 16u || tx_slot_size > 65535u ||
      cfg->window > FB_WINDOW_MAX || cfg->role > FB_ROLE_GATEWAY) {
    return FB_ERR_ARG;
  }
  l->cfg = *cfg;
  if (l->cfg.window == 0) {
    l->cfg.window = 4;
  }
  if (l->cfg.max_retries == 0) {
    l->cfg.max_retries = 5;
  }
  if (l->cfg.retransmit_ms == 0) {
    l->cfg.retransmit_ms = 250;
  }
  if (l->cfg.retransmit_max_ms == 0) {
    l->cfg.retransmit_max_ms = 2000;
  }
  if (l->cfg.heartbeat_ms == 0) {
    l->cfg.heartbeat_ms = 2000;
  }
  if (l->cfg.hello_interval_ms == 0) {
    l->cfg.hello_interval_ms = 1000;
  }
  l->cb = *cb;
  l->ctx = ctx;
  fb_cobs_decoder_init(&l->dec, rx, rx_size);
  l->tx = tx;
  l->tx_slot_size = tx_slot_size;
  l->tx_slots = tx_slots;
  l->up = 0;
  l->tx_next_seq = 1;
  l->tx_base_seq = 1;
  l->rx_expected = 1;
  l->now = 0;
  l->rto_deadline = 0;
  l->last_rx = 0;
  l->last_tx = 0;
  l->next_hello = 0;
  l->peer.protocol = 0;
  l->peer.capabilities = 0;
  l->peer.window = 1;
  l->peer.max_frame = FB_MIN_MAX_FRAME;
  l->peer.boot_id = 0;
  l->stats.rx_frames = 0;
  l->stats.rx_bad = 0;
  l->stats.rx_duplicates = 0;
  l->stats.rx_out_of_order = 0;
  l->stats.tx_frames = 0;
  l->stats.tx_retransmits = 0;
  drop_in_flight(l);
  return FB_OK;
}

void fb_link_start(fb_link *l, uint32_t now_ms) {
  static const uint8_t flush = 0; /* const data, not state */
  l->now = now_ms;
  fb_cobs_decoder_init(&l->dec, l->dec.buf, l->dec.cap); /* a partial frame from before is void */
  if (l->cfg.role == FB_ROLE_MCU) {
    l->cb.write(l->ctx, &flush, 1);
  }
  if (l->up) {
    link_down(l, FB_DOWN_RESTART, 1); /* MCU: HELLO, gateway: RESET */
  } else if (l->cfg.role == FB_ROLE_MCU) {
    send_hello(l, FB_T_HELLO);
  } else {
    send_ctl(l, FB_T_RESET, 0, 0, 0);
  }
}

static void handle_ack(fb_link *l, uint16_t seq) {
  uint32_t d;
  if (!l->up || l->tx_count == 0 || seq == 0) {
    return;
  }
  d = seq_dist(l->tx_base_seq, seq);
  if (d >= l->tx_count) {
    return; /* not in flight: ignored (PROTOCOL.md 4.2) */
  }
  l->tx_head = (uint8_t)((l->tx_head + d + 1u) % l->tx_slots);
  l->tx_count = (uint8_t)(l->tx_count - (d + 1u));
  l->tx_base_seq = seq_next(seq);
  l->retries = 0;
  l->rto = l->cfg.retransmit_ms;
  l->rto_deadline = l->now + l->rto;
}

static void handle_reliable(fb_link *l, uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len) {
  uint32_t back;
  if (!l->up) {
    send_ctl(l, FB_T_RESET, 0, 0, 0); /* PROTOCOL.md 4.1: no link, start over */
    return;
  }
  if (seq == 0) {
    l->stats.rx_bad++;
    return;
  }
  if (seq == l->rx_expected) {
    l->rx_expected = seq_next(seq);
    send_ctl(l, FB_T_ACK, seq, 0, 0);
    if (l->cb.on_frame) {
      l->cb.on_frame(l->ctx, type, seq, payload, len);
    }
    return;
  }
  back = seq_dist(seq, l->rx_expected);
  if (back >= 1u && back <= DUPLICATE_SPAN) {
    l->stats.rx_duplicates++;
    send_ctl(l, FB_T_ACK, seq_prev(l->rx_expected), 0, 0);
  } else {
    l->stats.rx_out_of_order++; /* after a lost frame: the sender goes back to it */
  }
}

static void handle_frame(fb_link *l, const uint8_t *raw, size_t n) {
  fb_frame f;
  fb_peer peer;
  if (fb_frame_parse(raw, n, &f) != FB_OK) {
    l->stats.rx_bad++; /* dropped silently: retransmission repairs it (PROTOCOL.md 3) */
    return;
  }
  l->stats.rx_frames++;
  l->last_rx = l->now;
  if (FB_IS_RELIABLE(f.type)) {
    handle_reliable(l, f.type, f.seq, f.payload, f.len);
    return;
  }
  switch (f.type) {
  case FB_T_ACK:
    handle_ack(l, f.seq);
    break;
  case FB_T_HELLO:
    if (l->cfg.role == FB_ROLE_GATEWAY && parse_peer(&peer, f.payload, f.len) == FB_OK) {
      l->peer = peer;
      if (l->up) {
        link_down(l, FB_DOWN_HELLO, 0);
      }
      send_hello(l, FB_T_HELLO_ACK);
      link_up(l);
    }
    break;
  case FB_T_HELLO_ACK:
    if (l->cfg.role == FB_ROLE_MCU && parse_peer(&peer, f.payload, f.len) == FB_OK) {
      l->peer = peer;
      if (!l->up) {
        link_up(l);
      } else {
        /* The answer to an earlier HELLO (PROTOCOL.md 4.1): the gateway restarted its transmit sequence when it
         * sent this, and read our HELLO before any of our reliable frames, so only our receive side restarts. */
        l->rx_expected = 1;
      }
    }
    break;
  case FB_T_RESET:
    if (l->up) {
      link_down(l, FB_DOWN_RESET, 0);
    } else if (l->cfg.role == FB_ROLE_MCU && !hello_just_sent(l)) {
      /* A RESET right after our HELLO crossed it (the gateway opening its port, or answering frames we sent before
       * we went down): that HELLO is answered already. A second one would make the gateway start the link over
       * once more, and the ACKs we send for its first session's frames would then acknowledge the same numbers of
       * its second (PROTOCOL.md 4.1). If that HELLO was lost, the next periodic one follows. */
      send_hello(l, FB_T_HELLO);
    }
    break;
  case FB_T_PING:
    /* Only a side whose link is up sends PING. Ours is down: the peer talks into a link we do not have (our RESET
     * was lost), and a PONG would keep it believing so for as long as it has nothing reliable to send. RESET makes
     * it start over, as a reliable frame would (PROTOCOL.md 4.4). */
    send_ctl(l, l->up ? FB_T_PONG : FB_T_RESET, 0, 0, 0);
    break;
  default:
    /* PONG refreshed last_rx above; other link types are unknown and unreliable: nothing to acknowledge. */
    break;
  }
}

void fb_link_input(fb_link *l, const uint8_t *bytes, size_t n, uint32_t now_ms) {
  size_t i;
  l->now = now_ms;
  for (i = 0; i < n; i++) {
    size_t len = 0;
    int r = fb_cobs_decoder_put(&l->dec, bytes[i], &len);
    if (r == FB_COBS_FRAME) {
      handle_frame(l, l->dec.buf, len);
    } else if (r == FB_COBS_ERROR) {
      l->stats.rx_bad++;
    }
  }
}

static void retransmit_all(fb_link *l) {
  uint8_t k;
  for (k = 0; k < l->tx_count; k++) {
    uint8_t slot = (uint8_t)((l->tx_head + k) % l->tx_slots);
    write_raw(l, l->tx + (size_t)slot * l->tx_slot_size, l->tx_len[slot]);
    l->stats.tx_retransmits++;
  }
}

void fb_link_poll(fb_link *l, uint32_t now_ms) {
  l->now = now_ms;
  if (!l->up) {
    if (l->cfg.role == FB_ROLE_MCU && reached(now_ms, l->next_hello)) {
      send_hello(l, FB_T_HELLO);
    }
    return;
  }
  if (l->tx_count > 0 && reached(now_ms, l->rto_deadline)) {
    if (l->retries >= l->cfg.max_retries) {
      link_down(l, FB_DOWN_RETRIES, 1);
      return;
    }
    l->retries++;
    l->rto *= 2u;
    if (l->rto > l->cfg.retransmit_max_ms) {
      l->rto = l->cfg.retransmit_max_ms;
    }
    retransmit_all(l); /* go-back-N (PROTOCOL.md 4.3) */
    l->rto_deadline = now_ms + l->rto;
  }
  if (now_ms - l->last_rx >= 3u * (uint32_t)l->cfg.heartbeat_ms) {
    link_down(l, FB_DOWN_SILENCE, 1);
    return;
  }
  if (now_ms - l->last_tx >= l->cfg.heartbeat_ms) {
    send_ctl(l, FB_T_PING, 0, 0, 0);
  }
}

int fb_link_can_send(const fb_link *l) { return l->up && l->tx_count < window_limit(l); }

uint8_t *fb_link_payload_buffer(fb_link *l, size_t *cap) {
  uint8_t slot;
  if (!fb_link_can_send(l)) {
    return 0;
  }
  slot = (uint8_t)((l->tx_head + l->tx_count) % l->tx_slots);
  *cap = max_send_frame(l) - FB_FRAME_OVERHEAD;
  return l->tx + (size_t)slot * l->tx_slot_size + FB_HEADER_SIZE;
}

int fb_link_send(fb_link *l, uint8_t type, const uint8_t *payload, size_t len) {
  uint8_t slot;
  uint8_t *frame;
  size_t n;
  if (!FB_IS_RELIABLE(type)) {
    return FB_ERR_ARG;
  }
  if (!l->up) {
    return FB_ERR_LINK_DOWN;
  }
  if (len + FB_FRAME_OVERHEAD > max_send_frame(l)) {
    return FB_ERR_TOO_LARGE;
  }
  if (l->tx_count >= window_limit(l)) {
    return FB_ERR_BUSY;
  }
  slot = (uint8_t)((l->tx_head + l->tx_count) % l->tx_slots);
  frame = l->tx + (size_t)slot * l->tx_slot_size;
  n = fb_frame_pack(type, l->tx_next_seq, payload, (uint16_t)len, frame, l->tx_slot_size);
  l->tx_len[slot] = (uint16_t)n;
  if (l->tx_count == 0) {
    l->tx_base_seq = l->tx_next_seq;
    l->rto = l->cfg.retransmit_ms;
    l->retries = 0;
    l->rto_deadline = l->now + l->rto;
  }
  l->tx_count++;
  l->tx_next_seq = seq_next(l->tx_next_seq);
  l->stats.tx_frames++;
  write_raw(l, frame, n);
  return FB_OK;
}
