/* The link layer (PROTOCOL.md 4): two ends wired back to back through a simulated wire. */
#include <string.h>

#include "fb_frame.h"
#include "wire.h"

static end A; /* the MCU */
static end B; /* the gateway */

static void fresh(uint8_t a_window, uint8_t b_window, uint8_t max_retries) {
  memset(&A.f, 0, sizeof A.f);
  memset(&B.f, 0, sizeof B.f);
  end_init(&A, FB_ROLE_MCU, a_window, 4, 0xA0000001u, max_retries);
  end_init(&B, FB_ROLE_GATEWAY, b_window, 4, 0xB0000001u, max_retries);
}

/* A wire this lossy loses three PING/PONG exchanges in a row now and then; a longer heartbeat keeps the 3 x
 * heartbeatMs silence rule from taking the link down in the middle of the count. */
static void patient_heartbeat(void) {
  A.link.cfg.heartbeat_ms = 10000;
  B.link.cfg.heartbeat_ms = 10000;
}

/* Link sessions counted after the handshake on a faulty wire. */
static int handshake_ups_a, handshake_downs_a, handshake_ups_b, handshake_downs_b;

/* The handshake on a faulty wire, before any data: a corrupted HELLO_ACK leaves the MCU down, its next HELLO
 * restarts the gateway's session, and frames sent meanwhile would be dropped with that session (the application
 * re-sends them, PROTOCOL.md 4.1; the wire tests have no application). The data phase then checks that the link
 * never restarts while data flows. */
static uint32_t lossy_handshake(fb_rng *rng, uint32_t now) {
  now = wire_run(&A, &B, rng, now, 30000, 0, 0);
  handshake_ups_a = A.ups;
  handshake_downs_a = A.downs;
  handshake_ups_b = B.ups;
  handshake_downs_b = B.downs;
  return now;
}

static int same_sessions(void) {
  return A.ups == handshake_ups_a && A.downs == handshake_downs_a && B.ups == handshake_ups_b &&
         B.downs == handshake_downs_b;
}

static int in_order(const end *e, unsigned total) {
  unsigned i;
  if (e->order_errors || e->n_got != total) {
    printf("    got %u of %u, %d bad\n", e->n_got, total, e->order_errors);
    return 0;
  }
  for (i = 0; i < total; i++) {
    if (e->got[i] != i) {
      printf("    frame %u carried %lu\n", i, (unsigned long)e->got[i]);
      return 0;
    }
  }
  return 1;
}

static void handshake_brings_both_ends_up_with_each_others_parameters(void) {
  fb_rng rng = {1};
  uint32_t now = 1000;
  fresh(4, 8, 0);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 100, 0, 0);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link));
  /* The gateway's RESET on opening crosses the MCU's first HELLO. The MCU does not answer it with a second HELLO
   * (its first is answered already): one HELLO, one HELLO_ACK, one session on each side (PROTOCOL.md 4.1). */
  CHECK_MSG(A.ups == 1 && A.downs == 0 && B.ups == 1 && B.downs == 0 && A.hellos_written == 1,
            "A %d/%d B %d/%d reasons %u %u, %u HELLOs", A.ups, A.downs, B.ups, B.downs, A.last_down, B.last_down,
            A.hellos_written);
  CHECK(B.link.peer.boot_id == 0xA0000001u && B.link.peer.capabilities == 0x0F && B.link.peer.window == 4);
  CHECK(A.link.peer.max_frame == END_FRAME && A.link.peer.window == 8 && A.link.peer.capabilities == 0x0E);
  now = wire_run(&A, &B, &rng, now, 500, 20, 20);
  CHECK(in_order(&A, 20) && in_order(&B, 20));
}

static void the_mcu_repeats_hello_until_the_gateway_answers(void) {
  fb_rng rng = {2};
  uint32_t now = 0;
  fresh(4, 4, 0);
  fb_link_start(&A.link, now);
  A.f.hold = 1; /* the gateway is not running: HELLOs wait in the PTY */
  now = wire_run(&A, &B, &rng, now, 3500, 0, 0);
  CHECK(!fb_link_is_up(&A.link) && A.out_len > 0);
  fb_link_start(&B.link, now);
  A.f.hold = 0;
  wire_transfer(&A, &B, &rng, now);
  CHECK(A.hellos_written == 4); /* at start, then every helloIntervalMs */
  now = wire_run(&A, &B, &rng, now, 200, 0, 0);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link) && A.ups == 1);
}

static void queued_hellos_answered_twice_lose_and_repeat_no_mcu_frame(void) {
  /* PROTOCOL.md 4.1: several HELLOs queued while the gateway was away are all answered; the MCU is up at the
   * first HELLO_ACK and already sending, and the later HELLO_ACKs restart only its receive side. */
  fb_rng rng = {3};
  uint32_t now = 0;
  fresh(4, 4, 0);
  A.send_on_up = 3; /* as fb_device does: IDENTITY and re-sent telemetry from inside on_link */
  B.send_on_up = 1; /* as the gateway does: TIME after each link-up */
  fb_link_start(&A.link, now);
  A.f.hold = 1;
  now = wire_run(&A, &B, &rng, now, 3500, 0, 0);
  fb_link_start(&B.link, now);
  A.f.hold = 0;
  now = wire_run(&A, &B, &rng, now, 3000, 40, 0);
  CHECK(A.ups == 1 && A.downs == 0);
  CHECK_MSG(B.ups >= 4 && B.downs == B.ups - 1 && B.last_down == FB_DOWN_HELLO, "B %d/%d", B.ups, B.downs);
  CHECK(in_order(&B, 40));
  /* The gateway's own frames: each of its sessions sent one; the last one's is delivered, earlier ones may be. */
  CHECK(A.n_got >= 1 && A.order_errors == 0);
}

static void a_lossy_wire_delivers_every_reliable_frame_once_and_in_order(void) {
  fb_rng rng = {0x5EEDu};
  uint32_t now = 0;
  fresh(4, 4, 30);
  patient_heartbeat();
  A.f.drop_pct = B.f.drop_pct = 10;
  A.f.dup_pct = B.f.dup_pct = 5;
  A.f.corrupt_pct = B.f.corrupt_pct = 5;
  A.f.noise_pct = B.f.noise_pct = 5;
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = lossy_handshake(&rng, now);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link));
  now = wire_run(&A, &B, &rng, now, 400000, 500, 500);
  CHECK_MSG(same_sessions(), "the link restarted: A %d/%d B %d/%d reasons %u %u", A.ups, A.downs, B.ups, B.downs,
            A.last_down, B.last_down);
  CHECK(in_order(&B, 500) && in_order(&A, 500));
  CHECK(A.link.stats.tx_retransmits > 0 && B.link.stats.rx_duplicates > 0 && B.link.stats.rx_bad > 0);
  CHECK(A.link.tx_count == 0 && B.link.tx_count == 0);
}

static void noise_between_frames_costs_retransmissions_not_frames(void) {
  fb_rng rng = {0xBADu};
  uint32_t now = 0;
  fresh(4, 4, 20);
  patient_heartbeat();
  A.f.noise_pct = B.f.noise_pct = 40;
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = lossy_handshake(&rng, now);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link));
  now = wire_run(&A, &B, &rng, now, 200000, 300, 300);
  CHECK(in_order(&B, 300) && in_order(&A, 300));
  CHECK_MSG(same_sessions() && B.link.stats.rx_bad > 0, "A %d/%d B %d/%d", A.ups, A.downs, B.ups, B.downs);
}

static void the_gateway_re_handshakes_when_the_mcu_reboots(void) {
  fb_rng rng = {4};
  uint32_t now = 0;
  fresh(4, 4, 0);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 2000, 10, 10);
  CHECK(in_order(&B, 10) && in_order(&A, 10));
  /* Reboot: a new link state and boot id, frames counted from 0 again. */
  end_init(&A, FB_ROLE_MCU, 4, 4, 0xA0000002u, 0);
  B.n_got = 0;
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 3000, 10, 10);
  CHECK_MSG(B.last_down == FB_DOWN_HELLO && B.link.peer.boot_id == 0xA0000002u, "B %d/%d %u", B.ups, B.downs,
            B.last_down);
  CHECK(fb_link_is_up(&A.link) && A.ups == 1);
  CHECK(in_order(&B, 10));
}

static void the_mcu_re_handshakes_when_the_gateway_restarts(void) {
  fb_rng rng = {5};
  uint32_t now = 0;
  fresh(4, 4, 0);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 1000, 5, 0);
  CHECK(in_order(&B, 5));
  end_init(&B, FB_ROLE_GATEWAY, 4, 4, 0xB0000002u, 0);
  fb_link_start(&B.link, now); /* RESET on opening the port */
  now = wire_run(&A, &B, &rng, now, 2000, 0, 0);
  CHECK(A.downs == 1 && A.last_down == FB_DOWN_RESET && A.ups == 2 && fb_link_is_up(&B.link));
  CHECK(A.link.peer.boot_id == 0xB0000002u);
}

static void a_reliable_frame_while_down_is_answered_with_reset(void) {
  fb_rng rng = {6};
  uint32_t now = 0;
  fresh(4, 4, 0);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 500, 0, 0);
  /* The gateway loses its state silently (no RESET): the MCU's next frame gets RESET, then HELLO, link up. */
  end_init(&B, FB_ROLE_GATEWAY, 4, 4, 0xB0000003u, 0);
  CHECK(end_send(&A) == FB_OK);
  now = wire_run(&A, &B, &rng, now, 2000, 0, 0);
  CHECK(A.downs == 1 && A.last_down == FB_DOWN_RESET && fb_link_is_up(&A.link) && fb_link_is_up(&B.link));
}

static void a_ping_while_down_is_answered_with_reset_so_an_idle_mcu_re_handshakes(void) {
  fb_rng rng = {12};
  uint32_t now = 0;
  fresh(4, 4, 0);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 500, 0, 0);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link) && A.ups == 1);
  /* The gateway restarts and its RESET is lost (or it never sent one). The MCU has nothing to send: only its
   * heartbeat PINGs reach the gateway. Answered PONG, they would keep the MCU up against a gateway with no link,
   * deaf to every C2D message and method, for as long as it stays idle. */
  end_init(&B, FB_ROLE_GATEWAY, 4, 4, 0xB0000004u, 0);
  now = wire_run(&A, &B, &rng, now, 10000, 0, 0);
  CHECK_MSG(A.downs == 1 && A.last_down == FB_DOWN_RESET && A.ups == 2, "A %d/%d reason %u", A.ups, A.downs,
            A.last_down);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link));
  CHECK(end_send(&B) == FB_OK); /* and the gateway reaches the MCU again */
  now = wire_run(&A, &B, &rng, now, 500, 0, 0);
  CHECK(A.n_got == 1 && B.link.tx_count == 0);
}

static void heartbeat_keeps_an_idle_link_up_and_silence_takes_it_down(void) {
  fb_rng rng = {7};
  uint32_t now = 0;
  uint32_t rx_before;
  unsigned hellos;
  fresh(4, 4, 0);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 500, 0, 0);
  rx_before = A.link.stats.rx_frames;
  now = wire_run(&A, &B, &rng, now, 20000, 0, 0); /* idle: PING / PONG only */
  CHECK_MSG(A.downs == 0 && A.link.stats.rx_frames > rx_before + 5, "A %d/%d B %d/%d rx %lu -> %lu", A.ups, A.downs,
            B.ups, B.downs, (unsigned long)rx_before, (unsigned long)A.link.stats.rx_frames);
  A.f.cut = B.f.cut = 1; /* cable pulled */
  now = wire_run(&A, &B, &rng, now, 6500, 0, 0); /* 3 x heartbeatMs and a little */
  CHECK_MSG(A.downs == 1 && A.last_down == FB_DOWN_SILENCE && B.last_down == FB_DOWN_SILENCE, "A %d/%d %u B %d/%d %u",
            A.ups, A.downs, A.last_down, B.ups, B.downs, B.last_down);
  hellos = A.hellos_written;
  now = wire_run(&A, &B, &rng, now, 3000, 0, 0);
  CHECK(A.hellos_written >= hellos + 2); /* HELLO again, every second */
  A.f.cut = B.f.cut = 0;
  now = wire_run(&A, &B, &rng, now, 1500, 0, 0);
  CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link) && A.ups == 2);
}

static void max_retries_without_an_ack_takes_the_link_down(void) {
  fb_rng rng = {8};
  uint32_t now = 0;
  fresh(4, 4, 3);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 300, 0, 0);
  B.f.cut = 1; /* ACKs lost */
  CHECK(end_send(&A) == FB_OK);
  /* 250 + 500 + 1000 + 2000 ms: three retransmissions, then down at the fourth timeout. */
  now = wire_run(&A, &B, &rng, now, 3600, 0, 0);
  CHECK(A.downs == 0 && A.link.stats.tx_retransmits == 3);
  now = wire_run(&A, &B, &rng, now, 400, 0, 0);
  CHECK(A.downs == 1 && A.last_down == FB_DOWN_RETRIES && A.link.tx_count == 0);
  CHECK(B.n_got == 1); /* delivered once despite three copies */
}

static void a_full_window_refuses_with_busy_and_a_down_link_with_link_down(void) {
  fb_rng rng = {9};
  uint32_t now = 0;
  uint8_t big[END_FRAME];
  size_t cap = 0;
  fresh(4, 2, 0); /* the gateway accepts 2 ahead */
  CHECK(fb_link_send(&A.link, 0x20, big, 1) == FB_ERR_LINK_DOWN);
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 300, 0, 0);
  A.f.cut = 1;
  CHECK(end_send(&A) == FB_OK && end_send(&A) == FB_OK);
  CHECK(end_send(&A) == FB_ERR_BUSY && !fb_link_can_send(&A.link) && fb_link_payload_buffer(&A.link, &cap) == 0);
  CHECK(fb_link_send(&A.link, FB_T_PING, big, 0) == FB_ERR_ARG);
  A.f.cut = 0;
  now = wire_run(&A, &B, &rng, now, 600, 0, 0);
  CHECK(fb_link_can_send(&A.link) && fb_link_payload_buffer(&A.link, &cap) != 0);
  CHECK(cap == END_FRAME - FB_FRAME_OVERHEAD);
  memset(big, 0x55, sizeof big);
  CHECK(fb_link_send(&A.link, 0x20, big, cap + 1) == FB_ERR_TOO_LARGE);
  CHECK(B.n_got == 2 && in_order(&B, 2));
}

static void sequence_numbers_wrap_from_65535_to_1(void) {
  fb_rng rng = {10};
  uint32_t now = 0;
  fresh(4, 4, 0);
  patient_heartbeat();
  fb_link_start(&B.link, now);
  fb_link_start(&A.link, now);
  now = wire_run(&A, &B, &rng, now, 300, 0, 0);
  /* Jump both counters close to the wrap, as if 65530 frames had gone by. */
  A.link.tx_next_seq = 65530;
  A.link.tx_base_seq = 65530;
  B.link.rx_expected = 65530;
  A.f.drop_pct = 20;
  now = wire_run(&A, &B, &rng, now, 60000, 30, 0);
  CHECK_MSG(in_order(&B, 30) && A.downs == 0, "A %d/%d reason %u", A.ups, A.downs, A.last_down);
  CHECK(A.link.tx_next_seq == 65530u + 30u - 65535u);
}

/* One corruption of byte pos of what `from` has written and not yet delivered: variant 0..7 flips that bit, 8 sets
 * the byte to 0x00 (the frame splits in two), 9 to 0xFF. Returns 0 when the variant leaves the byte as it was. */
static int corrupt_pending(end *from, size_t pos, int variant) {
  uint8_t orig = from->out[pos];
  uint8_t b = variant < 8 ? (uint8_t)(orig ^ (1u << variant)) : variant == 8 ? 0x00 : 0xFF;
  from->out[pos] = b;
  return b != orig;
}

/* Issue #12: every frame corrupted at every byte, "CRC rejects it, the link recovers". On a live link, the first
 * transmission of a data frame (MCU -> gateway), of its ACK (gateway -> MCU), and of a gateway data frame are
 * corrupted at each byte in turn, the delimiter included, in ten ways each. Every time the receiver must drop it,
 * the retransmission must repair it, the frame must be delivered exactly once and in order, and the link must stay
 * up (no re-handshake) and carry the next frame. */
static void every_frame_corrupted_at_every_byte_on_a_live_link_is_repaired_by_retransmission(void) {
  int direction;
  unsigned long cases = 0;
  for (direction = 0; direction < 3; direction++) {
    size_t pos;
    size_t wire_len = 1;
    for (pos = 0; pos < wire_len; pos++) {
      int v;
      for (v = 0; v < 10; v++) {
        fb_rng rng = {11};
        uint32_t now = 0;
        end *sender;
        end *receiver;
        end *corrupted;
        int b_downs;
        fresh(4, 4, 0);
        fb_link_start(&B.link, now);
        fb_link_start(&A.link, now);
        now = wire_run(&A, &B, &rng, now, 100, 0, 0);
        CHECK(fb_link_is_up(&A.link) && fb_link_is_up(&B.link) && A.out_len == 0 && B.out_len == 0);
        b_downs = B.downs; /* the opening RESET crossing the first HELLO re-handshakes the gateway once */
        sender = direction == 2 ? &B : &A;
        receiver = direction == 2 ? &A : &B;
        sender->next_counter = 41; /* a 121-byte payload with zero bytes and non-zero runs */
        CHECK(end_send(sender) == FB_OK);
        corrupted = direction == 1 ? receiver : sender;
        if (direction == 1) {
          wire_transfer(sender, receiver, &rng, now); /* the frame arrives; the receiver's ACK is now pending */
        }
        wire_len = corrupted->out_len;
        CHECK(pos < wire_len && corrupted->out[wire_len - 1] == 0);
        if (!corrupt_pending(corrupted, pos, v)) {
          continue;
        }
        cases++;
        now = wire_run(&A, &B, &rng, now, 3000, 0, 0);
        CHECK_MSG(receiver->n_got == 1 && receiver->got[0] == 41 && receiver->order_errors == 0 &&
                      sender->link.tx_count == 0,
                  "direction %d, byte %u, variant %d: got %u, in flight %u", direction, (unsigned)pos, v,
                  receiver->n_got, sender->link.tx_count);
        CHECK_MSG(A.ups == 1 && A.downs == 0 && B.downs == b_downs, "direction %d, byte %u, variant %d: the link restarted",
                  direction, (unsigned)pos, v);
        CHECK(end_send(sender) == FB_OK);
        now = wire_run(&A, &B, &rng, now, 1000, 0, 0);
        CHECK(receiver->n_got == 2 && receiver->got[1] == 42 && sender->link.tx_count == 0);
      }
    }
  }
  CHECK_MSG(cases > 2u * 121u * 9u + 9u * 9u, "%lu cases", cases); /* two data frames, one ACK */
}

static void init_refuses_bad_buffers(void) {
  fb_link l;
  fb_link_config cfg;
  fb_link_callbacks cb;
  uint8_t rx[64];
  uint8_t tx[64];
  memset(&cfg, 0, sizeof cfg);
  memset(&cb, 0, sizeof cb);
  CHECK(fb_link_init(&l, &cfg, &cb, 0, rx, sizeof rx, tx, sizeof tx, 1) == FB_ERR_ARG); /* no write */
  cb.write = (fb_write_fn)0;
  CHECK(fb_link_init(&l, &cfg, &cb, 0, rx, 63, tx, sizeof tx, 1) == FB_ERR_ARG);
}

const fb_test link_tests[] = {
    {"handshake brings both ends up with each other's parameters",
     handshake_brings_both_ends_up_with_each_others_parameters},
    {"the MCU repeats HELLO until the gateway answers", the_mcu_repeats_hello_until_the_gateway_answers},
    {"queued HELLOs answered several times lose and repeat no MCU frame",
     queued_hellos_answered_twice_lose_and_repeat_no_mcu_frame},
    {"a lossy wire (drops, duplicates, corruption, noise) delivers every reliable frame once and in order",
     a_lossy_wire_delivers_every_reliable_frame_once_and_in_order},
    {"noise between frames costs retransmissions, not frames", noise_between_frames_costs_retransmissions_not_frames},
    {"the gateway re-handshakes when the MCU reboots", the_gateway_re_handshakes_when_the_mcu_reboots},
    {"the MCU re-handshakes when the gateway restarts", the_mcu_re_handshakes_when_the_gateway_restarts},
    {"a reliable frame while down is answered with RESET, then HELLO",
     a_reliable_frame_while_down_is_answered_with_reset},
    {"a PING while down is answered with RESET, so an idle MCU re-handshakes with a gateway that restarted",
     a_ping_while_down_is_answered_with_reset_so_an_idle_mcu_re_handshakes},
    {"heartbeat keeps an idle link up; silence takes it down, HELLO brings it back",
     heartbeat_keeps_an_idle_link_up_and_silence_takes_it_down},
    {"maxRetries retransmissions without an ACK take the link down",
     max_retries_without_an_ack_takes_the_link_down},
    {"a full window refuses with BUSY, a down link with LINK_DOWN, an oversize frame with TOO_LARGE",
     a_full_window_refuses_with_busy_and_a_down_link_with_link_down},
    {"sequence numbers wrap from 65535 to 1", sequence_numbers_wrap_from_65535_to_1},
    {"every frame corrupted at every byte on a live link: dropped, retransmitted, delivered once, link stays up",
     every_frame_corrupted_at_every_byte_on_a_live_link_is_repaired_by_retransmission},
    {"init refuses bad buffers", init_refuses_bad_buffers},
    {0, 0},
};
