import { createHmac, sign } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { bearerSyntaxError } from '../../src/authn/bearer.js';
import { createJwtVerifier, decodedHeaderCount, parseJwt, scopesOf, type JwtVerifier } from '../../src/authn/jwt.js';
import { TokenCache } from '../../src/authn/token-cache.js';
import type { IssuerConfig } from '../../src/config/types.js';
import { claimsAt, issuerConfig, jwks, mint, signJws, T0, testKey, testServices, withClaims } from './jwt-fixtures.js';

const rs = testKey('RS256');
const es = testKey('ES256');
const ed = testKey('EdDSA');
const ps = testKey('PS256');
const es384 = testKey('ES384');
const es512 = testKey('ES512');

let open: JwtVerifier[] = [];
afterEach(async () => {
  await Promise.all(open.map((v) => v.close()));
  open = [];
});

function verifierWith(document: unknown, issuer: IssuerConfig = issuerConfig(), options: { cache?: TokenCache } = {}) {
  const services = testServices();
  let loads = 0;
  let doc = document;
  const verifier = createJwtVerifier(issuer, services, {
    cache: options.cache ?? null,
    loadKeys: async () => {
      loads++;
      if (doc instanceof Error) throw doc;
      return doc;
    },
  });
  open.push(verifier);
  return {
    verifier,
    services,
    get loads() {
      return loads;
    },
    setKeys(next: unknown) {
      doc = next;
    },
  };
}

async function codeOf(verifier: JwtVerifier, token: string): Promise<string> {
  const result = await verifier.verify(token);
  return result.ok ? 'ok' : result.error.code;
}

/** A verifier of the RS256 test key with its own verified-token cache. */
function cachedVerifier() {
  const cache = new TokenCache(100);
  return { cache, env: verifierWith(jwks(rs), issuerConfig(), { cache }) };
}

/** A cache entry for the TokenCache unit tests (valid at any time, no key). */
const ENTRY = { issuer: 'main', principal: {} as never, key: null, validFrom: 0, validUntil: Infinity };

describe('JWT validation: accepted tokens', () => {
  it.each([
    ['RS256', rs],
    ['PS256', ps],
    ['ES256', es],
    ['ES384', es384],
    ['ES512', es512],
    ['EdDSA', ed],
  ])('accepts a valid %s access token and builds the principal', async (_alg, key) => {
    const { verifier } = verifierWith(jwks(rs, ps, es, es384, es512, ed));
    await verifier.start();
    const result = await verifier.verify(mint(key, T0));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.principal.subject).toBe('user-1');
    expect(result.value.principal.issuer).toBe('main');
    expect([...result.value.principal.scopes]).toEqual(['orders:read', 'profile']);
    expect(result.value.principal.kind).toBe('jwt');
  });

  it('accepts the scp array form of scopes', async () => {
    const { verifier } = verifierWith(jwks(rs));
    const result = await verifier.verify(mint(rs, T0, { scope: undefined, scp: ['a', 'b'] }));
    expect(result.ok && [...result.value.principal.scopes]).toEqual(['a', 'b']);
  });

  it.each([
    ['one scope', { scope: 'orders:read' }, ['orders:read']],
    ['spaces before, between and after', { scope: '  a  b ' }, ['a', 'b']],
    ['only spaces', { scope: '   ' }, []],
    ['an empty scope', { scope: '' }, []],
    ['a repeated scope once', { scope: 'a b a' }, ['a', 'b']],
    ['scp as a string', { scp: 'x y' }, ['x', 'y']],
    ['scope and scp together', { scope: 'a b', scp: ['b', 'c', '', 7] }, ['a', 'b', 'c']],
    ['a tab is no separator (RFC 6749 §3.3: one space)', { scope: 'a\tb' }, ['a\tb']],
    ['a scope that is not a string', { scope: ['a'] }, []],
    ['neither claim', {}, []],
  ])('reads the scopes of a token: %s', (_what, claims, expected) => {
    expect([...scopesOf(claims)]).toEqual(expected);
  });

  it('accepts an aud array that contains a configured audience', async () => {
    const { verifier } = verifierWith(jwks(rs));
    expect(await codeOf(verifier, mint(rs, T0, { aud: ['other', 'https://api.example.test'] }))).toBe('ok');
  });

  it('accepts a token that expired less than the clock skew ago', async () => {
    const { verifier } = verifierWith(jwks(rs));
    expect(await codeOf(verifier, mint(rs, T0, { exp: T0 / 1000 - 30 }))).toBe('ok');
  });

  it('accepts typ application/at+jwt when requireTyp is at+jwt', async () => {
    const { verifier } = verifierWith(jwks(rs), issuerConfig({ requireTyp: 'at+jwt' }));
    expect(await codeOf(verifier, mint(rs, T0, {}, { typ: 'application/at+jwt' }))).toBe('ok');
  });

  it('accepts a token without kid when exactly one key fits its alg', async () => {
    const { verifier } = verifierWith(jwks(rs, es));
    expect(await codeOf(verifier, mint(es, T0, {}, { kid: undefined }))).toBe('ok');
  });
});

// Every row: a token that breaks one rule of the Validation list, and the code it gets.
const hostile: [string, () => string, string, Partial<IssuerConfig>?][] = [
  // size and shape, before any cryptography
  ['rejects a token over the configured size', () => mint(rs, T0, { pad: 'x'.repeat(9000) }), 'GH_ERR_JWT_TOO_LARGE'],
  ['rejects a token over a smaller per-issuer size', () => mint(rs, T0), 'GH_ERR_JWT_TOO_LARGE', { maxTokenSize: 200 }],
  ['rejects a token with two parts', () => mint(rs, T0).split('.').slice(0, 2).join('.'), 'GH_ERR_JWT_MALFORMED'],
  ['rejects a token with four parts', () => `${mint(rs, T0)}.AAAA`, 'GH_ERR_JWT_MALFORMED'],
  ['rejects a token with an empty signature', () => `${mint(rs, T0).split('.').slice(0, 2).join('.')}.`, 'GH_ERR_JWT_MALFORMED'],
  ['rejects a token with a character outside base64url', () => mint(rs, T0).replace('.', '+.'), 'GH_ERR_JWT_MALFORMED'],
  ['rejects a token with base64 padding', () => `${mint(rs, T0)}==`, 'GH_ERR_JWT_MALFORMED'],
  ['rejects a header that is not JSON', () => `${Buffer.from('{"alg":').toString('base64url')}.${mint(rs, T0).split('.').slice(1).join('.')}`, 'GH_ERR_JWT_MALFORMED'],
  ['rejects a payload that is not JSON', () => signJws({ alg: 'RS256', kid: rs.kid }, 'not json', rs.privateKey), 'GH_ERR_JWT_MALFORMED'],
  ['rejects a payload that is a JSON array', () => signJws({ alg: 'RS256', kid: rs.kid }, [1], rs.privateKey), 'GH_ERR_JWT_MALFORMED'],
  // algorithms
  ['rejects alg none', () => `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claimsAt(T0))).toString('base64url')}.AAAA`, 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
  ['rejects HS256 signed with the RSA public key as the secret (algorithm confusion)', () => hsWithPublicKey(), 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
  ['rejects an algorithm outside the issuer allowlist', () => mint(ps, T0), 'GH_ERR_JWT_ALG_NOT_ALLOWED', { algorithms: ['RS256'] }],
  ['rejects an unknown algorithm name', () => mint(rs, T0, {}, { alg: 'RS1' }), 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
  // header parameters
  ['rejects a token that carries jku', () => mint(rs, T0, {}, { jku: 'https://evil.example/jwks' }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['rejects a token that carries x5u', () => mint(rs, T0, {}, { x5u: 'https://evil.example/cert' }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['rejects a token that embeds its own jwk', () => mint(rs, T0, {}, { jwk: rs.jwk }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['rejects a token that carries x5c', () => mint(rs, T0, {}, { x5c: ['MIIB'] }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['rejects crit with an unknown parameter', () => mint(rs, T0, {}, { crit: ['exp'], exp: 1 }), 'GH_ERR_JWT_CRIT_UNSUPPORTED'],
  ['rejects crit b64 (unencoded payload)', () => mint(rs, T0, {}, { crit: ['b64'], b64: false }), 'GH_ERR_JWT_CRIT_UNSUPPORTED'],
  ['rejects a kid that is not a string', () => mint(rs, T0, {}, { kid: 7 }), 'GH_ERR_JWT_MALFORMED'],
  ['rejects typ dpop+jwt', () => mint(rs, T0, {}, { typ: 'dpop+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['rejects typ logout+jwt', () => mint(rs, T0, {}, { typ: 'logout+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['rejects typ secevent+jwt', () => mint(rs, T0, {}, { typ: 'secevent+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['rejects typ application/token-introspection+jwt', () => mint(rs, T0, {}, { typ: 'application/token-introspection+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['rejects a token without typ when requireTyp is at+jwt', () => mint(rs, T0, {}, { typ: undefined }), 'GH_ERR_JWT_TYP_INVALID', { requireTyp: 'at+jwt' }],
  ['rejects typ JWT when requireTyp is at+jwt', () => mint(rs, T0, {}, { typ: 'JWT' }), 'GH_ERR_JWT_TYP_INVALID', { requireTyp: 'at+jwt' }],
  // keys
  ['rejects a kid that is not in the key set', () => mint(testKey('RS256', 'stranger'), T0), 'GH_ERR_JWT_KID_UNKNOWN'],
  ['rejects an ES256 token whose kid names an RSA key (kty does not fit alg)', () => mint(es, T0, {}, { kid: rs.kid }), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['rejects a PS256 token whose kid names a key published for RS256 only', () => signJws({ alg: 'PS256', kid: rs.kid }, claimsAt(T0), rs.privateKey), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['rejects a token signed by another key under a known kid', () => mint({ ...testKey('RS256', 'impostor'), kid: rs.kid }, T0), 'GH_ERR_JWT_SIGNATURE_INVALID'],
  ['rejects a token whose payload was changed after signing', () => tamper(mint(rs, T0)), 'GH_ERR_JWT_SIGNATURE_INVALID'],
  ['rejects an ES256 signature in DER form', () => derSignature(), 'GH_ERR_JWT_SIGNATURE_INVALID'],
  // claims
  ['rejects an iss that is not the issuer exactly (trailing slash)', () => mint(rs, T0, { iss: 'https://id.example.test/' }), 'GH_ERR_JWT_ISSUER_UNKNOWN'],
  ['rejects an aud that names another API', () => mint(rs, T0, { aud: 'https://other.example.test' }), 'GH_ERR_JWT_AUDIENCE_INVALID'],
  ['rejects a token without aud', () => mint(rs, T0, { aud: undefined }), 'GH_ERR_JWT_AUDIENCE_INVALID'],
  ['rejects an aud of the wrong JSON type', () => mint(rs, T0, { aud: 42 }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['rejects a token without exp', () => mint(rs, T0, { exp: undefined }), 'GH_ERR_JWT_CLAIM_MISSING'],
  ['rejects an expired token', () => mint(rs, T0, { exp: T0 / 1000 - 61 }), 'GH_ERR_JWT_EXPIRED'],
  ['rejects an exp given as a string', () => mint(rs, T0, { exp: String(T0 / 1000 + 300) }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['rejects an nbf in the future beyond the skew', () => mint(rs, T0, { nbf: T0 / 1000 + 120 }), 'GH_ERR_JWT_NOT_YET_VALID'],
  ['rejects an nbf given as a string', () => mint(rs, T0, { nbf: 'yesterday' }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['rejects an iat in the future beyond the skew', () => mint(rs, T0, { iat: T0 / 1000 + 120 }), 'GH_ERR_JWT_ISSUED_IN_FUTURE'],
  ['rejects an iat given as a boolean', () => mint(rs, T0, { iat: true }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['rejects a token older than maxTokenAge', () => mint(rs, T0, { iat: T0 / 1000 - 3600 }), 'GH_ERR_JWT_TOO_OLD', { maxTokenAge: 600_000 }],
  ['rejects a token without iat when maxTokenAge is set', () => mint(rs, T0, { iat: undefined }), 'GH_ERR_JWT_CLAIM_MISSING', { maxTokenAge: 600_000 }],
  ['rejects a token without a required claim', () => mint(rs, T0, { client_id: undefined }), 'GH_ERR_JWT_CLAIM_MISSING', { requiredClaims: ['client_id'] }],
  ['rejects a scope that is not a string', () => mint(rs, T0, { scope: ['a'] }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['rejects a sub that is not a string', () => mint(rs, T0, { sub: 12 }), 'GH_ERR_JWT_CLAIM_INVALID'],
];

function hsWithPublicKey(): string {
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', kid: rs.kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claimsAt(T0))).toString('base64url');
  const secret = rs.publicKey.export({ type: 'spki', format: 'pem' });
  const mac = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${mac}`;
}

function tamper(token: string): string {
  const [h, , s] = token.split('.');
  return `${h}.${Buffer.from(JSON.stringify(claimsAt(T0, { sub: 'admin' }))).toString('base64url')}.${s}`;
}

function derSignature(): string {
  const token = mint(es, T0);
  const [h, p] = token.split('.');
  const der = sign('sha256', Buffer.from(`${h}.${p}`), es.privateKey); // DER, not r||s
  return `${h}.${p}.${der.toString('base64url')}`;
}

describe('JWT validation: hostile tokens', () => {
  it.each(hostile)('%s', async (_name, make, code, overrides) => {
    const { verifier } = verifierWith(jwks(rs, es, ps, ed), issuerConfig(overrides ?? {}));
    await verifier.start();
    const result = await verifier.verify(make());
    expect(result.ok ? 'ok' : result.error.code).toBe(code);
    if (!result.ok) {
      expect(result.error.status).toBe(401);
      expect(result.error.oauthError).toBe('invalid_token');
    }
  });
});

describe('JWT validation: key policy', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['never uses a key with use "enc"', { ...rs.jwk, use: 'enc' }, 'GH_ERR_JWT_KEY_UNUSABLE'],
    ['never uses a key whose key_ops lack "verify"', { ...rs.jwk, use: undefined, key_ops: ['sign'] }, 'GH_ERR_JWT_KEY_UNUSABLE'],
    ['never uses a JWKS entry that holds private key material', { ...rs.privateKey.export({ format: 'jwk' }), kid: rs.kid, alg: 'RS256' }, 'GH_ERR_JWT_KEY_UNUSABLE'],
    ['never uses a key whose alg does not fit the token', { ...rs.jwk, alg: 'RS512' }, 'GH_ERR_JWT_KEY_UNUSABLE'],
    ['never uses a symmetric (oct) key', { kty: 'oct', kid: rs.kid, k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0' }, 'GH_ERR_JWT_KEY_UNUSABLE'],
  ];
  // A usable key beside the refused one: a set with no usable key is no key set at all (503).
  it.each(cases)('%s', async (_name, jwk, code) => {
    const { verifier } = verifierWith({ keys: [jwk, es.jwk] });
    await verifier.start();
    expect(await codeOf(verifier, mint(rs, T0))).toBe(code);
  });

  it('refuses RSA keys under 2048 bits', async () => {
    const weak = testKey('RS256', 'weak', { bits: 1024 });
    const { verifier } = verifierWith(jwks(weak, es));
    await verifier.start();
    expect(await codeOf(verifier, mint(weak, T0))).toBe('GH_ERR_JWT_KEY_UNUSABLE');
    expect(verifier.keys.current()!.rejected[0]!.reason).toMatch(/1024 bits/);
  });

  it('refuses RSA keys with a public exponent of 3', async () => {
    const weak = testKey('RS256', 'e3', { e: 3 });
    const { verifier } = verifierWith(jwks(weak, es));
    await verifier.start();
    expect(await codeOf(verifier, mint(weak, T0))).toBe('GH_ERR_JWT_KEY_UNUSABLE');
  });

  it('refuses a token without kid when two keys fit its alg (ambiguous)', async () => {
    const other = testKey('RS256', 'rs-2');
    const { verifier } = verifierWith(jwks(rs, other));
    expect(await codeOf(verifier, mint(rs, T0, {}, { kid: undefined }))).toBe('GH_ERR_JWT_KEY_UNUSABLE');
  });

  it('refuses a kid shared by two keys that both fit the alg (ambiguous)', async () => {
    const twin = { ...testKey('RS256', 'twin').jwk, kid: rs.kid };
    const { verifier } = verifierWith({ keys: [rs.jwk, twin] });
    expect(await codeOf(verifier, mint(rs, T0))).toBe('GH_ERR_JWT_KEY_UNUSABLE');
  });
});

describe('JWT validation: key availability', () => {
  it('answers 503 GH_ERR_AUTH_KEYS_UNAVAILABLE while no key set was ever fetched', async () => {
    const { verifier } = verifierWith(new Error('connection refused'));
    await verifier.start();
    const result = await verifier.verify(mint(rs, T0));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.code).toBe('GH_ERR_AUTH_KEYS_UNAVAILABLE');
    expect(result.error.status).toBe(503);
    expect(verifier.readiness().ready).toBe(false);
  });

  it('keeps validating with the last good key set when the endpoint goes down, and says so', async () => {
    const env = verifierWith(jwks(rs));
    await env.verifier.start();
    env.setKeys(new Error('ECONNREFUSED'));
    await env.verifier.keys.refresh();
    expect(await codeOf(env.verifier, mint(rs, T0))).toBe('ok');
    const r = env.verifier.readiness();
    expect(r.ready).toBe(true);
    expect(r.details).toMatchObject({ keys: 1, lastError: 'ECONNREFUSED' });
  });

  it('answers an unknown kid with 401 (never 500) while the endpoint is down', async () => {
    const env = verifierWith(jwks(rs));
    await env.verifier.start();
    env.setKeys(new Error('ECONNREFUSED'));
    env.services.clock.now += 60_000; // past the cooldown: a refetch is tried and fails
    expect(await codeOf(env.verifier, mint(testKey('RS256', 'new'), env.services.clock.now))).toBe('GH_ERR_JWT_KID_UNKNOWN');
  });

  it('refetches the key set for an unknown kid and accepts a token of a newly added key', async () => {
    const env = verifierWith(jwks(rs));
    await env.verifier.start();
    const added = testKey('ES256', 'added');
    env.setKeys(jwks(rs, added));
    env.services.clock.now += 31_000;
    expect(await codeOf(env.verifier, mint(added, env.services.clock.now))).toBe('ok');
    expect(env.loads).toBe(2);
  });

  it('refetches at most once per cooldown for a flood of unknown kids', async () => {
    const env = verifierWith(jwks(rs));
    await env.verifier.start();
    env.services.clock.now += 31_000;
    const tokens = Array.from({ length: 50 }, (_, i) => mint({ ...rs, kid: `random-${i}` }, env.services.clock.now));
    const codes = await Promise.all(tokens.map((t) => codeOf(env.verifier, t)));
    expect(new Set(codes)).toEqual(new Set(['GH_ERR_JWT_KID_UNKNOWN']));
    expect(env.loads).toBe(2); // start + one refetch, shared by all 50
    env.services.clock.now += 1_000;
    await codeOf(env.verifier, mint({ ...rs, kid: 'one-more' }, env.services.clock.now));
    expect(env.loads).toBe(2);
  });

  it('stops accepting tokens of a key that left the key set (rotation)', async () => {
    const { env } = cachedVerifier();
    await env.verifier.start();
    const old = mint(rs, T0);
    expect(await codeOf(env.verifier, old)).toBe('ok');
    const next = testKey('RS256', 'rs-next');
    env.setKeys(jwks(next));
    await env.verifier.keys.refresh();
    expect(await codeOf(env.verifier, mint(next, T0))).toBe('ok');
    expect(await codeOf(env.verifier, old)).toBe('GH_ERR_JWT_KID_UNKNOWN');
  });
});

describe('claims before cryptography', () => {
  it('refuses an expired token without fetching keys or verifying anything', async () => {
    const env = verifierWith(jwks(rs));
    await env.verifier.start();
    env.services.clock.now += 60_000; // past the cooldown
    const expired = mint(testKey('RS256', 'unknown-kid'), T0, { exp: T0 / 1000 - 3600 });
    expect(await codeOf(env.verifier, expired)).toBe('GH_ERR_JWT_EXPIRED');
    expect(env.loads).toBe(1); // no refetch for its unknown kid
  });

  it('answers an expired token with 401 even before any key set was fetched', async () => {
    const { verifier } = verifierWith(new Error('down'));
    expect(await codeOf(verifier, mint(rs, T0, { exp: T0 / 1000 - 3600 }))).toBe('GH_ERR_JWT_EXPIRED');
  });

  it('remembers a forged token: the replay is refused without verifying it again', async () => {
    const { verifier } = verifierWith(jwks(rs));
    const forged = tamper(mint(rs, T0));
    const first = await verifier.verify(forged);
    const second = await verifier.verify(forged);
    expect(!first.ok && first.error.code).toBe('GH_ERR_JWT_SIGNATURE_INVALID');
    expect(!second.ok && second.error).toBe(!first.ok && first.error); // the same remembered refusal
  });

  it('still needs the signature for a token whose claims are valid', async () => {
    const { verifier } = verifierWith(jwks(rs));
    expect(await codeOf(verifier, tamper(mint(rs, T0)))).toBe('GH_ERR_JWT_SIGNATURE_INVALID');
  });
});

describe('verified-token cache', () => {
  it('answers a repeated token from the cache (same entry, no new verification)', async () => {
    const { cache, env } = cachedVerifier();
    const token = mint(rs, T0);
    const first = await env.verifier.verify(token);
    const second = await env.verifier.verify(token);
    expect(first.ok && second.ok && second.value.entry).toBe(first.ok && first.value.entry);
    expect(cache.size).toBe(1);
  });

  it('keeps cached tokens when a new key set is refused (no usable key)', async () => {
    const { env } = cachedVerifier();
    await env.verifier.start();
    const token = mint(rs, T0);
    const first = await env.verifier.verify(token);
    env.setKeys({ keys: [{ ...rs.jwk, use: 'enc' }] });
    expect(await env.verifier.keys.refresh()).toBe(false);
    const again = await env.verifier.verify(token);
    expect(again.ok && first.ok && again.value.entry).toBe(first.ok && first.value.entry);
    expect(env.verifier.readiness().details).toMatchObject({ lastError: expect.stringMatching(/no usable key/) });
  });

  it('re-checks exp on every hit', async () => {
    const { env } = cachedVerifier();
    const token = mint(rs, T0);
    expect(await codeOf(env.verifier, token)).toBe('ok');
    env.services.clock.now += 361_000; // exp is T0+300s, skew 60s
    expect(await codeOf(env.verifier, token)).toBe('GH_ERR_JWT_EXPIRED');
  });

  it('re-checks nbf on every hit', async () => {
    const { env } = cachedVerifier();
    const token = mint(rs, T0, { nbf: T0 / 1000 + 30 });
    expect(await codeOf(env.verifier, token)).toBe('ok');
    env.services.clock.now -= 120_000;
    expect(await codeOf(env.verifier, token)).not.toBe('ok');
  });

  it('stays bounded', () => {
    const cache = new TokenCache(10);
    for (let i = 0; i < 1000; i++) cache.set(`t${i}`, ENTRY);
    expect(cache.size).toBeLessThanOrEqual(10);
    expect(cache.get('t999', 1)).toBe(ENTRY);
  });

  it('never answers for a token that only ends like a cached one (a forgery reusing its signature)', () => {
    const real = mint(rs, T0);
    const forged = withClaims(real, { sub: 'admin' });
    for (const cache of [new TokenCache(100), new TokenCache(4)]) {
      cache.set(real, ENTRY);
      cache.set('other-1', ENTRY); // with 4 slots, the real token is now in the old generation
      expect(cache.get(forged, 1)).toBeUndefined();
      expect(cache.get(real, 1)).toBe(ENTRY);
    }
  });

  it("refuses a forgery that reuses a cached token's signature, and keeps the real token", async () => {
    const { env } = cachedVerifier();
    await env.verifier.start();
    const real = mint(rs, T0);
    expect(await codeOf(env.verifier, real)).toBe('ok');
    expect(await codeOf(env.verifier, withClaims(real, { sub: 'someone-else' }))).toBe('GH_ERR_JWT_SIGNATURE_INVALID');
    expect(await codeOf(env.verifier, real)).toBe('ok');
  });

  it('keeps recently used entries when others are added', () => {
    const cache = new TokenCache(10);
    cache.set('hot', ENTRY);
    for (let i = 0; i < 100; i++) {
      cache.set(`t${i}`, ENTRY);
      expect(cache.get('hot', 1)).toBe(ENTRY);
    }
  });
});

/**
 * A repeatable stream of whole numbers below `n` (a 31-bit linear congruential generator; its
 * low bits are dropped, they cycle fast): the property tests below edit tokens with it.
 */
function seededRandom(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return (state >>> 8) % n;
  };
}

describe('parseJwt', () => {
  it('accepts only b64tokens (so the authenticate stage checks that syntax only for a token that fails to parse)', () => {
    // The authenticate stage parses a token with a '.' first and judges its b64token syntax
    // (400) only when the parse fails: whatever parseJwt accepts must be a b64token.
    const good = mint(rs, T0);
    const alphabet = 'aZ09-_.~+/= !"é\t';
    const next = seededRandom(7);
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      // One to three edits (replace or insert one character) anywhere in a good token.
      let value = good;
      for (let e = 1 + next(3); e > 0; e--) {
        const at = next(value.length);
        const c = alphabet[next(alphabet.length)]!;
        value = next(2) === 0 ? value.slice(0, at) + c + value.slice(at + 1) : value.slice(0, at) + c + value.slice(at);
      }
      if (!parseJwt(value, 8192).ok) {
        refused++;
        continue;
      }
      accepted++;
      expect([value, bearerSyntaxError(value, 'header')]).toEqual([value, null]);
    }
    expect(accepted).toBeGreaterThan(1_000);
    expect(refused).toBeGreaterThan(1_000);
    for (const value of [`${good}=`, `${good} `, ` ${good}`, `${good}~`, good.replace('.', '.~'), `${good}.x`]) expect([value, parseJwt(value, 8192).ok]).toEqual([value, false]);
  });

  it('decodes a header once for all the tokens that carry it, and shares it frozen', () => {
    const a = parseJwt(mint(rs, T0, { sub: 'alice' }), 8192);
    const b = parseJwt(mint(rs, T0, { sub: 'bob' }), 8192);
    if (!a.ok || !b.ok) throw new Error('fixture tokens must parse');
    expect(b.value.header).toBe(a.value.header);
    expect(a.value.claims.sub).toBe('alice');
    expect(b.value.claims.sub).toBe('bob');
    expect(Object.isFrozen(a.value.header)).toBe(true);
    expect(() => {
      (a.value.header as Record<string, unknown>).alg = 'none';
    }).toThrow(TypeError);
    expect(parseJwt(mint(rs, T0), 8192).ok && a.value.header.alg).toBe('RS256');
  });

  it('never answers for another header from a decoded one', async () => {
    const { verifier } = verifierWith(jwks(rs));
    await verifier.start();
    const good = mint(rs, T0);
    expect(await codeOf(verifier, good)).toBe('ok');
    const [h, p] = good.split('.');
    // The same header with its unused low bits set: not canonical, refused as before.
    const rem = h!.length % 4;
    if (rem !== 0) {
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const bumped = alphabet[alphabet.indexOf(h!.at(-1)!) | 1]!;
      if (bumped !== h!.at(-1)) expect(await codeOf(verifier, `${h!.slice(0, -1)}${bumped}.${p}.${good.split('.')[2]}`)).toBe('GH_ERR_JWT_MALFORMED');
    }
    // Another header over the same claims and signature: judged on its own.
    const none = Buffer.from(JSON.stringify({ alg: 'none', kid: rs.kid, typ: 'at+jwt' })).toString('base64url');
    expect(await codeOf(verifier, `${none}.${p}.${good.split('.')[2]}`)).toBe('GH_ERR_JWT_ALG_NOT_ALLOWED');
    const hs = Buffer.from(JSON.stringify({ alg: 'HS256', kid: rs.kid, typ: 'at+jwt' })).toString('base64url');
    expect(await codeOf(verifier, `${hs}.${p}.${good.split('.')[2]}`)).toBe('GH_ERR_JWT_ALG_NOT_ALLOWED');
    expect(await codeOf(verifier, good)).toBe('ok');
  });

  it('keeps only headers that decoded, and a bounded number of them', () => {
    parseJwt(mint(rs, T0), 8192);
    const before = decodedHeaderCount();
    const notJson = Buffer.from('{"alg":"RS256",').toString('base64url');
    expect(parseJwt(`${notJson}.e30.c2ln`, 8192).ok).toBe(false);
    expect(decodedHeaderCount()).toBe(before);
    for (let i = 0; i < 1000; i++) {
      const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: `k${i}` })).toString('base64url');
      expect(parseJwt(`${header}.e30.c2ln`, 8192).ok).toBe(true);
      expect(decodedHeaderCount()).toBeLessThanOrEqual(256);
    }
  });

  it('refuses non-canonical base64url (unused bits set) before any cryptography', () => {
    const token = mint(rs, T0);
    const [h, p, s] = token.split('.');
    // flip the unused low bits of the last payload character when there are any
    const rem = p!.length % 4;
    if (rem === 0) return;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(p!.at(-1)!);
    const bumped = alphabet[last | 1]!;
    const result = parseJwt(`${h}.${p!.slice(0, -1)}${bumped}.${s}`, 8192);
    expect(result.ok ? 'ok' : result.error.code).toBe('GH_ERR_JWT_MALFORMED');
  });
});

describe('robustness', () => {
  it('never accepts and never throws for thousands of mutated tokens', async () => {
    const { verifier } = verifierWith(jwks(rs, es, ed));
    await verifier.start();
    const originals = [mint(rs, T0), mint(es, T0), mint(ed, T0)];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ~"\u00e9';
    const rand = seededRandom(42);
    for (let i = 0; i < 3000; i++) {
      const original = originals[i % originals.length]!;
      let t = original;
      const kind = rand(4);
      const at = rand(t.length);
      if (kind === 0) t = t.slice(0, at) + alphabet[rand(alphabet.length)] + t.slice(at + 1);
      else if (kind === 1) t = t.slice(0, at) + t.slice(at + 1);
      else if (kind === 2) t = t.slice(0, at) + alphabet[rand(alphabet.length)] + t.slice(at);
      else t = t.slice(0, at);
      const result = await verifier.verify(t);
      if (t !== original) expect(result.ok, `mutation ${i} was accepted: ${t}`).toBe(false);
      if (!result.ok) expect(result.error.status).toBe(401);
    }
  });
});
