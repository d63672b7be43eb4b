/**
 * The transport conformance suite: what every implementation of `@fieldhub/device-core/transport` must do
 * against a real hub (the hub's in-process build on 127.0.0.1, TLS with its own CA). Transports run it from their
 * integration tests: `describeTransportConformance('mqtt', (hub) => mqtt({ port: hub.info.ports.mqtt! }))`.
 *
 * Exported as `@fieldhub/transport-testing/conformance`; vitest is a peer dependency.
 *
 * Features a transport does not declare in its capabilities are checked to refuse with UnsupportedFeatureError
 * instead of being exercised.
 */

import { createSasToken } from '@fieldhub/auth';
import type {
  IncomingCloudToDeviceMessage,
  Transport,
  TransportConnectOptions,
  TransportCredentials,
  TransportFactory,
} from '@fieldhub/device-core/transport';
import { HubError } from '@fieldhub/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConformanceDevice,
  type ConformanceHub,
  type RecordingEvents,
  recordingEvents,
  startConformanceHub,
} from './index';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Waits until `check` passes (or throws its last error after `timeoutMs`). */
async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function rejection(promise: Promise<unknown>): Promise<HubError> {
  try {
    await promise;
  } catch (error) {
    if (HubError.is(error)) return error;
    throw new Error(`expected a HubError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a rejection, the operation resolved');
}

/** Telemetry of one device, not the hub's own events (connection state, lifecycle) that share the endpoint. */
function isTelemetryOf(event: { deviceId: string | undefined; source: string | undefined }, deviceId: string): boolean {
  return event.deviceId === deviceId && (event.source === undefined || event.source === 'Telemetry');
}

/** Options of {@link describeTransportConformance}. */
export interface ConformanceOptions {
  /**
   * What property names and values the transport can carry. `'any'` (default; MQTT, AMQP): any string, the suite
   * sends names and values with `/`, `&`, `=` and spaces. `'httpToken'` (HTTPS, where properties are `iothub-app-*`
   * headers): IoT Hub's documented HTTPS alphabet, ASCII letters and digits plus ``! # $ % & ' * + - . ^ _ ` | ~``,
   * names in lower case (HTTP header names are case-insensitive on the way back).
   */
  readonly propertyCharset?: 'any' | 'httpToken';
}

/** Properties outside the plain alphanumerics, per charset: the suite checks they arrive unchanged. */
const oddProperties = {
  any: {
    telemetry: { alert: 'high temp', 'a/b&c=d': 'x/y&z=%' },
    cloudToDevice: { color: 'blue', 'odd/key&=': 'odd/value&=' },
  },
  httpToken: {
    telemetry: { alert: 'high-temp', "odd!#$%&'*+-.^_`|~": "x%y&z!#'*+-.^_`|~" },
    cloudToDevice: { color: 'blue', "odd!#$%&'*+-.^_`|~key": "odd!#$%&'*+-.^_`|~value" },
  },
} as const;

let deviceCounter = 0;
const nextDeviceId = (prefix: string): string => `${prefix}-${process.pid}-${++deviceCounter}`;

/**
 * Registers the conformance suite for one transport factory.
 *
 * @param name the describe block's title.
 * @param factory makes the factory once the suite's hub runs: it receives the hub (ports, CA), so that a
 * transport can be pointed at the hub's ephemeral ports (`mqtt({ port: hub.info.ports.mqtt })`). A zero-argument
 * function fits too.
 * @param options what the transport's wire can carry (see {@link ConformanceOptions}).
 */
export function describeTransportConformance(
  name: string,
  factory: (hub: ConformanceHub) => TransportFactory,
  options: ConformanceOptions = {},
): void {
  const properties = oddProperties[options.propertyCharset ?? 'any'];
  describe(`transport conformance: ${name}`, () => {
    let hub: ConformanceHub;
    let transportFactory: TransportFactory;
    const open: Transport[] = [];
    let lossDevice: ConformanceDevice | undefined;
    let lossTransport: Transport | undefined;

    beforeAll(async () => {
      hub = await startConformanceHub();
      transportFactory = factory(hub);
    });

    afterEach(async () => {
      await Promise.all(open.splice(0).map((transport) => transport.disconnect()));
    });

    afterAll(async () => {
      await hub?.close();
    });

    const connectOptions = (credentials: TransportCredentials): TransportConnectOptions => ({
      credentials,
      ca: hub.ca,
      timeoutMs: 10_000,
    });

    async function connected(
      credentials: TransportCredentials,
    ): Promise<{ transport: Transport; recorded: RecordingEvents }> {
      const transport = transportFactory.create();
      open.push(transport);
      const recorded = recordingEvents();
      await transport.connect(connectOptions(credentials), recorded.events);
      return { transport, recorded };
    }

    async function sasDevice(prefix = 'sas') {
      return hub.createSasDevice(nextDeviceId(prefix));
    }

    const perRequest = (): boolean => transportFactory.capabilities.credentialRenewal === 'perRequest';

    /**
     * How `credentials` the hub refuses surface. A transport with a connection refuses them in `connect`. One whose
     * credentials travel with each request (`credentialRenewal: 'perRequest'`, HTTPS) may connect (the hub sees
     * no credentials then, as the official HTTPS SDK's `open()` sends nothing), but then its first operation rejects
     * with the AuthenticationError, nothing reaches the hub, and the transport reports the connection lost, once.
     */
    async function refused(credentials: TransportCredentials): Promise<HubError> {
      const transport = transportFactory.create();
      const recorded = recordingEvents();
      const connecting = transport.connect(connectOptions(credentials), recorded.events);
      if (!perRequest()) {
        const error = await rejection(connecting);
        expect(transport.connected).toBe(false);
        return error;
      }
      open.push(transport);
      const outcome = await connecting.then(
        () => undefined,
        (error: unknown) => error,
      );
      if (outcome !== undefined) {
        if (HubError.is(outcome)) return outcome;
        throw outcome;
      }
      const error = await rejection(transport.sendTelemetry({ body: encoder.encode('refused'), messageId: 'refused' }));
      expect(error.name).toBe('AuthenticationError');
      expect((await recorded.disconnected.next())?.name).toBe('AuthenticationError');
      expect(transport.connected).toBe(false);
      const later = await rejection(transport.sendTelemetry({ body: encoder.encode('x') }));
      expect(later.name).toBe('ConnectionError');
      expect(recorded.disconnected.received).toHaveLength(1);
      const reader = await hub.hub.core.telemetry.read({ from: 'earliest', live: false });
      for await (const event of reader) expect(isTelemetryOf(event, credentials.deviceId)).toBe(false);
      return error;
    }

    describe('connect', () => {
      it('declares the same name and capabilities as its factory', () => {
        const transport = transportFactory.create();
        expect(transport.name).toBe(transportFactory.name);
        expect(transport.capabilities).toEqual(transportFactory.capabilities);
        expect(transport.connected).toBe(false);
      });

      it('connects with a SAS token', async () => {
        const device = await sasDevice();
        const { transport } = await connected(await device.credentials());
        expect(transport.connected).toBe(true);
        await transport.disconnect();
        expect(transport.connected).toBe(false);
      });

      it('connects with a self-signed X.509 certificate registered by thumbprint', async () => {
        const device = await hub.createX509Device(nextDeviceId('x509'));
        const { transport } = await connected(await device.credentials());
        expect(transport.connected).toBe(true);
        await transport.sendTelemetry({ body: encoder.encode('from x509') });
      });

      it('refuses a SAS token signed with the wrong key with AuthenticationError', async () => {
        const device = await sasDevice();
        const wrongKey = Buffer.from('not the device key, not at all!!').toString('base64');
        const sasToken = await createSasToken({
          resourceUri: `${hub.hostName}/devices/${device.deviceId}`,
          key: wrongKey,
        });
        const error = await refused({ ...(await device.credentials()), sasToken });
        expect(error.name).toBe('AuthenticationError');
        expect(error.isRetryable).toBe(false);
      });

      it('refuses an unknown device with AuthenticationError', async () => {
        const device = await sasDevice();
        const credentials = await device.credentials();
        await hub.serviceRequest('DELETE', `/devices/${device.deviceId}`, undefined, [200, 204]);
        const error = await refused(credentials);
        expect(error.name).toBe('AuthenticationError');
      });

      it('refuses an X.509 certificate whose thumbprint is not registered with AuthenticationError', async () => {
        const registered = await hub.createX509Device(nextDeviceId('x509'));
        const impostor = await hub.createX509Device(nextDeviceId('x509'));
        const credentials = { ...(await impostor.credentials()), deviceId: registered.deviceId };
        const error = await refused(credentials);
        expect(error.name).toBe('AuthenticationError');
      });

      it('rejects operations with ConnectionError while not connected, without queueing them', async () => {
        const transport = transportFactory.create();
        const error = await rejection(transport.sendTelemetry({ body: encoder.encode('x') }));
        expect(error.name).toBe('ConnectionError');
        expect(error.isRetryable).toBe(true);
      });

      it('rejects connect with AbortError when the signal is already aborted', async () => {
        const device = await sasDevice();
        const controller = new AbortController();
        controller.abort();
        const error = await rejection(
          transportFactory
            .create()
            .connect(
              { ...connectOptions(await device.credentials()), signal: controller.signal },
              recordingEvents().events,
            ),
        );
        expect(error.name).toBe('AbortError');
      });

      it('disconnect() is idempotent and reports no disconnected event', async () => {
        const device = await sasDevice();
        const { transport, recorded } = await connected(await device.credentials());
        await Promise.all([transport.disconnect(), transport.disconnect()]);
        await transport.disconnect();
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(recorded.disconnected.received).toHaveLength(0);
      });

      it('can connect again after disconnect()', async () => {
        const device = await sasDevice();
        const { transport } = await connected(await device.credentials());
        await transport.disconnect();
        await transport.connect(connectOptions(await device.credentials()), recordingEvents().events);
        expect(transport.connected).toBe(true);
        await transport.sendTelemetry({ body: encoder.encode('after reconnect') });
      });

      it('reports disconnected once when a second connection of the same device evicts it', async (context) => {
        if (perRequest()) return context.skip();
        const device = await sasDevice();
        const first = await connected(await device.credentials());
        await connected(await device.credentials());
        const error = await first.recorded.disconnected.next();
        expect(error?.name).toBe('ConnectionError');
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(first.recorded.disconnected.received).toHaveLength(1);
        expect(first.transport.connected).toBe(false);
      });

      it('keeps two connections of the same device when requests carry the credentials (no session to evict)', async (context) => {
        if (!perRequest()) return context.skip();
        const device = await sasDevice();
        const first = await connected(await device.credentials());
        const second = await connected(await device.credentials());
        await first.transport.sendTelemetry({ body: encoder.encode('one') });
        await second.transport.sendTelemetry({ body: encoder.encode('two') });
        await first.transport.sendTelemetry({ body: encoder.encode('three') });
        expect(first.transport.connected && second.transport.connected).toBe(true);
        expect(first.recorded.disconnected.received).toHaveLength(0);
      });
    });

    describe('telemetry', () => {
      it('resolves once the hub accepted the message, which is then on the built-in endpoint', async () => {
        const device = await sasDevice('telemetry');
        const { transport } = await connected(await device.credentials());
        await transport.sendTelemetry({
          body: encoder.encode('{"temperature":21.5}'),
          messageId: 'mid-1',
          correlationId: 'cid-1',
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          properties: properties.telemetry,
        });
        const reader = await hub.hub.core.telemetry.read({ from: 'earliest', live: false });
        const events = [];
        for await (const event of reader) if (isTelemetryOf(event, device.deviceId)) events.push(event);
        expect(events).toHaveLength(1);
        const [event] = events;
        expect(decoder.decode(event?.body)).toBe('{"temperature":21.5}');
        expect(event?.messageId).toBe('mid-1');
        expect(event?.correlationId).toBe('cid-1');
        expect(event?.contentType).toBe('application/json');
        expect(event?.contentEncoding).toBe('utf-8');
        expect(event?.properties).toMatchObject(properties.telemetry);
      });

      it('sends many messages concurrently, each acknowledged', async () => {
        const device = await sasDevice('telemetry');
        const { transport } = await connected(await device.credentials());
        await Promise.all(
          Array.from({ length: 200 }, (_, index) =>
            transport.sendTelemetry({ body: encoder.encode(String(index)), messageId: `m${index}` }),
          ),
        );
        const reader = await hub.hub.core.telemetry.read({ from: 'earliest', live: false });
        const ids = new Set<string>();
        for await (const event of reader)
          if (isTelemetryOf(event, device.deviceId) && event.messageId) ids.add(event.messageId);
        expect(ids.size).toBe(200);
      });

      it('refuses a message over 256 KB with an ArgumentError coded MessageTooLarge, and stays connected', async () => {
        const device = await sasDevice('telemetry');
        const { transport } = await connected(await device.credentials());
        const error = await rejection(transport.sendTelemetry({ body: new Uint8Array(256 * 1024 + 1) }));
        expect(error.name).toBe('ArgumentError');
        expect(error.code).toBe('MessageTooLarge');
        expect(transport.connected).toBe(true);
        await transport.sendTelemetry({ body: new Uint8Array(200 * 1024) });
      });

      it('rejects with AbortError when the signal is already aborted', async () => {
        const device = await sasDevice('telemetry');
        const { transport } = await connected(await device.credentials());
        const controller = new AbortController();
        controller.abort();
        const error = await rejection(
          transport.sendTelemetry({ body: encoder.encode('x') }, { signal: controller.signal }),
        );
        expect(error.name).toBe('AbortError');
      });
    });

    describe('cloud-to-device', () => {
      it('receives a message with its properties and completes it', async (context) => {
        if (transportFactory.capabilities.cloudToDevice !== 'push') return context.skip();
        const device = await sasDevice('c2d');
        const { transport, recorded } = await connected(await device.credentials());
        await transport.enableCloudToDevice();
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('hello device'),
          messageId: 'c2d-1',
          correlationId: 'corr-9',
          contentType: 'text/plain',
          contentEncoding: 'utf-8',
          properties: properties.cloudToDevice,
          ack: 'full',
        });
        const message = await recorded.cloudToDevice.next();
        expect(decoder.decode(message.body)).toBe('hello device');
        expect(message.messageId).toBe('c2d-1');
        expect(message.correlationId).toBe('corr-9');
        expect(message.contentType).toBe('text/plain');
        expect(message.contentEncoding).toBe('utf-8');
        expect(message.properties).toMatchObject(properties.cloudToDevice);
        expect(typeof message.lockToken).toBe('string');
        expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(1);
        await transport.settleCloudToDevice(message.lockToken, 'complete');
        await eventually(async () => expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(0));
      });

      it('delivers a message sent while the device was offline once it subscribes again', async (context) => {
        if (transportFactory.capabilities.cloudToDevice !== 'push') return context.skip();
        const device = await sasDevice('c2d');
        const first = await connected(await device.credentials());
        await first.transport.enableCloudToDevice();
        await first.transport.disconnect();
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('while away'),
          messageId: 'away-1',
        });
        const second = await connected(await device.credentials());
        await second.transport.enableCloudToDevice();
        const message = await second.recorded.cloudToDevice.next();
        expect(message.messageId).toBe('away-1');
        await second.transport.settleCloudToDevice(message.lockToken, 'complete');
      });

      it('redelivers a message that was received but not completed before the connection closed', async (context) => {
        if (transportFactory.capabilities.cloudToDevice !== 'push') return context.skip();
        const device = await sasDevice('c2d');
        const first = await connected(await device.credentials());
        await first.transport.enableCloudToDevice();
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('once more'),
          messageId: 'again-1',
        });
        const received = await first.recorded.cloudToDevice.next();
        expect(received.messageId).toBe('again-1');
        await first.transport.disconnect();
        const stale = await rejection(first.transport.settleCloudToDevice(received.lockToken, 'complete'));
        expect(stale.name).toBe('ConnectionError');

        const second = await connected(await device.credentials());
        await second.transport.enableCloudToDevice();
        const again = await second.recorded.cloudToDevice.next();
        expect(again.messageId).toBe('again-1');
        await second.transport.settleCloudToDevice(again.lockToken, 'complete');
        await eventually(async () => expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(0));
      });

      // Polled cloud-to-device ('poll' transports: HTTPS). The device asks; the hub locks the oldest message for it.
      const polling = (): boolean => transportFactory.capabilities.cloudToDevice === 'poll';

      async function poll(transport: Transport): Promise<IncomingCloudToDeviceMessage> {
        if (!transport.receiveCloudToDevice) throw new Error("a 'poll' transport must have receiveCloudToDevice");
        const message = await transport.receiveCloudToDevice();
        if (message === undefined) throw new Error('the poll found no message');
        return message;
      }

      /** The feedback record the hub wrote for `messageId` (every batch received on the way is completed). */
      async function feedbackOf(messageId: string): Promise<{ statusCode: string; deviceId: string }> {
        const found: { statusCode: string; deviceId: string; originalMessageId: string }[] = [];
        return eventually(async () => {
          const batch = await hub.hub.core.cloudToDevice.receiveFeedback();
          if (batch) {
            found.push(...batch.records);
            await hub.hub.core.cloudToDevice.completeFeedback(batch.lockToken);
          }
          const record = found.find((candidate) => candidate.originalMessageId === messageId);
          if (!record) throw new Error(`no feedback for ${messageId} yet`);
          return record;
        });
      }

      it('polls a message with its properties and completes it', async (context) => {
        if (!polling()) return context.skip();
        const device = await sasDevice('c2d');
        const { transport } = await connected(await device.credentials());
        await transport.enableCloudToDevice();
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('hello device'),
          messageId: 'c2d-poll-1',
          correlationId: 'corr-9',
          contentType: 'text/plain',
          contentEncoding: 'utf-8',
          userId: 'service-user',
          properties: properties.cloudToDevice,
          ack: 'full',
        });
        const message = await poll(transport);
        expect(decoder.decode(message.body)).toBe('hello device');
        expect(message.messageId).toBe('c2d-poll-1');
        expect(message.correlationId).toBe('corr-9');
        expect(message.contentType).toBe('text/plain');
        expect(message.contentEncoding).toBe('utf-8');
        expect(message.userId).toBe('service-user');
        expect(message.deliveryCount).toBe(1);
        expect(typeof message.expiryTimeUtc).toBe('string');
        expect(message.properties).toMatchObject(properties.cloudToDevice);
        expect(typeof message.lockToken).toBe('string');
        // Locked, not gone: a second poll does not see it.
        expect(await transport.receiveCloudToDevice?.()).toBeUndefined();
        expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(1);
        await transport.settleCloudToDevice(message.lockToken, 'complete');
        expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(0);
        expect((await feedbackOf('c2d-poll-1')).statusCode).toBe('Success');
      });

      it('answers an empty poll with undefined', async (context) => {
        if (!polling()) return context.skip();
        const device = await sasDevice('c2d');
        const { transport } = await connected(await device.credentials());
        expect(await transport.receiveCloudToDevice?.()).toBeUndefined();
        expect(transport.connected).toBe(true);
      });

      it('rejects a polled message: it is gone for good, with Rejected feedback', async (context) => {
        if (!polling()) return context.skip();
        const device = await sasDevice('c2d');
        const { transport } = await connected(await device.credentials());
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('unwanted'),
          messageId: 'c2d-reject-1',
          ack: 'negative',
        });
        const message = await poll(transport);
        await transport.settleCloudToDevice(message.lockToken, 'reject');
        expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(0);
        expect(await transport.receiveCloudToDevice?.()).toBeUndefined();
        const feedback = await feedbackOf('c2d-reject-1');
        expect(feedback).toMatchObject({ statusCode: 'Rejected', deviceId: device.deviceId });
      });

      it('abandons a polled message: the next poll gets it again with deliveryCount + 1', async (context) => {
        if (!polling()) return context.skip();
        const device = await sasDevice('c2d');
        const { transport } = await connected(await device.credentials());
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('later'),
          messageId: 'c2d-abandon-1',
        });
        const first = await poll(transport);
        expect(first.deliveryCount).toBe(1);
        await transport.settleCloudToDevice(first.lockToken, 'abandon');
        const again = await poll(transport);
        expect(again.messageId).toBe('c2d-abandon-1');
        expect(again.deliveryCount).toBe(2);
        expect(again.lockToken).not.toBe(first.lockToken);
        await transport.settleCloudToDevice(again.lockToken, 'complete');
        expect(await hub.hub.core.cloudToDevice.count(device.deviceId)).toBe(0);
      });

      it('polls a message that was sent while the device was offline', async (context) => {
        if (!polling()) return context.skip();
        const device = await sasDevice('c2d');
        const first = await connected(await device.credentials());
        await first.transport.disconnect();
        await hub.hub.core.cloudToDevice.send(device.deviceId, {
          body: encoder.encode('while away'),
          messageId: 'away-poll-1',
        });
        const stale = await rejection(first.transport.receiveCloudToDevice?.() ?? Promise.resolve());
        expect(stale.name).toBe('ConnectionError');
        const second = await connected(await device.credentials());
        const message = await poll(second.transport);
        expect(message.messageId).toBe('away-poll-1');
        await second.transport.settleCloudToDevice(message.lockToken, 'complete');
      });

      it('refuses a settlement whose lock is gone with DeviceMessageLockLost, and stays connected', async (context) => {
        if (!polling()) return context.skip();
        const device = await sasDevice('c2d');
        const { transport, recorded } = await connected(await device.credentials());
        await hub.hub.core.cloudToDevice.send(device.deviceId, { body: encoder.encode('once'), messageId: 'lock-1' });
        const message = await poll(transport);
        await transport.settleCloudToDevice(message.lockToken, 'complete');
        const error = await rejection(transport.settleCloudToDevice(message.lockToken, 'complete'));
        expect(error.code).toBe('DeviceMessageLockLost');
        expect(error.isRetryable).toBe(false);
        expect(transport.connected).toBe(true);
        expect(recorded.disconnected.received).toHaveLength(0);
      });

      it('refuses the settlements it does not declare with UnsupportedFeatureError', async () => {
        const device = await sasDevice('c2d');
        const { transport } = await connected(await device.credentials());
        for (const settlement of ['reject', 'abandon'] as const) {
          if (transportFactory.capabilities.cloudToDeviceSettlements.includes(settlement)) continue;
          const error = await rejection(transport.settleCloudToDevice('any', settlement));
          expect(error.name).toBe('UnsupportedFeatureError');
        }
      });
    });

    describe('twin', () => {
      it('reads the twin, patches reported properties and receives desired-property patches', async (context) => {
        if (!transportFactory.capabilities.twin) return context.skip();
        const device = await sasDevice('twin');
        await hub.serviceRequest('PATCH', `/twins/${device.deviceId}`, {
          properties: { desired: { fromHub: 'hello' } },
        });
        const { transport, recorded } = await connected(await device.credentials());
        await transport.enableTwin();

        const twin = await transport.getTwin();
        expect(twin.desired).toMatchObject({ fromHub: 'hello' });
        expect(typeof twin.desired.$version).toBe('number');
        expect(typeof twin.reported.$version).toBe('number');

        const version = await transport.updateReportedProperties({ firmware: '1.0.0', nested: { a: 1 } });
        expect(version).toBeGreaterThan(twin.reported.$version);
        const after = await transport.getTwin();
        expect(after.reported).toMatchObject({ firmware: '1.0.0', nested: { a: 1 }, $version: version });

        await hub.serviceRequest('PATCH', `/twins/${device.deviceId}`, { properties: { desired: { setpoint: 5 } } });
        const pushed = await recorded.desired.next();
        expect(pushed.patch).toMatchObject({ setpoint: 5 });
        expect(pushed.version).toBeGreaterThan(twin.desired.$version);
      });

      it('rejects a reported patch the hub refuses with a HubError that is not retryable', async (context) => {
        if (!transportFactory.capabilities.twin) return context.skip();
        const device = await sasDevice('twin');
        const { transport } = await connected(await device.credentials());
        await transport.enableTwin();
        const error = await rejection(transport.updateReportedProperties({ big: 'x'.repeat(40 * 1024) }));
        expect(error.status).toBeGreaterThanOrEqual(400);
        expect(error.status).toBeLessThan(500);
        expect(error.isRetryable).toBe(false);
        expect(transport.connected).toBe(true);
      });

      it('refuses twin operations with UnsupportedFeatureError when it declares no twin', async (context) => {
        if (transportFactory.capabilities.twin) return context.skip();
        const device = await sasDevice('twin');
        const { transport } = await connected(await device.credentials());
        expect((await rejection(transport.getTwin())).name).toBe('UnsupportedFeatureError');
      });
    });

    describe('direct methods', () => {
      it('receives a method request and its response reaches the caller', async (context) => {
        if (!transportFactory.capabilities.directMethods) return context.skip();
        const device = await sasDevice('methods');
        const { transport, recorded } = await connected(await device.credentials());
        await transport.enableDirectMethods();
        const invocation = hub.hub.core.directMethods.invoke(device.deviceId, undefined, {
          methodName: 'reboot',
          payload: { delay: 1 },
          responseTimeoutInSeconds: 10,
        });
        const request = await recorded.methods.next();
        expect(request.methodName).toBe('reboot');
        expect(request.payload).toEqual({ delay: 1 });
        await transport.sendMethodResponse(request.requestId, 200, { ok: true });
        await expect(invocation).resolves.toEqual({ status: 200, payload: { ok: true } });
      });

      it('passes a null payload both ways', async (context) => {
        if (!transportFactory.capabilities.directMethods) return context.skip();
        const device = await sasDevice('methods');
        const { transport, recorded } = await connected(await device.credentials());
        await transport.enableDirectMethods();
        const invocation = hub.hub.core.directMethods.invoke(device.deviceId, undefined, {
          methodName: 'ping',
          responseTimeoutInSeconds: 10,
        });
        const request = await recorded.methods.next();
        expect(request.payload).toBeNull();
        await transport.sendMethodResponse(request.requestId, 404, null);
        await expect(invocation).resolves.toEqual({ status: 404, payload: null });
      });
    });

    describe('unsupported features', () => {
      it('refuses direct methods with UnsupportedFeatureError when it declares none', async (context) => {
        if (transportFactory.capabilities.directMethods) return context.skip();
        const device = await sasDevice('methods');
        const { transport } = await connected(await device.credentials());
        expect((await rejection(transport.enableDirectMethods())).name).toBe('UnsupportedFeatureError');
        expect((await rejection(transport.sendMethodResponse('1', 200, null))).name).toBe('UnsupportedFeatureError');
        expect(transport.connected).toBe(true);
      });
    });

    describe('losing the hub', () => {
      // Both tests stop the suite's hub; the second starts it again. They run last, in this order.
      it('reports disconnected exactly once when the hub stops, rejects what is in flight, and refuses to connect while it is down', async () => {
        const device = await sasDevice('loss');
        const { transport, recorded } = await connected(await device.credentials());
        if (transportFactory.capabilities.twin) await transport.enableTwin();
        const inFlight = transportFactory.capabilities.twin ? rejection(transport.getTwin()) : undefined;
        await hub.stopHub();
        if (perRequest()) {
          // No connection to watch: the next request finds the hub gone, rejects, and reports the loss.
          const failed = await rejection(transport.sendTelemetry({ body: encoder.encode('into the void') }));
          expect(failed.name).toBe('ConnectionError');
          expect(failed.isRetryable).toBe(true);
        }
        const error = await recorded.disconnected.next();
        expect(error?.name).toBe('ConnectionError');
        expect(error?.isRetryable).toBe(true);
        expect(transport.connected).toBe(false);
        if (inFlight) {
          // The hub may have answered before it stopped; if not, the loss settles the request.
          const outcome = await inFlight.catch((caught: unknown) => caught);
          if (HubError.is(outcome)) expect(outcome.name).toBe('ConnectionError');
        }
        expect((await rejection(transport.sendTelemetry({ body: encoder.encode('x') }))).name).toBe('ConnectionError');

        const refused = await rejection(
          transport.connect(connectOptions(await device.credentials()), recordingEvents().events),
        );
        expect(refused.name).toBe('ConnectionError');
        expect(refused.isRetryable).toBe(true);
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(recorded.disconnected.received).toHaveLength(1);
        lossDevice = device;
        lossTransport = transport;
      });

      it('connects the same transport again once the hub is back on the same ports', async () => {
        const device = lossDevice ?? (await sasDevice('loss'));
        const transport = lossTransport ?? transportFactory.create();
        await hub.restart();
        const again = recordingEvents();
        await transport.connect(connectOptions(await device.credentials()), again.events);
        open.push(transport);
        expect(transport.connected).toBe(true);
        await transport.sendTelemetry({ body: encoder.encode('after restart') });
        expect(again.disconnected.received).toHaveLength(0);
      });
    });
  });
}
