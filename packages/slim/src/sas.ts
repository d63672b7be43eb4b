/**
 * Credentials for the slim client: the device connection string, the base64 device key, SAS tokens.
 *
 * Small local versions of `parseConnectionString`, `base64Decode`, `deviceResourceUri`, `sasStringToSign` and
 * `formatSasToken` of `@fieldhub/protocol`, producing the same strings (protocol-device.md §1.1, §1.2): the
 * protocol's versions throw its `ArgumentError`, which pulls the whole error-code table and a `Symbol.for` marker
 * into the bundle (about 3.5 KB minified of a 12 KB budget, and `Symbol` does not exist on Espruino).
 */
import { slimError } from './errors';

/**
 * The value of `name` in `text` made of `name=value` pairs joined by `separator`: a connection string
 * (`HostName=...;DeviceId=...`, separator `;`) or a topic query (`$rid=1&$version=2`, separator `&`). The value is
 * everything after the first `=`, so base64 padding and whole SAS tokens survive; undefined when absent.
 */
export function pairValue(text: string, separator: string, name: string): string | undefined {
  const pairs = text.split(separator);
  for (let i = 0; i < pairs.length; i++) {
    const pair = (pairs[i] as string).trim();
    if (pair.indexOf(name + '=') === 0) return pair.slice(name.length + 1);
  }
  return undefined;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/**
 * Encodes bytes as standard base64 with padding (an HMAC: 32 bytes). The protocol's `base64Encode` does the same
 * for large inputs too, in about twice the bytes, with an alphabet of its own beside the one here.
 */
export function encodeBase64(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] || 0) << 8) | (bytes[i + 2] || 0);
    for (let k = 0; k < 4; k++)
      text += i * 4 + k * 3 > bytes.length * 4 ? '=' : ALPHABET.charAt((n >> (18 - 6 * k)) & 63);
  }
  return text;
}

/**
 * Decodes standard base64 (padding optional).
 *
 * @throws {SlimError} `ArgumentInvalid` on a character outside the alphabet.
 */
export function decodeBase64(text: string): Uint8Array {
  const clean = text.replace(/=+$/, '');
  const out = new Uint8Array((clean.length * 3) >> 2);
  let bits = 0;
  let count = 0;
  let p = 0;
  for (let i = 0; i < clean.length; i++) {
    const value = ALPHABET.indexOf(clean.charAt(i));
    if (value < 0) throw slimError('ArgumentInvalid');
    bits = ((bits << 6) | value) & 0xffffff;
    count += 6;
    if (count >= 8) {
      count -= 8;
      out[p++] = (bits >> count) & 255;
    }
  }
  return out;
}

/**
 * `sr` of a device token: `{hostName}/devices/{deviceId}` URL-encoded. Azure's Node SDK also escapes `! ' ( ) *`,
 * which only device ids may hold; the hub verifies the signature over `sr` as the token spells it
 * (protocol-device.md §1.2), so plain `encodeURIComponent` is as good and smaller.
 */
export function sasResource(hostName: string, deviceId: string): string {
  return encodeURIComponent(hostName + '/devices/' + deviceId);
}

/** `SharedAccessSignature sr=...&sig=...&se=...`: `sr` as {@link sasResource} gives it, `sig` base64. */
export function formatToken(resource: string, signature: string, expiry: number): string {
  return 'SharedAccessSignature sr=' + resource + '&sig=' + encodeURIComponent(signature) + '&se=' + expiry;
}

/** The `se` (expiry, seconds since the epoch) of a token; 0 when it has none. */
export function tokenExpiry(token: string): number {
  const match = /[&\s]se=(\d+)/.exec(token);
  return match ? Number(match[1]) : 0;
}
