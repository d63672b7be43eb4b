// Makes a device certificate and key for the X.509 example, with @fieldhub/auth:
// - self-signed (the default): the hub knows the device by the certificate's thumbprint, printed here;
// - `--ca ca.pem --ca-key ca-key.pem`: issued by your CA (CN = device id); register and verify that CA with
//   `npx fieldhub ca add` and `npx fieldhub ca verify`, and create the device with CA authentication.
//
//   node examples/x509-device/src/make-certificate.js <device-id> [--out dir] [--ca ca.pem --ca-key ca-key.pem]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { certificateThumbprint, createSelfSignedCertificate, issueDeviceCertificate } from '@fieldhub/auth';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string', default: '.' },
    ca: { type: 'string' },
    'ca-key': { type: 'string' },
    days: { type: 'string', default: '365' },
  },
});
const deviceId = positionals[0];
if (!deviceId || (values.ca === undefined) !== (values['ca-key'] === undefined)) {
  console.error('usage: make-certificate.js <device-id> [--out dir] [--days n] [--ca ca.pem --ca-key ca-key.pem]');
  process.exit(2);
}
const validityDays = Number(values.days);

const { certificate, privateKey } = values.ca
  ? await issueDeviceCertificate({
      deviceId,
      validityDays,
      issuer: { certificate: readFileSync(values.ca, 'utf8'), privateKey: readFileSync(values['ca-key'], 'utf8') },
    })
  : await createSelfSignedCertificate({ commonName: deviceId, validityDays });

mkdirSync(values.out, { recursive: true });
const certFile = join(values.out, `${deviceId}.pem`);
const keyFile = join(values.out, `${deviceId}-key.pem`);
writeFileSync(certFile, certificate);
writeFileSync(keyFile, privateKey ?? '', { mode: 0o600 });
console.log(`certificate ${certFile}`);
console.log(`key         ${keyFile}`);
console.log(`thumbprint  ${certificateThumbprint(certificate, 'sha1')} (SHA-1)`);
console.log(`            ${certificateThumbprint(certificate, 'sha256')} (SHA-256)`);
