import type {
  IncomingCloudToDeviceMessage,
  IncomingMethodRequest,
  TransportEvents,
} from '@fieldhub/device-core/transport';
import type { HubError } from '@fieldhub/protocol';

/** Items of one kind, in arrival order, awaited one at a time. */
export interface EventQueue<T> {
  /** Everything received so far, taken or not. */
  readonly received: readonly T[];
  /** Resolves with the next item not yet taken; rejects after `timeoutMs` (default 10 s). */
  next(timeoutMs?: number): Promise<T>;
}

function eventQueue<T>(): EventQueue<T> & { push(item: T): void } {
  const received: T[] = [];
  let taken = 0;
  const waiters: ((item: T) => void)[] = [];
  return {
    received,
    push(item) {
      received.push(item);
      const waiter = waiters.shift();
      if (waiter) {
        taken++;
        waiter(item);
      }
    },
    next(timeoutMs = 10_000) {
      if (taken < received.length) return Promise.resolve(received[taken++] as T);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          const index = waiters.indexOf(waiter);
          if (index >= 0) waiters.splice(index, 1);
          reject(new Error(`no event within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (item: T): void => {
          clearTimeout(timer);
          resolve(item);
        };
        waiters.push(waiter);
      });
    },
  };
}

/** A desired-properties patch as a transport reported it. */
export interface RecordedDesiredPatch {
  readonly patch: Readonly<Record<string, unknown>>;
  readonly version: number;
}

/** TransportEvents that record everything, for tests that drive a transport directly. */
export interface RecordingEvents {
  readonly events: TransportEvents;
  readonly cloudToDevice: EventQueue<IncomingCloudToDeviceMessage>;
  readonly desired: EventQueue<RecordedDesiredPatch>;
  readonly methods: EventQueue<IncomingMethodRequest>;
  /** Every `disconnected` call, with its error (undefined when none was given). */
  readonly disconnected: EventQueue<HubError | undefined>;
}

/** Makes a fresh {@link RecordingEvents}. */
export function recordingEvents(): RecordingEvents {
  const cloudToDevice = eventQueue<IncomingCloudToDeviceMessage>();
  const desired = eventQueue<RecordedDesiredPatch>();
  const methods = eventQueue<IncomingMethodRequest>();
  const disconnected = eventQueue<HubError | undefined>();
  return {
    events: {
      cloudToDeviceMessage: (message) => cloudToDevice.push(message),
      desiredPropertiesPatch: (patch, version) => desired.push({ patch, version }),
      methodRequest: (request) => methods.push(request),
      disconnected: (error) => disconnected.push(error),
    },
    cloudToDevice,
    desired,
    methods,
    disconnected,
  };
}
