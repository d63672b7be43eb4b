/**
 * Device link addresses (protocol-device.md §3.3, §3.7): which device or module a link address names, and what it
 * is for. Pure.
 *
 * Leniency, as §0.1 asks: literal segments match case-insensitively (`devicebound` / `deviceBound`), ids are
 * URL-decoded (`%2F` and friends), an `amqps://host[:port]` prefix, a trailing slash and a query string are
 * ignored. Decisions where the reference is silent: an id that does not URL-decode, or is empty, makes the
 * address not ours (the connection layer answers `amqp:not-found`).
 */

/** What a device link address names. */
export type DeviceLinkKind =
  /** `/devices/{d}/messages/events` or `/devices/{d}/modules/{m}/messages/events`. */
  | 'events'
  /** `/devices/{d}/messages/devicebound` or `/devices/{d}/modules/{m}/messages/devicebound`. */
  | 'devicebound'
  /** `/devices/{d}/twin` or `/devices/{d}/modules/{m}/twin`. */
  | 'twin'
  /** `/devices/{d}/methods/devicebound` or `/devices/{d}/modules/{m}/methods/devicebound`. */
  | 'methods';

/** A parsed device link address. */
export interface DeviceAddress {
  readonly kind: DeviceLinkKind;
  readonly deviceId: string;
  readonly moduleId: string | undefined;
}

function decodeId(segment: string | undefined): string | undefined {
  if (segment === undefined || segment === '') return undefined;
  try {
    const id = decodeURIComponent(segment);
    return id === '' ? undefined : id;
  } catch {
    return undefined;
  }
}

/** The path of an address: without `amqps://host`, query string and trailing slashes. */
function pathOf(address: string): string {
  let path = address;
  const scheme = /^amqps?:\/\/[^/]*/i.exec(path);
  if (scheme) path = path.slice(scheme[0].length);
  const query = path.indexOf('?');
  if (query >= 0) path = path.slice(0, query);
  while (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  return path;
}

/** Parses a device link address; undefined when it names no device link. */
export function parseDeviceAddress(address: string): DeviceAddress | undefined {
  const segments = pathOf(address).split('/');
  // A leading slash gives an empty first segment; Azure's addresses have one, some clients omit it.
  if (segments[0] === '') segments.shift();
  if (segments.length < 3 || segments[0]?.toLowerCase() !== 'devices') return undefined;
  const deviceId = decodeId(segments[1]);
  if (deviceId === undefined) return undefined;
  let rest = segments.slice(2).map((segment) => segment.toLowerCase());
  let moduleId: string | undefined;
  if (rest[0] === 'modules') {
    moduleId = decodeId(segments[3]);
    if (moduleId === undefined) return undefined;
    rest = rest.slice(2);
  }
  const tail = rest.join('/');
  switch (tail) {
    case 'messages/events':
      return { kind: 'events', deviceId, moduleId };
    case 'messages/devicebound':
      return { kind: 'devicebound', deviceId, moduleId };
    case 'twin':
      return { kind: 'twin', deviceId, moduleId };
    case 'methods/devicebound':
      return { kind: 'methods', deviceId, moduleId };
    default:
      return undefined;
  }
}
