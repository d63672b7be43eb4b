import { HubError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { SseParser } from './sse-parser';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('SseParser', () => {
  it('dispatches an event at a blank line and skips comments', () => {
    const parser = new SseParser();
    expect(parser.push(': fieldhub events\n\ndata: {"a":1}\n\n: keep-alive\n\n')).toEqual([
      { event: 'message', data: '{"a":1}', id: undefined },
    ]);
  });

  it('joins several data lines with a newline and reads event and id fields', () => {
    const parser = new SseParser();
    expect(parser.push('event: tick\nid: 7\ndata: one\ndata:two\n\n')).toEqual([
      { event: 'tick', data: 'one\ntwo', id: '7' },
    ]);
  });

  it('assembles events split across chunks at any byte, multi-byte characters included', () => {
    const text = 'data: {"t":"üñ€"}\n\ndata: second\n\n';
    const all = bytes(text);
    for (let cut = 1; cut < all.length; cut++) {
      const parser = new SseParser();
      const events = [...parser.push(all.slice(0, cut)), ...parser.push(all.slice(cut))];
      expect(events.map((e) => e.data)).toEqual(['{"t":"üñ€"}', 'second']);
    }
  });

  it('accepts CRLF and lone CR line endings, also a CRLF split between chunks', () => {
    const parser = new SseParser();
    expect(parser.push('data: a\r\n\r\ndata: b\r\r').map((e) => e.data)).toEqual(['a', 'b']);
    const split = new SseParser();
    expect([...split.push('data: c\r'), ...split.push('\n\r'), ...split.push('\n')].map((e) => e.data)).toEqual(['c']);
  });

  it('keeps an incomplete event until its blank line arrives, and ignores a blank line without data', () => {
    const parser = new SseParser();
    expect(parser.push('\n\ndata: x\n')).toEqual([]);
    expect(parser.push('\n')).toEqual([{ event: 'message', data: 'x', id: undefined }]);
  });

  it('ignores a leading byte-order mark, retry and unknown fields', () => {
    const parser = new SseParser();
    expect(parser.push('\uFEFFretry: 10\nfoo: bar\ndata\n\n')).toEqual([{ event: 'message', data: '', id: undefined }]);
  });

  it('refuses a line longer than maxLineBytes instead of buffering without bound', () => {
    const parser = new SseParser({ maxLineBytes: 16 });
    expect(() => parser.push(`data: ${'x'.repeat(32)}`)).toThrow(HubError);
  });
});
