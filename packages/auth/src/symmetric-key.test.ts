import { createHmac } from 'node:crypto';
import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { createSasToken, verifySasToken } from './sas-token';
import { deriveSymmetricKey, deriveSymmetricKeySync } from './symmetric-key';

const groupKey = Buffer.from('a group enrollment key of 32 byt').toString('base64');

describe('deriveSymmetricKey', () => {
  it('is base64(HMAC-SHA256(base64decode(groupKey), utf8(registrationId)))', async () => {
    const expected = createHmac('sha256', Buffer.from(groupKey, 'base64')).update('dev-ü1', 'utf8').digest('base64');
    await expect(deriveSymmetricKey(groupKey, 'dev-ü1')).resolves.toBe(expected);
    expect(deriveSymmetricKeySync(groupKey, 'dev-ü1')).toBe(expected);
  });

  it('depends on the exact registration id', async () => {
    expect(await deriveSymmetricKey(groupKey, 'Dev1')).not.toBe(await deriveSymmetricKey(groupKey, 'dev1'));
  });

  it('gives a key a DPS registration token verifies with', async () => {
    const deviceKey = await deriveSymmetricKey(groupKey, 'dev1');
    const token = await createSasToken({
      resourceUri: '0ne00000001/registrations/dev1',
      key: deviceKey,
      keyName: 'registration',
      ttlSeconds: 60,
    });
    const keys = async () => deriveSymmetricKey(groupKey, 'dev1');
    await expect(
      verifySasToken(token, { keys, expectedResourceUri: '0ne00000001/registrations/dev1' }),
    ).resolves.toBeTruthy();
  });

  it('names the bad argument', async () => {
    await expect(deriveSymmetricKey('%%', 'dev1')).rejects.toMatchObject({ field: 'groupKey' });
    await expect(deriveSymmetricKey(groupKey, '')).rejects.toBeInstanceOf(ArgumentError);
    expect(() => deriveSymmetricKeySync(groupKey, '')).toThrow(/registrationId/);
  });
});
