/**
 * CONNECT (protocol-device.md §2.2): protocol level 4 only, then a provisioning connection (§5.1,
 * `../dps-session.ts`) or authentication (see `../authenticate.ts`),
 * eviction of an older session of the same identity (§2.1), CONNACK, and the connection-state bookkeeping
 * (registry `connectionState`, a `deviceConnected` event, the connected-devices gauge).
 */
import type { IConnectPacket } from 'mqtt-packet';
import { authenticateConnect } from '../authenticate';
import { handleDpsConnect, isDpsConnect } from '../dps-session';
import type { MqttSession } from '../session';
import { withinTelemetryLimit } from '../telemetry-ingest';
import { routePublish } from '../topic-authorization';

/** Handles the first packet of a connection. */
export async function handleConnect(session: MqttSession, packet: IConnectPacket): Promise<void> {
  // IoT Hub speaks MQTT 3.1.1 only (§2.1): level 4 with protocol name `MQTT` [MQTT-3.1.2-2].
  if (packet.protocolVersion !== 4 || packet.protocolId !== 'MQTT') {
    session.refuse(1, `unsupported protocol ${String(packet.protocolId)} level ${String(packet.protocolVersion)}`);
    return;
  }
  const { head } = session;
  // §5.1: `{idScope}/registrations/{registrationId}/api-version=..` is a provisioning connection, not a device.
  if (isDpsConnect(packet)) {
    await handleDpsConnect(session, packet, head.core.dps);
    return;
  }
  const result = await authenticateConnect(packet, {
    core: head.core,
    peerCertificate: session.transport.peerCertificate(),
    certificateAuthorities: head.certificateAuthorities,
    clockSkewSeconds: head.settings.clockSkewSeconds,
  });
  // The peer may have gone while the registry was read.
  if (session.state !== 'authenticating') return;
  if (!result.ok) {
    session.refuse(result.returnCode, result.reason, { clientId: packet.clientId });
    return;
  }
  const { identity } = result;
  if (packet.will) {
    // §2.2: a will is telemetry of the identity itself, sent by the hub on an unclean disconnect.
    const route = routePublish(packet.will.topic, identity);
    const body = typeof packet.will.payload === 'string' ? Buffer.from(packet.will.payload) : packet.will.payload;
    if (route.kind !== 'telemetry' || !withinTelemetryLimit(body, route.properties, route.systemProperties)) {
      session.refuse(5, 'the will topic is not the telemetry topic of the identity', { clientId: packet.clientId });
      return;
    }
    session.will = { body, properties: route.properties, systemProperties: route.systemProperties };
  }
  session.identity = identity;
  head.claim(session);
  // Tell other hub processes too (a later multi-process hub): their session of this identity closes.
  head.core.context.bus.publish(head.core.context.hubName, `session.evict.${identity.key}`, { sessionId: session.id });

  // Sessions are not persisted: CONNACK always says sessionPresent = false ([MQTT-3.2.2-1] for clean = 1; for
  // clean = 0 the device re-subscribes, which the SDKs do after every connect).
  session.sendConnackAccepted();
  session.accept(identity, packet.keepalive ?? 0, result.expiresAtMs);
  head.connected(session);
  const { core } = head;
  const ids = { deviceId: identity.deviceId, moduleId: identity.moduleId };
  head
    .serialize(identity.key, async () => {
      // A session evicted in the meantime reports nothing: its successor does.
      if (session.evicted) return;
      session.connectReported = true;
      await core.registry.setConnectionState(identity.deviceId, identity.moduleId, true);
      await core.events.connectionState('deviceConnected', ids);
    })
    .catch((error: unknown) =>
      session.logger.error({ err: error, ...session.describe() }, 'connection state update failed'),
    );
  if (session.logger.isLevelEnabled('info')) {
    session.logger.info({ ...session.describe(), auth: identity.authMethod.type }, 'mqtt device connected');
  }
}
