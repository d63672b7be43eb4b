/**
 * Runs operations on one key one after another in this process, each after the previous one settled (whether it
 * resolved or rejected). Across processes the store's compare-and-set guards; this avoids needless conflicts between
 * concurrent operations here. Keys are forgotten once their last operation settled.
 */
export class KeyedSerial {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `operation` after every earlier operation on `key`; settles as it does. */
  run<T>(key: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const run = previous.then(operation, operation);
    const tail = run.catch(() => undefined);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return run;
  }
}
