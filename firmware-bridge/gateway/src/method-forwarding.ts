/**
 * Direct methods for a bridged MCU: any method name goes to the MCU. The SDK's `onDirectMethod` registers
 * handlers by name and answers unknown names 501 itself; the gateway knows no names in advance, so it wraps the
 * transport factory: requests reach {@link MethodForwarder} before the client's own dispatch, and the answer goes
 * back on the same transport connection. Everything else passes through untouched.
 */
import type {
  IncomingMethodRequest,
  OperationOptions,
  Transport,
  TransportConnectOptions,
  TransportEvents,
  TransportFactory,
} from '@fieldhub/device';

/** Answers one direct-method request (status and JSON payload as the service caller will see them). */
export type MethodForwarder = (request: IncomingMethodRequest) => Promise<{ status: number; payload: unknown }>;

/** Logs what could not be answered. */
export type MethodLogger = (message: string, details: Record<string, unknown>) => void;

/**
 * `factory`'s transports, with every direct-method request answered by `forward` (subscribed on every
 * connection, since an MCU may announce `METHODS` at any link-up).
 */
export function forwardingMethods(
  factory: TransportFactory,
  forward: MethodForwarder,
  log: MethodLogger,
): TransportFactory {
  return {
    name: factory.name,
    capabilities: factory.capabilities,
    create(): Transport {
      const inner = factory.create();
      const answer = (request: IncomingMethodRequest): void => {
        forward(request)
          .then(({ status, payload }) => inner.sendMethodResponse(request.requestId, status, payload))
          .catch((error: unknown) =>
            log('could not answer a direct method', { methodName: request.methodName, error }),
          );
      };
      const transport: Transport = {
        name: inner.name,
        capabilities: inner.capabilities,
        get connected() {
          return inner.connected;
        },
        async connect(options: TransportConnectOptions, events: TransportEvents) {
          await inner.connect(options, { ...events, methodRequest: answer });
          try {
            await inner.enableDirectMethods(options.signal ? { signal: options.signal } : {});
          } catch (error) {
            await inner.disconnect();
            throw error;
          }
        },
        disconnect: () => inner.disconnect(),
        sendTelemetry: (message, options?: OperationOptions) => inner.sendTelemetry(message, options),
        enableCloudToDevice: (options) => inner.enableCloudToDevice(options),
        settleCloudToDevice: (lockToken, settlement, options) =>
          inner.settleCloudToDevice(lockToken, settlement, options),
        enableTwin: (options) => inner.enableTwin(options),
        getTwin: (options) => inner.getTwin(options),
        updateReportedProperties: (patch, options) => inner.updateReportedProperties(patch, options),
        enableDirectMethods: (options) => inner.enableDirectMethods(options),
        sendMethodResponse: (requestId, status, payload, options) =>
          inner.sendMethodResponse(requestId, status, payload, options),
      };
      if (inner.sendTelemetryBatch) {
        const batch = inner.sendTelemetryBatch.bind(inner);
        Object.assign(transport, { sendTelemetryBatch: batch });
      }
      if (inner.receiveCloudToDevice) {
        Object.assign(transport, { receiveCloudToDevice: inner.receiveCloudToDevice.bind(inner) });
      }
      if (inner.updateCredentials) {
        Object.assign(transport, { updateCredentials: inner.updateCredentials.bind(inner) });
      }
      return transport;
    },
  };
}
