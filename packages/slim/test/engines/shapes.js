// Runtime-shaped sockets over the bridge: a plain ES2020 script evaluated inside the engine after bridge.js, so the
// slim bundle's own host adapters (createEcma419Host, createEspruinoHost) can run in the engine against the real
// hub: the adapters see the socket APIs of Moddable and Espruino, the bytes travel through the bridge.
// It installs `bridge.ecma419` ({TLSSocket, Digest, HMAC, Timer}: what createEcma419Host takes) and
// `bridge.espruino` ({net, tls, crypto, hmac, setTimeout, clearTimeout}: what createEspruinoHost takes). Digest and
// the HMACs run in the engine over the bridge's SHA-256.
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
   * Espruino's `require('net')` and `require('tls')` (embedded-runtimes.md §1.2): `connect({host, port, ca, key,
   * cert}, callback)` gives a socket emitting `data` (a binary string, as Espruino delivers it), `drain` (the send
   * buffer is out), `error` ({code, message}), `end` and `close`; `write` takes a string, an array or a typed
   * array; `end()` closes. (Espruino itself sends a fixed SNI and checks no certificate; here the test process
   * verifies the hub's certificate for the name given.)
   */
  function espruinoSockets(secure) {
    return { connect: (options, onConnected) => espruinoConnect(secure, options, onConnected) };
  }

  function espruinoConnect(secure, options, onConnected) {
    const listeners = { connect: [], data: [], drain: [], end: [], close: [], error: [] };
    let ended = false;
    // Writes not yet taken by the test process's socket; `drain` when none are left, as Espruino's send buffer.
    let unsent = 0;
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
        if (ended) throw new Error('This socket is closed.');
        unsent++;
        socket.write(bytesOfEspruinoData(data));
        return true;
      },
      end() {
        if (ended) return;
        ended = true;
        socket.close();
      },
    };
    const tls = secure ? { servername: options.servername || options.host } : undefined;
    const socket = host.connect(
      { host: options.host, port: options.port, tls },
      {
        onConnect() {
          if (typeof onConnected === 'function') onConnected();
          emit('connect');
        },
        onData(bytes) {
          emit('data', binaryString(bytes));
        },
        onWritten() {
          unsent--;
          if (unsent === 0 && !ended) emit('drain');
        },
        onClose(error) {
          ended = true;
          // Espruino's error event carries {code, message}; `close` follows once.
          if (error) emit('error', { code: 'SOCKET_ERROR', message: String(error.message) });
          emit('end');
          emit('close', !!error);
        },
      },
    );
    return socketObject;
  }

  function bufferBytes(buffer) {
    return buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : bytesOfEspruinoData(buffer);
  }

  /** Espruino's `require('crypto')`, the part the host uses: `SHA256(ArrayBuffer)` gives an ArrayBuffer. */
  const espruinoCrypto = {
    SHA256(data) {
      return bridge.sha256(bufferBytes(data)).buffer;
    },
  };

  /** HMAC over any hash: the key padded to the block, inner and outer hashes (RFC 2104). */
  function hmacWith(hash, blockSize, key, message) {
    const block = new Uint8Array(blockSize);
    block.set(key.length > blockSize ? hash(key) : key);
    const inner = new Uint8Array(blockSize + message.length);
    for (let i = 0; i < blockSize; i++) inner[i] = block[i] ^ 0x36;
    inner.set(message, blockSize);
    const innerHash = hash(inner);
    const outer = new Uint8Array(blockSize + innerHash.length);
    for (let i = 0; i < blockSize; i++) outer[i] = block[i] ^ 0x5c;
    outer.set(innerHash, blockSize);
    return hash(outer);
  }

  /** The EspruinoDocs `hmac` module: `new HMAC(keyBuffer, crypto.SHA256, 64, 32).digest(messageBuffer)`. */
  class EspruinoHmac {
    constructor(key, hash, blockSize, outputSize) {
      const keyBytes = bufferBytes(key);
      this.digest = (message) => {
        const mac = hmacWith(
          (data) => new Uint8Array(hash(data.slice().buffer)),
          blockSize,
          keyBytes,
          bufferBytes(message),
        );
        return mac.slice(0, outputSize).buffer;
      };
    }
  }

  /** Moddable's `crypt` `Digest` (the SHA256 algorithm only): `write`, `close` gives an ArrayBuffer, `reset`. */
  class Digest {
    constructor(algorithm) {
      if (algorithm !== 'SHA256') throw new RangeError('Digest: only SHA256 here');
      let parts = [];
      this.blockSize = 64;
      this.outputSize = 32;
      this.write = (data) => {
        parts.push(copyBytes(data));
      };
      this.reset = () => {
        parts = [];
      };
      this.close = () => {
        let length = 0;
        for (const part of parts) length += part.length;
        const all = new Uint8Array(length);
        let at = 0;
        for (const part of parts) {
          all.set(part, at);
          at += part.length;
        }
        parts = [];
        return bridge.sha256(all).buffer;
      };
    }
  }

  /** Moddable's `hmac` module (modules/crypt/etc/hmac.js): `new HMAC(digest, key)`, `update`, `close`. */
  class ModdableHmac {
    constructor(digest, key) {
      const keyBytes = bufferBytes(key);
      const parts = [];
      const hash = (data) => {
        digest.reset();
        digest.write(data.slice().buffer);
        return new Uint8Array(digest.close());
      };
      this.update = (data) => {
        parts.push(copyBytes(data));
      };
      this.close = () => {
        let length = 0;
        for (const part of parts) length += part.length;
        const message = new Uint8Array(length);
        let at = 0;
        for (const part of parts) {
          message.set(part, at);
          at += part.length;
        }
        return hmacWith(hash, digest.blockSize, keyBytes, message).buffer;
      };
    }
  }

  /** Moddable's `timer` module, the part the host uses: `set(callback, ms)` and `clear(id)`. */
  const Timer = {
    set: (callback, ms) => host.setTimeout(callback, ms),
    clear: (id) => host.clearTimeout(id),
  };

  bridge.ecma419 = { TLSSocket, Digest, HMAC: ModdableHmac, Timer };
  bridge.espruino = {
    net: espruinoSockets(false),
    tls: espruinoSockets(true),
    crypto: espruinoCrypto,
    hmac: { HMAC: EspruinoHmac },
    setTimeout: host.setTimeout,
    clearTimeout: host.clearTimeout,
  };
})();
