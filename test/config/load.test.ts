import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { parseDuration, parseSize } from '../../src/config/units.js';
import { formatConfigIssue, type ConfigIssue } from '../../src/errors.js';
import { issuesOf } from '../helpers/config.js';

const VALID = `
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9090 }
issuers:
  - name: main
    issuer: https://login.example.com
    jwksUri: https://login.example.com/jwks
    audiences: [https://api.example.com]
    algorithms: [ES256, RS256]
upstreams:
  - name: orders
    url: http://127.0.0.1:9001
routes:
  - name: list-orders
    path: /orders
    methods: [GET]
    upstream: orders
    scopes: [orders:read]
  - name: health
    path: /health
    upstream: orders
    public: true
`;


describe('config loading', () => {
  it('accepts the contract example and applies defaults', () => {
    const config = loadConfigText(VALID, 'gatehouse.yaml', {});
    expect(config.listen).toEqual([expect.objectContaining({ host: '127.0.0.1', port: 8080 })]);
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9090, enabled: true, allowFrom: null });
    expect(config.issuers[0]).toMatchObject({ name: 'main', clockSkew: 60_000, maxTokenSize: 8192, algorithms: ['ES256', 'RS256'] });
    expect(config.routes[0]).toMatchObject({ name: 'list-orders', methods: ['GET'], public: false, scopes: ['orders:read'], issuers: null });
    expect(config.routes[1]).toMatchObject({ name: 'health', public: true, methods: null });
    expect(config.limits.maxBodySize).toBe(1024 * 1024);
  });

  it('reads limits.workerUnresponsiveTimeout as a duration (30s by default, 0 turns the watchdog off) and names a bad one', () => {
    expect(loadConfigText(VALID, 'gatehouse.yaml', {}).limits.workerUnresponsiveTimeout).toBe(30_000);
    const withLimit = (value: string) => VALID.replace(/^routes:/m, `limits: { workerUnresponsiveTimeout: ${value} }\nroutes:`);
    expect(loadConfigText(withLimit('0'), 'gatehouse.yaml', {}).limits.workerUnresponsiveTimeout).toBe(0);
    expect(loadConfigText(withLimit('90s'), 'gatehouse.yaml', {}).limits.workerUnresponsiveTimeout).toBe(90_000);
    const [issue] = issuesOf(withLimit('soon'));
    expect(issue).toMatchObject({ path: 'limits.workerUnresponsiveTimeout' });
    expect(issue!.message).toMatch(/duration/);
  });

  it('reads upstreams[].forwardedHeaders (all four by default, [] for none) and names a bad or repeated one with its line', () => {
    expect(loadConfigText(VALID, 'gatehouse.yaml', {}).upstreams[0]!.forwardedHeaders).toEqual(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);
    const withHeaders = (value: string) => VALID.replace('    url: http://127.0.0.1:9001', `    url: http://127.0.0.1:9001\n    forwardedHeaders: ${value}`);
    expect(loadConfigText(withHeaders('[]'), 'gatehouse.yaml', {}).upstreams[0]!.forwardedHeaders).toEqual([]);
    expect(loadConfigText(withHeaders('[forwarded]'), 'gatehouse.yaml', {}).upstreams[0]!.forwardedHeaders).toEqual(['forwarded']);
    // A header name gatehouse does not set, in another case, or twice: refused, not ignored.
    for (const [value, path, message] of [
      ['[x-forwarded-for, x-real-ip]', 'upstreams[0].forwardedHeaders[1]', /must be one of: "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"/],
      ['[X-Forwarded-For]', 'upstreams[0].forwardedHeaders[0]', /must be one of/],
      ['[forwarded, forwarded]', 'upstreams[0].forwardedHeaders', /must not repeat/],
      ['x-forwarded-for', 'upstreams[0].forwardedHeaders', /array/],
    ] as const) {
      const issues = issuesOf(withHeaders(value));
      expect(issues, value).toHaveLength(1);
      expect(issues[0], value).toMatchObject({ line: 13, path });
      expect(issues[0]!.message, value).toMatch(message);
    }
  });

  it('reads JSON files too', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-'));
    const file = path.join(dir, 'gatehouse.json');
    writeFileSync(file, JSON.stringify({ listen: { port: 8080 }, upstreams: [{ name: 'a', url: 'http://127.0.0.1:1' }], routes: [{ name: 'r', path: '/', upstream: 'a', public: true }] }));
    expect(loadConfigFile(file).routes[0]!.name).toBe('r');
  });

  it('expands ${ENV} in strings, with defaults, and names a missing variable with its line', () => {
    const text = VALID.replace('http://127.0.0.1:9001', '${UPSTREAM_URL}').replace('https://login.example.com/jwks', '${JWKS:-https://login.example.com/jwks}');
    expect(loadConfigText(text, 'gatehouse.yaml', { UPSTREAM_URL: 'http://127.0.0.1:7000' }).upstreams[0]!.url).toBe('http://127.0.0.1:7000');
    const issues = issuesOf(text, {});
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 12, path: 'upstreams[0].url' });
    expect(issues[0]!.message).toContain('UPSTREAM_URL');
  });

  it('does not let an environment value inject YAML structure', () => {
    const text = VALID.replace('http://127.0.0.1:9001', '${UPSTREAM_URL}');
    const issues = issuesOf(text, { UPSTREAM_URL: 'http://x\n    public: true' });
    // the value stays one string: at worst an invalid URL, never a new key
    expect(issues.every((i) => i.path === 'upstreams[0].url')).toBe(true);
    const config = loadConfigText(text, 'gatehouse.yaml', { UPSTREAM_URL: 'http://127.0.0.1:1' });
    expect(config.routes[0]!.public).toBe(false);
  });

  it('reports an unknown key with its file, line and path and the keys it expected', () => {
    const issues = issuesOf(VALID.replace('    scopes: [orders:read]', '    scopes: [orders:read]\n    scops: [x]'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: 'gatehouse.yaml', line: 19, path: 'routes[0].scops' });
    expect(issues[0]!.message).toMatch(/not a known key.*scopes/);
  });

  it('names an unknown key inside a value that may also be a string or a boolean (a claim rule object, websocket settings)', () => {
    const issues = issuesOf(VALID.replace('    scopes: [orders:read]', "    scopes: [orders:read]\n    claims: [{ rule: 'true', mesage: x }]"));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: 'gatehouse.yaml', line: 19, path: 'routes[0].claims[0].mesage' });
    expect(issues[0]!.message).toMatch(/not a known key.*rule, message/);
  });

  it('reports every problem at once', () => {
    const text = VALID.replace('port: 8080', 'port: "eighty"').replace('methods: [GET]', 'methods: get').replace('public: true', 'public: yes please');
    const issues = issuesOf(text);
    expect(issues.map((i) => i.path).sort()).toEqual(['listen.port', 'routes[0].methods', 'routes[1].public'].sort());
    for (const issue of issues) expect(issue.line).toBeGreaterThan(0);
  });

  it('refuses none and HS* algorithms', () => {
    for (const alg of ['none', 'HS256', 'HS512']) {
      const issues = issuesOf(VALID.replace('algorithms: [ES256, RS256]', `algorithms: [ES256, ${alg}]`));
      expect(issues[0]).toMatchObject({ path: 'issuers[0].algorithms[1]', line: 9 });
    }
  });

  it('refuses a plain-http jwksUri on a non-loopback host', () => {
    const issues = issuesOf(VALID.replace('https://login.example.com/jwks', 'http://login.example.com/jwks'));
    expect(issues[0]).toMatchObject({ path: 'issuers[0].jwksUri', line: 7 });
  });

  it('refuses a plain-http jwksUri on a host name that only starts with 127. (not a loopback address), like any other plaintext URL', () => {
    const [plain] = issuesOf(VALID.replace('https://login.example.com/jwks', 'http://login.example.com/jwks'));
    for (const uri of ['http://127.attacker.example/jwks', 'http://127.0.0.1.attacker.example/jwks', 'http://127.0.0.1.nip.io/jwks']) {
      const issues = issuesOf(VALID.replace('https://login.example.com/jwks', uri));
      expect(issues).toHaveLength(1);
      expect(issues[0]).toMatchObject({ file: 'gatehouse.yaml', path: 'issuers[0].jwksUri', line: 7, message: plain!.message });
      expect(formatConfigIssue(issues[0]!)).toBe(formatConfigIssue(plain!));
    }
  });

  it('accepts a plain-http jwksUri on localhost, [::1] and any literal IPv4 address in 127.0.0.0/8', () => {
    for (const uri of ['http://localhost:8080/jwks', 'http://[::1]:8080/jwks', 'http://127.0.0.1:8080/jwks', 'http://127.1.2.3/jwks', 'http://127.1/jwks']) {
      expect(issuesOf(VALID.replace('https://login.example.com/jwks', uri))).toEqual([]);
    }
  });

  it('names references to unknown upstreams, issuers and limits', () => {
    const text = VALID.replace('    upstream: orders\n    scopes', '    upstream: ordrs\n    issuers: [nope]\n    rateLimits: [missing]\n    scopes');
    const issues = issuesOf(text);
    expect(issues.map((i) => i.path).sort()).toEqual(['routes[0].issuers[0]', 'routes[0].rateLimits[0]', 'routes[0].upstream']);
  });

  it('refuses duplicate route names and token settings on a public route', () => {
    const text = VALID.replace('name: health', 'name: list-orders').replace('    public: true', '    public: true\n    scopes: [x]');
    const messages = issuesOf(text).map((i) => `${i.path} ${i.message}`);
    expect(messages.some((m) => m.startsWith('routes[1].name') && m.includes('already used'))).toBe(true);
    expect(messages.some((m) => m.startsWith('routes[1].scopes'))).toBe(true);
  });

  it('refuses a protected route when no issuer is configured', () => {
    const text = VALID.replace(/issuers:[\s\S]*?upstreams:/, 'upstreams:');
    expect(issuesOf(text).some((i) => i.path === 'routes[0]' && /no issuers/.test(i.message))).toBe(true);
  });

  it('reports YAML syntax errors with a line', () => {
    const issues = issuesOf('listen: { port: 8080\nroutes: [');
    expect(issues).toHaveLength(1);
    expect(issues[0]!.line).toBeGreaterThan(0);
    expect(issues[0]!.message).toMatch(/not valid YAML/);
  });

  it('refuses duplicate keys', () => {
    const issues = issuesOf(VALID.replace('admin: {', 'listen: { port: 1 }\nadmin: {'));
    expect(issues[0]!.message).toMatch(/not valid YAML/);
  });

  it('names a missing file', () => {
    expect(() => loadConfigFile('/nonexistent/gatehouse.yaml')).toThrow(/config file does not exist/);
  });

  it('refuses route paths with dot segments or partial params', () => {
    expect(issuesOf(VALID.replace('path: /orders', 'path: /orders/../x'))[0]).toMatchObject({ path: 'routes[0].path' });
    expect(issuesOf(VALID.replace('path: /orders', "path: '/orders/x{id}'"))[0]).toMatchObject({ path: 'routes[0].path' });
  });
});

describe('units', () => {
  it('parses durations as seconds or with a unit', () => {
    expect(parseDuration(30)).toBe(30_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(() => parseDuration('5 minutes')).toThrow();
  });
  it('parses sizes as bytes or with a unit', () => {
    expect(parseSize(512)).toBe(512);
    expect(parseSize('1mb')).toBe(1048576);
    expect(parseSize('64kb')).toBe(65536);
    expect(parseSize('2MiB')).toBe(2 * 1048576);
    expect(() => parseSize('lots')).toThrow();
  });
  it('refuses a bad duration in the config with its location', () => {
    const issues = issuesOf(VALID.replace('    algorithms: [ES256, RS256]', '    algorithms: [ES256, RS256]\n    clockSkew: 5 minutes'));
    expect(issues[0]).toMatchObject({ path: 'issuers[0].clockSkew', line: 10 });
    expect(issues[0]!.message).toMatch(/duration/);
  });

  it('reads gateway.methodOverride (refuse by default, or allow) and names any other value with its line', () => {
    expect(loadConfigText(VALID, 'gatehouse.yaml', {}).gateway.methodOverride).toBe('refuse');
    expect(loadConfigText(`${VALID}gateway: { methodOverride: allow }\n`, 'gatehouse.yaml', {}).gateway.methodOverride).toBe('allow');
    const [issue] = issuesOf(`${VALID}gateway: { methodOverride: follow }\n`);
    expect(issue).toMatchObject({ path: 'gateway.methodOverride', message: 'must be one of: "refuse", "allow"' });
  });

  it('reads gateway.paths.allowSemicolons (false by default) and names a wrong type with its line', () => {
    expect(loadConfigText(VALID, 'gatehouse.yaml', {}).gateway.paths).toEqual({ allowSemicolons: false });
    const withPaths = (value: string) => `${VALID}gateway:\n  paths:\n    allowSemicolons: ${value}\n`;
    expect(loadConfigText(withPaths('true'), 'gatehouse.yaml', {}).gateway.paths).toEqual({ allowSemicolons: true });
    const line = withPaths('x').split('\n').findIndex((l) => l.includes('allowSemicolons')) + 1;
    for (const value of ['"true"', 'yes', '1']) {
      const issues = issuesOf(withPaths(value));
      expect(issues, value).toHaveLength(1);
      expect(issues[0], value).toMatchObject({ file: 'gatehouse.yaml', line, path: 'gateway.paths.allowSemicolons' });
      expect(issues[0]!.message, value).toBe('must be a boolean');
    }
    const [unknown] = issuesOf(`${VALID}gateway:\n  paths:\n    allowSemicolon: true\n`);
    expect(unknown).toMatchObject({ path: 'gateway.paths.allowSemicolon', line });
  });

  it('refuses a route path with ";" in a segment: a request\'s ";" is refused or starts path parameters', () => {
    const issues = issuesOf(VALID.replace('    path: /orders', '    path: /orders;v=1'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'routes[0].path', line: 15 });
  });
});
