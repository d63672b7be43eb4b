// The MQTT frames register() sends, read by a scripted DPS on real TLS with mqtt-packet: they must be the official
// client's (capture dps.txt): CONNECT, SUBSCRIBE $dps/registrations/res/# QoS 1, PUBLISH QoS 1 with a $rid, a poll
// with a single space as body, DISCONNECT at the end.
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { createRootCa, issueServerCertificate } from '@fieldhub/auth';
import { AuthenticationError, TimeoutError } from '@fieldhub/protocol';
import * as mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from './register';

type Packet = mqttPacket.Packet;

/** How the fake answers one registration request or poll: status, retry-after and body. */
interface Reply {
  readonly status: number;
  readonly retryAfter?: number;
  readonly body: unknown;
}

const key = Buffer.alloc(32, 5).toString('base64');

describe('register() over MQTT: the frames', () => {
  let server: Server;
  let ca: string;
  let port: number;
  let packets: Packet[] = [];
  let connackCode = 0;
  let replies: Reply[] = [];
  const openConnections = () => new Promise<number>((resolve) => server.getConnections((_, count) => resolve(count)));

  beforeAll(async () => {
    const root = await createRootCa({ commonName: 'provisioning mqtt test CA' });
    const leaf = await issueServerCertificate({ issuer: root, ipAddresses: ['127.0.0.1'] });
    ca = root.certificate;
    server = createServer({ cert: leaf.certificate, key: leaf.privateKey as string }, (socket: Socket) => {
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      const send = (packet: Record<string, unknown>) =>
        socket.write(mqttPacket.generate(packet as unknown as Packet, { protocolVersion: 4 }));
      socket.on('error', () => undefined);
      socket.on('data', (chunk) => parser.parse(chunk));
      parser.on('packet', (packet: Packet) => {
        packets.push(packet);
        if (packet.cmd === 'connect') {
          send({ cmd: 'connack', returnCode: connackCode, sessionPresent: false });
          if (connackCode !== 0) socket.end();
        } else if (packet.cmd === 'subscribe') {
          send({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
        } else if (packet.cmd === 'publish') {
          send({ cmd: 'puback', messageId: packet.messageId });
          const rid = /\$rid=([^&]+)/.exec(packet.topic)?.[1];
          const reply = replies.shift();
          if (reply === undefined) return; // never answer
          const retry = reply.retryAfter === undefined ? '' : `&retry-after=${reply.retryAfter}`;
          send({
            cmd: 'publish',
            topic: `$dps/registrations/res/${reply.status}/?$rid=${rid}${retry}`,
            payload: Buffer.from(JSON.stringify(reply.body)),
            qos: 0,
          });
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const run = (script: Reply[], extra: Record<string, unknown> = {}) => {
    packets = [];
    replies = script;
    return register({
      idScope: '0ne00000001',
      registrationId: 'demo-dps-dev1',
      symmetricKey: key,
      provisioningHost: `127.0.0.1:${port}`,
      ca,
      ...extra,
    });
  };

  it('sends CONNECT, SUBSCRIBE, register and poll PUBLISHes as the official client, then DISCONNECT', async () => {
    const result = await run([
      { status: 202, retryAfter: 0, body: { operationId: 'op-1', status: 'assigning' } },
      {
        status: 200,
        body: {
          operationId: 'op-1',
          status: 'assigned',
          registrationState: {
            registrationId: 'demo-dps-dev1',
            assignedHub: 'localhost',
            deviceId: 'demo-dps-dev1',
            status: 'assigned',
            substatus: 'initialAssignment',
          },
        },
      },
    ]);
    expect(result).toMatchObject({ assignedHub: 'localhost', deviceId: 'demo-dps-dev1', operationId: 'op-1' });
    await expect.poll(openConnections).toBe(0);

    expect(packets.map((packet) => packet.cmd)).toEqual(['connect', 'subscribe', 'publish', 'publish', 'disconnect']);
    const [connect, subscribe, put, get] = packets as [
      mqttPacket.IConnectPacket,
      mqttPacket.ISubscribePacket,
      mqttPacket.IPublishPacket,
      mqttPacket.IPublishPacket,
    ];
    expect(connect).toMatchObject({ clientId: 'demo-dps-dev1', clean: true, protocolVersion: 4, protocolId: 'MQTT' });
    expect(connect.username).toBe(
      '0ne00000001/registrations/demo-dps-dev1/api-version=2019-03-31&ClientVersion=%40fieldhub%2Fprovisioning%2F0.1.0',
    );
    expect(String(connect.password)).toMatch(
      /^SharedAccessSignature sr=0ne00000001\/registrations\/demo-dps-dev1&sig=[^&]+&skn=registration&se=\d+$/,
    );
    expect(subscribe.subscriptions).toEqual([{ topic: '$dps/registrations/res/#', qos: 1 }]);
    expect(put.qos).toBe(1);
    expect(put.topic).toMatch(/^\$dps\/registrations\/PUT\/iotdps-register\/\?\$rid=[0-9a-f-]{36}$/);
    expect(String(put.payload)).toBe('{"registrationId":"demo-dps-dev1"}');
    expect(get.qos).toBe(1);
    expect(get.topic).toMatch(
      /^\$dps\/registrations\/GET\/iotdps-get-operationstatus\/\?\$rid=[0-9a-f-]{36}&operationId=op-1$/,
    );
    expect(String(get.payload)).toBe(' ');
  });

  it('sends no password with a client certificate', async () => {
    const root = await createRootCa({ commonName: 'device CA' });
    const { issueDeviceCertificate } = await import('@fieldhub/auth');
    const leaf = await issueDeviceCertificate({ issuer: root, deviceId: 'cert-dev' });
    await run(
      [
        {
          status: 200,
          body: {
            operationId: 'op-2',
            status: 'assigned',
            registrationState: { assignedHub: 'h', deviceId: 'cert-dev' },
          },
        },
      ],
      { registrationId: undefined, symmetricKey: undefined, x509: { cert: leaf.certificate, key: leaf.privateKey } },
    );
    const connect = packets[0] as mqttPacket.IConnectPacket;
    expect(connect.clientId).toBe('cert-dev');
    expect(connect.password).toBeUndefined();
  });

  it('maps CONNACK 5 to AuthenticationError', async () => {
    connackCode = 5;
    try {
      await expect(run([])).rejects.toBeInstanceOf(AuthenticationError);
      await expect.poll(openConnections).toBe(0);
    } finally {
      connackCode = 0;
    }
  });

  it('times out when DPS never answers, and closes the connection', async () => {
    await expect(run([], { timeoutMs: 500 })).rejects.toBeInstanceOf(TimeoutError);
    expect(packets.map((packet) => packet.cmd)).toEqual(['connect', 'subscribe', 'publish', 'disconnect']);
    await expect.poll(openConnections).toBe(0);
  });
});
