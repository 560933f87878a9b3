import { createTestPki } from '../helpers/certs.js';
import { h2connect } from '../server/tls-client.js';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { issuesOf } from '../helpers/config.js';

let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let publicApi: TestUpstream;
let adminApi: TestUpstream;
let gw: TestGateway;
let token: string;

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  publicApi = await startUpstream();
  adminApi = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: public, url: ${publicApi.url} }
  - { name: admin, url: ${adminApi.url} }
cors: { origins: [https://app.example.com] }
routes:
  - { name: admin, path: /, upstream: admin, hosts: [admin.example.com], scopes: [orders:read] }
  - { name: tenants, path: /status, upstream: admin, public: true, hosts: ["*.tenants.example.com"] }
  - { name: status, path: /status, upstream: public, public: true }
  - { name: orders, path: /orders, upstream: public }
`);
});

afterAll(async () => {
  await gw?.close();
  await publicApi?.close();
  await adminApi?.close();
  await as?.stop();
});

async function call(host: string, path: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(`${gw.url}${path}`, { method: method as 'GET', headers: { host, ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : null };
}

describe('routes[].hosts', () => {
  it('a route naming a host is reachable through that host only; through another the path is not routed there', async () => {
    const before = adminApi.requests.length;
    const elsewhere = await call('api.example.com', '/users', { authorization: `Bearer ${token}` });
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body.code).toBe('GH_ERR_ROUTE_NOT_FOUND');
    const spoofedForwardedHost = await call('api.example.com', '/users', { authorization: `Bearer ${token}`, 'x-forwarded-host': 'admin.example.com' });
    expect(spoofedForwardedHost.status).toBe(404);
    expect(adminApi.requests.length).toBe(before);

    const there = await call('admin.example.com', '/users', { authorization: `Bearer ${token}` });
    expect(there.status).toBe(200);
    expect(adminApi.requests.at(-1)!.url).toBe('/users');
    // Its own checks still apply there.
    expect((await call('Admin.Example.com:8443', '/users')).status).toBe(401);
  });

  it('on the same path the host decides: a wildcard route for its subdomains, the host-less one for the rest', async () => {
    expect((await call('acme.tenants.example.com', '/status')).body.url).toBe('/status');
    expect(adminApi.requests.at(-1)!.url).toBe('/status');
    const publicBefore = publicApi.requests.length;
    expect((await call('tenants.example.com', '/status')).status).toBe(200);
    expect((await call('www.example.com', '/status')).status).toBe(200);
    expect(publicApi.requests.length).toBe(publicBefore + 2);
  });

  it('a CORS preflight is answered for the route its host reaches, and not for a route of another host', async () => {
    const preflight = (host: string, path: string) =>
      call(host, path, { origin: 'https://app.example.com', 'access-control-request-method': 'GET' }, 'OPTIONS');
    const ok = await preflight('www.example.com', '/orders');
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe('https://app.example.com');
    // /users is only a route on admin.example.com: through www it is a plain OPTIONS (404), not a preflight answer.
    const other = await preflight('www.example.com', '/users');
    expect(other.status).toBe(404);
    expect(other.headers['access-control-allow-methods']).toBeUndefined();
    expect((await preflight('admin.example.com', '/users')).status).toBe(204);
  });
});

describe('routes[].hosts over HTTP/2', () => {
  it('the :authority decides', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('gw', ['127.0.0.1', 'localhost', 'admin.example.com']);
    const h2 = await startTestGateway(`
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } } }
upstreams:
  - { name: public, url: ${publicApi.url} }
  - { name: admin, url: ${adminApi.url} }
routes:
  - { name: admin, path: /, upstream: admin, public: true, hosts: [admin.example.com] }
  - { name: status, path: /status, upstream: public, public: true }
`);
    const session = await h2connect(h2.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    const get = (authority: string, path: string) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': path, ':authority': authority });
        stream.on('response', (headers) => resolve(Number(headers[':status'])));
        stream.on('error', reject);
        stream.resume();
        stream.end();
      });
    try {
      const adminBefore = adminApi.requests.length;
      expect(await get('admin.example.com', '/users')).toBe(200);
      expect(adminApi.requests.length).toBe(adminBefore + 1);
      expect(await get('www.example.com', '/users')).toBe(404);
      expect(await get('www.example.com', '/status')).toBe(200);
      expect(adminApi.requests.length).toBe(adminBefore + 1);
    } finally {
      session.close();
      await h2.close();
    }
  });
});

describe('routes[].hosts at load', () => {
  const config = (hosts: string) => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - { name: all, path: /, upstream: api, public: true, hosts: ${hosts} }
`;

  it('refuses a host with a port, an unbracketed IPv6 address, a mid-name wildcard, and upper case, each at its key and line', () => {
    const issues = issuesOf(config('["api.example.com:443", "2001:db8::1", "a.*.example.com", "API.example.com"]'));
    expect(issues.map((i) => [i.path, i.line])).toEqual([
      ['routes[0].hosts[0]', 4],
      ['routes[0].hosts[1]', 4],
      ['routes[0].hosts[2]', 4],
      ['routes[0].hosts[3]', 4],
    ]);
    expect(issues[0]!.message).toMatch(/has a port: a route matches its hosts on any port/);
    expect(issues[3]!.message).toMatch(/must be lowercase .* api\.example\.com/);
  });

  it('refuses an empty list and a host named twice', () => {
    expect(issuesOf(config('[]'))[0]).toMatchObject({ path: 'routes[0].hosts' });
    expect(issuesOf(config('[a.example.com, a.example.com]'))[0]).toMatchObject({ path: 'routes[0].hosts' });
  });
});
