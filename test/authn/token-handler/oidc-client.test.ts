import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, exportJWK, SignJWT, UnsecuredJWT, type JWK } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { IssuerConfig, TokenHandlerConfig } from '../../../src/config/types.js';
import {
  AuthorizationServerError,
  AuthorizationServerUnavailable,
  IdTokenInvalid,
  createOidcClient,
  type OidcClient,
} from '../../../src/authn/token-handler/oidc-client.js';

/** A scriptable authorization server: discovery, JWKS and token endpoint. */
let server: http.Server;
let issuer: string;
let discovery: Record<string, unknown>;
let jwks: { keys: JWK[] };
let tokenAnswer: { status: number; body: string };
let hang = false;
let seen: { path: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
let signingKey: CryptoKey;
let otherKey: CryptoKey;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  signingKey = pair.privateKey;
  otherKey = (await generateKeyPair('ES256')).privateKey;
  jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] };
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ path: req.url ?? '', headers: req.headers, body });
      if (hang) return; // never answer
      const send = (status: number, text: string) => {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (req.url === '/.well-known/openid-configuration') return send(200, JSON.stringify(discovery));
      if (req.url === '/jwks') return send(200, JSON.stringify(jwks));
      if (req.url === '/token') return send(tokenAnswer.status, tokenAnswer.body);
      send(404, '{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  hang = false;
  seen = [];
  discovery = {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    end_session_endpoint: `${issuer}/logout`,
  };
  tokenAnswer = { status: 200, body: JSON.stringify({ access_token: 'at', token_type: 'Bearer', expires_in: 60, refresh_token: 'rt', id_token: 'x' }) };
});

const clients: OidcClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
});

function client(over: Partial<TokenHandlerConfig> = {}, issuerOver: Partial<IssuerConfig> = {}): OidcClient {
  const config: TokenHandlerConfig = {
    basePath: '/th', issuer: 'main', clientId: 'spa', clientSecret: 'se:cret', redirectUri: 'https://app.example/callback',
    postLogoutRedirectUri: 'https://app.example/', scope: 'openid profile', trustedOrigins: ['https://app.example'], cookieKeys: [],
    cookiePrefix: '__Host-gh', loginStateTtl: 600_000, sessionTtl: 3_600_000, extraParams: { audience: 'api' }, csrfHeader: 'x-gatehouse-csrf',
    tokenEndpointAuthMethod: 'client_secret_basic', ...over,
  };
  const iss: IssuerConfig = {
    name: 'main', issuer, discovery: true, audiences: ['api'], algorithms: ['ES256', 'RS256'], clockSkew: 0, requiredClaims: [],
    maxTokenSize: 8192, jwksRefresh: 300_000, jwksCooldown: 30_000, fetchTimeout: 300, maxResponseSize: 64 * 1024, ...issuerOver,
  };
  const c = createOidcClient(config, iss, process.cwd());
  clients.push(c);
  return c;
}

function idToken(claims: Record<string, unknown> = {}, opts: { key?: CryptoKey; kid?: string; exp?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ nonce: 'n1', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? 'k1' })
    .setIssuer((claims.iss as string) ?? issuer)
    .setAudience((claims.aud as string | string[]) ?? 'spa')
    .setSubject((claims.sub as string) ?? 'alice')
    .setIssuedAt(now)
    .setExpirationTime(opts.exp ?? now + 60)
    .sign(opts.key ?? signingKey);
}

describe('discovery', () => {
  it('refuses a document whose issuer is not the configured one', async () => {
    discovery.issuer = 'https://other.example';
    await expect(client().metadata()).rejects.toBeInstanceOf(AuthorizationServerUnavailable);
  });

  it('refuses endpoints that are plain http off loopback', async () => {
    discovery.token_endpoint = 'http://login.example.com/token';
    await expect(client().metadata()).rejects.toThrow(/token_endpoint/);
  });

  it('refuses a document over the size limit', async () => {
    discovery.padding = 'x'.repeat(70 * 1024);
    await expect(client().metadata()).rejects.toThrow(/over the limit|more than/);
  });

  it('gives up on a server that does not answer within fetchTimeout', async () => {
    hang = true;
    await expect(client().metadata()).rejects.toThrow(/no answer within 300 ms/);
  });

  it('does not hammer a failing server: a second call within the retry window fails without fetching', async () => {
    discovery.issuer = 'https://other.example';
    const c = client();
    await expect(c.metadata()).rejects.toThrow();
    const fetched = seen.length;
    await expect(c.metadata()).rejects.toThrow();
    expect(seen.length).toBe(fetched);
    expect(c.status().discovery).toMatch(/last fetch failed/);
  });

  it('caches the document', async () => {
    const c = client();
    await c.metadata();
    await c.metadata();
    expect(seen.filter((s) => s.path === '/.well-known/openid-configuration')).toHaveLength(1);
    expect(c.status().discovery).toMatch(/^ok/);
  });
});

describe('authorization request and logout URL', () => {
  it('builds the request with PKCE S256; configured extras cannot override the protocol parameters', async () => {
    const c = client({ extraParams: { client_id: 'evil', audience: 'api' } });
    const url = new URL(await c.authorizationUrl({ state: 's', nonce: 'n', codeChallenge: 'c', extra: { prompt: 'login' } }));
    expect(Object.fromEntries(url.searchParams)).toEqual({
      client_id: 'spa', audience: 'api', prompt: 'login', redirect_uri: 'https://app.example/callback', response_type: 'code',
      scope: 'openid profile', state: 's', nonce: 'n', code_challenge: 'c', code_challenge_method: 'S256',
    });
  });

  it('returns null for the logout URL when the server has no end_session_endpoint', async () => {
    delete discovery.end_session_endpoint;
    expect(await client().endSessionUrl('hint')).toBeNull();
  });
});

describe('token endpoint', () => {
  it('authenticates with client_secret_basic, form-encoding the secret', async () => {
    await client().exchangeCode('code1', 'verifier1');
    const call = seen.find((s) => s.path === '/token')!;
    expect(call.headers.authorization).toBe(`Basic ${Buffer.from('spa:se%3Acret').toString('base64')}`);
    expect(Object.fromEntries(new URLSearchParams(call.body))).toEqual({
      grant_type: 'authorization_code', code: 'code1', redirect_uri: 'https://app.example/callback', code_verifier: 'verifier1',
    });
  });

  it('authenticates with client_secret_post', async () => {
    await client({ tokenEndpointAuthMethod: 'client_secret_post' }).refresh('rt1');
    const call = seen.find((s) => s.path === '/token')!;
    expect(call.headers.authorization).toBeUndefined();
    expect(Object.fromEntries(new URLSearchParams(call.body))).toEqual({ grant_type: 'refresh_token', refresh_token: 'rt1', client_id: 'spa', client_secret: 'se:cret' });
  });

  it('turns an OAuth error into AuthorizationServerError with the error code', async () => {
    tokenAnswer = { status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: 'code used' }) };
    const err = await client().exchangeCode('c', 'v').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthorizationServerError);
    expect(err).toMatchObject({ error: 'invalid_grant', errorDescription: 'code used', status: 400 });
  });

  it('treats a 5xx without an OAuth error, a missing access_token and a non-Bearer token as unavailable', async () => {
    for (const answer of [
      { status: 500, body: 'oops' },
      { status: 200, body: JSON.stringify({ token_type: 'Bearer' }) },
      { status: 200, body: JSON.stringify({ access_token: 'a', token_type: 'DPoP' }) },
      { status: 200, body: 'not json' },
    ]) {
      tokenAnswer = answer;
      await expect(client().exchangeCode('c', 'v')).rejects.toBeInstanceOf(AuthorizationServerUnavailable);
    }
  });
});

describe('ID token validation', () => {
  it('accepts a recent enough authentication when max_age was requested', async () => {
    const payload = await client().verifyIdToken(await idToken({ auth_time: Math.floor(Date.now() / 1000) - 10 }), { nonce: 'n1', maxAge: 60 });
    expect(payload.sub).toBe('alice');
  });

  it('accepts a valid ID token with the login nonce', async () => {
    const payload = await client().verifyIdToken(await idToken(), { nonce: 'n1' });
    expect(payload.sub).toBe('alice');
  });

  const cases: [string, () => Promise<string>, { nonce?: string; subject?: string; maxAge?: number }][] = [
    ['rejects an ID token whose nonce is not the login nonce', () => idToken({ nonce: 'other' }), { nonce: 'n1' }],
    ['rejects an ID token without a nonce when one was sent', () => idToken({ nonce: undefined }), { nonce: 'n1' }],
    ['rejects an ID token for another audience', () => idToken({ aud: 'other-client' }), { nonce: 'n1' }],
    ['rejects an ID token from another issuer', () => idToken({ iss: 'https://other.example' }), { nonce: 'n1' }],
    ['rejects an expired ID token', () => idToken({}, { exp: Math.floor(Date.now() / 1000) - 10 }), { nonce: 'n1' }],
    ['rejects an ID token signed by a key not in the JWKS', () => idToken({}, { key: otherKey }), { nonce: 'n1' }],
    ['rejects an ID token with several audiences and azp not this client', () => idToken({ aud: ['spa', 'x'], azp: 'x' }), { nonce: 'n1' }],
    ['rejects an ID token with several audiences and no azp', () => idToken({ aud: ['spa', 'x'] }), { nonce: 'n1' }],
    ['rejects an unsigned ID token (alg none)', async () => new UnsecuredJWT({ nonce: 'n1' }).setIssuer(issuer).setAudience('spa').setSubject('alice').setIssuedAt().setExpirationTime('1m').encode(), { nonce: 'n1' }],
    ['rejects a refreshed ID token about another subject', () => idToken({ sub: 'mallory' }), { subject: 'alice' }],
    ['rejects an ID token without auth_time when max_age was requested', () => idToken(), { nonce: 'n1', maxAge: 60 }],
    ['rejects an ID token whose authentication is older than max_age', () => idToken({ auth_time: Math.floor(Date.now() / 1000) - 120 }), { nonce: 'n1', maxAge: 60 }],
  ];
  for (const [name, make, expect_] of cases) {
    it(name, async () => {
      await expect(client().verifyIdToken(await make(), expect_)).rejects.toBeInstanceOf(IdTokenInvalid);
    });
  }
});
