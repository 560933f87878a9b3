import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisStore, type RedisStore } from '../../src/limit/redis.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis.js';

let cluster: TestRedisCluster;
let store: RedisStore;

beforeAll(async () => {
  cluster = await startRedisCluster();
  store = createRedisStore({ url: cluster.url, cluster: true, keyPrefix: 'c:', timeout: 2000, log: pino({ level: 'silent' }), metrics: createMetrics() });
  await store.start();
  const until = Date.now() + 10_000;
  while (store.status() !== 'ready') {
    if (Date.now() > until) throw new Error(`cluster client not ready: ${store.status()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}, 60_000);

afterAll(async () => {
  await store?.close();
  await cluster?.stop();
});

describe('limits on a Redis Cluster', () => {
  it('keeps exact GCRA and quota semantics for keys spread over every master', async () => {
    let now = Date.UTC(2026, 11, 4, 12);
    const s = createRedisStore({ url: cluster.url, cluster: true, keyPrefix: 'exact:', timeout: 2000, log: pino({ level: 'silent' }), metrics: createMetrics(), now: () => now });
    await s.start();
    try {
      while (s.status() !== 'ready') await new Promise((r) => setTimeout(r, 50));
      const limiter = s.rateLimiter({ name: 'p', limit: 3, window: 1000, burst: 3 }, 'failClosed');
      const quota = s.quota({ name: 'q', limit: 2, period: 'day' }, 'failClosed');
      const keys = Array.from({ length: 30 }, (_, i) => `client-${i}`);
      for (const key of keys) {
        // Sent together: the cluster client may reorder them (a node's first EVALSHA falls back to EVAL).
        const decisions = await Promise.all([1, 2, 3, 4].map(() => limiter.consume(key)));
        expect(decisions.filter((d) => d.allowed)).toHaveLength(3);
        expect(decisions.every((d) => !d.storeError)).toBe(true);
        const q = [await quota.consume(key), await quota.consume(key), await quota.consume(key)];
        expect(q.map((d) => d.allowed)).toEqual([true, true, false]);
      }
      now += 334;
      expect((await limiter.consume('client-0')).allowed).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('spreads buckets over the masters (hash tags per bucket, one key per script)', async () => {
    const limiter = store.rateLimiter({ name: 'spread', limit: 10, window: 60_000, burst: 10 }, 'failClosed');
    await Promise.all(Array.from({ length: 60 }, (_, i) => limiter.consume(`k${i}`)));
    const nodes = cluster.ports.map((port) => new Redis({ port, host: '127.0.0.1', lazyConnect: true }));
    try {
      const perMaster = await Promise.all(nodes.map(async (node) => (await node.connect(), node.keys('c:{rl:spread:*'))));
      expect(perMaster.flat()).toHaveLength(60);
      expect(perMaster.filter((keys) => keys.length > 0)).toHaveLength(3);
    } finally {
      for (const node of nodes) node.disconnect();
    }
  });
});
