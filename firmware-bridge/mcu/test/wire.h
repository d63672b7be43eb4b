/* A simulated serial wire between two link ends, with seeded faults: drops, duplicates, corruption, noise. */
#ifndef FB_TEST_WIRE_H
#define FB_TEST_WIRE_H

#include "fb_link.h"
#include "runner.h"

#define WIRE_CAP 65536u
#define END_FRAME 600u

typedef struct faults {
  unsigned drop_pct;    /* a whole frame lost */
  unsigned dup_pct;     /* a frame delivered twice */
  unsigned corrupt_pct; /* one bit of one byte flipped */
  unsigned noise_pct;   /* random bytes (some 0x00, not always ending in one) before a frame */
  int cut;              /* everything lost */
  int hold;             /* nothing delivered yet: bytes wait on the wire */
} faults;

typedef struct end {
  fb_link link;
  uint8_t rx[END_FRAME];
  uint8_t tx[FB_WINDOW_MAX * END_FRAME];
  uint8_t out[WIRE_CAP]; /* written, not yet delivered */
  size_t out_len;
  faults f; /* faults on what this end writes */
  /* delivered application frames: the 32-bit counter each carries */
  uint32_t got[4096];
  unsigned n_got;
  int order_errors; /* a frame out of order, twice, or with a wrong body */
  int ups;
  int downs;
  unsigned last_down;
  unsigned send_on_up; /* frames to send from inside on_link(up) */
  uint32_t next_counter;
  unsigned hellos_written;
} end;

/* role FB_ROLE_MCU or FB_ROLE_GATEWAY; window and tx_slots 1..8; the rest default. */
void end_init(end *e, uint8_t role, uint8_t window, uint8_t tx_slots, uint32_t boot_id, uint8_t max_retries);

/* Move everything written by from to to, applying from's faults. */
void wire_transfer(end *from, end *to, fb_rng *rng, uint32_t now);

/* Run both ends for ms milliseconds of simulated time in 5 ms steps, each sending up to total frames (counters
 * 0..total-1) as the window allows; with a total, stop early once everything is sent and acknowledged. Returns
 * the time reached. */
uint32_t wire_run(end *a, end *b, fb_rng *rng, uint32_t now, uint32_t ms, unsigned a_total, unsigned b_total);

/* Send the next counted frame now; FB_OK or the link's refusal. */
int end_send(end *e);

#endif
