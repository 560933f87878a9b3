import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Server-provided DPoP nonces (RFC 9449 §9), stateless: a nonce names its time window and
 * carries an HMAC of it, so any process holding the key can check it without remembering
 * anything. A nonce is good in its own window and the next one (so a client that just got one
 * at a window's end keeps it for at least one `lifetime`); gatehouse offers the current one with
 * a 401 `use_dpop_nonce`, and with an answer whose proof used the previous one.
 *
 * The key is `dpop.nonce.secret` (hashed), so that gateways sharing clients accept each other's
 * nonces; without one, the `GATEHOUSE_DPOP_NONCE_KEY` a `gatehouse start` primary hands its
 * workers, else a random key of this process.
 *
 * @example
 * ```ts
 * const nonces = createNonceIssuer(300_000, null);
 * const n = nonces.current(Date.now());
 * nonces.check(n, Date.now()); // 'current'
 * ```
 */
export interface NonceIssuer {
  /** The nonce of `now`'s window. */
  current(now: number): string;
  /** 'current', 'previous' (good, but a newer one exists), or why it is refused. */
  check(nonce: string, now: number): 'current' | 'previous' | 'unknown' | 'expired';
}

/** The environment variable a cluster primary hands its workers the shared key in. */
export const NONCE_KEY_ENV = 'GATEHOUSE_DPOP_NONCE_KEY';

/** This process's own key when no secret is configured (created once: a reload keeps nonces good). */
let processKey: Buffer | null = null;

function defaultKey(env: NodeJS.ProcessEnv): Buffer {
  const handed = env[NONCE_KEY_ENV];
  if (handed !== undefined && handed.length >= 43) return Buffer.from(handed, 'base64url');
  processKey ??= randomBytes(32);
  return processKey;
}

/** A new random key for a primary to hand its workers (base64url). */
export function newNonceKey(): string {
  return randomBytes(32).toString('base64url');
}

export function createNonceIssuer(lifetime: number, secret: string | null, env: NodeJS.ProcessEnv = process.env): NonceIssuer {
  const key = secret !== null ? hash('sha256', `gatehouse dpop nonce key\0${secret}`, 'buffer') : defaultKey(env);
  const mac = (window: number): string => createHmac('sha256', key).update(`dpop-nonce:${window}`).digest('base64url').slice(0, 27);
  let cachedWindow = -1;
  let cached = '';
  const make = (window: number): string => {
    if (window === cachedWindow) return cached;
    const nonce = `${window.toString(36)}.${mac(window)}`;
    if (window > cachedWindow) {
      cachedWindow = window;
      cached = nonce;
    }
    return nonce;
  };
  return {
    current(now) {
      return make(Math.floor(now / lifetime));
    },
    check(nonce, now) {
      const dot = nonce.indexOf('.');
      if (dot <= 0 || dot > 12 || nonce.length !== dot + 28) return 'unknown';
      const window = Number.parseInt(nonce.slice(0, dot), 36);
      if (!Number.isSafeInteger(window) || window.toString(36) !== nonce.slice(0, dot)) return 'unknown';
      const expected = Buffer.from(mac(window));
      const given = Buffer.from(nonce.slice(dot + 1));
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'unknown';
      const at = Math.floor(now / lifetime);
      // The next window too: another gateway sharing the secret whose clock runs a little ahead.
      if (window === at || window === at + 1) return 'current';
      if (window === at - 1) return 'previous';
      return 'expired';
    },
  };
}
