import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { TokenHandlerConfig } from '../../../src/config/types.js';
import { createTokenHandlerCore, type TokenHandlerCore } from '../../../src/authn/token-handler/core.js';
import type { OidcClient } from '../../../src/authn/token-handler/oidc-client.js';
import { createCookieCredentialStage, preflight } from '../../../src/authn/token-handler/proxy.js';
import type { GatehouseError } from '../../../src/errors.js';
import type { RequestContext } from '../../../src/pipeline/context.js';
import { createMetrics } from '../../../src/telemetry/metrics.js';

const NOW = 1_800_000_000_000;
const SPA = 'https://www.example.com';

function makeCore(keys = [randomBytes(32).toString('base64')]): TokenHandlerCore {
  const config: TokenHandlerConfig = {
    basePath: '/tokenhandler',
    issuer: 'main',
    clientId: 'spa',
    clientSecret: 's',
    redirectUri: `${SPA}/callback`,
    scope: 'openid',
    trustedOrigins: [SPA],
    cookieKeys: keys,
    cookiePrefix: '__Host-gh',
    loginStateTtl: 600_000,
    sessionTtl: 3_600_000,
    extraParams: {},
    csrfHeader: 'x-gatehouse-csrf',
    tokenEndpointAuthMethod: 'client_secret_basic',
  };
  return createTokenHandlerCore(config, {} as OidcClient, { log: pino({ level: 'silent' }), now: () => NOW, metrics: createMetrics() });
}

function ctxOf(method: string, headers: Record<string, string>): RequestContext {
  return {
    id: 'r1', method, path: '/orders', query: '', headers, clientIp: '127.0.0.1', peerIp: '127.0.0.1', secure: true,
    clientCertificate: null, startedAt: 0, route: null, params: {}, token: null, tokenSource: null, principal: null,
    responseHeaders: [], onFinish: [], log: pino({ level: 'silent' }), upstreamLatency: undefined, decision: 'pending',
  } as unknown as RequestContext;
}

async function sessionCookie(core: TokenHandlerCore, over: Record<string, unknown> = {}): Promise<string> {
  const value = await core.ring.seal({ t: 'at', exp: NOW / 1000 + 60, at: 'the-access-token', csrf: 'the-csrf', sid: 's', sub: 'alice', ...over } as never);
  return `${core.layout.names.at}=${value}`;
}

describe('OAuth proxy credential stage', () => {
  it('refuses a cookie from an origin that is not trusted', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const ctx = ctxOf('GET', { origin: 'https://evil.example', cookie: await sessionCookie(core) });
    expect((await stage(ctx))?.code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect(ctx.token).toBeNull();
    expect(ctx.responseHeaders).toEqual([]);
  });

  it('refuses a cookie sent without Origin by a cross-site or unknown context', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    for (const headers of [{}, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }] as Record<string, string>[]) {
      const ctx = ctxOf('GET', { ...headers, cookie: await sessionCookie(core) });
      expect((await stage(ctx))?.code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    }
  });

  it('refuses a state-changing request without Origin even when same-origin', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const ctx = ctxOf('POST', { 'sec-fetch-site': 'same-origin', 'x-gatehouse-csrf': 'the-csrf', cookie: await sessionCookie(core) });
    expect((await stage(ctx))?.code).toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
  });

  it('refuses a state-changing request without the CSRF header', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const ctx = ctxOf(method, { origin: SPA, cookie: await sessionCookie(core) });
      expect((await stage(ctx))?.code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
      expect(ctx.token).toBeNull();
    }
  });

  it('refuses a state-changing request whose CSRF header does not match the session', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    for (const csrf of ['wrong', 'the-csrf ', 'the-csr', '']) {
      const ctx = ctxOf('POST', { origin: SPA, 'x-gatehouse-csrf': csrf, cookie: await sessionCookie(core) });
      expect((await stage(ctx))?.code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
    }
  });

  it('refuses a tampered cookie with 401, not 500', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const cookie = (await sessionCookie(core)).slice(0, -3) + 'AAA';
    const denial = await stage(ctxOf('GET', { origin: SPA, cookie }));
    expect(denial?.code).toBe('GH_ERR_COOKIE_INVALID');
    expect(denial?.status).toBe(401);
  });

  it('refuses a cookie sealed under keys this gateway does not hold', async () => {
    const core = makeCore();
    const foreign = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    expect((await stage(ctxOf('GET', { origin: SPA, cookie: await sessionCookie(foreign) })))?.code).toBe('GH_ERR_COOKIE_INVALID');
  });

  it('refuses an expired session cookie', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const cookie = await sessionCookie(core, { exp: NOW / 1000 - 1 });
    expect((await stage(ctxOf('GET', { origin: SPA, cookie })))?.code).toBe('GH_ERR_COOKIE_INVALID');
  });

  it('refuses a cookie together with an Authorization header', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const ctx = ctxOf('GET', { origin: SPA, authorization: 'Bearer x', cookie: await sessionCookie(core) });
    expect((await stage(ctx))?.code).toBe('GH_ERR_AUTH_MULTIPLE_CREDENTIALS');
  });

  it('with cookie-only, refuses a bearer header when no cookie is sent', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie-only');
    const ctx = ctxOf('GET', { authorization: 'Bearer x' });
    expect((await stage(ctx))?.code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(ctx.token).toBeNull();
  });

  it('with cookie, lets a bearer request without cookie go on to the bearer stage', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const ctx = ctxOf('POST', { authorization: 'Bearer x' });
    expect(await stage(ctx)).toBeNull();
    expect(ctx.token).toBeNull();
  });

  it('turns a valid cookie into the token on a read from a trusted origin, with CORS headers', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie-only');
    const ctx = ctxOf('GET', { origin: SPA, cookie: `other=1; ${await sessionCookie(core)}` });
    expect(await stage(ctx)).toBeNull();
    expect(ctx.token).toBe('the-access-token');
    expect(ctx.tokenSource).toBe('cookie');
    expect(Object.fromEntries(ctx.responseHeaders)).toMatchObject({
      'access-control-allow-origin': SPA,
      'access-control-allow-credentials': 'true',
      vary: 'Origin',
    });
  });

  it('accepts a write with the matching CSRF header', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const ctx = ctxOf('DELETE', { origin: SPA, 'x-gatehouse-csrf': 'the-csrf', cookie: await sessionCookie(core) });
    expect(await stage(ctx)).toBeNull();
    expect(ctx.token).toBe('the-access-token');
  });

  it('accepts a same-origin read without Origin (Sec-Fetch-Site: same-origin)', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const ctx = ctxOf('GET', { 'sec-fetch-site': 'same-origin', cookie: await sessionCookie(core) });
    expect(await stage(ctx)).toBeNull();
    expect(ctx.token).toBe('the-access-token');
  });

  it('answers synchronously once the cookie value was opened, and still checks CSRF and expiry then', async () => {
    const core = makeCore();
    const stage = createCookieCredentialStage(core, 'cookie');
    const cookie = await sessionCookie(core);
    const first = stage(ctxOf('GET', { origin: SPA, cookie }));
    expect(first).toBeInstanceOf(Promise); // decrypted once
    expect(await first).toBeNull();
    const read = ctxOf('GET', { origin: SPA, cookie });
    expect(stage(read)).toBeNull(); // no promise: the pipeline stays synchronous
    expect(read.token).toBe('the-access-token');
    const write = ctxOf('POST', { origin: SPA, 'x-gatehouse-csrf': 'x'.repeat(8), cookie });
    expect((stage(write) as GatehouseError | null)?.code).toBe('GH_ERR_COOKIE_CSRF_INVALID');
    expect(write.token).toBeNull();
    const later = createCookieCredentialStage({ ...core, now: () => NOW + 61_000 }, 'cookie');
    const expired = ctxOf('GET', { origin: SPA, cookie });
    expect((later(expired) as GatehouseError | null)?.code).toBe('GH_ERR_COOKIE_INVALID');
    expect(expired.token).toBeNull();
  });

  it('accepts a cookie sealed under the previous key during rotation', async () => {
    const oldKey = randomBytes(32).toString('base64');
    const before = makeCore([oldKey]);
    const during = makeCore([randomBytes(32).toString('base64'), oldKey]);
    const ctx = ctxOf('GET', { origin: SPA, cookie: await sessionCookie(before) });
    expect(await createCookieCredentialStage(during, 'cookie')(ctx)).toBeNull();
  });
});

describe('CORS preflight', () => {
  it('refuses an untrusted origin and a missing one', () => {
    const core = makeCore();
    expect((preflight(core, ctxOf('OPTIONS', { origin: 'https://evil.example', 'access-control-request-method': 'POST' }), null) as { code: string }).code)
      .toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
    expect((preflight(core, ctxOf('OPTIONS', { 'access-control-request-method': 'POST' }), null) as { code: string }).code)
      .toBe('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
  });

  it('answers a trusted origin with credentials and the origin itself, never *', () => {
    const core = makeCore();
    const answer = preflight(core, ctxOf('OPTIONS', {
      origin: SPA, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, x-gatehouse-csrf',
    }), 'GET, POST') as { headers: [string, string][] };
    const headers = Object.fromEntries(answer.headers);
    expect(headers['access-control-allow-origin']).toBe(SPA);
    expect(headers['access-control-allow-credentials']).toBe('true');
    expect(headers['access-control-allow-methods']).toBe('GET, POST');
    expect(headers['access-control-allow-headers']).toBe('content-type, x-gatehouse-csrf');
  });

  it('does not echo a malformed header list', () => {
    const core = makeCore();
    const answer = preflight(core, ctxOf('OPTIONS', { origin: SPA, 'access-control-request-method': 'GET', 'access-control-request-headers': 'a\r\nb: c' }), null) as {
      headers: [string, string][];
    };
    expect(Object.fromEntries(answer.headers)['access-control-allow-headers']).toBeUndefined();
  });
});
