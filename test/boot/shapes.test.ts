// Start-up must leave V8's object shapes in a state where the hot path stays fast: plain objects
// that gain the same properties share one map, and a `process.nextTick` tick object is held so
// nextTick's computed-key stores stay monomorphic (src/boot/tick-shape.ts). Both regressions cost
// 10%+ of the gateway's CPU per request without changing any answer, so no other test sees them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PROBE = path.join(ROOT, 'test/boot/shape-probe.mjs');

const CONFIG = `
listen:
  - { name: main, host: 127.0.0.1, port: 0 }
log: { level: warn }
issuers:
  - name: main
    issuer: https://issuer.example
    jwksUri: http://127.0.0.1:9/jwks
    audiences: [api]
    algorithms: [ES256, RS256, EdDSA]
upstreams:
  - { name: api, url: http://127.0.0.1:9 }
rateLimits:
  - { name: per-sub, key: claim:sub, limit: 100, window: 1s }
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - name: claims
    path: '/users/{userId}/orders'
    upstream: api
    scopes: [orders:read]
    rateLimits: [per-sub]
    claims:
      - claims.sub == request.params.userId
`;

type Report = { sharedShapes: boolean; tickShapeKept: boolean; ioredisLoaded: boolean; celLoaded: boolean; joseLoaded: boolean; modulesSeen: number; brokenRefused: string[] | null; compileMs: number[] };

function probe(config: string): Report {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-shapes-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, config);
  const run = spawnSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', PROBE, ROOT, file], { encoding: 'utf8', timeout: 30_000 });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as Report;
}

describe('V8 object shapes after start-up', () => {
  it('keeps plain-object maps shared and a tick object held once the gateway has started (and after config reads), and loads neither a Redis client without Redis nor jose without a token handler or an introspected issuer', () => {
    const report = probe(CONFIG);
    // Also after the config was read three more times, each after a full GC (a reload that
    // compiles the schema validator again), and with no Redis client library loaded: this config
    // names no Redis. A broken file read after a full GC (the validator compiled anew) is still
    // refused, naming the key. Its claim rule needs the CEL library, and the probe sees it load;
    // it has no token handler and no introspected issuer, so jose never loads.
    expect(report).toMatchObject({ sharedShapes: true, tickShapeKept: true, ioredisLoaded: false, celLoaded: true, joseLoaded: false, brokenRefused: ['routes[1].scops'] });
  });

  it('loads no CEL library for a config without claim rules', () => {
    const report = probe(CONFIG.replace(/\n {4}claims:\n.*\n/, '\n'));
    expect(report.modulesSeen).toBeGreaterThan(50); // the hook saw the gateway's modules load
    expect(report).toMatchObject({ sharedShapes: true, tickShapeKept: true, ioredisLoaded: false, celLoaded: false, joseLoaded: false });
  });

  it('loads jose for an introspected issuer (the phantom-token area mints with it)', () => {
    const report = probe(
      CONFIG.replace(
        'upstreams:',
        `  - name: opaque
    issuer: https://opaque.example
    audiences: [api]
    introspection: { endpoint: http://127.0.0.1:9/introspect, clientId: gateway, clientSecret: s3cret }
upstreams:`,
      ),
    );
    expect(report).toMatchObject({ sharedShapes: true, tickShapeKept: true, joseLoaded: true });
  });
});
