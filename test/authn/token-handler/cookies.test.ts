import { randomBytes } from 'node:crypto';
import { CompactEncrypt } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  cookieLayout,
  createCookieKeyRing,
  decodeCookieKey,
  readCookie,
  readCookies,
  safeEqual,
  setCookie,
} from '../../../src/authn/token-handler/cookies.js';

const NOW = 1_800_000_000;
const key = () => new Uint8Array(randomBytes(32));

function flip(value: string, part: number): string {
  const parts = value.split('.');
  const s = parts[part]!;
  const i = Math.floor(s.length / 2);
  parts[part] = s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  return parts.join('.');
}

describe('cookie encryption', () => {
  it('rejects a cookie whose ciphertext was changed', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'at', exp: NOW + 60, at: 'token' } as never);
    expect(await ring.open(flip(value, 3), 'at', NOW)).toBeNull();
  });

  it('rejects a cookie whose authentication tag was changed', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'at', exp: NOW + 60 });
    expect(await ring.open(flip(value, 4), 'at', NOW)).toBeNull();
  });

  it('rejects a cookie whose IV was changed', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'at', exp: NOW + 60 });
    expect(await ring.open(flip(value, 2), 'at', NOW)).toBeNull();
  });

  it('rejects a cookie sealed with a key it does not hold (foreign cookie)', async () => {
    const theirs = createCookieKeyRing([key()]);
    const ours = createCookieKeyRing([key()]);
    expect(await ours.open(await theirs.seal({ t: 'at', exp: NOW + 60 }), 'at', NOW)).toBeNull();
  });

  it('rejects a cookie that claims one of our key ids but was encrypted with another key', async () => {
    const k = key();
    const ring = createCookieKeyRing([k]);
    const genuine = await ring.seal({ t: 'at', exp: NOW + 60 });
    const { kid } = JSON.parse(Buffer.from(genuine.split('.')[0]!, 'base64url').toString()) as { kid: string };
    const forged = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ t: 'at', exp: NOW + 60, at: 'evil' })))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid })
      .encrypt(key());
    expect(await ring.open(forged, 'at', NOW)).toBeNull();
  });

  it('rejects a cookie of another kind (a refresh-token value in the access-token cookie)', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'rt', exp: NOW + 60 });
    expect(await ring.open(value, 'at', NOW)).toBeNull();
    expect(await ring.open(value, 'rt', NOW)).toMatchObject({ t: 'rt' });
  });

  it('rejects an expired cookie', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'login', exp: NOW });
    expect(await ring.open(value, 'login', NOW)).toBeNull();
    expect(await ring.open(value, 'login', NOW - 1)).toMatchObject({ t: 'login' });
  });

  it('rejects garbage, empty and oversized values without throwing', async () => {
    const ring = createCookieKeyRing([key()]);
    for (const value of ['', 'x', 'a.b.c.d.e', '....', 'eyJhbGciOiJub25lIn0.e30.', 'A'.repeat(5000), '%%%.%%%.%%%.%%%.%%%']) {
      expect(await ring.open(value, 'at', NOW)).toBeNull();
    }
  });

  it('rejects a JWE with another algorithm even under a known kid', async () => {
    const k = key();
    const ring = createCookieKeyRing([k]);
    const genuine = await ring.seal({ t: 'at', exp: NOW + 60 });
    const { kid } = JSON.parse(Buffer.from(genuine.split('.')[0]!, 'base64url').toString()) as { kid: string };
    const other = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ t: 'at', exp: NOW + 60 })))
      .setProtectedHeader({ alg: 'A256KW', enc: 'A256GCM', kid })
      .encrypt(k);
    expect(await ring.open(other, 'at', NOW)).toBeNull();
  });

  it('decrypts with every key and encrypts with the first (rotation)', async () => {
    const oldKey = key();
    const newKey = key();
    const before = createCookieKeyRing([oldKey]);
    const during = createCookieKeyRing([newKey, oldKey]);
    const after = createCookieKeyRing([newKey]);
    const oldValue = await before.seal({ t: 'at', exp: NOW + 60, at: 'a' } as never);
    expect(await during.open(oldValue, 'at', NOW)).toMatchObject({ at: 'a' });
    const newValue = await during.seal({ t: 'at', exp: NOW + 60, at: 'b' } as never);
    expect(await after.open(newValue, 'at', NOW)).toMatchObject({ at: 'b' });
    expect(await before.open(newValue, 'at', NOW)).toBeNull();
    expect(await after.open(oldValue, 'at', NOW)).toBeNull();
  });

  it('checks kind and expiry on every open, also for a value it has opened before', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'at', exp: NOW + 10 });
    expect(await ring.open(value, 'at', NOW)).not.toBeNull();
    expect(await ring.open(value, 'rt', NOW)).toBeNull();
    expect(await ring.open(value, 'at', NOW + 10)).toBeNull();
  });

  it('refuses a tampered copy of a value it has opened before', async () => {
    const ring = createCookieKeyRing([key()]);
    const value = await ring.seal({ t: 'at', exp: NOW + 60 });
    expect(await ring.open(value, 'at', NOW)).not.toBeNull();
    expect(await ring.open(flip(value, 3), 'at', NOW)).toBeNull();
    expect(await ring.open(value + 'x', 'at', NOW)).toBeNull();
  });

  it('keeps working past its cache size', async () => {
    const ring = createCookieKeyRing([key()], 4);
    const values = await Promise.all(Array.from({ length: 10 }, (_, i) => ring.seal({ t: 'at', exp: NOW + 60, i } as never)));
    for (const v of values) expect(await ring.open(v, 'at', NOW)).not.toBeNull();
    for (const v of values) expect(await ring.open(v, 'at', NOW)).toMatchObject({ t: 'at' });
  });

  it('produces a different value each time (fresh IV)', async () => {
    const ring = createCookieKeyRing([key()]);
    const a = await ring.seal({ t: 'at', exp: NOW + 60 });
    const b = await ring.seal({ t: 'at', exp: NOW + 60 });
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[A-Za-z0-9_.-]+$/);
  });
});

describe('cookie keys', () => {
  it('rejects a key that is not base64', () => {
    expect(typeof decodeCookieKey('not a key!')).toBe('string');
  });
  it('rejects a key of the wrong length', () => {
    expect(decodeCookieKey(randomBytes(16).toString('base64'))).toMatch(/16 bytes/);
    expect(decodeCookieKey(randomBytes(33).toString('base64'))).toMatch(/33 bytes/);
  });
  it('accepts base64 and base64url of 32 bytes', () => {
    const bytes = randomBytes(32);
    expect(decodeCookieKey(bytes.toString('base64'))).toEqual(new Uint8Array(bytes));
    expect(decodeCookieKey(bytes.toString('base64url'))).toEqual(new Uint8Array(bytes));
  });
});

describe('cookie layout and headers', () => {
  it('keeps __Host- for the path-wide cookies and uses __Secure- for path-scoped ones', () => {
    const layout = cookieLayout('__Host-gh', '/tokenhandler');
    expect(layout.names).toEqual({ at: '__Host-gh-at', rt: '__Secure-gh-rt', id: '__Secure-gh-id', login: '__Host-gh-login' });
    expect(layout.paths).toEqual({ at: '/', rt: '/tokenhandler/refresh', id: '/tokenhandler', login: '/' });
  });

  it('makes the login cookie host-only __Host- so no sibling host can plant a login state (login CSRF)', () => {
    expect(setCookie(cookieLayout('__Host-gh', '/th'), 'login', 'v', 600)).toBe('__Host-gh-login=v; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Strict');
    // With cookieDomain the session cookies are shared with sibling hosts; the login state never is.
    const shared = cookieLayout('__Secure-gh', '/th', 'example.com');
    expect(shared.names.login).toBe('__Host-gh-login');
    expect(setCookie(shared, 'login', 'v', 600)).toBe('__Host-gh-login=v; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Strict');
    expect(setCookie(shared, 'login', null, 0)).not.toContain('Domain=');
    expect(setCookie(shared, 'at', 'v', 60)).toContain('; Domain=example.com;');
    expect(cookieLayout('app', '/th').names.login).toBe('__Host-app-login');
  });

  it('writes Secure, HttpOnly, SameSite=Strict and no Domain for __Host- cookies', () => {
    const header = setCookie(cookieLayout('__Host-gh', '/th'), 'at', 'v', 60);
    expect(header).toBe('__Host-gh-at=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Strict');
  });

  it('scopes the refresh token to the refresh path and carries a configured domain', () => {
    const header = setCookie(cookieLayout('__Secure-gh', '/th', 'example.com'), 'rt', 'v', 60);
    expect(header).toBe('__Secure-gh-rt=v; Path=/th/refresh; Domain=example.com; Max-Age=60; Secure; HttpOnly; SameSite=Strict');
  });

  it('clears a cookie with Max-Age=0', () => {
    expect(setCookie(cookieLayout('__Host-gh', '/th'), 'login', null, 0)).toContain('Max-Age=0');
  });

  it('reads one cookie by its exact name', () => {
    expect(readCookie('a=1; __Host-gh-at=xyz; b=2', '__Host-gh-at')).toBe('xyz');
    expect(readCookie('__Host-gh-atx=1; __Host-gh-at=2', '__Host-gh-at')).toBe('2');
    expect(readCookie('x__Host-gh-at=1', '__Host-gh-at')).toBeUndefined();
    expect(readCookie('__Host-gh-at', '__Host-gh-at')).toBeUndefined();
    expect(readCookie(undefined, '__Host-gh-at')).toBeUndefined();
    expect(readCookie('__Host-gh-at=first; __Host-gh-at=second', '__Host-gh-at')).toBe('first');
  });

  it('reads every value of a cookie name, so duplicates can be refused', () => {
    expect(readCookies('__Host-gh-login=first; a=1; __Host-gh-login=second', '__Host-gh-login')).toEqual(['first', 'second']);
    expect(readCookies('__Secure-gh-login=planted; __Host-gh-login=mine', '__Host-gh-login')).toEqual(['mine']);
    expect(readCookies('__Host-gh-loginx=1; x__Host-gh-login=2; __Host-gh-login', '__Host-gh-login')).toEqual([]);
    expect(readCookies(undefined, '__Host-gh-login')).toEqual([]);
  });

  it('compares secrets of different lengths as unequal', () => {
    expect(safeEqual('abc', 'abc')).toBe(true);
    expect(safeEqual('abc', 'abcd')).toBe(false);
    expect(safeEqual('', 'a')).toBe(false);
  });
});
