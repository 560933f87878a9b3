import { readFileSync } from 'node:fs';
import path from 'node:path';
import { rootCertificates, type ConnectionOptions } from 'node:tls';
import type { ClientTlsConfig } from '../config/types.js';

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
  const read = (file: string) => readFileSync(path.resolve(baseDir, file));
  if (tls.ca) out.ca = [...rootCertificates, read(tls.ca).toString('utf8')];
  if (tls.cert) out.cert = read(tls.cert);
  if (tls.key) out.key = read(tls.key);
  if (tls.servername) out.servername = tls.servername;
  return out;
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
