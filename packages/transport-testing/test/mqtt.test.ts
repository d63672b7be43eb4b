import { mqtt } from '@fieldhub/transport-mqtt';
import { describeTransportConformance } from '../src/conformance';

function port(value: number | null): number {
  if (value === null) throw new Error('the hub serves no MQTT port');
  return value;
}

describeTransportConformance('mqtt', (hub) => mqtt({ port: port(hub.info.ports.mqtt) }));
describeTransportConformance('mqtt over WebSockets', (hub) => mqtt({ webSockets: true, port: hub.info.ports.https }));
