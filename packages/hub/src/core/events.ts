import { randomUUID } from 'node:crypto';
import type { CoreContext } from './context';
import { type BuiltInEndpoint, type EndpointEvent, type MessageSource, MessageSources } from './telemetry';

/**
 * Hub-generated events on the built-in endpoint, in Azure's shapes (protocol-service.md §5.5, §5.6): device
 * and module lifecycle, twin changes, connection state. The registry, twins and the device heads call these
 * after their own durable write; each resolves once the event is durable too.
 */

/** Which device (and module) an event is about. */
export interface EventIds {
  readonly deviceId: string;
  readonly moduleId?: string | undefined;
}

/** `opType` of lifecycle events (§5.6; modules use the same values plus the `moduleId` property). */
export type LifecycleOperation = 'createDeviceIdentity' | 'deleteDeviceIdentity';
/** `opType` of twin change events. */
export type TwinChangeOperation = 'updateTwin' | 'replaceTwin';
/** `opType` of connection state events. */
export type ConnectionStateOperation = 'deviceConnected' | 'deviceDisconnected';

const textEncoder = new TextEncoder();

/**
 * An ISO 8601 UTC time with 7 fractional digits, as Azure writes `operationTimestamp` (.NET ticks precision):
 * `2022-06-01T22:27:50.2612586Z`. Milliseconds are all we have, so the last four digits are zeros.
 */
export function isoWithTicks(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');
}

/** Appends hub-generated events to the built-in endpoint. */
export class HubEvents {
  // Last issued connection-state tick; see connectionStateSequenceNumber.
  private lastTick = 0n;
  private counter = 0n;

  constructor(
    private readonly ctx: CoreContext,
    private readonly endpoint: BuiltInEndpoint,
  ) {}

  /** A device or module identity was created or deleted; `twin` is its twin as Azure sends it (§5.6). */
  deviceLifecycle(op: LifecycleOperation, twin: unknown, ids: EventIds): Promise<EndpointEvent> {
    return this.emit(MessageSources.DeviceLifecycleEvents, 'deviceLifecycleNotification', op, ids, twin);
  }

  /** A twin was patched (`body` = the changed parts) or replaced (`body` = the full twin) (§5.6). */
  twinChanged(op: TwinChangeOperation, ids: EventIds, body: unknown): Promise<EndpointEvent> {
    return this.emit(MessageSources.TwinChangeEvents, 'twinChangeNotification', op, ids, body);
  }

  /**
   * A device (or module) connected or disconnected. The body carries `sequenceNumber`, a 64-hex-character
   * string that increases strictly (compared as a string) so consumers can order connect/disconnect pairs.
   */
  connectionState(op: ConnectionStateOperation, ids: EventIds): Promise<EndpointEvent> {
    return this.emit(MessageSources.DeviceConnectionStateEvents, 'deviceConnectionStateNotification', op, ids, {
      sequenceNumber: this.connectionStateSequenceNumber(),
    });
  }

  private emit(
    source: MessageSource,
    schema: string,
    opType: string,
    ids: EventIds,
    body: unknown,
  ): Promise<EndpointEvent> {
    const properties: Record<string, string> = {
      hubName: this.ctx.hubName,
      deviceId: ids.deviceId,
      operationTimestamp: isoWithTicks(this.ctx.now()),
      opType,
      'iothub-message-schema': schema,
    };
    if (ids.moduleId !== undefined) properties.moduleId = ids.moduleId;
    return this.endpoint.append({
      deviceId: ids.deviceId,
      moduleId: ids.moduleId,
      body: textEncoder.encode(JSON.stringify(body)),
      properties,
      correlationId: randomUUID(),
      userId: this.ctx.hubName,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      source,
    });
  }

  /**
   * Azure's value looks like `000000000000000001D8713FF7E08514` + 32 more hex digits (§5.6). Fieldhub writes
   * 32 hex digits of a monotonic tick (100 ns units since the Unix epoch, never repeating in this process and
   * increasing across restarts with the clock) followed by 32 hex digits of a per-process counter. Strictly
   * increasing within a process; across processes it is as ordered as their clocks.
   */
  private connectionStateSequenceNumber(): string {
    const tick = BigInt(Math.trunc(this.ctx.now())) * 10_000n;
    this.lastTick = tick > this.lastTick ? tick : this.lastTick + 1n;
    this.counter += 1n;
    return (
      this.lastTick.toString(16).toUpperCase().padStart(32, '0') +
      this.counter.toString(16).toUpperCase().padStart(32, '0')
    );
  }
}
