/**
 * The gateway side of the link layer (PROTOCOL.md §4): the HELLO / HELLO_ACK handshake, `RESET` when a port
 * opens, in-order delivery with duplicate suppression, cumulative ACKs, go-back-N retransmission with a doubling
 * timeout, the peer's window and `maxFrame`, and the heartbeat. Bytes in (`receive`), bytes out (`write`);
 * timers and the clock are injected so that tests drive time themselves.
 */
import {
  type BridgeMessage,
  decodeMessage,
  ErrorCode,
  encodeFrame,
  encodeMessage as encodeMessageFrame,
  FrameDecoder,
  type HelloFields,
  isReliableType,
  kindOfFrameType,
  MalformedPayloadError,
  minFrameSize,
  protocolVersion,
} from './frame/index';

/** Timers and clock of a link; the defaults are the global ones. */
export interface LinkTimers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The system's timers. */
export const systemTimers: LinkTimers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, ms);
    // A gateway's timers must not keep a process alive that has nothing else to do.
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Link parameters (PROTOCOL.md §6 for the defaults). */
export interface LinkSettings {
  /** The largest decoded frame this side receives, announced in `HELLO_ACK`. Default 4096. */
  readonly maxFrame: number;
  /** How many unacknowledged frames this side accepts from the MCU, announced in `HELLO_ACK`. Default 8. */
  readonly window: number;
  /** First retransmission timeout; doubles at each retry up to {@link LinkSettings.maxRetransmitMs}. Default 250. */
  readonly retransmitMs: number;
  /** Cap of the doubling timeout. Default 2000. */
  readonly maxRetransmitMs: number;
  /** Retransmissions of one frame before the link is down. Default 5. */
  readonly maxRetries: number;
  /** PING after this long without sending; link down after 3 x this long without receiving. Default 2000. */
  readonly heartbeatMs: number;
  /** Reliable frames queued behind a full window before `send` refuses with `'busy'`. Default 32. */
  readonly queueLimit: number;
  /** The capability bits this gateway supports (echoed in `HELLO_ACK` where the MCU set them). Default all four. */
  readonly capabilities: number;
  /**
   * A `HELLO` identical to the one that opened the current link, arriving less than this long after it, is a copy
   * the MCU queued while nobody read the port, and is ignored (PROTOCOL.md §4.1). Default 500 (half the MCU's
   * default `helloIntervalMs`, so a `HELLO` repeated because its `HELLO_ACK` was lost is still answered).
   */
  readonly repeatedHelloMs: number;
}

/** The defaults of {@link LinkSettings}. */
export const defaultLinkSettings: LinkSettings = {
  maxFrame: 4096,
  window: 8,
  retransmitMs: 250,
  maxRetransmitMs: 2000,
  maxRetries: 5,
  heartbeatMs: 2000,
  queueLimit: 32,
  capabilities: 0x0f,
  repeatedHelloMs: 500,
};

/** What the link reports to the session above it. Handlers must not throw. */
export interface LinkEvents {
  /** The link is up (after every `HELLO`); `peer` is the MCU's `HELLO`. */
  up(peer: HelloFields): void;
  /** The link went down: `reason` says why (`retries`, `heartbeat`, `reset`, `closed`). */
  down(reason: LinkDownReason): void;
  /** A reliable application message, delivered once and in order. */
  message(message: BridgeMessage, seq: number): void;
}

/** Why a link went down. */
export type LinkDownReason = 'retries' | 'heartbeat' | 'reset' | 'closed';

/** What {@link Link.send} did with a message. */
export type SendResult = 'sent' | 'queued' | 'down' | 'busy' | 'tooLarge';

interface InFlight {
  readonly seq: number;
  readonly wire: Uint8Array;
}

/** The sequence number after `seq` in the 1..65535 cycle (§4.2). */
export function nextSeq(seq: number): number {
  return seq >= 0xffff ? 1 : seq + 1;
}

function previousSeq(seq: number): number {
  return seq <= 1 ? 0xffff : seq - 1;
}

/** How many numbers before `expected` count as duplicates (§4.2). */
const duplicateSpan = 8;

/** One link to one MCU over one serial port. */
export class Link {
  readonly #settings: LinkSettings;
  readonly #timers: LinkTimers;
  readonly #write: (bytes: Uint8Array) => void;
  readonly #events: LinkEvents;
  readonly #decoder: FrameDecoder;
  readonly #bootId: number;
  #up = false;
  #peer: HelloFields | undefined;
  /** The `HELLO` that opened the current link, as its fields in one string, and when it arrived. */
  #linkHello: { readonly key: string; readonly at: number } | undefined;
  #txSeq = 1;
  #expected = 1;
  #inFlight: InFlight[] = [];
  #queue: Uint8Array[] = [];
  #retries = 0;
  #retransmitTimer: unknown;
  #heartbeatTimer: unknown;
  #lastSent = 0;
  #lastReceived = 0;
  #open = false;

  /** @throws RangeError when a setting is out of range. */
  constructor(options: {
    readonly write: (bytes: Uint8Array) => void;
    readonly events: LinkEvents;
    readonly settings?: Partial<LinkSettings>;
    readonly timers?: LinkTimers;
    readonly bootId?: number;
  }) {
    this.#settings = { ...defaultLinkSettings, ...options.settings };
    const { maxFrame, window } = this.#settings;
    if (!Number.isInteger(maxFrame) || maxFrame < 64 || maxFrame > 0xffff) {
      throw new RangeError(`maxFrame ${maxFrame} is not in 64..65535`);
    }
    if (!Number.isInteger(window) || window < 1 || window > 8) throw new RangeError(`window ${window} is not in 1..8`);
    this.#timers = options.timers ?? systemTimers;
    this.#write = options.write;
    this.#events = options.events;
    this.#decoder = new FrameDecoder(maxFrame);
    this.#bootId = options.bootId ?? Math.floor(Math.random() * 0x1_0000_0000);
  }

  /** Whether the link is up. */
  get isUp(): boolean {
    return this.#up;
  }

  /** The MCU's `HELLO` of the current link, while it is up. */
  get peer(): HelloFields | undefined {
    return this.#up ? this.#peer : undefined;
  }

  /** Frames dropped by the decoder so far (bad CRC, bad COBS, oversize). */
  get droppedFrames(): number {
    return this.#decoder.stats.dropped + this.#decoder.stats.oversize;
  }

  /**
   * The port (re)opened: flush the MCU's receiver with a lone `0x00` and send `RESET`, so that an MCU that was
   * already running re-handshakes at once (§4.1).
   */
  opened(): void {
    this.#open = true;
    this.#decoder.reset();
    this.#lastReceived = this.#timers.now();
    this.#writeRaw(Uint8Array.of(0));
    this.#sendLink('reset');
  }

  /** The port closed (cable pull): the link is down until the next `HELLO` on a reopened port. */
  closed(): void {
    this.#open = false;
    this.#linkDown('closed', false);
    this.#decoder.reset();
  }

  /** Stops the timers for good. */
  dispose(): void {
    this.#open = false;
    this.#clearTimers();
    this.#up = false;
    this.#inFlight = [];
    this.#queue = [];
  }

  /** Bytes from the port. */
  receive(bytes: Uint8Array): void {
    for (const frame of this.#decoder.push(bytes)) {
      this.#lastReceived = this.#timers.now();
      this.#onFrame(frame.type, frame.seq, frame.payload);
    }
  }

  /**
   * Sends a reliable application message: now when the window has room, else queued (bounded).
   * @returns `'down'` when the link is down, `'busy'` when the queue is full, `'tooLarge'` when the frame exceeds
   * the MCU's `maxFrame`; the message is not sent then.
   * @throws RangeError when a field of `message` does not fit its encoding.
   */
  send(message: BridgeMessage): SendResult {
    if (!this.#up || !this.#peer) return 'down';
    const encoded = encodeMessageFrame(message);
    if (!isReliableType(encoded.type)) throw new RangeError(`${message.kind} is a link frame, not an application one`);
    if (encoded.payload.length + minFrameSize > this.#peer.maxFrame) return 'tooLarge';
    if (this.#inFlight.length >= this.#peer.window || this.#queue.length > 0) {
      if (this.#queue.length >= this.#settings.queueLimit) return 'busy';
      this.#queue.push(packApplication(encoded.type, encoded.payload));
      return 'queued';
    }
    this.#transmit(packApplication(encoded.type, encoded.payload));
    return 'sent';
  }

  /** Whether a payload of `size` bytes fits in one frame to the MCU. */
  fits(size: number): boolean {
    return this.#peer !== undefined && size + minFrameSize <= this.#peer.maxFrame;
  }

  #transmit(frameWithoutSeq: Uint8Array): void {
    // The sequence number is set at transmission time: queued frames take theirs when they leave the queue.
    const seq = this.#txSeq;
    this.#txSeq = nextSeq(seq);
    const type = frameWithoutSeq[0] as number;
    const payload = frameWithoutSeq.subarray(1);
    const wire = encodeFrame({ type, seq, payload });
    this.#inFlight.push({ seq, wire });
    this.#writeRaw(wire);
    if (this.#inFlight.length === 1) this.#armRetransmit();
  }

  #onFrame(type: number, seq: number, payload: Uint8Array): void {
    if (!isReliableType(type)) {
      this.#onLinkFrame(type, seq, payload);
      return;
    }
    if (!this.#up) {
      // §4.1: a reliable frame while the link is down is answered RESET and dropped.
      this.#sendLink('reset');
      return;
    }
    if (seq !== this.#expected) {
      let back = previousSeq(this.#expected);
      for (let step = 0; step < duplicateSpan; step++) {
        if (seq === back) {
          this.#sendAck(previousSeq(this.#expected));
          return;
        }
        back = previousSeq(back);
      }
      return; // after a lost frame: dropped, no ACK; the sender goes back
    }
    this.#expected = nextSeq(this.#expected);
    this.#sendAck(seq);
    const kind = kindOfFrameType(type);
    if (kind === undefined) {
      this.#sendError(seq, ErrorCode.unknownType, `unknown type 0x${type.toString(16)}`);
      return;
    }
    let message: BridgeMessage;
    try {
      message = decodeMessage(type, payload);
    } catch (error) {
      if (!(error instanceof MalformedPayloadError)) throw error;
      this.#sendError(seq, ErrorCode.malformed, `${kind}: ${error.message}`);
      return;
    }
    this.#events.message(message, seq);
  }

  #onLinkFrame(type: number, _seq: number, payload: Uint8Array): void {
    const kind = kindOfFrameType(type);
    if (kind === undefined) return; // an unknown link frame: unreliable, nothing to acknowledge
    let message: BridgeMessage;
    try {
      message = decodeMessage(type, payload);
    } catch (error) {
      if (!(error instanceof MalformedPayloadError)) throw error;
      return;
    }
    switch (message.kind) {
      case 'hello':
        this.#onHello(message);
        break;
      case 'reset':
        // The MCU has no link with us: it will send HELLO (§4.1).
        this.#linkDown('reset', false);
        break;
      case 'ack':
        this.#onAck(_seq);
        break;
      case 'ping':
        // §4.4: with the link down here, the MCU believes in a link this side no longer has (its RESET was lost, the
        // gateway restarted): a PONG would keep it believing so, deaf to C2D and methods while it sends nothing
        // reliable. RESET makes it handshake again.
        this.#sendLink(this.#up ? 'pong' : 'reset');
        break;
      default:
        // PONG only proves liveness (already counted); a HELLO_ACK from an MCU is meaningless to the gateway.
        break;
    }
  }

  #onHello(hello: HelloFields): void {
    if (hello.protocol !== protocolVersion) return;
    // Copies of one HELLO queued while nobody read the port arrive together when the gateway opens it. Answering
    // each would start a session per copy, and the MCU's ACKs for the first session's frames would acknowledge
    // the later session's frames of the same numbers (PROTOCOL.md §4.1): only the first is answered.
    const key = `${hello.capabilities},${hello.maxFrame},${hello.window},${hello.bootId}`;
    const now = this.#timers.now();
    if (this.#up && this.#linkHello?.key === key && now - this.#linkHello.at < this.#settings.repeatedHelloMs) {
      return;
    }
    this.#linkHello = { key, at: now };
    const window = Math.min(Math.max(hello.window, 1), 8);
    const maxFrame = Math.max(hello.maxFrame, 64);
    this.#sendLink('helloAck', {
      protocol: protocolVersion,
      capabilities: hello.capabilities & this.#settings.capabilities,
      maxFrame: this.#settings.maxFrame,
      window: this.#settings.window,
      bootId: this.#bootId,
    });
    // Every HELLO_ACK restarts both sides' sequences, so every HELLO is a new link (a repeated one included).
    const wasUp = this.#up;
    this.#up = true;
    this.#peer = { ...hello, window, maxFrame };
    this.#txSeq = 1;
    this.#expected = 1;
    this.#inFlight = [];
    this.#queue = [];
    this.#retries = 0;
    this.#clearRetransmit();
    this.#armHeartbeat();
    if (wasUp) this.#events.down('reset');
    this.#events.up(this.#peer);
  }

  #onAck(seq: number): void {
    const index = this.#inFlight.findIndex((frame) => frame.seq === seq);
    if (index < 0) return; // nothing in flight with that number: ignored (§4.2)
    this.#inFlight.splice(0, index + 1);
    this.#retries = 0;
    this.#clearRetransmit();
    while (this.#queue.length > 0 && this.#peer && this.#inFlight.length < this.#peer.window) {
      this.#transmit(this.#queue.shift() as Uint8Array);
    }
    if (this.#inFlight.length > 0) this.#armRetransmit();
  }

  #retransmitTimeout(): number {
    return Math.min(this.#settings.retransmitMs * 2 ** this.#retries, this.#settings.maxRetransmitMs);
  }

  #armRetransmit(): void {
    this.#clearRetransmit();
    this.#retransmitTimer = this.#timers.setTimeout(() => this.#onRetransmitTimer(), this.#retransmitTimeout());
  }

  #clearRetransmit(): void {
    if (this.#retransmitTimer !== undefined) this.#timers.clearTimeout(this.#retransmitTimer);
    this.#retransmitTimer = undefined;
  }

  #onRetransmitTimer(): void {
    this.#retransmitTimer = undefined;
    if (!this.#up || this.#inFlight.length === 0) return;
    if (this.#retries >= this.#settings.maxRetries) {
      this.#linkDown('retries', true);
      return;
    }
    this.#retries++;
    // Go-back-N: the oldest unacknowledged frame and every one after it, same seq, same bytes (§4.3).
    for (const frame of this.#inFlight) this.#writeRaw(frame.wire);
    this.#armRetransmit();
  }

  #armHeartbeat(): void {
    if (this.#heartbeatTimer !== undefined) this.#timers.clearTimeout(this.#heartbeatTimer);
    const now = this.#timers.now();
    const { heartbeatMs } = this.#settings;
    const untilPing = Math.max(0, this.#lastSent + heartbeatMs - now);
    const untilDead = Math.max(0, this.#lastReceived + 3 * heartbeatMs - now);
    this.#heartbeatTimer = this.#timers.setTimeout(() => this.#onHeartbeatTimer(), Math.min(untilPing, untilDead) + 1);
  }

  #onHeartbeatTimer(): void {
    this.#heartbeatTimer = undefined;
    if (!this.#up) return;
    const now = this.#timers.now();
    const { heartbeatMs } = this.#settings;
    if (now - this.#lastReceived >= 3 * heartbeatMs) {
      this.#linkDown('heartbeat', true);
      return;
    }
    if (now - this.#lastSent >= heartbeatMs) this.#sendLink('ping');
    this.#armHeartbeat();
  }

  #linkDown(reason: LinkDownReason, sendReset: boolean): void {
    const wasUp = this.#up;
    this.#up = false;
    this.#inFlight = [];
    this.#queue = [];
    this.#retries = 0;
    this.#clearTimers();
    if (sendReset && this.#open) this.#sendLink('reset');
    if (wasUp) this.#events.down(reason);
  }

  #clearTimers(): void {
    this.#clearRetransmit();
    if (this.#heartbeatTimer !== undefined) this.#timers.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
  }

  #sendAck(seq: number): void {
    this.#writeRaw(encodeFrame({ type: 0x01, seq, payload: new Uint8Array(0) }));
  }

  #sendError(refSeq: number, code: number, detail: string): void {
    this.send({ kind: 'error', refSeq, code, detail: detail.slice(0, 120) });
  }

  #sendLink(kind: 'reset' | 'ping' | 'pong'): void;
  #sendLink(kind: 'helloAck', fields: HelloFields): void;
  #sendLink(kind: 'reset' | 'ping' | 'pong' | 'helloAck', fields?: HelloFields): void {
    const message: BridgeMessage = kind === 'helloAck' ? { kind, ...(fields as HelloFields) } : { kind };
    const { type, payload } = encodeMessageFrame(message);
    this.#writeRaw(encodeFrame({ type, seq: 0, payload }));
  }

  #writeRaw(bytes: Uint8Array): void {
    if (!this.#open) return;
    this.#lastSent = this.#timers.now();
    this.#write(bytes);
  }
}

/** A queued reliable frame: its type byte, then its payload (the seq is set when it is transmitted). */
function packApplication(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 1);
  out[0] = type;
  out.set(payload, 1);
  return out;
}
