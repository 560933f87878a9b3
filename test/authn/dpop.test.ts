import { generateKeyPairSync, hash, randomUUID, sign, type KeyObject } from 'node:crypto';
import { base64url, calculateJwkThumbprint, SignJWT, type JWK } from 'jose';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireDpopChecker, acquireSharedReplay, createDpopChecker, jwkThumbprint, MAX_PROOF_SIZE, ProofReplayCache, type SharedReplayStore } from '../../src/authn/dpop.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { loadConfigText } from '../../src/config/load.js';
import type { DpopConfig } from '../../src/config/types.js';
import type { RequestContext } from '../../src/pipeline/context.js';
import { testKey } from './jwt-fixtures.js';

/** DPoP proofs (RFC 9449 §4.3): what must be refused first, then what is accepted. */

const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);
const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
const CONFIG: DpopConfig = { algorithms: ['ES256', 'PS256', 'RS256', 'EdDSA'], proofMaxAge: 60_000, clockSkew: 5_000, maxProofs: 1000 };

interface Signer {
  alg: string;
  privateKey: KeyObject;
  jwk: JWK;
  jkt: string;
}

/** A client key pair (testKey of the JWT fixtures; its JWK's kid, alg and use are dropped). */
function signer(alg: 'ES256' | 'RS256' | 'PS256' | 'EdDSA' | 'ES384', kid = 'dpop-1'): Signer {
  const key = testKey(alg, kid);
  const jwk = key.publicKey.export({ format: 'jwk' }) as JWK;
  return { alg, privateKey: key.privateKey, jwk, jkt: jwkThumbprint(jwk as Record<string, unknown>) };
}

const es = signer('ES256');

async function proof(
  s: Signer = es,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const payload = { jti: randomUUID(), htm: 'GET', htu: 'https://api.example.test/orders/7', iat: Math.floor(NOW / 1000), ath: hash('sha256', TOKEN, 'base64url'), ...claims };
  for (const k of Object.keys(payload)) if ((payload as Record<string, unknown>)[k] === undefined) delete (payload as Record<string, unknown>)[k];
  return new SignJWT(payload).setProtectedHeader({ alg: s.alg, typ: 'dpop+jwt', jwk: s.jwk, ...header } as never).sign(s.privateKey);
}

/** A proof signed by `es` with exactly this header (jose refuses to sign some hostile ones). */
function rawProof(header: Record<string, unknown>, claims: Record<string, unknown> = {}, key: KeyObject = es.privateKey): string {
  const payload = { jti: randomUUID(), htm: 'GET', htu: 'https://api.example.test/orders/7', iat: NOW / 1000, ath: hash('sha256', TOKEN, 'base64url'), ...claims };
  const input = `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

function request(dpop: string | string[] | undefined, over: Partial<RequestContext> = {}): RequestContext {
  const rawHeaders = ['Host', 'api.example.test'];
  const list = dpop === undefined ? [] : Array.isArray(dpop) ? dpop : [dpop];
  for (const value of list) rawHeaders.push('DPoP', value);
  return {
    method: 'GET',
    path: '/orders/7',
    targetPath: '/orders/7',
    secure: true,
    headers: { host: 'api.example.test', ...(list.length > 0 ? { dpop: list.join(', ') } : {}) },
    rawHeaders,
    ...over,
  } as unknown as RequestContext;
}

function checker(config: DpopConfig = CONFIG, now = NOW) {
  return createDpopChecker(config, () => now, new ProofReplayCache(config.proofMaxAge + 2 * config.clockSkew, config.maxProofs));
}

async function refusal(p: string | string[] | undefined, over: Partial<RequestContext> = {}, jkt = es.jkt, c = checker()): Promise<string> {
  const denial = await c.check(request(p, over), TOKEN, jkt);
  return denial === null ? 'ok' : `${denial.code}: ${denial.detail}`;
}

describe('RFC 7638 thumbprints', () => {
  it("computes the RFC's own example (§3.1)", () => {
    const jwk = {
      kty: 'RSA',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      e: 'AQAB',
      alg: 'RS256',
      kid: '2011-04-29',
    };
    expect(jwkThumbprint(jwk)).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  it.each(['ES256', 'ES384', 'EdDSA', 'RS256'] as const)('agrees with jose for a %s key', async (alg) => {
    const s = signer(alg);
    expect(s.jkt).toBe(await calculateJwkThumbprint(s.jwk, 'sha256'));
  });
});

describe('a DPoP proof is refused', () => {
  it('when there is none, or two', async () => {
    expect(await refusal(undefined)).toMatch(/^GH_ERR_DPOP_PROOF_MISSING/);
    expect(await refusal([await proof(), await proof()])).toMatch(/^GH_ERR_DPOP_PROOF_INVALID: more than one DPoP header/);
  });

  it('when it is too long, or not a compact JWS', async () => {
    expect(await refusal('a'.repeat(MAX_PROOF_SIZE + 1))).toMatch(/at most 8192/);
    const good = await proof();
    const [h, p, sig] = good.split('.');
    for (const bad of [`${h}.${p}`, `${h}.${p}.${sig}.x`, `.${p}.${sig}`, `${h}..${sig}`, `${h}.${p}.`, `${h}.${p}.${sig}=`, `${h}!.${p}.${sig}`, 'abc']) {
      expect(await refusal(bad), bad).toMatch(/^GH_ERR_DPOP_PROOF_INVALID/);
    }
    expect(await refusal(`${base64url.encode('[1]')}.${p}.${sig}`)).toMatch(/header is not base64url-encoded JSON object/);
    expect(await refusal(`${h}.${base64url.encode('"x"')}.${sig}`)).toMatch(/payload is not base64url-encoded JSON object/);
  });

  it('when its header is not that of a DPoP proof', async () => {
    expect(await refusal(await proof(es, {}, { typ: 'JWT' }))).toMatch(/typ "JWT" is not "dpop\+jwt"/);
    expect(await refusal(await proof(es, {}, { typ: undefined }))).toMatch(/typ undefined/);
    expect(await refusal(rawProof({ alg: 'ES256', typ: 'dpop+jwt', jwk: es.jwk, crit: ['exp'], exp: 1 }))).toMatch(/crit is not supported/);
    expect(await refusal(await proof(es, {}, { jwk: undefined }))).toMatch(/no jwk object/);
    expect(await refusal(await proof(es, {}, { jwk: 'key' }))).toMatch(/no jwk object/);
  });

  it('when it is signed with an algorithm not allowed: none, HS256, or one left out of dpop.algorithms', async () => {
    const good = await proof();
    const [, p, sig] = good.split('.');
    const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: es.jwk }))}.${p}.`;
    expect(await refusal(none)).toMatch(/^GH_ERR_DPOP_PROOF_INVALID/);
    const hs = `${base64url.encode(JSON.stringify({ alg: 'HS256', typ: 'dpop+jwt', jwk: es.jwk }))}.${p}.${sig}`;
    expect(await refusal(hs)).toMatch(/alg "HS256" is not one of/);
    const es384 = signer('ES384');
    expect(await refusal(await proof(es384), {}, es384.jkt)).toMatch(/alg "ES384" is not one of ES256, PS256, RS256, EdDSA/);
  });

  it('when its jwk holds private key material, is too weak, or does not fit the algorithm', async () => {
    const privateJwk = es.privateKey.export({ format: 'jwk' });
    expect(await refusal(await proof(es, {}, { jwk: privateJwk }))).toMatch(/private key material \("d"\)/);
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weakJwk = weak.publicKey.export({ format: 'jwk' });
    const weakProof = rawProof({ alg: 'RS256', typ: 'dpop+jwt', jwk: weakJwk }, {}, weak.privateKey);
    expect(await refusal(weakProof)).toMatch(/the proof jwk is refused: the RSA modulus has 1024 bits/);
    const rsa = signer('RS256');
    expect(await refusal(await proof(es, {}, { jwk: rsa.jwk }))).toMatch(/the proof jwk is refused/);
  });

  it('when the signature does not verify with its jwk', async () => {
    const other = signer('ES256', 'other');
    // Signed by another key, naming this one.
    expect(await refusal(await proof(other, {}, { jwk: es.jwk }))).toMatch(/signature does not verify/);
    const good = await proof();
    const flipped = good.slice(0, -2) + (good.at(-2) === 'A' ? 'B' : 'A') + good.at(-1);
    expect(await refusal(flipped)).toMatch(/^GH_ERR_DPOP_PROOF_INVALID/);
  });

  it('when jti is missing, empty, not a string or too long', async () => {
    for (const jti of [undefined, '', 42, 'j'.repeat(129)]) {
      expect(await refusal(await proof(es, { jti })), String(jti)).toMatch(/jti must be a string of 1 to 128 characters/);
    }
  });

  it('when it was made for another method', async () => {
    expect(await refusal(await proof(es, { htm: 'POST' }))).toMatch(/htm "POST" is not the request's method GET/);
    expect(await refusal(await proof(es, { htm: 'get' }))).toMatch(/htm "get"/);
    expect(await refusal(await proof(es, { htm: undefined }))).toMatch(/htm undefined/);
  });

  it('when it was made for another URI: scheme, host, port or path', async () => {
    for (const [htu, why] of [
      ['http://api.example.test/orders/7', /scheme http is not the request's https/],
      ['https://evil.example/orders/7', /host evil.example is not the request's api.example.test/],
      ['https://api.example.test:8443/orders/7', /host api.example.test:8443/],
      ['https://api.example.test/orders/8', /htu path \/orders\/8 is not the request's \/orders\/7/],
      ['https://api.example.test/orders/7/', /htu path/],
      ['https://api.example.test/orders', /htu path/],
      ['/orders/7', /is not a URI/],
      ['', /htu must be a URI/],
    ] as const) {
      expect(await refusal(await proof(es, { htu })), htu).toMatch(why);
    }
    expect(await refusal(await proof(es, { htu: 42 }))).toMatch(/htu must be a URI/);
    // The request came in over plain HTTP: an https htu does not match it.
    expect(await refusal(await proof(), { secure: false })).toMatch(/scheme https is not the request's http/);
  });

  it('when it is too old, or from the future beyond the clock skew', async () => {
    const s = NOW / 1000;
    expect(await refusal(await proof(es, { iat: s - 66 }))).toMatch(/the proof is 66 s old; at most 60 s \(\+5 s skew\)/);
    expect(await refusal(await proof(es, { iat: s + 6 }))).toMatch(/iat is 6 s in the future/);
    expect(await refusal(await proof(es, { iat: String(s) }))).toMatch(/iat must be a number/);
    expect(await refusal(await proof(es, { iat: undefined }))).toMatch(/iat must be a number/);
  });

  it('when ath is missing or is not the hash of this access token', async () => {
    expect(await refusal(await proof(es, { ath: undefined }))).toMatch(/ath \(the hash of the access token\) is missing/);
    expect(await refusal(await proof(es, { ath: hash('sha256', `${TOKEN}x`, 'base64url') }))).toMatch(/ath does not match the access token/);
    expect(await refusal(await proof(es, { ath: hash('sha256', TOKEN, 'base64') }))).toMatch(/ath does not match/);
  });

  it('with 401 invalid_token when a valid proof is signed by another key than the token is bound to', async () => {
    const other = signer('ES256', 'other');
    const denial = checker().check(request(await proof(other)), TOKEN, es.jkt)!;
    expect(denial).toMatchObject({ code: 'GH_ERR_DPOP_KEY_MISMATCH', status: 401, oauthError: 'invalid_token', dpop: true });
  });

  it('when it is replayed: the same jti from the same key, within its lifetime', async () => {
    const c = checker();
    const p = await proof(es, { jti: 'once' });
    expect(await refusal(p, {}, es.jkt, c)).toBe('ok');
    expect(await refusal(p, {}, es.jkt, c)).toMatch(/^GH_ERR_DPOP_PROOF_REPLAYED/);
    // A new proof with the same jti is a replay too.
    expect(await refusal(await proof(es, { jti: 'once' }), {}, es.jkt, c)).toMatch(/^GH_ERR_DPOP_PROOF_REPLAYED/);
  });

  it('with 503 and Retry-After, never forgetting a proof, when the replay memory is full', async () => {
    const replay = new ProofReplayCache(70_000, 2);
    const c = createDpopChecker(CONFIG, () => NOW, replay);
    expect(c.check(request(await proof()), TOKEN, es.jkt)).toBeNull();
    expect(c.check(request(await proof()), TOKEN, es.jkt)).toBeNull();
    const full = c.check(request(await proof()), TOKEN, es.jkt)!;
    expect(full).toMatchObject({ code: 'GH_ERR_DPOP_REPLAY_CACHE_FULL', status: 503, headers: { 'retry-after': '70' } });
  });

  it('answers every proof refusal with 401 invalid_dpop_proof and a DPoP challenge', async () => {
    const denial = checker().check(request(await proof(es, { htm: 'POST' })), TOKEN, es.jkt)!;
    expect(denial).toMatchObject({ status: 401, oauthError: 'invalid_dpop_proof', challenge: true, dpop: true });
  });
});

describe('a DPoP proof is accepted', () => {
  it.each(['ES256', 'RS256', 'PS256', 'EdDSA'] as const)('signed with %s by the bound key, for this method and URI', async (alg) => {
    const s = signer(alg);
    expect(await refusal(await proof(s), {}, s.jkt)).toBe('ok');
  });

  it('with htu spelled differently but naming the same URI: case of scheme and host, default port, query and fragment, %XX of unreserved characters', async () => {
    for (const htu of ['HTTPS://API.example.test/orders/7', 'https://api.example.test:443/orders/7', 'https://api.example.test/orders/7?x=1#f', 'https://api.example.test/%6Frders/7']) {
      expect(await refusal(await proof(es, { htu })), htu).toBe('ok');
    }
  });

  it('on a stripPrefix route, against the path the client requested', async () => {
    expect(await refusal(await proof(es, { htu: 'https://api.example.test/api/orders/7' }), { path: '/orders/7', targetPath: '/api/orders/7' } as never)).toBe('ok');
  });

  it('at the edges of its lifetime', async () => {
    const s = NOW / 1000;
    expect(await refusal(await proof(es, { iat: s - 65 }))).toBe('ok');
    expect(await refusal(await proof(es, { iat: s + 5 }))).toBe('ok');
  });

  it('over plain HTTP and an explicit port when that is how the request came', async () => {
    const p = await proof(es, { htu: 'http://127.0.0.1:8080/orders/7' });
    expect(await refusal(p, { secure: false, headers: { host: '127.0.0.1:8080', dpop: p } } as never)).toBe('ok');
  });
});

describe('behind a TLS-terminating proxy', () => {
  const via = (p: string, peerTrusted: boolean, forwardedHost?: string) =>
    request(p, { peerTrusted, headers: { host: 'gatehouse.internal:8080', dpop: p, ...(forwardedHost ? { 'x-forwarded-host': forwardedHost } : {}) } } as never);

  it("takes a trusted proxy's X-Forwarded-Host (its first value) as the host the client addressed", async () => {
    expect(await checker().check(via(await proof(), true, 'api.example.test'), TOKEN, es.jkt)).toBeNull();
    expect(await checker().check(via(await proof(), true, 'api.example.test, gatehouse.internal:8080'), TOKEN, es.jkt)).toBeNull();
  });

  it("ignores X-Forwarded-Host from a peer that is not a trusted proxy, and a trusted proxy's Host when it forwards none", async () => {
    expect((await checker().check(via(await proof(), false, 'api.example.test'), TOKEN, es.jkt))?.detail).toMatch(/htu host api.example.test is not the request's gatehouse.internal:8080/);
    expect((await checker().check(via(await proof(), true), TOKEN, es.jkt))?.detail).toMatch(/is not the request's gatehouse.internal:8080/);
  });
});

describe('one checker per gateway plan', () => {
  it('is shared by every caller holding the same config object, and released by the last', async () => {
    const config = loadConfigText('listen: { port: 0 }\nupstreams: [ { name: api, url: "http://127.0.0.1:1" } ]\nroutes: [ { name: p, path: /p, upstream: api, public: true } ]\n', 'gatehouse.yaml', {});
    const log = { warn() {} } as unknown as Logger;
    const a = acquireDpopChecker(config, () => NOW, log);
    const b = acquireDpopChecker(config, () => NOW, log);
    expect(b.checker).toBe(a.checker);
    await a.release();
    await a.release(); // twice from one holder counts once
    const c = acquireDpopChecker(config, () => NOW, log);
    expect(c.checker).toBe(a.checker); // b still holds it
    await b.release();
    await c.release();
    expect(acquireDpopChecker(config, () => NOW, log).checker).not.toBe(a.checker);
    // A reloaded config (another object) gets its own.
    const reloaded = { ...config };
    expect(acquireDpopChecker(reloaded, () => NOW, log).checker).not.toBe(a.checker);
  });
});

describe('checked proof headers, remembered by their text', () => {
  it('still refuses a proof signed by another key under a header already seen, and checks every new header in full', async () => {
    const c = checker();
    expect(await refusal(await proof(), {}, es.jkt, c)).toBe('ok');
    const other = signer('ES256', 'other');
    // The same header text (es's jwk), signed by another key: the remembered key does not verify it.
    expect(await refusal(await proof(other, {}, { jwk: es.jwk }), {}, es.jkt, c)).toMatch(/signature does not verify/);
    // The same jwk with a private member, or another typ: another text, checked again.
    expect(await refusal(await proof(es, {}, { jwk: es.privateKey.export({ format: 'jwk' }) }), {}, es.jkt, c)).toMatch(/private key material/);
    expect(await refusal(await proof(es, {}, { typ: 'JWT' }), {}, es.jkt, c)).toMatch(/typ "JWT"/);
    expect(await refusal(await proof(), {}, es.jkt, c)).toBe('ok');
  });
});

describe('the replay memory', () => {
  it('keeps a proof at least one lifetime, then forgets it', () => {
    const replay = new ProofReplayCache(1000, 100);
    expect(replay.admit('k a', 0)).toBe('fresh');
    expect(replay.admit('k a', 999)).toBe('replayed');
    expect(replay.admit('k b', 999)).toBe('fresh');
    expect(replay.admit('k a', 1500)).toBe('replayed'); // rotated at 1000: the old generation still holds it
    expect(replay.admit('k b', 1999)).toBe('replayed');
    expect(replay.admit('k a', 2000)).toBe('replayed'); // kept until the next rotation
    expect(replay.admit('k a', 2500)).toBe('fresh'); // two rotations later
    expect(replay.admit('k c', 10_000)).toBe('fresh');
    expect(replay.size).toBe(1);
  });
});

describe('the replay memory shared through Redis (several processes, one real redis-server)', () => {
  let redis: TestRedis;
  const lines: { msg: string }[] = [];
  const log = { warn: (_o: unknown, msg: string) => lines.push({ msg }) } as unknown as Logger;
  const redisConfig = (url: string, onError: 'failOpen' | 'failClosed' = 'failClosed') => ({ url, keyPrefix: 'gh-test:', timeout: 500, onError, cluster: false });

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  /** One gateway process: its own replay memory, the shared store. */
  function process(store: SharedReplayStore, onError: 'failOpen' | 'failClosed' = 'failClosed') {
    return createDpopChecker(CONFIG, () => NOW, new ProofReplayCache(70_000, 1000), { store, onError, log });
  }

  async function ready(store: SharedReplayStore): Promise<void> {
    for (let i = 0; i < 50 && (await store.admit(`probe ${randomUUID()}`, 1000)) === 'unavailable'; i++) await new Promise((r) => setTimeout(r, 50));
  }

  it('refuses a proof replayed to another process, and remembers it in Redis for its lifetime', async () => {
    const store = acquireSharedReplay(redisConfig(redis.url), log);
    try {
      await ready(store);
      const [one, two] = [process(store), process(store)];
      const p = await proof(es, { jti: 'shared-once' });
      expect(await one.check(request(p), TOKEN, es.jkt)).toBeNull();
      const replay = await two.check(request(p), TOKEN, es.jkt);
      expect(replay).toMatchObject({ code: 'GH_ERR_DPOP_PROOF_REPLAYED', status: 401 });
      // Another jti from the same key is a new proof.
      expect(await two.check(request(await proof(es, { jti: 'shared-twice' })), TOKEN, es.jkt)).toBeNull();
      const client = new Redis(redis.url);
      try {
        // The key: the prefix and the SHA-256 of the key thumbprint and jti (no client-chosen text).
        const ttl = await client.pttl(`gh-test:dpop:${hash('sha256', `${es.jkt} shared-once`, 'base64url')}`);
        expect(ttl).toBeGreaterThan(60_000);
        expect(ttl).toBeLessThanOrEqual(70_000);
      } finally {
        client.disconnect();
      }
    } finally {
      await store.release();
    }
  });

  it('answers 503 while Redis cannot say (failClosed), and relies on its own memory with failOpen, saying so once', async () => {
    const store = acquireSharedReplay(redisConfig(redis.url), log);
    try {
      await ready(store);
      redis.pause();
      const closed = await process(store, 'failClosed').check(request(await proof()), TOKEN, es.jkt);
      expect(closed).toMatchObject({ code: 'GH_ERR_DPOP_REPLAY_STORE_UNAVAILABLE', status: 503, headers: { 'retry-after': '1' } });
      const open = process(store, 'failOpen');
      const p = await proof();
      expect(await open.check(request(p), TOKEN, es.jkt)).toBeNull();
      expect(await open.check(request(await proof()), TOKEN, es.jkt)).toBeNull();
      // Its own memory still refuses a replay to the same process.
      expect(await open.check(request(p), TOKEN, es.jkt)).toMatchObject({ code: 'GH_ERR_DPOP_PROOF_REPLAYED' });
      expect(lines.filter((l) => /redis did not answer/.test(l.msg))).toHaveLength(1);
    } finally {
      redis.resume();
      await store.release();
    }
  });
});

describe('server-provided nonces (dpop.nonce)', () => {
  const lifetime = 60_000;
  const nonceConfig: DpopConfig = { ...CONFIG, nonce: { lifetime, secret: 'the-secret-for-nonce-unit-tests-0123456789' } };
  // NOW sits in some window; `later` is one window on, still inside the proof's age limit for a fresh iat.
  const later = NOW + lifetime;
  const withResponse = (dpop: string) => ({ ...request(dpop), responseHeaders: [] as [string, string][] }) as unknown as RequestContext;

  it('offers the newer nonce with the answer when the proof used the previous one, and none when it used the current one', async () => {
    const { createNonceIssuer } = await import('../../src/authn/dpop-nonce.js');
    const nonces = createNonceIssuer(lifetime, nonceConfig.nonce!.secret);
    const old = nonces.current(NOW);
    const ctx = withResponse(await proof(es, { nonce: old, iat: Math.floor(later / 1000) }));
    expect(checker(nonceConfig, later).check(ctx, TOKEN, es.jkt)).toBeNull();
    expect(ctx.responseHeaders).toEqual([['dpop-nonce', nonces.current(later)]]);

    const fresh = withResponse(await proof(es, { nonce: nonces.current(later), iat: Math.floor(later / 1000) }));
    expect(checker(nonceConfig, later).check(fresh, TOKEN, es.jkt)).toBeNull();
    expect(fresh.responseHeaders).toEqual([]);
  });

  it('refuses a nonce two windows old with use_dpop_nonce and the current one, before the replay memory', async () => {
    const { createNonceIssuer } = await import('../../src/authn/dpop-nonce.js');
    const nonces = createNonceIssuer(lifetime, nonceConfig.nonce!.secret);
    const at = NOW + 2 * lifetime;
    const p = await proof(es, { nonce: nonces.current(NOW), iat: Math.floor(at / 1000) });
    const check = checker(nonceConfig, at);
    const denial = check.check(withResponse(p), TOKEN, es.jkt) as { code: string; oauthError: string; headers: Record<string, string> };
    expect(denial).toMatchObject({ code: 'GH_ERR_DPOP_NONCE_REQUIRED', oauthError: 'use_dpop_nonce', headers: { 'dpop-nonce': nonces.current(at) } });
    // The refused proof's jti was not remembered: the same key's next proof (same jti, now with the nonce) passes.
    const jti = JSON.parse(Buffer.from(p.split('.')[1]!, 'base64url').toString()).jti as string;
    const retried = await proof(es, { jti, nonce: nonces.current(at), iat: Math.floor(at / 1000) });
    expect(check.check(withResponse(retried), TOKEN, es.jkt)).toBeNull();
  });
});
