import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let api: TestUpstream;
let gw: TestGateway;

const config = (routes: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
limits: { shutdownTimeout: 5s }
upstreams:
  - { name: api, url: ${api.url} }
routes:
${routes}`;

async function status(path: string): Promise<number> {
  const res = await request(`${gw.url}${path}`);
  await res.body.dump();
  return res.statusCode;
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}

beforeAll(async () => {
  api = await startUpstream();
  gw = await startTestGateway(config('  - { name: a, path: /a, upstream: api, public: true }'), { watch: true });
});
afterAll(async () => {
  await gw?.close();
  await api?.close();
});

describe('hot reload', () => {
  it('picks up a changed file and serves the new routes', async () => {
    expect(await status('/b')).toBe(404);
    writeFileSync(gw.file, config('  - { name: a, path: /a, upstream: api, public: true }\n  - { name: b, path: /b, upstream: api, public: true }'));
    await eventually(async () => (await status('/b')) === 200);
    expect(gw.logs.some((l) => l.msg === 'config reloaded')).toBe(true);
  });

  it('keeps serving the old config when the new file is broken, and logs why', async () => {
    writeFileSync(gw.file, config('  - { name: a, path: /a, upstream: nowhere, public: true }'));
    await eventually(async () => gw.logs.some((l) => l.msg?.startsWith('config reload failed')));
    const failure = gw.logs.find((l) => l.msg?.startsWith('config reload failed'))!;
    expect(failure.message).toMatch(/routes\[0\]\.upstream names no upstream/);
    expect(await status('/a')).toBe(200);
    expect(await status('/b')).toBe(200);
    writeFileSync(gw.file, 'listen: [');
    await new Promise((r) => setTimeout(r, 500));
    expect(await status('/b')).toBe(200);
  });

  it('lets in-flight requests finish on the plan they started with', async () => {
    api.setHandler((_req, res) => setTimeout(() => res.end('slow answer'), 400));
    const slow = request(`${gw.url}/a/slow`);
    await new Promise((r) => setTimeout(r, 100));
    await gw.reload(config('  - { name: c, path: /c, upstream: api, public: true }'));
    const res = await slow;
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('slow answer');
    api.setHandler(null);
    expect(await status('/a')).toBe(404);
    expect(await status('/c')).toBe(200);
  });
});

describe('in-flight requests', () => {
  it('are counted on /metrics while they run, and counted out when answered', async () => {
    const local = await startTestGateway(config('  - { name: a, path: /a, upstream: api, public: true }'));
    const inFlight = async () => {
      const text = await (await request(`${local.adminUrl}/metrics`)).body.text();
      return Number(/^gatehouse_in_flight_requests (\d+)$/m.exec(text)?.[1]);
    };
    try {
      expect(await inFlight()).toBe(0);
      api.setHandler((_req, res) => setTimeout(() => res.end('slow answer'), 300));
      const slow = request(`${local.url}/a/slow`);
      await eventually(async () => (await inFlight()) === 1);
      expect(await (await slow).body.text()).toBe('slow answer');
      await eventually(async () => (await inFlight()) === 0);
    } finally {
      api.setHandler(null);
      await local.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('finishes in-flight requests, refuses new connections, then closes', async () => {
    const local = await startTestGateway(config('  - { name: a, path: /a, upstream: api, public: true }'));
    api.setHandler((_req, res) => setTimeout(() => res.end('done'), 300));
    const inFlight = request(`${local.url}/a/x`);
    await new Promise((r) => setTimeout(r, 100));
    const closing = local.close();
    const res = await inFlight;
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('done');
    await closing;
    api.setHandler(null);
    await expect(request(`${local.url}/a/x`)).rejects.toThrow();
  });

  // The in-flight count is kept by the runner's one `close` listener per request: every way a
  // request ends must count it out, or close() would wait for limits.shutdownTimeout (10 min
  // here, far past the test's timeout) instead of ending when the last request does.
  it('closes as soon as the last in-flight request ends, however the requests ended', async () => {
    const local = await startTestGateway(
      config('  - { name: a, path: /a, upstream: api, public: true }').replace('shutdownTimeout: 5s', 'shutdownTimeout: 10m'),
    );
    try {
      // Ended: forwarded, refused (404), and a client that left before the upstream answered.
      expect((await request(`${local.url}/a/x`)).statusCode).toBe(200);
      expect((await request(`${local.url}/nowhere`)).statusCode).toBe(404);
      api.setHandler((_req, res) => setTimeout(() => res.end('late'), 300));
      const left = new AbortController();
      const abandoned = request(`${local.url}/a/slow`, { signal: left.signal }).catch(() => 'aborted');
      await new Promise((r) => setTimeout(r, 50));
      left.abort();
      expect(await abandoned).toBe('aborted');
      // Still in flight when close() starts.
      const inFlight = request(`${local.url}/a/x`);
      await new Promise((r) => setTimeout(r, 100));
      const closing = local.close();
      const res = await inFlight;
      expect(await res.body.text()).toBe('late');
      await closing;
    } finally {
      api.setHandler(null);
      await local.close();
    }
  }, 20_000);
});
