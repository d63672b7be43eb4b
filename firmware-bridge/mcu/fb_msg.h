/* Payload builders and parsers for the application messages (PROTOCOL.md 5, field encodings 5.1).
 *
 * Parsers do not copy: fb_bytes fields point into the payload they were given. Every parser checks every length
 * against the payload and returns FB_ERR_MALFORMED for a length prefix running past the end or bytes left over.
 * Builders return the payload length (>= 0) or FB_ERR_TOO_LARGE when it does not fit cap. */
#ifndef FB_MSG_H
#define FB_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "fb_common.h"

/* A byte string view (str, bytes or tail fields): not NUL-terminated. */
typedef struct fb_bytes {
  const uint8_t *data;
  size_t len;
} fb_bytes;

/* One property for the builders. Lengths explicit (UTF-8 text, no terminator needed); FB_PROP for literals. */
typedef struct fb_prop {
  const char *name;
  uint16_t name_len;
  const char *value;
  uint16_t value_len;
} fb_prop;

#define FB_PROP(name, value) {(name), (uint16_t)(sizeof(name) - 1u), (value), (uint16_t)(sizeof(value) - 1u)}

/* A parsed props field: count pairs, checked; walk them with fb_props_next. */
typedef struct fb_props {
  const uint8_t *data; /* the first pair */
  size_t len;          /* bytes of all pairs */
  uint8_t count;
} fb_props;

/* Iterate: *pos starts at 0; returns 1 and fills name/value while pairs remain, then 0. */
int fb_props_next(const fb_props *props, size_t *pos, fb_bytes *name, fb_bytes *value);

/* Find a property by name (NUL-terminated). Returns 1 and the value, or 0. */
int fb_props_get(const fb_props *props, const char *name, fb_bytes *value);

typedef struct fb_hello {
  uint8_t protocol;
  uint8_t capabilities;
  uint16_t max_frame;
  uint8_t window;
  uint32_t boot_id;
} fb_hello; /* HELLO and HELLO_ACK */

typedef struct fb_identity {
  fb_bytes device_id;
  fb_bytes module_id; /* empty for a device */
  uint8_t auth;       /* 0: the gateway holds the key, 1: the MCU signs */
} fb_identity;

/* STATUS.state */
#define FB_STATE_OFFLINE 0u
#define FB_STATE_CONNECTING 1u
#define FB_STATE_ONLINE 2u
#define FB_STATE_REFUSED 3u
#define FB_STATE_ERROR 4u

typedef struct fb_status {
  uint8_t state;
  uint16_t status;
  fb_bytes detail;
} fb_status;

typedef struct fb_telemetry {
  uint32_t id;
  fb_props properties;
  fb_bytes body;
} fb_telemetry;

typedef struct fb_telemetry_ack {
  uint32_t id;
  uint16_t status;
} fb_telemetry_ack;

typedef struct fb_c2d {
  uint32_t tag;
  fb_props properties;
  fb_bytes body;
} fb_c2d;

/* C2D_SETTLE.outcome */
#define FB_C2D_COMPLETE 0u
#define FB_C2D_REJECT 1u
#define FB_C2D_ABANDON 2u

typedef struct fb_c2d_settle {
  uint32_t tag;
  uint8_t outcome;
} fb_c2d_settle;

typedef struct fb_twin_request {
  uint16_t rid;
} fb_twin_request; /* TWIN_GET */

typedef struct fb_twin {
  uint16_t rid;
  uint16_t status;
  fb_bytes json;
} fb_twin;

typedef struct fb_twin_reported {
  uint16_t rid;
  fb_bytes json;
} fb_twin_reported;

typedef struct fb_twin_result {
  uint16_t rid;
  uint16_t status;
  uint32_t version;
} fb_twin_result;

typedef struct fb_twin_desired {
  uint32_t version;
  fb_bytes json;
} fb_twin_desired;

typedef struct fb_method_request {
  uint16_t rid;
  fb_bytes name;
  fb_bytes json;
} fb_method_request;

typedef struct fb_method_response {
  uint16_t rid;
  uint16_t status;
  fb_bytes json;
} fb_method_response;

typedef struct fb_time {
  uint64_t unix_ms;
} fb_time;

typedef struct fb_sign_request {
  uint16_t rid;
  fb_bytes string_to_sign;
} fb_sign_request;

typedef struct fb_sign_response {
  uint16_t rid;
  uint8_t status; /* 0: signature holds the 32-byte HMAC-SHA256; non-zero: no key, busy */
  fb_bytes signature;
} fb_sign_response;

typedef struct fb_error {
  uint16_t ref_seq;
  uint16_t code; /* FB_EC_* */
  fb_bytes detail;
} fb_error;

int fb_msg_build_hello(uint8_t *out, size_t cap, const fb_hello *m);
int fb_msg_parse_hello(const uint8_t *p, size_t n, fb_hello *m);
int fb_msg_build_identity(uint8_t *out, size_t cap, const fb_identity *m);
int fb_msg_parse_identity(const uint8_t *p, size_t n, fb_identity *m);
int fb_msg_build_status(uint8_t *out, size_t cap, const fb_status *m);
int fb_msg_parse_status(const uint8_t *p, size_t n, fb_status *m);
int fb_msg_build_telemetry(uint8_t *out, size_t cap, uint32_t id, const fb_prop *props, uint8_t count,
                           const uint8_t *body, size_t body_len);
int fb_msg_parse_telemetry(const uint8_t *p, size_t n, fb_telemetry *m);
int fb_msg_build_telemetry_ack(uint8_t *out, size_t cap, const fb_telemetry_ack *m);
int fb_msg_parse_telemetry_ack(const uint8_t *p, size_t n, fb_telemetry_ack *m);
int fb_msg_build_c2d(uint8_t *out, size_t cap, uint32_t tag, const fb_prop *props, uint8_t count,
                     const uint8_t *body, size_t body_len);
int fb_msg_parse_c2d(const uint8_t *p, size_t n, fb_c2d *m);
int fb_msg_build_c2d_settle(uint8_t *out, size_t cap, const fb_c2d_settle *m);
int fb_msg_parse_c2d_settle(const uint8_t *p, size_t n, fb_c2d_settle *m);
int fb_msg_build_twin_get(uint8_t *out, size_t cap, const fb_twin_request *m);
int fb_msg_parse_twin_get(const uint8_t *p, size_t n, fb_twin_request *m);
int fb_msg_build_twin(uint8_t *out, size_t cap, const fb_twin *m);
int fb_msg_parse_twin(const uint8_t *p, size_t n, fb_twin *m);
int fb_msg_build_twin_reported(uint8_t *out, size_t cap, const fb_twin_reported *m);
int fb_msg_parse_twin_reported(const uint8_t *p, size_t n, fb_twin_reported *m);
int fb_msg_build_twin_result(uint8_t *out, size_t cap, const fb_twin_result *m);
int fb_msg_parse_twin_result(const uint8_t *p, size_t n, fb_twin_result *m);
int fb_msg_build_twin_desired(uint8_t *out, size_t cap, const fb_twin_desired *m);
int fb_msg_parse_twin_desired(const uint8_t *p, size_t n, fb_twin_desired *m);
int fb_msg_build_method_request(uint8_t *out, size_t cap, const fb_method_request *m);
int fb_msg_parse_method_request(const uint8_t *p, size_t n, fb_method_request *m);
int fb_msg_build_method_response(uint8_t *out, size_t cap, const fb_method_response *m);
int fb_msg_parse_method_response(const uint8_t *p, size_t n, fb_method_response *m);
int fb_msg_build_time(uint8_t *out, size_t cap, const fb_time *m);
int fb_msg_parse_time(const uint8_t *p, size_t n, fb_time *m);
int fb_msg_build_sign_request(uint8_t *out, size_t cap, const fb_sign_request *m);
int fb_msg_parse_sign_request(const uint8_t *p, size_t n, fb_sign_request *m);
int fb_msg_build_sign_response(uint8_t *out, size_t cap, const fb_sign_response *m);
int fb_msg_parse_sign_response(const uint8_t *p, size_t n, fb_sign_response *m);
int fb_msg_build_error(uint8_t *out, size_t cap, const fb_error *m);
int fb_msg_parse_error(const uint8_t *p, size_t n, fb_error *m);

/* Payloads that must be empty (TIME_REQUEST, RESET, PING, ...): FB_OK or FB_ERR_MALFORMED. */
int fb_msg_parse_empty(const uint8_t *p, size_t n);

#endif
