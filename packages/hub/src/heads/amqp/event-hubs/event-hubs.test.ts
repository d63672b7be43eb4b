import rhea from 'rhea';
import { describe, expect, it } from 'vitest';
import { namesHub, parseManagementAddress, parsePartitionAddress } from './addresses';
import { type EpochHolder, EpochRegistry, maxReadersPerPartition } from './epochs';
import { parseSelector, selectorFilterCode, startPositionOf } from './selector-filter';

// The pure parts of the Event Hubs endpoint: addresses, selector filters (as @azure/event-hubs 6 writes them in
// eventPosition.js) and the epoch rules.

describe('selector filters', () => {
  it('reads offsets as sequence numbers, -1 as the start and @latest as the end', () => {
    expect(parseSelector("amqp.annotation.x-opt-offset > '-1'")).toEqual({ from: 'earliest' });
    expect(parseSelector("amqp.annotation.x-opt-offset >= '-1'")).toEqual({ from: 'earliest' });
    expect(parseSelector("amqp.annotation.x-opt-offset > '@latest'")).toEqual({ from: 'latest' });
    expect(parseSelector("amqp.annotation.x-opt-offset > '12'")).toEqual({
      from: { sequenceNumber: 12, inclusive: false },
    });
    expect(parseSelector("amqp.annotation.x-opt-offset >= '12'")).toEqual({
      from: { sequenceNumber: 12, inclusive: true },
    });
  });

  it('reads sequence numbers exclusive with > and inclusive with >=', () => {
    expect(parseSelector("amqp.annotation.x-opt-sequence-number > '5'")).toEqual({
      from: { sequenceNumber: 5, inclusive: false },
    });
    expect(parseSelector("AMQP.ANNOTATION.X-OPT-SEQUENCE-NUMBER>='5'")).toEqual({
      from: { sequenceNumber: 5, inclusive: true },
    });
    expect(parseSelector("amqp.annotation.x-opt-sequence-number > '-1'")).toEqual({ from: 'earliest' });
  });

  it('reads enqueued times in ms, >= including the millisecond itself', () => {
    expect(parseSelector("amqp.annotation.x-opt-enqueued-time > '1654109018051'")).toEqual({
      from: { enqueuedTime: 1654109018051 },
    });
    expect(parseSelector("amqp.annotation.x-opt-enqueued-time >= '1654109018051'")).toEqual({
      from: { enqueuedTime: 1654109018050 },
    });
  });

  it('refuses what it cannot read instead of guessing a position', () => {
    for (const bad of [
      "amqp.annotation.x-opt-offset > 'abc'",
      "amqp.annotation.x-opt-offset < '5'",
      "amqp.annotation.x-opt-partition-key = 'a'",
      "amqp.annotation.x-opt-sequence-number > '1.5'",
      "amqp.annotation.x-opt-sequence-number > '99999999999999999999'",
      '',
      42,
    ]) {
      expect(parseSelector(bad), String(bad)).toHaveProperty('error');
    }
  });

  it('finds the selector by name or by descriptor, and reads from the start without one', () => {
    const described = rhea.types.wrap_described("amqp.annotation.x-opt-offset > '7'", selectorFilterCode);
    expect(startPositionOf({ 'apache.org:selector-filter:string': described })).toEqual({
      from: { sequenceNumber: 7, inclusive: false },
    });
    expect(
      startPositionOf({ other: { descriptor: selectorFilterCode, value: "amqp.annotation.x-opt-offset > '3'" } }),
    ).toEqual({ from: { sequenceNumber: 3, inclusive: false } });
    expect(startPositionOf(undefined)).toEqual({ from: 'earliest' });
    expect(startPositionOf({})).toEqual({ from: 'earliest' });
  });
});

describe('addresses', () => {
  it('parses the entity path form, the /messages/events form and full URLs', () => {
    expect(parsePartitionAddress('myhub/ConsumerGroups/$default/Partitions/3')).toEqual({
      entityPath: 'myhub',
      consumerGroup: '$default',
      partitionId: '3',
    });
    expect(parsePartitionAddress('/messages/events/consumergroups/%24Default/partitions/0')).toEqual({
      entityPath: undefined,
      consumerGroup: '$Default',
      partitionId: '0',
    });
    expect(parsePartitionAddress('amqps://localhost:5671/myhub/ConsumerGroups/cg/Partitions/1')?.entityPath).toBe(
      'myhub',
    );
    expect(parsePartitionAddress('/devices/d1/messages/events')).toBeUndefined();
    expect(parsePartitionAddress('a/b/ConsumerGroups/cg/Partitions/1')).toBeUndefined();
    expect(parsePartitionAddress('myhub/ConsumerGroups/%E0%A4%A/Partitions/1')).toBeUndefined();
  });

  it('parses $management with or without an entity path', () => {
    expect(parseManagementAddress('$management')).toEqual({ entityPath: undefined });
    expect(parseManagementAddress('/messages/events/$management')).toEqual({ entityPath: undefined });
    expect(parseManagementAddress('MyHub/$Management')).toEqual({ entityPath: 'MyHub' });
    expect(parseManagementAddress('$cbs')).toBeUndefined();
    expect(namesHub('MYHUB', 'myhub')).toBe(true);
    expect(namesHub('other', 'myhub')).toBe(false);
    expect(namesHub(undefined, 'myhub')).toBe(true);
  });
});

describe('epochs', () => {
  const holder = (epoch: number | undefined) => {
    const stolen: string[] = [];
    const value: EpochHolder & { stolen: string[] } = { epoch, stolen, steal: (error) => stolen.push(error.condition) };
    return value;
  };

  it('lets a higher or equal epoch take over and refuses a lower one', () => {
    const registry = new EpochRegistry();
    const plain = holder(undefined);
    const first = holder(1);
    expect(registry.acquire('cg/0', plain)).toBeUndefined();
    expect(registry.acquire('cg/0', first)).toBeUndefined();
    expect(plain.stolen).toEqual(['amqp:link:stolen']);
    expect(registry.acquire('cg/0', holder(0))?.condition).toBe('amqp:link:stolen');
    expect(registry.acquire('cg/0', holder(undefined))?.condition).toBe('amqp:link:stolen');
    const same = holder(1);
    expect(registry.acquire('cg/0', same)).toBeUndefined();
    expect(first.stolen).toEqual(['amqp:link:stolen']);
    // Other partitions and groups are not affected.
    expect(registry.acquire('cg/1', holder(undefined))).toBeUndefined();
    registry.release('cg/0', same);
    expect(registry.acquire('cg/0', holder(undefined))).toBeUndefined();
  });

  it('allows five receivers without epoch per group and partition', () => {
    const registry = new EpochRegistry();
    for (let index = 0; index < maxReadersPerPartition; index++) {
      expect(registry.acquire('cg/0', holder(undefined))).toBeUndefined();
    }
    expect(registry.acquire('cg/0', holder(undefined))?.condition).toBe('amqp:resource-limit-exceeded');
  });
});
