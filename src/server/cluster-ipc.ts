/**
 * A worker's round trip to the primary of gatehouse's own cluster: send a request message, wait
 * for the answer with the same id. Used by the merged `/metrics` scrape and the cluster-wide
 * `/readyz` (the primary's side of each lives with its feature).
 */

interface Answer {
  type?: string;
  id?: number;
}

let waiting: Map<number, { type: string; resolve: (message: Answer | null) => void; timer: NodeJS.Timeout }> | null = null;
let nextId = 0;

/**
 * Send `{ type: request, id }` to the primary and resolve with its `{ type: answer, id, … }`
 * message, or with null when none came within `timeoutMs` (or this process has no IPC channel).
 *
 * @example
 * ```ts
 * const reply = await askPrimary<{ text?: string }>('gatehouse:metrics-req', 'gatehouse:metrics-res', 6_000);
 * ```
 */
export function askPrimary<T extends object>(request: string, answer: string, timeoutMs: number): Promise<(T & Answer) | null> {
  if (typeof process.send !== 'function') return Promise.resolve(null);
  if (waiting === null) {
    waiting = new Map();
    process.on('message', (message: Answer) => {
      const entry = typeof message?.id === 'number' ? waiting!.get(message.id) : undefined;
      if (entry === undefined || entry.type !== message.type) return;
      waiting!.delete(message.id!);
      clearTimeout(entry.timer);
      entry.resolve(message);
    });
  }
  return new Promise((resolve) => {
    const id = nextId++;
    const timer = setTimeout(() => {
      waiting!.delete(id);
      resolve(null);
    }, timeoutMs);
    timer.unref();
    waiting!.set(id, { type: answer, resolve: resolve as (message: Answer | null) => void, timer });
    process.send!({ type: request, id });
  });
}
