/**
 * CORS (the `cors` section) for bearer-token and public routes: browser pages on the listed
 * origins may call them. gatehouse answers their preflights itself — a preflight carries no
 * token, so behind default deny it would be a 401 — and marks every answer to such a page
 * (forwarded, or a refusal: a page must be able to read a 401's `WWW-Authenticate` or a 429's
 * `Retry-After`) with `Access-Control-Allow-Origin`. No credentials: the page sends the bearer
 * token itself, so `Access-Control-Allow-Credentials` is never set. Cookie routes keep the token
 * handler's own CORS (`tokenHandler.trustedOrigins`, with credentials).
 */
import type { ServerResponse } from 'node:http';
import type { CorsConfig, RouteConfig } from '../config/types.js';
import { RequestRejected } from '../errors.js';
import type { RequestContext, Stage } from '../pipeline/context.js';
import type { AreaFactory } from '../pipeline/runtime.js';
import { createHostRouteTable } from '../route/hosts.js';
import { requestHost } from '../route/host.js';
import { sendProblem } from './problem.js';

/** What a page may always read: the challenge, the request id, and the limits' answers (both kinds of CORS). */
export const EXPOSED_HEADERS: readonly string[] = ['www-authenticate', 'x-request-id', 'retry-after', 'ratelimit', 'ratelimit-policy', 'dpop-nonce'];
/** A request-header list a preflight may echo: RFC 9110 tokens separated by commas. */
const HEADER_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*,[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/;
/** A method a preflight may echo (methods are case-sensitive; every one gatehouse routes is upper case). */
const METHOD = /^[A-Z]+$/;
const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';

/** How an allowed origin's preflight is answered (the `cors` section, or the token handler's cookie routes). */
export interface PreflightPolicy {
  /** `Access-Control-Allow-Credentials: true` (cookies; the token handler only). */
  readonly credentials: boolean;
  /** The methods allowed; null: the method asked for (when it is a method at all, else GET). */
  readonly methods: string | null;
  /** The request headers allowed; null: those asked for (when they form a header list). */
  readonly allowHeaders: string | null;
  /** `Access-Control-Max-Age`, in seconds. */
  readonly maxAge: string;
}

/**
 * The headers of a preflight answer to an allowed origin: `allowOrigin` is the origin itself,
 * or `*` (never with credentials). One writer for gatehouse's two kinds of CORS.
 *
 * @example
 * ```ts
 * preflightHeaders(ctx, 'https://app.example.com', { credentials: false, methods: null, allowHeaders: null, maxAge: '600' });
 * ```
 */
export function preflightHeaders(ctx: RequestContext, allowOrigin: string, policy: PreflightPolicy): [string, string][] {
  const asked = ctx.headers['access-control-request-method'];
  const headers: [string, string][] = [['access-control-allow-origin', allowOrigin]];
  if (policy.credentials) headers.push(['access-control-allow-credentials', 'true']);
  headers.push(['access-control-allow-methods', policy.methods ?? (typeof asked === 'string' && METHOD.test(asked) ? asked : 'GET')]);
  const requested = ctx.headers['access-control-request-headers'];
  const allow = policy.allowHeaders ?? (typeof requested === 'string' && requested !== '' && HEADER_LIST.test(requested) ? requested : null);
  if (allow !== null) headers.push(['access-control-allow-headers', allow]);
  headers.push(['access-control-max-age', policy.maxAge], ['vary', PREFLIGHT_VARY]);
  return headers;
}

/**
 * Write a preflight's `204`: the answer's own headers (`ctx.responseHeaders`: HSTS, …) first,
 * then the preflight's.
 */
export function sendPreflight(res: ServerResponse, ctx: RequestContext, headers: readonly [string, string][]): void {
  const out: Record<string, string | number> = { 'content-length': 0, 'x-request-id': ctx.id };
  for (const [k, v] of ctx.responseHeaders) out[k] = v;
  for (const [k, v] of headers) out[k] = v;
  res.writeHead(204, out);
  res.end();
}
const ORIGIN_ONLY: readonly [string, string][] = Object.freeze([['vary', 'Origin']] as [string, string][]);

/** The routes this area speaks for: cookie routes are the token handler's. */
function ours(route: RouteConfig): boolean {
  return route.public || route.auth === 'bearer';
}

export const createCorsArea: AreaFactory = (config) => {
  const cors = config.cors;
  if (!cors) return { name: 'cors' };
  const headersFor = actualHeaders(cors);
  const table = createHostRouteTable<RouteConfig>(config.routes.map((r) => ({ path: r.path, methods: r.methods, hosts: r.hosts, route: r })));
  const policy: PreflightPolicy = {
    credentials: false,
    methods: null,
    allowHeaders: cors.allowHeaders === null ? null : cors.allowHeaders.join(', '),
    maxAge: String(Math.floor(cors.maxAge / 1000)),
  };
  const realm = config.gateway.realm;

  // Every answer of a CORS route: the page's origin allowed, or only `Vary: Origin` (a cache
  // must not hand one origin's answer to another). First among the pre-auth stages, so a
  // pre-auth 429 carries it too.
  const mark: Stage = (ctx) => {
    const origin = ctx.headers.origin;
    if (origin === undefined) return null;
    const headers = headersFor(origin) ?? ORIGIN_ONLY;
    for (let i = 0; i < headers.length; i++) ctx.responseHeaders.push(headers[i]!);
    return null;
  };

  return {
    name: 'cors',
    stagesFor(route) {
      return ours(route) ? { preAuth: mark } : {};
    },
    // A 404 or 405 a listed origin's page can read (a typo in a path shows as what it is, not
    // as a CORS failure); a preflight to such a path is still refused (not a 2xx).
    unmatched: mark,
    handle(ctx, _req, res) {
      // Runs for every request before routing: only a preflight is ours.
      if (ctx.method !== 'OPTIONS') return false;
      const method = ctx.headers['access-control-request-method'];
      const origin = ctx.headers.origin;
      if (typeof method !== 'string' || origin === undefined) return false;
      // The route the real request will take decides (the most specific path, that method);
      // anything else goes on as a plain OPTIONS request (404, 405, …).
      const match = table.match(requestHost(ctx.headers), method, ctx.path);
      if (match.kind !== 'route' || !ours(match.route) || !METHOD.test(method)) return false;
      const allowed = headersFor(origin);
      if (allowed === null) {
        ctx.decision = 'denied';
        ctx.log.info({ req_id: ctx.id, route: match.route.name, origin: origin.slice(0, 200), granted: false, reason: 'GH_ERR_CORS_ORIGIN_NOT_ALLOWED' }, 'preflight from an origin not in cors.origins');
        const error = new RequestRejected('GH_ERR_CORS_ORIGIN_NOT_ALLOWED', 403, 'this origin may not call this API from a browser', { detail: `origin ${origin.slice(0, 200)}` });
        sendProblem(res, error, ctx.id, realm, [...ctx.responseHeaders, ['vary', PREFLIGHT_VARY]], ctx.method);
        return true;
      }
      ctx.decision = 'granted';
      sendPreflight(res, ctx, preflightHeaders(ctx, allowed[0]![1], policy));
      return true;
    },
  };
};

/** The headers of an actual answer to `origin`, or null when it may not call (built once per origin). */
function actualHeaders(cors: CorsConfig): (origin: string) => readonly [string, string][] | null {
  const expose = [...new Set([...EXPOSED_HEADERS, ...cors.exposeHeaders])].join(', ');
  const build = (value: string): readonly [string, string][] =>
    Object.freeze([
      ['access-control-allow-origin', value],
      ['access-control-expose-headers', expose],
      ['vary', 'Origin'],
    ] as [string, string][]);
  if (cors.anyOrigin) {
    const any = build('*');
    return () => any;
  }
  const byOrigin = new Map<string, readonly [string, string][]>();
  for (const origin of cors.origins) byOrigin.set(origin, build(origin));
  // Browsers send the origin serialized as it is listed (lowercase scheme and host, no default port).
  return (origin) => byOrigin.get(origin) ?? null;
}
