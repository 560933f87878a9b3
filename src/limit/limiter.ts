/**
 * The limiter interface shared by the in-memory and the Redis stores (issue: unrestricted
 * resource consumption). docs/rate-limits.md gives the exact semantics.
 *
 * A rate limit is GCRA (the generic cell rate algorithm, a token bucket without a timer):
 * - emission interval `T = window / limit` (ms per request at the steady rate);
 * - `burst` requests may arrive back to back (default: `limit`);
 * - state per key is one number, the theoretical arrival time `TAT`.
 *
 * A request at time `t` is admitted when `max(TAT, t) + T - burst·T <= t`; admitting it sets
 * `TAT = max(TAT, t) + T`. A denied request changes nothing.
 */

/**
 * One decision. The memory store hands back the same object on every call (no allocation per
 * decision): read it before the next call on the same limiter, i.e. before any `await`.
 *
 * @example
 * ```ts
 * const d = limiter.consume('client-42');
 * if (!('then' in d) && !d.allowed) return new RateLimited('GH_ERR_LIMIT_RATE_EXCEEDED', d.retryAfter / 1000);
 * ```
 */
export interface LimitDecision {
  /** Whether the request may go on (for a store error: what `failOpen` / `failClosed` says). */
  allowed: boolean;
  /** Requests the key may still make right now (after this one, when admitted). */
  remaining: number;
  /** ms until one more request would be admitted; 0 when admitted. */
  retryAfter: number;
  /**
   * ms of the "effective window" of the RateLimit header: within this time the key can make no
   * more than `remaining` requests (rate: until the next unit refills; quota: until the period ends).
   */
  window: number;
  /** The store could not decide (Redis unreachable or too slow); `allowed` follows the policy. */
  storeError: boolean;
}

/**
 * A rate-limit policy in store-neutral terms (config durations already in ms).
 *
 * @example
 * ```ts
 * const policy: RatePolicy = { name: 'per-client', limit: 100, window: 60_000, burst: 100 };
 * ```
 */
export interface RatePolicy {
  readonly name: string;
  readonly limit: number;
  /** ms */
  readonly window: number;
  readonly burst: number;
}

/**
 * A calendar quota in store-neutral terms: `limit` requests per UTC day or month.
 *
 * @example
 * ```ts
 * const policy: QuotaPolicy = { name: 'daily', limit: 10_000, period: 'day' };
 * ```
 */
export interface QuotaPolicy {
  readonly name: string;
  readonly limit: number;
  readonly period: 'day' | 'month';
}

/**
 * Decides one rate-limit policy for many keys. The memory store answers synchronously.
 *
 * @example
 * ```ts
 * const limiter = createMemoryRateLimiter({ name: 'per-ip', limit: 10, window: 1000, burst: 10 });
 * const d = limiter.consume(ctx.clientIp);
 * ```
 */
export interface RateLimiter {
  readonly policy: RatePolicy;
  readonly store: 'memory' | 'redis';
  /** Count one request for `key` if the policy admits it. */
  consume(key: string): LimitDecision | Promise<LimitDecision>;
  /**
   * Take back one admitted request (another policy of the route refused it): `TAT -= T`.
   * Exact, because GCRA admissions add up: what is taken back is what was added.
   */
  refund(key: string): void;
}

/**
 * Decides one quota for many keys. `refund` gives back a unit counted for a request that another
 * quota of the same route then refused.
 *
 * @example
 * ```ts
 * const d = await quota.consume('client-42');
 * ```
 */
export interface QuotaLimiter {
  readonly policy: QuotaPolicy;
  readonly store: 'memory' | 'redis';
  consume(key: string): LimitDecision | Promise<LimitDecision>;
  refund(key: string): void;
}

/**
 * The emission interval and burst tolerance of a policy, in ms.
 *
 * @example
 * ```ts
 * gcraParameters({ name: 'p', limit: 100, window: 60_000, burst: 10 }); // { interval: 600, capacity: 6000 }
 * ```
 */
export function gcraParameters(policy: RatePolicy): { interval: number; capacity: number } {
  const interval = policy.window / policy.limit;
  // `capacity` = burst·T = τ + T: how far TAT may run ahead of now, this request included.
  return { interval, capacity: policy.burst * interval };
}

/**
 * A tiny slack (ms) so that float sums like 0.1+0.2 do not cost a whole request.
 *
 * @example
 * ```ts
 * if (now + EPSILON_MS < allowAt) refuse();
 * ```
 */
export const EPSILON_MS = 1e-6;
