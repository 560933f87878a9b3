import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { jwks, mint, testKey } from '../authn/jwt-fixtures.js';

/**
 * CORS for bearer-token and public routes through the real gateway: preflights answered by
 * gatehouse (they carry no token), every answer to a listed origin marked, other origins
 * refused at the preflight and never marked.
 */
const key = testKey('ES256');
const APP = 'https://app.example.com';

let upstream: TestUpstream;
let keys: JwksServer;
let gw: TestGateway;
let plain: TestGateway;
let open: TestGateway;

function config(extra: string): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: ${keys.url}, audiences: [https://api.example.test], algorithms: [ES256] }
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: orders, path: /orders, methods: [GET, POST], upstream: api, scopes: [orders:read] }
  - { name: public, path: /public, upstream: api, public: true }
${extra}`;
}

beforeAll(async () => {
  upstream = await startUpstream();
  keys = await startJwksServer(jwks(key));
  gw = await startTestGateway(config(`cors: { origins: ["${APP}", "http://localhost:5173"], exposeHeaders: [X-Total-Count], maxAge: 5m }`));
  plain = await startTestGateway(config(''));
  open = await startTestGateway(config(`cors: { origins: ["*"], allowHeaders: [X-Tenant] }\npreAuthLimit: { limit: 2, window: 1m }`));
});

afterAll(async () => {
  for (const g of [gw, plain, open]) await g?.close();
  await upstream?.close();
  await keys?.close();
});

const token = () => mint(key, Date.now(), { scope: 'orders:read' });

async function call(via: TestGateway, method: string, path: string, headers: Record<string, string>) {
  const before = upstream.requests.length;
  const res = await request(`${via.url}${path}`, { method: method as 'GET', headers });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body, reachedUpstream: upstream.requests.length > before };
}

const preflight = (via: TestGateway, origin: string, method = 'GET', path = '/orders', requestHeaders = 'authorization, x-trace') =>
  call(via, 'OPTIONS', path, { origin, 'access-control-request-method': method, 'access-control-request-headers': requestHeaders });

describe('CORS preflights (no token: gatehouse answers them)', () => {
  it('refuses a preflight from an origin not listed: 403 without CORS headers, nothing reaches the upstream', async () => {
    for (const origin of ['https://evil.example', 'https://app.example.com.evil.example', 'http://app.example.com', 'null']) {
      const r = await preflight(gw, origin);
      expect(r.status, origin).toBe(403);
      expect(JSON.parse(r.body).code).toBe('GH_ERR_CORS_ORIGIN_NOT_ALLOWED');
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
      expect(r.reachedUpstream).toBe(false);
    }
    expect(gw.logs.some((l) => l.reason === 'GH_ERR_CORS_ORIGIN_NOT_ALLOWED' && l.origin === 'https://evil.example')).toBe(true);
  });

  it('answers a preflight from a listed origin with 204 and what the browser needs, without the upstream', async () => {
    const r = await preflight(gw, APP, 'POST');
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe(APP);
    expect(r.headers['access-control-allow-methods']).toBe('POST');
    expect(r.headers['access-control-allow-headers']).toBe('authorization, x-trace');
    expect(r.headers['access-control-max-age']).toBe('300');
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    expect(String(r.headers.vary)).toContain('Origin');
    expect(r.reachedUpstream).toBe(false);
    // Loopback http origins (a development server) may be listed.
    expect((await preflight(gw, 'http://localhost:5173')).status).toBe(204);
  });

  it('does not treat as a preflight a method or path no route takes (404 / 405 as for any OPTIONS: the browser sends nothing)', async () => {
    const unknown = await preflight(gw, APP, 'GET', '/nowhere');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['access-control-allow-methods']).toBeUndefined();
    const method = await preflight(gw, APP, 'DELETE');
    expect(method.status).toBe(405);
    expect(method.headers['access-control-allow-methods']).toBeUndefined();
    expect(unknown.reachedUpstream || method.reachedUpstream).toBe(false);
  });

  it('a 404 or 405 is readable by a listed origin\'s page (a typo shows as a 404, not as a CORS failure); another origin gets Vary only', async () => {
    const notFound = await call(gw, 'GET', '/ordres', { origin: APP });
    expect(notFound.status).toBe(404);
    expect(JSON.parse(notFound.body).code).toBe('GH_ERR_ROUTE_NOT_FOUND');
    expect(notFound.headers['access-control-allow-origin']).toBe(APP);
    expect(String(notFound.headers['access-control-expose-headers'])).toContain('x-request-id');
    expect(String(notFound.headers.vary)).toContain('Origin');
    const wrongMethod = await call(gw, 'DELETE', '/orders', { origin: APP, authorization: `Bearer ${await token()}` });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers['access-control-allow-origin']).toBe(APP);
    expect(wrongMethod.headers.allow).toBe('GET, HEAD, POST');
    const other = await call(gw, 'GET', '/ordres', { origin: 'https://evil.example' });
    expect(other.status).toBe(404);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    expect(String(other.headers.vary)).toContain('Origin');
    const none = await call(plain, 'GET', '/ordres', { origin: APP });
    expect(none.status).toBe(404);
    expect(none.headers['access-control-allow-origin']).toBeUndefined();
    expect([notFound, wrongMethod, other, none].some((r) => r.reachedUpstream)).toBe(false);
  });

  it('without a cors section answers no preflight: OPTIONS goes on as any request (405 here), unmarked', async () => {
    const r = await preflight(plain, APP);
    expect(r.status).toBe(405); // /orders takes GET and POST only
    const pub = await preflight(plain, APP, 'GET', '/public');
    expect(pub.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('with allowHeaders answers that list (authorization and content-type always), and * for any origin', async () => {
    const r = await preflight(open, 'https://anyone.example');
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe('*');
    expect(r.headers['access-control-allow-headers']).toBe('authorization, content-type, x-tenant');
  });
});

describe('CORS on actual answers', () => {
  it('marks a 401 to a listed origin, so the page can read WWW-Authenticate', async () => {
    const r = await call(gw, 'GET', '/orders', { origin: APP });
    expect(r.status).toBe(401);
    expect(r.headers['access-control-allow-origin']).toBe(APP);
    expect(r.headers['www-authenticate']).toContain('Bearer');
    expect(String(r.headers['access-control-expose-headers'])).toContain('www-authenticate');
    expect(r.reachedUpstream).toBe(false);
  });

  it("marks a forwarded answer, replacing the upstream's own Access-Control-Allow-Origin", async () => {
    upstream.setHandler((_req, res) => {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('vary', 'Accept-Encoding');
      res.end('{}');
    });
    try {
      const r = await call(gw, 'GET', '/orders', { origin: APP, authorization: `Bearer ${token()}` });
      expect(r.status).toBe(200);
      expect(r.headers['access-control-allow-origin']).toBe(APP);
      expect(r.headers['access-control-expose-headers']).toBe('www-authenticate, x-request-id, retry-after, ratelimit, ratelimit-policy, dpop-nonce, x-total-count');
      expect(r.headers.vary).toBe('Accept-Encoding, Origin');
    } finally {
      upstream.setHandler(null);
    }
  });

  it("never marks an answer to an origin not listed (Vary: Origin only; the upstream's own CORS headers dropped), and still needs the token", async () => {
    upstream.setHandler((_req, res) => {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('access-control-allow-credentials', 'true');
      res.end('{}');
    });
    try {
      const ok = await call(gw, 'GET', '/orders', { origin: 'https://evil.example', authorization: `Bearer ${token()}` });
      expect(ok.status).toBe(200);
      expect(ok.headers['access-control-allow-origin']).toBeUndefined();
      expect(ok.headers['access-control-allow-credentials']).toBeUndefined();
      expect(ok.headers.vary).toBe('Origin');
      // Without a cors section gatehouse does not touch them: the upstream answers CORS itself.
      const own = await call(plain, 'GET', '/public', { origin: 'https://evil.example' });
      expect(own.headers['access-control-allow-origin']).toBe('*');
    } finally {
      upstream.setHandler(null);
    }
    const denied = await call(open, 'GET', '/orders', { origin: 'https://anyone.example' });
    expect(denied.status).toBe(401); // any origin may read the answer; none gets in without a token
    expect(denied.headers['access-control-allow-origin']).toBe('*');
  });

  it('marks a pre-auth 429, so the page can read Retry-After', async () => {
    let last;
    for (let i = 0; i < 4; i++) last = await call(open, 'GET', '/public', { origin: 'https://anyone.example' });
    expect(last!.status).toBe(429);
    expect(last!.headers['access-control-allow-origin']).toBe('*');
    expect(last!.headers['retry-after']).toBeDefined();
  });
});

describe('cors config', () => {
  const problems = (cors: string): string[] => {
    try {
      loadConfigText(`listen: { port: 0 }\nupstreams: [{ name: api, url: "http://127.0.0.1:1" }]\nroutes: [{ name: p, path: /p, upstream: api, public: true }]\n${cors}\n`);
    } catch (err) {
      if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
      throw err;
    }
    return [];
  };

  it('refuses what is not an exact origin, a mixed "*", plain http off loopback and a maxAge over a day', () => {
    expect(problems('cors: { origins: ["https://app.example.com/spa"] }')).toEqual([expect.stringMatching(/^cors\.origins\[0\]: must be an origin only/)]);
    expect(problems('cors: { origins: ["*", "https://app.example.com"] }')).toEqual([expect.stringMatching(/^cors\.origins\[0\]: "\*" \(any origin\) stands alone/)]);
    expect(problems('cors: { origins: ["http://app.example.com"] }')).toEqual(['cors.origins[0]: must be https (http only on loopback hosts)']);
    expect(problems('cors: { origins: ["*.example.com"] }')).toEqual([expect.stringMatching(/^cors\.origins\[0\]: is not a valid origin/)]);
    expect(problems('cors: { origins: ["https://a.example"], maxAge: 2d }')).toEqual([expect.stringMatching(/^cors\.maxAge: must be at most 1d/)]);
    expect(problems('cors: { origins: [] }').length).toBe(1);
    expect(problems('cors: { origins: ["https://a.example"], allowHeaders: ["x bad"] }').length).toBe(1);
  });

  it('normalizes origins and header names', () => {
    const config = loadConfigText(
      `listen: { port: 0 }\nupstreams: [{ name: api, url: "http://127.0.0.1:1" }]\nroutes: [{ name: p, path: /p, upstream: api, public: true }]\ncors: { origins: ["HTTPS://App.Example.com/"], allowHeaders: [X-Tenant], exposeHeaders: [X-Total-Count] }\n`,
    );
    expect(config.cors).toEqual({ origins: ['https://app.example.com'], anyOrigin: false, allowHeaders: ['authorization', 'content-type', 'x-tenant'], exposeHeaders: ['x-total-count'], maxAge: 600_000 });
  });
});

describe('cors beside a token handler', () => {
  it('leaves cookie routes to the token handler (its trustedOrigins, with credentials) and answers for bearer routes', async () => {
    const th = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: "http://127.0.0.1:1/never", discovery: true, audiences: [https://api.example.test], fetchTimeout: 200ms }
upstreams:
  - { name: api, url: ${upstream.url} }
tokenHandler:
  basePath: /tokenhandler
  issuer: main
  clientId: spa
  clientSecret: secret
  redirectUri: https://spa.example.com/callback
  trustedOrigins: [https://spa.example.com]
  cookieKeys: ["${Buffer.alloc(32, 7).toString('base64')}"]
routes:
  - { name: cookie, path: /cookie, upstream: api, auth: cookie }
  - { name: bearer, path: /bearer, upstream: api }
cors: { origins: ["${APP}"] }
`);
    try {
      // The cookie route: cors.origins do not open it; the SPA's origin gets credentials.
      const fromApp = await preflight(th, APP, 'GET', '/cookie');
      expect(fromApp.status).toBe(403);
      expect(JSON.parse(fromApp.body).code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
      const fromSpa = await preflight(th, 'https://spa.example.com', 'GET', '/cookie');
      expect(fromSpa.status).toBe(204);
      expect(fromSpa.headers['access-control-allow-credentials']).toBe('true');
      // The bearer route: cors answers, without credentials.
      const bearer = await preflight(th, APP, 'GET', '/bearer');
      expect(bearer.status).toBe(204);
      expect(bearer.headers['access-control-allow-origin']).toBe(APP);
      expect(bearer.headers['access-control-allow-credentials']).toBeUndefined();
      expect((await preflight(th, 'https://spa.example.com', 'GET', '/bearer')).status).toBe(403);
    } finally {
      await th.close();
    }
  });
});
