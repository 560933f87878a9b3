import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { askPrimary, sendToWorker } from '../server/cluster-ipc.js';

/**
 * Metrics across the workers of `gatehouse start --workers N`.
 *
 * Every worker serves the admin port (shared like the other listeners), so a scrape lands on one
 * of them. That worker asks the primary, the primary gathers every worker's registry through
 * prom-client's `AggregatorRegistry` (cluster IPC) and sends the merged text back: counters and
 * histograms are summed, gauges use the aggregator each declares. The primary marks its workers
 * with {@link CLUSTER_ENV}; a gateway embedded in someone else's cluster is not marked and
 * answers for itself.
 */
export const CLUSTER_ENV = 'GATEHOUSE_CLUSTER_METRICS';

const REQUEST = 'gatehouse:metrics-req';
const RESPONSE = 'gatehouse:metrics-res';
/** How long a worker waits for the primary's merged metrics (the primary waits 5 s for workers). */
const REPLY_TIMEOUT_MS = 6_000;

interface MetricsRequest {
  type: typeof REQUEST;
  id: number;
}
interface MetricsResponse {
  type: typeof RESPONSE;
  id: number;
  text?: string;
  error?: string;
}

/** Whether this process is a worker of gatehouse's own cluster. */
export function inGatehouseCluster(): boolean {
  return cluster.isWorker && process.env[CLUSTER_ENV] === '1' && typeof process.send === 'function';
}

/**
 * In a worker: answer the primary's requests for this registry's metrics, and return a
 * function that gets the merged metrics of every worker through the primary.
 *
 * @example
 * ```ts
 * const scrape = workerScrape(metrics.registry);
 * res.end(await scrape());
 * ```
 */
export function workerScrape(registry: Registry): () => Promise<string> {
  // Constructing it installs prom-client's worker-side listener; the registry is what it sends.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  return async () => {
    const reply = await askPrimary<MetricsResponse>(REQUEST, RESPONSE, REPLY_TIMEOUT_MS);
    if (reply === null) throw new Error('the primary did not send the merged metrics in time');
    if (typeof reply.text !== 'string') throw new Error(reply.error ?? 'no metrics from the primary');
    return reply.text;
  };
}

/**
 * In the primary: answer workers' requests with the merged metrics of every worker.
 *
 * @example
 * ```ts
 * serveMergedMetrics(); // before forking
 * ```
 */
export function serveMergedMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker: Worker, message: MetricsRequest) => {
    if (message?.type !== REQUEST) return;
    const reply = (body: Omit<MetricsResponse, 'type' | 'id'>) => {
      sendToWorker(worker, { type: RESPONSE, id: message.id, ...body } satisfies MetricsResponse);
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (err: Error) => reply({ error: err.message }),
    );
  });
}
