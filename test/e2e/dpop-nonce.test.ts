import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNonceIssuer } from '../../src/authn/dpop-nonce.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { boundToken, dpopClient, dpopProof } from '../helpers/dpop.js';
import { issuesOf } from '../helpers/config.js';

/**
 * Server-provided DPoP nonces (RFC 9449 §9, `dpop.nonce`): with the real oidc-provider binding
 * tokens to the client's key, a proof without the gateway's nonce is refused with
 * `use_dpop_nonce` and the nonce to use; the client's retry with it goes through.
 */
const AUDIENCE = 'https://api.example.com';
const SECRET = 'a-dpop-nonce-secret-of-at-least-32-characters';
let as: AuthorizationServer;
let upstream: TestUpstream;
let gw: TestGateway;
let twin: TestGateway;
let stranger: TestGateway;

const yaml = (secret: string) => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: jwt, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [${AUDIENCE}], algorithms: [ES256] }
upstreams: [{ name: api, url: ${upstream.url} }]
dpop: { nonce: { secret: "${secret}", lifetime: 1m } }
routes:
  - { name: orders, path: /orders, upstream: api, senderConstrained: dpop }
`;

beforeAll(async () => {
  [as, upstream] = await Promise.all([startAuthorizationServer({ audience: AUDIENCE, signingAlg: 'ES256' }), startUpstream()]);
  gw = await startTestGateway(yaml(SECRET));
  twin = await startTestGateway(yaml(SECRET));
  stranger = await startTestGateway(yaml('another-secret-of-at-least-32-characters!!'));
});

afterAll(async () => {
  await Promise.all([gw?.close(), twin?.close(), stranger?.close()]);
  await Promise.all([as?.stop(), upstream?.close()]);
});

async function call(g: TestGateway, token: string, proof: string) {
  const before = upstream.requests.length;
  const res = await request(`${g.url}/orders`, { headers: { authorization: `DPoP ${token}`, dpop: proof } });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    code: res.statusCode === 200 ? undefined : (JSON.parse(text) as { code: string }).code,
    challenge: String(res.headers['www-authenticate'] ?? ''),
    nonce: res.headers['dpop-nonce'] as string | undefined,
    reachedUpstream: upstream.requests.length > before,
  };
}

describe('dpop.nonce', () => {
  const alice = dpopClient();
  let token: string;
  beforeAll(async () => {
    token = (await boundToken(as, alice, 'demo-client', AUDIENCE)).token;
  });

  it('refuses a proof without a nonce with use_dpop_nonce and the nonce to use; the retry with it goes through', async () => {
    const first = await call(gw, token, await dpopProof(alice, 'GET', `${gw.url}/orders`, token));
    expect(first).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_NONCE_REQUIRED', reachedUpstream: false });
    expect(first.challenge).toMatch(/^DPoP realm="gatehouse", error="use_dpop_nonce", error_description="[^"]+", algs="/);
    expect(first.nonce).toMatch(/^[0-9a-z]+\.[A-Za-z0-9_-]{27}$/);

    const retry = await call(gw, token, await dpopProof(alice, 'GET', `${gw.url}/orders`, token, { nonce: first.nonce }));
    expect(retry).toMatchObject({ status: 200, reachedUpstream: true });
    // The nonce is current: no new one is offered.
    expect(retry.nonce).toBeUndefined();
    // It is good for further proofs in its window (each proof still new: a replay is refused).
    const again = await dpopProof(alice, 'GET', `${gw.url}/orders`, token, { nonce: first.nonce });
    expect((await call(gw, token, again)).status).toBe(200);
    expect(await call(gw, token, again)).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_PROOF_REPLAYED' });
  });

  it('refuses a nonce it did not issue: made up, tampered with, or made with another secret', async () => {
    const good = (await call(gw, token, await dpopProof(alice, 'GET', `${gw.url}/orders`, token))).nonce!;
    const tampered = `${good.slice(0, -3)}${good.endsWith('AAA') ? 'BBB' : 'AAA'}`;
    const foreign = createNonceIssuer(60_000, 'yet-another-secret-of-at-least-32-chars').current(Date.now());
    for (const nonce of ['made-up', tampered, foreign, 42]) {
      const answer = await call(gw, token, await dpopProof(alice, 'GET', `${gw.url}/orders`, token, { nonce }));
      expect(answer).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_NONCE_REQUIRED', reachedUpstream: false });
      expect(answer.nonce).toBe(good);
    }
  });

  it('a nonce is good on every gateway with the same secret, and on no other', async () => {
    const nonce = (await call(gw, token, await dpopProof(alice, 'GET', `${gw.url}/orders`, token))).nonce!;
    expect((await call(twin, token, await dpopProof(alice, 'GET', `${twin.url}/orders`, token, { nonce }))).status).toBe(200);
    const elsewhere = await call(stranger, token, await dpopProof(alice, 'GET', `${stranger.url}/orders`, token, { nonce }));
    expect(elsewhere).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_NONCE_REQUIRED' });
    expect(elsewhere.nonce).not.toBe(nonce);
  });

  it('an invalid proof is still invalid_dpop_proof, nonce or not (the nonce is no way around the proof checks)', async () => {
    const nonce = (await call(gw, token, await dpopProof(alice, 'GET', `${gw.url}/orders`, token))).nonce!;
    const wrongMethod = await call(gw, token, await dpopProof(alice, 'POST', `${gw.url}/orders`, token, { nonce }));
    expect(wrongMethod).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_PROOF_INVALID' });
    const mallory = dpopClient();
    expect(await call(gw, token, await dpopProof(mallory, 'GET', `${gw.url}/orders`, token, { nonce }))).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_KEY_MISMATCH' });
  });
});

describe('nonce windows', () => {
  const lifetime = 60_000;
  const nonces = createNonceIssuer(lifetime, 'a-secret-for-the-window-tests-0123456789');
  const t0 = 1_800_000_000_000 - (1_800_000_000_000 % lifetime);

  it('a nonce is current in its window, previous in the next (and a newer one is offered), expired after', () => {
    const n = nonces.current(t0 + 5_000);
    expect(nonces.current(t0 + 59_999)).toBe(n);
    expect(nonces.check(n, t0 + 59_999)).toBe('current');
    expect(nonces.check(n, t0 + 60_000)).toBe('previous');
    expect(nonces.current(t0 + 60_000)).not.toBe(n);
    expect(nonces.check(n, t0 + 119_999)).toBe('previous');
    expect(nonces.check(n, t0 + 120_000)).toBe('expired');
    expect(nonces.check(n, t0 + 10 * lifetime)).toBe('expired');
    // A gateway whose clock runs a little ahead handed it out: good here too.
    expect(nonces.check(nonces.current(t0 + lifetime), t0 + 1)).toBe('current');
    expect(nonces.check(nonces.current(t0 + 2 * lifetime), t0 + 1)).toBe('expired');
  });

  it('refuses what is not a nonce without throwing', () => {
    for (const junk of ['', '.', 'x.', `.${'A'.repeat(27)}`, `zzzzzzzzzzzzzzzz.${'A'.repeat(27)}`, `-1.${'A'.repeat(27)}`, `1e3.${'A'.repeat(27)}`, 'a'.repeat(10_000)]) {
      expect(nonces.check(junk, t0)).toBe('unknown');
    }
  });
});

describe('dpop.nonce at load', () => {
  const config = (nonce: string) => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
dpop: { nonce: ${nonce} }
routes: [ { name: all, path: /, upstream: api, public: true } ]
`;
  it('refuses a short secret, a lifetime under 10s or over 1h, and an unknown key, at its key and line', () => {
    expect(issuesOf(config('{ secret: short }'))[0]).toMatchObject({ path: 'dpop.nonce.secret', line: 3 });
    expect(issuesOf(config('{ lifetime: 5s }'))[0]).toMatchObject({ path: 'dpop.nonce.lifetime', line: 3 });
    expect(issuesOf(config('{ lifetime: 2h }'))[0]).toMatchObject({ path: 'dpop.nonce.lifetime', line: 3 });
    expect(issuesOf(config('{ lifetme: 1m }'))[0]).toMatchObject({ path: 'dpop.nonce.lifetme', line: 3 });
    expect(issuesOf(config('true'))).toEqual([]);
  });
});
