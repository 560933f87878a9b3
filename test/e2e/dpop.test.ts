import { decodeJwt } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS as S, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { boundToken as boundTokenFrom, dpopClient, dpopProof, type DpopClient } from '../helpers/dpop.js';
import { connect, opened, refused as refusedHandshake, startWebSocketUpstream, type WebSocketUpstream } from '../helpers/websocket.js';

/**
 * DPoP-bound access tokens end to end (RFC 9449): the real oidc-provider server binds the tokens
 * it issues to the client's key (a DPoP proof at its token endpoint), as JWTs (`cnf.jkt`) and as
 * opaque tokens (introspected: `token_type` DPoP, `cnf.jkt`). gatehouse accepts such a token only
 * in the DPoP scheme with a fresh proof by that key for that very request, also once the token
 * sits in its caches; everything else is 401 and never reaches the upstream.
 */

const AUDIENCE = 'https://api.example.com';
let as: AuthorizationServer;
let upstream: TestUpstream;
let live: WebSocketUpstream;
let gw: TestGateway;

const client = dpopClient;
const proof = dpopProof;
const boundToken = (c: DpopClient, clientId: 'demo-client' | 'demo-opaque') => boundTokenFrom(as, c, clientId, AUDIENCE);

beforeAll(async () => {
  [as, upstream, live] = await Promise.all([startAuthorizationServer({ audience: AUDIENCE, signingAlg: 'ES256' }), startUpstream(), startWebSocketUpstream()]);
  gw = await startTestGateway(
    `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: jwt, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [${AUDIENCE}], algorithms: [ES256] }
  - name: opaque
    issuer: ${as.issuer}
    audiences: [${AUDIENCE}]
    introspection: { clientId: gateway, clientSecret: \${INTROSPECTION_SECRET}, endpoint: ${as.introspectionEndpoint} }
upstreams:
  - { name: api, url: ${upstream.url} }
  - { name: live, url: ${live.url} }
routes:
  - { name: orders, path: /orders, upstream: api, issuers: [jwt], scopes: [orders:read] }
  - { name: live, path: /live, upstream: live, issuers: [jwt], senderConstrained: dpop, websocket: true }
  - { name: stripped, path: /v1, stripPrefix: true, upstream: api, issuers: [jwt] }
  - { name: phantom, path: /phantom, upstream: api, issuers: [opaque] }
  - { name: strict, path: /strict, upstream: api, issuers: [jwt], senderConstrained: dpop }
  - { name: strictPhantom, path: /strict-phantom, upstream: api, issuers: [opaque], senderConstrained: any }
gateway: { issuer: https://gatehouse.test, keyDirectory: keys }
`,
    { env: { INTROSPECTION_SECRET: S.gateway } },
  );
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([as?.stop(), upstream?.close(), live?.close()]);
});

interface Answer {
  status: number;
  code: string | undefined;
  challenge: string;
  reachedUpstream: boolean;
}

async function call(path: string, headers: Record<string, string | string[]>, method = 'GET'): Promise<Answer> {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}${path}`, { method: method as 'GET', headers });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    code: res.statusCode === 200 ? undefined : (JSON.parse(text) as { code?: string }).code,
    challenge: String(res.headers['www-authenticate'] ?? ''),
    reachedUpstream: upstream.requests.length > before,
  };
}

const refused = (code: string, error = 'invalid_dpop_proof') => ({
  status: 401,
  code,
  challenge: expect.stringMatching(new RegExp(`^DPoP realm="gatehouse", error="${error}", error_description="[^"]+", algs="ES256 ES384 PS256 RS256 EdDSA Ed25519"$`)),
  reachedUpstream: false,
});

describe('a DPoP-bound JWT access token from oidc-provider', () => {
  const alice = client();
  let token: string;
  beforeAll(async () => {
    const issued = await boundToken(alice, 'demo-client');
    token = issued.token;
    expect(issued.type).toBe('DPoP');
    expect(decodeJwt(token).cnf).toEqual({ jkt: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
  });

  it('is refused without a proof, with two, or in the Bearer scheme', async () => {
    expect(await call('/orders', { authorization: `DPoP ${token}` })).toEqual(refused('GH_ERR_DPOP_PROOF_MISSING'));
    const url = `${gw.url}/orders`;
    expect(await call('/orders', { authorization: `DPoP ${token}`, dpop: [await proof(alice, 'GET', url, token), await proof(alice, 'GET', url, token)] })).toEqual(
      refused('GH_ERR_DPOP_PROOF_INVALID'),
    );
    // RFC 9449 §7.2: a bound token presented as a bearer token, even with a valid proof.
    expect(await call('/orders', { authorization: `Bearer ${token}`, dpop: await proof(alice, 'GET', url, token) })).toEqual(refused('GH_ERR_DPOP_SCHEME_MISMATCH', 'invalid_token'));
  });

  it('is refused with a proof for another request: method, path, host, token, or signed by another key (a stolen token)', async () => {
    const url = `${gw.url}/orders`;
    for (const p of [
      await proof(alice, 'POST', url, token),
      await proof(alice, 'GET', `${gw.url}/orders/7`, token),
      await proof(alice, 'GET', url.replace('127.0.0.1', 'localhost'), token),
      await proof(alice, 'GET', url, `${token}x`),
      await proof(alice, 'GET', url),
      await proof(alice, 'GET', url, token, { iat: Math.floor(Date.now() / 1000) - 600 }),
    ]) {
      expect(await call('/orders', { authorization: `DPoP ${token}`, dpop: p })).toEqual(refused('GH_ERR_DPOP_PROOF_INVALID'));
    }
    const mallory = client();
    expect(await call('/orders', { authorization: `DPoP ${token}`, dpop: await proof(mallory, 'GET', url, token) })).toEqual(refused('GH_ERR_DPOP_KEY_MISMATCH', 'invalid_token'));
  });

  it('is accepted with a fresh proof for each request, from the cache too, and goes upstream in the DPoP scheme', async () => {
    const url = `${gw.url}/orders?page=2`;
    for (let i = 0; i < 3; i++) {
      const p = await proof(alice, 'GET', url, token);
      expect(await call('/orders?page=2', { authorization: `DPoP ${token}`, dpop: p })).toMatchObject({ status: 200, reachedUpstream: true });
      const seen = upstream.requests.at(-1)!;
      expect(seen.headers.authorization).toBe(`DPoP ${token}`);
      expect(seen.headers.dpop).toBe(p);
    }
    expect(await call('/orders', { authorization: `dpop ${token}`, dpop: await proof(alice, 'GET', `${gw.url}/orders`, token) })).toMatchObject({ status: 200 });
  });

  it('is refused when a proof is replayed, also after it was accepted once', async () => {
    const p = await proof(alice, 'GET', `${gw.url}/orders`, token);
    expect(await call('/orders', { authorization: `DPoP ${token}`, dpop: p })).toMatchObject({ status: 200 });
    expect(await call('/orders', { authorization: `DPoP ${token}`, dpop: p })).toEqual(refused('GH_ERR_DPOP_PROOF_REPLAYED'));
  });

  it("is refused when its htu names the host a client's own X-Forwarded-Host claims (gatehouse trusts no proxy here)", async () => {
    const htu = 'https://api.example.test/orders';
    const answer = await call('/orders', { authorization: `DPoP ${token}`, dpop: await proof(alice, 'GET', htu, token), 'x-forwarded-host': 'api.example.test', 'x-forwarded-proto': 'https' });
    expect(answer).toEqual(refused('GH_ERR_DPOP_PROOF_INVALID'));
    expect(gw.logs.some((l) => l.reason === 'GH_ERR_DPOP_PROOF_INVALID' && /htu scheme https is not the request's http/.test(String(l.detail)))).toBe(true);
    const sameScheme = await call('/orders', { authorization: `DPoP ${token}`, dpop: await proof(alice, 'GET', 'http://api.example.test/orders', token), 'x-forwarded-host': 'api.example.test' });
    expect(sameScheme).toEqual(refused('GH_ERR_DPOP_PROOF_INVALID'));
    expect(gw.logs.some((l) => /htu host api.example.test is not the request's 127\.0\.0\.1:\d+/.test(String(l.detail)))).toBe(true);
  });

  it('is checked against the path the client requested on a stripPrefix route', async () => {
    const p = await proof(alice, 'GET', `${gw.url}/v1/items`, token);
    expect(await call('/v1/items', { authorization: `DPoP ${token}`, dpop: p })).toMatchObject({ status: 200 });
    expect(upstream.requests.at(-1)!.url).toBe('/items');
    expect(await call('/v1/items', { authorization: `DPoP ${token}`, dpop: await proof(alice, 'GET', `${gw.url}/items`, token) })).toEqual(refused('GH_ERR_DPOP_PROOF_INVALID'));
  });

  it('answers an expired or otherwise invalid token in the DPoP scheme too', async () => {
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.${'A'.repeat(86)}`;
    const answer = await call('/orders', { authorization: `DPoP ${forged}`, dpop: await proof(alice, 'GET', `${gw.url}/orders`, forged) });
    expect(answer).toEqual(refused('GH_ERR_JWT_SIGNATURE_INVALID', 'invalid_token'));
  });
});

describe('the DPoP scheme with a token that is not DPoP-bound', () => {
  it('is refused: the scheme promises a binding the token does not have', async () => {
    const bearer = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    expect(decodeJwt(bearer).cnf).toBeUndefined();
    const alice = client();
    expect(await call('/orders', { authorization: `DPoP ${bearer}`, dpop: await proof(alice, 'GET', `${gw.url}/orders`, bearer) })).toEqual(refused('GH_ERR_DPOP_SCHEME_MISMATCH', 'invalid_token'));
    // The same token as a bearer token passes, and its challenge-free answer reaches the upstream.
    expect(await call('/orders', { authorization: `Bearer ${bearer}` })).toMatchObject({ status: 200, reachedUpstream: true });
  });
});

describe('a DPoP-bound opaque token (introspection, phantom token)', () => {
  const bob = client();
  let token: string;
  beforeAll(async () => {
    const issued = await boundToken(bob, 'demo-opaque');
    token = issued.token;
    expect(issued.type).toBe('DPoP');
    expect(token).not.toContain('.');
  });

  it('is refused without a proof, in the Bearer scheme, and with a proof by another key', async () => {
    const url = `${gw.url}/phantom`;
    expect(await call('/phantom', { authorization: `DPoP ${token}` })).toEqual(refused('GH_ERR_DPOP_PROOF_MISSING'));
    expect(await call('/phantom', { authorization: `Bearer ${token}`, dpop: await proof(bob, 'GET', url, token) })).toEqual(refused('GH_ERR_DPOP_SCHEME_MISMATCH', 'invalid_token'));
    expect(await call('/phantom', { authorization: `DPoP ${token}`, dpop: await proof(client(), 'GET', url, token) })).toEqual(refused('GH_ERR_DPOP_KEY_MISMATCH', 'invalid_token'));
  });

  it('is accepted with a valid proof, and the upstream gets a JWT minted by gatehouse', async () => {
    const url = `${gw.url}/phantom`;
    for (let i = 0; i < 2; i++) {
      expect(await call('/phantom', { authorization: `DPoP ${token}`, dpop: await proof(bob, 'GET', url, token) })).toMatchObject({ status: 200, reachedUpstream: true });
      const forwarded = String(upstream.requests.at(-1)!.headers.authorization);
      expect(forwarded).toMatch(/^Bearer ey/);
      expect(decodeJwt(forwarded.slice(7)).iss).toBe('https://gatehouse.test');
    }
  });
});

describe('a route with senderConstrained', () => {
  it('refuses bearer tokens (JWT or opaque) in the DPoP scheme challenge, and takes DPoP-bound ones with their proof', async () => {
    const bearer = await as.clientCredentialsToken('demo-client', S['demo-client'], 'orders:read');
    expect(await call('/strict', { authorization: `Bearer ${bearer}` })).toEqual(refused('GH_ERR_AUTHZ_SENDER_CONSTRAINT_REQUIRED', 'invalid_token'));
    const opaqueBearer = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
    expect(await call('/strict-phantom', { authorization: `Bearer ${opaqueBearer}` })).toEqual(refused('GH_ERR_AUTHZ_SENDER_CONSTRAINT_REQUIRED', 'invalid_token'));
    // The same tokens pass a route without it.
    expect(await call('/orders', { authorization: `Bearer ${bearer}` })).toMatchObject({ status: 200 });

    const carol = client();
    const jwt = (await boundToken(carol, 'demo-client')).token;
    expect(await call('/strict', { authorization: `DPoP ${jwt}`, dpop: await proof(carol, 'GET', `${gw.url}/strict`, jwt) })).toMatchObject({ status: 200, reachedUpstream: true });
    const opaque = (await boundToken(carol, 'demo-opaque')).token;
    expect(await call('/strict-phantom', { authorization: `DPoP ${opaque}`, dpop: await proof(carol, 'GET', `${gw.url}/strict-phantom`, opaque) })).toMatchObject({ status: 200, reachedUpstream: true });
  });
});

describe('a WebSocket handshake with a DPoP-bound token (senderConstrained: dpop)', () => {
  const ws = () => `${gw.url.replace(/^http/, 'ws')}/live`;

  it('opens with a proof for the handshake (GET on the http(s) URL), the upstream getting the DPoP scheme', async () => {
    const alice = client();
    const { token } = await boundToken(alice, 'demo-client');
    const socket = opened(await connect(ws(), { headers: { authorization: `DPoP ${token}`, dpop: await proof(alice, 'GET', `${gw.url}/live`, token) } }));
    socket.ws.send('headers');
    const seen = JSON.parse(await socket.next()) as Record<string, string>;
    expect(seen.authorization).toBe(`DPoP ${token}`);
    socket.ws.close();
    await socket.closed;
  });

  it('refuses the same proof again, a bearer use of the token, and another key\'s proof, before the upstream', async () => {
    const alice = client();
    const mallory = client();
    const { token } = await boundToken(alice, 'demo-client');
    const good = await proof(alice, 'GET', `${gw.url}/live`, token);
    const first = opened(await connect(ws(), { headers: { authorization: `DPoP ${token}`, dpop: good } }));
    first.ws.close();
    await first.closed;
    const before = live.handshakes.length;
    const replay = refusedHandshake(await connect(ws(), { headers: { authorization: `DPoP ${token}`, dpop: good } }));
    expect(replay.status).toBe(401);
    expect(JSON.parse(replay.body).code).toBe('GH_ERR_DPOP_PROOF_REPLAYED');
    expect(replay.headers['www-authenticate']).toMatch(/^DPoP /);
    const bearer = refusedHandshake(await connect(ws(), { headers: { authorization: `Bearer ${token}` } }));
    expect(bearer.status).toBe(401);
    const stolen = refusedHandshake(await connect(ws(), { headers: { authorization: `DPoP ${token}`, dpop: await proof(mallory, 'GET', `${gw.url}/live`, token) } }));
    expect(JSON.parse(stolen.body).code).toBe('GH_ERR_DPOP_KEY_MISMATCH');
    expect(live.handshakes.length).toBe(before);
  });
});
