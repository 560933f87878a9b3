/**
 * Poll `check` every 20 ms until it holds; throw `timed out waiting for <what>` after `ms`.
 * For what a test cannot await directly (a probe's verdict, a log line, a key in Redis).
 *
 * @example
 * ```ts
 * await waitFor(() => api.requests.length > 0, 'the first health check');
 * ```
 */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
