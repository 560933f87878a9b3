import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let api: TestUpstream;
let gw: TestGateway;
let trusted: TestGateway;

beforeAll(async () => {
  api = await startUpstream();
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
limits: { maxConnections: 3 }
upstreams:
  - { name: api, url: ${api.url}/base, timeout: 500ms, connections: 2 }
routes:
  - { name: r, path: /r, upstream: api, public: true }
  - { name: strip, path: /strip, upstream: api, public: true, stripPrefix: true }
`);
  trusted = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
trustedProxies: [127.0.0.0/8]
upstreams: [{ name: api, url: ${api.url} }]
routes: [{ name: r, path: /r, upstream: api, public: true }]
`);
});
afterAll(async () => {
  await gw?.close();
  await trusted?.close();
  await api?.close();
});

describe('forwarding', () => {
  it('prefixes the upstream base path and can strip the route prefix', async () => {
    let res = await request(`${gw.url}/r/x?q=1`);
    await res.body.dump();
    expect(api.requests.at(-1)!.url).toBe('/base/r/x?q=1');
    res = await request(`${gw.url}/strip/y`);
    await res.body.dump();
    expect(api.requests.at(-1)!.url).toBe('/base/y');
  });

  it('answers 504 when the upstream does not answer in time', async () => {
    api.setHandler((_req, res) => setTimeout(() => res.end('late'), 1500));
    try {
      const res = await request(`${gw.url}/r/slow`);
      expect(res.statusCode).toBe(504);
      expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_UPSTREAM_TIMEOUT');
      await new Promise((r) => setTimeout(r, 50));
      expect(gw.logs.some((l) => l.reason === 'GH_ERR_UPSTREAM_TIMEOUT' && l.level === 'warn' && typeof l.detail === 'string')).toBe(true);
    } finally {
      api.setHandler(null);
    }
  });

  it('aborts the upstream request when the client disconnects', async () => {
    let upstreamClosed = false;
    api.setHandler((req, res) => {
      res.on('close', () => (upstreamClosed = !res.writableFinished));
      res.writeHead(200);
      res.write('partial');
    });
    try {
      const { port } = new URL(gw.url);
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(`GET /r/stream HTTP/1.1\r\nHost: x\r\n\r\n`));
      await new Promise<void>((resolve) => socket.once('data', () => resolve()));
      socket.destroy();
      for (let i = 0; i < 40 && !upstreamClosed; i++) await new Promise((r) => setTimeout(r, 25));
      expect(upstreamClosed).toBe(true);
    } finally {
      api.setHandler(null);
    }
  });

  it('streams a large answer to a client that stops reading for a while, whole and in order (backpressure both ways)', async () => {
    // 24 MiB of a known pattern: far more than the socket buffers, so the gateway must pause the
    // upstream when the client pushes back and resume it on drain, or the answer stalls.
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
    const chunks = 384;
    api.setHandler((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(chunk.length * chunks) });
      let sent = 0;
      const pump = (): void => {
        while (sent < chunks) {
          sent++;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    try {
      const { port } = new URL(gw.url);
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write('GET /r/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      socket.pause();
      await new Promise((r) => setTimeout(r, 500)); // the client reads nothing for half a second
      const received: Buffer[] = [];
      socket.on('data', (d: Buffer) => received.push(d));
      socket.resume();
      await new Promise<void>((resolve, reject) => {
        socket.once('end', () => resolve());
        socket.once('error', reject);
      });
      const all = Buffer.concat(received);
      const bodyAt = all.indexOf('\r\n\r\n') + 4;
      expect(all.subarray(0, 12).toString()).toBe('HTTP/1.1 200');
      const body = all.subarray(bodyAt);
      expect(body.length).toBe(chunk.length * chunks);
      for (let c = 0; c < chunks; c += 37) expect(body.subarray(c * chunk.length, (c + 1) * chunk.length).equals(chunk)).toBe(true);
    } finally {
      api.setHandler(null);
    }
  });

  it('limits concurrent client connections', async () => {
    const { port } = new URL(gw.url);
    const sockets: net.Socket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const s = net.connect(Number(port), '127.0.0.1');
      const index = i;
      closed[index] = false;
      s.on('close', () => (closed[index] = true));
      s.on('error', () => undefined);
      sockets.push(s);
      await new Promise((r) => s.once('connect', r));
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(closed.filter(Boolean).length).toBeGreaterThanOrEqual(2);
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
  });
});

describe('trusted proxies', () => {
  it('ignores X-Forwarded-For from an untrusted peer', async () => {
    const res = await request(`${gw.url}/r/ip`, { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' } });
    await res.body.dump();
    expect(api.requests.at(-1)!.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(api.requests.at(-1)!.headers['x-forwarded-proto']).toBe('http');
  });

  it('keeps the chain from a trusted proxy, appends the peer, and takes the client IP from it', async () => {
    const res = await request(`${trusted.url}/r/ip`, { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', forwarded: 'for=203.0.113.7' } });
    await res.body.dump();
    const seen = api.requests.at(-1)!.headers;
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen.forwarded).toMatch(/^for=203\.0\.113\.7, for=127\.0\.0\.1;proto=http;host=/);
    await new Promise((r) => setTimeout(r, 50));
    expect(trusted.logs.some((l) => l.path === '/r/ip' && l.client_ip === '203.0.113.7')).toBe(true);
  });
});
