/**
 * The token handler with opaque access tokens: the cookie holds an opaque token (short cookie,
 * nothing readable), the proxy hands it to the phantom-token validation (introspection), and the
 * upstream receives a JWT minted by gatehouse — for API calls and for WebSocket handshakes, where
 * the cookie stage's Origin check is what stops cross-site WebSocket hijacking (a page elsewhere
 * can make the browser open a WebSocket with the user's cookies, but not with a trusted Origin).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { tokenHandlerSession } from '../helpers/token-handler.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { connect, opened, refused, startWebSocketUpstream, type WebSocketUpstream } from '../helpers/websocket.js';

const SPA = 'https://app.example.com';
const REDIRECT = `${SPA}/callback`;
const SECRET = 'spa-opaque-secret-for-tests';

let as: AuthorizationServer;
let api: TestUpstream;
let live: WebSocketUpstream;
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
  live = await startWebSocketUpstream();
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
  - { name: live, url: '${live.url}', audience: 'https://orders.internal' }
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
  - { name: live, path: /live, upstream: live, auth: cookie-only, scopes: ['orders:read'], websocket: true }
`,
    { dir },
  );
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await live?.close();
  await as?.stop();
});

describe('token handler with phantom tokens', () => {
  it('keeps an opaque token in the cookie and forwards a minted JWT', async () => {
    const cookie = await tokenHandlerSession(gw.url, SPA, REDIRECT);

    const introspections = as.counts.introspection;
    const res = await fetch(`${gw.url}/orders`, { headers: { origin: SPA, cookie } });
    expect(res.status).toBe(200);
    expect(as.counts.introspection).toBe(introspections + 1);
    const forwarded = api.requests.at(-1)!.headers.authorization!;
    expect(forwarded).toMatch(/^Bearer eyJ/);
    const claims = JSON.parse(Buffer.from(forwarded.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ iss: 'https://gatehouse.test', aud: 'https://orders.internal', sub: 'alice' });
    // The access-token cookie is much shorter than with a JWT inside.
    expect(/__Host-gh-at=([^;]*)/.exec(cookie)![1]!.length).toBeLessThan(700);
  });
});

describe('a WebSocket on a cookie-only route', () => {
  let cookie: string;
  const url = () => `${gw.url.replace(/^http/, 'ws')}/live`;
  beforeAll(async () => {
    cookie = await tokenHandlerSession(gw.url, SPA, REDIRECT);
  });

  it('refuses a handshake from another origin with the session cookie (cross-site WebSocket hijacking), before the upstream', async () => {
    const answer = refused(await connect(url(), { headers: { cookie }, origin: 'https://evil.example' }));
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect(live.handshakes).toHaveLength(0);
  });

  it('refuses a handshake without Origin, or without the cookie', async () => {
    expect(refused(await connect(url(), { headers: { cookie } })).status).toBe(403);
    expect(refused(await connect(url(), { origin: SPA })).status).toBe(401);
    expect(live.handshakes).toHaveLength(0);
  });

  it("drops a 101's Set-Cookie of gatehouse's own cookie (an upstream must not plant a session), keeping the upstream's own", async () => {
    const logsBefore = gw.logs.length;
    const socket = opened(await connect(`${url()}/cookie`, { headers: { cookie }, origin: SPA }));
    const set = ([] as string[]).concat(socket.headers['set-cookie'] ?? []);
    expect(set.some((c) => c.startsWith('upstream-own=1'))).toBe(true);
    expect(set.some((c) => c.includes('gh-at'))).toBe(false);
    expect(gw.logs.slice(logsBefore).some((l) => l.msg === "upstream tried to set one of gatehouse's cookies; dropped")).toBe(true);
    socket.ws.close();
    await socket.closed;
  });

  it('opens from the trusted origin: the upstream sees a JWT minted by gatehouse, never the cookie', async () => {
    const socket = opened(await connect(url(), { headers: { cookie }, origin: SPA }));
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
