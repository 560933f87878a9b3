import http2 from 'node:http2';
import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultAreas } from '../../src/areas.js';
import { loadConfigFile } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import type { AreaFactory } from '../../src/pipeline/runtime.js';
import { createLogger } from '../../src/telemetry/log.js';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect, h2request } from './tls-client.js';

let pki: TestPki;
let otherPki: TestPki;
let serverCert: CertFiles;
let alice: CertFiles;
let stranger: CertFiles;
let upstream: TestUpstream;
let gw: Gateway;

/** A probe area: `/whoami` answers with what later stages see as the client certificate. */
const probe: AreaFactory = () => ({
  name: 'probe',
  handle(ctx, _req, res) {
    if (ctx.path !== '/whoami') return false;
    const cert = ctx.clientCertificate;
    const body = JSON.stringify(cert ? { cn: cert.subject.CN, serial: cert.serialNumber, hasRaw: Buffer.isBuffer(cert.raw) } : null);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    return true;
  },
});

async function start(yamlText: string): Promise<Gateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-mtls-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, yamlText);
  return startGateway({ config: loadConfigFile(file), log: createLogger({ level: 'silent' }), areas: [...defaultAreas(), probe] });
}

/** GET over HTTP/1.1 on a fresh connection, optionally with a client certificate. */
function get(url: string, client?: CertFiles): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: pki.ca.certPem, agent: false, servername: 'localhost', ...(client ? { cert: client.certPem, key: client.keyPem } : {}) }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

beforeAll(async () => {
  pki = await createTestPki();
  otherPki = await createTestPki({ commonName: 'someone else CA' });
  serverCert = await pki.server('gw', ['localhost', '127.0.0.1']);
  alice = await pki.client('alice');
  stranger = await otherPki.client('mallory');
  upstream = await startUpstream();
  gw = await start(`
listen:
  - { name: required, host: 127.0.0.1, port: 0, tls: { cert: ${serverCert.certFile}, key: ${serverCert.keyFile}, clientCa: ${pki.caFile}, requestCert: required } }
  - { name: optional, host: 127.0.0.1, port: 0, tls: { cert: ${serverCert.certFile}, key: ${serverCert.keyFile}, clientCa: ${pki.caFile}, requestCert: optional } }
  - { name: none, host: 127.0.0.1, port: 0, tls: { cert: ${serverCert.certFile}, key: ${serverCert.keyFile} } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

describe('requestCert: required', () => {
  it('refuses a client without a certificate before any request is read', async () => {
    const before = upstream.requests.length;
    await expect(get(`${gw.urls.required}/public/x`)).rejects.toMatchObject({ code: expect.stringMatching(/CERTIFICATE_REQUIRED|ECONNRESET|HANDSHAKE/) });
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses a certificate from another CA', async () => {
    const before = upstream.requests.length;
    await expect(get(`${gw.urls.required}/public/x`, stranger)).rejects.toMatchObject({ code: expect.stringMatching(/UNKNOWN_CA|ECONNRESET|BAD_CERTIFICATE/) });
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses a certificate of the right CA that is not meant for clients (serverAuth only)', async () => {
    const before = upstream.requests.length;
    await expect(get(`${gw.urls.required}/public/x`, serverCert)).rejects.toMatchObject({ code: expect.stringMatching(/UNSUPPORTED_CERTIFICATE|BAD_CERTIFICATE|ECONNRESET/) });
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses an HTTP/2 client without a certificate: no stream reaches the upstream', async () => {
    const before = upstream.requests.length;
    const session = http2.connect(gw.urls.required!, { ca: pki.ca.certPem, servername: 'localhost' });
    session.on('error', () => undefined);
    try {
      await expect(h2request(session, { ':path': '/public/h2' })).rejects.toMatchObject({ code: expect.stringMatching(/CERTIFICATE_REQUIRED|ECONNRESET|HANDSHAKE/) });
    } finally {
      session.destroy();
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('accepts a certificate of the configured CA and exposes it to later stages (HTTP/1.1)', async () => {
    const res = await get(`${gw.urls.required}/whoami`, alice);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ cn: 'alice', serial: alice.serialNumber, hasRaw: true });
  });

  it('exposes the verified certificate over HTTP/2 too', async () => {
    const session = await h2connect(gw.urls.required!, { ca: pki.ca.certPem, servername: 'localhost', cert: alice.certPem, key: alice.keyPem });
    try {
      const res = await h2request(session, { ':path': '/whoami' });
      expect(JSON.parse(res.body)).toEqual({ cn: 'alice', serial: alice.serialNumber, hasRaw: true });
      expect((await h2request(session, { ':path': '/public/y' })).status).toBe(200);
    } finally {
      session.close();
    }
  });
});

describe('requestCert: optional', () => {
  it('lets a client without a certificate in, with no certificate for later stages', async () => {
    const res = await get(`${gw.urls.optional}/whoami`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toBeNull();
  });

  it('never exposes an unverified certificate (another CA)', async () => {
    const res = await get(`${gw.urls.optional}/whoami`, stranger);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toBeNull();
  });

  it('exposes a verified certificate', async () => {
    const res = await get(`${gw.urls.optional}/whoami`, alice);
    expect(JSON.parse(res.body)).toMatchObject({ cn: 'alice' });
  });
});

describe('no client certificates', () => {
  it('does not ask for one, and ignores one that is sent', async () => {
    const res = await get(`${gw.urls.none}/whoami`, alice);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toBeNull();
  });

  it('refuses to start when requestCert is set without clientCa', async () => {
    await expect(
      start(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${serverCert.certFile}, key: ${serverCert.keyFile}, requestCert: required } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`),
    ).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringMatching(/clientCa is required/) });
  });
});

describe('upstreams[].forwardedHeaders: client-cert (RFC 9440)', () => {
  let certGw: Gateway;
  let plainUpstream: TestUpstream;
  beforeAll(async () => {
    plainUpstream = await startUpstream();
    certGw = await start(`
listen:
  - { name: optional, host: 127.0.0.1, port: 0, tls: { cert: ${serverCert.certFile}, key: ${serverCert.keyFile}, clientCa: ${pki.caFile}, requestCert: optional } }
upstreams:
  - { name: certs, url: ${upstream.url}, forwardedHeaders: [x-forwarded-for, client-cert] }
  - { name: plain, url: ${plainUpstream.url} }
routes:
  - { name: certs, path: /certs, upstream: certs, public: true }
  - { name: plain, path: /plain, upstream: plain, public: true }
`);
  });
  afterAll(async () => {
    await certGw?.close();
    await plainUpstream?.close();
  });

  /** GET with extra headers, optionally with a client certificate; the headers the upstream saw. */
  function seen(target: TestUpstream, path: string, client?: CertFiles, headers: Record<string, string> = {}): Promise<{ status: number; rawHeaders: string[] }> {
    return new Promise((resolve, reject) => {
      const before = target.requests.length;
      const req = https.get(`${certGw.urls.optional}${path}`, { ca: pki.ca.certPem, agent: false, servername: 'localhost', headers, ...(client ? { cert: client.certPem, key: client.keyPem } : {}) }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: target.requests.length > before ? target.requests.at(-1)!.rawHeaders : [] }));
      });
      req.on('error', reject);
    });
  }
  const values = (raw: string[], name: string) => raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === name);

  it("sends the verified client certificate as Client-Cert: :base64 DER:", async () => {
    const got = await seen(upstream, '/certs', alice);
    expect(got.status).toBe(200);
    const der = new X509Certificate(alice.certPem).raw.toString('base64');
    expect(values(got.rawHeaders, 'client-cert')).toEqual([`:${der}:`]);
  });

  it("never passes on a client's own Client-Cert or Client-Cert-Chain: with a certificate, without one, or to an upstream that does not take it", async () => {
    const forged = ':TUlJQm9ndXM=:';
    const der = new X509Certificate(alice.certPem).raw.toString('base64');
    const withCert = await seen(upstream, '/certs', alice, { 'client-cert': forged, 'client-cert-chain': forged });
    expect(values(withCert.rawHeaders, 'client-cert')).toEqual([`:${der}:`]);
    expect(values(withCert.rawHeaders, 'client-cert-chain')).toEqual([]);
    const without = await seen(upstream, '/certs', undefined, { 'client-cert': forged });
    expect(without.status).toBe(200);
    expect(values(without.rawHeaders, 'client-cert')).toEqual([]);
    const notListed = await seen(plainUpstream, '/plain', alice, { 'client-cert': forged });
    expect(values(notListed.rawHeaders, 'client-cert')).toEqual([]);
  });

  it('never sends a certificate that did not verify (another CA, on an optional listener), nor a forged one beside it', async () => {
    const got = await seen(upstream, '/certs', stranger, { 'client-cert': `:${new X509Certificate(alice.certPem).raw.toString('base64')}:` });
    expect(got.status).toBe(200);
    expect(values(got.rawHeaders, 'client-cert')).toEqual([]);
  });
});
