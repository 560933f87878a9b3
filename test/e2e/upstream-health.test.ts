import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../helpers/certs.js';
import { waitFor } from '../helpers/wait.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { issuesOf } from '../helpers/config.js';
import { loadConfigText } from '../../src/config/load.js';

/**
 * An instance whose `/healthz` answers what the test says (a status, or nothing at all) and
 * whose other paths answer 200 with its name: a target that serves requests but reports itself
 * unhealthy (its database is gone, say) is still taken out by the health checks.
 */
async function instance(name: string) {
  const state = { health: 200 as number | 'hang', probes: 0, hits: 0, probeHeaders: [] as http.IncomingHttpHeaders[], probeMethods: [] as string[] };
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      state.probes++;
      state.probeHeaders.push(req.headers);
      state.probeMethods.push(req.method ?? '');
      if (state.health === 'hang') return;
      res.writeHead(state.health, { 'content-type': 'text/plain' });
      res.end(state.health < 400 ? 'ok' : 'database unreachable');
      return;
    }
    state.hits++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    state,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


const yaml = (targets: string[], healthCheck: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  - name: api
    targets: [${targets.join(', ')}]
    timeout: 2s
    healthCheck: ${healthCheck}
routes:
  - { name: all, path: /, upstream: api, public: true }
`;

async function names(gw: TestGateway, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await request(`${gw.url}/orders/${i}`);
    out.push(res.statusCode === 200 ? ((await res.body.json()) as { name: string }).name : `status ${res.statusCode}`);
  }
  return out;
}

const metricLine = async (gw: TestGateway, line: RegExp) => (await (await request(`${gw.adminUrl}/metrics`)).body.text()).split('\n').find((l) => line.test(l));

describe('upstreams[].healthCheck: expectStatus and method', () => {
  let a: Awaited<ReturnType<typeof instance>>;
  let b: Awaited<ReturnType<typeof instance>>;
  let strict: TestGateway;
  let lenient: TestGateway;

  beforeAll(async () => {
    a = await instance('a');
    b = await instance('b');
    // a answers its health check with a redirect (to a login page, say): up to the default, not to [200].
    a.state.health = 302;
    strict = await startTestGateway(yaml([a.url, b.url], '{ path: /healthz, interval: 100ms, timeout: 150ms, unhealthyAfter: 1, expectStatus: [200, 204], method: HEAD }'));
  });
  afterAll(async () => {
    await strict?.close();
    await lenient?.close();
    await a?.close();
    await b?.close();
  });

  it('a status outside expectStatus fails the probe: the target is left out, the log says what was expected', async () => {
    await waitFor(() => strict.logs.some((l) => l.msg === 'upstream target failing its health checks; left out of the rotation'), 'the redirecting target left out');
    const line = strict.logs.find((l) => l.msg === 'upstream target failing its health checks; left out of the rotation')!;
    expect(line).toMatchObject({ target: a.url, result: 'status 302 (expected 200, 204)' });
    expect(new Set(await names(strict, 6))).toEqual(new Set(['b']));
    // HEAD probes, as asked.
    expect(a.state.probeMethods.length).toBeGreaterThan(0);
    expect(new Set(a.state.probeMethods)).toEqual(new Set(['HEAD']));
  });

  it('by default a 2XX or 3XX passes (GET probes)', async () => {
    const before = a.state.probeMethods.length;
    lenient = await startTestGateway(yaml([a.url, b.url], '{ path: /healthz, interval: 100ms, timeout: 150ms, unhealthyAfter: 1 }'));
    await waitFor(() => a.state.probeMethods.length > before + 2, 'three more probes of a');
    expect(lenient.logs.some((l) => l.msg === 'upstream target failing its health checks; left out of the rotation')).toBe(false);
    expect(new Set(await names(lenient, 6))).toEqual(new Set(['a', 'b']));
    expect(a.state.probeMethods.slice(before).includes('GET')).toBe(true);
  });

  it('refuses a status that is not one, and a method it does not probe with', () => {
    const bad = (healthCheck: string) => issuesOf(yaml(['"http://127.0.0.1:1"'], healthCheck)).map((i) => i.path);
    expect(bad('{ path: /healthz, expectStatus: [99] }')).toContain('upstreams[0].healthCheck.expectStatus[0]');
    expect(bad('{ path: /healthz, expectStatus: ["2xx"] }')).toContain('upstreams[0].healthCheck.expectStatus[0]');
    expect(bad('{ path: /healthz, expectStatus: [] }')).toContain('upstreams[0].healthCheck.expectStatus');
    expect(bad('{ path: /healthz, method: POST }')).toContain('upstreams[0].healthCheck.method');
  });
});

describe('upstreams[].healthCheck: a target failing its checks is left out, whatever its requests do', () => {
  let a: Awaited<ReturnType<typeof instance>>;
  let b: Awaited<ReturnType<typeof instance>>;
  let gw: TestGateway;

  beforeAll(async () => {
    a = await instance('a');
    b = await instance('b');
    gw = await startTestGateway(yaml([a.url, b.url], '{ path: /healthz, interval: 100ms, timeout: 150ms, unhealthyAfter: 2, healthyAfter: 3 }'));
  });
  afterAll(async () => {
    await gw?.close();
    await a?.close();
    await b?.close();
  });

  it('probes every target with a GET of the path, at start and every interval', async () => {
    await waitFor(() => a.state.probes >= 3 && b.state.probes >= 3, 'three probes of each');
    expect(a.state.probeHeaders[0]!['user-agent']).toBe('gatehouse-health-check');
    expect(new Set(await names(gw, 4))).toEqual(new Set(['a', 'b']));
  });

  it('a target whose check fails twice in a row gets no requests (it would have answered them), and is named', async () => {
    b.state.health = 503;
    await waitFor(() => gw.logs.some((l) => l.msg === 'upstream target failing its health checks; left out of the rotation'), 'b left out');
    const line = gw.logs.find((l) => l.msg === 'upstream target failing its health checks; left out of the rotation')!;
    expect(line).toMatchObject({ level: 'warn', upstream: 'api', target: b.url, health_check: '/healthz', result: 'status 503', targets_up: 1 });
    const hitsBefore = b.state.hits;
    expect(await names(gw, 6)).toEqual(['a', 'a', 'a', 'a', 'a', 'a']);
    expect(b.state.hits).toBe(hitsBefore);
    expect(await metricLine(gw, new RegExp(`^gatehouse_upstream_target_up\\{upstream="api",target="${b.url}"\\} 0$`))).toBeDefined();
    const ready = await request(`${gw.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(((await ready.body.json()) as { details: { upstreams?: Record<string, string> } }).details.upstreams).toEqual({
      api: `1 of 2 target(s) left out, failing health checks: ${b.url}`,
    });
  });

  it('stays out while its checks fail, longer than downFor would keep an unreachable one out', async () => {
    await sleep(400);
    const hitsBefore = b.state.hits;
    expect(await names(gw, 4)).toEqual(['a', 'a', 'a', 'a']);
    expect(b.state.hits).toBe(hitsBefore);
  });

  it('comes back after healthyAfter passes in a row, not before', async () => {
    const probesBefore = b.state.probes;
    b.state.health = 200;
    await waitFor(() => gw.logs.some((l) => l.msg === 'upstream target passing its health checks again; back in the rotation'), 'b back');
    expect(b.state.probes - probesBefore).toBeGreaterThanOrEqual(3);
    expect(new Set(await names(gw, 4))).toEqual(new Set(['a', 'b']));
    expect(await metricLine(gw, new RegExp(`^gatehouse_upstream_target_up\\{upstream="api",target="${b.url}"\\} 1$`))).toBeDefined();
  });

  it('a check that gets no answer within timeout fails too', async () => {
    b.state.health = 'hang';
    await waitFor(() => gw.logs.filter((l) => l.msg === 'upstream target failing its health checks; left out of the rotation').length === 2, 'b left out again');
    const line = gw.logs.filter((l) => l.msg === 'upstream target failing its health checks; left out of the rotation')[1]!;
    expect(line.result).toBe('no answer within 150 ms');
    expect(await names(gw, 3)).toEqual(['a', 'a', 'a']);
    b.state.health = 200;
    await waitFor(() => gw.logs.filter((l) => l.msg === 'upstream target passing its health checks again; back in the rotation').length === 2, 'b back again');
  });

  it('with every target failing, a request still tries one (no refusal without a try)', async () => {
    a.state.health = 500;
    b.state.health = 500;
    await waitFor(() => gw.logs.filter((l) => l.msg.startsWith('upstream target failing')).length === 4, 'both left out');
    const got = await names(gw, 2);
    expect(got.every((n) => n === 'a' || n === 'b')).toBe(true);
    // An answer to such a request does not overrule the checks: both stay out.
    const ready = (await (await request(`${gw.adminUrl}/readyz`)).body.json()) as { details: { upstreams?: Record<string, string> } };
    expect(ready.details.upstreams?.api).toMatch(/^2 of 2 target\(s\) left out, failing health checks: /);
    a.state.health = 200;
    b.state.health = 200;
  });

  it('stops probing when the gateway closes (and a reload probes with the new plan only)', async () => {
    const other = await instance('c');
    try {
      await gw.reload(yaml([other.url], '{ path: /healthz, interval: 100ms }'));
      await waitFor(() => other.state.probes >= 2, 'c probed');
      await sleep(250);
      const aProbes = a.state.probes;
      await sleep(300);
      expect(a.state.probes).toBe(aProbes);
      // The gauge names the targets of the running plan only.
      const gauge = (await (await request(`${gw.adminUrl}/metrics`)).body.text()).split('\n').filter((l) => l.startsWith('gatehouse_upstream_target_up{'));
      expect(gauge).toEqual([`gatehouse_upstream_target_up{upstream="api",target="${other.url}"} 1`]);
      // A reload that keeps the target keeps its series (the old plan's close leaves it to the new plan).
      await gw.reload(yaml([other.url], '{ path: /healthz, interval: 100ms }'));
      await sleep(50);
      const kept = (await (await request(`${gw.adminUrl}/metrics`)).body.text()).split('\n').filter((l) => l.startsWith('gatehouse_upstream_target_up{'));
      expect(kept).toEqual([`gatehouse_upstream_target_up{upstream="api",target="${other.url}"} 1`]);
      await gw.close();
      const cProbes = other.state.probes;
      await sleep(300);
      expect(other.state.probes).toBe(cProbes);
    } finally {
      await other.close();
    }
  });
});

describe('upstreams[].healthCheck over TLS', () => {
  it('probes with the upstream\'s TLS settings: a target with an untrusted certificate fails its checks', async () => {
    const pki = await createTestPki();
    const good = await pki.server('good', ['127.0.0.1']);
    const other = await createTestPki();
    const rogue = await other.server('rogue', ['127.0.0.1']);
    const servers = [good, rogue].map((cert) =>
      https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
        res.writeHead(200);
        res.end(req.url === '/healthz' ? 'ok' : 'served');
      }),
    );
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
    const urls = servers.map((s) => `https://127.0.0.1:${(s.address() as AddressInfo).port}`);
    const gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: api, targets: [${urls.join(', ')}], tls: { ca: ${pki.caFile} }, healthCheck: { path: /healthz, interval: 100ms, unhealthyAfter: 1 } }
routes:
  - { name: all, path: /, upstream: api, public: true }
`);
    try {
      await waitFor(() => gw.logs.some((l) => l.msg === 'upstream target failing its health checks; left out of the rotation'), 'rogue left out');
      const line = gw.logs.find((l) => l.msg === 'upstream target failing its health checks; left out of the rotation')!;
      expect(line.target).toBe(urls[1]);
      expect(line.result).toMatch(/certificate|self.signed|UNABLE_TO_VERIFY/i);
    } finally {
      await gw.close();
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    }
  });
});

describe('upstreams[].healthCheck at load', () => {
  const config = (healthCheck: string) => `listen: { port: 0 }
upstreams:
  - name: api
    targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2']
    healthCheck: ${healthCheck}
routes: [ { name: all, path: /, upstream: api, public: true } ]
`;

  it('defaults: every 10s, 2s to answer, out after 2 failures, back after 2 passes', () => {
    expect(loadConfigText(config('{ path: /healthz }'), 'gatehouse.yaml', {}).upstreams[0]!.healthCheck).toEqual({
      path: '/healthz',
      interval: 10_000,
      timeout: 2_000,
      unhealthyAfter: 2,
      healthyAfter: 2,
      method: 'GET',
    });
  });

  it('refuses a path that is not a path, a zero interval or timeout, counts out of range, unknown keys', () => {
    expect(issuesOf(config('{ path: healthz }'))[0]).toMatchObject({ line: 5, path: 'upstreams[0].healthCheck.path' });
    expect(issuesOf(config('{ path: "/health check" }'))[0]).toMatchObject({ path: 'upstreams[0].healthCheck.path' });
    expect(issuesOf(config('{}'))[0]!.message).toBe('is missing the required key "path"');
    expect(issuesOf(config('{ path: /healthz, interval: 0 }'))[0]).toMatchObject({
      path: 'upstreams[0].healthCheck.interval',
      message: 'must be at least 100ms: 0 would probe every target in a loop',
    });
    expect(issuesOf(config('{ path: /healthz, timeout: 0 }'))[0]!.message).toBe('must be at least 100ms: 0 would fail every probe at once');
    expect(issuesOf(config('{ path: /healthz, unhealthyAfter: 0 }'))[0]).toMatchObject({ path: 'upstreams[0].healthCheck.unhealthyAfter', message: 'must be >= 1' });
    expect(issuesOf(config('{ path: /healthz, expect: 200 }'))[0]).toMatchObject({ path: 'upstreams[0].healthCheck.expect' });
  });
});
