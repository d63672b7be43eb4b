// The host bridge: a plain ES2020 script evaluated inside the engine (QuickJS, XS) before the slim bundle. It
// implements the slim Host (src/host.ts) over two channels, with no Node API in reach:
//   up-calls (engine -> test process): `hostCall(text)`, a synchronous function the runner installs; the text is
//     JSON: {op: 'connect' | 'write' | 'close' | 'setTimer' | 'clearTimer' | 'log' | 'event', ...};
//   down-calls (test process -> engine): `hostEvent(text)`, defined here; JSON {op: 'connected' | 'data' |
//     'written' | 'closed' | 'timer' | 'command', ...}.
// Bytes cross as base64 (the codec is below). HMAC-SHA256 is computed here, in the engine, so the device key never
// needs the test process's crypto; the clock is the engine's own Date.now().
// It installs `globalThis.bridge`: {host, hmacSha256, emit(name, data), onCommand, base64}.
(() => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const alphabetIndex = {};
  for (let i = 0; i < alphabet.length; i++) alphabetIndex[alphabet.charAt(i)] = i;

  function toBase64(bytes) {
    let out = '';
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      out += alphabet[(n >> 18) & 63] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + alphabet[n & 63];
    }
    if (i + 1 === bytes.length) {
      const n = bytes[i] << 16;
      out += alphabet[(n >> 18) & 63] + alphabet[(n >> 12) & 63] + '==';
    } else if (i + 2 === bytes.length) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
      out += alphabet[(n >> 18) & 63] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + '=';
    }
    return out;
  }

  function fromBase64(text) {
    let end = text.length;
    while (end > 0 && text.charAt(end - 1) === '=') end--;
    const out = new Uint8Array(Math.floor((end * 3) / 4));
    let bits = 0;
    let value = 0;
    let at = 0;
    for (let i = 0; i < end; i++) {
      const digit = alphabetIndex[text.charAt(i)];
      if (digit === undefined) throw new Error('bridge: bad base64');
      value = (value << 6) | digit;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[at++] = (value >> bits) & 255;
      }
    }
    return out;
  }

  // SHA-256 (FIPS 180-4) and HMAC (RFC 2104), plain JS: the engines have no crypto of their own.
  const roundConstants = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
  ];

  function sha256(data) {
    const bitLength = data.length * 8;
    const padded = new Uint8Array((((data.length + 9 + 63) / 64) | 0) * 64);
    padded.set(data);
    padded[data.length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
    view.setUint32(padded.length - 4, bitLength >>> 0);
    const h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    const w = new Array(64);
    for (let block = 0; block < padded.length; block += 64) {
      for (let t = 0; t < 16; t++) w[t] = view.getUint32(block + t * 4);
      for (let t = 16; t < 64; t++) {
        const a = w[t - 15];
        const b = w[t - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let a = h[0];
      let b = h[1];
      let c = h[2];
      let d = h[3];
      let e = h[4];
      let f = h[5];
      let g = h[6];
      let k = h[7];
      for (let t = 0; t < 64; t++) {
        const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const choice = (e & f) ^ (~e & g);
        const t1 = (k + s1 + choice + roundConstants[t] + w[t]) | 0;
        const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const majority = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (s0 + majority) | 0;
        k = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
      }
      h[0] = (h[0] + a) | 0;
      h[1] = (h[1] + b) | 0;
      h[2] = (h[2] + c) | 0;
      h[3] = (h[3] + d) | 0;
      h[4] = (h[4] + e) | 0;
      h[5] = (h[5] + f) | 0;
      h[6] = (h[6] + g) | 0;
      h[7] = (h[7] + k) | 0;
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i] >>> 0);
    return out;
  }

  function hmacSha256(key, message) {
    let block = key.length > 64 ? sha256(key) : key;
    const padded = new Uint8Array(64);
    padded.set(block);
    block = padded;
    const inner = new Uint8Array(64 + message.length);
    const outer = new Uint8Array(64 + 32);
    for (let i = 0; i < 64; i++) {
      inner[i] = block[i] ^ 0x36;
      outer[i] = block[i] ^ 0x5c;
    }
    inner.set(message, 64);
    outer.set(sha256(inner), 64);
    return sha256(outer);
  }

  function up(message) {
    // hostCall is the runner's synchronous up-call (QuickJS: a host function; XS: issueCommand over the pipe).
    return hostCall(JSON.stringify(message));
  }

  function describe(error) {
    if (error && typeof error === 'object') {
      return { message: String(error.message), code: error.code, status: error.status, stack: String(error.stack) };
    }
    return { message: String(error) };
  }

  let nextId = 1;
  // Open sockets and pending timers by id; their callbacks run when the test process says so.
  const sockets = {};
  const timers = {};

  function bytesOf(data) {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    throw new TypeError('bridge: write takes bytes');
  }

  const host = {
    connect(options, events) {
      if (!options || typeof options.host !== 'string' || typeof options.port !== 'number') {
        throw new TypeError('bridge: connect needs {host, port}');
      }
      const id = nextId++;
      sockets[id] = events;
      up({
        op: 'connect',
        id,
        host: options.host,
        port: options.port,
        tls: options.tls ? describeTls(options.tls) : null,
      });
      return {
        write(bytes) {
          // `onWritten` (the runtime-shaped sockets of shapes.js use it for flow control) asks for a `written`
          // down-call once the test process's socket took the bytes.
          const data = toBase64(bytesOf(bytes));
          if (sockets[id]) up({ op: 'write', id, data, ack: typeof events.onWritten === 'function' });
        },
        close() {
          // Idempotent; `onClose` follows when the test process reports the socket closed.
          if (sockets[id]) up({ op: 'close', id });
        },
      };
    },
    setTimeout(callback, ms) {
      const id = nextId++;
      timers[id] = callback;
      up({ op: 'setTimer', id, ms: Number(ms) || 0 });
      return id;
    },
    clearTimeout(handle) {
      if (timers[handle]) {
        delete timers[handle];
        up({ op: 'clearTimer', id: handle });
      }
    },
    now() {
      return Date.now();
    },
    hmacSha256,
    log(level, message) {
      up({ op: 'log', level: String(level), message: String(message) });
    },
  };

  // Only what can cross as JSON: the CA stays in the test process, which verifies the hub's certificate.
  function describeTls(tls) {
    return { servername: tls.servername === undefined ? null : String(tls.servername), verify: tls.verify !== false };
  }

  const bridge = {
    host,
    hmacSha256,
    sha256,
    base64: { encode: toBase64, decode: fromBase64 },
    /** Reports something to the test (a scenario callback, a probe). */
    emit(name, data) {
      up({ op: 'event', name, data: data === undefined ? null : data });
    },
    describeError: describe,
    /** Set by the scenario: runs a command from the test. */
    onCommand: null,
  };

  function dispatch(message) {
    if (message.op === 'connected') {
      const events = sockets[message.id];
      if (events) events.onConnect();
    } else if (message.op === 'data') {
      const events = sockets[message.id];
      if (events) events.onData(fromBase64(message.data));
    } else if (message.op === 'written') {
      const events = sockets[message.id];
      if (events) events.onWritten(message.count);
    } else if (message.op === 'closed') {
      const events = sockets[message.id];
      if (events) {
        delete sockets[message.id];
        events.onClose(message.error === null ? undefined : new Error(message.error));
      }
    } else if (message.op === 'timer') {
      const callback = timers[message.id];
      if (callback) {
        delete timers[message.id];
        callback();
      }
    } else if (message.op === 'command') {
      if (typeof bridge.onCommand !== 'function') throw new Error('bridge: no scenario installed');
      bridge.onCommand(message.command);
    } else {
      throw new Error('bridge: unknown down-call ' + message.op);
    }
  }

  globalThis.bridge = bridge;
  // The down-call entry. An exception escaping a callback is reported as an `uncaught` event (the test fails on
  // it) rather than thrown into the runner, so one bad callback does not hide the events after it.
  globalThis.hostEvent = (text) => {
    try {
      dispatch(JSON.parse(text));
    } catch (error) {
      bridge.emit('uncaught', describe(error));
    }
  };
})();
