import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { Writable } from 'node:stream';
import { loadConfigText } from '../../src/config/load.js';
import { RequestRejected, type GatehouseError } from '../../src/errors.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import type { RequestContext, Stage } from '../../src/pipeline/context.js';
import type { AreaFactory, RouteStages } from '../../src/pipeline/runtime.js';
import { createLogger } from '../../src/telemetry/log.js';
import { createTestPki } from '../helpers/certs.js';
import { Agent } from 'undici';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

// The runner stays synchronous while stages answer synchronously and awaits only the promises a
// stage returns (issue 8, hot path). Whatever the mix, the outcome must be the same: a denial is
// answered, a throw or a rejection is a 500 GH_ERR_INTERNAL, and only a clean pass is forwarded.

const deny = (code: 'GH_ERR_REQUEST_BAD_HEADER') => new RequestRejected(code, 400, 'denied by a test stage');
const later = <T>(value: T) => new Promise<T>((resolve) => setImmediate(() => resolve(value)));

/** Stages per route name; every slot is exercised somewhere. */
const STAGES: Record<string, RouteStages> = {
  'sync-pass': { preAuth: () => null, authorize: () => null, limit: () => null },
  'async-pass': { preAuth: () => later(null), authorize: () => later(null), limit: () => later(null) },
  'mixed-pass': { preAuth: () => null, authorize: () => later(null), limit: () => null },
  'sync-deny': { preAuth: () => null, authorize: () => deny('GH_ERR_REQUEST_BAD_HEADER') },
  'async-deny': { authorize: () => null, limit: () => later<GatehouseError | null>(deny('GH_ERR_REQUEST_BAD_HEADER')) },
  'sync-throw': {
    authorize: (() => {
      throw new Error('a bug in a stage');
    }) as Stage,
  },
  'async-throw': { limit: () => Promise.reject(new Error('a bug in an async stage')) },
  'after-async-throw': {
    preAuth: () => later(null),
    authorize: (() => {
      throw new Error('a bug after an async stage');
    }) as Stage,
  },
  // Not public, and authentication "passes" without a principal: default deny must hold.
  'no-principal': { credential: () => null, authenticate: () => later(null) },
};

const testArea: AreaFactory = () => ({
  name: 'test',
  stagesFor: (route) => STAGES[route.name] ?? {},
  handle(ctx: RequestContext, _req, res) {
    if (ctx.path === '/handled-sync') {
      res.end('handled synchronously');
      return true;
    }
    if (ctx.path === '/handled-async') {
      return later(true).then((v) => {
        res.end('handled asynchronously');
        return v;
      });
    }
    if (ctx.path === '/handler-throws') throw new Error('a bug in a handler');
    if (ctx.path === '/handled-headers') {
      res.writeHead(200, [...ctx.responseHeaders.flat(), 'x-request-id', ctx.id]);
      res.end('handled with the runner headers');
      return true;
    }
    return ctx.path === '/not-handled-async' ? later(false) : false;
  },
});

let upstream: TestUpstream;
let gw: Gateway;
const logs: Record<string, unknown>[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  const routes = [...Object.keys(STAGES), 'not-handled-async']
    .map((name) => `  - { name: ${name}, path: /${name}, upstream: api${name === 'no-principal' ? '' : ', public: true'} }`)
    .join('\n');
  const config = loadConfigText(`listen: { host: 127.0.0.1, port: 0 }\nissuers: [{ name: unused, issuer: "http://127.0.0.1:1", jwksUri: "http://127.0.0.1:1/jwks", audiences: [x] }]\nupstreams: [{ name: api, url: "${upstream.url}" }]\nroutes:\n${routes}\n`);
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  gw = await startGateway({ config, areas: [testArea], log: createLogger({ level: 'info', destination: sink as never }) });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

async function call(path: string): Promise<{ status: number; code?: string; text: string }> {
  const res = await request(`${gw.url}${path}`);
  const text = await res.body.text();
  let code: string | undefined;
  if (res.headers['content-type'] === 'application/problem+json') code = (JSON.parse(text) as { code: string }).code;
  return { status: res.statusCode, code, text };
}

describe('the runner with synchronous and asynchronous stages', () => {
  it('forwards when every stage passes synchronously', async () => {
    const before = upstream.requests.length;
    expect((await call('/sync-pass')).status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
  });

  it('forwards when every stage passes asynchronously, or some of them', async () => {
    expect((await call('/async-pass')).status).toBe(200);
    expect((await call('/mixed-pass')).status).toBe(200);
  });

  it('answers a synchronous denial and never forwards', async () => {
    const before = upstream.requests.length;
    const res = await call('/sync-deny');
    expect(res.status).toBe(400);
    expect(res.code).toBe('GH_ERR_REQUEST_BAD_HEADER');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers an asynchronous denial and never forwards', async () => {
    const before = upstream.requests.length;
    const res = await call('/async-deny');
    expect(res.status).toBe(400);
    expect(res.code).toBe('GH_ERR_REQUEST_BAD_HEADER');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers 500 GH_ERR_INTERNAL when a stage throws, rejects, or throws after an async stage', async () => {
    const before = upstream.requests.length;
    for (const path of ['/sync-throw', '/async-throw', '/after-async-throw']) {
      const res = await call(path);
      expect(res.status, path).toBe(500);
      expect(res.code, path).toBe('GH_ERR_INTERNAL');
      expect(res.text, path).not.toContain('a bug');
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses a protected route whose authentication produced no principal (default deny)', async () => {
    const before = upstream.requests.length;
    const res = await call('/no-principal');
    expect(res.status).toBe(500);
    expect(res.code).toBe('GH_ERR_INTERNAL');
    expect(upstream.requests.length).toBe(before);
  });
});

describe('the runner with own handlers', () => {
  it('lets a handler answer synchronously or asynchronously, without routing', async () => {
    expect(await call('/handled-sync')).toMatchObject({ status: 200, text: 'handled synchronously' });
    expect(await call('/handled-async')).toMatchObject({ status: 200, text: 'handled asynchronously' });
  });

  it('routes when an asynchronous handler declines', async () => {
    expect((await call('/not-handled-async')).status).toBe(200);
  });

  it('answers 500 GH_ERR_INTERNAL when a handler throws', async () => {
    const res = await call('/handler-throws');
    expect(res.status).toBe(500);
    expect(res.code).toBe('GH_ERR_INTERNAL');
  });

  it('hands handlers the HTTPS listener\'s HSTS in ctx.responseHeaders; errors and forwarded answers carry it too', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('gw');
    const config = loadConfigText(
      `listen: { host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }\n` +
        `issuers: [{ name: unused, issuer: "http://127.0.0.1:1", jwksUri: "http://127.0.0.1:1/jwks", audiences: [x] }]\n` +
        `upstreams: [{ name: api, url: "${upstream.url}" }]\nroutes:\n  - { name: sync-pass, path: /sync-pass, upstream: api, public: true }\n`,
    );
    const secure = await startGateway({ config, areas: [testArea], log: createLogger({ level: 'silent' }) });
    const dispatcher = new Agent({ connect: { ca: pki.ca.certPem } });
    try {
      for (const [path, status] of [['/handled-headers', 200], ['/handler-throws', 500], ['/sync-pass/x', 200], ['/nowhere', 404]] as const) {
        const res = await request(`${secure.url}${path}`, { dispatcher });
        await res.body.dump();
        expect(res.statusCode).toBe(status);
        expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
        expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      }
    } finally {
      await dispatcher.close();
      await secure.close();
    }
  });

  it('writes one access-log line per request, with the decision', async () => {
    await call('/sync-deny');
    await new Promise((r) => setTimeout(r, 20));
    const line = logs.filter((l) => l.msg === 'request' && l.route === 'sync-deny').at(-1);
    expect(line).toMatchObject({ status: 400, decision: 'denied', granted: false, reason: 'GH_ERR_REQUEST_BAD_HEADER' });
  });
});
