// W6: a TLS connect storm. Each device opens a new TLS connection (full handshake, no session resumption),
// sends CONNECT (a SAS token against the hub, nothing against the unauthenticated peer), waits for the CONNACK,
// then says DISCONNECT and closes. `concurrency` handshakes are in flight at any time.
import { connectFields } from '../lib/credentials.mjs';
import { eachLimited } from '../lib/each-limited.mjs';
import { disconnectPacket } from '../lib/mqtt-frames.mjs';
import { connectMqtt } from '../lib/mqtt-link.mjs';
import { serve } from './worker-host.mjs';

let prepared = [];

serve({
  /** Signs the tokens up front, so the timed part is only the connect. */
  async prepare({ target, deviceIds }) {
    prepared = await Promise.all(deviceIds.map((deviceId) => connectFields(target, deviceId)));
    return { prepared: prepared.length };
  },

  async run({ target, concurrency }) {
    let failures = 0;
    let firstError;
    const started = performance.now();
    await eachLimited(prepared, concurrency, async (fields) => {
      try {
        const link = await connectMqtt({ port: target.port, ca: target.ca, keepalive: 60, ...fields });
        link.socket.end(disconnectPacket);
        link.socket.destroySoon?.();
      } catch (error) {
        failures++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    });
    const seconds = (performance.now() - started) / 1000;
    return { connected: prepared.length - failures, failures, firstError, seconds };
  },

  async close() {
    prepared = [];
  },
});
