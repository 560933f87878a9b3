import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { defaultAreas } from '../../src/areas.js';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import type { GatehouseConfig } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import type { AreaFactory } from '../../src/pipeline/runtime.js';
import { createLogger } from '../../src/telemetry/log.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

// A reload is all or nothing: the plan (routes, limits, areas), the trusted proxies and the
// config change together, or none of them does and whatever was built for the new config is
// closed. A probe area records, per config it was built for, whether its runtime was closed.

let api: TestUpstream;
let gw: Gateway;
let file: string;
const logs: Record<string, any>[] = [];
const env = { ...process.env };

interface Probe {
  routes: string[];
  closed: boolean;
}
const probes: Probe[] = [];
const probeArea: AreaFactory = (config) => {
  const probe: Probe = { routes: config.routes.map((r) => r.name), closed: false };
  probes.push(probe);
  return {
    name: 'probe',
    async start() {
      if (config.routes.some((r) => r.name === 'start-fails')) throw new Error('probe: start failed');
    },
    async close() {
      probe.closed = true;
    },
  };
};

const yaml = (routes: string[], proxies: string[] = []) => `
listen: { host: 127.0.0.1, port: 0 }
limits: { shutdownTimeout: 5s }
upstreams:
  - { name: api, url: ${api.url} }
trustedProxies: [${proxies.map((p) => JSON.stringify(p)).join(', ')}]
routes:
${routes.map((name) => `  - { name: ${name}, path: /${name}, upstream: api, public: true }`).join('\n')}
`;
const configOf = (routes: string[], proxies: string[] = []): GatehouseConfig => loadConfigText(yaml(routes, proxies), file, env, path.dirname(file));

async function status(p: string): Promise<number> {
  const res = await request(`${gw.url}${p}`);
  await res.body.dump();
  return res.statusCode;
}

/** The X-Forwarded-For the upstream got for a request claiming to come from 203.0.113.7. */
async function forwardedFor(): Promise<unknown> {
  const res = await request(`${gw.url}/a/ip`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
  await res.body.dump();
  return api.requests.at(-1)!.headers['x-forwarded-for'];
}

const failures = () => logs.filter((l) => l.msg === 'config reload failed; the running config stays').length;

beforeAll(async () => {
  api = await startUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-reload-atomic-'));
  file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml(['a']));
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  gw = await startGateway({ config: loadConfigFile(file, env), log: createLogger({ level: 'debug', destination: sink as never }), areas: [...defaultAreas(), probeArea], env });
});
afterAll(async () => {
  await gw?.close();
  await api?.close();
});

describe('a reload that fails part-way', () => {
  it('keeps config A whole when the new trusted-proxy list cannot be built (a config object that skipped loading)', async () => {
    const before = gw.plan();
    const bad = { ...configOf(['b'], ['127.0.0.1']), trustedProxies: ['127.0.0.1', '10.0.0.0/x'] };
    const failed = failures();
    const error = await gw.reload(bad).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failures()).toBe(failed + 1);
    expect(gw.plan()).toBe(before);
    expect(await status('/a')).toBe(200);
    expect(await status('/b')).toBe(404);
    expect(await forwardedFor()).toBe('127.0.0.1');
    // Nothing built for the failed config is left open; A's plan is not closed.
    expect(probes.filter((p) => p.routes.includes('b')).every((p) => p.closed)).toBe(true);
    expect(probes[0]).toEqual({ routes: ['a'], closed: false });
    expect((error as Error).message).toMatch(/^trustedProxies\[1\] "10\.0\.0\.0\/x" has an invalid prefix length/);
  });

  it('closes a new plan whose start fails, and keeps config A', async () => {
    const before = gw.plan();
    const failed = failures();
    await expect(gw.reload(configOf(['start-fails'], ['127.0.0.1']))).rejects.toThrow(/probe: start failed/);
    expect(failures()).toBe(failed + 1);
    expect(gw.plan()).toBe(before);
    expect(await status('/a')).toBe(200);
    expect(await status('/start-fails')).toBe(404);
    expect(await forwardedFor()).toBe('127.0.0.1');
    const built = probes.filter((p) => p.routes.includes('start-fails'));
    expect(built).toHaveLength(1);
    expect(built[0]!.closed).toBe(true);
    expect(probes[0]).toEqual({ routes: ['a'], closed: false });
  });

  it('refuses a file whose trustedProxies entry would trust every peer ("10.0.0.0/"), and keeps config A', async () => {
    writeFileSync(file, yaml(['b'], ['10.0.0.0/']));
    const failed = failures();
    const error = await gw.reload().then(
      () => null,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((i) => i.path)).toEqual(['trustedProxies[0]']);
    expect(failures()).toBe(failed + 1);
    expect(await status('/a')).toBe(200);
    expect(await status('/b')).toBe(404);
    expect(await forwardedFor()).toBe('127.0.0.1');
  });
});

describe('a good reload', () => {
  it('swaps routes and trusted proxies together, then closes the old plan', async () => {
    const before = gw.plan();
    await gw.reload(configOf(['a', 'b'], ['127.0.0.1']));
    expect(gw.plan()).not.toBe(before);
    expect(logs.some((l) => l.msg === 'config reloaded')).toBe(true);
    expect(await status('/b')).toBe(200);
    expect(await forwardedFor()).toBe('203.0.113.7, 127.0.0.1');
    const until = Date.now() + 5000;
    while (!probes[0]!.closed && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(probes[0]!.closed).toBe(true);
    expect(probes.at(-1)).toEqual({ routes: ['a', 'b'], closed: false });
  });
});
