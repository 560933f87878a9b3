/**
 * The OAuth proxy: the `credential` stage of routes with `auth: cookie` / `cookie-only`. It turns
 * the encrypted access-token cookie back into the bearer token that the normal JWT (or phantom
 * token) validation and scope checks then see, after the browser-side checks only a cookie needs:
 * a trusted Origin, and for state-changing methods the CSRF token bound to the session.
 */
import { GatehouseError, InvalidRequest, MissingToken } from '../../errors.js';
import type { RequestContext, Stage } from '../../pipeline/context.js';
import { preflightHeaders } from '../../respond/cors.js';
import { readCookie, safeEqual, type CookiePayload } from './cookies.js';
import { cookieInvalid, csrfInvalid, isSafeMethod, isSameOriginRead, originNotAllowed, type SessionCookie, type TokenHandlerCore } from './core.js';

/**
 * Build the credential stage for one cookie route (called at compile time).
 *
 * - `cookie`: the cookie if sent, else the request goes on to the bearer-header stage.
 * - `cookie-only`: the cookie or a 401; an `Authorization` header is not accepted.
 *
 * @example
 * ```ts
 * const stage = createCookieCredentialStage(core, 'cookie-only');
 * const denial = await stage(ctx); // null → ctx.token is the access token from the cookie
 * ```
 * Synchronous when the cookie value was opened before (every call of a session but its first).
 */
export function createCookieCredentialStage(core: TokenHandlerCore, mode: 'cookie' | 'cookie-only'): Stage {
  const cookieName = core.layout.names.at;
  const csrfHeader = core.config.csrfHeader;
  const ring = core.ring;
  const now = core.now;
  const counted = core.requests;
  const count = (outcome: string) => counted.inc({ endpoint: 'proxy', outcome });
  const noCookie = mode === 'cookie-only' ? new MissingToken('this API accepts only the session cookie of the token handler') : null;

  /** The checks after the cookie is opened: made once here, so the hot path allocates no closure. */
  function withSession(ctx: RequestContext, opened: CookiePayload | null): GatehouseError | null {
    const session = opened as SessionCookie | null;
    if (session === null || typeof session.at !== 'string' || typeof session.csrf !== 'string') {
      count('GH_ERR_COOKIE_INVALID');
      return cookieInvalid('the access-token cookie did not decrypt, or is expired or of another kind');
    }
    if (!isSafeMethod(ctx.method)) {
      const sent = ctx.headers[csrfHeader];
      if (typeof sent !== 'string' || !safeEqual(sent, session.csrf)) {
        count('GH_ERR_COOKIE_CSRF_INVALID');
        return csrfInvalid();
      }
    }
    ctx.token = session.at;
    ctx.tokenSource = 'cookie';
    return null;
  }

  return function tokenHandlerCredential(ctx: RequestContext): GatehouseError | null | Promise<GatehouseError | null> {
    if (ctx.token !== null) return null;
    const cors = core.corsFor(ctx.headers.origin);
    // CORS headers go on every answer to a trusted origin, denials included: the SPA must be
    // able to read a 401 to know it should refresh.
    if (cors !== null) for (let i = 0; i < cors.length; i++) ctx.responseHeaders.push(cors[i] as [string, string]);

    const value = readCookie(ctx.headers.cookie, cookieName);
    if (value === undefined) {
      if (noCookie !== null) {
        count('GH_ERR_AUTH_MISSING_TOKEN');
        return noCookie;
      }
      return null; // `auth: cookie`: a bearer header may still carry the token
    }
    if (cors === null && !isSameOriginRead(ctx)) {
      count('GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED');
      return originNotAllowed();
    }
    if (ctx.headers.authorization !== undefined) {
      count('GH_ERR_AUTH_MULTIPLE_CREDENTIALS');
      return new InvalidRequest('GH_ERR_AUTH_MULTIPLE_CREDENTIALS', 'send either the session cookie or an Authorization header, not both');
    }
    const opened = ring.open(value, 'at', Math.floor(now() / 1000));
    // First sight of this value: decrypt (a closure per decryption, next to the AES work).
    if (opened instanceof Promise) return opened.then((p) => withSession(ctx, p));
    return withSession(ctx, opened);
  };
}

/**
 * The answer to a CORS preflight from a trusted origin: the headers to write, or the denial for
 * an untrusted one. Credentials are allowed, the origin is echoed, never `*`.
 *
 * @example
 * ```ts
 * const answer = preflight(core, ctx, 'GET, POST');
 * ```
 */
export function preflight(core: TokenHandlerCore, ctx: RequestContext, allowMethods: string | null): { headers: [string, string][] } | GatehouseError {
  const origin = ctx.headers.origin;
  if (origin === undefined || core.corsFor(origin) === null) return originNotAllowed();
  return { headers: preflightHeaders(ctx, origin, { credentials: true, methods: allowMethods, allowHeaders: null, maxAge: '600' }) };
}
