import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  type JSONWebKeySet,
} from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  AuthorizationServerError,
  codeFlow,
  CookieJar,
  DEMO_CLIENT_SECRETS,
  demoClients,
  followDevPages,
  pkcePair,
  startAuthorizationServer,
  type AuthorizationServer,
  type SigningAlg,
} from '../helpers/issuer.js';

const AUDIENCE = 'https://api.example.com';
const REDIRECT = 'http://127.0.0.1:1/callback';
const POST_LOGOUT = 'http://127.0.0.1:1/';
const S = DEMO_CLIENT_SECRETS;

async function publicJwks(as: AuthorizationServer): Promise<JSONWebKeySet> {
  const res = await fetch(as.jwksUri);
  expect(res.status).toBe(200);
  return (await res.json()) as JSONWebKeySet;
}

async function expectOAuthError(promise: Promise<unknown>, error: string): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(AuthorizationServerError);
  await promise.catch((e: AuthorizationServerError) => expect(e.error).toBe(error));
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
}

describe('development authorization server', () => {
  let as: AuthorizationServer;

  beforeAll(async () => {
    as = await startAuthorizationServer({
      clients: demoClients(REDIRECT, POST_LOGOUT),
      accessTokenTtl: 120,
      accounts: {
        alice: { tenant: 'acme', email: 'alice@example.com', email_verified: true, acr: 'urn:example:mfa', amr: ['pwd', 'otp'] },
        'demo-client': { tenant: 'acme' },
      },
    });
  });
  afterAll(async () => {
    await as.stop();
  });

  describe('client credentials', () => {
    test('refuses a wrong client secret', async () => {
      await expectOAuthError(as.clientCredentialsToken('demo-client', 'wrong-secret', 'orders:read'), 'invalid_client');
    });

    test('refuses a scope the client is not registered for', async () => {
      await expectOAuthError(as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:write'), 'invalid_scope');
    });

    test('refuses a resource indicator it does not serve', async () => {
      await expectOAuthError(
        as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read', { resource: 'https://other.example.com' }),
        'invalid_target',
      );
    });

    test('issues an RFC 9068 JWT access token that verifies against the JWKS', async () => {
      const response = await as.clientCredentialsGrant('demo-client', S['demo-client'], 'orders:read');
      expect(response).toMatchObject({ token_type: 'Bearer', expires_in: 120, scope: 'orders:read' });
      const { payload, protectedHeader } = await jwtVerify(response.access_token, createRemoteJWKSet(new URL(as.jwksUri)), {
        issuer: as.issuer,
        audience: AUDIENCE,
        typ: 'at+jwt',
        algorithms: ['RS256'],
      });
      expect(protectedHeader.kid).toBe(as.kid);
      expect(payload).toMatchObject({ sub: 'demo-client', client_id: 'demo-client', scope: 'orders:read', aud: AUDIENCE, tenant: 'acme' });
      expect(typeof payload.jti).toBe('string');
      expect(payload.exp! - payload.iat!).toBe(120);
    });

    test('gives a client with both scopes a token with both', async () => {
      const token = await as.clientCredentialsToken('demo-admin', S['demo-admin'], 'orders:read orders:write');
      const { payload } = await jwtVerify(token, createLocalJWKSet(await publicJwks(as)), { issuer: as.issuer, audience: AUDIENCE });
      expect(payload.scope).toBe('orders:read orders:write');
    });

    test('requests the client’s registered scopes when none are given', async () => {
      const response = await as.clientCredentialsGrant('demo-admin', S['demo-admin']);
      expect(response.scope).toBe('orders:read orders:write');
    });

    test('issues opaque tokens to a client registered for them', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      expect(token.split('.')).toHaveLength(1);
    });

    test('publishes only public keys in the JWKS', async () => {
      const { keys } = await publicJwks(as);
      expect(keys).toHaveLength(1);
      expect(keys[0]).toMatchObject({ kid: as.kid, use: 'sig', alg: 'RS256', kty: 'RSA' });
      for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(keys[0]).not.toHaveProperty(priv);
    });

    test('publishes a discovery document naming every endpoint', async () => {
      const res = await fetch(as.discoveryUri);
      const doc = (await res.json()) as Record<string, unknown>;
      expect(doc).toMatchObject({
        issuer: as.issuer,
        jwks_uri: as.jwksUri,
        token_endpoint: as.tokenEndpoint,
        introspection_endpoint: as.introspectionEndpoint,
        revocation_endpoint: as.revocationEndpoint,
        authorization_endpoint: as.authorizationEndpoint,
        end_session_endpoint: as.endSessionEndpoint,
      });
      expect(doc['code_challenge_methods_supported']).toEqual(['S256']);
    });
  });

  describe('introspection and revocation', () => {
    test('refuses introspection by a client with a wrong secret', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      await expectOAuthError(as.introspect(token, 'gateway', 'wrong'), 'invalid_client');
    });

    test('says a forged opaque token is inactive', async () => {
      expect(await as.introspect('forged-token-value-that-was-never-issued', 'gateway', S.gateway)).toEqual({ active: false });
    });

    test('introspects an opaque token as active, then inactive once revoked', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      const info = await as.introspect(token, 'gateway', S.gateway);
      expect(info).toMatchObject({
        active: true,
        iss: as.issuer,
        aud: AUDIENCE,
        client_id: 'demo-opaque',
        sub: 'demo-opaque',
        scope: 'orders:read',
        token_type: 'Bearer',
      });
      expect(typeof info['exp']).toBe('number');
      await as.revoke(token, 'demo-opaque', S['demo-opaque']);
      expect(await as.introspect(token, 'gateway', S.gateway)).toEqual({ active: false });
    });

    test('refuses to introspect a structured (JWT) token', async () => {
      const jwt = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
      await expectOAuthError(as.introspect(jwt, 'gateway', S.gateway), 'unsupported_token_type');
    });

    test('refuses revocation by a client the token was not issued to', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      await expectOAuthError(as.revoke(token, 'demo-client', S['demo-client']), 'invalid_request');
      expect(await as.introspect(token, 'gateway', S.gateway)).toMatchObject({ active: true });
    });

    test('answers RFC 9701 signed introspection responses when asked', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      const res = await fetch(as.introspectionEndpoint, {
        method: 'POST',
        headers: {
          authorization: basic('gateway', S.gateway),
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/token-introspection+jwt',
        },
        body: new URLSearchParams({ token }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/token-introspection\+jwt/);
      const { payload } = await jwtVerify(await res.text(), createLocalJWKSet(await publicJwks(as)), {
        issuer: as.issuer,
        typ: 'token-introspection+jwt',
      });
      expect(payload.aud).toBe('gateway');
      expect(payload['token_introspection']).toMatchObject({ active: true, client_id: 'demo-opaque', scope: 'orders:read', aud: AUDIENCE });
    });
  });

  describe('phantom-token convention (Accept: application/jwt)', () => {
    async function introspectAsJwt(token: string, accept = 'application/jwt'): Promise<Response> {
      return fetch(as.introspectionEndpoint, {
        method: 'POST',
        headers: { authorization: basic('gateway', S.gateway), 'content-type': 'application/x-www-form-urlencoded', accept },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
      });
    }

    test('still authenticates the introspecting client', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      const res = await fetch(as.introspectionEndpoint, {
        method: 'POST',
        headers: { authorization: basic('gateway', 'wrong'), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/jwt' },
        body: new URLSearchParams({ token }),
      });
      expect(res.status).toBe(401);
    });

    test('answers 204 for an inactive token', async () => {
      const res = await introspectAsJwt('never-issued');
      expect(res.status).toBe(204);
    });

    test('answers the opaque token in RFC 9068 JWT form, never echoing the opaque value', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      const res = await introspectAsJwt(token);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/jwt/);
      const jwt = await res.text();
      expect(jwt).not.toContain(token);
      const { payload } = await jwtVerify(jwt, createLocalJWKSet(await publicJwks(as)), {
        issuer: as.issuer,
        audience: AUDIENCE,
        typ: 'at+jwt',
      });
      expect(payload).toMatchObject({ sub: 'demo-opaque', client_id: 'demo-opaque', scope: 'orders:read' });
      expect(payload).not.toHaveProperty('active');
      expect(payload.jti).not.toBe(token);
      expect(typeof payload.exp).toBe('number');
    });

    test('keeps plain JSON when application/jwt is only one of several accepted types', async () => {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      const res = await introspectAsJwt(token, 'application/json, application/jwt');
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    });
  });

  describe('test controls', () => {
    test('counts requests per endpoint', async () => {
      as.resetCounts();
      await fetch(as.jwksUri);
      await fetch(as.jwksUri);
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      await as.introspect(token, 'gateway', S.gateway);
      await fetch(as.discoveryUri);
      expect(as.counts).toMatchObject({ jwks: 2, token: 1, introspection: 1, discovery: 1, revocation: 0 });
    });

    test('setDown makes every endpoint answer 503, and recovers', async () => {
      as.setDown(true);
      try {
        for (const url of [as.jwksUri, as.discoveryUri]) {
          const res = await fetch(url);
          expect(res.status).toBe(503);
          expect(res.headers.get('retry-after')).toBe('1');
        }
        await expectOAuthError(as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read'), 'temporarily_unavailable');
      } finally {
        as.setDown(false);
      }
      expect((await fetch(as.jwksUri)).status).toBe(200);
    });

    test('setDown with `only` takes down just those endpoints', async () => {
      as.setDown(true, 'unavailable', ['jwks']);
      try {
        expect((await fetch(as.jwksUri)).status).toBe(503);
        expect((await fetch(as.discoveryUri)).status).toBe(200);
        await expect(as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read')).resolves.toBeTruthy();
      } finally {
        as.setDown(false);
      }
    });

    test('setDown in reset mode drops the connection', async () => {
      as.setDown(true, 'reset');
      try {
        await expect(fetch(as.jwksUri)).rejects.toThrow();
      } finally {
        as.setDown(false);
      }
    });

    test('setDown in hang mode never answers (callers time out)', async () => {
      as.setDown(true, 'hang');
      try {
        await expect(fetch(as.jwksUri, { signal: AbortSignal.timeout(150) })).rejects.toThrow();
      } finally {
        as.setDown(false);
      }
      expect((await fetch(as.jwksUri)).status).toBe(200);
    });

    test('setLatency delays answers but still answers', async () => {
      as.setLatency(20, ['jwks']);
      try {
        expect((await fetch(as.jwksUri)).status).toBe(200);
      } finally {
        as.setLatency(0);
      }
    });

    test('counts requests while down too', async () => {
      as.resetCounts();
      as.setDown(true);
      try {
        await fetch(as.jwksUri);
      } finally {
        as.setDown(false);
      }
      expect(as.counts.jwks).toBe(1);
    });
  });

  describe('authorization code flow with PKCE', () => {
    test('refuses an authorization request without PKCE', async () => {
      const auth = new URL(as.authorizationEndpoint);
      auth.search = new URLSearchParams({
        client_id: 'spa', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', state: 's1',
      }).toString();
      const res = await fetch(auth, { redirect: 'manual' });
      const location = new URL(res.headers.get('location')!);
      expect(location.href.startsWith(REDIRECT)).toBe(true);
      expect(location.searchParams.get('error')).toBe('invalid_request');
      expect(location.searchParams.get('state')).toBe('s1');
    });

    test('refuses a redirect URI that is not registered', async () => {
      const auth = new URL(as.authorizationEndpoint);
      auth.search = new URLSearchParams({
        client_id: 'spa', response_type: 'code', redirect_uri: 'http://127.0.0.1:2/evil', scope: 'openid',
        code_challenge: pkcePair().challenge, code_challenge_method: 'S256',
      }).toString();
      const res = await fetch(auth, { redirect: 'manual' });
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
    });

    test('refuses a code exchanged with the wrong code_verifier', async () => {
      const { challenge } = pkcePair();
      const auth = new URL(as.authorizationEndpoint);
      auth.search = new URLSearchParams({
        client_id: 'spa', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid orders:read',
        code_challenge: challenge, code_challenge_method: 'S256', state: 'x',
      }).toString();
      const { url } = await followDevPages(auth.href, { stopAt: REDIRECT, login: 'bob' });
      const res = await fetch(as.tokenEndpoint, {
        method: 'POST',
        headers: { authorization: basic('spa', S.spa), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code', code: url.searchParams.get('code')!, redirect_uri: REDIRECT,
          code_verifier: pkcePair().verifier,
        }),
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_grant');
    });

    test('logs in through the development pages and issues access, ID and refresh tokens', async () => {
      const { tokens, pages, jar, nonce } = await codeFlow(as, {
        clientId: 'spa', clientSecret: S.spa, redirectUri: REDIRECT, scope: 'openid profile email orders:read', login: 'alice',
      });
      expect(pages).toEqual(['login', 'consent']);
      expect(tokens).toMatchObject({ token_type: 'Bearer', scope: expect.stringContaining('orders:read') });
      const keys = createLocalJWKSet(await publicJwks(as));

      const access = await jwtVerify(tokens.access_token, keys, { issuer: as.issuer, audience: AUDIENCE, typ: 'at+jwt' });
      expect(access.payload).toMatchObject({
        sub: 'alice', client_id: 'spa', scope: 'orders:read', tenant: 'acme', acr: 'urn:example:mfa', amr: ['pwd', 'otp'],
      });

      const id = await jwtVerify(tokens.id_token!, keys, { issuer: as.issuer, audience: 'spa' });
      expect(id.payload).toMatchObject({ sub: 'alice', nonce, tenant: 'acme', email: 'alice@example.com', name: 'alice' });

      expect(typeof tokens.refresh_token).toBe('string');
      const refreshed = await fetch(as.tokenEndpoint, {
        method: 'POST',
        headers: { authorization: basic('spa', S.spa), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }),
      });
      expect(refreshed.status).toBe(200);
      const next = (await refreshed.json()) as { access_token: string; refresh_token?: string };
      const again = await jwtVerify(next.access_token, keys, { issuer: as.issuer, audience: AUDIENCE });
      expect(again.payload).toMatchObject({ sub: 'alice', scope: 'orders:read', tenant: 'acme', acr: 'urn:example:mfa', amr: ['pwd', 'otp'] });

      // A second authorization with the same browser session skips login and consent.
      const second = await codeFlow(as, { clientId: 'spa', clientSecret: S.spa, redirectUri: REDIRECT, scope: 'openid orders:read', jar });
      expect(second.pages).toEqual([]);

      // RP-initiated logout: confirmation page, then back to the registered post-logout URI.
      const end = new URL(as.endSessionEndpoint);
      end.search = new URLSearchParams({ id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT, state: 'bye' }).toString();
      const out = await followDevPages(end.href, { stopAt: POST_LOGOUT, jar });
      expect(out.pages).toEqual(['logout']);
      expect(out.url.searchParams.get('state')).toBe('bye');

      // Logged out: the next authorization asks for a login again.
      const third = await codeFlow(as, { clientId: 'spa', clientSecret: S.spa, redirectUri: REDIRECT, scope: 'openid orders:read', jar });
      expect(third.pages[0]).toBe('login');
    });

    test('satisfies requested acr_values at the development login (step-up)', async () => {
      const { tokens } = await codeFlow(as, {
        clientId: 'spa', clientSecret: S.spa, redirectUri: REDIRECT, scope: 'openid orders:read', login: 'dave',
        extraParams: { acr_values: 'urn:example:loa:high', prompt: 'login' },
      });
      const keys = createLocalJWKSet(await publicJwks(as));
      const access = await jwtVerify(tokens.access_token, keys, { issuer: as.issuer, audience: AUDIENCE });
      expect(access.payload).toMatchObject({ sub: 'dave', acr: 'urn:example:loa:high', amr: ['pwd', 'mfa'] });
      expect(typeof access.payload['auth_time']).toBe('number');
      const id = await jwtVerify(tokens.id_token!, keys, { issuer: as.issuer, audience: 'spa' });
      expect(id.payload).toMatchObject({ acr: 'urn:example:loa:high' });
    });

    test('reports a plain password login as amr pwd without acr', async () => {
      const { tokens } = await codeFlow(as, { clientId: 'spa', clientSecret: S.spa, redirectUri: REDIRECT, scope: 'openid orders:read', login: 'erin' });
      const { payload } = await jwtVerify(tokens.access_token, createLocalJWKSet(await publicJwks(as)), { issuer: as.issuer, audience: AUDIENCE });
      expect(payload).toMatchObject({ sub: 'erin', amr: ['pwd'] });
      expect(payload).not.toHaveProperty('acr');
    });

    test('accepts a client registered at run time', async () => {
      const redirectUri = 'http://127.0.0.1:3/late-callback';
      await as.registerClient({
        client_id: 'late-spa',
        client_secret: 'late-spa-secret',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [redirectUri],
        scope: 'openid orders:read',
      });
      const { tokens } = await codeFlow(as, { clientId: 'late-spa', clientSecret: 'late-spa-secret', redirectUri, scope: 'openid orders:read', login: 'carol' });
      const { payload } = await jwtVerify(tokens.access_token, createLocalJWKSet(await publicJwks(as)), { issuer: as.issuer, audience: AUDIENCE });
      expect(payload).toMatchObject({ sub: 'carol', client_id: 'late-spa' });
      await expect(as.registerClient({ client_id: 'spa', client_secret: 'x' })).rejects.toThrow(TypeError);
    });
  });
});

describe('key rotation', () => {
  let as: AuthorizationServer;
  beforeAll(async () => {
    as = await startAuthorizationServer({ signingAlg: 'ES256' });
  });
  afterAll(async () => {
    await as.stop();
  });

  test('rotateKeys publishes a new kid, drops the old one and signs with the new one', async () => {
    const before = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    const oldKid = as.kid;
    await as.rotateKeys();
    expect(as.kid).not.toBe(oldKid);
    const jwks = await publicJwks(as);
    expect(jwks.keys.map((k) => k.kid)).toEqual([as.kid]);

    const after = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    expect(decodeProtectedHeader(after).kid).toBe(as.kid);
    const keys = createLocalJWKSet(jwks);
    await expect(jwtVerify(after, keys, { issuer: as.issuer, audience: AUDIENCE })).resolves.toBeTruthy();
    await expect(jwtVerify(before, keys, { issuer: as.issuer, audience: AUDIENCE })).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  test('rotateKeys with keepPrevious publishes both and signs with the new one', async () => {
    const oldKid = as.kid;
    await as.rotateKeys({ keepPrevious: true });
    const kids = (await publicJwks(as)).keys.map((k) => k.kid);
    expect(kids).toEqual([as.kid, oldKid]);
    const token = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    expect(decodeProtectedHeader(token).kid).toBe(as.kid);
  });

  test('opaque tokens issued before a rotation stay introspectable', async () => {
    const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
    await as.rotateKeys();
    expect(await as.introspect(token, 'gateway', S.gateway)).toMatchObject({ active: true });
  });
});

describe('mintAccessToken', () => {
  test.each<SigningAlg>(['RS256', 'PS256', 'ES256', 'EdDSA'])('mints RFC 9068 tokens that verify (%s)', async (alg) => {
    const as = await startAuthorizationServer({ signingAlg: alg, accessTokenTtl: 60 });
    try {
      const token = await as.mintAccessToken({ sub: 'alice', tenant: 'acme' });
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(await publicJwks(as)), {
        issuer: as.issuer,
        audience: AUDIENCE,
        typ: 'at+jwt',
      });
      expect(protectedHeader).toEqual({ alg, kid: as.kid, typ: 'at+jwt' });
      expect(payload).toMatchObject({ sub: 'alice', tenant: 'acme', client_id: 'test-client', scope: 'orders:read orders:write' });
      expect(payload.exp! - payload.iat!).toBe(60);
    } finally {
      await as.stop();
    }
  });

  test('overrides or removes claims and header parameters, signing the header as given', async () => {
    const as = await startAuthorizationServer({ signingAlg: 'ES256' });
    try {
      const keys = createLocalJWKSet(await publicJwks(as));
      const expired = await as.mintAccessToken({ exp: 1000, iat: 900 });
      await expect(jwtVerify(expired, keys)).rejects.toMatchObject({ code: 'ERR_JWT_EXPIRED' });

      const noExp = await as.mintAccessToken({ exp: undefined });
      expect(decodeJwt(noExp)).not.toHaveProperty('exp');

      const hostile = await as.mintAccessToken({}, { typ: 'dpop+jwt', jku: 'https://evil.example/jwks', crit: ['x-unknown'], 'x-unknown': 1 });
      expect(decodeProtectedHeader(hostile)).toMatchObject({ alg: 'ES256', typ: 'dpop+jwt', jku: 'https://evil.example/jwks', crit: ['x-unknown'] });
      await expect(jwtVerify(hostile, keys)).rejects.toMatchObject({ code: 'ERR_JOSE_NOT_SUPPORTED' }); // jose refuses the unknown crit

      const noTyp = await as.mintAccessToken({}, { typ: undefined });
      expect(decodeProtectedHeader(noTyp)).not.toHaveProperty('typ');
      await expect(jwtVerify(noTyp, keys, { issuer: as.issuer, audience: AUDIENCE })).resolves.toBeTruthy();
    } finally {
      await as.stop();
    }
  });
});

describe('options', () => {
  test.each<[SigningAlg, string]>([
    ['PS256', 'RSA'],
    ['ES256', 'EC'],
    ['EdDSA', 'OKP'],
  ])('signs access tokens with %s', async (alg, kty) => {
    const as = await startAuthorizationServer({ signingAlg: alg });
    try {
      const token = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
      const jwks = await publicJwks(as);
      expect(jwks.keys[0]).toMatchObject({ kty, alg });
      const { protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: as.issuer, audience: AUDIENCE });
      expect(protectedHeader.alg).toBe(alg);
    } finally {
      await as.stop();
    }
  });

  test('uses the chosen audience, extra audiences, scopes and default token format', async () => {
    const as = await startAuthorizationServer({
      audience: 'https://orders.example',
      extraAudiences: ['https://billing.example'],
      scopes: ['read', 'write'],
      accessTokenFormat: 'opaque',
      clients: [
        { client_id: 'c1', client_secret: 'c1-secret', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'read' },
        { client_id: 'c2', client_secret: 'c2-secret', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], access_token_format: 'jwt' },
        { client_id: 'rs', client_secret: 'rs-secret', grant_types: [], response_types: [], redirect_uris: [] },
      ],
    });
    try {
      const opaque = await as.clientCredentialsToken('c1', 'c1-secret', 'read');
      expect(await as.introspect(opaque, 'rs', 'rs-secret')).toMatchObject({ active: true, aud: 'https://orders.example', scope: 'read' });

      const jwt = await as.clientCredentialsToken('c2', 'c2-secret', 'read write', { resource: 'https://billing.example' });
      const { payload } = await jwtVerify(jwt, createLocalJWKSet(await publicJwks(as)), { issuer: as.issuer, audience: 'https://billing.example' });
      expect(payload.scope).toBe('read write');
    } finally {
      await as.stop();
    }
  });

  test('lets a gateway client introspect with client_secret_post or private_key_jwt', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const none = { grant_types: [], response_types: [], redirect_uris: [] };
    const as = await startAuthorizationServer({
      clients: [
        ...demoClients(REDIRECT),
        { client_id: 'gw-post', client_secret: 'gw-post-secret', token_endpoint_auth_method: 'client_secret_post', ...none },
        {
          client_id: 'gw-jwt',
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'ES256',
          jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'gw-1' }] },
          ...none,
        },
      ],
    });
    try {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      const post = await fetch(as.introspectionEndpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, client_id: 'gw-post', client_secret: 'gw-post-secret' }),
      });
      expect(await post.json()).toMatchObject({ active: true });

      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'gw-1' })
        .setIssuer('gw-jwt')
        .setSubject('gw-jwt')
        .setAudience(as.issuer)
        .setJti(crypto.randomUUID())
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(privateKey);
      const jwt = await fetch(as.introspectionEndpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          token,
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertion,
        }),
      });
      expect(await jwt.json()).toMatchObject({ active: true });
    } finally {
      await as.stop();
    }
  });

  test('autoConsent skips the consent page', async () => {
    const as = await startAuthorizationServer({ clients: demoClients(REDIRECT), autoConsent: true });
    try {
      const { tokens, pages } = await codeFlow(as, { clientId: 'spa', clientSecret: S.spa, redirectUri: REDIRECT, scope: 'openid orders:read' });
      expect(pages).toEqual(['login']);
      expect(tokens.scope).toContain('orders:read');
    } finally {
      await as.stop();
    }
  });

  test('introspection can be switched off', async () => {
    const as = await startAuthorizationServer({ introspection: false });
    try {
      const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
      await expect(as.introspect(token, 'gateway', S.gateway)).rejects.toMatchObject({ status: 404 });
    } finally {
      await as.stop();
    }
  });

  test('serves HTTPS with an https issuer when given a certificate', async () => {
    const { cert, key } = await selfSignedCertificate();
    const as = await startAuthorizationServer({ tls: { cert, key } });
    const dispatcher = new Agent({ connect: { ca: cert } });
    try {
      expect(as.issuer).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const token = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
      const doc = (await (await undiciFetch(as.discoveryUri, { dispatcher })).json()) as Record<string, string>;
      expect(doc['issuer']).toBe(as.issuer);
      const jwks = (await (await undiciFetch(as.jwksUri, { dispatcher })).json()) as JSONWebKeySet;
      const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: as.issuer, audience: AUDIENCE });
      expect(payload.iss).toMatch(/^https:/);
      await expect(fetch(as.jwksUri)).rejects.toThrow(); // not trusted without the certificate
    } finally {
      await dispatcher.close();
      await as.stop();
    }
  });

  test('refuses to start with invalid client metadata, and frees its port', async () => {
    const probe = await startAuthorizationServer();
    const { port } = probe;
    await probe.stop();
    await expect(
      startAuthorizationServer({
        port,
        clients: [{ client_id: 'bad', client_secret: 'x', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], access_token_format: 'xml' }],
      }),
    ).rejects.toMatchObject({ error: 'invalid_client_metadata' });
    await expect(
      startAuthorizationServer({ clients: [{ client_id: 'bad', client_secret: 'x', scope: 'not-a-scope', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }] }),
    ).rejects.toMatchObject({ error: 'invalid_client_metadata' });
    const again = await startAuthorizationServer({ port });
    await again.stop();
  });

  test('stop closes the listener', async () => {
    const as = await startAuthorizationServer();
    const jar = new CookieJar();
    expect(jar.header()).toBe('');
    await as.stop();
    await as.stop(); // idempotent
    await expect(fetch(as.jwksUri)).rejects.toThrow();
  });
});

/** A throwaway self-signed certificate for 127.0.0.1, made at test time (no key is committed). */
async function selfSignedCertificate(): Promise<{ cert: string; key: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-as-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
