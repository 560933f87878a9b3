import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTokenInspect } from '../../src/cli/token-inspect.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { jwks, mint, testKey } from './jwt-fixtures.js';

const rs = testKey('RS256');
let keys: JwksServer;
let file: string;

beforeAll(async () => {
  keys = await startJwksServer(jwks(rs, { ...testKey('ES256', 'enc').jwk, use: 'enc' }));
  file = writeConfig(keys.url);
});
afterAll(() => keys.close());

function writeConfig(jwksUri: string, extra = ''): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-inspect-'));
  const f = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    f,
    `listen: { port: 0 }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: ${jwksUri}, audiences: [https://api.example.test], fetchTimeout: 1s }
upstreams:
  - { name: api, url: http://127.0.0.1:1 }
routes:
  - { name: orders, path: /orders, upstream: api, scopes: [orders:read] }
  - { name: admin, path: /admin, upstream: api, scopes: [orders:admin] }
${extra}`,
  );
  return f;
}

async function inspect(configFile: string, token: string, stdin?: string): Promise<{ code: number; text: string }> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d) => (text += d));
  const input = new PassThrough();
  input.end(stdin ?? '');
  const code = await runTokenInspect(configFile, token, out, { stdin: input });
  return { code, text };
}

describe('gatehouse token inspect', () => {
  it('explains every check of a valid token and exits 0, without printing the token', async () => {
    const token = mint(rs, Date.now());
    const { code, text } = await inspect(file, token);
    expect(code).toBe(0);
    for (const check of ['structure', 'issuer', 'size', 'header', 'keys', 'key', 'signature', 'claim exp', 'claim aud', 'claim iat']) {
      expect(text).toMatch(new RegExp(`ok {4}${check}:`));
    }
    expect(text).toMatch(/not used: key enc: use is "enc"/);
    expect(text).toMatch(/admin \(\/admin\): missing scope orders:admin/);
    expect(text).toMatch(/result: VALID/);
    expect(text).not.toContain(token.split('.')[2]);
  });

  it('says what a sender-constrained token needs, and fails one bound in a way gatehouse cannot check', async () => {
    const thumbprint = 'A'.repeat(43);
    const bound = await inspect(file, mint(rs, Date.now(), { cnf: { 'x5t#S256': thumbprint } }));
    expect(bound.code).toBe(0);
    expect(bound.text).toContain(`ok    claim cnf: bound to a client certificate (x5t#S256 ${thumbprint}): accepted only over mutual TLS`);
    const plain = await inspect(file, mint(rs, Date.now()));
    expect(plain.text).toContain('ok    claim cnf: absent (a bearer token)');
    // DPoP (RFC 9449): the token is valid; what each request needs is said.
    const dpop = await inspect(file, mint(rs, Date.now(), { cnf: { jkt: thumbprint } }));
    expect(dpop.code).toBe(0);
    expect(dpop.text).toContain(`ok    claim cnf: bound to a DPoP key (jkt ${thumbprint}): accepted only as "Authorization: DPoP" with a DPoP proof signed by that key`);
    // A binding gatehouse cannot check fails.
    const other = await inspect(file, mint(rs, Date.now(), { cnf: { jwk: { kty: 'EC' } } }));
    expect(other.code).toBe(1);
    expect(other.text).toMatch(/FAIL {2}claim cnf: cnf jwk cannot be checked by gatehouse .*GH_ERR_JWT_SENDER_CONSTRAINED, HTTP 401/);
    expect(other.text).toMatch(/result: INVALID/);
  });

  it('reads the token from stdin when it is given as -', async () => {
    const { code, text } = await inspect(file, '-', `Bearer ${mint(rs, Date.now())}\n`);
    expect(code).toBe(0);
    expect(text).toMatch(/result: VALID/);
  });

  it('names the failing check and its error code (expired)', async () => {
    const { code, text } = await inspect(file, mint(rs, Date.now(), { exp: Math.floor(Date.now() / 1000) - 3600 }));
    expect(code).toBe(1);
    expect(text).toMatch(/FAIL {2}claim exp: .*GH_ERR_JWT_EXPIRED/);
    expect(text).toMatch(/ok {4}signature/);
    expect(text).toMatch(/result: INVALID/);
  });

  it('reports every failing claim, not only the first', async () => {
    const { code, text } = await inspect(file, mint(rs, Date.now(), { aud: 'https://other', nbf: Math.floor(Date.now() / 1000) + 3600 }));
    expect(code).toBe(1);
    expect(text).toMatch(/GH_ERR_JWT_AUDIENCE_INVALID/);
    expect(text).toMatch(/GH_ERR_JWT_NOT_YET_VALID/);
  });

  it('says which key check fails for an unknown kid and a bad signature', async () => {
    expect((await inspect(file, mint(testKey('RS256', 'ghost'), Date.now()))).text).toMatch(/GH_ERR_JWT_KID_UNKNOWN/);
    expect((await inspect(file, mint({ ...testKey('RS256', 'impostor'), kid: rs.kid }, Date.now()))).text).toMatch(/FAIL {2}signature: .*GH_ERR_JWT_SIGNATURE_INVALID/);
  });

  it('refuses a forbidden header and an unknown issuer', async () => {
    expect((await inspect(file, mint(rs, Date.now(), {}, { jku: 'https://evil' }))).text).toMatch(/FAIL {2}header: .*GH_ERR_JWT_HEADER_NOT_ALLOWED/);
    const unknown = await inspect(file, mint(rs, Date.now(), { iss: 'https://evil.example' }));
    expect(unknown.code).toBe(1);
    expect(unknown.text).toMatch(/GH_ERR_JWT_ISSUER_UNKNOWN/);
  });

  it('says the token is not a JWT', async () => {
    const r = await inspect(file, 'opaque-reference-token');
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/GH_ERR_JWT_MALFORMED/);
  });

  it('exits 2 when the key set cannot be fetched, after checking the claims anyway', async () => {
    const dead = writeConfig('http://127.0.0.1:1/jwks');
    const r = await inspect(dead, mint(rs, Date.now()));
    expect(r.code).toBe(2);
    expect(r.text).toMatch(/GH_ERR_AUTH_KEYS_UNAVAILABLE/);
    expect(r.text).toMatch(/ok {4}claim exp/);
    expect(r.text).toMatch(/result: UNDECIDED/);
    const expired = await inspect(dead, mint(rs, Date.now(), { exp: 1 }));
    expect(expired.code).toBe(1);
    expect(expired.text).toMatch(/GH_ERR_JWT_EXPIRED/);
  });

  it('exits 3 with located messages for a broken config', async () => {
    const r = await inspect(writeConfig(keys.url, 'bogus: 1'), mint(rs, Date.now()));
    expect(r.code).toBe(3);
    expect(r.text).toMatch(/bogus/);
  });
});
