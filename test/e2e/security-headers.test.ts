import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * `securityHeaders` end to end: the real authorization server, gatehouse, and an upstream that
 * answers with the headers each test asks for (`?cache=…`, `?nosniff=1`).
 */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let off: TestGateway;
let token: string;

const yaml = (extra = '') => `
listen: { host: 127.0.0.1, port: 0 }
${extra}
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - { name: orders, path: /orders, upstream: api }
  - { name: cached, path: /cached, upstream: api, headers: { response: { remove: [cache-control] } } }
  - { name: own, path: /own, upstream: api, headers: { response: { set: { cache-control: "private, max-age=5" } } } }
`;

function answer(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const cache = url.searchParams.get('cache');
  if (cache !== null) res.setHeader('cache-control', cache);
  if (url.searchParams.get('nosniff') !== null) res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('content-type', 'application/json');
  res.end('{"ok":true}');
}

async function get(via: TestGateway, path: string, withToken: boolean) {
  const res = await request(`${via.url}${path}`, { headers: withToken ? { authorization: `Bearer ${token}` } : {} });
  await res.body.text();
  return { status: res.statusCode, headers: res.headers };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  api.setHandler(answer);
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(yaml());
  off = await startTestGateway(yaml('securityHeaders: { contentTypeOptions: false, cacheControl: false }'));
});

afterAll(async () => {
  await gw?.close();
  await off?.close();
  await api?.close();
  await as?.stop();
});

describe('securityHeaders (on by default)', () => {
  it('an answer to a request with a token gets Cache-Control: no-store and nosniff when the upstream gives neither', async () => {
    const res = await get(gw, '/orders', true);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });

  it('an answer to a public request gets nosniff, and no Cache-Control of gatehouse\'s (it may be cached)', async () => {
    const res = await get(gw, '/public', false);
    expect(res.status).toBe(200);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['cache-control']).toBeUndefined();
  });

  it('the upstream\'s own values win, never doubled', async () => {
    const res = await get(gw, '/orders?cache=private,%20max-age=60&nosniff=1', true);
    expect(res.headers['cache-control']).toBe('private, max-age=60');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });

  it('a header rule that removes Cache-Control removes it', async () => {
    const res = await get(gw, '/cached', true);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBeUndefined();
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });

  it('a header rule that sets Cache-Control sets it, once, whatever the upstream said', async () => {
    for (const path of ['/own', '/own?cache=no-cache']) {
      const res = await get(gw, path, true);
      expect(res.headers['cache-control'], path).toBe('private, max-age=5');
    }
  });

  it('turned off: the answer goes out with the upstream\'s headers only', async () => {
    const res = await get(off, '/orders', true);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBeUndefined();
    expect(res.headers['x-content-type-options']).toBeUndefined();
  });
});
