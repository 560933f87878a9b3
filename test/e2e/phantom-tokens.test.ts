import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS as S, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startScratchRedis, type ScratchRedis } from '../authn/introspection-redis.js';

/**
 * Phantom tokens end to end (issue 6): a real oidc-provider issuing opaque access tokens, a real
 * gatehouse, and an echo upstream that records what it receives.
 */

let as: AuthorizationServer;
let upstream: TestUpstream;
const gateways: TestGateway[] = [];

const AUDIENCE = 'https://api.example.com';

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: AUDIENCE });
  upstream = await startUpstream();
});

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  await upstream?.close();
  await as?.stop();
});

function yaml(options: { introspection?: string; issuer?: string; top?: string } = {}): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - name: jwt
    issuer: ${as.issuer}
    jwksUri: ${as.jwksUri}
    audiences: [${AUDIENCE}]
  - name: opaque
    issuer: ${as.issuer}
    audiences: [${AUDIENCE}]
    ${options.issuer ?? ''}
    introspection:
      clientId: gateway
      clientSecret: \${INTROSPECTION_SECRET}
      ${options.introspection ?? `endpoint: ${as.introspectionEndpoint}`}
upstreams:
  - { name: api, url: ${upstream.url}, audience: https://orders.internal }
routes:
  - { name: orders, path: /orders, upstream: api, issuers: [opaque], scopes: [orders:read] }
  - { name: admin, path: /admin, upstream: api, issuers: [opaque], scopes: [orders:write] }
  - { name: mixed, path: /mixed, upstream: api, issuers: [jwt, opaque], scopes: [orders:read] }
gateway: { issuer: https://gatehouse.test, keyDirectory: keys }
${options.top ?? ''}
`;
}

async function gateway(options: Parameters<typeof yaml>[0] = {}): Promise<TestGateway> {
  const gw = await startTestGateway(yaml(options), { env: { INTROSPECTION_SECRET: S.gateway } });
  gateways.push(gw);
  return gw;
}

async function call(gw: TestGateway, path: string, token?: string) {
  const res = await request(`${gw.url}${path}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const text = await res.body.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  return { status: res.statusCode, headers: res.headers, body };
}

/** Every opaque token issued in this file: none may ever reach the upstream. */
const issued: string[] = [];
async function opaqueToken(scope = 'orders:read'): Promise<string> {
  const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], scope);
  issued.push(token);
  return token;
}

function lastAuthorization(): string {
  const last = upstream.requests.at(-1)!;
  return String(last.headers.authorization);
}

describe('phantom tokens with plain JSON introspection (the gateway mints the JWT)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await gateway({ introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 60s` });
  });

  it('forwards a JWT the upstream can verify with the admin JWKS, and never the opaque token', async () => {
    const token = await opaqueToken();
    const res = await call(gw, '/orders/1', token);
    expect(res.status).toBe(200);
    const authorization = lastAuthorization();
    expect(authorization).toMatch(/^Bearer ey/);
    const jwt = authorization.slice(7);
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    const jwks = createRemoteJWKSet(new URL(`${gw.adminUrl}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(jwt, jwks, { issuer: 'https://gatehouse.test', audience: 'https://orders.internal', typ: 'at+jwt' });
    expect(payload).toMatchObject({ sub: 'demo-opaque', client_id: 'demo-opaque', scope: 'orders:read' });
    const introspected = await as.introspect(token, 'gateway', S.gateway);
    expect(payload.exp).toBeLessThanOrEqual(introspected.exp as number);
    expect(JSON.stringify(upstream.requests)).not.toContain(token);
  });

  it('publishes the gateway keys as a JWK Set without private members', async () => {
    const res = await request(`${gw.adminUrl}/.well-known/jwks.json`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/jwk-set\+json/);
    const set = (await res.body.json()) as { keys: JWK[] };
    expect(set.keys.length).toBeGreaterThan(0);
    for (const key of set.keys) {
      expect(key.d).toBeUndefined();
      expect(key.kid).toBeTruthy();
      expect(key.use).toBe('sig');
    }
  });

  it('shows the introspection state on /readyz', async () => {
    const res = await request(`${gw.adminUrl}/readyz`);
    const body = (await res.body.json()) as { status: string; details: { authn: { issuers: Record<string, Record<string, unknown>> } } };
    expect(res.statusCode).toBe(200);
    expect(body.details.authn.issuers.opaque).toMatchObject({ endpoint: as.introspectionEndpoint });
    expect(JSON.stringify(body)).not.toContain(S.gateway);
  });

  it('makes zero further introspection calls while the answer is cached', async () => {
    const token = await opaqueToken();
    as.resetCounts();
    for (let i = 0; i < 5; i++) expect((await call(gw, '/orders', token)).status).toBe(200);
    expect(as.counts.introspection).toBe(1);
  });

  it('makes one introspection call for concurrent requests with the same new token', async () => {
    const token = await opaqueToken();
    as.resetCounts();
    const results = await Promise.all(Array.from({ length: 10 }, () => call(gw, '/orders', token)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(as.counts.introspection).toBe(1);
  });

  it('makes exactly one call per distinct token when many tokens arrive at once', async () => {
    const tokens = await Promise.all(Array.from({ length: 30 }, () => opaqueToken()));
    as.resetCounts();
    const results = await Promise.all(tokens.flatMap((t) => [call(gw, '/orders', t), call(gw, '/orders', t), call(gw, '/orders', t)]));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(as.counts.introspection).toBe(30);
  });

  it('refuses a forged opaque token with 401 invalid_token', async () => {
    const before = upstream.requests.length;
    const res = await call(gw, '/orders', 'forged-opaque-token-0123456789');
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(res.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses a token that is no b64token with 400 before any introspection call', async () => {
    as.resetCounts();
    const before = upstream.requests.length;
    // With a '.' too: such a token is parsed as a JWT first, and refused the same, uncalled.
    for (const bad of ['opaque with spaces', 'opaque"quote', 'opaque=padding-inside', 'a.b"c.d', 'x.y z.w', 'opaque.with=inside.x']) {
      const res = await call(gw, '/orders', bad);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('GH_ERR_AUTH_MALFORMED_HEADER');
      expect(res.headers['www-authenticate']).toMatch(/error="invalid_request"/);
    }
    expect(as.counts.introspection).toBe(0);
    expect(upstream.requests.length).toBe(before);
  });

  it('introspects a JWT-shaped string sent to an opaque-only route, and never trusts it', async () => {
    // A real, valid JWT access token of this very authorization server: the route accepts only
    // the opaque issuer, so the string is introspected (and the server refuses structured tokens).
    const jwt = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    as.resetCounts();
    const before = upstream.requests.length;
    const res = await call(gw, '/orders', jwt);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(as.counts.introspection).toBe(1);
    expect(upstream.requests.length).toBe(before);
  });

  it('answers 403 insufficient_scope for the same valid opaque token on a route needing a scope it lacks', async () => {
    const token = await opaqueToken();
    expect((await call(gw, '/orders', token)).status).toBe(200);
    const before = upstream.requests.length;
    const res = await call(gw, '/admin', token);
    expect(upstream.requests.length).toBe(before);
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('GH_ERR_AUTHZ_INSUFFICIENT_SCOPE');
    expect(res.headers['www-authenticate']).toMatch(/error="insufficient_scope"/);
  });

  it('validates a JWT as a JWT on a route that accepts both kinds', async () => {
    const jwt = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    as.resetCounts();
    expect((await call(gw, '/mixed', jwt)).status).toBe(200);
    expect(lastAuthorization()).toBe(`Bearer ${jwt}`);
    expect(as.counts.introspection).toBe(0);
    const token = await opaqueToken();
    expect((await call(gw, '/mixed', token)).status).toBe(200);
    expect(lastAuthorization()).not.toContain(token);
    expect(as.counts.introspection).toBe(1);
  });
});

describe('hot reload', () => {
  it('keeps the introspection cache across a reload that changes nothing it depends on, and drops it otherwise', async () => {
    const options = { introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 60s` };
    const gw = await gateway(options);
    const token = await opaqueToken();
    as.resetCounts();
    expect((await call(gw, '/orders', token)).status).toBe(200);
    expect(as.counts.introspection).toBe(1);
    await gw.reload(yaml({ ...options, top: 'log: { level: debug }' }).replace('{ name: mixed,', '{ name: extra, path: /extra, upstream: api, issuers: [opaque] }\n  - { name: mixed,'));
    expect((await call(gw, '/orders', token)).status).toBe(200);
    expect((await call(gw, '/extra', token)).status).toBe(200);
    expect(as.counts.introspection).toBe(1);
    await gw.reload(yaml({ ...options, issuer: 'clockSkew: 30s' }));
    expect((await call(gw, '/orders', token)).status).toBe(200);
    expect(as.counts.introspection).toBe(2);
  });
});

describe('revocation and cacheTtl', () => {
  it('refuses a revoked token immediately with cacheTtl: 0', async () => {
    const gw = await gateway({ introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 0` });
    const token = await opaqueToken();
    expect((await call(gw, '/orders', token)).status).toBe(200);
    await as.revoke(token, 'demo-opaque', S['demo-opaque']);
    const before = upstream.requests.length;
    const res = await call(gw, '/orders', token);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses a revoked token after at most cacheTtl', async () => {
    const gw = await gateway({ introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 500ms` });
    const token = await opaqueToken();
    expect((await call(gw, '/orders', token)).status).toBe(200);
    await as.revoke(token, 'demo-opaque', S['demo-opaque']);
    await new Promise((resolve) => setTimeout(resolve, 550));
    const before = upstream.requests.length;
    expect((await call(gw, '/orders', token)).status).toBe(401);
    expect(upstream.requests.length).toBe(before);
  });
});

describe('faults', () => {
  it('answers 503 with Retry-After while the introspection endpoint is down, then recovers', async () => {
    const gw = await gateway({ introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 0` });
    const token = await opaqueToken();
    as.setDown(true, 'unavailable');
    const before = upstream.requests.length;
    try {
      const res = await call(gw, '/orders', token);
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      expect(upstream.requests.length).toBe(before);
    } finally {
      as.setDown(false);
    }
    expect((await call(gw, '/orders', token)).status).toBe(200);
  });

  it('answers 503 when the endpoint hangs past the timeout', async () => {
    const gw = await gateway({ introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 0\n      timeout: 300ms` });
    const token = await opaqueToken();
    as.setDown(true, 'hang');
    const before = upstream.requests.length;
    try {
      const res = await call(gw, '/orders', token);
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
      expect(upstream.requests.length).toBe(before);
    } finally {
      as.setDown(false);
    }
    expect((await call(gw, '/orders', token)).status).toBe(200);
  });
});

describe('other ways to get the JWT', () => {
  it('finds the introspection endpoint by discovery', async () => {
    const gw = await gateway({ issuer: 'discovery: true', introspection: 'cacheTtl: 60s' });
    const token = await opaqueToken();
    expect((await call(gw, '/orders', token)).status).toBe(200);
    expect(lastAuthorization()).not.toContain(token);
  });

  it('accept: application/jwt forwards the authorization server JWT, verified with its keys', async () => {
    const gw = await gateway({ issuer: `jwksUri: ${as.jwksUri}`, introspection: `endpoint: ${as.introspectionEndpoint}\n      accept: application/jwt` });
    const token = await opaqueToken();
    expect((await call(gw, '/orders', token)).status).toBe(200);
    const jwt = lastAuthorization().slice(7);
    expect(jwt).not.toContain(token);
    const jwks = createLocalJWKSet((await (await request(as.jwksUri)).body.json()) as { keys: JWK[] });
    const { payload } = await jwtVerify(jwt, jwks, { issuer: as.issuer, audience: AUDIENCE });
    expect(payload).toMatchObject({ client_id: 'demo-opaque', scope: 'orders:read' });
    expect((await call(gw, '/orders', 'forged-opaque-token-0123456789')).status).toBe(401);
  });

  it('accept: application/token-introspection+jwt (RFC 9701) verifies the signed answer and mints', async () => {
    const gw = await gateway({
      issuer: `jwksUri: ${as.jwksUri}`,
      introspection: `endpoint: ${as.introspectionEndpoint}\n      accept: application/token-introspection+jwt`,
    });
    const token = await opaqueToken();
    const ok = await call(gw, '/orders', token);
    expect(ok.status).toBe(200);
    const jwt = lastAuthorization().slice(7);
    const jwks = createRemoteJWKSet(new URL(`${gw.adminUrl}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(jwt, jwks, { issuer: 'https://gatehouse.test', audience: 'https://orders.internal' });
    expect(payload.sub).toBe('demo-opaque');
    expect((await call(gw, '/orders', 'forged-opaque-token-0123456789')).status).toBe(401);
    expect((await call(gw, '/admin', token)).status).toBe(403);
  });
});

describe('a Redis-backed cache shared by two gateways', () => {
  let redis: ScratchRedis;
  beforeAll(async () => {
    redis = await startScratchRedis();
  });
  afterAll(async () => {
    await Promise.all(gateways.splice(0).map((g) => g.close()));
    await redis?.stop();
  });

  it('lets the second gateway answer from what the first introspected, with zero further calls', async () => {
    const options = { introspection: `endpoint: ${as.introspectionEndpoint}\n      cacheTtl: 60s`, top: `redis: { url: ${redis.url} }` };
    const a = await gateway(options);
    const b = await gateway(options);
    const token = await opaqueToken();
    as.resetCounts();
    expect((await call(a, '/orders', token)).status).toBe(200);
    expect(as.counts.introspection).toBe(1);
    expect((await call(b, '/orders', token)).status).toBe(200);
    expect(as.counts.introspection).toBe(1);
    // Each gateway forwards a JWT its own JWKS verifies (instances need not share signing keys).
    const jwt = lastAuthorization().slice(7);
    await jwtVerify(jwt, createRemoteJWKSet(new URL(`${b.adminUrl}/.well-known/jwks.json`)), { issuer: 'https://gatehouse.test' });
  });
});

describe('after everything above', () => {
  it('the upstream never received any of the opaque tokens, in any header, path or body', () => {
    expect(issued.length).toBeGreaterThan(10);
    expect(upstream.requests.length).toBeGreaterThan(10);
    const seen = JSON.stringify(upstream.requests);
    for (const token of issued) expect(seen.includes(token)).toBe(false);
  });
});
