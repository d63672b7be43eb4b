/**
 * Direct methods: a registry of handlers by method name. Like the Azure SDKs (C#: `MethodResponseStatusCode`
 * `MethodNotImplemented = 501`, `UserCodeException = 500`), a request for a method with no handler is answered
 * 501 and a handler that throws (or answers something that is not a response) is answered 500, so the service
 * caller gets an answer instead of a timeout. One default handler may take every method without a handler of its
 * own (C#'s `SetMethodDefaultHandlerAsync`; the C SDK's device-method callback gets every method): for code that
 * learns method names at run time, such as a gateway forwarding them to the devices behind it.
 */
import type { ConnectionFeature, ConnectionManager } from './connection-manager';
import { ArgumentError } from './errors';
import type { IncomingMethodRequest, Transport } from './transport/transport';

/** A direct-method request as a handler sees it. */
export interface DirectMethodRequest {
  readonly methodName: string;
  readonly requestId: string;
  /** The JSON payload, parsed; `null` when the caller sent none. */
  readonly payload: unknown;
  /** Aborts when the client closes: the response could not be sent any more. */
  readonly signal: AbortSignal;
}

/** What a handler answers: a status (passed to the service caller as is) and a JSON payload. */
export interface DirectMethodResponse {
  /** An integer; 200 for success by convention. */
  readonly status: number;
  /** Any JSON value; default `null`. */
  readonly payload?: unknown;
}

/** Handles one direct method. */
export type DirectMethodHandler = (
  request: DirectMethodRequest,
) => DirectMethodResponse | Promise<DirectMethodResponse>;

/** The status answered when no handler is registered for a method. */
export const methodNotImplementedStatus = 501;
/** The status answered when a handler throws or answers something that is not a response. */
export const methodHandlerErrorStatus = 500;

/** The direct-methods feature of a client. */
export class DirectMethods implements ConnectionFeature {
  readonly #manager: ConnectionManager;
  readonly #handlers = new Map<string, DirectMethodHandler>();
  #defaultHandler: DirectMethodHandler | undefined;
  #wanted = false;

  constructor(manager: ConnectionManager) {
    this.#manager = manager;
    manager.addFeature(this);
    manager.setIncomingHandlers({ methodRequest: (request) => void this.#handle(request) });
  }

  /**
   * See `DeviceClient.onDirectMethod`.
   *
   * @throws UnsupportedFeatureError when the transport has no direct methods; ArgumentError when `methodName` is
   * empty, `handler` is not a function, or a handler is registered for that name already.
   */
  on(methodName: string, handler: DirectMethodHandler): () => void {
    this.#manager.requireCapability(this.#manager.capabilities.directMethods, 'direct methods');
    if (typeof methodName !== 'string' || methodName === '') {
      throw new ArgumentError('methodName must be a non-empty string', { field: 'methodName' });
    }
    if (typeof handler !== 'function') throw new ArgumentError('handler must be a function', { field: 'handler' });
    if (this.#handlers.has(methodName)) {
      throw new ArgumentError(`a handler for '${methodName}' is registered already`, { field: 'methodName' });
    }
    this.#handlers.set(methodName, handler);
    this.#subscribe();
    return () => {
      if (this.#handlers.get(methodName) === handler) this.#handlers.delete(methodName);
    };
  }

  /**
   * See `DeviceClient.onDefaultDirectMethod`.
   *
   * @throws UnsupportedFeatureError when the transport has no direct methods; ArgumentError when `handler` is not a
   * function or a default handler is registered already.
   */
  onDefault(handler: DirectMethodHandler): () => void {
    this.#manager.requireCapability(this.#manager.capabilities.directMethods, 'direct methods');
    if (typeof handler !== 'function') throw new ArgumentError('handler must be a function', { field: 'handler' });
    if (this.#defaultHandler !== undefined) {
      throw new ArgumentError('a default direct-method handler is registered already', { field: 'handler' });
    }
    this.#defaultHandler = handler;
    this.#subscribe();
    return () => {
      if (this.#defaultHandler === handler) this.#defaultHandler = undefined;
    };
  }

  #subscribe(): void {
    if (this.#wanted) return;
    this.#wanted = true;
    // Subscribing is per connection; onConnected does it on every later one.
    this.#manager
      .whenConnected((transport, signal) => transport.enableDirectMethods({ signal }))
      .catch((error: unknown) => this.#manager.reportError(error, 'could not enable direct methods'));
  }

  /** @internal */
  async onConnected(transport: Transport, signal: AbortSignal): Promise<void> {
    if (this.#wanted) await transport.enableDirectMethods({ signal });
  }

  /** @internal */
  onClose(): void {
    this.#handlers.clear();
    this.#defaultHandler = undefined;
  }

  async #handle(request: IncomingMethodRequest): Promise<void> {
    const handler = this.#handlers.get(request.methodName) ?? this.#defaultHandler;
    let status: number;
    let payload: unknown;
    if (!handler) {
      status = methodNotImplementedStatus;
      payload = { message: `method '${request.methodName}' is not implemented` };
    } else {
      try {
        const response = await handler({
          methodName: request.methodName,
          requestId: request.requestId,
          payload: request.payload,
          signal: this.#manager.closedSignal,
        });
        if (typeof response !== 'object' || response === null || !Number.isInteger(response.status)) {
          throw new ArgumentError('a method handler must answer { status: integer, payload? }', { field: 'status' });
        }
        status = response.status;
        payload = response.payload ?? null;
      } catch (error) {
        // The error stays on the device (logged): its text is not the service caller's business.
        this.#manager.logger.warn?.('a direct-method handler failed', { methodName: request.methodName, error });
        status = methodHandlerErrorStatus;
        payload = { message: `method '${request.methodName}' failed` };
      }
    }
    try {
      await this.#manager.ifConnected((transport, signal) =>
        transport.sendMethodResponse(request.requestId, status, payload, { signal }),
      );
    } catch (error) {
      this.#manager.logger.warn?.('could not send a direct-method response', { methodName: request.methodName, error });
    }
  }
}
