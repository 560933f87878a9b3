import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/**
 * One Redis connection, or a Redis Cluster client when `cluster` is set (then `url` names one node
 * and the rest are discovered). The options are a single node's; for a cluster, the
 * offline-queue, lazy-connect and retry settings apply to the cluster client and the credentials
 * and TLS of the URL to every node. Shared by the rate-limit store and the introspection cache.
 *
 * @example
 * ```ts
 * const client = createRedisClient('redis://127.0.0.1:6379', false, { enableOfflineQueue: false });
 * ```
 */
export function createRedisClient(url: string, cluster: boolean, options: RedisOptions): Redis | Cluster {
  if (!cluster) return new Redis(url, options);
  const parsed = new URL(url);
  const { enableOfflineQueue, retryStrategy, lazyConnect, ...nodeOptions } = options;
  const clusterOptions: ClusterOptions = {
    enableOfflineQueue,
    lazyConnect,
    clusterRetryStrategy: retryStrategy ?? undefined,
    redisOptions: {
      ...nodeOptions,
      ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
      ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
      ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  };
  return new Cluster([{ host: parsed.hostname, port: Number(parsed.port || 6379) }], clusterOptions);
}
