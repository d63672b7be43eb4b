/* The device API (PROTOCOL.md 5) against a gateway-role link played by the test. */
#include <string.h>

#include "fb_device.h"
#include "fb_frame.h"
#include "fb_hmac_sha256.h"
#include "messages.h"
#include "runner.h"

#define GW_FRAME 600u
#define DEV_SLOT 700u

typedef struct rec_frame {
  uint8_t type;
  uint16_t seq;
  uint16_t len;
  uint8_t payload[GW_FRAME];
} rec_frame;

/* The gateway side: a link in the gateway role recording every frame it gets. */
typedef struct gateway {
  fb_link link;
  uint8_t rx[GW_FRAME];
  uint8_t tx[4 * GW_FRAME];
  uint8_t out[16384];
  size_t out_len;
  rec_frame got[64];
  unsigned n_got;
} gateway;

/* The MCU application: its device and what its callbacks saw. */
typedef struct app {
  fb_device dev;
  uint8_t rx[1024];
  uint8_t tx[4 * DEV_SLOT];
  uint8_t tm[4 * DEV_SLOT];
  uint8_t out[16384];
  size_t out_len;
  int ups;
  int downs;
  unsigned acks;
  uint32_t ack_id[32];
  uint16_t ack_status[32];
  int status_state;
  int c2d_count;
  uint32_t c2d_tag;
  char c2d_body[64];
  int settle_in_callback;
  int desired_count;
  uint32_t desired_version;
  int method_count;
  int twin_count;
  uint16_t twin_status;
  int twin_result_count;
  uint32_t twin_version;
  uint64_t time_ms;
  int error_count;
  uint16_t error_code;
  int signs;
} app;

static gateway G;
static app M;
static uint32_t NOW;

static void gw_write(void *ctx, const uint8_t *b, size_t n) {
  gateway *g = (gateway *)ctx;
  if (g->out_len + n <= sizeof g->out) {
    memcpy(g->out + g->out_len, b, n);
    g->out_len += n;
  }
}

static void gw_frame(void *ctx, uint8_t type, uint16_t seq, const uint8_t *p, uint16_t len) {
  gateway *g = (gateway *)ctx;
  if (g->n_got < 64) {
    rec_frame *f = &g->got[g->n_got++];
    f->type = type;
    f->seq = seq;
    f->len = len;
    memcpy(f->payload, p, len);
  }
}

static void app_write(void *ctx, const uint8_t *b, size_t n) {
  app *a = (app *)ctx;
  if (a->out_len + n <= sizeof a->out) {
    memcpy(a->out + a->out_len, b, n);
    a->out_len += n;
  }
}

static void app_link(void *ctx, int up, unsigned reason) {
  app *a = (app *)ctx;
  (void)reason;
  if (up) {
    a->ups++;
  } else {
    a->downs++;
  }
}

static void app_status(void *ctx, const fb_status *m) { ((app *)ctx)->status_state = m->state; }

static void app_c2d(void *ctx, const fb_c2d *m) {
  app *a = (app *)ctx;
  a->c2d_count++;
  a->c2d_tag = m->tag;
  memcpy(a->c2d_body, m->body.data, m->body.len < 63 ? m->body.len : 63);
  if (a->settle_in_callback) {
    (void)fb_settle_c2d(&a->dev, m->tag, FB_C2D_COMPLETE);
  }
}

static void app_desired(void *ctx, const fb_twin_desired *m) {
  app *a = (app *)ctx;
  a->desired_count++;
  a->desired_version = m->version;
}

static void app_method(void *ctx, const fb_method_request *m) {
  app *a = (app *)ctx;
  a->method_count++;
  (void)fb_method_respond(&a->dev, m->rid, 200, (const uint8_t *)"{\"ok\":true}", 11);
}

static void app_twin(void *ctx, const fb_twin *m) {
  app *a = (app *)ctx;
  a->twin_count++;
  a->twin_status = m->status;
}

static void app_twin_result(void *ctx, const fb_twin_result *m) {
  app *a = (app *)ctx;
  a->twin_result_count++;
  a->twin_version = m->version;
}

static void app_time(void *ctx, uint64_t unix_ms) { ((app *)ctx)->time_ms = unix_ms; }

static void app_ack(void *ctx, uint32_t id, uint16_t status) {
  app *a = (app *)ctx;
  if (a->acks < 32) {
    a->ack_id[a->acks] = id;
    a->ack_status[a->acks] = status;
    a->acks++;
  }
}

static void app_error(void *ctx, const fb_error *m) {
  app *a = (app *)ctx;
  a->error_count++;
  a->error_code = m->code;
}

static int app_sign(void *ctx, const fb_bytes *s, uint8_t mac[32]) {
  uint8_t key[32];
  unsigned i;
  ((app *)ctx)->signs++;
  for (i = 0; i < 32; i++) {
    key[i] = (uint8_t)i; /* the fixtures' key, FX_SIGN_KEY_B64 */
  }
  fb_hmac_sha256(key, sizeof key, s->data, s->len, mac);
  return 0;
}

static void gateway_init(void) {
  fb_link_config cfg;
  fb_link_callbacks cb;
  memset(&G, 0, sizeof G);
  memset(&cfg, 0, sizeof cfg);
  cfg.role = FB_ROLE_GATEWAY;
  cfg.capabilities = 0x0F;
  cfg.boot_id = 77;
  cb.write = gw_write;
  cb.on_frame = gw_frame;
  cb.on_link = 0;
  (void)fb_link_init(&G.link, &cfg, &cb, &G, G.rx, sizeof G.rx, G.tx, GW_FRAME, 4);
}

static void app_init(int with_handlers, uint8_t slots) {
  fb_device_config cfg;
  fb_device_callbacks cb;
  fb_device_buffers b;
  memset(&M, 0, sizeof M);
  memset(&cfg, 0, sizeof cfg);
  memset(&cb, 0, sizeof cb);
  cfg.device_id = "mcu-001";
  cfg.auth = with_handlers ? 1 : 0;
  cfg.link.role = FB_ROLE_MCU;
  cfg.link.capabilities = 0x0F;
  cfg.link.boot_id = 1234;
  cb.write = app_write;
  cb.on_link = app_link;
  cb.on_telemetry_ack = app_ack;
  cb.on_status = app_status;
  cb.on_desired = app_desired;
  cb.on_twin = app_twin;
  cb.on_twin_result = app_twin_result;
  cb.on_time = app_time;
  cb.on_error = app_error;
  if (with_handlers) {
    cb.on_c2d = app_c2d;
    cb.on_method = app_method;
    cb.on_sign = app_sign;
  }
  b.rx = M.rx;
  b.rx_size = sizeof M.rx;
  b.tx = M.tx;
  b.tx_slot_size = DEV_SLOT;
  b.tx_slots = 4;
  b.telemetry = M.tm;
  b.telemetry_slot_size = DEV_SLOT;
  b.telemetry_slots = slots;
  (void)fb_device_init(&M.dev, &cfg, &cb, &M, &b);
}

/* Move bytes both ways and run timers for ms milliseconds (lossless wire). */
static void run(uint32_t ms) {
  uint32_t stop = NOW + ms;
  while ((int32_t)(stop - NOW) > 0) {
    uint8_t buf[16384];
    size_t n;
    NOW += 5;
    n = M.out_len;
    memcpy(buf, M.out, n);
    M.out_len = 0;
    fb_link_input(&G.link, buf, n, NOW);
    n = G.out_len;
    memcpy(buf, G.out, n);
    G.out_len = 0;
    fb_device_input(&M.dev, buf, n, NOW);
    fb_link_poll(&G.link, NOW);
    fb_device_poll(&M.dev, NOW);
  }
}

static void start_both(void) {
  NOW = 1000;
  fb_link_start(&G.link, NOW);
  fb_device_start(&M.dev, NOW);
  run(200);
}

static const fx_message *fixture(const char *name) {
  size_t i;
  for (i = 0; i < FX_MESSAGE_COUNT; i++) {
    if (strcmp(fx_messages[i].name, name) == 0) {
      return &fx_messages[i];
    }
  }
  return 0;
}

/* The gateway sends a fixture's payload with the fixture's type. */
static int gw_send_fixture(const char *name) {
  const fx_message *m = fixture(name);
  return m ? fb_link_send(&G.link, (uint8_t)m->type, (const uint8_t *)m->payload, m->payload_len) : FB_ERR_ARG;
}

static void gw_ack_telemetry(uint32_t id, uint16_t status) {
  uint8_t p[6];
  fb_telemetry_ack m;
  m.id = id;
  m.status = status;
  (void)fb_msg_build_telemetry_ack(p, sizeof p, &m);
  (void)fb_link_send(&G.link, FB_T_TELEMETRY_ACK, p, sizeof p);
}

static const rec_frame *got_type(uint8_t type, unsigned nth) {
  unsigned i;
  for (i = 0; i < G.n_got; i++) {
    if (G.got[i].type == type && nth-- == 0) {
      return &G.got[i];
    }
  }
  return 0;
}

static uint32_t telemetry_id(const rec_frame *f) { return fb_get_u32(f->payload); }

static void identity_goes_first_then_telemetry_queued_while_down_in_order(void) {
  static const fb_prop props[] = {FB_PROP("$.ct", "application/json"), FB_PROP("temp", "21.5")};
  uint32_t id = 0;
  fb_identity ident;
  fb_telemetry t;
  int k;
  gateway_init();
  app_init(0, 4);
  for (k = 0; k < 3; k++) {
    CHECK(fb_send_telemetry(&M.dev, props, 2, (const uint8_t *)"{\"t\":21.5}", 10, &id) == FB_OK);
    CHECK(id == (uint32_t)k + 1u);
  }
  CHECK(fb_device_unconfirmed(&M.dev) == 3);
  CHECK(fb_twin_get(&M.dev, 0) == FB_ERR_LINK_DOWN);
  start_both();
  CHECK(M.ups == 1 && G.n_got == 4 && G.got[0].type == FB_T_IDENTITY);
  CHECK(fb_msg_parse_identity(G.got[0].payload, G.got[0].len, &ident) == FB_OK);
  CHECK(ident.device_id.len == 7 && memcmp(ident.device_id.data, "mcu-001", 7) == 0 && ident.module_id.len == 0 &&
        ident.auth == 0);
  for (k = 0; k < 3; k++) {
    const rec_frame *f = &G.got[1 + k];
    fb_bytes v;
    CHECK(f->type == FB_T_TELEMETRY && fb_msg_parse_telemetry(f->payload, f->len, &t) == FB_OK);
    CHECK(t.id == (uint32_t)k + 1u && t.properties.count == 2 && t.body.len == 10);
    CHECK(fb_props_get(&t.properties, "$.ct", &v) && v.len == 16);
  }
  gw_ack_telemetry(2, 200);
  run(100);
  CHECK(M.acks == 1 && M.ack_id[0] == 2 && M.ack_status[0] == 200 && fb_device_unconfirmed(&M.dev) == 2);
}

static void unconfirmed_telemetry_is_re_sent_after_every_link_up(void) {
  static const fb_prop props[] = {FB_PROP("temp", "21.5")};
  int k;
  /* Three messages sent on the first link, id 2 confirmed: ids 1 and 3 unconfirmed. The gateway restarts (RESET). */
  gateway_init();
  app_init(0, 4);
  for (k = 0; k < 3; k++) {
    CHECK(fb_send_telemetry(&M.dev, props, 1, (const uint8_t *)"{}", 2, 0) == FB_OK);
  }
  start_both();
  CHECK(M.ups == 1 && G.n_got == 4);
  gw_ack_telemetry(2, 200);
  run(100);
  CHECK(M.acks == 1 && fb_device_unconfirmed(&M.dev) == 2);
  G.n_got = 0;
  gateway_init();
  fb_link_start(&G.link, NOW);
  run(500);
  CHECK(M.downs == 1 && M.ups == 2);
  CHECK(G.n_got == 3 && G.got[0].type == FB_T_IDENTITY);
  CHECK(telemetry_id(&G.got[1]) == 1 && telemetry_id(&G.got[2]) == 3);
  gw_ack_telemetry(1, 200);
  gw_ack_telemetry(3, 503);
  gw_ack_telemetry(1, 200); /* an answer to a re-send already confirmed: ignored */
  run(100);
  CHECK(M.acks == 3 && M.ack_id[1] == 1 && M.ack_id[2] == 3 && M.ack_status[2] == 503);
  CHECK(fb_device_unconfirmed(&M.dev) == 0);
}

static void a_full_telemetry_ring_refuses_with_busy(void) {
  uint8_t body[DEV_SLOT];
  uint32_t id = 0;
  gateway_init();
  app_init(0, 2);
  memset(body, 'x', sizeof body);
  CHECK(fb_send_telemetry(&M.dev, 0, 0, body, 10, &id) == FB_OK);
  CHECK(fb_send_telemetry(&M.dev, 0, 0, body, 10, &id) == FB_OK);
  CHECK(fb_send_telemetry(&M.dev, 0, 0, body, 10, &id) == FB_ERR_BUSY);
  CHECK(fb_send_telemetry(&M.dev, 0, 0, body, DEV_SLOT, &id) == FB_ERR_BUSY);
  start_both();
  gw_ack_telemetry(1, 200);
  run(50);
  CHECK(fb_send_telemetry(&M.dev, 0, 0, body, DEV_SLOT, &id) == FB_ERR_TOO_LARGE);
  /* Fits the slot but not the gateway's maxFrame (600): answered 413 locally, the slot is freed. */
  CHECK(fb_send_telemetry(&M.dev, 0, 0, body, 650, &id) == FB_OK);
  run(50);
  CHECK(M.acks == 2 && M.ack_id[1] == id && M.ack_status[1] == 413 && fb_device_unconfirmed(&M.dev) == 1);
}

static void gateway_messages_reach_their_callbacks_and_answers_go_back(void) {
  fb_c2d_settle settle;
  fb_method_response resp;
  const rec_frame *f;
  uint16_t rid = 0;
  gateway_init();
  app_init(1, 4);
  M.settle_in_callback = 1;
  start_both();
  G.n_got = 0;
  CHECK(gw_send_fixture("status-online") == FB_OK);
  CHECK(gw_send_fixture("c2d") == FB_OK);
  CHECK(gw_send_fixture("twin-desired") == FB_OK);
  CHECK(gw_send_fixture("method-request") == FB_OK);
  run(100);
  CHECK(gw_send_fixture("time") == FB_OK);
  CHECK(gw_send_fixture("twin") == FB_OK);
  CHECK(gw_send_fixture("twin-result") == FB_OK);
  CHECK(gw_send_fixture("error-malformed") == FB_OK);
  run(100);
  CHECK(M.status_state == FB_STATE_ONLINE && M.c2d_count == 1 && M.c2d_tag == 42);
  CHECK(strcmp(M.c2d_body, "open valve 3 \342\200\223 now") == 0);
  CHECK(M.desired_count == 1 && M.desired_version == 5 && M.method_count == 1);
  CHECK(M.time_ms == 1767225600123ull && M.twin_count == 1 && M.twin_status == 200);
  CHECK(M.twin_result_count == 1 && M.twin_version == 8 && M.error_count == 1 && M.error_code == FB_EC_MALFORMED);
  f = got_type(FB_T_C2D_SETTLE, 0);
  CHECK(f && fb_msg_parse_c2d_settle(f->payload, f->len, &settle) == FB_OK && settle.tag == 42 &&
        settle.outcome == FB_C2D_COMPLETE);
  f = got_type(FB_T_METHOD_RESPONSE, 0);
  CHECK(f && fb_msg_parse_method_response(f->payload, f->len, &resp) == FB_OK && resp.rid == 77 &&
        resp.status == 200 && resp.json.len == 11);
  CHECK(fb_twin_get(&M.dev, &rid) == FB_OK && rid == 1);
  CHECK(fb_twin_report(&M.dev, (const uint8_t *)"{\"fw\":\"1.2.1\"}", 14, &rid) == FB_OK && rid == 2);
  CHECK(fb_request_time(&M.dev) == FB_OK);
  CHECK(fb_settle_c2d(&M.dev, 43, FB_C2D_REJECT) == FB_OK);
  CHECK(fb_settle_c2d(&M.dev, 43, 3) == FB_ERR_ARG);
  run(100);
  CHECK(got_type(FB_T_TWIN_GET, 0) && got_type(FB_T_TWIN_REPORTED, 0) && got_type(FB_T_TIME_REQUEST, 0));
  CHECK(got_type(FB_T_C2D_SETTLE, 1) && got_type(FB_T_C2D_SETTLE, 1)->payload[4] == FB_C2D_REJECT);
}

static void sign_request_is_answered_with_the_hmac_of_the_string_to_sign(void) {
  const fx_message *want = fixture("sign-response");
  const rec_frame *f;
  gateway_init();
  app_init(1, 4);
  start_both();
  CHECK(gw_send_fixture("sign-request") == FB_OK);
  run(100);
  f = got_type(FB_T_SIGN_RESPONSE, 0);
  CHECK(M.signs == 1 && f && want);
  CHECK(f->len == want->payload_len && memcmp(f->payload, want->payload, f->len) == 0); /* byte for byte */
  /* Without a key (no on_sign): status 1, empty signature. */
  gateway_init();
  app_init(0, 4);
  start_both();
  CHECK(gw_send_fixture("sign-request") == FB_OK);
  run(100);
  f = got_type(FB_T_SIGN_RESPONSE, 0);
  CHECK(f && f->len == 3 && f->payload[2] == 1);
}

static void unknown_and_malformed_frames_are_answered_with_error_and_the_link_stays_up(void) {
  static const char *malformed[] = {"malformed-telemetry-ack-trailing", "malformed-c2d-settle-short",
                                    "malformed-twin-get-empty", "twin-get"};
  const rec_frame *f;
  fb_error e;
  unsigned i;
  uint16_t seq;
  gateway_init();
  app_init(0, 4);
  start_both();
  G.n_got = 0;
  seq = G.link.tx_next_seq;
  CHECK(gw_send_fixture("unknown-type") == FB_OK);
  run(50);
  f = got_type(FB_T_ERROR, 0);
  CHECK(f && fb_msg_parse_error(f->payload, f->len, &e) == FB_OK && e.code == FB_EC_UNKNOWN_TYPE && e.ref_seq == seq);
  /* A malformed payload of a type the MCU receives gets ERROR Malformed; types only the MCU sends (C2D_SETTLE,
   * TWIN_GET), malformed or not, are unknown here. Each ERROR names its frame. */
  for (i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    uint16_t code = i == 0 ? FB_EC_MALFORMED : FB_EC_UNKNOWN_TYPE;
    seq = G.link.tx_next_seq;
    CHECK(gw_send_fixture(malformed[i]) == FB_OK);
    run(50);
    f = got_type(FB_T_ERROR, i + 1);
    CHECK_MSG(f && fb_msg_parse_error(f->payload, f->len, &e) == FB_OK && e.code == code && e.ref_seq == seq, "%s",
              malformed[i]);
  }
  /* A malformed C2D is refused with ERROR; a good one without a handler is rejected; a method answered 404. */
  CHECK(fb_link_send(&G.link, FB_T_C2D, (const uint8_t *)"\1\0\0\0\2", 5) == FB_OK);
  CHECK(gw_send_fixture("c2d") == FB_OK);
  CHECK(gw_send_fixture("method-request") == FB_OK);
  run(100);
  f = got_type(FB_T_C2D_SETTLE, 0);
  CHECK(f && f->payload[4] == FB_C2D_REJECT && got_type(FB_T_ERROR, 5));
  f = got_type(FB_T_METHOD_RESPONSE, 0);
  CHECK(f && fb_get_u16(f->payload + 2) == 404);
  CHECK(fb_link_is_up(&M.dev.link) && M.downs == 0 && M.ups == 1);
}

static void init_refuses_a_bad_configuration(void) {
  fb_device d;
  fb_device_config cfg;
  fb_device_callbacks cb;
  fb_device_buffers b;
  uint8_t rx[64];
  uint8_t tx[64];
  uint8_t tm[64];
  memset(&cfg, 0, sizeof cfg);
  memset(&cb, 0, sizeof cb);
  cfg.device_id = "x";
  cb.write = app_write;
  b.rx = rx;
  b.rx_size = sizeof rx;
  b.tx = tx;
  b.tx_slot_size = sizeof tx;
  b.tx_slots = 1;
  b.telemetry = tm;
  b.telemetry_slot_size = sizeof tm;
  b.telemetry_slots = 1;
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_OK);
  b.telemetry_slots = FB_TELEMETRY_SLOTS_MAX + 1u;
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_ERR_ARG);
  b.telemetry_slots = 1;
  cfg.link.role = FB_ROLE_GATEWAY;
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_ERR_ARG);
  cfg.link.role = FB_ROLE_MCU;
  /* A tx slot too small for the device's own IDENTITY would leave every send BUSY forever after link-up; one too
   * small for a SIGN_RESPONSE would drop every signature: both are refused up front. */
  cfg.device_id = "mcu-0001";
  cfg.module_id = "m";
  b.tx_slot_size = FB_FRAME_OVERHEAD + 2u + 8u + 2u + 1u + 1u; /* exactly IDENTITY */
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_OK);
  b.tx_slot_size--;
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_ERR_ARG);
  cfg.auth = 1;
  b.tx_slot_size = FB_FRAME_OVERHEAD + 2u + 1u + 32u; /* exactly SIGN_RESPONSE */
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_OK);
  b.tx_slot_size--;
  CHECK(fb_device_init(&d, &cfg, &cb, 0, &b) == FB_ERR_ARG);
}

const fb_test device_tests[] = {
    {"device: IDENTITY goes first, then telemetry queued while down, in order",
     identity_goes_first_then_telemetry_queued_while_down_in_order},
    {"device: unconfirmed telemetry is re-sent after every link-up",
     unconfirmed_telemetry_is_re_sent_after_every_link_up},
    {"device: a full telemetry ring refuses with BUSY; oversize is TOO_LARGE or 413",
     a_full_telemetry_ring_refuses_with_busy},
    {"device: gateway messages reach their callbacks and answers go back",
     gateway_messages_reach_their_callbacks_and_answers_go_back},
    {"device: SIGN_REQUEST is answered with the HMAC of the string to sign",
     sign_request_is_answered_with_the_hmac_of_the_string_to_sign},
    {"device: unknown and malformed frames are answered with ERROR and the link stays up",
     unknown_and_malformed_frames_are_answered_with_error_and_the_link_stays_up},
    {"device: init refuses a bad configuration (tx slots too small for IDENTITY or SIGN_RESPONSE included)",
     init_refuses_a_bad_configuration},
    {0, 0},
};
