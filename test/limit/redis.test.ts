import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LimitDecision } from '../../src/limit/limiter.js';
import { createRedisStore, settleBatch, type RedisStore } from '../../src/limit/redis.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { freePort, startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: 'silent' });
let redis: TestRedis;
let admin: Redis;
const stores: RedisStore[] = [];

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
});

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  admin?.disconnect();
  await redis?.stop();
});

async function store(options: { now?: () => number; timeout?: number; metrics?: Metrics; prefix?: string; url?: string } = {}) {
  const s = createRedisStore({
    url: options.url ?? redis.url,
    keyPrefix: options.prefix ?? `t${stores.length}:`,
    // Generous, so that a loaded test box never turns a decision into a store error; outage tests set their own.
    timeout: options.timeout ?? 2000,
    maxReconnectDelay: 100,
    log,
    metrics: options.metrics ?? createMetrics(),
    ...(options.now ? { now: options.now } : {}),
  });
  stores.push(s);
  await s.start();
  return s;
}


async function counterValue(metrics: Metrics, labels: Record<string, string>): Promise<number> {
  const metric = await metrics.registry.getSingleMetric('gatehouse_limit_store_errors_total')?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}

describe('GCRA in Redis (frozen clock)', () => {
  it('admits exactly `burst`, refuses N+1, admits one more after T', async () => {
    let now = 1_700_000_000_000;
    const s = await store({ now: () => now });
    const limiter = s.rateLimiter({ name: 'p', limit: 10, window: 1000, burst: 10 }, 'failClosed');
    for (let i = 0; i < 10; i++) {
      const d = await limiter.consume('k');
      expect(d).toMatchObject({ allowed: true, remaining: 9 - i, storeError: false });
    }
    const refused = await limiter.consume('k');
    expect(refused).toMatchObject({ allowed: false, remaining: 0, storeError: false });
    expect(refused.retryAfter).toBeCloseTo(100, 3);
    now += 99;
    expect((await limiter.consume('k')).allowed).toBe(false);
    now += 1;
    expect(await limiter.consume('k')).toMatchObject({ allowed: true, remaining: 0 });
    expect((await limiter.consume('k')).allowed).toBe(false);
  });

  it('refills to the burst and never beyond, like the memory store', async () => {
    let now = 1_700_000_000_000;
    const s = await store({ now: () => now });
    const limiter = s.rateLimiter({ name: 'p', limit: 3, window: 1000, burst: 3 }, 'failClosed');
    for (let round = 0; round < 20; round++) {
      const decisions = await Promise.all([1, 2, 3, 4, 5].map(() => limiter.consume('k')));
      expect(decisions.filter((d) => d.allowed)).toHaveLength(3);
      now += round % 2 === 0 ? 1000 : 60_000;
    }
  });

  it('a refund takes back exactly one admitted request', async () => {
    let now = 1_700_000_000_000;
    const s = await store({ now: () => now, prefix: 'refund:' });
    const limiter = s.rateLimiter({ name: 'p', limit: 2, window: 1000, burst: 2 }, 'failClosed');
    expect(await limiter.consume('k')).toMatchObject({ allowed: true, remaining: 1 });
    expect(await limiter.consume('k')).toMatchObject({ allowed: true, remaining: 0 });
    limiter.refund('k');
    expect(await limiter.consume('k')).toMatchObject({ allowed: true, remaining: 0 });
    expect((await limiter.consume('k')).allowed).toBe(false);
    limiter.refund('k');
    limiter.refund('k');
    limiter.refund('k'); // more refunds than admissions: the bucket is full, never fuller
    await waitFor(async () => (await admin.exists('refund:{rl:p:k}')) === 0, 'the key to go');
    const burst = await Promise.all([1, 2, 3].map(() => limiter.consume('k')));
    expect(burst.map((d) => d.allowed)).toEqual([true, true, false]);
  });

  it('two stores (two instances) on one Redis share one budget', async () => {
    let now = 1_700_000_000_000;
    const a = await store({ now: () => now, prefix: 'shared:' });
    const b = await store({ now: () => now, prefix: 'shared:' });
    const policy = { name: 'global', limit: 20, window: 60_000, burst: 20 };
    const la = a.rateLimiter(policy, 'failClosed');
    const lb = b.rateLimiter(policy, 'failClosed');
    const decisions = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? la : lb).consume('client')));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(20);
  });

  it('decisions asked in one turn go to Redis in batches (one script call per 128 per script), each decided exactly and in order', async () => {
    const own = await startRedis();
    try {
      const now = 1_700_000_000_000;
      const s = await store({ url: own.url, now: () => now });
      const wide = s.rateLimiter({ name: 'wide', limit: 5, window: 1000, burst: 5 }, 'failClosed');
      const narrow = s.rateLimiter({ name: 'narrow', limit: 2, window: 60_000, burst: 2 }, 'failClosed');
      const ownAdmin = new Redis(own.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await ownAdmin.connect();
      const scriptCalls = async () => {
        const info = await ownAdmin.info('commandstats');
        return [...info.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
      };
      // 300 decisions in one turn: three policies-and-keys interleaved.
      const asks = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? wide.consume('x') : i % 3 === 1 ? wide.consume('y') : narrow.consume('x')));
      const decisions = await Promise.all(asks);
      const of = (r: number) => decisions.filter((_, i) => i % 3 === r);
      for (const r of [0, 1]) {
        expect(of(r).map((d) => d.remaining).slice(0, 6)).toEqual([4, 3, 2, 1, 0, 0]);
        expect(of(r).map((d) => d.allowed)).toEqual([...Array(5).fill(true), ...Array(95).fill(false)]);
        expect(of(r)[5]!.retryAfter).toBeCloseTo(200, 3);
      }
      expect(of(2).map((d) => d.allowed)).toEqual([true, true, ...Array(98).fill(false)]);
      expect(of(2)[2]!.retryAfter).toBeCloseTo(30_000, 3);
      expect(decisions.every((d) => !d.storeError)).toBe(true);
      // ceil(300 / 128) = 3 script calls, not 300.
      expect(await scriptCalls()).toBe(3);

      // Quotas batch alike, in the same turn as rate limits: each script gets its own calls.
      const daily = s.quota({ name: 'daily', limit: 7, period: 'day' }, 'failClosed');
      const mixed = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? daily.consume(i % 4 === 0 ? 'p' : 'q') : wide.consume('z'))));
      for (const key of [0, 2]) {
        const forKey = mixed.filter((_, i) => i % 4 === key);
        expect(forKey.map((d) => d.allowed)).toEqual([...Array(7).fill(true), ...Array(43).fill(false)]);
        expect(forKey.slice(0, 8).map((d) => d.remaining)).toEqual([6, 5, 4, 3, 2, 1, 0, 0]);
      }
      expect(mixed.filter((_, i) => i % 2 === 1).map((d) => d.allowed)).toEqual([...Array(5).fill(true), ...Array(95).fill(false)]);
      // Refused requests do not count: each counter holds its limit.
      const day = new Date(now).toISOString().slice(0, 10);
      expect(await ownAdmin.get(`t${stores.length - 1}:{q:daily:p}:${day}`)).toBe('7');
      // 100 quota decisions and 100 rate-limit decisions: one call each.
      expect(await scriptCalls()).toBe(3 + 2);
      ownAdmin.disconnect();
    } finally {
      await own.stop();
    }
  });

  it('uses the Redis clock when no clock is injected', async () => {
    const s = await store();
    const limiter = s.rateLimiter({ name: 'p', limit: 2, window: 60_000, burst: 2 }, 'failClosed');
    expect((await limiter.consume('k')).allowed).toBe(true);
    expect((await limiter.consume('k')).allowed).toBe(true);
    const refused = await limiter.consume('k');
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfter).toBeGreaterThan(29_000);
    expect(refused.retryAfter).toBeLessThanOrEqual(30_000);
  });

  it('writes one hash-tagged key per bucket that expires on its own', async () => {
    const s = await store({ prefix: 'tag:' });
    const limiter = s.rateLimiter({ name: 'per-client', limit: 10, window: 1000, burst: 5 }, 'failClosed');
    await limiter.consume('alice|checkout');
    const keys = await admin.keys('tag:*');
    expect(keys).toEqual(['tag:{rl:per-client:alice|checkout}']);
    const ttl = await admin.pttl(keys[0]!);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100); // TAT - now = one emission interval
    await waitFor(async () => (await admin.exists(keys[0]!)) === 0, 'the key to expire', 2000);
  });
});

describe('quotas in Redis', () => {
  it('counts admitted requests per UTC day, refuses beyond, refunds, and starts afresh the next day', async () => {
    let now = Date.UTC(2026, 11, 4, 23, 59, 0);
    const s = await store({ now: () => now, prefix: 'quota:' });
    const quota = s.quota({ name: 'daily', limit: 3, period: 'day' }, 'failClosed');
    const seen: LimitDecision[] = [];
    for (let i = 0; i < 5; i++) seen.push(await quota.consume('client'));
    expect(seen.map((d) => d.allowed)).toEqual([true, true, true, false, false]);
    expect(seen.map((d) => d.remaining)).toEqual([2, 1, 0, 0, 0]);
    expect(seen[3]!.retryAfter).toBe(60_000);
    expect(await admin.get('quota:{q:daily:client}:2026-12-04')).toBe('3'); // refusals do not count
    quota.refund('client');
    await waitFor(async () => (await admin.get('quota:{q:daily:client}:2026-12-04')) === '2', 'the refund');
    expect((await quota.consume('client')).allowed).toBe(true);
    const ttl = await admin.pttl('quota:{q:daily:client}:2026-12-04');
    expect(ttl).toBeGreaterThan(0);
    now = Date.UTC(2026, 11, 5, 0, 0, 0);
    expect(await quota.consume('client')).toMatchObject({ allowed: true, remaining: 2 });
  });

  it('counts per UTC calendar month', async () => {
    let now = Date.UTC(2026, 1, 28, 12);
    const s = await store({ now: () => now, prefix: 'month:' });
    const quota = s.quota({ name: 'monthly', limit: 1, period: 'month' }, 'failClosed');
    expect((await quota.consume('c')).allowed).toBe(true);
    const refused = await quota.consume('c');
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfter).toBe(12 * 3600_000);
    now = Date.UTC(2026, 2, 1);
    expect((await quota.consume('c')).allowed).toBe(true);
  });
});

describe('Redis unreachable', () => {
  it('a store that cannot connect answers at once: failOpen admits, failClosed refuses, both counted', async () => {
    const metrics = createMetrics();
    const s = await store({ url: `redis://127.0.0.1:${await freePort()}`, metrics });
    const open = s.rateLimiter({ name: 'open', limit: 1, window: 1000, burst: 1 }, 'failOpen');
    const closed = s.rateLimiter({ name: 'closed', limit: 1, window: 1000, burst: 1 }, 'failClosed');
    expect(await open.consume('k')).toMatchObject({ allowed: true, storeError: true });
    expect(await closed.consume('k')).toMatchObject({ allowed: false, storeError: true });
    expect(await counterValue(metrics, { policy: 'open', outcome: 'allowed' })).toBe(1);
    expect(await counterValue(metrics, { policy: 'closed', outcome: 'refused' })).toBe(1);
    expect(s.status()).not.toBe('ready');
  });

  it('Redis killed mid-test: decisions fail fast as configured, then recover when it returns', async () => {
    const own = await startRedis();
    try {
      const metrics = createMetrics();
      const s = await store({ url: own.url, metrics, timeout: 300 });
      await waitFor(() => s.status() === 'ready', 'the store to connect');
      const policy = { name: 'p', limit: 1000, window: 1000, burst: 1000 };
      const open = s.rateLimiter({ ...policy, name: 'open' }, 'failOpen');
      const closed = s.rateLimiter({ ...policy, name: 'closed' }, 'failClosed');
      expect(await open.consume('k')).toMatchObject({ allowed: true, storeError: false });
      expect(await closed.consume('k')).toMatchObject({ allowed: true, storeError: false });

      // Requests in flight while it dies, and requests after: none hangs, none throws.
      const inFlight = Array.from({ length: 50 }, (_, i) => (i % 2 ? open : closed).consume('k'));
      await own.stop();
      const settled = await Promise.all(inFlight);
      expect(settled).toHaveLength(50);
      await waitFor(() => s.status() !== 'ready', 'the store to notice');
      const started = Date.now();
      expect(await open.consume('k')).toMatchObject({ allowed: true, storeError: true });
      expect(await closed.consume('k')).toMatchObject({ allowed: false, storeError: true });
      expect(Date.now() - started).toBeLessThan(1000); // fail fast: no offline queue, no wait for reconnects
      expect(await counterValue(metrics, { policy: 'open', outcome: 'allowed' })).toBeGreaterThan(0);
      expect(await counterValue(metrics, { policy: 'closed', outcome: 'refused' })).toBeGreaterThan(0);

      await own.restart();
      await waitFor(() => s.status() === 'ready', 'the store to reconnect');
      // The script cache of the new server is empty: EVALSHA falls back to EVAL by itself.
      expect(await closed.consume('k')).toMatchObject({ allowed: true, storeError: false });
      expect(await open.consume('k')).toMatchObject({ allowed: true, storeError: false });
    } finally {
      await own.stop();
    }
  });

  it('Redis frozen (no answer): the command timeout turns it into a store error, then it recovers', async () => {
    const own = await startRedis();
    try {
      const s = await store({ url: own.url, timeout: 150 });
      await waitFor(() => s.status() === 'ready', 'the store to connect');
      const closed = s.rateLimiter({ name: 'closed', limit: 100, window: 1000, burst: 100 }, 'failClosed');
      const open = s.rateLimiter({ name: 'open', limit: 100, window: 1000, burst: 100 }, 'failOpen');
      expect((await closed.consume('k')).storeError).toBe(false);
      own.pause();
      const started = Date.now();
      const [c, o] = await Promise.all([closed.consume('k'), open.consume('k')]);
      expect(c).toMatchObject({ allowed: false, storeError: true });
      expect(o).toMatchObject({ allowed: true, storeError: true });
      expect(Date.now() - started).toBeLessThan(2000);
      own.resume();
      await waitFor(async () => !(await closed.consume('k')).storeError, 'Redis to answer again');
    } finally {
      own.resume();
      await own.stop();
    }
  });

  it('a store started while Redis is down connects once it comes up', async () => {
    const port = await freePort();
    const s = await store({ url: `redis://127.0.0.1:${port}` });
    const limiter = s.rateLimiter({ name: 'p', limit: 5, window: 1000, burst: 5 }, 'failClosed');
    expect((await limiter.consume('k')).storeError).toBe(true);
    const { spawn } = await import('node:child_process');
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    try {
      await waitFor(() => s.status() === 'ready', 'the store to connect');
      expect(await limiter.consume('k')).toMatchObject({ allowed: true, storeError: false });
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('a batch reply that does not fit (unit)', () => {
  // Owners with the widths and value checks of the two scripts' limiters, answering store errors as their policy says.
  const errors: string[] = [];
  const owner = (width: number, failOpen: boolean) => ({
    width,
    decide(values: readonly unknown[], at: number): LimitDecision | null {
      const admitted = values[at];
      const n = Number(values[at + 1]);
      if ((admitted !== 0 && admitted !== 1) || !Number.isFinite(n)) return null;
      return { allowed: admitted === 1, remaining: n, retryAfter: 0, window: 0, storeError: false };
    },
    storeError(err: unknown): LimitDecision {
      errors.push((err as Error).message);
      return { allowed: failOpen, remaining: 0, retryAfter: failOpen ? 0 : 1000, window: 0, storeError: true };
    },
  });
  const OPEN = { allowed: true, remaining: 0, retryAfter: 0, window: 0, storeError: true };
  const CLOSED = { allowed: false, remaining: 0, retryAfter: 1000, window: 0, storeError: true };

  it('gives every waiter its own policy\'s store-error answer, never a hang or a decision made up', () => {
    const decisions: LimitDecision[] = [];
    const waiters = () => [
      { owner: owner(3, true), key: 'a', a: '100', b: '1000', resolve: (d: LimitDecision) => decisions.push(d) },
      { owner: owner(2, false), key: 'b', a: '10', b: '1000', resolve: (d: LimitDecision) => decisions.push(d) },
    ];
    errors.length = 0;
    for (const reply of [null, 'OK', 42, [], [1], [2, 4, '1.000', 2, 4], ['1', 4, '1.000', 'x', 'y']]) {
      decisions.length = 0;
      settleBatch(waiters(), reply);
      expect(decisions).toEqual([OPEN, CLOSED]);
    }
    expect(errors).toHaveLength(7 * 2);
    expect(errors.every((m) => /does not fit/.test(m))).toBe(true);
  });

  it('reads each waiter at its own offset: a 3-value decision, then a 2-value one, then a short tail', () => {
    const decisions: LimitDecision[] = [];
    const push = (d: LimitDecision) => decisions.push(d);
    settleBatch(
      [
        { owner: owner(3, false), key: 'a', a: '', b: '', resolve: push },
        { owner: owner(2, false), key: 'b', a: '', b: '', resolve: push },
        { owner: owner(3, true), key: 'c', a: '', b: '', resolve: push },
      ],
      [1, 4, '250.000', 0, 9, 1],
    );
    expect(decisions).toEqual([
      { allowed: true, remaining: 4, retryAfter: 0, window: 0, storeError: false },
      { allowed: false, remaining: 9, retryAfter: 0, window: 0, storeError: false },
      OPEN,
    ]);
  });
});
