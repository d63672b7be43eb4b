/**
 * The HTTPS plumbing under every feature: one undici `Pool` per client (keep-alive, the caller's CA, SNI with the
 * host name without its port), service SAS tokens cached until near expiry, JSON in and out, errors mapped to the
 * HubError family, and AbortSignals honoured everywhere. Internal: not exported from the package.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { isIP } from 'node:net';
import { createSasToken } from '@fieldhub/auth';
import {
  AbortError,
  ArgumentError,
  ConnectionError,
  HubError,
  type ServiceConnectionString,
  TimeoutError,
} from '@fieldhub/protocol';
import { type Dispatcher, Pool } from 'undici';
import { errorFromResponse } from './response-error';

/** Azure's REST api-version the hand-written Node SDK sends (protocol-service.md §2.1). */
export const apiVersion = '2021-04-12';

/** Names the SDK to the hub: HTTP `user-agent`, AMQP link property `com.microsoft:client-version`. */
export const userAgent = '@fieldhub/service/0.1.0';

/** Settings of the HTTP client, resolved from the service client's options. */
export interface HttpClientSettings {
  readonly connectionString: ServiceConnectionString;
  readonly ca: string | Buffer | readonly (string | Buffer)[] | undefined;
  readonly port: number | undefined;
  readonly tokenTtlSeconds: number;
  readonly timeoutMs: number;
}

/** One request. */
export interface HttpRequest {
  readonly method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** Path without query; ids already percent-encoded. */
  readonly path: string;
  /** Query parameters; `undefined` values are left out. */
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  /** Adds `api-version` (Azure's routes; the `/fieldhub/` extensions need none). Default true. */
  readonly azure?: boolean;
  readonly headers?: Readonly<Record<string, string>>;
  /** A JSON value, serialised with `application/json`. Exclusive with `body`. */
  readonly json?: unknown;
  /** Raw bytes sent as is. */
  readonly body?: Uint8Array;
  readonly signal?: AbortSignal | undefined;
  /** Overrides the client's timeout for the response headers (direct methods wait longer). */
  readonly headersTimeoutMs?: number;
  /** Overrides the client's timeout between body chunks (0 = none). */
  readonly bodyTimeoutMs?: number;
  /** Failure statuses handed back as answers instead of thrown (the caller classifies them). */
  readonly allowStatus?: readonly number[];
}

/** A successful answer whose body is still unread. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
}

/** Thrown inside the client for an operation cut short by `close()`. */
export function closedError(): AbortError {
  return new AbortError('The service client is closed');
}

/** The HTTPS client of one service client. */
export class HttpClient {
  /** The hub host name from the connection string, with its port when it has one (used in `sr`). */
  readonly hostName: string;
  private readonly pool: Pool;
  private readonly closing = new AbortController();
  private token: { value: string; renewAt: number } | undefined;
  private tokenPromise: Promise<string> | undefined;

  constructor(private readonly settings: HttpClientSettings) {
    // Every call in flight listens to this signal: without a limit, the 11th concurrent call printed Node's
    // MaxListenersExceededWarning although nothing leaks (each call removes its listener when it settles).
    setMaxListeners(0, this.closing.signal);
    const { hostName } = settings.connectionString;
    this.hostName = hostName;
    const { host, port: hostPort } = splitHost(hostName);
    const port = settings.port ?? hostPort ?? 443;
    const origin = `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
    const ca = settings.ca === undefined ? undefined : Array.isArray(settings.ca) ? [...settings.ca] : settings.ca;
    this.pool = new Pool(origin, {
      connect: {
        ...(ca === undefined ? {} : { ca: ca as string | Buffer | (string | Buffer)[] }),
        // SNI must be a name, never an IP, and never carries the port.
        ...(isIP(host) === 0 ? { servername: host } : {}),
      },
      keepAliveTimeout: 30_000,
      headersTimeout: settings.timeoutMs,
      bodyTimeout: settings.timeoutMs,
    });
  }

  /** Aborts when the client closes; the AMQP side (sends, feedback, telemetry readers) listens to it too. */
  get closedSignal(): AbortSignal {
    return this.closing.signal;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  /**
   * Sends a request; resolves with the answer when its status is below 300.
   * @throws HubError mapped from the answer; ConnectionError when the hub cannot be reached; TimeoutError when
   * it does not answer in time; AbortError when `signal` aborts or the client closes.
   */
  async request(request: HttpRequest): Promise<HttpResponse> {
    if (this.closed) throw closedError();
    if (request.signal?.aborted) throw new AbortError(undefined, { cause: request.signal.reason });
    const signal = request.signal ? AbortSignal.any([request.signal, this.closing.signal]) : this.closing.signal;
    const headers: Record<string, string> = {
      authorization: await this.authorization(),
      'request-id': randomUUID(),
      'user-agent': userAgent,
      ...request.headers,
    };
    let body: string | Uint8Array | undefined = request.body;
    if (request.json !== undefined) {
      body = JSON.stringify(request.json);
      headers['content-type'] = 'application/json; charset=utf-8';
    }
    let response: Dispatcher.ResponseData;
    try {
      response = await this.pool.request({
        method: request.method,
        path: this.pathWithQuery(request),
        headers,
        body: body ?? null,
        signal,
        ...(request.headersTimeoutMs === undefined ? {} : { headersTimeout: request.headersTimeoutMs }),
        ...(request.bodyTimeoutMs === undefined ? {} : { bodyTimeout: request.bodyTimeoutMs }),
      });
    } catch (error) {
      throw this.mapFailure(error, request.signal);
    }
    if (response.statusCode >= 300 && !request.allowStatus?.includes(response.statusCode)) {
      let text = '';
      try {
        text = await response.body.text();
      } catch {
        // The status and headers are enough to classify the failure.
      }
      throw errorFromResponse({ status: response.statusCode, headers: response.headers, body: text });
    }
    return { status: response.statusCode, headers: response.headers, body: response.body };
  }

  /**
   * Sends a request and parses the JSON answer (`undefined` for an empty body, e.g. 204).
   * @throws as {@link HttpClient.request}; ServerError when the body is not JSON.
   */
  async json<T>(request: HttpRequest): Promise<{ status: number; headers: HttpResponse['headers']; value: T }> {
    const response = await this.request(request);
    let text: string;
    try {
      text = await response.body.text();
    } catch (error) {
      throw this.mapFailure(error, request.signal);
    }
    if (text.trim() === '') return { status: response.status, headers: response.headers, value: undefined as T };
    try {
      return { status: response.status, headers: response.headers, value: JSON.parse(text) as T };
    } catch (error) {
      throw new HubError('ServerError', `The hub answered ${request.method} ${request.path} with invalid JSON`, {
        cause: error,
      });
    }
  }

  /**
   * Maps a thrown error (undici's, or an abort) to the HubError family. HubErrors pass through.
   */
  mapFailure(error: unknown, signal: AbortSignal | undefined): HubError {
    if (HubError.is(error)) return error;
    if (signal?.aborted) return new AbortError(undefined, { cause: signal.reason ?? error });
    if (this.closed) return new AbortError('The service client is closed', { cause: error });
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new TimeoutError(`The hub did not answer in time (${String(code)})`, {
        code: 'ServiceUnavailable',
        cause: error,
        retryable: true,
      });
    }
    const reason = error instanceof Error ? error.message : String(error);
    return new ConnectionError(`Cannot reach the hub at ${this.hostName}: ${reason}`, { cause: error });
  }

  /** Closes every connection (aborting requests in flight). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing.abort(closedError());
    await this.pool.destroy().catch(() => undefined);
  }

  private pathWithQuery(request: HttpRequest): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined) params.append(name, String(value));
    }
    if (request.azure !== false) params.append('api-version', apiVersion);
    const query = params.toString();
    return query === '' ? request.path : `${request.path}?${query}`;
  }

  // The Authorization header: a service SAS token (sr = host as in the connection string, skn = policy; §1.3),
  // renewed once less than a quarter of its lifetime (at most 5 min) is left.
  private async authorization(): Promise<string> {
    const cs = this.settings.connectionString;
    if ('sharedAccessSignature' in cs && cs.sharedAccessSignature !== undefined) return cs.sharedAccessSignature;
    if (this.token && Date.now() < this.token.renewAt) return this.token.value;
    this.tokenPromise ??= this.signToken().finally(() => {
      this.tokenPromise = undefined;
    });
    return this.tokenPromise;
  }

  private async signToken(): Promise<string> {
    const cs = this.settings.connectionString;
    if (cs.sharedAccessKey === undefined || cs.sharedAccessKeyName === undefined) {
      throw new ArgumentError('the connection string has no SharedAccessKey', { field: 'connectionString' });
    }
    const ttl = this.settings.tokenTtlSeconds;
    const issuedAt = Date.now();
    const value = await createSasToken({
      resourceUri: this.hostName,
      key: cs.sharedAccessKey,
      keyName: cs.sharedAccessKeyName,
      ttlSeconds: ttl,
      // Node's service SDK writes the host name raw (§1.3).
      encodeResourceUri: false,
    });
    const margin = Math.min(ttl / 4, 300);
    this.token = { value, renewAt: issuedAt + (ttl - margin) * 1000 };
    return value;
  }
}

/** Splits `host[:port]` (and `[v6]:port`). */
export function splitHost(hostName: string): { host: string; port: number | undefined } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostName);
  if (bracketed) return { host: bracketed[1] ?? '', port: bracketed[2] ? Number(bracketed[2]) : undefined };
  const match = /^([^:]+):(\d+)$/.exec(hostName);
  if (match) return { host: match[1] ?? '', port: Number(match[2]) };
  return { host: hostName, port: undefined };
}

/** `"etag"` as `If-Match` wants it; `*` stays `"*"`; an already quoted value is kept. */
export function quoteEtag(etag: string): string {
  return /^".*"$/.test(etag) ? etag : `"${etag}"`;
}

/** Percent-encodes one path segment (an id). */
export function segment(id: string): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new ArgumentError('an id must be a non-empty string', { field: 'id' });
  }
  return encodeURIComponent(id);
}

/**
 * Resolves after `ms`, or rejects with AbortError when `signal` aborts first.
 */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError(undefined, { cause: signal.reason }));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortError(undefined, { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
