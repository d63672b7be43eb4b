import { HubError } from '@fieldhub/protocol';
import type { IConnectPacket, IPublishPacket, Packet } from 'mqtt-packet';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { DpsAnswer, DpsService } from '../../dps/contract';
import { DpsSession, isDpsConnect, maxPendingDpsRequests } from './dps-session';
import type { MqttSession } from './session';

const connect = (clientId: string, username?: string): IConnectPacket => ({
  cmd: 'connect',
  clientId,
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: true,
  keepalive: 60,
  ...(username === undefined ? {} : { username }),
});

describe('isDpsConnect', () => {
  it('recognises the provisioning username of the official client (captures/dps.txt)', () => {
    const username =
      '0ne00000001/registrations/demo-dps-dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1';
    expect(isDpsConnect(connect('demo-dps-dev1', username))).toBe(true);
    expect(isDpsConnect(connect('demo-dps-dev1', '0ne00000001/registrations/demo-dps-dev1'))).toBe(true);
  });

  it('leaves every device and module CONNECT to the device path, a device named registrations included', () => {
    expect(isDpsConnect(connect('d1', 'localhost/d1/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('d1/m1', 'localhost/d1/m1/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('registrations', 'localhost/registrations/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('registrations/m1', 'localhost/registrations/m1/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('d1'))).toBe(false);
    expect(isDpsConnect(connect('', '0ne00000001/registrations//api-version=2019-03-31'))).toBe(false);
  });

  it('needs the client id to be the registration id of the username', () => {
    expect(isDpsConnect(connect('other', '0ne00000001/registrations/dev1/api-version=2019-03-31'))).toBe(false);
    expect(isDpsConnect(connect('dev', '0ne00000001/registrations/dev1/api-version=2019-03-31'))).toBe(false);
  });
});

describe('DpsSession', () => {
  /** The part of MqttSession a DpsSession writes to, recording what it sends. */
  const fakeSession = () => {
    const published: { topic: string; body: string }[] = [];
    const sent: Packet[] = [];
    let closedWith: string | undefined;
    const session = {
      logger: pino({ level: 'silent' }),
      describe: () => ({}),
      send: (packet: Packet) => sent.push(packet),
      write: () => undefined,
      publish: (topic: string, payload: Buffer | string) => published.push({ topic, body: String(payload) }),
      close: (reason: string) => {
        closedWith = reason;
      },
    };
    return { session: session as unknown as MqttSession, published, sent, closed: () => closedWith };
  };

  /** A provisioning service whose registrations stay pending until released. */
  const pendingService = (): DpsService & { release(): void } => {
    const waiting: (() => void)[] = [];
    const answer: DpsAnswer = { status: 202, body: { operationId: 'op', status: 'assigning' }, retryAfterSeconds: 2 };
    return {
      idScope: '0ne00000001',
      hostName: 'localhost',
      authenticate: async (idScope, registrationId) => ({ idScope, registrationId, expiresAtMs: undefined }),
      register: () => new Promise<DpsAnswer>((resolve) => waiting.push(() => resolve(answer))),
      operationStatus: async () => answer,
      release: () => {
        for (const resolve of waiting.splice(0)) resolve();
      },
    };
  };

  const principal = { idScope: '0ne00000001', registrationId: 'dev1', expiresAtMs: undefined };
  const registerPacket = (rid: number): IPublishPacket => ({
    cmd: 'publish',
    topic: `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`,
    payload: Buffer.from('{"registrationId":"dev1"}'),
    qos: 1,
    messageId: rid,
    retain: false,
    dup: false,
  });

  it(`answers 429 with retry-after beyond ${maxPendingDpsRequests} requests in flight, and serves them once answered`, async () => {
    const { session, published, sent } = fakeSession();
    const service = pendingService();
    const dps = new DpsSession(session, service, principal);
    dps.subscribe({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] });
    for (let rid = 1; rid <= maxPendingDpsRequests + 1; rid++) dps.publish(registerPacket(rid));
    // Every request is acknowledged as it arrives.
    expect(sent.filter((packet) => packet.cmd === 'puback')).toHaveLength(maxPendingDpsRequests + 1);
    expect(published).toHaveLength(1);
    expect(published[0]?.topic).toBe(`$dps/registrations/res/429/?$rid=${maxPendingDpsRequests + 1}&retry-after=1`);
    expect(JSON.parse(published[0]?.body ?? '{}')).toMatchObject({ errorCode: 429001 });
    service.release();
    await new Promise((resolve) => setImmediate(resolve));
    expect(published).toHaveLength(maxPendingDpsRequests + 1);
    expect(published[1]?.topic).toBe('$dps/registrations/res/202/?$rid=1&retry-after=2');
    dps.publish(registerPacket(100));
    service.release();
    await new Promise((resolve) => setImmediate(resolve));
    expect(published.at(-1)?.topic).toBe('$dps/registrations/res/202/?$rid=100&retry-after=2');
  });

  it('answers a 429 of the service with retry-after, as its own', async () => {
    const { session, published } = fakeSession();
    const service: DpsService = {
      ...pendingService(),
      register: async () => {
        throw new HubError('ThrottlingException', 'Too many registrations in progress');
      },
    };
    const dps = new DpsSession(session, service, principal);
    dps.subscribe({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] });
    dps.publish(registerPacket(7));
    await new Promise((resolve) => setImmediate(resolve));
    expect(published[0]?.topic).toBe('$dps/registrations/res/429/?$rid=7&retry-after=1');
  });

  it('closes the connection on a device topic and answers nothing before the subscription', async () => {
    const { session, published, closed } = fakeSession();
    const dps = new DpsSession(session, pendingService(), principal);
    dps.publish({ ...registerPacket(1) });
    expect(published).toHaveLength(0);
    dps.publish({ ...registerPacket(2), topic: 'devices/dev1/messages/events/' });
    expect(closed()).toMatch(/not a provisioning request/);
  });
});
