/**
 * The Node host (for tests and for trying the slim client on a PC): `node:net` / `node:tls` sockets, Node timers,
 * `node:crypto` HMAC. Implemented with the client (helper H2).
 */
export {};
