import { Agent, request, type Dispatcher } from 'undici';
import type { ClientTlsConfig } from '../config/types.js';
import { clientTlsOptions, isOutboundTimeout, readBoundedBody } from '../forward/outbound.js';

/**
 * Why an outbound fetch failed; `reason` goes to the log and to `/readyz` details.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof FetchFailed) log.warn({ reason: err.reason }, 'JWKS fetch failed'); }
 * ```
 */
export class FetchFailed extends Error {
  readonly url: string;
  readonly reason: string;
  constructor(url: string, reason: string, cause?: unknown) {
    super(`GET ${url} failed: ${reason}`, cause === undefined ? undefined : { cause });
    this.name = 'FetchFailed';
    this.url = url;
    this.reason = reason;
  }
}

/** Limits for one GET. */
export interface FetchLimits {
  /** ms for the whole exchange (connect, head, body). */
  timeout: number;
  /** bytes; a longer body is refused while it streams in. */
  maxResponseSize: number;
}

/**
 * Bounded, timed outbound GETs for JSON documents (JWKS, discovery). TLS is always verified;
 * a custom CA, client certificate and servername come from an issuer's `tls` section.
 * Redirects are not followed: a key set must come from the URL that is configured.
 *
 * @example
 * ```ts
 * const fetcher = createFetcher(issuer.tls, config.baseDir);
 * const jwks = await fetcher.getJson('https://id.example.com/jwks', { timeout: 5000, maxResponseSize: 512 * 1024 });
 * await fetcher.close();
 * ```
 */
export interface JsonFetcher {
  getJson(url: string, limits: FetchLimits): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * Build a fetcher; reads CA / client-certificate files once. Throws when a file cannot be read.
 *
 * @example
 * ```ts
 * const fetcher = createFetcher({ ca: 'certs/ca.pem' }, config.baseDir);
 * ```
 */
export function createFetcher(tls: ClientTlsConfig | undefined, baseDir: string): JsonFetcher {
  const agent: Dispatcher = new Agent({
    connect: clientTlsOptions(tls, baseDir),
    keepAliveTimeout: 4_000,
    connections: 4,
  });
  return {
    async getJson(url, limits) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), limits.timeout);
      timer.unref();
      try {
        const response = await request(url, {
          method: 'GET',
          dispatcher: agent,
          headers: { accept: 'application/json, application/jwk-set+json' },
          signal: controller.signal,
          headersTimeout: limits.timeout,
          bodyTimeout: limits.timeout,
        });
        if (response.statusCode !== 200) {
          await response.body.dump().catch(() => undefined);
          throw new FetchFailed(url, `status ${response.statusCode}`);
        }
        const body = await readBoundedBody(response.body, response.headers['content-length'], limits.maxResponseSize);
        if (!Buffer.isBuffer(body)) {
          throw new FetchFailed(
            url,
            body.over === 'declared'
              ? `response of ${body.declared} bytes is over the limit of ${limits.maxResponseSize}`
              : `response is over the limit of ${limits.maxResponseSize} bytes`,
          );
        }
        try {
          return JSON.parse(body.toString('utf8')) as unknown;
        } catch {
          throw new FetchFailed(url, 'response is not JSON');
        }
      } catch (err) {
        if (err instanceof FetchFailed) throw err;
        if (controller.signal.aborted || isOutboundTimeout(err)) throw new FetchFailed(url, `no answer within ${limits.timeout} ms`, err);
        const e = err as NodeJS.ErrnoException;
        throw new FetchFailed(url, e.code ? `${e.code}: ${e.message}` : e.message, err);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await agent.close().catch(() => undefined);
    },
  };
}
