import type { IssuerConfig } from '../config/types.js';
import { isSecureOrLoopbackUrl } from '../config/normalize.js';
import { FetchFailed, type JsonFetcher } from './fetch.js';

/** The fields of an OpenID Provider / RFC 8414 metadata document gatehouse reads. */
export interface DiscoveredMetadata {
  readonly issuer: string;
  readonly jwks_uri: string | undefined;
  readonly introspection_endpoint: string | undefined;
  /** The whole document as received. */
  readonly document: Readonly<Record<string, unknown>>;
}

/**
 * `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4: a trailing
 * slash of the issuer is removed before the suffix is appended).
 *
 * @example
 * ```ts
 * discoveryUrl('https://id.example.com/realms/main'); // 'https://id.example.com/realms/main/.well-known/openid-configuration'
 * ```
 */
export function discoveryUrl(issuer: string): string {
  return `${issuer.endsWith('/') ? issuer.slice(0, -1) : issuer}/.well-known/openid-configuration`;
}

/**
 * Fetch and check an issuer's discovery document: its `issuer` must equal the configured one
 * exactly (Discovery §4.3, RFC 8414 §3.3), and every endpoint gatehouse uses must be https
 * (http only on loopback hosts). Throws {@link FetchFailed} otherwise.
 *
 * @example
 * ```ts
 * const meta = await fetchDiscovery(issuer, fetcher);
 * const jwks = await fetcher.getJson(meta.jwks_uri!, limits);
 * ```
 */
export async function fetchDiscovery(issuer: IssuerConfig, fetcher: JsonFetcher): Promise<DiscoveredMetadata> {
  const url = discoveryUrl(issuer.issuer);
  const doc = await fetcher.getJson(url, { timeout: issuer.fetchTimeout, maxResponseSize: issuer.maxResponseSize });
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new FetchFailed(url, 'the discovery document is not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.issuer !== issuer.issuer) {
    throw new FetchFailed(url, `the discovery document names issuer ${JSON.stringify(d.issuer)}, not the configured ${JSON.stringify(issuer.issuer)}`);
  }
  const endpoint = (key: string): string | undefined => {
    const value = d[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || !isSecureOrLoopbackUrl(value)) {
      throw new FetchFailed(url, `${key} ${JSON.stringify(value)} is not an https URL (http only on loopback hosts)`);
    }
    return value;
  };
  return {
    issuer: issuer.issuer,
    jwks_uri: endpoint('jwks_uri'),
    introspection_endpoint: endpoint('introspection_endpoint'),
    document: d,
  };
}
