// Types for the parts of @agoric/xsnap 0.15 and tmp the XS runner uses (neither ships declarations); shapes from
// node_modules/@agoric/xsnap/src/xsnap.js (its JSDoc) and tmp's README.
declare module '@agoric/xsnap' {
  import type { spawn } from 'node:child_process';

  /** What every worker call resolves with. */
  export interface RunResult<T> {
    reply: T;
  }

  /** An xsnap worker process. */
  export interface XsnapWorker {
    evaluate(code: string): Promise<RunResult<Uint8Array>>;
    issueCommand(message: Uint8Array): Promise<RunResult<Uint8Array>>;
    issueStringCommand(message: string): Promise<RunResult<string>>;
    close(): Promise<void>;
    terminate(): Promise<void>;
  }

  export interface XsnapOptions {
    os: string;
    spawn: typeof spawn;
    fs: object;
    name?: string;
    handleCommand?: (request: Uint8Array) => Promise<Uint8Array>;
    stdout?: 'ignore' | 'inherit' | 'pipe';
    stderr?: 'ignore' | 'inherit' | 'pipe';
    meteringLimit?: number;
  }

  export function xsnap(options: XsnapOptions): Promise<XsnapWorker>;
}

declare module 'tmp' {
  const tmp: { tmpName(callback: (error: Error | null, name: string) => void): void };
  export default tmp;
}
