import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { freePort, startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { jwks, mint, testKey } from '../authn/jwt-fixtures.js';

/**
 * Keys end to end: JWKS dead at startup (not ready, 503 until keys arrive), JWKS dead later
 * (last good set keeps working, unknown kid is 401 never 500, /readyz says so), and a real key
 * rotation at the oidc-provider authorization server without a restart.
 */
const rs = testKey('RS256');
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

function yaml(issuer: string, source: string, extra = '') {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - name: main
    issuer: ${issuer}
    ${source}
    audiences: [https://api.example.test, https://api.example.com]
    jwksCooldown: 100ms
    jwksRefresh: 1h
    fetchTimeout: 1s
${extra}
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - { name: orders, path: /orders, upstream: api, scopes: [orders:read] }
  - { name: write, path: /write, upstream: api, scopes: [orders:write] }
`;
}

let upstream: TestUpstream;
async function setup(text: (u: TestUpstream) => string): Promise<TestGateway> {
  upstream = await startUpstream();
  cleanup.push(() => upstream.close());
  const gw = await startTestGateway(text(upstream));
  cleanup.push(() => gw.close());
  return gw;
}

async function get(gw: TestGateway, path: string, token?: string) {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : {}, headers: res.headers, reachedUpstream: upstream.requests.length > before };
}

async function readyz(gw: TestGateway) {
  const res = await request(`${gw.adminUrl}/readyz`);
  return { status: res.statusCode, body: (await res.body.json()) as { details: Record<string, any> } };
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  let last = await fn();
  while (!ok(last) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    last = await fn();
  }
  return last;
}

describe('JWKS unreachable at startup', () => {
  it('starts, reports not ready, answers 503 on protected routes until keys arrive', async () => {
    const port = await freePort();
    const gw = await setup(() => yaml('https://id.example.test', `jwksUri: http://127.0.0.1:${port}/jwks`));
    const token = mint(rs, Date.now());

    const notReady = await readyz(gw);
    expect(notReady.status).toBe(503);
    expect(notReady.body.details.authn.issuers.main.keys).toBe(0);
    expect(notReady.body.details.authn.issuers.main.lastError).toBeTruthy();

    const r = await get(gw, '/orders', token);
    expect(r.status).toBe(503);
    expect(r.body.code).toBe('GH_ERR_AUTH_KEYS_UNAVAILABLE');
    expect(r.headers['retry-after']).toBeDefined();
    expect(r.reachedUpstream).toBe(false);
    expect((await get(gw, '/public')).status).toBe(200);

    const server: JwksServer = await startJwksServer(jwks(rs), port);
    cleanup.push(() => server.close());
    const after = await eventually(() => get(gw, '/orders', token), (x) => x.status === 200);
    expect(after.status).toBe(200);
    expect((await readyz(gw)).status).toBe(200);
  });
});

describe('JWKS endpoint down after startup', () => {
  it('keeps validating with the last good key set; an unknown kid is 401, never 500', async () => {
    const server = await startJwksServer(jwks(rs));
    cleanup.push(() => server.close());
    const gw = await setup(() => yaml('https://id.example.test', `jwksUri: ${server.url}`));
    expect((await get(gw, '/orders', mint(rs, Date.now()))).status).toBe(200);

    server.document = null; // 503 from now on
    await new Promise((r) => setTimeout(r, 150)); // past the cooldown
    const unknown = await get(gw, '/orders', mint(testKey('RS256', 'brand-new'), Date.now()));
    expect(unknown.status).toBe(401);
    expect(unknown.body.code).toBe('GH_ERR_JWT_KID_UNKNOWN');
    expect(unknown.reachedUpstream).toBe(false);

    expect((await get(gw, '/orders', mint(rs, Date.now()))).status).toBe(200);
    const ready = await readyz(gw);
    expect(ready.status).toBe(200);
    expect(ready.body.details.authn.issuers.main.lastError).toMatch(/503/);
    expect(ready.body.details.authn.issuers.main.status).toMatch(/last good/);
    expect(gw.logs.some((l) => l.level === 'warn' && /last good key set/.test(String(l.msg)))).toBe(true);
  });

  it('keeps validating across a config reload while the endpoint is down', async () => {
    const server = await startJwksServer(jwks(rs));
    cleanup.push(() => server.close());
    const text = (u: TestUpstream) => yaml('https://id.example.test', `jwksUri: ${server.url}`);
    const gw = await setup(text);
    expect((await get(gw, '/orders', mint(rs, Date.now()))).status).toBe(200);
    server.document = null;
    await gw.reload(`${text(upstream)}  - { name: extra, path: /extra, upstream: api, public: true }\n`);
    expect((await get(gw, '/extra')).status).toBe(200); // the new plan is live
    expect((await get(gw, '/orders', mint(rs, Date.now()))).status).toBe(200);
    expect((await readyz(gw)).status).toBe(200);
  });

  it('refetches at most once per cooldown for a flood of unknown kids', async () => {
    const server = await startJwksServer(jwks(rs));
    cleanup.push(() => server.close());
    const gw = await setup(() => yaml('https://id.example.test', `jwksUri: ${server.url}`).replace('jwksCooldown: 100ms', 'jwksCooldown: 1h'));
    const before = server.hits;
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => get(gw, '/orders', mint({ ...rs, kid: `random-${i}` }, Date.now()))));
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([401]));
    expect(server.hits - before).toBeLessThanOrEqual(1);
  });
});

describe('scheduled refresh', () => {
  it('picks up a new key on the jwksRefresh schedule, without an unknown-kid refetch', async () => {
    const server = await startJwksServer(jwks(rs));
    cleanup.push(() => server.close());
    const gw = await setup(() =>
      yaml('https://id.example.test', `jwksUri: ${server.url}`).replace('jwksCooldown: 100ms', 'jwksCooldown: 1h').replace('jwksRefresh: 1h', 'jwksRefresh: 200ms'),
    );
    const added = testKey('ES256', 'scheduled');
    server.document = jwks(rs, added);
    const hits = server.hits;
    await eventually(async () => server.hits, (n) => n > hits + 1);
    expect((await get(gw, '/orders', mint(added, Date.now()))).status).toBe(200);
  });
});

describe('the real oidc-provider authorization server', () => {
  let as: AuthorizationServer;

  it('issues tokens the gateway accepts via discovery; key rotation works without restart', async () => {
    as = await startAuthorizationServer({ audience: 'https://api.example.com', signingAlg: 'ES256' });
    cleanup.push(() => as.stop());
    const gw = await setup(() => yaml(as.issuer, 'discovery: true'));

    const first = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    expect((await get(gw, '/orders', first)).status).toBe(200);
    const oldKid = as.kid;

    await as.rotateKeys(); // new key in, old key out of the JWKS
    expect(as.kid).not.toBe(oldKid);
    await new Promise((r) => setTimeout(r, 150)); // past the cooldown
    const second = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    expect((await get(gw, '/orders', second)).status).toBe(200); // unknown kid → one refetch → accepted

    const old = await get(gw, '/orders', first); // its key left the key set: the cached entry is dropped
    expect(old.status).toBe(401);
    expect(old.body.code).toBe('GH_ERR_JWT_KID_UNKNOWN');
    expect(old.reachedUpstream).toBe(false);
  });

  it('answers 403 insufficient_scope for a real token without the route scope', async () => {
    as = await startAuthorizationServer({ audience: 'https://api.example.com' });
    cleanup.push(() => as.stop());
    const gw = await setup(() => yaml(as.issuer, 'discovery: true'));
    const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    expect((await get(gw, '/orders', token)).status).toBe(200);
    const r = await get(gw, '/write', token);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('GH_ERR_AUTHZ_INSUFFICIENT_SCOPE');
    expect(String(r.headers['www-authenticate'])).toMatch(/error="insufficient_scope", scope="orders:write"|scope="orders:write".*insufficient_scope|insufficient_scope.*scope="orders:write"/);
    expect(r.reachedUpstream).toBe(false);
  });

  it('keeps validating when its JWKS endpoint hangs, and refuses a kid it cannot fetch with 401', async () => {
    as = await startAuthorizationServer({ audience: 'https://api.example.com', signingAlg: 'EdDSA' });
    cleanup.push(() => as.stop());
    const gw = await setup(() => yaml(as.issuer, 'discovery: true').replace('fetchTimeout: 1s', 'fetchTimeout: 600ms'));
    const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    expect((await get(gw, '/orders', token)).status).toBe(200);

    as.setDown(true, 'hang', ['jwks']);
    await as.rotateKeys({ keepPrevious: true }); // a new kid the gateway cannot fetch
    await new Promise((r) => setTimeout(r, 150));
    const fresh = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    const r = await get(gw, '/orders', fresh);
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('GH_ERR_JWT_KID_UNKNOWN');
    expect(r.reachedUpstream).toBe(false);
    expect((await get(gw, '/orders', token)).status).toBe(200); // the last good key set still works
    expect((await readyz(gw)).body.details.authn.issuers.main.lastError).toMatch(/no answer within 600 ms/);

    as.setDown(false);
    await new Promise((r) => setTimeout(r, 150));
    expect((await get(gw, '/orders', fresh)).status).toBe(200); // back: one refetch picks the new key up
  });

  it('refuses a discovery document whose issuer is not the configured one', async () => {
    as = await startAuthorizationServer({ audience: 'https://api.example.com' });
    cleanup.push(() => as.stop());
    const gw = await setup(() => yaml(`${as.issuer}/`, 'discovery: true'));
    const ready = await readyz(gw);
    expect(ready.status).toBe(503);
    expect(ready.body.details.authn.issuers.main.lastError).toMatch(/names issuer/);
  });
});
