import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let token: string;

const yaml = (cache: string) => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
  - { name: dead, url: "http://127.0.0.1:1" }
headers:
  response: { remove: [server, x-powered-by], set: { x-content-type-options: nosniff } }
routes:
  - name: orders
    path: /orders
    upstream: api
    headers:
      request: { set: { x-api-version: "2", x-tenant: acme }, remove: [x-debug-user] }
      response: { set: { cache-control: "${cache}", x-frame-options: DENY } }
  - { name: status, path: /status, upstream: api, public: true }
  - { name: gone, path: /gone, upstream: dead, public: true, headers: { response: { set: { cache-control: "public, max-age=3600" } } } }
`;

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(yaml('private, max-age=60'));
  api.setHandler((req, res) => {
    res.writeHead(200, { server: 'internal-app/1.2.3', 'x-powered-by': 'Express', 'cache-control': 'public, max-age=86400', 'content-type': 'application/json', 'x-app': 'kept' });
    res.end(JSON.stringify({ headers: req.headers, rawHeaders: req.rawHeaders }));
  });
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

describe('headers: on the request to the upstream', () => {
  it('sets the route\'s headers, replacing what the client sent under those names, and removes the listed ones', async () => {
    const res = await request(`${gw.url}/orders`, {
      headers: { authorization: `Bearer ${token}`, 'x-api-version': '9', 'X-Tenant': 'evil', 'x-debug-user': 'admin', 'x-other': 'passes' },
    });
    expect(res.statusCode).toBe(200);
    const seen = (await res.body.json()) as { headers: Record<string, string>; rawHeaders: string[] };
    expect(seen.headers['x-api-version']).toBe('2');
    expect(seen.headers['x-tenant']).toBe('acme');
    expect(seen.headers['x-debug-user']).toBeUndefined();
    expect(seen.headers['x-other']).toBe('passes');
    // One of each: the client's were dropped, not joined.
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n === 'x-api-version')).toHaveLength(1);
    expect(names.filter((n) => n === 'x-tenant')).toHaveLength(1);
  });
});

describe('headers: on the upstream\'s answer', () => {
  it('removes, sets and replaces: the route\'s and the top level\'s rules together', async () => {
    const res = await request(`${gw.url}/orders`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    expect(res.headers.server).toBeUndefined();
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['cache-control']).toBe('private, max-age=60');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-app']).toBe('kept');
  });

  it('a route without its own rules gets the top level\'s only', async () => {
    const res = await request(`${gw.url}/status`);
    await res.body.dump();
    expect(res.headers.server).toBeUndefined();
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['cache-control']).toBe('public, max-age=86400');
    expect(res.headers['x-frame-options']).toBeUndefined();
  });

  it("gatehouse's own answers keep their headers: a 401 and a 502 are never made cacheable by a route's rule", async () => {
    const refused = await request(`${gw.url}/orders`);
    await refused.body.dump();
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['cache-control']).toBe('no-store');
    const failed = await request(`${gw.url}/gone`);
    await failed.body.dump();
    expect(failed.statusCode).toBe(502);
    expect(failed.headers['cache-control']).toBe('no-store');
  });

  it('a reload takes new rules at once', async () => {
    await gw.reload(yaml('no-store'));
    try {
      const res = await request(`${gw.url}/orders`, { headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      expect(res.headers['cache-control']).toBe('no-store');
    } finally {
      await gw.reload(yaml('private, max-age=60'));
    }
  });
});
