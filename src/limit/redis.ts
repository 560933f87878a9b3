import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { AUTH_FAILURE_POLICY, type AuthFailurePolicy, type AuthFailureStore } from './auth-failures.js';
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
 * Calendar quota counters, for a batch of decisions like the GCRA script. KEYS = the counters of
 * this period (decided in order); ARGV[1] is unused (the batch layout of GCRA_LUA), then for each
 * key its limit and time to live in ms (relative, so that a clock difference between gateway and
 * Redis cannot expire it early). A refused request does not count. Replies {admitted, count} per
 * key, flat.
 */
const QUOTA_LUA = `
local out = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  local n = #out
  if count >= limit then
    out[n + 1] = 0
    out[n + 2] = count
  else
    out[n + 1] = 1
    out[n + 2] = redis.call('INCR', KEYS[i])
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1])
  end
end
return out
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
  ghGcra(...args: string[]): Promise<unknown>;
  ghGcraRefund(key: string, interval: string, now: string): Promise<number>;
  /** Like ghGcra: numkeys, the keys, '' and a (limit, ttl) pair per key. */
  ghQuota(...args: string[]): Promise<unknown>;
  ghRefund(key: string): Promise<number>;
  ghAuthFail(countKey: string, blockKey: string, window: string, limit: string, blockFor: string): Promise<number>;
};

/**
 * One failed authentication (`authFailureLimit`): count it in a window that starts with the first
 * failure; at `limit`, set the block key for `blockFor` and start counting afresh. 1: it blocked.
 */
const AUTH_FAILURE_LUA = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`;

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
      // No auto-pipelining nor pipelines: decisions go one script call per event-loop turn
      // (enqueue()), which costs less client CPU per decision than either.
    };
    const client = createRedisClient(this.options.url, this.options.cluster === true, redisOptions) as ScriptedRedis;
    // No numberOfKeys: a batch names its key count first.
    client.defineCommand('ghGcra', { lua: GCRA_LUA });
    client.defineCommand('ghQuota', { lua: QUOTA_LUA });
    client.defineCommand('ghRefund', { numberOfKeys: 1, lua: REFUND_LUA });
    client.defineCommand('ghGcraRefund', { numberOfKeys: 1, lua: GCRA_REFUND_LUA });
    client.defineCommand('ghAuthFail', { numberOfKeys: 2, lua: AUTH_FAILURE_LUA });
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

  /** Failed authentications and blocks per client address (`authFailureLimit`), shared through Redis. */
  authFailures(policy: AuthFailurePolicy, onStoreError: 'failOpen' | 'failClosed'): AuthFailureStore {
    return new RedisAuthFailures(this, policy, onStoreError);
  }

  /** The connected client, or null while Redis is unreachable (a decision then fails fast). */
  ready(): ScriptedRedis | null {
    const client = this.client;
    return client !== null && client.status === 'ready' ? client : null;
  }

  /**
   * Decisions asked for in this turn of the event loop, per script, sent as one script call at
   * its end (a batch of 20 at 50 connections on one core): one ioredis command, one timeout
   * timer, one reply to parse and one script run in Redis instead of one of each per decision.
   */
  private gcraBatch: Waiter[] = [];
  private quotaBatch: Waiter[] = [];
  private batchScheduled = false;

  /**
   * @internal Queue one decision for this turn's batch of `script`: `key` with its two
   * arguments (GCRA: interval and capacity; quota: limit and time to live).
   */
  enqueue(script: 'gcra' | 'quota', owner: BatchOwner, key: string, a: string, b: string): Promise<LimitDecision> {
    return new Promise<LimitDecision>((resolve) => {
      (script === 'gcra' ? this.gcraBatch : this.quotaBatch).push({ owner, key, a, b, resolve });
      if (!this.batchScheduled) {
        this.batchScheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.batchScheduled = false;
    const gcra = this.gcraBatch;
    const quota = this.quotaBatch;
    if (gcra.length > 0) this.gcraBatch = [];
    if (quota.length > 0) this.quotaBatch = [];
    const client = this.ready();
    if (client === null) {
      for (const w of gcra) w.resolve(w.owner.storeError(NO_STORE));
      for (const w of quota) w.resolve(w.owner.storeError(NO_STORE));
      return;
    }
    if (gcra.length > 0) this.send(client, client.ghGcra, gcra, this.options.now ? String(this.options.now()) : '');
    if (quota.length > 0) this.send(client, client.ghQuota, quota, '');
  };

  /**
   * One script call per part of at most SCRIPT_BATCH decisions (so that one script never holds
   * Redis for long); with Redis Cluster one per decision (a script's keys must share a slot).
   */
  private send(client: ScriptedRedis, script: (...args: string[]) => Promise<unknown>, all: Waiter[], first: string): void {
    const size = this.options.cluster ? 1 : SCRIPT_BATCH;
    for (let start = 0; start < all.length; start += size) {
      const part = all.length <= size ? all : all.slice(start, start + size);
      const n = part.length;
      const args = new Array<string>(1 + n + 1 + 2 * n);
      args[0] = String(n);
      args[n + 1] = first;
      for (let i = 0; i < n; i++) {
        const w = part[i]!;
        args[1 + i] = w.key;
        args[n + 2 + 2 * i] = w.a;
        args[n + 3 + 2 * i] = w.b;
      }
      script.apply(client, args).then(
        (reply) => settleBatch(part, reply),
        (err: unknown) => {
          for (const w of part) w.resolve(w.owner.storeError(err));
        },
      );
    }
  }

  /** Count and (at most every 10 s) log a failed decision or refund. */
  storeFailed(policy: string, outcome: 'allowed' | 'refused' | 'refund', err: unknown): void {
    this.errors.inc({ store: 'redis', policy, outcome });
    this.noteError(err);
  }

  /** @internal A decision the store could not make: counted, answered as the policy says. */
  failedDecision(policy: string, failOpen: boolean, err: unknown): LimitDecision {
    this.storeFailed(policy, failOpen ? 'allowed' : 'refused', err);
    return failOpen ? FAIL_OPEN : FAIL_CLOSED;
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
const SCRIPT_BATCH = 128;

/** @internal What a batched script call needs from the limiter that asked. */
export interface BatchOwner {
  /** Values per decision in the script's flat reply. */
  readonly width: number;
  /** The decision from the reply's values at `at`…`at + width`, or null when they do not fit. */
  decide(values: readonly unknown[], at: number): LimitDecision | null;
  /** The store could not decide: count it, answer as the policy says. */
  storeError(err: unknown): LimitDecision;
}

/** @internal One decision waiting for its batch. */
export interface Waiter {
  owner: BatchOwner;
  /** The bucket's or counter's full Redis key. */
  key: string;
  /** Its two script arguments. */
  a: string;
  b: string;
  resolve: (decision: LimitDecision) => void;
}

/** @internal Hand each waiter its values of the batch's flat reply (anything else: a store error). */
export function settleBatch(part: readonly Waiter[], reply: unknown): void {
  const values = Array.isArray(reply) ? (reply as unknown[]) : [];
  let at = 0;
  for (let i = 0; i < part.length; i++) {
    const w = part[i]!;
    const width = w.owner.width;
    const decision = values.length >= at + width ? w.owner.decide(values, at) : null;
    w.resolve(decision ?? w.owner.storeError(new Error('redis answered a batch with a reply that does not fit it')));
    at += width;
  }
}

class RedisRateLimiter implements RateLimiter, BatchOwner {
  readonly store = 'redis' as const;
  readonly policy: RatePolicy;
  readonly width = 3;
  /** GCRA parameters in ms, as script arguments. */
  private readonly interval: string;
  private readonly capacity: string;
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
    return this.redis.enqueue('gcra', this, `${this.prefix}${key}}`, this.interval, this.capacity);
  }

  /** @internal {admitted 0|1, remaining, ms} (ms: retry-after when refused, else until the next unit refills). */
  decide(values: readonly unknown[], at: number): LimitDecision | null {
    const admitted = values[at];
    const remaining = Number(values[at + 1]);
    const ms = Number(values[at + 2]);
    if ((admitted !== 0 && admitted !== 1) || !Number.isFinite(remaining) || !Number.isFinite(ms)) return null;
    const allowed = admitted === 1;
    return { allowed, remaining, retryAfter: allowed ? 0 : ms, window: ms, storeError: false };
  }

  /** @internal The store could not decide: count it, answer as the policy says. */
  storeError(err: unknown): LimitDecision {
    return this.redis.failedDecision(this.policy.name, this.failOpen, err);
  }

  refund(key: string): void {
    const client = this.redis.ready();
    if (client === null) return;
    client
      .ghGcraRefund(`${this.prefix}${key}}`, this.interval, this.now ? String(this.now()) : '')
      .catch((err: unknown) => this.redis.storeFailed(this.policy.name, 'refund', err));
  }
}

class RedisQuota implements QuotaLimiter, BatchOwner {
  readonly store = 'redis' as const;
  readonly policy: QuotaPolicy;
  readonly width = 2;
  private readonly redis: RedisStore;
  private readonly prefix: string;
  private readonly limit: string;
  private readonly failOpen: boolean;
  private readonly now: () => number;
  private readonly period: CalendarPeriod;

  constructor(redis: RedisStore, policy: QuotaPolicy, onStoreError: 'failOpen' | 'failClosed') {
    this.redis = redis;
    this.policy = policy;
    this.prefix = `${redis.keyPrefix}{q:${policy.name}:`;
    this.limit = String(policy.limit);
    this.failOpen = onStoreError === 'failOpen';
    this.now = redis.clock ?? Date.now;
    this.period = new CalendarPeriod(policy.period);
  }

  consume(key: string): Promise<LimitDecision> {
    const now = this.now();
    const period = this.period.update(now);
    const ttl = String(Math.ceil(period.end - now + QUOTA_GRACE_MS));
    return this.redis.enqueue('quota', this, `${this.prefix}${key}}:${period.label}`, this.limit, ttl);
  }

  /** @internal {admitted 0|1, count}. The period end is read when the answer arrives. */
  decide(values: readonly unknown[], at: number): LimitDecision | null {
    const admitted = values[at];
    const count = Number(values[at + 1]);
    if ((admitted !== 0 && admitted !== 1) || !Number.isFinite(count)) return null;
    const window = Math.max(0, this.period.end - this.now());
    return admitted === 1
      ? { allowed: true, remaining: this.policy.limit - count, retryAfter: 0, window, storeError: false }
      : { allowed: false, remaining: 0, retryAfter: window, window, storeError: false };
  }

  /** @internal The store could not decide: count it, answer as the policy says. */
  storeError(err: unknown): LimitDecision {
    return this.redis.failedDecision(this.policy.name, this.failOpen, err);
  }

  refund(key: string): void {
    const client = this.redis.ready();
    if (client === null) return;
    const period = this.period.update(this.now());
    client.ghRefund(`${this.prefix}${key}}:${period.label}`).catch((err: unknown) => this.redis.storeFailed(this.policy.name, 'refund', err));
  }
}

/** Blocks this gateway has seen, at most this many addresses (the oldest dropped beyond). */
const KNOWN_BLOCKS = 10_000;

/**
 * `authFailureLimit` in Redis: a counter and a block key per address (one hash tag: one slot),
 * each expiring on its own. A check is one `PTTL`; a failure one script call. With Redis
 * unreachable a check answers null (the policy's `onStoreError` decides) and a failure is not
 * counted. A block this gateway has seen (a `PTTL` that answered, or the failure that started
 * it) is remembered here until it ends: a blocked address's flood then costs no round trip, and
 * a Redis outage does not lift a block already known. An address not blocked is asked every time
 * (a block started elsewhere applies at once).
 */
class RedisAuthFailures implements AuthFailureStore {
  readonly store = 'redis' as const;
  private readonly prefix: string;
  private readonly window: string;
  private readonly limit: string;
  private readonly blockFor: string;
  private readonly failOpen: boolean;
  private readonly blockMs: number;
  /** Address → until when it is blocked (ms), as this gateway last heard. */
  private readonly known = new Map<string, number>();

  constructor(
    private readonly redis: RedisStore,
    policy: AuthFailurePolicy,
    onStoreError: 'failOpen' | 'failClosed',
  ) {
    this.prefix = `${redis.keyPrefix}{af:`;
    this.window = String(policy.window);
    this.limit = String(policy.limit);
    this.blockFor = String(policy.blockFor);
    this.failOpen = onStoreError === 'failOpen';
    this.blockMs = policy.blockFor;
  }

  blockedFor(key: string): number | Promise<number | null> {
    const until = this.known.get(key);
    if (until !== undefined) {
      const left = until - Date.now();
      if (left > 0) return left;
      this.known.delete(key);
    }
    return this.ask(key);
  }

  private remember(key: string, ms: number): void {
    if (this.known.size >= KNOWN_BLOCKS && !this.known.has(key)) {
      const oldest = this.known.keys().next();
      if (!oldest.done) this.known.delete(oldest.value);
    }
    this.known.set(key, Date.now() + ms);
  }

  private async ask(key: string): Promise<number | null> {
    const client = this.redis.ready();
    try {
      if (client === null) throw NO_STORE;
      const ms = await client.pttl(`${this.prefix}${key}}:b`);
      if (ms > 0) this.remember(key, ms);
      return ms > 0 ? ms : 0;
    } catch (err) {
      this.redis.storeFailed(AUTH_FAILURE_POLICY, this.failOpen ? 'allowed' : 'refused', err);
      return null;
    }
  }

  async record(key: string): Promise<boolean> {
    const client = this.redis.ready();
    try {
      if (client === null) throw NO_STORE;
      const blocked = (await client.ghAuthFail(`${this.prefix}${key}}:n`, `${this.prefix}${key}}:b`, this.window, this.limit, this.blockFor)) === 1;
      if (blocked) this.remember(key, this.blockMs);
      return blocked;
    } catch (err) {
      this.redis.storeFailed(AUTH_FAILURE_POLICY, 'allowed', err);
      return false;
    }
  }
}
