import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLine, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * `gateway.methodOverride` end to end: the real authorization server, gatehouse, and an upstream
 * that honours method overrides the way Express's method-override, Rails and Laravel do — so a
 * GET granted with orders:read would be executed as the DELETE that needs orders:admin.
 */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let allowing: TestGateway;
let reader: string;
const executed: string[] = [];

const yaml = (extra = '') => `
listen: { host: 127.0.0.1, port: 0 }
${extra}
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
routes:
  - { name: read-order, path: "/orders/{id}", methods: [GET], upstream: api, scopes: [orders:read] }
  - { name: delete-order, path: "/orders/{id}", methods: [DELETE], upstream: api, scopes: [orders:admin] }
  - { name: create-order, path: /orders, methods: [POST], upstream: api, scopes: [orders:read] }
  - { name: note, path: "/orders/{id}/notes", methods: [POST], upstream: api, scopes: [orders:read], requestBody: {} }
`;

/** What the upstream executes: the override when there is one (header first, then `_method`). */
function honourOverrides(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const header = req.headers['x-http-method-override'] ?? req.headers['x-http-method'] ?? req.headers['x-method-override'];
  const method = String(header ?? url.searchParams.get('_method') ?? req.method).toUpperCase();
  executed.push(`${method} ${url.pathname}`);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ executed: method }));
}

async function call(via: TestGateway, method: string, path: string, headers: Record<string, string> = {}) {
  const before = api.requests.length;
  const res = await request(`${via.url}${path}`, { method: method as 'GET', headers: { authorization: `Bearer ${reader}`, ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : null, forwarded: api.requests.length - before };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  api.setHandler(honourOverrides);
  reader = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(yaml());
  allowing = await startTestGateway(yaml('gateway: { methodOverride: allow }'));
});

afterAll(async () => {
  await gw?.close();
  await allowing?.close();
  await api?.close();
  await as?.stop();
});

describe('method overrides: refused by default', () => {
  it('a GET granted with orders:read carrying X-HTTP-Method-Override: DELETE is refused (400), never executed', async () => {
    const res = await call(gw, 'GET', '/orders/7', { 'x-http-method-override': 'DELETE' });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({
      code: 'GH_ERR_REQUEST_METHOD_OVERRIDE',
      detail: 'the request asks to be taken as another method (X-HTTP-Method-Override: DELETE on a GET): send that method itself',
    });
    expect(res.forwarded).toBe(0);
    expect(executed).not.toContain('DELETE /orders/7');
    const line = await accessLine(gw.logs, res.headers['x-request-id']);
    expect(line).toMatchObject({ status: 400, decision: 'denied', reason: 'GH_ERR_REQUEST_METHOD_OVERRIDE' });
  });

  it('each header and the _method query parameter (encoded too), on any method, before the token is read', async () => {
    const cases: [string, string, Record<string, string>][] = [
      ['POST', '/orders', { 'x-http-method': 'DELETE' }],
      ['POST', '/orders', { 'x-method-override': 'put' }],
      ['POST', '/orders?_method=DELETE', {}],
      ['GET', '/orders/7?x=1&%5Fmethod=DELETE', {}],
      ['GET', '/orders/7', { 'x-http-method-override': 'DELETE', authorization: 'Bearer not-even-a-token' }],
    ];
    for (const [method, path, headers] of cases) {
      const res = await call(gw, method, path, headers);
      expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(400);
      expect(res.json.code).toBe('GH_ERR_REQUEST_METHOD_OVERRIDE');
      expect(res.forwarded).toBe(0);
    }
    expect(executed.filter((e) => e.startsWith('DELETE') || e.startsWith('PUT'))).toEqual([]);
  });

  it('the method itself still goes by its own route: DELETE with orders:read is 403', async () => {
    const res = await call(gw, 'DELETE', '/orders/7');
    expect(res.status).toBe(403);
    expect(res.forwarded).toBe(0);
  });

  it('an override naming the request\'s own method, and parameters merely named like it, pass', async () => {
    expect((await call(gw, 'POST', '/orders', { 'x-http-method-override': 'POST' })).status).toBe(200);
    const res = await call(gw, 'GET', '/orders/7?payment_method=card&method=x');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ executed: 'GET' });
  });
});

describe('method overrides in a body the route reads', () => {
  it('a JSON body whose top-level _method names another method is refused (Laravel reads JSON bodies as input); nested, or the same method, passes', async () => {
    const post = async (body: unknown) => {
      const before = api.requests.length;
      const res = await request(`${gw.url}/orders/7/notes`, { method: 'POST', headers: { authorization: `Bearer ${reader}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const json = (await res.body.json()) as Record<string, unknown>;
      return { status: res.statusCode, json, forwarded: api.requests.length - before };
    };
    const refused = await post({ note: 'x', _method: 'DELETE' });
    expect(refused).toMatchObject({ status: 400, forwarded: 0 });
    expect(refused.json).toMatchObject({
      code: 'GH_ERR_REQUEST_METHOD_OVERRIDE',
      detail: 'the request asks to be taken as another method (the JSON member _method: DELETE on a POST): send that method itself',
    });
    expect((await post({ note: { _method: 'DELETE' } })).status).toBe(200);
    expect((await post({ note: 'x', _method: 'post' })).status).toBe(200);
    expect((await post([{ _method: 'DELETE' }])).status).toBe(200);
  });
});

describe('gateway.methodOverride: allow', () => {
  it('passes overrides on unread: for upstreams that honour none (this one does, and executes the DELETE: why refuse is the default)', async () => {
    const res = await call(allowing, 'GET', '/orders/8', { 'x-http-method-override': 'DELETE' });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ executed: 'DELETE' });
    expect(executed).toContain('DELETE /orders/8');
    // Said at start: a setting that weakens what gatehouse protects.
    expect(allowing.logs.some((l) => String(l.msg).startsWith('method overrides allowed'))).toBe(true);
    expect(gw.logs.some((l) => String(l.msg).startsWith('method overrides allowed'))).toBe(false);
  });
});
