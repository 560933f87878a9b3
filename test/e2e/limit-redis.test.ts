import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { freePort, startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

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

/** Two public routes limited through Redis: `strict` fails closed, `lenient` fails open. */
function yaml(port: number | 0, extra = '', redisUrl = redis.url) {
  return `
listen: { host: 127.0.0.1, port: ${port} }
log: { level: warn }
upstreams: [{ name: api, url: ${api.url} }]
redis: { url: '${redisUrl}', timeout: 2s, keyPrefix: 'e2e-${port}-${Date.now()}:' }
rateLimits:
  - { name: strict, key: ip+route, limit: 3, window: 1h, onStoreError: failClosed }
  - { name: lenient, key: ip+route, limit: 3, window: 1h, onStoreError: failOpen }
routes:
  - { name: strict, path: /strict, upstream: api, public: true, rateLimits: [strict] }
  - { name: lenient, path: /lenient, upstream: api, public: true, rateLimits: [lenient] }
${extra}`;
}

async function status(url: string, options: { reset?: boolean } = {}): Promise<{ status: number; code?: string; ratelimit?: string }> {
  const res = await request(url, options.reset ? { reset: true } : {});
  const text = await res.body.text();
  const code = res.statusCode >= 400 ? (JSON.parse(text) as { code: string }).code : undefined;
  return { status: res.statusCode, code, ratelimit: res.headers.ratelimit as string | undefined };
}


describe('Redis-backed limits through the gateway', () => {
  let gw: TestGateway;
  afterAll(async () => {
    await gw?.close();
  });

  it('limits through Redis; with Redis killed failClosed answers 503 and failOpen admits; both recover', async () => {
    gw = await startTestGateway(`${yaml(0)}\nadmin: { host: 127.0.0.1, port: 0 }\n`);
    const readyz = async () => {
      const res = await request(`${gw.adminUrl}/readyz`);
      return { status: res.statusCode, body: (await res.body.json()) as { details: { limit?: { redis?: string } } } };
    };
    expect(await readyz()).toMatchObject({ status: 200, body: { details: { limit: { redis: 'ready' } } } });
    for (let i = 0; i < 3; i++) expect((await status(`${gw.url}/strict`)).status).toBe(200);
    const seen = api.requests.length;
    const limited = await status(`${gw.url}/strict`);
    expect(limited).toMatchObject({ status: 429, code: 'GH_ERR_LIMIT_RATE_EXCEEDED' });
    expect(limited.ratelimit).toMatch(/^"strict";r=0;t=(1200|1199|1198)$/);

    await redis.stop();
    const strict = await status(`${gw.url}/strict`);
    expect(strict).toMatchObject({ status: 503, code: 'GH_ERR_LIMIT_STORE_UNAVAILABLE' });
    expect(api.requests.length).toBe(seen); // neither the 429 nor the failClosed 503 reached the upstream
    const before = api.requests.length;
    for (let i = 0; i < 5; i++) expect((await status(`${gw.url}/lenient`)).status).toBe(200); // beyond its limit: not enforced while Redis is gone
    expect(api.requests.length - before).toBe(5);
    expect(gw.logs.some((l) => l.msg === 'redis limiter store error')).toBe(true);
    // Still in rotation (every instance shares this Redis), and /readyz says what is wrong.
    const down = await readyz();
    expect(down.status).toBe(200);
    expect(down.body.details.limit?.redis).not.toBe('ready');
    const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text();
    expect(metrics).toMatch(/gatehouse_limit_store_errors_total\{store="redis",policy="strict",outcome="refused"\} [1-9]/);
    expect(metrics).toMatch(/gatehouse_limit_store_errors_total\{store="redis",policy="lenient",outcome="allowed"\} [1-9]/);

    await redis.restart();
    // Back: decisions come from Redis again (the fresh Redis holds no state, so budgets start anew).
    await waitFor(async () => (await status(`${gw.url}/strict`)).status === 200, 'the gateway to use Redis again');
    const results = [];
    for (let i = 0; i < 4; i++) results.push((await status(`${gw.url}/lenient`)).status);
    expect(results).toEqual([200, 200, 200, 429]);
  });
});

/**
 * A server that speaks enough RESP for ioredis to connect (INFO, +OK to the rest) and answers
 * every script call (EVAL/EVALSHA) with `scriptReply`: what a broken proxy, a wrong server or a
 * misbehaving Redis module in front of the store could send.
 */
const INFO = '# Server\r\nredis_version:7.0.0\r\nloading:0\r\n';

async function fakeRedis(scriptReply: string): Promise<{ url: string; scriptCalls: () => number; close: () => Promise<void> }> {
  let calls = 0;
  const server: Server = createServer((socket) => {
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      // Whole commands only: *N then N bulk strings.
      for (;;) {
        const m = /^\*(\d+)\r\n/.exec(buffered);
        if (!m) return;
        let at = m[0].length;
        const parts: string[] = [];
        for (let i = 0; i < Number(m[1]); i++) {
          const len = /^\$(\d+)\r\n/.exec(buffered.slice(at));
          if (!len || buffered.length < at + len[0].length + Number(len[1]) + 2) return;
          at += len[0].length;
          parts.push(buffered.slice(at, at + Number(len[1])));
          at += Number(len[1]) + 2;
        }
        buffered = buffered.slice(at);
        const name = parts[0]!.toLowerCase();
        if (name === 'info') socket.write(`$${INFO.length}\r\n${INFO}\r\n`);
        else if (name === 'eval' || name === 'evalsha') {
          calls++;
          socket.write(scriptReply);
        } else socket.write('+OK\r\n');
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`,
    scriptCalls: () => calls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('a store whose answers do not fit the batch', () => {
  // A flat reply must hold three values per rate-limit decision; these hold too few, a flag that
  // is not 0/1, or no array at all. None may admit a failClosed request.
  for (const [what, reply] of [
    ['a reply one value short', '*2\r\n:1\r\n:5\r\n'],
    ['an admitted flag of 2', '*3\r\n:2\r\n:5\r\n$5\r\n1.000\r\n'],
    ['a status instead of an array', '+OK\r\n'],
  ] as const) {
    it(`${what}: failClosed answers 503 and the upstream never sees the request; failOpen admits`, async () => {
      const fake = await fakeRedis(reply);
      const gw = await startTestGateway(yaml(0, '', fake.url));
      try {
        // (The upstream is shared with the other tests of this file: count from here.)
        const before = api.requests.length;
        // Several at once, so that they share one script call.
        const strict = await Promise.all([0, 1, 2, 3].map(() => status(`${gw.url}/strict`)));
        for (const s of strict) expect(s).toMatchObject({ status: 503, code: 'GH_ERR_LIMIT_STORE_UNAVAILABLE' });
        expect(api.requests.slice(before)).toEqual([]);
        expect(fake.scriptCalls()).toBeGreaterThan(0);
        expect((await status(`${gw.url}/lenient`)).status).toBe(200);
        expect(api.requests.length).toBe(before + 1);
        expect(gw.logs.some((l) => l.msg === 'redis limiter store error' && /does not fit/.test(String(l.err)))).toBe(true);
      } finally {
        await gw.close();
        await fake.close();
      }
    });
  }
});

describe('concurrency slots and clients that go away', () => {
  it('a client that leaves while Redis is slow does not leak its concurrency slot', async () => {
    const own = await startRedis();
    const gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
log: { level: warn }
upstreams: [{ name: api, url: ${api.url} }]
redis: { url: '${own.url}', timeout: 300ms, onError: failOpen }
rateLimits:
  - { name: lenient, key: ip, limit: 1000, window: 1s }
routes:
  - { name: one, path: /one, upstream: api, public: true, maxConcurrent: 1, rateLimits: [lenient] }
`);
    try {
      expect((await status(`${gw.url}/one`)).status).toBe(200);
      own.pause(); // every decision now waits for the command timeout
      for (let i = 0; i < 3; i++) {
        const controller = new AbortController();
        const pending = request(`${gw.url}/one`, { signal: controller.signal }).catch(() => 'aborted');
        await new Promise((r) => setTimeout(r, 50));
        controller.abort();
        expect(await pending).toBe('aborted');
        await new Promise((r) => setTimeout(r, 100)); // let the gateway see the connection close
      }
      await new Promise((r) => setTimeout(r, 400)); // the decisions time out (failOpen) behind the closed responses
      own.resume();
      await waitFor(async () => (await status(`${gw.url}/one`)).status === 200, 'the slot to be free', 5000);
    } finally {
      own.resume();
      await gw.close();
      await own.stop();
    }
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
    const fresh = existsSync(main) && ['src/limit/index.ts', 'src/limit/redis.ts', 'src/cli/main.ts', 'src/cli/cluster.ts'].every((f) => statSync(path.join(ROOT, f)).mtimeMs <= statSync(main).mtimeMs);
    if (!fresh) spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore' });
    expect(existsSync(main)).toBe(true);
  }, 180_000);

  async function startCli(file: string, workers = 1): Promise<string> {
    const port = Number(/port: (\d+)/.exec(readFileSync(file, 'utf8'))![1]);
    const args = ['--workers', String(workers)];
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/gatehouse.js'), 'start', '--config', file, ...args], { cwd: path.dirname(file), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    if (workers > 1) await waitFor(() => stdout.split('"worker serving"').length > workers, 'every worker to serve', 20_000);
    children.push(child);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`gateway exited: ${stderr}`);
        return request(`${url}/nothing`).then(
          async (r) => (await r.body.dump(), true),
          () => false,
        );
      },
      'the gateway to listen',
      20_000,
    );
    return url;
  }

  async function writeConfig(name: string, body: string, level = 'warn'): Promise<string> {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cli-'));
    const file = path.join(dir, `${name}.yaml`);
    writeFileSync(file, `listen: { host: 127.0.0.1, port: ${await freePort()} }\nlog: { level: ${level}, accessLog: false }\nupstreams: [{ name: api, url: ${api.url} }]\n${body}`);
    return file;
  }

  it('K requests spread over both are admitted within one global limit, not twice it', async () => {
    const body = `
redis: { url: '${redis.url}', keyPrefix: 'two:', timeout: 2s }
rateLimits:
  - { name: global, key: route, limit: 10, window: 1h }
routes:
  - { name: shared, path: /shared, upstream: api, public: true, rateLimits: [global] }
`;
    const urls = [await startCli(await writeConfig('g0', body)), await startCli(await writeConfig('g1', body))];
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

  it('with --workers 2 a Redis limit stays global while a memory limit counts per worker (as documented)', async () => {
    const file = await writeConfig(
      'workers',
      `
redis: { url: '${redis.url}', keyPrefix: 'workers:', timeout: 2s }
rateLimits:
  - { name: shared, key: route, limit: 10, window: 1h, store: redis }
  - { name: local, key: route, limit: 10, window: 1h, store: memory }
routes:
  - { name: redis, path: /redis, upstream: api, public: true, rateLimits: [shared] }
  - { name: memory, path: /memory, upstream: api, public: true, rateLimits: [local] }
`,
      'info', // the workers say "worker serving" at info
    );
    const url = await startCli(file, 2);
    // A fresh connection per request, so that the primary hands them to both workers in turn.
    const once = (p: string) => status(`${url}${p}`, { reset: true });
    const redisResults = [];
    const memoryResults = [];
    for (let i = 0; i < 40; i++) {
      redisResults.push(await once('/redis'));
      memoryResults.push(await once('/memory'));
    }
    expect(redisResults.filter((r) => r.status === 200)).toHaveLength(10);
    const memoryAdmitted = memoryResults.filter((r) => r.status === 200).length;
    expect(memoryAdmitted).toBeGreaterThan(10);
    expect(memoryAdmitted).toBeLessThanOrEqual(20);
  }, 60_000);
});
