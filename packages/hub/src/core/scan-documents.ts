import type { StoredDocument } from '../store/store';
import type { CoreContext } from './context';

const pageSize = 256;

/** Every document of a collection in key order, read a page at a time so that memory stays bounded. */
export async function* scanDocuments<T>(ctx: CoreContext, collection: string): AsyncGenerator<StoredDocument<T>> {
  let after: string | undefined;
  for (;;) {
    const page = await ctx.store.documents.list<T>(ctx.hubName, collection, {
      limit: pageSize,
      ...(after === undefined ? {} : { after }),
    });
    for (const document of page) yield document;
    const last = page.at(-1);
    if (!last || page.length < pageSize) return;
    after = last.key;
  }
}
