/**
 * The MQTT 3.1.1 packet parser of one session: mqtt-packet's parser, made cheaper to keep per idle connection
 * and bounded in packet size. What it changes (W5: ~19,000 idle connections per hub):
 * - its buffer is a plain `BufferList` instead of bl's stream (a Duplex with readable and writable state, ~1 KB
 *   per connection that nothing reads as a stream);
 * - it forgets the CONNECT packet it keeps as its "settings" (client id, username, the SAS token, will)
 *   once the session has it, keeping only the protocol level it reads later;
 * - a packet whose announced length exceeds the limit is an error as soon as the length is parsed, before its
 *   body is buffered (mqtt-packet has no maximum packet size).
 */
import { parser as createParser, writeToStream } from 'mqtt-packet';

// mqtt-packet's writer builds, on its first use, a cache of 65,536 two-byte Buffers for the numbers it writes
// (~6.5 MB of heap for the hub's lifetime). The hub writes few numbers through it (message ids of its own
// PUBLISHes, SUBACKs); allocating them per write costs nothing measurable.
writeToStream.cacheNumbers = false;

/** The parser state `parser.settings` holds after CONNECT; what mqtt-packet reads from it later. */
const protocolLevel4 = Object.freeze({ protocolVersion: 4 });

/** mqtt-packet's parser (an EventEmitter of `packet` and `error`). */
export type PacketParser = ReturnType<typeof createParser>;

interface ParserInternals {
  packet: { length: number };
  settings: unknown;
  maxPacketBytes: number;
  _list: { constructor: { BufferList?: new () => unknown } };
  _parseLength(): boolean;
  _emitError(error: Error): void;
  _resetState(): void;
}

// mqtt-packet's own methods, wrapped below; per instance, so that other users of mqtt-packet in the process
// (MQTT.js clients in tests) keep the original parser. Module-level functions: no closure per connection.
const parserPrototype = Object.getPrototypeOf(createParser()) as ParserInternals;
const { _parseLength: parseLength, _resetState: resetState } = parserPrototype;

function parseLengthWithLimit(this: ParserInternals): boolean {
  const complete = parseLength.call(this);
  if (complete && this.packet.length > this.maxPacketBytes) {
    this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${this.maxPacketBytes}`));
    return false;
  }
  return complete;
}

// After an error mqtt-packet makes a new buffer on the next parse; keep it a plain BufferList too.
function resetStateWithBufferList(this: ParserInternals): void {
  resetState.call(this);
  useBufferList(this);
}

function useBufferList(internals: ParserInternals): void {
  // bl's stream class carries the plain class as a static; reached this way, bl needs no dependency of our own.
  const BufferList = internals._list.constructor.BufferList;
  if (BufferList) internals._list = new BufferList() as ParserInternals['_list'];
}

/** Creates a parser for MQTT 3.1.1 with a maximum packet size (remaining length). */
export function createPacketParser(maxBytes: number): PacketParser {
  const parser = createParser({ protocolVersion: 4 });
  const internals = parser as unknown as ParserInternals;
  internals.maxPacketBytes = maxBytes;
  internals._parseLength = parseLengthWithLimit;
  internals._resetState = resetStateWithBufferList;
  useBufferList(internals);
  return parser;
}

/** Drops the CONNECT packet the parser retains (call once the session has read what it needs from it). */
export function forgetConnect(parser: PacketParser): void {
  (parser as unknown as ParserInternals).settings = protocolLevel4;
}
