import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import mqtt from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { type CodecError, createDecoder, encodePacket } from './codec';
import { decodeConnectOrSubscribe } from './connect-subscribe';
import type { ConnectPacket, Packet, PublishPacket } from './packets';

// mqtt-packet is the reference: our encoder must produce what its parser reads back, and our decoder must read
// what its generator writes, whatever the chunking.

interface Collected {
  packets: Packet[];
  errors: CodecError[];
  push(bytes: Uint8Array): void;
  reset(): void;
}

function collect(maxPacketBytes = 1 << 20): Collected {
  const packets: Packet[] = [];
  const errors: CodecError[] = [];
  // The hub's side: CONNECT and SUBSCRIBE decoded too.
  const decoder = createDecoder(
    (packet) => packets.push(packet),
    (error) => errors.push(error),
    maxPacketBytes,
    decodeConnectOrSubscribe,
  );
  return { packets, errors, push: decoder.push, reset: decoder.reset };
}

/** Our packet as mqtt-packet's object. */
function toReference(packet: Packet): mqtt.Packet {
  switch (packet.type) {
    case 1: {
      const connect: mqtt.IConnectPacket = {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: packet.clientId,
        keepalive: packet.keepAlive,
        clean: packet.clean,
      };
      if (packet.username !== undefined) connect.username = packet.username;
      if (packet.password !== undefined) connect.password = Buffer.from(packet.password, 'utf8');
      return connect;
    }
    case 2:
      return { cmd: 'connack', sessionPresent: packet.sessionPresent, returnCode: packet.returnCode };
    case 3: {
      const publish: mqtt.IPublishPacket = {
        cmd: 'publish',
        topic: packet.topic,
        payload: Buffer.from(packet.payload),
        qos: packet.qos,
        dup: packet.dup,
        retain: packet.retain,
      };
      if (packet.messageId !== undefined) publish.messageId = packet.messageId;
      return publish;
    }
    case 4:
      return { cmd: 'puback', messageId: packet.messageId };
    case 8:
      return {
        cmd: 'subscribe',
        messageId: packet.messageId,
        subscriptions: packet.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })),
      };
    case 9:
      return { cmd: 'suback', messageId: packet.messageId, granted: packet.granted };
    case 12:
      return { cmd: 'pingreq' };
    case 13:
      return { cmd: 'pingresp' };
    case 14:
      return { cmd: 'disconnect' };
  }
}

/** mqtt-packet's parsed object as our packet. */
function fromReference(parsed: mqtt.Packet): Packet {
  switch (parsed.cmd) {
    case 'connect': {
      expect(parsed.protocolId).toBe('MQTT');
      expect(parsed.protocolVersion).toBe(4);
      const connect: ConnectPacket = {
        type: 1,
        clientId: parsed.clientId,
        keepAlive: parsed.keepalive as number,
        clean: parsed.clean as boolean,
      };
      if (parsed.username !== undefined) connect.username = parsed.username;
      if (parsed.password !== undefined) connect.password = Buffer.from(parsed.password).toString('utf8');
      return connect;
    }
    case 'connack':
      return { type: 2, sessionPresent: parsed.sessionPresent, returnCode: parsed.returnCode as number };
    case 'publish': {
      const publish: PublishPacket = {
        type: 3,
        topic: parsed.topic,
        payload: new Uint8Array(parsed.payload as Buffer),
        qos: parsed.qos as 0 | 1,
        dup: parsed.dup,
        retain: parsed.retain,
      };
      if (parsed.qos) publish.messageId = parsed.messageId as number;
      return publish;
    }
    case 'puback':
      return { type: 4, messageId: parsed.messageId as number };
    case 'subscribe':
      return {
        type: 8,
        messageId: parsed.messageId as number,
        subscriptions: parsed.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos as 0 | 1 })),
      };
    case 'suback':
      return { type: 9, messageId: parsed.messageId as number, granted: parsed.granted as number[] };
    case 'pingreq':
      return { type: 12 };
    case 'pingresp':
      return { type: 13 };
    case 'disconnect':
      return { type: 14 };
    default:
      throw new Error(`unexpected ${parsed.cmd}`);
  }
}

function parseWithReference(bytes: Uint8Array): Packet[] {
  const parser = mqtt.parser({ protocolVersion: 4 });
  const packets: Packet[] = [];
  parser.on('packet', (packet) => packets.push(fromReference(packet)));
  parser.on('error', (error) => {
    throw error;
  });
  parser.parse(Buffer.from(bytes));
  return packets;
}

/** Payload bytes are compared as hex so that a failure shows where they differ; views compare by content. */
function comparable(packet: Packet): unknown {
  return packet.type === 3 ? { ...packet, payload: Buffer.from(packet.payload).toString('hex') } : packet;
}

/** A cheap equality for the split loops (a 16 KiB payload compared 16 K times): typed arrays by content. */
function samePacket(a: Packet | undefined, b: Packet): boolean {
  return isDeepStrictEqual(a, b);
}

// Strings: any well-formed Unicode (multi-byte UTF-8 included; lone surrogates cannot survive UTF-8 either way).
const text = (maxLength: number) => fc.string({ unit: 'binary', maxLength });
const messageId = fc.integer({ min: 1, max: 65535 });
// Mostly small payloads, some over 127 bytes (two length bytes), rarely over 16383 (three length bytes). Large
// ones are filled from a seed: fast-check building 16 K byte arbitraries would dominate the runtime.
const smallPayload = fc.uint8Array({ maxLength: 300 });
const payload = fc.oneof(
  { weight: 30, arbitrary: smallPayload },
  {
    weight: 1,
    arbitrary: fc
      .record({ length: fc.integer({ min: 16384, max: 16600 }), seed: fc.integer({ min: 1, max: 255 }) })
      .map((r) => Uint8Array.from({ length: r.length }, (_, i) => (i * r.seed + (i >> 8)) & 255)),
  },
);

const connect: fc.Arbitrary<Packet> = fc
  .record({
    clientId: text(24),
    keepAlive: fc.integer({ min: 0, max: 65535 }),
    clean: fc.boolean(),
    credentials: fc.option(fc.record({ username: text(40), password: fc.option(text(200), { nil: undefined }) }), {
      nil: undefined,
    }),
  })
  .map((r) => {
    // mqtt-packet refuses an empty client id without a clean session ([MQTT-3.1.3-7]).
    const packet: ConnectPacket = {
      type: 1,
      clientId: r.clientId,
      keepAlive: r.keepAlive,
      clean: r.clean || !r.clientId,
    };
    if (r.credentials) {
      packet.username = r.credentials.username;
      if (r.credentials.password !== undefined) packet.password = r.credentials.password;
    }
    return packet;
  });
const connack: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant(2 as const),
  sessionPresent: fc.boolean(),
  returnCode: fc.integer({ min: 0, max: 5 }),
});
const publishWith = (payloads: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Packet> =>
  fc
    .record({
      topic: text(60),
      payload: payloads,
      qos: fc.constantFrom(0 as const, 1 as const),
      id: messageId,
      flags: fc.nat(3),
    })
    .map((r) => {
      const packet: PublishPacket = {
        type: 3,
        topic: r.topic,
        payload: r.payload,
        qos: r.qos,
        // DUP only on QoS 1 [MQTT-3.3.1-2].
        dup: r.qos === 1 && (r.flags & 2) !== 0,
        retain: (r.flags & 1) !== 0,
      };
      if (r.qos) packet.messageId = r.id;
      return packet;
    });
const publish = publishWith(payload);
const puback: fc.Arbitrary<Packet> = fc.record({ type: fc.constant(4 as const), messageId });
const subscribe: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant(8 as const),
  messageId,
  subscriptions: fc.array(fc.record({ topic: text(40), qos: fc.constantFrom(0 as const, 1 as const) }), {
    minLength: 1,
    maxLength: 5,
  }),
});
const suback: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant(9 as const),
  messageId,
  granted: fc.array(fc.constantFrom(0, 1, 2, 0x80), { minLength: 1, maxLength: 6 }),
});
const bare: fc.Arbitrary<Packet> = fc.constantFrom<Packet>({ type: 12 }, { type: 13 }, { type: 14 });

const arbitraries: Array<[string, fc.Arbitrary<Packet>]> = [
  ['CONNECT', connect],
  ['CONNACK', connack],
  ['PUBLISH', publish],
  ['PUBACK', puback],
  ['SUBSCRIBE', subscribe],
  ['SUBACK', suback],
  ['PINGREQ, PINGRESP, DISCONNECT', bare],
];
const anyPacket = fc.oneof(...arbitraries.map((entry) => entry[1]));
// Splitting a 16 KiB packet at every byte costs 16 K decodes: the random split test keeps to small payloads, and
// one fixed three-length-byte PUBLISH is split at every byte below.
const splitArbitraries = arbitraries.map((entry): [string, fc.Arbitrary<Packet>] => [
  entry[0],
  entry[0] === 'PUBLISH' ? publishWith(smallPayload) : entry[1],
]);

describe('encodePacket', () => {
  for (const [name, arbitrary] of arbitraries) {
    it(`writes ${name} packets that mqtt-packet parses back to the same packet`, () => {
      fc.assert(
        fc.property(arbitrary, (packet) => {
          const parsed = parseWithReference(encodePacket(packet));
          expect(parsed.map(comparable)).toEqual([comparable(packet)]);
          // And byte for byte what mqtt-packet would write.
          expect(Buffer.from(encodePacket(packet)).equals(mqtt.generate(toReference(packet)))).toBe(true);
        }),
        { numRuns: 150 },
      );
    });
  }

  it('writes the remaining length in one to four bytes at the boundaries of each', () => {
    for (const size of [0, 127, 128, 16383, 16384, 2097151, 2097152]) {
      // topic "t" (3 bytes) + payload = size
      const packet: Packet = {
        type: 3,
        topic: 't',
        payload: new Uint8Array(Math.max(size - 3, 0)),
        qos: 0,
        dup: false,
        retain: false,
      };
      const bytes = encodePacket(packet);
      expect(Buffer.from(bytes).equals(mqtt.generate(toReference(packet)))).toBe(true);
    }
  });

  it('refuses a string longer than 65535 UTF-8 bytes with PacketTooLarge', () => {
    const packet: Packet = {
      type: 3,
      topic: 'é'.repeat(32768),
      payload: new Uint8Array(0),
      qos: 0,
      dup: false,
      retain: false,
    };
    expect(() => encodePacket(packet)).toThrow(expect.objectContaining({ code: 'PacketTooLarge' }));
  });
});

describe('createDecoder', () => {
  for (const [name, arbitrary] of splitArbitraries) {
    it(`reads ${name} packets written by mqtt-packet, whole, byte by byte and split at every byte`, () => {
      fc.assert(
        fc.property(arbitrary, (generated) => {
          // Plain objects: fast-check builds some records without a prototype, which deep equality would see.
          const packet = structuredClone(generated);
          const bytes = new Uint8Array(mqtt.generate(toReference(packet)));
          const whole = collect();
          whole.push(bytes);
          expect(whole.errors).toEqual([]);
          expect(whole.packets.map(comparable)).toEqual([comparable(packet)]);

          const byByte = collect();
          for (let i = 0; i < bytes.length; i++) byByte.push(bytes.subarray(i, i + 1));
          expect(byByte.errors).toEqual([]);
          expect(byByte.packets.length).toBe(1);
          expect(samePacket(byByte.packets[0], packet)).toBe(true);

          for (let at = 0; at <= bytes.length; at++) {
            const split = collect();
            split.push(bytes.subarray(0, at));
            split.push(bytes.subarray(at));
            if (split.errors.length || split.packets.length !== 1 || !samePacket(split.packets[0], packet)) {
              expect({ at, packets: split.packets.map(comparable), errors: split.errors }).toEqual({
                at,
                packets: [comparable(packet)],
                errors: [],
              });
            }
          }
        }),
        { numRuns: name === 'PUBLISH' ? 120 : 60 },
      );
    });
  }

  it('reads a PUBLISH with a three-byte remaining length split at every byte', () => {
    const packet: Packet = {
      type: 3,
      topic: 'devices/d1/messages/devicebound/%24.mid=1&ü=ö',
      payload: Uint8Array.from({ length: 16500 }, (_, i) => (i * 7) & 255),
      qos: 1,
      messageId: 65535,
      dup: true,
      retain: false,
    };
    const bytes = new Uint8Array(mqtt.generate(toReference(packet)));
    // Three remaining-length bytes: the first two carry the continuation bit.
    expect([bytes[1]! & 0x80, bytes[2]! & 0x80, bytes[3]! & 0x80]).toEqual([0x80, 0x80, 0]);
    for (let at = 0; at <= bytes.length; at++) {
      const split = collect();
      split.push(bytes.subarray(0, at));
      split.push(bytes.subarray(at));
      expect(split.errors.length === 0 && split.packets.length === 1 && samePacket(split.packets[0], packet)).toBe(
        true,
      );
    }
  });

  it('reads several packets concatenated and split at random points, in order', () => {
    fc.assert(
      fc.property(
        fc.array(anyPacket, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (packets, cuts) => {
          const frames = packets.map((packet) => mqtt.generate(toReference(packet)));
          const bytes = new Uint8Array(Buffer.concat(frames));
          const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
          const decoder = collect();
          let from = 0;
          for (const point of [...points, bytes.length]) {
            decoder.push(bytes.subarray(from, point));
            from = point;
          }
          expect(decoder.errors).toEqual([]);
          expect(decoder.packets.map(comparable)).toEqual(packets.map(comparable));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('hands out the payload of a packet lying whole in a chunk as a view of that chunk, not a copy', () => {
    const bytes = encodePacket({
      type: 3,
      topic: 'a',
      payload: Uint8Array.of(1, 2, 3),
      qos: 0,
      dup: false,
      retain: false,
    });
    const decoder = collect();
    decoder.push(bytes);
    const packet = decoder.packets[0] as PublishPacket;
    expect(packet.payload.buffer).toBe(bytes.buffer);
    expect([...packet.payload]).toEqual([1, 2, 3]);
  });
});

/** Feeds bytes to a fresh decoder and returns the single error it reported. */
function errorOf(bytes: number[], maxPacketBytes?: number): CodecError {
  const decoder = collect(maxPacketBytes);
  decoder.push(Uint8Array.from(bytes));
  expect(decoder.packets).toEqual([]);
  expect(decoder.errors.length).toBe(1);
  const error = decoder.errors[0] as CodecError;
  expect(error).toBeInstanceOf(Error);
  return error;
}

// CONNECT body for MQTT 3.1.1 with client id "c": name, level, flags, keep-alive, client id.
const connectBody = (flags: number, name = [0, 4, 77, 81, 84, 84], level = 4) => [
  ...name,
  level,
  flags,
  0,
  60,
  0,
  1,
  99,
];

describe('createDecoder on malformed input', () => {
  const cases: Array<[string, number[], string]> = [
    ['reserved flag bits on PUBACK', [0x41, 2, 0, 1], 'MalformedPacket'],
    ['reserved flag bits on PINGRESP', [0xd1, 0], 'MalformedPacket'],
    ['reserved flag bits on CONNACK', [0x28, 2, 0, 0], 'MalformedPacket'],
    ['SUBSCRIBE without its fixed 0010 flags', [0x80, 6, 0, 1, 0, 1, 97, 0], 'MalformedPacket'],
    ['a remaining length over four bytes', [0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 'MalformedPacket'],
    ['PUBLISH with QoS 3', [0x36, 5, 0, 1, 97, 0, 1], 'MalformedPacket'],
    ['PUBLISH with QoS 2', [0x34, 5, 0, 1, 97, 0, 1], 'UnsupportedPacket'],
    ['PUBLISH with DUP on QoS 0', [0x38, 3, 0, 1, 97], 'MalformedPacket'],
    ['a topic longer than the packet', [0x30, 3, 0, 10, 97], 'MalformedPacket'],
    ['a QoS 1 PUBLISH cut inside its message id', [0x32, 4, 0, 1, 97, 0], 'MalformedPacket'],
    ['a CONNECT cut inside its client id', [0x10, 13, 0, 4, 77, 81, 84, 84, 4, 2, 0, 60, 0, 5, 99], 'MalformedPacket'],
    ['packet type 0', [0x00, 0], 'MalformedPacket'],
    ['packet type 15', [0xf0, 0], 'MalformedPacket'],
    ['PUBREL (QoS 2 flow)', [0x62, 2, 0, 1], 'UnsupportedPacket'],
    ['UNSUBSCRIBE', [0xa2, 5, 0, 1, 0, 1, 97], 'UnsupportedPacket'],
    ['SUBSCRIBE with no topics', [0x82, 2, 0, 1], 'MalformedPacket'],
    ['SUBSCRIBE with reserved bits in the requested QoS', [0x82, 6, 0, 1, 0, 1, 97, 4], 'MalformedPacket'],
    ['SUBSCRIBE for QoS 2', [0x82, 6, 0, 1, 0, 1, 97, 2], 'UnsupportedPacket'],
    [
      'CONNECT with protocol name MQIsdp',
      [0x10, 15, ...connectBody(2, [0, 6, 77, 81, 73, 115, 100, 112], 3)],
      'MalformedPacket',
    ],
    ['CONNECT for MQTT 5 (level 5)', [0x10, 13, ...connectBody(2, undefined, 5)], 'UnsupportedPacket'],
    ['CONNECT with the reserved flag bit', [0x10, 13, ...connectBody(3)], 'MalformedPacket'],
    ['CONNECT with a password but no user name', [0x10, 13, ...connectBody(0x42)], 'MalformedPacket'],
    ['CONNECT with a will', [0x10, 13, ...connectBody(0x06)], 'UnsupportedPacket'],
    ['CONNECT with bytes after its fields', [0x10, 14, ...connectBody(2), 0], 'MalformedPacket'],
    ['CONNACK with reserved acknowledge flags', [0x20, 2, 2, 0], 'MalformedPacket'],
    ['CONNACK with a reserved return code', [0x20, 2, 0, 6], 'MalformedPacket'],
    ['CONNACK of the wrong length', [0x20, 3, 0, 0, 0], 'MalformedPacket'],
    ['PUBACK of the wrong length', [0x40, 3, 0, 1, 0], 'MalformedPacket'],
    ['PINGRESP with a body', [0xd0, 1, 0], 'MalformedPacket'],
    ['SUBACK with a reserved return code', [0x90, 3, 0, 1, 3], 'MalformedPacket'],
  ];
  for (const [what, bytes, code] of cases) {
    it(`reports ${what} as ${code}`, () => {
      expect(errorOf(bytes).code).toBe(code);
    });
  }

  it('reports CONNECT and SUBSCRIBE as UnsupportedPacket without decodeConnectOrSubscribe (a client never receives them)', () => {
    for (const packet of [
      encodePacket({ type: 1, clientId: 'd1', keepAlive: 60, clean: true }),
      encodePacket({ type: 8, messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }] }),
    ]) {
      const errors: CodecError[] = [];
      const decoder = createDecoder(
        () => errors.push(new Error('decoded') as CodecError),
        (error) => errors.push(error),
        1024,
      );
      decoder.push(packet);
      expect(errors.map((error) => error.code)).toEqual(['UnsupportedPacket']);
    }
  });

  it('reports once, then ignores input until reset, then decodes again', () => {
    const decoder = collect();
    const ping = encodePacket({ type: 13 });
    decoder.push(Uint8Array.of(0x00, 0));
    decoder.push(ping);
    decoder.push(Uint8Array.of(0xf0, 0));
    expect(decoder.errors.length).toBe(1);
    expect(decoder.packets).toEqual([]);
    decoder.reset();
    decoder.push(ping);
    expect(decoder.packets).toEqual([{ type: 13 }]);
    expect(decoder.errors.length).toBe(1);
  });

  it('delivers the packets before a malformed one in the same chunk', () => {
    const decoder = collect();
    decoder.push(Uint8Array.of(0xd0, 0, 0x40, 2, 0, 7, 0x34, 0, 0xd0, 0));
    expect(decoder.packets).toEqual([{ type: 13 }, { type: 4, messageId: 7 }]);
    expect(decoder.errors.map((error) => error.code)).toEqual(['UnsupportedPacket']);
  });

  it('accepts a packet of exactly the maximum size and refuses one byte more as PacketTooLarge', () => {
    const packet = (size: number): Uint8Array =>
      encodePacket({ type: 3, topic: 't', payload: new Uint8Array(size - 6), qos: 0, dup: false, retain: false });
    expect(packet(300).length).toBe(300);
    const fits = collect(300);
    fits.push(packet(300));
    expect(fits.errors).toEqual([]);
    expect(fits.packets.length).toBe(1);
    const over = collect(300);
    over.push(packet(301));
    expect(over.packets).toEqual([]);
    expect(over.errors.map((error) => error.code)).toEqual(['PacketTooLarge']);
  });

  it('refuses an oversized packet from its fixed header, before its body arrives', () => {
    // A PUBLISH announcing 268435455 bytes: refused at once, nothing allocated for it.
    expect(errorOf([0x30, 0xff, 0xff, 0xff, 0x7f], 256 * 1024).code).toBe('PacketTooLarge');
  });

  it('drops a partial packet on reset', () => {
    const decoder = collect();
    const bytes = encodePacket({ type: 4, messageId: 9 });
    decoder.push(bytes.subarray(0, 3));
    decoder.reset();
    decoder.push(bytes);
    expect(decoder.packets).toEqual([{ type: 4, messageId: 9 }]);
    expect(decoder.errors).toEqual([]);
  });

  it('drops the rest of a chunk when onPacket resets the decoder (a reconnect from inside a callback)', () => {
    const packets: Packet[] = [];
    const decoder = createDecoder(
      (packet) => {
        packets.push(packet);
        decoder.reset();
      },
      () => {},
      1024,
    );
    decoder.push(Uint8Array.of(0xd0, 0, 0xd0, 0));
    expect(packets).toEqual([{ type: 13 }]);
    decoder.push(Uint8Array.of(0xd0, 0));
    expect(packets.length).toBe(2);
  });

  it('drops the rest of a chunk when onError resets the decoder', () => {
    const packets: Packet[] = [];
    const decoder = createDecoder(
      (packet) => packets.push(packet),
      () => decoder.reset(),
      1024,
    );
    decoder.push(Uint8Array.of(0x00, 0, 0xd0, 0));
    expect(packets).toEqual([]);
    decoder.push(Uint8Array.of(0xd0, 0));
    expect(packets).toEqual([{ type: 13 }]);
  });

  it('lets an exception thrown by onPacket propagate and then ignores input until reset', () => {
    const errors: CodecError[] = [];
    let calls = 0;
    const decoder = createDecoder(
      () => {
        calls++;
        throw new Error('boom');
      },
      (error) => errors.push(error),
      1024,
    );
    expect(() => decoder.push(Uint8Array.of(0xd0, 0, 0xd0, 0))).toThrow('boom');
    decoder.push(Uint8Array.of(0xd0, 0));
    expect(calls).toBe(1);
    expect(errors).toEqual([]);
  });
});
