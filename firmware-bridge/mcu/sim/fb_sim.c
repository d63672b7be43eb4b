/* fb_sim: a simulated MCU for tests and demos. It links the MCU library and talks over a serial device (one end
 * of a socat PTY pair), driven by line commands on stdin, reporting every event as one JSON line on stdout.
 * POSIX is allowed here (and only here). The CLI and the event format are documented in ../README.md. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fb_device.h"
#include "fb_hmac_sha256.h"

#define MAX_FRAME 1024u
#define TX_SLOTS 4u
#define TM_SLOTS 16u
#define TM_SLOT 1024u
#define PENDING_MAX 32u
#define PENDING_JSON 512u

typedef struct pending {
  uint8_t kind; /* 1 settle, 2 method response, 3 reported patch */
  uint32_t tag;
  uint16_t rid;
  uint16_t status;
  uint8_t outcome;
  size_t len;
  char json[PENDING_JSON];
} pending;

typedef struct sim {
  const char *path;
  int fd;
  int port_reported; /* -1 unknown, 0 closed, 1 open */
  uint32_t next_open;
  fb_device dev;
  uint8_t rx[MAX_FRAME];
  uint8_t tx[TX_SLOTS * MAX_FRAME];
  uint8_t tm[TM_SLOTS * TM_SLOT];
  uint8_t key[64];
  size_t key_len;
  int has_key;
  int c2d_policy; /* FB_C2D_* or -1 manual */
  uint16_t method_status;
  int on_desired_report;
  pending queue[PENDING_MAX];
  unsigned queued;
} sim;

static uint32_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* ---- JSON output ---- */

static void json_string(const uint8_t *s, size_t n) {
  size_t i;
  putchar('"');
  for (i = 0; i < n; i++) {
    uint8_t c = s[i];
    if (c == '"' || c == '\\') {
      printf("\\%c", c);
    } else if (c == '\n') {
      printf("\\n");
    } else if (c == '\r') {
      printf("\\r");
    } else if (c == '\t') {
      printf("\\t");
    } else if (c < 0x20 || c == 0x7F) {
      printf("\\u%04x", c);
    } else {
      putchar(c);
    }
  }
  putchar('"');
}

static void json_cstr(const char *s) { json_string((const uint8_t *)s, strlen(s)); }

static void emit_end(void) {
  printf("}\n");
  fflush(stdout);
}

static void emit_simple(const char *event) {
  printf("{\"event\":\"%s\"", event);
  emit_end();
}

static void command_error(const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("{\"event\":\"command_error\",\"message\":");
  json_cstr(msg);
  emit_end();
}

static const char *result_name(int r) {
  switch (r) {
  case FB_OK:
    return "ok";
  case FB_ERR_BUSY:
    return "busy";
  case FB_ERR_LINK_DOWN:
    return "link-down";
  case FB_ERR_TOO_LARGE:
    return "too-large";
  default:
    return "error";
  }
}

/* ---- the serial port ---- */

static void port_close(sim *s) {
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  if (s->port_reported != 0) {
    printf("{\"event\":\"port\",\"open\":false,\"path\":");
    json_cstr(s->path);
    emit_end();
    s->port_reported = 0;
  }
  s->next_open = now_ms() + 100u;
}

static void port_try_open(sim *s) {
  struct termios t;
  int fd = open(s->path, O_RDWR | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    s->next_open = now_ms() + 100u; /* cable pulled: keep trying the same path every ~100 ms */
    return;
  }
  if (tcgetattr(fd, &t) == 0) {
    cfmakeraw(&t);
    cfsetispeed(&t, B115200);
    cfsetospeed(&t, B115200);
    tcsetattr(fd, TCSANOW, &t);
  }
  s->fd = fd;
  printf("{\"event\":\"port\",\"open\":true,\"path\":");
  json_cstr(s->path);
  emit_end();
  s->port_reported = 1;
  /* Flush the gateway's partial frame and re-handshake at once: HELLO now rather than at the next interval. */
  fb_link_start(&s->dev.link, now_ms());
}

static void uart_write(void *ctx, const uint8_t *bytes, size_t n) {
  sim *s = (sim *)ctx;
  size_t off = 0;
  while (s->fd >= 0 && off < n) {
    ssize_t w = write(s->fd, bytes + off, n - off);
    if (w > 0) {
      off += (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd p;
      p.fd = s->fd;
      p.events = POLLOUT;
      p.revents = 0;
      int ready = poll(&p, 1, 50);
      if (ready > 0 && (p.revents & (POLLERR | POLLHUP))) {
        port_close(s); /* the other end is gone */
      } else if (ready <= 0) {
        return; /* nobody reads (the gateway is not running): drop the rest, as a UART would */
      }
    } else {
      port_close(s); /* EIO: the other end of the PTY is gone */
    }
  }
  /* Bytes written while the port is closed are lost, as on a pulled cable: the link retransmits. */
}

/* ---- deferred answers (the window may be full when a request arrives) ---- */

static void enqueue(sim *s, const pending *p) {
  if (s->queued >= PENDING_MAX) {
    command_error("answer queue full; dropped an answer");
    return;
  }
  s->queue[s->queued++] = *p;
}

static void drain(sim *s) {
  while (s->queued > 0) {
    pending *p = &s->queue[0];
    int r;
    uint16_t rid = 0;
    if (p->kind == 1) {
      r = fb_settle_c2d(&s->dev, p->tag, p->outcome);
    } else if (p->kind == 2) {
      r = fb_method_respond(&s->dev, p->rid, p->status, (const uint8_t *)p->json, p->len);
    } else {
      r = fb_twin_report(&s->dev, (const uint8_t *)p->json, p->len, &rid);
    }
    if (r == FB_ERR_BUSY || r == FB_ERR_LINK_DOWN) {
      return; /* later (a C2D or method answered after a link loss is answered by the hub's own timeout) */
    }
    if (p->kind == 1) {
      static const char *names[] = {"complete", "reject", "abandon"};
      printf("{\"event\":\"settled\",\"tag\":%lu,\"outcome\":\"%s\",\"result\":\"%s\"", (unsigned long)p->tag,
             names[p->outcome], result_name(r));
    } else if (p->kind == 2) {
      printf("{\"event\":\"method_response\",\"rid\":%u,\"status\":%u,\"result\":\"%s\"", p->rid, p->status,
             result_name(r));
    } else {
      printf("{\"event\":\"reported\",\"rid\":%u,\"patch\":", rid);
      json_string((const uint8_t *)p->json, p->len);
      printf(",\"result\":\"%s\"", result_name(r));
    }
    emit_end();
    memmove(&s->queue[0], &s->queue[1], (s->queued - 1u) * sizeof s->queue[0]);
    s->queued--;
  }
}

/* ---- device callbacks ---- */

static const char *down_reason(unsigned r) {
  switch (r) {
  case FB_DOWN_RETRIES:
    return "retries";
  case FB_DOWN_SILENCE:
    return "silence";
  case FB_DOWN_RESET:
    return "reset";
  case FB_DOWN_RESTART:
    return "port-reopened";
  default:
    return "other";
  }
}

static void on_link(void *ctx, int up, unsigned reason) {
  (void)ctx;
  if (up) {
    printf("{\"event\":\"link\",\"up\":true");
  } else {
    printf("{\"event\":\"link\",\"up\":false,\"reason\":\"%s\"", down_reason(reason));
  }
  emit_end();
}

static void on_status(void *ctx, const fb_status *m) {
  (void)ctx;
  printf("{\"event\":\"status\",\"state\":%u,\"status\":%u,\"detail\":", m->state, m->status);
  json_string(m->detail.data, m->detail.len);
  emit_end();
}

static void print_props(const fb_props *props) {
  size_t pos = 0;
  fb_bytes n;
  fb_bytes v;
  int first = 1;
  putchar('{');
  while (fb_props_next(props, &pos, &n, &v)) {
    if (!first) {
      putchar(',');
    }
    first = 0;
    json_string(n.data, n.len);
    putchar(':');
    json_string(v.data, v.len);
  }
  putchar('}');
}

static void on_c2d(void *ctx, const fb_c2d *m) {
  sim *s = (sim *)ctx;
  printf("{\"event\":\"c2d\",\"tag\":%lu,\"properties\":", (unsigned long)m->tag);
  print_props(&m->properties);
  printf(",\"body\":");
  json_string(m->body.data, m->body.len);
  emit_end();
  if (s->c2d_policy >= 0) {
    pending p;
    memset(&p, 0, sizeof p);
    p.kind = 1;
    p.tag = m->tag;
    p.outcome = (uint8_t)s->c2d_policy;
    enqueue(s, &p);
  }
}

static void on_twin(void *ctx, const fb_twin *m) {
  (void)ctx;
  printf("{\"event\":\"twin\",\"rid\":%u,\"status\":%u,\"twin\":", m->rid, m->status);
  json_string(m->json.data, m->json.len);
  emit_end();
}

static void on_twin_result(void *ctx, const fb_twin_result *m) {
  (void)ctx;
  printf("{\"event\":\"twin_result\",\"rid\":%u,\"status\":%u,\"version\":%lu", m->rid, m->status,
         (unsigned long)m->version);
  emit_end();
}

static void on_desired(void *ctx, const fb_twin_desired *m) {
  sim *s = (sim *)ctx;
  printf("{\"event\":\"desired\",\"version\":%lu,\"patch\":", (unsigned long)m->version);
  json_string(m->json.data, m->json.len);
  emit_end();
  if (s->on_desired_report) {
    pending p;
    memset(&p, 0, sizeof p);
    p.kind = 3;
    p.len = (size_t)snprintf(p.json, sizeof p.json, "{\"desiredVersion\":%lu}", (unsigned long)m->version);
    enqueue(s, &p);
  }
}

static void on_method(void *ctx, const fb_method_request *m) {
  sim *s = (sim *)ctx;
  pending p;
  int n;
  printf("{\"event\":\"method\",\"rid\":%u,\"name\":", m->rid);
  json_string(m->name.data, m->name.len);
  printf(",\"payload\":");
  json_string(m->json.data, m->json.len);
  emit_end();
  memset(&p, 0, sizeof p);
  p.kind = 2;
  p.rid = m->rid;
  p.status = s->method_status;
  /* {"echo":<payload>,"method":"<name>"}: the payload is JSON already (null when empty). */
  n = snprintf(p.json, sizeof p.json, "{\"echo\":%.*s,\"method\":\"%.*s\"}",
               m->json.len ? (int)m->json.len : 4, m->json.len ? (const char *)m->json.data : "null",
               (int)m->name.len, (const char *)m->name.data);
  if (n < 0 || (size_t)n >= sizeof p.json) {
    p.status = 413;
    n = snprintf(p.json, sizeof p.json, "{\"error\":\"payload too large for the simulated MCU\"}");
  }
  p.len = (size_t)n;
  enqueue(s, &p);
}

static int on_sign(void *ctx, const fb_bytes *string_to_sign, uint8_t mac[32]) {
  sim *s = (sim *)ctx;
  if (!s->has_key) {
    return 1;
  }
  fb_hmac_sha256(s->key, s->key_len, string_to_sign->data, string_to_sign->len, mac);
  emit_simple("signed");
  return 0;
}

static void on_time(void *ctx, uint64_t unix_ms) {
  (void)ctx;
  printf("{\"event\":\"time\",\"unixMs\":%llu", (unsigned long long)unix_ms);
  emit_end();
}

static void on_telemetry_ack(void *ctx, uint32_t id, uint16_t status) {
  (void)ctx;
  printf("{\"event\":\"telemetry_ack\",\"id\":%lu,\"status\":%u", (unsigned long)id, status);
  emit_end();
}

static void on_error(void *ctx, const fb_error *m) {
  (void)ctx;
  printf("{\"event\":\"error\",\"refSeq\":%u,\"code\":%u,\"detail\":", m->ref_seq, m->code);
  json_string(m->detail.data, m->detail.len);
  emit_end();
}

/* ---- commands ---- */

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static int b64_decode(const char *in, uint8_t *out, size_t cap, size_t *n) {
  unsigned acc = 0;
  int bits = 0;
  *n = 0;
  for (; *in && *in != '='; in++) {
    int v = b64_value(*in);
    if (v < 0) {
      return -1;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (*n >= cap) {
        return -1;
      }
      out[(*n)++] = (uint8_t)(acc >> bits);
    }
  }
  return 0;
}

/* telemetry <props> <body>: props "k=v,k2=v2" or "-" for none; the body is the rest of the line. */
static void cmd_telemetry(sim *s, char *args) {
  fb_prop props[16];
  uint8_t count = 0;
  char *body;
  char *spec = args;
  uint32_t id = 0;
  int r;
  body = strchr(args, ' ');
  if (body) {
    *body++ = '\0';
  } else {
    body = args + strlen(args);
  }
  if (strcmp(spec, "-") != 0 && spec[0] != '\0') {
    char *item = spec;
    while (item && *item) {
      char *next = strchr(item, ',');
      char *eq;
      if (next) {
        *next++ = '\0';
      }
      eq = strchr(item, '=');
      if (!eq || count >= 16) {
        command_error("telemetry: properties are k=v,k2=v2 (at most 16) or -");
        return;
      }
      *eq = '\0';
      props[count].name = item;
      props[count].name_len = (uint16_t)strlen(item);
      props[count].value = eq + 1;
      props[count].value_len = (uint16_t)strlen(eq + 1);
      count++;
      item = next;
    }
  }
  r = fb_send_telemetry(&s->dev, props, count, (const uint8_t *)body, strlen(body), &id);
  if (r != FB_OK) {
    printf("{\"event\":\"telemetry_refused\",\"result\":\"%s\"", result_name(r));
    emit_end();
    return;
  }
  printf("{\"event\":\"telemetry_queued\",\"id\":%lu", (unsigned long)id);
  emit_end();
}

static int run_command(sim *s, char *line) {
  char *args = strchr(line, ' ');
  int r;
  uint16_t rid = 0;
  if (args) {
    *args++ = '\0';
  } else {
    args = line + strlen(line);
  }
  if (strcmp(line, "") == 0) {
    return 0;
  }
  if (strcmp(line, "quit") == 0) {
    return 1;
  }
  if (strcmp(line, "telemetry") == 0) {
    cmd_telemetry(s, args);
  } else if (strcmp(line, "twin-get") == 0) {
    r = fb_twin_get(&s->dev, &rid);
    printf("{\"event\":\"twin_get\",\"rid\":%u,\"result\":\"%s\"", rid, result_name(r));
    emit_end();
  } else if (strcmp(line, "report") == 0) {
    pending p;
    memset(&p, 0, sizeof p);
    p.kind = 3;
    p.len = strlen(args);
    if (p.len >= sizeof p.json) {
      command_error("report: patch longer than %u bytes", (unsigned)sizeof p.json - 1u);
      return 0;
    }
    memcpy(p.json, args, p.len);
    enqueue(s, &p);
  } else if (strcmp(line, "time") == 0) {
    r = fb_request_time(&s->dev);
    printf("{\"event\":\"time_request\",\"result\":\"%s\"", result_name(r));
    emit_end();
  } else if (strcmp(line, "settle") == 0) {
    pending p;
    char outcome[16] = "";
    unsigned long tag = 0;
    memset(&p, 0, sizeof p);
    p.kind = 1;
    if (sscanf(args, "%lu %15s", &tag, outcome) != 2 ||
        (strcmp(outcome, "complete") && strcmp(outcome, "reject") && strcmp(outcome, "abandon"))) {
      command_error("settle <tag> complete|reject|abandon");
      return 0;
    }
    p.tag = (uint32_t)tag;
    p.outcome = (uint8_t)(outcome[0] == 'c' ? FB_C2D_COMPLETE : outcome[0] == 'r' ? FB_C2D_REJECT : FB_C2D_ABANDON);
    enqueue(s, &p);
  } else if (strcmp(line, "state") == 0) {
    printf("{\"event\":\"state\",\"port\":%s,\"link\":%s,\"unconfirmed\":%u", s->fd >= 0 ? "true" : "false",
           fb_link_is_up(&s->dev.link) ? "true" : "false", fb_device_unconfirmed(&s->dev));
    emit_end();
  } else {
    command_error("unknown command %s", line);
  }
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: fb_sim --port <path> --device <id> [--module <id>] [--key <base64> | --auth gateway]\n"
                  "              [--c2d complete|reject|abandon|manual] [--method-status <n>]\n"
                  "              [--on-desired report|ignore] [--boot-id <n>]\n");
}

int main(int argc, char **argv) {
  static sim s;
  fb_device_config cfg;
  fb_device_callbacks cb;
  fb_device_buffers b;
  const char *device = 0;
  const char *module = 0;
  const char *key = 0;
  unsigned long boot_id = (unsigned long)time(0) ^ ((unsigned long)getpid() << 16);
  char line[4096];
  size_t line_len = 0;
  int i;
  int quit = 0;
  int stdin_open = 1;
  pid_t parent = getppid();

  memset(&cfg, 0, sizeof cfg);
  memset(&cb, 0, sizeof cb);
  s.fd = -1;
  s.port_reported = -1;
  s.c2d_policy = FB_C2D_COMPLETE;
  s.method_status = 200;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : 0;
    if (strcmp(a, "--port") == 0 && v) {
      s.path = v;
    } else if (strcmp(a, "--device") == 0 && v) {
      device = v;
    } else if (strcmp(a, "--module") == 0 && v) {
      module = v;
    } else if (strcmp(a, "--key") == 0 && v) {
      key = v;
    } else if (strcmp(a, "--auth") == 0 && v && strcmp(v, "gateway") == 0) {
      key = 0;
    } else if (strcmp(a, "--c2d") == 0 && v) {
      s.c2d_policy = strcmp(v, "complete") == 0 ? (int)FB_C2D_COMPLETE
                     : strcmp(v, "reject") == 0 ? (int)FB_C2D_REJECT
                     : strcmp(v, "abandon") == 0 ? (int)FB_C2D_ABANDON
                     : strcmp(v, "manual") == 0 ? -1
                                                 : -2;
      if (s.c2d_policy == -2) {
        usage();
        return 2;
      }
    } else if (strcmp(a, "--method-status") == 0 && v) {
      s.method_status = (uint16_t)strtoul(v, 0, 10);
    } else if (strcmp(a, "--on-desired") == 0 && v) {
      s.on_desired_report = strcmp(v, "report") == 0;
    } else if (strcmp(a, "--boot-id") == 0 && v) {
      boot_id = strtoul(v, 0, 0);
    } else if (a[0] != '-' && !s.path) {
      s.path = a;
      continue;
    } else {
      usage();
      return 2;
    }
    i++;
  }
  if (!s.path || !device) {
    usage();
    return 2;
  }
  if (key) {
    if (b64_decode(key, s.key, sizeof s.key, &s.key_len) != 0 || s.key_len == 0) {
      fprintf(stderr, "fb_sim: --key is not base64 (at most 64 bytes)\n");
      return 2;
    }
    s.has_key = 1;
  }

  cfg.device_id = device;
  cfg.module_id = module;
  cfg.auth = s.has_key ? 1u : 0u;
  cfg.link.role = FB_ROLE_MCU;
  cfg.link.capabilities = (uint8_t)(FB_CAP_TWIN | FB_CAP_METHODS | FB_CAP_C2D | (s.has_key ? FB_CAP_SIGN : 0u));
  cfg.link.window = TX_SLOTS;
  cfg.link.boot_id = (uint32_t)boot_id;
  cb.write = uart_write;
  cb.on_link = on_link;
  cb.on_status = on_status;
  cb.on_c2d = on_c2d;
  cb.on_twin = on_twin;
  cb.on_twin_result = on_twin_result;
  cb.on_desired = on_desired;
  cb.on_method = on_method;
  cb.on_sign = on_sign;
  cb.on_time = on_time;
  cb.on_telemetry_ack = on_telemetry_ack;
  cb.on_error = on_error;
  b.rx = s.rx;
  b.rx_size = sizeof s.rx;
  b.tx = s.tx;
  b.tx_slot_size = MAX_FRAME;
  b.tx_slots = TX_SLOTS;
  b.telemetry = s.tm;
  b.telemetry_slot_size = TM_SLOT;
  b.telemetry_slots = TM_SLOTS;
  if (fb_device_init(&s.dev, &cfg, &cb, &s, &b) != FB_OK) {
    fprintf(stderr, "fb_sim: bad configuration\n");
    return 2;
  }
  printf("{\"event\":\"ready\",\"device\":");
  json_cstr(device);
  printf(",\"auth\":%u,\"bootId\":%lu", cfg.auth, (unsigned long)cfg.link.boot_id);
  emit_end();

  while (!quit) {
    struct pollfd p[2];
    int n = 0;
    int port_index = -1;
    uint32_t now = now_ms();
    if (s.fd < 0 && (int32_t)(now - s.next_open) >= 0) {
      port_try_open(&s);
    }
    if (stdin_open) {
      p[n].fd = 0;
      p[n].events = POLLIN;
      p[n].revents = 0;
      n++;
    }
    if (s.fd >= 0) {
      port_index = n;
      p[n].fd = s.fd;
      p[n].events = POLLIN;
      p[n].revents = 0;
      n++;
    }
    if (poll(p, (nfds_t)n, 20) < 0 && errno != EINTR) {
      perror("poll");
      return 1;
    }
    now = now_ms();
    if (port_index >= 0 && p[port_index].revents) {
      uint8_t buf[512];
      ssize_t r = read(s.fd, buf, sizeof buf);
      if (r > 0) {
        fb_device_input(&s.dev, buf, (size_t)r, now);
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        port_close(&s); /* EIO / HUP: socat is gone; reopen the same path until it is back */
      }
    }
    if (stdin_open && (p[0].revents & (POLLIN | POLLHUP))) {
      char c;
      ssize_t r = read(0, &c, 1);
      if (r <= 0) {
        stdin_open = 0; /* stdin closed: keep running (a demo may pipe nothing) while the parent lives */
      } else if (c == '\n') {
        line[line_len] = '\0';
        if (line_len > 0 && line[line_len - 1] == '\r') {
          line[line_len - 1] = '\0';
        }
        quit = run_command(&s, line);
        line_len = 0;
      } else if (line_len + 1 < sizeof line) {
        line[line_len++] = c;
      }
    }
    fb_device_poll(&s.dev, now);
    drain(&s);
    if (!stdin_open && getppid() != parent) {
      /* Nobody can send quit any more: the process that started us is gone (a test runner that crashed). Without
       * this an orphan would hold the port and poll it forever. */
      break;
    }
  }
  emit_simple("bye");
  if (s.fd >= 0) {
    close(s.fd);
  }
  return 0;
}
