/**
 * The token handler in a real browser: Debian's Chromium (never a downloaded one) driven by
 * playwright-core, the example SPA (examples/spa) served by src/demo/spa-server.ts, the real
 * gateway, the development authorization server (oidc-provider, its real login, consent and
 * logout pages) and an API upstream.
 *
 * Everything runs on http://127.0.0.1 (different ports): Chromium treats loopback as a
 * potentially trustworthy origin, so it keeps `Secure` and `__Host-` cookies set over plain
 * HTTP there (asserted below), and the default `__Host-gh` prefix is tested as is.
 *
 * This test FAILS (never skips) when the browser is missing: CI installs `chromium` with apt.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCookieKeyRing } from '../../src/authn/token-handler/cookies.js';
import { serveSpa, type SpaConfig, type SpaServer } from '../../src/demo/spa-server.js';
import { launchChromium, requireChromium } from '../helpers/browser.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, followDevPages, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startWebSocketUpstream, type WebSocketUpstream } from '../helpers/websocket.js';

let browser: Browser;
let context: BrowserContext;
let page: Page;
let as: AuthorizationServer;
let api: TestUpstream;
let live: WebSocketUpstream;
let gw: TestGateway;
let spa: SpaServer;
let sameSiteEvil: EvilSite;
let crossSiteEvil: EvilSite;
const spaConfig: SpaConfig = { gatewayUrl: 'http://127.0.0.1:1', apiPath: '/orders' };
const cookieKey = randomBytes(32).toString('base64');
const ring = createCookieKeyRing([new Uint8Array(Buffer.from(cookieKey, 'base64'))]);
/** Every callback URL the browser was sent to (to replay one later). */
const callbacks: string[] = [];

interface EvilSite {
  url: string;
  close(): Promise<void>;
}

/** A page on another origin that tries to use the user's session at the gateway. */
async function startEvilSite(host: string, gatewayUrl: string): Promise<EvilSite> {
  const html = `<!DOCTYPE html><title>evil</title><body>
<pre id="result">pending</pre>
<form id="csrf" method="POST" action="${gatewayUrl}/orders" enctype="text/plain"><input name="item" value="stolen"></form>
<script>
(async () => {
  const out = {};
  try {
    const r = await fetch('${gatewayUrl}/orders', { credentials: 'include' });
    out.read = 'status ' + r.status + ' ' + (await r.text());
  } catch (e) { out.read = 'blocked: ' + e.name; }
  try {
    const r = await fetch('${gatewayUrl}/orders', { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json', 'x-gatehouse-csrf': 'guess' }, body: '{}' });
    out.write = 'status ' + r.status;
  } catch (e) { out.write = 'blocked: ' + e.name; }
  try {
    await fetch('${gatewayUrl}/orders', { method: 'POST', mode: 'no-cors', credentials: 'include', body: 'item=stolen' });
    out.simple = 'sent (opaque)';
  } catch (e) { out.simple = 'blocked: ' + e.name; }
  document.getElementById('result').textContent = JSON.stringify(out);
})();
</script></body>`;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
    res.end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function gatewayYaml(spaUrl: string): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - name: main
    issuer: ${as.issuer}
    discovery: true
    audiences: ['${as.audience}']
    clockSkew: 0s
upstreams:
  - { name: api, url: '${api.url}' }
  - { name: live, url: '${live.url}' }
tokenHandler:
  basePath: /tokenhandler
  issuer: main
  clientId: spa
  clientSecret: \${SPA_CLIENT_SECRET}
  redirectUri: ${spaUrl}/callback
  postLogoutRedirectUri: ${spaUrl}/
  scope: openid profile orders:read orders:write
  trustedOrigins: ['${spaUrl}']
  cookieKeys: ['\${COOKIE_KEY}']
routes:
  - { name: orders-read, path: /orders, methods: [GET], upstream: api, auth: cookie, scopes: ['orders:read'] }
  - { name: orders-write, path: /orders, methods: [POST], upstream: api, auth: cookie, scopes: ['orders:write'] }
  - { name: live, path: /live, upstream: live, auth: cookie, scopes: ['orders:read'], websocket: true }
`;
}

beforeAll(async () => {
  requireChromium();
  spa = await serveSpa({ config: () => spaConfig });
  // Short-lived access tokens, so the SPA's refresh-on-401 path runs for real below.
  as = await startAuthorizationServer({ clients: demoClients(`${spa.url}/callback`, `${spa.url}/`), accessTokenTtl: 4 });
  api = await startUpstream();
  live = await startWebSocketUpstream();
  // The demo API answers with data about the caller, never with the token it received.
  api.setHandler((req, res, body) => {
    const auth = req.headers.authorization ?? '';
    const claims = auth.startsWith('Bearer ') ? (JSON.parse(Buffer.from(auth.split('.')[1] ?? '', 'base64url').toString() || '{}') as { sub?: string }) : {};
    const text = JSON.stringify(req.method === 'POST' ? { created: true, by: claims.sub, order: body } : { orders: [{ id: 1, item: 'tea' }], for: claims.sub });
    res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  gw = await startTestGateway(gatewayYaml(spa.url), { env: { SPA_CLIENT_SECRET: DEMO_CLIENT_SECRETS.spa, COOKIE_KEY: cookieKey } });
  spaConfig.gatewayUrl = gw.url;
  sameSiteEvil = await startEvilSite('127.0.0.1', gw.url);
  crossSiteEvil = await startEvilSite('localhost', gw.url);

  browser = await launchChromium();
  context = await browser.newContext();
  page = await context.newPage();
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame() && frame.url().startsWith(`${spa.url}/callback`)) callbacks.push(frame.url());
  });
});

afterAll(async () => {
  await browser?.close();
  await Promise.allSettled([gw?.close(), spa?.close(), sameSiteEvil?.close(), crossSiteEvil?.close(), api?.close(), live?.close()]);
  await as?.stop();
});

async function status(): Promise<string | null> {
  return page.locator('#status').getAttribute('data-state');
}

async function waitForState(state: string): Promise<void> {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout: 15_000 });
}

/** Log in through the real development login and consent pages of oidc-provider. */
async function logIn(login: string): Promise<void> {
  await page.goto(spa.url);
  await waitForState('logged-out');
  await page.click('#login');
  await page.waitForURL((url) => url.href.startsWith(as.issuer), { timeout: 15_000 });
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any-password');
  await page.click('button[type="submit"]');
  // Consent (first login of this user for the client).
  await page.waitForURL((url) => url.href.startsWith(spa.url) || url.pathname.startsWith('/interaction/'), { timeout: 15_000 });
  if (page.url().startsWith(as.issuer)) await page.click('button[type="submit"]');
  await waitForState('logged-in');
}

/** Submit the evil page's form (a top-level cross-origin POST) and read the gateway's answer. */
async function submitForm(evil: Page): Promise<{ status: number; body: string }> {
  const [response] = await Promise.all([
    evil.waitForResponse((r) => r.url() === `${gw.url}/orders` && r.request().resourceType() === 'document', { timeout: 10_000 }),
    evil.evaluate(() => (document.getElementById('csrf') as HTMLFormElement).submit()),
  ]);
  return { status: response.status(), body: await response.text() };
}

/** Page code: open a WebSocket, ask the upstream for the headers it saw, send one message; or say it failed. */
async function openWebSocket(url: string): Promise<{ opened: boolean; headers?: string; echo?: string; code?: number }> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url);
    const got: string[] = [];
    socket.onopen = () => socket.send('headers');
    socket.onmessage = (event) => {
      got.push(String(event.data));
      if (got.length === 1) socket.send('hello');
      else {
        socket.close(1000);
        resolve({ opened: true, headers: got[0], echo: got[1] });
      }
    };
    socket.onclose = (event) => {
      if (got.length < 2) resolve({ opened: false, code: event.code });
    };
  });
}

async function gatewayCookies() {
  return (await context.cookies(gw.url)).filter((c) => c.name.includes('-gh-'));
}

/** The plaintext tokens inside the cookies (the test holds the key), to search the page for them. */
async function tokensInCookies(): Promise<string[]> {
  const out: string[] = [];
  const now = Math.floor(Date.now() / 1000);
  for (const c of await context.cookies([gw.url, `${gw.url}/tokenhandler/refresh`])) {
    for (const kind of ['at', 'rt', 'id'] as const) {
      const payload = (await ring.open(c.value, kind, now)) as Record<string, unknown> | null;
      if (payload) for (const key of ['at', 'rt', 'idt']) if (typeof payload[key] === 'string') out.push(payload[key] as string);
    }
  }
  return out;
}

describe('token handler in Chromium', () => {
  it('logs in through the real login page and keeps every token out of JavaScript', async () => {
    await logIn('alice');
    expect(await page.locator('#user').textContent()).toContain('alice');
    expect(new URL(page.url()).search).toBe(''); // the code left the address bar

    // The cookies exist in the browser, HttpOnly, Secure, SameSite=Strict, with the __Host- prefix
    // kept over http://127.0.0.1 (a potentially trustworthy origin).
    const cookies = await context.cookies([gw.url, `${gw.url}/tokenhandler/refresh`]);
    const at = cookies.find((c) => c.name === '__Host-gh-at');
    const rt = cookies.find((c) => c.name === '__Secure-gh-rt');
    expect(at).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
    expect(rt).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/tokenhandler/refresh' });
    const tokens = await tokensInCookies();
    expect(tokens.length).toBeGreaterThanOrEqual(3);

    const seen = await page.evaluate(async () => {
      const dump = (s: Storage) => JSON.stringify(Object.fromEntries(Array.from({ length: s.length }, (_, i) => [s.key(i), s.getItem(s.key(i)!)])));
      return {
        cookie: document.cookie,
        local: dump(localStorage),
        session: dump(sessionStorage),
        indexedDb: (await indexedDB.databases()).map((d) => d.name),
        caches: 'caches' in self ? await caches.keys() : [],
        html: document.documentElement.outerHTML,
        url: location.href,
      };
    });
    expect(seen.cookie).toBe('');
    expect(seen.local).toBe('{}');
    expect(seen.session).toBe('{}');
    expect(seen.indexedDb).toEqual([]);
    expect(seen.caches).toEqual([]);
    for (const token of tokens) {
      expect(seen.html).not.toContain(token);
      expect(seen.url).not.toContain(token);
    }
    expect(seen.html).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
  });

  it('calls the API through the gateway with the cookie, and writes with the CSRF token', async () => {
    const before = api.requests.length;
    await page.click('#call-api');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toContain('"for": "alice"');
    await page.click('#create-order');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toContain('"created": true');
    expect(await page.locator('#error').textContent()).toBe('');
    const calls = api.requests.slice(before);
    expect(calls.map((r) => r.method)).toEqual(['GET', 'POST']);
    for (const call of calls) {
      expect(call.headers.authorization).toMatch(/^Bearer eyJ/);
      expect(String(call.headers.cookie ?? '')).not.toContain('__Host-gh');
    }
    const tokens = await tokensInCookies();
    const html = await page.content();
    for (const token of tokens) expect(html).not.toContain(token);
  });

  it('opens a WebSocket with the session cookie: the upstream gets the bearer token, never the cookie', async () => {
    const url = `${gw.url.replace(/^http/, 'ws')}/live`;
    const result = await page.evaluate(openWebSocket, url);
    expect(result.opened).toBe(true);
    const seen = JSON.parse(result.headers!) as Record<string, string>;
    expect(seen.authorization).toMatch(/^Bearer eyJ/);
    expect(String(seen.cookie ?? '')).not.toContain('gh-');
    expect(seen.origin).toBe(spa.url);
    expect(result.echo).toBe('echo:hello');
    expect(live.handshakes).toHaveLength(1);
  });

  it('refreshes the tokens and keeps working', async () => {
    const before = (await gatewayCookies()).find((c) => c.name === '__Host-gh-at')!.value;
    await page.click('#refresh');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toBe('Tokens refreshed.');
    const after = (await gatewayCookies()).find((c) => c.name === '__Host-gh-at')!.value;
    expect(after).not.toBe(before);
    await page.click('#call-api');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toContain('"for": "alice"');
    expect(await page.evaluate(() => document.cookie)).toBe('');
  });

  it('when the access token has expired, the SPA gets a 401, refreshes once and retries, unseen by the user', async () => {
    const now = Math.floor(Date.now() / 1000);
    const at = (await gatewayCookies()).find((c) => c.name === '__Host-gh-at')!;
    const session = (await ring.open(at.value, 'at', now)) as unknown as { at: string };
    const exp = (JSON.parse(Buffer.from(session.at.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp;
    await new Promise((r) => setTimeout(r, Math.max(0, (exp + 1) * 1000 - Date.now())));
    const tokenCalls = as.counts.token;
    const logsBefore = gw.logs.length;
    await page.locator('#output').evaluate((el) => (el.textContent = ''));
    await page.click('#call-api');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toContain('"for": "alice"');
    expect(await page.locator('#error').textContent()).toBe('');
    expect(as.counts.token).toBe(tokenCalls + 1); // one refresh grant
    expect(JSON.stringify(gw.logs.slice(logsBefore))).toContain('GH_ERR_JWT_EXPIRED');
  });

  it('a page on another origin of the same site cannot use the session (Origin check), and the API sees nothing', async () => {
    const evil = await context.newPage();
    const before = api.requests.length;
    const logsBefore = gw.logs.length;
    await evil.goto(sameSiteEvil.url);
    await expect.poll(async () => evil.locator('#result').textContent(), { timeout: 10_000 }).not.toBe('pending');
    const result = JSON.parse((await evil.locator('#result').textContent())!) as Record<string, string>;
    expect(result.read).toMatch(/^blocked/); // no CORS answer for an untrusted origin
    expect(result.write).toMatch(/^blocked/); // its preflight is refused
    // A form post is a simple request: it reaches the gateway with the cookies, which refuses it.
    const posted = await submitForm(evil);
    expect(posted.status).toBe(403);
    expect(posted.body).toContain('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect(api.requests.length).toBe(before);
    const denials = gw.logs.slice(logsBefore).filter((l) => JSON.stringify(l).includes('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED'));
    expect(denials.length).toBeGreaterThanOrEqual(2);
    await evil.close();
  });

  it('a page on another origin of the same site cannot open a WebSocket with the session (cross-site WebSocket hijacking)', async () => {
    const evil = await context.newPage();
    await evil.goto(sameSiteEvil.url);
    const handshakes = live.handshakes.length;
    const logsBefore = gw.logs.length;
    const result = await evil.evaluate(openWebSocket, `${gw.url.replace(/^http/, 'ws')}/live`);
    expect(result.opened).toBe(false);
    expect(live.handshakes.length).toBe(handshakes);
    // The access-log line is written when gatehouse's side of the answer closes, which may come
    // after the browser has already given up on the handshake.
    await expect
      .poll(() => gw.logs.slice(logsBefore).some((l) => l.reason === 'GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED' && l.route === 'live'), { timeout: 5_000 })
      .toBe(true);
    await evil.close();
  });

  it('a cross-site page gets no cookies at all (SameSite=Strict), and the API sees nothing', async () => {
    const evil = await context.newPage();
    const before = api.requests.length;
    await evil.goto(crossSiteEvil.url);
    await expect.poll(async () => evil.locator('#result').textContent(), { timeout: 10_000 }).not.toBe('pending');
    const result = JSON.parse((await evil.locator('#result').textContent())!) as Record<string, string>;
    expect(result.read).toMatch(/^blocked/);
    expect(result.write).toMatch(/^blocked/);
    const posted = await submitForm(evil);
    // Without cookies the route wants a bearer token: 401, and nothing reaches the API.
    expect(posted.status).toBe(401);
    expect(posted.body).toContain('GH_ERR_AUTH_MISSING_TOKEN');
    expect(api.requests.length).toBe(before);
    await evil.close();
  });

  it('a replayed login response, and one with a wrong state, are refused and the session stays', async () => {
    expect(callbacks.length).toBeGreaterThanOrEqual(1);
    const callback = callbacks.at(-1)!;
    expect(new URL(callback).searchParams.get('code')).toBeTruthy();

    await page.goto(callback);
    await waitForState('logged-in');
    expect(await page.locator('#error').textContent()).toContain('GH_ERR_TOKEN_HANDLER_STATE_INVALID');

    const wrong = new URL(callback);
    wrong.searchParams.set('state', randomBytes(32).toString('base64url'));
    await page.goto(wrong.href);
    await waitForState('logged-in');
    expect(await page.locator('#error').textContent()).toContain('GH_ERR_TOKEN_HANDLER_STATE_INVALID');
    expect(new URL(page.url()).search).toBe('');
  });

  it('logs out: cookies cleared, RP-initiated logout at the authorization server, back on the SPA', async () => {
    await page.click('#logout');
    await page.waitForURL((url) => url.href.startsWith(as.issuer), { timeout: 15_000 });
    // oidc-provider asks to confirm the sign-out.
    await page.click('button[type="submit"][value="yes"], button[name="logout"]');
    await page.waitForURL((url) => url.href.startsWith(spa.url), { timeout: 15_000 });
    await waitForState('logged-out');
    expect(await gatewayCookies()).toEqual([]);
    expect(await status()).toBe('logged-out');
    // The API refuses the browser now.
    const res = await page.evaluate(async (url) => (await fetch(url, { credentials: 'include' })).status, `${gw.url}/orders`);
    expect(res).toBe(401);
  });

  it('a login state planted under the old path-scoped __Secure- name (login CSRF from a sibling host) does not log the victim in as the attacker', async () => {
    // The attacker starts a login, completes it as mallory without redeeming the code, and takes
    // the sealed login cookie (whatever the gateway calls it).
    const start = await fetch(`${gw.url}/tokenhandler/login/start`, { method: 'POST', headers: { origin: spa.url } });
    expect(start.status).toBe(200);
    const sealed = start.headers.getSetCookie().find((c) => /^[^=]*-login=/.test(c))!.split(';')[0]!.split('=').slice(1).join('=');
    const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
    const { url: theirs } = await followDevPages(authorizationRequestUrl, { stopAt: `${spa.url}/callback`, login: 'mallory' });

    // A fresh browser whose jar holds the planted cookie, as a sibling host can set it
    // (Domain=example.com; Secure; Path=/tokenhandler/login/end), then sent to the attacker's callback.
    context = await browser.newContext();
    page = await context.newPage();
    const host = new URL(gw.url).hostname;
    await context.addCookies([{ name: '__Secure-gh-login', value: sealed, domain: host, path: '/tokenhandler/login/end', secure: true, httpOnly: true, sameSite: 'Strict' }]);
    await page.goto(theirs.href);
    await waitForState('logged-out');
    expect(await page.locator('#error').textContent()).toContain('GH_ERR_TOKEN_HANDLER_STATE_INVALID');
    expect((await gatewayCookies()).map((c) => c.name)).not.toContain('__Host-gh-at');

    // The planted cookie does not get in the way of the victim's own login.
    await logIn('alice');
    expect(await page.locator('#user').textContent()).toContain('alice');
    const login = (await context.cookies(`${gw.url}/tokenhandler/login/end`)).find((c) => c.name === '__Secure-gh-login');
    expect(login?.value).toBe(sealed); // still there, never read
  });
});
