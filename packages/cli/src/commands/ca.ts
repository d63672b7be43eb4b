import type { parseCertificate } from '@fieldhub/auth';
import type { Command } from 'commander';
import { addHubConnectionOptions, connectToHub, type HubConnectionOptions, readFlagFile } from '../hub-connection';
import { table, write } from '../output';

/** A CA certificate as `/fieldhub/certificates` answers it (docs/rest-extensions.md). */
interface CertificateDescription {
  name: string;
  subject: string;
  thumbprint: string;
  thumbprintSha256: string;
  expiry: string;
  isVerified: boolean;
  certificate: string;
  etag: string;
  created: string;
  updated: string;
}

interface JsonOption {
  json?: boolean;
}

const path = (name: string, action = ''): string =>
  `/fieldhub/certificates/${encodeURIComponent(name)}${action ? `/${action}` : ''}`;

/**
 * Adds `fieldhub ca add|verify|list|show|delete`: the hub's CA certificates for devices that authenticate with
 * certificates issued by a CA (protocol-device.md §6), over the `/fieldhub/certificates` REST extension.
 */
export function addCaCommands(program: Command): void {
  const ca = program
    .command('ca')
    .description('manage the CA certificates devices may chain to (X.509 CA authentication)');

  addHubConnectionOptions(
    ca
      .command('add')
      .description('upload a CA certificate; it is unverified until `fieldhub ca verify` (or --verified)')
      .argument('<name>', 'a name for the CA (letters, digits, - _ .)')
      .argument('<pemFile>', 'the CA certificate, PEM')
      .option('--verified', "mark it verified without proof of possession (trusts you hold the CA's key)")
      .option('--replace', 'replace an existing CA of that name'),
  ).action(
    async (
      name: string,
      pemFile: string,
      options: HubConnectionOptions & { verified?: boolean; replace?: boolean },
    ) => {
      const certificate = await readFlagFile(pemFile, 'CA certificate');
      const hub = await connectToHub(options);
      const added = await hub.request<CertificateDescription>('PUT', path(name), {
        body: { certificate, isVerified: options.verified === true },
        // ARM-style: replacing needs If-Match, so a typo in <name> never overwrites another CA silently.
        ...(options.replace ? { headers: { 'if-match': '"*"' } } : {}),
      });
      write(`Added CA certificate '${added.name}' (${added.subject}, SHA-1 ${added.thumbprint}).`);
      if (added.isVerified) {
        write('It is verified: devices with certificates it issued can connect.');
      } else {
        write('It is not verified yet. Prove you hold its private key with:');
        write(`  fieldhub ca verify ${added.name} --key <caKeyFile> --cert ${pemFile}`);
      }
    },
  );

  addHubConnectionOptions(
    ca
      .command('verify')
      .summary('prove possession of the CA key and mark the CA verified')
      .description(
        "prove possession of a CA's private key: gets a verification code from the hub, signs a certificate with CN = code with the CA key, uploads it",
      )
      .argument('<name>', 'the CA name given at `fieldhub ca add`')
      .requiredOption('--key <caKeyFile>', "the CA's private key, PEM (RSA)")
      .requiredOption('--cert <caCertFile>', 'the CA certificate, PEM'),
  ).action(async (name: string, options: HubConnectionOptions & { key: string; cert: string }) => {
    const privateKey = await readFlagFile(options.key, 'CA private key');
    const certificate = await readFlagFile(options.cert, 'CA certificate');
    const local = await readLocalCertificate(certificate, options.cert);
    const hub = await connectToHub(options);
    const stored = await hub.request<CertificateDescription>('GET', path(name));
    // Catch the wrong file here: the hub would only say the proof is not signed by its CA.
    if (stored.thumbprintSha256 !== local.thumbprintSha256) {
      throw new Error(`${options.cert} is not the certificate uploaded as '${name}' (thumbprints differ)`);
    }
    if (stored.isVerified) {
      write(`CA certificate '${name}' is already verified.`);
      return;
    }
    const { verificationCode } = await hub.request<CertificateDescription & { verificationCode: string }>(
      'POST',
      path(name, 'generateVerificationCode'),
    );
    // @fieldhub/auth (and node-forge) only load for the commands that sign or parse certificates.
    const { createVerificationCertificate } = await import('@fieldhub/auth');
    const proof = await createVerificationCertificate({ ca: { certificate, privateKey }, verificationCode });
    const verified = await hub.request<CertificateDescription>('POST', path(name, 'verify'), {
      body: { certificate: proof },
    });
    write(`CA certificate '${verified.name}' is verified: devices with certificates it issued can connect.`);
  });

  addHubConnectionOptions(
    ca.command('list').description('list the CA certificates').option('--json', 'print JSON'),
  ).action(async (options: HubConnectionOptions & JsonOption) => {
    const hub = await connectToHub(options);
    const list = await hub.request<CertificateDescription[]>('GET', '/fieldhub/certificates');
    if (options.json) {
      write(JSON.stringify(list, null, 2));
      return;
    }
    if (list.length === 0) {
      write('No CA certificates. Add one with: fieldhub ca add <name> <pemFile>');
      return;
    }
    write(certificateTable(list));
  });

  addHubConnectionOptions(
    ca
      .command('show')
      .description('show one CA certificate')
      .argument('<name>', 'the CA name')
      .option('--json', 'print JSON (includes the PEM)'),
  ).action(async (name: string, options: HubConnectionOptions & JsonOption) => {
    const hub = await connectToHub(options);
    const one = await hub.request<CertificateDescription>('GET', path(name));
    if (options.json) {
      write(JSON.stringify(one, null, 2));
      return;
    }
    const rows: [string, string][] = [
      ['name', one.name],
      ['subject', one.subject],
      ['verified', one.isVerified ? 'yes' : 'no'],
      ['expiry', one.expiry],
      ['thumbprint (SHA-1)', one.thumbprint],
      ['thumbprint (SHA-256)', one.thumbprintSha256],
      ['created', one.created],
      ['updated', one.updated],
      ['etag', one.etag],
    ];
    const width = Math.max(...rows.map(([label]) => label.length));
    write(rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n'));
  });

  addHubConnectionOptions(
    ca.command('delete').description('delete a CA certificate').argument('<name>', 'the CA name'),
  ).action(async (name: string, options: HubConnectionOptions) => {
    const hub = await connectToHub(options);
    await hub.request<undefined>('DELETE', path(name));
    write(`Deleted CA certificate '${name}'.`);
  });
}

async function readLocalCertificate(pem: string, file: string): Promise<ReturnType<typeof parseCertificate>> {
  const { parseCertificate } = await import('@fieldhub/auth');
  try {
    return parseCertificate(pem);
  } catch {
    throw new Error(`${file} is not a PEM certificate`);
  }
}

function certificateTable(list: readonly CertificateDescription[]): string {
  const header = ['NAME', 'VERIFIED', 'EXPIRY', 'THUMBPRINT (SHA-1)', 'SUBJECT'];
  return table(
    header,
    list.map((c) => [c.name, c.isVerified ? 'yes' : 'no', c.expiry, c.thumbprint, c.subject]),
  );
}
