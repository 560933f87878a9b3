/**
 * The token handler through the real gateway, against the real development authorization server
 * (oidc-provider) and an echo upstream: login, API calls with the cookie, CSRF and Origin rules,
 * refresh, logout, replayed and failed logins. The browser itself is in test/browser/.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCookieKeyRing } from '../../src/authn/token-handler/cookies.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, followDevPages, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const SPA = 'https://www.example.com';
const REDIRECT = `${SPA}/callback`;
const CSRF = 'x-gatehouse-csrf';

/** A browser-like jar: honours Path, Max-Age=0; keyed by name. */
class Jar {
  readonly cookies = new Map<string, { value: string; path: string; attributes: string }>();
  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const path = attrs.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      if (attrs.some((a) => a.toLowerCase() === 'max-age=0')) this.cookies.delete(name);
      else this.cookies.set(name, { value: pair!.slice(eq + 1), path, attributes: attrs.join('; ') });
    }
  }
  header(path: string): string {
    return [...this.cookies]
      .filter(([, c]) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : c.path + '/'))
      .map(([k, c]) => `${k}=${c.value}`)
      .join('; ');
  }
}

let as: AuthorizationServer;
let api: TestUpstream;
let gw: TestGateway;
const cookieKey = randomBytes(32).toString('base64');

function yaml(issuer: string, audience: string, upstream: string, extra: { clockSkew?: string; issuerUrl?: string } = {}): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - name: main
    issuer: ${extra.issuerUrl ?? issuer}
    discovery: true
    audiences: [${audience}]
    clockSkew: ${extra.clockSkew ?? '0s'}
    fetchTimeout: 2s
upstreams:
  - { name: api, url: ${upstream} }
tokenHandler:
  basePath: /tokenhandler
  issuer: main
  clientId: spa
  clientSecret: \${SPA_CLIENT_SECRET}
  redirectUri: ${REDIRECT}
  postLogoutRedirectUri: ${SPA}/
  scope: openid profile orders:read
  trustedOrigins: [${SPA}]
  cookieKeys: [\${COOKIE_KEY}]
routes:
  - { name: orders, path: /orders, upstream: api, auth: cookie, scopes: ['orders:read'] }
  - { name: cookie-only, path: /private, upstream: api, auth: cookie-only, scopes: ['orders:read'] }
  - { name: bearer, path: /bearer, upstream: api, scopes: ['orders:read'] }
  - { name: items-delete, path: /items, methods: [DELETE], upstream: api, auth: cookie, scopes: ['orders:read'] }
  - { name: items-get, path: /items, methods: [GET], upstream: api, scopes: ['orders:read'] }
`;
}

const env = { SPA_CLIENT_SECRET: DEMO_CLIENT_SECRETS.spa, COOKIE_KEY: cookieKey };

beforeAll(async () => {
  as = await startAuthorizationServer({ clients: demoClients(REDIRECT, `${SPA}/`), accessTokenTtl: 2 });
  api = await startUpstream();
  gw = await startTestGateway(yaml(as.issuer, as.audience, api.url), { env });
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

async function call(
  jar: Jar,
  method: string,
  path: string,
  opts: { origin?: string | null; csrf?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  const cookie = jar.header(path);
  if (cookie) headers.cookie = cookie;
  if (opts.origin !== null) headers.origin = opts.origin ?? SPA;
  if (opts.csrf) headers[CSRF] = opts.csrf;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(gw.url + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), redirect: 'manual' });
  jar.store(res);
  return res;
}

/** Start a login and follow the development pages up to the redirect to the SPA. */
async function authorize(jar: Jar, login = 'alice'): Promise<URL> {
  const start = await call(jar, 'POST', '/tokenhandler/login/start');
  expect(start.status).toBe(200);
  const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
  const { url } = await followDevPages(authorizationRequestUrl, { stopAt: REDIRECT, login });
  return url;
}

async function login(jar: Jar, name = 'alice'): Promise<string> {
  const pageUrl = await authorize(jar, name);
  const end = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: pageUrl.href } });
  expect(end.status).toBe(200);
  const body = (await end.json()) as { isLoggedIn: boolean; handled: boolean; csrf: string };
  expect(body).toMatchObject({ isLoggedIn: true, handled: true });
  return body.csrf;
}

/**
 * One raw HTTP/1.1 exchange with `Expect: 100-continue`: sends the head, records whether a
 * `100 Continue` arrives within `waitMs`, then sends the body and returns everything read
 * until the final answer's body is complete.
 */
async function expectContinue(path: string, headers: Record<string, string>, body: string, waitMs = 2000): Promise<{ interim: boolean; raw: string }> {
  const { port } = new URL(gw.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  let raw = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (raw += chunk));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.write(head + '\r\n');
  const deadline = Date.now() + waitMs;
  while (!raw.includes('\r\n\r\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const interim = raw.startsWith('HTTP/1.1 100 ');
  socket.write(body);
  const complete = () => {
    const final = interim ? raw.slice(raw.indexOf('\r\n\r\n') + 4) : raw;
    const end = final.indexOf('\r\n\r\n');
    const length = /content-length: (\d+)/i.exec(final);
    return end >= 0 && length !== null && final.length - end - 4 >= Number(length[1]);
  };
  const until = Date.now() + 5000;
  while (!complete() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  socket.destroy();
  return { interim, raw };
}

describe('OAuth agent: Expect: 100-continue', () => {
  it('login/start from a trusted origin gets 100 Continue before reading its body, then 200', async () => {
    const { interim, raw } = await expectContinue('/tokenhandler/login/start', { origin: SPA, 'content-type': 'application/json' }, '{}');
    expect(interim).toBe(true);
    expect(raw).toMatch(/\r\n\r\nHTTP\/1\.1 200 /);
    expect(raw).toContain('authorizationRequestUrl');
  });

  it('login/start from an untrusted origin is refused without a 100: the body is never asked for', async () => {
    const { interim, raw } = await expectContinue('/tokenhandler/login/start', { origin: 'https://evil.example', 'content-type': 'application/json' }, '{}');
    expect(interim).toBe(false);
    expect(raw).toMatch(/^HTTP\/1\.1 403 /);
    expect(raw).not.toContain('100 Continue');
  });
});

describe('OAuth agent: login', () => {
  it('login/start returns an authorization request with state, nonce and PKCE S256, and a login cookie', async () => {
    const jar = new Jar();
    const res = await call(jar, 'POST', '/tokenhandler/login/start');
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const { authorizationRequestUrl } = (await res.json()) as { authorizationRequestUrl: string };
    const url = new URL(authorizationRequestUrl);
    expect(url.origin + url.pathname).toBe(as.authorizationEndpoint);
    const q = url.searchParams;
    expect(q.get('client_id')).toBe('spa');
    expect(q.get('response_type')).toBe('code');
    expect(q.get('redirect_uri')).toBe(REDIRECT);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')!.length).toBeGreaterThanOrEqual(43);
    expect(q.get('nonce')!.length).toBeGreaterThanOrEqual(43);
    // Host-only __Host- (Path=/, no Domain): a sibling host cannot plant a login state.
    const loginCookie = jar.cookies.get('__Host-gh-login')!;
    expect(loginCookie.path).toBe('/');
    expect(loginCookie.attributes).not.toMatch(/Domain=/i);
    expect(loginCookie.attributes).toMatch(/Secure/);
    expect(loginCookie.attributes).toMatch(/HttpOnly/);
    expect(loginCookie.attributes).toMatch(/SameSite=Strict/);
    // The state is not readable from the cookie: it is encrypted.
    expect(loginCookie.value).not.toContain(q.get('state'));
  });

  it('refuses login/start from an origin that is not trusted, without CORS headers', async () => {
    const res = await call(new Jar(), 'POST', '/tokenhandler/login/start', { origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('refuses login/end with a state that does not match the login cookie', async () => {
    const jar = new Jar();
    const pageUrl = await authorize(jar);
    pageUrl.searchParams.set('state', randomBytes(32).toString('base64url'));
    const res = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: pageUrl.href } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_STATE_INVALID');
    expect(jar.cookies.has('__Host-gh-at')).toBe(false);
  });

  it('refuses login/end without the login cookie (another browser)', async () => {
    const jar = new Jar();
    const pageUrl = await authorize(jar);
    const res = await call(new Jar(), 'POST', '/tokenhandler/login/end', { body: { pageUrl: pageUrl.href } });
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_STATE_INVALID');
  });

  it('logs in, sets encrypted path-scoped cookies, and refuses a replay of the same response', async () => {
    const jar = new Jar();
    const pageUrl = await authorize(jar);
    expect(pageUrl.searchParams.get('iss')).toBe(as.issuer);
    const end = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: pageUrl.href } });
    expect(end.status).toBe(200);
    const body = (await end.json()) as { isLoggedIn: boolean; handled: boolean; csrf: string };
    expect(body).toMatchObject({ isLoggedIn: true, handled: true });
    expect(body.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(jar.cookies.get('__Host-gh-at')?.path).toBe('/');
    expect(jar.cookies.get('__Secure-gh-rt')?.path).toBe('/tokenhandler/refresh');
    expect(jar.cookies.get('__Secure-gh-id')?.path).toBe('/tokenhandler');
    expect(jar.cookies.has('__Host-gh-login')).toBe(false);
    for (const [, c] of jar.cookies) {
      expect(c.attributes).toMatch(/Secure/);
      expect(c.attributes).toMatch(/HttpOnly/);
      expect(c.attributes).toMatch(/SameSite=Strict/);
      expect(c.value.split('.')).toHaveLength(5); // compact JWE
      expect(c.value).not.toMatch(/^eyJ[^.]*\.eyJ/); // not a readable JWT
    }
    expect(end.headers.getSetCookie().join('\n')).not.toContain('Domain=');

    // The same authorization response again: the login cookie is gone, the code is spent.
    const replay = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: pageUrl.href } });
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_STATE_INVALID');

    // A page load (no code in the URL) reports the session and hands the CSRF token back.
    const load = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: `${SPA}/orders` } });
    expect(await load.json()).toEqual({ isLoggedIn: true, handled: false, csrf: body.csrf });
  });

  it('reports an error from the authorization server as a JSON error with the OAuth error', async () => {
    const jar = new Jar();
    const pageUrl = await authorize(jar);
    const state = pageUrl.searchParams.get('state')!;
    const failed = new URL(REDIRECT);
    failed.search = new URLSearchParams({ error: 'access_denied', error_description: 'the user said no', state, iss: as.issuer }).toString();
    const res = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: failed.href } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ code: 'GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED', error: 'access_denied', error_description: 'the user said no' });
  });

  it('refuses an authorization response naming another issuer (RFC 9207 mix-up)', async () => {
    const jar = new Jar();
    const pageUrl = await authorize(jar);
    pageUrl.searchParams.set('iss', 'https://attacker.example');
    const res = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: pageUrl.href } });
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED');
  });

  it('lets the SPA add prompt or login_hint to a login, and nothing else', async () => {
    const ok = await call(new Jar(), 'POST', '/tokenhandler/login/start', { body: { extraParams: { prompt: 'login', login_hint: 'bob' } } });
    const url = new URL(((await ok.json()) as { authorizationRequestUrl: string }).authorizationRequestUrl);
    expect(url.searchParams.get('prompt')).toBe('login');
    expect(url.searchParams.get('login_hint')).toBe('bob');
    for (const extraParams of [{ redirect_uri: 'https://evil.example/cb' }, { client_id: 'other' }, { prompt: 1 }, { max_age: 'soon' }]) {
      const res = await call(new Jar(), 'POST', '/tokenhandler/login/start', { body: { extraParams } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_REQUEST');
    }
  });

  it('a login with max_age checks auth_time in the ID token and succeeds for a fresh login', async () => {
    const jar = new Jar();
    const start = await call(jar, 'POST', '/tokenhandler/login/start', { body: { extraParams: { max_age: '300' } } });
    const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
    expect(new URL(authorizationRequestUrl).searchParams.get('max_age')).toBe('300');
    const { url } = await followDevPages(authorizationRequestUrl, { stopAt: REDIRECT });
    const end = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: url.href } });
    expect(end.status).toBe(200);
    const claims = (await (await call(jar, 'GET', '/tokenhandler/userinfo')).json()) as { auth_time?: number };
    expect(typeof claims.auth_time).toBe('number');
  });

  it('refuses an authorization response handed in from a page that is not the redirect URI', async () => {
    const jar = new Jar();
    const pageUrl = await authorize(jar);
    const elsewhere = new URL(`${SPA}/other${pageUrl.search}`);
    const res = await call(jar, 'POST', '/tokenhandler/login/end', { body: { pageUrl: elsewhere.href } });
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_REQUEST');
  });

  it('refuses login/end without a JSON body', async () => {
    const res = await call(new Jar(), 'POST', '/tokenhandler/login/end');
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_REQUEST');
  });

  it('answers a page load without a session with isLoggedIn false', async () => {
    const res = await call(new Jar(), 'POST', '/tokenhandler/login/end', { body: { pageUrl: `${SPA}/` } });
    expect(await res.json()).toEqual({ isLoggedIn: false, handled: false });
  });

  it('answers unknown agent paths with 404 and wrong methods with 405', async () => {
    expect((await call(new Jar(), 'POST', '/tokenhandler/nope')).status).toBe(404);
    const res = await call(new Jar(), 'GET', '/tokenhandler/refresh');
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });
});

/** A login/end with exactly this Cookie header (a browser holding planted cookies). */
async function loginEndWith(cookie: string, pageUrl: URL): Promise<Response> {
  return fetch(gw.url + '/tokenhandler/login/end', {
    method: 'POST',
    headers: { origin: SPA, cookie, 'content-type': 'application/json' },
    body: JSON.stringify({ pageUrl: pageUrl.href }),
  });
}

/** The sealed login state the gateway gave `jar`, whatever the gateway names its cookie. */
function loginState(jar: Jar): string {
  const found = [...jar.cookies].find(([name]) => name.endsWith('-login'));
  if (!found) throw new Error('no login cookie in the jar');
  return found[1].value;
}

describe('OAuth agent: login CSRF with a planted login cookie', () => {
  // The attacker (on a sibling host, e.g. evil.example.com) starts a login, completes it with
  // their own account without redeeming the code, and plants their login cookie in the victim's
  // browser with Domain=example.com: only a __Secure- name can be planted that way.
  async function attackerLogin(): Promise<{ planted: string; theirs: URL }> {
    const attacker = new Jar();
    const theirs = await authorize(attacker, 'mallory');
    return { planted: `__Secure-gh-login=${loginState(attacker)}`, theirs };
  }

  it('refuses a login/end whose state matches only a planted __Secure-gh-login cookie', async () => {
    const { planted, theirs } = await attackerLogin();
    const res = await loginEndWith(planted, theirs);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_STATE_INVALID');
    expect(res.headers.getSetCookie().join('\n')).not.toContain('__Host-gh-at=');
  });

  it('is not confused by a planted __Secure-gh-login next to the real one: the attacker\'s response is refused, the own login works', async () => {
    const { planted, theirs } = await attackerLogin();
    const victim = new Jar();
    const mine = await authorize(victim, 'alice');
    const cookie = `${planted}; ${victim.header('/tokenhandler/login/end')}`;
    const refused = await loginEndWith(cookie, theirs);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_STATE_INVALID');
    expect(refused.headers.getSetCookie().join('\n')).not.toContain('__Host-gh-at=');

    const ok = await loginEndWith(cookie, mine);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ isLoggedIn: true, handled: true });
    victim.store(ok);
    const me = await call(victim, 'GET', '/tokenhandler/userinfo');
    expect(((await me.json()) as { sub: string }).sub).toBe('alice');
  });

  it('refuses a login/end that carries two login cookies rather than pick one, and clears the login cookie', async () => {
    const jar = new Jar();
    const mine = await authorize(jar);
    const other = new Jar();
    await authorize(other, 'mallory');
    const name = '__Host-gh-login';
    const a = jar.cookies.get(name)!.value;
    const b = other.cookies.get(name)!.value;
    for (const cookie of [`${name}=${a}; ${name}=${b}`, `${name}=${b}; ${name}=${a}`, `${name}=${a}; ${name}=${a}`]) {
      const res = await loginEndWith(cookie, mine);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_REQUEST');
      const set = res.headers.getSetCookie().join('\n');
      expect(set).toContain(`${name}=; Path=/; Max-Age=0`);
      expect(set).not.toContain('__Host-gh-at=');
    }
    // Nothing was redeemed: with its one login cookie the same response still logs in.
    const ok = await loginEndWith(`${name}=${a}`, mine);
    expect(ok.status).toBe(200);
  });

  it('strips a pending login cookie (Path=/) from API calls sent upstream', async () => {
    const jar = new Jar();
    await login(jar);
    await call(jar, 'POST', '/tokenhandler/login/start'); // a second login under way
    expect(jar.header('/orders/1')).toContain('__Host-gh-login=');
    const before = api.requests.length;
    const res = await call(jar, 'GET', '/orders/1');
    expect(res.status).toBe(200);
    expect(String(api.requests[before]!.headers.cookie ?? '')).not.toContain('gh-login');
  });
  it("drops an upstream's Set-Cookie naming one of gatehouse's cookies (no planted, swapped or cleared session); its own cookies pass", async () => {
    const jar = new Jar();
    await login(jar);
    const session = jar.cookies.get('__Host-gh-at')!.value;
    api.setHandler((_req, res) => {
      res.setHeader('set-cookie', [
        '__Host-gh-at=planted; Path=/; Secure; HttpOnly',
        '__Secure-gh-rt=; Max-Age=0; Path=/tokenhandler',
        ' __Host-gh-login=x; Path=/; Secure',
        'theme=dark; Path=/',
        '__Host-ghost=ok; Path=/; Secure',
      ]);
      res.end('{}');
    });
    try {
      const res = await call(jar, 'GET', '/orders/1');
      expect(res.status).toBe(200);
      expect(res.headers.getSetCookie()).toEqual(['theme=dark; Path=/', '__Host-ghost=ok; Path=/; Secure']);
      jar.store(res);
      expect(jar.cookies.get('__Host-gh-at')!.value).toBe(session);
      expect(gw.logs.some((l) => l.msg === "upstream tried to set one of gatehouse's cookies; dropped")).toBe(true);
      // Only gatehouse's are dropped: a lone cookie of the upstream's own goes through untouched.
      api.setHandler((_req, r) => {
        r.setHeader('set-cookie', 'theme=light');
        r.end('{}');
      });
      const own = await call(jar, 'GET', '/orders/1');
      expect(own.headers.getSetCookie()).toEqual(['theme=light']);
    } finally {
      api.setHandler(null);
    }
  });
});

describe('OAuth proxy: API calls with the cookie', () => {
  it('forwards the access token from the cookie as a bearer token and strips the cookies', async () => {
    const jar = new Jar();
    await login(jar);
    const before = api.requests.length;
    const res = await call(jar, 'GET', '/orders/1');
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const seen = api.requests[before]!;
    expect(seen.headers.authorization).toMatch(/^Bearer eyJ/);
    expect(String(seen.headers.cookie ?? '')).not.toContain('__Host-gh');
    const payload = JSON.parse(Buffer.from(seen.headers.authorization!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(payload).toMatchObject({ sub: 'alice', aud: as.audience });
    // Neither the token nor any cookie value reaches the log.
    const logs = JSON.stringify(gw.logs);
    expect(logs).not.toContain(seen.headers.authorization!.slice(7));
    for (const [, c] of jar.cookies) expect(logs).not.toContain(c.value);
  });

  it('logs a denial with the request id and the code', async () => {
    const before = gw.logs.length;
    const res = await call(new Jar(), 'POST', '/tokenhandler/login/start', { origin: 'https://evil.example' });
    const id = res.headers.get('x-request-id');
    const line = gw.logs.slice(before).find((l) => l.req_id === id && l.reason === 'GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED' && l.granted === false);
    expect(line).toBeDefined();
  });

  it('refuses a write without the CSRF header, and accepts it with the token from login/end', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    const before = api.requests.length;
    const denied = await call(jar, 'POST', '/orders', { body: { item: 1 } });
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
    const wrong = await call(jar, 'POST', '/orders', { body: { item: 1 }, csrf: 'x'.repeat(43) });
    expect(((await wrong.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
    expect(api.requests.length).toBe(before);
    const ok = await call(jar, 'POST', '/orders', { body: { item: 1 }, csrf });
    expect(ok.status).toBe(200);
  });

  it('refuses a cookie sent from an untrusted origin; the upstream sees nothing', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    const before = api.requests.length;
    for (const method of ['GET', 'POST']) {
      const res = await call(jar, method, '/orders', { origin: 'http://localhost:1234', csrf });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    }
    expect(api.requests.length).toBe(before);
  });

  it('refuses a tampered cookie with 401 GH_ERR_COOKIE_INVALID', async () => {
    const jar = new Jar();
    await login(jar);
    const c = jar.cookies.get('__Host-gh-at')!;
    const parts = c.value.split('.');
    parts[3] = parts[3]!.slice(0, 10) + (parts[3]![10] === 'A' ? 'B' : 'A') + parts[3]!.slice(11);
    c.value = parts.join('.');
    const before = api.requests.length;
    const res = await call(jar, 'GET', '/orders');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_INVALID');
    expect(res.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(api.requests.length).toBe(before);
  });

  it('refuses a cookie sealed by another gateway (foreign key) with 401', async () => {
    const other = await startTestGateway(yaml(as.issuer, as.audience, api.url), { env: { ...env, COOKIE_KEY: randomBytes(32).toString('base64') } });
    try {
      const jar = new Jar();
      await login(jar);
      const before = api.requests.length;
      const res = await fetch(other.url + '/orders', { headers: { origin: SPA, cookie: jar.header('/orders') } });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_INVALID');
      expect(api.requests.length).toBe(before);
    } finally {
      await other.close();
    }
  });

  it('accepts a bearer header on an auth: cookie route when no cookie is sent', async () => {
    const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    const res = await fetch(gw.url + '/orders', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
  });

  it('refuses a bearer header on an auth: cookie-only route', async () => {
    const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    const before = api.requests.length;
    const res = await fetch(gw.url + '/private', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(api.requests.length).toBe(before);
  });

  it('refuses the cookie and an Authorization header together; the upstream sees nothing', async () => {
    const jar = new Jar();
    await login(jar);
    const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    const before = api.requests.length;
    for (const path of ['/orders', '/private']) {
      const res = await call(jar, 'GET', path, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_AUTH_MULTIPLE_CREDENTIALS');
    }
    expect(api.requests.length).toBe(before);
  });

  it('refuses a cookie sent without Origin unless the browser marks a same-origin read; the upstream sees nothing', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    const before = api.requests.length;
    const refused: [string, Record<string, string>][] = [
      ['GET', {}],
      ['GET', { 'sec-fetch-site': 'cross-site' }],
      ['GET', { 'sec-fetch-site': 'same-site' }],
      ['POST', { 'sec-fetch-site': 'same-origin' }],
    ];
    for (const [method, headers] of refused) {
      const res = await call(jar, method, '/orders', { origin: null, csrf, headers, body: method === 'POST' ? { item: 1 } : undefined });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    }
    expect(api.requests.length).toBe(before);
    const read = await call(jar, 'GET', '/orders', { origin: null, headers: { 'sec-fetch-site': 'same-origin' } });
    expect(read.status).toBe(200);
    expect(api.requests.length).toBe(before + 1);
  });

  it('accepts the cookie on a cookie-only route', async () => {
    const jar = new Jar();
    await login(jar);
    expect((await call(jar, 'GET', '/private')).status).toBe(200);
  });

  it('ignores the cookie on a bearer route (the cookie is not a credential there)', async () => {
    const jar = new Jar();
    await login(jar);
    const before = api.requests.length;
    const res = await call(jar, 'GET', '/bearer');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(api.requests.length).toBe(before);
  });

  it('answers CORS preflights for cookie routes: trusted origin with credentials, others refused', async () => {
    const ok = await fetch(gw.url + '/orders', {
      method: 'OPTIONS',
      headers: { origin: SPA, 'access-control-request-method': 'POST', 'access-control-request-headers': `content-type, ${CSRF}` },
    });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    expect(ok.headers.get('access-control-allow-headers')).toBe(`content-type, ${CSRF}`);
    const evil = await fetch(gw.url + '/orders', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    // The route the real request would take decides: DELETE /items is a cookie route, GET /items is not.
    const del = await fetch(gw.url + '/items/7', { method: 'OPTIONS', headers: { origin: SPA, 'access-control-request-method': 'DELETE' } });
    expect(del.status).toBe(204);
    expect(del.headers.get('access-control-allow-methods')).toBe('DELETE');
    const get = await fetch(gw.url + '/items/7', { method: 'OPTIONS', headers: { origin: SPA, 'access-control-request-method': 'GET' } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
    const agent = await fetch(gw.url + '/tokenhandler/refresh', { method: 'OPTIONS', headers: { origin: SPA, 'access-control-request-method': 'POST' } });
    expect(agent.status).toBe(204);
    expect(agent.headers.get('access-control-allow-origin')).toBe(SPA);
  });
});

describe('OAuth agent: session', () => {
  it('answers userinfo with the ID token claims', async () => {
    const jar = new Jar();
    await login(jar, 'bob');
    const res = await call(jar, 'GET', '/tokenhandler/userinfo');
    expect(res.status).toBe(200);
    const claims = (await res.json()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'bob', name: 'bob', iss: as.issuer, aud: 'spa' });
    expect(claims.nonce).toBeUndefined();
    for (const alias of ['/tokenhandler/userInfo', '/tokenhandler/claims']) {
      expect(await (await call(jar, 'GET', alias)).json()).toEqual(claims);
    }
  });

  it('answers userinfo without a session with 401', async () => {
    const res = await call(new Jar(), 'GET', '/tokenhandler/userinfo');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_SESSION_EXPIRED');
  });

  it('an expired access token gives 401, refresh rotates the cookies, and the API works again', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    const firstAt = jar.cookies.get('__Host-gh-at')!.value;
    const firstRt = jar.cookies.get('__Secure-gh-rt')!.value;
    // The access token lives 2 s (clockSkew 0): wait until it has expired.
    const exp = JSON.parse(Buffer.from(api.requests.at(-1)?.headers.authorization?.split('.')[1] ?? 'e30', 'base64url').toString()).exp as number | undefined;
    await new Promise((r) => setTimeout(r, Math.max(0, ((exp ?? Math.floor(Date.now() / 1000) + 2) + 1) * 1000 - Date.now())));
    const expired = await call(jar, 'GET', '/orders');
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as { code: string }).code).toBe('GH_ERR_JWT_EXPIRED');

    const noCsrf = await call(jar, 'POST', '/tokenhandler/refresh');
    expect(((await noCsrf.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
    const refreshed = await call(jar, 'POST', '/tokenhandler/refresh', { csrf });
    expect(refreshed.status).toBe(204);
    expect(jar.cookies.get('__Host-gh-at')!.value).not.toBe(firstAt);
    expect(jar.cookies.get('__Secure-gh-rt')!.value).not.toBe(firstRt);
    // The session keeps its absolute expiry: a refresh does not extend it.
    const ring = createCookieKeyRing([new Uint8Array(Buffer.from(cookieKey, 'base64'))]);
    const now = Math.floor(Date.now() / 1000);
    const before = (await ring.open(firstAt, 'at', now))!;
    const after = (await ring.open(jar.cookies.get('__Host-gh-at')!.value, 'at', now))!;
    expect(after.exp).toBe(before.exp);
    expect(Number(/Max-Age=(\d+)/.exec(jar.cookies.get('__Host-gh-at')!.attributes)![1])).toBeLessThanOrEqual(8 * 3600);
    expect((await call(jar, 'GET', '/orders')).status).toBe(200);
    // The CSRF token stays bound to the session across refreshes.
    expect((await call(jar, 'POST', '/orders', { csrf, body: {} })).status).toBe(200);
  });

  it('refresh from an untrusted origin is refused', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    const tokenCalls = as.counts.token;
    const res = await call(jar, 'POST', '/tokenhandler/refresh', { csrf, origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(as.counts.token).toBe(tokenCalls);
  });

  it('refresh without the CSRF header, or with another one, is refused; the token endpoint sees nothing', async () => {
    const jar = new Jar();
    await login(jar);
    const tokenCalls = as.counts.token;
    for (const csrf of [undefined, 'x'.repeat(43)]) {
      const res = await call(jar, 'POST', '/tokenhandler/refresh', { csrf });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
      expect(res.headers.get('set-cookie')).toBeNull();
    }
    expect(as.counts.token).toBe(tokenCalls);
  });

  it('refresh with a refresh token the server no longer accepts ends the session (401) and clears cookies', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    // Read the refresh token out of its cookie (the test holds the cookie key) and revoke it.
    const ring = createCookieKeyRing([new Uint8Array(Buffer.from(cookieKey, 'base64'))]);
    const sealed = await ring.open(jar.cookies.get('__Secure-gh-rt')!.value, 'rt', Math.floor(Date.now() / 1000));
    await as.revoke((sealed as unknown as { rt: string }).rt, 'spa', DEMO_CLIENT_SECRETS.spa);
    const res = await call(jar, 'POST', '/tokenhandler/refresh', { csrf });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_TOKEN_HANDLER_SESSION_EXPIRED');
    expect(jar.cookies.size).toBe(0);
  });

  it('refuses a refresh-token cookie from another session', async () => {
    const a = new Jar();
    const csrfA = await login(a);
    const b = new Jar();
    await login(b);
    a.cookies.set('__Secure-gh-rt', b.cookies.get('__Secure-gh-rt')!);
    const res = await call(a, 'POST', '/tokenhandler/refresh', { csrf: csrfA });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_INVALID');
  });

  it('logout needs the CSRF token, clears every cookie and returns the end-session URL', async () => {
    const jar = new Jar();
    const csrf = await login(jar);
    const denied = await call(jar, 'POST', '/tokenhandler/logout');
    expect(((await denied.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
    const res = await call(jar, 'POST', '/tokenhandler/logout', { csrf });
    expect(res.status).toBe(200);
    const { url } = (await res.json()) as { url: string };
    const end = new URL(url);
    expect(end.origin + end.pathname).toBe(as.endSessionEndpoint);
    expect(end.searchParams.get('client_id')).toBe('spa');
    expect(end.searchParams.get('post_logout_redirect_uri')).toBe(`${SPA}/`);
    expect(end.searchParams.get('id_token_hint')).toMatch(/^eyJ/);
    expect(jar.cookies.size).toBe(0);
    const cleared = res.headers.getSetCookie();
    expect(cleared.filter((c) => c.includes('Max-Age=0'))).toHaveLength(4);
    expect((await call(jar, 'GET', '/orders')).status).toBe(401);
    // RP-initiated logout at the authorization server goes through to the post-logout URI.
    const done = await followDevPages(url, { stopAt: `${SPA}/` });
    expect(done.url.href.startsWith(`${SPA}/`)).toBe(true);
  });
});

describe('cookie key rotation through a config reload', () => {
  it('decrypts with the old key while it is listed second, and refuses it once removed', async () => {
    const oldKey = randomBytes(32).toString('base64');
    const newKey = randomBytes(32).toString('base64');
    const text = (keys: string[]) =>
      yaml(as.issuer, as.audience, api.url).replace('cookieKeys: [${COOKIE_KEY}]', `cookieKeys: [${keys.map((k) => `'${k}'`).join(', ')}]`) +
      'admin: { host: 127.0.0.1, port: 0 }\n';
    const g = await startTestGateway(text([oldKey]), { env });
    try {
      const send = (jar: Jar, method: string, path: string, opts: { csrf?: string } = {}) =>
        fetch(g.url + path, { method, headers: { origin: SPA, cookie: jar.header(path), ...(opts.csrf ? { [CSRF]: opts.csrf } : {}) } }).then((res) => {
          jar.store(res);
          return res;
        });
      // Log in at this gateway.
      const jar = new Jar();
      const start = await send(jar, 'POST', '/tokenhandler/login/start');
      const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
      const { url } = await followDevPages(authorizationRequestUrl, { stopAt: REDIRECT });
      const end = await fetch(g.url + '/tokenhandler/login/end', {
        method: 'POST',
        headers: { origin: SPA, cookie: jar.header('/tokenhandler/login/end'), 'content-type': 'application/json' },
        body: JSON.stringify({ pageUrl: url.href }),
      });
      jar.store(end);
      const { csrf } = (await end.json()) as { csrf: string };
      const sealedUnderOld = jar.cookies.get('__Host-gh-at')!.value;

      await g.reload(text([newKey, oldKey]));
      expect((await send(jar, 'GET', '/orders')).status).toBe(200);
      expect((await send(jar, 'POST', '/tokenhandler/refresh', { csrf })).status).toBe(204); // re-sealed under the new key

      await g.reload(text([newKey]));
      expect((await send(jar, 'GET', '/orders')).status).toBe(200);
      const stale = new Jar();
      stale.cookies.set('__Host-gh-at', { value: sealedUnderOld, path: '/', attributes: '' });
      const res = await send(stale, 'GET', '/orders');
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe('GH_ERR_COOKIE_INVALID');

      const ready = (await (await fetch(`${g.adminUrl}/readyz`)).json()) as Record<string, unknown>;
      expect(JSON.stringify(ready)).toMatch(/"token-handler":\{"discovery":"ok/);
      const metrics = await (await fetch(`${g.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/gatehouse_token_handler_requests_total\{endpoint="proxy",outcome="GH_ERR_COOKIE_INVALID"\} 1/);
    } finally {
      await g.close();
    }
  });
});

describe('authorization server unavailable', () => {
  it('login/start answers 502 GH_ERR_TOKEN_HANDLER_UPSTREAM when discovery fails, and the gateway still starts', async () => {
    const dead = await startTestGateway(yaml(as.issuer, as.audience, api.url, { issuerUrl: 'http://127.0.0.1:1' }), { env });
    try {
      const res = await fetch(dead.url + '/tokenhandler/login/start', { method: 'POST', headers: { origin: SPA } });
      expect(res.status).toBe(502);
      const body = (await res.json()) as { code: string; detail: string };
      expect(body.code).toBe('GH_ERR_TOKEN_HANDLER_UPSTREAM');
      expect(body.detail).not.toContain('127.0.0.1');
    } finally {
      await dead.close();
    }
  });
});

describe('client misconfigured', () => {
  it('a wrong client secret comes back as a JSON error carrying invalid_client', async () => {
    const bad = await startTestGateway(yaml(as.issuer, as.audience, api.url), { env: { ...env, SPA_CLIENT_SECRET: 'wrong' } });
    try {
      const jar = new Jar();
      const start = await fetch(bad.url + '/tokenhandler/login/start', { method: 'POST', headers: { origin: SPA } });
      jar.store(start);
      const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
      const { url } = await followDevPages(authorizationRequestUrl, { stopAt: REDIRECT });
      const res = await fetch(bad.url + '/tokenhandler/login/end', {
        method: 'POST',
        headers: { origin: SPA, cookie: jar.header('/tokenhandler/login/end'), 'content-type': 'application/json' },
        body: JSON.stringify({ pageUrl: url.href }),
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED', error: 'invalid_client' });
      jar.store(res);
      expect(jar.cookies.size).toBe(0); // the login cookie is spent
    } finally {
      await bad.close();
    }
  });
});

describe('config', () => {
  it('refuses a cookie key of the wrong length, naming the key', async () => {
    await expect(startTestGateway(yaml(as.issuer, as.audience, api.url), { env: { ...env, COOKIE_KEY: randomBytes(16).toString('base64') } }))
      .rejects.toThrow(/tokenHandler\.cookieKeys\[0\] decodes to 16 bytes/);
  });
});
