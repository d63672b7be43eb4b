/**
 * A `HostSocketEvents` that records what a host adapter reports, for the adapters' unit tests (`ecma419.test.ts`,
 * `espruino.test.ts`): the order of events, the data chunks and the `onClose` arguments.
 */
import type { HostSocketEvents } from '../../host';

/** Socket events that keep what they were told. */
export interface Recorder extends HostSocketEvents {
  /** `connect`, `data` and `close`, in the order they came. */
  log: string[];
  /** The chunks `onData` got. */
  data: Uint8Array[];
  /** The arguments `onClose` got (a test asserts there is exactly one). */
  closes: unknown[];
}

/** A fresh {@link Recorder}. */
export function recorder(): Recorder {
  const log: string[] = [];
  const data: Uint8Array[] = [];
  const closes: unknown[] = [];
  return {
    log,
    data,
    closes,
    onConnect: () => log.push('connect'),
    onData: (bytes) => {
      log.push('data');
      data.push(bytes);
    },
    onClose: (error) => {
      log.push('close');
      closes.push(error);
    },
  };
}
