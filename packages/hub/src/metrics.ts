import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The hub's Prometheus metrics, served at `/metrics` on the HTTPS port. */
export interface HubMetrics {
  readonly contentType: string;
  /** Counts one operation (by name and outcome code, `ok` on success) and observes its latency. */
  recordOperation(operation: string, code: string, seconds: number): void;
  /**
   * Sets the number of connected devices and modules (by protocol): identities, not connections (an AMQP
   * connection can carry several devices, a service connection none).
   */
  setConnectedDevices(protocol: string, count: number): void;
  /**
   * Counts a connection event of a head by protocol (`amqp`, `amqp-ws`) and outcome: `opened` (the protocol's
   * open was exchanged), or why the hub dropped it (`sasl`, `authentication-timeout`, `protocol`).
   */
  countConnection(protocol: string, outcome: string): void;
  /** Sets a device's cloud-to-device queue depth (summed into one gauge). */
  setQueueDepth(queue: string, depth: number): void;
  /** Adds work to run before each scrape (gauges read from the store, e.g. queue depths). */
  addCollector(collector: () => Promise<void>): void;
  render(): Promise<string>;
}

/** Creates a metrics registry of its own (several hubs in one process do not share counters). */
export function createMetrics(): HubMetrics {
  const registry = new Registry();
  // The event-loop delay histogram samples on a timer: prom-client's default of 10 ms woke an idle hub 100 times
  // a second (~1% of a core with nothing to do, W5). Once a second keeps the lag gauges and costs nothing idle.
  collectDefaultMetrics({ register: registry, prefix: 'fieldhub_process_', eventLoopMonitoringPrecision: 1000 });
  const operations = new Counter({
    name: 'fieldhub_operations_total',
    help: 'Operations handled, by operation and outcome code (ok, or the IoT Hub error code)',
    labelNames: ['operation', 'code'] as const,
    registers: [registry],
  });
  const errors = new Counter({
    name: 'fieldhub_errors_total',
    help: 'Operations that failed, by IoT Hub error code',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'fieldhub_operation_duration_seconds',
    help: 'Operation latency',
    labelNames: ['operation'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const connected = new Gauge({
    name: 'fieldhub_connected_devices',
    help: 'Devices and modules connected now, by protocol',
    labelNames: ['protocol'] as const,
    registers: [registry],
  });
  const connections = new Counter({
    name: 'fieldhub_connections_total',
    help: 'Connections opened, and connections the hub dropped by reason, by protocol',
    labelNames: ['protocol', 'outcome'] as const,
    registers: [registry],
  });
  const queues = new Gauge({
    name: 'fieldhub_queue_depth',
    help: 'Messages waiting, by queue (cloudToDevice, feedback)',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  const collectors: (() => Promise<void>)[] = [];
  const operationChildren = new Map<
    string,
    {
      readonly count: { inc(): void };
      readonly error: { inc(): void } | undefined;
      readonly latency: { observe(value: number): void };
    }
  >();
  return {
    contentType: registry.contentType,
    recordOperation(operation, code, seconds) {
      // The labelled children, looked up once per operation and code (prom-client hashes the label object on
      // every call otherwise; a REST call records one operation).
      const key = `${operation}\n${code}`;
      let children = operationChildren.get(key);
      if (children === undefined) {
        children = {
          count: operations.labels({ operation, code }),
          error: code === 'ok' ? undefined : errors.labels({ code }),
          latency: latency.labels({ operation }),
        };
        operationChildren.set(key, children);
      }
      children.count.inc();
      children.error?.inc();
      children.latency.observe(seconds);
    },
    setConnectedDevices(protocol, count) {
      connected.set({ protocol }, count);
    },
    countConnection(protocol, outcome) {
      connections.inc({ protocol, outcome });
    },
    setQueueDepth(queue, depth) {
      queues.set({ queue }, depth);
    },
    addCollector(collector) {
      collectors.push(collector);
    },
    async render() {
      await Promise.all(collectors.map((collector) => collector()));
      return registry.metrics();
    },
  };
}
