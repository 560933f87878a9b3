/**
 * What the OAuth agent and the OAuth proxy share: keys, cookie layout, trusted origins and the
 * CORS answers for them, built once per config.
 */
import type { Logger } from 'pino';
import type { TokenHandlerConfig } from '../../config/types.js';
import { GatehouseError } from '../../errors.js';
import type { RequestContext } from '../../pipeline/context.js';
import { EXPOSED_HEADERS } from '../../respond/cors.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { cookieLayout, createCookieKeyRing, decodeCookieKey, type CookieKeyRing, type CookieLayout } from './cookies.js';
import type { OidcClient } from './oidc-client.js';

/** The access-token cookie's payload: the session. `csrf` is the double-submit token bound to it. */
export interface SessionCookie {
  readonly t: 'at';
  readonly exp: number;
  readonly at: string;
  readonly csrf: string;
  readonly sid: string;
  readonly sub: string;
}

/**
 * The token handler's compiled state.
 *
 * @example
 * ```ts
 * const core = createTokenHandlerCore(config.tokenHandler, client, services);
 * core.corsFor(ctx.headers.origin); // the CORS headers for a trusted origin, else null
 * ```
 */
export interface TokenHandlerCore {
  readonly config: TokenHandlerConfig;
  readonly ring: CookieKeyRing;
  readonly layout: CookieLayout;
  readonly client: OidcClient;
  readonly log: Logger;
  readonly now: () => number;
  readonly requests: ReturnType<Metrics['counter']>;
  /** Headers for an actual (non-preflight) CORS response, or null when the origin is not trusted. */
  corsFor(origin: string | undefined): readonly [string, string][] | null;
}

/** Header names a browser may read from cross-origin answers (RFC 6750 challenge, request id, limits). */
const EXPOSE = EXPOSED_HEADERS.join(', ');

/**
 * Build the shared state; keys must already be valid (normalize checked them).
 *
 * @example
 * ```ts
 * const core = createTokenHandlerCore(config.tokenHandler!, client, { log, now: Date.now, metrics });
 * ```
 */
export function createTokenHandlerCore(
  config: TokenHandlerConfig,
  client: OidcClient,
  services: { log: Logger; now: () => number; metrics: Metrics },
): TokenHandlerCore {
  const keys = config.cookieKeys.map((k) => {
    const key = decodeCookieKey(k);
    if (typeof key === 'string') throw new TypeError(`tokenHandler.cookieKeys: ${key}`);
    return key;
  });
  const byOrigin = new Map<string, readonly [string, string][]>();
  for (const origin of config.trustedOrigins) {
    byOrigin.set(
      origin,
      Object.freeze([
        ['access-control-allow-origin', origin],
        ['access-control-allow-credentials', 'true'],
        ['access-control-expose-headers', EXPOSE],
        ['vary', 'Origin'],
      ] as [string, string][]),
    );
  }
  return {
    config,
    ring: createCookieKeyRing(keys),
    layout: cookieLayout(config.cookiePrefix, config.basePath, config.cookieDomain),
    client,
    log: services.log,
    now: services.now,
    requests: services.metrics.counter(
      'gatehouse_token_handler_requests_total',
      'Token-handler agent requests and cookie-route credential checks, by endpoint and outcome (ok or an error code).',
      ['endpoint', 'outcome'],
    ),
    corsFor(origin) {
      return origin === undefined ? null : (byOrigin.get(origin) ?? null);
    },
  };
}

/**
 * GET and HEAD change nothing; everything else needs the CSRF header.
 *
 * @example
 * ```ts
 * if (!isSafeMethod(ctx.method)) checkCsrf();
 * ```
 */
export function isSafeMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD';
}

/**
 * Whether a request without a trusted `Origin` may still use the session: only a safe method that
 * the browser itself marks same-origin (`Sec-Fetch-Site` cannot be set by page scripts). Browsers
 * send `Origin` on every CORS request and every non-GET/HEAD request, so nothing else qualifies.
 *
 * @example
 * ```ts
 * if (core.corsFor(ctx.headers.origin) === null && !isSameOriginRead(ctx)) return originNotAllowed();
 * ```
 */
export function isSameOriginRead(ctx: RequestContext): boolean {
  return ctx.headers.origin === undefined && isSafeMethod(ctx.method) && ctx.headers['sec-fetch-site'] === 'same-origin';
}

/**
 * 403: the request's Origin is not one of `trustedOrigins`.
 *
 * @example
 * ```ts
 * return originNotAllowed();
 * ```
 */
export function originNotAllowed(): GatehouseError {
  return new GatehouseError('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED', 403, 'the request origin is not allowed to use the session cookie');
}

/**
 * 403: the CSRF header is missing or does not match the session.
 *
 * @example
 * ```ts
 * if (!safeEqual(sent, session.csrf)) return csrfInvalid();
 * ```
 */
export function csrfInvalid(): GatehouseError {
  return new GatehouseError('GH_ERR_COOKIE_CSRF_INVALID', 403, 'the CSRF token is missing or does not match the session');
}

/**
 * 401: a token-handler cookie is tampered with, foreign (other keys), of the wrong kind, or expired.
 *
 * @example
 * ```ts
 * if (session === null) return cookieInvalid('the access-token cookie did not decrypt');
 * ```
 */
export function cookieInvalid(detail?: string): GatehouseError {
  return new GatehouseError('GH_ERR_COOKIE_INVALID', 401, 'the session cookie is not valid; log in again', detail ? { detail } : {});
}

/**
 * 401: there is no session (or the authorization server ended it): the SPA must log in again.
 *
 * @example
 * ```ts
 * if (value === undefined) throw sessionExpired('no refresh-token cookie');
 * ```
 */
export function sessionExpired(detail?: string): GatehouseError {
  return new GatehouseError('GH_ERR_TOKEN_HANDLER_SESSION_EXPIRED', 401, 'there is no valid session; log in again', detail ? { detail } : {});
}
