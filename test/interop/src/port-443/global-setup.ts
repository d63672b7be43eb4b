import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa } from '@fieldhub/auth';

/**
 * Makes one test CA for the port-443 interop run and points NODE_EXTRA_CA_CERTS at it. Node reads that variable
 * only when a process starts, so it must be set here, before vitest forks its workers; each test hub is then
 * seeded with this CA (the hub never replaces a CA it finds in its data dir) and issues its server certificate
 * from it.
 */
export default async function setup(): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldhub-interop-ca-'));
  const ca = await createRootCa({ commonName: 'Fieldhub interop test CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.certificate);
  writeFileSync(join(dir, 'ca-key.pem'), ca.privateKey, { mode: 0o600 });
  process.env.NODE_EXTRA_CA_CERTS = join(dir, 'ca.pem');
  process.env.FIELDHUB_TEST_CA_DIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
