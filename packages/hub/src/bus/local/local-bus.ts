import { AbortError } from '@fieldhub/protocol';
import type { Logger } from 'pino';
import { type Bus, BusClosed, BusNoResponder, type BusPayload, BusTimeout, type RequestOptions } from '../bus';

/** Options of {@link createLocalBus}. */
export interface LocalBusOptions {
  /** Where failures of subscribers are reported (they never reach the publisher). */
  readonly logger?: Logger | undefined;
}

type Handler = (payload: BusPayload) => void;
type Responder = (payload: BusPayload) => Promise<BusPayload>;

interface ResponderEntry {
  readonly handler: Responder;
}

/**
 * The in-process bus for a single-process hub. Behaves like a networked bus where it matters to callers:
 * delivery is asynchronous (a microtask later, never inside `publish`), a failing subscriber does not affect the
 * others or the publisher, and requests time out. Payloads are passed by reference, not copied: treat them as
 * immutable, as a networked bus would force you to.
 *
 * @example
 * ```ts
 * const bus = createLocalBus();
 * bus.respond('myhub', 'method.dev1', async (request) => ({ status: 200, payload: request }));
 * const reply = await bus.request('myhub', 'method.dev1', { hello: 1 }, { timeoutMs: 1000 });
 * ```
 */
export function createLocalBus(options: LocalBusOptions = {}): Bus {
  const { logger } = options;
  const subscribers = new Map<string, Set<Handler>>();
  const responders = new Map<string, ResponderEntry>();
  /** Rejecters of the requests in flight, so that close() can settle them. */
  const pending = new Set<(error: Error) => void>();
  let closed = false;

  const reportHandlerError = (subject: string, error: unknown): void => {
    logger?.error({ err: error, subject }, 'bus subscriber failed');
  };

  return {
    publish(hub, subject, payload) {
      if (closed) return;
      const id = subjectId(hub, subject);
      const handlers = subscribers.get(id);
      if (handlers === undefined || handlers.size === 0) return;
      // Snapshot: a handler subscribed after this publish does not receive it.
      const snapshot = [...handlers];
      queueMicrotask(() => {
        for (const handler of snapshot) {
          // Unsubscribed between publish and delivery: a networked bus would not deliver either.
          if (!handlers.has(handler)) continue;
          try {
            const result: unknown = handler(payload);
            if (result instanceof Promise) result.catch((error: unknown) => reportHandlerError(subject, error));
          } catch (error) {
            reportHandlerError(subject, error);
          }
        }
      });
    },

    subscribe(hub, subject, handler) {
      if (closed) return () => {};
      const id = subjectId(hub, subject);
      let handlers = subscribers.get(id);
      if (handlers === undefined) {
        handlers = new Set();
        subscribers.set(id, handlers);
      }
      // Wrap, so that subscribing the same function twice gives two independent subscriptions.
      const entry: Handler = (payload) => handler(payload);
      handlers.add(entry);
      const set = handlers;
      return () => {
        set.delete(entry);
        if (set.size === 0 && subscribers.get(id) === set) subscribers.delete(id);
      };
    },

    respond(hub, subject, handler) {
      if (closed) return () => {};
      const id = subjectId(hub, subject);
      const entry: ResponderEntry = { handler };
      responders.set(id, entry);
      return () => {
        // Only remove our own registration: a newer responder (a new session of the device) has taken over.
        if (responders.get(id) === entry) responders.delete(id);
      };
    },

    request(hub, subject, payload, requestOptions: RequestOptions) {
      const { timeoutMs, signal } = requestOptions;
      if (closed) return Promise.reject(new BusClosed());
      if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
      const responder = responders.get(subjectId(hub, subject));
      if (responder === undefined) return Promise.reject(new BusNoResponder(subject));

      return new Promise<BusPayload>((resolve, reject) => {
        let settled = false;
        const finish = (): boolean => {
          if (settled) return false;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          pending.delete(fail);
          return true;
        };
        const fail = (error: Error): void => {
          if (finish()) reject(error);
        };
        const onAbort = (): void => fail(new AbortError(undefined, { cause: signal?.reason }));
        const timer = setTimeout(() => fail(new BusTimeout(subject)), timeoutMs);
        signal?.addEventListener('abort', onAbort, { once: true });
        pending.add(fail);

        // The responder runs a microtask later, as it would after a network hop, never inside request().
        queueMicrotask(() => {
          if (settled) return;
          let reply: Promise<BusPayload>;
          try {
            reply = Promise.resolve(responder.handler(payload));
          } catch (error) {
            reply = Promise.reject(error);
          }
          reply.then(
            (value) => {
              if (finish()) resolve(value);
            },
            (error: unknown) => {
              if (finish()) reject(error);
            },
          );
        });
      });
    },

    async hasResponder(hub, subject) {
      return !closed && responders.has(subjectId(hub, subject));
    },

    async close() {
      if (closed) return;
      closed = true;
      subscribers.clear();
      responders.clear();
      const error = new BusClosed();
      for (const fail of [...pending]) fail(error);
    },
  };
}

/** One map key per (hub, subject); NUL cannot appear in a hub name, so the pair is unambiguous. */
function subjectId(hub: string, subject: string): string {
  return `${hub}\u0000${subject}`;
}
