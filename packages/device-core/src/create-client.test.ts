import { utf8Decode } from '@fieldhub/protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createDeviceClient } from './create-client';
import { x509CredentialProvider } from './credentials';
import { ArgumentError, AuthenticationError, ConnectionError } from './errors';
import { FakeHub } from './fake-transport';

const key = 'AAECAwQFBgcICQoLDA0ODw==';
const connectionString = `HostName=hub.local;DeviceId=dev1;SharedAccessKey=${key}`;

afterEach(() => {
  vi.useRealTimers();
});

describe('createDeviceClient', () => {
  it('connects before resolving and sends telemetry the hub accepts', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory(), ca: 'PEM' });
    expect(client.state).toBe('connected');
    expect(hub.connections).toBe(1);
    const attempt = hub.connectAttempts[0];
    expect(attempt?.ca).toBe('PEM');
    expect(attempt?.credentials.sasToken).toMatch(/^SharedAccessSignature sr=hub\.local%2Fdevices%2Fdev1&sig=/);
    await client.sendTelemetry({ body: 'hello', properties: { a: '1' }, messageId: 'm1', correlationId: 'c1' });
    expect(hub.telemetry).toHaveLength(1);
    expect(utf8Decode(hub.telemetry[0]?.body ?? new Uint8Array())).toBe('hello');
    expect(hub.telemetry[0]).toMatchObject({ properties: { a: '1' }, messageId: 'm1', correlationId: 'c1' });
    await client.close();
  });

  it('sends an object body as JSON with content type and encoding', async () => {
    const hub = new FakeHub();
    await using client = await createDeviceClient({ connectionString, transport: hub.factory() });
    await client.sendTelemetry({ body: { t: 21.5 } });
    expect(hub.telemetry[0]).toMatchObject({ contentType: 'application/json', contentEncoding: 'utf-8' });
    expect(utf8Decode(hub.telemetry[0]?.body ?? new Uint8Array())).toBe('{"t":21.5}');
  });

  it('throws AuthenticationError when the hub refuses the credentials, leaving nothing running', async () => {
    const hub = new FakeHub();
    hub.defaultOutcome = 'refuse';
    await expect(createDeviceClient({ connectionString, transport: hub.factory() })).rejects.toBeInstanceOf(
      AuthenticationError,
    );
    expect(hub.connectAttempts).toHaveLength(1);
    expect(hub.transport.connected).toBe(false);
  });

  it('keeps trying an unreachable hub under the retry policy and connects once it comes up', async () => {
    const hub = new FakeHub();
    hub.defaultOutcome = 'unreachable';
    const retryPolicy = { nextDelayMs: (attempt: number) => (attempt <= 500 ? 10 : undefined) };
    const creating = createDeviceClient({ connectionString, transport: hub.factory(), retryPolicy });
    await vi.waitFor(() => expect(hub.connectAttempts.length).toBeGreaterThanOrEqual(2));
    hub.defaultOutcome = 'accept';
    const client = await creating;
    expect(client.state).toBe('connected');
    await client.close();
  });

  it('throws the last ConnectionError when the retry policy gives up on the first connection', async () => {
    const hub = new FakeHub();
    hub.defaultOutcome = 'unreachable';
    const retryPolicy = { nextDelayMs: (attempt: number) => (attempt < 3 ? 1 : undefined) };
    await expect(
      createDeviceClient({ connectionString, transport: hub.factory(), retryPolicy }),
    ).rejects.toBeInstanceOf(ConnectionError);
    expect(hub.connectAttempts).toHaveLength(3);
  });

  it('throws AbortError when its signal aborts the first connection', async () => {
    const hub = new FakeHub();
    hub.defaultOutcome = 'hold';
    const controller = new AbortController();
    const creating = createDeviceClient({ connectionString, transport: hub.factory(), signal: controller.signal });
    controller.abort();
    await expect(creating).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('refuses options without exactly one credential source, or without a transport', async () => {
    const hub = new FakeHub();
    await expect(createDeviceClient({ transport: hub.factory() })).rejects.toBeInstanceOf(ArgumentError);
    const provider = x509CredentialProvider({ hostName: 'h', deviceId: 'd', cert: 'C', key: 'K' });
    await expect(
      createDeviceClient({ connectionString, credentialProvider: provider, transport: hub.factory() }),
    ).rejects.toBeInstanceOf(ArgumentError);
    await expect(createDeviceClient({ connectionString, transport: undefined as never })).rejects.toBeInstanceOf(
      ArgumentError,
    );
    await expect(
      createDeviceClient({ connectionString: 'HostName=h;DeviceId=d;x509=true', transport: hub.factory() }),
    ).rejects.toMatchObject({ field: 'x509' });
  });

  it('close() is idempotent and later operations reject with ConnectionError client closed', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory() });
    const first = client.close();
    const second = client.close();
    expect(second).toBe(first);
    await first;
    expect(client.state).toBe('closed');
    expect(hub.transport.connected).toBe(false);
    const error = await client.sendTelemetry({ body: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ message: 'client closed', isRetryable: false });
    await expect(client.getTwin()).rejects.toMatchObject({ message: 'client closed' });
  });

  it('uses ModuleId for the identity and the token resource, and dials GatewayHostName', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({
      connectionString: `HostName=hub.local;DeviceId=dev1;ModuleId=mod1;SharedAccessKey=${key};GatewayHostName=edge.local`,
      transport: hub.factory(),
    });
    expect(client.identity).toEqual({
      hostName: 'hub.local',
      deviceId: 'dev1',
      moduleId: 'mod1',
      gatewayHostName: 'edge.local',
    });
    const credentials = hub.connectAttempts[0]?.credentials;
    expect(credentials).toMatchObject({ hostName: 'hub.local', deviceId: 'dev1', moduleId: 'mod1' });
    expect(credentials?.gatewayHostName).toBe('edge.local');
    expect(credentials?.sasToken).toContain('sr=hub.local%2Fdevices%2Fdev1%2Fmodules%2Fmod1&');
    await client.close();
  });

  it('passes X.509 certificates from an x509=true connection string', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({
      connectionString: 'HostName=hub.local;DeviceId=dev1;x509=true',
      x509: { cert: 'CERT', key: 'KEY' },
      transport: hub.factory(),
    });
    expect(hub.connectAttempts[0]?.credentials).toEqual({
      hostName: 'hub.local',
      deviceId: 'dev1',
      x509: { certificate: 'CERT', privateKey: 'KEY' },
    });
    await client.close();
  });
});
