import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { issuesOf } from '../helpers/config.js';

/** `authFailureLimit` end to end: forged tokens from one address, then its good token refused too. */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let token: string;
let forged: string;

// Linux answers on all of 127/8: one client per loopback address.
const agents = new Map<string, Agent>();
const from = (address: string) => {
  let agent = agents.get(address);
  if (agent === undefined) agents.set(address, (agent = new Agent({ localAddress: address })));
  return agent;
};

const yaml = (limit: string, extra = '') => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [ { name: api, url: ${api.url} } ]
${extra}
authFailureLimit: ${limit}
routes:
  - { name: orders, path: /orders, upstream: api }
  - { name: status, path: /status, upstream: api, public: true }
`;

async function call(gw: TestGateway, address: string, bearer?: string, path = '/orders') {
  const res = await request(`${gw.url}${path}`, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {}, dispatcher: from(address) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : null };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  // The same token with its signature's last characters changed: a forgery.
  forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
});

afterAll(async () => {
  for (const agent of agents.values()) await agent.close();
  await api?.close();
  await as?.stop();
});

describe('authFailureLimit (memory)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(yaml('{ limit: 3, window: 1m, blockFor: 2s }'));
  });
  afterAll(async () => gw?.close());

  it('blocks an address after three forged tokens: then even its good token is refused, before it is read', async () => {
    for (let i = 0; i < 3; i++) expect((await call(gw, '127.0.0.2', forged)).status).toBe(401);
    const before = api.requests.length;
    const refused = await call(gw, '127.0.0.2', token);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ code: 'GH_ERR_LIMIT_AUTH_FAILURES', detail: 'too many failed authentications from this address' });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(2);
    expect(refused.headers['www-authenticate']).toBeUndefined();
    expect(api.requests.length).toBe(before);
    const line = gw.logs.find((l) => l.msg === 'client address blocked after failed authentications');
    expect(line).toMatchObject({ level: 'warn', client_ip: '127.0.0.2', failures: 3, block_ms: 2000, store: 'memory' });
    const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text();
    expect(metrics).toMatch(/^gatehouse_auth_failure_blocks_total 1$/m);
  });

  it('leaves other addresses and public routes alone', async () => {
    expect((await call(gw, '127.0.0.3', token)).status).toBe(200);
    expect((await call(gw, '127.0.0.2', undefined, '/status')).status).toBe(200);
  });

  it('a reload does not lift the block; it ends after blockFor', async () => {
    await gw.reload(yaml('{ limit: 3, window: 1m, blockFor: 2s }'));
    expect((await call(gw, '127.0.0.2', token)).status).toBe(429);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await call(gw, '127.0.0.2', token)).status).toBe(200);
  });

  it('does not count requests without a token, nor good tokens', async () => {
    for (let i = 0; i < 6; i++) expect((await call(gw, '127.0.0.4')).status).toBe(401);
    for (let i = 0; i < 3; i++) expect((await call(gw, '127.0.0.4', token)).status).toBe(200);
    expect((await call(gw, '127.0.0.4', forged)).status).toBe(401);
    expect((await call(gw, '127.0.0.4', token)).status).toBe(200);
  });
});

describe('authFailureLimit (redis): shared by every gateway', () => {
  let redis: TestRedis;
  let one: TestGateway;
  let two: TestGateway;
  beforeAll(async () => {
    redis = await startRedis();
    const extra = `redis: { url: "${redis.url}" }`;
    one = await startTestGateway(yaml('{ limit: 4, window: 1m, blockFor: 30s, store: redis }', extra));
    two = await startTestGateway(yaml('{ limit: 4, window: 1m, blockFor: 30s, store: redis }', extra));
  });
  afterAll(async () => {
    await one?.close();
    await two?.close();
    await redis?.stop();
  });

  it('failures counted on two gateways block the address on both', async () => {
    expect((await call(one, '127.0.0.5', forged)).status).toBe(401);
    expect((await call(two, '127.0.0.5', forged)).status).toBe(401);
    expect((await call(one, '127.0.0.5', forged)).status).toBe(401);
    expect((await call(two, '127.0.0.5', token)).status).toBe(200);
    expect((await call(two, '127.0.0.5', forged)).status).toBe(401);
    const before = api.requests.length;
    for (const gw of [one, two]) {
      const refused = await call(gw, '127.0.0.5', token);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(20);
    }
    expect(api.requests.length).toBe(before);
    expect((await call(one, '127.0.0.6', token)).status).toBe(200);
  });

  it('with Redis gone, failOpen (the default): tokens are still checked; a block a gateway has seen holds', async () => {
    await redis.stop();
    try {
      expect((await call(one, '127.0.0.8', token)).status).toBe(200);
      expect((await call(one, '127.0.0.8', forged)).status).toBe(401);
      // Both gateways saw 127.0.0.5's block (one asked Redis, the other started it): it holds without Redis.
      for (const gw of [one, two]) expect((await call(gw, '127.0.0.5', token)).status).toBe(429);
    } finally {
      await redis.restart();
    }
  });
});

describe('authFailureLimit (redis) with failClosed and Redis gone', () => {
  it('answers 503 rather than let a possibly blocked address through', async () => {
    const redis = await startRedis();
    const gw = await startTestGateway(yaml('{ limit: 4, window: 1m, blockFor: 30s, store: redis, onStoreError: failClosed }', `redis: { url: "${redis.url}" }`));
    try {
      expect((await call(gw, '127.0.0.7', token)).status).toBe(200);
      await redis.stop();
      const before = api.requests.length;
      const res = await call(gw, '127.0.0.7', token);
      expect(res.status).toBe(503);
      expect(res.json.code).toBe('GH_ERR_LIMIT_STORE_UNAVAILABLE');
      expect(api.requests.length).toBe(before);
      expect((await call(gw, '127.0.0.7', undefined, '/status')).status).toBe(200);
    } finally {
      await gw.close();
      await redis.stop();
    }
  });
});

describe('authFailureLimit at load', () => {
  const config = (limit: string, extra = '') => `listen: { port: 0 }
issuers: [ { name: main, issuer: https://as.example.com, jwksUri: https://as.example.com/jwks, audiences: [api] } ]
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
${extra}
authFailureLimit: ${limit}
routes: [ { name: all, path: /, upstream: api } ]
`;
  it('refuses a missing key, a zero block, redis without a redis section, unknown keys', () => {
    expect(issuesOf(config('{ limit: 5, window: 1m }'))[0]!.message).toBe('is missing the required key "blockFor"');
    expect(issuesOf(config('{ limit: 5, window: 1m, blockFor: 0 }'))[0]).toMatchObject({ path: 'authFailureLimit.blockFor', message: 'must be at least 1s: 0 would block no one' });
    expect(issuesOf(config('{ limit: 5, window: 1m, blockFor: 30d }'))[0]!.message).toMatch(/^must be at most 7d/);
    expect(issuesOf(config('{ limit: 5, window: 1m, blockFor: 5m, store: redis }'))[0]).toMatchObject({
      path: 'authFailureLimit.store',
      message: 'is redis but no top-level redis section is configured',
    });
    expect(issuesOf(config('{ limit: 0, window: 1m, blockFor: 5m }'))[0]).toMatchObject({ path: 'authFailureLimit.limit' });
    expect(issuesOf(config('{ limit: 5, window: 1m, blockFor: 5m, key: ip }'))[0]).toMatchObject({ path: 'authFailureLimit.key' });
    expect(issuesOf(config('{ limit: 5, window: 1m, blockFor: 5m }'))).toEqual([]);
  });
});
