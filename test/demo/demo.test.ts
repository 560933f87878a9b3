import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startDemo, type Demo } from '../../src/demo/main.js';
import { DEMO_CLIENT_SECRETS } from '../../src/demo/authorization-server.js';

// The README's first command: the demo must keep working end to end.
let demo: Demo;
let dispatcher: Agent;
let caFile: string | undefined;
const caPem = () => (caFile ? readFileSync(caFile) : undefined);

beforeAll(async () => {
  demo = await startDemo({ quiet: true, ports: { gateway: 0, admin: 0, issuer: 0, api: 0, spa: 0 } });
  caFile = /--cacert (\S+)/.exec(demo.instructions)?.[1];
  dispatcher = new Agent({ connect: caFile ? { ca: readFileSync(caFile) } : {} });
});
afterAll(async () => {
  await dispatcher?.close();
  await demo?.close();
});

async function token(client: keyof typeof DEMO_CLIENT_SECRETS, scope: string): Promise<string> {
  return demo.issuer.clientCredentialsToken(client, DEMO_CLIENT_SECRETS[client], scope);
}

async function call(p: string, init: { method?: string; token?: string } = {}) {
  const res = await request(`${demo.gateway.url}${p}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: init.token ? { authorization: `Bearer ${init.token}` } : {},
    dispatcher,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

describe('the demo (npm run demo)', () => {
  it('serves over HTTPS and prints curl lines with --cacert', () => {
    expect(demo.gateway.url).toMatch(/^https:\/\//);
    expect(demo.instructions).toMatch(/curl --cacert \S+ -i https:\/\/127\.0\.0\.1:\d+\/health/);
    expect(path.isAbsolute(demo.configFile)).toBe(true);
  });

  it('answers a public route', async () => {
    expect((await call('/health')).status).toBe(200);
  });

  it('answers 401 with a bare Bearer challenge without a token', async () => {
    const res = await call('/orders');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="gatehouse"');
  });

  it('answers 200 with a token carrying orders:read, and 403 insufficient_scope where orders:write is needed', async () => {
    const t = await token('demo-client', 'orders:read');
    expect((await call('/orders', { token: t })).status).toBe(200);
    const denied = await call('/orders', { method: 'POST', token: t });
    expect(denied.status).toBe(403);
    expect(denied.headers['www-authenticate']).toContain('error="insufficient_scope"');
    expect(denied.headers['www-authenticate']).toContain('scope="orders:write"');
  });

  it("passes on the sample API's 413 for a body over its 64 KiB (within the gateway's 1 MiB), over HTTP/1.1 and HTTP/2", async () => {
    const admin = await token('demo-admin', 'orders:read orders:write');
    const body = JSON.stringify({ item: 'x'.repeat(500_000) });
    const h1 = await request(`${demo.gateway.url}/orders`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body,
      dispatcher,
    });
    expect(h1.statusCode).toBe(413);
    expect(((await h1.body.json()) as { error: string }).error).toBe('invalid_request');
    const h2dispatcher = new Agent({ allowH2: true, connect: { ca: caPem() } });
    try {
      for (let i = 0; i < 3; i++) {
        const h2 = await request(`${demo.gateway.url}/orders`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body,
          dispatcher: h2dispatcher,
        });
        expect(h2.statusCode).toBe(413);
        await h2.body.dump();
      }
    } finally {
      await h2dispatcher.close();
    }
  });

  it('turns an opaque token into a JWT for the sample API (phantom token)', async () => {
    const opaque = await token('demo-opaque', 'orders:read');
    expect(opaque.split('.')).toHaveLength(1);
    const res = await call('/opaque/orders', { token: opaque });
    expect(res.status).toBe(200);
    expect(res.text).not.toContain(opaque);
    expect(JSON.parse(res.text).caller.token).toBe('jwt');
  });

  it('serves the example SPA and its token handler starts a login (code flow + PKCE)', async () => {
    const page = await request(`${demo.spa.url}/`, { dispatcher });
    expect(page.statusCode).toBe(200);
    await page.body.dump();
    const res = await request(`${demo.gateway.url}/tokenhandler/login/start`, {
      method: 'POST',
      headers: { origin: demo.spa.url, 'content-type': 'application/json' },
      body: '{}',
      dispatcher,
    });
    expect(res.statusCode).toBe(200);
    const { authorizationRequestUrl } = (await res.body.json()) as { authorizationRequestUrl: string };
    const url = new URL(authorizationRequestUrl);
    expect(url.origin).toBe(demo.issuer.issuer);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('redirect_uri')).toBe(`${demo.spa.url}/callback`);
  });
});
