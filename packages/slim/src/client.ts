/**
 * `createClient(host, options)`: the slim IoT Hub device client over MQTT 3.1.1 (protocol-device.md §2).
 *
 * Restricted dialect (ARCHITECTURE.md, "Embedded targets"): one factory of closures, no classes, no `this`; the
 * factory calls none of its inner functions before all are declared, because Espruino does not hoist functions.
 * Error messages are mostly just the code, and nothing is logged: the Espruino bundle has a 12 KB budget and the
 * callbacks carry every event.
 *
 * Connection policy. `open()` dials; every loss schedules a new attempt after an exponential backoff with jitter
 * (half to all of `reconnectMinMs` doubling up to `reconnectMaxMs`, reset once a session is up); refused
 * credentials are reported through `onError` and retried all the same (a key may be fixed on the hub meanwhile).
 * Sessions are clean (`clean=1`), so every connection subscribes again. A token signed here is renewed at 80 % of its lifetime
 * by reconnecting with a fresh one (MQTT 3.1.1 cannot change credentials in-session; Azure's Node SDK does the
 * same, §1.3). A fixed `sasToken` cannot be renewed: once expired, the client ends with `TokenExpired`.
 *
 * Delivery. Telemetry is QoS 1 and waits in a bounded buffer (`maxPendingTelemetry` entries, twin requests in
 * flight counted; twin requests may fill it to twice that) until its PUBACK: messages sent offline go out on the next connection, unacknowledged ones are sent
 * again with DUP. Twin requests need a connection: offline they fail at once with `NotConnected`, and those in
 * flight when it drops fail likewise (the caller knows best whether a repeated reported patch is still wanted).
 * Cloud-to-device messages are acknowledged (PUBACK = complete, §2.8) when `onMessage` returns; one whose handler
 * throws is not, and comes again.
 */
import { ApiVersions, utf8Decode, utf8Encode } from '@fieldhub/protocol';
import { slimError } from './errors';
import type { Host, HostSocket } from './host';
import { createDecoder, encodePacket } from './mqtt/codec';
import type { Packet, PacketDecoder, PublishPacket } from './mqtt/packets';
import { decodeComponent, encodeBag } from './property-bag';
import { decodeBase64, encodeBase64, formatToken, pairValue, sasResource, tokenExpiry } from './sas';
import type { SlimCallback, SlimClient, SlimClientOptions, SlimError, SlimMessage } from './types';

/**
 * What waits for the hub: a telemetry message until its PUBACK (`topic`, `payload`, packet `id`), or a twin
 * request until its response (`rid`; a GET is answered with the twin, a reported PATCH with its version). One list
 * for both keeps the client small: telemetry may fill it to `maxPendingTelemetry`, twin requests to twice that.
 */
interface Pending {
  topic?: string;
  payload?: Uint8Array;
  /** Packet identifier of telemetry, 0 until first sent. */
  id?: number;
  rid?: string;
  get?: boolean;
  // SlimCallback<undefined> for telemetry, SlimCallback<SlimTwin> for a GET, SlimCallback<number> for a PATCH.
  callback: SlimCallback<unknown> | undefined;
  timer: unknown;
}

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3) as Azure's Node SDK maps them (protocol-device.md §2.2); 4 and 5
// (bad user name or password, not authorized) fall to Unauthorized.
const CONNACK_CODES = ['', 'UnacceptableProtocolVersion', 'Unauthorized', 'ServerUnavailable'];

// The system properties of a cloud-to-device message that SlimMessage carries, by their wire names (§2.5).
const SYSTEM_PROPERTIES: { [wire: string]: 'messageId' | 'correlationId' | 'contentType' | 'contentEncoding' } = {
  '$.mid': 'messageId',
  '$.cid': 'correlationId',
  '$.ct': 'contentType',
  '$.ce': 'contentEncoding',
};

// The value of a query parameter of a topic (`...?$rid=1&$version=2`).
function queryValue(topic: string, name: string): string | undefined {
  return pairValue(topic.slice(topic.indexOf('?') + 1), '&', name);
}

// JSON from a payload: `null` when empty; the text itself when it is not JSON (the hub sends JSON, but a payload
// must not be lost to a parse error).
function parseJson(payload: Uint8Array): unknown {
  const text = utf8Decode(payload);
  try {
    return text ? JSON.parse(text) : null;
  } catch (_error) {
    return text;
  }
}

/**
 * Creates a slim client; it does nothing until `open()`. Callbacks of a call that cannot start (`BufferFull`,
 * `MessageTooLarge`, `NotConnected`, `Closed`, `TokenExpired`) run before the call returns; every other callback runs later, from a
 * socket or timer event. Numeric options left out (or 0) take their defaults; they are not checked further (the
 * bundle's budget), so give positive numbers.
 *
 * @example
 * ```ts
 * const client = createClient(host, {
 *   connectionString: 'HostName=hub.example;DeviceId=d1;SharedAccessKey=...',
 *   onConnect: () => client.sendTelemetry('{"t":21}', { '$.ct': 'application/json' }),
 *   onMethod: (request, respond) => respond(200, { ok: true }),
 * });
 * client.open();
 * ```
 * @throws {SlimError} `ArgumentInvalid` when the host name, device id or credential is missing (a key, a SAS
 * token or `sign`; a key needs `host.hmacSha256`), or the key is not base64.
 */
export function createClient(host: Host, options: SlimClientOptions): SlimClient {
  const cs = options.connectionString || '';
  const setting = (value: string | undefined, name: string): string | undefined => value || pairValue(cs, ';', name);
  const hostName = setting(options.hostName, 'HostName');
  const deviceId = setting(options.deviceId, 'DeviceId');
  const fixedToken = setting(options.sasToken, 'SharedAccessSignature');
  const keyText = setting(options.sharedAccessKey, 'SharedAccessKey');
  const sign = options.sign;
  const key = keyText && !sign ? decodeBase64(keyText) : undefined;
  if (!hostName || !deviceId || !(fixedToken || sign || (key && host.hmacSha256))) {
    throw slimError('ArgumentInvalid');
  }
  const lifetime = options.tokenLifetimeSeconds || 3600;
  const keepAlive = options.keepAliveSeconds || 60;
  const minDelay = options.reconnectMinMs || 1000;
  const maxDelay = Math.max(minDelay, options.reconnectMaxMs || 60000);
  const maxPending = options.maxPendingTelemetry || 8;
  const timeout = options.operationTimeoutMs || 30000;
  const maxPacket = options.maxPacketBytes || 135168;
  // A gateway (IoT Edge) is dialled and shows a certificate of its own name, as Azure's SDKs expect; the user name
  // and the token still name the hub (protocol-device.md §1.1, §2.2). `connectHost` is only where to dial (an
  // address): the certificate still names the hub.
  const gateway = pairValue(cs, ';', 'GatewayHostName');
  const connectOptions = {
    host: options.connectHost || gateway || hostName,
    port: options.port || 8883,
    tls: Object.assign({ servername: gateway || hostName }, options.tls),
  };
  const telemetryPrefix = 'devices/' + deviceId + '/messages/events/';
  const cloudToDevicePrefix = 'devices/' + deviceId + '/messages/devicebound/';
  // Each prefix serves its subscription filter (with `#`) and the dispatch of what arrives: one string in the bundle.
  const twinResponsePrefix = '$iothub/twin/res/';
  const desiredPrefix = '$iothub/twin/PATCH/properties/desired/';
  const methodPrefix = '$iothub/methods/POST/';
  // Only what has a handler is subscribed: a device without onMethod is offline for methods, as the hub says.
  // The filters are the protocol's TopicFilters, written out: importing them costs more bytes than the strings.
  const subscriptions: Array<{ topic: string; qos: 0 | 1 }> = [{ topic: twinResponsePrefix + '#', qos: 0 }];
  if (options.onMessage) subscriptions.push({ topic: cloudToDevicePrefix + '#', qos: 1 });
  if (options.onDesired) subscriptions.push({ topic: desiredPrefix + '#', qos: 0 });
  if (options.onMethod) subscriptions.push({ topic: methodPrefix + '#', qos: 0 });

  // Why the client stopped for good (`Closed`, `TokenExpired`), or '' while it runs.
  let ended = '';
  let opened = false;
  let socket: HostSocket | null = null;
  // Bumped for every connection attempt and loss, so that late events of an abandoned one are ignored.
  let generation = 0;
  // 0 no connection; 1 signing or dialling; 2 CONNECT sent; 3 SUBSCRIBE sent; 4 up.
  let phase = 0;
  let attempts = 0;
  let nextId = 0;
  let nextRid = 0;
  let reconnectTimer: unknown = null;
  // The connection's one deadline: sign + dial + CONNACK + SUBACK, later a PINGRESP.
  let deadlineTimer: unknown = null;
  let keepAliveTimer: unknown = null;
  let renewTimer: unknown = null;
  const pending: Pending[] = [];
  let decoder: PacketDecoder | null = null;

  // Runs an application callback with up to two arguments; what it throws is reported, never left to unwind
  // through socket events. False when it threw.
  function guard<A, B>(run: ((a: A, b: B) => void) | undefined, a?: A, b?: B): boolean {
    try {
      if (run) run(a as A, b as B);
      return true;
    } catch (error) {
      if (options.onError) {
        try {
          options.onError(slimError('CallbackFailed', String(error)));
        } catch (_ignored) {
          // onError itself threw: nothing is left to tell.
        }
      }
      return false;
    }
  }

  function stopTimer(handle: unknown): null {
    if (handle !== null) host.clearTimeout(handle);
    return null;
  }

  // PINGREQ, and the hub has one operation timeout to answer it (any packet will do) or the connection is dropped.
  function ping(): void {
    if (deadlineTimer === null) deadlineTimer = host.setTimeout(() => drop(slimError('Timeout')), timeout);
    send({ type: 12 });
  }

  // Keep-alive counts from the last packet sent [MQTT-3.1.2-23]: ping after that much silence. A device that
  // sends more often never pings: an unanswered request pings instead (expireAfterTimeout).
  function armKeepAlive(): void {
    keepAliveTimer = stopTimer(keepAliveTimer);
    if (phase === 4) keepAliveTimer = host.setTimeout(ping, keepAlive * 1000);
  }

  function send(packet: Packet): void {
    if (socket) {
      socket.write(encodePacket(packet));
      armKeepAlive();
    }
  }

  function publish(topic: string, payload: Uint8Array, id: number, dup: boolean): void {
    // The codec writes messageId for QoS 1 only.
    send({ type: 3, topic: topic, payload: payload, qos: id ? 1 : 0, messageId: id, dup: dup, retain: false });
  }

  // 1..65535 in turn [MQTT-2.3.1-1]. An id comes round again only after 65535 others, far beyond the few
  // messages that can be in flight within one operation timeout.
  function allocateId(): number {
    nextId = (nextId % 65535) + 1;
    return nextId;
  }

  function finish(entry: Pending | undefined, error: SlimError | null, result?: unknown): void {
    const index = pending.indexOf(entry as Pending);
    if (entry && index >= 0) {
      pending.splice(index, 1);
      entry.timer = stopTimer(entry.timer);
      guard(entry.callback, error, result);
    }
  }

  // The entry whose `field` (packet `id` or `rid`) is `value`.
  function find(field: 'id' | 'rid', value: unknown): Pending | undefined {
    for (let i = 0; i < pending.length; i++) {
      if (value !== undefined && (pending[i] as Pending)[field] === value) return pending[i];
    }
    return undefined;
  }

  // An entry's timer runs only while the connection is up (drop() stops them all). When it fires, the connection
  // may be half-open (a peer gone without a FIN): probe it before the callback runs (which may close the client).
  function expireAfterTimeout(entry: Pending): void {
    entry.timer = stopTimer(entry.timer);
    entry.timer = host.setTimeout(() => {
      ping();
      finish(entry, slimError('Timeout'));
    }, timeout);
  }

  function transmit(entry: Pending): void {
    const dup = entry.id !== 0;
    if (!dup) entry.id = allocateId();
    expireAfterTimeout(entry);
    publish(entry.topic as string, entry.payload as Uint8Array, entry.id as number, dup);
  }

  function twinRequest(get: boolean, topic: string, body: string, callback: SlimCallback<unknown> | undefined): void {
    // Twin requests may fill the list up to twice the telemetry bound: the catch-up GET in onConnect must not
    // fail behind a buffer of telemetry sent offline.
    if (ended || phase !== 4 || pending.length >= 2 * maxPending) {
      if (callback) callback(slimError(ended || (phase !== 4 ? 'NotConnected' : 'BufferFull')));
      return;
    }
    const entry: Pending = { rid: String(++nextRid), get: get, callback: callback, timer: null };
    pending.push(entry);
    expireAfterTimeout(entry);
    publish(topic + entry.rid, utf8Encode(body), 0, false);
  }

  function onPublish(packet: PublishPacket): void {
    const topic = packet.topic;
    const payload = packet.payload;
    const rid = queryValue(topic, '$rid');
    let acknowledge = true;
    if (topic.indexOf(twinResponsePrefix) === 0) {
      // `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]`
      const status = Number(topic.slice(17, topic.indexOf('/', 17)));
      const version = queryValue(topic, '$version');
      const entry = find('rid', rid);
      if (status >= 300) {
        // The status as the protocol's error names it (protocol-device.md §2.6).
        const code = status === 429 ? 'ThrottlingException' : status >= 500 ? 'ServerError' : 'ArgumentInvalid';
        finish(entry, slimError(code, '', status));
      } else if (entry) {
        // A GET answers the twin, a PATCH the new reported version.
        finish(entry, null, entry.get ? parseJson(payload) : Number(version));
      }
    } else if (topic.indexOf(desiredPrefix) === 0) {
      // `...desired/?$version={version}`; the patch carries `$version` too.
      const version = Number(queryValue(topic, '$version'));
      const patch = parseJson(payload) as { [key: string]: unknown };
      guard(options.onDesired, patch, version);
    } else if (topic.indexOf(methodPrefix) === 0) {
      // `$iothub/methods/POST/{name}/?$rid={rid}`, answered on `$iothub/methods/res/{status}/?$rid={rid}`.
      const onMethod = options.onMethod;
      const request = { name: topic.slice(21, topic.indexOf('/', 21)), payload: parseJson(payload) };
      let answered = false;
      // An answer belongs to this connection: the next session may reuse the rid for another call (the hub counts
      // them per session), and the service caller of this one has its timeout.
      const mine = generation;
      const respond = (status: number, result?: unknown): void => {
        if (!answered && mine === generation) {
          // Answered only once the body is made: a result JSON cannot carry (a cycle) throws here, and the 500
          // below still goes out.
          const body = utf8Encode(JSON.stringify(result === undefined ? null : result));
          answered = true;
          publish('$iothub/methods/res/' + status + '/?$rid=' + rid, body, 0, false);
        }
      };
      // A handler that throws answers 500 rather than leaving the service caller to its timeout.
      if (onMethod && rid !== undefined && !guard(onMethod, request, respond)) respond(500);
    } else if (topic.indexOf(cloudToDevicePrefix) === 0) {
      // The property bag (protocol-device.md §2.5): `k1=v1&k2=v2`, percent-encoded; a key alone has the value ''.
      const message: SlimMessage = { payload: payload, text: utf8Decode(payload), properties: {} };
      const pairs = topic.slice(cloudToDevicePrefix.length).split('&');
      for (let i = 0; i < pairs.length; i++) {
        const pair = pairs[i] as string;
        const equals = pair.indexOf('=');
        const name = decodeComponent(equals < 0 ? pair : pair.slice(0, equals));
        const value = equals < 0 ? '' : decodeComponent(pair.slice(equals + 1));
        if (!name || name === '__proto__') continue;
        // Only `$.` names are looked up: no prototype member (`constructor`, ...) starts so.
        if (name.indexOf('$.') === 0) {
          const field = SYSTEM_PROPERTIES[name];
          if (field) message[field] = value;
        } else if (name !== 'iothub-ack') {
          message.properties[name] = value;
        }
      }
      acknowledge = guard(options.onMessage, message);
    }
    if (packet.messageId && acknowledge) send({ type: 4, messageId: packet.messageId });
  }

  function onPacket(packet: Packet): void {
    // Any packet shows the connection alive: a pending PINGRESP deadline is met.
    if (phase === 4) deadlineTimer = stopTimer(deadlineTimer);
    if (packet.type === 2 && phase === 2) {
      if (packet.returnCode) {
        drop(slimError(CONNACK_CODES[packet.returnCode] || 'Unauthorized'));
      } else {
        phase = 3;
        send({ type: 8, messageId: allocateId(), subscriptions: subscriptions });
      }
    } else if (packet.type === 9 && phase === 3) {
      if (packet.granted.indexOf(128) >= 0) {
        drop(slimError('Unauthorized'));
        return;
      }
      deadlineTimer = stopTimer(deadlineTimer);
      phase = 4;
      attempts = 0;
      // Messages left unacknowledged by the last connection first, then those queued offline, in order.
      const waiting = pending.slice();
      for (let i = 0; i < waiting.length; i++) transmit(waiting[i] as Pending);
      armKeepAlive();
      guard(options.onConnect);
    } else if (packet.type === 4) {
      finish(find('id', packet.messageId), null);
    } else if (packet.type === 3 && phase > 2) {
      // Also before the SUBACK: the hub may publish on a new subscription at once [MQTT-3.8.4-3].
      onPublish(packet);
    } else if (packet.type !== 13) {
      drop(slimError('ProtocolError'));
    }
  }

  // Ends the current connection or attempt, if any, and plans what comes next: nothing once ended, an immediate
  // reconnect after a renewal (no error), else a reconnect after the backoff. Safe to call from any event.
  function drop(error?: SlimError): void {
    const was = phase;
    const current = socket;
    generation++;
    socket = null;
    phase = 0;
    deadlineTimer = stopTimer(deadlineTimer);
    keepAliveTimer = stopTimer(keepAliveTimer);
    renewTimer = stopTimer(renewTimer);
    // Telemetry waits for the next connection (its timeout restarts when it is sent again); twin requests fail.
    const waiting = pending.slice();
    for (let i = 0; i < waiting.length; i++) {
      const entry = waiting[i] as Pending;
      entry.timer = stopTimer(entry.timer);
      if (entry.rid) finish(entry, slimError(ended || 'NotConnected'));
    }
    // The rest of a chunk being decoded belongs to the connection given up.
    if (decoder) decoder.reset();
    if (current) {
      // A clean goodbye when leaving on purpose a session that has sent CONNECT (§3.14).
      if (!error && was >= 2) current.write(encodePacket({ type: 14 }));
      current.close();
    }
    if (was === 4) {
      guard(options.onDisconnect, error);
    } else if (error && !ended) {
      // A failed attempt (refused, unreachable, timed out) has no callback of its own to carry it.
      guard(options.onError, error);
    }
    if (opened && !ended && reconnectTimer === null) {
      // Between half and all of min * 2^attempts (capped): the first retry is spread too, or devices dropped
      // together (a hub restart) would all come back in step.
      const ceiling = Math.min(maxDelay, minDelay * (1 << Math.min(attempts, 20)));
      const delay = error ? ceiling * (0.5 + Math.random() / 2) : 0;
      if (error) attempts++;
      reconnectTimer = host.setTimeout(connect, delay);
    }
  }

  function dial(mine: number, token: string, expiry: number): void {
    let early = false;
    if (!decoder) decoder = createDecoder(onPacket, (error) => drop(slimError('ProtocolError', error.code)), maxPacket);
    decoder.reset();
    const onConnected = (): void => {
      phase = 2;
      const connectPacket: Packet = {
        type: 1,
        clientId: deviceId as string,
        keepAlive: keepAlive,
        clean: true,
        username: hostName + '/' + deviceId + '/?api-version=' + ApiVersions.iotHub,
        password: token,
      };
      send(connectPacket);
      // Renew at 80 % of the lifetime: drop() without an error reconnects at once, with a new token. Wrapped,
      // since a timer may pass its callback an argument (Moddable's Timer passes its id), which drop would take
      // for an error. At most 2e9 ms (23 days): Node and 32-bit timer fields fire a longer delay at once.
      if (expiry) renewTimer = host.setTimeout(() => drop(), Math.min(2e9, (expiry * 1000 - host.now()) * 0.8));
    };
    const created = host.connect(connectOptions, {
      onConnect: () => {
        if (mine !== generation) return;
        // A host may report the connection before connect() has returned the socket.
        if (socket) onConnected();
        else early = true;
      },
      onData: (bytes) => {
        if (mine === generation && decoder) decoder.push(bytes);
      },
      onClose: (error) => {
        if (mine === generation) drop(slimError('ConnectionLost', error ? String(error) : ''));
      },
    });
    if (mine !== generation) {
      created.close();
    } else {
      socket = created;
      if (early) onConnected();
    }
  }

  function connect(): void {
    reconnectTimer = null;
    if (ended || phase) return;
    const fixedExpiry = fixedToken ? tokenExpiry(fixedToken) : 0;
    if (fixedExpiry && fixedExpiry * 1000 <= host.now()) {
      end('TokenExpired');
      return;
    }
    const mine = ++generation;
    phase = 1;
    deadlineTimer = host.setTimeout(() => drop(slimError('Timeout')), timeout);
    if (fixedToken) {
      dial(mine, fixedToken, 0);
      return;
    }
    const expiry = Math.floor(host.now() / 1000) + lifetime;
    const resource = sasResource(hostName as string, deviceId as string);
    const stringToSign = resource + '\n' + expiry;
    const signed = (error: Error | null, signature?: string): void => {
      // Too late when the attempt timed out or the client closed meanwhile, or once dialled (a hook that calls
      // back twice, or throws after calling back).
      if (mine !== generation || socket) return;
      if (error || !signature) drop(slimError('SigningFailed', error ? error.message : ''));
      else dial(mine, formatToken(resource, signature, expiry), expiry);
    };
    if (sign) {
      // A hook that throws fails this attempt: from the reconnect timer it would escape to the host. (The host's
      // own HMAC and connect throw only when misconfigured, which the first open() shows.)
      try {
        sign(stringToSign, signed);
      } catch (error) {
        signed(error as Error);
      }
    } else if (key && host.hmacSha256) {
      signed(null, encodeBase64(host.hmacSha256(key, utf8Encode(stringToSign))));
    }
  }

  // Stops the client for good: everything pending fails with `code`.
  function end(code: string): void {
    ended = code;
    reconnectTimer = stopTimer(reconnectTimer);
    const failed = pending.slice();
    for (let i = 0; i < failed.length; i++) finish(failed[i], slimError(code));
    if (code !== 'Closed') guard(options.onError, slimError(code));
    drop();
  }

  return {
    open: (): void => {
      if (!opened && !ended) {
        opened = true;
        connect();
      }
    },
    sendTelemetry: (payload, properties, callback): void => {
      const topic = telemetryPrefix + encodeBag(properties);
      const bytes = typeof payload === 'string' ? utf8Encode(payload) : payload;
      // IoT Hub takes 256 KB of body and properties (the protocol's Limits.telemetryMessageMaxBytes, written out:
      // the table costs more than the number) and drops the connection over a bigger message, which would then be
      // sent again after every reconnect. The topic counts a little more than the properties: on the safe side. An
      // MQTT topic holds at most 65535 bytes [MQTT-1.5.3] (it is ASCII: device ids are, the bag is percent-encoded);
      // a longer one could not be encoded at all.
      const code =
        ended ||
        (pending.length >= maxPending
          ? 'BufferFull'
          : topic.length > 65535 || topic.length + bytes.length > 262144
            ? 'MessageTooLarge'
            : '');
      if (code) {
        if (callback) callback(slimError(code));
      } else {
        const entry: Pending = {
          topic: topic,
          payload: bytes,
          callback: callback as SlimCallback<unknown>,
          id: 0,
          timer: null,
        };
        pending.push(entry);
        if (phase === 4) transmit(entry);
      }
    },
    getTwin: (callback): void => twinRequest(true, '$iothub/twin/GET/?$rid=', '', callback as SlimCallback<unknown>),
    updateReported: (patch, callback): void =>
      twinRequest(
        false,
        '$iothub/twin/PATCH/properties/reported/?$rid=',
        JSON.stringify(patch),
        callback as SlimCallback<unknown> | undefined,
      ),
    get connected(): boolean {
      return phase === 4;
    },
    // Closing completes at once: DISCONNECT is written and the socket closed before the callback runs.
    close: (callback): void => {
      if (ended !== 'Closed') end('Closed');
      guard(callback);
    },
  };
}
