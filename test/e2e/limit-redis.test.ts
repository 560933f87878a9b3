import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { freePort, startRedis, type TestRedis } from '../limit/redis-server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

let redis: TestRedis;
let api: TestUpstream;

beforeAll(async () => {
  redis = await startRedis();
  api = await startUpstream();
});

afterAll(async () => {
  await api?.close();
  await redis?.stop();
});

function yaml(port: number | 0, extra = '') {
  return `
listen: { host: 127.0.0.1, port: ${port} }
log: { level: warn }
upstreams: [{ name: api, url: ${api.url} }]
redis: { url: '${redis.url}', timeout: 2s, keyPrefix: 'e2e-${port}-${Date.now()}:' }
rateLimits:
  - { name: strict, key: ip+route, limit: 3, window: 1h, onStoreError: failClosed }
  - { name: lenient, key: ip+route, limit: 3, window: 1h, onStoreError: failOpen }
routes:
  - { name: strict, path: /strict, upstream: api, public: true, rateLimits: [strict] }
  - { name: lenient, path: /lenient, upstream: api, public: true, rateLimits: [lenient] }
${extra}`;
}

async function status(url: string): Promise<{ status: number; code?: string; ratelimit?: string }> {
  const res = await request(url);
  const text = await res.body.text();
  const code = res.statusCode >= 400 ? (JSON.parse(text) as { code: string }).code : undefined;
  return { status: res.statusCode, code, ratelimit: res.headers.ratelimit as string | undefined };
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, ms = 10_000) {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('Redis-backed limits through the gateway', () => {
  let gw: TestGateway;
  afterAll(async () => {
    await gw?.close();
  });

  it('limits through Redis; with Redis killed failClosed answers 503 and failOpen admits; both recover', async () => {
    gw = await startTestGateway(yaml(0));
    for (let i = 0; i < 3; i++) expect((await status(`${gw.url}/strict`)).status).toBe(200);
    const limited = await status(`${gw.url}/strict`);
    expect(limited).toMatchObject({ status: 429, code: 'GH_ERR_LIMIT_RATE_EXCEEDED' });
    expect(limited.ratelimit).toMatch(/^"strict";r=0;t=(1200|1199|1198)$/);

    await redis.stop();
    const strict = await status(`${gw.url}/strict`);
    expect(strict).toMatchObject({ status: 503, code: 'GH_ERR_LIMIT_STORE_UNAVAILABLE' });
    const before = api.requests.length;
    for (let i = 0; i < 5; i++) expect((await status(`${gw.url}/lenient`)).status).toBe(200); // beyond its limit: not enforced while Redis is gone
    expect(api.requests.length - before).toBe(5);
    expect(gw.logs.some((l) => l.msg === 'redis limiter store error')).toBe(true);

    await redis.restart();
    // Back: decisions come from Redis again (the fresh Redis holds no state, so budgets start anew).
    await waitFor(async () => (await status(`${gw.url}/strict`)).status === 200, 'the gateway to use Redis again');
    const results = [];
    for (let i = 0; i < 4; i++) results.push((await status(`${gw.url}/lenient`)).status);
    expect(results).toEqual([200, 200, 200, 429]);
  });
});

describe('two gateway processes sharing one Redis', () => {
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  });

  beforeAll(() => {
    // The CLI runs from dist/: build it when it is missing or older than the sources it needs.
    const main = path.join(ROOT, 'dist/cli/main.js');
    const fresh = existsSync(main) && ['src/limit/index.ts', 'src/limit/redis.ts', 'src/cli/main.ts'].every((f) => statSync(path.join(ROOT, f)).mtimeMs <= statSync(main).mtimeMs);
    if (!fresh) spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore' });
    expect(existsSync(main)).toBe(true);
  }, 180_000);

  it('K requests spread over both are admitted within one global limit, not twice it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-two-'));
    const urls: string[] = [];
    for (let n = 0; n < 2; n++) {
      const port = await freePort();
      const file = path.join(dir, `g${n}.yaml`);
      writeFileSync(
        file,
        `
listen: { host: 127.0.0.1, port: ${port} }
log: { level: warn }
upstreams: [{ name: api, url: ${api.url} }]
redis: { url: '${redis.url}', keyPrefix: 'two:', timeout: 2s }
rateLimits:
  - { name: global, key: route, limit: 10, window: 1h }
routes:
  - { name: shared, path: /shared, upstream: api, public: true, rateLimits: [global] }
`,
      );
      const child = spawn(process.execPath, [path.join(ROOT, 'bin/gatehouse.js'), 'start', '--config', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`gateway ${n} exited: ${stderr}`);
          return request(`${url}/nothing`).then(
            async (r) => (await r.body.dump(), true),
            () => false,
          );
        },
        `gateway ${n} to listen`,
        20_000,
      );
      urls.push(url);
    }
    const K = 60;
    const results = await Promise.all(Array.from({ length: K }, (_, i) => status(`${urls[i % 2]}/shared`)));
    const admitted = results.filter((r) => r.status === 200).length;
    expect(results.filter((r) => r.status !== 200).every((r) => r.code === 'GH_ERR_LIMIT_RATE_EXCEEDED')).toBe(true);
    expect(admitted).toBe(10);
    // Each process answered half and refused some: alone, each would have admitted 10 of its 30.
    for (const g of [0, 1]) {
      const mine = results.filter((_, i) => i % 2 === g);
      expect(mine.filter((r) => r.status === 429).length).toBeGreaterThan(0);
      expect(mine.filter((r) => r.status === 429).every((r) => /^"global";r=0;t=(360|359|358)$/.test(r.ratelimit ?? ''))).toBe(true);
    }
  }, 60_000);
});
