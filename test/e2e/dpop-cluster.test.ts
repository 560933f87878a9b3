import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { boundToken, dpopClient, dpopProof } from '../helpers/dpop.js';
import { startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * DPoP across processes: `gatehouse start --workers 2` (the built CLI, as a user runs it). Each
 * worker has its own memory; with a top-level `redis` a proof replayed on new connections (the
 * primary hands them to the workers in turn) must be refused by every worker, and while Redis
 * cannot answer a new proof gets 503 (`redis.onError: failClosed`), never a pass. With
 * `dpop.nonce` and no secret, the primary hands every worker the same key, so a nonce one worker
 * gave out is good on the other.
 */
const AUDIENCE = 'https://api.example.com';

let as: AuthorizationServer;
let upstream: TestUpstream;
let redis: TestRedis;
const started: Cluster[] = [];

beforeAll(async () => {
  [as, upstream, redis] = await Promise.all([startAuthorizationServer({ audience: AUDIENCE, signingAlg: 'ES256' }), startUpstream(), startRedis()]);
}, 60_000);

afterAll(async () => {
  for (const gateway of started) {
    if (gateway.child.exitCode === null) {
      gateway.child.kill('SIGTERM');
      await gateway.exited;
    }
  }
  await Promise.all([as?.stop(), upstream?.close(), redis?.stop()]);
});

/** `gatehouse start --workers 2` with one DPoP route and `extra` config; its listener's URL. */
async function launch(extra: string): Promise<{ gateway: Cluster; url: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-dpop-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: jwt, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [${AUDIENCE}], algorithms: [ES256] }
upstreams: [ { name: api, url: ${upstream.url} } ]
routes: [ { name: orders, path: /orders, upstream: api } ]
${extra}
`,
  );
  const gateway = startCluster(file, '2');
  started.push(gateway);
  const lines = await gateway.waitFor((l) => l.msg === 'gatehouse started', 2, 30_000);
  return { gateway, url: Object.values(lines[0]!.listeners as Record<string, string>)[0]! };
}

/** GET /orders on a connection of its own, so that the primary picks a worker for it. */
function freshGet(url: string, headers: Record<string, string>): Promise<{ status: number; code?: string; nonce?: string; id: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/orders`, { agent: false, headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          code: res.statusCode === 200 ? undefined : (JSON.parse(body) as { code: string }).code,
          nonce: res.headers['dpop-nonce'] as string | undefined,
          id: String(res.headers['x-request-id']),
        }),
      );
    });
    req.on('error', reject);
  });
}

describe('DPoP proofs with --workers 2 and a shared Redis', () => {
  let gateway: Cluster;
  let url: string;
  beforeAll(async () => {
    ({ gateway, url } = await launch(`redis: { url: ${redis.url}, onError: failClosed }`));
  }, 60_000);

  it('refuses a replayed proof on every worker', async () => {
    const alice = dpopClient();
    const { token } = await boundToken(as, alice, 'demo-client', AUDIENCE);
    const proof = await dpopProof(alice, 'GET', `${url}/orders`, token);
    const headers = { authorization: `DPoP ${token}`, dpop: proof };
    expect(await freshGet(url, headers)).toMatchObject({ status: 200, code: undefined });
    const before = upstream.requests.length;
    for (let i = 0; i < 6; i++) expect(await freshGet(url, headers)).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_PROOF_REPLAYED' });
    expect(upstream.requests.length).toBe(before);
    // Both workers refused it (the primary hands new connections out in turn). A worker's
    // request ids share a random prefix; only the counter at the end differs.
    await new Promise((r) => setTimeout(r, 300)); // the workers' log lines
    const refusing = gateway.lines.filter((l) => l.msg === 'request' && l.reason === 'GH_ERR_DPOP_PROOF_REPLAYED');
    expect(refusing).toHaveLength(6);
    expect(new Set(refusing.map((l) => String(l.req_id).slice(0, 24))).size).toBe(2);
  });

  it('answers 503 while Redis is down (failClosed), and serves again once it is back', async () => {
    const alice = dpopClient();
    const { token } = await boundToken(as, alice, 'demo-client', AUDIENCE);
    const call = async () => freshGet(url, { authorization: `DPoP ${token}`, dpop: await dpopProof(alice, 'GET', `${url}/orders`, token) });
    redis.pause();
    try {
      for (let i = 0; i < 2; i++) expect(await call()).toMatchObject({ status: 503, code: 'GH_ERR_DPOP_REPLAY_STORE_UNAVAILABLE' });
    } finally {
      redis.resume();
    }
    let last = { status: 0 } as { status: number; code?: string };
    for (let i = 0; i < 40 && last.status !== 200; i++) {
      last = await call();
      if (last.status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(last).toMatchObject({ status: 200, code: undefined });
  });
});

describe('DPoP nonces (dpop.nonce, no secret) with --workers 2', () => {
  it('a nonce from one worker is good on both', async () => {
    const { url } = await launch('dpop: { nonce: true }');
    const alice = dpopClient();
    const { token } = await boundToken(as, alice, 'demo-client', AUDIENCE);
    const proof = (claims: Record<string, unknown> = {}) => dpopProof(alice, 'GET', `${url}/orders`, token, claims);
    const first = await freshGet(url, { authorization: `DPoP ${token}`, dpop: await proof() });
    expect(first).toMatchObject({ status: 401, code: 'GH_ERR_DPOP_NONCE_REQUIRED' });
    expect(first.nonce).toBeDefined();
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await freshGet(url, { authorization: `DPoP ${token}`, dpop: await proof({ nonce: first.nonce }) }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    // Both workers answered (a worker's request ids share a random prefix).
    expect(new Set(answers.map((a) => a.id.slice(0, 24))).size).toBe(2);
  }, 60_000);
});
