/**
 * Entry of the Moddable bundle (`dist/moddable/fieldhub-slim.js`, the ES2020 module `fieldhub-slim` of the
 * manifest): the client, the ECMA-419 host, and the protocol's portable HMAC-SHA256 for firmware built without
 * Moddable's `crypt` / `hmac` modules (and for engines that have neither, as in the engine tests).
 */
export { hmacSha256 } from '@fieldhub/protocol';
export { createClient } from '../client';
export { createEcma419Host } from '../hosts/ecma419';
