import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The certificate and key files a config names — a listener's, an upstream's or issuer's client
 * `tls` — read and understood one way, so every one of them is refused with the same words
 * (the file as the config names it): `certificate certs/api.pem cannot be read (ENOENT)`.
 */

/** Read a file named in the config (relative to the config file's directory). Throws naming it. */
export function readTlsFile(file: string, baseDir: string, what: string): Buffer {
  try {
    return readFileSync(path.resolve(baseDir, file));
  } catch (err) {
    throw new Error(`${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** The first certificate of a PEM file (a leaf before its chain, the first of a CA bundle). */
export function certificateIn(bytes: Buffer, file: string, what = 'certificate'): X509Certificate {
  try {
    return new X509Certificate(bytes);
  } catch {
    throw new Error(`${what} ${file} is not a PEM certificate`);
  }
}

export function privateKeyIn(bytes: Buffer, file: string): KeyObject {
  try {
    return createPrivateKey(bytes);
  } catch {
    throw new Error(`key ${file} is not an unencrypted PEM private key`);
  }
}

/** A certificate and the key that must go with it: the pair, and the certificate valid now (5 min of clock skew for its start). */
export function checkCertificatePair(x509: X509Certificate, key: KeyObject, certFile: string, keyFile: string, now: number): void {
  if (!x509.checkPrivateKey(key)) throw new Error(`key ${keyFile} does not belong to certificate ${certFile}`);
  if (Date.parse(x509.validTo) < now) throw new Error(`certificate ${certFile} expired on ${x509.validTo}`);
  if (Date.parse(x509.validFrom) > now + 300_000) throw new Error(`certificate ${certFile} is not valid before ${x509.validFrom}`);
}
