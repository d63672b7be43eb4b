import { describe, expect, it } from 'vitest';
import { type BridgeMessage, Capability, decodeMessage, encodeFrame, encodeMessage, FrameDecoder } from './frame/index';
import { cloudToDeviceProperties, McuSession, toTelemetryMessage } from './mcu-session';

/** A session with no hub behind it: what it answers before any device client exists. */
function session(capabilities = 0, link: { queueLimit?: number } = {}, window = 4) {
  const decoder = new FrameDecoder(65535);
  const sent: BridgeMessage[] = [];
  const mcuSession = new McuSession({
    name: 'test',
    hub: { hostName: 'hub.invalid', transport: 'amqp' },
    devices: [],
    logger: {},
    link,
    write: (bytes) => {
      for (const frame of decoder.push(bytes)) sent.push(decodeMessage(frame.type, frame.payload));
    },
  });
  let seq = 1;
  const fromMcu = (message: BridgeMessage, reliable = true, linkSeq?: number): void => {
    const { type, payload } = encodeMessage(message);
    mcuSession.receive(encodeFrame({ type, seq: linkSeq ?? (reliable ? seq++ : 0), payload }));
  };
  mcuSession.opened();
  fromMcu({ kind: 'hello', protocol: 1, capabilities, maxFrame: 512, window, bootId: 1 }, false);
  return { mcuSession, sent, fromMcu };
}

describe('an MCU session before IDENTITY', () => {
  it('sends TIME unasked after link-up and on TIME_REQUEST', async () => {
    const { sent, fromMcu, mcuSession } = session();
    expect(sent.filter((message) => message.kind === 'time')).toHaveLength(1);
    fromMcu({ kind: 'timeRequest' });
    expect(sent.filter((message) => message.kind === 'time')).toHaveLength(2);
    await mcuSession.close();
  });

  it('answers application frames with ERROR NoIdentity', async () => {
    const { sent, fromMcu, mcuSession } = session();
    fromMcu({ kind: 'twinGet', rid: 1 });
    expect(sent.find((message) => message.kind === 'error')).toMatchObject({ refSeq: 1, code: 4 });
    await mcuSession.close();
  });

  it('answers a gateway-to-MCU type sent by the MCU with ERROR Unsupported', async () => {
    const { sent, fromMcu, mcuSession } = session();
    fromMcu({ kind: 'twinDesired', version: 1, json: '{}' });
    expect(sent.find((message) => message.kind === 'error')).toMatchObject({ refSeq: 1, code: 5 });
    await mcuSession.close();
  });

  it('refuses auth 1 from an MCU without the SIGN capability', async () => {
    const { sent, fromMcu, mcuSession } = session(Capability.twin);
    fromMcu({ kind: 'identity', deviceId: 'd1', moduleId: '', auth: 1 });
    expect(sent.find((message) => message.kind === 'error')).toMatchObject({ refSeq: 1, code: 5 });
    expect(sent.find((message) => message.kind === 'status')).toMatchObject({ state: 3, status: 401 });
    await mcuSession.close();
  });
});

describe('answers the MCU waits for', () => {
  it('wait for room behind a full window instead of being dropped', async () => {
    // Window 1 and no queue: the TIME sent at link-up fills the window until the MCU acknowledges it.
    const { sent, fromMcu, mcuSession } = session(0, { queueLimit: 0 }, 1);
    fromMcu({ kind: 'identity', deviceId: 'unlisted', moduleId: '', auth: 0 });
    fromMcu({ kind: 'twinReported', rid: 9, json: 'not json' });
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(sent.some((message) => message.kind === 'twinResult')).toBe(false);
    fromMcu({ kind: 'ack' }, false, 1);
    for (let waited = 0; !sent.some((message) => message.kind === 'twinResult') && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(sent.find((message) => message.kind === 'twinResult')).toEqual({
      kind: 'twinResult',
      rid: 9,
      status: 400,
      version: 0,
    });
    await mcuSession.close();
  });
});

describe('an MCU that reboots', () => {
  it('gets no answer meant for its previous boot (a TELEMETRY_ACK or TWIN_RESULT for an id or rid it may reuse)', async () => {
    // Window 8: everything the gateway sends fits without ACKs from this MCU.
    const { sent, fromMcu, mcuSession } = session(0, {}, 8);
    fromMcu({ kind: 'identity', deviceId: 'unlisted', moduleId: '', auth: 0 });
    fromMcu({ kind: 'telemetry', id: 1, properties: [], body: Uint8Array.of(1) });
    fromMcu({ kind: 'twinGet', rid: 1 });
    // The reboot: a new bootId, sequences from 1 again; its IDENTITY replaces the device client of the old boot.
    fromMcu({ kind: 'hello', protocol: 1, capabilities: 0, maxFrame: 512, window: 8, bootId: 2 }, false);
    const rebooted = sent.length;
    fromMcu({ kind: 'identity', deviceId: 'unlisted', moduleId: '', auth: 0 }, true, 1);
    // Both slots settle (the new one refused: no key for it) before these checks.
    for (let waited = 0; waited < 5000; waited += 20) {
      if (sent.slice(rebooted).some((message) => message.kind === 'status' && message.state === 3)) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const afterReboot = sent.slice(rebooted);
    expect(afterReboot.some((message) => message.kind === 'status' && message.state === 3)).toBe(true);
    expect(afterReboot.filter((message) => message.kind === 'telemetryAck' || message.kind === 'twin')).toEqual([]);
    await mcuSession.close();
  });
});

describe('property mapping (PROTOCOL.md §5.1)', () => {
  it('maps $. names to system properties and keeps the rest (unknown $. names included) as application properties', () => {
    const message = toTelemetryMessage(
      [
        ['$.mid', 'm1'],
        ['$.cid', 'c1'],
        ['$.ct', 'application/json'],
        ['$.ce', 'utf-8'],
        ['$.uid', 'u1'],
        ['$.exp', '2030-01-01T00:00:00Z'],
        ['$.future', 'x'],
        ['zone', 'b'],
      ],
      Uint8Array.of(1),
    );
    expect(message).toEqual({
      body: Uint8Array.of(1),
      messageId: 'm1',
      correlationId: 'c1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'u1',
      expiryTimeUtc: '2030-01-01T00:00:00Z',
      properties: { '$.future': 'x', zone: 'b' },
    });
  });

  it('writes a cloud-to-device message system properties first, then its application properties', () => {
    const properties = cloudToDeviceProperties({
      body: new Uint8Array(0),
      properties: { prio: 'high' },
      messageId: 'm1',
      correlationId: 'c1',
      text: () => '',
      complete: async () => undefined,
      reject: async () => undefined,
      abandon: async () => undefined,
    });
    expect(properties).toEqual([
      ['$.mid', 'm1'],
      ['$.cid', 'c1'],
      ['prio', 'high'],
    ]);
  });
});
