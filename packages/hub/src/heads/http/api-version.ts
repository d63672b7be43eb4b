import { HubError } from '@fieldhub/protocol';
import type { FastifyRequest } from 'fastify';

/**
 * Every Azure REST call carries `?api-version=`; Azure answers 400 InvalidProtocolVersion without one
 * (protocol-service.md §2.1). Any value is accepted: the SDKs in the field send several.
 * @throws HubError InvalidProtocolVersion when the query parameter is missing or empty.
 */
export function requireApiVersion(request: FastifyRequest): string {
  const query = request.query as Record<string, unknown> | undefined;
  const value = query?.['api-version'];
  if (typeof value !== 'string' || value === '') {
    throw new HubError('InvalidProtocolVersion', 'The api-version query parameter is required');
  }
  return value;
}
