// Distinguished names, subject alternative names and extensions: encoding and decoding (RFC 5280 §4.1.2.4, §4.2).
import { Buffer } from 'node:buffer';
import { isIPv4, isIPv6 } from 'node:net';
import { ArgumentError } from '@fieldhub/protocol';
import * as der from './der';

/** The subject (or issuer) fields Fieldhub writes and reads. */
export interface DistinguishedName {
  commonName?: string;
  organization?: string;
  organizationalUnit?: string;
  country?: string;
}

const attributeOids = {
  country: '2.5.4.6',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  commonName: '2.5.4.3',
} as const;

/** @internal Encodes a Name, one attribute per RDN, in the order C, O, OU, CN. */
export function encodeName(name: DistinguishedName, field: string): Buffer {
  const rdns: Buffer[] = [];
  for (const key of ['country', 'organization', 'organizationalUnit', 'commonName'] as const) {
    const value = name[key];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value.length === 0) {
      throw new ArgumentError(`${field}.${key} must be a non-empty string`, { field: `${field}.${key}` });
    }
    if (key === 'country' && !/^[A-Z]{2}$/.test(value)) {
      throw new ArgumentError(`${field}.country must be two capital letters`, { field: `${field}.country` });
    }
    const encoded = key === 'country' ? der.printableString(value) : der.utf8String(value);
    rdns.push(der.set(der.sequence(der.oid(attributeOids[key]), encoded)));
  }
  return der.sequence(...rdns);
}

/** @internal Decodes the attributes of a Name that Fieldhub knows; others are ignored. */
export function decodeName(node: der.DerNode): DistinguishedName {
  const out: DistinguishedName = {};
  for (const rdn of der.children(node)) {
    for (const attribute of der.children(rdn)) {
      const [type, value] = der.children(attribute);
      if (!type || !value) continue;
      const oid = der.decodeOid(type.value);
      for (const [key, known] of Object.entries(attributeOids) as [keyof DistinguishedName, string][]) {
        if (known === oid && out[key] === undefined) out[key] = der.decodeString(value);
      }
    }
  }
  return out;
}

function ipv6Bytes(address: string): Buffer {
  let text = address;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    tail.push(...v4[1].split('.').map(Number));
    text = `${text.slice(0, -v4[1].length)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const restGroups = rest ? rest.split(':') : [];
  const zeros = rest === undefined ? [] : Array(8 - headGroups.length - restGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...restGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => {
    bytes.writeUInt16BE(Number.parseInt(group, 16), i * 2);
  });
  if (tail.length === 4) Buffer.from(tail).copy(bytes, 12);
  return bytes;
}

function formatIpv6(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.length && j - i > 1) best = { start: i, length: j - i };
    i = j;
  }
  if (best.start < 0) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.length).join(':')}`;
}

/** @internal The subjectAltName extension value: DNS names then IP addresses. */
export function encodeSubjectAltName(
  dnsNames: readonly string[],
  ipAddresses: readonly string[],
  field: string,
): Buffer {
  const names: Buffer[] = [];
  dnsNames.forEach((name, i) => {
    if (typeof name !== 'string' || !/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(name)) {
      throw new ArgumentError(`${field}.dnsNames[${i}] is not a DNS name`, { field: `${field}.dnsNames[${i}]` });
    }
    names.push(der.implicitPrimitive(2, Buffer.from(name, 'latin1')));
  });
  ipAddresses.forEach((address, i) => {
    if (typeof address === 'string' && isIPv4(address)) {
      names.push(der.implicitPrimitive(7, Buffer.from(address.split('.').map(Number))));
    } else if (typeof address === 'string' && isIPv6(address)) {
      names.push(der.implicitPrimitive(7, ipv6Bytes(address)));
    } else {
      throw new ArgumentError(`${field}.ipAddresses[${i}] is not an IP address`, {
        field: `${field}.ipAddresses[${i}]`,
      });
    }
  });
  return der.sequence(...names);
}

/** @internal Decodes DNS names and IP addresses of a subjectAltName value; other name forms are ignored. */
export function decodeSubjectAltName(value: Buffer): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const name of der.children(der.readNode(value))) {
    if (name.tag === 0x82) dnsNames.push(name.value.toString('latin1'));
    if (name.tag === 0x87 && name.value.length === 4) ipAddresses.push([...name.value].join('.'));
    if (name.tag === 0x87 && name.value.length === 16) ipAddresses.push(formatIpv6(name.value));
  }
  return { dnsNames, ipAddresses };
}

/** Extended key usages by name (RFC 5280 §4.2.1.12). */
export const ExtendedKeyUsage = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** @internal Well-known extension OIDs. */
export const ExtensionOid = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extendedKeyUsage: '2.5.29.37',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

/** @internal One Extension: SEQUENCE { extnID, critical?, extnValue OCTET STRING }. */
export function extension(oid: string, value: Buffer, critical = false): Buffer {
  return der.sequence(der.oid(oid), ...(critical ? [der.boolean(true)] : []), der.octetString(value));
}

/** @internal keyUsage bits (RFC 5280 §4.2.1.3): digitalSignature 0, keyEncipherment 2, keyCertSign 5, cRLSign 6. */
export function keyUsage(bits: readonly number[]): Buffer {
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  return extension(ExtensionOid.keyUsage, der.bitString(bytes, 7 - (highest & 7)), true);
}
