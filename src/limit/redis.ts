import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { createRedisClient } from '../store/redis-client.js';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { Metrics } from '../telemetry/metrics.js';
import { gcraParameters, type LimitDecision, type QuotaLimiter, type QuotaPolicy, type RateLimiter, type RatePolicy } from './limiter.js';
import { CalendarPeriod } from './quota.js';

/**
 * GCRA in one atomic step (see limiter.ts), for a batch of decisions: every rate-limit decision
 * asked for in one turn of the event loop goes to Redis as one script call.
 * KEYS = the buckets (one per decision, repeats allowed: decided in order); ARGV[1] = now ms
 * ('' = the Redis server clock, so that all gateway instances share one clock), then for each key
 * its interval ms and capacity ms. Replies {admitted, remaining, ms} per key, flat: ms =
 * retry-after when refused, else the time until the next unit refills. Floats travel as strings
 * because Redis truncates Lua numbers to integers. A key expires by itself once it holds no more
 * state than a fresh key (PX = TAT - now).
 */
const GCRA_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if not tat or tat < now then tat = now end
  local newTat = tat + interval
  local allowAt = newTat - capacity
  local n = #out
  if now + 1e-6 < allowAt then
    out[n + 1] = 0
    out[n + 2] = 0
    out[n + 3] = string.format('%.3f', allowAt - now)
  else
    redis.call('SET', KEYS[i], string.format('%.17g', newTat), 'PX', math.max(1, math.ceil(newTat - now)))
    local remaining = math.floor((now - allowAt + 1e-6) / interval)
    out[n + 1] = 1
    out[n + 2] = remaining
    out[n + 3] = string.format('%.3f', allowAt + (remaining + 1) * interval - now)
  end
end
return out
`;

/**
 * A calendar quota counter. KEYS[1] = the counter of this period; ARGV = limit, time to live in ms
 * (relative, so that a clock difference between gateway and Redis cannot expire it early).
 * A refused request does not count. Replies {admitted, count}.
 */
const QUOTA_LUA = `
local limit = tonumber(ARGV[1])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= limit then return {0, count} end
count = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, count}
`;

/** Take back one admitted request: TAT -= T (KEYS[1]; ARGV = interval ms, now ms or ''). */
const GCRA_REFUND_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
tat = tat - tonumber(ARGV[1])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.max(1, math.ceil(tat - now)))
end
return 1
`;

/** Give back one unit (never below zero). */
const REFUND_LUA = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then return redis.call('DECR', KEYS[1]) end
return 0
`;

/** Quota counters outlive their period by a day, so clock skew between instances cannot reset them early. */
const QUOTA_GRACE_MS = 86_400_000;

/** The client with the scripts defined (a single Redis, or a Redis Cluster). */
type ScriptedRedis = (Redis | Cluster) & {
  /** numkeys, then the keys, then now and an (interval, capacity) pair per key. */
  ghGcra(...args: string[]): Promise<(number | string)[]>;
  ghGcraRefund(key: string, interval: string, now: string): Promise<number>;
  ghQuota(key: string, limit: string, ttl: string): Promise<[number, number]>;
  ghRefund(key: string): Promise<number>;
};

/**
 * Options of {@link createRedisStore}.
 *
 * @example
 * ```ts
 * const options: RedisStoreOptions = { url: 'redis://127.0.0.1:6379', timeout: 250, log, metrics };
 * ```
 */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  url: string;
  /** Prefix of every key (default `gatehouse:`). */
  keyPrefix?: string;
  /** Command timeout in ms (default 250): a slower answer is a store error. */
  timeout?: number;
  /**
   * Connect to a Redis Cluster: `url` names one node, the others are discovered. Every key is
   * hash-tagged and every script touches one key, so any slot layout works.
   */
  cluster?: boolean;
  /** Longest pause between reconnection attempts, ms (default 1000). */
  maxReconnectDelay?: number;
  log: Logger;
  metrics: Metrics;
  /**
   * Clock for decisions, ms since epoch. Default: rate limits use the Redis server's clock (one
   * clock for all instances); quotas use `Date.now` to find the calendar period.
   */
  now?: () => number;
}

/**
 * Shared limiter state in Redis: one round trip (one atomic Lua script, EVALSHA) per decision,
 * keys that expire on their own, one hash-tagged key per bucket (Redis Cluster friendly).
 * With Redis unreachable or slow, each policy answers as its `onStoreError` says, fast: no
 * offline queue, a short command timeout, and reconnection in the background.
 *
 * @example
 * ```ts
 * const store = createRedisStore({ url: 'redis://127.0.0.1:6379', log, metrics });
 * await store.start();
 * const limiter = store.rateLimiter({ name: 'per-client', limit: 100, window: 60_000, burst: 100 }, 'failClosed');
 * const d = await limiter.consume('client-42');
 * ```
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}

/**
 * See {@link createRedisStore}.
 *
 * @example
 * ```ts
 * const store = new RedisStore({ url: 'redis://127.0.0.1:6379', log, metrics });
 * await store.start();
 * store.status(); // 'ready'
 * ```
 */
export class RedisStore {
  readonly keyPrefix: string;
  readonly timeout: number;
  private client: ScriptedRedis | null = null;
  private readonly options: RedisStoreOptions;
  private readonly log: Logger;
  private readonly errors: Counter<string>;
  private lastError: string | null = null;
  private lastErrorLog = 0;
  private suppressed = 0;
  private wasReady = false;
  private closed = false;

  constructor(options: RedisStoreOptions) {
    this.options = options;
    this.keyPrefix = options.keyPrefix ?? 'gatehouse:';
    this.timeout = options.timeout ?? 250;
    this.log = options.log.child({ area: 'limit', store: 'redis' });
    this.errors = options.metrics.counter(
      'gatehouse_limit_store_errors_total',
      'Limit decisions (outcome allowed/refused) and refunds (outcome refund) the store could not make: Redis unreachable or too slow.',
      ['store', 'policy', 'outcome'],
    );
  }

  /** Connect in the background. Never throws for a dead Redis: reconnection keeps trying. */
  async start(): Promise<void> {
    if (this.client || this.closed) return;
    const maxDelay = this.options.maxReconnectDelay ?? 1000;
    const redisOptions: RedisOptions = {
      commandTimeout: this.timeout,
      connectTimeout: Math.max(1000, this.timeout * 4),
      // Fail fast while disconnected instead of queueing: a decision never waits for a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => (this.closed ? null : Math.min(maxDelay, 50 * 2 ** Math.min(times, 10))),
      lazyConnect: true,
      // No auto-pipelining (it batches per tick, i.e. not across requests) nor pipelines: measured,
      // both cost more client CPU per decision than corking the socket per event-loop turn
      // (ready()) — and rate-limit decisions go one script call per turn (gcra()).
    };
    const client = createRedisClient(this.options.url, this.options.cluster === true, redisOptions) as ScriptedRedis;
    // No numberOfKeys: a batch names its key count first.
    client.defineCommand('ghGcra', { lua: GCRA_LUA });
    client.defineCommand('ghQuota', { numberOfKeys: 1, lua: QUOTA_LUA });
    client.defineCommand('ghRefund', { numberOfKeys: 1, lua: REFUND_LUA });
    client.defineCommand('ghGcraRefund', { numberOfKeys: 1, lua: GCRA_REFUND_LUA });
    client.on('error', (err: Error) => this.noteError(err));
    client.on('ready', () => {
      if (this.lastError !== null || !this.wasReady) this.log.info({ redis: this.where() }, 'redis connection ready');
      this.wasReady = true;
      this.lastError = null;
    });
    this.client = client;
    // The first attempt may fail; ioredis goes on reconnecting by itself.
    await client.connect().catch((err: Error) => this.noteError(err));
  }

  /** `ready`, or what is wrong (for /readyz details). */
  status(): string {
    if (!this.client) return 'not started';
    if (this.client.status === 'ready') return 'ready';
    return this.lastError ? `${this.client.status}: ${this.lastError}` : this.client.status;
  }

  /** A GCRA rate limiter whose state lives in Redis. */
  rateLimiter(policy: RatePolicy, onStoreError: 'failOpen' | 'failClosed'): RateLimiter {
    return new RedisRateLimiter(this, policy, onStoreError);
  }

  /** A calendar quota whose counters live in Redis. */
  quota(policy: QuotaPolicy, onStoreError: 'failOpen' | 'failClosed'): QuotaLimiter {
    return new RedisQuota(this, policy, onStoreError);
  }

  /**
   * The connected client, or null while Redis is unreachable (a decision then fails fast).
   *
   * Hot path: the socket is corked until the end of this turn of the event loop, so that the
   * decisions of every request read in one poll phase leave in one write (one syscall, and one
   * round trip for all of them) — no per-request allocation, unlike a pipeline.
   */
  ready(): ScriptedRedis | null {
    const client = this.client;
    if (client === null || client.status !== 'ready') return null;
    if (!this.corked && !this.options.cluster) {
      const stream = (client as Redis).stream;
      if (stream && !stream.destroyed) {
        stream.cork();
        this.corked = stream;
        setImmediate(this.uncork);
      }
    }
    return client;
  }

  /**
   * Rate-limit decisions asked for in this turn of the event loop, sent as one script call at its
   * end (a batch of 20 at 50 connections on one core): one ioredis command, one timeout timer,
   * one reply to parse and one script run in Redis instead of one of each per decision.
   */
  private batch: GcraWaiter[] = [];
  private batchScheduled = false;

  /** @internal Queue one GCRA decision for this turn's batch. */
  gcra(limiter: RedisRateLimiter, key: string): Promise<LimitDecision> {
    return new Promise<LimitDecision>((resolve) => {
      this.batch.push({ limiter, key, resolve });
      if (!this.batchScheduled) {
        this.batchScheduled = true;
        setImmediate(this.flushGcra);
      }
    });
  }

  private readonly flushGcra = (): void => {
    this.batchScheduled = false;
    const all = this.batch;
    this.batch = [];
    // Not ready(): this runs at the end of the turn, and a cork would hold the batch until the next.
    const client = this.client;
    if (client === null || client.status !== 'ready') {
      for (const w of all) w.resolve(w.limiter.storeError(NO_STORE));
      return;
    }
    const now = this.options.now ? String(this.options.now()) : '';
    // Redis Cluster: one key per call (a script's keys must share a slot). Otherwise batches of
    // at most GCRA_BATCH, so that one script never holds Redis for long.
    const size = this.options.cluster ? 1 : GCRA_BATCH;
    for (let start = 0; start < all.length; start += size) {
      const part = all.length <= size ? all : all.slice(start, start + size);
      const n = part.length;
      const args = new Array<string>(1 + n + 1 + 2 * n);
      args[0] = String(n);
      args[n + 1] = now;
      for (let i = 0; i < n; i++) {
        const w = part[i]!;
        args[1 + i] = w.key;
        args[n + 2 + 2 * i] = w.limiter.interval;
        args[n + 3 + 2 * i] = w.limiter.capacity;
      }
      client.ghGcra(...args).then(
        (reply) => settleGcra(part, reply),
        (err: unknown) => {
          for (const w of part) w.resolve(w.limiter.storeError(err));
        },
      );
    }
  };

  private corked: Redis['stream'] | null = null;
  private readonly uncork = (): void => {
    const stream = this.corked;
    this.corked = null;
    // cork() nests: one uncork per cork.
    stream?.uncork();
  };

  /** Count and (at most every 10 s) log a failed decision. */
  storeFailed(policy: string, outcome: 'allowed' | 'refused' | 'refund', err: unknown): void {
    this.errors.inc({ store: 'redis', policy, outcome });
    this.noteError(err);
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    if (!client) return;
    if (client.status === 'ready') {
      await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, this.timeout).unref())]);
    }
    client.disconnect();
  }

  private noteError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.lastError = message;
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) {
      this.suppressed++;
      return;
    }
    this.log.warn({ redis: this.where(), err: message, suppressed: this.suppressed }, 'redis limiter store error');
    this.lastErrorLog = now;
    this.suppressed = 0;
  }

  /** host:port without credentials. */
  private where(): string {
    try {
      const url = new URL(this.options.url);
      return `${url.protocol}//${url.host}`;
    } catch {
      return 'redis';
    }
  }

  /** @internal */
  get clock(): (() => number) | undefined {
    return this.options.now;
  }
}

const NO_STORE = new Error('redis is not connected');

function storeErrorDecision(allowed: boolean): LimitDecision {
  return Object.freeze({ allowed, remaining: 0, retryAfter: allowed ? 0 : 1000, window: 0, storeError: true });
}
const FAIL_OPEN = storeErrorDecision(true);
const FAIL_CLOSED = storeErrorDecision(false);

/** Decisions per script call, at most. */
const GCRA_BATCH = 128;

/** @internal One rate-limit decision waiting for its batch. */
export interface GcraWaiter {
  limiter: { readonly interval: string; readonly capacity: string; storeError(err: unknown): LimitDecision };
  /** The bucket's full Redis key. */
  key: string;
  resolve: (decision: LimitDecision) => void;
}

/** @internal Hand each waiter its three values of the batch's flat reply (anything else: a store error). */
export function settleGcra(part: GcraWaiter[], reply: unknown): void {
  const values = Array.isArray(reply) ? (reply as unknown[]) : [];
  for (let i = 0; i < part.length; i++) {
    const w = part[i]!;
    const admitted = values[3 * i];
    const remaining = Number(values[3 * i + 1]);
    const ms = Number(values[3 * i + 2]);
    if ((admitted !== 0 && admitted !== 1) || values.length < 3 * i + 3 || !Number.isFinite(remaining) || !Number.isFinite(ms)) {
      w.resolve(w.limiter.storeError(new Error('redis answered a GCRA batch with a reply that does not fit it')));
      continue;
    }
    const allowed = admitted === 1;
    w.resolve({ allowed, remaining, retryAfter: allowed ? 0 : ms, window: ms, storeError: false });
  }
}

class RedisRateLimiter implements RateLimiter {
  readonly store = 'redis' as const;
  readonly policy: RatePolicy;
  /** @internal GCRA parameters in ms, as script arguments. */
  readonly interval: string;
  /** @internal */
  readonly capacity: string;
  private readonly redis: RedisStore;
  private readonly prefix: string;
  private readonly failOpen: boolean;
  private readonly now: (() => number) | undefined;

  constructor(redis: RedisStore, policy: RatePolicy, onStoreError: 'failOpen' | 'failClosed') {
    this.redis = redis;
    this.policy = policy;
    this.prefix = `${redis.keyPrefix}{rl:${policy.name}:`;
    const { interval, capacity } = gcraParameters(policy);
    this.interval = String(interval);
    this.capacity = String(capacity);
    this.failOpen = onStoreError === 'failOpen';
    this.now = redis.clock;
  }

  consume(key: string): Promise<LimitDecision> {
    return this.redis.gcra(this, `${this.prefix}${key}}`);
  }

  /** @internal The store could not decide: count it, answer as the policy says. */
  storeError(err: unknown): LimitDecision {
    this.redis.storeFailed(this.policy.name, this.failOpen ? 'allowed' : 'refused', err);
    return this.failOpen ? FAIL_OPEN : FAIL_CLOSED;
  }

  refund(key: string): void {
    const client = this.redis.ready();
    if (client === null) return;
    client
      .ghGcraRefund(`${this.prefix}${key}}`, this.interval, this.now ? String(this.now()) : '')
      .catch((err: unknown) => this.redis.storeFailed(this.policy.name, 'refund', err));
  }
}

class RedisQuota implements QuotaLimiter {
  readonly store = 'redis' as const;
  readonly policy: QuotaPolicy;
  private readonly redis: RedisStore;
  private readonly prefix: string;
  private readonly limit: string;
  private readonly failOpen: boolean;
  private readonly now: () => number;
  private readonly period: CalendarPeriod;
  private readonly onReply: (reply: [number, number]) => LimitDecision;
  private readonly onError: (err: unknown) => LimitDecision;

  constructor(redis: RedisStore, policy: QuotaPolicy, onStoreError: 'failOpen' | 'failClosed') {
    this.redis = redis;
    this.policy = policy;
    this.prefix = `${redis.keyPrefix}{q:${policy.name}:`;
    this.limit = String(policy.limit);
    this.failOpen = onStoreError === 'failOpen';
    this.now = redis.clock ?? Date.now;
    this.period = new CalendarPeriod(policy.period);
    this.onError = (err) => {
      this.redis.storeFailed(this.policy.name, this.failOpen ? 'allowed' : 'refused', err);
      return this.failOpen ? FAIL_OPEN : FAIL_CLOSED;
    };
    // Built once: no closure per decision. The period end is read when the answer arrives.
    this.onReply = (reply) => {
      const window = Math.max(0, this.period.end - this.now());
      return reply[0] === 1
        ? { allowed: true, remaining: this.policy.limit - reply[1], retryAfter: 0, window, storeError: false }
        : { allowed: false, remaining: 0, retryAfter: window, window, storeError: false };
    };
  }

  consume(key: string): Promise<LimitDecision> {
    const client = this.redis.ready();
    if (client === null) return Promise.resolve(this.onError(NO_STORE));
    const now = this.now();
    const period = this.period.update(now);
    const ttl = String(Math.ceil(period.end - now + QUOTA_GRACE_MS));
    return client.ghQuota(`${this.prefix}${key}}:${period.label}`, this.limit, ttl).then(this.onReply, this.onError);
  }

  refund(key: string): void {
    const client = this.redis.ready();
    if (client === null) return;
    const period = this.period.update(this.now());
    client.ghRefund(`${this.prefix}${key}}:${period.label}`).catch((err: unknown) => this.redis.storeFailed(this.policy.name, 'refund', err));
  }
}
