/**
 * `service.query(text)`: the IoT Hub query language over twins (`POST /devices/query`, protocol-service.md
 * §2.10). Pages follow `x-ms-continuation` until the hub leaves it out.
 */
import { ArgumentError } from '@fieldhub/protocol';
import type { HttpClient } from './http-client';
import type { CallOptions } from './options';

/** Options of a query. */
export interface QueryOptions extends CallOptions {
  /** Items per page (`x-ms-max-item-count`); the hub's default is 100, its maximum 1000. */
  pageSize?: number;
  /** Resume from a page's `continuationToken`. */
  continuationToken?: string;
}

/** One page of results. */
export interface QueryPage<T> {
  readonly items: T[];
  /** `twin`, `deviceJob`, `jobResponse` or `raw` (`x-ms-item-type`), when the hub says. */
  readonly itemType: string | undefined;
  /** The token of the next page; `undefined` on the last page. */
  readonly continuationToken: string | undefined;
}

/**
 * The results of a query: iterate it for every item across all pages, or `pages()` for page-wise access. Pages are
 * fetched lazily, one at a time, as iteration proceeds; each iteration starts over from the first page.
 */
export class QueryResult<T = Record<string, unknown>> implements AsyncIterable<T> {
  /** @internal */
  constructor(
    private readonly http: HttpClient,
    private readonly text: string,
    private readonly options: QueryOptions,
  ) {
    if (typeof text !== 'string' || text.trim() === '') {
      throw new ArgumentError('query text must be a non-empty string', { field: 'query' });
    }
    const { pageSize } = options;
    if (pageSize !== undefined && (!Number.isInteger(pageSize) || pageSize < 1)) {
      throw new ArgumentError('pageSize must be a positive integer', { field: 'pageSize' });
    }
  }

  /**
   * Iterates the pages.
   * @throws HubError from the hub (ArgumentError for a query it cannot parse); AbortError when the signal aborts.
   */
  async *pages(): AsyncGenerator<QueryPage<T>, void, undefined> {
    let continuation = this.options.continuationToken;
    do {
      const page = await this.fetchPage(continuation);
      continuation = page.continuationToken;
      yield page;
    } while (continuation !== undefined);
  }

  /** Iterates every item of every page. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const page of this.pages()) yield* page.items;
  }

  /** Collects every item into an array (convenient for small results). */
  async toArray(): Promise<T[]> {
    const items: T[] = [];
    for await (const item of this) items.push(item);
    return items;
  }

  private async fetchPage(continuation: string | undefined): Promise<QueryPage<T>> {
    const headers: Record<string, string> = {};
    if (this.options.pageSize !== undefined) headers['x-ms-max-item-count'] = String(this.options.pageSize);
    if (continuation !== undefined) headers['x-ms-continuation'] = continuation;
    const { value, headers: answer } = await this.http.json<T[]>({
      method: 'POST',
      path: '/devices/query',
      json: { query: this.text },
      headers,
      signal: this.options.signal,
    });
    return {
      items: Array.isArray(value) ? value : [],
      itemType: header(answer['x-ms-item-type']),
      continuationToken: header(answer['x-ms-continuation']),
    };
  }
}

function header(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? undefined : text;
}
