import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLine, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/** `tracing` end to end: what the upstream gets, what the access log says. */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let traced: TestGateway;
let untrusting: TestGateway;
let plain: TestGateway;

const traceIdOf = (traceparent: string | undefined) => traceparent?.split('-')[1];
const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

const yaml = (tracing: string) => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [ { name: api, url: ${api.url} } ]
${tracing}
routes:
  - { name: open, path: /open, upstream: api, public: true }
  - { name: orders, path: /orders, upstream: api }
`;

async function send(gw: TestGateway, path: string, headers: Record<string, string | string[]> = {}) {
  const before = api.requests.length;
  const res = await request(`${gw.url}${path}`, { headers });
  await res.body.dump();
  const seen = api.requests.slice(before)[0];
  const line = await accessLine(gw.logs, res.headers['x-request-id']);
  return { status: res.statusCode, upstream: seen?.headers as Record<string, string> | undefined, rawUpstream: seen?.rawHeaders, line };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  traced = await startTestGateway(yaml('tracing: {}'));
  untrusting = await startTestGateway(yaml('tracing: { trustIncoming: false, sampled: false }'));
  plain = await startTestGateway(yaml(''));
});

afterAll(async () => {
  await traced?.close();
  await untrusting?.close();
  await plain?.close();
  await api?.close();
  await as?.stop();
});

describe('tracing: a client\'s trace', () => {
  it('is continued: the upstream gets its traceparent and tracestate, the log its trace id', async () => {
    const res = await send(traced, '/open', { traceparent: VALID, tracestate: 'congo=t61rcWkgMzE' });
    expect(res.status).toBe(200);
    expect(res.upstream!.traceparent).toBe(VALID);
    expect(res.upstream!.tracestate).toBe('congo=t61rcWkgMzE');
    expect(res.line.trace_id).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('that is not valid is replaced by a new one, and its tracestate dropped (one of each header upstream)', async () => {
    for (const bad of ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'hello', [VALID, VALID]]) {
      const res = await send(traced, '/open', { traceparent: bad, tracestate: 'congo=t61rcWkgMzE' });
      expect(res.upstream!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(res.upstream!.traceparent).not.toContain('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(res.upstream!.tracestate).toBeUndefined();
      const names = res.rawUpstream!.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      expect(names.filter((n) => n === 'traceparent')).toHaveLength(1);
      expect(res.line.trace_id).toBe(traceIdOf(res.upstream!.traceparent));
    }
  });

  it('is replaced by a new one for every request with trustIncoming: false (sampled: false sets the flag)', async () => {
    const res = await send(untrusting, '/open', { traceparent: VALID, tracestate: 'congo=t61rcWkgMzE' });
    expect(res.upstream!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(traceIdOf(res.upstream!.traceparent)).not.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(res.upstream!.tracestate).toBeUndefined();
  });
});

describe('tracing: no client trace', () => {
  it('starts a new trace per request, named in the access log', async () => {
    const a = await send(traced, '/open');
    const b = await send(traced, '/open');
    expect(a.upstream!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(a.line.trace_id).toBe(traceIdOf(a.upstream!.traceparent));
    expect(b.line.trace_id).not.toBe(a.line.trace_id);
  });

  it('a refused request (401) carries its trace id in the log too', async () => {
    const res = await send(traced, '/orders', { traceparent: VALID });
    expect(res.status).toBe(401);
    expect(res.upstream).toBeUndefined();
    expect(res.line).toMatchObject({ status: 401, trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' });
  });
});

describe('without tracing', () => {
  it('a client\'s traceparent passes untouched, whatever it is, and the log names no trace', async () => {
    const res = await send(plain, '/open', { traceparent: 'hello', tracestate: 'x=1' });
    expect(res.upstream!.traceparent).toBe('hello');
    expect(res.upstream!.tracestate).toBe('x=1');
    expect(res.line.trace_id).toBeUndefined();
    expect((await send(plain, '/open')).upstream!.traceparent).toBeUndefined();
  });
});
