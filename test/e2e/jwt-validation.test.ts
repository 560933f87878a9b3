import { createHmac } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { claimsAt, jwks, mint, signJws, testKey, withClaims } from '../authn/jwt-fixtures.js';

/**
 * End to end through the real gateway: every bullet of the JWT issue's Validation list gets a
 * hostile token that must answer 401 (400 for malformed requests, RFC 6750 §3.1) and never
 * reach the upstream.
 */
const rs = testKey('RS256');
const es = testKey('ES256');
const ed = testKey('EdDSA');
const ps = testKey('PS256');
const other = testKey('ES256', 'other-1');
const encKey = testKey('RS256', 'enc-key', { use: 'enc' });
const opsKey = testKey('RS256', 'ops-key', { use: undefined, key_ops: ['sign'] });
const weakKey = testKey('RS256', 'weak-key', { bits: 1024 });
const e3Key = testKey('RS256', 'e3-key', { e: 3 });
const privKey = testKey('ES256', 'priv-key');
const privJwk = { ...privKey.privateKey.export({ format: 'jwk' }), kid: 'priv-key', alg: 'ES256' };

let upstream: TestUpstream;
let keys: JwksServer;
let otherKeys: JwksServer;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  keys = await startJwksServer(jwks(rs, es, ed, encKey, opsKey, weakKey, e3Key, privJwk));
  otherKeys = await startJwksServer(jwks(other));
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - name: main
    issuer: https://id.example.test
    jwksUri: ${keys.url}
    audiences: [https://api.example.test]
    algorithms: [RS256, ES256, EdDSA]
    maxTokenAge: 1h
  - name: other
    issuer: https://other.example.test
    jwksUri: ${otherKeys.url}
    audiences: [https://api.example.test]
    algorithms: [ES256]
    requireTyp: at+jwt
    requiredClaims: [client_id]
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - name: orders
    path: /orders
    upstream: api
    scopes: [orders:read]
    forwardClaims: { X-Auth-Sub: sub, X-Auth-Client: client_id }
  - name: users
    path: /users/{userId}
    upstream: api
    claims: [ 'claims.sub == request.params.userId' ]
  - name: tenants
    path: /tenant
    upstream: api
    claims: [ { rule: 'claims.tenant == request.headers["x-tenant"]', message: 'this token belongs to another tenant' } ]
  - name: payments
    path: /payments
    upstream: api
    stepUp: { acr: [urn:example:mfa], amr: [mfa], maxAuthAge: 5m }
  - { name: other-only, path: /other-only, upstream: api, issuers: [other] }
  - { name: no-token-forward, path: /no-forward, upstream: api, forwardToken: false }
  - { name: anything, path: /, upstream: api }
`);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await keys?.close();
  await otherKeys?.close();
});

const now = () => Date.now();
const nowS = () => Math.floor(Date.now() / 1000);

async function call(path: string, headers: Record<string, string | string[]> = {}, init: { method?: string; body?: string } = {}) {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}${path}`, { method: (init.method ?? 'GET') as 'GET', headers, body: init.body });
  const text = await res.body.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return {
    status: res.statusCode,
    body,
    text,
    challenge: String(res.headers['www-authenticate'] ?? ''),
    reachedUpstream: upstream.requests.length > before,
    upstreamRequest: upstream.requests.length > before ? upstream.requests.at(-1)! : undefined,
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function hsWithPublicKey(): string {
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', kid: rs.kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claimsAt(now()))).toString('base64url');
  const mac = createHmac('sha256', rs.publicKey.export({ type: 'spki', format: 'pem' })).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${mac}`;
}

describe('a valid token', () => {
  it('reaches the upstream with the token as-is and the forwarded claims', async () => {
    const token = mint(rs, now());
    const r = await call('/orders', { ...bearer(token), 'x-auth-sub': 'spoofed', 'X-Auth-Client': 'spoofed' });
    expect(r.status).toBe(200);
    const seen = r.upstreamRequest!;
    expect(seen.headers.authorization).toBe(`Bearer ${token}`);
    expect(seen.headers['x-auth-sub']).toBe('user-1');
    expect(seen.headers['x-auth-client']).toBe('app');
    expect(seen.rawHeaders.filter((h: string) => h.toLowerCase() === 'x-auth-sub')).toHaveLength(1);
  });

  it('is accepted again from the verified-token cache', async () => {
    const token = mint(es, now());
    expect((await call('/orders', bearer(token))).status).toBe(200);
    expect((await call('/orders', bearer(token))).status).toBe(200);
  });

  it('is not forwarded when the route says forwardToken: false', async () => {
    const r = await call('/no-forward', bearer(mint(ed, now())));
    expect(r.status).toBe(200);
    expect(r.upstreamRequest!.headers.authorization).toBeUndefined();
  });

  it('of a second issuer is accepted on the route that names it', async () => {
    expect((await call('/other-only', bearer(mint(other, now(), { iss: 'https://other.example.test' })))).status).toBe(200);
  });

  it('is not needed on a public route', async () => {
    expect((await call('/public')).status).toBe(200);
  });
});

describe('no token or a malformed request (RFC 6750 §3.1)', () => {
  it('answers 401 with a bare Bearer challenge when no token is sent', async () => {
    const r = await call('/orders');
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(r.challenge).toMatch(/^Bearer realm="[^"]+"$/);
    expect(r.reachedUpstream).toBe(false);
  });

  it('answers 401 without an error for another scheme (Basic)', async () => {
    const r = await call('/orders', { authorization: 'Basic dXNlcjpwYXNz' });
    expect(r.status).toBe(401);
    expect(r.challenge).not.toMatch(/error=/);
    expect(r.reachedUpstream).toBe(false);
  });

  it('does not accept a token in the query string', async () => {
    const r = await call(`/orders?access_token=${mint(rs, now())}`);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('GH_ERR_AUTH_TOKEN_IN_QUERY');
    expect(r.challenge).toMatch(/error="invalid_request"/);
    expect(r.reachedUpstream).toBe(false);
  });

  it('does not accept a token in a form body', async () => {
    const r = await call('/orders', { 'content-type': 'application/x-www-form-urlencoded' }, { method: 'POST', body: `access_token=${mint(rs, now())}` });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(r.reachedUpstream).toBe(false);
  });

  it('refuses two Authorization headers', async () => {
    const token = mint(rs, now());
    const r = await rawRequest('/orders', [`Authorization: Bearer ${token}`, `Authorization: Bearer ${token}`]);
    expect(r.status).toBe(400);
    expect(r.text).toContain('GH_ERR_AUTH_MULTIPLE_CREDENTIALS');
    expect(r.reachedUpstream).toBe(false);
  });

  it.each([
    ['Bearer'],
    ['Bearer '],
    ['Bearer  two-spaces'],
    ['Bearer a b'],
    ['Bearer tok"en'],
  ])('refuses the malformed Authorization header %j', async (value) => {
    const r = await call('/orders', { authorization: value });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('GH_ERR_AUTH_MALFORMED_HEADER');
    expect(r.reachedUpstream).toBe(false);
  });

  it.each([
    // b64token syntax (RFC 6750 §2.1), but no compact JWS: 401 invalid_token
    ['abc', 401, 'GH_ERR_JWT_MALFORMED'],
    ['a.b.c=', 401, 'GH_ERR_JWT_MALFORMED'],
    ['a~b.c.d', 401, 'GH_ERR_JWT_MALFORMED'],
    ['a.b.c/', 401, 'GH_ERR_JWT_MALFORMED'],
    ['.b.c', 401, 'GH_ERR_JWT_MALFORMED'],
    ['a.b.c.d', 401, 'GH_ERR_JWT_MALFORMED'],
    // no b64token at all: 400 invalid_request, whatever else the value looks like
    ['a.b.c!', 400, 'GH_ERR_AUTH_MALFORMED_HEADER'],
    ['a.b.c\u00e9', 400, 'GH_ERR_AUTH_MALFORMED_HEADER'],
    ['=a.b.c', 400, 'GH_ERR_AUTH_MALFORMED_HEADER'],
  ])('answers the bearer value %j that is no JWS with %i and its own code', async (value, status, code) => {
    const r = await call('/orders', { authorization: `Bearer ${JSON.parse(`"${value}"`) as string}` });
    expect([r.status, r.body.code]).toEqual([status, code]);
    expect(r.reachedUpstream).toBe(false);
  });
});

/** Send raw HTTP/1.1 (undici would merge or refuse duplicate headers). */
function rawRequest(target: string, lines: string[]): Promise<{ status: number; text: string; reachedUpstream: boolean }> {
  const before = upstream.requests.length;
  const { port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('end', () => resolve({ status: Number(data.split(' ')[1]), text: data, reachedUpstream: upstream.requests.length > before }));
    socket.on('error', reject);
  });
}

const hostile: [string, () => string, string][] = [
  // signature: asymmetric only, allowlist, algorithm confusion, key policy
  ['alg none', () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(claimsAt(now()))).toString('base64url')}.AAAA`, 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
  ['HS256 signed with the RSA public key as secret', hsWithPublicKey, 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
  ['an asymmetric alg outside the issuer allowlist (PS256)', () => mint(ps, now(), {}, { kid: rs.kid }), 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
  ['an ES256 token whose kid names an RSA key', () => mint(es, now(), {}, { kid: rs.kid }), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['an EdDSA token whose kid names an EC key', () => mint(ed, now(), {}, { kid: es.kid }), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['a key published with use enc', () => mint(encKey, now()), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['a key whose key_ops lack verify', () => mint(opsKey, now()), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['an RSA key of 1024 bits', () => mint(weakKey, now()), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['an RSA key with public exponent 3', () => mint(e3Key, now()), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['a JWKS entry that holds a private key', () => mint(privKey, now()), 'GH_ERR_JWT_KEY_UNUSABLE'],
  ['a signature by another key under a known kid', () => mint({ ...testKey('RS256', 'impostor'), kid: rs.kid }, now()), 'GH_ERR_JWT_SIGNATURE_INVALID'],
  // header parameters
  ['a jku header', () => mint(rs, now(), {}, { jku: `${keys.url}` }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['an x5u header', () => mint(rs, now(), {}, { x5u: 'https://evil.example/c.pem' }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['an embedded jwk header', () => mint(rs, now(), {}, { jwk: rs.jwk }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['an x5c header', () => mint(rs, now(), {}, { x5c: ['MIIB'] }), 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
  ['crit with an unknown value', () => mint(rs, now(), {}, { crit: ['urn:example:unknown'], 'urn:example:unknown': 1 }), 'GH_ERR_JWT_CRIT_UNSUPPORTED'],
  ['a kid not in the key set', () => mint(testKey('RS256', 'nobody'), now()), 'GH_ERR_JWT_KID_UNKNOWN'],
  // claims
  ['an iss that differs by a trailing slash', () => mint(rs, now(), { iss: 'https://id.example.test/' }), 'GH_ERR_JWT_ISSUER_UNKNOWN'],
  ['an aud of another API', () => mint(rs, now(), { aud: ['https://other.example'] }), 'GH_ERR_JWT_AUDIENCE_INVALID'],
  ['an aud string of another API', () => mint(rs, now(), { aud: 'https://other.example' }), 'GH_ERR_JWT_AUDIENCE_INVALID'],
  ['no aud', () => mint(rs, now(), { aud: undefined }), 'GH_ERR_JWT_AUDIENCE_INVALID'],
  ['no exp', () => mint(rs, now(), { exp: undefined }), 'GH_ERR_JWT_CLAIM_MISSING'],
  ['an expired token', () => mint(rs, now(), { exp: nowS() - 120 }), 'GH_ERR_JWT_EXPIRED'],
  ['an exp of the wrong JSON type', () => mint(rs, now(), { exp: `${nowS() + 60}` }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['an nbf in the future', () => mint(rs, now(), { nbf: nowS() + 600 }), 'GH_ERR_JWT_NOT_YET_VALID'],
  ['an nbf of the wrong JSON type', () => mint(rs, now(), { nbf: `${nowS() - 60}` }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['an iat of the wrong JSON type', () => mint(rs, now(), { iat: `${nowS()}` }), 'GH_ERR_JWT_CLAIM_INVALID'],
  ['an iat in the future', () => mint(rs, now(), { iat: nowS() + 600 }), 'GH_ERR_JWT_ISSUED_IN_FUTURE'],
  ['a token older than maxTokenAge', () => mint(rs, now(), { iat: nowS() - 7200 }), 'GH_ERR_JWT_TOO_OLD'],
  ['typ dpop+jwt', () => mint(rs, now(), {}, { typ: 'dpop+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['typ logout+jwt', () => mint(rs, now(), {}, { typ: 'logout+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['typ secevent+jwt', () => mint(rs, now(), {}, { typ: 'secevent+jwt' }), 'GH_ERR_JWT_TYP_INVALID'],
  ['no typ where the issuer requires at+jwt', () => mint(other, now(), { iss: 'https://other.example.test' }, { typ: undefined }), 'GH_ERR_JWT_TYP_INVALID'],
  ['no client_id where the issuer requires it', () => mint(other, now(), { iss: 'https://other.example.test', client_id: undefined }), 'GH_ERR_JWT_CLAIM_MISSING'],
  // several issuers
  ['an iss that names no configured issuer', () => mint(rs, now(), { iss: 'https://evil.example' }), 'GH_ERR_JWT_ISSUER_UNKNOWN'],
  // the issuer is chosen by iss before any key is used: another issuer's key never verifies
  ['iss other, signed with a key of issuer main', () => mint(es, now(), { iss: 'https://other.example.test' }), 'GH_ERR_JWT_KID_UNKNOWN'],
  ['iss main, signed with the key of issuer other', () => mint(other, now(), { iss: 'https://id.example.test' }, { alg: 'ES256' }), 'GH_ERR_JWT_KID_UNKNOWN'],
  // size and shape
  ['a token over 8 KiB', () => mint(rs, now(), { pad: 'x'.repeat(8500) }), 'GH_ERR_JWT_TOO_LARGE'],
  ['a token with two parts', () => mint(rs, now()).split('.').slice(0, 2).join('.'), 'GH_ERR_JWT_MALFORMED'],
  ['a token with four parts', () => `${mint(rs, now())}.e30`, 'GH_ERR_JWT_MALFORMED'],
  ['a token whose header is not JSON', () => `${Buffer.from('{alg:RS256}').toString('base64url')}.${mint(rs, now()).split('.').slice(1).join('.')}`, 'GH_ERR_JWT_MALFORMED'],
  ['a token whose payload is not JSON', () => signJws({ alg: 'RS256', kid: rs.kid }, 'hello', rs.privateKey), 'GH_ERR_JWT_MALFORMED'],
  ['a token with invalid base64url', () => mint(rs, now()).replace(/\.(.)/, '.~$1'), 'GH_ERR_JWT_MALFORMED'],
];

describe('hostile tokens get 401 invalid_token and never reach the upstream', () => {
  it.each(hostile)('refuses %s', async (_name, make, code) => {
    const r = await call('/orders', bearer(make()));
    expect(r.status).toBe(401);
    expect(r.body.code).toBe(code);
    expect(r.challenge).toMatch(/^Bearer realm="[^"]+", error="invalid_token"/);
    expect(r.text).not.toContain('eyJ'); // the body never echoes the token
    expect(r.reachedUpstream).toBe(false);
  });

  it("refuses a forgery that ends like a token the verified-token cache holds (its signature, other claims)", async () => {
    const real = mint(rs, now(), { sub: 'user-7' });
    expect((await call('/orders', bearer(real))).status).toBe(200); // now cached
    for (const change of [{ sub: 'admin' }, { scope: 'orders:read orders:write admin' }, { exp: nowS() + 86_400 }]) {
      const r = await call('/orders', bearer(withClaims(real, change)));
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('GH_ERR_JWT_SIGNATURE_INVALID');
      expect(r.reachedUpstream).toBe(false);
    }
    const again = await call('/orders', bearer(real)); // the forgeries did not evict the real entry
    expect(again.status).toBe(200);
    expect(again.upstreamRequest!.headers.authorization).toBe(`Bearer ${real}`);
  });

  it('refuses a malformed variant of a cached token with 400: the cache never answers for it', async () => {
    const real = mint(rs, now(), { sub: 'user-8' });
    expect((await call('/orders', bearer(real))).status).toBe(200); // now cached
    for (const value of [`Bearer ${real}"`, `Bearer ${real},x`, `Bearer "${real}`, `Bearer ${real} extra`, `Bearer ${real}=x`]) {
      const r = await call('/orders', { authorization: value });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('GH_ERR_AUTH_MALFORMED_HEADER');
      expect(r.reachedUpstream).toBe(false);
    }
    expect((await call('/orders', bearer(real))).status).toBe(200);
  });

  it('judges every header on its own, also after a good token of the same key had its header decoded and kept', async () => {
    const real = mint(rs, now(), { sub: 'user-9' });
    expect((await call('/orders', bearer(real))).status).toBe(200); // its header is now decoded and kept
    const [h, p, sig] = real.split('.') as [string, string, string];
    const header = (value: Record<string, unknown>) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const variants: [string, string][] = [
      [`${header({ alg: 'none', kid: rs.kid, typ: 'at+jwt' })}.${p}.${sig}`, 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
      [`${header({ alg: 'HS256', kid: rs.kid, typ: 'at+jwt' })}.${p}.${sig}`, 'GH_ERR_JWT_ALG_NOT_ALLOWED'],
      [`${header({ alg: 'RS256', kid: rs.kid, typ: 'at+jwt', jku: 'https://attacker.example/jwks' })}.${p}.${sig}`, 'GH_ERR_JWT_HEADER_NOT_ALLOWED'],
      [`${header({ alg: 'RS256', kid: rs.kid, typ: 'dpop+jwt' })}.${p}.${sig}`, 'GH_ERR_JWT_TYP_INVALID'],
      // The kept header's text with one character more: another key of the map, decoded on its own.
      [`${h}A.${p}.${sig}`, 'GH_ERR_JWT_MALFORMED'],
    ];
    for (const [token, code] of variants) {
      const r = await call('/orders', bearer(token));
      expect(r.status, token).toBe(401);
      expect(r.body.code, token).toBe(code);
      expect(r.reachedUpstream, token).toBe(false);
    }
    const again = await call('/orders', bearer(real));
    expect(again.status).toBe(200);
    expect(again.upstreamRequest!.headers.authorization).toBe(`Bearer ${real}`);
  });

  it('refuses a token of an issuer the route does not accept', async () => {
    const r = await call('/other-only', bearer(mint(rs, now())));
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('GH_ERR_JWT_ISSUER_NOT_ACCEPTED');
    expect(r.reachedUpstream).toBe(false);
  });

  it('logs the exact reason of a denial', async () => {
    await call('/orders', bearer(mint(rs, now(), { aud: 'https://nope.example' })));
    const line = gw.logs.findLast((l) => JSON.stringify(l).includes('GH_ERR_JWT_AUDIENCE_INVALID'));
    expect(JSON.stringify(line)).toContain('https://nope.example');
  });
});

describe('authorization at the gateway', () => {
  it('answers 403 insufficient_scope with the scopes the route needs', async () => {
    const r = await call('/orders', bearer(mint(rs, now(), { scope: 'profile' })));
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('GH_ERR_AUTHZ_INSUFFICIENT_SCOPE');
    expect(r.challenge).toMatch(/error="insufficient_scope"/);
    expect(r.challenge).toMatch(/scope="orders:read"/);
    expect(r.reachedUpstream).toBe(false);
  });

  it('accepts the scp array form', async () => {
    expect((await call('/orders', bearer(mint(rs, now(), { scope: undefined, scp: ['orders:read'] })))).status).toBe(200);
  });

  it('lets a user reach their own object (claims.sub == {userId})', async () => {
    expect((await call('/users/user-1', bearer(mint(rs, now())))).status).toBe(200);
  });

  it("refuses another user's object with 403 (BOLA)", async () => {
    const r = await call('/users/user-2', bearer(mint(rs, now())));
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('GH_ERR_AUTHZ_CLAIM_DENIED');
    expect(r.reachedUpstream).toBe(false);
  });

  it('checks the tenant claim against the X-Tenant header', async () => {
    const token = mint(rs, now(), { tenant: 'acme' });
    expect((await call('/tenant', { ...bearer(token), 'x-tenant': 'acme' })).status).toBe(200);
    const r = await call('/tenant', { ...bearer(token), 'x-tenant': 'globex' });
    expect(r.status).toBe(403);
    expect(r.body.detail ?? r.body.title).toBeDefined();
    expect(r.text).toContain('this token belongs to another tenant');
    const missing = await call('/tenant', bearer(token));
    expect(missing.status).toBe(403);
    expect(missing.reachedUpstream).toBe(false);
  });

  it('demands step-up (RFC 9470) when acr, amr or auth_time fall short', async () => {
    const r = await call('/payments', bearer(mint(rs, now(), { acr: 'urn:example:pwd', amr: ['pwd'], auth_time: nowS() })));
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('GH_ERR_AUTHZ_STEP_UP_REQUIRED');
    expect(r.challenge).toMatch(/error="insufficient_user_authentication"/);
    expect(r.challenge).toMatch(/acr_values="urn:example:mfa"/);
    expect(r.challenge).toMatch(/max_age=300/);
    expect(r.reachedUpstream).toBe(false);
    const old = await call('/payments', bearer(mint(rs, now(), { acr: 'urn:example:mfa', amr: ['pwd', 'mfa'], auth_time: nowS() - 3600 })));
    expect(old.status).toBe(401);
    expect(old.body.code).toBe('GH_ERR_AUTHZ_STEP_UP_REQUIRED');
  });

  it('lets a fresh MFA authentication through', async () => {
    const r = await call('/payments', bearer(mint(rs, now(), { acr: 'urn:example:mfa', amr: ['pwd', 'mfa'], auth_time: nowS() - 10 })));
    expect(r.status).toBe(200);
  });
});
