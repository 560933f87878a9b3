import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect, h2request, handshake } from './tls-client.js';

let pki: TestPki;
let fallback: CertFiles;
let api: CertFiles;
let partner: CertFiles;
let upstream: TestUpstream;
let gw: TestGateway;
let port: number;

async function serialFor(servername: string | undefined): Promise<string> {
  const result = await handshake(port, { ca: pki.ca.certPem, servername, checkServerIdentity: () => undefined });
  if (!result.ok) throw new Error(result.code);
  return result.serialNumber;
}

beforeAll(async () => {
  pki = await createTestPki();
  fallback = await pki.server('default', ['localhost', '127.0.0.1']);
  api = await pki.server('api', ['api.test', 'www.api.test']);
  partner = await pki.server('partner', ['*.partner.test']);
  pki.write('api-live.pem', api.certPem);
  pki.write('api-live-key.pem', api.keyPem);
  upstream = await startUpstream();
  gw = await startTestGateway(`
listen:
  name: https
  host: 127.0.0.1
  port: 0
  tls:
    cert: ${fallback.certFile}
    key: ${fallback.keyFile}
    reload: { debounce: 50ms }
    sni:
      - { cert: ${path.join(pki.dir, 'api-live.pem')}, key: ${path.join(pki.dir, 'api-live-key.pem')} }
      - { hosts: ['*.partner.test'], cert: ${partner.certFile}, key: ${partner.keyFile} }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`);
  port = Number(new URL(gw.url).port);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

describe('SNI: several certificates on one port', () => {
  it('serves the certificate whose subjectAltName lists the server name', async () => {
    expect(await serialFor('api.test')).toBe(api.serialNumber);
    expect(await serialFor('WWW.API.TEST')).toBe(api.serialNumber);
  });

  it('matches a wildcard on exactly one label', async () => {
    expect(await serialFor('eu.partner.test')).toBe(partner.serialNumber);
    expect(await serialFor('a.eu.partner.test')).toBe(fallback.serialNumber);
    expect(await serialFor('partner.test')).toBe(fallback.serialNumber);
  });

  it('falls back to the default certificate for other names and without SNI', async () => {
    expect(await serialFor('localhost')).toBe(fallback.serialNumber);
    expect(await serialFor('unknown.example')).toBe(fallback.serialNumber);
    expect(await serialFor(undefined)).toBe(fallback.serialNumber);
  });

  it('verifies end to end over h2 with the SNI certificate', async () => {
    const session = await h2connect(`https://127.0.0.1:${port}`, { ca: pki.ca.certPem, servername: 'api.test' });
    try {
      const res = await h2request(session, { ':path': '/public/sni', ':authority': 'api.test' });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).headers['x-forwarded-host']).toBe('api.test');
    } finally {
      session.close();
    }
  });

  it('421 for a host another certificate of the listener would serve than the one the handshake named (HTTP/2 and HTTP/1.1), nothing forwarded', async () => {
    const before = upstream.requests.length;
    const session = await h2connect(`https://127.0.0.1:${port}`, { ca: pki.ca.certPem, servername: 'api.test' });
    try {
      for (const authority of ['eu.partner.test', 'localhost', 'unknown.example']) {
        const res = await h2request(session, { ':path': '/public/x', ':authority': authority });
        expect(res.status, authority).toBe(421);
        expect(JSON.parse(res.body).code).toBe('GH_ERR_REQUEST_MISDIRECTED');
      }
      // The same certificate covers it (connection coalescing): served.
      expect((await h2request(session, { ':path': '/public/x', ':authority': 'www.api.test:443' })).status).toBe(200);
    } finally {
      session.close();
    }
    expect(upstream.requests.length).toBe(before + 1);
    const line = gw.logs.find((l) => l.msg === 'request' && l.reason === 'GH_ERR_REQUEST_MISDIRECTED');
    expect(line).toMatchObject({ status: 421, detail: 'host eu.partner.test on a connection whose handshake named api.test (another certificate)' });
    const h1 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/public/x', servername: 'eu.partner.test', ca: pki.ca.certPem, headers: { host: 'api.test' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(h1.status).toBe(421);
    expect(upstream.requests.length).toBe(before + 1);
  });

  it('no SNI (a client that connected to an address), or the name the handshake sent: any host, as before', async () => {
    const session = await h2connect(`https://127.0.0.1:${port}`, { ca: pki.ca.certPem, servername: '', checkServerIdentity: () => undefined });
    try {
      expect((await h2request(session, { ':path': '/public/x', ':authority': 'api.test' })).status).toBe(200);
      expect((await h2request(session, { ':path': '/public/x', ':authority': '127.0.0.1' })).status).toBe(200);
    } finally {
      session.close();
    }
  });

  it('reloads an SNI certificate when its files change', async () => {
    const renewed = await pki.server('api-renewed', ['api.test']);
    pki.write('api-live-key.pem', renewed.keyPem);
    pki.write('api-live.pem', renewed.certPem);
    const deadline = Date.now() + 5000;
    while ((await serialFor('api.test')) !== renewed.serialNumber) {
      if (Date.now() > deadline) throw new Error('the renewed SNI certificate never appeared');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await serialFor('localhost')).toBe(fallback.serialNumber);
  });

  it('keeps every certificate when one SNI file is broken', async () => {
    const before = await serialFor('api.test');
    const failures = () => gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length;
    const count = failures();
    pki.write('api-live.pem', (await pki.server('stray')).certPem); // a certificate without its key
    const deadline = Date.now() + 5000;
    while (failures() === count) {
      if (Date.now() > deadline) throw new Error('no failed reload logged');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').at(-1)!.reason).toMatch(/^sni\[0\]: key .* does not belong/);
    expect(await serialFor('api.test')).toBe(before);
    expect(await serialFor('eu.partner.test')).toBe(partner.serialNumber);
  });

  it('refuses to start when an SNI entry is unusable, naming it', async () => {
    await expect(
      startTestGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${fallback.certFile}, key: ${fallback.keyFile}, sni: [{ cert: ${api.certFile}, key: ${partner.keyFile} }] } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`),
    ).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringMatching(/listen\[0\]\.tls\.sni\[0\] key .* does not belong/) });
  });
});
