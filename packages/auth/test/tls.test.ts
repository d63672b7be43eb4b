import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CertificateWithKey,
  certificateThumbprint,
  createIntermediateCa,
  createRootCa,
  type IssuedCertificate,
  issueDeviceCertificate,
  issueServerCertificate,
  verifyCertificateChain,
} from '../src/index';

interface ServerSide {
  authorized: boolean;
  authorizationError: string | undefined;
  peerCommonName: string | undefined;
  peerFingerprint256: string | undefined;
}

let root: CertificateWithKey;
let intermediate: CertificateWithKey;
let server: IssuedCertificate;
let device: IssuedCertificate;
let otherRoot: CertificateWithKey;
let tlsServer: Server;
let port: number;
const accepted: Promise<ServerSide>[] = [];
const sockets = new Set<TLSSocket>();

beforeAll(async () => {
  [root, otherRoot] = await Promise.all([
    createRootCa({ commonName: 'Fieldhub TLS Test Root' }),
    createRootCa({ commonName: 'Untrusted Root' }),
  ]);
  intermediate = await createIntermediateCa({ issuer: root, commonName: 'Fieldhub TLS Test Intermediate' });
  [server, device] = await Promise.all([
    issueServerCertificate({ issuer: intermediate, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }),
    issueDeviceCertificate({ issuer: intermediate, deviceId: 'd1' }),
  ]);
  tlsServer = createServer({
    cert: server.certificate + intermediate.certificate,
    key: server.privateKey!,
    ca: [root.certificate],
    requestCert: true,
    rejectUnauthorized: false, // let the test observe the verdict instead of a bare handshake failure
  });
  tlsServer.on('secureConnection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const peer = socket.getPeerCertificate();
    accepted.push(
      Promise.resolve({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
        peerCommonName: peer?.subject?.CN,
        peerFingerprint256: peer?.fingerprint256,
      }),
    );
    socket.end('hello');
  });
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  port = (tlsServer.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => tlsServer.close(() => resolve()));
});

function connectAs(options: { cert?: string; key?: string; ca: string[]; servername?: string }): Promise<{
  authorized: boolean;
  authorizationError: string | undefined;
  data: string;
}> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: options.ca,
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.key ? { key: options.key } : {}),
      ...(options.servername ? { servername: options.servername } : {}),
      rejectUnauthorized: false,
    });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
    });
    socket.on('error', reject);
    socket.on('end', () => {
      resolve({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
        data,
      });
      socket.destroy();
    });
  });
}

describe('A chain made by @fieldhub/auth is accepted by Node’s own tls', () => {
  it('server (via intermediate, SAN 127.0.0.1) and device d1 (via intermediate) authorize each other', async () => {
    const client = await connectAs({
      cert: device.certificate + intermediate.certificate,
      key: device.privateKey!,
      ca: [root.certificate],
    });
    expect(client).toEqual({ authorized: true, authorizationError: undefined, data: 'hello' });
    const serverSide = await accepted[accepted.length - 1]!;
    expect(serverSide).toMatchObject({ authorized: true, authorizationError: undefined, peerCommonName: 'd1' });
    expect(serverSide.peerFingerprint256?.replace(/:/g, '')).toBe(certificateThumbprint(device.certificate));
  });

  it('completes with rejectUnauthorized on both sides (Node refuses any chain it does not accept)', async () => {
    const strict = createServer({
      cert: server.certificate + intermediate.certificate,
      key: server.privateKey!,
      ca: [root.certificate],
      requestCert: true,
      rejectUnauthorized: true,
    });
    const peer = new Promise<string | undefined>((resolve) => {
      strict.once('secureConnection', (socket) => {
        resolve(socket.getPeerCertificate().subject?.CN);
        socket.end('strict');
      });
    });
    await new Promise<void>((resolve) => strict.listen(0, '127.0.0.1', resolve));
    try {
      const data = await new Promise<string>((resolve, reject) => {
        const socket = connect({
          host: '127.0.0.1',
          port: (strict.address() as AddressInfo).port,
          ca: [root.certificate],
          cert: device.certificate + intermediate.certificate,
          key: device.privateKey!,
        });
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => {
          text += chunk;
        });
        socket.on('error', reject);
        socket.on('end', () => {
          socket.destroy();
          resolve(text);
        });
      });
      expect(data).toBe('strict');
      await expect(peer).resolves.toBe('d1');
    } finally {
      await new Promise<void>((resolve) => strict.close(() => resolve()));
    }
  });

  it('also verifies the server by DNS name (SNI localhost)', async () => {
    const client = await connectAs({
      cert: device.certificate + intermediate.certificate,
      key: device.privateKey!,
      ca: [root.certificate],
      servername: 'localhost',
    });
    expect(client.authorized).toBe(true);
  });

  it("rejects a device certificate from another CA, and the hub's own chain check agrees", async () => {
    const stranger = await issueDeviceCertificate({ issuer: otherRoot, deviceId: 'd1' });
    await connectAs({ cert: stranger.certificate, key: stranger.privateKey!, ca: [root.certificate] });
    const serverSide = await accepted[accepted.length - 1]!;
    expect(serverSide.authorized).toBe(false);
    expect(() =>
      verifyCertificateChain({ certificate: stranger.certificate, trustedCertificates: [root.certificate] }),
    ).toThrow(/does not chain/);
  });

  it('a client trusting another root does not authorize the server', async () => {
    const client = await connectAs({ ca: [otherRoot.certificate] });
    expect(client.authorized).toBe(false);
    expect(client.authorizationError).toMatch(/UNABLE_TO_GET_ISSUER_CERT_LOCALLY|unable to get local issuer/i);
  });
});
