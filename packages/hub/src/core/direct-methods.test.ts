import { HubError } from '@fieldhub/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirectMethods, type MethodRequest, methodSubject } from './direct-methods';
import { createTestCore, FakeRegistry, type TestCore } from './telemetry-test-support';

describe('DirectMethods', () => {
  let core: TestCore;
  let methods: DirectMethods;

  beforeEach(async () => {
    core = await createTestCore();
    methods = new DirectMethods(core.ctx, new FakeRegistry().add('dev1', ['mod1']), { connectPollMs: 20 });
  });
  afterEach(async () => {
    await core.close();
  });

  it('round-trips through the responder of the device session', async () => {
    const seen: MethodRequest[] = [];
    core.ctx.bus.respond('testhub', 'methods.dev1', async (request) => {
      seen.push(request as MethodRequest);
      return { status: 201, payload: { echoed: (request as MethodRequest).payload } };
    });
    const result = await methods.invoke('dev1', undefined, { methodName: 'reboot', payload: { x: 1 } });
    expect(result).toEqual({ status: 201, payload: { echoed: { x: 1 } } });
    expect(seen).toEqual([{ methodName: 'reboot', payload: { x: 1 }, responseTimeoutInSeconds: 30 }]);
  });

  it('addresses module methods on methods.<device>/<module>', async () => {
    expect(methodSubject('dev1', 'mod1')).toBe('methods.dev1/mod1');
    core.ctx.bus.respond('testhub', 'methods.dev1/mod1', async () => ({ status: 200 }));
    expect(await methods.invoke('dev1', 'mod1', { methodName: 'm' })).toEqual({ status: 200, payload: null });
    await expect(methods.invoke('dev1', 'nope', { methodName: 'm' })).rejects.toMatchObject({
      code: 'ModuleNotFound',
      hubCode: 404010,
    });
  });

  it('answers DeviceNotFound for an unregistered device', async () => {
    await expect(methods.invoke('ghost', undefined, { methodName: 'm' })).rejects.toMatchObject({
      code: 'DeviceNotFound',
      hubCode: 404001,
    });
  });

  it('answers ModuleNotFound for an unregistered module', async () => {
    await expect(methods.invoke('dev1', 'ghost', { methodName: 'm' })).rejects.toMatchObject({
      code: 'ModuleNotFound',
      hubCode: 404010,
    });
  });

  it('answers 404103 DeviceNotOnline at once when no session responds and connectTimeout is 0', async () => {
    const error = await methods.invoke('dev1', undefined, { methodName: 'm' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(HubError);
    expect(error).toMatchObject({
      code: 'DeviceNotOnline',
      hubCode: 404103,
      status: 404,
      message: 'Timed out waiting for device to connect.',
    });
  });

  it('waits up to connectTimeoutInSeconds for the device to come online', async () => {
    setTimeout(() => {
      core.ctx.bus.respond('testhub', 'methods.dev1', async () => ({ status: 200, payload: 'late' }));
    }, 100);
    const started = Date.now();
    const result = await methods.invoke('dev1', undefined, { methodName: 'm', connectTimeoutInSeconds: 2 });
    expect(result).toEqual({ status: 200, payload: 'late' });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('gives up with DeviceNotOnline after connectTimeoutInSeconds', async () => {
    const started = Date.now();
    await expect(
      methods.invoke('dev1', undefined, { methodName: 'm', connectTimeoutInSeconds: 1 }),
    ).rejects.toMatchObject({ code: 'DeviceNotOnline' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('answers 504101 GatewayTimeout when the device does not answer in time', async () => {
    core.ctx.bus.respond('testhub', 'methods.dev1', () => new Promise(() => undefined));
    const started = Date.now();
    await expect(
      methods.invoke('dev1', undefined, { methodName: 'm', responseTimeoutInSeconds: 5 }),
    ).rejects.toMatchObject({
      code: 'GatewayTimeout',
      hubCode: 504101,
      message: 'Timed out waiting for the response from device.',
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(4900);
  }, 10_000);

  it('validates the method name, timeouts and payload size', async () => {
    core.ctx.bus.respond('testhub', 'methods.dev1', async () => ({ status: 200 }));
    for (const methodName of ['', 'a b', 'a/b', 'a$', 'a{b}', 'tab\t', 'é']) {
      await expect(methods.invoke('dev1', undefined, { methodName })).rejects.toMatchObject({
        code: 'ArgumentInvalid',
        hubCode: 400004,
      });
    }
    for (const name of ['reboot', 'get-Status_2', 'a.b~c!']) {
      await expect(methods.invoke('dev1', undefined, { methodName: name })).resolves.toMatchObject({ status: 200 });
    }
    for (const responseTimeoutInSeconds of [4, 301, Number.NaN]) {
      await expect(
        methods.invoke('dev1', undefined, { methodName: 'm', responseTimeoutInSeconds }),
      ).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    }
    for (const connectTimeoutInSeconds of [-1, 301]) {
      await expect(
        methods.invoke('dev1', undefined, { methodName: 'm', connectTimeoutInSeconds }),
      ).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    }
    await expect(
      methods.invoke('dev1', undefined, { methodName: 'm', payload: 'x'.repeat(128 * 1024) }),
    ).rejects.toMatchObject({ code: 'MessageTooLarge' });
  });

  it('passes a HubError from the session through and rejects a malformed reply', async () => {
    core.ctx.bus.respond('testhub', 'methods.dev1', async (request) => {
      if ((request as MethodRequest).methodName === 'fail') throw new HubError('ThrottlingException', 'slow down');
      return { payload: 'no status' };
    });
    await expect(methods.invoke('dev1', undefined, { methodName: 'fail' })).rejects.toMatchObject({
      code: 'ThrottlingException',
    });
    await expect(methods.invoke('dev1', undefined, { methodName: 'bad' })).rejects.toMatchObject({
      code: 'ServerError',
    });
  });

  it('stops waiting when the caller aborts', async () => {
    const controller = new AbortController();
    const pending = methods.invoke('dev1', undefined, { methodName: 'm', connectTimeoutInSeconds: 10 }, controller);
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ code: 'OperationAborted' });
  });
});
