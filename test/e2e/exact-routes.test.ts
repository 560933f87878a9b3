import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { issuesOf } from '../helpers/config.js';

/** `routes[].exact` through the gateway: listed endpoints only, nothing under them proxied. */
let api: TestUpstream;
let gw: TestGateway;

beforeAll(async () => {
  api = await startUpstream();
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams: [ { name: api, url: ${api.url} } ]
routes:
  - { name: list, path: /orders, exact: true, methods: [GET, POST], upstream: api, public: true }
  - { name: one, path: "/orders/{id}", exact: true, methods: [GET], upstream: api, public: true }
  - { name: docs, path: /docs, upstream: api, public: true }
  - name: search
    path: /search
    exact: true
    upstream: api
    public: true
    query:
      schema: { type: object, properties: { q: { type: string, minLength: 1, maxLength: 50 }, limit: { type: integer, maximum: 100 } }, required: [q], additionalProperties: false }
  - name: user
    path: "/users/{id}/files/{fileId}"
    exact: true
    upstream: api
    public: true
    params:
      schema: { type: object, properties: { id: { type: integer, minimum: 1 }, fileId: { type: string, format: uuid } } }
`);
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
});

async function status(method: string, path: string) {
  const before = api.requests.length;
  const res = await request(`${gw.url}${path}`, { method: method as 'GET' });
  const text = await res.body.text();
  return { status: res.statusCode, allow: res.headers.allow, code: text && res.statusCode >= 400 ? JSON.parse(text).code : undefined, forwarded: api.requests.length - before };
}

describe('routes[].exact', () => {
  it('never proxies a path under an exact route', async () => {
    for (const path of ['/orders/7/cancel', '/orders/7/items/1', '/orders/7/..%2f..%2fadmin']) {
      const res = await status('GET', path);
      expect([400, 404]).toContain(res.status);
      expect(res.forwarded).toBe(0);
    }
    expect(await status('POST', '/orders/7/cancel')).toMatchObject({ status: 404, code: 'GH_ERR_ROUTE_NOT_FOUND', forwarded: 0 });
  });

  it('takes its own path, with or without a trailing slash, and its methods', async () => {
    expect(await status('GET', '/orders')).toMatchObject({ status: 200, forwarded: 1 });
    expect(await status('GET', '/orders/')).toMatchObject({ status: 200, forwarded: 1 });
    expect(await status('GET', '/orders/7')).toMatchObject({ status: 200, forwarded: 1 });
    expect(await status('DELETE', '/orders/7')).toMatchObject({ status: 405, allow: 'GET, HEAD', forwarded: 0 });
  });

  it('a prefix route still takes what is under it', async () => {
    expect(await status('GET', '/docs/guide/intro')).toMatchObject({ status: 200, forwarded: 1 });
  });

  it('routes[].params: a path parameter its schema refuses is 400 and not forwarded; one it takes goes upstream as sent', async () => {
    const uuid = '3f1c1a52-8f0e-4f3e-9a51-6a1d1c2b3e4f';
    for (const [path, reason] of [
      [`/users/0/files/${uuid}`, 'at /id: must be >= 1'],
      [`/users/7x/files/${uuid}`, 'at /id: must be integer'],
      [`/users/1%20OR%201=1/files/${uuid}`, 'at /id: must be integer'],
      ['/users/7/files/x%27%20OR%20%271%27=%271', 'at /fileId: must match format "uuid"'],
      ['/users/7/files/1', 'at /fileId: must match format "uuid"'],
    ] as const) {
      const before = api.requests.length;
      const res = await request(`${gw.url}${path}`);
      const body = (await res.body.json()) as { code: string; detail: string };
      expect(res.statusCode, path).toBe(400);
      expect(body, path).toMatchObject({ code: 'GH_ERR_REQUEST_PARAMS_INVALID', detail: `the path is not accepted: ${reason}` });
      expect(api.requests.length).toBe(before);
    }
    const ok = await request(`${gw.url}/users/42/files/${uuid}`);
    await ok.body.dump();
    expect(ok.statusCode).toBe(200);
    expect(api.requests.at(-1)!.url).toBe(`/users/42/files/${uuid}`);
  });

  it('routes[].params: a property that names no parameter of the path, or a path without any, is a config error', () => {
    const base = 'listen: { port: 0 }\nupstreams: [ { name: api, url: "http://127.0.0.1:1" } ]\nroutes:\n';
    const typo = issuesOf(`${base}  - { name: u, path: "/users/{id}", upstream: api, public: true, params: { schema: { type: object, properties: { userId: { type: integer } } } } }\n`);
    expect(typo.map((i) => [i.path, i.message])).toEqual([['routes[0].params.schema.properties.userId', "names no parameter of the route's path ({id})"]]);
    const none = issuesOf(`${base}  - { name: u, path: /users, upstream: api, public: true, params: { schema: { type: object } } }\n`);
    expect(none.map((i) => [i.path, i.message])).toEqual([['routes[0].params', 'the route\'s path "/users" has no {parameters} to check']]);
    expect(issuesOf(`${base}  - { name: u, path: "/users/{id}", upstream: api, public: true, params: { schema: { type: object, properties: { id: { type: integr } } } } }\n`)[0]!.path).toBe('routes[0].params.schema');
  });

  it('routes[].query: a query its schema refuses is 400 and not forwarded; one it takes goes upstream as sent', async () => {
    for (const [query, reason] of [
      ['?q=tea&limit=1000', 'at /limit: must be <= 100'],
      ['?limit=5', 'at the top level: the property "q" is required'],
      ['?q=tea&q=coffee', 'at /q: must be string'],
      ['?q=tea&admin=1', 'at the top level: the property "admin" is not allowed'],
    ] as const) {
      const before = api.requests.length;
      const res = await request(`${gw.url}/search${query}`);
      const body = (await res.body.json()) as { code: string; detail: string };
      expect(res.statusCode, query).toBe(400);
      expect(body).toMatchObject({ code: 'GH_ERR_REQUEST_QUERY_INVALID', detail: `the query is not accepted: ${reason}` });
      expect(api.requests.length).toBe(before);
    }
    const ok = await request(`${gw.url}/search?q=green%20tea&limit=10`);
    await ok.body.dump();
    expect(ok.statusCode).toBe(200);
    expect(api.requests.at(-1)!.url).toBe('/search?q=green%20tea&limit=10');
  });

  it('is a boolean', () => {
    expect(issuesOf(`listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes: [ { name: r, path: /x, exact: "yes", upstream: api, public: true } ]
`)[0]).toMatchObject({ path: 'routes[0].exact', message: 'must be a boolean' });
  });
});
