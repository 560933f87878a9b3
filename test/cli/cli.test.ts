import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

// Runs the built CLI (npm test builds first), exactly as a user would.
const BIN = path.resolve('bin/gatehouse.js');
const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cli-'));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

function run(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
}

describe('gatehouse routes', () => {
  it('prints the route table, with the methods a route without a list takes and what each route checks', () => {
    const file = write(
      'routes.yaml',
      [
        'listen: { port: 8080 }',
        'upstreams: [{ name: a, url: "http://127.0.0.1:1" }]',
        'issuers: [{ name: main, issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks", audiences: [api] }]',
        'routes:',
        '  - { name: health, path: /health, upstream: a, public: true }',
        '  - { name: orders, path: /orders, methods: [GET, POST], upstream: a, scopes: [orders:read] }',
        '  - name: order',
        '    path: "/orders/{id}"',
        '    exact: true',
        '    methods: [GET, PATCH]',
        '    upstream: a',
        '    scopes: [orders:write]',
        '    claims: [claims.sub == request.params.id]',
        '    params: { schema: { type: object, properties: { id: { type: integer } } } }',
        '    requestBody: { schema: { type: object } }',
        '    responseBody: { schemas: { "200": { type: object } }, onInvalid: log }',
        '  - { name: login, path: /login, methods: [POST], upstream: a, public: true, requestHeaders: { schema: { type: object } }, requestBody: { mediaTypes: [form], schema: { type: object } } }',
        '  - { name: hook, path: /hook, methods: [POST], upstream: a, public: true, requestBody: { mediaTypes: [json, form] } }',
        '',
      ].join('\n'),
    );
    const out = run('routes', '--config', file);
    expect(out.status).toBe(0);
    const lines = out.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/));
    expect(lines[0]).toEqual(['ROUTE', 'METHODS', 'PATH', 'UPSTREAM', 'ACCESS', 'CHECKS']);
    expect(lines[1]).toEqual(['health', 'all but TRACE', '/health', 'a', 'public', '-']);
    expect(lines[2]).toEqual(['orders', 'GET,POST', '/orders', 'a', 'token + orders:read', '-']);
    expect(lines[3]).toEqual(['order', 'GET,PATCH', '/orders/{id} (exact)', 'a', 'token + orders:write', 'claims(1) params body answers(log)']);
    expect(lines[4]).toEqual(['login', 'POST', '/login', 'a', 'public', 'headers body:form']);
    expect(lines[5]).toEqual(['hook', 'POST', '/hook', 'a', 'public', 'body(json+form)']);
  });
});

describe('gatehouse validate', () => {
  it('accepts a valid file', () => {
    const file = write('ok.yaml', `listen: { port: 8080 }\nupstreams: [{ name: a, url: "http://127.0.0.1:1" }]\nroutes: [{ name: r, path: /, upstream: a, public: true }]\n`);
    const out = run('validate', '--config', file);
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('ok (1 routes');
  });

  it('warns of settings that weaken the config (exit 0), and with --strict fails on them (exit 3)', () => {
    const file = write(
      'weak.yaml',
      ['listen: { port: 8080 }', 'gateway: { methodOverride: allow }', 'upstreams: [{ name: a, url: "http://10.1.2.3:8080" }]', 'routes: [{ name: r, path: /, upstream: a, public: true }]', ''].join('\n'),
    );
    const out = run('validate', '--config', file);
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('ok (1 routes, 1 upstreams, 0 issuers; 2 warning(s))');
    const warnings = out.stderr.trim().split('\n');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]!.startsWith(`warning: ${file}:3:`)).toBe(true);
    expect(warnings[0]).toContain('upstreams[0].url plain HTTP upstream on a non-loopback address');
    expect(warnings[1]).toContain('gateway.methodOverride method overrides allowed');
    const strict = run('validate', '--config', file, '--strict');
    expect(strict.status).toBe(3);
    expect(strict.stdout).toBe('');
    expect(strict.stderr).toContain('gatehouse: 2 warning(s) in the config (--strict)');
    // A config without any: ok either way.
    const clean = write('clean.yaml', `listen: { port: 8080 }\nupstreams: [{ name: a, url: "http://127.0.0.1:1" }]\nroutes: [{ name: r, path: /, upstream: a, public: true }]\n`);
    expect(run('validate', '--config', clean, '--strict').status).toBe(0);
  });

  it('prints every problem as file:line:column key message and exits 3', () => {
    const file = write(
      'broken.yaml',
      ['listen: { port: 8080 }', 'upstreams:', '  - name: a', '    url: ftp://x', 'routes:', '  - name: r', '    path: orders', '    upstream: b', '    publik: true', ''].join('\n'),
    );
    const out = run('validate', '--config', file);
    expect(out.status).toBe(3);
    const lines = out.stderr.trim().split('\n');
    expect(lines).toContain(`${file}:4:10 upstreams[0].url is not valid: An http:// or https:// URL.`);
    expect(lines.some((l) => l.startsWith(`${file}:9:5 routes[0].publik is not a known key`))).toBe(true);
    expect(lines.some((l) => l.startsWith(`${file}:7:11 routes[0].path`))).toBe(true);
    expect(lines.at(-1)).toMatch(/problem\(s\) in the config; nothing was started/);
  });

  it('names the file, line and key of an outbound certificate file that is missing or not PEM — never a stack trace', () => {
    write('not-pem.pem', 'hello\n');
    const file = write(
      'tls-files.yaml',
      [
        'listen: { port: 8080 }',
        'issuers:',
        '  - { name: main, issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks", audiences: [api], tls: { ca: ./not-pem.pem } }',
        'upstreams:',
        '  - name: a',
        '    url: https://127.0.0.1:1',
        '    tls: { ca: ./missing-ca.pem, cert: ./missing-cert.pem, key: ./missing-key.pem }',
        'routes: [{ name: r, path: /, upstream: a, public: true }]',
        '',
      ].join('\n'),
    );
    for (const command of ['validate', 'start']) {
      const out = run(command, '--config', file, ...(command === 'start' ? ['--workers', '1'] : []));
      expect(out.status, command).toBe(3);
      const lines = out.stderr.trim().split('\n');
      expect(lines, command).toEqual([
        `${file}:7:16 upstreams[0].tls.ca CA ./missing-ca.pem cannot be read (ENOENT)`,
        `${file}:7:40 upstreams[0].tls.cert certificate ./missing-cert.pem cannot be read (ENOENT)`,
        `${file}:7:65 upstreams[0].tls.key key ./missing-key.pem cannot be read (ENOENT)`,
        `${file}:3:122 issuers[0].tls.ca CA ./not-pem.pem is not a PEM certificate`,
        'gatehouse: 4 problem(s) in the config; nothing was started',
      ]);
    }
  });

  it('says clearly when the file is missing', () => {
    const out = run('validate', '--config', path.join(dir, 'nope.yaml'));
    expect(out.status).toBe(3);
    expect(out.stderr).toContain('config file does not exist');
  });

  it('explains usage errors', () => {
    const out = run('frobnicate');
    expect(out.status).toBe(2);
    expect(out.stderr).toContain('unknown command "frobnicate"');
    expect(run('start', '--bogus').status).toBe(2);
    // A worker count out of range, from the flag or the file: exit 2 before anything starts.
    const file = write('workers.yaml', 'listen: { host: 127.0.0.1, port: 0 }\nupstreams: [{ name: a, url: "http://127.0.0.1:1" }]\nroutes:\n  - { name: r, path: /r, upstream: a, public: true }\n');
    for (const [args, got] of [
      [['--workers', '0'], '0'],
      [['--workers', 'many'], 'many'],
    ] as const) {
      const bad = run('start', '--config', file, ...args);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain(`--workers must be a whole number from 1 to 256, or auto (got "${got}")`);
      expect(bad.stdout).not.toContain('gatehouse started');
    }
    const fromFile = run('start', '--config', write('workers-300.yaml', `workers: 300\n${readFileSync(file, 'utf8')}`));
    expect(fromFile.status).toBe(2);
    expect(fromFile.stderr).toContain('(got "300")');
  });
});

describe('gatehouse start', () => {
  let api: TestUpstream;
  let child: ChildProcess | null = null;
  beforeAll(async () => {
    api = await startUpstream();
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await api.close();
  });

  it('refuses to start on an invalid config and exits non-zero', () => {
    const file = write('bad-start.yaml', 'listen: { port: 8080 }\nroutes: []\n');
    const out = run('start', '--config', file);
    expect(out.status).toBe(3);
    expect(out.stderr).toMatch(/upstreams/);
  });

  it('in one process, sets the V8 flags it was started without, and only those', async () => {
    const file = write('start-flags.yaml', `listen: { host: 127.0.0.1, port: 0 }\nupstreams: [{ name: a, url: "${api.url}" }]\nroutes:\n  - { name: r, path: /r, upstream: a, public: true }\n`);
    /** The start line and what the process said about its V8 flags within 300 ms of it. */
    const startWith = async (nodeArgs: string[], env: NodeJS.ProcessEnv) => {
      const proc = spawn(process.execPath, [...nodeArgs, BIN, 'start', '--config', file, '--workers', '1'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      let stdout = '';
      let stderr = '';
      proc.stdout!.on('data', (d) => (stdout += d));
      proc.stderr!.on('data', (d) => (stderr += d));
      try {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no start line: ${stdout}${stderr}`)), 15_000);
          proc.stdout!.on('data', () => {
            if (stdout.includes('gatehouse started')) {
              clearTimeout(timer);
              resolve();
            }
          });
        });
        await new Promise((r) => setTimeout(r, 300));
        const set = stdout.split('\n').find((l) => l.includes('V8 heap flags set at start'));
        return set === undefined ? null : (JSON.parse(set).v8Flags as string[]);
      } finally {
        proc.kill('SIGKILL');
      }
    };
    expect(await startWith([], {})).toEqual(['--heap-growing-percent=60']);
    // The operator's own value wins (node refuses this flag in NODE_OPTIONS, so only the command line carries it).
    expect(await startWith(['--heap-growing-percent=80'], {})).toBeNull();
    expect(await startWith(['--heap_growing_percent=100'], {})).toBeNull();
    expect(await startWith(['--max-semi-space-size=8'], { NODE_OPTIONS: '--max-semi-space-size=4' })).toEqual(['--heap-growing-percent=60']);
  }, 45_000);

  it('in one process (--workers 1): serves, reloads on SIGHUP, and drains then exits 0 on SIGTERM', async () => {
    const text = (extra: string) =>
      `listen: { host: 127.0.0.1, port: 0 }\nupstreams: [{ name: a, url: "${api.url}" }]\nroutes:\n  - { name: r, path: /r, upstream: a, public: true }\n${extra}`;
    const file = write('start.yaml', text(''));
    child = spawn(process.execPath, [BIN, 'start', '--config', file, '--workers', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout!.on('data', (d) => (stdout += d));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line: ${stdout}`)), 15_000);
      child!.stdout!.on('data', () => {
        const line = stdout.split('\n').find((l) => l.includes('gatehouse started'));
        if (line) {
          clearTimeout(timer);
          resolve(Object.values(JSON.parse(line).listeners as Record<string, string>)[0]!);
        }
      });
    });
    const first = await request(`${url}/r`);
    expect(first.statusCode).toBe(200);
    await first.body.dump();
    const missing = await request(`${url}/s`);
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();

    writeFileSync(file, text('  - { name: s, path: /s, upstream: a, public: true }\n'));
    child.kill('SIGHUP');
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const res = await request(`${url}/s`);
      status = res.statusCode;
      await res.body.dump();
    }
    expect(status).toBe(200);
    // Started without the workers' V8 flags, it set them itself and said so.
    const set = stdout.split('\n').find((l) => l.includes('V8 heap flags set at start'));
    expect(JSON.parse(set!).v8Flags).toEqual(['--heap-growing-percent=60']);

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    child = null;
  });
});
