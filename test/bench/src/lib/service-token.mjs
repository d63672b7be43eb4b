import { createSasToken } from '@fieldhub/auth';

/** A service SAS token from a `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` connection string. */
export function serviceToken(connectionString) {
  const fields = Object.fromEntries(
    connectionString.split(';').map((part) => {
      const at = part.indexOf('=');
      return [part.slice(0, at), part.slice(at + 1)];
    }),
  );
  return createSasToken({
    resourceUri: fields.HostName,
    key: fields.SharedAccessKey,
    keyName: fields.SharedAccessKeyName,
    ttlSeconds: 4 * 3600,
  });
}
