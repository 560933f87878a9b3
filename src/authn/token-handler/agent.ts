/**
 * The OAuth agent: JSON endpoints under `tokenHandler.basePath` that run the authorization-code
 * flow with PKCE for a browser app and keep every token in encrypted HttpOnly cookies.
 *
 * ```
 * POST {base}/login/start   → { authorizationRequestUrl }           sets the login-state cookie (__Host-)
 * POST {base}/login/end     { pageUrl } → { isLoggedIn, handled, csrf? }  sets the session cookies
 * GET  {base}/userinfo      → the ID token's claims (who is logged in); also as userInfo, claims
 * POST {base}/refresh       → 204, rotated cookies                  (CSRF header)
 * POST {base}/logout        → { url } (RP-initiated logout)          (CSRF header when logged in)
 * ```
 *
 * The gateway stays stateless: the per-login state (state, nonce, PKCE verifier) lives in a
 * short-lived encrypted cookie, the session in the others.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JWTPayload } from 'jose';
import { GatehouseError, RequestRejected, internalError } from '../../errors.js';
import type { RequestContext } from '../../pipeline/context.js';
import { sendContinue } from '../../respond/continue.js';
import { OWN_ANSWER_HEADERS, problemBody } from '../../respond/problem.js';
import { randomToken, readCookie, readCookies, safeEqual, setCookie, type CookieKind } from './cookies.js';
import { cookieInvalid, csrfInvalid, isSameOriginRead, originNotAllowed, sessionExpired, type SessionCookie, type TokenHandlerCore } from './core.js';
import { AuthorizationServerError, AuthorizationServerUnavailable, IdTokenInvalid, pkceChallenge } from './oidc-client.js';
import { preflight } from './proxy.js';

/** The largest JSON body an agent endpoint reads. */
const MAX_BODY = 16 * 1024;

/** Authorization-request parameters a SPA may add per login (step-up, hints). */
const SPA_PARAMS = new Set(['prompt', 'login_hint', 'ui_locales', 'acr_values', 'max_age']);
const JSON_TYPE = /^application\/json\s*(;|$)/i;
const SECONDS = /^[0-9]{1,9}$/;

interface LoginCookie {
  readonly t: 'login';
  readonly exp: number;
  readonly state: string;
  readonly nonce: string;
  readonly verifier: string;
  /** The login asked for max_age: the ID token's auth_time is checked against it. */
  readonly maxAge?: number;
}

interface RefreshCookie {
  readonly t: 'rt';
  readonly exp: number;
  readonly rt: string;
  readonly sid: string;
}

interface IdCookie {
  readonly t: 'id';
  readonly exp: number;
  readonly idt: string;
  readonly sid: string;
}

/** One agent answer: JSON (or nothing), cookies to set. */
interface Answer {
  status: number;
  body?: unknown;
  cookies?: string[];
}

type Endpoint = (core: TokenHandlerCore, ctx: RequestContext, req: IncomingMessage, origin: string) => Promise<Answer>;

interface Route {
  readonly method: 'GET' | 'POST';
  readonly name: string;
  readonly run: Endpoint;
}

/**
 * Build the agent's request handler for the area's `handle` hook: answers (and returns true for)
 * every request under `basePath`, and nothing else.
 *
 * @example
 * ```ts
 * const agent = createOAuthAgent(core);
 * if (await agent(ctx, req, res)) return; // answered by the token handler
 * ```
 */
export function createOAuthAgent(core: TokenHandlerCore): (ctx: RequestContext, req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const base = core.config.basePath;
  const prefix = base + '/';
  const routes = new Map<string, Route>([
    [`${base}/login/start`, { method: 'POST', name: 'login_start', run: loginStart }],
    [`${base}/login/end`, { method: 'POST', name: 'login_end', run: loginEnd }],
    [`${base}/userinfo`, { method: 'GET', name: 'userinfo', run: userinfo }],
    // The names other token-handler implementations use for the same answer.
    [`${base}/userInfo`, { method: 'GET', name: 'userinfo', run: userinfo }],
    [`${base}/claims`, { method: 'GET', name: 'userinfo', run: userinfo }],
    [`${base}/refresh`, { method: 'POST', name: 'refresh', run: refresh }],
    [`${base}/logout`, { method: 'POST', name: 'logout', run: logout }],
  ]);

  return async function oauthAgent(ctx, req, res) {
    if (ctx.path !== base && !ctx.path.startsWith(prefix)) return false;
    const route = routes.get(ctx.path);
    const origin = ctx.headers.origin;
    const cors = core.corsFor(origin);
    let endpoint = route?.name ?? 'unknown';
    try {
      if (ctx.method === 'OPTIONS' && ctx.headers['access-control-request-method'] !== undefined) {
        endpoint = 'preflight';
        const answer = preflight(core, ctx, 'GET, POST');
        if (answer instanceof GatehouseError) throw answer;
        write(res, 204, ownHeaders(ctx, answer.headers), undefined);
        core.requests.inc({ endpoint, outcome: 'ok' });
        return true;
      }
      if (!route) throw new RequestRejected('GH_ERR_ROUTE_NOT_FOUND', 404, 'no token-handler endpoint at this path');
      if (ctx.method !== route.method && !(route.method === 'GET' && ctx.method === 'HEAD')) {
        throw new RequestRejected('GH_ERR_ROUTE_METHOD_NOT_ALLOWED', 405, 'method not allowed', { headers: { allow: route.method === 'GET' ? 'GET, HEAD' : route.method } });
      }
      // Every agent endpoint is for the SPA's origins only (CSRF and login-CSRF defence).
      if (cors === null && !isSameOriginRead(ctx)) throw originNotAllowed();
      // The endpoint and the origin are accepted: a client waiting on `Expect: 100-continue` may send its body.
      sendContinue(req, res);
      const answer = await route.run(core, ctx, req, origin ?? '');
      const headers = ownHeaders(ctx, cors);
      let body: string | undefined;
      if (answer.body !== undefined) {
        body = JSON.stringify(answer.body);
        headers.push(['content-type', 'application/json']);
      }
      write(res, answer.status, headers, body, answer.cookies, ctx.method === 'HEAD');
      core.requests.inc({ endpoint, outcome: 'ok' });
      ctx.decision = `token-handler ${endpoint}`;
      return true;
    } catch (err) {
      const error = toGatehouseError(err);
      core.requests.inc({ endpoint, outcome: error.code });
      const fields = { req_id: ctx.id, endpoint, granted: false, reason: error.code, detail: error.detail };
      if (error.code === 'GH_ERR_INTERNAL') ctx.log.error({ ...fields, err: error.cause ?? error }, 'token handler bug');
      else if (error.status >= 500) ctx.log.warn(fields, 'token handler: authorization server failed');
      else ctx.log.info(fields, 'token handler denied');
      ctx.decision = `token-handler ${endpoint}: ${error.code}`;
      const headers = ownHeaders(ctx, cors);
      if (error.headers) for (const k in error.headers) headers.push([k, error.headers[k]!]);
      const problem = JSON.parse(problemBody(error, ctx.id)) as Record<string, unknown>;
      if (error instanceof AgentError && error.oauth) {
        problem.error = error.oauth.error;
        if (error.oauth.errorDescription) problem.error_description = error.oauth.errorDescription;
      }
      headers.push(['content-type', 'application/problem+json']);
      write(res, error.status, headers, JSON.stringify(problem), error instanceof AgentError ? error.cookies : undefined, ctx.method === 'HEAD');
      return true;
    }
  };
}

/** The head of every agent answer: the listener's and stages' headers, `cors` (CORS), {@link OWN_ANSWER_HEADERS}, the request id. */
function ownHeaders(ctx: RequestContext, cors: readonly (readonly [string, string])[] | null): [string, string][] {
  const headers: [string, string][] = [...ctx.responseHeaders];
  if (cors !== null) for (const [k, v] of cors) headers.push([k, v]);
  for (const [k, v] of OWN_ANSWER_HEADERS) headers.push([k, v]);
  headers.push(['x-request-id', ctx.id]);
  return headers;
}

/** A denial that also carries the authorization server's OAuth error and cookies to clear. */
class AgentError extends GatehouseError {
  oauth: { error: string; errorDescription: string | undefined } | undefined;
  cookies: string[] | undefined;
  constructor(base: GatehouseError, extra: { oauth?: AgentError['oauth']; cookies?: string[] }) {
    super(base.code, base.status, base.description, { detail: base.detail, cause: base.cause, headers: base.headers });
    this.oauth = extra.oauth;
    this.cookies = extra.cookies;
  }
}

function toGatehouseError(err: unknown): GatehouseError {
  if (err instanceof GatehouseError) return err;
  if (err instanceof AuthorizationServerUnavailable) {
    return new GatehouseError('GH_ERR_TOKEN_HANDLER_UPSTREAM', 502, 'the authorization server could not be reached', { detail: err.message, cause: err });
  }
  if (err instanceof IdTokenInvalid) {
    return new GatehouseError('GH_ERR_TOKEN_HANDLER_ID_TOKEN_INVALID', 401, 'the ID token from the authorization server is not valid', { detail: err.message, cause: err });
  }
  if (err instanceof AuthorizationServerError) {
    return new AgentError(
      new GatehouseError('GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED', 400, 'the authorization server refused the request', { detail: err.message }),
      { oauth: { error: err.error, errorDescription: err.errorDescription } },
    );
  }
  return internalError(err);
}

function write(
  res: ServerResponse,
  status: number,
  headers: [string, string][],
  body: string | undefined,
  cookies?: string[],
  head = false,
): void {
  const out: Record<string, string | string[] | number> = {};
  for (const [k, v] of headers) {
    if (k === 'vary' && out.vary) out.vary = `${String(out.vary)}, ${v}`;
    else out[k] = v;
  }
  if (cookies && cookies.length > 0) out['set-cookie'] = cookies;
  out['content-length'] = body === undefined ? 0 : Buffer.byteLength(body);
  res.writeHead(status, out);
  res.end(head ? undefined : body);
}

async function readJson(req: IncomingMessage, required: boolean): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'];
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > MAX_BODY) throw new RequestRejected('GH_ERR_REQUEST_BODY_TOO_LARGE', 413, `the body is over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (total === 0) {
    if (required) throw badRequest('a JSON body is required');
    return {};
  }
  if (typeof type !== 'string' || !JSON_TYPE.test(type)) throw badRequest('the body must be application/json');
  try {
    const value = JSON.parse(Buffer.concat(chunks, total).toString('utf8')) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw badRequest('the body is not a JSON object');
}

function badRequest(description: string, detail?: string): GatehouseError {
  return new GatehouseError('GH_ERR_TOKEN_HANDLER_REQUEST', 400, description, { detail });
}

function seconds(core: TokenHandlerCore): number {
  return Math.floor(core.now() / 1000);
}

function clearAll(core: TokenHandlerCore): string[] {
  return (['at', 'rt', 'id', 'login'] as CookieKind[]).map((kind) => setCookie(core.layout, kind, null, 0));
}

async function readSession(core: TokenHandlerCore, ctx: RequestContext): Promise<SessionCookie | null | undefined> {
  const value = readCookie(ctx.headers.cookie, core.layout.names.at);
  if (value === undefined) return undefined;
  return (await core.ring.open(value, 'at', seconds(core))) as SessionCookie | null;
}

function checkCsrf(core: TokenHandlerCore, ctx: RequestContext, session: SessionCookie): void {
  const sent = ctx.headers[core.config.csrfHeader];
  if (typeof sent !== 'string' || !safeEqual(sent, session.csrf)) throw csrfInvalid();
}

const loginStart: Endpoint = async (core, ctx, req) => {
  const body = await readJson(req, false);
  const extra: Record<string, string> = {};
  if (body.extraParams !== undefined) {
    if (!body.extraParams || typeof body.extraParams !== 'object' || Array.isArray(body.extraParams)) throw badRequest('extraParams must be an object');
    for (const [k, v] of Object.entries(body.extraParams as Record<string, unknown>)) {
      if (!SPA_PARAMS.has(k) || typeof v !== 'string') throw badRequest(`extraParams may only set ${[...SPA_PARAMS].join(', ')} (strings)`);
      if (k === 'max_age' && !SECONDS.test(v)) throw badRequest('extraParams.max_age must be a number of seconds');
      extra[k] = v;
    }
  }
  const state = randomToken();
  const nonce = randomToken();
  const verifier = randomToken(); // 43 characters of base64url: RFC 7636 §4.1
  const authorizationRequestUrl = await core.client.authorizationUrl({ state, nonce, codeChallenge: pkceChallenge(verifier), extra });
  const ttl = Math.ceil(core.config.loginStateTtl / 1000);
  const login: LoginCookie = { t: 'login', exp: seconds(core) + ttl, state, nonce, verifier, ...(extra.max_age ? { maxAge: Number(extra.max_age) } : {}) };
  void ctx;
  return {
    status: 200,
    body: { authorizationRequestUrl },
    cookies: [setCookie(core.layout, 'login', await core.ring.seal(login), ttl)],
  };
};

const loginEnd: Endpoint = async (core, ctx, req) => {
  const body = await readJson(req, true);
  if (typeof body.pageUrl !== 'string' || body.pageUrl.length > 8192) throw badRequest('pageUrl must be the URL of the page (a string)');
  let page: URL;
  try {
    page = new URL(body.pageUrl);
  } catch {
    throw badRequest('pageUrl is not a URL');
  }
  const q = page.searchParams;
  const state = q.get('state');
  const code = q.get('code');
  const error = q.get('error');

  if (state === null || (code === null && error === null)) {
    // A page load, not an authorization response: say whether a session exists.
    const session = await readSession(core, ctx);
    if (session) return { status: 200, body: { isLoggedIn: true, handled: false, csrf: session.csrf } };
    return { status: 200, body: { isLoggedIn: false, handled: false }, cookies: session === null ? clearAll(core) : undefined };
  }

  const redirect = new URL(core.config.redirectUri);
  if (page.origin !== redirect.origin || page.pathname !== redirect.pathname) {
    throw badRequest('pageUrl carries an authorization response but is not the configured redirectUri');
  }
  const clearLogin = setCookie(core.layout, 'login', null, 0);
  // The login cookie is __Host- (host-only), so no sibling host can plant one; a second one
  // can still come from a browser that ignores cookie prefixes: refuse rather than pick one.
  const loginValues = readCookies(ctx.headers.cookie, core.layout.names.login);
  if (loginValues.length > 1) {
    throw new AgentError(
      badRequest('more than one login cookie was sent (one may have been planted by another host); clear the cookies and log in again', `${loginValues.length} login cookies`),
      { cookies: [clearLogin] },
    );
  }
  const loginValue = loginValues[0];
  const login = loginValue === undefined ? null : ((await core.ring.open(loginValue, 'login', seconds(core))) as LoginCookie | null);
  if (!login || typeof login.state !== 'string' || !safeEqual(state, login.state)) {
    throw new GatehouseError('GH_ERR_TOKEN_HANDLER_STATE_INVALID', 400, 'the authorization response does not belong to a login started here', {
      detail: login ? 'state does not match the login cookie' : loginValue === undefined ? 'no login cookie' : 'login cookie invalid or expired',
    });
  }
  // RFC 9207: the response names its issuer; a mismatch means a mix-up.
  const meta = await core.client.metadata();
  const iss = q.get('iss');
  if ((iss !== null && iss !== meta.issuer) || (iss === null && meta.authorization_response_iss_parameter_supported === true)) {
    throw new AgentError(
      new GatehouseError('GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED', 400, 'the authorization response is not from the configured issuer', { detail: `iss=${String(iss)}` }),
      { cookies: [clearLogin] },
    );
  }
  if (error !== null) {
    const description = q.get('error_description') ?? undefined;
    throw new AgentError(
      new GatehouseError('GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED', 400, 'the authorization server refused the login', { detail: `${error}: ${description ?? ''}` }),
      { oauth: { error: error.slice(0, 200), errorDescription: description?.slice(0, 500) }, cookies: [clearLogin] },
    );
  }
  try {
    const tokens = await core.client.exchangeCode(code!, login.verifier);
    if (!tokens.idToken) throw new IdTokenInvalid('the token response has no id_token (is openid in scope?)');
    const claims = await core.client.verifyIdToken(tokens.idToken, { nonce: login.nonce, maxAge: typeof login.maxAge === 'number' ? login.maxAge : undefined });
    const csrf = randomToken();
    const sid = randomToken();
    const ttl = Math.ceil(core.config.sessionTtl / 1000);
    const exp = seconds(core) + ttl;
    const cookies = await sessionCookies(core, { exp, sid, csrf, sub: String(claims.sub), at: tokens.accessToken, rt: tokens.refreshToken, idt: tokens.idToken }, ttl);
    cookies.push(clearLogin);
    return { status: 200, body: { isLoggedIn: true, handled: true, csrf }, cookies };
  } catch (err) {
    const error = toGatehouseError(err);
    throw new AgentError(error, { oauth: error instanceof AgentError ? error.oauth : undefined, cookies: [clearLogin] });
  }
};

async function sessionCookies(
  core: TokenHandlerCore,
  s: { exp: number; sid: string; csrf: string; sub: string; at: string; rt: string | undefined; idt: string | undefined },
  maxAge: number,
): Promise<string[]> {
  const at: SessionCookie = { t: 'at', exp: s.exp, at: s.at, csrf: s.csrf, sid: s.sid, sub: s.sub };
  const out = [setCookie(core.layout, 'at', await sealChecked(core, at), maxAge)];
  if (s.rt !== undefined) {
    const rt: RefreshCookie = { t: 'rt', exp: s.exp, rt: s.rt, sid: s.sid };
    out.push(setCookie(core.layout, 'rt', await sealChecked(core, rt), maxAge));
  }
  if (s.idt !== undefined) {
    const id: IdCookie = { t: 'id', exp: s.exp, idt: s.idt, sid: s.sid };
    out.push(setCookie(core.layout, 'id', await sealChecked(core, id), maxAge));
  }
  return out;
}

async function sealChecked(core: TokenHandlerCore, payload: { t: CookieKind; exp: number }): Promise<string> {
  const value = await core.ring.seal(payload);
  // Browsers drop a cookie over ~4 KiB without telling anyone: fail loudly instead.
  if (value.length > 4000) {
    throw internalError(new Error(`the ${payload.t} cookie would be ${value.length} bytes; browsers keep at most ~4 KiB (use shorter tokens, e.g. phantom tokens)`));
  }
  return value;
}

/** The ID token's claims: who is logged in (the access token is for the APIs, not for userinfo). */
const userinfo: Endpoint = async (core, ctx) => {
  const session = await requireSession(core, ctx);
  return { status: 200, body: await idClaims(core, ctx, session) };
};

async function idClaims(core: TokenHandlerCore, ctx: RequestContext, session: SessionCookie): Promise<JWTPayload> {
  const value = readCookie(ctx.headers.cookie, core.layout.names.id);
  if (value === undefined) throw sessionExpired('no ID-token cookie');
  const id = (await core.ring.open(value, 'id', seconds(core))) as IdCookie | null;
  if (!id || id.sid !== session.sid) throw cookieInvalid('the ID-token cookie is invalid or from another session');
  // It was validated when it was stored; only decode it here.
  const payload = JSON.parse(Buffer.from(id.idt.split('.')[1] ?? '', 'base64url').toString('utf8')) as JWTPayload;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(payload)) if (k !== 'nonce' && k !== 'at_hash' && k !== 'c_hash' && k !== 'sid') out[k] = v;
  return out;
}

async function requireSession(core: TokenHandlerCore, ctx: RequestContext): Promise<SessionCookie> {
  const session = await readSession(core, ctx);
  if (session === undefined) throw sessionExpired('no access-token cookie');
  if (session === null) throw cookieInvalid('the access-token cookie did not decrypt, or is expired or of another kind');
  return session;
}

const refresh: Endpoint = async (core, ctx) => {
  const session = await requireSession(core, ctx);
  checkCsrf(core, ctx, session);
  const value = readCookie(ctx.headers.cookie, core.layout.names.rt);
  if (value === undefined) throw sessionExpired('no refresh-token cookie');
  const rt = (await core.ring.open(value, 'rt', seconds(core))) as RefreshCookie | null;
  if (!rt || rt.sid !== session.sid) throw cookieInvalid('the refresh-token cookie is invalid or from another session');
  let tokens;
  try {
    tokens = await core.client.refresh(rt.rt);
  } catch (err) {
    if (err instanceof AuthorizationServerError && err.error === 'invalid_grant') {
      throw new AgentError(sessionExpired(`refresh refused: ${err.message}`), { cookies: clearAll(core) });
    }
    throw err;
  }
  if (tokens.idToken) await core.client.verifyIdToken(tokens.idToken, { subject: session.sub });
  const maxAge = Math.max(0, session.exp - seconds(core));
  const cookies = await sessionCookies(
    core,
    { exp: session.exp, sid: session.sid, csrf: session.csrf, sub: session.sub, at: tokens.accessToken, rt: tokens.refreshToken ?? rt.rt, idt: tokens.idToken },
    maxAge,
  );
  return { status: 204, cookies };
};

const logout: Endpoint = async (core, ctx) => {
  const session = await readSession(core, ctx);
  // With a live session, logging out is a state change the SPA must prove it asked for.
  if (session) checkCsrf(core, ctx, session);
  let hint: string | undefined;
  const value = readCookie(ctx.headers.cookie, core.layout.names.id);
  if (value !== undefined && session) {
    const id = (await core.ring.open(value, 'id', seconds(core))) as IdCookie | null;
    if (id && id.sid === session.sid) hint = id.idt;
  }
  let url: string | null = null;
  try {
    url = await core.client.endSessionUrl(hint);
  } catch (err) {
    ctx.log.warn({ req_id: ctx.id, reason: 'GH_ERR_TOKEN_HANDLER_UPSTREAM', detail: (err as Error).message }, 'no end-session URL: discovery failed');
  }
  return { status: 200, body: { url }, cookies: clearAll(core) };
};
