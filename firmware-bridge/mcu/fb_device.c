#include "fb_device.h"

#define FB_SIGNATURE_SIZE 32u /* HMAC-SHA256 */

#define SLOT_FREE 0u
#define SLOT_PENDING 1u /* not yet sent in this link session */
#define SLOT_SENT 2u    /* sent in this session, waiting for TELEMETRY_ACK */

static size_t cstr_len(const char *s) {
  size_t n = 0;
  if (!s) {
    return 0;
  }
  while (s[n] != '\0') {
    n++;
  }
  return n;
}

static int send_built(fb_device *d, uint8_t type, int len, uint8_t *buf) {
  if (len < 0) {
    return len;
  }
  return fb_link_send(&d->link, type, buf, (size_t)len);
}

/* The buffer to build the next frame's payload in, or the reason there is none. */
static uint8_t *payload_buffer(fb_device *d, size_t *cap, int *err) {
  uint8_t *p;
  if (!fb_link_is_up(&d->link)) {
    *err = FB_ERR_LINK_DOWN;
    return 0;
  }
  if (d->identity_pending) {
    *err = FB_ERR_BUSY;
    return 0;
  }
  p = fb_link_payload_buffer(&d->link, cap);
  *err = p ? FB_OK : FB_ERR_BUSY;
  return p;
}

static void send_error(fb_device *d, uint16_t ref_seq, uint16_t code) {
  size_t cap;
  uint8_t *p = fb_link_payload_buffer(&d->link, &cap);
  fb_error e;
  if (!p) {
    return; /* best effort: an ERROR only informs; the window is full of more useful frames */
  }
  e.ref_seq = ref_seq;
  e.code = code;
  e.detail.data = 0;
  e.detail.len = 0;
  (void)send_built(d, FB_T_ERROR, fb_msg_build_error(p, cap, &e), p);
}

int fb_send_identity(fb_device *d) {
  size_t cap;
  uint8_t *p = fb_link_payload_buffer(&d->link, &cap);
  fb_identity m;
  if (!p) {
    return fb_link_is_up(&d->link) ? FB_ERR_BUSY : FB_ERR_LINK_DOWN;
  }
  m.device_id.data = (const uint8_t *)d->device_id;
  m.device_id.len = cstr_len(d->device_id);
  m.module_id.data = (const uint8_t *)d->module_id;
  m.module_id.len = cstr_len(d->module_id);
  m.auth = d->auth;
  return send_built(d, FB_T_IDENTITY, fb_msg_build_identity(p, cap, &m), p);
}

/* Send what waits, in order: IDENTITY, a SIGN_RESPONSE, then unconfirmed telemetry oldest first. */
static void flush(fb_device *d) {
  if (!fb_link_is_up(&d->link)) {
    return;
  }
  if (d->identity_pending) {
    if (fb_send_identity(d) != FB_OK) {
      return;
    }
    d->identity_pending = 0;
  }
  if (d->sign_pending) {
    size_t cap;
    uint8_t *p = fb_link_payload_buffer(&d->link, &cap);
    fb_sign_response m;
    if (!p) {
      return;
    }
    m.rid = d->sign_rid;
    m.status = d->sign_status;
    m.signature.data = d->sign_mac;
    m.signature.len = d->sign_status == 0 ? sizeof d->sign_mac : 0;
    (void)send_built(d, FB_T_SIGN_RESPONSE, fb_msg_build_sign_response(p, cap, &m), p);
    d->sign_pending = 0;
  }
  while (fb_link_can_send(&d->link)) {
    uint8_t i;
    uint8_t best = 0xFFu;
    int r;
    for (i = 0; i < d->tm_slots; i++) {
      if (d->tm_state[i] == SLOT_PENDING && (best == 0xFFu || (int32_t)(d->tm_order[i] - d->tm_order[best]) < 0)) {
        best = i;
      }
    }
    if (best == 0xFFu) {
      return;
    }
    r = fb_link_send(&d->link, FB_T_TELEMETRY, d->tm + (size_t)best * d->tm_slot_size, d->tm_len[best]);
    if (r == FB_OK) {
      d->tm_state[best] = SLOT_SENT;
    } else if (r == FB_ERR_TOO_LARGE) {
      /* Larger than the gateway accepts: it can never go; give the slot back and say so. */
      uint32_t id = d->tm_id[best];
      d->tm_state[best] = SLOT_FREE;
      if (d->cb.on_telemetry_ack) {
        d->cb.on_telemetry_ack(d->ctx, id, 413);
      }
    } else {
      return;
    }
  }
}

static void on_link(void *ctx, int up, unsigned reason) {
  fb_device *d = (fb_device *)ctx;
  if (up) {
    uint8_t i;
    for (i = 0; i < d->tm_slots; i++) {
      if (d->tm_state[i] == SLOT_SENT) {
        d->tm_state[i] = SLOT_PENDING; /* at-least-once: re-sent in this new session (PROTOCOL.md 5.3) */
      }
    }
    d->identity_pending = 1;
    d->sign_pending = 0; /* the gateway's request died with the old session */
    flush(d);
  }
  if (d->cb.on_link) {
    d->cb.on_link(d->ctx, up, reason);
  }
}

static void on_telemetry_ack(fb_device *d, const fb_telemetry_ack *m) {
  uint8_t i;
  for (i = 0; i < d->tm_slots; i++) {
    if (d->tm_state[i] != SLOT_FREE && d->tm_id[i] == m->id) {
      d->tm_state[i] = SLOT_FREE;
      if (d->cb.on_telemetry_ack) {
        d->cb.on_telemetry_ack(d->ctx, m->id, m->status);
      }
      return;
    }
  }
  /* An answer to a re-send already confirmed: nothing to do. */
}

static void on_sign_request(fb_device *d, const fb_sign_request *m) {
  int status = 1;
  if (d->cb.on_sign) {
    status = d->cb.on_sign(d->ctx, &m->string_to_sign, d->sign_mac);
  }
  d->sign_rid = m->rid;
  d->sign_status = (uint8_t)(status == 0 ? 0 : (status > 0 && status < 256 ? status : 1));
  d->sign_pending = 1;
  flush(d);
}

static void device_write(void *ctx, const uint8_t *bytes, size_t n) {
  fb_device *d = (fb_device *)ctx;
  d->cb.write(d->ctx, bytes, n);
}

static void on_frame(void *ctx, uint8_t type, uint16_t seq, const uint8_t *p, uint16_t n) {
  fb_device *d = (fb_device *)ctx;
  int r = FB_OK;
  switch (type) {
  case FB_T_STATUS: {
    fb_status m;
    r = fb_msg_parse_status(p, n, &m);
    if (r == FB_OK && d->cb.on_status) {
      d->cb.on_status(d->ctx, &m);
    }
    break;
  }
  case FB_T_TELEMETRY_ACK: {
    fb_telemetry_ack m;
    r = fb_msg_parse_telemetry_ack(p, n, &m);
    if (r == FB_OK) {
      on_telemetry_ack(d, &m);
    }
    break;
  }
  case FB_T_C2D: {
    fb_c2d m;
    r = fb_msg_parse_c2d(p, n, &m);
    if (r == FB_OK) {
      if (d->cb.on_c2d) {
        d->cb.on_c2d(d->ctx, &m);
      } else {
        (void)fb_settle_c2d(d, m.tag, FB_C2D_REJECT);
      }
    }
    break;
  }
  case FB_T_TWIN: {
    fb_twin m;
    r = fb_msg_parse_twin(p, n, &m);
    if (r == FB_OK && d->cb.on_twin) {
      d->cb.on_twin(d->ctx, &m);
    }
    break;
  }
  case FB_T_TWIN_RESULT: {
    fb_twin_result m;
    r = fb_msg_parse_twin_result(p, n, &m);
    if (r == FB_OK && d->cb.on_twin_result) {
      d->cb.on_twin_result(d->ctx, &m);
    }
    break;
  }
  case FB_T_TWIN_DESIRED: {
    fb_twin_desired m;
    r = fb_msg_parse_twin_desired(p, n, &m);
    if (r == FB_OK && d->cb.on_desired) {
      d->cb.on_desired(d->ctx, &m);
    }
    break;
  }
  case FB_T_METHOD_REQUEST: {
    fb_method_request m;
    r = fb_msg_parse_method_request(p, n, &m);
    if (r == FB_OK) {
      if (d->cb.on_method) {
        d->cb.on_method(d->ctx, &m);
      } else {
        (void)fb_method_respond(d, m.rid, 404, 0, 0);
      }
    }
    break;
  }
  case FB_T_TIME: {
    fb_time m;
    r = fb_msg_parse_time(p, n, &m);
    if (r == FB_OK && d->cb.on_time) {
      d->cb.on_time(d->ctx, m.unix_ms);
    }
    break;
  }
  case FB_T_SIGN_REQUEST: {
    fb_sign_request m;
    r = fb_msg_parse_sign_request(p, n, &m);
    if (r == FB_OK) {
      on_sign_request(d, &m);
    }
    break;
  }
  case FB_T_ERROR: {
    fb_error m;
    r = fb_msg_parse_error(p, n, &m);
    if (r == FB_OK && d->cb.on_error) {
      d->cb.on_error(d->ctx, &m);
    }
    break;
  }
  default:
    /* Unknown here, including the types only the MCU sends (PROTOCOL.md 3: acknowledged, answered ERROR). */
    send_error(d, seq, FB_EC_UNKNOWN_TYPE);
    return;
  }
  if (r != FB_OK) {
    send_error(d, seq, FB_EC_MALFORMED);
  }
}

int fb_device_init(fb_device *d, const fb_device_config *cfg, const fb_device_callbacks *cb, void *ctx,
                   const fb_device_buffers *b) {
  fb_link_callbacks lcb;
  uint8_t i;
  if (!d || !cfg || !cb || !cb->write || !b || !cfg->device_id || cfg->link.role != FB_ROLE_MCU ||
      !b->telemetry || b->telemetry_slots < 1u || b->telemetry_slots > FB_TELEMETRY_SLOTS_MAX ||
      b->telemetry_slot_size < 8u || b->telemetry_slot_size > 65535u) {
    return FB_ERR_ARG;
  }
  /* The frames the device sends on its own must fit a tx slot: an IDENTITY that does not would hold every other
   * frame back forever (IDENTITY goes first), a SIGN_RESPONSE that does not would drop every signature. */
  if (b->tx_slot_size < FB_FRAME_OVERHEAD + 5u + cstr_len(cfg->device_id) + cstr_len(cfg->module_id) ||
      (cfg->auth == 1u && b->tx_slot_size < FB_FRAME_OVERHEAD + 3u + FB_SIGNATURE_SIZE)) {
    return FB_ERR_ARG;
  }
  /* The link calls back into the device (its context is d); the device forwards to the application. */
  lcb.write = device_write;
  lcb.on_frame = on_frame;
  lcb.on_link = on_link;
  if (fb_link_init(&d->link, &cfg->link, &lcb, d, b->rx, b->rx_size, b->tx, b->tx_slot_size, b->tx_slots) !=
      FB_OK) {
    return FB_ERR_ARG;
  }
  d->cb = *cb;
  d->ctx = ctx;
  d->device_id = cfg->device_id;
  d->module_id = cfg->module_id;
  d->auth = cfg->auth;
  d->identity_pending = 0;
  d->sign_pending = 0;
  d->sign_status = 0;
  d->sign_rid = 0;
  d->next_rid = 1;
  d->tm = b->telemetry;
  d->tm_slot_size = b->telemetry_slot_size;
  d->tm_slots = b->telemetry_slots;
  for (i = 0; i < FB_TELEMETRY_SLOTS_MAX; i++) {
    d->tm_state[i] = SLOT_FREE;
    d->tm_len[i] = 0;
    d->tm_id[i] = 0;
    d->tm_order[i] = 0;
  }
  d->next_telemetry_id = 1;
  d->next_order = 0;
  return FB_OK;
}

void fb_device_start(fb_device *d, uint32_t now_ms) { fb_link_start(&d->link, now_ms); }

void fb_device_input(fb_device *d, const uint8_t *bytes, size_t n, uint32_t now_ms) {
  fb_link_input(&d->link, bytes, n, now_ms);
  flush(d); /* ACKs may have opened the window */
}

void fb_device_poll(fb_device *d, uint32_t now_ms) {
  fb_link_poll(&d->link, now_ms);
  flush(d);
}

static int telemetry_id_in_use(const fb_device *d, uint32_t id) {
  uint8_t i;
  for (i = 0; i < d->tm_slots; i++) {
    if (d->tm_state[i] != SLOT_FREE && d->tm_id[i] == id) {
      return 1;
    }
  }
  return 0;
}

int fb_send_telemetry(fb_device *d, const fb_prop *props, uint8_t count, const uint8_t *body, size_t body_len,
                      uint32_t *id) {
  uint8_t i;
  uint8_t slot = 0xFFu;
  uint32_t tid;
  int len;
  for (i = 0; i < d->tm_slots; i++) {
    if (d->tm_state[i] == SLOT_FREE) {
      slot = i;
      break;
    }
  }
  if (slot == 0xFFu) {
    return FB_ERR_BUSY;
  }
  /* Unique among the unconfirmed (PROTOCOL.md 5.3), also after the 32-bit counter wraps. */
  while (d->next_telemetry_id == 0 || telemetry_id_in_use(d, d->next_telemetry_id)) {
    d->next_telemetry_id++;
  }
  tid = d->next_telemetry_id++;
  len = fb_msg_build_telemetry(d->tm + (size_t)slot * d->tm_slot_size, d->tm_slot_size, tid, props, count, body,
                               body_len);
  if (len < 0) {
    return len;
  }
  d->tm_state[slot] = SLOT_PENDING;
  d->tm_len[slot] = (uint16_t)len;
  d->tm_id[slot] = tid;
  d->tm_order[slot] = d->next_order++;
  if (id) {
    *id = tid;
  }
  flush(d);
  return FB_OK;
}

unsigned fb_device_unconfirmed(const fb_device *d) {
  unsigned n = 0;
  uint8_t i;
  for (i = 0; i < d->tm_slots; i++) {
    n += d->tm_state[i] != SLOT_FREE ? 1u : 0u;
  }
  return n;
}

int fb_settle_c2d(fb_device *d, uint32_t tag, uint8_t outcome) {
  size_t cap;
  int err;
  uint8_t *p;
  fb_c2d_settle m;
  if (outcome > FB_C2D_ABANDON) {
    return FB_ERR_ARG;
  }
  p = payload_buffer(d, &cap, &err);
  if (!p) {
    return err;
  }
  m.tag = tag;
  m.outcome = outcome;
  return send_built(d, FB_T_C2D_SETTLE, fb_msg_build_c2d_settle(p, cap, &m), p);
}

static uint16_t take_rid(fb_device *d) {
  uint16_t rid = d->next_rid++;
  if (d->next_rid == 0) {
    d->next_rid = 1;
  }
  return rid;
}

int fb_twin_get(fb_device *d, uint16_t *rid) {
  size_t cap;
  int err;
  uint8_t *p = payload_buffer(d, &cap, &err);
  fb_twin_request m;
  if (!p) {
    return err;
  }
  m.rid = take_rid(d);
  err = send_built(d, FB_T_TWIN_GET, fb_msg_build_twin_get(p, cap, &m), p);
  if (err == FB_OK && rid) {
    *rid = m.rid;
  }
  return err;
}

int fb_twin_report(fb_device *d, const uint8_t *json, size_t len, uint16_t *rid) {
  size_t cap;
  int err;
  uint8_t *p = payload_buffer(d, &cap, &err);
  fb_twin_reported m;
  if (!p) {
    return err;
  }
  m.rid = take_rid(d);
  m.json.data = json;
  m.json.len = len;
  err = send_built(d, FB_T_TWIN_REPORTED, fb_msg_build_twin_reported(p, cap, &m), p);
  if (err == FB_OK && rid) {
    *rid = m.rid;
  }
  return err;
}

int fb_method_respond(fb_device *d, uint16_t rid, uint16_t status, const uint8_t *json, size_t len) {
  size_t cap;
  int err;
  uint8_t *p = payload_buffer(d, &cap, &err);
  fb_method_response m;
  if (!p) {
    return err;
  }
  m.rid = rid;
  m.status = status;
  m.json.data = json;
  m.json.len = len;
  return send_built(d, FB_T_METHOD_RESPONSE, fb_msg_build_method_response(p, cap, &m), p);
}

int fb_request_time(fb_device *d) {
  size_t cap;
  int err;
  uint8_t *p = payload_buffer(d, &cap, &err);
  if (!p) {
    return err;
  }
  return fb_link_send(&d->link, FB_T_TIME_REQUEST, p, 0);
}
