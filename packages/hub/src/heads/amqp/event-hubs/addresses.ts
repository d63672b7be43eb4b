/**
 * Addresses of the Event Hubs-compatible endpoint (protocol-service.md §4.1-4.2). The Event Hubs clients name the
 * event hub by its entity path (`{entityPath}/ConsumerGroups/{group}/Partitions/{n}`, management `$management`);
 * IoT Hub's own documentation names the endpoint `/messages/events/...`. Both are accepted, with or without a
 * leading slash, and as a full `amqps://host/...` URL (uamqp-based tools send the address that way).
 *
 * Decisions where the reference is silent:
 * - Segment names (`ConsumerGroups`, `Partitions`, `$management`) match case-insensitively, like Azure's addresses.
 * - Segments are URL-decoded (`%24Default`); a segment that does not decode is not ours.
 * - The entity path is kept as sent; the route compares it with the hub name when it authorizes the link, so that
 *   a wrong name gets `amqp:not-found` rather than "no route".
 */

/** The endpoint's own path, an alias for the entity path (protocol-service.md §4.1). */
const builtInEndpointPath = 'messages/events';

/** A partition receiver's address. */
export interface PartitionAddress {
  /** The entity path as sent: the hub name, or undefined for `/messages/events/...`. */
  readonly entityPath: string | undefined;
  readonly consumerGroup: string;
  /** The partition id as sent (validated by the route). */
  readonly partitionId: string;
}

/** A `$management` address. */
export interface ManagementAddress {
  /** The entity path as sent, or undefined for bare `$management` and `/messages/events/$management`. */
  readonly entityPath: string | undefined;
}

/** The path segments of an address, URL-decoded, without scheme, host and empty segments; undefined if undecodable. */
function segmentsOf(address: string): string[] | undefined {
  const path = address.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
  const segments: string[] = [];
  for (const raw of path.split('/')) {
    if (raw === '') continue;
    try {
      segments.push(decodeURIComponent(raw));
    } catch {
      return undefined;
    }
  }
  return segments;
}

/**
 * The entity path in front of the endpoint's own segments: `[]` is no entity path, `['messages', 'events']` is
 * IoT Hub's alias (also no entity path), one segment is an entity path; anything else is not ours.
 */
function entityOf(prefix: readonly string[]): { entityPath: string | undefined } | undefined {
  if (prefix.length === 0) return { entityPath: undefined };
  if (prefix.join('/').toLowerCase() === builtInEndpointPath) return { entityPath: undefined };
  if (prefix.length === 1) return { entityPath: prefix[0] };
  return undefined;
}

/** Parses `{entityPath}/ConsumerGroups/{group}/Partitions/{n}` (or `/messages/events/...`). */
export function parsePartitionAddress(address: string): PartitionAddress | undefined {
  const segments = segmentsOf(address);
  if (!segments || segments.length < 4) return undefined;
  const tail = segments.slice(-4);
  if (tail[0]?.toLowerCase() !== 'consumergroups' || tail[2]?.toLowerCase() !== 'partitions') return undefined;
  const entity = entityOf(segments.slice(0, -4));
  const consumerGroup = tail[1] as string;
  const partitionId = tail[3] as string;
  if (!entity) return undefined;
  return { entityPath: entity.entityPath, consumerGroup, partitionId };
}

/** Parses `$management`, `{entityPath}/$management` or `/messages/events/$management`. */
export function parseManagementAddress(address: string): ManagementAddress | undefined {
  const segments = segmentsOf(address);
  if (!segments || segments.length === 0) return undefined;
  if (segments[segments.length - 1]?.toLowerCase() !== '$management') return undefined;
  return entityOf(segments.slice(0, -1));
}

/** Whether an entity path names this hub (Event Hubs names are case-insensitive); no entity path always does. */
export function namesHub(entityPath: string | undefined, hubName: string): boolean {
  return entityPath === undefined || entityPath.toLowerCase() === hubName.toLowerCase();
}
