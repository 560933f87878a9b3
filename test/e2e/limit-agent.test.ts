/**
 * The pre-auth IP limit also covers the token-handler agent's endpoints, which are answered
 * before routing: a flood of login starts cannot drive the authorization server through them.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const SPA = 'https://www.example.com';
let as: AuthorizationServer;
let api: TestUpstream;
let gw: TestGateway;

beforeAll(async () => {
  as = await startAuthorizationServer({ clients: demoClients(`${SPA}/callback`, `${SPA}/`) });
  api = await startUpstream();
  gw = await startTestGateway(`
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
`);
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
