// The reading side of W1/W2: counts messages as they come out of the system under test.
// - hub: the built-in endpoint over the hub's HTTPS event stream (`GET /fieldhub/events?from=latest`); events are
//   counted by their `\ndata: ` line prefix, without parsing the JSON (a reader must not be the bottleneck).
// - peer: one MQTT subscriber on `devices/+/messages/events/#` at QoS 1, acknowledging every message.
import { openEventStream } from '../lib/event-stream.mjs';
import { PacketType, writePuback } from '../lib/mqtt-frames.mjs';
import { connectMqtt, subscribe } from '../lib/mqtt-link.mjs';
import { serve } from './worker-host.mjs';

let received = 0;
let waiter = null;
let closeSource = () => {};

function count(n) {
  received += n;
  if (waiter && received >= waiter.count) {
    const done = waiter;
    waiter = null;
    done.resolve();
  }
}

serve({
  async open({ target }) {
    received = 0;
    if (target.kind === 'hub') await openHubStream(target);
    else await openSubscriber(target);
    return {};
  },

  /** Resolves once `count` messages arrived in total since open (or fails after `timeoutMs`). */
  async expect({ count: expected, timeoutMs }) {
    if (received < expected) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`reader saw ${received} of ${expected} messages within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiter = {
          count: expected,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      });
    }
    return { received };
  },

  async close() {
    closeSource();
    return { received };
  },
});

async function openHubStream(target) {
  const marker = Buffer.from('\ndata: ');
  let tail = Buffer.alloc(0);
  closeSource = await openEventStream(target, (chunk) => {
    const buffer = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
    let n = 0;
    let at = buffer.indexOf(marker);
    while (at !== -1) {
      n++;
      at = buffer.indexOf(marker, at + marker.length);
    }
    tail = buffer.subarray(Math.max(0, buffer.length - (marker.length - 1)));
    // A marker split across chunks is found once the tail is joined to the next chunk; one wholly inside the tail
    // was already counted, and a tail shorter than the marker cannot hold one.
    count(n);
  });
}

async function openSubscriber(target) {
  const link = await connectMqtt({ port: target.port, ca: target.ca, clientId: `bench-reader-${process.pid}` });
  closeSource = () => link.destroy();
  const socket = link.socket;
  await subscribe(link, 'devices/+/messages/events/#', 1);
  // One PUBACK buffer per chunk of messages, written once the chunk is parsed.
  let acks = [];
  socket.prependListener('data', () => {
    acks = [];
  });
  socket.on('data', () => {
    if (acks.length === 0) return;
    const out = Buffer.allocUnsafe(acks.length * 4);
    for (let i = 0; i < acks.length; i++) writePuback(out, i * 4, acks[i]);
    socket.write(out);
  });
  link.onFrame = (firstByte, buffer, bodyStart) => {
    if (firstByte >> 4 !== PacketType.publish) return;
    if (((firstByte >> 1) & 3) > 0) acks.push(buffer.readUInt16BE(bodyStart + 2 + buffer.readUInt16BE(bodyStart)));
    count(1);
  };
}
