import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntrospectionAuthenticator } from '../../src/authn/introspection.js';
import { createIntrospectionCache, openEntry, sealEntry, tokenKey, type IntrospectionEntry } from '../../src/authn/introspection-cache.js';
import { ctxFor, opaqueConfig, startFakeIntrospection, testServices, type FakeIntrospection } from './introspection-fixtures.js';
import { startScratchRedis, type ScratchRedis } from './introspection-redis.js';
import { startRedisCluster } from '../helpers/redis.js';

const log = pino({ level: 'silent' });
const T0 = Date.UTC(2026, 0, 1);

const entry = (expiresAt: number, checkedAt = 0): IntrospectionEntry => ({ active: true, claims: { sub: 'alice', scope: 'a b' }, expiresAt, checkedAt, minted: { aud: { jwt: 'x.y.z', exp: 1, kid: 'k' } } });

const SECRET = Buffer.from('gateway secret');

describe('sealed entries', () => {
  it('opens with the token it was sealed for', () => {
    const key = tokenKey('opaque-1');
    expect(openEntry('opaque-1', key, sealEntry('opaque-1', key, entry(5), SECRET), SECRET)).toEqual(entry(5));
  });

  it('does not open with another token, under another key, with another gateway secret, or when tampered with', () => {
    const key = tokenKey('opaque-1');
    const sealed = sealEntry('opaque-1', key, entry(5), SECRET);
    expect(openEntry('opaque-2', key, sealed, SECRET)).toBeUndefined();
    expect(openEntry('opaque-1', tokenKey('opaque-2'), sealed, SECRET)).toBeUndefined();
    expect(openEntry('opaque-1', key, sealed, Buffer.from('another gateway secret'))).toBeUndefined();
    const parts = sealed.split('.');
    // One character inside the part (its last characters hold padding bits a decoder ignores).
    const part = parts[2]!;
    parts[2] = `${part.slice(0, 4)}${part[4] === 'A' ? 'B' : 'A'}${part.slice(5)}`;
    expect(openEntry('opaque-1', key, parts.join('.'), SECRET)).toBeUndefined();
    expect(openEntry('opaque-1', key, 'garbage', SECRET)).toBeUndefined();
  });

  it('keys by SHA-256 and never holds the token or the minted JWT in the clear', () => {
    const token = 'opaque-token-value-12345';
    const key = tokenKey(token);
    expect(key).toHaveLength(43);
    expect(key).not.toContain(token);
    const sealed = sealEntry(token, key, entry(5), SECRET);
    expect(sealed).not.toContain(token);
    expect(sealed).not.toContain('x.y.z');
    expect(sealed).not.toContain('alice');
  });
});

describe('the in-memory cache', () => {
  it('forgets an entry at expiresAt', async () => {
    const cache = createIntrospectionCache({ issuer: 'i', maxEntries: 10, log });
    await cache.set('k', 't', entry(T0 + 1000), T0);
    expect(cache.peek('k', T0 + 999)).toBeDefined();
    expect(cache.peek('k', T0 + 1000)).toBeUndefined();
    await cache.close();
  });

  it('stores nothing already expired', async () => {
    const cache = createIntrospectionCache({ issuer: 'i', maxEntries: 10, log });
    await cache.set('k', 't', entry(T0), T0);
    expect(cache.size).toBe(0);
    await cache.close();
  });

  it('is bounded, dropping the least recently used entry', async () => {
    const cache = createIntrospectionCache({ issuer: 'i', maxEntries: 3, log });
    for (const k of ['a', 'b', 'c']) await cache.set(k, k, entry(T0 + 10_000), T0);
    cache.peek('a', T0); // a is now the most recent
    await cache.set('d', 'd', entry(T0 + 10_000), T0);
    expect(cache.size).toBe(3);
    expect(cache.peek('b', T0)).toBeUndefined();
    expect(cache.peek('a', T0)).toBeDefined();
    expect(cache.peek('d', T0)).toBeDefined();
    await cache.close();
  });
});

describe('refusals apart', () => {
  it('a flood of refusals never evicts an active answer', async () => {
    const cache = createIntrospectionCache({ issuer: 'i', maxEntries: 8, log });
    await cache.set('real', 'real', entry(T0 + 60_000), T0);
    for (let i = 0; i < 100; i++) await cache.set(`forged-${i}`, `forged-${i}`, { active: false, expiresAt: T0 + 5_000, checkedAt: T0 }, T0);
    expect(cache.peek('real', T0)?.active).toBe(true);
    expect(cache.size).toBe(1 + 2);
    expect(cache.peek('forged-99', T0)?.active).toBe(false);
    await cache.close();
  });

  it('an answer that changes kind moves between the two', async () => {
    const cache = createIntrospectionCache({ issuer: 'i', maxEntries: 8, log });
    await cache.set('t', 't', { active: false, expiresAt: T0 + 5_000, checkedAt: T0 }, T0);
    await cache.set('t', 't', entry(T0 + 60_000), T0);
    expect(cache.peek('t', T0)?.active).toBe(true);
    expect(cache.size).toBe(1);
    await cache.close();
  });
});

describe('Redis-backed cache (shared by several gateways)', () => {
  let redis: ScratchRedis;
  let fake: FakeIntrospection;
  beforeAll(async () => {
    redis = await startScratchRedis();
    fake = await startFakeIntrospection();
  });
  afterAll(async () => {
    await fake?.close();
    await redis?.stop();
  });

  it('lets a second gateway use what the first introspected, with zero further calls', async () => {
    const S0 = Math.floor(Date.now() / 1000);
    fake.reply = () => ({ body: { active: true, sub: 'alice', scope: 'orders:read', exp: S0 + 600, client_id: 'web' } });
    const top = `redis: { url: ${redis.url}, keyPrefix: 'gh-test:' }`;
    // Two configs (two gateways): separate memory caches, one Redis.
    const config = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const other = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const a = createIntrospectionAuthenticator(config.issuers[0]!, config, testServices(Date.now()));
    const b = createIntrospectionAuthenticator(other.issuers[0]!, other, testServices(Date.now()));
    try {
      await Promise.all([a.start(), b.start()]);
      const token = 'shared-opaque-token';
      const pa = await a.authenticate(token, ctxFor(config));
      expect(pa.kind).toBe('principal');
      expect(fake.seen).toHaveLength(1);
      const pb = await b.authenticate(token, ctxFor(config));
      expect(pb.kind).toBe('principal');
      expect(fake.seen).toHaveLength(1);
      // b does not publish a's signing key, so it forwards a JWT of its own.
      if (pa.kind === 'principal' && pb.kind === 'principal') expect(pb.principal.upstreamToken).not.toBe(pa.principal.upstreamToken);

      // What Redis holds: a hashed key and a sealed value; neither the token nor the JWT.
      const client = new Redis(redis.url);
      try {
        const keys = await client.keys('gh-test:*');
        expect(keys).toHaveLength(1);
        expect(keys[0]).toMatch(new RegExp(`^gh-test:introspection:opaque:[A-Za-z0-9_-]{12}:${tokenKey(token)}$`));
        const value = (await client.get(keys[0]!))!;
        expect(value).not.toContain(token);
        expect(value).not.toContain('alice');
        if (pa.kind === 'principal') expect(value).not.toContain(pa.principal.upstreamToken.split('.')[1]!);
        const ttl = await client.pttl(keys[0]!);
        expect(ttl).toBeGreaterThan(50_000);
        expect(ttl).toBeLessThanOrEqual(60_000);
      } finally {
        client.disconnect();
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('does not share entries with a gateway that checks tokens differently (other audiences)', async () => {
    const S0 = Math.floor(Date.now() / 1000);
    fake.seen.length = 0;
    fake.reply = () => ({ body: { active: true, sub: 'dave', exp: S0 + 600 } });
    const top = `redis: { url: ${redis.url} }`;
    const lax = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const strict = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    strict.issuers[0]!.audiences = ['https://only-this.example'];
    const a = createIntrospectionAuthenticator(lax.issuers[0]!, lax, testServices(Date.now()));
    const b = createIntrospectionAuthenticator(strict.issuers[0]!, strict, testServices(Date.now()));
    try {
      await Promise.all([a.start(), b.start()]);
      expect((await a.authenticate('namespaced', ctxFor(lax))).kind).toBe('principal');
      expect((await b.authenticate('namespaced', ctxFor(strict))).kind).toBe('principal');
      expect(fake.seen).toHaveLength(2);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('refuses a value copied from another namespace key (the whole key is authenticated)', async () => {
    const S0 = Math.floor(Date.now() / 1000);
    fake.seen.length = 0;
    fake.reply = () => ({ body: { active: true, sub: 'erin', exp: S0 + 600 } });
    const top = `redis: { url: ${redis.url}, keyPrefix: 'gh-copy:' }`;
    const lax = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const strict = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    strict.issuers[0]!.audiences = ['https://only-this.example'];
    const a = createIntrospectionAuthenticator(lax.issuers[0]!, lax, testServices(Date.now()));
    const client = new Redis(redis.url);
    try {
      await a.start();
      expect((await a.authenticate('copied', ctxFor(lax))).kind).toBe('principal');
      const [laxKey] = await client.keys('gh-copy:*');
      const value = (await client.get(laxKey!))!;
      // Another gateway (other rules) would look under its own namespace: plant the value there.
      const b = createIntrospectionAuthenticator(strict.issuers[0]!, strict, testServices(Date.now()));
      await b.start();
      await b.authenticate('other-token', ctxFor(strict));
      const strictKey = (await client.keys('gh-copy:*')).find((k) => k !== laxKey)!;
      const strictCopy = strictKey.replace(/[^:]+$/, laxKey!.split(':').at(-1)!);
      await client.set(strictCopy, value, 'PX', 60_000);
      fake.seen.length = 0;
      fake.reply = () => ({ body: { active: false } });
      expect((await b.authenticate('copied', ctxFor(strict))).kind).toBe('denied');
      expect(fake.seen).toHaveLength(1);
      await b.close();
    } finally {
      client.disconnect();
      await a.close();
    }
  });

  it('refuses an entry forged by someone who can write to Redis but does not hold the gateway credential', async () => {
    const S0 = Math.floor(Date.now() / 1000);
    fake.seen.length = 0;
    fake.reply = () => ({ body: { active: true, sub: 'frank', scope: 'orders:read', exp: S0 + 600 } });
    const top = `redis: { url: ${redis.url}, keyPrefix: 'gh-forge:' }`;
    const config = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const gw = createIntrospectionAuthenticator(config.issuers[0]!, config, testServices(Date.now()));
    const client = new Redis(redis.url);
    try {
      await gw.start();
      await gw.authenticate('legit-token', ctxFor(config));
      const [legitKey] = await client.keys('gh-forge:*');
      // The attacker picks a token and writes an "active, admin" entry under its key.
      const forgedToken = 'attacker-chosen-token';
      const forgedKey = legitKey!.replace(/[^:]+$/, tokenKey(forgedToken));
      const forged: IntrospectionEntry = { active: true, claims: { sub: 'mallory', scope: 'admin' }, expiresAt: Date.now() + 60_000, checkedAt: Date.now(), minted: {} };
      await client.set(forgedKey, sealEntry(forgedToken, forgedKey, forged, Buffer.from('a guessed secret')), 'PX', 60_000);
      fake.seen.length = 0;
      fake.reply = () => ({ body: { active: false } });
      const outcome = await gw.authenticate(forgedToken, ctxFor(config));
      expect(outcome.kind).toBe('denied');
      expect(fake.seen).toHaveLength(1);
    } finally {
      client.disconnect();
      await gw.close();
    }
  });

  describe("each reader keeps its own cacheTtl (the namespace leaves TTLs out)", () => {
    /** A cache on the scratch Redis with a known secret, as a second gateway with these TTLs would read. */
    async function reader(prefix: string, maxAge: number, negativeMaxAge: number) {
      const cache = createIntrospectionCache({ issuer: 'i', maxEntries: 10, log, secret: SECRET, maxAge, negativeMaxAge, redis: { url: redis.url, keyPrefix: prefix, timeout: 1000 } });
      await cache.start();
      return cache;
    }
    /** Write a sealed value the way another gateway would (any JSON: old entries included). */
    async function plant(prefix: string, token: string, value: object, ttl = 60_000) {
      const client = new Redis(redis.url);
      try {
        const full = `${prefix}introspection:i:${tokenKey(token)}`;
        await client.set(full, sealEntry(token, full, value as IntrospectionEntry, SECRET), 'PX', ttl);
      } finally {
        client.disconnect();
      }
    }

    it("uses another gateway's active entry at most its own maxAge from checkedAt, whatever the writer's expiresAt", async () => {
      const cache = await reader('gh-cap1:', 5_000, 1_000);
      try {
        await plant('gh-cap1:', 'tok', entry(T0 + 60_000, T0));
        expect((await cache.get(tokenKey('tok'), 'tok', T0 + 2_000))?.expiresAt).toBe(T0 + 5_000);
        // From memory now, with the capped expiry.
        expect(cache.peek(tokenKey('tok'), T0 + 4_999)).toBeDefined();
        expect(cache.peek(tokenKey('tok'), T0 + 5_000)).toBeUndefined();
        expect(await cache.get(tokenKey('tok'), 'tok', T0 + 5_000)).toBeUndefined();
        // The writer's own earlier expiry (exp, a shorter TTL) still wins.
        await plant('gh-cap1:', 'short', entry(T0 + 3_000, T0));
        expect((await cache.get(tokenKey('short'), 'short', T0 + 1_000))?.expiresAt).toBe(T0 + 3_000);
      } finally {
        await cache.close();
      }
    });

    it("caps a refusal by the reader's own negative TTL", async () => {
      const cache = await reader('gh-cap3:', 60_000, 1_000);
      try {
        await plant('gh-cap3:', 'tok', { active: false, expiresAt: T0 + 30_000, checkedAt: T0 });
        expect((await cache.get(tokenKey('tok'), 'tok', T0 + 500))?.expiresAt).toBe(T0 + 1_000);
        expect(await cache.get(tokenKey('tok'), 'tok', T0 + 1_000)).toBeUndefined();
      } finally {
        await cache.close();
      }
    });

    it("counts a checkedAt ahead of the reader's clock (skew between gateways) as now", async () => {
      const cache = await reader('gh-cap4:', 5_000, 1_000);
      try {
        await plant('gh-cap4:', 'tok', entry(T0 + 60_000, T0 + 30_000));
        expect((await cache.get(tokenKey('tok'), 'tok', T0))?.expiresAt).toBe(T0 + 5_000);
      } finally {
        await cache.close();
      }
    });

    it('treats an entry without checkedAt (written before the cap: age unknown) as a miss', async () => {
      const cache = await reader('gh-cap5:', 5_000, 1_000);
      try {
        const { checkedAt: _, ...old } = entry(T0 + 60_000, T0) as IntrospectionEntry & { checkedAt?: number };
        await plant('gh-cap5:', 'tok', old);
        expect(await cache.get(tokenKey('tok'), 'tok', T0)).toBeUndefined();
        expect(cache.size).toBe(0);
      } finally {
        await cache.close();
      }
    });

    it('a gateway with cacheTtl: 5s refuses a revoked token 5 s after it was introspected, though a 60 s gateway wrote the entry', async () => {
      const start = Date.now();
      fake.seen.length = 0;
      fake.reply = () => ({ body: { active: true, sub: 'gina', scope: 'orders:read', exp: Math.floor(start / 1000) + 600 } });
      const top = `redis: { url: ${redis.url}, keyPrefix: 'gh-ttl:' }`;
      const long = opaqueConfig(fake, 'cacheTtl: 60s', { top });
      const short = opaqueConfig(fake, 'cacheTtl: 5s', { top });
      const clockA = testServices(start);
      const clockB = testServices(start);
      const a = createIntrospectionAuthenticator(long.issuers[0]!, long, clockA);
      const b = createIntrospectionAuthenticator(short.issuers[0]!, short, clockB);
      try {
        await Promise.all([a.start(), b.start()]);
        expect((await a.authenticate('revocable', ctxFor(long))).kind).toBe('principal');
        expect(fake.seen).toHaveLength(1);
        clockB.clock.now = start + 2_000;
        expect((await b.authenticate('revocable', ctxFor(short))).kind).toBe('principal');
        expect(fake.seen).toHaveLength(1); // shared: b used a's entry
        fake.reply = () => ({ body: { active: false } }); // revoked at the server
        clockB.clock.now = start + 5_000;
        const outcome = await b.authenticate('revocable', ctxFor(short));
        expect(outcome.kind === 'denied' && outcome.error.code).toBe('GH_ERR_INTROSPECTION_INACTIVE');
        expect(fake.seen).toHaveLength(2);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    it("a gateway with negativeCacheTtl: 1s asks again 1 s after a refusal another gateway cached for 30 s", async () => {
      const start = Date.now();
      fake.seen.length = 0;
      fake.reply = () => ({ body: { active: false } });
      const top = `redis: { url: ${redis.url}, keyPrefix: 'gh-neg:' }`;
      const long = opaqueConfig(fake, 'cacheTtl: 60s, negativeCacheTtl: 30s', { top });
      const short = opaqueConfig(fake, 'cacheTtl: 60s, negativeCacheTtl: 1s', { top });
      const clockB = testServices(start);
      const a = createIntrospectionAuthenticator(long.issuers[0]!, long, testServices(start));
      const b = createIntrospectionAuthenticator(short.issuers[0]!, short, clockB);
      try {
        await Promise.all([a.start(), b.start()]);
        expect((await a.authenticate('not-yet', ctxFor(long))).kind).toBe('denied');
        clockB.clock.now = start + 500;
        expect((await b.authenticate('not-yet', ctxFor(short))).kind).toBe('denied');
        expect(fake.seen).toHaveLength(1);
        fake.reply = () => ({ body: { active: true, sub: 'hal', exp: Math.floor(start / 1000) + 600 } });
        clockB.clock.now = start + 1_000;
        expect((await b.authenticate('not-yet', ctxFor(short))).kind).toBe('principal');
        expect(fake.seen).toHaveLength(2);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  });

  it('works on a Redis Cluster (redis.cluster: true)', async () => {
    const cluster = await startRedisCluster();
    const S0 = Math.floor(Date.now() / 1000);
    fake.seen.length = 0;
    fake.reply = () => ({ body: { active: true, sub: 'carol', exp: S0 + 600 } });
    const top = `redis: { url: ${cluster.url}, cluster: true, timeout: 1s }`;
    const a = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const b = opaqueConfig(fake, 'cacheTtl: 60s', { top });
    const ga = createIntrospectionAuthenticator(a.issuers[0]!, a, testServices(Date.now()));
    const gb = createIntrospectionAuthenticator(b.issuers[0]!, b, testServices(Date.now()));
    try {
      await Promise.all([ga.start(), gb.start()]);
      for (let i = 0; i < 5; i++) expect((await ga.authenticate(`cluster-token-${i}`, ctxFor(a))).kind).toBe('principal');
      expect(fake.seen).toHaveLength(5);
      for (let i = 0; i < 5; i++) expect((await gb.authenticate(`cluster-token-${i}`, ctxFor(b))).kind).toBe('principal');
      expect(fake.seen).toHaveLength(5);
    } finally {
      await Promise.all([ga.close(), gb.close()]);
      await cluster.stop();
    }
  }, 30_000);

  it('keeps working (introspecting every miss) when Redis goes away', async () => {
    const spare = await startScratchRedis();
    const S0 = Math.floor(Date.now() / 1000);
    fake.seen.length = 0;
    fake.reply = () => ({ body: { active: true, sub: 'bob', exp: S0 + 600 } });
    const config = opaqueConfig(fake, 'cacheTtl: 60s', { top: `redis: { url: ${spare.url}, timeout: 100ms }` });
    const services = testServices(Date.now());
    const a = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    try {
      await a.start();
      await spare.stop();
      const outcome = await a.authenticate('after-redis-died', ctxFor(config));
      expect(outcome.kind).toBe('principal');
      expect(fake.seen).toHaveLength(1);
    } finally {
      await a.close();
    }
  });
});
