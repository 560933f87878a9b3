import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendProblem } from '../respond/problem.js';
import { Gauge } from 'prom-client';
import { configIssue } from '../config/issue.js';
import type { GatehouseConfig, QuotaConfig, RateLimitConfig, RouteConfig } from '../config/types.js';
import { RateLimited, ServiceUnavailable, type ConfigIssue, type GatehouseError } from '../errors.js';
import { composeStages, type RequestContext, type Stage } from '../pipeline/context.js';
import type { AreaFactory, AreaRuntime, GatewayServices, RouteStages } from '../pipeline/runtime.js';
import { policyItem, RATELIMIT_FIELD, RATELIMIT_POLICY_FIELD, serviceLimitItem } from './headers.js';
import { compileKey, parseKeySpec, type KeyExtractor } from './key.js';
import type { LimitDecision, QuotaLimiter, RateLimiter } from './limiter.js';
import { createMemoryRateLimiter, LruTable } from './memory.js';
import { createMemoryQuota } from './quota.js';
import { createRedisStore, type RedisStore } from './redis.js';
import { AuthFailureTable, type AuthFailureStore } from './auth-failures.js';

export type { LimitDecision, QuotaLimiter, RateLimiter, RatePolicy, QuotaPolicy } from './limiter.js';
export { createMemoryRateLimiter, LruTable, type MemoryRateLimiter } from './memory.js';
export { createMemoryQuota, CalendarPeriod, type MemoryQuotaLimiter } from './quota.js';
export { createRedisStore, RedisStore } from './redis.js';

/**
 * The policy name the pre-auth limit carries in RateLimit headers and logs.
 *
 * @example
 * ```ts
 * res.headers.ratelimit; // '"pre-auth";r=0;t=12'
 * ```
 */
export const PRE_AUTH_POLICY = 'pre-auth';

/**
 * In-memory tables outlive a config reload (a reload must not hand every client a fresh
 * budget): they are kept per gateway (its metrics registry) and per policy definition.
 */
const memoryTables = new WeakMap<object, Map<string, MemoryTable>>();

interface MemoryTable {
  readonly policy: string;
  readonly table: LruTable;
}

/**
 * Likewise the in-flight counts of `maxConcurrent`, per gateway and route name: requests of the
 * old plan keep their slots after a reload (a fresh count at 0 would admit up to twice the limit).
 */
const concurrencyCounters = new WeakMap<object, Map<string, InFlight>>();

/**
 * `gatehouse_limit_memory_keys{policy}` and `gatehouse_limit_memory_evictions{policy}`, read from
 * the running plan's tables when scraped: nothing on the hot path. Evictions that keep growing
 * mean `memoryStore.maxKeys` is too small for the active keys (each eviction resets a budget).
 */
function registerMemoryGauges(metrics: GatewayServices['metrics']): void {
  const registry = metrics.registry;
  if (registry.getSingleMetric('gatehouse_limit_memory_keys')) return;
  const read = (field: 'size' | 'evictions') =>
    function collect(this: Gauge<string>) {
      this.reset();
      for (const { policy, table } of memoryTables.get(metrics)?.values() ?? []) this.inc({ policy }, table[field]);
    };
  new Gauge({ name: 'gatehouse_limit_memory_keys', help: 'Keys held by the in-memory limit store, by policy.', labelNames: ['policy'], registers: [registry], collect: read('size') });
  new Gauge({
    name: 'gatehouse_limit_memory_evictions',
    help: 'Keys evicted from the in-memory limit store since its table was created (each resets a budget), by policy.',
    labelNames: ['policy'],
    registers: [registry],
    collect: read('evictions'),
  });
}

interface BoundRate {
  readonly name: string;
  readonly limiter: RateLimiter;
  readonly key: KeyExtractor;
}

interface BoundQuota {
  readonly name: string;
  readonly limiter: QuotaLimiter;
  readonly key: KeyExtractor;
}

/** Requests of one route in progress, shared by every plan that has the route. */
interface InFlight {
  count: number;
  /** Built once per route and pushed on `ctx.onFinish`: no closure per request. */
  readonly release: () => void;
}

/** A route's concurrency limit in one plan: the plan's `maxConcurrent` over the shared count. */
interface Concurrency {
  readonly inFlight: InFlight;
  readonly max: number;
}

/** What one request collected from its policies. */
interface Tally {
  items: string;
  retryAfter: number;
  rateDenied: boolean;
  quotaDenied: boolean;
  storeDown: boolean;
  /** Bit i: rate limit i counted this request (taken back when the request is refused). */
  ratesCounted: number;
  /** Bit i: quota i counted this request (taken back when the request is refused). */
  quotasCounted: number;
  deniedBy: string;
}

function resetTally(t: Tally): Tally {
  t.items = '';
  t.retryAfter = 0;
  t.rateDenied = false;
  t.quotaDenied = false;
  t.storeDown = false;
  t.ratesCounted = 0;
  t.quotasCounted = 0;
  t.deniedBy = '';
  return t;
}

const newTally = (): Tally => resetTally({} as Tally);

/** Scratch tally of the synchronous (memory-only) path: safe because nothing awaits in it. */
const SCRATCH = newTally();

/** Policies per route are capped so that a 32-bit mask can say which ones counted a request. */
const MAX_POLICIES = 31;

function record(t: Tally, i: number, name: string, d: LimitDecision, quota: boolean): void {
  if (d.storeError) {
    if (!d.allowed) {
      t.storeDown = true;
      t.deniedBy = name;
    }
    return;
  }
  const item = serviceLimitItem(name, d.remaining, d.window);
  t.items = t.items === '' ? item : `${t.items},${item}`;
  if (d.allowed) {
    if (quota) t.quotasCounted |= 1 << i;
    else t.ratesCounted |= 1 << i;
    return;
  }
  if (quota) t.quotaDenied = true;
  else t.rateDenied = true;
  if (d.retryAfter > t.retryAfter) t.retryAfter = d.retryAfter;
  if (t.deniedBy === '') t.deniedBy = name;
}

/** A refused request counts against no policy of the route: take back what the others counted. */
function refundAll(ctx: RequestContext, t: Tally, rates: readonly BoundRate[], quotas: readonly BoundQuota[]): void {
  for (let i = 0; t.ratesCounted !== 0 && i < rates.length; i++) {
    if ((t.ratesCounted & (1 << i)) !== 0) rates[i]!.limiter.refund(rates[i]!.key(ctx));
  }
  for (let i = 0; t.quotasCounted !== 0 && i < quotas.length; i++) {
    if ((t.quotasCounted & (1 << i)) !== 0) quotas[i]!.limiter.refund(quotas[i]!.key(ctx));
  }
}

const STORE_DOWN_DESCRIPTION = 'the rate limit cannot be checked right now';

/** Turn a tally into headers and the denial, if any. */
function conclude(ctx: RequestContext, t: Tally, policyHeader: string): GatehouseError | null {
  if (t.items !== '') {
    ctx.responseHeaders.push([RATELIMIT_POLICY_FIELD, policyHeader], [RATELIMIT_FIELD, t.items]);
  }
  if (t.storeDown) {
    return new ServiceUnavailable('GH_ERR_LIMIT_STORE_UNAVAILABLE', STORE_DOWN_DESCRIPTION, {
      retryAfter: 1,
      detail: `limit store unavailable for policy ${t.deniedBy} (failClosed)`,
    });
  }
  if (t.rateDenied) return new RateLimited('GH_ERR_LIMIT_RATE_EXCEEDED', t.retryAfter / 1000, { detail: `policy ${t.deniedBy}` });
  if (t.quotaDenied) return new RateLimited('GH_ERR_LIMIT_QUOTA_EXCEEDED', t.retryAfter / 1000, { detail: `policy ${t.deniedBy}` });
  return null;
}

/**
 * The limits area: the pre-auth IP limit (`preAuthLimit`, slot `preAuth`, before any token
 * cryptography) and per route, in slot `limit`: concurrency (`maxConcurrent`), rate limits
 * (`rateLimits`), then quotas (`quotas`). Answers 429 with Retry-After and RateLimit headers,
 * 503 when the concurrency limit is reached or the store is down with `failClosed`.
 * docs/rate-limits.md has the exact semantics.
 *
 * @example
 * ```ts
 * const area = await createLimitArea(config, services);
 * await area.start?.();
 * const stages = area.stagesFor?.(config.routes[0]!, 0); // { preAuth, limit }
 * ```
 */
export const createLimitArea: AreaFactory = (config: GatehouseConfig, services: GatewayServices): AreaRuntime => {
  const issues: ConfigIssue[] = [];
  // normalize.ts finds these first for configs from a file; this guards configs built in code.
  const issue = (path: (string | number)[], message: string) => issues.push(configIssue(config, path, message));
  const maxKeys = config.memoryStore.maxKeys;

  // Tables of the running plan are reused; this plan's set replaces them once it starts (a
  // reload that fails to compile leaves the running plan's set in place).
  const previous = memoryTables.get(services.metrics);
  const tables = new Map<string, MemoryTable>();
  const tableFor = (policy: string, signature: string): LruTable => {
    const id = `${policy}:${signature}:${maxKeys}`;
    const entry = tables.get(id) ?? previous?.get(id) ?? { policy, table: new LruTable(maxKeys) };
    tables.set(id, entry);
    return entry.table;
  };

  // In-flight counts, taken over from the running plan the same way (by route name).
  const previousCounters = concurrencyCounters.get(services.metrics);
  const counters = new Map<string, InFlight>();
  const concurrencyFor = (route: RouteConfig, max: number): Concurrency => {
    const inFlight = counters.get(route.name) ?? previousCounters?.get(route.name) ?? createInFlight();
    counters.set(route.name, inFlight);
    return { inFlight, max };
  };

  // The schema (uniqueItems) refuses these in a file; this guards configs built in code.
  config.routes.forEach((route, r) => {
    for (const list of ['rateLimits', 'quotas'] as const) {
      route[list].forEach((name, i) => {
        if (route[list].indexOf(name) !== i) issue(['routes', r, list, i], `names the policy ${JSON.stringify(name)} a second time (it would count each request twice)`);
      });
    }
  });

  const usesRedis =
    config.rateLimits.some((r) => r.store === 'redis') ||
    config.quotas.some((q) => q.store === 'redis') ||
    config.preAuthLimit?.store === 'redis' ||
    config.authFailureLimit?.store === 'redis';
  let redis: RedisStore | null = null;
  if (usesRedis) {
    if (!config.redis) issue(['redis'], 'is required by a policy with store: redis');
    else {
      redis = createRedisStore({
        url: config.redis.url,
        keyPrefix: config.redis.keyPrefix,
        timeout: config.redis.timeout,
        cluster: config.redis.cluster,
        log: services.log,
        metrics: services.metrics,
      });
    }
  }

  const rateLimiters = new Map<string, { config: RateLimitConfig; limiter: RateLimiter | null }>();
  config.rateLimits.forEach((rl, i) => {
    const parsed = parseKeySpec(rl.key);
    if (parsed.error !== undefined) issue(['rateLimits', i, 'key'], parsed.error);
    const policy = { name: rl.name, limit: rl.limit, window: rl.window, burst: rl.burst };
    let limiter: RateLimiter | null = null;
    if (rl.store === 'redis') limiter = redis ? redis.rateLimiter(policy, rl.onStoreError) : null;
    else limiter = createMemoryRateLimiter(policy, { now: services.now, table: tableFor(rl.name, `rate:${rl.limit}:${rl.window}:${rl.burst}`) });
    rateLimiters.set(rl.name, { config: rl, limiter });
  });

  const quotaLimiters = new Map<string, { config: QuotaConfig; limiter: QuotaLimiter | null }>();
  config.quotas.forEach((q, i) => {
    const parsed = parseKeySpec(q.key);
    if (parsed.error !== undefined) issue(['quotas', i, 'key'], parsed.error);
    const policy = { name: q.name, limit: q.limit, period: q.period };
    let limiter: QuotaLimiter | null = null;
    if (q.store === 'redis') limiter = redis ? redis.quota(policy, q.onStoreError) : null;
    else limiter = createMemoryQuota(policy, { now: services.now, table: tableFor(q.name, `quota:${q.limit}:${q.period}`) });
    quotaLimiters.set(q.name, { config: q, limiter });
  });

  const preAuth = buildPreAuthStage(config, services, redis, tableFor);
  const failures = buildAuthFailureGuard(config, services, redis);
  // Routes that need a token: the block first (one lookup), then the pre-auth limit.
  const protectedPreAuth = failures === null ? preAuth : preAuth === null ? failures.check : composeStages([failures.check, preAuth]);

  function stagesFor(route: RouteConfig): RouteStages {
    const rates: BoundRate[] = [];
    const quotas: BoundQuota[] = [];
    const policyItems: string[] = [];
    for (const name of route.rateLimits) {
      const entry = rateLimiters.get(name);
      const parts = entry && parseKeySpec(entry.config.key).parts;
      if (!entry?.limiter || !parts) continue;
      rates.push({ name, limiter: entry.limiter, key: compileKey(parts, route.name) });
      policyItems.push(policyItem(name, entry.config.limit, entry.config.window));
    }
    for (const name of route.quotas) {
      const entry = quotaLimiters.get(name);
      const parts = entry && parseKeySpec(entry.config.key).parts;
      if (!entry?.limiter || !parts) continue;
      quotas.push({ name, limiter: entry.limiter, key: compileKey(parts, route.name) });
      // A calendar month has no fixed length in seconds: `w` is left out (it is optional).
      policyItems.push(entry.config.period === 'day' ? `"${name}";q=${entry.config.limit};w=86400` : `"${name}";q=${entry.config.limit}`);
    }
    // normalize.ts refuses more than 31 of each; a config built in code is cut, never mis-counted.
    rates.length = Math.min(rates.length, MAX_POLICIES);
    quotas.length = Math.min(quotas.length, MAX_POLICIES);
    const concurrency = route.maxConcurrent === undefined ? null : concurrencyFor(route, route.maxConcurrent);
    return {
      preAuth: route.public ? preAuth : protectedPreAuth,
      limit: buildLimitStage(rates, quotas, concurrency, policyItems.join(',')),
      onAuthFailure: route.public || failures === null ? null : failures.record,
    };
  }

  // The token-handler agent's endpoints are answered before routing (they have no route): the
  // pre-auth IP limit covers them here, so a flood cannot drive the token endpoint through them.
  // Runs for every request before routing: it answers synchronously unless the pre-auth stage
  // itself waits (Redis), so other requests stay on the runner's synchronous path.
  const handle = preAuth && config.tokenHandler ? preAuthAgentHandler(preAuth, config.tokenHandler.basePath, config.gateway.realm) : undefined;

  return {
    name: 'limit',
    issues,
    stagesFor,
    handle,
    async start() {
      memoryTables.set(services.metrics, tables);
      if (failures?.table) failureTables.set(services.metrics, failures.table);
      concurrencyCounters.set(services.metrics, counters);
      registerMemoryGauges(services.metrics);
      await redis?.start();
    },
    readiness() {
      // A Redis outage does not take the instance out of rotation: every instance shares the
      // same Redis, and each policy already says what to do without it (failOpen/failClosed).
      return redis ? { ready: true, details: { redis: redis.status() } } : { ready: true };
    },
    async close() {
      await redis?.close();
    },
  };
};

/** The in-memory failure table outlives a reload (a reload must not unblock anyone): per gateway. */
const failureTables = new WeakMap<object, AuthFailureTable>();

/**
 * `authFailureLimit`: `check` refuses a blocked address (429, Retry-After: what is left of the
 * block) before its token is read, on routes that need a token; `record` counts a failed
 * authentication of such a route (run.ts calls it for refusals that {@link countsAsAuthFailure}).
 */
function buildAuthFailureGuard(
  config: GatehouseConfig,
  services: GatewayServices,
  redis: RedisStore | null,
): { check: Stage; record: (ctx: RequestContext) => void; table: AuthFailureTable | null } | null {
  const settings = config.authFailureLimit;
  if (!settings) return null;
  const policy = { limit: settings.limit, window: settings.window, blockFor: settings.blockFor };
  const key = compileKey([{ kind: 'ip' }], '');
  const log = services.log;
  const maxKeys = config.memoryStore.maxKeys;
  const held = failureTables.get(services.metrics);
  const table: AuthFailureTable | null =
    settings.store === 'redis' ? null : held !== undefined && held.maxKeys === maxKeys ? held.use(policy) : new AuthFailureTable(policy, maxKeys, services.now);
  const store: AuthFailureStore | null = table ?? redis?.authFailures(policy, settings.onStoreError) ?? null;
  if (store === null) return null;
  const failClosed = settings.onStoreError === 'failClosed';
  const blocks = services.metrics.counter('gatehouse_auth_failure_blocks_total', 'Client addresses blocked after too many failed authentications (authFailureLimit).', []);

  const verdict = (ms: number | null): GatehouseError | null => {
    if (ms === null) {
      return failClosed
        ? new ServiceUnavailable('GH_ERR_LIMIT_STORE_UNAVAILABLE', STORE_DOWN_DESCRIPTION, { retryAfter: 1, detail: 'limit store unavailable for authFailureLimit (failClosed)' })
        : null;
    }
    if (ms <= 0) return null;
    return new RateLimited('GH_ERR_LIMIT_AUTH_FAILURES', ms / 1000, { detail: `address blocked after ${settings.limit} failed authentications within ${settings.window} ms; ${Math.ceil(ms / 1000)} s left` });
  };
  const started = (ctx: RequestContext, blocked: boolean) => {
    if (!blocked) return;
    blocks.inc();
    log.warn({ client_ip: ctx.clientIp, req_id: ctx.id, failures: settings.limit, window_ms: settings.window, block_ms: settings.blockFor, store: settings.store }, 'client address blocked after failed authentications');
  };
  const check: Stage =
    table !== null
      ? function authFailureCheck(ctx: RequestContext) {
          return verdict(table.blockedFor(key(ctx)));
        }
      : function authFailureCheck(ctx: RequestContext) {
          // A block this gateway knows of answers at once; anything else asks Redis.
          const left = store.blockedFor(key(ctx));
          return typeof left === 'number' || left === null ? verdict(left) : left.then(verdict);
        };
  const record = (ctx: RequestContext): void => {
    const blocked = store.record(key(ctx));
    if (typeof blocked === 'boolean') started(ctx, blocked);
    else void blocked.then((b) => started(ctx, b));
  };
  return { check, record, table };
}

/**
 * The `handle` hook applying the pre-auth stage to the agent endpoints under `basePath`:
 * true (and the 429/503 written) when it refuses, false otherwise.
 */
function preAuthAgentHandler(
  preAuth: Stage,
  basePath: string,
  realm: string,
): (ctx: RequestContext, req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean> {
  const base = basePath.replace(/\/$/, '');
  const prefix = `${base}/`;
  const refuse = (ctx: RequestContext, res: ServerResponse, denial: GatehouseError | null): boolean => {
    if (denial === null) return false;
    (ctx as { error?: GatehouseError }).error = denial;
    sendProblem(res, denial, ctx.id, realm, ctx.responseHeaders, ctx.method);
    return true;
  };
  return function preAuthAgent(ctx, _req, res) {
    if (ctx.path !== base && !ctx.path.startsWith(prefix)) return false;
    const denial = preAuth(ctx);
    return denial !== null && isPromise(denial) ? denial.then((d) => refuse(ctx, res, d)) : refuse(ctx, res, denial);
  };
}

function createInFlight(): InFlight {
  const state: InFlight = {
    count: 0,
    release() {
      state.count--;
    },
  };
  return state;
}

function concurrencyDenied(c: Concurrency): GatehouseError {
  return new ServiceUnavailable('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED', 'too many requests in progress for this route', {
    retryAfter: 1,
    detail: `maxConcurrent ${c.max}`,
  });
}

/** Build the `limit` stage of one route; `null` when the route has no limit at all. */
function buildLimitStage(rates: BoundRate[], quotas: BoundQuota[], concurrency: Concurrency | null, policyHeader: string): Stage | null {
  if (rates.length === 0 && quotas.length === 0) {
    if (!concurrency) return null;
    const c = concurrency;
    const n = c.inFlight;
    return function concurrencyStage(ctx: RequestContext): GatehouseError | null {
      if (n.count >= c.max) return concurrencyDenied(c);
      n.count++;
      ctx.onFinish.push(n.release);
      return null;
    };
  }
  const allMemory = rates.every((r) => r.limiter.store === 'memory') && quotas.every((q) => q.limiter.store === 'memory');
  const c = concurrency;

  if (allMemory) {
    // Hot path: synchronous, no promise, no closure, no tally allocation.
    return function memoryLimitStage(ctx: RequestContext): GatehouseError | null {
      if (c !== null && c.inFlight.count >= c.max) return concurrencyDenied(c);
      const t = resetTally(SCRATCH);
      for (let i = 0; i < rates.length; i++) {
        const r = rates[i]!;
        record(t, i, r.name, r.limiter.consume(r.key(ctx)) as LimitDecision, false);
      }
      if (!t.rateDenied) {
        for (let i = 0; i < quotas.length; i++) {
          const q = quotas[i]!;
          record(t, i, q.name, q.limiter.consume(q.key(ctx)) as LimitDecision, true);
        }
      }
      const denial = conclude(ctx, t, policyHeader);
      if (denial !== null) refundAll(ctx, t, rates, quotas);
      else if (c !== null) {
        c.inFlight.count++;
        ctx.onFinish.push(c.inFlight.release);
      }
      return denial;
    };
  }

  return async function limitStage(ctx: RequestContext): Promise<GatehouseError | null> {
    let slot: ConcurrencySlot | null = null;
    if (c !== null) {
      // Take the slot before waiting on the store, so that waiting requests count too, and hand
      // its release to onFinish at once: a client that goes away while we wait still frees it.
      if (c.inFlight.count >= c.max) return concurrencyDenied(c);
      c.inFlight.count++;
      slot = new ConcurrencySlot(c.inFlight);
      ctx.onFinish.push(slot.release);
    }
    const t = newTally();
    // All rate limits at once: one round trip (ioredis writes them back to back on one socket).
    if (rates.length > 0) await decideAll(ctx, t, rates, false);
    if (quotas.length > 0 && !t.rateDenied && !t.storeDown) await decideAll(ctx, t, quotas, true);
    const denial = conclude(ctx, t, policyHeader);
    if (denial !== null) {
      refundAll(ctx, t, rates, quotas);
      slot?.release();
    }
    return denial;
  };
}

/** One request's slot on the Redis path: released once, by whichever comes first. */
class ConcurrencySlot {
  private held = true;
  private readonly n: InFlight;
  readonly release = (): void => {
    if (!this.held) return;
    this.held = false;
    this.n.count--;
  };

  constructor(n: InFlight) {
    this.n = n;
  }
}

/** Decide every policy of one kind; memory answers are recorded at once (their object is reused). */
async function decideAll(ctx: RequestContext, t: Tally, bound: readonly (BoundRate | BoundQuota)[], quota: boolean): Promise<void> {
  if (bound.length === 1) {
    // The common case: one policy, no arrays, no Promise.all.
    const b = bound[0]!;
    const d = b.limiter.consume(b.key(ctx));
    record(t, 0, b.name, isPromise(d) ? await d : d, quota);
    return;
  }
  let pending: Promise<LimitDecision>[] | null = null;
  let pendingIndex: number[] | null = null;
  for (let i = 0; i < bound.length; i++) {
    const b = bound[i]!;
    const d = b.limiter.consume(b.key(ctx));
    if (isPromise(d)) {
      (pending ??= []).push(d);
      (pendingIndex ??= []).push(i);
    } else record(t, i, b.name, d, quota);
  }
  if (pending === null) return;
  const decisions = await Promise.all(pending);
  for (let j = 0; j < decisions.length; j++) {
    const i = pendingIndex![j]!;
    record(t, i, bound[i]!.name, decisions[j]!, quota);
  }
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown }).then === 'function';
}

/** The `preAuth` stage: one bucket per client IP (IPv6: per /64), shared by every route. */
function buildPreAuthStage(
  config: GatehouseConfig,
  services: GatewayServices,
  redis: RedisStore | null,
  tableFor: (policy: string, signature: string) => LruTable,
): Stage | null {
  const pre = config.preAuthLimit;
  if (!pre) return null;
  const policy = { name: PRE_AUTH_POLICY, limit: pre.limit, window: pre.window, burst: pre.burst };
  const header = policyItem(PRE_AUTH_POLICY, pre.limit, pre.window);
  const key = compileKey([{ kind: 'ip' }], '');
  const onStoreError = pre.onStoreError ?? config.redis?.onError ?? 'failClosed';
  const limiter =
    pre.store === 'redis'
      ? redis?.rateLimiter(policy, onStoreError)
      : createMemoryRateLimiter(policy, { now: services.now, table: tableFor(PRE_AUTH_POLICY, `preauth:${pre.limit}:${pre.window}:${pre.burst}`) });
  if (!limiter) return null;

  const deny = (ctx: RequestContext, d: LimitDecision): GatehouseError | null => {
    if (d.allowed) return null;
    if (d.storeError) {
      return new ServiceUnavailable('GH_ERR_LIMIT_STORE_UNAVAILABLE', STORE_DOWN_DESCRIPTION, { retryAfter: 1, detail: 'limit store unavailable for the pre-auth limit (failClosed)' });
    }
    // Only a refusal carries the headers: the pre-auth limit is a flood guard, not a budget to advertise.
    ctx.responseHeaders.push([RATELIMIT_POLICY_FIELD, header], [RATELIMIT_FIELD, serviceLimitItem(PRE_AUTH_POLICY, 0, d.retryAfter)]);
    return new RateLimited('GH_ERR_LIMIT_RATE_EXCEEDED', d.retryAfter / 1000, { detail: 'pre-auth limit per client IP' });
  };

  if (limiter.store === 'memory') {
    return function preAuthLimitStage(ctx: RequestContext): GatehouseError | null {
      return deny(ctx, limiter.consume(key(ctx)) as LimitDecision);
    };
  }
  return async function preAuthLimitStage(ctx: RequestContext): Promise<GatehouseError | null> {
    return deny(ctx, await limiter.consume(key(ctx)));
  };
}
