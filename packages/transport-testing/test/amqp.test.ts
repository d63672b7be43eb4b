/**
 * The transport conformance suite for `amqp()` and `amqp({ webSockets: true })`, and what only AMQP does against
 * the real hub: renewing the SAS token in place, rejecting and abandoning cloud-to-device messages, and module
 * identities on the `/modules/` links (protocol-device.md §3).
 */
import { createSasToken } from '@fieldhub/auth';
import type { Transport, TransportCredentials } from '@fieldhub/device-core/transport';
import { amqp } from '@fieldhub/transport-amqp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeTransportConformance } from '../src/conformance';
import { type ConformanceHub, recordingEvents, startConformanceHub } from '../src/index';

function port(value: number | null): number {
  if (value === null) throw new Error('the hub serves no AMQP port');
  return value;
}

describeTransportConformance('amqp', (hub) => amqp({ port: port(hub.info.ports.amqp) }));
// AMQP over WebSockets shares the hub's HTTPS port (/$iothub/websocket), as MQTT over WebSockets does.
describeTransportConformance('amqp over WebSockets', (hub) => amqp({ webSockets: true, port: hub.info.ports.https }));

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The hub's SAS clock skew (the MQTT and AMQP heads accept a token this long past its `se`). */
const hubClockSkewSeconds = 300;

describe('amqp against the real hub: what only AMQP does', () => {
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
    const transport = amqp({ port: port(hub.info.ports.amqp) }).create();
    open.push(transport);
    const recorded = recordingEvents();
    await transport.connect({ credentials, ca: hub.ca, timeoutMs: 10_000 }, recorded.events);
    return { transport, recorded };
  }

  it('renews the SAS token in place: the links outlive the token they were attached with', async () => {
    // Two devices: a second connection of the same device would evict the first.
    const device = await hub.createSasDevice(nextId('renew'));
    const controlDevice = await hub.createSasDevice(nextId('renew'));
    // Accepted for a few more seconds only: `se` lies just inside the hub's clock skew.
    const expiresAt = Math.floor(Date.now() / 1000) - hubClockSkewSeconds + 4;
    const shortLived = async (of: typeof device): Promise<TransportCredentials> => ({
      hostName: hub.hostName,
      deviceId: of.deviceId,
      sasToken: await createSasToken({
        resourceUri: `${hub.hostName}/devices/${of.deviceId}`,
        key: of.primaryKey,
        expiresAt,
      }),
      sasTokenExpiresAt: expiresAt * 1000,
    });
    const renewed = await connect(await shortLived(device));
    const control = await connect(await shortLived(controlDevice));
    await renewed.transport.enableTwin();
    await control.transport.enableTwin();
    await renewed.transport.updateCredentials?.(await device.credentials());

    // The control keeps its first token: the hub detaches its links when that expires.
    const lost = await control.recorded.disconnected.next(20_000);
    expect(lost?.name).toBe('ConnectionError');
    expect(control.transport.connected).toBe(false);

    // The renewed connection's first token expired just as well, and it still works.
    expect(renewed.transport.connected).toBe(true);
    await renewed.transport.sendTelemetry({ body: encoder.encode('after the first token expired') });
    await renewed.transport.getTwin();
    expect(renewed.recorded.disconnected.received).toHaveLength(0);
  });

  it('refuses a renewal the hub does not accept with AuthenticationError and stays connected', async () => {
    const device = await hub.createSasDevice(nextId('renew'));
    const { transport, recorded } = await connect(await device.credentials());
    const wrongKey = Buffer.from('not the device key, not at all!!').toString('base64');
    const sasToken = await createSasToken({ resourceUri: `${hub.hostName}/devices/${device.deviceId}`, key: wrongKey });
    const error = await transport.updateCredentials?.({ ...(await device.credentials()), sasToken }).catch((e) => e);
    expect(error?.name).toBe('AuthenticationError');
    expect(transport.connected).toBe(true);
    await transport.sendTelemetry({ body: encoder.encode('still here') });
    expect(recorded.disconnected.received).toHaveLength(0);
  });

  it('rejects a cloud-to-device message (gone, feedback Rejected) and abandons one (delivered again, then completed)', async () => {
    const device = await hub.createSasDevice(nextId('settle'));
    const { transport, recorded } = await connect(await device.credentials());
    await transport.enableCloudToDevice();
    await hub.hub.core.cloudToDevice.send(device.deviceId, { body: encoder.encode('no'), messageId: 'reject-me' });
    const rejected = await recorded.cloudToDevice.next();
    expect(rejected.messageId).toBe('reject-me');
    await transport.settleCloudToDevice(rejected.lockToken, 'reject');
    await waitFor(async () => (await hub.hub.core.cloudToDevice.count(device.deviceId)) === 0);

    await hub.hub.core.cloudToDevice.send(device.deviceId, { body: encoder.encode('later'), messageId: 'abandon-me' });
    const first = await recorded.cloudToDevice.next();
    expect(first.messageId).toBe('abandon-me');
    await transport.settleCloudToDevice(first.lockToken, 'abandon');
    const again = await recorded.cloudToDevice.next();
    expect(again.messageId).toBe('abandon-me');
    expect(decoder.decode(again.body)).toBe('later');
    expect(again.lockToken).not.toBe(first.lockToken);
    if (first.deliveryCount !== undefined) expect(again.deliveryCount).toBe(first.deliveryCount + 1);
    await transport.settleCloudToDevice(again.lockToken, 'complete');
    await waitFor(async () => (await hub.hub.core.cloudToDevice.count(device.deviceId)) === 0);
  });

  it('serves a module identity on the /modules/ links: telemetry, twin, methods; no cloud-to-device', async () => {
    const device = await hub.createSasDevice(nextId('module'));
    const moduleId = 'edge-module';
    const created = (await hub.serviceRequest('PUT', `/devices/${device.deviceId}/modules/${moduleId}`, {
      deviceId: device.deviceId,
      moduleId,
      authentication: { type: 'sas' },
    })) as { authentication?: { symmetricKey?: { primaryKey?: string } } };
    const key = created.authentication?.symmetricKey?.primaryKey;
    if (key === undefined) throw new Error('the hub made no module key');
    const sasToken = await createSasToken({
      resourceUri: `${hub.hostName}/devices/${device.deviceId}/modules/${moduleId}`,
      key,
    });
    const { transport, recorded } = await connect({
      hostName: hub.hostName,
      deviceId: device.deviceId,
      moduleId,
      sasToken,
    });
    await transport.sendTelemetry({ body: encoder.encode('from a module'), messageId: 'module-1' });
    await transport.enableTwin();
    const version = await transport.updateReportedProperties({ module: true });
    expect((await transport.getTwin()).reported).toMatchObject({ module: true, $version: version });
    await transport.enableDirectMethods();
    const invocation = hub.hub.core.directMethods.invoke(device.deviceId, moduleId, {
      methodName: 'ping',
      responseTimeoutInSeconds: 10,
    });
    const request = await recorded.methods.next();
    await transport.sendMethodResponse(request.requestId, 200, { pong: true });
    await expect(invocation).resolves.toEqual({ status: 200, payload: { pong: true } });
    await expect(transport.enableCloudToDevice()).rejects.toMatchObject({ name: 'UnsupportedFeatureError' });
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('the condition did not hold in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
