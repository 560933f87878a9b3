import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { ciphersOutsideProfile } from '../../src/server/tls.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect, h2request, handshake, openManyStreams, rapidResetFlood } from './tls-client.js';

let pki: TestPki;
let ecCert: CertFiles;
let rsaCert: CertFiles;
let upstream: TestUpstream;
let gw: TestGateway;
let httpsPort: number;
let agent: Agent;

function config(cert: CertFiles, extra = '') {
  return `
listen:
  - { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} }, http2: { maxConcurrentStreams: 50, maxResetsPerSecond: 40 } }
  - { name: http, host: 127.0.0.1, port: 0 }
  - { name: behind-lb, host: 127.0.0.1, port: 0, allowPlaintext: true }
  - { name: no-redirect, host: 127.0.0.1, port: 0, redirectToHttps: false }
limits: { maxBodySize: 1kb, maxHeaderSize: 4kb, headersTimeout: 2s, requestTimeout: 5s }
issuers:
  - name: main
    issuer: http://127.0.0.1:1/never
    jwksUri: http://127.0.0.1:1/jwks
    audiences: [https://api.example.com]
upstreams:
  - { name: pub, url: ${upstream.url} }
routes:
  - { name: public, path: /public, upstream: pub, public: true }
  - { name: admin, path: /admin, upstream: pub }
${extra}`;
}

beforeAll(async () => {
  pki = await createTestPki();
  ecCert = await pki.server('gw-ec');
  // RSA: the only kind of certificate with which a non-forward-secret (RSA key exchange) suite could even be chosen.
  rsaCert = await pki.server('gw-rsa', ['127.0.0.1', 'localhost'], { keyType: 'rsa' });
  upstream = await startUpstream();
  gw = await startTestGateway(config(rsaCert));
  httpsPort = Number(new URL(gw.urls.https!).port);
  agent = new Agent({ connect: { ca: pki.ca.certPem } });
});

afterAll(async () => {
  await agent?.close();
  await gw?.close();
  await upstream?.close();
});

describe('TLS versions and cipher suites', () => {
  it('refuses TLS 1.0', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem, minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toMatch(/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS/);
  });

  it('refuses TLS 1.1', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toMatch(/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS/);
  });

  it('refuses a suite without forward secrecy (RSA key exchange) even with an RSA certificate', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toMatch(/HANDSHAKE_FAILURE|NO_SHARED_CIPHER|NO_CIPHERS/);
  });

  it('refuses a CBC suite with forward secrecy (not AEAD)', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384' });
    expect(result.ok).toBe(false);
  });

  it('accepts TLS 1.2 with an ECDHE AEAD suite (the control for the refusals above)', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256' });
    expect(result).toMatchObject({ ok: true, protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256', authorized: true });
  });

  it('prefers its own cipher order over the client order', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256' });
    expect(result).toMatchObject({ ok: true, cipher: 'ECDHE-RSA-AES128-GCM-SHA256' });
  });

  it('refuses client-initiated renegotiation (TLS 1.2)', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'localhost', ca: pki.ca.certPem, maxVersion: 'TLSv1.2' }, () => {
        socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        socket.on('close', () => resolve('closed'));
        const started = socket.renegotiate({}, (err) => resolve(err ? 'refused' : 'renegotiated'));
        if (!started) resolve('refused');
        // The renegotiation handshake runs with the next I/O.
        socket.write('GET /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n');
      });
    });
    expect(outcome).not.toBe('renegotiated');
  });

  it('speaks TLS 1.3 by default', async () => {
    const result = await handshake(httpsPort, { ca: pki.ca.certPem });
    expect(result).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
  });
});

describe('configurable versions and suites', () => {
  it('minVersion TLSv1.3 refuses TLS 1.2; a narrowed ciphers list is what TLS 1.2 gets', async () => {
    const strict = await startTestGateway(`
listen:
  - { name: v13, host: 127.0.0.1, port: 0, tls: { cert: ${rsaCert.certFile}, key: ${rsaCert.keyFile}, minVersion: TLSv1.3 } }
  - { name: narrow, host: 127.0.0.1, port: 0, tls: { cert: ${rsaCert.certFile}, key: ${rsaCert.keyFile}, ciphers: ECDHE-RSA-AES256-GCM-SHA384 } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
    try {
      const v13 = Number(new URL(strict.urls.v13!).port);
      const narrow = Number(new URL(strict.urls.narrow!).port);
      expect(strict.logs.some((l) => /tls.ciphers enables/.test(l.msg ?? ''))).toBe(false);
      expect((await handshake(v13, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2' })).ok).toBe(false);
      expect(await handshake(v13, { ca: pki.ca.certPem })).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
      expect(await handshake(narrow, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2' })).toMatchObject({ ok: true, cipher: 'ECDHE-RSA-AES256-GCM-SHA384' });
      expect((await handshake(narrow, { ca: pki.ca.certPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' })).ok).toBe(false);
    } finally {
      await strict.close();
    }
  });
});

describe('ciphers outside the profile', () => {
  it('warns at start about suites without forward secrecy or AEAD, and about broad keywords', async () => {
    expect(ciphersOutsideProfile('ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:!aNULL:-MD5:@SECLEVEL=2')).toEqual([]);
    expect(ciphersOutsideProfile('ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:HIGH:ECDHE-RSA-AES128-SHA256')).toEqual(['AES128-SHA', 'HIGH', 'ECDHE-RSA-AES128-SHA256']);
    const loose = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${rsaCert.certFile}, key: ${rsaCert.keyFile}, ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256' } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
    try {
      expect(loose.logs.find((l) => /tls.ciphers enables/.test(l.msg ?? ''))).toMatchObject({ level: 'warn', ciphers: ['AES128-GCM-SHA256'] });
    } finally {
      await loose.close();
    }
  });
});

describe('ALPN', () => {
  it('selects h2 when offered, http/1.1 otherwise', async () => {
    expect(await handshake(httpsPort, { ca: pki.ca.certPem, ALPNProtocols: ['h2', 'http/1.1'] })).toMatchObject({ ok: true, alpn: 'h2' });
    expect(await handshake(httpsPort, { ca: pki.ca.certPem, ALPNProtocols: ['http/1.1'] })).toMatchObject({ ok: true, alpn: 'http/1.1' });
    expect(await handshake(httpsPort, { ca: pki.ca.certPem })).toMatchObject({ ok: true, alpn: false });
  });
});

describe('HTTP/2 through the whole pipeline', () => {
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    session = await h2connect(gw.urls.https!, { ca: pki.ca.certPem });
  });
  afterAll(() => session?.close());

  it('advertises the configured stream limit', () => {
    expect(session.remoteSettings.maxConcurrentStreams).toBe(50);
    expect(session.remoteSettings.maxHeaderListSize).toBe(4096);
  });

  it('answers 404 problem+json with HSTS for an unknown path', async () => {
    const res = await h2request(session, { ':path': '/nowhere' });
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(res.body).code).toBe('GH_ERR_ROUTE_NOT_FOUND');
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });

  it('proxies a public route over h2 to an HTTP/1.1 upstream without pseudo-headers', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':path': '/public/items?x=1', 'x-custom': 'yes' });
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toContain('max-age=');
    const seen = upstream.requests[before]!;
    expect(seen.url).toBe('/public/items?x=1');
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0).some((name) => name.startsWith(':'))).toBe(false);
    expect(seen.headers['x-custom']).toBe('yes');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers['x-forwarded-host']).toBe(`127.0.0.1:${httpsPort}`);
  });

  it('refuses TRACE over h2 on a route without a method list, and the upstream never sees it', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':method': 'TRACE', ':path': '/public/items', cookie: 'session=secret' });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT');
    expect(JSON.parse(res.body).code).toBe('GH_ERR_ROUTE_METHOD_NOT_ALLOWED');
    expect(res.body).not.toContain('session=secret');
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses an h2 request whose Host names another host than :authority (RFC 9113 §8.3.1)', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':path': '/public/items', ':authority': `127.0.0.1:${httpsPort}`, host: 'evil.example' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).code).toBe('GH_ERR_REQUEST_BAD_HOST');
    expect(upstream.requests.length).toBe(before);
    const same = await h2request(session, { ':path': '/public/items', ':authority': `127.0.0.1:${httpsPort}`, host: `127.0.0.1:${httpsPort}` });
    expect(same.status).toBe(200);
  });

  it('refuses an h2 CONNECT with 400 problem+json and HSTS — no tunnel is opened, the upstream never sees it', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':method': 'CONNECT', ':authority': `127.0.0.1:${new URL(upstream.url).port}` });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['strict-transport-security']).toContain('max-age=');
    expect(JSON.parse(res.body).code).toBe('GH_ERR_REQUEST_BAD_PATH');
    expect(upstream.requests.length).toBe(before);
  });

  it('joins cookie fields that an h2 client split into one Cookie for the HTTP/1.1 upstream (RFC 9113 §8.2.3)', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':path': '/public/cookies', cookie: ['a=1', 'b=2', 'c=3'] });
    expect(res.status).toBe(200);
    const raw = upstream.requests[before]!.rawHeaders;
    const cookies = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'cookie');
    expect(cookies).toEqual(['a=1; b=2; c=3']);
  });

  it('streams a request body that has no content-length (h2 has no chunked encoding)', async () => {
    const before = upstream.requests.length;
    async function* parts() {
      yield Buffer.from('hello ');
      yield Buffer.from('world');
    }
    const res = await h2request(session, { ':path': '/public/upload', ':method': 'POST', 'content-type': 'text/plain' }, parts());
    expect(res.status).toBe(200);
    expect(upstream.requests[before]!.body).toBe('hello world');
  });

  it('streams a large upstream answer to an h2 client with flow control (8 MiB, byte for byte)', async () => {
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
    upstream.setHandler((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let sent = 0;
      const pump = () => {
        while (sent < 128) {
          sent++;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    try {
      const received = await new Promise<Buffer>((resolve, reject) => {
        const stream = session.request({ ':path': '/public/big' });
        const parts: Buffer[] = [];
        stream.on('data', (c: Buffer) => parts.push(c));
        stream.on('end', () => resolve(Buffer.concat(parts)));
        stream.on('error', reject);
      });
      expect(received.length).toBe(128 * chunk.length);
      expect(received.subarray(0, chunk.length).equals(chunk)).toBe(true);
      expect(received.subarray(received.length - chunk.length).equals(chunk)).toBe(true);
    } finally {
      upstream.setHandler(null);
    }
  });

  it('answers 413 for a declared body over the limit without forwarding', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':path': '/public/upload', ':method': 'POST', 'content-length': '5000' }, Buffer.alloc(5000, 97));
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).code).toBe('GH_ERR_REQUEST_BODY_TOO_LARGE');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers 413 for a streamed body that grows over the limit', async () => {
    async function* parts() {
      for (let i = 0; i < 4; i++) yield Buffer.alloc(512, 98);
    }
    const res = await h2request(session, { ':path': '/public/upload', ':method': 'POST' }, parts());
    expect(res.status).toBe(413);
  });

  it('denies a protected route without a token: 401 with a Bearer challenge', async () => {
    const before = upstream.requests.length;
    const res = await h2request(session, { ':path': '/admin/users' });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(JSON.parse(res.body).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers 503 for a token while the issuer keys are unavailable', async () => {
    const res = await h2request(session, { ':path': '/admin/users', authorization: 'Bearer a.b.c' });
    expect([401, 503]).toContain(res.status);
  });

  it('refuses a header list over maxHeaderListSize before any routing', async () => {
    const before = upstream.requests.length;
    const other = await h2connect(gw.urls.https!, { ca: pki.ca.certPem });
    await expect(h2request(other, { ':path': '/public/x', 'x-big': 'a'.repeat(6000) })).rejects.toMatchObject({ code: 'ERR_HTTP2_STREAM_ERROR' });
    other.close();
    expect(upstream.requests.length).toBe(before);
  });

  it('answers 431 for a header list over the limit sent before the client acknowledged the SETTINGS', async () => {
    const before = upstream.requests.length;
    const eager = http2.connect(gw.urls.https!, { ca: pki.ca.certPem });
    eager.on('error', () => undefined);
    try {
      // No wait for 'remoteSettings': the request leaves with the preface.
      const res = await h2request(eager, { ':path': '/public/x', 'x-big': 'a'.repeat(6000) });
      expect(res.status).toBe(431);
      expect(JSON.parse(res.body).code).toBe('GH_ERR_REQUEST_HEADERS_TOO_LARGE');
      expect(res.headers['strict-transport-security']).toBeDefined();
      // The listener's own answer carries an id from the same source as the runner's.
      const id = res.headers['x-request-id'] as string;
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(JSON.parse(res.body).instance).toContain(id);
    } catch (err) {
      // Or the server's SETTINGS won the race and nghttp2 reset the stream: refused either way.
      expect((err as { code: string }).code).toBe('ERR_HTTP2_STREAM_ERROR');
    } finally {
      eager.close();
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('logs h2 requests like HTTP/1.1 ones', async () => {
    await h2request(session, { ':path': '/public/logged', 'x-request-id': 'h2-log-check' });
    await new Promise((r) => setTimeout(r, 20));
    expect(gw.logs.find((l) => l.req_id === 'h2-log-check')).toMatchObject({ route: 'public', status: 200, granted: true });
  });
});

describe('HTTP/1.1 over TLS through the whole pipeline', () => {
  it('proxies a public route with HSTS', async () => {
    const res = await request(`${gw.urls.https}/public/one?y=2`, { dispatcher: agent });
    expect(res.statusCode).toBe(200);
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const body = (await res.body.json()) as { url: string; headers: Record<string, string> };
    expect(body.url).toBe('/public/one?y=2');
    expect(body.headers['x-forwarded-proto']).toBe('https');
  });

  it('keeps its own HSTS policy when the upstream sends another one (e.g. max-age=0)', async () => {
    upstream.setHandler((_req, res) => {
      res.writeHead(200, { 'strict-transport-security': 'max-age=0', 'content-type': 'text/plain' });
      res.end('upstream says no HSTS');
    });
    try {
      const res = await request(`${gw.urls.https}/public/hsts`, { dispatcher: agent });
      expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      await res.body.dump();
      const session = await h2connect(gw.urls.https!, { ca: pki.ca.certPem });
      const h2res = await h2request(session, { ':path': '/public/hsts' });
      expect(h2res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      session.close();
    } finally {
      upstream.setHandler(null);
    }
  });

  it('denies a protected route without a token with 401', async () => {
    const res = await request(`${gw.urls.https}/admin/users`, { dispatcher: agent });
    expect(res.statusCode).toBe(401);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
  });

  it('answers 431 for headers over the limit', async () => {
    const before = upstream.requests.length;
    const res = await request(`${gw.urls.https}/public/x`, { dispatcher: agent, headers: { 'x-big': 'a'.repeat(6000) } });
    expect(res.statusCode).toBe(431);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_REQUEST_HEADERS_TOO_LARGE');
    expect(upstream.requests.length).toBe(before);
  });
});

/** A raw HTTP/1.1 exchange on a plain port (undici would refuse to send some of these). */
function rawHttp(url: string, target: string, headers = ''): Promise<{ status: number; head: string; body: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n${headers}\r\n`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('end', () => {
      const at = data.indexOf('\r\n\r\n');
      resolve({ status: Number(data.split(' ')[1]), head: data.slice(0, at), body: data.slice(at + 4) });
    });
    socket.on('error', reject);
  });
}

describe('plain HTTP next to HTTPS', () => {
  it('redirects with 308 to the HTTPS port, keeping path and query', async () => {
    const before = upstream.requests.length;
    const res = await rawHttp(gw.urls.http!, '/public/a/b?q=1&r=%20x');
    expect(res.status).toBe(308);
    expect(res.head).toMatch(new RegExp(`\\r\\nlocation: https://127\\.0\\.0\\.1:${httpsPort}/public/a/b\\?q=1&r=%20x\\r\\n`, 'i'));
    expect(upstream.requests.length).toBe(before);
  });

  it("redirects to the client's host on the HTTPS port; a Host that is not host[:port] gets a 400, never a Location", async () => {
    const { port } = new URL(gw.urls.http!);
    const send = (head: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(head));
        let data = '';
        socket.on('data', (d) => (data += d.toString('latin1')));
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });
    const named = await send('GET /public/x HTTP/1.1\r\nHost: app.example.com:8080\r\nConnection: close\r\n\r\n');
    expect(named).toMatch(new RegExp(`^HTTP/1\\.1 308[^]*\\r\\nlocation: https://app\\.example\\.com:${httpsPort}/public/x\\r\\n`, 'i'));
    for (const host of ['evil.example/x?', 'user@evil.example', 'evil.example:80:80']) {
      const bad = await send(`GET /public/x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(bad.startsWith('HTTP/1.1 400'), host).toBe(true);
      expect(bad).toContain('GH_ERR_REQUEST_BAD_HOST');
      expect(bad.toLowerCase()).not.toContain('location:');
    }
    // HTTP/1.0 may come without Host: the HTTPS listener's own address stands in.
    const old = await send('GET /public/x HTTP/1.0\r\n\r\n');
    expect(old).toMatch(new RegExp(`\\r\\nlocation: https://127\\.0\\.0\\.1:${httpsPort}/public/x\\r\\n`, 'i'));
  });

  it('never forwards a request with an Authorization header over plaintext', async () => {
    const before = upstream.requests.length;
    const res = await request(`${gw.urls.http}/public/x`, { headers: { authorization: 'Bearer secret' } });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_PLAINTEXT_CREDENTIALS');
    expect(upstream.requests.length).toBe(before);
  });

  it('never forwards a request with a cookie over plaintext', async () => {
    const before = upstream.requests.length;
    const res = await request(`${gw.urls.http}/public/x`, { headers: { cookie: 'session=abc' } });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_PLAINTEXT_CREDENTIALS');
    expect(upstream.requests.length).toBe(before);
  });

  it('never forwards a request with a Proxy-Authorization header over plaintext', async () => {
    const before = upstream.requests.length;
    const res = await rawHttp(gw.urls.http!, '/public/x', 'Proxy-Authorization: Basic dXNlcjpwYXNz\r\n');
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).code).toBe('GH_ERR_PLAINTEXT_CREDENTIALS');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers 400 GH_ERR_HTTPS_REQUIRED instead of redirecting with redirectToHttps: false', async () => {
    const before = upstream.requests.length;
    const res = await rawHttp(gw.urls['no-redirect']!, '/public/x?q=1');
    expect(res.status).toBe(400);
    expect(res.head.toLowerCase()).not.toContain('location:');
    const problem = JSON.parse(res.body) as { code: string; detail?: string; title: string };
    expect(problem.code).toBe('GH_ERR_HTTPS_REQUIRED');
    expect(upstream.requests.length).toBe(before);
    // Credentials keep their own, sharper answer on such a listener too.
    const withToken = await rawHttp(gw.urls['no-redirect']!, '/public/x', 'Authorization: Bearer secret\r\n');
    expect(withToken.status).toBe(400);
    expect(JSON.parse(withToken.body).code).toBe('GH_ERR_PLAINTEXT_CREDENTIALS');
    expect(upstream.requests.length).toBe(before);
  });

  it('sends no HSTS over plain HTTP (RFC 6797 §7.2)', async () => {
    const redirect = await rawHttp(gw.urls.http!, '/public/x');
    expect(redirect.head.toLowerCase()).not.toContain('strict-transport-security');
    const res = await request(`${gw.urls['behind-lb']}/public/x`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['strict-transport-security']).toBeUndefined();
    await res.body.dump();
  });

  it('proxies over plaintext only with allowPlaintext', async () => {
    const res = await request(`${gw.urls['behind-lb']}/public/lb`);
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { headers: Record<string, string> }).headers['x-forwarded-proto']).toBe('http');
  });
});

describe('rapid reset', () => {
  it('cuts off a client that opens and cancels streams in a flood (GOAWAY ENHANCE_YOUR_CALM)', async () => {
    const result = await rapidResetFlood(httpsPort, pki.ca.certPem, 2000);
    expect(result.goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(result.closed).toBe(true);
    expect(result.sent).toBeLessThan(2000);
    expect(gw.logs.some((l) => l.reason === 'GH_ERR_HTTP2_RAPID_RESET')).toBe(true);
  });

  it('serves no more than maxConcurrentStreams open streams of one connection', async () => {
    const result = await openManyStreams(httpsPort, pki.ca.certPem, 60);
    expect(result.maxConcurrentStreams).toBe(50);
    // The 10 over the limit never reach the pipeline (nghttp2 resets or ignores them).
    expect(result.answered).toBe(50);
  });

  it('leaves a well-behaved client alone: many requests on one session', async () => {
    const client = await h2connect(gw.urls.https!, { ca: pki.ca.certPem });
    let goaway = false;
    client.on('goaway', () => (goaway = true));
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => h2request(client, { ':path': `/public/fine/${round}/${i}` })));
      expect(answers.every((a) => a.status === 200)).toBe(true);
    }
    expect(goaway).toBe(false);
    client.close();
  });
});

describe('HTTPS without HTTP/2', () => {
  it('serves HTTP/1.1 only when http2 is false', async () => {
    const gw2 = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${ecCert.certFile}, key: ${ecCert.keyFile}, http2: false, hsts: { maxAge: 1d, preload: true, includeSubDomains: false } } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
    try {
      const port = Number(new URL(gw2.url).port);
      expect(await handshake(port, { ca: pki.ca.certPem, ALPNProtocols: ['h2', 'http/1.1'] })).toMatchObject({ ok: true, alpn: 'http/1.1' });
      const res = await request(`${gw2.url}/public/x`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      expect(res.headers['strict-transport-security']).toBe('max-age=86400; preload');
      await res.body.dump();
    } finally {
      await gw2.close();
    }
  });
});

describe('HTTP/2 request timeout', () => {
  it('answers 408 to a stream whose body stops arriving, and keeps the session for other streams', async () => {
    const slowUpstream = await startUpstream();
    const gw2 = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${ecCert.certFile}, key: ${ecCert.keyFile} } }
limits: { headersTimeout: 300ms, requestTimeout: 400ms }
upstreams: [{ name: pub, url: ${slowUpstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
    const session = await h2connect(gw2.url, { ca: pki.ca.certPem });
    try {
      const stalled = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ':path': '/public/slow', ':method': 'POST' }, { endStream: false });
        stream.write('first part, then nothing');
        let status = 0;
        let body = '';
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (c) => (body += c));
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
      });
      expect(stalled.status).toBe(408);
      expect(JSON.parse(stalled.body).code).toBe('GH_ERR_REQUEST_TIMEOUT');
      expect((await h2request(session, { ':path': '/public/after' })).status).toBe(200);
    } finally {
      session.close();
      await gw2.close();
      await slowUpstream.close();
    }
  });
});
