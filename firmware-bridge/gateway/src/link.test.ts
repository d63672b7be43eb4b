import { describe, expect, it } from 'vitest';
import { type BridgeMessage, decodeMessage, encodeFrame, encodeMessage, FrameDecoder, FrameType } from './frame/index';
import { Link, type LinkTimers } from './link';

/** Timers driven by the test: `advance(ms)` runs what falls due, in order. */
function manualTimers(): LinkTimers & { advance(ms: number): void } {
  let now = 1_000_000;
  let nextId = 1;
  const pending = new Map<number, { at: number; callback: () => void }>();
  return {
    now: () => now,
    setTimeout(callback, ms) {
      const id = nextId++;
      pending.set(id, { at: now + ms, callback });
      return id;
    },
    clearTimeout(handle) {
      pending.delete(handle as number);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...pending.entries()].filter(([, timer]) => timer.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        pending.delete(due[0]);
        now = due[1].at;
        due[1].callback();
      }
      now = end;
    },
  };
}

function setup(settings = {}) {
  const timers = manualTimers();
  const written = new FrameDecoder(65535);
  const sent: { type: number; seq: number; message?: BridgeMessage }[] = [];
  const delivered: BridgeMessage[] = [];
  const events: string[] = [];
  const link = new Link({
    timers,
    bootId: 7,
    settings,
    write: (bytes) => {
      for (const frame of written.push(bytes)) {
        let message: BridgeMessage | undefined;
        try {
          message = decodeMessage(frame.type, frame.payload);
        } catch {
          message = undefined;
        }
        sent.push({ type: frame.type, seq: frame.seq, ...(message ? { message } : {}) });
      }
    },
    events: {
      up: () => events.push('up'),
      down: (reason) => events.push(`down:${reason}`),
      message: (message) => delivered.push(message),
    },
  });
  const fromMcu = (message: BridgeMessage, seq = 0): void => {
    const { type, payload } = encodeMessage(message);
    link.receive(encodeFrame({ type, seq, payload }));
  };
  const hello = (window = 2): void =>
    fromMcu({ kind: 'hello', protocol: 1, capabilities: 0x0f, maxFrame: 256, window, bootId: 99 });
  return { link, timers, sent, delivered, events, fromMcu, hello };
}

const twinGet = (rid: number): BridgeMessage => ({ kind: 'twinGet', rid });
const time: BridgeMessage = { kind: 'time', unixMs: 5 };

describe('the gateway link (PROTOCOL.md §4)', () => {
  it('sends a flush byte and RESET when the port opens, and answers HELLO with HELLO_ACK', () => {
    const { link, sent, events, hello } = setup();
    link.opened();
    expect(sent.map((frame) => frame.type)).toEqual([FrameType.reset]);
    hello();
    expect(sent[1]?.message).toMatchObject({ kind: 'helloAck', protocol: 1, capabilities: 0x0f, bootId: 7 });
    expect(events).toEqual(['up']);
    expect(link.peer).toMatchObject({ bootId: 99, window: 2 });
  });

  it('answers a reliable frame with RESET while the link is down', () => {
    const { link, sent, fromMcu, delivered } = setup();
    link.opened();
    fromMcu(twinGet(1), 1);
    expect(sent.at(-1)?.type).toBe(FrameType.reset);
    expect(delivered).toEqual([]);
  });

  it('answers PING with RESET while the link is down (the MCU believes in a link this side lost) and with PONG once up', () => {
    const { link, sent, fromMcu, hello } = setup();
    link.opened();
    fromMcu({ kind: 'ping' });
    expect(sent.map((frame) => frame.type)).toEqual([FrameType.reset, FrameType.reset]);
    hello();
    fromMcu({ kind: 'ping' });
    expect(sent.at(-1)?.type).toBe(FrameType.pong);
  });

  it('delivers in order once, acknowledges duplicates with the last delivered seq, and drops frames after a gap', () => {
    const { link, sent, fromMcu, delivered, hello } = setup();
    link.opened();
    hello();
    fromMcu(twinGet(1), 1);
    fromMcu(twinGet(1), 1); // a retransmission
    fromMcu(twinGet(3), 3); // after a lost 2
    fromMcu(twinGet(2), 2);
    expect(delivered).toEqual([twinGet(1), twinGet(2)]);
    const acks = sent.filter((frame) => frame.type === FrameType.ack).map((frame) => frame.seq);
    expect(acks).toEqual([1, 1, 2]);
  });

  it('answers an unknown type with ERROR UnknownType and a bad payload with ERROR Malformed, both acknowledged', () => {
    const { link, sent, hello, delivered } = setup();
    link.opened();
    hello();
    link.receive(encodeFrame({ type: 0x55, seq: 1, payload: Uint8Array.of(1) }));
    link.receive(encodeFrame({ type: FrameType.twinGet, seq: 2, payload: new Uint8Array(0) }));
    expect(delivered).toEqual([]);
    expect(sent.filter((frame) => frame.type === FrameType.ack).map((frame) => frame.seq)).toEqual([1, 2]);
    const errors = sent.filter((frame) => frame.message?.kind === 'error').map((frame) => frame.message);
    expect(errors).toMatchObject([
      { kind: 'error', refSeq: 1, code: 1 },
      { kind: 'error', refSeq: 2, code: 2 },
    ]);
  });

  it("keeps at most the MCU's window in flight, queues the rest and sends it on cumulative ACKs", () => {
    const { link, sent, hello, fromMcu } = setup();
    link.opened();
    hello(2);
    expect([link.send(time), link.send(time), link.send(time)]).toEqual(['sent', 'sent', 'queued']);
    const reliable = () => sent.filter((frame) => frame.type === FrameType.time).map((frame) => frame.seq);
    expect(reliable()).toEqual([1, 2]);
    fromMcu({ kind: 'ack' }, 2); // cumulative: 1 and 2
    expect(reliable()).toEqual([1, 2, 3]);
  });

  it('retransmits go-back-N with a doubling timeout and takes the link down after maxRetries', () => {
    const { link, sent, hello, timers, events } = setup({ maxRetries: 3 });
    link.opened();
    hello(4);
    link.send(time);
    link.send(time);
    const times = () => sent.filter((frame) => frame.type === FrameType.time).map((frame) => frame.seq);
    timers.advance(249);
    expect(times()).toEqual([1, 2]);
    timers.advance(1);
    expect(times()).toEqual([1, 2, 1, 2]);
    timers.advance(499);
    expect(times()).toHaveLength(4);
    timers.advance(1);
    expect(times()).toHaveLength(6);
    timers.advance(1000);
    expect(times()).toHaveLength(8);
    timers.advance(2000);
    expect(events).toEqual(['up', 'down:retries']);
    expect(sent.at(-1)?.type).toBe(FrameType.reset);
    expect(link.send(time)).toBe('down');
  });

  it('pings after heartbeatMs of silence and goes down after 3 x heartbeatMs without a frame', () => {
    const { link, sent, hello, timers, events, fromMcu } = setup();
    link.opened();
    hello();
    timers.advance(2001);
    expect(sent.filter((frame) => frame.type === FrameType.ping).length).toBeGreaterThanOrEqual(1);
    fromMcu({ kind: 'pong' });
    timers.advance(5000);
    expect(events).toEqual(['up']);
    timers.advance(1500);
    expect(events).toEqual(['up', 'down:heartbeat']);
  });

  it('restarts sequences at every HELLO and refuses frames larger than the MCU maxFrame', () => {
    const { link, sent, hello, timers, fromMcu } = setup();
    link.opened();
    hello();
    link.send(time);
    fromMcu({ kind: 'ack' }, 1);
    timers.advance(1000);
    hello();
    link.send(time);
    expect(sent.filter((frame) => frame.type === FrameType.time).map((frame) => frame.seq)).toEqual([1, 1]);
    expect(link.send({ kind: 'twinDesired', version: 1, json: 'x'.repeat(300) })).toBe('tooLarge');
  });

  it('answers only the first of identical HELLOs queued while the port was unread, and a later repeat again', () => {
    const { link, sent, events, hello, fromMcu, delivered, timers } = setup();
    link.opened();
    hello();
    hello();
    hello();
    expect(sent.filter((frame) => frame.type === FrameType.helloAck)).toHaveLength(1);
    expect(events).toEqual(['up']);
    // The session the first HELLO opened goes on: the MCU's frame 1 is delivered and the gateway's frame 1 stays
    // in flight until the MCU acknowledges it.
    link.send(time);
    fromMcu(twinGet(1), 1);
    expect(delivered).toEqual([twinGet(1)]);
    fromMcu({ kind: 'ack' }, 1);
    // A HELLO repeated after the MCU's interval (its HELLO_ACK was lost) or from a rebooted MCU is answered.
    timers.advance(1000);
    hello();
    expect(sent.filter((frame) => frame.type === FrameType.helloAck)).toHaveLength(2);
    fromMcu({ kind: 'hello', protocol: 1, capabilities: 0x0f, maxFrame: 256, window: 2, bootId: 100 });
    expect(sent.filter((frame) => frame.type === FrameType.helloAck)).toHaveLength(3);
    expect(events).toEqual(['up', 'down:reset', 'up', 'down:reset', 'up']);
  });
});
