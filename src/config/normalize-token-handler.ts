import { decodeCookieKey } from '../authn/token-handler/cookie-key.js';
import { checkOrigin, isSecureOrLoopbackUrl } from './normalize.js';
import type { IssuerConfig, RouteConfig, TokenHandlerConfig } from './types.js';

type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Defaults of the `tokenHandler` section (docs/token-handler.md). */
export const TOKEN_HANDLER_DEFAULTS = {
  basePath: '/tokenhandler',
  scope: 'openid',
  cookiePrefix: '__Host-gh',
  /** With `cookieDomain`, `__Host-` is impossible (it forbids Domain). */
  cookiePrefixWithDomain: '__Secure-gh',
  loginStateTtl: 10 * 60_000,
  sessionTtl: 8 * 3600_000,
  csrfHeader: 'x-gatehouse-csrf',
} as const;

/** What the main normalizer lends to this section. */
export interface TokenHandlerNormalizeContext {
  bad(keyPath: (string | number)[], message: string, onKey?: boolean): void;
  ms(value: unknown, fallback: number): number;
  issuers: readonly IssuerConfig[];
  routes: readonly RouteConfig[];
}

/**
 * Apply the defaults of `tokenHandler` and check what a schema cannot: the issuer reference,
 * cookie keys (base64 of 32 bytes), origins, URLs, cookie prefix rules, and that no route hides
 * under the agent's base path.
 *
 * @example
 * ```ts
 * const tokenHandler = normalizeTokenHandler(raw.tokenHandler, { bad, ms, issuers, routes });
 * ```
 */
export function normalizeTokenHandler(th: Raw, ctx: TokenHandlerNormalizeContext): TokenHandlerConfig {
  const { bad, ms } = ctx;
  const at = ['tokenHandler'];
  const basePath: string = (th.basePath ?? TOKEN_HANDLER_DEFAULTS.basePath).replace(/\/+$/, '') || '/';
  const out: TokenHandlerConfig = {
    basePath,
    issuer: th.issuer,
    clientId: th.clientId,
    clientSecret: th.clientSecret,
    redirectUri: th.redirectUri,
    postLogoutRedirectUri: th.postLogoutRedirectUri,
    scope: th.scope ?? TOKEN_HANDLER_DEFAULTS.scope,
    trustedOrigins: [],
    cookieKeys: th.cookieKeys ?? [],
    cookiePrefix: th.cookiePrefix ?? (th.cookieDomain ? TOKEN_HANDLER_DEFAULTS.cookiePrefixWithDomain : TOKEN_HANDLER_DEFAULTS.cookiePrefix),
    cookieDomain: th.cookieDomain,
    loginStateTtl: ms(th.loginStateTtl, TOKEN_HANDLER_DEFAULTS.loginStateTtl),
    sessionTtl: ms(th.sessionTtl, TOKEN_HANDLER_DEFAULTS.sessionTtl),
    extraParams: th.extraParams ?? {},
    csrfHeader: (th.csrfHeader ?? TOKEN_HANDLER_DEFAULTS.csrfHeader).toLowerCase(),
    tokenEndpointAuthMethod: th.tokenEndpointAuthMethod ?? (th.clientSecret ? 'client_secret_basic' : 'none'),
  };

  if (!ctx.issuers.some((i) => i.name === out.issuer)) {
    bad([...at, 'issuer'], `names no issuer (known: ${ctx.issuers.map((i) => i.name).join(', ') || 'none'})`);
  }
  if (basePath === '/') bad([...at, 'basePath'], 'must not be / (the agent needs a path of its own, e.g. /tokenhandler)');
  if (!String(out.scope).split(' ').includes('openid')) bad([...at, 'scope'], 'must include openid (the agent validates an ID token)');
  if (out.tokenEndpointAuthMethod !== 'none' && !out.clientSecret) {
    bad([...at, 'clientSecret'], `is needed for tokenEndpointAuthMethod ${out.tokenEndpointAuthMethod}`);
  }
  for (const key of ['redirectUri', 'postLogoutRedirectUri'] as const) {
    const value = out[key];
    if (value !== undefined && !isSecureOrLoopbackUrl(value)) bad([...at, key], 'must be an https URL (http only on loopback hosts)');
  }

  (th.trustedOrigins ?? []).forEach((origin: string, i: number) => {
    const checked = checkOrigin(origin);
    if (checked.problem !== undefined) bad([...at, 'trustedOrigins', i], checked.problem);
    else out.trustedOrigins.push(checked.origin);
  });

  out.cookieKeys.forEach((key: string, i: number) => {
    const decoded = decodeCookieKey(key);
    if (typeof decoded === 'string') bad([...at, 'cookieKeys', i], decoded);
  });

  if (out.cookieDomain && out.cookiePrefix.startsWith('__Host-')) {
    bad([...at, 'cookiePrefix'], 'cannot start with __Host- when cookieDomain is set (__Host- cookies carry no Domain); use __Secure-…');
  }

  const base = basePath + '/';
  ctx.routes.forEach((route, i) => {
    const p = route.path.endsWith('/') ? route.path : route.path + '/';
    if (p.startsWith(base) || p === base) bad(['routes', i, 'path'], `is under tokenHandler.basePath ${basePath}, whose requests the token handler answers`);
  });
  return out;
}
