import type { Serializable } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';

/**
 * Round trips between the primary and the workers of gatehouse's own cluster: one side sends
 * `{ type: request, id }`, the other answers `{ type: answer, id, … }`. Used by the merged
 * `/metrics` scrape (worker → primary) and the cluster-wide `/readyz` (worker → primary, then
 * primary → each worker); what each message carries lives with its feature.
 */

interface Answer {
  type?: string;
  id?: number;
}

/** Requests sent and not answered yet, each settled once: by its answer, or by its timeout (null). */
function exchanges<Peer>() {
  const waiting = new Map<number, { peer: Peer; type: string; resolve: (message: Answer | null) => void; timer: NodeJS.Timeout }>();
  let nextId = 0;
  return {
    /**
     * Register a request to `peer` answered by a message of type `answer`, then `send(id)` it; a
     * send that could not go (false: the channel is closed) settles it with null at once.
     */
    ask(peer: Peer, answer: string, timeoutMs: number, send: (id: number) => boolean): Promise<Answer | null> {
      return new Promise((resolve) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          waiting.delete(id);
          resolve(null);
        }, timeoutMs);
        timer.unref();
        waiting.set(id, { peer, type: answer, resolve, timer });
        if (!send(id)) {
          waiting.delete(id);
          clearTimeout(timer);
          resolve(null);
        }
      });
    },
    /** A message from `peer`: settles the request it answers, if any (a stray or late one is ignored). */
    settle(peer: Peer, message: Answer): void {
      const entry = typeof message?.id === 'number' ? waiting.get(message.id) : undefined;
      if (entry === undefined || entry.peer !== peer || entry.type !== message.type) return;
      waiting.delete(message.id!);
      clearTimeout(entry.timer);
      entry.resolve(message);
    },
  };
}

let toPrimary: ReturnType<typeof exchanges<null>> | null = null;
let toWorkers: ReturnType<typeof exchanges<Worker>> | null = null;

/**
 * In a worker: send `{ type: request, id }` to the primary and resolve with its
 * `{ type: answer, id, … }` message, or with null when none came within `timeoutMs` (at once
 * when this process has no IPC channel, or it is closed).
 *
 * @example
 * ```ts
 * const reply = await askPrimary<{ text?: string }>('gatehouse:metrics-req', 'gatehouse:metrics-res', 6_000);
 * ```
 */
export function askPrimary<T extends object>(request: string, answer: string, timeoutMs: number): Promise<(T & Answer) | null> {
  if (typeof process.send !== 'function') return Promise.resolve(null);
  if (toPrimary === null) {
    const exchange = (toPrimary = exchanges<null>());
    process.on('message', (message: Answer) => exchange.settle(null, message));
  }
  const send = (id: number) => guardedSend(process.connected === true, () => process.send!({ type: request, id }));
  return toPrimary.ask(null, answer, timeoutMs, send) as Promise<(T & Answer) | null>;
}

/**
 * In the primary: send `{ type: request, id }` to `worker` and resolve with its
 * `{ type: answer, id, … }` message, or with null when none came within `timeoutMs` (a worker
 * that is disconnected, busy or stopped).
 *
 * @example
 * ```ts
 * const reply = await askWorker<{ report?: WorkerReadiness }>(worker, 'gatehouse:readyz-ask', 'gatehouse:readyz-report', 800);
 * ```
 */
export function askWorker<T extends object>(worker: Worker, request: string, answer: string, timeoutMs: number): Promise<(T & Answer) | null> {
  if (toWorkers === null) {
    const exchange = (toWorkers = exchanges<Worker>());
    cluster.on('message', (from: Worker, message: Answer) => exchange.settle(from, message));
  }
  return toWorkers.ask(worker, answer, timeoutMs, (id) => sendToWorker(worker, { type: request, id })) as Promise<(T & Answer) | null>;
}

/**
 * In the primary: send `message` to `worker` if its IPC channel is open. False when it is not,
 * or closed in between (the worker is exiting; its `exit` event follows): never a throw, and
 * never the asynchronous `error` a send on a closed channel emits.
 *
 * @example
 * ```ts
 * sendToWorker(worker, 'gatehouse:reload'); // false for a worker that is going away
 * ```
 */
export function sendToWorker(worker: Worker, message: Serializable): boolean {
  return guardedSend(worker.isConnected(), () => worker.send(message));
}

/**
 * One IPC send, either way (worker → primary, primary → worker): not tried on a closed channel,
 * where `send` would emit an asynchronous `error` the caller cannot catch; false when it was
 * closed or closed in between (a throw).
 */
function guardedSend(open: boolean, send: () => void): boolean {
  if (!open) return false;
  try {
    send();
    return true;
  } catch {
    return false;
  }
}
