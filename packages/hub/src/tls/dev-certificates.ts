import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRootCa, issueServerCertificate, parseCertificate } from '@fieldhub/auth';
import type { Logger } from 'pino';

/** The TLS material the hub serves with, and where its CA lives. */
export interface TlsMaterial {
  /** Server certificate chain (PEM): the server certificate, then the CA. */
  readonly cert: string;
  readonly key: string;
  /** The CA certificate (PEM) clients trust. */
  readonly caCertificate: string;
  readonly caCertificatePath: string;
}

const renewBeforeMs = 30 * 24 * 60 * 60 * 1000;

/**
 * Makes sure `<dataDir>/tls` holds a CA and a server certificate for `hostName`:
 * - the CA (`ca.pem`, `ca-key.pem`) is made once and NEVER replaced, so clients that trust it keep working; an
 *   operator may put their own CA there before the first start;
 * - the server certificate (`server.pem`, `server-key.pem`) is issued from the CA for the host name plus
 *   `localhost`, `127.0.0.1` and `::1`, and issued again when the host name changed, it expires within 30 days,
 *   or it was not issued by the current CA.
 */
export async function ensureTlsMaterial(dataDir: string, hostName: string, logger: Logger): Promise<TlsMaterial> {
  const dir = join(dataDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caPath = join(dir, 'ca.pem');
  const caKeyPath = join(dir, 'ca-key.pem');
  const serverPath = join(dir, 'server.pem');
  const serverKeyPath = join(dir, 'server-key.pem');

  if (!existsSync(caPath) || !existsSync(caKeyPath)) {
    if (existsSync(caPath) !== existsSync(caKeyPath)) {
      throw new Error(`${dir} holds only one of ca.pem and ca-key.pem; restore the other or remove both`);
    }
    const ca = await createRootCa({ commonName: `Fieldhub development CA (${hostName})`, organization: 'Fieldhub' });
    writeFileSync(caKeyPath, ca.privateKey, { mode: 0o600 });
    writeFileSync(caPath, ca.certificate);
    logger.info({ caPath }, 'made a development CA');
  }
  const caCertificate = readFileSync(caPath, 'utf8');
  const caKey = readFileSync(caKeyPath, 'utf8');

  const dnsNames = [...new Set([hostName, 'localhost'])].filter((name) => !isIpAddress(name));
  const ipAddresses = [...new Set(['127.0.0.1', '::1', ...(isIpAddress(hostName) ? [hostName] : [])])];
  if (!serverCertificateFits(serverPath, serverKeyPath, caCertificate, dnsNames)) {
    const issued = await issueServerCertificate({
      issuer: { certificate: caCertificate, privateKey: caKey },
      commonName: hostName,
      dnsNames,
      ipAddresses,
      validityDays: 825,
    });
    if (!issued.privateKey) throw new Error('server certificate issued without a private key');
    writeFileSync(serverKeyPath, issued.privateKey, { mode: 0o600 });
    writeFileSync(serverPath, issued.certificate);
    logger.info({ hostName }, 'issued the server certificate');
  }
  const server = readFileSync(serverPath, 'utf8');
  return {
    cert: `${server.trimEnd()}\n${caCertificate.trimEnd()}\n`,
    key: readFileSync(serverKeyPath, 'utf8'),
    caCertificate,
    caCertificatePath: caPath,
  };
}

function serverCertificateFits(certPath: string, keyPath: string, caPem: string, dnsNames: readonly string[]): boolean {
  if (!existsSync(certPath) || !existsSync(keyPath)) return false;
  try {
    const server = parseCertificate(readFileSync(certPath, 'utf8'));
    const ca = parseCertificate(caPem);
    const issuedByCa = JSON.stringify(server.issuer) === JSON.stringify(ca.subject);
    const coversNames = dnsNames.every((name) => server.dnsNames.includes(name));
    const fresh = server.notAfter.getTime() - Date.now() > renewBeforeMs;
    return issuedByCa && coversNames && fresh;
  } catch {
    return false;
  }
}

function isIpAddress(value: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(value) || value.includes(':');
}
