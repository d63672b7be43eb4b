import { ArgumentError, base64Encode } from '@fieldhub/protocol';
import { decodeKey, hmacSha256Async, hmacSha256Sync } from './hmac';

function checkRegistrationId(registrationId: unknown): string {
  if (typeof registrationId !== 'string' || registrationId.length === 0) {
    throw new ArgumentError('registrationId must be a non-empty string', { field: 'registrationId' });
  }
  return registrationId;
}

/**
 * Derives a device's key from a DPS group-enrollment key: `base64(HMAC-SHA256(base64decode(groupKey),
 * UTF-8(registrationId)))` (reference protocol-device.md §5.5). The registration id is used as given: DPS treats
 * it case-insensitively, but the derived key depends on the exact text.
 * @throws ArgumentError (field `groupKey` or `registrationId`) when either is empty or the key is not base64.
 */
export async function deriveSymmetricKey(groupKey: string, registrationId: string): Promise<string> {
  const key = decodeKey(groupKey, 'groupKey');
  return base64Encode(await hmacSha256Async(key, checkRegistrationId(registrationId)));
}

/**
 * {@link deriveSymmetricKey}, synchronously (portable HMAC).
 * @throws ArgumentError as {@link deriveSymmetricKey}.
 */
export function deriveSymmetricKeySync(groupKey: string, registrationId: string): string {
  const key = decodeKey(groupKey, 'groupKey');
  return base64Encode(hmacSha256Sync(key, checkRegistrationId(registrationId)));
}
