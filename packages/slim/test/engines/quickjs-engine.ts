/**
 * Runs a slim bundle inside QuickJS (quickjs-emscripten; embedded-runtimes.md §3): a fresh context holding only
 * ECMAScript built-ins plus the `hostCall` up-call. QuickJS has no event loop: every down-call is a
 * `callFunction` on the bridge's `hostEvent`, followed by `executePendingJobs()` for the promise jobs it queued.
 */
import { getQuickJS, type QuickJSContext, type QuickJSHandle } from 'quickjs-emscripten';
import { commonJsPrelude, type EngineOptions, type EngineSession, engineScripts } from './engine';
import { type DownCall, NodeBridge } from './node-bridge';

function evaluate(vm: QuickJSContext, code: string, fileName: string, type: 'global' | 'module'): QuickJSHandle {
  const result = vm.evalCode(code, fileName, { type });
  if (result.error) {
    const error = vm.dump(result.error) as unknown;
    result.error.dispose();
    throw new Error(`QuickJS: ${fileName} threw: ${JSON.stringify(error)}`);
  }
  return result.value;
}

/**
 * Starts a QuickJS context with bridge.js, shapes.js, the bundle and scenario.js; resolves once they are evaluated (the
 * scenario's `ready` event is then waiting in the bridge).
 * @throws Error when a script throws while being evaluated.
 */
export async function startQuickJsSession(options: EngineOptions): Promise<EngineSession> {
  const quickjs = await getQuickJS();
  const vm = quickjs.newContext();
  const queue: DownCall[] = [];
  let draining = false;
  let disposed = false;

  const drain = () => {
    draining = false;
    while (!disposed && queue.length > 0) {
      const message = queue.shift() as DownCall;
      const entry = vm.getProp(vm.global, 'hostEvent');
      const argument = vm.newString(JSON.stringify(message));
      const result = vm.callFunction(entry, vm.undefined, argument);
      argument.dispose();
      entry.dispose();
      if (result.error) {
        bridge.recordUncaught(JSON.stringify(vm.dump(result.error)));
        result.error.dispose();
      } else {
        result.value.dispose();
      }
      const jobs = vm.runtime.executePendingJobs();
      if (jobs.error) {
        bridge.recordUncaught(`a promise job threw: ${JSON.stringify(vm.dump(jobs.error))}`);
        jobs.error.dispose();
      }
    }
  };

  const bridge = new NodeBridge({
    ca: options.ca,
    // Queued and delivered from a later turn: never re-enter the context from inside an up-call.
    deliver: (message) => {
      queue.push(message);
      if (!draining) {
        draining = true;
        setImmediate(drain);
      }
    },
  });

  const hostCall = vm.newFunction('hostCall', (text) => vm.newString(bridge.handle(vm.getString(text))));
  vm.setProp(vm.global, 'hostCall', hostCall);
  hostCall.dispose();

  try {
    evaluate(vm, engineScripts.bridge, 'bridge.js', 'global').dispose();
    evaluate(vm, engineScripts.shapes, 'shapes.js', 'global').dispose();
    const { bundle } = options;
    let exports: QuickJSHandle;
    if (bundle.kind === 'module') {
      // quickjs-emscripten 0.32: module code evaluates to the module namespace (a promise only with top-level await).
      const evaluated = evaluate(vm, bundle.code, bundle.fileName, 'module');
      const state = vm.getPromiseState(evaluated);
      if (state.type === 'fulfilled' && state.notAPromise === true) {
        exports = evaluated;
      } else {
        vm.runtime.executePendingJobs().dispose();
        const settled = vm.getPromiseState(evaluated);
        evaluated.dispose();
        if (settled.type !== 'fulfilled') {
          if (settled.type === 'rejected') settled.error.dispose();
          throw new Error(`QuickJS: ${bundle.fileName} did not evaluate to its namespace (${settled.type})`);
        }
        exports = settled.value;
      }
    } else {
      evaluate(vm, engineScripts.espruinoTraits, 'espruino-traits.js', 'global').dispose();
      evaluate(vm, commonJsPrelude, 'prelude.js', 'global').dispose();
      evaluate(vm, bundle.code, bundle.fileName, 'global').dispose();
      exports = evaluate(vm, 'module.exports', 'exports.js', 'global');
    }
    vm.setProp(vm.global, 'slim', exports);
    exports.dispose();
    evaluate(vm, engineScripts.scenario, 'scenario.js', 'global').dispose();
    const jobs = vm.runtime.executePendingJobs();
    if (jobs.error) {
      const error = vm.dump(jobs.error) as unknown;
      jobs.error.dispose();
      throw new Error(`QuickJS: a promise job threw while loading: ${JSON.stringify(error)}`);
    }
  } catch (error) {
    bridge.dispose();
    vm.dispose();
    throw error;
  }

  return {
    bridge,
    async dispose() {
      if (disposed) return;
      disposed = true;
      bridge.dispose();
      queue.length = 0;
      vm.dispose();
    },
  };
}
