import { describe, expect, it } from 'vitest';
import { AckQueue } from './ack-queue';

describe('AckQueue', () => {
  it('releases acknowledgements in arrival order when appends finish out of order', () => {
    const queue = new AckQueue(4);
    const released: number[] = [];
    const release = (id: number) => released.push(id);
    const a = queue.push(10);
    const b = queue.push(11);
    const c = queue.push(12);
    expect(queue.complete(c, release)).toBe(0);
    expect(queue.complete(b, release)).toBe(0);
    expect(released).toEqual([]);
    expect(queue.complete(a, release)).toBe(3);
    expect(released).toEqual([10, 11, 12]);
    expect(queue.length).toBe(0);
  });

  it('grows past its initial capacity and keeps tickets valid', () => {
    const queue = new AckQueue(2);
    const released: number[] = [];
    const tickets = Array.from({ length: 100 }, (_, i) => queue.push(i + 1));
    for (const ticket of tickets.slice(1).reverse()) queue.complete(ticket, (id) => released.push(id));
    expect(released).toEqual([]);
    queue.complete(tickets[0] as number, (id) => released.push(id));
    expect(released).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('wraps around the ring while slots are released continuously', () => {
    const queue = new AckQueue(4);
    const released: number[] = [];
    for (let i = 1; i <= 50; i++) {
      const first = queue.push(i * 2);
      const second = queue.push(i * 2 + 1);
      queue.complete(second, (id) => released.push(id));
      queue.complete(first, (id) => released.push(id));
    }
    expect(released).toEqual(Array.from({ length: 100 }, (_, i) => i + 2));
  });

  it('ignores unknown, repeated and cleared tickets', () => {
    const queue = new AckQueue();
    const released: number[] = [];
    const a = queue.push(1);
    expect(queue.complete(a + 5, (id) => released.push(id))).toBe(0);
    expect(queue.complete(a, (id) => released.push(id))).toBe(1);
    expect(queue.complete(a, (id) => released.push(id))).toBe(0);
    const b = queue.push(2);
    queue.clear();
    expect(queue.complete(b, (id) => released.push(id))).toBe(0);
    expect(released).toEqual([1]);
  });
});
