/**
 * WebSockets from a browser app behind the token handler, with the real authorization server
 * (oidc-provider): the session cookie goes with the handshake and becomes the bearer token the
 * route checks (here an opaque token, introspected, and a JWT minted for the upstream), and the
 * cookie stage's Origin check is what stops cross-site WebSocket hijacking — a page elsewhere
 * can make the browser open a WebSocket with the user's cookies, but not with a trusted Origin.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, followDevPages, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { connect, opened, refused, startWebSocketUpstream, type WebSocketUpstream } from '../helpers/websocket.js';

const SPA = 'https://app.example.com';
const REDIRECT = `${SPA}/callback`;
const SECRET = 'spa-ws-secret-for-tests';

let as: AuthorizationServer;
let api: WebSocketUpstream;
let gw: TestGateway;
let cookie: string;

beforeAll(async () => {
  as = await startAuthorizationServer({ clients: demoClients(REDIRECT) });
  await as.registerClient({
    client_id: 'spa-ws',
    client_secret: SECRET,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [REDIRECT],
    scope: 'openid profile orders:read',
    access_token_format: 'opaque',
  } as never);
  api = await startWebSocketUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-ws-cookie-'));
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
  clientId: spa-ws
  clientSecret: ${SECRET}
  redirectUri: ${REDIRECT}
  scope: openid orders:read
  trustedOrigins: [${SPA}]
  cookieKeys: [${randomBytes(32).toString('base64')}]
routes:
  - { name: live, path: /live, upstream: api, auth: cookie-only, scopes: ['orders:read'], websocket: true }
`,
    { dir },
  );
  // A session: the code flow through the token handler, as the SPA runs it.
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
  cookie = header();
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

const live = () => `${gw.url.replace(/^http/, 'ws')}/live`;

describe('a WebSocket on a cookie-only route', () => {
  it('refuses a handshake from another origin with the session cookie (cross-site WebSocket hijacking), before the upstream', async () => {
    const answer = refused(await connect(live(), { headers: { cookie }, origin: 'https://evil.example' }));
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect(api.handshakes).toHaveLength(0);
  });

  it('refuses a handshake without Origin or cookie', async () => {
    expect(refused(await connect(live(), { headers: { cookie } })).status).toBe(403);
    expect(refused(await connect(live(), { origin: SPA })).status).toBe(401);
    expect(api.handshakes).toHaveLength(0);
  });

  it('opens from the trusted origin: the upstream sees a JWT minted by gatehouse, never the cookie', async () => {
    const socket = opened(await connect(live(), { headers: { cookie }, origin: SPA }));
    socket.ws.send('headers');
    const seen = JSON.parse(await socket.next()) as Record<string, string>;
    expect(seen.authorization).toMatch(/^Bearer eyJ/);
    const claims = JSON.parse(Buffer.from(seen.authorization!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ iss: 'https://gatehouse.test', aud: 'https://orders.internal', sub: 'alice' });
    expect(seen.cookie ?? '').not.toContain('gh-at');
    socket.ws.send('ping');
    expect(await socket.next()).toBe('echo:ping');
    socket.ws.close();
    await socket.closed;
  });
});
