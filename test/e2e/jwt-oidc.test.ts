import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { PassThrough } from 'node:stream';
import { runTokenInspect } from '../../src/cli/token-inspect.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';

/**
 * Against the real oidc-provider authorization server: RFC 9068 JWT access tokens it issues are
 * accepted through discovery, and real tokens that break a rule are refused before the upstream.
 */
const SECRET = DEMO_CLIENT_SECRETS['demo-client'];
let as: AuthorizationServer;
let stranger: AuthorizationServer;
let upstream: TestUpstream;
let gw: TestGateway;

beforeAll(async () => {
  [as, stranger, upstream] = await Promise.all([
    startAuthorizationServer({
      audience: 'https://api.example.com',
      extraAudiences: ['https://other.example.com'],
      signingAlg: 'PS256',
      accessTokenTtl: 3,
      // client-credentials tokens carry these claims (sub = client_id)
      accounts: {
        'demo-client': { tenant: 'acme', acr: 'urn:example:mfa', amr: ['pwd', 'mfa'], auth_time: Math.floor(Date.now() / 1000) },
        'demo-admin': { tenant: 'globex', acr: 'urn:example:pwd', amr: ['pwd'], auth_time: Math.floor(Date.now() / 1000) },
      },
    }),
    startAuthorizationServer({ audience: 'https://api.example.com' }),
    startUpstream(),
  ]);
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - name: main
    issuer: ${as.issuer}
    discovery: true
    audiences: [https://api.example.com]
    algorithms: [PS256]
    requireTyp: at+jwt
    requiredClaims: [client_id, jti]
    clockSkew: 0s
  - name: strict
    issuer: ${stranger.issuer}
    discovery: true
    audiences: [https://api.example.com]
    algorithms: [ES256]
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: orders, path: /orders, upstream: api, scopes: [orders:read], issuers: [main], forwardClaims: { X-Client: client_id } }
  - { name: strict, path: /strict, upstream: api, issuers: [strict] }
  - { name: tenant, path: '/tenants/{tenant}', upstream: api, issuers: [main], claims: [ 'claims.tenant == request.params.tenant' ] }
  - { name: payments, path: /payments, upstream: api, issuers: [main], stepUp: { acr: [urn:example:mfa], amr: [mfa], maxAuthAge: 5m } }
`);
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([as?.stop(), stranger?.stop(), upstream?.close()]);
});

async function get(path: string, token: string) {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    code: text ? (JSON.parse(text) as { code?: string }).code : undefined,
    challenge: String(res.headers['www-authenticate'] ?? ''),
    reachedUpstream: upstream.requests.length > before,
  };
}

describe('real oidc-provider tokens', () => {
  it('accepts an RFC 9068 access token found through discovery, and forwards it', async () => {
    const token = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString());
    expect(header.typ).toBe('at+jwt');
    const r = await get('/orders', token);
    expect(r.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${token}`);
    expect(seen.headers['x-client']).toBe('demo-client');
  });

  it('refuses a real token for another audience (resource indicator)', async () => {
    const token = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read', { resource: 'https://other.example.com' });
    const r = await get('/orders', token);
    expect(r).toMatchObject({ status: 401, code: 'GH_ERR_JWT_AUDIENCE_INVALID', reachedUpstream: false });
    expect(r.challenge).toMatch(/error="invalid_token"/);
  });

  it('refuses a real token whose payload was altered', async () => {
    const token = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    const [h, p, s] = token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    claims.scope = 'orders:read orders:write';
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    expect(await get('/orders', forged)).toMatchObject({ status: 401, code: 'GH_ERR_JWT_SIGNATURE_INVALID', reachedUpstream: false });
  });

  it('refuses a real token of an issuer the route does not accept', async () => {
    const token = await stranger.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    expect(await get('/orders', token)).toMatchObject({ status: 401, code: 'GH_ERR_JWT_ISSUER_NOT_ACCEPTED', reachedUpstream: false });
  });

  it('refuses a real token signed with an algorithm outside the issuer allowlist', async () => {
    const token = await stranger.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    // the stranger signs RS256; its issuer entry allows ES256 only
    expect(await get('/strict', token)).toMatchObject({ status: 401, code: 'GH_ERR_JWT_ALG_NOT_ALLOWED', reachedUpstream: false });
  });

  it('refuses a real token once it has expired', async () => {
    const token = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    expect((await get('/orders', token)).status).toBe(200); // now cached
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 50));
    expect(await get('/orders', token)).toMatchObject({ status: 401, code: 'GH_ERR_JWT_EXPIRED', reachedUpstream: false });
  });

  it('applies a claim rule to a real token (tenant isolation)', async () => {
    const token = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    expect((await get('/tenants/acme', token)).status).toBe(200);
    expect(await get('/tenants/globex', token)).toMatchObject({ status: 403, code: 'GH_ERR_AUTHZ_CLAIM_DENIED', reachedUpstream: false });
  });

  it('demands step-up from a real token without MFA, and lets an MFA token through', async () => {
    const mfa = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    expect((await get('/payments', mfa)).status).toBe(200);
    const pwd = await as.clientCredentialsToken('demo-admin', DEMO_CLIENT_SECRETS['demo-admin'], 'orders:read');
    const r = await get('/payments', pwd);
    expect(r).toMatchObject({ status: 401, code: 'GH_ERR_AUTHZ_STEP_UP_REQUIRED', reachedUpstream: false });
    expect(r.challenge).toMatch(/error="insufficient_user_authentication"/);
    expect(r.challenge).toMatch(/acr_values="urn:example:mfa"/);
  });

  it('explains a real token with gatehouse token inspect', async () => {
    const token = await as.clientCredentialsToken('demo-client', SECRET, 'orders:read');
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += d));
    expect(await runTokenInspect(gw.file, token, out)).toBe(0);
    expect(text).toMatch(/ok {4}signature: PS256 signature verifies/);
    expect(text).toMatch(/result: VALID/);
  });
});
