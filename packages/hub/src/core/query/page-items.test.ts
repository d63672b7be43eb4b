import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, test } from 'vitest';
import { pageItems } from './page-items';

const items = Array.from({ length: 25 }, (_, index) => index);
const query = 'SELECT * FROM devices';

describe('pageItems', () => {
  test('walks all items page by page and ends without a continuation', () => {
    const seen: number[] = [];
    let continuation: string | undefined;
    let pages = 0;
    do {
      const result = pageItems(items, { query, maxItemCount: 10, continuation });
      seen.push(...result.page);
      continuation = result.continuation;
      pages++;
    } while (continuation !== undefined);
    expect(seen).toEqual(items);
    expect(pages).toBe(3);
  });

  test('hands out opaque base64 tokens', () => {
    const { continuation } = pageItems(items, { query, maxItemCount: 5 });
    expect(continuation).toMatch(/^[A-Za-z0-9+/]+={0,2}$/);
    expect(continuation).not.toContain('5');
  });

  test('returns everything in one page when it fits, with no continuation', () => {
    expect(pageItems(items, { query, maxItemCount: 25 })).toEqual({ page: items, continuation: undefined });
    expect(pageItems([], { query })).toEqual({ page: [], continuation: undefined });
  });

  test('defaults to 100 items and clamps to 1,000', () => {
    const many = Array.from({ length: 2500 }, (_, index) => index);
    expect(pageItems(many, { query }).page).toHaveLength(100);
    expect(pageItems(many, { query, maxItemCount: 5000 }).page).toHaveLength(1000);
  });

  test('returns a short or empty page when the items shrank since the token was issued', () => {
    const { continuation } = pageItems(items, { query, maxItemCount: 20 });
    expect(pageItems(items.slice(0, 22), { query, maxItemCount: 20, continuation })).toEqual({
      page: [20, 21],
      continuation: undefined,
    });
    expect(pageItems(items.slice(0, 3), { query, maxItemCount: 20, continuation })).toEqual({
      page: [],
      continuation: undefined,
    });
  });

  test('refuses a token issued for another query', () => {
    const { continuation } = pageItems(items, { query, maxItemCount: 10 });
    const other = () => pageItems(items, { query: 'SELECT deviceId FROM devices', maxItemCount: 10, continuation });
    expect(other).toThrow(ArgumentError);
    expect(other).toThrow('The continuation token belongs to a different query');
  });

  test.each(['', 'not base64!', 'AAAA', 'cTE6MTA=', '====', 'cTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk6MDAwMDAwMDA='])(
    'refuses the malformed token %j',
    (continuation) => {
      let error: unknown;
      try {
        pageItems(items, { query, continuation });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ArgumentError);
      expect((error as ArgumentError).field).toBe('continuation');
    },
  );

  test.each([0, -1, 1.5, Number.NaN])('refuses maxItemCount %s', (maxItemCount) => {
    expect(() => pageItems(items, { query, maxItemCount })).toThrow(/maxItemCount must be a positive integer/);
  });
});
