import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { jwks, mint, testKey } from '../authn/jwt-fixtures.js';

/**
 * A claim rule that is not boolean (the type checker sees `dyn`) or that fails on request data
 * denies with 403; the log line says which rule and what kind of result, never the value: the
 * value can be a token or a cookie (docs/lifecycle.md: "never a token or cookie value").
 */
const key = testKey('ES256');
const COOKIE_VALUE = 'COOKIEVAL-5f1c0e9a';

let upstream: TestUpstream;
let keys: JwksServer;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  keys = await startJwksServer(jwks(key));
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: ${keys.url}, audiences: [https://api.example.test], algorithms: [ES256] }
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - name: value
    path: /value
    upstream: api
    claims: [ 'request.headers["authorization"]' ]
  - name: error
    path: /error
    upstream: api
    claims:
      - claims.sub != ""
      - 'duration(request.headers.cookie) > duration("1s")'
`);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await keys?.close();
});

async function denied(path: string, headers: Record<string, string>) {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}${path}`, { headers });
  const body = (await res.body.json()) as { code: string };
  expect(res.statusCode).toBe(403);
  expect(body.code).toBe('GH_ERR_AUTHZ_CLAIM_DENIED');
  expect(upstream.requests.length).toBe(before);
  const line = gw.logs.findLast((l) => l.reason === 'GH_ERR_AUTHZ_CLAIM_DENIED' && l.route === path.slice(1));
  expect(line, JSON.stringify(gw.logs.slice(-3))).toBeDefined();
  return line!;
}

describe('claim-rule denials in the log', () => {
  it('a rule that returns the Authorization header: 403, the log names the rule and the type, not the token', async () => {
    const token = mint(key, Date.now());
    const line = await denied('/value', { authorization: `Bearer ${token}` });
    expect(line.detail).toBe('claims[0] "request.headers[\\"authorization\\"]" returned a string, not true');
    const everything = JSON.stringify(gw.logs);
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(token.split('.')[2]);
  });

  it('a rule that fails on a cookie value: 403, the log names the rule and the error class, not the cookie', async () => {
    const token = mint(key, Date.now());
    const line = await denied('/error', { authorization: `Bearer ${token}`, cookie: `id=${COOKIE_VALUE}` });
    expect(line.detail).toBe('claims[1] "duration(request.headers.cookie) > duration(\\"1s\\")" failed: EvaluationError invalid_duration');
    const everything = JSON.stringify(gw.logs);
    expect(everything).not.toContain(COOKIE_VALUE);
    expect(everything).not.toContain(token);
  });
});
