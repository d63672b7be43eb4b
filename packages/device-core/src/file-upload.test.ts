import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionManager } from './connection-manager';
import { createDeviceClient } from './create-client';
import { sasKeyCredentialProvider, sasTokenCredentialProvider } from './credentials';
import type { DeviceClient } from './device-client';
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  type HubError,
  UnsupportedFeatureError,
} from './errors';
import { FakeHub } from './fake-transport';
import { FileUpload } from './file-upload';
import type {
  FileUploadData,
  FileUploadHubOptions,
  FileUploadOutcome,
  FileUploadProgress,
  FileUploadService,
  FileUploadTarget,
  PutBlobOptions,
} from './transport/file-upload';
import type { CredentialProvider, TransportCredentials } from './transport/transport';

const key = 'AAECAwQFBgcICQoLDA0ODw==';
const connectionString = `HostName=hub.local;DeviceId=dev1;SharedAccessKey=${key}`;
const fastRetry = { nextDelayMs: (attempt: number) => (attempt < 10 ? 1 : undefined) };

/** Resolves when `signal` aborts, rejecting with AbortError as a real uploader does. */
function abortedBy(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = (): void => reject(new AbortError());
    if (signal?.aborted) fail();
    else signal?.addEventListener('abort', fail, { once: true });
  });
}

/**
 * A FileUploadService in memory, hub and store in one: it hands out targets, stores blobs in blocks of
 * `blockSize` (reporting progress per block), records notifications, and can be told to refuse or hold.
 */
class FakeFileUploadService implements FileUploadService {
  readonly blobs = new Map<string, Uint8Array>();
  readonly notifications: { correlationId: string; outcome: FileUploadOutcome; sasToken: string | undefined }[] = [];
  readonly createCalls: { blobName: string; sasToken: string | undefined; ca: string | undefined }[] = [];
  readonly putCalls: { target: FileUploadTarget; options: PutBlobOptions | undefined }[] = [];
  /** Tokens createUpload refuses (as the hub refuses an expired or wrong one). */
  readonly refusedTokens = new Set<string>();
  /** Failures of the next createUpload calls, in order. */
  readonly createFailures: HubError[] = [];
  /** Fails the store's request after this many blocks. */
  failPutAfterBlocks: { blocks: number; error: HubError } | undefined;
  /** Waits (until aborted) before storing the block after this many. */
  holdPutAfterBlocks: number | undefined;
  /** Notifications never answer (until aborted). */
  holdNotify = false;
  blockSize = 4;
  blocksStored = 0;
  #counter = 0;

  async createUpload(
    credentials: TransportCredentials,
    blobName: string,
    options?: FileUploadHubOptions,
  ): Promise<FileUploadTarget> {
    this.createCalls.push({ blobName, sasToken: credentials.sasToken, ca: options?.ca });
    const failure = this.createFailures.shift();
    if (failure) throw failure;
    if (credentials.sasToken !== undefined && this.refusedTokens.has(credentials.sasToken)) {
      throw new AuthenticationError('Unauthorized');
    }
    const id = ++this.#counter;
    return {
      correlationId: `correlation-${id}`,
      hostName: 'store.local:8443',
      containerName: 'uploads',
      blobName: `${credentials.deviceId}/${blobName}`,
      sasToken: `?sv=2018-03-28&sr=b&sig=sig${id}&se=2030-01-01T00%3A00%3A00Z&sp=rw`,
    };
  }

  async putBlob(target: FileUploadTarget, data: FileUploadData, options?: PutBlobOptions): Promise<void> {
    this.putCalls.push({ target, options });
    const signal = options?.signal;
    signal?.throwIfAborted();
    const chunks: Uint8Array[] = [];
    let uploaded = 0;
    let pending: number[] = [];
    const flush = async (): Promise<void> => {
      if (this.failPutAfterBlocks && this.blocksStored >= this.failPutAfterBlocks.blocks) {
        throw this.failPutAfterBlocks.error;
      }
      if (this.holdPutAfterBlocks !== undefined && this.blocksStored >= this.holdPutAfterBlocks) {
        await abortedBy(signal);
      }
      signal?.throwIfAborted();
      chunks.push(Uint8Array.from(pending));
      uploaded += pending.length;
      pending = [];
      this.blocksStored++;
      options?.onProgress?.({ bytesUploaded: uploaded, ...(options.length !== undefined ? { totalBytes: 1 } : {}) });
    };
    const source: AsyncIterable<Uint8Array> =
      data instanceof Uint8Array
        ? (async function* () {
            yield data;
          })()
        : data;
    for await (const chunk of source) {
      for (const byte of chunk) {
        pending.push(byte);
        if (pending.length === this.blockSize) await flush();
      }
    }
    if (pending.length > 0 || uploaded === 0) await flush();
    const blob = new Uint8Array(uploaded);
    let offset = 0;
    for (const chunk of chunks) {
      blob.set(chunk, offset);
      offset += chunk.length;
    }
    this.blobs.set(target.blobName, blob);
  }

  async notify(
    credentials: TransportCredentials,
    correlationId: string,
    outcome: FileUploadOutcome,
    options?: FileUploadHubOptions,
  ): Promise<void> {
    if (this.holdNotify) await abortedBy(options?.signal);
    this.notifications.push({ correlationId, outcome, sasToken: credentials.sasToken });
  }
}

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

async function* chunksOf(...chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

const clients: DeviceClient[] = [];

async function clientWith(
  service: FileUploadService | undefined,
  hub = new FakeHub(),
  extra: { connectionString?: string; ca?: string; credentialProvider?: CredentialProvider } = {},
): Promise<DeviceClient> {
  const client = await createDeviceClient({
    ...(extra.credentialProvider !== undefined
      ? { credentialProvider: extra.credentialProvider }
      : { connectionString: extra.connectionString ?? connectionString }),
    transport: hub.factory(),
    retryPolicy: fastRetry,
    ...(service !== undefined ? { fileUpload: service } : {}),
    ...(extra.ca !== undefined ? { ca: extra.ca } : {}),
  });
  clients.push(client);
  return client;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

describe('DeviceClient.uploadFile', () => {
  it('creates the upload, stores the bytes in blocks with monotonic progress ending at the size, and notifies success', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service, new FakeHub(), { ca: 'CA PEM' });
    const progress: FileUploadProgress[] = [];
    const result = await client.uploadFile('logs/a.bin', bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), {
      onProgress: (event) => progress.push(event),
    });
    expect(result).toEqual({
      correlationId: 'correlation-1',
      hostName: 'store.local:8443',
      containerName: 'uploads',
      blobName: 'dev1/logs/a.bin',
      size: 10,
    });
    expect(service.blobs.get('dev1/logs/a.bin')).toEqual(bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
    expect(progress).toEqual([
      { bytesUploaded: 4, totalBytes: 10 },
      { bytesUploaded: 8, totalBytes: 10 },
      { bytesUploaded: 10, totalBytes: 10 },
    ]);
    expect(service.notifications).toEqual([
      {
        correlationId: 'correlation-1',
        outcome: { isSuccess: true, statusCode: 201, statusDescription: 'Created' },
        sasToken: expect.stringMatching(/^SharedAccessSignature sr=hub\.local%2Fdevices%2Fdev1&/),
      },
    ]);
    expect(service.createCalls[0]).toMatchObject({ blobName: 'logs/a.bin', ca: 'CA PEM' });
    expect(service.putCalls[0]?.options).toMatchObject({ ca: 'CA PEM', length: 10 });
  });

  it('streams an AsyncIterable, counting its size; totalBytes only when length is given', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    const unsized: FileUploadProgress[] = [];
    const first = await client.uploadFile('s1', chunksOf(bytes(1, 2, 3), bytes(4, 5, 6)), {
      onProgress: (event) => unsized.push(event),
    });
    expect(first.size).toBe(6);
    expect(unsized).toEqual([{ bytesUploaded: 4 }, { bytesUploaded: 6 }]);
    const sized: FileUploadProgress[] = [];
    await client.uploadFile('s2', chunksOf(bytes(1, 2, 3), bytes(4, 5)), {
      length: 5,
      onProgress: (event) => sized.push(event),
    });
    expect(sized.at(-1)).toEqual({ bytesUploaded: 5, totalBytes: 5 });
    expect(service.blobs.get('dev1/s2')).toEqual(bytes(1, 2, 3, 4, 5));
  });

  it('uploads an empty file and reports its end', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    const progress: FileUploadProgress[] = [];
    const result = await client.uploadFile('empty', new Uint8Array(0), { onProgress: (event) => progress.push(event) });
    expect(result.size).toBe(0);
    expect(progress).toEqual([{ bytesUploaded: 0, totalBytes: 0 }]);
    expect(service.notifications[0]?.outcome.isSuccess).toBe(true);
  });

  it('gets a fresh SAS token once when the hub refuses the credentials, then gives up with AuthenticationError', async () => {
    const service = new FakeFileUploadService();
    const refreshes: boolean[] = [];
    const se = Math.floor(Date.now() / 1000) + 3600;
    const credentialProvider = sasTokenCredentialProvider({
      hostName: 'hub.local',
      deviceId: 'dev1',
      getToken: ({ refresh }) => {
        refreshes.push(refresh);
        return `SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=token${refreshes.length}&se=${se}`;
      },
    });
    const client = await clientWith(service, new FakeHub(), { credentialProvider });
    // The token the client connected with is refused now (as a revoked one would be): the upload refreshes it.
    service.refusedTokens.add(`SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=token1&se=${se}`);
    await client.uploadFile('after-refresh', bytes(2));
    expect(service.createCalls.map((call) => call.sasToken?.replace(/.*sig=(\w+).*/, '$1'))).toEqual([
      'token1',
      'token2',
    ]);
    expect(refreshes).toEqual([false, true]);
    expect(service.notifications[0]?.sasToken).toMatch(/sig=token2/);
    // Refused again after the refresh: AuthenticationError, no second refresh.
    service.createFailures.push(new AuthenticationError('Unauthorized'), new AuthenticationError('Unauthorized'));
    await expect(client.uploadFile('refused', bytes(3))).rejects.toBeInstanceOf(AuthenticationError);
    expect(service.createCalls).toHaveLength(4);
    expect(refreshes).toEqual([false, true, true]);
    expect(service.putCalls).toHaveLength(1);
  });

  it('tries createUpload again after a retryable failure, a bounded number of times', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    service.createFailures.push(new ConnectionError('hub unreachable'));
    await expect(client.uploadFile('retried', bytes(1))).resolves.toMatchObject({ blobName: 'dev1/retried' });
    service.createFailures.push(
      new ConnectionError('hub unreachable'),
      new ConnectionError('hub unreachable'),
      new ConnectionError('hub unreachable'),
    );
    await expect(client.uploadFile('unreachable', bytes(1))).rejects.toBeInstanceOf(ConnectionError);
    expect(service.createCalls).toHaveLength(5);
    // An answer that no retry changes is not retried.
    service.createFailures.push(new ArgumentError('bad blob name'));
    await expect(client.uploadFile('bad', bytes(1))).rejects.toBeInstanceOf(ArgumentError);
    expect(service.createCalls).toHaveLength(6);
  });

  it('rejects with what the store answered and notifies the hub of the failure with its status', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    service.failPutAfterBlocks = { blocks: 1, error: new AuthenticationError('signature mismatch') };
    const progress: FileUploadProgress[] = [];
    const error = await client
      .uploadFile('refused.bin', bytes(1, 2, 3, 4, 5, 6), { onProgress: (event) => progress.push(event) })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(progress).toEqual([{ bytesUploaded: 4, totalBytes: 6 }]);
    expect(service.notifications).toEqual([
      {
        correlationId: 'correlation-1',
        outcome: { isSuccess: false, statusCode: 401, statusDescription: 'signature mismatch' },
        sasToken: expect.any(String),
      },
    ]);
  });

  it('aborts mid-upload with AbortError at once, closes the stream and notifies the hub (499)', async () => {
    const service = new FakeFileUploadService();
    service.holdPutAfterBlocks = 1;
    const client = await clientWith(service);
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        for (let i = 0; i < 100; i++) yield bytes(i, i, i, i);
      } finally {
        closed = true;
      }
    }
    const controller = new AbortController();
    const progress: FileUploadProgress[] = [];
    const uploading = client.uploadFile('aborted.bin', source(), {
      signal: controller.signal,
      onProgress: (event) => {
        progress.push(event);
        controller.abort();
      },
    });
    await expect(uploading).rejects.toBeInstanceOf(AbortError);
    await expect.poll(() => service.notifications).toHaveLength(1);
    expect(service.notifications[0]?.outcome).toEqual({
      isSuccess: false,
      statusCode: 499,
      statusDescription: 'upload aborted by the device',
    });
    await expect.poll(() => closed).toBe(true);
    expect(progress).toEqual([{ bytesUploaded: 4 }]);
    expect(service.blobs.size).toBe(0);
  });

  it('gives up on a failure notification the hub does not answer, within the bound', async () => {
    const service = new FakeFileUploadService();
    service.failPutAfterBlocks = { blocks: 0, error: new ConnectionError('store unreachable') };
    service.holdNotify = true;
    const manager = new ConnectionManager({
      transport: new FakeHub().factory(),
      credentialProvider: sasKeyCredentialProvider({ hostName: 'hub.local', deviceId: 'dev1', key }),
    });
    await manager.start();
    const feature = new FileUpload(manager, { service, failureNotificationTimeoutMs: 20, hubAttempts: 1 });
    await expect(feature.upload('x', bytes(1))).rejects.toBeInstanceOf(ConnectionError);
    expect(service.notifications).toHaveLength(0);
    await manager.close();
  });

  it('refuses a module identity: modules cannot upload files', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service, new FakeHub(), {
      connectionString: `HostName=hub.local;DeviceId=dev1;ModuleId=m1;SharedAccessKey=${key}`,
    });
    const error = await client.uploadFile('m.txt', bytes(1)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnsupportedFeatureError);
    expect((error as Error).message).toMatch(/modules cannot upload files/);
    expect(service.createCalls).toHaveLength(0);
  });

  it('refuses without a FileUploadService', async () => {
    const client = await clientWith(undefined);
    await expect(client.uploadFile('x', bytes(1))).rejects.toBeInstanceOf(UnsupportedFeatureError);
  });

  it('refuses bad arguments with ArgumentError before asking the hub', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    const cases: [string, unknown, object, string][] = [
      ['', bytes(1), {}, 'blobName'],
      ['x', 'text', {}, 'data'],
      ['x', { length: 3 }, {}, 'data'],
      ['x', bytes(1, 2), { length: 3 }, 'length'],
      ['x', bytes(1), { length: -1 }, 'length'],
      ['x', bytes(1), { onProgress: 'no' }, 'onProgress'],
    ];
    for (const [blobName, data, options, field] of cases) {
      const error = await client
        .uploadFile(blobName, data as FileUploadData, options)
        .catch((caught: unknown) => caught);
      expect(error, `${field}`).toBeInstanceOf(ArgumentError);
      expect((error as ArgumentError).field).toBe(field);
    }
    expect(service.createCalls).toHaveLength(0);
  });

  it('fails a stream that yields strings or does not match length, and notifies the hub', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    async function* strings(): AsyncGenerator<unknown> {
      yield 'not bytes';
    }
    await expect(client.uploadFile('strings', strings() as AsyncIterable<Uint8Array>)).rejects.toBeInstanceOf(
      ArgumentError,
    );
    await expect(client.uploadFile('short', chunksOf(bytes(1, 2)), { length: 3 })).rejects.toThrow(
      /ended after 2 bytes/,
    );
    await expect(client.uploadFile('long', chunksOf(bytes(1, 2, 3, 4, 5)), { length: 3 })).rejects.toThrow(
      /longer than length/,
    );
    expect(service.notifications.map((entry) => entry.outcome.isSuccess)).toEqual([false, false, false]);
    expect(service.blobs.size).toBe(0);
  });

  it('keeps uploading when an onProgress callback throws', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    const result = await client.uploadFile('p', bytes(1, 2, 3, 4, 5), {
      onProgress: () => {
        throw new Error('callback bug');
      },
    });
    expect(result.size).toBe(5);
  });

  it('uploads while the transport is reconnecting (its own requests, not the connection)', async () => {
    const hub = new FakeHub();
    const service = new FakeFileUploadService();
    const client = await clientWith(service, hub);
    hub.defaultOutcome = 'unreachable';
    hub.dropConnection();
    await expect.poll(() => client.state).toBe('reconnecting');
    await expect(client.uploadFile('offline.bin', bytes(1, 2, 3))).resolves.toMatchObject({ size: 3 });
    expect(client.state).not.toBe('connected');
  });

  it('rejects an upload in flight with ConnectionError `client closed` when the client closes, and later calls too', async () => {
    const service = new FakeFileUploadService();
    service.holdPutAfterBlocks = 0;
    const client = await clientWith(service);
    const uploading = client.uploadFile('closing.bin', bytes(1, 2, 3));
    await expect.poll(() => service.putCalls.length).toBe(1);
    await client.close();
    await expect(uploading).rejects.toMatchObject({ name: 'ConnectionError', message: 'client closed' });
    await expect.poll(() => service.notifications[0]?.outcome.statusCode).toBe(499);
    await expect(client.uploadFile('later', bytes(1))).rejects.toMatchObject({ message: 'client closed' });
  });

  it('settles once with AbortError when the signal aborted before the call', async () => {
    const service = new FakeFileUploadService();
    const client = await clientWith(service);
    const controller = new AbortController();
    controller.abort();
    await expect(client.uploadFile('x', bytes(1), { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    expect(service.createCalls).toHaveLength(0);
  });
});
