import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfigText } from '../../src/config/load.js';
import type { GatehouseConfig } from '../../src/config/types.js';
import type { RequestContext } from '../../src/pipeline/context.js';
import type { GatewayServices } from '../../src/pipeline/runtime.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

/** One request the fake introspection endpoint received. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  form: URLSearchParams;
}

export type Reply = { status?: number; type?: string; body?: string | object; delay?: number; hang?: boolean };

/**
 * A scripted RFC 7662 endpoint on 127.0.0.1:0: `reply(form)` decides each answer; every request
 * is recorded. Used by the unit tests; the e2e tests use the real oidc-provider server.
 */
export interface FakeIntrospection {
  url: string;
  issuer: string;
  seen: SeenRequest[];
  reply: (form: URLSearchParams, req: http.IncomingMessage) => Reply | Promise<Reply>;
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1, made at test time with openssl (no key is committed). */
export function selfSignedCertificate(): { cert: string; key: string; certFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cert-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile };
}

export async function startFakeIntrospection(tls?: { cert: string; key: string }): Promise<FakeIntrospection> {
  const sockets = new Set<import('node:net').Socket>();
  const fake: FakeIntrospection = {
    url: '',
    issuer: '',
    seen: [],
    reply: () => ({ body: { active: false } }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    const form = new URLSearchParams(text);
    fake.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, form });
    const r = await fake.reply(form, req);
    if (r.hang) return;
    if (r.delay) await new Promise((resolve) => setTimeout(resolve, r.delay));
    const body = typeof r.body === 'string' ? r.body : JSON.stringify(r.body ?? {});
    res.writeHead(r.status ?? 200, { 'content-type': r.type ?? 'application/json' });
    res.end(body);
  };
  const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
  server.on(tls ? 'secureConnection' : 'connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as import('node:net').AddressInfo;
  fake.issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  fake.url = `${fake.issuer}/introspect`;
  return fake;
}

/** Services with a controllable clock and a log captured in memory. */
export function testServices(start = Date.UTC(2026, 0, 1)): GatewayServices & { clock: { now: number }; logs: Record<string, unknown>[] } {
  const clock = { now: start };
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), metrics: createMetrics(), now: () => clock.now, clock, logs };
}

/** A normalized config around one opaque issuer; `introspection` is YAML flow-map content. */
export function opaqueConfig(fake: { issuer: string; url: string }, introspection: string, extra: { issuer?: string; top?: string; upstreams?: string; routes?: string } = {}): GatehouseConfig {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-introspection-'));
  const yaml = `
listen: { port: 0 }
issuers:
  - name: opaque
    issuer: ${fake.issuer}
    audiences: [https://api.example.com]
    introspection: { endpoint: ${fake.url}, clientId: gateway, clientSecret: s3cret, ${introspection} }
    ${extra.issuer ?? ''}
upstreams:
  - { name: api, url: http://127.0.0.1:1, audience: https://orders.internal }
  - { name: other, url: http://127.0.0.1:2 }
  ${extra.upstreams ?? ''}
routes:
  - { name: orders, path: /orders, upstream: api }
  - { name: other, path: /other, upstream: other }
  ${extra.routes ?? ''}
gateway: { issuer: https://gatehouse.internal, keyDirectory: ${dir}/keys }
${extra.top ?? ''}
`;
  return loadConfigText(yaml, 'gatehouse.yaml', {}, dir);
}

/** A minimal request context for an authenticator, on the given route. */
export function ctxFor(config: GatehouseConfig, routeName = 'orders', services?: GatewayServices): RequestContext {
  const route = config.routes.find((r) => r.name === routeName)!;
  return {
    id: 'req-1',
    method: 'GET',
    path: route.path,
    targetPath: route.path,
    query: '',
    headers: {},
    clientIp: '127.0.0.1',
    peerIp: '127.0.0.1',
    peerTrusted: false,
    secure: false,
    clientCertificate: null,
    startedAt: 0,
    route: { name: route.name, index: 0, config: route } as never,
    params: {},
    token: null,
    tokenSource: 'header',
    tokenScheme: 'Bearer',
    strippedPrefix: '',
    upstreamHeaders: [],
    principal: null,
    responseHeaders: [],
    onFinish: [],
    log: (services?.log ?? pino({ level: 'silent' })) as never,
    upstreamLatency: undefined,
    decision: '',
  };
}
