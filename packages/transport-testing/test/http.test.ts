/**
 * The transport conformance suite for `http()`, and what only HTTPS does against the real hub: telemetry batches,
 * module telemetry, polled cloud-to-device with an X.509 device, SAS tokens renewed per request through
 * `updateCredentials`, the gateway host name, the client's polling over device-core's connection manager, and
 * file upload (`httpFileUpload()`) to the hub's embedded blob endpoint (protocol-device.md §4).
 */
import { createSasToken } from '@fieldhub/auth';
import { CloudToDevice, ConnectionManager } from '@fieldhub/device-core';
import type { CredentialProvider, Transport, TransportCredentials } from '@fieldhub/device-core/transport';
import { blobUrlOf } from '@fieldhub/device-core/transport';
import { http, httpFileUpload } from '@fieldhub/transport-http';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeTransportConformance } from '../src/conformance';
import { type ConformanceHub, recordingEvents, startConformanceHub } from '../src/index';

describeTransportConformance('https', (hub) => http({ port: hub.info.ports.https }), { propertyCharset: 'httpToken' });

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The hub's SAS clock skew (it accepts a token this long past its `se`). */
const hubClockSkewSeconds = 300;

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('https against the real hub: what only HTTPS does', () => {
  let hub: ConformanceHub;
  const open: Transport[] = [];
  let counter = 0;
  const nextId = (prefix: string): string => `${prefix}-${process.pid}-${++counter}`;

  beforeAll(async () => {
    hub = await startConformanceHub();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((transport) => transport.disconnect()));
  });
  afterAll(async () => {
    await hub?.close();
  });

  async function connect(credentials: TransportCredentials) {
    const transport = http({ port: hub.info.ports.https }).create();
    open.push(transport);
    const recorded = recordingEvents();
    await transport.connect({ credentials, ca: hub.ca, timeoutMs: 10_000 }, recorded.events);
    return { transport, recorded };
  }

  async function telemetryOf(deviceId: string) {
    const reader = await hub.hub.core.telemetry.read({ from: 'earliest', live: false });
    const events = [];
    for await (const event of reader) {
      if (event.deviceId === deviceId && (event.source === undefined || event.source === 'Telemetry')) {
        events.push(event);
      }
    }
    return events;
  }

  it('sends a batch in one request: every message with its properties on the built-in endpoint, in order', async () => {
    const device = await hub.createSasDevice(nextId('batch'));
    const { transport } = await connect(await device.credentials());
    await transport.sendTelemetryBatch?.([
      { body: encoder.encode('a'), messageId: 'b-1', properties: { Kind: 'first' } },
      { body: encoder.encode('b'), messageId: 'b-2', contentType: 'text/plain', contentEncoding: 'utf-8' },
      { body: new Uint8Array([0, 255, 1]), messageId: 'b-3' },
    ]);
    const events = await telemetryOf(device.deviceId);
    expect(events.map((event) => event.messageId)).toEqual(['b-1', 'b-2', 'b-3']);
    expect(decoder.decode(events[0]?.body)).toBe('a');
    expect(events[0]?.properties).toMatchObject({ Kind: 'first' });
    expect(events[1]?.contentType).toBe('text/plain');
    expect(events[1]?.contentEncoding).toBe('utf-8');
    expect([...(events[2]?.body ?? [])]).toEqual([0, 255, 1]);
  });

  it('refuses a batch over 256 KB in total with MessageTooLarge and sends none of it', async () => {
    const device = await hub.createSasDevice(nextId('batch'));
    const { transport } = await connect(await device.credentials());
    const half = { body: new Uint8Array(128 * 1024 + 1) };
    const error = await transport.sendTelemetryBatch?.([half, half]).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'ArgumentError', code: 'MessageTooLarge' });
    expect(transport.connected).toBe(true);
    expect(await telemetryOf(device.deviceId)).toHaveLength(0);
  });

  it('refuses a property name HTTP headers cannot carry with ArgumentError, locally', async () => {
    const device = await hub.createSasDevice(nextId('props'));
    const { transport, recorded } = await connect(await device.credentials());
    const error = await transport
      .sendTelemetry({ body: encoder.encode('x'), properties: { 'a/b': 'c' } })
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'ArgumentError', field: 'properties' });
    expect(transport.connected).toBe(true);
    expect(recorded.disconnected.received).toHaveLength(0);
  });

  it('sends telemetry as a module, and refuses cloud-to-device for a module', async () => {
    const device = await hub.createSasDevice(nextId('module'));
    const created = (await hub.serviceRequest('PUT', `/devices/${device.deviceId}/modules/sensor`, {
      deviceId: device.deviceId,
      moduleId: 'sensor',
    })) as { authentication: { symmetricKey: { primaryKey: string } } };
    const sasToken = await createSasToken({
      resourceUri: `${hub.hostName}/devices/${device.deviceId}/modules/sensor`,
      key: created.authentication.symmetricKey.primaryKey,
    });
    const { transport } = await connect({
      hostName: hub.hostName,
      deviceId: device.deviceId,
      moduleId: 'sensor',
      sasToken,
    });
    await transport.sendTelemetry({ body: encoder.encode('from the module'), messageId: 'mod-1' });
    const events = await telemetryOf(device.deviceId);
    expect(events.map((event) => [event.moduleId, event.messageId])).toEqual([['sensor', 'mod-1']]);
    const error = await transport.receiveCloudToDevice?.().catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'UnsupportedFeatureError' });
  });

  it('polls and completes a cloud-to-device message as an X.509 device (client certificate on every request)', async () => {
    const device = await hub.createX509Device(nextId('x509'));
    const { transport } = await connect(await device.credentials());
    await hub.hub.core.cloudToDevice.send(device.deviceId, { body: encoder.encode('to x509'), messageId: 'x-1' });
    const message = await transport.receiveCloudToDevice?.();
    expect(message?.messageId).toBe('x-1');
    await transport.settleCloudToDevice(message?.lockToken ?? '', 'complete');
    expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(0);
  });

  it('carries a renewed SAS token from updateCredentials; the token it replaced is refused once expired', async () => {
    const device = await hub.createSasDevice(nextId('renew'));
    // Accepted for a few more seconds only: `se` lies just inside the hub's clock skew.
    const expiresAt = Math.floor(Date.now() / 1000) - hubClockSkewSeconds + 3;
    const shortLived: TransportCredentials = {
      hostName: hub.hostName,
      deviceId: device.deviceId,
      sasToken: await createSasToken({
        resourceUri: `${hub.hostName}/devices/${device.deviceId}`,
        key: device.primaryKey,
        expiresAt,
      }),
      sasTokenExpiresAt: expiresAt * 1000,
    };
    const renewed = await connect(shortLived);
    const control = await connect(shortLived);
    await renewed.transport.sendTelemetry({ body: encoder.encode('first token') });
    await renewed.transport.updateCredentials?.(await device.credentials());
    const refusedFrom = (expiresAt + hubClockSkewSeconds) * 1000 + 1000;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, refusedFrom - Date.now())));

    await renewed.transport.sendTelemetry({ body: encoder.encode('after the first token expired') });
    expect(renewed.transport.connected).toBe(true);
    const refused = await control.transport
      .sendTelemetry({ body: encoder.encode('with the expired token') })
      .catch((caught: unknown) => caught);
    expect(refused).toMatchObject({ name: 'AuthenticationError' });
    expect((await control.recorded.disconnected.next())?.name).toBe('AuthenticationError');
    expect(control.transport.connected).toBe(false);
    expect(renewed.recorded.disconnected.received).toHaveLength(0);
  });

  it('refuses renewed credentials of another device or without a token', async () => {
    const device = await hub.createSasDevice(nextId('renew'));
    const other = await hub.createSasDevice(nextId('renew'));
    const { transport } = await connect(await device.credentials());
    const wrongDevice = await transport
      .updateCredentials?.(await other.credentials())
      .catch((caught: unknown) => caught);
    expect(wrongDevice).toMatchObject({ name: 'ArgumentError' });
    const noToken = await transport
      .updateCredentials?.({ hostName: hub.hostName, deviceId: device.deviceId })
      .catch((caught: unknown) => caught);
    expect(noToken).toMatchObject({ name: 'ArgumentError' });
    await transport.sendTelemetry({ body: encoder.encode('still the first token') });
  });

  it('dials the gateway host name, keeping the hub host name in the token', async () => {
    const device = await hub.createSasDevice(nextId('gateway'));
    const credentials = await device.credentials();
    // The hub's host name would not resolve: every request must go to the gateway.
    const { transport } = await connect({ ...credentials, hostName: 'hub.invalid', gatewayHostName: hub.hostName });
    await transport.sendTelemetry({ body: encoder.encode('through the gateway'), messageId: 'gw-1' });
    expect((await telemetryOf(device.deviceId)).map((event) => event.messageId)).toEqual(['gw-1']);
  });

  it('fails connect with ConnectionError when the hub certificate is not trusted', async () => {
    const device = await hub.createSasDevice(nextId('tls'));
    const transport = http({ port: hub.info.ports.https }).create();
    const error = await transport
      .connect({ credentials: await device.credentials(), timeoutMs: 10_000 }, recordingEvents().events)
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'ConnectionError' });
    expect(transport.connected).toBe(false);
  });

  it('polls through the connection manager: messages arrive in the client, abandon and complete settle them', async () => {
    const device = await hub.createSasDevice(nextId('client'));
    const provider: CredentialProvider = {
      hostName: hub.hostName,
      deviceId: device.deviceId,
      kind: 'sas',
      getCredentials: () => device.credentials(),
    };
    const manager = new ConnectionManager({
      transport: http({ port: hub.info.ports.https }),
      credentialProvider: provider,
      ca: hub.ca,
    });
    const cloudToDevice = new CloudToDevice(manager, { pollIntervalMs: 100 });
    try {
      await manager.start();
      const messages = cloudToDevice.messages();
      await hub.hub.core.cloudToDevice.send(device.deviceId, { body: encoder.encode('one'), messageId: 'm-1' });
      const first = (await messages.next()).value;
      expect(first?.text()).toBe('one');
      await first?.abandon();
      const again = (await messages.next()).value;
      expect([again?.messageId, again?.deliveryCount]).toEqual(['m-1', 2]);
      await again?.complete();
      await waitFor(async () => (await hub.hub.core.cloudToDevice.count(device.deviceId)) === 0);
    } finally {
      await manager.close();
    }
  });

  it('surfaces a wrong key through the connection manager as AuthenticationError on the first operation', async () => {
    const device = await hub.createSasDevice(nextId('client'));
    const wrongKey = Buffer.from('not the device key, not at all!!').toString('base64');
    const provider: CredentialProvider = {
      hostName: hub.hostName,
      deviceId: device.deviceId,
      kind: 'sas',
      getCredentials: async () => ({
        hostName: hub.hostName,
        deviceId: device.deviceId,
        sasToken: await createSasToken({ resourceUri: `${hub.hostName}/devices/${device.deviceId}`, key: wrongKey }),
      }),
    };
    const manager = new ConnectionManager({
      transport: http({ port: hub.info.ports.https }),
      credentialProvider: provider,
      ca: hub.ca,
    });
    const lost: unknown[] = [];
    manager.events.on('disconnected', (error) => lost.push(error));
    try {
      await manager.start();
      const error = await manager
        .sendTelemetry([{ body: encoder.encode('refused') }])
        .catch((caught: unknown) => caught);
      expect(error).toMatchObject({ name: 'AuthenticationError' });
      expect(lost).toEqual([expect.objectContaining({ name: 'AuthenticationError' })]);
      expect(await telemetryOf(device.deviceId)).toHaveLength(0);
    } finally {
      await manager.close();
    }
  });

  describe('file upload', () => {
    it('uploads a small blob in one Put Blob and notifies the hub', async () => {
      const device = await hub.createSasDevice(nextId('upload'));
      const service = httpFileUpload({ port: hub.info.ports.https });
      const credentials = await device.credentials();
      const target = await service.createUpload(credentials, 'hello.txt', { ca: hub.ca });
      expect(target.blobName).toBe(`${device.deviceId}/hello.txt`);
      expect(target.sasToken.startsWith('?')).toBe(true);
      const progress: number[] = [];
      await service.putBlob(target, encoder.encode('hello blob'), {
        ca: hub.ca,
        onProgress: (update) => progress.push(update.bytesUploaded),
      });
      expect(progress).toEqual([10]);
      expect(await readBlob(blobUrlOf(target))).toBe('hello blob');
      await service.notify(
        credentials,
        target.correlationId,
        { isSuccess: true, statusCode: 201, statusDescription: 'stored' },
        { ca: hub.ca },
      );
    });

    it('uploads a stream larger than a block in 4 MiB blocks with a block list, reporting progress per block', async () => {
      const device = await hub.createSasDevice(nextId('upload'));
      const service = httpFileUpload({ port: hub.info.ports.https, blockConcurrency: 2 });
      const credentials = await device.credentials();
      const target = await service.createUpload(credentials, 'big.bin', { ca: hub.ca });
      const size = 9 * 1024 * 1024 + 17;
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let offset = 0; offset < size; offset += 1000 * 1000) {
          const length = Math.min(1000 * 1000, size - offset);
          yield Uint8Array.from({ length }, (_, index) => (offset + index) % 251);
        }
      }
      const progress: number[] = [];
      await service.putBlob(target, chunks(), {
        ca: hub.ca,
        length: size,
        onProgress: (update) => {
          expect(update.totalBytes).toBe(size);
          progress.push(update.bytesUploaded);
        },
      });
      expect(progress).toHaveLength(3);
      expect(progress.at(-1)).toBe(size);
      const stored = await readBlobBytes(blobUrlOf(target));
      expect(stored.byteLength).toBe(size);
      expect(stored.every((value, index) => value === index % 251)).toBe(true);
      await service.notify(
        credentials,
        target.correlationId,
        { isSuccess: true, statusCode: 201, statusDescription: '' },
        { ca: hub.ca },
      );
    });

    it('uploads a byte array just over one block in two blocks, and an empty one in one Put Blob, as an X.509 device', async () => {
      const device = await hub.createX509Device(nextId('upload'));
      const service = httpFileUpload({ port: hub.info.ports.https });
      const credentials = await device.credentials();
      const data = Uint8Array.from({ length: 4 * 1024 * 1024 + 1 }, (_, index) => index % 253);
      const target = await service.createUpload(credentials, 'two-blocks.bin', { ca: hub.ca });
      const progress: { bytesUploaded: number; totalBytes?: number }[] = [];
      await service.putBlob(target, data, { ca: hub.ca, onProgress: (update) => progress.push(update) });
      expect(progress.map((update) => update.totalBytes)).toEqual([data.byteLength, data.byteLength]);
      expect(progress.at(-1)?.bytesUploaded).toBe(data.byteLength);
      expect(Buffer.from(await readBlobBytes(blobUrlOf(target))).equals(Buffer.from(data))).toBe(true);
      await service.notify(
        credentials,
        target.correlationId,
        { isSuccess: true, statusCode: 201, statusDescription: '' },
        { ca: hub.ca },
      );

      const empty = await service.createUpload(credentials, 'empty.bin', { ca: hub.ca });
      await service.putBlob(empty, new Uint8Array(0), { ca: hub.ca });
      expect((await readBlobBytes(blobUrlOf(empty))).byteLength).toBe(0);
      await service.notify(
        credentials,
        empty.correlationId,
        { isSuccess: true, statusCode: 201, statusDescription: '' },
        { ca: hub.ca },
      );
    });

    it('maps a refused SAS to AuthenticationError and a refused device to AuthenticationError', async () => {
      const device = await hub.createSasDevice(nextId('upload'));
      const service = httpFileUpload({ port: hub.info.ports.https });
      const target = await service.createUpload(await device.credentials(), 'x.txt', { ca: hub.ca });
      const tampered = { ...target, sasToken: target.sasToken.replace(/sig=[^&]+/, 'sig=AAAA') };
      const storeError = await service
        .putBlob(tampered, encoder.encode('x'), { ca: hub.ca })
        .catch((caught: unknown) => caught);
      expect(storeError).toMatchObject({ name: 'AuthenticationError' });
      const wrongKey = Buffer.from('not the device key, not at all!!').toString('base64');
      const sasToken = await createSasToken({
        resourceUri: `${hub.hostName}/devices/${device.deviceId}`,
        key: wrongKey,
      });
      const hubError = await service
        .createUpload({ ...(await device.credentials()), sasToken }, 'y.txt', { ca: hub.ca })
        .catch((caught: unknown) => caught);
      expect(hubError).toMatchObject({ name: 'AuthenticationError' });
    });

    it('aborts an upload through its signal with AbortError', async () => {
      const device = await hub.createSasDevice(nextId('upload'));
      const service = httpFileUpload({ port: hub.info.ports.https });
      const target = await service.createUpload(await device.credentials(), 'aborted.bin', { ca: hub.ca });
      const controller = new AbortController();
      async function* endless(): AsyncGenerator<Uint8Array> {
        for (let index = 0; ; index++) {
          if (index === 6) controller.abort();
          yield new Uint8Array(1024 * 1024);
        }
      }
      const error = await service
        .putBlob(target, endless(), { ca: hub.ca, signal: controller.signal })
        .catch((caught: unknown) => caught);
      expect(error).toMatchObject({ name: 'AbortError' });
    });
  });

  async function readBlobBytes(url: string): Promise<Uint8Array> {
    const dispatcher = new Agent({ connect: { ca: hub.ca } });
    try {
      const response = await request(url, { dispatcher });
      const body = new Uint8Array(await response.body.arrayBuffer());
      if (response.statusCode !== 200) throw new Error(`GET blob answered ${response.statusCode}`);
      return body;
    } finally {
      await dispatcher.close();
    }
  }

  async function readBlob(url: string): Promise<string> {
    return decoder.decode(await readBlobBytes(url));
  }
});
