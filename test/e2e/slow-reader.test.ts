import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2connect } from '../server/tls-client.js';

/**
 * A client that stops reading a large answer must not hold an upstream connection forever:
 * once it has pushed back for the upstream's `timeout` (the same bound as an idle upstream
 * body), the upstream exchange is aborted and the client's response destroyed. With
 * `connections: 1`, a second client's request to the same upstream then gets its answer.
 */
let pki: TestPki;
let upstream: http.Server;
let gw: TestGateway;
const big = Buffer.alloc(32 * 1024 * 1024, 'x');

beforeAll(async () => {
  pki = await createTestPki();
  const cert = await pki.server('gw');
  upstream = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.endsWith('/big')) res.end(big);
    else res.end('ok');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const { port } = upstream.address() as net.AddressInfo;
  gw = await startTestGateway(`
listen:
  - { name: http, host: 127.0.0.1, port: 0, allowPlaintext: true }
  - { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } } }
upstreams: [{ name: api, url: http://127.0.0.1:${port}, connections: 1, timeout: 1s }]
routes:
  - { name: api, path: /api, upstream: api, public: true, methods: [GET] }
`);
});

afterAll(async () => {
  await gw?.close();
  upstream?.closeAllConnections();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

/** A plain HTTP/1.1 client that asks for the big answer, reads one chunk and never reads again. */
function stalledClient(): net.Socket {
  const { port } = new URL(gw.urls.http!);
  const socket = net.connect(Number(port), '127.0.0.1', () => socket.write('GET /api/big HTTP/1.1\r\nhost: localhost\r\n\r\n'));
  socket.once('data', () => socket.pause());
  socket.on('error', () => undefined);
  return socket;
}

describe('a client that stops reading', () => {
  it('HTTP/1.1: frees the upstream connection, so the next request to that upstream is answered', async () => {
    const stalled = stalledClient();
    try {
      // The stalled exchange holds the one upstream connection until its deadline.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const res = await fetch(`${gw.urls.http}/api/small`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('ok');
      const warning = gw.logs.find((l) => l.level === 'warn' && /stopped reading/.test(String(l.msg)));
      expect(warning).toMatchObject({ upstream: 'api' });
      expect(typeof warning?.req_id).toBe('string');
    } finally {
      stalled.destroy();
    }
  });

  it('HTTP/2: resets the stalled stream with an error code and frees the upstream connection', async () => {
    const stalledSession = await h2connect(gw.urls.https!, { ca: pki.ca.certPem });
    const session = await h2connect(gw.urls.https!, { ca: pki.ca.certPem });
    try {
      const stream = stalledSession.request({ ':path': '/api/big' });
      stream.once('data', () => stream.pause());
      stream.on('error', () => undefined);
      const closed = new Promise<number | undefined>((resolve) => stream.on('close', () => resolve(stream.rstCode)));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = session.request({ ':path': '/api/small' });
        let status = 0;
        let body = '';
        const timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000);
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', (c: Buffer) => (body += c.toString()));
        s.on('end', () => {
          clearTimeout(timer);
          resolve({ status, body });
        });
        s.on('error', reject);
      });
      expect(answer).toEqual({ status: 200, body: 'ok' });
      expect(await closed).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
    } finally {
      stalledSession.destroy();
      session.close();
    }
  });
});
