import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect, h2request, handshake, rapidResetFlood } from './tls-client.js';

let pki: TestPki;
let cert: CertFiles;
let upstream: TestUpstream;

beforeAll(async () => {
  pki = await createTestPki();
  cert = await pki.server('gw');
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream?.close();
});

function tlsConfig(extra = '') {
  return `
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
limits: { headersTimeout: 300ms, requestTimeout: 2s, keepAliveTimeout: 1s, shutdownTimeout: 5s }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
${extra}`;
}

describe('connection lifetimes', () => {
  it('drops a client that connects and never completes the TLS handshake', async () => {
    const gw = await startTestGateway(tlsConfig());
    try {
      const { port } = new URL(gw.url);
      const closed = await new Promise<string>((resolve) => {
        const socket = net.connect(Number(port), '127.0.0.1');
        socket.on('error', () => undefined);
        socket.on('close', () => resolve('closed by the server'));
      });
      expect(closed).toBe('closed by the server');
    } finally {
      await gw.close();
    }
  });

  it('closes an HTTP/2 session that stays idle with no open stream (GOAWAY)', async () => {
    const gw = await startTestGateway(tlsConfig());
    try {
      const session = await h2connect(gw.url, { ca: pki.ca.certPem });
      expect((await h2request(session, { ':path': '/public/once' })).status).toBe(200);
      const goaway = await new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
      expect(goaway).toBe(0);
      session.destroy();
    } finally {
      await gw.close();
    }
  });

  it('on shutdown, lets an in-flight HTTP/2 request finish and tells idle sessions to go away', async () => {
    upstream.setHandler((_req, res) => setTimeout(() => res.end('slow but complete'), 300));
    const gw = await startTestGateway(tlsConfig());
    try {
      const busy = await h2connect(gw.url, { ca: pki.ca.certPem });
      const idle = await h2connect(gw.url, { ca: pki.ca.certPem });
      const idleGoaway = new Promise<number>((resolve) => idle.once('goaway', (code: number) => resolve(code)));
      const inFlight = h2request(busy, { ':path': '/public/slow' });
      await new Promise((r) => setTimeout(r, 50));
      const closing = gw.close();
      expect(await idleGoaway).toBe(0);
      const answer = await inFlight;
      expect(answer).toMatchObject({ status: 200, body: 'slow but complete' });
      await closing;
      busy.destroy();
      idle.destroy();
    } finally {
      upstream.setHandler(null);
      await gw.close();
    }
  });
});

describe('allowPlaintext behind a TLS-terminating proxy', () => {
  it('forwards credentials only when the trusted proxy says the client used https', async () => {
    const gw = await startTestGateway(`
listen:
  - { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
  - { name: lb, host: 127.0.0.1, port: 0, allowPlaintext: true }
trustedProxies: [127.0.0.1]
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
    try {
      const before = upstream.requests.length;
      const refused = await request(`${gw.urls.lb}/public/x`, { headers: { cookie: 'session=1', 'x-forwarded-proto': 'http' } });
      expect(refused.statusCode).toBe(400);
      expect(((await refused.body.json()) as { code: string }).code).toBe('GH_ERR_PLAINTEXT_CREDENTIALS');
      const missing = await request(`${gw.urls.lb}/public/x`, { headers: { cookie: 'session=1' } });
      expect(missing.statusCode).toBe(400);
      await missing.body.dump();
      expect(upstream.requests.length).toBe(before);

      const allowed = await request(`${gw.urls.lb}/public/x`, { headers: { cookie: 'session=1', 'x-forwarded-proto': 'https' } });
      expect(allowed.statusCode).toBe(200);
      const seen = (await allowed.body.json()) as { headers: Record<string, string> };
      expect(seen.headers['x-forwarded-proto']).toBe('https');
      // No credentials: plain requests are proxied as they are.
      const plain = await request(`${gw.urls.lb}/public/y`);
      expect(plain.statusCode).toBe(200);
      expect(plain.headers['strict-transport-security']).toBeUndefined();
      await plain.body.dump();
    } finally {
      await gw.close();
    }
  });
});

describe('metrics', () => {
  it('exposes certificate expiry, refused handshakes, reloads and rapid-reset cut-offs', async () => {
    const gw = await startTestGateway(`
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } }, http2: { maxResetsPerSecond: 20 } }
admin: { host: 127.0.0.1, port: 0 }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
    try {
      const port = Number(new URL(gw.url).port);
      expect((await handshake(port, { ca: pki.ca.certPem, maxVersion: 'TLSv1.1', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' })).ok).toBe(false);
      await rapidResetFlood(port, pki.ca.certPem, 500);
      await gw.gateway.reloadCertificates(); // unchanged files: nothing to count
      const text = await (await request(`${gw.adminUrl}/metrics`)).body.text();
      const notAfter = Math.floor(Date.parse(new (await import('node:crypto')).X509Certificate(cert.certPem).validTo) / 1000);
      expect(text).toContain(`gatehouse_tls_certificate_not_after_seconds{listener="https",certificate="default"} ${notAfter}`);
      expect(text).toMatch(/gatehouse_tls_handshake_failures_total\{listener="https",reason="[A-Z_]+"\} [1-9]/);
      expect(text).toContain('gatehouse_http2_rapid_reset_total{listener="https"} 1');
    } finally {
      await gw.close();
    }
  });
});
