import { describe, expect, it } from 'vitest';
import { createLocalBus } from '../src/bus/local/local-bus';
import { describeBusConformance } from './bus-conformance';

describeBusConformance('local', async () => ({ bus: createLocalBus(), cleanup: async () => {} }));

describe('local bus', () => {
  it('runs the responder a microtask after request(), never inside it', async () => {
    const bus = createLocalBus();
    let called = false;
    bus.respond('h', 's', async () => {
      called = true;
      return 1;
    });
    const reply = bus.request('h', 's', null, { timeoutMs: 100 });
    expect(called).toBe(false);
    expect(await reply).toBe(1);
    await bus.close();
  });

  it('ignores publishes and registrations after close', async () => {
    const bus = createLocalBus();
    await bus.close();
    const received: unknown[] = [];
    bus.subscribe('h', 's', (payload) => received.push(payload))();
    bus.publish('h', 's', 1);
    bus.respond('h', 's', async () => 1)();
    expect(await bus.hasResponder('h', 's')).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(received).toEqual([]);
  });
});
