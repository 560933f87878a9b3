import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCertificateAuthority, createDevCertificate, createSelfSignedCertificate } from '../../src/demo/dev-cert.js';

describe('createDevCertificate', () => {
  it('writes a CA, a chain and a private key that a client verifying with the CA accepts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-devcert-'));
    const dev = await createDevCertificate({ hosts: ['localhost', '127.0.0.1'], dir });
    expect(statSync(dev.keyFile).mode & 0o777).toBe(0o600);
    const chain = readFileSync(dev.certFile, 'utf8');
    expect(chain.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(readFileSync(dev.caFile, 'utf8')).toBe(dev.caPem);

    const server = https.createServer({ cert: chain, key: readFileSync(dev.keyFile) }, (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      for (const host of ['localhost', '127.0.0.1']) {
        const body = await new Promise<string>((resolve, reject) => {
          https.get({ host: '127.0.0.1', port, servername: host === 'localhost' ? host : undefined, ca: dev.caPem, agent: false, headers: { host } }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => resolve(text));
          }).on('error', reject);
        });
        expect(body).toBe('ok');
      }
      // And a client that does not trust the development CA refuses it.
      await expect(
        new Promise((resolve, reject) => https.get({ host: '127.0.0.1', port, agent: false }, resolve).on('error', reject)),
      ).rejects.toMatchObject({ code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    } finally {
      server.close();
    }
  });
});

describe('certificate issuing', () => {
  it('issues server certificates with the host names as subjectAltName, client certificates with clientAuth', async () => {
    const ca = await createCertificateAuthority();
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    const server = new X509Certificate((await ca.issue({ hosts: ['api.example.com', '10.0.0.1'] })).certPem);
    expect(server.subjectAltName).toBe('DNS:api.example.com, IP Address:10.0.0.1');
    expect(server.checkIssued(caCert)).toBe(true);
    expect(server.verify(caCert.publicKey)).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    const client = new X509Certificate((await ca.issue({ client: true, commonName: 'alice' })).certPem);
    expect(client.subject).toBe('CN=alice');
    expect(client.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
  });

  it('issues RSA certificates on request and expired ones for negative tests', async () => {
    const ca = await createCertificateAuthority();
    const rsa = await ca.issue({ keyType: 'rsa' });
    expect(new X509Certificate(rsa.certPem).publicKey.asymmetricKeyType).toBe('rsa');
    const expired = new X509Certificate((await ca.issue({ validityDays: -1 })).certPem);
    expect(Date.parse(expired.validTo)).toBeLessThan(Date.now());
  });

  it('makes self-signed certificates that are their own issuer', async () => {
    const self = new X509Certificate((await createSelfSignedCertificate({ hosts: ['localhost'] })).certPem);
    expect(self.checkIssued(self)).toBe(true);
  });
});
