/**
 * A simulated MCU in TypeScript for the gateway's integration test, built on the gateway's own frame code: the MCU
 * side of PROTOCOL.md §4 with a window of 1 (stop-and-wait, allowed by §4.1), opening its end of a socat PTY pair
 * and reopening it after a cable pull. It keeps telemetry until TELEMETRY_ACK and re-sends it after every link-up,
 * completes cloud-to-device messages, answers methods, records desired patches and signs with its key.
 */
import { createHmac } from 'node:crypto';
import { SerialPort } from 'serialport';
import {
  type BridgeMessage,
  decodeMessage,
  encodeFrame,
  encodeMessage,
  FrameDecoder,
  isReliableType,
} from '../src/frame/index';

export interface TsMcuOptions {
  readonly path: string;
  readonly deviceId: string;
  readonly moduleId?: string;
  /** Base64 device key: the MCU signs (auth 1) when set. */
  readonly key?: string;
  readonly capabilities: number;
  readonly bootId: number;
  /** Outcomes for successive C2D_SETTLE of one message (0 complete, 1 reject, 2 abandon). Default: complete. */
  readonly settleOutcomes?: readonly number[];
}

export class TsMcu {
  readonly options: TsMcuOptions;
  readonly received: BridgeMessage[] = [];
  /** TELEMETRY_ACK status by id. */
  readonly acknowledged = new Map<number, number>();
  readonly #unconfirmed = new Map<number, BridgeMessage>();
  #port: SerialPort | undefined;
  #decoder = new FrameDecoder(512);
  #up = false;
  #txSeq = 1;
  #expected = 1;
  #queue: BridgeMessage[] = [];
  #inFlight: { seq: number; wire: Uint8Array } | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;
  #lastHello = 0;

  constructor(options: TsMcuOptions) {
    this.options = options;
  }

  get isUp(): boolean {
    return this.#up;
  }

  start(): void {
    this.#open();
    // One tick drives HELLO repeats, retransmission and reopening the port.
    this.#timer = setInterval(() => this.#tick(), 100);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    const port = this.#port;
    this.#port = undefined;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  sendTelemetry(id: number, properties: [string, string][], body: string): void {
    const message: BridgeMessage = { kind: 'telemetry', id, properties, body: new TextEncoder().encode(body) };
    this.#unconfirmed.set(id, message);
    if (this.#up) this.#enqueue(message);
  }

  send(message: BridgeMessage): void {
    this.#enqueue(message);
  }

  #open(): void {
    if (this.#stopped || this.#port) return;
    const port = new SerialPort({ path: this.options.path, baudRate: 115200, autoOpen: false });
    port.open((error) => {
      if (error || this.#stopped) return;
      this.#port = port;
      this.#decoder = new FrameDecoder(512);
      port.on('data', (chunk: Buffer) => this.#receive(chunk));
      const lost = (): void => {
        if (this.#port === port) this.#port = undefined;
        this.#up = false;
      };
      port.on('close', lost);
      port.on('error', lost);
      this.#hello();
    });
  }

  #tick(): void {
    if (!this.#port) {
      this.#open();
      return;
    }
    if (!this.#up && Date.now() - this.#lastHello >= 300) this.#hello();
    if (this.#up && this.#inFlight) this.#write(this.#inFlight.wire);
  }

  #hello(): void {
    this.#lastHello = Date.now();
    this.#writeMessage({
      kind: 'hello',
      protocol: 1,
      capabilities: this.options.capabilities,
      maxFrame: 512,
      window: 1,
      bootId: this.options.bootId,
    });
  }

  #write(bytes: Uint8Array): void {
    this.#port?.write(Buffer.from(bytes));
  }

  #writeMessage(message: BridgeMessage, seq = 0): Uint8Array {
    const { type, payload } = encodeMessage(message);
    const wire = encodeFrame({ type, seq, payload });
    this.#write(wire);
    return wire;
  }

  #enqueue(message: BridgeMessage): void {
    this.#queue.push(message);
    this.#pump();
  }

  #pump(): void {
    if (!this.#up || this.#inFlight) return;
    const next = this.#queue.shift();
    if (!next) return;
    const seq = this.#txSeq;
    this.#txSeq = seq === 0xffff ? 1 : seq + 1;
    this.#inFlight = { seq, wire: this.#writeMessage(next, seq) };
  }

  #receive(chunk: Uint8Array): void {
    for (const frame of this.#decoder.push(chunk)) {
      if (!isReliableType(frame.type)) {
        const message = decodeMessage(frame.type, frame.payload);
        if (message.kind === 'helloAck') this.#linkUp(!this.#up);
        else if (message.kind === 'reset') {
          this.#up = false;
          this.#hello();
        } else if (message.kind === 'ack' && this.#inFlight?.seq === frame.seq) {
          this.#inFlight = undefined;
          this.#pump();
        } else if (message.kind === 'ping') this.#writeMessage({ kind: 'pong' });
        continue;
      }
      if (!this.#up) {
        this.#writeMessage({ kind: 'reset' });
        continue;
      }
      if (frame.seq !== this.#expected) {
        if (frame.seq < this.#expected) this.#writeMessage({ kind: 'ack' }, this.#expected - 1);
        continue;
      }
      this.#expected = this.#expected === 0xffff ? 1 : this.#expected + 1;
      this.#writeMessage({ kind: 'ack' }, frame.seq);
      this.#deliver(decodeMessage(frame.type, frame.payload));
    }
  }

  #linkUp(full: boolean): void {
    // PROTOCOL.md §4.1: a HELLO_ACK reaching an MCU already up restarts only its receive side.
    this.#expected = 1;
    if (!full) return;
    this.#up = true;
    this.#txSeq = 1;
    this.#inFlight = undefined;
    this.#queue = [];
    this.#enqueue({
      kind: 'identity',
      deviceId: this.options.deviceId,
      moduleId: this.options.moduleId ?? '',
      auth: this.options.key === undefined ? 0 : 1,
    });
    for (const message of this.#unconfirmed.values()) this.#enqueue(message);
  }

  #settleTag: number | undefined;
  #settleAttempt = 0;

  #settleNext(attempt: number): void {
    this.#settleAttempt = attempt;
    const outcomes = this.options.settleOutcomes ?? [0];
    const outcome = outcomes[Math.min(attempt, outcomes.length - 1)] ?? 0;
    this.#enqueue({ kind: 'cloudToDeviceSettle', tag: this.#settleTag ?? 0, outcome });
  }

  #deliver(message: BridgeMessage): void {
    this.received.push(message);
    switch (message.kind) {
      case 'telemetryAck':
        this.acknowledged.set(message.id, message.status);
        if (message.status === 200) this.#unconfirmed.delete(message.id);
        break;
      case 'cloudToDevice':
        this.#settleTag = message.tag;
        this.#settleNext(0);
        break;
      case 'error':
        // An outcome the gateway cannot express (ERROR Unsupported): settle again with the next one.
        if (message.code === 5 && this.#settleTag !== undefined) this.#settleNext(this.#settleAttempt + 1);
        break;
      case 'methodRequest':
        this.#enqueue({
          kind: 'methodResponse',
          rid: message.rid,
          status: 200,
          json: JSON.stringify({ method: message.name, got: message.json === '' ? null : JSON.parse(message.json) }),
        });
        break;
      case 'signRequest': {
        const signature = createHmac('sha256', Buffer.from(this.options.key ?? '', 'base64'))
          .update(message.stringToSign)
          .digest();
        this.#enqueue({ kind: 'signResponse', rid: message.rid, status: this.options.key ? 0 : 1, signature });
        break;
      }
      default:
        break;
    }
  }
}
