/** Options every call accepts (STYLE: `{ signal?: AbortSignal }` on every async call). */
export interface CallOptions {
  /** Aborts the call; it then rejects with an AbortError. */
  signal?: AbortSignal;
}
