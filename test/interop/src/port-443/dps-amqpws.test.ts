import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client as DeviceClient, Message } from 'azure-iot-device';
import { AmqpWs as DeviceAmqpWs } from 'azure-iot-device-amqp';
import { ProvisioningDeviceClient, type RegistrationResult } from 'azure-iot-provisioning-device';
import { AmqpWs as ProvisioningAmqpWs } from 'azure-iot-provisioning-device-amqp';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from '../support/built-in-endpoint';
import { closeWithin } from '../support/close-within';
import { type HubProcess, startHubProcess } from '../support/hub-process';
import { serviceCall } from '../support/service-rest';

// The official provisioning client over AMQP over WebSockets (`azure-iot-provisioning-device-amqp` AmqpWs,
// unchanged) against the hub as a child process. AmqpWs always dials wss://<provisioningHost>:443/$iothub/websocket,
// hence port-443/. After registering, the official device client (azure-iot-device-amqp AmqpWs, also on 443)
// connects to the assigned hub with the derived key and its telemetry reaches the built-in endpoint. The hub's CA is
// trusted through NODE_EXTRA_CA_CERTS (global-setup.ts).

let hub: HubProcess;
let idScope: string;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  hub = await startHubProcess();
  idScope = (JSON.parse(readFileSync(join(hub.dataDir, 'hub.json'), 'utf8')) as { dps: { idScope: string } }).dps
    .idScope;
});

afterAll(async () => {
  // A client stuck in a request must not keep the hub (and its port 443) alive: each close gets 10 s.
  await closeWithin(closers, 10_000);
  await hub?.dispose();
});

describe('official provisioning client over AMQP over WebSockets', () => {
  it('registers through a symmetric-key group, then the device sends telemetry to the assigned hub', async () => {
    const group = await serviceCall(hub.info, 'PUT', '/enrollmentGroups/amqpws-interop?api-version=2021-10-01', [200], {
      body: { enrollmentGroupId: 'amqpws-interop', attestation: { type: 'symmetricKey' } },
    });
    const groupKey = group.json<{ attestation: { symmetricKey: { primaryKey: string } } }>().attestation.symmetricKey
      .primaryKey;
    const registrationId = 'amqpws-official-1';
    // §5.5: base64(HMAC-SHA256(base64decode(groupKey), registrationId)).
    const deviceKey = createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId).digest('base64');

    const transport = new ProvisioningAmqpWs();
    const client = ProvisioningDeviceClient.create(
      'localhost',
      idScope,
      transport,
      new SymmetricKeySecurityClient(registrationId, deviceKey),
    );
    const result = await new Promise<RegistrationResult>((resolve, reject) =>
      client.register((error, registration) => (error || !registration ? reject(error) : resolve(registration))),
    );
    expect(result).toMatchObject({ registrationId, deviceId: registrationId, assignedHub: 'localhost' });

    const device = DeviceClient.fromConnectionString(
      `HostName=${result.assignedHub};DeviceId=${result.deviceId};SharedAccessKey=${deviceKey}`,
      DeviceAmqpWs,
    );
    closers.push(() => device.close());
    await device.open();
    const messageId = randomUUID();
    const message = new Message(JSON.stringify({ provisioned: true }));
    message.messageId = messageId;
    await device.sendEvent(message);
    const events = await readBuiltInEndpoint(hub.info);
    expect(
      events.find((event) => isTelemetry(event) && event.messageId === messageId && event.deviceId === registrationId),
    ).toBeDefined();
  });
});
