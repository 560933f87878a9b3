import { createRequire } from 'node:module';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

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

/**
 * A client for a cache beside the request path (the introspection cache, the DPoP replay
 * memory): commands fail fast instead of queueing while Redis is away (no offline queue, one
 * retry, `timeout` per command), reconnects back off to 2 s, and its errors are logged at most
 * once every 10 s (ioredis repeats them while it reconnects).
 *
 * @example
 * ```ts
 * const client = failFastRedisClient(config.redis, log, 'introspection cache', { issuer: 'opaque' });
 * ```
 */
export function failFastRedisClient(
  config: { url: string; cluster?: boolean; timeout: number },
  log: Logger,
  what: string,
  fields: Record<string, unknown> = {},
): Redis | Cluster {
  const client = createRedisClient(config.url, config.cluster === true, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: config.timeout,
    connectTimeout: Math.max(1000, config.timeout),
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let lastError = 0;
  client.on('error', (err: Error) => {
    const now = Date.now();
    if (now - lastError > 10_000) log.warn({ err: err.message, ...fields }, `${what}: redis error`);
    lastError = now;
  });
  return client;
}
