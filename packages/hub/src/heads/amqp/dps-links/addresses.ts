/**
 * The link address of a device registration (protocol-device.md §5.3): `{idScope}/registrations/{registrationId}`,
 * the same for the device's sender (requests) and its receiver (responses). The Node SDK sends it bare, the C SDK
 * as `amqps://{host}/{idScope}/registrations/{registrationId}`; a leading `/` is accepted too.
 */

/** A parsed registration address. */
export interface RegistrationAddress {
  readonly idScope: string;
  readonly registrationId: string;
}

function decodeSegment(segment: string | undefined): string | undefined {
  if (segment === undefined || segment === '') return undefined;
  try {
    const decoded = decodeURIComponent(segment);
    return decoded === '' || decoded.includes('/') ? undefined : decoded;
  } catch {
    return undefined;
  }
}

/** Parses a registration address; undefined when the address names no registration. */
export function parseRegistrationAddress(address: string): RegistrationAddress | undefined {
  let path = address;
  const scheme = /^amqps?:\/\/[^/]*/i.exec(path);
  if (scheme) path = path.slice(scheme[0].length);
  const query = path.indexOf('?');
  if (query >= 0) path = path.slice(0, query);
  const segments = path.split('/');
  if (segments[0] === '') segments.shift();
  if (segments.length === 4 && segments[3] === '') segments.pop();
  if (segments.length !== 3 || segments[1]?.toLowerCase() !== 'registrations') return undefined;
  const idScope = decodeSegment(segments[0]);
  const registrationId = decodeSegment(segments[2]);
  if (idScope === undefined || registrationId === undefined) return undefined;
  return { idScope, registrationId };
}

/** Whether `a` and `b` are the same registration (DPS compares ID scopes and registration ids without case). */
export function sameRegistration(
  a: { readonly idScope: string; readonly registrationId: string },
  b: { readonly idScope: string; readonly registrationId: string },
): boolean {
  return (
    a.idScope.toLowerCase() === b.idScope.toLowerCase() &&
    a.registrationId.toLowerCase() === b.registrationId.toLowerCase()
  );
}
