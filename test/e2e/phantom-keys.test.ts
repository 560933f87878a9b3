import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS as S, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/** The gateway's own signing keys end to end: persistence across restarts, rotation by reload. */

let as: AuthorizationServer;
let upstream: TestUpstream;

beforeAll(async () => {
  as = await startAuthorizationServer();
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream?.close();
  await as?.stop();
});

function yaml(gateway: string): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - name: opaque
    issuer: ${as.issuer}
    audiences: [https://api.example.com]
    introspection: { endpoint: ${as.introspectionEndpoint}, clientId: gateway, clientSecret: ${S.gateway} }
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: orders, path: /orders, upstream: api, scopes: [orders:read] }
gateway: { issuer: https://gatehouse.test, ${gateway} }
`;
}

async function jwks(gw: TestGateway): Promise<JWK[]> {
  const res = await request(`${gw.adminUrl}/.well-known/jwks.json`);
  return ((await res.body.json()) as { keys: JWK[] }).keys;
}

/** One request with a fresh opaque token; returns the JWT the upstream received. */
async function upstreamJwt(gw: TestGateway): Promise<string> {
  const token = await as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');
  const res = await request(`${gw.url}/orders`, { headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  expect(res.statusCode).toBe(200);
  return String(upstream.requests.at(-1)!.headers.authorization).slice(7);
}

describe('generated gateway keys', () => {
  it('are generated on first start and the same after a restart', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-phantom-keys-'));
    const first = await startTestGateway(yaml('keyDirectory: state/keys'), { dir });
    const kid = decodeProtectedHeader(await upstreamJwt(first)).kid;
    expect((await jwks(first)).map((k) => k.kid)).toEqual([kid]);
    await first.close();
    const second = await startTestGateway(yaml('keyDirectory: state/keys'), { dir });
    try {
      expect((await jwks(second)).map((k) => k.kid)).toEqual([kid]);
      expect(decodeProtectedHeader(await upstreamJwt(second)).kid).toBe(kid);
    } finally {
      await second.close();
    }
  });
});

describe('configured gateway keys, rotated by reload', () => {
  it('signs with the new first key, keeps the old one published, and keeps the old plan on a broken reload', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-phantom-keys-'));
    for (const name of ['old', 'new']) {
      writeFileSync(path.join(dir, `${name}.pem`), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    }
    const gw = await startTestGateway(yaml('signingKeys: [old.pem]'), { dir });
    try {
      const before = await upstreamJwt(gw);
      const oldKid = decodeProtectedHeader(before).kid;
      expect((await jwks(gw)).map((k) => k.kid)).toEqual([oldKid]);

      await gw.reload(yaml('signingKeys: [new.pem, old.pem]'));
      const published = await jwks(gw);
      expect(published).toHaveLength(2);
      const after = await upstreamJwt(gw);
      const newKid = decodeProtectedHeader(after).kid;
      expect(newKid).not.toBe(oldKid);
      expect(published.map((k) => k.kid)).toEqual([newKid, oldKid]);
      const set = createLocalJWKSet({ keys: published });
      await jwtVerify(before, set, { issuer: 'https://gatehouse.test' });
      await jwtVerify(after, set, { issuer: 'https://gatehouse.test' });

      await expect(gw.reload(yaml('signingKeys: [missing.pem]'))).rejects.toThrow(/missing\.pem/);
      expect((await jwks(gw)).map((k) => k.kid)).toEqual([newKid, oldKid]);
      expect(decodeProtectedHeader(await upstreamJwt(gw)).kid).toBe(newKid);
    } finally {
      await gw.close();
    }
  });
});
