import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from './helpers/test-hub';

describe('hub lifecycle', () => {
  const hubs: TestHub[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const hub of hubs.splice(0)) await hub.stop();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('writes hub.json once listening and reuses its CA, keys and data on the next start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fieldhub-lifecycle-'));
    dirs.push(dataDir);
    const first = await startTestHub({ dataDir });
    const hubJson = JSON.parse(readFileSync(join(dataDir, 'hub.json'), 'utf8'));
    expect(hubJson).toEqual({
      hostName: 'localhost',
      ports: { mqtt: first.info.ports.mqtt, amqp: first.info.ports.amqp, https: first.info.ports.https },
      caCertificate: join(dataDir, 'tls', 'ca.pem'),
      serviceConnectionString: expect.stringMatching(
        /^HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=.+=$/,
      ),
      eventHubConnectionString: expect.stringMatching(
        /^Endpoint=sb:\/\/localhost:\d+\/;SharedAccessKeyName=iothubowner;SharedAccessKey=.+;EntityPath=localhost$/,
      ),
      fileUpload: {
        containerName: 'fieldhub-uploads',
        storageConnectionString: expect.stringMatching(
          /^DefaultEndpointsProtocol=https;AccountName=localhostblobs;AccountKey=.+;BlobEndpoint=https:\/\/localhost:\d+$/,
        ),
      },
      dps: {
        host: 'localhost',
        idScope: expect.stringMatching(/^0ne[0-9A-F]{8}$/),
        ports: { mqtt: first.info.ports.mqtt, https: first.info.ports.https, amqp: first.info.ports.amqp },
        serviceConnectionString: expect.stringMatching(
          /^HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=.+=$/,
        ),
      },
    });
    const ca = readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8');
    expect((await first.request('PUT', '/devices/kept', { body: { deviceId: 'kept' } })).status).toBe(200);
    await first.stop();
    expect(existsSync(join(dataDir, 'hub.json'))).toBe(false);

    const second = await startTestHub({ dataDir });
    hubs.push(second);
    expect(readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8')).toBe(ca);
    expect(second.info.serviceConnectionString).toBe(hubJson.serviceConnectionString);
    // The generated ID scope and the DPS policy are kept with the data dir.
    expect(second.info.dps).toMatchObject({
      idScope: hubJson.dps.idScope,
      serviceConnectionString: hubJson.dps.serviceConnectionString,
    });
    const kept = await second.request('GET', '/devices/kept');
    expect(kept.status).toBe(200);
    expect(kept.json).toMatchObject({ deviceId: 'kept' });
  });

  it('answers unknown paths with 404 and wrong methods with 405, in Azure error shape', async () => {
    const hub = await startTestHub();
    hubs.push(hub);
    const unknown = await hub.request('GET', '/no/such/thing');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['iothub-errorcode']).toBe('ResourceNotFound');
    expect(unknown.headers['content-type']).toContain('application/json');
    expect((unknown.json as { Message: string }).Message).toMatch(/^ErrorCode:ResourceNotFound;/);
    const wrongMethod = await hub.request('POST', '/statistics/devices', { body: {} });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers['iothub-errorcode']).toBe('MethodNotAllowed');
  });

  it('serves Prometheus metrics with operations by outcome', async () => {
    const hub = await startTestHub();
    hubs.push(hub);
    await hub.request('GET', '/devices/missing');
    const metrics = await hub.request('GET', '/metrics', { policy: null, apiVersion: false });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('fieldhub_operations_total');
    expect(metrics.text).toMatch(/fieldhub_errors_total\{code="DeviceNotFound"\} 1/);
    expect(metrics.text).toMatch(/fieldhub_queue_depth\{queue="cloudToDevice"\} 0/);
  });
});
