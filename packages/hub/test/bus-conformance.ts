/**
 * The Bus conformance suite: every Bus implementation (in-process now, NATS with scale-out) runs it. It asserts
 * only what a networked bus can also promise, so deliveries are awaited, never expected synchronously.
 *
 * Usage, in a `*.test.ts` file:
 * ```ts
 * describeBusConformance('local', async () => ({ bus: createLocalBus(), cleanup: async () => {} }));
 * ```
 */
import { AbortError } from '@fieldhub/protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Bus, BusClosed, BusNoResponder, type BusPayload, BusTimeout } from '../src/bus/bus';

/** What a test bus factory returns. */
export interface BusUnderTest {
  readonly bus: Bus;
  /** Releases what the factory created; the suite has closed the bus by then. */
  readonly cleanup: () => Promise<void>;
}

const hub = 'hub-a';
const otherHub = 'hub-b';
/** Long enough for a networked bus to deliver something it should not have. */
const quietMs = 50;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

/** Declares the conformance tests for one Bus implementation; `open` is called before every test. */
export function describeBusConformance(name: string, open: () => Promise<BusUnderTest>): void {
  describe(`Bus conformance: ${name}`, () => {
    let subject: BusUnderTest;
    let bus: Bus;

    beforeEach(async () => {
      subject = await open();
      bus = subject.bus;
    });

    afterEach(async () => {
      await bus.close();
      await subject.cleanup();
    });

    describe('publish / subscribe', () => {
      it('delivers a publish to every subscriber of the subject, after publish returned', async () => {
        const first: BusPayload[] = [];
        const second: BusPayload[] = [];
        bus.subscribe(hub, 'c2d.dev1', (payload) => first.push(payload));
        bus.subscribe(hub, 'c2d.dev1', (payload) => second.push(payload));
        bus.publish(hub, 'c2d.dev1', { queued: 1 });
        expect(first).toEqual([]);
        await vi.waitFor(() => {
          expect(first).toEqual([{ queued: 1 }]);
          expect(second).toEqual([{ queued: 1 }]);
        });
      });

      it('delivers a subscriber the publishes of one publisher in order', async () => {
        const received: BusPayload[] = [];
        bus.subscribe(hub, 'ordered', (payload) => received.push(payload));
        for (let i = 0; i < 100; i++) bus.publish(hub, 'ordered', i);
        await vi.waitFor(() => expect(received).toHaveLength(100));
        expect(received).toEqual(Array.from({ length: 100 }, (_, i) => i));
      });

      it('accepts a publish nobody listens to', async () => {
        expect(() => bus.publish(hub, 'nobody', 'x')).not.toThrow();
      });

      it('keeps subjects and hubs apart', async () => {
        const received: BusPayload[] = [];
        bus.subscribe(hub, 'twin.dev1', (payload) => received.push(payload));
        bus.publish(otherHub, 'twin.dev1', 'other hub');
        bus.publish(hub, 'twin.dev2', 'other subject');
        bus.publish(hub, 'twin.dev1', 'mine');
        await vi.waitFor(() => expect(received).toContain('mine'));
        await sleep(quietMs);
        expect(received).toEqual(['mine']);
      });

      it('keeps delivering to the others when a subscriber throws or rejects', async () => {
        const received: BusPayload[] = [];
        bus.subscribe(hub, 'evt', () => {
          throw new Error('sync failure');
        });
        bus.subscribe(hub, 'evt', (() => Promise.reject(new Error('async failure'))) as (payload: BusPayload) => void);
        bus.subscribe(hub, 'evt', (payload) => received.push(payload));
        expect(() => bus.publish(hub, 'evt', 1)).not.toThrow();
        bus.publish(hub, 'evt', 2);
        await vi.waitFor(() => expect(received).toEqual([1, 2]));
      });

      it('stops delivering after unsubscribe, which is idempotent and affects only that subscription', async () => {
        const received: string[] = [];
        const handler = (payload: BusPayload) => received.push(String(payload));
        const unsubscribeFirst = bus.subscribe(hub, 'evt', handler);
        bus.subscribe(hub, 'evt', handler);
        unsubscribeFirst();
        unsubscribeFirst();
        bus.publish(hub, 'evt', 'x');
        await vi.waitFor(() => expect(received).toContain('x'));
        await sleep(quietMs);
        expect(received).toEqual(['x']);
      });

      it('does not deliver a publish to a handler unsubscribed before delivery', async () => {
        const received: BusPayload[] = [];
        const kept: BusPayload[] = [];
        const unsubscribe = bus.subscribe(hub, 'evt', (payload) => received.push(payload));
        bus.subscribe(hub, 'evt', (payload) => kept.push(payload));
        bus.publish(hub, 'evt', 'late');
        unsubscribe();
        await vi.waitFor(() => expect(kept).toEqual(['late']));
        await sleep(quietMs);
        expect(received).toEqual([]);
      });
    });

    describe('request / reply', () => {
      it('returns the responder reply for a request', async () => {
        bus.respond(hub, 'method.dev1', async (payload) => ({ echo: payload, status: 200 }));
        await expect(bus.request(hub, 'method.dev1', { a: [1, 'b'] }, { timeoutMs: 1000 })).resolves.toEqual({
          echo: { a: [1, 'b'] },
          status: 200,
        });
      });

      it('reports whether a responder is registered, per hub and subject', async () => {
        expect(await bus.hasResponder(hub, 'method.dev1')).toBe(false);
        const unrespond = bus.respond(hub, 'method.dev1', async () => 'ok');
        expect(await bus.hasResponder(hub, 'method.dev1')).toBe(true);
        expect(await bus.hasResponder(otherHub, 'method.dev1')).toBe(false);
        expect(await bus.hasResponder(hub, 'method.dev2')).toBe(false);
        unrespond();
        unrespond();
        expect(await bus.hasResponder(hub, 'method.dev1')).toBe(false);
      });

      it('rejects with BusNoResponder when nobody responds, also in another hub', async () => {
        bus.respond(otherHub, 'method.dev1', async () => 'wrong hub');
        const error = await rejection(bus.request(hub, 'method.dev1', null, { timeoutMs: 1000 }));
        expect(error).toBeInstanceOf(BusNoResponder);
      });

      it('lets a second responder take over; the first one unsubscribing does not remove it', async () => {
        const unrespondFirst = bus.respond(hub, 'method.dev1', async () => 'first');
        bus.respond(hub, 'method.dev1', async () => 'second');
        expect(await bus.request(hub, 'method.dev1', null, { timeoutMs: 1000 })).toBe('second');
        unrespondFirst();
        expect(await bus.hasResponder(hub, 'method.dev1')).toBe(true);
        expect(await bus.request(hub, 'method.dev1', null, { timeoutMs: 1000 })).toBe('second');
      });

      it('rejects with BusTimeout when the responder does not answer in time', async () => {
        bus.respond(hub, 'method.slow', () => new Promise(() => {}));
        const started = Date.now();
        const error = await rejection(bus.request(hub, 'method.slow', null, { timeoutMs: 100 }));
        expect(error).toBeInstanceOf(BusTimeout);
        expect(Date.now() - started).toBeGreaterThanOrEqual(90);
      });

      it('rejects the request when the responder fails', async () => {
        bus.respond(hub, 'method.broken', async () => {
          throw new Error('handler failed');
        });
        const error = await rejection(bus.request(hub, 'method.broken', null, { timeoutMs: 1000 }));
        expect(error).toBeInstanceOf(Error);
      });

      it('rejects with AbortError when the signal is already aborted or aborts while waiting', async () => {
        const unanswered = vi.fn(() => new Promise<BusPayload>(() => {}));
        bus.respond(hub, 'method.dev1', unanswered);
        const error = await rejection(
          bus.request(hub, 'method.dev1', null, { timeoutMs: 1000, signal: AbortSignal.abort() }),
        );
        expect(error).toBeInstanceOf(AbortError);

        const controller = new AbortController();
        const pending = bus.request(hub, 'method.dev1', null, { timeoutMs: 5000, signal: controller.signal });
        await vi.waitFor(() => expect(unanswered).toHaveBeenCalledTimes(1));
        const started = Date.now();
        controller.abort();
        expect(await rejection(pending)).toBeInstanceOf(AbortError);
        expect(Date.now() - started).toBeLessThan(1000);
      });

      it('serves concurrent requests independently', async () => {
        bus.respond(hub, 'math.double', async (payload) => {
          await sleep(Number(payload) % 5);
          return Number(payload) * 2;
        });
        const replies = await Promise.all(
          Array.from({ length: 50 }, (_, i) => bus.request(hub, 'math.double', i, { timeoutMs: 2000 })),
        );
        expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
      });
    });

    describe('close', () => {
      it('rejects pending requests and new ones with BusClosed', async () => {
        bus.respond(hub, 'method.dev1', () => new Promise(() => {}));
        const pending = bus.request(hub, 'method.dev1', null, { timeoutMs: 5000 });
        await sleep(10);
        await bus.close();
        expect(await rejection(pending)).toBeInstanceOf(BusClosed);
        expect(await rejection(bus.request(hub, 'method.dev1', null, { timeoutMs: 100 }))).toBeInstanceOf(BusClosed);
        await bus.close();
      });
    });
  });
}
