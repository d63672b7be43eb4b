import { describe, expect, it } from 'vitest';
import { endpoint, splitHostPort } from './endpoint';

describe('endpoint', () => {
  it('dials 5671 over TLS and 443 over WebSockets by default, with the host as TLS server name', () => {
    expect(endpoint('myhub.azure-devices.net', { webSockets: false })).toEqual({
      host: 'myhub.azure-devices.net',
      port: 5671,
      url: 'amqps://myhub.azure-devices.net:5671',
      servername: 'myhub.azure-devices.net',
    });
    expect(endpoint('myhub.azure-devices.net', { webSockets: true }).url).toBe(
      'wss://myhub.azure-devices.net:443/$iothub/websocket',
    );
  });

  it('takes the port from a host name that carries one, and the server name without it', () => {
    expect(endpoint('localhost:41671', { webSockets: false })).toMatchObject({
      url: 'amqps://localhost:41671',
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
    expect(endpoint('127.0.0.1:5671', { webSockets: false })).toEqual({
      host: '127.0.0.1',
      port: 5671,
      url: 'amqps://127.0.0.1:5671',
    });
    expect(endpoint('[::1]:5671', { webSockets: false }).url).toBe('amqps://[::1]:5671');
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
