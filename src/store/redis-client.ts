import { createRequire } from 'node:module';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';

const require = createRequire(import.meta.url);

/**
 * ioredis, loaded on the first Redis client: a gateway whose config names no Redis never loads
 * it (its modules keep about 2.4 MB on the V8 heap for the life of the process, and every major
 * GC marks them).
 */
function ioredis(): typeof import('ioredis') {
  return require('ioredis') as typeof import('ioredis');
}

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
  const { Redis, Cluster } = ioredis();
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
