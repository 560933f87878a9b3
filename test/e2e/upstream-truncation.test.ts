import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2connect, h2request } from '../server/tls-client.js';

/**
 * An upstream that breaks off its answer after the head and part of the body: the client must
 * be able to tell the answer is incomplete. Over HTTP/1.1 the connection is cut before the end
 * of the body; over HTTP/2 the stream is reset with an error code (a reset with NO_ERROR reads
 * as a complete answer). Also: gatehouse's raw answers to unparseable HTTP/1.1 requests on an
 * HTTPS listener carry HSTS like every other answer of that listener.
 */
let pki: TestPki;
let upstream: net.Server;
let gw: TestGateway;
let https: string;
let httpsPort: number;
let plainPort: number;

const HSTS = 'max-age=31536000; includeSubDomains';

beforeAll(async () => {
  pki = await createTestPki();
  const cert = await pki.server('gw');
  // A raw upstream: the head and part of the body, then the socket goes.
  upstream = net.createServer((socket) => {
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const path = head.split(' ')[1] ?? '';
      head = '';
      if (path.endsWith('/chunked')) socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
      else if (path.endsWith('/length')) socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n${'x'.repeat(40)}`);
      else {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        return;
      }
      setTimeout(() => socket.destroy(), 50);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const { port } = upstream.address() as net.AddressInfo;
  gw = await startTestGateway(`
listen:
  # maxResetsPerSecond: 2 — resets gatehouse sends itself must not count against the client
  - { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } }, http2: { maxResetsPerSecond: 2 } }
  - { name: http, host: 127.0.0.1, port: 0 }
limits: { maxHeaderSize: 8kb }
upstreams: [{ name: api, url: http://127.0.0.1:${port}, timeout: 5s }]
routes:
  - { name: api, path: /api, upstream: api, public: true }
`);
  https = gw.urls.https!;
  httpsPort = Number(new URL(https).port);
  plainPort = Number(new URL(gw.urls.http!).port);
});

afterAll(async () => {
  await gw?.close();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

interface H2Outcome {
  status: number;
  body: string;
  ended: boolean;
  aborted: boolean;
  rstCode: number | undefined;
}

/** One h2 stream, watched to its close: did it end cleanly, or was it reset, and with what code? */
function h2watch(session: http2.ClientHttp2Session, path: string): Promise<H2Outcome> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': path });
    const outcome: H2Outcome = { status: 0, body: '', ended: false, aborted: false, rstCode: undefined };
    stream.on('response', (headers) => (outcome.status = Number(headers[':status'])));
    stream.on('data', (chunk: Buffer) => (outcome.body += chunk.toString()));
    stream.on('end', () => (outcome.ended = true));
    stream.on('aborted', () => (outcome.aborted = true));
    stream.on('error', () => undefined);
    stream.on('close', () => resolve({ ...outcome, rstCode: stream.rstCode }));
  });
}

/** A raw HTTP/1.1 exchange over TLS: everything the server sent until it closed the connection. */
function h1raw(request: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'localhost', ca: pki.ca.certPem, ALPNProtocols: ['http/1.1'] });
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
    socket.once('secureConnect', () => socket.write(request));
  });
}

function plainRaw(request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(plainPort, '127.0.0.1', () => socket.write(request));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
  });
}

function headerOf(raw: string, name: string): string | undefined {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

describe('an upstream answer cut off mid-body', () => {
  it('resets the HTTP/2 stream with an error code instead of ending it cleanly (chunked and content-length)', async () => {
    const session = await h2connect(https, { ca: pki.ca.certPem });
    try {
      for (const path of ['/api/chunked', '/api/length']) {
        const outcome = await h2watch(session, path);
        expect(outcome.status).toBe(200);
        expect(outcome.ended).toBe(false);
        expect(outcome.rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    } finally {
      session.close();
    }
  });

  it("does not count gatehouse's own resets as the client's (rapid-reset guard): the connection keeps serving", async () => {
    const session = await h2connect(https, { ca: pki.ca.certPem });
    let goaway: number | null = null;
    session.on('goaway', (code: number) => (goaway = code));
    try {
      // Over the listener's maxResetsPerSecond (2), within one second.
      const outcomes = await Promise.all([1, 2, 3, 4, 5].map(() => h2watch(session, '/api/chunked')));
      for (const outcome of outcomes) expect(outcome.rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
      const next = await h2request(session, { ':path': '/api/ok' });
      expect(next.status).toBe(200);
      expect(next.body).toBe('ok');
      expect(goaway).toBeNull();
      expect(gw.logs.some((l) => l.reason === 'GH_ERR_HTTP2_RAPID_RESET')).toBe(false);
    } finally {
      session.close();
    }
  });

  it('cuts the HTTP/1.1 connection before the terminating chunk', async () => {
    const raw = await h1raw('GET /api/chunked HTTP/1.1\r\nhost: localhost\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 200')).toBe(true);
    expect(raw).toContain('hello');
    expect(raw.endsWith('0\r\n\r\n')).toBe(false);
  });

  it('cuts the HTTP/1.1 connection before the declared content-length is reached', async () => {
    const raw = await h1raw('GET /api/length HTTP/1.1\r\nhost: localhost\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 200')).toBe(true);
    expect(headerOf(raw, 'content-length')).toBe('100');
    expect(raw.length - (raw.indexOf('\r\n\r\n') + 4)).toBe(40);
  });
});

describe("gatehouse's raw answers to unparseable HTTP/1.1 requests", () => {
  it('431 for a 20 KB header carries HSTS on an HTTPS listener, no-store, nosniff and its request id', async () => {
    const raw = await h1raw(`GET /api/ok HTTP/1.1\r\nhost: localhost\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(raw.startsWith('HTTP/1.1 431')).toBe(true);
    expect(headerOf(raw, 'strict-transport-security')).toBe(HSTS);
    expect(headerOf(raw, 'content-type')).toBe('application/problem+json');
    // As every problem answer of gatehouse's: never stored, never sniffed.
    expect(headerOf(raw, 'cache-control')).toBe('no-store');
    expect(headerOf(raw, 'x-content-type-options')).toBe('nosniff');
    const id = headerOf(raw, 'x-request-id');
    expect(id).toMatch(/^[\w-]{8,}$/);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).instance).toBe(`urn:gatehouse:request:${id}`);
  });

  it('400 for a CONNECT over HTTPS (HTTP/1.1) carries HSTS, and the connection is closed', async () => {
    const raw = await h1raw('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 400')).toBe(true);
    expect(headerOf(raw, 'strict-transport-security')).toBe(HSTS);
    expect(headerOf(raw, 'connection')).toBe('close');
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).code).toBe('GH_ERR_REQUEST_BAD_PATH');
  });

  it('400 for a malformed request line carries HSTS on an HTTPS listener', async () => {
    const raw = await h1raw('GET  HTTP/1.1 nonsense\r\nhost: localhost\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 400')).toBe(true);
    expect(headerOf(raw, 'strict-transport-security')).toBe(HSTS);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).code).toBe('GH_ERR_REQUEST_BAD_HEADER');
  });

  it('never carries HSTS on a plain listener (RFC 6797 §7.2)', async () => {
    const raw = await plainRaw('GET  HTTP/1.1 nonsense\r\nhost: localhost\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 400')).toBe(true);
    expect(headerOf(raw, 'strict-transport-security')).toBeUndefined();
  });
});
