/**
 * The development authorization server for tests (real oidc-provider on 127.0.0.1, port 0),
 * plus a driver for its development login and consent pages. See src/demo/authorization-server.ts.
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ audience: 'https://api.example.com' });
 * const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
 * ```
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AuthorizationServer, TokenResponse } from '../../src/demo/authorization-server.js';

export {
  startAuthorizationServer,
  demoClients,
  DEMO_CLIENT_SECRETS,
  AuthorizationServerError,
  type AuthorizationServer,
  type AuthorizationServerOptions,
  type AccessTokenFormat,
  type ClientMetadata,
  type DownMode,
  type Endpoint,
  type EndpointCounts,
  type SigningAlg,
  type TokenResponse,
} from '../../src/demo/authorization-server.js';


/**
 * A minimal cookie jar for driving the development pages with `fetch` (names only: paths and
 * domains are ignored, which is enough for one issuer on loopback).
 *
 * @example
 * ```ts
 * const jar = new CookieJar();
 * const res = await fetch(url, { headers: { cookie: jar.header() }, redirect: 'manual' });
 * jar.store(res);
 * ```
 */
export class CookieJar {
  readonly cookies = new Map<string, string>();

  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a) || /^\s*max-age=0\s*$/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/**
 * What {@link followDevPages} saw on its way to the redirect URI.
 *
 * @example
 * ```ts
 * const { url, pages }: DevPagesResult = await followDevPages(authUrl, { stopAt: redirectUri });
 * // pages: ['login', 'consent']; url.searchParams.get('code')
 * ```
 */
export interface DevPagesResult {
  /** The URL the authorization server redirected to (starts with `stopAt`). */
  url: URL;
  /** Pages shown, in order: `login`, `consent`, `logout`. */
  pages: ('login' | 'consent' | 'logout')[];
}

/**
 * Follows an authorization (or end-session) URL through oidc-provider's development pages like a
 * browser would: redirects, the login form (any login and password), the consent form, the logout
 * confirmation, until the server redirects to a URL starting with `stopAt` (which is not fetched).
 *
 * @example
 * ```ts
 * const { url } = await followDevPages(authorizationUrl, { stopAt: 'http://127.0.0.1/callback', login: 'alice' });
 * const code = url.searchParams.get('code');
 * ```
 */
export async function followDevPages(
  start: string,
  opts: { stopAt: string; login?: string; password?: string; jar?: CookieJar; maxSteps?: number },
): Promise<DevPagesResult> {
  const jar = opts.jar ?? new CookieJar();
  const pages: DevPagesResult['pages'] = [];
  let url = new URL(start);
  let init: RequestInit = { method: 'GET' };
  for (let step = 0; step < (opts.maxSteps ?? 20); step++) {
    const res = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { cookie: jar.header(), ...(init.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    });
    jar.store(res);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, url);
      if (next.href.startsWith(opts.stopAt)) return { url: next, pages };
      url = next;
      init = { method: 'GET' };
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`dev pages: ${res.status} at ${url.pathname}: ${html.slice(0, 300)}`);
    const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/.exec(html);
    if (!form) throw new Error(`dev pages: no form at ${url.pathname}: ${html.slice(0, 300)}`);
    const fields = new URLSearchParams();
    for (const input of form[2]!.matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) {
      fields.set(input[1]!, decodeEntities(input[2]!));
    }
    if (/name="login"/.test(form[2]!)) {
      pages.push('login');
      fields.set('login', opts.login ?? 'alice');
      fields.set('password', opts.password ?? 'any-password');
    } else if (fields.get('prompt') === 'consent') {
      pages.push('consent');
    } else if (html.includes('op.logoutForm')) {
      pages.push('logout');
      fields.set('logout', 'yes');
    }
    url = new URL(decodeEntities(form[1]!), url);
    init = { method: 'POST', body: fields.toString() };
  }
  throw new Error('dev pages: too many steps');
}

function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/**
 * A PKCE pair (RFC 7636, S256).
 *
 * @example
 * ```ts
 * const { verifier, challenge } = pkcePair();
 * ```
 */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/**
 * Result of {@link codeFlow}: the token response, the pages shown, the browser's cookies (for a
 * second login or a logout) and the nonce sent.
 *
 * @example
 * ```ts
 * const { tokens, jar }: CodeFlowResult = await codeFlow(as, { clientId: 'spa', clientSecret, redirectUri, scope: 'openid' });
 * ```
 */
export interface CodeFlowResult {
  tokens: TokenResponse;
  pages: DevPagesResult['pages'];
  jar: CookieJar;
  nonce: string;
}

/**
 * Runs the whole authorization-code flow with PKCE against the development server as a
 * confidential client: authorization request, login (and consent) pages, code exchange.
 *
 * @example
 * ```ts
 * const { tokens } = await codeFlow(as, {
 *   clientId: 'spa', clientSecret: DEMO_CLIENT_SECRETS.spa, redirectUri: 'http://127.0.0.1/callback',
 *   scope: 'openid profile orders:read', login: 'alice',
 * });
 * ```
 */
export async function codeFlow(
  as: AuthorizationServer,
  opts: { clientId: string; clientSecret: string; redirectUri: string; scope: string; login?: string; jar?: CookieJar; extraParams?: Record<string, string> },
): Promise<CodeFlowResult> {
  const { verifier, challenge } = pkcePair();
  const state = randomBytes(12).toString('base64url');
  const nonce = randomBytes(12).toString('base64url');
  const auth = new URL(as.authorizationEndpoint);
  auth.search = new URLSearchParams({
    client_id: opts.clientId,
    response_type: 'code',
    redirect_uri: opts.redirectUri,
    scope: opts.scope,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...opts.extraParams,
  }).toString();
  const jar = opts.jar ?? new CookieJar();
  const { url, pages } = await followDevPages(auth.href, { stopAt: opts.redirectUri, login: opts.login ?? 'alice', jar });
  const code = url.searchParams.get('code');
  if (!code) throw new Error(`no code in ${url.href}`);
  if (url.searchParams.get('state') !== state) throw new Error('state mismatch');
  const res = await fetch(as.tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: opts.redirectUri, code_verifier: verifier }),
  });
  const tokens = (await res.json()) as TokenResponse;
  if (res.status !== 200) throw new Error(`token endpoint: ${res.status} ${JSON.stringify(tokens)}`);
  return { tokens, pages, jar, nonce };
}
