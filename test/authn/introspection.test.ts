import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { basicCredentials, createIntrospectionAuthenticator, type IntrospectionAuthenticator } from '../../src/authn/introspection.js';
import { acquireGatewayKeys } from '../../src/authn/gateway-keys.js';
import type { GatehouseConfig } from '../../src/config/types.js';
import type { AuthOutcome } from '../../src/pipeline/context.js';
import { ctxFor, opaqueConfig, selfSignedCertificate, startFakeIntrospection, testServices, type FakeIntrospection } from './introspection-fixtures.js';

let fake: FakeIntrospection;
const open: IntrospectionAuthenticator[] = [];

beforeAll(async () => {
  fake = await startFakeIntrospection();
});
afterAll(async () => {
  await fake.close();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((a) => a.close()));
  fake.seen.length = 0;
  fake.reply = () => ({ body: { active: false } });
});

const T0 = Date.UTC(2026, 0, 1);
const S0 = T0 / 1000;

async function setup(introspection = '', extra: Parameters<typeof opaqueConfig>[2] = {}) {
  const services = testServices(T0);
  const config = opaqueConfig(fake, introspection, extra);
  const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
  open.push(auth);
  await auth.start();
  return { services, config, auth };
}

function denied(outcome: AuthOutcome): string {
  if (outcome.kind !== 'denied') throw new Error(`expected a denial, got ${outcome.kind}`);
  return outcome.error.code;
}

function principal(outcome: AuthOutcome) {
  if (outcome.kind !== 'principal') throw new Error(`expected a principal, got ${outcome.kind}: ${outcome.kind === 'denied' ? outcome.error.code + ' ' + outcome.error.detail : ''}`);
  return outcome.principal;
}

const active = (extra: Record<string, unknown> = {}) => ({
  active: true,
  sub: 'alice',
  client_id: 'web',
  scope: 'orders:read profile',
  exp: S0 + 600,
  iat: S0 - 10,
  iss: fake.issuer,
  token_type: 'Bearer',
  ...extra,
});

async function jwksOf(config: GatehouseConfig) {
  const keys = acquireGatewayKeys(config);
  await keys.ready();
  const set = JSON.parse(keys.jwksJson(T0)) as { keys: JWK[] };
  keys.release();
  return createLocalJWKSet(set);
}

describe('refusals (each one: no principal, and the code says why)', () => {
  it('refuses a token the authorization server says is not active', async () => {
    const { auth, config } = await setup();
    expect(denied(await auth.authenticate('forged-token', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(fake.seen).toHaveLength(1);
  });

  it('caches an inactive answer briefly, so a replayed forged token costs no second call', async () => {
    const { auth, config, services } = await setup('negativeCacheTtl: 5s');
    expect(denied(await auth.authenticate('forged', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(denied(await auth.authenticate('forged', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(fake.seen).toHaveLength(1);
    services.clock.now += 5_001;
    expect(denied(await auth.authenticate('forged', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(fake.seen).toHaveLength(2);
  });

  it.each([
    ['an exp in the past', { exp: S0 - 120 }, 'GH_ERR_INTROSPECTION_EXPIRED'],
    ['an nbf in the future', { nbf: S0 + 3600 }, 'GH_ERR_INTROSPECTION_NOT_YET_VALID'],
    ['an iat in the future', { iat: S0 + 3600 }, 'GH_ERR_INTROSPECTION_NOT_YET_VALID'],
    ['an exp of the wrong JSON type', { exp: String(S0 + 600) }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['an aud naming none of the configured audiences', { aud: 'https://elsewhere.example' }, 'GH_ERR_INTROSPECTION_AUDIENCE_INVALID'],
    ['an aud array naming none of the configured audiences', { aud: ['a', 'b'] }, 'GH_ERR_INTROSPECTION_AUDIENCE_INVALID'],
    ['an iss of another issuer', { iss: 'https://evil.example' }, 'GH_ERR_INTROSPECTION_ISSUER_INVALID'],
    ['a token_type that is not an access token', { token_type: 'refresh_token' }, 'GH_ERR_INTROSPECTION_TOKEN_TYPE_INVALID'],
    ['token_type DPoP without cnf.jkt (the bound key is unknown)', { token_type: 'DPoP' }, 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED'],
    ['a cnf jkt that is not a thumbprint', { cnf: { jkt: 'abc' } }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['a DPoP-bound token (cnf.jkt) sent in the Bearer scheme', { token_type: 'DPoP', cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } }, 'GH_ERR_DPOP_SCHEME_MISMATCH'],
    ['a binding it cannot check (cnf.jwk)', { cnf: { jwk: { kty: 'EC' } } }, 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED'],
    ['a certificate-bound token sent without that certificate', { cnf: { 'x5t#S256': 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2' } }, 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED'],
    ['a cnf that is an array (not a JSON object)', { cnf: [{ 'x5t#S256': 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2' }] }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['a cnf x5t#S256 that is not a thumbprint', { cnf: { 'x5t#S256': 42 } }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
  ])('refuses an active answer with %s', async (_name, claims, code) => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active(claims) });
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe(code);
  });

  it('accepts a certificate-bound token (RFC 8705) sent with that very certificate, and only with it', async () => {
    const { createHash } = await import('node:crypto');
    const der = Buffer.from('a client certificate in DER form');
    const thumbprint = createHash('sha256').update(der).digest('base64url');
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active({ cnf: { 'x5t#S256': thumbprint } }) });
    const withCert = { ...ctxFor(config), clientCertificate: { raw: der } as never };
    principal(await auth.authenticate('bound', withCert));
    const otherCert = { ...ctxFor(config), clientCertificate: { raw: Buffer.from('another certificate') } as never };
    expect(denied(await auth.authenticate('bound', otherCert))).toBe('GH_ERR_INTROSPECTION_SENDER_CONSTRAINED');
    expect(denied(await auth.authenticate('bound', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_SENDER_CONSTRAINED');
    expect(fake.seen).toHaveLength(1);
  });

  it('keeps the precise code of a refusal while it is cached', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active({ aud: 'https://elsewhere.example' }) });
    expect(denied(await auth.authenticate('wrong-aud', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_AUDIENCE_INVALID');
    expect(denied(await auth.authenticate('wrong-aud', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_AUDIENCE_INVALID');
    expect(fake.seen).toHaveLength(1);
  });

  it('accepts an aud that names a configured audience', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active({ aud: ['https://x.example', 'https://api.example.com'] }) });
    principal(await auth.authenticate('tok', ctxFor(config)));
  });

  it('refuses a token that is not b64token syntax or too large, without calling out', async () => {
    const { auth, config } = await setup();
    expect(denied(await auth.authenticate('two words', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_TOKEN_MALFORMED');
    expect(denied(await auth.authenticate('a'.repeat(9000), ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_TOKEN_MALFORMED');
    expect(fake.seen).toHaveLength(0);
  });

  it('takes a 400 from the endpoint (e.g. unsupported_token_type for a JWT-shaped string) as not active', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ status: 400, body: { error: 'unsupported_token_type' } });
    expect(denied(await auth.authenticate('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
  });
});

describe('faults: never a pass', () => {
  it.each([
    ['answers 500', { status: 500, body: 'oops', type: 'text/plain' }, 'GH_ERR_INTROSPECTION_UNAVAILABLE'],
    ['answers 429 (rate limited)', { status: 429, body: {} }, 'GH_ERR_INTROSPECTION_UNAVAILABLE'],
    ['answers 403', { status: 403, body: {} }, 'GH_ERR_INTROSPECTION_UNAVAILABLE'],
    ['answers 200 with a JWT nobody asked for', { body: 'eyJ.eyJ.sig', type: 'application/jwt' }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['refuses the gateway credentials (401)', { status: 401, body: { error: 'invalid_client' } }, 'GH_ERR_INTROSPECTION_UNAVAILABLE'],
    ['answers 400 invalid_client', { status: 400, body: { error: 'invalid_client' } }, 'GH_ERR_INTROSPECTION_UNAVAILABLE'],
    ['answers something that is not JSON', { body: '<html>', type: 'text/html' }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['answers JSON without a boolean active', { body: { active: 'true', sub: 'alice' } }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['answers a JSON array', { body: [{ active: true }] as unknown as object }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
    ['answers with a redirect', { status: 302, body: {} }, 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'],
  ])('answers 503 with Retry-After when the endpoint %s', async (_name, reply, code) => {
    const { auth, config } = await setup();
    fake.reply = () => reply as never;
    const outcome = await auth.authenticate('tok', ctxFor(config));
    expect(denied(outcome)).toBe(code);
    if (outcome.kind === 'denied') {
      expect(outcome.error.status).toBe(503);
      expect(Number(outcome.error.headers?.['retry-after'])).toBeGreaterThan(0);
    }
  });

  it('answers 503 when the endpoint does not answer in time, and recovers by itself', async () => {
    const { auth, config } = await setup('timeout: 200ms');
    fake.reply = () => ({ hang: true });
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
    fake.reply = () => ({ body: active() });
    principal(await auth.authenticate('tok', ctxFor(config)));
  });

  it('logs an outage once per 10 s, not once per failed request', async () => {
    const { auth, config, services } = await setup();
    fake.reply = () => ({ status: 500, body: {} });
    await auth.authenticate('a', ctxFor(config));
    await auth.authenticate('b', ctxFor(config));
    services.clock.now += 2_001; // past the fast-fail pause
    await auth.authenticate('c', ctxFor(config));
    const warned = () => services.logs.filter((l) => l.msg === 'introspection failed');
    expect(warned()).toHaveLength(1);
    services.clock.now += 10_000;
    await auth.authenticate('d', ctxFor(config));
    expect(warned()).toHaveLength(2);
    expect(warned()[1]).toMatchObject({ since: 3 });
  });

  it('answers 503 when the response is larger than maxResponseSize', async () => {
    const { auth, config } = await setup('', { issuer: 'maxResponseSize: 1kb' });
    fake.reply = () => ({ body: active({ padding: 'x'.repeat(5000) }) });
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
  });

  it('answers 503 at once beyond 256 distinct tokens in flight, instead of queueing them', async () => {
    const { auth, config } = await setup();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    fake.reply = async () => {
      await gate;
      return { body: { active: false } };
    };
    const pending = Array.from({ length: 256 }, (_, i) => auth.authenticate(`flood-${i}`, ctxFor(config)));
    expect(denied(await auth.authenticate('one-too-many', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
    release();
    const outcomes = await Promise.all(pending);
    expect(outcomes.every((o) => o.kind === 'denied' && o.error.code === 'GH_ERR_INTROSPECTION_INACTIVE')).toBe(true);
  });

  it('answers 503 when nothing listens at the endpoint', async () => {
    const services = testServices(T0);
    const config = opaqueConfig({ issuer: fake.issuer, url: 'http://127.0.0.1:1/introspect' }, '');
    const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    open.push(auth);
    const outcome = await auth.authenticate('tok', ctxFor(config));
    expect(denied(outcome)).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
  });

  it('fails fast after repeated failures, and tries again after a short pause', async () => {
    const { auth, config, services } = await setup();
    fake.reply = () => ({ status: 503, body: {} });
    for (let i = 0; i < 3; i++) await auth.authenticate(`t${i}`, ctxFor(config));
    expect(fake.seen).toHaveLength(3);
    expect(denied(await auth.authenticate('t4', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
    expect(fake.seen).toHaveLength(3);
    fake.reply = () => ({ body: active() });
    services.clock.now += 2_001;
    principal(await auth.authenticate('t5', ctxFor(config)));
  });
});

describe('TLS to the introspection endpoint', () => {
  it('verifies the certificate: untrusted → 503, trusted through tls.ca → works', async () => {
    const certificate = selfSignedCertificate();
    const secure = await startFakeIntrospection(certificate);
    try {
      secure.reply = () => ({ body: active({ iss: secure.issuer }) });
      const untrusted = opaqueConfig(secure, '');
      const a = createIntrospectionAuthenticator(untrusted.issuers[0]!, untrusted, testServices(T0));
      open.push(a);
      expect(denied(await a.authenticate('tok', ctxFor(untrusted)))).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
      expect(secure.seen).toHaveLength(0);
      const trusted = opaqueConfig(secure, '', { issuer: `tls: { ca: ${certificate.certFile} }` });
      const b = createIntrospectionAuthenticator(trusted.issuers[0]!, trusted, testServices(T0));
      open.push(b);
      principal(await b.authenticate('tok', ctxFor(trusted)));
      expect(secure.seen).toHaveLength(1);
    } finally {
      await secure.close();
    }
  });
});

describe('the request to the introspection endpoint (RFC 7662 §2.1)', () => {
  it('POSTs token and token_type_hint with client_secret_basic, id and secret form-urlencoded first (RFC 6749 §2.3.1)', async () => {
    const { auth, config } = await setup('authMethod: client_secret_basic');
    await auth.authenticate('abc.DEF-123', ctxFor(config));
    const seen = fake.seen[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(seen.headers.accept).toBe('application/json');
    expect(seen.form.get('token')).toBe('abc.DEF-123');
    expect(seen.form.get('token_type_hint')).toBe('access_token');
    expect(seen.form.has('client_secret')).toBe(false);
    expect(seen.headers.authorization).toBe(`Basic ${Buffer.from('gateway:s3cret').toString('base64')}`);
  });

  it('form-urlencodes a client id and secret with reserved characters before base64', () => {
    const header = basicCredentials('my client', 'p:a%s&s');
    expect(Buffer.from(header.slice(6), 'base64').toString()).toBe('my+client:p%3Aa%25s%26s');
  });

  it('sends client_secret_post credentials in the body and no Authorization header', async () => {
    const { auth, config } = await setup('authMethod: client_secret_post');
    await auth.authenticate('tok', ctxFor(config));
    const seen = fake.seen[0]!;
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.form.get('client_id')).toBe('gateway');
    expect(seen.form.get('client_secret')).toBe('s3cret');
  });

  it('signs a fresh private_key_jwt client assertion for every call (RFC 7523)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid: 'gw-1' });
    const services = testServices(T0);
    const config = opaqueConfig(fake, `authMethod: private_key_jwt, privateKey: '${jwk}'`);
    const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    open.push(auth);
    await auth.authenticate('tok1', ctxFor(config));
    await auth.authenticate('tok2', ctxFor(config));
    const [a, b] = fake.seen;
    expect(a!.headers.authorization).toBeUndefined();
    expect(a!.form.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    const assertion = a!.form.get('client_assertion')!;
    expect(decodeProtectedHeader(assertion)).toMatchObject({ alg: 'ES256', kid: 'gw-1' });
    const { payload } = await jwtVerify(assertion, publicKey, { issuer: 'gateway', subject: 'gateway', audience: fake.issuer });
    expect(payload.jti).toBeTruthy();
    expect(b!.form.get('client_assertion')).not.toBe(assertion);
  });

  it('refuses to build a signed-answer mode without a source of issuer keys', () => {
    const config = opaqueConfig(fake, 'accept: application/jwt');
    expect(() => createIntrospectionAuthenticator(config.issuers[0]!, config, testServices(T0))).toThrow(/jwksUri, or discovery/);
  });

  it('refuses to build with an unreadable private_key_jwt key or TLS file (a config error, nothing left open)', () => {
    const services = testServices(T0);
    const missingKey = opaqueConfig(fake, 'authMethod: private_key_jwt, privateKey: absent.pem');
    expect(() => createIntrospectionAuthenticator(missingKey.issuers[0]!, missingKey, services)).toThrow(/^privateKey \/.*\/absent\.pem does not exist$/);
    const notAKey = opaqueConfig(fake, `authMethod: private_key_jwt, privateKey: '{"kty":"EC","crv":"P-256"}'`);
    expect(() => createIntrospectionAuthenticator(notAKey.issuers[0]!, notAKey, services)).toThrow(/^privateKey \(inline JWK\) is not a private key in PEM or JWK form/);
    const missingCa = opaqueConfig(fake, '', { issuer: 'tls: { ca: absent-ca.pem }' });
    expect(() => createIntrospectionAuthenticator(missingCa.issuers[0]!, missingCa, services)).toThrow(/absent-ca\.pem|ENOENT/);
  });

  it('finds the endpoint by discovery (introspection_endpoint) when discovery: true', async () => {
    const metadata = await startFakeIntrospection();
    try {
      const services = testServices(T0);
      const yamlIssuer = { issuer: metadata.issuer, url: fake.url };
      metadata.reply = () => ({ body: { issuer: metadata.issuer, introspection_endpoint: fake.url, jwks_uri: `${metadata.issuer}/jwks` } });
      const config = opaqueConfig(yamlIssuer, '', { issuer: 'discovery: true' });
      delete config.issuers[0]!.introspection!.endpoint;
      const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
      open.push(auth);
      await auth.start();
      expect(auth.readiness().ready).toBe(true);
      fake.reply = () => ({ body: active({ iss: metadata.issuer }) });
      principal(await auth.authenticate('tok', ctxFor(config)));
      expect(fake.seen).toHaveLength(1);
      expect(metadata.seen[0]!.url).toBe('/.well-known/openid-configuration');
    } finally {
      await metadata.close();
    }
  });
});

describe('the principal and the minted JWT', () => {
  it('gives the upstream a JWT signed by the gateway: iss, aud of the upstream, sub, scope, client_id, jti, exp ≤ the opaque token', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active({ exp: S0 + 120 }) });
    const p = principal(await auth.authenticate('opaque-1', ctxFor(config)));
    expect(p.kind).toBe('introspection');
    expect(p.issuer).toBe('opaque');
    expect(p.subject).toBe('alice');
    expect([...p.scopes]).toEqual(['orders:read', 'profile']);
    expect(p.upstreamToken).not.toContain('opaque-1');
    const header = decodeProtectedHeader(p.upstreamToken);
    expect(header).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    const { payload } = await jwtVerify(p.upstreamToken, await jwksOf(config), {
      issuer: 'https://gatehouse.internal',
      audience: 'https://orders.internal',
      currentDate: new Date(T0),
      typ: 'at+jwt',
    });
    expect(payload).toMatchObject({ sub: 'alice', scope: 'orders:read profile', client_id: 'web', iat: S0, exp: S0 + 120 });
    expect(typeof payload.jti).toBe('string');
  });

  it('carries the other claims of the answer (acr, a tenant) but not active, token_type, cnf or the AS iss/jti', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active({ tenant: 'acme', acr: 'mfa', jti: 'as-jti', aud: 'https://api.example.com', cnf: {} }) });
    const p = principal(await auth.authenticate('opaque-claims', ctxFor(config)));
    const { payload } = await jwtVerify(p.upstreamToken, await jwksOf(config), { currentDate: new Date(T0) });
    expect(payload).toMatchObject({ tenant: 'acme', acr: 'mfa', iss: 'https://gatehouse.internal', aud: 'https://orders.internal' });
    expect(payload.jti).not.toBe('as-jti');
    for (const name of ['active', 'token_type', 'cnf']) expect(payload).not.toHaveProperty(name);
  });

  it('caps the minted JWT at gateway.tokenTtl', async () => {
    const { auth, config } = await setup('', { top: '' });
    fake.reply = () => ({ body: active({ exp: S0 + 86_400 }) });
    const p = principal(await auth.authenticate('opaque-2', ctxFor(config)));
    const { payload } = await jwtVerify(p.upstreamToken, await jwksOf(config), { currentDate: new Date(T0) });
    expect(payload.exp).toBe(S0 + 300);
  });

  it('uses the issuer first audience for an upstream without its own audience, and sub = client_id for a client token', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active({ sub: undefined }) });
    const p = principal(await auth.authenticate('opaque-3', ctxFor(config, 'other')));
    const { payload } = await jwtVerify(p.upstreamToken, await jwksOf(config), { currentDate: new Date(T0), audience: 'https://api.example.com' });
    expect(payload.sub).toBe('web');
    expect(p.subject).toBe('web');
  });
});

describe('cache and single flight', () => {
  it('makes no further call while the answer is cached, and calls again after cacheTtl', async () => {
    const { auth, config, services } = await setup('cacheTtl: 60s');
    fake.reply = () => ({ body: active() });
    const first = principal(await auth.authenticate('tok', ctxFor(config)));
    const second = principal(await auth.authenticate('tok', ctxFor(config)));
    expect(fake.seen).toHaveLength(1);
    expect(second.upstreamToken).toBe(first.upstreamToken);
    services.clock.now += 59_000;
    principal(await auth.authenticate('tok', ctxFor(config)));
    expect(fake.seen).toHaveLength(1);
    services.clock.now += 1_001;
    principal(await auth.authenticate('tok', ctxFor(config)));
    expect(fake.seen).toHaveLength(2);
  });

  it('keeps an entry no longer than the token exp when that comes first', async () => {
    const { auth, config, services } = await setup('cacheTtl: 10m');
    fake.reply = () => ({ body: active({ exp: S0 + 30 }) });
    principal(await auth.authenticate('tok', ctxFor(config)));
    services.clock.now += 30_000;
    fake.reply = () => ({ body: { active: false } });
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
    expect(fake.seen).toHaveLength(2);
  });

  it('calls every time with cacheTtl: 0', async () => {
    const { auth, config } = await setup('cacheTtl: 0');
    fake.reply = () => ({ body: active() });
    for (let i = 0; i < 3; i++) principal(await auth.authenticate('tok', ctxFor(config)));
    expect(fake.seen).toHaveLength(3);
  });

  it('makes ONE call for concurrent requests with the same uncached token', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active(), delay: 100 });
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => auth.authenticate('same', ctxFor(config))));
    expect(outcomes.every((o) => o.kind === 'principal')).toBe(true);
    expect(fake.seen).toHaveLength(1);
  });

  it('makes ONE call for concurrent requests even with cacheTtl: 0', async () => {
    const { auth, config } = await setup('cacheTtl: 0');
    fake.reply = () => ({ body: active(), delay: 100 });
    await Promise.all(Array.from({ length: 5 }, () => auth.authenticate('same', ctxFor(config))));
    expect(fake.seen).toHaveLength(1);
  });

  it('mints one JWT per upstream audience from one introspection', async () => {
    const { auth, config } = await setup();
    fake.reply = () => ({ body: active() });
    const a = principal(await auth.authenticate('tok', ctxFor(config, 'orders')));
    const b = principal(await auth.authenticate('tok', ctxFor(config, 'other')));
    expect(fake.seen).toHaveLength(1);
    expect(a.upstreamToken).not.toBe(b.upstreamToken);
    const jwks = await jwksOf(config);
    await jwtVerify(a.upstreamToken, jwks, { audience: 'https://orders.internal', currentDate: new Date(T0) });
    await jwtVerify(b.upstreamToken, jwks, { audience: 'https://api.example.com', currentDate: new Date(T0) });
  });

  it('re-mints before a cached JWT runs out when gateway.tokenTtl is shorter than cacheTtl', async () => {
    const { auth, config, services } = await setup('cacheTtl: 10m', { top: '' });
    config.gateway.tokenTtl = 60_000;
    const auth2 = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    open.push(auth2);
    void auth;
    fake.reply = () => ({ body: active({ exp: S0 + 3600 }) });
    const first = principal(await auth2.authenticate('tok', ctxFor(config)));
    services.clock.now += 55_000;
    const second = principal(await auth2.authenticate('tok', ctxFor(config)));
    expect(second.upstreamToken).not.toBe(first.upstreamToken);
    const { payload } = await jwtVerify(second.upstreamToken, await jwksOf(config), { currentDate: new Date(services.clock.now) });
    expect(payload.exp).toBeGreaterThan(services.clock.now / 1000 + 30);
    // Re-minted from the cached answer: no second introspection.
    expect(fake.seen).toHaveLength(1);
  });
});

describe('signed answers, verified with the issuer keys', () => {
  const asKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = { keys: [{ ...(asKey.publicKey.export({ format: 'jwk' }) as JWK), kid: 'as-1', alg: 'ES256', use: 'sig' }] };

  async function sign(payload: Record<string, unknown>, typ: string, key = asKey.privateKey): Promise<string> {
    const { SignJWT } = await import('jose');
    return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'as-1', typ }).sign(key);
  }

  async function signedSetup(accept: string) {
    const services = testServices(T0);
    const config = opaqueConfig(fake, `accept: ${accept}`, { issuer: `jwksUri: ${fake.issuer}/jwks` });
    const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    open.push(auth);
    return { auth, config };
  }

  function serve(answer: () => Promise<{ status?: number; type?: string; body?: string | object }>) {
    fake.reply = async (_form, req) => (req.url === '/jwks' ? { body: jwks } : answer());
  }

  const rfc9701 = (inner: Record<string, unknown>, over: Record<string, unknown> = {}) => ({
    iss: fake.issuer,
    aud: 'gateway',
    iat: S0,
    token_introspection: inner,
    ...over,
  });

  it('RFC 9701: accepts a signed answer and mints the upstream JWT', async () => {
    const { auth, config } = await signedSetup('application/token-introspection+jwt');
    serve(async () => ({ type: 'application/token-introspection+jwt', body: await sign(rfc9701(active()), 'token-introspection+jwt') }));
    const p = principal(await auth.authenticate('tok', ctxFor(config)));
    const { payload } = await jwtVerify(p.upstreamToken, await jwksOf(config), { issuer: 'https://gatehouse.internal', currentDate: new Date(T0) });
    expect(payload.sub).toBe('alice');
    const call = fake.seen.find((r) => r.url === '/introspect')!;
    expect(call.headers.accept).toBe('application/token-introspection+jwt');
  });

  it.each([
    ['signed with a key that is not the issuer key', async () => sign(rfc9701(active()), 'token-introspection+jwt', otherKey.privateKey)],
    ['with another typ (an access token is not an introspection answer)', async () => sign(rfc9701(active()), 'at+jwt')],
    ['addressed to another client', async () => sign(rfc9701(active(), { aud: 'someone-else' }), 'token-introspection+jwt')],
    ['from another issuer', async () => sign(rfc9701(active(), { iss: 'https://evil.example' }), 'token-introspection+jwt')],
    ['without token_introspection', async () => sign(rfc9701(active(), { token_introspection: undefined }), 'token-introspection+jwt')],
  ])('RFC 9701: refuses (503, never a pass) an answer %s', async (_name, make) => {
    const { auth, config } = await signedSetup('application/token-introspection+jwt');
    const body = await make();
    serve(async () => ({ type: 'application/token-introspection+jwt', body }));
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INVALID_RESPONSE');
  });

  it('RFC 9701: a signed inactive answer is 401', async () => {
    const { auth, config } = await signedSetup('application/token-introspection+jwt');
    serve(async () => ({ type: 'application/token-introspection+jwt', body: await sign(rfc9701({ active: false }), 'token-introspection+jwt') }));
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
  });

  it('RFC 9701: refuses a plain JSON answer when a signed one was asked for', async () => {
    const { auth, config } = await signedSetup('application/token-introspection+jwt');
    serve(async () => ({ body: active() }));
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INVALID_RESPONSE');
  });

  const accessToken = (over: Record<string, unknown> = {}) => ({
    iss: fake.issuer,
    aud: 'https://api.example.com',
    sub: 'alice',
    scope: 'orders:read',
    client_id: 'web',
    iat: S0,
    exp: S0 + 300,
    ...over,
  });

  it('application/jwt: forwards the verified JWT of the authorization server as it is', async () => {
    const { auth, config } = await signedSetup('application/jwt');
    const jwt = await sign(accessToken(), 'at+jwt');
    serve(async () => ({ type: 'application/jwt', body: jwt }));
    const p = principal(await auth.authenticate('tok', ctxFor(config)));
    expect(p.upstreamToken).toBe(jwt);
    expect([...p.scopes]).toEqual(['orders:read']);
  });

  it.each([
    ['a JWT signed with another key', async () => sign(accessToken(), 'at+jwt', otherKey.privateKey), 'GH_ERR_JWT_SIGNATURE_INVALID'],
    ['an expired JWT', async () => sign(accessToken({ iat: S0 - 7200, exp: S0 - 3600 }), 'at+jwt'), 'GH_ERR_JWT_EXPIRED'],
    ['a JWT for another audience', async () => sign(accessToken({ aud: 'https://elsewhere' }), 'at+jwt'), 'GH_ERR_JWT_AUDIENCE_INVALID'],
  ])('application/jwt: refuses %s', async (_name, make, code) => {
    const { auth, config } = await signedSetup('application/jwt');
    const body = await make();
    serve(async () => ({ type: 'application/jwt', body }));
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe(code);
  });

  it('application/jwt: 204 means not active', async () => {
    const { auth, config } = await signedSetup('application/jwt');
    serve(async () => ({ status: 204, body: '' }));
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_INACTIVE');
  });
});

describe('readiness', () => {
  it('starts without its signing keys, reports not ready, and answers 503 instead of forwarding', async () => {
    const services = testServices(T0);
    const config = opaqueConfig(fake, '');
    config.gateway.keyDirectory = '/dev/null/keys';
    const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    open.push(auth);
    await auth.start();
    expect(auth.readiness().ready).toBe(false);
    fake.reply = () => ({ body: active() });
    const outcome = await auth.authenticate('tok', ctxFor(config));
    expect(denied(outcome)).toBe('GH_ERR_NOT_READY');
    if (outcome.kind === 'denied') expect(outcome.error.status).toBe(503);
  });

  it('is ready with a configured endpoint and loaded keys, and reports the last failure', async () => {
    const { auth, config } = await setup();
    expect(auth.readiness().ready).toBe(true);
    fake.reply = () => ({ status: 500, body: {} });
    await auth.authenticate('tok', ctxFor(config));
    const r = auth.readiness();
    expect(r.details).toMatchObject({ consecutiveFailures: 1 });
    expect(String(r.details!.lastError)).toMatch(/500/);
  });

  it('is not ready while discovery has not found the endpoint', async () => {
    const services = testServices(T0);
    const config = opaqueConfig({ issuer: 'http://127.0.0.1:1', url: 'http://127.0.0.1:1/x' }, '', { issuer: 'discovery: true\n    fetchTimeout: 200ms' });
    delete config.issuers[0]!.introspection!.endpoint;
    const auth = createIntrospectionAuthenticator(config.issuers[0]!, config, services);
    open.push(auth);
    await auth.start();
    expect(auth.readiness().ready).toBe(false);
    expect(denied(await auth.authenticate('tok', ctxFor(config)))).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
  });
});
