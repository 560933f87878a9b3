import cluster, { type Worker } from 'node:cluster';
import { askPrimary, askWorker, sendToWorker } from './cluster-ipc.js';

/**
 * `/readyz` across the workers of `gatehouse start --workers N`.
 *
 * Every worker serves the admin port, so a probe lands on one of them, and the primary hands
 * client connections to every worker that listens. One worker that cannot serve (its JWK Set
 * not fetched yet after a respawn, say) fails the requests it is handed while a probe answered
 * by another worker says "ready". So in a gatehouse cluster the worker that takes
 * the probe asks the primary, the primary asks every worker that listens, and the answer is
 * ready only when each of them answered ready in time: a worker that does not answer within
 * {@link ASK_TIMEOUT_MS} counts as not ready. `/healthz` (the process is up) stays per worker.
 */

/** One worker's own readiness, as its `/readyz` reports it. */
export interface WorkerReadiness {
  readonly ready: boolean;
  readonly listeners: 'bound' | 'not bound';
  readonly details: Record<string, unknown>;
}

/** The whole cluster's: ready when every listening worker is; each worker's report by pid. */
export interface ClusterReadiness {
  readonly ready: boolean;
  readonly workers: Record<string, WorkerReadiness | { ready: false; details: { error: string } }>;
}

const PROBE = 'gatehouse:readyz-req';
const PROBE_ANSWER = 'gatehouse:readyz-res';
const ASK = 'gatehouse:readyz-ask';
const ASK_ANSWER = 'gatehouse:readyz-report';
/** How long the primary waits for each worker's report. */
export const ASK_TIMEOUT_MS = 800;
/** How long a worker waits for the primary's merged answer (longer than the primary waits). */
const PROBE_TIMEOUT_MS = 1_500;

interface Message {
  type?: string;
  id?: number;
  report?: WorkerReadiness;
  readiness?: ClusterReadiness;
}

/** What this worker answers when the primary asks (the latest gateway started in the process); null until one is. */
let answerWith: (() => WorkerReadiness) | null = null;

/**
 * In a worker: answer the primary's questions with `local()`, and return a function that gets
 * the cluster's readiness through the primary (null when the primary did not answer in time).
 *
 * @example
 * ```ts
 * const clusterReadiness = workerReadiness(() => ({ ready: true, listeners: 'bound', details: {} }));
 * const merged = await clusterReadiness(); // { ready: true, workers: { '4242': {…}, '4243': {…} } }
 * ```
 */
export function workerReadiness(local: () => WorkerReadiness): () => Promise<ClusterReadiness | null> {
  // One listener for the life of the process; a gateway started again in it answers with its own state.
  if (answerWith === null) {
    process.on('message', (message: Message) => {
      if (message?.type !== ASK) return;
      let report: WorkerReadiness;
      try {
        report = answerWith!();
      } catch (err) {
        report = { ready: false, listeners: 'not bound', details: { error: (err as Error).message } };
      }
      process.send?.({ type: ASK_ANSWER, id: message.id, report } satisfies Message);
    });
  }
  answerWith = local;
  return async () => (await askPrimary<Message>(PROBE, PROBE_ANSWER, PROBE_TIMEOUT_MS))?.readiness ?? null;
}

/**
 * In the primary: answer each worker's probe with every listening worker's readiness.
 * `listening()` gives the workers that listen (the ones the primary hands connections to).
 *
 * @example
 * ```ts
 * serveClusterReadiness(() => liveWorkers.filter((w) => listened.has(w)));
 * ```
 */
export function serveClusterReadiness(listening: () => Worker[]): void {
  cluster.on('message', (worker: Worker, message: Message) => {
    if (message?.type !== PROBE) return;
    void Promise.all(
      listening().map(async (w): Promise<[string, ClusterReadiness['workers'][string]]> => {
        const pid = String(w.process.pid);
        const reply = await askWorker<Message>(w, ASK, ASK_ANSWER, ASK_TIMEOUT_MS);
        return [pid, reply?.report ?? { ready: false, details: { error: `no answer within ${ASK_TIMEOUT_MS} ms` } }];
      }),
    ).then((entries) => {
      const readiness: ClusterReadiness = {
        ready: entries.length > 0 && entries.every(([, r]) => r.ready),
        workers: Object.fromEntries(entries),
      };
      sendToWorker(worker, { type: PROBE_ANSWER, id: message.id, readiness } satisfies Message);
    });
  });
}
