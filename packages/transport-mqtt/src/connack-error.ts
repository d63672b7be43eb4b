import { AuthenticationError, ConnectionError, type HubError } from '@fieldhub/protocol';

/**
 * The error for a refused CONNECT, from the CONNACK return code [MQTT-3.2.2-3], mapped as the official Node SDK
 * maps it (protocol-device.md §2.2): 4 (bad user name or password), 5 (not authorized) and 2 (identifier
 * rejected: the hub refuses a client id that is no valid device id) -> AuthenticationError, which retrying does
 * not cure; 3 (server unavailable) -> ConnectionError, retryable; 1 (unacceptable protocol version) ->
 * ConnectionError that is not retryable; anything else -> ConnectionError.
 */
export function connackError(returnCode: number, cause?: unknown): HubError {
  const options = cause === undefined ? {} : { cause };
  switch (returnCode) {
    case 2:
      return new AuthenticationError('The hub rejected the client id (CONNACK 2)', options);
    case 4:
      return new AuthenticationError('The hub refused the user name or password (CONNACK 4)', options);
    case 5:
      return new AuthenticationError('The hub refused the credentials (CONNACK 5)', options);
    case 1:
      return new ConnectionError('The hub does not accept MQTT 3.1.1 (CONNACK 1)', {
        ...options,
        code: 'InvalidProtocolVersion',
        retryable: false,
      });
    case 3:
      return new ConnectionError('The hub is unavailable (CONNACK 3)', options);
    default:
      return new ConnectionError(`The hub refused the connection (CONNACK ${returnCode})`, options);
  }
}
