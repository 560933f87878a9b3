import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { ServerResponse } from 'node:http';
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
  # A client may stop reading for up to the route timeout before it is cut off: far longer here
  # than the backpressure test's pause, so a loaded machine cannot turn the pause into a stall.
  - { name: patient, path: /patient, upstream: api, public: true, timeout: 10s }
`);
  trusted = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
trustedProxies: [127.0.0.0/8]
upstreams:
  - { name: api, url: ${api.url} }
  - { name: api-none, url: ${api.url}, forwardedHeaders: [] }
  - { name: api-rfc7239, url: ${api.url}, forwardedHeaders: [forwarded] }
routes:
  - { name: r, path: /r, upstream: api, public: true }
  - { name: none, path: /none, upstream: api-none, public: true }
  - { name: rfc7239, path: /rfc7239, upstream: api-rfc7239, public: true }
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
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write('GET /patient/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      socket.pause();
      await new Promise((r) => setTimeout(r, 500)); // the client reads nothing for half a second (the route's timeout is 10 s)
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

  it('passes an answer on whole and with its head however the upstream sends its body', async () => {
    // One write with content-length (the whole body in one chunk: sent with the end), the same
    // for HEAD (no body at all), several writes with content-length, and chunked.
    const cases: { name: string; send: (res: ServerResponse) => void; length: string | undefined }[] = [
      { name: 'one', send: (res) => res.writeHead(200, { 'content-length': '11', 'x-up': 'one' }).end('hello world'), length: '11' },
      {
        name: 'split',
        send: (res) => {
          res.writeHead(200, { 'content-length': '11', 'x-up': 'split' });
          res.write('hello');
          setTimeout(() => res.end(' world'), 30);
        },
        length: '11',
      },
      {
        name: 'chunked',
        send: (res) => {
          res.writeHead(200, { 'x-up': 'chunked' });
          res.write('hello');
          setTimeout(() => res.end(' world'), 30);
        },
        length: undefined,
      },
    ];
    try {
      for (const c of cases) {
        api.setHandler((_req, res) => c.send(res));
        const res = await request(`${gw.url}/r/${c.name}`);
        expect([c.name, res.statusCode, res.headers['x-up'], res.headers['content-length'], await res.body.text()]).toEqual([c.name, 200, c.name, c.length, 'hello world']);
        expect(res.headers['x-request-id']).toBeTruthy();
      }
      api.setHandler((_req, res) => res.writeHead(200, { 'content-length': '11', 'x-up': 'head' }).end());
      const head = await request(`${gw.url}/r/head`, { method: 'HEAD' });
      expect([head.statusCode, head.headers['x-up'], head.headers['content-length'], await head.body.text()]).toEqual([200, 'head', '11', '']);
    } finally {
      api.setHandler(null);
    }
  });

  it('streams the first part of a content-length body before the upstream sends the rest', async () => {
    let sendRest: () => void = () => undefined;
    const restWanted = new Promise<void>((resolve) => (sendRest = resolve));
    api.setHandler((_req, res) => {
      res.writeHead(200, { 'content-length': '11' });
      res.write('hello');
      void restWanted.then(() => res.end(' world'));
    });
    try {
      const res = await request(`${gw.url}/r/stream-first`);
      const parts: string[] = [];
      for await (const part of res.body) {
        parts.push(String(part));
        // The client has the first part while the upstream still holds the rest.
        if (parts.length === 1) sendRest();
      }
      expect(parts[0]).toBe('hello');
      expect(parts.join('')).toBe('hello world');
    } finally {
      sendRest();
      api.setHandler(null);
    }
  });

  it('never passes on a shorter body than the upstream announced as a complete answer', async () => {
    api.setHandler((_req, res) => {
      res.writeHead(200, { 'content-length': '11' });
      res.write('hello', () => res.socket?.destroy());
    });
    try {
      const { port } = new URL(gw.url);
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write('GET /r/short HTTP/1.1\r\nHost: x\r\n\r\n'));
      const received: Buffer[] = [];
      socket.on('data', (d: Buffer) => received.push(d));
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.once('error', () => resolve());
      });
      const text = Buffer.concat(received).toString('latin1');
      if (text.startsWith('HTTP/1.1 200')) {
        // The head went out with the first bytes: the connection is cut, never completed.
        expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe('hello');
      } else {
        expect(text.startsWith('HTTP/1.1 502')).toBe(true);
      }
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

describe("the upstream's Location", () => {
  const redirectTo = (location: string) =>
    api.setHandler((_req, res) => {
      res.writeHead(302, { location, 'content-length': 0 });
      res.end();
    });
  const locationVia = async (path: string) => {
    const res = await request(`${gw.url}${path}`);
    await res.body.dump();
    return res.headers.location;
  };

  it("never shows the upstream's own address: its URLs under the base path become the gateway's paths", async () => {
    try {
      redirectTo(`${api.url}/base/r/next?x=1`);
      expect(await locationVia('/r/start')).toBe('/r/next?x=1');
      // A stripPrefix route gets its prefix back, for an absolute URL and for a path alike.
      redirectTo(`${api.url}/base/login`);
      expect(await locationVia('/strip/start')).toBe('/strip/login');
      redirectTo('/base/login');
      expect(await locationVia('/strip/start')).toBe('/strip/login');
    } finally {
      api.setHandler(null);
    }
  });

  it('leaves a Location to another host alone', async () => {
    try {
      redirectTo('https://idp.example.com/authorize?client_id=x');
      expect(await locationVia('/r/start')).toBe('https://idp.example.com/authorize?client_id=x');
    } finally {
      api.setHandler(null);
    }
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

  it("never passes a trusted proxy's chain on raw to an upstream that does not take the header (forwardedHeaders)", async () => {
    const chain = { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example', forwarded: 'for=203.0.113.7' };
    const none = await request(`${trusted.url}/none/ip`, { headers: chain });
    expect(none.statusCode).toBe(200);
    await none.body.dump();
    let seen = api.requests.at(-1)!;
    expect(seen.url).toBe('/none/ip');
    for (const name of Object.keys(chain)) expect(seen.headers[name], name).toBeUndefined();

    // Only `Forwarded`, with this hop appended; the X-Forwarded-* chain stops here.
    const rfc = await request(`${trusted.url}/rfc7239/ip`, { headers: chain });
    expect(rfc.statusCode).toBe(200);
    await rfc.body.dump();
    seen = api.requests.at(-1)!;
    expect(seen.url).toBe('/rfc7239/ip');
    expect(seen.headers.forwarded).toMatch(/^for=203\.0\.113\.7, for=127\.0\.0\.1;proto=http;host=/);
    for (const name of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']) expect(seen.headers[name], name).toBeUndefined();
    // The client address still comes from the trusted chain, for the log and the limits.
    await new Promise((r) => setTimeout(r, 50));
    expect(trusted.logs.some((l) => l.path === '/none/ip' && l.client_ip === '203.0.113.7')).toBe(true);
  });
});

describe('plain http upstreams', () => {
  it('are named in a warning when off loopback (tokens cross the network unencrypted); https and loopback ones are not', async () => {
    const g = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: remote, url: "http://10.0.0.9:8080" }
  - { name: named, url: "http://orders.internal:8080" }
  - { name: tricky, url: "http://127.attacker.example:8080" }
  - { name: local, url: "http://127.0.0.1:1" }
  - { name: localhost, url: "http://localhost:1" }
  - { name: secure, url: "https://orders.example.com" }
routes:
  - { name: r, path: /r, upstream: remote, public: true }
`);
    try {
      const warned = g.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('plain HTTP upstream on a non-loopback address')).map((l) => l.upstream);
      expect(warned.sort()).toEqual(['named', 'remote', 'tricky']);
    } finally {
      await g.close();
    }
  });
});
