#include "fb_msg.h"

/* INT_MAX without <limits.h>, which some freestanding setups lack: int and unsigned have the same width. */
#define INT_LIMIT ((size_t)(~0u >> 1))

/* A bounds-checked cursor: once an operation fails, err sticks and later ones do nothing, so a builder or parser
 * checks once at the end. */
typedef struct writer {
  uint8_t *out;
  size_t cap;
  size_t len;
  int err;
} writer;

typedef struct reader {
  const uint8_t *p;
  size_t n;
  size_t pos;
  int err;
} reader;

static void w_bytes(writer *w, const void *data, size_t n) {
  const uint8_t *s = (const uint8_t *)data;
  size_t i;
  if (w->err || n > w->cap - w->len) {
    w->err = 1;
    return;
  }
  for (i = 0; i < n; i++) {
    w->out[w->len + i] = s[i];
  }
  w->len += n;
}

static void w_uint(writer *w, uint64_t v, unsigned size) {
  unsigned i;
  uint8_t b[8];
  for (i = 0; i < size; i++) {
    b[i] = (uint8_t)(v >> (8u * i));
  }
  w_bytes(w, b, size);
}

static void w_str(writer *w, const void *data, size_t n) {
  if (n > 65535u) {
    w->err = 1;
    return;
  }
  w_uint(w, n, 2);
  w_bytes(w, data, n);
}

static void w_props(writer *w, const fb_prop *props, uint8_t count) {
  uint8_t i;
  w_uint(w, count, 1);
  for (i = 0; i < count; i++) {
    w_str(w, props[i].name, props[i].name_len);
    w_str(w, props[i].value, props[i].value_len);
  }
}

static int w_end(const writer *w) { return w->err ? FB_ERR_TOO_LARGE : (int)w->len; }

static writer w_init(uint8_t *out, size_t cap) {
  writer w;
  w.out = out;
  w.cap = cap > 65535u ? 65535u : cap; /* a payload is at most 65535 bytes */
  if (w.cap > INT_LIMIT) {
    w.cap = INT_LIMIT; /* builders return the length as an int, 16 bits on some MCUs (AVR, MSP430) */
  }
  w.len = 0;
  w.err = (cap > 0 && !out) ? 1 : 0;
  return w;
}

static reader r_init(const uint8_t *p, size_t n) {
  reader r;
  r.p = p;
  r.n = n;
  r.pos = 0;
  r.err = (n > 0 && !p) ? 1 : 0;
  return r;
}

static uint64_t r_uint(reader *r, unsigned size) {
  uint64_t v = 0;
  unsigned i;
  if (r->err || size > r->n - r->pos) {
    r->err = 1;
    return 0;
  }
  for (i = 0; i < size; i++) {
    v |= (uint64_t)r->p[r->pos + i] << (8u * i);
  }
  r->pos += size;
  return v;
}

static fb_bytes r_take(reader *r, size_t n) {
  fb_bytes b;
  b.data = 0;
  b.len = 0;
  if (r->err || n > r->n - r->pos) {
    r->err = 1;
    return b;
  }
  b.data = r->p + r->pos;
  b.len = n;
  r->pos += n;
  return b;
}

static fb_bytes r_str(reader *r) { return r_take(r, (size_t)r_uint(r, 2)); }

static fb_bytes r_tail(reader *r) { return r_take(r, r->err ? 0 : r->n - r->pos); }

static fb_props r_props(reader *r) {
  fb_props props;
  size_t start;
  uint8_t i;
  props.count = (uint8_t)r_uint(r, 1);
  start = r->pos;
  for (i = 0; i < props.count && !r->err; i++) {
    (void)r_str(r);
    (void)r_str(r);
  }
  props.data = r->err ? 0 : r->p + start;
  props.len = r->err ? 0 : r->pos - start;
  return props;
}

/* Malformed when anything ran past the end or bytes are left over (PROTOCOL.md 5.1). */
static int r_end(const reader *r) { return (r->err || r->pos != r->n) ? FB_ERR_MALFORMED : FB_OK; }

int fb_props_next(const fb_props *props, size_t *pos, fb_bytes *name, fb_bytes *value) {
  reader r = r_init(props->data, props->len);
  r.pos = *pos;
  if (*pos >= props->len) {
    return 0;
  }
  *name = r_str(&r);
  *value = r_str(&r);
  if (r.err) {
    return 0;
  }
  *pos = r.pos;
  return 1;
}

int fb_props_get(const fb_props *props, const char *name, fb_bytes *value) {
  size_t pos = 0;
  fb_bytes n;
  fb_bytes v;
  while (fb_props_next(props, &pos, &n, &v)) {
    size_t i = 0;
    while (i < n.len && name[i] != '\0' && (uint8_t)name[i] == n.data[i]) {
      i++;
    }
    if (i == n.len && name[i] == '\0') {
      *value = v;
      return 1;
    }
  }
  return 0;
}

int fb_msg_build_hello(uint8_t *out, size_t cap, const fb_hello *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->protocol, 1);
  w_uint(&w, m->capabilities, 1);
  w_uint(&w, m->max_frame, 2);
  w_uint(&w, m->window, 1);
  w_uint(&w, m->boot_id, 4);
  return w_end(&w);
}

int fb_msg_parse_hello(const uint8_t *p, size_t n, fb_hello *m) {
  reader r = r_init(p, n);
  m->protocol = (uint8_t)r_uint(&r, 1);
  m->capabilities = (uint8_t)r_uint(&r, 1);
  m->max_frame = (uint16_t)r_uint(&r, 2);
  m->window = (uint8_t)r_uint(&r, 1);
  m->boot_id = (uint32_t)r_uint(&r, 4);
  return r_end(&r);
}

int fb_msg_build_identity(uint8_t *out, size_t cap, const fb_identity *m) {
  writer w = w_init(out, cap);
  w_str(&w, m->device_id.data, m->device_id.len);
  w_str(&w, m->module_id.data, m->module_id.len);
  w_uint(&w, m->auth, 1);
  return w_end(&w);
}

int fb_msg_parse_identity(const uint8_t *p, size_t n, fb_identity *m) {
  reader r = r_init(p, n);
  m->device_id = r_str(&r);
  m->module_id = r_str(&r);
  m->auth = (uint8_t)r_uint(&r, 1);
  return r_end(&r);
}

int fb_msg_build_status(uint8_t *out, size_t cap, const fb_status *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->state, 1);
  w_uint(&w, m->status, 2);
  w_str(&w, m->detail.data, m->detail.len);
  return w_end(&w);
}

int fb_msg_parse_status(const uint8_t *p, size_t n, fb_status *m) {
  reader r = r_init(p, n);
  m->state = (uint8_t)r_uint(&r, 1);
  m->status = (uint16_t)r_uint(&r, 2);
  m->detail = r_str(&r);
  return r_end(&r);
}

int fb_msg_build_telemetry(uint8_t *out, size_t cap, uint32_t id, const fb_prop *props, uint8_t count,
                           const uint8_t *body, size_t body_len) {
  writer w = w_init(out, cap);
  w_uint(&w, id, 4);
  w_props(&w, props, count);
  w_bytes(&w, body, body_len);
  return w_end(&w);
}

int fb_msg_parse_telemetry(const uint8_t *p, size_t n, fb_telemetry *m) {
  reader r = r_init(p, n);
  m->id = (uint32_t)r_uint(&r, 4);
  m->properties = r_props(&r);
  m->body = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_telemetry_ack(uint8_t *out, size_t cap, const fb_telemetry_ack *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->id, 4);
  w_uint(&w, m->status, 2);
  return w_end(&w);
}

int fb_msg_parse_telemetry_ack(const uint8_t *p, size_t n, fb_telemetry_ack *m) {
  reader r = r_init(p, n);
  m->id = (uint32_t)r_uint(&r, 4);
  m->status = (uint16_t)r_uint(&r, 2);
  return r_end(&r);
}

int fb_msg_build_c2d(uint8_t *out, size_t cap, uint32_t tag, const fb_prop *props, uint8_t count,
                     const uint8_t *body, size_t body_len) {
  return fb_msg_build_telemetry(out, cap, tag, props, count, body, body_len); /* same layout */
}

int fb_msg_parse_c2d(const uint8_t *p, size_t n, fb_c2d *m) {
  reader r = r_init(p, n);
  m->tag = (uint32_t)r_uint(&r, 4);
  m->properties = r_props(&r);
  m->body = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_c2d_settle(uint8_t *out, size_t cap, const fb_c2d_settle *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->tag, 4);
  w_uint(&w, m->outcome, 1);
  return w_end(&w);
}

int fb_msg_parse_c2d_settle(const uint8_t *p, size_t n, fb_c2d_settle *m) {
  reader r = r_init(p, n);
  m->tag = (uint32_t)r_uint(&r, 4);
  m->outcome = (uint8_t)r_uint(&r, 1);
  return r_end(&r);
}

int fb_msg_build_twin_get(uint8_t *out, size_t cap, const fb_twin_request *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  return w_end(&w);
}

int fb_msg_parse_twin_get(const uint8_t *p, size_t n, fb_twin_request *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  return r_end(&r);
}

int fb_msg_build_twin(uint8_t *out, size_t cap, const fb_twin *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_uint(&w, m->status, 2);
  w_bytes(&w, m->json.data, m->json.len);
  return w_end(&w);
}

int fb_msg_parse_twin(const uint8_t *p, size_t n, fb_twin *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->status = (uint16_t)r_uint(&r, 2);
  m->json = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_twin_reported(uint8_t *out, size_t cap, const fb_twin_reported *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_bytes(&w, m->json.data, m->json.len);
  return w_end(&w);
}

int fb_msg_parse_twin_reported(const uint8_t *p, size_t n, fb_twin_reported *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->json = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_twin_result(uint8_t *out, size_t cap, const fb_twin_result *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_uint(&w, m->status, 2);
  w_uint(&w, m->version, 4);
  return w_end(&w);
}

int fb_msg_parse_twin_result(const uint8_t *p, size_t n, fb_twin_result *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->status = (uint16_t)r_uint(&r, 2);
  m->version = (uint32_t)r_uint(&r, 4);
  return r_end(&r);
}

int fb_msg_build_twin_desired(uint8_t *out, size_t cap, const fb_twin_desired *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->version, 4);
  w_bytes(&w, m->json.data, m->json.len);
  return w_end(&w);
}

int fb_msg_parse_twin_desired(const uint8_t *p, size_t n, fb_twin_desired *m) {
  reader r = r_init(p, n);
  m->version = (uint32_t)r_uint(&r, 4);
  m->json = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_method_request(uint8_t *out, size_t cap, const fb_method_request *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_str(&w, m->name.data, m->name.len);
  w_bytes(&w, m->json.data, m->json.len);
  return w_end(&w);
}

int fb_msg_parse_method_request(const uint8_t *p, size_t n, fb_method_request *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->name = r_str(&r);
  m->json = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_method_response(uint8_t *out, size_t cap, const fb_method_response *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_uint(&w, m->status, 2);
  w_bytes(&w, m->json.data, m->json.len);
  return w_end(&w);
}

int fb_msg_parse_method_response(const uint8_t *p, size_t n, fb_method_response *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->status = (uint16_t)r_uint(&r, 2);
  m->json = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_time(uint8_t *out, size_t cap, const fb_time *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->unix_ms, 8);
  return w_end(&w);
}

int fb_msg_parse_time(const uint8_t *p, size_t n, fb_time *m) {
  reader r = r_init(p, n);
  m->unix_ms = r_uint(&r, 8);
  return r_end(&r);
}

int fb_msg_build_sign_request(uint8_t *out, size_t cap, const fb_sign_request *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_bytes(&w, m->string_to_sign.data, m->string_to_sign.len);
  return w_end(&w);
}

int fb_msg_parse_sign_request(const uint8_t *p, size_t n, fb_sign_request *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->string_to_sign = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_sign_response(uint8_t *out, size_t cap, const fb_sign_response *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->rid, 2);
  w_uint(&w, m->status, 1);
  w_bytes(&w, m->signature.data, m->signature.len);
  return w_end(&w);
}

int fb_msg_parse_sign_response(const uint8_t *p, size_t n, fb_sign_response *m) {
  reader r = r_init(p, n);
  m->rid = (uint16_t)r_uint(&r, 2);
  m->status = (uint8_t)r_uint(&r, 1);
  m->signature = r_tail(&r);
  return r_end(&r);
}

int fb_msg_build_error(uint8_t *out, size_t cap, const fb_error *m) {
  writer w = w_init(out, cap);
  w_uint(&w, m->ref_seq, 2);
  w_uint(&w, m->code, 2);
  w_str(&w, m->detail.data, m->detail.len);
  return w_end(&w);
}

int fb_msg_parse_error(const uint8_t *p, size_t n, fb_error *m) {
  reader r = r_init(p, n);
  m->ref_seq = (uint16_t)r_uint(&r, 2);
  m->code = (uint16_t)r_uint(&r, 2);
  m->detail = r_str(&r);
  return r_end(&r);
}

int fb_msg_parse_empty(const uint8_t *p, size_t n) {
  (void)p;
  return n == 0 ? FB_OK : FB_ERR_MALFORMED;
}
