/**
 * The part of better-sqlite3's API the SQLite store uses. `@types/better-sqlite3` is not installed in this
 * workspace; this declaration mirrors its names (`Database.Database`, `Database.Statement`) so that it can be
 * deleted once the real types are added as a devDependency, without touching the store.
 */
declare module 'better-sqlite3' {
  namespace Database {
    interface RunResult {
      changes: number;
      lastInsertRowid: number | bigint;
    }
    interface Statement<P extends unknown[] = unknown[], R = unknown> {
      run(...params: P): RunResult;
      get(...params: P): R | undefined;
      all(...params: P): R[];
    }
    interface Transaction<F extends (...args: never[]) => unknown> {
      (...args: Parameters<F>): ReturnType<F>;
      immediate(...args: Parameters<F>): ReturnType<F>;
    }
    interface Options {
      readonly?: boolean;
      fileMustExist?: boolean;
      timeout?: number;
    }
    interface Database {
      readonly open: boolean;
      readonly inTransaction: boolean;
      readonly memory: boolean;
      readonly name: string;
      prepare<P extends unknown[] = unknown[], R = unknown>(source: string): Statement<P, R>;
      exec(source: string): this;
      pragma(source: string, options?: { simple?: boolean }): unknown;
      transaction<F extends (...args: never[]) => unknown>(fn: F): Transaction<F>;
      close(): this;
    }
  }
  const Database: new (filename?: string, options?: Database.Options) => Database.Database;
  export = Database;
}
