import { constants as cryptoConstants } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import { ArgumentError, HubError } from '@fieldhub/protocol';
import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { HubMetrics } from '../../metrics';
import { errorEnvelope } from './error-envelope';

/** What the HTTPS head needs to start. */
export interface HttpServerOptions {
  /** PEM server certificate chain and key. */
  readonly tls: { readonly cert: string; readonly key: string };
  readonly logger: Logger;
  readonly metrics: HubMetrics;
  /** Largest accepted request body (bytes). */
  readonly bodyLimit?: number;
}

const jsonType = 'application/json; charset=utf-8';

/**
 * The HTTPS head: one fastify app over a Node `https` server, answering every error in Azure's envelope with
 * the `iothub-errorcode` header. Route modules register on the returned app and just throw `HubError`.
 */
export function createHttpServer(options: HttpServerOptions): { app: FastifyInstance; server: Server } {
  let server: Server | undefined;
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    // `request.log` is the hub's logger itself: a pino child per request (bound to a request id nobody logs, as
    // request logging is off) cost ~14 µs of every direct method's round trip. Error logs carry the URL.
    childLoggerFactory: (logger) => logger,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    // Ids in paths are encodeURIComponent-ed by the SDKs and may be long (128 chars, module ids too).
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
    serverFactory: (handler) => {
      // X.509 devices present a client certificate over WebSockets too; the device heads verify it (no rejection here).
      // No TLS session resumption: a resumed session carries the client's leaf certificate but not the
      // intermediates it sent, so a CA-signed device behind an intermediate would be refused on every resumed
      // connection (Node's https agent resumes by default, azure-iot-device-http included).
      server = createServer(
        {
          cert: options.tls.cert,
          key: options.tls.key,
          requestCert: true,
          rejectUnauthorized: false,
          secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
        },
        handler,
      );
      return server;
    },
  }) as unknown as FastifyInstance;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      done(
        new HubError('IotHubFormatError', `The request body is not valid JSON: ${(error as Error).message}`),
        undefined,
      );
    }
  });
  // Everything else (telemetry bodies, cloud-to-device payloads) arrives as raw bytes.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  // Known path patterns, so that a wrong HTTP method on a known path answers 405 rather than 404.
  const patterns: { method: string; pattern: RegExp }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const source = route.url
      .split('/')
      .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    for (const method of methods) patterns.push({ method, pattern: new RegExp(`^${source}/?$`) });
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const known = patterns.some(({ pattern }) => pattern.test(path));
    const error = known
      ? new HubError('MethodNotAllowed', `${request.method} is not supported on ${path}`)
      : new HubError('ResourceNotFound', `No resource at ${path}`);
    sendError(reply, error);
  });

  app.setErrorHandler((raw: FastifyError | HubError | Error, request, reply) => {
    const error = toHubError(raw);
    // The path only: a query may carry a SAS signature (blob URLs).
    const path = request.url.split('?')[0];
    if (error.status >= 500) request.log.error({ err: raw, path }, 'request failed');
    else request.log.debug({ code: error.code, path }, error.message);
    sendError(reply, error);
  });

  app.addHook('onResponse', (request, reply, done) => {
    const code = reply.getHeader('iothub-errorcode');
    options.metrics.recordOperation(
      `http ${request.method} ${request.routeOptions.url ?? 'unknown'}`,
      typeof code === 'string' ? code : 'ok',
      reply.elapsedTime / 1000,
    );
    done();
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.metrics.contentType);
    return options.metrics.render();
  });

  if (!server) throw new Error('fastify did not call the server factory');
  return { app, server };
}

function sendError(reply: import('fastify').FastifyReply, error: HubError): void {
  reply
    .code(error.status)
    .header('content-type', jsonType)
    .header('iothub-errorcode', error.code)
    .send(JSON.stringify(errorEnvelope(error)));
}

/** Maps fastify's own errors (body too large, bad media type) and stray exceptions onto hub error codes. */
function toHubError(error: FastifyError | HubError | Error): HubError {
  if (HubError.is(error)) return error;
  const code = (error as FastifyError).code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new HubError('MessageTooLarge', 'The request body is too large');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
    return new ArgumentError(error.message, { field: 'Content-Type' });
  }
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new HubError('IotHubFormatError', 'The request body is empty');
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) return new ArgumentError(error.message);
  return new HubError('ServerError', 'An internal error occurred', { cause: error });
}
