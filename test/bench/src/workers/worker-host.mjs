// The worker side of processes.mjs's startWorker(): one command at a time over IPC, answered with
// `{ ok: true, ...result }` or `{ ok: false, error }`.
export function serve(handlers) {
  process.on('message', async (message) => {
    const handler = handlers[message.type];
    try {
      if (!handler) throw new Error(`unknown command ${message.type}`);
      const result = (await handler(message)) ?? {};
      process.send({ ok: true, ...result });
    } catch (error) {
      process.send({ ok: false, error: error instanceof Error ? error.message : String(error) });
    }
  });
  process.on('SIGTERM', () => process.exit(0));
}

/** Runs `task(item)` over `items` with at most `concurrency` in flight. */
export async function eachLimited(items, concurrency, task) {
  const results = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
  return results;
}
