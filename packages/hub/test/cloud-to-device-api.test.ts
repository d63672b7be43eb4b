import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The Fieldhub extension route to send (until the AMQP head exists); no api-version.
const sendPath = (deviceId: string) => `/fieldhub/devices/${encodeURIComponent(deviceId)}/messages/devicebound`;

describe('cloud-to-device REST API', () => {
  let testHub: TestHub;

  const createDevice = async (deviceId: string) => {
    const response = await testHub.request('PUT', `/devices/${encodeURIComponent(deviceId)}`, { body: { deviceId } });
    expect(response.status).toBe(200);
  };
  const send = (deviceId: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
    testHub.request('POST', sendPath(deviceId), {
      body,
      headers: { 'content-type': 'application/octet-stream', ...headers },
      apiVersion: false,
    });

  beforeAll(async () => {
    testHub = await startTestHub();
    await createDevice('dev1');
    await createDevice('dev2');
    await createDevice('full');
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  it('sends a message with headers mapped to system and application properties', async () => {
    const response = await send('dev1', '{"on": true}', {
      'content-type': 'application/json',
      'iothub-messageid': 'm-1',
      'iothub-correlationid': 'c-1',
      'iothub-ack': 'full',
      'iothub-app-color': 'red%20ish',
      'iothub-expiry': new Date(Date.now() + 10 * 60_000).toISOString(),
    });
    expect(response.status).toBe(202);
    expect(response.json).toMatchObject({ messageId: 'm-1', sequenceNumber: 1 });

    const delivery = await testHub.hub.core.cloudToDevice.receive('dev1');
    expect(delivery?.message).toMatchObject({
      messageId: 'm-1',
      correlationId: 'c-1',
      ack: 'full',
      contentType: 'application/json',
      properties: { color: 'red ish' },
    });
    // Byte for byte, even for JSON.
    expect(Buffer.from(delivery!.message.body).toString()).toBe('{"on": true}');
    await testHub.hub.core.cloudToDevice.complete('dev1', delivery!.lockToken);
  });

  it('answers 404001 for an unknown device and 400 for bad headers', async () => {
    const missing = await send('ghost', 'x');
    expect(missing.status).toBe(404);
    expect(missing.headers['iothub-errorcode']).toBe('DeviceNotFound');
    const badAck = await send('dev1', 'x', { 'iothub-ack': 'always' });
    expect(badAck.status).toBe(400);
    const badExpiry = await send('dev1', 'x', { 'iothub-expiry': 'tomorrow' });
    expect(badExpiry.status).toBe(400);
  });

  it('requires a service credential with ServiceConnect', async () => {
    const anonymous = await testHub.request('POST', sendPath('dev1'), { body: 'x', policy: null, apiVersion: false });
    expect(anonymous.status).toBe(401);
    const registryOnly = await testHub.request('DELETE', '/devices/dev1/commands', { policy: 'registryRead' });
    expect(registryOnly.status).toBe(401);
  });

  it('refuses the 51st queued message with 403004 and over 64 KB with 413001', async () => {
    for (let index = 0; index < 50; index++) expect((await send('full', String(index))).status).toBe(202);
    const refused = await send('full', 'one too many');
    expect(refused.status).toBe(403);
    expect(refused.headers['iothub-errorcode']).toBe('DeviceMaximumQueueDepthExceeded');
    expect(refused.json).toMatchObject({
      Message: expect.stringContaining('ErrorCode:DeviceMaximumQueueDepthExceeded;'),
    });
    const device = await testHub.request('GET', '/devices/full');
    expect(device.json).toMatchObject({ cloudToDeviceMessageCount: 50 });

    const tooLarge = await send('dev2', new Uint8Array(64 * 1024 + 1));
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers['iothub-errorcode']).toBe('MessageTooLarge');
  });

  it('purges a queue with DELETE /devices/{id}/commands', async () => {
    const purged = await testHub.request('DELETE', '/devices/full/commands');
    expect(purged.status).toBe(200);
    expect(purged.json).toEqual({ totalMessagesPurged: 50, deviceId: 'full', moduleId: null });
    expect((await testHub.request('GET', '/devices/full')).json).toMatchObject({ cloudToDeviceMessageCount: 0 });
    expect((await testHub.request('DELETE', '/devices/ghost/commands')).status).toBe(404);
    expect((await testHub.request('DELETE', '/devices/full/commands', { apiVersion: false })).status).toBe(400);
  });

  it('serves feedback with a lock token in ETag; complete and abandon', async () => {
    // Drain what earlier tests left, then start clean.
    for (;;) {
      const pending = await testHub.request('GET', '/messages/serviceBound/feedback');
      if (pending.status === 204) break;
      await testHub.request(
        'DELETE',
        `/messages/serviceBound/feedback/${String(pending.headers.etag).replaceAll('"', '')}`,
      );
    }
    const c2d = testHub.hub.core.cloudToDevice;
    expect((await send('dev2', 'a', { 'iothub-messageid': 'ok', 'iothub-ack': 'positive' })).status).toBe(202);
    expect((await send('dev2', 'b', { 'iothub-messageid': 'no', 'iothub-ack': 'negative' })).status).toBe(202);
    await c2d.complete('dev2', (await c2d.receive('dev2'))!.lockToken);
    await c2d.reject('dev2', (await c2d.receive('dev2'))!.lockToken);

    const received = await testHub.request('GET', '/messages/serviceBound/feedback');
    expect(received.status).toBe(200);
    expect(received.headers['content-type']).toContain('application/json');
    const etag = String(received.headers.etag);
    expect(etag).toMatch(/^"[0-9a-f-]{36}"$/);
    expect(received.json).toEqual([
      {
        originalMessageId: 'ok',
        deviceGenerationId: expect.any(String),
        deviceId: 'dev2',
        enqueuedTimeUtc: expect.any(String),
        statusCode: 'Success',
        description: 'Success',
      },
      expect.objectContaining({ originalMessageId: 'no', statusCode: 'Rejected' }),
    ]);
    // Locked: nothing else to receive.
    expect((await testHub.request('GET', '/messages/serviceBound/feedback')).status).toBe(204);

    const abandoned = await testHub.request('POST', `/messages/serviceBound/feedback/${etag}/abandon`);
    expect(abandoned.status).toBe(204);
    const again = await testHub.request('GET', '/messages/servicebound/feedback');
    expect(again.status).toBe(200);
    const token = String(again.headers.etag).replaceAll('"', '');
    expect((await testHub.request('DELETE', `/messages/serviceBound/feedback/${token}`)).status).toBe(204);
    const lost = await testHub.request('DELETE', `/messages/serviceBound/feedback/${token}`);
    expect(lost.status).toBe(412);
    expect(lost.headers['iothub-errorcode']).toBe('DeviceMessageLockLost');
    expect((await testHub.request('GET', '/messages/serviceBound/feedback')).status).toBe(204);
  });

  it('keeps queued messages, delivery counts and feedback across a restart', async () => {
    expect((await send('dev1', 'survives', { 'iothub-messageid': 'keep', 'iothub-ack': 'full' })).status).toBe(202);
    expect((await send('dev1', 'settled', { 'iothub-messageid': 'done', 'iothub-ack': 'full' })).status).toBe(202);
    let c2d = testHub.hub.core.cloudToDevice;
    const first = await c2d.receive('dev1');
    expect(first?.message.messageId).toBe('keep');
    await c2d.abandon('dev1', first!.lockToken);
    const second = await c2d.receive('dev1');
    expect(second?.message.messageId).toBe('keep');
    const third = await c2d.receive('dev1');
    expect(third?.message.messageId).toBe('done');
    await c2d.complete('dev1', third!.lockToken);

    await testHub.restart();

    expect((await testHub.request('GET', '/devices/dev1')).json).toMatchObject({ cloudToDeviceMessageCount: 1 });
    c2d = testHub.hub.core.cloudToDevice;
    // `keep` was locked by a session that no longer exists: a reconnecting session gets it with count 3.
    const redelivered = await c2d.pending('dev1');
    expect(redelivered.map((delivery) => [delivery.message.messageId, delivery.deliveryCount])).toEqual([['keep', 3]]);
    expect(Buffer.from(redelivered[0]!.message.body).toString()).toBe('survives');
    const feedback = await testHub.request('GET', '/messages/serviceBound/feedback');
    expect(feedback.status).toBe(200);
    expect(feedback.json).toEqual([expect.objectContaining({ originalMessageId: 'done', statusCode: 'Success' })]);
  });
});
