/**
 * The token handler with opaque access tokens: the cookie holds an opaque token (short cookie,
 * nothing readable), the proxy hands it to the phantom-token validation (introspection), and the
 * upstream receives a JWT minted by gatehouse.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, followDevPages, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const SPA = 'https://app.example.com';
const REDIRECT = `${SPA}/callback`;
const SECRET = 'spa-opaque-secret-for-tests';

let as: AuthorizationServer;
let api: TestUpstream;
let gw: TestGateway;

beforeAll(async () => {
  as = await startAuthorizationServer({ clients: demoClients(REDIRECT) });
  await as.registerClient({
    client_id: 'spa-opaque',
    client_secret: SECRET,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [REDIRECT],
    scope: 'openid profile orders:read',
    access_token_format: 'opaque',
  } as never);
  api = await startUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-th-phantom-'));
  gw = await startTestGateway(
    `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - name: opaque
    issuer: ${as.issuer}
    discovery: true
    audiences: ['${as.audience}']
    introspection: { clientId: gateway, clientSecret: ${DEMO_CLIENT_SECRETS.gateway} }
upstreams:
  - { name: api, url: '${api.url}', audience: 'https://orders.internal' }
gateway:
  issuer: https://gatehouse.test
  keyDirectory: ${dir}
tokenHandler:
  issuer: opaque
  clientId: spa-opaque
  clientSecret: ${SECRET}
  redirectUri: ${REDIRECT}
  scope: openid orders:read
  trustedOrigins: [${SPA}]
  cookieKeys: [${randomBytes(32).toString('base64')}]
routes:
  - { name: orders, path: /orders, upstream: api, auth: cookie-only, scopes: ['orders:read'] }
`,
    { dir },
  );
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

describe('token handler with phantom tokens', () => {
  it('keeps an opaque token in the cookie and forwards a minted JWT', async () => {
    const cookies = new Map<string, string>();
    const store = (res: Response) => {
      for (const line of res.headers.getSetCookie()) {
        const pair = line.split(';')[0]!;
        const eq = pair.indexOf('=');
        if (/Max-Age=0/.test(line)) cookies.delete(pair.slice(0, eq));
        else cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
      }
    };
    const header = () => [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const start = await fetch(`${gw.url}/tokenhandler/login/start`, { method: 'POST', headers: { origin: SPA } });
    store(start);
    const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
    const { url } = await followDevPages(authorizationRequestUrl, { stopAt: REDIRECT });
    const end = await fetch(`${gw.url}/tokenhandler/login/end`, {
      method: 'POST',
      headers: { origin: SPA, cookie: header(), 'content-type': 'application/json' },
      body: JSON.stringify({ pageUrl: url.href }),
    });
    store(end);
    expect(((await end.json()) as { isLoggedIn: boolean }).isLoggedIn).toBe(true);

    const introspections = as.counts.introspection;
    const res = await fetch(`${gw.url}/orders`, { headers: { origin: SPA, cookie: header() } });
    expect(res.status).toBe(200);
    expect(as.counts.introspection).toBe(introspections + 1);
    const forwarded = api.requests.at(-1)!.headers.authorization!;
    expect(forwarded).toMatch(/^Bearer eyJ/);
    const claims = JSON.parse(Buffer.from(forwarded.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ iss: 'https://gatehouse.test', aud: 'https://orders.internal', sub: 'alice' });
    // The access-token cookie is much shorter than with a JWT inside.
    expect(cookies.get('__Host-gh-at')!.length).toBeLessThan(700);
  });
});
