/**
 * @fieldhub/firmware-bridge: the gateway side of the firmware bridge (see ../PROTOCOL.md). Built by helper H6.
 *
 * @packageDocumentation
 */
export {};
