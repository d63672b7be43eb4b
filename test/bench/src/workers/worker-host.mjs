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
