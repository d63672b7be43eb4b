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
