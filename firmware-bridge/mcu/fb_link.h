/* The link layer (PROTOCOL.md 4): HELLO handshake, sequence numbers, cumulative ACK, in-order delivery, duplicate
 * suppression, go-back-N retransmission with a doubling timeout, window, heartbeat.
 *
 * Driven from outside: feed received UART bytes to fb_link_input and call fb_link_poll from a tick (every 10 to
 * 50 ms is plenty), both with a millisecond clock that may wrap. Output goes through the write callback, received
 * application frames through on_frame, link changes through on_link. Callbacks may call fb_link_send, but not
 * fb_link_input or fb_link_poll. Not thread-safe: call everything from one context (or hold a lock). */
#ifndef FB_LINK_H
#define FB_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "fb_cobs.h"
#include "fb_common.h"

/* Which end this is. The C library is the MCU end; the gateway role exists so that two links can be wired back to
 * back in host tests and tools, and behaves as PROTOCOL.md asks of the gateway. */
#define FB_ROLE_MCU 0u
#define FB_ROLE_GATEWAY 1u

/* Why the link went down (on_link's reason when up is 0). */
#define FB_DOWN_RETRIES 1u /* maxRetries retransmissions without an ACK */
#define FB_DOWN_SILENCE 2u /* nothing valid received for 3 x heartbeatMs */
#define FB_DOWN_RESET 3u   /* the peer sent RESET */
#define FB_DOWN_HELLO 4u   /* (gateway) the MCU said HELLO again: it restarted; the link comes up again at once */
#define FB_DOWN_RESTART 5u /* fb_link_start called while up (the application reopened its port) */

typedef struct fb_link_config {
  uint8_t role;               /* FB_ROLE_MCU or FB_ROLE_GATEWAY */
  uint8_t capabilities;       /* FB_CAP_* announced in HELLO / HELLO_ACK */
  uint8_t window;             /* announced: reliable frames we accept ahead, 1..8 (0: 4) */
  uint8_t max_retries;        /* 0: 5 */
  uint32_t boot_id;           /* chosen at every start (random or a boot counter) */
  uint16_t retransmit_ms;     /* 0: 250 */
  uint16_t retransmit_max_ms; /* 0: 2000 */
  uint16_t heartbeat_ms;      /* 0: 2000 */
  uint16_t hello_interval_ms; /* 0: 1000 */
} fb_link_config;

typedef struct fb_link_callbacks {
  fb_write_fn write; /* required */
  /* A reliable frame delivered in order, exactly once. payload is valid during the call only. */
  void (*on_frame)(void *ctx, uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len);
  /* up: 1 with reason 0, or 0 with an FB_DOWN_* reason. */
  void (*on_link)(void *ctx, int up, unsigned reason);
} fb_link_callbacks;

typedef struct fb_peer {
  uint8_t protocol;
  uint8_t capabilities;
  uint8_t window;
  uint16_t max_frame;
  uint32_t boot_id;
} fb_peer;

typedef struct fb_link_stats {
  uint32_t rx_frames;     /* valid frames of any type */
  uint32_t rx_bad;        /* dropped: COBS, overflow, CRC, length, version */
  uint32_t rx_duplicates; /* reliable frames received again and not delivered */
  uint32_t rx_out_of_order;
  uint32_t tx_frames; /* reliable frames sent (first time) */
  uint32_t tx_retransmits;
} fb_link_stats;

typedef struct fb_link {
  fb_link_config cfg;
  fb_link_callbacks cb;
  void *ctx;
  fb_cobs_decoder dec;
  uint8_t *tx;         /* tx_slots slots of tx_slot_size bytes: the raw frames in flight */
  size_t tx_slot_size;
  uint8_t tx_slots;
  uint8_t up;
  uint8_t tx_head;  /* slot of the oldest frame in flight */
  uint8_t tx_count; /* frames in flight */
  uint8_t retries;
  uint16_t tx_len[FB_WINDOW_MAX];
  uint16_t tx_next_seq; /* seq of the next new frame */
  uint16_t tx_base_seq; /* seq of the oldest frame in flight */
  uint16_t rx_expected;
  uint32_t now;
  uint32_t rto;          /* current retransmission timeout */
  uint32_t rto_deadline; /* when the oldest frame in flight is sent again */
  uint32_t last_rx;
  uint32_t last_tx;
  uint32_t next_hello;
  fb_peer peer;
  fb_link_stats stats;
  uint8_t ctl[FB_FRAME_OVERHEAD + 9u]; /* unreliable frames: the largest is HELLO */
} fb_link;

/* Set up a link. rx (rx_size bytes, 64..65535) receives decoded frames: rx_size is the maxFrame announced.
 * tx holds tx_slots (1..8) frames of tx_slot_size bytes each (at least 16): the largest frame this side sends.
 * Returns FB_OK or FB_ERR_ARG. Nothing is sent until fb_link_start. */
int fb_link_init(fb_link *l, const fb_link_config *cfg, const fb_link_callbacks *cb, void *ctx, uint8_t *rx,
                 size_t rx_size, uint8_t *tx, size_t tx_slot_size, uint8_t tx_slots);

/* Start, or start over (after reopening a port): the MCU sends a lone 0x00 (flushing the gateway's partial frame)
 * and HELLO; the gateway sends RESET. A link that was up goes down first (on_link with FB_DOWN_RESTART). */
void fb_link_start(fb_link *l, uint32_t now_ms);

/* Bytes received from the UART, in order. */
void fb_link_input(fb_link *l, const uint8_t *bytes, size_t n, uint32_t now_ms);

/* Timers: retransmission, heartbeat, periodic HELLO. */
void fb_link_poll(fb_link *l, uint32_t now_ms);

/* Send a reliable frame (type above 0x0F). payload may point into the buffer fb_link_payload_buffer returned.
 * Returns FB_OK, FB_ERR_LINK_DOWN, FB_ERR_BUSY (window full), FB_ERR_TOO_LARGE (beyond the slot or the peer's
 * maxFrame) or FB_ERR_ARG (an unreliable type). */
int fb_link_send(fb_link *l, uint8_t type, const uint8_t *payload, size_t len);

/* Where the next reliable frame's payload goes, to build it in place (no second buffer); *cap is the largest
 * payload allowed now. NULL when fb_link_send would refuse (down or busy). */
uint8_t *fb_link_payload_buffer(fb_link *l, size_t *cap);

/* 1 when the link is up and the window has room. */
int fb_link_can_send(const fb_link *l);

static inline int fb_link_is_up(const fb_link *l) { return l->up; }

#endif
