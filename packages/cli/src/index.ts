/**
 * @fieldhub/cli: the `fieldhub` command. `fieldhub hub start` runs the hub on its embedded store; `fieldhub ca`
 * manages the CA certificates devices may chain to.
 * A leaf package: nothing depends on it.
 *
 * @example
 * ```sh
 * npx fieldhub hub start --data-dir ./.fieldhub
 * npx fieldhub ca add fleet ./fleet-ca.pem --data-dir ./.fieldhub
 * ```
 * @packageDocumentation
 */
export { createProgram, runCli } from './program';
