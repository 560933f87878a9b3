import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * A request's head through the real gateway: the Host header (RFC 9112 §3.2: an HTTP/1.1
 * request without one, with two, or with one that is not `host[:port]`), CONNECT, and transfer
 * codings other than chunked are refused with 400 problem+json before any upstream sees them.
 * Requests go out on a raw socket: a client library would not send these.
 */
let upstream: TestUpstream;
let gw: TestGateway;
let port: number;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: api, url: ${upstream.url} }
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - { name: upload, path: /upload, methods: [POST], upstream: api, public: true }
`);
  port = Number(new URL(gw.url).port);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

interface Answer {
  status: number;
  head: string;
  body: string;
  reachedUpstream: boolean;
}

function raw(request: string): Promise<Answer> {
  const before = upstream.requests.length;
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('end', () => {
      const split = data.indexOf('\r\n\r\n');
      resolve({ status: Number(data.split(' ')[1]), head: data.slice(0, split).toLowerCase(), body: data.slice(split + 4), reachedUpstream: upstream.requests.length > before });
    });
    socket.on('error', reject);
  });
}

const refused = async (request: string, detail: string) => {
  const before = gw.logs.length;
  const r = await raw(request);
  expect(r.status).toBe(400);
  expect(r.head).toContain('content-type: application/problem+json');
  expect(r.head).toContain('cache-control: no-store');
  expect(JSON.parse(r.body).code).toBe('GH_ERR_REQUEST_BAD_HOST');
  expect(r.reachedUpstream).toBe(false);
  expect(gw.logs.slice(before).some((l) => l.reason === 'GH_ERR_REQUEST_BAD_HOST' && l.detail === detail)).toBe(true);
};

describe('the Host header', () => {
  it('refuses two Host lines, whichever comes first (node keeps only the first)', async () => {
    await refused('GET /public HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n', 'more than one Host header');
    await refused('GET /public HTTP/1.1\r\nhost: evil.example\r\nHOST: 127.0.0.1\r\nConnection: close\r\n\r\n', 'more than one Host header');
  });

  it('refuses an HTTP/1.1 request without Host with problem+json (not a bare 400)', async () => {
    await refused('GET /public HTTP/1.1\r\nConnection: close\r\n\r\n', 'no Host header');
  });

  it('refuses a Host that is not host[:port]', async () => {
    for (const host of ['evil.example/path', 'user@evil.example', 'a b', 'evil.example:80:80', 'evil.example:123456', ':8080', '[::1', '"x"', 'evil.example?']) {
      await refused(`GET /public HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 'Host is not a host[:port]');
    }
    // An empty value is no host either.
    await refused('GET /public HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n', 'Host is not a host[:port]');
  });

  it('forwards one valid Host: names, IPv4, IPv6 literals, ports, and an HTTP/1.0 request without one', async () => {
    for (const host of ['api.example.com', 'API.Example.com:8443', '127.0.0.1', '[::1]:8080', '[2001:db8::1]', 'xn--bcher-kva.example', 'api.example.com:']) {
      const r = await raw(`GET /public HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(r.status, host).toBe(200);
      expect(upstream.requests.at(-1)!.headers['x-forwarded-host']).toBe(host);
    }
    const old = await raw('GET /public HTTP/1.0\r\n\r\n');
    expect(old.status).toBe(200);
    expect(old.reachedUpstream).toBe(true);
  });
});

describe('CONNECT', () => {
  it('is answered 400 problem+json (gatehouse is no forward proxy) and the connection closed, not dropped without a word', async () => {
    const before = gw.logs.length;
    const r = await raw(`CONNECT 127.0.0.1:${new URL(upstream.url).port} HTTP/1.1\r\nHost: 127.0.0.1:${new URL(upstream.url).port}\r\n\r\n`);
    expect(r.status).toBe(400);
    expect(r.head).toContain('connection: close');
    expect(r.head).toContain('content-type: application/problem+json');
    expect(JSON.parse(r.body).code).toBe('GH_ERR_REQUEST_BAD_PATH');
    expect(r.reachedUpstream).toBe(false);
    expect(gw.logs.slice(before).some((l) => l.method === 'CONNECT' && l.detail === 'CONNECT: authority-form target; gatehouse is not a forward proxy')).toBe(true);
  });
});

describe('Transfer-Encoding', () => {
  const post = (te: string) => raw(`POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: ${te}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);

  it('refuses any coding but chunked: gzip would reach the upstream de-chunked, still compressed, unannounced', async () => {
    for (const te of ['gzip, chunked', 'identity, chunked', 'x-custom , chunked']) {
      const before = gw.logs.length;
      const r = await post(te);
      expect(r.status, te).toBe(400);
      expect(JSON.parse(r.body).code).toBe('GH_ERR_REQUEST_BAD_HEADER');
      expect(r.reachedUpstream).toBe(false);
      expect(gw.logs.slice(before).some((l) => l.detail === `transfer-encoding other than chunked: ${te}`)).toBe(true);
    }
  });

  it('forwards a chunked body (any case) whole', async () => {
    for (const te of ['chunked', 'Chunked']) {
      const r = await post(te);
      expect(r.status, te).toBe(200);
      expect(upstream.requests.at(-1)!.body).toBe('hello');
    }
  });
});
