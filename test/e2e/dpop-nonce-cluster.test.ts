import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { boundToken, dpopClient, dpopProof } from '../helpers/dpop.js';
import { startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * `dpop.nonce` without a secret under `gatehouse start --workers 2`: the primary hands every
 * worker the same key, so a nonce one worker gave out is good on the other (new connections go
 * to the workers in turn).
 */
const AUDIENCE = 'https://api.example.com';
let as: AuthorizationServer;
let upstream: TestUpstream;
let gateway: Cluster;
let url: string;

beforeAll(async () => {
  [as, upstream] = await Promise.all([startAuthorizationServer({ audience: AUDIENCE, signingAlg: 'ES256' }), startUpstream()]);
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-dpop-nonce-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: jwt, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [${AUDIENCE}], algorithms: [ES256] }
upstreams: [ { name: api, url: ${upstream.url} } ]
routes: [ { name: orders, path: /orders, upstream: api } ]
dpop: { nonce: true }
`,
  );
  gateway = startCluster(file, '2');
  const started = await gateway.waitFor((l) => l.msg === 'gatehouse started', 2, 30_000);
  url = Object.values(started[0]!.listeners as Record<string, string>)[0]!;
}, 60_000);

afterAll(async () => {
  if (gateway && gateway.child.exitCode === null) {
    gateway.child.kill('SIGTERM');
    await gateway.exited;
  }
  await Promise.all([as?.stop(), upstream?.close()]);
});

/** GET /orders on a connection of its own, so that the primary picks a worker for it. */
function freshGet(headers: Record<string, string>): Promise<{ status: number; nonce?: string; id: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/orders`, { agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, nonce: res.headers['dpop-nonce'] as string | undefined, id: String(res.headers['x-request-id']) }));
    });
    req.on('error', reject);
  });
}

describe('DPoP nonces with --workers 2', () => {
  it('a nonce from one worker is good on both', async () => {
    const alice = dpopClient();
    const { token } = await boundToken(as, alice, 'demo-client', AUDIENCE);
    const proof = (claims: Record<string, unknown> = {}) => dpopProof(alice, 'GET', `${url}/orders`, token, claims);
    const first = await freshGet({ authorization: `DPoP ${token}`, dpop: await proof() });
    expect(first.status).toBe(401);
    expect(first.nonce).toBeDefined();
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await freshGet({ authorization: `DPoP ${token}`, dpop: await proof({ nonce: first.nonce }) }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    // Both workers answered (a worker's request ids share a random prefix).
    expect(new Set(answers.map((a) => a.id.slice(0, 24))).size).toBe(2);
  });
});
