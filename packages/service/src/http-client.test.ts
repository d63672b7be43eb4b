import { describe, expect, it } from 'vitest';
import { quoteEtag, splitHost } from './http-client';

describe('splitHost', () => {
  it('splits a port off a host name and an IPv6 literal', () => {
    expect(splitHost('hub.example')).toEqual({ host: 'hub.example', port: undefined });
    expect(splitHost('localhost:8443')).toEqual({ host: 'localhost', port: 8443 });
    expect(splitHost('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
  });
});

describe('quoteEtag', () => {
  it('quotes bare etags and keeps quoted ones', () => {
    expect(quoteEtag('AAAA')).toBe('"AAAA"');
    expect(quoteEtag('"AAAA"')).toBe('"AAAA"');
    expect(quoteEtag('*')).toBe('"*"');
  });
});
