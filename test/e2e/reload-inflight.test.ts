import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * A reload while a request waits in an asynchronous stage (here: an introspection call that
 * takes longer than a second): the request keeps the plan it started with, whose pools stay
 * open until it is done ("Requests already running keep the plan they started with",
 * docs/lifecycle.md). The old plan closed on a fixed one-second timer, and such a request then
 * met a destroyed pool: 502 UND_ERR_DESTROYED.
 */
let api: TestUpstream;
let introspection: http.Server;
let delayMs = 0;
let gw: TestGateway;
const keyDirectory = mkdtempSync(path.join(tmpdir(), 'gatehouse-reload-keys-'));

const yaml = (asUrl: string, extraRoutes = '') => `
listen: { host: 127.0.0.1, port: 0 }
limits: { shutdownTimeout: 10s }
issuers:
  - name: op
    issuer: ${asUrl}
    audiences: [api]
    introspection: { endpoint: ${asUrl}/introspect, clientId: gw, clientSecret: s, cacheTtl: 0s, timeout: 5s }
upstreams:
  - { name: api, url: ${api.url} }
routes:
  - { name: a, path: /a, upstream: api, issuers: [op] }
${extraRoutes}
gateway: { issuer: https://gw.test, keyDirectory: ${keyDirectory} }
`;

let asUrl = '';
beforeAll(async () => {
  api = await startUpstream();
  introspection = http.createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ active: true, sub: 'alice', scope: 'r', aud: 'api', exp: Math.floor(Date.now() / 1000) + 600 }));
      }, delayMs),
    );
  });
  await new Promise<void>((resolve) => introspection.listen(0, '127.0.0.1', resolve));
  asUrl = `http://127.0.0.1:${(introspection.address() as AddressInfo).port}`;
  gw = await startTestGateway(yaml(asUrl));
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await new Promise<void>((resolve) => introspection.close(() => resolve()));
});

async function call(p: string): Promise<{ status: number; text: string }> {
  const res = await request(`${gw.url}${p}`, { headers: { authorization: 'Bearer opaque-token-abc' } });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('reload with a request waiting in a stage', () => {
  it('the request finishes on its own plan after the reload, with a 200', async () => {
    expect((await call('/a/warm')).status).toBe(200);
    delayMs = 1800;
    const waiting = call('/a/slow');
    await new Promise((r) => setTimeout(r, 200));
    await gw.reload(yaml(asUrl, '  - { name: b, path: /b, upstream: api, public: true }'));
    delayMs = 0;
    expect((await call('/b')).status).toBe(200); // the new plan serves new requests at once
    const answer = await waiting;
    expect(answer.status, answer.text).toBe(200);
    expect(gw.logs.some((l) => l.reason === 'GH_ERR_UPSTREAM_FAILED')).toBe(false);
  });
});
