import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLine, startTestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream } from '../helpers/upstream.js';

// Linux answers on all of 127.0.0.0/8: a client bound to 127.0.0.2 or 127.0.0.3 is a different
// TCP peer from one on 127.0.0.1, with no setup.
const from = (localAddress: string) => new Agent({ localAddress });
const peer1 = from('127.0.0.1');
const peer2 = from('127.0.0.2');
const peer3 = from('127.0.0.3');

let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: Awaited<ReturnType<typeof startUpstream>>;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let token: string;

const configYaml = (office: string) => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [{ name: api, url: ${api.url} }]
networks:
  office: [${office}]
  partners: [192.0.2.0/24, "2001:db8::/32"]
routes:
  - { name: admin, path: /admin, upstream: api, allowFrom: [office] }
  - { name: status, path: /status, upstream: api, public: true, allowFrom: [127.0.0.2, partners] }
  - { name: orders, path: /orders, upstream: api }
`;

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(configYaml('127.0.0.2/32'));
});

afterAll(async () => {
  await Promise.all([peer1.close(), peer2.close(), peer3.close()]);
  await gw?.close();
  await api?.close();
  await as?.stop();
});

async function call(agent: Agent, path: string, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}${path}`, { dispatcher: agent, headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : null };
}

describe('routes[].allowFrom: refused from any other address', () => {
  it('a valid token from an address outside the list gets 403 GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED, no challenge, nothing forwarded', async () => {
    const before = api.requests.length;
    const res = await call(peer1, '/admin/users', { authorization: `Bearer ${token}` });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED');
    expect(res.headers['www-authenticate']).toBeUndefined();
    // The body says what, never which address or list.
    expect(JSON.stringify(res.body)).not.toContain('127.0.0');
    expect(api.requests.length).toBe(before);
    const line = await accessLine(gw.logs, res.headers['x-request-id']);
    expect(line).toMatchObject({ status: 403, reason: 'GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED' });
    expect(line.detail).toBe('client address 127.0.0.1 (the TCP peer) is not in routes[0].allowFrom (route admin)');
  });

  it('is checked before the token: a forged token from outside is not even looked at (403, not 401)', async () => {
    const [h, p] = token.split('.') as [string, string, string];
    const res = await call(peer3, '/admin', { authorization: `Bearer ${h}.${p}.AAAA` });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED');
    const noToken = await call(peer3, '/admin');
    expect(noToken.status).toBe(403);
  });

  it('a public route with allowFrom is public only to the listed addresses', async () => {
    const outside = await call(peer1, '/status');
    expect(outside.status).toBe(403);
    expect(outside.body.code).toBe('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED');
    const inside = await call(peer2, '/status');
    expect(inside.status).toBe(200);
    expect(inside.body.url).toBe('/status');
  });
});

describe('routes[].allowFrom: inside the list, the route works as it would without it', () => {
  it('a listed address still needs a valid token on a protected route', async () => {
    const noToken = await call(peer2, '/admin');
    expect(noToken.status).toBe(401);
    expect(noToken.body.code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    const ok = await call(peer2, '/admin', { authorization: `Bearer ${token}` });
    expect(ok.status).toBe(200);
    expect(ok.body.headers.authorization).toBe(`Bearer ${token}`);
  });

  it('routes without allowFrom take any address', async () => {
    for (const agent of [peer1, peer2, peer3]) {
      const res = await call(agent, '/orders', { authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
    }
  });

  it('a reload that changes a network moves the line: the old address refused, the new one let in', async () => {
    await gw.reload(configYaml('127.0.0.3'));
    try {
      expect((await call(peer2, '/admin', { authorization: `Bearer ${token}` })).status).toBe(403);
      expect((await call(peer3, '/admin', { authorization: `Bearer ${token}` })).status).toBe(200);
    } finally {
      await gw.reload(configYaml('127.0.0.2/32'));
    }
    expect((await call(peer2, '/admin', { authorization: `Bearer ${token}` })).status).toBe(200);
  });
});

describe('routes[].allowFrom behind a trusted proxy', () => {
  let behind: Awaited<ReturnType<typeof startTestGateway>>;
  beforeAll(async () => {
    behind = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
trustedProxies: [127.0.0.1]
upstreams: [{ name: api, url: ${api.url} }]
routes:
  - { name: internal, path: /internal, upstream: api, public: true, allowFrom: [10.0.0.0/8, "2001:db8::/32"] }
`);
  });
  afterAll(async () => {
    await behind?.close();
  });

  async function via(agent: Agent, forwardedFor?: string) {
    const res = await request(`${behind.url}/internal`, { dispatcher: agent, headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } });
    const body = await res.body.text();
    return { status: res.statusCode, body: body ? JSON.parse(body) : null, id: res.headers['x-request-id'] };
  }
  const detail = async (res: { id: unknown }) => (await accessLine(behind.logs, res.id)).detail;

  it('the address the trusted proxy names is the one checked', async () => {
    expect((await via(peer1, '10.20.30.40')).status).toBe(200);
    expect((await via(peer1, '2001:db8::7')).status).toBe(200);
    expect((await via(peer1, '203.0.113.9, 10.1.1.1')).status).toBe(200); // the rightmost untrusted hop: 10.1.1.1
    const outside = await via(peer1, '203.0.113.9');
    expect(outside.status).toBe(403);
    expect(outside.body.code).toBe('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED');
    expect(await detail(outside)).toBe('client address 203.0.113.9 (from X-Forwarded-For, via trusted proxy 127.0.0.1) is not in routes[0].allowFrom (route internal)');
  });

  it('refuses a client that names a listed address itself (X-Forwarded-For from an untrusted peer is not believed)', async () => {
    const spoofed = await via(peer2, '10.20.30.40');
    expect(spoofed.status).toBe(403);
    expect(await detail(spoofed)).toBe('client address 127.0.0.2 (the TCP peer) is not in routes[0].allowFrom (route internal)');
  });

  it('refuses the proxy itself when it names no client, and a garbage X-Forwarded-For', async () => {
    const bare = await via(peer1);
    expect(bare.status).toBe(403);
    expect(await detail(bare)).toBe('client address 127.0.0.1 (the trusted proxy itself: X-Forwarded-For names no client address) is not in routes[0].allowFrom (route internal)');
    expect((await via(peer1, '10.0.0.1; drop table')).status).toBe(403);
  });
});

describe('admin.allowFrom', () => {
  it('answers the listed addresses only (403 for any other, the refusal logged), and takes networks names', async () => {
    const admin = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, allowFrom: [monitoring] }
networks: { monitoring: [127.0.0.2] }
trustedProxies: [127.0.0.1]
upstreams: [{ name: api, url: ${api.url} }]
routes:
  - { name: status, path: /status, upstream: api, public: true }
`);
    try {
      for (const path of ['/metrics', '/readyz', '/healthz']) {
        const outside = await request(`${admin.adminUrl}${path}`, { dispatcher: peer1 });
        expect(outside.statusCode).toBe(403);
        expect(await outside.body.json()).toEqual({ status: 'forbidden' });
      }
      expect(admin.logs.some((l) => l.msg === 'admin request from an address outside admin.allowFrom refused' && l.client_ip === '127.0.0.1' && l.path === '/metrics')).toBe(true);
      // The admin listener believes the TCP peer only: X-Forwarded-For naming a listed address, even from a trusted proxy, gets nothing.
      const named = await request(`${admin.adminUrl}/metrics`, { dispatcher: peer1, headers: { 'x-forwarded-for': '127.0.0.2' } });
      expect(named.statusCode).toBe(403);
      expect(await named.body.text()).not.toContain('gatehouse_');
      const inside = await request(`${admin.adminUrl}/metrics`, { dispatcher: peer2 });
      expect(inside.statusCode).toBe(200);
      expect(await inside.body.text()).toContain('gatehouse_requests_total');
      expect(admin.logs.some((l) => /admin listener on a non-loopback address/.test(l.msg ?? ''))).toBe(false);
    } finally {
      await admin.close();
    }
  });

  it('an admin listener off loopback without allowFrom is named in a warning at start', async () => {
    const yaml = (allow: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 0.0.0.0, port: 0${allow} }
upstreams: [{ name: api, url: ${api.url} }]
routes:
  - { name: status, path: /status, upstream: api, public: true }
`;
    const open = await startTestGateway(yaml(''));
    const closed = await startTestGateway(yaml(', allowFrom: [10.0.0.0/8]'));
    try {
      const warning = open.logs.find((l) => /^admin listener on a non-loopback address without admin\.allowFrom/.test(l.msg ?? ''));
      expect(warning).toMatchObject({ level: 'warn' });
      expect(warning!.admin).toMatch(/^0\.0\.0\.0:\d+$/);
      expect(closed.logs.some((l) => /admin listener on a non-loopback address/.test(l.msg ?? ''))).toBe(false);
    } finally {
      await open.close();
      await closed.close();
    }
  });
});
