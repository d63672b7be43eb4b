import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { readFlagFile } from '../hub-connection';
import { fields, write, writeJson } from '../output';

/** @fieldhub/auth (with node-forge) loads only when a cert command runs, not with every `fieldhub` command. */
const auth = () => import('@fieldhub/auth');

interface OutputOptions {
  out: string;
  force?: boolean;
  json?: boolean;
}

/** What a `cert` command wrote. */
interface Written {
  certificate: string;
  privateKey?: string;
  subject: string;
  thumbprintSha1: string;
  thumbprintSha256: string;
  expiry: string;
}

/**
 * Adds `fieldhub cert ca|device|self-signed|verification`: test certificates made locally with @fieldhub/auth
 * (RSA 2048, SHA-256), for X.509 devices and for the CA proof of possession. No hub is needed.
 */
export function addCertCommands(program: Command): void {
  const cert = program
    .command('cert')
    .description('make test certificates: a CA, device certificates, a proof-of-possession certificate');

  cert
    .command('ca')
    .description('create a root CA (certificate and private key) to issue device certificates with')
    .requiredOption('--out <dir>', 'directory to write ca.pem and ca-key.pem into')
    .option('--name <commonName>', 'the CA subject CN', 'Fieldhub Test CA')
    .option('--days <n>', 'validity in days', '3650')
    .option('--force', 'overwrite existing files')
    .option('--json', 'print what was written as JSON')
    .action(async (options: OutputOptions & { name: string; days: string }) => {
      const ca = await (await auth()).createRootCa({ commonName: options.name, validityDays: days(options.days) });
      const written = await save(options, 'ca', ca.certificate, ca.privateKey);
      report(written, options, [
        'Register it with the hub and prove possession of its key:',
        `  fieldhub ca add <name> ${written.certificate}`,
        `  fieldhub ca verify <name> --cert ${written.certificate} --key ${written.privateKey}`,
      ]);
    });

  cert
    .command('device')
    .description('issue a device certificate (CN = device id, clientAuth) signed by a CA')
    .argument('<deviceId>', 'the device id, written as the subject CN')
    .requiredOption('--ca-cert <file>', 'the CA certificate, PEM')
    .requiredOption('--ca-key <file>', "the CA's private key, PEM")
    .requiredOption('--out <dir>', 'directory to write <deviceId>.pem and <deviceId>-key.pem into')
    .option('--days <n>', 'validity in days', '365')
    .option('--force', 'overwrite existing files')
    .option('--json', 'print what was written as JSON')
    .action(async (deviceId: string, options: OutputOptions & { caCert: string; caKey: string; days: string }) => {
      const issuer = {
        certificate: await readFlagFile(options.caCert, 'CA certificate'),
        privateKey: await readFlagFile(options.caKey, 'CA private key'),
      };
      const issued = await (await auth()).issueDeviceCertificate({
        issuer,
        deviceId,
        validityDays: days(options.days),
      });
      const written = await save(options, deviceId, issued.certificate, issued.privateKey);
      report(written, options, [
        'Register the device for CA authentication and print its connection string:',
        `  fieldhub device create ${deviceId} --ca-signed`,
        `  fieldhub device connection-string ${deviceId}`,
      ]);
    });

  cert
    .command('self-signed')
    .description('create a self-signed device certificate; prints the thumbprints to register')
    .argument('<deviceId>', 'the device id, written as the subject CN')
    .requiredOption('--out <dir>', 'directory to write <deviceId>.pem and <deviceId>-key.pem into')
    .option('--days <n>', 'validity in days', '365')
    .option('--force', 'overwrite existing files')
    .option('--json', 'print what was written as JSON')
    .action(async (deviceId: string, options: OutputOptions & { days: string }) => {
      const made = await (await auth()).createSelfSignedCertificate({
        commonName: deviceId,
        validityDays: days(options.days),
      });
      const written = await save(options, deviceId, made.certificate, made.privateKey);
      report(written, options, [
        'Register the device with its thumbprint:',
        `  fieldhub device create ${deviceId} --x509-thumbprint ${written.thumbprintSha1}`,
      ]);
    });

  cert
    .command('verification')
    .summary('create the proof-of-possession certificate for a CA')
    .description(
      'create the proof-of-possession certificate for a CA: CN = the verification code the hub issued, signed with the CA key (`fieldhub ca verify` does all of it in one step)',
    )
    .requiredOption('--code <code>', 'the verification code from the hub')
    .requiredOption('--ca-cert <file>', 'the CA certificate, PEM')
    .requiredOption('--ca-key <file>', "the CA's private key, PEM")
    .requiredOption('--out <file>', 'the file to write the certificate (PEM) to')
    .option('--force', 'overwrite an existing file')
    .option('--json', 'print what was written as JSON')
    .action(async (options: OutputOptions & { code: string; caCert: string; caKey: string }) => {
      const ca = {
        certificate: await readFlagFile(options.caCert, 'CA certificate'),
        privateKey: await readFlagFile(options.caKey, 'CA private key'),
      };
      const certificate = await (await auth()).createVerificationCertificate({ ca, verificationCode: options.code });
      await mkdir(dirname(options.out), { recursive: true });
      await writeNew(options.out, certificate, 0o644, options.force === true);
      report(await describe(certificate, options.out), options, []);
    });
}

function days(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--days must be a positive whole number, not ${text}`);
  return value;
}

async function save(
  options: OutputOptions,
  base: string,
  certificate: string,
  privateKey: string | undefined,
): Promise<Written> {
  if (base.includes('/') || base.includes('\\')) throw new Error(`'${base}' cannot name a file`);
  await mkdir(options.out, { recursive: true });
  const certificateFile = join(options.out, `${base}.pem`);
  const keyFile = join(options.out, `${base}-key.pem`);
  const force = options.force === true;
  await writeNew(certificateFile, certificate, 0o644, force);
  if (privateKey !== undefined) await writeNew(keyFile, privateKey, 0o600, force);
  return {
    ...(await describe(certificate, certificateFile)),
    ...(privateKey === undefined ? {} : { privateKey: keyFile }),
  };
}

async function writeNew(file: string, text: string, mode: number, force: boolean): Promise<void> {
  try {
    await writeFile(file, text, { mode, flag: force ? 'w' : 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new Error(`${file} exists; pass --force to overwrite it`);
    }
    throw new Error(`cannot write ${file}: ${(error as Error).message}`);
  }
}

async function describe(certificate: string, file: string): Promise<Written> {
  const info = (await auth()).parseCertificate(certificate);
  return {
    certificate: file,
    subject: info.subject.commonName ?? '',
    thumbprintSha1: info.thumbprintSha1,
    thumbprintSha256: info.thumbprintSha256,
    expiry: info.notAfter.toISOString(),
  };
}

function report(written: Written, options: { json?: boolean }, next: readonly string[]): void {
  if (options.json) {
    writeJson(written);
    return;
  }
  const rows: [string, string][] = [
    ['certificate', written.certificate],
    ...(written.privateKey === undefined ? [] : ([['private key', written.privateKey]] as [string, string][])),
    ['subject CN', written.subject],
    ['expiry', written.expiry],
    ['thumbprint (SHA-1)', written.thumbprintSha1],
    ['thumbprint (SHA-256)', written.thumbprintSha256],
  ];
  write(fields(rows));
  if (next.length > 0) write(['', ...next].join('\n'));
}
