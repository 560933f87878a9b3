import { EPSILON_MS, gcraParameters, type LimitDecision, type RateLimiter, type RatePolicy } from './limiter.js';

/**
 * A bounded map from key to two numbers, with least-recently-used eviction. O(1) per lookup,
 * insert and eviction; no timer per key; the numbers live in typed arrays, so a decision
 * allocates nothing beyond the key string the caller already has.
 *
 * Hot path.
 *
 * @example
 * ```ts
 * const table = new LruTable(100_000);
 * let slot = table.find('client-42');
 * if (slot < 0) slot = table.insert('client-42');
 * table.a[slot] = Date.now();
 * ```
 */
export class LruTable {
  /** The most keys held; inserting one more evicts the least recently used. */
  readonly maxKeys: number;
  /** First number per slot (GCRA: TAT in ms; quota: start of the period). */
  a: Float64Array;
  /** Second number per slot (quota: the count). */
  b: Float64Array;
  /** Keys evicted so far (for metrics and tests). */
  evictions = 0;
  private readonly index = new Map<string, number>();
  private keys: (string | undefined)[];
  private prev: Int32Array;
  private next: Int32Array;
  /** Most recently used slot, or -1. */
  private head = -1;
  /** Least recently used slot, or -1. */
  private tail = -1;
  private used = 0;

  constructor(maxKeys: number) {
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new RangeError('maxKeys must be a positive integer');
    this.maxKeys = maxKeys;
    // Grow on demand (doubling) so that a large bound costs nothing until it is used.
    const initial = Math.min(maxKeys, 1024);
    this.a = new Float64Array(initial);
    this.b = new Float64Array(initial);
    this.prev = new Int32Array(initial);
    this.next = new Int32Array(initial);
    this.keys = new Array<string | undefined>(initial);
  }

  /** Keys held now (never more than `maxKeys`). */
  get size(): number {
    return this.index.size;
  }

  /** Slots allocated (never more than `maxKeys`). */
  get capacity(): number {
    return this.a.length;
  }

  /** The slot of `key` marked as just used, or -1. */
  find(key: string): number {
    const slot = this.index.get(key);
    if (slot === undefined) return -1;
    this.touch(slot);
    return slot;
  }

  /** Add `key` (absent) as the most recently used; evicts the least recently used when full. Values start at 0. */
  insert(key: string): number {
    let slot: number;
    if (this.index.size >= this.maxKeys) {
      slot = this.tail;
      this.unlink(slot);
      this.index.delete(this.keys[slot]!);
      this.evictions++;
    } else {
      if (this.used === this.a.length) this.grow();
      slot = this.used++;
    }
    this.keys[slot] = key;
    this.index.set(key, slot);
    this.a[slot] = 0;
    this.b[slot] = 0;
    this.pushFront(slot);
    return slot;
  }

  /** Forget every key. */
  clear(): void {
    this.index.clear();
    this.keys.fill(undefined);
    this.head = this.tail = -1;
    this.used = 0;
  }

  private touch(slot: number): void {
    if (slot === this.head) return;
    this.unlink(slot);
    this.pushFront(slot);
  }

  private unlink(slot: number): void {
    const p = this.prev[slot]!;
    const n = this.next[slot]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
  }

  private pushFront(slot: number): void {
    this.prev[slot] = -1;
    this.next[slot] = this.head;
    if (this.head >= 0) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail < 0) this.tail = slot;
  }

  private grow(): void {
    const size = Math.min(this.maxKeys, this.a.length * 2);
    this.a = copyInto(new Float64Array(size), this.a);
    this.b = copyInto(new Float64Array(size), this.b);
    this.prev = copyInto(new Int32Array(size), this.prev);
    this.next = copyInto(new Int32Array(size), this.next);
    this.keys.length = size;
  }
}

function copyInto<T extends Float64Array | Int32Array>(target: T, source: T): T {
  target.set(source);
  return target;
}

/**
 * Options of {@link createMemoryRateLimiter}.
 *
 * @example
 * ```ts
 * const options: MemoryRateLimiterOptions = { now: () => frozen, maxKeys: 10_000 };
 * ```
 */
export interface MemoryRateLimiterOptions {
  /** ms since epoch; injectable for tests. Default `Date.now`. */
  now?: () => number;
  /** Bound on distinct keys (LRU eviction). Default 100 000. */
  maxKeys?: number;
  /** Reuse a table (state kept across config reloads). */
  table?: LruTable;
}

/**
 * The in-memory limiter: decides synchronously.
 *
 * @example
 * ```ts
 * const limiter: MemoryRateLimiter = createMemoryRateLimiter(policy);
 * limiter.consume('k').allowed; // no await
 * ```
 */
export interface MemoryRateLimiter extends RateLimiter {
  readonly store: 'memory';
  readonly table: LruTable;
  consume(key: string): LimitDecision;
}

/**
 * An in-memory GCRA rate limiter: exact within one process, O(1) per decision, bounded memory.
 * With several workers or instances each one counts on its own (see docs/rate-limits.md).
 *
 * @example
 * ```ts
 * const limiter = createMemoryRateLimiter({ name: 'per-ip', limit: 10, window: 1000, burst: 10 });
 * const d = limiter.consume('203.0.113.7');
 * if (!d.allowed) console.log(`retry in ${d.retryAfter} ms`);
 * ```
 */
export function createMemoryRateLimiter(policy: RatePolicy, options: MemoryRateLimiterOptions = {}): MemoryRateLimiter {
  return new GcraMemoryLimiter(policy, options);
}

class GcraMemoryLimiter implements MemoryRateLimiter {
  readonly store = 'memory' as const;
  readonly policy: RatePolicy;
  readonly table: LruTable;
  private readonly now: () => number;
  private readonly interval: number;
  private readonly capacity: number;
  /** Reused for every decision: read it before the next call. */
  private readonly decision: LimitDecision = { allowed: true, remaining: 0, retryAfter: 0, window: 0, storeError: false };

  constructor(policy: RatePolicy, options: MemoryRateLimiterOptions) {
    this.policy = policy;
    this.now = options.now ?? Date.now;
    this.table = options.table ?? new LruTable(options.maxKeys ?? 100_000);
    const { interval, capacity } = gcraParameters(policy);
    this.interval = interval;
    this.capacity = capacity;
  }

  // Hot path.
  consume(key: string): LimitDecision {
    const now = this.now();
    const table = this.table;
    const d = this.decision;
    let slot = table.find(key);
    let tat = slot >= 0 ? table.a[slot]! : now;
    if (tat < now) tat = now;
    const newTat = tat + this.interval;
    const allowAt = newTat - this.capacity;
    if (now + EPSILON_MS < allowAt) {
      d.allowed = false;
      d.remaining = 0;
      d.retryAfter = allowAt - now;
      d.window = d.retryAfter;
      return d;
    }
    if (slot < 0) slot = table.insert(key);
    table.a[slot] = newTat;
    const remaining = Math.floor((now - allowAt + EPSILON_MS) / this.interval);
    d.allowed = true;
    d.remaining = remaining;
    d.retryAfter = 0;
    // The next unit refills at allowAt + (remaining + 1)·T.
    d.window = allowAt + (remaining + 1) * this.interval - now;
    return d;
  }

  refund(key: string): void {
    const slot = this.table.find(key);
    if (slot >= 0) this.table.a[slot] = this.table.a[slot]! - this.interval;
  }
}
