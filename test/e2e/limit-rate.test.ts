import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let as: AuthorizationServer;
let api: TestUpstream;
let gw: TestGateway;
let clientToken: string;
let adminToken: string;

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  clientToken = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  adminToken = await as.clientCredentialsToken('demo-admin', DEMO_CLIENT_SECRETS['demo-admin'], 'orders:read');
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [{ name: api, url: ${api.url} }]
rateLimits:
  - { name: per-client, key: claim:client_id, limit: 3, window: 1m }
quotas:
  - { name: daily, key: claim:client_id+route, limit: 2, period: day }
routes:
  - { name: orders, path: /orders, upstream: api, rateLimits: [per-client] }
  - { name: reports, path: /reports, upstream: api, quotas: [daily] }
  - { name: slow, path: /slow, upstream: api, maxConcurrent: 1 }
`);
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

/** `"name";r=R;t=T` with T within 3 s of `t` (elapsed time on a loaded box rounds it down). */
function expectItem(value: unknown, name: string, r: number, t: number) {
  const match = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(String(value));
  expect(match, String(value)).not.toBeNull();
  expect([match![1], Number(match![2])]).toEqual([name, r]);
  expect(Number(match![3])).toBeGreaterThan(t - 3);
  expect(Number(match![3])).toBeLessThanOrEqual(t);
}

const get = (path: string, token: string) => request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } });

describe('rate limits through the gateway', () => {
  it('admits the burst with RateLimit headers, then answers 429 problem+json with Retry-After; the upstream never sees it', async () => {
    const before = api.requests.length;
    for (let i = 0; i < 3; i++) {
      const res = await get('/orders', clientToken);
      expect(res.statusCode).toBe(200);
      expect(res.headers['ratelimit-policy']).toBe('"per-client";q=3;w=60');
      expectItem(res.headers.ratelimit, 'per-client', 2 - i, 20);
      await res.body.dump();
    }
    const res = await get('/orders', clientToken);
    expect(res.statusCode).toBe(429);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expectItem(`"x";r=0;t=${res.headers['retry-after']}`, 'x', 0, 20);
    expect(res.headers['ratelimit-policy']).toBe('"per-client";q=3;w=60');
    expect(res.headers.ratelimit).toBe(`"per-client";r=0;t=${res.headers['retry-after']}`);
    const problem = (await res.body.json()) as { code: string; status: number };
    expect(problem).toMatchObject({ code: 'GH_ERR_LIMIT_RATE_EXCEEDED', status: 429 });
    expect(api.requests.length - before).toBe(3);
    expect(gw.logs.some((l) => l.reason === 'GH_ERR_LIMIT_RATE_EXCEEDED' && l.status === 429 && l.granted === false)).toBe(true);
  });

  it('keys on the validated client_id: another client has its own budget', async () => {
    const res = await get('/orders', adminToken);
    expect(res.statusCode).toBe(200);
    expectItem(res.headers.ratelimit, 'per-client', 2, 20);
    await res.body.dump();
  });

  it('an invalid token is refused by authentication before it can use anyone’s budget', async () => {
    const res = await get('/orders', `${adminToken.slice(0, -4)}AAAA`);
    expect(res.statusCode).toBe(401);
    expect(res.headers.ratelimit).toBeUndefined();
    await res.body.dump();
    const again = await get('/orders', adminToken);
    expectItem(again.headers.ratelimit, 'per-client', 1, 20);
    await again.body.dump();
  });
});

describe('quotas through the gateway', () => {
  it('answers 429 GH_ERR_LIMIT_QUOTA_EXCEEDED once the daily quota is used; the upstream never sees it', async () => {
    const before = api.requests.length;
    for (let i = 0; i < 2; i++) {
      const res = await get('/reports', clientToken);
      expect(res.statusCode).toBe(200);
      expect(res.headers['ratelimit-policy']).toBe('"daily";q=2;w=86400');
      await res.body.dump();
    }
    const res = await get('/reports', clientToken);
    expect(res.statusCode).toBe(429);
    const secondsToMidnight = Math.ceil((Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1) - Date.now()) / 1000);
    expect(Math.abs(Number(res.headers['retry-after']) - secondsToMidnight)).toBeLessThanOrEqual(2);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_LIMIT_QUOTA_EXCEEDED');
    expect(api.requests.length - before).toBe(2);
  });
});

describe('concurrency limit through the gateway', () => {
  it('answers 503 GH_ERR_LIMIT_CONCURRENCY_EXCEEDED while the slot is taken, and frees it when the response ends', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    api.setHandler((_req, res) => {
      arrived();
      void held.then(() => res.end('done'));
    });
    try {
      const before = api.requests.length;
      const first = get('/slow', clientToken);
      await arrival;
      const second = await get('/slow', clientToken);
      expect(second.statusCode).toBe(503);
      expect(second.headers['retry-after']).toBe('1');
      expect(((await second.body.json()) as { code: string }).code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
      // The refused request never reached the upstream: only the one holding the slot did.
      expect(api.requests.length - before).toBe(1);
      release();
      const done = await first;
      expect(done.statusCode).toBe(200);
      expect(await done.body.text()).toBe('done');
      api.setHandler(null);
      const third = await get('/slow', clientToken);
      expect(third.statusCode).toBe(200);
      await third.body.dump();
    } finally {
      release();
      api.setHandler(null);
    }
  });
});

describe('concurrency slot when the client leaves during authentication', () => {
  // A request whose client leaves while an earlier stage waits (here: a JWKS refetch for an
  // unknown kid) reaches the limit stage after the response closed: its slot is released at once.
  it('a client that leaves while its token is being validated does not keep a concurrency slot', async () => {
    await as.rotateKeys({ keepPrevious: true });
    const fresh = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    as.setLatency(600, ['jwks']);
    try {
      const controller = new AbortController();
      const pending = request(`${gw.url}/slow`, { headers: { authorization: `Bearer ${fresh}` }, signal: controller.signal }).catch(() => 'aborted');
      await new Promise((r) => setTimeout(r, 150));
      controller.abort();
      expect(await pending).toBe('aborted');
      await new Promise((r) => setTimeout(r, 800)); // the refetch ends; the request runs its stages behind the closed response
    } finally {
      as.setLatency(0);
    }
    const next = await get('/slow', fresh);
    expect(next.statusCode).toBe(200);
    await next.body.dump();
  });
});

