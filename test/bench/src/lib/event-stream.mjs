// The hub's built-in endpoint as a reader sees it over HTTPS: `GET /fieldhub/events?from=latest` (server-sent
// events), authorised with a service SAS token from the hub's connection string.
import { request } from 'node:https';
import { serviceToken } from './service-token.mjs';

/**
 * Opens the event stream of `target` (a hub) and resolves once the hub answered 200; `onData(chunk)` then sees
 * every chunk of the stream (Buffers, or strings with `encoding`). Returns a function that closes the stream.
 */
export async function openEventStream(target, onData, { encoding } = {}) {
  const authorization = await serviceToken(target.serviceConnectionString);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: target.httpsPort,
        servername: 'localhost',
        ca: target.ca,
        path: '/fieldhub/events?from=latest',
        headers: { authorization, accept: 'text/event-stream' },
      },
      (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new Error(`event stream answered ${response.statusCode}`));
          return;
        }
        response.socket.setNoDelay(true);
        if (encoding) response.setEncoding(encoding);
        response.on('data', onData);
        response.on('error', () => {});
        resolve(() => req.destroy());
      },
    );
    req.on('error', reject);
    req.end();
  });
}
