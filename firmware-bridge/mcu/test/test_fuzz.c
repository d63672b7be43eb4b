/* Seeded random fuzzing of everything that reads peer bytes: the payload parsers on exact-size heap copies (so
 * ASan sees a read one byte past the end), and a device fed random bytes and random frames with a good CRC (so
 * they get past the CRC into the link state machine and the parsers) while the application sends. Sanitizers
 * catch out-of-bounds access and undefined behaviour; the checks below catch a parser that accepts what it cannot
 * rebuild byte for byte, views pointing outside the payload, and frames leaving the MCU that are not valid. */
#include <stdlib.h>
#include <string.h>

#include "fb_device.h"
#include "fb_frame.h"
#include "fb_hmac_sha256.h"
#include "runner.h"

/* ---- payload parsers ---- */

static int inside(const fb_bytes *b, const uint8_t *p, size_t n) {
  return b->len == 0 || (b->data >= p && b->len <= n && b->data <= p + (n - b->len));
}

/* Walk a parsed props field: every pair inside the payload, exactly count pairs, ending at props->len. The pairs
 * go to out (for rebuilding). Returns 0 on a violation. */
static int walk_props(const fb_props *props, const uint8_t *p, size_t n, fb_prop *out) {
  size_t pos = 0;
  unsigned count = 0;
  fb_bytes name;
  fb_bytes value;
  while (fb_props_next(props, &pos, &name, &value)) {
    if (!inside(&name, p, n) || !inside(&value, p, n) || count >= 255u) {
      return 0;
    }
    out[count].name = (const char *)name.data;
    out[count].name_len = (uint16_t)name.len;
    out[count].value = (const char *)value.data;
    out[count].value_len = (uint16_t)value.len;
    count++;
  }
  return count == props->count && pos == props->len;
}

/* Parse p[0..n) as type; when it parses, every view must lie inside p and the builder must give back exactly p.
 * Returns -1 on a violation, else the parse result. */
static int parse_and_rebuild(uint8_t type, const uint8_t *p, size_t n) {
  static uint8_t out[1024];
  static fb_prop props[255];
  int r;
  int built = -100;
  switch (type) {
  case FB_T_HELLO: {
    fb_hello x;
    r = fb_msg_parse_hello(p, n, &x);
    if (r == FB_OK) {
      built = fb_msg_build_hello(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_IDENTITY: {
    fb_identity x;
    r = fb_msg_parse_identity(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.device_id, p, n) || !inside(&x.module_id, p, n)) {
        return -1;
      }
      built = fb_msg_build_identity(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_STATUS: {
    fb_status x;
    r = fb_msg_parse_status(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.detail, p, n)) {
        return -1;
      }
      built = fb_msg_build_status(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TELEMETRY: {
    fb_telemetry x;
    r = fb_msg_parse_telemetry(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.body, p, n) || !walk_props(&x.properties, p, n, props)) {
        return -1;
      }
      built = fb_msg_build_telemetry(out, sizeof out, x.id, props, x.properties.count, x.body.data, x.body.len);
    }
    break;
  }
  case FB_T_TELEMETRY_ACK: {
    fb_telemetry_ack x;
    r = fb_msg_parse_telemetry_ack(p, n, &x);
    if (r == FB_OK) {
      built = fb_msg_build_telemetry_ack(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_C2D: {
    fb_c2d x;
    r = fb_msg_parse_c2d(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.body, p, n) || !walk_props(&x.properties, p, n, props)) {
        return -1;
      }
      built = fb_msg_build_c2d(out, sizeof out, x.tag, props, x.properties.count, x.body.data, x.body.len);
    }
    break;
  }
  case FB_T_C2D_SETTLE: {
    fb_c2d_settle x;
    r = fb_msg_parse_c2d_settle(p, n, &x);
    if (r == FB_OK) {
      built = fb_msg_build_c2d_settle(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TWIN_GET: {
    fb_twin_request x;
    r = fb_msg_parse_twin_get(p, n, &x);
    if (r == FB_OK) {
      built = fb_msg_build_twin_get(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TWIN: {
    fb_twin x;
    r = fb_msg_parse_twin(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.json, p, n)) {
        return -1;
      }
      built = fb_msg_build_twin(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TWIN_REPORTED: {
    fb_twin_reported x;
    r = fb_msg_parse_twin_reported(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.json, p, n)) {
        return -1;
      }
      built = fb_msg_build_twin_reported(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TWIN_RESULT: {
    fb_twin_result x;
    r = fb_msg_parse_twin_result(p, n, &x);
    if (r == FB_OK) {
      built = fb_msg_build_twin_result(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TWIN_DESIRED: {
    fb_twin_desired x;
    r = fb_msg_parse_twin_desired(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.json, p, n)) {
        return -1;
      }
      built = fb_msg_build_twin_desired(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_METHOD_REQUEST: {
    fb_method_request x;
    r = fb_msg_parse_method_request(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.name, p, n) || !inside(&x.json, p, n)) {
        return -1;
      }
      built = fb_msg_build_method_request(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_METHOD_RESPONSE: {
    fb_method_response x;
    r = fb_msg_parse_method_response(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.json, p, n)) {
        return -1;
      }
      built = fb_msg_build_method_response(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_TIME: {
    fb_time x;
    r = fb_msg_parse_time(p, n, &x);
    if (r == FB_OK) {
      built = fb_msg_build_time(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_SIGN_REQUEST: {
    fb_sign_request x;
    r = fb_msg_parse_sign_request(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.string_to_sign, p, n)) {
        return -1;
      }
      built = fb_msg_build_sign_request(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_SIGN_RESPONSE: {
    fb_sign_response x;
    r = fb_msg_parse_sign_response(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.signature, p, n)) {
        return -1;
      }
      built = fb_msg_build_sign_response(out, sizeof out, &x);
    }
    break;
  }
  case FB_T_ERROR: {
    fb_error x;
    r = fb_msg_parse_error(p, n, &x);
    if (r == FB_OK) {
      if (!inside(&x.detail, p, n)) {
        return -1;
      }
      built = fb_msg_build_error(out, sizeof out, &x);
    }
    break;
  }
  default:
    r = fb_msg_parse_empty(p, n);
    built = 0;
    break;
  }
  if (r != FB_OK && r != FB_ERR_MALFORMED) {
    return -1;
  }
  if (r == FB_OK && (built < 0 || (size_t)built != n || (n > 0 && memcmp(out, p, n) != 0))) {
    return -1;
  }
  return r;
}

static const uint8_t fuzz_types[] = {FB_T_HELLO,         FB_T_IDENTITY,       FB_T_STATUS,          FB_T_TELEMETRY,
                                     FB_T_TELEMETRY_ACK, FB_T_C2D,            FB_T_C2D_SETTLE,      FB_T_TWIN_GET,
                                     FB_T_TWIN,          FB_T_TWIN_REPORTED,  FB_T_TWIN_RESULT,     FB_T_TWIN_DESIRED,
                                     FB_T_METHOD_REQUEST, FB_T_METHOD_RESPONSE, FB_T_TIME,          FB_T_SIGN_REQUEST,
                                     FB_T_SIGN_RESPONSE, FB_T_ERROR,          FB_T_TIME_REQUEST};

/* Random payload bytes, biased so that length prefixes are often small and parses often succeed. */
static void random_payload(fb_rng *rng, uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned x = fb_rand(rng);
    p[i] = (uint8_t)(x % 3u == 0 ? 0 : x % 3u == 1 ? (x >> 8) % 6u : x >> 8);
  }
}

/* FB_FUZZ_SCALE=n runs n times as many rounds, FB_FUZZ_SEED=s other inputs: for longer runs by hand. CI runs
 * the defaults (a second or two under the sanitizers). */
static unsigned fuzz_scale(void) {
  const char *v = getenv("FB_FUZZ_SCALE");
  unsigned long n = v ? strtoul(v, 0, 10) : 1ul;
  return n < 1ul ? 1u : (unsigned)n;
}

static unsigned long fuzz_seed(unsigned long fixed) {
  const char *v = getenv("FB_FUZZ_SEED");
  return v ? fixed ^ strtoul(v, 0, 0) : fixed;
}

static void random_payloads_never_make_a_parser_read_past_the_end(void) {
  fb_rng rng;
  unsigned round;
  unsigned accepted = 0;
  unsigned rounds = 60000u * fuzz_scale();
  rng.s = fuzz_seed(0xF022u);
  for (round = 0; round < rounds; round++) {
    uint8_t type = fuzz_types[fb_rand(&rng) % (sizeof fuzz_types)];
    size_t n = fb_rand(&rng) % 48u;
    uint8_t *p = (uint8_t *)malloc(n ? n : 1u); /* exactly n bytes: ASan flags a read past them */
    int r;
    CHECK(p != NULL);
    random_payload(&rng, p, n);
    r = parse_and_rebuild(type, n ? p : NULL, n);
    free(p);
    CHECK_MSG(r != -1, "type 0x%02x, %u bytes (round %u): a view outside the payload, or not rebuilt byte for byte",
              type, (unsigned)n, round);
    accepted += r == FB_OK ? 1u : 0u;
  }
  CHECK_MSG(accepted > rounds / 12u, "only %u of the random payloads parsed: the fuzzer is too weak", accepted);
}

/* ---- the two COBS decoders ---- */

static void the_one_shot_and_incremental_cobs_decoders_agree_on_random_input(void) {
  fb_rng rng;
  unsigned round;
  unsigned decoded = 0;
  unsigned rounds = 40000u * fuzz_scale();
  rng.s = fuzz_seed(0xC0B5u);
  for (round = 0; round < rounds; round++) {
    /* Now and then long enough for 0xFF blocks (254 non-zero bytes) and their boundaries. */
    size_t n = 1u + fb_rand(&rng) % (round % 8u < 2u ? 600u : 40u);
    size_t cap = fb_rand(&rng) % 2u ? n : fb_rand(&rng) % (n + 8u); /* often too small: TOO_LARGE / overflow */
    uint8_t *src = (uint8_t *)malloc(n);
    uint8_t *dst = (uint8_t *)malloc(cap ? cap : 1u); /* exactly cap bytes: ASan flags a write past them */
    uint8_t *inc = (uint8_t *)malloc(cap ? cap : 1u);
    fb_cobs_decoder d;
    size_t one_len = 0;
    size_t inc_len = 0;
    size_t i;
    int one;
    int inc_result = FB_COBS_NONE;
    CHECK(src && dst && inc);
    if (round % 2u) {
      /* Random bytes: code bytes that often point inside the block, a rare zero. */
      for (i = 0; i < n; i++) {
        unsigned x = fb_rand(&rng);
        src[i] = (uint8_t)(x % 41u == 0 ? 0 : x % 3u == 0 ? 1u + (x >> 8) % 8u : x >> 8);
      }
    } else {
      /* A valid encoding of random data (zeros included), one byte of it changed now and then. */
      uint8_t raw[600];
      size_t k = n - 1u - (n - 1u) / 255u;
      size_t len;
      unsigned zeros = round % 4u == 0 ? 400u : 4u; /* one zero in 400 bytes, or one in 4 */
      for (i = 0; i < k; i++) {
        unsigned x = fb_rand(&rng);
        raw[i] = (uint8_t)(x % zeros == 0 ? 0 : 1u + (x >> 8) % 255u);
      }
      len = fb_cobs_encode(raw, k, src, n);
      n = len ? len : n;
      if (len && fb_rand(&rng) % 3u == 0) {
        src[fb_rand(&rng) % n] = (uint8_t)fb_rand(&rng);
      }
    }
    one = fb_cobs_decode(src, n, dst, cap, &one_len);
    fb_cobs_decoder_init(&d, inc, cap);
    for (i = 0; i < n && inc_result == FB_COBS_NONE; i++) {
      inc_result = fb_cobs_decoder_put(&d, src[i], &inc_len);
    }
    if (inc_result == FB_COBS_NONE) {
      inc_result = fb_cobs_decoder_put(&d, 0, &inc_len); /* the delimiter */
    }
    if (one == FB_OK) {
      /* A block with no zero byte in it: the incremental decoder must give the same bytes at its delimiter (or,
       * for an empty decoding, ignore it as an empty frame would be). */
      CHECK_MSG((inc_result == FB_COBS_FRAME && inc_len == one_len && (one_len == 0 || !memcmp(inc, dst, one_len))),
                "round %u: one-shot decoded %u bytes, incremental gave %d", round, (unsigned)one_len, inc_result);
      decoded++;
    } else if (memchr(src, 0, n) == NULL) {
      /* Invalid COBS or too long for cap without a zero inside: the incremental decoder refuses it too. */
      CHECK_MSG(inc_result == FB_COBS_ERROR, "round %u: one-shot refused (%d), incremental gave %d", round, one,
                inc_result);
    }
    free(src);
    free(dst);
    free(inc);
  }
  CHECK_MSG(decoded > rounds / 8u, "only %u of the random blocks decoded", decoded);
}

/* ---- a device fed hostile bytes ---- */

#define FZ_RX 64u /* the smallest maxFrame: oversize frames are common */
#define FZ_SLOT 96u

typedef struct fuzz_app {
  fb_device dev;
  uint8_t rx[FZ_RX];
  uint8_t tx[2 * FZ_SLOT];
  uint8_t tm[3 * 40];
  fb_cobs_decoder out_dec; /* the MCU's output, decoded as the gateway would */
  uint8_t out_buf[FZ_SLOT + 16];
  unsigned out_frames;
  unsigned out_bad;
  unsigned callbacks;
  unsigned views_outside;
  fb_rng rng;
} fuzz_app;

static fuzz_app F;

static int in_rx(const fb_bytes *b) {
  return b->len == 0 || (b->data >= F.rx && b->len <= sizeof F.rx && b->data <= F.rx + (sizeof F.rx - b->len));
}

static void fz_write(void *ctx, const uint8_t *bytes, size_t n) {
  size_t i;
  (void)ctx;
  for (i = 0; i < n; i++) {
    size_t len = 0;
    fb_frame f;
    int k = fb_cobs_decoder_put(&F.out_dec, bytes[i], &len);
    if (k == FB_COBS_FRAME) {
      if (fb_frame_parse(F.out_buf, len, &f) == FB_OK) {
        F.out_frames++;
      } else {
        F.out_bad++;
      }
    } else if (k == FB_COBS_ERROR) {
      F.out_bad++;
    }
  }
}

static void fz_status(void *ctx, const fb_status *m) {
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(&m->detail) ? 0u : 1u;
}

static void fz_c2d(void *ctx, const fb_c2d *m) {
  fb_prop props[255];
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(&m->body) ? 0u : 1u;
  F.views_outside += walk_props(&m->properties, F.rx, sizeof F.rx, props) ? 0u : 1u;
  if (fb_rand(&F.rng) % 2u) {
    (void)fb_settle_c2d(&F.dev, m->tag, (uint8_t)(fb_rand(&F.rng) % 4u)); /* 3 is refused with FB_ERR_ARG */
  }
}

static void fz_twin(void *ctx, const fb_twin *m) {
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(&m->json) ? 0u : 1u;
}

static void fz_desired(void *ctx, const fb_twin_desired *m) {
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(&m->json) ? 0u : 1u;
  if (fb_rand(&F.rng) % 2u) {
    (void)fb_twin_report(&F.dev, m->json.data, m->json.len, 0); /* straight from the receive buffer */
  }
}

static void fz_method(void *ctx, const fb_method_request *m) {
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(&m->name) && in_rx(&m->json) ? 0u : 1u;
  (void)fb_method_respond(&F.dev, m->rid, 200, m->json.data, m->json.len);
}

static int fz_sign(void *ctx, const fb_bytes *s, uint8_t mac[32]) {
  static const uint8_t key[32] = {1, 2, 3};
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(s) ? 0u : 1u;
  fb_hmac_sha256(key, sizeof key, s->data, s->len, mac);
  return (int)(fb_rand(&F.rng) % 3u) - 1; /* 0, or a status: -1 and 1 */
}

static void fz_error(void *ctx, const fb_error *m) {
  (void)ctx;
  F.callbacks++;
  F.views_outside += in_rx(&m->detail) ? 0u : 1u;
}

static void fz_ack(void *ctx, uint32_t id, uint16_t status) {
  (void)ctx;
  (void)id;
  (void)status;
  F.callbacks++;
}

/* One frame with a good CRC, COBS-encoded with its delimiter, to the device. */
static void feed_frame(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, uint32_t now) {
  static uint8_t scratch[300];
  static uint8_t wire[320];
  size_t n = fb_frame_encode(type, seq, payload, len, scratch, sizeof scratch, wire, sizeof wire);
  if (n > 0) {
    fb_device_input(&F.dev, wire, n, now);
  }
}

static void random_bytes_and_frames_never_break_the_device(void) {
  fb_device_config cfg;
  fb_device_callbacks cb;
  fb_device_buffers b;
  uint32_t now = 100;
  unsigned step;
  unsigned ups = 0;
  unsigned steps = 40000u * fuzz_scale();
  memset(&F, 0, sizeof F);
  memset(&cfg, 0, sizeof cfg);
  memset(&cb, 0, sizeof cb);
  F.rng.s = fuzz_seed(0xDEC0DEu);
  fb_cobs_decoder_init(&F.out_dec, F.out_buf, sizeof F.out_buf);
  cfg.device_id = "fuzz";
  cfg.auth = 1;
  cfg.link.role = FB_ROLE_MCU;
  cfg.link.capabilities = 0x0F;
  cfg.link.window = 2;
  cb.write = fz_write;
  cb.on_status = fz_status;
  cb.on_c2d = fz_c2d;
  cb.on_twin = fz_twin;
  cb.on_desired = fz_desired;
  cb.on_method = fz_method;
  cb.on_sign = fz_sign;
  cb.on_error = fz_error;
  cb.on_telemetry_ack = fz_ack;
  b.rx = F.rx;
  b.rx_size = sizeof F.rx;
  b.tx = F.tx;
  b.tx_slot_size = FZ_SLOT;
  b.tx_slots = 2;
  b.telemetry = F.tm;
  b.telemetry_slot_size = 40;
  b.telemetry_slots = 3;
  CHECK(fb_device_init(&F.dev, &cfg, &cb, 0, &b) == FB_OK);
  fb_device_start(&F.dev, now);
  for (step = 0; step < steps; step++) {
    unsigned what = fb_rand(&F.rng) % 16u;
    uint8_t payload[120];
    uint16_t len = (uint16_t)(fb_rand(&F.rng) % (fb_rand(&F.rng) % 4u == 0 ? sizeof payload : 24u));
    now += fb_rand(&F.rng) % 40u;
    random_payload(&F.rng, payload, len);
    if (what == 0) {
      /* Raw line noise, zeros included. */
      uint8_t noise[32];
      size_t k;
      size_t n = 1u + fb_rand(&F.rng) % sizeof noise;
      for (k = 0; k < n; k++) {
        unsigned x = fb_rand(&F.rng);
        noise[k] = (uint8_t)(x % 7u == 0 ? 0 : x >> 5);
      }
      fb_device_input(&F.dev, noise, n, now);
    } else if (what == 1) {
      /* A HELLO_ACK with random limits (window 0..15, maxFrame anything), sometimes malformed. */
      fb_hello h;
      uint8_t p[12] = {0};
      h.protocol = fb_rand(&F.rng) % 8u ? 1u : 2u;
      h.capabilities = (uint8_t)fb_rand(&F.rng);
      h.max_frame = (uint16_t)(fb_rand(&F.rng) % 4u ? fb_rand(&F.rng) % 200u : fb_rand(&F.rng));
      h.window = (uint8_t)(fb_rand(&F.rng) % 16u);
      h.boot_id = fb_rand(&F.rng);
      (void)fb_msg_build_hello(p, sizeof p, &h);
      feed_frame(FB_T_HELLO_ACK, 0, p, fb_rand(&F.rng) % 6u ? 9u : (uint16_t)(fb_rand(&F.rng) % 12u), now);
    } else if (what == 2) {
      /* A link frame of any type, with any seq (ACKs for anything in or out of flight). */
      uint8_t t = (uint8_t)(fb_rand(&F.rng) % 16u);
      uint16_t seq = (uint16_t)(fb_rand(&F.rng) % 3u ? F.dev.link.tx_base_seq + fb_rand(&F.rng) % 4u : fb_rand(&F.rng));
      feed_frame(t, seq, payload, (uint16_t)(len % 12u), now);
    } else if (what <= 11) {
      /* A reliable frame, usually the one the device expects next, of a known type or not. */
      uint8_t t = fb_rand(&F.rng) % 8u ? fuzz_types[fb_rand(&F.rng) % sizeof fuzz_types] : (uint8_t)fb_rand(&F.rng);
      uint16_t seq = fb_rand(&F.rng) % 5u ? F.dev.link.rx_expected : (uint16_t)fb_rand(&F.rng);
      if (t <= 0x0Fu) {
        t = (uint8_t)(t + 0x10u);
      }
      feed_frame(t, seq, payload, len, now);
    } else if (what == 12) {
      fb_prop prop = FB_PROP("k", "v");
      (void)fb_send_telemetry(&F.dev, &prop, (uint8_t)(fb_rand(&F.rng) % 2u), payload, len, 0);
    } else if (what == 13) {
      (void)fb_twin_report(&F.dev, payload, len, 0);
      (void)fb_twin_get(&F.dev, 0);
      (void)fb_request_time(&F.dev);
    } else {
      fb_device_poll(&F.dev, now);
    }
    ups += fb_link_is_up(&F.dev.link) ? 1u : 0u;
    CHECK(F.dev.link.tx_count <= F.dev.link.tx_slots && F.dev.link.tx_head < F.dev.link.tx_slots);
    CHECK(F.dev.link.dec.len <= F.dev.link.dec.cap);
    CHECK(fb_device_unconfirmed(&F.dev) <= 3u);
  }
  CHECK_MSG(F.views_outside == 0, "%u callback views outside the receive buffer", F.views_outside);
  CHECK_MSG(F.out_bad == 0, "%u frames from the MCU that a gateway could not decode", F.out_bad);
  /* The run must have reached the interesting states, or it proves little. */
  CHECK_MSG(ups > steps / 4u && F.callbacks > steps / 40u && F.out_frames > steps / 4u, "up %u steps, %u callbacks, %u frames out",
            ups, F.callbacks, F.out_frames);
}

const fb_test fuzz_tests[] = {
    {"fuzz: random payloads never make a parser read past the end, and what parses rebuilds byte for byte",
     random_payloads_never_make_a_parser_read_past_the_end},
    {"fuzz: the one-shot and incremental COBS decoders agree on random input, within their buffers",
     the_one_shot_and_incremental_cobs_decoders_agree_on_random_input},
    {"fuzz: random bytes and random good-CRC frames never break the device or its output",
     random_bytes_and_frames_never_break_the_device},
    {0, 0},
};
