// Distinguished names and subject alternative names: validation, conversion to node-forge's attributes (to write)
// and from node:crypto's X509Certificate (to read). No ASN.1 here: forge encodes, OpenSSL decodes.
import { isIPv4, isIPv6 } from 'node:net';
import { ArgumentError } from '@fieldhub/protocol';
import { type ForgeAltName, type ForgeAttribute, StringTag } from './forge';

/** The subject (or issuer) fields Fieldhub writes and reads. */
export interface DistinguishedName {
  commonName?: string;
  organization?: string;
  organizationalUnit?: string;
  country?: string;
}

type NameField = keyof DistinguishedName;

/** Attribute OIDs and OpenSSL short names, in the order Fieldhub writes them (C, O, OU, CN). */
const attributes: readonly { field: NameField; oid: string; shortName: string }[] = [
  { field: 'country', oid: '2.5.4.6', shortName: 'C' },
  { field: 'organization', oid: '2.5.4.10', shortName: 'O' },
  { field: 'organizationalUnit', oid: '2.5.4.11', shortName: 'OU' },
  { field: 'commonName', oid: '2.5.4.3', shortName: 'CN' },
];

/**
 * @internal Validates a name and returns it as forge attributes, one per RDN, in the order C, O, OU, CN; country
 * as PrintableString, the rest as UTF8String.
 * @throws ArgumentError naming `field.<key>` for an empty value or a country that is not two capital letters.
 */
export function nameAttributes(name: DistinguishedName, field: string): ForgeAttribute[] {
  const out: ForgeAttribute[] = [];
  for (const { field: key, oid } of attributes) {
    const value: unknown = name[key];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value.length === 0) {
      throw new ArgumentError(`${field}.${key} must be a non-empty string`, { field: `${field}.${key}` });
    }
    if (key === 'country' && !/^[A-Z]{2}$/.test(value)) {
      throw new ArgumentError(`${field}.country must be two capital letters`, { field: `${field}.country` });
    }
    out.push({ type: oid, value, valueTagClass: key === 'country' ? StringTag.printable : StringTag.utf8 });
  }
  return out;
}

/** @internal The known fields of forge attributes (first value of each wins); others are ignored. */
export function nameFromAttributes(list: readonly ForgeAttribute[]): DistinguishedName {
  const out: DistinguishedName = {};
  for (const attribute of list) {
    const known = attributes.find((a) => a.oid === attribute.type);
    if (known && out[known.field] === undefined) out[known.field] = attribute.value;
  }
  return out;
}

/**
 * @internal The known fields of a name as Node's `X509Certificate#toLegacyObject()` gives it (short names as
 * keys, unescaped values, an array when an attribute repeats; the first value wins).
 */
export function nameFromLegacy(legacy: unknown): DistinguishedName {
  const out: DistinguishedName = {};
  if (typeof legacy !== 'object' || legacy === null) return out;
  const record = legacy as Record<string, unknown>;
  for (const { field, shortName } of attributes) {
    const raw = record[shortName];
    const value = Array.isArray(raw) ? raw[0] : raw;
    if (typeof value === 'string') out[field] = value;
  }
  return out;
}

/** @internal The canonical text of an IP address (RFC 5952 for IPv6: lower case, `::` compression). */
export function canonicalIp(address: string): string {
  if (isIPv4(address)) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/**
 * @internal Validates DNS names and IP addresses and returns them as forge subjectAltName entries.
 * @throws ArgumentError naming `field.dnsNames[i]` or `field.ipAddresses[i]`.
 */
export function altNames(dnsNames: readonly string[], ipAddresses: readonly string[], field: string): ForgeAltName[] {
  const out: ForgeAltName[] = [];
  dnsNames.forEach((name, i) => {
    if (typeof name !== 'string' || !/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(name)) {
      throw new ArgumentError(`${field}.dnsNames[${i}] is not a DNS name`, { field: `${field}.dnsNames[${i}]` });
    }
    out.push({ type: 2, value: name });
  });
  ipAddresses.forEach((address, i) => {
    if (typeof address !== 'string' || !(isIPv4(address) || isIPv6(address))) {
      throw new ArgumentError(`${field}.ipAddresses[${i}] is not an IP address`, {
        field: `${field}.ipAddresses[${i}]`,
      });
    }
    out.push({ type: 7, ip: canonicalIp(address) });
  });
  return out;
}

/**
 * @internal DNS names and IP addresses of Node's `X509Certificate#subjectAltName` text
 * (`DNS:a, IP Address:0:0:0:0:0:0:0:1`; values with special characters are JSON-quoted). Other forms are ignored.
 */
export function parseSubjectAltName(text: string | undefined): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const entry = /([A-Za-z][A-Za-z ]*):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (const match of (text ?? '').matchAll(entry)) {
    const [, kind, raw = ''] = match;
    const value = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    if (kind === 'DNS') dnsNames.push(value);
    if (kind === 'IP Address' && (isIPv4(value) || isIPv6(value))) ipAddresses.push(canonicalIp(value));
  }
  return { dnsNames, ipAddresses };
}

/** Extended key usages by name (RFC 5280 §4.2.1.12). */
export const ExtendedKeyUsage = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;
