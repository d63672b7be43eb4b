// Runtime-shaped sockets over the bridge: a plain ES2020 script evaluated inside the engine after bridge.js, so the
// slim bundle's own host adapters (createEcma419Host, createEspruinoHost) can run in the engine against the real
// hub: the adapters see the socket APIs of Moddable and Espruino, the bytes travel through the bridge.
// It installs `bridge.ecma419` ({TLSSocket}) and `bridge.espruino` ({tls}).
(() => {
  const bridge = globalThis.bridge;
  const host = bridge.host;
  // What an ECMA-419 socket says it can take before the test process confirms earlier writes.
  const writeWindow = 16384;

  function copyBytes(data) {
    if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
    if (ArrayBuffer.isView(data))
      return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    throw new TypeError('write takes an ArrayBuffer or a view');
  }

  /**
   * ECMA-419 `embedded:io/socket/tcp/tls` (embedded-runtimes.md §4), as Moddable implements it: options `address`
   * and `port`; SNI from `host` (Moddable) or `tls.host` (the spec) or `secure.serverName`; `onReadable(count)`,
   * `onWritable(count)` (the first one means connected), `onError()` for any disconnect; `read()` gives an
   * ArrayBuffer or undefined; `write()` throws past the writable count. Callbacks run with `this` bound to a
   * private object, as Moddable's sample TLSSocket does (§2.1), so an adapter relying on `this` fails here too.
   */
  class TLSSocket {
    constructor(options) {
      if (typeof options.address !== 'string' || typeof options.port !== 'number') {
        throw new TypeError('TLSSocket: address and port are required');
      }
      const secure = options.secure || {};
      const tls = options.tls || {};
      const serverName = tls.host || options.host || secure.serverName;
      if (options.format !== undefined && options.format !== 'buffer') {
        throw new RangeError('TLSSocket: only the buffer format');
      }
      // State lives in this closure (ES2020: no private fields), never on the object the callbacks see.
      const callbacks = { onReadable: options.onReadable, onWritable: options.onWritable, onError: options.onError };
      const received = [];
      let writable = 0;
      let closed = false;
      const grant = (count) => {
        if (closed) return;
        writable += count;
        if (callbacks.onWritable) callbacks.onWritable.call(callbacks, writable);
      };
      const socket = host.connect(
        { host: options.address, port: options.port, tls: { servername: serverName, verify: secure.verify !== false } },
        {
          onConnect() {
            grant(writeWindow);
          },
          onData(bytes) {
            if (closed) return;
            received.push(bytes);
            if (callbacks.onReadable) callbacks.onReadable.call(callbacks, bytes.length);
          },
          onWritten(count) {
            grant(count);
          },
          onClose() {
            if (closed) return;
            closed = true;
            if (callbacks.onError) callbacks.onError.call(callbacks);
          },
        },
      );
      this.format = 'buffer';
      this.read = (count) => {
        if (received.length === 0) return undefined;
        let total = 0;
        for (const chunk of received) total += chunk.length;
        const take = count === undefined ? total : Math.min(count, total);
        const out = new Uint8Array(take);
        let at = 0;
        while (at < take) {
          const chunk = received[0];
          const part = Math.min(chunk.length, take - at);
          out.set(chunk.subarray(0, part), at);
          at += part;
          if (part === chunk.length) received.shift();
          else received[0] = chunk.subarray(part);
        }
        return out.buffer;
      };
      this.write = (data) => {
        if (closed) throw new Error('TLSSocket: closed');
        const bytes = copyBytes(data);
        if (bytes.length > writable) throw new Error('TLSSocket: write exceeds the writable count');
        writable -= bytes.length;
        socket.write(bytes);
      };
      this.close = () => {
        // ECMA-419: no callback after close().
        if (closed) return;
        closed = true;
        socket.close();
      };
    }
  }

  function binaryString(bytes) {
    let out = '';
    for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]);
    return out;
  }

  function bytesOfEspruinoData(data) {
    if (typeof data === 'string') {
      const out = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) out[i] = data.charCodeAt(i) & 255;
      return out;
    }
    if (Array.isArray(data)) return new Uint8Array(data);
    return copyBytes(data);
  }

  /**
   * Espruino's `require('tls')` (embedded-runtimes.md §1.2): `connect({host, port, ca, key, cert}, callback)` gives
   * a socket emitting `data` (a binary string, as Espruino delivers it), `end`, `close` and `error`; `write` takes
   * a string, an array or a typed array; `end()` closes.
   */
  const espruinoTls = {
    connect(options, onConnected) {
      const listeners = { connect: [], data: [], end: [], close: [], error: [] };
      let ended = false;
      const emit = (name, value) => {
        const list = listeners[name].slice();
        for (let i = 0; i < list.length; i++) list[i](value);
      };
      const socketObject = {
        on(name, listener) {
          if (!listeners[name]) throw new Error('tls socket: no event ' + name);
          listeners[name].push(listener);
          return socketObject;
        },
        write(data) {
          if (!ended) socket.write(bytesOfEspruinoData(data));
          return true;
        },
        end() {
          if (ended) return;
          ended = true;
          socket.close();
        },
      };
      const socket = host.connect(
        { host: options.host, port: options.port, tls: { servername: options.servername || options.host } },
        {
          onConnect() {
            if (typeof onConnected === 'function') onConnected();
            emit('connect');
          },
          onData(bytes) {
            emit('data', binaryString(bytes));
          },
          onClose(error) {
            ended = true;
            if (error) emit('error', error);
            emit('end');
            emit('close', !!error);
          },
        },
      );
      return socketObject;
    },
  };

  bridge.ecma419 = { TLSSocket };
  bridge.espruino = { tls: espruinoTls };
})();
