import { amqp } from '@fieldhub/transport-amqp';
import { describeTransportConformance } from '../src/conformance';

function port(value: number | null): number {
  if (value === null) throw new Error('the hub serves no AMQP port');
  return value;
}

describeTransportConformance('amqp', (hub) => amqp({ port: port(hub.info.ports.amqp) }));
// AMQP over WebSockets shares the hub's HTTPS port (/$iothub/websocket), as MQTT over WebSockets does.
describeTransportConformance('amqp over WebSockets', (hub) => amqp({ webSockets: true, port: hub.info.ports.https }));
