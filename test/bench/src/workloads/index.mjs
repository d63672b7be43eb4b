// W1-W8 of shared PERFORMANCE.md. Each `run(env)` returns a table row: hubText / peerText, ratio, goal and
// whether it was met, CPU figures, details for the JSON file, and `problems` (a workload that did not complete
// or lost a message; `--quick` fails on any).
import { connectFields, deviceIds } from '../lib/credentials.mjs';
import { connectMqtt } from '../lib/mqtt-link.mjs';
import { cpuMeter, freePort, rssBytes, startHub, startWorker } from '../lib/processes.mjs';
import { registerDevices } from '../lib/registry.mjs';
import { formatCount, formatMs } from '../lib/table.mjs';
import { median, sleep, waitIdle } from '../lib/wait.mjs';
import { measureThroughput } from './throughput.mjs';

const boundAt = 95;

/** What a worker needs to reach a target (no functions: it crosses IPC). */
function targetOf(process) {
  const { kind, pid, port, ca } = process;
  if (kind !== 'hub') return { kind, pid, port, ca };
  const { hostName, httpsPort, amqpPort, serviceConnectionString } = process;
  return { kind, pid, port, ca, hostName, httpsPort, amqpPort, serviceConnectionString };
}

async function ensureHub(env) {
  return env.hub ?? env.freshHub();
}

async function ensurePeer(env) {
  await ensureHub(env);
  return env.peer ?? env.freshPeer();
}

function throughputWorkload(id, title, payloadSize, perDeviceFull, perDeviceQuick) {
  return {
    id,
    title,
    async run(env) {
      const hub = await ensureHub(env);
      const peer = await ensurePeer(env);
      const ids = deviceIds('telemetry', 10);
      await registerDevices(hub, ids);
      const options = {
        devices: 10,
        payloadSize,
        perDevice: env.quick ? perDeviceQuick : perDeviceFull,
        window: 200,
        generators: 2,
        prefix: 'telemetry',
      };
      const runs = { hub: [], peer: [] };
      const problems = [];
      for (let round = 0; round < env.rounds; round++) {
        for (const [name, target] of [
          ['hub', hub],
          ['peer', peer],
        ]) {
          await waitIdle(target.pid);
          const result = await measureThroughput(targetOf(target), options);
          runs[name].push(result);
          if (result.acknowledged !== result.expected) {
            problems.push(`${name}: ${result.acknowledged} of ${result.expected} acknowledged`);
          }
          if (result.delivered < result.expected) {
            problems.push(`${name}: ${result.delivered} of ${result.expected} delivered to the reader`);
          }
        }
      }
      const pick = (list) => list.find((run) => run.rate === median(list.map((item) => item.rate))) ?? list[0];
      const hubRun = pick(runs.hub);
      const peerRun = pick(runs.peer);
      const ratio = hubRun.rate / peerRun.rate;
      return {
        unit: 'msgs/s',
        hub: hubRun.rate,
        peer: peerRun.rate,
        hubText: `${formatCount(hubRun.rate)} msgs/s`,
        peerText: `${formatCount(peerRun.rate)} msgs/s`,
        ratio,
        goal: '>= 1.0x',
        met: ratio >= 1,
        cpu: {
          hub: hubRun.cpu.target,
          peer: peerRun.cpu.target,
          generatorHub: Math.max(hubRun.cpu.generator, hubRun.cpu.reader),
          generatorPeer: Math.max(peerRun.cpu.generator, peerRun.cpu.reader),
        },
        generatorBound: {
          hub: Math.max(hubRun.cpu.generator, hubRun.cpu.reader) >= boundAt,
          peer: Math.max(peerRun.cpu.generator, peerRun.cpu.reader) >= boundAt,
        },
        details: { options, rounds: runs },
        problems,
      };
    },
  };
}

/** Starts `count` workers of kind `name`, runs `use(workers)`, then closes and stops them whatever happened. */
async function withWorkers(name, count, use) {
  const workers = Array.from({ length: count }, () => startWorker(name));
  try {
    return await use(workers);
  } finally {
    await Promise.all(workers.map((worker) => worker.request({ type: 'close' }).catch(() => {})));
    await Promise.all(workers.map((worker) => worker.stop()));
  }
}

/** Sends `message` to every worker with its share of `ids` (round robin) as `deviceIds`. */
function spread(workers, ids, message) {
  return Promise.all(
    workers.map((worker, index) =>
      worker.request({ ...message, deviceIds: ids.filter((_, at) => at % workers.length === index) }),
    ),
  );
}

/** Runs `measure(name, target)` on the hub, then on the peer, each once its target is idle. */
async function eachTarget(hub, peer, measure) {
  const results = {};
  for (const [name, target] of [
    ['hub', hub],
    ['peer', peer],
  ]) {
    await waitIdle(target.pid);
    results[name] = await measure(name, target);
  }
  return results;
}

/** One latency-measuring worker against `target`: connect, run, close. */
function measureLatency(workerName, target, ids, runOptions) {
  return withWorkers(workerName, 1, async ([worker]) => {
    await worker.request({ type: 'connect', target: targetOf(target), deviceIds: ids });
    await waitIdle(target.pid);
    const meter = cpuMeter({ target: target.pid, generator: worker.pid });
    const result = await worker.request({ type: 'run', target: targetOf(target), ...runOptions });
    return { ...result, cpu: meter.stop() };
  });
}

function latencyRow(hubResult, peerResult, goals, problems) {
  const met = hubResult.p50 <= goals.p50 && hubResult.p99 <= goals.p99;
  return {
    unit: 'ms',
    hub: { p50: hubResult.p50, p99: hubResult.p99 },
    peer: { p50: peerResult.p50, p99: peerResult.p99 },
    hubText: `p50 ${formatMs(hubResult.p50)}, p99 ${formatMs(hubResult.p99)}`,
    peerText: `p50 ${formatMs(peerResult.p50)}, p99 ${formatMs(peerResult.p99)}`,
    ratio: hubResult.p50 / peerResult.p50,
    goal: `p50 <= ${goals.p50} ms, p99 <= ${goals.p99} ms`,
    met,
    cpu: {
      hub: hubResult.cpu.target,
      peer: peerResult.cpu.target,
      generatorHub: hubResult.cpu.generator,
      generatorPeer: peerResult.cpu.generator,
    },
    generatorBound: { hub: hubResult.cpu.generator >= boundAt, peer: peerResult.cpu.generator >= boundAt },
    details: { hub: hubResult, peer: peerResult },
    problems,
  };
}

const w3 = {
  id: 'W3',
  title: 'latency at 1,000 msgs/s, 100 devices',
  async run(env) {
    const hub = await ensureHub(env);
    const peer = await ensurePeer(env);
    const ids = deviceIds('latency', 100);
    await registerDevices(hub, ids);
    const options = env.quick
      ? { rate: 200, seconds: 2, payloadSize: 256, warmup: 50 }
      : { rate: 1000, seconds: 15, payloadSize: 256, warmup: 1000 };
    const total = Math.round(options.rate * options.seconds);
    const hubResult = await measureLatency('latency', hub, ids, options);
    const peerResult = await measureLatency('latency', peer, ids, options);
    const problems = [];
    for (const [name, result] of [
      ['hub', hubResult],
      ['peer', peerResult],
    ]) {
      if (result.received !== total) problems.push(`${name}: ${result.received} of ${total} received`);
    }
    return latencyRow(hubResult, peerResult, { p50: 0.5, p99: 5 }, problems);
  },
};

const w4 = {
  id: 'W4',
  title: 'direct-method round trip, 200 req/s, 100 devices',
  async run(env) {
    const hub = await ensureHub(env);
    const peer = await ensurePeer(env);
    const ids = deviceIds('methods', 100);
    await registerDevices(hub, ids);
    // The first 2,000 calls (10 s) warm both sides up and are not counted: the hub's HTTP path runs 2-3x slower
    // until V8 has optimised it, and the figure is meant to be the steady state a long-running hub shows.
    const options = env.quick ? { rate: 50, seconds: 2, warmup: 10 } : { rate: 200, seconds: 25, warmup: 2000 };
    const total = Math.round(options.rate * options.seconds);
    const hubResult = await measureLatency('methods', hub, ids, options);
    const peerResult = await measureLatency('methods', peer, ids, options);
    const problems = [];
    for (const [name, result] of [
      ['hub', hubResult],
      ['peer', peerResult],
    ]) {
      if (result.done !== total || result.failures > 0) {
        problems.push(`${name}: ${result.done - result.failures} of ${total} round trips answered`);
      }
    }
    return latencyRow(hubResult, peerResult, { p50: 1, p99: 5 }, problems);
  },
};

const w5 = {
  id: 'W5',
  title: 'idle TLS connections, keepalive 300 s',
  async run(env) {
    // Fresh processes: memory per connection is read as RSS growth, which earlier workloads' heaps would blur.
    const hub = await env.freshHub();
    const peer = await env.freshPeer();
    const count = env.quick ? 200 : 19_000;
    const ids = deviceIds('idle', count);
    await registerDevices(hub, ids);
    env.idleIds = ids;
    const idleMs = env.quick ? 1000 : 10_000;
    const problems = [];
    const results = await eachTarget(hub, peer, async (name, target) => {
      await sleep(1000);
      const before = rssBytes(target.pid);
      return withWorkers('idle', 4, async (workers) => {
        const started = performance.now();
        const meter = cpuMeter({ generator: workers[0].pid, target: target.pid });
        const connected = await spread(workers, ids, { type: 'connect', target: targetOf(target) });
        const connectSeconds = (performance.now() - started) / 1000;
        const connectCpu = meter.stop();
        await waitIdle(target.pid);
        // Let the connect burst's garbage collection and JIT settle: "idle" is the steady state, not its tail.
        await sleep(env.quick ? 0 : 5000);
        const idle = cpuMeter({ target: target.pid });
        await sleep(idleMs);
        const idleCpu = idle.stop().target;
        const after = rssBytes(target.pid);
        const open = (await Promise.all(workers.map((worker) => worker.request({ type: 'check' })))).reduce(
          (sum, answer) => sum + answer.open,
          0,
        );
        const total = connected.reduce((sum, answer) => sum + answer.connected, 0);
        const resumed = connected.reduce((sum, answer) => sum + answer.resumed, 0);
        if (open !== count) problems.push(`${name}: ${open} of ${count} connections open after the idle period`);
        return {
          connections: total,
          resumedTlsSessions: resumed,
          connectSeconds,
          connectsPerSecond: total / connectSeconds,
          rssBefore: before,
          rssAfter: after,
          bytesPerConnection: (after - before) / total,
          idleCpu,
          generatorCpu: connectCpu.generator,
        };
      });
    });
    const kb = (bytes) => bytes / 1024;
    const hubKb = kb(results.hub.bytesPerConnection);
    const peerKb = kb(results.peer.bytesPerConnection);
    return {
      unit: 'KB RSS per connection',
      hub: hubKb,
      peer: peerKb,
      hubText: `${hubKb.toFixed(1)} KB/conn, idle CPU ${results.hub.idleCpu.toFixed(1)}%`,
      peerText: `${peerKb.toFixed(1)} KB/conn, idle CPU ${results.peer.idleCpu.toFixed(1)}%`,
      ratio: hubKb / peerKb,
      goal: '<= 20 KB/conn, 0% idle CPU',
      met: hubKb <= 20 && results.hub.idleCpu < 0.5,
      cpu: { hub: results.hub.idleCpu, peer: results.peer.idleCpu },
      details: { connections: count, ...results },
      problems,
    };
  },
};

const w6 = {
  id: 'W6',
  title: 'TLS connect storm (hub: SAS; Mosquitto: no auth)',
  async run(env) {
    let hub = env.hub;
    if (!env.idleIds || !hub) {
      hub = await env.freshHub();
      env.idleIds = deviceIds('idle', env.quick ? 200 : 3000);
      await registerDevices(hub, env.idleIds);
    }
    const peer = await ensurePeer(env);
    const count = Math.min(env.idleIds.length, env.quick ? 100 : 3000);
    const ids = env.idleIds.slice(0, count);
    const problems = [];
    const results = await eachTarget(hub, peer, (name, target) =>
      withWorkers('storm', 2, async (workers) => {
        await spread(workers, ids, { type: 'prepare', target: targetOf(target) });
        const meter = cpuMeter({ target: target.pid, generator0: workers[0].pid, generator1: workers[1].pid });
        const started = performance.now();
        const runs = await Promise.all(
          workers.map((worker) => worker.request({ type: 'run', target: targetOf(target), concurrency: 16 })),
        );
        const seconds = (performance.now() - started) / 1000;
        const cpu = meter.stop();
        const connected = runs.reduce((sum, run) => sum + run.connected, 0);
        const failures = runs.reduce((sum, run) => sum + run.failures, 0);
        if (failures > 0) {
          problems.push(
            `${name}: ${failures} of ${count} connects failed (${runs.find((run) => run.firstError)?.firstError})`,
          );
        }
        return {
          connects: connected,
          seconds,
          rate: connected / seconds,
          cpu: cpu.target,
          generatorCpu: Math.max(cpu.generator0, cpu.generator1),
        };
      }),
    );
    const ratio = results.hub.rate / results.peer.rate;
    return {
      unit: 'connects/s',
      hub: results.hub.rate,
      peer: results.peer.rate,
      hubText: `${formatCount(results.hub.rate)} connects/s`,
      peerText: `${formatCount(results.peer.rate)} connects/s`,
      ratio,
      goal: '>= 1.0x',
      met: ratio >= 1,
      cpu: {
        hub: results.hub.cpu,
        peer: results.peer.cpu,
        generatorHub: results.hub.generatorCpu,
        generatorPeer: results.peer.generatorCpu,
      },
      generatorBound: { hub: results.hub.generatorCpu >= boundAt, peer: results.peer.generatorCpu >= boundAt },
      details: { connects: count, ...results },
      problems,
    };
  },
};

const w7 = {
  id: 'W7',
  title: 'twin reported patches; cloud-to-device send -> complete',
  async run(env) {
    const hub = await ensureHub(env);
    const twinIds = deviceIds('twin', 10);
    const c2dIds = deviceIds('c2d', 20);
    await registerDevices(hub, [...twinIds, ...c2dIds]);
    const problems = [];

    const perDevice = env.quick ? 50 : 3000;
    const twins = startWorker('publisher');
    let twin;
    try {
      await twins.request({
        type: 'connect',
        target: targetOf(hub),
        deviceIds: twinIds,
        mode: 'twin',
        window: 20,
        count: perDevice,
      });
      await waitIdle(hub.pid);
      const meter = cpuMeter({ target: hub.pid, generator: twins.pid });
      const run = await twins.request({ type: 'run' });
      twin = { ...run, rate: run.answered / run.seconds, cpu: meter.stop() };
      if (run.answered !== perDevice * twinIds.length || run.failures > 0) {
        problems.push(`twin: ${run.answered - run.failures} of ${perDevice * twinIds.length} patches answered 204`);
      }
    } finally {
      await twins.request({ type: 'close' }).catch(() => {});
      await twins.stop();
    }

    const c2dPerDevice = env.quick ? 10 : 200;
    const sender = startWorker('cloud-to-device');
    let c2d;
    try {
      await sender.request({ type: 'connect', target: targetOf(hub), deviceIds: c2dIds });
      await waitIdle(hub.pid);
      const meter = cpuMeter({ target: hub.pid, generator: sender.pid });
      const run = await sender.request({ type: 'run', perDevice: c2dPerDevice, window: 40 });
      c2d = { ...run, rate: run.received / run.seconds, cpu: meter.stop() };
      if (run.received !== c2dPerDevice * c2dIds.length || run.failures > 0) {
        problems.push(
          `c2d: ${run.received} of ${c2dPerDevice * c2dIds.length} delivered (${run.failures} sends refused)`,
        );
      }
    } finally {
      await sender.request({ type: 'close' }).catch(() => {});
      await sender.stop();
    }
    return {
      unit: 'per second',
      hub: { twinPatches: twin.rate, cloudToDevice: c2d.rate },
      peer: null,
      hubText: `${formatCount(twin.rate)} patches/s; ${formatCount(c2d.rate)} C2D/s`,
      peerText: 'none',
      ratio: Number.NaN,
      goal: 'patches >= 5,000/s',
      met: twin.rate >= 5000,
      cpu: { hub: twin.cpu.target, generatorHub: twin.cpu.generator },
      generatorBound: { hub: twin.cpu.generator >= boundAt },
      details: { twin, cloudToDevice: c2d },
      problems,
    };
  },
};

const w8 = {
  id: 'W8',
  title: 'cold start: `fieldhub hub start` to first CONNACK',
  async run(env) {
    const hub = await ensureHub(env);
    const [deviceId] = deviceIds('cold', 1);
    await registerDevices(hub, [deviceId]);
    const dataDir = hub.dataDir;
    await env.peer?.stop();
    await hub.stop({ keepData: true });
    env.hub = null;
    env.peer = null;
    const mqttPort = await freePort();
    const httpsPort = await freePort();
    const starts = env.quick ? 1 : 3;
    const times = [];
    const problems = [];
    try {
      for (let run = 0; run < starts; run++) {
        const target = { kind: 'hub', hostName: 'localhost', port: mqttPort, ca: hub.ca };
        const fields = await connectFields(target, deviceId);
        const began = performance.now();
        const starting = startHub({ dataDir, mqttPort, httpsPort });
        starting.catch(() => {});
        let connackAt;
        while (connackAt === undefined && performance.now() - began < 30_000) {
          try {
            const link = await connectMqtt({ port: mqttPort, ca: hub.ca, timeoutMs: 5000, ...fields });
            connackAt = performance.now();
            link.destroy();
          } catch {
            await sleep(5);
          }
        }
        const started = await starting;
        await started.stop({ keepData: true });
        if (connackAt === undefined) problems.push(`start ${run + 1}: no CONNACK within 30 s`);
        else times.push(connackAt - began);
      }
    } finally {
      const { rmSync } = await import('node:fs');
      rmSync(dataDir, { recursive: true, force: true });
    }
    const ms = median(times);
    return {
      unit: 'ms',
      hub: ms,
      peer: null,
      hubText: `${formatCount(ms)} ms`,
      peerText: 'none',
      ratio: Number.NaN,
      goal: '< 1 s',
      met: ms < 1000,
      details: { starts: times },
      problems,
    };
  },
};

/** In run order: the long-lived hub serves W1-W4 and W7; W5 and W6 get fresh processes; W8 restarts the hub. */
export const workloads = [
  throughputWorkload('W1', 'telemetry QoS 1, 256 B, TLS, 10 devices -> reader', 256, 30_000, 200),
  throughputWorkload('W2', 'telemetry QoS 1, 4 KB, TLS, 10 devices -> reader', 4096, 3_000, 50),
  w3,
  w4,
  w7,
  w5,
  w6,
  w8,
];
