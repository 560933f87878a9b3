import { createHash, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * Sender-constrained JWT access tokens end to end (RFC 7800 `cnf`, RFC 8705, RFC 9449): tokens
 * signed by the real oidc-provider server, sent over an HTTPS listener that asks for client
 * certificates. A token bound to what gatehouse cannot check, or to another certificate, is 401
 * and never reaches the upstream — also once the token sits in the verified-token cache.
 */
let pki: TestPki;
let alice: CertFiles;
let bob: CertFiles;
let as: AuthorizationServer;
let upstream: TestUpstream;
let gw: TestGateway;
/** One agent per client identity: each has its own TLS connections. */
let asAlice: Agent;
let asBob: Agent;
let anonymous: Agent;

/** RFC 8705 §3.1: base64url SHA-256 of the certificate's DER. */
const thumbprint = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');

beforeAll(async () => {
  pki = await createTestPki();
  const [server, a, b] = await Promise.all([pki.server('gw', ['127.0.0.1', 'localhost']), pki.client('alice'), pki.client('bob')]);
  alice = a;
  bob = b;
  [as, upstream] = await Promise.all([startAuthorizationServer({ audience: 'https://api.example.com', signingAlg: 'ES256' }), startUpstream()]);
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${server.certFile}, key: ${server.keyFile}, clientCa: ${pki.caFile}, requestCert: optional } }
issuers:
  - name: main
    issuer: ${as.issuer}
    discovery: true
    audiences: [https://api.example.com]
    algorithms: [ES256]
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: orders, path: /orders, upstream: api }
  - { name: strict, path: /strict, upstream: api, senderConstrained: mtls }
`);
  const ca = pki.ca.certPem;
  asAlice = new Agent({ connect: { ca, cert: alice.certPem, key: alice.keyPem } });
  asBob = new Agent({ connect: { ca, cert: bob.certPem, key: bob.keyPem } });
  anonymous = new Agent({ connect: { ca } });
});

afterAll(async () => {
  await Promise.all([asAlice?.close(), asBob?.close(), anonymous?.close()]);
  await gw?.close();
  await Promise.all([as?.stop(), upstream?.close()]);
});

async function get(token: string, agent: Agent, path = '/orders') {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}${path}`, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    code: res.statusCode === 200 ? undefined : (JSON.parse(text) as { code?: string }).code,
    challenge: String(res.headers['www-authenticate'] ?? ''),
    reachedUpstream: upstream.requests.length > before,
  };
}

const refused = (code: string) => ({ status: 401, code, challenge: expect.stringContaining('error="invalid_token"'), reachedUpstream: false });

describe('sender-constrained JWT access tokens', () => {
  it('refuses a DPoP-bound token (cnf.jkt) sent as a bearer token, whatever the certificate (test/e2e/dpop.test.ts has the DPoP scheme)', async () => {
    const token = await as.mintAccessToken({ cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } });
    const dpopRefused = { ...refused('GH_ERR_DPOP_SCHEME_MISMATCH'), challenge: expect.stringMatching(/^DPoP realm="gatehouse", error="invalid_token"/) };
    expect(await get(token, asAlice)).toEqual(dpopRefused);
    expect(await get(token, anonymous)).toEqual(dpopRefused);
  });

  it('refuses a token bound by a method gatehouse cannot check (cnf.jwk)', async () => {
    const token = await as.mintAccessToken({ cnf: { jwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' } } });
    expect(await get(token, asAlice)).toEqual(refused('GH_ERR_JWT_SENDER_CONSTRAINED'));
  });

  it('refuses a token whose cnf is a string', async () => {
    const token = await as.mintAccessToken({ cnf: thumbprint(alice.certPem) });
    expect(await get(token, asAlice)).toEqual(refused('GH_ERR_JWT_CLAIM_INVALID'));
  });

  it('refuses a certificate-bound token sent with another certificate, or none, before it was ever accepted', async () => {
    const token = await as.mintAccessToken({ cnf: { 'x5t#S256': thumbprint(alice.certPem) }, jti: 'never-accepted' });
    expect(await get(token, asBob)).toEqual(refused('GH_ERR_JWT_SENDER_CONSTRAINED'));
    expect(await get(token, anonymous)).toEqual(refused('GH_ERR_JWT_SENDER_CONSTRAINED'));
  });

  it('accepts a certificate-bound token with its certificate, and refuses it from other connections once it is cached', async () => {
    const token = await as.mintAccessToken({ cnf: { 'x5t#S256': thumbprint(alice.certPem) }, jti: 'stolen-later' });
    const first = await get(token, asAlice);
    expect(first).toMatchObject({ status: 200, reachedUpstream: true });
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${token}`);
    // The token is in the verified-token cache now: replayed by a thief, it is still refused.
    expect(await get(token, asBob)).toEqual(refused('GH_ERR_JWT_SENDER_CONSTRAINED'));
    expect(await get(token, anonymous)).toEqual(refused('GH_ERR_JWT_SENDER_CONSTRAINED'));
    // And its owner keeps using it (same connection or a new one).
    expect(await get(token, asAlice)).toMatchObject({ status: 200, reachedUpstream: true });
    const fresh = new Agent({ connect: { ca: pki.ca.certPem, cert: alice.certPem, key: alice.keyPem } });
    try {
      expect(await get(token, fresh)).toMatchObject({ status: 200, reachedUpstream: true });
    } finally {
      await fresh.close();
    }
  });

  it('refuses a bearer token on a route with senderConstrained: mtls, and takes a certificate-bound one from its holder', async () => {
    const bearer = await as.mintAccessToken({ jti: 'strict-bearer' });
    const refusal = await get(bearer, asAlice, '/strict');
    expect(refusal).toEqual({ ...refused('GH_ERR_AUTHZ_SENDER_CONSTRAINT_REQUIRED'), challenge: expect.stringMatching(/^Bearer realm="gatehouse", error="invalid_token"/) });
    const bound = await as.mintAccessToken({ cnf: { 'x5t#S256': thumbprint(alice.certPem) }, jti: 'strict-bound' });
    expect(await get(bound, asAlice, '/strict')).toMatchObject({ status: 200, reachedUpstream: true });
    expect(await get(bound, asBob, '/strict')).toEqual(refused('GH_ERR_JWT_SENDER_CONSTRAINED'));
  });

  it('accepts a token without cnf with or without a client certificate', async () => {
    const token = await as.mintAccessToken({ jti: 'plain-bearer' });
    expect(await get(token, anonymous)).toMatchObject({ status: 200, reachedUpstream: true });
    expect(await get(token, asBob)).toMatchObject({ status: 200, reachedUpstream: true });
  });
});
