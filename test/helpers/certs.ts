import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  createCertificateAuthority,
  createSelfSignedCertificate,
  type CertificateAuthority,
  type IssuedCertificate,
  type IssueOptions,
} from '../../src/demo/dev-cert.js';

export { createCertificateAuthority, createSelfSignedCertificate, type CertificateAuthority, type IssuedCertificate };

/** PEM files of one certificate on disk. */
export interface CertFiles {
  certFile: string;
  keyFile: string;
  serialNumber: string;
  certPem: string;
  keyPem: string;
}

/**
 * A throwaway PKI for a test file: a CA (files in a temp dir), server and client certificates
 * issued on demand, self-signed ones for negative tests. Nothing is committed; keys live in the
 * temp dir only.
 *
 * @example
 * ```ts
 * const pki = await createTestPki();
 * const server = await pki.server('gw', ['127.0.0.1', 'localhost']);
 * // listen: { tls: { cert: server.certFile, key: server.keyFile } }, clients trust pki.caFile
 * ```
 */
export interface TestPki {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  readonly caFile: string;
  /** Issue a server certificate for `hosts` and write `<name>.pem` / `<name>-key.pem`. */
  server(name: string, hosts?: string[], options?: Omit<IssueOptions, 'hosts' | 'client'>): Promise<CertFiles>;
  /** Issue a client certificate (clientAuth) with this CN. */
  client(name: string, commonName?: string): Promise<CertFiles>;
  /** A self-signed server certificate, not issued by the CA. */
  selfSigned(name: string, hosts?: string[]): Promise<CertFiles>;
  /** Write PEM text to a file in the dir (atomically: temp file + rename). */
  write(file: string, text: string): string;
}

export async function createTestPki(options: { commonName?: string } = {}): Promise<TestPki> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-pki-'));
  const ca = await createCertificateAuthority({ commonName: options.commonName ?? 'gatehouse test CA' });
  const write = (file: string, text: string) => {
    const full = path.resolve(dir, file);
    const tmp = `${full}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, full);
    return full;
  };
  const save = (name: string, issued: IssuedCertificate): CertFiles => ({
    certFile: write(`${name}.pem`, issued.certPem),
    keyFile: write(`${name}-key.pem`, issued.keyPem),
    serialNumber: issued.serialNumber.toUpperCase(),
    certPem: issued.certPem,
    keyPem: issued.keyPem,
  });
  return {
    dir,
    ca,
    caFile: write('ca.pem', ca.certPem),
    async server(name, hosts = ['127.0.0.1', 'localhost'], issueOptions = {}) {
      return save(name, await ca.issue({ ...issueOptions, hosts }));
    },
    async client(name, commonName = name) {
      return save(name, await ca.issue({ client: true, commonName }));
    },
    async selfSigned(name, hosts = ['127.0.0.1', 'localhost']) {
      return save(name, await createSelfSignedCertificate({ hosts }));
    },
    write,
  };
}
