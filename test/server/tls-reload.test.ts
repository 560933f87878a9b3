import https from 'node:https';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect, h2request } from './tls-client.js';
import { waitFor } from '../helpers/wait.js';

let pki: TestPki;
let upstream: TestUpstream;

/** One request on a fresh TLS connection: the status and the serial of the certificate it saw. */
function freshRequest(url: string, ca: string): Promise<{ status: number; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(`${url}/public/ping`, { ca, agent: false, servername: 'localhost' }, (res) => {
      const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, serial }));
    });
    req.on('error', reject);
  });
}

/** Install a certificate at the paths the gateway reads (each file replaced atomically). */
function install(files: CertFiles, certPem = files.certPem, keyPem = files.keyPem): void {
  pki.write('live-key.pem', keyPem);
  pki.write('live.pem', certPem);
}


function config(watch: boolean) {
  return `
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${path.join(pki.dir, 'live.pem')}, key: ${path.join(pki.dir, 'live-key.pem')}, reload: { watch: ${watch}, debounce: 50ms } } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`;
}

beforeAll(async () => {
  pki = await createTestPki();
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream?.close();
});

describe('certificate reload on file change', () => {
  let gw: TestGateway;
  let first: CertFiles;

  beforeAll(async () => {
    first = await pki.server('first', ['localhost', '127.0.0.1']);
    install(first);
    gw = await startTestGateway(config(true));
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('serves the new certificate to new connections with no failed request during the swap, and keeps open connections', async () => {
    const ca = pki.ca.certPem;
    expect((await freshRequest(gw.url, ca)).serial).toBe(first.serialNumber);
    // An HTTP/2 session opened before the swap must survive it.
    const session = await h2connect(gw.url, { ca, servername: 'localhost' });
    const sessionSerial = (session.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber;

    const second = await pki.server('second', ['localhost', '127.0.0.1']);
    const seen: string[] = [];
    const failures: unknown[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        try {
          const r = await freshRequest(gw.url, ca);
          if (r.status !== 200) failures.push(r.status);
          seen.push(r.serial);
        } catch (err) {
          failures.push(err);
        }
      }
    })();
    await waitFor(() => seen.length >= 3, 'requests before the swap');
    install(second);
    await waitFor(() => seen.at(-1) === second.serialNumber, 'the new certificate');
    const afterSwap = seen.length;
    await waitFor(() => seen.length >= afterSwap + 3, 'requests after the swap');
    stop = true;
    await loop;

    expect(failures).toEqual([]);
    expect(seen[0]).toBe(first.serialNumber);
    expect(seen.at(-1)).toBe(second.serialNumber);
    // Once switched, it stays switched (no flapping between old and new contexts).
    expect(seen.slice(seen.indexOf(second.serialNumber)).every((s) => s === second.serialNumber)).toBe(true);
    expect(gw.logs.some((l) => l.msg === 'certificate reloaded' && l.serial === second.serialNumber && l.previous === first.serialNumber)).toBe(true);

    const onOld = await h2request(session, { ':path': '/public/still-here' });
    expect(onOld.status).toBe(200);
    expect((session.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber).toBe(sessionSerial);
    session.close();
  });

  it('keeps the current certificate when the new key does not match, and logs why', async () => {
    const current = (await freshRequest(gw.url, pki.ca.certPem)).serial;
    const other = await pki.server('other', ['localhost', '127.0.0.1']);
    const failuresBefore = gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length;
    install(other, other.certPem, (await pki.server('unrelated')).keyPem);
    await waitFor(() => gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length > failuresBefore, 'the failed reload');
    const failure = gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').at(-1)!;
    expect(failure.reason).toMatch(/does not belong/);
    expect(failure.level).toBe('error');
    expect((await freshRequest(gw.url, pki.ca.certPem)).serial).toBe(current);
  });

  it('keeps the current certificate when the new file is not a certificate', async () => {
    const current = (await freshRequest(gw.url, pki.ca.certPem)).serial;
    const failuresBefore = gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length;
    pki.write('live.pem', '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    await waitFor(() => gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length > failuresBefore, 'the failed reload');
    expect((await freshRequest(gw.url, pki.ca.certPem)).serial).toBe(current);
  });

  it('refuses an expired replacement', async () => {
    const current = (await freshRequest(gw.url, pki.ca.certPem)).serial;
    const expired = await pki.server('expired', ['localhost', '127.0.0.1'], { validityDays: -1 });
    const failuresBefore = gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length;
    install(expired);
    await waitFor(() => gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').length > failuresBefore, 'the failed reload');
    expect(gw.logs.filter((l) => l.msg === 'certificate reload failed; keeping the previous certificate').at(-1)!.reason).toMatch(/expired/);
    expect((await freshRequest(gw.url, pki.ca.certPem)).serial).toBe(current);
  });

  it('recovers when good files arrive after broken ones', async () => {
    const good = await pki.server('good', ['localhost', '127.0.0.1']);
    install(good);
    await waitFor(async () => (await freshRequest(gw.url, pki.ca.certPem)).serial === good.serialNumber, 'the good certificate');
  });
});

describe('certificate reload on SIGHUP (reloadCertificates)', () => {
  it('changes nothing until asked when watching is off, then swaps; a broken set is refused', async () => {
    const first = await pki.server('hup-first', ['localhost', '127.0.0.1']);
    install(first);
    const gw = await startTestGateway(config(false));
    try {
      const second = await pki.server('hup-second', ['localhost', '127.0.0.1']);
      install(second);
      await new Promise((r) => setTimeout(r, 150)); // more than the debounce: a watcher would have fired
      expect((await freshRequest(gw.url, pki.ca.certPem)).serial).toBe(first.serialNumber);
      await gw.gateway.reloadCertificates();
      expect((await freshRequest(gw.url, pki.ca.certPem)).serial).toBe(second.serialNumber);

      writeFileSync(path.join(pki.dir, 'live-key.pem'), 'garbage');
      await gw.gateway.reloadCertificates();
      expect((await freshRequest(gw.url, pki.ca.certPem)).serial).toBe(second.serialNumber);
      expect(gw.logs.some((l) => l.msg === 'certificate reload failed; keeping the previous certificate' && /not an unencrypted PEM private key/.test(l.reason))).toBe(true);
    } finally {
      await gw.close();
    }
  });
});

describe('certificate expiry', () => {
  it('warns at start when the certificate expires within two weeks', async () => {
    const soon = await pki.server('soon', ['localhost', '127.0.0.1'], { validityDays: 3 });
    install(soon);
    const gw = await startTestGateway(config(false));
    try {
      const warning = gw.logs.find((l) => l.msg === 'certificate expires soon');
      expect(warning).toMatchObject({ level: 'warn', listener: 'https', serial: soon.serialNumber });
      expect(warning!.days).toBeLessThanOrEqual(3);
    } finally {
      await gw.close();
    }
  });
});

describe('certificate problems at start', () => {
  it('refuses to start with a key that does not match, naming the listener', async () => {
    const a = await pki.server('start-a');
    const b = await pki.server('start-b');
    const text = `
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${a.certFile}, key: ${b.keyFile} } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`;
    await expect(startTestGateway(text)).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringMatching(/listen\[0\]\.tls .*does not belong/) });
  });

  it('refuses to start with a missing certificate file', async () => {
    const text = `
listen: { host: 127.0.0.1, port: 0, tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem } }
upstreams: [{ name: pub, url: ${upstream.url} }]
routes: [{ name: public, path: /public, upstream: pub, public: true }]
`;
    await expect(startTestGateway(text)).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringMatching(/cannot be read \(ENOENT\)/) });
  });
});
