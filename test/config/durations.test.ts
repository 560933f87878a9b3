import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema/index.js';
import { DURATION_RANGES } from '../../src/config/units.js';
import { main } from '../../src/cli/main.js';
import { demoConfig } from '../../src/demo/main.js';
import { tokenHandlerDemoYaml } from '../../src/demo/spa-server.js';
import { issuesOf } from '../helpers/config.js';

// Every duration key on a line of its own, so a case can name its line and column.
const TEMPLATE = `listen:
  - name: https
    port: 0
    tls:
      cert: c.pem
      key: k.pem
      hsts:
        maxAge: 365d
      reload:
        debounce: 250ms
limits:
  headersTimeout: 10s
  requestTimeout: 30s
  keepAliveTimeout: 5s
  upstreamTimeout: 30s
  shutdownTimeout: 10s
  workerUnresponsiveTimeout: 30s
issuers:
  - name: main
    issuer: https://id.example
    jwksUri: https://id.example/jwks
    audiences: [api]
    clockSkew: 60s
    maxTokenAge: 1h
    jwksRefresh: 5m
    jwksCooldown: 30s
    fetchTimeout: 5s
  - name: opaque
    issuer: https://opaque.example
    audiences: [api]
    introspection:
      endpoint: https://opaque.example/introspect
      clientId: gw
      clientSecret: secret
      cacheTtl: 60s
      negativeCacheTtl: 5s
      timeout: 4s
upstreams:
  - name: api
    url: http://127.0.0.1:9001
    timeout: 20s
    connectTimeout: 3s
    keepAliveTimeout: 4s
routes:
  - name: orders
    path: /orders
    upstream: api
    auth: cookie
    rateLimits: [per-sub]
    timeout: 15s
    stepUp:
      maxAuthAge: 5m
rateLimits:
  - name: per-sub
    key: claim:sub
    limit: 10
    window: 1m
preAuthLimit:
  limit: 100
  window: 1s
redis:
  url: redis://127.0.0.1:6379
  timeout: 250ms
tokenHandler:
  issuer: main
  clientId: spa
  clientSecret: spa-secret
  redirectUri: https://app.example/callback
  trustedOrigins: [https://app.example]
  cookieKeys: [${randomBytes(32).toString('base64')}]
  loginStateTtl: 10m
  sessionTtl: 8h
gateway:
  tokenTtl: 5m
  keyRotationGrace: 24h
  keyRotationInterval: 30d
`;
const LINES = TEMPLATE.split('\n');

afterEach(() => vi.restoreAllMocks());

/** Where `pathText` (e.g. `upstreams[0].timeout`) sits in TEMPLATE: the line that sets `lineText`. */
function lineOf(lineText: string): { line: number; column: number } {
  const index = LINES.findIndex((l) => l === lineText);
  if (index < 0) throw new Error(`not in the template: ${lineText}`);
  return { line: index + 1, column: lineText.indexOf(':') + 3 };
}

/** `base` (TEMPLATE) with the value on `lineText` replaced. */
function withValue(lineText: string, value: string, base = TEMPLATE): string {
  const key = lineText.slice(0, lineText.indexOf(':') + 1);
  return base
    .split('\n')
    .map((l) => (l === lineText ? `${key} ${value}` : l))
    .join('\n');
}


// [key path, its line in TEMPLATE, the least value, the most value, a value over it]
const REFUSED_ZERO: [string, string, string, string, string][] = [
  ['limits.headersTimeout', '  headersTimeout: 10s', '100ms', '24d', '25d'],
  ['limits.requestTimeout', '  requestTimeout: 30s', '100ms', '24d', '25d'],
  ['limits.keepAliveTimeout', '  keepAliveTimeout: 5s', '100ms', '24d', '25d'],
  ['limits.upstreamTimeout', '  upstreamTimeout: 30s', '100ms', '24d', '25d'],
  ['issuers[0].jwksRefresh', '    jwksRefresh: 5m', '100ms', '22d', '30d'],
  ['issuers[0].jwksCooldown', '    jwksCooldown: 30s', '100ms', '24d', '25d'],
  ['issuers[0].fetchTimeout', '    fetchTimeout: 5s', '100ms', '24d', '25d'],
  ['issuers[1].introspection.timeout', '      timeout: 4s', '100ms', '24d', '25d'],
  ['upstreams[0].timeout', '    timeout: 20s', '100ms', '24d', '25d'],
  ['upstreams[0].connectTimeout', '    connectTimeout: 3s', '100ms', '24d', '25d'],
  ['upstreams[0].keepAliveTimeout', '    keepAliveTimeout: 4s', '100ms', '24d', '25d'],
  ['routes[0].timeout', '    timeout: 15s', '100ms', '24d', '25d'],
  ['rateLimits[0].window', '    window: 1m', '1ms', '24d', '25d'],
  ['preAuthLimit.window', '  window: 1s', '1ms', '24d', '25d'],
  ['redis.timeout', '  timeout: 250ms', '10ms', '1m', '2m'],
  ['tokenHandler.loginStateTtl', '  loginStateTtl: 10m', '1s', '24d', '25d'],
  ['tokenHandler.sessionTtl', '  sessionTtl: 8h', '1s', '400d', '401d'],
  ['gateway.tokenTtl', '  tokenTtl: 5m', '1s', '24d', '25d'],
];

// 0 is a documented choice for these: off, no cache, no drain, forget HSTS, no leeway.
const ACCEPTED_ZERO: [string, string, string, string][] = [
  ['listen[0].tls.hsts.maxAge', '        maxAge: 365d', '3650d', '3651d'],
  ['listen[0].tls.reload.debounce', '        debounce: 250ms', '24d', '25d'],
  ['limits.shutdownTimeout', '  shutdownTimeout: 10s', '24d', '25d'],
  ['limits.workerUnresponsiveTimeout', '  workerUnresponsiveTimeout: 30s', '24d', '25d'],
  ['issuers[0].clockSkew', '    clockSkew: 60s', '24d', '25d'],
  ['issuers[0].maxTokenAge', '    maxTokenAge: 1h', '24d', '25d'],
  ['issuers[1].introspection.cacheTtl', '      cacheTtl: 60s', '24d', '25d'],
  ['issuers[1].introspection.negativeCacheTtl', '      negativeCacheTtl: 5s', '24d', '25d'],
  ['routes[0].stepUp.maxAuthAge', '      maxAuthAge: 5m', '24d', '25d'],
  ['gateway.keyRotationGrace', '  keyRotationGrace: 24h', '24d', '25d'],
  ['gateway.keyRotationInterval', '  keyRotationInterval: 30d', '3650d', '3651d'],
];

describe('durations: refused values', () => {
  it.each(REFUSED_ZERO)('%s: 0 (also as 0s and 0.0001 seconds) is one issue at its line, naming the minimum', (keyPath, lineText, least) => {
    for (const zero of ['0', '0s', '0.0001']) {
      const issues = issuesOf(withValue(lineText, zero));
      expect(issues, zero).toHaveLength(1);
      expect(issues[0]).toMatchObject({ path: keyPath, ...lineOf(lineText) });
      expect(issues[0]!.message).toMatch(new RegExp(`^must be at least ${least}: 0 would `));
    }
  });

  it.each([...REFUSED_ZERO.map(([k, l, , most, over]) => [k, l, most, over] as const), ...ACCEPTED_ZERO])(
    '%s: over its maximum is one issue at its line, naming the maximum',
    (keyPath, lineText, most, over) => {
      const issues = issuesOf(withValue(lineText, over));
      expect(issues).toHaveLength(1);
      expect(issues[0]).toMatchObject({ path: keyPath, ...lineOf(lineText) });
      expect(issues[0]!.message).toMatch(new RegExp(`^must be at most ${most} `));
    },
  );

  it('refuses a number of seconds past a timer the same way (2592000 = 30d), and an infinite one', () => {
    for (const value of ['2592000', '.inf']) {
      const issues = issuesOf(withValue('    jwksRefresh: 5m', value));
      expect(issues.map((i) => [i.path, i.line]), value).toEqual([['issuers[0].jwksRefresh', lineOf('    jwksRefresh: 5m').line]]);
    }
  });

  it('refuses a value above 0 but under the minimum, and says when 0 would turn the key off', () => {
    expect(issuesOf(withValue('  headersTimeout: 10s', '50ms'))).toMatchObject([{ path: 'limits.headersTimeout', message: 'must be at least 100ms' }]);
    expect(issuesOf(withValue('  headersTimeout: 10s', '0.05'))).toMatchObject([{ path: 'limits.headersTimeout', message: 'must be at least 100ms' }]);
    expect(issuesOf(withValue('  timeout: 250ms', '5ms'))).toMatchObject([{ path: 'redis.timeout' }]);
    expect(issuesOf(withValue('  workerUnresponsiveTimeout: 30s', '500ms'))).toMatchObject([
      { path: 'limits.workerUnresponsiveTimeout', message: 'must be at least 1s (or 0 to turn it off)' },
    ]);
    expect(issuesOf(withValue('  keyRotationInterval: 30d', '10m'))).toMatchObject([
      { path: 'gateway.keyRotationInterval', message: 'must be at least 1h (or 0 to turn it off)' },
    ]);
  });

  it('reports every duration out of range at once, one issue each', () => {
    const text = withValue('  timeout: 250ms', '0', withValue('    jwksRefresh: 5m', '30d', withValue('  headersTimeout: 10s', '0')));
    expect(issuesOf(text).map((i) => i.path).sort()).toEqual(['issuers[0].jwksRefresh', 'limits.headersTimeout', 'redis.timeout']);
  });

  it('checks a single listen object (not a list) too', () => {
    const single = 'listen: { port: 0, tls: { cert: c.pem, key: k.pem, reload: { debounce: 25d } } }\nupstreams: [{ name: a, url: "http://127.0.0.1:1" }]\nroutes: [{ name: r, path: /, upstream: a, public: true }]\n';
    expect(issuesOf(single)).toMatchObject([{ path: 'listen.tls.reload.debounce', line: 1, message: expect.stringMatching(/^must be at most 24d /) }]);
  });

  it('gatehouse validate prints file:line:column key message and exits 3', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-durations-'));
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(file, withValue('  headersTimeout: 10s', '0'));
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    const code = await main(['validate', '--config', file]);
    const { line, column } = lineOf('  headersTimeout: 10s');
    expect(code).toBe(3);
    expect(written[0]).toBe(
      `${file}:${line}:${column} limits.headersTimeout must be at least 100ms: 0 would turn the timeout off (a client could hold a connection open with partial headers: slowloris)\n`,
    );
    expect(written).toHaveLength(2);
  });
});

describe('durations: accepted values', () => {
  it('loads the template as written', () => {
    expect(issuesOf(TEMPLATE)).toEqual([]);
  });

  it.each(ACCEPTED_ZERO)('%s: 0 loads (a documented choice)', (keyPath, lineText) => {
    expect(issuesOf(withValue(lineText, '0'))).toEqual([]);
  });

  it('loads the least and the most value of every key', () => {
    for (const [keyPath, lineText, least, most] of REFUSED_ZERO) {
      expect(issuesOf(withValue(lineText, least)), `${keyPath} ${least}`).toEqual([]);
      expect(issuesOf(withValue(lineText, most)), `${keyPath} ${most}`).toEqual([]);
    }
    for (const [keyPath, lineText, most] of ACCEPTED_ZERO) expect(issuesOf(withValue(lineText, most)), `${keyPath} ${most}`).toEqual([]);
    const config = loadConfigText(withValue('    jwksRefresh: 5m', '22d', withValue('  headersTimeout: 10s', '100ms')), 'gatehouse.yaml', {});
    expect(config.limits.headersTimeout).toBe(100);
    expect(config.issuers[0]!.jwksRefresh).toBe(22 * 86_400_000);
  });

  it('keeps 0 as off where documented: workerUnresponsiveTimeout, keyRotationInterval, cacheTtl', () => {
    const config = loadConfigText(
      withValue('      cacheTtl: 60s', '0s', withValue('  keyRotationInterval: 30d', '0', withValue('  workerUnresponsiveTimeout: 30s', '0'))),
      'gatehouse.yaml',
      {},
    );
    expect(config.limits.workerUnresponsiveTimeout).toBe(0);
    expect(config.gateway.keyRotationInterval).toBe(0);
    expect(config.issuers[1]!.introspection!.cacheTtl).toBe(0);
  });

  it('loads the example configs and the demo config without issues', () => {
    for (const example of ['gatehouse.yaml', 'phantom-tokens.yaml', 'tls.yaml']) {
      expect(() => loadConfigFile(path.join('examples', example), { INTROSPECTION_SECRET: 'secret' }), example).not.toThrow();
    }
    const demo =
      demoConfig({ issuer: 'http://127.0.0.1:9400', apiUrl: 'http://127.0.0.1:9401', port: 0, adminPort: 0 }) +
      tokenHandlerDemoYaml({ issuer: 'demo', spaUrl: 'http://127.0.0.1:9402', clientSecret: 'spa-secret' });
    expect(issuesOf(demo)).toEqual([]);
  });
});

describe('durations: the table', () => {
  it('has a range for every duration key of the schema, and no other', () => {
    const durationPattern = JSON.stringify((readSchemaDuration() as { anyOf: unknown[] }).anyOf);
    const found = new Set<string>();
    const walk = (node: unknown, at: string): void => {
      if (node === null || typeof node !== 'object') return;
      const n = node as Record<string, unknown>;
      if (Array.isArray(n.anyOf) && JSON.stringify(n.anyOf) === durationPattern) {
        found.add(at);
        return;
      }
      for (const [key, child] of Object.entries((n.properties as Record<string, unknown> | undefined) ?? {})) walk(child, at ? `${at}.${key}` : key);
      if (n.items) walk(n.items, at);
      if (Array.isArray(n.anyOf)) for (const branch of n.anyOf) walk(branch, at);
    };
    walk(configSchema, '');
    expect([...found].sort()).toEqual(Object.keys(DURATION_RANGES).map((k) => k.replace(/\[\]/g, '')).sort());
  });
});

function readSchemaDuration(): unknown {
  // The published schema holds the duration definition inline at limits.headersTimeout.
  const schema = JSON.parse(readFileSync('schema/gatehouse.schema.json', 'utf8'));
  return schema.properties.limits.properties.headersTimeout;
}
