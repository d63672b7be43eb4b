// Espruino's limits, imposed on the engine (QuickJS) before the Espruino script runs: the syntax gate sees what the
// script names, not what it does at run time, so a dynamic use of something Espruino lacks has to fail here as it
// would on a board. A plain ES2020 script, evaluated after bridge.js and shapes.js (which keep what they captured).
//  - `Function.prototype.apply` takes at most 64 arguments: Espruino throws "Array passed to Function.apply is too
//    big! Maximum 64 arguments" beyond (src/jswrap_functions.c, jswrap_function_apply_or_call).
//  - The globals and built-ins EspruinoDocs' Features.md marks not implemented (and reference §1.1 found missing)
//    are taken away. `globalThis` stays: the scenario needs it to find the bridge (the gate rejects it in the script).
(() => {
  const reflectApply = Reflect.apply;
  const MAX_APPLY_ARGUMENTS = 64;
  Object.defineProperty(Function.prototype, 'apply', {
    configurable: true,
    writable: true,
    value: function apply(thisArg, args) {
      const list = args === undefined || args === null ? [] : args;
      if (list.length > MAX_APPLY_ARGUMENTS) {
        throw new Error(
          'Array passed to Function.apply is too big! Maximum ' +
            MAX_APPLY_ARGUMENTS +
            ' arguments, got ' +
            list.length,
        );
      }
      return reflectApply(this, thisArg, list);
    },
  });

  const globals = [
    'Map',
    'Set',
    'WeakMap',
    'WeakSet',
    'WeakRef',
    'FinalizationRegistry',
    'Symbol',
    'Reflect',
    'Proxy',
    'TextEncoder',
    'TextDecoder',
    'queueMicrotask',
    'BigInt',
    'BigInt64Array',
    'BigUint64Array',
  ];
  for (const name of globals) delete globalThis[name];
  const statics = [
    [Array, ['from']],
    [Object, ['freeze', 'seal', 'preventExtensions', 'isFrozen', 'isSealed', 'isExtensible']],
    [Number, ['isNaN', 'isFinite', 'isSafeInteger', 'EPSILON']],
    [Math, ['trunc', 'sign']],
    [Object.prototype, ['propertyIsEnumerable']],
  ];
  for (const [owner, names] of statics) for (const name of names) delete owner[name];
})();
