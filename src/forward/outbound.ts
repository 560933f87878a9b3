import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { rootCertificates, type ConnectionOptions } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { ClientTlsConfig, GatehouseConfig } from '../config/types.js';
import type { ConfigIssue } from '../errors.js';
import { configIssue } from '../config/issue.js';

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
  if (tls.ca) out.ca = [...rootCertificates, readPem(tls.ca, baseDir, 'ca').toString('utf8')];
  if (tls.cert) out.cert = readPem(tls.cert, baseDir, 'cert');
  if (tls.key) out.key = readPem(tls.key, baseDir, 'key');
  if (tls.servername) out.servername = tls.servername;
  return out;
}

/** A PEM file of a client `tls` section that cannot be used; `entry` is its key (`ca`, `cert`, `key`). */
export class TlsFileError extends Error {
  constructor(
    readonly entry: 'ca' | 'cert' | 'key',
    message: string,
  ) {
    super(message);
  }
}

function readPem(file: string, baseDir: string, entry: 'ca' | 'cert' | 'key'): Buffer {
  const absolute = path.resolve(baseDir, file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(absolute);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TlsFileError(entry, `the file ${absolute} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`}`);
  }
  if (!bytes.includes('-----BEGIN ')) throw new TlsFileError(entry, `the file ${absolute} is not PEM (no -----BEGIN line)`);
  return bytes;
}

/**
 * The outbound `tls` sections' files (`upstreams[].tls`, `issuers[].tls`) as every client that
 * uses them will read them: one problem per unusable file, naming the key (and its line). Checked
 * before a plan is built, so `validate`, `start` and a reload all refuse such a config the same
 * way, never with a stack trace.
 *
 * @example
 * ```ts
 * const issues = checkClientTls(loadConfigFile('gatehouse.yaml'));
 * ```
 */
export function checkClientTls(config: GatehouseConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const sections: [string, number, ClientTlsConfig | undefined][] = [
    ...config.upstreams.map((u, i): [string, number, ClientTlsConfig | undefined] => ['upstreams', i, u.tls]),
    ...config.issuers.map((u, i): [string, number, ClientTlsConfig | undefined] => ['issuers', i, u.tls]),
  ];
  for (const [list, index, tls] of sections) {
    let certificate: X509Certificate | null = null;
    let key: KeyObject | null = null;
    for (const entry of ['ca', 'cert', 'key'] as const) {
      const file = tls?.[entry];
      if (!file) continue;
      try {
        const bytes = readPem(file, config.baseDir, entry);
        const absolute = path.resolve(config.baseDir, file);
        try {
          if (entry === 'key') key = createPrivateKey(bytes);
          else if (entry === 'cert') certificate = new X509Certificate(bytes);
          else new X509Certificate(bytes);
        } catch (err) {
          const what = entry === 'key' ? 'an unencrypted private key' : 'a certificate';
          throw new TlsFileError(entry, `the file ${absolute} does not hold ${what} (${(err as Error).message.split('\n')[0]})`);
        }
      } catch (err) {
        issues.push(configIssue(config, [list, index, 'tls', entry], (err as Error).message));
      }
    }
    if (certificate !== null && key !== null && !certificate.checkPrivateKey(key)) {
      issues.push(configIssue(config, [list, index, 'tls', 'key'], `does not belong to the certificate in tls.cert (${certificate.subject.replace(/\n/g, ', ')})`));
    }
  }
  return issues;
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
