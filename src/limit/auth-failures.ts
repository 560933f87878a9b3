import type { GatehouseError } from '../errors.js';

/** The name `authFailureLimit` carries in logs and store-error metrics. */
export const AUTH_FAILURE_POLICY = 'auth-failures';

/**
 * `authFailureLimit`: failed authentications per client address. `limit` failures within
 * `window` block the address for `blockFor`: its requests to routes that need a token are then
 * refused before their token is read (docs/rate-limits.md, "Failed authentications").
 */
export interface AuthFailurePolicy {
  readonly limit: number;
  /** ms */
  readonly window: number;
  /** ms */
  readonly blockFor: number;
}

/**
 * Where the failures and blocks are kept: in this process, or in Redis (shared by every worker
 * and gateway). `blockedFor` answers the ms the key is still blocked (0: not blocked), or null
 * when the store could not say.
 */
export interface AuthFailureStore {
  readonly store: 'memory' | 'redis';
  blockedFor(key: string): number | null | Promise<number | null>;
  /** Count one failure; resolves true when it starts a block (for the log). */
  record(key: string): boolean | Promise<boolean>;
}

/**
 * Whether a refusal counts as a failed authentication: a credential was presented and it was
 * not good — an invalid, expired or forged token (`invalid_token`), a DPoP proof that fails
 * (`invalid_dpop_proof`), a token-handler cookie that does not decrypt. Not a request without a
 * credential, not a DPoP nonce challenge (a normal step), not step-up or scope (the token was good).
 *
 * @example
 * ```ts
 * if (countsAsAuthFailure(error)) store.record(key);
 * ```
 */
export function countsAsAuthFailure(error: GatehouseError): boolean {
  if (error.status !== 401) return false;
  return error.oauthError === 'invalid_token' || error.oauthError === 'invalid_dpop_proof' || error.code === 'GH_ERR_COOKIE_INVALID';
}

interface Entry {
  /** When the current window of failures began (ms). */
  start: number;
  count: number;
  /** 0, or until when the key is blocked (ms). */
  blockedUntil: number;
}

/**
 * The in-memory store: one entry per key, at most `maxKeys` (the oldest dropped beyond: an entry
 * lost costs a blocked address its block, so size `memoryStore.maxKeys` for the addresses you
 * expect). Kept across reloads by the limits area, so a reload unblocks no one.
 *
 * @example
 * ```ts
 * const table = new AuthFailureTable({ limit: 10, window: 60_000, blockFor: 900_000 }, 100_000, Date.now);
 * table.record('203.0.113.7');
 * table.blockedFor('203.0.113.7'); // 0 until the tenth failure within a minute
 * ```
 */
export class AuthFailureTable implements AuthFailureStore {
  readonly store = 'memory' as const;
  private readonly entries = new Map<string, Entry>();

  constructor(
    private policy: AuthFailurePolicy,
    readonly maxKeys: number,
    private readonly now: () => number,
  ) {}

  /** A reload with other numbers: the entries stay, the new numbers apply from now on. */
  use(policy: AuthFailurePolicy): this {
    this.policy = policy;
    return this;
  }

  get size(): number {
    return this.entries.size;
  }

  blockedFor(key: string): number {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.blockedUntil === 0) return 0;
    const left = entry.blockedUntil - this.now();
    if (left > 0) return left;
    this.entries.delete(key);
    return 0;
  }

  record(key: string): boolean {
    const now = this.now();
    let entry = this.entries.get(key);
    if (entry === undefined) {
      if (this.entries.size >= this.maxKeys) {
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
      }
      entry = { start: now, count: 0, blockedUntil: 0 };
      this.entries.set(key, entry);
    } else if (entry.blockedUntil !== 0) {
      // Failures while blocked (refused before their token is read, they cannot happen on a
      // protected route) do not lengthen the block.
      if (entry.blockedUntil > now) return false;
      entry.blockedUntil = 0;
      entry.start = now;
      entry.count = 0;
    } else if (now - entry.start >= this.policy.window) {
      entry.start = now;
      entry.count = 0;
    }
    entry.count++;
    if (entry.count < this.policy.limit) return false;
    entry.blockedUntil = now + this.policy.blockFor;
    // Most recently blocked last: the oldest entries are the first to go when the table is full.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return true;
  }
}
