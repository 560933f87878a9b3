import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * An upstream that answers before it has read the request's body (an early 413, a 401 of its
 * own): the client gets that answer, and the connection it came on is either still usable or
 * closed with `Connection: close` (RFC 9112 §9.6) — never left holding the unread rest of the
 * body, where the next request on it would hang.
 */
let upstream: http.Server;
let gw: TestGateway;
let seen = 0;

beforeAll(async () => {
  upstream = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    seen++;
    if (req.url === '/early') {
      // Answer at once; node reads the rest of the body into the void afterwards.
      const text = JSON.stringify({ error: 'too_large' });
      res.writeHead(413, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const { port } = upstream.address() as net.AddressInfo;
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams: [{ name: api, url: http://127.0.0.1:${port} }]
routes:
  - { name: all, path: /, upstream: api, public: true, maxBodySize: 4mb }
`);
});

afterAll(async () => {
  await gw?.close();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

describe('an upstream that answers before reading the whole body', () => {
  it('passes the answer on, and the next request on the same client connection is answered (no hang)', async () => {
    const agent = new Agent({ connections: 1, pipelining: 1 });
    try {
      const body = Buffer.alloc(2 * 1024 * 1024, 'a');
      for (let i = 0; i < 3; i++) {
        const early = await request(`${gw.url}/early`, { method: 'POST', body, dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
        expect(early.statusCode).toBe(413);
        // `close` while the client's body was still arriving; under load the whole body may be in
        // before the answer goes out, and then the connection rightly stays open. Either way the
        // next request on it must be answered (below), never hang.
        expect(['close', 'keep-alive']).toContain(early.headers.connection);
        expect(await early.body.json()).toEqual({ error: 'too_large' });
        const next = await request(`${gw.url}/after`, { dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
        expect(next.statusCode).toBe(200);
        expect(await next.body.text()).toBe('ok');
      }
    } finally {
      await agent.close();
    }
    expect(seen).toBeGreaterThanOrEqual(6);
  });

  it('keeps the connection open when the upstream read the whole body before answering', async () => {
    const agent = new Agent({ connections: 1, pipelining: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await request(`${gw.url}/read-all`, { method: 'POST', body: Buffer.alloc(1024 * 1024, 'b'), dispatcher: agent });
        expect(res.statusCode).toBe(200);
        expect(res.headers.connection).not.toBe('close');
        expect(await res.body.text()).toBe('ok');
      }
    } finally {
      await agent.close();
    }
  });
});
