import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { JWK } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS as S, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * The three ways gatehouse authenticates to a real introspection endpoint (oidc-provider):
 * client_secret_basic (the other e2e file), client_secret_post and private_key_jwt; and what a
 * wrong credential does (503, never a pass).
 */

let as: AuthorizationServer;
let upstream: TestUpstream;
const gateways: TestGateway[] = [];
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const SECRET = 'a secret with : and % and spaces';

beforeAll(async () => {
  as = await startAuthorizationServer();
  upstream = await startUpstream();
  await as.registerClient({
    client_id: 'gateway-post',
    client_secret: SECRET,
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  });
  await as.registerClient({
    client_id: 'gateway-basic',
    client_secret: SECRET,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  });
  await as.registerClient({
    client_id: 'gateway-jwt',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: { keys: [{ ...(key.publicKey.export({ format: 'jwk' }) as JWK), kid: 'gw-1', alg: 'ES256', use: 'sig' }] },
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  } as never);
});

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  await upstream?.close();
  await as?.stop();
});

async function gateway(introspection: string, dir?: string): Promise<TestGateway> {
  const gw = await startTestGateway(
    `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - name: opaque
    issuer: ${as.issuer}
    audiences: [https://api.example.com]
    introspection: { endpoint: ${as.introspectionEndpoint}, cacheTtl: 0, ${introspection} }
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: orders, path: /orders, upstream: api, scopes: [orders:read] }
gateway: { keyDirectory: keys }
`,
    { env: { GW_SECRET: SECRET }, ...(dir ? { dir } : {}) },
  );
  gateways.push(gw);
  return gw;
}

async function status(gw: TestGateway, token: string): Promise<{ status: number; code: unknown }> {
  const res = await request(`${gw.url}/orders`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.body.json().catch(() => ({}))) as { code?: unknown };
  return { status: res.statusCode, code: body.code };
}

const opaque = () => as.clientCredentialsToken('demo-opaque', S['demo-opaque'], 'orders:read');

describe('client authentication at the introspection endpoint', () => {
  it('client_secret_basic with a secret that needs form-urlencoding (RFC 6749 §2.3.1)', async () => {
    const gw = await gateway('clientId: gateway-basic, clientSecret: "${GW_SECRET}"');
    expect(await status(gw, await opaque())).toEqual({ status: 200, code: undefined });
  });

  it('client_secret_post', async () => {
    const gw = await gateway('clientId: gateway-post, clientSecret: "${GW_SECRET}", authMethod: client_secret_post');
    expect((await status(gw, await opaque())).status).toBe(200);
  });

  it('private_key_jwt with a PEM key file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-pkjwt-'));
    writeFileSync(path.join(dir, 'gateway.pem'), key.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    const gw = await gateway('clientId: gateway-jwt, authMethod: private_key_jwt, privateKey: gateway.pem', dir);
    expect((await status(gw, await opaque())).status).toBe(200);
    expect((await status(gw, await opaque())).status).toBe(200);
  });

  it('a wrong secret is 503 (the gateway is misconfigured), never a pass and never a 401 for the client', async () => {
    const gw = await gateway('clientId: gateway-basic, clientSecret: wrong');
    const before = upstream.requests.length;
    expect(await status(gw, await opaque())).toEqual({ status: 503, code: 'GH_ERR_INTROSPECTION_UNAVAILABLE' });
    expect(upstream.requests.length).toBe(before);
  });

  it('an assertion signed with a key the server does not know is 503, never a pass', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-pkjwt-'));
    writeFileSync(path.join(dir, 'other.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const gw = await gateway('clientId: gateway-jwt, authMethod: private_key_jwt, privateKey: other.pem', dir);
    const before = upstream.requests.length;
    expect(await status(gw, await opaque())).toEqual({ status: 503, code: 'GH_ERR_INTROSPECTION_UNAVAILABLE' });
    expect(upstream.requests.length).toBe(before);
  });
});
