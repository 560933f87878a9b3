import type { Principal } from '../pipeline/context.js';
import type { VerificationKey } from './keys.js';

/**
 * One verified token. Everything a cache hit needs is precomputed, so a hit allocates nothing
 * and costs no cryptography (issue 8, "hot path").
 *
 * @example
 * ```ts
 * cache.set(token, { issuer: 'main', principal, key, validFrom: -Infinity, validUntil: exp * 1000 + skew });
 * ```
 */
export interface CachedToken {
  /** The configured issuer name that verified it. */
  readonly issuer: string;
  readonly principal: Principal;
  /** The key that verified the signature; `retired` once it leaves the key set. */
  readonly key: VerificationKey | null;
  /** ms: the token is valid from this instant (nbf − skew), inclusive. */
  readonly validFrom: number;
  /** ms: the token is valid until this instant (min(exp, iat + maxTokenAge) + skew), exclusive. */
  readonly validUntil: number;
}

/**
 * A bounded verified-token cache keyed by the token string. It approximates LRU with two
 * generations: lookups hit the young map first (one `Map.get`); an entry found in the old map
 * is promoted; when the young map is half full it becomes the old one and the previous old
 * generation is dropped whole. At most `maxEntries` entries are held.
 *
 * Times are re-checked on every hit; entries verified with a key that has left the key set
 * are dropped on the next lookup.
 *
 * @example
 * ```ts
 * const cache = new TokenCache(10_000);
 * const hit = cache.get(token, Date.now());
 * if (hit) ctx.principal = hit.principal;
 * ```
 */
export class TokenCache {
  private young = new Map<string, CachedToken>();
  private old = new Map<string, CachedToken>();
  private readonly generation: number;
  readonly maxEntries: number;

  constructor(maxEntries: number) {
    this.maxEntries = Math.max(2, Math.floor(maxEntries));
    this.generation = Math.max(1, Math.floor(this.maxEntries / 2));
  }

  /** A still-valid entry, or undefined (absent, expired, not yet valid, or its key retired). Hot path. */
  get(token: string, now: number): CachedToken | undefined {
    let entry = this.young.get(token);
    if (entry === undefined) {
      entry = this.old.get(token);
      if (entry === undefined) return undefined;
      this.old.delete(token);
      if (!this.usable(entry, now)) return undefined;
      this.insert(token, entry);
      return entry;
    }
    if (!this.usable(entry, now)) {
      this.young.delete(token);
      return undefined;
    }
    return entry;
  }

  private usable(entry: CachedToken, now: number): boolean {
    return now < entry.validUntil && now >= entry.validFrom && (entry.key === null || !entry.key.retired);
  }

  set(token: string, entry: CachedToken): void {
    this.old.delete(token);
    this.insert(token, entry);
  }

  private insert(token: string, entry: CachedToken): void {
    this.young.set(token, entry);
    if (this.young.size >= this.generation) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  delete(token: string): void {
    this.young.delete(token);
    this.old.delete(token);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }

  get size(): number {
    return this.young.size + this.old.size;
  }
}
