/**
 * @fieldhub/cli: the `fieldhub` command. `hub start` runs the hub on its embedded store; `device`, `twin`,
 * `method`, `c2d` and `monitor` work a hub through @fieldhub/service, `ca` through its `/fieldhub/` REST
 * extensions, `dps` through the provisioning service API; `simulate` runs a fleet on @fieldhub/device; `cert` and `sas` make test certificates and tokens with @fieldhub/auth.
 * A leaf package: nothing depends on it.
 *
 * @example
 * ```sh
 * npx fieldhub hub start --data-dir ./.fieldhub
 * npx fieldhub device create pump-1
 * npx fieldhub monitor --device pump-1
 * npx fieldhub simulate 500 --duration 30
 * ```
 * @packageDocumentation
 */
export { createProgram, runCli } from './program';
