import { rootCertificates, type ConnectionOptions } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { ClientTlsConfig, GatehouseConfig } from '../config/types.js';
import type { ConfigIssue } from '../errors.js';
import { configIssue } from '../config/issue.js';
import { certificateIn, checkCertificatePair, privateKeyIn, readTlsFile } from '../server/pem.js';

/**
 * TLS options for an outbound client (upstream pool, JWKS / discovery fetcher, introspection,
 * token handler), built from a `tls` config section. Reads the PEM files (paths relative to the
 * config file) once; throws when one cannot be read. Certificates and host names are always
 * verified, and `ca` is trusted in addition to the system roots (schema: clientTls.ca; Node's
 * `ca` alone would replace them).
 *
 * @example
 * ```ts
 * const agent = new Agent({ connect: clientTlsOptions(issuer.tls, config.baseDir) });
 * ```
 */
export function clientTlsOptions(tls: ClientTlsConfig | undefined, baseDir: string): ConnectionOptions {
  const out: ConnectionOptions = { rejectUnauthorized: true, minVersion: tls?.minVersion ?? 'TLSv1.2' };
  if (!tls) return out;
  if (tls.ca) out.ca = [...rootCertificates, readTlsFile(tls.ca, baseDir, 'CA').toString('utf8')];
  if (tls.cert) out.cert = readTlsFile(tls.cert, baseDir, 'certificate');
  if (tls.key) out.key = readTlsFile(tls.key, baseDir, 'key');
  if (tls.servername) out.servername = tls.servername;
  return out;
}

/**
 * The outbound `tls` sections' files (`upstreams[].tls`, `issuers[].tls`) as the clients that
 * use them will read them, and what they hold — `ca` a certificate, `cert` and `key` a pair, the
 * certificate valid now: one problem per section entry, naming the key (and its line). Checked
 * before a plan is built, so `validate`, `start` and a reload all refuse such a config the same
 * way, with the listeners' words (src/server/pem.ts), never a stack trace.
 *
 * @example
 * ```ts
 * const issues = checkClientTls(loadConfigFile('gatehouse.yaml'));
 * ```
 */
export function checkClientTls(config: GatehouseConfig): ConfigIssue[] {
  return readClientTls(config).issues;
}

/** A client certificate an outbound client presents (`upstreams[].tls.cert`, `issuers[].tls.cert`), as read at load. */
export interface ClientCertificate {
  /** `upstream:orders`, `issuer:main`. */
  readonly client: string;
  /** The file as configured. */
  readonly file: string;
  /** ms since epoch. */
  readonly notAfter: number;
  readonly subject: string;
  readonly serialNumber: string;
}

/**
 * {@link checkClientTls}'s reading, with the client certificates it found (for their expiry:
 * `gatehouse_tls_client_certificate_not_after_seconds`, and a warning when one is close).
 */
export function readClientTls(config: GatehouseConfig): { issues: ConfigIssue[]; certificates: ClientCertificate[] } {
  const issues: ConfigIssue[] = [];
  const certificates: ClientCertificate[] = [];
  /** What `read` returns, or null with its problem noted at `at`. */
  const attempt = <T>(at: (string | number)[], read: () => T): T | null => {
    try {
      return read();
    } catch (err) {
      issues.push(configIssue(config, at, (err as Error).message));
      return null;
    }
  };
  const sections: [string, number, ClientTlsConfig | undefined, string][] = [
    ...config.upstreams.map((u, i): [string, number, ClientTlsConfig | undefined, string] => ['upstreams', i, u.tls, `upstream:${u.name}`]),
    ...config.issuers.map((u, i): [string, number, ClientTlsConfig | undefined, string] => ['issuers', i, u.tls, `issuer:${u.name}`]),
  ];
  const baseDir = config.baseDir;
  for (const [list, index, tls, client] of sections) {
    if (!tls) continue;
    const at = [list, index, 'tls'];
    const { ca, cert, key } = tls;
    if (ca) attempt([...at, 'ca'], () => certificateIn(readTlsFile(ca, baseDir, 'CA'), ca, 'CA'));
    const x509 = cert ? attempt([...at, 'cert'], () => certificateIn(readTlsFile(cert, baseDir, 'certificate'), cert)) : null;
    const privateKey = key ? attempt([...at, 'key'], () => privateKeyIn(readTlsFile(key, baseDir, 'key'), key)) : null;
    if (x509 !== null && privateKey !== null) attempt([...at, 'key'], () => checkCertificatePair(x509, privateKey, cert!, key!, Date.now()));
    if (x509 !== null) certificates.push({ client, file: cert!, notAfter: Date.parse(x509.validTo), subject: x509.subject.replace(/\n/g, ', '), serialNumber: x509.serialNumber });
  }
  return { issues, certificates };
}

/**
 * True for undici's header/body timeouts: for a caller with its own deadline they mean the same
 * thing, no answer in time.
 *
 * @example
 * ```ts
 * if (controller.signal.aborted || isOutboundTimeout(err)) throw new FetchFailed(url, `no answer within ${ms} ms`, err);
 * ```
 */
export function isOutboundTimeout(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

/** Why {@link readBoundedBody} gave up: the declared length, or the bytes that arrived, is over the limit. */
export type OverLimit = { readonly over: 'declared'; readonly declared: number } | { readonly over: 'streamed' };

/**
 * Read an outbound response body (JWKS, discovery, introspection, token endpoint) of at most
 * `limit` bytes: the bytes, or why not. A body over the limit is never buffered past it: a
 * declared length over the limit is refused before reading, and a streamed body is cut (destroyed)
 * as soon as it grows over.
 *
 * @example
 * ```ts
 * const body = await readBoundedBody(response.body, response.headers['content-length'], 64 * 1024);
 * if (!Buffer.isBuffer(body)) throw new Error(body.over === 'declared' ? `${body.declared} bytes` : 'too large');
 * ```
 */
export async function readBoundedBody(body: Dispatcher.ResponseData['body'], contentLength: string | string[] | undefined, limit: number): Promise<Buffer | OverLimit> {
  const declared = Number(contentLength);
  if (Number.isFinite(declared) && declared > limit) {
    body.destroy();
    return { over: 'declared', declared };
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.destroy();
      return { over: 'streamed' };
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}
