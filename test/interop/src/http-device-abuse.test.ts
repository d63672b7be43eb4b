import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from './support/built-in-endpoint';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { deviceSasToken } from './support/raw-mqtt-device';
import { createDevice, hubCa, serviceCall } from './support/service-rest';

// Misbehaving HTTPS devices against the real hub (child process, TLS, 127.0.0.1, an ephemeral HTTPS port), written
// byte by byte on raw TLS sockets: truncated, oversized, malformed and piled-up requests on the device HTTPS API
// (protocol-device.md §4). Each abuse must cost only the abuser's request or connection: nothing it sent is
// appended, and a well-behaved device on the same hub keeps sending telemetry and settling its cloud-to-device
// messages.

let hub: HubProcess;
const sockets: TLSSocket[] = [];
const tokens = new Map<string, string>();

beforeAll(async () => {
  hub = await startHubProcess({ httpsPort: 0 });
  for (const deviceId of ['abuser', 'bystander']) {
    const identity = await createDevice(hub.info, deviceId);
    tokens.set(
      deviceId,
      await deviceSasToken('localhost', deviceId, identity.authentication.symmetricKey?.primaryKey ?? ''),
    );
  }
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await hub?.dispose();
});

function open(): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: hub.info.ports.https,
      servername: 'localhost',
      ca: hubCa(hub.info),
    });
    sockets.push(socket);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything the hub writes on `socket` until it closes it (or `idleMs` pass without a byte). */
function readUntilClosed(socket: TLSSocket, idleMs = 3_000): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    let timer = setTimeout(finish, idleMs);
    function finish() {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    }
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(finish, idleMs);
    });
    socket.once('close', finish);
    socket.once('error', finish);
  });
}

/** The status codes of the responses in `text`, in order (a response may follow a body without a line break). */
const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));

function head(method: string, path: string, deviceId: string, headers: string[] = []): string {
  return [
    `${method} ${path}?api-version=2021-04-12 HTTP/1.1`,
    'Host: localhost',
    `Authorization: ${tokens.get(deviceId)}`,
    ...headers,
    '',
    '',
  ].join('\r\n');
}

async function bystanderWorks(body: string): Promise<void> {
  const socket = await open();
  socket.write(
    `${head('POST', '/devices/bystander/messages/events', 'bystander', [`Content-Length: ${body.length}`, 'Connection: close'])}${body}`,
  );
  expect(statuses(await readUntilClosed(socket))).toEqual([204]);
}

async function abuserTelemetry(): Promise<number> {
  const events = await readBuiltInEndpoint(hub.info);
  return events.filter((event) => isTelemetry(event) && event.deviceId === 'abuser').length;
}

describe('the device HTTPS API under abuse', () => {
  it('appends nothing of a body cut off before its Content-Length', async () => {
    const socket = await open();
    socket.write(`${head('POST', '/devices/abuser/messages/events', 'abuser', ['Content-Length: 1000'])}only ten b`);
    socket.end();
    await readUntilClosed(socket, 1_000);
    await bystanderWorks('after-truncated');
    expect(await abuserTelemetry()).toBe(0);
  });

  it('answers 413 to a chunked body that grows past 256 KB, and appends nothing of it', async () => {
    const socket = await open();
    socket.write(head('POST', '/devices/abuser/messages/events', 'abuser', ['Transfer-Encoding: chunked']));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let index = 0; index < 6; index++) socket.write(`${chunk.length.toString(16)}\r\n${chunk.toString()}\r\n`);
    socket.write('0\r\n\r\n');
    const answer = await readUntilClosed(socket);
    expect(statuses(answer)).toEqual([413]);
    expect(answer).toContain('MessageTooLarge');
    await bystanderWorks('after-oversize');
    expect(await abuserTelemetry()).toBe(0);
  });

  it('answers 400 to malformed chunked encoding and to a batch of garbage', async () => {
    const chunked = await open();
    chunked.write(
      `${head('POST', '/devices/abuser/messages/events', 'abuser', ['Transfer-Encoding: chunked'])}zz\r\nnot hex\r\n`,
    );
    expect(statuses(await readUntilClosed(chunked))).toEqual([400]);

    const batch = await open();
    const garbage = '[{"body":"YQ=="}, {"body": ';
    batch.write(
      `${head('POST', '/devices/abuser/messages/events', 'abuser', [
        'Content-Type: application/vnd.microsoft.iothub.json',
        `Content-Length: ${garbage.length}`,
        'Connection: close',
      ])}${garbage}`,
    );
    expect(statuses(await readUntilClosed(batch))).toEqual([400]);
    await bystanderWorks('after-malformed');
    expect(await abuserTelemetry()).toBe(0);
  });

  it('answers 431 to a header flood', async () => {
    const socket = await open();
    const flood = Array.from({ length: 200 }, (_, index) => `iothub-app-p${index}: ${'v'.repeat(200)}`);
    socket.write(head('POST', '/devices/abuser/messages/events', 'abuser', [...flood, 'Content-Length: 1']));
    socket.write('x');
    expect(statuses(await readUntilClosed(socket))).toEqual([431]);
    await bystanderWorks('after-flood');
    expect(await abuserTelemetry()).toBe(0);
  });

  it('answers pipelined requests on one connection in order, refusing the bad ones only', async () => {
    const socket = await open();
    socket.write(
      [
        `${head('POST', '/devices/abuser/messages/events', 'abuser', ['Content-Length: 2'])}ok`,
        `${head('POST', '/devices/bystander/messages/events', 'abuser', ['Content-Length: 2'])}no`,
        `${head('POST', '/devices/abuser/messages/events', 'abuser', ['Content-Length: 3', 'iothub-app-k: a b'])}bad`,
        `${head('GET', '/devices/abuser/messages/devicebound', 'abuser', ['Connection: close'])}`,
      ].join(''),
    );
    expect(statuses(await readUntilClosed(socket))).toEqual([204, 401, 400, 204]);
    expect(await abuserTelemetry()).toBe(1);
  });

  it('hands a cloud-to-device message to exactly one of many concurrent polls', async () => {
    const identity = await createDevice(hub.info, 'poller');
    tokens.set(
      'poller',
      await deviceSasToken('localhost', 'poller', identity.authentication.symmetricKey?.primaryKey ?? ''),
    );
    await serviceCall(hub.info, 'POST', '/fieldhub/devices/poller/messages/devicebound', [202], {
      body: 'only once',
      headers: { 'content-type': 'text/plain', 'iothub-messageid': 'once' },
    });
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const socket = await open();
        socket.write(head('GET', '/devices/poller/messages/devicebound', 'poller', ['Connection: close']));
        return readUntilClosed(socket);
      }),
    );
    const codes = answers.map((answer) => statuses(answer)[0]);
    expect(codes.filter((code) => code === 200)).toHaveLength(1);
    expect(codes.filter((code) => code === 204)).toHaveLength(19);
  });
});
