/**
 * Development certificates, generated at start and never committed: a throwaway CA and the
 * certificates it issues (server, client), plus self-signed ones for negative tests.
 * Built on `@peculiar/x509` and Node's WebCrypto, so no `openssl` binary is needed.
 */
import { webcrypto } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import './reflect-shim.js';
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const crypto = webcrypto;
x509.cryptoProvider.set(crypto as never);

/**
 * `ec` = ECDSA P-256 (default, fast), `rsa` = RSA 2048 (for RSA key-exchange tests).
 *
 * @example
 * ```ts
 * const rsa = await ca.issue({ keyType: 'rsa' satisfies DevKeyType });
 * ```
 */
export type DevKeyType = 'ec' | 'rsa';

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const RSA_KEY = { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } as const;
const DAY = 86_400_000;

/**
 * A certificate with its private key, both PEM.
 *
 * @example
 * ```ts
 * const { certPem, keyPem, serialNumber }: IssuedCertificate = await ca.issue();
 * ```
 */
export interface IssuedCertificate {
  /** PEM certificate (leaf first, then the issuing CA when `chain` was asked). */
  readonly certPem: string;
  /** PEM PKCS#8 private key. */
  readonly keyPem: string;
  /** Hex serial number (lowercase), as `getPeerCertificate().serialNumber` shows it uppercased. */
  readonly serialNumber: string;
}

/**
 * A development certificate authority that can issue server and client certificates.
 *
 * @example
 * ```ts
 * const ca: CertificateAuthority = await createCertificateAuthority();
 * const client = await ca.issue({ client: true, commonName: 'alice' });
 * ```
 */
export interface CertificateAuthority extends IssuedCertificate {
  /** Issue a certificate signed by this CA. */
  issue(options?: IssueOptions): Promise<IssuedCertificate>;
}

/**
 * What to put in an issued certificate.
 *
 * @example
 * ```ts
 * const options: IssueOptions = { hosts: ['api.local', '10.0.0.5'], chain: true };
 * ```
 */
export interface IssueOptions {
  /** DNS names and IP addresses for subjectAltName (default `localhost`, `127.0.0.1`, `::1`). */
  hosts?: string[];
  /** Subject CN (default: the first host, or `gatehouse client` for a client certificate). */
  commonName?: string;
  /** Issue a client certificate (extendedKeyUsage clientAuth) instead of a server one. */
  client?: boolean;
  keyType?: DevKeyType;
  /** Validity in days from now (default 30); a negative value makes an expired certificate. */
  validityDays?: number;
  /** Append the CA certificate to `certPem` (a chain file). */
  chain?: boolean;
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f; // positive INTEGER
  if (bytes[0] === 0) bytes[0] = 1; // no leading zero byte to strip: the hex stays 32 digits
  return Buffer.from(bytes).toString('hex');
}

async function generateKeys(type: DevKeyType): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(type === 'rsa' ? RSA_KEY : EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY') + '\n';
}

function signingAlgorithm(key: CryptoKey): webcrypto.Algorithm | webcrypto.EcdsaParams {
  return key.algorithm.name === 'ECDSA' ? EC_SIGN : RSA_KEY;
}

function san(hosts: string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(hosts.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h })));
}

/** Escape a value for an RFC 4514 distinguished name string. */
function dn(commonName: string): string {
  return `CN=${commonName.replace(/([,+"\\<>;=])/g, '\\$1')}`;
}

/**
 * Create a development CA (ECDSA P-256 by default) valid for `validityDays` (default 30).
 *
 * @example
 * ```ts
 * const ca = await createCertificateAuthority({ commonName: 'gatehouse test CA' });
 * const server = await ca.issue({ hosts: ['localhost', '127.0.0.1'] });
 * https.createServer({ cert: server.certPem, key: server.keyPem });
 * ```
 */
export async function createCertificateAuthority(options: { commonName?: string; keyType?: DevKeyType; validityDays?: number } = {}): Promise<CertificateAuthority> {
  const keys = await generateKeys(options.keyType ?? 'ec');
  const name = dn(options.commonName ?? 'gatehouse development CA');
  const serialNumber = randomSerial();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    name,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.validityDays ?? 30) * DAY),
    keys,
    signingAlgorithm: signingAlgorithm(keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const caPem = cert.toString('pem') + '\n';
  return {
    certPem: caPem,
    keyPem: await keyPem(keys.privateKey),
    serialNumber,
    issue: (issueOptions = {}) => issue(cert, keys.privateKey, caPem, issueOptions),
  };
}

async function issue(caCert: x509.X509Certificate, caKey: CryptoKey, caPem: string, options: IssueOptions): Promise<IssuedCertificate> {
  const keys = await generateKeys(options.keyType ?? 'ec');
  const client = options.client === true;
  const hosts = options.hosts ?? (client ? [] : ['localhost', '127.0.0.1', '::1']);
  const serialNumber = randomSerial();
  const now = Date.now();
  const validity = (options.validityDays ?? 30) * DAY;
  const usage = keys.privateKey.algorithm.name === 'ECDSA' ? x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usage, true),
    new x509.ExtendedKeyUsageExtension([client ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (hosts.length > 0) extensions.push(san(hosts));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: dn(options.commonName ?? hosts[0] ?? 'gatehouse client'),
    issuer: caCert.subject,
    notBefore: new Date(Math.min(now - 60_000, now + validity - DAY)),
    notAfter: new Date(now + validity),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: signingAlgorithm(caKey),
    extensions,
  });
  const pem = cert.toString('pem') + '\n';
  return { certPem: options.chain ? pem + caPem : pem, keyPem: await keyPem(keys.privateKey), serialNumber };
}

/**
 * A self-signed server certificate (its own issuer): what a client must refuse unless it was
 * told to trust exactly this certificate.
 *
 * @example
 * ```ts
 * const selfSigned = await createSelfSignedCertificate({ hosts: ['127.0.0.1'] });
 * ```
 */
export async function createSelfSignedCertificate(options: { hosts?: string[]; keyType?: DevKeyType; validityDays?: number } = {}): Promise<IssuedCertificate> {
  const keys = await generateKeys(options.keyType ?? 'ec');
  const hosts = options.hosts ?? ['localhost', '127.0.0.1', '::1'];
  const serialNumber = randomSerial();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    name: dn(hosts[0] ?? 'localhost'),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.validityDays ?? 30) * DAY),
    keys,
    signingAlgorithm: signingAlgorithm(keys.privateKey),
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]), san(hosts)],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await keyPem(keys.privateKey), serialNumber };
}

/**
 * Files written by {@link createDevCertificate}.
 *
 * @example
 * ```ts
 * const { caFile, certFile, keyFile }: DevCertificate = await createDevCertificate({ dir: '/tmp/dev' });
 * ```
 */
export interface DevCertificate {
  /** The development CA certificate: what `curl --cacert` needs. */
  readonly caFile: string;
  /** The server certificate chain (leaf + CA). */
  readonly certFile: string;
  /** The server private key (mode 0600). */
  readonly keyFile: string;
  readonly caPem: string;
}

/**
 * Generate a development CA and a server certificate for `hosts` into `dir` (created if
 * missing). Run it at start of a demo; the files are never meant to be committed.
 *
 * @example
 * ```ts
 * const dev = await createDevCertificate({ hosts: ['localhost', '127.0.0.1'], dir: '.gatehouse-dev' });
 * console.log(`curl --cacert ${dev.caFile} https://localhost:8443/`);
 * ```
 */
export async function createDevCertificate(options: { hosts?: string[]; dir: string }): Promise<DevCertificate> {
  const ca = await createCertificateAuthority({ commonName: 'gatehouse development CA (do not trust in production)' });
  const server = await ca.issue({ hosts: options.hosts ?? ['localhost', '127.0.0.1', '::1'], chain: true });
  mkdirSync(options.dir, { recursive: true });
  const caFile = path.resolve(options.dir, 'dev-ca.pem');
  const certFile = path.resolve(options.dir, 'dev-cert.pem');
  const keyFile = path.resolve(options.dir, 'dev-key.pem');
  writeFileSync(caFile, ca.certPem);
  writeFileSync(certFile, server.certPem);
  writeFileSync(keyFile, server.keyPem, { mode: 0o600 });
  return { caFile, certFile, keyFile, caPem: ca.certPem };
}
