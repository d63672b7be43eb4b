/**
 * @fieldhub/cli: the `fieldhub` command. `fieldhub hub start` runs the hub on its embedded store.
 * A leaf package: nothing depends on it.
 *
 * @example
 * ```sh
 * npx fieldhub hub start --data-dir ./.fieldhub
 * ```
 * @packageDocumentation
 */
export { createProgram, runCli } from './program';
