import type { LimitDecision, QuotaLimiter, QuotaPolicy } from './limiter.js';
import { LruTable } from './memory.js';

const DAY_MS = 86_400_000;

/**
 * The calendar period (UTC day or UTC month) around a time, cached: it is recomputed only when
 * the clock leaves it, so the hot path does one comparison.
 *
 * @example
 * ```ts
 * const period = new CalendarPeriod('month');
 * period.update(Date.UTC(2026, 1, 10)); // start = 2026-02-01T00:00Z, end = 2026-03-01T00:00Z, label '2026-02'
 * ```
 */
export class CalendarPeriod {
  readonly kind: 'day' | 'month';
  /** ms since epoch, inclusive. */
  start = 0;
  /** ms since epoch, exclusive. */
  end = 0;
  /** `2026-12-04` or `2026-12`: part of the store key, so a new period starts from zero. */
  label = '';

  constructor(kind: 'day' | 'month') {
    this.kind = kind;
  }

  /** Move to the period containing `now` (ms since epoch); a no-op while it stays inside. */
  update(now: number): this {
    if (now >= this.start && now < this.end) return this;
    if (this.kind === 'day') {
      this.start = Math.floor(now / DAY_MS) * DAY_MS;
      this.end = this.start + DAY_MS;
      this.label = new Date(this.start).toISOString().slice(0, 10);
    } else {
      const date = new Date(now);
      const year = date.getUTCFullYear();
      const month = date.getUTCMonth();
      this.start = Date.UTC(year, month, 1);
      this.end = Date.UTC(year, month + 1, 1);
      this.label = new Date(this.start).toISOString().slice(0, 7);
    }
    return this;
  }

  /** Length of the current period in seconds (the `w` of RateLimit-Policy). */
  get seconds(): number {
    return Math.round((this.end - this.start) / 1000);
  }
}

/**
 * Options of {@link createMemoryQuota}.
 *
 * @example
 * ```ts
 * const options: MemoryQuotaOptions = { now: () => Date.UTC(2026, 0, 1), maxKeys: 10_000 };
 * ```
 */
export interface MemoryQuotaOptions {
  /** ms since epoch; injectable for tests. Default `Date.now`. */
  now?: () => number;
  /** Bound on distinct keys (LRU eviction). Default 100 000. */
  maxKeys?: number;
  /** Reuse a table (state kept across config reloads). */
  table?: LruTable;
}

/**
 * An in-memory calendar quota: at most `limit` admitted requests per key per UTC day or month.
 * A refused request does not count. Per process (see docs/rate-limits.md).
 *
 * @example
 * ```ts
 * const quota = createMemoryQuota({ name: 'daily', limit: 1000, period: 'day' });
 * const d = quota.consume('client-42'); // d.remaining = 999, d.window = ms to UTC midnight
 * ```
 */
export function createMemoryQuota(policy: QuotaPolicy, options: MemoryQuotaOptions = {}): MemoryQuotaLimiter {
  return new MemoryQuota(policy, options);
}

/**
 * The in-memory quota: decides synchronously.
 *
 * @example
 * ```ts
 * const quota: MemoryQuotaLimiter = createMemoryQuota({ name: 'daily', limit: 100, period: 'day' });
 * quota.consume('k').remaining; // 99
 * ```
 */
export interface MemoryQuotaLimiter extends QuotaLimiter {
  readonly store: 'memory';
  readonly table: LruTable;
  consume(key: string): LimitDecision;
}

class MemoryQuota implements MemoryQuotaLimiter {
  readonly store = 'memory' as const;
  readonly policy: QuotaPolicy;
  readonly table: LruTable;
  private readonly now: () => number;
  private readonly period: CalendarPeriod;
  private readonly decision: LimitDecision = { allowed: true, remaining: 0, retryAfter: 0, window: 0, storeError: false };

  constructor(policy: QuotaPolicy, options: MemoryQuotaOptions) {
    this.policy = policy;
    this.now = options.now ?? Date.now;
    this.table = options.table ?? new LruTable(options.maxKeys ?? 100_000);
    this.period = new CalendarPeriod(policy.period);
  }

  // Hot path.
  consume(key: string): LimitDecision {
    const now = this.now();
    const period = this.period.update(now);
    const table = this.table;
    const d = this.decision;
    let slot = table.find(key);
    const count = slot >= 0 && table.a[slot] === period.start ? table.b[slot]! : 0;
    d.window = period.end - now;
    if (count >= this.policy.limit) {
      d.allowed = false;
      d.remaining = 0;
      d.retryAfter = d.window;
      return d;
    }
    if (slot < 0) slot = table.insert(key);
    table.a[slot] = period.start;
    table.b[slot] = count + 1;
    d.allowed = true;
    d.remaining = this.policy.limit - count - 1;
    d.retryAfter = 0;
    return d;
  }

  refund(key: string): void {
    const slot = this.table.find(key);
    if (slot >= 0 && this.table.a[slot] === this.period.start && this.table.b[slot]! > 0) this.table.b[slot]!--;
  }
}
