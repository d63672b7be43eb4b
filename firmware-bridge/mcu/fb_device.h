/* The device-level API (PROTOCOL.md 5): one MCU identity over one link. Sends IDENTITY after every link-up,
 * keeps telemetry until its TELEMETRY_ACK in a caller-provided ring of slots and re-sends what is unconfirmed
 * after every link-up (at-least-once, 5.3), answers SIGN_REQUEST through the on_sign callback (the key stays with
 * the application), answers unknown or malformed frames with ERROR, and hands every other message to a callback.
 *
 *   static uint8_t rx[512], tx[4 * 512], tm[8 * 256];
 *   fb_device_buffers b = {rx, sizeof rx, tx, 512, 4, tm, 256, 8};
 *   fb_device_init(&dev, &cfg, &callbacks, app, &b);
 *   fb_device_start(&dev, millis());
 *   // UART ISR / read loop:  fb_device_input(&dev, bytes, n, millis());
 *   // every 10..50 ms:       fb_device_poll(&dev, millis());
 *   fb_send_telemetry(&dev, props, 2, body, body_len, &id);
 *
 * Callbacks run inside fb_device_input / fb_device_poll; they may call the send functions (not input / poll).
 * Message fields point into the receive buffer and are valid during the callback only. */
#ifndef FB_DEVICE_H
#define FB_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "fb_common.h"
#include "fb_link.h"
#include "fb_msg.h"

#ifndef FB_TELEMETRY_SLOTS_MAX
#define FB_TELEMETRY_SLOTS_MAX 16u /* bookkeeping arrays in fb_device; override with -D to save RAM */
#endif

typedef struct fb_device_callbacks {
  fb_write_fn write; /* required: UART output */
  void (*on_link)(void *ctx, int up, unsigned reason); /* after IDENTITY and the re-sends went out */
  void (*on_status)(void *ctx, const fb_status *m);
  /* Settle with fb_settle_c2d now or later (tag). Without this callback every C2D is rejected. */
  void (*on_c2d)(void *ctx, const fb_c2d *m);
  void (*on_twin)(void *ctx, const fb_twin *m);
  void (*on_twin_result)(void *ctx, const fb_twin_result *m);
  void (*on_desired)(void *ctx, const fb_twin_desired *m);
  /* Answer with fb_method_respond now or later (rid). Without this callback methods are answered 404. */
  void (*on_method)(void *ctx, const fb_method_request *m);
  /* Write HMAC-SHA256(device key, string_to_sign) into mac and return 0, or return a non-zero status (no key,
   * busy). fb_hmac_sha256.h has an implementation. Without this callback the status is 1. */
  int (*on_sign)(void *ctx, const fb_bytes *string_to_sign, uint8_t mac[32]);
  void (*on_time)(void *ctx, uint64_t unix_ms);
  /* The gateway's verdict on telemetry id: 200 once the hub has it, else the hub's error status (the slot is
   * free either way). 413 without a frame when the message is larger than the gateway's maxFrame. */
  void (*on_telemetry_ack)(void *ctx, uint32_t id, uint16_t status);
  void (*on_error)(void *ctx, const fb_error *m);
} fb_device_callbacks;

typedef struct fb_device_config {
  const char *device_id; /* NUL-terminated, kept by pointer */
  const char *module_id; /* NUL-terminated or NULL for a device */
  uint8_t auth;          /* 0: the gateway holds the key; 1: the MCU signs (set FB_CAP_SIGN and on_sign) */
  fb_link_config link;   /* role must be FB_ROLE_MCU */
} fb_device_config;

typedef struct fb_device_buffers {
  uint8_t *rx;        /* decoded receive frames: rx_size is the maxFrame announced (64..65535) */
  size_t rx_size;
  uint8_t *tx;        /* tx_slots frames in flight of tx_slot_size bytes (the largest frame sent) */
  size_t tx_slot_size;
  uint8_t tx_slots;   /* 1..8 */
  uint8_t *telemetry; /* telemetry_slots unconfirmed TELEMETRY payloads of telemetry_slot_size bytes */
  size_t telemetry_slot_size;
  uint8_t telemetry_slots; /* 1..FB_TELEMETRY_SLOTS_MAX */
} fb_device_buffers;

typedef struct fb_device {
  fb_link link;
  fb_device_callbacks cb;
  void *ctx;
  const char *device_id;
  const char *module_id;
  uint8_t auth;
  uint8_t identity_pending; /* IDENTITY goes first after link-up; nothing else until it is out */
  uint8_t sign_pending;     /* a SIGN_RESPONSE waiting for room in the window */
  uint8_t sign_status;
  uint16_t sign_rid;
  uint16_t next_rid;
  uint8_t sign_mac[32];
  uint8_t *tm;
  size_t tm_slot_size;
  uint8_t tm_slots;
  uint8_t tm_state[FB_TELEMETRY_SLOTS_MAX];
  uint16_t tm_len[FB_TELEMETRY_SLOTS_MAX];
  uint32_t tm_id[FB_TELEMETRY_SLOTS_MAX];
  uint32_t tm_order[FB_TELEMETRY_SLOTS_MAX];
  uint32_t next_telemetry_id;
  uint32_t next_order;
} fb_device;

/* Returns FB_OK or FB_ERR_ARG (also when tx_slot_size cannot hold this device's IDENTITY, 13 bytes plus the
 * device and module ids, or with auth 1 a SIGN_RESPONSE, 43 bytes). */
int fb_device_init(fb_device *d, const fb_device_config *cfg, const fb_device_callbacks *cb, void *ctx,
                   const fb_device_buffers *buffers);
void fb_device_start(fb_device *d, uint32_t now_ms);
void fb_device_input(fb_device *d, const uint8_t *bytes, size_t n, uint32_t now_ms);
void fb_device_poll(fb_device *d, uint32_t now_ms);

/* IDENTITY (sent automatically after every link-up). */
int fb_send_identity(fb_device *d);

/* Queue telemetry: stored in a free slot, sent now if the link allows, re-sent after every link-up until its
 * TELEMETRY_ACK. Works while the link is down. *id (may be NULL) receives its id. FB_OK, FB_ERR_BUSY (every slot
 * holds unconfirmed telemetry) or FB_ERR_TOO_LARGE (beyond telemetry_slot_size). */
int fb_send_telemetry(fb_device *d, const fb_prop *props, uint8_t count, const uint8_t *body, size_t body_len,
                      uint32_t *id);

/* Number of telemetry messages not yet confirmed by a TELEMETRY_ACK. */
unsigned fb_device_unconfirmed(const fb_device *d);

/* The rest are sent at once or refused: FB_OK, FB_ERR_LINK_DOWN, FB_ERR_BUSY (window full: retry after the next
 * input or poll) or FB_ERR_TOO_LARGE. */
int fb_settle_c2d(fb_device *d, uint32_t tag, uint8_t outcome);
int fb_twin_get(fb_device *d, uint16_t *rid);
int fb_twin_report(fb_device *d, const uint8_t *json, size_t len, uint16_t *rid);
int fb_method_respond(fb_device *d, uint16_t rid, uint16_t status, const uint8_t *json, size_t len);
int fb_request_time(fb_device *d);

#endif
