import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { jwks, mint, testKey } from '../authn/jwt-fixtures.js';
import { createTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect, h2request } from '../server/tls-client.js';

/**
 * `Expect: 100-continue` (RFC 9110 §10.1.1), end to end: `100 Continue` only once the request is
 * granted (route, Content-Length, authentication, authorization, limits), a refusal without a
 * 100, `expect` never forwarded, 417 problem+json for any other expectation. Raw sockets where
 * the interim answer must be seen (undici's client refuses to send `Expect`).
 */
const key = testKey('ES256');
let pki: TestPki;
let api: TestUpstream;
let keys: JwksServer;
let gw: TestGateway;
let port: number;
let httpsPort: number;

beforeAll(async () => {
  pki = await createTestPki();
  const cert = await pki.server('gw');
  api = await startUpstream();
  keys = await startJwksServer(jwks(key));
  gw = await startTestGateway(`
listen:
  - { name: http, host: 127.0.0.1, port: 0, allowPlaintext: true }
  - { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: ${keys.url}, audiences: [https://api.example.test] }
upstreams: [{ name: api, url: ${api.url} }]
rateLimits:
  - { name: one, key: ip, limit: 1, window: 1m }
routes:
  - { name: upload, path: /upload, upstream: api, public: true, maxBodySize: 64kb }
  - { name: readonly, path: /readonly, methods: [GET], upstream: api, public: true }
  - { name: limited, path: /limited, upstream: api, public: true, rateLimits: [one] }
  - { name: orders, path: /orders, upstream: api, scopes: [orders:read] }
  - { name: write, path: /write, upstream: api, scopes: [orders:write] }
`);
  port = Number(new URL(gw.urls.http!).port);
  httpsPort = Number(new URL(gw.urls.https!).port);
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await keys?.close();
});

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** HTTP/1.1 on a raw socket: every answer is seen (1xx included), and the body goes out only when the test says. */
class RawClient {
  private buffer = '';
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('latin1');
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined); // a write after the server closed
  }

  send(text: string): void {
    if (!this.closed && this.socket.writable) this.socket.write(text);
  }

  /** The next answer (1xx included), or null once the server closed the connection; throws when neither comes. */
  async next(ms = 5000): Promise<RawResponse | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const answer = this.take();
      if (answer) return answer;
      if (this.closed) {
        expect(this.buffer).toBe('');
        return null;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no answer and no close within ${ms} ms (a hang); got ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private take(): RawResponse | null {
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const [statusLine, ...lines] = this.buffer.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(statusLine!.split(' ')[1]);
    let rest = this.buffer.slice(end + 4);
    let body = '';
    if (status >= 200) {
      if (headers['transfer-encoding'] === 'chunked') {
        const last = rest.indexOf('0\r\n\r\n');
        if (last < 0) return null;
        for (let i = 0; i < last; ) {
          const eol = rest.indexOf('\r\n', i);
          const size = parseInt(rest.slice(i, eol), 16);
          body += rest.slice(eol + 2, eol + 2 + size);
          i = eol + 2 + size + 2;
        }
        rest = rest.slice(last + 5);
      } else {
        const length = Number(headers['content-length'] ?? 0);
        if (Buffer.byteLength(rest, 'latin1') < length) return null;
        body = rest.slice(0, length);
        rest = rest.slice(length);
      }
    }
    this.buffer = rest;
    return { status, headers, body: Buffer.from(body, 'latin1').toString('utf8') };
  }
}

function connect(): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
    socket.once('error', reject);
  });
}

/** HTTP/1.1 over TLS: the HTTPS listener's fallback next to h2 (ALPN http/1.1). */
function connectTls(): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'localhost', ca: pki.ca.certPem, ALPNProtocols: ['http/1.1'] }, () => resolve(new RawClient(socket)));
    socket.once('error', reject);
  });
}

function head(method: string, path: string, headers: Record<string, string | number>, version = '1.1'): string {
  let text = `${method} ${path} HTTP/${version}\r\nHost: 127.0.0.1:${port}\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  return `${text}\r\n`;
}

const payload = 'x'.repeat(4096); // over 1 KiB: what older curl sends with Expect
const token = (scope: string) => mint(key, Date.now(), { scope });

describe('Expect: 100-continue over HTTP/1.1', () => {
  it('a granted POST gets 100 Continue before its 200; the upstream gets the body and no Expect', async () => {
    const before = api.requests.length;
    const client = await connect();
    client.send(head('POST', '/upload/a', { 'content-type': 'text/plain', 'content-length': payload.length, expect: '100-continue' }));
    expect((await client.next())?.status).toBe(100);
    expect(api.requests.length).toBe(before); // nothing forwarded before the body
    client.send(payload);
    const answer = await client.next();
    expect(answer?.status).toBe(200);
    const echoed = JSON.parse(answer!.body) as { body: string; headers: Record<string, string> };
    expect(echoed.body).toBe(payload);
    expect(echoed.headers.expect).toBeUndefined();
    expect(api.requests.at(-1)!.headers.expect).toBeUndefined();
    // Keep-alive after a 100: the connection serves the next request.
    client.send(head('GET', '/upload/again', {}));
    expect((await client.next())?.status).toBe(200);
    client.close();
  });

  it('authenticates before the 100: a protected route with a valid token gets 100, then 200', async () => {
    const client = await connect();
    client.send(head('POST', '/orders', { authorization: `Bearer ${token('orders:read')}`, 'content-length': 5, expect: '100-continue' }));
    expect((await client.next())?.status).toBe(100);
    client.send('hello');
    const answer = await client.next();
    expect(answer?.status).toBe(200);
    expect(api.requests.at(-1)).toMatchObject({ method: 'POST', url: '/orders', body: 'hello' });
    client.close();
  });

  const refusals: { name: string; status: number; code: string; method?: string; path: string; headers?: () => Record<string, string | number>; before?: () => Promise<void> }[] = [
    { name: 'a protected route without a token', status: 401, code: 'GH_ERR_AUTH_MISSING_TOKEN', path: '/orders' },
    { name: 'a token without the route scope', status: 403, code: 'GH_ERR_AUTHZ_INSUFFICIENT_SCOPE', path: '/write', headers: () => ({ authorization: `Bearer ${token('orders:read')}` }) },
    { name: 'a path no route matches', status: 404, code: 'GH_ERR_ROUTE_NOT_FOUND', path: '/nowhere' },
    { name: 'a method the route does not take', status: 405, code: 'GH_ERR_ROUTE_METHOD_NOT_ALLOWED', path: '/readonly' },
    { name: 'a Content-Length over the route maxBodySize', status: 413, code: 'GH_ERR_REQUEST_BODY_TOO_LARGE', path: '/upload/big', headers: () => ({ 'content-length': 100_000 }) },
    {
      name: 'a client over its rate limit',
      status: 429,
      code: 'GH_ERR_LIMIT_RATE_EXCEEDED',
      path: '/limited',
      before: async () => {
        const res = await request(`${gw.urls.http}/limited/warm`);
        expect(res.statusCode).toBe(200);
        await res.body.dump();
      },
    },
  ];

  it.each(refusals)('refuses $name with $status and never a 100; the connection is closed cleanly', async ({ status, code, path, headers, before }) => {
    await before?.();
    const forwarded = api.requests.length;
    const client = await connect();
    client.send(head('POST', path, { 'content-length': 5, ...headers?.(), expect: '100-continue' }));
    const answer = await client.next();
    expect(answer?.status).toBe(status);
    expect(answer?.headers['content-type']).toBe('application/problem+json');
    expect((JSON.parse(answer!.body) as { code: string }).code).toBe(code);
    // The client may send its body after all (curl does, after a wait), then a second request:
    // node closed the connection (a final answer without 100 says `connection: close`), so
    // neither is read as a request; nothing hangs.
    expect(answer?.headers.connection).toBe('close');
    client.send('hello');
    client.send(head('POST', '/upload/second', { 'content-length': 5 }) + 'hello');
    expect(await client.next()).toBeNull();
    expect(api.requests.length).toBe(forwarded);
  });

  it('answers any other expectation 417 problem+json and forwards nothing; the connection stays usable', async () => {
    const forwarded = api.requests.length;
    const client = await connect();
    client.send(head('POST', '/upload/x', { 'content-length': 5, expect: 'something-else' }) + 'hello');
    const answer = await client.next();
    expect(answer?.status).toBe(417);
    expect(answer?.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(answer!.body)).toMatchObject({ status: 417, title: 'Expectation Failed', code: 'GH_ERR_REQUEST_EXPECTATION_FAILED' });
    expect(answer?.headers['x-request-id']).toBeTruthy();
    expect(api.requests.length).toBe(forwarded);
    expect(gw.logs.some((l) => l.reason === 'GH_ERR_REQUEST_EXPECTATION_FAILED' && l.granted === false)).toBe(true);
    client.send(head('GET', '/upload/after', {}));
    expect((await client.next())?.status).toBe(200);
    client.close();
  });

  it('ignores Expect in an HTTP/1.0 request (RFC 9110 §10.1.1) and never forwards it', async () => {
    const client = await connect();
    client.send(head('POST', '/upload/old', { 'content-length': 5, expect: '100-continue' }, '1.0') + 'hello');
    const answer = await client.next();
    expect(answer?.status).toBe(200);
    const echoed = JSON.parse(answer!.body) as { body: string; headers: Record<string, string> };
    expect(echoed).toMatchObject({ body: 'hello' });
    expect(echoed.headers.expect).toBeUndefined();
    client.close();
  });

  it('holds the body over HTTPS with HTTP/1.1 too (the h2 server fallback): 100 once granted, then 200', async () => {
    const client = await connectTls();
    client.send(head('POST', '/upload/tls', { 'content-length': payload.length, expect: '100-continue' }));
    expect((await client.next())?.status).toBe(100);
    client.send(payload);
    const answer = await client.next();
    expect(answer?.status).toBe(200);
    expect((JSON.parse(answer!.body) as { body: string }).body).toBe(payload);
    client.close();
  });
});

interface H2Exchange {
  events: string[];
  status: number;
  body: string;
  /** The stream's close code: NO_ERROR (0) also when the server answered before the body was sent. */
  rstCode: number | undefined;
}

/** One h2 request with `expect: 100-continue`: the body goes out on the server's 100 only. Resolves once the stream closes. */
function h2Expect(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: string, expectation = '100-continue'): Promise<H2Exchange> {
  return new Promise((resolve, reject) => {
    const events: string[] = [];
    const chunks: Buffer[] = [];
    let status = 0;
    const stream = session.request({ ...headers, expect: expectation, 'content-length': Buffer.byteLength(body) }, { endStream: false });
    stream.on('continue', () => {
      events.push('continue');
      stream.end(body);
    });
    stream.on('response', (h) => {
      status = Number(h[':status']);
      events.push(String(status));
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('close', () => resolve({ events, status, body: Buffer.concat(chunks).toString('utf8'), rstCode: stream.rstCode }));
    stream.on('error', reject);
  });
}

describe('Expect over HTTP/2', () => {
  // node's h2 compat layer matches `100-continue` exactly; any other spelling arrives as another expectation.
  it.each(['100-continue', '100-Continue'])('a granted POST with expect: %s gets the 100, sends its body and gets 200; no expect upstream', async (expectation) => {
    const session = await h2connect(gw.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    try {
      const result = await h2Expect(session, { ':method': 'POST', ':path': '/upload/h2', 'content-type': 'text/plain' }, payload, expectation);
      expect(result.events).toEqual(['continue', '200']);
      const echoed = JSON.parse(result.body) as { body: string; headers: Record<string, string> };
      expect(echoed.body).toBe(payload);
      expect(echoed.headers.expect).toBeUndefined();
    } finally {
      session.close();
    }
  });

  it('a refused POST gets its 401 without a 100, and the session serves the next request', async () => {
    const forwarded = api.requests.length;
    const session = await h2connect(gw.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    try {
      const result = await h2Expect(session, { ':method': 'POST', ':path': '/orders' }, 'hello');
      expect(result.events).toEqual(['401']);
      expect(result.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR); // closed by the server, not left half-open
      expect((JSON.parse(result.body) as { code: string }).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
      expect(api.requests.length).toBe(forwarded);
      expect((await h2request(session, { ':method': 'GET', ':path': '/upload/next' })).status).toBe(200);
    } finally {
      session.close();
    }
  });

  it('answers any other expectation 417 problem+json', async () => {
    const session = await h2connect(gw.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    try {
      const answer = await h2request(session, { ':method': 'POST', ':path': '/upload/h2', expect: 'something-else' }, 'hello');
      expect(answer.status).toBe(417);
      expect(answer.headers['content-type']).toBe('application/problem+json');
      expect((JSON.parse(answer.body) as { code: string }).code).toBe('GH_ERR_REQUEST_EXPECTATION_FAILED');
      expect(answer.headers['strict-transport-security']).toBeTruthy();
    } finally {
      session.close();
    }
  });
});
