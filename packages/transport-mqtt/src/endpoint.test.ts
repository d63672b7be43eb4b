import { describe, expect, it } from 'vitest';
import { endpoint, splitHostPort } from './endpoint';

describe('endpoint', () => {
  it('dials 8883 over TLS and 443 over WebSockets by default, with the host as TLS server name', () => {
    expect(endpoint('myhub.azure-devices.net', { webSockets: false })).toEqual({
      host: 'myhub.azure-devices.net',
      port: 8883,
      url: 'mqtts://myhub.azure-devices.net:8883',
      servername: 'myhub.azure-devices.net',
    });
    expect(endpoint('myhub.azure-devices.net', { webSockets: true }).url).toBe(
      'wss://myhub.azure-devices.net:443/$iothub/websocket',
    );
  });

  it('takes the port from a host name that carries one, and the server name without it', () => {
    expect(endpoint('localhost:41883', { webSockets: false })).toMatchObject({
      url: 'mqtts://localhost:41883',
      servername: 'localhost',
    });
    expect(endpoint('localhost:8443', { webSockets: true }).url).toBe('wss://localhost:8443/$iothub/websocket');
  });

  it('lets the transport port win over the host name port', () => {
    expect(endpoint('localhost:1', { webSockets: true, port: 4443 }).url).toBe(
      'wss://localhost:4443/$iothub/websocket',
    );
  });

  it('sends no server name for an IP address, which SNI cannot carry', () => {
    expect(endpoint('127.0.0.1:8883', { webSockets: false })).toEqual({
      host: '127.0.0.1',
      port: 8883,
      url: 'mqtts://127.0.0.1:8883',
    });
    expect(endpoint('[::1]:8883', { webSockets: false }).url).toBe('mqtts://[::1]:8883');
    expect(splitHostPort('::1')).toEqual({ host: '::1' });
  });

  it('refuses an empty host and ports outside 1..65535 with ArgumentError', () => {
    expect(() => splitHostPort('')).toThrow(expect.objectContaining({ name: 'ArgumentError', field: 'hostName' }));
    expect(() => splitHostPort('h:0')).toThrow(expect.objectContaining({ name: 'ArgumentError' }));
    expect(() => splitHostPort('h:70000')).toThrow(expect.objectContaining({ name: 'ArgumentError' }));
    expect(() => splitHostPort('h:x')).toThrow(expect.objectContaining({ name: 'ArgumentError' }));
    expect(() => endpoint('h', { webSockets: false, port: 0 })).toThrow(expect.objectContaining({ field: 'port' }));
  });
});
