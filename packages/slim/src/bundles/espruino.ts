/**
 * Entry of the Espruino bundle (`dist/espruino/fieldhub-slim.min.js`, the board's module `fieldhub-slim`):
 * the client and the Espruino host. The glue passes Espruino's `net`, `tls`, `crypto` and `hmac` modules in; the
 * bundle itself requires nothing.
 */
export { createClient } from '../client';
export { createEspruinoHost } from '../hosts/espruino';
