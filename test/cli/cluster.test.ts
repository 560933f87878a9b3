import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { GATEWAY_V8_FLAGS } from '../../src/boot/v8-flags.js';
import { parseWorkers, perWorkerDpopRoutes, perWorkerLimits } from '../../src/cli/cluster.js';
import { autoWorkers } from '../../src/cli/cpu-limit.js';
import { loadConfigText } from '../../src/config/load.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';

// Runs the built CLI (npm test builds first), as a user would: a primary and its workers.

/**
 * GET `url` on a fresh connection (the primary hands connections to the workers in turn); null
 * when nothing answered within `ms` (the connection went to a stopped worker).
 */
function fresh(url: string, ms = 4_000): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.setTimeout(ms, () => {
      req.destroy();
      resolve(null);
    });
    req.on('error', reject);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function config(upstreamUrl: string, port: number, extraRoutes = ''): string {
  return `listen: { host: 127.0.0.1, port: ${port} }
log: { level: info, accessLog: false }
upstreams: [{ name: api, url: "${upstreamUrl}" }]
routes:
  - { name: first, path: /first, upstream: api, public: true }
${extraRoutes}`;
}

/**
 * A cluster in front of a fresh upstream, from the config `text` gives: `body` runs while it
 * serves, then SIGTERM must stop it with exit 0.
 */
async function withCluster(
  text: (upstreamUrl: string) => string,
  workers: string | null,
  body: (cluster: Cluster) => Promise<void>,
  cgroupProcs?: string,
  nodeFlags?: readonly string[],
): Promise<void> {
  const upstream = await startUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cluster-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, text(upstream.url));
  const cluster = startCluster(file, workers, cgroupProcs, nodeFlags);
  try {
    await body(cluster);
    cluster.child.kill('SIGTERM');
    expect(await cluster.exited).toBe(0);
  } finally {
    if (cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
    await upstream.close();
  }
}

describe('parseWorkers', () => {
  it('accepts a whole number from 1 to 256, or auto (one per core, within a CPU limit)', () => {
    expect(parseWorkers('1')).toEqual({ count: 1, auto: null });
    expect(parseWorkers('256')).toEqual({ count: 256, auto: null });
    const auto = autoWorkers();
    expect(parseWorkers('auto')).toEqual({ count: auto.workers, auto });
    expect(parseWorkers('auto')!.count).toBeLessThanOrEqual(availableParallelism());
  });

  it('refuses 0, more than 256, fractions, signs and words', () => {
    for (const bad of ['0', '257', '1.5', '-1', '+2', 'two', '', '1e2', '0x2']) expect(parseWorkers(bad)).toBeNull();
  });
});

describe('gatehouse start --workers 2', () => {
  let upstream: TestUpstream;
  let dir: string;
  let realFile: string;
  let cluster: Cluster;
  let url: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cluster-'));
    // Workers also watch their config file and reload on change. To prove that SIGHUP alone
    // reaches them, the gateway reads the config through a symlink whose target lives in
    // another directory: editing the target fires no watch event in the watched directory.
    mkdirSync(path.join(dir, 'real'));
    realFile = path.join(dir, 'real', 'gatehouse.yaml');
    writeFileSync(realFile, config(upstream.url, 0));
    const file = path.join(dir, 'gatehouse.yaml');
    symlinkSync(realFile, file);
    cluster = startCluster(file, '2');
    // With cluster, port 0 is one port shared by the workers: each logs the same listener URL.
    const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
    url = Object.values(started[0]!.listeners as Record<string, string>)[0]!;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(started[1]!.listeners).toEqual(started[0]!.listeners);
  }, 30_000);

  afterAll(async () => {
    if (cluster && cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
    await upstream?.close();
  });

  it('serves requests through the workers', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await request(`${url}/first`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    const serving = await cluster.waitFor((l) => l.msg === 'worker serving', 2);
    expect(new Set(serving.map((l) => l.worker)).size).toBe(2);
  });

  it("runs every worker with gatehouse's V8 flags (a slower-growing old generation)", async () => {
    // Each worker sets the flags it lacks at start, as a single process does, and says so.
    const set = await cluster.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('V8 heap flags set at start'), 2);
    for (const line of set) expect(line.v8Flags).toEqual(GATEWAY_V8_FLAGS);
    await cluster.waitFor((l) => l.msg === 'worker serving', 2);
  });

  it('passes SIGHUP to every worker: a route added to the file becomes reachable', async () => {
    const before = await request(`${url}/second`);
    expect(before.statusCode).toBe(404);
    expect(((await before.body.json()) as { code: string }).code).toBe('GH_ERR_ROUTE_NOT_FOUND');

    writeFileSync(realFile, config(upstream.url, 0, '  - { name: second, path: /second, upstream: api, public: true }\n'));
    cluster.child.kill('SIGHUP');
    await cluster.waitFor((l) => l.msg === 'config reloaded', 2);

    // Round-robin spreads these over both workers: every one of them must know the route.
    for (let i = 0; i < 8; i++) {
      const res = await request(`${url}/second`, { reset: true });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
  });

  it('keeps serving the running config when a reload is broken', async () => {
    writeFileSync(realFile, 'listen: [ this is not valid\n');
    cluster.child.kill('SIGHUP');
    await cluster.waitFor((l) => l.msg === 'config reload failed; the running config stays', 2);
    const res = await request(`${url}/second`, { reset: true });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });

  it('replaces a worker that dies; a replacement that cannot start is retried while the other serves', async () => {
    // The file on disk is still the broken one of the previous test: the replacement fails.
    const [victim] = (await cluster.waitFor((l) => l.msg === 'worker serving', 2)).map((l) => l.worker as number);
    process.kill(victim!, 'SIGKILL');
    await cluster.waitFor((l) => l.msg === 'worker exited unexpectedly; starting another', 2);
    for (let i = 0; i < 4; i++) {
      const res = await request(`${url}/second`, { reset: true });
      expect(res.statusCode).toBe(200); // the surviving worker
      await res.body.dump();
    }
    // A good file again: the next attempt starts and serves.
    writeFileSync(realFile, config(upstream.url, 0, '  - { name: second, path: /second, upstream: api, public: true }\n'));
    await cluster.waitFor((l) => l.msg === 'worker exited unexpectedly; starting another' && l.worker === victim, 1);
    const serving = await cluster.waitFor((l) => l.msg === 'worker serving', 3);
    expect(serving[2]!.worker).not.toBe(victim);
    for (let i = 0; i < 6; i++) {
      const res = await request(`${url}/second`, { reset: true });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
  }, 20_000);

  it('stops every worker on SIGTERM and exits 0', async () => {
    const workers = cluster.lines.filter((l) => l.msg === 'worker serving').map((l) => l.worker as number);
    cluster.child.kill('SIGTERM');
    expect(await cluster.exited).toBe(0);
    // Every worker alive at the end (the two first minus the one replaced, plus its successor).
    expect(cluster.lines.filter((l) => l.msg === 'gatehouse stopped')).toHaveLength(2);
    for (const pid of workers) expect(alive(pid)).toBe(false);
  }, 20_000);
});

describe('a cluster asked to stop or reload while its workers still start', () => {
  // A worker loading its modules and config could not hear the primary yet: the primary holds
  // what it asks until the worker says it listens, and the worker holds it until it runs.
  const quick = (upstreamUrl: string) => `limits: { shutdownTimeout: 1s }\n${config(upstreamUrl, 0)}`;

  it('SIGTERM right after the fork: every worker stops by itself, exit 0 (none is killed)', async () => {
    const upstream = await startUpstream();
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cluster-'));
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(file, quick(upstream.url));
    const cluster = startCluster(file, '2');
    try {
      await cluster.waitFor((l) => l.msg === 'starting gatehouse workers', 1);
      cluster.child.kill('SIGTERM');
      expect(await cluster.exited).toBe(0);
      expect(cluster.lines.filter((l) => l.msg === 'worker did not stop in time; killing it')).toHaveLength(0);
      expect(cluster.lines.find((l) => l.msg === 'gatehouse cluster stopped')?.failed).toBe(false);
    } finally {
      if (cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
      await upstream.close();
    }
  }, 20_000);

  it('SIGHUP right after the fork: every worker reloads once it runs', async () => {
    await withCluster(quick, '2', async (cluster) => {
      await cluster.waitFor((l) => l.msg === 'starting gatehouse workers', 1);
      cluster.child.kill('SIGHUP');
      await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      // One reload asked, the file unchanged (no watch event): a line from each worker.
      await cluster.waitFor((l) => l.msg === 'config reloaded', 2);
    });
  }, 20_000);
});

describe('metrics of a cluster', () => {
  it('a scrape on any worker shows the counts of every worker, merged', async () => {
    const get = async (url: string) => (await fresh(url)) ?? Promise.reject(new Error(`no answer from ${url}`));
    const served = (text: string) => Number(/^gatehouse_requests_total\{route="first",status="200"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    await withCluster((upstreamUrl) => `admin: { host: 127.0.0.1, port: 0 }\n${config(upstreamUrl, 0)}`, '2', async (cluster) => {
      const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      const url = Object.values(started[0]!.listeners as Record<string, string>)[0]!;
      const admin = started[0]!.admin as string;
      expect(started[1]!.admin).toBe(admin);
      const before = await get(`${admin}/metrics`);
      expect(before.status).toBe(200);
      for (let i = 0; i < 10; i++) expect((await get(`${url}/first`)).status).toBe(200);
      // Whichever worker takes each scrape, every scrape says 10 more (5 per worker when one
      // worker's own counts were answered).
      for (let i = 0; i < 4; i++) {
        const after = await get(`${admin}/metrics`);
        expect(after.status).toBe(200);
        expect(served(after.body) - served(before.body)).toBe(10);
        expect(after.body).toMatch(/^gatehouse_in_flight_requests 0$/m);
        expect(after.body.match(/^# TYPE gatehouse_requests_total counter$/gm)).toHaveLength(1);
      }
    });
  }, 30_000);
});

describe('limits that count per worker', () => {
  it('are the in-memory rate limits and quotas and the routes with maxConcurrent, not those in Redis', () => {
    const cfg = loadConfigText(`listen: { host: 127.0.0.1, port: 0 }
redis: { url: 'redis://127.0.0.1:1' }
upstreams: [{ name: api, url: 'http://127.0.0.1:1' }]
rateLimits:
  - { name: local, key: ip, limit: 10, window: 1s, store: memory }
  - { name: shared, key: ip, limit: 10, window: 1s }
quotas:
  - { name: daily, key: ip, limit: 1000, period: day, store: memory }
routes:
  - { name: a, path: /a, upstream: api, public: true, rateLimits: [local, shared], quotas: [daily], maxConcurrent: 5 }
  - { name: b, path: /b, upstream: api, public: true }
`, 'inline.yaml');
    expect(perWorkerLimits(cfg)).toEqual(['rateLimits.local', 'quotas.daily', 'routes.a.maxConcurrent']);
  });
});

describe('DPoP routes whose replay memory would be per worker', () => {
  const text = (redis: string) => `listen: { host: 127.0.0.1, port: 0 }
${redis}
issuers: [ { name: main, issuer: 'https://id.example.test', jwksUri: 'https://id.example.test/jwks', audiences: [api] } ]
upstreams: [{ name: api, url: 'http://127.0.0.1:1' }]
routes:
  - { name: pay, path: /pay, upstream: api, senderConstrained: dpop }
  - { name: either, path: /either, upstream: api, senderConstrained: any }
  - { name: certs, path: /certs, upstream: api, senderConstrained: mtls }
  - { name: plain, path: /plain, upstream: api }
`;
  it('are the routes with senderConstrained dpop or any, and none when redis shares the memory', () => {
    expect(perWorkerDpopRoutes(loadConfigText(text(''), 'inline.yaml'))).toEqual(['pay', 'either']);
    expect(perWorkerDpopRoutes(loadConfigText(text("redis: { url: 'redis://127.0.0.1:1' }"), 'inline.yaml'))).toEqual([]);
  });

  it('are named in a warning by the primary of several workers', async () => {
    await withCluster(
      (upstreamUrl) => text('').replace("url: 'http://127.0.0.1:1'", `url: '${upstreamUrl}'`),
      '2',
      async (cluster) => {
        const [warning] = await cluster.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('DPoP proofs are remembered per worker'), 1);
        expect(warning).toMatchObject({ level: 'warn', workers: 2, routes: ['pay', 'either'] });
        await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      },
    );
  }, 30_000);
});

describe('a worker that stops answering', () => {
  const limited = (timeout: string) => (upstreamUrl: string) => `limits: { workerUnresponsiveTimeout: ${timeout} }\n${config(upstreamUrl, 0)}`;

  it('is killed and replaced after limits.workerUnresponsiveTimeout; workers that answer are left alone', async () => {
    await withCluster(limited('2s'), '2', async (cluster) => {
      const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      const url = Object.values(started[0]!.listeners as Record<string, string>)[0]!;
      const [stuck, healthy] = (await cluster.waitFor((l) => l.msg === 'worker serving', 2)).map((l) => l.worker as number);
      // Two timeouts with both answering: nobody is killed.
      await new Promise((r) => setTimeout(r, 4_000));
      expect(cluster.lines.some((l) => l.msg?.startsWith?.('worker unresponsive'))).toBe(false);
      process.kill(stuck!, 'SIGSTOP');
      const [killed] = await cluster.waitFor((l) => l.msg?.startsWith?.('worker unresponsive'), 1, 10_000);
      expect(killed).toMatchObject({ level: 'error', worker: stuck });
      expect(killed!.silentMs).toBeGreaterThan(2_000);
      const serving = await cluster.waitFor((l) => l.msg === 'worker serving', 3, 15_000);
      expect(serving[2]!.worker).not.toBe(stuck);
      expect(alive(stuck!)).toBe(false);
      expect(alive(healthy!)).toBe(true);
      // Every connection is served again (none handed to the stopped worker).
      for (let i = 0; i < 6; i++) {
        const res = await request(`${url}/first`, { reset: true, headersTimeout: 3_000 });
        expect(res.statusCode).toBe(200);
        await res.body.dump();
      }
    });
  }, 40_000);

  it('is left alone with limits.workerUnresponsiveTimeout: 0', async () => {
    await withCluster(limited('0'), '2', async (cluster) => {
      const [stuck] = (await cluster.waitFor((l) => l.msg === 'worker serving', 2)).map((l) => l.worker as number);
      process.kill(stuck!, 'SIGSTOP');
      try {
        await new Promise((r) => setTimeout(r, 2_000));
        expect(alive(stuck!)).toBe(true);
        expect(cluster.lines.some((l) => l.msg?.startsWith?.('worker unresponsive'))).toBe(false);
      } finally {
        process.kill(stuck!, 'SIGCONT');
      }
    });
  }, 30_000);
});

describe('readiness of a cluster', () => {
  // A probe that went to a stopped worker gets no answer: try again on another connection.
  const answered = async (url: string) => {
    for (let i = 0; i < 6; i++) {
      const got = await fresh(url);
      if (got !== null) return { status: got.status, body: JSON.parse(got.body) };
    }
    throw new Error(`no answer from ${url}`);
  };
  const withAdmin = (extra = '') => (upstreamUrl: string) => `admin: { host: 127.0.0.1, port: 0 }\n${extra}${config(upstreamUrl, 0)}`;

  it('/readyz on any worker answers for every worker the primary hands connections to', async () => {
    await withCluster(withAdmin(), '2', async (cluster) => {
      const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      const workers = (await cluster.waitFor((l) => l.msg === 'worker serving', 2)).map((l) => String(l.worker)).sort();
      const admin = started[0]!.admin as string;
      for (let i = 0; i < 4; i++) {
        const got = await answered(`${admin}/readyz`);
        expect(got.status).toBe(200);
        expect(got.body.status).toBe('ready');
        expect(Object.keys(got.body.workers).sort()).toEqual(workers);
        for (const pid of workers) expect(got.body.workers[pid]).toMatchObject({ status: 'ready', listeners: 'bound' });
      }
    });
  }, 30_000);

  it('is not ready while one worker does not answer (stopped), and ready again once it does', async () => {
    await withCluster(withAdmin(), '2', async (cluster) => {
      const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      const [stopped, running] = (await cluster.waitFor((l) => l.msg === 'worker serving', 2)).map((l) => l.worker as number);
      const admin = started[0]!.admin as string;
      process.kill(stopped!, 'SIGSTOP');
      try {
        const got = await answered(`${admin}/readyz`);
        expect(got.status).toBe(503);
        expect(got.body.status).toBe('not ready');
        expect(got.body.workers[String(stopped)]).toEqual({ status: 'not ready', details: { error: 'no answer within 800 ms' } });
        expect(got.body.workers[String(running)]).toMatchObject({ status: 'ready' });
      } finally {
        process.kill(stopped!, 'SIGCONT');
      }
      const again = await answered(`${admin}/readyz`);
      expect(again.status).toBe(200);
      expect(Object.keys(again.body.workers)).toHaveLength(2);
    });
  }, 45_000);

  it('is not ready, with each worker saying why, when the workers cannot get an issuer key set', async () => {
    const dead = net.createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(dead.address() as net.AddressInfo).port}`;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const issuer = `issuers:\n  - { name: unreachable, issuer: "${deadUrl}", jwksUri: "${deadUrl}/jwks", audiences: [api], algorithms: [ES256] }\n`;
    const text = (upstreamUrl: string) => withAdmin(issuer)(upstreamUrl).replace('routes:', 'routes:\n  - { name: guarded, path: /guarded, upstream: api, issuers: [unreachable] }');
    await withCluster(text, '2', async (cluster) => {
      const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
      const got = await answered(`${started[0]!.admin as string}/readyz`);
      expect(got.status).toBe(503);
      expect(Object.keys(got.body.workers)).toHaveLength(2);
      for (const report of Object.values(got.body.workers) as any[]) {
        expect(report.status).toBe('not ready');
        expect(JSON.stringify(report.details)).toContain('unreachable');
      }
    });
  }, 30_000);
});

describe('gatehouse start without --workers', () => {
  it('runs one worker per core (auto), and warns that in-memory limits then count per worker', async () => {
    const cores = autoWorkers().workers;
    const withLimit = (upstreamUrl: string) =>
      config(upstreamUrl, 0).replace('routes:', 'rateLimits:\n  - { name: per-client, key: ip, limit: 100, window: 1s, store: memory }\nroutes:');
    await withCluster(withLimit, null, async (cluster) => {
      const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', cores);
      const url = Object.values(started[0]!.listeners as Record<string, string>)[0]!;
      const res = await request(`${url}/first`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
      const warning = cluster.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('in-memory limits count per worker'));
      if (cores > 1) {
        await cluster.waitFor((l) => l.msg === 'worker serving', cores);
        expect(warning?.limits).toEqual(['rateLimits.per-client']);
        expect(warning?.workers).toBe(cores);
      } else {
        // One core: one process, no cluster, nothing to warn about.
        expect(cluster.lines.some((l) => l.msg === 'worker serving')).toBe(false);
        expect(warning).toBeUndefined();
      }
    });
  }, 30_000);
});

/** Remove a test cgroup (best effort: a process killed a moment ago may still be leaving it). */
function removeCgroup(dir: string): void {
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/**
 * A fresh cgroup with a CPU limit of `cpus`, where this machine lets the tests make one (root,
 * with the cpu controller in cgroup v1, or delegated in cgroup v2); null elsewhere.
 */
function cpuLimitedCgroup(cpus: number): { procs: string; remove(): void } | null {
  const name = `gatehouse-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const period = 100_000;
  const v1 = '/sys/fs/cgroup/cpu';
  const v2 = '/sys/fs/cgroup';
  try {
    if (existsSync(path.join(v1, 'cpu.cfs_quota_us'))) {
      const dir = path.join(v1, name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(period));
      writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round(cpus * period)));
      return { procs: path.join(dir, 'cgroup.procs'), remove: () => removeCgroup(dir) };
    }
    if (readFileSync(path.join(v2, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('cpu')) {
      const dir = path.join(v2, name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'cpu.max'), `${Math.round(cpus * period)} ${period}`);
      return { procs: path.join(dir, 'cgroup.procs'), remove: () => removeCgroup(dir) };
    }
  } catch {
    // not root, or no cpu controller to write to
  }
  return null;
}

describe('gatehouse start --workers auto inside a CPU-limited cgroup', () => {
  // A container limited to one CPU (docker run --cpus 1, a Kubernetes limit of 1) still sees
  // every core of its host; one worker per host core would be that many processes sharing one
  // CPU's time. The kernel's own cgroup files, a real gateway, a real request.
  it('runs one process, not one worker per host core, and says why', async (ctx) => {
    const cores = availableParallelism();
    // Made in the test, not at collection: a filtered run must not leave a cgroup behind.
    const group = cores >= 2 ? cpuLimitedCgroup(1) : null;
    if (group === null) return ctx.skip('no cgroup with a CPU limit can be made here (needs root and two cores)');
    try {
      await withCluster(
        (upstreamUrl) => config(upstreamUrl, 0),
        null,
        async (cluster) => {
          const [started] = await cluster.waitFor((l) => l.msg === 'gatehouse started', 1);
          const url = Object.values(started!.listeners as Record<string, string>)[0]!;
          const res = await request(`${url}/first`);
          expect(res.statusCode).toBe(200);
          await res.body.dump();
          const [chosen] = await cluster.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('workers auto'), 1);
          expect(chosen).toMatchObject({ workers: 1, cores, cpuLimit: 1 });
          expect(chosen!.cpuLimitFile).toMatch(/gatehouse-test-.*\/cpu\.(cfs_quota_us|max)$/);
          expect(cluster.lines.some((l) => l.msg === 'worker serving')).toBe(false);
          expect(readFileSync(group.procs, 'utf8').trim().split('\n')).toEqual([String(cluster.child.pid)]);
        },
        group.procs,
      );
    } finally {
      group.remove();
    }
  }, 30_000);
});

describe("the operator's own V8 flag", () => {
  it('reaches every worker, which then sets nothing of its own', async () => {
    await withCluster(
      (upstreamUrl) => config(upstreamUrl, 0),
      '2',
      async (cluster) => {
        const serving = await cluster.waitFor((l) => l.msg === 'worker serving', 2);
        for (const { worker } of serving) {
          const argv = readFileSync(`/proc/${worker as number}/cmdline`, 'utf8').split('\0');
          expect(argv).toContain('--heap-growing-percent=80');
          expect(argv).not.toContain('--heap-growing-percent=60');
        }
        await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
        expect(cluster.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('V8 heap flags set at start'))).toBe(false);
      },
      undefined,
      ['--heap-growing-percent=80'],
    );
  }, 20_000);
});

describe('a worker that cannot start', () => {
  it('stops the cluster with exit code 1 instead of respawning forever (port in use)', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cluster-'));
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(file, config('http://127.0.0.1:1', port));
    const cluster = startCluster(file, '2');
    try {
      expect(await cluster.exited).toBe(1);
      expect(cluster.lines.some((l) => l.msg === 'a worker failed before it could serve; stopping the cluster')).toBe(true);
      expect(cluster.lines.filter((l) => l.msg === 'worker exited unexpectedly; starting another')).toHaveLength(0);
    } finally {
      if (cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
      blocker.close();
    }
  }, 20_000);
});
