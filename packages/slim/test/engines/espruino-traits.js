// Espruino's limits, imposed on the engine (QuickJS) before the Espruino script runs: the syntax gate sees what the
// script names, not what it does at run time, so a dynamic use of something Espruino lacks has to fail here as it
// would on a board. A plain ES2020 function expression, evaluated after bridge.js and shapes.js (which keep what
// they captured); engine.ts calls it with the gate's lists (ESPRUINO_MISSING of scripts/espruino-gate.mjs).
//  - `Function.prototype.apply` takes at most 64 arguments: Espruino throws "Array passed to Function.apply is too
//    big! Maximum 64 arguments" beyond (src/jswrap_functions.c, jswrap_function_apply_or_call).
//  - The globals, static built-ins and methods the gate knows Espruino lacks are deleted.
(function imposeEspruinoTraits(missing) {
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
  const builtins = Object.keys(missing.builtins).map((owner) => [globalThis[owner], missing.builtins[owner]]);
  for (const name of missing.methods) delete Object.prototype[name];
  for (const [owner, names] of builtins) for (const name of names) delete owner[name];
  for (const name of missing.globals) delete globalThis[name];
});
