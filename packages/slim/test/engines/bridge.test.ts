import '@endo/init';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsPromises from 'node:fs/promises';
import { type } from 'node:os';
import { xsnap } from '@agoric/xsnap';
import { getQuickJS, type QuickJSContext } from 'quickjs-emscripten';
import tmp from 'tmp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engineScripts } from './engine';
import { moduleLoader } from './xs-engine';

// The engine-side pieces the engine tests rely on, checked on their own: the bridge's base64 and HMAC-SHA256 (the
// SAS signature is computed with them inside the engine) against Node's, and the XS module loader.

let vm: QuickJSContext;
const upCalls: string[] = [];

beforeAll(async () => {
  vm = (await getQuickJS()).newContext();
  const hostCall = vm.newFunction('hostCall', (text) => {
    upCalls.push(vm.getString(text));
    return vm.newString('');
  });
  vm.setProp(vm.global, 'hostCall', hostCall);
  hostCall.dispose();
  vm.unwrapResult(vm.evalCode(engineScripts.bridge, 'bridge.js', { type: 'global' })).dispose();
  vm.unwrapResult(vm.evalCode(engineScripts.shapes, 'shapes.js', { type: 'global' })).dispose();
});

afterAll(() => {
  vm?.dispose();
});

/** Runs `expression` in the QuickJS context and returns its value (JSON-able). */
function run(expression: string): unknown {
  const handle = vm.unwrapResult(vm.evalCode(expression, 'test.js', { type: 'global' }));
  const value = vm.dump(handle) as unknown;
  handle.dispose();
  return value;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const asArray = (bytes: Uint8Array) => JSON.stringify(Array.from(bytes));

describe('the bridge script', () => {
  it('computes HMAC-SHA256 as Node does, for keys and messages across block boundaries', () => {
    for (const keyLength of [0, 1, 32, 63, 64, 65, 100]) {
      for (const messageLength of [0, 1, 55, 56, 63, 64, 65, 119, 120, 300]) {
        const key = randomBytes(keyLength);
        const message = randomBytes(messageLength);
        const mac = run(
          `Array.from(bridge.hmacSha256(new Uint8Array(${asArray(key)}), new Uint8Array(${asArray(message)})))`,
        ) as number[];
        expect(hex(Uint8Array.from(mac)), `key ${keyLength}, message ${messageLength}`).toBe(
          createHmac('sha256', key).update(message).digest('hex'),
        );
      }
    }
  });

  it('encodes and decodes base64 as Node does', () => {
    for (let length = 0; length < 70; length++) {
      const bytes = randomBytes(length);
      const encoded = run(`bridge.base64.encode(new Uint8Array(${asArray(bytes)}))`);
      expect(encoded).toBe(bytes.toString('base64'));
      const decoded = run(`Array.from(bridge.base64.decode(${JSON.stringify(encoded)}))`) as number[];
      expect(Buffer.from(decoded).equals(bytes)).toBe(true);
    }
  });

  it('reports a socket it is asked to open as a connect up-call, TLS options without the CA', () => {
    upCalls.length = 0;
    run(`bridge.host.connect({ host: '127.0.0.1', port: 8883, tls: { servername: 'hub', ca: 'PEM' } }, {
      onConnect() {}, onData() {}, onClose() {} }).write(new Uint8Array([1, 2, 255]))`);
    expect(upCalls.map((text) => JSON.parse(text) as unknown)).toEqual([
      {
        op: 'connect',
        id: expect.any(Number),
        host: '127.0.0.1',
        port: 8883,
        tls: { servername: 'hub', verify: true },
      },
      { op: 'write', id: expect.any(Number), data: 'AQL/', ack: false },
    ]);
  });
});

/** Delivers a down-call to the bridge, as a runner does. */
function down(message: unknown): void {
  run(`hostEvent(${JSON.stringify(JSON.stringify(message))})`);
}

describe('the ECMA-419 TLSSocket shape', () => {
  it('connects with onWritable, reads what arrived, limits writes to the writable count, ends with onError', () => {
    upCalls.length = 0;
    run(`globalThis.seen = [];
      globalThis.socket = new bridge.ecma419.TLSSocket({
        address: '127.0.0.1', port: 8883, host: 'hub',
        onReadable(count) { seen.push(['readable', count, this === socket]); },
        onWritable(count) { seen.push(['writable', count, this === socket]); },
        onError() { seen.push(['error']); },
      });`);
    const connect = JSON.parse(upCalls[0] ?? '{}') as { id: number; tls: unknown };
    expect(connect.tls).toEqual({ servername: 'hub', verify: true });
    const id = connect.id;
    down({ op: 'connected', id });
    down({ op: 'data', id, data: Buffer.from([1, 2, 3]).toString('base64') });
    down({ op: 'data', id, data: Buffer.from([4]).toString('base64') });
    expect(run('Array.from(new Uint8Array(socket.read(2)))')).toEqual([1, 2]);
    expect(run('Array.from(new Uint8Array(socket.read()))')).toEqual([3, 4]);
    expect(run('socket.read()')).toBeUndefined();
    expect(run('try { socket.write(new Uint8Array(16385)); "wrote" } catch (e) { e.message }')).toMatch(/writable/);
    run('socket.write(new Uint8Array(16000))');
    down({ op: 'written', id, count: 16000 });
    down({ op: 'closed', id, error: null });
    down({ op: 'data', id, data: 'AA==' });
    // Callbacks run with `this` bound elsewhere (as Moddable's sample TLSSocket), so adapters must not rely on it.
    expect(run('seen')).toEqual([
      ['writable', 16384, false],
      ['readable', 3, false],
      ['readable', 1, false],
      ['writable', 16384, false],
      ['error'],
    ]);
    expect(upCalls.map((text) => (JSON.parse(text) as { op: string }).op)).toEqual(['connect', 'write']);
  });
});

describe('the Espruino tls shape', () => {
  it('connects, delivers data as binary strings, writes strings as bytes and emits end and close', () => {
    upCalls.length = 0;
    run(`globalThis.events = [];
      globalThis.espruinoSocket = bridge.espruino.tls.connect({ host: '127.0.0.1', port: 8883 }, () => events.push('connected'));
      espruinoSocket.on('data', (data) => events.push(['data', typeof data, data.length, data.charCodeAt(1)]));
      espruinoSocket.on('end', () => events.push('end'));
      espruinoSocket.on('close', (hadError) => events.push(['close', hadError]));`);
    const id = (JSON.parse(upCalls[0] ?? '{}') as { id: number }).id;
    down({ op: 'connected', id });
    down({ op: 'data', id, data: Buffer.from([0, 255, 7]).toString('base64') });
    run(`espruinoSocket.write(String.fromCharCode(0, 200, 65)); espruinoSocket.end(); espruinoSocket.end();`);
    down({ op: 'closed', id, error: null });
    expect(run('events')).toEqual(['connected', ['data', 'string', 3, 255], 'end', ['close', false]]);
    const ops = upCalls.map((text) => JSON.parse(text) as { op: string; data?: string });
    expect(ops.map((call) => call.op)).toEqual(['connect', 'write', 'close']);
    expect(Buffer.from(ops[1]?.data ?? '', 'base64')).toEqual(Buffer.from([0, 200, 65]));
  });
});

describe('the XS module loader', () => {
  it('hands an ES module to XS unchanged and exposes its exports', async () => {
    // Characters a careless embedding would change: quotes, backslashes, line separators, a template literal.
    const tricky = 'a\'b"c\\d\u2028e\u2029f`$' + '{g}`\n</script>';
    const code = `const text = ${JSON.stringify(tricky)};\nfunction read() { return text; }\nexport { read as readText };\n`;
    const replies: string[] = [];
    const worker = await xsnap({
      os: type(),
      spawn,
      fs: { ...fsPromises, ...fs, tmpName: tmp.tmpName },
      handleCommand: async (request) => {
        replies.push(new TextDecoder().decode(request));
        return new Uint8Array(0);
      },
    });
    try {
      await worker.evaluate(moduleLoader(code));
      await worker.evaluate(
        'issueCommand(new TextEncoder().encode(JSON.stringify([Object.keys(slim), slim.readText()])).buffer);',
      );
      expect(replies.map((text) => JSON.parse(text) as unknown)).toEqual([[['readText'], tricky]]);
    } finally {
      await worker.terminate();
    }
  });
});
