/**
 * Runs a slim bundle inside XS (@agoric/xsnap 0.15, XS 13.3; embedded-runtimes.md §2.2): a worker process with
 * ECMAScript, `Compartment`, `TextEncoder` and a synchronous `issueCommand(ArrayBuffer)` up-call, and no
 * `setTimeout`, `require`, `process` or `Buffer`.
 *
 * The ES2020 bundle is an ES module and xsnap's `evaluate` takes scripts: it is loaded, byte for byte, as a
 * `ModuleSource` in a new `Compartment` (XS's module loader; the compartment's globals are ECMAScript's only), and
 * its namespace becomes `globalThis.slim` for the scenario.
 *
 * xsnap serialises everything on one pipe: while the worker is inside an up-call, the test process must not issue a
 * command (it would wait for the up-call to end, which waits for it). Up-calls are answered at once; down-calls are
 * issued one after another from a queue.
 */
import '@endo/init';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsPromises from 'node:fs/promises';
import { type } from 'node:os';
import { xsnap } from '@agoric/xsnap';
import tmp from 'tmp';
import { commonJsPrelude, type EngineOptions, type EngineSession, engineScripts } from './engine';
import { type DownCall, NodeBridge } from './node-bridge';

/** The worker-side glue: the bridge's `hostCall` over `issueCommand`, and xsnap's `handleCommand` to `hostEvent`. */
const xsPrelude = `
globalThis.hostCall = (text) => new TextDecoder().decode(issueCommand(new TextEncoder().encode(text).buffer));
globalThis.handleCommand = (buffer) => {
  hostEvent(new TextDecoder().decode(buffer));
  return new ArrayBuffer(0);
};
`;

/**
 * The script that loads an ES module bundle into a compartment and exposes its namespace. The source travels as a
 * JSON string literal, which JavaScript reads back to the identical string.
 */
export function moduleLoader(code: string): string {
  return (
    `globalThis.slim = new Compartment({ modules: { 'fieldhub-slim': { source: new ModuleSource(${JSON.stringify(code)}) } } })` +
    `.importNow('fieldhub-slim');`
  );
}

/**
 * Starts an xsnap worker with bridge.js, shapes.js, the bundle and scenario.js; resolves once they are evaluated.
 * @throws Error when the worker cannot start or a script throws while being evaluated.
 */
export async function startXsSession(options: EngineOptions): Promise<EngineSession> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const empty = new Uint8Array(0);
  const queue: DownCall[] = [];
  let draining = false;
  let disposed = false;

  // Assigned below; the handler only runs once the worker evaluates something.
  let bridge: NodeBridge | undefined;
  const worker = await xsnap({
    os: type(),
    spawn,
    fs: { ...fsPromises, ...fs, tmpName: tmp.tmpName },
    name: 'fieldhub-slim-xs',
    stdout: 'inherit',
    stderr: 'inherit',
    // No metering: a crank's budget is for consensus, not for a test (HMAC-SHA256 in JS is a heavy crank).
    meteringLimit: 0,
    handleCommand: async (request: Uint8Array) => {
      if (disposed || !bridge) return empty;
      return encoder.encode(bridge.handle(decoder.decode(request)));
    },
  });

  const drain = async () => {
    while (!disposed && queue.length > 0) {
      const message = queue.shift() as DownCall;
      try {
        await worker.issueStringCommand(JSON.stringify(message));
      } catch (error) {
        if (!disposed) bridge?.recordUncaught(`xsnap: ${String(error)}`);
      }
    }
    draining = false;
  };

  bridge = new NodeBridge({
    ca: options.ca,
    deliver: (message) => {
      queue.push(message);
      if (!draining) {
        draining = true;
        // A later turn: never from inside handleCommand, whose answer the worker is waiting for.
        setImmediate(() => void drain());
      }
    },
  });

  try {
    await worker.evaluate(xsPrelude);
    await worker.evaluate(engineScripts.bridge);
    await worker.evaluate(engineScripts.shapes);
    const { bundle } = options;
    if (bundle.kind === 'module') {
      await worker.evaluate(moduleLoader(bundle.code));
    } else {
      await worker.evaluate(engineScripts.espruinoTraits);
      await worker.evaluate(commonJsPrelude);
      await worker.evaluate(bundle.code);
      await worker.evaluate('globalThis.slim = module.exports;');
    }
    await worker.evaluate(engineScripts.scenario);
  } catch (error) {
    bridge.dispose();
    await worker.terminate();
    throw error;
  }

  const session: EngineSession = {
    bridge,
    async dispose() {
      if (disposed) return;
      disposed = true;
      session.bridge.dispose();
      queue.length = 0;
      await worker.terminate();
    },
  };
  return session;
}
