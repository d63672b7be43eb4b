/**
 * DPS over MQTT 3.1.1 (TLS, or WebSockets on `/$iothub/websocket`), on MQTT.js, frame for frame as the official
 * Node client (protocol-device.md §5.1, capture dps.txt): CONNECT with client id = registration id, user name
 * `{idScope}/registrations/{id}/api-version=2019-03-31&ClientVersion=..`, the SAS token as password (none with a
 * client certificate), clean session; SUBSCRIBE `$dps/registrations/res/#` QoS 1; requests published QoS 1 with a
 * fresh `$rid`, answers matched by it.
 */
import { randomUUID } from 'node:crypto';
import { AbortError, AuthenticationError, ConnectionError, type HubError } from '@fieldhub/protocol';
import { connect as connectMqtt, type IClientOptions } from 'mqtt';
import { channelTlsOptions, type DpsChannel, type DpsChannelOptions, urlHost } from './dps-channel';
import {
  dpsResponseTopicFilter,
  mqttOperationStatusTopic,
  mqttRegisterTopic,
  mqttUsername,
  parseMqttResponseTopic,
} from './dps-wire';
import type { DpsReply } from './registration-result';
import { userAgent } from './version';

/** Options of the MQTT channel beyond the common ones. */
export interface MqttChannelOptions extends DpsChannelOptions {
  /** MQTT over WebSockets instead of TLS. */
  readonly webSockets: boolean;
}

interface Pending {
  resolve(reply: DpsReply): void;
  reject(error: HubError): void;
}

/**
 * The error for a refused CONNECT, by CONNACK return code [MQTT-3.2.2-3]: 2 (identifier rejected), 4 (bad user name
 * or password) and 5 (not authorized) are AuthenticationErrors; 3 (unavailable) a retryable ConnectionError.
 */
export function connackError(returnCode: number, cause?: unknown): HubError {
  const options = cause === undefined ? {} : { cause };
  if (returnCode === 2 || returnCode === 4 || returnCode === 5) {
    return new AuthenticationError(`DPS refused the registration's credentials (CONNACK ${returnCode})`, options);
  }
  return new ConnectionError(`DPS refused the connection (CONNACK ${returnCode})`, options);
}

/**
 * Connects to DPS over MQTT and subscribes to the responses.
 * @throws AuthenticationError when DPS refuses the credentials (CONNACK 2, 4, 5); ConnectionError when it cannot be
 * reached, TLS fails or the connection closes; AbortError when `signal` aborts.
 */
export async function openMqttChannel(options: MqttChannelOptions): Promise<DpsChannel> {
  const tls = channelTlsOptions(options);
  const url = options.webSockets
    ? `wss://${urlHost(options.host)}:${options.port}/$iothub/websocket`
    : `mqtts://${urlHost(options.host)}:${options.port}`;
  const clientOptions: IClientOptions = {
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: options.registrationId,
    username: mqttUsername(options.idScope, options.registrationId, userAgent),
    ...(options.sasToken === undefined ? {} : { password: options.sasToken }),
    // DPS keeps no sessions (§5.1).
    clean: true,
    keepalive: 60,
    // One registration, one connection: the flow above decides about retries.
    reconnectPeriod: 0,
    resubscribe: false,
    manualConnect: true,
    ...tls,
    ...(options.webSockets ? { wsOptions: tls } : {}),
  };
  const client = connectMqtt(url, clientOptions);
  const pending = new Map<string, Pending>();
  let lastError: Error | undefined;
  let closed = false;
  let closeError: HubError | undefined;
  const onClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));

  client.on('error', (error) => {
    lastError = error;
  });
  client.on('close', () => {
    closed = true;
    const error =
      closeError ??
      new ConnectionError(`the MQTT connection to ${url} closed${lastError ? `: ${lastError.message}` : ''}`, {
        cause: lastError,
      });
    for (const [rid, request] of pending) {
      pending.delete(rid);
      request.reject(error);
    }
  });
  client.on('message', (topic, payload) => {
    const response = parseMqttResponseTopic(topic);
    if (response === undefined) return;
    const request = pending.get(response.rid);
    if (request === undefined) return; // an answer to a request given up on (aborted)
    pending.delete(response.rid);
    request.resolve({
      status: response.status,
      retryAfterSeconds: response.retryAfterSeconds,
      body: Buffer.from(payload).toString('utf8'),
    });
  });

  const destroy = (): void => {
    client.end(true);
  };

  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (error?: HubError): void => {
      if (done) return;
      done = true;
      options.signal.removeEventListener('abort', onAbort);
      client.off('connect', onConnect);
      client.off('close', onClose);
      if (error === undefined) resolve();
      else {
        destroy();
        reject(error);
      }
    };
    const onConnect = (): void => finish();
    const onClose = (): void => {
      const code = (lastError as { code?: unknown } | undefined)?.code;
      finish(
        typeof code === 'number'
          ? connackError(code, lastError)
          : new ConnectionError(`cannot connect to DPS at ${url}: ${lastError?.message ?? 'the connection closed'}`, {
              cause: lastError,
            }),
      );
    };
    const onAbort = (): void => finish(new AbortError(undefined, { cause: options.signal.reason }));
    if (options.signal.aborted) {
      onAbort();
      return;
    }
    options.signal.addEventListener('abort', onAbort, { once: true });
    client.on('connect', onConnect);
    client.on('close', onClose);
    client.connect();
  });

  await new Promise<void>((resolve, reject) => {
    client.subscribe(dpsResponseTopicFilter, { qos: 1 }, (error, granted) => {
      if (error) {
        destroy();
        reject(new ConnectionError(`DPS refused the subscription to ${dpsResponseTopicFilter}`, { cause: error }));
      } else if (granted?.some((grant) => grant.qos === 128)) {
        destroy();
        reject(new AuthenticationError(`DPS refused the subscription to ${dpsResponseTopicFilter} (SUBACK 128)`));
      } else resolve();
    });
  });

  const request = (topic: (rid: string) => string, body: string, signal: AbortSignal): Promise<DpsReply> =>
    new Promise<DpsReply>((resolve, reject) => {
      if (signal.aborted) {
        reject(new AbortError(undefined, { cause: signal.reason }));
        return;
      }
      if (closed) {
        reject(closeError ?? new ConnectionError('the MQTT connection to DPS is closed'));
        return;
      }
      const rid = randomUUID();
      const onAbort = (): void => {
        pending.delete(rid);
        reject(new AbortError(undefined, { cause: signal.reason }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pending.set(rid, {
        resolve: (reply) => {
          signal.removeEventListener('abort', onAbort);
          resolve(reply);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      });
      client.publish(topic(rid), body, { qos: 1 }, (error) => {
        if (error === undefined || error === null) return;
        const waiting = pending.get(rid);
        pending.delete(rid);
        waiting?.reject(new ConnectionError('DPS did not take the request', { cause: error }));
      });
    });

  return {
    register: (body, signal) => request(mqttRegisterTopic, body, signal),
    // The official client sends a single space as the body of a poll (capture dps.txt).
    operationStatus: (operationId, signal) => request((rid) => mqttOperationStatusTopic(rid, operationId), ' ', signal),
    async close() {
      if (closed) return;
      closeError = new ConnectionError('the registration is over');
      // A DISCONNECT, then the socket closes; a connection that no longer writes is cut.
      client.end(false, {}, () => client.stream?.destroy());
      const timer = setTimeout(() => client.end(true), 2000);
      await onClosed;
      clearTimeout(timer);
    },
  };
}
