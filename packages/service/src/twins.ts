/**
 * Device and module twins (`service.twins`, protocol-service.md §2.8): read, merge-patch, replace.
 */
import { ArgumentError } from '@fieldhub/protocol';
import { type HttpClient, quoteEtag, segment } from './http-client';
import type { CallOptions } from './options';
import type { Twin, TwinPatch } from './types';

/** Options naming a module twin. */
export interface TwinOptions extends CallOptions {
  /** Read or write the twin of this module of the device. */
  moduleId?: string;
}

/** Options of a twin write: `etag` makes it conditional (412001 when stale); without, it is unconditional. */
export interface TwinWriteOptions extends TwinOptions {
  etag?: string;
}

/** Device and module twins. */
export class Twins {
  /** @internal */
  constructor(private readonly http: HttpClient) {}

  /**
   * Reads a twin.
   * @throws HubError DeviceNotFound (404001) or ModuleNotFound (404010).
   */
  async get(deviceId: string, options: TwinOptions = {}): Promise<Twin> {
    const { value } = await this.http.json<Twin>({
      method: 'GET',
      path: twinPath(deviceId, options.moduleId),
      signal: options.signal,
    });
    return value;
  }

  /**
   * Merges `patch` into the twin's tags and desired properties (JSON merge: `null` deletes a key).
   * @returns the whole twin after the change.
   * @throws HubError PreconditionFailed (412001) for a stale `etag`; DeviceNotFound (404001); ArgumentError for
   * keys or values the twin rules refuse.
   */
  async patch(deviceId: string, patch: TwinPatch, options: TwinWriteOptions = {}): Promise<Twin> {
    return this.write('PATCH', deviceId, patch, options);
  }

  /**
   * Replaces the twin's tags and desired properties with `twin`'s (reported properties stay the device's).
   * @returns the whole twin after the change.
   * @throws as {@link Twins.patch}.
   */
  async replace(deviceId: string, twin: TwinPatch, options: TwinWriteOptions = {}): Promise<Twin> {
    return this.write('PUT', deviceId, twin, options);
  }

  private async write(
    method: 'PATCH' | 'PUT',
    deviceId: string,
    body: TwinPatch,
    options: TwinWriteOptions,
  ): Promise<Twin> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ArgumentError('a twin patch must be an object with tags and/or properties.desired', {
        field: 'patch',
      });
    }
    const { value } = await this.http.json<Twin>({
      method,
      path: twinPath(deviceId, options.moduleId),
      json: body,
      headers: { 'if-match': quoteEtag(options.etag ?? '*') },
      signal: options.signal,
    });
    return value;
  }
}

function twinPath(deviceId: string, moduleId: string | undefined): string {
  const base = `/twins/${segment(deviceId)}`;
  return moduleId === undefined ? base : `${base}/modules/${segment(moduleId)}`;
}
