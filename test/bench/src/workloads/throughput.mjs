// W1 / W2: telemetry QoS 1 from 10 devices, through the system under test, to one reader.
// Hub: devices -> MQTT/TLS -> durable append -> PUBACK; reader = the built-in endpoint's event stream.
// Peer: 10 publishers -> Mosquitto -> 1 subscriber at QoS 1 (same topics, payloads and TLS).
// The figure is messages per second delivered to the reader, from the start signal to the last message read.
import { deviceIds } from '../lib/credentials.mjs';
import { cpuMeter, startWorker } from '../lib/processes.mjs';

/**
 * Runs one throughput measurement against `target` (hub or peer). `generators` worker processes share the
 * devices. Returns { rate, seconds, delivered, acknowledged, cpu: { target, generator (busiest), reader } }.
 */
export async function measureThroughput(target, { devices, payloadSize, perDevice, window, generators, prefix }) {
  const ids = deviceIds(prefix, devices);
  const workers = Array.from({ length: generators }, () => startWorker('publisher'));
  const reader = startWorker('reader');
  try {
    await Promise.all(
      workers.map((worker, index) =>
        worker.request({
          type: 'connect',
          target,
          deviceIds: ids.filter((_, at) => at % generators === index),
          mode: 'telemetry',
          payloadSize,
          window,
          count: perDevice,
        }),
      ),
    );
    await reader.request({ type: 'open', target });
    const total = devices * perDevice;
    const meter = cpuMeter({
      target: target.pid,
      reader: reader.pid,
      ...Object.fromEntries(workers.map((worker, index) => [`generator${index}`, worker.pid])),
    });
    const started = performance.now();
    const timeoutMs = Math.max(60_000, total / 2);
    const [runs] = await Promise.all([
      Promise.all(workers.map((worker) => worker.request({ type: 'run' }))),
      reader.request({ type: 'expect', count: total, timeoutMs }),
    ]);
    const seconds = (performance.now() - started) / 1000;
    const cpu = meter.stop();
    const acknowledged = runs.reduce((sum, run) => sum + run.answered, 0);
    const { received } = await reader.request({ type: 'close' });
    return {
      rate: total / seconds,
      seconds,
      delivered: received,
      acknowledged,
      expected: total,
      cpu: {
        target: cpu.target,
        reader: cpu.reader,
        generator: Math.max(...workers.map((_, index) => cpu[`generator${index}`])),
      },
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.request({ type: 'close' }).catch(() => {})));
    await Promise.all([...workers, reader].map((worker) => worker.stop()));
  }
}
