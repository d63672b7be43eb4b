import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from './support/built-in-endpoint';
import { type HubProcess, startHubProcess } from './support/hub-process';
import {
  AmqpDevicePeer,
  amqpHeader,
  DeliveryFailedError,
  type LinkRefusedError,
  RawAmqpSocket,
  telemetryMessage,
} from './support/raw-amqp';
import { deviceSasToken } from './support/raw-mqtt-device';
import { createDevice, hubCa } from './support/service-rest';

// Misbehaving AMQP clients against the real hub (child process, TLS, 127.0.0.1, ephemeral ports). Each abuse must be
// refused the way IoT Hub refuses it (protocol-device.md §3, §7; the conditions of §3.4, which the Azure SDKs map to
// typed errors) or end with the abuser's connection closed, while a well-behaved device on its own connection keeps
// sending and every telemetry message the hub accepted from it is on the built-in endpoint.
//
// Where Azure documents nothing, the AMQP 1.0 specification decides: a peer that cannot take the protocol header it
// is sent answers with one it supports and closes the socket [AMQP 2.2]; a refused attach is answered with a null
// terminus and a detach carrying the error [AMQP 2.6.3]; a framing or decoding error closes the connection, with
// `amqp:connection:framing-error` or `amqp:decode-error` if the hub says anything at all [AMQP 2.8.15, 2.8.16].

const refusedForOthers = 'amqp:unauthorized-access';
const sizeExceeded = 'amqp:link:message-size-exceeded';
const connectionErrors = ['amqp:connection:framing-error', 'amqp:decode-error'];

/** The `sr` of a SAS token, as the Node SDK sends it for the CBS audience (still URL-encoded). */
function audienceOf(token: string): string {
  const audience = /[?&\s]sr=([^&]+)/.exec(` ${token.replace(/^SharedAccessSignature /, '')}`)?.[1];
  if (!audience) throw new Error(`no sr in ${token}`);
  return audience;
}

/** The AMQP error conditions (symbols are plain ASCII on the wire) in whatever bytes the hub sent. */
function conditionsIn(bytes: Buffer): string[] {
  return bytes.toString('latin1').match(/(amqp|com\.microsoft):[a-z:.-]+/g) ?? [];
}

describe('AMQP head against misbehaving clients', () => {
  let hub: HubProcess;
  let ca: string;
  let port: number;
  let key: string;
  let bystander: AmqpDevicePeer;
  let bystanderSender: Awaited<ReturnType<AmqpDevicePeer['openSender']>>;
  const acknowledged: string[] = [];
  let sent = 0;

  async function sendFromBystander(): Promise<void> {
    sent += 1;
    const messageId = `bystander-${sent}`;
    await bystander.send(bystanderSender, telemetryMessage(messageId, `{"n":${sent}}`, { n: String(sent) }));
    acknowledged.push(messageId);
  }

  /** The bystander is still connected, still served, and never saw an error. */
  async function expectBystanderServed(): Promise<void> {
    expect(bystander.isOpen).toBe(true);
    await sendFromBystander();
    expect(bystander.isOpen).toBe(true);
  }

  async function tokenFor(deviceId: string, options: { expiresAt?: number; key?: string } = {}): Promise<string> {
    return deviceSasToken('localhost', deviceId, options.key ?? key, {
      ...(options.expiresAt !== undefined ? { expiresAt: options.expiresAt } : {}),
    });
  }

  /** A connection authorized as `deviceId` by CBS. */
  async function connectAs(deviceId: string): Promise<AmqpDevicePeer> {
    const peer = await AmqpDevicePeer.connect({ port, ca });
    const token = await tokenFor(deviceId);
    const response = await peer.putToken(audienceOf(token), token);
    expect(response.statusCode, String(response.statusDescription)).toBe(200);
    return peer;
  }

  /** The abuser identity is not locked out: it connects again, well-behaved, and its telemetry is accepted. */
  async function expectAbuserServedAgain(messageId: string): Promise<void> {
    const again = await connectAs('abuser');
    try {
      const sender = await again.openSender('/devices/abuser/messages/events');
      await again.send(sender, telemetryMessage(messageId, 'ok'));
    } finally {
      await again.close();
    }
  }

  async function expectNotOnEndpoint(messageIds: string[]): Promise<void> {
    const events = await readBuiltInEndpoint(hub.info);
    expect(events.filter((event) => event.messageId !== null && messageIds.includes(event.messageId))).toEqual([]);
    expect(events.filter((event) => isTelemetry(event) && event.deviceId === 'victim')).toEqual([]);
  }

  beforeAll(async () => {
    hub = await startHubProcess({ httpsPort: 0 });
    expect(hub.info.ports.amqp, 'hub.json names no AMQP port: the AMQP head is not wired in').toBeTypeOf('number');
    port = hub.info.ports.amqp as number;
    ca = hubCa(hub.info);
    key = randomBytes(32).toString('base64');
    const authentication = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
    for (const deviceId of ['abuser', 'victim', 'bystander'])
      await createDevice(hub.info, deviceId, { authentication });
    bystander = await connectAs('bystander');
    bystanderSender = await bystander.openSender('/devices/bystander/messages/events');
  });

  afterAll(async () => {
    await bystander?.close().catch(() => {});
    await hub?.dispose();
  });

  describe('bytes no AMQP peer should send', () => {
    it.each([
      { name: 'after the hub answered the header', waitForHeader: true },
      { name: 'in the same write as the header', waitForHeader: false },
    ])('closes the socket that sends garbage right after the AMQP header ($name)', async ({ waitForHeader }) => {
      await sendFromBystander();
      const abuser = await RawAmqpSocket.open({ port, ca });
      // A frame header announcing 2 bytes (less than the 8-byte frame header itself: a framing error), then noise.
      const garbage = Buffer.concat([Buffer.from([0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00]), randomBytes(256)]);
      if (waitForHeader) {
        abuser.write(amqpHeader);
        // The hub takes the header and answers with its own [AMQP 2.2].
        expect((await abuser.receivedAtLeast(8)).subarray(0, 8)).toEqual(amqpHeader);
        abuser.write(garbage);
      } else {
        abuser.write(Buffer.concat([amqpHeader, garbage]));
      }
      await abuser.closed;
      const received = abuser.received();
      // Whatever the hub said before closing is AMQP: its header, at most a close naming a framing or decode error.
      if (received.length > 0) expect(received.subarray(0, 8)).toEqual(amqpHeader);
      for (const condition of conditionsIn(received)) expect(connectionErrors).toContain(condition);
      await expectBystanderServed();
    });

    it('closes the connection that sends garbage after it was authorized, and nobody else', async () => {
      const abuser = await connectAs('abuser');
      const sender = await abuser.openSender('/devices/abuser/messages/events');
      await abuser.send(sender, telemetryMessage('abuser-before-garbage', 'fine'));
      // A frame of a reserved type (0x7f) and a body that is no performative.
      abuser.socket.write(
        Buffer.concat([Buffer.from([0x00, 0x00, 0x00, 0x40, 0x02, 0x7f, 0x00, 0x00]), randomBytes(56)]),
      );
      await abuser.disconnected;
      if (abuser.closeError?.condition) expect(connectionErrors).toContain(abuser.closeError.condition);
      await expectBystanderServed();
      await expectAbuserServedAgain('abuser-after-garbage');
    });

    it.each([
      { name: 'AMQP 2.0 (an unknown version)', header: Buffer.from('AMQP\x00\x02\x00\x00', 'latin1') },
      {
        name: 'the in-band TLS upgrade (protocol id 2) on a TLS connection',
        header: Buffer.from('AMQP\x02\x01\x00\x00', 'latin1'),
      },
      { name: 'an HTTP request', header: Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', 'latin1') },
      {
        name: 'an MQTT CONNECT',
        header: Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]),
      },
    ])('answers a wrong protocol header ($name) with a header it supports, then closes', async ({ header }) => {
      const abuser = await RawAmqpSocket.open({ port, ca });
      abuser.write(header);
      await abuser.closed;
      const received = abuser.received();
      // [AMQP 2.2]: "the server MUST send a protocol header with a supported protocol version and then close".
      expect(received.length).toBeGreaterThanOrEqual(8);
      expect(received.subarray(0, 4).toString('latin1')).toBe('AMQP');
      expect([0, 3]).toContain(received[4]);
      expect([...received.subarray(5, 8)]).toEqual([1, 0, 0]);
      await expectBystanderServed();
    });

    it('survives arbitrary bytes after the AMQP header (property-based) and keeps serving the other device', async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 2048 }), async (bytes) => {
          const abuser = await RawAmqpSocket.open({ port, ca });
          abuser.write(Buffer.concat([amqpHeader, Buffer.from(bytes)]));
          // Whether the hub closes or waits for more bytes, the abuser goes away; nothing else may be affected.
          abuser.socket.end();
          await abuser.closed;
          await expectBystanderServed();
        }),
        { numRuns: 40 },
      );
    });
  });

  describe('links the connection is not authorized for', () => {
    const othersAddresses: { address: string; role: 'sender' | 'receiver' }[] = [
      { address: '/devices/victim/messages/events', role: 'sender' },
      { address: '/devices/victim/messages/devicebound', role: 'receiver' },
      { address: '/devices/victim/twin', role: 'sender' },
      { address: '/devices/victim/twin', role: 'receiver' },
      { address: '/devices/victim/methods/devicebound', role: 'receiver' },
      { address: '/devices/victim/methods/devicebound', role: 'sender' },
      { address: '/devices/victim/modules/m1/messages/events', role: 'sender' },
      { address: '/devices/VICTIM/messages/events', role: 'sender' },
    ];

    it.each(othersAddresses)(
      `refuses a $role on another device's $address with ${refusedForOthers}, and keeps the connection`,
      async ({ address, role }) => {
        const abuser = await connectAs('abuser');
        try {
          const refusal = (await abuser.refusalOf(address, role)) as LinkRefusedError | undefined;
          expect(refusal, `the hub served ${address}`).toBeDefined();
          expect(refusal?.condition).toBe(refusedForOthers);
          // Only the link was refused: the connection still carries the abuser's own telemetry.
          expect(abuser.isOpen).toBe(true);
          const sender = await abuser.openSender('/devices/abuser/messages/events');
          await abuser.send(sender, telemetryMessage(`abuser-after-${role}-${address}`, 'ok'));
          if (role === 'sender') {
            // Nothing the refused sender could have sent reached the victim's telemetry.
            await expectNotOnEndpoint([]);
          }
        } finally {
          await abuser.close();
        }
        await expectBystanderServed();
      },
    );

    it('refuses a link to an address IoT Hub does not serve with amqp:not-found', async () => {
      const abuser = await connectAs('abuser');
      try {
        const refusal = await abuser.refusalOf('/plant/line-1/temperature', 'sender');
        expect(refusal?.condition).toBe('amqp:not-found');
      } finally {
        await abuser.close();
      }
    });

    it.each([
      { layer: 'no SASL layer (the Node SDK)', sasl: undefined },
      { layer: 'SASL ANONYMOUS (.NET, Java)', sasl: { mechanism: 'ANONYMOUS' } as const },
    ])(
      `refuses every device link attached before any CBS put-token ($layer) with ${refusedForOthers}`,
      async ({ sasl }) => {
        const abuser = await AmqpDevicePeer.connect({ port, ca, ...(sasl ? { sasl } : {}) });
        try {
          for (const [address, role] of [
            ['/devices/abuser/messages/events', 'sender'],
            ['/devices/abuser/messages/devicebound', 'receiver'],
            ['/devices/abuser/twin', 'receiver'],
            ['/devices/abuser/methods/devicebound', 'receiver'],
          ] as const) {
            const refusal = await abuser.refusalOf(address, role);
            expect(refusal, `the hub served ${address} unauthenticated`).toBeDefined();
            expect(refusal?.condition, address).toBe(refusedForOthers);
          }
          // The same connection authorizes afterwards and is then served (CBS may come at any time, §3.2).
          const token = await tokenFor('abuser');
          expect((await abuser.putToken(audienceOf(token), token)).statusCode).toBe(200);
          const sender = await abuser.openSender('/devices/abuser/messages/events');
          await abuser.send(sender, telemetryMessage(`abuser-after-late-cbs-${sasl?.mechanism ?? 'none'}`, 'ok'));
        } finally {
          await abuser.close();
        }
        await expectBystanderServed();
      },
    );
  });

  describe('SASL PLAIN', () => {
    it('refuses a PLAIN device token with a wrong signature in the SASL outcome; the connection never opens', async () => {
      const token = await deviceSasToken('localhost', 'abuser', randomBytes(32).toString('base64'));
      const refused = await AmqpDevicePeer.connect({
        port,
        ca,
        sasl: { mechanism: 'PLAIN', username: 'abuser@sas.localhost', password: token },
      }).then(
        async (peer) => {
          await peer.close();
          return undefined;
        },
        (error: unknown) => error,
      );
      expect(refused, 'the hub opened a connection for a bad PLAIN token').toBeInstanceOf(Error);
      // sasl-outcome code 1, `auth` [AMQP 5.3.3.6] (rhea reports it as "Failed to authenticate: 1" under
      // amqp:unauthorized-access); the hub sent no AMQP open at all.
      expect(String((refused as Error).message)).toContain('Failed to authenticate: 1');
      expect(String((refused as Error).message)).toContain('amqp:unauthorized-access');
      await expectBystanderServed();
    });

    it('serves a device authorized by SASL PLAIN alone (no CBS), for its own links only', async () => {
      const token = await tokenFor('abuser');
      const peer = await AmqpDevicePeer.connect({
        port,
        ca,
        sasl: { mechanism: 'PLAIN', username: 'abuser@sas.localhost', password: token },
      });
      try {
        const sender = await peer.openSender('/devices/abuser/messages/events');
        await peer.send(sender, telemetryMessage('abuser-plain', 'ok'));
        const refusal = await peer.refusalOf('/devices/victim/messages/events', 'sender');
        expect(refusal?.condition).toBe(refusedForOthers);
      } finally {
        await peer.close();
      }
    });
  });

  describe('CBS put-token with a token the hub must not accept', () => {
    const badTokens: { name: string; token: () => Promise<string> }[] = [
      {
        name: 'a wrong signature',
        token: () => deviceSasToken('localhost', 'abuser', randomBytes(32).toString('base64')),
      },
      {
        name: 'an expired token (an hour ago)',
        token: () => deviceSasToken('localhost', 'abuser', key, { expiresAt: Math.floor(Date.now() / 1000) - 3600 }),
      },
      { name: 'a token for a device that does not exist', token: () => deviceSasToken('localhost', 'nobody', key) },
      {
        name: 'a tampered token (se moved a day on, signature kept)',
        token: async () => {
          const token = await deviceSasToken('localhost', 'abuser', key);
          return token.replace(/se=(\d+)/, (_match, se: string) => `se=${Number(se) + 86_400}`);
        },
      },
    ];

    it.each(badTokens)('answers $name with status-code 401, and nothing attaches', async ({ token: make }) => {
      const abuser = await AmqpDevicePeer.connect({ port, ca });
      try {
        const token = await make();
        const response = await abuser.putToken(audienceOf(token), token);
        expect(response.statusCode).toBe(401);
        expect(typeof response.statusDescription).toBe('string');
        const deviceId = /devices%2F([^&%]+)/i.exec(token)?.[1] ?? 'abuser';
        const refusal = await abuser.refusalOf(`/devices/${deviceId}/messages/events`, 'sender');
        expect(refusal?.condition).toBe(refusedForOthers);
      } finally {
        await abuser.close();
      }
      await expectBystanderServed();
    });
  });

  describe('token expiry', () => {
    // The hub accepts a SAS token until its `se` plus a clock skew of 300 s (amqp-head.ts, as the MQTT head; Azure
    // allows 5 minutes). A token that expired 297 s ago is therefore accepted for about 3 s more.
    const skewSeconds = 300;
    const almostOver = () => Math.floor(Date.now() / 1000) - (skewSeconds - 3);

    it('detaches the links an expired token covered with amqp:unauthorized-access; a new put-token serves again', async () => {
      const abuser = await AmqpDevicePeer.connect({ port, ca });
      try {
        const token = await tokenFor('abuser', { expiresAt: almostOver() });
        expect((await abuser.putToken(audienceOf(token), token)).statusCode).toBe(200);
        const sender = await abuser.openSender('/devices/abuser/messages/events');
        await abuser.send(sender, telemetryMessage('abuser-before-expiry', 'ok'));
        const detached = await abuser.whenDetached(sender);
        expect(detached.condition).toBe(refusedForOthers);
        // Only the covered links went: the connection renews and is served again.
        expect(abuser.isOpen).toBe(true);
        const fresh = await tokenFor('abuser');
        expect((await abuser.putToken(audienceOf(fresh), fresh)).statusCode).toBe(200);
        const again = await abuser.openSender('/devices/abuser/messages/events');
        await abuser.send(again, telemetryMessage('abuser-after-expiry', 'ok'));
      } finally {
        await abuser.close();
      }
      await expectBystanderServed();
    });

    it('keeps the links of a token renewed by a second put-token before it expired', async () => {
      const abuser = await AmqpDevicePeer.connect({ port, ca });
      try {
        const expiresAt = almostOver();
        const first = await tokenFor('abuser', { expiresAt });
        expect((await abuser.putToken(audienceOf(first), first)).statusCode).toBe(200);
        const sender = await abuser.openSender('/devices/abuser/messages/events');
        const renewed = await tokenFor('abuser');
        expect((await abuser.putToken(audienceOf(renewed), renewed)).statusCode).toBe(200);
        // Past the moment the first token stopped being accepted, the same link still carries telemetry.
        const over = (expiresAt + skewSeconds + 1) * 1000 - Date.now();
        await new Promise((resolve) => setTimeout(resolve, Math.max(over, 0)));
        await abuser.send(sender, telemetryMessage('abuser-after-renewal', 'ok'));
        expect(sender.is_open()).toBe(true);
      } finally {
        await abuser.close();
      }
    });
  });

  describe('oversize and cut-off messages', () => {
    it.each([
      { name: '257 KB (over the 256 KB telemetry limit)', bytes: 257 * 1024, messageId: 'oversize-257k' },
      { name: '2 MiB', bytes: 2 * 1024 * 1024, messageId: 'oversize-2m' },
    ])(
      `refuses $name of telemetry with ${sizeExceeded}; the connection and others keep working`,
      async ({ bytes, messageId }) => {
        const abuser = await connectAs('abuser');
        try {
          let sender = await abuser.openSender('/devices/abuser/messages/events');
          const refused = await abuser.send(sender, telemetryMessage(messageId, Buffer.alloc(bytes, 0x61))).then(
            () => undefined,
            (error: unknown) => error,
          );
          expect(refused, 'the hub accepted the oversize message').toBeInstanceOf(DeliveryFailedError);
          // A `rejected` outcome, or the link detached, both carrying the condition (§3.4).
          expect(['rejected', 'detached']).toContain((refused as DeliveryFailedError).outcome);
          expect((refused as DeliveryFailedError).condition).toBe(sizeExceeded);
          // The connection survives; a detached link is attached again.
          expect(abuser.isOpen).toBe(true);
          if (!sender.is_open()) sender = await abuser.openSender('/devices/abuser/messages/events');
          await abuser.send(sender, telemetryMessage(`${messageId}-then-small`, 'small'));
        } finally {
          await abuser.close();
        }
        await expectBystanderServed();
        await expectNotOnEndpoint([messageId]);
      },
    );

    it('a client that vanishes mid-transfer stores nothing and disturbs nobody', async () => {
      const abuser = await connectAs('abuser');
      const sender = await abuser.openSender('/devices/abuser/messages/events');
      await abuser.credit(sender);
      // Let half of the next 200 KB through, then drop the socket: the transfer's frames stop mid-message.
      const socket = abuser.socket;
      const write = socket.write.bind(socket) as (chunk: Buffer, callback?: () => void) => boolean;
      let budget = 100 * 1024;
      socket.write = ((chunk: Buffer) => {
        if (budget <= 0) return false;
        if (chunk.length < budget) {
          budget -= chunk.length;
          return write(chunk);
        }
        const part = chunk.subarray(0, budget);
        budget = 0;
        write(part, () => socket.destroy());
        return false;
      }) as typeof socket.write;
      const outcome = abuser
        .send(sender, telemetryMessage('vanished-1', Buffer.alloc(200 * 1024, 0x62)))
        .catch((error: unknown) => error);
      await abuser.disconnected;
      expect(await outcome).toBeInstanceOf(DeliveryFailedError);
      await expectBystanderServed();
      await expectAbuserServedAgain('abuser-after-vanishing');
      await expectNotOnEndpoint(['vanished-1']);
    });
  });

  it('every telemetry message accepted from the well-behaved device is on the built-in endpoint', async () => {
    expect(acknowledged.length).toBe(sent);
    const events = await readBuiltInEndpoint(hub.info);
    const seen = events.filter((event) => isTelemetry(event) && event.deviceId === 'bystander');
    const ids = seen.map((event) => event.messageId);
    for (const messageId of acknowledged) expect(ids).toContain(messageId);
    // No accepted message is stored twice: the bystander never had to resend.
    expect(new Set(ids).size).toBe(ids.length);
    expect(seen[0]?.systemProperties['iothub-connection-device-id']).toBe('bystander');
    expect(seen[0]?.properties).toEqual({ n: '1' });
  });
});
