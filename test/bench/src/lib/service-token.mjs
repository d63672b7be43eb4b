import { createSasToken } from '@fieldhub/auth';
import { parseServiceConnectionString } from '@fieldhub/protocol';

/** A service SAS token from a `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` connection string. */
export function serviceToken(connectionString) {
  const { hostName, sharedAccessKeyName, sharedAccessKey } = parseServiceConnectionString(connectionString);
  return createSasToken({
    resourceUri: hostName,
    key: sharedAccessKey,
    keyName: sharedAccessKeyName,
    ttlSeconds: 4 * 3600,
  });
}
