import { createCipheriv, createDecipheriv, createHmac, hash, randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { failFastRedisClient } from '../store/redis-client.js';
import type { Logger } from 'pino';
import type { GatehouseErrorCode } from '../errors.js';

/**
 * What gatehouse remembers about one opaque token. Never the token itself: entries are found by
 * the SHA-256 of the token, and in Redis their value is sealed with a key derived from the token,
 * so someone reading the store can neither recover the opaque token nor use what is stored.
 *
 * @example
 * ```ts
 * const inactive: IntrospectionEntry = { active: false, expiresAt: Date.now() + 5000, checkedAt: Date.now() };
 * ```
 */
export type IntrospectionEntry =
  | {
      readonly active: true;
      /** The checked introspection response (or the verified JWT's claims). */
      readonly claims: Readonly<Record<string, unknown>>;
      /** ms since epoch after which the entry is not used. */
      readonly expiresAt: number;
      /** ms since epoch when the authorization server gave this answer: readers cap the entry's life by their own `cacheTtl` from here. */
      readonly checkedAt: number;
      /** The JWT the authorization server handed out (accept: application/jwt), used for every upstream. */
      readonly upstreamToken?: string;
      /** JWTs gatehouse minted, by audience (plain JSON and RFC 9701 introspection). */
      readonly minted: Record<string, { jwt: string; exp: number; kid: string }>;
    }
  | {
      readonly active: false;
      readonly expiresAt: number;
      /** ms since epoch when the token was refused: readers cap the entry's life by their own negative TTL from here. */
      readonly checkedAt: number;
      /** Why it was refused, when not simply "not active" (e.g. `GH_ERR_INTROSPECTION_EXPIRED`): a cached refusal keeps its code. */
      readonly code?: GatehouseErrorCode;
    };

/**
 * The introspection cache of one issuer: a bounded in-memory LRU, and Redis behind it when the
 * top-level `redis` section is configured (shared by several gateways).
 *
 * Keys are SHA-256 digests of the token (computed by {@link tokenKey}); values stay on this
 * side of the token: a Redis value is AES-256-GCM sealed under a second, independent digest of
 * the token, which only a request carrying the token can compute.
 *
 * @example
 * ```ts
 * const cache = createIntrospectionCache({ issuer: 'opaque', maxEntries: 10_000, log });
 * const key = tokenKey(token);
 * const hit = cache.peek(key, Date.now()) ?? (await cache.get(key, token, Date.now()));
 * ```
 */
export interface IntrospectionCache {
  /** Memory only, synchronous (hot path). `undefined` on a miss or an expired entry. */
  peek(key: string, now: number): IntrospectionEntry | undefined;
  /**
   * Memory, then Redis (an entry read from Redis lives at most `maxAge`/`negativeMaxAge` from its
   * `checkedAt`). Never throws: a store failure is a miss (logged).
   */
  get(key: string, token: string, now: number): Promise<IntrospectionEntry | undefined>;
  /** Stores until `entry.expiresAt`; entries already expired are dropped. Never throws. */
  set(key: string, token: string, entry: IntrospectionEntry, now: number): Promise<void>;
  /** Waits (at most the Redis timeout, at least 1 s) for the shared store to connect. Never throws. */
  start(): Promise<void>;
  /** Entries in memory (for tests and metrics). */
  readonly size: number;
  close(): Promise<void>;
}

/**
 * Options of {@link createIntrospectionCache}.
 *
 * @example
 * ```ts
 * const options: IntrospectionCacheOptions = { issuer: 'opaque', maxEntries: 10_000, log, redis: config.redis };
 * ```
 */
export interface IntrospectionCacheOptions {
  /** The issuer's configured name: part of every Redis key. */
  issuer: string;
  /** Bound of the in-memory LRU of active answers (refusals: a quarter of it, apart). */
  maxEntries: number;
  log: Logger;
  /**
   * Part of every Redis key: a digest of how entries were checked and minted, so gateways share
   * entries only when they would have decided the same (see introspection.ts).
   */
  namespace?: string;
  /**
   * Keys the sealing of Redis values; never stored. Gateways sharing a cache must share it
   * (introspection.ts derives it from the introspection client credential). Default: random per
   * process (nothing shared).
   */
  secret?: Uint8Array;
  /**
   * The longest this gateway uses an active entry read from the shared store, in ms from its
   * `checkedAt` (its own `cacheTtl`): another gateway's longer TTL never extends it. Default: no
   * cap beyond the entry's `expiresAt`.
   */
  maxAge?: number;
  /** The same for an inactive (refused) entry: its own `min(negativeCacheTtl, cacheTtl)`. */
  negativeMaxAge?: number;
  /** Shared store; absent = memory only. `cluster`: `url` names one node of a Redis Cluster. */
  redis?: { url: string; keyPrefix: string; timeout: number; cluster?: boolean };
}

/**
 * The cache key of a token: base64url SHA-256. Hot path: one digest per request.
 *
 * @example
 * ```ts
 * tokenKey('2YotnFZFEjr1zCsicMWpAA'); // 'b2x...' (43 characters)
 * ```
 */
export function tokenKey(token: string): string {
  // One-shot crypto.hash: about a third of the cost of createHash().update().digest().
  return hash('sha256', token, 'base64url');
}

/**
 * Domain-separated from {@link tokenKey} (knowing the cache key does not give the sealing key),
 * and keyed with a gateway secret that is never in the store: someone who can write to Redis
 * cannot forge an entry for a token of their choosing.
 */
function sealingKey(token: string, secret: Uint8Array): Buffer {
  return createHmac('sha256', secret).update('gatehouse introspection cache v1\0').update(token).digest();
}

/**
 * Seal an entry for a shared store: AES-256-GCM under a key derived from the token and the
 * gateway's `secret`, with the store key as additional data (an entry cannot be moved to
 * another key).
 *
 * @example
 * ```ts
 * const sealed = sealEntry(token, tokenKey(token), entry, secret);
 * openEntry(token, tokenKey(token), sealed, secret); // entry
 * ```
 */
export function sealEntry(token: string, key: string, entry: IntrospectionEntry, secret: Uint8Array): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(token, secret), iv);
  cipher.setAAD(Buffer.from(key));
  const body = Buffer.concat([cipher.update(JSON.stringify(entry), 'utf8'), cipher.final()]);
  return `v1.${iv.toString('base64url')}.${body.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
}

/**
 * Open a value sealed by {@link sealEntry}; `undefined` when it does not open (wrong token,
 * tampered, or not an entry). An entry without `checkedAt` (written by a gatehouse before the
 * readers' TTL cap) is not an entry either: its age is unknown, so no reader could bound it by
 * its own `cacheTtl`. It is a miss: the token is introspected again and the entry rewritten.
 *
 * @example
 * ```ts
 * const entry = openEntry(token, key, await redis.get(redisKey), secret);
 * ```
 */
export function openEntry(token: string, key: string, sealed: string, secret: Uint8Array): IntrospectionEntry | undefined {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== 'v1') return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealingKey(token, secret), Buffer.from(parts[1]!, 'base64url'));
    decipher.setAAD(Buffer.from(key));
    decipher.setAuthTag(Buffer.from(parts[3]!, 'base64url'));
    const text = Buffer.concat([decipher.update(Buffer.from(parts[2]!, 'base64url')), decipher.final()]).toString('utf8');
    const entry = JSON.parse(text) as IntrospectionEntry;
    if (typeof entry !== 'object' || entry === null || typeof entry.expiresAt !== 'number' || typeof entry.checkedAt !== 'number' || typeof entry.active !== 'boolean') return undefined;
    return entry;
  } catch {
    return undefined;
  }
}

/**
 * Build the cache of one issuer.
 *
 * @example
 * ```ts
 * const cache = createIntrospectionCache({ issuer: 'opaque', maxEntries: 10_000, log, redis: config.redis });
 * await cache.set(tokenKey(token), token, { active: false, expiresAt: Date.now() + 5000, checkedAt: Date.now() }, Date.now());
 * await cache.close();
 * ```
 */
export function createIntrospectionCache(options: IntrospectionCacheOptions): IntrospectionCache {
  // Two LRUs: refusals live apart, so a flood of forged tokens (each one a negative entry) can
  // never evict the answers for real tokens and turn every request into an introspection.
  const memory = new Map<string, IntrospectionEntry>();
  const negative = new Map<string, IntrospectionEntry>();
  const maxEntries = Math.max(1, options.maxEntries);
  const maxNegative = Math.max(1, Math.ceil(maxEntries / 4));
  const redis = options.redis ? failFastRedisClient(options.redis, options.log, 'introspection cache', { issuer: options.issuer }) : null;
  const secret = options.secret ?? randomBytes(32);
  const maxAge = options.maxAge ?? Infinity;
  const negativeMaxAge = options.negativeMaxAge ?? Infinity;
  const prefix = options.redis ? `${options.redis.keyPrefix}introspection:${options.issuer}:${options.namespace ? `${options.namespace}:` : ''}` : '';

  function remember(key: string, entry: IntrospectionEntry): void {
    const map = entry.active ? memory : negative;
    (entry.active ? negative : memory).delete(key);
    map.delete(key);
    map.set(key, entry);
    if (map.size > (entry.active ? maxEntries : maxNegative)) {
      // Map iteration order is insertion order: the first key is the least recently used.
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
  }

  /** Hot path: one Map lookup for a warm positive entry. */
  function peek(key: string, now: number): IntrospectionEntry | undefined {
    let map = memory;
    let entry = memory.get(key);
    if (entry === undefined) {
      map = negative;
      entry = negative.get(key);
      if (entry === undefined) return undefined;
    }
    if (entry.expiresAt <= now) {
      map.delete(key);
      return undefined;
    }
    // Refresh recency (LRU).
    map.delete(key);
    map.set(key, entry);
    return entry;
  }

  /**
   * An entry read from the shared store, its life capped by this gateway's own TTL counted from
   * when the authorization server answered: gateways share a store and a namespace whatever their
   * `cacheTtl`, and the writer's `expiresAt` reflects the writer's TTL. A `checkedAt` ahead of
   * this clock (skew between gateways) counts as now, so the cap is never later than now + TTL.
   * `undefined` when nothing of it is left.
   */
  function capped(entry: IntrospectionEntry, now: number): IntrospectionEntry | undefined {
    const limit = Math.min(entry.checkedAt, now) + (entry.active ? maxAge : negativeMaxAge);
    if (entry.expiresAt <= now || limit <= now) return undefined;
    return limit < entry.expiresAt ? { ...entry, expiresAt: limit } : entry;
  }

  return {
    peek,
    async get(key, token, now) {
      const local = peek(key, now);
      if (local !== undefined || !redis) return local;
      if (redis.status !== 'ready') return undefined;
      try {
        const sealed = await redis.get(prefix + key);
        if (sealed === null) return undefined;
        // The whole Redis key is the additional data: a value copied to another issuer's or
        // namespace's key does not open.
        const entry = openEntry(token, prefix + key, sealed, secret);
        if (!entry) return undefined;
        const kept = capped(entry, now);
        if (kept === undefined) return undefined;
        remember(key, kept);
        return kept;
      } catch (err) {
        options.log.warn({ err: (err as Error).message, issuer: options.issuer }, 'introspection cache: redis read failed; introspecting');
        return undefined;
      }
    },
    async set(key, token, entry, now) {
      const ttl = entry.expiresAt - now;
      if (ttl <= 0) return;
      remember(key, entry);
      if (!redis || redis.status !== 'ready') return;
      try {
        await redis.set(prefix + key, sealEntry(token, prefix + key, entry, secret), 'PX', Math.ceil(ttl));
      } catch (err) {
        options.log.warn({ err: (err as Error).message, issuer: options.issuer }, 'introspection cache: redis write failed');
      }
    },
    async start() {
      if (!redis || redis.status === 'ready') return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1000, options.redis!.timeout));
        timer.unref();
        function done() {
          clearTimeout(timer);
          redis!.off('ready', done);
          resolve();
        }
        redis!.once('ready', done);
      });
    },
    get size() {
      return memory.size + negative.size;
    },
    async close() {
      memory.clear();
      negative.clear();
      if (redis) {
        try {
          await redis.quit();
        } catch {
          redis.disconnect();
        }
      }
    },
  };
}

const sharedCaches = new Map<string, { cache: IntrospectionCache; refs: number }>();

/**
 * A cache that outlives a config reload: every authenticator built with the same `identity`
 * (the same issuer, checks and minting settings) gets the same cache, so a reload that changes
 * something else does not send every token back to introspection. Pair with `release()`; the
 * last holder closes it.
 *
 * @example
 * ```ts
 * const cache = acquireIntrospectionCache(JSON.stringify([issuer, config.gateway]), { issuer: issuer.name, maxEntries, log });
 * await cache.release();
 * ```
 */
export function acquireIntrospectionCache(
  identity: string,
  options: IntrospectionCacheOptions,
): IntrospectionCache & { release(): Promise<void> } {
  let slot = sharedCaches.get(identity);
  if (!slot) {
    slot = { cache: createIntrospectionCache(options), refs: 0 };
    sharedCaches.set(identity, slot);
  }
  slot.refs++;
  const held = slot;
  let released = false;
  return {
    peek: held.cache.peek,
    get: held.cache.get,
    set: held.cache.set,
    start: held.cache.start,
    get size() {
      return held.cache.size;
    },
    close: held.cache.close,
    async release() {
      if (released) return;
      released = true;
      held.refs--;
      if (held.refs > 0) return;
      if (sharedCaches.get(identity) === held) sharedCaches.delete(identity);
      await held.cache.close();
    },
  };
}

