/**
 * Payload codecs of every message type (PROTOCOL.md §4.1, §5): a discriminated union {@link BridgeMessage}, one
 * encoder and one decoder. Field names are the spec's. A payload with bytes left over, or a length prefix running
 * past its end, is {@link MalformedPayloadError} (§5.1).
 */
import { FrameType } from './frame';

/** Capability bits (§4.1). */
export const Capability = { sign: 0x01, twin: 0x02, methods: 0x04, cloudToDevice: 0x08 } as const;
/** Identity `auth` values (§5.2). */
export const Auth = { gatewayKey: 0, mcuSigns: 1 } as const;
/** `STATUS.state` values (§5.2). */
export const LinkState = { offline: 0, connecting: 1, online: 2, refused: 3, error: 4 } as const;
/** `C2D_SETTLE.outcome` values (§5.4). */
export const SettleOutcome = { complete: 0, reject: 1, abandon: 2 } as const;
/** `ERROR.code` values (§5.9). */
export const ErrorCode = {
  unknownType: 1,
  malformed: 2,
  tooLarge: 3,
  noIdentity: 4,
  unsupported: 5,
  busy: 6,
} as const;

/** Name/value pairs in wire order; names starting with `$.` are system properties (§5.1). */
export type Properties = ReadonlyArray<readonly [string, string]>;

/** `HELLO` / `HELLO_ACK` payload. */
export interface HelloFields {
  readonly protocol: number;
  readonly capabilities: number;
  readonly maxFrame: number;
  readonly window: number;
  readonly bootId: number;
}

/** Every message with a payload codec, by `kind`. Link frames with empty payloads (ACK, RESET, PING, PONG) too. */
export type BridgeMessage =
  | { readonly kind: 'ack' }
  | ({ readonly kind: 'hello' } & HelloFields)
  | ({ readonly kind: 'helloAck' } & HelloFields)
  | { readonly kind: 'reset' }
  | { readonly kind: 'ping' }
  | { readonly kind: 'pong' }
  | { readonly kind: 'identity'; readonly deviceId: string; readonly moduleId: string; readonly auth: number }
  | { readonly kind: 'status'; readonly state: number; readonly status: number; readonly detail: string }
  | { readonly kind: 'telemetry'; readonly id: number; readonly properties: Properties; readonly body: Uint8Array }
  | { readonly kind: 'telemetryAck'; readonly id: number; readonly status: number }
  | { readonly kind: 'cloudToDevice'; readonly tag: number; readonly properties: Properties; readonly body: Uint8Array }
  | { readonly kind: 'cloudToDeviceSettle'; readonly tag: number; readonly outcome: number }
  | { readonly kind: 'twinGet'; readonly rid: number }
  | { readonly kind: 'twin'; readonly rid: number; readonly status: number; readonly json: string }
  | { readonly kind: 'twinReported'; readonly rid: number; readonly json: string }
  | { readonly kind: 'twinResult'; readonly rid: number; readonly status: number; readonly version: number }
  | { readonly kind: 'twinDesired'; readonly version: number; readonly json: string }
  | { readonly kind: 'methodRequest'; readonly rid: number; readonly name: string; readonly json: string }
  | { readonly kind: 'methodResponse'; readonly rid: number; readonly status: number; readonly json: string }
  | { readonly kind: 'timeRequest' }
  | { readonly kind: 'time'; readonly unixMs: number }
  | { readonly kind: 'signRequest'; readonly rid: number; readonly stringToSign: string }
  | { readonly kind: 'signResponse'; readonly rid: number; readonly status: number; readonly signature: Uint8Array }
  | { readonly kind: 'error'; readonly refSeq: number; readonly code: number; readonly detail: string };

/** A message kind. */
export type MessageKind = BridgeMessage['kind'];
/** The message of one kind. */
export type MessageOf<K extends MessageKind> = Extract<BridgeMessage, { kind: K }>;

/** The frame type of each message kind. */
export const typeOfKind: { readonly [K in MessageKind]: number } = {
  ack: FrameType.ack,
  hello: FrameType.hello,
  helloAck: FrameType.helloAck,
  reset: FrameType.reset,
  ping: FrameType.ping,
  pong: FrameType.pong,
  identity: FrameType.identity,
  status: FrameType.status,
  telemetry: FrameType.telemetry,
  telemetryAck: FrameType.telemetryAck,
  cloudToDevice: FrameType.cloudToDevice,
  cloudToDeviceSettle: FrameType.cloudToDeviceSettle,
  twinGet: FrameType.twinGet,
  twin: FrameType.twin,
  twinReported: FrameType.twinReported,
  twinResult: FrameType.twinResult,
  twinDesired: FrameType.twinDesired,
  methodRequest: FrameType.methodRequest,
  methodResponse: FrameType.methodResponse,
  timeRequest: FrameType.timeRequest,
  time: FrameType.time,
  signRequest: FrameType.signRequest,
  signResponse: FrameType.signResponse,
  error: FrameType.error,
};

const kindOfType = new Map<number, MessageKind>(
  Object.entries(typeOfKind).map(([kind, type]) => [type, kind as MessageKind]),
);

/** The message kind of a frame type; `undefined` for a type this side does not know (§3: `UnknownType`). */
export function kindOfFrameType(type: number): MessageKind | undefined {
  return kindOfType.get(type);
}

/** A payload that does not parse for its type (§3, §5.1): answered with `ERROR Malformed`. */
export class MalformedPayloadError extends Error {
  override readonly name = 'MalformedPayloadError';
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

class Writer {
  readonly #parts: Uint8Array[] = [];
  #length = 0;

  #fixed(size: number, fill: (view: DataView) => void): this {
    const bytes = new Uint8Array(size);
    fill(new DataView(bytes.buffer));
    return this.raw(bytes);
  }
  u8(value: number): this {
    return this.#fixed(1, (view) => view.setUint8(0, checkRange(value, 0xff)));
  }
  u16(value: number): this {
    return this.#fixed(2, (view) => view.setUint16(0, checkRange(value, 0xffff), true));
  }
  u32(value: number): this {
    return this.#fixed(4, (view) => view.setUint32(0, checkRange(value, 0xffffffff), true));
  }
  u64(value: number): this {
    return this.#fixed(8, (view) => view.setBigUint64(0, BigInt(checkRange(value, Number.MAX_SAFE_INTEGER)), true));
  }
  bytes(value: Uint8Array): this {
    return this.u16(value.length).raw(value);
  }
  str(value: string): this {
    return this.bytes(encoder.encode(value));
  }
  props(value: Properties): this {
    this.u8(value.length);
    for (const [name, text] of value) this.str(name).str(text);
    return this;
  }
  raw(value: Uint8Array): this {
    this.#parts.push(value);
    this.#length += value.length;
    return this;
  }
  tailText(value: string): this {
    return this.raw(encoder.encode(value));
  }
  done(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const part of this.#parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

function checkRange(value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`${value} is out of range 0..${max}`);
  return value;
}

class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #take(size: number): number {
    if (this.#at + size > this.#bytes.length) {
      throw new MalformedPayloadError(`payload ends at ${this.#bytes.length}, a field needs ${this.#at + size}`);
    }
    const at = this.#at;
    this.#at += size;
    return at;
  }
  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }
  u16(): number {
    return this.#view.getUint16(this.#take(2), true);
  }
  u32(): number {
    return this.#view.getUint32(this.#take(4), true);
  }
  u64(): number {
    const value = this.#view.getBigUint64(this.#take(8), true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new MalformedPayloadError('u64 beyond 2^53');
    return Number(value);
  }
  bytes(): Uint8Array {
    const length = this.u16();
    const at = this.#take(length);
    return this.#bytes.slice(at, at + length);
  }
  str(): string {
    return utf8(this.bytes());
  }
  props(): Properties {
    const count = this.u8();
    const out: [string, string][] = [];
    for (let index = 0; index < count; index++) out.push([this.str(), this.str()]);
    return out;
  }
  tail(): Uint8Array {
    const at = this.#take(this.#bytes.length - this.#at);
    return this.#bytes.slice(at);
  }
  tailText(): string {
    return utf8(this.tail());
  }
  end(): void {
    if (this.#at !== this.#bytes.length) {
      throw new MalformedPayloadError(`${this.#bytes.length - this.#at} bytes left over after the last field`);
    }
  }
}

function utf8(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new MalformedPayloadError('a text field is not UTF-8');
  }
}

function helloPayload(message: HelloFields): Uint8Array {
  return new Writer()
    .u8(message.protocol)
    .u8(message.capabilities)
    .u16(message.maxFrame)
    .u8(message.window)
    .u32(message.bootId)
    .done();
}

function readHello(reader: Reader): HelloFields {
  return {
    protocol: reader.u8(),
    capabilities: reader.u8(),
    maxFrame: reader.u16(),
    window: reader.u8(),
    bootId: reader.u32(),
  };
}

/**
 * The frame type and payload of `message`.
 * @throws RangeError when a number does not fit its field, or a `str`/`bytes`/`props` is too long for its prefix.
 */
export function encodeMessage(message: BridgeMessage): { readonly type: number; readonly payload: Uint8Array } {
  const type = typeOfKind[message.kind];
  const w = new Writer();
  switch (message.kind) {
    case 'ack':
    case 'reset':
    case 'ping':
    case 'pong':
    case 'timeRequest':
      break;
    case 'hello':
    case 'helloAck':
      return { type, payload: helloPayload(message) };
    case 'identity':
      w.str(message.deviceId).str(message.moduleId).u8(message.auth);
      break;
    case 'status':
      w.u8(message.state).u16(message.status).str(message.detail);
      break;
    case 'telemetry':
      w.u32(message.id).props(message.properties).raw(message.body);
      break;
    case 'telemetryAck':
      w.u32(message.id).u16(message.status);
      break;
    case 'cloudToDevice':
      w.u32(message.tag).props(message.properties).raw(message.body);
      break;
    case 'cloudToDeviceSettle':
      w.u32(message.tag).u8(message.outcome);
      break;
    case 'twinGet':
      w.u16(message.rid);
      break;
    case 'twin':
      w.u16(message.rid).u16(message.status).tailText(message.json);
      break;
    case 'twinReported':
      w.u16(message.rid).tailText(message.json);
      break;
    case 'twinResult':
      w.u16(message.rid).u16(message.status).u32(message.version);
      break;
    case 'twinDesired':
      w.u32(message.version).tailText(message.json);
      break;
    case 'methodRequest':
      w.u16(message.rid).str(message.name).tailText(message.json);
      break;
    case 'methodResponse':
      w.u16(message.rid).u16(message.status).tailText(message.json);
      break;
    case 'time':
      w.u64(message.unixMs);
      break;
    case 'signRequest':
      w.u16(message.rid).tailText(message.stringToSign);
      break;
    case 'signResponse':
      w.u16(message.rid).u8(message.status).raw(message.signature);
      break;
    case 'error':
      w.u16(message.refSeq).u16(message.code).str(message.detail);
      break;
  }
  return { type, payload: w.done() };
}

/**
 * The message in a frame of `type` carrying `payload`.
 * @throws MalformedPayloadError when the payload does not parse for its type; RangeError for an unknown type
 * (check with {@link kindOfFrameType} first).
 */
export function decodeMessage(type: number, payload: Uint8Array): BridgeMessage {
  const kind = kindOfType.get(type);
  if (kind === undefined) throw new RangeError(`unknown frame type 0x${type.toString(16)}`);
  const r = new Reader(payload);
  let message: BridgeMessage;
  switch (kind) {
    case 'ack':
    case 'reset':
    case 'ping':
    case 'pong':
    case 'timeRequest':
      message = { kind };
      break;
    case 'hello':
    case 'helloAck':
      message = { kind, ...readHello(r) };
      break;
    case 'identity':
      message = { kind, deviceId: r.str(), moduleId: r.str(), auth: r.u8() };
      break;
    case 'status':
      message = { kind, state: r.u8(), status: r.u16(), detail: r.str() };
      break;
    case 'telemetry':
      message = { kind, id: r.u32(), properties: r.props(), body: r.tail() };
      break;
    case 'telemetryAck':
      message = { kind, id: r.u32(), status: r.u16() };
      break;
    case 'cloudToDevice':
      message = { kind, tag: r.u32(), properties: r.props(), body: r.tail() };
      break;
    case 'cloudToDeviceSettle':
      message = { kind, tag: r.u32(), outcome: r.u8() };
      break;
    case 'twinGet':
      message = { kind, rid: r.u16() };
      break;
    case 'twin':
      message = { kind, rid: r.u16(), status: r.u16(), json: r.tailText() };
      break;
    case 'twinReported':
      message = { kind, rid: r.u16(), json: r.tailText() };
      break;
    case 'twinResult':
      message = { kind, rid: r.u16(), status: r.u16(), version: r.u32() };
      break;
    case 'twinDesired':
      message = { kind, version: r.u32(), json: r.tailText() };
      break;
    case 'methodRequest':
      message = { kind, rid: r.u16(), name: r.str(), json: r.tailText() };
      break;
    case 'methodResponse':
      message = { kind, rid: r.u16(), status: r.u16(), json: r.tailText() };
      break;
    case 'time':
      message = { kind, unixMs: r.u64() };
      break;
    case 'signRequest':
      message = { kind, rid: r.u16(), stringToSign: r.tailText() };
      break;
    case 'signResponse':
      message = { kind, rid: r.u16(), status: r.u8(), signature: r.tail() };
      break;
    case 'error':
      message = { kind, refSeq: r.u16(), code: r.u16(), detail: r.str() };
      break;
  }
  r.end();
  return message;
}
