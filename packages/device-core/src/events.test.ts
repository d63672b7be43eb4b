import { describe, expect, it } from 'vitest';
import { TypedEmitter } from './events';

interface Events {
  ping: [value: number];
  done: [];
}

describe('TypedEmitter', () => {
  it('calls listeners in order; on() returns an idempotent unsubscribe', () => {
    const emitter = new TypedEmitter<Events>();
    const seen: string[] = [];
    const off = emitter.on('ping', (value) => seen.push(`a${value}`));
    emitter.on('ping', (value) => seen.push(`b${value}`));
    emitter.emit('ping', 1);
    off();
    off();
    emitter.emit('ping', 2);
    emitter.emit('done');
    expect(seen).toEqual(['a1', 'b1', 'b2']);
    expect(emitter.listenerCount('ping')).toBe(1);
  });

  it('a throwing listener does not stop the others and is reported', () => {
    const errors: unknown[] = [];
    const emitter = new TypedEmitter<Events>((error) => errors.push(error));
    let called = false;
    emitter.on('done', () => {
      throw new Error('boom');
    });
    emitter.on('done', () => {
      called = true;
    });
    emitter.emit('done');
    expect(called).toBe(true);
    expect(errors).toHaveLength(1);
  });
});
