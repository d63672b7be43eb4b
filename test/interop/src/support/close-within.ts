/**
 * Runs cleanup steps in reverse order of registration, giving each at most `timeoutMs`: a client stuck in a
 * handshake must not keep the hub (and its ports) alive past the suite. Failures are ignored (cleanup is best
 * effort); `closers` is emptied.
 */
export async function closeWithin(closers: (() => Promise<unknown>)[], timeoutMs = 10_000): Promise<void> {
  for (const close of closers.splice(0).reverse()) {
    let timer: NodeJS.Timeout | undefined;
    const giveUp = new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([close().catch(() => undefined), giveUp]);
    clearTimeout(timer);
  }
}
