// W5: holds many idle MQTT/TLS connections (keepalive 300 s, nothing sent after CONNACK). The first connection
// does a full handshake; the others resume its TLS session, so opening 19,000 takes seconds and the figure is
// the memory an established connection costs, not the handshake CPU (W6 measures that).
import { connectFields } from '../lib/credentials.mjs';
import { eachLimited } from '../lib/each-limited.mjs';
import { connectMqtt } from '../lib/mqtt-link.mjs';
import { serve } from './worker-host.mjs';

let links = [];

serve({
  async connect({ target, deviceIds, concurrency = 16 }) {
    let session;
    const first = deviceIds[0];
    const open = async (deviceId) => {
      const link = await connectMqtt({
        port: target.port,
        ca: target.ca,
        keepalive: 300,
        ...(session ? { session } : {}),
        ...(deviceId === first
          ? {
              onSession: (ticket) => {
                session = ticket;
              },
            }
          : {}),
        ...(await connectFields(target, deviceId)),
      });
      link.onFrame = () => {};
      return link;
    };
    const head = await open(first);
    // The ticket arrives just after the handshake; wait a moment for it if it is not here yet.
    for (let waited = 0; session === undefined && waited < 1000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    links = [head, ...(await eachLimited(deviceIds.slice(1), concurrency, open))];
    const resumed = links.filter((link) => link.socket.isSessionReused()).length;
    return { connected: links.length, resumed };
  },

  /** How many of the links are still open (the system under test must not drop idle connections). */
  async check() {
    return { open: links.filter((link) => !link.socket.destroyed).length };
  },

  async close() {
    for (const link of links) link.destroy();
    links = [];
  },
});
