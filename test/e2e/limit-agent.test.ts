/**
 * The pre-auth IP limit also covers the token-handler agent's endpoints, which are answered
 * before routing: a flood of login starts cannot drive the authorization server through them.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, followDevPages, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const SPA = 'https://www.example.com';
let as: AuthorizationServer;
let api: TestUpstream;
let gw: TestGateway;

const gatewayYaml = () => `
listen: { host: 127.0.0.1, port: 0 }
preAuthLimit: { limit: 3, window: 1h }
issuers:
  - { name: main, issuer: ${as.issuer}, discovery: true, audiences: [${as.audience}] }
upstreams: [{ name: api, url: ${api.url} }]
tokenHandler:
  issuer: main
  clientId: spa
  clientSecret: ${DEMO_CLIENT_SECRETS.spa}
  redirectUri: ${SPA}/callback
  trustedOrigins: [${SPA}]
  cookieKeys: [${randomBytes(32).toString('base64')}]
routes:
  - { name: orders, path: /orders, upstream: api, auth: cookie }
`;

beforeAll(async () => {
  as = await startAuthorizationServer({ clients: demoClients(`${SPA}/callback`, `${SPA}/`) });
  api = await startUpstream();
  gw = await startTestGateway(gatewayYaml());
});
afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

it('answers 429 on the agent endpoints once the client IP is over its pre-auth budget', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await request(`${gw.url}/tokenhandler/login/start`, {
      method: 'POST',
      headers: { origin: SPA, 'content-type': 'application/json' },
      body: '{}',
    });
    statuses.push(res.statusCode);
    if (res.statusCode === 429) {
      expect(res.headers['retry-after']).toBeDefined();
      expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    } else await res.body.dump();
  }
  expect(statuses).toEqual([200, 200, 200, 429, 429]);
  await new Promise((r) => setTimeout(r, 50));
  const denied = gw.logs.filter((l) => l.path === '/tokenhandler/login/start' && l.status === 429);
  expect(denied).toHaveLength(2);
  expect(denied[0]).toMatchObject({ granted: false, reason: 'GH_ERR_LIMIT_RATE_EXCEEDED' });
});

it('a refused login/end never reaches the authorization server’s token endpoint', async () => {
  // Its own gateway: a fresh budget of 3 for 127.0.0.1.
  const own = await startTestGateway(gatewayYaml());
  try {
    const post = (path: string, cookie: string, body: unknown) =>
      request(`${own.url}/tokenhandler${path}`, {
        method: 'POST',
        headers: { origin: SPA, 'content-type': 'application/json', ...(cookie ? { cookie } : {}) },
        body: JSON.stringify(body),
      });
    const startLogin = async () => {
      const start = await post('/login/start', '', {});
      expect(start.statusCode).toBe(200);
      const setCookie = start.headers['set-cookie'];
      const cookie = (Array.isArray(setCookie) ? setCookie : [setCookie!]).map((c) => c.split(';')[0]).join('; ');
      const { authorizationRequestUrl } = (await start.body.json()) as { authorizationRequestUrl: string };
      const { url } = await followDevPages(authorizationRequestUrl, { stopAt: `${SPA}/callback`, login: 'alice' });
      return { cookie, pageUrl: url.href };
    };
    // Within the budget, login/end redeems the code at the token endpoint.
    const first = await startLogin();
    let before = as.counts.token;
    const ended = await post('/login/end', first.cookie, { pageUrl: first.pageUrl });
    expect(ended.statusCode).toBe(200);
    await ended.body.dump();
    expect(as.counts.token).toBe(before + 1);
    // Over it, the same request with a fresh, valid code is refused and the code never sent.
    const second = await startLogin();
    before = as.counts.token;
    const refused = await post('/login/end', second.cookie, { pageUrl: second.pageUrl });
    expect(refused.statusCode).toBe(429);
    expect(((await refused.body.json()) as { code: string }).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    expect(as.counts.token).toBe(before);
  } finally {
    await own.close();
  }
});
