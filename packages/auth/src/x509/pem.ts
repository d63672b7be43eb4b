import { Buffer } from 'node:buffer';
import { ArgumentError } from '@fieldhub/protocol';

const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** PEM text of one DER object, 64-character lines, trailing newline. */
export function derToPem(der: Uint8Array, label: string): string {
  const body = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${body}${body.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/**
 * The DER bytes of the first `label` block in `pem`.
 * @throws ArgumentError (naming `field`) when the text holds no such block or its body is not base64.
 */
export function pemToDer(pem: unknown, label: string, field: string): Buffer {
  if (typeof pem !== 'string') throw new ArgumentError(`${field} must be a PEM string`, { field });
  for (const match of pem.matchAll(pemBlock)) {
    if (match[1] !== label) continue;
    const body = (match[2] ?? '').replace(/\s+/g, '');
    if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      throw new ArgumentError(`${field} has a malformed PEM body`, { field });
    }
    return Buffer.from(body, 'base64');
  }
  throw new ArgumentError(`${field} holds no PEM "${label}" block`, { field });
}

/**
 * Splits a PEM bundle (a chain file, `leaf + intermediates`) into one PEM string per certificate, in order.
 * Text outside the blocks is ignored; blocks with other labels are skipped.
 */
export function splitPemCertificates(pem: string): string[] {
  const out: string[] = [];
  for (const match of pem.matchAll(pemBlock)) {
    if (match[1] === 'CERTIFICATE') out.push(`${match[0]}\n`);
  }
  return out;
}
