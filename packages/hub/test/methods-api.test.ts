import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MethodRequest, methodSubject } from '../src/core/direct-methods';
import { startTestHub, type TestHub } from './helpers/test-hub';

describe('direct methods REST API', () => {
  let testHub: TestHub;

  /** Plays a device session: registers the responder the MQTT head will register on subscribe. */
  const online = (
    deviceId: string,
    moduleId: string | undefined,
    handler: (request: MethodRequest) => Promise<unknown>,
  ) => {
    const { context } = testHub.hub.core;
    return context.bus.respond(context.hubName, methodSubject(deviceId, moduleId), (payload) =>
      handler(payload as MethodRequest),
    );
  };

  beforeAll(async () => {
    testHub = await startTestHub();
    expect((await testHub.request('PUT', '/devices/dev1', { body: { deviceId: 'dev1' } })).status).toBe(200);
    const module = await testHub.request('PUT', '/devices/dev1/modules/mod1', {
      body: { deviceId: 'dev1', moduleId: 'mod1' },
    });
    expect(module.status).toBeLessThan(300);
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  it('round-trips a device method: the device picks the status and payload', async () => {
    const stop = online('dev1', undefined, async (request) => ({
      status: 201,
      payload: { method: request.methodName, got: request.payload },
    }));
    const response = await testHub.request('POST', '/twins/dev1/methods', {
      body: { methodName: 'reboot', payload: { delay: 5 }, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 0 },
    });
    stop();
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toContain('application/json');
    expect(response.json).toEqual({ status: 201, payload: { method: 'reboot', got: { delay: 5 } } });
  });

  it('round-trips a module method', async () => {
    const stop = online('dev1', 'mod1', async () => ({ status: 200, payload: 'module says hi' }));
    const response = await testHub.request('POST', '/twins/dev1/modules/mod1/methods', { body: { methodName: 'hi' } });
    stop();
    expect(response.json).toEqual({ status: 200, payload: 'module says hi' });
  });

  it('answers 404103 DeviceNotOnline when no session is subscribed', async () => {
    const response = await testHub.request('POST', '/twins/dev1/methods', { body: { methodName: 'reboot' } });
    expect(response.status).toBe(404);
    expect(response.headers['iothub-errorcode']).toBe('DeviceNotOnline');
    expect(response.json).toMatchObject({
      Message: 'ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.',
    });
  });

  it('waits connectTimeoutInSeconds for the device to subscribe', async () => {
    let stop: (() => void) | undefined;
    setTimeout(() => {
      stop = online('dev1', undefined, async () => ({ status: 200, payload: null }));
    }, 300);
    const response = await testHub.request('POST', '/twins/dev1/methods', {
      body: { methodName: 'late', connectTimeoutInSeconds: 5 },
    });
    stop?.();
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ status: 200, payload: null });
  });

  it('answers 504101 GatewayTimeout when the device does not answer in time', async () => {
    const stop = online('dev1', undefined, () => new Promise(() => undefined));
    const response = await testHub.request('POST', '/twins/dev1/methods', {
      body: { methodName: 'slow', responseTimeoutInSeconds: 5 },
    });
    stop();
    expect(response.status).toBe(504);
    expect(response.headers['iothub-errorcode']).toBe('GatewayTimeout');
    expect(response.json).toMatchObject({
      Message: 'ErrorCode:GatewayTimeout;Timed out waiting for the response from device.',
    });
  }, 15_000);

  it('answers 404001 for an unknown device and 404010 for an unknown module', async () => {
    const device = await testHub.request('POST', '/twins/ghost/methods', { body: { methodName: 'm' } });
    expect(device.status).toBe(404);
    expect(device.headers['iothub-errorcode']).toBe('DeviceNotFound');
    const module = await testHub.request('POST', '/twins/dev1/modules/ghost/methods', { body: { methodName: 'm' } });
    expect(module.status).toBe(404);
    expect(module.headers['iothub-errorcode']).toBe('ModuleNotFound');
  });

  it('rejects bad requests with 400', async () => {
    for (const body of [
      { methodName: 'bad name' },
      { methodName: 'a/b' },
      {},
      { methodName: 'm', responseTimeoutInSeconds: 1 },
      { methodName: 'm', connectTimeoutInSeconds: 301 },
      { methodName: 'm', responseTimeoutInSeconds: '30' },
      [1, 2],
    ]) {
      const response = await testHub.request('POST', '/twins/dev1/methods', { body });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.headers['iothub-errorcode']).toBe('ArgumentInvalid');
    }
    const missingVersion = await testHub.request('POST', '/twins/dev1/methods', {
      body: { methodName: 'm' },
      apiVersion: false,
    });
    expect(missingVersion.status).toBe(400);
    expect(missingVersion.headers['iothub-errorcode']).toBe('InvalidProtocolVersion');
    const unauthorised = await testHub.request('POST', '/twins/dev1/methods', {
      body: { methodName: 'm' },
      policy: null,
    });
    expect(unauthorised.status).toBe(401);
  });

  it('rejects a payload over 128 KB with 413', async () => {
    const response = await testHub.request('POST', '/twins/dev1/methods', {
      body: { methodName: 'big', payload: 'x'.repeat(128 * 1024) },
    });
    expect(response.status).toBe(413);
    expect(response.headers['iothub-errorcode']).toBe('MessageTooLarge');
  });
});
