/**
 * Token-handler cookies: what they are called, where they are sent, and how their contents are
 * encrypted. Every value is a compact JWE (`dir` / `A256GCM`) under one of the configured
 * `cookieKeys`: the first key encrypts, every key decrypts (rotation). A cookie that does not
 * decrypt, is of the wrong kind or has expired reads as `null`, never as an exception.
 */
import { createHash, randomBytes, timingSafeEqual, webcrypto } from 'node:crypto';
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader } from 'jose';
import { cookieStem } from './cookie-names.js';

/** The kinds of cookie; the kind is inside the encrypted payload, so a value cannot be moved to another cookie. */
export type CookieKind = 'at' | 'rt' | 'id' | 'login';

/** The decrypted contents of a cookie. `exp` is seconds since the epoch. */
export interface CookiePayload {
  readonly t: CookieKind;
  readonly exp: number;
}

/**
 * Longest cookie value we try to decrypt (browsers keep at most ~4 KiB per cookie).
 *
 * @example
 * ```ts
 * if (value.length > MAX_COOKIE_VALUE) return null;
 * ```
 */
export const MAX_COOKIE_VALUE = 4096;

export { decodeCookieKey } from './cookie-key.js';

interface RingKey {
  readonly kid: string;
  /** Imported once: jose would import a raw key on every call. */
  readonly key: Promise<webcrypto.CryptoKey>;
}

/**
 * Encrypts and decrypts cookie payloads with a list of keys (first encrypts, all decrypt).
 *
 * @example
 * ```ts
 * const ring = createCookieKeyRing([key1, key2]);
 * const value = await ring.seal({ t: 'at', exp: now + 3600, at: accessToken });
 * const payload = await ring.open(value, 'at', now); // null when tampered, foreign or expired
 * ```
 */
export interface CookieKeyRing {
  seal(payload: CookiePayload & object): Promise<string>;
  /**
   * The payload, or null for anything that is not a valid, unexpired cookie of this kind.
   * Synchronous when the value was opened before (hot path); a promise when it must be decrypted.
   */
  open(value: string, kind: CookieKind, nowSeconds: number): CookiePayload | null | Promise<CookiePayload | null>;
}

const DECRYPT_OPTIONS = { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Decrypted cookies kept per key ring (hot path: every API call of a cookie route opens one).
 *
 * @example
 * ```ts
 * const small = createCookieKeyRing(keys, OPENED_CACHE_SIZE / 4);
 * ```
 */
export const OPENED_CACHE_SIZE = 2048;

/** The key id is a short hash of the key: it picks the key without trial decryption and reveals nothing useful. */
function keyId(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 8);
}

/**
 * Build a key ring from decoded 32-byte keys (see {@link CookieKeyRing}).
 *
 * @example
 * ```ts
 * const ring = createCookieKeyRing(config.cookieKeys.map((k) => decodeCookieKey(k) as Uint8Array));
 * ```
 * Successfully opened values are cached by their
 * exact text (a changed byte is another text, so tampering always meets the cipher), bounded
 * to {@link OPENED_CACHE_SIZE}; kind and expiry are checked on every open.
 */
export function createCookieKeyRing(keys: readonly Uint8Array[], cacheSize = OPENED_CACHE_SIZE): CookieKeyRing {
  if (keys.length === 0) throw new TypeError('at least one cookie key is needed');
  const ring: RingKey[] = keys.map((raw) => {
    if (raw.length !== 32) throw new TypeError('cookie keys are 32 bytes');
    const key = webcrypto.subtle.importKey('raw', new Uint8Array(raw), { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    key.catch(() => undefined); // surfaced on first use
    return { kid: keyId(raw), key };
  });
  const byKid = new Map(ring.map((k) => [k.kid, k.key]));
  const first = ring[0]!;
  const opened = new Map<string, CookiePayload>();

  async function decrypt(value: string): Promise<CookiePayload | null> {
    let key: Promise<webcrypto.CryptoKey> | undefined;
    try {
      const header = decodeProtectedHeader(value);
      key = typeof header.kid === 'string' ? byKid.get(header.kid) : undefined;
    } catch {
      return null;
    }
    if (!key) return null;
    let payload: unknown;
    try {
      const { plaintext } = await compactDecrypt(value, await key, DECRYPT_OPTIONS);
      payload = JSON.parse(decoder.decode(plaintext));
    } catch {
      return null;
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return null;
    return payload as CookiePayload;
  }

  return {
    async seal(payload) {
      return new CompactEncrypt(encoder.encode(JSON.stringify(payload)))
        .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: first.kid })
        .encrypt(await first.key);
    },
    open(value, kind, nowSeconds) {
      if (value.length === 0 || value.length > MAX_COOKIE_VALUE) return null;
      const known = opened.get(value);
      if (known !== undefined) return usable(known, kind, nowSeconds);
      return decrypt(value).then((fresh) => {
        if (fresh === null) return null;
        if (opened.size >= cacheSize) opened.delete(opened.keys().next().value as string);
        opened.set(value, fresh);
        return usable(fresh, kind, nowSeconds);
      });
    },
  };
}

/** Kind and expiry are checked on every open, cached or not. */
function usable(p: CookiePayload, kind: CookieKind, nowSeconds: number): CookiePayload | null {
  return p.t !== kind || typeof p.exp !== 'number' || p.exp <= nowSeconds ? null : p;
}

/** The names and paths of the four cookies for one configuration. */
export interface CookieLayout {
  readonly names: Readonly<Record<CookieKind, string>>;
  readonly paths: Readonly<Record<CookieKind, string>>;
  /** `cookieDomain`; never set on a `__Host-` cookie (the login cookie, the default access-token cookie). */
  readonly domain: string | undefined;
}

/**
 * Name and scope the cookies. The access-token cookie goes to every path (API routes), so it takes
 * the configured prefix as is (`__Host-gh-at`). The refresh- and ID-token cookies are path-scoped
 * (the refresh token only to `{base}/refresh`, RFC 6265bis §4.1.3.2: `__Host-` requires
 * `Path=/`), so a `__Host-` prefix becomes `__Secure-` for them (`__Secure-gh-rt`).
 *
 * The login cookie is always `__Host-` (`Path=/`, host-only, whatever the prefix or
 * `cookieDomain`): a `__Secure-` cookie can be planted by a sibling host with
 * `Domain=example.com`, and a planted login state is login CSRF (the victim's login/end
 * redeems the attacker's code). It is sent on every request to the host; the forwarder strips
 * cookies by prefix, which covers it under a `__Host-` prefix (`__Host-gh-login` under `__Host-gh`).
 *
 * @example
 * ```ts
 * const layout = cookieLayout('__Host-gh', '/tokenhandler');
 * layout.names.rt; // '__Secure-gh-rt'
 * layout.paths.rt; // '/tokenhandler/refresh'
 * layout.names.login; // '__Host-gh-login', Path=/
 * ```
 */
export function cookieLayout(prefix: string, basePath: string, domain?: string): CookieLayout {
  const stem = cookieStem(prefix);
  const scoped = prefix.startsWith('__Host-') ? '__Secure-' + stem : prefix;
  const base = basePath.endsWith('/') ? basePath.slice(0, -1) : basePath;
  return {
    names: { at: `${prefix}-at`, rt: `${scoped}-rt`, id: `${scoped}-id`, login: `__Host-${stem}-login` },
    paths: { at: '/', rt: `${base}/refresh`, id: base, login: '/' },
    domain,
  };
}

/**
 * A `Set-Cookie` value: always `Secure; HttpOnly; SameSite=Strict`. `maxAge` in seconds;
 * `value === null` clears the cookie. A `__Host-` cookie never gets `Domain` (browsers refuse it).
 *
 * @example
 * ```ts
 * res.appendHeader('set-cookie', setCookie(layout, 'at', sealed, 3600));
 * ```
 */
export function setCookie(layout: CookieLayout, kind: CookieKind, value: string | null, maxAge: number): string {
  const name = layout.names[kind];
  let out = `${name}=${value ?? ''}; Path=${layout.paths[kind]}`;
  if (layout.domain && !name.startsWith('__Host-')) out += `; Domain=${layout.domain}`;
  if (value === null) out += '; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT';
  else out += `; Max-Age=${Math.max(0, Math.floor(maxAge))}`;
  return out + '; Secure; HttpOnly; SameSite=Strict';
}

/**
 * Read one cookie from a `Cookie` header without building a map (hot path: runs on every API
 * call of a cookie route). The first cookie of that name wins.
 *
 * @example
 * ```ts
 * readCookie('a=1; __Host-gh-at=eyJ…', '__Host-gh-at'); // 'eyJ…'
 * ```
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const length = header.length;
  let i = 0;
  while (i < length) {
    while (i < length && (header.charCodeAt(i) === 32 || header.charCodeAt(i) === 9)) i++;
    let end = header.indexOf(';', i);
    if (end === -1) end = length;
    if (header.charCodeAt(i + name.length) === 61 /* = */ && i + name.length < end && header.startsWith(name, i)) {
      return header.slice(i + name.length + 1, end).trim();
    }
    i = end + 1;
  }
  return undefined;
}

/**
 * Every value of one cookie in a `Cookie` header, in order (not the hot path: for cookies whose
 * duplicates must be refused rather than one picked, e.g. the login cookie).
 *
 * @example
 * ```ts
 * readCookies('__Host-gh-login=a; __Host-gh-login=b', '__Host-gh-login'); // ['a', 'b']
 * ```
 */
export function readCookies(header: string | undefined, name: string): string[] {
  const out: string[] = [];
  if (!header) return out;
  for (const part of header.split(';')) {
    const pair = part.trim();
    if (pair.length > name.length && pair.charCodeAt(name.length) === 61 /* = */ && pair.startsWith(name)) out.push(pair.slice(name.length + 1).trim());
  }
  return out;
}

/**
 * 32 random bytes, base64url: state, nonce, CSRF tokens, session ids.
 *
 * @example
 * ```ts
 * const state = randomToken(); // 43 characters
 * ```
 */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Compare two secrets in constant time (for equal lengths).
 *
 * @example
 * ```ts
 * if (!safeEqual(headerValue, session.csrf)) return csrfDenied;
 * ```
 */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
